/**
 * The client's routing table agrees with the server's shard map: for maps built by random mounts
 * and splits (the default store's shards too) and random keys, the table names the shard the map
 * names, from ShardList's view of the map alone. And a txn is routed by its first key.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ShardMap } from '../../src/cluster/index.js';
import { ShardRoutes } from '../../src/client/shard-routes.js';
import type { ShardInfo } from '../../src/client/shards.js';
import { compare, op } from '../../src/client/index.js';
import { txnRequest, txnRouteKey } from '../../src/client/txn.js';

/** The map as ShardList lists it (the meta shard first, as the server adds it). */
function listed(map: ShardMap): ShardInfo[] {
  const meta: ShardInfo = { id: 0, store: '(meta)', start: Buffer.alloc(0), end: Buffer.alloc(0), epoch: 0, replicas: [], leader: 1n, raftTerm: 1 };
  return [
    meta,
    ...map.shards().map((s) => ({ id: s.id, store: s.store, start: Buffer.from(s.start), end: s.end === undefined ? undefined : Buffer.from(s.end), epoch: s.epoch, replicas: [], leader: BigInt(s.id + 100), raftTerm: s.id })),
  ];
}

const key = fc.uint8Array({ minLength: 0, maxLength: 4, max: 7 });

describe('ShardRoutes', () => {
  it('names the shard the shard map names, for every key (random mounts and splits)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ prefix: fc.uint8Array({ minLength: 1, maxLength: 2, max: 7 }), shards: fc.integer({ min: 1, max: 4 }) }), { maxLength: 4 }),
        fc.array(fc.record({ victim: fc.nat(), at: key }), { maxLength: 6 }),
        fc.array(key, { minLength: 1, maxLength: 40 }),
        (mounts, splits, keys) => {
          let map = ShardMap.initial(1);
          let next = 2;
          mounts.forEach(({ prefix, shards }, i) => {
            try {
              map = map.mount(`s${i}`, prefix, Array.from({ length: shards }, (_, j) => next + j), []);
              next += shards;
            } catch {
              // an overlapping prefix: the map refuses it, as the server would
            }
          });
          for (const { victim, at } of splits) {
            const all = map.shards();
            try {
              map = map.split(all[victim % all.length]!.id, at, next);
              next += 1;
            } catch {
              // a split key outside the shard
            }
          }
          const routes = ShardRoutes.of(listed(map));
          expect(routes.hasStores).toBe(map.stores().length > 1);
          for (const k of keys) {
            const owner = map.shardForKey(k);
            const routed = routes.shardOf(k);
            expect({ key: Array.from(k), id: routed?.id, store: routed?.store, leader: routed?.leader }).toEqual({ key: Array.from(k), id: owner.id, store: owner.store, leader: BigInt(owner.id + 100) });
          }
          expect(routes.shard(0)).toBeUndefined();
        },
      ),
      { numRuns: 300, seed: 20261205 },
    );
  });
});

describe('txnRouteKey', () => {
  const b = (s: string): string => Buffer.from(s).toString();
  const keyOf = (request: Parameters<typeof txnRouteKey>[0]): string | undefined => {
    const k = txnRouteKey(request);
    return k === undefined ? undefined : Buffer.from(k).toString();
  };
  it('is the first compare key, else the first operation key of either branch, else none', () => {
    expect(keyOf(txnRequest([compare.value('a', '=', '1'), compare.version('b', '>', 0)], [op.put('c', 'x')], []))).toBe(b('a'));
    expect(keyOf(txnRequest([], [op.delete('d'), op.put('c', 'x')], [op.get('e')]))).toBe(b('d'));
    expect(keyOf(txnRequest([], [], [op.get('e')]))).toBe(b('e'));
    expect(keyOf(txnRequest([], [], []))).toBeUndefined();
  });
});
