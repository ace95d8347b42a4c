import { describe, expect, it } from 'vitest';
import { type Entry, type Snapshot, RaftAssertionError } from '../../../raft/index.js';
import { UnstableLog } from '../../../raft/log-unstable.js';

function entries(from: number, terms: readonly number[]): Entry[] {
  return terms.map((term, i) => ({ index: from + i, term, type: 'normal', data: new Uint8Array([from + i]) }));
}

function snapshot(index: number, term: number): Snapshot {
  return {
    metadata: { index, term, confState: { voters: [1], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } },
    data: new Uint8Array(0),
  };
}

/** An unstable log at `offset` holding entries with the given terms, `inProgress` of them accepted. */
function unstable(offset: number, terms: readonly number[], inProgress = 0, snap?: Snapshot): UnstableLog {
  const u = new UnstableLog(offset);
  if (snap !== undefined) u.restore(snap);
  if (terms.length > 0) u.truncateAndAppend(entries(offset, terms));
  u.offsetInProgress = offset + inProgress;
  return u;
}

const ids = (list: readonly Entry[]): Array<[number, number]> => list.map((e) => [e.index, e.term]);

describe('UnstableLog indexes and terms', () => {
  it('knows no index when empty', () => {
    const u = new UnstableLog(5);
    expect([u.maybeFirstIndex(), u.maybeLastIndex(), u.maybeTerm(4), u.maybeTerm(5)]).toEqual([
      undefined,
      undefined,
      undefined,
      undefined,
    ]);
  });

  it('answers from the entries and, just below them, from the snapshot', () => {
    const u = unstable(5, [1, 2], 0, snapshot(4, 1));
    expect(u.maybeFirstIndex()).toBe(5);
    expect(u.maybeLastIndex()).toBe(6);
    expect([3, 4, 5, 6, 7].map((i) => u.maybeTerm(i))).toEqual([undefined, 1, 1, 2, undefined]);
  });

  it('answers lastIndex from the snapshot when there are no entries', () => {
    const u = unstable(5, [], 0, snapshot(4, 3));
    expect([u.maybeFirstIndex(), u.maybeLastIndex(), u.maybeTerm(4)]).toEqual([5, 4, 3]);
  });

  it('has no first index without a snapshot', () => {
    expect(unstable(5, [1]).maybeFirstIndex()).toBeUndefined();
    expect(unstable(5, [1]).maybeTerm(4)).toBeUndefined();
  });
});

describe('UnstableLog.truncateAndAppend', () => {
  it('asserts an append never leaves a gap', () => {
    const u = new UnstableLog(5);
    u.truncateAndAppend(entries(5, [1]));
    expect(() => u.truncateAndAppend(entries(8, [2]))).toThrow(RaftAssertionError);
    expect(u.maybeLastIndex()).toBe(5);
    u.truncateAndAppend(entries(6, [2]));
    expect(u.maybeLastIndex()).toBe(6);
  });

  it.each([
    // offset, terms, inProgress, appended at, appended terms -> offset, [index, term]..., inProgress
    {
      name: 'appends right after the last entry',
      offset: 5, terms: [1], inProgress: 1, at: 6, append: [1, 1],
      wantOffset: 5, want: [[5, 1], [6, 1], [7, 1]], wantInProgress: 6,
    },
    {
      name: 'replaces everything from the offset',
      offset: 5, terms: [1], inProgress: 1, at: 5, append: [2, 2],
      wantOffset: 5, want: [[5, 2], [6, 2]], wantInProgress: 5,
    },
    {
      name: 'replaces everything and moves the offset back',
      offset: 5, terms: [1], inProgress: 1, at: 4, append: [2, 2, 2],
      wantOffset: 4, want: [[4, 2], [5, 2], [6, 2]], wantInProgress: 4,
    },
    {
      name: 'truncates in the middle and keeps the earlier part in progress',
      offset: 5, terms: [1, 1, 1], inProgress: 3, at: 6, append: [2],
      wantOffset: 5, want: [[5, 1], [6, 2]], wantInProgress: 6,
    },
    {
      name: 'truncates in the middle before the in-progress point',
      offset: 5, terms: [1, 1, 1], inProgress: 1, at: 7, append: [2, 2],
      wantOffset: 5, want: [[5, 1], [6, 1], [7, 2], [8, 2]], wantInProgress: 6,
    },
    {
      name: 'truncates at the last entry',
      offset: 5, terms: [1, 1, 1], inProgress: 2, at: 7, append: [2, 2],
      wantOffset: 5, want: [[5, 1], [6, 1], [7, 2], [8, 2]], wantInProgress: 7,
    },
  ])('$name', ({ offset, terms, inProgress, at, append, wantOffset, want, wantInProgress }) => {
    const u = unstable(offset, terms, inProgress);
    u.truncateAndAppend(entries(at, append));
    expect(u.offset).toBe(wantOffset);
    expect(ids(u.entries)).toEqual(want);
    expect(u.offsetInProgress).toBe(wantInProgress);
  });

  it('does not keep the caller’s array', () => {
    const u = unstable(5, []);
    const batch = entries(5, [1, 1]);
    u.truncateAndAppend(batch);
    batch.push(entries(7, [1])[0]!);
    expect(u.entries.length).toBe(2);
  });
});

