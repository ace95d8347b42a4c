/**
 * The sim-mode nemesis: fault windows drawn from the seed, in independent lanes so faults
 * of different sorts overlap —
 *
 * - network:  partitions (majority | minority), bridge, ring, isolating the leader;
 * - process:  crash then restart (unsynced writes are lost), pause then resume;
 * - link:     message loss, long delays, duplication, reordering (wide random delays);
 * - transfer: leader transfers, as an operator's or a rolling upgrade's MoveLeader asks them: the
 *             current leader of a drawn group (any group the cluster runs now) is asked to hand
 *             leadership to a drawn other voter; when the window ends the nemesis looks whether
 *             the group's leader changed. Its draws come from a generator of its own, forked from
 *             the seed, so the other lanes' draws for a seed do not depend on whether it is on.
 *
 * - storage:  every node's disk: slow writes, failed writes (the process exits and its supervisor
 *             restarts it), crashes that lose what was in flight or only in the page cache, and
 *             crashes between a durable write and the messages that promise it (see ../disk.ts).
 *
 * Each lane waits a drawn gap, opens a window of a drawn kind and length, closes it, and so on
 * until the fault phase ends; every window is recorded as a FaultWindow. `--swarm` draws, per
 * seed, which kinds are on and the lanes' rates (swarm testing: a seed that leaves a fault out
 * reaches states the full mix hides).
 */
import { SeededPrng } from '../../../raft/index.js';
import type { FaultWindow } from '../../history.js';
import type { SimCluster } from '../cluster.js';
import { NO_STORAGE_FAULTS, type StorageFaults } from '../disk.js';
import { type NetworkParams, QUIET_NETWORK } from '../network.js';

export const networkFaultKinds = ['partition', 'bridge', 'ring', 'isolate-leader'] as const;
export const processFaultKinds = ['crash', 'pause'] as const;
export const linkFaultKinds = ['drop', 'delay', 'duplicate', 'reorder'] as const;
export const transferFaultKinds = ['transfer'] as const;
export type NetworkFaultKind = (typeof networkFaultKinds)[number];
export type ProcessFaultKind = (typeof processFaultKinds)[number];
export type LinkFaultKind = (typeof linkFaultKinds)[number];
export type TransferFaultKind = (typeof transferFaultKinds)[number];
export type SimFaultKind = NetworkFaultKind | ProcessFaultKind | LinkFaultKind | TransferFaultKind;
/** The kinds whose draws (swarm plans, lanes) come from the nemesis's shared generator. */
const sharedDrawKinds: readonly SimFaultKind[] = [...networkFaultKinds, ...processFaultKinds, ...linkFaultKinds];
export const simFaultKinds: readonly SimFaultKind[] = [...sharedDrawKinds, ...transferFaultKinds];

type LaneName = 'network' | 'process' | 'link' | 'transfer';
const laneNames: readonly LaneName[] = ['network', 'process', 'link', 'transfer'];

export interface LaneParams {
  /** Quiet time between two windows of the lane, uniform in [min, max] simulated ms. */
  readonly gapMsMin: number;
  readonly gapMsMax: number;
  /** A window's length, uniform in [min, max]. */
  readonly windowMsMin: number;
  readonly windowMsMax: number;
}

export interface FaultPlan {
  /** The kinds this run may inject (a lane with none stays quiet). */
  readonly kinds: readonly SimFaultKind[];
  readonly network: LaneParams;
  readonly process: LaneParams;
  readonly link: LaneParams;
  /** Leader transfers: the gap before each, and how long the nemesis waits before it looks whether the leader changed. */
  readonly transfer: LaneParams;
  /** Link faults' strength. */
  readonly dropRate: number;
  readonly duplicateRate: number;
  readonly delayMaxMs: number;
  readonly reorderDelayMaxMs: number;
  /** Percent of process faults aimed at the current leader (the rest at a random node). */
  readonly leaderTargetPercent: number;
  /** The nodes' disks. */
  readonly storage: StorageFaults;
}

/** Moderate disk faults: what the plan without --swarm runs with. */
export const DEFAULT_STORAGE_FAULTS: StorageFaults = Object.freeze({
  slowWriteRate: 0.02,
  slowWriteMs: 300,
  failWriteRate: 0.0005,
  inFlightKeptRate: 0.5,
  powerLossRate: 0.5,
  callbackDelayMsMax: 5,
});

