/**
 * The pure part of the cluster model (the shard map and its limits): no node module, no I/O, so
 * the engines (src/engines/meta) keep the map in the meta shard with it.
 */
export {
  DEFAULT_STORE,
  type RangePiece,
  ShardMap,
  ShardMapError,
  type ShardMapErrorCode,
  type ShardDef,
  type StoreDef,
  compareKeys,
  decodeShardMap,
  encodeShardMap,
  prefixEndOf,
} from './shard-map.js';
export * from './limits.js';
export { type GroupChange, type GroupConfigView, type PlacedStep, nextPlacedChange } from './placed-steps.js';
