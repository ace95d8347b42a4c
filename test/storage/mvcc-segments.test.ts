/**
 * The segment index keeps its invariants (sorted, bounded, no empty segment) under random
 * workloads, and compaction really gives memory back.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MvccStore } from '../../storage/mvcc/index.js';

const enc = (text: string) => new TextEncoder().encode(text);
const key = (n: number) => enc(`key-${n.toString().padStart(5, '0')}`);

describe('segment invariants', () => {
  it('hold after random puts, deletes and compactions', () => {
    const op = fc.oneof(
      { arbitrary: fc.tuple(fc.constant(0), fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 200 })), weight: 5 },
      { arbitrary: fc.tuple(fc.constant(1), fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 40 })), weight: 2 },
      { arbitrary: fc.tuple(fc.constant(2), fc.integer({ min: 0, max: 20 }), fc.constant(0)), weight: 1 },
    );
    fc.assert(
      fc.property(fc.array(op, { minLength: 50, maxLength: 400 }), fc.constantFrom(4, 5, 8, 64), (ops, segmentKeysMax) => {
        const store = new MvccStore({ segmentKeysMax });
        for (const [kind, a, b] of ops) {
          if (kind === 0) store.put(key(a), new Uint8Array(b).fill(a & 0xff));
          else if (kind === 1) store.deleteRange({ key: key(a), rangeEnd: key(a + b) });
          else if (store.revision - a > store.compactRevision) store.compact(store.revision - a);
          store.checkInvariants();
        }
      }),
      { numRuns: 60 },
    );
  });

  it('hold when txns of a bulk load arrive slightly out of order (new keys inside full segments split them first)', () => {
    const segmentKeysMax = 64;
    const store = new MvccStore({ segmentKeysMax });
    const txnKeys = 16;
    const txns = 400;
    // Windows of 8 txns applied in reverse: as 8 clients' txns may be, each a run of ascending keys.
    const order: number[] = [];
    for (let w = 0; w < txns; w += 8) for (let t = Math.min(txns, w + 8) - 1; t >= w; t--) order.push(t);
    for (const t of order) {
      const success = Array.from({ length: txnKeys }, (_, i) => ({ type: 'put' as const, put: { key: key(t * txnKeys + i), value: enc(`v${t * txnKeys + i}`) } }));
      store.txn({ compare: [], success, failure: [] });
      store.checkInvariants();
    }
    const all = store.range({ key: enc('key-'), rangeEnd: enc('key.') });
    expect(all.kvs.map((kv) => new TextDecoder().decode(kv.value))).toEqual(Array.from({ length: txns * txnKeys }, (_, i) => `v${i}`));
    // Splits leave halves, never slivers: at least a quarter of a segment's keys on average.
    expect(store.segmentCount).toBeLessThanOrEqual(Math.ceil((txns * txnKeys) / (segmentKeysMax / 4)));
  });

  it('leaves no segment once everything is deleted and compacted', () => {
    const store = new MvccStore({ segmentKeysMax: 4 });
    for (let i = 0; i < 500; i++) store.put(key(i), enc(`v${i}`));
    expect(store.segmentCount).toBeGreaterThan(100);
    store.deleteRange({ key: enc('key-'), rangeEnd: enc('key.') });
    store.compact(store.revision);
    store.checkInvariants();
    expect(store.segmentCount).toBe(0);
    // The deletes made at the compact revision lost their records: no read returns them, and
    // the change log lets them go too (it keeps only the puts made there, for a watch from it).
    expect(store.changeLogLength).toBe(0);
    expect(store.changeLogBytes).toBe(0);
    store.put(key(1), enc('again'));
    expect(store.range({ key: key(1) }).kvs[0]!.createRevision).toBe(store.revision);
  });

  it('merges small segments after compaction removes keys', () => {
    const store = new MvccStore({ segmentKeysMax: 8 });
    for (let i = 0; i < 800; i++) store.put(key(i), enc('v'));
    for (let i = 0; i < 800; i++) if (i % 10 !== 0) store.deleteRange({ key: key(i) });
    store.compact(store.revision);
    store.checkInvariants();
    expect(store.keyCount).toBe(80);
    // Each segment of 8 kept 0 or 1 key: merged, every one holds at least 8 / 4 keys.
    expect(store.segmentCount).toBeLessThanOrEqual(80 / 2);
  });

  it('fills segments with keys loaded in order, each arena sized once', () => {
    const store = new MvccStore({ segmentKeysMax: 64 });
    const value = new Uint8Array(100);
    for (let i = 0; i < 64 * 40; i++) store.put(key(i), value);
    store.checkInvariants();
    // Full segments (a split in two would leave 40 of them half full behind the load).
    expect(store.segmentCount).toBe(40);
    // Past the first, each arena was sized for 64 records like its neighbour's: no room to spare.
    const recordBytes = 49 + key(0).length + value.length;
    expect(store.arenaBytes).toBeLessThanOrEqual(64 * 40 * recordBytes + 2048);
    // A key inserted among them later still splits a full segment in two.
    store.put(enc('key-00010a'), value);
    store.checkInvariants();
    expect(store.segmentCount).toBe(41);
    expect(store.range({ key: enc('key-'), rangeEnd: enc('key.') }).count).toBe(64 * 40 + 1);
  });

  it('gives arena memory back when compaction drops history', () => {
    const store = new MvccStore();
    const value = new Uint8Array(1000);
    for (let round = 0; round < 5; round++) for (let i = 0; i < 2000; i++) store.put(key(i), value.fill(round));
    const before = store.arenaBytes;
    expect(before).toBeGreaterThan(5 * 2000 * 1000);
    store.compact(store.revision);
    store.checkInvariants();
    expect(store.arenaBytes).toBeLessThan(before / 3);
    expect(store.range({ key: key(5) }).kvs[0]!.version).toBe(5);
  });

  it('keeps handed-out views unchanged across growth, splits and rewrites', () => {
    const store = new MvccStore({ segmentKeysMax: 4 });
    store.put(key(1), enc('first'));
    const held = store.range({ key: key(1) }).kvs[0]!;
    for (let i = 0; i < 200; i++) store.put(key(i % 50), enc(`value-${i}`));
    store.compact(store.revision);
    expect(new TextDecoder().decode(held.value)).toBe('first');
    expect(new TextDecoder().decode(held.key)).toBe('key-00001');
  });
});
