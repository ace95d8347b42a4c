/**
 * The LevelDB log store passes the same conformance suite as the in-memory store, once with every
 * store freshly opened and once through a reopen after every write (so what the suite checks is
 * what recovery rebuilds, not only what memory holds).
 */
import type { Entry, HardState, LogStorage, LogStorageWriter, Snapshot } from '../../raft/index.js';
import { LevelLogStore } from '../../storage/log/index.js';
import { describeLogStorageConformance } from '../raft/log-storage-conformance.js';
import { tempDir } from './temp-dir.js';

describeLogStorageConformance(
  'LevelLogStore',
  async () => {
    const dir = tempDir('conformance');
    // Sync off: the suite checks semantics; durability has its own crash test.
    const store = await LevelLogStore.open({ path: dir.path, sync: false });
    const shard = store.shard(7);
    return {
      storage: shard,
      writer: shard,
      close: async () => {
        await store.close();
        dir.remove();
      },
    };
  },
  { modelRuns: 60 },
);

/**
 * A view of shard 7 that closes and reopens the whole store after every write, so each read the
 * suite makes is answered by a freshly recovered store.
 */
class ReopeningShard implements LogStorage, LogStorageWriter {
  private constructor(
    private readonly path: string,
    private store: LevelLogStore,
  ) {}

  static async open(path: string): Promise<ReopeningShard> {
    return new ReopeningShard(path, await LevelLogStore.open({ path, sync: false }));
  }

  private get shard(): LogStorage & LogStorageWriter {
    return this.store.shard(7);
  }

  private async reopen(write: () => Promise<void>): Promise<void> {
    try {
      await write();
    } finally {
      await this.store.close();
      this.store = await LevelLogStore.open({ path: this.path, sync: false });
    }
  }

  initialState = (): ReturnType<LogStorage['initialState']> => this.shard.initialState();
  entries = (lo: number, hi: number, maxBytes: number): Entry[] => this.shard.entries(lo, hi, maxBytes);
  term = (index: number): number => this.shard.term(index);
  firstIndex = (): number => this.shard.firstIndex();
  lastIndex = (): number => this.shard.lastIndex();
  snapshot = (): Snapshot => this.shard.snapshot();
  append = (entries: readonly Entry[]): Promise<void> => this.reopen(async () => this.shard.append(entries));
  setHardState = (hs: HardState): Promise<void> => this.reopen(async () => this.shard.setHardState(hs));
  applySnapshot = (s: Snapshot): Promise<void> => this.reopen(async () => this.shard.applySnapshot(s));
  compact = (index: number): Promise<void> => this.reopen(async () => this.shard.compact(index));
  close = (): Promise<void> => this.store.close();
}

describeLogStorageConformance(
  'LevelLogStore, reopened after every write',
  async () => {
    const dir = tempDir('conformance-reopen');
    const shard = await ReopeningShard.open(dir.path);
    return {
      storage: shard,
      writer: shard,
      close: async () => {
        await shard.close();
        dir.remove();
      },
    };
  },
  { modelRuns: 25 },
);
