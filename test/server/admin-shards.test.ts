/**
 * dkv.v1.Admin's ShardList and ShardStatus on a real 3-node cluster, through `dkv shard` and
 * DkvClient.shards: the list names the meta shard, the default store's and a new store's shards
 * with their stores and ranges; `describe --cluster` asks every member, whose replicas agree on
 * the applied index once a write has settled, with exactly one leader; an unknown id exits 1 with
 * the server's NOT_FOUND message, a bad one exits 2 (under auth only root may call them:
 * admin-stores.test.ts). ShardCompact (`dkv compact --shard`, DkvClient.shards.compact) compacts
 * one store shard to its own revision on every replica and leaves the others' history, with
 * etcd's refusals. The pure parts and the handlers' refusals are test/server/shard-views.test.ts's.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Decoded, DkvClient, type EtcdChannel, grpcStatus, isDkvError } from '../../src/client/index.js';
import { b, failure } from './auth-harness.js';
import { TestCluster, etcdChannel, waitUntil } from './cluster-harness.js';

const dkvBin = join(import.meta.dirname, '..', '..', 'bin', 'dkv.js');

let cluster: TestCluster;
let nodes: EtcdChannel[] = [];
/** The ids of store "orders"'s two shards. */
let orders: number[] = [];

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
  nodes = [0, 1, 2].map((i) => etcdChannel(cluster.endpoint(i)));
  orders = (await nodes[0]!.call('dkv.v1.Admin', 'StoreCreate', { name: 'orders', prefix: b('orders/'), shards: 2 })).shard_ids as number[];
}, 60_000);

afterAll(async () => {
  for (const channel of nodes) channel.close();
  await cluster?.stop();
});

