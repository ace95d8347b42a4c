/**
 * A member removing itself through a MemberRemove sent to it, on a real 3-process cluster, while
 * it follows the data shard. The data shard's leader stops replicating to the member once it
 * applies the removal, so the member may never apply it (a message lost on a link that then
 * breaks is enough): whether the data shard is done is the leader's to say. etcd 3.4 answers such
 * a call and the member exits as removed ("the member has been permanently removed from the
 * cluster"); the two left go on taking writes, and the member never comes back into a group.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { membershipAddAfterMs } from '../../src/server/limits.js';
import { TestCluster, etcdctlAsync, waitUntil } from './cluster-harness.js';
import { type ProxyProcess, hexIds, proxiedCluster } from './peer-proxy.js';

/** The dev layout's election timeout: etcd's defaults (100 ms ticks, 10 ticks). */
const electionTimeoutMs = 1000;
const DATA_SHARD = 1;

// The two tests run at the same time, each on its own cluster: most of each is waiting out the
// delay after which membership-sync would add a member back (`staysOut`), and those waits overlap.
describe.concurrent('MemberRemove of the member the call is sent to, a follower of the data shard', () => {
  const clusters: TestCluster[] = [];
  const proxyProcesses: ProxyProcess[] = [];
  afterAll(async () => {
    await Promise.all(clusters.map((c) => c.stop()));
    await Promise.all(proxyProcesses.map((p) => p.stop()));
  });

  /**
   * Starts are one at a time: a cluster's ports are taken (listening) before the next one picks
   * free ports, so the two can never pick the same ones.
   */
  let starting: Promise<unknown> = Promise.resolve();
  const startOneAtATime = <T>(start: () => Promise<T>): Promise<T> => {
    const started = starting.then(start);
    starting = started.catch(() => undefined);
    return started;
  };

  const statusOf = async (c: TestCluster, i: number): Promise<{ member: string; leader: string }> => {
    const r = await etcdctlAsync(c.endpoint(i), ['endpoint', 'status', '-w', 'json']);
    expect(r.code, r.stderr).toBe(0);
    return { member: hexIds(r.stdout, 'member_id')[0]!, leader: hexIds(r.stdout, 'leader')[0]! };
  };
  const memberIds = async (c: TestCluster, i: number): Promise<string[]> => {
    const r = await etcdctlAsync(c.endpoint(i), ['member', 'list', '-w', 'json']);
    expect(r.code, r.stderr).toBe(0);
    return hexIds(r.stdout, 'ID');
  };

  /** The data shard's leader (Status describes the data shard) and a member that follows it. */
  const roles = async (c: TestCluster): Promise<{ leader: string; target: number; targetId: string; rest: number[] }> => {
    let statuses: Array<{ member: string; leader: string }> = [];
    await waitUntil(async () => {
      statuses = await Promise.all([0, 1, 2].map((i) => statusOf(c, i)));
      return statuses.every((s) => s.leader === statuses[0]!.leader && s.leader !== '0');
    }, 10_000, () => `one data shard leader for all three: ${JSON.stringify(statuses)}`);
    const leader = statuses[0]!.leader;
    const target = statuses.findIndex((s) => s.member !== leader);
    return { leader, target, targetId: statuses[target]!.member, rest: [0, 1, 2].filter((i) => i !== target) };
  };

  /** Removes the target through itself; checks the answer, its exit, and the two left. */
  const removeItself = async (c: TestCluster, target: number, targetId: string, rest: number[]): Promise<void> => {
    const removed = await etcdctlAsync(c.endpoint(target), ['member', 'remove', targetId]);
    expect(removed.code, `${removed.stderr}\n${c.logs()}`).toBe(0);
    expect(removed.stdout).toMatch(new RegExp(`Member +${targetId} removed`));
    expect(await c.waitForExit(target, 20_000)).toBe(3);
    expect(c.log(target)).toContain('the member has been permanently removed from the cluster');
    for (const i of rest) {
      await waitUntil(async () => (await etcdctlAsync(c.endpoint(i), ['put', `after-${i}`, 'ok'])).code === 0, 10_000, () => `a write through node ${i + 1}\n${c.logs()}`);
      expect(await memberIds(c, i)).not.toContain(targetId);
      expect(await memberIds(c, i)).toHaveLength(2);
    }
  };

  /**
   * The data shard's configuration, as its leader holds it: MoveLeader to an id that is not a
   * voter there is refused at once with etcd's `bad leader transferee` (etcdctl finds the leader
   * among the endpoints; in the middle of an election it finds none, and the next round asks
   * again). It must hold past the delay after which membership-sync adds a member the list names
   * but the group lacks.
   */
  const staysOut = async (c: TestCluster, targetId: string, rest: number[]): Promise<void> => {
    const restEndpoints = rest.map((i) => c.endpoint(i)).join(',');
    const checkedFrom = Date.now() + membershipAddAfterMs(electionTimeoutMs) + 2 * electionTimeoutMs;
    const giveUpAt = checkedFrom + 30_000;
    let checkedLate = false;
    while (!checkedLate) {
      if (Date.now() > giveUpAt) throw new Error(`no data shard leader answered move-leader for 30 s past the add delay\n${c.logs()}`);
      const moved = await etcdctlAsync(restEndpoints, ['move-leader', targetId]);
      expect(moved.code, `move-leader to the removed member\n${moved.stdout}${moved.stderr}`).not.toBe(0);
      if (moved.stderr.includes('no leader endpoint given')) continue;
      expect(moved.stderr, `the data shard holds the removed member again\n${c.logs()}`).toContain('bad leader transferee');
      for (const i of rest) expect(await memberIds(c, i)).not.toContain(targetId);
      checkedLate = Date.now() > checkedFrom;
    }
    for (const i of rest) expect(c.log(i)).not.toContain(`adding voter ${targetId}`);
    expect((await etcdctlAsync(c.endpoint(rest[0]!), ['get', 'before', '--print-value-only'])).stdout).toBe('1\n');
  };

  it('answers, exits as removed, and stays out of the data shard', async () => {
    const c = await startOneAtATime(async () => {
      const started = await TestCluster.start();
      clusters.push(started);
      return started;
    });
    const before = await etcdctlAsync(c.endpoints, ['put', 'before', '1']);
    expect(before.code, `${before.stderr}\n${c.logs()}`).toBe(0);
    const { target, targetId, rest } = await roles(c);
    await removeItself(c, target, targetId, rest);
    await staysOut(c, targetId, rest);
    // Done: its processes stop now rather than run on beside the other test (afterAll if it failed).
    await c.stop();
  }, 120_000);

  it("answers even when the data shard leader's appends to it are lost, so it never applies its removal there", async () => {
    const { c, proxy } = await startOneAtATime(async () => {
      const proxied = await proxiedCluster();
      proxyProcesses.push(proxied.proxies);
      const started = await TestCluster.start(proxied.options);
      clusters.push(started);
      return { c: started, proxy: proxied.proxies };
    });
    const before = await etcdctlAsync(c.endpoints, ['put', 'before', '1']);
    expect(before.code, `${before.stderr}\n${c.logs()}`).toBe(0);
    const { leader, target, targetId, rest } = await roles(c);
    // From now on the data shard's leader's appends to the target are lost (its heartbeats pass,
    // so the target keeps following it until the leader applies the removal and stops sending).
    const [leaderNumber, targetNumber] = [Number.parseInt(leader, 16), Number.parseInt(targetId, 16)];
    await proxy.drop({ from: leaderNumber, to: targetNumber, shard: DATA_SHARD, type: 'MsgApp' });
    await removeItself(c, target, targetId, rest);
    expect(await proxy.dropped()).toBeGreaterThan(0);
    await staysOut(c, targetId, rest);
    await c.stop();
    await proxy.stop();
  }, 150_000);
});
