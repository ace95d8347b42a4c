/**
 * What dkv.v1.Admin's ShardList and ShardStatus answer, made from plain values: the map's shards
 * with the meta shard added (it is never in the map), and one replica's figures. Pure: the service
 * gathers the values from the meta shard's map and this node's groups.
 */
import { type Status, assert } from '../../raft/index.js';
import type { ShardDef, ShardMap } from '../cluster/index.js';
import type { AlarmMember } from '../engines/index.js';
import { type Int64, int64Exact, int64IfSafe } from '../etcd-proto.js';
import { dkvError } from '../errors.js';

/** The store name ShardList and ShardStatus give the meta shard (no store name has parentheses). */
export const metaStoreName = '(meta)';

/**
 * One shard as the map defines it, or the meta shard as the node's configuration does: the one
 * entry whose id is the meta shard's (0), epoch 0 (it has no entry in the map to carry one), start
 * and end both empty (it owns no client key) and replicas empty (every member hosts it).
 */
export type ShardEntry = ShardDef;

/** The meta shard as ShardList lists it: every member hosts it, it owns no client key. */
export function metaShardEntry(metaShard: number): ShardEntry {
  assert(Number.isSafeInteger(metaShard) && metaShard >= 0, () => `meta shard id ${metaShard}`);
  return { id: metaShard, store: metaStoreName, start: new Uint8Array(0), end: new Uint8Array(0), epoch: 0, replicas: [] };
}

/** Every shard of `map` and the meta shard, in id order. */
export function shardEntries(map: ShardMap, metaShard: number): ShardEntry[] {
  // invariant: the meta shard is never in the map (ShardDef ids are positive, the meta shard's is 0).
  assert(map.shard(metaShard) === undefined, () => `meta shard ${metaShard} appears in the shard map`);
  const entries: ShardEntry[] = [metaShardEntry(metaShard), ...map.shards()];
  return entries.sort((a, b) => a.id - b.id);
}

/** The entry of shard `id` in `map`, the meta shard's, or undefined for an id neither knows. */
export function shardEntryOf(map: ShardMap, metaShard: number, id: number): ShardEntry | undefined {
  return id === metaShard ? metaShardEntry(metaShard) : map.shard(id);
}

/**
 * A shard id from a request: a uint64 that is a safe integer (ids are given out below 2^53), else
 * `invalid-argument`. Absent is 0, the meta shard (proto3 cannot tell 0 from absent).
 */
export function shardIdOf(value: Int64): number {
  const id = int64IfSafe(value);
  if (id === undefined || id < 0) throw dkvError('invalid-argument', `shard id ${int64Exact(value)} is not a safe integer (0 to 2^53 - 1)`);
  return id;
}

/** What a data shard's store says of itself (none for the meta shard). */
export interface StoreFigures {
  readonly revision: number;
  readonly compactRevision: number;
  readonly sizeBytes: number;
  readonly sizeInUseBytes: number;
  readonly keyCount: number;
}

/** One replica as this node holds it. */
export interface ReplicaFacts {
  readonly memberId: number;
  readonly status: Pick<Status, 'term' | 'lead' | 'commit' | 'role' | 'config'>;
  readonly appliedIndex: number;
  /** undefined: the meta shard (no MVCC store, no alarms). */
  readonly store: StoreFigures | undefined;
  readonly alarms: readonly AlarmMember[];
  /** HashKV's hash of the store at its revision, when the caller asked for it (data shards only). */
  readonly hashKv?: number;
}

export interface WireShardStatus {
  shard_id: number;
  store: string;
  hosted: boolean;
  raft_state: string;
  is_learner: boolean;
  raft_term: number;
  leader: number;
  commit_index: number;
  applied_index: number;
  revision: number;
  compact_revision: number;
  db_size: number;
  db_size_in_use: number;
  key_count: number;
  alarms: Array<{ memberID: number; alarm: number }>;
  hash_kv: number;
}

/**
 * ShardStatus's body for shard `id` of store `store` ('' when the map no longer has it):
 * zeros but the id and store when `replica` is undefined (this node hosts no group of it).
 */
export function shardStatusWire(id: number, store: string, replica: ReplicaFacts | undefined): WireShardStatus {
  const figures = replica?.store;
  const wire: WireShardStatus = {
    shard_id: id,
    store,
    hosted: replica !== undefined,
    raft_state: replica?.status.role ?? '',
    is_learner: replica?.status.config.learners.includes(replica.memberId) ?? false,
    raft_term: replica?.status.term ?? 0,
    leader: replica?.status.lead ?? 0,
    commit_index: replica?.status.commit ?? 0,
    applied_index: replica?.appliedIndex ?? 0,
    revision: figures?.revision ?? 0,
    compact_revision: figures?.compactRevision ?? 0,
    db_size: figures?.sizeBytes ?? 0,
    db_size_in_use: figures?.sizeInUseBytes ?? 0,
    key_count: figures?.keyCount ?? 0,
    alarms: (replica?.alarms ?? []).map((alarm) => ({ memberID: alarm.memberId, alarm: alarm.alarm })),
    hash_kv: replica?.hashKv ?? 0,
  };
  assert(Number.isInteger(wire.hash_kv) && wire.hash_kv >= 0 && wire.hash_kv <= 0xffff_ffff, () => `shard ${id} status: hash_kv ${wire.hash_kv}`);
  for (const field of ['raft_term', 'leader', 'commit_index', 'applied_index', 'revision', 'compact_revision', 'db_size', 'db_size_in_use', 'key_count'] as const) {
    assert(Number.isSafeInteger(wire[field]) && wire[field] >= 0, () => `shard ${id} status: ${field} ${wire[field]}`);
  }
  return wire;
}
