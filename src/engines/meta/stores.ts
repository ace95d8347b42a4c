/**
 * Stores and the shard map, kept in the meta shard's MVCC store beside the members (members.ts):
 *
 *   shardmap                  the map's wire form (src/cluster/shard-map.ts)   absent: the initial map
 *   founders/<shard id hex>   {voters, learners}                               a mounted shard's first configuration
 *   creating/<store name>     {createdAtMs}                                    a store not serving yet
 *   splitting/<shard id hex>  {parent, atHex, endHex|null}                     a split's child not finished yet
 *   splitfrom/<shard id hex>  {parent}                                         the shard a split's child came from
 *   moving/<shard id hex>     {from, to}                                       a placed shard's replica move not finished yet
 *   moved/<shard id hex>      {from, to}                                       its last move finished (a repeat answers it)
 *
 * (Shard ids in keys are 14 lower-case hex digits, so they sort by id.)
 *
 * A store is mounted **creating**: its shards exist (their groups start) but requests are not
 * routed to them (`readRoutingMap` leaves it out), because the default store still serves its
 * prefix until it cedes it (src/engines/ownership); once it has, the store is activated and the
 * routing map sends its keys to its shards. A drop takes a store out in either state, with every
 * record of its shards.
 *
 * The initial map (before any store was mounted) is the default store alone, as one shard
 * (`DEFAULT_STORE_SHARD`). A shard is replicated on every member, as the default store's is,
 * unless its store was mounted with a replica count: its replica list is empty, which the map
 * reads as "every member", and its group's configuration follows the member list
 * (src/server/membership-sync.ts). A mounted shard's group starts on the members of the moment
 * its store was mounted, with their configuration recorded as its founders: every founder
 * bootstraps the group with it, alike; a member that joins later gets the group from its leader.
 * A mount with a replica count R places each shard on R voters (`placeReplicas`), listed in the
 * map; they alone found it, and its group follows them only (a split's child keeps the list).
 *
 * A split of a mounted store's shard (the parent) at a key: SplitShard puts the child (the next
 * shard id, `[at, parent's end)`) in the map, both halves at the parent's epoch + 1, and marks the
 * child **splitting**; the parent's own log then applies a Split at which every replica of the
 * parent makes the child's group from its own data; FinishSplit takes the mark away. The routing
 * map has the child from the start (a node that does not host it yet answers a retryable error).
 * While splitting, no member starts the child's group on its own (src/server/store-groups.ts);
 * once finished, a member without it starts it empty and gets it from its leader. A child has no
 * founders record: its group begins from the parent's state, not from an empty log, so a founders
 * log written by a member that missed the Split would be a history the group never had.
 * The default store is not split (its leases and cessions are not split), nor a shard of a store
 * still creating, nor a shard in an unfinished split (as parent or child): one split of a shard at
 * a time. A SplitShard is idempotent: when the shard that starts at `at` in the parent's store
 * came from the parent (its `splitfrom` record; a shard's start never changes, as a split keeps
 * the parent's start), the outcome is that split's, finished or not, whatever the epoch.
 *
 * A replica move of a placed shard, from member F to member T (`applyMove`): MoveReplica records
 * it (**moving**); the map does not change yet, so requests still go to the listed replicas, F
 * among them. The shard's group leader adds T as a learner and promotes it once it caught up
 * (src/server/membership-sync.ts), then FinishMove puts T in the list in F's place at a new epoch;
 * only then does the group remove F (its leader first handing over if it is F), and F drops its
 * replica once out of the group (src/server/store-groups.ts). One move of a shard at a time; a
 * move from the same F to another T replaces one not finished (a T that died half way). A shard
 * moving is not split, nor a shard splitting moved.
 *
 * Everything here reads only the store and the command, so every replica decides alike.
 */
