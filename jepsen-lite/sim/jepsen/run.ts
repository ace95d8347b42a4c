/**
 * One `dkv jepsen sim` run: a simulated cluster of real Raft cores and real KV state machines
 * (MVCC store, commands encoded as the server encodes them), a nemesis drawn from the seed,
 * concurrent clients recording a history, and the checkers over it. Everything — network, disk,
 * clocks, faults, the clients' choices — comes from the one seed, so a seed replays exactly.
 *
 * Phases: faults for `durationMs` (simulated); then everything heals and the clients go on for
 * `recoveryMs`, so the history ends on a healthy cluster; then the clients stop, outstanding
 * operations are answered or time out, and the replicas must converge (same applied index,
 * same HashKV). A Raft safety violation (the simulator's own checks) also fails the run.
 */
import { RaftAssertionError, SeededPrng } from '../../../raft/index.js';
import { composeStateMachine, kvEngineOf } from '../../../src/runtime/index.js';
import { kvOutcome } from '../../../src/engines/kv/index.js';
import { type ShardStateMachine, StateMachineHaltError } from '../../../src/runtime/index.js';
import { type CheckResult, type LinearizabilityResult, type WatchHistory, type WatchRecord, checkElle, checkKvByRevision, checkLinearizability, checkWatches, type ElleCheckResult } from '../../check/index.js';
import type { FaultWindow, Operation } from '../../history.js';
import { Generator, type WorkloadName, elleModelOf, elleTxnsOf, modelOf, workloadDefaults } from '../../workload/index.js';
import { SIM_DEFAULTS, SimCluster, type SimObserver } from '../cluster.js';
import { QUIET_NETWORK } from '../network.js';
import { SafetyViolation } from '../safety.js';
import { SimClients, clientLinkDelayMsMax, clientTimeoutMs } from './clients.js';
import { type FaultPlan, Nemesis, faultPlanFor, transferStats } from './faults.js';
import { HistoryRecorder, SimCompactor, SimWatchers } from './watchers.js';

export type JepsenVerdict = 'ok' | 'violation' | 'unknown';

export interface JepsenSimOptions {
  readonly seed: number;
  readonly workload: WorkloadName;
  /** 3 or 5. */
  readonly nodes: number;
  /** Simulated milliseconds of faults (the run lasts longer: recovery and drain follow). */
  readonly durationMs: number;
  /** Draw the fault kinds and rates from the seed. */
  readonly swarm: boolean;
  /** Client processes issuing operations (default `jepsenClientsDefault`). */
  readonly clients?: number;
  /** Test-only switches that break the system on purpose. */
  readonly unsafe?: { readonly staleReads?: boolean; readonly ignoreTxnCompare?: boolean };
  /** Wall-clock budget of the linearizability search (default the checker's; 0: unknown at once). */
  readonly checkBudgetMs?: number;
  /** The watch workload's streams per node (default `jepsenWatchersPerNodeDefault`). */
  readonly watchersPerNode?: number;
  /** Keep a readable line per simulated event (`result.trace`), for replays. */
  readonly trace?: boolean;
  /**
   * Leave leader transfers out of the plan (default: in it): a seed found before the transfer
   * fault existed replays its schedule exactly (the other lanes draw as they did).
   */
  readonly withoutTransfers?: boolean;
}

export interface JepsenSimStats {
  readonly simulatedMs: number;
  readonly events: number;
  readonly ok: number;
  readonly fail: number;
  readonly info: number;
  readonly crashes: number;
  readonly leadersElected: number;
  readonly snapshotsSent: number;
  readonly watchStreams: number;
  readonly watchEvents: number;
  /** The fewest watch streams any node served over the run (the watch workload opens some on every node). */
  readonly watchStreamsPerNodeMin: number;
  /** Times the watch engine found a stream full and let the watcher fall back to the history. */
  readonly watchSlowFallbacks: number;
  /** Compactions applied (the watch workload compacts now and then). */
  readonly compactions: number;
  /** Leader transfers the nemesis asked for; of them, those after which the group had another leader in a later term, and those where it was the transferee. */
  readonly transfers: number;
  readonly transfersChangedLeader: number;
  readonly transfersToTransferee: number;
  /** A digest of every simulated event: equal for equal runs. */
  readonly traceHash: number;
}

