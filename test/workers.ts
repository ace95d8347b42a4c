/**
 * How many test files run at once, and the ports each may pick from. vitest.config.ts sets the
 * workers; test/setup-ports.ts gives each worker (VITEST_POOL_ID, 1 to the worker count) its own
 * slice of the harness port range, so a file's clusters never pick ports another file's cluster
 * holds or has just freed (a node killed and restarted on the same ports).
 */
import { availableParallelism } from 'node:os';

/** Two files at a time even on 2 cores: most files wait on the processes, sockets and syncs they start. */
export function testWorkers(): number {
  return Math.max(2, availableParallelism() - 1);
}

/** The harness port range when DKV_TEST_PORTS does not narrow it (below Linux's ephemeral ports). */
export const testPortsDefault = { low: 20000, high: 31999 } as const;

/** Worker `poolId`'s slice (1-based) of `range` cut in `workers` equal parts, as DKV_TEST_PORTS spells it. */
export function workerPorts(range: { readonly low: number; readonly high: number }, poolId: number, workers: number): string {
  const size = Math.floor((range.high + 1 - range.low) / workers);
  const slot = (poolId - 1) % workers;
  const low = range.low + slot * size;
  return `${low}-${low + size - 1}`;
}
