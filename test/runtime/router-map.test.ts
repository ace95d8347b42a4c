/**
 * The router routes by the shard map the meta shard holds: a key to its store's shard, a range to
 * the one shard that serves it (`cross-shard-range` past one), a txn's keys and ranges to one
 * shard (`cross-shard` past one), with etcd's range conventions (an empty range end is the key
 * alone, `\0` every key from it on, an end at or before the key an empty range). The admission
 * check runs for what clients route, not for the shards a node reaches itself.
 */
import { describe, expect, it } from 'vitest';
import { activateStoreCommand, dropStoreCommand, encodeMemberContext, finishMoveCommand, moveReplicaCommand, mountStoreCommand } from '../../src/engines/meta/index.js';
import { RuntimeError, ShardElsewhereError } from '../../src/runtime/errors.js';
import { composeStateMachine, metaEngineOf } from '../../src/runtime/compose.js';
import { Router, metaShardMap } from '../../src/runtime/router.js';
import type { NodeRuntime } from '../../src/runtime/runtime.js';

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const context = { index: 1, term: 1, nowMs: 0, proposer: 0, requestId: 0 };

function setup(options: { hostsMeta?: boolean } = {}) {
  const meta = composeStateMachine('meta');
  const engine = metaEngineOf(meta);
  engine.applyConfChange({ transition: 'auto', changes: [{ type: 'add-voter', nodeId: 1 }], context: new Uint8Array(0) }, context);
  const runtime = {
    hasShard: (id: number) => id !== 0 || options.hostsMeta !== false,
    machine: () => meta,
  } as unknown as NodeRuntime;
  const admitted: number[] = [];
  const router = new Router(runtime, metaShardMap(runtime, 0, 1), (id) => {
    admitted.push(id);
    if (id === 99) throw new Error('refused');
  });
  return { engine, router, admitted };
}

function code(run: () => unknown): string | undefined {
  try {
    run();
  } catch (error) {
    if (error instanceof RuntimeError) return error.code;
    throw error;
  }
  return undefined;
}

