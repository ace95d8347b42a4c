/**
 * A hierarchical time wheel: the deadlines of leases, key TTLs and counters with TTL, scheduled
 * and cancelled in O(1) and found due with a bounded amount of work per call.
 *
 * Pure and deterministic: time is a number of ms passed in, and the same operations give the
 * same timers in the same order (the simulator replays from a seed). Replicas schedule and
 * cancel in `apply`; only the leader calls `advance`, so a replica's cursor may be far behind
 * when it becomes leader, and catches up over a few calls.
 *
 * Time is cut into ticks of `resolutionMs` on a fixed grid (tick k is the time k·resolutionMs). A
 * timer is due at tick `ceil(deadlineMs / resolutionMs)`: the first grid time at or after its
 * deadline, so it never fires early. The cursor is the last tick processed. Level L has 64 slots
 * of 64^L ticks each; a timer sits at the lowest level where its due tick and the cursor agree on
 * every base-64 digit above L, in the slot of its own digit L. So
 *
 *   invariant: every occupied slot of level L is strictly after the cursor's digit L, within the
 *   cursor's current level-(L+1) block — except, while the cursor's tick is being processed, the
 *   slots of that tick itself (cascades not finished, or due timers the budget left).
 *
 * When the cursor reaches the first tick of a level-L slot, that slot's timers cascade to lower
 * levels (or, due at that very tick, to its level-0 slot). Deadlines beyond the top level wait in
 * an overflow list, sorted into the wheel each time the cursor enters a new turn of the top
 * level. Deadlines at or below the cursor go to a due list, returned first by the next `advance`.
 *
 * Each level keeps an occupancy bitmap, so the cursor jumps to the next tick where anything
 * happens instead of walking empty slots. `advance` bounds the slots it visits, the timers it
 * moves and the timers it returns (limits.ts); whatever is left is taken up by the next call,
 * from where it stopped: nothing is lost or returned twice.
 */
import { assert } from '../../../raft/index';
import {
  wheelLevels,
  wheelSlotsPerAdvanceMax,
  wheelSlotsPerLevel,
  wheelTimersDuePerAdvanceMax,
  wheelTimersMovedPerAdvanceMax,
} from './limits';

/** A scheduled deadline. The wheel owns the object; `cancel` and `reschedule` take it back. */
export interface WheelTimer<T> {
  readonly item: T;
  readonly deadlineMs: number;
}

export interface TimeWheelOptions {
  /** The length of one tick (ms, an integer >= 1): the wheel's granularity. */
  readonly resolutionMs: number;
  /** Where the cursor starts (ms): deadlines at or below it are due at the first advance. */
  readonly startMs: number;
  /** Slots one advance may visit (default and maximum: `wheelSlotsPerAdvanceMax`); tests lower it. */
  readonly slotsPerAdvanceMax?: number;
  /** Timers one advance may move (default and maximum: `wheelTimersMovedPerAdvanceMax`); tests lower it. */
  readonly timersMovedPerAdvanceMax?: number;
}

/** What the last `advance` did, to check and measure its bounds. */
export interface AdvanceWork {
  /** Slots emptied or cascaded (empty slots skipped over are not visited). */
  readonly slots: number;
  /** Timers cascaded to a lower level or sorted out of the overflow list. */
  readonly moved: number;
  /** Timers returned. */
  readonly due: number;
}

/** The span in ticks of one slot of each level; spans[wheelLevels] is one turn of the top level. */
const spans: readonly number[] = Array.from({ length: wheelLevels + 1 }, (_, level) => wheelSlotsPerLevel ** level);
const topTurnTicks = spans[wheelLevels]!;
const notASlot = -1;

class Timer<T> implements WheelTimer<T> {
  readonly item: T;
  deadlineMs: number;
  prev: Timer<T> | null = null;
  next: Timer<T> | null = null;
  /** The list holding it; null once returned by `advance` or cancelled. */
  list: TimerList<T> | null = null;

  constructor(item: T, deadlineMs: number) {
    this.item = item;
    this.deadlineMs = deadlineMs;
  }
}

/** An intrusive doubly linked list: a slot of the wheel, the overflow, or the due list. */
class TimerList<T> {
  head: Timer<T> | null = null;
  tail: Timer<T> | null = null;

