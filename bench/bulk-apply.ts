/**
 * The apply side of a bulk load, in one process with no network and no disk: Txns of --txn-ops
 * puts (the footprint bench's keys: 16 bytes, in order; 100-byte values) encoded as a client
 * sends them, applied by the KV engine with the watch hub remembering their events, and answered
 * (the response encoded). Prints microseconds per key for each step (wall time; and the
 * process's CPU time for all of them, which a busy machine's waits do not inflate) and heap growth
 * per key. Never gates CI.
 *
 *   node --expose-gc --import tsx bench/bulk-apply.ts [--keys 500000] [--txn-ops 128] [--rounds 3]
 *     [--in-flight 8]  (Txns are applied in a shuffled order within each run of this many, as
 *     when that many clients load at once; 1: in key order)
 */
import { performance } from 'node:perf_hooks';
import { KvCommandKind, KvEngine, kvCommand, txnToWire } from '../src/engines/kv/index.js';
import { WatchHub } from '../src/engines/watch/hub.js';
import type { ApplyContext } from '../src/engines/index.js';
import { etcdType } from '../src/etcd-proto.js';

function argument(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
}

const keys = argument('--keys', 500_000);
const txnOps = argument('--txn-ops', 128);
const rounds = argument('--rounds', 3);
const inFlight = argument('--in-flight', 8);
const keyBytes = 16;
const valueBytes = 100;
const keyPrefix = 'fp/';

const TxnRequest = etcdType('etcdserverpb.TxnRequest');
const TxnResponse = etcdType('etcdserverpb.TxnResponse');

function keyOf(i: number): Buffer {
  const key = Buffer.alloc(keyBytes, 0x30);
  key.write(keyPrefix);
  key.write(String(i).padStart(keyBytes - keyPrefix.length, '0'), keyPrefix.length);
  return key;
}

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/** The Txns of one load, as their wire bytes. */
function payloads(round: number): Buffer[] {
  const value = Buffer.alloc(valueBytes, 0x61 + round);
  const out: Buffer[] = [];
  for (let first = 0; first < keys; first += txnOps) {
    const success = [];
    for (let i = first; i < Math.min(keys, first + txnOps); i++) success.push({ request_put: { key: keyOf(i), value } });
    out.push(Buffer.from(TxnRequest.encode({ success }).finish()));
  }
  // Clients' Txns reach the log in no fixed order: shuffle each run of inFlight (a fixed seed).
  let seed = 0x2545f491;
  for (let start = 0; start < out.length; start += inFlight) {
    for (let i = Math.min(out.length, start + inFlight) - 1; i > start; i--) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      const j = start + (seed % (i - start + 1));
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
  }
  return out;
}

function run(round: number, engine: KvEngine, hub: WatchHub): void {
  const txns = payloads(round);
  gc();
  const heapBefore = process.memoryUsage();
  const cpuBefore = process.cpuUsage();
  let applyMs = 0;
  let watchMs = 0;
  let answerMs = 0;
  let index = round * txns.length;
  for (const raw of txns) {
    const context: ApplyContext = { index: ++index, term: 1, nowMs: 0, proposer: 1, requestId: index };
    const t0 = performance.now();
    const applied = engine.apply(kvCommand(KvCommandKind.Txn, raw), context);
    const t1 = performance.now();
    hub.onApplied(applied.events);
    const t2 = performance.now();
    const outcome = applied.outcome;
    if (outcome.kind !== 'txn') throw new Error(`txn applied as ${outcome.kind}`);
    const header = { cluster_id: 1, member_id: 1, revision: outcome.result.revision, raft_term: 1 };
    TxnResponse.encode({ header, ...txnToWire(outcome.result, header) }).finish();
    answerMs += performance.now() - t2;
    applyMs += t1 - t0;
    watchMs += t2 - t1;
  }
  const cpu = process.cpuUsage(cpuBefore);
  gc();
  const heapAfter = process.memoryUsage();
  const perKey = (ms: number): string => ((ms * 1000) / keys).toFixed(2);
  const grown = (field: 'heapUsed' | 'arrayBuffers'): number => Math.round((heapAfter[field] - heapBefore[field]) / keys);
  console.log(
    JSON.stringify({ round, keys, segments: engine.mvcc.segmentCount, applyUsPerKey: perKey(applyMs), watchUsPerKey: perKey(watchMs), answerUsPerKey: perKey(answerMs), cpuUsPerKey: perKey((cpu.user + cpu.system) / 1000), heapBytesPerKey: grown('heapUsed'), arrayBufferBytesPerKey: grown('arrayBuffers') }),
  );
}

const engine = new KvEngine();
const hub = new WatchHub(() => engine.mvcc);
for (let round = 0; round < rounds; round++) {
  // Round 0 loads the keys; later rounds overwrite them (compacting first, as the footprint bench does).
  if (round > 0) engine.mvcc.compact(engine.mvcc.revision);
  run(round, engine, hub);
}
