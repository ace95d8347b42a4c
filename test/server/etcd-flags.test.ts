/**
 * `dkv server` started the way an etcd unit file starts etcd: etcd's ETCD_* variables (as in a
 * typical /etc/default/etcd) and etcd flags DKV does not use. It must serve, warn once per flag
 * that has no effect, and log what an operator needs at start. Plus `--version`, a typo's
 * suggestion, an unusable --auth-token refused, idle shards that never quiesce under
 * --experimental-quiesce=false, and `etcdctl endpoint status` showing "etcdserver: no leader" when
 * quorum is lost.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TestCluster, etcdctl, freeBase, waitUntil } from './cluster-harness.js';

const dkvBin = join(import.meta.dirname, '..', '..', 'bin', 'dkv.js');
const dir = mkdtempSync(join(tmpdir(), 'dkv-etcd-flags-'));
const children: ChildProcess[] = [];
afterAll(async () => {
  await Promise.all(
    children.filter((child) => child.exitCode === null).map((child) => new Promise((resolve) => {
      child.once('exit', resolve);
      child.kill('SIGTERM');
    })),
  );
  rmSync(dir, { recursive: true, force: true });
});

describe('dkv server --version and typos', () => {
  it('prints the versions like etcd --version, and exits 0', () => {
    const result = spawnSync(process.execPath, [dkvBin, 'server', '--version'], { encoding: 'utf8' });
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/^DKV Version: \d+\.\d+\.\d+\netcd API Version: 3\.5\.0\nGit SHA: .+\nNode Version: v\d+/);
  });

  it('refuses an --auth-token whose key file cannot be read, naming the flag and the option (exit 2)', () => {
    const missing = join(dir, 'no-such-key.pem');
    const result = spawnSync(process.execPath, [dkvBin, 'server', `--auth-token=jwt,pub-key=${missing},sign-method=RS256`], { encoding: 'utf8' });
    expect(result.status).toBe(2);
    expect(result.stderr).toBe(`dkv server: --auth-token: pub-key: cannot read "${missing}": ENOENT\n`);
  });

  it('refuses a flag that is no etcd flag either, suggesting the closest one (exit 2)', () => {
    const result = spawnSync(process.execPath, [dkvBin, 'server', '--snapshot-cuont=5'], { encoding: 'utf8' });
    expect(result.status).toBe(2);
    expect(result.stderr).toBe('dkv server: --snapshot-cuont: unknown flag (did you mean --snapshot-count?) (see dkv server --help)\n');
  });
});

describe('a node started from an etcd unit file', () => {
  it('serves, warns once for each flag without effect, and logs version, ids, data dir, URLs', async () => {
    const base = await freeBase(1);
    const [client, peer, metrics] = [base, base + 1, base + 2].map((port) => `http://127.0.0.1:${port}`);
    const logFile = join(dir, 'etcd1.log');
    // What /etc/default/etcd and etcd.service typically hold (quota and compaction flags aside).
    const env = {
      ...process.env,
      ETCD_NAME: 'etcd1',
      ETCD_DATA_DIR: join(dir, 'etcd1.data'),
      ETCD_LISTEN_CLIENT_URLS: client,
      ETCD_ADVERTISE_CLIENT_URLS: client,
      ETCD_LISTEN_PEER_URLS: peer,
      ETCD_INITIAL_ADVERTISE_PEER_URLS: peer,
      ETCD_INITIAL_CLUSTER: `etcd1=${peer}`,
      ETCD_INITIAL_CLUSTER_TOKEN: 'etcd-cluster-1',
      ETCD_INITIAL_CLUSTER_STATE: 'new',
      ETCD_ENABLE_V2: 'true',
      ETCD_AUTH_TOKEN: 'simple',
    };
    const flags = [
      '--snapshot-count=10000',
      '--heartbeat-interval=100',
      '--election-timeout=1000',
      '--auto-tls',
      '--peer-auto-tls',
      '--max-request-bytes=2097152',
      '--grpc-keepalive-min-time=10s',
      '--grpc-keepalive-interval=1h',
      '--grpc-keepalive-timeout=5s',
      '--metrics=extensive',
      `--listen-metrics-urls=${metrics}`,
      '--logger=zap',
      `--log-outputs=${logFile}`,
      '--log-level=info',
      '--pre-vote=true',
      '--auth-token-ttl=600',
      '--bcrypt-cost=4',
    ];
    const child = spawn(process.execPath, [dkvBin, 'server', ...flags], { env, stdio: ['ignore', openSync(join(dir, 'etcd1.out'), 'a'), 'pipe'] });
    children.push(child);
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const log = (): string => {
      try {
        return readFileSync(logFile, 'utf8');
      } catch {
        return '';
      }
    };
    const endpoint = `127.0.0.1:${base}`;
    await waitUntil(() => etcdctl(endpoint, ['put', 'unit', 'file']).code === 0, 30_000, () => `a put\n${log()}\n${stderr}`, 200);
    expect(etcdctl(endpoint, ['get', 'unit', '--print-value-only']).stdout).toBe('file\n');

    const text = log();
    const noEffect = text.split('\n').filter((line) => line.includes('has no effect in DKV'));
    // One line each, with its reason (--pre-vote=true is not etcd 3.4's default, so it is named too).
    expect(noEffect.map((line) => line.replace(/^\S+ WARN etcd1: /, '').replace(/ has no effect.*/, '')).sort()).toEqual(
      [
        'ETCD_ENABLE_V2',
        '--auto-tls',
        '--peer-auto-tls',
        '--grpc-keepalive-min-time',
        '--grpc-keepalive-interval',
        '--grpc-keepalive-timeout',
        '--metrics',
        '--pre-vote',
      ].sort(),
    );
    expect(text).toMatch(/WARN etcd1: --auto-tls has no effect in DKV \(DKV does not generate certificates; give the cert and key files\)/);
    expect(stderr).toBe('');

    // The member id etcdctl shows (hex) is the one the log names, in the same notation.
    const status = JSON.parse(etcdctl(endpoint, ['endpoint', 'status', '-w', 'json']).stdout) as Array<{ Status: { header: { member_id: number | string; cluster_id: number | string } } }>;
    const memberHex = BigInt(status[0]!.Status.header.member_id).toString(16);
    const clusterHex = BigInt(status[0]!.Status.header.cluster_id).toString(16);
    expect(text).toMatch(
      new RegExp(`INFO etcd1: DKV \\d+\\.\\d+\\.\\d+ \\(etcd API 3\\.5\\.0, Node v[\\d.]+\\) member ${memberHex} \\("etcd1"\\) of cluster ${clusterHex}: bootstrapped a new cluster of 1 member`),
    );
    expect(text).toContain(`INFO etcd1: data dir ${join(dir, 'etcd1.data')}`);
    expect(text).toContain(`INFO etcd1: client URLs: listen ${client}, advertise ${client}`);
    expect(text).toContain(`INFO etcd1: peer URLs: listen ${peer}, advertise ${peer}`);
    expect(text).toContain('--snapshot-count=10000 (flag)');
    // etcd's auth settings are DKV settings now: listed as changed, never as without effect.
    expect(text).toContain('--auth-token-ttl=600 (flag)');
    expect(text).toContain('--bcrypt-cost=4 (flag)');
    expect(text).toContain('--name=etcd1 (ETCD_NAME)');
    expect(text).toContain(`INFO etcd1: added member ${memberHex} "etcd1" (voter, peer URLs ${peer}) of cluster ${clusterHex}`);
    expect(text).toMatch(new RegExp(`INFO etcd1: shard 1: leader is now ${memberHex} \\(term \\d+\\)`));
    // Every line: ISO time, level, member name.
    for (const line of text.split('\n').filter((l) => l !== '')) expect(line).toMatch(/^\d{4}-\d\d-\d\dT\S+Z (DEBUG|INFO|WARN|ERROR) etcd1: /);
    expect(text).not.toMatch(/ DEBUG /);

    // A membership change applied is one line each, id in hex, as etcdctl prints it.
    // The meta shard (members) elects on its own and may not have a leader as soon as the data shard.
    let added = etcdctl(endpoint, ['member', 'add', 'learner1', '--learner', '--peer-urls=http://127.0.0.1:9']);
    await waitUntil(
      () => added.code === 0 || (added = etcdctl(endpoint, ['member', 'add', 'learner1', '--learner', '--peer-urls=http://127.0.0.1:9'])).code === 0,
      10_000,
      () => `member add\n${added.stderr}`,
      200,
    );
    const learnerHex = /Member\s+([0-9a-f]+) added/.exec(added.stdout)?.[1];
    expect(learnerHex, added.stdout + added.stderr).toBeDefined();
    expect(etcdctl(endpoint, ['member', 'remove', learnerHex!]).code).toBe(0);
    const learnerLine = `member ${learnerHex} (unstarted) (learner, peer URLs http://127.0.0.1:9) of cluster ${clusterHex}`;
    await waitUntil(() => log().includes(`INFO etcd1: removed ${learnerLine}`), 10_000, () => `the removal logged\n${log()}`);
    expect(log()).toContain(`INFO etcd1: added ${learnerLine}`);
  });
});

