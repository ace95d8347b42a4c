/**
 * One real-mode run, end to end: start the cluster behind the proxies, run the clients and the
 * nemesis for the run's time (its last fifth healed), read the committed history back from the
 * healed cluster, check everything, and stop every process — on success, on error and on abort.
 * `command.ts` adds the command line, the progress bar and the report folder.
 */
import { join } from 'node:path';
import {
  type CheckResult,
  type ElectionResult,
  type ElleCheckResult,
  type ElleResult,
  type FencingResult,
  type ObserverSegment,
  type LinearizabilityResult,
  type WatchHistory,
  type WatchRecord,
  checkElection,
  checkElle,
  checkFencing,
  checkKvByRevision,
  checkLinearizability,
  electionLockOperations,
  checkWatches,
  checkAgreement,
} from '../check/index.js';
import type { FaultWindow, ModelName, Operation } from '../history.js';
import type { RunHistory, RunInfo, RunResults, RunVerdict } from '../report/index.js';
import { CounterGenerator, Generator, type WorkloadName, electionKeys, etcdKey, elleModelOf, elleTxnsOf, isWorkloadName, lockKeys, workloadDefaults } from '../workload/index.js';
import { SeededPrng } from '../../raft/index.js';
import { ClientPool, type ClientWorkload, counterWorkload, etcdWorkload, watchStats, watchersPerNodeDefault } from './clients.js';
import { RealCluster, leaderWaitMs, type Target } from './cluster.js';
import { type AcknowledgedCheck, checkAcknowledgedWrites, readCommittedHistory } from './committed.js';
import { type ReplicaCheck, RunStore, runStoreName, runStoreShardsMax } from './run-store.js';
import { clientUser, rootUser, setUpAuth } from './auth.js';
import { ElectionClients, electionObservers } from './election-clients.js';
import { RunClock } from './clock.js';
import { leaseTtlSecondsRequested } from './lease-keeper.js';
import { type HolderPause, HolderPauses, LockClients } from './lock-clients.js';
import { type FaultKind, Nemesis, faultsAfterFirstHolderPauseMs, faultsWaitForHolderPauseMsMax, healedTailFraction, holderPauseEndMarginMs, planFaults, planHolderPauses } from './nemesis.js';
import { type RealWorkloadName, realModelOf } from './workloads.js';

/** Wall time the linearizability search may take before it answers unknown. */
export const checkTimeBudgetMsDefault = 60_000;
/** The run's keys live under the workloads' prefix (the cluster is fresh: only for readability). */
const keyPrefix = workloadDefaults.keyPrefix;

export interface RealRunOptions {
  readonly target: Target;
  readonly nodes: number;
  readonly timeMs: number;
  readonly workload: RealWorkloadName;
  readonly faults: readonly FaultKind[];
  readonly clients: number;
  /** The watch workload's watchers homed on each member (default `watchersPerNodeDefault`). */
  readonly watchersPerNode?: number;
  readonly seed: number;
  /** Cluster data and logs go under `<outDir>/cluster`. */
  readonly outDir: string;
  readonly etcdBin?: string;
  readonly checkTimeBudgetMs?: number;
  /** DKV only, test only: servers skip ReadIndex for reads (the checker must object). */
  readonly unsafeStaleReads?: boolean;
  /** DKV only, test only: the servers apply every Txn without its compares. */
  readonly unsafeIgnoreTxnCompare?: boolean;
  /** Auth on before the clients start (register and kv workloads): see auth.ts. */
  readonly auth?: boolean;
  /** Aborting ends the run early (SIGINT); what was recorded is still checked. */
  readonly signal?: AbortSignal;
  readonly log?: (message: string) => void;
  /** Called about once a second and at the end with the elapsed time and the ops so far. */
  readonly onProgress?: (elapsedMs: number, counts: OperationCounts) => void;
  /** Called once the cluster runs (the command arms its last-resort cleanup with it). */
  readonly onCluster?: (cluster: RealCluster) => void;
  /** Called with the lock workload's client processes (the command's last-resort cleanup kills them too). */
  readonly onClientProcesses?: (processes: { killAllNow(): void }) => void;
  /** The command line that reruns this run (for the report). */
  readonly command: string;
}

