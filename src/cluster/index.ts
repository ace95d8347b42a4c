/** src/cluster: the cluster model: member and cluster identity, and the shard map. */
export { addedMemberIdOf, assertId, clusterIdOf, formatId, memberIdOf, type PeerUrlLike } from './identity.js';
export * from './model.js';
