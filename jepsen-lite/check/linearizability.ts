/**
 * The linearizability checker: is there an order of a history's operations that (1) respects
 * real time — an op that returned before another was called comes first — and (2) is a legal
 * run of the model's sequential specification, with every op answering what it answered?
 *
 * The search is Wing & Gong's, as Lowe improved it and Porcupine runs it:
 * - call and return events sit in a doubly linked list in time order; the search walks it,
 *   and at a call tries to linearize that op now (step the model with its input and output);
 *   if the model accepts, the op's two events are lifted out of the list and the walk restarts
 *   from the head. Meeting a return event means the op it returns must already have been
 *   linearized: a dead end, so the search backtracks (pops the last linearized op, puts its
 *   events back, and tries the next candidate after it). It is iterative, with an explicit stack.
 * - Lowe's memoization: a cache of (set of linearized ops as a bitset, model state) pairs
 *   already reached; reaching one again cannot succeed where it failed before, so it is skipped.
 *   States are interned by their canonical key (one small id per distinct state). The bitset is
 *   stored compactly: ok ops are numbered in call order, and every op that returned before the
 *   search's current point is linearized, so the bitset is all ones up to a frontier and zeros
 *   past the newest linearized op; only the window between (about as wide as the concurrency)
 *   and the pending ops' bits go into the key, so long histories do not cost O(n) per entry.
 * - P-compositionality: linearizability is local, so a history splits into independent
 *   objects where the model allows it (register, counter: per key; lock: per lock) and each
 *   partition is searched alone. set and kv are searched whole (kv: revisions couple keys).
 *
 * History handling:
 * - `fail` ops certainly did not happen and are dropped.
 * - `info` ops may have taken effect at any moment after their call, or never: pending until
 *   the end of the history. They have no return event, so nothing forces them in; the search
 *   succeeds once every `ok` op is linearized, leaving out the pending ops it did not need. Pending ops that can change nothing (reads), or whose effect
 *   could only make later ops harder to accept (the model says which), are dropped. A pending op
 *   is never linearized where it would leave the state as it is, nor where it would strand an
 *   ok candidate the model calls hopeless (a kv op whose revision the store has passed).
 * - Ok reads are never reordered on backtracking: linearizing a read as soon as the model
 *   accepts it dominates delaying it, so interleavings of concurrent reads are not searched.
 * - Events at equal times: calls sort before returns, so ops touching at one instant count as
 *   concurrent (a history with coarse timestamps is never falsely convicted).
 *
 * A search that outruns its time budget (or its memory limit) answers `unknown`, never `ok`.
 * Pure: no I/O, no node:* imports; the clock comes from `options.now`. Malformed input throws a
 * TypeError; a non-linearizable history is a result, never an exception.
 */
import type { ModelName, Operation } from '../history.js';
import { type AnyModel, models } from './models/index.js';

export type Verdict = 'ok' | 'violation' | 'unknown';

export interface PartitionResult {
  /** The partition ('' when the model is whole-history). */
  readonly key: string;
  /** Ops checked in it (after dropping fails). */
  readonly operations: number;
  readonly verdict: Verdict;
  readonly elapsedMs: number;
  /** On violation/unknown: human-readable why. */
  readonly message?: string;
  /** On violation: ids of the ops of the longest linearizable prefix the search found, in linearization order. */
  readonly linearized?: readonly number[];
  /** On violation: ids of the ops that could not be linearized next (the ones to highlight). */
  readonly blocked?: readonly number[];
}

export interface LinearizabilityResult {
  readonly model: ModelName;
  /**
   * How it was decided: `search` (this file's), or `revisions` (a kv history ordered by its
   * revisions against the committed history, `kv-revisions.ts`). Absent: search.
   */
  readonly method?: 'search' | 'revisions';
  /** violation if any partition is; else unknown if any is; else ok. */
  readonly verdict: Verdict;
  readonly partitions: readonly PartitionResult[];
  readonly elapsedMs: number;
  readonly operations: number;
}

