/**
 * Snapshot encode → restore: round trips give the same HashKV, ranges and change history at every
 * retained revision; damaged, reordered and truncated streams are rejected.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { crc32c } from '../../storage/checksum.js';
import { encodeSnapshot, MvccStore, mvccLimits, restoreSnapshot, SnapshotError } from '../../storage/mvcc/index.js';

const enc = (text: string) => new TextEncoder().encode(text);

type Op = { kind: 'put'; key: number; size: number } | { kind: 'delete'; key: number; span: number } | { kind: 'compact'; back: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('put' as const), key: fc.integer({ min: 0, max: 40 }), size: fc.integer({ min: 0, max: 300 }) }), weight: 6 },
  { arbitrary: fc.record({ kind: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 40 }), span: fc.integer({ min: 0, max: 5 }) }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('compact' as const), back: fc.integer({ min: 0, max: 10 }) }), weight: 1 },
);

function key(n: number): Uint8Array {
  return enc(`k${n.toString().padStart(3, '0')}`);
}

function build(ops: Op[], segmentKeysMax: number): MvccStore {
  const store = new MvccStore({ segmentKeysMax });
  let counter = 0;
  for (const op of ops) {
    if (op.kind === 'put') store.put(key(op.key), new Uint8Array(op.size).fill(counter++ & 0xff), { lease: BigInt(op.key % 3) });
    else if (op.kind === 'delete') store.deleteRange({ key: key(op.key), rangeEnd: op.span === 0 ? undefined : key(op.key + op.span) });
    else {
      const revision = store.revision - op.back;
      if (revision > store.compactRevision) store.compact(revision);
    }
  }
  store.appliedIndex = ops.length * 3;
  return store;
}

/** A CRC-32C over every byte and number of a result (cheap to compare for big stores). */
function digest(value: unknown, crc = 0): number {
  if (value instanceof Uint8Array) return crc32c(value, crc32c(Uint8Array.of(value.length & 0xff, value.length >>> 8), crc));
  if (Array.isArray(value)) return value.reduce((c: number, v: unknown) => digest(v, c), crc32c(Uint8Array.of(0x5b), crc));
  if (value !== null && typeof value === 'object') {
    let c = crc;
    for (const [k, v] of Object.entries(value).sort(([x], [y]) => (x < y ? -1 : 1))) c = digest(v, crc32c(new TextEncoder().encode(k), c));
    return c;
  }
  return crc32c(new TextEncoder().encode(String(value)), crc);
}

function expectSameStore(a: MvccStore, b: MvccStore): void {
  expect(b.revision).toBe(a.revision);
  expect(b.compactRevision).toBe(a.compactRevision);
  expect(b.appliedIndex).toBe(a.appliedIndex);
  expect(b.keyCount).toBe(a.keyCount);
  const all = { key: new Uint8Array([0]), rangeEnd: new Uint8Array([0]) };
  const first = Math.max(1, a.compactRevision);
  const step = Math.max(1, Math.floor((a.revision - first) / 12));
  for (let revision = first; revision <= a.revision; revision += step) {
    expect(b.hashKV(revision)).toEqual(a.hashKV(revision));
    expect(digest(b.range({ ...all, revision }))).toEqual(digest(a.range({ ...all, revision })));
  }
  expect(digest(b.changes({ fromRevision: a.compactRevision + 1 }))).toEqual(digest(a.changes({ fromRevision: a.compactRevision + 1 })));
  b.checkInvariants();
}

async function* asAsync(chunks: Iterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  for (const chunk of chunks) yield chunk;
}

