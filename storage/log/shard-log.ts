/**
 * One shard's log as the Raft core reads it: synchronous answers from memory. The term of every
 * entry is known from a list of term runs; entries themselves are in memory from the oldest
 * unapplied one on (plus a bounded tail of applied ones); older entries are loaded from LevelDB in
 * the background on demand (`temporarily-unavailable` until then). Writes go through the store's
 * `save`, so they share its group commit.
 */
import {
  type ConfState,
  EMPTY_CONF_STATE,
  EMPTY_HARD_STATE,
  EMPTY_SNAPSHOT,
  type Entry,
  type HardState,
  type LogStorage,
  type LogStorageWriter,
  LogUnavailableError,
  type Snapshot,
  entryBytes,
  limitSize,
} from '../../raft/index.js';
import { assert } from '../../raft/index.js';

/** What a dropped cache slot holds until the array's dead front is sliced away. */
const droppedEntry: Entry = { index: 0, term: 0, type: 'normal', data: new Uint8Array(0) };
import { loadedRangesMax, tailCacheEntriesMin } from './limits.js';

/** What `save` writes for one shard; fields are applied in this order: snapshot, entries, … */
export interface ShardUpdate {
  readonly shard: number;
  /** Installs a snapshot: replaces the whole log, sets the conf state from its metadata. */
  readonly snapshot?: Snapshot;
  /**
   * Stores a snapshot this node took of its own applied state (at an index within the log): it
   * becomes what `snapshot()` returns, and the log is kept. Written after `entries`.
   */
  readonly snapshotTaken?: Snapshot;
  /** Appends, replacing any suffix from entries[0].index on; entries at or below the compaction point are dropped. */
  readonly entries?: readonly Entry[];
  readonly hardState?: HardState;
  /** The configuration in force at the applied index (written by the application after a conf change). */
  readonly confState?: ConfState;
  /** The last index the application has applied; stored atomically with the rest of the batch. */
  readonly applied?: number;
  /**
   * The application has applied through this index: never written (the stored `applied` moves
   * only with the snapshots that cover it), it only lets the tail cache let go of applied entries
   * between snapshots.
   */
  readonly appliedInMemory?: number;
  /** Discards entries up to and including this index (at most the applied index, by the caller's rule). */
  readonly compact?: number;
}

/** The store-side hooks a shard log calls; implemented by LevelLogStore. */
export interface ShardLogHost {
  save(updates: readonly ShardUpdate[]): Promise<void>;
  /** Reads entries [lo, hi) from LevelDB, at most `maxBytes` of them (at least one). */
  loadEntries(shard: number, lo: number, hi: number): void;
}

interface LoadedRange {
  first: number;
  entries: Entry[];
}

export class ShardLog implements LogStorage, LogStorageWriter {
  hardState: HardState = EMPTY_HARD_STATE;
  confState: ConfState = EMPTY_CONF_STATE;
  applied = 0;
  /** What the application last said it applied (memory only; at least `applied` in effect). */
  appliedInMemory = 0;
  snapshotValue: Snapshot = EMPTY_SNAPSHOT;
  /** Chunk records of the stored snapshot (to delete them when it is replaced). */
  snapshotChunks = 0;

  /** The last index removed from the log (compaction or snapshot) and its term: firstIndex - 1. */
  offset = 0;
  offsetTerm = 0;
  last = 0;

  /** Term runs over (offset, last]: run k covers [runStarts[k], runStarts[k+1]) with runTerms[k]. */
  private runStarts: number[] = [];
  private runTerms: number[] = [];

  /** In-memory entries [cacheFirst, last]; cache[cacheHead] has index cacheFirst. */
  private cache: Entry[] = [];
  private cacheHead = 0;
  cacheFirst = 1;
  private cacheBytes = 0;

  /** Older entries loaded for far-behind followers, and the loads in progress. */
  private loaded: LoadedRange[] = [];
  readonly loading = new Set<number>();
  /** Bumped whenever entries that a load may be reading are replaced, so stale loads are dropped. */
  epoch = 0;
  /** Some record of this shard was recovered or written (see `holdsState`). */
  held = false;

