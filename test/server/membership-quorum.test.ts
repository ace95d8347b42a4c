/**
 * Removing a member keeps every group able to commit, as etcd's one group is: the member leaves
 * the data group while it still votes there (and still has its links), and only then the meta
 * shard, whose record carries the peer address. Removing it from the meta shard first cut its
 * links before the data group's removal could commit, so a group whose live voters were short of
 * the old quorum (2 members shrunk to 1; 4 members with one down, a healthy one removed) stayed
 * without a leader for good.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { TestCluster, etcdctl, waitUntil } from './cluster-harness.js';

/** How long a removal may leave the data group without a leader: a few election timeouts. */
const writableAgainMs = 10_000;

describe('MemberRemove keeps the groups able to commit', () => {
  let cluster: TestCluster | undefined;
  afterEach(async () => {
    await cluster?.stop();
    cluster = undefined;
  });

  const memberIds = (endpoint: string): string[] => {
    const listed = etcdctl(endpoint, ['member', 'list', '-w', 'json']);
    expect(listed.code, listed.stderr).toBe(0);
    return [...listed.stdout.matchAll(/"ID":(\d+)/g)].map((m) => BigInt(m[1]!).toString(16));
  };
  const idOf = (c: TestCluster, i: number): string => {
    const status = etcdctl(c.endpoint(i), ['endpoint', 'status', '-w', 'json']);
    expect(status.code, status.stderr).toBe(0);
    return BigInt(/"member_id":(\d+)/.exec(status.stdout)![1]!).toString(16);
  };
  const writable = async (c: TestCluster, i: number, key: string): Promise<void> => {
    await waitUntil(() => etcdctl(c.endpoint(i), ['put', key, 'v']).code === 0, writableAgainMs, () => `a write through node ${i + 1}\n${c.logs()}`);
  };

  it('2 members shrunk to 1: the one left takes writes', async () => {
    cluster = await TestCluster.start({ nodes: 2 });
    const c = cluster;
    expect(etcdctl(c.endpoint(0), ['put', 'before', '1']).code).toBe(0);
    const removed = etcdctl(c.endpoint(0), ['member', 'remove', idOf(c, 1)]);
    expect(removed.code, removed.stderr).toBe(0);
    await writable(c, 0, 'after');
    expect(memberIds(c.endpoint(0))).toEqual([idOf(c, 0)]);
    expect(etcdctl(c.endpoint(0), ['get', 'before', '--print-value-only']).stdout).toBe('1\n');
  }, 90_000);

  it('4 members, one down, a healthy one removed: the other two take writes', async () => {
    cluster = await TestCluster.start({ nodes: 4 });
    const c = cluster;
    expect(etcdctl(c.endpoint(0), ['put', 'before', '1']).code).toBe(0);
    const healthy = idOf(c, 2);
    await c.kill(3);
    const removed = etcdctl(c.endpoint(0), ['member', 'remove', healthy]);
    expect(removed.code, removed.stderr).toBe(0);
    await writable(c, 0, 'after-0');
    await writable(c, 1, 'after-1');
    expect(memberIds(c.endpoint(0))).toHaveLength(3);
    expect(memberIds(c.endpoint(0))).not.toContain(healthy);
  }, 90_000);
});
