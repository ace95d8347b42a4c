/**
 * Stores served on a real 3-node cluster, through the real etcdctl: a store created with
 * `dkv.v1.Admin` gets its own Raft groups on every member, and its keys are written and read there
 * (its own revisions), while the default store keeps the rest; a Range across shards is merged
 * with etcd's limit, sort, count and more; a delete across shards, or a range across them at a
 * past revision, is refused with a stable error, and a watch of a store's keys too (only the
 * default store's keys can be watched). The groups come back from disk after a SIGKILL. A prefix under which the default
 * store holds keys is refused. A drop removes the groups on every member and deletes their keys;
 * the default store serves the prefix again, empty.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Decoded, type EtcdChannel } from '../../src/client/index.js';
import { TestCluster, etcdChannel, etcdctl, waitUntil } from './cluster-harness.js';
import { WatchClient } from './watch-client.js';

let cluster: TestCluster;
let channels: EtcdChannel[] = [];

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
  channels = [0, 1, 2].map((i) => etcdChannel(cluster.endpoint(i)));
}, 60_000);

afterAll(async () => {
  for (const channel of channels) channel.close();
  await cluster?.stop();
});

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const admin = (node: number, method: string, request: object = {}): Promise<Decoded> => channels[node]!.call('dkv.v1.Admin', method, request);
const ctl = (node: number, ...args: string[]) => etcdctl(cluster.endpoint(node), args);
const value = (node: number, key: string): string => {
  const r = ctl(node, 'get', key, '--print-value-only');
  if (r.code !== 0) throw new Error(`get ${key} on node ${node}: ${r.stderr}`);
  return r.stdout.trim();
};
/** Shard groups a node hosts now (its dkv_shards gauge). */
async function hostedShards(node: number): Promise<number> {
  const text = await (await fetch(`${cluster.metricsUrl(node)}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('dkv_shards '));
  return Number(line?.split(' ')[1]);
}

describe('stores served by their own shards', () => {
  it('refuses a prefix under which the default store holds keys, then serves a new store in groups of its own', async () => {
    expect(ctl(0, 'put', '/users/old', 'x').code).toBe(0);
    await expect(admin(0, 'StoreCreate', { name: 'users', prefix: b('/users/'), shards: 1 })).rejects.toThrow(/holds keys under the prefix: 1 key/);
    expect(ctl(0, 'del', '/users/old').code).toBe(0);
    expect(ctl(0, 'put', '/other', 'default-value').code).toBe(0);
    // Watches open before the store: one of a key the store takes, one of a key it leaves alone.
    const watches = [0, 2].map((node) => new WatchClient(cluster.endpoint(node)));
    try {
      watches[0]!.create({ key: '/users/', rangeEnd: '/users0', watchId: 7 });
      watches[1]!.create({ key: '/other', watchId: 8 });
      for (const w of watches) await w.waitFor((r) => r.some((x) => x.created === true));
      await admin(1, 'StoreCreate', { name: 'users', prefix: b('/users/'), shards: 1 });
      // The store's keys' events are applied in its own shards from now on: the watch is canceled, saying why.
      await watches[0]!.waitFor((r) => r.some((x) => x.canceled === true && String(x.watch_id) === '7'));
      expect(watches[0]!.responses.find((x) => x.canceled === true)!.cancel_reason).toBe("dkv: only the default store's keys can be watched");
      expect(watches[1]!.responses.some((x) => x.canceled === true)).toBe(false);
      expect(ctl(1, 'put', '/other', 'default-value').code).toBe(0);
      await watches[1]!.waitFor((r) => r.some((x) => ((x.events as Decoded[] | undefined) ?? []).length > 0));
    } finally {
      for (const w of watches) w.close();
    }
    const created = { shard_ids: ((await admin(1, 'StoreDescribe', { name: 'users' })).shards as Decoded[]).map((s) => Number(s.id)) };
    expect(created.shard_ids).toEqual([2]);
    expect(((await admin(2, 'StoreList')).stores as Decoded[]).map((s) => [s.name, s.creating])).toEqual([
      ['default', false],
      ['users', false],
    ]);
    // Auth cannot be enabled while a store exists (only the default store's shard checks callers).
    for (const args of [['user', 'add', 'root', '--new-user-password=pw'], ['role', 'add', 'root'], ['user', 'grant-role', 'root', 'root']]) expect(ctl(0, ...args).code).toBe(0);
    const enable = ctl(0, 'auth', 'enable');
    expect(enable.code).not.toBe(0);
    expect(enable.stderr).toContain('dkv: authentication cannot be enabled while stores exist (drop them first)');
    // Every member hosts the new group (meta, default store, the store's one shard).
    await waitUntil(async () => (await Promise.all([0, 1, 2].map(hostedShards))).every((n) => n === 3), 20_000, () => cluster.logs());

    expect(ctl(0, 'put', '/users/alice', 'a1').code).toBe(0);
    expect(ctl(1, 'put', '/users/bob', 'b1').code).toBe(0);
    for (const node of [0, 1, 2]) {
      expect(value(node, '/users/alice')).toBe('a1');
      expect(value(node, '/other')).toBe('default-value');
    }
    // A range inside the store, linearizable from any node.
    expect(ctl(2, 'get', '/users/', '--prefix', '--keys-only').stdout.split('\n').filter(Boolean)).toEqual(['/users/alice', '/users/bob']);
    // The store's own revisions (etcd's start at 1): two puts in it, whatever the default store did.
    const header = JSON.parse(ctl(0, 'get', '/users/alice', '-w', 'json').stdout) as { header: { revision: number }; kvs: Array<{ mod_revision: number }> };
    expect(header.header.revision).toBe(3);
    expect(header.kvs[0]!.mod_revision).toBe(2);
    // A range across the store's boundary: merged from both shards, with etcd's limit, sort, count and more.
    const keys = (r: { stdout: string }): string[] => r.stdout.split('\n').filter(Boolean);
    expect(keys(ctl(2, 'get', '/', '--prefix', '--keys-only'))).toEqual(['/other', '/users/alice', '/users/bob']);
    expect(keys(ctl(1, 'get', '/', '--prefix', '--keys-only', '--order=DESCEND'))).toEqual(['/users/bob', '/users/alice', '/other']);
    expect(keys(ctl(1, 'get', '/', '--prefix', '--print-value-only', '--sort-by=VALUE'))).toEqual(['a1', 'b1', 'default-value']);
    const limited = JSON.parse(ctl(0, 'get', '/', '--prefix', '--limit=2', '-w', 'json').stdout) as { kvs: unknown[]; more?: boolean; count: number };
    expect([limited.kvs.length, limited.more, limited.count]).toEqual([2, true, 3]);
    // At a past revision (revisions are each shard's own), and a delete across shards: refused, nothing applied.
    const past = ctl(0, 'get', '/', '--prefix', '--rev=2');
    expect(past.stderr).toContain('dkv: a range across shards is served at the current revision only');
    const wide = ctl(0, 'del', '/', '--prefix');
    expect(wide.code).not.toBe(0);
    expect(wide.stderr).toContain('dkv: the range spans more than one shard');
    expect(value(0, '/users/alice')).toBe('a1');
    // A watch of the store's keys is refused (the default store's keys only).
    const watch = etcdctl(cluster.endpoint(0), ['watch', '/users/alice'], undefined, ['--command-timeout=3s']);
    expect(watch.stdout + watch.stderr).toContain("only the default store's keys can be watched");
  }, 90_000);

  it('brings the groups back from disk after a SIGKILL', async () => {
    // A follower of the store's shard and of the meta shard (a leader's death is failover, tested elsewhere).
    const members = ((await channels[0]!.call('etcdserverpb.Cluster', 'MemberList', {})).members as Decoded[]).map((m) => [String(m.ID), String(m.name)]);
    const leaders = new Set<string>();
    const store = (await admin(0, 'StoreDescribe', { name: 'users' })).shards as Decoded[];
    leaders.add(String(store[0]!.leader));
    const status = await channels[0]!.call('etcdserverpb.Maintenance', 'Status', {});
    leaders.add(String(status.leader));
    const victim = members.findIndex(([id]) => !leaders.has(id!));
    expect(victim).toBeGreaterThanOrEqual(0);
    const node = Number(members[victim]![1]!.replace('dkv', '')) - 1;
    const other = node === 0 ? 1 : 0;
    await cluster.kill(node);
    expect(ctl(other, 'put', '/users/carol', 'c1').code).toBe(0);
    cluster.startNode(node);
    await cluster.waitForHealthy(node);
    await waitUntil(async () => (await hostedShards(node)) === 3, 20_000, () => cluster.log(node));
    await waitUntil(() => ctl(node, 'get', '/users/carol', '--print-value-only', '--consistency=s').stdout.trim() === 'c1', 20_000, () => cluster.log(node));
    expect(value(node, '/users/alice')).toBe('a1');
  }, 90_000);

  it('drops the store: groups removed on every member, its keys gone, the prefix the default store\'s again', async () => {
    // The killed node may have led the meta shard: wait until it has a leader again (a read of it answers).
    await waitUntil(() => admin(0, 'StoreList').then(() => true, () => false), 20_000, () => cluster.logs());
    const dropped = await admin(0, 'StoreDrop', { name: 'users' });
    expect(dropped.shard_ids).toEqual([2]);
    await waitUntil(async () => (await Promise.all([0, 1, 2].map(hostedShards))).every((n) => n === 2), 20_000, () => cluster.logs());
    for (const node of [0, 1, 2]) {
      expect(ctl(node, 'get', '/users/alice').stdout).toBe('');
      expect(value(node, '/other')).toBe('default-value');
    }
    expect(ctl(1, 'put', '/users/alice', 'default-now').code).toBe(0);
    expect(value(0, '/users/alice')).toBe('default-now');
    // A store on the same prefix again: refused while the default store holds a key there.
    await expect(admin(0, 'StoreCreate', { name: 'users', prefix: b('/users/'), shards: 1 })).rejects.toThrow(/holds keys under the prefix/);
  }, 90_000);
});
