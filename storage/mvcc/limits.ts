/**
 * Every limit and default of the MVCC segment store, in one place (units last). The relations
 * between them are asserted when this module loads.
 */
import { assert } from './errors.js';

/** Keys a segment holds before it splits in two (the default; a store may choose its own). */
export const segmentKeysMaxDefault = 512;
/** Smallest per-store segment size a store may configure (tests use it to split constantly). */
export const segmentKeysMaxMin = 4;
/** Largest per-store segment size: an insert shifts at most this many slots of one segment. */
export const segmentKeysMaxLimit = 65_536;
/** A segment whose keys fall below max / this merges into a neighbour when they fit together. */
export const segmentKeysMinDivisor = 4;
/** Live record bytes after which a segment with at least two keys splits (keeps rewrites bounded). */
export const segmentBytesMax = 4 * 1024 * 1024;
/**
 * A segment built in bulk (a restore, `MvccStore.retained`) is closed at this many quarters of the
 * store's keys per segment, or once its live bytes reach `segmentFillBytes`: room to grow before
 * it splits.
 */
export const segmentFillQuarters = 3;
export const segmentFillBytes = segmentBytesMax / 2;
/** Largest arena a segment may ever hold; record offsets are 32-bit. */
export const arenaBytesMax = 0xffff_fff0;
/** First arena of a new segment. */
export const arenaBytesInitial = 1024;
/**
 * Largest arena a new segment gets before its first record, sized for a full segment of keys like
 * its neighbour's (keys loaded in order); past it, the arena grows as it fills.
 */
export const arenaPresizedBytesMax = 256 * 1024;
/** Arena growth when a record does not fit (numerator / 4: 1.5x keeps slack near a quarter). */
export const arenaGrowthQuarters = 6;
/** Free room left after rewriting an arena, in eighths of its live bytes. */
export const arenaRewriteHeadroomEighths = 1;
/** An arena is rewritten once garbage exceeds this fraction (in halves: 1 = half) of its bytes. */
export const arenaGarbageHalvesMax = 1;

/** Bytes of one key (etcd's default request limit bounds it on the wire; this bounds it here). */
export const keyBytesMax = 1536 * 1024;
/** Bytes of one value. */
export const valueBytesMax = 16 * 1024 * 1024;
/**
 * Operations in one branch (or the compares) of a transaction: etcd's --max-txn-ops default. As in
 * etcd, the budget is shared down a path of nested transactions: a nested txn gets what its parent
 * left (this minus the parent's largest list).
 */
export const txnOperationsMax = 128;
/**
 * Deepest nesting of transactions (the request itself is depth 1). Not a separate rule: it is
 * what the shared operations budget allows, since each level that holds a nested txn spends at
 * least one operation: 128 one-operation levels around an empty txn. etcd 3.4 accepts exactly
 * this (measured) and refuses one level more with "too many operations in txn request".
 */
export const txnDepthMax = txnOperationsMax + 1;

/**
 * Highest revision the store may reach. One below Number.MAX_SAFE_INTEGER, so that a wire int64
 * beyond the safe range can be saturated to MAX_SAFE_INTEGER and still compare above every
 * revision, version and count the store holds (see src/etcd-proto.ts int64Saturated).
 */
export const revisionMax = Number.MAX_SAFE_INTEGER - 1;

/** Change-log entries per chunk; compaction frees whole chunks. */
export const changeLogChunkEntries = 4096;

/** Largest snapshot chunk, header and CRC included. */
export const snapshotChunkBytesMax = 1024 * 1024;
/** Snapshot format this code writes (2: lease ids are exact int64s; 1 held them as f64). */
export const snapshotFormatVersion = 2;
/** Oldest snapshot format this code still reads. */
export const snapshotFormatVersionMin = 1;
/** Bytes of a snapshot chunk's frame: header (16) and trailing CRC (4). */
export const snapshotChunkFrameBytes = 20;

assert(segmentKeysMaxMin >= 4, 'a segment must hold enough keys to split into two non-empty halves');
assert(segmentKeysMaxMin <= segmentKeysMaxDefault && segmentKeysMaxDefault <= segmentKeysMaxLimit, 'segment size default out of bounds');
assert(segmentFillQuarters >= 1 && segmentFillQuarters <= 4 && segmentFillBytes <= segmentBytesMax, 'a bulk-built segment fills at most to its limits');
assert(segmentKeysMinDivisor >= 2, 'merging must leave room below the split size');
assert(arenaBytesInitial > 0 && segmentBytesMax < arenaBytesMax, 'segment bytes must fit an arena');
assert(arenaGrowthQuarters > 4, 'arenas must grow');
assert(arenaBytesInitial <= arenaPresizedBytesMax && arenaPresizedBytesMax <= segmentBytesMax, 'a presized arena is between a first arena and a full segment');
assert(keyBytesMax + valueBytesMax + 64 < arenaBytesMax, 'one record must fit an arena');
assert(snapshotChunkBytesMax > snapshotChunkFrameBytes + 64, 'a snapshot chunk must carry payload');
assert(txnOperationsMax > 0, 'a transaction must admit one operation');
assert(txnDepthMax === txnOperationsMax + 1, 'the depth limit is what the shared operations budget allows');
assert(revisionMax < Number.MAX_SAFE_INTEGER, 'a saturated wire revision must stay above every revision');
assert(snapshotFormatVersionMin <= snapshotFormatVersion, 'snapshot formats out of order');
