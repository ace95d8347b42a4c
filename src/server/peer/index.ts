/**
 * The peer transport's front door: Raft messages of every shard between nodes, and requests with
 * their answers, over one gRPC stream per pair of nodes. Other folders import only from here.
 */
export {
  PeerTransport,
  type PeerTransportOptions,
  type PeerTransportStats,
  type PeerRequestOptions,
  peerFeaturesMetadataKey,
  type PeerTlsOptions,
  type PeerLogLevel,
  peerStreamPath,
  peerClusterPath,
  queryCluster,
  removedMemberRefusal,
  peerTarget,
  reconnectDelayMs,
} from './transport.js';
export {
  PeerProtocolError,
  type PeerAnswer,
  type PeerFrame,
  type PeerHello,
  type ShardMessage,
  decodeFrame,
  encodeBatch,
  encodeHello,
  encodeSnapshotHeader,
  encodeSnapshotChunk,
  encodeRequest,
  encodeResponse,
  requestFrameOverheadBytes,
  responseFrameOverheadBytes,
  messageBytes,
  batchFrameBytes,
  wireMessageTypes,
} from './codec.js';
export {
  PeerRequestError,
  PeerRequestRefusal,
  type PeerRequestErrorCode,
  type PeerRequestReach,
} from './requests.js';
export * as peerLimits from './limits.js';
