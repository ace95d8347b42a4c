/**
 * 1,000,000 keys with TTLs on one node: the TTL engine driven directly, on simulated time. A data
 * shard's state machine applies dkv.v1 Puts with ttl_ms spread uniformly over --spread-ms; then a
 * leader ticks every --tick-ms of simulated time, and the Expire commands it proposes are applied
 * at once, as one commit at that tick's time. Prints expiry lateness (the tick time of the apply
 * minus the key's deadline), the most keys proposed in one tick, the TTL bookkeeping's memory per
 * key (records and wheel timers: the heap with TTLs minus the heap of the same puts without),
 * and the time of a tick (the leader's duty, and the duty plus applying what it proposed), as wall
 * time and as this process's CPU time (on a shared machine the wall time includes waiting for a CPU).
 * Prints numbers; never gates CI.
 *
 *   node --expose-gc --import tsx bench/ttl-expiry.ts [--keys 1000000] [--spread-ms 30000] [--tick-ms 100]
 */
import { performance } from 'node:perf_hooks';
import type { EngineCommand, LeaderContext } from '../src/engines/index.js';
import { dkvPutCommand, ttlLimits, ttlOutcome } from '../src/engines/ttl/index.js';
import { dkvType } from '../src/etcd-proto.js';
import { type ShardStateMachine, composeStateMachine, encodeEnvelope, ttlEngineOf } from '../src/runtime/index.js';

const KEY_BYTES = 16;
const VALUE_BYTES = 32;
/** The leader's clock at the start (ms since 1970, as a real leader's). */
const START_MS = 1_767_225_600_000;

function argument(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
}

const keyCount = argument('--keys', 1_000_000);
const spreadMs = argument('--spread-ms', 30_000);
const tickMs = argument('--tick-ms', 100);

/** 16-byte keys in pseudo-random order; bytes 4..7 hold the key's number. */
function makeKey(i: number): Buffer {
  const key = Buffer.alloc(KEY_BYTES);
  let x = Math.imul(i ^ 0x9e3779b9, 0x85ebca6b) >>> 0;
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
  key.writeUInt32BE(x, 0);
  key.writeUInt32BE(i, 4);
  key.writeUInt32BE(0x74746c2d, 8);
  key.writeUInt32BE(i ^ 0x5a5a5a5a, 12);
  return key;
}

