/**
 * Every limit of the LevelDB log store, in one place (units last). Load-time asserts say how they
 * relate.
 */
import { assert } from '../../raft/index.js';

/** Bytes of snapshot data per stored chunk record; a snapshot is never one LevelDB value. */
export const snapshotChunkBytesMax = 1024 * 1024;

/**
 * Bytes of already-applied entries each shard keeps in its in-memory tail cache, so a leader
 * sends fresh appends (and a slightly lagging follower's) without reading LevelDB. Entries not
 * yet applied always stay in memory whatever this says: the apply loop must never wait on disk.
 * An idle node lets go of all applied ones (`releaseAppliedCaches`, the server's memory settle).
 */
export const tailCacheBytesMax = 4 * 1024 * 1024;

/** Applied entries the tail cache keeps while writes go on, even when they are larger than `tailCacheBytesMax`. */
export const tailCacheEntriesMin = 64;

/** Bytes one background load of older entries (for a far-behind follower) reads at most. */
export const loadBytesMax = 8 * 1024 * 1024;

/**
 * Bytes of records recovery asks LevelDB for in one read (the iterator's high-water mark; its
 * default, 16 KiB, is about one entry of a bulk load's txn, so each entry cost a thread-pool round
 * trip). The next read runs while the current batch is checked and decoded.
 */
export const recoveryReadBytes = 4 * 1024 * 1024;

/** Records recovery asks LevelDB for in one read at most (small records: hard state, chunks' index). */
export const recoveryReadRecordsMax = 16 * 1024;

/** Older-entry ranges kept loaded per shard at once (one per far-behind follower, roughly). */
export const loadedRangesMax = 4;

/**
 * Entry keys one background compaction step deletes. Each step is one small unsynced batch, so
 * a save waits at most for one step, never for a whole compaction.
 */
export const compactionDeleteKeysMax = 1024;

/**
 * Milliseconds a deferrable save (a commit index change alone) may wait for another save's batch
 * before it is written by itself. A crash loses at most this much of the commit index, which the
 * leader tells again.
 */
export const deferredWriteDelayMs = 100;

/** Shard ids are unsigned 32-bit integers (they are 4 bytes of every key). */
export const shardIdMax = 0xffff_ffff;

/** The on-disk format this code writes and reads. */
export const formatVersion = 1;

assert(tailCacheBytesMax <= loadBytesMax, 'a load must be able to refill what the cache holds');
assert(recoveryReadBytes >= snapshotChunkBytesMax && recoveryReadRecordsMax > 0, 'a recovery read holds at least a snapshot chunk');
assert(compactionDeleteKeysMax > 0 && tailCacheEntriesMin > 0, 'limits are positive');
