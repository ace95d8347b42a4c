/**
 * Group commit of the LevelDB log store: entries/s written (synced) by 1 shard and by 8 shards,
 * when every round's updates share one synced batch, against one synced batch per shard.
 *
 * Each round every shard appends `entriesPerRound` entries of `entryBytes` bytes plus a hard
 * state, like a Raft group's Ready; the next round starts when the round is durable (a group
 * cannot acknowledge before its save resolves).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Entry } from '../raft/index.js';
import { LevelLogStore, type ShardUpdate } from '../storage/index.js';

export interface GroupCommitBenchOptions {
  readonly seconds: number;
  readonly entriesPerRound?: number;
  readonly entryBytes?: number;
  readonly directory?: string;
  readonly print: (line: string) => void;
}

type Mode = 'shared batch (one save)' | 'shared batch (a save per shard)' | 'a synced batch per shard';

interface Result {
  shards: number;
  mode: Mode;
  entriesPerSecond: number;
  roundsPerSecond: number;
  syncsPerRound: number;
}

async function measure(shards: number, mode: Mode, options: GroupCommitBenchOptions): Promise<Result> {
  const dir = mkdtempSync(join(options.directory ?? tmpdir(), 'dkv-bench-log-'));
  const store = await LevelLogStore.open({ path: dir, groupCommit: mode !== 'a synced batch per shard' });
  const perRound = options.entriesPerRound ?? 16;
  const data = new Uint8Array(options.entryBytes ?? 100).fill(42);
  const next = new Array<number>(shards).fill(1);
  let rounds = 0;
  let entries = 0;
  const until = performance.now() + options.seconds * 1000;
  try {
    while (performance.now() < until) {
      const updates: ShardUpdate[] = [];
      for (let shard = 0; shard < shards; shard++) {
        const batch: Entry[] = [];
        for (let i = 0; i < perRound; i++) batch.push({ index: next[shard]! + i, term: 1, type: 'normal', data });
        next[shard]! += perRound;
        const last = next[shard]! - 1;
        // Applied and compacted a little behind, as a live shard is, so the log does not grow for ever.
        updates.push({ shard, entries: batch, hardState: { term: 1, vote: 1, commit: last }, applied: last, compact: Math.max(0, last - 4096) });
      }
      if (mode === 'shared batch (one save)') await store.save(updates);
      else await Promise.all(updates.map((update) => store.save([update])));
      rounds++;
      entries += shards * perRound;
    }
    const seconds = options.seconds;
    return { shards, mode, entriesPerSecond: entries / seconds, roundsPerSecond: rounds / seconds, syncsPerRound: store.stats.syncedBatches / rounds };
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function runGroupCommitBench(options: GroupCommitBenchOptions): Promise<Result[]> {
  const print = options.print;
  print(`log store group commit: ${options.entriesPerRound ?? 16} entries of ${options.entryBytes ?? 100} B per shard per round, synced, ${options.seconds}s each`);
  const cases: Array<[number, Mode]> = [
    [1, 'shared batch (one save)'],
    [8, 'shared batch (one save)'],
    [8, 'shared batch (a save per shard)'],
    [8, 'a synced batch per shard'],
  ];
  const results: Result[] = [];
  for (const [shards, mode] of cases) {
    const r = await measure(shards, mode, options);
    results.push(r);
    print(
      `  ${String(shards).padStart(2)} shard${shards === 1 ? ' ' : 's'}  ${mode.padEnd(32)} ${Math.round(r.entriesPerSecond).toLocaleString('en-US').padStart(11)} entries/s  ${Math.round(r.roundsPerSecond).toLocaleString('en-US').padStart(7)} rounds/s  ${r.syncsPerRound.toFixed(2)} fsyncs/round`,
    );
  }
  const shared = results[1]!.entriesPerSecond;
  const separate = results[3]!.entriesPerSecond;
  print(`  8 shards: one shared synced batch writes ${(shared / separate).toFixed(2)}x the entries/s of a synced batch per shard`);
  return results;
}
