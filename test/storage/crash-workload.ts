/**
 * The deterministic workload of the crash test. Batch k is a function of k and of the state after
 * batch k - 1 only, so the killed child, the next child (which continues from what it recovered)
 * and the checking parent (which replays the batches into in-memory models) all agree on it.
 *
 * Every batch appends one marker entry to shard 0 whose data is k, so the recovered shard 0 says
 * which batch the store reflects; shards 1..3 get appends (sometimes replacing an uncommitted
 * suffix with a higher term), hard states, applied indexes and compactions.
 */
import { type Entry, MemoryLogStorage, SeededPrng } from '../../raft/index.js';
import type { ShardUpdate } from '../../storage/log/index.js';

export const DATA_SHARDS = [1, 2, 3];
export const SHARDS = [0, ...DATA_SHARDS];

export interface ShardModel {
  storage: MemoryLogStorage;
  term: number;
  applied: number;
}

export type Models = Map<number, ShardModel>;

export function emptyModels(): Models {
  const models: Models = new Map();
  for (const shard of SHARDS) models.set(shard, { storage: new MemoryLogStorage(), term: 1, applied: 0 });
  return models;
}

function payload(k: number, shard: number, index: number, filler: number): Uint8Array {
  const data = new Uint8Array(12 + filler);
  const view = new DataView(data.buffer);
  view.setUint32(0, k);
  view.setUint32(4, shard);
  view.setUint32(8, index);
  for (let i = 12; i < data.length; i++) data[i] = (k + i) & 0xff;
  return data;
}

/** The batch number an entry of this workload was written by. */
export function batchOf(entry: Entry): number {
  return new DataView(entry.data.buffer, entry.data.byteOffset, entry.data.byteLength).getUint32(0);
}

/** Batch k's updates given the models' state after batch k - 1 (does not change the models). */
export function makeBatch(k: number, models: Models): ShardUpdate[] {
  const prng = new SeededPrng(k * 7919 + 17);
  const updates: ShardUpdate[] = [];
  const marker = models.get(0)!;
  const markerLast = marker.storage.lastIndex();
  updates.push({
    shard: 0,
    entries: [{ index: markerLast + 1, term: 1, type: 'normal', data: payload(k, 0, markerLast + 1, 0) }],
    hardState: { term: 1, vote: 1, commit: markerLast + 1 },
  });
  for (const shard of DATA_SHARDS) {
    if (prng.nextInt(3) === 0) continue;
    const model = models.get(shard)!;
    const storage = model.storage;
    const last = storage.lastIndex();
    const commit = storage.initialState().hardState.commit;
    let term = model.term;
    let from = last + 1;
    if (last > commit && prng.nextInt(6) === 0) {
      // A new leader replaces the uncommitted suffix.
      from = Math.max(commit + 1, storage.firstIndex(), last - 2);
      term += 1;
    }
    const count = 1 + prng.nextInt(8);
    const entries: Entry[] = [];
    for (let i = 0; i < count; i++) {
      entries.push({ index: from + i, term, type: prng.nextInt(10) === 0 ? 'conf-change' : 'normal', data: payload(k, shard, from + i, prng.nextInt(300)) });
    }
    const newLast = from + count - 1;
    const newCommit = Math.min(newLast, commit + prng.nextInt(count + 2));
    const update: { -readonly [K in keyof ShardUpdate]: ShardUpdate[K] } = {
      shard,
      entries,
      hardState: { term, vote: 1, commit: newCommit },
      applied: newCommit,
    };
    if (newCommit - storage.firstIndex() > 40 && prng.nextInt(8) === 0) update.compact = newCommit - 20;
    updates.push(update);
  }
  return updates;
}

/** Applies a batch to the models, in the order the store applies an update's parts. */
export function applyBatch(updates: readonly ShardUpdate[], models: Models): void {
  for (const update of updates) {
    const model = models.get(update.shard)!;
    if (update.entries !== undefined && update.entries.length > 0) {
      model.storage.append(update.entries);
      model.term = Math.max(model.term, update.entries[update.entries.length - 1]!.term);
    }
    if (update.hardState !== undefined) model.storage.setHardState(update.hardState);
    if (update.applied !== undefined) model.applied = Math.max(model.applied, update.applied);
    if (update.compact !== undefined) model.storage.compact(update.compact);
  }
}
