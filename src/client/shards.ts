/**
 * DKV's shards (`dkv.v1.Admin`'s ShardList, ShardStatus, ShardCompact and ShardSplit): every shard
 * of the map, one server's own replica of a shard, etcd's compaction for one shard, and an online
 * split of a store's shard. Root only while auth
 * is on. Not offered by etcd: every call then rejects with NOT_SUPPORTED. All are retried like
 * reads. Shard ids, terms, indexes and revisions are numbers (safe integers); member ids are
 * bigints.
 */
import type { ClientCore } from './core.js';
import { DkvError, isDkvError } from './errors.js';
import type { CallOptionsCommon } from './kv.js';
import { type StoreShardInfo, shardFromWire } from './stores.js';
import { checkRevision, headerFromWire, idFromWire, int64SafeOf, listOf, type ResponseHeader } from './wire.js';

/** The store name the meta shard is listed with (it holds the members, stores and map; no client key). */
export const metaShardStoreName = '(meta)';

/** One shard of the map: as a store's shard, with the store it belongs to. */
export interface ShardInfo extends StoreShardInfo {
  /** The store; `metaShardStoreName` for the meta shard (whose start and end are both empty). */
  readonly store: string;
}

/** An alarm active in a shard (etcd's AlarmMember): NOSPACE or CORRUPT, raised by a member. */
export interface ShardAlarm {
  readonly memberId: bigint;
  readonly alarm: 'NOSPACE' | 'CORRUPT' | 'NONE';
}

/** One server's replica of a shard, as that server sees it now. */
export interface ShardStatusInfo {
  readonly shardId: number;
  /** The member that answered. */
  readonly memberId: bigint;
  /** '' for a group the server still hosts after its shard left the map. */
  readonly store: string;
  /** Whether the server hosts a group of the shard; every figure below is 0 when it does not. */
  readonly hosted: boolean;
  /** 'leader', 'follower', 'candidate' or 'pre-candidate'; '' when not hosted. */
  readonly raftState: string;
  readonly isLearner: boolean;
  readonly raftTerm: number;
  /** The leader the replica knows (0n: none). */
  readonly leader: bigint;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  /** Data shards only (0 for the meta shard): the store's revision, compact revision, size, size in use and live keys. */
  readonly revision: number;
  readonly compactRevision: number;
  readonly dbSize: number;
  readonly dbSizeInUse: number;
  readonly keyCount: number;
  readonly alarms: ShardAlarm[];
  /** Asked for with `{ hashKv: true }` (0 otherwise): HashKV of the replica's keys at `revision`, taken at `appliedIndex` (replicas at one applied index agree). */
  readonly hashKv: number;
}

type Wire = Record<string, unknown>;

const alarmNames = ['NONE', 'NOSPACE', 'CORRUPT'] as const;

function statusFromWire(r: Wire): ShardStatusInfo {
  const header = (r.header ?? {}) as Wire;
  const count = (field: string): number => int64SafeOf(r[field] ?? 0, field);
  return {
    shardId: count('shard_id'),
    memberId: BigInt.asUintN(64, idFromWire(header.member_id ?? 0)),
    store: String(r.store ?? ''),
    hosted: r.hosted === true,
    raftState: String(r.raft_state ?? ''),
    isLearner: r.is_learner === true,
    raftTerm: count('raft_term'),
    leader: BigInt.asUintN(64, idFromWire(r.leader ?? 0)),
    commitIndex: count('commit_index'),
    appliedIndex: count('applied_index'),
    revision: count('revision'),
    compactRevision: count('compact_revision'),
    dbSize: count('db_size'),
    dbSizeInUse: count('db_size_in_use'),
    keyCount: count('key_count'),
    alarms: listOf(r.alarms).map((alarm) => {
      const a = alarm as Wire;
      return { memberId: BigInt.asUintN(64, idFromWire(a.memberID ?? 0)), alarm: alarmNames[Number(a.alarm ?? 0)] ?? 'NONE' };
    }),
    hashKv: Number(r.hash_kv ?? 0),
  };
}

/** The shards of the cluster (`client.shards`). */
export class Shards {
  /** @internal */
  constructor(private readonly core: ClientCore) {}

  private async call(method: string, request: object, options: CallOptionsCommon, kind: 'read' | 'write' = 'read', retry: 'safe' | 'unsafe' = 'safe'): Promise<Wire> {
    try {
      return await this.core.unary({ service: 'dkv.v1.Admin', method, request, kind, retry, what: `shard ${method.slice('Shard'.length).toLowerCase()}`, ...options });
    } catch (error) {
      if (isDkvError(error, 'NOT_SUPPORTED')) throw new DkvError('NOT_SUPPORTED', 'shards are a DKV extension (dkv.v1.Admin) this server does not offer', { grpcStatus: error.grpcStatus, serverMessage: error.serverMessage, cause: error });
      throw error;
    }
  }

