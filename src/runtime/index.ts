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
  firstRequestId,
  unwrapConfContext,
  wrapConfContext,
} from './runtime';
export { composeStateMachine, counterEngineOf, alarmEngineOf, kvEngineOf, leaseEngineOf, metaEngineOf, ttlEngineOf, type ComposeOptions, type ShardKind } from './compose';
export {
  type Applied,
  ShardStateMachine,
  type ShardStateView,
  type ShardStateMachineOptions,
  SnapshotFormatError,
  StateMachineHaltError,
} from './state-machine';
export { type AppliedChain, CHAIN_START, extendChain, hashBytes } from './applied-chain';
export { type CommandEnvelope, ENVELOPE_HEADER_BYTES, EnvelopeDecodeError, decodeEnvelope, encodeEnvelope, envelopeOrigin } from './envelope';
export { RuntimeError, type RuntimeErrorCode, indeterminateCodes } from './errors';
export { Router, type ShardHandle, type ShardMap, singleStoreMap } from './router';
export { type PendingCounts } from './pending';
export * as runtimeLimits from './limits';