export interface CheckOptions {
  /**
   * Wall time for the whole check, over all partitions; default `linearizabilityTimeBudgetMsDefault`.
   * Spent once reached: 0 answers unknown for every partition (how the commands' exit 2 is tested).
   */
  readonly timeBudgetMs?: number;
  /** Milliseconds from any fixed origin; default `performance.now`. */
  readonly now?: () => number;
}

export const linearizabilityTimeBudgetMsDefault = 60_000;
/** Search steps between two looks at the clock (a power of two: the test is a mask). */
export const linearizabilityClockCheckSteps = 256;
/** Estimated bytes the memo cache and the state table may hold (256 MiB) before the search answers unknown. */
export const linearizabilityCacheBytesMax = 2 ** 28;
/** Estimated bytes a cache entry costs beyond its key's characters (the hash table's slot, the string header). */
const cacheEntryOverheadBytes = 64;
/** Blocked ops described in a violation message (all of them are in `blocked`). */
export const linearizabilityBlockedDescribedMax = 8;
/** Characters of the model state shown in a violation message. */
export const linearizabilityStateShownCharsMax = 200;

const clockCheckMask = linearizabilityClockCheckSteps - 1;
if ((linearizabilityClockCheckSteps & clockCheckMask) !== 0) throw new Error('linearizabilityClockCheckSteps must be a power of two');

const statuses: ReadonlySet<string> = new Set(['ok', 'fail', 'info']);

// ---------------------------------------------------------------------------------------------
// Entry point

export function checkLinearizability(model: ModelName, operations: readonly Operation[], options: CheckOptions = {}): LinearizabilityResult {
  const spec = models[model];
  if (spec === undefined) throw new TypeError(`linearizability checker: unknown model ${String(model)}`);
  const budget = options.timeBudgetMs ?? linearizabilityTimeBudgetMsDefault;
  if (!(budget >= 0)) throw new TypeError(`linearizability checker: time budget ${budget} is not >= 0`);
  const now = options.now ?? (() => performance.now());
  const start = now();
  const deadline = start + budget;

  const partitions = partition(spec, operations);
  const results: PartitionResult[] = [];
  let checked = 0;
  for (const [key, ops] of partitions) {
    checked += ops.length;
    const partitionStart = now();
    if (partitionStart >= deadline) {
      results.push({ key, operations: ops.length, verdict: 'unknown', elapsedMs: 0, message: `time budget of ${budget} ms spent before this partition was searched` });
      continue;
    }
    const outcome = new Search(spec, ops, now, deadline, budget).run();
    results.push({ key, operations: ops.length, elapsedMs: now() - partitionStart, ...outcome });
  }
  const verdict: Verdict = results.some((r) => r.verdict === 'violation')
    ? 'violation'
    : results.some((r) => r.verdict === 'unknown')
      ? 'unknown'
      : 'ok';
  return { model, verdict, partitions: results, elapsedMs: now() - start, operations: checked };
}

// ---------------------------------------------------------------------------------------------
// Validation and partitioning

function validateOperation(spec: AnyModel, op: Operation, seen: Set<number>): void {
  const where = `linearizability checker: op ${JSON.stringify(op.id)}`;
  if (!Number.isSafeInteger(op.id)) throw new TypeError(`${where}: id is not a safe integer`);
  if (seen.has(op.id)) throw new TypeError(`${where}: id appears twice`);
  seen.add(op.id);
  if (!statuses.has(op.status)) throw new TypeError(`${where}: unknown status ${String(op.status)}`);
  if (!Number.isFinite(op.call)) throw new TypeError(`${where}: call time ${op.call} is not a number`);
  if (op.ret !== undefined && !(op.ret >= op.call)) throw new TypeError(`${where}: returns at ${op.ret}, before its call at ${op.call}`);
  if (op.status === 'ok') {
    if (op.ret === undefined) throw new TypeError(`${where}: status ok without a return time`);
    if (op.output === undefined) throw new TypeError(`${where}: status ok without an output`);
  }
  spec.validate(op.input, op.status === 'ok' ? op.output : undefined);
}

