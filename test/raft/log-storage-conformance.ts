/**
 * The conformance suite every LogStorage implementation must pass (STYLE.md: one interface, one
 * conformance suite). It drives a store only through `LogStorage` (reads) and `LogStorageWriter`
 * (writes, awaited because a durable store writes asynchronously), never through an
 * implementation's internals, so the in-memory store and the LevelDB store run the same checks.
 *
 * Writes respect what Raft guarantees of its own writes: a hard state's commit index never
 * exceeds the last index (a durable store may refuse to recover such a state as damaged).
 *
 * Usage, from a `*.test.ts` file:
 *
 *   describeLogStorageConformance('MemoryLogStorage', async () => {
 *     const store = new MemoryLogStorage();
 *     return { storage: store, writer: store };
 *   });
 */
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type ConfState,
  type Entry,
  type EntryType,
  type HardState,
  type LogStorage,
  type LogStorageWriter,
  type LogUnavailableReason,
  type Snapshot,
  LogUnavailableError,
  entryBytes,
} from '../../raft/index.js';

export interface ConformanceHarness {
  readonly storage: LogStorage;
  readonly writer: LogStorageWriter;
  /** Releases the store (closes files, removes a temporary directory). */
  close?(): void | Promise<void>;
}

export interface ConformanceOptions {
  /** Runs of the model-based property; lower it for a store that is slow to open. */
  readonly modelRuns?: number;
}

const UNLIMITED = Number.MAX_SAFE_INTEGER;

// ---------------------------------------------------------------------------------------------
// Builders and comparisons. Stores may hand back copies (a Buffer instead of a Uint8Array), so
// entries and snapshots are compared through plain projections.

function bytesOf(length: number, seed: number): Uint8Array {
  const data = new Uint8Array(length);
  for (let i = 0; i < length; i++) data[i] = (seed * 31 + i * 7) & 0xff;
  return data;
}

function entry(index: number, term: number, dataLength = 3, type: EntryType = 'normal'): Entry {
  return { index, term, type, data: bytesOf(dataLength, index * 131 + term) };
}

/** Consecutive entries starting at `from`, one per term given. */
function run(from: number, terms: readonly number[]): Entry[] {
  return terms.map((term, i) => entry(from + i, term));
}

interface EntryView {
  index: number;
  term: number;
  type: EntryType;
  data: number[];
}

function view(entries: readonly Entry[]): EntryView[] {
  return entries.map((e) => ({ index: e.index, term: e.term, type: e.type, data: Array.from(e.data) }));
}

function confView(cs: ConfState): ConfState {
  return {
    voters: [...cs.voters],
    votersOutgoing: [...cs.votersOutgoing],
    learners: [...cs.learners],
    learnersNext: [...cs.learnersNext],
    autoLeave: cs.autoLeave,
  };
}

function hardView(hs: HardState): HardState {
  return { term: hs.term, vote: hs.vote, commit: hs.commit };
}

const EMPTY_CONF: ConfState = { voters: [], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };

function confState(voters: number[], learners: number[] = []): ConfState {
  return { voters, votersOutgoing: [], learners, learnersNext: [], autoLeave: false };
}

function snapshot(index: number, term: number, cs: ConfState, dataLength = 5): Snapshot {
  return { metadata: { index, term, confState: cs }, data: bytesOf(dataLength, index) };
}

function snapshotView(s: Snapshot): { index: number; term: number; confState: ConfState; data: number[] } {
  return {
    index: s.metadata.index,
    term: s.metadata.term,
    confState: confView(s.metadata.confState),
    data: Array.from(s.data),
  };
}

function unavailableReason(read: () => unknown): LogUnavailableReason | 'returned' | 'other error' {
  try {
    read();
    return 'returned';
  } catch (error) {
    return error instanceof LogUnavailableError ? error.reason : 'other error';
  }
}

function expectUnavailable(read: () => unknown, reason: LogUnavailableReason): void {
  expect(unavailableReason(read)).toBe(reason);
}

/** A refused write may throw or return a rejected promise; either counts. */
async function expectRefused(write: () => unknown): Promise<void> {
  await expect(Promise.resolve().then(write)).rejects.toThrow();
}

function sumBytes(entries: readonly Entry[]): number {
  let total = 0;
  for (const e of entries) total += entryBytes(e);
  return total;
}

