/**
 * dkv bench footprint's node handling: a node that exits stops the bench at once, quoting the
 * end of its stderr, and a node that cannot start is said so (the measurements themselves are a
 * benchmark's, not a test's).
 */
import { describe, expect, it } from 'vitest';
import { footprintDefaults, runFootprintBench } from '../../bench/footprint.js';

describe('dkv bench footprint', () => {
  it('stops at once when its DKV node exits, with the exit code and the end of its stderr', async () => {
    const started = performance.now();
    const run = runFootprintBench({ ...footprintDefaults, targets: ['dkv'], keys: 1000, settleMs: 0, serverArgs: ['--no-such-flag'] });
    await expect(run).rejects.toThrow(/the node exited \(code 2\); its stderr ended:\n.*--no-such-flag: unknown flag/);
    expect(performance.now() - started).toBeLessThan(30_000);
  });

  it('says so when the etcd binary cannot start', async () => {
    const run = runFootprintBench({ ...footprintDefaults, targets: ['etcd'], keys: 1000, settleMs: 0, serverArgs: [], etcdBin: '/nonexistent/etcd' });
    await expect(run).rejects.toThrow(/the node did not start/);
  });
});
