/** The watch engine's catch-up: bounded pieces of history, whole revisions, nothing lost. */
import { describe, expect, it } from 'vitest';
import { WatchHub, Watcher, type WatchSink, watchLimits } from '../../src/engines/watch/index.js';
import { MvccStore, type MvccEvent } from '../../storage/index.js';

class RecordingSink implements WatchSink {
  readonly deliveries: MvccEvent[][] = [];
  readonly cancels: string[] = [];
  deliver(_watcher: Watcher, events: readonly MvccEvent[]): boolean {
    this.deliveries.push([...events]);
    return true;
  }
  compacted(): void {
    throw new Error('not compacted in this test');
  }
  canceled(_watcher: Watcher, reason: string): void {
    this.cancels.push(reason);
  }
  hasRoom(): boolean {
    return true;
  }
}

async function untilSynced(watcher: Watcher): Promise<void> {
  while (!watcher.synced) await new Promise((resolve) => setImmediate(resolve));
}

const bytesOf = (events: readonly MvccEvent[]): number => events.reduce((n, e) => n + e.kv.key.length + e.kv.value.length, 0);

describe('WatchHub catch-up', () => {
  it('reads a long history of large values in pieces of about watchCatchUpBytesMax, whole revisions, in order', async () => {
    const store = new MvccStore();
    const valueBytes = 1024 * 1024;
    const revisions = 24;
    for (let i = 0; i < revisions; i++) {
      store.txn({
        compare: [],
        success: [
          { type: 'put', put: { key: Buffer.from(`a${i}`), value: Buffer.alloc(valueBytes / 2, i) } },
          { type: 'put', put: { key: Buffer.from(`b${i}`), value: Buffer.alloc(valueBytes / 2, i) } },
        ],
        failure: [],
      });
    }
    const hub = new WatchHub(() => store);
    const sink = new RecordingSink();
    const watcher = new Watcher(1, { key: Buffer.from([0]), rangeEnd: Buffer.from([0]), startRevision: 1, noPut: false, noDelete: false, prevKv: false }, sink);
    hub.add(watcher);
    await untilSynced(watcher);

    const all = sink.deliveries.flat();
    expect(all.map((e) => e.kv.modRevision)).toEqual(Array.from({ length: revisions }, (_, i) => [i + 2, i + 2]).flat());
    expect(sink.deliveries.length).toBeGreaterThan(1);
    for (const delivery of sink.deliveries) {
      // A piece stops at the first revision boundary at or past the limit.
      expect(bytesOf(delivery)).toBeLessThan(watchLimits.watchCatchUpBytesMax + valueBytes + 64);
      const first = delivery[0]!.kv.modRevision;
      const last = delivery.at(-1)!.kv.modRevision;
      expect(delivery.filter((e) => e.kv.modRevision === first)).toHaveLength(2);
      expect(delivery.filter((e) => e.kv.modRevision === last)).toHaveLength(2);
    }
  });
});

describe('WatchHub.cancelWhere', () => {
  it('cancels the watchers chosen, with the reason, and delivers nothing more to them', async () => {
    const store = new MvccStore();
    const hub = new WatchHub(() => store);
    const ceded = new RecordingSink();
    const kept = new RecordingSink();
    const single = new RecordingSink();
    const options = { startRevision: 2, noPut: false, noDelete: false, prevKv: false };
    const range = new Watcher(1, { ...options, key: Buffer.from('/users/'), rangeEnd: Buffer.from('/users0') }, ceded);
    const other = new Watcher(2, { ...options, key: Buffer.from('/jobs/'), rangeEnd: Buffer.from('/jobs0') }, kept);
    const key = new Watcher(3, { ...options, key: Buffer.from('/users/a'), rangeEnd: undefined }, single);
    for (const w of [range, other, key]) hub.add(w);
    await Promise.all([range, other, key].map(untilSynced));
    const under = (w: Watcher): boolean => Buffer.from(w.options.key).toString().startsWith('/users/');
    expect(hub.cancelWhere(under, 'gone')).toBe(2);
    expect([ceded.cancels, single.cancels, kept.cancels]).toEqual([['gone'], ['gone'], []]);
    expect(hub.watcherCount).toBe(1);
    const put = (k: string) => hub.onApplied(store.put(Buffer.from(k), Buffer.from('v')).events);
    put('/users/b');
    put('/jobs/x');
    expect([ceded.deliveries, single.deliveries, kept.deliveries.flat().map((e) => Buffer.from(e.kv.key).toString())]).toEqual([[], [], ['/jobs/x']]);
  });
});