/** The plan without --swarm: every kind, moderate rates. */
export const DEFAULT_FAULT_PLAN: FaultPlan = Object.freeze({
  kinds: simFaultKinds,
  network: { gapMsMin: 300, gapMsMax: 1500, windowMsMin: 500, windowMsMax: 3000 },
  process: { gapMsMin: 500, gapMsMax: 2500, windowMsMin: 300, windowMsMax: 2500 },
  link: { gapMsMin: 300, gapMsMax: 2000, windowMsMin: 300, windowMsMax: 2000 },
  // A transfer whose transferee is caught up and reachable finishes in a few round trips; Raft
  // abandons one that has not within an election timeout (1000 ms in the jepsen cluster).
  transfer: { gapMsMin: 200, gapMsMax: 1200, windowMsMin: 300, windowMsMax: 1500 },
  dropRate: 0.1,
  duplicateRate: 0.1,
  delayMaxMs: 150,
  reorderDelayMaxMs: 40,
  leaderTargetPercent: 50,
  storage: DEFAULT_STORAGE_FAULTS,
});

/** Swarm draws: the choices each parameter is drawn from. */
const swarmGapsMs = [[100, 600], [300, 1500], [1000, 4000]] as const;
const swarmWindowsMs = [[100, 800], [500, 3000], [2000, 6000]] as const;
const swarmDropRates = [0.02, 0.1, 0.3] as const;
const swarmDuplicateRates = [0.02, 0.1, 0.3] as const;
const swarmDelaysMaxMs = [50, 150, 400] as const;
const swarmReorderDelaysMaxMs = [10, 40, 100] as const;
const swarmLeaderTargetPercents = [0, 50, 100] as const;
const swarmSlowWriteRates = [0, 0.02, 0.1] as const;
const swarmSlowWritesMs = [50, 300, 1500] as const;
const swarmFailWriteRates = [0, 0, 0.0005, 0.002] as const;
const swarmFractions = [0, 0.5, 1] as const;
const swarmCallbackDelaysMsMax = [0, 5, 20] as const;
/** Percent chance each kind is on in a swarm seed (at least one always is). */
const swarmKindOnPercent = 50;
/**
 * Salts of the seed for the transfer lane's own generators, its swarm draws and its windows'
 * draws: the other kinds' draws, from the shared generators, do not depend on it.
 */
const transferPlanSalt = 0x7452;
const transferLaneSalt = 0x544c;

function pickFrom<T>(random: SeededPrng, choices: readonly T[]): T {
  return choices[random.nextInt(choices.length)]!;
}

function swarmLane(random: SeededPrng): LaneParams {
  const [gapMsMin, gapMsMax] = pickFrom(random, swarmGapsMs);
  const [windowMsMin, windowMsMax] = pickFrom(random, swarmWindowsMs);
  return { gapMsMin, gapMsMax, windowMsMin, windowMsMax };
}

/** The fault plan of a seed: the default, or with `swarm` one drawn from the seed. */
export function faultPlanFor(seed: number, swarm: boolean): FaultPlan {
  if (!swarm) return DEFAULT_FAULT_PLAN;
  const random = new SeededPrng(seed ^ 0x5a4d);
  let kinds = sharedDrawKinds.filter(() => random.nextInt(100) < swarmKindOnPercent);
  if (kinds.length === 0) kinds = [pickFrom(random, sharedDrawKinds)];
  const transferRandom = new SeededPrng(seed ^ transferPlanSalt);
  if (transferRandom.nextInt(100) < swarmKindOnPercent) kinds = [...kinds, 'transfer'];
  return {
    kinds,
    network: swarmLane(random),
    process: swarmLane(random),
    link: swarmLane(random),
    transfer: swarmLane(transferRandom),
    dropRate: pickFrom(random, swarmDropRates),
    duplicateRate: pickFrom(random, swarmDuplicateRates),
    delayMaxMs: pickFrom(random, swarmDelaysMaxMs),
    reorderDelayMaxMs: pickFrom(random, swarmReorderDelaysMaxMs),
    leaderTargetPercent: pickFrom(random, swarmLeaderTargetPercents),
    storage: swarmStorage(random),
  };
}

