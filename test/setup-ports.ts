/**
 * Runs before each test file (vitest.config.ts `setupFiles`): narrows DKV_TEST_PORTS to this
 * worker's slice (test/workers.ts), for the file and every process it starts.
 */
import { harnessPortRange } from '../src/package-root.js';
import { testPortsDefault, testWorkers, workerPorts } from './workers.js';

const poolId = Number(process.env.VITEST_POOL_ID);
if (Number.isInteger(poolId) && poolId >= 1 && process.env.VITEST_DKV_PORTS_WHOLE === undefined) {
  // The range the run was given (or the default), kept so a file's second setup slices it again rather than the slice.
  const whole = harnessPortRange() ?? testPortsDefault;
  process.env.VITEST_DKV_PORTS_WHOLE = `${whole.low}-${whole.high}`;
  process.env.DKV_TEST_PORTS = workerPorts(whole, poolId, testWorkers());
}
