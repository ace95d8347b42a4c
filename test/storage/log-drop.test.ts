/**
 * Shards come and go at runtime: `shards()` lists what the store holds after a reopen, and
 * `dropShard` deletes one shard whole, at once in memory and durably on disk, leaving the others
 * as they were. A crash at any point of a drop leaves the shard whole (before its tombstone is
 * durable) or absent (after), never half: the crash images here are copies of the database
 * directory taken at each step of a drop (as a crash without power loss would leave it; see
 * crash-image.ts), and LevelDB states a crash could leave in between (the tombstone and any part
 * of the rest).
 */
import { join } from 'node:path';
import { Level } from 'level';
import { afterEach, describe, expect, it } from 'vitest';
import { type ConfState, type Entry, type HardState, SeededPrng, type Snapshot } from '../../raft/index.js';
import { LevelLogStore, RecordKind, StorageCorruptionError, logLimits, shardKey } from '../../storage/log/index.js';
import { seal } from '../../storage/log/records.js';
import { crashImage } from './crash-image.js';
import { tempDir } from './temp-dir.js';

const DROPPED = 9;
const OTHERS = [8, 10] as const;

function entries(from: number, to: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push({ index: i, term, type: 'normal', data: Uint8Array.of(i & 0xff, term, 7) });
  return out;
}

const conf: ConfState = { voters: [1, 2, 3], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };

function snapshotAt(index: number, term: number, bytes: number): Snapshot {
  return { metadata: { index, term, confState: conf }, data: new Uint8Array(bytes).fill(index & 0xff) };
}

const dirs: Array<{ remove(): void }> = [];
const open: LevelLogStore[] = [];
afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
  while (dirs.length > 0) dirs.pop()!.remove();
});

function newDir(prefix: string): string {
  const dir = tempDir(prefix);
  dirs.push(dir);
  return dir.path;
}

async function openAt(path: string): Promise<LevelLogStore> {
  const store = await LevelLogStore.open({ path });
  open.push(store);
  return store;
}

async function closeStore(store: LevelLogStore): Promise<void> {
  open.splice(open.indexOf(store), 1);
  await store.close();
}

/**
 * Every shard gets entries, a hard state, an applied index and a conf state; shard 9 and shard 10
 * also a snapshot of several chunks and a compaction (so background deletions may be pending).
 */
async function fill(store: LevelLogStore): Promise<void> {
  await store.save([8, 9, 10].map((shard) => ({ shard, entries: entries(1, 40, shard), hardState: { term: shard, vote: 1, commit: 30 }, applied: 20, confState: conf })));
  const chunky = snapshotAt(25, 9, 2 * logLimits.snapshotChunkBytesMax + 17);
  await store.save([
    { shard: 9, snapshotTaken: { ...chunky, metadata: { ...chunky.metadata, term: 9 } }, applied: 25, compact: 15 },
    { shard: 10, snapshotTaken: { ...chunky, metadata: { ...chunky.metadata, term: 10 } }, applied: 25, compact: 12 },
  ]);
}

interface ShardPicture {
  first: number;
  last: number;
  hardState: HardState;
  confState: ConfState;
  applied: number;
  snapshotIndex: number;
  snapshotData: number[];
  entries: Array<[number, number, number[]]>;
}

async function picture(store: LevelLogStore, shard: number): Promise<ShardPicture> {
  await store.idle();
  const log = store.shard(shard);
  const snap = log.snapshot();
  const first = log.firstIndex();
  const last = log.lastIndex();
  const list = last >= first ? log.entries(first, last + 1, Number.MAX_SAFE_INTEGER) : [];
  const { hardState, confState } = log.initialState();
  return {
    first,
    last,
    hardState,
    confState,
    applied: log.applied,
    snapshotIndex: snap.metadata.index,
    snapshotData: Array.from(snap.data.subarray(0, 4)).concat([snap.data.length]),
    entries: list.map((e) => [e.index, e.term, Array.from(e.data)]),
  };
}

const ABSENT: ShardPicture = {
  first: 1,
  last: 0,
  hardState: { term: 0, vote: 0, commit: 0 },
  confState: { voters: [], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false },
  applied: 0,
  snapshotIndex: 0,
  snapshotData: [0],
  entries: [],
};

