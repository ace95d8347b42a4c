/**
 * `dkv jepsen sim --workload lease`: the lease promise checked on the simulated cluster. The
 * cluster is the one every jepsen sim workload runs on (`jepsenCluster`: the meta shard and a data
 * shard composed as `dkv server` composes them, the real lease engine among them) with the same
 * nemesis and fault plans (`faultPlanFor`, `Nemesis`); lease holders (lease-holders.ts) grant,
 * attach, renew, abandon and release leases through the nodes' runtimes, with faults of their own;
 * every revocation is noted when it is first applied anywhere (from then on a read could see it);
 * and the checker (lease-check.ts) holds the history to the promise.
 *
 * Phases: set-up (a leader); faults for `durationMs` while the holders work; everything heals and
 * the holders go on for `leaseRecoveryMs`; the holders stop (their leases are left to expire);
 * the cluster runs until every replica has revoked every lease (or `leaseTailMsMax` passed); the
 * replicas must converge (same applied index and state hash) and hold no lease and no holder key.
 *
 * Clocks: each node's clock is off simulated time by a fixed offset (the simulator's clock drift
 * shows in tick periods, not in the clocks' rate) of up to half an election timeout, so any two
 * differ by at most one election timeout — the skew the lease engine's grace for a new leader
 * covers (its header). The simulator's other workloads draw offsets up to
 * `simClockOffsetMsMax` (twice as many: two clocks may differ by two election timeouts), where the
 * engine promises nothing: `unsafe.clockSkewBeyondGrace` runs with those, and the checker must
 * object (leases expire early after a leader change).
 */
import { RaftAssertionError, SeededPrng } from '../../../raft/index.js';
import { EngineId } from '../../../src/engines/index.js';
import { leaseOutcome } from '../../../src/engines/lease/index.js';
import { StateMachineHaltError, decodeEnvelope, kvEngineOf, leaseEngineOf } from '../../../src/runtime/index.js';
import type { FaultWindow } from '../../history.js';
import { type SimCluster, type SimNode, simClockOffsetMsMax } from '../cluster.js';
import { SafetyViolation } from '../safety.js';
import { type FaultPlan, Nemesis, faultPlanFor, transferStats } from './faults.js';
import { type LeaderSpan, type LeaseCheckResult, type LeaseHistory, type LeaseTimeline, checkLeases } from './lease-check.js';
import { type HolderFaultKind, LeaseHolders, holderFaultKinds, leaseTtlSecondsChoices } from './lease-holders.js';
import { awaitLeader, converge, dataShard, electionTimeoutMs, jepsenCluster, jepsenNodeCounts } from './run.js';

export type LeaseSimVerdict = 'ok' | 'violation';

export interface LeaseSimOptions {
  readonly seed: number;
  /** 3 or 5. */
  readonly nodes: number;
  /** Simulated milliseconds of faults. */
  readonly durationMs: number;
  /** Draw the fault kinds and rates (the holders' too) from the seed. */
  readonly swarm: boolean;
  /** Lease holders (default `leaseHoldersDefault`). */
  readonly holders?: number;
  /** Test-only switches that break the lease promise on purpose (the checker must object). */
  readonly unsafe?: {
    /** The lease engine gives a new leader's inherited deadlines 1 ms of grace, not an election timeout. */
    readonly noLeaderGrace?: boolean;
    /** Leaders never expire leases. */
    readonly noExpiry?: boolean;
    /** Clocks off by up to the simulator's default (two clocks up to two election timeouts apart). */
    readonly clockSkewBeyondGrace?: boolean;
  };
  /** Keep a readable line per simulated event (`result.trace`). */
  readonly trace?: boolean;
}

