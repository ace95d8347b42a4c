/**
 * MvccStore.bytesMiddleKey (where a shard splits by size): the key that divides the retained
 * versions' bytes most evenly, never the first key, with the share below it. Keys of equal size
 * divide at the middle one whatever the segment size; one key whose history holds most of the
 * bytes gives a lopsided share until a compaction drops that history; fewer than two keys, none.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MvccStore } from '../../storage/index.js';

const key = (i: number): Uint8Array => new TextEncoder().encode(`k${String(i).padStart(5, '0')}`);
const value = new Uint8Array(100).fill(7);

describe('MvccStore.bytesMiddleKey', () => {
  it('divides keys of equal size at the middle one, whatever the segment size and the load order', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 600 }), fc.constantFrom(16, 64, 512), fc.boolean(), (count, segmentKeysMax, reversed) => {
        const store = new MvccStore({ segmentKeysMax });
        const order = Array.from({ length: count }, (_, i) => (reversed ? count - 1 - i : i));
        for (const i of order) store.put(key(i), value);
        const middle = store.bytesMiddleKey()!;
        const index = Number(new TextDecoder().decode(middle.key).slice(1));
        // The cut before key `index` leaves `index` keys below: as close to half as a cut can be.
        expect(Math.abs(2 * index - count)).toBeLessThanOrEqual(1);
        expect(index).toBeGreaterThan(0);
        expect(middle.share).toBeCloseTo(index / count, 6);
      }),
      { numRuns: 150 },
    );
  });

  it("gives a lopsided share while one key's history holds most of the bytes, and divides again once it is compacted", () => {
    const store = new MvccStore({ segmentKeysMax: 64 });
    for (let i = 0; i < 200; i++) store.put(key(i), value);
    for (let n = 0; n < 5000; n++) store.put(key(120), value);
    const lopsided = store.bytesMiddleKey()!;
    expect(Math.min(lopsided.share, 1 - lopsided.share)).toBeLessThan(0.25);
    store.compact(store.revision);
    const even = store.bytesMiddleKey()!;
    expect(Math.min(even.share, 1 - even.share)).toBeGreaterThan(0.45);
  });

  it('has no cut for fewer than two keys', () => {
    const store = new MvccStore();
    expect(store.bytesMiddleKey()).toBeUndefined();
    store.put(key(1), value);
    store.put(key(1), value);
    expect(store.bytesMiddleKey()).toBeUndefined();
    store.put(key(2), value);
    expect(new TextDecoder().decode(store.bytesMiddleKey()!.key)).toBe('k00002');
  });
});
