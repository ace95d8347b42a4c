import { assert } from './assert.js';
import { UnstableLog } from './log-unstable.js';
import { type LogStorage, LogUnavailableError, isLogUnavailable, limitSize, payloadBytes, entryBytes } from './storage.js';
import type { Entry, Snapshot } from './types.js';

/**
 * A node's view of its log: what storage holds plus the unstable tail, and the commit and apply
 * positions.
 *
 * invariant: applied <= applying <= committed <= lastIndex
 */
export class RaftLog {
  readonly unstable: UnstableLog;
  committed: number;
  /** Highest index handed to the application for applying (in a Ready not yet advanced). */
  applying: number;
  applied: number;
  private applyingBytes = 0;
  private applyingPaused = false;

  constructor(
    readonly storage: LogStorage,
    private readonly applyingBytesMax: number,
  ) {
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new UnstableLog(last + 1);
    this.committed = first - 1;
    this.applying = first - 1;
    this.applied = first - 1;
  }

  describe(): string {
    return (
      `committed=${this.committed} applied=${this.applied} applying=${this.applying} ` +
      `unstable.offset=${this.unstable.offset} unstable.len=${this.unstable.entries.length}`
    );
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  lastTerm(): number {
    return this.term(this.lastIndex());
  }

  /**
   * The term of entry `index`. Throws `compacted` below firstIndex - 1 and `unavailable` beyond
   * lastIndex.
   */
  term(index: number): number {
    const unstableTerm = this.unstable.maybeTerm(index);
    if (unstableTerm !== undefined) return unstableTerm;
    const first = this.firstIndex();
    if (index + 1 < first) throw new LogUnavailableError('compacted', `term(${index}) compacted below ${first}`);
    if (index > this.lastIndex()) throw new LogUnavailableError('unavailable', `term(${index}) beyond ${this.lastIndex()}`);
    return this.storage.term(index);
  }

  /** The term of `index`, or undefined when it is compacted or beyond the log. */
  maybeTerm(index: number): number | undefined {
    const unstableTerm = this.unstable.maybeTerm(index);
    if (unstableTerm !== undefined) return unstableTerm;
    // Bounds first: this runs for every entry received, and exceptions are slow.
    if (index + 1 < this.firstIndex() || index > this.lastIndex()) return undefined;
    try {
      return this.storage.term(index);
    } catch (error) {
      if (isLogUnavailable(error)) return undefined;
      throw error;
    }
  }

  matchTerm(index: number, term: number): boolean {
    return this.maybeTerm(index) === term;
  }

  /** Whether a log ending at (lastIndex, lastTerm) is at least as up to date as ours. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /**
   * Appends entries received from the leader after (index, logTerm) if that entry matches ours.
   * Returns the index of the last new entry, or undefined when the log does not match.
   */
  maybeAppend(index: number, logTerm: number, committed: number, entries: readonly Entry[]): number | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNew = index + entries.length;
    const conflict = this.findConflict(entries);
    if (conflict !== 0) {
      assert(
        conflict > this.committed,
        () => `entry ${conflict} conflicts with committed entry (committed ${this.committed})`,
      );
      this.append(entries.slice(conflict - (index + 1)));
    }
    this.commitTo(Math.min(committed, lastNew));
    return lastNew;
  }

  append(entries: readonly Entry[]): number {
    if (entries.length === 0) return this.lastIndex();
    const after = entries[0]!.index - 1;
    assert(after >= this.committed, () => `appending after ${after} would overwrite committed ${this.committed}`);
    assert(after <= this.lastIndex(), () => `appending after ${after} would leave a gap after ${this.lastIndex()}`);
    this.unstable.truncateAndAppend(entries);
    return this.lastIndex();
  }

  /**
   * The index of the first entry that is new or conflicts (different term at the same index),
   * or 0 if every entry is already in the log.
   */
  findConflict(entries: readonly Entry[]): number {
    for (const entry of entries) {
      if (!this.matchTerm(entry.index, entry.term)) return entry.index;
    }
    return 0;
  }

  /**
   * Fast backtracking: the largest index <= `index` whose term is <= `term`, with that term.
   * An unknown term (compacted) answers (index, 0): it may match.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    for (; index > 0; index--) {
      const ourTerm = this.maybeTerm(index);
      if (ourTerm === undefined) return { index, term: 0 };
      if (ourTerm <= term) return { index, term: ourTerm };
    }
    return { index: 0, term: 0 };
  }

  commitTo(index: number): void {
    if (index <= this.committed) return; // never decrease commit
    assert(
      index <= this.lastIndex(),
      () => `commit ${index} is out of range [lastIndex ${this.lastIndex()}]: was the log truncated or lost?`,
    );
    this.committed = index;
  }

  /** Commits up to `index` if it is in the log and of the given term (the current-term rule). */
  maybeCommit(index: number, term: number): boolean {
    if (index > this.committed && index <= this.lastIndex() && this.maybeTerm(index) === term) {
      this.commitTo(index);
      return true;
    }
    return false;
  }