  /** Every shard of the map, the meta shard and the default store's included, in id order. */
  async list(options: CallOptionsCommon = {}): Promise<ShardInfo[]> {
    return listOf((await this.call('ShardList', {}, options)).shards).map((shard) => ({ ...shardFromWire(shard), store: String((shard as Wire).store ?? '') }));
  }

  /**
   * Compacts shard `id`'s history up to `revision` (that shard's own revision): etcd's compact for
   * one shard of any store. Retried like a read (compacting twice to one revision changes nothing
   * more, but a repeat after a lost answer is refused as compacted, as the client's `compact` is).
   */
  async compact(id: number, revision: number, options: { readonly physical?: boolean } & CallOptionsCommon = {}): Promise<ResponseHeader> {
    if (!Number.isSafeInteger(id) || id < 1) throw new DkvError('INVALID_ARGUMENT', `a data shard id is a whole number from 1 to 2^53 - 1 (got ${id})`);
    const r = await this.call('ShardCompact', { shard_id: id, revision: checkRevision(revision, 'revision'), physical: options.physical === true }, options, 'write');
    return headerFromWire(r.header);
  }

  /**
   * Splits shard `id` of a mounted store at `at` (the child's first key; none: the shard's middle
   * live key), online; resolves with both halves as the map holds them once the child has a
   * leader. With a key it is sent again when its outcome is unknown (a split at the same key again
   * finishes it or changes nothing); without one it is not (a repeat would split again).
   */
  async split(id: number, at?: Uint8Array | string, options: CallOptionsCommon = {}): Promise<{ readonly header: ResponseHeader; readonly parent: StoreShardInfo; readonly child: StoreShardInfo }> {
    if (!Number.isSafeInteger(id) || id < 1) throw new DkvError('INVALID_ARGUMENT', `a data shard id is a whole number from 1 to 2^53 - 1 (got ${id})`);
    const key = at === undefined ? undefined : typeof at === 'string' ? Buffer.from(at) : at;
    if (key !== undefined && key.length === 0) throw new DkvError('INVALID_ARGUMENT', 'a split key is not empty (leave it out for the middle key)');
    const request = key === undefined ? { shard_id: id } : { shard_id: id, at: key };
    const r = await this.call('ShardSplit', request, options, 'write', key === undefined ? 'unsafe' : 'safe');
    return { header: headerFromWire(r.header), parent: shardFromWire(r.parent), child: shardFromWire(r.child) };
  }

  /**
   * Moves placed shard `id`'s replica from member `from` to member `to`, online (a learner caught
   * up, promoted, then listed in `from`'s place at a new epoch, and `from` removed); resolves with
   * the shard as the map holds it and whether the move is finished (`done`: the map lists `to`),
   * waiting for it up to the call's deadline. Sent again when its outcome is unknown (a repeat
   * changes nothing more).
   */
  async move(id: number, from: number, to: number, options: CallOptionsCommon = {}): Promise<{ readonly header: ResponseHeader; readonly shard: StoreShardInfo; readonly done: boolean }> {
    if (!Number.isSafeInteger(id) || id < 1) throw new DkvError('INVALID_ARGUMENT', `a data shard id is a whole number from 1 to 2^53 - 1 (got ${id})`);
    for (const member of [from, to]) if (!Number.isSafeInteger(member) || member < 1) throw new DkvError('INVALID_ARGUMENT', `a member id is a whole number from 1 to 2^53 - 1 (got ${member})`);
    const r = await this.call('ShardMove', { shard_id: id, from_member: from, to_member: to }, options, 'write', 'safe');
    return { header: headerFromWire(r.header), shard: shardFromWire(r.shard), done: r.done === true };
  }

  /**
   * The answering server's replica of shard `id` (NOT_FOUND for an id it does not know); with
   * `hashKv`, its HashKV too (a pass over the shard's data on that server).
   */
  async status(id: number, options: CallOptionsCommon & { readonly hashKv?: boolean } = {}): Promise<ShardStatusInfo> {
    if (!Number.isSafeInteger(id) || id < 0) throw new DkvError('INVALID_ARGUMENT', `a shard id is a whole number from 0 to 2^53 - 1 (got ${id})`);
    const { hashKv, ...common } = options;
    return statusFromWire(await this.call('ShardStatus', { shard_id: id, ...(hashKv === true ? { hash_kv: true } : {}) }, common));
  }
}