/** A seed's disks: quiet half the time, otherwise drawn. */
function swarmStorage(random: SeededPrng): StorageFaults {
  const quiet = random.nextInt(2) === 0;
  const drawn: StorageFaults = {
    slowWriteRate: pickFrom(random, swarmSlowWriteRates),
    slowWriteMs: pickFrom(random, swarmSlowWritesMs),
    failWriteRate: pickFrom(random, swarmFailWriteRates),
    inFlightKeptRate: pickFrom(random, swarmFractions),
    powerLossRate: pickFrom(random, swarmFractions),
    callbackDelayMsMax: pickFrom(random, swarmCallbackDelaysMsMax),
  };
  return quiet ? NO_STORAGE_FAULTS : drawn;
}

export function describePlan(plan: FaultPlan): string {
  const lane = (l: LaneParams): string => `gap ${l.gapMsMin}-${l.gapMsMax} ms, window ${l.windowMsMin}-${l.windowMsMax} ms`;
  return (
    `faults ${plan.kinds.join(',')}; network ${lane(plan.network)}; process ${lane(plan.process)}; link ${lane(plan.link)}; transfer ${lane(plan.transfer)}; ` +
    `drop ${plan.dropRate}, duplicate ${plan.duplicateRate}, delay ≤${plan.delayMaxMs} ms, reorder ≤${plan.reorderDelayMaxMs} ms, ` +
    `${plan.leaderTargetPercent}% at the leader; disks: ${describeStorage(plan.storage)}`
  );
}

function describeStorage(s: StorageFaults): string {
  if (s.slowWriteRate === 0 && s.failWriteRate === 0 && s.inFlightKeptRate === 0 && s.callbackDelayMsMax === 0) return 'quiet';
  return `slow ${s.slowWriteRate} (${s.slowWriteMs} ms), fail ${s.failWriteRate}, in-flight kept ${s.inFlightKeptRate}, power loss ${s.powerLossRate}, callbacks ≤${s.callbackDelayMsMax} ms late`;
}

/** What the nemesis needs from the run beyond the cluster (clients hear of crashes). */
export interface NemesisHooks {
  crash(node: number): void;
  restart(node: number): void;
}

interface OpenWindow {
  readonly kind: SimFaultKind;
  readonly start: number;
  readonly description: string;
  readonly undo: () => void;
  /** What came of the fault, looked at when its window closes and added to its description. */
  readonly outcome?: () => string;
}

/** Leader transfers the nemesis asked for, and what came of them. */
export interface TransferCounts {
  /** Transfers asked of a group's leader. */
  requested: number;
  /** Of those: when the window closed the group had another leader, in a later term. */
  changedLeader: number;
  /** Of those: the new leader was the transferee asked for. */
  toTransferee: number;
}

/** A run's stats of its transfers (flat, as reports keep stats). */
export function transferStats(counts: TransferCounts): { transfers: number; transfersChangedLeader: number; transfersToTransferee: number } {
  return { transfers: counts.requested, transfersChangedLeader: counts.changedLeader, transfersToTransferee: counts.toTransferee };
}

const name = (id: number): string => `n${id}`;

/** Injects a plan's faults into a cluster during [0, until) and records their windows. */
export class Nemesis {
  readonly windows: FaultWindow[] = [];
  readonly transfers: TransferCounts = { requested: 0, changedLeader: 0, toTransferee: 0 };
  /**
   * When the last transfer was asked for (-1: none). Raft gives a transfer up to an election
   * timeout; until then its leader refuses proposals, so the fault may outlive its window and
   * the heal.
   */
  lastTransferAt = -1;
  private readonly open = new Map<LaneName, OpenWindow>();
  private over = false;
  /** The transfer lane's draws: forked from the seed, so the shared generator's draws are the other lanes' alone. */
  private readonly transferRandom: SeededPrng;

  constructor(
    private readonly cluster: SimCluster,
    private readonly plan: FaultPlan,
    private readonly random: SeededPrng,
    private readonly hooks: NemesisHooks,
  ) {
    this.transferRandom = new SeededPrng(cluster.options.seed ^ transferLaneSalt);
  }

  /** Schedules the lanes; faults start only before `untilMs`. */
  start(untilMs: number): void {
    this.lane('network', this.plan.network, networkFaultKinds, untilMs, this.random);
    this.lane('process', this.plan.process, processFaultKinds, untilMs, this.random);
    this.lane('link', this.plan.link, linkFaultKinds, untilMs, this.random);
    this.lane('transfer', this.plan.transfer, transferFaultKinds, untilMs, this.transferRandom);
  }