export interface OperationCounts {
  ok: number;
  fail: number;
  info: number;
}

export interface RealRunOutcome {
  readonly info: RunInfo;
  readonly history: RunHistory;
  readonly results: RunResults;
  /** Absent for a transactional workload whose committed history could not be read (Elle checks it). */
  readonly linearizability?: LinearizabilityResult;
  /** The transactional workloads: Elle's verdict. */
  readonly txn?: ElleCheckResult;
  readonly watch?: CheckResult;
  readonly acknowledged?: AcknowledgedCheck;
  /** The lock workload's fencing check. */
  readonly fencing?: FencingResult;
  /** The election workload's check. */
  readonly election?: ElectionResult;
  /** The lock workload's client processes (all gone by the time the run returns). */
  readonly clientPids?: readonly number[];
  /** Set when the committed history could not be read (the verdict is then at best unknown). */
  readonly committedError?: string;
  readonly interrupted: boolean;
}

const progressIntervalMs = 1000;

/**
 * Why the `shards` fault cannot run with these options (undefined: it can, or it is not asked
 * for). Its store holds every key of the run in one shard placed on all members but one, so it
 * needs DKV, 3 members or more, and a workload of plain KV calls (a Watch or a lock's waiting call
 * must reach a replica; auth would need the root user for the moves).
 */
export function shardsFaultProblem(options: Pick<RealRunOptions, 'faults' | 'target' | 'nodes' | 'workload' | 'auth'>): string | undefined {
  if (!options.faults.includes('shards')) return undefined;
  if (options.target !== 'dkv') return 'the shards fault needs --target dkv (etcd has no stores or shards)';
  if (options.nodes < 3) return 'the shards fault needs --nodes 3 or more (a replica moves to a member without one)';
  if (!shardsFaultWorkloads.includes(options.workload)) return `the shards fault runs with --workload ${shardsFaultWorkloads.join(' or ')}`;
  if (options.auth === true) return 'the shards fault does not run with --auth';
  return undefined;
}

/** The workloads the `shards` fault runs with. */
export const shardsFaultWorkloads: readonly RealWorkloadName[] = ['register', 'kv'];
/**
 * The workloads whose `shards` fault splits shards too: the register's checks need no single
 * revision sequence (the kv workload's revision checker and its two-key txns do: each shard counts
 * its own revisions, and a Txn across shards is refused), so the kv workload's fault only moves.
 */
export const shardsSplitWorkloads: readonly RealWorkloadName[] = ['register'];

export async function runReal(options: RealRunOptions): Promise<RealRunOutcome> {
  const problem = shardsFaultProblem(options);
  if (problem !== undefined) throw new TypeError(problem);
  const log = options.log ?? (() => undefined);
  const startedAt = new Date().toISOString();
  const cluster = await RealCluster.start({
    target: options.target,
    nodes: options.nodes,
    dir: join(options.outDir, 'cluster'),
    etcdBin: options.etcdBin,
    token: `jepsen-${options.seed}`,
    log,
    unsafeStaleReads: options.unsafeStaleReads,
    unsafeIgnoreTxnCompare: options.unsafeIgnoreTxnCompare,
  });
  options.onCluster?.(cluster);
  try {
    return await runOnCluster(options, cluster, startedAt);
  } finally {
    await cluster.stop();
  }
}

/** What the clients recorded. */
interface Recorded {
  readonly operations: Operation[];
  readonly watches: WatchRecord[];
  /** Faults the clients injected into themselves (the lock workload's holder pauses, the election's leader pauses). */
  readonly clientFaults: FaultWindow[];
  /** The election workload's Observe streams. */
  readonly observers?: ObserverSegment[];
  /** The lock workload's holder pauses (SIGSTOP … SIGCONT of a holder's process). */
  readonly holderPauses?: HolderPause[];
  /** The lock workload's client processes. */
  readonly pids?: number[];
}

interface Clients {
  /** Starts what takes a while before the run's clock runs (the lock workload's processes). */
  prepare?(signal: AbortSignal): Promise<void>;
  run(signal: AbortSignal): Promise<Recorded>;
  /** When the nemesis's server faults may start (ms since the run began); absent: at once. */
  readonly faultsFrom?: Promise<number>;
}