/** Ops by partition key, fails dropped, in order of each partition's first op. */
function partition(spec: AnyModel, operations: readonly Operation[]): Map<string, Operation[]> {
  const seen = new Set<number>();
  const byKey = new Map<string, Operation[]>();
  for (const op of operations) {
    validateOperation(spec, op, seen);
    if (op.status === 'fail') continue;
    const key = spec.wholeHistory ? '' : spec.partitionKey(op.input);
    let ops = byKey.get(key);
    if (ops === undefined) byKey.set(key, (ops = []));
    ops.push(op);
  }
  return byKey;
}

// ---------------------------------------------------------------------------------------------
// The search

type Outcome = Pick<PartitionResult, 'verdict' | 'message' | 'linearized' | 'blocked'>;

interface SearchOp {
  readonly id: number;
  readonly input: unknown;
  /** Undefined: pending (status info). */
  readonly output: unknown;
  readonly pending: boolean;
  readonly call: number;
  /** Infinity when pending. */
  readonly ret: number;
}

const fullWord = 0xffffffff;

/** 32 bits as two UTF-16 code units: a compact, exact piece of a cache key. */
function wordChars(word: number): string {
  return String.fromCharCode(word & 0xffff, word >>> 16);
}

/**
 * The set of linearized ops: ok ops numbered 0..okCount-1 in call order, then the pending ops.
 * `key()` is exact (two sets have equal keys iff they are equal) and short (see the file's top).
 */
class LinearizedSet {
  private readonly ok: Uint32Array;
  private readonly pending: Uint32Array;
  /** invariant: every word of `ok` below `low` is full. */
  private low = 0;
  /** invariant: every word of `ok` above `high` is zero. */
  private high = 0;

  constructor(private readonly okCount: number, pendingCount: number) {
    this.ok = new Uint32Array(Math.max(1, Math.ceil(okCount / 32)));
    this.pending = new Uint32Array(Math.ceil(pendingCount / 32));
  }

  flip(op: number): void {
    if (op >= this.okCount) {
      const index = op - this.okCount;
      this.pending[index >> 5]! ^= 1 << (index & 31);
      return;
    }
    const word = op >> 5;
    this.ok[word]! ^= 1 << (op & 31);
    if (word < this.low) this.low = word;
    while (this.low < this.ok.length - 1 && this.ok[this.low] === fullWord) this.low++;
    if (word > this.high) this.high = word;
  }

  key(): string {
    while (this.high > this.low && this.ok[this.high] === 0) this.high--;
    let key = `${this.low}:`;
    for (let word = this.low; word <= Math.max(this.low, this.high); word++) key += wordChars(this.ok[word]!);
    if (this.pending.length > 0) {
      key += '|';
      for (const word of this.pending) key += wordChars(word);
    }
    return key;
  }
}

/**
 * One partition's search. Ok ops are numbered 0..okCount-1 in call order; their call (entry 2i)
 * and return (2i + 1) events sit in the main list. Pending ops (numbered from okCount) have no
 * return: they sit in a list of their own, in call order, and are tried only where every ok
 * candidate has failed (at a return event, before backtracking). That order changes nothing
 * about what is explored from a configuration, so the memo stays sound; it makes the common
 * case — a pending op that never took effect, or took effect where an ok op needed it — cheap.
 */