// ---------------------------------------------------------------------------------------------
// The reference model for the property: a snapshot, the compaction point and the live entries.

interface Model {
  snapshot: Snapshot;
  /** firstIndex - 1: the snapshot index or the last compacted index. */
  offset: number;
  offsetTerm: number;
  entries: Entry[];
  hardState: HardState;
}

function emptyModel(): Model {
  return {
    snapshot: { metadata: { index: 0, term: 0, confState: EMPTY_CONF }, data: new Uint8Array(0) },
    offset: 0,
    offsetTerm: 0,
    entries: [],
    hardState: { term: 0, vote: 0, commit: 0 },
  };
}

const modelFirst = (m: Model): number => m.offset + 1;
const modelLast = (m: Model): number => m.offset + m.entries.length;

function modelTerm(m: Model, index: number): number {
  if (index === m.offset) return m.offsetTerm;
  return m.entries[index - m.offset - 1]!.term;
}

function modelAppend(m: Model, batch: readonly Entry[]): void {
  const live = batch.filter((e) => e.index > m.offset);
  if (live.length === 0) return;
  m.entries = m.entries.slice(0, live[0]!.index - m.offset - 1).concat(live);
}

function modelCompact(m: Model, index: number): void {
  if (index <= m.offset) return;
  m.offsetTerm = modelTerm(m, index);
  m.entries = m.entries.slice(index - m.offset);
  m.offset = index;
}

function modelApplySnapshot(m: Model, s: Snapshot): void {
  m.snapshot = s;
  m.offset = s.metadata.index;
  m.offsetTerm = s.metadata.term;
  m.entries = [];
}

type Op =
  | { kind: 'append'; at: number; count: number; termBumps: number[]; dataLength: number }
  | { kind: 'compact'; at: number }
  | { kind: 'snapshot'; at: number; termBump: number; voters: number[]; learners: number[] }
  | { kind: 'hard-state'; term: number; vote: number; commit: number };

const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('append' as const),
      at: fc.nat(),
      count: fc.integer({ min: 1, max: 4 }),
      termBumps: fc.array(fc.integer({ min: 0, max: 1 }), { minLength: 4, maxLength: 4 }),
      dataLength: fc.integer({ min: 0, max: 40 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('compact' as const), at: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('snapshot' as const),
      at: fc.nat(),
      termBump: fc.integer({ min: 0, max: 2 }),
      voters: fc.uniqueArray(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 3 }),
      learners: fc.uniqueArray(fc.integer({ min: 6, max: 9 }), { maxLength: 2 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('hard-state' as const),
      term: fc.nat({ max: 50 }),
      vote: fc.nat({ max: 5 }),
      commit: fc.nat({ max: 50 }),
    }),
  },
);

/** Picks a value in [lo, hi] from an arbitrary natural number. */
function pick(n: number, lo: number, hi: number): number {
  return lo + (n % (hi - lo + 1));
}

/** Applies `op` to the store and the model alike. Positions are drawn from the valid ranges. */
async function step(writer: LogStorageWriter, m: Model, op: Op): Promise<void> {
  const first = modelFirst(m);
  const last = modelLast(m);
  switch (op.kind) {
    case 'append': {
      // From slightly inside the compacted prefix (those entries are dropped) up to lastIndex + 1,
      // never replacing a committed entry (Raft never does).
      const at = pick(op.at, Math.min(last + 1, Math.max(1, first - 2, m.hardState.commit + 1)), last + 1);
      let term = at - 1 >= m.offset ? modelTerm(m, at - 1) : m.offsetTerm;
      const batch: Entry[] = [];
      for (let i = 0; i < op.count; i++) {
        term = Math.max(term, 1) + op.termBumps[i]!;
        batch.push(entry(at + i, term, (op.dataLength + i * 13) % 41));
      }
      await writer.append(batch);
      modelAppend(m, batch);
      return;
    }
    case 'compact': {
      const at = pick(op.at, Math.max(0, first - 2), last);
      await writer.compact(at);
      modelCompact(m, at);
      return;
    }
    case 'snapshot': {
      // Newer than the snapshot, the compaction point and the commit index (Raft only restores a
      // snapshot beyond what it has committed); may lie beyond the log.
      const at = pick(op.at, Math.max(first, m.hardState.commit + 1), last + 3);
      const baseTerm = at <= last ? modelTerm(m, at) : modelTerm(m, last);
      const s = snapshot(at, Math.max(baseTerm, 1) + op.termBump, confState(op.voters, op.learners), at % 7);
      await writer.applySnapshot(s);
      modelApplySnapshot(m, s);
      return;
    }
    case 'hard-state': {
      // Raft never persists a commit index beyond the last index (a durable store may check it).
      const hs = { term: op.term, vote: op.vote, commit: pick(op.commit, 0, last) };
      await writer.setHardState(hs);
      m.hardState = hs;
      return;
    }
  }
}

