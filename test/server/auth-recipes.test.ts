/**
 * Auth on the calls beyond etcd's KV: Election (Campaign, Leader, Proclaim, Observe, Resign), Lock
 * (Lock, Unlock), dkv.v1 KV's Txn and dkv.v1 Counter's Set and Delete, each allowed for alice
 * (whose role grants readwrite on /app/) and refused for bob (no role), against a real DKV node.
 * After every refused write the keys are read back as root: a refusal changes nothing. An Observe
 * stream whose reader loses the permission ends refused, as a Watch does. The refusals' statuses
 * are compared with etcd 3.4's at the end. The KV, lease and watch calls are test/server/auth.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Decoded, type EtcdChannel, type RpcError, methodCodec } from '../../src/client/etcd-channel.js';
import { b, denied, failure, login, passwords, recipeDenied, secure } from './auth-harness.js';
import { RealEtcd, TestCluster, etcdChannel, prefixEnd, waitUntil } from './cluster-harness.js';

interface LeaderKey {
  readonly name: Buffer;
  readonly key: Buffer;
  readonly rev: number;
  readonly lease: number;
}

describe('auth on Election, Lock, dkv.v1 Txn and counters: allowed with the grant, refused without', () => {
  let cluster: TestCluster;
  let channel: EtcdChannel;
  let alice: { token: string };
  let bob: { token: string };
  let root: { token: string };
  // Lease ids given by the test, below 2^53 (the channel decodes int64s as numbers).
  let nextLeaseId = 9001;

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 1 });
    channel = etcdChannel(cluster.endpoint(0));
    await secure(channel);
    alice = { token: await login(channel, 'alice', passwords.alice) };
    bob = { token: await login(channel, 'bob', passwords.bob) };
    root = { token: await login(channel, 'root', passwords.root) };
  }, 60_000);

  afterAll(async () => {
    channel?.close();
    await cluster?.stop();
  });

  /** A lease of the caller's own (a grant needs no permission). */
  const leaseOf = async (as: { token: string }): Promise<number> =>
    (await channel.call('etcdserverpb.Lease', 'LeaseGrant', { ID: nextLeaseId++, TTL: 60 }, as)).ID as number;

  /** Every key under `prefix` with its value, read as root. */
  const keysUnder = async (prefix: string): Promise<string[]> => {
    const kvs = (await channel.kv('Range', { key: b(prefix), range_end: prefixEnd(prefix) }, root)).kvs as Decoded[] | undefined;
    return (kvs ?? []).map((kv) => `${String(kv.key)}=${String(kv.value)}`);
  };

  /** Alice campaigns on `name` (nobody else does) and leads at once. */
  const aliceLeads = async (name: string, value: string): Promise<LeaderKey> => {
    const lease = await leaseOf(alice);
    const response = await channel.call('v3electionpb.Election', 'Campaign', { name: b(name), lease, value: b(value) }, alice);
    const leader = response.leader as { name: Uint8Array; key: Uint8Array; rev: number; lease: number };
    return { name: Buffer.from(leader.name), key: Buffer.from(leader.key), rev: leader.rev, lease: leader.lease };
  };

  /** An Observe stream's first answer; rejects with the stream's status if it fails first. */
  const firstObserved = (name: string, as: { token: string }): Promise<Decoded> => {
    const stream = channel.serverStream(methodCodec('v3electionpb.Election', 'Observe'), { name: b(name) }, as);
    return new Promise<Decoded>((resolve, reject) => {
      stream.on('data', (response: Decoded) => resolve(response));
      stream.on('error', (error: RpcError) => reject(error));
      stream.on('end', () => reject(new Error('Observe ended without an answer')));
    }).finally(() => stream.cancel());
  };

  const counterValue = async (key: string): Promise<Decoded> => channel.call('dkv.v1.Counter', 'Get', { key: b(key) }, root);

  it('Election Campaign and Leader: alice campaigns and reads the leader; bob can do neither', async () => {
    const leader = await aliceLeads('/app/e1', 'alice');
    expect(leader.key.toString()).toMatch(/^\/app\/e1\//);
    const read = await channel.call('v3electionpb.Election', 'Leader', { name: b('/app/e1') }, alice);
    expect(String((read.kv as { value: Uint8Array }).value)).toBe('alice');
    const bobsLease = await leaseOf(bob);
    expect(await failure(channel.call('v3electionpb.Election', 'Campaign', { name: b('/app/e1'), lease: bobsLease, value: b('bob') }, bob))).toEqual(recipeDenied);
    expect(await failure(channel.call('v3electionpb.Election', 'Leader', { name: b('/app/e1') }, bob))).toEqual(recipeDenied);
    // A campaign attaches its key to the lease, so the lease's other keys count (etcd's
    // checkLeasePuts): not on alice's lease that holds root's /secret.
    const shared = await leaseOf(alice);
    await channel.kv('Put', { key: b('/secret'), value: b('s'), lease: shared }, root);
    expect(await failure(channel.call('v3electionpb.Election', 'Campaign', { name: b('/app/e1'), lease: shared, value: b('again') }, alice))).toEqual(recipeDenied);
    // Neither bob nor that campaign joined the queue: alice's first key is the only one.
    expect(await keysUnder('/app/e1/')).toEqual([`${leader.key.toString()}=alice`]);
    await channel.call('etcdserverpb.Lease', 'LeaseRevoke', { ID: shared }, root);
  });

  it("Election Proclaim: alice replaces her value; bob, holding alice's leader key, may not", async () => {
    const leader = await aliceLeads('/app/e2', 'first');
    await channel.call('v3electionpb.Election', 'Proclaim', { leader, value: b('second') }, alice);
    expect(await keysUnder('/app/e2/')).toEqual([`${leader.key.toString()}=second`]);
    expect(await failure(channel.call('v3electionpb.Election', 'Proclaim', { leader, value: b('bob') }, bob))).toEqual(recipeDenied);
    expect(await keysUnder('/app/e2/')).toEqual([`${leader.key.toString()}=second`]);
  });

  it('Election Observe: alice sees the leader; bob\'s stream ends refused', async () => {
    const leader = await aliceLeads('/app/e3', 'seen');
    const observed = await firstObserved('/app/e3', alice);
    expect(Buffer.from((observed.kv as { key: Uint8Array }).key).equals(leader.key)).toBe(true);
    expect(String((observed.kv as { value: Uint8Array }).value)).toBe('seen');
    expect(await failure(firstObserved('/app/e3', bob))).toEqual(recipeDenied);
  });

  // Revokes alice's role for a moment: the other tests run before or after, never during.
  it("Election Observe: alice's stream ends refused once her role is revoked, before the next value reaches her", async () => {
    const leader = await aliceLeads('/app/e5', 'before');
    const stream = channel.serverStream(methodCodec('v3electionpb.Election', 'Observe'), { name: b('/app/e5') }, alice);
    const seen: string[] = [];
    let ended: { code: number | undefined; details: string } | undefined;
    stream.on('data', (response: Decoded) => seen.push(String((response.kv as { value: Uint8Array }).value)));
    stream.on('error', (error: RpcError) => (ended = { code: error.code, details: error.details ?? error.message }));
    try {
      await waitUntil(() => seen.length === 1, 10_000, () => `the first leader, saw ${JSON.stringify(seen)}`);
      await channel.call('etcdserverpb.Auth', 'UserRevokeRole', { name: 'alice', role: 'app' }, root);
      await channel.call('v3electionpb.Election', 'Proclaim', { leader, value: b('after') }, root);
      await waitUntil(() => ended !== undefined, 10_000, () => `the stream ended, saw ${JSON.stringify(seen)}`);
      expect(ended).toEqual(recipeDenied);
      expect(seen).toEqual(['before']);
    } finally {
      stream.cancel();
      await channel.call('etcdserverpb.Auth', 'UserGrantRole', { user: 'alice', role: 'app' }, root);
    }
  });

  it("Election Resign: bob cannot resign alice's leadership; alice can", async () => {
    const leader = await aliceLeads('/app/e4', 'alice');
    expect(await failure(channel.call('v3electionpb.Election', 'Resign', { leader }, bob))).toEqual(recipeDenied);
    expect(await keysUnder('/app/e4/')).toEqual([`${leader.key.toString()}=alice`]);
    await channel.call('v3electionpb.Election', 'Resign', { leader }, alice);
    expect(await keysUnder('/app/e4/')).toEqual([]);
  });

  it("Lock Lock and Unlock: alice locks and unlocks; bob can neither lock nor unlock alice's key", async () => {
    const held = await channel.call('v3lockpb.Lock', 'Lock', { name: b('/app/lock'), lease: await leaseOf(alice) }, alice);
    const key = Buffer.from(held.key as Uint8Array);
    expect(key.toString()).toMatch(/^\/app\/lock\//);
    const bobsLease = await leaseOf(bob);
    expect(await failure(channel.call('v3lockpb.Lock', 'Lock', { name: b('/app/lock'), lease: bobsLease }, bob))).toEqual(recipeDenied);
    expect(await failure(channel.call('v3lockpb.Lock', 'Unlock', { key }, bob))).toEqual(recipeDenied);
    expect(await keysUnder('/app/lock/')).toEqual([`${key.toString()}=`]);
    await channel.call('v3lockpb.Lock', 'Unlock', { key }, alice);
    expect(await keysUnder('/app/lock/')).toEqual([]);
  });

  it('dkv.v1 Txn: alice writes within /app/ (with a TTL); bob cannot; nor can alice outside it or fenced by a key she may not read (nor Put)', async () => {
    const txn = (key: string, extra: object = {}): object => ({
      txn: { compare: [{ key: b(key), target: 0, result: 0, version: 0 }], success: [{ request_put: { key: b(key), value: b('v') } }] },
      ttls: [{ key: b(key), ttl_ms: 60_000 }],
      ...extra,
    });
    expect((await channel.call('dkv.v1.KV', 'Txn', txn('/app/t1'), alice)).succeeded).toBe(true);
    expect(await failure(channel.call('dkv.v1.KV', 'Txn', txn('/app/t2'), bob))).toEqual(denied);
    expect(await failure(channel.call('dkv.v1.KV', 'Txn', txn('/other/t3'), alice))).toEqual(denied);
    // A fence reads its key: /fence holds (its create revision is the token), but alice may not read it.
    const fenceRevision = (await channel.kv('Put', { key: b('/fence'), value: b('f') }, root)).header as { revision: number };
    const fence = { fence: { key: b('/fence'), token: fenceRevision.revision } };
    expect(await failure(channel.call('dkv.v1.KV', 'Txn', txn('/app/t4', fence), alice))).toEqual(denied);
    expect((await channel.call('dkv.v1.KV', 'Txn', txn('/app/t5', fence), root)).succeeded).toBe(true);
    // dkv.v1 Put reads its fence's key the same way.
    expect(await failure(channel.call('dkv.v1.KV', 'Put', { key: b('/app/t6'), value: b('v'), ...fence }, alice))).toEqual(denied);
    expect(await keysUnder('/app/t')).toEqual(['/app/t1=v', '/app/t5=v']);
    expect(await keysUnder('/other/')).toEqual([]);
  });

  it('dkv.v1 Counter Set: alice sets a counter in /app/; bob cannot, nor can alice outside it', async () => {
    expect((await channel.call('dkv.v1.Counter', 'Set', { key: b('/app/c1'), value: 5 }, alice)).value).toBe(5);
    expect(await failure(channel.call('dkv.v1.Counter', 'Set', { key: b('/app/c1'), value: 9 }, bob))).toEqual(denied);
    expect(await failure(channel.call('dkv.v1.Counter', 'Set', { key: b('/other/c'), value: 9 }, alice))).toEqual(denied);
    expect(await counterValue('/app/c1')).toMatchObject({ value: 5, exists: true });
    expect(await counterValue('/other/c')).toMatchObject({ exists: false });
  });

  it("dkv.v1 Counter Delete: bob cannot delete alice's counter, nor alice root's; alice deletes hers", async () => {
    await channel.call('dkv.v1.Counter', 'Set', { key: b('/app/c2'), value: 7 }, alice);
    await channel.call('dkv.v1.Counter', 'Set', { key: b('/other/c2'), value: 3 }, root);
    expect(await failure(channel.call('dkv.v1.Counter', 'Delete', { key: b('/app/c2') }, bob))).toEqual(denied);
    expect(await failure(channel.call('dkv.v1.Counter', 'Delete', { key: b('/other/c2') }, alice))).toEqual(denied);
    expect(await counterValue('/app/c2')).toMatchObject({ value: 7, exists: true });
    expect(await counterValue('/other/c2')).toMatchObject({ value: 3, exists: true });
    expect((await channel.call('dkv.v1.Counter', 'Delete', { key: b('/app/c2') }, alice)).deleted).toBe(true);
    expect(await counterValue('/app/c2')).toMatchObject({ exists: false });
  });
});