/** The clients of `options.workload`. */
function clientsFor(options: RealRunOptions, cluster: RealCluster, clock: RunClock, onOperation: (op: Operation) => void): Clients {
  const now = clock.now;
  const random = new SeededPrng(options.seed);
  const draw = (): number => random.nextFloat();
  if (options.workload === 'lock') {
    const plan = planHolderPauses({ seed: options.seed, runMs: options.timeMs, leaseTtlMs: 1000 * leaseTtlSecondsRequested });
    // A holder pause is a client's fault, not the cluster's: it may run into the healed tail, as
    // long as the paused holder has time to write once continued.
    const pauses = new HolderPauses(plan, options.timeMs - holderPauseEndMarginMs);
    const clients = new LockClients({ cluster, target: options.target, keyPrefix, clients: options.clients, pauses, clockOrigin: () => clock.origin, now, onOperation, log: options.log });
    options.onClientProcesses?.(clients);
    return {
      prepare: (signal) => clients.spawn(signal),
      run: async (signal) => {
        const recorded = await clients.run(signal);
        return { operations: recorded.operations, watches: [], clientFaults: recorded.pauses, holderPauses: recorded.holderPauses, pids: recorded.pids };
      },
      // Server faults wait until a holder has been paused on a healthy cluster (or until
      // faultsWaitForHolderPauseMsMax if no holder was paused by then: a cluster slow to start).
      faultsFrom: Promise.race([
        pauses.firstEnd.then((at) => at + faultsAfterFirstHolderPauseMs),
        new Promise<number>((resolve) => setTimeout(() => resolve(faultsWaitForHolderPauseMsMax), faultsWaitForHolderPauseMsMax).unref()),
      ]),
    };
  }
  if (options.workload === 'election') {
    const clients = new ElectionClients({ cluster, keyPrefix, candidates: options.clients, observers: electionObservers, seed: options.seed, now, onOperation, log: options.log });
    return {
      run: async (signal) => {
        const recorded = await clients.run(signal);
        return { operations: recorded.operations, watches: [], clientFaults: recorded.pauses, observers: recorded.observers };
      },
    };
  }
  const workload: ClientWorkload =
    options.workload === 'counter'
      ? counterWorkload(new CounterGenerator(draw), keyPrefix)
      : etcdWorkload(new Generator(options.workload, draw, { keyPrefix }), keyPrefix);
  const pool = new ClientPool({ cluster, auth: options.auth === true ? { ...clientUser, shared: { token: undefined } } : undefined, workload, keyPrefix, clients: options.clients, watchersPerNode: options.workload === 'watch' ? (options.watchersPerNode ?? watchersPerNodeDefault) : 0, now, onOperation });
  return {
    run: async (signal) => {
      const recorded = await pool.run(signal);
      return { ...recorded, clientFaults: [] };
    },
  };
}

/** The ops the linearizability model checks (the lock workload's unfenced writes are not the lock model's). */
function modelOperations(model: ModelName, operations: readonly Operation[]): Operation[] {
  if (model !== 'lock') return [...operations];
  return operations.filter((op) => (op.input as { f?: unknown }).f !== 'unfenced-write');
}

