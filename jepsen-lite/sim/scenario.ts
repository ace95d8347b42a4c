/**
 * Randomised simulation runs: a scenario (network parameters, a fault schedule, client load, all
 * drawn by fast-check) is played against a SimCluster with every safety check on; afterwards the
 * faults are healed and a leader must emerge and commit a proposal within a bounded number of
 * ticks. A scenario is a pure function of its seed, so a failing seed replays exactly.
 */
import fc from 'fast-check';
import { type ConfChange, type ConfState, RaftAssertionError, SeededPrng, type ConfChangeSingle } from '../../raft/index.js';
import { SimCluster, SIM_DEFAULTS, type SimStats, payloadOf } from './cluster.js';
import { NO_STORAGE_FAULTS, type StorageFaults } from './disk.js';
import { type NetworkParams, QUIET_NETWORK } from './network.js';
import { SafetyViolation, type ViolationKind } from './safety.js';

export type Fault =
  /** Split the nodes in two groups (a majority and a minority). */
  | { readonly kind: 'partition'; readonly pick: number }
  /** Cut one node off from everyone. */
  | { readonly kind: 'isolate'; readonly node: number }
  /** Cut messages in one direction only. */
  | { readonly kind: 'one-way'; readonly from: number; readonly to: number }
  /** Two halves that both still reach one bridge node. */
  | { readonly kind: 'bridge'; readonly node: number }
  | { readonly kind: 'heal' }
  | { readonly kind: 'crash'; readonly node: number }
  | { readonly kind: 'restart'; readonly node: number }
  | { readonly kind: 'transfer-leader'; readonly node: number }
  /** Replace a member by a new node: joint consensus, or learner then promote then remove. */
  | { readonly kind: 'replace-node'; readonly node: number; readonly joint: boolean }
  | { readonly kind: 'network'; readonly dropRate: number; readonly duplicateRate: number; readonly delayMaxMs: number };

export interface ScheduledFault {
  readonly atTick: number;
  readonly fault: Fault;
}

/** Raft flow-control limits; tight values force one entry per message, full windows, refusals. */
export interface FlowLimits {
  readonly messageBytesMax: number;
  readonly inflightMessagesMax: number;
  readonly inflightBytesMax: number;
  readonly uncommittedEntriesBytesMax: number;
  readonly committedEntriesBytesPerReadyMax: number;
}

export const DEFAULT_FLOW: FlowLimits = Object.freeze({
  messageBytesMax: 1024 * 1024,
  inflightMessagesMax: 256,
  inflightBytesMax: 32 * 1024 * 1024,
  uncommittedEntriesBytesMax: 64 * 1024 * 1024,
  committedEntriesBytesPerReadyMax: 16 * 1024 * 1024,
});

export interface SimScenario {
  readonly seed: number;
  readonly flow: FlowLimits;
  readonly nodeCount: number;
  readonly faultPhaseTicks: number;
  readonly network: NetworkParams;
  readonly diskLatencyMaxMs: number;
  readonly clockDrift: number;
  readonly electionTicks: number;
  readonly snapshotEveryEntries: number;
  /** Readies a node may have in flight (pipelined persistence); absent in older saved scenarios: 1. */
  readonly readiesInFlightMax?: number;
  readonly proposalIntervalMs: number;
  readonly readIntervalMs: number;
  /** How leaders answer ReadIndex: a heartbeat round per batch, or a lease when one holds. */
  readonly readOnlyOption: 'safe' | 'lease-based';
  /** Faults of the nodes' disks (absent in older saved scenarios: none). */
  readonly storageFaults?: StorageFaults;
  readonly faults: readonly ScheduledFault[];
}

export interface SimRunOptions {
  readonly traceEvents?: boolean;
  /** Breaks the core on purpose (tests prove the checker catches it). */
  readonly unsafeVoteTwiceInTerm?: boolean;
  /** Breaks the runtime on purpose: acknowledgements leave before the write they promise is durable. */
  readonly unsafeAcknowledgeBeforePersist?: boolean;
  /** Overrides the scenario's read mode. */
  readonly readOnlyOption?: 'safe' | 'lease-based';
}

