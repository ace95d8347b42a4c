/**
 * `dkv bench lock` against a real 3-node DKV cluster: a short run in each output form, its
 * mutual-exclusion and leftover checks passing; and both checkers shown able to fail (overlapping
 * holds counted, a key left under a lock name found).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Holds, countKeys } from '../../bench/lock.js';
import { TestCluster, etcdChannel } from '../server/cluster-harness.js';

const bin = join(import.meta.dirname, '..', '..', 'bin', 'dkv.js');
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

/** `dkv bench lock …` as a user runs it (asynchronously: the cluster's nodes are child processes too). */
function benchLock(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, 'bench', 'lock', '--endpoints', cluster.endpoints, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('dkv bench lock', () => {
  it('runs contended Lock → Unlock cycles over every node, one JSON line, no overlap and nothing left', async () => {
    const r = await benchLock('--conns', '3', '--clients', '6', '--locks', '2', '--total', '60', '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const result = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(result).toMatchObject({ workload: 'lock', clients: 6, locks: 2, total: 60, cycles: 60, overlaps: 0, leftoverKeys: 0, errors: 0, errorsByMessage: {} });
    expect(result.cyclesPerSecond).toBeGreaterThan(0);
    for (const field of ['latencyMs', 'acquireLatencyMs', 'releaseLatencyMs']) {
      const l = result[field] as Record<string, number>;
      expect(Object.keys(l).sort(), field).toEqual(['max', 'mean', 'p50', 'p90', 'p99']);
      expect(l.p50, field).toBeGreaterThan(0);
      expect(l.p50, field).toBeLessThanOrEqual(l.max!);
    }
  }, 30_000);

  it('prints the summary for a timed run on one lock', async () => {
    const r = await benchLock('--clients', '4', '--duration', '1');
    expect(r.code).toBe(0);
    const [description, ...summary] = r.stdout.trim().split('\n');
    expect(description).toMatch(/^lock: Lock → Unlock for 1 s, 4 client\(s\) over 1 conn\(s\) to .*; 1 lock name\(s\)/);
    expect(summary.map((line) => line.trim().split(/\s{2,}/)[0])).toEqual(['total', 'seconds', 'cycles/s', 'cycle ms', 'acquire ms', 'release ms', 'check', 'errors']);
    expect(r.stdout).toContain('check        0 overlapping holds, 0 keys left: ok');
    expect(r.stdout).toMatch(/errors {7}0\n$/);
  }, 30_000);

  it('has checkers that can fail: overlapping holds are counted, a key left under a name is found', async () => {
    const holds = new Holds();
    holds.add(0, 10);
    holds.add(10, 20); // starts as the one before ends: no overlap
    holds.add(30, 40);
    expect(holds.overlaps()).toBe(0);
    holds.add(35, 36); // inside [30, 40]
    holds.add(5, 6); // inside [0, 10]
    expect(holds.overlaps()).toBe(2);

    const channel = etcdChannel(cluster.endpoint(0));
    try {
      const prefix = Buffer.from(`bench/lock/leftover-${Date.now()}/`);
      expect(await countKeys(channel, prefix)).toBe(0);
      await channel.kv('Put', { key: Buffer.concat([prefix, Buffer.from('0/694d')]), value: Buffer.alloc(0) });
      expect(await countKeys(channel, prefix)).toBe(1);
    } finally {
      channel.close();
    }
  });
});
