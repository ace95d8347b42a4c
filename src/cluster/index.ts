/** src/cluster: the cluster model. Today: member and cluster identity. */
export { assertId, clusterIdOf, formatId, memberIdOf, type PeerUrlLike } from './identity';
