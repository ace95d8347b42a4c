/**
 * A deterministic simulated cluster: real RawNodes, simulated network, disk and clocks, all
 * driven by one seed through a discrete event queue. Nothing here reads a real clock.
 *
 * Each node behaves like the shard host will: it takes a Ready when it has none in flight, sends
 * `messages` at once, "writes" to its durable MemoryLogStorage after a simulated disk latency,
 * then sends `messagesAfterPersist`, applies committed entries and advances. A crash discards the
 * Ready in flight (what was not persisted is lost) and the RawNode; a restart rebuilds both from
 * the durable storage and the last snapshot.
 */
import {
  type ConfChange,
  type ConfState,
  type Entry,
  type Message,
  MemoryLogStorage,
  ProposalDroppedError,
  type RaftConfig,
  RawNode,
  type Ready,
  SeededPrng,
  type Snapshot,
  decodeConfChange,
  describeMessage,
  type DropReason,
} from '../../raft/index';
import { EventQueue } from './event-queue';
import { type NetworkParams, SimNetwork } from './network';
import { CHAIN_START, type ChainHash, SafetyChecker, SafetyViolation, extendChain, hashBytes } from './safety';

export type RaftOptions = Omit<RaftConfig, 'id' | 'storage' | 'random' | 'applied' | 'logger'>;

export interface SimClusterOptions {
  readonly seed: number;
  /** The initial voters (bootstrapped through conf-change entries, as etcd does). */
  readonly nodeIds: readonly number[];
  readonly network: NetworkParams;
  readonly diskLatencyMinMs: number;
  readonly diskLatencyMaxMs: number;
  readonly tickIntervalMs: number;
  /** Each node's clock runs up to this fraction fast or slow. */
  readonly clockDrift: number;
  readonly raft: RaftOptions;
  /** Applied entries between snapshots (0: never snapshot). */
  readonly snapshotEveryEntries: number;
  /** Entries kept in the log behind a snapshot, for slow followers. */
  readonly snapshotKeepEntries: number;
  readonly checkSafety: boolean;
  /** Record a readable line per event (for replays); a hash of every event is always kept. */
  readonly traceEvents: boolean;
  /** Keep every applied command per node (for the demo). */
  readonly recordApplied?: boolean;
  /**
   * Each node's replicated application (absent: the log alone, checked by its chain hash). Its
   * snapshot travels in Raft snapshots after the cluster's own 16-byte chain header.
   */
  readonly application?: (nodeId: number) => SimApplication;
  /**
   * Message types the network never duplicates. A forwarded proposal (MsgProp) delivered twice
   * is appended twice — Raft does not deduplicate commands — so a run that models the peer
   * transport (a stream that never repeats a message) excludes it.
   */
  readonly neverDuplicate?: readonly Message['type'][];
}

/**
 * A node's state machine, driven by the log: what the shard host's apply loop does in a server.
 * Every call happens inside one simulated event; a `restore` that returns a promise must be
 * awaited before the next event (drive the cluster with `runUntilAsync` then).
 */
export interface SimApplication {
  /** Applies one committed entry (normal or conf change), in index order. */
  apply(entry: Entry): void;
  /** The state at the last applied index, as bytes (taken for a Raft snapshot). */
  snapshot(): Uint8Array;
  /** Replaces the state by a snapshot's (empty bytes: the initial, empty state). */
  restore(data: Uint8Array): Promise<void> | void;
  /** The process died: volatile state is gone (a restart restores from the last snapshot). */
  crash(): void;
}

/** Bytes of the cluster's own header at the front of every snapshot's data. */
export const SNAPSHOT_CHAIN_BYTES = 16;

export const SIM_DEFAULTS: Omit<SimClusterOptions, 'seed' | 'nodeIds'> = Object.freeze({
  network: { dropRate: 0, duplicateRate: 0, delayMinMs: 1, delayMaxMs: 5 },
  diskLatencyMinMs: 1,
  diskLatencyMaxMs: 5,
  tickIntervalMs: 100,
  clockDrift: 0,
  raft: { electionTicks: 10, heartbeatTicks: 1, preVote: true, checkQuorum: true },
  snapshotEveryEntries: 0,
  snapshotKeepEntries: 5,
  checkSafety: true,
  traceEvents: false,
});

