/**
 * The shard runtime: one loop drives every Raft group (shard) a node hosts. It reads no clock,
 * starts no timer and does no I/O of its own: storage, transport, clock and scheduler are
 * injected, so `dkv server` (LevelDB, gRPC peers, real timers) and the simulator (in-memory disk
 * with faults, simulated network and time) drive the same code in the same order.
 *
 * A cycle, started on the scheduler's next turn after anything changed:
 *  1. queued proposals (one Raft proposal per shard, stamped with this node's clock when it
 *     leads), configuration changes and reads (one ReadIndex round per shard) go into the groups;
 *  2. `ready()` of every group, then ONE save for every group's entries and hard state (group
 *     commit), synced when any group needs it; a save of commit indexes alone is not waited for;
 *  3. the messages that need no persistence go out once that save has been handed to the
 *     storage (a leader's appends travel in parallel with its own write, which starts first when
 *     no earlier batch is still being written), except appends that only carry a new commit
 *     index no other member waits for, which go one task later, after the answers that commit
 *     released;
 *  4. while that save runs, committed entries are applied (durable on a quorum already) and
 *     waiting writes resolve;
 *  5. once the save is done, and every earlier cycle's too: the messages that promise
 *     durability (acknowledgements, votes) leave, the groups advance, reads whose index is now
 *     applied are served, and a snapshot is taken when due.
 * Steps 1–4 of a cycle never overlap another cycle's; up to `readiesInFlightMax` cycles may wait
 * in step 5 at once, finishing in order.
 */
import {
  type ConfChange,
  type Entry,
  type Message,
  type Prng,
  type DropReason,
  ProposalDroppedError,
  type RaftLogger,
  RawNode,
  type Ready,
  type Snapshot,
  type Status,
  assert,
  decodeConfChange,
  encodeConfChange,
  makeMessage,
  silentLogger,
} from '../../raft/index.js';
import type { LogStorage } from '../../raft/index.js';
import type { ShardUpdate } from '../../storage/index.js';
import { joinSnapshotFrames, readU64, writeU64 } from '../../storage/index.js';
import { AUTH_COMMAND_VERSION, type Caller, EngineId, anonymousCaller } from '../engines/index.js';
import { type EngineCommand, encodeEnvelope, envelopeKind, envelopeOrigin, sameCommand, stampEnvelope } from './envelope.js';
import { RuntimeError } from './errors.js';
import {
  applyGapEntriesMax,
  callbacksPerTurnMax,
  requestIdsPerMs,
  forwardedProposalsPendingMax,
  leaderChangeGraceElections,
  noLeaderWaitElections,
  proposalBytesPendingMax,
  proposalsPendingMax,
  quiescedLeaderSilenceElections,
  readiesInFlightMax,
  readsPendingMax,
  snapshotCatchUpBytesMax,
} from './limits.js';
import { type PendingCounts, PendingRequests, type ReadWaiter, type WriteWaiter } from './pending.js';
import { SPLIT_CHILD_INDEX } from './compose.js';
import { type Applied, type LeaderContext, ShardStateMachine, StateMachineHaltError } from './state-machine.js';

/**
 * Refusals of a forwarded write that waiting for a leader cures: it is proposed again. Any other
 * refusal (a conf change pending, a full uncommitted log, …) fails the write, known not applied.
 */
