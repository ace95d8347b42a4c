/**
 * The dkv.v1 WatchPrefix service on fakes, for its unit tests (one process, no gRPC, no cluster):
 * shards that are a real MVCC store and watch engine each, the real service over parts of them
 * (by default the default store's shard on both sides of a store's), and calls of it on a
 * `FakeWatchCall`, with their responses and errors.
 */
import type * as grpc from '@grpc/grpc-js';
import { MvccStore } from '../../storage/index.js';
import { AuthEngine } from '../../src/engines/index.js';
import { AuthGate } from '../../src/server/auth/gate.js';
import { SimpleTokens } from '../../src/server/auth/tokens.js';
import { type PrefixWatchContext, type WatchPart, createPrefixWatchService } from '../../src/server/prefix-watch-service.js';
import { WatchHub, type WatchedShard } from '../../src/server/watch-service.js';
import { FakeWatchCall } from './fake-watch-call.js';

export const b = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));
export const text = (bytes: unknown): string => Buffer.from(bytes as Uint8Array).toString('latin1');
/** One turn of the event loop (what a watch engine's catch-up or a fake ReadIndex waits for). */
export const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Turns `until` waits at the most. What it waits for takes a handful (a fake ReadIndex a turn, the
 * service's continuation and the response queue's flush, a watcher's catch-up a turn a page): the
 * bound is there so a condition that never comes fails the test with its name, not a timeout.
 */
export const untilTurnsMax = 1_000;

/** Yields turns of the event loop until `condition` holds; fails, naming `what`, after `turnsMax` turns. */
export async function until(condition: () => boolean, what: string, turnsMax = untilTurnsMax): Promise<void> {
  for (let turns = 0; !condition(); turns++) {
    if (turns >= turnsMax) throw new Error(`not so after ${turnsMax} turns of the event loop: ${what}`);
    await turn();
  }
}

/** A shard as the service sees it, over a real MVCC store of its own. */
export interface StoreShard extends WatchedShard {
  readonly store: MvccStore;
}

export function storeShard(shardId: number): StoreShard {
  const store = new MvccStore();
  const handle = { shardId, term: () => 1 };
  return { shardId, store, hub: new WatchHub(() => store), revision: () => store.revision, handle: () => handle as never };
}

/** The parts of every key: shard `one` (the default store's) on both sides of shard `two`'s "m/" (a store's prefix). */
export function aroundStore(one: WatchedShard, two: WatchedShard): WatchPart[] {
  return [
    { shard: one, range: { key: b('\0'), rangeEnd: b('m/') } },
    { shard: two, range: { key: b('m/'), rangeEnd: b('m0') } },
    { shard: one, range: { key: b('m0'), rangeEnd: Uint8Array.of(0) } },
  ];
}

/** The service over `parts` (whatever range is watched), auth off, this member's shard map caught up; `readIndex` as given. */
export function prefixWatchServiceOn(parts: readonly WatchPart[], readIndex?: PrefixWatchContext['readIndex']): ReturnType<typeof createPrefixWatchService> {
  const gate = new AuthGate({ auth: () => new AuthEngine(), simpleTokens: new SimpleTokens(60_000), clientCertAuth: false, nowMs: () => 0, catchUp: async () => {} });
  return createPrefixWatchService({
    parts: () => [...parts],
    store: (shard) => (shard as StoreShard).store,
    gate,
    catchUp: async () => {},
    ...(readIndex === undefined ? {} : { readIndex }),
  });
}

/** A WatchPrefix response as the service writes it (the fields the tests read). */
export interface PrefixWatchResponse {
  shard: number;
  revision: number;
  snapshot_kvs?: Array<{ key: Uint8Array; value: Uint8Array }>;
  snapshot_done?: boolean;
  events?: Array<{ type: number; kv: { key: Uint8Array; value: Uint8Array; mod_revision: number } }>;
  canceled?: boolean;
}

/** One WatchPrefix call of `service` with the request `message`: the call, what it wrote so far, and the errors it ended with. */
export function openPrefixWatch(service: ReturnType<typeof createPrefixWatchService>, message: object): { call: FakeWatchCall; responses: PrefixWatchResponse[]; errors: grpc.ServiceError[] } {
  const call = new FakeWatchCall();
  const errors: grpc.ServiceError[] = [];
  // As grpc-js's server stream does: an 'error' ends the call with that status.
  call.on('error', (error: grpc.ServiceError) => errors.push(error));
  Object.assign(call, { request: { raw: Buffer.alloc(0), message } });
  (service.implementation['WatchPrefix'] as (call: unknown) => void)(call);
  return { call, responses: call.written as unknown as PrefixWatchResponse[], errors };
}