export type NodeStatus = 'up' | 'down' | 'decommissioned';

export class SimNode {
  raw: RawNode | undefined;
  status: NodeStatus = 'up';
  /** Bumped on every crash and restart: events of an earlier incarnation are ignored. */
  incarnation = 0;
  /** Readies handed out and not yet persisted, oldest first (more than one when pipelined). */
  inFlight: Ready[] = [];
  /** When this node's last write completes (simulated ms): writes complete in order. */
  lastPersistAt = 0;
  appliedIndex = 0;
  chain: ChainHash = CHAIN_START;
  confState: ConfState = { voters: [], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
  readonly applied: string[] = [];
  /** Outstanding ReadIndex requests: context key -> commit index required when it began. */
  readonly pendingReads = new Map<string, number>();
  /** Callers waiting for a ReadIndex answer, by context key. */
  readonly readWaiters = new Map<string, (index: number) => void>();
  application: SimApplication | undefined;
  /** A paused process handles nothing; the events addressed to it wait here until it resumes. */
  paused = false;
  readonly parked: SimEvent[] = [];

  constructor(
    readonly id: number,
    readonly storage: MemoryLogStorage,
    readonly random: SeededPrng,
    readonly tickPeriodMs: number,
  ) {}
}

type SimEvent =
  | { readonly kind: 'tick'; readonly node: number; readonly incarnation: number }
  | { readonly kind: 'deliver'; readonly message: Message; readonly senderIncarnation: number }
  | { readonly kind: 'persisted'; readonly node: number; readonly incarnation: number }
  | { readonly kind: 'call'; readonly label: string; readonly run: () => void; readonly node?: number };

export interface SimStats {
  events: number;
  messagesSent: number;
  messagesDelivered: number;
  proposals: number;
  proposalsDropped: number;
  entriesApplied: number;
  readsCompleted: number;
  snapshotsSent: number;
  crashes: number;
}

/** Called with each entry a node applies (after the safety checks). */
export type ApplyListener = (node: SimNode, entry: Entry) => void;

export function encodeSnapshotData(appliedIndex: number, chain: ChainHash): Uint8Array {
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  view.setFloat64(0, appliedIndex);
  view.setUint32(8, chain.a);
  view.setUint32(12, chain.b);
  return bytes;
}

export function decodeSnapshotData(data: Uint8Array): { appliedIndex: number; chain: ChainHash } {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  return { appliedIndex: view.getFloat64(0), chain: { a: view.getUint32(8), b: view.getUint32(12) } };
}

export class SimCluster {
  now = 0;
  readonly nodes = new Map<number, SimNode>();
  readonly network: SimNetwork;
  readonly checker: SafetyChecker | undefined;
  readonly trace: string[] = [];
  traceHash = 0x811c9dc5;
  readonly stats: SimStats = {
    events: 0,
    messagesSent: 0,
    messagesDelivered: 0,
    proposals: 0,
    proposalsDropped: 0,
    entriesApplied: 0,
    readsCompleted: 0,
    snapshotsSent: 0,
    crashes: 0,
  };
  readonly options: SimClusterOptions;
  private readonly events = new EventQueue<SimEvent>();
  private readonly diskRandom: SeededPrng;
  private readonly nodeRandom: SeededPrng;
  private readContextSeq = 0;
  private readonly applyListeners: ApplyListener[] = [];
  /** Application restores started and not yet finished (see runUntilAsync). */
  private readonly restoring: Promise<void>[] = [];
  private readonly confChangeListeners: Array<(node: SimNode, cc: ConfChange, index: number) => void> = [];

  constructor(options: SimClusterOptions) {
    this.options = options;
    const master = new SeededPrng(options.seed);
    this.network = new SimNetwork(master.fork(), options.network);
    this.diskRandom = master.fork();
    this.nodeRandom = master.fork();
    this.checker = options.checkSafety ? new SafetyChecker() : undefined;
    for (const id of options.nodeIds) this.createNode(id, MemoryLogStorage.bootstrapped(options.nodeIds));
  }