class Search {
  private readonly ops: readonly SearchOp[];
  private readonly okCount: number;
  /** The main list: ok ops' events in time order; `head` is its sentinel; -1 ends it. */
  private readonly next: Int32Array;
  private readonly prev: Int32Array;
  private readonly head: number;
  /** Each ok event's position in time order (pending calls are ranked among them). */
  private readonly rank: Int32Array;
  /** The pending list, indexed by pending number (op - okCount); `pendingHead` is its sentinel. */
  private readonly pendingNext: Int32Array;
  private readonly pendingPrev: Int32Array;
  private readonly pendingHead: number;
  private readonly pendingRank: Int32Array;
  /** 1 for ops the model says can change nothing. */
  private readonly readOnly: Uint8Array;
  private readonly linearized: LinearizedSet;
  private readonly cache = new Set<string>();
  private readonly stateIds = new Map<string, number>();
  private cacheBytes = 0;
  /** The stack of linearized ops: op number, the state before it, and (pending ops) the return event it was tried at. */
  private readonly frameOps: number[] = [];
  private readonly frameStates: unknown[] = [];
  private readonly frameBoundaries: number[] = [];
  private deepest: { linearized: number[]; blocked: number[]; state: unknown } | null = null;

  constructor(
    private readonly spec: AnyModel,
    operations: readonly Operation[],
    private readonly now: () => number,
    private readonly deadline: number,
    private readonly budget: number,
  ) {
    const byCall = (a: Operation, b: Operation): number => a.call - b.call;
    const okOps = operations.filter((op) => op.status === 'ok').sort(byCall);
    const droppable = (input: unknown): boolean => spec.readOnly(input) || spec.droppableWhenPending?.(input) === true;
    const pendingOps = operations.filter((op) => op.status !== 'ok' && !droppable(op.input)).sort(byCall);
    this.ops = [...okOps, ...pendingOps].map((op) => ({
      id: op.id,
      input: op.input,
      output: op.status === 'ok' ? op.output : undefined,
      pending: op.status !== 'ok',
      call: op.call,
      ret: op.status === 'ok' ? op.ret! : Number.POSITIVE_INFINITY,
    }));
    this.okCount = okOps.length;
    this.head = 2 * this.okCount;
    this.next = new Int32Array(2 * this.okCount + 1);
    this.prev = new Int32Array(2 * this.okCount + 1);
    this.rank = new Int32Array(2 * this.okCount);
    this.pendingHead = pendingOps.length;
    this.pendingNext = new Int32Array(pendingOps.length + 1);
    this.pendingPrev = new Int32Array(pendingOps.length + 1);
    this.pendingRank = new Int32Array(pendingOps.length);
    this.readOnly = Uint8Array.from(this.ops, (op) => (spec.readOnly(op.input) ? 1 : 0));
    this.linearized = new LinearizedSet(okOps.length, pendingOps.length);
    this.link();
  }

  /**
   * Lays the events out in time order, calls before returns at equal times. Event e < 2·okCount
   * is an ok op's call or return; e >= 2·okCount is pending op (e - 2·okCount)'s call.
   */
  private link(): void {
    const okEvents = 2 * this.okCount;
    const events = Array.from({ length: okEvents + this.pendingHead }, (_, event) => event);
    const isReturn = (event: number): number => (event < okEvents ? event & 1 : 0);
    const time = (event: number): number => {
      if (event >= okEvents) return this.ops[this.okCount + event - okEvents]!.call;
      const op = this.ops[event >> 1]!;
      return (event & 1) === 0 ? op.call : op.ret;
    };
    events.sort((a, b) => time(a) - time(b) || isReturn(a) - isReturn(b) || a - b);
    let previous = this.head;
    let previousPending = this.pendingHead;
    events.forEach((event, rank) => {
      if (event >= okEvents) {
        const pending = event - okEvents;
        this.pendingRank[pending] = rank;
        this.pendingNext[previousPending] = pending;
        this.pendingPrev[pending] = previousPending;
        previousPending = pending;
        return;
      }
      this.rank[event] = rank;
      this.next[previous] = event;
      this.prev[event] = previous;
      previous = event;
    });
    this.next[previous] = -1;
    this.pendingNext[previousPending] = -1;
  }

  // Dancing links: a removed node keeps its own pointers, so it can be put back in LIFO order.
  private static remove(next: Int32Array, prev: Int32Array, node: number): void {
    next[prev[node]!] = next[node]!;
    if (next[node] !== -1) prev[next[node]!] = prev[node]!;
  }

