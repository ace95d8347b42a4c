/**
 * A member removing itself through a MemberRemove sent to it, on a real 3-process cluster, while
 * it follows the data shard. The data shard's leader stops replicating to the member once it
 * applies the removal, so the member may never apply it (a message lost on a link that then
 * breaks is enough): whether the data shard is done is the leader's to say. etcd 3.4 answers such
 * a call and the member exits as removed ("the member has been permanently removed from the
 * cluster"); the two left go on taking writes, and the member never comes back into a group.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { membershipAddAfterMs } from '../../src/server/limits.js';
import { TestCluster, etcdctl, waitUntil } from './cluster-harness.js';
import { type ProxyProcess, hexIds, proxiedCluster } from './peer-proxy.js';

/** The dev layout's election timeout: etcd's defaults (100 ms ticks, 10 ticks). */
const electionTimeoutMs = 1000;
const DATA_SHARD = 1;

describe('MemberRemove of the member the call is sent to, a follower of the data shard', () => {
  let cluster: TestCluster | undefined;
  let proxies: ProxyProcess | undefined;
  afterEach(async () => {
    await cluster?.stop();
    cluster = undefined;
    await proxies?.stop();
    proxies = undefined;
  });

  const statusOf = (c: TestCluster, i: number): { member: string; leader: string } => {
    const r = etcdctl(c.endpoint(i), ['endpoint', 'status', '-w', 'json']);
    expect(r.code, r.stderr).toBe(0);
    return { member: hexIds(r.stdout, 'member_id')[0]!, leader: hexIds(r.stdout, 'leader')[0]! };
  };
  const memberIds = (c: TestCluster, i: number): string[] => {
    const r = etcdctl(c.endpoint(i), ['member', 'list', '-w', 'json']);
    expect(r.code, r.stderr).toBe(0);
    return hexIds(r.stdout, 'ID');
  };

  /** The data shard's leader (Status describes the data shard) and a member that follows it. */
  const roles = async (c: TestCluster): Promise<{ leader: string; target: number; targetId: string; rest: number[] }> => {
    let statuses: Array<{ member: string; leader: string }> = [];
    await waitUntil(() => {
      statuses = [0, 1, 2].map((i) => statusOf(c, i));
      return statuses.every((s) => s.leader === statuses[0]!.leader && s.leader !== '0');
    }, 10_000, () => `one data shard leader for all three: ${JSON.stringify(statuses)}`);
    const leader = statuses[0]!.leader;
    const target = statuses.findIndex((s) => s.member !== leader);
    return { leader, target, targetId: statuses[target]!.member, rest: [0, 1, 2].filter((i) => i !== target) };
  };

  /** Removes the target through itself; checks the answer, its exit, and the two left. */
  const removeItself = async (c: TestCluster, target: number, targetId: string, rest: number[]): Promise<void> => {
    const removed = etcdctl(c.endpoint(target), ['member', 'remove', targetId]);
    expect(removed.code, `${removed.stderr}\n${c.logs()}`).toBe(0);
    expect(removed.stdout).toMatch(new RegExp(`Member +${targetId} removed`));
    expect(await c.waitForExit(target, 20_000)).toBe(3);
    expect(c.log(target)).toContain('the member has been permanently removed from the cluster');
    for (const i of rest) {
      await waitUntil(() => etcdctl(c.endpoint(i), ['put', `after-${i}`, 'ok']).code === 0, 10_000, () => `a write through node ${i + 1}\n${c.logs()}`);
      expect(memberIds(c, i)).not.toContain(targetId);
      expect(memberIds(c, i)).toHaveLength(2);
    }
  };

  /**
   * The data shard's configuration, as its leader holds it: MoveLeader to an id that is not a
   * voter there is refused at once with etcd's `bad leader transferee` (etcdctl finds the leader
   * among the endpoints; in the middle of an election it finds none, and the next round asks
   * again). It must hold past the delay after which membership-sync adds a member the list names
   * but the group lacks.
   */
  const staysOut = (c: TestCluster, targetId: string, rest: number[]): void => {
    const restEndpoints = rest.map((i) => c.endpoint(i)).join(',');
    const checkedFrom = Date.now() + membershipAddAfterMs(electionTimeoutMs) + 2 * electionTimeoutMs;
    // etcdctl runs synchronously, so vitest's timeout cannot stop this loop: it has its own.
    const giveUpAt = checkedFrom + 30_000;
    let checkedLate = false;
    while (!checkedLate) {
      if (Date.now() > giveUpAt) throw new Error(`no data shard leader answered move-leader for 30 s past the add delay\n${c.logs()}`);
      const moved = etcdctl(restEndpoints, ['move-leader', targetId]);
      expect(moved.code, `move-leader to the removed member\n${moved.stdout}${moved.stderr}`).not.toBe(0);
      if (moved.stderr.includes('no leader endpoint given')) continue;
      expect(moved.stderr, `the data shard holds the removed member again\n${c.logs()}`).toContain('bad leader transferee');
      for (const i of rest) expect(memberIds(c, i)).not.toContain(targetId);
      checkedLate = Date.now() > checkedFrom;
    }
    for (const i of rest) expect(c.log(i)).not.toContain(`adding voter ${targetId}`);
    expect(etcdctl(c.endpoint(rest[0]!), ['get', 'before', '--print-value-only']).stdout).toBe('1\n');
  };

  it('answers, exits as removed, and stays out of the data shard', async () => {
    cluster = await TestCluster.start();
    const c = cluster;
    const before = etcdctl(c.endpoints, ['put', 'before', '1']);
    expect(before.code, `${before.stderr}\n${c.logs()}`).toBe(0);
    const { target, targetId, rest } = await roles(c);
    await removeItself(c, target, targetId, rest);
    staysOut(c, targetId, rest);
  }, 90_000);

  it("answers even when the data shard leader's appends to it are lost, so it never applies its removal there", async () => {
    const proxied = await proxiedCluster();
    proxies = proxied.proxies;
    const proxy = proxies;
    cluster = await TestCluster.start(proxied.options);
    const c = cluster;
    const before = etcdctl(c.endpoints, ['put', 'before', '1']);
    expect(before.code, `${before.stderr}\n${c.logs()}`).toBe(0);
    const { leader, target, targetId, rest } = await roles(c);
    // From now on the data shard's leader's appends to the target are lost (its heartbeats pass,
    // so the target keeps following it until the leader applies the removal and stops sending).
    const [leaderNumber, targetNumber] = [Number.parseInt(leader, 16), Number.parseInt(targetId, 16)];
    await proxy.drop({ from: leaderNumber, to: targetNumber, shard: DATA_SHARD, type: 'MsgApp' });
    await removeItself(c, target, targetId, rest);
    expect(await proxy.dropped()).toBeGreaterThan(0);
    staysOut(c, targetId, rest);
  }, 120_000);
});
