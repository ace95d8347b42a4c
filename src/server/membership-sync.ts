/**
 * Membership has one source of truth: the meta shard's member list. MemberAdd, MemberPromote and
 * MemberRemove change the meta shard alone (one Raft entry, so a change is recorded whole or not
 * at all), and every other group follows it: the node leading a group proposes, one at a time,
 * the configuration changes that make the group's voters and learners match the list.
 *
 * Before each change the leader reads the meta shard linearizably, so a leader whose meta replica
 * lags never undoes a change another leader already made: the list it acts on is at least as new
 * as any list a change was made from. A removed id is never added back, and an id the group holds
 * that the list neither names nor marks removed is left alone.
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

/** Whether a group's configuration matches the member list (nothing left to change). */
export function groupMatches(members: readonly RecordedMember[], isRemoved: (id: number) => boolean, config: ConfState): boolean {
  return config.votersOutgoing.length === 0 && nextGroupChange(members, isRemoved, config) === undefined;
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
  readonly log: { info(message: string): void; warn(message: string): void };
}

/**
 * Runs on every node; acts on the groups the node leads. A pass starts when something may have
 * changed (a configuration change or snapshot applied, a leadership change) and on a timer, which
 * retries what failed (a leader change in the middle, a change refused while another was pending).
 */
export class MembershipSync {
  private running = false;
  private again = false;
  private stopped = false;
  private readonly waiters = new Set<() => void>();
  private lastFailure = '';

  constructor(private readonly host: MembershipSyncHost) {}

  /** Something may have changed: runs a pass now, or after the one running. */
  poke(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.passes().finally(() => {
      this.running = false;
      this.notify();
    });
  }

  /** Whether every group this node hosts matches the member list, as this node sees both. */
  settled(): boolean {
    const members = this.host.members();
    const isRemoved = (id: number) => this.host.isRemoved(id);
    return this.host.groups().every((shard) => groupMatches(members, isRemoved, this.host.config(shard)));
  }

  /** Settles true once `settled()`, or false after `timeoutMs`. */
  whenSettled(timeoutMs: number): Promise<boolean> {
    if (this.settled()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = (): void => {
        if (!this.settled()) return;
        finish(true);
      };
      const finish = (value: boolean): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(value);
      };
      const timer = setTimeout(() => finish(this.settled()), timeoutMs);
      this.waiters.add(check);
      this.poke();
    });
  }

  /** A group's configuration changed here (applied or installed): waiters look again. */
  notify(): void {
    for (const check of [...this.waiters]) check();
  }

  stop(): void {
    this.stopped = true;
    for (const check of [...this.waiters]) check();
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

  /** Makes at most one change to `shard`, if this node leads it and it differs from the list. */
  private async step(shard: number): Promise<void> {
    const isRemoved = (id: number) => this.host.isRemoved(id);
    if (!this.host.leads(shard) || nextGroupChange(this.host.members(), isRemoved, this.host.config(shard)) === undefined) return;
    try {
      await this.host.readMeta();
      if (!this.host.leads(shard)) return;
      const change = nextGroupChange(this.host.members(), isRemoved, this.host.config(shard));
      if (change === undefined) return;
      const verb = change.type === 'remove' ? 'removing' : change.type === 'add-learner' ? 'adding learner' : 'adding voter';
      this.host.log.info(`shard ${shard}: ${verb} ${formatId(change.nodeId)} to match the member list`);
      await this.host.proposeChange(shard, change);
      this.lastFailure = '';
      // One change at a time: the next pass (from its apply) looks again.
      this.again = true;
    } catch (error) {
      // Retried by the next pass; the same reason is logged once.
      const reason = `shard ${shard}: could not bring the configuration to the member list: ${(error as Error).message}`;
      if (reason !== this.lastFailure) this.host.log.warn(`${reason} (retrying)`);
      this.lastFailure = reason;
    }
  }
}