  constructor(
    readonly wheel: TimeWheel<T>,
    /** The level of a slot, or `notASlot`. */
    readonly level: number,
    readonly slot: number,
  ) {}
}

export class TimeWheel<T> {
  private readonly resolutionMs: number;
  private readonly slotsPerAdvanceMax: number;
  private readonly timersMovedPerAdvanceMax: number;
  /** slots[level * 64 + slot]. */
  private readonly slots: TimerList<T>[] = [];
  /** Two 32-bit words per level: bit s of level L is set iff slot s of level L holds a timer. */
  private readonly occupied = new Uint32Array(wheelLevels * 2);
  /** Deadlines beyond the top level's current turn. */
  private overflow: TimerList<T>;
  /** The overflow as it was when the cursor entered the current top turn, being sorted out. */
  private rescan: TimerList<T>;
  /** Deadlines at or below the cursor when scheduled. */
  private readonly due: TimerList<T>;
  private cursorTick: number;
  private cursorAtMs: number;
  /** The largest nowMs an advance was given: the cursor is behind while below it. */
  private requestedMs: number;
  private count = 0;
  private work: AdvanceWork = { slots: 0, moved: 0, due: 0 };

  constructor(options: TimeWheelOptions) {
    const { resolutionMs, startMs } = options;
    assert(Number.isSafeInteger(resolutionMs) && resolutionMs >= 1, () => `resolutionMs must be an integer >= 1, got ${resolutionMs}`);
    assertTime(startMs, 'startMs');
    this.slotsPerAdvanceMax = options.slotsPerAdvanceMax ?? wheelSlotsPerAdvanceMax;
    this.timersMovedPerAdvanceMax = options.timersMovedPerAdvanceMax ?? wheelTimersMovedPerAdvanceMax;
    assert(
      Number.isSafeInteger(this.slotsPerAdvanceMax) && this.slotsPerAdvanceMax >= wheelLevels + 1 && this.slotsPerAdvanceMax <= wheelSlotsPerAdvanceMax,
      () => `slotsPerAdvanceMax must be in [${wheelLevels + 1}, ${wheelSlotsPerAdvanceMax}], got ${this.slotsPerAdvanceMax}`,
    );
    assert(
      Number.isSafeInteger(this.timersMovedPerAdvanceMax) && this.timersMovedPerAdvanceMax >= 1 && this.timersMovedPerAdvanceMax <= wheelTimersMovedPerAdvanceMax,
      () => `timersMovedPerAdvanceMax must be in [1, ${wheelTimersMovedPerAdvanceMax}], got ${this.timersMovedPerAdvanceMax}`,
    );
    this.resolutionMs = resolutionMs;
    for (let level = 0; level < wheelLevels; level++) {
      for (let slot = 0; slot < wheelSlotsPerLevel; slot++) this.slots.push(new TimerList(this, level, slot));
    }
    this.overflow = new TimerList(this, notASlot, 0);
    this.rescan = new TimerList(this, notASlot, 0);
    this.due = new TimerList(this, notASlot, 0);
    this.cursorAtMs = startMs;
    this.requestedMs = startMs;
    this.cursorTick = Math.floor(startMs / resolutionMs);
  }

  /** Timers scheduled and not yet returned or cancelled. */
  get size(): number {
    return this.count;
  }

  /** How far time has been processed (ms): a deadline at or below it is due at the next advance. */
  get cursorMs(): number {
    return this.cursorAtMs;
  }

  /**
   * True if there may be due timers left that a limit cut off (the budget, or the slots and
   * timers one call may handle): call `advance` again soon. False means every timer due at the
   * last advance's nowMs (rounded down to the grid) has been returned.
   */
  get behind(): boolean {
    return this.due.head !== null || this.cursorMs < this.requestedMs || this.tickUnfinished();
  }

  /** What the last `advance` did. */
  get lastAdvanceWork(): AdvanceWork {
    return this.work;
  }

  /** O(1). A deadline at or below the cursor is due at the next advance. */
  schedule(item: T, deadlineMs: number): WheelTimer<T> {
    assertTime(deadlineMs, 'deadlineMs');
    const timer = new Timer(item, deadlineMs);
    this.insert(timer);
    this.count++;
    return timer;
  }

  /** O(1). False if the timer was already returned by `advance` or cancelled. */
  cancel(timer: WheelTimer<T>): boolean {
    const own = this.own(timer);
    if (own.list === null) return false;
    this.unlink(own);
    this.count--;
    return true;
  }

