/**
 * `dkv lock` and `dkv elect` against a real 3-node cluster: two lockers' commands never overlap
 * and the second's fencing token is larger; a holder without a command keeps the lock until
 * SIGTERM; a lost session lease stops the command; an election hands over when its leader is
 * interrupted while a listener prints both leaders; bad command lines exit 2. Every wait is for a
 * condition, with a deadline.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import { type Decoded, type EtcdChannel, longsAsStrings, methodCodec } from '../../src/client/index.js';
import { TestCluster, etcdChannel, prefixEnd, waitUntil } from './cluster-harness.js';

const dkvBin = join(import.meta.dirname, '..', '..', 'bin', 'dkv.js');
/** How long a condition may take on a loaded machine (each dkv process takes 1–2 s to start). */
const conditionMs = 20_000;

let cluster: TestCluster;
let channel: EtcdChannel;
let scratch: string;
const running = new Set<ChildProcess>();

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
  channel = etcdChannel(cluster.endpoint(0));
  scratch = mkdtempSync(join(tmpdir(), 'dkv-lock-cli-'));
}, 60_000);

afterAll(async () => {
  for (const child of running) child.kill('SIGKILL');
  channel?.close();
  await cluster?.stop();
  if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
});

interface DkvProcess {
  readonly child: ChildProcess;
  output(): string;
  /** stdout and stderr, for a failure's message. */
  log(): string;
  readonly exited: Promise<number | null>;
  running(): boolean;
}

/** `dkv COMMAND --endpoints=… ARGS…` (the flag before ARGS, so before any "--"). */
function dkv(command: 'lock' | 'elect', args: readonly string[], endpoints = cluster.endpoints): DkvProcess {
  // The fresh build (bin/load.js falls back to the sources when it is stale): ~3x faster to start.
  const child = spawn(process.execPath, [dkvBin, command, `--endpoints=${endpoints}`, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DKV_FROM_SOURCE: undefined } });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  let done = false;
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      done = true;
      running.delete(child);
      resolve(code);
    }),
  );
  return { child, output: () => stdout, log: () => `${stdout}\n--- stderr ---\n${stderr}`, exited, running: () => !done };
}

async function exitCode(p: DkvProcess, what: string): Promise<number | null> {
  await waitUntil(() => !p.running(), conditionMs, () => `${what} to exit\n${p.log()}`);
  return p.exited;
}

async function outputMatches(p: DkvProcess, pattern: RegExp, what: string): Promise<void> {
  await waitUntil(() => pattern.test(p.output()) || !p.running(), conditionMs, () => `${what}\n${p.log()}`);
  expect(p.output(), p.log()).toMatch(pattern);
}

/** The keys under `name/`, oldest first. */
async function queue(name: string): Promise<Array<{ key: Buffer; lease: number }>> {
  const prefix = `${name}/`;
  const r = await channel.kv('Range', { key: Buffer.from(prefix), range_end: prefixEnd(prefix), sort_target: 2, sort_order: 1 });
  return r['kvs'] as Array<{ key: Buffer; lease: number }>;
}

async function waitForQueue(name: string, length: number): Promise<void> {
  await waitUntil(async () => (await queue(name)).length === length, conditionMs, () => `${length} keys under ${name}/`);
}

const leaseCodec = (method: string) => methodCodec('etcdserverpb.Lease', method, longsAsStrings);

/** The lease a session key `name/<hex>` is named after, as decimal text. */
function leaseOfKey(key: string): string {
  return BigInt.asIntN(64, BigInt(`0x${key.slice(key.lastIndexOf('/') + 1)}`)).toString();
}

async function leaseTtl(id: string): Promise<number> {
  return Number(((await channel.unary(leaseCodec('LeaseTimeToLive'), { ID: id })) as Decoded).TTL);
}

let names = 0;
const freshName = (what: string): string => `${what}-${++names}-${Date.now()}`;

