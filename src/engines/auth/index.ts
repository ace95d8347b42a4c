export { AuthEngine, AuthCommandKind, AUTH_COMMAND_VERSION, ROOT, tokenPrefixLettersMax, authCommands, authOutcome, type AuthOutcome, type AuthRole, type AuthUser } from './engine.js';
export { IntervalSet, type KeyInterval, type KeyPermission, PermissionType, UserPermissions, isValidPermissionRange, keyInterval, rootPermission } from './permissions.js';
export { type CommandAccess, type KeyAccess, type LeaseKeys, accessRefusal, authGuard, commandAccess, deleteRangeAccess, putAccess, rangeAccess, txnAccess } from './guard.js';