  /**
   * O(1): cancel, then schedule the same timer object at `deadlineMs` (also when it had already
   * been returned or cancelled: it is scheduled again).
   */
  reschedule(timer: WheelTimer<T>, deadlineMs: number): WheelTimer<T> {
    assertTime(deadlineMs, 'deadlineMs');
    const own = this.own(timer);
    if (own.list === null) this.count++;
    else this.unlink(own);
    own.deadlineMs = deadlineMs;
    this.insert(own);
    return own;
  }

  /**
   * Moves the cursor toward `nowMs` and returns due timers (deadline <= nowMs), at most `budget`
   * of them, visiting at most `slotsPerAdvanceMax` slots and moving at most
   * `timersMovedPerAdvanceMax` timers; the rest are returned on later calls (`behind` says so).
   * Returned timers are removed from the wheel. Timers due at the same tick come back in the
   * order they were scheduled; those scheduled at or below the cursor come first.
   *
   * A `nowMs` below the cursor (this node's clock stepped back) moves nothing, and nothing whose
   * deadline is after `nowMs` is returned.
   */
  advance(nowMs: number, budget: number): WheelTimer<T>[] {
    assertTime(nowMs, 'nowMs');
    assert(Number.isSafeInteger(budget) && budget >= 0 && budget <= wheelTimersDuePerAdvanceMax, () => `budget must be in [0, ${wheelTimersDuePerAdvanceMax}], got ${budget}`);
    if (nowMs > this.requestedMs) this.requestedMs = nowMs;
    const run: AdvanceRun<T> = { out: [], budget, nowMs, slotsLeft: this.slotsPerAdvanceMax, movedLeft: this.timersMovedPerAdvanceMax };
    this.takeDue(this.due, run);
    const targetTick = Math.floor(nowMs / this.resolutionMs);
    while (this.finishTick(run) && nowMs > this.cursorAtMs) {
      const next = this.nextEventTick();
      if (next > targetTick) {
        // Nothing happens between the cursor and nowMs: jump there.
        this.cursorTick = targetTick;
        this.cursorAtMs = nowMs;
        break;
      }
      const slots = this.slotsAt(next);
      if (slots > run.slotsLeft) break;
      run.slotsLeft -= slots;
      this.enter(next, targetTick, nowMs);
    }
    this.work = { slots: this.slotsPerAdvanceMax - run.slotsLeft, moved: this.timersMovedPerAdvanceMax - run.movedLeft, due: run.out.length };
    assert(run.out.length <= budget, 'an advance returns at most its budget');
    return run.out;
  }

  /**
   * Checks every invariant over every timer: O(size + slots). For tests; a broken invariant
   * throws.
   */
  checkInvariants(): void {
    let seen = 0;
    const cursor = this.cursorTick;
    assert(cursor === Math.floor(this.cursorAtMs / this.resolutionMs), 'the cursor tick is the cursor time on the grid');
    assert(this.cursorAtMs <= this.requestedMs, 'the cursor never passes the time asked for');
    for (const list of this.slots) {
      const occupied = (this.occupied[list.level * 2 + (list.slot >>> 5)]! & (1 << (list.slot & 31))) !== 0;
      assert(occupied === (list.head !== null), () => `occupancy bit of level ${list.level} slot ${list.slot}`);
      const block = Math.floor(cursor / spans[list.level + 1]!);
      const cursorDigit = digit(cursor, list.level);
      seen += this.checkList(list, (tick) => {
        assert(Math.floor(tick / spans[list.level + 1]!) === block, 'a slot holds ticks of the cursor block');
        assert(digit(tick, list.level) === list.slot, 'a timer sits in the slot of its digit');
        // Only the cursor's own tick may hold timers in the cursor's slot (being processed).
        assert(list.slot > cursorDigit || tick === cursor || (list.level > 0 && tick >= cursor && cursor % spans[list.level]! === 0), 'a timer is after the cursor');
      });
    }
    seen += this.checkList(this.overflow, (tick) => assert(Math.floor(tick / topTurnTicks) > Math.floor(cursor / topTurnTicks), 'overflow is beyond the top turn'));
    seen += this.checkList(this.rescan, (tick) => assert(tick >= cursor, 'a timer being sorted out is not overdue'));
    seen += this.checkList(this.due, () => {});
    assert(this.rescan.head === null || cursor % topTurnTicks === 0, 'the overflow is sorted out only at the start of a top turn');
    assert(seen === this.count, () => `size ${this.count} but ${seen} timers held`);
  }

