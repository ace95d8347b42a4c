import { describe, expect, it } from 'vitest';
import { settleChurnBytesMin, settleChurnStoreFraction, settleIdleMs, settleIntervalMsMin, settleLateCollectMs, settleLateCompactElectionFraction, settleLateCompactMsPerMib } from '../../src/server/limits.js';
import { MemorySettler, lateCompactHeapBytesFor, settleChurnBytesFor } from '../../src/server/memory-settle.js';

/** The largest heap the harness's settler compacts. */
const compactHeapBytesMax = 40 * 1048576;

/** A settler on a hand-driven clock and timer queue; `flush` stands in for the log store's memtable flush. */
function harness(store = { total: 100, inUse: 90 }, failDefragment = false, flush?: () => Promise<boolean>) {
  let now = 0;
  const heap = { used: 20 * 1048576 };
  let timers: Array<{ id: number; at: number; run: () => void }> = [];
  let nextTimerId = 1;
  const calls = { collect: 0, defragment: 0 };
  /** What the settler did, in order: release, flush, collect or compact, trim. */
  const steps: string[] = [];
  const trims = { count: 0 };
  const released = { count: 0 };
  const logged: string[] = [];
  const settler = new MemorySettler({
    storeBytes: () => store,
    defragment: async () => {
      calls.defragment++;
      if (failDefragment) throw new Error('store replaced');
    },
    log: (line) => logged.push(line),
    releaseCaches: () => {
      released.count++;
      steps.push('release');
      return 4 * 1048576;
    },
    ...(flush === undefined
      ? {}
      : {
          flushStorage: async () => {
            steps.push('flush');
            return flush();
          },
        }),
    collect: ({ compact }) => {
      calls.collect++;
      steps.push(compact ? 'compact' : 'collect');
      return true;
    },
    trim: () => {
      trims.count++;
      steps.push('trim');
      return { rssBefore: 3 * 1048576, rssAfter: 1048576, ms: 12.34 };
    },
    heapUsedBytes: () => heap.used,
    compactHeapBytesMax,
    now: () => now,
    setTimer: (run, ms) => {
      const id = nextTimerId++;
      timers.push({ id, at: now + ms, run });
      return id;
    },
    clearTimer: (id) => {
      timers = timers.filter((timer) => timer.id !== id);
    },
  });
  /** Moves the clock, running the timers that come due, and lets the settle's promises finish. */
  async function advance(ms: number): Promise<void> {
    const end = now + ms;
    for (;;) {
      timers.sort((a, b) => a.at - b.at);
      const next = timers[0];
      if (next === undefined || next.at > end) break;
      timers.shift();
      now = next.at;
      next.run();
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    }
    now = end;
  }
  return { settler, calls, trims, released, steps, heap, advance, store, logged, pending: () => timers.length };
}

