/** The expiration engine's time wheel: unit cases, then random histories against a plain list. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TimeWheel, type TimeWheelOptions, type WheelTimer, wheelLimits } from '../../src/engines/expiry/index.js';
import { RaftAssertionError } from '../../raft/index.js';

const { wheelLevels, wheelSlotsPerAdvanceMax, wheelSlotsPerLevel, wheelTimersDuePerAdvanceMax, wheelTimersMovedPerAdvanceMax } = wheelLimits;
/** Ticks in one turn of the top level: deadlines past it go to the overflow. */
const topTurnTicks = wheelSlotsPerLevel ** wheelLevels;
const budgetMax = wheelTimersDuePerAdvanceMax;

const items = (timers: readonly WheelTimer<string>[]): string[] => timers.map((t) => t.item);

/** Advances with the largest budget until the wheel is caught up; returns every timer and the calls it took. */
function drain<T>(wheel: TimeWheel<T>, nowMs: number, callsMax: number): { timers: WheelTimer<T>[]; calls: number } {
  const timers: WheelTimer<T>[] = [];
  let calls = 0;
  do {
    calls++;
    expect(calls).toBeLessThanOrEqual(callsMax);
    timers.push(...wheel.advance(nowMs, budgetMax));
    expect(wheel.lastAdvanceWork.slots).toBeLessThanOrEqual(wheelSlotsPerAdvanceMax);
    expect(wheel.lastAdvanceWork.moved).toBeLessThanOrEqual(wheelTimersMovedPerAdvanceMax);
  } while (wheel.behind);
  return { timers, calls };
}

