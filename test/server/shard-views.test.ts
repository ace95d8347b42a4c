/**
 * dkv.v1.Admin's shard answers: the pure shapes of shard-views.ts (the map's shards with the meta
 * shard added, in id order; a shard id taken from the wire; one replica's status), and the
 * ShardList and ShardStatus handlers on a fake node: what they refuse (a bad id, an unknown one)
 * and what they answer for a shard the node maps but does not host, hosts, or the meta shard.
 * test/server/admin-shards.test.ts runs them on a real cluster.
 */
import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { ShardMap } from '../../src/cluster/index.js';
import { AlarmType, EngineId, anonymousCaller } from '../../src/engines/index.js';
import { MetaEngine } from '../../src/engines/meta/index.js';
import { isDkvError } from '../../src/errors.js';
import { createAdminService } from '../../src/server/admin-service.js';
import { followsMembership, servedByLearner } from '../../src/server/learner-guard.js';
import { type ReplicaFacts, metaStoreName, shardEntries, shardIdOf, shardStatusWire } from '../../src/server/shard-views.js';

const b = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s));

describe('shardEntries', () => {
  it('lists the meta shard first, then every shard of the map, in id order', () => {
    const map = ShardMap.initial(1).mount('zeta', b('z/'), [2], []).mount('alpha', b('a/'), [3, 4], []);
    const entries = shardEntries(map, 0);
    expect(entries.map((e) => [e.id, e.store])).toEqual([
      [0, metaStoreName],
      [1, 'default'],
      [2, 'zeta'],
      [3, 'alpha'],
      [4, 'alpha'],
    ]);
    // The meta shard owns no client key: an empty range, and no epoch (it is not in the map).
    expect(entries[0]).toEqual({ id: 0, store: '(meta)', start: new Uint8Array(0), end: new Uint8Array(0), epoch: 0, replicas: [] });
    expect(entries[1]!.end).toBeUndefined();
    expect(entries[3]).toMatchObject({ start: b('a/'), end: Uint8Array.of(...b('a/'), 0x80), epoch: 1 });
  });

  it('would not list a map that gives the meta shard\'s id to a store\'s shard', () => {
    expect(() => shardEntries(ShardMap.initial(1), 1)).toThrow(/meta shard 1 appears in the shard map/);
  });
});

describe('shardIdOf', () => {
  const refused = (value: Parameters<typeof shardIdOf>[0]): boolean => {
    try {
      shardIdOf(value);
      return false;
    } catch (error) {
      return isDkvError(error, 'invalid-argument');
    }
  };

  it('takes 0 to 2^53 - 1 in every form a uint64 decodes to; absent is 0', () => {
    expect(shardIdOf(undefined)).toBe(0);
    expect(shardIdOf(7)).toBe(7);
    expect(shardIdOf('9007199254740991')).toBe(2 ** 53 - 1);
    expect(shardIdOf({ high: 0, low: 12, unsigned: true, toNumber: () => 12 })).toBe(12);
  });

  it('refuses 2^53 and beyond with invalid-argument (never a rounded id)', () => {
    expect(refused('9007199254740992')).toBe(true);
    expect(refused('18446744073709551615')).toBe(true);
    expect(refused({ high: -1, low: -1, unsigned: true, toNumber: () => 2 ** 64 - 1 })).toBe(true);
    expect(refused(-1)).toBe(true);
  });
});

describe('shardStatusWire', () => {
  const replica = (over: Partial<ReplicaFacts> = {}): ReplicaFacts => ({
    memberId: 5,
    status: { term: 3, lead: 5, commit: 42, role: 'leader', config: { voters: [5, 6], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false } },
    appliedIndex: 41,
    store: { revision: 9, compactRevision: 4, sizeBytes: 4096, sizeInUseBytes: 1024, keyCount: 3 },
    alarms: [{ memberId: 6, alarm: AlarmType.NoSpace }],
    ...over,
  });

  it('reports a hosted data shard\'s replica', () => {
    expect(shardStatusWire(2, 'orders', replica())).toEqual({
      shard_id: 2,
      store: 'orders',
      hosted: true,
      raft_state: 'leader',
      is_learner: false,
      raft_term: 3,
      leader: 5,
      commit_index: 42,
      applied_index: 41,
      revision: 9,
      compact_revision: 4,
      db_size: 4096,
      db_size_in_use: 1024,
      key_count: 3,
      alarms: [{ memberID: 6, alarm: AlarmType.NoSpace }],
      hash_kv: 0,
    });
    // The hash when the caller asked for it (all 32 bits).
    expect(shardStatusWire(2, 'orders', replica({ hashKv: 0xfedc_ba98 })).hash_kv).toBe(0xfedc_ba98);
  });

  it('says when this member is the shard\'s learner', () => {
    const learner = replica({ status: { term: 3, lead: 6, commit: 1, role: 'follower', config: { voters: [6], learners: [5], votersOutgoing: [], learnersNext: [], autoLeave: false } } });
    expect(shardStatusWire(2, 'orders', learner)).toMatchObject({ is_learner: true, raft_state: 'follower' });
  });

  it('leaves the store\'s figures at zero for the meta shard, and every figure for a shard not hosted', () => {
    expect(shardStatusWire(0, metaStoreName, replica({ store: undefined, alarms: [] }))).toMatchObject({ hosted: true, raft_term: 3, applied_index: 41, revision: 0, db_size: 0, key_count: 0, alarms: [] });
    expect(shardStatusWire(2, 'orders', undefined)).toEqual({
      shard_id: 2, store: 'orders', hosted: false, raft_state: '', is_learner: false, raft_term: 0, leader: 0, commit_index: 0, applied_index: 0,
      revision: 0, compact_revision: 0, db_size: 0, db_size_in_use: 0, key_count: 0, alarms: [], hash_kv: 0,
    });
  });
});