/** Everything observable through the read side, as one comparable value. */
function observe(storage: LogStorage, first: number, last: number): unknown {
  const terms: number[] = [];
  for (let i = first - 1; i <= last; i++) terms.push(storage.term(i));
  const initial = storage.initialState();
  return {
    firstIndex: storage.firstIndex(),
    lastIndex: storage.lastIndex(),
    terms,
    termBelow: first >= 2 ? unavailableReason(() => storage.term(first - 2)) : 'none',
    termAbove: unavailableReason(() => storage.term(last + 1)),
    entries: view(storage.entries(first, last + 1, UNLIMITED)),
    entriesBelow: first >= 2 ? unavailableReason(() => storage.entries(first - 1, last + 1, UNLIMITED)) : 'none',
    entriesAbove: unavailableReason(() => storage.entries(first, last + 2, UNLIMITED)),
    snapshot: snapshotView(storage.snapshot()),
    hardState: hardView(initial.hardState),
    confState: confView(initial.confState),
  };
}

function checkAgainstModel(storage: LogStorage, m: Model): void {
  const first = modelFirst(m);
  const last = modelLast(m);
  const terms: number[] = [];
  for (let i = first - 1; i <= last; i++) terms.push(modelTerm(m, i));
  expect(observe(storage, first, last)).toEqual({
    firstIndex: first,
    lastIndex: last,
    terms,
    termBelow: first >= 2 ? 'compacted' : 'none',
    termAbove: 'unavailable',
    entries: view(m.entries),
    entriesBelow: first >= 2 ? 'compacted' : 'none',
    entriesAbove: 'unavailable',
    snapshot: snapshotView(m.snapshot),
    hardState: m.hardState,
    confState: confView(m.snapshot.metadata.confState),
  });
}

// ---------------------------------------------------------------------------------------------

/** The store under test, opened afresh for every test. */
interface Fixture {
  readonly storage: LogStorage;
  readonly writer: LogStorageWriter;
}

function emptyStorageTests(f: Fixture): void {
  describe('empty storage', () => {
    it('spans no entries: firstIndex 1, lastIndex 0, term(0) = 0', () => {
      expect(f.storage.firstIndex()).toBe(1);
      expect(f.storage.lastIndex()).toBe(0);
      expect(f.storage.term(0)).toBe(0);
      expectUnavailable(() => f.storage.term(1), 'unavailable');
      expect(f.storage.entries(1, 1, UNLIMITED)).toEqual([]);
      expectUnavailable(() => f.storage.entries(1, 2, UNLIMITED), 'unavailable');
      expectUnavailable(() => f.storage.entries(0, 1, UNLIMITED), 'compacted');
    });

    it('has an empty initial state and an empty snapshot', () => {
      const initial = f.storage.initialState();
      expect(hardView(initial.hardState)).toEqual({ term: 0, vote: 0, commit: 0 });
      expect(confView(initial.confState)).toEqual(EMPTY_CONF);
      const s = f.storage.snapshot();
      expect(s.metadata.index).toBe(0);
      expect(s.metadata.term).toBe(0);
    });
  });
}