describe('TimeWheel', () => {
  it('fires a timer at the first advance at or past its deadline rounded up to the resolution, never before', () => {
    const wheel = new TimeWheel<string>({ resolutionMs: 100, startMs: 1000 });
    const a = wheel.schedule('a', 1250);
    wheel.schedule('b', 1300);
    expect(wheel.size).toBe(2);
    expect(wheel.advance(1249, budgetMax)).toEqual([]);
    // 1250 is past a's deadline but not past the grid time it rounds up to.
    expect(wheel.advance(1299, budgetMax)).toEqual([]);
    expect(items(wheel.advance(1300, budgetMax))).toEqual(['a', 'b']);
    expect(wheel.size).toBe(0);
    expect(wheel.behind).toBe(false);
    expect(wheel.cursorMs).toBe(1300);
    expect(wheel.cancel(a)).toBe(false);
  });

  it('cancels and reschedules in place', () => {
    const wheel = new TimeWheel<string>({ resolutionMs: 10, startMs: 0 });
    const a = wheel.schedule('a', 50);
    const b = wheel.schedule('b', 50);
    const c = wheel.schedule('c', 5_000_000);
    expect(wheel.cancel(b)).toBe(true);
    expect(wheel.cancel(b)).toBe(false);
    expect(wheel.size).toBe(2);
    expect(wheel.reschedule(c, 40)).toBe(c);
    expect(c.deadlineMs).toBe(40);
    expect(wheel.reschedule(a, 60)).toBe(a);
    expect(items(wheel.advance(50, budgetMax))).toEqual(['c']);
    expect(items(wheel.advance(60, budgetMax))).toEqual(['a']);
    // A returned or cancelled timer is scheduled again.
    wheel.reschedule(b, 70);
    wheel.reschedule(a, 70);
    expect(wheel.size).toBe(2);
    expect(items(wheel.advance(70, budgetMax))).toEqual(['b', 'a']);
    wheel.checkInvariants();
  });

  it('returns deadlines at or below the cursor at the next advance, first', () => {
    const wheel = new TimeWheel<string>({ resolutionMs: 100, startMs: 1000 });
    wheel.schedule('on-grid', 1100);
    wheel.schedule('past', 500);
    wheel.schedule('at-cursor', 1000);
    expect(items(wheel.advance(1000, budgetMax))).toEqual(['past', 'at-cursor']);
    expect(items(wheel.advance(1150, budgetMax))).toEqual(['on-grid']);
    // 1120 is below the cursor (1150) but above its tick's grid time (1100).
    wheel.schedule('between', 1120);
    expect(wheel.behind).toBe(true);
    expect(items(wheel.advance(1150, budgetMax))).toEqual(['between']);
    expect(wheel.behind).toBe(false);
  });

  it('keeps deadlines beyond the top level in the overflow and brings them in turn by turn', () => {
    const wheel = new TimeWheel<string>({ resolutionMs: 1, startMs: 7 });
    // Ticks count from 7 here: a turn starts at 7 + k·topTurnTicks. The top level holds the
    // cursor's turn and the next; the last three wait in the overflow at first.
    const deadlines = [topTurnTicks - 1, topTurnTicks + 7, topTurnTicks + 12, 3 * topTurnTicks + 6, 3 * topTurnTicks + 7, 5 * topTurnTicks + 1];
    deadlines.forEach((d, i) => wheel.schedule(`t${i}`, d));
    wheel.checkInvariants();
    for (const [i, d] of deadlines.entries()) {
      expect(wheel.advance(d - 1, budgetMax)).toEqual([]);
      expect(wheel.behind).toBe(false);
      expect(items(wheel.advance(d, budgetMax))).toEqual([`t${i}`]);
      // Each step is a jump over empty slots, not a walk: a handful of slots visited.
      expect(wheel.lastAdvanceWork.slots).toBeLessThanOrEqual(wheelLevels + 1);
      wheel.checkInvariants();
    }
    expect(wheel.size).toBe(0);
  });

  it('carries the rest over to later calls when the budget runs out, in schedule order', () => {
    const wheel = new TimeWheel<number>({ resolutionMs: 100, startMs: 0 });
    // Two deadlines that round up to the same tick (500).
    for (let i = 0; i < 100; i++) wheel.schedule(i, 450 + (i % 2) * 50);
    const batches: number[][] = [];
    do batches.push(wheel.advance(1000, 30).map((t) => t.item));
    while (wheel.behind);
    expect(batches.map((b) => b.length)).toEqual([30, 30, 30, 10]);
    expect(batches.flat()).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(wheel.advance(1000, 0)).toEqual([]);
  });

  it('catches up from an hour behind in a few calls, each with bounded work, nothing lost or repeated', () => {
    const hourMs = 3_600_000;
    const startMs = 1_700_000_000_000;
    const wheel = new TimeWheel<number>({ resolutionMs: 100, startMs });
    // A follower's wheel: scheduled in apply for an hour, never advanced.
    const count = 20_000;
    let seed = 1;
    const deadlines: number[] = [];
    for (let i = 0; i < count; i++) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      deadlines.push(startMs + Math.floor((seed / 2 ** 31) * (hourMs + 60_000)));
      wheel.schedule(i, deadlines[i]!);
    }
    const nowMs = startMs + hourMs;
    const { timers, calls } = drain(wheel, nowMs, 100);
    const due = deadlines.filter((d) => d <= nowMs).length;
    expect(timers.length).toBe(due);
    expect(new Set(timers.map((t) => t.item)).size).toBe(due);
    expect(Math.max(...timers.map((t) => t.deadlineMs))).toBeLessThanOrEqual(nowMs);
    // ~19,700 due at ~17,000 distinct ticks: about 17 calls of 1,024 slots, not 36,000.
    expect(calls).toBeLessThanOrEqual(25);
    expect(wheel.size).toBe(count - due);
    wheel.checkInvariants();
  });

  it('jumps over an empty hour in one call', () => {
    const wheel = new TimeWheel<string>({ resolutionMs: 100, startMs: 0 });
    wheel.schedule('a', 10 * 60_000);
    wheel.schedule('b', 50 * 60_000);
    const { timers, calls } = drain(wheel, 3_600_000, 1);
    expect(items(timers)).toEqual(['a', 'b']);
    expect(calls).toBe(1);
  });

  it('visits no slot for cancelled timers', () => {
    const wheel = new TimeWheel<number>({ resolutionMs: 1, startMs: 0 });
    const timers = Array.from({ length: 5000 }, (_, i) => wheel.schedule(i, 1 + i * 13));
    for (const t of timers) wheel.cancel(t);
    expect(wheel.advance(5000 * 13, budgetMax)).toEqual([]);
    expect(wheel.lastAdvanceWork).toEqual({ slots: 0, moved: 0, due: 0 });
    expect(wheel.behind).toBe(false);
  });

  it('moves at most timersMovedPerAdvanceMax timers per call out of a full higher-level slot', () => {
    const movedMax = 7;
    const wheel = new TimeWheel<number>({ resolutionMs: 1, startMs: 0, timersMovedPerAdvanceMax: movedMax });
    // 1,000 timers in one level-1 slot (ticks 128..191): every one is cascaded before it is due.
    for (let i = 0; i < 1000; i++) wheel.schedule(i, 128 + (i % 64));
    let calls = 0;
    let returned = 0;
    while (returned < 1000) {
      calls++;
      expect(calls).toBeLessThan(2000);
      const out = wheel.advance(1000, budgetMax);
      // While the slot is cascading, only what is due at its first tick can come back.
      returned += out.length;
      expect(wheel.lastAdvanceWork.moved).toBeLessThanOrEqual(movedMax);
    }
    expect(calls).toBeGreaterThanOrEqual(Math.ceil(1000 / movedMax));
    expect(wheel.behind).toBe(false);
  });

  it('cascades the next slot ahead of time, so advancing every tick returns every timer on time', () => {
    const movedMax = 100;
    const wheel = new TimeWheel<number>({ resolutionMs: 1, startMs: 0, timersMovedPerAdvanceMax: movedMax });
    // 3,000 timers in level-1 slots 2..4 (ticks 128..319): more than one call may move.
    for (let i = 0; i < 3000; i++) wheel.schedule(i, 128 + ((i * 37) % 192));
    let returned = 0;
    for (let nowMs = 1; nowMs <= 320; nowMs++) {
      for (const t of wheel.advance(nowMs, budgetMax)) {
        expect(t.deadlineMs).toBe(nowMs);
        returned++;
      }
      expect(wheel.behind).toBe(false);
      expect(wheel.lastAdvanceWork.moved).toBeLessThanOrEqual(movedMax);
    }
    expect(returned).toBe(3000);
  });

  it('finishes a cascade bigger than one call can move on the next calls', () => {
    const wheel = new TimeWheel<number>({ resolutionMs: 1, startMs: 0, timersMovedPerAdvanceMax: 7, slotsPerAdvanceMax: wheelLevels + 1 });
    // All in one level-2 slot, spread over its level-1 and level-0 slots.
    const base = 3 * wheelSlotsPerLevel ** 2;
    for (let i = 0; i < 500; i++) wheel.schedule(i, base + ((i * 37) % wheelSlotsPerLevel ** 2));
    const seen = new Set<number>();
    let calls = 0;
    let nowMs = base - 1;
    while (seen.size < 500) {
      calls++;
      expect(calls).toBeLessThan(2000);
      nowMs += 50;
      for (const t of wheel.advance(nowMs, 3)) {
        expect(t.deadlineMs).toBeLessThanOrEqual(nowMs);
        expect(seen.has(t.item)).toBe(false);
        seen.add(t.item);
      }
      expect(wheel.lastAdvanceWork.moved).toBeLessThanOrEqual(7);
      expect(wheel.lastAdvanceWork.slots).toBeLessThanOrEqual(wheelLevels + 1);
      wheel.checkInvariants();
    }
    expect(wheel.size).toBe(0);
  });

  it('returns the same timers in the same order for the same operations', () => {
    const run = (): number[] => {
      const wheel = new TimeWheel<number>({ resolutionMs: 10, startMs: 0 });
      const timers: WheelTimer<number>[] = [];
      for (let i = 0; i < 3000; i++) timers.push(wheel.schedule(i, (i * 7919) % 200_000));
      for (let i = 0; i < 3000; i += 3) wheel.cancel(timers[i]!);
      for (let i = 1; i < 3000; i += 5) wheel.reschedule(timers[i]!, (i * 31) % 50_000);
      const out: number[] = [];
      for (let now = 0; now <= 200_000; now += 777) out.push(...wheel.advance(now, 50).map((t) => t.item));
      out.push(...drain(wheel, 200_000, 100).timers.map((t) => t.item));
      return out;
    };
    const first = run();
    // 1,000 cancelled, 200 of them rescheduled (revived).
    expect(first.length).toBe(2200);
    expect(run()).toEqual(first);
  });

  it('does not go back, nor return a timer early, when the clock steps back', () => {
    const wheel = new TimeWheel<string>({ resolutionMs: 100, startMs: 0 });
    wheel.advance(2000, budgetMax);
    wheel.schedule('late', 1800);
    wheel.schedule('early', 1000);
    // The due list is returned in order and stops at the first deadline after nowMs.
    expect(items(wheel.advance(1500, budgetMax))).toEqual([]);
    expect(wheel.cursorMs).toBe(2000);
    expect(wheel.behind).toBe(true);
    expect(items(wheel.advance(2000, budgetMax))).toEqual(['late', 'early']);
  });

  it('refuses bad arguments and foreign timers', () => {
    const wheel = new TimeWheel<string>({ resolutionMs: 100, startMs: 0 });
    const other = new TimeWheel<string>({ resolutionMs: 100, startMs: 0 });
    expect(() => wheel.schedule('x', -1)).toThrow(RaftAssertionError);
    expect(() => wheel.schedule('x', 1.5)).toThrow(RaftAssertionError);
    expect(() => wheel.schedule('x', Number.NaN)).toThrow(RaftAssertionError);
    expect(() => wheel.advance(100, budgetMax + 1)).toThrow(RaftAssertionError);
    expect(() => wheel.advance(100, -1)).toThrow(RaftAssertionError);
    expect(() => wheel.cancel({ item: 'x', deadlineMs: 5 })).toThrow(RaftAssertionError);
    expect(() => other.cancel(wheel.schedule('x', 500))).toThrow(RaftAssertionError);
    expect(() => new TimeWheel({ resolutionMs: 0, startMs: 0 })).toThrow(RaftAssertionError);
    expect(() => new TimeWheel({ resolutionMs: 1, startMs: 0, slotsPerAdvanceMax: wheelSlotsPerAdvanceMax + 1 })).toThrow(RaftAssertionError);
  });
});