  hasNextOrInProgressSnapshot(): boolean {
    return this.unstable.snapshot !== undefined;
  }

  /** Committed entries not yet handed to the application, bounded by the per-Ready byte limit. */
  nextCommittedEntries(): Entry[] {
    if (this.applyingPaused || this.hasNextOrInProgressSnapshot()) return [];
    const lo = this.applying + 1;
    const hi = this.committed + 1;
    if (lo >= hi) return [];
    const budget = this.applyingBytesMax - this.applyingBytes;
    assert(budget > 0, 'no budget left for applying entries');
    return this.slice(lo, hi, budget);
  }

  hasNextCommittedEntries(): boolean {
    if (this.applyingPaused || this.hasNextOrInProgressSnapshot()) return false;
    return this.applying < this.committed;
  }

  acceptApplying(index: number, bytes: number): void {
    assert(index <= this.committed, () => `applying ${index} beyond committed ${this.committed}`);
    this.applying = index;
    this.applyingBytes += bytes;
    // Everything committed was handed over unless the byte limit cut it short.
    this.applyingPaused = this.applyingBytes >= this.applyingBytesMax;
  }

  appliedTo(index: number, bytes: number): void {
    assert(
      index <= this.committed && index >= this.applied,
      () => `applied ${index} out of range [prevApplied ${this.applied}, committed ${this.committed}]`,
    );
    this.applied = index;
    this.applying = Math.max(this.applying, index);
    this.applyingBytes = this.applyingBytes > bytes ? this.applyingBytes - bytes : 0;
    this.applyingPaused = this.applyingBytes >= this.applyingBytesMax;
  }

  stableTo(index: number, term: number): void {
    this.unstable.stableTo(index, term);
  }

  stableSnapshotTo(index: number): void {
    this.unstable.stableSnapshotTo(index);
  }

  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  restore(snapshot: Snapshot): void {
    this.committed = snapshot.metadata.index;
    this.unstable.restore(snapshot);
  }

  /** Entries from `index` to the end, bounded by `maxBytes` (at least one). */
  entriesFrom(index: number, maxBytes: number): Entry[] {
    const last = this.lastIndex();
    if (index > last) return [];
    return this.slice(index, last + 1, maxBytes);
  }

  /** Every entry in the log (for tests and the simulator's checks). */
  allEntries(): Entry[] {
    return this.entriesFrom(this.firstIndex(), Number.MAX_SAFE_INTEGER);
  }

  /**
   * Entries in [lo, hi) bounded by `maxBytes` (at least one). Throws `compacted` when lo is
   * below the first index.
   */
  slice(lo: number, hi: number, maxBytes: number): Entry[] {
    this.checkOutOfBounds(lo, hi);
    if (lo === hi) return [];
    const offset = this.unstable.offset;
    let stored: Entry[] = [];
    if (lo < offset) {
      stored = this.storage.entries(lo, Math.min(hi, offset), maxBytes);
      if (stored.length < Math.min(hi, offset) - lo) return stored; // cut short by size
      if (hi <= offset) return stored;
    }
    const fromUnstable = this.unstable.slice(Math.max(lo, offset), hi);
    if (stored.length === 0) return limitSize(fromUnstable, maxBytes);
    let size = 0;
    for (const entry of stored) size += entryBytes(entry);
    const combined = stored.slice(); // never mutate what storage returned
    for (const entry of fromUnstable) {
      size += entryBytes(entry);
      if (size > maxBytes) break;
      combined.push(entry);
    }
    return combined;
  }

  private checkOutOfBounds(lo: number, hi: number): void {
    assert(lo <= hi, () => `invalid slice ${lo} > ${hi}`);
    const first = this.firstIndex();
    if (lo < first) throw new LogUnavailableError('compacted', `slice from ${lo} below first index ${first}`);
    const last = this.lastIndex();
    assert(hi <= last + 1, () => `slice [${lo}, ${hi}) out of bound [${first}, ${last}]`);
  }

  static payloadBytes(entries: readonly Entry[]): number {
    return payloadBytes(entries);
  }
}
