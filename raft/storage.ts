/**
 * The log storage the core reads from, and an in-memory implementation (used by the simulator and
 * tests). The LevelDB store implements the same interface and passes the same conformance suite.
 */
import { assert, assertIndex } from './assert.js';
import { bootstrapEntries } from './bootstrap.js';
import { entryHeaderBytes } from './limits.js';
import {
  type ConfState,
  EMPTY_HARD_STATE,
  EMPTY_SNAPSHOT,
  type Entry,
  type HardState,
  type Snapshot,
} from './types.js';

/** Why a read of the log could not be served. */
export type LogUnavailableReason =
  /** The index is below the first index: compacted into a snapshot. */
  | 'compacted'
  /** The index is beyond the last index. */
  | 'unavailable'
  /** The entries exist but are not in memory right now; the storage is loading them. */
  | 'temporarily-unavailable'
  /** The snapshot is being produced; ask again later. */
  | 'snapshot-temporarily-unavailable';

export class LogUnavailableError extends Error {
  override readonly name = 'LogUnavailableError';
  constructor(
    readonly reason: LogUnavailableReason,
    message: string,
  ) {
    super(message);
  }
}

export function isLogUnavailable(error: unknown, reason?: LogUnavailableReason): error is LogUnavailableError {
  return error instanceof LogUnavailableError && (reason === undefined || error.reason === reason);
}

/**
 * Read access to a node's durable Raft state for one group. Reads are synchronous: an
 * implementation that keeps older entries on disk throws `temporarily-unavailable` and the core
 * retries on a later heartbeat.
 *
 * Index space: entries live at [firstIndex, lastIndex]; term(firstIndex - 1) is always answered
 * (it is the snapshot's term); firstIndex = snapshot index + 1 after compaction.
 */
export interface LogStorage {
  /** The hard state and configuration saved at the last persist. */
  initialState(): { hardState: HardState; confState: ConfState };
  /**
   * Entries in [lo, hi), stopping before the total size passes `maxBytes` (at least one entry is
   * returned when lo < hi). Throws `compacted` when lo < firstIndex, `unavailable` when
   * hi > lastIndex + 1.
   */
  entries(lo: number, hi: number, maxBytes: number): Entry[];
  /** The term of entry `index`, for firstIndex - 1 <= index <= lastIndex; throws otherwise. */
  term(index: number): number;
  firstIndex(): number;
  lastIndex(): number;
  /**
   * The most recent snapshot (EMPTY_SNAPSHOT if none was ever taken). Once the log is compacted,
   * the snapshot must be at or after the last applied configuration change: a new member only
   * accepts a snapshot whose configuration includes it (take one after applying a conf change,
   * or build it on demand from the current state, as etcd does).
   */
  snapshot(): Snapshot;
}

/** The write side the conformance suite drives; implementations may be async. */
export interface LogStorageWriter {
  /** Appends entries, replacing any existing suffix from entries[0].index on. */
  append(entries: readonly Entry[]): void | Promise<void>;
  setHardState(hardState: HardState): void | Promise<void>;
  /** Replaces the whole log with a snapshot (a newer one than the current). */
  applySnapshot(snapshot: Snapshot): void | Promise<void>;
  /** Discards entries up to and including `index` (index <= applied, done by the application). */
  compact(index: number): void | Promise<void>;
}

export function entryBytes(entry: Entry): number {
  return entry.data.byteLength + entryHeaderBytes;
}

export function payloadBytes(entries: readonly Entry[]): number {
  let bytes = 0;
  for (const entry of entries) bytes += entry.data.byteLength;
  return bytes;
}

/**
 * Keeps a prefix of `entries` whose size stays within `maxBytes`; always at least one entry.
 * Returns the same array when nothing is cut.
 */
export function limitSize(entries: Entry[], maxBytes: number): Entry[] {
  if (entries.length === 0) return entries;
  let size = entryBytes(entries[0]!);
  let n = 1;
  for (; n < entries.length; n++) {
    size += entryBytes(entries[n]!);
    if (size > maxBytes) break;
  }
  return n === entries.length ? entries : entries.slice(0, n);
}

/**
 * In-memory log storage. The first element of `log` is a dummy entry holding the index and
 * term of the last snapshot (0/0 initially), so term(firstIndex - 1) is always answerable.
 */
export class MemoryLogStorage implements LogStorage, LogStorageWriter {
  private hardState: HardState = EMPTY_HARD_STATE;
  private snap: Snapshot = EMPTY_SNAPSHOT;
  private log: Entry[] = [{ term: 0, index: 0, type: 'normal', data: new Uint8Array(0) }];

