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
 * deadline, so it never fires early. The cursor is the last tick processed. Ticks are counted
 * from the origin (startMs rounded down to the grid).
 *
 * A level-L slot spans 64^L ticks. Level L is a ring of 128 slots holding two level-(L+1) slots'
 * worth of ticks: the one the cursor is in and the next. A timer sits at the lowest level whose
 * window holds its tick, in the slot of its tick's level-L number (tick / 64^L) modulo 128. So
 *
 *   invariant: a timer at level 0 is due at or after the cursor's tick (at it only while that
 *   tick's due timers are being returned); a timer at level L >= 1 is due after the end of the
 *   cursor's level-L slot; every timer is due before the end of the level-(L+1) slot after the
 *   cursor's.
 *
 * When the cursor enters a level-L slot, the level-L slot after it becomes **eligible**: its
 * timers now fit the level below, and are cascaded there with whatever budget an advance has
 * left, ahead of time. Only if that is not done when the cursor reaches the slot (a cursor that
 * jumps far ahead) does the cascade happen on the way, holding the cursor until it is done.
 * Deadlines beyond the top level's next turn wait in an overflow list, which becomes eligible
 * (and is sorted into the top level) each time the cursor enters a new turn. Deadlines at or
 * below the cursor go to a due list, returned first by the next `advance`; so do timers a
 * cascade finds already due (the cursor is behind: it returns them as it goes).
 *
 * Each level keeps an occupancy bitmap, so the cursor jumps to the next tick where anything
 * happens instead of walking empty slots. `advance` bounds the slots it visits, the timers it
 * moves and the timers it returns (limits.ts); whatever is left is taken up by the next call,
 * from where it stopped: nothing is lost or returned twice.
 */
import { assert } from '../../../raft/index.js';
import {
  wheelLevels,
  wheelSlotsPerAdvanceMax,
  wheelSlotsPerLevel,
  wheelTimersDuePerAdvanceMax,
  wheelTimersMovedPerAdvanceMax,
} from './limits.js';

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
/** Slots of one level's ring: the cursor's block of the level above and the next one. */
const ringSlots = 2 * wheelSlotsPerLevel;
const wordsPerRing = ringSlots / 32;
const notASlot = -1;
/**
 * A deadline is stored as two integers below 2^31, high * 2^30 + low: V8 keeps such a field
 * unboxed, but a larger number (epoch ms) in a heap object of its own — 16 more bytes and one
 * more allocation per timer, for every timer once any one timer holds such a number.
 */
const deadlineSplit = 2 ** 30;

class Timer<T> implements WheelTimer<T> {
  readonly item: T;
  deadlineHigh = 0;
  deadlineLow = 0;
  prev: Timer<T> | null = null;
  next: Timer<T> | null = null;
  /** The list holding it; the wheel's `detached` list (never linked into) once returned or cancelled. */
  list: TimerList<T>;

  constructor(item: T, deadlineMs: number, list: TimerList<T>) {
    this.item = item;
    this.setDeadline(deadlineMs);
    this.list = list;
  }

  get deadlineMs(): number {
    return this.deadlineHigh * deadlineSplit + this.deadlineLow;
  }

  setDeadline(deadlineMs: number): void {
    // `| 0` makes both small integers V8 stores as such (an arithmetic result may be a boxed
    // number even when it is a small integer). Both are below 2^30: deadlines are below 2^53.
    const high = Math.floor(deadlineMs / deadlineSplit);
    this.deadlineHigh = high | 0;
    this.deadlineLow = (deadlineMs - high * deadlineSplit) | 0;
  }
}

/** An intrusive doubly linked list: a slot of the wheel, the overflow, the due list. */
class TimerList<T> {
  head: Timer<T> | null = null;
  tail: Timer<T> | null = null;

  constructor(
    readonly wheel: TimeWheel<T>,
    /** The level of a slot, or `notASlot`. */
    readonly level: number,
    /** The slot's place in its level's ring. */
    readonly slot: number,
  ) {}
}

