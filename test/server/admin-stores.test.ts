/**
 * dkv.v1.Admin against a real 3-node cluster: a store created through one node is listed and
 * described alike by every node (each answers after a linearizable read of the meta shard); every
 * refusal arrives with its gRPC status and stable "dkv: …" message, the map's detail after it, and
 * changes nothing; a prefix under which the default store holds keys is refused until they are
 * gone; racing creates of one prefix leave exactly one store; a drop answers its shards' ids, and
 * ids are never given out again. Under auth only root may call it. `dkv store` prints and exits as
 * documented. Serving a store's keys is test/server/stores-serve.test.ts's.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Decoded, DkvClient, type EtcdChannel, grpcStatus, isDkvError } from '../../src/client/index.js';
import { b, denied, failure, login, passwords, secure } from './auth-harness.js';
import { TestCluster, etcdChannel, waitUntil } from './cluster-harness.js';

const dkvBin = join(import.meta.dirname, '..', '..', 'bin', 'dkv.js');

let cluster: TestCluster;
let nodes: EtcdChannel[] = [];

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
  nodes = [0, 1, 2].map((i) => etcdChannel(cluster.endpoint(i)));
}, 60_000);

afterAll(async () => {
  for (const channel of nodes) channel.close();
  await cluster?.stop();
});

const admin = (node: number, method: string, request: object = {}): Promise<Decoded> => nodes[node]!.call('dkv.v1.Admin', method, request);
const create = (node: number, name: string, prefix: string | Buffer, shards = 0): Promise<Decoded> =>
  admin(node, 'StoreCreate', { name, prefix: typeof prefix === 'string' ? b(prefix) : prefix, shards });
/** The stores as one node lists them: name, prefix (text) and shard count. */
const storesOn = async (node: number): Promise<Array<[string, string, number]>> =>
  ((await admin(node, 'StoreList')).stores as Decoded[]).map((s) => [String(s.name), Buffer.from(s.prefix as Uint8Array).toString('latin1'), Number(s.shard_count)]);
/** A store's shards as one node describes them, without the per-node view (leader, term). */
const mapOf = async (node: number, name: string): Promise<Decoded[]> =>
  ((await admin(node, 'StoreDescribe', { name })).shards as Decoded[]).map(({ leader: _leader, raft_term: _term, ...shard }) => shard);

function dkv(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  return dkvCommand('store', ...args);
}

function dkvShard(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  return dkvCommand('shard', ...args);
}

