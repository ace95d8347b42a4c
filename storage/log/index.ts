export { LevelLogStore, type LevelLogStoreOptions, type LogStoreStats, type SaveOptions } from './store.js';
export { ShardLog, type ShardUpdate } from './shard-log.js';
export { StorageCorruptionError, StorageFailedError } from './errors.js';
export * as logLimits from './limits.js';
export { entryKey, shardKey, chunkKey, Kind as RecordKind, hex as keyHex, readU64, writeU64 } from './keys.js';
