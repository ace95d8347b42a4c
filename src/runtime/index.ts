/** The shard runtime's front door: other folders import only this. */
export {
  NodeRuntime,
  type NodeRuntimeOptions,
  type RaftSettings,
  type RequestOptions,
  type RuntimeClock,
  type RuntimeListener,
  type RuntimeScheduler,
  type RuntimeStorage,
  type RuntimeTransport,
  type SaveOptions,
  type ShardLogView,
  type ShardStatus,
  QUIESCE_FEATURE_VERSION,
  RUNTIME_FEATURES_ID,
  firstRequestId,
  unwrapConfContext,
  wrapConfContext,
} from './runtime.js';
export { authEngineOf, composeStateMachine, counterEngineOf, alarmEngineOf, kvEngineOf, leaseEngineOf, metaEngineOf, ownershipEngineOf, ttlEngineOf, type ComposeOptions, type ShardKind } from './compose.js';
export {
  type Applied,
  ShardStateMachine,
  type ShardStateView,
  type ShardStateMachineOptions,
  SnapshotFormatError,
  StateMachineHaltError,
} from './state-machine.js';
export { type AppliedChain, CHAIN_START, extendChain, hashBytes } from './applied-chain.js';
export { type CommandEnvelope, ENVELOPE_HEADER_BYTES, EnvelopeDecodeError, decodeEnvelope, encodeEnvelope, envelopeOrigin } from './envelope.js';
export { RuntimeError, type RuntimeErrorCode, ShardElsewhereError, indeterminateCodes } from './errors.js';
export { type KeyRange, type RangePart, type RoutedPart, Router, type ShardHandle, type ShardMap, metaShardMap, singleStoreMap } from './router.js';
export { type PendingCounts } from './pending.js';
export * as runtimeLimits from './limits.js';