// --- Random histories against a model: a plain list of live timers. ---

type Op =
  | { kind: 'schedule'; offsetTicks: number; jitterMs: number }
  | { kind: 'scheduleAtCursor'; jitterMs: number }
  | { kind: 'scheduleAtBoundary'; level: number; blocks: number; deltaTicks: number }
  | { kind: 'cancel'; pick: number }
  | { kind: 'reschedule'; pick: number; offsetTicks: number; jitterMs: number }
  | { kind: 'advance'; stepTicks: number; jitterMs: number; budget: number };

/** Offsets in ticks: near the cursor, a few levels up, around and past the top level. */
const offsetTicks = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: -300, max: 300 }) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: wheelSlotsPerLevel ** 3 }) },
  { weight: 1, arbitrary: fc.integer({ min: topTurnTicks - 100, max: topTurnTicks + 100 }) },
  // Beyond the top level's next turn: the overflow.
  { weight: 2, arbitrary: fc.integer({ min: 2 * topTurnTicks, max: 5 * topTurnTicks }) },
);
/** Steps in ticks: small, a few level-2 slots, a turn of the top level; sometimes back. */
const stepTicks = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 100 }) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 3 * wheelSlotsPerLevel ** 2 }) },
  { weight: 2, arbitrary: fc.integer({ min: topTurnTicks / 2, max: 3 * topTurnTicks }) },
  { weight: 1, arbitrary: fc.integer({ min: -50, max: 0 }) },
);
/** Off the grid: reduced modulo the resolution. */
const jitterMs = fc.integer({ min: -99, max: 99 });
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('schedule' as const), offsetTicks, jitterMs }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('scheduleAtCursor' as const), jitterMs: fc.integer({ min: -1, max: 1 }) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('scheduleAtBoundary' as const),
      level: fc.integer({ min: 1, max: wheelLevels }),
      blocks: fc.integer({ min: 1, max: 3 }),
      deltaTicks: fc.integer({ min: -1, max: 1 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('cancel' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reschedule' as const), pick: fc.nat(), offsetTicks, jitterMs }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('advance' as const),
      stepTicks,
      jitterMs,
      budget: fc.oneof(fc.integer({ min: 0, max: 6 }), fc.constant(budgetMax)),
    }),
  },
);
const setup = fc.record({
  resolutionMs: fc.constantFrom(1, 3, 100),
  startMs: fc.oneof(fc.integer({ min: 0, max: 10_000 }), fc.constant(1_700_000_000_000)),
  slotsPerAdvanceMax: fc.constantFrom(wheelLevels + 1, wheelLevels + 3, wheelSlotsPerAdvanceMax),
  timersMovedPerAdvanceMax: fc.constantFrom(1, 4, wheelTimersMovedPerAdvanceMax),
});

