/**
 * Stores on a real 3-node DKV cluster (`npm run bench:stores`, or `node --import tsx
 * bench/stores.ts …` after `npm run build`): what a store's shards cost under load and idle.
 *
 * Starts three `dkv server` processes of the built dist/ (refused when the build is older than
 * the sources: the servers would run those through tsx) on loopback (client, peer and metrics
 * ports from --base-port, step 10, as `dkv dev`), each on a data directory under a fresh
 * temporary directory, and then:
 *   1. idle, on the fresh cluster (only with --idle-shards): for each count N, stores of at
 *      most 256 shards are created until N idle shards exist (each create timed); then, once
 *      every shard has a leader and --settle-seconds passed, each node is sampled over
 *      --idle-seconds: CPU from /proc/PID/stat, RSS, synced LevelDB writes (etcd_disk_wal_fsync_duration_seconds_count
 *      counts the synced saves; unsynced ones have no metric), how fast its data directory grows
 *      (LevelDB appends every write to its log file), write syscalls (/proc/PID/io syscw: files
 *      and sockets, so peer messages too), and leader changes (the stores' Raft terms, read
 *      before and after, and the nodes' "shard N: leader is now" log lines).
 *      Prints a row per node, and the cost per idle shard against the N = 0 row. The idle
 *      stores are then dropped (each drop timed) before the load runs.
 *   2. load: a put then a range load (bench/etcd-load.ts, over every node) on the default store,
 *      then, for each shard count S of --shards, on a store of S shards created for it (its keys
 *      spread over the shards as `dkv bench --store` spreads them), dropped after its loads, then
 *      on the default store again; one row per run: create time, time until every shard had a
 *      leader, requests/s, p50/p99 latency, errors (--idle-only leaves the load out); with
 *      --replicas R each such store's shards live on R of the 3 members (the others forward the
 *      load's calls: its clients spread over every node);
 * --node-args="A B" gives the servers' node more flags (`--node-args="--cpu-prof
 * --cpu-prof-dir=DIR"`: a CPU profile of each server, written when it stops).
 * The load average is printed with every phase (other work on the machine skews the numbers).
 * The servers are stopped and the directory removed on exit, failure or Ctrl-C (--keep keeps
 * it, for the logs). Prints numbers; never decides CI.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { DkvClient } from '../src/client/index.js';
import { mountShardsMax } from '../src/cluster/index.js';
import { buildUnusable, dkvBin, serverProcessEnv } from '../src/package-root.js';
import { devClusterLayout, type DevNode } from '../src/server/config.js';
import { type LoadOptions, type LoadResult, runLoad } from './etcd-load.js';

export const storesBenchDefaults = {
  shards: [1, 2, 4, 8],
  total: 20_000,
  clients: 100,
  conns: 10,
  valSize: 256,
  keySpaceSize: 100_000,
  idleShards: [] as number[],
  settleSeconds: 15,
  idleSeconds: 10,
  basePort: 46_000,
} as const;

/** How long the cluster may take to have a leader everywhere, and every shard of a store. */
const leaderWaitMs = 60_000;
/** How long a store may take to get a leader in every shard once created. */
const storeLeadersWaitMs = 300_000;
const pollMs = 200;
/** A create of up to 256 shards, or a drop, may take long on a loaded machine. */
const adminCallTimeoutMs = 300_000;
/** After SIGTERM, how long a server has to exit before SIGKILL. */
const stopGraceMs = 10_000;
const warmupPuts = 2_000;
/** Clock ticks per second of /proc/PID/stat's utime and stime (Linux's USER_HZ). */
const clockTicksPerSecond = 100;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const print = (line: string): void => {
  process.stdout.write(`${line}\n`);
};
const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' ');

/** Stores of at most `perStoreMax` shards that add `to - from` shards (`from` already exist). */
export function idleStorePlan(from: number, to: number, perStoreMax: number = mountShardsMax): number[] {
  if (!(Number.isSafeInteger(from) && Number.isSafeInteger(to) && from >= 0 && to >= from)) throw new TypeError(`idle shards must grow: ${from} -> ${to}`);
  const stores: number[] = [];
  for (let left = to - from; left > 0; left -= perStoreMax) stores.push(Math.min(left, perStoreMax));
  return stores;
}

