/** src/cluster: the cluster model: member and cluster identity, and the shard map. */
export { addedMemberIdOf, assertId, clusterIdOf, formatId, memberIdOf, type PeerUrlLike } from './identity.js';
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
