/**
 * Footprint of one node, DKV and etcd side by side with the same load: resident memory per key,
 * bulk load rate, restart time, and what overwrites, compaction and deletes leave behind.
 *
 * For each target (one `dkv server` from dist/, one etcd member; each in a fresh data dir):
 *   1. start, wait for a served write, settle: RSS of the empty node;
 *   2. load --keys keys (--key-size + --val-size bytes) by Txns of --txn-ops puts, --clients Txns
 *      in flight: keys/s; settle: RSS, and memory per key = (RSS - empty RSS) / keys;
 *   3. SIGKILL, start again on the same data dir: milliseconds to the first acknowledged write
 *      (the restart), then RSS after the restart;
 *   4. load the same keys again (overwrites) and compact at the head: RSS, growth against step 2;
 *   5. delete every key (one DeleteRange, timed; an UNAVAILABLE answer, such as a timeout while
 *      the server still applies it, is waited out until the keys are gone) and compact at the
 *      head: RSS against the empty node.
 * "settle" waits --settle-ms, then reads VmRSS from /proc. Prints a table, or one JSON object per
 * target with --json. Never gates CI.
 *
 *   dkv bench footprint [--target dkv,etcd] [--keys 500000] [--key-size 16] [--val-size 100]
 *     [--txn-ops 128] [--clients 8] [--settle-ms 20000] [--json] [--keep]
 *     [--server-args "--snapshot-count=10000"]  (more `dkv server` flags, space-separated)
 * The settle is longer than a DKV node takes to settle after its last write, late collection
 * included (src/server/memory-settle.ts: up to settleIntervalMsMin + settleLateCollectMs, 16 s),
 * so both targets are read after their collectors had a chance to run.
 */
import { status as grpcStatus } from '@grpc/grpc-js';
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EtcdChannel } from '../src/client/index.js';
import { portFree } from '../src/control/ports.js';
import { dkvBin, harnessPortBounds, serverProcessEnv } from '../src/package-root.js';
import { devClusterLayout } from '../src/server/config.js';

export interface FootprintOptions {
  /** 'dkv' and/or 'etcd', measured in this order. */
  readonly targets: readonly ('dkv' | 'etcd')[];
  readonly keys: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly txnOps: number;
  readonly clients: number;
  readonly settleMs: number;
  /** More `dkv server` flags. */
  readonly serverArgs: readonly string[];
  /** The etcd binary (default: etcd on PATH). */
  readonly etcdBin?: string;
  /** Keep the data directories (their logs) instead of removing them. */
  readonly keep?: boolean;
  /** Called with each target's result as it is measured. */
  readonly onResult?: (result: Footprint) => void;
  readonly print?: (line: string) => void;
}

export const footprintDefaults = { keys: 500_000, keySize: 16, valueSize: 100, txnOps: 128, clients: 8, settleMs: 20_000 } as const;

const readyTimeoutMs = 600_000;
const readyPollMs = 20;
/** How long the delete of every key may take, answered or not, before the run fails. */
const deleteAllTimeoutMs = 300_000;
/** After a failed call, how long the bench waits to learn whether the node exited. */
const nodeExitWaitMs = 1_000;
/** Between polls for the keys' count after a DeleteRange answered UNAVAILABLE. */
const deletePollMs = 500;
const keyPrefix = 'fp/';
/** The lowest base port tried, and how many blocks of 10 above it (DKV_TEST_PORTS narrows them). */
const portBase = 21_000;
const portBlocks = 800;
/** Ports a run uses from its base: the DKV node's from +0, etcd's from +5. */
const portsPerRun = 10;
/** Random blocks tried before the bench gives up finding a free one. */
const portBlockAttemptsMax = 50;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface Node {
  readonly start: () => ChildProcess;
  readonly endpoint: string;
}

