/**
 * The run's clock, shared by the harness and the processes it starts (the lock workload's
 * clients). `process.hrtime.bigint()` reads CLOCK_MONOTONIC on Linux: one clock per machine, not
 * per process, and never stepped by NTP or the wall clock. A run fixes its origin once, hands it
 * to every child as a decimal string, and every process measures "ms since the run began" from
 * it, so timestamps recorded in different processes go into one history comparable as they are.
 * (`performance.now()` would not do: its origin is each process's own start.)
 */

/** Now on the machine's monotonic clock, in ns. */
export function monotonicNs(): bigint {
  return process.hrtime.bigint();
}

/** The run's clock: whole ms since `originNs` (a `monotonicNs()` reading, possibly another process's). */
export function runClock(originNs: bigint): () => number {
  if (originNs <= 0n) throw new TypeError(`a clock origin must be a positive monotonic reading, got ${originNs}`);
  return () => Math.round(Number(monotonicNs() - originNs) / 1e6);
}

/** An origin as it crosses a process boundary (JSON has no bigint). */
export function encodeOrigin(originNs: bigint): string {
  return originNs.toString(10);
}

export function decodeOrigin(text: string): bigint {
  if (!/^[1-9][0-9]*$/.test(text)) throw new TypeError(`not a clock origin: ${JSON.stringify(text)}`);
  return BigInt(text);
}

/** A run's clock whose origin is fixed when the run starts (after what must come before it). */
export class RunClock {
  private originNs = monotonicNs();

  /** The run begins now. */
  restart(): void {
    this.originNs = monotonicNs();
  }

  get origin(): bigint {
    return this.originNs;
  }

  /** Whole ms since the run began. */
  readonly now = (): number => Math.round(Number(monotonicNs() - this.originNs) / 1e6);
}
