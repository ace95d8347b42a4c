/**
 * Creating and dropping stores: the steps across the meta shard and the default store's shard,
 * each idempotent, so a step that failed or a node that stopped half way is finished by running
 * them again (`StoreCreate` of a store still being created resumes it; `repairStores` finishes
 * what nobody resumed).
 *
 * Create:
 * 1. The meta shard mounts the store **creating**: its shards get ids and their groups start, but
 *    requests for its prefix still go to the default store.
 * 2. The default store's shard cedes the prefix to the store (its first shard id names it): from
 *    then on it refuses every request for those keys (a node whose map lags routes them there and
 *    gets a retryable error). It cedes only while it holds no live key under the prefix, so a
 *    mount never hides a key; if it holds some, the store is dropped and the create refused.
 * 3. The meta shard activates the store: requests for its prefix are routed to its shards.
 * Drop:
 * 1. Each shard of the store is retired in its own log: from then on it serves no key, so no
 *    node whose map still routes there has a write acknowledged that the drop would lose, or a
 *    read answered from keys the default store will serve again.
 * 2. The meta shard drops the store (its groups are removed on every member as each applies it).
 * 3. The default store reclaims the prefix; until it has, the prefix's keys are refused.
 * Every step names the store by its first shard id (ids are never reused), so a late step of an
 * earlier store of the same name never acts on a newer one.
 *
 * Split of shard P at key K (a mounted store's shard):
 * 1. The meta shard splits P in the map: the child C takes the next id, both get a new epoch, and
 *    C is marked **splitting**. Requests for [K, end) are routed to C from then on; until C's
 *    group exists on a node they fail there with a retryable `wrong-shard`.
 * 2. P's own log applies Split(C, K, end): every replica makes C from its own data at that index
 *    (src/runtime). From then on P refuses keys at or above K (`not-owned`, retryable).
 * 3. The meta shard finishes the split (the mark goes): a member that missed step 2 (its replica
 *    of P got a snapshot past it) then starts C empty and gets it from C's leader.
 * Each step is idempotent: a ShardSplit of P at K again finishes one that stopped half way, and
 * `repairStores` finishes what nobody resumed. If P's log refuses step 2 (a lease granted after the
 * coordinator's check), the refusal fences C there for good, and the meta shard undoes step 1
 * (AbortSplit: P takes [K, end) back at a new epoch, C leaves the map).
 */
import { type ShardMap, ShardMapError, type ShardMapErrorCode, compareKeys } from '../cluster/index.js';
import { type EngineCommand, EngineId, OWNERSHIP_SPLIT_VERSION, type OwnershipOutcome, cedeCommand, reclaimCommand, retireCommand, splitCommand } from '../engines/index.js';
import { META_ABORT_SPLIT_VERSION, type MetaOutcome, abortSplitCommand, membersSupport, activateStoreCommand, dropStoreCommand, finishMoveCommand, finishSplitCommand, moveReplicaCommand, mountStoreCommand, splitShardCommand } from '../engines/meta/index.js';

import { type RequestOptions, type Router, RuntimeError, ShardElsewhereError, kvEngineOf, leaseEngineOf, metaEngineOf, ownershipEngineOf } from '../runtime/index.js';

/** A key or prefix for a message: quoted when it is printable ASCII, else hex. */
export function printableKey(key: Uint8Array): string {
  return key.every((b) => b >= 0x20 && b < 0x7f) ? JSON.stringify(Buffer.from(key).toString('latin1')) : `0x${Buffer.from(key).toString('hex')}`;
}

/** A store change the cluster refused (deterministically: nothing changed). */
export class StoreChangeRefused extends Error {
  override readonly name = 'StoreChangeRefused';
  constructor(
    readonly code: ShardMapErrorCode | 'bad-command' | 'store-prefix-in-use' | 'store-prefix-ceded' | 'store-auth-enabled' | 'split-refused' | 'split-undone' | 'split-leases',
    message: string,
  ) {
    super(message);
  }
}

export interface StoreAdminContext {
  readonly router: Router;
  readonly options: RequestOptions;
  /** Where a repair reports what it could not finish (none: not reported). */
  readonly log?: { warn(message: string): void };
  /** Whether a drop retired a shard other members host, as one of `replicas` says (undefined: none answered). */
  readonly retiredElsewhere?: (shard: number, replicas: readonly number[]) => Promise<boolean | undefined>;
  /** Proposes to a shard other members host, through one of `replicas` (none: such a shard's steps fail). */
  readonly proposeElsewhere?: (shard: number, replicas: readonly number[], command: EngineCommand) => Promise<unknown>;
}

