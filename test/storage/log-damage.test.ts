/**
 * Damaged or inconsistent data stops the node with a StorageCorruptionError naming the shard, the
 * index and the key; the store never resets or truncates its way past it. Each test writes a
 * healthy store, damages it through a raw LevelDB handle, and reopens.
 */
import { Level } from 'level';
import { afterEach, describe, expect, it } from 'vitest';
import type { Entry } from '../../raft/index.js';
import { LevelLogStore, RecordKind, StorageCorruptionError, chunkKey, entryKey, keyHex, logLimits, shardKey } from '../../storage/log/index.js';
import { encodeEntry, encodeHardState, encodeIndex, seal } from '../../storage/log/records.js';
import { tempDir } from './temp-dir.js';

const SHARD = 4;

function entries(from: number, to: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push({ index: i, term, type: 'normal', data: Uint8Array.of(i & 0xff, 1, 2) });
  return out;
}

const dirs: Array<{ remove(): void }> = [];
afterEach(() => {
  while (dirs.length > 0) dirs.pop()!.remove();
});

/** A store with shard 4 holding entries 1..10 (terms 1 then 2), commit 8, applied 6, and a snapshot-free log. */
async function healthy(withSnapshot = false): Promise<string> {
  const dir = tempDir('damage');
  dirs.push(dir);
  const store = await LevelLogStore.open({ path: dir.path, sync: false });
  await store.save([{ shard: SHARD, entries: [...entries(1, 5, 1), ...entries(6, 10, 2)], hardState: { term: 2, vote: 1, commit: 8 }, applied: 6 }]);
  await store.save([{ shard: 1, entries: entries(1, 3, 1) }]);
  if (withSnapshot) {
    const data = new Uint8Array(logLimits.snapshotChunkBytesMax + 10).fill(7);
    await store.save([{ shard: SHARD, snapshot: { metadata: { index: 12, term: 3, confState: { voters: [1], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } }, data }, hardState: { term: 3, vote: 1, commit: 12 } }]);
  }
  await store.close();
  return dir.path;
}

async function damage(path: string, change: (db: Level<Uint8Array, Uint8Array>) => Promise<void>): Promise<void> {
  const db = new Level<Uint8Array, Uint8Array>(path, { keyEncoding: 'view', valueEncoding: 'view' });
  await db.open();
  await change(db);
  await db.close();
}

async function openError(path: string): Promise<StorageCorruptionError> {
  try {
    const store = await LevelLogStore.open({ path, sync: false });
    await store.close();
  } catch (error) {
    expect(error).toBeInstanceOf(StorageCorruptionError);
    return error as StorageCorruptionError;
  }
  throw new Error('the damaged store opened without an error');
}

