/**
 * MvccStore.retained (one side of a shard split): the store it returns holds exactly the keys of
 * its range with their whole retained history — every range, change and HashKV of the original
 * filtered to the range, at every retained revision — survives a snapshot round trip, keeps
 * working like the original for writes in its range, leaves the original unchanged and shares
 * no arena with it. Also the parts that had to accept revisions with missing sub-revisions: the
 * change log, its rebuild and the snapshot loader (which still refuses a change twice).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { crc32c } from '../../storage/checksum.js';
import {
  type ChangesRequest,
  type KeyValue,
  MvccError,
  type MvccEvent,
  MvccStore,
  type RangeResponse,
  type RequestOp,
  type TxnRequest,
  compareBytes,
  encodeSnapshot,
  restoreSnapshot,
  restoreSnapshotSync,
} from '../../storage/mvcc/index.js';
import { MvccModel, plain } from './mvcc-model.js';

const enc = (text: string): Uint8Array => new TextEncoder().encode(text);
const ALL = Uint8Array.of(0);

// ---- Histories ---------------------------------------------------------------------------------

const keyArb = fc.array(fc.constantFrom(0x00, 0x61, 0x62, 0x63, 0xff), { minLength: 1, maxLength: 2 }).map((bytes) => Uint8Array.from(bytes));
const valueArb = fc.array(fc.constantFrom(0x31, 0x32, 0x33), { maxLength: 3 }).map((bytes) => Uint8Array.from(bytes));
const leaseArb = fc.constantFrom(0n, 0n, 0n, 5n, -(2n ** 63n));

type Write =
  | { kind: 'put'; key: Uint8Array; value: Uint8Array; lease: bigint }
  | { kind: 'delete'; key: Uint8Array; end: Uint8Array | undefined }
  | { kind: 'txn'; txn: TxnRequest }
  | { kind: 'compact'; back: number };

const putOpArb = fc.record({ key: keyArb, value: valueArb, lease: leaseArb }).map(({ key, value, lease }): RequestOp => ({ type: 'put', put: { key, value, lease, prevKv: true } }));
const deleteOpArb = fc
  .record({ key: keyArb, end: fc.option(fc.oneof(keyArb, fc.constant(ALL)), { nil: undefined }) })
  .map(({ key, end }): RequestOp => ({ type: 'deleteRange', deleteRange: { key, rangeEnd: end, prevKv: true } }));

/** Txns writing several keys, in any key order (sub-revisions out of key order), sometimes nested. */
const txnArb: fc.Arbitrary<TxnRequest> = fc
  .record({
    compareKey: fc.option(keyArb, { nil: undefined }),
    version: fc.integer({ min: 0, max: 2 }),
    success: fc.array(fc.oneof({ arbitrary: putOpArb, weight: 3 }, { arbitrary: deleteOpArb, weight: 1 }), { minLength: 1, maxLength: 4 }),
    failure: fc.array(putOpArb, { maxLength: 3 }),
    nested: fc.array(putOpArb, { maxLength: 2 }),
  })
  .map(({ compareKey, version, success, failure, nested }) => ({
    compare: compareKey === undefined ? [] : [{ key: compareKey, target: 'version', result: 'greater', value: version }],
    success: nested.length === 0 ? success : [...success, { type: 'txn', txn: { compare: [], success: nested, failure: [] } }],
    failure,
  }));

const writeArb: fc.Arbitrary<Write> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('put' as const), key: keyArb, value: valueArb, lease: leaseArb }), weight: 6 },
  { arbitrary: fc.record({ kind: fc.constant('delete' as const), key: keyArb, end: fc.option(fc.oneof(keyArb, fc.constant(ALL)), { nil: undefined }) }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('txn' as const), txn: txnArb }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant('compact' as const), back: fc.integer({ min: 0, max: 8 }) }), weight: 1 },
);

