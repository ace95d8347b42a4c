/**
 * The shard host: one loop drives every Raft group (shard) of this node.
 *
 * Each cycle: proposals and reads queued since the last cycle go into their groups (one
 * ReadIndex round per shard per cycle serves every read that arrived meanwhile); `ready()` of
 * every group; messages that need no persistence go out at once (the leader's appends travel in
 * parallel with its own write); ONE group-commit save for all groups starts, and while it runs
 * the committed entries (already durable on a quorum) are applied and waiting requests resolve;
 * once the save is done, the messages that needed it (acks, votes) leave and every group
 * advances. The first halves of cycles run one at a time (whatever arrives meanwhile waits for
 * the next one, which is what batches the work); up to `pipelinedReadiesMax` second halves may
 * wait for their saves at once, finishing in order.
 */
import {
  type ConfChange,
  type Entry,
  type Message,
  type Prng,
  ProposalDroppedError,
  RawNode,
  type Ready,
  type Snapshot,
  type RaftLogger,
  decodeConfChange,
  silentLogger,
} from '../../raft/index';
import type { LevelLogStore, ShardUpdate } from '../../storage/index';
import { encodeSnapshot, readU64, restoreSnapshot, writeU64 } from '../../storage/index';
import type { AppliedCommand } from '../engines/kv/state-machine';
import { KvStateMachine } from '../engines/kv/state-machine';
import { joinFrames, splitFrames } from './snapshot-file';

export interface HostTransport {
  send(to: number, shard: number, messages: readonly Message[]): void;
}

export interface ShardHostOptions {
  readonly memberId: number;
  readonly logStore: LevelLogStore;
  readonly transport: HostTransport;
  readonly random: Prng;
  readonly tickMs: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  /** Applied entries between snapshots of a shard's state (etcd's --snapshot-count). */
  readonly snapshotCount: number;
  /** Entries kept in the log behind a snapshot, so a slightly lagging follower needs no snapshot. */
  readonly snapshotCatchUpEntries: number;
  readonly logger?: RaftLogger;
  /** Called after each cycle's group-commit save, with how long it took (for the fsync metric). */
  readonly onSave?: (seconds: number) => void;
  readonly onApplied?: (shard: number, command: AppliedCommand) => void;
  readonly onLeaderChange?: (shard: number, leader: number, term: number) => void;
  /** A configuration change was applied to `shard` (its state machine may record it). */
  readonly onConfChange?: (shard: Shard, change: ConfChange) => void;
  /** The host stopped for good (a storage failure or a broken invariant). */
  readonly onFatal?: (error: Error) => void;
  /** `shard`'s state machine was replaced by a snapshot from the leader. */
  readonly onSnapshotInstalled?: (shard: Shard) => void;
}

/**
 * Readies of one group in flight at once: while one is being written, the next one's messages
 * (the leader's next appends) already go out and its committed entries are applied.
 */
export const pipelinedReadiesMax = 4;

/** Why a request could not be carried out by the Raft layer. */
export class HostError extends Error {
  override readonly name = 'HostError';
  constructor(
    readonly code: 'no-leader' | 'leader-transfer' | 'proposals-over-limit' | 'stopped' | 'not-found',
    message: string,
  ) {
    super(message);
  }
}

interface PendingProposal {
  readonly data: Uint8Array;
  readonly requestId: number;
}

interface Waiter {
  /** The command as proposed: an applied entry completes this request only if it is these bytes. */
  readonly data: Uint8Array;
  resolve(applied: AppliedCommand): void;
  reject(error: Error): void;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The first request id of this process: the start time in milliseconds times 1024, so ids never
 * repeat across restarts (an entry proposed before a crash may commit after it and must not
 * complete a new request) unless a process issued more than 1024 requests per millisecond of its
 * life. Stays below 2^53 until the year 2250.
 */
export function firstRequestId(nowMs: number): number {
  return Math.floor(nowMs) * 1024 + 1;
}

interface ReadBatch {
  readonly waiters: Array<{ resolve(): void; reject(error: Error): void }>;
  index?: number;
}

export class Shard {
  readonly node: RawNode;
  machine: KvStateMachine;
  /** Index of the last snapshot taken or installed. */
  snapshotIndex: number;
  /** A snapshot of this shard is being encoded and stored. */
  snapshotInProgress = false;
  readonly proposals: PendingProposal[] = [];
  readonly confChanges: Array<{ change: ConfChange; requestId: number }> = [];
  readonly confWaiters = new Map<number, { resolve(): void; reject(error: Error): void }>();
  readonly waiters = new Map<number, Waiter>();
  /** Reads waiting for the next ReadIndex round. */
  queuedReads: ReadBatch['waiters'] = [];
  /** ReadIndex rounds in flight, by context. */
  readonly readRounds = new Map<string, ReadBatch>();
  /** Rounds whose index is known, waiting for apply to reach it. */
  readonly readsAwaitingApply: ReadBatch[] = [];
  leader = 0;
  term = 0;
  readRound = 0;

