/**
 * DKV's stores (`dkv.v1.Admin`): keyspaces mounted on key prefixes, each split into shards, kept
 * in the meta shard's map. Root only while auth is on. Not offered by etcd: every call then
 * rejects with NOT_SUPPORTED. Create and drop are not idempotent (an unknown outcome rejects with
 * UNKNOWN_OUTCOME: list the stores to learn what happened); list and describe are retried like
 * reads. Shard ids and epochs are numbers (safe integers); member ids are bigints.
 */
import type { ClientCore } from './core.js';
import { DkvError, isDkvError } from './errors.js';
import type { CallOptionsCommon } from './kv.js';
import { type Bytes, idFromWire, int64SafeOf, listOf, toBytes } from './wire.js';

/** A store: its name, its prefix (empty for the default store only) and how many shards it has. */
export interface StoreInfo {
  readonly name: string;
  readonly prefix: Buffer;
  readonly shardCount: number;
  /** Mounted and not served yet (a create in progress, or one that stopped half way: create it again). */
  readonly creating: boolean;
}

/** One shard of a store. */
export interface StoreShardInfo {
  readonly id: number;
  /** The shard owns [start, end) of its store. */
  readonly start: Buffer;
  /** undefined: up to the end of the store's range. */
  readonly end: Buffer | undefined;
  readonly epoch: number;
  /** Member ids of the nodes that host a replica; empty: every member. */
  readonly replicas: bigint[];
  /** The leader as the answering node sees it (0n: it does not host the shard, or knows none). */
  readonly leader: bigint;
  /** The shard's Raft term as the answering node sees it (0: it does not host the shard). */
  readonly raftTerm: number;
}

type Wire = Record<string, unknown>;

function storeFromWire(store: unknown): StoreInfo {
  const s = (store ?? {}) as Wire;
  return { name: String(s.name ?? ''), prefix: Buffer.from((s.prefix as Uint8Array | undefined) ?? []), shardCount: int64SafeOf(s.shard_count ?? 0, 'shard_count'), creating: s.creating === true };
}

/** @internal */
export function shardFromWire(shard: unknown): StoreShardInfo {
  const s = shard as Wire;
  return {
    id: int64SafeOf(s.id, 'shard id'),
    start: Buffer.from((s.start as Uint8Array | undefined) ?? []),
    end: s.end === undefined || s.end === null ? undefined : Buffer.from(s.end as Uint8Array),
    epoch: int64SafeOf(s.epoch, 'epoch'),
    replicas: listOf(s.replicas).map((id) => BigInt.asUintN(64, idFromWire(id))),
    leader: BigInt.asUintN(64, idFromWire(s.leader ?? 0)),
    raftTerm: int64SafeOf(s.raft_term ?? 0, 'raft_term'),
  };
}

const shardIdsOf = (ids: unknown): number[] => listOf(ids).map((id) => int64SafeOf(id, 'shard id'));

/** The stores of the cluster (`client.stores`). */
export class Stores {
  /** @internal */
  constructor(private readonly core: ClientCore) {}

  private async call(method: string, request: object, kind: 'read' | 'write', options: CallOptionsCommon): Promise<Wire> {
    try {
      return await this.core.unary({ service: 'dkv.v1.Admin', method, request, kind, retry: kind === 'read' ? 'safe' : 'unsafe', what: `store ${method.slice('Store'.length).toLowerCase()}`, ...options });
    } catch (error) {
      if (isDkvError(error, 'NOT_SUPPORTED')) throw new DkvError('NOT_SUPPORTED', 'stores are a DKV extension (dkv.v1.Admin) this server does not offer', { grpcStatus: error.grpcStatus, serverMessage: error.serverMessage, cause: error });
      throw error;
    }
  }

  /**
   * Mounts store `name` on `prefix` as `shards` shards (default 1), each hosted by `replicas` voting
   * members (default 0: every member); the store and its new shards' ids.
   */
  async create(name: string, prefix: Bytes, options: CallOptionsCommon & { readonly shards?: number; readonly replicas?: number } = {}): Promise<{ store: StoreInfo; shardIds: number[] }> {
    const shards = options.shards ?? 1;
    if (!Number.isSafeInteger(shards) || shards < 1) throw new DkvError('INVALID_ARGUMENT', `shards must be a positive integer (got ${shards})`);
    const replicas = options.replicas ?? 0;
    if (!Number.isSafeInteger(replicas) || replicas < 0) throw new DkvError('INVALID_ARGUMENT', `replicas must be a whole number, 0 for every member (got ${replicas})`);
    const r = await this.call('StoreCreate', { name, prefix: toBytes(prefix, 'prefix'), shards, replicas }, 'write', options);
    return { store: storeFromWire(r.store), shardIds: shardIdsOf(r.shard_ids) };
  }

  /** Every store, the default store included, in prefix order. */
  async list(options: CallOptionsCommon = {}): Promise<StoreInfo[]> {
    return listOf((await this.call('StoreList', {}, 'read', options)).stores).map(storeFromWire);
  }

  /** A store and its shards in key order (NOT_FOUND for an unknown name). */
  async describe(name: string, options: CallOptionsCommon = {}): Promise<{ store: StoreInfo; shards: StoreShardInfo[] }> {
    const r = await this.call('StoreDescribe', { name }, 'read', options);
    return { store: storeFromWire(r.store), shards: listOf(r.shards).map(shardFromWire) };
  }

  /** Removes store `name` from the map; the ids of its shards (never given out again). */
  async drop(name: string, options: CallOptionsCommon = {}): Promise<number[]> {
    return shardIdsOf((await this.call('StoreDrop', { name }, 'write', options)).shard_ids);
  }
}