describe('routing by the meta shard\'s map', () => {
  it('sends every key to the default store until a store is mounted', () => {
    const { router } = setup();
    expect(router.forKey(text('/users/a')).shardId).toBe(1);
    expect(router.forRange({ key: text('a'), rangeEnd: Uint8Array.of(0) }).shardId).toBe(1);
  });

  it('follows mounts and drops as the meta shard applies them, once a store is activated', () => {
    const { engine, router } = setup();
    engine.apply(mountStoreCommand('users', text('/users/'), 2), context);
    // Being created: the default store still serves the prefix.
    expect(router.forKey(text('/users/alice')).shardId).toBe(1);
    engine.apply(activateStoreCommand('users', 2), context);
    expect(router.forKey(text('/users/alice')).shardId).toBe(2);
    expect(router.forKey(text('/users/\xff')).shardId).toBe(3);
    expect(router.forKey(text('/userz')).shardId).toBe(1);
    // A range inside one shard of the store; the key alone; a prefix of one shard.
    expect(router.forRange({ key: text('/users/a'), rangeEnd: text('/users/b') }).shardId).toBe(2);
    expect(router.forRange({ key: text('/users/a') }).shardId).toBe(2);
    expect(router.forRange({ key: text('/users/a'), rangeEnd: new Uint8Array(0) }).shardId).toBe(2);
    // An empty range (end before key): the key's own shard answers it with nothing.
    expect(router.forRange({ key: text('/users/b'), rangeEnd: text('/users/a') }).shardId).toBe(2);
    engine.apply(dropStoreCommand('users', 2), context);
    expect(router.forKey(text('/users/alice')).shardId).toBe(1);
  });

  it('refuses a range over more than one shard, and a txn over more than one', () => {
    const { engine, router } = setup();
    engine.apply(mountStoreCommand('users', text('/users/'), 2), context);
    engine.apply(activateStoreCommand('users', 2), context);
    // The whole store is two shards; every key from "/" on crosses the default store and the mount.
    expect(code(() => router.forRange({ key: text('/users/'), rangeEnd: text('/users0') }))).toBe('cross-shard-range');
    expect(code(() => router.forRange({ key: text('/'), rangeEnd: Uint8Array.of(0) }))).toBe('cross-shard-range');
    expect(code(() => router.forRange({ key: text('/a'), rangeEnd: text('/v') }))).toBe('cross-shard-range');
    // Keys below the mount, and keys above it, are the default store's, in one shard.
    expect(router.forRange({ key: text('/a'), rangeEnd: text('/b') }).shardId).toBe(1);
    expect(router.forRange({ key: text('/v'), rangeEnd: Uint8Array.of(0) }).shardId).toBe(1);
    expect(code(() => router.forRanges([{ key: text('/users/a') }, { key: text('/x') }]))).toBe('cross-shard');
    expect(code(() => router.forRanges([{ key: text('/users/a') }, { key: text('/users/a'), rangeEnd: text('/users/\xff') }]))).toBe('cross-shard');
    expect(router.forRanges([{ key: text('/users/a') }, { key: text('/users/b'), rangeEnd: text('/users/c') }]).shardId).toBe(2);
    expect(router.forKeys([text('/users/a'), text('/users/b')]).shardId).toBe(2);
    // No keys at all (a txn without any): the default store.
    expect(router.forRanges([]).shardId).toBe(1);
  });

  it('admits what clients route, not the shards a node reaches itself', () => {
    const { router, admitted } = setup();
    router.forKey(text('k'));
    router.forRange({ key: text('k') });
    router.forRanges([{ key: text('k') }]);
    expect(admitted).toEqual([1, 1, 1]);
    router.defaultStore();
    router.meta();
    router.shard(1);
    expect(admitted).toEqual([1, 1, 1]);
  });

  it('uses the initial map while the node hosts no meta shard', () => {
    const { router } = setup({ hostsMeta: false });
    expect(router.forKey(text('/users/a')).shardId).toBe(1);
  });
});

describe('routing a placed shard on a node that hosts its group', () => {
  it('serves it while the map lists this member; once a move took it out, sends clients to the listed replicas though the group is still here', () => {
    const meta = composeStateMachine('meta');
    const engine = metaEngineOf(meta);
    for (const id of [1, 2]) {
      const member = encodeMemberContext({ id, name: `n${id}`, peerUrls: [`http://h${id}:2380`], isLearner: false });
      engine.applyConfChange({ transition: 'auto', changes: [{ type: 'add-voter', nodeId: id }], context: member }, context);
    }
    // Every group is hosted here, as on a member that has not left a moved shard's group yet.
    const runtime = { hasShard: () => true, machine: () => meta } as unknown as NodeRuntime;
    const routers = [1, 2].map((self) => new Router(runtime, metaShardMap(runtime, 0, 1), () => {}, undefined, self));
    engine.apply(mountStoreCommand('users', text('/users/'), 1, 1), context);
    engine.apply(activateStoreCommand('users', 2), context);
    const elsewhere = (router: Router): readonly number[] | undefined => {
      try {
        router.forKey(text('/users/a'));
        return undefined;
      } catch (error) {
        if (error instanceof ShardElsewhereError) return error.replicas;
        throw error;
      }
    };
    expect([elsewhere(routers[0]!), elsewhere(routers[1]!)]).toEqual([undefined, [1]]);
    // Moving: still member 1's until the move is finished.
    engine.apply(moveReplicaCommand(2, 1, 2, 1), context);
    expect([elsewhere(routers[0]!), elsewhere(routers[1]!)]).toEqual([undefined, [1]]);
    engine.apply(finishMoveCommand(2, 1, 2), context);
    expect([elsewhere(routers[0]!), elsewhere(routers[1]!)]).toEqual([[2], undefined]);
    // What the node reaches itself by id is not refused (its leader hands over, its group leaves).
    expect(routers[0]!.shard(2).shardId).toBe(2);
  });
});