  private lane<K extends SimFaultKind>(lane: LaneName, params: LaneParams, all: readonly K[], untilMs: number, random: SeededPrng): void {
    const kinds = all.filter((k) => this.plan.kinds.includes(k));
    if (kinds.length === 0) return;
    const c = this.cluster;
    const between = (min: number, max: number): number => min + random.nextInt(max - min + 1);
    const next = (): void => {
      if (this.over || c.now >= untilMs) return;
      const kind = pickFrom(random, kinds);
      const window = this.inject(kind);
      if (window === undefined) {
        c.at(between(params.gapMsMin, params.gapMsMax), `nemesis ${lane}`, next);
        return;
      }
      this.open.set(lane, window);
      c.at(between(params.windowMsMin, params.windowMsMax), `nemesis ${lane} end`, () => {
        if (this.open.get(lane) !== window) return;
        this.close(lane);
        c.at(between(params.gapMsMin, params.gapMsMax), `nemesis ${lane}`, next);
      });
    };
    c.at(between(params.gapMsMin, params.gapMsMax), `nemesis ${lane}`, next);
  }

  private close(lane: LaneName): void {
    const window = this.open.get(lane);
    if (window === undefined) return;
    this.open.delete(lane);
    window.undo();
    const outcome = window.outcome?.();
    const description = outcome === undefined ? window.description : `${window.description}: ${outcome}`;
    this.windows.push({ kind: window.kind, start: window.start, end: this.cluster.now, description });
  }

  /** Ends every open window and heals everything: network, links, disks, crashed and paused nodes. */
  healAll(): void {
    this.over = true;
    for (const lane of laneNames) this.close(lane);
    const c = this.cluster;
    c.network.heal();
    c.network.params = QUIET_NETWORK;
    c.healStorage();
    for (const node of c.nodes.values()) {
      if (node.paused) c.resume(node.id);
      if (node.status === 'down') this.hooks.restart(node.id);
    }
    this.windows.sort((a, b) => a.start - b.start || a.kind.localeCompare(b.kind));
  }

  private ids(): number[] {
    return [...this.cluster.nodes.keys()].sort((a, b) => a - b);
  }

  private shuffled(): number[] {
    const ids = this.ids();
    for (let i = ids.length - 1; i > 0; i--) {
      const j = this.random.nextInt(i + 1);
      [ids[i], ids[j]] = [ids[j]!, ids[i]!];
    }
    return ids;
  }

  private window(kind: SimFaultKind, description: string, undo: () => void): OpenWindow {
    this.cluster.record(`fault ${kind}: ${description}`);
    return { kind, start: this.cluster.now, description, undo };
  }

  private inject(kind: SimFaultKind): OpenWindow | undefined {
    switch (kind) {
      case 'partition':
      case 'bridge':
      case 'ring':
      case 'isolate-leader':
        return this.injectNetwork(kind);
      case 'crash':
      case 'pause':
        return this.injectProcess(kind);
      case 'drop':
      case 'delay':
      case 'duplicate':
      case 'reorder':
        return this.injectLink(kind);
      case 'transfer':
        return this.injectTransfer();
    }
  }

  /**
   * Asks the leader of a drawn group to hand leadership to a drawn other voter of its
   * configuration. Nothing (the lane waits a gap and draws again) when the group has no leader,
   * its leader is paused (a MoveLeader to a stopped process only hangs), or it has no other voter.
   */
  private injectTransfer(): OpenWindow | undefined {
    const c = this.cluster;
    const groups = c.groups();
    if (groups.length === 0) return undefined;
    const shard = pickFrom(this.transferRandom, groups);
    const leader = c.leader(shard);
    if (leader === undefined || leader.paused) return undefined;
    const raft = leader.runtime!.rawNode(shard).raft;
    const term = raft.term;
    const voters = raft.tracker.voterIds().filter((id) => id !== leader.id).sort((a, b) => a - b);
    if (voters.length === 0) return undefined;
    const to = pickFrom(this.transferRandom, voters);
    if (c.transferLeader(leader.id, to, shard) === 'down') return undefined;
    this.transfers.requested++;
    this.lastTransferAt = c.now;
    const window = this.window('transfer', `shard ${shard}: ${name(leader.id)} (leader in term ${term}) to ${name(to)}`, () => undefined);
    return { ...window, outcome: () => this.transferOutcome(shard, leader.id, term, to) };
  }