  constructor(
    readonly id: number,
    node: RawNode,
    machine: KvStateMachine,
  ) {
    this.node = node;
    this.machine = machine;
    this.snapshotIndex = machine.appliedIndex;
  }
}

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

/** The state machine a stored snapshot describes (an empty one when there is none). */
async function machineFromSnapshot(data: Uint8Array): Promise<KvStateMachine> {
  if (data.length === 0) return new KvStateMachine();
  return new KvStateMachine(await restoreSnapshot(splitFrames(data)));
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class ShardHost {
  private readonly shards = new Map<number, Shard>();
  /** A cycle is in its first half (only one at a time). */
  private firstHalfRunning = false;
  /** Cycles started and not finished (first halves plus pending second halves). */
  private cyclesRunning = 0;
  /** The second halves of running cycles, chained in order. */
  private secondHalves: Promise<void> = Promise.resolve();
  private cycleScheduled = false;
  private ticker: NodeJS.Timeout | undefined;
  private stopped = false;
  private nextRequestId = firstRequestId(Date.now());
  private failure: Error | undefined;

  constructor(private readonly options: ShardHostOptions) {}

  /**
   * Adds a group whose state is in the log store (a new group must be bootstrapped there first).
   * The state machine starts from the stored snapshot; Raft then re-delivers every committed
   * entry after it.
   */
  async addShard(shardId: number): Promise<Shard> {
    const storage = this.options.logStore.shard(shardId);
    const machine = await machineFromSnapshot(storage.snapshot().data);
    const node = new RawNode({
      id: this.options.memberId,
      storage,
      random: this.options.random,
      electionTicks: this.options.electionTicks,
      heartbeatTicks: this.options.heartbeatTicks,
      applied: machine.appliedIndex,
      readiesInFlightMax: pipelinedReadiesMax,
      checkQuorum: true,
      preVote: true,
      logger: this.options.logger ?? silentLogger,
    });
    const shard = new Shard(shardId, node, machine);
    this.shards.set(shardId, shard);
    return shard;
  }

  shard(shardId: number): Shard | undefined {
    return this.shards.get(shardId);
  }

  shardIds(): number[] {
    return [...this.shards.keys()];
  }

  isKnownShard = (shardId: number): boolean => this.shards.has(shardId);

  start(): void {
    this.ticker = setInterval(() => this.tick(), this.options.tickMs);
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.ticker !== undefined) clearInterval(this.ticker);
    const error = new HostError('stopped', 'etcdserver: server stopped');
    for (const shard of this.shards.values()) this.failShard(shard, error);
    while (this.cyclesRunning > 0) await new Promise((resolve) => setImmediate(resolve));
  }

  private tick(): void {
    for (const shard of this.shards.values()) shard.node.tick();
    this.schedule();
  }

  /** Messages from a peer for our groups. */
  receive(batch: ReadonlyArray<{ shard: number; message: Message }>): void {
    for (const { shard: shardId, message } of batch) {
      const shard = this.shards.get(shardId);
      if (shard === undefined) continue;
      shard.node.step(message);
    }
    this.schedule();
  }

  /** Proposes a command built by `encode(requestId)`; resolves when it is applied here. */
  propose(shardId: number, encode: (proposer: number, requestId: number) => Uint8Array): Promise<AppliedCommand> {
    const shard = this.requireShard(shardId);
    const requestId = this.nextRequestId++;
    const data = encode(this.options.memberId, requestId);
    return new Promise<AppliedCommand>((resolve, reject) => {
      shard.waiters.set(requestId, { data, resolve, reject });
      shard.proposals.push({ data, requestId });
      this.schedule();
    });
  }

  /** Resolves once this node has applied everything committed when the read arrived (ReadIndex). */
  linearizableRead(shardId: number): Promise<void> {
    const shard = this.requireShard(shardId);
    return new Promise<void>((resolve, reject) => {
      shard.queuedReads.push({ resolve, reject });
      this.schedule();
    });
  }

  /**
   * Proposes a configuration change (through any member: Raft forwards it to the leader);
   * resolves when it is applied here. Its context is wrapped with who proposed it.
   */
  proposeConfChange(shardId: number, change: ConfChange): Promise<void> {
    const shard = this.requireShard(shardId);
    const requestId = this.nextRequestId++;
    const wrapped = { ...change, context: wrapConfContext(this.options.memberId, requestId, change.context) };
    return new Promise<void>((resolve, reject) => {
      shard.confWaiters.set(requestId, { resolve, reject });
      shard.confChanges.push({ change: wrapped, requestId });
      this.schedule();
    });
  }

  campaign(shardId: number): void {
    this.requireShard(shardId).node.campaign();
    this.schedule();
  }

  transferLeader(shardId: number, to: number): void {
    this.requireShard(shardId).node.transferLeader(to);
    this.schedule();
  }

  reportUnreachable(peer: number, shards: readonly number[]): void {
    for (const id of shards) this.shards.get(id)?.node.reportUnreachable(peer);
  }

  reportSnapshot(peer: number, shardId: number, ok: boolean): void {
    this.shards.get(shardId)?.node.reportSnapshot(peer, ok);
    this.schedule();
  }

  private requireShard(shardId: number): Shard {
    if (this.failure !== undefined) throw this.failure;
    const shard = this.shards.get(shardId);
    if (shard === undefined) throw new HostError('not-found', `shard ${shardId} is not hosted here`);
    return shard;
  }

  /**
   * Starts a cycle at the end of this turn. A cycle's first half (ready, send, start the save,
   * apply) never overlaps another's; its second half (wait for the save, acknowledge, advance)
   * runs while later cycles start, in order behind the second halves before it, so Readies
   * are advanced in the order they were handed out.
   */
  private schedule(): void {
    if (this.cycleScheduled || this.firstHalfRunning || this.stopped) return;
    this.cycleScheduled = true;
    setImmediate(() => {
      this.cycleScheduled = false;
      if (this.stopped) return;
      this.firstHalfRunning = true;
      this.cyclesRunning++;
      this.cycle().then(
        () => {
          this.cyclesRunning--;
          if (this.hasWork()) this.schedule();
        },
        (error: unknown) => {
          this.cyclesRunning--;
          this.firstHalfRunning = false;
          this.fatal(error instanceof Error ? error : new Error(String(error)));
        },
      );
    });
  }

  private hasWork(): boolean {
    for (const shard of this.shards.values()) {
      if (shard.proposals.length > 0 || shard.queuedReads.length > 0 || shard.confChanges.length > 0 || shard.node.hasReady()) return true;
    }
    return false;
  }

  private fatal(error: Error): void {
    this.failure = error;
    this.stopped = true;
    if (this.ticker !== undefined) clearInterval(this.ticker);
    for (const shard of this.shards.values()) this.failShard(shard, error);
    this.options.logger?.warn(`shard host stopped: ${error.stack ?? error.message}`);
    this.options.onFatal?.(error);
  }

  private failShard(shard: Shard, error: Error): void {
    for (const waiter of shard.waiters.values()) waiter.reject(error);
    shard.waiters.clear();
    for (const read of shard.queuedReads) read.reject(error);
    shard.queuedReads = [];
    for (const batch of [...shard.readRounds.values(), ...shard.readsAwaitingApply]) for (const w of batch.waiters) w.reject(error);
    shard.readRounds.clear();
    shard.readsAwaitingApply.length = 0;
    for (const waiter of shard.confWaiters.values()) waiter.reject(error);
    shard.confWaiters.clear();
    shard.confChanges.length = 0;
  }

  private async cycle(): Promise<void> {
    for (const shard of this.shards.values()) this.feed(shard);
    const readies: Array<[Shard, Ready]> = [];
    for (const shard of this.shards.values()) {
      if (shard.node.hasReady()) readies.push([shard, shard.node.ready()]);
    }
    if (readies.length === 0) {
      this.firstHalfRunning = false;
      return;
    }
    const updates: ShardUpdate[] = [];
    let mustSync = false;
    for (const [shard, ready] of readies) {
      this.noteSoftState(shard, ready);
      this.send(shard, ready.messages);
      if (ready.entries.length > 0 || ready.hardState !== undefined || ready.snapshot !== undefined) {
        updates.push({ shard: shard.id, entries: ready.entries, hardState: ready.hardState, snapshot: ready.snapshot });
        mustSync ||= ready.mustSync;
      }
    }
    // One write for every group; synced only when some group needs it (entries, a vote, a new
    // term, a snapshot). A commit index alone is not waited for: it rides with the next batch.
    const started = performance.now();
    const saved = updates.length > 0 ? this.options.logStore.save(updates, { sync: mustSync, deferrable: !mustSync }) : undefined;
    // Committed entries are durable on a quorum already: apply them while our own write runs.
    for (const [shard, ready] of readies) {
      if (ready.snapshot !== undefined) await this.installSnapshot(shard, ready.snapshot.data);
      this.applyCommitted(shard, ready.committedEntries);
      this.handleReadStates(shard, ready);
    }
    // The next cycle may start now (its Readies go out while this save runs); this one's second
    // half waits for the save and for every earlier second half.
    this.firstHalfRunning = false;
    if (this.hasWork()) this.schedule();
    const previous = this.secondHalves;
    const secondHalf = (async () => {
      await previous;
      if (saved !== undefined && mustSync) {
        await saved;
        this.options.onSave?.((performance.now() - started) / 1000);
      } else if (saved !== undefined) {
        // Only commit indexes changed: nothing waits on it (the store keeps writes in order, and
        // a failed write stops the host).
        saved.catch((error: unknown) => this.fatal(error instanceof Error ? error : new Error(String(error))));
      }
      for (const [shard, ready] of readies) {
        // Acknowledgements and votes promise what the write made durable: only now may they leave.
        this.send(shard, ready.messagesAfterPersist);
        shard.node.advance();
        this.releaseReads(shard);
        this.maybeTakeSnapshot(shard);
      }
    })();
    this.secondHalves = secondHalf.catch(() => undefined);
    await secondHalf;
  }



  private async installSnapshot(shard: Shard, data: Uint8Array): Promise<void> {
    shard.machine = await machineFromSnapshot(data);
    shard.snapshotIndex = shard.machine.appliedIndex;
    this.options.onSnapshotInstalled?.(shard);
  }

  /**
   * Every `snapshotCount` applied entries: a snapshot of the state machine, stored beside the
   * log, which is then compacted up to `snapshotCatchUpEntries` behind it. The applied index is
   * recorded with it: entries up to there need never be applied again after a restart.
   *
   * The state is captured now (the store's arenas are immutable, so the capture costs no copy)
   * and encoded chunk by chunk in later turns, so a large store never stalls the loop for long.
   */
  private maybeTakeSnapshot(shard: Shard): void {
    const applied = shard.machine.appliedIndex;
    if (shard.snapshotInProgress || applied - shard.snapshotIndex < this.options.snapshotCount) return;
    const storage = this.options.logStore.shard(shard.id);
    const metadata = { index: applied, term: storage.term(applied), confState: shard.node.status().config };
    const frames = encodeSnapshot(shard.machine.mvcc);
    shard.snapshotIndex = applied;
    shard.snapshotInProgress = true;
    this.encodeAndStore(shard, metadata, frames).then(
      () => {
        shard.snapshotInProgress = false;
      },
      (error: unknown) => this.fatal(error instanceof Error ? error : new Error(String(error))),
    );
  }

  private async encodeAndStore(shard: Shard, metadata: Snapshot['metadata'], frames: Iterator<Uint8Array>): Promise<void> {
    const chunks: Uint8Array[] = [];
    for (let next = frames.next(); next.done !== true; next = frames.next()) {
      chunks.push(next.value);
      // One chunk per turn: requests keep flowing while a large store is encoded.
      await new Promise((resolve) => setImmediate(resolve));
      if (this.stopped) return;
    }
    const storage = this.options.logStore.shard(shard.id);
    // A snapshot installed from the leader meanwhile is newer: this one is no longer needed.
    if (this.stopped || storage.snapshot().metadata.index >= metadata.index || storage.offset > metadata.index) return;
    const compact = metadata.index - this.options.snapshotCatchUpEntries;
    await this.options.logStore.save([
      {
        shard: shard.id,
        snapshotTaken: { metadata, data: joinFrames(chunks) },
        applied: metadata.index,
        compact: compact > storage.offset ? compact : undefined,
      },
    ]);
  }

  /** Moves queued proposals, conf changes and reads into the group. */
  private feed(shard: Shard): void {
    if (shard.proposals.length > 0) {
      const batch = shard.proposals.splice(0);
      try {
        shard.node.proposeMany(batch.map((p) => p.data));
      } catch (error) {
        const refusal = this.refusal(error);
        for (const p of batch) {
          shard.waiters.get(p.requestId)?.reject(refusal);
          shard.waiters.delete(p.requestId);
        }
      }
    }
    for (const cc of shard.confChanges.splice(0)) {
      try {
        shard.node.proposeConfChange(cc.change);
      } catch (error) {
        shard.confWaiters.get(cc.requestId)?.reject(this.refusal(error));
        shard.confWaiters.delete(cc.requestId);
      }
    }
    if (shard.queuedReads.length > 0) {
      const context = `${this.options.memberId}:${++shard.readRound}`;
      const waiters = shard.queuedReads;
      shard.queuedReads = [];
      try {
        shard.node.readIndex(encoder.encode(context));
        shard.readRounds.set(context, { waiters });
      } catch (error) {
        const refusal = this.refusal(error);
        for (const w of waiters) w.reject(refusal);
      }
    }
  }

  private refusal(error: unknown): Error {
    if (error instanceof ProposalDroppedError) {
      if (error.reason === 'no-leader') return new HostError('no-leader', 'etcdserver: no leader');
      if (error.reason === 'transfer-in-progress') return new HostError('leader-transfer', 'etcdserver: leader changed');
      return new HostError('proposals-over-limit', 'etcdserver: too many requests');
    }
    return error instanceof Error ? error : new Error(String(error));
  }

  private noteSoftState(shard: Shard, ready: Ready): void {
    const soft = ready.softState;
    if (soft !== undefined && soft.lead !== shard.leader) {
      shard.leader = soft.lead;
      shard.term = shard.node.status().term;
      this.options.onLeaderChange?.(shard.id, soft.lead, shard.term);
      // Reads in flight were asked of the old leader; they will never complete there.
      if (soft.lead === 0) this.failReadRounds(shard, new HostError('no-leader', 'etcdserver: no leader'));
    }
    if (ready.hardState !== undefined) shard.term = ready.hardState.term;
  }

  private failReadRounds(shard: Shard, error: Error): void {
    for (const batch of shard.readRounds.values()) for (const w of batch.waiters) w.reject(error);
    shard.readRounds.clear();
  }

  private send(shard: Shard, messages: readonly Message[]): void {
    if (messages.length === 0) return;
    // Group by destination so the transport queues one list per peer.
    const byPeer = new Map<number, Message[]>();
    for (const m of messages) {
      let list = byPeer.get(m.to);
      if (list === undefined) byPeer.set(m.to, (list = []));
      list.push(m);
    }
    for (const [to, list] of byPeer) this.options.transport.send(to, shard.id, list);
  }

  private applyCommitted(shard: Shard, entries: readonly Entry[]): number | undefined {
    let last: number | undefined;
    for (const entry of entries) {
      last = entry.index;
      if (entry.type === 'conf-change') {
        if (entry.index > shard.machine.appliedIndex) {
          const change = decodeConfChange(entry.data);
          shard.node.applyConfChange(change);
          const { proposer, requestId, payload } = unwrapConfContext(change.context);
          this.options.onConfChange?.(shard, { ...change, context: payload });
          shard.machine.mvcc.appliedIndex = entry.index;
          if (proposer === this.options.memberId) {
            shard.confWaiters.get(requestId)?.resolve();
            shard.confWaiters.delete(requestId);
          }
        }
        continue;
      }
      const applied = shard.machine.apply(entry);
      if (applied === undefined) continue;
      this.options.onApplied?.(shard.id, applied);
      if (applied.proposer !== this.options.memberId) continue;
      const waiter = shard.waiters.get(applied.requestId);
      // An id from before a restart (ids are unique per process start; this checks it anyway).
      if (waiter === undefined || !sameBytes(waiter.data, entry.data)) continue;
      shard.waiters.delete(applied.requestId);
      waiter.resolve(applied);
    }
    return last;
  }

  private handleReadStates(shard: Shard, ready: Ready): void {
    for (const state of ready.readStates) {
      const context = decoder.decode(state.requestContext);
      const batch = shard.readRounds.get(context);
      if (batch === undefined) continue;
      shard.readRounds.delete(context);
      batch.index = state.index;
      shard.readsAwaitingApply.push(batch);
    }
  }

  private releaseReads(shard: Shard): void {
    const applied = shard.machine.appliedIndex;
    let kept = 0;
    for (const batch of shard.readsAwaitingApply) {
      if (batch.index !== undefined && batch.index <= applied) for (const w of batch.waiters) w.resolve();
      else shard.readsAwaitingApply[kept++] = batch;
    }
    shard.readsAwaitingApply.length = kept;
  }
}