/**
 * Proposes `command` to shard `shardId`: here if this node hosts it, else through one of the
 * members the map places it on. Resolves with the outcome applying it produced.
 */
async function proposeOn(ctx: StoreAdminContext, shardId: number, command: EngineCommand): Promise<unknown> {
  try {
    return (await ctx.router.shard(shardId).propose(command, ctx.options)).outcome;
  } catch (error) {
    if (!(error instanceof ShardElsewhereError) || ctx.proposeElsewhere === undefined) throw error;
    return ctx.proposeElsewhere(shardId, error.replicas, command);
  }
}

export interface StoreCreated {
  readonly name: string;
  readonly prefix: Uint8Array;
  readonly shards: readonly number[];
}

function metaResult(outcome: unknown): readonly number[] {
  const o = outcome as MetaOutcome;
  if (o.kind === 'stores') return o.shards;
  if (o.kind === 'error') throw new StoreChangeRefused(o.code ?? 'bad-command', o.message);
  throw new Error(`a store change applied as ${o.kind}`);
}

/** Whether the store incarnation whose first shard is `first` was dropped for good (ids are never reused). */
function gone(map: ShardMap, first: number): boolean {
  return map.shard(first) === undefined && first <= map.highestShardId;
}

/**
 * Creates store `name` on `prefix` with `shards` shards, each on `replicas` members the meta shard
 * places (0: every member), or finishes creating it (same prefix).
 */
export async function createStore(ctx: StoreAdminContext, name: string, prefix: Uint8Array, shards: number, replicas = 0): Promise<StoreCreated> {
  const metaShard = ctx.router.meta();
  await metaShard.read(ctx.options);
  const meta = metaEngineOf(metaShard.machine());
  const existing = meta.shardMap().store(name);
  let ids: readonly number[];
  if (existing !== undefined && meta.creatingStores().has(name) && Buffer.from(existing.prefix).equals(Buffer.from(prefix))) {
    ids = meta.shardMap().shardsOf(name).map((s) => s.id);
    // Finishing it as asked: a different shard count is another store, which this one's name holds.
    if (ids.length !== shards) throw new StoreChangeRefused('store-exists', `store ${name} is being created with ${ids.length} shards: create it again with ${ids.length} to finish it, or drop it`);
  } else {
    ids = metaResult((await metaShard.propose(mountStoreCommand(name, prefix, shards, replicas), ctx.options)).outcome);
  }
  await finishCreate(ctx, name, prefix, ids[0]!);
  return { name, prefix, shards: ids };
}

/** Steps 2 and 3 of a create: cede the prefix to the store (first shard `first`), activate it. */
async function finishCreate(ctx: StoreAdminContext, name: string, prefix: Uint8Array, first: number): Promise<void> {
  const data = ctx.router.defaultStore();
  const metaShard = ctx.router.meta();
  for (let attempt = 0; ; attempt++) {
    const ceded = (await data.propose(cedeCommand(prefix, first), ctx.options)).outcome as OwnershipOutcome;
    if (ceded.kind === 'ok') break;
    // Ceded (this prefix, or one overlapping it) to a store dropped since whose reclaim never ran:
    // reclaim it, then cede again.
    const held = ceded.code === 'prefix-ceded' || ceded.code === 'prefix-overlap' ? ceded : undefined;
    if (held?.store !== undefined && held.prefix !== undefined && attempt < 2 && gone(metaEngineOf(metaShard.machine()).shardMap(), held.store)) {
      await data.propose(reclaimCommand(held.prefix, held.store), ctx.options);
      continue;
    }
    // The default store holds keys there, auth is on, or the prefix is another live store's: the store goes.
    await metaShard.propose(dropStoreCommand(name, first), ctx.options);
    const code = ceded.code === 'prefix-in-use' ? 'store-prefix-in-use' : ceded.code === 'auth-enabled' ? 'store-auth-enabled' : 'store-prefix-ceded';
    throw new StoreChangeRefused(code, ceded.message);
  }
  metaResult((await metaShard.propose(activateStoreCommand(name, first), ctx.options)).outcome);
}