/** Keys of `shard` in the database at `path` (the store must be closed). */
async function rawKeys(path: string, shard: number): Promise<number> {
  const db = new Level<Uint8Array, Uint8Array>(path, { keyEncoding: 'view', valueEncoding: 'view' });
  await db.open();
  const lo = shardKey(shard, RecordKind.Dropped).subarray(0, 5);
  const hi = shardKey(shard + 1, RecordKind.Dropped).subarray(0, 5);
  const keys = await db.keys({ gte: lo, lt: hi }).all();
  await db.close();
  return keys.length;
}

type Db = Level<Uint8Array, Uint8Array>;
function dbOf(store: LevelLogStore): Db {
  return (store as unknown as { db: Db }).db;
}

describe('shards()', () => {
  it('lists the shards with state after a reopen, not those only looked at or dropped', async () => {
    const path = newDir('drop-list');
    const store = await openAt(path);
    await fill(store);
    await store.save([{ shard: 3, hardState: { term: 1, vote: 2, commit: 0 } }]);
    store.shard(4); // looked at, never written
    expect(store.shards()).toEqual([3, 8, 9, 10]);
    await store.dropShard(9);
    expect(store.shards()).toEqual([3, 8, 10]);
    await closeStore(store);
    const again = await openAt(path);
    expect(again.shards()).toEqual([3, 8, 10]);
  });
});

describe('dropShard', () => {
  it('deletes every record of the shard; the others keep entries, hard state and snapshot', async () => {
    const path = newDir('drop');
    const store = await openAt(path);
    await fill(store);
    const before = await Promise.all(OTHERS.map((s) => picture(store, s)));
    expect((await picture(store, DROPPED)).snapshotIndex).toBe(25);
    await store.dropShard(DROPPED);
    await closeStore(store);
    expect(await rawKeys(path, DROPPED)).toBe(0);
    const again = await openAt(path);
    expect(again.shards()).toEqual([8, 10]);
    expect(await picture(again, DROPPED)).toEqual(ABSENT);
    expect(await Promise.all(OTHERS.map((s) => picture(again, s)))).toEqual(before);
    for await (const chunk of again.readSnapshotChunks(10)) expect(chunk.length).toBeGreaterThan(0);
  });

  it('is ordered after the saves made before it and beside those made with it; refuses the shard until done', async () => {
    const path = newDir('drop-order');
    const store = await openAt(path);
    await fill(store);
    // In one turn: a save that includes the shard, the drop, a save of another shard.
    const earlier = store.save([{ shard: DROPPED, entries: entries(41, 45, 9) }, { shard: 8, entries: entries(41, 41, 8) }]);
    const drop = store.dropShard(DROPPED);
    const later = store.save([{ shard: 10, entries: entries(41, 42, 10) }]);
    expect(() => store.shard(DROPPED)).toThrow(/being dropped/);
    await expect(store.save([{ shard: DROPPED, hardState: { term: 20, vote: 0, commit: 0 } }])).rejects.toThrow(/being dropped/);
    expect(store.droppingShards()).toEqual([DROPPED]);
    await Promise.all([earlier, drop, later]);
    expect(store.droppingShards()).toEqual([]);
    // Done: the id is free again (a new, empty log), and saves to it work.
    expect(store.shard(DROPPED).lastIndex()).toBe(0);
    await store.save([{ shard: DROPPED, entries: entries(1, 2, 30), hardState: { term: 30, vote: 0, commit: 0 } }]);
    await closeStore(store);
    const again = await openAt(path);
    expect(again.shard(DROPPED).lastIndex()).toBe(2);
    expect(again.shard(DROPPED).term(1)).toBe(30);
    expect(again.shard(8).lastIndex()).toBe(41);
    expect(again.shard(10).lastIndex()).toBe(42);
  });

  it('close() waits for a drop under way', async () => {
    const path = newDir('drop-close');
    const store = await openAt(path);
    await fill(store);
    void store.dropShard(DROPPED);
    await closeStore(store);
    expect(await rawKeys(path, DROPPED)).toBe(0);
  });
});

