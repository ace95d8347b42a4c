/**
 * The lock workload's fencing check: what fencing tokens prevented, and what a lease alone let
 * through. The history (`../history.ts`) holds, per lock holder (identified by its token, the lock
 * key's create revision):
 * - its `acquire` (lock model op; `ret` is when the holder started to believe it held the lock);
 * - its **fenced** writes to the resource (lock model `write`, applied by the store only while
 *   the lock key still has the token as its create revision): `ok` with the revision they were
 *   applied at, `fail` with an error starting with `fenceStaleError` when the store refused them
 *   because the fence no longer held, `fail`/`info` otherwise;
 * - its **unfenced** writes (`unfenced-write`): plain puts to another key, made while it believed
 *   it held the lock — mutual exclusion by lease alone.
 *
 * Safety (a violation fails the run):
 * - accepted fenced writes, in the order of the revisions they were applied at, have
 *   non-decreasing tokens: once a holder with token t' has written, no holder with t < t' writes
 *   again (no two holders' writes interleave), and no two accepted writes share a revision;
 * - with the committed history read back from the store: every put of the resource key is a
 *   fenced write some client issued and that was not refused, their tokens are non-decreasing in
 *   revision order (this covers writes whose client never heard back), and every accepted write
 *   is there at the revision it was acknowledged at.
 *
 * - per holder pause (the harness stopped a holder's process past its lease): a fenced write the
 *   paused holder made after a newer holder's acquire had returned is never accepted.
 *
 * Per holder pause, the outcome (`pauses`): whether another client took the lock during it, how
 * many of the paused holder's fenced writes after it were accepted / refused as stale, and how
 * many of its unfenced writes after it were acknowledged, and of those how many overlapped another
 * holder's hold (made after a newer holder's acquire returned: a lease-only lock let both write).
 *
 * Measured, never a violation (what a lease-based lock allows when a holder pauses past its TTL):
 * - `overlaps`: pairs of holders whose belief intervals — from the acquire's return to the call of
 *   the holder's last unfenced write — overlap in real time;
 * - `interleavings`: acknowledged unfenced writes, in revision order, by a holder older than one
 *   that had already written.
 *
 * Pure: imports only types; malformed input (an accepted fenced write without a revision) throws
 * a TypeError.
 */
import type { LockInput, LockOutput, Operation, UnfencedWriteInput, UnfencedWriteOutput } from '../history.js';
import type { WatchHistory } from './watch.js';

/** A fenced write the store refused because its fence no longer held: status `fail`, `error` starting with this. */
export const fenceStaleError = 'fence-stale';
/** Violations listed (the count is always complete). */
export const fencingViolationsListedMax = 50;
/** Overlapping holder pairs kept as examples. */
export const fencingOverlapExamplesMax = 10;

/** A holder's belief that it held the lock, in ms since the run began. */
export interface HolderInterval {
  readonly process: number;
  readonly token: number;
  /** The acquire's return. */
  readonly start: number;
  /** The call of its last unfenced write. */
  readonly end: number;
}

export interface FencedCounts {
  readonly attempted: number;
  readonly accepted: number;
  readonly refusedStale: number;
  /** Refused for another reason (no leader, …): certainly not applied either. */
  readonly refusedOther: number;
  /** Never answered (timeout, lost connection): may or may not have been applied. */
  readonly unknown: number;
  /** Puts of the resource key found in the committed history (-1: no committed history given). */
  readonly committed: number;
}

export interface UnfencedCounts {
  readonly attempted: number;
  readonly acknowledged: number;
  /** Holders with at least one unfenced write (each has a belief interval). */
  readonly holders: number;
  readonly overlaps: number;
  readonly interleavings: number;
  readonly overlapExamples: readonly (readonly [HolderInterval, HolderInterval])[];
}

/** A holder pause as the harness recorded it (ms since the run began). */
export interface PausedHolder {
  readonly process: number;
  /** Its OS process. */
  readonly pid: number;
  /** The token of the lock it held when it was stopped. */
  readonly token: number;
  readonly start: number;
  readonly end: number;
  /** The process was seen stopped (state `T` in /proc/<pid>/stat). */
  readonly stopped: boolean;
}

