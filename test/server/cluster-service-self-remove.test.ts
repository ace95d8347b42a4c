/**
 * MemberRemove of the member that serves the call, when it follows a data shard whose leader
 * applies the removal and then stops replicating to it: this member's replica never applies it.
 * The Cluster service runs against shards that behave exactly so (membership-self-remove.test.ts
 * makes it happen to real processes, with the leader's appends to the member dropped by a proxy),
 * with the real leader queries over a transport that reaches the data shard's leader and other
 * follower: whether the data shard is done is asked of its leader (found among the voters, as
 * this member no longer knows it), and the call goes on to the meta shard.
 */
import type * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import type { ConfChange } from '../../raft/index.js';
import type { Member } from '../../src/engines/meta/index.js';
import { dkvError } from '../../src/errors.js';
import { RuntimeError, type Router, type ShardHandle, type ShardStatus } from '../../src/runtime/index.js';
import type { AuthGate } from '../../src/server/auth/gate.js';
import { type Membership, createClusterService } from '../../src/server/cluster-service.js';
import { type LeaderQueryHost, answerLeaderQuery, leftGroupAtLeader } from '../../src/server/leader-queries.js';
import { PeerRequestError, PeerRequestRefusal, type PeerTransport } from '../../src/server/peer/index.js';

const self = 0x1a;
const leader = 0x2b;
const other = 0x3c;
const META = 0;
const DATA = 1;
/** Short, so that an attempt that cannot succeed ends fast; the call's own limit is far longer. */
const electionTimeoutMs = 20;
const requestTimeoutMs = 3000;

const member = (id: number): Member => ({ id, name: `m${id}`, peerUrls: [`http://127.0.0.1:${id}`], clientUrls: [`http://127.0.0.1:${id + 1}`], isLearner: false });

const timedOut = (ms: number): Promise<never> => new Promise((_, reject) => setTimeout(() => reject(new RuntimeError('timeout', 'etcdserver: request timed out')), ms));

/** What the cluster looks like from the member serving the call, and what the call did to it. */
interface World {
  /** The data shard's leader applied the removal (this member's replica never hears of it). */
  dataRemovedAtLeader: boolean;
  metaRemoved: boolean;
  proposals: Array<{ shard: number; change: ConfChange }>;
  /** What each question to the data shard's leader gets, in turn (then: its configuration). */
  leaderAnswers: Array<Error>;
  leaderAsked: number;
}

function world(): World {
  return { dataRemovedAtLeader: false, metaRemoved: false, proposals: [], leaderAnswers: [], leaderAsked: 0 };
}

const confState = (voters: number[]): ShardStatus['config'] => ({ voters, votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false });

/**
 * This member's replica of a shard. Its data shard replica still holds the member (it never
 * applies its removal) and, once the leader applied the removal, knows no leader (no more
 * heartbeats come).
 */
function localStatus(shardId: number, w: World): ShardStatus {
  const voters = shardId === META && w.metaRemoved ? [leader, other] : [self, leader, other];
  const lead = shardId === DATA && w.dataRemovedAtLeader ? 0 : leader;
  return { id: self, config: confState(voters), lead, term: 2, applied: 10, lastIndex: 10, progress: undefined } as unknown as ShardStatus;
}

/** The data shard's leader and its other follower, as the member's questions reach them. */
function dataPeers(w: World): Pick<PeerTransport, 'request'> {
  const node = (id: number): LeaderQueryHost => ({
    hasShard: (shardId) => shardId === DATA,
    status: () => {
      const removed = w.dataRemovedAtLeader;
      const progress = id === leader ? new Map() : undefined;
      return { id, config: confState(removed ? [leader, other] : [self, leader, other]), lead: leader, applied: removed ? 11 : 10, lastIndex: removed ? 11 : 10, progress };
    },
  });
  return {
    request: async (to, payload) => {
      try {
        return answerLeaderQuery(node(to), payload);
      } catch (error) {
        if (!(error instanceof PeerRequestRefusal)) throw error;
        throw new PeerRequestError('refused', 'yes', error.message, { code: error.code, message: error.message });
      }
    },
  };
}

function shard(shardId: number, w: World): ShardHandle {
  const status = (): ShardStatus => localStatus(shardId, w);
  return {
    shardId,
    status,
    term: () => 2,
    leader: () => leader,
    // The data shard's leader answers the ReadIndex, but this replica never catches up to it.
    read: async (options) => (shardId === DATA ? timedOut(options?.timeoutMs ?? requestTimeoutMs) : 1),
    proposeConfChange: async (change, options) => {
      w.proposals.push({ shard: shardId, change });
      if (shardId === META) {
        w.metaRemoved = true;
        return;
      }
      // Forwarded to the leader, which applies it; this replica never does, so it times out here.
      w.dataRemovedAtLeader = true;
      return timedOut(options?.timeoutMs ?? requestTimeoutMs);
    },
    propose: () => Promise.reject(new Error('no command expected')),
    machine: () => {
      throw new Error('no state machine expected');
    },
    transferLeader: () => {},
  };
}

