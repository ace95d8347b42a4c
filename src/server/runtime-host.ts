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
 *
 * With lease reads (`leaseReads`) the ticks are the lease's clock, so two things change: no
 * advance (a restarted member must refuse votes for a whole election timeout, which the advance
 * would cut to one tick), and ticks that came late (a GC pause, a starved CPU, SIGSTOP) are caught
 * up from the monotonic clock, by the timer and before every runtime cycle (`leaseScheduler`), so
 * a leader's lease ends on time rather than a stall later.
 */
export class Ticker {
  private timer: NodeJS.Timeout | undefined;
  private catchUpTo: (() => void) | undefined;

  start(runtime: Pick<NodeRuntime, 'tick' | 'electionTicks'>, tickMs: number, options: { readonly leaseReads?: boolean; readonly now?: () => number } = {}): void {
    this.stop();
    const clock = options.now ?? ((): number => performance.now());
    if (options.leaseReads !== true) {
      for (let tick = 1; tick < runtime.electionTicks; tick++) runtime.tick();
      this.timer = setInterval(() => runtime.tick(), tickMs);
      return;
    }
    let nextTickAt = clock() + tickMs;
    // Every tick that is due, and never one ahead of the clock (a follower's vote refusal is
    // counted in these ticks too).
    const catchUp = (): void => {
      const now = clock();
      while (nextTickAt <= now) {
        runtime.tick();
        nextTickAt += tickMs;
      }
    };
    this.catchUpTo = catchUp;
    this.timer = setInterval(catchUp, tickMs);
  }

  /**
   * With lease reads: runs the ticks that are due now. The runtime's cycles run through
   * `leaseScheduler`, which calls this first, and the node calls it before stepping peer messages,
   * so a process that resumes from a stall inside the event loop's poll (SIGSTOP while idle)
   * counts the stall before it serves any read it then receives.
   */
  catchUp(): void {
    this.catchUpTo?.();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.catchUpTo = undefined;
  }
}

/** The runtime's scheduler with lease reads: each task runs the ticker's due ticks first. */
export function leaseScheduler(ticker: Ticker): RuntimeScheduler {
  return {
    soon: (task) =>
      void setImmediate(() => {
        ticker.catchUp();
        task();
      }),
  };
}
