/**
 * Snapshots and log compaction: with a small --snapshot-count the leader compacts its log, so a
 * follower that was down while many writes committed can only catch up from a snapshot streamed
 * over the peer transport. Afterwards it serves every key and its HashKV equals the others'.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, etcdChannel, etcdctl } from './cluster-harness.js';

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 3, args: ['--snapshot-count', '50'] });
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

async function until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error(`${what} did not happen within ${timeoutMs} ms\n${cluster.logs()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('a follower behind the compacted log', () => {
  it('catches up from a snapshot and agrees on HashKV', async () => {
    // Stop a follower (stopping the leader is the failover suite's business).
    const status = JSON.parse(etcdctl(cluster.endpoints, ['endpoint', 'status', '-w', 'json']).stdout) as Array<{ Endpoint: string; Status: { leader: number; header: { member_id: number } } }>;
    const follower = cluster.nodes.findIndex((_, i) => {
      const s = status.find((x) => x.Endpoint === cluster.endpoint(i));
      return s !== undefined && s.Status.leader !== s.Status.header.member_id;
    });
    expect(follower).toBeGreaterThanOrEqual(0);
    await cluster.kill(follower);
    // Far more entries than --snapshot-count: several snapshots, each compacting the log behind it.
    // 300 Txns of 20 puts, one after another, over one gRPC channel to a survivor (an etcdctl
    // process per Txn spent most of the test starting processes).
    const survivor = etcdChannel(cluster.endpoint([0, 1, 2].find((i) => i !== follower)!));
    try {
      for (let batch = 0; batch < 300; batch++) {
        const puts = Array.from({ length: 20 }, (_, i) => ({ request_put: { key: Buffer.from(`k${String(batch * 20 + i).padStart(5, '0')}`), value: Buffer.from(`v${batch}`) } }));
        const r = await survivor.kv('Txn', { success: puts });
        expect(r.succeeded, cluster.logs()).toBe(true);
      }
    } finally {
      survivor.close();
    }
    cluster.startNode(follower);
    await until(() => etcdctl(cluster.endpoint(follower), ['get', 'k05999', '--print-value-only', '--consistency=s']).stdout === 'v299\n', 30_000, 'catch-up');
    const count = etcdctl(cluster.endpoint(follower), ['get', 'k', '--prefix', '--keys-only', '--consistency=s', '-w', 'json']);
    expect((JSON.parse(count.stdout) as { count: number }).count).toBe(6000);
    expect(readFileSync(cluster.nodes[follower]!.logFile, 'utf8')).toMatch(/shard 1: state restored from the leader's snapshot at index \d+/);
    const hashes = JSON.parse(etcdctl(cluster.endpoints, ['endpoint', 'hashkv', '-w', 'json']).stdout) as Array<{ HashKV: { hash: number } }>;
    expect(hashes.length).toBe(3);
    expect(new Set(hashes.map((h) => h.HashKV.hash)).size).toBe(1);
  }, 90_000);
});