/** Drops store `name`: its shards retired, then out of the map (their groups go), then the default store serves its prefix again. */
export async function dropStore(ctx: StoreAdminContext, name: string): Promise<readonly number[]> {
  const metaShard = ctx.router.meta();
  await metaShard.read(ctx.options);
  const map = metaEngineOf(metaShard.machine()).shardMap();
  const store = map.store(name);
  if (store === undefined) throw new StoreChangeRefused(name === '' ? 'bad-store-name' : 'unknown-store', `no store "${name}"`);
  const shards = map.shardsOf(name).map((s) => s.id);
  // Every shard dropped: a split's child made meanwhile too.
  return finishDrop(ctx, name, store.prefix, shards);
}

/**
 * The steps of a drop, each idempotent: retire every shard, drop from the map, reclaim the prefix.
 * The store's shards are read again after each round of retires: a split applied before its
 * parent's retire made a child the last read did not list (a retired shard never splits). A
 * child still splitting is decided by its parent, retired before it: its Split applied (then the
 * child is retired too), or refused (the child never exists anywhere).
 */
async function finishDrop(ctx: StoreAdminContext, name: string, prefix: Uint8Array, shards: readonly number[]): Promise<readonly number[]> {
  const first = shards[0]!;
  const retired = new Set<number>();
  for (;;) {
    const metaShard = ctx.router.meta();
    await metaShard.read(ctx.options);
    const meta = metaEngineOf(metaShard.machine());
    const current = meta.shardMap().shardsOf(name).map((shard) => shard.id);
    const left = current[0] === first ? current.filter((id) => !retired.has(id)) : [];
    if (left.length === 0) break;
    const before = retired.size;
    const splitting = meta.splitting();
    const plain = left.filter((id) => !splitting.has(id));
    await Promise.all(plain.map((id) => proposeOn(ctx, id, retireCommand(first))));
    for (const id of plain) retired.add(id);
    for (const id of left) {
      const record = splitting.get(id);
      if (record === undefined || !retired.has(record.parent)) continue;
      const { outcome } = await proposeSplit(ctx, record.parent, id, record.at, record.end);
      if (outcome.kind === 'ok') {
        // Finished first: a node that missed the split then starts the child (empty, filled by its leader).
        metaResult((await ctx.router.meta().propose(finishSplitCommand(id), ctx.options)).outcome);
        await proposeOn(ctx, id, retireCommand(first));
      }
      retired.add(id);
    }
    // Every child's parent is a shard of the store no split is pending on (one split at a time).
    if (retired.size === before) throw new Error(`the drop of store ${name} retired no shard of ${left.join(', ')}`);
  }
  const dropped = metaResult((await ctx.router.meta().propose(dropStoreCommand(name, first), ctx.options)).outcome);
  await ctx.router.defaultStore().propose(reclaimCommand(prefix, first), ctx.options);
  return dropped;
}

/**
 * Finishes store changes nobody finished: a store with a retired shard is dropped (its drop
 * stopped half way); prefixes the default store ceded to stores dropped since are reclaimed;
 * stores still creating after `staleMs` (by this node's clock against the leader's time of their
 * mount) are finished, or dropped if the default store holds keys under their prefix. Runs on the
 * node leading the meta shard; every step is idempotent.
 */