  private static restore(next: Int32Array, prev: Int32Array, node: number): void {
    next[prev[node]!] = node;
    if (next[node] !== -1) prev[next[node]!] = node;
  }

  /** Takes a linearized op out of its list (an ok op's call and return; a pending op's node). */
  private lift(op: number): void {
    this.linearized.flip(op);
    if (op >= this.okCount) {
      Search.remove(this.pendingNext, this.pendingPrev, op - this.okCount);
      return;
    }
    Search.remove(this.next, this.prev, 2 * op);
    Search.remove(this.next, this.prev, 2 * op + 1);
  }

  /** Undoes `lift`, in reverse order. */
  private unlift(op: number): void {
    this.linearized.flip(op);
    if (op >= this.okCount) {
      Search.restore(this.pendingNext, this.pendingPrev, op - this.okCount);
      return;
    }
    Search.restore(this.next, this.prev, 2 * op + 1);
    Search.restore(this.next, this.prev, 2 * op);
  }

  /** Adds (linearized set, state) to the memo cache; false if it was there already. */
  private remember(stateKey: string): boolean {
    let stateId = this.stateIds.get(stateKey);
    if (stateId === undefined) {
      stateId = this.stateIds.size;
      this.stateIds.set(stateKey, stateId);
      this.cacheBytes += 2 * stateKey.length + cacheEntryOverheadBytes;
    }
    const key = `${stateId};${this.linearized.key()}`;
    if (this.cache.has(key)) return false;
    this.cache.add(key);
    this.cacheBytes += 2 * key.length + cacheEntryOverheadBytes;
    return true;
  }

  /**
   * Linearizes `op` next if the model accepts it and the configuration is new: returns the new
   * state, or undefined (nothing changed). A pending op that would change nothing is better left
   * pending (it can still take effect later, or never): that prunes the 2^k orders of k pending
   * no-ops such as failed cas.
   */
  private tryLinearize(state: unknown, op: number): unknown {
    const { spec } = this;
    const { input, output, pending } = this.ops[op]!;
    const after = spec.step(state, input, output);
    if (after === undefined) return undefined;
    const afterKey = spec.stateKey(after);
    if (pending && (afterKey === spec.stateKey(state) || this.strandsCandidate(after))) return undefined;
    this.lift(op);
    if (this.remember(afterKey)) return after;
    this.unlift(op);
    return undefined;
  }

  /**
   * Whether some ok candidate (an op called before the first return in the list) could never be
   * linearized from `state`. Checked after a pending op: it cuts the search short where a pending
   * write would push the state past an ok op that needs it as it is (a kv revision gap of one
   * filled twice), instead of trying every order of every pending op there.
   */
  private strandsCandidate(state: unknown): boolean {
    const { spec, next, ops } = this;
    if (spec.hopeless === undefined) return false;
    for (let entry = next[this.head]!; entry !== -1 && (entry & 1) === 0; entry = next[entry]!) {
      const op = ops[entry >> 1]!;
      if (spec.hopeless(state, op.input, op.output)) return true;
    }
    return false;
  }

