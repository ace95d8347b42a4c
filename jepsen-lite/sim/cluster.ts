/**
 * A deterministic simulated cluster. Every node runs the real shard runtime (src/runtime) — the
 * same cycle `dkv server` runs: proposals batched per turn, pipelined Readies, one save for every
 * shard (group commit), committed entries applied while the node's own write is in flight,
 * acknowledgements sent only once it is durable — over simulated parts injected in place of the
 * real ones: a network (loss, duplication, delay, reordering, partitions), a disk per node (latency,
 * slow and failed writes, crashes that lose what was not durable; see disk.ts), clocks (drift) and
 * a scheduler, all driven by one seed through a discrete event queue. Nothing here reads a real
 * clock, so a seed replays exactly.
 *
 * Each node hosts the shards given (by default one, shard 1) with the state machines given (by
 * default a record engine that digests opaque payloads); every state machine keeps an applied
 * chain, which the safety checker compares across nodes. A crash drops the process (runtime,
 * memory) and keeps what its disk made durable; a restart rebuilds the runtime from that disk.
 *
 * Groups come and go at runtime too (as a node does when the meta shard mounts or drops a store):
 * `createShard` bootstraps a group on some nodes (the same bootstrap on each, written and synced
 * before the group starts), `removeShard` stops it and drops its storage. A restarted node hosts
 * the groups its disk holds, and drops again one it was told to remove whose drop a crash lost.
 */
import {
  type ConfChange,
  type ConfState,
  bootstrapEntries,
  type Entry,
  type Message,
  type RaftConfig,
  type RawNode,
  SeededPrng,
  describeMessage,
  MemoryLogStorage,
  decodeConfChange,
} from '../../raft/index.js';
import {
  NodeRuntime,
  type RaftSettings,
  RuntimeError,
  type RuntimeErrorCode,
  ShardStateMachine,
  decodeEnvelope,
  firstRequestId,
} from '../../src/runtime/index.js';
import type { EngineCommand } from '../../src/engines/index.js';
import { EventQueue } from './event-queue.js';
import { NO_STORAGE_FAULTS, SimDisk, SimDiskError, type SimStorage, type StorageFaults } from './disk.js';
import { type NetworkParams, SimNetwork } from './network.js';
import { RecordEngine, recordCommand } from './record-engine.js';
import { SafetyChecker, SafetyViolation } from './safety.js';

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
  /**
   * With clock drift, how far each node's clock may be off simulated time (ms; default
   * `simClockOffsetMsMax`): two nodes' clocks differ by up to twice this.
   */
  readonly clockOffsetMsMax?: number;
  readonly raft: RaftOptions;
  /** Applied entries between snapshots (0: never snapshot). */
  readonly snapshotEveryEntries: number;
  /** Entries kept in the log behind a snapshot, for slow followers. */
  readonly snapshotKeepEntries: number;
  readonly checkSafety: boolean;
  /** Record a readable line per event (for replays); a hash of every event is always kept. */
  readonly traceEvents: boolean;
  /** Keep every applied payload per node (for the demo). */
  readonly recordApplied?: boolean;
  /** Shards every node hosts (default [1]); the first one is what `raw`, `propose` and reads use. */
  readonly shards?: readonly number[];
  /** A new state machine for a shard of a node (default: the record engine). */
  readonly stateMachine?: (node: number, shard: number) => ShardStateMachine;
  /** Faults of the nodes' disks (default none: writes complete after the latency, crashes lose power). */
  readonly storageFaults?: StorageFaults;
  /** A process whose storage failed is restarted by its supervisor after this long (ms). */
  readonly restartAfterFailureMs?: number;
  /** How long a request may wait in a node's runtime (simulated ms). */
  readonly requestTimeoutMs?: number;
  /** Whether the runtimes quiesce idle groups (default: the runtime's, on). */
  readonly quiesce?: boolean;
  /**
   * Whether a node that starts advances its groups' election clocks by all but one timeout at
   * once, as the server's ticker does (etcd's --initial-election-tick-advance). Off by default
   * (the jepsen workloads' recorded seeds were made without it); the random Raft scenarios turn
   * it on for odd seeds.
   */
  readonly tickAdvance?: boolean;
  /** What every member's build applies (the runtime's option; default: everything this build does). */
  readonly membersSupport?: (engine: number, version: number) => boolean;
  /**
   * Message types the network never duplicates. A forwarded proposal (MsgProp) delivered twice
   * is appended twice — Raft does not deduplicate commands — and a refusal (MsgPropDropped)
   * delivered twice could send its proposal again after the second copy was appended; so a run
   * that models the peer transport (a stream that never repeats a message) excludes both.
   */
  readonly neverDuplicate?: readonly Message['type'][];
  /** Test-only switches that break the runtime on purpose (the checkers must catch them). */
  readonly unsafe?: { readonly acknowledgeBeforePersist?: boolean };
  /** Hears every node's runtime events (a workload's clients and watchers). */
  readonly observer?: SimObserver;
}