describe('WatchHub.cancelWhere with a take-over (a split)', () => {
  it("hands a synced watcher over from the store's next revision, even for a quiet key, and an unsynced one from where it is", async () => {
    const store = new MvccStore();
    const hub = new WatchHub(() => store);
    const options = { noPut: false, noDelete: false, prevKv: false, rangeEnd: undefined };
    const put = (k: string) => hub.onApplied(store.put(Buffer.from(k), Buffer.from('v')).events);
    put('/u/quiet');
    const quietSink = new RecordingSink();
    const quiet = new Watcher(1, { ...options, key: Buffer.from('/u/quiet'), startRevision: store.revision + 1 }, quietSink);
    hub.add(quiet);
    await untilSynced(quiet);
    // Other keys move the store on; the quiet watcher's own next revision does not move.
    for (let i = 0; i < 50; i++) put(`/u/other${i}`);
    store.compact(store.revision - 5);
    // An unsynced watcher (it starts in the past, and its stream has no room to catch up).
    const behindSink = new RecordingSink();
    behindSink.hasRoom = () => false;
    behindSink.deliver = () => false;
    const behind = new Watcher(2, { ...options, key: Buffer.from('/u/other49'), startRevision: store.revision - 2 }, behindSink);
    hub.add(behind);
    expect(behind.synced).toBe(false);
    const taken = new Map<number, number>();
    const rehome = (w: Watcher): boolean => {
      taken.set(w.id, w.nextRevision);
      return true;
    };
    expect(hub.cancelWhere(() => true, 'moved', rehome)).toBe(2);
    // Taken over past the compaction (the child would otherwise cancel it as compacted), not canceled.
    expect(taken.get(1)).toBe(store.revision + 1);
    expect(taken.get(2)).toBe(store.revision - 2);
    expect([quietSink.cancels, behindSink.cancels]).toEqual([[], []]);
    // A take-over refused: canceled with the reason.
    const refusedSink = new RecordingSink();
    const refused = new Watcher(3, { ...options, key: Buffer.from('/u/x'), startRevision: store.revision + 1 }, refusedSink);
    hub.add(refused);
    await untilSynced(refused);
    hub.cancelWhere(() => true, 'moved', () => false);
    expect(refusedSink.cancels).toEqual(['moved']);
  });
});

describe('Watcher.select', () => {
  const kv = (key: string, modRevision = 5) => ({ key: Buffer.from(key), value: Buffer.from('v'), createRevision: 2, modRevision, version: 3, lease: 0n });
  const options = { key: Buffer.from('a'), rangeEnd: Buffer.from('c'), startRevision: 1, noPut: false, noDelete: false, prevKv: true };
  const events: MvccEvent[] = [
    { type: 'put', kv: kv('a'), prevKv: kv('a', 4) },
    { type: 'delete', kv: kv('b') },
  ];

  it('gives the revision itself, not a copy, when every event passes unchanged', () => {
    expect(new Watcher(1, options, new RecordingSink()).select(events)).toBe(events);
  });

  it('copies when a key, a filter or prevKv leaves something out', () => {
    const outOfRange = new Watcher(1, { ...options, rangeEnd: Buffer.from('b') }, new RecordingSink()).select(events);
    expect(outOfRange).toEqual([events[0]]);
    const noDelete = new Watcher(1, { ...options, noDelete: true }, new RecordingSink()).select(events);
    expect(noDelete).toEqual([events[0]]);
    const noPrev = new Watcher(1, { ...options, prevKv: false }, new RecordingSink()).select(events);
    expect(noPrev).toEqual([{ type: 'put', kv: events[0]!.kv }, events[1]]);
    expect(events[0]!.prevKv).toBeDefined();
  });
});