const retriedDropReasons: ReadonlySet<DropReason> = new Set<DropReason>(['no-leader', 'transfer-in-progress', 'not-member']);

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Whether a ready's messages may leave after the answers its committed entries release: they only
 * tell followers of a new commit index (appends without entries; heartbeats are not among them, a
 * ReadIndex round waits for theirs), the ready holds every entry up to the newest commit they
 * carry (Raft hands over committed entries in bounded slices), and no other member waits for that
 * news to answer a write of its own (every one of them was proposed by `self`, or by no one: a
 * leader's empty entry).
 */
export function onlyCommitNews(ready: Pick<Ready, 'messages' | 'committedEntries'>, self: number): boolean {
  const entries = ready.committedEntries;
  if (entries.length === 0 || ready.messages.length === 0) return false;
  const lastApplying = entries[entries.length - 1]!.index;
  for (const m of ready.messages) if (m.type !== 'MsgApp' || m.entries.length > 0 || m.commit > lastApplying) return false;
  for (const entry of entries) {
    if (entry.type !== 'normal') return false;
    const proposer = envelopeOrigin(entry.data).proposer;
    if (proposer !== self && proposer !== 0) return false;
  }
  return true;
}

// ---- What is injected ---------------------------------------------------------------------

/** A shard's log as Raft reads it; `save` keeps it current (reads see a save at once). */
export type ShardLogView = LogStorage;

export interface SaveOptions {
  /** The write must be synced before `done` (entries, a vote, a term change, a snapshot). */
  readonly sync: boolean;
  /** Nothing waits for it (a commit index alone): it may ride with a later write. */
  readonly deferrable: boolean;
}

export interface RuntimeStorage {
  shard(id: number): ShardLogView;
  /**
   * Applies the updates in memory at once and writes them (all shards in one batch); calls
   * `done` when durable (or written, when not synced), never synchronously. After a failure the
   * storage is unusable.
   */
  save(updates: readonly ShardUpdate[], options: SaveOptions, done: (error?: Error) => void): void;
}

export interface RuntimeTransport {
  send(to: number, shard: number, messages: readonly Message[]): void;
}

export interface RuntimeClock {
  /** Milliseconds (wall clock in a server, simulated time in the simulator). */
  now(): number;
}

export interface RuntimeScheduler {
  /** Runs `task` on a later turn (after the current task and what is already due). */
  soon(task: () => void): void;
}

/** What the node wiring (or the simulator) wants to hear about. */
export interface RuntimeListener {
  /** A normal entry was applied on `shard` (its outcome, for watchers and waiting clients). */
  applied?(shard: number, applied: Applied, entry: Entry): void;
  /** A configuration change was applied on `shard`. */
  confChangeApplied?(shard: number, change: ConfChange, entry: Entry): void;
  /** `shard`'s state was replaced by a snapshot: the stored one at start, or the leader's. */
  stateReplaced?(shard: number, from: 'storage' | 'leader'): void;
  /** `child` was split off `parent` here: its group started from the state the split made. */
  shardSplit?(parent: number, child: number): void;
  /** `shard` was removed from this node (`removeShard`); its pending requests have failed. */
  shardRemoved?(shard: number): void;
  leaderChanged?(shard: number, leader: number, term: number): void;
  /** A write this node forwarded came back refused where it arrived (`reason`); it waits for a leader again, or fails. */
  proposalDropped?(shard: number, reason: DropReason): void;
  /** A synced save finished after `seconds`. */
  saved?(seconds: number): void;
  /** The runtime stopped for good (storage failed, an invariant broke, an entry cannot be applied). */
  fatal?(error: Error): void;
  /** For checkers: the state machine of `shard` applied `entry` (every entry, empty ones too). */
  entryApplied?(shard: number, entry: Entry): void;
  /** For checkers: a Ready was taken from `shard`'s group. */
  readyTaken?(shard: number, node: RawNode, ready: Ready): void;
  /** For checkers: `shard`'s group took a message, a tick or a proposal. */
  stepped?(shard: number, node: RawNode): void;
}

export interface RaftSettings {
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly checkQuorum?: boolean;
  readonly preVote?: boolean;
  readonly readOnlyOption?: 'safe' | 'lease-based';
  readonly messageBytesMax?: number;
  readonly inflightMessagesMax?: number;
  readonly inflightBytesMax?: number;
  readonly uncommittedEntriesBytesMax?: number;
  readonly committedEntriesBytesPerReadyMax?: number;
  /** Readies in flight per group (default `readiesInFlightMax`). */
  readonly readiesInFlightMax?: number;
  readonly unsafeTestingKnobs?: { readonly voteTwiceInTerm?: boolean };
}

export interface NodeRuntimeOptions {
  readonly memberId: number;
  readonly storage: RuntimeStorage;
  readonly transport: RuntimeTransport;
  readonly clock: RuntimeClock;
  readonly scheduler: RuntimeScheduler;
  readonly random: Prng;
  readonly raft: RaftSettings;
  /** How often the driver calls `tick()` (ms): deadlines and the leader-change grace use it. */
  readonly tickMs: number;
  /** Applied entries between snapshots of a shard's state (etcd's --snapshot-count; 0: never). */
  readonly snapshotCount: number;
  /**
   * Bytes of applied entries between snapshots of a shard's state (0: no byte threshold). With it,
   * the log a restart replays after the latest snapshot is bounded in bytes, whatever the batch size.
   */
  readonly snapshotBytes?: number;
  /** Entries kept in the log behind a snapshot, so a slightly lagging follower needs no snapshot. */
  readonly snapshotCatchUpEntries: number;
  /** Bytes of entries kept in the log behind a snapshot at most (default `snapshotCatchUpBytesMax`). */
  readonly snapshotCatchUpBytes?: number;
  /** Take a snapshot right after a configuration change is applied (once one exists). */
  readonly snapshotAfterConfChange?: boolean;
  /**
   * A group whose only voter is this member campaigns as soon as it has applied its committed
   * entries, instead of after an election timeout (nobody else can lead it, so waiting only
   * delays the first write after a start; etcd-io/raft waits).
   */
  readonly campaignWhenSoleVoter?: boolean;
  /** How long a request may wait by default (ms). */
  readonly requestTimeoutMs: number;
  /**
   * Quiesce idle groups (default on; always off with lease-based reads): see `tick()`. Off, every
   * group ticks and its leader heartbeats on every heartbeat interval, idle or not.
   */
  readonly quiesce?: boolean;
  /** A new state machine for a shard (its engines). */
  readonly stateMachine: (shard: number) => ShardStateMachine;
  /**
   * Whether every member can apply `command` (a newer command version waits until every member
   * runs a build that applies it). Absent: only this build's support is checked.
   */
  readonly membersSupport?: (engine: number, version: number) => boolean;
  readonly listener?: RuntimeListener;
  readonly logger?: RaftLogger;
  /** The first request id (unique per process start: see firstRequestId). */
  readonly firstRequestId: number;
  /** Test-only switches that break the runtime on purpose (checkers must catch them). */
  readonly unsafe?: {
    /** Send acknowledgements and votes before the write they promise is durable. */
    readonly acknowledgeBeforePersist?: boolean;
  };
}

/**
 * The first request id of a process started at `nowMs`: ids never repeat across restarts (an
 * entry proposed before a crash may commit after it and must not complete a new request) unless
 * a process issued more than `requestIdsPerMs` requests per millisecond of its life. Below 2^53
 * until 2250.
 */
/**
 * What a build's runtime itself does, published with the engines' versions under this id (no
 * engine has it): 1, quiescence (`NodeRuntime.tick`). A group quiesces only while every member
 * publishes it: a follower of an older build would take a quiet leader for a dead one.
 */
export const RUNTIME_FEATURES_ID = 0;
export const QUIESCE_FEATURE_VERSION = 1;

export function firstRequestId(nowMs: number): number {
  return Math.floor(nowMs) * requestIdsPerMs + 1;
}

export interface ShardStatus extends Status {
  readonly shardId: number;
  readonly memberId: number;
  readonly snapshotIndex: number;
  readonly pending: PendingCounts;
}

export interface RequestOptions {
  /** Overrides the default request timeout (ms). */
  readonly timeoutMs?: number;
  /**
   * The client request's caller: its command carries it, and the state machine's guard checks it
   * where the command is applied. None: a command the node proposes on its own.
   */
  readonly caller?: Caller;
}

// ---- Conf change contexts -------------------------------------------------------------------

const CONTEXT_HEADER_BYTES = 16;

/** A conf change context: who proposed it and under which request id, then the payload. */
export function wrapConfContext(proposer: number, requestId: number, payload: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(CONTEXT_HEADER_BYTES + payload.length);
  writeU64(bytes, 0, proposer);
  writeU64(bytes, 8, requestId);
  bytes.set(payload, CONTEXT_HEADER_BYTES);
  return bytes;
}

export function unwrapConfContext(context: Uint8Array): { proposer: number; requestId: number; payload: Uint8Array } {
  // A leave-joint change (empty context) comes from Raft itself, not from a proposer.
  if (context.length < CONTEXT_HEADER_BYTES) return { proposer: 0, requestId: 0, payload: context };
  return { proposer: readU64(context, 0), requestId: readU64(context, 8), payload: context.subarray(CONTEXT_HEADER_BYTES) };
}

// ---- Shards ---------------------------------------------------------------------------------

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The context of a leader's heartbeat that quiesces its followers (see NodeRuntime.tick). */
const quiesceContext = new Uint8Array([0x71, 0x75, 0x69, 0x65, 0x73, 0x63, 0x65]);

/** The context of a heartbeat answer by which a woken follower wakes its quiesced leader. */
const wakeContext = new Uint8Array([0x77, 0x61, 0x6b, 0x65]);

function hasContext(message: Message, expected: Uint8Array): boolean {
  const context = message.context;
  if (context === undefined || context.length !== expected.length) return false;
  for (let i = 0; i < context.length; i++) if (context[i] !== expected[i]) return false;
  return true;
}

function isQuiesceHeartbeat(message: Message): boolean {
  return message.type === 'MsgHeartbeat' && hasContext(message, quiesceContext);
}

function isWakeCall(message: Message): boolean {
  return message.type === 'MsgHeartbeatResp' && hasContext(message, wakeContext);
}

/** Writes (or reads to ask again) of `shard` queued or parked here, not yet handed to Raft (a group holding one does not quiesce). */
function holdsUnproposed(shard: ShardState): boolean {
  return shard.pending.queue.length > 0 || shard.pending.parked.length > 0 || shard.pending.parkedReads.length > 0;
}

/** Whether a cycle would find something to do for `shard`: queued writes or reads, or a Ready. */
function shardHasWork(shard: ShardState): boolean {
  const p = shard.pending;
  return p.queue.length > 0 || p.queuedReads.length > 0 || shard.node.hasReady();
}

class ShardState {
  node: RawNode;
  machine: ShardStateMachine;
  /** Index of the last snapshot taken or installed. */
  snapshotIndex: number;
  snapshotInProgress = false;
  readonly pending: PendingRequests;
  leader = 0;
  term = 0;
  isLeader = false;
  /**
   * Removed from the node (`removeShard`): a cycle that still holds this group's Ready, a
   * snapshot being encoded, or news waiting for the next task leave it alone.
   */
  removed = false;
  readRound = 0;
  /** A conf change was applied since the last snapshot. */
  confChanged = false;
  /** Bytes of entry data applied since this shard started (a running total, never reset). */
  appliedBytes = 0;
  /** `appliedBytes` when the last snapshot was taken or installed (or the shard started). */
  appliedBytesAtSnapshot = 0;
  /**
   * (index, appliedBytes after it) at the end of each apply batch since the last compaction, so a
   * compaction can keep a bounded number of bytes behind a snapshot. invariant: both increasing.
   */
  readonly appliedMarks: Array<{ index: number; bytes: number }> = [];
  /**
   * Idle, not ticked (see NodeRuntime.tick): a leader that told its followers so, or a follower
   * its leader told. `quiescedTerm` and `quiescedLead` are the term and leader it quiesced
   * under: any other wakes it.
   */
  quiesced = false;
  quiescedTerm = 0;
  quiescedLead = 0;
  /** Commit-only appends of this group held for the next task (see firstHalf): it does not quiesce before they leave. */
  newsHeld = 0;
  /** Ticks left, after it was added, in which it asks members it hears from to wake (see askMembersToWake). */
  askTicksLeft = -1;
  /** Members it asked. */
  readonly asked = new Set<number>();
  /** Split off a group this node led: it campaigns at its first tick (its peers have made it by then). */
  campaignAtTick = false;

  constructor(
    readonly id: number,
    node: RawNode,
    machine: ShardStateMachine,
    deliver: (run: () => void) => void,
  ) {
    this.pending = new PendingRequests(deliver);
    this.node = node;
    this.machine = machine;
    this.snapshotIndex = machine.appliedIndex;
  }
}

interface Cycle {
  readonly readies: Array<[ShardState, Ready]>;
  /**
   * Configuration changes of ours applied in this cycle, answered only once Raft has advanced
   * past them: until then Raft still counts them pending and refuses the next change.
   */
  readonly confApplied: Array<() => void>;
  readonly startedMs: number;
  readonly synced: boolean;
  saved: boolean;
  error: Error | undefined;
}

export class NodeRuntime {
  private readonly shards = new Map<number, ShardState>();
  private readonly cycles: Cycle[] = [];
  /**
   * The groups that may have work: a cycle visits only these, not every hosted group (with
   * hundreds of idle groups, a walk of all of them on every message was most of a node's idle
   * CPU). A group enters on every call that can give it work (a tick, a message, a request, a
   * campaign, an advance) and leaves when a cycle finds it has none.
   */
  private readonly dirty = new Set<ShardState>();
  /** Ticks so far, and the tick each peer was last heard from in (quiesced followers' liveness). */
  private ticks = 0;
  private readonly heardTick = new Map<number, number>();
  /**
   * Whether some peer node was silent at this tick's start: a peer becomes silent only when the
   * tick count moves, so within a tick the flag is never wrongly false. A member removed for good
   * stays silent (heardTick forgets no one), and then every liveQuorum counts.
   */
  private anyPeerSilent = false;
  /** Per peer node: its latest silence of more than a tick (a restart, say): the last tick heard before it, and the tick it ended in. */
  private readonly heardBeforeSilence = new Map<number, { readonly before: number; readonly endedAt: number }>();
  private scheduled = false;
  private inFirstHalf = false;
  private stopped = false;
  private failure: Error | undefined;
  private nextRequestId: number;
  private readonly readiesMax: number;
  /** Requests refused because a pending-request limit was reached. */
  refusedTotal = 0;
  /** Callbacks of settled requests not run yet (see callbacksPerTurnMax). */
  private readonly deliveries: Array<() => void> = [];
  private deliveryScheduled = false;
  /** Callbacks run in the current turn (reset when a turn of the runtime starts). */
  private deliveredThisTurn = 0;

  constructor(private readonly options: NodeRuntimeOptions) {
    assert(Number.isSafeInteger(options.memberId) && options.memberId > 0, 'memberId must be a positive safe integer');
    assert(options.tickMs > 0 && options.requestTimeoutMs > 0, 'tickMs and requestTimeoutMs must be positive');
    assert(Number.isSafeInteger(options.firstRequestId) && options.firstRequestId > 0, 'firstRequestId must be a positive safe integer');
    this.nextRequestId = options.firstRequestId;
    this.readiesMax = options.raft.readiesInFlightMax ?? readiesInFlightMax;
  }

  get memberId(): number {
    return this.options.memberId;
  }

  /** Why the runtime stopped for good, if it did. */
  get fatalError(): Error | undefined {
    return this.failure;
  }

  /**
   * Adds a group whose state is in storage (a new group is bootstrapped there first). The state
   * machine starts from the stored snapshot; Raft then re-delivers every committed entry after it.
   * It may be called at any time, cycles in flight included (they hold only the groups they
   * took a Ready from); the new group's first cycle comes with the next tick or message.
   */
  addShard(shardId: number, prepared?: ShardStateMachine): void {
    if (this.failure !== undefined || this.stopped) throw new RuntimeError('stopped', 'the node is stopping');
    assert(!this.shards.has(shardId), `shard ${shardId} is added twice`);
    // A removed group's Ready still in flight would advance nothing, but its save would be the
    // new group's: ack-before-durable. Shard ids are never reused; this keeps the rare re-add safe.
    assert(!this.cycles.some((cycle) => cycle.readies.some(([held]) => held.id === shardId)), `shard ${shardId} is added again while a cycle of its removed group is in flight`);
    const storage = this.options.storage.shard(shardId);
    const stored = storage.snapshot();
    // A split's child comes with the state its stored snapshot holds, made already.
    assert(prepared === undefined || prepared.appliedIndex === stored.metadata.index, 'a prepared state machine is at its stored snapshot');
    const machine = prepared ?? this.options.stateMachine(shardId);
    if (prepared === undefined && stored.data.length > 0) machine.restore(stored.data, stored.metadata.index);
    const node = this.newRawNode(storage, machine.appliedIndex);
    this.adopt(machine);
    const shard = new ShardState(shardId, node, machine, (run) => this.deliver(run));
    shard.snapshotIndex = stored.metadata.index;
    // Entries before this are not counted: they are compacted first when a budget is tight.
    shard.appliedMarks.push({ index: machine.appliedIndex, bytes: 0 });
    this.shards.set(shardId, shard);
    this.dirty.add(shard);
    if (stored.data.length > 0) this.options.listener?.stateReplaced?.(shardId, 'storage');
  }

  /**
   * Removes a group from this node at once: every request pending on it (writes, parked or
   * forwarded ones, conf changes, reads) fails with `wrong-shard`; its messages are ignored from
   * now on; a cycle in flight that holds its Ready neither sends, saves, applies nor advances for
   * it; a snapshot being taken of it is dropped. Its storage is the caller's to drop, after this
   * (the saves already issued for it are queued before the drop). The id may be added again once
   * no cycle holding the removed group's Ready is in flight (`cyclesInFlight`).
   */
  removeShard(shardId: number): void {
    if (this.stopped) return;
    const shard = this.shards.get(shardId);
    assert(shard !== undefined, `shard ${shardId} is not hosted on this node`);
    shard.removed = true;
    this.shards.delete(shardId);
    this.dirty.delete(shard);
    if (shard.isLeader) {
      shard.isLeader = false;
      for (const engine of shard.machine.engineList()) engine.onLeadership?.(false, this.leaderContext(shard));
    }
    shard.pending.failAll(new RuntimeError('wrong-shard', `shard ${shardId} was removed from this node`));
    this.options.listener?.shardRemoved?.(shardId);
  }

  private newRawNode(storage: ShardLogView, applied: number): RawNode {
    const raft = this.options.raft;
    return new RawNode({
      ...raft,
      id: this.options.memberId,
      storage,
      random: this.options.random,
      applied,
      readiesInFlightMax: this.readiesMax,
      checkQuorum: raft.checkQuorum ?? true,
      preVote: raft.preVote ?? true,
      logger: this.options.logger ?? silentLogger,
    });
  }

  /** Bytes of entries the shard applied since its latest snapshot (taken, installed or restored at start). */
  appliedBytesSinceSnapshot(shardId: number): number {
    const shard = this.requireShard(shardId);
    return shard.appliedBytes - shard.appliedBytesAtSnapshot;
  }

  hasShard(shardId: number): boolean {
    return this.shards.has(shardId);
  }

  shardIds(): number[] {
    return [...this.shards.keys()].sort((a, b) => a - b);
  }

  /** The hosted shards' ids in no order (no array, no sort: for a pass over every one). */
  unorderedShardIds(): IterableIterator<number> {
    return this.shards.keys();
  }

  /** The shard's state machine now (a snapshot install replaces it: do not keep it). */
  machine(shardId: number): ShardStateMachine {
    return this.requireShard(shardId).machine;
  }

  /** The shard's Raft group (checkers and status only: drive it through the runtime). */
  rawNode(shardId: number): RawNode {
    return this.requireShard(shardId).node;
  }

  status(shardId: number): ShardStatus {
    const shard = this.requireShard(shardId);
    return {
      ...shard.node.status(),
      shardId,
      memberId: this.options.memberId,
      snapshotIndex: shard.snapshotIndex,
      pending: shard.pending.counts(),
    };
  }

  /** The shard's current term (cheap enough for every response header). */
  term(shardId: number): number {
    return this.requireShard(shardId).node.raft.term;
  }

  /** The shard's known leader (0: none). */
  leader(shardId: number): number {
    return this.requireShard(shardId).leader;
  }

  /** What every shard holds pending (for metrics). */
  pendingTotals(): PendingCounts {
    let writes = 0;
    let writeBytes = 0;
    let forwarded = 0;
    let reads = 0;
    let readRounds = 0;
    for (const shard of this.shards.values()) {
      const c = shard.pending.counts();
      writes += c.writes;
      writeBytes += c.writeBytes;
      forwarded += c.forwarded;
      reads += c.reads;
      readRounds += c.readRounds;
    }
    return { writes, writeBytes, forwarded, reads, readRounds };
  }

  // ---- Driving ------------------------------------------------------------------------------

  /** The injected clock's time (ms): what requests' deadlines are measured on. */
  now(): number {
    return this.options.clock.now();
  }

  /** A request's timeout when its options give none (ms). */
  get requestTimeoutMs(): number {
    return this.options.requestTimeoutMs;
  }

  /** Ticks without hearing from a leader before a follower campaigns (the randomized timeout adds up to as many again). */
  get electionTicks(): number {
    return this.options.raft.electionTicks;
  }

  /** The election timeout in ms (its ticks times the tick). */
  private get electionTimeoutMs(): number {
    return this.options.raft.electionTicks * this.options.tickMs;
  }

  /**
   * One tick of the logical clock: elections, heartbeats, leader duties, request deadlines.
   *
   * Idle groups are quiesced, as CockroachDB's ranges are: a leader whose followers hold and
   * know its whole log, with nothing pending, tells them so with a heartbeat marked
   * `quiesceContext`, and from then on neither it nor they tick that group (no heartbeats, no
   * election timer). Anything for the group but such a heartbeat or a heartbeat's answer (a
   * request, any other message, a term change) wakes it. Liveness: a node that leads quiesced
   * groups sends each of their followers' nodes one marked heartbeat per tick, for one of those
   * groups only; a quiesced follower that has heard nothing from its leader's node for
   * `quiescedLeaderSilenceElections` election timeouts wakes and catches up the ticks it missed,
   * so it campaigns when an unquiesced follower would have. A woken leader restarts its
   * election timer (its check-quorum counts from then). Never with lease-based reads: a leader
   * that does not tick would not step down on time, and its lease would outlive its leadership.
   */
  tick(): void {
    if (this.stopped) return;
    this.deliveredThisTurn = 0;
    this.ticks++;
    this.anyPeerSilent = false;
    for (const peer of this.heardTick.keys()) if (this.peerSilent(peer)) this.anyPeerSilent = true;
    const now = this.options.clock.now();
    let pings: Map<number, ShardState> | undefined;
    // A member that cannot quiesce (an older build) joined: every group goes back to ticking.
    const quiesce = this.quiesceEnabled;
    for (const shard of this.shards.values()) {
      if (shard.quiesced && !quiesce) this.wake(shard);
      // Before the tick: a leader that quiesces sends no ordinary heartbeats after its marked ones.
      if (!shard.quiesced) this.maybeQuiesce(shard);
      if (shard.quiesced) {
        if (shard.node.raft.role === 'leader') {
          this.maybeWakeWithoutQuorum(shard);
          if (shard.quiesced) pings = this.collectPings(shard, pings);
        } else {
          this.maybeWakeOnSilence(shard);
        }
      }
      if (shard.askTicksLeft !== 0) this.askMembersToWake(shard);
      if (!shard.quiesced) {
        this.dirty.add(shard);
        this.maybeCampaignAlone(shard);
        if (shard.campaignAtTick) {
          shard.campaignAtTick = false;
          if (shard.node.raft.role === 'follower' && shard.leader === 0) shard.node.campaign();
        }
        shard.node.tick();
        this.options.listener?.stepped?.(shard.id, shard.node);
        if (shard.removed) continue;
      }
      if (shard.removed) continue;
      // Not while it hands leadership over: Raft refuses proposals then, and an engine would look
      // again only an election timeout on (a lease revoked that late after a transfer that failed).
      if (shard.isLeader && shard.node.raft.leadTransferee === 0) for (const engine of shard.machine.engineList()) engine.leaderTick?.(this.leaderContext(shard));
      shard.pending.expire(now);
      this.unpark(shard, now);
    }
    if (pings !== undefined) for (const [peer, shard] of pings) this.sendQuiesceHeartbeat(shard, peer);
    this.schedule();
  }

  /** Quiesced groups now (for metrics). */
  quiescedCount(): number {
    let count = 0;
    for (const shard of this.shards.values()) if (shard.quiesced) count++;
    return count;
  }

  /** Whether `shardId`'s group is quiesced here. */
  isQuiesced(shardId: number): boolean {
    return this.requireShard(shardId).quiesced;
  }

  private get quiesceEnabled(): boolean {
    if (this.options.quiesce === false || this.options.raft.readOnlyOption === 'lease-based') return false;
    return this.options.membersSupport?.(RUNTIME_FEATURES_ID, QUIESCE_FEATURE_VERSION) !== false;
  }

  /**
   * Quiesces a group this node leads if it is idle: nothing pending or in flight, every entry
   * committed and applied here, every member caught up to the last entry and heard from lately
   * (or its node silent for the silence limit, as long as a quorum is not), no transfer, no
   * joint configuration. Its
   * followers are told at once.
   */
  private maybeQuiesce(shard: ShardState): void {
    if (!this.quiesceEnabled) return;
    const raft = shard.node.raft;
    if (raft.role !== 'leader' || raft.leadTransferee !== 0) return;
    const last = raft.log.lastIndex();
    if (raft.log.committed !== last || shard.machine.appliedIndex !== last) return;
    if (raft.readOnly.size > 0 || raft.pendingReadIndexMessages.length > 0) return;
    if (raft.tracker.config.voters[1].size > 0 || raft.tracker.config.learnersNext.size > 0) return;
    const p = shard.pending;
    if (p.queue.length > 0 || p.queuedReads.length > 0 || p.parked.length > 0 || p.parkedReads.length > 0) return;
    const counts = p.counts();
    if (counts.writes > 0 || counts.reads > 0 || counts.readRounds > 0) return;
    // Messages still to leave would reach its followers after the quiesce heartbeat, and wake them.
    if (shard.newsHeld > 0 || shard.node.hasReady()) return;
    if (shard.snapshotInProgress || this.cycles.some((cycle) => cycle.readies.some(([held]) => held === shard))) return;
    for (const [id, progress] of raft.tracker.progress) {
      if (id === this.options.memberId) continue;
      // A member whose node has been silent for the silence limit is down or cut off: the group
      // quiesces without it (it campaigns when it comes back, which wakes the group).
      if ((progress.match !== last || !progress.recentActive || progress.state !== 'replicate') && !this.peerSilent(id)) return;
    }
    if (!this.liveQuorum(shard)) return;
    this.quiesce(shard);
    // Its followers are told now, each with a marked heartbeat (later ticks tell one group per node).
    for (const id of raft.tracker.progress.keys()) if (id !== this.options.memberId) this.sendQuiesceHeartbeat(shard, id);
  }

  private quiesce(shard: ShardState): void {
    shard.quiesced = true;
    shard.quiescedTerm = shard.node.raft.term;
    shard.quiescedLead = shard.node.raft.lead;
  }

  /** Adds the followers' nodes of a quiesced group this node leads to the tick's liveness round. */
  private collectPings(shard: ShardState, pings: Map<number, ShardState> | undefined): Map<number, ShardState> {
    const round = pings ?? new Map<number, ShardState>();
    for (const id of shard.node.raft.tracker.progress.keys()) if (id !== this.options.memberId && !round.has(id)) round.set(id, shard);
    return round;
  }

  private sendQuiesceHeartbeat(shard: ShardState, to: number): void {
    const raft = shard.node.raft;
    const progress = raft.tracker.progress.get(to);
    if (progress === undefined || raft.role !== 'leader') return;
    const message = makeMessage({ type: 'MsgHeartbeat', to, from: this.options.memberId, term: raft.term, commit: Math.min(progress.match, raft.log.committed), context: quiesceContext });
    this.options.transport.send(to, shard.id, [message]);
  }

  /** Whether nothing came from `peer`'s node for the silence limit (see maybeWakeOnSilence). */
  private peerSilent(peer: number): boolean {
    // A node never heard from is not silent: it may be a member just added, not caught up yet.
    const heard = this.heardTick.get(peer);
    return heard !== undefined && this.ticks - heard > quiescedLeaderSilenceElections * this.options.raft.electionTicks;
  }

  /**
   * A quiesced leader whose voters' nodes, itself included, are not a quorum heard from lately
   * wakes, so check-quorum steps it down as it would have without quiescence (a leader cut off
   * from every follower must not go on reporting itself leader).
   */
  private maybeWakeWithoutQuorum(shard: ShardState): void {
    if (this.liveQuorum(shard)) return;
    this.wake(shard);
    // Its first check-quorum counts the silent members' nodes as not heard from.
    shard.node.restartQuorumCheck((id) => this.peerSilent(id));
  }

  /** Whether the voters whose nodes are not silent, this one included, are a quorum. */
  private liveQuorum(shard: ShardState): boolean {
    // Most ticks no node is silent: no group's voters need counting.
    if (!this.anyPeerSilent) return true;
    const voters = shard.node.raft.tracker.config.voters[0];
    let live = 0;
    for (const id of voters) if (id === this.options.memberId || !this.peerSilent(id)) live++;
    return live > voters.size / 2;
  }

  /** A node heard from again after its silence: the quiesced groups this node leads with a replica there wake to catch it up. */
  private wakeForRevived(peer: number): void {
    for (const shard of this.shards.values()) {
      if (shard.quiesced && shard.node.raft.role === 'leader' && shard.node.raft.tracker.progress.has(peer)) this.wake(shard);
    }
  }

  /** A quiesced follower whose leader's node went silent wakes, its missed ticks caught up. */
  private maybeWakeOnSilence(shard: ShardState): void {
    const lead = shard.node.raft.lead;
    const heard = this.heardTick.get(lead) ?? 0;
    const silence = this.ticks - heard;
    const limit = quiescedLeaderSilenceElections * this.options.raft.electionTicks;
    if (lead !== 0 && silence <= limit) return;
    // wake() counts the ticks it missed.
    this.wake(shard);
  }

  /**
   * A follower woken by a message from another than its leader (a campaign, say) wakes its
   * leader too: otherwise, with the leader still quiet, its election timer would run out while
   * the leader is alive, and it would vote a campaigner in that an unquiesced follower refuses.
   */
  private wakeByMessage(shard: ShardState, message: Message): void {
    if (!shard.quiesced) return;
    this.wake(shard);
    const raft = shard.node.raft;
    if (raft.role !== 'follower' || raft.lead === 0 || raft.lead === this.options.memberId) return;
    if (raft.lead !== message.from) {
      this.sendWakeCall(shard, raft.lead);
      return;
    }
    // Its leader campaigns or asks to be woken: it leads no more (it restarted within the silence
    // limit). The ticks since its node went silent count, as they would have had this follower
    // not quiesced; otherwise it waited a whole election timeout more from here.
    const campaign = message.type === 'MsgPreVote' || message.type === 'MsgVote' || isWakeCall(message);
    const silence = this.heardBeforeSilence.get(message.from);
    // A silence that ended long ago is not this restart's.
    if (!campaign || silence === undefined || this.ticks - silence.endedAt > this.options.raft.electionTicks) return;
    this.catchUpTicks(shard, silence.before);
  }

  /**
   * The ticks a follower missed while quiesced, counted from `heard` (the last tick its leader's
   * node was heard in), so it campaigns when it would have unquiesced; at most the silence limit
   * (past it, maybeWakeOnSilence would have woken it). The tick under way, if any, is the caller's.
   */
  private catchUpTicks(shard: ShardState, heard: number): void {
    const missed = Math.min(this.ticks - heard, quiescedLeaderSilenceElections * this.options.raft.electionTicks) - 1;
    for (let i = 0; i < missed; i++) shard.node.tick();
  }

  /**
   * A group just added here (a restart, a new replica) that knows no leader asks each member of
   * its configuration to wake, once it has heard from that member's node (its link is up), for
   * an election timeout at most: its leader may be quiesced and, if this node restarted within
   * the silence limit, would not notice; it would hear of the group only when it campaigned.
   */
  private askMembersToWake(shard: ShardState): void {
    const raft = shard.node.raft;
    if (raft.lead !== 0 || raft.role === 'leader') {
      shard.askTicksLeft = 0;
      return;
    }
    // The election timeout counts from the first member heard: a server's start advances the
    // clock by all but one timeout before any link is up.
    if (shard.askTicksLeft > 0) shard.askTicksLeft--;
    const config = raft.tracker.config;
    for (const to of [...config.voters[0], ...config.voters[1], ...config.learners]) {
      if (to === this.options.memberId || shard.asked.has(to) || !this.heardTick.has(to)) continue;
      if (shard.askTicksLeft < 0) shard.askTicksLeft = this.options.raft.electionTicks;
      shard.asked.add(to);
      this.sendWakeCall(shard, to);
    }
  }

  /** A heartbeat's answer marked `wakeContext`: the receiver's group wakes (see wakeByMessage). */
  private sendWakeCall(shard: ShardState, to: number): void {
    const call = makeMessage({ type: 'MsgHeartbeatResp', to, from: this.options.memberId, term: shard.node.raft.term, context: wakeContext });
    this.options.transport.send(to, shard.id, [call]);
  }

  /**
   * Back to ticking: a leader's election timer restarts (check-quorum counts from now); a
   * follower's counts the ticks since its leader's node was last heard (a follower woken by a
   * request or a third node's campaign after its leader died elects when an unquiesced one would).
   */
  private wake(shard: ShardState): void {
    if (!shard.quiesced) return;
    shard.quiesced = false;
    this.dirty.add(shard);
    shard.node.restartQuorumCheck();
    const raft = shard.node.raft;
    if (raft.role === 'follower' && raft.lead !== 0) this.catchUpTicks(shard, this.heardTick.get(raft.lead) ?? 0);
  }

  /**
   * Parked writes go back to the queue once a leader is known, or once their wait is over (then
   * Raft refuses them with `no leader`, as before).
   */
  private unpark(shard: ShardState, now: number): void {
    const pending = shard.pending;
    if (pending.parkedReads.length > 0 && (shard.node.raft.lead !== 0 || now >= pending.parkedReadsUntilMs)) {
      // Still no leader: asked as they are, so Raft refuses them (`no leader`) instead of parking them again.
      pending.feedReadsAsIs = shard.node.raft.lead === 0;
      pending.queuedReads.push(...pending.parkedReads.splice(0));
      this.wake(shard);
      this.dirty.add(shard);
    }
    if (pending.parked.length === 0) return;
    if (shard.node.raft.lead === 0 && now < pending.parkedUntilMs) return;
    // Still no leader: fed as they are, so Raft refuses them (`no leader`) instead of parking them again.
    pending.feedParkedAsIs = shard.node.raft.lead === 0;
    pending.queue.unshift(...pending.parked.splice(0));
    // Fed by the next cycle, a quiesced group's too.
    this.wake(shard);
    this.dirty.add(shard);
  }

  /** Messages from a peer for our groups (unknown shards are ignored). */
  receive(batch: ReadonlyArray<{ shard: number; message: Message }>): void {
    if (this.stopped) return;
    for (const { shard: shardId, message } of batch) {
      if (message.from !== 0) {
        if (this.peerSilent(message.from)) this.wakeForRevived(message.from);
        const heard = this.heardTick.get(message.from);
        if (heard !== undefined && this.ticks - heard > 1) this.heardBeforeSilence.set(message.from, { before: heard, endedAt: this.ticks });
        this.heardTick.set(message.from, this.ticks);
      }
      const shard = this.shards.get(shardId);
      if (shard === undefined) continue;
      const stepped = message.type === 'MsgProp' && shard.node.raft.role === 'leader' ? this.stampForwarded(shard, message) : message;
      if (stepped.type === 'MsgProp' && stepped.entries.length === 0) continue;
      this.dirty.add(shard);
      const quiesce = isQuiesceHeartbeat(stepped);
      // Heartbeats and their answers change nothing a quiesced group must act on (a term or
      // leader change wakes it below); anything else may, and so does a follower's wake call.
      if (stepped.type === 'MsgHeartbeatResp' ? isWakeCall(stepped) : stepped.type !== 'MsgHeartbeat') this.wakeByMessage(shard, stepped);
      shard.node.step(stepped);
      this.options.listener?.stepped?.(shardId, shard.node);
      const raft = shard.node.raft;
      if (shard.quiesced && (raft.term !== shard.quiescedTerm || raft.lead !== shard.quiescedLead)) this.wake(shard);
      else if (quiesce && !shard.quiesced && this.quiesceEnabled && raft.role === 'follower' && raft.lead === stepped.from && raft.term === stepped.term && !holdsUnproposed(shard)) this.quiesce(shard);
    }
    this.schedule();
  }

  /**
   * A leader takes a forwarded proposal: its commands carry the leader's clock from now on, and
   * a command some member cannot apply is dropped here (its proposer checked the same, so only a
   * proposer with a stale view of the members sends one; it times out).
   */
  private stampForwarded(shard: ShardState, message: Message): Message {
    const now = this.options.clock.now();
    const entries: Entry[] = [];
    for (const e of message.entries) {
      if (e.type !== 'normal') {
        entries.push(e);
        continue;
      }
      const kind = envelopeKind(e.data);
      if (kind !== undefined && !this.admissible(shard, kind.engine, kind.version)) continue;
      entries.push({ ...e, data: stampEnvelope(e.data, now) });
    }
    return { ...message, entries };
  }

  /**
   * The caller a command carries. While some member's build predates callers (it could not decode
   * the envelope), the caller of a request made with auth off is left out; any other request is
   * refused rather than proposed unchecked.
   */
  private carriedCaller(shard: ShardState, caller: Caller | undefined): Caller | undefined {
    // A shard without an auth engine (the meta shard) checks no callers.
    if (caller === undefined || !shard.machine.supports(EngineId.Auth, AUTH_COMMAND_VERSION)) return undefined;
    if (this.options.membersSupport?.(EngineId.Auth, AUTH_COMMAND_VERSION) !== false) return caller;
    // Fails closed: only the caller of auth-off (the shared anonymousCaller) may be left out; any
    // other would let an unchecked command through.
    if (caller === anonymousCaller) return undefined;
    throw new RuntimeError('unsupported-command', "auth is on, and a member's build cannot carry a request's caller: upgrade every member");
  }

  /** Whether this node and every member can apply a command of `engine` at `version`. */
  private admissible(shard: ShardState, engine: number, version: number): boolean {
    if (!shard.machine.supports(engine, version)) return false;
    return this.options.membersSupport?.(engine, version) !== false;
  }

  reportUnreachable(peer: number, shards: readonly number[]): void {
    if (this.stopped) return;
    for (const id of shards) {
      const shard = this.shards.get(id);
      if (shard === undefined) continue;
      this.dirty.add(shard);
      shard.node.reportUnreachable(peer);
    }
    this.schedule();
  }

  reportSnapshot(peer: number, shardId: number, ok: boolean): void {
    if (this.stopped) return;
    const shard = this.shards.get(shardId);
    if (shard === undefined) return;
    this.dirty.add(shard);
    this.wake(shard);
    shard.node.reportSnapshot(peer, ok);
    this.schedule();
  }

  campaign(shardId: number): void {
    const shard = this.requireShard(shardId);
    this.dirty.add(shard);
    this.wake(shard);
    shard.node.campaign();
    this.schedule();
  }

  transferLeader(shardId: number, to: number): void {
    const shard = this.requireShard(shardId);
    this.dirty.add(shard);
    this.wake(shard);
    try {
      shard.node.transferLeader(to);
    } catch (error) {
      if (!(error instanceof ProposalDroppedError)) throw error;
    }
    this.schedule();
  }

  // ---- Requests -----------------------------------------------------------------------------

  /**
   * Proposes a command; `callback` hears what applying it produced here, or why it could not be
   * carried out (see RuntimeError for which errors leave the outcome unknown).
   */
  propose(shardId: number, command: EngineCommand, options: RequestOptions, callback: (error: RuntimeError | undefined, applied?: Applied) => void): void {
    const shard = this.admitWrite(shardId, command.payload.length);
    if (!this.admissible(shard, command.engine, command.version)) {
      throw new RuntimeError('unsupported-command', `engine ${command.engine} command version ${command.version} is not applied by this node or every member yet`);
    }
    const waiter = this.newWaiter('command', command.payload.length, options, callback as (error: RuntimeError | undefined, result?: unknown) => void);
    waiter.command = command;
    shard.pending.addWrite(waiter);
    this.dirty.add(shard);
    this.wake(shard);
    this.schedule();
  }

  /** Proposes a configuration change (through any member); `callback` hears when it is applied here. */
  proposeConfChange(shardId: number, change: ConfChange, options: RequestOptions, callback: (error: RuntimeError | undefined) => void): void {
    const shard = this.admitWrite(shardId, change.context.length);
    const waiter = this.newWaiter('conf', change.context.length, options, callback as (error: RuntimeError | undefined, result?: unknown) => void);
    waiter.change = change;
    shard.pending.addWrite(waiter);
    this.dirty.add(shard);
    this.wake(shard);
    this.schedule();
  }

  /** A linearizable read barrier: `callback` runs once this node applied everything committed when it was asked. */
  read(shardId: number, options: RequestOptions, callback: (error: RuntimeError | undefined, readIndex?: number) => void): void {
    const shard = this.requireShard(shardId);
    if (shard.pending.counts().reads >= readsPendingMax) throw this.tooMany(`${readsPendingMax} reads are pending on shard ${shardId}`);
    const waiter: ReadWaiter = { deadlineMs: this.deadline(options), settled: false, callback };
    shard.pending.addRead(waiter);
    this.dirty.add(shard);
    this.wake(shard);
    this.schedule();
  }

  private admitWrite(shardId: number, bytes: number): ShardState {
    const shard = this.requireShard(shardId);
    const counts = shard.pending.counts();
    if (counts.writes >= proposalsPendingMax) throw this.tooMany(`${proposalsPendingMax} writes are pending on shard ${shardId}`);
    if (counts.writeBytes + bytes > proposalBytesPendingMax) throw this.tooMany(`pending writes on shard ${shardId} hold ${counts.writeBytes} bytes`);
    if (!shard.isLeader && counts.forwarded >= forwardedProposalsPendingMax) {
      throw this.tooMany(`${forwardedProposalsPendingMax} forwarded writes are waiting on shard ${shardId}`);
    }
    const status = shard.node.raft.log;
    if (status.committed - shard.machine.appliedIndex > applyGapEntriesMax) {
      throw this.tooMany(`shard ${shardId} applies ${status.committed - shard.machine.appliedIndex} entries behind its commit index`);
    }
    return shard;
  }

  private tooMany(detail: string): RuntimeError {
    this.refusedTotal++;
    return new RuntimeError('too-many-requests', `etcdserver: too many requests (${detail})`);
  }

  private newWaiter(kind: 'command' | 'conf', bytes: number, options: RequestOptions, callback: (error: RuntimeError | undefined, result?: unknown) => void): WriteWaiter {
    const requestId = this.nextRequestId++;
    const caller = options.caller;
    const deadlineMs = this.deadline(options);
    return { requestId, kind, command: undefined, caller, change: undefined, data: undefined, bytes, deadlineMs, requestDeadlineMs: deadlineMs, forwarded: false, position: undefined, leaderChanged: false, refusal: undefined, callback };
  }

  private deadline(options: RequestOptions): number {
    const timeout = options.timeoutMs ?? this.options.requestTimeoutMs;
    assert(timeout > 0, 'a request timeout must be positive');
    return this.options.clock.now() + timeout;
  }

  private requireShard(shardId: number): ShardState {
    if (this.failure !== undefined || this.stopped) throw new RuntimeError('stopped', 'the node is stopping');
    const shard = this.shards.get(shardId);
    if (shard === undefined) throw new RuntimeError('wrong-shard', `shard ${shardId} is not hosted on this node`);
    return shard;
  }

  // ---- Answering ----------------------------------------------------------------------------

  /** Runs a settled request's callback: now, unless this turn already ran its share. */
  private deliver(run: () => void): void {
    if (this.stopped || (this.deliveries.length === 0 && this.deliveredThisTurn < callbacksPerTurnMax)) {
      this.deliveredThisTurn++;
      run();
      return;
    }
    this.deliveries.push(run);
    if (!this.deliveryScheduled) {
      this.deliveryScheduled = true;
      this.options.scheduler.soon(() => this.runDeliveries());
    }
  }

  private runDeliveries(): void {
    this.deliveryScheduled = false;
    this.deliveredThisTurn = 0;
    const batch = this.deliveries.splice(0, callbacksPerTurnMax);
    this.deliveredThisTurn = batch.length;
    if (this.deliveries.length > 0) {
      this.deliveryScheduled = true;
      this.options.scheduler.soon(() => this.runDeliveries());
    }
    for (const run of batch) run();
  }

  // ---- Stopping -----------------------------------------------------------------------------

  /** Stops: every pending request fails with `stopped`; `done` runs once no cycle is running. */
  stop(done?: () => void): void {
    if (!this.stopped) {
      this.stopped = true;
      this.failEverything(new RuntimeError('stopped', 'etcdserver: server stopped'));
    }
    if (done === undefined) return;
    const wait = (): void => {
      if (this.cycles.length === 0) done();
      else this.options.scheduler.soon(wait);
    };
    wait();
  }

  /** Whether a cycle is waiting for its save (a stopped runtime must not be reused before 0). */
  get cyclesInFlight(): number {
    return this.cycles.length;
  }

  private fatal(error: Error): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    this.stopped = true;
    // Cycles waiting for a save that will never succeed: nothing is left to finish.
    this.cycles.length = 0;
    this.failEverything(new RuntimeError('stopped', 'etcdserver: server stopped'));
    this.options.logger?.warn(`shard runtime stopped: ${error.stack ?? error.message}`);
    this.options.listener?.fatal?.(error);
  }

  private failEverything(error: RuntimeError): void {
    for (const shard of this.shards.values()) shard.pending.failAll(error);
    // Answers already settled go out now: nothing runs on a stopped runtime's turns.
    for (const run of this.deliveries.splice(0)) run();
  }

  // ---- The cycle ----------------------------------------------------------------------------

  private schedule(): void {
    if (this.scheduled || this.inFirstHalf || this.stopped) return;
    this.scheduled = true;
    this.options.scheduler.soon(() => {
      this.scheduled = false;
      if (this.stopped) return;
      try {
        this.firstHalf();
      } catch (error) {
        this.inFirstHalf = false;
        this.fatal(error instanceof Error ? error : new Error(String(error)));
      }
    });
  }

  /** Whether some group has work for a cycle; groups found without any leave the dirty set. */
  private hasWork(): boolean {
    for (const shard of this.dirty) {
      if (!shard.removed && shardHasWork(shard)) return true;
      this.dirty.delete(shard);
    }
    return false;
  }

  private firstHalf(): void {
    this.inFirstHalf = true;
    this.deliveredThisTurn = 0;
    // In the order groups were touched (deterministic, as the simulator needs).
    const visiting = [...this.dirty];
    this.dirty.clear();
    for (const shard of visiting) this.feed(shard);
    const readies: Array<[ShardState, Ready]> = [];
    for (const shard of visiting) {
      if (!shard.node.hasReady()) continue;
      const ready = shard.node.ready();
      this.options.listener?.readyTaken?.(shard.id, shard.node, ready);
      readies.push([shard, ready]);
    }
    if (readies.length === 0) {
      this.inFirstHalf = false;
      this.keepBusy(visiting);
      return;
    }
    // A snapshot from the leader is restored before anything is written: damaged data stops the
    // node here, before it is stored (a stored bad snapshot would fail every restart).
    const installs = new Map<ShardState, ShardStateMachine>();
    for (const [shard, ready] of readies) {
      if (ready.snapshot === undefined || shard.removed) continue;
      const machine = this.options.stateMachine(shard.id);
      machine.restore(ready.snapshot.data, ready.snapshot.metadata.index);
      installs.set(shard, machine);
    }
    const updates: ShardUpdate[] = [];
    let mustSync = false;
    let commitNews: Array<[ShardState, readonly Message[]]> | undefined;
    const outgoing: Array<[ShardState, readonly Message[]]> = [];
    for (const [shard, ready] of readies) {
      // A group removed meanwhile (by a listener) sends, saves and applies nothing more.
      if (shard.removed) continue;
      this.noteSoftState(shard, ready);
      if (shard.removed) continue;
      if (onlyCommitNews(ready, this.options.memberId)) (commitNews ??= []).push([shard, ready.messages]);
      else outgoing.push([shard, ready.messages]);
      if (this.options.unsafe?.acknowledgeBeforePersist === true) outgoing.push([shard, ready.messagesAfterPersist]);
      if (ready.entries.length > 0 || ready.hardState !== undefined || ready.snapshot !== undefined) {
        // The applied index lets the log's tail cache drop applied entries between snapshots.
        const appliedInMemory = ready.snapshot === undefined ? shard.machine.appliedIndex : undefined;
        updates.push({ shard: shard.id, entries: ready.entries, hardState: ready.hardState, snapshot: ready.snapshot, appliedInMemory });
        mustSync ||= ready.mustSync;
      }
      this.placeOwnEntries(shard, ready.entries);
      this.noteDroppedProposals(shard, ready);
    }
    const cycle: Cycle = { readies, confApplied: [], startedMs: this.options.clock.now(), synced: mustSync, saved: updates.length === 0, error: undefined };
    this.cycles.push(cycle);
    if (updates.length > 0) {
      // One write for every group. A commit index alone is not waited for: it rides with the
      // next batch (a crash may lose it; Raft learns it again from the leader).
      this.options.storage.save(updates, { sync: mustSync, deferrable: !mustSync }, (error) => {
        if (error !== undefined) {
          this.fatal(error);
          return;
        }
        if (mustSync) {
          cycle.saved = true;
          this.options.listener?.saved?.((this.options.clock.now() - cycle.startedMs) / 1000);
          if (!this.inFirstHalf) {
            // A turn of its own (the storage's completion).
            this.deliveredThisTurn = 0;
            this.finishCycles();
          }
        }
      });
      if (!mustSync) cycle.saved = true;
    }
    // The messages leave once the write has been handed to the storage, so that a leader's own
    // write starts before its sends and before the followers they wake take the CPU.
    for (const [shard, messages] of outgoing) if (!shard.removed) this.send(shard, messages);
    // Committed entries are durable on a quorum already: apply them while our own write runs.
    for (const [shard, ready] of readies) {
      if (shard.removed) continue;
      if (ready.snapshot !== undefined) this.installSnapshot(shard, ready.snapshot, installs.get(shard)!);
      this.applyCommitted(shard, ready.committedEntries, cycle.confApplied);
      this.noteReadStates(shard, ready);
    }
    if (commitNews !== undefined) {
      // A leader's appends that only carry a new commit index wait for the next task: the answers
      // the commit released leave first. A follower's linearizable reads wait for this news (one
      // task more); news of a write a follower forwarded is not held back (see onlyCommitNews).
      const news = commitNews;
      for (const [shard] of news) shard.newsHeld++;
      this.options.scheduler.soon(() => {
        for (const [shard] of news) shard.newsHeld--;
        if (this.stopped) return;
        for (const [shard, messages] of news) if (!shard.removed) this.send(shard, messages);
      });
    }
    this.inFirstHalf = false;
    this.keepBusy(visiting);
    this.finishCycles();
    if (this.hasWork()) this.schedule();
  }

  /** Groups a cycle visited that still have work stay for the next one. */
  private keepBusy(visited: readonly ShardState[]): void {
    for (const shard of visited) if (!shard.removed && shardHasWork(shard)) this.dirty.add(shard);
  }

  /** Second halves of the cycles whose saves are done, in order (a broken invariant stops the runtime). */
  private finishCycles(): void {
    try {
      this.finishCyclesUnguarded();
    } catch (error) {
      this.fatal(error instanceof Error ? error : new Error(String(error)));
    }
  }

  private finishCyclesUnguarded(): void {
    while (this.cycles.length > 0 && this.cycles[0]!.saved && !this.stopped) {
      const cycle = this.cycles.shift()!;
      for (const [shard, ready] of cycle.readies) {
        if (shard.removed) continue;
        // Acknowledgements and votes promise what the write made durable: only now may they leave.
        if (this.options.unsafe?.acknowledgeBeforePersist !== true) this.send(shard, ready.messagesAfterPersist);
        shard.node.advance();
        this.dirty.add(shard);
        shard.pending.releaseReads(shard.machine.appliedIndex);
        this.maybeTakeSnapshot(shard);
        this.maybeCampaignAlone(shard);
      }
      for (const answer of cycle.confApplied) answer();
    }
    if (this.stopped) this.cycles.length = 0;
    else if (this.hasWork()) this.schedule();
  }

  /** Moves queued proposals, conf changes and reads into the group. */
  private feed(shard: ShardState): void {
    const pending = shard.pending;
    if (pending.queue.length > 0) this.feedWrites(shard);
    if (pending.queuedReads.length > 0) {
      const waiters = pending.queuedReads.filter((w) => !w.settled);
      pending.queuedReads = [];
      // No leader known (an election, a leader handing over): wait for one, as writes do and as
      // etcd's read loop does, rather than refuse a read a moment before the next leader is heard.
      // (Read and cleared first: reads that settled meanwhile must not leave it set for later ones.)
      const waitOver = pending.feedReadsAsIs;
      pending.feedReadsAsIs = false;
      if (waiters.length === 0) return;
      if (shard.node.raft.lead === 0 && !waitOver) {
        const now = this.options.clock.now();
        if (pending.parkedReads.length === 0) pending.parkedReadsUntilMs = now + noLeaderWaitElections * this.electionTimeoutMs;
        if (now < pending.parkedReadsUntilMs) {
          pending.parkedReads.push(...waiters);
          return;
        }
      }
      // Unique across restarts too: a late answer for an earlier process must match no round of this one.
      const context = `${this.options.memberId}:${this.options.firstRequestId}:${++shard.readRound}`;
      try {
        shard.node.readIndex(encoder.encode(context));
        pending.readRounds.set(context, { waiters, index: undefined });
      } catch (error) {
        const refusal = this.refusal(error);
        for (const w of waiters) pending.settleRead(w, refusal);
      }
    }
  }

  private feedWrites(shard: ShardState): void {
    const pending = shard.pending;
    // No leader known (an election, or a node that has just started): wait for one for a while,
    // as etcd's clients would otherwise have to retry; refused only once the wait is over.
    const waitOver = pending.feedParkedAsIs;
    pending.feedParkedAsIs = false;
    if (shard.node.raft.lead === 0 && !waitOver) {
      const now = this.options.clock.now();
      if (pending.parked.length === 0) pending.parkedUntilMs = now + noLeaderWaitElections * this.electionTimeoutMs;
      if (now < pending.parkedUntilMs) {
        pending.parked.push(...pending.queue.splice(0));
        return;
      }
    }
    const queued = pending.queue;
    pending.queue = [];
    const now = this.options.clock.now();
    const commands: Array<[WriteWaiter, Uint8Array]> = [];
    for (const waiter of queued) {
      if (pending.writes.get(waiter.requestId) !== waiter) continue;
      const command = waiter.command;
      if (command !== undefined) {
        const data = encodeEnvelope({ ...command, timestampMs: now, proposer: this.options.memberId, requestId: waiter.requestId, caller: this.carriedCaller(shard, waiter.caller) });
        commands.push([waiter, data]);
        continue;
      }
      // A conf change goes alone (one may be pending at a time); commands before it go first.
      this.proposeCommands(shard, commands.splice(0));
      this.proposeConf(shard, waiter);
    }
    this.proposeCommands(shard, commands);
  }

  private proposeCommands(shard: ShardState, commands: Array<[WriteWaiter, Uint8Array]>): void {
    if (commands.length === 0) return;
    const pending = shard.pending;
    try {
      shard.node.proposeMany(commands.map(([, data]) => data));
    } catch (error) {
      if (this.parkDuringHandOver(shard, error, commands.map(([waiter]) => waiter))) return;
      const refusal = this.refusal(error);
      for (const [waiter] of commands) pending.settleWrite(waiter, refusal);
      return;
    }
    this.options.listener?.stepped?.(shard.id, shard.node);
    // A leader appended them at the end of its log, in order; a follower forwarded them.
    const leading = shard.node.raft.role === 'leader';
    const last = shard.node.raft.log.lastIndex();
    for (let i = 0; i < commands.length; i++) {
      const [waiter, data] = commands[i]!;
      pending.proposed(waiter, data, leading ? last - commands.length + 1 + i : undefined, shard.machine.appliedIndex);
    }
  }

  /**
   * Writes this leader refused because it is handing leadership over wait for the hand-over (or
   * for it to give up, after an election timeout), as writes forwarded to it do, instead of
   * failing with `leader changed`: they go again at the leader change or the next tick.
   */
  private parkDuringHandOver(shard: ShardState, error: unknown, waiters: readonly WriteWaiter[]): boolean {
    if (!(error instanceof ProposalDroppedError) || error.reason !== 'transfer-in-progress') return false;
    this.park(shard, waiters, this.refusal(error));
    return true;
  }

  /** Writes refused for a while (`refusal`) go again at the next leader change or tick, until their deadline. */
  private park(shard: ShardState, waiters: readonly WriteWaiter[], refusal: RuntimeError): void {
    for (const waiter of waiters) waiter.refusal = refusal;
    const pending = shard.pending;
    if (pending.parked.length === 0) pending.parkedUntilMs = this.options.clock.now() + noLeaderWaitElections * this.electionTimeoutMs;
    pending.parked.push(...waiters);
  }

  private proposeConf(shard: ShardState, waiter: WriteWaiter): void {
    const change = waiter.change!;
    const wrapped: ConfChange = { ...change, context: wrapConfContext(this.options.memberId, waiter.requestId, change.context) };
    try {
      shard.node.proposeConfChange(wrapped);
    } catch (error) {
      if (this.parkDuringHandOver(shard, error, [waiter])) return;
      shard.pending.settleWrite(waiter, this.refusal(error));
      return;
    }
    this.options.listener?.stepped?.(shard.id, shard.node);
    const leading = shard.node.raft.role === 'leader';
    shard.pending.proposed(waiter, encodeConfChange(wrapped), leading ? shard.node.raft.log.lastIndex() : undefined, shard.machine.appliedIndex);
  }

  private refusal(error: unknown): RuntimeError {
    if (!(error instanceof ProposalDroppedError)) throw error;
    switch (error.reason) {
      case 'no-leader':
        return new RuntimeError('no-leader', 'etcdserver: no leader');
      case 'transfer-in-progress':
        return new RuntimeError('leader-transfer', 'etcdserver: leader changed');
      case 'conf-change-pending':
      case 'conf-change-in-joint':
        return new RuntimeError('conf-change-pending', error.message);
      case 'conf-change-not-joint':
      case 'conf-change-invalid':
        return new RuntimeError('invalid-conf-change', error.message);
      case 'not-member':
        return new RuntimeError('not-member', error.message);
      default:
        return new RuntimeError('too-many-requests', error.message);
    }
  }

  /** Learns where forwarded proposals of ours landed, from the entries this node appends. */
  private placeOwnEntries(shard: ShardState, entries: readonly Entry[]): void {
    const pending = shard.pending;
    if (pending.counts().forwarded === 0) return;
    const me = this.options.memberId;
    for (const entry of entries) {
      const origin = entry.type === 'normal' ? envelopeOrigin(entry.data) : unwrapConfContext(decodeConfChange(entry.data).context);
      if (origin.proposer !== me) continue;
      const waiter = pending.writes.get(origin.requestId);
      if (waiter === undefined || waiter.data === undefined || waiter.position !== undefined) continue;
      if (entry.index > shard.machine.appliedIndex) pending.place(waiter, entry.index, shard.machine.appliedIndex);
    }
  }

  private noteSoftState(shard: ShardState, ready: Ready): void {
    const termBefore = shard.term;
    if (ready.hardState !== undefined) shard.term = ready.hardState.term;
    const soft = ready.softState;
    // A new term with the same leader (re-elected, never seen deposed here): its rounds of the
    // old term are lost with its read state all the same.
    if (shard.term > termBefore && (soft === undefined || soft.lead === shard.leader)) {
      shard.pending.requeueReadRounds(this.options.clock.now() + noLeaderWaitElections * this.electionTimeoutMs);
      this.unpark(shard, this.options.clock.now());
    }
    if (soft === undefined) return;
    const wasLeader = shard.isLeader;
    shard.isLeader = soft.role === 'leader';
    if (soft.lead !== shard.leader) {
      shard.leader = soft.lead;
      shard.term = shard.node.raft.term;
      this.options.listener?.leaderChanged?.(shard.id, soft.lead, shard.term);
      // Reads in flight were asked of the old leader: they will never complete there. etcd fails
      // them ("leader changed"); here they are asked again of the next leader.
      shard.pending.requeueReadRounds(this.options.clock.now() + noLeaderWaitElections * this.electionTimeoutMs);
      shard.pending.leaderChanged(this.options.clock.now() + leaderChangeGraceElections * this.electionTimeoutMs);
      // Writes parked for want of a leader go now, not at the next tick (a restarted node's first
      // write waited up to a tick after its election).
      if (soft.lead !== 0) this.unpark(shard, this.options.clock.now());
    }
    if (wasLeader !== shard.isLeader) {
      for (const engine of shard.machine.engineList()) engine.onLeadership?.(shard.isLeader, this.leaderContext(shard));
    }
  }

  private leaderContext(shard: ShardState): LeaderContext {
    return {
      shardId: shard.id,
      term: shard.term,
      nowMs: this.options.clock.now(),
      propose: (command) => {
        try {
          this.propose(shard.id, command, {}, () => undefined);
        } catch (error) {
          // A full queue: the duty runs again on a later tick.
          if (!(error instanceof RuntimeError)) throw error;
        }
      },
    };
  }

  private send(shard: ShardState, messages: readonly Message[]): void {
    if (messages.length === 0) return;
    // Grouped by destination so the transport queues one list per peer.
    const byPeer = new Map<number, Message[]>();
    for (const m of messages) {
      let list = byPeer.get(m.to);
      if (list === undefined) byPeer.set(m.to, (list = []));
      list.push(m);
    }
    for (const [to, list] of byPeer) this.options.transport.send(to, shard.id, list);
  }

  private installSnapshot(shard: ShardState, snapshot: Snapshot, machine: ShardStateMachine): void {
    this.adopt(machine);
    shard.machine = machine;
    shard.snapshotIndex = snapshot.metadata.index;
    shard.appliedBytesAtSnapshot = shard.appliedBytes;
    // The log before the snapshot is gone: no compaction point can be taken from it.
    shard.appliedMarks.length = 0;
    shard.appliedMarks.push({ index: snapshot.metadata.index, bytes: shard.appliedBytes });
    // Writes this node placed at or below the snapshot were applied or lost inside it: unknown.
    const pending = shard.pending;
    for (const [index, requestId] of [...pending.positions]) {
      if (index > snapshot.metadata.index) continue;
      const waiter = pending.writes.get(requestId);
      if (waiter !== undefined) pending.settleWrite(waiter, new RuntimeError('timeout', 'request timed out (a snapshot replaced the state while it was pending)'));
    }
    this.options.listener?.stateReplaced?.(shard.id, 'leader');
  }

  private applyCommitted(shard: ShardState, entries: readonly Entry[], confApplied: Array<() => void>): void {
    this.applyEntries(shard, entries, confApplied);
    const last = shard.appliedMarks[shard.appliedMarks.length - 1];
    const applied = shard.machine.appliedIndex;
    if (last === undefined || last.index < applied) {
      assert(last === undefined || last.bytes <= shard.appliedBytes, 'applied bytes never go down');
      shard.appliedMarks.push({ index: applied, bytes: shard.appliedBytes });
    }
    // A mark this far behind can no longer be a compaction point (those are never further behind).
    const useful = applied - this.options.snapshotCatchUpEntries;
    while (shard.appliedMarks.length > 1 && shard.appliedMarks[1]!.index <= useful) shard.appliedMarks.shift();
  }

  private applyEntries(shard: ShardState, entries: readonly Entry[], confApplied: Array<() => void>): void {
    const pending = shard.pending;
    const me = this.options.memberId;
    for (const entry of entries) {
      // A listener removed this very group: nothing more is applied to it.
      if (shard.removed) return;
      if (entry.index <= shard.machine.appliedIndex) continue;
      shard.appliedBytes += entry.data.length;
      let origin: { proposer: number; requestId: number };
      let result: unknown;
      let own: WriteWaiter | undefined;
      if (entry.type === 'conf-change') {
        const change = decodeConfChange(entry.data);
        const unwrapped = unwrapConfContext(change.context);
        origin = { proposer: unwrapped.proposer, requestId: unwrapped.requestId };
        // Checked again where it applies (a removed member may never come back): what the state
        // refuses is dropped by every replica alike. A change left with nothing is no change at
        // all (an empty change would mean "leave the joint configuration" to Raft).
        const plain = shard.machine.admitConfChange({ ...change, context: unwrapped.payload });
        if (plain.changes.length > 0 || change.changes.length === 0) shard.node.applyConfChange({ ...change, changes: plain.changes });
        shard.machine.applyConfChange(entry, plain, origin);
        shard.confChanged = true;
        this.options.listener?.confChangeApplied?.(shard.id, plain, entry);
      } else {
        // A command of ours, as we proposed it: its apply may use what our edge decoded.
        own = this.ownCommand(pending, entry);
        const applied = shard.machine.apply(entry, own?.command?.decoded);
        origin = applied === undefined ? { proposer: 0, requestId: 0 } : applied;
        result = applied;
        for (const split of shard.machine.takeSplits()) this.startSplitChild(shard, split.child, split.machine);
        if (applied !== undefined) this.options.listener?.applied?.(shard.id, applied, entry);
      }
      this.options.listener?.entryApplied?.(shard.id, entry);
      // A write of ours placed here: this entry is it, or it can never be applied.
      const placed = pending.positions.get(entry.index);
      if (placed !== undefined && (origin.proposer !== me || origin.requestId !== placed)) {
        const waiter = pending.writes.get(placed);
        if (waiter !== undefined) pending.settleWrite(waiter, new RuntimeError('lost', 'etcdserver: leader changed'));
      }
      if (origin.proposer !== me) continue;
      const waiter = pending.writes.get(origin.requestId);
      // No waiter: an id from before a restart (ids are unique per process start).
      if (waiter === undefined || waiter.data === undefined) continue;
      if (entry.type === 'normal') {
        // Only the write whose very command this is (`ownCommand` compared them).
        if (waiter === own) pending.settleWrite(waiter, undefined, result);
      } else if (waiter.kind === 'conf') {
        confApplied.push(() => pending.settleWrite(waiter, undefined));
      }
    }
  }

  /** The write of this node's that a normal entry carries (the same command), if it is still waiting. */
  private ownCommand(pending: PendingRequests, entry: Entry): WriteWaiter | undefined {
    if (entry.data.length === 0) return undefined;
    const origin = envelopeOrigin(entry.data);
    if (origin.proposer !== this.options.memberId) return undefined;
    const waiter = pending.writes.get(origin.requestId);
    return waiter !== undefined && waiter.data !== undefined && sameCommand(waiter.data, entry.data) ? waiter : undefined;
  }

  /**
   * Proposals of ours that were forwarded and refused where they arrived (a leader handing over,
   * a node without a leader): none of their entries was appended anywhere, so each write waits
   * for a leader again, with its own deadline, and is proposed again (at a leader change or the
   * next tick); one refused for a reason waiting cannot cure fails with that refusal, known not
   * applied. Without this, such a write waited for its deadline and ended as unknown.
   */
  private noteDroppedProposals(shard: ShardState, ready: Ready): void {
    if (ready.droppedProposals.length === 0) return;
    const pending = shard.pending;
    const me = this.options.memberId;
    for (const dropped of ready.droppedProposals) {
      for (const entry of dropped.entries) {
        let origin: { proposer: number; requestId: number };
        try {
          origin = entry.type === 'normal' ? envelopeOrigin(entry.data) : unwrapConfContext(decodeConfChange(entry.data).context);
        } catch {
          continue; // not an entry of this build's: not ours
        }
        if (origin.proposer !== me) continue;
        const waiter = pending.writes.get(origin.requestId);
        if (waiter === undefined || waiter.data === undefined || !waiter.forwarded || waiter.position !== undefined) continue;
        const same = entry.type === 'normal' ? waiter.kind === 'command' && sameCommand(waiter.data, entry.data) : waiter.kind === 'conf' && bytesEqual(waiter.data, entry.data);
        if (!same) continue;
        this.options.listener?.proposalDropped?.(shard.id, dropped.reason);
        if (!retriedDropReasons.has(dropped.reason)) {
          pending.settleWrite(waiter, this.refusal(new ProposalDroppedError(dropped.reason)));
          continue;
        }
        pending.unpropose(waiter);
        this.park(shard, [waiter], this.refusal(new ProposalDroppedError(dropped.reason)));
      }
    }
  }

  private noteReadStates(shard: ShardState, ready: Ready): void {
    const pending = shard.pending;
    for (const state of ready.readStates) {
      const context = decoder.decode(state.requestContext);
      const batch = pending.readRounds.get(context);
      if (batch === undefined) continue;
      pending.readRounds.delete(context);
      batch.index = state.index;
      pending.readsAwaitingApply.push(batch);
    }
    pending.releaseReads(shard.machine.appliedIndex);
  }

  /**
   * A split applied on `parent`: starts the child's group from the state the split made, as a
   * snapshot at SPLIT_CHILD_INDEX with the parent's configuration at the split's index (every
   * replica writes the same one, so their logs agree). The snapshot's save is queued before any
   * later save of the parent (one ordered storage queue), so the parent's own snapshot past the
   * split never reaches disk before the child's state does. A child already hosted or stored (a
   * restart replaying the parent's log, or a replica the group's leader gave a snapshot) is left
   * as it is. The node that led the parent makes the child campaign at its first tick.
   */
  /** A state machine a group runs from now on: it asks whether a split's child exists here already. */
  private adopt(machine: ShardStateMachine): void {
    machine.splitChildMade = (child) => this.shards.has(child) || this.storedAlready(child);
  }

  private startSplitChild(parent: ShardState, child: number, machine: ShardStateMachine | undefined): void {
    // No machine: the split found the child made already (a replay of the parent's log).
    if (machine !== undefined) {
      assert(!this.shards.has(child) && !this.storedAlready(child), `shard ${child}: a split made it twice`);
      this.makeSplitChild(parent, child, machine);
    }
    // Either way the parent no longer serves the moved keys (its watchers are told).
    this.options.listener?.shardSplit?.(parent.id, child);
  }

  private storedAlready(shard: number): boolean {
    const storage = this.options.storage.shard(shard);
    return storage.lastIndex() > 0 || storage.snapshot().metadata.index > 0;
  }

  private makeSplitChild(parent: ShardState, child: number, machine: ShardStateMachine): void {
    const metadata: Snapshot['metadata'] = { index: SPLIT_CHILD_INDEX, term: SPLIT_CHILD_INDEX, confState: parent.node.raft.tracker.confState() };
    const data = joinSnapshotFrames([...machine.snapshot()]);
    this.options.storage.save(
      [{ shard: child, snapshot: { metadata, data }, hardState: { term: SPLIT_CHILD_INDEX, vote: 0, commit: SPLIT_CHILD_INDEX } }],
      { sync: true, deferrable: false },
      (error) => {
        if (error !== undefined) this.fatal(error);
      },
    );
    this.addShard(child, machine);
    this.shards.get(child)!.campaignAtTick = parent.isLeader;
  }

  /** See `campaignWhenSoleVoter`: Raft would refuse a campaign before the committed conf changes apply. */
  private maybeCampaignAlone(shard: ShardState): void {
    if (this.options.campaignWhenSoleVoter !== true) return;
    const raft = shard.node.raft;
    if (raft.role !== 'follower' || raft.log.applied < raft.log.committed) return;
    // Not confState(): this runs after every cycle of every follower.
    if (!raft.tracker.isSingleton() || !raft.tracker.isVoter(this.options.memberId)) return;
    this.dirty.add(shard);
    shard.node.campaign();
    this.schedule();
  }

  /** Whether a snapshot of `shard` is due: by entries, by bytes, or after a configuration change. */
  private snapshotDue(shard: ShardState, applied: number): boolean {
    const every = this.options.snapshotCount;
    const bytes = this.options.snapshotBytes ?? 0;
    if (every <= 0 || shard.snapshotInProgress || applied <= shard.snapshotIndex) return false;
    if (applied - shard.snapshotIndex >= every) return true;
    if (bytes > 0 && shard.appliedBytes - shard.appliedBytesAtSnapshot >= bytes) return true;
    return this.options.snapshotAfterConfChange === true && shard.confChanged && shard.snapshotIndex > 0;
  }

  /**
   * Every `snapshotCount` applied entries or `snapshotBytes` applied bytes (and after a
   * configuration change when asked): a snapshot of the state machine, stored beside the log,
   * which is then compacted up to `snapshotCatchUpEntries` (and at most `snapshotCatchUpBytes`)
   * behind it. The state is captured now and encoded a chunk per scheduler turn, so a large store
   * never stalls the loop for long.
   */
  private maybeTakeSnapshot(shard: ShardState): void {
    const applied = shard.machine.appliedIndex;
    if (!this.snapshotDue(shard, applied)) return;
    shard.confChanged = false;
    shard.appliedBytesAtSnapshot = shard.appliedBytes;
    const storage = this.options.storage.shard(shard.id);
    const metadata: Snapshot['metadata'] = { index: applied, term: storage.term(applied), confState: shard.node.raft.tracker.confState() };
    const frames = shard.machine.snapshot();
    shard.snapshotIndex = applied;
    shard.snapshotInProgress = true;
    const chunks: Uint8Array[] = [];
    const step = (): void => {
      if (this.stopped || shard.removed) return;
      let next: IteratorResult<Uint8Array>;
      try {
        next = frames.next();
      } catch (error) {
        this.fatal(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      if (next.done !== true) {
        chunks.push(next.value);
        // One chunk per turn: requests keep flowing while a large state is encoded.
        this.options.scheduler.soon(step);
        return;
      }
      this.storeSnapshot(shard, metadata, chunks);
    };
    step();
  }

  private storeSnapshot(shard: ShardState, metadata: Snapshot['metadata'], chunks: Uint8Array[]): void {
    if (shard.removed) return;
    const storage = this.options.storage.shard(shard.id);
    // A snapshot installed from the leader meanwhile is newer: this one is no longer needed.
    if (storage.snapshot().metadata.index >= metadata.index || storage.firstIndex() - 1 > metadata.index) {
      shard.snapshotInProgress = false;
      return;
    }
    const compact = this.compactionIndex(shard, metadata.index);
    const data = joinSnapshotFrames(chunks);
    this.options.storage.save(
      [{ shard: shard.id, snapshotTaken: { metadata, data }, applied: metadata.index, compact: compact > storage.firstIndex() - 1 ? compact : undefined }],
      { sync: true, deferrable: false },
      (error) => {
        shard.snapshotInProgress = false;
        if (error !== undefined) this.fatal(error);
      },
    );
  }

  /**
   * Where to compact the log behind a snapshot at `snapshotIndex`: `snapshotCatchUpEntries`
   * behind it, or closer when those entries hold more than `snapshotCatchUpBytes` (known at the
   * granularity of apply batches). Marks before the last one at or below the result are dropped
   * (that one says where the kept log starts).
   */
  private compactionIndex(shard: ShardState, snapshotIndex: number): number {
    const byEntries = snapshotIndex - this.options.snapshotCatchUpEntries;
    const bytesMax = this.options.snapshotCatchUpBytes ?? snapshotCatchUpBytesMax;
    const marks = shard.appliedMarks;
    const at = marks.findIndex((mark) => mark.index === snapshotIndex);
    let compact = byEntries;
    if (at >= 0) {
      const bytesAtSnapshot = marks[at]!.bytes;
      // The oldest mark whose entries after it, up to the snapshot, fit the byte budget.
      const fits = marks.findIndex((mark) => bytesAtSnapshot - mark.bytes <= bytesMax);
      if (fits >= 0 && marks[fits]!.index > compact) compact = marks[fits]!.index;
    }
    assert(compact <= snapshotIndex, 'compaction never passes the snapshot');
    while (marks.length > 1 && marks[1]!.index <= compact) marks.shift();
    return compact;
  }

}



export { StateMachineHaltError };
