/** The meta engine's front door. */
export {
  MetaEngine,
  MetaCommandKind,
  META_COMMAND_VERSION,
  META_STORES_VERSION,
  META_SPLIT_VERSION,
  META_ABORT_SPLIT_VERSION,
  META_REPLICAS_VERSION,
  META_MOVE_VERSION,
  moveReplicaCommand,
  finishMoveCommand,
  activateStoreCommand,
  dropStoreCommand,
  finishSplitCommand,
  abortSplitCommand,
  mountStoreCommand,
  splitShardCommand,
  publishAttributesCommand,
  type MetaOutcome,
} from './engine.js';
export { type Member, type MemberAttributes, type MemberRecord, encodeMemberContext, membersSupport } from './members.js';
export { DEFAULT_STORE_SHARD, type Founders, type MovingReplica, type SplittingShard } from './stores.js';