export class TimeWheel<T> {
  private readonly resolutionMs: number;
  /** startMs rounded down to the grid: ticks count from here. */
  private readonly originMs: number;
  private readonly slotsPerAdvanceMax: number;
  private readonly timersMovedPerAdvanceMax: number;
  /** slots[level * 128 + slot]. */
  private readonly slots: TimerList<T>[] = [];
  /** Four 32-bit words per level: bit s of level L is set iff slot s of level L holds a timer. */
  private readonly occupied = new Uint32Array(wheelLevels * wordsPerRing);
  /** Deadlines beyond the top level's next turn. */
  private overflow: TimerList<T>;
  /** The overflow as it was when the cursor entered the current turn: the eligible part of it. */
  private rescan: TimerList<T>;
  /** Deadlines at or below the cursor when scheduled, and timers a cascade found already due. */
  private readonly due: TimerList<T>;
  /** Where returned and cancelled timers point (nothing is ever linked into it). */
  private readonly detached: TimerList<T>;
  /** The cursor's tick, from the origin. */
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
    this.originMs = Math.floor(startMs / resolutionMs) * resolutionMs;
    for (let level = 0; level < wheelLevels; level++) {
      for (let slot = 0; slot < ringSlots; slot++) this.slots.push(new TimerList(this, level, slot));
    }
    this.overflow = new TimerList(this, notASlot, 0);
    this.rescan = new TimerList(this, notASlot, 0);
    this.due = new TimerList(this, notASlot, 0);
    this.detached = new TimerList(this, notASlot, 0);
    this.cursorAtMs = startMs;
    this.requestedMs = startMs;
    this.cursorTick = 0;
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
   * timers one call may handle): call `advance` again soon. False means every timer whose
   * deadline, rounded up to the grid, is at or below the largest nowMs given to `advance` has
   * been returned, and so has every timer scheduled at or below the cursor.
   */
  get behind(): boolean {
    return this.due.head !== null || this.cursorAtMs < this.requestedMs || this.slots[this.cursorTick % ringSlots]!.head !== null;
  }

  /** What the last `advance` did. */
  get lastAdvanceWork(): AdvanceWork {
    return this.work;
  }

  /** O(1). A deadline at or below the cursor is due at the next advance. */
  schedule(item: T, deadlineMs: number): WheelTimer<T> {
    assertTime(deadlineMs, 'deadlineMs');
    const timer = new Timer(item, deadlineMs, this.detached);
    this.insert(timer);
    this.count++;
    return timer;
  }

  /** O(1). False if the timer was already returned by `advance` or cancelled. */
  cancel(timer: WheelTimer<T>): boolean {
    const own = this.own(timer);
    if (own.list === this.detached) return false;
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
    if (own.list === this.detached) this.count++;
    else this.unlink(own);
    own.setDeadline(deadlineMs);
    this.insert(own);
    return own;
  }

  /**
   * Moves the cursor toward `nowMs` and returns due timers (deadline <= nowMs), at most `budget`
   * of them, visiting at most `slotsPerAdvanceMax` slots and moving at most
   * `timersMovedPerAdvanceMax` timers; the rest are returned on later calls (`behind` says so).
   * Returned timers are removed from the wheel. Those in the due list come first (scheduled at
   * or below the cursor, or found due by a cascade while the cursor was behind), then by due
   * tick; within a tick, in an order fixed by the operations.
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
    const targetTick = Math.floor((nowMs - this.originMs) / this.resolutionMs);
    while (this.takeDue(this.slots[this.cursorTick % ringSlots]!, run) && nowMs > this.cursorAtMs) {
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
      // Nothing happens before `next`: stand on the tick before it, where what starts at `next`
      // is eligible, and cascade that first.
      this.approach(next - 1);
      if (!this.cascadeBefore(next, run)) break;
      this.enter(next, targetTick, nowMs);
    }
    this.cascadeAhead(run);
    // What the cascades found due.
    this.takeDue(this.due, run);
    this.work = { slots: this.slotsPerAdvanceMax - run.slotsLeft, moved: this.timersMovedPerAdvanceMax - run.movedLeft, due: run.out.length };
    assert(run.out.length <= budget, 'an advance returns at most its budget');
    return run.out;
  }

  /**
   * Checks every invariant over every timer: O(size + slots). For tests; a broken invariant
   * throws.
   */
  checkInvariants(): void {
    const cursor = this.cursorTick;
    assert(cursor === Math.floor((this.cursorAtMs - this.originMs) / this.resolutionMs), 'the cursor tick is the cursor time on the grid');
    assert(this.cursorAtMs <= this.requestedMs, 'the cursor never passes the time asked for');
    let seen = 0;
    for (const list of this.slots) {
      const level = list.level;
      const occupied = (this.occupied[level * wordsPerRing + (list.slot >>> 5)]! & (1 << (list.slot & 31))) !== 0;
      assert(occupied === (list.head !== null), () => `occupancy bit of level ${level} slot ${list.slot}`);
      seen += this.checkList(list, (tick) => {
        assert(Math.floor(tick / spans[level]!) % ringSlots === list.slot, 'a timer sits in the slot of its tick');
        assert(Math.floor(tick / spans[level + 1]!) <= Math.floor(cursor / spans[level + 1]!) + 1, "a timer is within its level's window");
        if (level === 0) assert(tick >= cursor, 'a timer at level 0 is not overdue');
        else assert(Math.floor(tick / spans[level]!) > Math.floor(cursor / spans[level]!), "a timer at level >= 1 is after the cursor's slot");
      });
    }
    seen += this.checkList(this.overflow, (tick) => assert(Math.floor(tick / topTurnTicks) >= Math.floor(cursor / topTurnTicks) + 2, 'overflow is beyond the next turn'));
    seen += this.checkList(this.rescan, (tick) => assert(Math.floor(tick / topTurnTicks) >= Math.floor(cursor / topTurnTicks) + 1, 'the eligible overflow is beyond this turn'));
    seen += this.checkList(this.due, () => {});
    for (let timer = this.due.head; timer !== null; timer = timer.next) assert(timer.deadlineMs <= this.requestedMs, 'the due list is due');
    assert(this.checkList(this.detached, () => {}) === 0, 'nothing is linked into the detached list');
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
    assert(own.list.wheel === this, 'a timer is cancelled or rescheduled on its own wheel');
    return own;
  }

  /** The tick a timer is due at, from the origin. */
  private tickOf(timer: Timer<T>): number {
    return Math.ceil((timer.deadlineMs - this.originMs) / this.resolutionMs);
  }

  private insert(timer: Timer<T>): void {
    if (timer.deadlineMs <= this.cursorAtMs) this.append(this.due, timer);
    else this.place(timer);
  }

  /** Puts a timer due after the cursor's tick at the lowest level whose window holds it (or the overflow). */
  private place(timer: Timer<T>): void {
    const tick = this.tickOf(timer);
    const cursor = this.cursorTick;
    assert(tick > cursor, 'a timer placed in the wheel is due after the cursor');
    for (let level = 0; level < wheelLevels; level++) {
      const above = spans[level + 1]!;
      if (Math.floor(tick / above) <= Math.floor(cursor / above) + 1) {
        this.append(this.slots[level * ringSlots + (Math.floor(tick / spans[level]!) % ringSlots)]!, timer);
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
      if (list.level !== notASlot) this.occupied[list.level * wordsPerRing + (list.slot >>> 5)]! |= 1 << (list.slot & 31);
    } else list.tail.next = timer;
    list.tail = timer;
  }

  private unlink(timer: Timer<T>): void {
    const list = timer.list;
    assert(list !== this.detached, 'an unlinked timer is in a list');
    if (timer.prev === null) list.head = timer.next;
    else timer.prev.next = timer.next;
    if (timer.next === null) list.tail = timer.prev;
    else timer.next.prev = timer.prev;
    timer.prev = null;
    timer.next = null;
    timer.list = this.detached;
    if (list.head === null && list.level !== notASlot) this.occupied[list.level * wordsPerRing + (list.slot >>> 5)]! &= ~(1 << (list.slot & 31));
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

  /**
   * Moves the timers of an eligible `list` to their level below, within the run's bound. One
   * already due at the run's nowMs (the cursor is behind) goes to the due list instead, so a
   * cursor catching up returns due timers while it cascades rather than after.
   */
  private moveAll(list: TimerList<T>, run: AdvanceRun<T>): boolean {
    while (list.head !== null) {
      if (run.movedLeft === 0) return false;
      const timer = list.head;
      this.unlink(timer);
      if (timer.deadlineMs <= run.nowMs) this.append(this.due, timer);
      else this.place(timer);
      assert(timer.list !== list, 'a cascaded timer moves down');
      run.movedLeft--;
    }
    return true;
  }

  /**
   * Before the cursor enters `tick` (standing on the tick before it): cascades what is still
   * eligible and starts there — the level-L slots that start at it, the eligible overflow if a
   * turn starts at it. False if the run's bound stopped it (the cursor must then stay).
   */
  private cascadeBefore(tick: number, run: AdvanceRun<T>): boolean {
    if (tick % wheelSlotsPerLevel !== 0) return true;
    for (let level = wheelLevels - 1; level >= 1; level--) {
      if (tick % spans[level]! === 0 && !this.moveAll(this.slots[level * ringSlots + (Math.floor(tick / spans[level]!) % ringSlots)]!, run)) return false;
    }
    return tick % topTurnTicks !== 0 || this.moveAll(this.rescan, run);
  }

  /** With what the run has left, cascades the eligible slots (the level-L slot after the cursor's), lowest level first. */
  private cascadeAhead(run: AdvanceRun<T>): void {
    const cursor = this.cursorTick;
    for (let level = 1; level < wheelLevels; level++) {
      const list = this.slots[level * ringSlots + ((Math.floor(cursor / spans[level]!) + 1) % ringSlots)]!;
      if (list.head === null) continue;
      if (run.slotsLeft === 0) return;
      run.slotsLeft--;
      if (!this.moveAll(list, run)) return;
    }
    if (this.rescan.head !== null && run.slotsLeft > 0) {
      run.slotsLeft--;
      this.moveAll(this.rescan, run);
    }
  }

  /** Moves the cursor onto `tick` if it is behind it: nothing happens on the way (no event before `tick + 1`). */
  private approach(tick: number): void {
    if (tick <= this.cursorTick) return;
    this.cursorTick = tick;
    this.cursorAtMs = this.originMs + tick * this.resolutionMs;
  }

  /** Moves the cursor onto `tick`, an event tick whose slots the caller has counted and cascaded. */
  private enter(tick: number, targetTick: number, nowMs: number): void {
    // invariant: the cursor only moves forward, and never past nowMs.
    assert(tick > this.cursorTick && tick <= targetTick, 'the next event is after the cursor and not after nowMs');
    this.cursorTick = tick;
    this.cursorAtMs = tick === targetTick ? nowMs : this.originMs + tick * this.resolutionMs;
    if (tick % topTurnTicks === 0 && this.overflow.head !== null) {
      // A new turn: the overflow of the turn after it becomes eligible. It is sorted out from a
      // list of its own, so timers that still belong further out can go back to the overflow.
      assert(this.rescan.head === null, 'the eligible overflow was sorted out before the turn');
      const rescan = this.overflow;
      this.overflow = this.rescan;
      this.rescan = rescan;
    }
  }

  /**
   * The first tick after the cursor where something happens: a level-0 slot to return, the start
   * of an occupied higher-level slot (its cascade must be done by then), or a new turn with
   * overflow. Infinity if none.
   */
  private nextEventTick(): number {
    const cursor = this.cursorTick;
    let next = Infinity;
    for (let level = 0; level < wheelLevels; level++) {
      const number = Math.floor(cursor / spans[level]!);
      const from = number % ringSlots;
      const slot = this.nextOccupied(level, from);
      if (slot >= 0) next = Math.min(next, (number + ((slot - from + ringSlots) % ringSlots)) * spans[level]!);
    }
    if (this.overflow.head !== null || this.rescan.head !== null) next = Math.min(next, (Math.floor(cursor / topTurnTicks) + 1) * topTurnTicks);
    return next;
  }

  /** The slots entering `tick` visits: its level-0 slot, the slots cascaded on the way, the eligible overflow. */
  private slotsAt(tick: number): number {
    let slots = 1;
    if (tick % wheelSlotsPerLevel !== 0) return slots;
    for (let level = 1; level < wheelLevels; level++) {
      if (tick % spans[level]! === 0 && this.slots[level * ringSlots + (Math.floor(tick / spans[level]!) % ringSlots)]!.head !== null) slots++;
    }
    if (tick % topTurnTicks === 0 && this.rescan.head !== null) slots++;
    return slots;
  }

  /** The first occupied slot of `level` after `from`, going round the ring (never `from` itself), or -1. */
  private nextOccupied(level: number, from: number): number {
    const slot = this.lowestOccupied(level, from + 1);
    if (slot >= 0) return slot;
    const wrapped = this.lowestOccupied(level, 0);
    return wrapped < from ? wrapped : -1;
  }

  /** The lowest occupied slot of `level` at or after `from` (0..128), or -1. */
  private lowestOccupied(level: number, from: number): number {
    for (let word = from >>> 5; word < wordsPerRing; word++) {
      const bits = this.occupied[level * wordsPerRing + word]!;
      const masked = word === from >>> 5 ? (bits & (-1 << (from & 31))) >>> 0 : bits;
      if (masked !== 0) return word * 32 + 31 - Math.clz32(masked & -masked);
    }
    return -1;
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