describe('dkv lock', () => {
  it("runs the second locker's command only after the first one's ended, with a larger fencing token", async () => {
    const name = freshName('cli-lock');
    const file = (f: string): string => join(scratch, `${name}-${f}`);
    const record = (n: number): string => `date +%s%N > ${file(`start${n}`)}; echo "$ETCD_LOCK_KEY $ETCD_LOCK_REV $DKV_FENCING_TOKEN" > ${file(`env${n}`)}`;
    // The first holder's command runs until the test creates `release`.
    const first = dkv('lock', [name, '--', 'sh', '-c', `${record(1)}; while [ ! -e ${file('release')} ]; do sleep 0.05; done; date +%s%N > ${file('end1')}`]);
    await waitUntil(() => existsSync(file('start1')) || !first.running(), conditionMs, () => `the first lock held\n${first.log()}`);
    expect(first.running(), first.log()).toBe(true);
    // The second starts with an endpoint nothing listens on: it moves to the next one.
    const second = dkv('lock', [name, '--', 'sh', '-c', `${record(2)}; exit 7`], `127.0.0.1:1,${cluster.endpoints}`);
    await waitForQueue(name, 2);
    expect(existsSync(file('start2'))).toBe(false);
    writeFileSync(file('release'), '');
    expect(await exitCode(first, 'the first dkv lock'), first.log()).toBe(0);
    // The command's exit status is dkv's.
    expect(await exitCode(second, 'the second dkv lock'), second.log()).toBe(7);
    const end1 = BigInt(readFileSync(file('end1'), 'utf8').trim());
    const start2 = BigInt(readFileSync(file('start2'), 'utf8').trim());
    expect(start2 >= end1).toBe(true);
    const env = (n: number): string[] => readFileSync(file(`env${n}`), 'utf8').trim().split(' ');
    const [key1, rev1, token1] = env(1);
    const [key2, rev2, token2] = env(2);
    expect(key1).toMatch(new RegExp(`^${name}/[0-9a-f]+$`));
    expect(key2).toMatch(new RegExp(`^${name}/[0-9a-f]+$`));
    expect(key2).not.toBe(key1);
    expect([rev1, rev2]).toEqual([token1, token2]);
    expect(BigInt(token2!) > BigInt(token1!)).toBe(true);
    expect(await queue(name)).toEqual([]);
  }, 60_000);

  it('without a command prints the key as etcdctl does (or JSON with the token), holds until SIGTERM, then the key and lease are gone', async () => {
    const name = freshName('cli-hold');
    const jsonName = freshName('cli-hold-json');
    const plain = dkv('lock', [name]);
    const json = dkv('lock', [jsonName, '--json']);
    await outputMatches(plain, new RegExp(`^${name}/[0-9a-f]+\\n\\n$`), 'the key printed');
    await outputMatches(json, /\n$/, 'the JSON line printed');
    const key = plain.output().split('\n')[0]!;
    const [kv] = await queue(name);
    expect(kv?.key.toString()).toBe(key);
    const lease = leaseOfKey(key);
    expect(await leaseTtl(lease)).toBeGreaterThan(0);
    const printed = JSON.parse(json.output()) as { name: string; key: string; lease: string; fencing_token: string };
    const [jsonKv] = (await channel.kv('Range', { key: Buffer.from(printed.key) }))['kvs'] as Array<{ create_revision: number }>;
    expect(printed).toEqual({ name: jsonName, key: expect.stringMatching(new RegExp(`^${jsonName}/[0-9a-f]+$`)), lease: printed.key.slice(jsonName.length + 1), fencing_token: String(jsonKv?.create_revision) });
    // Held, not just printed: the process stays.
    expect(plain.running() && json.running()).toBe(true);
    plain.child.kill('SIGTERM');
    json.child.kill('SIGINT');
    expect(await exitCode(plain, 'dkv lock after SIGTERM'), plain.log()).toBe(0);
    expect(await exitCode(json, 'dkv lock --json after SIGINT'), json.log()).toBe(0);
    expect(await queue(name)).toEqual([]);
    expect(await queue(jsonName)).toEqual([]);
    expect(await leaseTtl(lease)).toBe(-1);
  }, 60_000);

  it('stops the command and exits 1 when its session lease is revoked under it', async () => {
    const name = freshName('cli-lost');
    const file = (f: string): string => join(scratch, `${name}-${f}`);
    const command = `echo "$ETCD_LOCK_KEY" > ${file('key')}; trap 'echo term > ${file('term')}; exit 0' TERM; while true; do sleep 0.05; done`;
    const holder = dkv('lock', [name, '--ttl', '3', '--', 'sh', '-c', command]);
    await waitUntil(() => existsSync(file('key')) || !holder.running(), conditionMs, () => `the lock held\n${holder.log()}`);
    const lease = leaseOfKey(readFileSync(file('key'), 'utf8').trim());
    await channel.unary(leaseCodec('LeaseRevoke'), { ID: lease });
    // The next renewal (every TTL / 3) answers TTL 0.
    expect(await exitCode(holder, 'dkv lock after its lease was revoked'), holder.log()).toBe(1);
    expect(holder.log()).toContain(`dkv lock: lost the lock "${name}" while holding it`);
    expect(existsSync(file('term'))).toBe(true);
  }, 60_000);
});