/** What a workload wants to hear from the nodes. */
export interface SimObserver {
  applied?(node: SimNode, shard: number, outcome: unknown, entry: Entry): void;
  stateReplaced?(node: SimNode, shard: number): void;
  crashed?(node: SimNode): void;
  /** A node removed group `shard` (its pending requests failed with wrong-shard). */
  shardRemoved?(node: SimNode, shard: number): void;
  /** A node learned of a new leader of `shard` (0: none known) in `term`; `leader === node.id` when it took office. */
  leaderChanged?(node: SimNode, shard: number, leader: number, term: number): void;
}

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

/** With clock drift, each node's clock is also off by up to this much (so leaders stamp different times). */
export const simClockOffsetMsMax = 1000;

/** A request's runtime deadline unless the options say otherwise (simulated ms). */
export const simRequestTimeoutMsDefault = 5000;
/** A process whose storage failed comes back after this long unless the options say otherwise. */
export const simRestartAfterFailureMsDefault = 500;

export type NodeStatus = 'up' | 'down' | 'decommissioned';

const EMPTY_CONF_STATE: ConfState = Object.freeze({ voters: [], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false });

export class SimNode {
  runtime: NodeRuntime | undefined;
  status: NodeStatus = 'up';
  /** Bumped on every crash and restart: events of an earlier incarnation are ignored. */
  incarnation = 0;
  /** Applied payloads of the record engine (with `recordApplied`), as text. */
  readonly applied: string[] = [];
  /** A paused process handles nothing; the events addressed to it wait here until it resumes. */
  paused = false;
  readonly parked: SimEvent[] = [];
  /** The newest configuration this node applied (kept while it is down). */
  confState: ConfState = EMPTY_CONF_STATE;
  /** The current incarnation's storage (undefined while down). */
  storage: SimStorage | undefined;
  /** Groups this node was told to remove (a restart drops them again if a crash lost the drop). */
  readonly removedShards = new Set<number>();
  private lastApplied = 0;

  constructor(
    readonly id: number,
    readonly disk: SimDisk,
    readonly random: SeededPrng,
    readonly tickPeriodMs: number,
    /** This node's wall clock runs this far ahead of simulated time (behind when negative). */
    readonly clockOffsetMs: number,
    private readonly primaryShard: number,
  ) {}

  /** The Raft group of the first shard (undefined while down). */
  get raw(): RawNode | undefined {
    return this.runtime?.hasShard(this.primaryShard) === true ? this.runtime.rawNode(this.primaryShard) : undefined;
  }

  /** The first shard's applied index (the last one known while down). */
  get appliedIndex(): number {
    if (this.runtime !== undefined && this.runtime.fatalError === undefined && this.runtime.hasShard(this.primaryShard)) {
      this.lastApplied = this.runtime.machine(this.primaryShard).appliedIndex;
    }
    return this.lastApplied;
  }

  /** A shard's state machine, while up. */
  machine(shard: number = this.primaryShard): ShardStateMachine | undefined {
    const runtime = this.runtime;
    if (runtime === undefined || runtime.fatalError !== undefined || !runtime.hasShard(shard)) return undefined;
    return runtime.machine(shard);
  }
}

