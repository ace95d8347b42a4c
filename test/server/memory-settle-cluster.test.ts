/**
 * The memory settle on a real 3-node cluster: once writes stop, every running member lets its Raft
 * log cache go of the applied entries and, 6 s later, collects once more (kind `late`: LevelDB's
 * memtable written out first, V8's old generation compacted); a member that was down meanwhile
 * still catches up, from entries the leader reads back from LevelDB.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { settleIdleMs, settleLateCollectMs } from '../../src/server/limits.js';
import { TestCluster, etcdChannel, prefixEnd, waitUntil } from './cluster-harness.js';

const keys = 160;
const valueBytes = 16 * 1024;

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await TestCluster.start();
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

describe('the memory settle on a 3-node cluster', () => {
  it('lets go of the applied Raft entries once writes stop, then collects late; a member that was down catches up', async () => {
    await cluster.waitForLeader();
    // A member goes down; the two left take writes once they have a leader for every shard.
    const down = 2;
    const up = [0, 1];
    await cluster.kill(down);
    const writer = etcdChannel(cluster.endpoint(up[0]!));
    const probe = { key: Buffer.from('probe'), value: Buffer.from('x') };
    await waitUntil(() => writer.kv('Put', probe, { timeoutMs: 2000 }).then(() => true, () => false), 30_000, () => 'a put acknowledged by the two members left');
    const value = Buffer.alloc(valueBytes, 0x62);
    for (let i = 0; i < keys; i++) await writer.kv('Put', { key: Buffer.from(`settle/${String(i).padStart(4, '0')}`), value });
    let seen = { late: 0, cache: -1 };
    const lateAfterWrites = async (i: number): Promise<boolean> => {
      seen = { late: await cluster.metric(i, 'dkv_memory_settles_total{kind="late"}'), cache: await cluster.metric(i, 'dkv_memory_bytes{part="raft_log_cache"}') };
      // Without the release the cache would keep all 2.5 MB (its budget is 4 MiB); with it, at most
      // the last entry, whose application the log store hears of with the next save.
      return seen.late >= 1 && seen.cache < 2 * valueBytes;
    };
    writer.close();
    for (const i of up) {
      await waitUntil(() => lateAfterWrites(i), 4 * (settleIdleMs + settleLateCollectMs), () => `node ${i}: a late collection and the Raft log cache let go (${JSON.stringify(seen)})`, 500);
      // The settle's release, or the late collection's when a write was under way at the settle.
      expect(cluster.log(i)).toMatch(/memory settled[^\n]*, Raft log cache \d+\.\d MB released/);
      // Its LevelDB memtable written out and its old generation compacted before it.
      expect(cluster.log(i)).toMatch(/memory settled, late collection: rss [^\n]*\(compacted in \d+\.\d ms\)[^\n]*, LevelDB memtable flushed in \d+\.\d ms/);
    }
    // The member that missed the writes: the leader sends it entries it no longer holds in memory,
    // read back from LevelDB.
    const loads = async (): Promise<number> => (await cluster.metric(0, 'dkv_log_loads_total')) + (await cluster.metric(1, 'dkv_log_loads_total'));
    const loadsBefore = await loads();
    cluster.startNode(down);
    await cluster.waitForHealthy(down);
    const follower = etcdChannel(cluster.endpoint(down));
    try {
      const range = { key: Buffer.from('settle/'), range_end: prefixEnd('settle/'), serializable: true, count_only: true };
      let count = -1;
      await waitUntil(async () => (count = Number((await follower.kv('Range', range)).count)) === keys, 30_000, () => `node ${down} to catch up (it counts ${count} keys)\n${cluster.log(down).slice(-3000)}\n${cluster.log(up[0]!).slice(-3000)}`, 200);
      const last = (await follower.kv('Range', { key: Buffer.from(`settle/${String(keys - 1).padStart(4, '0')}`), serializable: true })) as { kvs: Array<{ value: Uint8Array }> };
      expect(Buffer.from(last.kvs[0]!.value).equals(value)).toBe(true);
      expect(await loads()).toBeGreaterThan(loadsBefore);
    } finally {
      follower.close();
    }
  }, 120_000);
});
