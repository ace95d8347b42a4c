/**
 * The node's log store: one LevelDB database holding the Raft state of every shard the node hosts.
 *
 * Writes: `save(updates)` validates and applies the updates in memory at once (reads see them
 * immediately, as the Raft core expects after `ready()`), and queues their LevelDB operations.
 * Everything queued in one event-loop turn, plus everything queued while the previous write was
 * in flight, goes out as ONE synced batch: many shards, one fsync (group commit). A failed write
 * stops the store for good, since memory is then ahead of disk.
 *
 * Compaction: the new first index is part of the synced batch; the entry records below it are
 * deleted afterwards, a bounded step at a time, so a save never waits behind a large deletion.
 *
 * Recovery: `open` reads every shard back and checks it; damage stops the node with a
 * StorageCorruptionError naming shard, index and key.
 */
import { Level } from 'level';
import { type Entry, type Snapshot, isEmptySnapshot } from '../../raft/index.js';
import { assert } from '../../raft/index.js';
import { crc32c } from '../checksum.js';
import { StorageCorruptionError, StorageFailedError } from './errors.js';
import {
  FORMAT_KEY,
  Kind,
  PAST_ALL_RECORDS_KEY,
  chunkKey,
  entryKey,
  parseShardKey,
  shardKey,
  shardRange,
} from './keys.js';
import {
  compactionDeleteKeysMax,
  deferredWriteDelayMs,
  formatVersion,
  loadBytesMax,
  recoveryReadBytes,
  recoveryReadRecordsMax,
  snapshotChunkBytesMax,
  tailCacheBytesMax as defaultTailCacheBytesMax,
} from './limits.js';
import {
  type SnapshotDescriptor,
  decodeConfState,
  decodeEntry,
  decodeFormat,
  decodeHardState,
  decodeIndex,
  decodeSnapshotDescriptor,
  decodeTruncated,
  encodeConfState,
  sealedEntry,
  encodeFormat,
  encodeHardState,
  encodeIndex,
  encodeSnapshotDescriptor,
  encodeTruncated,
  seal,
  unseal,
} from './records.js';
import { ShardLog, type ShardLogHost, type ShardUpdate } from './shard-log.js';

type BatchOp = { type: 'put'; key: Uint8Array; value: Uint8Array } | { type: 'del'; key: Uint8Array };

export interface LevelLogStoreOptions {
  /** The database directory (created if missing). */
  readonly path: string;
  /**
   * true (default): every save of one turn, and every save made while a write is in flight, share
   * one synced batch. false: each save is its own synced batch (only for the benchmark that
   * compares the two).
   */
  readonly groupCommit?: boolean;
  /** Sync (fsync) every batch; default true. Only tests that measure something else turn it off. */
  readonly sync?: boolean;
  readonly tailCacheBytesMax?: number;
  /** Called once if the store fails after open (a write error, damage found by a background load). */
  readonly onFatal?: (error: Error) => void;
}

export interface LogStoreStats {
  /** Batches written with sync (each one fsync). */
  syncedBatches: number;
  /** save() calls resolved. */
  saves: number;
  /** Entry records deleted by background compaction. */
  compactedKeys: number;
  /** Background loads of older entries. */
  loads: number;
}

interface Waiter {
  resolve(): void;
  reject(error: Error): void;
}

interface Pending {
  ops: BatchOp[];
  waiters: Waiter[];
  /** Some save in this group asked for an fsync. */
  mustSync: boolean;
  /** Some save in this group may not wait for a later batch (see `SaveOptions.deferrable`). */
  eager: boolean;
}

function emptyPending(): Pending {
  return { ops: [], waiters: [], mustSync: false, eager: false };
}

export interface SaveOptions {
  /**
   * Whether the batch must be synced before the save resolves (default true). Raft needs it for
   * entries, votes and term changes; a change of the commit index alone may be written without
   * (etcd does the same: a lost commit index is learned again from the leader).
   */
  readonly sync?: boolean;
  /**
   * Nothing waits for this write (only with `sync: false`): instead of a batch of its own it
   * joins the next batch some other save starts, or goes out `deferredWriteDelayMs` later,
   * whichever comes first. Reads see it at once; `idle()` and `close()` write it out. For a change
   * of the commit index alone: its own batch would cost a thread-pool round trip per commit, and
   * a batch that depends on it (a snapshot at a newer index) is always written after it.
   */
  readonly deferrable?: boolean;
}

/** A range of entry indexes (from, to] of one shard whose records are to be deleted. */
interface DeletionTask {
  shard: number;
  from: number;
  to: number;
}