function dkvNode(dir: string, base: number, serverArgs: readonly string[]): Node {
  const layout = devClusterLayout({ nodes: 1, basePort: base, dataDir: join(dir, 'dkv') });
  const node = layout.nodes[0]!;
  return { endpoint: `127.0.0.1:${node.clientPort}`, start: () => spawnLogged(process.execPath, [dkvBin, 'server', ...node.args, ...serverArgs], join(dir, 'dkv.stderr'), serverProcessEnv()) };
}

function etcdNode(dir: string, base: number, etcdBin: string): Node {
  const client = `http://127.0.0.1:${base}`;
  const peer = `http://127.0.0.1:${base + 1}`;
  const args = ['--name', 'etcd1', '--data-dir', join(dir, 'etcd'), '--listen-client-urls', client, '--advertise-client-urls', client, '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `etcd1=${peer}`];
  return { endpoint: `127.0.0.1:${base}`, start: () => spawnLogged(etcdBin, args, join(dir, 'etcd.stderr'), process.env) };
}

/** How much of a node's stderr an error quotes, to say why it exited. */
const stderrTailBytes = 4096;
const stderrFiles = new WeakMap<ChildProcess, string>();

/**
 * Starts a node whose stderr goes to a file (appended across restarts; the bench does not read
 * it while the node runs, so a chatty node never waits on the bench).
 */
function spawnLogged(command: string, args: readonly string[], stderrPath: string, env: NodeJS.ProcessEnv): ChildProcess {
  const fd = openSync(stderrPath, 'a');
  try {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', fd], env });
    child.once('error', () => {}); // a missing binary: reported as an exit by assertRunning
    stderrFiles.set(child, stderrPath);
    return child;
  } finally {
    closeSync(fd);
  }
}

/** Throws when the node has exited (or never started): a bench must not wait for a process that is gone. */
function assertRunning(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) return;
  const path = stderrFiles.get(child);
  let tail = '';
  try {
    if (path !== undefined) tail = readFileSync(path, 'utf8').slice(-stderrTailBytes).trim();
  } catch {
    // no file: nothing to quote
  }
  const how = child.pid === undefined ? 'did not start' : child.exitCode === null ? `exited (signal ${child.signalCode})` : `exited (code ${child.exitCode})`;
  throw new Error(`the node ${how}${tail === '' ? '' : `; its stderr ended:\n${tail}`}`);
}

function rssBytes(child: ChildProcess): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
  if (match === null) throw new Error(`no VmRSS for pid ${child.pid}`);
  return Number(match[1]) * 1024;
}

/** Milliseconds from now until a Put is acknowledged (a new channel each try: the port may not be open). */
async function untilServedWrite(endpoint: string, child: ChildProcess): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < readyTimeoutMs) {
    assertRunning(child);
    const channel = new EtcdChannel(endpoint, { callTimeoutMs: 2_000 });
    try {
      await channel.kv('Put', { key: Buffer.from('fp-ready'), value: Buffer.from('1') });
      return performance.now() - started;
    } catch {
      await sleep(readyPollMs);
    } finally {
      channel.close();
    }
  }
  throw new Error(`${endpoint} served no write within ${readyTimeoutMs} ms`);
}

function keyOf(i: number, keySize: number): Buffer {
  const key = Buffer.alloc(keySize, 0x30);
  key.write(keyPrefix);
  key.write(String(i).padStart(keySize - keyPrefix.length, '0'), keyPrefix.length);
  return key;
}

/** Puts keys 0..keys-1 in Txns of txnOps puts, clients Txns in flight; returns keys per second. */
async function load(channel: EtcdChannel, round: number, options: FootprintOptions): Promise<number> {
  const { keys, keySize, txnOps, clients } = options;
  const value = Buffer.alloc(options.valueSize, 0x61 + round);
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      for (let first = next; first < keys; first = next) {
        next = Math.min(keys, first + txnOps);
        const success = [];
        for (let i = first; i < next; i++) success.push({ request_put: { key: keyOf(i, keySize), value } });
        await channel.kv('Txn', { success });
      }
    }),
  );
  return keys / ((performance.now() - started) / 1000);
}

