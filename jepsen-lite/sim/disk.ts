/**
 * A simulated node's disk: what the shard runtime's storage writes survives a crash only once it
 * is durable, with the faults a real disk and process have.
 *
 * - `save` applies a batch to the process's in-memory view at once (as the LevelDB log store
 *   does: Raft reads what it handed over) and writes it to the disk, which completes writes in
 *   order after a latency drawn from the seed (sometimes a slow one).
 * - A synced write is durable when it completes. An unsynced one (a commit index alone) sits in
 *   the page cache until a later synced write completes (LevelDB's log is sequential) or a crash
 *   without power loss flushes it; a crash with power loss drops it.
 * - A write may fail: the runtime then stops for good (memory is ahead of disk) and the process
 *   exits, to be restarted by its supervisor.
 * - At a crash, a write still in flight is lost, or landed whole (LevelDB batches are atomic).
 * - The callback of a completed write may run a little after it is durable, so a crash can fall
 *   between a durable write and the messages that promise it.
 * - A restart reads the durable state back into a new in-memory view.
 * - `dropShard` forgets a shard at once in the process's view and on disk as one synced write in
 *   the same order as the others (the LevelDB store's tombstone): a crash leaves the shard whole
 *   or gone.
 */
import { MemoryLogStorage, type SeededPrng, isEmptySnapshot } from '../../raft/index.js';
import type { RuntimeStorage, SaveOptions } from '../../src/runtime/index.js';
import type { ShardUpdate } from '../../storage/index.js';

/** A failure of the simulated disk (the runtime stops; the process exits and is restarted). */
export class SimDiskError extends Error {
  override readonly name = 'SimDiskError';
}

export interface StorageFaults {
  /** Chance a write takes `slowWriteMs` instead of the usual latency. */
  readonly slowWriteRate: number;
  readonly slowWriteMs: number;
  /** Chance a write fails (the node's storage is then unusable and its process exits). */
  readonly failWriteRate: number;
  /** At a crash, the chance a write in flight landed whole anyway. */
  readonly inFlightKeptRate: number;
  /** At a crash, the chance the machine lost power (unsynced writes in the page cache are lost). */
  readonly powerLossRate: number;
  /** A completed write's callback runs up to this many ms after the write is durable. */
  readonly callbackDelayMsMax: number;
}

export const NO_STORAGE_FAULTS: StorageFaults = Object.freeze({
  slowWriteRate: 0,
  slowWriteMs: 0,
  failWriteRate: 0,
  inFlightKeptRate: 0,
  powerLossRate: 1,
  callbackDelayMsMax: 0,
});

/** What the disk needs from the simulation: time and a way to run things later. */
export interface DiskHost {
  readonly now: number;
  /** Runs `run` after `delayMs` as disk work (it happens even while the process is paused). */
  atDisk(delayMs: number, run: () => void): void;
  /** Runs `run` after `delayMs` as work of the node's current process (held while paused, dropped after a crash). */
  atProcess(delayMs: number, run: () => void): void;
}

/** A node's storage as one process incarnation sees it. */
export interface SimStorage extends RuntimeStorage {
  /** Forgets `shard`: at once in this view, durably once the write completes (`done` hears it). */
  dropShard(shard: number, done: (error?: Error) => void): void;
}

interface Write {
  readonly updates: readonly ShardUpdate[];
  /** A shard this write drops whole (after the writes before it). */
  readonly drop?: number;
  readonly sync: boolean;
  readonly incarnation: number;
  done: boolean;
}

export class SimDisk {
  /** Durable state per shard. */
  private readonly durable = new Map<number, MemoryLogStorage>();
  /** Completed unsynced writes, not yet durable. */
  private pageCache: Write[] = [];
  /** Writes submitted and not completed, oldest first. */
  private inFlight: Write[] = [];
  private lastCompleteAt = 0;
  /** Writes that became durable (for stats). */
  writesDurable = 0;
  writesFailed = 0;

  constructor(
    private readonly random: SeededPrng,
    private readonly latencyMs: { readonly min: number; readonly max: number },
    public faults: StorageFaults,
  ) {}

  /** A disk holding `storage` as the durable log of `shard` (a bootstrapped member). */
  seed(shard: number, storage: MemoryLogStorage): void {
    this.durable.set(shard, storage);
  }

  shards(): number[] {
    return [...this.durable.keys()].sort((a, b) => a - b);
  }