/** A sink whose stream can be closed to play a stalled client. */
class GateSink implements WatchSink {
  open = true;
  readonly deliveries: MvccEvent[][] = [];
  deliver(_watcher: Watcher, events: readonly MvccEvent[]): boolean {
    if (!this.open) return false;
    this.deliveries.push([...events]);
    return true;
  }
  compacted(): void {
    throw new Error('not compacted in this test');
  }
  canceled(): void {
    throw new Error('not canceled in this test');
  }
  hasRoom(): boolean {
    return this.open;
  }
}

describe('WatchHub recent revisions', () => {
  async function fallBehind(puts: number, valueBytes: number): Promise<{ applied: MvccEvent[]; delivered: MvccEvent[]; hub: WatchHub }> {
    const store = new MvccStore();
    const hub = new WatchHub(() => store);
    const sink = new GateSink();
    const watcher = new Watcher(1, { key: Buffer.from('k'), rangeEnd: undefined, startRevision: 2, noPut: false, noDelete: false, prevKv: false }, sink);
    hub.add(watcher);
    await untilSynced(watcher);
    const applied: MvccEvent[] = [];
    for (let i = 0; i < puts; i++) {
      // The client stalls after the first few puts; the watcher falls back to catching up.
      if (i === 3) sink.open = false;
      const { events } = store.put(Buffer.from('k'), Buffer.alloc(valueBytes, i));
      hub.onApplied(events);
      applied.push(...events);
    }
    expect(watcher.synced).toBe(false);
    sink.open = true;
    hub.onRoom();
    await untilSynced(watcher);
    return { applied, delivered: sink.deliveries.flat(), hub };
  }

  it('catches a watcher that fell behind up from the applied event objects themselves, in order', async () => {
    const { applied, delivered } = await fallBehind(500, 100);
    expect(delivered.length).toBe(applied.length);
    // The same KeyValue objects (whose encodings a stream already made), not copies read from the store.
    for (let i = 0; i < applied.length; i++) expect(delivered[i]!.kv).toBe(applied[i]!.kv);
  });

  it(`falls back to the store's history for revisions beyond the last ${watchLimits.watchRecentEventsBytesMax / 1024 / 1024} MiB`, async () => {
    const valueBytes = 256 * 1024;
    const puts = Math.ceil((2 * watchLimits.watchRecentEventsBytesMax) / valueBytes);
    const { applied, delivered, hub } = await fallBehind(puts, valueBytes);
    expect(delivered.map((e) => e.kv.modRevision)).toEqual(applied.map((e) => e.kv.modRevision));
    expect(delivered.map((e) => e.kv.value[0])).toEqual(applied.map((e) => e.kv.value[0]));
    // The oldest revisions came from the store (new objects).
    expect(delivered[3]!.kv).not.toBe(applied[3]!.kv);
    // What the recent revisions hold is counted as the whole arenas their values are views of,
    // and stays within the budget (here the key's arena alone is over it: nothing is kept).
    const held = hub.recentEvents;
    expect(held.bytes).toBeLessThanOrEqual(watchLimits.watchRecentEventsBytesMax);
    expect(held.revisions).toBe(0);
  });

  it('keeps no revision that alone is over the budget, and a watcher behind it reads it from history', async () => {
    const store = new MvccStore();
    const hub = new WatchHub(() => store);
    const keys = Math.ceil(watchLimits.watchRecentEventsBytesMax / watchLimits.watchRecentEventBytes) + 1;
    for (let i = 0; i < keys; i++) hub.onApplied(store.put(Buffer.from(`k/${i}`), Buffer.from('v')).events);
    const sink = new RecordingSink();
    const watcher = new Watcher(1, { key: Buffer.from('k/'), rangeEnd: Buffer.from('k0'), startRevision: keys + 2, noPut: false, noDelete: false, prevKv: false }, sink);
    const deleted = store.deleteRange({ key: Buffer.from('k/'), rangeEnd: Buffer.from('k0') }).events;
    expect(deleted.length).toBe(keys);
    hub.onApplied(deleted);
    expect(hub.recentEvents.revisions).toBe(0);
    expect(hub.recentEvents.bytes).toBe(0);
    hub.add(watcher);
    await untilSynced(watcher);
    expect(sink.deliveries.flat().length).toBe(keys);
  });

  it('keeps replayed revisions out of the recent ones; a watcher from inside the replay still gets every revision, from history', async () => {
    const store = new MvccStore();
    const hub = new WatchHub(() => store);
    const applied: MvccEvent[] = [];
    const apply = (i: number, remember: boolean): void => {
      const events = store.put(Buffer.from(`k${i}`), Buffer.from(`v${i}`)).events;
      applied.push(...events);
      hub.onApplied(events, remember);
    };
    for (let i = 0; i < 50; i++) apply(i, false);
    expect(hub.recentEvents.revisions).toBe(0);
    expect(hub.recentEvents.bytes).toBe(0);
    // Nobody watches: live revisions are not kept either.
    apply(50, true);
    expect(hub.recentEvents.revisions).toBe(0);
    // Once someone watches (another key), live revisions are kept, from the next one on.
    const idle = new Watcher(9, { key: Buffer.from('zz'), rangeEnd: undefined, startRevision: store.revision + 1, noPut: false, noDelete: false, prevKv: false }, new RecordingSink());
    hub.add(idle);
    await untilSynced(idle);
    for (let i = 51; i < 61; i++) apply(i, true);
    expect(hub.recentEvents.revisions).toBe(10);
    const sink = new RecordingSink();
    const watcher = new Watcher(1, { key: Buffer.from('k'), rangeEnd: Buffer.from('l'), startRevision: 2, noPut: false, noDelete: false, prevKv: false }, sink);
    hub.add(watcher);
    await untilSynced(watcher);
    const delivered = sink.deliveries.flat();
    expect(delivered.map((e) => e.kv.modRevision)).toEqual(applied.map((e) => e.kv.modRevision));
    expect(delivered.map((e) => Buffer.from(e.kv.value).toString())).toEqual(applied.map((e) => Buffer.from(e.kv.value).toString()));
  });

  it('counts an outgrown arena that recent events still view, once, and lets it go with them', async () => {
    // Small values, so the recent revisions are many; each put's value is a view into the arena of
    // its segment as it was then, and the arena is copied as it grows.
    const { hub } = await fallBehind(2000, 1000);
    const held = hub.recentEvents;
    expect(held.bytes).toBeLessThanOrEqual(watchLimits.watchRecentEventsBytesMax);
    // 2,000 values of 1,000 bytes (about 2 MB with their headers) in one key's arena, grown by
    // copies: the outgrown copies, each viewed by the events of its time, add up to about twice as
    // much again. Counting keys and values alone would say 2 MB.
    expect(held.bytes).toBeGreaterThan(2 * 2000 * 1000);
  });
});

describe('WatchHub at the compact revision', () => {
  it("serves a watch starting at the compact revision from the store's history: no prevKv read below it", async () => {
    const store = new MvccStore();
    const hub = new WatchHub(() => store);
    for (const value of ['1', '2', '3']) hub.onApplied(store.put(Buffer.from('k'), Buffer.from(value)).events);
    store.compact(3);
    const sink = new RecordingSink();
    const watcher = new Watcher(1, { key: Buffer.from('k'), rangeEnd: undefined, startRevision: 3, noPut: false, noDelete: false, prevKv: true }, sink);
    hub.add(watcher);
    await untilSynced(watcher);
    const got = sink.deliveries.flat();
    expect(got.map((e) => e.kv.modRevision)).toEqual([3, 4]);
    // Revision 2 is compacted away, so the event at 3 has no previous value (as etcd); 4 has 3's.
    expect(got[0]!.prevKv).toBeUndefined();
    expect(got[1]!.prevKv?.modRevision).toBe(3);
  });
});