describe('snapshot round trip', () => {
  it('restores an equal store (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { maxLength: 120 }), fc.constantFrom(4, 16, 512), async (ops, segmentKeysMax) => {
        const store = build(ops, segmentKeysMax);
        const restored = await restoreSnapshot(encodeSnapshot(store), { segmentKeysMax });
        expectSameStore(store, restored);
        // The restored store keeps working like the original.
        store.put(key(7), enc('after'));
        restored.put(key(7), enc('after'));
        expect(restored.hashKV()).toEqual(store.hashKV());
      }),
      { numRuns: 120 },
    );
  });

  it('restores an empty store', async () => {
    const restored = await restoreSnapshot(encodeSnapshot(new MvccStore()));
    expect(restored.revision).toBe(1);
    expect(restored.segmentCount).toBe(0);
    expect(restored.hashKV()).toEqual(new MvccStore().hashKV());
  });

  it('keeps every chunk within snapshotChunkBytesMax, values larger than a chunk included', async () => {
    const store = new MvccStore();
    const big = new Uint8Array(2 * 1024 * 1024 + 17).map((_v, i) => i & 0xff);
    store.put(enc('big-a'), big);
    store.put(enc('big-b'), big.subarray(5));
    for (let i = 0; i < 2000; i++) store.put(enc(`small-${i}`), enc(`value-${i}`));
    const chunks = [...encodeSnapshot(store)];
    expect(chunks.length).toBeGreaterThan(4);
    for (const chunk of chunks) expect(chunk.length).toBeLessThanOrEqual(mvccLimits.snapshotChunkBytesMax);
    expectSameStore(store, await restoreSnapshot(asAsync(chunks)));
  });

  it('restores records cut at every kind of place by chunk boundaries (key header, key, version, value)', async () => {
    const store = new MvccStore();
    // Odd sizes, and two versions per key, so boundaries fall on every part of a key group.
    for (let i = 0; i < 12_000; i++) store.put(enc(`key-${i}-${'k'.repeat(i % 7)}`), new Uint8Array(50 + (i % 113)).fill(i & 0xff));
    for (let i = 0; i < 12_000; i += 3) store.put(enc(`key-${i}-${'k'.repeat(i % 7)}`), new Uint8Array(1 + (i % 37)).fill(1));
    const chunks = [...encodeSnapshot(store)];
    expect(chunks.length).toBeGreaterThan(3);
    const restored = await restoreSnapshot(asAsync(chunks));
    // At the head and one past revision (every revision, as expectSameStore checks, takes long here).
    for (const revision of [0, 6_000]) expect(restored.hashKV(revision)).toEqual(store.hashKV(revision));
    expect(restored.keyCount).toBe(store.keyCount);
    restored.checkInvariants();
  });

  it('captures the state when called: later writes do not leak into the stream', async () => {
    const store = build([{ kind: 'put', key: 1, size: 10 }, { kind: 'put', key: 2, size: 10 }], 4);
    const before = store.hashKV();
    const stream = encodeSnapshot(store);
    for (let i = 0; i < 50; i++) store.put(key(i), enc(`x${i}`));
    store.compact(store.revision - 1);
    const restored = await restoreSnapshot(stream, { segmentKeysMax: 4 });
    expect(restored.hashKV()).toEqual(before);
  });
});

describe('snapshot damage', () => {
  const store = new MvccStore();
  for (let i = 0; i < 3000; i++) store.put(enc(`key-${i}`), new Uint8Array(400).fill(i & 0xff));
  store.deleteRange({ key: enc('key-1'), rangeEnd: enc('key-2') });
  const chunks = [...encodeSnapshot(store)];

  it('has several chunks to damage', () => expect(chunks.length).toBeGreaterThan(3));

  it('rejects a flipped byte', async () => {
    const damaged = chunks.map((c) => c.slice());
    const target = damaged[2]!;
    target[500] = target[500]! ^ 0x40;
    await expect(restoreSnapshot(damaged)).rejects.toThrow(/checksum/);
  });

  it('rejects a stream without its end', async () => {
    await expect(restoreSnapshot(chunks.slice(0, -1))).rejects.toThrow(SnapshotError);
    await expect(restoreSnapshot(chunks.slice(0, -1))).rejects.toThrow(/truncated/);
  });

  it('rejects a missing or reordered chunk', async () => {
    await expect(restoreSnapshot([...chunks.slice(0, 2), ...chunks.slice(3)])).rejects.toThrow(/expected/);
    await expect(restoreSnapshot([chunks[0]!, chunks[2]!, chunks[1]!, ...chunks.slice(3)])).rejects.toThrow(SnapshotError);
  });

  it('rejects a cut chunk, an empty stream and trailing data', async () => {
    await expect(restoreSnapshot([chunks[0]!, chunks[1]!.subarray(0, 1000)])).rejects.toThrow(/truncated/);
    await expect(restoreSnapshot([])).rejects.toThrow(/truncated/);
    await expect(restoreSnapshot([...chunks, chunks[1]!])).rejects.toThrow(/after the end/);
    await expect(restoreSnapshot([new Uint8Array(64)])).rejects.toThrow(SnapshotError);
  });

  it('accepts the undamaged stream', async () => {
    expectSameStore(store, await restoreSnapshot(asAsync(chunks)));
  });
});