  /** The process crashed: decide what in-flight and cached writes left on disk. */
  crash(): void {
    const powerLoss = this.random.nextFloat() < this.faults.powerLossRate;
    // A write in flight landed whole or not at all, and none after one that did not land.
    const landed: Write[] = [];
    for (const write of this.inFlight) {
      write.done = true;
      if (landed.length === this.inFlight.indexOf(write) && this.random.nextFloat() < this.faults.inFlightKeptRate) landed.push(write);
    }
    const candidates = [...this.pageCache, ...landed];
    // Without power, what a sync covered survives (everything up to the last synced write:
    // LevelDB's log is sequential), and of what followed, whatever prefix writeback had reached.
    // With power, the OS writes the rest out too.
    let survive = candidates.length;
    if (powerLoss) {
      let synced = 0;
      for (let i = 0; i < candidates.length; i++) if (candidates[i]!.sync) synced = i + 1;
      survive = synced + this.random.nextInt(candidates.length - synced + 1);
    }
    for (const write of candidates.slice(0, survive)) this.makeDurable(write);
    this.pageCache = [];
    this.inFlight = [];
    this.lastCompleteAt = 0;
  }

  /** The storage a new process incarnation sees: the durable state, read back. */
  open(host: DiskHost, incarnation: number): SimStorage {
    const volatile = new Map<number, MemoryLogStorage>();
    for (const [shard, log] of this.durable) volatile.set(shard, log.clone());
    const shardLog = (id: number): MemoryLogStorage => {
      let log = volatile.get(id);
      if (log === undefined) volatile.set(id, (log = new MemoryLogStorage()));
      return log;
    };
    let failed = false;
    const submit = (write: Write, done: (error?: Error) => void): void => {
      if (failed) {
        host.atProcess(0, () => done(new SimDiskError('simulated disk: the storage failed earlier')));
        return;
      }
      this.inFlight.push(write);
      const fails = this.random.nextFloat() < this.faults.failWriteRate;
      const slow = this.random.nextFloat() < this.faults.slowWriteRate;
      const latency = slow ? this.faults.slowWriteMs : this.latencyMs.min + this.random.nextInt(this.latencyMs.max - this.latencyMs.min + 1);
      const callbackDelay = this.faults.callbackDelayMsMax > 0 ? this.random.nextInt(this.faults.callbackDelayMsMax + 1) : 0;
      // A disk completes writes in order: a later write is never durable before an earlier one.
      const at = Math.max(host.now + latency, this.lastCompleteAt);
      this.lastCompleteAt = at;
      host.atDisk(at - host.now, () => {
        if (write.done) return; // a crash decided its fate
        // A failed write is not known durable, nor is any after it (the store is unusable);
        // they stay in flight, so the crash that follows decides whether they landed (a
        // failed fsync may still have written the data).
        if (fails || failed) {
          failed = true;
          this.writesFailed++;
          host.atProcess(callbackDelay, () => done(new SimDiskError('simulated disk: a write failed')));
          return;
        }
        write.done = true;
        this.inFlight.splice(this.inFlight.indexOf(write), 1);
        if (write.sync) {
          for (const cachedWrite of this.pageCache) this.makeDurable(cachedWrite);
          this.pageCache = [];
          this.makeDurable(write);
        } else {
          this.pageCache.push(write);
        }
        host.atProcess(callbackDelay, () => done());
      });
    };
    return {
      shard: shardLog,
      save: (updates, options: SaveOptions, done) => {
        if (!failed) for (const update of updates) applyUpdate(shardLog(update.shard), update);
        submit({ updates, sync: options.sync, incarnation, done: false }, done);
      },
      dropShard: (shard, done) => {
        if (!failed) volatile.delete(shard);
        submit({ updates: [], drop: shard, sync: true, incarnation, done: false }, done);
      },
    };
  }

  private makeDurable(write: Write): void {
    this.writesDurable++;
    if (write.drop !== undefined) this.durable.delete(write.drop);
    for (const update of write.updates) {
      let log = this.durable.get(update.shard);
      if (log === undefined) this.durable.set(update.shard, (log = new MemoryLogStorage()));
      applyUpdate(log, update);
    }
  }
}

/** Applies one shard's update as the LevelDB log store does (snapshot, entries, taken snapshot, hard state, compaction). */
export function applyUpdate(log: MemoryLogStorage, update: ShardUpdate): void {
  if (update.snapshot !== undefined && !isEmptySnapshot(update.snapshot)) log.applySnapshot(update.snapshot);
  if (update.entries !== undefined && update.entries.length > 0) log.append(update.entries);
  const taken = update.snapshotTaken;
  if (taken !== undefined && taken.metadata.index > log.snapshot().metadata.index && taken.metadata.index >= log.firstIndex() - 1) {
    log.createSnapshot(taken.metadata.index, taken.metadata.confState, taken.data);
  }
  if (update.hardState !== undefined) log.setHardState(update.hardState);
  if (update.compact !== undefined && update.compact >= log.firstIndex() && update.compact <= log.lastIndex()) log.compact(update.compact);
}