export interface SimResult {
  readonly scenario: SimScenario;
  readonly ok: boolean;
  readonly violation?: { readonly kind: ViolationKind; readonly message: string; readonly atMs: number };
  /** Ticks from healing to a committed proposal (undefined if not reached). */
  readonly recoveryTicks?: number;
  /** The bound recoveryTicks had to meet. */
  readonly recoveryBound?: number;
  readonly traceHash: number;
  readonly trace: readonly string[];
  readonly stats: SimStats & { readonly leadersElected: number; readonly simulatedMs: number };
}

/**
 * After the faults heal, a leader must commit a proposal on every member within this many ticks,
 * plus the time the slowest member needs to catch up its backlog (see recoveryBoundTicks).
 */
export const recoveryTicksMax = 60;

/**
 * Entries per tick a lagging member is guaranteed to catch up at under the flow limits, counting
 * sim entries as at most 64 bytes on the wire and 16 of payload, and one message round trip plus
 * one disk write per tick (a round trip after healing is at most 2 x 5 ms + 30 ms of disk).
 */
export function catchUpEntriesPerTick(flow: FlowLimits): number {
  const perMessage = Math.max(1, Math.floor(flow.messageBytesMax / 64));
  const perReady = Math.max(1, Math.floor(flow.committedEntriesBytesPerReadyMax / 16));
  return Math.max(1, Math.min(perMessage * flow.inflightMessagesMax, perReady));
}

/** The recovery bound for a backlog (entries between the longest log and the slowest apply). */
export function recoveryBoundTicks(flow: FlowLimits, backlogEntries: number): number {
  return recoveryTicksMax + Math.ceil(backlogEntries / catchUpEntriesPerTick(flow));
}
export const tickIntervalMs = 100;

const nodeRef = fc.nat({ max: 1000 });

export const faultArbitrary: fc.Arbitrary<Fault> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('partition' as const), pick: fc.nat({ max: 1000 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('isolate' as const), node: nodeRef }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('one-way' as const), from: nodeRef, to: nodeRef }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('bridge' as const), node: nodeRef }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('heal' as const) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('crash' as const), node: nodeRef }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('restart' as const), node: nodeRef }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('transfer-leader' as const), node: nodeRef }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('replace-node' as const), node: nodeRef, joint: fc.boolean() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('network' as const),
      dropRate: fc.constantFrom(0, 0.01, 0.05, 0.2),
      duplicateRate: fc.constantFrom(0, 0.02, 0.1),
      delayMaxMs: fc.constantFrom(2, 20, 150),
    }),
  },
);

/** Disk faults: none half the time; otherwise slow, failing, torn-at-crash and late-callback disks. */
export const storageFaultsArbitrary: fc.Arbitrary<StorageFaults> = fc.oneof(
  { weight: 1, arbitrary: fc.constant(NO_STORAGE_FAULTS) },
  {
    weight: 1,
    arbitrary: fc.record({
      slowWriteRate: fc.constantFrom(0, 0.01, 0.05),
      slowWriteMs: fc.constantFrom(50, 300, 1500),
      failWriteRate: fc.constantFrom(0, 0, 0.001, 0.005),
      inFlightKeptRate: fc.constantFrom(0, 0.5, 1),
      powerLossRate: fc.constantFrom(0, 0.5, 1),
      callbackDelayMsMax: fc.constantFrom(0, 2, 10),
    }),
  },
);

export const scenarioArbitrary: fc.Arbitrary<SimScenario> = fc
  .record({
    seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    flow: fc.oneof(
      { weight: 2, arbitrary: fc.constant(DEFAULT_FLOW) },
      {
        weight: 1,
        arbitrary: fc
          .record({
            messageBytesMax: fc.constantFrom(30, 100, 1000),
            inflightMessagesMax: fc.constantFrom(1, 2, 8),
            inflightBytes: fc.constantFrom(0, 1, 4),
            uncommittedEntriesBytesMax: fc.constantFrom(8, 40, 1000),
            committedEntriesBytesPerReadyMax: fc.constantFrom(1, 20, 200),
          })
          .map(({ inflightBytes, ...f }) => ({ ...f, inflightBytesMax: inflightBytes * f.messageBytesMax })),
      },
    ),
    nodeCount: fc.constantFrom(3, 3, 5),
    faultPhaseTicks: fc.integer({ min: 60, max: 300 }),
    network: fc.record({
      dropRate: fc.constantFrom(0, 0.01, 0.05),
      duplicateRate: fc.constantFrom(0, 0.02),
      delayMinMs: fc.constant(1),
      delayMaxMs: fc.constantFrom(2, 10, 60),
    }),
    diskLatencyMaxMs: fc.constantFrom(1, 5, 30),
    clockDrift: fc.constantFrom(0, 0.02, 0.1),
    electionTicks: fc.constantFrom(5, 10),
    snapshotEveryEntries: fc.constantFrom(0, 20, 100),
    readiesInFlightMax: fc.constantFrom(1, 1, 2, 4),
    proposalIntervalMs: fc.constantFrom(20, 50, 200),
    readIntervalMs: fc.constantFrom(0, 100, 400),
    readOnlyOption: fc.constantFrom('safe' as const, 'safe' as const, 'lease-based' as const),
    storageFaults: storageFaultsArbitrary,
    // Fault times are drawn in thousandths of the fault phase, then scaled to ticks.
    faults: fc.array(fc.record({ at: fc.nat({ max: 999 }), fault: faultArbitrary }), { maxLength: 24, size: 'large' }),
  })
  .map(({ faults, ...s }) => ({
    ...s,
    faults: faults
      .map(({ at, fault }) => ({ atTick: Math.floor((at * s.faultPhaseTicks) / 1000), fault }))
      .sort((a, b) => a.atTick - b.atTick),
  }));