/** A gauge's value in a /metrics scrape. */
async function gauge(metricsUrl: string, name: string): Promise<number> {
  const text = await (await fetch(`${metricsUrl}/metrics`, { signal: AbortSignal.timeout(2000) })).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (line === undefined) throw new Error(`no ${name} in /metrics`);
  return Number(line.slice(name.length + 1));
}

/**
 * With quiescence on, an idle one-node cluster has quiesced every group by the time it serves
 * (the first scrape after TestCluster.start counts them all); watching for 20 ticks more shows
 * that nothing quiesces.
 */
const quiesceWatchMs = 2000;

describe('dkv server --experimental-quiesce=false', () => {
  it('keeps every idle shard ticking: dkv_shards_quiesced stays 0, and the setting is logged as changed', async () => {
    const cluster = await TestCluster.start({ nodes: 1, args: ['--experimental-quiesce=false'] });
    try {
      const metricsUrl = cluster.metricsUrl(0);
      expect(await gauge(metricsUrl, 'dkv_shards')).toBeGreaterThan(0);
      // Watching for something that must not happen takes a fixed time (quiesceWatchMs).
      const samples: number[] = [];
      for (const started = Date.now(); Date.now() - started < quiesceWatchMs; ) {
        samples.push(await gauge(metricsUrl, 'dkv_shards_quiesced'));
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(samples.filter((quiesced) => quiesced !== 0)).toEqual([]);
      expect(cluster.log(0)).toContain('--experimental-quiesce=false (flag)');
    } finally {
      await cluster.stop();
    }
  }, 60_000);
});

describe('etcdctl endpoint status without quorum', () => {
  it('shows "etcdserver: no leader" in ERRORS, as etcd does', async () => {
    const cluster = await TestCluster.start({ nodes: 3 });
    try {
      const status = (): string => etcdctl(cluster.endpoint(0), ['endpoint', 'status', '-w', 'table']).stdout;
      expect(status()).not.toContain('etcdserver: no leader');
      await cluster.kill(1);
      await cluster.kill(2);
      // Check-quorum makes a lone leader step down within an election timeout or two.
      await waitUntil(() => status().includes('etcdserver: no leader'), 20_000, () => `no-leader error in\n${status()}\n${cluster.logs()}`, 200);
      expect(readFileSync(cluster.nodes[0]!.logFile, 'utf8')).toMatch(/INFO dkv1: shard 1: no leader \(term \d+\)/);
    } finally {
      await cluster.stop();
    }
  }, 90_000);
});
