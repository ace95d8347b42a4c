/**
 * The shard map: which shard (Raft group) owns which key.
 *
 * - A **store** is a keyspace mounted on a key prefix. The default store (prefix empty) owns every
 *   key that no mount claims. Mount prefixes never overlap: no mount's prefix starts another's, so
 *   a key belongs to at most one mount.
 * - A **shard** owns `[start, end)` of its store (`end` undefined: no upper bound). A store's
 *   shards tile its whole key range with no gap and no overlap: the first starts at the store's
 *   prefix (the empty key for the default store), each ends where the next starts, the last ends
 *   where the prefix's keys end. A default-store shard whose range covers a mount owns only the
 *   keys outside it.
 * - Every shard has an **epoch**, raised by every split or replica change, so a request routed with
 *   an older map can be told so.
 *
 * A map is immutable (the store and shard records it hands out are frozen, and their key bytes must
 * not be written to): `mount`, `drop`, `split` and `withReplicas` validate and return a new map, or
 * throw a `ShardMapError` with a stable code and change nothing. Shard ids are never reused: a map
 * remembers the highest id its history gave out (`highestShardId`), and a new shard must take a
 * larger one, so an epoch always belongs to one shard's one range. Lookups (`shardForKey`,
 * `piecesOfRange`) binary-search one flat table of disjoint key intervals built once per map.
 * Pure: no I/O, no clock.
 */

import { byteValues, mountShardsMax, replicasMax, shardsPerStoreMax, splitKeyBytesMax, storeNameBytesMax, storePrefixBytesMax, storesMax } from './limits.js';

/** Name of the store that owns every key no mount claims; it cannot be dropped. */
export const DEFAULT_STORE = 'default';

export type ShardMapErrorCode =
  | 'bad-store-name'
  | 'bad-prefix'
  | 'prefix-overlap'
  | 'store-exists'
  | 'unknown-store'
  | 'default-store'
  | 'too-many-stores'
  | 'bad-shard-id'
  | 'shard-exists'
  | 'unknown-shard'
  | 'too-many-shards'
  | 'bad-shard-count'
  | 'empty-shard'
  | 'bad-split-key'
  | 'bad-replicas'
  | 'bad-epoch'
  | 'bad-tiling'
  | 'bad-encoding'
  /** A split of a shard whose split (or whose own making by a split) is not finished (the meta shard's rule). */
  | 'split-in-progress'
  /** A replica move the shard's list does not allow: the shard is not placed, `from` holds no replica, `to` holds one (the meta shard's rule). */
  | 'bad-move'
  /** A replica move to a member that is not a voting member of the cluster (the meta shard's rule). */
  | 'unknown-member';

export class ShardMapError extends Error {
  constructor(
    readonly code: ShardMapErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ShardMapError';
  }
}

export interface StoreDef {
  readonly name: string;
  /** Empty for the default store only. */
  readonly prefix: Uint8Array;
}

export interface ShardDef {
  /** The shard's Raft group id: a positive safe integer (0 is the meta shard, never in the map). */
  readonly id: number;
  readonly store: string;
  readonly start: Uint8Array;
  /** Exclusive; undefined: no upper bound. */
  readonly end: Uint8Array | undefined;
  readonly epoch: number;
  /**
   * Member ids of the nodes that host a replica, distinct, at most `replicasMax`; none: every
   * member hosts one (the policy until placement chooses replicas, as for the default store).
   */
  readonly replicas: readonly number[];
}

/** A piece of a key range that one shard serves: `[start, end)`, `end` undefined for no bound. */
export interface RangePiece {
  readonly shard: ShardDef;
  readonly start: Uint8Array;
  readonly end: Uint8Array | undefined;
}

/** Byte-wise order of two keys (shorter first on a common prefix), as etcd orders keys. */
export function compareKeys(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i]! - b[i]!;
  }
  return a.length - b.length;
}

/** The first key after every key that starts with `prefix`; undefined when there is none (all 0xff, or empty). */
export function prefixEndOf(prefix: Uint8Array): Uint8Array | undefined {
  for (let i = prefix.length - 1; i >= 0; i--) {
    if (prefix[i]! < 0xff) {
      // A copy: on a Buffer, slice() is a view of the caller's bytes.
      const end = Uint8Array.from(prefix.subarray(0, i + 1));
      end[i]! += 1;
      return end;
    }
  }
  return undefined;
}