describe('UnstableLog.nextEntries and acceptInProgress', () => {
  it('hands out only entries not yet in progress', () => {
    const u = unstable(5, [1, 1, 1]);
    expect(u.hasNextEntries()).toBe(true);
    expect(ids(u.nextEntries())).toEqual([[5, 1], [6, 1], [7, 1]]);
    u.acceptInProgress();
    expect(u.offsetInProgress).toBe(8);
    expect(u.hasNextEntries()).toBe(false);
    expect(u.nextEntries()).toEqual([]);
    u.truncateAndAppend(entries(8, [2]));
    expect(ids(u.nextEntries())).toEqual([[8, 2]]);
  });

  it('hands out replaced entries again', () => {
    const u = unstable(5, [1, 1, 1]);
    u.acceptInProgress();
    u.truncateAndAppend(entries(6, [2]));
    expect(ids(u.nextEntries())).toEqual([[6, 2]]);
  });

  it('hands out the snapshot once', () => {
    const u = unstable(5, [], 0, snapshot(4, 1));
    expect(u.nextSnapshot()?.metadata.index).toBe(4);
    u.acceptInProgress();
    expect(u.snapshotInProgress).toBe(true);
    expect(u.nextSnapshot()).toBeUndefined();
    expect(u.snapshot?.metadata.index).toBe(4);
  });

  it('leaves an empty log alone', () => {
    const u = new UnstableLog(5);
    u.acceptInProgress();
    expect([u.offsetInProgress, u.snapshotInProgress]).toEqual([5, false]);
  });
});

describe('UnstableLog.stableTo', () => {
  it.each([
    // offset, terms, inProgress, stable (index, term) -> offset, inProgress, remaining
    { name: 'drops the persisted prefix', offset: 5, terms: [1, 1, 1], inProgress: 3, index: 6, term: 1, wantOffset: 7, wantInProgress: 8, left: 1 },
    { name: 'drops everything', offset: 5, terms: [1, 1], inProgress: 2, index: 6, term: 1, wantOffset: 7, wantInProgress: 7, left: 0 },
    { name: 'moves the in-progress point along', offset: 5, terms: [1, 1, 1], inProgress: 0, index: 5, term: 1, wantOffset: 6, wantInProgress: 6, left: 2 },
    { name: 'ignores a replaced entry (term mismatch)', offset: 5, terms: [1, 2], inProgress: 2, index: 6, term: 1, wantOffset: 5, wantInProgress: 7, left: 2 },
    { name: 'ignores an index below the entries', offset: 5, terms: [1], inProgress: 1, index: 4, term: 1, wantOffset: 5, wantInProgress: 6, left: 1 },
    { name: 'ignores an index beyond the entries', offset: 5, terms: [1], inProgress: 1, index: 6, term: 1, wantOffset: 5, wantInProgress: 6, left: 1 },
  ])('$name', ({ offset, terms, inProgress, index, term, wantOffset, wantInProgress, left }) => {
    const u = unstable(offset, terms, inProgress);
    u.stableTo(index, term);
    expect([u.offset, u.offsetInProgress, u.entries.length]).toEqual([wantOffset, wantInProgress, left]);
  });

  it('ignores the snapshot index (the snapshot is made stable separately)', () => {
    const u = unstable(5, [1], 1, snapshot(4, 1));
    u.stableTo(4, 1);
    expect([u.offset, u.entries.length, u.snapshot?.metadata.index]).toEqual([5, 1, 4]);
  });

  it('ignores a write of entries that were replaced while it was in flight', () => {
    const u = unstable(5, [1, 1, 1]);
    u.acceptInProgress(); // 5..7 at term 1 are being written
    u.truncateAndAppend(entries(6, [2, 2])); // 6, 7 replaced at term 2
    u.stableTo(7, 1); // the write of the old 7 completes
    expect(ids(u.entries)).toEqual([[5, 1], [6, 2], [7, 2]]);
    expect(u.offset).toBe(5);
    u.stableTo(5, 1); // the old 5 is still valid
    expect(ids(u.entries)).toEqual([[6, 2], [7, 2]]);
    expect(u.offset).toBe(6);
    expect(ids(u.nextEntries())).toEqual([[6, 2], [7, 2]]);
  });
});

describe('UnstableLog snapshots', () => {
  it('restore replaces entries with the snapshot', () => {
    const u = unstable(5, [1, 1], 2);
    u.restore(snapshot(9, 3));
    expect([u.offset, u.offsetInProgress, u.entries.length, u.snapshotInProgress]).toEqual([10, 10, 0, false]);
    expect(u.maybeTerm(9)).toBe(3);
    expect(u.maybeLastIndex()).toBe(9);
  });

  it('stableSnapshotTo clears only the matching snapshot', () => {
    const u = unstable(5, [], 0, snapshot(4, 1));
    u.acceptInProgress();
    u.stableSnapshotTo(3);
    expect(u.snapshot).toBeDefined();
    u.stableSnapshotTo(4);
    expect([u.snapshot, u.snapshotInProgress]).toEqual([undefined, false]);
  });
});

describe('UnstableLog.slice', () => {
  it('returns entries in [lo, hi)', () => {
    const u = unstable(5, [1, 2, 3]);
    expect(ids(u.slice(5, 8))).toEqual([[5, 1], [6, 2], [7, 3]]);
    expect(ids(u.slice(6, 7))).toEqual([[6, 2]]);
    expect(u.slice(7, 7)).toEqual([]);
  });

  it('asserts the bounds', () => {
    const u = unstable(5, [1, 2, 3]);
    expect(() => u.slice(4, 6)).toThrow(RaftAssertionError);
    expect(() => u.slice(5, 9)).toThrow(RaftAssertionError);
    expect(() => u.slice(7, 6)).toThrow(RaftAssertionError);
  });
});
