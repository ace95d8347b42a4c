/**
 * Stores served on a real 3-node cluster, through the real etcdctl: a store created with
 * `dkv.v1.Admin` gets its own Raft groups on every member, and its keys are written and read there
 * (its own revisions), while the default store keeps the rest; a Range across shards is merged
 * with etcd's limit, sort, count and more; a delete across shards, or a range across them at a
 * past revision, is refused with a stable error. A watch of a store's keys is served by its shard,
 * with that shard's revisions; a watch across shards is refused, and watches whose keys change
 * shards (a store created or dropped) are canceled with the reason. The groups come back from
 * disk after a SIGKILL. A prefix under which the default store holds keys is refused. A drop
 * removes the groups on every member and deletes their keys; the default store serves the prefix
 * again, empty. A member added later hosts the store's groups, filled by their leaders.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Decoded, DkvClient, type EtcdChannel } from '../../src/client/index.js';
import { errorTable } from '../../src/errors.js';
import { TestCluster, etcdChannel, etcdctl, freeBase, waitUntil } from './cluster-harness.js';

const dkvBin = join(import.meta.dirname, '..', '..', 'bin', 'dkv.js');
import { WatchClient } from './watch-client.js';

let cluster: TestCluster;
let channels: EtcdChannel[] = [];

beforeAll(async () => {
  // Leaderships stay where elections put them: tests below pick a member that leads neither the
  // default store's shard nor the store's, then kill it.
  cluster = await TestCluster.start({ nodes: 3, args: ['--shard-rebalance=false'] });
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
/**
 * Waits until every member answers a linearizable read of the meta shard: after a kill of its
 * leader, an election may still be under way (a read in flight then waits for the next leader, or
 * fails with `no leader` or a timeout, which etcd's clients retry and these raw calls do not).
 */
