export { OwnershipEngine, OwnershipCommandKind, OWNERSHIP_COMMAND_VERSION, cededPrefixBytesMax, cedeCommand, reclaimCommand, retireCommand, type Cession, type OwnershipOutcome } from './engine.js';