export interface PauseOutcome extends PausedHolder {
  /** Tokens of holders whose acquire returned during the pause. */
  readonly takenOverBy: readonly number[];
  /** The paused holder's fenced writes called after the pause. */
  readonly fencedAfter: { readonly accepted: number; readonly refusedStale: number; readonly other: number };
  /** Its unfenced writes called after the pause: acknowledged, and of those made after a newer holder had acquired. */
  readonly unfencedAfter: { readonly acknowledged: number; readonly overlapping: number };
}

export interface FencingResult {
  readonly ok: boolean;
  readonly violations: readonly string[];
  /** Violations beyond `fencingViolationsListedMax`, not listed. */
  readonly omitted: number;
  readonly fenced: FencedCounts;
  readonly unfenced: UnfencedCounts;
  readonly pauses: readonly PauseOutcome[];
}

export interface FencingOptions {
  /** The holder pauses of the run. */
  readonly pauses?: readonly PausedHolder[];
  /** The committed history read back after the run, and the resource key the fenced writes put. */
  readonly committed?: { readonly history: WatchHistory; readonly resourceKey: Uint8Array };
}

type LockOp = Operation<LockInput, LockOutput>;
type UnfencedOp = Operation<UnfencedWriteInput, UnfencedWriteOutput>;

function isFenced(op: Operation): op is LockOp {
  return (op.input as { f?: unknown }).f === 'write';
}

function isUnfenced(op: Operation): op is UnfencedOp {
  return (op.input as { f?: unknown }).f === 'unfenced-write';
}

function isAcquire(op: Operation): op is LockOp {
  return (op.input as { f?: unknown }).f === 'acquire';
}

function isAccepted(op: LockOp): boolean {
  return op.status === 'ok' && op.output?.f === 'write' && op.output.accepted;
}

export function isStaleRefusal(op: Operation): boolean {
  return op.status === 'fail' && (op.error ?? '').startsWith(fenceStaleError);
}

class Violations {
  readonly listed: string[] = [];
  count = 0;

  add(message: string): void {
    this.count++;
    if (this.listed.length < fencingViolationsListedMax) this.listed.push(message);
  }
}

function tokenOf(op: LockOp): number {
  if (op.input.f !== 'write') throw new TypeError(`op ${op.id} is not a fenced write`);
  return op.input.token;
}

function describeWrite(op: LockOp, revision: number): string {
  return `#${op.id} (process ${op.process}, token ${tokenOf(op)}) at revision ${revision}`;
}

/** Accepted fenced writes in revision order: tokens never go down, revisions never repeat. */
function checkAcceptedOrder(accepted: readonly LockOp[], violations: Violations): void {
  const byRevision = accepted.map((op) => {
    const revision = op.output?.f === 'write' ? op.output.revision : undefined;
    if (revision === undefined || !Number.isSafeInteger(revision)) throw new TypeError(`fencing check: accepted write ${op.id} has no revision`);
    return { op, revision };
  });
  byRevision.sort((a, b) => a.revision - b.revision || a.op.id - b.op.id);
  let newest: { op: LockOp; revision: number } | undefined;
  let previous: { op: LockOp; revision: number } | undefined;
  for (const write of byRevision) {
    if (previous !== undefined && previous.revision === write.revision) {
      violations.add(`accepted writes ${describeWrite(previous.op, previous.revision)} and #${write.op.id} share revision ${write.revision}`);
    }
    if (newest !== undefined && tokenOf(write.op) < tokenOf(newest.op)) {
      violations.add(`write ${describeWrite(write.op, write.revision)} was accepted after ${describeWrite(newest.op, newest.revision)}: an older holder wrote after a newer one`);
    }
    if (newest === undefined || tokenOf(write.op) >= tokenOf(newest.op)) newest = write;
    previous = write;
  }
}

