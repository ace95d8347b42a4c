/** The TTL engine's front door: per-key TTLs and the dkv.v1.KV writes (TTL, fencing) that set them. */
export {
  TtlEngine,
  TtlCommandKind,
  TTL_COMMAND_VERSION,
  dkvPutCommand,
  dkvTxnCommand,
  expireKeysCommand,
  fenceFromWire,
  keyTtlsFromWire,
  ttlMsFromWire,
  ttlOutcome,
  type KeyTtl,
  type TtlEngineOptions,
  type TtlOutcome,
} from './engine.js';
export * as ttlLimits from './limits.js';