/** A split range: start empty or a key, end a key or none (start <= end). */
const boundsArb = fc.tuple(fc.option(keyArb, { nil: undefined }), fc.option(keyArb, { nil: undefined })).map(([a, b]) => {
  const start = a ?? new Uint8Array(0);
  if (b === undefined || compareBytes(start, b) <= 0) return { start, end: b };
  return { start: b, end: start };
});

interface Bounds {
  readonly start: Uint8Array;
  readonly end: Uint8Array | undefined;
}

function inBounds(key: Uint8Array, bounds: Bounds): boolean {
  return compareBytes(key, bounds.start) >= 0 && (bounds.end === undefined || compareBytes(key, bounds.end) < 0);
}

/** A write as the store and the model take it; MvccErrors (a duplicate key in a txn, …) as data. */
function apply(target: MvccStore | MvccModel, write: Write): unknown {
  try {
    switch (write.kind) {
      case 'put':
        return target instanceof MvccStore
          ? target.put(write.key, write.value, { lease: write.lease, prevKv: true })
          : target.put({ key: write.key, value: write.value, lease: write.lease, prevKv: true });
      case 'delete':
        return target.deleteRange({ key: write.key, rangeEnd: write.end, prevKv: true });
      case 'txn':
        return target.txn(write.txn);
      case 'compact':
        return target.compact(target.revision - write.back);
    }
  } catch (error) {
    if (error instanceof MvccError) return { error: error.code };
    throw error;
  }
}

/** Whether every key a later write names is inside the bounds (so the split side may apply it). */
function writeInBounds(write: Write, bounds: Bounds): boolean {
  const rangeInBounds = (key: Uint8Array, end: Uint8Array | undefined): boolean => {
    if (!inBounds(key, bounds)) return false;
    if (end === undefined || end.length === 0) return true;
    if (end.length === 1 && end[0] === 0) return bounds.end === undefined;
    return bounds.end === undefined || compareBytes(end, bounds.end) <= 0;
  };
  const opsInBounds = (ops: readonly RequestOp[]): boolean =>
    ops.every((op) => {
      switch (op.type) {
        case 'put':
          return rangeInBounds(op.put.key, undefined);
        case 'deleteRange':
          return rangeInBounds(op.deleteRange.key, op.deleteRange.rangeEnd);
        case 'range':
          return rangeInBounds(op.range.key, op.range.rangeEnd);
        case 'txn':
          return txnInBounds(op.txn);
      }
    });
  const txnInBounds = (txn: TxnRequest): boolean => txn.compare.every((c) => rangeInBounds(c.key, c.rangeEnd)) && opsInBounds(txn.success) && opsInBounds(txn.failure);
  switch (write.kind) {
    case 'put':
      return rangeInBounds(write.key, undefined);
    case 'delete':
      return rangeInBounds(write.key, write.end);
    case 'txn':
      return txnInBounds(write.txn);
    case 'compact':
      return true;
  }
}

// ---- Comparisons -------------------------------------------------------------------------------


function everyKey(store: MvccStore, revision: number): RangeResponse {
  return store.range({ key: ALL, rangeEnd: ALL, revision });
}

/** The original's answer cut down to the bounds: kvs in them and their count. */
function filteredRange(response: RangeResponse, bounds: Bounds): RangeResponse {
  const kvs = response.kvs.filter((kv: KeyValue) => inBounds(kv.key, bounds));
  return { ...response, kvs, count: kvs.length };
}

function filteredEvents(events: readonly MvccEvent[], bounds: Bounds): MvccEvent[] {
  return events.filter((event) => inBounds(event.kv.key, bounds));
}

/** `changes` read page by page with a byte limit (the pages must join to the whole answer). */
function pagedChanges(store: MvccStore, request: ChangesRequest, bytesMax: number): MvccEvent[] {
  const events: MvccEvent[] = [];
  for (let from = request.fromRevision; ; ) {
    const page = store.changesPage({ ...request, fromRevision: from, bytesMax });
    events.push(...page.events);
    if (page.throughRevision >= store.revision) return events;
    from = page.throughRevision + 1;
  }
}