/** The resource's puts in the committed history against the writes the clients issued. */
function checkCommitted(fenced: readonly LockOp[], committed: NonNullable<FencingOptions['committed']>, violations: Violations): number {
  const decoder = new TextDecoder();
  const byValue = new Map<string, LockOp>();
  for (const op of fenced) if (op.input.f === 'write') byValue.set(op.input.value, op);
  const resourceKey = decoder.decode(committed.resourceKey);
  const putAt = new Map<number, string>();
  let newest: { op: LockOp; revision: number } | undefined;
  for (const { revision, events } of committed.history.revisions) {
    for (const event of events) {
      if (event.type !== 'put' || decoder.decode(event.key) !== resourceKey) continue;
      const value = decoder.decode(event.value ?? new Uint8Array(0));
      putAt.set(revision, value);
      const op = byValue.get(value);
      if (op === undefined) {
        violations.add(`revision ${revision}: the resource holds ${JSON.stringify(value)}, which no client wrote`);
        continue;
      }
      if (op.status === 'fail') {
        const why = isStaleRefusal(op) ? 'refused as stale' : `refused (${op.error ?? 'no error recorded'})`;
        violations.add(`write ${describeWrite(op, revision)} was ${why} but is in the committed history`);
      }
      if (newest !== undefined && tokenOf(op) < tokenOf(newest.op)) {
        violations.add(`committed write ${describeWrite(op, revision)} follows ${describeWrite(newest.op, newest.revision)}: an older holder wrote after a newer one`);
      }
      if (newest === undefined || tokenOf(op) >= tokenOf(newest.op)) newest = { op, revision };
    }
  }
  for (const op of fenced) {
    if (!isAccepted(op) || op.input.f !== 'write' || op.output?.f !== 'write' || op.output.revision === undefined) continue;
    if (putAt.get(op.output.revision) !== op.input.value) {
      violations.add(`accepted write ${describeWrite(op, op.output.revision)} is not in the committed history there`);
    }
  }
  return putAt.size;
}

/** Belief intervals per holder: from its acquire's return to the call of its last unfenced write. */
export function holderIntervals(operations: readonly Operation[]): HolderInterval[] {
  const acquiredAt = new Map<number, { process: number; ret: number }>();
  for (const op of operations) {
    if (!isAcquire(op) || op.status !== 'ok' || op.output?.f !== 'acquire' || op.ret === undefined) continue;
    acquiredAt.set(op.output.token, { process: op.process, ret: op.ret });
  }
  const lastWrite = new Map<number, number>();
  for (const op of operations) {
    if (!isUnfenced(op)) continue;
    lastWrite.set(op.input.token, Math.max(lastWrite.get(op.input.token) ?? -Infinity, op.call));
  }
  const intervals: HolderInterval[] = [];
  for (const [token, end] of lastWrite) {
    const acquired = acquiredAt.get(token);
    if (acquired !== undefined) intervals.push({ process: acquired.process, token, start: acquired.ret, end });
  }
  return intervals.sort((a, b) => a.start - b.start || a.token - b.token);
}

/** Pairs of holders whose belief intervals overlap (open intervals: touching is not overlapping). */
function overlapsOf(intervals: readonly HolderInterval[]): { count: number; examples: (readonly [HolderInterval, HolderInterval])[] } {
  let count = 0;
  const examples: (readonly [HolderInterval, HolderInterval])[] = [];
  // Sorted by start: only later-starting intervals that start before this one ends can overlap it.
  for (let i = 0; i < intervals.length; i++) {
    const a = intervals[i]!;
    for (let j = i + 1; j < intervals.length && intervals[j]!.start < a.end; j++) {
      const b = intervals[j]!;
      if (b.token === a.token) continue;
      count++;
      if (examples.length < fencingOverlapExamplesMax) examples.push([a, b]);
    }
  }
  return { count, examples };
}

