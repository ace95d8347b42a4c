/**
 * A member stopped for good, on a real 4-node cluster whose meta leader counts a member dead after
 * 2 s (`--shard-replica-dead-seconds=2`): each replica it held of a placed store moves to the live
 * member that hosted none (the placement loop starts the move, the shard's group carries it out),
 * the cluster keeps serving the store's keys, and the new replica holds every one. When the stopped
 * member comes back, it finds it has left the shard's group and deletes its old replica.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Decoded, EtcdChannel } from '../../src/client/index.js';
import { TestCluster, etcdChannel, etcdctl, waitUntil } from './cluster-harness.js';

let cluster: TestCluster;
let channels: EtcdChannel[] = [];
let ids: string[] = [];

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 4, args: ['--shard-replica-dead-seconds=2'] });
  channels = [0, 1, 2, 3].map((i) => etcdChannel(cluster.endpoint(i)));
  ids = await Promise.all([0, 1, 2, 3].map(async (i) => BigInt(String(((await channels[i]!.call('etcdserverpb.Maintenance', 'Status', {})).header as Decoded).member_id)).toString(16)));
}, 60_000);

afterAll(async () => {
  for (const channel of channels) channel.close();
  await cluster?.stop();
});

const nodeOf = (memberId: unknown): number => ids.indexOf(BigInt(String(memberId)).toString(16));

const metric = (node: number, name: string): Promise<number> => cluster.metric(node, name);

describe('a member stopped for good', () => {
  it('has its replicas moved to a live member, and deletes its own once it is back', async () => {
    const created = await channels[0]!.call('dkv.v1.Admin', 'StoreCreate', { name: 'rr', prefix: Buffer.from('/rr/'), replicas: 3 });
    const shardId = Number((created.shard_ids as unknown[])[0]);
    const listed = async (node: number): Promise<number[]> =>
      ((((await channels[node]!.call('dkv.v1.Admin', 'ShardList', {})).shards as Decoded[]).find((s) => Number(s.id) === shardId)!.replicas as unknown[]) ?? []).map(nodeOf);
    const replicas = await listed(0);
    expect(replicas).toHaveLength(3);
    const spare = [0, 1, 2, 3].find((n) => !replicas.includes(n))!;
    const stopped = replicas[0]!;
    const live = [0, 1, 2, 3].filter((n) => n !== stopped);
    for (let i = 0; i < 50; i++) expect(etcdctl(cluster.endpoint(live[i % 3]!), ['put', `/rr/k${String(i).padStart(2, '0')}`, `v${i}`]).stderr).toBe('');
    const expected = Array.from({ length: 50 }, (_, i) => `/rr/k${String(i).padStart(2, '0')}`);
    await cluster.kill(stopped);
    const stoppedAt = Date.now();
    // Still served meanwhile (two of three replicas live), once the shard elected a leader if the
    // stopped member led it.
    await waitUntil(async () => etcdctl(cluster.endpoint(spare), ['put', '/rr/during', 'x']).code === 0, 20_000, () => cluster.logs());
    // (The map is read linearizably: a read in the meta shard's election, if the stopped member led it, fails and is made again.)
    await waitUntil(async () => {
      const now = await listed(live[0]!).catch((): number[] => []);
      return now.includes(spare) && !now.includes(stopped);
    }, 60_000, () => cluster.logs());
    console.log(`re-replication: shard ${shardId}'s replica on the stopped member moved in ${Date.now() - stoppedAt} ms (grace 2 s)`);
    // Counted by the meta leader that started it, and by the shard leader that finished it.
    const counted = async (name: string): Promise<number> => (await Promise.all(live.map((n) => metric(n, name)))).reduce((a, b) => a + b, 0);
    expect(await counted('dkv_shard_placement_moves_total')).toBeGreaterThanOrEqual(1);
    expect(await counted('dkv_shard_replica_moves_finished_total')).toBeGreaterThanOrEqual(1);
    const keys = (node: number, serializable: boolean) =>
      etcdctl(cluster.endpoint(node), ['get', '/rr/', '--prefix', '--keys-only', ...(serializable ? ['--consistency=s'] : [])]).stdout.split('\n').filter(Boolean);
    const all = [...expected, '/rr/during'].sort();
    for (const node of live) expect(keys(node, false)).toEqual(all);
    await waitUntil(async () => keys(spare, true).length === all.length, 20_000, () => cluster.logs());
    expect(keys(spare, true)).toEqual(all);
    // Back: not listed, out of the group: its replica is deleted (meta and default store's groups left).
    cluster.startNode(stopped);
    await cluster.waitForHealthy(stopped);
    await waitUntil(async () => (await metric(stopped, 'dkv_shards')) === 2, 30_000, () => cluster.logs());
    expect(keys(stopped, false)).toEqual(all);
  });

  it('hands leaderships back to a member that restarted until none leads two shards more than another', async () => {
    const created = await channels[0]!.call('dkv.v1.Admin', 'StoreCreate', { name: 'lb', prefix: Buffer.from('/lb/'), shards: 8 });
    const lb = (created.shard_ids as unknown[]).map(Number);
    expect(lb).toHaveLength(8);
    /**
     * Leaders of every data shard (node indexes) — the default store's, rr's and lb's, as the loop
     * counts them — as the members that answer see them (the highest term wins).
     */
    const leaders = async (): Promise<Map<number, number>> => {
      const best = new Map<number, { node: number; term: number }>();
      for (let node = 0; node < 4; node++) {
        if (!cluster.running(node)) continue;
        const listed = await channels[node]!.call('dkv.v1.Admin', 'ShardList', {}).catch(() => undefined);
        for (const s of (listed?.shards as Decoded[] | undefined) ?? []) {
          const id = Number(s.id);
          const term = Number(s.raft_term ?? 0);
          if (id === 0 || String(s.leader ?? '0') === '0') continue;
          if ((best.get(id)?.term ?? -1) < term) best.set(id, { node: nodeOf(s.leader), term });
        }
      }
      return new Map([...best].map(([id, { node }]) => [id, node]));
    };
    const led = (view: Map<number, number>, node: number): number => [...view.values()].filter((n) => n === node).length;
    const dataShards = lb.length + 2;
    await waitUntil(async () => (await leaders()).size === dataShards, 30_000, () => cluster.logs());
    // Member 3 stops: the others take its leaderships.
    await cluster.kill(3);
    await waitUntil(async () => {
      const view = await leaders();
      return view.size === dataShards && led(view, 3) === 0;
    }, 30_000, () => cluster.logs());
    const before = (await Promise.all([0, 1, 2].map((n) => metric(n, 'dkv_shard_leader_balance_transfers_total')))).reduce((a, b) => a + b, 0);
    cluster.startNode(3);
    await cluster.waitForHealthy(3);
    const backAt = Date.now();
    // The placement loop hands some back: member 3 leads again, and the leaderships are spread
    // (rr is on three of the four members, so two apart may remain).
    await waitUntil(async () => {
      const view = await leaders();
      const counts = [0, 1, 2, 3].map((n) => led(view, n));
      return view.size === dataShards && Math.max(...counts) - Math.min(...counts) <= 2 && counts[3]! >= 1;
    }, 60_000, () => cluster.logs());
    const view = await leaders();
    console.log(`leader balance: member 3 leads ${led(view, 3)} of the ${dataShards} data shards ${Date.now() - backAt} ms after its restart (per member: ${[0, 1, 2, 3].map((n) => led(view, n)).join(' ')})`);
    // At least one of them by the loop (member 3 may also have won an election on its own).
    const transfers = async (): Promise<number> => (await Promise.all([0, 1, 2, 3].map((n) => metric(n, 'dkv_shard_leader_balance_transfers_total')))).reduce((a, b) => a + b, 0);
    await waitUntil(async () => (await transfers()) > before, 60_000, () => cluster.logs());
    // The store still serves through it all.
    for (let i = 0; i < 8; i++) expect(etcdctl(cluster.endpoint(i % 4), ['put', `/lb/${String.fromCharCode(32 + i * 28)}k`, 'v']).code).toBe(0);
  });
});
