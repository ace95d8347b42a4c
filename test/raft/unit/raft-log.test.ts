import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type Entry,
  type LogStorage,
  type Snapshot,
  LogUnavailableError,
  MemoryLogStorage,
  RaftAssertionError,
  entryBytes,
} from '../../../raft/index.js';
import { RaftLog } from '../../../raft/raft-log.js';

const UNLIMITED = Number.MAX_SAFE_INTEGER;

function entry(index: number, term: number, dataLength = 1): Entry {
  return { index, term, type: 'normal', data: new Uint8Array(dataLength).fill(index & 0xff) };
}

function entries(from: number, terms: readonly number[], dataLength = 1): Entry[] {
  return terms.map((term, i) => entry(from + i, term, dataLength));
}

function snapshot(index: number, term: number): Snapshot {
  return {
    metadata: { index, term, confState: { voters: [1], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } },
    data: new Uint8Array(0),
  };
}

/**
 * A log whose storage holds `stored` (after a snapshot at `snapshotIndex`) and whose unstable
 * tail holds `unstable`.
 */
function log(
  options: { stored?: Entry[]; unstable?: Entry[]; snapshotAt?: [number, number]; applyingBytesMax?: number } = {},
): RaftLog {
  const storage = new MemoryLogStorage();
  if (options.snapshotAt !== undefined) storage.applySnapshot(snapshot(...options.snapshotAt));
  storage.append(options.stored ?? []);
  const raftLog = new RaftLog(storage, options.applyingBytesMax ?? UNLIMITED);
  raftLog.append(options.unstable ?? []);
  return raftLog;
}

const ids = (list: readonly Entry[]): number[] => list.map((e) => e.index);
const terms = (raftLog: RaftLog, from: number, to: number): number[] => {
  const out: number[] = [];
  for (let i = from; i <= to; i++) out.push(raftLog.term(i));
  return out;
};

function reason(read: () => unknown): string {
  try {
    read();
    return 'returned';
  } catch (error) {
    if (error instanceof LogUnavailableError) return error.reason;
    if (error instanceof RaftAssertionError) return 'assertion';
    throw error;
  }
}

describe('RaftLog construction and indexes', () => {
  it('starts committed and applied at the storage’s first index - 1', () => {
    const fresh = log({ stored: entries(1, [1, 1]) });
    expect([fresh.firstIndex(), fresh.lastIndex(), fresh.committed, fresh.applying, fresh.applied]).toEqual([1, 2, 0, 0, 0]);
    expect(fresh.unstable.offset).toBe(3);
    const compacted = log({ snapshotAt: [5, 2], stored: entries(6, [2, 3]) });
    expect([compacted.firstIndex(), compacted.lastIndex(), compacted.committed, compacted.applied]).toEqual([6, 7, 5, 5]);
  });

  it('answers terms across storage and the unstable tail', () => {
    const raftLog = log({ snapshotAt: [3, 1], stored: entries(4, [1, 2]), unstable: entries(6, [2, 3]) });
    expect(raftLog.firstIndex()).toBe(4);
    expect(raftLog.lastIndex()).toBe(7);
    expect(raftLog.lastTerm()).toBe(3);
    expect(terms(raftLog, 3, 7)).toEqual([1, 1, 2, 2, 3]);
    expect(reason(() => raftLog.term(2))).toBe('compacted');
    expect(reason(() => raftLog.term(8))).toBe('unavailable');
    expect([raftLog.maybeTerm(2), raftLog.maybeTerm(8), raftLog.maybeTerm(6)]).toEqual([undefined, undefined, 2]);
    expect([raftLog.matchTerm(6, 2), raftLog.matchTerm(6, 3), raftLog.matchTerm(9, 0)]).toEqual([true, false, false]);
  });

  it('has lastTerm 0 when empty', () => {
    const raftLog = log();
    expect([raftLog.firstIndex(), raftLog.lastIndex(), raftLog.lastTerm()]).toEqual([1, 0, 0]);
  });
});

