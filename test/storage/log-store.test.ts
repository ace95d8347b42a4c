/**
 * What the LevelDB log store does beyond the LogStorage contract: group commit, several shards in
 * one database, the tail cache with background loads, bounded background compaction, snapshot
 * chunks, and recovery.
 */
import { readdirSync } from 'node:fs';
import { Level } from 'level';
import { afterEach, describe, expect, it } from 'vitest';
import { type Entry, type Snapshot, isLogUnavailable } from '../../raft/index.js';
import { LevelLogStore, entryKey, logLimits } from '../../storage/log/index.js';
import { tempDir } from './temp-dir.js';

function entry(index: number, term: number, size = 8): Entry {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (index * 7 + i) & 0xff;
  return { index, term, type: 'normal', data };
}

function entries(from: number, to: number, term: number, size = 8): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push(entry(i, term, size));
  return out;
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function openStore(options: { sync?: boolean; tailCacheBytesMax?: number } = {}): Promise<{ store: LevelLogStore; path: string; reopen(): Promise<LevelLogStore> }> {
  const dir = tempDir('log-store');
  let store = await LevelLogStore.open({ path: dir.path, ...options });
  cleanups.push(async () => {
    await store.close();
    dir.remove();
  });
  return {
    store,
    path: dir.path,
    reopen: async () => {
      await store.close();
      store = await LevelLogStore.open({ path: dir.path, ...options });
      return store;
    },
  };
}

async function countEntryRecords(path: string, shard: number): Promise<number> {
  const db = new Level<Uint8Array, Uint8Array>(path, { keyEncoding: 'view', valueEncoding: 'view' });
  await db.open();
  const keys = await db.keys({ gte: entryKey(shard, 0), lte: entryKey(shard, Number.MAX_SAFE_INTEGER) }).all();
  await db.close();
  return keys.length;
}

