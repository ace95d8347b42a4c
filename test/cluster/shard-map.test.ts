/**
 * The shard map: every key has exactly one owner whatever mounts, drops and splits built the map
 * (checked against a naive scan of the stores and shards), range pieces cover a range exactly
 * and in order, and bad changes are refused with their code, leaving the map as it was.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_STORE,
  type ShardDef,
  ShardMap,
  ShardMapError,
  type ShardMapErrorCode,
  compareKeys,
  decodeShardMap,
  encodeShardMap,
  mountShardsMax,
  prefixEndOf,
  replicasMax,
  splitKeyBytesMax,
  storeNameBytesMax,
  storePrefixBytesMax,
} from '../../src/cluster/index.js';

const bytes = (...b: number[]) => Uint8Array.from(b);
const text = (s: string) => new TextEncoder().encode(s);
const REPLICAS = [11, 12, 13];

/** What shardForKey must say, by the definitions alone. */
function naiveOwner(map: ShardMap, key: Uint8Array): ShardDef {
  const mount = map.stores().find((s) => s.prefix.length > 0 && s.prefix.every((b, i) => key[i] === b) && key.length >= s.prefix.length);
  const store = mount?.name ?? DEFAULT_STORE;
  const owners = map.shardsOf(store).filter((s) => compareKeys(s.start, key) <= 0 && (s.end === undefined || compareKeys(key, s.end) < 0));
  expect(owners).toHaveLength(1);
  return owners[0]!;
}

function refused(code: ShardMapErrorCode, change: () => unknown): void {
  let error: unknown;
  try {
    change();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(ShardMapError);
  expect((error as ShardMapError).code).toBe(code);
}

const keyArb = fc.uint8Array({ minLength: 0, maxLength: 4, max: 6 }).map((k) => k.map((b) => [0, 1, 2, 0x7f, 0x80, 0xfe, 0xff][b]!));

type Op = { kind: 'mount'; prefix: Uint8Array; shards: number } | { kind: 'drop'; pick: number } | { kind: 'split'; pick: number; at: Uint8Array };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('mount' as const), prefix: keyArb.filter((k) => k.length > 0), shards: fc.integer({ min: 1, max: 5 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('drop' as const), pick: fc.nat() }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('split' as const), pick: fc.nat(), at: keyArb }) },
);

/** Applies what it can of `ops` (a refused change must leave the map unchanged). */
/** Everything a map says, as plain data. */
function contents(map: ShardMap): unknown {
  return { stores: map.stores().map((s) => ({ ...s, prefix: [...s.prefix] })), shards: map.shards().map((s) => ({ ...s, start: [...s.start], end: s.end && [...s.end] })), highest: map.highestShardId };
}

function build(ops: readonly Op[]): ShardMap {
  let map = ShardMap.initial(1, REPLICAS);
  let nextId = 2;
  let stores = 0;
  for (const op of ops) {
    const before = contents(map);
    try {
      if (op.kind === 'mount') map = map.mount(`s${stores++}`, op.prefix, Array.from({ length: op.shards }, () => nextId++), REPLICAS);
      else if (op.kind === 'drop') {
        const names = map.stores().map((s) => s.name);
        map = map.drop(names[op.pick % names.length]!);
      } else {
        const shards = map.shards();
        map = map.split(shards[op.pick % shards.length]!.id, op.at, nextId++);
      }
    } catch (error) {
      expect(error).toBeInstanceOf(ShardMapError);
      expect(contents(map)).toEqual(before);
    }
  }
  return map;
}

