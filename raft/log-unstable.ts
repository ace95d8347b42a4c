import { assert } from './assert.js';
import type { Entry, Snapshot } from './types.js';

/**
 * The part of the log not yet known to be persisted: an optional incoming snapshot followed by
 * entries starting at `offset`. Entries below `offsetInProgress` (and the snapshot, when
 * `snapshotInProgress`) have been handed to the application in a Ready and are being written.
 */
export class UnstableLog {
  snapshot: Snapshot | undefined;
  entries: Entry[] = [];
  // invariant: offset <= offsetInProgress <= offset + entries.length
  offset: number;
  offsetInProgress: number;
  snapshotInProgress = false;

  constructor(offset: number) {
    this.offset = offset;
    this.offsetInProgress = offset;
  }

  /** The first index if the unstable log starts with a snapshot. */
  maybeFirstIndex(): number | undefined {
    return this.snapshot === undefined ? undefined : this.snapshot.metadata.index + 1;
  }

  maybeLastIndex(): number | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    return this.snapshot === undefined ? undefined : this.snapshot.metadata.index;
  }

  maybeTerm(index: number): number | undefined {
    if (index < this.offset) {
      if (this.snapshot !== undefined && this.snapshot.metadata.index === index) return this.snapshot.metadata.term;
      return undefined;
    }
    const position = index - this.offset;
    if (position >= this.entries.length) return undefined;
    return this.entries[position]!.term;
  }

  /** Entries not yet handed to the application for persisting. */
  nextEntries(): Entry[] {
    const inProgress = this.offsetInProgress - this.offset;
    if (inProgress >= this.entries.length) return [];
    return this.entries.slice(inProgress);
  }

  hasNextEntries(): boolean {
    return this.offsetInProgress - this.offset < this.entries.length;
  }

  nextSnapshot(): Snapshot | undefined {
    if (this.snapshot === undefined || this.snapshotInProgress) return undefined;
    return this.snapshot;
  }

  /** Everything currently unstable has been handed to the application. */
  acceptInProgress(): void {
    if (this.entries.length > 0) this.offsetInProgress = this.offset + this.entries.length;
    if (this.snapshot !== undefined) this.snapshotInProgress = true;
  }

  /**
   * Entries up to (index, term) are persisted. Ignored when that entry has since been replaced
   * (its term differs) — the replacement is still to be written.
   */
  stableTo(index: number, term: number): void {
    const actual = this.maybeTerm(index);
    if (actual === undefined || index < this.offset || actual !== term) return;
    const count = index + 1 - this.offset;
    this.entries = this.entries.slice(count);
    this.offset = index + 1;
    this.offsetInProgress = Math.max(this.offsetInProgress, this.offset);
  }

  stableSnapshotTo(index: number): void {
    if (this.snapshot !== undefined && this.snapshot.metadata.index === index) {
      this.snapshot = undefined;
      this.snapshotInProgress = false;
    }
  }

  restore(snapshot: Snapshot): void {
    this.offset = snapshot.metadata.index + 1;
    this.offsetInProgress = this.offset;
    this.entries = [];
    this.snapshot = snapshot;
    this.snapshotInProgress = false;
  }

  truncateAndAppend(entries: readonly Entry[]): void {
    const from = entries[0]!.index;
    assert(
      from <= this.offset + this.entries.length,
      () => `appending at ${from} would leave a gap after ${this.offset + this.entries.length - 1}`,
    );
    if (from === this.offset + this.entries.length) {
      for (const entry of entries) this.entries.push(entry);
    } else if (from <= this.offset) {
      // Replace everything unstable; storage's conflicting suffix is overwritten when persisted.
      this.offset = from;
      this.offsetInProgress = from;
      this.entries = [...entries];
    } else {
      const kept = this.entries.slice(0, from - this.offset);
      for (const entry of entries) kept.push(entry);
      this.entries = kept;
      // Entries at and after `from` must be written again.
      this.offsetInProgress = Math.min(this.offsetInProgress, from);
    }
    this.checkInvariant();
  }

  /** Entries in [lo, hi), which must lie within the unstable entries. */
  slice(lo: number, hi: number): Entry[] {
    assert(
      this.offset <= lo && lo <= hi && hi <= this.offset + this.entries.length,
      () => `unstable slice [${lo}, ${hi}) out of bounds [${this.offset}, ${this.offset + this.entries.length})`,
    );
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }

  private checkInvariant(): void {
    assert(
      this.offset <= this.offsetInProgress && this.offsetInProgress <= this.offset + this.entries.length,
      () => `unstable invariant broken: offset=${this.offset} inProgress=${this.offsetInProgress} len=${this.entries.length}`,
    );
  }
}