/** A model holding only the original model's keys in the bounds: what HashKV of the split side must hash. */
function filteredModel(model: MvccModel, bounds: Bounds): MvccModel {
  const copy = new MvccModel();
  copy.revision = model.revision;
  copy.compactRevision = model.compactRevision;
  for (const [name, history] of model.versions) if (inBounds(history[0]!.key, bounds)) copy.versions.set(name, [...history]);
  return copy;
}

/** Every readable revision of a store: from the compact revision (or 1) to the current one. */
function readableRevisions(store: MvccStore): number[] {
  const revisions: number[] = [];
  for (let revision = Math.max(1, store.compactRevision); revision <= store.revision; revision++) revisions.push(revision);
  return revisions;
}

/**
 * The kept store against the original (filtered to the bounds) and against the filtered model,
 * at every readable revision: ranges, changes (whole and paged), HashKV, counts, invariants.
 */
function expectSideOf(kept: MvccStore, original: MvccStore, model: MvccModel, bounds: Bounds): void {
  expect(kept.revision).toBe(original.revision);
  expect(kept.compactRevision).toBe(original.compactRevision);
  expect(kept.appliedIndex).toBe(original.appliedIndex);
  const side = filteredModel(model, bounds);
  expect(kept.keyCount).toBe(filteredRange(everyKey(original, 0), bounds).count);
  expect(kept.keyCount).toBe(side.keyCount);
  for (const revision of readableRevisions(original)) {
    expect(plain(everyKey(kept, revision)), `range at ${revision}`).toEqual(plain(filteredRange(everyKey(original, revision), bounds)));
    const changes = kept.changes({ fromRevision: revision });
    expect(plain(changes), `changes from ${revision}`).toEqual(plain(filteredEvents(original.changes({ fromRevision: revision }), bounds)));
    expect(plain(changes), `model changes from ${revision}`).toEqual(plain(side.changes(revision, undefined)));
    expect(plain(pagedChanges(kept, { fromRevision: revision }, 5))).toEqual(plain(changes));
    expect(kept.hashKV(revision).hash, `hash at ${revision}`).toBe(side.hashKV(revision));
  }
  kept.checkInvariants();
}

/** Everything a store answers at the given revisions (default: every readable one), not how it lays out its memory. */
function answers(store: MvccStore, revisions = readableRevisions(store)): unknown {
  return plain({
    revision: store.revision,
    compactRevision: store.compactRevision,
    appliedIndex: store.appliedIndex,
    keyCount: store.keyCount,
    changeLog: store.changeLogLength,
    hashes: revisions.map((revision) => store.hashKV(revision).hash),
    ranges: revisions.map((revision) => everyKey(store, revision)),
    changes: store.changes({ fromRevision: Math.max(1, store.compactRevision) }),
  });
}

/** What a store answers and how its memory is laid out: to show `retained` left the original as it was. */
function fingerprint(store: MvccStore, revisions?: number[]): unknown {
  return { answers: answers(store, revisions), segments: store.segmentCount, arenaBytes: store.arenaBytes, sizeBytes: store.sizeBytes, changeLogBytes: store.changeLogBytes };
}

function runSplit(history: Write[], bounds: Bounds, later: Write[], segmentKeysMax: number): void {
  const original = new MvccStore({ segmentKeysMax });
  const model = new MvccModel();
  for (const write of history) expect(plain(apply(original, write))).toEqual(plain(apply(model, write)));
  original.appliedIndex = history.length * 2 + 1;
  const before = fingerprint(original);

  const kept = original.retained(bounds.start, bounds.end);
  expect(fingerprint(original)).toEqual(before);
  expectSideOf(kept, original, model, bounds);

  // A snapshot of the kept store restores an equal one (its log rebuilt from the versions).
  const restored = restoreSnapshotSync(encodeSnapshot(kept), { segmentKeysMax });
  expect(answers(restored)).toEqual(answers(kept));
  expectSideOf(restored, original, model, bounds);

  // Both sides of a split at bounds.start partition the original.
  const left = original.retained(new Uint8Array(0), bounds.start);
  const right = original.retained(bounds.start, undefined);
  for (const revision of readableRevisions(original)) {
    expect(everyKey(left, revision).count + everyKey(right, revision).count).toBe(everyKey(original, revision).count);
  }

  // Later writes in the bounds, and compactions: the kept store answers as the original does.
  for (const write of later) {
    if (!writeInBounds(write, bounds)) continue;
    const expected = plain(apply(original, write));
    expect(plain(apply(kept, write)), JSON.stringify(plain(write))).toEqual(expected);
    expect(plain(apply(restored, write))).toEqual(expected);
    apply(model, write);
  }
  expectSideOf(kept, original, model, bounds);
  expectSideOf(restored, original, model, bounds);
  original.checkInvariants();
}

