/**
 * The etcd `Cluster` service. A membership change is a Raft configuration change of every group
 * the node hosts, in an order that keeps each group able to commit it: an added or promoted member
 * goes into the meta shard first (its record, and the peer address every group dials), then the
 * other groups; a removed member leaves the other groups first, while the member can still vote
 * there, then the meta shard. Each group's change is tried again within the call if a leader that
 * could not take it yet (just elected, another change pending) dropped it. What a failed call
 * leaves half done, membership-sync.ts finishes from the meta shard's member list.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type * as grpc from '@grpc/grpc-js';
import type { ConfChange } from '../../raft/index.js';
import { addedMemberIdOf } from '../cluster/index.js';
import { type Member, encodeMemberContext } from '../engines/meta/index.js';
import { int64IfSafe, type Int64 } from '../etcd-proto.js';
import { type DkvError, dkvError, isDkvError } from '../errors.js';
import { RuntimeError, type RuntimeErrorCode, type ShardHandle, indeterminateCodes } from '../runtime/index.js';
import { membershipAttemptMinMs, membershipRetryMs } from './limits.js';
import { serviceDefinition } from './grpc-service.js';
import { type ServiceContext, responseHeader, unary } from './service-common.js';

/** etcd allows one learner at a time. */
export const learnersMax = 1;
/** A learner is ready for promotion once it holds this share of the leader's log (etcd's rule). */
export const learnerReadyRatio = 0.9;
/** Failures after which a membership change is tried again (whether it went through is checked first). */
const retriedCodes: ReadonlySet<RuntimeErrorCode> = new Set(['no-leader', 'leader-transfer', 'leader-changed', 'leader-failed', 'lost', 'conf-change-pending', 'timeout']);


/** One membership call's state across its groups. */
interface CallProgress {
  readonly deadline: number;
  /** A group took its change. */
  changed: boolean;
  /** An attempt whose outcome is unknown (it may still apply). */
  unknown: RuntimeError | undefined;
  /** The last retried failure, answered if time runs out before another attempt. */
  lastFailure: RuntimeError | undefined;
}

/** What the Cluster service needs to know about membership (the node implements it). */
export interface Membership {
  /** Every member, with its published attributes, ordered by id (from the meta shard). */
  members(): Member[];
  /** Whether `id` was removed (a removed id may never come back). */
  isRemoved(id: number): boolean;
  readonly clusterToken: string;
  /**
   * Whether learner `id` holds at least `learnerReadyRatio` of every hosted shard's log, as the
   * shard's leader sees it (asked of the leader when this node does not lead).
   */
  learnerReady(id: number, ratio: number): Promise<boolean>;
  /** The election timeout: bounds one attempt at a change. */
  readonly electionTimeoutMs: number;
  /**
   * Settles once this member knows it was removed (it applied its removal, or a peer refused it
   * as removed). A member removing itself may never apply the meta shard's change: the others
   * stop replicating to it once they apply it.
   */
  removedSelf(): Promise<void>;
  /**
   * Whether a peer's member list says this member was removed (false when none answers). When
   * one does, the member stops as a removed member, as it does when it learns it by other means.
   */
  peersSayRemovedSelf(): Promise<boolean>;
  /**
   * Whether `id`, which this node's configuration of `shardId` holds, has left that shard as its
   * leader's configuration says (read here when this node leads, asked of the leader otherwise,
   * waiting at most `timeoutMs`). Fails with `no leader`, `request timed out`, or `not capable`
   * (a leader of an older build cannot answer).
   */
  leftGroupAtLeader(shardId: number, id: number, timeoutMs: number): Promise<boolean>;
  /**
   * The shards the map places on some members only, each with its store and members, as this
   * node applied the meta shard (a change of a member is carried out only where it is placed).
   */
  placedShards(): ReadonlyArray<{ readonly id: number; readonly store: string; readonly replicas: readonly number[] }>;
}

/** Failures of a leader's configuration query after which the query is made again on the next attempt. */
const leaderQueryRetriedCodes: ReadonlySet<DkvError['code']> = new Set(['no-leader', 'timeout']);

export interface ClusterServiceContext extends ServiceContext {
  readonly membership: Membership;
}

interface WireMember {
  ID: number;
  name: string;
  peerURLs: string[];
  clientURLs: string[];
  isLearner: boolean;
}