async function runOnCluster(options: RealRunOptions, cluster: RealCluster, startedAt: string): Promise<RealRunOutcome> {
  const log = options.log ?? (() => undefined);
  // One clock for the harness and every client process (`clock.ts`).
  const clock = new RunClock();
  const now = clock.now;
  const counts: OperationCounts = { ok: 0, fail: 0, info: 0 };

  const stop = new AbortController();
  const outer = options.signal;
  const abort = (): void => stop.abort();
  outer?.addEventListener('abort', abort, { once: true });
  if (options.auth === true) {
    await setUpAuth(cluster.endpoint(await cluster.waitForLeader(leaderWaitMs)), keyPrefix);
    log('auth enabled: the clients call as a user who may read and write only the run\'s keys');
  }
  let runStore: RunStore | undefined;
  if (options.faults.includes('shards')) {
    const replicas = options.nodes - 1;
    const splits = shardsSplitWorkloads.includes(options.workload);
    // The keys the clients' generator uses (a generator's keys do not depend on its draws).
    const splitKeys = splits ? new Generator(options.workload as WorkloadName, () => 0, { keyPrefix }).keys.map((key) => etcdKey(keyPrefix, key)) : [];
    const created = await RunStore.create(cluster, new TextEncoder().encode(keyPrefix), replicas, splitKeys);
    runStore = created.store;
    log(`the run's keys live in store ${runStoreName} (prefix ${keyPrefix}): shard ${created.shard}, ${replicas} replicas; the shards fault moves their replicas${splits ? ` and splits them (up to ${runStoreShardsMax} shards)` : ''}`);
  }
  const clients = clientsFor(options, cluster, clock, (op) => counts[op.status]++);
  try {
    await clients.prepare?.(stop.signal);
  } catch (error) {
    outer?.removeEventListener('abort', abort);
    throw error;
  }
  clock.restart();
  const runTimer = setTimeout(abort, options.timeMs);
  const progress = setInterval(() => options.onProgress?.(now(), counts), progressIntervalMs);

  const plan = planFaults({ seed: options.seed, faults: options.faults, runMs: options.timeMs, nodes: options.nodes });
  const healedFrom = Math.floor(options.timeMs * (1 - healedTailFraction));
  const nemesis = new Nemesis({ plan, cluster, now, log, ...(runStore === undefined ? {} : { shards: (pick, leader) => runStore.fault(pick, leader) }), ...(clients.faultsFrom === undefined ? {} : { startFrom: clients.faultsFrom, endByMs: healedFrom }) });
  let recorded: Recorded;
  try {
    const [, fromClients] = await Promise.all([nemesis.run(stop.signal), clients.run(stop.signal)]);
    recorded = fromClients;
  } finally {
    clearTimeout(runTimer);
    clearInterval(progress);
    outer?.removeEventListener('abort', abort);
    await nemesis.healAll();
  }
  const durationMs = now();
  options.onProgress?.(durationMs, counts);
  const interrupted = outer?.aborted === true;

  let watchHistory: WatchHistory | undefined;
  let committedError: string | undefined;
  try {
    // The run store's history is read shard by shard, each where it has a replica.
    watchHistory =
      runStore !== undefined
        ? await runStore.readHistory(leaderWaitMs)
        : await readCommittedHistory(cluster.endpoint(await cluster.waitForLeader(leaderWaitMs)), undefined, options.auth === true ? rootUser : undefined);
  } catch (error) {
    committedError = (error as Error).message;
    log(`could not read the committed history: ${committedError}`);
  }
  let replicas: ReplicaCheck | undefined;
  if (runStore !== undefined) {
    try {
      replicas = await runStore.compareReplicas();
    } catch (error) {
      replicas = { shards: 0, compared: 0, diverged: 0, unsettled: 1, problems: [`the replicas were not compared: ${(error as Error).message}`] };
    }
  }

  const model: ModelName = realModelOf(options.workload);
  // The election's campaigns, proclaims and resigns are the lock model's acquires, fenced writes and releases.
  const modelOps = options.workload === 'election' ? electionLockOperations(recorded.operations) : modelOperations(model, recorded.operations);
  const elleModel = isWorkloadName(options.workload) ? elleModelOf(options.workload) : undefined;
  // etcd's revisions decide a kv history against the committed one. The search is the fallback,
  // except for the transactional workloads, whose own checker (Elle) never needs one.
  const linearizability =
    (model === 'kv' && watchHistory !== undefined ? checkKvByRevision(modelOps, watchHistory, keyPrefix) : undefined) ??
    (elleModel !== undefined ? undefined : checkLinearizability(model, modelOps, { timeBudgetMs: options.checkTimeBudgetMs ?? checkTimeBudgetMsDefault }));
  const txn = elleModel === undefined ? undefined : checkElle(elleModel, elleTxnsOf(elleModel, recorded.operations));
  const watches = recorded.watches;
  // Without the committed history the streams can still be checked against each other.
  const watch = watches.length === 0 ? undefined : watchHistory !== undefined ? checkWatches(watchHistory, watches) : checkAgreement(watches);
  // The lock and election workloads' writes are checked against the committed history by their own checks.
  const acknowledged =
    watchHistory === undefined || options.workload === 'lock' || options.workload === 'election' ? undefined : checkAcknowledgedWrites(recorded.operations, watchHistory, keyPrefix);
  const fencing =
    options.workload !== 'lock'
      ? undefined
      : checkFencing(recorded.operations, {
          pauses: recorded.holderPauses ?? [],
          ...(watchHistory === undefined ? {} : { committed: { history: watchHistory, resourceKey: lockKeys(keyPrefix).resource } }),
        });

  const election =
    options.workload !== 'election'
      ? undefined
      : checkElection(recorded.operations, recorded.observers ?? [], {
          ...(watchHistory === undefined ? {} : { committed: { history: watchHistory, prefix: electionKeys(keyPrefix).prefix } }),
          // DKV's Observe sends every change of leader or value; etcd's recipe may skip a short term.
          observeComplete: options.target === 'dkv',
        });

  const faults: FaultWindow[] = [...nemesis.windows, ...recorded.clientFaults].sort((a, b) => a.start - b.start);
  const verdict = combineVerdict(linearizability?.verdict, watch, acknowledged, committedError, fencing, election, txn, replicas);
  const info: RunInfo = {
    mode: 'real',
    target: options.target,
    workload: options.workload,
    model: elleModel ?? model,
    seed: options.seed,
    nodes: cluster.members.map((m) => m.name),
    startedAt,
    durationMs,
    command: options.command,
  };
  const history: RunHistory = {
    operations: recorded.operations,
    faults,
    ...(watches.length > 0 ? { watches } : {}),
    // The election's check reads it too: kept so that a violation's revisions can be looked up.
    ...(watchHistory !== undefined && (watches.length > 0 || recorded.observers !== undefined) ? { watchHistory } : {}),
    ...(recorded.observers !== undefined ? { observers: recorded.observers } : {}),
  };
  const results: RunResults = {
    verdict,
    ...(linearizability === undefined
      ? {}
      : {
          linearizability: {
            model: linearizability.model,
            ...(linearizability.method === undefined ? {} : { method: linearizability.method }),
            verdict: linearizability.verdict,
            partitions: linearizability.partitions,
            elapsedMs: linearizability.elapsedMs,
            operations: linearizability.operations,
          },
        }),
    ...(txn === undefined ? {} : { txn }),
    ...(watch !== undefined
      ? {
          watch: {
            ...watch,
            streams: watches.length,
            events: watches.reduce((sum, w) => sum + w.responses.reduce((n, r) => n + (r.kind === 'events' ? r.events.length : 0), 0), 0),
          },
        }
      : {}),
    ...(fencing !== undefined ? { fencing } : {}),
    ...(election !== undefined ? { election } : {}),
    ...(replicas !== undefined ? { replicas } : {}),
    stats: {
      operations: recorded.operations.length,
      ok: counts.ok,
      fail: counts.fail,
      info: counts.info,
      faults: faults.length,
      ...Object.fromEntries(['partition', 'kill', 'pause', 'delay', 'membership', 'shards', 'holder-pause', 'leader-pause'].map((k) => [`faults.${k}`, faults.filter((f) => f.kind === k).length])),
      ...(fencing !== undefined ? fencingStats(fencing) : {}),
      ...(election !== undefined ? electionStats(election) : {}),
      ...(watches.length > 0 ? watchStats(watches, cluster.members.map((m) => m.name)) : {}),
      committedRevisions: watchHistory?.revisions.length ?? 0,
      acknowledgedWritesChecked: acknowledged?.checked ?? 0,
      acknowledgedWritesMissing: acknowledged?.missing ?? 0,
      ...(replicas === undefined ? {} : { 'shards.atEnd': replicas.shards, 'shards.replicasCompared': replicas.compared, 'shards.replicasDiverged': replicas.diverged, 'shards.replicasUnsettled': replicas.unsettled }),
      proxyConnections: cluster.proxies.stats.accepted,
      proxyUnidentified: cluster.proxies.stats.unidentified,
      proxyVanished: cluster.proxies.stats.vanished,
      proxyCuts: cluster.proxies.stats.cut,
    },
  };
  return {
    info,
    history,
    results,
    ...(linearizability === undefined ? {} : { linearizability }),
    ...(txn === undefined ? {} : { txn }),
    ...(watch !== undefined ? { watch } : {}),
    ...(acknowledged !== undefined ? { acknowledged } : {}),
    ...(fencing !== undefined ? { fencing } : {}),
    ...(election !== undefined ? { election } : {}),
    ...(committedError !== undefined ? { committedError } : {}),
    ...(recorded.pids !== undefined ? { clientPids: recorded.pids } : {}),
    interrupted,
  };
}

