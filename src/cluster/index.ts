/** src/cluster: the cluster model. Today: member and cluster identity. */
export { addedMemberIdOf, assertId, clusterIdOf, formatId, memberIdOf, type PeerUrlLike } from './identity.js';
