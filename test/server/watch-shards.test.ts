/**
 * One Watch stream whose watchers are on different shards: each watcher is served by the shard
 * that holds its keys, and every answer about it carries that shard's own revision (created,
 * events, progress, cancel). A progress request is answered with watch_id -1 only while the
 * stream's watchers share one shard; otherwise each watcher is answered on its own, since no one
 * revision is true for all of them (a client resumes a watch from the revision it was told).
 * Driven in one process, with two real MVCC stores and watch hubs and a fake call.
 */
import { describe, expect, it } from 'vitest';
import { MvccStore } from '../../storage/index.js';
import { AuthEngine } from '../../src/engines/index.js';
import { etcdType } from '../../src/etcd-proto.js';
import { dkvError, errorTable } from '../../src/errors.js';
import { AuthGate } from '../../src/server/auth/gate.js';
import { SimpleTokens } from '../../src/server/auth/tokens.js';
import { EventsResponse, WatchHub, type WatchedShard } from '../../src/server/watch-service.js';
import { FakeWatchCall, watchServiceOnFakes } from './fake-watch-call.js';

const b = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));
const ResponseHeader = etcdType('etcdserverpb.ResponseHeader');
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

interface TestShard extends WatchedShard {
  readonly store: MvccStore;
  put(key: string): void;
}

function shard(shardId: number, term: number): TestShard {
  const store = new MvccStore();
  const hub = new WatchHub(() => store);
  const handle = { shardId, term: () => term };
  return { shardId, hub, store, revision: () => store.revision, handle: () => handle as never, put: (key) => hub.onApplied(store.put(b(key), b('v')).events) };
}

/** Shard 1 holds keys before "m", shard 2 the rest; a range across "m" is refused. */
function setup() {
  const low = shard(1, 3);
  const high = shard(2, 7);
  // Different revision sequences (each starts at 1): shard 2 is ahead, at 6.
  for (let i = 0; i < 5; i++) high.put(`z${i}`);
  const gate = new AuthGate({ auth: () => new AuthEngine(), simpleTokens: new SimpleTokens(60_000), clientCertAuth: false, nowMs: () => 0, catchUp: async () => {} });
  const route = (range: { key: Uint8Array; rangeEnd?: Uint8Array }) => {
    const side = (key: Uint8Array) => (Buffer.compare(Buffer.from(key), Buffer.from('m')) < 0 ? low : high);
    const end = range.rangeEnd;
    if (end === undefined || end.length === 0) return side(range.key);
    const last = end.length === 1 && end[0] === 0 ? high : Buffer.compare(Buffer.from(end), Buffer.from('m')) <= 0 ? low : high;
    return side(range.key) === last ? last : { refusal: dkvError('watch-cross-shard') };
  };
  const service = watchServiceOnFakes(gate, () => low, route);
  const call = new FakeWatchCall();
  (service.implementation['Watch'] as (call: unknown) => void)(call);
  return { call, low, high };
}

/** What the stream wrote, as [watch_id, what, header revision, raft term]. */
function answers(call: FakeWatchCall): Array<[number, string, number, number]> {
  return call.written.map((r) => {
    if (r instanceof EventsResponse) {
      const header = ResponseHeader.decode(r.header) as unknown as { revision: number; raft_term: number };
      return [r.watchId, `events ${r.events.length}`, Number(header.revision), Number(header.raft_term)];
    }
    const o = r as { watch_id: number; created?: boolean; canceled?: boolean; cancel_reason?: string; header: { revision: number; raft_term: number } };
    const what = o.canceled === true ? `canceled ${o.cancel_reason ?? ''}` : o.created === true ? 'created' : 'progress';
    return [o.watch_id, what.trim(), o.header.revision, o.header.raft_term];
  });
}

const create = (key: string, id: number, rangeEnd?: string) => ({ create_request: { key: b(key), range_end: rangeEnd === undefined ? undefined : b(rangeEnd), watch_id: id } });

describe('a Watch stream with watchers on two shards', () => {
  it('answers each watcher with its own shard revision: created, events, progress, cancel', async () => {
    const { call, low, high } = setup();
    call.send(create('a', 1));
    call.send(create('x', 2));
    await turn();
    expect(answers(call)).toEqual([
      [1, 'created', 1, 3],
      [2, 'created', 6, 7],
    ]);
    call.written.length = 0;
    low.put('a');
    high.put('x');
    await turn();
    expect(answers(call)).toEqual([
      [1, 'events 1', 2, 3],
      [2, 'events 1', 7, 7],
    ]);
    // No revision is true for both: each watcher gets its own progress answer.
    call.written.length = 0;
    call.send({ progress_request: {} });
    await turn();
    expect(answers(call)).toEqual([
      [1, 'progress', 2, 3],
      [2, 'progress', 7, 7],
    ]);
    // With the watchers on one shard again, one answer for all (etcd's watch_id -1).
    call.written.length = 0;
    call.send({ cancel_request: { watch_id: 2 } });
    call.send({ progress_request: {} });
    await turn();
    expect(answers(call)).toEqual([
      [2, 'canceled', 7, 7],
      [-1, 'progress', 2, 3],
    ]);
    call.emit('end');
    expect(low.hub.watcherCount + high.hub.watcherCount).toBe(0);
  });

  it('starts a watch at a past revision of its own shard, and refuses a range across shards', async () => {
    const { call, low, high } = setup();
    low.put('b');
    call.send({ create_request: { key: b('z'), range_end: b('z\xff'), start_revision: 4, watch_id: 5 } });
    call.send(create('k', 6, 'p'));
    await turn();
    expect(answers(call)).toEqual([
      [5, 'created', 6, 7],
      // z2, z3 and z4 (revisions 4 to 6) from shard 2's history, under its header.
      [5, 'events 3', 6, 7],
      [-1, `canceled ${errorTable['watch-cross-shard'].message}`, 2, 3],
    ]);
    expect(high.hub.watcherCount).toBe(1);
    call.emit('end');
  });

  it("cancels a shard's watchers with the reason when the shard stops serving their keys, leaving the others", async () => {
    const { call, low, high } = setup();
    call.send(create('a', 1));
    call.send(create('x', 2));
    await turn();
    call.written.length = 0;
    high.hub.cancelWhere(() => true, errorTable['watch-other-store'].message);
    low.put('a');
    await turn();
    expect(answers(call)).toEqual([
      [2, `canceled ${errorTable['watch-other-store'].message}`, 6, 7],
      [1, 'events 1', 2, 3],
    ]);
    call.written.length = 0;
    call.send({ progress_request: {} });
    await turn();
    expect(answers(call)).toEqual([[-1, 'progress', 2, 3]]);
    call.emit('end');
  });
});
