/**
 * The meta engine's stores and shard map: mounts and drops as commands, refusals that change
 * nothing, founders, snapshots; and, over random command sequences, the same map as the model's
 * own operations and the same state on a replica restored from a snapshot midway. Splits: the
 * child's id, epochs, ranges and splitting mark, no founders for it, each refusal changing
 * nothing, repeats answering the split made, finish, drop, version gating.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ConfChange } from '../../raft/index.js';
import { restoreSnapshotPieces } from '../../storage/index.js';
import { DEFAULT_STORE, ShardMap, ShardMapError, encodeShardMap, mountShardsMax, replicasMax } from '../../src/cluster/index.js';
import { EngineId, MetaEngine, UnknownCommandError } from '../../src/engines/index.js';
import {
  DEFAULT_STORE_SHARD,
  MetaCommandKind,
  META_ABORT_SPLIT_VERSION,
  META_MOVE_VERSION,
  META_REPLICAS_VERSION,
  META_SPLIT_VERSION,
  META_STORES_VERSION,
  abortSplitCommand,
  activateStoreCommand,
  dropStoreCommand,
  encodeMemberContext,
  finishMoveCommand,
  finishSplitCommand,
  moveReplicaCommand,
  mountStoreCommand,
  splitShardCommand,
} from '../../src/engines/meta/index.js';
import { splitKeyBytesMax } from '../../src/cluster/index.js';

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

/** Every key of the engine's state, from its snapshot. */
function restoredKeys(from: MetaEngine): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  const it = from.snapshot();
  for (let next = it.next(); next.done !== true; next = it.next()) chunks.push(next.value);
  return restoreSnapshotPieces(chunks)
    .range({ key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) })
    .kvs.map((kv) => kv.key);
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

  it('places a store\'s shards on the voters holding the fewest placed replicas, which found them alone', () => {
    const meta = engineWith([1, 2, 3, 4], [5]);
    expect(meta.apply(mountStoreCommand('a', text('/a/'), 2, 2), context)).toEqual({ kind: 'stores', shards: [2, 3] });
    expect(meta.shardMap().shardsOf('a').map((s) => s.replicas)).toEqual([[1, 2], [3, 4]]);
    expect(meta.founders(2)).toEqual({ voters: [1, 2], learners: [] });
    expect(meta.founders(3)).toEqual({ voters: [3, 4], learners: [] });
    meta.apply(mountStoreCommand('b', text('/b/'), 1, 3), context);
    expect(meta.shardMap().shardsOf('b')[0]!.replicas).toEqual([1, 2, 3]);
    meta.apply(mountStoreCommand('c', text('/c/'), 1, 1), context);
    expect(meta.shardMap().shardsOf('c')[0]!.replicas).toEqual([4]);
    // Every member, as before: no list, founded by every voter and learner.
    meta.apply(mountStoreCommand('d', text('/d/'), 1), context);
    expect(meta.shardMap().shardsOf('d')[0]!.replicas).toEqual([]);
    expect(meta.founders(6)).toEqual({ voters: [1, 2, 3, 4], learners: [5] });
    // A split's child is on its parent's members.
    meta.apply(activateStoreCommand('a', 2), context);
    expect(meta.apply(splitShardCommand(2, text('/a/m'), 1), context)).toEqual({ kind: 'stores', shards: [2, 7] });
    const replica = restored(meta);
    expect(replica.shardMap().shardsOf('a').map((s) => [s.id, s.replicas])).toEqual([[2, [1, 2]], [7, [1, 2]], [3, [3, 4]]]);
  });

  it('takes a removed member out of placed replica lists (epoch raised), never emptying one; its snapshot section says placement', () => {
    const meta = engineWith([1, 2, 3, 4]);
    expect(meta.sectionVersion).toBe(META_STORES_VERSION);
    meta.apply(mountStoreCommand('a', text('/a/'), 1, 3), context);
    meta.apply(mountStoreCommand('b', text('/b/'), 1, 1), context);
    meta.apply(mountStoreCommand('c', text('/c/'), 1), context);
    expect(meta.sectionVersion).toBe(META_REPLICAS_VERSION);
    expect(meta.shardMap().shardsOf('a')[0]).toMatchObject({ replicas: [1, 2, 3], epoch: 1 });
    expect(meta.shardMap().shardsOf('b')[0]).toMatchObject({ replicas: [4], epoch: 1 });
    const remove = (id: number): ConfChange => ({ transition: 'auto', changes: [{ type: 'remove', nodeId: id }], context: new Uint8Array(0) });
    meta.applyConfChange(remove(2), context);
    expect(meta.shardMap().shardsOf('a')[0]).toMatchObject({ replicas: [1, 3], epoch: 2 });
    meta.applyConfChange(remove(4), context);
    // The last replica stays listed: an empty list would mean every member.
    expect(meta.shardMap().shardsOf('b')[0]).toMatchObject({ replicas: [4], epoch: 1 });
    expect(meta.shardMap().shardsOf('c')[0]!.replicas).toEqual([]);
    expect(encodeShardMap(restored(meta).shardMap())).toEqual(encodeShardMap(meta.shardMap()));
  });

  it('refuses a replica count above the voters or the limit, and one a version-2 command carries', () => {
    const meta = engineWith([1, 2, 3], [4]);
    const before = meta.hash();
    for (const replicas of [4, replicasMax + 1, -1, 1.5]) {
      expect(meta.apply(mountStoreCommand('x', text('/x/'), 1, replicas), context)).toMatchObject({ kind: 'error', code: 'bad-replicas' });
    }
    const smuggled = { ...mountStoreCommand('x', text('/x/'), 1, 2), version: META_STORES_VERSION };
    expect(meta.apply(smuggled, context)).toMatchObject({ kind: 'error', code: 'bad-command' });
    expect(meta.hash()).toBe(before);
  });

  it('keeps placed replicas balanced: over any mounts, the voters\' loads differ by at most one', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 7 }), fc.array(fc.record({ shards: fc.integer({ min: 1, max: 4 }), replicas: fc.integer({ min: 1, max: 7 }) }), { maxLength: 12 }), (voters, mounts) => {
        const ids = Array.from({ length: voters }, (_, i) => 10 + i);
        const meta = engineWith(ids);
        mounts.forEach((m, i) => {
          const outcome = meta.apply(mountStoreCommand(`s${i}`, text(`/s${i}/`), m.shards, m.replicas), context) as { kind: string; code?: string };
          expect(outcome.kind === 'stores' || (outcome.code === 'bad-replicas' && m.replicas > voters)).toBe(true);
        });
        const load = new Map(ids.map((id) => [id, 0]));
        for (const shard of meta.shardMap().shards()) {
          expect([...shard.replicas].sort((a, b) => a - b)).toEqual(shard.replicas);
          expect(new Set(shard.replicas).size).toBe(shard.replicas.length);
          for (const id of shard.replicas) load.set(id, load.get(id)! + 1);
        }
        expect(Math.max(...load.values()) - Math.min(...load.values())).toBeLessThanOrEqual(1);
      }),
      { numRuns: 200 },
    );
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
    expect(MetaCommandKind).toEqual({ PublishAttributes: 1, MountStore: 2, DropStore: 3, ActivateStore: 4, SplitShard: 5, FinishSplit: 6, AbortSplit: 7, MoveReplica: 8, FinishMove: 9 });
    expect([META_STORES_VERSION, META_SPLIT_VERSION, META_ABORT_SPLIT_VERSION, META_REPLICAS_VERSION, META_MOVE_VERSION, new MetaEngine().version]).toEqual([2, 3, 4, 5, 6, 6]);
    // A mount on every member keeps the form every build since stores applies; one placed needs 5.
    expect(mountStoreCommand('a', text('/a/'), 1).version).toBe(META_STORES_VERSION);
    expect(mountStoreCommand('a', text('/a/'), 1, 2).version).toBe(META_REPLICAS_VERSION);
  });
});