  private checkList(list: TimerList<T>, check: (tick: number) => void): number {
    let seen = 0;
    let previous: Timer<T> | null = null;
    for (let timer = list.head; timer !== null; timer = timer.next) {
      assert(timer.list === list && timer.prev === previous, 'list links');
      check(this.tickOf(timer));
      previous = timer;
      seen++;
    }
    assert(list.tail === previous, 'list tail');
    return seen;
  }

  private own(timer: WheelTimer<T>): Timer<T> {
    assert(timer instanceof Timer, 'a timer comes from a wheel');
    const own = timer as Timer<T>;
    assert(own.list === null || own.list.wheel === this, 'a timer is cancelled or rescheduled on its own wheel');
    return own;
  }

  private tickOf(timer: Timer<T>): number {
    return Math.ceil(timer.deadlineMs / this.resolutionMs);
  }

  private insert(timer: Timer<T>): void {
    if (timer.deadlineMs <= this.cursorAtMs) this.append(this.due, timer);
    else this.place(timer);
  }

  /** Puts a timer due at or after the cursor's tick into its slot (or the overflow). */
  private place(timer: Timer<T>): void {
    const tick = this.tickOf(timer);
    const cursor = this.cursorTick;
    assert(tick >= cursor, 'a timer placed in the wheel is not overdue');
    for (let level = 0; level < wheelLevels; level++) {
      const above = spans[level + 1]!;
      if (Math.floor(tick / above) === Math.floor(cursor / above)) {
        this.append(this.slots[level * wheelSlotsPerLevel + digit(tick, level)]!, timer);
        return;
      }
    }
    this.append(this.overflow, timer);
  }

  private append(list: TimerList<T>, timer: Timer<T>): void {
    timer.list = list;
    timer.prev = list.tail;
    timer.next = null;
    if (list.tail === null) {
      list.head = timer;
      if (list.level !== notASlot) this.occupied[list.level * 2 + (list.slot >>> 5)]! |= 1 << (list.slot & 31);
    } else list.tail.next = timer;
    list.tail = timer;
  }

  private unlink(timer: Timer<T>): void {
    const list = timer.list;
    assert(list !== null, 'an unlinked timer is in a list');
    if (timer.prev === null) list.head = timer.next;
    else timer.prev.next = timer.next;
    if (timer.next === null) list.tail = timer.prev;
    else timer.next.prev = timer.prev;
    timer.prev = null;
    timer.next = null;
    timer.list = null;
    if (list.head === null && list.level !== notASlot) this.occupied[list.level * 2 + (list.slot >>> 5)]! &= ~(1 << (list.slot & 31));
  }

  /** Returns timers from the head of `list` until it is empty, the budget is spent or one is not due. */
  private takeDue(list: TimerList<T>, run: AdvanceRun<T>): boolean {
    while (list.head !== null) {
      const timer = list.head;
      if (run.out.length >= run.budget || timer.deadlineMs > run.nowMs) return false;
      this.unlink(timer);
      this.count--;
      run.out.push(timer);
    }
    return true;
  }

  /** Moves the timers of `list` to where they belong relative to the cursor, within the run's bound. */
  private moveAll(list: TimerList<T>, run: AdvanceRun<T>): boolean {
    while (list.head !== null) {
      if (run.movedLeft === 0) return false;
      const timer = list.head;
      this.unlink(timer);
      this.place(timer);
      run.movedLeft--;
    }
    return true;
  }

  /**
   * Processes the cursor's tick: cascades the higher-level slots that start there, sorts out the
   * overflow at the start of a top turn, returns the timers due at the tick. False if a bound
   * stopped it (the cursor must then stay on this tick).
   */
  private finishTick(run: AdvanceRun<T>): boolean {
    const cursor = this.cursorTick;
    if (cursor % wheelSlotsPerLevel === 0) {
      for (let level = wheelLevels - 2; level >= 1; level--) {
        if (!this.moveAll(this.slots[level * wheelSlotsPerLevel + digit(cursor, level)]!, run)) return false;
      }
      if (!this.moveAll(this.rescan, run)) return false;
    }
    return this.takeDue(this.slots[digit(cursor, 0)]!, run);
  }