describe('RaftLog.append', () => {
  it('returns the new last index, and the old one for no entries', () => {
    const raftLog = log({ stored: entries(1, [1, 1]) });
    expect(raftLog.append([])).toBe(2);
    expect(raftLog.append(entries(3, [2, 2]))).toBe(4);
    expect(raftLog.append(entries(2, [3]))).toBe(2);
    expect(terms(raftLog, 1, 2)).toEqual([1, 3]);
  });

  it('asserts it never overwrites committed entries', () => {
    const raftLog = log({ stored: entries(1, [1, 1, 1]) });
    raftLog.commitTo(2);
    expect(() => raftLog.append(entries(2, [2]))).toThrow(RaftAssertionError);
    expect(raftLog.append(entries(3, [2]))).toBe(3);
    expect(raftLog.term(3)).toBe(2);
  });

  it('asserts it never leaves a gap after the last index', () => {
    const raftLog = log({ stored: entries(1, [1, 1]) });
    expect(() => raftLog.append(entries(5, [2]))).toThrow(RaftAssertionError);
    expect(raftLog.lastIndex()).toBe(2);
    expect(raftLog.append(entries(3, [2]))).toBe(3);
  });
});

describe('RaftLog.maybeAppend', () => {
  // The log 1/1 2/2 3/3 with entry 1 committed, as in etcd's TestLogMaybeAppend.
  const base = (): RaftLog => {
    const raftLog = log({ stored: entries(1, [1, 2, 3]) });
    raftLog.commitTo(1);
    return raftLog;
  };

  it.each([
    // prev index, prev term, leader commit, entries (index/term) -> last new index, committed, terms after
    { name: 'rejects a term mismatch', index: 3, term: 2, commit: 3, add: [[4, 4]], want: undefined, committed: 1, log: [1, 2, 3] },
    { name: 'rejects an index beyond the log', index: 4, term: 3, commit: 3, add: [[5, 4]], want: undefined, committed: 1, log: [1, 2, 3] },
    { name: 'matches the last entry', index: 3, term: 3, commit: 3, add: [], want: 3, committed: 3, log: [1, 2, 3] },
    { name: 'never commits past the last new entry', index: 3, term: 3, commit: 4, add: [], want: 3, committed: 3, log: [1, 2, 3] },
    { name: 'commits up to the leader’s commit', index: 3, term: 3, commit: 2, add: [], want: 3, committed: 2, log: [1, 2, 3] },
    { name: 'never decreases commit', index: 3, term: 3, commit: 0, add: [], want: 3, committed: 1, log: [1, 2, 3] },
    { name: 'matches index 0', index: 0, term: 0, commit: 3, add: [], want: 0, committed: 1, log: [1, 2, 3] },
    { name: 'appends after the last entry', index: 3, term: 3, commit: 3, add: [[4, 4]], want: 4, committed: 3, log: [1, 2, 3, 4] },
    { name: 'commits the appended entry', index: 3, term: 3, commit: 4, add: [[4, 4]], want: 4, committed: 4, log: [1, 2, 3, 4] },
    { name: 'commits no further than what was sent', index: 3, term: 3, commit: 5, add: [[4, 4]], want: 4, committed: 4, log: [1, 2, 3, 4] },
    { name: 'appends two', index: 3, term: 3, commit: 5, add: [[4, 4], [5, 4]], want: 5, committed: 5, log: [1, 2, 3, 4, 4] },
    { name: 'replaces a conflicting last entry', index: 2, term: 2, commit: 3, add: [[3, 4]], want: 3, committed: 3, log: [1, 2, 4] },
    { name: 'replaces and truncates from the middle', index: 1, term: 1, commit: 3, add: [[2, 4]], want: 2, committed: 2, log: [1, 4] },
    { name: 'replaces two', index: 1, term: 1, commit: 3, add: [[2, 4], [3, 4]], want: 3, committed: 3, log: [1, 4, 4] },
    { name: 'keeps matching entries (no truncation)', index: 1, term: 1, commit: 1, add: [[2, 2]], want: 2, committed: 1, log: [1, 2, 3] },
  ])('$name', ({ index, term, commit, add, want, committed, log: wantTerms }) => {
    const raftLog = base();
    const sent = add.map(([i, t]) => entry(i!, t!));
    expect(raftLog.maybeAppend(index, term, commit, sent)).toBe(want);
    expect(raftLog.committed).toBe(committed);
    expect(raftLog.lastIndex()).toBe(wantTerms.length);
    expect(terms(raftLog, 1, wantTerms.length)).toEqual(wantTerms);
  });

  it('asserts when an entry conflicts with a committed one', () => {
    const raftLog = base();
    expect(() => raftLog.maybeAppend(0, 0, 3, [entry(1, 4)])).toThrow(RaftAssertionError);
    expect(terms(raftLog, 1, 3)).toEqual([1, 2, 3]);
  });
});

