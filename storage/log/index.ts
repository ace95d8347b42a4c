export { LevelLogStore, type LevelLogStoreOptions, type LogStoreStats, type SaveOptions } from './store';
export { ShardLog, type ShardUpdate } from './shard-log';
export { StorageCorruptionError, StorageFailedError } from './errors';
export * as logLimits from './limits';
export { entryKey, shardKey, chunkKey, Kind as RecordKind, hex as keyHex, readU64, writeU64 } from './keys';
