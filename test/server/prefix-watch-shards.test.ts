/**
 * dkv.v1 WatchPrefix over a prefix two shards serve in three parts (the default store's shard on
 * both sides of a store's): random writes to both shards, the stream broken and resumed with the
 * resume token at random points, a consumer that keeps each shard's next revision as the
 * TypeScript client does. Every change comes once and in its shard's order, writes a shard makes
 * to keys between its parts (another shard's) never show, and the consumer's view ends equal to
 * the two stores' keys under the prefix. Driven in one process: two real MVCC stores and watch
 * engines, the real service, a fake call.
 */
import fc from 'fast-check';
import type * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import type { MvccStore } from '../../storage/index.js';
import { OwnershipEngine, cedeCommand } from '../../src/engines/index.js';
import { KvEngine } from '../../src/engines/kv/index.js';
import { watcherOwned } from '../../src/engines/watch/index.js';
import type { FakeWatchCall } from './fake-watch-call.js';
import { type PrefixWatchResponse, type StoreShard, aroundStore, b, openPrefixWatch, prefixWatchServiceOn, storeShard, text, turn, until } from './prefix-watch-fixture.js';

/** Keys of both shards; the store's (shard 2) are under "m/". Shard 1 also writes "m/x", a key between its parts. */
const keys = ['a', 'k', 'm/a', 'm/b', 'z', 'm/x'];
const ownerOf = (key: string): 1 | 2 => (key.startsWith('m/') && key !== 'm/x' ? 2 : 1);

type Op = { kind: 'put' | 'del'; key: number; value: number } | { kind: 'txn'; keys: [number, number]; value: number } | { kind: 'break' } | { kind: 'turn' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constantFrom('put' as const, 'del' as const), key: fc.nat(keys.length - 1), value: fc.nat(99) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('txn' as const), keys: fc.tuple(fc.nat(keys.length - 1), fc.nat(keys.length - 1)), value: fc.nat(99) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('break' as const) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('turn' as const) }) },
);