describe('MvccStore.retained', () => {
  it('keeps exactly the range with its retained history, and keeps working like the original (property)', () => {
    fc.assert(
      fc.property(
        fc.array(writeArb, { minLength: 5, maxLength: 50 }),
        boundsArb,
        fc.array(writeArb, { maxLength: 25 }),
        fc.constantFrom(4, 512),
        (history, bounds, later, segmentKeysMax) => runSplit(history, bounds, later, segmentKeysMax),
      ),
      { numRuns: 250 },
    );
  });

  it('places a txn\'s changes by sub-revision, not key order, and keeps the gaps another side left', () => {
    const store = new MvccStore();
    // One txn: subs 0..3 on keys d, a, c, b; then a range delete: subs in key order.
    store.txn({ compare: [], success: ['d', 'a', 'c', 'b'].map((key): RequestOp => ({ type: 'put', put: { key: enc(key), value: enc(key) } })), failure: [] });
    store.put(enc('x'), enc('x'));
    store.deleteRange({ key: enc('a'), rangeEnd: enc('z') });
    const kept = store.retained(enc('b'), enc('d'));
    const changes = (s: MvccStore) => s.changes({ fromRevision: 1 }).map((e) => `${e.type} ${new TextDecoder().decode(e.kv.key)}@${e.kv.modRevision}`);
    expect(changes(kept)).toEqual(['put c@2', 'put b@2', 'delete b@4', 'delete c@4']);
    expect(kept.revision).toBe(4);
    expect(kept.keyCount).toBe(0);
    // The revision with no change left (3) is still a revision: writes go on after 4.
    expect(kept.put(enc('c'), enc('again')).revision).toBe(5);
    kept.compact(3);
    expect(() => kept.changes({ fromRevision: 1 })).toThrow(MvccError);
    const changesFrom3 = kept.changes({ fromRevision: 3 }).map((e) => `${e.type} ${new TextDecoder().decode(e.kv.key)}@${e.kv.modRevision}`);
    expect(changesFrom3).toEqual(['delete b@4', 'delete c@4', 'put c@5']);
    kept.checkInvariants();
  });

  it('leaves the original unchanged and shares no arena with it; its arenas hold about what it kept', () => {
    const original = new MvccStore();
    const value = new Uint8Array(500).fill(7);
    const key = (i: number): Uint8Array => enc(`key-${String(i).padStart(5, '0')}`);
    for (let round = 0; round < 2; round++) for (let i = 0; i < 2000; i++) original.put(key(i), value);
    original.compact(original.revision - 500);
    const revisions = [original.compactRevision, original.revision - 100, original.revision];
    const before = fingerprint(original, revisions);
    const kept = original.retained(key(1000), key(1200));
    expect(fingerprint(original, revisions)).toEqual(before);
    expect(kept.keyCount).toBe(200);
    const originalBuffers = new Set(original.capture().segments.map((segment) => segment.source.arena.buffer));
    for (const segment of kept.capture().segments) expect(originalBuffers.has(segment.source.arena.buffer)).toBe(false);
    // Keys 1000..1199 were last written below the compact revision: one version each is kept.
    const keptBytes = 200 * (49 + key(0).length + value.length);
    expect(kept.arenaBytes).toBeGreaterThanOrEqual(keptBytes);
    expect(kept.arenaBytes).toBeLessThan(1.25 * keptBytes);
    expect(kept.arenaBytes).toBeLessThan(original.arenaBytes / 10);
    // Writing to one changes nothing in the other.
    kept.put(key(1000), enc('new'));
    expect(fingerprint(original, revisions)).toEqual(before);
    original.put(key(1001), enc('new'));
    expect(kept.range({ key: key(1001) }).kvs[0]!.value).toEqual(value);
  });

  it('keeps nothing of an empty range or one without keys, at the same revisions', () => {
    const store = new MvccStore();
    store.put(enc('a'), enc('1'));
    store.put(enc('c'), enc('2'));
    store.appliedIndex = 9;
    for (const kept of [store.retained(enc('b'), enc('b')), store.retained(enc('b'), enc('c')), store.retained(enc('d'), undefined)]) {
      expect([kept.revision, kept.compactRevision, kept.appliedIndex, kept.keyCount, kept.segmentCount, kept.changeLogLength]).toEqual([3, 0, 9, 0, 0, 0]);
      expect(kept.changes({ fromRevision: 1 })).toEqual([]);
      kept.checkInvariants();
    }
    const all = store.retained(new Uint8Array(0), undefined);
    expect(answers(all)).toEqual(answers(store));
  });
});

