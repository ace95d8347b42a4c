/**
 * Stores and the shard map, kept in the meta shard's MVCC store beside the members (members.ts):
 *
 *   shardmap                 the map's wire form (src/cluster/shard-map.ts)    absent: the initial map
 *   founders/<shard id hex>  {voters, learners}                                a shard's first configuration
 *   creating/<store name>    {createdAtMs}                                     a store not serving yet
 *
 * A store is mounted **creating**: its shards exist (their groups start) but requests are not
 * routed to them (`readRoutingMap` leaves it out), because the default store still serves its
 * prefix until it cedes it (src/engines/ownership); once it has, the store is activated and the
 * routing map sends its keys to its shards. A drop takes a store out in either state.
 *
 * The initial map (before any store was mounted) is the default store alone, as one shard
 * (`DEFAULT_STORE_SHARD`). Until placement exists every shard is replicated on every member, as
 * the default store's is: its replica list is empty, which the map reads as "every member", and
 * its group's configuration follows the member list (src/server/membership-sync.ts). A mounted
 * shard's group starts on the members of the moment its store was mounted, with their
 * configuration recorded as its founders: every founder bootstraps the group with it, alike; a
 * member that joins later gets the group from its leader.
 *
 * Everything here reads only the store and the command, so every replica decides alike.
 */
import { prefixEnd, type MvccStore } from '../../../storage/index.js';
import { ShardMap, ShardMapError, type ShardMapErrorCode, decodeShardMap, encodeShardMap, mountShardsMax } from '../../cluster/model.js';
import { listMembers } from './members.js';

/** The default store's shard in a new cluster (shard 0 is the meta shard, outside the map). */
export const DEFAULT_STORE_SHARD = 1;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const shardMapKey = encoder.encode('shardmap');
const foundersKey = (shard: number): Uint8Array => encoder.encode(`founders/${shard.toString(16).padStart(14, '0')}`);
const creatingPrefix = encoder.encode('creating/');
const creatingKey = (name: string): Uint8Array => encoder.encode(`creating/${name}`);

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

export function foundersOf(mvcc: MvccStore, shard: number): Founders | undefined {
  const kv = mvcc.range({ key: foundersKey(shard) }).kvs[0];
  return kv === undefined ? undefined : (JSON.parse(decoder.decode(kv.value)) as Founders);
}

export type StoresChange =
  | { readonly kind: 'mount'; readonly name: string; readonly prefix: Uint8Array; readonly shards: number }
  /** `first`: the store's first shard id, which names one incarnation of the store (ids are never reused). */
  | { readonly kind: 'activate'; readonly name: string; readonly first: number }
  | { readonly kind: 'drop'; readonly name: string; readonly first: number };

export type StoresOutcome =
  | { readonly kind: 'ok'; readonly shards: readonly number[] }
  | { readonly kind: 'error'; readonly code: ShardMapErrorCode; readonly message: string };

/**
 * Applies a change of stores: mount (new shards take the next ids, replicated on every member;
 * today's configuration of voters and learners is recorded as their founders; the store is
 * creating), activate (routed to from now on; idempotent) or drop (the store's shards leave the
 * map; their founders records go too). A change the map refuses is the outcome, changing nothing.
 */
export function applyStoresChange(mvcc: MvccStore, change: StoresChange, nowMs: number): StoresOutcome {
  const before = readShardMap(mvcc);
  try {
    if (change.kind === 'drop' || change.kind === 'activate') {
      // A late step of an earlier store of the same name (dropped since) must not act on this one.
      const first = before.shardsOf(change.name)[0]?.id;
      if (first !== change.first) return { kind: 'error', code: 'unknown-store', message: `store "${change.name}" is not the one of shard ${change.first} any more (its first shard is ${first})` };
    }
    if (change.kind === 'drop') {
      const after = before.drop(change.name);
      const dropped = before.shardsOf(change.name).map((s) => s.id);
      writeMap(mvcc, after);
      for (const id of dropped) mvcc.deleteRange({ key: foundersKey(id) });
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
    const after = before.mount(change.name, change.prefix, ids, []);
    const members = listMembers(mvcc);
    if (!members.some((m) => !m.isLearner)) return { kind: 'error', code: 'bad-replicas', message: 'no voting member to found the store\'s shards' };
    writeMap(mvcc, after);
    const founders: Founders = { voters: members.filter((m) => !m.isLearner).map((m) => m.id), learners: members.filter((m) => m.isLearner).map((m) => m.id) };
    for (const id of ids) mvcc.put(foundersKey(id), encoder.encode(JSON.stringify(founders)));
    mvcc.put(creatingKey(change.name), encoder.encode(JSON.stringify({ createdAtMs: nowMs })));
    return { kind: 'ok', shards: ids };
  } catch (error) {
    if (error instanceof ShardMapError) return { kind: 'error', code: error.code, message: error.message };
    throw error;
  }
}

function writeMap(mvcc: MvccStore, map: ShardMap): void {
  mvcc.put(shardMapKey, encodeShardMap(map));
}

