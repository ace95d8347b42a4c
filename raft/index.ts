/**
 * The Raft core's front door. Everything other folders may use is exported here.
 */
export { RaftAssertionError, assert } from './assert';
export { type Prng, SeededPrng } from './prng';
export * as limits from './limits';
export * from './types';
export { encodeConfChange, decodeConfChange, ConfChangeDecodeError } from './codec';
export {
  Raft,
  type RaftConfig,
  RaftConfigError,
  type RaftLogger,
  silentLogger,
  type DropReason,
  dropReasonText,
  ProposalDroppedError,
} from './raft';
export { RawNode, type Ready, type Status, type ProgressStatus } from './raw-node';
export {
  type LogStorage,
  type LogStorageWriter,
  MemoryLogStorage,
  LogUnavailableError,
  type LogUnavailableReason,
  isLogUnavailable,
  entryBytes,
  payloadBytes,
  limitSize,
} from './storage';
export { type ProgressState } from './progress';
export { describeEntry, describeMessage, describeReady, describeHardState, describeConfChange } from './describe';
export {
  majorityCommittedIndex,
  majorityVoteResult,
  jointCommittedIndex,
  jointVoteResult,
  type VoteResult,
  type MajorityConfig,
  type JointConfig,
} from './quorum';
export { enterJoint, leaveJoint, simpleChange, restoreConfig, applyConfChangeTo } from './confchange';
export { Inflights } from './inflights';
export { bootstrapEntries } from './bootstrap';