/** The fencing check's numbers, flat, for the stats table. */
export function fencingStats(fencing: FencingResult): Record<string, number> {
  return {
    'lock.fencedAccepted': fencing.fenced.accepted,
    'lock.fencedRefusedStale': fencing.fenced.refusedStale,
    'lock.fencedRefusedOther': fencing.fenced.refusedOther,
    'lock.fencedUnknown': fencing.fenced.unknown,
    'lock.fencedCommitted': fencing.fenced.committed,
    'lock.fenceViolations': fencing.violations.length + fencing.omitted,
    'lock.unfencedWrites': fencing.unfenced.acknowledged,
    'lock.holders': fencing.unfenced.holders,
    'lock.leaseOnlyOverlaps': fencing.unfenced.overlaps,
    'lock.leaseOnlyInterleavings': fencing.unfenced.interleavings,
    'lock.pauses': fencing.pauses.length,
    'lock.pausesStopped': fencing.pauses.filter((p) => p.stopped).length,
    'lock.pausesTakenOver': fencing.pauses.filter((p) => p.takenOverBy.length > 0).length,
    'lock.pausedFencedAccepted': fencing.pauses.reduce((n, p) => n + p.fencedAfter.accepted, 0),
    'lock.pausedFencedRefusedStale': fencing.pauses.reduce((n, p) => n + p.fencedAfter.refusedStale, 0),
    'lock.pausedLeaseOnlyWrites': fencing.pauses.reduce((n, p) => n + p.unfencedAfter.acknowledged, 0),
    'lock.pausedLeaseOnlyOverlapping': fencing.pauses.reduce((n, p) => n + p.unfencedAfter.overlapping, 0),
  };
}

