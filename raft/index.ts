/**
 * The Raft core's front door. Everything other folders may use is exported here.
 */
export { RaftAssertionError, assert } from './assert.js';
export { type Prng, SeededPrng } from './prng.js';
export * as limits from './limits.js';
export * from './types.js';
export { encodeConfChange, decodeConfChange, ConfChangeDecodeError } from './codec.js';
export {
  Raft,
  type RaftConfig,
  RaftConfigError,
  type RaftLogger,
  silentLogger,
  type DropReason,
  type DroppedProposal,
  dropReasonText,
  dropReasonOfCode,
  ProposalDroppedError,
} from './raft.js';
export { RawNode, type Ready, type Status, type ProgressStatus } from './raw-node.js';
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
} from './storage.js';
export { type ProgressState } from './progress.js';
export { describeEntry, describeMessage, describeReady, describeHardState, describeConfChange } from './describe.js';
export {
  majorityCommittedIndex,
  majorityVoteResult,
  jointCommittedIndex,
  jointVoteResult,
  type VoteResult,
  type MajorityConfig,
  type JointConfig,
} from './quorum.js';
export { enterJoint, leaveJoint, simpleChange, restoreConfig, applyConfChangeTo } from './confchange.js';
export { Inflights } from './inflights.js';
export { bootstrapEntries } from './bootstrap.js';