describe('RaftLog.findConflict', () => {
  const raftLog = log({ stored: entries(1, [1, 2, 3]) });
  it.each([
    [[], 0],
    [[[1, 1], [2, 2], [3, 3]], 0],
    [[[2, 2], [3, 3]], 0],
    [[[3, 3]], 0],
    [[[1, 1], [2, 2], [3, 3], [4, 4], [5, 4]], 4],
    [[[3, 3], [4, 4], [5, 4]], 4],
    [[[4, 4], [5, 4]], 4],
    [[[1, 4], [2, 4]], 1],
    [[[2, 1], [3, 4], [4, 4]], 2],
    [[[3, 1], [4, 2], [5, 4], [6, 4]], 3],
  ])('%j -> %i', (sent, want) => {
    expect(raftLog.findConflict(sent.map(([i, t]) => entry(i!, t!)))).toBe(want);
  });
});

describe('RaftLog.findConflictByTerm', () => {
  it.each([
    // index, term -> index, term; log 1/2 2/2 3/5 4/5 5/5
    [5, 6, 5, 5],
    [5, 5, 5, 5],
    [5, 4, 2, 2],
    [5, 2, 2, 2],
    [3, 4, 2, 2],
    [5, 1, 0, 0],
    [5, 0, 0, 0],
    [0, 3, 0, 0],
  ])('full log: (%i, %i) -> (%i, %i)', (index, term, wantIndex, wantTerm) => {
    const raftLog = log({ stored: entries(1, [2, 2, 5, 5, 5]) });
    expect(raftLog.findConflictByTerm(index, term)).toEqual({ index: wantIndex, term: wantTerm });
  });

  it.each([
    // log: snapshot 10/3, then 11/3 12/4 13/4 14/5
    [14, 5, 14, 5],
    [14, 4, 13, 4],
    [14, 3, 11, 3],
    [12, 3, 11, 3],
    [10, 3, 10, 3],
    // Below the snapshot nothing is known: the index may match (term 0).
    [14, 2, 9, 0],
    [12, 1, 9, 0],
  ])('compacted log: (%i, %i) -> (%i, %i)', (index, term, wantIndex, wantTerm) => {
    const raftLog = log({ snapshotAt: [10, 3], stored: entries(11, [3, 4, 4, 5]) });
    expect(raftLog.findConflictByTerm(index, term)).toEqual({ index: wantIndex, term: wantTerm });
  });
});

describe('RaftLog.isUpToDate', () => {
  const raftLog = log({ stored: entries(1, [1, 2, 3]) });
  it.each([
    [2, 4, true],
    [3, 4, true],
    [4, 4, true],
    [2, 2, false],
    [3, 2, false],
    [4, 2, false],
    [2, 3, false],
    [3, 3, true],
    [4, 3, true],
  ])('(lastIndex %i, lastTerm %i) -> %s', (index, term, want) => {
    expect(raftLog.isUpToDate(index, term)).toBe(want);
  });
});

describe('RaftLog commitment', () => {
  it('maybeCommit commits only an entry of the given term (the current-term rule)', () => {
    const raftLog = log({ stored: entries(1, [1, 1, 2]), unstable: entries(4, [2, 3]) });
    expect(raftLog.maybeCommit(4, 3)).toBe(false); // entry 4 is of term 2
    expect(raftLog.committed).toBe(0);
    expect(raftLog.maybeCommit(6, 3)).toBe(false); // beyond the log
    expect(raftLog.maybeCommit(5, 3)).toBe(true);
    expect(raftLog.committed).toBe(5);
    expect(raftLog.maybeCommit(5, 3)).toBe(false); // already committed
    expect(raftLog.maybeCommit(3, 2)).toBe(false); // never back
    expect(raftLog.committed).toBe(5);
  });

  it('commitTo never decreases and asserts the index is in the log', () => {
    const raftLog = log({ stored: entries(1, [1, 1, 1]) });
    raftLog.commitTo(2);
    raftLog.commitTo(1);
    expect(raftLog.committed).toBe(2);
    expect(() => raftLog.commitTo(4)).toThrow(RaftAssertionError);
    expect(raftLog.committed).toBe(2);
  });
});

