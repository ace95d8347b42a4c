/**
 * The Raft state machine of one group. Pure: it consumes messages and ticks and produces messages,
 * log entries and state for the RawNode to hand out in a Ready. No clock, no I/O, no randomness
 * except the seeded generator it is given.
 *
 * One entry point, `step`, applies the term rules once and then calls the current role's step
 * function (`stepLeader`, `stepCandidate`, `stepFollower`).
 */
import { assert, assertIndex } from './assert.js';
import { decodeConfChange } from './codec.js';
import { applyConfChangeTo, restoreConfig, type ChangeResult } from './confchange.js';
import { Inflights } from './inflights.js';
import {
  electionTicksDefault,
  electionTicksMax,
  electionTicksMin,
  heartbeatTicksDefault,
  inflightBytesMaxDefault,
  inflightMessagesMaxDefault,
  messageBytesMaxDefault,
  proposalEntriesMax,
  readIndexPendingMax,
  uncommittedEntriesBytesMaxDefault,
  committedEntriesBytesPerReadyMaxDefault,
  leaseClockRateErrorMax,
} from './limits.js';
import type { Prng } from './prng.js';
import { Progress } from './progress.js';
import { jointCommittedIndex, jointVoteResult } from './quorum.js';
import { RaftLog } from './raft-log.js';
import { ReadOnlyQueue } from './read-only.js';
import { type LogStorage, isLogUnavailable, payloadBytes } from './storage.js';
import { type ProgressMap, ProgressTracker, type TrackerConfig, describeConfig } from './tracker.js';
import {
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type MessageType,
  NONE,
  type ReadOnlyOption,
  type ReadState,
  type Snapshot,
  type SoftState,
  type StateRole,
  isEmptyHardState,
  isEmptySnapshot,
  isLeaveJoint,
  makeMessage,
} from './types.js';

/** Node ids in log lines are hex, as etcd's raft prints them (%x). */
const idHex = (id: number): string => id.toString(16);

/** Why a proposal (or a request routed like one) was refused. Callers map these to errors. */
export type DropReason =
  | 'no-leader'
  | 'transfer-in-progress'
  | 'uncommitted-size-limit'
  | 'not-member'
  | 'forwarding-disabled'
  | 'conf-change-pending'
  | 'conf-change-in-joint'
  | 'conf-change-not-joint'
  | 'conf-change-invalid'
  | 'too-many-entries'
  | 'read-index-queue-full'
  /** A MsgPropDropped whose reason this build does not know (a newer peer's). */
  | 'unknown';

/**
 * The stable wire codes of drop reasons, carried in a MsgPropDropped's rejectHint. Never renumber;
 * give a new reason the next code. `unknown` is never sent: it is what a code this build does not
 * know reads as.
 */
const DROP_REASON_CODES: Readonly<Record<Exclude<DropReason, 'unknown'>, number>> = {
  'no-leader': 0,
  'transfer-in-progress': 1,
  'uncommitted-size-limit': 2,
  'not-member': 3,
  'forwarding-disabled': 4,
  'conf-change-pending': 5,
  'conf-change-in-joint': 6,
  'conf-change-not-joint': 7,
  'conf-change-invalid': 8,
  'too-many-entries': 9,
  'read-index-queue-full': 10,
};
const DROP_REASONS_BY_CODE: ReadonlyMap<number, DropReason> = new Map(Object.entries(DROP_REASON_CODES).map(([reason, code]) => [code, reason as DropReason]));

/** The reason a MsgPropDropped's rejectHint names. */
export function dropReasonOfCode(code: number): DropReason {
  return DROP_REASONS_BY_CODE.get(code) ?? 'unknown';
}

function dropReasonCode(reason: DropReason): number {
  assert(reason !== 'unknown', 'a refusal of unknown reason is never sent');
  return DROP_REASON_CODES[reason];
}

/** A proposal this node forwarded that the node it reached refused: none of its entries was appended. */
export interface DroppedProposal {
  readonly entries: readonly Entry[];
  readonly reason: DropReason;
}

export const dropReasonText: Readonly<Record<DropReason, string>> = {
  'no-leader': 'no leader is known',
  'transfer-in-progress': 'a leadership transfer is in progress',
  'uncommitted-size-limit': 'too many uncommitted bytes at the leader',
  'not-member': 'this node is no longer a member',
  'forwarding-disabled': 'proposal forwarding to the leader is disabled',
  'conf-change-pending': 'a previous configuration change is not yet applied',
  'conf-change-in-joint': 'the configuration is joint; only leaving the joint configuration is allowed',
  'conf-change-not-joint': 'the configuration is not joint; there is nothing to leave',
  'conf-change-invalid': 'the configuration change is invalid',
  'too-many-entries': 'too many entries in one proposal',
  'read-index-queue-full': 'too many read index requests are waiting',
  unknown: 'refused where it was forwarded, for a reason this node does not know',
};

export class ProposalDroppedError extends Error {
  override readonly name = 'ProposalDroppedError';
  constructor(
    readonly reason: DropReason,
    detail?: string,
  ) {
    super(`proposal dropped: ${dropReasonText[reason]}${detail === undefined ? '' : ` (${detail})`}`);
  }
}

export interface RaftLogger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
}

export const silentLogger: RaftLogger = { debug() {}, info() {}, warn() {} };

export interface RaftConfig {
  /** This node's id: a positive safe integer. */
  readonly id: number;
  readonly storage: LogStorage;
  /** Seeded randomness for election timeouts. */
  readonly random: Prng;
  readonly electionTicks?: number;
  readonly heartbeatTicks?: number;
  /** The last index the application applied before a restart (0 for a new node). */
  readonly applied?: number;
  readonly messageBytesMax?: number;
  readonly committedEntriesBytesPerReadyMax?: number;
  readonly uncommittedEntriesBytesMax?: number;
  readonly inflightMessagesMax?: number;
  readonly inflightBytesMax?: number;
  /** The leader steps down when it has not heard from a quorum for an election timeout. */
  readonly checkQuorum?: boolean;
  /** Candidates first ask whether they could win, so a rejoining node does not disrupt. */
  readonly preVote?: boolean;
  /** 'lease-based' requires checkQuorum. */
  readonly readOnlyOption?: ReadOnlyOption;
  readonly disableProposalForwarding?: boolean;
  /** A leader removed from the configuration steps down once the removal is applied. */
  readonly stepDownOnRemoval?: boolean;
  readonly logger?: RaftLogger;
  /** Breaks safety on purpose so tests can prove the checkers catch it. Never set in production. */
  readonly unsafeTestingKnobs?: { readonly voteTwiceInTerm?: boolean };
  /**
   * Readies that may be in flight at once (handed out by `ready()`, not yet `advance()`d), so
   * the application can persist one while it sends and applies the next. Default 1. A Ready
   * with a snapshot is never handed out beside another.
   */
  readonly readiesInFlightMax?: number;
}

export class RaftConfigError extends Error {
  override readonly name = 'RaftConfigError';
}

const CAMPAIGN_TRANSFER = Uint8Array.from('CampaignTransfer', (c) => c.charCodeAt(0));

