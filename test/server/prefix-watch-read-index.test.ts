/**
 * dkv.v1 WatchPrefix's snapshot is linearizable: a member behind its shards' leaders reads it only
 * after a ReadIndex of every shard the prefix covers (`PrefixWatchContext.readIndex`), so a put
 * acknowledged before the call is in it. Driven in one process, deterministically: two real MVCC
 * stores stand for this member's copies of two shards, each with puts its leader committed that
 * this member has not applied yet; `readIndex` applies them a turn later, as a member catching up
 * to the read index does. A ReadIndex that fails fails the call: no stale snapshot is sent.
 */
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { errorTable } from '../../src/errors.js';
import { RuntimeError } from '../../src/runtime/index.js';
import type { WatchedShard } from '../../src/server/watch-service.js';
import { type PrefixWatchResponse, type StoreShard, aroundStore, b, openPrefixWatch, prefixWatchServiceOn, storeShard, text, turn, until } from './prefix-watch-fixture.js';

/** This member's copy of a shard, and the puts its leader committed that the copy lacks. */
interface LaggingShard extends StoreShard {
  readonly unapplied: Array<[string, string]>;
}

function laggingShard(shardId: number): LaggingShard {
  return { ...storeShard(shardId), unapplied: [] };
}

/** Applies what the leader committed: the member has caught up to the read index. */
function catchUp(shard: LaggingShard): void {
  for (const [key, value] of shard.unapplied.splice(0)) shard.hub.onApplied(shard.store.put(b(key), b(value)).events);
}

/**
 * The service over a prefix shard 1 serves on both sides of shard 2's part (the default store
 * around a store's prefix), with `readIndex` as given; one call of it, with its responses and error.
 */
function watch(one: LaggingShard, two: LaggingShard, readIndex: ((shard: WatchedShard) => Promise<void>) | undefined, message: object) {
  return openPrefixWatch(prefixWatchServiceOn(aroundStore(one, two), readIndex), message);
}

const snapshotSent = (responses: readonly PrefixWatchResponse[]): boolean => responses.some((r) => r.snapshot_done === true);

/** The snapshot's keys and values, once it is done. */
function snapshotOf(responses: readonly PrefixWatchResponse[]): Map<string, string> {
  expect(snapshotSent(responses)).toBe(true);
  const view = new Map<string, string>();
  for (const r of responses) for (const kv of r.snapshot_kvs ?? []) view.set(text(kv.key), text(kv.value));
  return view;
}

describe('dkv.v1 WatchPrefix snapshot on a member behind its shards\' leaders', () => {
  it('holds every put acknowledged before the call, in every shard it covers (read after a ReadIndex of each)', async () => {
    const one = laggingShard(1);
    const two = laggingShard(2);
    one.hub.onApplied(one.store.put(b('a'), b('old')).events);
    two.hub.onApplied(two.store.put(b('m/a'), b('old')).events);
    // Acknowledged to their writers (committed by the leaders), not applied here yet.
    one.unapplied.push(['a', 'new'], ['z', 'new']);
    two.unapplied.push(['m/a', 'new'], ['m/b', 'new']);
    const read: number[] = [];
    const { call, responses, errors } = watch(
      one,
      two,
      async (shard) => {
        read.push(shard.shardId);
        await turn();
        catchUp(shard as LaggingShard);
      },
      { prefix: new Uint8Array(0), snapshot: true },
    );
    await until(() => snapshotSent(responses) || errors.length > 0, 'the snapshot sent or the call failed');
    expect(errors).toEqual([]);
    expect(new Map([...snapshotOf(responses)].sort())).toEqual(
      new Map([
        ['a', 'new'],
        ['m/a', 'new'],
        ['m/b', 'new'],
        ['z', 'new'],
      ]),
    );
    // Each shard once, though shard 1 serves two parts.
    expect([...read].sort()).toEqual([1, 2]);
    // Each shard's snapshot is at the revision it caught up to, and the watch goes on from there.
    expect(responses.map((r) => [r.shard, r.revision])).toEqual([
      [1, one.store.revision],
      [2, two.store.revision],
      [1, one.store.revision],
    ]);
    two.hub.onApplied(two.store.put(b('m/c'), b('live')).events);
    await until(() => responses.some((r) => (r.events ?? []).length > 0), 'the live put sent');
    expect(responses.filter((r) => (r.events ?? []).length > 0).map((r) => [r.shard, r.revision])).toEqual([[2, two.store.revision]]);
    call.emit('cancelled');
    expect(one.hub.watcherCount + two.hub.watcherCount).toBe(0);
  });

  it('fails the call with the ReadIndex\'s error and sends no snapshot when a shard\'s ReadIndex fails', async () => {
    const one = laggingShard(1);
    const two = laggingShard(2);
    one.hub.onApplied(one.store.put(b('a'), b('old')).events);
    two.unapplied.push(['m/a', 'new']);
    const { responses, errors } = watch(
      one,
      two,
      async (shard) => {
        await turn();
        if (shard.shardId === 2) throw new RuntimeError('no-leader', 'shard 2 has no leader');
        catchUp(shard as LaggingShard);
      },
      { prefix: new Uint8Array(0), snapshot: true },
    );
    // The call failed (or, broken, sent its snapshot): past the point a snapshot would go out.
    await until(() => errors.length > 0 || snapshotSent(responses), 'the call failed or sent its snapshot');
    expect(responses).toEqual([]);
    expect(errors.map((e) => ({ code: e.code, details: e.details }))).toEqual([{ code: grpc.status.UNAVAILABLE, details: errorTable['no-leader'].message }]);
    expect(one.hub.watcherCount + two.hub.watcherCount).toBe(0);
  });

  it('registers no watcher for a call cancelled while its ReadIndex runs', async () => {
    const one = laggingShard(1);
    const two = laggingShard(2);
    let release = (): void => {};
    const answered = new Promise<void>((resolve) => (release = resolve));
    const { call, responses, errors } = watch(one, two, () => answered, { prefix: new Uint8Array(0), snapshot: true });
    // A call left running, on shards of its own, waits for the same answer: once its snapshot is
    // out, the cancelled call (which waited first) is past the point it would have registered.
    const control = watch(laggingShard(1), laggingShard(2), () => answered, { prefix: new Uint8Array(0), snapshot: true });
    Object.assign(call, { cancelled: true });
    call.emit('cancelled');
    release();
    await until(() => snapshotSent(control.responses) || control.errors.length > 0, 'the call left running sent its snapshot or failed');
    expect(control.errors).toEqual([]);
    control.call.emit('cancelled');
    expect({ responses, errors, watchers: one.hub.watcherCount + two.hub.watcherCount }).toEqual({ responses: [], errors: [], watchers: 0 });
  });

  it('asks no ReadIndex for a resume (no snapshot to read: its events follow from the revisions it names, as this member applies them)', async () => {
    const one = laggingShard(1);
    const two = laggingShard(2);
    const read: number[] = [];
    const { call, responses, errors } = watch(
      one,
      two,
      async (shard) => void read.push(shard.shardId),
      { prefix: new Uint8Array(0), resume: [{ shard: 1, revision: 1 }, { shard: 2, revision: 1 }] },
    );
    // Each shard's start is said once its watch is set up: past the point a ReadIndex would be asked.
    await until(() => responses.length >= 2 || errors.length > 0, "each shard's start sent or the call failed");
    expect({ read, errors, starts: responses.map((r) => [r.shard, r.revision]) }).toEqual({ read: [], errors: [], starts: [[1, 0], [2, 0]] });
    call.emit('cancelled');
  });
});
