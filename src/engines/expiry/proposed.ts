import type { TimeWheel, WheelTimer } from './wheel.js';

/**
 * Items whose expiry this node, as leader, proposed, each with the timer that looks at it again
 * an election timeout on in case the proposal is lost. A node that leads again in a later term
 * makes them due at once instead (`dueNow`): its proposals were lost with its earlier term, and
 * those timers would have it look up to an election timeout past the deadline.
 */
export class ProposedExpiries<T> {
  private readonly timers = new Map<T, WheelTimer<T>>();

  /** `item`'s expiry was proposed; `retry` looks at it again. */
  proposed(item: T, retry: WheelTimer<T>): void {
    this.timers.set(item, retry);
  }

  /** `item` is gone (revoked, expired, its TTL cleared). */
  forget(item: T): void {
    this.timers.delete(item);
  }

  clear(): void {
    this.timers.clear();
  }

  /**
   * Reschedules at `nowMs` every retry timer that is still its item's timer (`current`: renewed
   * items have another deadline, which the wheel already holds), then forgets them all.
   */
  dueNow(wheel: TimeWheel<T>, nowMs: number, current: (item: T) => WheelTimer<T> | undefined): void {
    for (const [item, timer] of this.timers) if (current(item) === timer) wheel.reschedule(timer, nowMs);
    this.timers.clear();
  }
}