import { prefixEnd, type MvccStore } from '../../../storage/index.js';
import { assert } from '../../../raft/index.js';
import { DEFAULT_STORE, ShardMap, ShardMapError, type ShardMapErrorCode, compareKeys, decodeShardMap, encodeShardMap, mountShardsMax, replicasMax } from '../../cluster/model.js';
import { bytesToHex, hexToBytes } from '../bytes.js';
import { listMembers } from './members.js';

/** The default store's shard in a new cluster (shard 0 is the meta shard, outside the map). */
export const DEFAULT_STORE_SHARD = 1;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const shardMapKey = encoder.encode('shardmap');
const shardHex = (shard: number): string => shard.toString(16).padStart(14, '0');
const foundersKey = (shard: number): Uint8Array => encoder.encode(`founders/${shardHex(shard)}`);
const creatingPrefix = encoder.encode('creating/');
const creatingKey = (name: string): Uint8Array => encoder.encode(`creating/${name}`);
const splittingPrefix = encoder.encode('splitting/');
const splittingKey = (child: number): Uint8Array => encoder.encode(`splitting/${shardHex(child)}`);
const splitFromKey = (child: number): Uint8Array => encoder.encode(`splitfrom/${shardHex(child)}`);
const movingPrefix = encoder.encode('moving/');
const movingKey = (shard: number): Uint8Array => encoder.encode(`moving/${shardHex(shard)}`);
const movedKey = (shard: number): Uint8Array => encoder.encode(`moved/${shardHex(shard)}`);

/** A replica move not finished yet: the member leaving the shard's list and the one joining it. */
export interface MovingReplica {
  readonly from: number;
  readonly to: number;
}

/** The placed shards' unfinished replica moves, by shard id. */
export function movingReplicas(mvcc: MvccStore): Map<number, MovingReplica> {
  const out = new Map<number, MovingReplica>();
  for (const kv of mvcc.range({ key: movingPrefix, rangeEnd: prefixEnd(movingPrefix) }).kvs) {
    const shard = Number.parseInt(decoder.decode(kv.key).slice(movingPrefix.length), 16);
    const record = JSON.parse(decoder.decode(kv.value)) as MovingReplica;
    out.set(shard, { from: record.from, to: record.to });
  }
  return out;
}

/** A split's child not finished yet: the shard it comes from and the range it took (`end` undefined: no bound). */
export interface SplittingShard {
  readonly parent: number;
  readonly at: Uint8Array;
  readonly end: Uint8Array | undefined;
}

/** The configuration a shard's group starts with on the members that found it. */
export interface Founders {
  readonly voters: readonly number[];
  readonly learners: readonly number[];
}

/** The map now: the stored one, or the initial map (nothing mounted yet). */
export function readShardMap(mvcc: MvccStore): ShardMap {
  const kv = mvcc.range({ key: shardMapKey }).kvs[0];
  return kv === undefined ? ShardMap.initial(DEFAULT_STORE_SHARD) : decodeShardMap(kv.value);
}

/** The stores mounted and not activated yet, by name, with the leader's time of their mount. */
export function creatingStores(mvcc: MvccStore): Map<string, { readonly createdAtMs: number }> {
  const out = new Map<string, { createdAtMs: number }>();
  for (const kv of mvcc.range({ key: creatingPrefix, rangeEnd: prefixEnd(creatingPrefix) }).kvs) {
    out.set(decoder.decode(kv.key).slice(creatingPrefix.length), JSON.parse(decoder.decode(kv.value)) as { createdAtMs: number });
  }
  return out;
}

/** The map requests are routed by: the stored one without the stores still being created. */
export function readRoutingMap(mvcc: MvccStore, full: ShardMap = readShardMap(mvcc)): ShardMap {
  let map = full;
  for (const name of creatingStores(mvcc).keys()) map = map.drop(name);
  return map;
}