function appendTests(f: Fixture): void {
  describe('append and read back', () => {
    it('returns what was appended, in every sub-range', async () => {
      const written = [...run(1, [1, 1, 2]), entry(4, 2, 9, 'conf-change'), entry(5, 3, 0)];
      await f.writer.append(written);
      expect(f.storage.firstIndex()).toBe(1);
      expect(f.storage.lastIndex()).toBe(5);
      expect([0, 1, 2, 3, 4, 5].map((i) => f.storage.term(i))).toEqual([0, 1, 1, 2, 2, 3]);
      expect(view(f.storage.entries(1, 6, UNLIMITED))).toEqual(view(written));
      expect(view(f.storage.entries(2, 4, UNLIMITED))).toEqual(view(written.slice(1, 3)));
      expect(view(f.storage.entries(5, 6, UNLIMITED))).toEqual(view(written.slice(4)));
      expect(f.storage.entries(3, 3, UNLIMITED)).toEqual([]);
      expect(f.storage.entries(6, 6, UNLIMITED)).toEqual([]);
    });

    it('throws compacted below firstIndex and unavailable beyond lastIndex', async () => {
      await f.writer.append(run(1, [1, 1, 1]));
      expectUnavailable(() => f.storage.entries(0, 2, UNLIMITED), 'compacted');
      expectUnavailable(() => f.storage.entries(1, 5, UNLIMITED), 'unavailable');
      expectUnavailable(() => f.storage.entries(4, 5, UNLIMITED), 'unavailable');
      expectUnavailable(() => f.storage.term(4), 'unavailable');
      expectUnavailable(() => f.storage.term(100), 'unavailable');
    });

    it('extends the log over several appends', async () => {
      await f.writer.append(run(1, [1, 1]));
      await f.writer.append(run(3, [1, 2]));
      await f.writer.append(run(5, [3]));
      expect(f.storage.lastIndex()).toBe(5);
      expect(view(f.storage.entries(1, 6, UNLIMITED))).toEqual(view([...run(1, [1, 1]), ...run(3, [1, 2]), ...run(5, [3])]));
    });

    it('ignores an empty append', async () => {
      await f.writer.append(run(1, [1, 1]));
      await f.writer.append([]);
      expect(f.storage.lastIndex()).toBe(2);
    });

    it('does not keep the caller’s array, and earlier reads are not changed by later writes', async () => {
      const batch = run(1, [1, 1, 1]);
      await f.writer.append(batch);
      const before = f.storage.entries(1, 4, UNLIMITED);
      const beforeView = view(before);
      batch.pop();
      batch.push(entry(3, 9));
      expect(f.storage.term(3)).toBe(1);
      await f.writer.append(run(2, [5, 5]));
      expect(view(before)).toEqual(beforeView);
      expect(f.storage.lastIndex()).toBe(3);
      expect([1, 2, 3].map((i) => f.storage.term(i))).toEqual([1, 5, 5]);
    });

    it('refuses a gap after lastIndex and a non-contiguous batch, leaving the log as it was', async () => {
      await f.writer.append(run(1, [1, 1, 1]));
      await expectRefused(() => f.writer.append([entry(5, 1)]));
      await expectRefused(() => f.writer.append([entry(4, 1), entry(6, 1)]));
      expect(f.storage.lastIndex()).toBe(3);
      expect(view(f.storage.entries(1, 4, UNLIMITED))).toEqual(view(run(1, [1, 1, 1])));
    });
  });
}