export interface JepsenSimResult {
  readonly options: JepsenSimOptions;
  readonly plan: FaultPlan;
  readonly operations: readonly Operation[];
  readonly faults: readonly FaultWindow[];
  readonly watches?: readonly WatchRecord[];
  readonly watchHistory?: WatchHistory;
  /** Absent for a transactional workload whose committed history could not decide it (Elle checks it). */
  readonly linearizability?: LinearizabilityResult;
  /** The transactional workloads: Elle's verdict. */
  readonly txn?: ElleCheckResult;
  readonly watch?: CheckResult;
  /** A failure found by the simulator itself (Raft safety, replicas diverging or not recovering). */
  readonly failure?: string;
  readonly verdict: JepsenVerdict;
  readonly replayCommand: string;
  readonly stats: JepsenSimStats;
  /** With `trace`: every simulated event. */
  readonly trace?: readonly string[];
}

export const jepsenClientsDefault = 5;
/** Watchers per node in the watch workload (besides the writing clients). */
export const jepsenWatchersPerNodeDefault = 2;
export const jepsenWatchersPerNodeMax = 16;
export const jepsenNodeCounts: readonly number[] = [3, 5];
/** Before the clients start, the cluster gets this long (simulated ms) to elect a leader. */
export const setupMsMax = 10_000;
const setupStepMs = 10;
/** After healing, clients go on this long (simulated ms) so the history ends healthy. */
export const recoveryMs = 2000;
/** After the clients stop: every operation is answered or has timed out within this. */
const drainMs = clientTimeoutMs + 2 * clientLinkDelayMsMax + 1;
/** Once healed, the replicas must reach the same applied index within this (simulated ms). */
export const convergenceMsMax = 10_000;
const convergenceStepMs = 50;
/** Keys of the run live under this prefix. */
const jepsenKeyPrefix = workloadDefaults.keyPrefix;

/** Shards every node hosts: the meta shard and the data shard with the workload's keys (group commit covers both). */
const metaShard = 0;
export const dataShard = 1;
const tickIntervalMs = 100;
const electionTicks = 10;
/** One election timeout (ms): what the lease engine is composed with. */
export const electionTimeoutMs = electionTicks * tickIntervalMs;
/** Small, so snapshots (real MVCC snapshots) are taken, sent and restored often. */
const snapshotEveryEntries = 40;
const snapshotKeepEntries = 5;
const diskLatencyMsMax = 5;
const clockDrift = 0.02;

export function replayCommand(options: JepsenSimOptions): string {
  const parts = ['dkv jepsen sim', `--seed ${options.seed}`, `--workload ${options.workload}`, `--nodes ${options.nodes}`, `--time ${options.durationMs}`];
  if (options.swarm) parts.push('--swarm');
  if (options.clients !== undefined && options.clients !== jepsenClientsDefault) parts.push(`--clients ${options.clients}`);
  if (options.watchersPerNode !== undefined && options.watchersPerNode !== jepsenWatchersPerNodeDefault) parts.push(`--watchers-per-node ${options.watchersPerNode}`);
  if (options.checkBudgetMs !== undefined) parts.push(`--check-budget ${options.checkBudgetMs}`);
  if (options.unsafe?.staleReads === true) parts.push('--unsafe-stale-reads');
  if (options.unsafe?.ignoreTxnCompare === true) parts.push('--unsafe-ignore-txn-compare');
  return parts.join(' ');
}