/** A TTL in [1, spreadMs] for key i (deterministic). */
function ttlOf(i: number): number {
  const x = Math.imul(i + 0x632be5ab, 0x2545f491) >>> 0;
  return 1 + (Math.floor((x / 2 ** 32) * spreadMs) % Math.max(1, spreadMs));
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

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

class Node {
  readonly machine: ShardStateMachine = composeStateMachine('data', { electionTimeoutMs: 1000 });
  private index = 0;

  apply(command: EngineCommand, timestampMs: number): unknown {
    this.index++;
    const data = encodeEnvelope({ ...command, timestampMs, proposer: 1, requestId: this.index });
    return this.machine.apply({ index: this.index, term: 1, type: 'normal', data })?.outcome;
  }
}

const PutRequest = dkvType('dkv.v1.PutRequest');
const value = Buffer.alloc(VALUE_BYTES, 0x61);

/** A node that leads from the start and applied `keyCount` dkv Puts at START_MS (with or without TTLs). */
function loaded(withTtl: boolean): { node: Node; putsPerSecond: number } {
  const node = new Node();
  ttlEngineOf(node.machine).onLeadership(true, { shardId: 1, term: 1, nowMs: START_MS, propose: () => undefined });
  const started = performance.now();
  for (let i = 0; i < keyCount; i++) {
    const request = PutRequest.encode({ key: makeKey(i), value, ttl_ms: withTtl ? ttlOf(i) : 0 }).finish();
    node.apply(dkvPutCommand(request), START_MS);
  }
  return { node, putsPerSecond: keyCount / ((performance.now() - started) / 1000) };
}

function main(): void {
  if ((globalThis as { gc?: unknown }).gc === undefined) console.log('note: run with node --expose-gc for exact memory numbers');
  console.log(`ttl-expiry: ${keyCount.toLocaleString('en-US')} keys, TTLs spread over ${spreadMs} ms, a leader tick every ${tickMs} ms (simulated), wheel resolution ${ttlLimits.ttlWheelResolutionMs} ms, at most ${ttlLimits.ttlExpiriesPerTickMax} keys per tick`);

  // The same puts without TTLs, for the memory baseline.
  let before = memory();
  let plain: Node | undefined = loaded(false).node;
  const plainBytes = memory() - before;
  void plain;
  plain = undefined;

  before = memory();
  const { node, putsPerSecond } = loaded(true);
  const ttlBytes = memory() - before;
  const ttls = ttlEngineOf(node.machine);
  if (ttls.size !== keyCount) throw new Error(`${ttls.size} TTLs recorded, expected ${keyCount}`);

  const deadlines = new Float64Array(keyCount);
  for (let i = 0; i < keyCount; i++) deadlines[i] = START_MS + ttlOf(i);
  const lateness = new Float64Array(keyCount);
  let expired = 0;
  const dutyMs: number[] = [];
  const tickTotalMs: number[] = [];
  const tickCpuMs: number[] = [];
  let maxKeysPerTick = 0;
  let ticks = 0;
  const proposed: EngineCommand[] = [];
  const context = (nowMs: number): LeaderContext => ({ shardId: 1, term: 1, nowMs, propose: (c) => proposed.push(c) });
  const wallStarted = performance.now();
  for (let now = START_MS + tickMs; ttls.size > 0; now += tickMs) {
    ticks++;
    proposed.length = 0;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    ttls.leaderTick(context(now));
    const t1 = performance.now();
    let keysThisTick = 0;
    for (const command of proposed) {
      const outcome = ttlOutcome(node.apply(command, now));
      if (outcome.kind !== 'expired') throw new Error(`an expiry applied as ${outcome.kind}`);
      for (const event of outcome.events) {
        const i = Buffer.from(event.kv.key.buffer, event.kv.key.byteOffset, event.kv.key.byteLength).readUInt32BE(4);
        lateness[expired++] = now - deadlines[i]!;
      }
      keysThisTick += outcome.deleted;
    }
    const t2 = performance.now();
    const cpu = process.cpuUsage(cpu0);
    tickCpuMs.push((cpu.user + cpu.system) / 1000);
    dutyMs.push(t1 - t0);
    tickTotalMs.push(t2 - t0);
    maxKeysPerTick = Math.max(maxKeysPerTick, keysThisTick);
    if (ticks > 10 * (spreadMs / tickMs) + 10_000) throw new Error('expiry does not finish');
  }
  const wallSeconds = (performance.now() - wallStarted) / 1000;
  if (expired !== keyCount) throw new Error(`${expired} keys expired, expected ${keyCount}`);
  const late = lateness.sort();
  const duty = Float64Array.from(dutyMs).sort();
  const total = Float64Array.from(tickTotalMs).sort();
  const cpuTotal = Float64Array.from(tickCpuMs).sort();
  const ms = (x: number): string => x.toFixed(2);

  console.log(`puts applied: ${Math.round(putsPerSecond).toLocaleString('en-US')}/s (dkv Put with ttl_ms through the state machine)`);
  console.log(`ticks: ${ticks} simulated (${(ticks * tickMs) / 1000} s) in ${wallSeconds.toFixed(1)} s of wall time; every key expired: ${expired.toLocaleString('en-US')}`);
  console.log(`expiry lateness (ms, simulated): p50 ${ms(percentile(late, 50))}  p99 ${ms(percentile(late, 99))}  max ${ms(late[late.length - 1]!)}  min ${ms(late[0]!)}`);
  console.log(`keys proposed per tick: max ${maxKeysPerTick.toLocaleString('en-US')} (mean ${Math.round(keyCount / ticks).toLocaleString('en-US')})`);
  console.log(
    `memory per key: TTL records + wheel ${Math.round((ttlBytes - plainBytes) / keyCount)} B (heap with TTLs ${Math.round(ttlBytes / keyCount)} B - without ${Math.round(plainBytes / keyCount)} B per key)`,
  );
  console.log(`wall time per tick (ms): leader duty p50 ${ms(percentile(duty, 50))} p99 ${ms(percentile(duty, 99))} max ${ms(duty[duty.length - 1]!)}; duty + apply p50 ${ms(percentile(total, 50))} p99 ${ms(percentile(total, 99))} max ${ms(total[total.length - 1]!)}`);
  console.log(`CPU time per tick, duty + apply (ms; GC included, other processes not): p50 ${ms(percentile(cpuTotal, 50))} p99 ${ms(percentile(cpuTotal, 99))} max ${ms(cpuTotal[cpuTotal.length - 1]!)}`);
}

main();
