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
 *
 * A shard the map places on some members follows its replica list instead (`nextPlacedChange`),
 * and a replica move under way (src/engines/meta/stores.ts): the member moved to is added as a
 * learner at once (the move names it: no call is half way), a listed member the group lacks after
 * the same wait as above; a learner is promoted once it holds `learnerReadyRatio` of the leader's
 * log. Once the member moved to votes (for an election timeout, so one that stopped right after
 * its promotion is no longer counted as heard from) and is in sync, the leader finishes the move in the meta
 * shard (the list takes it in the place of the member moved from), and only then, every listed
 * member voting and a majority of those left in sync (heard from lately, holding the log up to the
 * commit index),
 * does a member the list no longer names leave the group, one change at a time, once it holds the
 * log up to the commit index (or after the wait, when it does not); a leader that is itself to
 * leave hands its leadership to a listed voter first, and the next leader removes it.
 *
 * A pass runs every election timeout over every group, so it costs O(1) per group when nothing
 * changed: the member list is read once per state of the meta shard (its version), not once per
 * group, and a group found in step with the list is skipped until its configuration or the list
 * changes (the next change is a pure function of the two).
 */
import { type ConfChangeSingle, type ConfState, assert } from '../../raft/index.js';
import { formatId, nextPlacedChange } from '../cluster/index.js';

export { nextPlacedChange, type PlacedStep } from '../cluster/index.js';

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
  /** The group's configuration now (asked every pass of every group this node leads: keep it cheap). */
  config(shard: number): ConfState;
  /**
   * The meta shard's state as a number that differs whenever `members()` or `isRemoved` may
   * answer differently (its applied index: the same index is the same state).
   */
  metaVersion(): number;
  members(): readonly RecordedMember[];
  /**
   * The members the shard map places `shard` on (empty: every member, the group following the
   * whole list); read with `members()`, at the same meta version.
   */
  replicasOf(shard: number): readonly number[];
  isRemoved(id: number): boolean;
  /** A linearizable read of the meta shard: settles once this node applied what was committed. */
  readMeta(): Promise<void>;
  proposeChange(shard: number, change: ConfChangeSingle): Promise<void>;
  /** This node's member id (a placed group's leader that is to leave hands its leadership over). */
  readonly self: number;
  /** Whether `id`'s log on `shard` is near enough the leader's to vote (asked where this node leads `shard`). */
  caughtUp(shard: number, id: number): boolean;
  /** Whether `id` is heard from lately and holds `shard`'s log up to the leader's commit index (asked where this node leads `shard`). */
  inSync(shard: number, id: number): boolean;
  /**
   * How long a move's new member must have been a voter before the move is finished (an election
   * timeout: a member that stopped right after its promotion is no longer counted as heard from).
   */
  readonly promotionSettleMs: number;
  /** Asks this node's leadership of `shard` to pass to `to` (done when `to` wins an election). */
  transferLeader(shard: number, to: number): void;
  /** The replica move of `shard` under way, read with `members()` at the same meta version. */
  movingOf(shard: number): { readonly from: number; readonly to: number } | undefined;
  /** Finishes that move in the meta shard (settles once applied). */
  finishMove(shard: number, from: number, to: number): Promise<void>;
  /** How long a member must be missing from a group before it is added (longer than a membership call). */
  readonly addAfterMs: number;
  now(): number;
  readonly log: { info(message: string): void; warn(message: string): void };
}

/** Whether two configurations hold the same ids in the same roles (what `nextGroupChange` reads of them). */
export function sameConfig(a: ConfState, b: ConfState): boolean {
  return sameIds(a.voters, b.voters) && sameIds(a.votersOutgoing, b.votersOutgoing) && sameIds(a.learners, b.learners) && sameIds(a.learnersNext, b.learnersNext);
}

