import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type JointConfig,
  type VoteResult,
  jointCommittedIndex,
  jointVoteResult,
  majorityCommittedIndex,
  majorityVoteResult,
} from '../../../raft/index.js';
import { jointVoterIds } from '../../../raft/quorum.js';

const set = (...ids: number[]): Set<number> => new Set(ids);

/** An acked-index function from a map; ids not in it are unknown. */
function ackedFrom(acks: Record<number, number>): (id: number) => number | undefined {
  return (id) => acks[id];
}

function votesFrom(votes: Record<number, boolean>): Map<number, boolean> {
  return new Map(Object.entries(votes).map(([id, v]) => [Number(id), v]));
}

describe('majorityCommittedIndex', () => {
  it('is +Infinity for an empty configuration', () => {
    expect(majorityCommittedIndex(set(), ackedFrom({}))).toBe(Number.POSITIVE_INFINITY);
  });

  it('is the index of the single voter', () => {
    expect(majorityCommittedIndex(set(1), ackedFrom({ 1: 7 }))).toBe(7);
    expect(majorityCommittedIndex(set(1), ackedFrom({}))).toBe(0);
  });

  it.each([
    // voters' acked indexes (missing ones are unknown) -> committed
    [{ 1: 5, 2: 5 }, [1, 2], 5],
    [{ 1: 5, 2: 3 }, [1, 2], 3],
    [{ 1: 5 }, [1, 2], 0],
    [{ 1: 10, 2: 5, 3: 1 }, [1, 2, 3], 5],
    [{ 1: 10, 2: 5 }, [1, 2, 3], 5],
    [{ 1: 10 }, [1, 2, 3], 0],
    [{ 1: 1, 2: 2, 3: 3, 4: 4 }, [1, 2, 3, 4], 2],
    [{ 1: 4, 2: 4, 3: 4, 4: 1 }, [1, 2, 3, 4], 4],
    [{ 1: 9, 2: 8, 3: 7, 4: 6, 5: 5 }, [1, 2, 3, 4, 5], 7],
    [{ 1: 9, 2: 8, 5: 5 }, [1, 2, 3, 4, 5], 5],
    [{ 1: 3, 2: 3, 3: 3, 4: 3, 5: 3, 6: 100, 7: 100 }, [1, 2, 3, 4, 5, 6, 7], 3],
  ] as const)('acks %j of voters %j commit %i', (acks, voters, committed) => {
    expect(majorityCommittedIndex(new Set(voters), ackedFrom(acks))).toBe(committed);
  });

  it('ignores acknowledgements of non-voters', () => {
    expect(majorityCommittedIndex(set(1, 2, 3), ackedFrom({ 1: 1, 4: 9, 5: 9 }))).toBe(0);
  });

  it('is the largest index a majority acknowledged (brute force, property)', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: 20 }), { minLength: 1, maxLength: 9 }),
        fc.array(fc.option(fc.nat({ max: 12 }), { nil: undefined }), { minLength: 9, maxLength: 9 }),
        (voters, indexes) => {
          const acks = new Map(voters.map((id, i) => [id, indexes[i]]));
          const acked = (id: number): number | undefined => acks.get(id);
          const quorum = Math.floor(voters.length / 2) + 1;
          let expected = 0;
          for (let candidate = 0; candidate <= 12; candidate++) {
            const holders = voters.filter((id) => (acked(id) ?? 0) >= candidate).length;
            if (holders >= quorum) expected = candidate;
          }
          expect(majorityCommittedIndex(new Set(voters), acked)).toBe(expected);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('jointCommittedIndex', () => {
  it('is the minimum of the two halves', () => {
    const acked = ackedFrom({ 1: 10, 2: 9, 3: 8, 4: 2, 5: 1 });
    expect(jointCommittedIndex([set(1, 2, 3), set()], acked)).toBe(9);
    expect(jointCommittedIndex([set(1, 2, 3), set(3, 4, 5)], acked)).toBe(2);
    expect(jointCommittedIndex([set(3, 4, 5), set(1, 2, 3)], acked)).toBe(2);
  });

  it('is +Infinity when both halves are empty', () => {
    expect(jointCommittedIndex([set(), set()], ackedFrom({ 1: 3 }))).toBe(Number.POSITIVE_INFINITY);
  });

  it('equals min(majority(incoming), majority(outgoing)) (property)', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: 9 }), { maxLength: 6 }),
        fc.uniqueArray(fc.integer({ min: 1, max: 9 }), { maxLength: 6 }),
        fc.array(fc.nat({ max: 20 }), { minLength: 10, maxLength: 10 }),
        (incoming, outgoing, indexes) => {
          const acked = (id: number): number | undefined => indexes[id];
          const config: JointConfig = [new Set(incoming), new Set(outgoing)];
          expect(jointCommittedIndex(config, acked)).toBe(
            Math.min(majorityCommittedIndex(config[0], acked), majorityCommittedIndex(config[1], acked)),
          );
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('majorityVoteResult', () => {
  it('is won for an empty configuration', () => {
    expect(majorityVoteResult(set(), votesFrom({}))).toBe('won');
    expect(majorityVoteResult(set(), votesFrom({ 1: false }))).toBe('won');
  });

  it.each([
    [[1], {}, 'pending'],
    [[1], { 1: true }, 'won'],
    [[1], { 1: false }, 'lost'],
    [[1, 2], { 1: true }, 'pending'],
    [[1, 2], { 1: true, 2: true }, 'won'],
    [[1, 2], { 1: true, 2: false }, 'lost'],
    [[1, 2, 3], { 1: true }, 'pending'],
    [[1, 2, 3], { 1: true, 2: false }, 'pending'],
    [[1, 2, 3], { 1: true, 2: true }, 'won'],
    [[1, 2, 3], { 1: false, 2: false }, 'lost'],
    [[1, 2, 3, 4], { 1: true, 2: true }, 'pending'],
    [[1, 2, 3, 4], { 1: true, 2: true, 3: false }, 'pending'],
    [[1, 2, 3, 4], { 1: true, 2: false, 3: false }, 'lost'],
    [[1, 2, 3, 4], { 1: true, 2: true, 3: true }, 'won'],
    [[1, 2, 3], { 4: true, 5: true }, 'pending'], // non-voters do not count
  ] as const)('voters %j with votes %j: %s', (voters, votes, result) => {
    expect(majorityVoteResult(new Set(voters), votesFrom(votes))).toBe(result);
  });
});

describe('jointVoteResult', () => {
  it.each([
    [[1, 2, 3], [], { 1: true, 2: true }, 'won'],
    [[1, 2, 3], [3, 4, 5], { 1: true, 2: true }, 'pending'],
    [[1, 2, 3], [3, 4, 5], { 1: true, 2: true, 3: true, 4: true }, 'won'],
    [[1, 2, 3], [3, 4, 5], { 1: true, 2: true, 4: false, 5: false }, 'lost'],
    [[1, 2, 3], [3, 4, 5], { 1: false, 2: false, 4: true, 5: true }, 'lost'],
    [[1, 2, 3], [3, 4, 5], { 1: false, 4: true }, 'pending'],
    [[], [], {}, 'won'],
  ] as const)('incoming %j outgoing %j votes %j: %s', (incoming, outgoing, votes, result) => {
    expect(jointVoteResult([new Set(incoming), new Set(outgoing)], votesFrom(votes))).toBe(result);
  });

  it('is what every way of filling in the missing votes agrees on (property)', () => {
    // won: every completion wins both halves; lost: none does; pending: it depends.
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: 8 }), { maxLength: 5 }),
        fc.uniqueArray(fc.integer({ min: 1, max: 8 }), { maxLength: 5 }),
        fc.array(fc.constantFrom<boolean | undefined>(true, false, undefined), { minLength: 9, maxLength: 9 }),
        (incoming, outgoing, cast) => {
          const config: JointConfig = [new Set(incoming), new Set(outgoing)];
          const votes = new Map<number, boolean>();
          cast.forEach((v, id) => {
            if (v !== undefined) votes.set(id, v);
          });
          const missing = jointVoterIds(config).filter((id) => !votes.has(id));
          const wins = (complete: Map<number, boolean>): boolean =>
            config.every((half) => {
              if (half.size === 0) return true;
              const yes = [...half].filter((id) => complete.get(id) === true).length;
              return yes >= Math.floor(half.size / 2) + 1;
            });
          let anyWin = false;
          let anyLoss = false;
          for (let mask = 0; mask < 1 << missing.length; mask++) {
            const complete = new Map(votes);
            missing.forEach((id, bit) => complete.set(id, (mask & (1 << bit)) !== 0));
            if (wins(complete)) anyWin = true;
            else anyLoss = true;
          }
          const expected: VoteResult = anyWin && !anyLoss ? 'won' : anyLoss && !anyWin ? 'lost' : 'pending';
          expect(jointVoteResult(config, votes)).toBe(expected);
          if (outgoing.length === 0) expect(majorityVoteResult(config[0], votes)).toBe(expected);
        },
      ),
      { numRuns: 200 },
    );
  });
});