/** The election check's numbers, flat, for the stats table (per observer: `election.o<i>.…`). */
export function electionStats(election: ElectionResult): Record<string, number> {
  const { stats } = election;
  const flat: Record<string, number> = {
    'election.campaigns': stats.campaigns,
    'election.campaignsWon': stats.campaignsWon,
    'election.proclaims': stats.proclaims,
    'election.proclaimsAcknowledged': stats.proclaimsAcknowledged,
    'election.proclaimsRefused': stats.proclaimsRefused,
    'election.resigns': stats.resigns,
    'election.resignsAcknowledged': stats.resignsAcknowledged,
    'election.leaders': stats.leaders,
    'election.leaderChanges': stats.leaderChanges,
    'election.states': stats.states,
    'election.eventsChecked': stats.eventsChecked,
    'election.violations': election.violations.length + election.omitted,
  };
  for (const o of stats.observers) {
    flat[`election.o${o.observer}.streams`] = o.segments;
    flat[`election.o${o.observer}.leaderChanges`] = o.leaderChanges;
    flat[`election.o${o.observer}.skipped`] = o.skipped;
  }
  return flat;
}

/** Any violation wins; then anything unchecked makes it unknown. */
export function combineVerdict(
  linearizability: RunVerdict | undefined,
  watch: CheckResult | undefined,
  acknowledged: AcknowledgedCheck | undefined,
  committedError: string | undefined,
  fencing?: FencingResult,
  election?: ElectionResult,
  txn?: ElleResult,
  replicas?: ReplicaCheck,
): RunVerdict {
  if (
    linearizability === 'violation' ||
    (replicas?.diverged ?? 0) > 0 ||
    txn?.verdict === 'violation' ||
    watch?.ok === false ||
    (acknowledged?.missing ?? 0) > 0 ||
    fencing?.ok === false ||
    election?.ok === false
  ) {
    return 'violation';
  }
  if (linearizability === 'unknown' || committedError !== undefined || (replicas?.unsettled ?? 0) > 0) return 'unknown';
  return 'ok';
}