export class LevelLogStore implements ShardLogHost {
  private readonly shardLogs = new Map<number, ShardLog>();
  /** Shards being dropped: their tombstone is written (or being written), the rest not yet deleted. */
  private readonly dropping = new Set<number>();
  private pending: Pending = emptyPending();
  /** Writes a deferred-only pending batch out when nothing else did in time. */
  private deferredTimer: NodeJS.Timeout | undefined;
  private flushScheduled = false;
  private writing = false;
  /** Writes in flight in the no-group-commit mode (the benchmark's comparison). */
  private writingAlone = 0;
  private failure: Error | undefined;
  private closed = false;
  private readonly deletions: DeletionTask[] = [];
  private readonly background = new Set<Promise<unknown>>();
  private idleWaiters: Array<() => void> = [];
  private syncedWriteListener: ((seconds: number) => void) | undefined;
  readonly stats: LogStoreStats = { syncedBatches: 0, saves: 0, compactedKeys: 0, loads: 0 };
  private readonly groupCommit: boolean;
  private readonly sync: boolean;
  private readonly tailBytes: number;

  private constructor(
    private readonly db: Level<Uint8Array, Uint8Array>,
    private readonly options: LevelLogStoreOptions,
  ) {
    this.groupCommit = options.groupCommit ?? true;
    this.sync = options.sync ?? true;
    this.tailBytes = options.tailCacheBytesMax ?? defaultTailCacheBytesMax;
  }

  /** Opens (or creates) the store and recovers every shard; rejects on damaged data. */
  static async open(options: LevelLogStoreOptions): Promise<LevelLogStore> {
    const db = new Level<Uint8Array, Uint8Array>(options.path, { keyEncoding: 'view', valueEncoding: 'view' });
    await db.open();
    const store = new LevelLogStore(db, options);
    try {
      await store.recover();
    } catch (error) {
      await db.close();
      throw error;
    }
    return store;
  }

  /**
   * The log of `shard`; a shard never seen before starts empty (nothing is written until a save).
   * A shard whose drop is under way has no log until the drop is done.
   */
  shard(shard: number): ShardLog {
    assert(!this.dropping.has(shard), `shard ${shard} is being dropped`);
    let log = this.shardLogs.get(shard);
    if (log === undefined) {
      log = new ShardLog(shard, this, this.tailBytes);
      this.shardLogs.set(shard, log);
    }
    return log;
  }

  /**
   * The shards this store holds state for (any entry, snapshot, hard state, conf state or applied
   * index, recovered or saved), ascending: after open, the groups a restarting node hosts. A shard
   * only looked at through `shard(id)`, or dropped, is not among them.
   */
  shards(): number[] {
    const held: number[] = [];
    for (const [id, log] of this.shardLogs) if (log.holdsState()) held.push(id);
    return held.sort((a, b) => a - b);
  }

  /**
   * Lets every shard's tail cache go of its applied entries (and of entries read back for
   * followers), for an idle node: the server's memory settle. Only when nothing is queued or being
   * written, so every entry let go is in LevelDB and is read back from there when a follower asks
   * for it. Returns the bytes let go (0 when a write is under way).
   */
  releaseAppliedCaches(): number {
    // The runtime applies committed entries while their own write may still be under way, so an
    // applied entry is known to be in LevelDB only when no write is queued or running (nor failed:
    // a failed write's entries never got there).
    if (this.closed || this.failure !== undefined || this.writing || this.writingAlone > 0 || this.pending.ops.length > 0) return 0;
    let bytes = 0;
    for (const log of this.shardLogs.values()) bytes += log.releaseApplied();
    return bytes;
  }

  /**
   * Has LevelDB write its memtable out to a table file and free it (an idle node's memory settle):
   * the memtable keeps up to LevelDB's write buffer of the latest writes (4 MiB by default) in
   * memory until it fills, however long the node then stays idle. LevelDB's CompactRange flushes
   * the memtable first, whatever the range; the range given covers no record, so nothing else is
   * compacted. Resolves false without doing anything when the store is closed or has failed, or
   * when the database has no compactRange (`level` is classic-level on Node, which has it; its
   * types declare only what every `level` backend has, so the method is looked up by its manifest).
   */
  async flushMemtable(): Promise<boolean> {
    if (this.closed || this.failure !== undefined || this.db.supports.additionalMethods.compactRange !== true) return false;
    const db = this.db as unknown as { compactRange(start: Uint8Array, end: Uint8Array): Promise<void> };
    await db.compactRange(PAST_ALL_RECORDS_KEY, PAST_ALL_RECORDS_KEY);
    return true;
  }

  /** Shards whose drop has started and not finished (their remaining records are being deleted). */
  droppingShards(): number[] {
    return [...this.dropping].sort((a, b) => a - b);
  }

  // ---- Writes --------------------------------------------------------------------------------

  /**
   * `listener` gets the seconds of every synced batch from the moment it is handed to LevelDB to
   * its completion callback, without the wait behind an earlier batch (the server's
   * `dkv_log_synced_write_duration_seconds`), once the batch's saves have resolved. One
   * listener; a later call replaces it.
   */
  onSyncedWrite(listener: (seconds: number) => void): void {
    this.syncedWriteListener = listener;
  }

