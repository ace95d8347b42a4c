/**
 * Instances on one host, as a user drives them: `dkv instance …` processes with a temporary
 * DKV_HOME. Two instances are created, started, used with etcdctl, stopped and removed, sharing
 * nothing; a taken or claimed port is refused; a stale pid file, `rm` of a running instance,
 * `stop --force`, a start that fails and `status -w json` are covered.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dkvBin } from '../../src/package-root.js';
import { etcdctl, waitUntil } from '../server/cluster-harness.js';

const home = mkdtempSync(join(tmpdir(), 'dkv-home-'));
// The commands (and the servers they start) run the fresh build, as an installed dkv does (bin/load.js
// falls back to the sources when the build is stale): ~3x faster to start than the sources.
const env = { ...process.env, DKV_FROM_SOURCE: undefined, DKV_HOME: home };

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `dkv ARGS` with the test's DKV_HOME, asynchronously (the test's own listeners keep serving). */
function dkv(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [dkvBin, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

interface Status {
  name: string;
  state: string;
  pid: number | null;
  stalePidFile: string | null;
  clientUrl: string;
  clientPort: number;
  peerPort: number;
  metricsPort: number;
  dataDir: string;
  logFile: string;
  configFile: string;
  health: boolean | null;
  memberId: string | null;
  leader: string | null;
  isLeader: boolean | null;
  term: number | null;
  raftIndex: number | null;
  appliedIndex: number | null;
}

async function status(name: string): Promise<Status> {
  const r = await dkv('instance', 'status', name, '-w', 'json');
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Status;
}

function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

/** True while the pid runs (a zombie, killed but not yet reaped by whoever adopted it, does not). */
function processRuns(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
  } catch {
    return false;
  }
}

const listeners: Server[] = [];
afterAll(async () => {
  for (const server of listeners) server.close();
  // Whatever a failed test left running.
  await dkv('instance', 'stop', '--force', 'a', 'b', 'c', 'd', 'dv-1', 'dv-2', 'dv-3');
  rmSync(home, { recursive: true, force: true });
});

describe('dkv instance', () => {
  it('runs two instances side by side that share nothing, and refuses a taken or claimed port', async () => {
    for (const name of ['a', 'b']) {
      const created = await dkv('instance', 'create', name);
      expect(created.code, created.stderr).toBe(0);
      expect(created.stdout).toContain(`created instance ${name}: client http://127.0.0.1:`);
    }
    const started = await dkv('instance', 'start', 'a', 'b');
    expect(started.code, started.stderr).toBe(0);
    expect(started.stdout).toMatch(/started a \(pid \d+\), serving http:\/\/127\.0\.0\.1:\d+/);

    // `start` returns once the server answers; a single member elects itself a moment later.
    await waitUntil(async () => (await status('a')).health === true && (await status('b')).health === true, 20_000, () => 'both instances healthy');
    const [a, b] = [await status('a'), await status('b')];
    for (const s of [a, b]) {
      expect(s.state).toBe('running');
      expect(s.pid).toBeGreaterThan(0);
      expect(s.health).toBe(true);
      expect(s.isLeader).toBe(true);
      expect(s.leader).toBe(s.memberId);
      expect(s.term).toBeGreaterThan(0);
      expect(s.appliedIndex).toBeGreaterThan(0);
      expect(s.raftIndex).toBeGreaterThanOrEqual(s.appliedIndex!);
      expect(s.clientUrl).toBe(`http://127.0.0.1:${s.clientPort}`);
      expect(s.dataDir).toBe(join(home, 'instances', s.name, 'data'));
      expect(s.logFile).toBe(join(home, 'instances', s.name, 'dkv.log'));
      expect(s.configFile).toBe(join(home, 'instances', s.name, 'config.yaml'));
      expect(existsSync(join(home, 'instances', s.name, 'dkv.pid'))).toBe(true);
    }
    const ports = [a, b].flatMap((s) => [s.clientPort, s.peerPort, s.metricsPort]);
    expect(new Set(ports).size).toBe(6);
    expect(a.memberId).not.toBe(b.memberId);

    // Used: a key written to one is not in the other.
    expect(etcdctl(a.clientUrl, ['put', 'where', 'in-a']).stdout).toBe('OK\n');
    expect(etcdctl(b.clientUrl, ['put', 'where', 'in-b']).stdout).toBe('OK\n');
    expect(etcdctl(a.clientUrl, ['get', 'where', '--print-value-only']).stdout).toBe('in-a\n');
    expect(etcdctl(b.clientUrl, ['get', 'where', '--print-value-only']).stdout).toBe('in-b\n');
    // Each log is its own server's.
    expect(readFileSync(a.logFile, 'utf8')).toContain(`INFO a: serving clients on ${a.clientUrl}`);
    expect(readFileSync(a.logFile, 'utf8')).not.toContain('INFO b:');
    expect(readFileSync(b.logFile, 'utf8')).toContain(`INFO b: serving clients on ${b.clientUrl}`);
    const logs = await dkv('instance', 'logs', 'a', '-n', '3');
    expect(logs.code).toBe(0);
    expect(logs.stdout.trimEnd().split('\n')).toHaveLength(3);

    // A port another instance's config claims, and a port something else listens on.
    const claimed = await dkv('instance', 'create', 'c', '--client-port', String(a.peerPort));
    expect(claimed.code).toBe(1);
    expect(claimed.stderr).toContain(`client port ${a.peerPort} is already claimed by instance "a" (listen-peer-urls in its config.yaml)`);
    const foreign = await listen(0);
    listeners.push(foreign);
    const foreignPort = (foreign.address() as { port: number }).port;
    const taken = await dkv('instance', 'create', 'c', '--peer-port', String(foreignPort));
    expect(taken.code).toBe(1);
    expect(taken.stderr).toContain(`peer port ${foreignPort} is taken: something on this host already listens on 127.0.0.1:${foreignPort}`);
    expect(existsSync(join(home, 'instances', 'c'))).toBe(false);

    const list = await dkv('instance', 'list');
    expect(list.stdout).toMatch(new RegExp(`^a +running +${a.pid} +${a.clientUrl}$`, 'm'));
    expect(list.stdout).toMatch(new RegExp(`^b +running +${b.pid} +${b.clientUrl}$`, 'm'));

    // rm refuses a running instance; stop is graceful; stop --force kills.
    const refused = await dkv('instance', 'rm', 'a');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`instance "a" is running (pid ${a.pid}); stop it first: dkv instance stop a`);
    const stopped = await dkv('instance', 'stop', 'a');
    expect(stopped.stdout).toBe(`stopped a (pid ${a.pid})\n`);
    expect(readFileSync(a.logFile, 'utf8')).toContain('INFO a: SIGTERM: stopping');
    const killed = await dkv('instance', 'stop', '--force', 'b');
    expect(killed.stdout).toBe(`stopped b (pid ${b.pid}, killed)\n`);
    expect(processRuns(b.pid!)).toBe(false);
    expect((await status('b')).state).toBe('stopped');

    // a restarts with its data, b too after the kill (its writes were synced before the OK).
    expect((await dkv('instance', 'start', 'a', 'b')).code).toBe(0);
    expect(etcdctl(a.clientUrl, ['get', 'where', '--print-value-only']).stdout).toBe('in-a\n');
    expect(etcdctl(b.clientUrl, ['get', 'where', '--print-value-only']).stdout).toBe('in-b\n');
    expect((await dkv('instance', 'stop', 'a', 'b')).code).toBe(0);

    for (const name of ['a', 'b']) {
      const removed = await dkv('instance', 'rm', name);
      expect(removed.stdout).toBe(`removed ${name}\n`);
      expect(existsSync(join(home, 'instances', name))).toBe(false);
    }
    expect((await dkv('instance', 'list')).stdout).toBe('NAME  STATE  PID  CLIENT URL\n');
  }, 240_000);

  it('treats a pid file whose process is gone or is another program as stale', async () => {
    expect((await dkv('instance', 'create', 'c')).code).toBe(0);
    const pidFile = join(home, 'instances', 'c', 'dkv.pid');
    // A pid that no longer runs: a finished child's.
    const gone = spawnSync('true').pid;
    writeFileSync(pidFile, `${gone}\n`);
    const goneStatus = await status('c');
    expect(goneStatus.state).toBe('stopped');
    expect(goneStatus.stalePidFile).toBe('process gone');
    // A stopped instance: its files' facts, nothing from a server.
    expect(goneStatus).toMatchObject({ pid: null, health: null, memberId: null, leader: null, isLeader: null, term: null, raftIndex: null, appliedIndex: null });
    expect(goneStatus.clientPort).toBeGreaterThan(0);
    const stopGone = await dkv('instance', 'stop', 'c');
    expect(stopGone.stdout).toBe(`c: removed a stale pid file (pid ${gone}): process gone\nc is not running\n`);
    expect(existsSync(pidFile)).toBe(false);

    // A pid reused by another program: this test's own process.
    writeFileSync(pidFile, `${process.pid}\n`);
    const reused = await status('c');
    expect(reused.state).toBe('stopped');
    expect(reused.stalePidFile).toMatch(new RegExp(`^pid ${process.pid} is now another program \\(`));
    const started = await dkv('instance', 'start', 'c');
    expect(started.code, started.stderr).toBe(0);
    expect(started.stdout).toContain(`c: removed a stale pid file (pid ${process.pid}): pid ${process.pid} is now another program`);
    const running = await status('c');
    expect(running.state).toBe('running');
    expect(running.pid).not.toBe(process.pid);
    expect(Number(readFileSync(pidFile, 'utf8'))).toBe(running.pid);
    expect((await dkv('instance', 'start', 'c')).stdout).toBe(`c is already running (pid ${running.pid}), serving ${running.clientUrl}\n`);
    expect((await dkv('instance', 'stop', 'c')).code).toBe(0);
    expect((await dkv('instance', 'rm', 'c')).code).toBe(0);
  }, 60_000);

  it('fails a start whose server exits first, with the log\'s last lines', async () => {
    expect((await dkv('instance', 'create', 'd')).code).toBe(0);
    const d = await status('d');
    // Something takes d's client port after create: its server cannot listen and exits.
    listeners.push(await listen(d.clientPort));
    const failed = await dkv('instance', 'start', 'd');
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/instance "d" did not start: its server exited \(code \d+\) before serving\. Last lines of .*dkv\.log:\n/);
    expect(failed.stderr).toContain(String(d.clientPort));
    expect(existsSync(join(home, 'instances', 'd', 'dkv.pid'))).toBe(false);
    expect((await status('d')).state).toBe('stopped');

    // logs -f prints what is appended until interrupted.
    const follower = spawn(process.execPath, [dkvBin, 'instance', 'logs', 'd', '-f', '-n', '0'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let followed = '';
    follower.stdout.setEncoding('utf8').on('data', (chunk: string) => (followed += chunk));
    const closed = new Promise<number | null>((resolve) => follower.on('close', resolve));
    const deadline = Date.now() + 20_000;
    while (!followed.includes('appended line') && Date.now() < deadline) {
      writeFileSync(d.logFile, 'appended line\n', { flag: 'a' });
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    follower.kill('SIGINT');
    expect(await closed).toBe(0);
    expect(followed).toMatch(/^(appended line\n)+$/);
    expect((await dkv('instance', 'rm', 'd')).code).toBe(0);
  }, 60_000);

  it('dev template: three instances form one local cluster', async () => {
    const created = await dkv('instance', 'create', 'dv', '--template', 'dev');
    expect(created.code, created.stderr).toBe(0);
    const members = ['dv-1', 'dv-2', 'dv-3'];
    const started = await dkv('instance', 'start', ...members);
    expect(started.code, started.stderr).toBe(0);
    const statuses: Status[] = [];
    const deadline = Date.now() + 30_000;
    // Serving comes before the election: wait until all three report one leader.
    for (;;) {
      statuses.splice(0, statuses.length, ...(await Promise.all(members.map(status))));
      const leaders = new Set(statuses.map((s) => s.leader));
      if (leaders.size === 1 && !leaders.has(null) && statuses.every((s) => s.health === true)) break;
      expect(Date.now(), 'no common leader').toBeLessThan(deadline);
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    expect(statuses.filter((s) => s.isLeader)).toHaveLength(1);
    expect(new Set(statuses.map((s) => s.memberId)).size).toBe(3);
    expect(etcdctl(statuses[0]!.clientUrl, ['put', 'shared', 'by-all']).stdout).toBe('OK\n');
    expect(etcdctl(statuses[2]!.clientUrl, ['get', 'shared', '--print-value-only']).stdout).toBe('by-all\n');
    const restarted = await dkv('instance', 'restart', 'dv-2');
    expect(restarted.stdout).toMatch(/^stopped dv-2 \(pid \d+\)\nstarted dv-2 \(pid \d+\)/);
    expect((await dkv('instance', 'stop', ...members)).code).toBe(0);
    expect((await dkv('instance', 'rm', ...members)).code).toBe(0);
  }, 180_000);

  it('refuses a bad name, an existing instance, an unknown template and unknown instances', async () => {
    const bad = await dkv('instance', 'create', '../evil');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('bad instance name "../evil"');
    expect((await dkv('instance', 'create', 'e')).code).toBe(0);
    const again = await dkv('instance', 'create', 'e');
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('instance "e" already exists');
    const template = await dkv('instance', 'create', 'f', '--template', 'huge');
    expect(template.code).toBe(1);
    expect(template.stderr).toContain('unknown template "huge": use single, cluster-node, dev or a YAML file');
    const missing = await dkv('instance', 'start', 'nobody');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no instance "nobody"');
    const help = await dkv('instance', '--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: dkv instance <command> NAME [options]');
    const usage = await dkv('instance', 'status');
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('dkv instance status needs an instance NAME');
    expect((await dkv('instance', 'rm', 'e')).code).toBe(0);
  }, 60_000);
});
