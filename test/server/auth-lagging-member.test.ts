/**
 * A member that has not yet applied an auth change the cluster has committed answers as the
 * cluster would, on a real 3-process cluster: the data shard leader's appends to one member are
 * lost while root disables auth through another, and an anonymous Put and Range sent to the
 * lagging member wait for it to catch up instead of being refused `user name is empty` from its
 * old state (etcd checks a write where it applies and a read after its ReadIndex, so it never
 * refuses there either). An Authenticate sent there is checked against the cluster's users, as
 * etcd reads linearizably before checking a password. A serializable read is served from the
 * member's own state, as etcd's.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { EtcdChannel } from '../../src/client/index.js';
import { TestCluster, etcdctl, waitUntil } from './cluster-harness.js';
import { type ProxyProcess, hexIds, proxiedCluster } from './peer-proxy.js';

const DATA_SHARD = 1;
/** How long the lagging member's answer is watched for before its appends flow again. */
const lagObservedMs = 1_500;

describe('a member lagging an AuthDisable', () => {
  let cluster: TestCluster | undefined;
  let proxies: ProxyProcess | undefined;
  afterEach(async () => {
    await cluster?.stop();
    cluster = undefined;
    await proxies?.stop();
    proxies = undefined;
  });

  it('serves anonymous calls once caught up, never refusing them from its old state', async () => {
    const proxied = await proxiedCluster();
    proxies = proxied.proxies;
    const proxy = proxies;
    cluster = await TestCluster.start(proxied.options);
    const c = cluster;
    const ok = (endpoint: string, args: string[]): string => {
      const r = etcdctl(endpoint, args);
      expect(r.code, `etcdctl ${args.join(' ')}: ${r.stderr}\n${c.logs()}`).toBe(0);
      return r.stdout;
    };
    ok(c.endpoints, ['user', 'add', 'root:pw']);
    ok(c.endpoints, ['user', 'grant-role', 'root', 'root']);
    ok(c.endpoints, ['auth', 'enable']);

    // The data shard's leader, and a member that follows it (Status describes the data shard).
    let statuses: Array<{ member: string; leader: string }> = [];
    await waitUntil(() => {
      statuses = [0, 1, 2].map((i) => {
        const out = ok(c.endpoint(i), ['--user', 'root:pw', 'endpoint', 'status', '-w', 'json']);
        return { member: hexIds(out, 'member_id')[0]!, leader: hexIds(out, 'leader')[0]! };
      });
      return statuses.every((s) => s.leader === statuses[0]!.leader && s.leader !== '0');
    }, 10_000, () => `one data shard leader for all three: ${JSON.stringify(statuses)}`);
    const leader = statuses[0]!.leader;
    const lagging = statuses.findIndex((s) => s.member !== leader);
    const leaderIndex = statuses.findIndex((s) => s.member === leader);

    // From now on the lagging member gets no new entries of the data shard (heartbeats pass).
    await proxy.drop({ from: Number.parseInt(leader, 16), to: Number.parseInt(statuses[lagging]!.member, 16), shard: DATA_SHARD, type: 'MsgApp' });
    ok(c.endpoint(leaderIndex), ['--user', 'root:pw', 'user', 'add', 'late:pw']);
    ok(c.endpoint(leaderIndex), ['--user', 'root:pw', 'auth', 'disable']);
    // Its own state still says auth is on: a serializable read with no user is refused there.
    const stale = etcdctl(c.endpoint(lagging), ['get', 'k', '--consistency', 's']);
    expect(stale.stderr).toContain('user name is empty');

    const channel = new EtcdChannel(c.endpoint(lagging), { callTimeoutMs: 10_000 });
    try {
      const put = channel.kv('Put', { key: Buffer.from('k'), value: Buffer.from('v') });
      const range = channel.kv('Range', { key: Buffer.from('k') });
      // A user the lagging member does not know yet: its password is checked against the
      // cluster's state, where auth is off by now (its own state would say "authentication failed").
      const login = channel.call('etcdserverpb.Auth', 'Authenticate', { name: 'late', password: 'pw' });
      const settled: string[] = [];
      put.then(() => settled.push('put'), (e: Error) => settled.push(`put: ${e.message}`));
      range.then(() => settled.push('range'), (e: Error) => settled.push(`range: ${e.message}`));
      login.then(() => settled.push('login'), (e: Error) => settled.push(`login: ${e.message}`));
      // Neither may be answered while the member lags: each waits for it to catch up.
      await new Promise((resolve) => setTimeout(resolve, lagObservedMs));
      expect(settled).toEqual([]);
      await proxy.drop({ from: -1, to: -1, shard: DATA_SHARD, type: 'MsgApp' });
      await expect(put).resolves.toBeDefined();
      await range; // answered (the put and the range race: either order is linearizable)
      await expect(login).rejects.toThrow('authentication is not enabled');
      expect(await proxy.dropped()).toBeGreaterThan(0);
    } finally {
      channel.close();
    }
    expect(ok(c.endpoint(lagging), ['get', 'k', '--print-value-only'])).toBe('v\n');
  }, 90_000);
});