describe('RaftLog.slice', () => {
  // Storage compacted at 3 holds 4..6; entries 7..9 are unstable. Sizes differ per entry.
  const sizes = [0, 0, 0, 0, 7, 1, 30, 0, 12, 5];
  const make = (): RaftLog =>
    log({
      snapshotAt: [3, 1],
      stored: [4, 5, 6].map((i) => entry(i, 1, sizes[i])),
      unstable: [7, 8, 9].map((i) => entry(i, 2, sizes[i])),
    });
  const bytes = (from: number, to: number): number => {
    let total = 0;
    for (let i = from; i <= to; i++) total += entryBytes(entry(i, 1, sizes[i]));
    return total;
  };

  it('reads storage, the unstable tail, and across the boundary', () => {
    const raftLog = make();
    expect(ids(raftLog.slice(4, 10, UNLIMITED))).toEqual([4, 5, 6, 7, 8, 9]);
    expect(ids(raftLog.slice(5, 8, UNLIMITED))).toEqual([5, 6, 7]);
    expect(ids(raftLog.slice(4, 7, UNLIMITED))).toEqual([4, 5, 6]);
    expect(ids(raftLog.slice(7, 9, UNLIMITED))).toEqual([7, 8]);
    expect(raftLog.slice(6, 6, UNLIMITED)).toEqual([]);
    expect(raftLog.slice(10, 10, UNLIMITED)).toEqual([]);
    expect(raftLog.slice(4, 10, UNLIMITED).map((e) => e.term)).toEqual([1, 1, 1, 2, 2, 2]);
  });

  it('throws compacted below the first index and asserts the other bounds', () => {
    const raftLog = make();
    expect(reason(() => raftLog.slice(3, 5, UNLIMITED))).toBe('compacted');
    expect(reason(() => raftLog.slice(4, 11, UNLIMITED))).toBe('assertion');
    expect(reason(() => raftLog.slice(6, 5, UNLIMITED))).toBe('assertion');
  });

  it('cuts at the byte limit on either side of the boundary, always at least one entry', () => {
    const raftLog = make();
    expect(ids(raftLog.slice(4, 10, 0))).toEqual([4]);
    expect(ids(raftLog.slice(7, 10, 0))).toEqual([7]);
    expect(ids(raftLog.slice(4, 10, bytes(4, 5) - 1))).toEqual([4]);
    expect(ids(raftLog.slice(4, 10, bytes(4, 5)))).toEqual([4, 5]);
    expect(ids(raftLog.slice(4, 10, bytes(4, 6)))).toEqual([4, 5, 6]);
    expect(ids(raftLog.slice(4, 10, bytes(4, 7) - 1))).toEqual([4, 5, 6]);
    expect(ids(raftLog.slice(4, 10, bytes(4, 7)))).toEqual([4, 5, 6, 7]);
    expect(ids(raftLog.slice(6, 10, bytes(6, 8)))).toEqual([6, 7, 8]);
    expect(ids(raftLog.slice(6, 10, bytes(6, 6)))).toEqual([6]);
    expect(ids(raftLog.slice(7, 10, bytes(7, 8)))).toEqual([7, 8]);
    expect(ids(raftLog.slice(4, 10, bytes(4, 9)))).toEqual([4, 5, 6, 7, 8, 9]);
  });

  it('returns the longest prefix within the limit (property)', () => {
    const raftLog = make();
    fc.assert(
      fc.property(fc.integer({ min: 4, max: 10 }), fc.integer({ min: 4, max: 10 }), fc.nat({ max: bytes(4, 9) + 5 }), (a, b, maxBytes) => {
        const lo = Math.min(a, b);
        const hi = Math.max(a, b);
        let n = lo < hi ? 1 : 0;
        while (lo + n < hi && bytes(lo, lo + n) <= maxBytes) n++;
        const want: number[] = [];
        for (let i = lo; i < lo + n; i++) want.push(i);
        expect(ids(raftLog.slice(lo, hi, maxBytes))).toEqual(want);
      }),
      { numRuns: 200 },
    );
  });

  it('reads replaced entries from the unstable tail, not the stale ones in storage', () => {
    const raftLog = log({ stored: entries(1, [1, 1, 1, 1]) });
    raftLog.append(entries(3, [2, 2, 2]));
    expect(raftLog.slice(1, 6, UNLIMITED).map((e) => [e.index, e.term])).toEqual([
      [1, 1],
      [2, 1],
      [3, 2],
      [4, 2],
      [5, 2],
    ]);
  });

  it('entriesFrom and allEntries read to the end', () => {
    const raftLog = make();
    expect(ids(raftLog.entriesFrom(8, UNLIMITED))).toEqual([8, 9]);
    expect(raftLog.entriesFrom(10, UNLIMITED)).toEqual([]);
    expect(ids(raftLog.entriesFrom(5, 0))).toEqual([5]);
    expect(ids(raftLog.allEntries())).toEqual([4, 5, 6, 7, 8, 9]);
    expect(reason(() => raftLog.entriesFrom(3, UNLIMITED))).toBe('compacted');
  });
});

