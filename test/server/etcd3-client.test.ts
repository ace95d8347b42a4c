/**
 * The `etcd3` npm client (microsoft/etcd3, on grpc-js with its own copy of etcd's protos) against
 * a real 3-node cluster of `dkv server` processes: the operations of the etcdctl suite, through a
 * second, independent client implementation.
 */
import { Etcd3, GRPCInvalidArgumentError, GRPCOutOfRangeError } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, waitUntil } from './cluster-harness.js';

let cluster: TestCluster;
let client: Etcd3;
/** One client per node, for reads that must come from that node. */
let perNode: Etcd3[] = [];

const connect = (hosts: string[]) => new Etcd3({ hosts, dialTimeout: 5000 });

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
  client = connect(cluster.nodes.map((n) => n.clientUrl));
  perNode = cluster.nodes.map((n) => connect([n.clientUrl]));
}, 60_000);

afterAll(async () => {
  client?.close();
  for (const c of perNode) c.close();
  await cluster?.stop();
});

describe('the etcd3 npm client against a 3-node DKV cluster', () => {
  it('puts and gets as string, buffer, json and number, with the key metadata', async () => {
    const put = await client.put('foo').value('bar');
    expect(Number(put.header.revision)).toBeGreaterThan(0);
    expect(await client.get('foo').string()).toBe('bar');
    expect((await client.get('foo').buffer())?.equals(Buffer.from('bar'))).toBe(true);
    await client.put('json').value(JSON.stringify({ a: [1, 2] }));
    expect(await client.get('json').json()).toEqual({ a: [1, 2] });
    await client.put('number').value(42);
    expect(await client.get('number').number()).toBe(42);
    expect(await client.get('missing').string()).toBeNull();

    const range = await client.get('foo').exec();
    expect(range.count).toBe('1');
    const kv = range.kvs[0]!;
    expect(kv.key.toString()).toBe('foo');
    expect(kv.version).toBe('1');
    expect(kv.create_revision).toBe(kv.mod_revision);
    expect(kv.mod_revision).toBe(put.header.revision);
    expect(BigInt(range.header.cluster_id)).toBeGreaterThan(0n);
    expect(BigInt(range.header.member_id)).toBeGreaterThan(0n);
    expect(Number(range.header.raft_term)).toBeGreaterThan(0);
  });

  it('reads the same value from every node, linearizable and serializable', async () => {
    await client.put('everywhere').value('yes');
    for (const node of perNode) {
      expect(await node.get('everywhere').string()).toBe('yes');
      const serializable = await node.kv.range({ key: Buffer.from('everywhere'), serializable: true });
      expect(serializable.kvs[0]?.value.toString()).toBe('yes');
    }
  });

  it('gets all keys of a prefix, with limit, sort, keys, count and revision filters', async () => {
    for (const [k, v] of [['p/a', '3'], ['p/b', '1'], ['p/c', '2'], ['q', 'x']] as const) await client.put(k).value(v);
    expect(await client.getAll().prefix('p/').strings()).toEqual({ 'p/a': '3', 'p/b': '1', 'p/c': '2' });
    expect(await client.getAll().prefix('p/').keys()).toEqual(['p/a', 'p/b', 'p/c']);
    expect(await client.getAll().prefix('p/').count()).toBe(3);
    expect(await client.getAll().prefix('p/').limit(2).keys()).toEqual(['p/a', 'p/b']);
    expect(await client.getAll().prefix('p/').sort('Value', 'Descend').strings()).toEqual({ 'p/a': '3', 'p/c': '2', 'p/b': '1' });
    expect(Object.keys(await client.getAll().prefix('p/').sort('Value', 'Descend').strings())).toEqual(['p/a', 'p/c', 'p/b']);
    expect(await client.getAll().prefix('p/').sort('Key', 'Descend').limit(2).keys()).toEqual(['p/c', 'p/b']);
    const limited = await client.getAll().prefix('p/').limit(1).exec();
    expect([limited.count, limited.more, limited.kvs.length]).toEqual(['3', true, 1]);
    expect(await client.getAll().inRange({ start: 'p/b', end: 'q' }).keys()).toEqual(['p/b', 'p/c']);

    const bRevision = Number((await client.get('p/b').exec()).kvs[0]!.mod_revision);
    expect(await client.getAll().prefix('p/').minModRevision(bRevision).keys()).toEqual(['p/b', 'p/c']);
    expect(await client.getAll().prefix('p/').maxModRevision(bRevision).keys()).toEqual(['p/a', 'p/b']);
  });

  // Regression (found by this suite): keys_only used to drop the values before the sort, so a
  // sort by value returned key order. etcd sorts first and clears values after: etcdctl `get p/
  // --prefix --sort-by=VALUE --order=DESCEND --keys-only` against etcd 3.4.23 prints p/a, p/c, p/b.
  it('sorts by value when only keys are asked for (etcd3 keys() sets keys_only)', async () => {
    for (const [k, v] of [['sv/a', '3'], ['sv/b', '1'], ['sv/c', '2']] as const) await client.put(k).value(v);
    expect(await client.getAll().prefix('sv/').sort('Value', 'Descend').keys()).toEqual(['sv/a', 'sv/c', 'sv/b']);
    expect(await client.getAll().prefix('sv/').sort('Value', 'Ascend').limit(2).keys()).toEqual(['sv/b', 'sv/c']);
  });

  it('reads at a past revision', async () => {
    const first = await client.put('rev').value('one');
    await client.put('rev').value('two');
    expect(await client.get('rev').revision(first.header.revision).string()).toBe('one');
    expect(await client.get('rev').string()).toBe('two');
  });

  it('puts with the previous value and deletes with prevKv, by key and by prefix', async () => {
    await client.put('d/1').value('a');
    const previous = await client.put('d/1').value('a2').getPrevious();
    expect(previous.value.toString()).toBe('a');
    await client.put('d/2').value('b');
    const deleted = await client.delete().key('d/1').getPrevious();
    expect(deleted.map((kv) => [kv.key.toString(), kv.value.toString()])).toEqual([['d/1', 'a2']]);
    const byPrefix = await client.delete().prefix('d/').exec();
    expect(byPrefix.deleted).toBe('1');
    expect((await client.delete().key('nothing-here').exec()).deleted).toBe('0');
    expect(await client.getAll().prefix('d/').count()).toBe(0);
  });

  it('runs a txn on both branches with if().then().else()', async () => {
    await client.put('tx').value('v1');
    const success = await client.if('tx', 'Value', '==', 'v1')
      .then(client.put('tx').value('v2'), client.put('tx-side').value('yes'))
      .else(client.get('tx'))
      .commit();
    expect(success.succeeded).toBe(true);
    // The client decodes with `oneofs: true`, which names the set field in `response`.
    expect(success.responses.map((r) => (r as { response?: string }).response)).toEqual(['response_put', 'response_put']);
    expect(await client.get('tx').string()).toBe('v2');

    const failure = await client.if('tx', 'Value', '==', 'v1')
      .and('tx-side', 'Version', '>', 0)
      .then(client.put('tx').value('v3'))
      .else(client.get('tx'))
      .commit();
    expect(failure.succeeded).toBe(false);
    const range = failure.responses[0]!.response_range!;
    expect(range.kvs.map((kv) => kv.value.toString())).toEqual(['v2']);

    const created = await client.if('tx-new', 'Create', '==', 0).then(client.put('tx-new').value('made')).commit();
    expect(created.succeeded).toBe(true);
    const again = await client.if('tx-new', 'Create', '==', 0).then(client.put('tx-new').value('twice')).commit();
    expect(again.succeeded).toBe(false);
    expect(await client.get('tx-new').string()).toBe('made');

    await expect(client.if('tx', 'Value', '==', 'v2').then(client.put('dup').value('a'), client.put('dup').value('b')).commit())
      .rejects.toThrow('etcdserver: duplicate key given in txn request');
  });

  it('compacts, then refuses reads of compacted and future revisions', async () => {
    const r1 = await client.put('c').value('1');
    const r2 = await client.put('c').value('2');
    await client.kv.compact({ revision: r2.header.revision, physical: true });
    const compacted = client.get('c').revision(r1.header.revision).string();
    await expect(compacted).rejects.toBeInstanceOf(GRPCOutOfRangeError);
    await expect(client.get('c').revision(r1.header.revision).string()).rejects.toThrow('etcdserver: mvcc: required revision has been compacted');
    await expect(client.get('c').revision(1_000_000_000).string()).rejects.toThrow('etcdserver: mvcc: required revision is a future revision');
    expect(await client.get('c').revision(r2.header.revision).string()).toBe('2');
  });

  it('refuses an empty key and an oversized value with etcd errors', async () => {
    await expect(client.put('').value('x')).rejects.toBeInstanceOf(GRPCInvalidArgumentError);
    await expect(client.put('').value('x')).rejects.toThrow('etcdserver: key is not provided');
    const big = connect([cluster.nodes[0]!.clientUrl]);
    try {
      await expect(big.put('big').value(Buffer.alloc(1_600_000, 0x61))).rejects.toThrow('etcdserver: request is too large');
    } finally {
      big.close();
    }
    expect(await client.get('foo').string()).toBe('bar');
  });

  it('lists members with names and URLs', async () => {
    const list = await client.cluster.memberList({});
    expect(list.members.map((m) => m.name).sort()).toEqual(['dkv1', 'dkv2', 'dkv3']);
    for (const member of list.members) {
      const node = cluster.nodes.find((n) => n.name === member.name)!;
      expect(member.peerURLs).toEqual([node.peerUrl]);
      expect(member.clientURLs).toEqual([node.clientUrl]);
      expect(member.isLearner).toBe(false);
      expect(BigInt(member.ID)).toBeGreaterThan(0n);
    }
    expect(new Set(list.members.map((m) => m.ID)).size).toBe(3);
  });

  it('reports maintenance status with one leader, and equal hashes on every node', async () => {
    const statuses = await Promise.all(perNode.map((node) => node.maintenance.status()));
    const ids = statuses.map((s) => s.header.member_id);
    expect(new Set(ids).size).toBe(3);
    expect(new Set(statuses.map((s) => s.leader)).size).toBe(1);
    expect(ids).toContain(statuses[0]!.leader);
    for (const s of statuses) {
      expect(s.version).toMatch(/^3\.\d+\.\d+/);
      expect(Number(s.raftTerm)).toBeGreaterThan(0);
      expect(Number(s.raftIndex)).toBeGreaterThan(0);
      expect(s.isLearner).toBe(false);
    }
    // etcd3 1.1.2 cannot call HashKV (it asks grpc-js for `hashKV`, which proto-loader names
    // `hashKv`), so the whole-store Hash stands in: equal on every node once all have applied
    // the last put (a follower may apply it a moment after the put is acknowledged).
    const last = await client.put('hash-point').value('x');
    await waitUntil(async () => {
      const revisions = await Promise.all(perNode.map((node) => node.kv.range({ key: Buffer.from('hash-point'), serializable: true })));
      return revisions.every((r) => r.header.revision === last.header.revision);
    }, 10_000, () => `every node at revision ${last.header.revision}`);
    const hashes = await Promise.all(perNode.map((node) => node.maintenance.hash()));
    expect(new Set(hashes.map((h) => h.hash)).size).toBe(1);
    const alarms = await client.maintenance.alarm({ action: 'Get', memberID: 0, alarm: 'None' });
    expect(alarms.alarms).toEqual([]);
  });
});

