/**
 * The DKV TypeScript client (first part: snapshot + live prefix watches). Later issues add the
 * rest (KV with leader/shard-aware routing, locks, …); etcd's own clients work for the etcd API.
 */
export { DkvClient, type DkvClientOptions, PrefixWatch, type PrefixWatchHandlers, type PrefixWatchOptions, type WatchedKeyValue, type WatchedEvent } from './client';