describe('RaftLog committed entries and applying', () => {
  it('hands out committed entries up to the per-Ready byte limit', () => {
    // Each entry counts 10 payload bytes + the header towards the slice budget.
    const perEntry = entryBytes(entry(1, 1, 10));
    const raftLog = log({ stored: entries(1, [1, 1, 1, 1, 1, 1], 10), applyingBytesMax: 2 * perEntry });
    expect(raftLog.nextCommittedEntries()).toEqual([]);
    expect(raftLog.hasNextCommittedEntries()).toBe(false);
    raftLog.commitTo(5);
    expect(raftLog.hasNextCommittedEntries()).toBe(true);
    const first = raftLog.nextCommittedEntries();
    expect(ids(first)).toEqual([1, 2]);
    raftLog.acceptApplying(2, RaftLog.payloadBytes(first));
    expect(raftLog.applying).toBe(2);
    raftLog.appliedTo(2, RaftLog.payloadBytes(first));
    expect([raftLog.applied, raftLog.applying]).toEqual([2, 2]);
    expect(ids(raftLog.nextCommittedEntries())).toEqual([3, 4]);
    raftLog.acceptApplying(4, 20);
    raftLog.appliedTo(4, 20);
    // Only what is committed, even though entry 6 exists.
    expect(ids(raftLog.nextCommittedEntries())).toEqual([5]);
  });

  it('does not hand out entries that are already being applied', () => {
    const raftLog = log({ stored: entries(1, [1, 1, 1, 1]) });
    raftLog.commitTo(4);
    raftLog.acceptApplying(2, 2);
    expect(ids(raftLog.nextCommittedEntries())).toEqual([3, 4]);
    raftLog.acceptApplying(4, 2);
    expect(raftLog.nextCommittedEntries()).toEqual([]);
    expect(raftLog.hasNextCommittedEntries()).toBe(false);
  });

  it('pauses while the applying bytes are at the limit, and resumes when applied', () => {
    const raftLog = log({ stored: entries(1, [1, 1, 1], 120), applyingBytesMax: 100 });
    raftLog.commitTo(3);
    const batch = raftLog.nextCommittedEntries();
    expect(ids(batch)).toEqual([1]); // at least one entry, even over the limit
    raftLog.acceptApplying(1, 120);
    expect(raftLog.hasNextCommittedEntries()).toBe(false);
    expect(raftLog.nextCommittedEntries()).toEqual([]);
    raftLog.appliedTo(1, 120);
    expect(raftLog.hasNextCommittedEntries()).toBe(true);
    expect(ids(raftLog.nextCommittedEntries())).toEqual([2]);
  });

  it('hands out unstable committed entries too', () => {
    const raftLog = log({ stored: entries(1, [1]), unstable: entries(2, [1, 1]) });
    raftLog.commitTo(3);
    expect(ids(raftLog.nextCommittedEntries())).toEqual([1, 2, 3]);
  });

  it('holds committed entries back while a snapshot is pending', () => {
    const raftLog = log({ stored: entries(1, [1, 1]) });
    raftLog.restore(snapshot(5, 2));
    raftLog.append(entries(6, [2]));
    raftLog.commitTo(6);
    expect(raftLog.hasNextCommittedEntries()).toBe(false);
    expect(raftLog.nextCommittedEntries()).toEqual([]);
  });

  it('asserts applying and applied stay within [applied, committed]', () => {
    const raftLog = log({ stored: entries(1, [1, 1, 1, 1]) });
    raftLog.commitTo(3);
    expect(() => raftLog.acceptApplying(4, 0)).toThrow(RaftAssertionError);
    expect(() => raftLog.appliedTo(4, 0)).toThrow(RaftAssertionError);
    raftLog.appliedTo(2, 0);
    expect([raftLog.applied, raftLog.applying]).toEqual([2, 2]);
    expect(() => raftLog.appliedTo(1, 0)).toThrow(RaftAssertionError);
    raftLog.appliedTo(2, 0); // the same index again is fine
    raftLog.appliedTo(3, 0);
    expect(raftLog.applied).toBe(3);
  });

  it('appliedTo never lets the applying bytes go negative', () => {
    const raftLog = log({ stored: entries(1, [1, 1], 120), applyingBytesMax: 100 });
    raftLog.commitTo(2);
    raftLog.acceptApplying(1, 120);
    raftLog.appliedTo(1, 500);
    raftLog.acceptApplying(2, 99);
    expect(raftLog.hasNextCommittedEntries()).toBe(false); // all handed out, not paused
    expect(raftLog.applying).toBe(2);
  });
});

