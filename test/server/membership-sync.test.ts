import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ConfChangeSingle, ConfState } from '../../raft/index.js';
import { MembershipSync, type MembershipSyncHost, type RecordedMember, groupMatches, nextGroupChange } from '../../src/server/membership-sync.js';

const conf = (voters: number[], learners: number[] = [], votersOutgoing: number[] = []): ConfState => ({ voters, votersOutgoing, learners, learnersNext: [], autoLeave: false });

/** Applies one change as Raft's changer does, for the properties below. */
function applied(config: ConfState, change: ConfChangeSingle): ConfState {
  const voters = new Set(config.voters);
  const learners = new Set(config.learners);
  if (change.type === 'remove') {
    voters.delete(change.nodeId);
    learners.delete(change.nodeId);
  } else if (change.type === 'add-voter') {
    learners.delete(change.nodeId);
    voters.add(change.nodeId);
  } else if (change.type === 'add-learner' && !voters.has(change.nodeId)) {
    learners.add(change.nodeId);
  }
  return conf([...voters], [...learners]);
}

describe('nextGroupChange', () => {
  const none = () => false;

  it('adds a recorded member the group lacks, as voter or learner', () => {
    expect(nextGroupChange([{ id: 1, isLearner: false }, { id: 4, isLearner: false }], none, conf([1]))).toEqual({ type: 'add-voter', nodeId: 4 });
    expect(nextGroupChange([{ id: 1, isLearner: false }, { id: 4, isLearner: true }], none, conf([1]))).toEqual({ type: 'add-learner', nodeId: 4 });
  });

  it('promotes a learner the list records as a voter', () => {
    expect(nextGroupChange([{ id: 1, isLearner: false }, { id: 4, isLearner: false }], none, conf([1], [4]))).toEqual({ type: 'add-voter', nodeId: 4 });
  });

  it('removes a removed member first, and never the last voter', () => {
    const removed = (id: number) => id === 3;
    expect(nextGroupChange([{ id: 1, isLearner: false }, { id: 5, isLearner: false }], removed, conf([1, 3]))).toEqual({ type: 'remove', nodeId: 3 });
    expect(nextGroupChange([], removed, conf([3]))).toBeUndefined();
  });

  it('leaves alone an id the list neither names nor marks removed, and waits out a joint configuration', () => {
    expect(nextGroupChange([{ id: 1, isLearner: false }], none, conf([1, 9]))).toBeUndefined();
    expect(nextGroupChange([{ id: 1, isLearner: false }, { id: 2, isLearner: false }], none, conf([1], [], [1, 3]))).toBeUndefined();
  });

  it('never adds a removed id or removes a recorded one, and reaches the list in at most one change per member', () => {
    const ids = fc.integer({ min: 1, max: 12 });
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.record({ id: ids, isLearner: fc.boolean() }), { selector: (m) => m.id, maxLength: 6 }),
        fc.uniqueArray(ids, { maxLength: 6 }),
        fc.uniqueArray(ids, { minLength: 1, maxLength: 5 }),
        fc.uniqueArray(ids, { maxLength: 3 }),
        (recorded, removedIds, voters, learnerIds) => {
          const removed = new Set(removedIds.filter((id) => !recorded.some((m) => m.id === id)));
          const isRemoved = (id: number) => removed.has(id);
          let config = conf(voters, learnerIds.filter((id) => !voters.includes(id)));
          const steps = config.voters.length + config.learners.length + recorded.length;
          for (let step = 0; step <= steps; step++) {
            const change = nextGroupChange(recorded, isRemoved, config);
            if (change === undefined) break;
            if (change.type === 'remove') expect(recorded.some((m) => m.id === change.nodeId)).toBe(false);
            else expect(removed.has(change.nodeId)).toBe(false);
            config = applied(config, change);
            expect(config.voters.length).toBeGreaterThan(0);
          }
          expect(nextGroupChange(recorded, isRemoved, config)).toBeUndefined();
          for (const m of recorded) expect((m.isLearner ? config.learners.concat(config.voters) : config.voters).includes(m.id)).toBe(true);
          // Only the last voter may outlive its removal.
          const stale = [...config.voters, ...config.learners].filter(isRemoved);
          expect(stale.length === 0 || (stale.length === 1 && config.voters.length === 1)).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });
});

/** A node hosting one group (shard 1) that it leads; proposals apply at once unless told to fail. */
function fakeHost(members: RecordedMember[], removed: Set<number>, config: ConfState) {
  const host = {
    config,
    leading: true,
    failures: 0,
    reads: 0,
    proposed: [] as ConfChangeSingle[],
    warnings: [] as string[],
    groups: () => [1],
    leads: () => host.leading,
    members: () => members,
    isRemoved: (id: number) => removed.has(id),
    readMeta: async () => {
      host.reads++;
    },
    proposeChange: async (_shard: number, change: ConfChangeSingle) => {
      if (host.failures > 0) {
        host.failures--;
        throw new Error('etcdserver: no leader');
      }
      host.proposed.push(change);
      host.config = applied(host.config, change);
      sync.notify();
    },
    log: { info: () => {}, warn: (m: string) => host.warnings.push(m) },
  };
  const view: MembershipSyncHost = { ...host, config: () => host.config };
  const sync = new MembershipSync(view);
  return { host, sync };
}

describe('MembershipSync', () => {
  it('a leader brings its group to the list one change at a time, each after a read of the meta shard', async () => {
    const { host, sync } = fakeHost([{ id: 1, isLearner: false }, { id: 2, isLearner: false }, { id: 4, isLearner: false }], new Set([3]), conf([1, 2, 3]));
    expect(sync.settled()).toBe(false);
    expect(await sync.whenSettled(1000)).toBe(true);
    expect(host.proposed).toEqual([{ type: 'remove', nodeId: 3 }, { type: 'add-voter', nodeId: 4 }]);
    expect(host.reads).toBe(2);
    expect(groupMatches([{ id: 1, isLearner: false }, { id: 2, isLearner: false }, { id: 4, isLearner: false }], (id) => id === 3, host.config)).toBe(true);
  });

  it('a node that does not lead proposes nothing; a failed change is retried by the next poke and logged once', async () => {
    const { host, sync } = fakeHost([{ id: 1, isLearner: false }, { id: 2, isLearner: false }], new Set(), conf([1]));
    host.leading = false;
    expect(await sync.whenSettled(50)).toBe(false);
    expect(host.proposed).toEqual([]);
    host.leading = true;
    host.failures = 2;
    sync.poke();
    await new Promise((resolve) => setTimeout(resolve, 10));
    sync.poke();
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(host.proposed).toEqual([]);
    expect(host.warnings).toHaveLength(1);
    expect(await sync.whenSettled(1000)).toBe(true);
    expect(host.proposed).toEqual([{ type: 'add-voter', nodeId: 2 }]);
  });
});
