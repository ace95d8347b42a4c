/** The KV engine's front door. */
export { KvEngine, KvCommandKind, KV_COMMAND_VERSION, decodePutCommand, decodeTxnCommand, kvCommand, kvOutcome, NOT_OWNED_DETAIL, notOwned, txnPuts, type KvApplied, type KvDecoded, type KvWriteObserver, type WriteOutcome } from './engine.js';
export * from './convert.js';
