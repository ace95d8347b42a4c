/** Limits of the cluster model (src/cluster/). */

/** Bytes of a store name (`[a-z0-9][a-z0-9_-]*`). */
export const storeNameBytesMax = 63;
/** Bytes of a mount prefix. */
export const storePrefixBytesMax = 512;
/** Stores of a map, the default store included. */
export const storesMax = 1024;
/** Shards of one store. */
export const shardsPerStoreMax = 4096;
/** Replicas of one shard. */
export const replicasMax = 7;
/** Byte values the byte after a mount's prefix can take: a mount's range is cut by that byte. */
export const byteValues = 256;
/** Shards a store is mounted with (at most one per value of the byte after the prefix). */
export const mountShardsMax = byteValues;
/** Bytes of a key a shard is split at (any shorter key between two keys splits as well). */
export const splitKeyBytesMax = 4096;

if (mountShardsMax > byteValues) throw new Error('mountShardsMax cuts a range by one byte: at most 256');