function validate(options: JepsenSimOptions): void {
  if (!Number.isSafeInteger(options.seed) || options.seed < 0) throw new TypeError(`seed must be a non-negative safe integer, got ${options.seed}`);
  if (!jepsenNodeCounts.includes(options.nodes)) throw new TypeError(`nodes must be 3 or 5, got ${options.nodes}`);
  if (!Number.isSafeInteger(options.durationMs) || options.durationMs < 0) throw new TypeError(`durationMs must be a non-negative integer, got ${options.durationMs}`);
  const clients = options.clients ?? jepsenClientsDefault;
  if (!Number.isSafeInteger(clients) || clients < 1) throw new TypeError(`clients must be a positive integer, got ${clients}`);
  const perNode = options.watchersPerNode ?? jepsenWatchersPerNodeDefault;
  if (!Number.isSafeInteger(perNode) || perNode < 1 || perNode > jepsenWatchersPerNodeMax) throw new TypeError(`watchersPerNode must be in [1, ${jepsenWatchersPerNodeMax}], got ${perNode}`);
}

export interface JepsenClusterOptions {
  readonly seed: number;
  readonly nodes: number;
  readonly plan: FaultPlan;
  readonly trace: boolean;
  readonly observer: SimObserver;
  /** How far a node's clock may be off (default the simulator's). */
  readonly clockOffsetMsMax?: number;
  /** Applied entries between snapshots (default `snapshotEveryEntries`). */
  readonly snapshotEveryEntries?: number;
  /** Test-only: the election timeout the lease engine is composed with (default the Raft one). */
  readonly leaseElectionTimeoutMs?: number;
  /** Test-only: changes each data shard's state machine after it is composed. */
  readonly alterDataShard?: (machine: ShardStateMachine) => void;
}

/**
 * The simulated cluster every `dkv jepsen sim` workload runs on: the server's shards on every
 * node (the meta shard and a data shard composed as `dkv server` composes them), the seed's disk
 * faults, clocks that drift, snapshots taken often.
 */
export function jepsenCluster(options: JepsenClusterOptions): SimCluster {
  return new SimCluster({
    ...SIM_DEFAULTS,
    seed: options.seed,
    nodeIds: Array.from({ length: options.nodes }, (_, i) => i + 1),
    network: QUIET_NETWORK,
    diskLatencyMinMs: 1,
    diskLatencyMaxMs: diskLatencyMsMax,
    tickIntervalMs,
    clockDrift,
    ...(options.clockOffsetMsMax === undefined ? {} : { clockOffsetMsMax: options.clockOffsetMsMax }),
    raft: { electionTicks, heartbeatTicks: 1, preVote: true, checkQuorum: true, readOnlyOption: 'safe' },
    snapshotEveryEntries: options.snapshotEveryEntries ?? snapshotEveryEntries,
    snapshotKeepEntries,
    checkSafety: true,
    traceEvents: options.trace,
    // The peer transport never repeats a message: a proposal delivered twice is appended twice,
    // and a refusal delivered twice could have its proposal proposed again after it was appended.
    neverDuplicate: ['MsgProp', 'MsgPropDropped'],
    shards: [dataShard, metaShard],
    stateMachine: (_node, shard) => {
      if (shard === metaShard) return composeStateMachine('meta', { trackChain: true });
      const machine = composeStateMachine('data', { trackChain: true, checkDecoded: true, electionTimeoutMs: options.leaseElectionTimeoutMs ?? electionTimeoutMs });
      options.alterDataShard?.(machine);
      return machine;
    },
    storageFaults: options.plan.storage,
    requestTimeoutMs: clientTimeoutMs,
    observer: options.observer,
  });
}

/** Set-up, as Jepsen does it: a history starts once the cluster has a leader (or `setupMsMax` passed). */
export function awaitLeader(cluster: SimCluster): void {
  for (let waited = 0; cluster.leader() === undefined && waited < setupMsMax; waited += setupStepMs) {
    cluster.runUntil(cluster.now + setupStepMs);
  }
}