function membership(w: World): Membership {
  return {
    members: () => [self, leader, other].filter((id) => id !== self || !w.metaRemoved).map(member),
    isRemoved: (id) => id === self && w.metaRemoved,
    clusterToken: 'test',
    learnerReady: async () => true,
    electionTimeoutMs,
    // The meta shard's leader stops replicating to this member as well: it hears of its removal
    // from its peers, once the meta shard applied it.
    removedSelf: () => new Promise<void>(() => {}),
    peersSayRemovedSelf: async () => w.metaRemoved,
    placedShards: () => [],
    leftGroupAtLeader: async (shardId, id, timeoutMs) => {
      expect(shardId).toBe(DATA);
      expect(timeoutMs).toBeGreaterThan(0);
      expect(timeoutMs).toBeLessThanOrEqual(electionTimeoutMs);
      w.leaderAsked++;
      const failure = w.leaderAnswers.shift();
      if (failure !== undefined) throw failure;
      const local: LeaderQueryHost = { hasShard: (s) => s === DATA || s === META, status: (s) => localStatus(s, w) };
      return leftGroupAtLeader(local, dataPeers(w), shardId, id, timeoutMs);
    },
  };
}

interface Outcome {
  error: grpc.ServiceError | null;
  response: { members?: Array<{ ID: number }> } | undefined;
  ms: number;
}

async function removeSelf(w: World): Promise<Outcome> {
  const meta = shard(META, w);
  const data = shard(DATA, w);
  const router = { meta: () => meta, defaultStore: () => data, hosted: () => [meta, data] } as unknown as Router;
  const gate = { admin: async () => undefined } as unknown as AuthGate;
  const { implementation } = createClusterService({ router, clusterId: () => 7, memberId: self, requestTimeoutMs, gate, membership: membership(w) });
  const handler = implementation.MemberRemove as grpc.handleUnaryCall<object, object>;
  const started = Date.now();
  return new Promise((resolve) => {
    const call = { request: { message: { ID: self } } } as unknown as grpc.ServerUnaryCall<object, object>;
    handler(call, (error, response) => resolve({ error: error as grpc.ServiceError | null, response: response as Outcome['response'], ms: Date.now() - started }));
  });
}

describe('MemberRemove of itself by a follower of the data shard', () => {
  it("is done with the data shard once its leader's configuration lacks the member, and goes on to the meta shard", async () => {
    const w = world();
    const outcome = await removeSelf(w);
    expect(outcome.error?.details ?? null).toBeNull();
    expect(outcome.response?.members?.map((m) => m.ID)).toEqual([leader, other]);
    expect(w.dataRemovedAtLeader).toBe(true);
    expect(w.metaRemoved).toBe(true);
    // One proposal per group: the second attempt on the data shard found it done.
    expect(w.proposals.map((p) => p.shard)).toEqual([DATA, META]);
    expect(outcome.ms).toBeLessThan(requestTimeoutMs);
  });

  it('asks the leader again when it could not answer (no leader known, no answer in time)', async () => {
    const w = world();
    w.leaderAnswers.push(dkvError('no-leader'), dkvError('timeout'));
    const outcome = await removeSelf(w);
    expect(outcome.error?.details ?? null).toBeNull();
    expect(w.metaRemoved).toBe(true);
    expect(w.leaderAsked).toBeGreaterThanOrEqual(3);
  });

  it("a leader of an older build ends the call with etcd's 'not capable' before anything is proposed", async () => {
    const w = world();
    w.leaderAnswers.push(dkvError('not-capable'));
    const outcome = await removeSelf(w);
    expect(outcome.error?.details).toBe('etcdserver: not capable');
    expect(w.proposals).toEqual([]);
  });

  it("once an attempt's outcome is unknown, a leader that cannot answer gives a timeout, not 'not capable'", async () => {
    const w = world();
    // The first check finds no leader, so the removal is proposed (and times out here); then the
    // leader, now one of an older build, cannot answer.
    w.leaderAnswers.push(dkvError('no-leader'), dkvError('not-capable'));
    const outcome = await removeSelf(w);
    expect(outcome.error?.details).toBe('etcdserver: request timed out');
    expect(w.proposals.map((p) => p.shard)).toEqual([DATA]);
    expect(w.metaRemoved).toBe(false);
  });
});