/** utime + stime, in clock ticks, from the text of /proc/PID/stat (the command name may hold spaces and parentheses). */
export function cpuTicksOfStat(stat: string): number {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields from the state (3rd of the whole line) on: utime is the 14th of the line, stime the 15th.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isSafeInteger(utime) || !Number.isSafeInteger(stime)) throw new Error(`unreadable /proc stat: ${stat.slice(0, 80)}`);
  return utime + stime;
}

/** The sum of a metric's samples (every label set) in Prometheus text; 0 when absent. */
export function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

interface ServerNode {
  readonly layout: DevNode;
  readonly child: ChildProcess;
  readonly endpoint: string;
}

/** Three `dkv server` processes on loopback; `stop()` ends them (by pid) and removes their directory. */
class BenchCluster {
  readonly nodes: ServerNode[];
  private stopped = false;

  constructor(readonly dir: string, basePort: number, private readonly keep: boolean, nodeArgs: readonly string[]) {
    const layout = devClusterLayout({ nodes: 3, basePort, dataDir: dir });
    this.nodes = layout.nodes.map((node) => {
      const log = openSync(node.logFile, 'a');
      // Each store keeps the shard count it was made with: no automatic split during a run.
      const child = spawn(process.execPath, [...nodeArgs, dkvBin, 'server', ...node.args, '--shard-split-bytes=0', '--shard-split-qps=0'], { stdio: ['ignore', log, log], env: serverProcessEnv() });
      closeSync(log);
      return { layout: node, child, endpoint: `127.0.0.1:${node.clientPort}` };
    });
  }

  get endpoints(): string[] {
    return this.nodes.map((n) => n.endpoint);
  }

  exited(): string | undefined {
    const gone = this.nodes.find((n) => n.child.exitCode !== null || n.child.signalCode !== null);
    return gone === undefined ? undefined : `${gone.layout.name} exited (${gone.child.signalCode ?? `code ${gone.child.exitCode}`}); see ${gone.layout.logFile}`;
  }

  async waitHealthy(): Promise<void> {
    const deadline = Date.now() + leaderWaitMs;
    while (Date.now() < deadline) {
      const exited = this.exited();
      if (exited !== undefined) throw new Error(exited);
      const healthy = await Promise.all(this.nodes.map((n) => fetch(`${n.layout.metricsUrl}/health`, { signal: AbortSignal.timeout(1_000) }).then((r) => r.status === 200, () => false)));
      if (healthy.every(Boolean)) return;
      await sleep(pollMs);
    }
    throw new Error(`no leader on every node within ${leaderWaitMs / 1000} s; see the logs in ${this.dir}`);
  }

  /** SIGTERM to each server this bench started, SIGKILL to any left after the grace; then the directory goes. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const running = this.nodes.filter((n) => n.child.exitCode === null && n.child.signalCode === null);
    await Promise.all(running.map(async (n) => {
      const exited = new Promise<void>((resolve) => n.child.once('exit', () => resolve()));
      n.child.kill('SIGTERM');
      const graceOver = await Promise.race([exited.then(() => false), sleep(stopGraceMs).then(() => true)]);
      if (graceOver) {
        n.child.kill('SIGKILL');
        await exited;
      }
    }));
    this.removeDir();
  }

  /** On a synchronous exit path (process 'exit'): SIGKILL whatever still runs, remove the directory. */
  stopNow(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const n of this.nodes) if (n.child.exitCode === null && n.child.signalCode === null) n.child.kill('SIGKILL');
    this.removeDir();
  }

  private removeDir(): void {
    if (this.keep) print(`(kept ${this.dir})`);
    else rmSync(this.dir, { recursive: true, force: true });
  }
}

interface LoadRow {
  readonly store: string;
  readonly shards: number;
  readonly createSeconds: number | undefined;
  /** From the create's answer until every shard had a leader. */
  readonly leadersSeconds: number | undefined;
  readonly put: LoadResult;
  readonly range: LoadResult;
}

/**
 * Every shard of `store` has a leader as one of the nodes `clients` reach sees it (a shard placed
 * on some members is described with its leader only by those); the sum of their Raft terms.
 */
async function waitStoreLeaders(clients: readonly DkvClient[], store: string, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const views = await Promise.all(clients.map((c) => c.stores.describe(store, { timeoutMs: adminCallTimeoutMs })));
    const shards = views[0]!.shards.map((shard, i) => views.map((v) => v.shards[i]!).reduce((best, s) => (s.leader !== 0n && s.raftTerm >= best.raftTerm ? s : best), shard));
    if (shards.every((s) => s.leader !== 0n)) return shards.reduce((sum, s) => sum + s.raftTerm, 0);
    if (Date.now() > deadline) throw new Error(`store ${store}: ${shards.filter((s) => s.leader === 0n).length} of ${shards.length} shards have no leader after ${timeoutMs / 1000} s`);
    await sleep(pollMs);
  }
}