/** The children of unfinished splits, by shard id. */
export function splittingShards(mvcc: MvccStore): Map<number, SplittingShard> {
  const out = new Map<number, SplittingShard>();
  for (const kv of mvcc.range({ key: splittingPrefix, rangeEnd: prefixEnd(splittingPrefix) }).kvs) {
    const child = Number.parseInt(decoder.decode(kv.key).slice(splittingPrefix.length), 16);
    const record = JSON.parse(decoder.decode(kv.value)) as { parent: number; atHex: string; endHex: string | null };
    const at = hexToBytes(record.atHex);
    const end = record.endHex === null ? undefined : hexToBytes(record.endHex);
    assert(at !== undefined && (record.endHex === null || end !== undefined), () => `splitting record of shard ${child} holds a key that is not hex`);
    out.set(child, { parent: record.parent, at, end });
  }
  return out;
}

/** The shard a split made `shard` from (none: a shard a mount made, or one the map no longer has). */
export function splitParentOf(mvcc: MvccStore, shard: number): number | undefined {
  const kv = mvcc.range({ key: splitFromKey(shard) }).kvs[0];
  return kv === undefined ? undefined : (JSON.parse(decoder.decode(kv.value)) as { parent: number }).parent;
}

export function foundersOf(mvcc: MvccStore, shard: number): Founders | undefined {
  const kv = mvcc.range({ key: foundersKey(shard) }).kvs[0];
  return kv === undefined ? undefined : (JSON.parse(decoder.decode(kv.value)) as Founders);
}

export type StoresChange =
  /** `replicas`: how many voting members host each shard (0: every member, its group following the member list). */
  | { readonly kind: 'mount'; readonly name: string; readonly prefix: Uint8Array; readonly shards: number; readonly replicas: number }
  /** `first`: the store's first shard id, which names one incarnation of the store (ids are never reused). */
  | { readonly kind: 'activate'; readonly name: string; readonly first: number }
  | { readonly kind: 'drop'; readonly name: string; readonly first: number }
  /** `epoch`: the parent's epoch in the caller's map. */
  | { readonly kind: 'split'; readonly parent: number; readonly at: Uint8Array; readonly epoch: number }
  | { readonly kind: 'finish-split'; readonly child: number }
  | { readonly kind: 'abort-split'; readonly child: number }
  /** `epoch`: the shard's epoch in the caller's map. */
  | { readonly kind: 'move'; readonly shard: number; readonly from: number; readonly to: number; readonly epoch: number }
  | { readonly kind: 'finish-move'; readonly shard: number; readonly from: number; readonly to: number };

export type StoresOutcome =
  | { readonly kind: 'ok'; readonly shards: readonly number[] }
  | { readonly kind: 'error'; readonly code: ShardMapErrorCode; readonly message: string };

/**
 * Applies a change of stores: mount (new shards take the next ids, replicated on every member
 * with today's configuration of voters and learners recorded as their founders, or placed on R
 * voters who found them alone; the store is creating), activate (routed to from now on; idempotent), drop (the store's shards leave the
 * map with every record of theirs), split (`applySplit`) or finish a split (the child's mark goes;
 * idempotent; the outcome names the child). A change refused is the outcome, changing nothing.
 */