describe('damaged data stops the node with a named error', () => {
  it('a healthy store opens (the baseline every damage test starts from)', async () => {
    const store = await LevelLogStore.open({ path: await healthy(true), sync: false });
    expect(store.shard(SHARD).firstIndex()).toBe(13);
    await store.close();
  });

  it('a gap in the log', async () => {
    const path = await healthy();
    await damage(path, (db) => db.del(entryKey(SHARD, 5)));
    const error = await openError(path);
    expect(error.shard).toBe(SHARD);
    expect(error.index).toBe(5);
    expect(error.keyHex).toBe(keyHex(entryKey(SHARD, 6)));
    expect(error.message).toMatch(/gap in the log: expected index 5, found 6/);
  });

  it('a hard state whose commit exceeds the last index', async () => {
    const path = await healthy();
    const key = shardKey(SHARD, RecordKind.HardState);
    await damage(path, (db) => db.put(key, seal(key, encodeHardState({ term: 2, vote: 1, commit: 11 }))));
    const error = await openError(path);
    expect([error.shard, error.index, error.keyHex]).toEqual([SHARD, 11, keyHex(key)]);
    expect(error.message).toMatch(/commit 11 is beyond the last index 10/);
  });

  it('a lost tail: entries after the commit index vanished', async () => {
    const path = await healthy();
    await damage(path, async (db) => {
      for (let i = 7; i <= 10; i++) await db.del(entryKey(SHARD, i));
    });
    const error = await openError(path);
    expect([error.shard, error.index]).toEqual([SHARD, 8]);
    expect(error.message).toMatch(/beyond the last index 6/);
  });

  it('an undecodable entry (a flipped bit)', async () => {
    const path = await healthy();
    const key = entryKey(SHARD, 7);
    await damage(path, async (db) => {
      const value = (await db.get(key))!;
      const flipped = Uint8Array.from(value);
      flipped[flipped.length - 1]! ^= 0x10;
      await db.put(key, flipped);
    });
    const error = await openError(path);
    expect([error.shard, error.index, error.keyHex]).toEqual([SHARD, 7, keyHex(key)]);
    expect(error.message).toMatch(/undecodable log entry/);
  });

  it('a record moved under another key', async () => {
    const path = await healthy();
    await damage(path, async (db) => db.put(entryKey(SHARD, 3), (await db.get(entryKey(SHARD, 4)))!));
    const error = await openError(path);
    expect([error.shard, error.index]).toEqual([SHARD, 3]);
  });

  it('a hard state record of the wrong length', async () => {
    const path = await healthy();
    const key = shardKey(SHARD, RecordKind.HardState);
    await damage(path, (db) => db.put(key, seal(key, new Uint8Array(5))));
    const error = await openError(path);
    expect([error.shard, error.keyHex]).toEqual([SHARD, keyHex(key)]);
    expect(error.message).toMatch(/undecodable hard state/);
  });

  it('a term that goes down', async () => {
    const path = await healthy();
    const key = entryKey(SHARD, 9);
    await damage(path, (db) => db.put(key, seal(key, encodeEntry({ index: 9, term: 1, type: 'normal', data: new Uint8Array(1) }))));
    const error = await openError(path);
    expect([error.shard, error.index, error.keyHex]).toEqual([SHARD, 9, keyHex(key)]);
    expect(error.message).toMatch(/term goes down from 2 to 1/);
  });

  it('an applied index beyond the log', async () => {
    const path = await healthy();
    const key = shardKey(SHARD, RecordKind.Applied);
    await damage(path, (db) => db.put(key, seal(key, encodeIndex(40))));
    const error = await openError(path);
    expect([error.shard, error.index, error.keyHex]).toEqual([SHARD, 40, keyHex(key)]);
  });

  it('a key this store never writes', async () => {
    const path = await healthy();
    const key = Uint8Array.of(1, 0, 0, 0, SHARD, 0x7f);
    await damage(path, (db) => db.put(key, new Uint8Array(4)));
    const error = await openError(path);
    expect(error.keyHex).toBe(keyHex(key));
    expect(error.message).toMatch(/a key this store does not write/);
  });

  it('a missing snapshot chunk', async () => {
    const path = await healthy(true);
    await damage(path, (db) => db.del(chunkKey(SHARD, 12, 1)));
    const error = await openError(path);
    expect([error.shard, error.index, error.keyHex]).toEqual([SHARD, 12, keyHex(shardKey(SHARD, RecordKind.SnapshotMeta))]);
    expect(error.message).toMatch(/snapshot has 1 of its 2 chunks/);
  });

  it('snapshot data that does not match its descriptor', async () => {
    const path = await healthy(true);
    const key = chunkKey(SHARD, 12, 1);
    await damage(path, (db) => db.put(key, seal(key, new Uint8Array(10).fill(8))));
    const error = await openError(path);
    expect([error.shard, error.index]).toEqual([SHARD, 12]);
    expect(error.message).toMatch(/does not match its descriptor/);
  });

  it('records without the format record, or of another format', async () => {
    const path = await healthy();
    await damage(path, (db) => db.del(Uint8Array.of(0, 0x76)));
    expect((await openError(path)).message).toMatch(/format version record is missing/);
    await damage(path, (db) => db.put(Uint8Array.of(0, 0x76), seal(Uint8Array.of(0, 0x76), Uint8Array.of(0, 0, 0, 9))));
    expect((await openError(path)).message).toMatch(/unknown store format 9/);
  });

  it('damage several read batches into a long log is found at its index, and the store opens again once mended', async () => {
    const dir = tempDir('damage-long');
    dirs.push(dir);
    // Entries of 64 KiB: the log spans several of recovery's reads (logLimits.recoveryReadBytes each).
    const entryBytes = 64 * 1024;
    const count = Math.ceil((3.5 * logLimits.recoveryReadBytes) / entryBytes);
    const long: Entry[] = Array.from({ length: count }, (_, i) => ({ index: i + 1, term: 1, type: 'normal', data: new Uint8Array(entryBytes).fill(i & 0xff) }));
    const store = await LevelLogStore.open({ path: dir.path, sync: false });
    await store.save([{ shard: SHARD, entries: long, hardState: { term: 1, vote: 1, commit: count } }]);
    await store.close();
    const bad = count - 3;
    const key = entryKey(SHARD, bad);
    let good: Uint8Array | undefined;
    await damage(dir.path, async (db) => {
      good = await db.get(key);
      const flipped = Uint8Array.from(good!);
      flipped[flipped.length - 1]! ^= 1;
      await db.put(key, flipped);
    });
    const error = await openError(dir.path);
    expect(error.shard).toBe(SHARD);
    expect(error.index).toBe(bad);
    expect(error.keyHex).toBe(keyHex(key));
    // The read in flight when the damage was found was finished and the iterator closed: the
    // database opens again, and the mended log recovers whole.
    await damage(dir.path, (db) => db.put(key, good!));
    const mended = await LevelLogStore.open({ path: dir.path, sync: false });
    expect(mended.shard(SHARD).lastIndex()).toBe(count);
    expect(mended.shard(SHARD).entries(bad, bad + 1, Infinity)[0]!.data[0]).toBe((bad - 1) & 0xff);
    await mended.close();
  });
});