async function timed<T>(run: () => Promise<T>): Promise<{ value: T; seconds: number }> {
  const started = performance.now();
  const value = await run();
  return { value, seconds: (performance.now() - started) / 1000 };
}

interface BenchOptions {
  readonly shards: readonly number[];
  readonly total: number;
  readonly clients: number;
  readonly conns: number;
  readonly idleShards: readonly number[];
  readonly settleSeconds: number;
  readonly idleSeconds: number;
  /** The load phase's stores' replicas per shard (0: every member). */
  readonly replicas: number;
}

async function loadPhase(cluster: BenchCluster, client: DkvClient, nodeClients: readonly DkvClient[], options: BenchOptions): Promise<LoadRow[]> {
  const base: Omit<LoadOptions, 'workload'> = {
    endpoints: cluster.endpoints,
    conns: options.conns,
    clients: options.clients,
    total: options.total,
    keySize: 8,
    valSize: storesBenchDefaults.valSize,
    keySpaceSize: storesBenchDefaults.keySpaceSize,
    sequentialKeys: false,
    consistency: 'l',
    rate: 0,
    txnOps: 1,
  };
  await runLoad({ ...base, workload: 'put', total: warmupPuts });
  const rows: LoadRow[] = [];
  const measure = async (store: string, shards: number, createSeconds: number | undefined, leadersSeconds: number | undefined, storeOption: LoadOptions['store']): Promise<void> => {
    const put = await runLoad({ ...base, workload: 'put', store: storeOption });
    const range = await runLoad({ ...base, workload: 'range', store: storeOption });
    const row = { store, shards, createSeconds, leadersSeconds, put, range };
    rows.push(row);
    print(`  ${store}: put ${put.requestsPerSecond.toFixed(0)}/s, range ${range.requestsPerSecond.toFixed(0)}/s (load average ${load()})`);
  };
  await measure('default', 1, undefined, undefined, undefined);
  for (const shards of options.shards) {
    const name = `load${shards}`;
    const prefix = Buffer.from(`load${shards}/`);
    const created = await timed(() => client.stores.create(name, prefix, { shards, replicas: options.replicas, timeoutMs: adminCallTimeoutMs }));
    const leaders = await timed(() => waitStoreLeaders(nodeClients, name, storeLeadersWaitMs));
    await measure(name, shards, created.seconds, leaders.seconds, { name, prefix });
    await client.stores.drop(name, { timeoutMs: adminCallTimeoutMs });
  }
  // The reference again: how far the machine (and the cluster's own history) moved meanwhile.
  await measure('default', 1, undefined, undefined, undefined);
  return rows;
}

interface NodeSample {
  readonly cpuTicks: number;
  readonly rssBytes: number;
  readonly fsyncs: number;
  readonly writeSyscalls: number;
  readonly dataDirBytes: number;
  readonly shardsHosted: number;
  readonly shardLeaders: number;
  readonly logBytes: number;
}

function procField(text: string, field: string): number {
  const match = new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(text);
  if (match === null) throw new Error(`no ${field} in /proc`);
  return Number(match[1]);
}

/** The bytes of every file under `dir`. */
function directoryBytes(dir: string): number {
  let bytes = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    try {
      bytes += statSync(join(entry.parentPath, entry.name)).size;
    } catch {
      // LevelDB removed it (a compaction's old table, a rotated log) between the listing and the stat.
    }
  }
  return bytes;
}

