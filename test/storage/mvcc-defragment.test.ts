import { describe, expect, it } from 'vitest';
import { MvccStore } from '../../storage/index.js';

const enc = (text: string): Uint8Array => new TextEncoder().encode(text);

/** Writes `keys` keys of `valueBytes` each, `rounds` times over (each round a new version). */
function fill(store: MvccStore, keys: number, valueBytes: number, rounds: number): void {
  const value = new Uint8Array(valueBytes).fill(7);
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < keys; i++) store.put(enc(`key-${String(i).padStart(6, '0')}`), value);
  }
}

describe('MvccStore size and defragment', () => {
  it('counts arena bytes; compaction and deletes leave some, defragment gives them back', () => {
    const store = new MvccStore();
    fill(store, 2000, 500, 1);
    const written = store.sizeBytes;
    expect(written).toBeGreaterThan(2000 * 500);
    expect(store.sizeInUseBytes).toBeLessThanOrEqual(written);
    // Deleting a third of the keys and compacting leaves garbage below the rewrite threshold.
    store.deleteRange({ key: enc('key-000000'), rangeEnd: enc('key-000667') });
    store.put(enc('other'), enc('x'));
    store.compact(store.revision);
    const compacted = store.sizeBytes;
    expect(compacted).toBeGreaterThan(store.sizeInUseBytes);
    let from = 0;
    let steps = 0;
    while (from >= 0) {
      from = store.defragmentStep(from, 1);
      steps++;
    }
    expect(steps).toBeGreaterThan(1);
    store.checkInvariants();
    expect(store.sizeBytes).toBeLessThan(compacted);
    // What is left: retained versions, an eighth of headroom per arena, the head arrays.
    expect(store.sizeBytes).toBeLessThan(1.25 * store.sizeInUseBytes);
    expect(store.keyCount).toBe(2000 - 667 + 1);
  });

  it('keeps every retained version, and a captured snapshot stays readable', () => {
    const store = new MvccStore();
    fill(store, 500, 100, 3);
    const revision = store.revision;
    const before = store.hashKV(0).hash;
    const captured = store.capture();
    store.compact(revision - 100);
    const compactedHash = store.hashKV(0).hash;
    for (let from = 0; from >= 0; ) from = store.defragmentStep(from, 1);
    expect(store.hashKV(0).hash).toBe(compactedHash);
    expect(store.range({ key: enc('key-000001') }).kvs).toHaveLength(1);
    expect(captured.revision).toBe(revision);
    expect(before).not.toBe(0);
  });

  it('memory accounted returns to its level after overwriting every key and compacting, and to almost nothing after deleting them', () => {
    const store = new MvccStore();
    const defragment = (): void => {
      for (let from = 0; from >= 0; ) from = store.defragmentStep(from, 8);
    };
    const keys = 10_000;
    fill(store, keys, 100, 1);
    const loaded = store.sizeBytes;
    const loadedInUse = store.sizeInUseBytes;
    fill(store, keys, 100, 1);
    expect(store.sizeBytes).toBeGreaterThan(1.5 * loaded);
    store.compact(store.revision);
    // What the node's settle does after a compaction: the store is mostly garbage, so rewrite it.
    expect(store.sizeInUseBytes).toBeLessThan(0.75 * store.sizeBytes);
    defragment();
    store.checkInvariants();
    expect(store.sizeInUseBytes).toBe(loadedInUse);
    expect(store.sizeBytes).toBeLessThanOrEqual(1.1 * loaded);
    store.deleteRange({ key: enc('key-'), rangeEnd: enc('key.') });
    store.compact(store.revision);
    defragment();
    store.checkInvariants();
    expect(store.keyCount).toBe(0);
    expect(store.sizeBytes).toBeLessThan(0.01 * loaded);
  });
});
