/**
 * RawNode: the application's handle on one Raft group. The application feeds it ticks and
 * messages, and drives it through Ready batches:
 *
 *   const rd = node.ready();
 *   send(rd.messages);                    // may go out before (in parallel with) the write
 *   persist(rd.hardState, rd.entries, rd.snapshot);   // durable before anything below
 *   send(rd.messagesAfterPersist);
 *   apply(rd.snapshot, rd.committedEntries);
 *   node.advance();
 *
 * Between `ready()` and `advance()` the application may keep calling `step`, `tick` and
 * `propose`; it may not call `ready()` again.
 */
import { assert } from './assert.js';
import { encodeConfChange } from './codec.js';
import { readIndexContextBytesMax, readiesInFlightMaxDefault } from './limits.js';
import { type DropReason, type DroppedProposal, ProposalDroppedError, Raft, type RaftConfig } from './raft.js';
import { payloadBytes } from './storage.js';
import type { ProgressState } from './progress.js';
import { describeConfig } from './tracker.js';
import {
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type ReadState,
  type Snapshot,
  type SoftState,
  type StateRole,
  hardStatesEqual,
  isEmptyHardState,
  isLocalMessage,
  isResponseMessage,
  makeMessage,
} from './types.js';

export interface Ready {
  /** Present when the leader or role changed since the last Ready. */
  readonly softState?: SoftState;
  /** Present when term, vote or commit changed: persist it with the entries. */
  readonly hardState?: HardState;
  /** Entries to append to storage (replacing any conflicting suffix). */
  readonly entries: readonly Entry[];
  /** A snapshot to persist and apply. */
  readonly snapshot?: Snapshot;
  /** Committed entries to apply, after the writes of this Ready are durable. */
  readonly committedEntries: readonly Entry[];
  /** Messages that may be sent at once, in parallel with the write. */
  readonly messages: readonly Message[];
  /** Messages that may be sent only after this Ready's writes are durable. */
  readonly messagesAfterPersist: readonly Message[];
  /** Completed ReadIndex requests. */
  readonly readStates: readonly ReadState[];
  /**
   * Proposals this node forwarded that were refused where they arrived; none of their entries
   * was appended anywhere, so they may be proposed again.
   */
  readonly droppedProposals: readonly DroppedProposal[];
  /** Whether the write must be synced (entries, or a term/vote change). */
  readonly mustSync: boolean;
}

export interface ProgressStatus {
  readonly match: number;
  readonly next: number;
  readonly state: ProgressState;
  readonly isLearner: boolean;
  readonly recentActive: boolean;
  readonly paused: boolean;
  readonly inflight: number;
  readonly pendingSnapshot: number;
}

export interface Status {
  readonly id: number;
  readonly term: number;
  readonly vote: number;
  readonly commit: number;
  readonly lead: number;
  readonly role: StateRole;
  readonly applied: number;
  readonly lastIndex: number;
  readonly config: ConfState;
  readonly leadTransferee: number;
  /** Only on the leader. */
  readonly progress?: ReadonlyMap<number, ProgressStatus>;
}

interface InFlightReady {
  readonly lastEntry?: { index: number; term: number };
  readonly snapshotIndex?: number;
  readonly lastCommitted?: { index: number; bytes: number };
  readonly stepsOnAdvance: Message[];
}

export class RawNode {
  readonly raft: Raft;
  private prevSoftState: SoftState;
  private prevHardState: HardState;
  /** Readies handed out and not yet advanced, oldest first. */
  private readonly inFlight: InFlightReady[] = [];
  private readonly readiesInFlightMax: number;

  constructor(config: RaftConfig) {
    this.raft = new Raft(config);
    this.readiesInFlightMax = config.readiesInFlightMax ?? readiesInFlightMaxDefault;
    assert(Number.isSafeInteger(this.readiesInFlightMax) && this.readiesInFlightMax >= 1, 'readiesInFlightMax must be a positive integer');
    this.prevSoftState = this.raft.softState();
    this.prevHardState = this.raft.hardState();
  }

  get id(): number {
    return this.raft.id;
  }

  /** Advances the logical clock by one tick (elections, heartbeats, CheckQuorum). */
  tick(): void {
    this.raft.tick();
  }

  /** Starts an election now (pre-vote first when enabled). */
  campaign(): void {
    this.raft.step(makeMessage({ type: 'MsgHup', from: this.raft.id }));
  }

  /** Proposes one command. Throws ProposalDroppedError with the reason when refused. */
  propose(data: Uint8Array): void {
    this.proposeEntries([{ term: 0, index: 0, type: 'normal', data }]);
  }