  onApply(listener: ApplyListener): void {
    this.applyListeners.push(listener);
  }

  onConfChangeApplied(listener: (node: SimNode, cc: ConfChange, index: number) => void): void {
    this.confChangeListeners.push(listener);
  }

  // -------------------------------------------------------------------------------------------
  // Nodes

  private createNode(id: number, storage: MemoryLogStorage): SimNode {
    const drift = this.options.clockDrift;
    const random = this.nodeRandom.fork();
    const skew = drift === 0 ? 1 : 1 + (random.nextFloat() * 2 - 1) * drift;
    const period = Math.max(1, Math.round(this.options.tickIntervalMs * skew));
    const node = new SimNode(id, storage, random, period);
    node.application = this.options.application?.(id);
    this.nodes.set(id, node);
    this.boot(node);
    return node;
  }

  /** Adds a brand-new node with an empty log; it joins once a conf change adds it. */
  addNode(id: number): SimNode {
    if (this.nodes.has(id)) throw new TypeError(`node ${id} already exists`);
    this.record(`add-node ${id}`);
    return this.createNode(id, new MemoryLogStorage());
  }

  private boot(node: SimNode): void {
    const snapshot = node.storage.snapshot();
    const applied = snapshot.metadata.index;
    if (applied > 0) {
      const restored = decodeSnapshotData(snapshot.data);
      node.appliedIndex = restored.appliedIndex;
      node.chain = restored.chain;
    } else {
      node.appliedIndex = 0;
      node.chain = CHAIN_START;
    }
    node.confState = snapshot.metadata.confState;
    this.restoreApplication(node, applied > 0 ? snapshot.data : undefined);
    node.raw = new RawNode({
      ...this.options.raft,
      id: node.id,
      storage: node.storage,
      random: node.random.fork(),
      applied,
    });
    node.status = 'up';
    node.incarnation++;
    const phase = node.random.nextInt(node.tickPeriodMs) + 1;
    this.schedule(phase, { kind: 'tick', node: node.id, incarnation: node.incarnation });
  }

  crash(id: number): void {
    const node = this.nodes.get(id);
    if (node === undefined || node.status !== 'up') return;
    this.record(`crash ${id}`);
    this.stats.crashes++;
    node.status = 'down';
    node.raw = undefined;
    node.inFlight = []; // never persisted: lost
    node.lastPersistAt = 0;
    node.incarnation++;
    node.pendingReads.clear();
    node.readWaiters.clear();
    node.applied.length = 0; // volatile state: rebuilt from the snapshot and log on restart
    // Whatever waited in a paused process's socket buffers dies with it.
    node.paused = false;
    node.parked.length = 0;
    node.application?.crash();
    this.checker?.forgetNode(id);
  }

  /** Stops a process (SIGSTOP): it handles nothing until resumed; what arrives for it waits. */
  pause(id: number): void {
    const node = this.nodes.get(id);
    if (node === undefined || node.status !== 'up' || node.paused) return;
    this.record(`pause ${id}`);
    node.paused = true;
  }

  /** Continues a paused process (SIGCONT): everything that waited for it runs now, in order. */
  resume(id: number): void {
    const node = this.nodes.get(id);
    if (node === undefined || !node.paused) return;
    this.record(`resume ${id}`);
    node.paused = false;
    for (const event of node.parked.splice(0, node.parked.length)) this.schedule(0, event);
  }

  restart(id: number): void {
    const node = this.nodes.get(id);
    if (node === undefined || node.status !== 'down') return;
    this.record(`restart ${id}`);
    this.checker?.forgetNode(id);
    this.boot(node);
  }

  /** Stops a node for good (it was removed from the configuration). */
  decommission(id: number): void {
    const node = this.nodes.get(id);
    if (node === undefined || node.status === 'decommissioned') return;
    this.record(`decommission ${id}`);
    node.status = 'decommissioned';
    node.raw = undefined;
    node.inFlight = [];
    node.incarnation++;
  }

