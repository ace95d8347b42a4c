/**
 * The engines' front door: the Engine interface every engine implements, and the engines. The
 * shard runtime (src/runtime) composes them into a shard's state machine.
 */
export { type ApplyContext, anonymousCaller, type AuthErrorCode, type Caller, type Engine, type EngineCommand, EngineError, type EngineErrorCode, EngineId, eventsOf, isCompactionOutcome, type KeyOwner, type KeyTtlScheduler, type LeaderContext, ownsEveryKey, UnknownCommandError, uncapped, type WriteCap } from './engine.js';
export { KvEngine } from './kv/index.js';
export { MetaEngine } from './meta/index.js';
export { LeaseEngine } from './lease/index.js';
export { TtlEngine } from './ttl/index.js';
export { CounterEngine } from './counter/index.js';
export { AuthEngine, AuthCommandKind, AUTH_COMMAND_VERSION, ROOT, tokenPrefixLettersMax, authCommands, authOutcome, type AuthOutcome, type AuthRole, type AuthUser, type KeyPermission, PermissionType, UserPermissions, isValidPermissionRange, type CommandAccess, type KeyAccess, accessRefusal, authGuard, commandAccess, deleteRangeAccess, putAccess, rangeAccess, txnAccess } from './auth/index.js';
export { AlarmEngine, AlarmType, activateAlarmCommand, deactivateAlarmCommand, alarmOutcome, type AlarmMember, type AlarmOutcome } from './alarm/index.js';
export { type AdvanceWork, TimeWheel, type TimeWheelOptions, type WheelTimer, wheelLimits } from './expiry/index.js';
export { OwnershipEngine, OwnershipCommandKind, OWNERSHIP_COMMAND_VERSION, OWNERSHIP_FENCED_SPLIT_VERSION, OWNERSHIP_SPLIT_VERSION, cedeCommand, reclaimCommand, retireCommand, splitCommand, type OwnershipOutcome, type Splitter } from './ownership/index.js';
export { sectionChunks } from './bytes.js';
