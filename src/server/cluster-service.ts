/**
 * The etcd `Cluster` service. Membership changes are Raft configuration changes of every group
 * the node hosts (the meta shard first, which records the member); the member list is read from
 * the meta shard.
 */
import type * as grpc from '@grpc/grpc-js';
import type { ConfChange } from '../../raft/index.js';
import { addedMemberIdOf } from '../cluster/index.js';
import { type Member, encodeMemberContext } from '../engines/meta/index.js';
import { int64IfSafe, type Int64 } from '../etcd-proto.js';
import { dkvError } from '../errors.js';
import { serviceDefinition } from './grpc-service.js';
import { type ServiceContext, requestOptions, responseHeader, unary } from './service-common.js';

/** etcd allows one learner at a time. */
export const learnersMax = 1;
/** A learner is ready for promotion once it holds this share of the leader's log (etcd's rule). */
export const learnerReadyRatio = 0.9;

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
  const options = requestOptions(ctx);
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
  /** Carries a change out on every group, meta shard first. */
  const everyGroup = async (change: ConfChange): Promise<void> => {
    for (const shard of ctx.router.hosted()) await shard.proposeConfChange(change, options);
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
      const record = { id, name: '', peerUrls, isLearner };
      await everyGroup({
        transition: 'auto',
        changes: [{ type: isLearner ? 'add-learner' : 'add-voter', nodeId: id }],
        context: encodeMemberContext(record),
      });
      return { header: header(), member: toWire({ ...record, clientUrls: [] }), members: members() };
    }),

    MemberRemove: unary<{ ID: Int64 }>(async ({ message }, call) => {
      ctx.gate.admin(call); // etcd's checkMembershipOperationPermission: root only
      const member = find(message.ID);
      // The data groups first: the meta shard's record (and the transport's peer) goes last.
      const meta = ctx.router.meta();
      for (const shard of ctx.router.hosted().reverse()) {
        const proposal = shard.proposeConfChange({ transition: 'auto', changes: [{ type: 'remove', nodeId: member.id }], context: new Uint8Array(0) }, options);
        if (member.id === ctx.memberId && shard.shardId === meta.shardId) {
          // Removing itself: done once it hears of its removal by any path.
          proposal.catch(() => {});
          try {
            await Promise.race([proposal, membership.removedSelf()]);
          } catch (error) {
            // The proposal failed here (a timeout, a leader change) but may have committed: the
            // peers' member lists say.
            if (!(await membership.peersSayRemovedSelf())) throw error;
          }
        } else {
          await proposal;
        }
      }
      return { header: header(), members: members().filter((m) => m.ID !== member.id) };
    }),

    MemberUpdate: unary<{ ID: Int64; peerURLs: string[] }>(async ({ message }, call) => {
      ctx.gate.admin(call); // etcd's checkMembershipOperationPermission: root only
      const member = find(message.ID);
      const peerUrls = checkPeerUrls(message.peerURLs ?? []);
      if (membership.members().some((m) => m.id !== member.id && m.peerUrls.some((u) => peerUrls.includes(u)))) throw dkvError('peer-url-exists');
      await ctx.router.meta().proposeConfChange({ transition: 'auto', changes: [{ type: 'update', nodeId: member.id }], context: encodeMemberContext({ ...member, peerUrls }) }, options);
      return { header: header(), members: members() };
    }),

    MemberPromote: unary<{ ID: Int64 }>(async ({ message }, call) => {
      ctx.gate.admin(call); // etcd's checkMembershipOperationPermission: root only
      const member = find(message.ID);
      if (!member.isLearner) throw dkvError('member-not-learner');
      // Readiness is known where each shard's leader is (etcd forwards promotion to its leader).
      if (!(await membership.learnerReady(member.id, learnerReadyRatio))) throw dkvError('learner-not-ready');
      await everyGroup({ transition: 'auto', changes: [{ type: 'add-voter', nodeId: member.id }], context: encodeMemberContext({ ...member, isLearner: false }) });
      return { header: header(), members: members() };
    }),
  };
  return { definition: serviceDefinition('etcdserverpb.Cluster'), implementation };
}