function maxBytesTests(f: Fixture): void {
  describe('the maxBytes limit', () => {
    // Entry sizes differ so that every cut point is distinguishable.
    const sized = [entry(1, 1, 10), entry(2, 1, 20), entry(3, 2, 0), entry(4, 2, 40), entry(5, 3, 5)];
    const bytes = sized.map(entryBytes);
    const prefix = (n: number): number => bytes.slice(0, n).reduce((a, b) => a + b, 0);

    it('returns at least one entry, however small the limit', async () => {
      await f.writer.append(sized);
      expect(view(f.storage.entries(1, 6, 0))).toEqual(view(sized.slice(0, 1)));
      expect(view(f.storage.entries(1, 6, 1))).toEqual(view(sized.slice(0, 1)));
      expect(view(f.storage.entries(4, 6, bytes[3]! - 1))).toEqual(view(sized.slice(3, 4)));
    });

    it('cuts exactly where the next entry would pass the limit', async () => {
      await f.writer.append(sized);
      expect(f.storage.entries(1, 6, prefix(1)).length).toBe(1);
      expect(f.storage.entries(1, 6, prefix(2) - 1).length).toBe(1);
      expect(f.storage.entries(1, 6, prefix(2)).length).toBe(2);
      // Entry 3 carries no payload but still counts its header bytes.
      expect(f.storage.entries(1, 6, prefix(3) - 1).length).toBe(2);
      expect(f.storage.entries(1, 6, prefix(3)).length).toBe(3);
      expect(f.storage.entries(1, 6, prefix(5) - 1).length).toBe(4);
      expect(view(f.storage.entries(1, 6, prefix(5)))).toEqual(view(sized));
      expect(view(f.storage.entries(2, 4, bytes[1]! + bytes[2]!))).toEqual(view(sized.slice(1, 3)));
      expect(view(f.storage.entries(2, 5, bytes[1]! + bytes[2]!))).toEqual(view(sized.slice(1, 3)));
    });

    it('returns the longest prefix within the limit (property)', async () => {
      await f.writer.append(sized);
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 6 }),
          fc.integer({ min: 1, max: 6 }),
          fc.integer({ min: 0, max: prefix(5) + 10 }),
          (a, b, maxBytes) => {
            const lo = Math.min(a, b);
            const hi = Math.max(a, b);
            const got = f.storage.entries(lo, hi, maxBytes);
            const wanted = sized.slice(lo - 1, hi - 1);
            let n = Math.min(1, wanted.length);
            while (n < wanted.length && sumBytes(wanted.slice(0, n + 1)) <= maxBytes) n++;
            expect(view(got)).toEqual(view(wanted.slice(0, n)));
          },
        ),
        { numRuns: 200 },
      );
    });
  });
}

function conflictTests(f: Fixture): void {
  describe('conflicting appends', () => {
    it('replaces a conflicting suffix and truncates everything after it', async () => {
      await f.writer.append(run(1, [1, 1, 1, 1, 1]));
      await f.writer.append(run(3, [2, 2]));
      expect(f.storage.lastIndex()).toBe(4);
      expect([0, 1, 2, 3, 4].map((i) => f.storage.term(i))).toEqual([0, 1, 1, 2, 2]);
      expectUnavailable(() => f.storage.term(5), 'unavailable');
      expect(view(f.storage.entries(1, 5, UNLIMITED))).toEqual(view([...run(1, [1, 1]), ...run(3, [2, 2])]));
    });

    it('replaces from the batch’s first index even when the terms agree', async () => {
      await f.writer.append(run(1, [1, 1, 1, 1, 1]));
      await f.writer.append(run(2, [1]));
      expect(f.storage.lastIndex()).toBe(2);
    });

    it('can replace the whole log from index 1', async () => {
      await f.writer.append(run(1, [1, 1, 1]));
      await f.writer.append(run(1, [4]));
      expect(f.storage.lastIndex()).toBe(1);
      expect(f.storage.term(1)).toBe(4);
    });

    it('drops the part of a batch that overlaps compacted entries', async () => {
      await f.writer.append(run(1, [1, 1, 1, 1, 1]));
      await f.writer.compact(3);
      await f.writer.append(run(2, [1, 1, 2, 2, 3, 3]));
      expect(f.storage.firstIndex()).toBe(4);
      expect(f.storage.lastIndex()).toBe(7);
      expect(f.storage.term(3)).toBe(1);
      expect(view(f.storage.entries(4, 8, UNLIMITED))).toEqual(view(run(2, [1, 1, 2, 2, 3, 3]).slice(2)));
    });

    it('truncates at firstIndex when the batch ends there', async () => {
      await f.writer.append(run(1, [1, 1, 1, 1, 1]));
      await f.writer.compact(3);
      await f.writer.append(run(2, [1, 1, 9]));
      expect(f.storage.firstIndex()).toBe(4);
      expect(f.storage.lastIndex()).toBe(4);
      expect(f.storage.term(3)).toBe(1);
      expect(f.storage.term(4)).toBe(9);
    });

    it('ignores a batch that lies wholly within the compacted prefix', async () => {
      await f.writer.append(run(1, [1, 1, 1, 1, 1]));
      await f.writer.compact(3);
      await f.writer.append(run(1, [7, 7, 7]));
      expect(f.storage.firstIndex()).toBe(4);
      expect(f.storage.lastIndex()).toBe(5);
      expect(f.storage.term(3)).toBe(1);
      expect([4, 5].map((i) => f.storage.term(i))).toEqual([1, 1]);
    });
  });
}

