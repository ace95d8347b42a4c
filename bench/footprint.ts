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
 *   5. delete every key (one DeleteRange) and compact at the head: RSS against the empty node.
 * "settle" waits --settle-ms, then reads VmRSS from /proc. Prints a table, or one JSON object per
 * target with --json. Never gates CI.
 *
 *   node --import tsx bench/footprint.ts [--target dkv,etcd] [--keys 500000] [--key-size 16]
 *     [--val-size 100] [--txn-ops 128] [--clients 8] [--settle-ms 3000] [--json] [--keep]
 *     [--server-args "--snapshot-count=10000"]  (more `dkv server` flags, space-separated)
 *     [--base-bin /elsewhere/bin/dkv.js]  (target `base`: another build's `dkv`, to compare two
 *     builds in one run on a noisy machine, e.g. --target base,dkv,etcd)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EtcdChannel } from '../src/client/index.js';
import { devClusterLayout } from '../src/server/config.js';

function argument(name: string, fallback: string): string {
  const at = process.argv.indexOf(name);
  return at >= 0 ? (process.argv[at + 1] ?? fallback) : fallback;
}

const targets = argument('--target', 'dkv,etcd').split(',');
const keys = Number(argument('--keys', '500000'));
const keySize = Number(argument('--key-size', '16'));
const valueSize = Number(argument('--val-size', '100'));
const txnOps = Number(argument('--txn-ops', '128'));
const clients = Number(argument('--clients', '8'));
const settleMs = Number(argument('--settle-ms', '3000'));
const json = process.argv.includes('--json');
const serverArgs = argument('--server-args', '').split(' ').filter((arg) => arg !== '');
const readyTimeoutMs = 600_000;
const readyPollMs = 20;
const keyPrefix = 'fp/';
const baseBin = argument('--base-bin', '');

for (const target of targets) if (target !== 'dkv' && target !== 'etcd' && target !== 'base') throw new Error(`--target: dkv, base or etcd, got ${target}`);
if (targets.includes('base') && baseBin === '') throw new Error('--target base needs --base-bin');
if (!(keySize > keyPrefix.length + 8)) throw new Error(`--key-size must be over ${keyPrefix.length + 8}`);

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface Node {
  readonly start: () => ChildProcess;
  readonly endpoint: string;
}

function dkvNode(dir: string, base: number, bin: string): Node {
  const layout = devClusterLayout({ nodes: 1, basePort: base, dataDir: join(dir, `dkv-${base}`) });
  const node = layout.nodes[0]!;
  return { endpoint: `127.0.0.1:${node.clientPort}`, start: () => spawn(process.execPath, [bin, 'server', ...node.args, ...serverArgs], { stdio: 'ignore' }) };
}

function etcdNode(dir: string, base: number): Node {
  const client = `http://127.0.0.1:${base}`;
  const peer = `http://127.0.0.1:${base + 1}`;
  const args = ['--name', 'etcd1', '--data-dir', join(dir, 'etcd'), '--listen-client-urls', client, '--advertise-client-urls', client, '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `etcd1=${peer}`];
  return { endpoint: `127.0.0.1:${base}`, start: () => spawn('etcd', args, { stdio: 'ignore' }) };
}

function rssBytes(process: ChildProcess): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${process.pid}/status`, 'utf8'));
  if (match === null) throw new Error(`no VmRSS for pid ${process.pid}`);
  return Number(match[1]) * 1024;
}

/** Milliseconds from now until a Put is acknowledged (a new channel each try: the port may not be open). */
async function untilServedWrite(endpoint: string): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < readyTimeoutMs) {
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

function keyOf(i: number): Buffer {
  const key = Buffer.alloc(keySize, 0x30);
  key.write(keyPrefix);
  key.write(String(i).padStart(keySize - keyPrefix.length, '0'), keyPrefix.length);
  return key;
}

/** Puts keys 0..keys-1 in Txns of txnOps puts, clients Txns in flight; returns keys per second. */
async function load(channel: EtcdChannel, round: number): Promise<number> {
  const value = Buffer.alloc(valueSize, 0x61 + round);
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      for (let first = next; first < keys; first = next) {
        next = Math.min(keys, first + txnOps);
        const success = [];
        for (let i = first; i < next; i++) success.push({ request_put: { key: keyOf(i), value } });
        await channel.kv('Txn', { success });
      }
    }),
  );
  return keys / ((performance.now() - started) / 1000);
}

async function headRevision(channel: EtcdChannel): Promise<number> {
  const response = (await channel.kv('Range', { key: Buffer.from('fp-ready') })) as { header: { revision: number | string } };
  return Number(response.header.revision);
}

interface Footprint {
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
  deletedRssMb: number;
  deletedOverEmpty: number;
}

async function measure(target: string, node: Node): Promise<Footprint> {
  const mb = (bytes: number): number => Math.round(bytes / 1048576);
  let process = node.start();
  try {
    await untilServedWrite(node.endpoint);
    const channel = new EtcdChannel(node.endpoint, { callTimeoutMs: 120_000 });
    await sleep(settleMs);
    const empty = rssBytes(process);
    const loadKeysPerSecond = await load(channel, 0);
    await sleep(settleMs);
    const loaded = rssBytes(process);
    channel.close();
    // The load's figures first: a later step that fails (a busy machine) does not lose them.
    if (json) console.log(JSON.stringify({ target, keys, loadKeysPerSecond: Math.round(loadKeysPerSecond), bytesPerKey: Math.round((loaded - empty) / keys) }));

    process.kill('SIGKILL');
    await new Promise((resolve) => process.once('exit', resolve));
    const startedAt = performance.now();
    process = node.start();
    await untilServedWrite(node.endpoint);
    const restartMs = performance.now() - startedAt;
    const again = new EtcdChannel(node.endpoint, { callTimeoutMs: 120_000 });
    await sleep(settleMs);
    const restarted = rssBytes(process);

    await load(again, 1);
    await again.kv('Compact', { revision: await headRevision(again), physical: true });
    await sleep(settleMs);
    const overwritten = rssBytes(process);

    await again.kv('DeleteRange', { key: Buffer.from(keyPrefix), range_end: Buffer.from(keyPrefix.slice(0, -1) + String.fromCharCode(keyPrefix.charCodeAt(keyPrefix.length - 1) + 1)) });
    await again.kv('Compact', { revision: await headRevision(again), physical: true });
    await sleep(settleMs);
    const deleted = rssBytes(process);
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
      deletedRssMb: mb(deleted),
      deletedOverEmpty: Number((deleted / empty).toFixed(3)),
    };
  } finally {
    process.kill('SIGKILL');
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'dkv-footprint-'));
  const base = 21000 + 10 * Math.floor(Math.random() * 800);
  const results: Footprint[] = [];
  try {
    for (const target of targets) {
      const ownBin = join(import.meta.dirname, '..', 'bin', 'dkv.js');
      const node = target === 'dkv' ? dkvNode(dir, base, ownBin) : target === 'base' ? dkvNode(dir, base + 100, baseBin) : etcdNode(dir, base + 5);
      const result = await measure(target, node);
      results.push(result);
      if (json) console.log(JSON.stringify(result));
    }
  } finally {
    if (process.argv.includes('--keep')) console.log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
  if (json) return;
  const columns = Object.keys(results[0] ?? {}) as Array<keyof Footprint>;
  for (const column of columns) console.log(`${column.padEnd(18)} ${results.map((result) => String(result[column]).padStart(12)).join(' ')}`);
}

await main();
