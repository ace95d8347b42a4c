/**
 * The steps of creating and dropping a store (src/server/store-admin.ts) on two real state
 * machines (a meta shard and the default store's), applied in order: a create mounts, cedes and
 * activates; a prefix under which the default store holds keys is refused and the store dropped;
 * a drop reclaims the prefix; a create or a drop that stopped half way is finished by the repair
 * (once stale, not before) or by creating again; a prefix still ceded to a store dropped since is
 * reclaimed before a new store takes it; a drop retires the store's shards before anything
 * else; a late step of a dropped store never acts on a newer one of the same name; stores and
 * authentication exclude each other. A split the shard's own log refuses after the map recorded
 * it (a lease granted meanwhile) is undone, by the coordinator or by the repair.
 */
import { describe, expect, it } from 'vitest';
import type { Entry } from '../../raft/index.js';
import { EngineId, type EngineCommand, OwnershipCommandKind, authCommands, cedeCommand, retireCommand } from '../../src/engines/index.js';
import { KvCommandKind, kvCommand } from '../../src/engines/kv/index.js';
import { MetaCommandKind, dropStoreCommand, encodeMemberContext, mountStoreCommand, splitShardCommand } from '../../src/engines/meta/index.js';
import { etcdType } from '../../src/etcd-proto.js';
import { type Applied, type Router, type ShardStateMachine, authEngineOf, composeStateMachine, encodeEnvelope, metaEngineOf, ownershipEngineOf } from '../../src/runtime/index.js';
import { StoreChangeRefused, createStore, dropStore, repairStores, splitShard } from '../../src/server/store-admin.js';
import { grantCommand, revokeCommand } from '../../src/engines/lease/engine.js';

const b = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Runs before a proposal applies (a test interleaves other steps there). */
type Hook = (command: EngineCommand) => Promise<void>;

/** A shard handle that applies each proposal to its state machine at once, stamped with the test's clock. */
function shard(id: number, machine: ShardStateMachine, clock: { now: number }, proposed: EngineCommand[], hook: { before?: Hook }) {
  let index = machine.appliedIndex;
  return {
    shardId: id,
    read: async () => index,
    machine: () => machine,
    propose: async (command: EngineCommand): Promise<Applied> => {
      const before = hook.before;
      hook.before = undefined;
      await before?.(command);
      proposed.push(command);
      index++;
      const entry: Entry = { index, term: 1, type: 'normal', data: encodeEnvelope({ ...command, timestampMs: clock.now, proposer: 1, requestId: index }) };
      return machine.apply(entry)!;
    },
  };
}

function setup() {
  const clock = { now: 10_000 };
  const metaMachine = composeStateMachine('meta');
  metaMachine.applyConfChange(
    { index: 1, term: 1, type: 'conf-change', data: new Uint8Array(0) },
    { transition: 'auto', changes: [{ type: 'add-voter', nodeId: 1 }], context: encodeMemberContext({ id: 1, name: 'n1', peerUrls: [], isLearner: false }) },
    { proposer: 0, requestId: 0 },
  );
  const dataMachine = composeStateMachine('data');
  const proposed: EngineCommand[] = [];
  const hook: { before?: Hook } = {};
  const meta = shard(0, metaMachine, clock, proposed, hook);
  const data = shard(1, dataMachine, clock, proposed, hook);
  // The stores' shards: a data state machine each, made when first asked for.
  const stores = new Map<number, ReturnType<typeof shard>>();
  const storeShard = (id: number) => {
    if (!stores.has(id)) stores.set(id, shard(id, composeStateMachine('data'), clock, proposed, hook));
    return stores.get(id)!;
  };
  const router = { meta: () => meta, defaultStore: () => data, hosts: () => true, shard: (id: number) => (id === 0 ? meta : id === 1 ? data : storeShard(id)) } as unknown as Router;
  const ctx = { router, options: {} };
  const engines = () => ({ meta: metaEngineOf(metaMachine), ownership: ownershipEngineOf(dataMachine) });
  const put = (key: string) => data.propose(kvCommand(KvCommandKind.Put, etcdType('etcdserverpb.PutRequest').encode({ key: b(key), value: b('v') }).finish()));
  return { clock, ctx, meta, data, engines, put, proposed, hook, storeShard, dataMachine };
}