/** Acknowledged unfenced writes, in revision order, by a holder older than one that already wrote. */
function interleavingsOf(unfenced: readonly UnfencedOp[]): number {
  const acknowledged = unfenced
    .filter((op) => op.status === 'ok' && op.output?.f === 'unfenced-write')
    .map((op) => ({ token: op.input.token, revision: op.output!.revision }))
    .sort((a, b) => a.revision - b.revision);
  let newest = -Infinity;
  let count = 0;
  for (const write of acknowledged) {
    if (write.token < newest) count++;
    newest = Math.max(newest, write.token);
  }
  return count;
}

/** The first return of an acquire of a token newer than `token` (Infinity: none). */
function firstNewerAcquire(acquires: readonly LockOp[], token: number): number {
  let first = Infinity;
  for (const op of acquires) {
    if (op.status === 'ok' && op.output?.f === 'acquire' && op.output.token > token && op.ret !== undefined) first = Math.min(first, op.ret);
  }
  return first;
}

/** What each holder pause came to; a stale fenced write accepted after a newer acquire is a violation. */
export function pauseOutcomes(operations: readonly Operation[], pauses: readonly PausedHolder[], violations?: { add(message: string): void }): PauseOutcome[] {
  const acquires = operations.filter(isAcquire);
  return pauses.map((paused) => {
    const takenOverBy = acquires
      .filter((op) => op.status === 'ok' && op.output?.f === 'acquire' && op.ret !== undefined && op.ret >= paused.start && op.ret <= paused.end && op.output.token !== paused.token)
      .map((op) => (op.output as { token: number }).token);
    const newerAt = firstNewerAcquire(acquires, paused.token);
    const after = (op: Operation): boolean => op.call >= paused.end && (op.input as { token?: unknown }).token === paused.token;
    const fenced = operations.filter(isFenced).filter(after);
    for (const op of fenced) {
      if (isAccepted(op) && op.call > newerAt) {
        violations?.add(`write #${op.id} (process ${op.process}, token ${paused.token}) after its holder's pause was accepted though a newer holder had acquired the lock at ${newerAt} ms`);
      }
    }
    const unfencedAcknowledged = operations.filter(isUnfenced).filter(after).filter((op) => op.status === 'ok');
    return {
      ...paused,
      takenOverBy,
      fencedAfter: {
        accepted: fenced.filter(isAccepted).length,
        refusedStale: fenced.filter(isStaleRefusal).length,
        other: fenced.filter((op) => !isAccepted(op) && !isStaleRefusal(op)).length,
      },
      unfencedAfter: { acknowledged: unfencedAcknowledged.length, overlapping: unfencedAcknowledged.filter((op) => op.call > newerAt).length },
    };
  });
}

export function checkFencing(operations: readonly Operation[], options: FencingOptions = {}): FencingResult {
  const violations = new Violations();
  const fenced = operations.filter(isFenced);
  const unfenced = operations.filter(isUnfenced);
  const accepted = fenced.filter(isAccepted);
  checkAcceptedOrder(accepted, violations);
  const committed = options.committed === undefined ? -1 : checkCommitted(fenced, options.committed, violations);
  const intervals = holderIntervals(operations);
  const overlaps = overlapsOf(intervals);
  const pauses = pauseOutcomes(operations, options.pauses ?? [], violations);
  return {
    ok: violations.count === 0,
    violations: violations.listed,
    omitted: violations.count - violations.listed.length,
    fenced: {
      attempted: fenced.length,
      accepted: accepted.length,
      refusedStale: fenced.filter(isStaleRefusal).length,
      refusedOther: fenced.filter((op) => (op.status === 'fail' && !isStaleRefusal(op)) || (op.status === 'ok' && !isAccepted(op))).length,
      unknown: fenced.filter((op) => op.status === 'info').length,
      committed,
    },
    unfenced: {
      attempted: unfenced.length,
      acknowledged: unfenced.filter((op) => op.status === 'ok').length,
      holders: intervals.length,
      overlaps: overlaps.count,
      interleavings: interleavingsOf(unfenced),
      overlapExamples: overlaps.examples,
    },
    pauses,
  };
}
