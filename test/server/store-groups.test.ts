/**
 * The groups of mounted stores on one node, kept in step with the meta shard's map
 * (src/server/store-groups.ts): a founder bootstraps a new shard's log with the founders'
 * configuration (alike on every founder); a member that was not a founder starts the group empty;
 * a group on disk is started without a new bootstrap; a hosted group leaves only when the map gave
 * its id out and no longer has it (a map from before the mount, as a replay from an older state
 * shows, keeps it); a split's child is neither bootstrapped nor added while splitting, and is
 * started empty once finished; the meta and default-store shards are never touched; passes run
 * one at a time.
 */
import { describe, expect, it } from 'vitest';
import type { Entry } from '../../raft/index.js';
import { decodeConfChange } from '../../raft/index.js';
import { ShardMap, type ShardMap as Map_ } from '../../src/cluster/index.js';
import { MetaEngine } from '../../src/engines/index.js';
import { type Founders, type SplittingShard, activateStoreCommand, encodeMemberContext, finishSplitCommand, mountStoreCommand, splitShardCommand } from '../../src/engines/meta/index.js';
import { StoreGroups, type StoreGroupsHost, foundersLog } from '../../src/server/store-groups.js';

const text = (s: string): Uint8Array => new TextEncoder().encode(s);

function host(self: number, options: { stored?: number[]; hosted?: number[]; meta?: StoreGroupsHost['meta'] } = {}) {
  const state = {
    map: ShardMap.initial(1) as Map_,
    founders: new Map<number, Founders>(),
    splitting: new Map<number, SplittingShard>(),
    moving: new Map<number, { from: number; to: number }>(),
    hosted: new Set([0, 1, ...(options.hosted ?? [])]),
    stored: new Set(options.stored ?? []),
    bootstrapped: [] as Array<{ shard: number; entries: Entry[]; commit: number }>,
    dropped: [] as number[],
    log: [] as string[],
    /** Groups this member has left (its configuration, or its leader's, lacks it). */
    left: new Set<number>(),
    leftAsks: 0,
  };
  const h: StoreGroupsHost = {
    memberId: self,
    meta: options.meta ?? (() => ({ shardMap: () => state.map, founders: (id) => state.founders.get(id), splitting: () => state.splitting, moving: () => state.moving })),
    fixed: [0, 1],
    hosted: () => [...state.hosted].sort((a, b) => a - b),
    stored: (id) => state.stored.has(id),
    bootstrap: async (shard, entries, hardState) => {
      state.bootstrapped.push({ shard, entries, commit: hardState.commit });
      state.stored.add(shard);
    },
    addGroup: (id) => {
      if (state.hosted.has(id)) throw new Error(`shard ${id} added twice`);
      state.hosted.add(id);
    },
    removeGroup: (id) => {
      state.hosted.delete(id);
    },
    dropStorage: async (id) => {
      state.dropped.push(id);
      state.stored.delete(id);
    },
    leftGroup: async (id) => {
      state.leftAsks++;
      return state.left.has(id);
    },
    log: { info: (m) => state.log.push(m), warn: (m) => state.log.push(`warn: ${m}`) },
  };
  return { state, groups: new StoreGroups(h) };
}

const mounted = (ids: number[]): Map_ => ShardMap.initial(1).mount('users', text('/users/'), ids, []);