function compactionTests(f: Fixture): void {
  describe('compaction', () => {
    it('drops entries up to the index but still answers term(index)', async () => {
      await f.writer.append(run(1, [1, 2, 3, 4, 5]));
      await f.writer.compact(3);
      expect(f.storage.firstIndex()).toBe(4);
      expect(f.storage.lastIndex()).toBe(5);
      expect(f.storage.term(3)).toBe(3);
      expectUnavailable(() => f.storage.term(2), 'compacted');
      expectUnavailable(() => f.storage.term(0), 'compacted');
      expectUnavailable(() => f.storage.entries(3, 5, UNLIMITED), 'compacted');
      expectUnavailable(() => f.storage.entries(1, 2, UNLIMITED), 'compacted');
      expect(view(f.storage.entries(4, 6, UNLIMITED))).toEqual(view(run(4, [4, 5])));
    });

    it('is idempotent, and compacting below firstIndex changes nothing', async () => {
      await f.writer.append(run(1, [1, 2, 3, 4, 5]));
      await f.writer.compact(3);
      await f.writer.compact(3);
      await f.writer.compact(2);
      await f.writer.compact(0);
      expect(f.storage.firstIndex()).toBe(4);
      expect(f.storage.lastIndex()).toBe(5);
      expect(f.storage.term(3)).toBe(3);
    });

    it('may compact the whole log; appends continue after it', async () => {
      await f.writer.append(run(1, [1, 2, 3]));
      await f.writer.compact(3);
      expect(f.storage.firstIndex()).toBe(4);
      expect(f.storage.lastIndex()).toBe(3);
      expect(f.storage.term(3)).toBe(3);
      expect(f.storage.entries(4, 4, UNLIMITED)).toEqual([]);
      await f.writer.append(run(4, [3, 4]));
      expect(f.storage.lastIndex()).toBe(5);
      expect(view(f.storage.entries(4, 6, UNLIMITED))).toEqual(view(run(4, [3, 4])));
    });

    it('refuses to compact beyond lastIndex', async () => {
      await f.writer.append(run(1, [1, 1]));
      await expectRefused(() => f.writer.compact(3));
      expect(f.storage.firstIndex()).toBe(1);
      expect(f.storage.lastIndex()).toBe(2);
    });

    it('leaves the snapshot and the hard state alone', async () => {
      await f.writer.append(run(1, [1, 2, 3, 4, 5]));
      await f.writer.setHardState({ term: 5, vote: 1, commit: 4 });
      await f.writer.compact(4);
      expect(f.storage.snapshot().metadata.index).toBe(0);
      expect(hardView(f.storage.initialState().hardState)).toEqual({ term: 5, vote: 1, commit: 4 });
    });
  });
}