function isCampaignTransfer(context: Uint8Array | undefined): boolean {
  if (context === undefined || context.byteLength !== CAMPAIGN_TRANSFER.byteLength) return false;
  for (let i = 0; i < context.byteLength; i++) if (context[i] !== CAMPAIGN_TRANSFER[i]) return false;
  return true;
}

type CampaignType = 'pre-election' | 'election' | 'transfer';

function voteResponseType(type: MessageType): MessageType {
  return type === 'MsgVote' ? 'MsgVoteResp' : 'MsgPreVoteResp';
}

function positiveInt(value: number | undefined, fallback: number, name: string, allowZero = false): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v < 0 || (!allowZero && v === 0)) {
    throw new RaftConfigError(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${v}`);
  }
  return v;
}

export class Raft {
  readonly id: number;
  term = 0;
  vote = NONE;
  readonly log: RaftLog;
  readonly tracker: ProgressTracker;
  role: StateRole = 'follower';
  isLearner = false;
  lead = NONE;
  /** The node leadership is being transferred to, or NONE. */
  leadTransferee = NONE;
  /** The index of the last conf change this leader may have in its log; one change at a time. */
  pendingConfIndex = 0;
  /** Payload bytes appended by this leader and not yet applied. */
  uncommittedBytes = 0;
  readOnly: ReadOnlyQueue;
  /** ReadIndex requests waiting until this leader commits an entry of its own term. */
  pendingReadIndexMessages: Message[] = [];

  electionElapsed = 0;
  heartbeatElapsed = 0;
  /** Leader: ticks since it became leader (stamped on heartbeats for the lease). */
  leaderTicks = 0;
  /** Leader: per follower, 1 + the leader tick of the newest heartbeat it acknowledged. */
  private readonly heartbeatAcks = new Map<number, number>();
  /** Leader: a transfer was started this term; a forced election may follow, so no lease. */
  private leaseForfeited = false;
  /**
   * With lease-based reads, a node that just started does not vote for an election timeout: it
   * may have acknowledged a leader's heartbeat before it restarted and forgotten it.
   */
  private startupLeaseTicksLeft = 0;
  /** Leader ticks a lease lasts after the heartbeat a quorum acknowledged (0: no lease reads). */
  readonly leaseTicks: number;
  randomizedElectionTimeout = 0;
  readonly electionTimeout: number;
  readonly heartbeatTimeout: number;

  /** Messages that may be sent right away. */
  messages: Message[] = [];
  /** Messages that may be sent only once the current Ready's writes are durable. */
  messagesAfterAppend: Message[] = [];
  readStates: ReadState[] = [];
  /** Proposals of ours that were forwarded and refused where they arrived (see MsgPropDropped). */
  droppedProposals: DroppedProposal[] = [];

  readonly checkQuorum: boolean;
  readonly preVote: boolean;
  readonly readOnlyOption: ReadOnlyOption;
  readonly disableProposalForwarding: boolean;
  readonly stepDownOnRemoval: boolean;
  readonly messageBytesMax: number;
  readonly uncommittedEntriesBytesMax: number;
  readonly inflightMessagesMax: number;
  readonly inflightBytesMax: number;
  readonly logger: RaftLogger;
  private readonly random: Prng;
  private readonly voteTwiceInTerm: boolean;

  private stepRole: (m: Message) => DropReason | undefined = (m) => this.stepFollower(m);
  private tickRole: () => void = () => this.tickElection();

  constructor(config: RaftConfig) {
    if (!Number.isSafeInteger(config.id) || config.id <= 0) {
      throw new RaftConfigError(`id must be a positive safe integer, got ${config.id}`);
    }
    this.id = config.id;
    this.electionTimeout = positiveInt(config.electionTicks, electionTicksDefault, 'electionTicks');
    this.heartbeatTimeout = positiveInt(config.heartbeatTicks, heartbeatTicksDefault, 'heartbeatTicks');
    if (this.electionTimeout < electionTicksMin || this.electionTimeout > electionTicksMax) {
      throw new RaftConfigError(`electionTicks must be in [${electionTicksMin}, ${electionTicksMax}]`);
    }
    if (this.electionTimeout <= this.heartbeatTimeout) {
      throw new RaftConfigError('electionTicks must be greater than heartbeatTicks');
    }
    this.messageBytesMax = positiveInt(config.messageBytesMax, messageBytesMaxDefault, 'messageBytesMax');
    this.uncommittedEntriesBytesMax = positiveInt(
      config.uncommittedEntriesBytesMax,
      uncommittedEntriesBytesMaxDefault,
      'uncommittedEntriesBytesMax',
    );
    this.inflightMessagesMax = positiveInt(config.inflightMessagesMax, inflightMessagesMaxDefault, 'inflightMessagesMax');
    this.inflightBytesMax = positiveInt(config.inflightBytesMax, inflightBytesMaxDefault, 'inflightBytesMax', true);
    if (this.inflightBytesMax !== 0 && this.inflightBytesMax < this.messageBytesMax) {
      throw new RaftConfigError('inflightBytesMax must be 0 (unlimited) or at least messageBytesMax');
    }
    const applyingBytesMax = positiveInt(
      config.committedEntriesBytesPerReadyMax,
      committedEntriesBytesPerReadyMaxDefault,
      'committedEntriesBytesPerReadyMax',
    );
    this.checkQuorum = config.checkQuorum ?? true;
    this.preVote = config.preVote ?? true;
    this.readOnlyOption = config.readOnlyOption ?? 'safe';
    if (this.readOnlyOption === 'lease-based' && !this.checkQuorum) {
      throw new RaftConfigError('lease-based reads are only safe with checkQuorum enabled');
    }
    this.disableProposalForwarding = config.disableProposalForwarding ?? false;
    this.stepDownOnRemoval = config.stepDownOnRemoval ?? true;
    this.logger = config.logger ?? silentLogger;
    this.random = config.random;
    this.voteTwiceInTerm = config.unsafeTestingKnobs?.voteTwiceInTerm ?? false;
    this.readOnly = new ReadOnlyQueue(this.readOnlyOption);
    // A follower that acknowledged a heartbeat refuses votes for at least electionTimeout - 1 of
    // its own ticks after receiving it; the leader counts from sending it, on its own clock.
    this.leaseTicks =
      this.readOnlyOption === 'lease-based'
        ? Math.max(0, Math.floor((this.electionTimeout - 1) * (1 - leaseClockRateErrorMax)))
        : 0;
    this.startupLeaseTicksLeft = this.readOnlyOption === 'lease-based' ? this.electionTimeout : 0;
    this.tracker = new ProgressTracker(this.inflightMessagesMax, this.inflightBytesMax);

    this.log = new RaftLog(config.storage, applyingBytesMax);
    const { hardState, confState } = config.storage.initialState();
    const restored = restoreConfig(confState, this.changerOptions());
    if (!restored.ok) throw new RaftConfigError(`invalid stored configuration: ${restored.error}`);
    this.switchToConfig(restored.config, restored.progress);
    if (!isEmptyHardState(hardState)) this.loadState(hardState);
    const applied = config.applied ?? 0;
    assertIndex(applied, 'applied');
    if (applied > 0) this.log.appliedTo(applied, 0);
    this.becomeFollower(this.term, NONE);
    this.logger.info(
      `${idHex(this.id)} newRaft [${describeConfig(this.tracker.config)}] term=${this.term} commit=${this.log.committed} ` +
        `applied=${this.log.applied} lastIndex=${this.log.lastIndex()} lastTerm=${this.log.lastTerm()}`,
    );
  }

  private changerOptions(): { lastIndex: number; inflightMessagesMax: number; inflightBytesMax: number } {
    return {
      lastIndex: this.log.lastIndex(),
      inflightMessagesMax: this.inflightMessagesMax,
      inflightBytesMax: this.inflightBytesMax,
    };
  }

  private loadState(hs: HardState): void {
    assert(
      hs.commit >= this.log.committed && hs.commit <= this.log.lastIndex(),
      () => `${this.id} state.commit ${hs.commit} is out of range [${this.log.committed}, ${this.log.lastIndex()}]`,
    );
    this.log.committed = hs.commit;
    this.term = hs.term;
    this.vote = hs.vote;
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  softState(): SoftState {
    return { lead: this.lead, role: this.role };
  }

  // ---------------------------------------------------------------------------------------------
  // Sending

  /** Queues a message. Responses that depend on durable state wait for the next persist. */
  send(m: Message): void {
    if (m.from === NONE) m.from = this.id;
    if (m.type === 'MsgVote' || m.type === 'MsgVoteResp' || m.type === 'MsgPreVote' || m.type === 'MsgPreVoteResp') {
      // Campaign messages carry the term they are for, which may differ from ours (pre-vote).
      assert(m.term !== 0, () => `term must be set when sending ${m.type}`);
    } else {
      assert(m.term === 0, () => `term must not be set when sending ${m.type} (was ${m.term})`);
      // Proposals and read requests are forwarded like local messages: they carry no term (nor
      // does the answer to a dropped one, which is about the proposal, not about a term).
      if (m.type !== 'MsgProp' && m.type !== 'MsgReadIndex' && m.type !== 'MsgPropDropped') m.term = this.term;
    }
    if (m.type === 'MsgAppResp' || m.type === 'MsgVoteResp' || m.type === 'MsgPreVoteResp') {
      // Acknowledgements and votes promise durable state: they leave only after the persist.
      this.messagesAfterAppend.push(m);
    } else {
      assert(m.to !== this.id, () => `${this.id} must not send ${m.type} to itself`);
      this.messages.push(m);
    }
  }

  /** Sends an append (or a snapshot) to `to` if its progress allows; returns whether it sent. */
  private maybeSendAppend(to: number, sendIfEmpty: boolean): boolean {
    const pr = this.tracker.progress.get(to)!;
    if (pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    let prevTerm: number;
    try {
      prevTerm = this.log.term(prevIndex);
    } catch (error) {
      if (isLogUnavailable(error, 'compacted')) return this.maybeSendSnapshot(to, pr);
      throw error;
    }
    let entries: Entry[] = [];
    // With a full window only empty appends go out: they still get an answer that frees it.
    if (pr.state !== 'replicate' || !pr.inflights.full()) {
      try {
        entries = this.log.entriesFrom(pr.next, this.messageBytesMax);
      } catch (error) {
        if (isLogUnavailable(error, 'compacted')) return this.maybeSendSnapshot(to, pr);
        // Storage is loading older entries; a later heartbeat response retries.
        if (isLogUnavailable(error, 'temporarily-unavailable')) return false;
        throw error;
      }
    }
    if (entries.length === 0 && !sendIfEmpty) return false;
    this.send(
      makeMessage({ type: 'MsgApp', to, index: prevIndex, logTerm: prevTerm, entries, commit: this.log.committed }),
    );
    pr.sentEntries(entries.length, payloadBytes(entries));
    pr.sentCommit = this.log.committed;
    return true;
  }

  private maybeSendSnapshot(to: number, pr: Progress): boolean {
    if (!pr.recentActive) {
      this.logger.debug(`${idHex(this.id)} ignore sending snapshot to ${idHex(to)}: not recently active`);
      return false;
    }
    let snapshot: Snapshot;
    try {
      snapshot = this.log.snapshot();
    } catch (error) {
      if (isLogUnavailable(error, 'snapshot-temporarily-unavailable')) {
        this.logger.debug(`${idHex(this.id)} failed to send snapshot to ${idHex(to)}: snapshot temporarily unavailable`);
        return false;
      }
      throw error;
    }
    assert(!isEmptySnapshot(snapshot), 'need a non-empty snapshot to catch up a follower');
    const cs = snapshot.metadata.confState;
    if (!cs.voters.includes(to) && !cs.learners.includes(to) && !cs.votersOutgoing.includes(to)) {
      // The follower would refuse it (it is not a member at that index) and ask again forever.
      // The application must keep a snapshot taken after the last applied conf change.
      this.logger.warn(
        `${idHex(this.id)} not sending snapshot [index: ${snapshot.metadata.index}] to ${idHex(to)}: it predates ${idHex(to)}'s membership`,
      );
      return false;
    }
    this.logger.info(
      `${idHex(this.id)} [firstindex: ${this.log.firstIndex()}, commit: ${this.log.committed}] sent snapshot ` +
        `[index: ${snapshot.metadata.index}, term: ${snapshot.metadata.term}] to ${idHex(to)} [${pr.describe()}]`,
    );
    pr.becomeSnapshot(snapshot.metadata.index);
    this.send(makeMessage({ type: 'MsgSnap', to, snapshot }));
    return true;
  }

  private sendHeartbeat(to: number, context: Uint8Array | undefined): void {
    // A follower may not have the leader's whole log yet: never tell it to commit beyond its match.
    const commit = Math.min(this.tracker.progress.get(to)!.match, this.log.committed);
    // With leases, `index` carries the leader's tick; the follower echoes it back.
    const index = this.leaseTicks > 0 ? this.leaderTicks : 0;
    this.send(makeMessage({ type: 'MsgHeartbeat', to, commit, index, context }));
    this.tracker.progress.get(to)!.sentCommit = commit;
  }

  private bcastAppend(): void {
    this.tracker.visit((id) => {
      if (id !== this.id) this.maybeSendAppend(id, true);
    });
  }

  private bcastHeartbeat(context: Uint8Array | undefined): void {
    this.tracker.visit((id) => {
      if (id !== this.id) this.sendHeartbeat(id, context);
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Roles

  private reset(term: number): void {
    assert(term >= this.term, () => `term must never decrease: ${this.term} -> ${term}`);
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedElectionTimeout();
    this.abortLeaderTransfer();
    this.tracker.resetVotes();
    const lastIndex = this.log.lastIndex();
    this.tracker.visit((id, pr) => {
      this.tracker.progress.set(
        id,
        new Progress({
          match: id === this.id ? lastIndex : 0,
          next: lastIndex + 1,
          inflights: new Inflights(this.inflightMessagesMax, this.inflightBytesMax),
          isLearner: pr.isLearner,
          recentActive: id === this.id,
        }),
      );
    });
    this.pendingConfIndex = 0;
    this.uncommittedBytes = 0;
    this.readOnly = new ReadOnlyQueue(this.readOnlyOption);
    // Reads queued for a former leadership would be answered with another term's index.
    this.pendingReadIndexMessages = [];
    this.leaderTicks = 0;
    this.heartbeatAcks.clear();
    this.leaseForfeited = false;
  }

  private resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout = this.electionTimeout + this.random.nextInt(this.electionTimeout);
  }

  becomeFollower(term: number, lead: number): void {
    this.stepRole = (m) => this.stepFollower(m);
    this.reset(term);
    this.tickRole = () => this.tickElection();
    this.lead = lead;
    this.role = 'follower';
    this.logger.info(`${idHex(this.id)} became follower at term ${this.term}`);
  }

  becomeCandidate(): void {
    assert(this.role !== 'leader', 'invalid transition [leader -> candidate]');
    this.stepRole = (m) => this.stepCandidate(m);
    this.reset(this.term + 1);
    this.tickRole = () => this.tickElection();
    this.vote = this.id;
    this.role = 'candidate';
    this.logger.info(`${idHex(this.id)} became candidate at term ${this.term}`);
  }

  becomePreCandidate(): void {
    assert(this.role !== 'leader', 'invalid transition [leader -> pre-candidate]');
    // Neither the term nor the vote changes: a pre-election must not disturb anyone.
    this.stepRole = (m) => this.stepCandidate(m);
    this.tracker.resetVotes();
    this.tickRole = () => this.tickElection();
    this.lead = NONE;
    this.role = 'pre-candidate';
    this.logger.info(`${idHex(this.id)} became pre-candidate at term ${this.term}`);
  }

  becomeLeader(): void {
    assert(this.role !== 'follower', 'invalid transition [follower -> leader]');
    this.stepRole = (m) => this.stepLeader(m);
    this.reset(this.term);
    this.tickRole = () => this.tickHeartbeat();
    this.lead = this.id;
    this.role = 'leader';
    const self = this.tracker.progress.get(this.id)!;
    self.becomeReplicate();
    self.recentActive = true;
    // Entries inherited from earlier terms may hold a conf change; until they are applied no new
    // change may be proposed.
    this.pendingConfIndex = this.log.lastIndex();
    // An empty entry of the new term: committing it commits everything before it (figure 8).
    const appended = this.appendEntries([{ term: 0, index: 0, type: 'normal', data: new Uint8Array(0) }]);
    assert(appended, 'the empty leader entry must always be accepted');
    this.logger.info(`${idHex(this.id)} became leader at term ${this.term}`);
  }

  private promotable(): boolean {
    const pr = this.tracker.progress.get(this.id);
    return pr !== undefined && !pr.isLearner && !this.log.hasNextOrInProgressSnapshot();
  }

  private hup(type: CampaignType): void {
    if (this.role === 'leader') {
      this.logger.debug(`${idHex(this.id)} ignoring MsgHup because already leader`);
      return;
    }
    if (!this.promotable()) {
      this.logger.warn(`${idHex(this.id)} is unpromotable and can not campaign`);
      return;
    }
    if (this.hasUnappliedConfChanges()) {
      this.logger.warn(`${idHex(this.id)} cannot campaign at term ${this.term}: pending configuration changes to apply`);
      return;
    }
    this.logger.info(`${idHex(this.id)} is starting a new election at term ${this.term}`);
    this.campaign(type);
  }

  private hasUnappliedConfChanges(): boolean {
    let lo = this.log.applied + 1;
    const hi = this.log.committed + 1;
    while (lo < hi) {
      let page: Entry[];
      try {
        page = this.log.slice(lo, hi, this.messageBytesMax);
      } catch (error) {
        // Cannot tell: act as if there were one, and try again at the next timeout.
        if (isLogUnavailable(error)) return true;
        throw error;
      }
      for (const entry of page) if (entry.type === 'conf-change') return true;
      lo += page.length;
    }
    return false;
  }

  private campaign(type: CampaignType): void {
    let voteType: MessageType;
    let term: number;
    if (type === 'pre-election') {
      this.becomePreCandidate();
      voteType = 'MsgPreVote';
      // A pre-vote asks for the next term without moving to it.
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      voteType = 'MsgVote';
      term = this.term;
    }
    const lastIndex = this.log.lastIndex();
    const lastTerm = this.log.lastTerm();
    for (const id of this.tracker.voterIds()) {
      if (id === this.id) {
        // Our own vote counts once it is durable: it comes back through the persist.
        this.send(makeMessage({ type: voteResponseType(voteType), to: id, term }));
        continue;
      }
      this.logger.info(
        `${idHex(this.id)} [logterm: ${lastTerm}, index: ${lastIndex}] sent ${voteType} request to ${id} at term ${this.term}`,
      );
      this.send(
        makeMessage({
          type: voteType,
          to: id,
          term,
          index: lastIndex,
          logTerm: lastTerm,
          context: type === 'transfer' ? CAMPAIGN_TRANSFER : undefined,
        }),
      );
    }
  }

  private poll(from: number, type: MessageType, granted: boolean): ReturnType<ProgressTracker['tallyVotes']> {
    this.logger.info(
      `${idHex(this.id)} received ${type} ${granted ? '' : 'rejection '}from ${from} at term ${this.term}`,
    );
    this.tracker.recordVote(from, granted);
    return this.tracker.tallyVotes();
  }

  // ---------------------------------------------------------------------------------------------
  // Ticks

  tick(): void {
    this.tickRole();
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.startupLeaseTicksLeft > 0) this.startupLeaseTicksLeft--;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.step(makeMessage({ type: 'MsgHup', from: this.id }));
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    this.leaderTicks++;
    if (this.electionElapsed >= this.electionTimeout) {
      this.electionElapsed = 0;
      if (this.checkQuorum) this.step(makeMessage({ type: 'MsgCheckQuorum', from: this.id }));
      // A transfer that did not finish within an election timeout is abandoned.
      if (this.role === 'leader' && this.leadTransferee !== NONE) this.abortLeaderTransfer();
    }
    if (this.role !== 'leader') return;
    if (this.heartbeatElapsed >= this.heartbeatTimeout) {
      this.heartbeatElapsed = 0;
      this.step(makeMessage({ type: 'MsgBeat', from: this.id }));
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Stepping

  /** Handles one message. Returns why a proposal or read request was refused, if it was. */
  step(m: Message): DropReason | undefined {
    assertIndex(m.term, 'message term');
    if (m.term === 0) {
      // Local message (or a forwarded proposal / read request).
    } else if (m.term > this.term) {
      if (m.type === 'MsgVote' || m.type === 'MsgPreVote') {
        const force = isCampaignTransfer(m.context);
        const inLease =
          this.checkQuorum &&
          ((this.lead !== NONE && this.electionElapsed < this.electionTimeout) || this.startupLeaseTicksLeft > 0);
        if (!force && inLease) {
          // We heard from a live leader within the minimum election timeout: this candidate is
          // most likely a disruptive rejoining node. Do not change term, do not answer.
          this.logger.info(
            `${idHex(this.id)} [term: ${this.term}] ignored ${m.type} from ${idHex(m.from)} at term ${m.term}: ` +
              `lease is not expired (remaining ticks: ${this.electionTimeout - this.electionElapsed})`,
          );
          return undefined;
        }
      }
      if (m.type === 'MsgPreVote') {
        // Never change term in response to a pre-vote.
      } else if (m.type === 'MsgPreVoteResp' && !m.reject) {
        // The term moves forward only when the pre-election is won.
      } else {
        this.logger.info(`${idHex(this.id)} [term: ${this.term}] received a ${m.type} message with higher term from ${idHex(m.from)} [term: ${m.term}]`);
        const lead = m.type === 'MsgApp' || m.type === 'MsgHeartbeat' || m.type === 'MsgSnap' ? m.from : NONE;
        this.becomeFollower(m.term, lead);
      }
    } else if (m.term < this.term) {
      if ((this.checkQuorum || this.preVote) && (m.type === 'MsgHeartbeat' || m.type === 'MsgApp')) {
        // A leader cut off by a partition would otherwise never learn it was replaced; with
        // pre-vote we will not raise our term to reach it, so tell it ours.
        this.send(makeMessage({ type: 'MsgAppResp', to: m.from }));
      } else if (m.type === 'MsgPreVote') {
        // Answer so the pre-candidate learns our term and stops campaigning.
        this.send(makeMessage({ type: 'MsgPreVoteResp', to: m.from, term: this.term, reject: true }));
      }
      return undefined;
    }

    switch (m.type) {
      case 'MsgHup':
        this.hup(this.preVote ? 'pre-election' : 'election');
        return undefined;
      case 'MsgVote':
      case 'MsgPreVote':
        this.handleVoteRequest(m);
        return undefined;
      case 'MsgPropDropped':
        this.droppedProposals.push({ entries: m.entries, reason: dropReasonOfCode(m.rejectHint) });
        return undefined;
      default: {
        const refused = this.stepRole(m);
        // A proposal forwarded here and refused (by a leader handing over, a follower without a
        // leader, …): without an answer its proposer could only wait for its request's timeout.
        if (refused !== undefined && m.type === 'MsgProp' && m.from !== NONE && m.from !== this.id) {
          this.send(makeMessage({ type: 'MsgPropDropped', to: m.from, entries: m.entries, rejectHint: dropReasonCode(refused) }));
        }
        return refused;
      }
    }
  }

  private handleVoteRequest(m: Message): void {
    const canVote =
      this.voteTwiceInTerm ||
      this.vote === m.from ||
      // We have not voted and do not know a leader in this term.
      (this.vote === NONE && this.lead === NONE) ||
      // A pre-vote for a future term.
      (m.type === 'MsgPreVote' && m.term > this.term);
    if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
      this.logger.info(
        `${idHex(this.id)} [logterm: ${this.log.lastTerm()}, index: ${this.log.lastIndex()}, vote: ${idHex(this.vote)}] ` +
          `cast ${m.type} for ${idHex(m.from)} [logterm: ${m.logTerm}, index: ${m.index}] at term ${this.term}`,
      );
      // The response carries the candidate's term (for a pre-vote, ours has not moved).
      this.send(makeMessage({ type: voteResponseType(m.type), to: m.from, term: m.term }));
      if (m.type === 'MsgVote') {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.logger.info(
        `${idHex(this.id)} [logterm: ${this.log.lastTerm()}, index: ${this.log.lastIndex()}, vote: ${idHex(this.vote)}] ` +
          `rejected ${m.type} from ${idHex(m.from)} [logterm: ${m.logTerm}, index: ${m.index}] at term ${this.term}`,
      );
      this.send(makeMessage({ type: voteResponseType(m.type), to: m.from, term: this.term, reject: true }));
    }
  }

  private stepLeader(m: Message): DropReason | undefined {
    switch (m.type) {
      case 'MsgBeat':
        this.bcastHeartbeat(this.readOnly.lastPendingContext());
        return undefined;
      case 'MsgCheckQuorum': {
        // The leader always counts itself as active.
        const self = this.tracker.progress.get(this.id);
        if (self !== undefined) self.recentActive = true;
        if (!this.tracker.quorumActive()) {
          this.logger.warn(`${idHex(this.id)} stepped down to follower since quorum is not active`);
          this.becomeFollower(this.term, NONE);
        }
        this.tracker.visit((id, pr) => {
          if (id !== this.id) pr.recentActive = false;
        });
        return undefined;
      }
      case 'MsgProp':
        return this.handleProposal(m);
      case 'MsgReadIndex':
        return this.handleReadIndex(m);
      default:
        break;
    }

    // Everything else comes from (or is about) a member.
    const pr = this.tracker.progress.get(m.from);
    if (pr === undefined) {
      this.logger.debug(`${idHex(this.id)} no progress available for ${idHex(m.from)}`);
      return undefined;
    }
    switch (m.type) {
      case 'MsgAppResp':
        this.handleAppendResponse(m, pr);
        break;
      case 'MsgHeartbeatResp':
        this.handleHeartbeatResponse(m, pr);
        break;
      case 'MsgSnapStatus':
        if (pr.state !== 'snapshot') break;
        if (m.reject) pr.pendingSnapshot = 0;
        pr.becomeProbe();
        this.logger.debug(`${idHex(this.id)} snapshot ${m.reject ? 'failed' : 'succeeded'}, resumed probing ${idHex(m.from)} [${pr.describe()}]`);
        // Wait for an append response or a heartbeat response before probing again.
        pr.msgAppFlowPaused = true;
        break;
      case 'MsgUnreachable':
        // Appends in flight were probably lost: go back to probing.
        if (pr.state === 'replicate') pr.becomeProbe();
        this.logger.debug(`${idHex(this.id)} failed to send message to ${idHex(m.from)} because it is unreachable [${pr.describe()}]`);
        break;
      case 'MsgTransferLeader':
        this.handleTransferLeader(m.from, pr);
        break;
      default:
        break;
    }
    return undefined;
  }

  private handleProposal(m: Message): DropReason | undefined {
    assert(m.entries.length > 0, `${this.id} stepped an empty MsgProp`);
    if (m.entries.length > proposalEntriesMax) return 'too-many-entries';
    if (!this.tracker.progress.has(this.id)) return 'not-member';
    if (this.leadTransferee !== NONE) {
      this.logger.debug(`${idHex(this.id)} [term ${this.term}] transfer leadership to ${idHex(this.leadTransferee)} is in progress; dropping proposal`);
      return 'transfer-in-progress';
    }
    let confChangeOffset = -1;
    for (let i = 0; i < m.entries.length; i++) {
      const entry = m.entries[i]!;
      if (entry.type !== 'conf-change') continue;
      if (confChangeOffset >= 0) return 'conf-change-pending'; // one change per proposal
      const refused = this.checkConfChangeProposal(entry.data);
      if (refused !== undefined) return refused;
      confChangeOffset = i;
    }
    const firstIndex = this.log.lastIndex() + 1;
    if (!this.appendEntries(m.entries)) {
      this.logger.debug(`${idHex(this.id)} appending new entries to log would exceed uncommitted entry size limit; dropping proposal`);
      return 'uncommitted-size-limit';
    }
    if (confChangeOffset >= 0) this.pendingConfIndex = firstIndex + confChangeOffset;
    this.bcastAppend();
    return undefined;
  }

  /** Checks a proposed configuration change against the current configuration. */
  private checkConfChangeProposal(data: Uint8Array): DropReason | undefined {
    let cc: ConfChange;
    try {
      cc = decodeConfChange(data);
    } catch (error) {
      this.logger.warn(`${idHex(this.id)} refusing undecodable conf change: ${(error as Error).message}`);
      return 'conf-change-invalid';
    }
    if (this.pendingConfIndex > this.log.applied) {
      this.logger.info(
        `${idHex(this.id)} ignoring conf change: possible unapplied conf change at index ${this.pendingConfIndex} (applied to ${this.log.applied})`,
      );
      return 'conf-change-pending';
    }
    const alreadyJoint = this.tracker.config.voters[1].size > 0;
    const wantsLeaveJoint = isLeaveJoint(cc);
    if (alreadyJoint && !wantsLeaveJoint) return 'conf-change-in-joint';
    if (!alreadyJoint && wantsLeaveJoint) return 'conf-change-not-joint';
    // Nothing between applied and the end of the log changes the configuration (no change is
    // pending), so the configuration this change will be applied to is the current one.
    const trial = this.tryConfChange(cc);
    if (!trial.ok) {
      this.logger.warn(`${idHex(this.id)} refusing invalid conf change: ${trial.error}`);
      return 'conf-change-invalid';
    }
    return undefined;
  }

  private tryConfChange(cc: ConfChange): ChangeResult {
    return applyConfChangeTo(
      { config: this.tracker.config, progress: this.tracker.progress, ...this.changerOptions() },
      cc,
    );
  }

  /** Appends entries of the current term; false when over the uncommitted size limit. */
  private appendEntries(entries: readonly Entry[]): boolean {
    let lastIndex = this.log.lastIndex();
    const stamped: Entry[] = new Array<Entry>(entries.length);
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      stamped[i] = { term: this.term, index: lastIndex + 1 + i, type: e.type, data: e.data };
    }
    const bytes = payloadBytes(stamped);
    // A single proposal is always admitted when nothing is uncommitted, however large.
    if (this.uncommittedBytes > 0 && bytes > 0 && this.uncommittedBytes + bytes > this.uncommittedEntriesBytesMax) {
      return false;
    }
    this.uncommittedBytes += bytes;
    lastIndex = this.log.append(stamped);
    // The leader's own acknowledgement, delivered once the entries are durable.
    this.send(makeMessage({ type: 'MsgAppResp', to: this.id, index: lastIndex }));
    return true;
  }

  private handleReadIndex(m: Message): DropReason | undefined {
    if (this.readOnly.size + this.pendingReadIndexMessages.length >= readIndexPendingMax) {
      return 'read-index-queue-full';
    }
    if (this.tracker.isSingleton()) {
      // Only one voter: our commit index is the cluster's.
      this.respondToReadIndex(m, this.log.committed);
      return undefined;
    }
    if (!this.committedEntryInCurrentTerm()) {
      // Until an entry of this term commits we may not know the latest commit index.
      this.pendingReadIndexMessages.push(m);
      return undefined;
    }
    this.startReadIndex(m);
    return undefined;
  }

  private committedEntryInCurrentTerm(): boolean {
    return this.log.maybeTerm(this.log.committed) === this.term;
  }

  private startReadIndex(m: Message): void {
    if (this.readOnly.option === 'lease-based' && this.leaseValid()) {
      // No other leader can exist before the lease ends: our commit index is the latest.
      this.respondToReadIndex(m, this.log.committed);
      return;
    }
    // Confirm leadership with a heartbeat quorum round (also the fallback without a lease).
    this.readOnly.add(this.log.committed, m);
    this.readOnly.recvAck(this.id, m.context);
    this.bcastHeartbeat(m.context);
  }

  /**
   * Whether this leader holds a lease: a quorum acknowledged a heartbeat sent at tick T, so none
   * of them votes before T + leaseTicks (in our ticks, allowing for clock-rate error).
   */
  leaseValid(): boolean {
    if (this.leaseTicks === 0 || this.leaseForfeited || this.leadTransferee !== NONE || this.role !== 'leader') {
      return false;
    }
    const start = jointCommittedIndex(this.tracker.config.voters, (id) =>
      id === this.id ? this.leaderTicks + 1 : this.heartbeatAcks.get(id),
    );
    if (!Number.isFinite(start) || start === 0) return false;
    return this.leaderTicks < start - 1 + this.leaseTicks;
  }

  private releasePendingReadIndexMessages(): void {
    if (this.pendingReadIndexMessages.length === 0) return;
    if (!this.committedEntryInCurrentTerm()) return;
    const waiting = this.pendingReadIndexMessages;
    this.pendingReadIndexMessages = [];
    for (const m of waiting) this.startReadIndex(m);
  }

  private respondToReadIndex(request: Message, index: number): void {
    const context = request.context ?? new Uint8Array(0);
    if (request.from === NONE || request.from === this.id) {
      this.readStates.push({ index, requestContext: context });
      return;
    }
    this.send(makeMessage({ type: 'MsgReadIndexResp', to: request.from, index, context }));
  }

  private handleAppendResponse(m: Message, pr: Progress): void {
    pr.recentActive = true;
    if (m.reject) {
      this.logger.debug(`${idHex(this.id)} received MsgAppResp(rejected, hint: (index ${m.rejectHint}, term ${m.logTerm})) from ${idHex(m.from)} for index ${m.index}`);
      // Skip whole terms the follower cannot match (fast backtracking).
      let nextProbe = m.rejectHint;
      if (m.logTerm > 0) nextProbe = this.log.findConflictByTerm(m.rejectHint, m.logTerm).index;
      if (pr.maybeDecrTo(m.index, nextProbe)) {
        this.logger.debug(`${idHex(this.id)} decreased progress of ${idHex(m.from)} to [${pr.describe()}]`);
        if (pr.state === 'replicate') pr.becomeProbe();
        this.maybeSendAppend(m.from, true);
      }
      return;
    }
    if (!(pr.maybeUpdate(m.index) || (pr.match === m.index && pr.state === 'probe'))) return;
    switch (pr.state) {
      case 'probe':
        pr.becomeReplicate();
        break;
      case 'snapshot':
        // Whatever the follower restored, it can now be caught up from the log.
        if (pr.match + 1 >= this.log.firstIndex()) {
          this.logger.debug(`${idHex(this.id)} recovered from needing snapshot, resumed sending replication messages to ${idHex(m.from)}`);
          pr.becomeProbe();
          pr.becomeReplicate();
        }
        break;
      case 'replicate':
        pr.inflights.freeLE(m.index);
        break;
    }
    if (this.maybeCommit()) {
      this.releasePendingReadIndexMessages();
      this.bcastAppend();
    } else if (m.from !== this.id && pr.canBumpCommit(this.log.committed)) {
      // The commit broadcast may have skipped this follower (it was paused): tell it now
      // rather than at the next heartbeat.
      this.maybeSendAppend(m.from, true);
    }
    if (m.from !== this.id) {
      // Fill the window: the acknowledgement may have made room for more.
      while (this.maybeSendAppend(m.from, false)) {
        // keep sending
      }
    }
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) {
      this.logger.info(`${idHex(this.id)} sent MsgTimeoutNow to ${idHex(m.from)} after received MsgAppResp`);
      this.send(makeMessage({ type: 'MsgTimeoutNow', to: m.from }));
    }
  }

  private handleHeartbeatResponse(m: Message, pr: Progress): void {
    pr.recentActive = true;
    pr.msgAppFlowPaused = false;
    // A follower probed while it holds the whole log (a MsgUnreachable put it back in probe, say)
    // gets an empty append too: its answer is what takes it back to replicate. Otherwise an idle
    // group would probe it for as long as nothing is proposed (as etcd-io/raft does since 3.6).
    if (pr.match < this.log.lastIndex() || pr.state === 'probe') this.maybeSendAppend(m.from, true);
    if (this.leaseTicks > 0 && m.index <= this.leaderTicks) {
      this.heartbeatAcks.set(m.from, Math.max(this.heartbeatAcks.get(m.from) ?? 0, m.index + 1));
    }
    if (m.context === undefined || m.context.byteLength === 0) return;
    const acks = this.readOnly.recvAck(m.from, m.context);
    if (acks === undefined) return;
    if (jointVoteResult(this.tracker.config.voters, acks) !== 'won') return;
    for (const read of this.readOnly.advance(m.context)) this.respondToReadIndex(read.request, read.index);
  }

  private handleTransferLeader(transferee: number, pr: Progress): void {
    if (pr.isLearner) {
      this.logger.debug(`${idHex(this.id)} is learner. Ignored transferring leadership`);
      return;
    }
    if (this.leadTransferee !== NONE) {
      if (this.leadTransferee === transferee) {
        this.logger.info(`${idHex(this.id)} [term ${this.term}] transfer leadership to ${idHex(transferee)} is in progress, ignores request to same node`);
        return;
      }
      this.abortLeaderTransfer();
    }
    if (transferee === this.id) {
      this.logger.debug(`${idHex(this.id)} is already leader. Ignored transferring leadership to self`);
      return;
    }
    this.logger.info(`${idHex(this.id)} [term ${this.term}] starts to transfer leadership to ${idHex(transferee)}`);
    // The transfer must finish within an election timeout.
    this.electionElapsed = 0;
    this.leadTransferee = transferee;
    // The transferee's election bypasses the followers' lease, whenever TimeoutNow arrives.
    this.leaseForfeited = true;
    if (pr.match === this.log.lastIndex()) {
      this.logger.info(`${idHex(this.id)} sends MsgTimeoutNow to ${idHex(transferee)} immediately as it already has up-to-date log`);
      this.send(makeMessage({ type: 'MsgTimeoutNow', to: transferee }));
    } else {
      this.maybeSendAppend(transferee, true);
    }
  }

  abortLeaderTransfer(): void {
    this.leadTransferee = NONE;
  }

  private maybeCommit(): boolean {
    const index = this.tracker.committed();
    if (!Number.isFinite(index)) return false;
    // Only an entry of the current term is committed by counting replicas (figure 8).
    return this.log.maybeCommit(index, this.term);
  }

  private stepCandidate(m: Message): DropReason | undefined {
    const myVoteResponse: MessageType = this.role === 'pre-candidate' ? 'MsgPreVoteResp' : 'MsgVoteResp';
    switch (m.type) {
      case 'MsgProp':
      case 'MsgReadIndex':
      case 'MsgTransferLeader':
        this.logger.info(`${idHex(this.id)} no leader at term ${this.term}; dropping ${m.type}`);
        return 'no-leader';
      case 'MsgApp':
        this.becomeFollower(m.term, m.from);
        this.handleAppendEntries(m);
        return undefined;
      case 'MsgHeartbeat':
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return undefined;
      case 'MsgSnap':
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        return undefined;
      case 'MsgTimeoutNow':
        this.logger.debug(`${idHex(this.id)} [term ${this.term} state ${this.role}] ignored MsgTimeoutNow from ${idHex(m.from)}`);
        return undefined;
      default:
        break;
    }
    if (m.type !== myVoteResponse) return undefined;
    const { granted, rejected, result } = this.poll(m.from, m.type, !m.reject);
    this.logger.info(`${idHex(this.id)} has received ${granted} ${m.type} votes and ${rejected} vote rejections`);
    if (result === 'won') {
      if (this.role === 'pre-candidate') {
        this.campaign('election');
      } else {
        this.becomeLeader();
        this.bcastAppend();
      }
    } else if (result === 'lost') {
      // A rejection may carry a higher term, but it moved us to follower already; for a lost
      // pre-vote our term stays.
      this.becomeFollower(this.term, NONE);
    }
    return undefined;
  }

  private stepFollower(m: Message): DropReason | undefined {
    switch (m.type) {
      case 'MsgProp':
        if (this.lead === NONE) {
          this.logger.info(`${idHex(this.id)} no leader at term ${this.term}; dropping proposal`);
          return 'no-leader';
        }
        if (this.disableProposalForwarding) return 'forwarding-disabled';
        this.send(makeMessage({ ...m, to: this.lead, term: 0 }));
        return undefined;
      case 'MsgApp':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppendEntries(m);
        return undefined;
      case 'MsgHeartbeat':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        return undefined;
      case 'MsgSnap':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        return undefined;
      case 'MsgTransferLeader':
        if (this.lead === NONE) return 'no-leader';
        this.send(makeMessage({ ...m, to: this.lead, term: 0 }));
        return undefined;
      case 'MsgTimeoutNow':
        this.logger.info(`${idHex(this.id)} [term ${this.term}] received MsgTimeoutNow from ${idHex(m.from)} and starts an election to get leadership`);
        // Leadership transfers never use pre-vote: the leader asked for this election.
        this.hup('transfer');
        return undefined;
      case 'MsgReadIndex':
        if (this.lead === NONE) {
          this.logger.info(`${idHex(this.id)} no leader at term ${this.term}; dropping index reading msg`);
          return 'no-leader';
        }
        this.send(makeMessage({ ...m, to: this.lead, term: 0 }));
        return undefined;
      case 'MsgReadIndexResp':
        this.readStates.push({ index: m.index, requestContext: m.context ?? new Uint8Array(0) });
        return undefined;
      default:
        return undefined;
    }
  }

  private handleAppendEntries(m: Message): void {
    if (m.index < this.log.committed) {
      // Everything up to our commit index matches the leader's log already.
      this.send(makeMessage({ type: 'MsgAppResp', to: m.from, index: this.log.committed }));
      return;
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew !== undefined) {
      this.send(makeMessage({ type: 'MsgAppResp', to: m.from, index: lastNew }));
      return;
    }
    // Reject, with a hint: the last index whose term could match, so the leader skips whole
    // terms instead of probing one index at a time.
    const hint = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
    this.logger.debug(
      `${idHex(this.id)} [logterm: ${this.log.maybeTerm(m.index) ?? 0}, index: ${m.index}] rejected MsgApp ` +
        `[logterm: ${m.logTerm}, index: ${m.index}] from ${idHex(m.from)}`,
    );
    this.send(
      makeMessage({ type: 'MsgAppResp', to: m.from, index: m.index, reject: true, rejectHint: hint.index, logTerm: hint.term }),
    );
  }

  private handleHeartbeat(m: Message): void {
    this.log.commitTo(m.commit);
    this.send(makeMessage({ type: 'MsgHeartbeatResp', to: m.from, index: m.index, context: m.context }));
  }

  private handleSnapshot(m: Message): void {
    const snapshot = m.snapshot;
    assert(snapshot !== undefined, 'MsgSnap without a snapshot');
    const { index, term } = snapshot.metadata;
    if (this.restore(snapshot)) {
      this.logger.info(`${idHex(this.id)} [commit: ${this.log.committed}] restored snapshot [index: ${index}, term: ${term}]`);
      this.send(makeMessage({ type: 'MsgAppResp', to: m.from, index: this.log.lastIndex() }));
    } else {
      this.logger.info(`${idHex(this.id)} [commit: ${this.log.committed}] ignored snapshot [index: ${index}, term: ${term}]`);
      this.send(makeMessage({ type: 'MsgAppResp', to: m.from, index: this.log.committed }));
    }
  }

  /** Replaces the log with a snapshot from the leader; returns false when it was not needed. */
  private restore(snapshot: Snapshot): boolean {
    const { index, term, confState } = snapshot.metadata;
    if (index <= this.log.committed) return false;
    if (this.role !== 'follower') {
      // Only followers receive snapshots; if this ever fires, refuse rather than corrupt state.
      this.logger.warn(`${idHex(this.id)} attempted to restore snapshot as ${this.role}; should never happen`);
      this.becomeFollower(this.term + 1, NONE);
      return false;
    }
    if (this.log.applying > this.log.applied) {
      // Committed entries (possibly conf changes) are being applied from a Ready not yet
      // advanced; replacing the configuration under them would apply them to the wrong one.
      // Refuse for now: the leader sends the snapshot again.
      this.logger.info(`${idHex(this.id)} postponing snapshot [index: ${index}]: entries up to ${this.log.applying} are still being applied`);
      return false;
    }
    const member = [confState.voters, confState.learners, confState.votersOutgoing].some((ids) => ids.includes(this.id));
    if (!member) {
      this.logger.warn(`${idHex(this.id)} attempted to restore snapshot but it is not in the ConfState; should never happen`);
      return false;
    }
    if (this.log.matchTerm(index, term)) {
      // We have the snapshot's last entry already: fast-forward the commit index instead.
      this.log.commitTo(index);
      return false;
    }
    this.log.restore(snapshot);
    this.tracker.resetVotes();
    const restored = restoreConfig(confState, this.changerOptions());
    assert(restored.ok, () => `unable to restore config from snapshot: ${(restored as { error: string }).error}`);
    const cs = this.switchToConfig(restored.config, restored.progress);
    assertConfStatesEquivalent(cs, confState);
    return true;
  }

  /** Applies a committed configuration change (called by the application as it applies it). */
  applyConfChange(cc: ConfChange): ConfState {
    const result = this.tryConfChange(cc);
    // The leader checked this change against this same configuration when it was proposed.
    assert(result.ok, () => `${this.id} cannot apply conf change: ${(result as { error: string }).error}`);
    return this.switchToConfig(result.config, result.progress);
  }

  private switchToConfig(config: TrackerConfig, progress: ProgressMap): ConfState {
    this.tracker.switchTo(config, progress);
    this.logger.info(`${idHex(this.id)} switched to configuration ${describeConfig(config)}`);
    const cs = this.tracker.confState();
    const pr = progress.get(this.id);
    this.isLearner = pr?.isLearner ?? false;
    if ((pr === undefined || this.isLearner) && this.role === 'leader') {
      // Removed (or demoted) while leading: the change is applied, so step down.
      if (this.stepDownOnRemoval) this.becomeFollower(this.term, NONE);
      return cs;
    }
    if (this.role !== 'leader' || cs.voters.length === 0) return cs;
    // The quorum changed: commit may move, and new members need appends.
    if (this.maybeCommit()) {
      this.releasePendingReadIndexMessages();
      this.bcastAppend();
    } else {
      this.tracker.visit((id) => {
        if (id !== this.id) this.maybeSendAppend(id, false);
      });
    }
    if (this.leadTransferee !== NONE && !this.tracker.isVoter(this.leadTransferee)) this.abortLeaderTransfer();
    return cs;
  }

  /** Called once the application applied entries up to `index` (`bytes` of payload). */
  appliedTo(index: number, bytes: number): void {
    const newApplied = Math.max(index, this.log.applied);
    this.log.appliedTo(newApplied, bytes);
    this.uncommittedBytes = bytes > this.uncommittedBytes ? 0 : this.uncommittedBytes - bytes;
    if (this.tracker.config.autoLeave && newApplied >= this.pendingConfIndex && this.role === 'leader') {
      // The joint configuration is applied: propose leaving it. An empty payload decodes as
      // the leave-joint change and is never refused for its size.
      const refused = this.step(
        makeMessage({ type: 'MsgProp', from: this.id, entries: [{ term: 0, index: 0, type: 'conf-change', data: new Uint8Array(0) }] }),
      );
      if (refused !== undefined) {
        this.logger.debug(`${idHex(this.id)} not leaving joint configuration yet: ${refused}`);
      } else {
        this.logger.info(`${idHex(this.id)} initiating automatic transition out of joint configuration ${describeConfig(this.tracker.config)}`);
      }
    }
  }

  /** Called once a snapshot from a Ready is persisted and applied. */
  appliedSnapshot(index: number): void {
    this.log.stableSnapshotTo(index);
    this.appliedTo(index, 0);
  }
}

function assertConfStatesEquivalent(a: ConfState, b: ConfState): void {
  const same = (x: readonly number[], y: readonly number[]): boolean => {
    const xs = [...x].sort((p, q) => p - q);
    const ys = [...y].sort((p, q) => p - q);
    return xs.length === ys.length && xs.every((v, i) => v === ys[i]);
  };
  assert(
    same(a.voters, b.voters) &&
      same(a.votersOutgoing, b.votersOutgoing) &&
      same(a.learners, b.learners) &&
      same(a.learnersNext, b.learnersNext) &&
      a.autoLeave === b.autoLeave,
    () => `conf states differ: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`,
  );
}
