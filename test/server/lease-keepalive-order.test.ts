/**
 * A keep-alive and a LeaseRevoke of its lease sent one right behind the other on one connection
 * (what the etcd3 client does when a lease is revoked right after its keep-alive stream opened,
 * and its own test "lease() crons tears down if the lease gets revoked" then waits for a 'lost'
 * that an early TTL 0 had already fired). etcd's leader renews at once, outside Raft, so it
 * answers such a keep-alive with the lease's TTL whenever it handles it before the revoke commits
 * (nearly always; not a rule a test can hold etcd to). DKV renews through Raft, gathering a
 * turn's keep-alives into one command: a keep-alive a node read before a revoke must be renewed
 * before it, every time. Raw HTTP/2, so that both go out in one write, keep-alive first; against
 * every node of a DKV cluster (the leader and followers forwarding both).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { etcdType } from '../../src/etcd-proto.js';
import { TestCluster, waitUntil } from './cluster-harness.js';
import { RawSession, grpcFramed } from './raw-grpc.js';

/** Rounds per node: a revoke that overtakes the turn's renewals does so in most rounds. */
const rounds = 20;
const ttlSeconds = 60;
/** How long a keep-alive's answer may take on a loaded machine. */
const answerMsMax = 5000;

const grantRequest = etcdType('etcdserverpb.LeaseGrantRequest');
const grantResponse = etcdType('etcdserverpb.LeaseGrantResponse');
const keepAliveRequest = etcdType('etcdserverpb.LeaseKeepAliveRequest');
const keepAliveResponse = etcdType('etcdserverpb.LeaseKeepAliveResponse');
const revokeRequest = etcdType('etcdserverpb.LeaseRevokeRequest');

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

interface Round {
  /** The TTLs the keep-alives were answered: on the open stream, right before the revoke, after it. */
  readonly ttls: string[];
  readonly revokeStatus: number | undefined;
}

/** Grants a lease, keeps it alive once, then sends a keep-alive and the revoke in one write, then one more keep-alive. */
async function keepAliveThenRevoke(raw: RawSession): Promise<Round> {
  const granted = await raw.unary('/etcdserverpb.Lease/LeaseGrant', grantRequest.encode({ TTL: ttlSeconds }).finish());
  expect(granted.grpcStatus).toBe(0);
  const id = String(grantResponse.decode(granted.messages[0]!).toJSON()['ID']);
  const ttls: string[] = [];
  const { stream, outcome } = raw.open('/etcdserverpb.Lease/LeaseKeepAlive', (message) => {
    ttls.push(String(keepAliveResponse.decode(message).toJSON()['TTL'] ?? '0'));
  });
  const keepAlive = (answers: number): Promise<void> => {
    stream.write(grpcFramed(keepAliveRequest.encode({ ID: id }).finish()));
    return waitUntil(() => ttls.length >= answers, answerMsMax, () => `keep-alive answer ${answers} of lease ${id}`, 5);
  };
  try {
    await keepAlive(1);
    const answered = keepAlive(2);
    const revoked = await raw.unary('/etcdserverpb.Lease/LeaseRevoke', revokeRequest.encode({ ID: id }).finish());
    await answered;
    await keepAlive(3);
    return { ttls, revokeStatus: revoked.grpcStatus };
  } finally {
    stream.end();
    await outcome;
  }
}

describe.each([1, 2, 3])('a keep-alive sent right before a revoke of its lease, on DKV node %i of 3', (node) => {
  it("answers the lease's TTL; a keep-alive after the revoke answers TTL 0", async () => {
    const raw = await RawSession.open(cluster.endpoint(node - 1));
    try {
      const seen: Round[] = [];
      for (let i = 0; i < rounds; i++) seen.push(await keepAliveThenRevoke(raw));
      const expected: Round = { ttls: [String(ttlSeconds), String(ttlSeconds), '0'], revokeStatus: 0 };
      expect(seen).toEqual(Array.from({ length: rounds }, () => expected));
    } finally {
      raw.session.destroy();
    }
  }, 60_000);
});