describe('the shard map', () => {
  it('gives every key exactly the owner the definitions give, whatever built the map', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 25 }), fc.array(keyArb, { minLength: 1, maxLength: 40 }), (ops, keys) => {
        const map = build(ops);
        for (const key of keys) expect(map.shardForKey(key).id).toBe(naiveOwner(map, key).id);
        for (const shard of map.shards()) {
          // Every shard owns its own start, unless a mount covers it (a cut default shard), and
          // every default shard owns some key.
          if (shard.store !== DEFAULT_STORE || map.storeForKey(shard.start).name === DEFAULT_STORE) expect(map.shardForKey(shard.start).id).toBe(shard.id);
          else expect(map.piecesOfRange(shard.start, shard.end).some((p) => p.shard.id === shard.id)).toBe(true);
        }
      }),
      { numRuns: 400 },
    );
  });

  it('cuts a range into pieces that cover it exactly, in key order, one shard per stretch', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 25 }), keyArb, fc.option(keyArb, { nil: undefined }), fc.array(keyArb, { maxLength: 40 }), (ops, from, to, probes) => {
        const map = build(ops);
        const pieces = map.piecesOfRange(from, to);
        const empty = to !== undefined && compareKeys(from, to) >= 0;
        expect(pieces.length === 0).toBe(empty);
        if (empty) return;
        expect(compareKeys(pieces[0]!.start, from)).toBe(0);
        const lastEnd = pieces[pieces.length - 1]!.end;
        expect(lastEnd === undefined ? to === undefined : to !== undefined && compareKeys(lastEnd, to) === 0).toBe(true);
        for (let i = 0; i < pieces.length; i++) {
          const p = pieces[i]!;
          expect(p.end === undefined || compareKeys(p.start, p.end) < 0).toBe(true);
          if (i > 0) {
            expect(compareKeys(pieces[i - 1]!.end!, p.start)).toBe(0);
            expect(pieces[i - 1]!.shard.id).not.toBe(p.shard.id);
          }
          expect(map.shardForKey(p.start).id).toBe(p.shard.id);
        }
        for (const key of probes) {
          const inside = compareKeys(from, key) <= 0 && (to === undefined || compareKeys(key, to) < 0);
          const piece = pieces.find((p) => compareKeys(p.start, key) <= 0 && (p.end === undefined || compareKeys(key, p.end) < 0));
          expect(piece !== undefined).toBe(inside);
          if (piece !== undefined) expect(piece.shard.id).toBe(map.shardForKey(key).id);
        }
      }),
      { numRuns: 400 },
    );
  });

  it('a split raises both halves to the parent epoch + 1 and keeps every other shard as it was', () => {
    const map = ShardMap.initial(1, REPLICAS).mount('users', text('/users/'), [2, 3], REPLICAS);
    const split = map.split(2, text('/users/m'), 9);
    expect(split.shard(2)).toMatchObject({ start: text('/users/'), end: text('/users/m'), epoch: 2, replicas: REPLICAS });
    expect(split.shard(9)).toMatchObject({ store: 'users', start: text('/users/m'), end: bytes(...text('/users/'), 0x80), epoch: 2 });
    expect(split.shard(3)).toEqual(map.shard(3));
    expect(split.shard(1)).toEqual(map.shard(1));
    expect(split.shardForKey(text('/users/zed')).id).toBe(9);
    expect(split.shardForKey(bytes(...text('/users/'), 0x80)).id).toBe(3);
    expect(split.shardForKey(text('/users/nora')).id).toBe(9);
    expect(split.shardForKey(text('/users/alice')).id).toBe(2);
    expect(split.shardForKey(text('/userz')).id).toBe(1);
    const moved = split.withReplicas(9, [11, 12, 14]);
    expect(moved.shard(9)).toMatchObject({ epoch: 3, replicas: [11, 12, 14] });
  });

  it('mounts a store with n shards cut evenly by the byte after the prefix; dropping it gives its keys back to the default store', () => {
    const map = ShardMap.initial(1, REPLICAS).mount('cfg', text('/cfg/'), [2, 3, 4, 5], REPLICAS);
    const cfg = (...tail: number[]) => bytes(...text('/cfg/'), ...tail);
    expect(map.shardsOf('cfg').map((s) => [s.start, s.end])).toEqual([
      [text('/cfg/'), cfg(0x40)],
      [cfg(0x40), cfg(0x80)],
      [cfg(0x80), cfg(0xc0)],
      [cfg(0xc0), text('/cfg0')],
    ]);
    expect(map.shardForKey(text('/cfg/')).id).toBe(2);
    expect(map.shardForKey(cfg(0x3f, 0xff)).id).toBe(2);
    expect(map.shardForKey(cfg(0x40)).id).toBe(3);
    expect(map.shardForKey(cfg(0xff)).id).toBe(5);
    expect(map.storeForKey(text('/cfg/a')).name).toBe('cfg');
    expect(map.storeForKey(text('/cfh')).name).toBe(DEFAULT_STORE);
    const dropped = map.drop('cfg');
    expect(dropped.shardForKey(text('/cfg/a')).id).toBe(1);
    expect(dropped.shards().map((s) => s.id)).toEqual([1]);
  });

  it('a range over the default store that crosses a mount comes in three pieces', () => {
    const map = ShardMap.initial(1, REPLICAS).mount('m', text('b'), [2], REPLICAS);
    const dec = (k: Uint8Array | undefined) => (k === undefined ? undefined : new TextDecoder().decode(k));
    // The mount is [b, c): a range that ends at c has nothing of the default store after it.
    expect(map.piecesOfRange(text('a'), text('c')).map((p) => [p.shard.id, dec(p.start), dec(p.end)])).toEqual([
      [1, 'a', 'b'],
      [2, 'b', 'c'],
    ]);
    const wider = map.piecesOfRange(text('a'), text('d'));
    expect(wider.map((p) => p.shard.id)).toEqual([1, 2, 1]);
    expect(wider[2]!.start).toEqual(text('c'));
    expect(wider[2]!.end).toEqual(text('d'));
  });

  it('a mount whose prefix is all 0xff runs to the end of the key space', () => {
    const map = ShardMap.initial(1, REPLICAS).mount('top', bytes(0xff, 0xff), [2], REPLICAS);
    expect(prefixEndOf(bytes(0xff, 0xff))).toBeUndefined();
    expect(map.shard(2)!.end).toBeUndefined();
    expect(map.shardForKey(bytes(0xff, 0xff, 0, 1)).id).toBe(2);
    expect(map.shardForKey(bytes(0xff, 0xfe, 0xff)).id).toBe(1);
    expect(map.piecesOfRange(bytes(0xff), undefined).map((p) => p.shard.id)).toEqual([1, 2]);
  });

  it('refuses bad changes with a stable code and keeps the map as it was', () => {
    const map = ShardMap.initial(1, REPLICAS).mount('users', text('/users/'), [2], REPLICAS);
    refused('prefix-overlap', () => map.mount('inner', text('/users/admins/'), [3], REPLICAS));
    refused('prefix-overlap', () => map.mount('outer', text('/us'), [3], REPLICAS));
    refused('prefix-overlap', () => map.mount('same', text('/users/'), [3], REPLICAS));
    refused('store-exists', () => map.mount('users', text('/other/'), [3], REPLICAS));
    refused('bad-prefix', () => map.mount('empty', new Uint8Array(0), [3], REPLICAS));
    refused('bad-store-name', () => map.mount('Bad Name', text('/x/'), [3], REPLICAS));
    refused('bad-store-name', () => map.mount('', text('/x/'), [3], REPLICAS));
    refused('shard-exists', () => map.mount('x', text('/x/'), [2], REPLICAS));
    refused('bad-shard-id', () => map.mount('x', text('/x/'), [0], REPLICAS));
    refused('bad-shard-count', () => map.mount('x', text('/x/'), [], REPLICAS));
    refused('bad-shard-count', () => map.mount('x', text('/x/'), Array.from({ length: mountShardsMax + 1 }, (_, i) => 10 + i), REPLICAS));
    refused('shard-exists', () => map.mount('x', text('/x/'), [3, 3], REPLICAS));
    refused('bad-prefix', () => map.mount('x', new Uint8Array(storePrefixBytesMax + 1).fill(0x61), [3], REPLICAS));
    refused('bad-store-name', () => map.mount('a'.repeat(storeNameBytesMax + 1), text('/x/'), [3], REPLICAS));
    refused('bad-replicas', () => map.mount('x', text('/x/'), [3], Array.from({ length: replicasMax + 1 }, (_, i) => i + 1)));
    refused('bad-split-key', () => map.split(1, new Uint8Array(splitKeyBytesMax + 1).fill(0x61), 8));
    // No list: every member hosts a replica.
    expect(map.mount('x', text('/x/'), [3], []).shard(3)!.replicas).toEqual([]);
    refused('bad-replicas', () => map.mount('x', text('/x/'), [3], [11, 11]));
    refused('default-store', () => map.drop(DEFAULT_STORE));
    refused('unknown-store', () => map.drop('nope'));
    refused('unknown-shard', () => map.split(7, text('a'), 8));
    refused('bad-split-key', () => map.split(2, text('/users/'), 8));
    refused('bad-split-key', () => map.split(2, text('/usert'), 8));
    refused('bad-split-key', () => map.split(2, text('/uses'), 8));
    refused('bad-split-key', () => map.split(1, new Uint8Array(0), 8));
    refused('shard-exists', () => map.split(1, text('m'), 2));
    refused('unknown-shard', () => map.withReplicas(9, REPLICAS));
    expect(map.stores().map((s) => s.name)).toEqual([DEFAULT_STORE, 'users']);
    expect(map.shards().map((s) => s.id)).toEqual([1, 2]);
  });

  it('refuses a map whose shards do not tile their store', () => {
    const d = { name: DEFAULT_STORE, prefix: new Uint8Array(0) };
    const whole = { id: 1, store: DEFAULT_STORE, start: new Uint8Array(0), end: undefined, epoch: 1, replicas: REPLICAS };
    refused('default-store', () => new ShardMap([], []));
    refused('bad-tiling', () => new ShardMap([d], []));
    refused('bad-tiling', () => new ShardMap([d], [{ ...whole, end: text('m') }]));
    refused('bad-tiling', () => new ShardMap([d], [{ ...whole, end: text('m') }, { ...whole, id: 2, start: text('n') }]));
    refused('bad-tiling', () => new ShardMap([d], [{ ...whole, end: text('m') }, { ...whole, id: 2, start: text('l') }]));
    refused('bad-epoch', () => new ShardMap([d], [{ ...whole, epoch: 0 }]));
    refused('unknown-store', () => new ShardMap([d], [whole, { ...whole, id: 2, store: 'x' }]));
    refused('bad-prefix', () => new ShardMap([d, { name: 'x', prefix: new Uint8Array(0) }], [whole]));
    refused('store-exists', () => new ShardMap([d, d], [whole]));
    expect(new ShardMap([d], [{ ...whole, end: text('m') }, { ...whole, id: 2, start: text('m') }]).shardForKey(text('z')).id).toBe(2);
  });

  it('takes Buffers as they come from gRPC, without writing to them', () => {
    const prefix = Buffer.from('/cfg/');
    expect(prefixEndOf(prefix)).toEqual(text('/cfg0'));
    const map = ShardMap.initial(1, REPLICAS).mount('cfg', prefix, [2, 3], REPLICAS);
    expect(prefix.toString()).toBe('/cfg/');
    const at = Buffer.from('/cfg/a');
    const split = map.split(2, at, 4);
    at[0] = 0x41;
    expect(split.shard(4)!.start).toEqual(text('/cfg/a'));
    expect(split.shardForKey(Buffer.from('/cfg/b')).id).toBe(4);
  });

  it('never gives out a shard id twice, dropped shards included', () => {
    const map = ShardMap.initial(1, REPLICAS).mount('a', text('/a/'), [5], REPLICAS).withReplicas(5, [11, 12]).drop('a');
    expect(map.highestShardId).toBe(5);
    refused('shard-exists', () => map.split(1, text('z'), 5));
    refused('shard-exists', () => map.mount('b', text('/b/'), [4], REPLICAS));
    expect(map.split(1, text('z'), 6).shard(6)!.epoch).toBe(2);
    expect(new ShardMap(map.stores(), map.shards(), 9).mount('b', text('/b/'), [10], REPLICAS).highestShardId).toBe(10);
    refused('bad-shard-id', () => new ShardMap(map.stores(), map.shards(), -1));
  });

  it('hands out frozen records', () => {
    const map = ShardMap.initial(1, REPLICAS);
    expect(Object.isFrozen(map.shard(1))).toBe(true);
    expect(Object.isFrozen(map.shard(1)!.replicas)).toBe(true);
    expect(Object.isFrozen(map.store(DEFAULT_STORE))).toBe(true);
  });

  it('refuses a change that would leave a default-store shard no key of its own', () => {
    const map = ShardMap.initial(1, REPLICAS).mount('b', text('b'), [2], REPLICAS);
    // [b, c) is the mount's: a default shard there would own nothing.
    refused('empty-shard', () => map.split(1, text('b'), 3).split(3, text('c'), 4));
    const cut = map.split(1, text('a'), 3).split(3, text('bz'), 4);
    expect(cut.piecesOfRange(new Uint8Array(0), undefined).map((p) => p.shard.id)).toEqual([1, 3, 2, 4]);
    refused('empty-shard', () => ShardMap.initial(1, REPLICAS).split(1, text('b'), 2).split(2, text('c'), 3).mount('b', text('b'), [4], REPLICAS));
  });

  it('cuts a store of 3 shards at 0x55 and 0xaa; an epoch past the safe integers is refused', () => {
    const map = ShardMap.initial(1, REPLICAS).mount('t', text('t'), [2, 3, 4], REPLICAS);
    expect(map.shardsOf('t').map((s) => s.start)).toEqual([text('t'), bytes(0x74, 0x55), bytes(0x74, 0xaa)]);
    const old = new ShardMap(map.stores(), map.shards().map((s) => (s.id === 2 ? { ...s, epoch: Number.MAX_SAFE_INTEGER } : s)));
    refused('bad-epoch', () => old.split(2, bytes(0x74, 0x10), 5));
  });
});