describe('lease ids are exact int64s', () => {
  const int64Arb = fc.oneof(
    fc.constantFrom(0n, 1n, -1n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n - 1n, -(2n ** 63n), -(2n ** 53n) - 1n),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  );

  it('survive put, range, snapshot, restore and HashKV over the whole int64 range (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(int64Arb, { minLength: 1, maxLength: 40 }), fc.constantFrom(4, 512), async (leases, segmentKeysMax) => {
        const store = new MvccStore({ segmentKeysMax });
        // Each key gets two versions (the older one's lease must survive too) and a lease compare.
        leases.forEach((lease, i) => store.put(key(i), enc(`a${i}`), { lease: ~lease }));
        leases.forEach((lease, i) => store.put(key(i), enc(`b${i}`), { lease }));
        const read = (s: MvccStore, revision = 0) => s.range({ key: key(0), rangeEnd: new Uint8Array([0]), revision }).kvs.map((kv) => kv.lease);
        expect(read(store)).toEqual(leases);
        const restored = await restoreSnapshot(encodeSnapshot(store), { segmentKeysMax });
        expect(read(restored)).toEqual(leases);
        const older = 1 + leases.length;
        expect(read(restored, older)).toEqual(read(store, older));
        expect(restored.hashKV()).toEqual(store.hashKV());
        expect(restored.hashKV(older)).toEqual(store.hashKV(older));
        // Compare LEASE is exact: the stored id equals itself and nothing one away from it.
        leases.forEach((lease, i) => {
          const compare = (value: bigint, result: 'equal' | 'greater' | 'less') => ({ compare: [{ key: key(i), target: 'lease' as const, result, value }], success: [], failure: [] });
          expect(restored.txn(compare(lease, 'equal')).succeeded).toBe(true);
          if (lease < 2n ** 63n - 1n) expect(restored.txn(compare(lease + 1n, 'less')).succeeded).toBe(true);
          if (lease > -(2n ** 63n)) expect(restored.txn(compare(lease - 1n, 'greater')).succeeded).toBe(true);
        });
      }),
      { numRuns: 150 },
    );
  });

  it('hashes lease ids past 2^53 exactly: two ids one apart hash differently', () => {
    const a = new MvccStore();
    const b = new MvccStore();
    a.put(key(0), enc('v'), { lease: 2n ** 53n });
    b.put(key(0), enc('v'), { lease: 2n ** 53n + 1n });
    expect(a.hashKV().hash).not.toBe(b.hashKV().hash);
  });

  it('refuses a lease id outside int64 (a programmer error, not a client one)', () => {
    expect(() => new MvccStore().put(key(0), enc('v'), { lease: 2n ** 63n })).toThrow(/int64/);
  });

  it('still reads format 1 snapshots, whose lease ids were f64s', async () => {
    const store = new MvccStore();
    store.put(enc('k'), enc('v'), { lease: 7n });
    store.appliedIndex = 3;
    const chunks = [...encodeSnapshot(store)].map((chunk) => chunk.slice());
    // Rewrite as format 1: the frame's version and the lease field (header 16 bytes, then the key
    // group: key length 4 + key 1 + version count 4, then the version: lease at 28).
    const data = chunks[1]!;
    const view = new DataView(data.buffer);
    view.setFloat64(16 + 4 + 1 + 4 + 28, 7, true);
    for (const chunk of chunks) {
      const v = new DataView(chunk.buffer);
      v.setUint16(4, 1, true);
      v.setUint32(chunk.length - 4, crc32c(chunk.subarray(0, chunk.length - 4)), true);
    }
    const restored = await restoreSnapshot(chunks);
    expect(restored.range({ key: enc('k') }).kvs[0]!.lease).toBe(7n);
    expect(restored.hashKV()).toEqual(store.hashKV());
    // A stream mixing formats is refused.
    await expect(restoreSnapshot([chunks[0]!, ...[...encodeSnapshot(store)].slice(1)])).rejects.toThrow(/format version 2 in a format 1 stream/);
  });
});