describe('store changes across the meta shard and the default store', () => {
  it('creates: mount (creating), cede, activate', async () => {
    const { ctx, engines } = setup();
    expect(await createStore(ctx, 'users', b('/users/'), 2)).toEqual({ name: 'users', prefix: b('/users/'), shards: [2, 3] });
    const { meta, ownership } = engines();
    expect(meta.creatingStores().size).toBe(0);
    expect(meta.routingMap().shardForKey(b('/users/a')).id).toBe(2);
    expect(ownership.cessions()).toEqual([{ prefix: b('/users/'), store: 2 }]);
  });

  it('refuses a prefix the default store holds keys under, and drops the store it mounted', async () => {
    const { ctx, engines, put } = setup();
    await put('/users/a');
    const refused = await createStore(ctx, 'users', b('/users/'), 1).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(StoreChangeRefused);
    expect(refused).toMatchObject({ code: 'store-prefix-in-use' });
    const { meta, ownership } = engines();
    expect(meta.shardMap().store('users')).toBeUndefined();
    expect(ownership.cessions()).toEqual([]);
    // The ids it took are never given out again.
    expect((await createStore(ctx, 'other', b('/other/'), 1)).shards).toEqual([3]);
  });

  it("drops: the store's shards retired first, then it leaves the map, then the default store serves the prefix again", async () => {
    const { ctx, engines, proposed, storeShard } = setup();
    await createStore(ctx, 'users', b('/users/'), 2);
    proposed.length = 0;
    expect(await dropStore(ctx, 'users')).toEqual([2, 3]);
    expect(proposed.map((c) => [c.engine, c.kind])).toEqual([
      [EngineId.Ownership, OwnershipCommandKind.Retire],
      [EngineId.Ownership, OwnershipCommandKind.Retire],
      [EngineId.Meta, MetaCommandKind.DropStore],
      [EngineId.Ownership, OwnershipCommandKind.Reclaim],
    ]);
    // A node whose map still routes to the store's shards gets every key refused there.
    for (const id of [2, 3]) expect(ownershipEngineOf(storeShard(id).machine()).owns(b('/users/a'))).toBe(false);
    expect(engines().meta.shardMap().store('users')).toBeUndefined();
    expect(engines().ownership.cessions()).toEqual([]);
    await expect(dropStore(ctx, 'users')).rejects.toMatchObject({ code: 'unknown-store' });
  });

  it('finishes a drop that stopped after retiring a shard, by the repair', async () => {
    const { ctx, clock, storeShard, engines } = setup();
    await createStore(ctx, 'users', b('/users/'), 2);
    await storeShard(3).propose(retireCommand(2));
    await repairStores(ctx, clock.now, 1000);
    expect(engines().meta.shardMap().store('users')).toBeUndefined();
    expect(engines().ownership.cessions()).toEqual([]);
    expect(ownershipEngineOf(storeShard(2).machine()).retired).toBe(2);
  });

  it('never lets a late step of a dropped store act on a newer store of the same name', async () => {
    const { ctx, clock, meta, hook, engines } = setup();
    await meta.propose(mountStoreCommand('aa', b('/a/'), 1));
    // The repair finishes the stale create of aa (shard 2); while its cede is on the way, an
    // admin drops aa and creates it again on another prefix (shard 3).
    hook.before = async () => {
      await dropStore(ctx, 'aa');
      await createStore(ctx, 'aa', b('/b/'), 1);
    };
    await repairStores(ctx, clock.now + 60_000, 1000);
    const { meta: metaEngine, ownership } = engines();
    // The late activate (and, had the cede been refused, the late drop) named shard 2: refused.
    expect(metaEngine.shardMap().shardsOf('aa').map((s) => s.id)).toEqual([3]);
    expect(metaEngine.routingMap().shardForKey(b('/b/x')).id).toBe(3);
    expect(ownership.owns(b('/b/x'))).toBe(false);
    // /a/ was ceded to shard 2 by the late cede: a store gone, so the next repair reclaims it.
    await repairStores(ctx, clock.now, 1000);
    expect(ownership.cessions()).toEqual([{ prefix: b('/b/'), store: 3 }]);
  });

  it('reclaims a prefix overlapping the new one that a dropped store still holds', async () => {
    const { ctx, meta, storeShard, engines } = setup();
    await createStore(ctx, 'users', b('/users/'), 1);
    // A drop that stopped before its reclaim.
    await storeShard(2).propose(retireCommand(2));
    await meta.propose(dropStoreCommand('users', 2));
    expect((await createStore(ctx, 'admins', b('/users/admins/'), 1)).shards).toEqual([3]);
    expect(engines().ownership.cessions()).toEqual([{ prefix: b('/users/admins/'), store: 3 }]);
  });

  it('refuses a store while authentication is on, and authentication while a store exists (one log decides)', async () => {
    const { ctx, data, engines } = setup();
    await data.propose(authCommands.userAdd('root', new Uint8Array(0), true));
    await data.propose(authCommands.roleAdd('root'));
    await data.propose(authCommands.userGrantRole('root', 'root'));
    await data.propose(authCommands.enable());
    await expect(createStore(ctx, 'users', b('/users/'), 1)).rejects.toMatchObject({ code: 'store-auth-enabled' });
    expect(engines().meta.shardMap().store('users')).toBeUndefined();
    await data.propose(authCommands.disable());
    await createStore(ctx, 'users', b('/users/'), 1);
    const refused = await data.propose(authCommands.enable());
    expect(refused.refusal ?? (refused.outcome as { error?: unknown }).error).toBeDefined();
    expect(authEngineOf(data.machine()).enabled).toBe(false);
    await dropStore(ctx, 'users');
    await data.propose(authCommands.enable());
    expect(authEngineOf(data.machine()).enabled).toBe(true);
  });

  it('finishes a create that stopped after the mount: by the repair once stale, or by creating again', async () => {
    const { ctx, clock, meta, engines } = setup();
    await meta.propose(mountStoreCommand('users', b('/users/'), 1));
    await repairStores(ctx, clock.now + 999, 1000);
    expect(engines().meta.creatingStores().has('users')).toBe(true);
    expect(engines().ownership.cessions()).toEqual([]);
    await repairStores(ctx, clock.now + 1000, 1000);
    expect(engines().meta.creatingStores().size).toBe(0);
    expect(engines().ownership.cessions()).toEqual([{ prefix: b('/users/'), store: 2 }]);

    await meta.propose(mountStoreCommand('jobs', b('/jobs/'), 2));
    // Finished only as it was begun: another shard count is refused, and changes nothing.
    await expect(createStore(ctx, 'jobs', b('/jobs/'), 3)).rejects.toThrow(/being created with 2 shards/);
    expect(engines().meta.creatingStores().has('jobs')).toBe(true);
    expect(await createStore(ctx, 'jobs', b('/jobs/'), 2)).toEqual({ name: 'jobs', prefix: b('/jobs/'), shards: [3, 4] });
    expect(engines().meta.routingMap().shardForKey(b('/jobs/x')).id).toBe(3);
  });

  it('drops a store being created whose prefix the default store holds keys under, when the repair finds it', async () => {
    const { ctx, clock, meta, engines, put } = setup();
    await meta.propose(mountStoreCommand('users', b('/users/'), 1));
    await put('/users/a');
    await repairStores(ctx, clock.now + 60_000, 1000);
    expect(engines().meta.shardMap().store('users')).toBeUndefined();
    expect(engines().ownership.cessions()).toEqual([]);
  });

  it('reclaims a prefix still ceded to a store dropped since: by the repair, or before a new store cedes it', async () => {
    const { ctx, clock, meta, engines } = setup();
    await createStore(ctx, 'users', b('/users/'), 1);
    // A drop that stopped before its reclaim.
    await meta.propose(dropStoreCommand('users', 2));
    expect(engines().ownership.cessions()).toEqual([{ prefix: b('/users/'), store: 2 }]);
    await repairStores(ctx, clock.now, 1000);
    expect(engines().ownership.cessions()).toEqual([]);

    await createStore(ctx, 'users', b('/users/'), 1);
    await meta.propose(dropStoreCommand('users', 3));
    expect((await createStore(ctx, 'users', b('/users/'), 1)).shards).toEqual([4]);
    expect(engines().ownership.cessions()).toEqual([{ prefix: b('/users/'), store: 4 }]);
  });

  it('never reclaims a prefix ceded to a store that exists, nor to one the map has not given out', async () => {
    const { ctx, clock, data, engines } = setup();
    await createStore(ctx, 'users', b('/users/'), 1);
    // Ceded to shard 9, an id no map gave out yet (a meta replica behind the default store's).
    await data.propose(cedeCommand(b('/jobs/'), 9));
    await repairStores(ctx, clock.now, 1000);
    expect(engines().ownership.cessions()).toEqual([
      { prefix: b('/jobs/'), store: 9 },
      { prefix: b('/users/'), store: 2 },
    ]);
  });

  it('undoes a split whose shard refused it after the map recorded it (a lease granted between the check and the Split), leaving the shard whole and serving', async () => {
    const { ctx, engines, hook, storeShard, proposed } = setup();
    await createStore(ctx, 'users', b('/users/'), 1);
    const users = storeShard(2);
    const put = (key: string) => users.propose(kvCommand(KvCommandKind.Put, etcdType('etcdserverpb.PutRequest').encode({ key: b(key), value: b('v') }).finish()));
    for (const key of ['/users/a', '/users/k', '/users/t']) await put(key);
    // Between the meta shard's split and the shard's own: a Lock's session lease granted there.
    hook.before = async (command) => {
      if (command.engine !== EngineId.Meta) return;
      hook.before = async () => void (await users.propose(grantCommand(77n, 60)));
    };
    proposed.length = 0;
    await expect(splitShard(ctx, 2, b('/users/m'))).rejects.toMatchObject({ code: 'split-undone' });
    expect(proposed.map((c) => [c.engine, c.kind])).toEqual([
      [EngineId.Meta, MetaCommandKind.SplitShard],
      [EngineId.Lease, expect.any(Number)],
      [EngineId.Ownership, OwnershipCommandKind.Split],
      [EngineId.Meta, MetaCommandKind.AbortSplit],
    ]);
    const map = engines().meta.shardMap();
    expect(map.shardsOf('users').map((s) => [s.id, s.epoch])).toEqual([[2, 3]]);
    expect(engines().meta.splitting().size).toBe(0);
    expect(engines().meta.routingMap().shardForKey(b('/users/t')).id).toBe(2);
    // The shard still serves the keys the split would have moved, and is fenced against that child.
    const ownership = ownershipEngineOf(users.machine());
    expect(ownership.owns(b('/users/t'))).toBe(true);
    expect(ownership.splitFence).toBe(3);
    expect((await put('/users/z')).outcome).toMatchObject({ outcome: { kind: 'put', result: { revision: 5 } } });
    // Once the lease is gone, the split is made, into a new child.
    await users.propose(revokeCommand(77n));
    expect(await splitShard(ctx, 2, b('/users/m'))).toEqual({ parent: 2, child: 4, at: b('/users/m') });
    expect(ownership.owns(b('/users/t'))).toBe(false);
  });

  it('the repair undoes a split left recorded whose shard refuses it', async () => {
    const { ctx, clock, engines, storeShard } = setup();
    await createStore(ctx, 'users', b('/users/'), 1);
    const users = storeShard(2);
    await users.propose(kvCommand(KvCommandKind.Put, etcdType('etcdserverpb.PutRequest').encode({ key: b('/users/a'), value: b('v') }).finish()));
    // A coordinator stopped after the meta shard's step; a lease was granted since.
    await ctx.router.meta().propose(splitShardCommand(2, b('/users/m'), 1));
    await users.propose(grantCommand(5n, 60));
    await repairStores(ctx, clock.now, 1000);
    expect(engines().meta.splitting().size).toBe(0);
    expect(engines().meta.shardMap().shardsOf('users').map((s) => s.id)).toEqual([2]);
    expect(ownershipEngineOf(users.machine()).owns(b('/users/z'))).toBe(true);
  });
});