describe('the shard map as bytes', () => {
  it('decodes to what was encoded, and equal maps encode equally', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 25 }), (ops) => {
        const map = build(ops);
        const bytes = encodeShardMap(map);
        const back = decodeShardMap(bytes);
        expect(contents(back)).toEqual(contents(map));
        expect(encodeShardMap(back)).toEqual(bytes);
      }),
      { numRuns: 200 },
    );
  });

  it('refuses every truncation, trailing bytes, another format, and garbage, with a ShardMapError only', () => {
    const map = ShardMap.initial(1, REPLICAS).mount('users', text('/users/'), [2, 3], REPLICAS).split(1, text('m'), 4);
    const bytes = encodeShardMap(map);
    for (let n = 0; n < bytes.length; n++) refused('bad-encoding', () => decodeShardMap(bytes.subarray(0, n)));
    refused('bad-encoding', () => decodeShardMap(Uint8Array.from([...bytes, 0])));
    refused('bad-encoding', () => decodeShardMap(Uint8Array.from([2, ...bytes.subarray(1)])));
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(), fc.integer({ min: 0, max: 255 }), (garbage, at, value) => {
        for (const input of [garbage, Uint8Array.from(bytes).fill(value, at % bytes.length, (at % bytes.length) + 1)]) {
          try {
            decodeShardMap(input);
          } catch (error) {
            expect(error).toBeInstanceOf(ShardMapError);
          }
        }
      }),
      { numRuns: 500 },
    );
  });
});