/** a < b where undefined is +infinity. */
function below(a: Uint8Array, b: Uint8Array | undefined): boolean {
  return b === undefined || compareKeys(a, b) < 0;
}

function sameEnd(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  return a === undefined || b === undefined ? a === b : compareKeys(a, b) === 0;
}

function startsWith(key: Uint8Array, prefix: Uint8Array): boolean {
  if (key.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (key[i] !== prefix[i]) return false;
  return true;
}

/** Two mount prefixes overlap when one starts the other (they would claim common keys). */
function overlapping(a: Uint8Array, b: Uint8Array): boolean {
  return startsWith(a, b) || startsWith(b, a);
}

const storeNamePattern = /^[a-z0-9][a-z0-9_-]*$/;

function checkStoreName(name: string): void {
  if (typeof name !== 'string' || !storeNamePattern.test(name) || name.length > storeNameBytesMax) {
    throw new ShardMapError('bad-store-name', `a store name is 1 to ${storeNameBytesMax} of [a-z0-9_-], starting with a letter or digit; got ${JSON.stringify(String(name).slice(0, storeNameBytesMax + 1))}`);
  }
}

function checkShardId(id: number): void {
  if (!Number.isSafeInteger(id) || id <= 0) throw new ShardMapError('bad-shard-id', `a shard id is a positive safe integer, got ${id}`);
}

function checkReplicas(replicas: readonly number[]): void {
  if (replicas.length > replicasMax) {
    throw new ShardMapError('bad-replicas', `a shard has at most ${replicasMax} replicas (none listed: every member), got ${replicas.length}`);
  }
  const seen = new Set<number>();
  for (const id of replicas) {
    if (!Number.isSafeInteger(id) || id <= 0) throw new ShardMapError('bad-replicas', `a replica is a member id (a positive safe integer), got ${id}`);
    if (seen.has(id)) throw new ShardMapError('bad-replicas', `member ${id.toString(16)} holds two replicas of one shard`);
    seen.add(id);
  }
}

function hex(key: Uint8Array | undefined): string {
  if (key === undefined) return '(end)';
  return key.length === 0 ? '(empty)' : Array.from(key, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** One interval of the flat table: `[start, next interval's start)` belongs to `shard`. */
interface Interval {
  readonly start: Uint8Array;
  readonly shard: ShardDef;
}

export class ShardMap {
  private readonly storesByName: ReadonlyMap<string, StoreDef>;
  private readonly shardsById: ReadonlyMap<number, ShardDef>;
  /** Disjoint, sorted by start, covering every key from the empty key on. */
  private readonly table: readonly Interval[];

  /** Every shard id ever given out is at most this; new shards take larger ones (ids are never reused). */
  readonly highestShardId: number;

  /**
   * Validates everything; throws a `ShardMapError` naming the first problem. `highestShardId`: the
   * largest shard id this map's history has given out (at least every id in `shards`).
   */
  constructor(stores: readonly StoreDef[], shards: readonly ShardDef[], highestShardId = 0) {
    if (stores.length > storesMax) throw new ShardMapError('too-many-stores', `at most ${storesMax} stores, got ${stores.length}`);
    const byName = new Map<string, StoreDef>();
    for (const store of stores) {
      checkStoreName(store.name);
      if (byName.has(store.name)) throw new ShardMapError('store-exists', `store "${store.name}" appears twice`);
      const isDefault = store.name === DEFAULT_STORE;
      if (isDefault !== (store.prefix.length === 0)) {
        throw new ShardMapError('bad-prefix', isDefault ? 'the default store has the empty prefix' : `store "${store.name}" needs a non-empty prefix`);
      }
      if (store.prefix.length > storePrefixBytesMax) throw new ShardMapError('bad-prefix', `a prefix is at most ${storePrefixBytesMax} bytes, got ${store.prefix.length}`);
      byName.set(store.name, Object.freeze({ name: store.name, prefix: Uint8Array.from(store.prefix) }));
    }
    if (!byName.has(DEFAULT_STORE)) throw new ShardMapError('default-store', 'the map has no default store');
    const mounts = [...byName.values()].filter((s) => s.name !== DEFAULT_STORE).sort((a, b) => compareKeys(a.prefix, b.prefix));
    for (let i = 1; i < mounts.length; i++) {
      // Sorted, a prefix that starts another sorts right before it (or before a run of such).
      if (overlapping(mounts[i]!.prefix, mounts[i - 1]!.prefix)) {
        throw new ShardMapError('prefix-overlap', `store "${mounts[i]!.name}" (prefix ${hex(mounts[i]!.prefix)}) lies inside store "${mounts[i - 1]!.name}" (prefix ${hex(mounts[i - 1]!.prefix)})`);
      }
    }
    const byId = new Map<number, ShardDef>();
    const perStore = new Map<string, ShardDef[]>();
    for (const shard of shards) {
      checkShardId(shard.id);
      if (byId.has(shard.id)) throw new ShardMapError('shard-exists', `shard ${shard.id} appears twice`);
      if (!byName.has(shard.store)) throw new ShardMapError('unknown-store', `shard ${shard.id} names store "${shard.store}", which the map lacks`);
      if (!Number.isSafeInteger(shard.epoch) || shard.epoch <= 0) throw new ShardMapError('bad-epoch', `shard ${shard.id}: an epoch is a positive safe integer, got ${shard.epoch}`);
      checkReplicas(shard.replicas);
      // Frozen copies: lookups hand these out (their key bytes must not be written to).
      const copy: ShardDef = Object.freeze({
        id: shard.id,
        store: shard.store,
        start: Uint8Array.from(shard.start),
        end: shard.end === undefined ? undefined : Uint8Array.from(shard.end),
        epoch: shard.epoch,
        replicas: Object.freeze([...shard.replicas]),
      });
      byId.set(copy.id, copy);
      let list = perStore.get(copy.store);
      if (list === undefined) perStore.set(copy.store, (list = []));
      list.push(copy);
    }
    for (const store of byName.values()) {
      const list = (perStore.get(store.name) ?? []).sort((a, b) => compareKeys(a.start, b.start));
      if (list.length > shardsPerStoreMax) throw new ShardMapError('too-many-shards', `store "${store.name}" has ${list.length} shards, at most ${shardsPerStoreMax}`);
      checkTiling(store, list);
      perStore.set(store.name, list);
    }
    this.storesByName = byName;
    this.shardsById = byId;
    this.table = flatTable(perStore.get(DEFAULT_STORE)!, mounts.map((m) => perStore.get(m.name)!));
    const owning = new Set(this.table.map((interval) => interval.shard.id));
    for (const shard of perStore.get(DEFAULT_STORE)!) {
      if (!owning.has(shard.id)) throw new ShardMapError('empty-shard', `shard ${shard.id} of the default store would own no key: mounts cover all of [${hex(shard.start)}, ${hex(shard.end)})`);
    }
    if (!Number.isSafeInteger(highestShardId) || highestShardId < 0) throw new ShardMapError('bad-shard-id', `the highest shard id given out must be a safe integer >= 0, got ${highestShardId}`);
    this.highestShardId = Math.max(highestShardId, ...byId.keys());
  }

  /** A map with the default store alone, as one shard over every key (replicas none: every member). */
  static initial(shardId: number, replicas: readonly number[] = []): ShardMap {
    return new ShardMap([{ name: DEFAULT_STORE, prefix: new Uint8Array(0) }], [{ id: shardId, store: DEFAULT_STORE, start: new Uint8Array(0), end: undefined, epoch: 1, replicas }]);
  }

  stores(): StoreDef[] {
    return [...this.storesByName.values()].sort((a, b) => compareKeys(a.prefix, b.prefix));
  }

  store(name: string): StoreDef | undefined {
    return this.storesByName.get(name);
  }

  shard(id: number): ShardDef | undefined {
    return this.shardsById.get(id);
  }

  /** Every shard, by store then by start. */
  shards(): ShardDef[] {
    return [...this.shardsById.values()].sort((a, b) => (a.store === b.store ? compareKeys(a.start, b.start) : a.store < b.store ? -1 : 1));
  }

  /** A store's shards by start. */
  shardsOf(store: string): ShardDef[] {
    if (!this.storesByName.has(store)) throw new ShardMapError('unknown-store', `no store "${store}"`);
    return [...this.shardsById.values()].filter((s) => s.store === store).sort((a, b) => compareKeys(a.start, b.start));
  }

  /** The store that owns `key`. */
  storeForKey(key: Uint8Array): StoreDef {
    return this.storesByName.get(this.shardForKey(key).store)!;
  }

  /** The shard that owns `key`. */
  shardForKey(key: Uint8Array): ShardDef {
    return this.table[this.intervalOf(key)]!.shard;
  }

  /**
   * The shards that serve the keys of `[key, end)` (`end` undefined: every key from `key` on), in
   * key order, each with the part of the range it serves; neighbouring parts of one shard are one
   * piece. Empty when the range is.
   */
  piecesOfRange(key: Uint8Array, end: Uint8Array | undefined): RangePiece[] {
    const pieces: RangePiece[] = [];
    if (!below(key, end)) return pieces;
    for (let i = this.intervalOf(key); i < this.table.length; i++) {
      const interval = this.table[i]!;
      const start = i === 0 || compareKeys(interval.start, key) < 0 ? key : interval.start;
      if (!below(start, end)) break;
      const next = this.table[i + 1]?.start;
      const pieceEnd = next === undefined || !below(next, end) ? end : next;
      const last = pieces[pieces.length - 1];
      if (last !== undefined && last.shard.id === interval.shard.id) pieces[pieces.length - 1] = { shard: last.shard, start: last.start, end: pieceEnd };
      else pieces.push({ shard: interval.shard, start, end: pieceEnd });
    }
    return pieces;
  }

  /**
   * Mounts store `name` on `prefix` as shards `shardIds` (one per id; more than one splits the
   * prefix's key range evenly by the byte after the prefix), each with `replicas` (one list for
   * every shard, or one per shard in id order).
   */
  mount(name: string, prefix: Uint8Array, shardIds: readonly number[], replicas: readonly number[] | ReadonlyArray<readonly number[]>): ShardMap {
    checkStoreName(name);
    if (this.storesByName.has(name)) throw new ShardMapError('store-exists', `store "${name}" exists`);
    if (prefix.length === 0) throw new ShardMapError('bad-prefix', `store "${name}" needs a non-empty prefix`);
    for (const store of this.storesByName.values()) {
      if (store.name !== DEFAULT_STORE && overlapping(prefix, store.prefix)) {
        throw new ShardMapError('prefix-overlap', `prefix ${hex(prefix)} overlaps store "${store.name}" (prefix ${hex(store.prefix)})`);
      }
    }
    if (shardIds.length === 0 || shardIds.length > mountShardsMax) throw new ShardMapError('bad-shard-count', `a store starts with 1 to ${mountShardsMax} shards, got ${shardIds.length}`);
    for (const id of shardIds) this.checkNewShardId(id);
    if (new Set(shardIds).size !== shardIds.length) throw new ShardMapError('shard-exists', 'a shard id appears twice');
    const bounds = evenBounds(prefix, shardIds.length);
    const perShard = (i: number): readonly number[] => (replicas.length > 0 && Array.isArray(replicas[0]) ? (replicas as ReadonlyArray<readonly number[]>)[i]! : (replicas as readonly number[]));
    const added: ShardDef[] = shardIds.map((id, i) => ({ id, store: name, start: bounds[i]!, end: bounds[i + 1], epoch: 1, replicas: perShard(i) }));
    return new ShardMap([...this.storesByName.values(), { name, prefix }], [...this.shardsById.values(), ...added], this.highestShardId);
  }

  /** Removes store `name` and its shards (their keys fall back to the default store's). */
  drop(name: string): ShardMap {
    if (name === DEFAULT_STORE) throw new ShardMapError('default-store', 'the default store cannot be dropped');
    if (!this.storesByName.has(name)) throw new ShardMapError('unknown-store', `no store "${name}"`);
    return new ShardMap(
      [...this.storesByName.values()].filter((s) => s.name !== name),
      [...this.shardsById.values()].filter((s) => s.store !== name),
      this.highestShardId,
    );
  }

  /**
   * Splits shard `id` at `at`: it keeps `[start, at)`, a new shard `childId` (same replicas) takes
   * `[at, end)`; both get the parent's epoch + 1. `at` must lie strictly inside the shard.
   */
  split(id: number, at: Uint8Array, childId: number): ShardMap {
    const parent = this.shardsById.get(id);
    if (parent === undefined) throw new ShardMapError('unknown-shard', `no shard ${id}`);
    this.checkNewShardId(childId);
    if (at.length > splitKeyBytesMax) throw new ShardMapError('bad-split-key', `a split key is at most ${splitKeyBytesMax} bytes, got ${at.length}`);
    if (!(compareKeys(parent.start, at) < 0 && below(at, parent.end))) {
      throw new ShardMapError('bad-split-key', `split key ${hex(at)} is not strictly inside shard ${id} [${hex(parent.start)}, ${hex(parent.end)})`);
    }
    const epoch = parent.epoch + 1;
    const left: ShardDef = { ...parent, end: at, epoch };
    const right: ShardDef = { ...parent, id: childId, start: at, epoch };
    return new ShardMap([...this.storesByName.values()], [...[...this.shardsById.values()].filter((s) => s.id !== id), left, right], this.highestShardId);
  }

  /**
   * Undoes the split that made `childId` from `parentId`: the parent takes the child's range back
   * (`[parent's start, child's end)`) at an epoch above both, and the child leaves the map (its id
   * stays given out). The child must start where the parent ends, in the same store.
   */
  unsplit(parentId: number, childId: number): ShardMap {
    const parent = this.shardsById.get(parentId);
    const child = this.shardsById.get(childId);
    if (parent === undefined || child === undefined) throw new ShardMapError('unknown-shard', `no shard ${parent === undefined ? parentId : childId}`);
    if (parent.store !== child.store || parent.end === undefined || compareKeys(parent.end, child.start) !== 0) {
      throw new ShardMapError('bad-tiling', `shard ${childId} [${hex(child.start)}, ${hex(child.end)}) does not follow shard ${parentId} [${hex(parent.start)}, ${hex(parent.end)}) in one store`);
    }
    const merged: ShardDef = { ...parent, end: child.end, epoch: Math.max(parent.epoch, child.epoch) + 1 };
    return new ShardMap([...this.storesByName.values()], [...[...this.shardsById.values()].filter((s) => s.id !== parentId && s.id !== childId), merged], this.highestShardId);
  }

  /** Shard `id` with `replicas` instead (a replica move), its epoch raised. */
  withReplicas(id: number, replicas: readonly number[]): ShardMap {
    const shard = this.shardsById.get(id);
    if (shard === undefined) throw new ShardMapError('unknown-shard', `no shard ${id}`);
    return new ShardMap([...this.storesByName.values()], [...[...this.shardsById.values()].filter((s) => s.id !== id), { ...shard, replicas, epoch: shard.epoch + 1 }], this.highestShardId);
  }

  /** A new shard's id: valid, and larger than every id given out before (ids are never reused). */
  private checkNewShardId(id: number): void {
    checkShardId(id);
    if (id <= this.highestShardId) throw new ShardMapError('shard-exists', `shard ids are never reused: ${id} is not above ${this.highestShardId}, the highest given out`);
  }

  private intervalOf(key: Uint8Array): number {
    // The last interval whose start is <= key (the first starts at the empty key).
    let lo = 0;
    let hi = this.table.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (compareKeys(this.table[mid]!.start, key) <= 0) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

/** A store's shards, sorted by start, must tile its key range exactly. */
function checkTiling(store: StoreDef, shards: readonly ShardDef[]): void {
  if (shards.length === 0) throw new ShardMapError('bad-tiling', `store "${store.name}" has no shard`);
  const storeEnd = store.prefix.length === 0 ? undefined : prefixEndOf(store.prefix);
  let expected: Uint8Array | undefined = store.prefix;
  for (const shard of shards) {
    if (expected === undefined || compareKeys(shard.start, expected) !== 0) {
      throw new ShardMapError('bad-tiling', `store "${store.name}": shard ${shard.id} starts at ${hex(shard.start)}, expected ${hex(expected)}`);
    }
    if (!below(shard.start, shard.end)) throw new ShardMapError('bad-tiling', `shard ${shard.id}: empty range [${hex(shard.start)}, ${hex(shard.end)})`);
    expected = shard.end;
  }
  if (!sameEnd(expected, storeEnd)) {
    throw new ShardMapError('bad-tiling', `store "${store.name}": its last shard ends at ${hex(expected)}, the store at ${hex(storeEnd)}`);
  }
}

/** `n` + 1 bounds from `prefix` to its end, cut by the byte after the prefix (n ≤ `mountShardsMax`). */
function evenBounds(prefix: Uint8Array, n: number): Array<Uint8Array | undefined> {
  const bounds: Array<Uint8Array | undefined> = [Uint8Array.from(prefix)];
  for (let i = 1; i < n; i++) {
    const key = new Uint8Array(prefix.length + 1);
    key.set(prefix);
    key[prefix.length] = Math.floor((i * byteValues) / n);
    bounds.push(key);
  }
  bounds.push(prefixEndOf(prefix));
  return bounds;
}

/**
 * The disjoint intervals of the whole key space: each mount's shards as they are, and the default
 * store's shards minus the mounts' ranges. Mounts are sorted and disjoint.
 */
function flatTable(defaults: readonly ShardDef[], mounts: ReadonlyArray<readonly ShardDef[]>): Interval[] {
  const table: Interval[] = [];
  const push = (start: Uint8Array, shard: ShardDef): void => {
    // Neighbouring intervals of one shard are one interval.
    if (table[table.length - 1]?.shard.id !== shard.id) table.push({ start, shard });
  };
  // The first key not yet placed (undefined: every key is); it only ever lands on a shard's
  // bound or a mount's start or end, never inside a mount.
  let cursor: Uint8Array | undefined = new Uint8Array(0);
  let d = 0;
  let m = 0;
  while (cursor !== undefined) {
    while (!below(cursor, defaults[d]!.end)) d++;
    const mount = mounts[m];
    if (mount !== undefined && compareKeys(mount[0]!.start, cursor) === 0) {
      for (const shard of mount) push(shard.start, shard);
      cursor = mount[mount.length - 1]!.end;
      m++;
      continue;
    }
    const shard = defaults[d]!;
    push(cursor, shard);
    const nextMount = mount?.[0]!.start;
    cursor = nextMount !== undefined && below(nextMount, shard.end) ? nextMount : shard.end;
  }
  return table;
}

// ---- Wire form --------------------------------------------------------------------------------

/** The encoding's format byte; a decoder refuses any other. */
const SHARD_MAP_FORMAT = 1;

/**
 * The map as bytes, for the meta shard's state and snapshots: format u8 | highest shard id u64 |
 * stores u32 | per store: name length u8, name (UTF-8), prefix length u32, prefix | shards u32 | per
 * shard: id u64, store index u32 (into the stores above), start length u32, start, has end u8
 * (0 or 1), [end length u32, end], epoch u64, replicas u8, replica ids u64 each. Integers are
 * big-endian; stores in name order, shards by store then start, so equal maps encode equally.
 */
export function encodeShardMap(map: ShardMap): Uint8Array {
  const names = new TextEncoder();
  const stores = [...map.stores()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const storeIndex = new Map(stores.map((s, i) => [s.name, i]));
  const shards = map.shards();
  const parts: Uint8Array[] = [];
  let size = 0;
  const head = new DataView(new ArrayBuffer(13));
  head.setUint8(0, SHARD_MAP_FORMAT);
  head.setBigUint64(1, BigInt(map.highestShardId));
  head.setUint32(9, stores.length);
  const push = (bytes: Uint8Array): void => {
    parts.push(bytes);
    size += bytes.length;
  };
  const u32 = (n: number): Uint8Array => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, n);
    return b;
  };
  const u64 = (n: number): Uint8Array => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(n));
    return b;
  };
  push(new Uint8Array(head.buffer));
  for (const store of stores) {
    const name = names.encode(store.name);
    push(Uint8Array.of(name.length));
    push(name);
    push(u32(store.prefix.length));
    push(store.prefix);
  }
  push(u32(shards.length));
  for (const shard of shards) {
    push(u64(shard.id));
    push(u32(storeIndex.get(shard.store)!));
    push(u32(shard.start.length));
    push(shard.start);
    if (shard.end === undefined) push(Uint8Array.of(0));
    else {
      push(Uint8Array.of(1));
      push(u32(shard.end.length));
      push(shard.end);
    }
    push(u64(shard.epoch));
    push(Uint8Array.of(shard.replicas.length));
    for (const id of shard.replicas) push(u64(id));
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** The map `encodeShardMap` wrote; anything else is refused with `bad-encoding` (or the map's own check). */
export function decodeShardMap(bytes: Uint8Array): ShardMap {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const need = (n: number, what: string): void => {
    if (at + n > bytes.length) throw new ShardMapError('bad-encoding', `shard map: truncated in ${what} at byte ${at}`);
  };
  const u8 = (what: string): number => {
    need(1, what);
    return view.getUint8(at++);
  };
  const u32 = (what: string): number => {
    need(4, what);
    const n = view.getUint32(at);
    at += 4;
    return n;
  };
  const u64 = (what: string): number => {
    need(8, what);
    const n = view.getBigUint64(at);
    at += 8;
    if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new ShardMapError('bad-encoding', `shard map: ${what} ${n} is over the safe integers`);
    return Number(n);
  };
  const take = (n: number, what: string): Uint8Array => {
    need(n, what);
    const out = bytes.slice(at, at + n);
    at += n;
    return out;
  };
  const format = u8('format');
  if (format !== SHARD_MAP_FORMAT) throw new ShardMapError('bad-encoding', `shard map: format ${format} is not ${SHARD_MAP_FORMAT}`);
  const highest = u64('highest shard id');
  const storeCount = u32('store count');
  if (storeCount > storesMax) throw new ShardMapError('too-many-stores', `shard map: ${storeCount} stores, at most ${storesMax}`);
  const names = new TextDecoder('utf-8', { fatal: true });
  const stores: StoreDef[] = [];
  for (let i = 0; i < storeCount; i++) {
    const nameBytes = take(u8('store name length'), 'store name');
    let name: string;
    try {
      name = names.decode(nameBytes);
    } catch {
      throw new ShardMapError('bad-encoding', `shard map: store ${i}'s name is not UTF-8`);
    }
    const prefixLength = u32('prefix length');
    if (prefixLength > storePrefixBytesMax) throw new ShardMapError('bad-prefix', `shard map: a prefix of ${prefixLength} bytes, at most ${storePrefixBytesMax}`);
    stores.push({ name, prefix: take(prefixLength, 'prefix') });
  }
  const shardCount = u32('shard count');
  if (shardCount > storesMax * shardsPerStoreMax) throw new ShardMapError('too-many-shards', `shard map: ${shardCount} shards`);
  const shards: ShardDef[] = [];
  for (let i = 0; i < shardCount; i++) {
    const id = u64('shard id');
    const storeAt = u32('store index');
    const store = stores[storeAt];
    if (store === undefined) throw new ShardMapError('bad-encoding', `shard map: shard ${id} names store ${storeAt} of ${stores.length}`);
    const start = take(u32('start length'), 'start');
    const hasEnd = u8('end flag');
    if (hasEnd > 1) throw new ShardMapError('bad-encoding', `shard map: end flag ${hasEnd}`);
    const end = hasEnd === 1 ? take(u32('end length'), 'end') : undefined;
    const epoch = u64('epoch');
    const replicaCount = u8('replica count');
    if (replicaCount > replicasMax) throw new ShardMapError('bad-replicas', `shard map: shard ${id} has ${replicaCount} replicas, at most ${replicasMax}`);
    const replicas: number[] = [];
    for (let r = 0; r < replicaCount; r++) replicas.push(u64('replica id'));
    shards.push({ id, store: store.name, start, end, epoch, replicas });
  }
  if (at !== bytes.length) throw new ShardMapError('bad-encoding', `shard map: ${bytes.length - at} bytes after the end`);
  return new ShardMap(stores, shards, highest);
}