export function applyStoresChange(mvcc: MvccStore, change: StoresChange, nowMs: number): StoresOutcome {
  const before = readShardMap(mvcc);
  try {
    if (change.kind === 'drop' || change.kind === 'activate') {
      // A late step of an earlier store of the same name (dropped since) must not act on this one.
      const first = before.shardsOf(change.name)[0]?.id;
      if (first !== change.first) return { kind: 'error', code: 'unknown-store', message: `store "${change.name}" is not the one of shard ${change.first} any more (its first shard is ${first})` };
    }
    if (change.kind === 'split') return applySplit(mvcc, before, change);
    if (change.kind === 'finish-split') {
      mvcc.deleteRange({ key: splittingKey(change.child) });
      return { kind: 'ok', shards: [change.child] };
    }
    if (change.kind === 'abort-split') return applyAbortSplit(mvcc, before, change.child);
    if (change.kind === 'move') return applyMove(mvcc, before, change);
    if (change.kind === 'finish-move') return applyFinishMove(mvcc, before, change);
    if (change.kind === 'drop') {
      const after = before.drop(change.name);
      const dropped = before.shardsOf(change.name).map((s) => s.id);
      writeMap(mvcc, after);
      // (Deleting a key that is absent writes nothing: no revision is used.)
      for (const id of dropped) for (const key of [foundersKey(id), splittingKey(id), splitFromKey(id), movingKey(id), movedKey(id)]) mvcc.deleteRange({ key });
      mvcc.deleteRange({ key: creatingKey(change.name) });
      return { kind: 'ok', shards: dropped };
    }
    if (change.kind === 'activate') {
      // Idempotent: an active store stays active.
      const shards = before.shardsOf(change.name).map((s) => s.id);
      if (mvcc.range({ key: creatingKey(change.name), countOnly: true }).count > 0) mvcc.deleteRange({ key: creatingKey(change.name) });
      return { kind: 'ok', shards };
    }
    // Checked before ids are made for it (the map checks it again).
    if (!Number.isSafeInteger(change.shards) || change.shards < 1 || change.shards > mountShardsMax) {
      return { kind: 'error', code: 'bad-shard-count', message: `a store starts with 1 to ${mountShardsMax} shards, got ${change.shards}` };
    }
    const ids = Array.from({ length: change.shards }, (_, i) => before.highestShardId + 1 + i);
    const members = listMembers(mvcc);
    const voters = members.filter((m) => !m.isLearner).map((m) => m.id);
    if (voters.length === 0) return { kind: 'error', code: 'bad-replicas', message: 'no voting member to found the store\'s shards' };
    if (!Number.isSafeInteger(change.replicas) || change.replicas < 0 || change.replicas > replicasMax) {
      return { kind: 'error', code: 'bad-replicas', message: `a store's shards have 1 to ${replicasMax} replicas (0: every member), got ${change.replicas}` };
    }
    if (change.replicas > voters.length) {
      return { kind: 'error', code: 'bad-replicas', message: `${change.replicas} replicas asked, the cluster has ${voters.length} voting member${voters.length === 1 ? '' : 's'}` };
    }
    const placed = change.replicas === 0 ? ids.map(() => []) : placeReplicas(before, voters, ids.length, change.replicas);
    const after = before.mount(change.name, change.prefix, ids, placed);
    writeMap(mvcc, after);
    const everyMember: Founders = { voters, learners: members.filter((m) => m.isLearner).map((m) => m.id) };
    ids.forEach((id, i) => {
      const founders: Founders = placed[i]!.length === 0 ? everyMember : { voters: placed[i]!, learners: [] };
      mvcc.put(foundersKey(id), encoder.encode(JSON.stringify(founders)));
    });
    mvcc.put(creatingKey(change.name), encoder.encode(JSON.stringify({ createdAtMs: nowMs })));
    return { kind: 'ok', shards: ids };
  } catch (error) {
    if (error instanceof ShardMapError) return { kind: 'error', code: error.code, message: error.message };
    throw error;
  }
}

/**
 * The replicas of `count` new shards, `replicas` voters each, chosen from `voters` (distinct ids):
 * each shard takes the voters that host the fewest placed replicas so far (the map's shards with a
 * replica list, then the shards placed before it), ties to the lower id. A pure function of the map
 * and the member list, so every replica of the meta shard places alike. Each list is ascending.
 */
export function placeReplicas(map: ShardMap, voters: readonly number[], count: number, replicas: number): number[][] {
  const load = new Map<number, number>(voters.map((id) => [id, 0]));
  for (const shard of map.shards()) for (const id of shard.replicas) if (load.has(id)) load.set(id, load.get(id)! + 1);
  const out: number[][] = [];
  for (let i = 0; i < count; i++) {
    const chosen = [...load.entries()]
      .sort((a, b) => a[1] - b[1] || a[0] - b[0])
      .slice(0, replicas)
      .map(([id]) => id);
    for (const id of chosen) load.set(id, load.get(id)! + 1);
    out.push(chosen.sort((a, b) => a - b));
  }
  return out;
}