export interface LeaseSimStats {
  readonly simulatedMs: number;
  readonly events: number;
  /** Leases granted (applied), acknowledged grants and renewals, expiries, revocations. */
  readonly leases: number;
  readonly acknowledged: number;
  readonly expired: number;
  readonly revoked: number;
  /** Holders that learned their lease was gone (a renewal answered TTL 0). */
  readonly lost: number;
  readonly crashes: number;
  readonly leadersElected: number;
  readonly snapshotsSent: number;
  readonly faultWindows: number;
  /** Leader transfers the nemesis asked for; of them, those after which the group had another leader in a later term, and those where it was the transferee. */
  readonly transfers: number;
  readonly transfersChangedLeader: number;
  readonly transfersToTransferee: number;
  /** Of expiries of acknowledged leases: the least time past the holder's belief (ms; undefined: none). */
  readonly safetyMarginMsMin: number | undefined;
  /** Leases renewed on the healed cluster (the keep-alive check's). */
  readonly keptAliveChecked: number;
  /** Leases whose liveness bound was checked, and the smallest margin to it (ms). */
  readonly livenessChecked: number;
  readonly livenessMarginMsMin: number;
  readonly traceHash: number;
}

export interface LeaseSimResult {
  readonly options: LeaseSimOptions;
  readonly plan: FaultPlan;
  readonly holderFaults: readonly HolderFaultKind[];
  readonly verdict: LeaseSimVerdict;
  readonly failures: readonly string[];
  readonly faults: readonly FaultWindow[];
  readonly check: LeaseCheckResult;
  /** What the checker looked at. */
  readonly history: LeaseHistory;
  readonly replayCommand: string;
  readonly stats: LeaseSimStats;
  readonly trace?: readonly string[];
}

export const leaseHoldersDefault = 4;
/** After healing, the holders go on this long (simulated ms). */
export const leaseRecoveryMs = 3000;
/**
 * After the holders stop, the run waits this long at most for every lease to be revoked: the
 * longest TTL, one election timeout of grace, two clock offsets, and a second for elections.
 */
export const leaseTailMsMax = Math.max(...leaseTtlSecondsChoices) * 1000 + electionTimeoutMs + 2 * simClockOffsetMsMax + 1000;
const tailStepMs = 50;
/** Each node's clock is off by up to this much: two differ by at most one election timeout. */
export const leaseClockOffsetMsMax = electionTimeoutMs / 2;

/**
 * When the transfer asked for last can no longer hold its leader's proposals (0: none asked):
 * Raft gives a transfer up after an election timeout of that leader's ticks (the slowest node's
 * tick period, and one tick more for its phase).
 */
function transferSettledAt(nemesis: Nemesis, cluster: SimCluster, timeoutMs: number): number {
  if (nemesis.lastTransferAt < 0) return 0;
  const slowest = Math.max(...[...cluster.nodes.values()].map((node) => node.tickPeriodMs));
  return nemesis.lastTransferAt + (Math.round(timeoutMs / cluster.options.tickIntervalMs) + 1) * slowest;
}
const keyPrefix = 'jepsen-lease/';
/**
 * Often (a run applies a few dozen entries): lease tables, deadlines and the expiry wheel go
 * through snapshots and restores — a follower caught up by one, a node restarted from one.
 */
export const leaseSnapshotEveryEntries = 8;
/** Percent chance each holder fault kind is on in a swarm seed (all are on otherwise). */
const swarmHolderFaultOnPercent = 50;

export function leaseReplayCommand(options: LeaseSimOptions): string {
  const parts = ['dkv jepsen sim', `--seed ${options.seed}`, '--workload lease', `--nodes ${options.nodes}`, `--time ${options.durationMs}`];
  if (options.swarm) parts.push('--swarm');
  if (options.holders !== undefined && options.holders !== leaseHoldersDefault) parts.push(`--clients ${options.holders}`);
  if (options.unsafe?.noLeaderGrace === true) parts.push('--unsafe-no-lease-grace');
  if (options.unsafe?.noExpiry === true) parts.push('--unsafe-no-expiry');
  if (options.unsafe?.clockSkewBeyondGrace === true) parts.push('--unsafe-clock-skew');
  return parts.join(' ');
}