  save(updates: readonly ShardUpdate[], options: SaveOptions = {}): Promise<void> {
    if (this.closed) return Promise.reject(new StorageFailedError('the log store is closed'));
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const seen = new Set<number>();
    for (const update of updates) {
      if (this.dropping.has(update.shard)) return Promise.reject(new RangeError(`shard ${update.shard} is being dropped`));
      assert(!seen.has(update.shard), `save: shard ${update.shard} appears twice in one save`);
      seen.add(update.shard);
      const problem = this.problemWith(update);
      if (problem !== undefined) return Promise.reject(new RangeError(`shard ${update.shard}: ${problem}`));
    }
    const ops: BatchOp[] = [];
    for (const update of updates) this.stage(update, ops);
    return this.enqueue(ops, options);
  }

  /** Queues `ops` for the next batch (group commit), or writes them alone without group commit. */
  private enqueue(ops: BatchOp[], options: SaveOptions): Promise<void> {
    if (ops.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      if (!this.groupCommit) {
        this.writeAlone(ops, { resolve, reject });
        return;
      }
      for (const op of ops) this.pending.ops.push(op);
      this.pending.waiters.push({ resolve, reject });
      if (options.sync !== false) this.pending.mustSync = true;
      if (options.deferrable === true && options.sync === false) {
        this.armDeferredTimer();
        return;
      }
      this.pending.eager = true;
      this.scheduleFlush();
    });
  }

  /** Checks an update against the shard's state as it will be when the update is applied. */
  private problemWith(update: ShardUpdate): string | undefined {
    const log = this.shard(update.shard);
    let offset = log.offset;
    let last = log.last;
    const snap = update.snapshot;
    if (snap !== undefined && !isEmptySnapshot(snap)) {
      const index = snap.metadata.index;
      if (!Number.isSafeInteger(index) || index <= log.snapshotValue.metadata.index) {
        return `snapshot at index ${index} is not newer than the stored one at ${log.snapshotValue.metadata.index}`;
      }
      offset = index;
      last = index;
    }
    const entries = update.entries ?? [];
    const problem = log.appendProblem(entries, last, offset);
    if (problem !== undefined) return problem;
    if (entries.length > 0) last = Math.max(offset, entries[entries.length - 1]!.index);
    const taken = update.snapshotTaken;
    if (taken !== undefined) {
      const index = taken.metadata.index;
      const newest = Math.max(log.snapshotValue.metadata.index, snap?.metadata.index ?? 0);
      if (!Number.isSafeInteger(index) || index <= newest || index > last || index < offset) {
        return `a taken snapshot at ${index} must be newer than the stored one (${newest}) and within the log [${offset}, ${last}]`;
      }
      if (snap === undefined && entries.length === 0 && log.term(index) !== taken.metadata.term) {
        return `a taken snapshot at ${index} has term ${taken.metadata.term}, the log has ${log.term(index)}`;
      }
    }
    if (update.compact !== undefined) {
      if (!Number.isSafeInteger(update.compact) || update.compact < 0) return `bad compact index ${update.compact}`;
      if (update.compact > last) return `cannot compact to ${update.compact} beyond the last index ${last}`;
    }
    if (update.applied !== undefined && (!Number.isSafeInteger(update.applied) || update.applied < 0)) {
      return `bad applied index ${update.applied}`;
    }
    if (update.appliedInMemory !== undefined && (!Number.isSafeInteger(update.appliedInMemory) || update.appliedInMemory < 0)) {
      return `bad applied index ${update.appliedInMemory}`;
    }
    return undefined;
  }

  /** Applies a validated update in memory and adds its LevelDB operations to `ops`. */
  private stage(update: ShardUpdate, ops: BatchOp[]): void {
    const log = this.shard(update.shard);
    const opsBefore = ops.length;
    this.stageRecords(log, update, ops);
    if (ops.length > opsBefore) log.held = true;
  }

  private stageRecords(log: ShardLog, update: ShardUpdate, ops: BatchOp[]): void {
    const shard = update.shard;
    if (update.snapshot !== undefined && !isEmptySnapshot(update.snapshot)) this.stageSnapshot(log, update.snapshot, ops);
    if (update.entries !== undefined && update.entries.length > 0) {
      const live = log.livePart(update.entries);
      if (live.length > 0) {
        const { removedFrom, removedTo } = log.applyAppend(live);
        for (const e of live) {
          const key = entryKey(shard, e.index);
          ops.push({ type: 'put', key, value: sealedEntry(key, e) });
        }
        // A replaced suffix longer than the new entries: its tail goes in the same batch.
        for (let i = removedFrom; i <= removedTo; i++) ops.push({ type: 'del', key: entryKey(shard, i) });
      }
    }
    if (update.snapshotTaken !== undefined) this.stageTakenSnapshot(log, update.snapshotTaken, ops);
    if (update.hardState !== undefined) {
      log.hardState = { ...update.hardState };
      const key = shardKey(shard, Kind.HardState);
      ops.push({ type: 'put', key, value: seal(key, encodeHardState(update.hardState)) });
    }
    if (update.confState !== undefined) {
      log.confState = update.confState;
      const key = shardKey(shard, Kind.ConfState);
      ops.push({ type: 'put', key, value: seal(key, encodeConfState(update.confState)) });
    }
    if (update.applied !== undefined) {
      log.applied = Math.max(log.applied, update.applied);
      const key = shardKey(shard, Kind.Applied);
      ops.push({ type: 'put', key, value: seal(key, encodeIndex(log.applied)) });
    }
    if (update.appliedInMemory !== undefined) log.appliedInMemory = Math.max(log.appliedInMemory, update.appliedInMemory);
    if (update.compact !== undefined && update.compact > log.offset) {
      const oldOffset = log.applyCompact(update.compact);
      const key = shardKey(shard, Kind.Truncated);
      ops.push({ type: 'put', key, value: seal(key, encodeTruncated({ index: log.offset, term: log.offsetTerm })) });
      this.deletions.push({ shard, from: oldOffset, to: log.offset });
    }
    log.evict();
  }

  /** Writes a snapshot's descriptor and chunks in place of the previous snapshot's. */
  private writeSnapshotRecords(log: ShardLog, snapshot: Snapshot, ops: BatchOp[]): number {
    const shard = log.shard;
    const old = log.snapshotValue.metadata.index;
    for (let n = 0; n < log.snapshotChunks; n++) ops.push({ type: 'del', key: chunkKey(shard, old, n) });
    const data = snapshot.data;
    const chunks = Math.ceil(data.length / snapshotChunkBytesMax);
    const index = snapshot.metadata.index;
    for (let n = 0; n < chunks; n++) {
      const key = chunkKey(shard, index, n);
      ops.push({ type: 'put', key, value: seal(key, data.subarray(n * snapshotChunkBytesMax, (n + 1) * snapshotChunkBytesMax)) });
    }
    const descriptor: SnapshotDescriptor = {
      index,
      term: snapshot.metadata.term,
      confState: snapshot.metadata.confState,
      dataBytes: data.length,
      chunks,
      dataCrc: crc32c(data),
    };
    const metaKey = shardKey(shard, Kind.SnapshotMeta);
    ops.push({ type: 'put', key: metaKey, value: seal(metaKey, encodeSnapshotDescriptor(descriptor)) });
    return chunks;
  }

  private stageTakenSnapshot(log: ShardLog, snapshot: Snapshot, ops: BatchOp[]): void {
    const chunks = this.writeSnapshotRecords(log, snapshot, ops);
    log.snapshotValue = snapshot;
    log.snapshotChunks = chunks;
    // A restart replays the log after the snapshot, conf changes included, onto this configuration.
    log.confState = snapshot.metadata.confState;
    const confKey = shardKey(log.shard, Kind.ConfState);
    ops.push({ type: 'put', key: confKey, value: seal(confKey, encodeConfState(snapshot.metadata.confState)) });
  }

  private stageSnapshot(log: ShardLog, snapshot: Snapshot, ops: BatchOp[]): void {
    const shard = log.shard;
    const chunks = this.writeSnapshotRecords(log, snapshot, ops);
    const { oldOffset, oldLast } = log.applySnapshotInMemory(snapshot, chunks);
    const index = snapshot.metadata.index;
    const truncKey = shardKey(shard, Kind.Truncated);
    ops.push({ type: 'put', key: truncKey, value: seal(truncKey, encodeTruncated({ index, term: snapshot.metadata.term })) });
    const confKey = shardKey(shard, Kind.ConfState);
    ops.push({ type: 'put', key: confKey, value: seal(confKey, encodeConfState(snapshot.metadata.confState)) });
    // Entries after the snapshot index must not survive a restart: delete them in this batch.
    for (let i = Math.max(index, oldOffset) + 1; i <= oldLast; i++) ops.push({ type: 'del', key: entryKey(shard, i) });
    if (Math.min(index, oldLast) > oldOffset) this.deletions.push({ shard, from: oldOffset, to: Math.min(index, oldLast) });
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.writing) return;
    this.flushScheduled = true;
    // At the end of the current task: every save made during it joins the batch, and the write
    // starts without waiting for a later phase of the event loop.
    queueMicrotask(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private armDeferredTimer(): void {
    if (this.deferredTimer !== undefined) return;
    this.deferredTimer = setTimeout(() => {
      this.deferredTimer = undefined;
      if (this.pending.ops.length > 0) this.scheduleFlush();
    }, deferredWriteDelayMs);
    this.deferredTimer.unref();
  }

  private clearDeferredTimer(): void {
    if (this.deferredTimer !== undefined) clearTimeout(this.deferredTimer);
    this.deferredTimer = undefined;
  }

  private flush(): void {
    if (this.writing) return;
    const batch = this.pending;
    if (batch.ops.length === 0 && this.deletions.length === 0) {
      this.notifyIdle();
      return;
    }
    this.clearDeferredTimer();
    this.pending = emptyPending();
    // One bounded compaction step rides along with each batch (the write path is the only writer).
    const ops = this.takeDeletionStep().concat(batch.ops);
    const synced = batch.mustSync && this.sync;
    this.writing = true;
    const startedMs = performance.now();
    this.writeBatch(ops, synced).then(
      () => {
        this.writing = false;
        const seconds = (performance.now() - startedMs) / 1000;
        if (synced) this.stats.syncedBatches++;
        this.stats.saves += batch.waiters.length;
        for (const waiter of batch.waiters) waiter.resolve();
        if (synced) this.syncedWriteListener?.(seconds);
        // What queued meanwhile goes out now, as the next group (deferred saves alone wait).
        if (this.pending.eager || this.deletions.length > 0 || (this.idleWaiters.length > 0 && this.pending.ops.length > 0)) this.flush();
        else {
          if (this.pending.ops.length > 0) this.armDeferredTimer();
          this.notifyIdle();
        }
      },
      (error: unknown) => {
        this.writing = false;
        this.fail(new StorageFailedError(`log store write failed: ${String(error)}`, { cause: error }));
        for (const waiter of batch.waiters) waiter.reject(this.failure!);
      },
    );
  }

  /**
   * One atomic LevelDB write. A chained batch: the array form of `batch()` copies and re-checks
   * every operation object, which costs more than the write itself at these sizes.
   */
  private writeBatch(ops: readonly BatchOp[], sync: boolean): Promise<void> {
    const batch = this.db.batch();
    for (const op of ops) {
      if (op.type === 'put') batch.put(op.key, op.value);
      else batch.del(op.key);
    }
    return batch.write({ sync });
  }

  private writeAlone(ops: BatchOp[], waiter: Waiter): void {
    this.writingAlone++;
    const startedMs = performance.now();
    this.writeBatch(this.takeDeletionStep().concat(ops), this.sync).then(
      () => {
        this.writingAlone--;
        const seconds = (performance.now() - startedMs) / 1000;
        if (this.sync) this.stats.syncedBatches++;
        this.stats.saves++;
        waiter.resolve();
        if (this.sync) this.syncedWriteListener?.(seconds);
        this.notifyIdle();
      },
      (error: unknown) => {
        this.writingAlone--;
        this.fail(new StorageFailedError(`log store write failed: ${String(error)}`, { cause: error }));
        waiter.reject(this.failure!);
      },
    );
  }

  private takeDeletionStep(): BatchOp[] {
    const ops: BatchOp[] = [];
    while (ops.length < compactionDeleteKeysMax && this.deletions.length > 0) {
      const task = this.deletions[0]!;
      const to = Math.min(task.to, task.from + (compactionDeleteKeysMax - ops.length));
      for (let i = task.from + 1; i <= to; i++) ops.push({ type: 'del', key: entryKey(task.shard, i) });
      task.from = to;
      if (task.from >= task.to) this.deletions.shift();
    }
    this.stats.compactedKeys += ops.length;
    return ops;
  }

  private fail(error: Error): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    for (const waiter of this.pending.waiters) waiter.reject(error);
    this.pending = emptyPending();
    this.clearDeferredTimer();
    this.options.onFatal?.(error);
    this.notifyIdle();
  }

  // ---- Background loads of older entries ------------------------------------------------

  loadEntries(shard: number, lo: number, hi: number): void {
    const log = this.shardLogs.get(shard);
    // A dropped shard's log (still held by a group that stopped) loads nothing.
    if (log === undefined || this.dropping.has(shard)) return;
    if (log.loading.has(lo) || this.failure !== undefined || this.closed) return;
    log.loading.add(lo);
    const epoch = log.epoch;
    const task = this.readEntries(shard, lo, hi).then(
      (entries) => {
        log.loading.delete(lo);
        this.stats.loads++;
        log.addLoaded(lo, entries, epoch);
      },
      (error: unknown) => {
        log.loading.delete(lo);
        // A record that no longer exists was compacted meanwhile, or its shard dropped; anything
        // else is damage.
        const current = this.shardLogs.get(shard) === log;
        if (error instanceof StorageCorruptionError && current && log.epoch === epoch && lo > log.offset) this.fail(error);
      },
    );
    this.track(task);
  }

  private async readEntries(shard: number, lo: number, hi: number): Promise<Entry[]> {
    const entries: Entry[] = [];
    let bytes = 0;
    let expected = lo;
    for await (const [key, value] of this.db.iterator({ gte: entryKey(shard, lo), lt: entryKey(shard, hi) })) {
      const entry = this.decodeEntryRecord(shard, key, value, expected);
      entries.push(entry);
      expected++;
      bytes += entry.data.length;
      if (bytes >= loadBytesMax) break;
    }
    return entries;
  }

  private decodeEntryRecord(shard: number, key: Uint8Array, value: Uint8Array, expected: number): Entry {
    const parsed = parseShardKey(key);
    const index = parsed?.index ?? expected;
    if (parsed === undefined || parsed.kind !== Kind.Entry || parsed.shard !== shard) {
      throw new StorageCorruptionError(shard, expected, key, 'unexpected key among the log entries');
    }
    if (index !== expected) throw new StorageCorruptionError(shard, expected, key, `gap in the log: expected index ${expected}, found ${index}`);
    const payload = unseal(key, value);
    const entry = payload === undefined ? undefined : decodeEntry(index, payload);
    if (entry === undefined) throw new StorageCorruptionError(shard, index, key, 'undecodable log entry (checksum or layout)');
    return entry;
  }

  private track(task: Promise<unknown>): void {
    this.background.add(task);
    void task.finally(() => {
      this.background.delete(task);
      this.notifyIdle();
    });
  }

  // ---- Snapshot data streaming ---------------------------------------------------------

  /** The stored snapshot data of `shard`, chunk by chunk, read from disk and checked. */
  async *readSnapshotChunks(shard: number): AsyncGenerator<Uint8Array> {
    const log = this.shard(shard);
    const index = log.snapshotValue.metadata.index;
    const chunks = log.snapshotChunks;
    for (let n = 0; n < chunks; n++) {
      const key = chunkKey(shard, index, n);
      const value = await this.db.get(key);
      const payload = value === undefined ? undefined : unseal(key, value);
      if (payload === undefined) throw new StorageCorruptionError(shard, index, key, `snapshot chunk ${n} is missing or damaged`);
      yield payload;
    }
  }

  // ---- Shard removal, idle, close --------------------------------------------------------

  /**
   * Deletes every record of `shard` and forgets its log, at once in memory (`shard(id)` refuses
   * it, a save for it rejects, until the drop is done). On disk, first a tombstone record goes out
   * in the group commit, synced, after every save made before: from then on recovery treats the
   * shard as absent, whatever part of the rest a crash leaves. Then the shard's other records are
   * deleted (on LevelDB's thread, beside the other shards' batches), and last the tombstone.
   * Resolves when all of it is on disk; a crash before the tombstone is durable leaves the shard
   * whole.
   */
  dropShard(shard: number): Promise<void> {
    if (this.closed) return Promise.reject(new StorageFailedError('the log store is closed'));
    if (this.failure !== undefined) return Promise.reject(this.failure);
    assert(!this.dropping.has(shard), `shard ${shard} is already being dropped`);
    const key = shardKey(shard, Kind.Dropped);
    this.shardLogs.delete(shard);
    this.dropping.add(shard);
    // Compaction steps of its entries are no longer needed: the drop deletes them all.
    for (let i = this.deletions.length - 1; i >= 0; i--) if (this.deletions[i]!.shard === shard) this.deletions.splice(i, 1);
    const tombstone = this.enqueue([{ type: 'put', key, value: seal(key, new Uint8Array(0)) }], { sync: true });
    // Tracked as a whole, so idle() and close() wait for the deletion too.
    const drop = tombstone.then(() => this.finishDrop(shard));
    this.track(drop.catch(() => undefined));
    return drop;
  }

  /** Deletes what is left of a shard whose tombstone is durable, then the tombstone. */
  private async finishDrop(shard: number): Promise<void> {
    const key = shardKey(shard, Kind.Dropped);
    const range = shardRange(shard);
    try {
      await this.db.clear({ gt: key, lt: range.lt });
      // Unsynced: if a crash loses it, recovery finds a tombstone alone and deletes it again.
      await this.db.del(key);
    } catch (error) {
      this.fail(new StorageFailedError(`log store: dropping shard ${shard} failed: ${String(error)}`, { cause: error }));
      throw this.failure!;
    }
    this.dropping.delete(shard);
  }

  /** Resolves when no write, compaction step or load is outstanding (deferred saves go out now). */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    if (this.pending.ops.length > 0 && this.failure === undefined) this.scheduleFlush();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private isIdle(): boolean {
    const drained = this.failure !== undefined || (this.pending.ops.length === 0 && this.deletions.length === 0);
    return drained && !this.writing && this.writingAlone === 0 && !this.flushScheduled && this.background.size === 0;
  }

  private notifyIdle(): void {
    if (this.deletions.length > 0 && !this.writing && this.failure === undefined && !this.closed) {
      this.scheduleFlush();
      return;
    }
    if (!this.isIdle()) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.idle();
    this.closed = true;
    await this.db.close();
  }

  // ---- Recovery ------------------------------------------------------------------------

  private async recover(): Promise<void> {
    const format = await this.db.get(FORMAT_KEY);
    if (format === undefined) {
      const first = await this.db.keys({ limit: 1 }).all();
      if (first.length > 0) throw new StorageCorruptionError(undefined, undefined, first[0]!, 'records exist but the format version record is missing');
      await this.db.put(FORMAT_KEY, seal(FORMAT_KEY, encodeFormat(formatVersion)), { sync: true });
    } else {
      const payload = unseal(FORMAT_KEY, format);
      const version = payload === undefined ? undefined : decodeFormat(payload);
      if (version !== formatVersion) {
        throw new StorageCorruptionError(undefined, undefined, FORMAT_KEY, `unknown store format ${version ?? '(undecodable)'}; this build reads ${formatVersion}`);
      }
    }
    let current: ShardRecovery | undefined;
    /** A shard with a tombstone: absent; its records (after the tombstone, in key order) are skipped. */
    let skipping: number | undefined;
    const dropped: number[] = [];
    for await (const batch of readAhead(this.db.iterator({ gt: FORMAT_KEY, highWaterMarkBytes: recoveryReadBytes }))) {
      const values = packValues(batch);
      for (let i = 0; i < batch.length; i++) {
        const key = batch[i]![0];
        const value = values[i]!;
        const parsed = parseShardKey(key);
        if (parsed === undefined) throw new StorageCorruptionError(undefined, undefined, key, 'a key this store does not write');
        if (parsed.shard === skipping) continue;
        if (parsed.kind === Kind.Dropped) {
          // invariant: the tombstone is the shard's first key, so nothing of it was taken yet.
          assert(current === undefined || current.shard !== parsed.shard, `shard ${parsed.shard}: records before its tombstone`);
          if (unseal(key, value) === undefined) throw new StorageCorruptionError(parsed.shard, undefined, key, 'undecodable drop tombstone (checksum mismatch)');
          if (current !== undefined) this.finishShard(current);
          current = undefined;
          skipping = parsed.shard;
          dropped.push(parsed.shard);
          continue;
        }
        if (current === undefined || current.shard !== parsed.shard) {
          if (current !== undefined) this.finishShard(current);
          current = new ShardRecovery(parsed.shard, this.shard(parsed.shard));
          current.log.held = true;
        }
        current.take(parsed.kind, parsed.index, parsed.chunk, key, value, this);
      }
    }
    if (current !== undefined) this.finishShard(current);
    if (this.deletions.length > 0) this.scheduleFlush();
    // Drops a crash interrupted go on in the background (idle() and close() wait for them).
    for (const shard of dropped) {
      this.dropping.add(shard);
      this.track(this.finishDrop(shard).catch(() => undefined));
    }
  }

  private finishShard(recovery: ShardRecovery): void {
    const leftover = recovery.finish();
    if (leftover !== undefined) this.deletions.push(leftover);
  }

  /** Used by recovery; public only to ShardRecovery. */
  decodeEntryForRecovery(shard: number, key: Uint8Array, value: Uint8Array, expected: number): Entry {
    return this.decodeEntryRecord(shard, key, value, expected);
  }
}