  /** Proposes several commands in one message (they are appended together, in order). */
  proposeMany(commands: readonly Uint8Array[]): void {
    if (commands.length === 0) return;
    const entries: Entry[] = new Array<Entry>(commands.length);
    for (let i = 0; i < commands.length; i++) entries[i] = { term: 0, index: 0, type: 'normal', data: commands[i]! };
    this.proposeEntries(entries);
  }

  /** Proposes a membership change; one may be pending at a time. */
  proposeConfChange(change: ConfChange): void {
    this.proposeEntries([{ term: 0, index: 0, type: 'conf-change', data: encodeConfChange(change) }]);
  }

  private proposeEntries(entries: Entry[]): void {
    const refused = this.raft.step(makeMessage({ type: 'MsgProp', from: this.raft.id, entries }));
    if (refused !== undefined) throw new ProposalDroppedError(refused);
  }

  /** Applies a committed configuration change; returns the new configuration. */
  applyConfChange(change: ConfChange): ConfState {
    return this.raft.applyConfChange(change);
  }

  /**
   * Feeds a message from another node. Local message types are refused (they are the node's own
   * business); responses from nodes without a progress are ignored. Returns a drop reason for
   * forwarded proposals that were refused.
   */
  step(m: Message): DropReason | undefined {
    if (isLocalMessage(m.type)) throw new TypeError(`cannot step local message ${m.type}`);
    if (isResponseMessage(m.type) && m.type !== 'MsgReadIndexResp' && !this.raft.tracker.progress.has(m.from)) {
      return undefined;
    }
    return this.raft.step(m);
  }

  /**
   * Asks for a read index. The answer comes as a ReadState carrying `context`, once it is safe
   * to serve reads at that index; contexts identify requests and must be unique and non-empty.
   */
  readIndex(context: Uint8Array): void {
    if (context.byteLength === 0 || context.byteLength > readIndexContextBytesMax) {
      throw new TypeError(`read index context must have 1..${readIndexContextBytesMax} bytes`);
    }
    const refused = this.raft.step(makeMessage({ type: 'MsgReadIndex', context }));
    if (refused !== undefined) throw new ProposalDroppedError(refused);
  }

  /** Asks the leader to hand leadership to `transferee` (forwarded when called on a follower). */
  transferLeader(transferee: number): void {
    const refused = this.raft.step(makeMessage({ type: 'MsgTransferLeader', from: transferee }));
    if (refused !== undefined) throw new ProposalDroppedError(refused);
  }

  /** The transport could not reach `id`: the leader stops pipelining to it. */
  reportUnreachable(id: number): void {
    this.raft.step(makeMessage({ type: 'MsgUnreachable', from: id }));
  }

  /** Reports whether a snapshot sent to `id` was delivered. */
  reportSnapshot(id: number, ok: boolean): void {
    this.raft.step(makeMessage({ type: 'MsgSnapStatus', from: id, reject: !ok }));
  }

  /**
   * A leader that was not ticked for a while (its group was quiesced) starts its check-quorum
   * period again from now, counting the members `inactive` names as not heard from in it (what
   * it heard before says nothing of now). Nothing happens on a follower.
   */
  restartQuorumCheck(inactive: (id: number) => boolean = () => false): void {
    const raft = this.raft;
    if (raft.role !== 'leader') return;
    raft.electionElapsed = 0;
    for (const [id, progress] of raft.tracker.progress) if (id !== raft.id && inactive(id)) progress.recentActive = false;
  }

  /** Whether `ready()` would return anything (always false while a Ready is in flight). */
  hasReady(): boolean {
    if (!this.mayHandOutReady()) return false;
    const r = this.raft;
    const soft = r.softState();
    if (soft.lead !== this.prevSoftState.lead || soft.role !== this.prevSoftState.role) return true;
    const hard = r.hardState();
    if (!isEmptyHardState(hard) && !hardStatesEqual(hard, this.prevHardState)) return true;
    if (r.log.unstable.nextSnapshot() !== undefined) return true;
    if (r.messages.length > 0 || r.messagesAfterAppend.length > 0) return true;
    if (r.log.unstable.hasNextEntries() || r.log.hasNextCommittedEntries()) return true;
    return r.readStates.length > 0 || r.droppedProposals.length > 0;
  }