  /** Whether the group's leader changed since the transfer was asked for (counted), as text. */
  private transferOutcome(shard: number, from: number, term: number, to: number): string {
    const leader = this.cluster.leader(shard);
    const now = leader?.runtime?.rawNode(shard).raft.term;
    if (leader === undefined || now === undefined) return 'no leader';
    if (leader.id === from || now <= term) return `${name(leader.id)} still leads (term ${now})`;
    this.transfers.changedLeader++;
    if (leader.id === to) this.transfers.toTransferee++;
    return `${name(leader.id)} leads in term ${now}`;
  }

  private injectNetwork(kind: NetworkFaultKind): OpenWindow {
    const net = this.cluster.network;
    const heal = (): void => net.heal();
    const ids = this.shuffled();
    switch (kind) {
      case 'partition': {
        const minority = ids.slice(0, Math.floor((ids.length - 1) / 2));
        const majority = ids.slice(minority.length);
        net.partition([minority, majority]);
        return this.window(kind, `${minority.map(name).join(' ')} | ${majority.map(name).join(' ')}`, heal);
      }
      case 'bridge': {
        // Two halves that cannot talk, both still reaching the bridge node.
        const [bridge, ...others] = ids;
        const half = Math.floor(others.length / 2);
        const left = others.slice(0, half);
        const right = others.slice(half);
        net.partition([left, right]);
        return this.window(kind, `${left.map(name).join(' ')} | ${right.map(name).join(' ')} bridged by ${name(bridge!)}`, heal);
      }
      case 'ring': {
        // Each node reaches only its two neighbours in a random ring.
        for (let i = 0; i < ids.length; i++) {
          for (let j = 0; j < ids.length; j++) {
            const distance = Math.min(Math.abs(i - j), ids.length - Math.abs(i - j));
            if (distance > 1) net.cutLink(ids[i]!, ids[j]!);
          }
        }
        return this.window(kind, `ring ${ids.map(name).join('-')}-${name(ids[0]!)}`, heal);
      }
      case 'isolate-leader': {
        const leader = this.cluster.leader()?.id ?? ids[0]!;
        net.partition([[leader], this.ids().filter((id) => id !== leader)]);
        return this.window(kind, `${name(leader)} (leader) | rest`, heal);
      }
    }
  }

  private processVictim(): number | undefined {
    const c = this.cluster;
    const leader = c.leader();
    if (leader !== undefined && !leader.paused && this.random.nextInt(100) < this.plan.leaderTargetPercent) return leader.id;
    const up = c.upNodes().filter((n) => !n.paused).map((n) => n.id);
    return up.length === 0 ? undefined : pickFrom(this.random, up);
  }

  private injectProcess(kind: ProcessFaultKind): OpenWindow | undefined {
    const victim = this.processVictim();
    if (victim === undefined) return undefined;
    const c = this.cluster;
    if (kind === 'crash') {
      this.hooks.crash(victim);
      return this.window(kind, `kill ${name(victim)}, restart at the end`, () => this.hooks.restart(victim));
    }
    c.pause(victim);
    return this.window(kind, `SIGSTOP ${name(victim)}`, () => c.resume(victim));
  }

  private injectLink(kind: LinkFaultKind): OpenWindow {
    const p = this.plan;
    const base = QUIET_NETWORK;
    let params: NetworkParams;
    let description: string;
    switch (kind) {
      case 'drop':
        params = { ...base, dropRate: p.dropRate };
        description = `drop ${p.dropRate * 100}% of messages`;
        break;
      case 'delay':
        params = { ...base, delayMinMs: Math.floor(p.delayMaxMs / 2), delayMaxMs: p.delayMaxMs };
        description = `delay messages ${Math.floor(p.delayMaxMs / 2)}-${p.delayMaxMs} ms`;
        break;
      case 'duplicate':
        params = { ...base, duplicateRate: p.duplicateRate };
        description = `duplicate ${p.duplicateRate * 100}% of messages`;
        break;
      case 'reorder':
        params = { ...base, delayMinMs: 0, delayMaxMs: p.reorderDelayMaxMs };
        description = `reorder messages (delay 0-${p.reorderDelayMaxMs} ms)`;
        break;
    }
    const c = this.cluster;
    c.network.params = params;
    return this.window(kind, description, () => {
      c.network.params = base;
    });
  }
}