/** What `readAhead` needs of a LevelDB iterator. */
interface RecordIterator {
  nextv(size: number): Promise<Array<[Uint8Array, Uint8Array]>>;
  close(): Promise<void>;
}

/**
 * The iterator's records in batches of up to `recoveryReadBytes`, the next batch read (on
 * LevelDB's thread) while the caller checks the current one. One read is in flight at a time, as
 * the iterator requires; the iterator is closed however the caller stops.
 */
async function* readAhead(iterator: RecordIterator): AsyncGenerator<Array<[Uint8Array, Uint8Array]>> {
  let reading: Promise<Array<[Uint8Array, Uint8Array]>> | undefined;
  try {
    reading = iterator.nextv(recoveryReadRecordsMax);
    for (;;) {
      const batch = await reading;
      reading = undefined;
      if (batch.length === 0) return;
      reading = iterator.nextv(recoveryReadRecordsMax);
      // Its failure is awaited above on the next turn of the loop; until then (the caller checks
      // the batch, and may await meanwhile) it must not count as unhandled.
      reading.catch(() => undefined);
      yield batch;
    }
  } finally {
    // A caller that stopped early (damage found) leaves one read in flight: let it finish first.
    if (reading !== undefined) await reading.catch(() => undefined);
    // A failure to close must not hide the error that stopped the read (damage, an I/O error).
    await iterator.close().catch(() => undefined);
  }
}