describe('MemorySettler', () => {
  it('collects twice once writes of settleChurnBytesMin stopped for settleIdleMs, and not before', async () => {
    const h = harness();
    h.settler.applied(settleChurnBytesMin - 1);
    await h.advance(10 * settleIdleMs);
    expect(h.calls).toEqual({ collect: 0, defragment: 0 });
    // Writes keep coming: no settle while they do.
    for (let i = 0; i < 10; i++) {
      h.settler.applied(1);
      await h.advance(settleIdleMs / 2);
    }
    expect(h.calls.collect).toBe(0);
    await h.advance(settleIdleMs);
    expect(h.calls).toEqual({ collect: 2, defragment: 0 });
    expect(h.released.count).toBe(1);
    expect(h.logged.at(-1)).toMatch(/, Raft log cache 4\.0 MB released; malloc_trim: /);
    // Then the late collection, and nothing more until the next writes.
    expect(h.pending()).toBe(1);
    await h.advance(settleLateCollectMs);
    expect(h.calls).toEqual({ collect: 3, defragment: 0 });
    expect(h.settler.settles).toEqual({ collect: 1, defragment: 0, late: 1 });
    expect(h.trims.count).toBe(2);
    expect(h.logged.at(-1)).toMatch(/^memory settled, late collection: rss .* MB \(compacted in [\d.]+ ms\), Raft log cache 4\.0 MB released; malloc_trim: rss 3\.0 -> 1\.0 MB in 12\.3 ms$/);
    expect(h.pending()).toBe(0);
    // Only the late collection compacts the old generation: the settle's two are plain.
    expect(h.steps).toEqual(['release', 'collect', 'collect', 'trim', 'release', 'compact', 'trim']);
  });

  it('the late collection flushes the storage first, then compacts and trims; a failed flush is logged and the collection still runs', async () => {
    let flushes = 0;
    let failNext = false;
    let closed = false;
    const h = harness({ total: 100, inUse: 90 }, false, async () => {
      flushes++;
      if (failNext) throw new Error('Database is not open');
      return !closed;
    });
    h.settler.applied(settleChurnBytesMin);
    await h.advance(settleIdleMs + settleLateCollectMs);
    expect(h.steps).toEqual(['release', 'collect', 'collect', 'trim', 'release', 'flush', 'compact', 'trim']);
    expect(flushes).toBe(1);
    expect(h.logged.at(-1)).toMatch(/ MB released, LevelDB memtable flushed in [\d.]+ ms; malloc_trim: /);
    failNext = true;
    h.settler.applied(settleChurnBytesMin);
    await h.advance(settleIntervalMsMin + settleLateCollectMs);
    expect(h.settler.settles).toEqual({ collect: 2, defragment: 0, late: 2 });
    expect(h.steps.slice(-3)).toEqual(['flush', 'compact', 'trim']);
    expect(h.logged.at(-1)).toMatch(/, LevelDB memtable not flushed \(Database is not open\); malloc_trim: /);
    // The store could not flush (closed or failed): said so.
    failNext = false;
    closed = true;
    h.settler.applied(settleChurnBytesMin);
    await h.advance(settleIntervalMsMin + settleLateCollectMs);
    expect(h.logged.at(-1)).toMatch(/, LevelDB memtable not flushed \(the store is closed or failed\); malloc_trim: /);
    // A heap at the bound is compacted; one byte more, too large for a short pause, gets a plain collection.
    h.heap.used = compactHeapBytesMax;
    h.settler.applied(settleChurnBytesMin);
    await h.advance(settleIntervalMsMin + settleLateCollectMs);
    expect(h.steps.slice(-3)).toEqual(['flush', 'compact', 'trim']);
    h.heap.used = compactHeapBytesMax + 1;
    h.settler.applied(settleChurnBytesMin);
    await h.advance(settleIntervalMsMin + settleLateCollectMs);
    expect(h.settler.settles.late).toBe(5);
    expect(h.steps.slice(-3)).toEqual(['flush', 'collect', 'trim']);
    expect(h.logged.at(-1)).toMatch(/ \(collected in [\d.]+ ms, not compacted: heap 40\.0 MB\), /);
  });

  it('compacts heaps whose estimated pause fits in a quarter of the election timeout', () => {
    expect(settleLateCompactElectionFraction).toBe(0.25);
    // etcd's default election timeout, 1 s: 250 ms of pause at settleLateCompactMsPerMib.
    expect(lateCompactHeapBytesFor(1000)).toBe(Math.floor((250 / settleLateCompactMsPerMib) * 1048576));
    expect(lateCompactHeapBytesFor(1000)).toBeGreaterThan(40 * 1048576);
    // A short election timeout leaves room for the small heaps only.
    expect(lateCompactHeapBytesFor(200)).toBeLessThan(10 * 1048576);
  });

  it('a late collection whose flush is under way when the settler stops, or a settle begins, collects nothing; stop() waits for the flush', async () => {
    const flushes: Array<() => void> = [];
    const h = harness({ total: 100, inUse: 90 }, false, () => new Promise<boolean>((resolve) => flushes.push(() => resolve(true))));
    h.settler.applied(settleChurnBytesMin);
    await h.advance(settleIdleMs + settleLateCollectMs);
    expect(flushes).toHaveLength(1);
    let stopped = false;
    const stopping = h.settler.stop().then(() => {
      stopped = true;
    });
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(stopped).toBe(false);
    flushes[0]!();
    await stopping;
    expect(h.steps.at(-1)).toBe('flush');
    expect(h.settler.settles.late).toBe(0);

    // A settle that begins while the flush runs has a late collection of its own, which runs after
    // the first one gave way to it.
    const g = harness({ total: 100, inUse: 90 }, false, () => new Promise<boolean>((resolve) => flushes.push(() => resolve(true))));
    g.settler.applied(settleChurnBytesMin);
    await g.advance(settleIdleMs + settleLateCollectMs);
    expect(flushes).toHaveLength(2);
    g.settler.applied(settleChurnBytesMin);
    await g.advance(settleIntervalMsMin);
    expect(g.settler.settles).toEqual({ collect: 2, defragment: 0, late: 0 });
    expect(flushes).toHaveLength(2);
    flushes[1]!();
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(g.settler.settles.late).toBe(0);
    expect(flushes).toHaveLength(3);
    flushes[2]!();
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(g.settler.settles.late).toBe(1);
    expect(g.steps).toEqual(['release', 'collect', 'collect', 'trim', 'release', 'flush', 'release', 'collect', 'collect', 'trim', 'release', 'flush', 'compact', 'trim']);
    await g.settler.stop();
  });

  it('collects late once settleLateCollectMs passed since the settle and since the last entry applied', async () => {
    const h = harness({ total: 100, inUse: 40 });
    h.settler.compactionApplied();
    await h.advance(settleIdleMs);
    expect(h.calls).toEqual({ collect: 0, defragment: 1 });
    await h.advance(settleLateCollectMs - 1);
    expect(h.calls.collect).toBe(0);
    await h.advance(1);
    expect(h.settler.settles).toEqual({ collect: 0, defragment: 1, late: 1 });
    // The late collection lets go of what the settle could not (a write was under way then).
    expect(h.released.count).toBe(2);
    // After the next settle, a trickle of small writes (too few for a settle) puts the late
    // collection off until settleLateCollectMs pass without one.
    h.store.inUse = 90;
    h.settler.applied(settleChurnBytesMin);
    await h.advance(settleIntervalMsMin - settleLateCollectMs);
    expect(h.settler.settles).toEqual({ collect: 1, defragment: 1, late: 1 });
    for (let i = 0; i < 5; i++) {
      await h.advance(settleLateCollectMs - 1);
      h.settler.applied(1);
    }
    expect(h.settler.settles.late).toBe(1);
    await h.advance(settleLateCollectMs - 1);
    expect(h.settler.settles.late).toBe(1);
    await h.advance(1);
    expect(h.settler.settles).toEqual({ collect: 1, defragment: 1, late: 2 });
    expect(h.pending()).toBe(0);
    // Stopped: the late collection armed by a settle never runs, and stop() cleared its timer.
    h.settler.applied(settleChurnBytesMin);
    await h.advance(settleIdleMs);
    expect(h.settler.settles.collect).toBe(2);
    expect(h.pending()).toBe(1);
    await h.settler.stop();
    expect(h.pending()).toBe(0);
    await h.advance(settleLateCollectMs);
    expect(h.settler.settles.late).toBe(2);
  });

  it('a large store settles only after writes of settleChurnStoreFraction of its size', async () => {
    const store = { total: 64 * 1024 * 1024, inUse: 60 * 1024 * 1024 };
    const needed = settleChurnBytesFor(store.total);
    expect(needed).toBe(Math.ceil(store.total * settleChurnStoreFraction));
    expect(needed).toBeGreaterThan(settleChurnBytesMin);
    const h = harness(store);
    h.settler.applied(settleChurnBytesMin);
    await h.advance(10 * settleIdleMs);
    expect(h.calls.collect).toBe(0);
    h.settler.applied(needed - settleChurnBytesMin - 1);
    await h.advance(10 * settleIdleMs);
    expect(h.calls.collect).toBe(0);
    h.settler.applied(1);
    await h.advance(settleIdleMs);
    expect(h.calls.collect).toBe(2);
    // The store shrank meanwhile: the next settle needs only what its new size asks.
    store.total = 1024;
    h.settler.applied(settleChurnBytesMin);
    await h.advance(settleIntervalMsMin + settleIdleMs);
    // Two more for the settle, one for the first one's late collection meanwhile.
    expect(h.calls.collect).toBe(5);
    expect(h.settler.settles).toEqual({ collect: 2, defragment: 0, late: 1 });
  });

  it('settles after every burst, at most once per settleIntervalMsMin', async () => {
    const h = harness();
    h.settler.applied(settleChurnBytesMin);
    await h.advance(settleIdleMs);
    expect(h.calls.collect).toBe(2);
    h.settler.applied(settleChurnBytesMin);
    await h.advance(settleIdleMs);
    expect(h.calls.collect).toBe(2);
    await h.advance(settleIntervalMsMin);
    expect(h.settler.settles).toEqual({ collect: 2, defragment: 0, late: 1 });
    expect(h.calls.collect).toBe(5);
  });

  it('rewrites the store after a compaction that left it mostly garbage, and only then', async () => {
    const h = harness({ total: 100, inUse: 40 });
    h.settler.compactionApplied();
    await h.advance(settleIdleMs);
    expect(h.calls).toEqual({ collect: 0, defragment: 1 });
    // The Defragmenter trims after its own collection: the settle does not trim again.
    expect(h.trims.count).toBe(0);
    // A compaction that left the arenas mostly in use: a collection is enough, then a trim.
    h.store.inUse = 90;
    h.settler.compactionApplied();
    await h.advance(settleIntervalMsMin);
    expect(h.settler.settles).toEqual({ collect: 1, defragment: 1, late: 1 });
    expect(h.calls).toEqual({ collect: 3, defragment: 1 });
    expect(h.trims.count).toBe(2);
    expect(h.logged.at(-1)).toMatch(/^memory settled after writes stopped \(collected\): .*; malloc_trim: rss 3\.0 -> 1\.0 MB in 12\.3 ms$/);
  });

  it('does nothing once stopped', async () => {
    const h = harness();
    h.settler.applied(settleChurnBytesMin);
    h.settler.stop();
    await h.advance(settleIntervalMsMin);
    expect(h.calls).toEqual({ collect: 0, defragment: 0 });
  });

  it('logs a settle that failed and goes on settling later bursts', async () => {
    const h = harness({ total: 100, inUse: 10 }, true);
    h.settler.compactionApplied();
    await h.advance(settleIdleMs);
    expect(h.calls.defragment).toBe(1);
    expect(h.logged.join('\n')).toMatch(/memory settle failed: store replaced/);
    expect(h.settler.settles).toEqual({ collect: 0, defragment: 0, late: 0 });
    h.settler.applied(settleChurnBytesMin);
    await h.advance(settleIntervalMsMin);
    expect(h.calls.collect).toBe(2);
  });
});
