/**
 * The lock and election recipe's wait (`waitForTurn`) on one node's own state, with no cluster:
 * a waiter whose predecessor's key is deleted takes its turn as soon as the delete is applied
 * here, without asking the leader for a read index first (which cost a heartbeat round to a
 * quorum on every handoff of a contended lock), and it still waits while a key created before
 * its own is left, and says when its own key is gone.
 */
import { describe, expect, it } from 'vitest';
import { EngineId } from '../../src/engines/index.js';
import { WatchHub } from '../../src/engines/watch/index.js';
import type { ShardHandle } from '../../src/runtime/index.js';
import { type ConcurrencyContext, type Joined, namePrefix, sessionKey, waitForTurn } from '../../src/server/concurrency.js';
import { MvccStore } from '../../storage/index.js';

/** A shard of one node's state: its store and watch engine; a ReadIndex round would fail the test. */
function oneNode(): { store: MvccStore; shard: ShardHandle; ctx: ConcurrencyContext; readRounds: () => number } {
  const store = new MvccStore();
  const hub = new WatchHub(() => store);
  let readRounds = 0;
  const machine = { engine: (id: number) => (id === EngineId.Kv ? { mvcc: store } : undefined) };
  const shard = {
    shardId: 1,
    machine: () => machine,
    read: () => {
      readRounds++;
      return Promise.reject(new Error('no ReadIndex round is expected'));
    },
  } as unknown as ShardHandle;
  const ctx = { watchHub: () => hub } as unknown as ConcurrencyContext;
  // What a node does when it applies a write: the store first, then the watch engine.
  const apply = store.txn.bind(store);
  store.txn = (request, options) => {
    const result = apply(request, options);
    hub.onApplied(result.events);
    return result;
  };
  return { store, shard, ctx, readRounds: () => readRounds };
}

const prefix = namePrefix(Buffer.from('lock-wait'));

function join(store: MvccStore, lease: bigint): Joined {
  const key = sessionKey(prefix, lease);
  const result = store.txn({ compare: [], success: [{ type: 'put', put: { key, value: Buffer.alloc(0) } }], failure: [] });
  return { session: { lease, keyId: lease }, key, rev: result.revision, txnRevision: result.revision, existingValue: undefined, owner: undefined };
}

function remove(store: MvccStore, joined: Joined): void {
  store.txn({ compare: [], success: [{ type: 'deleteRange', deleteRange: { key: joined.key } }], failure: [] });
}

const settled = async (promise: Promise<unknown>): Promise<boolean> => {
  let done = false;
  void promise.then(() => (done = true), () => (done = true));
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
  return done;
};

describe('waitForTurn', () => {
  it('takes its turn when the keys before its own are deleted here, with no ReadIndex round', async () => {
    const { store, shard, ctx, readRounds } = oneNode();
    const first = join(store, 0x1an);
    const second = join(store, 0x2bn);
    const third = join(store, 0x3cn);
    const signal = new AbortController().signal;
    const turn = waitForTurn(ctx, shard, third, prefix, signal);
    expect(await settled(turn)).toBe(false);
    remove(store, second); // out of the middle of the queue: the first still holds the lock
    expect(await settled(turn)).toBe(false);
    remove(store, first);
    await expect(turn).resolves.toEqual({ revision: store.revision, held: true });
    expect(readRounds()).toBe(0);
  });

  it('reports its own key gone (held false), and leaves when the client cancels', async () => {
    const { store, shard, ctx } = oneNode();
    const first = join(store, 0x1an);
    const second = join(store, 0x2bn);
    const third = join(store, 0x3cn);
    const gone = waitForTurn(ctx, shard, second, prefix, new AbortController().signal);
    const canceled = new AbortController();
    const waiting = waitForTurn(ctx, shard, third, prefix, canceled.signal);
    remove(store, second); // its session ended while it waited
    remove(store, first);
    await expect(gone).resolves.toMatchObject({ held: false });
    expect(await settled(waiting)).toBe(true); // nothing before the third is left: its turn
    await expect(waiting).resolves.toMatchObject({ held: true });

    const fourth = join(store, 0x4dn);
    const stopped = waitForTurn(ctx, shard, fourth, prefix, canceled.signal);
    canceled.abort(new Error('canceled by the client'));
    await expect(stopped).rejects.toThrow('canceled by the client');
  });
});
