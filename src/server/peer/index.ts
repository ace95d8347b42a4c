/**
 * The peer transport's front door: Raft messages of every shard between nodes, and requests with
 * their answers, over one TCP (or TLS) link per pair of nodes. Other folders import only from here.
 */
export {
  PeerTransport,
  type PeerTransportOptions,
  type PeerTransportStats,
  type PeerRequestOptions,
  peerFeatureRequests,
  type PeerLinkError,
  type PeerTlsOptions,
  type PeerLogLevel,
  queryCluster,
  removedMemberRefusal,
  peerTarget,
  reconnectDelayMs,
  PeerCertificateError,
} from './transport.js';
export {
  admitPeer,
  addressMatch,
  canonicalIp,
  certificateProblem,
  peerRefusalReasons,
  type Admission,
  type AdmissionView,
  type CertificateNames,
  type CertificateRule,
  type PeerRefusalReason,
} from './admission.js';
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
export {
  LINK_CLOSE,
  LINK_CLUSTER_ANSWER,
  LINK_CLUSTER_QUERY,
  LINK_FRAME,
  LINK_PING,
  LINK_PONG,
  LINK_PREAMBLE,
  LinkProtocolError,
  RecordReader,
  decodeClose,
  encodeClose,
  encodePreamble,
  encodeRecord,
  linkStatus,
  type LinkStatus,
} from './wire.js';
export * as peerLimits from './limits.js';
