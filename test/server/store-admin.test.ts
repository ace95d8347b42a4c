/**
 * The steps of creating and dropping a store (src/server/store-admin.ts) on two real state
 * machines (a meta shard and the default store's), applied in order: a create mounts, cedes and
 * activates; a prefix under which the default store holds keys is refused and the store dropped;
 * a drop reclaims the prefix; a create or a drop that stopped half way is finished by the repair
 * (once stale, not before) or by creating again; a prefix still ceded to a store dropped since is
 * reclaimed before a new store takes it.
 */
import { describe, expect, it } from 'vitest';
import type { Entry } from '../../raft/index.js';
import { type EngineCommand, cedeCommand } from '../../src/engines/index.js';
import { KvCommandKind, kvCommand } from '../../src/engines/kv/index.js';
import { dropStoreCommand, encodeMemberContext, mountStoreCommand } from '../../src/engines/meta/index.js';
import { etcdType } from '../../src/etcd-proto.js';
import { type Applied, type Router, type ShardStateMachine, composeStateMachine, encodeEnvelope, metaEngineOf, ownershipEngineOf } from '../../src/runtime/index.js';
import { StoreChangeRefused, createStore, dropStore, repairStores } from '../../src/server/store-admin.js';

const b = (s: string): Uint8Array => new TextEncoder().encode(s);

/** A shard handle that applies each proposal to its state machine at once, stamped with the test's clock. */
function shard(id: number, machine: ShardStateMachine, clock: { now: number }, proposed: EngineCommand[]) {
  let index = machine.appliedIndex;
  return {
    shardId: id,
    read: async () => index,
    machine: () => machine,
    propose: async (command: EngineCommand): Promise<Applied> => {
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
  const meta = shard(0, metaMachine, clock, proposed);
  const data = shard(1, dataMachine, clock, proposed);
  const router = { meta: () => meta, defaultStore: () => data } as unknown as Router;
  const ctx = { router, options: {} };
  const engines = () => ({ meta: metaEngineOf(metaMachine), ownership: ownershipEngineOf(dataMachine) });
  const put = (key: string) => data.propose(kvCommand(KvCommandKind.Put, etcdType('etcdserverpb.PutRequest').encode({ key: b(key), value: b('v') }).finish()));
  return { clock, ctx, meta, data, engines, put, proposed };
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

  it('drops: the store leaves the map, then the default store serves the prefix again', async () => {
    const { ctx, engines } = setup();
    await createStore(ctx, 'users', b('/users/'), 1);
    expect(await dropStore(ctx, 'users')).toEqual([2]);
    expect(engines().meta.shardMap().store('users')).toBeUndefined();
    expect(engines().ownership.cessions()).toEqual([]);
    await expect(dropStore(ctx, 'users')).rejects.toMatchObject({ code: 'unknown-store' });
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
    await meta.propose(dropStoreCommand('users'));
    expect(engines().ownership.cessions()).toEqual([{ prefix: b('/users/'), store: 2 }]);
    await repairStores(ctx, clock.now, 1000);
    expect(engines().ownership.cessions()).toEqual([]);

    await createStore(ctx, 'users', b('/users/'), 1);
    await meta.propose(dropStoreCommand('users'));
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
});