describe('group commit', () => {
  it('saves made in one turn share one synced batch', async () => {
    const { store } = await openStore();
    const saves: Promise<void>[] = [];
    for (let shard = 1; shard <= 8; shard++) saves.push(store.save([{ shard, entries: entries(1, 10, 1) }]));
    await Promise.all(saves);
    expect(store.stats.syncedBatches).toBe(1);
    expect(store.stats.saves).toBe(8);
  });

  it('syncs a group only when one of its saves asks for it', async () => {
    const { store } = await openStore();
    await store.save([{ shard: 1, entries: entries(1, 2, 1) }]);
    expect(store.stats.syncedBatches).toBe(1);
    await store.save([{ shard: 1, hardState: { term: 1, vote: 0, commit: 2 } }], { sync: false });
    expect(store.stats.syncedBatches).toBe(1);
    await Promise.all([
      store.save([{ shard: 2, hardState: { term: 1, vote: 0, commit: 0 } }], { sync: false }),
      store.save([{ shard: 3, entries: entries(1, 1, 1) }]),
    ]);
    expect(store.stats.syncedBatches).toBe(2);
    expect(store.stats.saves).toBe(4);
  });

  it('reports the duration of every synced batch to the listener, and of no unsynced one', async () => {
    const { store } = await openStore();
    const seconds: number[] = [];
    store.onSyncedWrite((s) => seconds.push(s));
    await Promise.all([store.save([{ shard: 1, entries: entries(1, 2, 1) }]), store.save([{ shard: 2, entries: entries(1, 2, 1) }])]);
    expect(seconds).toHaveLength(1);
    await store.save([{ shard: 1, hardState: { term: 1, vote: 0, commit: 2 } }], { sync: false });
    expect(seconds).toHaveLength(1);
    const started = performance.now();
    await store.save([{ shard: 1, entries: entries(3, 3, 1) }]);
    const waited = (performance.now() - started) / 1000;
    expect(seconds).toHaveLength(2);
    expect(store.stats.syncedBatches).toBe(2);
    // The batch's own time: positive, and never more than the save waited in all.
    expect(seconds[1]).toBeGreaterThan(0);
    expect(seconds[1]).toBeLessThanOrEqual(waited);
  });

  it('a deferrable save (a commit index alone) waits for the next batch and is written with it', async () => {
    const { store, reopen } = await openStore();
    await store.save([{ shard: 1, entries: entries(1, 4, 1), hardState: { term: 1, vote: 1, commit: 1 } }]);
    const before = { ...store.stats };
    let deferredDone = false;
    const deferred = store.save([{ shard: 1, hardState: { term: 1, vote: 1, commit: 3 } }], { sync: false, deferrable: true }).then(() => {
      deferredDone = true;
    });
    // Reads see it at once; the disk does not yet.
    expect(store.shard(1).initialState().hardState.commit).toBe(3);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(deferredDone).toBe(false);
    expect(store.stats.saves).toBe(before.saves);
    // The next save of any kind takes it along: one synced batch for both.
    await store.save([{ shard: 2, entries: entries(1, 1, 1) }]);
    await deferred;
    expect(store.stats.saves).toBe(before.saves + 2);
    expect(store.stats.syncedBatches).toBe(before.syncedBatches + 1);
    expect((await reopen()).shard(1).initialState().hardState).toEqual({ term: 1, vote: 1, commit: 3 });
  });

  it(`a deferrable save goes out by itself after ${logLimits.deferredWriteDelayMs} ms, unsynced`, async () => {
    const { store } = await openStore();
    await store.save([{ shard: 1, entries: entries(1, 2, 1) }]);
    const before = { ...store.stats };
    const started = performance.now();
    await store.save([{ shard: 1, hardState: { term: 1, vote: 0, commit: 2 } }], { sync: false, deferrable: true });
    expect(performance.now() - started).toBeGreaterThanOrEqual(logLimits.deferredWriteDelayMs - 5);
    expect(store.stats.saves).toBe(before.saves + 1);
    expect(store.stats.syncedBatches).toBe(before.syncedBatches);
  });

  it('a deferrable save does not start a batch of its own behind a write in flight', async () => {
    const { store } = await openStore();
    const first = store.save([{ shard: 1, entries: entries(1, 3, 1) }]);
    await new Promise((resolve) => setImmediate(resolve));
    let deferredDone = false;
    const deferred = store.save([{ shard: 1, hardState: { term: 1, vote: 0, commit: 3 } }], { sync: false, deferrable: true }).then(() => {
      deferredDone = true;
    });
    await first;
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(deferredDone).toBe(false);
    await store.idle();
    await deferred;
    expect(deferredDone).toBe(true);
  });

  it('idle() and close() write deferred saves out', async () => {
    const { store, reopen } = await openStore();
    await store.save([{ shard: 1, entries: entries(1, 2, 1) }]);
    void store.save([{ shard: 1, hardState: { term: 1, vote: 0, commit: 2 } }], { sync: false, deferrable: true });
    const again = await reopen();
    expect(again.shard(1).initialState().hardState.commit).toBe(2);
  });

  it('saves made while a write is in flight go out together as the next batch', async () => {
    const { store } = await openStore();
    const first = store.save([{ shard: 1, entries: entries(1, 1, 1) }]);
    // Let the first batch start writing, then queue three more in later turns.
    await new Promise((resolve) => setImmediate(resolve));
    const later = [2, 3, 4].map((shard) => store.save([{ shard, entries: entries(1, 1, 1) }]));
    await Promise.all([first, ...later]);
    expect(store.stats.saves).toBe(4);
    expect(store.stats.syncedBatches).toBeLessThanOrEqual(2);
  });

  it('one save carries many shards atomically, and all of them come back after a reopen', async () => {
    const { store, reopen } = await openStore();
    await store.save([
      { shard: 0, entries: entries(1, 3, 1), hardState: { term: 1, vote: 1, commit: 2 } },
      { shard: 1, entries: entries(1, 5, 2), hardState: { term: 2, vote: 3, commit: 5 }, applied: 4 },
      { shard: 0xffff_ffff, entries: entries(1, 1, 9), hardState: { term: 9, vote: 0, commit: 1 } },
    ]);
    const again = await reopen();
    expect(again.shards()).toEqual([0, 1, 0xffff_ffff]);
    expect(again.shard(0).lastIndex()).toBe(3);
    expect(again.shard(1).initialState().hardState).toEqual({ term: 2, vote: 3, commit: 5 });
    expect(again.shard(1).applied).toBe(4);
    expect(again.shard(0xffff_ffff).term(1)).toBe(9);
    expect(Array.from(again.shard(1).entries(5, 6, 1e9)[0]!.data)).toEqual(Array.from(entry(5, 2).data));
  });

  it('refuses a whole save when one of its updates is invalid, changing nothing', async () => {
    const { store } = await openStore();
    await store.save([{ shard: 1, entries: entries(1, 2, 1) }]);
    await expect(
      store.save([
        { shard: 2, entries: entries(1, 2, 1) },
        { shard: 1, entries: entries(5, 6, 1) },
      ]),
    ).rejects.toThrow(/shard 1: gap/);
    expect(store.shard(2).lastIndex()).toBe(0);
    expect(store.shard(1).lastIndex()).toBe(2);
  });
});

