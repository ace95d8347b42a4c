import { describe, expect, it } from 'vitest';
import { harnessPortBounds, harnessPortRange } from '../src/package-root.js';
import { testPortsDefault, testWorkers, workerPorts } from './workers.js';

describe('test workers and their ports', () => {
  it('cuts the harness range into one disjoint slice per worker', () => {
    for (const workers of [1, 2, 3, 7]) {
      const slices = Array.from({ length: workers }, (_, i) => harnessPortRange({ DKV_TEST_PORTS: workerPorts(testPortsDefault, i + 1, workers) })!);
      for (const [i, slice] of slices.entries()) {
        expect(slice.low).toBeGreaterThanOrEqual(testPortsDefault.low);
        expect(slice.high).toBeLessThanOrEqual(testPortsDefault.high);
        if (i > 0) expect(slice.low).toBe(slices[i - 1]!.high + 1);
      }
    }
    expect(workerPorts({ low: 20000, high: 31999 }, 2, 2)).toBe('26000-31999');
    // A pool id past the worker count wraps around rather than leaving the range.
    expect(workerPorts({ low: 20000, high: 31999 }, 3, 2)).toBe('20000-25999');
  });

  it('gives this file its worker slice, which every picker reads', () => {
    const poolId = Number(process.env.VITEST_POOL_ID);
    expect(poolId).toBeGreaterThanOrEqual(1);
    const whole = harnessPortRange({ DKV_TEST_PORTS: process.env.VITEST_DKV_PORTS_WHOLE })!;
    expect(process.env.DKV_TEST_PORTS).toBe(workerPorts(whole, poolId, testWorkers()));
    const slice = harnessPortRange()!;
    expect(harnessPortBounds(20000, 32000)).toEqual({ low: slice.low, high: slice.high + 1 });
  });

  it('reads DKV_TEST_PORTS, and refuses a malformed or too small range', () => {
    expect(harnessPortRange({})).toBeUndefined();
    expect(harnessPortRange({ DKV_TEST_PORTS: '' })).toBeUndefined();
    expect(harnessPortRange({ DKV_TEST_PORTS: '21000-21999' })).toEqual({ low: 21000, high: 21999 });
    for (const bad of ['21000', '21000-21050', '80-2000', '60000-70000', 'a-b']) expect(() => harnessPortRange({ DKV_TEST_PORTS: bad })).toThrow(/DKV_TEST_PORTS/);
  });
});