function applySnapshotTests(f: Fixture): void {
  describe('applySnapshot', () => {
    const cs: ConfState = confState([1, 2, 3], [4]);

    it('replaces the log with the snapshot', async () => {
      await f.writer.append(run(1, [1, 1, 2, 2, 3]));
      const s = snapshot(10, 4, cs);
      await f.writer.applySnapshot(s);
      expect(f.storage.firstIndex()).toBe(11);
      expect(f.storage.lastIndex()).toBe(10);
      expect(f.storage.term(10)).toBe(4);
      expectUnavailable(() => f.storage.term(9), 'compacted');
      expectUnavailable(() => f.storage.term(5), 'compacted');
      expectUnavailable(() => f.storage.term(11), 'unavailable');
      expectUnavailable(() => f.storage.entries(5, 6, UNLIMITED), 'compacted');
      expect(f.storage.entries(11, 11, UNLIMITED)).toEqual([]);
      expect(snapshotView(f.storage.snapshot())).toEqual(snapshotView(s));
      expect(confView(f.storage.initialState().confState)).toEqual(cs);
    });

    it('discards the log even when the snapshot lies inside it', async () => {
      await f.writer.append(run(1, [1, 1, 2, 2, 3]));
      await f.writer.applySnapshot(snapshot(3, 2, cs));
      expect(f.storage.firstIndex()).toBe(4);
      expect(f.storage.lastIndex()).toBe(3);
      expect(f.storage.term(3)).toBe(2);
      expectUnavailable(() => f.storage.term(4), 'unavailable');
    });

    it('takes appends after the snapshot index', async () => {
      await f.writer.applySnapshot(snapshot(10, 4, cs));
      await f.writer.append(run(11, [4, 5]));
      expect(f.storage.firstIndex()).toBe(11);
      expect(f.storage.lastIndex()).toBe(12);
      expect(view(f.storage.entries(11, 13, UNLIMITED))).toEqual(view(run(11, [4, 5])));
    });

    it('keeps a joint configuration intact', async () => {
      const joint: ConfState = { voters: [1, 2], votersOutgoing: [1, 2, 3], learners: [5], learnersNext: [3], autoLeave: true };
      await f.writer.applySnapshot(snapshot(7, 2, joint));
      expect(confView(f.storage.initialState().confState)).toEqual(joint);
      expect(confView(f.storage.snapshot().metadata.confState)).toEqual(joint);
    });

    it('refuses a snapshot that is not newer than the current one', async () => {
      await f.writer.applySnapshot(snapshot(10, 4, cs));
      await expectRefused(() => f.writer.applySnapshot(snapshot(10, 4, confState([9]))));
      await expectRefused(() => f.writer.applySnapshot(snapshot(8, 4, confState([9]))));
      expect(f.storage.snapshot().metadata.index).toBe(10);
      expect(confView(f.storage.initialState().confState)).toEqual(cs);
    });

    it('leaves the hard state alone', async () => {
      await f.writer.append(run(1, [1, 2, 4]));
      await f.writer.setHardState({ term: 4, vote: 2, commit: 3 });
      await f.writer.applySnapshot(snapshot(10, 4, cs));
      expect(hardView(f.storage.initialState().hardState)).toEqual({ term: 4, vote: 2, commit: 3 });
    });
  });
}

function hardStateTests(f: Fixture): void {
  describe('setHardState', () => {
    it('round-trips through initialState, the last write winning', async () => {
      await f.writer.append(run(1, [1, 1, 2, 3, 3, 4]));
      await f.writer.setHardState({ term: 3, vote: 2, commit: 5 });
      expect(hardView(f.storage.initialState().hardState)).toEqual({ term: 3, vote: 2, commit: 5 });
      await f.writer.setHardState({ term: 4, vote: 0, commit: 6 });
      expect(hardView(f.storage.initialState().hardState)).toEqual({ term: 4, vote: 0, commit: 6 });
    });

    it('does not touch the log', async () => {
      await f.writer.append(run(1, [1, 2]));
      await f.writer.setHardState({ term: 2, vote: 1, commit: 2 });
      expect(f.storage.lastIndex()).toBe(2);
      expect(f.storage.term(2)).toBe(2);
    });
  });
}

/** Each run opens its own store, since fast-check runs many sequences within one test. */
function modelTests(open: () => Promise<ConformanceHarness>, options: ConformanceOptions): void {
  it('matches a reference model over random append/compact/applySnapshot/setHardState sequences', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArbitrary, { minLength: 1, maxLength: 25 }), async (ops) => {
        const fresh = await open();
        try {
          const model = emptyModel();
          checkAgainstModel(fresh.storage, model);
          for (const op of ops) {
            await step(fresh.writer, model, op);
            checkAgainstModel(fresh.storage, model);
          }
        } finally {
          await fresh.close?.();
        }
      }),
      { numRuns: options.modelRuns ?? 200 },
    );
  });
}

export function describeLogStorageConformance(
  name: string,
  open: () => Promise<ConformanceHarness>,
  options: ConformanceOptions = {},
): void {
  describe(`LogStorage conformance: ${name}`, () => {
    let harness: ConformanceHarness | undefined;
    const current = (): ConformanceHarness => {
      if (harness === undefined) throw new Error('the store is opened in beforeEach');
      return harness;
    };
    const fixture: Fixture = {
      get storage() {
        return current().storage;
      },
      get writer() {
        return current().writer;
      },
    };

    beforeEach(async () => {
      harness = await open();
    });

    afterEach(async () => {
      await harness?.close?.();
      harness = undefined;
    });

    emptyStorageTests(fixture);
    appendTests(fixture);
    maxBytesTests(fixture);
    conflictTests(fixture);
    compactionTests(fixture);
    applySnapshotTests(fixture);
    hardStateTests(fixture);
    modelTests(open, options);
  });
}