  upNodes(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.status === 'up');
  }

  /** The up node that is leader in the highest term, if any. */
  leader(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const node of this.nodes.values()) {
      const raft = node.raw?.raft;
      if (raft === undefined || raft.role !== 'leader') continue;
      if (best === undefined || raft.term > best.raw!.raft.term) best = node;
    }
    return best;
  }

  // -------------------------------------------------------------------------------------------
  // Client operations

  propose(id: number, data: Uint8Array): DropReason | 'down' | undefined {
    return this.proposeCommands(id, [data], true);
  }

  proposeMany(id: number, commands: Uint8Array[]): DropReason | 'down' | undefined {
    return this.proposeCommands(id, commands, false);
  }

  private proposeCommands(id: number, commands: Uint8Array[], record: boolean): DropReason | 'down' | undefined {
    const reason = this.onNode(id, record ? 'propose' : undefined, (raw) =>
      commands.length === 1 ? raw.propose(commands[0]!) : raw.proposeMany(commands),
    );
    if (reason === 'down') return reason;
    this.stats.proposals += commands.length;
    if (reason !== undefined) this.stats.proposalsDropped += commands.length;
    return reason;
  }

  proposeConfChange(id: number, cc: ConfChange): DropReason | 'down' | undefined {
    const changes = cc.changes.map((c) => `${c.type}:${c.nodeId}`).join(',');
    return this.onNode(id, `propose-conf-change ${changes}`, (raw) => raw.proposeConfChange(cc));
  }

  /**
   * Starts a ReadIndex at a node; the safety checker verifies the answer, and `onIndex` (when
   * given) hears the read index once the node learns it (never, if the request is lost).
   */
  readIndex(id: number, onIndex?: (index: number) => void): DropReason | 'down' | undefined {
    const key = `r${++this.readContextSeq}`;
    const context = Uint8Array.from(key, (c) => c.charCodeAt(0));
    const node = this.nodes.get(id);
    // Registered first: a leader that may answer at once (lease-based) answers inside the call.
    if (onIndex !== undefined) node?.readWaiters.set(key, onIndex);
    const reason = this.onNode(id, `read-index ${key}`, (raw) => raw.readIndex(context));
    if (reason === undefined) node!.pendingReads.set(key, this.checker?.maxCommitted ?? 0);
    else node?.readWaiters.delete(key);
    return reason;
  }

  transferLeader(id: number, to: number): DropReason | 'down' | undefined {
    return this.onNode(id, `transfer-leader to ${to}`, (raw) => raw.transferLeader(to));
  }

  /**
   * Runs a client call on an up node: a refusal comes back as its reason, and the node's Ready
   * is handed out afterwards. `label` (when given) goes into the trace with the outcome.
   */
  private onNode(id: number, label: string | undefined, call: (raw: RawNode) => void): DropReason | 'down' | undefined {
    const node = this.nodes.get(id);
    if (node?.raw === undefined) return 'down';
    let reason: DropReason | undefined;
    try {
      call(node.raw);
    } catch (error) {
      if (!(error instanceof ProposalDroppedError)) throw error;
      reason = error.reason;
    }
    if (label !== undefined) this.record(`${label} at ${id}: ${reason ?? 'ok'}`);
    this.pump(node);
    return reason;
  }

  // -------------------------------------------------------------------------------------------
  // Scheduling and running

  private schedule(delayMs: number, event: SimEvent): void {
    this.events.push(this.now + delayMs, event);
  }

  /** Runs `run` at `delayMs` from now (faults, clients, drivers). */
  at(delayMs: number, label: string, run: () => void): void {
    this.schedule(delayMs, { kind: 'call', label, run });
  }

  /** Like `at`, but the call is work done by node `id`: it waits while that node is paused. */
  atNode(id: number, delayMs: number, label: string, run: () => void): void {
    this.schedule(delayMs, { kind: 'call', label, run, node: id });
  }

  /** Processes events until simulated time passes `time`. */
  runUntil(time: number): void {
    for (;;) {
      const next = this.events.peekTime();
      if (next === undefined || next > time) break;
      this.processNext();
    }
    if (time > this.now) this.now = time;
  }

  /**
   * `runUntil` for applications whose restore is asynchronous: after any event that started a
   * restore, waits for it before the next event, so the run is the same as if it were instant.
   */
  async runUntilAsync(time: number): Promise<void> {
    for (;;) {
      if (this.restoring.length > 0) await this.settle();
      const next = this.events.peekTime();
      if (next === undefined || next > time) break;
      this.processNext();
    }
    if (this.restoring.length > 0) await this.settle();
    if (time > this.now) this.now = time;
  }

  /** Waits for the restores in progress (see runUntilAsync). */
  async settle(): Promise<void> {
    while (this.restoring.length > 0) await Promise.all(this.restoring.splice(0, this.restoring.length));
  }

  runFor(ms: number): void {
    this.runUntil(this.now + ms);
  }

  /** Processes events until `done()` holds or `maxMs` pass; returns whether it held. */
  runUntilCondition(done: () => boolean, maxMs: number): boolean {
    const deadline = this.now + maxMs;
    while (!done()) {
      const next = this.events.peekTime();
      if (next === undefined || next > deadline) {
        this.now = Math.max(this.now, deadline);
        return done();
      }
      this.processNext();
    }
    return true;
  }

  private processNext(): void {
    if (this.restoring.length > 0) throw new TypeError('an application restore is in progress: drive the cluster with runUntilAsync');
    const popped = this.events.pop()!;
    this.now = popped.time;
    const event = popped.item;
    const target = this.targetOf(event);
    if (target !== undefined && target.paused) {
      target.parked.push(event);
      return;
    }
    this.stats.events++;
    switch (event.kind) {
      case 'tick':
        this.onTick(event.node, event.incarnation);
        break;
      case 'deliver':
        this.onDeliver(event.message, event.senderIncarnation);
        break;
      case 'persisted':
        this.onPersisted(event.node, event.incarnation);
        break;
      case 'call':
        this.record(`call ${event.label}`);
        event.run();
        break;
    }
  }

  /** The node an event is work for (a paused node holds it back). */
  private targetOf(event: SimEvent): SimNode | undefined {
    switch (event.kind) {
      case 'tick':
      case 'persisted':
        return this.nodes.get(event.node);
      case 'deliver':
        return this.nodes.get(event.message.to);
      case 'call':
        return event.node === undefined ? undefined : this.nodes.get(event.node);
    }
  }

  private onTick(id: number, incarnation: number): void {
    const node = this.nodes.get(id)!;
    if (node.incarnation !== incarnation || node.raw === undefined) return;
    node.raw.tick();
    this.afterStep(node);
    this.schedule(node.tickPeriodMs, { kind: 'tick', node: id, incarnation });
  }

  private onDeliver(m: Message, senderIncarnation: number): void {
    const node = this.nodes.get(m.to);
    if (node?.raw === undefined || this.network.isCut(m.from, m.to)) {
      this.hashEvent(2, m.from, m.to, m.term, 0);
      // The sender's transport notices the broken stream, as a real one does.
      this.reportToSender(m, senderIncarnation, false);
      return;
    }
    this.stats.messagesDelivered++;
    this.hashEvent(3, m.from, m.to, m.term, m.index);
    if (this.options.traceEvents) this.trace.push(`${this.now} deliver ${describeMessage(m)}`);
    node.raw.step(m);
    this.afterStep(node);
    if (m.type === 'MsgSnap') this.reportToSender(m, senderIncarnation, true);
  }

  private send(m: Message): void {
    this.stats.messagesSent++;
    if (m.type === 'MsgSnap') this.stats.snapshotsSent++;
    const incarnation = this.nodes.get(m.from)?.incarnation ?? 0;
    const deliveries = this.network.deliveries();
    if (deliveries.length > 1 && this.options.neverDuplicate?.includes(m.type) === true) deliveries.length = 1;
    for (const delay of deliveries) this.schedule(delay, { kind: 'deliver', message: m, senderIncarnation: incarnation });
    // A lost snapshot stream fails at the sender after a while.
    if (deliveries.length === 0 && m.type === 'MsgSnap') {
      this.at(this.options.tickIntervalMs, `snapshot-lost ${m.from}->${m.to}`, () => this.reportToSender(m, incarnation, false));
    }
  }

  /**
   * What a transport tells Raft about delivery: a snapshot's outcome, and that a peer is
   * unreachable when a message to it could not be delivered.
   */
  private reportToSender(m: Message, senderIncarnation: number, delivered: boolean): void {
    const sender = this.nodes.get(m.from);
    if (sender?.raw === undefined || sender.incarnation !== senderIncarnation || sender.paused) return;
    if (m.type === 'MsgSnap') {
      sender.raw.reportSnapshot(m.to, delivered);
    } else if (!delivered && (m.type === 'MsgApp' || m.type === 'MsgHeartbeat')) {
      sender.raw.reportUnreachable(m.to);
    } else {
      return;
    }
    this.afterStep(sender);
  }

  /** After a node changed: record what the checker needs, then hand out a Ready if due. */
  private afterStep(node: SimNode): void {
    const raft = node.raw!.raft;
    if (this.checker !== undefined) {
      this.checker.observeCommit(raft);
      if (raft.role === 'leader') this.checker.observeLeader(raft);
    }
    this.pump(node);
  }

  private pump(node: SimNode): void {
    const raw = node.raw;
    // Without pipelining (the default) one Ready at a time; with it, as many as RawNode allows.
    while (raw !== undefined && (node.inFlight.length === 0 || this.pipelined) && raw.hasReady()) {
      const rd = raw.ready();
      this.checker?.observeEntries(raw.raft, rd.entries);
      for (const rs of rd.readStates) this.completeRead(node, rs.index, rs.requestContext);
      for (const m of rd.messages) this.send(m);
      node.inFlight.push(rd);
      const disk = this.options;
      const latency = disk.diskLatencyMinMs + this.diskRandom.nextInt(disk.diskLatencyMaxMs - disk.diskLatencyMinMs + 1);
      // A disk completes writes in order: a later write is never durable before an earlier one.
      const at = Math.max(latency, node.lastPersistAt - this.now);
      node.lastPersistAt = this.now + at;
      this.schedule(at, { kind: 'persisted', node: node.id, incarnation: node.incarnation });
    }
  }

  private get pipelined(): boolean {
    return (this.options.raft.readiesInFlightMax ?? 1) > 1;
  }

  private completeRead(node: SimNode, index: number, context: Uint8Array): void {
    let key = '';
    for (const byte of context) key += String.fromCharCode(byte);
    const waiter = node.readWaiters.get(key);
    node.readWaiters.delete(key);
    const required = node.pendingReads.get(key);
    if (required !== undefined) {
      node.pendingReads.delete(key);
      this.stats.readsCompleted++;
      this.record(`read-state ${node.id} ${key} index=${index} required=${required}`);
      this.checker?.observeRead(node.id, index, required);
    }
    waiter?.(index);
  }

  private onPersisted(id: number, incarnation: number): void {
    const node = this.nodes.get(id)!;
    if (node.incarnation !== incarnation || node.raw === undefined) return;
    const raw = node.raw;
    const rd = node.inFlight.shift()!;
    if (rd.snapshot !== undefined) this.installSnapshot(node, rd.snapshot);
    node.storage.append(rd.entries);
    if (rd.hardState !== undefined) node.storage.setHardState(rd.hardState);
    this.hashEvent(4, id, rd.entries.length, rd.committedEntries.length, rd.hardState?.commit ?? 0);
    for (const m of rd.messagesAfterPersist) this.send(m);
    let confChanged = false;
    for (const entry of rd.committedEntries) {
      this.apply(node, entry);
      if (entry.type === 'conf-change') confChanged = true;
    }
    raw.advance();
    this.maybeSnapshot(node, confChanged);
    this.afterStep(node);
  }

  private installSnapshot(node: SimNode, snapshot: Snapshot): void {
    node.storage.applySnapshot(snapshot);
    const restored = decodeSnapshotData(snapshot.data);
    node.appliedIndex = restored.appliedIndex;
    node.chain = restored.chain;
    node.confState = snapshot.metadata.confState;
    this.restoreApplication(node, snapshot.data);
    this.record(`install-snapshot ${node.id} index=${snapshot.metadata.index}`);
    this.checker?.observeSnapshotRestore(node.id, restored.appliedIndex, restored.chain);
  }

  private apply(node: SimNode, entry: Entry): void {
    if (this.checker !== undefined) {
      // The chain digests the applied sequence; only the checker needs it.
      const chain = extendChain(node.chain, entry);
      this.checker.observeApply(node.id, node.appliedIndex, entry, chain);
      node.chain = chain;
    }
    node.appliedIndex = entry.index;
    this.stats.entriesApplied++;
    if (entry.type === 'conf-change') {
      const cc = decodeConfChange(entry.data);
      node.confState = node.raw!.applyConfChange(cc);
      this.record(`apply-conf-change ${node.id} index=${entry.index} -> voters=${node.confState.voters.join(',')} outgoing=${node.confState.votersOutgoing.join(',')} learners=${node.confState.learners.join(',')}`);
      for (const listener of this.confChangeListeners) listener(node, cc, entry.index);
    } else if (this.options.recordApplied === true && entry.data.byteLength > 0) {
      node.applied.push(new TextDecoder().decode(entry.data));
    }
    node.application?.apply(entry);
    for (const listener of this.applyListeners) listener(node, entry);
  }

  /** Hands the application its part of a snapshot's data (undefined: no snapshot, start empty). */
  private restoreApplication(node: SimNode, data: Uint8Array | undefined): void {
    const application = node.application;
    if (application === undefined) return;
    const own = data === undefined ? new Uint8Array(0) : data.subarray(SNAPSHOT_CHAIN_BYTES);
    const pending = application.restore(own);
    if (pending !== undefined) this.restoring.push(pending);
  }

  /**
   * Snapshots every `snapshotEveryEntries` applied entries, and after every applied conf change
   * once snapshots exist (so a new member is always sent a snapshot that includes it).
   */
  private maybeSnapshot(node: SimNode, confChanged: boolean): void {
    const every = this.options.snapshotEveryEntries;
    if (every <= 0) return;
    const snapshotIndex = node.storage.snapshot().metadata.index;
    if (node.appliedIndex === snapshotIndex) return;
    const due = node.appliedIndex - snapshotIndex >= every || (confChanged && snapshotIndex > 0);
    if (!due) return;
    node.storage.createSnapshot(node.appliedIndex, node.confState, this.snapshotData(node));
    const compactTo = node.appliedIndex - this.options.snapshotKeepEntries;
    if (compactTo >= node.storage.firstIndex()) node.storage.compact(compactTo);
    this.record(`snapshot ${node.id} index=${node.appliedIndex} compact=${compactTo}`);
  }

  private snapshotData(node: SimNode): Uint8Array {
    const chain = encodeSnapshotData(node.appliedIndex, node.chain);
    if (node.application === undefined) return chain;
    const own = node.application.snapshot();
    const data = new Uint8Array(SNAPSHOT_CHAIN_BYTES + own.byteLength);
    data.set(chain);
    data.set(own, SNAPSHOT_CHAIN_BYTES);
    return data;
  }

  // -------------------------------------------------------------------------------------------
  // Trace

  record(line: string): void {
    let h = this.traceHash;
    for (let i = 0; i < line.length; i++) {
      h ^= line.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
    this.traceHash = h >>> 0;
    this.hashEvent(1, this.now, line.length, 0, 0);
    if (this.options.traceEvents) this.trace.push(`${this.now} ${line}`);
  }

  private hashEvent(kind: number, a: number, b: number, c: number, d: number): void {
    let h = this.traceHash;
    for (const v of [kind, this.now, a, b, c, d]) {
      h ^= v & 0xffff;
      h = Math.imul(h, 0x01000193);
      h ^= Math.floor(v / 0x10000) & 0xffff;
      h = Math.imul(h, 0x01000193);
    }
    this.traceHash = h >>> 0;
  }
}


export { SafetyViolation };