/**
 * Takes removed member `id` out of every placed shard's replica list (each such shard's epoch
 * raised); a list it is the last of keeps it (an empty list would mean "every member": that
 * shard's data went with the member). A move to it is forgotten. Whether the map or a move changed.
 */
export function dropReplica(mvcc: MvccStore, id: number): boolean {
  const before = readShardMap(mvcc);
  let after = before;
  for (const shard of before.shards()) {
    if (shard.replicas.length > 1 && shard.replicas.includes(id)) after = after.withReplicas(shard.id, shard.replicas.filter((r) => r !== id));
  }
  let changed = after !== before;
  if (changed) writeMap(mvcc, after);
  // A move to the removed member cannot finish: it goes (its shard keeps its list).
  for (const [shard, moving] of movingReplicas(mvcc)) {
    if (moving.to !== id) continue;
    mvcc.deleteRange({ key: movingKey(shard) });
    changed = true;
  }
  return changed;
}

type MoveChange = Extract<StoresChange, { kind: 'move' }>;

/**
 * Starts moving a placed shard's replica from `change.from` to `change.to` (see the header): the
 * move is recorded, the map is left as it is; the outcome is `[shard]`. A repeat of a move
 * started or made already answers the same, whatever the epoch. Refused, changing nothing: an unknown shard (`unknown-shard`), a store still
 * creating (`unknown-store`), a shard in an unfinished split as parent or child
 * (`split-in-progress`), a shard every member hosts, `from` not listed, `to` listed, or another
 * move not finished from another member (`bad-move`), `to` not a voting member (`unknown-member`),
 * an epoch other than the shard's (`bad-epoch`).
 */
function applyMove(mvcc: MvccStore, before: ShardMap, change: MoveChange): StoresOutcome {
  const refused = (code: ShardMapErrorCode, message: string): StoresOutcome => ({ kind: 'error', code, message });
  const shard = before.shard(change.shard);
  if (shard === undefined) return refused('unknown-shard', `no shard ${change.shard}`);
  if (shard.replicas.length === 0) return refused('bad-move', `shard ${shard.id} is hosted by every member (its store was created without a replica count): it has no replica to move`);
  const moving = movingReplicas(mvcc).get(shard.id);
  const done = { kind: 'ok' as const, shards: [shard.id] };
  if (moving !== undefined && moving.from === change.from && moving.to === change.to) return done;
  if (moving === undefined && isLastMove(mvcc, shard.id, change.from, change.to) && shard.replicas.includes(change.to) && !shard.replicas.includes(change.from)) return done;
  if (change.from === change.to) return refused('bad-move', `a replica moves to another member than the one it leaves (${change.from.toString(16)})`);
  if (mvcc.range({ key: creatingKey(shard.store), countOnly: true }).count > 0) return refused('unknown-store', `store "${shard.store}" is still being created: its replicas move once it serves`);
  for (const [child, split] of splittingShards(mvcc)) {
    if (child === shard.id || split.parent === shard.id) return refused('split-in-progress', `shard ${shard.id} is in an unfinished split (shard ${split.parent} into ${child}): its replicas move once it is finished`);
  }
  if (moving !== undefined && moving.from !== change.from) {
    return refused('bad-move', `shard ${shard.id}'s replica is moving from ${moving.from.toString(16)} to ${moving.to.toString(16)}: one move of a shard at a time (a move from ${moving.from.toString(16)} to another member replaces it)`);
  }
  if (!shard.replicas.includes(change.from)) return refused('bad-move', `member ${change.from.toString(16)} holds no replica of shard ${shard.id}`);
  if (shard.replicas.includes(change.to)) return refused('bad-move', `member ${change.to.toString(16)} holds a replica of shard ${shard.id} already`);
  const target = listMembers(mvcc).find((m) => m.id === change.to);
  if (target === undefined || target.isLearner) return refused('unknown-member', `member ${change.to.toString(16)} is not a voting member of the cluster`);
  if (shard.epoch !== change.epoch) return refused('bad-epoch', `shard ${shard.id} is at epoch ${shard.epoch}, the move names epoch ${change.epoch}: the caller's map is stale`);
  mvcc.put(movingKey(shard.id), encoder.encode(JSON.stringify({ from: change.from, to: change.to })));
  return done;
}

