/**
 * The meta engine's stores and shard map: mounts and drops as commands, refusals that change
 * nothing, founders, snapshots; and, over random command sequences, the same map as the model's
 * own operations and the same state on a replica restored from a snapshot midway.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ConfChange } from '../../raft/index.js';
import { DEFAULT_STORE, ShardMap, ShardMapError, encodeShardMap, mountShardsMax } from '../../src/cluster/index.js';
import { EngineId, MetaEngine, UnknownCommandError } from '../../src/engines/index.js';
import { DEFAULT_STORE_SHARD, MetaCommandKind, META_STORES_VERSION, activateStoreCommand, dropStoreCommand, encodeMemberContext, mountStoreCommand } from '../../src/engines/meta/index.js';

const context = { index: 1, term: 1, nowMs: 0, proposer: 0, requestId: 0 };
const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const add = (id: number, learner = false): ConfChange => ({
  transition: 'auto',
  changes: [{ type: learner ? 'add-learner' : 'add-voter', nodeId: id }],
  context: encodeMemberContext({ id, name: `n${id}`, peerUrls: [`http://h${id}:2380`], isLearner: learner }),
});

function engineWith(voters: number[], learners: number[] = []): MetaEngine {
  const meta = new MetaEngine();
  for (const id of voters) meta.applyConfChange(add(id), context);
  for (const id of learners) meta.applyConfChange(add(id, true), context);
  return meta;
}

function restored(from: MetaEngine): MetaEngine {
  const chunks: Uint8Array[] = [];
  const it = from.snapshot();
  for (let next = it.next(); next.done !== true; next = it.next()) chunks.push(next.value);
  const copy = new MetaEngine();
  copy.restore(chunks);
  return copy;
}

describe('meta engine: stores and the shard map', () => {
  it('starts with the default store alone, one shard on every member', () => {
    const meta = engineWith([1, 2, 3]);
    const map = meta.shardMap();
    expect(map.stores().map((s) => s.name)).toEqual([DEFAULT_STORE]);
    expect(map.shards()).toEqual([{ id: DEFAULT_STORE_SHARD, store: DEFAULT_STORE, start: new Uint8Array(0), end: undefined, epoch: 1, replicas: [] }]);
    expect(meta.founders(DEFAULT_STORE_SHARD)).toBeUndefined();
  });

  it('mounts a store as new shards founded by the voters and learners of the moment', () => {
    const meta = engineWith([1, 2], [3]);
    expect(meta.apply(mountStoreCommand('users', text('/users/'), 2), context)).toEqual({ kind: 'stores', shards: [2, 3] });
    const map = meta.shardMap();
    expect(map.store('users')).toEqual({ name: 'users', prefix: text('/users/') });
    expect(map.shardForKey(text('/users/alice')).id).toBe(2);
    expect(map.shardForKey(text('/users/\xff')).id).toBe(3);
    expect(map.shardForKey(text('/other')).id).toBe(DEFAULT_STORE_SHARD);
    for (const id of [2, 3]) expect(meta.founders(id)).toEqual({ voters: [1, 2], learners: [3] });
    // Members that join later do not change who founded the groups.
    meta.applyConfChange(add(4), context);
    expect(meta.founders(2)).toEqual({ voters: [1, 2], learners: [3] });
  });

  it('routes to a store only once it is activated; a drop takes it out in either state', () => {
    const meta = engineWith([1]);
    meta.apply(mountStoreCommand('users', text('/users/'), 1), { ...context, nowMs: 5000 });
    expect(meta.creatingStores()).toEqual(new Map([['users', { createdAtMs: 5000 }]]));
    expect(meta.shardMap().shardForKey(text('/users/a')).id).toBe(2);
    expect(meta.routingMap().shardForKey(text('/users/a')).id).toBe(DEFAULT_STORE_SHARD);
    expect(meta.routingMap().highestShardId).toBe(2);
    expect(meta.apply(activateStoreCommand('users', 2), context)).toEqual({ kind: 'stores', shards: [2] });
    expect(meta.creatingStores().size).toBe(0);
    expect(meta.routingMap().shardForKey(text('/users/a')).id).toBe(2);
    // Idempotent; an unknown store is refused.
    expect(meta.apply(activateStoreCommand('users', 2), context)).toEqual({ kind: 'stores', shards: [2] });
    expect(meta.apply(activateStoreCommand('nobody', 2), context)).toMatchObject({ kind: 'error', code: 'unknown-store' });
    // Another incarnation's late step (a store of that name whose first shard was another) changes nothing.
    expect(meta.apply(activateStoreCommand('users', 9), context)).toMatchObject({ kind: 'error', code: 'unknown-store' });
    expect(meta.apply(dropStoreCommand('users', 9), context)).toMatchObject({ kind: 'error', code: 'unknown-store' });
    expect(meta.shardMap().store('users')).toBeDefined();
    meta.apply(mountStoreCommand('jobs', text('/jobs/'), 1), context);
    meta.apply(dropStoreCommand('jobs', 3), context);
    expect(meta.creatingStores().size).toBe(0);
    const copy = restored(meta);
    expect(encodeShardMap(copy.routingMap())).toEqual(encodeShardMap(meta.routingMap()));
  });

  it('never gives a shard id out twice, across drops', () => {
    const meta = engineWith([1]);
    expect(meta.apply(mountStoreCommand('a', text('/a/'), 3), context)).toEqual({ kind: 'stores', shards: [2, 3, 4] });
    expect(meta.apply(dropStoreCommand('a', 2), context)).toEqual({ kind: 'stores', shards: [2, 3, 4] });
    for (const id of [2, 3, 4]) expect(meta.founders(id)).toBeUndefined();
    expect(meta.shardMap().store('a')).toBeUndefined();
    expect(meta.shardMap().shardForKey(text('/a/x')).id).toBe(DEFAULT_STORE_SHARD);
    expect(meta.apply(mountStoreCommand('a', text('/a/'), 1), context)).toEqual({ kind: 'stores', shards: [5] });
  });

  it('refuses a bad change with a stable code and changes nothing', () => {
    const meta = engineWith([1, 2, 3]);
    meta.apply(mountStoreCommand('users', text('/users/'), 1), context);
    const before = meta.hash();
    const refused = (command: ReturnType<typeof mountStoreCommand>, code: string): void => {
      const outcome = meta.apply(command, context) as { kind: string; code?: string; message?: string };
      expect(outcome).toMatchObject({ kind: 'error', code });
      expect(outcome.message).toBeTruthy();
      expect(meta.hash()).toBe(before);
    };
    refused(mountStoreCommand('inner', text('/users/admins/'), 1), 'prefix-overlap');
    refused(mountStoreCommand('outer', text('/us'), 1), 'prefix-overlap');
    refused(mountStoreCommand('users', text('/people/'), 1), 'store-exists');
    refused(mountStoreCommand('Bad Name', text('/b/'), 1), 'bad-store-name');
    refused(mountStoreCommand('empty', new Uint8Array(0), 1), 'bad-prefix');
    for (const shards of [0, -1, 1.5, mountShardsMax + 1]) refused(mountStoreCommand('n', text('/n/'), shards), 'bad-shard-count');
    refused(dropStoreCommand(DEFAULT_STORE, DEFAULT_STORE_SHARD), 'default-store');
    refused(dropStoreCommand('nobody', 2), 'unknown-store');
    refused({ ...dropStoreCommand('users', 2), payload: text('{"name":"users"}') }, 'bad-command');
    const mount = mountStoreCommand('x', text('/x/'), 1);
    refused({ ...mount, payload: text('not json') }, 'bad-command');
    refused({ ...mount, payload: text('{"prefixHex":"2f","shards":1}') }, 'bad-command');
    refused({ ...mount, payload: text('{"name":"x","prefixHex":"2","shards":1}') }, 'bad-command');
    refused({ ...mount, payload: text('{"name":"x","prefixHex":"2F","shards":1}') }, 'bad-command');
    refused({ ...mount, payload: text('{"name":"x","prefixHex":"2f"}') }, 'bad-command');
    refused({ ...mount, payload: text('null') }, 'bad-command');
    // JSON has no NaN: the count arrives as null.
    refused(mountStoreCommand('n', text('/n/'), Number.NaN), 'bad-command');
    // A store needs a voter to found its shards.
    const learnersOnly = engineWith([], [7]);
    expect(learnersOnly.apply(mountStoreCommand('x', text('/x/'), 1), context)).toMatchObject({ kind: 'error', code: 'bad-replicas' });
  });

  it('stops the node on a store change of a version that never existed (never skipped)', () => {
    const meta = engineWith([1]);
    expect(() => meta.apply({ ...mountStoreCommand('x', text('/x/'), 1), version: 1 }, context)).toThrow(UnknownCommandError);
    expect(() => meta.apply({ engine: EngineId.Meta, version: META_STORES_VERSION, kind: 99, payload: new Uint8Array(0) }, context)).toThrow(UnknownCommandError);
  });

  it('keeps stores, shards and founders through a snapshot', () => {
    const meta = engineWith([1, 2, 3]);
    meta.apply(mountStoreCommand('users', text('/users/'), 4), context);
    meta.apply(mountStoreCommand('jobs', text('/jobs/'), 1), context);
    meta.apply(dropStoreCommand('jobs', 6), context);
    const copy = restored(meta);
    expect(encodeShardMap(copy.shardMap())).toEqual(encodeShardMap(meta.shardMap()));
    expect(copy.shardMap().highestShardId).toBe(6);
    expect(copy.founders(3)).toEqual({ voters: [1, 2, 3], learners: [] });
    expect(copy.hash()).toBe(meta.hash());
    // A restore replaces what the engine held, the map it had decoded too.
    const other = engineWith([1]);
    expect(other.shardMap().stores()).toHaveLength(1);
    const it = meta.snapshot();
    const chunks: Uint8Array[] = [];
    for (let next = it.next(); next.done !== true; next = it.next()) chunks.push(next.value);
    other.restore(chunks);
    expect(other.shardMap().store('users')).toBeDefined();
    other.restore([]);
    expect(other.shardMap().stores()).toHaveLength(1);
  });

  it('agrees with the model over random changes, and a replica restored midway ends the same', () => {
    const names = ['a', 'b', 'c', 'd'];
    const prefixes = ['/a/', '/a/b/', '/b', '/c/', 'z', '/'];
    const change = fc.oneof(
      fc.record({ kind: fc.constant('mount' as const), name: fc.constantFrom(...names), prefix: fc.constantFrom(...prefixes), shards: fc.integer({ min: 0, max: 5 }) }),
      fc.record({ kind: fc.constant('drop' as const), name: fc.constantFrom(...names, DEFAULT_STORE), stale: fc.boolean() }),
    );
    fc.assert(
      fc.property(fc.array(change, { maxLength: 25 }), fc.nat(25), (changes, cut) => {
        const meta = engineWith([1, 2, 3]);
        let model = ShardMap.initial(DEFAULT_STORE_SHARD);
        let replica: MetaEngine | undefined;
        changes.forEach((c, i) => {
          if (i === cut) replica = restored(meta);
          // A drop names the store by its first shard; a stale one names an earlier incarnation's.
          const first = c.kind === 'drop' && model.store(c.name) !== undefined ? model.shardsOf(c.name)[0]!.id : 1;
          const stale = c.kind === 'drop' && c.stale;
          const command = c.kind === 'mount' ? mountStoreCommand(c.name, text(c.prefix), c.shards) : dropStoreCommand(c.name, stale ? first + 1000 : first);
          const outcome = meta.apply(command, context) as { kind: string; shards?: number[] };
          replica?.apply(command, context);
          let expected: ShardMap | undefined;
          try {
            if (c.kind === 'drop') expected = stale ? undefined : model.drop(c.name);
            else expected = model.mount(c.name, text(c.prefix), Array.from({ length: c.shards }, (_, k) => model.highestShardId + 1 + k), []);
          } catch (error) {
            if (!(error instanceof ShardMapError)) throw error;
          }
          expect(outcome.kind).toBe(expected === undefined ? 'error' : 'stores');
          if (expected !== undefined) model = expected;
          expect(encodeShardMap(meta.shardMap())).toEqual(encodeShardMap(model));
        });
        if (replica !== undefined) {
          expect(replica.hash()).toBe(meta.hash());
          expect(encodeShardMap(replica.shardMap())).toEqual(encodeShardMap(meta.shardMap()));
        }
      }),
      { numRuns: 300 },
    );
  });

  it('names its command kinds for good', () => {
    expect(MetaCommandKind).toEqual({ PublishAttributes: 1, MountStore: 2, DropStore: 3, ActivateStore: 4 });
  });
});
