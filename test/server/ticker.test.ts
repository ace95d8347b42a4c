import { afterEach, describe, expect, it } from 'vitest';
import { Ticker } from '../../src/server/runtime-host.js';

const ticker = new Ticker();
afterEach(() => ticker.stop());

function counting(): { tick(): void; electionTicks: number; ticks: number } {
  return {
    electionTicks: 10,
    ticks: 0,
    tick() {
      this.ticks++;
    },
  };
}

describe('Ticker', () => {
  it('advances the election clock by all but one timeout on start, as etcd (no lease reads)', () => {
    const runtime = counting();
    ticker.start(runtime, 100_000);
    expect(runtime.ticks).toBe(9);
    ticker.catchUp();
    expect(runtime.ticks).toBe(9);
  });

  it('with lease reads: no advance, and the ticks a stall made late are caught up, never one ahead', () => {
    const runtime = counting();
    let now = 1_000;
    ticker.start(runtime, 100, { leaseReads: true, now: () => now });
    expect(runtime.ticks).toBe(0);
    now += 99;
    ticker.catchUp();
    expect(runtime.ticks).toBe(0);
    now += 1;
    ticker.catchUp();
    expect(runtime.ticks).toBe(1);
    // A 2.5 s stall (SIGSTOP, a GC pause): its 25 ticks run before anything else is handled.
    now += 2_500;
    ticker.catchUp();
    expect(runtime.ticks).toBe(26);
    ticker.catchUp();
    expect(runtime.ticks).toBe(26);
    ticker.stop();
    now += 1_000;
    ticker.catchUp();
    expect(runtime.ticks).toBe(26);
  });
});