async function metaAnsweredEverywhere(): Promise<void> {
  await waitUntil(async () => (await Promise.all([0, 1, 2].map((node) => admin(node, 'StoreList').then(() => true, () => false)))).every(Boolean), 20_000, () => cluster.logs());
}
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
      expect(watches[0]!.responses.find((x) => x.canceled === true)!.cancel_reason).toBe(errorTable['watch-other-store'].message);
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
    // A watch of the store's keys: served by its shard, from its history and live, with its revisions.
    const watch = new WatchClient(cluster.endpoint(2));
    // dkv.v1's snapshot + live watch of the store's prefix, too.
    const client = new DkvClient({ servers: [{ address: cluster.endpoint(1) }] });
    const prefixWatch = client.watchPrefix('/users/', { snapshot: true });
    const seen: string[] = [];
    const consumed = (async () => {
      for await (const item of prefixWatch) {
        if (item.type === 'snapshot') for (const kv of item.kvs) seen.push(`snapshot ${Buffer.from(kv.key).toString()} @${item.revision}`);
        else for (const e of item.events) seen.push(`${e.type} ${Buffer.from(e.kv.key).toString()} @${e.kv.modRevision}`);
      }
    })();
    try {
      await waitUntil(() => seen.length === 2, 10_000, () => `the prefix watch's snapshot: ${seen.join(', ')}`);
      watch.create({ key: '/users/', rangeEnd: '/users0', startRevision: 1, watchId: 9 });
      watch.create({ key: '/', rangeEnd: '0', watchId: 10 });
      await watch.waitFor((r) => r.filter((x) => x.created === true).length === 2);
      const refused = watch.responses.find((x) => x.canceled === true)!;
      expect([String(refused.watch_id), refused.cancel_reason]).toEqual(['-1', errorTable['watch-cross-shard'].message]);
      expect(ctl(0, 'put', '/users/alice', 'a2').code).toBe(0);
      await watch.waitFor(() => watch.events(9).length === 3);
      expect(watch.events(9).map((e) => [e.key, e.value, e.modRevision])).toEqual([
        ['/users/alice', 'a1', 2],
        ['/users/bob', 'b1', 3],
        ['/users/alice', 'a2', 4],
      ]);
      const created = watch.responses.find((x) => x.created === true && String(x.watch_id) === '9')!;
      expect(Number((created.header as Decoded).revision)).toBe(3);
      await waitUntil(() => seen.length === 3, 10_000, () => `the prefix watch's event: ${seen.join(', ')}`);
      expect(seen).toEqual(['snapshot /users/alice @3', 'snapshot /users/bob @3', 'put /users/alice @4']);
    } finally {
      watch.close();
      prefixWatch.close();
      await consumed;
      client.close();
    }
    expect(ctl(0, 'put', '/users/alice', 'a1').code).toBe(0);
    // Leases: LeaseGrant grants in the default store, whose leases attach its keys only; a put or
    // a lock naming one under the store's prefix is refused, saying so. A Lock with no lease gets a
    // session lease of the store's shard, and holds the lock there.
    const lease = /lease ([0-9a-f]+) granted/.exec(ctl(0, 'lease', 'grant', '60').stdout)![1]!;
    const leased = ctl(1, 'put', '/users/leased', 'v', `--lease=${lease}`);
    expect(leased.code).not.toBe(0);
    expect(leased.stderr).toContain(errorTable['store-lease-unsupported'].message);
    const locked = ctl(2, 'lock', '/users/lk', 'true');
    expect(locked.code).not.toBe(0);
    expect(locked.stderr).toContain(errorTable['store-lease-unsupported'].message);
    const held = await channels[0]!.call('v3lockpb.Lock', 'Lock', { name: b('/users/lk') });
    expect((held.key as Buffer).toString()).toMatch(/^\/users\/lk\//);
    await channels[1]!.call('v3lockpb.Lock', 'Unlock', { key: held.key });
    expect(ctl(0, 'get', '/users/lk', '--prefix', '--keys-only').stdout).toBe('');
  }, 90_000);

  it('watches a prefix across the default store and a store through dkv.v1, resuming across a node failure with the token', async () => {
    // A follower of the default store's and the store's shard serves the watch, then dies (it may
    // lead the meta shard: with three shards on three nodes there may be no node that leads none).
    const status = JSON.parse(etcdctl(cluster.endpoints, ['endpoint', 'status', '-w', 'json']).stdout) as Array<{ Endpoint: string; Status: { leader: number; header: { member_id: number } } }>;
    const storeLeader = String(((await admin(0, 'StoreDescribe', { name: 'users' })).shards as Decoded[])[0]!.leader);
    const follower = [0, 1, 2].find((i) => {
      const s = status.find((x) => x.Endpoint === cluster.endpoint(i))!;
      return s.Status.leader !== s.Status.header.member_id && String(s.Status.header.member_id) !== storeLeader;
    })!;
    expect(follower).toBeDefined();
    const other = [0, 1, 2].find((i) => i !== follower)!;
    const client = new DkvClient({ servers: [{ address: cluster.endpoint(follower), priority: 2 }, { address: cluster.endpoint(other), priority: 1 }] });
    const watch = client.watchPrefix('/');
    const view = new Map<string, string>();
    const seen: Array<{ shard: number; revision: number }> = [];
    let snapshot: { shards?: ReadonlyArray<{ shard: number; revision: number }> } | undefined;
    const consumed = (async () => {
      for await (const item of watch) {
        if (item.type === 'snapshot') {
          snapshot = item;
          for (const kv of item.kvs) view.set(Buffer.from(kv.key).toString(), Buffer.from(kv.value).toString());
          continue;
        }
        for (const e of item.events) {
          seen.push({ shard: item.shard!, revision: e.kv.modRevision });
          if (e.type === 'put') view.set(Buffer.from(e.kv.key).toString(), Buffer.from(e.kv.value).toString());
          else view.delete(Buffer.from(e.kv.key).toString());
        }
      }
    })();
    try {
      await waitUntil(() => snapshot !== undefined, 10_000, () => 'the snapshot');
      // Both shards' revisions, in key order: the default store's (1), then the store's (2).
      expect(snapshot!.shards!.map((s) => s.shard)).toEqual([1, 2]);
      expect([...view.keys()]).toEqual(['/other', '/users/alice', '/users/bob']);
      const kv = channels[other]!;
      const write = async (from: number, to: number): Promise<void> => {
        for (let i = from; i < to; i++) {
          await kv.call('etcdserverpb.KV', 'Put', { key: b(`/users/w${i % 7}`), value: b(`u${i}`) });
          if (i % 3 === 0) await kv.call('etcdserverpb.KV', 'DeleteRange', { key: b(`/cfg/w${i % 5}`) });
          else await kv.call('etcdserverpb.KV', 'Put', { key: b(`/cfg/w${i % 5}`), value: b(`c${i}`) });
        }
      };
      await write(0, 40);
      await cluster.kill(follower);
      await write(40, 80);
      const truth = async (): Promise<Map<string, string>> => {
        const r = await kv.call('etcdserverpb.KV', 'Range', { key: b('/'), range_end: b('0') });
        return new Map(((r.kvs as Decoded[] | undefined) ?? []).map((e) => [(e.key as Buffer).toString(), (e.value as Buffer).toString()]));
      };
      const want = await truth();
      await waitUntil(() => view.size === want.size && [...want].every(([k, v]) => view.get(k) === v), 20_000, () => `the watch's view: ${view.size} keys of ${want.size}`);
      expect(view).toEqual(want);
      // Each shard's changes once, in its order, from right after its snapshot revision.
      for (const { shard, revision } of snapshot!.shards!) {
        const revisions = seen.filter((e) => e.shard === shard).map((e) => e.revision);
        expect(revisions[0]).toBe(revision + 1);
        expect(new Set(revisions).size).toBe(revisions.length);
        expect(revisions).toEqual([...revisions].sort((x, y) => x - y));
      }
      expect([...watch.resumeToken.keys()].sort()).toEqual([1, 2]);
    } finally {
      watch.close();
      await consumed;
      client.close();
      if (!(await cluster.healthy(follower).catch(() => false))) {
        cluster.startNode(follower);
        await cluster.waitForHealthy(follower);
      }
    }
    await metaAnsweredEverywhere();
    // dkv watch --prefix across shards: through dkv.v1, in each shard, printed as etcdctl prints.
    const cli = spawn(process.execPath, [dkvBin, 'watch', '/', '--prefix', '--progress-notify', '--endpoints', cluster.endpoint(other)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let printed = '';
    cli.stdout!.on('data', (chunk: Buffer) => (printed += chunk.toString()));
    cli.stderr!.on('data', (chunk: Buffer) => (printed += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => cli.once('exit', (code) => resolve(code)));
    try {
      // Written until seen: the watch starts from now once its stream is open.
      await waitUntil(() => {
        expect(ctl(other, 'put', '/users/cli', 'u').code).toBe(0);
        expect(ctl(other, 'put', '/cfg/cli', 'c').code).toBe(0);
        return printed.includes('PUT\n/users/cli\nu\n') && printed.includes('PUT\n/cfg/cli\nc\n');
      }, 20_000, () => `dkv watch printed: ${printed}`);
    } finally {
      cli.kill('SIGINT');
    }
    expect(await exited).toBe(0);
    // Each shard's start is not printed as a progress notification.
    expect(printed).not.toContain('progress notify');
    // The etcd Watch of such a range is refused, naming the dkv.v1 call.
    const refused = new WatchClient(cluster.endpoint(other));
    try {
      refused.create({ key: '/', rangeEnd: '0' });
      await refused.waitFor((r) => r.some((x) => x.created === true));
      expect(refused.responses[0]!.cancel_reason).toContain('dkv.v1.Watch/WatchPrefix');
    } finally {
      refused.close();
    }
  }, 120_000);

  it('brings the groups back from disk after a SIGKILL', async () => {
    // A follower of the store's shard and of the default store's (a leader's death is failover,
    // tested elsewhere; with three shards on three nodes it may lead the meta shard).
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
    // The node killed above is back: every member must reach the meta shard's leader again.
    await metaAnsweredEverywhere();
    // A watch of the store's keys ends with the store, saying why.
    const watch = new WatchClient(cluster.endpoint(1));
    watch.create({ key: '/users/alice', watchId: 3 });
    await watch.waitFor((r) => r.some((x) => x.created === true));
    const dropped = await admin(0, 'StoreDrop', { name: 'users' });
    expect(dropped.shard_ids).toEqual([2]);
    try {
      await watch.waitFor((r) => r.some((x) => x.canceled === true));
      expect(watch.responses.find((x) => x.canceled === true)!.cancel_reason).toBe(errorTable['watch-other-store'].message);
    } finally {
      watch.close();
    }
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

  it("gives a member added after a store was created the store's groups, filled by their leaders", async () => {
    const created = await admin(0, 'StoreCreate', { name: 'jobs', prefix: b('/jobs/'), shards: 2 });
    const ids = (created.shard_ids as Array<number | string>).map(Number);
    expect(ids).toHaveLength(2);
    // One key in each shard: they cut the prefix's range by the byte after it, and the second
    // key's is 0xc3 (ÿ in UTF-8).
    const second = ((await admin(0, 'StoreDescribe', { name: 'jobs' })).shards as Decoded[])[1]!.start as Buffer;
    expect(second[6]).toBeGreaterThan(1);
    expect(second[6]).toBeLessThanOrEqual(0xc3);
    expect(ctl(0, 'put', '/jobs/\x01', 'low').code).toBe(0);
    expect(ctl(0, 'put', '/jobs/\u00ff', 'high').code).toBe(0);
    const base = await freeBase(1);
    const peer = `http://127.0.0.1:${base + 1}`;
    const added = etcdctl(cluster.endpoints, ['member', 'add', 'dkv4', `--peer-urls=${peer}`]);
    expect(added.code, added.stderr).toBe(0);
    const initialCluster = /ETCD_INITIAL_CLUSTER="([^"]+)"/.exec(added.stdout)![1]!;
    const logFile = join(cluster.dir, 'dkv4.log');
    const flags = ['--name', 'dkv4', '--data-dir', join(cluster.dir, 'dkv4'), '--initial-cluster', initialCluster, '--initial-cluster-state', 'existing',
      '--initial-advertise-peer-urls', peer, '--listen-peer-urls', peer, '--listen-client-urls', `http://127.0.0.1:${base}`,
      '--advertise-client-urls', `http://127.0.0.1:${base}`, '--listen-metrics-urls', `http://127.0.0.1:${base + 2}`, '--log-file', logFile];
    const server = spawn(process.execPath, [dkvBin, 'server', ...flags], { stdio: 'ignore' });
    const endpoint = `127.0.0.1:${base}`;
    const log = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '(no log yet)');
    try {
      // The new member hosts every group (meta, the default store's, the store's two) and holds their data.
      const shardsOf = async (): Promise<number> => {
        const text = await (await fetch(`http://127.0.0.1:${base + 2}/metrics`)).text();
        return Number(text.split('\n').find((l) => l.startsWith('dkv_shards '))?.split(' ')[1]);
      };
      await waitUntil(() => shardsOf().then((n) => n === 4, () => false), 30_000, log);
      const serial = (key: string) => etcdctl(endpoint, ['get', key, '--print-value-only', '--consistency=s']).stdout.trim();
      await waitUntil(() => serial('/jobs/\u00ff') === 'high' && serial('/jobs/\x01') === 'low', 30_000, log);
      // A write through it commits, and every member reads it.
      await waitUntil(() => etcdctl(endpoint, ['put', '/jobs/\u00ff', 'via-dkv4']).code === 0, 30_000, log);
      for (const node of [0, 1, 2]) expect(value(node, '/jobs/\u00ff')).toBe('via-dkv4');
      const describe = await admin(0, 'StoreDescribe', { name: 'jobs' });
      expect((describe.shards as Decoded[]).map((s) => Number(s.id))).toEqual(ids);
    } finally {
      server.kill('SIGKILL');
    }
    const id = ((await channels[0]!.call('etcdserverpb.Cluster', 'MemberList', {})).members as Decoded[]).find((m) => m.name === 'dkv4')!.ID;
    await channels[0]!.call('etcdserverpb.Cluster', 'MemberRemove', { ID: id });
  }, 120_000);
});