/** The holder fault kinds of a seed: every kind, or with `swarm` each drawn on or off. */
export function holderFaultsFor(seed: number, swarm: boolean): HolderFaultKind[] {
  if (!swarm) return [...holderFaultKinds];
  const random = new SeededPrng(seed ^ 0x1ea5e);
  return holderFaultKinds.filter(() => random.nextInt(100) < swarmHolderFaultOnPercent);
}

function validate(options: LeaseSimOptions): void {
  if (!Number.isSafeInteger(options.seed) || options.seed < 0) throw new TypeError(`seed must be a non-negative safe integer, got ${options.seed}`);
  if (!jepsenNodeCounts.includes(options.nodes)) throw new TypeError(`nodes must be 3 or 5, got ${options.nodes}`);
  if (!Number.isSafeInteger(options.durationMs) || options.durationMs < 0) throw new TypeError(`durationMs must be a non-negative integer, got ${options.durationMs}`);
  const holders = options.holders ?? leaseHoldersDefault;
  if (!Number.isSafeInteger(holders) || holders < 1) throw new TypeError(`holders must be a positive integer, got ${holders}`);
}

/** What the run observes of the nodes: leases' first applications and leaders' terms in office. */
class LeaseObserver {
  readonly timelines = new Map<string, LeaseTimeline>();
  readonly leaders: LeaderSpan[] = [];
  private readonly inOffice = new Map<number, LeaderSpan>();
  /** The highest data-shard index applied anywhere: a higher one is a first application. */
  private appliedMax = 0;
  expired = 0;
  revoked = 0;
  cluster: SimCluster | undefined;

  private timeline(id: bigint): LeaseTimeline {
    const lease = id.toString();
    let timeline = this.timelines.get(lease);
    if (timeline === undefined) this.timelines.set(lease, (timeline = { lease, deadlines: [] }));
    return timeline;
  }

  applied(node: SimNode, index: number, data: Uint8Array, outcome: unknown): void {
    if (index <= this.appliedMax) return;
    this.appliedMax = index;
    if (decodeEnvelope(data).engine !== EngineId.Lease) return;
    const now = this.cluster!.now;
    const leases = leaseEngineOf(node.machine(dataShard)!);
    const deadline = (id: bigint): void => {
      const lease = leases.get(id)!;
      this.timeline(id).deadlines.push({ at: now, index, deadlineMs: lease.deadlineMs, term: lease.deadlineTerm });
    };
    const lease = leaseOutcome(outcome);
    switch (lease.kind) {
      case 'granted':
        deadline(lease.id);
        break;
      case 'renewed':
        for (const r of lease.renewals) if (r.ttlSeconds > 0) deadline(r.id);
        break;
      case 'expired':
        for (const id of lease.revoked) this.timeline(id).revoked = { at: now, index, kind: 'expired' };
        this.expired += lease.revoked.length;
        break;
      case 'revoked':
        this.timeline(lease.id).revoked = { at: now, index, kind: 'revoked' };
        this.revoked++;
        break;
      case 'error':
        break;
    }
  }

  leaderChanged(node: number, leader: number, term: number): void {
    const open = this.inOffice.get(node);
    if (leader === node && open?.term === term) return;
    this.leaveOffice(node);
    if (leader !== node) return;
    const span: LeaderSpan = { node, term, from: this.cluster!.now };
    this.leaders.push(span);
    this.inOffice.set(node, span);
  }

  leaveOffice(node: number): void {
    const open = this.inOffice.get(node);
    if (open === undefined) return;
    open.to = this.cluster!.now;
    this.inOffice.delete(node);
  }
}

