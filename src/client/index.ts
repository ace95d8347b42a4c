/**
 * The DKV TypeScript client (the package's main export, `clustron-dkv`). `DkvClient` is the
 * client applications use (KV, txns, watches, leases, locks, elections, counters, with priority
 * failover, leader-aware routing and safe retries; see README.md). `EtcdChannel` is the one
 * low-level client of the etcd v3 gRPC API (and `dkv.v1`) that DkvClient and everything in
 * jepsen-lite, bench and test use.
 */
export { DkvClient, type DkvClientEvents, type GrantOptions, type Member, type ServerStatus } from './client.js';
export type { ConnectionState, LeaderEvent, ServerChangeReason, ServerEvent } from './core.js';
export { probeTimeoutMsMax, memberListMaxAgeMs } from './core.js';
export { DkvError, type DkvErrorCode, type DkvErrorDetails, dkvErrorCodes, isDkvError } from './errors.js';
export {
  type AuthOption,
  connectTimeoutMsDefault,
  type DkvClientOptions,
  operationTimeoutMsDefault,
  type ServerOption,
  type TlsOption,
} from './options.js';
export {
  Backoff,
  baseDelayMs,
  type ReconnectPolicy,
  reconnectInitialDelayMsDefault,
  reconnectJitterDefault,
  reconnectMaxDelayMsDefault,
  reconnectMultiplierDefault,
  reconnectPolicyDefault,
} from './backoff.js';
export { preferredServer, serversByPreference, isPreferredOver, hostPort, type ServerCandidate } from './servers.js';
export type { CallOptionsCommon, DeleteOptions, DeleteResult, IdempotentOption, PutOptions, PutResult, RangeOptions, RangeResult, RangeSelector, SortOrder, SortTarget } from './kv.js';
export { compare, type Compare, type CompareOperator, op, type Operation, type OperationResult, Txn, type TxnOptions, type TxnResult } from './txn.js';
export { PrefixWatch, type PrefixWatchItem, type PrefixWatchOptions, snapshotPageKeysMax, type WatchBatch, watchBufferedBatchesMax, Watcher, type WatchOptions } from './watch.js';
export { Lease, type LeaseEvents, type LeaseLostEvent, type LeaseTimeToLive, renewalAnswerMsMax, renewalIntervalMsMin } from './lease.js';
export { type FencingToken, type Leadership, type LockHandle, sessionTtlSecondsDefault, type SessionOptions } from './concurrency.js';
export { Counter } from './counter.js';
export { Stores, type StoreInfo, type StoreShardInfo } from './stores.js';
export { Shards, type ShardAlarm, type ShardInfo, type ShardStatusInfo, metaShardStoreName } from './shards.js';
export { type Bytes, type KeyValue, type LeaseId, prefixRangeEnd, type ResponseHeader, type WatchEvent } from './wire.js';
/** @deprecated the old names of `KeyValue` and `WatchEvent` */
export type { KeyValue as WatchedKeyValue, WatchEvent as WatchedEvent } from './wire.js';
export {
  type CallOptions,
  type DecodeAs,
  type Decoded,
  EtcdChannel,
  type EtcdChannelOptions,
  grpcStatus,
  type KvMethod,
  longsAsNumbers,
  longsAsStrings,
  type MaintenanceMethod,
  type MethodCodec,
  methodCodec,
  methodPath,
  type RpcError,
  type ServiceName,
  type WatchHandlers,
  type WatchStream,
} from './etcd-channel.js';