function toWire(member: Member): WireMember {
  return { ID: member.id, name: member.name, peerURLs: [...member.peerUrls], clientURLs: [...member.clientUrls], isLearner: member.isLearner };
}

function checkPeerUrls(urls: readonly string[]): string[] {
  if (urls.length === 0) throw dkvError('member-bad-urls');
  return urls.map((text) => {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw dkvError('member-bad-urls');
    }
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.port === '' || url.pathname.length > 1) throw dkvError('member-bad-urls');
    return `${url.protocol}//${url.host}`;
  });
}

export function createClusterService(ctx: ClusterServiceContext): { definition: ReturnType<typeof serviceDefinition>; implementation: grpc.UntypedServiceImplementation } {
  const membership = ctx.membership;
  const header = () => responseHeader(ctx, ctx.router.meta(), 0);
  const members = () => membership.members().map(toWire);
  /**
   * The member a request's uint64 ID names. Member ids are created below 2^53 (src/cluster), so an
   * ID that is not a safe integer names no member: compared exactly, never rounded onto another.
   */
  const find = (wireId: Int64): Member => {
    const id = int64IfSafe(wireId);
    const member = id === undefined ? undefined : membership.members().find((m) => m.id === id);
    if (member === undefined) throw dkvError('member-not-found');
    return member;
  };
  /**
   * Carries a change out on one group, trying again until `done()` holds or the call's time is up.
   * A change forwarded to a leader that cannot take one yet is dropped there without an answer, so
   * one attempt lasts an election timeout; before each attempt (after a linearizable read of the
   * group, from the second on) `done()` says whether an earlier one went through after all. A
   * late duplicate is harmless: the meta shard drops an add of a removed id, or of a learner that
   * is now a voter, where it applies. `done()` may ask another node (it returns a promise then),
   * and may throw to end the call: the member was removed (answered as is), or the check cannot be
   * made (answered as any other failure). Once an attempt's outcome is unknown, or an earlier group
   * took its change, a failure is answered as a timeout: the call's outcome is not "nothing applied".
   */
  const carryOut = async (shard: ShardHandle, change: ConfChange, done: () => boolean | Promise<boolean>, progress: CallProgress, gaveUp: () => boolean = () => false): Promise<void> => {
    const unknownOutcome = (failure: Error): Error =>
      progress.unknown ?? (progress.changed ? new RuntimeError('timeout', 'a membership change applied in some groups only') : failure);
    const isDone = async (): Promise<boolean> => {
      try {
        return await done();
      } catch (error) {
        // A removed member is the call's answer whatever else happened (a removed id never comes back).
        if (isDkvError(error, 'member-not-found') || !(error instanceof Error)) throw error;
        throw unknownOutcome(error);
      }
    };
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) {
        try {
          await shard.read({ timeoutMs: Math.max(1, Math.min(progress.deadline - Date.now(), membership.electionTimeoutMs)) });
        } catch (error) {
          if (!(error instanceof RuntimeError)) throw error;
        }
      }
      if (await isDone()) break;
      const left = progress.deadline - Date.now();
      // Too little time for an attempt: proposing it would only make the outcome unknown.
      if (left < membershipAttemptMinMs || gaveUp()) throw unknownOutcome(progress.lastFailure ?? new RuntimeError('timeout', 'request timed out'));
      try {
        await shard.proposeConfChange(change, { timeoutMs: Math.min(left, membership.electionTimeoutMs) });
        break;
      } catch (error) {
        if (!(error instanceof RuntimeError)) throw error;
        if (indeterminateCodes.has(error.code)) progress.unknown ??= error;
        if (!retriedCodes.has(error.code)) throw unknownOutcome(error);
        progress.lastFailure = error;
      }
      await sleep(Math.min(membershipRetryMs, Math.max(0, progress.deadline - Date.now())));
    }
    progress.changed = true;
    progress.lastFailure = undefined;
  };
  const startCall = (): CallProgress => ({ deadline: Date.now() + ctx.requestTimeoutMs, changed: false, unknown: undefined, lastFailure: undefined });
  /**
   * The groups a change of `member`'s membership is carried out on here: every hosted one but the
   * meta shard's, except shards the map places on some members only that do not name it (a member
   * added later does not join those).
   */
  const others = (member: number): ShardHandle[] => {
    const placed = new Map(membership.placedShards().map((shard) => [shard.id, shard.replicas]));
    return ctx.router.hosted().filter((shard) => {
      if (shard.shardId === ctx.router.meta().shardId) return false;
      const replicas = placed.get(shard.shardId);
      return replicas === undefined || replicas.includes(member);
    });
  };
  const names = (shard: ShardHandle, id: number): 'voter' | 'learner' | undefined => {
    const config = shard.status().config;
    return config.voters.includes(id) ? 'voter' : config.learners.includes(id) ? 'learner' : undefined;
  };
  /**
   * Whether this member, removing itself, is out of `shard`. Its own replica may never apply the
   * removal (the leader stops replicating to it once it applies it, and soon it knows no leader),
   * so the leader's configuration is asked too (leader-queries.ts finds the leader among the
   * voters then). A leader that cannot answer now (none found, no answer in time) leaves it
   * unknown until the next attempt; one that cannot answer at all (an older build) ends the call.
   */
  const selfOutOf = async (shard: ShardHandle, id: number, progress: CallProgress): Promise<boolean> => {
    if (names(shard, id) === undefined) return true;
    try {
      // As long as a linearizable read before an attempt may wait.
      return await membership.leftGroupAtLeader(shard.shardId, id, Math.max(1, Math.min(progress.deadline - Date.now(), membership.electionTimeoutMs)));
    } catch (error) {
      if (isDkvError(error) && leaderQueryRetriedCodes.has(error.code)) return false;
      throw error;
    }
  };
  /** Ends a call whose member was removed meanwhile (a removed id never comes back). */
  const notRemoved = (id: number): void => {
    if (membership.isRemoved(id)) throw dkvError('member-not-found');
  };

  const implementation: grpc.UntypedServiceImplementation = {
    MemberList: unary<object>(async () => ({ header: header(), members: members() })),

    MemberAdd: unary<{ peerURLs: string[]; isLearner: boolean }>(async ({ message }, call) => {
      await ctx.gate.admin(call); // etcd's checkMembershipOperationPermission: root only
      const peerUrls = checkPeerUrls(message.peerURLs ?? []);
      const current = membership.members();
      if (current.some((m) => m.peerUrls.some((u) => peerUrls.includes(u)))) throw dkvError('peer-url-exists');
      // A removed id never comes back: re-adding a removed member's peer URLs gives a new id.
      let id = 0;
      for (let attempt = 0; id === 0; attempt++) {
        const candidate = addedMemberIdOf(peerUrls, membership.clusterToken, attempt);
        if (!current.some((m) => m.id === candidate) && !membership.isRemoved(candidate)) id = candidate;
      }
      const isLearner = message.isLearner === true;
      if (isLearner && current.filter((m) => m.isLearner).length >= learnersMax) throw dkvError('too-many-learners');
      const added = { id, name: '', peerUrls, isLearner };
      const change: ConfChange = { transition: 'auto', changes: [{ type: isLearner ? 'add-learner' : 'add-voter', nodeId: id }], context: encodeMemberContext(added) };
      const progress = startCall();
      await carryOut(ctx.router.meta(), change, () => (notRemoved(id), membership.members().some((m) => m.id === id)), progress);
      for (const shard of others(id)) await carryOut(shard, change, () => (notRemoved(id), names(shard, id) !== undefined), progress);
      // Removed meanwhile by another call: the member is gone (membership-sync takes it out of any group left).
      notRemoved(id);
      return { header: header(), member: toWire({ ...added, clientUrls: [] }), members: members() };
    }),

    MemberRemove: unary<{ ID: Int64 }>(async ({ message }, call) => {
      await ctx.gate.admin(call); // etcd's checkMembershipOperationPermission: root only
      const member = find(message.ID);
      // A shard placed on this member and at most one other would lose its data (one replica), or
      // could not commit the member's removal without its vote (two: the meta shard removes the
      // member first where this node hosts no replica, and its links go). No move puts a replica
      // elsewhere first, so such a removal is refused; read after a ReadIndex, so a store placed
      // just before is seen (tried again, as the change itself is, while the meta shard elects).
      for (const deadline = Date.now() + ctx.requestTimeoutMs; ; ) {
        try {
          await ctx.router.meta().read({ timeoutMs: Math.max(1, deadline - Date.now()) });
          break;
        } catch (error) {
          if (!(error instanceof RuntimeError && retriedCodes.has(error.code)) || Date.now() + membershipRetryMs >= deadline) throw error;
          await sleep(membershipRetryMs);
        }
      }
      const held = membership.placedShards().filter((shard) => shard.replicas.length <= 2 && shard.replicas.includes(member.id));
      if (held.length > 0) {
        const list = held.map((shard) => `${shard.id} (store ${shard.store}, ${shard.replicas.length} replica${shard.replicas.length === 1 ? '' : 's'})`).join(', ');
        throw dkvError('member-replica-quorum', `member ${member.id.toString(16)} holds a replica of shard${held.length === 1 ? '' : 's'} ${list}; drop the store first`);
      }
      const change: ConfChange = { transition: 'auto', changes: [{ type: 'remove', nodeId: member.id }], context: new Uint8Array(0) };
      const progress = startCall();
      // The other groups first: the member still votes there, and still has its links, until the
      // meta shard's record (and with it the peer every group dials) goes. A member removing itself
      // asks each group's leader whether it is done (its own replica may never hear).
      const removingSelf = member.id === ctx.memberId;
      for (const shard of others(member.id)) {
        await carryOut(shard, change, removingSelf ? () => selfOutOf(shard, member.id, progress) : () => names(shard, member.id) === undefined, progress);
      }
      const meta = ctx.router.meta();
      if (!removingSelf) {
        await carryOut(meta, change, () => membership.isRemoved(member.id), progress);
      } else {
        // Removing itself: done once it hears of its removal by any path (the others stop
        // replicating to it once they apply it, so it may never apply it itself).
        let settled = false;
        const proposal = carryOut(meta, change, () => membership.isRemoved(member.id), progress, () => settled);
        proposal.catch(() => {});
        try {
          await Promise.race([proposal, membership.removedSelf()]);
        } catch (error) {
          // The proposal failed here (a timeout, a leader change) but may have committed: the
          // peers' member lists say (and when they do, this member stops as removed).
          if (!(await membership.peersSayRemovedSelf())) throw error;
        } finally {
          settled = true;
        }
      }
      return { header: header(), members: members().filter((m) => m.ID !== member.id) };
    }),

    MemberUpdate: unary<{ ID: Int64; peerURLs: string[] }>(async ({ message }, call) => {
      await ctx.gate.admin(call); // etcd's checkMembershipOperationPermission: root only
      const member = find(message.ID);
      const peerUrls = checkPeerUrls(message.peerURLs ?? []);
      if (membership.members().some((m) => m.id !== member.id && m.peerUrls.some((u) => peerUrls.includes(u)))) throw dkvError('peer-url-exists');
      const change: ConfChange = { transition: 'auto', changes: [{ type: 'update', nodeId: member.id }], context: encodeMemberContext({ ...member, peerUrls }) };
      const same = (a: readonly string[]) => a.length === peerUrls.length && a.every((u, i) => u === peerUrls[i]);
      await carryOut(ctx.router.meta(), change, () => (notRemoved(member.id), membership.members().some((m) => m.id === member.id && same(m.peerUrls))), startCall());
      return { header: header(), members: members() };
    }),

    MemberPromote: unary<{ ID: Int64 }>(async ({ message }, call) => {
      await ctx.gate.admin(call); // etcd's checkMembershipOperationPermission: root only
      const member = find(message.ID);
      if (!member.isLearner) throw dkvError('member-not-learner');
      // Readiness is known where each shard's leader is (etcd forwards promotion to its leader).
      if (!(await membership.learnerReady(member.id, learnerReadyRatio))) throw dkvError('learner-not-ready');
      const change: ConfChange = { transition: 'auto', changes: [{ type: 'add-voter', nodeId: member.id }], context: encodeMemberContext({ ...member, isLearner: false }) };
      const progress = startCall();
      await carryOut(ctx.router.meta(), change, () => (notRemoved(member.id), membership.members().some((m) => m.id === member.id && !m.isLearner)), progress);
      for (const shard of others(member.id)) await carryOut(shard, change, () => (notRemoved(member.id), names(shard, member.id) === 'voter'), progress);
      notRemoved(member.id);
      return { header: header(), members: members() };
    }),
  };
  return { definition: serviceDefinition('etcdserverpb.Cluster'), implementation };
}