export async function runLeaseSim(options: LeaseSimOptions): Promise<LeaseSimResult> {
  validate(options);
  const plan = faultPlanFor(options.seed, options.swarm);
  const holderFaults = holderFaultsFor(options.seed, options.swarm);
  const master = new SeededPrng(options.seed);
  const holderRandom = master.fork();
  const nemesisRandom = master.fork();
  const holderFaultRandom = master.fork();
  const unsafe = options.unsafe ?? {};
  const observer = new LeaseObserver();
  const cluster = jepsenCluster({
    seed: options.seed,
    nodes: options.nodes,
    plan,
    trace: options.trace === true,
    clockOffsetMsMax: unsafe.clockSkewBeyondGrace === true ? simClockOffsetMsMax : leaseClockOffsetMsMax,
    snapshotEveryEntries: leaseSnapshotEveryEntries,
    ...(unsafe.noLeaderGrace === true ? { leaseElectionTimeoutMs: 1 } : {}),
    ...(unsafe.noExpiry === true ? { alterDataShard: (machine) => (leaseEngineOf(machine).leaderTick = () => undefined) } : {}),
    observer: {
      applied: (node, shard, outcome, entry) => {
        if (shard === dataShard) observer.applied(node, entry.index, entry.data, outcome);
      },
      leaderChanged: (node, shard, leader, term) => {
        if (shard === dataShard) observer.leaderChanged(node.id, leader, term);
      },
      crashed: (node) => observer.leaveOffice(node.id),
    },
  });
  observer.cluster = cluster;
  const holders = new LeaseHolders({
    cluster,
    shard: dataShard,
    random: holderRandom,
    faultRandom: holderFaultRandom,
    holders: options.holders ?? leaseHoldersDefault,
    keyPrefix,
    faultKinds: holderFaults,
  });
  const nemesis = new Nemesis(cluster, plan, nemesisRandom, { crash: (node) => cluster.crash(node), restart: (node) => cluster.restart(node) });

  const failures: string[] = [];
  let healedAt = 0;
  let clientsStoppedAt = 0;
  try {
    awaitLeader(cluster);
    const faultsEnd = cluster.now + options.durationMs;
    nemesis.start(faultsEnd);
    holders.startFaults(faultsEnd);
    holders.start();
    cluster.runUntil(faultsEnd);
    nemesis.healAll();
    holders.healFaults();
    healedAt = cluster.now;
    cluster.runUntil(cluster.now + leaseRecoveryMs);
    holders.stop();
    clientsStoppedAt = cluster.now;
    const tailEnd = cluster.now + leaseTailMsMax;
    while (cluster.now < tailEnd && !noLeasesLeft(cluster)) cluster.runUntil(cluster.now + tailStepMs);
    const diverged = converge(cluster);
    if (diverged !== undefined) failures.push(diverged);
    else failures.push(...leftovers(cluster));
  } catch (error) {
    if (!(error instanceof SafetyViolation || error instanceof RaftAssertionError || error instanceof StateMachineHaltError)) throw error;
    failures.push(`${error.message} (at ${cluster.now} simulated ms)`);
    nemesis.healAll();
    holders.healFaults();
  }

  const nodes = [...cluster.nodes.values()];
  const storage = plan.storage;
  const history: LeaseHistory = {
    electionTimeoutMs: unsafe.noLeaderGrace === true ? 1 : electionTimeoutMs,
    clockOffsetsMs: new Map(nodes.map((n) => [n.id, n.clockOffsetMs])),
    tickPeriodsMs: new Map(nodes.map((n) => [n.id, n.tickPeriodMs])),
    healedAt,
    // Writes begun under faults may still be slow after healing (storage faults heal for new
    // writes), and a transfer asked for under faults may still hold its leader's proposals for
    // up to an election timeout of that leader's ticks.
    settledAt: Math.max(healedAt + (storage.slowWriteRate > 0 ? storage.slowWriteMs : 0), transferSettledAt(nemesis, cluster, electionTimeoutMs)),
    clientsStoppedAt,
    endedAt: cluster.now,
    held: holders.leases,
    timelines: observer.timelines,
    requests: holders.requests,
    leaders: observer.leaders,
  };
  const check = checkLeases(history);
  failures.push(...check.failures);
  const faults = [...nemesis.windows, ...holders.windows].sort((a, b) => a.start - b.start || a.kind.localeCompare(b.kind));
  return {
    options,
    plan,
    holderFaults,
    verdict: failures.length === 0 ? 'ok' : 'violation',
    failures,
    faults,
    check,
    history,
    replayCommand: leaseReplayCommand(options),
    ...(options.trace === true ? { trace: cluster.trace } : {}),
    stats: {
      simulatedMs: cluster.now,
      events: cluster.stats.events,
      leases: observer.timelines.size,
      acknowledged: holders.requests.filter((r) => (r.kind === 'grant' || r.kind === 'renew') && r.result === 'ok').length,
      expired: observer.expired,
      revoked: observer.revoked,
      lost: [...holders.leases.values()].filter((l) => l.stopReason === 'lost').length,
      crashes: cluster.stats.crashes,
      leadersElected: cluster.checker?.leadersElected ?? 0,
      snapshotsSent: cluster.stats.snapshotsSent,
      faultWindows: faults.length,
      ...transferStats(nemesis.transfers),
      safetyMarginMsMin: check.safetyMarginMsMin,
      keptAliveChecked: check.keptAliveChecked,
      livenessChecked: check.livenessChecked,
      livenessMarginMsMin: check.livenessMarginsMs.length === 0 ? 0 : Math.min(...check.livenessMarginsMs),
      traceHash: cluster.traceHash,
    },
  };
}