interface Live {
  readonly timer: WheelTimer<number>;
  /** Due at the next advance whatever its nowMs reaches: scheduled at or below the cursor. */
  readonly dueNext: boolean;
}

/** A plain check: `expect` per timer per step would dominate the run time. */
function ensure(condition: boolean, what: () => string): void {
  if (!condition) throw new Error(what());
}

function roundUp(ms: number, resolutionMs: number): number {
  return Math.ceil(ms / resolutionMs) * resolutionMs;
}

/** Runs one history, checking the wheel against the model after every operation. */
function check(options: TimeWheelOptions & { slotsPerAdvanceMax: number; timersMovedPerAdvanceMax: number }, ops: readonly Op[], invariants: boolean): void {
  const { resolutionMs } = options;
  const wheel = new TimeWheel<number>(options);
  const handles: WheelTimer<number>[] = [];
  const live = new Map<number, Live>();
  let nowMs = options.startMs;
  let requestedMs = options.startMs;
  let cursorMs = wheel.cursorMs;
  const deadline = (offsetTicks: number, jitterMs: number): number => Math.max(0, requestedMs + offsetTicks * resolutionMs + (jitterMs % resolutionMs));
  // Where off-by-ones hide: at the first tick of a block of 64^level ticks, and next to it.
  const atBoundary = (level: number, blocks: number, deltaTicks: number): number => {
    const span = wheelSlotsPerLevel ** level;
    return (Math.floor(requestedMs / resolutionMs / span) + blocks) * span * resolutionMs + deltaTicks * resolutionMs;
  };
  const expectCaughtUp = (): void => {
    for (const { timer, dueNext } of live.values()) {
      ensure(!dueNext, () => `timer ${timer.item} (deadline ${timer.deadlineMs}, scheduled at or below the cursor) not returned by the next advance`);
      ensure(roundUp(timer.deadlineMs, resolutionMs) > requestedMs, () => `timer ${timer.item} (deadline ${timer.deadlineMs}) not returned by ${requestedMs}`);
    }
  };

  const advance = (budget: number): void => {
    const out = wheel.advance(nowMs, budget);
    ensure(out.length <= budget, () => `${out.length} returned, budget ${budget}`);
    for (const timer of out) {
      // Exactly once, never early.
      ensure(live.get(timer.item)?.timer === timer, () => `timer ${timer.item} returned but not scheduled`);
      ensure(timer.deadlineMs <= nowMs, () => `timer ${timer.item} (deadline ${timer.deadlineMs}) returned early, at ${nowMs}`);
      live.delete(timer.item);
    }
    const work = wheel.lastAdvanceWork;
    ensure(work.slots <= options.slotsPerAdvanceMax && work.moved <= options.timersMovedPerAdvanceMax, () => `work ${JSON.stringify(work)} over its bounds`);
    ensure(work.due === out.length, () => `work.due ${work.due}, returned ${out.length}`);
    ensure(wheel.cursorMs >= cursorMs && wheel.cursorMs <= requestedMs, () => `cursor ${wheel.cursorMs} went back from ${cursorMs} or past ${requestedMs}`);
    cursorMs = wheel.cursorMs;
    // No bound was reached (budget, timers moved, room for one more tick's slots): caught up.
    const unbounded = out.length < budget && work.moved < options.timersMovedPerAdvanceMax && work.slots + wheelLevels + 1 <= options.slotsPerAdvanceMax;
    ensure(!(nowMs === requestedMs && unbounded && wheel.behind), () => `behind at ${nowMs} though no bound was reached`);
    if (!wheel.behind) {
      ensure(wheel.cursorMs === requestedMs, () => `not behind, but the cursor ${wheel.cursorMs} is below ${requestedMs}`);
      expectCaughtUp();
    }
  };

  for (const o of ops) {
    if (o.kind === 'schedule' || o.kind === 'scheduleAtCursor' || o.kind === 'scheduleAtBoundary') {
      const item = handles.length;
      const d =
        o.kind === 'schedule'
          ? deadline(o.offsetTicks, o.jitterMs)
          : o.kind === 'scheduleAtCursor'
            ? Math.max(0, cursorMs + o.jitterMs)
            : atBoundary(o.level, o.blocks, o.deltaTicks);
      handles.push(wheel.schedule(item, d));
      live.set(item, { timer: handles[item]!, dueNext: d <= cursorMs });
    } else if (o.kind === 'cancel' && handles.length > 0) {
      const item = o.pick % handles.length;
      const scheduled = live.delete(item);
      ensure(wheel.cancel(handles[item]!) === scheduled, () => `cancel of timer ${item} did not answer ${scheduled}`);
    } else if (o.kind === 'reschedule' && handles.length > 0) {
      const item = o.pick % handles.length;
      const d = deadline(o.offsetTicks, o.jitterMs);
      ensure(wheel.reschedule(handles[item]!, d) === handles[item], () => 'reschedule returns the same timer');
      live.set(item, { timer: handles[item]!, dueNext: d <= cursorMs });
    } else if (o.kind === 'advance') {
      nowMs = Math.max(0, nowMs + o.stepTicks * resolutionMs + (o.jitterMs % resolutionMs));
      requestedMs = Math.max(requestedMs, nowMs);
      advance(o.budget);
    }
    ensure(wheel.size === live.size, () => `size ${wheel.size}, model ${live.size}`);
    if (invariants) wheel.checkInvariants();
  }
  // Liveness: repeated calls catch up, each doing bounded work.
  nowMs = requestedMs;
  for (let calls = 0; wheel.behind; calls++) {
    ensure(calls < 10_000, () => 'still behind after 10,000 calls');
    advance(budgetMax);
  }
  expectCaughtUp();
  ensure(wheel.size === live.size, () => `size ${wheel.size}, model ${live.size}`);
}

describe('TimeWheel against a model', () => {
  it('fires every timer exactly once unless cancelled, never early, and on time when no bound cut it off', () => {
    fc.assert(
      fc.property(setup, fc.array(op, { minLength: 1, maxLength: 200, size: 'max' }), (options, ops) => check(options, ops, true)),
      { numRuns: 300, seed: 20261127 },
    );
  });

  it('catches a broken wheel through the model alone (invariant checks off)', () => {
    // The same property without checkInvariants, so that what the model sees is proven enough:
    // off-by-ones in placement, cascades and rounding, a skipped overflow turn or due list, a
    // miscounted budget or size each fail it.
    fc.assert(
      fc.property(setup, fc.array(op, { minLength: 1, maxLength: 200, size: 'max' }), (options, ops) => check(options, ops, false)),
      { numRuns: 300, seed: 42 },
    );
  });
});