  run(): Outcome {
    const { next, head, pendingNext, frameOps, frameStates, frameBoundaries } = this;
    let state = this.spec.initial();
    let entry = next[head]!;
    /** -2: walking the main list; otherwise the pending op (or -1: none left) tried next at `boundary`. */
    let pendingCursor = -2;
    let boundary = -1;
    for (let steps = 0; ; steps++) {
      if ((steps & clockCheckMask) === 0 && this.now() >= this.deadline) {
        return { verdict: 'unknown', message: `time budget of ${this.budget} ms ran out after ${steps} search steps` };
      }
      if (this.cacheBytes > linearizabilityCacheBytesMax) {
        return { verdict: 'unknown', message: `memo cache reached its limit of ${linearizabilityCacheBytesMax} bytes after ${steps} search steps` };
      }
      if (pendingCursor === -2) {
        if (entry === -1) return { verdict: 'ok' }; // every ok op is linearized
        if ((entry & 1) === 1) {
          // A return: its op should have been linearized by now. Try the pending ops called before it.
          boundary = entry;
          pendingCursor = pendingNext[this.pendingHead]!;
          continue;
        }
        const after = this.tryLinearize(state, entry >> 1);
        if (after === undefined) {
          entry = next[entry]!;
          continue;
        }
        frameOps.push(entry >> 1);
        frameStates.push(state);
        frameBoundaries.push(-1);
        state = after;
        entry = next[head]!;
        continue;
      }
      if (pendingCursor !== -1 && this.pendingRank[pendingCursor]! < this.rank[boundary]!) {
        const op = this.okCount + pendingCursor;
        const after = this.tryLinearize(state, op);
        if (after === undefined) {
          pendingCursor = pendingNext[pendingCursor]!;
          continue;
        }
        frameOps.push(op);
        frameStates.push(state);
        frameBoundaries.push(boundary);
        state = after;
        pendingCursor = -2;
        entry = next[head]!;
        continue;
      }
      // Dead end: backtrack.
      this.noteDeadEnd(state, boundary);
      let op = frameOps.pop();
      // Linearizing an ok read where the model accepts it dominates delaying it (moving it
      // earlier breaks no real-time order and no state), so no alternative to it can succeed
      // either: keep popping. This keeps interleavings of concurrent reads out of the search.
      while (op !== undefined && op < this.okCount && this.readOnly[op] === 1) {
        this.unlift(op);
        frameStates.pop();
        frameBoundaries.pop();
        op = frameOps.pop();
      }
      if (op === undefined) return this.violation();
      state = frameStates.pop();
      const poppedBoundary = frameBoundaries.pop()!;
      this.unlift(op);
      if (op < this.okCount) {
        pendingCursor = -2;
        entry = next[2 * op]!;
      } else {
        boundary = poppedBoundary;
        pendingCursor = pendingNext[op - this.okCount]!;
      }
    }
  }

  /**
   * Keeps the deepest dead end: the linearized prefix and the ok ops that could not go next —
   * first the op whose return was reached (it had to go by then), then the other candidates the
   * model refused.
   */
  private noteDeadEnd(state: unknown, returnEntry: number): void {
    if (this.deepest !== null && this.frameOps.length <= this.deepest.linearized.length) return;
    const due = returnEntry >> 1;
    const blocked = [due];
    for (let entry = this.next[this.head]!; entry !== returnEntry; entry = this.next[entry]!) {
      const op = this.ops[entry >> 1]!;
      if ((entry & 1) === 0 && entry >> 1 !== due && this.spec.step(state, op.input, op.output) === undefined) blocked.push(entry >> 1);
    }
    this.deepest = { linearized: [...this.frameOps], blocked, state };
  }

  private violation(): Outcome {
    const deepest = this.deepest!;
    const describe = (index: number): string => {
      const op = this.ops[index]!;
      return `#${op.id} ${this.spec.describe(op.input, op.output)}`;
    };
    const shown = deepest.blocked.slice(0, linearizabilityBlockedDescribedMax).map(describe);
    const more = deepest.blocked.length - shown.length;
    let state = this.spec.stateKey(deepest.state);
    if (state.length > linearizabilityStateShownCharsMax) state = `${state.slice(0, linearizabilityStateShownCharsMax)}…`;
    const after = deepest.linearized.length === 0 ? 'from the start' : `after ${deepest.linearized.length} ops (last ${describe(deepest.linearized.at(-1)!)})`;
    return {
      verdict: 'violation',
      message: `not linearizable: ${after}, in state ${state}, none of these can go next: ${shown.join('; ')}${more > 0 ? ` and ${more} more` : ''}`,
      linearized: deepest.linearized.map((index) => this.ops[index]!.id),
      blocked: deepest.blocked.map((index) => this.ops[index]!.id),
    };
  }
}