/**
 * The values of one read batch as views of one buffer. LevelDB hands each value over in a buffer
 * of its own, from the C heap; the recovered entries live until they are applied, and a restart's
 * thousands of such buffers, freed among longer-lived allocations, left the heap fragmented (RSS
 * after a restart stayed tens of MB above the node's before). One block per batch is freed whole.
 */
function packValues(batch: ReadonlyArray<[Uint8Array, Uint8Array]>): Uint8Array[] {
  let bytes = 0;
  for (const [, value] of batch) bytes += value.length;
  const block = new Uint8Array(bytes);
  const views: Uint8Array[] = [];
  let at = 0;
  for (const [, value] of batch) {
    block.set(value, at);
    views.push(block.subarray(at, at + value.length));
    at += value.length;
  }
  return views;
}

/** Rebuilds one shard from its records, which arrive in key order (small records, chunks, log). */
class ShardRecovery {
  private hardKey: Uint8Array | undefined;
  private truncated: { index: number; term: number } | undefined;
  private descriptor: SnapshotDescriptor | undefined;
  private descriptorKey: Uint8Array | undefined;
  private chunks: Uint8Array[] = [];
  private readonly entries: Entry[] = [];
  private garbageFrom: number | undefined;
  private garbageTo = 0;
  private snapshotDone = false;
  private snapshotKey: Uint8Array | undefined;

