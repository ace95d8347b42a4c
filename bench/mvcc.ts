/**
 * MVCC segment store: put / get / range-100 throughput, memory overhead per key, snapshot encode
 * and restore, at 100k and 1M keys (16-byte keys, 100-byte values). Prints numbers; never gates CI.
 *
 *   node --expose-gc --import tsx bench/mvcc.ts [--keys 100000]
 */
import { performance } from 'node:perf_hooks';
import { encodeSnapshot, MvccStore, restoreSnapshot } from '../storage/index.js';

const KEY_BYTES = 16;
const VALUE_BYTES = 100;

function argument(name: string): number | undefined {
  const at = process.argv.indexOf(name);
  return at >= 0 ? Number(process.argv[at + 1]) : undefined;
}

/** Deterministic 16-byte keys in pseudo-random order (a scrambled counter). */
function makeKey(i: number): Uint8Array {
  const key = new Uint8Array(KEY_BYTES);
  let x = Math.imul(i ^ 0x9e3779b9, 0x85ebca6b) >>> 0;
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
  const view = new DataView(key.buffer);
  view.setUint32(0, x);
  view.setUint32(4, i);
  view.setUint32(8, 0x6b65792d);
  view.setUint32(12, i ^ 0x5a5a5a5a);
  return key;
}

function gc(): void {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (collect) {
    collect();
    collect();
  }
}

function memory(): number {
  gc();
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}

function rate(count: number, run: () => void): number {
  const start = performance.now();
  run();
  return count / ((performance.now() - start) / 1000);
}

async function measure(keyCount: number): Promise<Record<string, string>> {
  const keys: Uint8Array[] = [];
  for (let i = 0; i < keyCount; i++) keys.push(makeKey(i));
  const value = new Uint8Array(VALUE_BYTES).fill(0x61);
  const keysBytes = memory();
  const store = new MvccStore();
  const putsPerSecond = rate(keyCount, () => {
    for (const key of keys) store.put(key, value);
  });
  const afterPuts = memory();
  const overhead = (afterPuts - keysBytes) / keyCount - KEY_BYTES - VALUE_BYTES;
  const gets = Math.min(keyCount, 200_000);
  const getsPerSecond = rate(gets, () => {
    for (let i = 0; i < gets; i++) store.range({ key: keys[(i * 7919) % keyCount]! });
  });
  // Keys spread evenly over their first 32 bits: a window that wide holds about 100 of them.
  const width = Math.floor((2 ** 32 * 100) / keyCount);
  const ranges = 20_000;
  let returned = 0;
  const rangesPerSecond = rate(ranges, () => {
    for (let i = 0; i < ranges; i++) {
      const start = keys[(i * 104_729) % keyCount]!;
      const end = new Uint8Array(4);
      new DataView(end.buffer).setUint32(0, Math.min(0xffff_ffff, new DataView(start.buffer).getUint32(0) + width));
      returned += store.range({ key: start, rangeEnd: end, limit: 100 }).kvs.length;
    }
  });
  let snapshotBytes = 0;
  let chunks: Uint8Array[] = [];
  const encodeStart = performance.now();
  for (const chunk of encodeSnapshot(store)) {
    chunks.push(chunk);
    snapshotBytes += chunk.length;
  }
  const encodeMs = performance.now() - encodeStart;
  const restoreStart = performance.now();
  const restored = await restoreSnapshot(chunks);
  const restoreMs = performance.now() - restoreStart;
  if (restored.hashKV().hash !== store.hashKV().hash) throw new Error('restored store differs');
  chunks = [];
  return {
    keys: keyCount.toLocaleString('en'),
    'put/s': Math.round(putsPerSecond).toLocaleString('en'),
    'get/s': Math.round(getsPerSecond).toLocaleString('en'),
    'range-100/s': Math.round(rangesPerSecond).toLocaleString('en'),
    'kvs/range': (returned / ranges).toFixed(0),
    'overhead B/key': overhead.toFixed(0),
    'arena B/key': (store.arenaBytes / keyCount).toFixed(0),
    segments: String(store.segmentCount),
    'snapshot MiB': (snapshotBytes / 1024 / 1024).toFixed(1),
    'encode ms': encodeMs.toFixed(0),
    'restore ms': restoreMs.toFixed(0),
  };
}

async function main(): Promise<void> {
  if ((globalThis as { gc?: unknown }).gc === undefined) console.log('note: run with node --expose-gc for exact memory numbers');
  const only = argument('--keys');
  const sizes = only !== undefined ? [only] : [100_000, 1_000_000];
  const rows: Record<string, string>[] = [];
  for (const size of sizes) rows.push(await measure(size));
  console.table(rows);
}

await main();