/**
 * Finishes the move of `change.shard` from `change.from` to `change.to` (its group holds `to` as a
 * voter): the list takes `to` in `from`'s place (kept ascending), the epoch rises, the record goes;
 * it is recorded as the shard's last move, and the founders record goes: a founder moved away and
 * back later, its storage dropped, must start the group empty and get it from the leader, not
 * write the founders log again (a lone founder would elect itself on a history the group left long
 * ago); the outcome is `[shard]`. Idempotent (the last move
 * finished answers the same); a move not recorded is refused (`bad-move`: it was replaced, or its store dropped).
 */
function applyFinishMove(mvcc: MvccStore, before: ShardMap, change: Extract<StoresChange, { kind: 'finish-move' }>): StoresOutcome {
  const shard = before.shard(change.shard);
  if (shard === undefined) return { kind: 'error', code: 'unknown-shard', message: `no shard ${change.shard}` };
  const moving = movingReplicas(mvcc).get(shard.id);
  if (moving === undefined || moving.from !== change.from || moving.to !== change.to) {
    if (moving === undefined && isLastMove(mvcc, shard.id, change.from, change.to)) return { kind: 'ok', shards: [shard.id] };
    return { kind: 'error', code: 'bad-move', message: `shard ${shard.id} has no move from ${change.from.toString(16)} to ${change.to.toString(16)} to finish` };
  }
  const replicas = [...new Set([...shard.replicas.filter((id) => id !== change.from), change.to])].sort((a, b) => a - b);
  writeMap(mvcc, before.withReplicas(shard.id, replicas));
  mvcc.deleteRange({ key: movingKey(shard.id) });
  // The group has moved on from its first configuration: no member founds it again (see applyMove).
  mvcc.deleteRange({ key: foundersKey(shard.id) });
  mvcc.put(movedKey(shard.id), encoder.encode(JSON.stringify({ from: change.from, to: change.to })));
  return { kind: 'ok', shards: [shard.id] };
}

/** Whether `shard`'s last finished move was from `from` to `to`. */
function isLastMove(mvcc: MvccStore, shard: number, from: number, to: number): boolean {
  const kv = mvcc.range({ key: movedKey(shard) }).kvs[0];
  if (kv === undefined) return false;
  const last = JSON.parse(decoder.decode(kv.value)) as MovingReplica;
  return last.from === from && last.to === to;
}

type SplitChange = Extract<StoresChange, { kind: 'split' }>;

/**
 * Splits a mounted store's shard at `change.at` (see the header): the child takes the next id, the
 * map is written, the child is marked splitting and its parent recorded; the outcome is
 * `[parent, child]`. A repeat of a split made already answers the same (finished or not). Refused,
 * changing nothing: an unknown parent (`unknown-shard`), the default store's (`default-store`), a
 * store still creating (`unknown-store`), a parent still splitting itself (`unknown-shard`) or with
 * a child not finished (`bad-split-key`), an epoch other than the parent's (`bad-epoch`: the
 * caller's map is stale), and whatever the map refuses (`bad-split-key`, `too-many-shards`, …).
 * Throws `ShardMapError` for the map's refusals (the caller turns them into the outcome).
 */