  /** Whether the cursor's tick still has timers to cascade, sort out or return. */
  private tickUnfinished(): boolean {
    const cursor = this.cursorTick;
    if (this.slots[digit(cursor, 0)]!.head !== null) return true;
    if (cursor % wheelSlotsPerLevel !== 0) return false;
    if (this.rescan.head !== null) return true;
    for (let level = 1; level < wheelLevels; level++) if (this.slots[level * wheelSlotsPerLevel + digit(cursor, level)]!.head !== null) return true;
    return false;
  }

  /**
   * The first tick after the cursor where something happens: a level-0 slot to return, a
   * higher-level slot to cascade, or a new top turn with overflow to sort out. Infinity if none.
   */
  private nextEventTick(): number {
    const cursor = this.cursorTick;
    // The lowest level with an occupied slot after the cursor's digit wins: a level-L slot ahead
    // of the cursor starts after the end of the cursor's level-(L-1) block, which holds every
    // occupied slot of the levels below.
    for (let level = 0; level < wheelLevels; level++) {
      const slot = this.nextOccupied(level, digit(cursor, level) + 1);
      if (slot >= 0) return Math.floor(cursor / spans[level + 1]!) * spans[level + 1]! + slot * spans[level]!;
    }
    if (this.overflow.head !== null) return (Math.floor(cursor / topTurnTicks) + 1) * topTurnTicks;
    return Infinity;
  }

  /** The slots processing `tick` visits: its level-0 slot, the slots it cascades, the overflow. */
  private slotsAt(tick: number): number {
    let slots = 1;
    if (tick % wheelSlotsPerLevel === 0) {
      for (let level = 1; level < wheelLevels; level++) {
        if (tick % spans[level]! === 0 && this.slots[level * wheelSlotsPerLevel + digit(tick, level)]!.head !== null) slots++;
      }
      if (tick % topTurnTicks === 0 && this.overflow.head !== null) slots++;
    }
    return slots;
  }

  /** Moves the cursor onto `tick`, an event tick whose slots the caller has counted. */
  private enter(tick: number, targetTick: number, nowMs: number): void {
    // invariant: the cursor only moves forward, and never past nowMs.
    assert(tick > this.cursorTick && tick <= targetTick, 'the next event is after the cursor and not after nowMs');
    this.cursorTick = tick;
    this.cursorAtMs = tick === targetTick ? nowMs : tick * this.resolutionMs;
    if (tick % topTurnTicks === 0 && this.overflow.head !== null) {
      // A new top turn: the overflow is sorted out from a list of its own, so timers that still
      // belong beyond the top level can go back to the (new, empty) overflow.
      assert(this.rescan.head === null, 'the previous turn sorted out its overflow');
      const rescan = this.overflow;
      this.overflow = this.rescan;
      this.rescan = rescan;
    }
  }

  /** The first occupied slot of `level` at or after `from` (0..64), or -1. */
  private nextOccupied(level: number, from: number): number {
    if (from < 32) {
      const low = lowestBitFrom(this.occupied[level * 2]!, from);
      if (low >= 0) return low;
    }
    const high = lowestBitFrom(this.occupied[level * 2 + 1]!, Math.max(0, from - 32));
    return high >= 0 ? high + 32 : -1;
  }
}

interface AdvanceRun<T> {
  readonly out: Timer<T>[];
  readonly budget: number;
  readonly nowMs: number;
  slotsLeft: number;
  movedLeft: number;
}

function assertTime(ms: number, what: string): void {
  assert(Number.isSafeInteger(ms) && ms >= 0, () => `${what} must be a non-negative integer (ms), got ${ms}`);
}

/** Digit `level` of `tick` in base 64. */
function digit(tick: number, level: number): number {
  return Math.floor(tick / spans[level]!) % wheelSlotsPerLevel;
}

/** The lowest set bit of `word` at position >= from (0..32), or -1. */
function lowestBitFrom(word: number, from: number): number {
  if (from >= 32) return -1;
  const masked = (word & (-1 << from)) >>> 0;
  if (masked === 0) return -1;
  return 31 - Math.clz32(masked & -masked);
}