describe('store groups on a node', () => {
  it('a founder bootstraps the founders\' configuration, the same entries on every founder', async () => {
    const logs: Entry[][] = [];
    for (const self of [11, 12]) {
      const { state, groups } = host(self);
      state.map = mounted([2, 3]);
      for (const id of [2, 3]) state.founders.set(id, { voters: [11, 12], learners: [13] });
      await groups.reconcile();
      expect(state.hosted).toEqual(new Set([0, 1, 2, 3]));
      expect(state.bootstrapped.map((b) => [b.shard, b.commit])).toEqual([[2, 3], [3, 3]]);
      logs.push(state.bootstrapped[0]!.entries);
    }
    expect(logs[0]).toEqual(logs[1]);
    expect(logs[0]!.map((e) => decodeConfChange(e.data).changes)).toEqual([[{ type: 'add-voter', nodeId: 11 }], [{ type: 'add-voter', nodeId: 12 }], [{ type: 'add-learner', nodeId: 13 }]]);
    expect(foundersLog({ voters: [11, 12], learners: [13] }).entries).toEqual(logs[0]);
  });

  it('a member that was not a founder starts the group empty; one with it on disk starts it without a bootstrap', async () => {
    const joiner = host(14);
    joiner.state.map = mounted([2]);
    joiner.state.founders.set(2, { voters: [11, 12, 13], learners: [] });
    await joiner.groups.reconcile();
    expect([joiner.state.hosted.has(2), joiner.state.bootstrapped]).toEqual([true, []]);

    const restarted = host(11, { stored: [2] });
    restarted.state.map = mounted([2]);
    restarted.state.founders.set(2, { voters: [11], learners: [] });
    await restarted.groups.reconcile();
    expect([restarted.state.hosted.has(2), restarted.state.bootstrapped]).toEqual([true, []]);
  });

  it('removes a group only once the map gave its id out and dropped it; never the fixed shards', async () => {
    // On disk from before a restart, while the meta shard replays from before the mount: kept.
    const { state, groups } = host(11, { hosted: [2], stored: [2] });
    await groups.reconcile();
    expect(state.hosted).toEqual(new Set([0, 1, 2]));
    expect(state.dropped).toEqual([]);
    // The mount replayed, then the drop: the id was given out and is gone now.
    state.map = mounted([2]).drop('users');
    expect(state.map.highestShardId).toBe(2);
    await groups.reconcile();
    expect(state.hosted).toEqual(new Set([0, 1]));
    expect(state.dropped).toEqual([2]);
  });

  it('neither bootstraps nor adds a split\'s child while it is splitting; once finished, starts it empty', async () => {
    // The parent 2 (founded by 11 and 12) split at /users/m: the child 3 is splitting.
    const split = mounted([2]).split(2, text('/users/m'), 3);
    for (const self of [11, 13]) {
      const { state, groups } = host(self, { hosted: [2], stored: [2] });
      state.map = split;
      state.founders.set(2, { voters: [11, 12], learners: [] });
      state.splitting.set(3, { parent: 2, at: text('/users/m'), end: text('/users0') });
      await groups.reconcile();
      expect([state.hosted, state.bootstrapped, state.dropped]).toEqual([new Set([0, 1, 2]), [], []]);
      // Finished: a member whose parent's Split did not make the child here starts it empty.
      state.splitting.clear();
      await groups.reconcile();
      expect([state.hosted, state.bootstrapped]).toEqual([new Set([0, 1, 2, 3]), []]);
    }
  });

  it('the meta engine\'s split steps drive it: no founders log for the child, on a founder of the parent either', async () => {
    const meta = new MetaEngine();
    const context = { index: 1, term: 1, nowMs: 0, proposer: 0, requestId: 0 };
    for (const id of [11, 12]) {
      meta.applyConfChange({ transition: 'auto', changes: [{ type: 'add-voter', nodeId: id }], context: encodeMemberContext({ id, name: `n${id}`, peerUrls: [`http://h${id}:2380`], isLearner: false }) }, context);
    }
    meta.apply(mountStoreCommand('users', text('/users/'), 1), context);
    meta.apply(activateStoreCommand('users', 2), context);
    // As the node hands it over: the meta engine itself.
    const { state, groups } = host(11, { hosted: [2], stored: [2], meta: () => meta });
    expect(meta.apply(splitShardCommand(2, text('/users/m'), 1), context)).toEqual({ kind: 'stores', shards: [2, 3] });
    await groups.reconcile();
    expect(state.hosted).toEqual(new Set([0, 1, 2]));
    meta.apply(finishSplitCommand(3), context);
    await groups.reconcile();
    expect([state.hosted, state.bootstrapped]).toEqual([new Set([0, 1, 2, 3]), []]);
  });

  it('a member a move names starts the group empty at once', async () => {
    const { state, groups } = host(13);
    state.map = ShardMap.initial(1).mount('users', text('/users/'), [2], [[11, 12]]);
    state.founders.set(2, { voters: [11, 12], learners: [] });
    await groups.reconcile();
    expect(state.hosted.has(2)).toBe(false);
    state.moving.set(2, { from: 11, to: 13 });
    await groups.reconcile();
    expect(state.hosted.has(2)).toBe(true);
    expect(state.bootstrapped).toEqual([]);
    expect(state.leftAsks).toBe(0);
  });

  it('a founder a move names back starts the group empty, never from the founders log', async () => {
    // 11 founded shard 2 alone, moved away (its storage dropped), and a move brings it back.
    const { state, groups } = host(11);
    state.map = ShardMap.initial(1).mount('users', text('/users/'), [2], [[12]]);
    state.founders.set(2, { voters: [11], learners: [] });
    state.moving.set(2, { from: 12, to: 11 });
    await groups.reconcile();
    expect(state.hosted.has(2)).toBe(true);
    expect(state.bootstrapped).toEqual([]);
  });

  it('a replica moved away is kept until this member has left the group, then removed and its storage dropped', async () => {
    const { state, groups } = host(11, { hosted: [2], stored: [2] });
    state.map = ShardMap.initial(1).mount('users', text('/users/'), [2], [[11, 12]]);
    await groups.reconcile();
    // Moving away: still listed until the move is finished.
    state.moving.set(2, { from: 11, to: 13 });
    await groups.reconcile();
    expect(state.leftAsks).toBe(0);
    state.moving.delete(2);
    // The move finished: 13 in 11's place; the group has not removed 11 yet.
    state.map = state.map.withReplicas(2, [12, 13]);
    await groups.reconcile();
    expect(state.leftAsks).toBe(1);
    expect(state.hosted.has(2)).toBe(true);
    expect(state.dropped).toEqual([]);
    state.left.add(2);
    await groups.reconcile();
    expect(state.hosted.has(2)).toBe(false);
    expect(state.dropped).toEqual([2]);
    // Listed again later (moved back): started again, empty.
    state.map = state.map.withReplicas(2, [11, 12]);
    await groups.reconcile();
    expect(state.hosted.has(2)).toBe(true);
    expect(state.bootstrapped).toEqual([]);
  });

  it('runs one pass at a time: a request during a pass makes one more after it', async () => {
    const { state, groups } = host(11);
    state.map = mounted([2]);
    state.founders.set(2, { voters: [11], learners: [] });
    const first = groups.reconcile();
    // While the first pass waits on its bootstrap, the map moves on (the store dropped, another mounted).
    state.map = mounted([2]).drop('users').mount('jobs', text('/jobs/'), [3], []);
    state.founders.set(3, { voters: [11], learners: [] });
    const second = groups.reconcile();
    await Promise.all([first, second]);
    expect(state.hosted).toEqual(new Set([0, 1, 3]));
    expect(state.dropped).toEqual([2]);
  });
});
