import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ConfChangeSingle, ConfState } from '../../raft/index.js';
import { MembershipSync, type MembershipSyncHost, type RecordedMember, nextGroupChange, nextPlacedChange } from '../../src/server/membership-sync.js';

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
  } else if (change.type === 'add-learner') {
    // Raft demotes a voter this way (the meta shard refuses it where it applies; a group would not).
    voters.delete(change.nodeId);
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

/**
 * A node hosting groups (shard 1 unless told) that it leads; proposals apply at once unless told to
 * fail. Every group has `config` unless `configs` gives it its own. The meta version moves whenever
 * the members or removals differ from the last time it was asked, as the meta shard's applied index
 * does; the calls of the member list and of isRemoved are counted.
 */
function fakeHost(initial: { members: RecordedMember[]; removed: number[]; config: ConfState; groups?: number[]; promotionSettleMs?: number }) {
  const host = {
    members: initial.members,
    removed: new Set(initial.removed),
    config: initial.config,
    configs: new Map<number, ConfState>(),
    /** Per group, the members the map places it on (absent: every member). */
    replicas: new Map<number, number[]>(),
    /** What the meta shard says once read linearizably (undefined: what this node has already). */
    onRead: undefined as undefined | (() => void),
    leading: true,
    failures: 0,
    reads: 0,
    nowMs: 0,
    proposed: [] as ConfChangeSingle[],
    proposedTo: [] as number[],
    warnings: [] as string[],
    memberReads: 0,
    memberWalks: 0,
    removedAsks: 0,
    /** Members whose log is near enough the leader's (placed groups promote them). */
    caughtUp: new Set<number>(),
    /** Members whose log is behind the leader's commit index. */
    lagging: new Set<number>(),
    transfers: [] as Array<{ shard: number; to: number }>,
    /** Per group, the replica move under way. */
    moving: new Map<number, { from: number; to: number }>(),
    finished: [] as Array<{ shard: number; from: number; to: number }>,
    metaVersion: 0,
    metaSeen: '',
  };
  const configOf = (shard: number): ConfState => host.configs.get(shard) ?? host.config;
  const view: MembershipSyncHost = {
    groups: () => initial.groups ?? [1],
    leads: () => host.leading,
    config: configOf,
    metaVersion: () => {
      const seen = JSON.stringify([host.members, [...host.removed].sort()]);
      if (seen !== host.metaSeen) host.metaVersion++;
      host.metaSeen = seen;
      return host.metaVersion;
    },
    members: () => {
      host.memberReads++;
      // Counts the walks of the list: one per group compared with it.
      return new Proxy(host.members, {
        get: (target, property, receiver) => {
          if (property === Symbol.iterator) host.memberWalks++;
          return Reflect.get(target, property, receiver) as unknown;
        },
      });
    },
    replicasOf: (shard) => host.replicas.get(shard) ?? [],
    isRemoved: (id) => {
      host.removedAsks++;
      return host.removed.has(id);
    },
    readMeta: async () => {
      host.reads++;
      host.onRead?.();
    },
    proposeChange: async (shard, change) => {
      if (host.failures > 0) {
        host.failures--;
        throw new Error('etcdserver: no leader');
      }
      host.proposed.push(change);
      host.proposedTo.push(shard);
      if (host.configs.has(shard)) host.configs.set(shard, applied(configOf(shard), change));
      else host.config = applied(host.config, change);
    },
    self: 1,
    caughtUp: (_shard, id) => host.caughtUp.has(id),
    inSync: (_shard, id) => !host.lagging.has(id),
    promotionSettleMs: initial.promotionSettleMs ?? 0,
    transferLeader: (shard, to) => host.transfers.push({ shard, to }),
    movingOf: (shard) => host.moving.get(shard),
    finishMove: async (shard, from, to) => {
      host.finished.push({ shard, from, to });
      // The meta shard applies it: the list takes `to` in `from`'s place.
      host.moving.delete(shard);
      host.replicas.set(shard, [...(host.replicas.get(shard) ?? []).filter((id) => id !== from), to].sort((a, b) => a - b));
      host.metaVersion++;
    },
    addAfterMs: 1000,
    now: () => host.nowMs,
    log: { info: () => {}, warn: (m) => host.warnings.push(m) },
  };
  return { host, sync: new MembershipSync(view) };
}

const voter = (id: number): RecordedMember => ({ id, isLearner: false });

describe('nextPlacedChange', () => {
  const none = () => false;
  const all = () => true;

  it('moves a replica as learner, promotion, then removal; nothing while the learner catches up', () => {
    // Leader 1 of {1, 2, 3}; the list moved 3 to 4.
    expect(nextPlacedChange([1, 2, 4], none, conf([1, 2, 3]), 1, none)).toEqual({ change: { type: 'add-learner', nodeId: 4 } });
    expect(nextPlacedChange([1, 2, 4], none, conf([1, 2, 3], [4]), 1, none)).toBeUndefined();
    expect(nextPlacedChange([1, 2, 4], none, conf([1, 2, 3], [4]), 1, all)).toEqual({ change: { type: 'add-voter', nodeId: 4 } });
    expect(nextPlacedChange([1, 2, 4], none, conf([1, 2, 3, 4]), 1, all)).toEqual({ change: { type: 'remove', nodeId: 3 } });
    expect(nextPlacedChange([1, 2, 4], none, conf([1, 2, 4]), 1, all)).toBeUndefined();
  });

  it('a leader the list no longer names hands its leadership to a caught-up listed voter, and never removes itself', () => {
    expect(nextPlacedChange([2, 4], none, conf([1, 2, 4]), 1, (id) => id === 4)).toEqual({ transferTo: 4 });
    expect(nextPlacedChange([2, 4], none, conf([1, 2, 4]), 1, none)).toBeUndefined();
    // The next leader removes it.
    expect(nextPlacedChange([2, 4], none, conf([1, 2, 4]), 2, all)).toEqual({ change: { type: 'remove', nodeId: 1 } });
  });

  it('removes a member no longer listed only while the voters left hold a majority in sync', () => {
    // 4 was promoted, then stopped: removing 3 would leave {1, 4} with 4 silent.
    expect(nextPlacedChange([1, 4], none, conf([1, 3, 4]), 1, all, (id) => id !== 4)).toBeUndefined();
    expect(nextPlacedChange([1, 4], none, conf([1, 3, 4]), 1, all, all)).toEqual({ change: { type: 'remove', nodeId: 3 } });
    // A leader leaving hands over only to a listed voter in sync.
    expect(nextPlacedChange([2, 4], none, conf([1, 2, 4]), 1, all, (id) => id === 4)).toEqual({ transferTo: 4 });
  });

  it('leaves a joint configuration alone, and removes a removed member first', () => {
    expect(nextPlacedChange([1, 2], none, conf([1, 2], [], [1, 3]), 1, all)).toBeUndefined();
    expect(nextPlacedChange([1, 2, 4], (id) => id === 3, conf([1, 2, 3]), 1, all)).toEqual({ change: { type: 'remove', nodeId: 3 } });
  });

  it('property: with some members silent, every removal leaves the voters a majority in sync, and no silent member is handed leadership', () => {
    const ids = fc.uniqueArray(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 5 });
    fc.assert(
      fc.property(ids, ids, fc.uniqueArray(fc.integer({ min: 1, max: 7 }), { maxLength: 3 }), fc.nat(), (voterIds, listed, silentIds, pick) => {
        let config = conf(voterIds);
        let self = voterIds[pick % voterIds.length]!;
        const silent = new Set(silentIds.filter((id) => id !== self));
        const inSync = (id: number): boolean => !silent.has(id);
        for (let step = 0; step <= 40; step++) {
          const next = nextPlacedChange(listed, none, config, self, inSync, inSync);
          if (next === undefined) break;
          if ('transferTo' in next) {
            expect(silent.has(next.transferTo)).toBe(false);
            self = next.transferTo;
            silent.delete(self);
            continue;
          }
          config = applied(config, next.change);
          if (next.change.type === 'remove') {
            const healthy = config.voters.filter((v) => v === self || inSync(v)).length;
            expect(2 * healthy).toBeGreaterThan(config.voters.length);
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  it('property: from any configuration the steps reach the list, every listed member voting before anyone leaves, the leader never removing itself', () => {
    const ids = fc.uniqueArray(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 5 });
    fc.assert(
      fc.property(ids, ids, fc.array(fc.integer({ min: 1, max: 7 }), { maxLength: 3 }), fc.nat(), (voterIds, listed, learnerIds, pick) => {
        let config = conf(voterIds, [...new Set(learnerIds)].filter((id) => !voterIds.includes(id)));
        let self = voterIds[pick % voterIds.length]!;
        const steps = 4 * (config.voters.length + config.learners.length + listed.length) + 4;
        for (let step = 0; step <= steps; step++) {
          const next = nextPlacedChange(listed, none, config, self, all);
          if (next === undefined) break;
          if ('transferTo' in next) {
            expect(listed).toContain(next.transferTo);
            expect(config.voters).toContain(next.transferTo);
            self = next.transferTo;
            continue;
          }
          const { change } = next;
          if (change.type === 'remove') {
            expect(change.nodeId).not.toBe(self);
            expect(listed).not.toContain(change.nodeId);
            // Every listed member votes before anyone leaves.
            for (const id of listed) expect(config.voters).toContain(id);
          }
          if (change.type === 'add-voter') expect(config.learners).toContain(change.nodeId);
          config = applied(config, change);
          expect(config.voters.length).toBeGreaterThan(0);
        }
        expect(nextPlacedChange(listed, none, config, self, all)).toBeUndefined();
        expect([...config.voters].sort()).toEqual([...listed].sort());
        expect(config.learners).toEqual([]);
      }),
      { numRuns: 500 },
    );
  });
});

describe('MembershipSync', () => {
  it('removes a removed member at once, after a read of the meta shard; one change per pass', async () => {
    const { host, sync } = fakeHost({ members: [voter(1), voter(2)], removed: [3, 4], config: conf([1, 2, 3, 4]) });
    await sync.poke();
    expect(host.proposed).toEqual([{ type: 'remove', nodeId: 3 }, { type: 'remove', nodeId: 4 }]);
    expect(host.reads).toBe(2);
    await sync.poke();
    expect(host.proposed).toHaveLength(2);
  });

  it('adds a member the group lacks only once it has been missing longer than a membership call', async () => {
    const { host, sync } = fakeHost({ members: [voter(1), voter(2), voter(4)], removed: [], config: conf([1, 2]) });
    await sync.poke();
    host.nowMs = 999;
    await sync.poke();
    expect(host.proposed).toEqual([]);
    expect(host.reads).toBe(0);
    host.nowMs = 1000;
    await sync.poke();
    expect(host.proposed).toEqual([{ type: 'add-voter', nodeId: 4 }]);
  });

  it('a shard placed on some members follows those only: another member is never added; a removed replica still leaves', async () => {
    const { host, sync } = fakeHost({ members: [voter(1), voter(2), voter(3), voter(4)], removed: [], config: conf([1, 2]), groups: [5, 6] });
    host.replicas.set(5, [1, 2]);
    host.configs.set(6, conf([1, 2]));
    host.nowMs = 0;
    await sync.poke();
    host.nowMs = 5000;
    await sync.poke();
    // Shard 6 follows the whole list (no replicas placed): 3 then 4 are added; shard 5 stays as placed.
    expect(host.proposedTo).toEqual([6]);
    expect(host.proposed).toEqual([{ type: 'add-voter', nodeId: 3 }]);
    expect(host.config).toEqual(conf([1, 2]));
    host.removed.add(2);
    host.members = host.members.filter((m) => m.id !== 2);
    await sync.poke();
    expect(host.proposed).toContainEqual({ type: 'remove', nodeId: 2 });
    expect(host.config.voters).toEqual([1]);
  });

  it('a placed shard follows a replica move: learner at once, promoted once caught up, the move finished, then the leader leaving hands over', async () => {
    const { host, sync } = fakeHost({ members: [voter(1), voter(2), voter(3)], removed: [], config: conf([1, 2]), groups: [5] });
    host.configs.set(5, conf([1, 2]));
    host.replicas.set(5, [1, 2]);
    await sync.poke();
    expect(host.proposed).toEqual([]);
    // Member 1 (this node, the leader) moves to member 3: the move names 3, added without the wait.
    host.moving.set(5, { from: 1, to: 3 });
    host.metaVersion++;
    await sync.poke();
    expect(host.proposed).toEqual([{ type: 'add-learner', nodeId: 3 }]);
    await sync.poke();
    expect(host.proposed).toHaveLength(1);
    expect(host.finished).toEqual([]);
    host.caughtUp.add(3);
    await sync.poke();
    expect(host.proposed).toEqual([{ type: 'add-learner', nodeId: 3 }, { type: 'add-voter', nodeId: 3 }]);
    // Finished only once 3 votes; then this node, no longer listed, hands over and never removes itself.
    expect(host.finished).toEqual([{ shard: 5, from: 1, to: 3 }]);
    expect(host.replicas.get(5)).toEqual([2, 3]);
    expect(host.transfers).toEqual([{ shard: 5, to: 2 }]);
    expect(host.configs.get(5)).toEqual(conf([1, 2, 3]));
  });

  it('a placed shard whose leader stays removes the member moved from once the move is finished', async () => {
    const { host, sync } = fakeHost({ members: [voter(1), voter(2), voter(3)], removed: [], config: conf([1, 2]), groups: [5] });
    host.configs.set(5, conf([1, 2]));
    host.replicas.set(5, [1, 2]);
    host.moving.set(5, { from: 2, to: 3 });
    host.caughtUp.add(3);
    await sync.poke();
    expect(host.proposed).toEqual([{ type: 'add-learner', nodeId: 3 }, { type: 'add-voter', nodeId: 3 }, { type: 'remove', nodeId: 2 }]);
    expect(host.finished).toEqual([{ shard: 5, from: 2, to: 3 }]);
    expect(host.configs.get(5)).toEqual(conf([1, 3]));
    expect(host.transfers).toEqual([]);
  });

  it('finishes a move only once the member moved to is in sync', async () => {
    const { host, sync } = fakeHost({ members: [voter(1), voter(2), voter(3)], removed: [], config: conf([1, 2]), groups: [5] });
    host.configs.set(5, conf([1, 2, 3]));
    host.replicas.set(5, [1, 2]);
    host.moving.set(5, { from: 2, to: 3 });
    host.lagging.add(3);
    await sync.poke();
    expect(host.finished).toEqual([]);
    host.lagging.delete(3);
    await sync.poke();
    expect(host.finished).toEqual([{ shard: 5, from: 2, to: 3 }]);
  });

  it('finishes a move only once the member moved to has voted for the settle time (a promoted member that stopped is not counted)', async () => {
    const { host, sync } = fakeHost({ members: [voter(1), voter(2), voter(3)], removed: [], config: conf([1, 2]), groups: [5], promotionSettleMs: 500 });
    host.configs.set(5, conf([1, 2, 3]));
    host.replicas.set(5, [1, 2]);
    host.moving.set(5, { from: 2, to: 3 });
    await sync.poke();
    host.nowMs = 499;
    await sync.poke();
    expect(host.finished).toEqual([]);
    host.nowMs = 500;
    await sync.poke();
    expect(host.finished).toEqual([{ shard: 5, from: 2, to: 3 }]);
  });

  it('a member moved away that lags behind the commit index leaves only after the wait (it would not learn its requests\' outcome)', async () => {
    const { host, sync } = fakeHost({ members: [voter(1), voter(2), voter(3)], removed: [], config: conf([1, 2]), groups: [5] });
    host.configs.set(5, conf([1, 2, 3]));
    host.replicas.set(5, [1, 3]);
    host.lagging.add(2);
    await sync.poke();
    host.nowMs = 999;
    await sync.poke();
    expect(host.proposed).toEqual([]);
    host.nowMs = 1000;
    await sync.poke();
    expect(host.proposed).toEqual([{ type: 'remove', nodeId: 2 }]);
  });

  it('never adds back a member in the middle of its removal (the groups drop it before the meta shard records it)', async () => {
    // Member 3 left the group; the meta shard still lists it until the call records the removal.
    const { host, sync } = fakeHost({ members: [voter(1), voter(2), voter(3)], removed: [], config: conf([1, 2]) });
    await sync.poke();
    host.nowMs = 500;
    await sync.poke();
    host.members = [voter(1), voter(2)];
    host.removed.add(3);
    host.nowMs = 5000;
    await sync.poke();
    expect(host.proposed).toEqual([]);
  });

  it('acts on what the linearizable read says, not on what this node had: a removal it learns there is not added back', async () => {
    const { host, sync } = fakeHost({ members: [voter(1), voter(2), voter(4)], removed: [], config: conf([1, 2]) });
    await sync.poke();
    host.nowMs = 2000;
    host.onRead = () => {
      host.members = [voter(1), voter(2)];
      host.removed.add(4);
    };
    await sync.poke();
    expect(host.reads).toBe(1);
    expect(host.proposed).toEqual([]);
  });

  it('promotes a learner the list records as a voter; a node that does not lead proposes nothing', async () => {
    const { host, sync } = fakeHost({ members: [voter(1), voter(5)], removed: [], config: conf([1], [5]) });
    host.leading = false;
    await sync.poke();
    host.nowMs = 5000;
    await sync.poke();
    expect(host.proposed).toEqual([]);
    host.leading = true;
    await sync.poke();
    host.nowMs = 6000;
    await sync.poke();
    expect(host.proposed).toEqual([{ type: 'add-voter', nodeId: 5 }]);
  });

  it('a failed change is tried again by the next pass and logged once; a stopped sync does nothing', async () => {
    const { host, sync } = fakeHost({ members: [voter(1)], removed: [2], config: conf([1, 2]) });
    host.failures = 2;
    await sync.poke();
    await sync.poke();
    expect(host.proposed).toEqual([]);
    expect(host.warnings).toHaveLength(1);
    await sync.poke();
    expect(host.proposed).toEqual([{ type: 'remove', nodeId: 2 }]);
    sync.stop();
    host.removed.add(1);
    host.config = conf([1, 3]);
    host.removed.add(3);
    await sync.poke();
    expect(host.proposed).toHaveLength(1);
  });

  describe('a pass over groups in step with the list', () => {
    const groups = Array.from({ length: 50 }, (_, i) => i + 1);
    /** Each group with a configuration of its own (a change to one leaves the others as they were). */
    const inStep = () => {
      const fake = fakeHost({ members: [voter(1), voter(2), voter(3)], removed: [4], config: conf([1, 2, 3]), groups });
      for (const shard of groups) fake.host.configs.set(shard, conf([1, 2, 3]));
      return fake;
    };

    it('reads the member list once per version of the meta shard, and skips a group until its configuration or the list changes', async () => {
      const { host, sync } = inStep();
      await sync.poke();
      expect(host.memberReads).toBe(1);
      expect(host.memberWalks).toBe(groups.length);
      const asks = host.removedAsks;
      // Each id is asked once per version, not once per group.
      expect(asks).toBeLessThanOrEqual(3);
      await sync.poke();
      await sync.poke();
      expect(host.memberReads).toBe(1);
      expect(host.memberWalks).toBe(groups.length);
      expect(host.removedAsks).toBe(asks);
      expect(host.proposed).toEqual([]);
      expect(host.reads).toBe(0);
    });

    it('acts on a changed member list: a member removed since is removed from every group', async () => {
      const { host, sync } = inStep();
      await sync.poke();
      host.members = [voter(1), voter(2)];
      host.removed.add(3);
      await sync.poke();
      expect(host.proposed).toHaveLength(groups.length);
      expect(host.proposed.every((c) => c.type === 'remove' && c.nodeId === 3)).toBe(true);
      expect(host.proposedTo).toEqual(groups);
    });

    it("acts on a group's changed configuration while the list stays the same", async () => {
      const { host, sync } = inStep();
      await sync.poke();
      const version = host.metaVersion;
      // A removed id back in one group's configuration (an old leader's entry applied late, say).
      host.configs.set(7, conf([1, 2, 3, 4]));
      await sync.poke();
      expect(host.metaVersion).toBe(version);
      expect(host.proposed).toEqual([{ type: 'remove', nodeId: 4 }]);
      expect(host.proposedTo).toEqual([7]);
      expect(host.configs.get(7)).toEqual(conf([1, 2, 3]));
    });

    it('still waits out the add delay for a group whose list gained a member (it is not in step meanwhile)', async () => {
      const { host, sync } = inStep();
      await sync.poke();
      host.members = [voter(1), voter(2), voter(3), voter(5)];
      await sync.poke();
      host.nowMs = 999;
      await sync.poke();
      expect(host.proposed).toEqual([]);
      host.nowMs = 1000;
      await sync.poke();
      expect(host.proposed).toHaveLength(groups.length);
      expect(host.proposed.every((c) => c.type === 'add-voter' && c.nodeId === 5)).toBe(true);
    });
  });
});