type SimEvent =
  | { readonly kind: 'tick'; readonly node: number; readonly incarnation: number }
  | { readonly kind: 'deliver'; readonly shard: number; readonly message: Message; readonly senderIncarnation: number }
  | { readonly kind: 'task'; readonly node: number; readonly incarnation: number; readonly run: () => void }
  | { readonly kind: 'disk'; readonly node: number; readonly run: () => void }
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
  /** Writes the disks failed (each stopped its process). */
  diskFailures: number;
}

/** Called with each entry a node applies on its first shard (after the safety checks). */
export type ApplyListener = (node: SimNode, entry: Entry) => void;

/** What a finished request reports (undefined error: it succeeded). */
export type SimCallback = (error: RuntimeErrorCode | undefined, result?: unknown) => void;

export class SimCluster {
  now = 0;
  readonly nodes = new Map<number, SimNode>();
  readonly network: SimNetwork;
  /** The safety checker of each shard's group. */
  readonly checkers = new Map<number, SafetyChecker>();
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
    diskFailures: 0,
  };
  readonly options: SimClusterOptions;
  readonly shards: readonly number[];
  private readonly events = new EventQueue<SimEvent>();
  private readonly diskRandom: SeededPrng;
  private readonly nodeRandom: SeededPrng;
  /** Tests: messages this returns true for are lost on the wire. */
  dropWhere: ((shard: number, message: Message) => boolean) | undefined;
  private readonly applyListeners: ApplyListener[] = [];
  private readonly confChangeListeners: Array<(node: SimNode, cc: ConfChange, index: number) => void> = [];

  constructor(options: SimClusterOptions) {
    this.options = options;
    this.shards = options.shards ?? [1];
    if (this.shards.length === 0) throw new TypeError('a simulated node hosts at least one shard');
    const master = new SeededPrng(options.seed);
    this.network = new SimNetwork(master.fork(), options.network);
    this.diskRandom = master.fork();
    this.nodeRandom = master.fork();
    if (options.checkSafety) for (const shard of this.shards) this.checkers.set(shard, new SafetyChecker());
    for (const id of options.nodeIds) {
      const node = this.newNode(id);
      for (const shard of this.shards) node.disk.seed(shard, MemoryLogStorage.bootstrapped(options.nodeIds));
      this.boot(node);
    }
  }

  /** The safety checker of the first shard. */
  get checker(): SafetyChecker | undefined {
    return this.checkers.get(this.shards[0]!);
  }

  onApply(listener: ApplyListener): void {
    this.applyListeners.push(listener);
  }

  onConfChangeApplied(listener: (node: SimNode, cc: ConfChange, index: number) => void): void {
    this.confChangeListeners.push(listener);
  }

  // -------------------------------------------------------------------------------------------
  // Nodes

  private newNode(id: number): SimNode {
    const drift = this.options.clockDrift;
    const random = this.nodeRandom.fork();
    const skew = drift === 0 ? 1 : 1 + (random.nextFloat() * 2 - 1) * drift;
    const period = Math.max(1, Math.round(this.options.tickIntervalMs * skew));
    const offset = drift === 0 ? 0 : Math.round((random.nextFloat() * 2 - 1) * (this.options.clockOffsetMsMax ?? simClockOffsetMsMax));
    const disk = new SimDisk(this.diskRandom.fork(), { min: this.options.diskLatencyMinMs, max: this.options.diskLatencyMaxMs }, this.options.storageFaults ?? NO_STORAGE_FAULTS);
    const node = new SimNode(id, disk, random, period, offset, this.shards[0]!);
    this.nodes.set(id, node);
    return node;
  }

  /** Adds a brand-new node with an empty log; it joins once a conf change adds it. */
  addNode(id: number): SimNode {
    if (this.nodes.has(id)) throw new TypeError(`node ${id} already exists`);
    this.record(`add-node ${id}`);
    const node = this.newNode(id);
    this.boot(node);
    return node;
  }

  private stateMachineFor(node: number, shard: number): ShardStateMachine {
    if (this.options.stateMachine !== undefined) return this.options.stateMachine(node, shard);
    return new ShardStateMachine({ engines: [new RecordEngine(this.options.recordApplied === true)], trackChain: true });
  }

  private boot(node: SimNode): void {
    node.status = 'up';
    node.incarnation++;
    const incarnation = node.incarnation;
    const id = node.id;
    const cluster = this;
    const storage = node.disk.open(
      {
        get now() {
          return cluster.now;
        },
        atDisk: (delayMs, run) => this.schedule(delayMs, { kind: 'disk', node: id, run }),
        atProcess: (delayMs, run) => this.schedule(delayMs, { kind: 'task', node: id, incarnation, run }),
      },
      incarnation,
    );
    const raft = this.options.raft;
    const settings: RaftSettings = { ...raft, electionTicks: raft.electionTicks ?? 10, heartbeatTicks: raft.heartbeatTicks ?? 1 };
    const runtime = new NodeRuntime({
      memberId: id,
      storage,
      transport: { send: (to, shard, messages) => this.send(id, shard, messages) },
      clock: { now: () => Math.max(0, this.now + node.clockOffsetMs) },
      scheduler: { soon: (run) => this.schedule(0, { kind: 'task', node: id, incarnation, run }) },
      random: node.random.fork(),
      raft: settings,
      tickMs: this.options.tickIntervalMs,
      snapshotCount: this.options.snapshotEveryEntries,
      snapshotCatchUpEntries: this.options.snapshotKeepEntries,
      snapshotAfterConfChange: true,
      requestTimeoutMs: this.options.requestTimeoutMs ?? simRequestTimeoutMsDefault,
      quiesce: this.options.quiesce,
      membersSupport: this.options.membersSupport,
      stateMachine: (shard) => this.stateMachineFor(id, shard),
      firstRequestId: firstRequestId(Math.max(0, this.now + node.clockOffsetMs)),
      unsafe: this.options.unsafe,
      listener: this.listenerFor(node, incarnation),
    });
    node.runtime = runtime;
    node.storage = storage;
    // The groups on disk, and the configured ones (a new node's start empty; they learn
    // everything from the leader). A group this node removed is dropped again, not added.
    const onDisk = node.disk.shards();
    for (const shard of onDisk) {
      if (!node.removedShards.has(shard)) continue;
      this.record(`drop-again ${id} shard=${shard}`);
      storage.dropShard(shard, (error) => this.diskDone(node, incarnation, error));
    }
    const hosted = new Set([...this.shards, ...onDisk].filter((shard) => !node.removedShards.has(shard)));
    for (const shard of hosted) runtime.addShard(shard);
    if (this.options.tickAdvance === true) for (let tick = 1; tick < settings.electionTicks; tick++) runtime.tick();
    node.confState = node.raw?.raft.tracker.confState() ?? node.confState;
    const phase = node.random.nextInt(node.tickPeriodMs) + 1;
    this.schedule(phase, { kind: 'tick', node: id, incarnation });
  }

  private listenerFor(node: SimNode, incarnation: number) {
    const primary = this.shards[0]!;
    const live = (): boolean => node.incarnation === incarnation && node.status === 'up';
    return {
      readyTaken: (shard: number, raw: RawNode, ready: { entries: readonly Entry[] }) => {
        this.checkers.get(shard)?.observeEntries(raw.raft, ready.entries);
      },
      stepped: (shard: number, raw: RawNode) => {
        const checker = this.checkers.get(shard);
        if (checker === undefined) return;
        checker.observeCommit(raw.raft);
        if (raw.raft.role === 'leader') checker.observeLeader(raw.raft);
      },
      entryApplied: (shard: number, entry: Entry) => {
        const machine = node.runtime!.machine(shard);
        this.checkers.get(shard)?.observeApply(node.id, entry.index - 1, entry, machine.chain);
        if (shard !== primary) return;
        this.stats.entriesApplied++;
        if (entry.type === 'conf-change') {
          const cc = decodeConfChange(entry.data);
          node.confState = node.raw!.raft.tracker.confState();
          const cs = node.confState;
          this.record(`apply-conf-change ${node.id} index=${entry.index} -> voters=${cs.voters.join(',')} outgoing=${cs.votersOutgoing.join(',')} learners=${cs.learners.join(',')}`);
          for (const listener of this.confChangeListeners) listener(node, cc, entry.index);
        } else if (this.options.recordApplied === true && entry.data.length > 0) {
          node.applied.push(new TextDecoder().decode(decodeEnvelope(entry.data).payload));
        }
        for (const listener of this.applyListeners) listener(node, entry);
      },
      applied: (shard: number, applied: { outcome: unknown }, entry: Entry) => this.options.observer?.applied?.(node, shard, applied.outcome, entry),
      leaderChanged: (shard: number, leader: number, term: number) => {
        if (live()) this.options.observer?.leaderChanged?.(node, shard, leader, term);
      },
      shardRemoved: (shard: number) => {
        this.record(`shard-removed ${node.id} shard=${shard}`);
        if (live()) this.options.observer?.shardRemoved?.(node, shard);
      },
      stateReplaced: (shard: number) => {
        const machine = node.runtime!.machine(shard);
        this.record(`install-snapshot ${node.id} shard=${shard} index=${machine.appliedIndex}`);
        this.checkers.get(shard)?.observeSnapshotRestore(node.id, machine.appliedIndex, machine.chain);
        if (shard === primary && node.raw !== undefined) node.confState = node.raw.raft.tracker.confState();
        this.options.observer?.stateReplaced?.(node, shard);
      },
      fatal: (error: Error) => {
        // Anything but a failed disk is a bug the run must report.
        if (!(error instanceof SimDiskError)) throw error;
        if (!live()) return;
        // The process exits; its supervisor starts it again.
        this.stats.diskFailures++;
        this.record(`fatal ${node.id}: ${error.message}`);
        this.at(0, `exit ${node.id}`, () => this.crash(node.id));
        this.at(this.options.restartAfterFailureMs ?? simRestartAfterFailureMsDefault, `supervisor restarts ${node.id}`, () => this.restart(node.id));
      },
    };
  }

  /** A write the cluster made itself (a bootstrap, a drop) finished; a failed disk stops the process as the runtime's would. */
  private diskDone(node: SimNode, incarnation: number, error: Error | undefined): boolean {
    if (error === undefined) return node.incarnation === incarnation && node.status === 'up';
    if (!(error instanceof SimDiskError)) throw error;
    if (node.incarnation !== incarnation || node.status !== 'up') return false;
    this.stats.diskFailures++;
    this.record(`fatal ${node.id}: ${error.message}`);
    this.at(0, `exit ${node.id}`, () => this.crash(node.id));
    this.at(this.options.restartAfterFailureMs ?? simRestartAfterFailureMsDefault, `supervisor restarts ${node.id}`, () => this.restart(node.id));
    return false;
  }

  /**
   * Creates group `shard` at runtime on the up nodes among `nodes`, with `voters` (default:
   * `nodes`) as its first configuration: each writes the same bootstrap entries and hard state
   * (synced, as a server does before starting a group) and adds the group once that is durable,
   * so a crash first leaves the node without it. Returns the nodes it is being created on.
   */
  createShard(shard: number, nodes: readonly number[], voters: readonly number[] = nodes): number[] {
    this.record(`create-shard ${shard} on ${nodes.join(',')} voters=${voters.join(',')}`);
    if (this.options.checkSafety && !this.checkers.has(shard)) this.checkers.set(shard, new SafetyChecker());
    const started: number[] = [];
    for (const id of nodes) {
      const node = this.nodes.get(id);
      const storage = node?.storage;
      if (node === undefined || node.status !== 'up' || storage === undefined || this.runningRuntime(id) === undefined) continue;
      if (node.runtime!.hasShard(shard) || node.removedShards.has(shard)) throw new TypeError(`node ${id} hosts or hosted shard ${shard} already`);
      started.push(id);
      const incarnation = node.incarnation;
      const { entries, hardState } = bootstrapEntries(voters);
      storage.save([{ shard, entries, hardState }], { sync: true, deferrable: false }, (error) => {
        if (!this.diskDone(node, incarnation, error)) return;
        const runtime = this.runningRuntime(id);
        // Removed before it started here: the drop follows the bootstrap on the disk.
        if (runtime === undefined || runtime.hasShard(shard) || node.removedShards.has(shard)) return;
        this.record(`add-shard ${id} shard=${shard}`);
        runtime.addShard(shard);
      });
    }
    return started;
  }

  /**
   * Removes group `shard` from `nodes`: an up node stops the group at once (its pending requests
   * fail with wrong-shard) and drops its storage; a down node drops it when it restarts.
   */
  removeShard(shard: number, nodes: readonly number[]): void {
    this.record(`remove-shard ${shard} on ${nodes.join(',')}`);
    for (const id of nodes) {
      const node = this.nodes.get(id);
      if (node === undefined) continue;
      node.removedShards.add(shard);
      const runtime = this.runningRuntime(id);
      const storage = node.storage;
      if (runtime === undefined || storage === undefined) continue;
      if (runtime.hasShard(shard)) runtime.removeShard(shard);
      const incarnation = node.incarnation;
      storage.dropShard(shard, (error) => void this.diskDone(node, incarnation, error));
    }
  }

  /** The nodes whose runtime hosts `shard` now. */
  hosts(shard: number): number[] {
    return [...this.nodes.values()].filter((node) => this.runningRuntime(node.id)?.hasShard(shard) === true).map((node) => node.id);
  }

  crash(id: number): void {
    const node = this.nodes.get(id);
    if (node === undefined || node.status !== 'up') return;
    this.record(`crash ${id}`);
    this.stats.crashes++;
    void node.appliedIndex; // remembers the last applied index
    node.status = 'down';
    const runtime = node.runtime;
    node.runtime = undefined;
    node.storage = undefined;
    node.incarnation++;
    // Whatever waited in a paused process's socket buffers dies with it.
    node.paused = false;
    node.parked.length = 0;
    node.applied.length = 0; // volatile state: rebuilt from the snapshot and log on restart
    node.disk.crash();
    for (const checker of this.checkers.values()) checker.forgetNode(id);
    // The process is gone: requests in it get no answer (clients see their connection break).
    runtime?.stop();
    this.options.observer?.crashed?.(node);
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
    for (const checker of this.checkers.values()) checker.forgetNode(id);
    this.boot(node);
  }

  /** Stops a node for good (it was removed from the configuration). */
  decommission(id: number): void {
    const node = this.nodes.get(id);
    if (node === undefined || node.status === 'decommissioned') return;
    this.record(`decommission ${id}`);
    node.status = 'decommissioned';
    const runtime = node.runtime;
    node.runtime = undefined;
    node.storage = undefined;
    node.incarnation++;
    runtime?.stop();
  }

  /** Tests: delivers `message` of `shard` after `delayMs`, as if the network had held it back. */
  inject(shard: number, message: Message, delayMs = 0): void {
    this.schedule(delayMs, { kind: 'deliver', shard, message, senderIncarnation: 0 });
  }

  /** Heals every disk: writes complete after the usual latency from now on (those in flight still finish late). */
  healStorage(): void {
    this.record('heal-storage');
    for (const node of this.nodes.values()) node.disk.faults = NO_STORAGE_FAULTS;
  }

  upNodes(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.status === 'up');
  }

  /** The up node that is leader of the first shard in the highest term, if any. */
  leader(shard: number = this.shards[0]!): SimNode | undefined {
    let best: SimNode | undefined;
    let bestTerm = -1;
    for (const node of this.nodes.values()) {
      const runtime = node.runtime;
      if (runtime === undefined || runtime.fatalError !== undefined || !runtime.hasShard(shard)) continue;
      const raft = runtime.rawNode(shard).raft;
      if (raft.role !== 'leader') continue;
      if (raft.term > bestTerm) {
        best = node;
        bestTerm = raft.term;
      }
    }
    return best;
  }

  // -------------------------------------------------------------------------------------------
  // Client operations (through the runtime, as a server's services use it)

  /** Proposes a command at node `id`; 'down' if it is not up. The outcome comes to `callback`. */
  submit(id: number, shard: number, command: EngineCommand, callback: SimCallback, timeoutMs?: number): 'down' | undefined {
    const runtime = this.runningRuntime(id);
    if (runtime === undefined) return 'down';
    this.stats.proposals++;
    const done = (error: RuntimeError | undefined, applied?: { outcome: unknown }): void => {
      if (error !== undefined) this.stats.proposalsDropped++;
      callback(error?.code, applied?.outcome);
    };
    try {
      runtime.propose(shard, command, timeoutMs === undefined ? {} : { timeoutMs }, done);
    } catch (error) {
      if (!(error instanceof RuntimeError)) throw error;
      this.schedule(0, { kind: 'task', node: id, incarnation: this.nodes.get(id)!.incarnation, run: () => done(error) });
    }
    return undefined;
  }

  /** Proposes an opaque payload (the record engine's command) on the first shard. */
  propose(id: number, data: Uint8Array, callback?: SimCallback): 'down' | undefined {
    this.record(`propose at ${id}`);
    return this.submit(id, this.shards[0]!, recordCommand(data), callback ?? (() => undefined));
  }

  proposeMany(id: number, commands: Uint8Array[]): 'down' | undefined {
    for (const data of commands) if (this.submit(id, this.shards[0]!, recordCommand(data), () => undefined) === 'down') return 'down';
    return undefined;
  }

  proposeConfChange(id: number, cc: ConfChange, callback?: (error: RuntimeErrorCode | undefined) => void, shard: number = this.shards[0]!): 'down' | undefined {
    const runtime = this.runningRuntime(id);
    const changes = cc.changes.map((c) => `${c.type}:${c.nodeId}`).join(',');
    // The first shard's line is as it always was, so recorded seeds keep their trace hashes.
    this.record(`propose-conf-change ${changes} at ${id}${shard === this.shards[0] ? '' : ` shard=${shard}`}: ${runtime === undefined ? 'down' : 'queued'}`);
    if (runtime === undefined || !runtime.hasShard(shard)) return 'down';
    const done = (error: RuntimeError | undefined): void => callback?.(error?.code);
    try {
      runtime.proposeConfChange(shard, cc, {}, done);
    } catch (error) {
      if (!(error instanceof RuntimeError)) throw error;
      done(error);
    }
    return undefined;
  }

  /**
   * A linearizable read barrier at a node: the safety checker verifies the read index against
   * what was committed when the read began; `onIndex` hears it once the node applied up to it.
   */
  readIndex(id: number, onIndex?: (index: number) => void, onError?: (error: RuntimeErrorCode) => void, shard: number = this.shards[0]!): 'down' | undefined {
    const runtime = this.runningRuntime(id);
    if (runtime === undefined) return 'down';
    const required = this.checkers.get(shard)?.maxCommitted ?? 0;
    const done = (error: RuntimeError | undefined, index?: number): void => {
      if (error !== undefined) {
        onError?.(error.code);
        return;
      }
      this.stats.readsCompleted++;
      this.record(`read ${id} index=${index} required=${required}`);
      this.checkers.get(shard)?.observeRead(id, index!, required);
      onIndex?.(index!);
    };
    try {
      runtime.read(shard, {}, done);
    } catch (error) {
      if (!(error instanceof RuntimeError)) throw error;
      this.schedule(0, { kind: 'task', node: id, incarnation: this.nodes.get(id)!.incarnation, run: () => done(error) });
    }
    return undefined;
  }

  /**
   * Asks node `id` to hand leadership of `shard` (default the first) to `to`, as etcd's
   * MoveLeader asks the leader; a follower forwards it. 'down' if the node is not up or does not
   * host the group.
   */
  transferLeader(id: number, to: number, shard: number = this.shards[0]!): 'down' | undefined {
    const runtime = this.runningRuntime(id);
    // The first shard's line is as it always was, so recorded seeds keep their trace hashes.
    this.record(`transfer-leader ${id} to ${to}${shard === this.shards[0] ? '' : ` shard=${shard}`}`);
    if (runtime === undefined || !runtime.hasShard(shard)) return 'down';
    runtime.transferLeader(shard, to);
    return undefined;
  }

  /** Every group some up node's runtime hosts now (the configured shards and those created at runtime), ascending. */
  groups(): number[] {
    const groups = new Set<number>();
    for (const node of this.nodes.values()) for (const shard of this.runningRuntime(node.id)?.shardIds() ?? []) groups.add(shard);
    return [...groups].sort((a, b) => a - b);
  }

  private runningRuntime(id: number): NodeRuntime | undefined {
    const node = this.nodes.get(id);
    const runtime = node?.runtime;
    if (node === undefined || node.status !== 'up' || runtime === undefined || runtime.fatalError !== undefined) return undefined;
    return runtime;
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
        this.onDeliver(event.shard, event.message, event.senderIncarnation);
        break;
      case 'task': {
        const node = this.nodes.get(event.node);
        if (node !== undefined && node.incarnation === event.incarnation && node.status === 'up') {
          this.hashEvent(5, event.node, 0, 0, 0);
          event.run();
        }
        break;
      }
      case 'disk':
        this.hashEvent(4, event.node, 0, 0, 0);
        event.run();
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
      case 'task':
        return this.nodes.get(event.node);
      case 'deliver':
        return this.nodes.get(event.message.to);
      case 'disk':
        return undefined;
      case 'call':
        return event.node === undefined ? undefined : this.nodes.get(event.node);
    }
  }

  private onTick(id: number, incarnation: number): void {
    const node = this.nodes.get(id)!;
    if (node.incarnation !== incarnation || node.runtime === undefined) return;
    node.runtime.tick();
    this.schedule(node.tickPeriodMs, { kind: 'tick', node: id, incarnation });
  }

  private onDeliver(shard: number, m: Message, senderIncarnation: number): void {
    const node = this.nodes.get(m.to);
    if (node?.runtime === undefined || this.network.isCut(m.from, m.to)) {
      this.hashEvent(2, m.from, m.to, m.term, 0);
      // The sender's transport notices the broken stream, as a real one does.
      this.reportToSender(shard, m, senderIncarnation, false);
      return;
    }
    this.stats.messagesDelivered++;
    this.hashEvent(3, m.from, m.to, m.term, m.index);
    if (this.options.traceEvents) this.trace.push(`${this.now} deliver shard ${shard} ${describeMessage(m)}`);
    node.runtime.receive([{ shard, message: m }]);
    if (m.type === 'MsgSnap') this.reportToSender(shard, m, senderIncarnation, true);
  }

  private send(from: number, shard: number, messages: readonly Message[]): void {
    const incarnation = this.nodes.get(from)?.incarnation ?? 0;
    for (const m of messages) {
      this.stats.messagesSent++;
      if (m.type === 'MsgSnap') this.stats.snapshotsSent++;
      const deliveries = this.network.deliveries();
      if (this.dropWhere?.(shard, m) === true) deliveries.length = 0;
      if (deliveries.length > 1 && this.options.neverDuplicate?.includes(m.type) === true) deliveries.length = 1;
      for (const delay of deliveries) this.schedule(delay, { kind: 'deliver', shard, message: m, senderIncarnation: incarnation });
      // A lost snapshot stream fails at the sender after a while.
      if (deliveries.length === 0 && m.type === 'MsgSnap') {
        this.at(this.options.tickIntervalMs, `snapshot-lost ${m.from}->${m.to}`, () => this.reportToSender(shard, m, incarnation, false));
      }
    }
  }

  /**
   * What a transport tells Raft about delivery: a snapshot's outcome, and that a peer is
   * unreachable when a message to it could not be delivered. A snapshot's outcome must reach
   * the sender's Raft exactly once while that process lives (Raft waits for it and has no
   * timeout of its own), so it is work of the sender: held while the sender is paused, never
   * dropped. Unreachable reports are advice; a paused sender may miss them.
   */
  private reportToSender(shard: number, m: Message, senderIncarnation: number, delivered: boolean): void {
    const sender = this.nodes.get(m.from);
    if (sender === undefined || sender.incarnation !== senderIncarnation) return;
    if (m.type === 'MsgSnap') {
      this.schedule(0, { kind: 'task', node: m.from, incarnation: senderIncarnation, run: () => sender.runtime?.reportSnapshot(m.to, shard, delivered) });
    } else if (!delivered && (m.type === 'MsgApp' || m.type === 'MsgHeartbeat') && !sender.paused) {
      sender.runtime?.reportUnreachable(m.to, [shard]);
    }
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

/** The payload of a normal entry's command (empty for empty entries and configuration changes). */
export function payloadOf(entry: Entry): Uint8Array {
  if (entry.type !== 'normal' || entry.data.length === 0) return new Uint8Array(0);
  return decodeEnvelope(entry.data).payload;
}

export { SafetyViolation };