/** ConfState's id lists are sorted ascending (confStateOf), so equal sets are equal lists. */
function sameIds(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The member list at one version of the meta shard, with the removals asked of it so far. */
interface MemberList {
  readonly version: number;
  readonly members: readonly RecordedMember[];
  readonly removed: Map<number, boolean>;
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
  /**
   * Per group, the configuration and meta version at which it was last found in step with the
   * list (no change to make). invariant: a group in here has no entry in `missing`.
   */
  private readonly inStep = new Map<number, { readonly metaVersion: number; readonly config: ConfState }>();
  private list: MemberList | undefined;
  /** Per group, the member a move adds and since when this node has seen it vote. */
  private readonly votingSince = new Map<number, { readonly id: number; readonly sinceMs: number }>();

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
      const groups = this.host.groups();
      for (const shard of groups) {
        if (this.stopped) return;
        // Most groups have nothing to do: only one that may need a change costs an await.
        if (this.mayChange(shard)) await this.step(shard);
      }
      this.forgetGone(groups);
    } while (this.again && !this.stopped);
  }

  /** The member list as the meta shard holds it now, read again only when its version moved. */
  private memberList(): MemberList {
    const version = this.host.metaVersion();
    assert(Number.isSafeInteger(version) && version >= 0, () => `meta version ${version}`);
    if (this.list === undefined || this.list.version !== version) this.list = { version, members: this.host.members(), removed: new Map() };
    return this.list;
  }

  private isRemoved(list: MemberList, id: number): boolean {
    let removed = list.removed.get(id);
    if (removed === undefined) list.removed.set(id, (removed = this.host.isRemoved(id)));
    return removed;
  }

  /** Whether this node leads `shard` and may have a change to make to it now (no I/O). */
  private mayChange(shard: number): boolean {
    try {
      if (!this.host.leads(shard)) {
        this.missing.delete(shard);
        return false;
      }
      return this.due(shard) !== undefined;
    } catch (error) {
      if (!this.stopped) this.failed(`shard ${shard}: could not compare the configuration with the member list: ${(error as Error).message}`);
      return false;
    }
  }

  /** The change to make to `shard` now, if any (an add only once it has been due long enough), or the leadership transfer to ask. */
  private due(shard: number): ConfChangeSingle | { readonly transferTo: number } | { readonly finishMove: { readonly from: number; readonly to: number } } | undefined {
    const list = this.memberList();
    const config = this.host.config(shard);
    const seenInStep = this.inStep.get(shard);
    if (seenInStep !== undefined && seenInStep.metaVersion === list.version && sameConfig(seenInStep.config, config)) {
      assert(!this.missing.has(shard), () => `shard ${shard}: in step with the list, yet an add is counted as due`);
      return undefined;
    }
    const placed = this.host.replicasOf(shard);
    let change: ConfChangeSingle | undefined;
    if (placed.length === 0) change = nextGroupChange(list.members, (id) => this.isRemoved(list, id), config);
    else {
      // A shard placed on some members follows its list (of the members the cluster has), and the move under way.
      const known = new Set(list.members.map((m) => m.id));
      const moving = this.host.movingOf(shard);
      // Finished once the member moved to votes, in sync (not one that stopped right after its
      // promotion), in a group that still holds the member moved from (or it left the cluster).
      const fromHeld = moving !== undefined && (config.voters.includes(moving.from) || this.isRemoved(list, moving.from) || !known.has(moving.from));
      const voting = moving !== undefined && config.votersOutgoing.length === 0 && config.voters.includes(moving.to);
      if (!voting) this.votingSince.delete(shard);
      else if (this.votingSince.get(shard)?.id !== moving.to) this.votingSince.set(shard, { id: moving.to, sinceMs: this.host.now() });
      const settled = voting && this.host.now() - this.votingSince.get(shard)!.sinceMs >= this.host.promotionSettleMs;
      if (voting && settled && fromHeld && this.host.inSync(shard, moving.to)) {
        this.inStep.delete(shard);
        this.missing.delete(shard);
        return { finishMove: moving };
      }
      const target = moving === undefined || placed.includes(moving.to) ? placed : [...placed, moving.to];
      const step = nextPlacedChange(
        target.filter((id) => known.has(id)),
        (id) => this.isRemoved(list, id),
        config,
        this.host.self,
        (id) => this.host.caughtUp(shard, id),
        (id) => this.host.inSync(shard, id),
      );
      if (step !== undefined && 'transferTo' in step) {
        this.inStep.delete(shard);
        this.missing.delete(shard);
        return step;
      }
      change = step?.change;
      // The member a move names is added at once.
      if (change?.type === 'add-learner' && change.nodeId === moving?.to) {
        this.inStep.delete(shard);
        this.missing.delete(shard);
        return change;
      }
    }
    if (change === undefined) {
      this.missing.delete(shard);
      // A placed group is in step only when it holds its listed members alone, all voting: one
      // with a learner catching up, or a leader waiting for a voter to hand over to, is looked at
      // again each pass.
      if (placed.length === 0 || (config.learners.length === 0 && sameIds(config.voters, [...placed].sort((a, b) => a - b)) && this.host.movingOf(shard) === undefined)) {
        this.inStep.set(shard, { metaVersion: list.version, config });
      }
      return undefined;
    }
    this.inStep.delete(shard);
    // Removals and promotions are made at once: only an add may be the gap of a call under way.
    // But a replica moved away (not removed from the cluster) leaves once it holds the log up to
    // the commit index, so the removal's own message tells it the outcome of the requests it was
    // waiting for (its leadership just passed on); one that does not (stopped, cut off) leaves
    // after the same wait as an add.
    const movedAway = change.type === 'remove' && placed.length > 0 && !this.isRemoved(list, change.nodeId) && !this.host.inSync(shard, change.nodeId);
    if ((change.type === 'remove' && !movedAway) || (change.type === 'add-voter' && config.learners.includes(change.nodeId))) {
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

  /** Makes at most one change to `shard`, if this node still leads it and it still differs from the list once the meta shard is read. */
  private async step(shard: number): Promise<void> {
    try {
      await this.host.readMeta();
      if (this.stopped || !this.host.leads(shard)) return;
      const change = this.due(shard);
      if (change === undefined) return;
      if ('finishMove' in change) {
        const { from, to } = change.finishMove;
        this.host.log.info(`shard ${shard}: ${formatId(to)} votes; finishing the replica move from ${formatId(from)}`);
        await this.host.finishMove(shard, from, to);
        this.lastFailure = '';
        this.again = true;
        return;
      }
      if ('transferTo' in change) {
        this.host.log.info(`shard ${shard}: handing leadership to ${formatId(change.transferTo)}, as this member leaves the shard's replica list`);
        this.host.transferLeader(shard, change.transferTo);
        return;
      }
      const verb = change.type === 'remove' ? 'removing' : change.type === 'add-learner' ? 'adding learner' : 'adding voter';
      this.host.log.info(`shard ${shard}: ${verb} ${formatId(change.nodeId)} to match the ${this.host.replicasOf(shard).length === 0 ? 'member' : 'replica'} list`);
      await this.host.proposeChange(shard, change);
      this.lastFailure = '';
      // One change at a time: the next pass looks again.
      this.again = true;
    } catch (error) {
      if (!this.stopped) this.failed(`shard ${shard}: could not bring the configuration to the member list: ${(error as Error).message}`);
    }
  }

  /** Drops what was kept of groups no longer hosted (a dropped store's). */
  private forgetGone(groups: readonly number[]): void {
    if (this.inStep.size === 0 && this.missing.size === 0 && this.votingSince.size === 0) return;
    const hosted = new Set(groups);
    for (const shard of this.votingSince.keys()) if (!hosted.has(shard)) this.votingSince.delete(shard);
    for (const shard of this.inStep.keys()) if (!hosted.has(shard)) this.inStep.delete(shard);
    for (const shard of this.missing.keys()) if (!hosted.has(shard)) this.missing.delete(shard);
  }

  /** Retried by the next pass; the same reason is logged once. */
  private failed(reason: string): void {
    if (reason !== this.lastFailure) this.host.log.warn(`${reason} (retrying)`);
    this.lastFailure = reason;
  }
}