  constructor(
    readonly shard: number,
    readonly log: ShardLog,
  ) {}

  private corrupt(key: Uint8Array, index: number | undefined, reason: string): never {
    throw new StorageCorruptionError(this.shard, index, key, reason);
  }

  private payload(key: Uint8Array, value: Uint8Array, index: number | undefined, what: string): Uint8Array {
    const payload = unseal(key, value);
    if (payload === undefined) this.corrupt(key, index, `undecodable ${what} record (checksum mismatch)`);
    return payload;
  }

  take(kind: number, index: number | undefined, chunk: number | undefined, key: Uint8Array, value: Uint8Array, store: LevelLogStore): void {
    switch (kind) {
      case Kind.HardState: {
        const hs = decodeHardState(this.payload(key, value, undefined, 'hard state'));
        if (hs === undefined) this.corrupt(key, undefined, 'undecodable hard state record');
        this.log.hardState = hs;
        this.hardKey = key;
        return;
      }
      case Kind.ConfState: {
        const cs = decodeConfState(this.payload(key, value, undefined, 'conf state'));
        if (cs === undefined) this.corrupt(key, undefined, 'undecodable conf state record');
        this.log.confState = cs;
        return;
      }
      case Kind.Applied: {
        const applied = decodeIndex(this.payload(key, value, undefined, 'applied index'));
        if (applied === undefined) this.corrupt(key, undefined, 'undecodable applied index record');
        this.log.applied = applied;
        return;
      }
      case Kind.Truncated: {
        const t = decodeTruncated(this.payload(key, value, undefined, 'truncation'));
        if (t === undefined) this.corrupt(key, undefined, 'undecodable truncation record');
        this.truncated = t;
        this.log.offset = t.index;
        this.log.offsetTerm = t.term;
        return;
      }
      case Kind.SnapshotMeta: {
        const d = decodeSnapshotDescriptor(this.payload(key, value, undefined, 'snapshot descriptor'));
        if (d === undefined) this.corrupt(key, undefined, 'undecodable snapshot descriptor');
        this.descriptor = d;
        this.descriptorKey = key;
        return;
      }
      case Kind.SnapshotChunk: {
        const d = this.descriptor;
        if (d === undefined || index !== d.index) this.corrupt(key, index, `a snapshot chunk without its descriptor (descriptor is at ${d?.index ?? 'none'})`);
        if (chunk !== this.chunks.length) this.corrupt(key, index, `snapshot chunk ${chunk} where chunk ${this.chunks.length} was expected`);
        this.chunks.push(this.payload(key, value, index, 'snapshot chunk'));
        return;
      }
      case Kind.Entry: {
        this.finishSnapshot();
        const i = index!;
        if (i <= this.log.offset) {
          // Below the compaction point: left over from an interrupted background deletion.
          this.garbageFrom ??= i - 1;
          this.garbageTo = i;
          return;
        }
        const expected = this.log.offset + 1 + this.entries.length;
        const entry = store.decodeEntryForRecovery(this.shard, key, value, expected);
        const previousTerm = this.entries.length > 0 ? this.entries[this.entries.length - 1]!.term : this.log.offsetTerm;
        if (entry.term < previousTerm) this.corrupt(key, i, `term goes down from ${previousTerm} to ${entry.term}`);
        this.entries.push(entry);
        return;
      }
    }
  }