function dkvCommand(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [dkvBin, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('dkv.v1.Admin stores on a 3-node cluster', () => {
  it('creates a store through one node; every node then lists and describes it alike', async () => {
    expect(await storesOn(0)).toEqual([['default', '', 1]]);
    const created = await create(1, 'orders', 'orders/', 2);
    // The default store's shard is 1: the new ones take the next ids.
    expect(created).toMatchObject({ store: { name: 'orders', shard_count: 2 }, shard_ids: [2, 3] });
    expect(Buffer.from((created.store as Decoded).prefix as Uint8Array).toString()).toBe('orders/');
    expect((created.header as Decoded).cluster_id).not.toBe(0);
    for (const node of [0, 1, 2]) {
      expect(await storesOn(node), `node ${node}`).toEqual([['default', '', 1], ['orders', 'orders/', 2]]);
      const shards = await mapOf(node, 'orders');
      // Cut evenly by the byte after the prefix; the last ends where the prefix's keys end.
      expect(shards, `node ${node}`).toEqual([
        { id: 2, start: b('orders/'), end: Buffer.from([...b('orders/'), 0x80]), epoch: 1, replicas: [] },
        { id: 3, start: Buffer.from([...b('orders/'), 0x80]), end: b('orders0'), epoch: 1, replicas: [] },
      ]);
    }
    // The default store's shard: no end (the whole keyspace), and every node hosts its group, so
    // each names its leader and term (the same leader, a member of the cluster).
    const views = await Promise.all([0, 1, 2].map((node) => admin(node, 'StoreDescribe', { name: 'default' })));
    const leaders = new Set(views.map((v) => String((v.shards as Decoded[])[0]!.leader)));
    expect(leaders.size).toBe(1);
    const members = ((await nodes[0]!.call('etcdserverpb.Cluster', 'MemberList', {})).members as Decoded[]).map((m) => String(m.ID));
    expect(members).toContain([...leaders][0]);
    for (const view of views) {
      const [shard] = view.shards as Decoded[];
      expect(shard).toMatchObject({ id: 1, start: Buffer.alloc(0), epoch: 1, replicas: [] });
      expect(shard!.end).toBeUndefined();
      expect(Number(shard!.raft_term)).toBeGreaterThan(0);
    }
    // Every node hosts the new store's groups: each comes to name a leader and a term.
    for (const node of [0, 1, 2]) {
      await waitUntil(async () => ((await admin(node, 'StoreDescribe', { name: 'orders' })).shards as Decoded[]).every((s) => String(s.leader) !== '0' && Number(s.raft_term) > 0), 20_000);
    }
  }, 30_000);

  it('refuses bad and conflicting changes with stable codes, and changes nothing', async () => {
    const before = await storesOn(0);
    const cases: Array<[string, () => Promise<unknown>, number, RegExp]> = [
      ['prefix inside a store\'s', () => create(0, 'inner', 'orders/x'), grpcStatus.FAILED_PRECONDITION, /^dkv: store prefix overlaps another store's: prefix 6f72646572732f78 overlaps store "orders"/],
      ['prefix around a store\'s', () => create(1, 'outer', 'order'), grpcStatus.FAILED_PRECONDITION, /^dkv: store prefix overlaps another store's: .*store "orders"/],
      ['existing name', () => create(2, 'orders', 'elsewhere/'), grpcStatus.ALREADY_EXISTS, /^dkv: store already exists: store "orders" exists$/],
      ['the default store\'s name', () => create(0, 'default', 'd/'), grpcStatus.ALREADY_EXISTS, /^dkv: store already exists: /],
      ['bad name', () => create(0, 'Bad Name', 'bad/'), grpcStatus.INVALID_ARGUMENT, /^dkv: invalid store name: a store name is 1 to 63 of \[a-z0-9_-\]/],
      ['empty name', () => create(0, '', 'bad/'), grpcStatus.INVALID_ARGUMENT, /^dkv: invalid store name: /],
      ['name too long', () => create(0, 'n'.repeat(64), 'bad/'), grpcStatus.INVALID_ARGUMENT, /^dkv: invalid store name: /],
      ['empty prefix', () => create(0, 'empty', ''), grpcStatus.INVALID_ARGUMENT, /^dkv: invalid store prefix: store "empty" needs a non-empty prefix$/],
      ['prefix too long', () => create(0, 'long', 'p'.repeat(513)), grpcStatus.INVALID_ARGUMENT, /^dkv: invalid store prefix: a prefix is at most 512 bytes, got 513$/],
      ['257 shards', () => create(0, 'many', 'many/', 257), grpcStatus.INVALID_ARGUMENT, /^dkv: invalid shard count: a store starts with 1 to 256 shards, got 257$/],
      ['2^32 - 1 shards', () => create(0, 'many', 'many/', 2 ** 32 - 1), grpcStatus.INVALID_ARGUMENT, /^dkv: invalid shard count: .*got 4294967295$/],
      ['drop of the default store', () => admin(1, 'StoreDrop', { name: 'default' }), grpcStatus.INVALID_ARGUMENT, /^dkv: operation not allowed on the default store: the default store cannot be dropped$/],
      ['drop of an unknown store', () => admin(2, 'StoreDrop', { name: 'nosuch' }), grpcStatus.NOT_FOUND, /^dkv: store not found: no store "nosuch"$/],
      ['describe of an unknown store', () => admin(0, 'StoreDescribe', { name: 'nosuch' }), grpcStatus.NOT_FOUND, /^dkv: store not found: no store "nosuch"$/],
    ];
    for (const [what, call, code, message] of cases) {
      // One at a time: a refusal must leave the map as it was for the next.
      const refused = await failure(call());
      expect(refused.code, what).toBe(code);
      expect(refused.details, what).toMatch(message);
    }
    for (const node of [0, 1, 2]) expect(await storesOn(node)).toEqual(before);
  }, 30_000);

  it('takes 0 shards as 1', async () => {
    expect(await create(0, 'single', 'single/', 0)).toMatchObject({ store: { shard_count: 1 }, shard_ids: [4] });
    expect(await mapOf(1, 'single')).toEqual([{ id: 4, start: b('single/'), end: b('single0'), epoch: 1, replicas: [] }]);
  });

  it('refuses a prefix under which the default store holds keys, until they are gone', async () => {
    for (const key of ['used/a', 'used/b', 'usedz']) await nodes[0]!.kv('Put', { key: b(key), value: b('1') });
    const before = await storesOn(2);
    // Through another node than the puts: its count comes after a linearizable read.
    expect(await failure(create(2, 'used', 'used/'))).toEqual({
      code: grpcStatus.FAILED_PRECONDITION,
      details: 'dkv: the default store holds keys under the prefix: 2 keys under prefix "used/"; delete them or choose another prefix',
    });
    expect(await storesOn(1)).toEqual(before);
    await nodes[1]!.kv('DeleteRange', { key: b('used/a') });
    expect((await failure(create(2, 'used', 'used/'))).details).toContain(': 1 key under prefix "used/"; delete it');
    await nodes[1]!.kv('DeleteRange', { key: b('used/b') });
    // "usedz" is outside the prefix's keys.
    expect(await create(2, 'used', 'used/')).toMatchObject({ store: { name: 'used' } });
    // A prefix of bytes outside printable ASCII is named in hex.
    await nodes[0]!.kv('Put', { key: Buffer.from([0xff, 0xff, 1]), value: b('1') });
    expect((await failure(create(0, 'binary', Buffer.from([0xff, 0xff])))).details).toContain(': 1 key under prefix 0xffff;');
  }, 30_000);

  it('leaves exactly one store when creates of one prefix race through every node', async () => {
    const before = (await storesOn(0)).length;
    const results = await Promise.allSettled([0, 1, 2].map((node) => create(node, `race${node}`, 'race/')));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) {
      if (r.status === 'rejected') expect((r.reason as { details?: string }).details).toMatch(/^dkv: store prefix overlaps another store's: /);
    }
    for (const node of [0, 1, 2]) {
      const stores = await storesOn(node);
      expect(stores).toHaveLength(before + 1);
      expect(stores.filter(([, prefix]) => prefix === 'race/')).toHaveLength(1);
    }
  }, 30_000);

  it('drops a store: it answers the shards\' ids, every node stops listing it, and ids are never reused', async () => {
    expect(await admin(2, 'StoreDrop', { name: 'orders' })).toMatchObject({ shard_ids: [2, 3] });
    for (const node of [0, 1, 2]) {
      expect((await storesOn(node)).map(([name]) => name)).not.toContain('orders');
      expect((await failure(admin(node, 'StoreDescribe', { name: 'orders' }))).code).toBe(grpcStatus.NOT_FOUND);
    }
    expect((await failure(admin(0, 'StoreDrop', { name: 'orders' }))).code).toBe(grpcStatus.NOT_FOUND);
    // The store holding the highest ids, dropped and made again: the ids go on past the dropped ones.
    const first = (await create(1, 'tail', 'tail/', 2)).shard_ids as number[];
    expect(await admin(0, 'StoreDrop', { name: 'tail' })).toMatchObject({ shard_ids: first });
    const again = (await create(2, 'tail', 'tail/', 2)).shard_ids as number[];
    expect(again).toEqual([first[1]! + 1, first[1]! + 2]);
    expect(await admin(1, 'StoreDrop', { name: 'tail' })).toMatchObject({ shard_ids: again });
  }, 30_000);

  it('DkvClient.stores: create, list, describe, drop, with the server\'s refusals as DkvErrors', async () => {
    const client = new DkvClient({ servers: cluster.endpoints.split(',').map((address) => ({ address })) });
    try {
      const created = await client.stores.create('client', 'client/', { shards: 2 });
      expect(created.store).toEqual({ name: 'client', prefix: b('client/'), shardCount: 2, creating: false });
      expect((await client.stores.list()).find((s) => s.name === 'client')).toEqual(created.store);
      const { shards } = await client.stores.describe('client');
      // The leader and term as the answering node sees them (its groups may be electing still).
      expect(shards.map((s) => [s.id, s.start, s.end, s.epoch, s.replicas])).toEqual([
        [created.shardIds[0], b('client/'), Buffer.from([...b('client/'), 0x80]), 1, []],
        [created.shardIds[1], Buffer.from([...b('client/'), 0x80]), b('client0'), 1, []],
      ]);
      const [defaultShard] = (await client.stores.describe('default')).shards;
      expect(defaultShard!.end).toBeUndefined();
      expect(defaultShard!.leader).toBeGreaterThan(0n);
      const refused = await client.stores.create('client', 'other/').catch((error: unknown) => error);
      expect(isDkvError(refused, 'ALREADY_EXISTS')).toBe(true);
      expect(refused).toMatchObject({ serverCode: 'store-exists', serverMessage: 'dkv: store already exists: store "client" exists' });
      expect(await client.stores.drop('client')).toEqual(created.shardIds);
      expect(await client.stores.describe('client').catch((error: unknown) => (error as { code?: string }).code)).toBe('NOT_FOUND');
    } finally {
      client.close();
    }
  }, 30_000);

  it('dkv store: create, list, describe, drop in simple, json and table output; refusals exit 1; --help', async () => {
    const endpoints = `--endpoints=${cluster.endpoints}`;
    const help = dkv('--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: dkv store create NAME --prefix P \[--shards N\]/);
    expect(help.stdout).toContain('at most 256');

    const created = dkv('create', 'cli', '--prefix', 'cli/', '--shards', '3', endpoints);
    expect(created, created.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(created.stdout).toMatch(/^Store cli created on prefix cli\/ with shards (\d+), (\d+), (\d+)\n$/);
    const ids = created.stdout.match(/\d+/g)!.map(Number);

    const listed = dkv('list', endpoints);
    expect(listed.code).toBe(0);
    expect(listed.stdout.split('\n')).toContain('cli, cli/, 3, active');
    expect(listed.stdout.split('\n')[0]).toBe('default, "", 1, active');
    const table = dkv('list', '-w', 'table', endpoints);
    expect(table.stdout).toMatch(/\|\s+NAME\s+\|\s+PREFIX\s+\|\s+SHARDS\s+\|\s+STATE\s+\|/);
    expect(table.stdout).toMatch(/\|\s+cli \|\s+cli\/ \|\s+3 \|\s+active \|/);
    const json = JSON.parse(dkv('list', '-w', 'json', endpoints).stdout) as { stores: Array<{ name: string; prefix?: string; shard_count: number }> };
    expect(json.stores.find((s) => s.name === 'cli')).toEqual({ name: 'cli', prefix: b('cli/').toString('base64'), shard_count: 3 });
    expect(json.stores.find((s) => s.name === 'default')).toEqual({ name: 'default', shard_count: 1 });

    const described = dkv('describe', 'cli', endpoints);
    expect(described.code).toBe(0);
    // The last two columns: the leader and term as the answering node sees them (electing still, or elected).
    expect(described.stdout.split('\n').map((line) => line.replace(/, (0|[0-9a-f]+), \d+$/, ''))).toEqual(['cli, cli/, 3, active', `${ids[0]}, cli/, cli/U, 1, all`, `${ids[1]}, cli/U, cli/\\xaa, 1, all`, `${ids[2]}, cli/\\xaa, cli0, 1, all`, '']);
    const describedTable = dkv('describe', 'default', '-w', 'table', endpoints);
    expect(describedTable.stdout).toMatch(/\|\s+SHARD\s+\|\s+START\s+\|\s+END\s+\|\s+EPOCH\s+\|\s+REPLICAS\s+\|\s+LEADER\s+\|\s+RAFT TERM\s+\|/);
    expect(describedTable.stdout).toMatch(/\|\s+1 \|\s+"" \|\s+\(end\) \|\s+1 \|\s+all \|\s+[0-9a-f]+ \|\s+[1-9]\d* \|/);
    const describedJson = JSON.parse(dkv('describe', 'cli', '-w', 'json', endpoints).stdout) as { shards: Array<Record<string, unknown>> };
    const { leader: _leader, raft_term: _term, ...lastShard } = describedJson.shards[2]!;
    expect(lastShard).toEqual({ id: ids[2], start: Buffer.from([...b('cli/'), 0xaa]).toString('base64'), end: b('cli0').toString('base64'), epoch: 1 });

    const refused = dkv('create', 'cli', '--prefix', 'other/', endpoints);
    expect(refused).toMatchObject({ code: 1, stdout: '', stderr: 'dkv store: dkv: store already exists: store "cli" exists\n' });
    const usage = dkv('create', 'nopfx', endpoints);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('store create needs --prefix');
    expect(dkv('create', 'x', '--prefix', 'x/', '--shards', '257', endpoints).code).toBe(2);
    expect(dkv('frobnicate', endpoints).code).toBe(2);

    const dropped = dkv('drop', 'cli', endpoints);
    expect(dropped).toMatchObject({ code: 0, stdout: `Store cli dropped (shards ${ids.join(', ')})\n` });
    expect(dkv('list', endpoints).stdout).not.toContain('cli');
    expect(dkv('drop', 'default', endpoints)).toMatchObject({ code: 1, stderr: 'dkv store: dkv: operation not allowed on the default store: the default store cannot be dropped\n' });
  }, 60_000);
});

describe('dkv.v1.Admin under auth', () => {
  let secured: TestCluster;
  let channel: EtcdChannel;

  beforeAll(async () => {
    secured = await TestCluster.start({ nodes: 1 });
    channel = etcdChannel(secured.endpoint(0));
    await secure(channel);
  }, 60_000);

  afterAll(async () => {
    channel?.close();
    await secured?.stop();
  });

  it('lets root list and describe; refuses a user without the root role; no store is created while auth is on', async () => {
    const root = { token: await login(channel, 'root', passwords.root) };
    const alice = { token: await login(channel, 'alice', passwords.alice) };
    const call = (method: string, request: object, as: { token?: string }): Promise<Decoded> => channel.call('dkv.v1.Admin', method, request, as);
    expect(await failure(call('StoreCreate', { name: 'app', prefix: b('/app/'), shards: 1 }, alice))).toEqual(denied);
    expect(await failure(call('StoreList', {}, alice))).toEqual(denied);
    expect(await failure(call('StoreDescribe', { name: 'default' }, alice))).toEqual(denied);
    expect(await failure(call('StoreDrop', { name: 'default' }, alice))).toEqual(denied);
    expect(await failure(call('StoreList', {}, {}))).toMatchObject({ details: 'etcdserver: user name is empty' });
    expect(((await call('StoreList', {}, root)).stores as Decoded[]).map((s) => s.name)).toEqual(['default']);
    // Stores and auth exclude each other (only the default store's shard checks callers): the
    // default store does not cede a prefix while auth is on, and the mounted store is dropped again.
    expect(await failure(call('StoreCreate', { name: 'app', prefix: b('/app/'), shards: 1 }, root))).toMatchObject({
      code: grpcStatus.FAILED_PRECONDITION,
      details: expect.stringContaining('dkv: only the default store is served while authentication is enabled'),
    });
    expect(((await call('StoreList', {}, root)).stores as Decoded[]).map((s) => s.name)).toEqual(['default']);
    expect(await failure(call('StoreDrop', { name: 'app' }, alice))).toEqual(denied);
  }, 30_000);

  it('lets root list, describe and compact shards; refuses a user without the root role', async () => {
    const alice = { token: await login(channel, 'alice', passwords.alice) };
    const root = { token: await login(channel, 'root', passwords.root) };
    const call = (method: string, request: object, as: { token?: string }): Promise<Decoded> => channel.call('dkv.v1.Admin', method, request, as);
    expect(await failure(call('ShardList', {}, alice))).toEqual(denied);
    expect(await failure(call('ShardStatus', { shard_id: 1 }, alice))).toEqual(denied);
    expect(await failure(call('ShardStatus', { shard_id: 1 }, {}))).toMatchObject({ details: 'etcdserver: user name is empty' });
    expect(((await call('ShardList', {}, root)).shards as Decoded[]).map((s) => s.store)).toEqual(['(meta)', 'default']);
    expect(await call('ShardStatus', { shard_id: 1 }, root)).toMatchObject({ shard_id: 1, hosted: true, raft_state: 'leader' });
    // ShardCompact is root's too (etcd's own Compact checks no permission; this is an admin call).
    expect(await failure(call('ShardCompact', { shard_id: 1, revision: 1 }, alice))).toEqual(denied);
    expect(await call('ShardCompact', { shard_id: 1, revision: 1 }, root)).toMatchObject({ header: { revision: expect.anything() } });
    const endpoints = `--endpoints=${secured.endpoints}`;
    expect(dkvShard('describe', '1', '--user', `alice:${passwords.alice}`, endpoints)).toMatchObject({ code: 1, stderr: 'dkv shard: etcdserver: permission denied\n' });
    const described = dkvShard('describe', '1', '--user', `root:${passwords.root}`, endpoints);
    expect(described, described.stderr).toMatchObject({ code: 0 });
    expect(described.stdout.split('\n')[1]).toMatch(/^127\.0\.0\.1:\d+, [0-9a-f]+, true, leader, false, /);
  }, 30_000);
});