export async function runJepsenSim(options: JepsenSimOptions): Promise<JepsenSimResult> {
  validate(options);
  const drawn = faultPlanFor(options.seed, options.swarm);
  const plan = options.withoutTransfers === true ? { ...drawn, kinds: drawn.kinds.filter((kind) => kind !== 'transfer') } : drawn;
  const master = new SeededPrng(options.seed);
  const generatorRandom = master.fork();
  const clientRandom = master.fork();
  const nemesisRandom = master.fork();
  const watchRandom = master.fork();
  const compactRandom = master.fork();
  const recorder = new HistoryRecorder();
  const clientCount = options.clients ?? jepsenClientsDefault;

  // The nodes report to the clients and watchers, which need the cluster: bound late.
  let watchers: SimWatchers | undefined;
  const cluster = jepsenCluster({
    seed: options.seed,
    nodes: options.nodes,
    plan,
    trace: options.trace === true,
    observer: {
      applied: (node, shard, outcome) => {
        if (shard !== dataShard) return;
        const applied = kvOutcome(outcome);
        if (modelOf(options.workload) === 'kv') recorder.applied(applied, kvEngineOf(node.machine(dataShard)!).mvcc);
        watchers?.applied(node.id, applied);
      },
      stateReplaced: (node, shard) => {
        if (shard === dataShard) watchers?.replaced(node.id);
      },
      crashed: (node) => watchers?.crashed(node.id),
    },
  });
  const generator = new Generator(options.workload, () => generatorRandom.nextFloat(), { keyPrefix: jepsenKeyPrefix });
  const clients = new SimClients({
    cluster,
    shard: dataShard,
    generator,
    random: clientRandom,
    processes: Array.from({ length: clientCount }, (_, i) => i),
    processStride: clientCount,
    keyPrefix: jepsenKeyPrefix,
    staleReads: options.unsafe?.staleReads === true,
    ignoreTxnCompare: options.unsafe?.ignoreTxnCompare === true,
  });
  if (options.workload === 'watch') watchers = new SimWatchers(cluster, dataShard, watchRandom, options.watchersPerNode ?? jepsenWatchersPerNodeDefault, jepsenKeyPrefix);
  const nemesis = new Nemesis(cluster, plan, nemesisRandom, {
    crash: (node) => cluster.crash(node),
    restart: (node) => cluster.restart(node),
  });

  let failure: string | undefined;
  try {
    awaitLeader(cluster);
    const faultsEnd = cluster.now + options.durationMs;
    nemesis.start(faultsEnd);
    clients.start();
    watchers?.start();
    if (watchers !== undefined) new SimCompactor(cluster, dataShard, compactRandom).start(faultsEnd);
    cluster.runUntil(faultsEnd);
    nemesis.healAll();
    clients.issueUntil = cluster.now + recoveryMs;
    cluster.runUntil(clients.issueUntil);
    cluster.runUntil(cluster.now + drainMs);
    failure = converge(cluster);
  } catch (error) {
    if (!(error instanceof SafetyViolation || error instanceof RaftAssertionError || error instanceof StateMachineHaltError)) throw error;
    failure = `${error.message} (at ${cluster.now} simulated ms)`;
    nemesis.healAll();
  }

  const operations = clients.history();
  const watches = watchers?.finish();
  const head = mostAdvanced(cluster);
  const committed = head === undefined || modelOf(options.workload) !== 'kv' ? undefined : recorder.history(kvEngineOf(head).mvcc.revision);
  const watchHistory = watches === undefined ? undefined : committed;
  const elleModel = elleModelOf(options.workload);
  // etcd's revisions decide a kv history against the committed one. The search is the fallback,
  // except for the transactional workloads, whose own checker (Elle) never needs one.
  const byRevisions = committed === undefined || failure !== undefined ? undefined : checkKvByRevision(operations, committed, jepsenKeyPrefix);
  const linearizability =
    byRevisions ??
    (elleModel !== undefined
      ? undefined
      : checkLinearizability(modelOf(options.workload), operations, options.checkBudgetMs === undefined ? {} : { timeBudgetMs: options.checkBudgetMs }));
  const txn = elleModel === undefined ? undefined : checkElle(elleModel, elleTxnsOf(elleModel, operations));
  const watch = watches === undefined || watchHistory === undefined ? undefined : checkWatches(watchHistory, watches);
  const verdict: JepsenVerdict =
    failure !== undefined || linearizability?.verdict === 'violation' || txn?.verdict === 'violation' || watch?.ok === false
      ? 'violation'
      : linearizability?.verdict === 'unknown'
        ? 'unknown'
        : 'ok';
  const count = (status: string): number => operations.filter((op) => op.status === status).length;
  return {
    options,
    plan,
    operations,
    faults: nemesis.windows,
    ...(watches === undefined ? {} : { watches, watchHistory }),
    ...(linearizability === undefined ? {} : { linearizability }),
    ...(txn === undefined ? {} : { txn }),
    ...(watch === undefined ? {} : { watch }),
    ...(failure === undefined ? {} : { failure }),
    verdict,
    replayCommand: replayCommand(options),
    ...(options.trace === true ? { trace: cluster.trace } : {}),
    stats: {
      simulatedMs: cluster.now,
      events: cluster.stats.events,
      ok: count('ok'),
      fail: count('fail'),
      info: count('info'),
      crashes: cluster.stats.crashes,
      leadersElected: cluster.checker?.leadersElected ?? 0,
      snapshotsSent: cluster.stats.snapshotsSent,
      watchStreams: watches?.length ?? 0,
      watchEvents: (watches ?? []).reduce((n, w) => n + w.responses.reduce((m, r) => m + (r.kind === 'events' ? r.events.length : 0), 0), 0),
      watchStreamsPerNodeMin: watchers?.streamsPerNodeMin() ?? 0,
      watchSlowFallbacks: watchers?.slowFallbacks ?? 0,
      compactions: recorder.compactionCount,
      ...transferStats(nemesis.transfers),
      traceHash: cluster.traceHash,
    },
  };
}

