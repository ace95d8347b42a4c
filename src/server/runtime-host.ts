/**
 * The shard runtime wired to the real world: the LevelDB log store as its storage, the wall clock,
 * `setImmediate` as its scheduler and a `setInterval` ticker. The simulator wires the same runtime
 * to simulated ones (jepsen-lite/sim).
 */
import type { LevelLogStore } from '../../storage/index';
import type { NodeRuntime, RuntimeClock, RuntimeScheduler, RuntimeStorage } from '../runtime/index';

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

/** Ticks a runtime every `tickMs` until stopped. */
export class Ticker {
  private timer: NodeJS.Timeout | undefined;

  start(runtime: NodeRuntime, tickMs: number): void {
    this.stop();
    this.timer = setInterval(() => runtime.tick(), tickMs);
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}