/** A node with the meta shard (0) and the default store's (1) hosted, and store "orders" (2) mapped but not hosted. */
function fakeContext() {
  const meta = new MetaEngine();
  // The meta engine starts with the initial map; "orders" is mounted in the map the service reads.
  const map = ShardMap.initial(1).mount('orders', b('orders/'), [2], []);
  meta.shardMap = () => map;
  const mvcc = { revision: 7, compactRevision: 2, sizeBytes: 100, sizeInUseBytes: 60, keyCount: 4 };
  const alarms = { list: () => [] };
  const handle = (shardId: number) => ({
    shardId,
    read: async () => 1,
    term: () => 2,
    leader: () => 7,
    status: () => ({ term: 2, lead: 7, commit: 11, role: 'leader', config: { voters: [7], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false } }),
    machine: () => ({ appliedIndex: 10, engine: (id: number) => (id === EngineId.Meta ? meta : id === EngineId.Kv ? { mvcc } : alarms) }),
  });
  const hosted = new Map([0, 1].map((id) => [id, handle(id)]));
  const router = { map: { metaShard: 0 }, meta: () => hosted.get(0), hosts: (id: number) => hosted.has(id), shard: (id: number) => hosted.get(id), hosted: () => [...hosted.values()] };
  const gate = { admin: async () => anonymousCaller };
  return { router, gate, clusterId: () => 1, memberId: 7, requestTimeoutMs: 1000 } as unknown as Parameters<typeof createAdminService>[0];
}

/** Calls a dkv.v1.Admin method on the fake node; its response, or the status it refused with. */
function callAdmin(method: string, message: object): Promise<{ code: number; details: string; response?: Record<string, unknown> }> {
  const { implementation } = createAdminService(fakeContext());
  const call = { request: { raw: Buffer.alloc(0), message }, metadata: undefined };
  return new Promise((resolve) => {
    (implementation[method] as (call: unknown, callback: (error: { code: number; details: string } | null, response?: Record<string, unknown>) => void) => void)(call, (error, response) =>
      resolve(error === null ? { code: 0, details: '', ...(response === undefined ? {} : { response }) } : error),
    );
  });
}

describe('ShardList and ShardStatus on a fake node', () => {
  it('lists the meta shard and the map\'s shards, each with the leader and term this node sees (0 when it hosts none)', async () => {
    const { response } = await callAdmin('ShardList', {});
    const shards = response!.shards as Array<Record<string, unknown>>;
    expect(shards.map((s) => [s.id, s.store, s.leader, s.raft_term])).toEqual([
      [0, '(meta)', 7, 2],
      [1, 'default', 7, 2],
      [2, 'orders', 0, 0],
    ]);
    expect(shards[0]!.end).toEqual(new Uint8Array(0));
    expect('end' in shards[1]!).toBe(false);
  });

  it('refuses an id past 2^53 with INVALID_ARGUMENT and an unknown one with NOT_FOUND', async () => {
    expect(await callAdmin('ShardStatus', { shard_id: '9007199254740992' })).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/^dkv: invalid argument: shard id 9007199254740992 is not a safe integer/) });
    expect(await callAdmin('ShardStatus', { shard_id: 3 })).toEqual({ code: status.NOT_FOUND, details: "dkv: shard not found: no shard 3 in this node's map, and it hosts no group of it" });
  });

  it('answers a mapped shard it does not host as not hosted, a hosted one with its replica, the meta shard without store figures', async () => {
    expect((await callAdmin('ShardStatus', { shard_id: 2 })).response).toMatchObject({ shard_id: 2, store: 'orders', hosted: false, raft_term: 0, applied_index: 0, header: { member_id: 7, revision: 0 } });
    expect((await callAdmin('ShardStatus', { shard_id: 1 })).response).toMatchObject({
      shard_id: 1, store: 'default', hosted: true, raft_state: 'leader', raft_term: 2, leader: 7, commit_index: 11, applied_index: 10,
      revision: 7, compact_revision: 2, db_size: 100, db_size_in_use: 60, key_count: 4, header: { member_id: 7, revision: 7, raft_term: 2 },
    });
    expect((await callAdmin('ShardStatus', {})).response).toMatchObject({ shard_id: 0, store: '(meta)', hosted: true, applied_index: 10, revision: 0, key_count: 0 });
  });
});

describe('a learner', () => {
  it('answers ShardStatus (its own replica, as Status), not ShardList (a linearizable read)', () => {
    expect(servedByLearner('/dkv.v1.Admin/ShardStatus', { message: { shard_id: 1 } })).toBe(true);
    expect(servedByLearner('/dkv.v1.Admin/ShardList', { message: {} })).toBe(false);
  });

  it('is one of the cluster by the groups every member hosts, not by a placed shard it is being moved into', () => {
    const map = ShardMap.initial(1).mount('all', b('all/'), [2], []).mount('placed', b('placed/'), [3], [7, 8]);
    expect(followsMembership(0, 0, map)).toBe(true); // the meta shard
    expect(followsMembership(1, 0, map)).toBe(true); // the default store's
    expect(followsMembership(2, 0, map)).toBe(true); // a store on every member
    expect(followsMembership(3, 0, map)).toBe(false); // a store with a replica count
    expect(followsMembership(99, 0, map)).toBe(true); // a group the map does not list: counted, to be safe
  });
});