function mostAdvanced(cluster: SimCluster): ShardStateMachine | undefined {
  let best: ShardStateMachine | undefined;
  for (const node of cluster.nodes.values()) {
    const machine = node.machine(dataShard);
    if (machine !== undefined && (best === undefined || machine.appliedIndex > best.appliedIndex)) best = machine;
  }
  return best;
}

/**
 * After healing, every replica of every shard must apply the same prefix and hold the same state
 * (the state machines' hash over every engine). Returns what went wrong, if anything.
 */
export function converge(cluster: SimCluster): string | undefined {
  const deadline = cluster.now + convergenceMsMax;
  const nodes = [...cluster.nodes.values()];
  const lagging = (): string | undefined => {
    for (const shard of cluster.shards) {
      const committed = Math.max(...nodes.map((n) => (n.runtime?.hasShard(shard) === true ? n.runtime.rawNode(shard).raft.log.committed : 0)));
      const behind = nodes.filter((n) => (n.machine(shard)?.appliedIndex ?? 0) < committed);
      if (behind.length > 0) return `shard ${shard}: ${behind.map((n) => `n${n.id} applied ${n.machine(shard)?.appliedIndex ?? 'nothing (down)'}`).join(', ')} < committed ${committed}`;
    }
    return undefined;
  };
  while (lagging() !== undefined && cluster.now < deadline) cluster.runUntil(cluster.now + convergenceStepMs);
  const behind = lagging();
  if (behind !== undefined) return `replicas did not converge within ${convergenceMsMax} ms after healing: ${behind}`;
  for (const shard of cluster.shards) {
    const hashes = nodes.map((n) => ({ node: n.id, hash: n.machine(shard)!.hash(), index: n.machine(shard)!.appliedIndex }));
    const first = hashes[0]!;
    const differing = hashes.filter((h) => h.index === first.index && h.hash !== first.hash);
    if (differing.length > 0) return `replicas diverged on shard ${shard}: hash ${hashes.map((h) => `n${h.node}=${h.hash}@${h.index}`).join(' ')}`;
  }
  return undefined;
}