/**
 * How long a DeleteRange takes to remove every key the bench wrote (ms). A server may answer
 * UNAVAILABLE ("request timed out") while it still applies a very large delete; the bench then
 * polls until the keys are gone, sending the (idempotent) DeleteRange again after each poll that
 * still finds keys, in case that proposal was lost, and gives up after `deleteAllTimeoutMs`.
 */
async function deleteAll(channel: EtcdChannel, child: ChildProcess): Promise<number> {
  const range = { key: Buffer.from(keyPrefix), range_end: Buffer.from(keyPrefix.slice(0, -1) + String.fromCharCode(keyPrefix.charCodeAt(keyPrefix.length - 1) + 1)) };
  const unavailable = (error: unknown): boolean => (error as { code?: unknown }).code === grpcStatus.UNAVAILABLE;
  const started = performance.now();
  for (;;) {
    try {
      await channel.kv('DeleteRange', range);
      return performance.now() - started;
    } catch (error) {
      if (!unavailable(error)) throw error;
    }
    for (;;) {
      if (performance.now() - started > deleteAllTimeoutMs) throw new Error(`the keys were not all deleted within ${deleteAllTimeoutMs} ms`);
      await sleep(deletePollMs);
      assertRunning(child); // UNAVAILABLE from a node that is gone is not a delete still applying
      try {
        const { count } = (await channel.kv('Range', { ...range, count_only: true })) as { count: number | string };
        if (Number(count) === 0) return performance.now() - started;
        break; // keys left: the delete may have been lost; send it again
      } catch (error) {
        if (!unavailable(error)) throw error; // still applying: poll again
      }
    }
  }
}

async function headRevision(channel: EtcdChannel): Promise<number> {
  const response = (await channel.kv('Range', { key: Buffer.from('fp-ready') })) as { header: { revision: number | string } };
  return Number(response.header.revision);
}

export interface Footprint {
  target: string;
  keys: number;
  emptyRssMb: number;
  loadKeysPerSecond: number;
  loadedRssMb: number;
  bytesPerKey: number;
  restartMs: number;
  restartedRssMb: number;
  overwrittenRssMb: number;
  overwriteGrowth: number;
  /** The one DeleteRange of every key, until it is answered (or, answered with a timeout, until the keys are gone). */
  deleteAllMs: number;
  deletedRssMb: number;
  deletedOverEmpty: number;
}

async function measure(target: string, node: Node, options: FootprintOptions): Promise<Footprint> {
  const { keys, settleMs } = options;
  const mb = (bytes: number): number => Math.round(bytes / 1048576);
  let child = node.start();
  try {
    await untilServedWrite(node.endpoint, child);
    const channel = new EtcdChannel(node.endpoint, { callTimeoutMs: 120_000 });
    await sleep(settleMs);
    const empty = rssBytes(child);
    const loadKeysPerSecond = await load(channel, 0, options);
    await sleep(settleMs);
    const loaded = rssBytes(child);
    channel.close();

    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    const startedAt = performance.now();
    child = node.start();
    await untilServedWrite(node.endpoint, child);
    const restartMs = performance.now() - startedAt;
    const again = new EtcdChannel(node.endpoint, { callTimeoutMs: 120_000 });
    await sleep(settleMs);
    const restarted = rssBytes(child);

    await load(again, 1, options);
    await again.kv('Compact', { revision: await headRevision(again), physical: true });
    await sleep(settleMs);
    const overwritten = rssBytes(child);

    const deleteAllMs = await deleteAll(again, child);
    await again.kv('Compact', { revision: await headRevision(again), physical: true });
    await sleep(settleMs);
    const deleted = rssBytes(child);
    again.close();
    return {
      target,
      keys,
      emptyRssMb: mb(empty),
      loadKeysPerSecond: Math.round(loadKeysPerSecond),
      loadedRssMb: mb(loaded),
      bytesPerKey: Math.round((loaded - empty) / keys),
      restartMs: Math.round(restartMs),
      restartedRssMb: mb(restarted),
      overwrittenRssMb: mb(overwritten),
      overwriteGrowth: Number((overwritten / loaded).toFixed(3)),
      deleteAllMs: Math.round(deleteAllMs),
      deletedRssMb: mb(deleted),
      deletedOverEmpty: Number((deleted / empty).toFixed(3)),
    };
  } catch (error) {
    // A call that failed because the node died: say so, with the end of its stderr.
    const running = child;
    if (running.exitCode === null && running.signalCode === null) await Promise.race([new Promise((resolve) => running.once('exit', resolve)), sleep(nodeExitWaitMs)]);
    try {
      assertRunning(running);
    } catch (gone) {
      throw new Error((gone as Error).message, { cause: error });
    }
    throw error;
  } finally {
    child.kill('SIGKILL');
  }
}