function noLeasesLeft(cluster: SimCluster): boolean {
  for (const node of cluster.nodes.values()) {
    const machine = node.machine(dataShard);
    if (machine === undefined || leaseEngineOf(machine).size > 0) return false;
  }
  return true;
}

/** Once converged: no replica holds a lease or a holder's key (revoking a lease deletes its keys). */
function leftovers(cluster: SimCluster): string[] {
  const problems: string[] = [];
  for (const node of cluster.nodes.values()) {
    const machine = node.machine(dataShard)!;
    const leases = leaseEngineOf(machine);
    if (leases.size > 0) problems.push(`n${node.id} still holds ${leases.size} lease(s) at the end: ${leases.ids().join(', ')}`);
    const store = kvEngineOf(machine).mvcc;
    const prefix = Buffer.from(keyPrefix);
    const end = Buffer.from(keyPrefix);
    end[end.length - 1]!++;
    const keys = store.range({ key: prefix, rangeEnd: end }).kvs;
    if (keys.length > 0) problems.push(`n${node.id} still holds key(s) of revoked leases: ${keys.map((kv) => `${Buffer.from(kv.key).toString()} (lease ${kv.lease})`).join(', ')}`);
  }
  return problems;
}

/** A run's lease history and verdict as JSON (a failing seed's report). */
export function leaseHistoryJson(result: LeaseSimResult): string {
  const h = result.history;
  return `${JSON.stringify(
    {
      command: result.replayCommand,
      verdict: result.verdict,
      failures: result.failures,
      plan: result.plan,
      holderFaults: result.holderFaults,
      faults: result.faults,
      stats: result.stats,
      electionTimeoutMs: h.electionTimeoutMs,
      clockOffsetsMs: Object.fromEntries(h.clockOffsetsMs),
      tickPeriodsMs: Object.fromEntries(h.tickPeriodsMs),
      healedAt: h.healedAt,
      settledAt: h.settledAt,
      clientsStoppedAt: h.clientsStoppedAt,
      endedAt: h.endedAt,
      leaders: h.leaders,
      leases: [...h.held.values()].map((held) => ({ ...held, ...h.timelines.get(held.lease) })),
      requests: h.requests,
    },
    null,
    1,
  )}\n`;
}
