/**
 * The etcd `Cluster` service. The meta shard's member list is membership's one source of truth:
 * MemberAdd, MemberPromote and MemberRemove record their change there (one Raft entry, whole or
 * not at all), and every other group follows it (membership-sync.ts). A call answers once the
 * change is recorded and, within a bound, once the groups this node hosts match it.
 */
import type * as grpc from '@grpc/grpc-js';
import type { ConfChange } from '../../raft/index.js';
import { addedMemberIdOf } from '../cluster/index.js';
import { type Member, encodeMemberContext } from '../engines/meta/index.js';
import { int64IfSafe, type Int64 } from '../etcd-proto.js';
import { dkvError } from '../errors.js';
import { RuntimeError, type RuntimeErrorCode } from '../runtime/index.js';
import { serviceDefinition } from './grpc-service.js';
import { type ServiceContext, responseHeader, unary } from './service-common.js';

/** etcd allows one learner at a time. */
export const learnersMax = 1;
/** A learner is ready for promotion once it holds this share of the leader's log (etcd's rule). */
export const learnerReadyRatio = 0.9;
/** Wait between attempts at recording a membership change (a leader may just have been elected). */
export const membershipRetryMs = 100;
/** How long, in election timeouts, a membership call waits for the other groups to follow it. */
export const groupsSettleElections = 2;
/** Failures after which recording a membership change is tried again (the change may have committed: checked first). */
const retriedCodes: ReadonlySet<RuntimeErrorCode> = new Set(['no-leader', 'leader-transfer', 'leader-changed', 'leader-failed', 'lost', 'conf-change-pending', 'timeout']);

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

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
  /** Settles true once every group hosted here matches the member list, false after `timeoutMs`. */
  groupsSettled(timeoutMs: number): Promise<boolean>;
  /** The election timeout: bounds one attempt at a change. */
  readonly electionTimeoutMs: number;
  /**
   * Settles once this member knows it was removed (it applied its removal, or a peer refused it
   * as removed). A member removing itself may never apply the meta shard's change: the others
   * stop replicating to it once they apply it.
   */
  removedSelf(): Promise<void>;
  /** Whether a peer's member list says this member was removed (false when none answers). */
  peersSayRemovedSelf(): Promise<boolean>;
}

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
   * Records a membership change in the meta shard, trying again until `recorded()` or the request's
   * time is up. A change forwarded to a leader that cannot take one yet (just elected, or another
   * change pending) is dropped there without an answer, so one attempt lasts an election timeout;
   * before the next, a linearizable read of the meta shard says whether an earlier attempt was
   * recorded after all. Repeating a change is harmless: a second add or remove changes nothing.
   */
  const record = async (change: ConfChange, recorded: () => boolean): Promise<void> => {
    const deadline = Date.now() + ctx.requestTimeoutMs;
    const meta = ctx.router.meta();
    for (;;) {
      const left = deadline - Date.now();
      let failure: unknown;
      try {
        await meta.proposeConfChange(change, { timeoutMs: Math.max(1, Math.min(left, membership.electionTimeoutMs)) });
        return;
      } catch (error) {
        if (!(error instanceof RuntimeError) || !retriedCodes.has(error.code)) throw error;
        failure = error;
      }
      await sleep(Math.min(membershipRetryMs, Math.max(0, deadline - Date.now())));
      try {
        await meta.read({ timeoutMs: Math.max(1, Math.min(deadline - Date.now(), membership.electionTimeoutMs)) });
        if (recorded()) return;
      } catch (error) {
        if (!(error instanceof RuntimeError)) throw error;
      }
      if (Date.now() >= deadline) throw failure;
    }
  };
  /** Waits, within the request's time, for the other groups to follow a recorded change. */
  const followed = async (): Promise<void> => {
    await membership.groupsSettled(groupsSettleElections * membership.electionTimeoutMs);
  };

  const implementation: grpc.UntypedServiceImplementation = {
    MemberList: unary<object>(async () => ({ header: header(), members: members() })),

    MemberAdd: unary<{ peerURLs: string[]; isLearner: boolean }>(async ({ message }, call) => {
      ctx.gate.admin(call); // etcd's checkMembershipOperationPermission: root only
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
      await record(change, () => membership.members().some((m) => m.id === id));
      await followed();
      return { header: header(), member: toWire({ ...added, clientUrls: [] }), members: members() };
    }),

    MemberRemove: unary<{ ID: Int64 }>(async ({ message }, call) => {
      ctx.gate.admin(call); // etcd's checkMembershipOperationPermission: root only
      const member = find(message.ID);
      const change: ConfChange = { transition: 'auto', changes: [{ type: 'remove', nodeId: member.id }], context: new Uint8Array(0) };
      if (member.id === ctx.memberId) {
        // Removing itself: done once it hears of its removal by any path (the others stop
        // replicating to it once they apply it, so it may never apply it itself).
        const proposal = record(change, () => membership.isRemoved(member.id));
        proposal.catch(() => {});
        try {
          await Promise.race([proposal, membership.removedSelf()]);
        } catch (error) {
          // The proposal failed here (a timeout, a leader change) but may have committed: the
          // peers' member lists say.
          if (!(await membership.peersSayRemovedSelf())) throw error;
        }
      } else {
        await record(change, () => membership.isRemoved(member.id));
        await followed();
      }
      return { header: header(), members: members().filter((m) => m.ID !== member.id) };
    }),

    MemberUpdate: unary<{ ID: Int64; peerURLs: string[] }>(async ({ message }, call) => {
      ctx.gate.admin(call); // etcd's checkMembershipOperationPermission: root only
      const member = find(message.ID);
      const peerUrls = checkPeerUrls(message.peerURLs ?? []);
      if (membership.members().some((m) => m.id !== member.id && m.peerUrls.some((u) => peerUrls.includes(u)))) throw dkvError('peer-url-exists');
      const change: ConfChange = { transition: 'auto', changes: [{ type: 'update', nodeId: member.id }], context: encodeMemberContext({ ...member, peerUrls }) };
      const same = (a: readonly string[]) => a.length === peerUrls.length && a.every((u, i) => u === peerUrls[i]);
      await record(change, () => membership.members().some((m) => m.id === member.id && same(m.peerUrls)));
      return { header: header(), members: members() };
    }),

    MemberPromote: unary<{ ID: Int64 }>(async ({ message }, call) => {
      ctx.gate.admin(call); // etcd's checkMembershipOperationPermission: root only
      const member = find(message.ID);
      if (!member.isLearner) throw dkvError('member-not-learner');
      // Readiness is known where each shard's leader is (etcd forwards promotion to its leader).
      if (!(await membership.learnerReady(member.id, learnerReadyRatio))) throw dkvError('learner-not-ready');
      const change: ConfChange = { transition: 'auto', changes: [{ type: 'add-voter', nodeId: member.id }], context: encodeMemberContext({ ...member, isLearner: false }) };
      await record(change, () => membership.members().some((m) => m.id === member.id && !m.isLearner));
      await followed();
      return { header: header(), members: members() };
    }),
  };
  return { definition: serviceDefinition('etcdserverpb.Cluster'), implementation };
}