describe('meta engine: shard splits', () => {
  /** Store "users" on /users/ as shard 2 (epoch 1), activated, founded by 1 and 2. */
  function withUsers(): MetaEngine {
    const meta = engineWith([1, 2]);
    meta.apply(mountStoreCommand('users', text('/users/'), 1), context);
    meta.apply(activateStoreCommand('users', 2), context);
    return meta;
  }

  it('splits a shard: the child takes the next id and the upper half, both at epoch + 1, splitting, without founders', () => {
    const meta = withUsers();
    expect(meta.apply(splitShardCommand(2, text('/users/m'), 1), context)).toEqual({ kind: 'stores', shards: [2, 3] });
    const map = meta.shardMap();
    expect(map.shard(2)).toMatchObject({ store: 'users', start: text('/users/'), end: text('/users/m'), epoch: 2 });
    expect(map.shard(3)).toMatchObject({ store: 'users', start: text('/users/m'), end: text('/users0'), epoch: 2, replicas: [] });
    expect(map.highestShardId).toBe(3);
    // Routed to from the start: a node that does not host it yet answers a retryable error.
    expect(meta.routingMap().shardForKey(text('/users/zed')).id).toBe(3);
    expect(meta.routingMap().shardForKey(text('/users/alice')).id).toBe(2);
    expect(meta.splitting()).toEqual(new Map([[3, { parent: 2, at: text('/users/m'), end: text('/users0') }]]));
    // The child's group begins from the parent's state: no founders log for it, ever.
    expect(meta.founders(3)).toBeUndefined();
    expect(meta.founders(2)).toEqual({ voters: [1, 2], learners: [] });
    // A store's last shard split at the top of the keys has no end.
    meta.apply(mountStoreCommand('top', Uint8Array.of(0xff, 0xff), 1), context);
    meta.apply(activateStoreCommand('top', 4), context);
    expect(meta.apply(splitShardCommand(4, Uint8Array.of(0xff, 0xff, 0x80), 1), context)).toEqual({ kind: 'stores', shards: [4, 5] });
    expect(meta.splitting().get(5)).toEqual({ parent: 4, at: Uint8Array.of(0xff, 0xff, 0x80), end: undefined });
    // Through a snapshot.
    const copy = restored(meta);
    expect(copy.splitting()).toEqual(meta.splitting());
    expect(encodeShardMap(copy.shardMap())).toEqual(encodeShardMap(meta.shardMap()));
    expect(copy.hash()).toBe(meta.hash());
  });

  it('finishes a split (idempotent): the mark goes, the map stays', () => {
    const meta = withUsers();
    meta.apply(splitShardCommand(2, text('/users/m'), 1), context);
    const map = encodeShardMap(meta.shardMap());
    expect(meta.apply(finishSplitCommand(3), context)).toEqual({ kind: 'stores', shards: [3] });
    expect(meta.splitting().size).toBe(0);
    expect(encodeShardMap(meta.shardMap())).toEqual(map);
    const hash = meta.hash();
    expect(meta.apply(finishSplitCommand(3), context)).toEqual({ kind: 'stores', shards: [3] });
    expect(meta.apply(finishSplitCommand(77), context)).toEqual({ kind: 'stores', shards: [77] });
    expect(meta.hash()).toBe(hash);
  });

  it('undoes an unfinished split (idempotent): the parent takes its range back at a new epoch, the child and its records go, its id is not given again', () => {
    const meta = withUsers();
    const whole = meta.shardMap().shard(2)!;
    meta.apply(splitShardCommand(2, text('/users/m'), 1), context);
    expect(meta.apply(abortSplitCommand(3), context)).toEqual({ kind: 'stores', shards: [2, 3] });
    const map = meta.shardMap();
    expect(map.shard(3)).toBeUndefined();
    expect(map.shard(2)).toMatchObject({ start: whole.start, end: whole.end, epoch: 3 });
    expect(map.highestShardId).toBe(3);
    expect(meta.routingMap().shardForKey(text('/users/zed')).id).toBe(2);
    expect(meta.splitting().size).toBe(0);
    expect(meta.splitParent(3)).toBeUndefined();
    const hash = meta.hash();
    expect(meta.apply(abortSplitCommand(3), context)).toEqual({ kind: 'stores', shards: [3] });
    expect(meta.hash()).toBe(hash);
    expect(restored(meta).hash()).toBe(hash);
    // The split again, at the parent's new epoch: a new child.
    expect(meta.apply(splitShardCommand(2, text('/users/m'), 1), context)).toMatchObject({ kind: 'error', code: 'bad-epoch' });
    expect(meta.apply(splitShardCommand(2, text('/users/m'), 3), context)).toEqual({ kind: 'stores', shards: [2, 4] });
    // A finished split is not undone.
    meta.apply(finishSplitCommand(4), context);
    const finished = meta.hash();
    expect(meta.apply(abortSplitCommand(4), context)).toMatchObject({ kind: 'error', code: 'bad-tiling' });
    expect(meta.hash()).toBe(finished);
    expect(() => meta.apply({ ...abortSplitCommand(4), version: META_SPLIT_VERSION }, context)).toThrow(UnknownCommandError);
  });

  it('answers a repeat with the split made, before and after its finish, and splits nothing more', () => {
    const meta = withUsers();
    const split = splitShardCommand(2, text('/users/m'), 1);
    meta.apply(split, context);
    const hash = meta.hash();
    expect(meta.apply(split, context)).toEqual({ kind: 'stores', shards: [2, 3] });
    expect(meta.hash()).toBe(hash);
    meta.apply(finishSplitCommand(3), context);
    const finished = meta.hash();
    expect(meta.apply(split, context)).toEqual({ kind: 'stores', shards: [2, 3] });
    expect(meta.hash()).toBe(finished);
    expect(meta.splitting().size).toBe(0);
    // After further splits of both halves the answer is the same; the child's own split is its own.
    expect(meta.apply(splitShardCommand(2, text('/users/f'), 2), context)).toEqual({ kind: 'stores', shards: [2, 4] });
    meta.apply(finishSplitCommand(4), context);
    expect(meta.apply(splitShardCommand(3, text('/users/t'), 2), context)).toEqual({ kind: 'stores', shards: [3, 5] });
    meta.apply(finishSplitCommand(5), context);
    meta.apply(mountStoreCommand('jobs', text('/jobs/'), 2), context);
    meta.apply(activateStoreCommand('jobs', 6), context);
    const later = meta.hash();
    expect(meta.apply(split, context)).toEqual({ kind: 'stores', shards: [2, 3] });
    expect(meta.apply(splitShardCommand(3, text('/users/t'), 2), context)).toEqual({ kind: 'stores', shards: [3, 5] });
    // A key that is a boundary not made by a split of this parent is refused, not answered:
    // another shard's split, a neighbour's start, a mount's own boundary between two shards.
    expect(meta.apply(splitShardCommand(2, text('/users/t'), 3), context)).toMatchObject({ kind: 'error', code: 'bad-split-key' });
    expect(meta.apply(splitShardCommand(4, text('/users/t'), 3), context)).toMatchObject({ kind: 'error', code: 'bad-split-key' });
    expect(meta.apply(splitShardCommand(4, text('/users/m'), 3), context)).toMatchObject({ kind: 'error', code: 'bad-split-key' });
    expect(meta.apply(splitShardCommand(6, meta.shardMap().shard(7)!.start, 1), context)).toMatchObject({ kind: 'error', code: 'bad-split-key' });
    expect(meta.hash()).toBe(later);
  });

  it('refuses a split with a stable code and changes nothing', () => {
    const meta = withUsers();
    meta.apply(mountStoreCommand('jobs', text('/jobs/'), 1), context);
    const refused = (command: ReturnType<typeof splitShardCommand>, code: string, says?: RegExp): void => {
      const map = encodeShardMap(meta.shardMap());
      const hash = meta.hash();
      const outcome = meta.apply(command, context) as { kind: string; code?: string; message?: string };
      expect(outcome).toMatchObject({ kind: 'error', code });
      expect(outcome.message).toMatch(says ?? /./);
      expect(encodeShardMap(meta.shardMap())).toEqual(map);
      expect(meta.hash()).toBe(hash);
    };
    refused(splitShardCommand(9, text('/users/m'), 1), 'unknown-shard');
    refused(splitShardCommand(DEFAULT_STORE_SHARD, text('m'), 1), 'default-store');
    // "jobs" (shard 3) is still being created.
    refused(splitShardCommand(3, text('/jobs/m'), 1), 'unknown-store', /being created/);
    refused(splitShardCommand(2, text('/users/m'), 2), 'bad-epoch', /epoch 1.*epoch 2/);
    refused(splitShardCommand(2, text('/users/'), 1), 'bad-split-key');
    refused(splitShardCommand(2, text('/users0'), 1), 'bad-split-key');
    refused(splitShardCommand(2, text('/other'), 1), 'bad-split-key');
    refused(splitShardCommand(2, new Uint8Array([...text('/users/'), ...new Uint8Array(splitKeyBytesMax)]), 1), 'bad-split-key');
    const split = splitShardCommand(2, text('/users/m'), 1);
    refused({ ...split, payload: text('not json') }, 'bad-command');
    refused({ ...split, payload: text('null') }, 'bad-command');
    refused({ ...split, payload: text('{"atHex":"2f","epoch":1}') }, 'bad-command');
    refused({ ...split, payload: text('{"parent":2,"atHex":"2F","epoch":1}') }, 'bad-command');
    refused({ ...split, payload: text('{"parent":2,"atHex":"2f"}') }, 'bad-command');
    refused({ ...split, payload: text('{"parent":2.5,"atHex":"2f","epoch":1}') }, 'bad-command');
    refused({ ...finishSplitCommand(3), payload: text('{"child":0}') }, 'bad-command');
    // One split of a shard at a time: neither half of an unfinished split splits again.
    expect(meta.apply(split, context)).toEqual({ kind: 'stores', shards: [2, 4] });
    refused(splitShardCommand(2, text('/users/f'), 2), 'split-in-progress', /not finished/);
    refused(splitShardCommand(4, text('/users/t'), 2), 'split-in-progress', /still being split/);
    meta.apply(finishSplitCommand(4), context);
    expect(meta.apply(splitShardCommand(4, text('/users/t'), 2), context)).toEqual({ kind: 'stores', shards: [4, 5] });
  });

  it('a drop takes the split records of its shards with it', () => {
    const meta = withUsers();
    meta.apply(splitShardCommand(2, text('/users/m'), 1), context);
    meta.apply(finishSplitCommand(3), context);
    meta.apply(splitShardCommand(3, text('/users/t'), 2), context);
    expect([...meta.splitting().keys()]).toEqual([4]);
    expect(meta.apply(dropStoreCommand('users', 2), context)).toEqual({ kind: 'stores', shards: [2, 3, 4] });
    expect(meta.splitting().size).toBe(0);
    // Nothing of the dropped shards is left: no founders, splitting or split-from record.
    const keys = new TextDecoder().decode(Uint8Array.from(restoredKeys(meta).flatMap((k) => [...k, 0x20])));
    expect(keys).not.toMatch(/founders\/|splitting\/|splitfrom\//);
    expect(keys).toMatch(/shardmap/);
  });

  it('over random steps, an unfinished split\'s halves abut at its key, and a replica restored midway ends the same', () => {
    const step = fc.oneof(
      { weight: 6, arbitrary: fc.record({ kind: fc.constant('split' as const), shard: fc.nat(8), at: fc.uint8Array({ minLength: 1, maxLength: 2 }), stale: fc.nat(5).map((n) => n === 0) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('finish' as const), shard: fc.nat(8) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('mount' as const), name: fc.constantFrom('a', 'b') }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('drop' as const), name: fc.constantFrom('a', 'b') }) },
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 30 }), fc.nat(30), (steps, cut) => {
        const meta = engineWith([1, 2, 3]);
        meta.apply(mountStoreCommand('a', text('/a/'), 2), context);
        meta.apply(activateStoreCommand('a', 2), context);
        let replica: MetaEngine | undefined;
        steps.forEach((s, i) => {
          if (i === cut) replica = restored(meta);
          const map = meta.shardMap();
          // Mostly the mounted stores' shards (the default store's is refused).
          const mounted = map.shards().filter((shard) => shard.id !== DEFAULT_STORE_SHARD);
          const shards = mounted.length > 0 && i % 7 !== 0 ? mounted : map.shards();
          let command;
          if (s.kind === 'split') {
            const parent = shards[s.shard % shards.length]!;
            const store = map.store(parent.store)!;
            command = splitShardCommand(parent.id, new Uint8Array([...store.prefix, ...s.at]), parent.epoch + (s.stale ? 1 : 0));
          } else if (s.kind === 'finish') command = finishSplitCommand(shards[s.shard % shards.length]!.id);
          else if (s.kind === 'mount') command = mountStoreCommand(s.name, text(`/${s.name}/`), 2);
          else command = dropStoreCommand(s.name, map.store(s.name) === undefined ? 1 : map.shardsOf(s.name)[0]!.id);
          const outcome = meta.apply(command, context) as { kind: string; shards?: number[] };
          replica?.apply(command, context);
          if (s.kind === 'mount' && outcome.kind === 'stores') {
            const activate = activateStoreCommand(s.name, outcome.shards![0]!);
            meta.apply(activate, context);
            replica?.apply(activate, context);
          }
          const after = meta.shardMap();
          for (const [child, split] of meta.splitting()) {
            const c = after.shard(child)!;
            const p = after.shard(split.parent)!;
            expect([c.store, c.start, c.end, c.epoch]).toEqual([p.store, split.at, split.end, p.epoch]);
            expect(p.end).toEqual(split.at);
          }
        });
        if (replica !== undefined) {
          expect(replica.hash()).toBe(meta.hash());
          expect(replica.splitting()).toEqual(meta.splitting());
        }
      }),
      { numRuns: 200 },
    );
  });

  it('stops the node on a split step of a version before splits (never skipped)', () => {
    const meta = withUsers();
    for (const command of [splitShardCommand(2, text('/users/m'), 1), finishSplitCommand(3)]) {
      expect(command.version).toBe(META_SPLIT_VERSION);
      expect(() => meta.apply({ ...command, version: META_STORES_VERSION }, context)).toThrow(UnknownCommandError);
      expect(() => meta.apply({ ...command, version: 1 }, context)).toThrow(UnknownCommandError);
    }
    expect(meta.shardMap().shard(3)).toBeUndefined();
    // The store kinds still apply at their own version.
    expect(meta.apply({ ...mountStoreCommand('x', text('/x/'), 1), version: META_STORES_VERSION }, context)).toEqual({ kind: 'stores', shards: [3] });
  });
});

