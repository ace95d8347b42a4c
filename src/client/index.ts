/**
 * The DKV TypeScript client. `EtcdChannel` is the one low-level client of the etcd v3 gRPC API
 * (and `dkv.v1`) that everything here and in jepsen-lite, bench and test uses; `DkvClient` builds
 * on it (so far snapshot + live prefix watches with failover). Later issues add the rest (KV with
 * leader/shard-aware routing, locks, …); etcd's own clients work for the etcd API.
 */
export { DkvClient, type DkvClientOptions, PrefixWatch, type PrefixWatchHandlers, type PrefixWatchOptions, type WatchedKeyValue, type WatchedEvent } from './client.js';
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