/**
 * A base port whose block of `ports` (a multiple of 10) is free now, within DKV_TEST_PORTS when
 * set (test files running at once each pick from their own slice). A block taken by another
 * cluster would have a bench load its keys into that cluster, through the port its own node
 * failed to bind. bench/memory-reclaim.ts picks its block here too.
 */
export async function freePortBlock(ports = portsPerRun): Promise<number> {
  const { low, high } = harnessPortBounds(portBase, portBase + portsPerRun * portBlocks);
  const blocks = Math.floor((high - low - ports) / portsPerRun) + 1;
  if (blocks < 1) throw new Error(`no room for ${ports} ports in ${low}-${high - 1}`);
  for (let attempt = 0; attempt < portBlockAttemptsMax; attempt++) {
    const base = low + portsPerRun * Math.floor(Math.random() * blocks);
    const free = await Promise.all(Array.from({ length: ports }, (_, i) => portFree('127.0.0.1', base + i)));
    if (free.every(Boolean)) return base;
  }
  throw new Error(`no free block of ${ports} ports found in ${low}-${high - 1} after ${portBlockAttemptsMax} tries`);
}

/** Measures each target in turn, each on a fresh data directory; returns their results. */
export async function runFootprintBench(options: FootprintOptions): Promise<Footprint[]> {
  if (!(options.keySize > keyPrefix.length + 8)) throw new Error(`key size must be over ${keyPrefix.length + 8}`);
  const dir = mkdtempSync(join(tmpdir(), 'dkv-footprint-'));
  const base = await freePortBlock();
  const results: Footprint[] = [];
  try {
    for (const target of options.targets) {
      const node = target === 'dkv' ? dkvNode(dir, base, options.serverArgs) : etcdNode(dir, base + 5, options.etcdBin ?? 'etcd');
      const result = await measure(target, node, options);
      results.push(result);
      options.onResult?.(result);
    }
  } finally {
    if (options.keep === true) options.print?.(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
  return results;
}

/** The results as a table, a row per measure and a column per target, with DKV/etcd when both ran. */
export function footprintTable(results: readonly Footprint[]): string[] {
  const columns = Object.keys(results[0] ?? {}).filter((column) => column !== 'target') as Array<keyof Footprint>;
  const dkv = results.find((result) => result.target === 'dkv');
  const etcd = results.find((result) => result.target === 'etcd');
  const lines = [`${''.padEnd(18)} ${results.map((result) => result.target.padStart(12)).join(' ')}${dkv && etcd ? '     dkv/etcd' : ''}`];
  for (const column of columns) {
    const ratio = dkv && etcd && typeof etcd[column] === 'number' && etcd[column] !== 0 ? `${((dkv[column] as number) / (etcd[column] as number)).toFixed(2).padStart(12)}x` : '';
    lines.push(`${column.padEnd(18)} ${results.map((result) => String(result[column]).padStart(12)).join(' ')}${ratio}`);
  }
  return lines;
}
