/**
 * Backup and restore with stores, as etcd's runbook does it (save a member's snapshot, restore
 * every member of a new cluster from it, start them): on a real 3-node cluster, a store of two
 * shards and the default store are saved in one file; each member's data directory is restored
 * from it; the new cluster serves the store again (its shards' groups on every member, each key
 * with its own shard's revisions, writes to it) and the default store's keys as they were.
 */
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Decoded, type EtcdChannel } from '../../src/client/index.js';
import { TestCluster, etcdChannel, etcdctl, waitUntil } from './cluster-harness.js';

const dkvBin = join(import.meta.dirname, '..', '..', 'bin', 'dkv.js');

let cluster: TestCluster;
let channels: EtcdChannel[] = [];

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
}, 60_000);

afterAll(async () => {
  for (const channel of channels) channel.close();
  await cluster?.stop();
});

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const ctl = (node: number, ...args: string[]) => etcdctl(cluster.endpoint(node), args);
/** Key, value and mod revision of each key under `prefix`, read on `node`. */
function entries(node: number, prefix: string): Array<[string, string, number]> {
  const r = ctl(node, 'get', prefix, '--prefix', '-w', 'json');
  expect(r.code, r.stderr).toBe(0);
  const kvs = (JSON.parse(r.stdout) as { kvs?: Array<{ key: string; value: string; mod_revision: number }> }).kvs ?? [];
  return kvs.map((kv) => [Buffer.from(kv.key, 'base64').toString(), Buffer.from(kv.value, 'base64').toString(), kv.mod_revision]);
}

async function hostedShards(node: number): Promise<number> {
  const text = await (await fetch(`${cluster.metricsUrl(node)}/metrics`)).text();
  return Number(text.split('\n').find((l) => l.startsWith('dkv_shards '))?.split(' ')[1]);
}

describe('a snapshot with stores', () => {
  it('restores a new cluster with the store and its keys, each with its own revisions', async () => {
    channels = [etcdChannel(cluster.endpoint(0))];
    const created = await channels[0]!.call('dkv.v1.Admin', 'StoreCreate', { name: 'users', prefix: b('/users/'), shards: 2 });
    expect(created.shard_ids).toHaveLength(2);
    await waitUntil(async () => (await Promise.all([0, 1, 2].map(hostedShards))).every((n) => n === 4), 20_000, () => cluster.logs());
    // Keys in the default store and in each of the store's shards (cut at the byte after the prefix).
    for (const [key, value] of [['/cfg/a', '1'], ['/users/\x01low', 'l1'], ['/users/éhigh', 'h1'], ['/users/\x01low', 'l2'], ['/users/\x01gone', 'x']]) {
      expect(ctl(0, 'put', key!, value!).code).toBe(0);
    }
    expect(ctl(1, 'del', '/users/\x01gone').code).toBe(0);
    const before = { users: entries(1, '/users/'), cfg: entries(1, '/cfg/') };
    expect(before.users.map(([k, v]) => [k, v])).toEqual([
      ['/users/\x01low', 'l2'],
      ['/users/éhigh', 'h1'],
    ]);

    const file = join(cluster.dir, 'backup.db');
    const saved = spawnSync(process.execPath, [dkvBin, 'snapshot', 'save', file, '--endpoints', cluster.endpoint(2)], { encoding: 'utf8' });
    expect(saved.status, saved.stderr).toBe(0);

    // A new cluster from the file: every member's data directory restored, then started.
    for (const i of [0, 1, 2]) await cluster.kill(i);
    for (const node of cluster.nodes) {
      rmSync(node.dataDir, { recursive: true, force: true });
      const restored = spawnSync(process.execPath, [dkvBin, 'snapshot', 'restore', file, ...node.args], { encoding: 'utf8' });
      expect(restored.status, restored.stderr).toBe(0);
      expect(restored.stdout).toMatch(/^restored \d+ keys at revision \d+ \(and 1 store\) into /);
    }
    for (const i of [0, 1, 2]) cluster.startNode(i);
    await cluster.waitForLeader();
    await waitUntil(async () => (await Promise.all([0, 1, 2].map((n) => hostedShards(n).catch(() => 0)))).every((n) => n === 4), 20_000, () => cluster.logs());
    channels.push(etcdChannel(cluster.endpoint(1)));
    // The meta shard elects its leader on its own: the list is answered once it has one.
    let stores: Decoded[] = [];
    await waitUntil(() => channels[1]!.call('dkv.v1.Admin', 'StoreList', {}).then((r) => ((stores = r.stores as Decoded[]), true), () => false), 20_000, () => cluster.logs());
    expect(stores.map((s) => [s.name, Number(s.shard_count), s.creating])).toEqual([
      ['default', 1, false],
      ['users', 2, false],
    ]);
    // Every member serves the keys as they were, with their revisions (each shard's own).
    for (const node of [0, 1, 2]) {
      await waitUntil(() => ctl(node, 'get', '/users/éhigh', '--print-value-only').stdout === 'h1\n', 20_000, () => cluster.log(node));
      expect(entries(node, '/users/')).toEqual(before.users);
      expect(entries(node, '/cfg/')).toEqual(before.cfg);
    }
    // The store takes writes in each of its shards, going on from its revisions.
    expect(ctl(2, 'put', '/users/éhigh', 'h2').code).toBe(0);
    expect(ctl(2, 'put', '/users/\x01low', 'l3').code).toBe(0);
    const after = entries(0, '/users/');
    expect(after.map(([k, v]) => [k, v])).toEqual([
      ['/users/\x01low', 'l3'],
      ['/users/éhigh', 'h2'],
    ]);
    for (const [i, [, , revision]] of after.entries()) expect(revision).toBeGreaterThan(before.users[i]![2]);
  }, 120_000);
});