describe('the etcd3 client’s leases', () => {
  it('grants, attaches keys, keeps alive on its own, and revokes (keys deleted)', async () => {
    const lease = client.lease(3);
    const id = await lease.grant();
    expect(BigInt(id)).toBeGreaterThan(0n);
    await lease.put('e3lease/a').value('1');
    await lease.put('e3lease/b').value('2');
    const kv = (await client.get('e3lease/a').exec()).kvs[0]!;
    expect(kv.lease).toBe(id);
    const once = await lease.keepaliveOnce();
    expect([once.ID, once.TTL]).toEqual([id, '3']);
    // The client's own keep-alive loop (every TTL/3) holds the lease past several TTLs.
    let succeeded = 0;
    lease.on('keepaliveSucceeded', () => succeeded++);
    await waitUntil(() => succeeded >= 6, 15_000, () => `six keep-alives (got ${succeeded})`);
    expect(await client.get('e3lease/a').string()).toBe('1');
    await lease.revoke();
    expect(await client.getAll().prefix('e3lease/').keys()).toEqual([]);
  }, 30_000);

  it('loses a lease that is revoked elsewhere, and a put with it then fails', async () => {
    const lease = client.lease(10, { autoKeepAlive: false });
    const id = await lease.grant();
    await client.lease(10, { autoKeepAlive: false }); // an unrelated lease object must not matter
    await perNode[1]!.leaseClient.leaseRevoke({ ID: id });
    await expect(lease.put('e3lease/c').value('x')).rejects.toThrow(/requested lease not found/);
    const ttl = await perNode[2]!.leaseClient.leaseTimeToLive({ ID: id, keys: false });
    expect(ttl.TTL).toBe('-1');
  });
});