describe('meta engine: replica moves', () => {
  /** Store "users" on /users/ as shard 2 placed on members 1 and 2 (of 1 to 4; 4 a learner), activated. */
  function withPlaced(): MetaEngine {
    const meta = engineWith([1, 2, 3], [4]);
    meta.apply(mountStoreCommand('users', text('/users/'), 1, 2), context);
    meta.apply(activateStoreCommand('users', 2), context);
    expect(meta.shardMap().shard(2)!.replicas).toEqual([1, 2]);
    return meta;
  }
  const stateOf = (meta: MetaEngine) => ({ map: encodeShardMap(meta.shardMap()), moving: [...meta.moving()] });

  it('records a move, leaves the map until it is finished, then lists the new member at a new epoch (both steps idempotent)', () => {
    const meta = withPlaced();
    expect(meta.apply(moveReplicaCommand(2, 1, 3, 1), context)).toEqual({ kind: 'stores', shards: [2] });
    expect(meta.shardMap().shard(2)).toMatchObject({ replicas: [1, 2], epoch: 1 });
    expect(meta.founders(2)).toEqual({ voters: [1, 2], learners: [] });
    expect([...meta.moving()]).toEqual([[2, { from: 1, to: 3 }]]);
    expect(meta.sectionVersion).toBe(META_MOVE_VERSION);
    // A repeat answers the same, whatever the epoch.
    expect(meta.apply(moveReplicaCommand(2, 1, 3, 7), context)).toEqual({ kind: 'stores', shards: [2] });
    expect(meta.apply(finishMoveCommand(2, 1, 3), context)).toEqual({ kind: 'stores', shards: [2] });
    expect(meta.shardMap().shard(2)).toMatchObject({ replicas: [2, 3], epoch: 2 });
    expect(meta.moving().size).toBe(0);
    expect(meta.sectionVersion).toBe(META_REPLICAS_VERSION);
    const after = stateOf(meta);
    expect(meta.apply(finishMoveCommand(2, 1, 3), context)).toEqual({ kind: 'stores', shards: [2] });
    expect(meta.apply(moveReplicaCommand(2, 1, 3, 1), context)).toEqual({ kind: 'stores', shards: [2] });
    expect(stateOf(meta)).toEqual(after);
    // The founders record goes with the first move finished: nobody founds the group again.
    expect(meta.founders(2)).toBeUndefined();
  });

  it('refuses a move with a stable code and changes nothing', () => {
    const meta = withPlaced();
    meta.apply(mountStoreCommand('all', text('/all/'), 1), context);
    meta.apply(activateStoreCommand('all', 3), context);
    const before = stateOf(meta);
    const refusal = (command: ReturnType<typeof moveReplicaCommand>) => {
      const outcome = meta.apply(command, context) as { kind: string; code?: string };
      expect(outcome.kind).toBe('error');
      expect(stateOf(meta)).toEqual(before);
      return outcome.code;
    };
    expect(refusal(moveReplicaCommand(9, 1, 3, 1))).toBe('unknown-shard');
    expect(refusal(moveReplicaCommand(3, 1, 3, 1))).toBe('bad-move');
    expect(refusal(moveReplicaCommand(2, 3, 4, 1))).toBe('bad-move');
    expect(refusal(moveReplicaCommand(2, 1, 2, 1))).toBe('bad-move');
    expect(refusal(moveReplicaCommand(2, 1, 1, 1))).toBe('bad-move');
    expect(refusal(moveReplicaCommand(2, 1, 9, 1))).toBe('unknown-member');
    expect(refusal(moveReplicaCommand(2, 1, 4, 1))).toBe('unknown-member');
    expect(refusal(moveReplicaCommand(2, 1, 3, 2))).toBe('bad-epoch');
    expect(refusal(finishMoveCommand(2, 1, 3))).toBe('bad-move');
    // One move at a time: another from the same member replaces it, one from another is refused.
    meta.apply(moveReplicaCommand(2, 1, 3, 1), context);
    const moving = stateOf(meta);
    expect((meta.apply(moveReplicaCommand(2, 2, 3, 1), context) as { code?: string }).code).toBe('bad-move');
    expect(stateOf(meta)).toEqual(moving);
    // A moving shard is not split.
    expect((meta.apply(splitShardCommand(2, text('/users/m'), 1), context) as { code?: string }).code).toBe('split-in-progress');
    meta.applyConfChange(add(5), context);
    expect(meta.apply(moveReplicaCommand(2, 1, 5, 1), context)).toEqual({ kind: 'stores', shards: [2] });
    expect([...meta.moving()]).toEqual([[2, { from: 1, to: 5 }]]);
    expect((meta.apply(finishMoveCommand(2, 1, 3), context) as { code?: string }).code).toBe('bad-move');
  });

  it('a removed member\'s move is forgotten; a drop takes the move with it; an older command version stops the node', () => {
    const meta = withPlaced();
    meta.apply(moveReplicaCommand(2, 1, 3, 1), context);
    meta.applyConfChange({ transition: 'auto', changes: [{ type: 'remove', nodeId: 3 }], context: new Uint8Array(0) }, context);
    expect(meta.moving().size).toBe(0);
    expect(meta.shardMap().shard(2)!.replicas).toEqual([1, 2]);
    meta.applyConfChange(add(6), context);
    meta.apply(moveReplicaCommand(2, 2, 6, 1), context);
    expect(meta.moving().size).toBe(1);
    meta.apply(dropStoreCommand('users', 2), context);
    expect(meta.moving().size).toBe(0);
    expect(() => meta.apply({ ...moveReplicaCommand(2, 1, 3, 1), version: META_REPLICAS_VERSION }, context)).toThrow(UnknownCommandError);
    expect(() => meta.apply({ ...finishMoveCommand(2, 1, 3), version: META_REPLICAS_VERSION }, context)).toThrow(UnknownCommandError);
  });

  it('a move survives a snapshot', () => {
    const meta = withPlaced();
    meta.apply(moveReplicaCommand(2, 2, 3, 1), context);
    const copy = restored(meta);
    expect([...copy.moving()]).toEqual([[2, { from: 2, to: 3 }]]);
    copy.apply(finishMoveCommand(2, 2, 3), context);
    expect(copy.shardMap().shard(2)!.replicas).toEqual([1, 3]);
  });
});