function applySplit(mvcc: MvccStore, before: ShardMap, change: SplitChange): StoresOutcome {
  const refused = (code: ShardMapErrorCode, message: string): StoresOutcome => ({ kind: 'error', code, message });
  const parent = before.shard(change.parent);
  if (parent === undefined) return refused('unknown-shard', `no shard ${change.parent}`);
  const madeAlready = splitMadeAlready(mvcc, before, parent.store, parent.id, change.at);
  if (madeAlready !== undefined) return { kind: 'ok', shards: [parent.id, madeAlready] };
  if (parent.store === DEFAULT_STORE) return refused('default-store', `shard ${parent.id} is the default store's, which stays one shard (its leases and cessions are not split)`);
  if (mvcc.range({ key: creatingKey(parent.store), countOnly: true }).count > 0) {
    return refused('unknown-store', `store "${parent.store}" is still being created: its shards split once it serves`);
  }
  const splitting = splittingShards(mvcc);
  const own = splitting.get(parent.id);
  if (own !== undefined) return refused('split-in-progress', `shard ${parent.id} is still being split from shard ${own.parent}: it splits once that split is finished`);
  for (const [child, split] of splitting) {
    if (split.parent === parent.id) return refused('split-in-progress', `shard ${parent.id}'s split at ${bytesToHex(split.at)} (shard ${child}) is not finished: a shard has one split at a time`);
  }
  const moving = movingReplicas(mvcc).get(parent.id);
  if (moving !== undefined) {
    return refused('split-in-progress', `shard ${parent.id}'s replica is moving from ${moving.from.toString(16)} to ${moving.to.toString(16)}: it splits once the move is finished`);
  }
  if (parent.epoch !== change.epoch) {
    return refused('bad-epoch', `shard ${parent.id} is at epoch ${parent.epoch}, the split names epoch ${change.epoch}: the caller's map is stale`);
  }
  const child = before.highestShardId + 1;
  const after = before.split(parent.id, change.at, child);
  const made = after.shard(child);
  assert(made !== undefined && compareKeys(made.start, change.at) === 0 && made.epoch === parent.epoch + 1, () => `split of shard ${parent.id}: child ${child} not made as asked`);
  writeMap(mvcc, after);
  const record = { parent: parent.id, atHex: bytesToHex(change.at), endHex: parent.end === undefined ? null : bytesToHex(parent.end) };
  mvcc.put(splittingKey(child), encoder.encode(JSON.stringify(record)));
  mvcc.put(splitFromKey(child), encoder.encode(JSON.stringify({ parent: parent.id })));
  return { kind: 'ok', shards: [parent.id, child] };
}

/**
 * Undoes the unfinished split that made `child`: its parent takes the range back at a new epoch,
 * the child and its records leave the map (its id is never given out again); the outcome is
 * `[parent, child]`. Idempotent: a child the map no longer has answers `[child]`. A finished split
 * is not undone (`bad-tiling`: the coordinator undoes only a split its parent refused for good,
 * which never finishes).
 */
function applyAbortSplit(mvcc: MvccStore, before: ShardMap, child: number): StoresOutcome {
  const record = splittingShards(mvcc).get(child);
  if (record === undefined) {
    if (before.shard(child) === undefined) return { kind: 'ok', shards: [child] };
    return { kind: 'error', code: 'bad-tiling', message: `the split that made shard ${child} is finished: it is not undone` };
  }
  writeMap(mvcc, before.unsplit(record.parent, child));
  for (const key of [splittingKey(child), splitFromKey(child), foundersKey(child)]) mvcc.deleteRange({ key });
  return { kind: 'ok', shards: [record.parent, child] };
}

/** The child of `parent`'s split at `at` when it was made (the shard starting at `at` in `store` came from `parent`). */
function splitMadeAlready(mvcc: MvccStore, map: ShardMap, store: string, parent: number, at: Uint8Array): number | undefined {
  const shard = map.shardForKey(at);
  if (shard.store !== store || compareKeys(shard.start, at) !== 0 || shard.id === parent) return undefined;
  return splitParentOf(mvcc, shard.id) === parent ? shard.id : undefined;
}

function writeMap(mvcc: MvccStore, map: ShardMap): void {
  mvcc.put(shardMapKey, encodeShardMap(map));
}

