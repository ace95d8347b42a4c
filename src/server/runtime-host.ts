/**
 * The shard runtime wired to the real world: the LevelDB log store as its storage, the wall clock,
 * `setImmediate` as its scheduler and a `setInterval` ticker. The simulator wires the same runtime
 * to simulated ones (jepsen-lite/sim).
 */
import type { LevelLogStore } from '../../storage/index.js';
import type { NodeRuntime, RuntimeClock, RuntimeScheduler, RuntimeStorage } from '../runtime/index.js';

/** The log store as the runtime's storage (one LevelDB batch per save, group commit). */
export function levelStorage(store: LevelLogStore): RuntimeStorage {
  return {
    shard: (id) => store.shard(id),
    save: (updates, options, done) => {
      store.save(updates, options).then(
        () => done(),
        (error: unknown) => done(error instanceof Error ? error : new Error(String(error))),
      );
    },
  };
}

/** Milliseconds of the wall clock: leaders stamp commands with it, requests' deadlines use it. */
export const wallClock: RuntimeClock = { now: () => Date.now() };

/** A task runs after the current one and after pending I/O callbacks (what batches a cycle's work). */
export const immediateScheduler: RuntimeScheduler = { soon: (task) => void setImmediate(task) };

/**
 * Ticks a runtime every `tickMs` until stopped. On start it first advances every group's election
 * clock by all but one election timeout, as etcd's --initial-election-tick-advance (on by default)
 * does: a fresh or restarted member campaigns within 1 to electionTicks ticks instead of waiting a
 * full timeout more (a cluster's first write came 1 to 2 s sooner). Pre-vote and check-quorum keep
 * this from disrupting a live leader: its followers refuse the pre-vote while they hear from it.
 */
export class Ticker {
  private timer: NodeJS.Timeout | undefined;

  start(runtime: NodeRuntime, tickMs: number): void {
    this.stop();
    for (let tick = 1; tick < runtime.electionTicks; tick++) runtime.tick();
    this.timer = setInterval(() => runtime.tick(), tickMs);
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}
