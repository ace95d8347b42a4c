/**
 * A member removing itself through a MemberRemove sent to it, on a real 3-process cluster, while
 * it follows the data shard. The data shard's leader stops replicating to the member once it
 * applies the removal, so the member may never apply it: whether the data shard is done is the
 * leader's to say. etcd 3.4 answers such a call and the member exits as removed ("the member has
 * been permanently removed from the cluster"); the two left go on taking writes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { membershipAddAfterMs } from '../../src/server/limits.js';
import { TestCluster, etcdctl, waitUntil } from './cluster-harness.js';

/** The dev layout's election timeout: etcd's defaults (100 ms ticks, 10 ticks). */
const electionTimeoutMs = 1000;

interface EndpointStatus {
  Endpoint: string;
  Status: { leader: number | string; header: { member_id: number | string } };
}

describe('MemberRemove of the member the call is sent to, a follower of the data shard', () => {
  let cluster: TestCluster | undefined;
  afterEach(async () => {
    await cluster?.stop();
    cluster = undefined;
  });

  /** Member ids in hex (etcdctl's JSON prints them as uint64 numbers: kept exact, never rounded). */
  const hexIds = (text: string, field: string): string[] => [...text.matchAll(new RegExp(`"${field}":(\\d+)`, 'g'))].map((m) => BigInt(m[1]!).toString(16));
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

  it('answers, exits as removed, and stays out of the data shard', async () => {
    cluster = await TestCluster.start();
    const c = cluster;
    expect(etcdctl(c.endpoints, ['put', 'before', '1']).code).toBe(0);
    // Status describes the data shard: its leader as each member sees it, agreed by all three.
    let statuses: Array<{ member: string; leader: string }> = [];
    await waitUntil(() => {
      statuses = [0, 1, 2].map((i) => statusOf(c, i));
      return statuses.every((s) => s.leader === statuses[0]!.leader && s.leader !== '0');
    }, 10_000, () => `one data shard leader for all three: ${JSON.stringify(statuses)}`);
    const leader = statuses[0]!.leader;
    const target = statuses.findIndex((s) => s.member !== leader);
    const targetId = statuses[target]!.member;
    const rest = [0, 1, 2].filter((i) => i !== target);

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

    // The data shard's configuration, as its leader holds it: MoveLeader to an id that is not a
    // voter there is refused at once with etcd's `bad leader transferee` (etcdctl finds the leader
    // among the endpoints; in the middle of an election it finds none, and the next round asks
    // again). It must hold past the delay after which membership-sync adds a member the list
    // names but the group lacks.
    const restEndpoints = rest.map((i) => c.endpoint(i)).join(',');
    const checkedFrom = Date.now() + membershipAddAfterMs(electionTimeoutMs) + 2 * electionTimeoutMs;
    let checkedLate = false;
    while (!checkedLate) {
      const moved = etcdctl(restEndpoints, ['move-leader', targetId]);
      expect(moved.code, `move-leader to the removed member\n${moved.stdout}${moved.stderr}`).not.toBe(0);
      if (moved.stderr.includes('no leader endpoint given')) continue;
      expect(moved.stderr, `the data shard holds the removed member again\n${c.logs()}`).toContain('bad leader transferee');
      for (const i of rest) expect(memberIds(c, i)).not.toContain(targetId);
      checkedLate = Date.now() > checkedFrom;
    }
    for (const i of rest) expect(c.log(i)).not.toContain(`adding voter ${targetId}`);
    expect(etcdctl(c.endpoint(rest[0]!), ['get', 'before', '--print-value-only']).stdout).toBe('1\n');
  }, 90_000);
});
