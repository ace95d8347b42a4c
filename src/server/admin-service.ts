/**
 * The `dkv.v1.Admin` service (a DKV extension): stores, kept by the meta shard (src/engines/meta)
 * as the shard map. StoreCreate and StoreDrop carry out the steps of store-admin.ts (the meta
 * shard mounts, the default store cedes its prefix, the store is activated; a drop, then the
 * prefix reclaimed); StoreList, StoreDescribe and ShardList answer from this node's map after a
 * ReadIndex round of the meta shard, so every node answers alike. ShardStatus describes this
 * node's own replica of one shard as it is now (shard-views.ts shapes both shard answers). Every
 * call needs root while auth is on (etcd's rule for admin calls).
 *
 * A change is checked here against the map of a linearizable read before anything is proposed
 * (with the map's own checks, so the messages are the map's); the meta engine checks it again
 * where it applies, which decides between two racing changes, and the default store cedes a
 * prefix only while it holds no live key under it. A refusal changes nothing.
 */
import type * as grpc from '@grpc/grpc-js';
import { DEFAULT_STORE, type ShardMap, type StoreDef, mountShardsMax, prefixEndOf, replicasMax, splitKeyBytesMax } from '../cluster/index.js';
import { storeRefusal } from '../error-mapping.js';
import { dkvRoot, etcdType, int64IfSafe } from '../etcd-proto.js';
import { dkvError } from '../errors.js';
import type { Int64 } from '../etcd-proto.js';
import { KvCommandKind, kvCommand } from '../engines/kv/index.js';
import { RuntimeError, type ShardHandle, alarmEngineOf, kvEngineOf, metaEngineOf } from '../runtime/index.js';
import { proposeKv } from './kv-service.js';
import { serviceDefinition } from './grpc-service.js';
import { type ReplicaFacts, type ShardEntry, shardEntries, shardEntryOf, shardIdOf, shardStatusWire } from './shard-views.js';
import { StoreChangeRefused, createStore, dropStore, moveReplica, printableKey, splitShard } from './store-admin.js';
import { type ServiceContext, callerOptions, requestOptions, responseHeader, unary } from './service-common.js';

const CompactionRequestType = etcdType('etcdserverpb.CompactionRequest');

/** How often ShardSplit looks for the child's leader before it answers (ms). */
const childLeaderPollMs = 20;
/** ShardSplit stops waiting for the child's leader this long before the call's deadline (ms), to answer in time. */
const childLeaderDeadlineLeadMs = 200;
/** How often ShardMove looks whether the map lists the member moved to (ms). */
const movePollMs = 50;

/** A store created without a shard count gets this many shards. */
export const storeShardsDefault = 1;

interface WireCreateRequest {
  name?: string;
  prefix?: Uint8Array;
  shards?: number;
  replicas?: number;
}

interface WireNameRequest {
  name?: string;
}

interface WireStore {
  name: string;
  prefix: Uint8Array;
  shard_count: number;
  creating: boolean;
}

interface WireShard {
  id: number;
  start: Uint8Array;
  end?: Uint8Array;
  epoch: number;
  replicas: number[];
  leader: number;
  raft_term: number;
}

function storeToWire(map: ShardMap, store: StoreDef, creating: ReadonlySet<string>): WireStore {
  return { name: store.name, prefix: store.prefix, shard_count: map.shardsOf(store.name).length, creating: creating.has(store.name) };
}

/** The number of default-store keys under `prefix` now (a mount on it would hide them). */
function defaultKeysUnder(shard: ShardHandle, prefix: Uint8Array): number {
  // The first key after the prefix's keys; none (an all-0xff prefix): every key from it on.
  const rangeEnd = prefixEndOf(prefix) ?? Uint8Array.of(0);
  return kvEngineOf(shard.machine()).mvcc.range({ key: prefix, rangeEnd, countOnly: true }).count;
}