describe('RaftLog snapshots and stability', () => {
  it('restore makes the snapshot the whole log and commits it', () => {
    const raftLog = log({ stored: entries(1, [1, 1, 1]), unstable: entries(4, [2]) });
    const s = snapshot(10, 3);
    raftLog.restore(s);
    expect([raftLog.firstIndex(), raftLog.lastIndex(), raftLog.lastTerm(), raftLog.committed]).toEqual([11, 10, 3, 10]);
    expect(raftLog.snapshot()).toBe(s);
    expect(raftLog.hasNextOrInProgressSnapshot()).toBe(true);
    expect(reason(() => raftLog.term(9))).toBe('compacted');
    expect(reason(() => raftLog.term(3))).toBe('compacted');
    expect(raftLog.unstable.nextSnapshot()).toBe(s);
  });

  it('after the snapshot is persisted, storage answers again', () => {
    const raftLog = log({ stored: entries(1, [1, 1, 1]) });
    const s = snapshot(10, 3);
    raftLog.restore(s);
    raftLog.unstable.acceptInProgress();
    (raftLog.storage as MemoryLogStorage).applySnapshot(s);
    raftLog.stableSnapshotTo(10);
    expect(raftLog.hasNextOrInProgressSnapshot()).toBe(false);
    expect(raftLog.snapshot().metadata.index).toBe(10);
    expect([raftLog.firstIndex(), raftLog.lastIndex(), raftLog.term(10)]).toEqual([11, 10, 3]);
  });

  it('stableTo moves persisted entries out of the unstable tail', () => {
    const raftLog = log({ stored: entries(1, [1]), unstable: entries(2, [1, 2]) });
    const pending = raftLog.unstable.nextEntries();
    raftLog.unstable.acceptInProgress();
    (raftLog.storage as MemoryLogStorage).append(pending);
    raftLog.stableTo(3, 2);
    expect([raftLog.unstable.offset, raftLog.unstable.entries.length]).toEqual([4, 0]);
    expect(terms(raftLog, 1, 3)).toEqual([1, 1, 2]);
    raftLog.stableTo(3, 1); // a stale acknowledgement is ignored
    expect(raftLog.unstable.offset).toBe(4);
  });

  it('maybeTerm swallows only unavailability, never other storage failures', () => {
    const memory = new MemoryLogStorage();
    memory.append(entries(1, [1, 1]));
    let failing = false;
    const storage: LogStorage = {
      initialState: () => memory.initialState(),
      entries: (lo, hi, maxBytes) => memory.entries(lo, hi, maxBytes),
      term: (index) => {
        if (failing) throw new TypeError('disk on fire');
        return memory.term(index);
      },
      firstIndex: () => memory.firstIndex(),
      lastIndex: () => memory.lastIndex(),
      snapshot: () => memory.snapshot(),
    };
    const raftLog = new RaftLog(storage, UNLIMITED);
    expect(raftLog.maybeTerm(5)).toBeUndefined();
    failing = true;
    expect(() => raftLog.maybeTerm(1)).toThrow(TypeError);
  });
});
