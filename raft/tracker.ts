import { Progress } from './progress.js';
import {
  type JointConfig,
  type VoteResult,
  jointCommittedIndex,
  jointVoteResult,
  jointVoterIds,
  sortedIds,
} from './quorum.js';
import type { ConfState } from './types.js';

/** A group's membership: voters (possibly joint), learners, and learners-to-be. */
export interface TrackerConfig {
  readonly voters: JointConfig;
  /** Whether a joint configuration is left automatically (only meaningful while joint). */
  readonly autoLeave: boolean;
  readonly learners: ReadonlySet<number>;
  /** Outgoing voters that become learners when the joint configuration is left. */
  readonly learnersNext: ReadonlySet<number>;
}

export const EMPTY_TRACKER_CONFIG: TrackerConfig = Object.freeze({
  voters: [new Set<number>(), new Set<number>()] as const,
  autoLeave: false,
  learners: new Set<number>(),
  learnersNext: new Set<number>(),
});

export type ProgressMap = Map<number, Progress>;

export function isJoint(config: TrackerConfig): boolean {
  return config.voters[1].size > 0;
}

export function confStateOf(config: TrackerConfig): ConfState {
  return {
    voters: sortedIds(config.voters[0]),
    votersOutgoing: sortedIds(config.voters[1]),
    learners: sortedIds(config.learners),
    learnersNext: sortedIds(config.learnersNext),
    autoLeave: config.autoLeave,
  };
}

export function describeConfig(config: TrackerConfig): string {
  let text = `voters=(${sortedIds(config.voters[0]).join(' ')})`;
  if (isJoint(config)) text += `&&(${sortedIds(config.voters[1]).join(' ')})`;
  if (config.learners.size > 0) text += ` learners=(${sortedIds(config.learners).join(' ')})`;
  if (config.learnersNext.size > 0) text += ` learners_next=(${sortedIds(config.learnersNext).join(' ')})`;
  if (config.autoLeave) text += ' autoleave';
  return text;
}

/**
 * The leader's (and candidate's) view of the group: the configuration, each member's progress,
 * and the votes of the current election.
 */
export class ProgressTracker {
  config: TrackerConfig = EMPTY_TRACKER_CONFIG;
  progress: ProgressMap = new Map();
  readonly votes = new Map<number, boolean>();
  /** Every id with a progress, ascending; rebuilt when the configuration changes. */
  private idsSorted: number[] = [];
  private voterIdsSorted: number[] = [];

  constructor(
    readonly inflightMessagesMax: number,
    readonly inflightBytesMax: number,
  ) {}

  /** Installs a configuration and its progress map (as produced by the conf-change functions). */
  switchTo(config: TrackerConfig, progress: ProgressMap): void {
    this.config = config;
    this.progress = progress;
    this.idsSorted = [...progress.keys()].sort((a, b) => a - b);
    this.voterIdsSorted = jointVoterIds(config.voters);
  }

  confState(): ConfState {
    return confStateOf(this.config);
  }

  isSingleton(): boolean {
    return this.config.voters[0].size === 1 && this.config.voters[1].size === 0;
  }

  isVoter(id: number): boolean {
    return this.config.voters[0].has(id) || this.config.voters[1].has(id);
  }

  /** The largest index acknowledged by a quorum of voters (Infinity with no voters). */
  committed(): number {
    return jointCommittedIndex(this.config.voters, (id) => this.progress.get(id)?.match);
  }

  /** Visits every member's progress in ascending id order. */
  visit(visitor: (id: number, progress: Progress) => void): void {
    for (const id of this.idsSorted) {
      const progress = this.progress.get(id);
      if (progress !== undefined) visitor(id, progress);
    }
  }

  ids(): readonly number[] {
    return this.idsSorted;
  }

  voterIds(): readonly number[] {
    return this.voterIdsSorted;
  }

  /** Whether a quorum of voters has been heard from since the last CheckQuorum round. */
  quorumActive(): boolean {
    const active = new Map<number, boolean>();
    this.visit((id, progress) => {
      if (!progress.isLearner) active.set(id, progress.recentActive);
    });
    return jointVoteResult(this.config.voters, active) === 'won';
  }

  resetVotes(): void {
    this.votes.clear();
  }

  /** Records a vote; only the first vote of each voter in an election counts. */
  recordVote(id: number, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  tallyVotes(): { granted: number; rejected: number; result: VoteResult } {
    let granted = 0;
    let rejected = 0;
    for (const [id, progress] of this.progress) {
      if (progress.isLearner) continue;
      const vote = this.votes.get(id);
      if (vote === undefined) continue;
      if (vote) granted++;
      else rejected++;
    }
    return { granted, rejected, result: jointVoteResult(this.config.voters, this.votes) };
  }
}