export function createAdminService(ctx: ServiceContext): { definition: ReturnType<typeof serviceDefinition>; implementation: grpc.UntypedServiceImplementation } {
  const options = requestOptions(ctx);
  // The meta shard keeps no client revision: its headers carry its term, as the Cluster service's.
  const header = () => responseHeader(ctx, ctx.router.meta(), 0);

  /** The map after a ReadIndex round of the meta shard (every change committed before is in it). */
  const currentMap = async (): Promise<ShardMap> => {
    const meta = ctx.router.meta();
    await meta.read(options);
    return metaEngineOf(meta.machine()).shardMap();
  };
  /** The stores mounted and not activated yet, as this node applied them. */
  const creating = (): ReadonlySet<string> => new Set(metaEngineOf(ctx.router.meta().machine()).creatingStores().keys());

  /** Carries a store change out; its refusals and an older member's build as clients see them. */
  const change = async <T>(run: () => Promise<T>, prefix: Uint8Array): Promise<T> => {
    try {
      return await run();
    } catch (error) {
      // The meta and ownership commands carry no caller, so this refusal means: a member's build
      // is older than the command. Said plainly rather than as etcd's `not capable`.
      if (error instanceof RuntimeError && error.code === 'unsupported-command') throw dkvError('stores-unsupported', error.message);
      if (error instanceof StoreChangeRefused) {
        if (error.code === 'store-prefix-in-use') throw dkvError('store-prefix-in-use', `${error.message} ${printableKey(prefix)}; delete them or choose another prefix`);
        if (error.code === 'store-prefix-ceded') throw dkvError('store-prefix-overlap', error.message);
        if (error.code === 'store-auth-enabled') throw dkvError('store-auth-unsupported', error.message);
        if (error.code === 'split-leases') throw dkvError('shard-holds-leases', error.message);
        // The map changed and the shard refused after: retryable, and said plainly.
        if (error.code === 'split-refused') throw dkvError('shard-splitting', error.message);
        if (error.code === 'split-undone') throw dkvError('shard-split-undone', error.message);
        throw storeRefusal(error.code, error.message);
      }
      throw error;
    }
  };

  /** The leader and term of shard `id` as this node sees them; zeros when it hosts no group of it. */
  const groupView = (id: number): { leader: number; raft_term: number } => {
    if (!ctx.router.hosts(id)) return { leader: 0, raft_term: 0 };
    const hosted = ctx.router.shard(id);
    return { leader: hosted.leader(), raft_term: hosted.term() };
  };

  const shardToWire = (shard: ShardEntry): WireShard => ({
    id: shard.id,
    start: shard.start,
    ...(shard.end === undefined ? {} : { end: shard.end }),
    epoch: shard.epoch,
    replicas: [...shard.replicas],
    ...groupView(shard.id),
  });

  /** This node's replica of a shard it hosts, as ShardStatus reports it. */
  const replicaOf = (shard: ShardHandle, hashKv: boolean): ReplicaFacts => {
    const machine = shard.machine();
    const isMeta = shard.shardId === ctx.router.map.metaShard;
    const mvcc = isMeta ? undefined : kvEngineOf(machine).mvcc;
    return {
      // Taken in the same turn as the applied index, so replicas at one index must agree.
      ...(hashKv && mvcc !== undefined ? { hashKv: mvcc.hashKV(0).hash } : {}),
      memberId: ctx.memberId,
      status: shard.status(),
      appliedIndex: machine.appliedIndex,
      store: mvcc === undefined ? undefined : { revision: mvcc.revision, compactRevision: mvcc.compactRevision, sizeBytes: mvcc.sizeBytes, sizeInUseBytes: mvcc.sizeInUseBytes, keyCount: mvcc.keyCount },
      alarms: isMeta ? [] : alarmEngineOf(machine).list(),
    };
  };

  /** The named store, or `store-not-found`. */
  const storeNamed = (map: ShardMap, name: string | undefined): StoreDef => {
    const store = map.store(name ?? '');
    if (store === undefined) throw dkvError('store-not-found', `no store ${JSON.stringify(name ?? '')}`);
    return store;
  };

  const implementation: grpc.UntypedServiceImplementation = {
    StoreCreate: unary<WireCreateRequest>(async ({ message }, call) => {
      await ctx.gate.admin(call);
      const name = message.name ?? '';
      const prefix = message.prefix ?? new Uint8Array(0);
      const shards = message.shards === undefined || message.shards === 0 ? storeShardsDefault : message.shards;
      // Before ids are made for it (the meta engine checks the same before it does).
      if (shards > mountShardsMax) throw dkvError('store-bad-shard-count', `a store starts with 1 to ${mountShardsMax} shards, got ${shards}`);
      const replicas = message.replicas ?? 0;
      if (replicas > replicasMax) throw dkvError('store-bad-replicas', `a store's shards have 1 to ${replicasMax} replicas (0: every member), got ${replicas}`);
      const map = await currentMap();
      // The map's own checks (name, prefix, overlap, existing name, count of stores), with ids
      // past every one given out; a refusal is a ShardMapError, which the error mapping sends.
      // A store still being created on the same prefix is finished instead (its create stopped half way).
      const resuming = creating().has(name) && Buffer.from(map.store(name)!.prefix).equals(Buffer.from(prefix));
      if (!resuming) map.mount(name, prefix, Array.from({ length: shards }, (_, i) => map.highestShardId + 1 + i), []);
      const defaultStore = ctx.router.defaultStore();
      await defaultStore.read(options);
      // Checked again where the default store cedes the prefix (a write racing this read is
      // either applied before the cede, which then refuses, or refused itself after it).
      const inUse = defaultKeysUnder(defaultStore, prefix);
      if (inUse > 0) throw dkvError('store-prefix-in-use', `${inUse} key${inUse === 1 ? '' : 's'} under prefix ${printableKey(prefix)}; delete ${inUse === 1 ? 'it' : 'them'} or choose another prefix`);
      const created = await change(() => createStore({ router: ctx.router, options, proposeElsewhere: ctx.proposeElsewhere }, name, prefix, shards, replicas), prefix);
      return { header: header(), store: { name, prefix, shard_count: created.shards.length, creating: false }, shard_ids: created.shards };
    }),

    StoreList: unary<object>(async (_request, call) => {
      await ctx.gate.admin(call);
      const map = await currentMap();
      const being = creating();
      return { header: header(), stores: map.stores().map((store) => storeToWire(map, store, being)) };
    }),

    StoreDescribe: unary<WireNameRequest>(async ({ message }, call) => {
      await ctx.gate.admin(call);
      const map = await currentMap();
      const store = storeNamed(map, message.name);
      return { header: header(), store: storeToWire(map, store, creating()), shards: map.shardsOf(store.name).map(shardToWire) };
    }),

    StoreDrop: unary<WireNameRequest>(async ({ message }, call) => {
      await ctx.gate.admin(call);
      const name = message.name ?? '';
      // The map's checks first (the default store, an unknown name): nothing is proposed then.
      const map = await currentMap();
      map.drop(name);
      const ids = await change(() => dropStore({ router: ctx.router, options, proposeElsewhere: ctx.proposeElsewhere }, name), map.store(name)!.prefix);
      return { header: header(), shard_ids: ids };
    }),

    ShardList: unary<object>(async (_request, call) => {
      await ctx.gate.admin(call);
      const map = await currentMap();
      return { header: header(), shards: shardEntries(map, ctx.router.map.metaShard).map((shard) => ({ ...shardToWire(shard), store: shard.store })) };
    }),

    // No ReadIndex: this node's replica as it is, answered while the shard has no quorum too.
    ShardStatus: unary<{ shard_id?: Int64; hash_kv?: boolean }>(async ({ message }, call) => {
      await ctx.gate.admin(call);
      const id = shardIdOf(message.shard_id);
      const metaShard = ctx.router.map.metaShard;
      const entry = shardEntryOf(metaEngineOf(ctx.router.meta().machine()).shardMap(), metaShard, id);
      const hosted = ctx.router.hosts(id) ? ctx.router.shard(id) : undefined;
      if (entry === undefined && hosted === undefined) throw dkvError('shard-not-found', `no shard ${id} in this node's map, and it hosts no group of it`);
      const body = shardStatusWire(id, entry?.store ?? '', hosted === undefined ? undefined : replicaOf(hosted, message.hash_kv === true));
      const headerShard = hosted ?? ctx.router.meta();
      return { header: responseHeader(ctx, headerShard, body.revision), ...body };
    }),

    ShardCompact: unary<{ shard_id?: Int64; revision?: Int64; physical?: boolean }>(async ({ message }, call) => {
      const caller = await ctx.gate.admin(call);
      const id = shardIdOf(message.shard_id);
      if (id === ctx.router.map.metaShard) throw dkvError('invalid-argument', `shard ${id} is the meta shard: it holds no keys to compact`);
      const map = await currentMap();
      const entry = map.shard(id);
      if (entry === undefined) throw dkvError('shard-not-found', `no shard ${id} in the map`);
      // A node that has not made the group yet (it joined lately): the client tries another. A
      // shard placed on other members: the router's refusal forwards the call to one of them.
      if (!ctx.router.hosts(id) && entry.replicas.length === 0) throw dkvError('wrong-shard', `this node hosts no group of shard ${id} yet`);
      const shard = ctx.router.shard(id);
      // The revision as sent (int64): the shard's engine refuses one past its revision, or at or
      // below its compacted one, with etcd's errors, as it does for etcd's Compact. The caller is
      // carried as etcd's Compact carries it.
      const raw = CompactionRequestType.encode({ revision: message.revision ?? 0, physical: message.physical === true }).finish();
      const outcome = await proposeKv(shard, kvCommand(KvCommandKind.Compaction, raw), callerOptions(ctx, caller));
      if (outcome.kind !== 'compaction') throw new Error(`compaction applied as ${outcome.kind}`);
      return { header: responseHeader(ctx, shard, outcome.revision) };
    }),

    ShardSplit: unary<{ shard_id?: Int64; at?: Uint8Array | null }>(async ({ message }, call) => {
      await ctx.gate.admin(call);
      const id = shardIdOf(message.shard_id);
      const metaShard = ctx.router.map.metaShard;
      if (id === metaShard) throw dkvError('invalid-argument', `shard ${id} is the meta shard: it holds no keys to split`);
      const map = await currentMap();
      const entry = map.shard(id);
      if (entry === undefined) throw dkvError('shard-not-found', `no shard ${id} in the map`);
      if (entry.store === DEFAULT_STORE) throw dkvError('store-default', `shard ${id} is the default store's: it stays one shard (its leases and the prefixes it ceded are not split)`);
      // Unset: the middle key. Set and empty: refused (never a split key, and not to be read as
      // "choose one", which a retry would do again).
      const at = message.at === undefined || message.at === null ? undefined : Uint8Array.from(message.at);
      if (at !== undefined && at.length === 0) throw dkvError('shard-bad-split-key', 'the split key is empty (leave it out for the middle key)');
      if (at !== undefined && at.length > splitKeyBytesMax) throw dkvError('shard-bad-split-key', `a split key is at most ${splitKeyBytesMax} bytes, got ${at.length}`);
      const done = await change(() => splitShard({ router: ctx.router, options, proposeElsewhere: ctx.proposeElsewhere }, id, at), entry.start);
      // Within the call's own deadline: the split is done, the answer must not be lost to a wait.
      const deadline = call.getDeadline();
      const deadlineMs = deadline instanceof Date ? deadline.getTime() : Number(deadline);
      const waitMs = Math.min(options.timeoutMs ?? ctx.requestTimeoutMs, Number.isFinite(deadlineMs) ? deadlineMs - Date.now() - childLeaderDeadlineLeadMs : Number.POSITIVE_INFINITY);
      await childLeader(done.child, Math.max(0, waitMs));
      const after = await currentMap();
      const parent = shardEntryOf(after, metaShard, done.parent);
      const child = shardEntryOf(after, metaShard, done.child);
      if (parent === undefined || child === undefined) throw dkvError('store-not-found', `shard ${done.parent} or ${done.child} left the map meanwhile: its store was dropped`);
      return { header: header(), parent: shardToWire(parent), child: shardToWire(child) };
    }),

    ShardMove: unary<{ shard_id?: Int64; from_member?: Int64; to_member?: Int64 }>(async ({ message }, call) => {
      await ctx.gate.admin(call);
      const id = shardIdOf(message.shard_id);
      const metaShard = ctx.router.map.metaShard;
      if (id === metaShard) throw dkvError('invalid-argument', `shard ${id} is the meta shard: it is hosted by every member`);
      // Member ids are made below 2^53: another uint64 names no member.
      const member = (wire: Int64 | undefined, what: string): number => {
        const value = wire === undefined ? 0 : int64IfSafe(wire);
        if (value === undefined || value <= 0) throw dkvError('member-not-found', `the ${what} member names no member`);
        return value;
      };
      const from = member(message.from_member, 'from');
      const to = member(message.to_member, 'to');
      const map = await currentMap();
      const entry = map.shard(id);
      if (entry === undefined) throw dkvError('shard-not-found', `no shard ${id} in the map`);
      if (entry.store === DEFAULT_STORE) throw dkvError('store-default', `shard ${id} is the default store's: it is hosted by every member`);
      await change(() => moveReplica({ router: ctx.router, options }, id, from, to), entry.start);
      // Within the call's own deadline: the move is recorded, the answer must not be lost to a wait.
      const deadline = call.getDeadline();
      const deadlineMs = deadline instanceof Date ? deadline.getTime() : Number(deadline);
      // Up to the client's deadline (a move catches a replica up: longer than a request), else a request's time.
      const until = Number.isFinite(deadlineMs) ? deadlineMs - childLeaderDeadlineLeadMs : Date.now() + (options.timeoutMs ?? ctx.requestTimeoutMs);
      const moved = (): boolean => {
        const shard = metaEngineOf(ctx.router.meta().machine()).shardMap().shard(id);
        return shard === undefined || (shard.replicas.includes(to) && !shard.replicas.includes(from));
      };
      while (!moved() && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, movePollMs));
      const after = shardEntryOf(metaEngineOf(ctx.router.meta().machine()).shardMap(), metaShard, id);
      if (after === undefined) throw dkvError('store-not-found', `shard ${id} left the map meanwhile: its store was dropped`);
      return { header: header(), shard: shardToWire(after), done: after.replicas.includes(to) && !after.replicas.includes(from) };
    }),
  };

  /** Resolves once this node knows a leader of `child` (its group elects right after the split), or after `timeoutMs`. */
  const childLeader = async (child: number, timeoutMs: number): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (ctx.router.hosts(child) && ctx.router.shard(child).leader() !== 0) return;
      await new Promise((resolve) => setTimeout(resolve, childLeaderPollMs));
    }
  };
  return { definition: serviceDefinition('dkv.v1.Admin', dkvRoot()), implementation };
}