export async function repairStores(ctx: StoreAdminContext, nowMs: number, staleMs: number): Promise<void> {
  const metaShard = ctx.router.meta();
  await metaShard.read(ctx.options);
  const meta = metaEngineOf(metaShard.machine());
  let map = meta.shardMap();
  // Placed shards this node does not host: their replicas say whether a drop retired them, all
  // asked at once (one member that does not answer holds the pass up once, not per shard).
  const retiredElsewhere = new Set<number>();
  const elsewhere = map.shards().filter((def) => def.replicas.length > 0 && !ctx.router.hosts(def.id));
  if (ctx.retiredElsewhere !== undefined) {
    const ask = ctx.retiredElsewhere;
    await Promise.all(elsewhere.map(async (def) => {
      if ((await ask(def.id, def.replicas)) === true) retiredElsewhere.add(def.id);
    }));
  }
  for (const store of map.stores()) {
    const shards = map.shardsOf(store.name).map((s) => s.id);
    const retired = shards.some((id) => retiredElsewhere.has(id) || (ctx.router.hosts(id) && ownershipEngineOf(ctx.router.shard(id).machine()).retired !== 0));
    // One store's drop that cannot finish now (a group without a leader) does not hold up the rest.
    if (retired) await finishDrop(ctx, store.name, store.prefix, shards).catch((error: unknown) => ctx.log?.warn(`store repair: the drop of store "${store.name}": ${error instanceof Error ? error.message : String(error)}`));
  }
  map = meta.shardMap();
  const data = ctx.router.defaultStore();
  for (const cession of ownershipEngineOf(data.machine()).cessions()) {
    if (gone(map, cession.store)) await data.propose(reclaimCommand(cession.prefix, cession.store), ctx.options);
  }
  for (const [name, { createdAtMs }] of meta.creatingStores()) {
    if (nowMs - createdAtMs < staleMs) continue;
    const store = map.store(name);
    if (store === undefined) continue;
    try {
      await finishCreate(ctx, name, store.prefix, map.shardsOf(name)[0]!.id);
    } catch (error) {
      if (!(error instanceof StoreChangeRefused || error instanceof ShardMapError)) throw error;
    }
  }
  // Splits nobody finished (their coordinator stopped between the steps); one that cannot be
  // finished now does not hold up the rest.
  for (const [child, record] of meta.splitting()) {
    try {
      await finishSplit(ctx, record.parent, child, record.at, record.end);
    } catch (error) {
      if (!(error instanceof StoreChangeRefused)) ctx.log?.warn(`store repair: the split of shard ${record.parent} into shard ${child}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}

/** A split carried out: the shard split and its new child. */
export interface ShardSplitDone {
  readonly parent: number;
  readonly child: number;
  readonly at: Uint8Array;
}

/**
 * Splits shard `shardId` at `at` (undefined: its middle live key, read linearizably from this
 * node's replica), or finishes its unfinished split at that key. Resolves once the parent applied
 * the split and the meta shard finished it; the child's group may still be electing its leader
 * (`waitForLeader`).
 */
export async function splitShard(ctx: StoreAdminContext, shardId: number, at: Uint8Array | undefined): Promise<ShardSplitDone> {
  const metaShard = ctx.router.meta();
  await metaShard.read(ctx.options);
  const meta = metaEngineOf(metaShard.machine());
  const map = meta.shardMap();
  const shard = map.shard(shardId);
  if (shard === undefined) throw new StoreChangeRefused('unknown-shard', `no shard ${shardId} in the map`);
  for (const [child, record] of meta.splitting()) {
    if (child === shardId) throw new StoreChangeRefused('split-in-progress', `shard ${shardId} is still being split off shard ${record.parent}: split shard ${record.parent} again at the same key to finish that first`);
    if (record.parent !== shardId) continue;
    if (at === undefined || compareKeys(record.at, at) === 0) return finishSplit(ctx, shardId, child, record.at, record.end);
    throw new StoreChangeRefused('split-in-progress', `shard ${shardId} has an unfinished split at another key into shard ${child}: split it again at that key to finish it`);
  }
  // What the shard's own log would refuse, checked on a linearizable read of this node's replica
  // before the map changes, so a refusal changes nothing (a lease granted between this read and
  // the Split is the one case left: see finishSplit).
  const handle = ctx.router.shard(shardId);
  await handle.read(ctx.options);
  const ownership = ownershipEngineOf(handle.machine());
  if (ownership.retired !== 0) throw new StoreChangeRefused('unknown-store', `store "${shard.store}" is being dropped`);
  const leases = leaseEngineOf(handle.machine()).size;
  if (leases > 0) throw new StoreChangeRefused('split-leases', `shard ${shardId} holds ${leases} lease${leases === 1 ? '' : 's'} (a Lock's or Campaign's session lease): a lease's keys would span two shards; split it once they are gone`);
  const key = at ?? (await middleKey(ctx, shardId, shard.start, shard.end));
  const [, child] = metaResult((await metaShard.propose(splitShardCommand(shardId, key, shard.epoch), ctx.options)).outcome);
  if (child === undefined) throw new Error(`the split of shard ${shardId} named no child`);
  // The end the meta shard recorded (the parent's before this split): the same as `shard.end`
  // unless this call met its own earlier split (a repeat), whose record holds it.
  const record = meta.splitting().get(child);
  if (record === undefined) {
    // Finished already (a repeat after the finish): nothing left to do.
    return { parent: shardId, child, at: key };
  }
  return finishSplit(ctx, shardId, child, record.at, record.end);
}

/**
 * Steps 2 and 3 of a split, each idempotent. The parent's log may refuse the split after the map
 * changed (a lease granted since the check, or the store being dropped). A fenced Split (every
 * member's build has it) refused there can never apply, so the map's split is undone (AbortSplit)
 * and the parent serves its whole range again. With a member of an earlier build the refusal
 * fences nothing: the split stays recorded, and the keys from `at` on are not served until
 * repairStores finishes it (once the shard allows it) or the drop takes the store.
 */
async function finishSplit(ctx: StoreAdminContext, parent: number, child: number, at: Uint8Array, end: Uint8Array | undefined): Promise<ShardSplitDone> {
  const { outcome, fenced } = await proposeSplit(ctx, parent, child, at, end);
  if (outcome.kind === 'error' && fenced) {
    metaResult((await ctx.router.meta().propose(abortSplitCommand(child), ctx.options)).outcome);
    throw new StoreChangeRefused('split-undone', `shard ${parent} refused its split into shard ${child} after the map recorded it (${outcome.message}), so the map's split was undone: nothing changed; split it again once that is no longer so`);
  }
  if (outcome.kind === 'error') throw new StoreChangeRefused('split-refused', `shard ${parent} refused its split into shard ${child} after the map recorded it (${outcome.message}): its keys from the split key on are not served until the split is finished (store repair retries it) or the store is dropped`);
  metaResult((await ctx.router.meta().propose(finishSplitCommand(child), ctx.options)).outcome);
  return { parent, child, at };
}

/**
 * The parent's Split, fenced (a refusal fences the child for good) unless a member's build does
 * not apply fenced splits yet; with what applying it answered.
 */
async function proposeSplit(ctx: StoreAdminContext, parent: number, child: number, at: Uint8Array, end: Uint8Array | undefined): Promise<{ outcome: OwnershipOutcome; fenced: boolean }> {
  // A fenced refusal is undone by AbortSplit: fenced only once every member applies that too.
  if (!membersSupport(metaEngineOf(ctx.router.meta().machine()).members(), EngineId.Meta, META_ABORT_SPLIT_VERSION)) {
    return { outcome: (await proposeOn(ctx, parent, splitCommand(child, at, end, OWNERSHIP_SPLIT_VERSION))) as OwnershipOutcome, fenced: false };
  }
  try {
    return { outcome: (await proposeOn(ctx, parent, splitCommand(child, at, end))) as OwnershipOutcome, fenced: true };
  } catch (error) {
    if (!(error instanceof RuntimeError && error.code === 'unsupported-command')) throw error;
    return { outcome: (await proposeOn(ctx, parent, splitCommand(child, at, end, OWNERSHIP_SPLIT_VERSION))) as OwnershipOutcome, fenced: false };
  }
}

/** The key in the middle of the shard's live keys (the first key of the upper half), read linearizably. */
async function middleKey(ctx: StoreAdminContext, shardId: number, start: Uint8Array, end: Uint8Array | undefined): Promise<Uint8Array> {
  const handle = ctx.router.shard(shardId);
  await handle.read(ctx.options);
  const mvcc = kvEngineOf(handle.machine()).mvcc;
  const rangeEnd = end ?? Uint8Array.of(0);
  const count = mvcc.range({ key: start, rangeEnd, countOnly: true }).count;
  if (count < 2) throw new StoreChangeRefused('bad-split-key', `shard ${shardId} holds ${count} live key${count === 1 ? '' : 's'}: give the split key`);
  const kvs = mvcc.range({ key: start, rangeEnd, keysOnly: true, limit: Math.floor(count / 2) + 1 }).kvs;
  return Uint8Array.from(kvs[kvs.length - 1]!.key);
}

/**
 * Starts moving shard `shardId`'s replica from member `from` to member `to`, at the shard's epoch
 * in the map as a linearizable read of the meta shard gives it; resolves once the move is recorded
 * (the group's leader carries it out: src/server/membership-sync.ts). The meta shard's refusals
 * are StoreChangeRefused.
 */
export async function moveReplica(ctx: StoreAdminContext, shardId: number, from: number, to: number): Promise<void> {
  const meta = ctx.router.meta();
  await meta.read(ctx.options);
  const shard = metaEngineOf(meta.machine()).shardMap().shard(shardId);
  if (shard === undefined) throw new StoreChangeRefused('unknown-shard', `no shard ${shardId} in the map`);
  metaResult((await meta.propose(moveReplicaCommand(shardId, from, to, shard.epoch), ctx.options)).outcome);
}

/** Finishes the move of `shardId`'s replica from `from` to `to` in the meta shard (its group holds `to` as a voter). */
export async function finishMove(ctx: StoreAdminContext, shardId: number, from: number, to: number): Promise<void> {
  metaResult((await ctx.router.meta().propose(finishMoveCommand(shardId, from, to), ctx.options)).outcome);
}