/** The scenario of a numbered seed (as `dkv sim --seed N` replays it). */
export function scenarioForSeed(seed: number): SimScenario {
  return fc.sample(scenarioArbitrary, { seed, numRuns: 1 })[0]!;
}

const encoder = new TextEncoder();

/** Plays a scenario; never throws for a safety violation, it reports it. */
export function runScenario(scenario: SimScenario, options: SimRunOptions = {}): SimResult {
  const ids = Array.from({ length: scenario.nodeCount }, (_, i) => i + 1);
  const cluster = new SimCluster({
    ...SIM_DEFAULTS,
    seed: scenario.seed,
    nodeIds: ids,
    network: scenario.network,
    diskLatencyMinMs: 1,
    diskLatencyMaxMs: scenario.diskLatencyMaxMs,
    tickIntervalMs,
    clockDrift: scenario.clockDrift,
    raft: {
      ...(scenario.flow ?? DEFAULT_FLOW),
      electionTicks: scenario.electionTicks,
      heartbeatTicks: 1,
      preVote: true,
      checkQuorum: true,
      unsafeTestingKnobs: options.unsafeVoteTwiceInTerm === true ? { voteTwiceInTerm: true } : undefined,
      readOnlyOption: options.readOnlyOption ?? scenario.readOnlyOption ?? 'safe',
      readiesInFlightMax: scenario.readiesInFlightMax ?? 1,
    },
    snapshotEveryEntries: scenario.snapshotEveryEntries,
    snapshotKeepEntries: 5,
    // Odd seeds start (and restart) nodes as the server does, election clocks advanced.
    tickAdvance: scenario.seed % 2 === 1,
    checkSafety: true,
    traceEvents: options.traceEvents ?? false,
    storageFaults: scenario.storageFaults ?? NO_STORAGE_FAULTS,
    unsafe: { acknowledgeBeforePersist: options.unsafeAcknowledgeBeforePersist === true },
  });
  const run = new ScenarioRun(cluster, scenario);
  let violation: SimResult['violation'];
  let recoveryTicks: number | undefined;
  try {
    recoveryTicks = run.play();
  } catch (error) {
    if (error instanceof SafetyViolation) {
      violation = { kind: error.kind, message: error.message, atMs: cluster.now };
    } else if (error instanceof RaftAssertionError) {
      violation = { kind: 'assertion', message: error.message, atMs: cluster.now };
    } else {
      throw error;
    }
  }
  return {
    scenario,
    ok: violation === undefined,
    violation,
    recoveryTicks,
    recoveryBound: run.recoveryBound,
    traceHash: cluster.traceHash,
    trace: cluster.trace,
    stats: { ...cluster.stats, leadersElected: cluster.checker?.leadersElected ?? 0, simulatedMs: cluster.now },
  };
}

/** Drives one scenario: faults, client load, membership changes, then healing and liveness. */
class ScenarioRun {
  private readonly random: SeededPrng;
  private nextNodeId: number;
  private proposalSeq = 0;
  /** Pending membership steps, executed one at a time at the leader. */
  private membershipPlan: { steps: ConfChange[]; victim: number; newNode: number } | undefined;
  private faultPhaseOver = false;
  recoveryBound: number | undefined;
  /** The newest applied configuration (applied somewhere means committed). */
  private latestConfig: { index: number; confState: ConfState };
  /** Nodes being replaced -> the leader's last index when the replacement was planned. */
  private readonly pendingVictims = new Map<number, number>();

