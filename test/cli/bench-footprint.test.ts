/**
 * dkv bench footprint's node handling: a node that exits stops the bench at once, quoting the
 * end of its stderr, and a node that cannot start is said so (the measurements themselves are a
 * benchmark's, not a test's), and a run whose DKV node would run the sources through tsx rather
 * than the build says so.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { footprintDefaults, freePortBlock, runFootprintBench } from '../../bench/footprint.js';
import { dkvBin, harnessPortRange } from '../../src/package-root.js';

describe('dkv bench footprint', () => {
  it('stops at once when its DKV node exits, with the exit code and the end of its stderr', async () => {
    const started = performance.now();
    const run = runFootprintBench({ ...footprintDefaults, targets: ['dkv'], keys: 1000, settleMs: 0, serverArgs: ['--no-such-flag'] });
    await expect(run).rejects.toThrow(/the node exited \(code 2\); its stderr ended:\n.*--no-such-flag: unknown flag/);
    expect(performance.now() - started).toBeLessThan(30_000);
  });

  it('warns when the DKV node would run the sources through tsx rather than the build', () => {
    const args = [dkvBin, 'bench', 'footprint', '--target', 'dkv', '--keys', '1000', '--settle-ms', '0', '--server-args=--no-such-flag'];
    const run = spawnSync(process.execPath, args, { encoding: 'utf8', env: { ...process.env, DKV_FROM_SOURCE: '1' }, timeout: 60_000 });
    expect(run.stderr).toContain('dkv bench footprint: the DKV node runs the sources through tsx, not the build (DKV_FROM_SOURCE=1): unset DKV_FROM_SOURCE to measure the build');
    // The run goes on (and here stops at the node's refusal of the flag).
    expect(run.stderr).toMatch(/the node exited \(code 2\)/);
    expect(run.status).not.toBe(0);
  }, 60_000);

  it("picks its ports from this worker's DKV_TEST_PORTS slice, never from another's", async () => {
    // Before, a random block anywhere in 21000-28999, unchecked: a test file running beside it
    // had its cluster's member take writes of the bench's (its own node had failed to start).
    const slice = harnessPortRange()!;
    expect(slice).toBeDefined();
    for (let i = 0; i < 20; i++) {
      const base = await freePortBlock();
      expect(base).toBeGreaterThanOrEqual(slice.low);
      expect(base + 9).toBeLessThanOrEqual(slice.high);
    }
  });

  it('says so when the etcd binary cannot start', async () => {
    const run = runFootprintBench({ ...footprintDefaults, targets: ['etcd'], keys: 1000, settleMs: 0, serverArgs: [], etcdBin: '/nonexistent/etcd' });
    await expect(run).rejects.toThrow(/the node did not start/);
  });
});