describe('changes at the compact revision', () => {
  it('report only what compaction kept there, whether or not the arena was rewritten yet', () => {
    // Many keys keep garbage under the rewrite threshold: the compacted delete stays in the arena.
    const store = new MvccStore();
    for (let i = 0; i < 20; i++) store.put(enc(`z${i}`), enc('a value long enough to outweigh the garbage'));
    store.put(enc('k'), enc('1'));
    store.txn({ compare: [], success: [{ type: 'put', put: { key: enc('j'), value: enc('1') } }, { type: 'deleteRange', deleteRange: { key: enc('k') } }], failure: [] });
    const floor = store.revision;
    store.put(enc('k'), enc('2'));
    store.compact(floor);
    const events = store.changes({ fromRevision: floor }).map((e) => [e.type, new TextDecoder().decode(e.kv.key), e.kv.modRevision]);
    expect(events).toEqual([
      ['put', 'j', floor],
      ['put', 'k', floor + 1],
    ]);
    const restored = restoreSnapshotSync(encodeSnapshot(store));
    expect(plain(restored.changes({ fromRevision: floor }))).toEqual(plain(store.changes({ fromRevision: floor })));
    store.checkInvariants();
  });
});

describe('the snapshot loader with sub-revision gaps', () => {
  /** The store's snapshot with the second key's version given sub-revision `sub` (CRC fixed). */
  function withSecondSub(store: MvccStore, sub: number): Uint8Array[] {
    const chunks = [...encodeSnapshot(store)].map((chunk) => chunk.slice());
    // Data chunk: header 16, then key groups (key length 4 | key | count 4 | versions: modRevision
    // f64 | sub u32 | …, 41 bytes | value); keys 'a' and 'b' with one 1-byte value each.
    const data = chunks[1]!;
    const view = new DataView(data.buffer);
    const secondVersion = 16 + (4 + 1 + 4 + 41 + 1) + (4 + 1 + 4);
    view.setUint32(secondVersion + 8, sub, true);
    view.setUint32(data.length - 4, crc32c(data.subarray(0, data.length - 4)), true);
    return chunks;
  }

  it('accepts a revision missing some sub-revisions, and refuses one sub-revision twice', async () => {
    const store = new MvccStore();
    store.txn({ compare: [], success: ['a', 'b'].map((key): RequestOp => ({ type: 'put', put: { key: enc(key), value: enc('v') } })), failure: [] });
    const gap = await restoreSnapshot(withSecondSub(store, 7));
    expect(gap.changes({ fromRevision: 2 }).map((e) => new TextDecoder().decode(e.kv.key))).toEqual(['a', 'b']);
    gap.checkInvariants();
    await expect(restoreSnapshot(withSecondSub(store, 0))).rejects.toThrow(/revision 2\.0 appears twice/);
  });
});
