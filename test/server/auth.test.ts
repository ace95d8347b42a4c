/**
 * Auth on a real 3-node cluster, call by call: each gRPC call a user may make, allowed and
 * refused (etcd's statuses and strings), watchers canceled once their reader loses the
 * permission, root-only calls, tokens (accepted by every member, invalidated by a password
 * change, rate-limited logins), and a JWT cluster whose tokens go stale with any auth change.
 * The etcdctl session against etcd itself is test/server/auth-differential.test.ts.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Decoded, type EtcdChannel, type RpcError, grpcStatus, methodCodec } from '../../src/client/etcd-channel.js';
import { b, denied, failure, login, permissionDenied, recipeDenied, secure } from './auth-harness.js';
import { TestCluster, etcdChannel, waitUntil } from './cluster-harness.js';

const watchDenied = `rpc error: code = PermissionDenied desc = ${permissionDenied}`;

describe('auth on a 3-node cluster', () => {
  let cluster: TestCluster;
  let channel: EtcdChannel;
  let alice: string;
  let root: string;

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3 });
    channel = etcdChannel(cluster.endpoint(0));
    await secure(channel);
    alice = await login(channel, 'alice', 'alicepw');
    root = await login(channel, 'root', 'rootpw');
  }, 60_000);

  afterAll(async () => {
    channel?.close();
    await cluster?.stop();
  });

  it('checks every KV call: allowed within the grants, refused outside, no token or a bad one refused', async () => {
    const as = { token: alice };
    await channel.kv('Put', { key: b('/app/x'), value: b('1') }, as);
    expect((await channel.kv('Range', { key: b('/app/x') }, as)).count).toBe(1);
    expect((await channel.kv('Range', { key: b('/cfg') }, as)).count).toBe(0);
    expect(await failure(channel.kv('Put', { key: b('/cfg'), value: b('1') }, as))).toEqual(denied);
    expect(await failure(channel.kv('Range', { key: b('/other') }, as))).toEqual(denied);
    expect(await failure(channel.kv('Range', { key: b('/app/'), range_end: b('/b') }, as))).toEqual(denied);
    expect(await failure(channel.kv('DeleteRange', { key: b('/other') }, as))).toEqual(denied);
    const txn = (key: string): object => ({ compare: [{ key: b('/cfg'), target: 0, result: 0, version: 0 }], success: [{ request_put: { key: b(key), value: b('t') } }] });
    expect((await channel.kv('Txn', txn('/app/t'), as)).succeeded).toBe(true);
    expect(await failure(channel.kv('Txn', txn('/other'), as))).toEqual(denied);
    // A read-only txn is served without the log: checked at the edge.
    expect(await failure(channel.kv('Txn', { success: [{ request_range: { key: b('/other') } }] }, as))).toEqual(denied);
    expect((await channel.kv('DeleteRange', { key: b('/app/t') }, as)).deleted).toBe(1);
    expect(await failure(channel.kv('Range', { key: b('/app/x') }))).toEqual({ code: grpcStatus.INVALID_ARGUMENT, details: 'etcdserver: user name is empty' });
    expect(await failure(channel.kv('Range', { key: b('/app/x') }, { token: 'nope.1' }))).toEqual({ code: grpcStatus.UNAUTHENTICATED, details: 'etcdserver: invalid auth token' });
    // Nothing refused changed anything: the replicas agree on the store.
    const hashes = await Promise.all([0, 1, 2].map(async (i) => {
      const member = etcdChannel(cluster.endpoint(i));
      try {
        await member.kv('Range', { key: b('/app/x') }, { token: root }); // applied everything committed
        return (await member.maintenance('HashKV', { revision: 0 }, { token: root })).hash;
      } finally {
        member.close();
      }
    }));
    expect(new Set(hashes).size).toBe(1);
  });

  it('a token issued through one member works on every member', async () => {
    for (let i = 0; i < 3; i++) {
      const member = etcdChannel(cluster.endpoint(i));
      try {
        expect((await member.kv('Range', { key: b('/app/x'), serializable: true }, { token: alice })).header).toBeDefined();
      } finally {
        member.close();
      }
    }
  });

  it('refuses a watcher outside the grants and cancels one whose reader lost the permission', async () => {
    const responses: Decoded[] = [];
    const stream = channel.watch({ onResponse: (r) => responses.push(r), onEnd: () => undefined }, { token: alice });
    try {
      stream.send({ create_request: { key: b('/other'), watch_id: 1 } });
      stream.send({ create_request: { key: b('/app/'), range_end: b('/app0'), watch_id: 2 } });
      await waitUntil(() => responses.length >= 2, 10_000, () => JSON.stringify(responses));
      expect(responses[0]).toMatchObject({ watch_id: 1, created: true, canceled: true, cancel_reason: watchDenied });
      expect(responses[1]).toMatchObject({ watch_id: 2, created: true });
      await channel.kv('Put', { key: b('/app/w'), value: b('1') }, { token: alice });
      await waitUntil(() => responses.some((r) => (r.events as unknown[] | undefined)?.length === 1), 10_000, () => JSON.stringify(responses));
      await channel.call('etcdserverpb.Auth', 'UserRevokeRole', { name: 'alice', role: 'app' }, { token: root });
      await channel.kv('Put', { key: b('/app/w'), value: b('2') }, { token: root });
      await waitUntil(() => responses.some((r) => r.watch_id === 2 && r.canceled === true), 10_000, () => JSON.stringify(responses));
      expect(responses.find((r) => r.watch_id === 2 && r.canceled === true)).toMatchObject({ cancel_reason: watchDenied });
      // The event after the revoke never reached alice.
      expect(responses.filter((r) => (r.events as unknown[] | undefined)?.length).length).toBe(1);
    } finally {
      stream.close();
      await channel.call('etcdserverpb.Auth', 'UserGrantRole', { user: 'alice', role: 'app' }, { token: root });
      alice = await login(channel, 'alice', 'alicepw');
    }
  });

  it('ends a dkv.v1 prefix watch whose reader lost the permission', async () => {
    const stream = channel.serverStream(methodCodec('dkv.v1.Watch', 'WatchPrefix'), { prefix: b('/app/') }, { token: alice });
    const seen: Decoded[] = [];
    let ended: RpcError | undefined;
    stream.on('data', (r: Decoded) => seen.push(r));
    const closed = new Promise<void>((resolve) => {
      stream.on('error', (error: RpcError) => {
        ended = error;
        resolve();
      });
      stream.on('end', () => resolve());
    });
    try {
      await channel.kv('Put', { key: b('/app/p'), value: b('1') }, { token: alice });
      await waitUntil(() => seen.some((r) => (r.events as unknown[] | undefined)?.length === 1), 10_000, () => JSON.stringify(seen));
      await channel.call('etcdserverpb.Auth', 'UserRevokeRole', { name: 'alice', role: 'app' }, { token: root });
      await channel.kv('Put', { key: b('/app/p'), value: b('2') }, { token: root });
      await closed;
      expect(ended).toMatchObject({ code: grpcStatus.PERMISSION_DENIED, details: permissionDenied });
      expect(seen.filter((r) => (r.events as unknown[] | undefined)?.length).length).toBe(1);
    } finally {
      stream.cancel();
      await channel.call('etcdserverpb.Auth', 'UserGrantRole', { user: 'alice', role: 'app' }, { token: root });
      alice = await login(channel, 'alice', 'alicepw');
    }
  });

  it('checks leases (revoke and time-to-live need every attached key), locks, elections, counters and dkv.v1 writes', async () => {
    const as = { token: alice };
    // Ids below 2^53 (the channel decodes int64s as numbers).
    const lease = (await channel.call('etcdserverpb.Lease', 'LeaseGrant', { ID: 7001, TTL: 60 }, as)).ID as number;
    await channel.kv('Put', { key: b('/secret'), value: b('s'), lease }, { token: root });
    expect(await failure(channel.call('etcdserverpb.Lease', 'LeaseRevoke', { ID: lease }, as))).toEqual(denied);
    expect(await failure(channel.call('etcdserverpb.Lease', 'LeaseTimeToLive', { ID: lease }, as))).toEqual(denied);
    expect(await failure(channel.kv('Put', { key: b('/app/l'), value: b('v'), lease }, as))).toEqual(denied);
    const own = (await channel.call('etcdserverpb.Lease', 'LeaseGrant', { ID: 7002, TTL: 60 }, as)).ID as number;
    await channel.kv('Put', { key: b('/app/l'), value: b('v'), lease: own }, as);
    await channel.call('etcdserverpb.Lease', 'LeaseRevoke', { ID: own }, as);
    // Lock and Election need read and write on the name's prefix (refused as recipeDenied).
    // A lock attaches its key to the lease, so the lease's other keys count (etcd's checkLeasePuts):
    // not on the lease holding root's /secret, but on one of alice's own.
    expect(await failure(channel.call('v3lockpb.Lock', 'Lock', { name: b('/app/lock'), lease }, as))).toEqual(recipeDenied);
    const mine = (await channel.call('etcdserverpb.Lease', 'LeaseGrant', { ID: 7003, TTL: 60 }, as)).ID as number;
    const held = await channel.call('v3lockpb.Lock', 'Lock', { name: b('/app/lock'), lease: mine }, as);
    await channel.call('v3lockpb.Lock', 'Unlock', { key: held.key }, as);
    expect(await failure(channel.call('v3lockpb.Lock', 'Lock', { name: b('/other'), lease }, as))).toEqual(recipeDenied);
    expect(await failure(channel.call('v3electionpb.Election', 'Campaign', { name: b('/other'), lease, value: b('me') }, as))).toEqual(recipeDenied);
    expect(await failure(channel.call('v3electionpb.Election', 'Leader', { name: b('/other') }, as))).toEqual(recipeDenied);
    // Counters read and write their key; dkv.v1 writes are checked where they apply.
    expect((await channel.call('dkv.v1.Counter', 'Increment', { key: b('/app/n'), delta: 2 }, as)).value).toBe(2);
    expect(await failure(channel.call('dkv.v1.Counter', 'Increment', { key: b('/other'), delta: 1 }, as))).toEqual(denied);
    expect(await failure(channel.call('dkv.v1.Counter', 'Get', { key: b('/other') }, as))).toEqual(denied);
    expect(await failure(channel.call('dkv.v1.KV', 'Put', { key: b('/other'), value: b('v'), ttl_ms: 60_000 }, as))).toEqual(denied);
    await channel.call('dkv.v1.KV', 'Put', { key: b('/app/ttl'), value: b('v'), ttl_ms: 60_000 }, as);
    await channel.call('etcdserverpb.Lease', 'LeaseRevoke', { ID: lease }, { token: root });
  });

  it('keeps member changes, hashes, snapshots, defragmentation and leader moves to root', async () => {
    const as = { token: alice };
    expect(await failure(channel.call('etcdserverpb.Cluster', 'MemberAdd', { peerURLs: ['http://127.0.0.1:1'] }, as))).toEqual(denied);
    expect(await failure(channel.maintenance('HashKV', { revision: 0 }, as))).toEqual(denied);
    expect(await failure(channel.maintenance('Hash', {}, as))).toEqual(denied);
    expect(await failure(channel.maintenance('Defragment', {}, as))).toEqual(denied);
    expect(await failure(channel.maintenance('MoveLeader', { targetID: 1 }, as))).toEqual(denied);
    expect(await failure(channel.call('etcdserverpb.Auth', 'UserList', {}, as))).toEqual(denied);
    // Open to any user, as in etcd.
    expect((await channel.maintenance('Status', {}, as)).version).toBeDefined();
    expect(((await channel.call('etcdserverpb.Cluster', 'MemberList', {}, as)).members as unknown[]).length).toBe(3);
    expect((await channel.call('etcdserverpb.Auth', 'AuthStatus', {}, as)).enabled).toBe(true);
    expect((await channel.maintenance('HashKV', { revision: 0 }, { token: root })).hash).toBeDefined();
  });

  it("a password change ends the user's tokens on every member; wrong passwords are rate limited", async () => {
    const old = await login(channel, 'alice', 'alicepw');
    await channel.call('etcdserverpb.Auth', 'UserChangePassword', { name: 'alice', password: 'newpw' }, { token: root });
    for (let i = 0; i < 3; i++) {
      const member = etcdChannel(cluster.endpoint(i));
      try {
        // A follower applies the change a moment after the leader: wait for it, with a deadline.
        const refused = async (): Promise<boolean> => {
          try {
            await member.kv('Range', { key: b('/app/x'), serializable: true }, { token: old });
            return false;
          } catch {
            return true;
          }
        };
        await waitUntil(refused, 10_000, () => `member ${i} still accepts the old token`);
        expect(await failure(member.kv('Range', { key: b('/app/x'), serializable: true }, { token: old }))).toEqual({ code: grpcStatus.UNAUTHENTICATED, details: 'etcdserver: invalid auth token' });
      } finally {
        member.close();
      }
    }
    expect(await failure(login(channel, 'alice', 'alicepw'))).toEqual({ code: grpcStatus.INVALID_ARGUMENT, details: 'etcdserver: authentication failed, invalid user ID or password' });
    alice = await login(channel, 'alice', 'newpw');
    // Sent at once, so the bucket cannot refill between them (it refills at a few per second).
    const failures = await Promise.all(Array.from({ length: 20 }, () => failure(login(channel, 'bob', 'wrong'))));
    const wrong = { code: grpcStatus.INVALID_ARGUMENT, details: 'etcdserver: authentication failed, invalid user ID or password' };
    const limited = { code: grpcStatus.RESOURCE_EXHAUSTED, details: 'dkv: too many authentication attempts, retry later' };
    for (const f of failures) expect([wrong, limited]).toContainEqual(f);
    // The user's burst is 10: the first ten are checked (and fail), the other ten never are.
    expect(failures.filter((f) => f.code === wrong.code).length).toBeGreaterThan(0);
    expect(failures.filter((f) => f.code === limited.code).length).toBeGreaterThanOrEqual(5);
  });

  it('keeps users, roles and auth on through a restart', async () => {
    const token = await login(channel, 'alice', 'newpw');
    await cluster.kill(2);
    cluster.startNode(2);
    await cluster.waitForHealthy(2);
    const member = etcdChannel(cluster.endpoint(2));
    try {
      expect(await failure(member.kv('Range', { key: b('/app/x'), serializable: true }))).toEqual({ code: grpcStatus.INVALID_ARGUMENT, details: 'etcdserver: user name is empty' });
      // A token issued before the restart works if the member applied its Authenticate again after
      // the restart (an entry past what it had stored as committed), else it is refused as invalid
      // (tokens are not replayed from the stored log): never anything else.
      const old = await member.kv('Range', { key: b('/app/x'), serializable: true }, { token }).then(
        () => 'accepted',
        (error: RpcError) => `${error.code}: ${error.details}`,
      );
      expect(['accepted', `${grpcStatus.UNAUTHENTICATED}: etcdserver: invalid auth token`]).toContain(old);
      const fresh = await login(member, 'alice', 'newpw');
      expect((await member.kv('Range', { key: b('/app/x') }, { token: fresh })).count).toBe(1);
      expect(await failure(member.kv('Range', { key: b('/other') }, { token: fresh }))).toEqual(denied);
    } finally {
      member.close();
    }
  }, 60_000);
});

describe('auth with JWT tokens (--auth-token jwt)', () => {
  let cluster: TestCluster;
  let channel: EtcdChannel;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dkv-jwt-'));
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    writeFileSync(join(dir, 'priv.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
    writeFileSync(join(dir, 'pub.pem'), publicKey.export({ type: 'spki', format: 'pem' }));
    cluster = await TestCluster.start({ nodes: 1, args: [`--auth-token=jwt,pub-key=${join(dir, 'pub.pem')},priv-key=${join(dir, 'priv.pem')},sign-method=ES256`] });
    channel = etcdChannel(cluster.endpoint(0));
    await secure(channel);
  }, 60_000);

  afterAll(async () => {
    channel?.close();
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('issues signed tokens that go stale with any auth change, as etcd\'s do', async () => {
    const token = await login(channel, 'alice', 'alicepw');
    expect(token.split('.')).toHaveLength(3);
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { username: string; revision: number; exp: number };
    expect(claims.username).toBe('alice');
    await channel.kv('Put', { key: b('/app/j'), value: b('1') }, { token });
    const root = await login(channel, 'root', 'rootpw');
    await channel.call('etcdserverpb.Auth', 'RoleAdd', { name: 'another' }, { token: root });
    expect(await failure(channel.kv('Put', { key: b('/app/j'), value: b('2') }, { token }))).toEqual({ code: grpcStatus.INVALID_ARGUMENT, details: 'etcdserver: revision of auth store is old' });
    const fresh = await login(channel, 'alice', 'alicepw');
    await channel.kv('Put', { key: b('/app/j'), value: b('2') }, { token: fresh });
    const tampered = `${fresh.split('.')[0]}.${Buffer.from(JSON.stringify({ ...claims, username: 'root' })).toString('base64url')}.${fresh.split('.')[2]}`;
    expect(await failure(channel.kv('Range', { key: b('/x') }, { token: tampered }))).toEqual({ code: grpcStatus.UNAUTHENTICATED, details: 'etcdserver: invalid auth token' });
  });
});