describe('the tail cache and background loads', () => {
  it('keeps unapplied entries in memory and loads evicted applied ones on demand', async () => {
    const { store } = await openStore({ sync: false, tailCacheBytesMax: 4096 });
    const log = store.shard(3);
    await store.save([{ shard: 3, entries: entries(1, 2000, 1, 64) }]);
    // Nothing is applied yet: everything stays in memory.
    expect(log.cacheStats().entries).toBe(2000);
    await store.save([{ shard: 3, applied: 1500, hardState: { term: 1, vote: 1, commit: 1500 } }]);
    const stats = log.cacheStats();
    expect(stats.first).toBeGreaterThan(1);
    expect(stats.first).toBeLessThanOrEqual(1501);
    expect(stats.entries).toBeGreaterThanOrEqual(logLimits.tailCacheEntriesMin);
    // Terms are answered without the entries.
    expect(log.term(1)).toBe(1);
    // An old entry is loaded in the background: temporarily unavailable, then served.
    let error: unknown;
    try {
      log.entries(10, 20, 1e9);
    } catch (e) {
      error = e;
    }
    expect(isLogUnavailable(error, 'temporarily-unavailable')).toBe(true);
    await store.idle();
    const got = log.entries(10, 20, 1e9);
    expect(got.map((e) => e.index)).toEqual([10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
    expect(Array.from(got[0]!.data)).toEqual(Array.from(entry(10, 1, 64).data));
    // A read spanning loaded and cached entries joins them.
    const span = log.entries(stats.first - 2, stats.first + 2, 1e9).map((e) => e.index);
    expect(span[0]).toBe(stats.first - 2);
  });

  it('recovers the entries the tail cache keeps as copies of their own, not views of a shared read block', async () => {
    const { store, reopen } = await openStore({ sync: false, tailCacheBytesMax: 4096 });
    // Shard 2: a handful of entries (as a meta shard has), read in one block with shard 3's.
    await store.save([
      { shard: 2, entries: entries(1, 3, 1, 100), hardState: { term: 1, vote: 1, commit: 3 }, applied: 3 },
      { shard: 3, entries: entries(1, 400, 1, 200), hardState: { term: 1, vote: 1, commit: 400 } },
    ]);
    const reopened = await reopen();
    const own = (e: Entry): boolean => e.data.byteOffset === 0 && e.data.buffer.byteLength === e.data.byteLength;
    const small = reopened.shard(2).entries(1, 4, 1e9);
    expect(small.map((e) => e.index)).toEqual([1, 2, 3]);
    expect(small.every(own)).toBe(true);
    expect(Array.from(small[2]!.data)).toEqual(Array.from(entry(3, 1, 100).data));
    // Shard 3: the newest tailCacheEntriesMin entries (and tailCacheBytesMax) are copies; the
    // older ones stay views until the replay applies them.
    const big = reopened.shard(3).entries(1, 401, 1e9);
    expect(big.length).toBe(400);
    const copied = big.filter(own).length;
    expect(copied).toBeGreaterThanOrEqual(logLimits.tailCacheEntriesMin);
    expect(copied).toBeLessThan(400);
    expect(big.slice(400 - logLimits.tailCacheEntriesMin).every(own)).toBe(true);
    expect(Array.from(big[399]!.data)).toEqual(Array.from(entry(400, 1, 200).data));
  });

  it('lets go of entries applied in memory only, and stores no applied index for them', async () => {
    const { store, reopen } = await openStore({ sync: false, tailCacheBytesMax: 4096 });
    const log = store.shard(3);
    await store.save([{ shard: 3, entries: entries(1, 2000, 1, 64), hardState: { term: 1, vote: 1, commit: 2000 } }]);
    expect(log.cacheStats().entries).toBe(2000);
    await store.save([{ shard: 3, appliedInMemory: 1500 }]);
    expect(log.cacheStats().first).toBeGreaterThan(1);
    expect(log.cacheStats().first).toBeLessThanOrEqual(1501);
    expect(log.applied).toBe(0);
    await store.close();
    const reopened = await reopen();
    // Restart replays from the stored applied index (a snapshot's), never from the in-memory one.
    expect(reopened.shard(3).applied).toBe(0);
    await reopened.close();
  });

  it('an idle node lets go of every applied entry; a read of one brings it back from disk', async () => {
    const { store } = await openStore({ sync: false });
    const log = store.shard(3);
    await store.save([{ shard: 3, entries: entries(1, 300, 1, 64), hardState: { term: 1, vote: 1, commit: 300 } }]);
    await store.save([{ shard: 3, appliedInMemory: 200 }]);
    // A save under way: nothing is let go (its entries may not be in LevelDB yet).
    const saving = store.save([{ shard: 3, entries: entries(301, 301, 1, 64) }]);
    expect(store.releaseAppliedCaches()).toBe(0);
    await saving;
    await store.idle();
    const before = log.cacheStats();
    expect(before.entries).toBe(301);
    const released = store.releaseAppliedCaches();
    const after = log.cacheStats();
    expect(released).toBe(before.bytes - after.bytes);
    expect(released).toBeGreaterThan(0);
    // The unapplied entries stay: the apply loop reads them synchronously.
    expect(after).toMatchObject({ first: 201, entries: 101 });
    expect(log.entries(201, 302, 1e9).map((e) => e.index)).toEqual(Array.from({ length: 101 }, (_, i) => 201 + i));
    // An applied one (a lagging follower's next entry) is read back from LevelDB.
    expect(() => log.entries(100, 102, 1e9)).toThrow();
    await store.idle();
    const back = log.entries(100, 102, 1e9);
    expect(back.map((e) => e.index)).toEqual([100, 101]);
    expect(Array.from(back[0]!.data)).toEqual(Array.from(entry(100, 1, 64).data));
    expect(log.cacheStats().loadedRanges).toBe(1);
    // The next release lets go of what was read back too; everything applied is gone.
    await store.save([{ shard: 3, appliedInMemory: 301 }]);
    store.releaseAppliedCaches();
    expect(log.cacheStats()).toMatchObject({ first: 302, entries: 0, bytes: 0, loadedRanges: 0 });
    // New entries are cached again from the next index.
    await store.save([{ shard: 3, entries: entries(302, 303, 1, 64) }]);
    expect(log.cacheStats()).toMatchObject({ first: 302, entries: 2 });
    expect(log.entries(302, 304, 1e9).map((e) => e.index)).toEqual([302, 303]);
    await store.close();
  });

  it('flushMemtable writes the memtable out to a table file; the records stay; a closed store does nothing', async () => {
    const { store, path, reopen } = await openStore({ sync: false });
    await store.save([{ shard: 3, entries: entries(1, 50, 1, 64), hardState: { term: 1, vote: 1, commit: 50 } }]);
    const tables = (): string[] => readdirSync(path).filter((name) => name.endsWith('.ldb'));
    // A few KiB: LevelDB keeps them in its memtable (and its own log) until the write buffer fills.
    expect(tables()).toEqual([]);
    expect(await store.flushMemtable()).toBe(true);
    expect(tables().length).toBeGreaterThan(0);
    const again = await reopen();
    const log = again.shard(3);
    await again.idle();
    expect(log.entries(1, 51, 1e9).map((e) => Array.from(e.data))).toEqual(entries(1, 50, 1, 64).map((e) => Array.from(e.data)));
    // A close while a flush runs waits for it (classic-level defers the close).
    await again.save([{ shard: 3, entries: entries(51, 60, 1, 64) }]);
    const flushing = again.flushMemtable();
    await again.close();
    expect(await flushing).toBe(true);
    expect(await again.flushMemtable()).toBe(false);
  });

  it('drops a load whose entries were replaced while it ran', async () => {
    const { store } = await openStore({ sync: false, tailCacheBytesMax: 1024 });
    const log = store.shard(3);
    await store.save([{ shard: 3, entries: entries(1, 500, 1, 64), applied: 500, hardState: { term: 1, vote: 0, commit: 500 } }]);
    expect(() => log.entries(5, 6, 1e9)).toThrow();
    // A snapshot replaces the log before the load finishes.
    const snap: Snapshot = { metadata: { index: 600, term: 2, confState: { voters: [1], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } }, data: new Uint8Array(3) };
    await store.save([{ shard: 3, snapshot: snap }]);
    await store.idle();
    expect(log.cacheStats().loadedRanges).toBe(0);
    expect(() => log.entries(5, 6, 1e9)).toThrow(/compacted/);
  });
});

describe('background compaction', () => {
  it('deletes compacted records in bounded steps while saves go on', async () => {
    const { store, path } = await openStore({ sync: false });
    const total = logLimits.compactionDeleteKeysMax * 5;
    await store.save([{ shard: 2, entries: entries(1, total, 1), applied: total, hardState: { term: 1, vote: 0, commit: total } }]);
    await store.save([{ shard: 2, compact: total - 10 }]);
    // The next save resolves long before the whole deletion is done.
    await store.save([{ shard: 2, entries: entries(total + 1, total + 1, 1) }]);
    expect(store.stats.compactedKeys).toBeLessThan(total - 10);
    await store.idle();
    expect(store.stats.compactedKeys).toBe(total - 10);
    expect(store.shard(2).firstIndex()).toBe(total - 9);
    await store.close();
    expect(await countEntryRecords(path, 2)).toBe(11);
  });

  it('finishes an interrupted deletion after a restart and keeps the log intact', async () => {
    const { store, reopen, path } = await openStore({ sync: false });
    await store.save([{ shard: 2, entries: entries(1, 3000, 1), applied: 3000, hardState: { term: 1, vote: 0, commit: 3000 } }]);
    // Compact, then close before the deletion runs (close waits, so reopen the raw DB to re-add some
    // compacted records, as an interrupted deletion would leave them).
    await store.save([{ shard: 2, compact: 2000 }]);
    await store.close();
    const db = new Level<Uint8Array, Uint8Array>(path, { keyEncoding: 'view', valueEncoding: 'view' });
    await db.open();
    const orphan = await db.get(entryKey(2, 2500));
    expect(orphan).toBeDefined();
    // Records 1500..1600 below the compaction point reappear as leftovers of a deletion.
    const { seal } = await import('../../storage/log/records.js');
    const { encodeEntry } = await import('../../storage/log/records.js');
    for (let i = 1500; i <= 1600; i++) await db.put(entryKey(2, i), seal(entryKey(2, i), encodeEntry(entry(i, 1))));
    await db.close();
    const again = await reopen();
    expect(again.shard(2).firstIndex()).toBe(2001);
    expect(again.shard(2).lastIndex()).toBe(3000);
    await again.idle();
    await again.close();
    expect(await countEntryRecords(path, 2)).toBe(1000);
  });
});

describe('snapshots', () => {
  it('stores large snapshot data in chunks and streams it back', async () => {
    const { store, reopen } = await openStore({ sync: false });
    const data = new Uint8Array(logLimits.snapshotChunkBytesMax * 2 + 123);
    for (let i = 0; i < data.length; i++) data[i] = (i * 13) & 0xff;
    const snap: Snapshot = { metadata: { index: 50, term: 3, confState: { voters: [1, 2, 3], votersOutgoing: [], learners: [4], learnersNext: [], autoLeave: false } }, data };
    await store.save([{ shard: 5, entries: entries(1, 60, 2) }]);
    await store.save([{ shard: 5, snapshot: snap, hardState: { term: 3, vote: 1, commit: 50 } }]);
    const again = await reopen();
    const log = again.shard(5);
    expect(log.firstIndex()).toBe(51);
    expect(log.lastIndex()).toBe(50);
    expect(log.snapshot().metadata.index).toBe(50);
    expect(Buffer.from(log.snapshot().data).equals(Buffer.from(data))).toBe(true);
    const chunks: Uint8Array[] = [];
    for await (const chunk of again.readSnapshotChunks(5)) chunks.push(chunk);
    expect(chunks.length).toBe(3);
    expect(chunks.every((c) => c.length <= logLimits.snapshotChunkBytesMax)).toBe(true);
    expect(Buffer.concat(chunks).equals(Buffer.from(data))).toBe(true);
    // A newer snapshot replaces the old chunks.
    await again.save([{ shard: 5, snapshot: { ...snap, metadata: { ...snap.metadata, index: 70 }, data: new Uint8Array(5) } }]);
    const third = await reopen();
    expect(third.shard(5).snapshot().data.length).toBe(5);
  });

  it('removes a shard entirely', async () => {
    const { store, path } = await openStore({ sync: false });
    await store.save([{ shard: 9, entries: entries(1, 100, 1) }, { shard: 10, entries: entries(1, 5, 1) }]);
    await store.dropShard(9);
    expect(store.shards()).toEqual([10]);
    await store.close();
    expect(await countEntryRecords(path, 9)).toBe(0);
    expect(await countEntryRecords(path, 10)).toBe(5);
  });
});

describe('after close', () => {
  it('refuses saves', async () => {
    const { store } = await openStore();
    await store.close();
    await expect(store.save([{ shard: 1, entries: entries(1, 1, 1) }])).rejects.toThrow(/closed/);
  });
});

describe('validation of a save', () => {
  it('checks entries that follow a snapshot in the same save', async () => {
    const { store } = await openStore({ sync: false });
    const snap: Snapshot = { metadata: { index: 10, term: 2, confState: { voters: [1], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } }, data: new Uint8Array(1) };
    await expect(store.save([{ shard: 1, snapshot: snap, entries: entries(12, 13, 2) }])).rejects.toThrow(/gap: appending index 12 after last index 10/);
    await expect(store.save([{ shard: 1, snapshot: snap, entries: [entry(11, 2), entry(13, 2)] }])).rejects.toThrow(/not contiguous/);
    await store.save([{ shard: 1, snapshot: snap, entries: entries(11, 12, 2), hardState: { term: 2, vote: 1, commit: 11 } }]);
    expect([store.shard(1).firstIndex(), store.shard(1).lastIndex()]).toEqual([11, 12]);
  });

  it('refuses compaction past the last index and bad indexes', async () => {
    const { store } = await openStore({ sync: false });
    await store.save([{ shard: 1, entries: entries(1, 3, 1) }]);
    await expect(store.save([{ shard: 1, compact: 4 }])).rejects.toThrow(/beyond the last index 3/);
    await expect(store.save([{ shard: 1, applied: -1 }])).rejects.toThrow(/bad applied index/);
    await expect(store.save([{ shard: 1, entries: [{ index: 4, term: 1.5, type: 'normal', data: new Uint8Array(0) }] }])).rejects.toThrow(/bad entry/);
  });
});

describe('snapshots this node takes of its own state', () => {
  const cs = { voters: [1, 2, 3], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };

  it('are stored beside the log, which stays, and come back after a reopen', async () => {
    const { store, reopen } = await openStore({ sync: false });
    await store.save([{ shard: 1, entries: entries(1, 20, 3), hardState: { term: 3, vote: 1, commit: 20 } }]);
    await store.save([{ shard: 1, snapshotTaken: { metadata: { index: 15, term: 3, confState: cs }, data: Uint8Array.of(1, 2, 3) }, applied: 15, compact: 10 }]);
    const again = await reopen();
    const log = again.shard(1);
    expect(log.snapshot().metadata.index).toBe(15);
    expect(Array.from(log.snapshot().data)).toEqual([1, 2, 3]);
    expect([log.firstIndex(), log.lastIndex()]).toEqual([11, 20]);
    expect(log.entries(11, 21, 1e9).length).toBe(10);
    expect(log.initialState().confState).toEqual(cs);
  });

  it('are refused beyond the log, below the stored snapshot, or with the wrong term', async () => {
    const { store } = await openStore({ sync: false });
    await store.save([{ shard: 1, entries: entries(1, 20, 3) }]);
    const at = (index: number, term = 3) => ({ metadata: { index, term, confState: cs }, data: new Uint8Array(0) });
    await expect(store.save([{ shard: 1, snapshotTaken: at(21) }])).rejects.toThrow(/within the log/);
    await expect(store.save([{ shard: 1, snapshotTaken: at(10, 2) }])).rejects.toThrow(/has term 2, the log has 3/);
    await store.save([{ shard: 1, snapshotTaken: at(10) }]);
    await expect(store.save([{ shard: 1, snapshotTaken: at(9) }])).rejects.toThrow(/newer than the stored one/);
  });
});