async function sampleNode(node: ServerNode): Promise<NodeSample> {
  const pid = node.child.pid!;
  const metrics = await (await fetch(`${node.layout.metricsUrl}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  return {
    cpuTicks: cpuTicksOfStat(readFileSync(`/proc/${pid}/stat`, 'utf8')),
    rssBytes: procField(readFileSync(`/proc/${pid}/status`, 'utf8'), 'VmRSS') * 1024,
    fsyncs: metricSum(metrics, 'etcd_disk_wal_fsync_duration_seconds_count'),
    writeSyscalls: procField(io, 'syscw'),
    dataDirBytes: directoryBytes(node.layout.dataDir),
    shardsHosted: metricSum(metrics, 'dkv_shards'),
    shardLeaders: metricSum(metrics, 'dkv_shard_leaders'),
    logBytes: statSync(node.layout.logFile).size,
  };
}

/** "shard N: leader is now …" / "no leader" lines a node logged from byte `from` on. */
function leaderLogLines(node: ServerNode, from: number): number {
  const text = readFileSync(node.layout.logFile).subarray(from).toString('utf8');
  return (text.match(/shard \d+: (leader is now|no leader)/g) ?? []).length;
}

interface IdleNodeRow {
  readonly node: string;
  readonly cpuPercent: number;
  readonly rssMb: number;
  readonly fsyncsPerSecond: number;
  readonly writeSyscallsPerSecond: number;
  readonly dataDirKbPerSecond: number;
  readonly shardsHosted: number;
  readonly shardLeaders: number;
  readonly leaderLogLines: number;
}

interface IdleRow {
  readonly idleShards: number;
  /** Each store created for this row: the create's seconds, then until every shard had a leader. */
  readonly creates: ReadonlyArray<{ readonly shards: number; readonly createSeconds: number; readonly leadersSeconds: number; readonly meanTerm: number }>;
  readonly termChanges: number;
  readonly nodes: readonly IdleNodeRow[];
  readonly loadAverage: string;
}

async function sumOfTerms(client: DkvClient, stores: readonly string[]): Promise<number> {
  let sum = 0;
  for (const store of stores) sum += (await client.stores.describe(store, { timeoutMs: adminCallTimeoutMs })).shards.reduce((s, shard) => s + shard.raftTerm, 0);
  return sum;
}

async function idlePhase(cluster: BenchCluster, client: DkvClient, options: BenchOptions): Promise<IdleRow[]> {
  const rows: IdleRow[] = [];
  const stores: string[] = [];
  let have = 0;
  for (const idleShards of [...options.idleShards].sort((a, b) => a - b)) {
    const creates: Array<{ shards: number; createSeconds: number; leadersSeconds: number; meanTerm: number }> = [];
    for (const shards of idleStorePlan(have, idleShards)) {
      const name = `idle${stores.length}`;
      const created = await timed(() => client.stores.create(name, Buffer.from(`${name}/`), { shards, timeoutMs: adminCallTimeoutMs }));
      stores.push(name);
      have += shards;
      const leaders = await timed(() => waitStoreLeaders([client], name, storeLeadersWaitMs));
      const meanTerm = leaders.value / shards;
      creates.push({ shards, createSeconds: created.seconds, leadersSeconds: leaders.seconds, meanTerm });
      print(`  store ${name}: ${shards} shards created in ${created.seconds.toFixed(1)} s, every shard had a leader ${leaders.seconds.toFixed(1)} s later, mean Raft term then ${meanTerm.toFixed(2)} (load average ${load()})`);
    }
    await sleep(options.settleSeconds * 1000);
    const exited = cluster.exited();
    if (exited !== undefined) throw new Error(exited);
    const termsBefore = await sumOfTerms(client, stores);
    const before = await Promise.all(cluster.nodes.map(sampleNode));
    const started = performance.now();
    await sleep(options.idleSeconds * 1000);
    const after = await Promise.all(cluster.nodes.map(sampleNode));
    const seconds = (performance.now() - started) / 1000;
    const termChanges = (await sumOfTerms(client, stores)) - termsBefore;
    const nodes = cluster.nodes.map((node, i): IdleNodeRow => {
      const b = before[i]!;
      const a = after[i]!;
      return {
        node: node.layout.name,
        cpuPercent: ((a.cpuTicks - b.cpuTicks) / clockTicksPerSecond / seconds) * 100,
        rssMb: a.rssBytes / 1e6,
        fsyncsPerSecond: (a.fsyncs - b.fsyncs) / seconds,
        writeSyscallsPerSecond: (a.writeSyscalls - b.writeSyscalls) / seconds,
        dataDirKbPerSecond: (a.dataDirBytes - b.dataDirBytes) / 1e3 / seconds,
        shardsHosted: a.shardsHosted,
        shardLeaders: a.shardLeaders,
        leaderLogLines: leaderLogLines(node, b.logBytes) - leaderLogLines(node, a.logBytes),
      };
    });
    const row = { idleShards, creates, termChanges, nodes, loadAverage: load() };
    rows.push(row);
    print(`  ${idleShards} idle shards: CPU ${nodes.map((n) => `${n.cpuPercent.toFixed(1)}%`).join(' ')}, Raft term changes ${termChanges} (load average ${row.loadAverage})`);
  }
  // The idle stores go before the load runs, so they measure what they would on a fresh cluster.
  for (const name of stores) {
    const dropped = await timed(() => client.stores.drop(name, { timeoutMs: adminCallTimeoutMs }));
    print(`  store ${name} dropped in ${dropped.seconds.toFixed(1)} s`);
  }
  return rows;
}

const pad = (cells: readonly string[], widths: readonly number[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
const ms = (v: number): string => v.toFixed(v < 10 ? 2 : 1);

function loadTable(rows: readonly LoadRow[]): string[] {
  const widths = [10, 6, 8, 9, 9, 16, 9, 16, 6];
  const lines = [pad(['store', 'shards', 'create s', 'leaders s', 'put/s', 'put p50/p99 ms', 'range/s', 'range p50/p99 ms', 'errors'], widths)];
  for (const r of rows) {
    lines.push(pad([
      r.store,
      String(r.shards),
      r.createSeconds === undefined ? '-' : r.createSeconds.toFixed(2),
      r.leadersSeconds === undefined ? '-' : r.leadersSeconds.toFixed(2),
      r.put.requestsPerSecond.toFixed(0),
      `${ms(r.put.latencyMs.p50)} / ${ms(r.put.latencyMs.p99)}`,
      r.range.requestsPerSecond.toFixed(0),
      `${ms(r.range.latencyMs.p50)} / ${ms(r.range.latencyMs.p99)}`,
      String(r.put.errors + r.range.errors),
    ], widths));
    for (const [message, count] of [...r.put.errorsByMessage, ...r.range.errorsByMessage]) lines.push(`    ${count} × ${message}`);
  }
  return lines;
}

function idleTable(rows: readonly IdleRow[]): string[] {
  const widths = [11, 5, 6, 7, 9, 13, 14, 7, 8, 12];
  const lines = [pad(['idle shards', 'node', 'CPU %', 'RSS MB', 'fsyncs/s', 'data dir KB/s', 'write calls/s', 'shards', 'leaders', 'leader lines'], widths)];
  for (const r of rows) {
    for (const n of r.nodes) {
      lines.push(pad([String(r.idleShards), n.node, n.cpuPercent.toFixed(1), n.rssMb.toFixed(0), n.fsyncsPerSecond.toFixed(1), n.dataDirKbPerSecond.toFixed(1),
        n.writeSyscallsPerSecond.toFixed(1), String(n.shardsHosted), String(n.shardLeaders), String(n.leaderLogLines)], widths));
    }
    const creates = r.creates.length === 0 ? '' : `; stores created (shards: create s + until every shard had a leader s, mean term then) ${r.creates.map((c) => `${c.shards}: ${c.createSeconds.toFixed(1)} + ${c.leadersSeconds.toFixed(1)}, ${c.meanTerm.toFixed(2)}`).join('; ')}`;
    lines.push(`  ${r.idleShards} idle shards: Raft term changes in the window ${r.termChanges}${creates}; load average ${r.loadAverage}`);
  }
  const zero = rows.find((r) => r.idleShards === 0);
  if (zero !== undefined) {
    const mean = (row: IdleRow, of: (n: IdleNodeRow) => number): number => row.nodes.reduce((s, n) => s + of(n), 0) / row.nodes.length;
    for (const r of rows) {
      if (r.idleShards === 0) continue;
      const per = (of: (n: IdleNodeRow) => number): number => (mean(r, of) - mean(zero, of)) / r.idleShards;
      lines.push(`  per idle shard per node, ${r.idleShards} against 0: CPU ${(per((n) => n.cpuPercent) * 1000).toFixed(1)} m% of a core, RSS ${(per((n) => n.rssMb) * 1000).toFixed(0)} KB, ` +
        `fsyncs/s ${per((n) => n.fsyncsPerSecond).toFixed(3)}, data dir B/s ${(per((n) => n.dataDirKbPerSecond) * 1000).toFixed(1)}, write syscalls/s ${per((n) => n.writeSyscallsPerSecond).toFixed(3)}`);
    }
  }
  return lines;
}

function parseList(value: string | undefined, fallback: readonly number[], what: string, max: number): number[] {
  if (value === undefined) return [...fallback];
  if (value === '') return [];
  return value.split(',').map((part) => {
    const n = Number(part);
    if (!Number.isSafeInteger(n) || n < 0 || n > max) throw new Error(`--${what}: expected numbers 0..${max} separated by commas, got "${value}"`);
    return n;
  });
}

function parseCount(value: string | undefined, fallback: number, what: string, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new Error(`--${what}: expected ${min}..${max}, got "${value}"`);
  return n;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      shards: { type: 'string' },
      total: { type: 'string' },
      clients: { type: 'string' },
      conns: { type: 'string' },
      'idle-shards': { type: 'string' },
      'settle-seconds': { type: 'string' },
      'idle-seconds': { type: 'string' },
      'base-port': { type: 'string' },
      'node-args': { type: 'string' },
      'idle-only': { type: 'boolean' },
      replicas: { type: 'string' },
      keep: { type: 'boolean' },
    },
  });
  const d = storesBenchDefaults;
  const options: BenchOptions = {
    shards: parseList(values.shards, d.shards, 'shards', mountShardsMax).filter((s) => s > 0),
    total: parseCount(values.total, d.total, 'total', 1, 10_000_000),
    clients: parseCount(values.clients, d.clients, 'clients', 1, 10_000),
    conns: parseCount(values.conns, d.conns, 'conns', 1, 1_000),
    idleShards: parseList(values['idle-shards'], d.idleShards, 'idle-shards', 100_000),
    settleSeconds: parseCount(values['settle-seconds'], d.settleSeconds, 'settle-seconds', 0, 3_600),
    idleSeconds: parseCount(values['idle-seconds'], d.idleSeconds, 'idle-seconds', 1, 3_600),
    replicas: parseCount(values.replicas, 0, 'replicas', 0, 3),
  };
  const basePort = parseCount(values['base-port'], d.basePort, 'base-port', 1_024, 65_000);
  // The servers would run the sources through tsx (bin/load.js), whose loader and transpiler
  // add memory and CPU of their own: what this bench measures is the build.
  const unusable = await buildUnusable();
  if (unusable !== undefined) {
    process.stderr.write(`bench/stores.ts: the servers would not run the build in dist/ (${unusable}): run "npm run build" first (npm run bench:stores does)\n`);
    return 2;
  }
  const dir = mkdtempSync(join(tmpdir(), 'dkv-bench-stores-'));
  const nodeArgs = (values['node-args'] ?? '').split(' ').filter((arg) => arg !== '');
  const cluster = new BenchCluster(dir, basePort, values.keep === true, nodeArgs);
  process.once('exit', () => cluster.stopNow());
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      void cluster.stop().finally(() => process.exit(130));
    });
  }
  const client = new DkvClient({ servers: cluster.endpoints.map((address) => ({ address })), timeoutMs: adminCallTimeoutMs });
  const nodeClients = cluster.endpoints.map((address) => new DkvClient({ servers: [{ address }], timeoutMs: adminCallTimeoutMs }));
  try {
    print(`bench/stores.ts: 3 dkv servers at ${cluster.endpoints.join(',')} (pids ${cluster.nodes.map((n) => n.child.pid).join(', ')}), data in ${dir}`);
    print(`load average at start: ${load()}`);
    await cluster.waitHealthy();
    let idleRows: IdleRow[] = [];
    if (options.idleShards.length > 0) {
      print(`idle: ${options.idleShards.join(', ')} idle shards, settle ${options.settleSeconds} s, sampled over ${options.idleSeconds} s`);
      idleRows = await idlePhase(cluster, client, options);
    }
    let loadRows: LoadRow[] = [];
    if (values['idle-only'] !== true) {
      print(`load: put then range (linearizable), ${options.total} requests, ${options.clients} clients over ${options.conns} conns, value ${d.valSize} B, key space ${d.keySpaceSize}`);
      loadRows = await loadPhase(cluster, client, nodeClients, options);
    }
    print('');
    print(`load average at the end: ${load()}`);
    if (loadRows.length > 0) for (const line of loadTable(loadRows)) print(line);
    if (idleRows.length > 0) {
      print('');
      for (const line of idleTable(idleRows)) print(line);
    }
    return 0;
  } catch (error) {
    process.stderr.write(`bench/stores.ts: ${(error as Error).stack ?? String(error)}\n`);
    return 1;
  } finally {
    client.close();
    for (const c of nodeClients) c.close();
    await cluster.stop();
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) process.exitCode = await main();
