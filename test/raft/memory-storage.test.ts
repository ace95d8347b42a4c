import { describe, expect, it } from 'vitest';
import {
  type ConfState,
  type Entry,
  MemoryLogStorage,
  RaftAssertionError,
  decodeConfChange,
} from '../../raft/index.js';
import { describeLogStorageConformance } from './log-storage-conformance.js';

describeLogStorageConformance('MemoryLogStorage', async () => {
  const store = new MemoryLogStorage();
  return { storage: store, writer: store };
});

function entries(from: number, terms: readonly number[]): Entry[] {
  return terms.map((term, i) => ({ index: from + i, term, type: 'normal', data: new Uint8Array([i]) }));
}

const threeVoters: ConfState = { voters: [1, 2, 3], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };

describe('MemoryLogStorage.createSnapshot', () => {
  it('records a snapshot at an index in the log and keeps the entries', () => {
    const store = new MemoryLogStorage();
    store.append(entries(1, [1, 1, 2, 3, 3]));
    const data = new Uint8Array([7, 8, 9]);
    const s = store.createSnapshot(4, threeVoters, data);
    expect(s.metadata).toEqual({ index: 4, term: 3, confState: threeVoters });
    expect(s.data).toEqual(data);
    expect(store.snapshot()).toBe(s);
    expect(store.initialState().confState).toEqual(threeVoters);
    expect(store.firstIndex()).toBe(1);
    expect(store.lastIndex()).toBe(5);
  });

  it('is followed by compact to drop the covered entries', () => {
    const store = new MemoryLogStorage();
    store.append(entries(1, [1, 1, 2, 3, 3]));
    store.createSnapshot(4, threeVoters, new Uint8Array(0));
    store.compact(4);
    expect(store.firstIndex()).toBe(5);
    expect(store.term(4)).toBe(3);
    expect(store.entries(5, 6, 0).map((e) => e.index)).toEqual([5]);
  });

  it('refuses a snapshot that is not newer, or beyond the last index', () => {
    const store = new MemoryLogStorage();
    store.append(entries(1, [1, 1, 2]));
    store.createSnapshot(2, threeVoters, new Uint8Array(0));
    expect(() => store.createSnapshot(2, threeVoters, new Uint8Array(0))).toThrow(RaftAssertionError);
    expect(() => store.createSnapshot(1, threeVoters, new Uint8Array(0))).toThrow(RaftAssertionError);
    expect(() => store.createSnapshot(4, threeVoters, new Uint8Array(0))).toThrow(RaftAssertionError);
    expect(store.createSnapshot(3, threeVoters, new Uint8Array(0)).metadata.term).toBe(2);
  });

  it('refuses an index that is already compacted away', () => {
    const store = new MemoryLogStorage();
    store.append(entries(1, [1, 1, 2, 2]));
    store.compact(3);
    expect(() => store.createSnapshot(2, threeVoters, new Uint8Array(0))).toThrow();
    expect(store.snapshot().metadata.index).toBe(0);
  });
});

describe('MemoryLogStorage.bootstrapped', () => {
  it('starts with one committed add-voter entry per member at term 1', () => {
    const store = MemoryLogStorage.bootstrapped([3, 1, 2]);
    expect(store.firstIndex()).toBe(1);
    expect(store.lastIndex()).toBe(3);
    const log = store.entries(1, 4, Number.MAX_SAFE_INTEGER);
    expect(log.map((e) => [e.index, e.term, e.type])).toEqual([
      [1, 1, 'conf-change'],
      [2, 1, 'conf-change'],
      [3, 1, 'conf-change'],
    ]);
    expect(log.map((e) => decodeConfChange(e.data))).toEqual(
      [3, 1, 2].map((nodeId) => ({ transition: 'auto', changes: [{ type: 'add-voter', nodeId }], context: new Uint8Array(0) })),
    );
    expect(store.initialState().hardState).toEqual({ term: 1, vote: 0, commit: 3 });
    // The configuration comes from applying the entries, not from a snapshot.
    expect(store.initialState().confState.voters).toEqual([]);
    expect(store.snapshot().metadata.index).toBe(0);
  });

  it('refuses no voters, duplicate ids and invalid ids', () => {
    expect(() => MemoryLogStorage.bootstrapped([])).toThrow(TypeError);
    expect(() => MemoryLogStorage.bootstrapped([1, 2, 1])).toThrow(TypeError);
    expect(() => MemoryLogStorage.bootstrapped([0])).toThrow(TypeError);
    expect(() => MemoryLogStorage.bootstrapped([1.5])).toThrow(TypeError);
    expect(() => MemoryLogStorage.bootstrapped([-2])).toThrow(TypeError);
  });
});

describe('MemoryLogStorage.withMembers', () => {
  it('records the members as if by a snapshot at index 0', () => {
    const store = MemoryLogStorage.withMembers([1, 2], [3]);
    expect(store.firstIndex()).toBe(1);
    expect(store.lastIndex()).toBe(0);
    expect(store.term(0)).toBe(0);
    expect(store.snapshot().metadata.index).toBe(0);
    expect(store.initialState().confState).toEqual({
      voters: [1, 2],
      votersOutgoing: [],
      learners: [3],
      learnersNext: [],
      autoLeave: false,
    });
    expect(store.initialState().hardState).toEqual({ term: 0, vote: 0, commit: 0 });
  });

  it('copies the member lists', () => {
    const voters = [1, 2];
    const learners: number[] = [];
    const store = MemoryLogStorage.withMembers(voters, learners);
    voters.push(9);
    learners.push(8);
    expect(store.initialState().confState.voters).toEqual([1, 2]);
    expect(store.initialState().confState.learners).toEqual([]);
  });

  it('accepts any later snapshot and the first entries', () => {
    const store = MemoryLogStorage.withMembers([1]);
    store.append(entries(1, [1, 1]));
    expect(store.lastIndex()).toBe(2);
    store.applySnapshot({ metadata: { index: 1, term: 1, confState: threeVoters }, data: new Uint8Array(0) });
    expect(store.initialState().confState).toEqual(threeVoters);
  });
});

describe('MemoryLogStorage argument checks', () => {
  it('asserts lo <= hi in entries()', () => {
    const store = new MemoryLogStorage();
    store.append(entries(1, [1, 1]));
    expect(() => store.entries(2, 1, 100)).toThrow(RaftAssertionError);
  });

  it('asserts hard state fields are non-negative safe integers', () => {
    const store = new MemoryLogStorage();
    expect(() => store.setHardState({ term: -1, vote: 0, commit: 0 })).toThrow(RaftAssertionError);
    expect(() => store.setHardState({ term: 1, vote: 0, commit: 0.5 })).toThrow(RaftAssertionError);
    expect(store.initialState().hardState).toEqual({ term: 0, vote: 0, commit: 0 });
  });
});
