/**
 * The counter engine's limits (units last).
 */
import { assert } from '../../../raft/index.js';
// The limits alone: `dkv counter --help` reads these without loading LevelDB.
import * as mvccLimits from '../../../storage/mvcc/limits.js';

/** The smallest and largest value a counter holds (a signed 64-bit integer). */
export const counterValueMin = -(2n ** 63n);
export const counterValueMax = 2n ** 63n - 1n;

/** Characters of the longest counter value's text ("-9223372036854775808"). */
export const counterDigitsMax = counterValueMin.toString().length;

/**
 * The longest TTL a counter write may carry (ms): etcd's largest lease TTL (9,000,000,000 s), so
 * a counter lives at most as long as a leased key can.
 */
export const counterTtlMsMax = 9_000_000_000 * 1000;

/** A counter's key is a store key: the store's limit. */
export const counterKeyBytesMax = mvccLimits.keyBytesMax;

/** Bytes of an Increment or Set command's payload before the key: amount i64, TTL f64. */
export const counterHeaderBytes = 16;

assert(counterDigitsMax === 20 && counterValueMax.toString().length === 19, 'an int64 takes at most 20 characters');
// A deadline (a leader's clock, ~2^41 ms today, plus the TTL) must stay an exact number.
assert(Number.isSafeInteger(counterTtlMsMax) && counterTtlMsMax < Number.MAX_SAFE_INTEGER / 2, 'counter TTLs must be exact in ms');
assert(counterKeyBytesMax > 0, 'a counter needs a key');