describe('dkv elect', () => {
  it('elects the first candidate, hands over to the waiting one when it is interrupted, and --listen prints both', async () => {
    const name = freshName('cli-elect');
    const listener = dkv('elect', [name, '--listen']);
    const one = dkv('elect', [name, 'v1']);
    await outputMatches(one, new RegExp(`^${name}/[0-9a-f]+\\nv1\\n$`), 'the first candidate elected');
    await outputMatches(listener, /\nv1\n$/, 'the listener saw v1');
    const two = dkv('elect', [name, 'v2']);
    await waitForQueue(name, 2);
    expect(two.output()).toBe('');
    one.child.kill('SIGINT');
    expect(await exitCode(one, 'dkv elect v1 after SIGINT'), one.log()).toBe(0);
    await outputMatches(two, new RegExp(`^${name}/[0-9a-f]+\\nv2\\n$`), 'the second candidate elected');
    await outputMatches(listener, /\nv2\n$/, 'the listener saw v2');
    const key = (p: DkvProcess): string => p.output().split('\n')[0]!;
    expect(listener.output()).toBe(`${key(one)}\nv1\n${key(two)}\nv2\n`);
    two.child.kill('SIGINT');
    listener.child.kill('SIGINT');
    expect(await exitCode(two, 'dkv elect v2 after SIGINT'), two.log()).toBe(0);
    expect(await exitCode(listener, 'dkv elect --listen after SIGINT'), listener.log()).toBe(0);
    expect(await queue(name)).toEqual([]);
  }, 60_000);
});

describe('bad command lines', () => {
  // In this process (main() returns the exit status bin/dkv.js sets): a usage error never
  // reaches the cluster, and a process start costs 1–2 s here.
  it('exit 2 with the usage; --help exits 0', async () => {
    const written: string[] = [];
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => written.push(String(chunk)) > 0);
    const stdout = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => written.push(String(chunk)) > 0);
    try {
      const cases = [['lock'], ['lock', 'n', '--ttl', '0'], ['lock', 'n', '--json', '--', 'true'], ['elect', 'n'], ['elect', 'n', 'v', '--listen'], ['elect', 'n', 'v', 'w']];
      for (const args of cases) {
        written.length = 0;
        expect(await main([...args, '--endpoints=127.0.0.1:1']), args.join(' ')).toBe(2);
        expect(written.join('')).toMatch(new RegExp(`^dkv ${args[0]}: .+\\n\\nUsage: dkv ${args[0]} NAME`));
      }
      expect(await main(['lock', '--help'])).toBe(0);
      expect(await main(['elect', '-h'])).toBe(0);
    } finally {
      stderr.mockRestore();
      stdout.mockRestore();
    }
  });
});

// Last: it leaves the cluster without a quorum.
describe('a holder that cannot renew its lease', () => {
  it('gives the lock up when no renewal gets through within the TTL: stops the command, exits 1', async () => {
    const name = freshName('cli-quorum');
    const file = (f: string): string => join(scratch, `${name}-${f}`);
    const command = `touch ${file('held')}; trap 'touch ${file('term')}; exit 0' TERM; while true; do sleep 0.05; done`;
    const holder = dkv('lock', [name, '--ttl', '3', '--', 'sh', '-c', command]);
    await waitUntil(() => existsSync(file('held')) || !holder.running(), conditionMs, () => `the lock held\n${holder.log()}`);
    await Promise.all([cluster.kill(1), cluster.kill(2)]);
    expect(await exitCode(holder, 'dkv lock without a quorum'), holder.log()).toBe(1);
    expect(holder.log()).toMatch(/could not be renewed within its TTL/);
    expect(existsSync(file('term'))).toBe(true);
  }, 60_000);
});