  /** Everything to persist, send and apply; call `advance()` when done with it. */
  ready(): Ready {
    assert(this.mayHandOutReady(), () => `ready() with ${this.inFlight.length} Ready(s) in flight (at most ${this.readiesInFlightMax}, and a snapshot travels alone)`);
    const r = this.raft;
    const entries = r.log.unstable.nextEntries();
    const snapshot = r.log.unstable.nextSnapshot();
    const committedEntries = r.log.nextCommittedEntries();
    const soft = r.softState();
    const softChanged = soft.lead !== this.prevSoftState.lead || soft.role !== this.prevSoftState.role;
    const hard = r.hardState();
    const hardChanged = !isEmptyHardState(hard) && !hardStatesEqual(hard, this.prevHardState);
    const mustSync =
      entries.length > 0 ||
      snapshot !== undefined ||
      (hardChanged && (hard.term !== this.prevHardState.term || hard.vote !== this.prevHardState.vote));

    const messagesAfterPersist: Message[] = [];
    const stepsOnAdvance: Message[] = [];
    for (const m of r.messagesAfterAppend) {
      if (m.to === r.id) stepsOnAdvance.push(m);
      else messagesAfterPersist.push(m);
    }
    const messages = r.messages;

    // Accept: these are now the application's to persist, send and apply.
    r.log.unstable.acceptInProgress();
    let lastCommitted: InFlightReady['lastCommitted'];
    if (committedEntries.length > 0) {
      const bytes = payloadBytes(committedEntries);
      const index = committedEntries[committedEntries.length - 1]!.index;
      r.log.acceptApplying(index, bytes);
      lastCommitted = { index, bytes };
    }
    const last = entries[entries.length - 1];
    this.inFlight.push({
      lastEntry: last === undefined ? undefined : { index: last.index, term: last.term },
      snapshotIndex: snapshot?.metadata.index,
      lastCommitted,
      stepsOnAdvance,
    });
    r.messages = [];
    r.messagesAfterAppend = [];
    const readStates = r.readStates;
    r.readStates = [];
    const droppedProposals = r.droppedProposals;
    r.droppedProposals = [];
    if (softChanged) this.prevSoftState = soft;
    if (hardChanged) this.prevHardState = hard;

    return {
      softState: softChanged ? soft : undefined,
      hardState: hardChanged ? hard : undefined,
      entries,
      snapshot,
      committedEntries,
      messages,
      messagesAfterPersist,
      readStates,
      droppedProposals,
      mustSync,
    };
  }

  /**
   * Whether another Ready may be handed out: fewer than `readiesInFlightMax` in flight, and no
   * snapshot in flight or waiting (a snapshot replaces the log; it is never pipelined).
   */
  private mayHandOutReady(): boolean {
    if (this.inFlight.length === 0) return true;
    if (this.inFlight.length >= this.readiesInFlightMax) return false;
    if (this.inFlight.some((f) => f.snapshotIndex !== undefined)) return false;
    return this.raft.log.unstable.nextSnapshot() === undefined;
  }

  /** The oldest Ready in flight was persisted, sent and applied (Readies advance in order). */
  advance(): void {
    const done = this.inFlight.shift();
    assert(done !== undefined, 'advance() without a ready()');
    const r = this.raft;
    if (done.snapshotIndex !== undefined) r.appliedSnapshot(done.snapshotIndex);
    if (done.lastEntry !== undefined) r.log.stableTo(done.lastEntry.index, done.lastEntry.term);
    // Our own acknowledgements and votes, now that what they promise is durable.
    for (const m of done.stepsOnAdvance) r.step(m);
    if (done.lastCommitted !== undefined) r.appliedTo(done.lastCommitted.index, done.lastCommitted.bytes);
    assert(
      r.log.applied <= r.log.committed,
      () => `invariant applied <= committed broken: ${r.log.applied} > ${r.log.committed}`,
    );
  }

  /** Whether a Ready was handed out and not yet advanced. */
  get readyInFlight(): boolean {
    return this.inFlight.length > 0;
  }

  status(): Status {
    const r = this.raft;
    let progress: Map<number, ProgressStatus> | undefined;
    if (r.role === 'leader') {
      progress = new Map();
      r.tracker.visit((id, pr) => {
        progress!.set(id, {
          match: pr.match,
          next: pr.next,
          state: pr.state,
          isLearner: pr.isLearner,
          recentActive: pr.recentActive,
          paused: pr.isPaused(),
          inflight: pr.inflights.count,
          pendingSnapshot: pr.pendingSnapshot,
        });
      });
    }
    return { ...this.basicStatus(), progress };
  }

  /**
   * The status without the leader's progress map (etcd's BasicStatus): cheap enough to ask of
   * every group on a timer, where `status()` copies every member's progress.
   */
  basicStatus(): Omit<Status, 'progress'> {
    const r = this.raft;
    return {
      id: r.id,
      term: r.term,
      vote: r.vote,
      commit: r.log.committed,
      lead: r.lead,
      role: r.role,
      applied: r.log.applied,
      lastIndex: r.log.lastIndex(),
      config: r.tracker.confState(),
      leadTransferee: r.leadTransferee,
    };
  }

  describeConfig(): string {
    return describeConfig(this.raft.tracker.config);
  }
}