  constructor(
    private readonly cluster: SimCluster,
    private readonly scenario: SimScenario,
  ) {
    this.random = new SeededPrng(scenario.seed ^ 0x5eed);
    this.nextNodeId = scenario.nodeCount + 1;
    const initial = Array.from({ length: scenario.nodeCount }, (_, i) => i + 1);
    this.latestConfig = {
      index: scenario.nodeCount,
      confState: { voters: initial, votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false },
    };
    cluster.onConfChangeApplied((node, _cc, index) => this.onConfChangeApplied(node.id, index));
  }

  play(): number {
    const c = this.cluster;
    for (const { atTick, fault } of this.scenario.faults) {
      c.at(atTick * tickIntervalMs, `fault ${describeFault(fault)}`, () => this.inject(fault));
    }
    this.scheduleClients();
    this.scheduleMembershipDriver();
    c.runUntil(this.scenario.faultPhaseTicks * tickIntervalMs);
    return this.heal();
  }

  private scheduleClients(): void {
    const c = this.cluster;
    const propose = (): void => {
      if (this.faultPhaseOver) return;
      const targets = c.upNodes();
      if (targets.length > 0) {
        const target = targets[this.random.nextInt(targets.length)]!;
        c.propose(target.id, encoder.encode(`v${++this.proposalSeq}`));
      }
      c.at(1 + this.random.nextInt(this.scenario.proposalIntervalMs * 2), 'client-propose', propose);
    };
    c.at(1 + this.random.nextInt(this.scenario.proposalIntervalMs), 'client-propose', propose);
    if (this.scenario.readIntervalMs > 0) {
      const read = (): void => {
        if (this.faultPhaseOver) return;
        const targets = c.upNodes();
        if (targets.length > 0) c.readIndex(targets[this.random.nextInt(targets.length)]!.id);
        c.at(1 + this.random.nextInt(this.scenario.readIntervalMs * 2), 'client-read', read);
      };
      c.at(1 + this.random.nextInt(this.scenario.readIntervalMs), 'client-read', read);
    }
  }

  /** Members: voters and learners of the newest configuration any node has applied. */
  private members(): number[] {
    const cs = this.latestConfig.confState;
    return [...new Set([...cs.voters, ...cs.votersOutgoing, ...cs.learners])].sort((a, b) => a - b);
  }

  private pick(ids: readonly number[], ref: number): number | undefined {
    if (ids.length === 0) return undefined;
    return ids[ref % ids.length];
  }

  private liveIds(): number[] {
    return [...this.cluster.nodes.values()].filter((n) => n.status !== 'decommissioned').map((n) => n.id).sort((a, b) => a - b);
  }