/** Bob's Lock and Election calls on alice's names, each as "code: details" or "ok". */
async function bobsRecipeCalls(endpoint: string): Promise<Record<string, string>> {
  const channel = etcdChannel(endpoint);
  try {
    await secure(channel);
    const alice = { token: await login(channel, 'alice', passwords.alice) };
    const bob = { token: await login(channel, 'bob', passwords.bob) };
    const outcome = (call: Promise<unknown>): Promise<string> =>
      call.then(
        () => 'ok',
        (error: RpcError) => `${error.code}: ${error.details}`,
      );
    const alicesLease = (await channel.call('etcdserverpb.Lease', 'LeaseGrant', { ID: 5001, TTL: 60 }, alice)).ID as number;
    const bobsLease = (await channel.call('etcdserverpb.Lease', 'LeaseGrant', { ID: 5002, TTL: 60 }, bob)).ID as number;
    const leader = (await channel.call('v3electionpb.Election', 'Campaign', { name: b('/app/e'), lease: alicesLease, value: b('a') }, alice)).leader as object;
    const lock = await channel.call('v3lockpb.Lock', 'Lock', { name: b('/app/l'), lease: alicesLease }, alice);
    return {
      Campaign: await outcome(channel.call('v3electionpb.Election', 'Campaign', { name: b('/app/e'), lease: bobsLease, value: b('b') }, bob)),
      Leader: await outcome(channel.call('v3electionpb.Election', 'Leader', { name: b('/app/e') }, bob)),
      Proclaim: await outcome(channel.call('v3electionpb.Election', 'Proclaim', { leader, value: b('b') }, bob)),
      Resign: await outcome(channel.call('v3electionpb.Election', 'Resign', { leader }, bob)),
      Lock: await outcome(channel.call('v3lockpb.Lock', 'Lock', { name: b('/app/l'), lease: bobsLease }, bob)),
      Unlock: await outcome(channel.call('v3lockpb.Lock', 'Unlock', { key: lock.key }, bob)),
      // etcd's Observe swallows its inner Get's error: the stream ends with OK and no answer.
      // DKV ends it refused instead (a silent end reads as "no leader yet, stream over").
      Observe: await outcome(
        new Promise((resolve, reject) => {
          const stream = channel.serverStream(methodCodec('v3electionpb.Election', 'Observe'), { name: b('/app/e') }, bob);
          stream.on('data', (response: Decoded) => {
            stream.cancel();
            resolve(response);
          });
          stream.on('error', reject);
          stream.on('end', () => reject({ code: 0, details: 'ended without an answer' }));
        }),
      ),
    };
  } finally {
    channel.close();
  }
}

describe('Lock and Election refusals, DKV against etcd 3.4', () => {
  it('refuses each call of a user without the permission with etcd\'s status and message', async () => {
    const [etcd, cluster] = await Promise.all([RealEtcd.start(), TestCluster.start({ nodes: 1 })]);
    try {
      const [expected, actual] = await Promise.all([bobsRecipeCalls(etcd.endpoint), bobsRecipeCalls(cluster.endpoint(0))]);
      const refused = `${recipeDenied.code}: ${recipeDenied.details}`;
      expect(expected).toEqual({ Campaign: refused, Leader: refused, Proclaim: refused, Resign: refused, Lock: refused, Unlock: refused, Observe: '0: ended without an answer' });
      expect(actual).toEqual({ ...expected, Observe: refused });
    } finally {
      await Promise.all([etcd.stop(), cluster.stop()]);
    }
  });
});