function dkv(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [dkvBin, 'shard', ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

interface JsonShard {
  id?: number;
  store: string;
  start?: string;
  end?: string;
  epoch?: number;
  leader?: number;
  raft_term?: number;
}

interface JsonStatus {
  Endpoint: string;
  Status: { header: { member_id: string | number }; shard_id: number; hosted?: boolean; raft_state: string; raft_term: number; leader: number; commit_index: number; applied_index: number; revision?: number; key_count?: number };
}

const base64 = (bytes: number[] | string): string => Buffer.from(typeof bytes === 'string' ? b(bytes) : bytes).toString('base64');

describe('dkv shard on a 3-node cluster', () => {
  it('lists the meta shard, the default store\'s and the new store\'s shards with their stores and ranges', () => {
    expect(orders).toEqual([2, 3]);
    const endpoints = `--endpoints=${cluster.endpoints}`;
    const listed = dkv('list', '-w', 'json', endpoints);
    expect(listed, listed.stderr).toMatchObject({ code: 0, stderr: '' });
    const shards = (JSON.parse(listed.stdout) as { shards: JsonShard[] }).shards.map(({ leader: _leader, raft_term: _term, ...shard }) => shard);
    // Go's JSON leaves zeros and empty bytes out: the meta shard has id 0, epoch 0 and an empty range.
    expect(shards).toEqual([
      { store: '(meta)' },
      { id: 1, store: 'default', epoch: 1 },
      { id: 2, store: 'orders', start: base64('orders/'), end: base64([...b('orders/'), 0x80]), epoch: 1 },
      { id: 3, store: 'orders', start: base64([...b('orders/'), 0x80]), end: base64('orders0'), epoch: 1 },
    ]);

    const simple = dkv('list', endpoints);
    expect(simple.code).toBe(0);
    // The last two columns: the leader and term as the answering node sees them.
    expect(simple.stdout.split('\n').map((line) => line.replace(/, (0|[0-9a-f]+), \d+$/, ''))).toEqual([
      '0, (meta), -, -, 0, all',
      '1, default, "", (end), 1, all',
      '2, orders, orders/, orders/\\x80, 1, all',
      '3, orders, orders/\\x80, orders0, 1, all',
      '',
    ]);
    const table = dkv('list', '-w', 'table', endpoints);
    expect(table.stdout).toMatch(/\|\s+SHARD\s+\|\s+STORE\s+\|\s+START\s+\|\s+END\s+\|\s+EPOCH\s+\|\s+REPLICAS\s+\|\s+LEADER\s+\|\s+RAFT TERM\s+\|/);
    expect(table.stdout).toMatch(/\|\s+0 \|\s+\(meta\) \|\s+- \|\s+- \|\s+0 \|\s+all \|\s+[0-9a-f]+ \|\s+[1-9]\d* \|/);
  }, 60_000);

  it('describes a store\'s shard on every member: the same applied index once a write settles, exactly one leader', async () => {
    const put = await nodes[1]!.kv('Put', { key: b('orders/a'), value: b('1') });
    const shard = String(orders[0]);
    let last: JsonStatus[] = [];
    const settled = (): boolean => {
      const described = dkv('describe', shard, '--cluster', '-w', 'json', `--endpoints=${cluster.endpoint(2)}`);
      if (described.code !== 0) return false;
      last = (JSON.parse(described.stdout) as { statuses: JsonStatus[] }).statuses;
      const applied = new Set(last.map((s) => s.Status.applied_index));
      return last.length === 3 && applied.size === 1 && last.every((s) => s.Status.key_count === 1) && last.filter((s) => s.Status.raft_state === 'leader').length === 1;
    };
    await waitUntil(settled, 20_000, () => `every member's replica of shard ${shard} alike: ${JSON.stringify(last)}`, 200);
    // One row per member, each its own (three member ids), all naming the one leader.
    expect(new Set(last.map((s) => String(s.Status.header.member_id))).size).toBe(3);
    expect(new Set(last.map((s) => s.Status.leader)).size).toBe(1);
    expect(new Set(last.map((s) => s.Endpoint))).toEqual(new Set(cluster.endpoints.split(',')));
    for (const { Status: s } of last) {
      expect(s).toMatchObject({ shard_id: orders[0], hosted: true, revision: Number((put.header as Decoded).revision) });
      expect(s.commit_index).toBeGreaterThanOrEqual(s.applied_index);
    }

    // Simple output: the map's row, then a row per endpoint.
    const simple = dkv('describe', shard, '--cluster', `--endpoints=${cluster.endpoint(0)}`);
    expect(simple, simple.stderr).toMatchObject({ code: 0, stderr: '' });
    const lines = simple.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^2, orders, orders\/, orders\/\\x80, 1, all, [0-9a-f]+, [1-9]\d*$/);
    for (const line of lines.slice(1)) expect(line).toMatch(/^127\.0\.0\.1:\d+, [0-9a-f]+, true, (leader|follower), false, [1-9]\d*, [0-9a-f]+, \d+, \d+, 2, 0, \d+(\.\d+)? [kM]?B, \d+(\.\d+)? [kM]?B, 1, -$/);
    // Without --cluster: the endpoints given, each on its own.
    const table = dkv('describe', shard, '-w', 'table', `--endpoints=${cluster.endpoint(1)}`);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/\|\s+ENDPOINT\s+\|\s+ID\s+\|\s+HOSTED\s+\|\s+RAFT STATE\s+\|/);
    expect(table.stdout.match(/\| 127\.0\.0\.1:\d+ \|/g)).toEqual([`| ${cluster.endpoint(1)} |`]);
    // Asked with hash_kv, each replica hashes its keys: the settled replicas agree, and a write
    // changes the hash; unasked, no hash.
    const hashes = async (): Promise<Array<{ applied: number; hash: number }>> =>
      Promise.all(nodes.map(async (node) => {
        const status = await node.call('dkv.v1.Admin', 'ShardStatus', { shard_id: orders[0], hash_kv: true });
        return { applied: Number(status.applied_index), hash: Number(status.hash_kv ?? 0) };
      }));
    let before: Array<{ applied: number; hash: number }> = [];
    await waitUntil(async () => {
      before = await hashes();
      return new Set(before.map((h) => h.applied)).size === 1;
    }, 20_000, () => `the replicas at one applied index: ${JSON.stringify(before)}`, 100);
    expect(new Set(before.map((h) => h.hash)).size, JSON.stringify(before)).toBe(1);
    expect(before[0]!.hash).toBeGreaterThan(0);
    expect(Number((await nodes[0]!.call('dkv.v1.Admin', 'ShardStatus', { shard_id: orders[0] })).hash_kv ?? 0)).toBe(0);
    await nodes[0]!.kv('Put', { key: b('orders/a'), value: b('2') }); // an overwrite: the key count stays 1
    let after: Array<{ applied: number; hash: number }> = [];
    await waitUntil(async () => {
      after = await hashes();
      return new Set(after.map((h) => h.applied)).size === 1 && after[0]!.applied > before[0]!.applied;
    }, 20_000, () => `the replicas apply the second write: ${JSON.stringify(after)}`, 100);
    expect(new Set(after.map((h) => h.hash)).size, JSON.stringify(after)).toBe(1);
    expect(after[0]!.hash).not.toBe(before[0]!.hash);
    // The same hash through `dkv shard describe --hash-kv` (JSON and the simple rows' last column) and DkvClient.
    const hashed = dkv('describe', shard, '--cluster', '--hash-kv', '-w', 'json', `--endpoints=${cluster.endpoint(0)}`);
    expect(hashed, hashed.stderr).toMatchObject({ code: 0, stderr: '' });
    expect((JSON.parse(hashed.stdout) as { statuses: Array<{ Status: { hash_kv?: number } }> }).statuses.map((s) => s.Status.hash_kv)).toEqual([after[0]!.hash, after[0]!.hash, after[0]!.hash]);
    const rows = dkv('describe', shard, '--hash-kv', `--endpoints=${cluster.endpoint(1)}`).stdout.trimEnd().split('\n');
    expect(rows[1]!.endsWith(`, -, ${after[0]!.hash}`), rows[1]).toBe(true);
    const client = new DkvClient({ servers: [{ address: cluster.endpoint(2) }] });
    try {
      expect((await client.shards.status(orders[0]!, { hashKv: true })).hashKv).toBe(after[0]!.hash);
      expect((await client.shards.status(orders[0]!)).hashKv).toBe(0);
    } finally {
      client.close();
    }
    expect(dkv('list', '--hash-kv', `--endpoints=${cluster.endpoint(0)}`)).toMatchObject({ code: 2, stderr: expect.stringMatching(/^dkv shard: --hash-kv applies to describe\n/) });
  }, 60_000);

  it('describes the meta shard: hosted everywhere, no store figures', () => {
    const described = dkv('describe', '0', '--cluster', '-w', 'json', `--endpoints=${cluster.endpoints}`);
    expect(described.code).toBe(0);
    const { shard, statuses } = JSON.parse(described.stdout) as { shard: JsonShard; statuses: JsonStatus[] };
    expect(shard.store).toBe('(meta)');
    expect(statuses).toHaveLength(3);
    for (const { Status: s } of statuses) {
      expect(s.hosted).toBe(true);
      expect(s.applied_index).toBeGreaterThan(0);
      expect(s.revision).toBeUndefined();
    }
  }, 30_000);

  it('exits 1 with the server\'s NOT_FOUND message for an unknown id, 2 for a bad or missing one', async () => {
    const endpoints = `--endpoints=${cluster.endpoints}`;
    expect(dkv('describe', '999', endpoints)).toMatchObject({ code: 1, stdout: '', stderr: "dkv shard: dkv: shard not found: no shard 999 in this node's map, and it hosts no group of it\n" });
    for (const bad of [['describe'], ['describe', 'abc'], ['describe', '-1'], ['describe', '9007199254740992'], ['describe', '1', '2'], ['list', '--cluster'], ['list', '1'], ['frobnicate']]) {
      const run = dkv(...bad, endpoints);
      expect(run.code, bad.join(' ')).toBe(2);
      expect(run.stderr, bad.join(' ')).toMatch(/^dkv shard: .*\n\nUsage: dkv shard list/);
    }
    // The service refuses what the CLI would not send: ids past 2^53.
    for (const id of ['9007199254740992', '18446744073709551615']) {
      expect(await failure(nodes[0]!.call('dkv.v1.Admin', 'ShardStatus', { shard_id: id }))).toMatchObject({ code: grpcStatus.INVALID_ARGUMENT, details: expect.stringMatching(/^dkv: invalid argument: shard id \d+ is not a safe integer/) });
    }
    const help = dkv('--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: dkv shard list \[options\]\n {7}dkv shard describe ID \[--cluster\] \[--hash-kv\] \[options\]\n/);
  }, 30_000);

  it('DkvClient.shards: list, and the answering server\'s replica of a shard', async () => {
    const client = new DkvClient({ servers: cluster.endpoints.split(',').map((address) => ({ address })) });
    try {
      const shards = await client.shards.list();
      expect(shards.map((s) => [s.id, s.store, s.end])).toEqual([
        [0, '(meta)', Buffer.alloc(0)],
        [1, 'default', undefined],
        [2, 'orders', Buffer.from([...b('orders/'), 0x80])],
        [3, 'orders', b('orders0')],
      ]);
      const status = await client.shards.status(orders[0]!);
      expect(status).toMatchObject({ shardId: orders[0], store: 'orders', hosted: true, keyCount: 1, alarms: [] });
      expect(status.memberId).toBeGreaterThan(0n);
      expect(['leader', 'follower']).toContain(status.raftState);
      const missing = await client.shards.status(999).catch((error: unknown) => error);
      expect(isDkvError(missing, 'NOT_FOUND')).toBe(true);
      const bad = await client.shards.status(2 ** 53).catch((error: unknown) => error);
      expect(isDkvError(bad, 'INVALID_ARGUMENT')).toBe(true);
    } finally {
      client.close();
    }
  }, 30_000);

  it('compacts one shard of a store to its own revision (dkv compact --shard, DkvClient.shards.compact), leaving the others', async () => {
    const endpoints = `--endpoints=${cluster.endpoints}`;
    const [first, second] = orders as [number, number];
    const key = Buffer.concat([b('orders/'), b('compacted')]); // the store's first shard
    const other = Buffer.concat([b('orders/'), Buffer.from([0x90]), b('kept')]); // its second
    const revs: number[] = [];
    for (let i = 0; i < 4; i++) revs.push(Number(((await nodes[0]!.call('etcdserverpb.KV', 'Put', { key, value: b(`v${i}`) })).header as Decoded).revision));
    const otherFirst = Number(((await nodes[0]!.call('etcdserverpb.KV', 'Put', { key: other, value: b('o1') })).header as Decoded).revision);
    await nodes[0]!.call('etcdserverpb.KV', 'Put', { key: other, value: b('o2') });
    const compactOf = async (node: number, id: number): Promise<number> => Number((await nodes[node]!.call('dkv.v1.Admin', 'ShardStatus', { shard_id: id })).compact_revision);
    const before = { second: await compactOf(0, second), default: await compactOf(0, 1) };

    const run = spawnSync(process.execPath, [dkvBin, 'compact', String(revs[2]), '--shard', String(first), endpoints], { encoding: 'utf8', timeout: 30_000 });
    expect({ code: run.status, stdout: run.stdout, stderr: run.stderr }).toEqual({ code: 0, stdout: `compacted revision ${revs[2]}\n`, stderr: '' });
    for (let node = 0; node < 3; node++) await waitUntil(async () => (await compactOf(node, first)) === revs[2], 10_000, () => `node ${node} applies the compaction`);
    // Reads before it are refused in that shard (a linearizable read waits for the compaction), at it they work.
    expect(await failure(nodes[1]!.call('etcdserverpb.KV', 'Range', { key, revision: revs[1] }))).toEqual({ code: grpcStatus.OUT_OF_RANGE, details: 'etcdserver: mvcc: required revision has been compacted' });
    const at = (await nodes[1]!.call('etcdserverpb.KV', 'Range', { key, revision: revs[2] })).kvs as Decoded[];
    expect(Buffer.from(at[0]!.value as Uint8Array).toString()).toBe('v2');
    // The store's other shard and the default store keep their history.
    expect({ second: await compactOf(0, second), default: await compactOf(0, 1) }).toEqual(before);
    const otherHistory = (await nodes[2]!.call('etcdserverpb.KV', 'Range', { key: other, revision: otherFirst })).kvs as Decoded[];
    expect(Buffer.from(otherHistory[0]!.value as Uint8Array).toString()).toBe('o1');

    // etcd's refusals, and DKV's for ids.
    const compact = (shard_id: number | string, revision: number | string) => failure(nodes[0]!.call('dkv.v1.Admin', 'ShardCompact', { shard_id, revision }));
    expect(await compact(first, revs[1]!)).toEqual({ code: grpcStatus.OUT_OF_RANGE, details: 'etcdserver: mvcc: required revision has been compacted' });
    expect(await compact(first, 1_000_000)).toEqual({ code: grpcStatus.OUT_OF_RANGE, details: 'etcdserver: mvcc: required revision is a future revision' });
    // Revisions past 2^53 as etcd's Compact takes them: above every revision, or below every one.
    expect(await compact(first, '9223372036854775807')).toEqual({ code: grpcStatus.OUT_OF_RANGE, details: 'etcdserver: mvcc: required revision is a future revision' });
    expect(await compact(first, '-9223372036854775808')).toEqual({ code: grpcStatus.OUT_OF_RANGE, details: 'etcdserver: mvcc: required revision has been compacted' });
    expect(await compact(0, 1)).toEqual({ code: grpcStatus.INVALID_ARGUMENT, details: 'dkv: invalid argument: shard 0 is the meta shard: it holds no keys to compact' });
    expect(await compact(999, 1)).toEqual({ code: grpcStatus.NOT_FOUND, details: 'dkv: shard not found: no shard 999 in the map' });
    expect(await compact('9007199254740992', 1)).toMatchObject({ code: grpcStatus.INVALID_ARGUMENT });
    for (const bad of [['--shard', '0'], ['--shard', 'x'], ['--shard', '']]) {
      const refused = spawnSync(process.execPath, [dkvBin, 'compact', '5', ...bad, endpoints], { encoding: 'utf8', timeout: 30_000 });
      expect({ bad, code: refused.status, stderr: refused.stderr }).toMatchObject({ bad, code: 2, stderr: expect.stringMatching(/^dkv compact: .*--shard/) });
    }

    // The client: to the shard's own revision; the header is that shard's.
    const client = new DkvClient({ servers: cluster.endpoints.split(',').map((address) => ({ address })) });
    try {
      const header = await client.shards.compact(first, revs[3]!);
      expect(header.revision).toBe(revs[3]);
      const again = await client.shards.compact(first, revs[3]!).catch((error: unknown) => error);
      expect(isDkvError(again)).toBe(true);
      expect((again as Error).message).toMatch(/required revision has been compacted/);
      await expect(client.shards.compact(0, 1)).rejects.toThrow(/data shard id/);
    } finally {
      client.close();
    }
  }, 60_000);
});