  private finishSnapshot(): void {
    if (this.snapshotDone) return;
    this.snapshotDone = true;
    const d = this.descriptor;
    if (d === undefined) return;
    const key = this.descriptorKey!;
    if (this.chunks.length !== d.chunks) this.corrupt(key, d.index, `snapshot has ${this.chunks.length} of its ${d.chunks} chunks`);
    const data = new Uint8Array(d.dataBytes);
    let at = 0;
    for (const chunk of this.chunks) {
      if (at + chunk.length > data.length) this.corrupt(key, d.index, 'snapshot chunks are longer than the descriptor says');
      data.set(chunk, at);
      at += chunk.length;
    }
    if (at !== d.dataBytes || crc32c(data) !== d.dataCrc) this.corrupt(key, d.index, 'snapshot data does not match its descriptor (length or checksum)');
    this.chunks = [];
    this.log.snapshotValue = { metadata: { index: d.index, term: d.term, confState: d.confState }, data };
    this.log.snapshotChunks = d.chunks;
    this.snapshotKey = key;
  }

  /** Checks the shard as a whole and installs its log; returns leftover records to delete. */
  finish(): DeletionTask | undefined {
    this.finishSnapshot();
    this.log.recover(this.entries);
    const snapshotIndex = this.log.snapshotValue.metadata.index;
    if (this.snapshotKey !== undefined && snapshotIndex > this.log.last) {
      this.corrupt(this.snapshotKey, snapshotIndex, `the snapshot at ${snapshotIndex} is beyond the log, which ends at ${this.log.last}`);
    }
    const hs = this.log.hardState;
    if (hs.commit > this.log.last) {
      this.corrupt(this.hardKey!, hs.commit, `hard state commit ${hs.commit} is beyond the last index ${this.log.last}`);
    }
    if (this.log.applied > this.log.last) {
      this.corrupt(shardKey(this.shard, Kind.Applied), this.log.applied, `applied index ${this.log.applied} is beyond the last index ${this.log.last}`);
    }
    return this.garbageFrom === undefined ? undefined : { shard: this.shard, from: this.garbageFrom, to: this.garbageTo };
  }
}
