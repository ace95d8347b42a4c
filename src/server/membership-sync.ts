/**
 * Finishes, from the meta shard's member list, the membership changes a failed call left half
 * done. The Cluster service carries a change out on every group in order (cluster-service.ts);
 * if a group stays without a leader for the whole call, the call fails with the change made in
 * some groups only. The node leading a group then proposes, one at a time, the changes that make
 * the group's voters and learners match the list:
 * - a member the list marks removed leaves the group at once (a removed id never comes back);
 * - a member the list names but the group lacks (or holds as a learner while the list says
 *   voter) is added (or promoted) only once it has been missing for longer than a membership call
 *   lasts: in the middle of a removal, the other groups drop the member before the meta shard
 *   records it, and that gap must not be mistaken for an add to finish.
 * Before each change the leader reads the meta shard linearizably, so a leader whose meta replica
 * lags never acts on an old list. An id the list neither names nor marks removed is left alone.
 */
import type { ConfChangeSingle, ConfState } from '../../raft/index.js';
import { formatId } from '../cluster/index.js';

/** A member as the meta shard records it, for this purpose. */
export interface RecordedMember {
  readonly id: number;
  readonly isLearner: boolean;
}

/** The next change that brings a group's configuration toward the member list, if any. */
export function nextGroupChange(members: readonly RecordedMember[], isRemoved: (id: number) => boolean, config: ConfState): ConfChangeSingle | undefined {
  // In a joint configuration the group leaves it on its own first (auto leave).
  if (config.votersOutgoing.length > 0) return undefined;
  const voters = new Set(config.voters);
  const learners = new Set(config.learners);
  for (const id of [...learners, ...voters].sort((a, b) => a - b)) {
    // The last voter stays: Raft refuses a configuration without voters.
    if (isRemoved(id) && !(voters.has(id) && voters.size === 1)) return { type: 'remove', nodeId: id };
  }
  for (const member of members) {
    if (isRemoved(member.id)) continue;
    if (!voters.has(member.id) && !learners.has(member.id)) return { type: member.isLearner ? 'add-learner' : 'add-voter', nodeId: member.id };
    if (!member.isLearner && learners.has(member.id)) return { type: 'add-voter', nodeId: member.id };
  }
  return undefined;
}

/** What the follower needs of its node. */
export interface MembershipSyncHost {
  /** The groups to keep in step: every hosted shard except the meta shard. */
  groups(): number[];
  /** Whether this node leads `shard` now. */
  leads(shard: number): boolean;
  config(shard: number): ConfState;
  members(): RecordedMember[];
  isRemoved(id: number): boolean;
  /** A linearizable read of the meta shard: settles once this node applied what was committed. */
  readMeta(): Promise<void>;
  proposeChange(shard: number, change: ConfChangeSingle): Promise<void>;
  /** How long a member must be missing from a group before it is added (longer than a membership call). */
  readonly addAfterMs: number;
  now(): number;
  readonly log: { info(message: string): void; warn(message: string): void };
}

/**
 * Runs on every node; acts on the groups the node leads. A pass starts when something may have
 * changed (a configuration change or snapshot applied, a leadership change) and on a timer, which
 * also retries what failed (a leader change in the middle, a change refused while another was
 * pending).
 */
export class MembershipSync {
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private lastFailure = '';
  /** Per group, the add it would make and since when it has been due (reset when it changes). */
  private readonly missing = new Map<number, { key: string; sinceMs: number }>();

  constructor(private readonly host: MembershipSyncHost) {}

  /** Something may have changed: runs a pass now, or after the one running (settles when done). */
  poke(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.running !== undefined) {
      this.again = true;
      return this.running;
    }
    this.running = this.passes()
      .catch((error: unknown) => this.failed(`a pass failed: ${(error as Error).message}`))
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  stop(): void {
    this.stopped = true;
  }

  private async passes(): Promise<void> {
    do {
      this.again = false;
      for (const shard of this.host.groups()) {
        if (this.stopped) return;
        await this.step(shard);
      }
    } while (this.again && !this.stopped);
  }

  /** The change to make to `shard` now, if any: an add only once it has been due long enough. */
  private due(shard: number): ConfChangeSingle | undefined {
    const change = nextGroupChange(this.host.members(), (id) => this.host.isRemoved(id), this.host.config(shard));
    if (change === undefined || change.type === 'remove') {
      this.missing.delete(shard);
      return change;
    }
    const key = `${change.type}:${change.nodeId}`;
    const nowMs = this.host.now();
    const seen = this.missing.get(shard);
    if (seen === undefined || seen.key !== key) {
      this.missing.set(shard, { key, sinceMs: nowMs });
      return undefined;
    }
    return nowMs - seen.sinceMs >= this.host.addAfterMs ? change : undefined;
  }

  /** Makes at most one change to `shard`, if this node leads it and it differs from the list. */
  private async step(shard: number): Promise<void> {
    try {
      if (!this.host.leads(shard)) {
        this.missing.delete(shard);
        return;
      }
      if (this.due(shard) === undefined) return;
      await this.host.readMeta();
      if (this.stopped || !this.host.leads(shard)) return;
      const change = this.due(shard);
      if (change === undefined) return;
      const verb = change.type === 'remove' ? 'removing' : change.type === 'add-learner' ? 'adding learner' : 'adding voter';
      this.host.log.info(`shard ${shard}: ${verb} ${formatId(change.nodeId)} to match the member list`);
      await this.host.proposeChange(shard, change);
      this.lastFailure = '';
      // One change at a time: the next pass looks again.
      this.again = true;
    } catch (error) {
      if (!this.stopped) this.failed(`shard ${shard}: could not bring the configuration to the member list: ${(error as Error).message}`);
    }
  }

  /** Retried by the next pass; the same reason is logged once. */
  private failed(reason: string): void {
    if (reason !== this.lastFailure) this.host.log.warn(`${reason} (retrying)`);
    this.lastFailure = reason;
  }
}
