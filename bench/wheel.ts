/**
 * The expiration engine's time wheel at 1,000,000 timers: schedule, cancel and reschedule ns/op,
 * heap bytes per scheduled timer, then the time and work of each advance and the expiry lateness
 * (in simulated time) while the deadlines fall due — advancing every tick, and for a follower's
 * wheel, never advanced, that becomes leader an hour after it started.
 * Prints numbers; never gates CI.
 *
 *   node --expose-gc --import tsx bench/wheel.ts [--timers 1000000] [--spread-ms 60000]
 *     [--resolution-ms 100] [--budget 4096]
 */
import { performance } from 'node:perf_hooks';
import { TimeWheel, type WheelTimer, wheelLimits } from '../src/engines/index.js';

function argument(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
}

const timerCount = argument('--timers', 1_000_000);
const spreadMs = argument('--spread-ms', 60_000);
const resolutionMs = argument('--resolution-ms', 100);
const budget = argument('--budget', wheelLimits.wheelTimersDuePerAdvanceMax);
/** Leader timestamps are epoch milliseconds (not small integers). */
const startMs = 1_767_225_600_000;
const hourMs = 3_600_000;

function gc(): void {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (collect) {
    collect();
    collect();
  }
}

function heapBytes(): number {
  gc();
  return process.memoryUsage().heapUsed;
}

/** Deterministic deadlines spread uniformly over [fromMs, fromMs + spreadMs). */
function deadlines(fromMs: number, seed: number): Float64Array {
  const out = new Float64Array(timerCount);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < timerCount; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = fromMs + Math.floor((x / 2 ** 32) * spreadMs);
  }
  return out;
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

interface AdvanceStats {
  calls: number;
  /** The first call after which the wheel was no longer behind. */
  caughtUpCall: number;
  callMs: number[];
  maxSlots: number;
  maxMoved: number;
  maxDue: number;
  /** nowMs of the returning advance minus the deadline, per returned timer. */
  lateness: Float64Array;
}

/** Calls advance(nowAt(call), budget) until the wheel is empty. */
function run(wheel: TimeWheel<number>, nowAt: (call: number) => number): AdvanceStats {
  const stats: AdvanceStats = { calls: 0, caughtUpCall: -1, callMs: [], maxSlots: 0, maxMoved: 0, maxDue: 0, lateness: new Float64Array(wheel.size) };
  let returned = 0;
  while (wheel.size > 0) {
    const nowMs = nowAt(stats.calls);
    const begin = performance.now();
    const out: WheelTimer<number>[] = wheel.advance(nowMs, budget);
    stats.callMs.push(performance.now() - begin);
    stats.calls++;
    if (stats.caughtUpCall < 0 && !wheel.behind) stats.caughtUpCall = stats.calls;
    const work = wheel.lastAdvanceWork;
    stats.maxSlots = Math.max(stats.maxSlots, work.slots);
    stats.maxMoved = Math.max(stats.maxMoved, work.moved);
    stats.maxDue = Math.max(stats.maxDue, work.due);
    for (const timer of out) {
      if (timer.deadlineMs > nowMs) throw new Error(`timer ${timer.item} fired early`);
      stats.lateness[returned++] = nowMs - timer.deadlineMs;
    }
  }
  stats.lateness.sort();
  return stats;
}

function row(name: string, stats: AdvanceStats): Record<string, string> {
  const callMs = Float64Array.from(stats.callMs).sort();
  return {
    run: name,
    advances: stats.calls.toLocaleString('en'),
    'caught up after': stats.caughtUpCall.toLocaleString('en'),
    'p99 ms/advance': percentile(callMs, 0.99).toFixed(2),
    'max ms/advance': callMs[callMs.length - 1]!.toFixed(2),
    'max slots': String(stats.maxSlots),
    'max moved': stats.maxMoved.toLocaleString('en'),
    'max due': stats.maxDue.toLocaleString('en'),
    'late p50/p99/max ms': [0.5, 0.99, 1].map((p) => percentile(stats.lateness, p).toFixed(0)).join(' / '),
  };
}

function main(): void {
  if ((globalThis as { gc?: unknown }).gc === undefined) console.log('note: run with node --expose-gc for exact memory numbers');
  console.log(
    `${timerCount.toLocaleString('en')} timers over ${spreadMs / 1000} s, resolution ${resolutionMs} ms, budget ${budget}/advance ` +
      `(limits: ${wheelLimits.wheelSlotsPerAdvanceMax} slots, ${wheelLimits.wheelTimersMovedPerAdvanceMax} moved per advance)`,
  );

  // Schedule: heap delta after gc, with the handles' array and the deadlines allocated before.
  const due = deadlines(startMs + resolutionMs, 1);
  const handles = new Array<WheelTimer<number> | null>(timerCount).fill(null);
  const wheel = new TimeWheel<number>({ resolutionMs, startMs });
  const before = heapBytes();
  let begin = performance.now();
  for (let i = 0; i < timerCount; i++) handles[i] = wheel.schedule(i, due[i]!);
  const scheduleNs = ((performance.now() - begin) * 1e6) / timerCount;
  const bytesPerTimer = (heapBytes() - before) / timerCount;

  // Reschedule every timer once (a lease keep-alive), in scrambled order, then back.
  const later = deadlines(startMs + resolutionMs, 2);
  begin = performance.now();
  for (let i = 0; i < timerCount; i++) {
    const at = (i * 7919) % timerCount;
    wheel.reschedule(handles[at]!, later[at]!);
  }
  const rescheduleNs = ((performance.now() - begin) * 1e6) / timerCount;

  // Advance tick by tick until every timer has been returned.
  const firstTick = Math.ceil(startMs / resolutionMs) * resolutionMs;
  const steady = run(wheel, (call) => firstTick + (call + 1) * resolutionMs);

  // Cancel: a fresh wheel of the same timers, cancelled in scrambled order.
  const cancelWheel = new TimeWheel<number>({ resolutionMs, startMs });
  for (let i = 0; i < timerCount; i++) handles[i] = cancelWheel.schedule(i, due[i]!);
  begin = performance.now();
  for (let i = 0; i < timerCount; i++) cancelWheel.cancel(handles[(i * 7919) % timerCount]!);
  const cancelNs = ((performance.now() - begin) * 1e6) / timerCount;
  handles.fill(null);

  // A follower's wheel: started an hour ago, never advanced, deadlines applied in the last minute
  // for the minute to come. It becomes leader halfway through that minute and advances once per
  // tick from then on.
  const follower = new TimeWheel<number>({ resolutionMs, startMs });
  const recent = deadlines(startMs + hourMs, 3);
  for (let i = 0; i < timerCount; i++) follower.schedule(i, recent[i]!);
  const leaderAtMs = startMs + hourMs + spreadMs / 2;
  const catchUp = run(follower, (call) => leaderAtMs + call * resolutionMs);

  console.table([
    {
      'schedule ns/op': scheduleNs.toFixed(0),
      'reschedule ns/op': rescheduleNs.toFixed(0),
      'cancel ns/op': cancelNs.toFixed(0),
      'heap B/timer': bytesPerTimer.toFixed(1),
    },
  ]);
  console.table([row('steady: one advance per tick', steady), row('follower an hour behind becomes leader', catchUp)]);
}

main();
