/** Each safety check of the simulator must be able to fail: fed a violation, it reports it. */
import { describe, expect, it } from 'vitest';
import type { Entry, Raft } from '../../raft/index.js';
import { SafetyChecker, SafetyViolation } from '../../jepsen-lite/sim/index.js';
import { CHAIN_START, extendChain } from '../../jepsen-lite/sim/safety.js';

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const entry = (index: number, term: number, data = `e${index}`): Entry => ({ index, term, type: 'normal', data: bytes(data) });

/** A stand-in exposing only what the checker reads: id, term and the log's terms and commit. */
function fakeRaft(id: number, term: number, terms: readonly number[], committed: number, firstIndex = 1): Raft {
  return {
    id,
    term,
    log: {
      committed,
      firstIndex: () => firstIndex,
      lastIndex: () => terms.length,
      maybeTerm: (i: number) => (i === 0 ? 0 : i >= firstIndex - 1 && i <= terms.length ? terms[i - 1] : undefined),
    },
  } as unknown as Raft;
}

function violationOf(action: () => void): string {
  try {
    action();
  } catch (error) {
    if (error instanceof SafetyViolation) return error.kind;
    throw error;
  }
  return 'none';
}

describe('SafetyChecker', () => {
  it('election safety: two leaders in one term', () => {
    const checker = new SafetyChecker();
    checker.observeLeader(fakeRaft(1, 3, [1, 3], 0));
    checker.observeLeader(fakeRaft(1, 3, [1, 3], 0)); // the same leader again is fine
    expect(violationOf(() => checker.observeLeader(fakeRaft(2, 3, [1, 3], 0)))).toBe('election-safety');
  });

  it('leader completeness: a leader missing a committed entry', () => {
    const checker = new SafetyChecker();
    checker.observeCommit(fakeRaft(1, 2, [1, 2, 2], 3));
    expect(violationOf(() => checker.observeLeader(fakeRaft(2, 3, [1, 2], 2)))).toBe('leader-completeness');
    expect(violationOf(() => checker.observeLeader(fakeRaft(3, 4, [1, 2, 3], 2)))).toBe('leader-completeness');
    expect(violationOf(() => checker.observeLeader(fakeRaft(4, 5, [1, 2, 2, 5], 3)))).toBe('none');
  });

  it('leader completeness covers earlier terms only: a stale-term leader elected late is no violation', () => {
    // Found by the simulator: a candidate of term 3, paused, receives its last vote after term 4
    // committed more entries; Raft promises the term-4 commits only to leaders of later terms.
    const checker = (): SafetyChecker => {
      const c = new SafetyChecker();
      c.observeCommit(fakeRaft(1, 2, [1, 2], 2));
      c.observeCommit(fakeRaft(2, 4, [1, 2, 2, 4], 4));
      return c;
    };
    expect(violationOf(() => checker().observeLeader(fakeRaft(3, 3, [1, 2], 2)))).toBe('none');
    expect(violationOf(() => checker().observeLeader(fakeRaft(3, 3, [1], 1)))).toBe('leader-completeness');
    expect(violationOf(() => checker().observeLeader(fakeRaft(4, 5, [1, 2, 2], 2)))).toBe('leader-completeness');
  });

  it('commit safety: a different term committed at an index', () => {
    const checker = new SafetyChecker();
    checker.observeCommit(fakeRaft(1, 2, [1, 2], 2));
    expect(violationOf(() => checker.observeCommit(fakeRaft(2, 3, [1, 3], 2)))).toBe('commit-safety');
  });

  it('log matching: two different entries with one index and term', () => {
    const checker = new SafetyChecker();
    const a = fakeRaft(1, 2, [1], 0);
    checker.observeEntries(a, [entry(2, 2, 'x')]);
    expect(violationOf(() => checker.observeEntries(a, [entry(2, 2, 'x')]))).toBe('none');
    expect(violationOf(() => checker.observeEntries(fakeRaft(2, 2, [1], 0), [entry(2, 2, 'y')]))).toBe('log-matching');
  });

  it('log matching: the same entry after a different predecessor', () => {
    const checker = new SafetyChecker();
    checker.observeEntries(fakeRaft(1, 3, [1, 1], 0), [entry(3, 3, 'x')]);
    expect(violationOf(() => checker.observeEntries(fakeRaft(2, 3, [1, 2], 0), [entry(3, 3, 'x')]))).toBe('log-matching');
  });

  it('state machine safety: different applied sequences, gaps and repeats', () => {
    const checker = new SafetyChecker();
    const one = extendChain(CHAIN_START, entry(1, 1, 'a'));
    checker.observeApply(1, 0, entry(1, 1, 'a'), one);
    expect(violationOf(() => checker.observeApply(2, 0, entry(1, 1, 'b'), extendChain(CHAIN_START, entry(1, 1, 'b'))))).toBe(
      'state-machine-safety',
    );
    expect(violationOf(() => checker.observeApply(3, 2, entry(2, 1, 'a'), one))).toBe('state-machine-safety');
    expect(violationOf(() => checker.observeSnapshotRestore(4, 1, { a: one.a ^ 1, b: one.b }))).toBe('state-machine-safety');
    expect(violationOf(() => checker.observeSnapshotRestore(4, 1, one))).toBe('none');
  });

  it('read safety: a read index below what was committed when the read began', () => {
    const checker = new SafetyChecker();
    expect(violationOf(() => checker.observeRead(1, 7, 7))).toBe('none');
    expect(violationOf(() => checker.observeRead(1, 6, 7))).toBe('read-safety');
  });
});
