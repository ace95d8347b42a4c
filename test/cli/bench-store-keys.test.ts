/**
 * `dkv bench put|range|txn-put --store`: the keys it makes fall under the store's prefix and
 * spread over the store's shards as the shard map cuts them (the real ShardMap routes each key).
 */
import { describe, expect, it } from 'vitest';
import { benchKey, loadKey, spreadByte, storeBenchKey } from '../../bench/etcd-load.js';
import { ShardMap } from '../../src/cluster/index.js';

const prefix = Buffer.from('/bench/');

/** The ids of the shards keys 0 … count-1 fall in, with a store of `shards` shards on `prefix`. */
function shardsOfKeys(shards: number, keys: number[], spreadFrom?: (n: number) => number): number[] {
  const map = ShardMap.initial(1).mount('bench', prefix, Array.from({ length: shards }, (_, i) => 2 + i), []);
  return keys.map((n) => {
    const key = storeBenchKey(prefix, n, 8, spreadFrom?.(n) ?? n);
    const shard = map.shardForKey(key);
    expect(shard.store).toBe('bench');
    return shard.id;
  });
}

describe('bench keys of a store', () => {
  it('reverses the low 8 bits of the key number', () => {
    expect([0, 1, 2, 3, 0x80, 0xff, 0x100, 0x101].map(spreadByte)).toEqual([0, 0x80, 0x40, 0xc0, 1, 0xff, 0, 0x80]);
  });

  it('is the prefix, the spread byte, then etcd\'s key', () => {
    const key = storeBenchKey(prefix, 3, 8);
    expect(key.subarray(0, prefix.length)).toEqual(prefix);
    expect(key[prefix.length]).toBe(0xc0);
    expect(key.subarray(prefix.length + 1)).toEqual(benchKey(3, 8));
  });

  it('puts S consecutive key numbers in S different shards for every power-of-two shard count', () => {
    for (const shards of [1, 2, 4, 8, 16, 64, 256]) {
      for (const start of [0, 5, 1000]) {
        const keys = Array.from({ length: shards }, (_, i) => start + i);
        expect(new Set(shardsOfKeys(shards, keys)).size, `${shards} shards from ${start}`).toBe(shards);
      }
    }
  });

  it('spreads a key space evenly over any shard count (within one key of even per 256)', () => {
    for (const shards of [3, 5, 7, 100]) {
      const counts = new Map<number, number>();
      for (const id of shardsOfKeys(shards, Array.from({ length: 256 }, (_, n) => n))) counts.set(id, (counts.get(id) ?? 0) + 1);
      expect(counts.size).toBe(shards);
      const sizes = [...counts.values()];
      expect(Math.max(...sizes) - Math.min(...sizes), `${shards} shards`).toBeLessThanOrEqual(1);
    }
  });

  it('keeps a txn\'s keys in one shard: they share its first key\'s spread byte, and stay distinct', () => {
    const txnKeys = Array.from({ length: 8 }, (_, op) => 40 + op);
    expect(new Set(shardsOfKeys(8, txnKeys, () => 40)).size).toBe(1);
    const keys = txnKeys.map((n) => storeBenchKey(prefix, n, 8, 40).toString('hex'));
    expect(new Set(keys).size).toBe(8);
  });

  it('makes etcd\'s keys without a store, or for the default store\'s empty prefix', () => {
    expect(loadKey({ keySize: 8 }, 300)).toEqual(benchKey(300, 8));
    expect(loadKey({ keySize: 8, store: { name: 'default', prefix: new Uint8Array() } }, 300)).toEqual(benchKey(300, 8));
    expect(loadKey({ keySize: 8, store: { name: 'bench', prefix } }, 300)).toEqual(storeBenchKey(prefix, 300, 8));
  });
});