  /** A storage whose log starts with the bootstrap entries adding `voters` (see bootstrap.ts). */
  static bootstrapped(voters: readonly number[]): MemoryLogStorage {
    const storage = new MemoryLogStorage();
    const { entries, hardState } = bootstrapEntries(voters);
    storage.append(entries);
    storage.setHardState(hardState);
    return storage;
  }

  /**
   * A storage that starts with a configuration recorded as if by a snapshot at index 0 (the
   * configuration is known without applying anything; handy for tests).
   */
  static withMembers(voters: readonly number[], learners: readonly number[] = []): MemoryLogStorage {
    const storage = new MemoryLogStorage();
    storage.snap = {
      metadata: {
        index: 0,
        term: 0,
        confState: { voters: [...voters], votersOutgoing: [], learners: [...learners], learnersNext: [], autoLeave: false },
      },
      data: new Uint8Array(0),
    };
    return storage;
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: this.hardState, confState: this.snap.metadata.confState };
  }

  /** An independent copy (entries are immutable and shared). */
  clone(): MemoryLogStorage {
    const copy = new MemoryLogStorage();
    copy.hardState = this.hardState;
    copy.snap = this.snap;
    copy.log = this.log.slice();
    return copy;
  }

  private get offset(): number {
    return this.log[0]!.index;
  }

  firstIndex(): number {
    return this.offset + 1;
  }

  lastIndex(): number {
    return this.offset + this.log.length - 1;
  }

  term(index: number): number {
    const offset = this.offset;
    if (index < offset) throw new LogUnavailableError('compacted', `term(${index}): compacted below ${offset}`);
    if (index - offset >= this.log.length) {
      throw new LogUnavailableError('unavailable', `term(${index}): beyond last index ${this.lastIndex()}`);
    }
    return this.log[index - offset]!.term;
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    assert(lo <= hi, () => `entries(${lo}, ${hi}): lo > hi`);
    const offset = this.offset;
    if (lo <= offset) throw new LogUnavailableError('compacted', `entries(${lo}): compacted at ${offset}`);
    if (hi > this.lastIndex() + 1) {
      throw new LogUnavailableError('unavailable', `entries(.., ${hi}): beyond last index ${this.lastIndex()}`);
    }
    if (lo === hi) return [];
    return limitSize(this.log.slice(lo - offset, hi - offset), maxBytes);
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  setHardState(hardState: HardState): void {
    assertIndex(hardState.term, 'hard state term');
    assertIndex(hardState.commit, 'hard state commit');
    this.hardState = hardState;
  }

  applySnapshot(snapshot: Snapshot): void {
    const index = snapshot.metadata.index;
    assert(
      index > this.snap.metadata.index,
      () => `snapshot ${index} is not newer than the current ${this.snap.metadata.index}`,
    );
    this.snap = snapshot;
    this.log = [{ term: snapshot.metadata.term, index, type: 'normal', data: new Uint8Array(0) }];
  }

  /**
   * Records a snapshot taken by the application at `index` (which must be applied) and keeps the
   * log; call `compact` afterwards to drop the covered entries.
   */
  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot {
    assert(index > this.snap.metadata.index, () => `snapshot ${index} is not newer than ${this.snap.metadata.index}`);
    assert(index <= this.lastIndex(), () => `snapshot ${index} beyond last index ${this.lastIndex()}`);
    this.snap = { metadata: { index, term: this.term(index), confState }, data };
    return this.snap;
  }

  compact(index: number): void {
    const offset = this.offset;
    if (index <= offset) return; // already compacted
    assert(index <= this.lastIndex(), () => `compact ${index} beyond last index ${this.lastIndex()}`);
    const keep = this.log.slice(index - offset);
    const head = keep[0]!;
    keep[0] = { term: head.term, index: head.index, type: 'normal', data: new Uint8Array(0) };
    this.log = keep;
  }

  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = entries[0]!.index + entries.length - 1;
    if (last < first) return; // everything is already compacted
    // Drop the entries that are already compacted.
    const from = first > entries[0]!.index ? entries.slice(first - entries[0]!.index) : entries;
    const start = from[0]!.index - this.offset;
    assert(start <= this.log.length, () => `missing log entries: last ${this.lastIndex()}, appending at ${from[0]!.index}`);
    for (let i = 1; i < from.length; i++) {
      assert(from[i]!.index === from[i - 1]!.index + 1, 'appended entries must be contiguous');
    }
    this.log.length = start; // truncate a conflicting suffix
    for (const entry of from) this.log.push(entry);
  }
}