  constructor(
    readonly shard: number,
    private readonly host: ShardLogHost,
    private readonly tailCacheBytesMax: number,
  ) {}

  /** Whether the store holds any record of this shard (recovered, or staged by a save). */
  holdsState(): boolean {
    return this.held;
  }

  // ---- LogStorage (reads) ----------------------------------------------------------------

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: this.hardState, confState: this.confState };
  }

  firstIndex(): number {
    return this.offset + 1;
  }

  lastIndex(): number {
    return this.last;
  }

  snapshot(): Snapshot {
    return this.snapshotValue;
  }

  term(index: number): number {
    if (index === this.offset) return this.offsetTerm;
    if (index < this.offset) throw new LogUnavailableError('compacted', `index ${index} is compacted (first index ${this.offset + 1})`);
    if (index > this.last) throw new LogUnavailableError('unavailable', `index ${index} is beyond the last index ${this.last}`);
    // Binary search for the last run starting at or before index.
    let lo = 0;
    let hi = this.runStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.runStarts[mid]! <= index) lo = mid;
      else hi = mid - 1;
    }
    return this.runTerms[lo]!;
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    if (lo <= this.offset) throw new LogUnavailableError('compacted', `index ${lo} is compacted (first index ${this.offset + 1})`);
    if (hi > this.last + 1) throw new LogUnavailableError('unavailable', `index ${hi - 1} is beyond the last index ${this.last}`);
    assert(lo <= hi, `entries: lo ${lo} > hi ${hi}`);
    if (lo === hi) return [];
    if (lo >= this.cacheFirst) return limitSize(this.cacheSlice(lo, hi), maxBytes);
    const older = this.fromLoaded(lo, Math.min(hi, this.cacheFirst), maxBytes);
    if (older === undefined) {
      this.host.loadEntries(this.shard, lo, this.cacheFirst);
      throw new LogUnavailableError('temporarily-unavailable', `entries from ${lo} are being loaded from disk`);
    }
    const next = lo + older.length;
    if (next < hi && next === this.cacheFirst) {
      return limitSize(older.concat(this.cacheSlice(next, hi)), maxBytes);
    }
    return older;
  }

  private cacheSlice(lo: number, hi: number): Entry[] {
    const start = this.cacheHead + (lo - this.cacheFirst);
    return this.cache.slice(start, start + (hi - lo));
  }

  private fromLoaded(lo: number, hi: number, maxBytes: number): Entry[] | undefined {
    for (const range of this.loaded) {
      const end = range.first + range.entries.length;
      if (lo < range.first || lo >= end) continue;
      const start = lo - range.first;
      return limitSize(range.entries.slice(start, start + (Math.min(hi, end) - lo)), maxBytes);
    }
    return undefined;
  }

  // ---- LogStorageWriter (each write is one save of this shard) --------------------------

  append(entries: readonly Entry[]): Promise<void> {
    return this.host.save([{ shard: this.shard, entries }]);
  }

  setHardState(hardState: HardState): Promise<void> {
    return this.host.save([{ shard: this.shard, hardState }]);
  }

  applySnapshot(snapshot: Snapshot): Promise<void> {
    return this.host.save([{ shard: this.shard, snapshot }]);
  }

  compact(index: number): Promise<void> {
    return this.host.save([{ shard: this.shard, compact: index }]);
  }

  // ---- In-memory updates (called by the store after validation) ---------------------------

  /** Entries of `batch` past the compaction point; asserts they continue the log. */
  livePart(batch: readonly Entry[]): readonly Entry[] {
    let skip = 0;
    while (skip < batch.length && batch[skip]!.index <= this.offset) skip++;
    return skip === 0 ? batch : batch.slice(skip);
  }

  /** Why `batch` cannot be appended after `last`, or undefined when it can. */
  appendProblem(batch: readonly Entry[], last: number, offset: number): string | undefined {
    for (let i = 0; i < batch.length; i++) {
      const e = batch[i]!;
      if (!Number.isSafeInteger(e.index) || !Number.isSafeInteger(e.term) || e.term < 0) return `bad entry at position ${i}`;
      if (i > 0 && e.index !== batch[i - 1]!.index + 1) return `entries are not contiguous at index ${e.index}`;
    }
    const firstLive = batch.find((e) => e.index > offset);
    if (firstLive !== undefined && firstLive.index > last + 1) {
      return `gap: appending index ${firstLive.index} after last index ${last}`;
    }
    return undefined;
  }

  /** Applies an append in memory; returns the indexes (newLast, oldLast] that it removed. */
  applyAppend(live: readonly Entry[]): { removedFrom: number; removedTo: number } {
    const first = live[0]!;
    const oldLast = this.last;
    const newLast = live[live.length - 1]!.index;
    if (first.index <= oldLast) this.truncateFrom(first.index);
    for (const e of live) this.pushEntry(e);
    this.last = newLast;
    return { removedFrom: newLast + 1, removedTo: oldLast };
  }

  private truncateFrom(index: number): void {
    this.epoch++;
    while (this.runStarts.length > 0 && this.runStarts[this.runStarts.length - 1]! >= index) {
      this.runStarts.pop();
      this.runTerms.pop();
    }
    if (index <= this.cacheFirst) {
      this.cache = [];
      this.cacheHead = 0;
      this.cacheBytes = 0;
      this.cacheFirst = index;
    } else {
      const keep = this.cacheHead + (index - this.cacheFirst);
      for (let i = keep; i < this.cache.length; i++) this.cacheBytes -= entryBytes(this.cache[i]!);
      this.cache.length = keep;
    }
    this.loaded = this.loaded
      .map((range) => ({ first: range.first, entries: range.entries.slice(0, Math.max(0, index - range.first)) }))
      .filter((range) => range.entries.length > 0);
    this.last = index - 1;
  }

  private pushEntry(e: Entry): void {
    const lastRun = this.runTerms.length - 1;
    if (lastRun < 0 || this.runTerms[lastRun] !== e.term) {
      this.runStarts.push(e.index);
      this.runTerms.push(e.term);
    }
    if (this.cache.length - this.cacheHead === 0) this.cacheFirst = e.index;
    this.cache.push(e);
    this.cacheBytes += entryBytes(e);
  }

  /** Compacts in memory up to `index` (<= last); returns the old offset. */
  applyCompact(index: number): number {
    const oldOffset = this.offset;
    if (index <= oldOffset) return oldOffset;
    this.offsetTerm = this.term(index);
    this.offset = index;
    // Drop runs that end at or before index; the run holding index + 1 now starts there.
    let k = 0;
    while (k + 1 < this.runStarts.length && this.runStarts[k + 1]! <= index + 1) k++;
    this.runStarts.splice(0, k);
    this.runTerms.splice(0, k);
    if (index >= this.last) {
      this.runStarts = [];
      this.runTerms = [];
    } else if (this.runStarts.length > 0) {
      this.runStarts[0] = index + 1;
    }
    while (this.cacheHead < this.cache.length && this.cacheFirst <= index) this.dropCacheHead();
    if (this.cacheHead === this.cache.length) this.cacheFirst = Math.max(this.cacheFirst, index + 1);
    this.loaded = this.loaded
      .map((range) => ({ first: Math.max(range.first, index + 1), entries: range.entries.slice(Math.max(0, index + 1 - range.first)) }))
      .filter((range) => range.entries.length > 0);
    return oldOffset;
  }

  /** Replaces the log with a snapshot in memory; returns the old offset and last index. */
  applySnapshotInMemory(snapshot: Snapshot, chunks: number): { oldOffset: number; oldLast: number } {
    const result = { oldOffset: this.offset, oldLast: this.last };
    this.epoch++;
    this.snapshotValue = snapshot;
    this.snapshotChunks = chunks;
    this.confState = snapshot.metadata.confState;
    this.offset = snapshot.metadata.index;
    this.offsetTerm = snapshot.metadata.term;
    this.last = snapshot.metadata.index;
    this.runStarts = [];
    this.runTerms = [];
    this.cache = [];
    this.cacheHead = 0;
    this.cacheBytes = 0;
    this.cacheFirst = this.last + 1;
    this.loaded = [];
    return result;
  }

  private dropCacheHead(): void {
    this.cacheBytes -= entryBytes(this.cache[this.cacheHead]!);
    // Let go of the entry now, not at the next slice (a large value would stay in memory).
    this.cache[this.cacheHead] = droppedEntry;
    this.cacheHead++;
    this.cacheFirst++;
    // Reclaim the array's dead front once it is large and most of the array.
    if (this.cacheHead >= 1024 && this.cacheHead * 2 >= this.cache.length) {
      this.cache = this.cache.slice(this.cacheHead);
      this.cacheHead = 0;
    }
  }

  /**
   * Lets go of applied entries beyond the tail budget. Unapplied entries always stay: the apply
   * loop reads them synchronously.
   */
  evict(): void {
    while (this.cache.length - this.cacheHead > tailCacheEntriesMin && this.cacheBytes > this.tailCacheBytesMax && this.headApplied()) this.dropCacheHead();
  }

  /**
   * Lets go of every applied entry in the tail cache and of the ranges loaded from disk, for an
   * idle node (LevelLogStore.releaseAppliedCaches says when that is safe); returns the bytes let go.
   */
  releaseApplied(): number {
    const before = this.cacheBytes;
    while (this.headApplied()) this.dropCacheHead();
    if (this.cacheHead === this.cache.length) {
      this.cache = [];
      this.cacheHead = 0;
    }
    let loadedBytes = 0;
    for (const range of this.loaded) for (const e of range.entries) loadedBytes += entryBytes(e);
    this.loaded = [];
    return before - this.cacheBytes + loadedBytes;
  }

  /** Whether the cache's first entry is applied (and so may be let go). */
  private headApplied(): boolean {
    return this.cacheHead < this.cache.length && this.cacheFirst <= Math.max(this.applied, this.appliedInMemory);
  }

  /** Takes entries loaded from disk (if nothing replaced them meanwhile). */
  addLoaded(first: number, entries: Entry[], epoch: number): void {
    if (epoch !== this.epoch || entries.length === 0) return;
    const live = entries.filter((e) => e.index > this.offset && e.index < this.cacheFirst);
    if (live.length === 0) return;
    this.loaded.push({ first: live[0]!.index, entries: live });
    if (this.loaded.length > loadedRangesMax) this.loaded.shift();
  }

  /**
   * Recovery: installs the entries read from disk (contiguous from offset + 1). Recovery reads
   * them as views of blocks of 4 MiB shared with other records (`packValues` in store.ts); the
   * newest ones, which the tail cache keeps past the replay (tailCacheBytesMax, and at least
   * tailCacheEntriesMin), are copied out when they are less than half of their block, so that a
   * shard's few cached entries (a meta shard's handful) do not keep whole blocks alive. The older
   * ones go once applied, and their blocks with them.
   */
  recover(entries: readonly Entry[]): void {
    let tailFrom = entries.length;
    for (let bytes = 0; tailFrom > 0 && (entries.length - tailFrom < tailCacheEntriesMin || bytes < this.tailCacheBytesMax); ) bytes += entryBytes(entries[--tailFrom]!);
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      this.pushEntry(i >= tailFrom && e.data.byteLength * 2 < e.data.buffer.byteLength ? { ...e, data: e.data.slice() } : e);
    }
    this.last = entries.length > 0 ? entries[entries.length - 1]!.index : this.offset;
    if (entries.length === 0) this.cacheFirst = this.offset + 1;
    this.evict();
  }

  /** What the cache holds, for tests and stats. */
  cacheStats(): { first: number; entries: number; bytes: number; loadedRanges: number } {
    return { first: this.cacheFirst, entries: this.cache.length - this.cacheHead, bytes: this.cacheBytes, loadedRanges: this.loaded.length };
  }
}