  private inject(fault: Fault): void {
    const c = this.cluster;
    const ids = this.liveIds();
    switch (fault.kind) {
      case 'partition': {
        const shuffled = [...ids];
        const r = new SeededPrng(fault.pick);
        for (let i = shuffled.length - 1; i > 0; i--) {
          const j = r.nextInt(i + 1);
          [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
        }
        const minority = Math.floor((shuffled.length - 1) / 2);
        c.network.heal();
        c.network.partition([shuffled.slice(0, minority), shuffled.slice(minority)]);
        break;
      }
      case 'isolate': {
        const victim = this.pick(ids, fault.node);
        if (victim === undefined) break;
        c.network.heal();
        c.network.partition([[victim], ids.filter((id) => id !== victim)]);
        break;
      }
      case 'one-way': {
        const from = this.pick(ids, fault.from);
        const to = this.pick(ids, fault.to);
        if (from !== undefined && to !== undefined && from !== to) c.network.cutLink(from, to);
        break;
      }
      case 'bridge': {
        const bridge = this.pick(ids, fault.node);
        if (bridge === undefined) break;
        const others = ids.filter((id) => id !== bridge);
        const half = Math.floor(others.length / 2);
        c.network.heal();
        c.network.partition([others.slice(0, half), others.slice(half)]);
        break;
      }
      case 'heal':
        c.network.heal();
        break;
      case 'crash': {
        const up = c.upNodes().map((n) => n.id);
        const victim = this.pick(up, fault.node);
        if (victim !== undefined) c.crash(victim);
        break;
      }
      case 'restart': {
        const down = [...c.nodes.values()].filter((n) => n.status === 'down').map((n) => n.id);
        const node = this.pick(down, fault.node);
        if (node !== undefined) c.restart(node);
        break;
      }
      case 'transfer-leader': {
        const leader = c.leader();
        if (leader === undefined) break;
        const voters = leader.raw!.raft.tracker.voterIds().filter((id) => id !== leader.id);
        const to = this.pick(voters, fault.node);
        if (to !== undefined) c.transferLeader(leader.id, to);
        break;
      }
      case 'replace-node':
        this.planReplacement(fault.node, fault.joint);
        break;
      case 'network':
        c.network.params = {
          dropRate: fault.dropRate,
          duplicateRate: fault.duplicateRate,
          delayMinMs: 1,
          delayMaxMs: fault.delayMaxMs,
        };
        break;
    }
  }

  private planReplacement(ref: number, joint: boolean): void {
    if (this.membershipPlan !== undefined) return; // one replacement at a time
    const leader = this.cluster.leader();
    if (leader === undefined) return;
    const voters = leader.raw!.raft.tracker.voterIds();
    const victim = this.pick(voters, ref);
    if (victim === undefined) return;
    const newNode = this.nextNodeId++;
    const none = new Uint8Array(0);
    const change = (...changes: ConfChangeSingle[]): ConfChange => ({ transition: 'auto', changes, context: none });
    const steps: ConfChange[] = joint
      ? [
          {
            transition: 'joint-implicit',
            changes: [
              { type: 'add-voter', nodeId: newNode },
              { type: 'remove', nodeId: victim },
            ],
            context: none,
          },
        ]
      : [change({ type: 'add-learner', nodeId: newNode }), change({ type: 'add-voter', nodeId: newNode }), change({ type: 'remove', nodeId: victim })];
    this.membershipPlan = { steps, victim, newNode };
    this.pendingVictims.set(victim, leader.raw!.raft.log.lastIndex());
    this.cluster.addNode(newNode);
  }

  /** Every 200 ms: propose the next membership step at the leader if nothing is pending. */
  private scheduleMembershipDriver(): void {
    const drive = (): void => {
      this.driveMembership();
      this.cluster.at(200, 'membership-driver', drive);
    };
    this.cluster.at(200, 'membership-driver', drive);
  }

  private driveMembership(): void {
    const plan = this.membershipPlan;
    if (plan === undefined) return;
    const leader = this.cluster.leader();
    if (leader === undefined) return;
    const raft = leader.raw!.raft;
    // Skip steps the configuration already reflects (a re-elected leader may have applied them).
    while (plan.steps.length > 0 && this.alreadyApplied(plan.steps[0]!, raft.tracker.confState())) plan.steps.shift();
    if (plan.steps.length === 0) {
      if (raft.tracker.config.voters[1].size === 0) this.membershipPlan = undefined;
      return;
    }
    this.cluster.proposeConfChange(leader.id, plan.steps[0]!);
  }

  private alreadyApplied(cc: ConfChange, cs: { voters: readonly number[]; votersOutgoing: readonly number[]; learners: readonly number[] }): boolean {
    return cc.changes.every((change) => {
      switch (change.type) {
        case 'add-voter':
          return cs.voters.includes(change.nodeId);
        case 'add-learner':
          return cs.learners.includes(change.nodeId) || cs.voters.includes(change.nodeId);
        case 'remove':
          return !cs.voters.includes(change.nodeId) && !cs.learners.includes(change.nodeId) && !cs.votersOutgoing.includes(change.nodeId);
        case 'update':
          return true;
      }
    });
  }

  /**
   * A node applied a change. Once a configuration from after the replacement was planned no
   * longer holds the victim, its removal is committed: stop it (later, never inside apply).
   */
  private onConfChangeApplied(nodeId: number, index: number): void {
    const cs = this.cluster.nodes.get(nodeId)!.confState;
    if (index > this.latestConfig.index) this.latestConfig = { index, confState: cs };
    for (const [victim, plannedAt] of this.pendingVictims) {
      if (index <= plannedAt) continue;
      const member = cs.voters.includes(victim) || cs.votersOutgoing.includes(victim) || cs.learners.includes(victim);
      if (member) continue;
      this.pendingVictims.delete(victim);
      this.cluster.at(0, `decommission ${victim}`, () => this.cluster.decommission(victim));
    }
  }

  /** Heals every fault, then measures ticks until a proposal commits on every member. */
  private heal(): number {
    const c = this.cluster;
    this.faultPhaseOver = true;
    c.record('heal-all');
    c.network.heal();
    c.network.params = QUIET_NETWORK;
    c.healStorage();
    for (const node of c.nodes.values()) if (node.status === 'down') c.restart(node.id);
    const start = c.now;
    // A member far behind (tight flow limits, slow applies) needs time in proportion to its
    // backlog; a member that joins during recovery (a replacement the faults had held up) adds
    // its own catch-up time from when it joins.
    const flow = this.scenario.flow ?? DEFAULT_FLOW;
    const counted = new Set<number>();
    let catchUpTicks = 0;
    const countNewMembers = (): void => {
      const longest = Math.max(0, ...[...c.nodes.values()].map((n) => n.raw?.raft.log.lastIndex() ?? 0));
      for (const id of this.members()) {
        const node = c.nodes.get(id);
        if (counted.has(id) || node === undefined || node.status !== 'up') continue;
        counted.add(id);
        const ticksFromStart = Math.ceil((c.now - start) / tickIntervalMs);
        const needed = ticksFromStart + recoveryBoundTicks(flow, Math.max(0, longest - node.appliedIndex)) - recoveryTicksMax;
        catchUpTicks = Math.max(catchUpTicks, needed);
      }
      this.recoveryBound = recoveryTicksMax + catchUpTicks;
    };
    countNewMembers();
    const deadline = (): number => start + this.recoveryBound! * tickIntervalMs;
    const probe = encoder.encode(`probe-${this.scenario.seed}`);
    let proposedAt = -Infinity;
    // The probe's index, once any node applied it; the state machine safety check guarantees
    // every node applies the same entry there, so applied >= probeIndex means it has the probe.
    let probeIndex: number | undefined;
    c.onApply((_node, entry) => {
      if (probeIndex === undefined && bytesEqual(payloadOf(entry), probe)) probeIndex = entry.index;
    });
    const committedEverywhere = (): boolean => {
      if (probeIndex === undefined) return false;
      const index = probeIndex;
      return this.members().every((id) => {
        const node = c.nodes.get(id);
        return node !== undefined && node.status === 'up' && node.appliedIndex >= index;
      });
    };
    while (c.now < deadline()) {
      countNewMembers();
      if (committedEverywhere()) return Math.ceil((c.now - start) / tickIntervalMs);
      const leader = c.leader();
      // Propose (again) when a leader exists and the last attempt had time to fail.
      if (leader !== undefined && c.now - proposedAt > 20 * tickIntervalMs && !this.probeInLog(leader.id, probe)) {
        if (c.propose(leader.id, probe) === undefined) proposedAt = c.now;
      }
      c.runFor(10);
    }
    if (committedEverywhere()) return this.recoveryBound!;
    const states = [...c.nodes.values()]
      .map((n) => `${n.id}:${n.status}${n.raw ? `/${n.raw.raft.role}/t${n.raw.raft.term}/c${n.raw.raft.log.committed}/a${n.appliedIndex}` : ''}`)
      .join(' ');
    const leader = c.leader();
    const progress = leader?.raw?.status().progress;
    const progressText = progress === undefined ? 'no leader' : [...progress].map(([id, p]) => `${id}:${p.state}/m${p.match}/n${p.next}${p.paused ? '/paused' : ''}${p.recentActive ? '' : '/inactive'}`).join(' ');
    throw new SafetyViolation(
      'liveness',
      `no proposal committed on every member within ${this.recoveryBound} ticks after healing (members ${this.members().join(',')}; ${states}; leader progress ${progressText})`,
    );
  }

  private probeInLog(id: number, probe: Uint8Array): boolean {
    const raft = this.cluster.nodes.get(id)!.raw!.raft;
    const entries = raft.log.entriesFrom(Math.max(raft.log.firstIndex(), raft.log.committed - 50), Number.MAX_SAFE_INTEGER);
    return entries.some((e) => bytesEqual(payloadOf(e), probe));
  }
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function describeFault(fault: Fault): string {
  const { kind, ...rest } = fault;
  const args = Object.entries(rest).map(([k, v]) => `${k}=${String(v)}`);
  return [kind, ...args].join(' ');
}