describe('dkv.v1 WatchPrefix across shards, broken and resumed with the token', () => {
  it('gives every change once, in its shard order, and only the parts\' keys', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 60 }), fc.boolean(), async (ops, prewrite) => {
        const one = storeShard(1);
        const two = storeShard(2);
        const shards = new Map([
          [1, one],
          [2, two],
        ]);
        const write = (target: StoreShard, events: ReturnType<MvccStore['put']>['events']): void => target.hub.onApplied(events);
        // History before the watch, "m/x" in shard 1's included.
        if (prewrite) {
          for (const key of keys) {
            const target = shards.get(ownerOf(key))!;
            write(target, target.store.put(b(key), b('p')).events);
          }
        }
        const service = prefixWatchServiceOn(aroundStore(one, two));
        // The consumer: each shard's next revision owed (the token), and the view.
        const next = new Map<number, number>();
        const view = new Map<string, string>();
        /** Per shard, each event seen as [revision, key]: one revision may change several keys. */
        const seen = new Map<number, Array<[number, string]>>();
        let call: FakeWatchCall | undefined;
        let responses: PrefixWatchResponse[] = [];
        let errors: grpc.ServiceError[] = [];
        let read = 0;
        let snapshotDone = false;
        const consume = (): void => {
          expect(errors).toEqual([]);
          for (; read < responses.length; read++) {
            const r = responses[read]!;
            expect(r.canceled).not.toBe(true);
            if (!snapshotDone) {
              for (const kv of r.snapshot_kvs ?? []) view.set(text(kv.key), text(kv.value));
              next.set(r.shard, r.revision + 1);
              if (r.snapshot_done === true) snapshotDone = true;
              continue;
            }
            const events = (r.events ?? []).filter((e) => e.kv.mod_revision >= (next.get(r.shard) ?? 0));
            for (const e of events) {
              const key = text(e.kv.key);
              expect(key).not.toBe('m/x');
              if (e.type === 1) view.delete(key);
              else view.set(key, text(e.kv.value));
              const list = seen.get(r.shard) ?? [];
              list.push([e.kv.mod_revision, key]);
              seen.set(r.shard, list);
            }
            if (events.length > 0) next.set(r.shard, events[events.length - 1]!.kv.mod_revision + 1);
            else if ((r.events ?? []).length === 0) next.set(r.shard, Math.max(next.get(r.shard) ?? 0, r.revision + 1));
          }
        };
        const open = (): void => {
          consume();
          call?.emit('cancelled');
          read = 0;
          const resume = [...next].map(([s, revision]) => ({ shard: s, revision }));
          ({ call, responses, errors } = openPrefixWatch(service, snapshotDone ? { prefix: new Uint8Array(0), resume } : { prefix: new Uint8Array(0), snapshot: true }));
        };
        open();
        for (const op of ops) {
          if (op.kind === 'break') open();
          else if (op.kind === 'turn') await turn();
          else if (op.kind === 'txn') {
            // A txn of two keys in one shard (the first key's): one revision there.
            const target = shards.get(ownerOf(keys[op.keys[0]]!))!;
            const pair = [...new Set(op.keys.map((k) => keys[k]!).filter((k) => ownerOf(k) === target.shardId))];
            const result = target.store.txn({ compare: [], success: pair.map((key) => ({ type: 'put' as const, put: { key: b(key), value: b(`t${op.value}`) } })), failure: [] });
            write(target, result.events);
          } else {
            const key = keys[op.key]!;
            const target = shards.get(ownerOf(key))!;
            const events = op.kind === 'put' ? target.store.put(b(key), b(`v${op.value}`)).events : target.store.deleteRange({ key: b(key) }).events;
            write(target, events);
          }
          consume();
        }
        // A synced watcher hears each revision as it is applied; one behind catches up on later
        // turns. The response queue writes what they gave it at the end of the task.
        await until(() => one.hub.unsyncedCount + two.hub.unsyncedCount === 0, 'every watcher caught up');
        await turn();
        consume();
        // The view: the keys of both stores under the prefix, as each shard serves its parts.
        const truth = new Map<string, string>();
        for (const kv of one.store.range({ key: b('\0'), rangeEnd: Uint8Array.of(0) }).kvs) if (ownerOf(text(kv.key)) === 1 && text(kv.key) !== 'm/x') truth.set(text(kv.key), text(kv.value));
        for (const kv of two.store.range({ key: b('m/'), rangeEnd: b('m0') }).kvs) truth.set(text(kv.key), text(kv.value));
        expect(new Map([...view].sort())).toEqual(new Map([...truth].sort()));
        for (const [, events] of seen) {
          expect(new Set(events.map(([revision, key]) => `${revision} ${key}`)).size).toBe(events.length);
          const revisions = events.map(([revision]) => revision);
          expect(revisions).toEqual([...revisions].sort((x, y) => x - y));
        }
        call?.emit('cancelled');
        expect(one.hub.watcherCount + two.hub.watcherCount).toBe(0);
      }),
      { numRuns: 150 },
    );
  });

  it("keeps a shard's watcher while the shard serves its parts, whatever it cedes elsewhere (a prefix another shard serves in its middle)", async () => {
    const one = storeShard(1);
    const two = storeShard(2);
    const service = prefixWatchServiceOn([
      { shard: one, range: { key: b('p/'), rangeEnd: b('p/m/') } },
      { shard: two, range: { key: b('p/m/'), rangeEnd: b('p/m0') } },
      { shard: one, range: { key: b('p/m0'), rangeEnd: b('p0') } },
    ]);
    const { call } = openPrefixWatch(service, { prefix: b('p/') });
    await until(() => one.hub.watcherCount === 1, "shard 1's watcher registered");
    const ownership = new OwnershipEngine(new KvEngine());
    const cede = (prefix: string, store: number) => expect(ownership.apply(cedeCommand(b(prefix), store), { index: 1, term: 1, nowMs: 0, proposer: 1, requestId: 1 }).kind).toBe('ok');
    const cancelUnowned = () => one.hub.cancelWhere((w) => !watcherOwned(w, (key, rangeEnd) => ownership.owns(key, rangeEnd)), 'moved');
    // The store in the middle (shard 2's part), then a store elsewhere: shard 1 still serves its parts.
    cede('p/m/', 2);
    cede('x/', 3);
    expect(cancelUnowned()).toBe(0);
    // A store inside one of its parts: those keys move, the watcher goes.
    cede('p/z/', 4);
    expect(cancelUnowned()).toBe(1);
    call.emit('cancelled');
  });

  it("claims progress only up to the revisions it looked at when a catch-up page holds none of the parts' keys", async () => {
    const one = storeShard(1);
    const service = prefixWatchServiceOn([
      { shard: one, range: { key: b('\0'), rangeEnd: b('m/') } },
      { shard: one, range: { key: b('m0'), rangeEnd: Uint8Array.of(0) } },
    ]);
    const start = one.store.revision;
    // More revisions than one catch-up step reads, all of a key between the parts, then one of a part's.
    for (let i = 0; i < 1_200; i++) one.hub.onApplied(one.store.put(b('m/x'), b(`x${i}`)).events);
    one.hub.onApplied(one.store.put(b('a'), b('last')).events);
    const { call, responses, errors } = openPrefixWatch(service, { prefix: new Uint8Array(0), resume: [{ shard: 1, revision: start + 1 }] });
    await until(() => responses.some((r) => (r.events ?? []).length > 0) || errors.length > 0, "the part's put sent or the call failed");
    expect(errors).toEqual([]);
    // Every response's claim (the revision of an empty one) stays below the revision of the event still to come.
    const put = one.store.revision;
    let claimed = 0;
    for (const r of responses) {
      const events = r.events ?? [];
      if (events.length === 0) claimed = Math.max(claimed, r.revision);
      else {
        expect(events.map((e) => [text(e.kv.key), e.kv.mod_revision])).toEqual([['a', put]]);
        expect(claimed).toBeLessThan(put);
      }
    }
    expect(responses.some((r) => (r.events ?? []).length > 0)).toBe(true);
    call.emit('cancelled');
  });
});
