/**
 * The TTL engine's limits (units last). Their relations are asserted when this module loads.
 */
import { assert } from '../../../raft/index.js';
import { mvccLimits } from '../../../storage/index.js';
import { wheelLimits } from '../expiry/index.js';

/** The longest TTL a key may have: 10 years (a longer one is refused at the edge and in apply). */
export const keyTtlMsMax = 10 * 365 * 24 * 60 * 60 * 1000;

/**
 * Entries of a txn's `ttls`. More could never matter: the branch a txn takes, nested txns
 * included, holds at most txnOperationsMax operations (each level gets what its parent left).
 */
export const keyTtlsPerTxnMax = mvccLimits.txnOperationsMax;

/** The expiry wheel's resolution: a key is proposed for expiry at most this late beyond its deadline and a tick. */
export const ttlWheelResolutionMs = 10;

/** Keys one Expire command names (one revision deletes them all; a leader proposes more on later ticks). */
export const ttlExpiriesPerCommandMax = 1024;

/** Key bytes one Expire command carries at most (a single key longer than this still goes alone). */
export const ttlExpireCommandKeyBytesMax = 512 * 1024;

/** Expire commands a leader proposes per tick, so a mass expiry cannot flood the log in one turn. */
export const ttlExpireCommandsPerTickMax = 8;

/** Keys a leader takes from the wheel per tick. */
export const ttlExpiriesPerTickMax = ttlExpiriesPerCommandMax * ttlExpireCommandsPerTickMax;

/**
 * Calls to the wheel's `advance` per tick while it is behind (each bounded by the wheel's limits):
 * a dense slot (a million TTLs over 30 s put ~21,000 timers in each 640 ms slot of level 1)
 * takes more than one call to cascade, and its keys would otherwise wait a tick more.
 */
export const ttlWheelAdvancesPerTickMax = 4;

/** Records one snapshot chunk of the TTL section holds (the section is encoded a chunk at a time). */
export const ttlSnapshotRecordsPerChunk = 16_384;

// Leader clocks are ms since 1970 (~2^41 now): a deadline that far plus the longest TTL stays exact.
assert(Number.isSafeInteger(keyTtlMsMax * 1000), 'deadlines (leader time plus a TTL) must stay exact integers');
assert(ttlExpiriesPerCommandMax >= 1 && ttlExpireCommandsPerTickMax >= 1, 'a leader must be able to expire something per tick');
assert(ttlExpiriesPerTickMax <= ttlWheelAdvancesPerTickMax * wheelLimits.wheelTimersDuePerAdvanceMax, "a tick's expiries fit the wheel advances it makes");
assert(ttlWheelAdvancesPerTickMax >= 1, 'a leader advances the wheel every tick');
assert(ttlExpireCommandKeyBytesMax >= 1024, 'an Expire command must hold more than a few keys');