describe('a crash during a drop', () => {
  it('leaves the shard whole before the tombstone is durable and absent after, at every step', async () => {
    const path = newDir('drop-crash');
    const images = newDir('drop-images');
    const store = await openAt(path);
    await fill(store);
    await store.idle();
    const whole = await picture(store, DROPPED);
    const others = await Promise.all(OTHERS.map((s) => picture(store, s)));
    const taken: Array<{ name: string; absent: boolean }> = [];
    const image = (name: string, absent: boolean): void => {
      crashImage(path, join(images, name));
      taken.push({ name, absent });
    };
    const db = dbOf(store);
    const clear = db.clear.bind(db);
    const del = db.del.bind(db);
    // Each step of the drop, as the disk holds it then.
    db.clear = (async (range: { gt: Uint8Array; lt: Uint8Array }) => {
      expect(await db.get(shardKey(DROPPED, RecordKind.Dropped))).toBeDefined();
      image('tombstone-written', true);
      // Half the records gone: what a crash in the middle of the deletion leaves.
      const keys = await db.keys(range).all();
      await db.batch(keys.filter((_, i) => i % 2 === 1).map((key) => ({ type: 'del' as const, key })));
      image('half-deleted', true);
      await clear(range);
      image('rest-deleted', true);
    }) as typeof db.clear;
    db.del = (async (key: Uint8Array) => {
      await del(key);
      image('tombstone-deleted', true);
    }) as typeof db.del;
    image('before-drop', false);
    await store.dropShard(DROPPED);
    expect(taken.map((t) => t.name)).toEqual(['before-drop', 'tombstone-written', 'half-deleted', 'rest-deleted', 'tombstone-deleted']);
    for (const { name, absent } of taken) {
      const at = join(images, name);
      const recovered = await openAt(at);
      expect({ name, shards: recovered.shards() }).toEqual({ name, shards: absent ? [8, 10] : [8, 9, 10] });
      expect({ name, shard: await picture(recovered, DROPPED) }).toEqual({ name, shard: absent ? ABSENT : whole });
      expect({ name, others: await Promise.all(OTHERS.map((s) => picture(recovered, s))) }).toEqual({ name, others });
      await closeStore(recovered);
      // Recovery finished the interrupted drop.
      expect({ name, keys: await rawKeys(at, DROPPED) }).toEqual({ name, keys: absent ? 0 : (await rawKeys(join(images, 'before-drop'), DROPPED)) });
    }
  });

  it('treats the shard as absent with its tombstone and any subset of the rest (seeded)', async () => {
    const prng = new SeededPrng(4711);
    for (let round = 0; round < 12; round++) {
      const path = newDir('drop-subset');
      const store = await openAt(path);
      await fill(store);
      const others = await Promise.all(OTHERS.map((s) => picture(store, s)));
      await closeStore(store);
      const db = new Level<Uint8Array, Uint8Array>(path, { keyEncoding: 'view', valueEncoding: 'view' });
      await db.open();
      const tombstone = shardKey(DROPPED, RecordKind.Dropped);
      const keys = await db.keys({ gt: tombstone, lt: shardKey(DROPPED + 1, RecordKind.Dropped).subarray(0, 5) }).all();
      expect(keys.length).toBeGreaterThan(20);
      const gone = keys.filter(() => prng.nextInt(3) === 0);
      await db.batch([{ type: 'put', key: tombstone, value: seal(tombstone, new Uint8Array(0)) }, ...gone.map((key) => ({ type: 'del' as const, key }))]);
      await db.close();
      const recovered = await openAt(path);
      expect(recovered.shards()).toEqual([8, 10]);
      expect(await picture(recovered, DROPPED)).toEqual(ABSENT);
      expect(await Promise.all(OTHERS.map((s) => picture(recovered, s)))).toEqual(others);
      await closeStore(recovered);
      expect(await rawKeys(path, DROPPED)).toBe(0);
    }
  });

  it('a damaged tombstone stops recovery', async () => {
    const path = newDir('drop-damaged');
    const store = await openAt(path);
    await fill(store);
    await closeStore(store);
    const db = new Level<Uint8Array, Uint8Array>(path, { keyEncoding: 'view', valueEncoding: 'view' });
    await db.open();
    await db.put(shardKey(DROPPED, RecordKind.Dropped), Uint8Array.of(1, 2, 3, 4, 5));
    await db.close();
    await expect(LevelLogStore.open({ path })).rejects.toBeInstanceOf(StorageCorruptionError);
  });
});
