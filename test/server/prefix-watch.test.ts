/**
 * Snapshot + live through the TypeScript client's
 * `watchPrefix(prefix, { snapshot: true })`: the keys at revision R, then every change after R;
 * when its node is killed the watch moves to another node and resumes after the last revision it
 * delivered, so the consumer's view equals the store's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DkvClient, type WatchedEvent, type WatchedKeyValue } from '../../src/client/index.js';
import { etcdChannel, TestCluster, etcdctl, waitUntil } from './cluster-harness.js';

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

const text = (b: Uint8Array): string => Buffer.from(b).toString();

describe('watchPrefix with a snapshot', () => {
  it('gives the keys at R, then every change after R, across a node failure', async () => {
    const kv = etcdChannel(cluster.endpoint(0));
    // 1,200 keys for the snapshot, written 100 at a time (distinct keys: their order does not matter).
    for (let batch = 0; batch < 1200; batch += 100) {
      await Promise.all(Array.from({ length: 100 }, (_, j) => batch + j).map((i) => kv.kv('Put', { key: Buffer.from(`cfg/${String(i).padStart(4, '0')}`), value: Buffer.from(`v${i}`) })));
    }
    await kv.kv('Put', { key: Buffer.from('other'), value: Buffer.from('x') });
    // Watch through a follower, which is then killed (killing the leader would only add timeouts
    // for the writer, the failover suite's business).
    const status = JSON.parse(etcdctl(cluster.endpoints, ['endpoint', 'status', '-w', 'json']).stdout) as Array<{ Endpoint: string; Status: { leader: number; header: { member_id: number } } }>;
    const follower = [1, 2].find((i) => {
      const s = status.find((x) => x.Endpoint === cluster.endpoint(i));
      return s !== undefined && s.Status.leader !== s.Status.header.member_id;
    })!;
    const other = [0, 1, 2].find((i) => i !== follower && i !== 0) ?? 0;
    const client = new DkvClient({ servers: [{ address: cluster.endpoint(follower), priority: 2 }, { address: cluster.endpoint(other), priority: 1 }] });
    const view = new Map<string, string>();
    let snapshotRevision = 0;
    const seen: WatchedEvent[] = [];
    const watch = client.watchPrefix('cfg/', { snapshot: true });
    const consumed = (async () => {
      for await (const item of watch) {
        if (item.type === 'snapshot') {
          snapshotRevision = item.revision;
          for (const entry of item.kvs as WatchedKeyValue[]) view.set(text(entry.key), text(entry.value));
          continue;
        }
        for (const e of item.events) {
          seen.push(e);
          if (e.type === 'put') view.set(text(e.kv.key), text(e.kv.value));
          else view.delete(text(e.kv.key));
        }
      }
    })();
    await waitUntil(() => snapshotRevision > 0, 10_000, () => 'the snapshot');
    expect(view.size).toBe(1200);
    const writer = async (from: number, to: number): Promise<void> => {
      for (let i = from; i < to; i++) {
        if (i % 5 === 4) await kv.kv('DeleteRange', { key: Buffer.from(`cfg/${String(i).padStart(4, '0')}`) });
        else await kv.kv('Put', { key: Buffer.from(`cfg/${String(i % 3000).padStart(4, '0')}`), value: Buffer.from(`w${i}`) });
      }
    };
    await writer(0, 100);
    await cluster.kill(follower);
    await writer(100, 200);
    const final = ((await kv.kv('Range', { key: Buffer.from('cfg/0000') })).header as { revision: number }).revision;
    await waitUntil(() => watch.revision >= final, 20_000, () => `the watch to reach ${final} (at ${watch.revision})`);
    // Every change after R exactly once, in order.
    const revisions = seen.map((e) => e.kv.modRevision);
    expect(revisions[0]).toBe(snapshotRevision + 1);
    expect(revisions).toEqual([...revisions].sort((a, b) => a - b));
    expect(new Set(revisions).size).toBe(revisions.length);
    // The consumer's view equals the store's.
    const store = await kv.kv('Range', { key: Buffer.from('cfg/'), range_end: Buffer.from('cfg0') });
    const truth = new Map((store.kvs as Array<{ key: Buffer; value: Buffer }>).map((e) => [e.key.toString(), e.value.toString()]));
    expect(view).toEqual(truth);
    watch.close();
    await consumed;
    client.close();
    kv.close();
    cluster.startNode(follower);
    await cluster.waitForHealthy(follower);
  }, 90_000);
});
