/**
 * The nemesis: which faults a real run injects, and when. The plan is drawn from the seed alone
 * (`planFaults`, pure), so a seed names the same schedule every time; only "isolate the leader"
 * and "kill the leader" are resolved when the fault starts (the leader is whoever leads then).
 *
 * One fault at a time, each lasting a few seconds, with healthy gaps between; the first
 * `warmupMs` and the last `healedTailFraction` of the run are fault-free so the cluster starts
 * and ends healthy. Enabled kinds take turns in a seed-shuffled order, so a run long enough for
 * k faults exercises every one of the first k kinds.
 */
import { SeededPrng } from '../../raft/index.js';
import type { FaultWindow } from '../history.js';
import type { LinkMode } from './proxy.js';

export type FaultKind = 'partition' | 'kill' | 'pause' | 'delay' | 'membership' | 'shards';
export const faultKinds: readonly FaultKind[] = ['partition', 'kill', 'pause', 'delay', 'membership', 'shards'];
/**
 * What a run injects unless told otherwise. `membership` (replace a member as etcd's runbook
 * does: remove it, wipe its data, add it back, start it with `existing`) and `shards` (DKV only:
 * the run's keys live in a store placed on all members but one, and the fault moves a replica of
 * one of its shards, often its leader's, to the member without one, or splits a shard:
 * run-store.ts) are asked for by name.
 */
export const defaultFaultKinds: readonly FaultKind[] = ['partition', 'kill', 'pause', 'delay'];

export function isFaultKind(name: string): name is FaultKind {
  return (faultKinds as readonly string[]).includes(name);
}

/** Fault-free time at the start of a run (capped at `warmupFractionMax` of it). */
export const warmupMs = 2000;
export const warmupFractionMax = 0.1;
/** The last fifth of a run is healed, so the cluster recovers before the run ends. */
export const healedTailFraction = 0.2;
export const faultMsMin = 2500;
export const faultMsMax = 5000;
export const gapMsMin = 1500;
export const gapMsMax = 3000;
export const linkDelayMsMin = 50;
export const linkDelayMsMax = 400;

export type PartitionShape = 'halves' | 'isolate' | 'isolate-leader' | 'one-way-out' | 'one-way-in';
const partitionShapes: readonly PartitionShape[] = ['halves', 'isolate', 'isolate-leader', 'one-way-out', 'one-way-in'];

/** A member by index, or whoever leads when the fault starts (falling back to `node`). */
export interface NodeChoice {
  readonly node: number;
  readonly leader: boolean;
}

export type FaultAction =
  /** `side` is the minority (or the lone node); for one-way shapes only its out (or in) links break. */
  | { readonly kind: 'partition'; readonly shape: PartitionShape; readonly side: readonly number[]; readonly leader: boolean; readonly mode: Exclude<LinkMode, 'open'> }
  | { readonly kind: 'kill'; readonly target: NodeChoice }
  | { readonly kind: 'pause'; readonly target: NodeChoice }
  /** Remove the member, wipe its data directory, add it back on the same peer URL, start it. */
  | { readonly kind: 'membership'; readonly target: NodeChoice }
  /** Move a replica of one of the run store's shards (the leader's when `leader`, else the one `pick` names), or split one (run-store.ts). */
  | { readonly kind: 'shards'; readonly pick: number; readonly leader: boolean }
  /** Latency on both directions of every link of `nodes` (all links when it holds every node). */
  | { readonly kind: 'delay'; readonly nodes: readonly number[]; readonly delayMs: number };

export interface PlannedFault {
  /** ms since the run began. */
  readonly start: number;
  readonly end: number;
  readonly action: FaultAction;
}

export interface PlanOptions {
  readonly seed: number;
  readonly faults: readonly FaultKind[];
  readonly runMs: number;
  readonly nodes: number;
}

function between(random: SeededPrng, min: number, max: number): number {
  return min + random.nextInt(max - min + 1);
}

function shuffled<T>(random: SeededPrng, items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = random.nextInt(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function drawAction(random: SeededPrng, kind: FaultKind, nodes: number): FaultAction {
  const node = random.nextInt(nodes);
  switch (kind) {
    case 'partition': {
      const shape = partitionShapes[random.nextInt(partitionShapes.length)]!;
      const mode = random.nextInt(2) === 0 ? 'blackhole' : 'cut';
      // One-way faults only make sense as a blackhole: a TCP connection needs both directions.
      const linkMode = shape.startsWith('one-way') ? 'blackhole' : mode;
      const minority = Math.max(1, Math.floor((nodes - 1) / 2));
      const side = shape === 'halves' ? shuffled(random, range(nodes)).slice(0, minority).sort((a, b) => a - b) : [node];
      return { kind, shape, side, leader: shape === 'isolate-leader', mode: linkMode };
    }
    case 'kill':
    case 'pause':
    case 'membership':
      return { kind, target: { node, leader: random.nextInt(3) === 0 } };
    case 'shards':
      return { kind, pick: random.nextInt(1 << 16), leader: random.nextInt(2) === 0 };
    case 'delay': {
      const all = random.nextInt(2) === 0;
      return { kind, nodes: all ? range(nodes) : [node], delayMs: between(random, linkDelayMsMin, linkDelayMsMax) };
    }
  }
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** The schedule for a run: deterministic from the options. */
export function planFaults(options: PlanOptions): PlannedFault[] {
  const { seed, faults, runMs, nodes } = options;
  if (!Number.isInteger(nodes) || nodes < 1) throw new TypeError(`nodes must be a positive integer, got ${nodes}`);
  if (!Number.isInteger(runMs) || runMs < 0) throw new TypeError(`runMs must be a non-negative integer, got ${runMs}`);
  const kinds = [...new Set(faults)];
  if (kinds.length === 0) return [];
  const random = new SeededPrng(seed);
  const order = shuffled(random, kinds);
  const faultsEnd = Math.floor(runMs * (1 - healedTailFraction));
  const plan: PlannedFault[] = [];
  let at = Math.min(warmupMs, Math.floor(runMs * warmupFractionMax));
  for (let turn = 0; ; turn++) {
    const duration = between(random, faultMsMin, faultMsMax);
    if (at + duration > faultsEnd) break;
    const kind = order[turn % order.length]!;
    plan.push({ start: at, end: at + duration, action: drawAction(random, kind, nodes) });
    at += duration + between(random, gapMsMin, gapMsMax);
  }
  return plan;
}

// ---------------------------------------------------------------------------------------------
// Running a plan against a cluster

/** What the nemesis needs of a cluster (RealCluster provides it). */
export interface NemesisCluster {
  readonly members: readonly { readonly name: string }[];
  leader(): Promise<string | undefined>;
  /** Resolves once every running, unpaused member names one leader; rejects after `timeoutMs`. */
  waitForLeader(timeoutMs: number): Promise<string>;
  kill(name: string): Promise<void>;
  /** `existing` on an empty data dir joins the running cluster; a restart ignores it. */
  startMember(name: string, state?: 'new' | 'existing'): void;
  running(name: string): boolean;
  pause(name: string): void;
  resume(name: string): void;
  /** Replaces member `name` through member `via` (see RealCluster.replaceMember). */
  replaceMember(name: string, via: string): Promise<{ oldId: string; newId: string; exitedByItself: boolean }>;
  readonly proxies: {
    setLink(from: string, to: string, change: { mode?: LinkMode; delayMs?: number }): void;
    healAll(): void;
  };
}

export interface NemesisOptions {
  readonly plan: readonly PlannedFault[];
  readonly cluster: NemesisCluster;
  /** ms since the run began. */
  readonly now: () => number;
  readonly log?: (message: string) => void;
  /** The `shards` fault (run-store.ts's RunStore.fault): what it did; absent: the fault is skipped. */
  readonly shards?: (pick: number, leader: boolean) => Promise<string>;
  /**
   * Resolves when the faults may start (ms since the run began): the plan is shifted so its
   * first fault starts then, and faults that would then end past `endByMs` are dropped.
   */
  readonly startFrom?: Promise<number>;
  readonly endByMs?: number;
}

function sleepUntil(now: () => number, at: number, signal: AbortSignal): Promise<void> {
  const wait = at - now();
  if (wait <= 0 || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, wait);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** A fault being applied: how to undo it, and how the report names it. */
interface ActiveFault {
  readonly description: string;
  heal(): Promise<void> | void;
}

/** How long the heal of a member replacement waits for every running member to name one leader. */
export const membershipHealWaitMs = 30_000;

export class Nemesis {
  /** Windows of faults that have started (an unfinished one has no `end`). */
  readonly windows: FaultWindow[] = [];
  private active: { readonly index: number; readonly fault: ActiveFault } | undefined;

  constructor(private readonly options: NemesisOptions) {}

  private name(index: number): string {
    const member = this.options.cluster.members[index];
    if (member === undefined) throw new TypeError(`no member ${index}`);
    return member.name;
  }

  private async resolve(choice: NodeChoice): Promise<string> {
    if (choice.leader) {
      const leader = await this.options.cluster.leader();
      if (leader !== undefined) return leader;
    }
    return this.name(choice.node);
  }

  /** The plan, shifted to start no earlier than `startFrom` says (waits for it). */
  private async schedule(signal: AbortSignal): Promise<readonly PlannedFault[]> {
    const { plan, startFrom, endByMs } = this.options;
    const first = plan[0];
    if (startFrom === undefined || first === undefined) return plan;
    const aborted = new Promise<undefined>((resolve) => {
      if (signal.aborted) resolve(undefined);
      else signal.addEventListener('abort', () => resolve(undefined), { once: true });
    });
    const from = await Promise.race([startFrom, aborted]);
    if (from === undefined) return [];
    const shift = Math.max(0, from - first.start);
    const endBy = endByMs ?? Infinity;
    // A shifted fault is cut short at endByMs; one left shorter than shiftedFaultMsMin is dropped.
    return plan
      .map((f) => ({ ...f, start: f.start + shift, end: Math.min(endBy, f.end + shift) }))
      .filter((f) => f.end - f.start >= shiftedFaultMsMin);
  }

  /** Runs the plan until its end or until `signal` aborts; always leaves the cluster healed. */
  async run(signal: AbortSignal): Promise<void> {
    try {
      for (const planned of await this.schedule(signal)) {
        await sleepUntil(this.options.now, planned.start, signal);
        if (signal.aborted) break;
        const fault = await this.apply(planned.action);
        const index = this.windows.length;
        this.windows.push({ kind: planned.action.kind, start: this.options.now(), description: fault.description });
        this.active = { index, fault };
        this.options.log?.(`nemesis: ${fault.description}`);
        await sleepUntil(this.options.now, planned.end, signal);
        await this.healActive();
      }
    } finally {
      await this.healActive();
      await this.healAll();
    }
  }

  private async healActive(): Promise<void> {
    const active = this.active;
    if (active === undefined) return;
    this.active = undefined;
    await active.fault.heal();
    const window = this.windows[active.index]!;
    this.windows[active.index] = { ...window, end: this.options.now() };
    this.options.log?.(`nemesis: healed ${window.description}`);
  }

  /** Every link open, every member running and resumed. */
  async healAll(): Promise<void> {
    const { cluster } = this.options;
    cluster.proxies.healAll();
    for (const { name } of cluster.members) {
      cluster.resume(name);
      // `existing`: a member whose replacement failed half-way must never found a cluster of its own.
      if (!cluster.running(name)) cluster.startMember(name, 'existing');
    }
  }

  private async apply(action: FaultAction): Promise<ActiveFault> {
    const { cluster } = this.options;
    switch (action.kind) {
      case 'partition':
        return this.partition(action);
      case 'kill': {
        const name = await this.resolve(action.target);
        await cluster.kill(name);
        return {
          description: `kill ${name}${action.target.leader ? ' (leader)' : ''}`,
          heal: () => {
            if (!cluster.running(name)) cluster.startMember(name);
          },
        };
      }
      case 'pause': {
        const name = await this.resolve(action.target);
        cluster.pause(name);
        return { description: `SIGSTOP ${name}${action.target.leader ? ' (leader)' : ''}`, heal: () => cluster.resume(name) };
      }
      case 'membership': {
        const name = await this.resolve(action.target);
        // Through the leader when another member leads (a member that just restarted may not serve yet).
        const leader = await cluster.leader();
        const via = leader !== undefined && leader !== name ? leader : cluster.members.map((m) => m.name).find((n) => n !== name && cluster.running(n));
        if (via === undefined) return { description: `replace ${name}: skipped, no other member runs`, heal: () => {} };
        const hex = (id: string) => (id === '' ? '?' : BigInt(id).toString(16));
        try {
          const { oldId, newId, exitedByItself } = await cluster.replaceMember(name, via);
          const exit = exitedByItself ? 'it exited by itself' : 'it was killed: it did not exit after its removal';
          return {
            description: `replace ${name}${action.target.leader ? ' (leader)' : ''}: removed ${hex(oldId)} (${exit}), added back as ${hex(newId)} on an empty data dir`,
            heal: async () => {
              // A new member whose first start failed has an empty data dir: it joins with
              // `existing` (a restart of one that joined ignores the state).
              if (!cluster.running(name)) cluster.startMember(name, 'existing');
              // As etcd's runbook: the next change waits until the cluster is whole again (every
              // running member names one leader), else a second replacement while the new
              // member still joins could leave no quorum.
              await cluster.waitForLeader(membershipHealWaitMs).catch(() => undefined);
            },
          };
        } catch (error) {
          // Whatever step failed: a data dir left in place restarts (the state is ignored), a wiped
          // one joins if MemberAdd got through and is refused at start if not (the run goes on
          // without it, and the report says why).
          return {
            description: `replace ${name}: failed (${error instanceof Error ? error.message : String(error)})`,
            heal: () => {
              if (!cluster.running(name)) cluster.startMember(name, 'existing');
            },
          };
        }
      }
      case 'shards': {
        // A move or a split is not undone: the heal lets it finish (or not) while the run goes on.
        const { shards } = this.options;
        const description = shards === undefined ? 'shards: skipped, the cluster has no run store' : await shards(action.pick, action.leader);
        return { description, heal: () => {} };
      }
      case 'delay': {
        const names = action.nodes.map((i) => this.name(i));
        const all = cluster.members.map((m) => m.name);
        for (const a of names) {
          for (const b of all) {
            if (a === b) continue;
            cluster.proxies.setLink(a, b, { delayMs: action.delayMs });
            cluster.proxies.setLink(b, a, { delayMs: action.delayMs });
          }
        }
        const which = names.length === all.length ? 'all links' : `links of ${names.join(' ')}`;
        return { description: `delay ${action.delayMs} ms on ${which}`, heal: () => cluster.proxies.healAll() };
      }
    }
  }

  private async partition(action: Extract<FaultAction, { kind: 'partition' }>): Promise<ActiveFault> {
    const { cluster } = this.options;
    const all = cluster.members.map((m) => m.name);
    const side = action.leader ? [await this.resolve({ node: action.side[0] ?? 0, leader: true })] : action.side.map((i) => this.name(i));
    const rest = all.filter((n) => !side.includes(n));
    const out = action.shape !== 'one-way-in';
    const into = action.shape !== 'one-way-out';
    for (const a of side) {
      for (const b of rest) {
        if (out) cluster.proxies.setLink(a, b, { mode: action.mode });
        if (into) cluster.proxies.setLink(b, a, { mode: action.mode });
      }
    }
    const arrow = out && into ? '|' : out ? '-/->' : '<-/-';
    const leader = action.leader ? ' (leader)' : '';
    return {
      description: `${action.mode} ${side.join(' ')}${leader} ${arrow} ${rest.join(' ')}`,
      heal: () => cluster.proxies.healAll(),
    };
  }
}

// ---------------------------------------------------------------------------------------------
// Lock holders paused past their lease (the lock workload's client-side fault)

/**
 * A lock holder's "GC pause": the harness stops the holder's process (SIGSTOP) for `ttlFactor` ×
 * its lease's TTL, then continues it (SIGCONT), and it carries on with its protected writes as if
 * nothing had happened. `at` counts from the first time a client held the lock: when the pause
 * becomes due, the first holder to reach its pause point after it takes it.
 */
export interface PlannedHolderPause {
  readonly at: number;
  readonly ttlFactor: number;
}

/** The first holder pause is due this long after a client first held the lock (every run gets one if it fits). */
export const holderPauseFirstAfterHoldMs = 500;
/** The lock workload's server faults start this long after the first holder pause did… */
export const faultsAfterFirstHolderPauseMs = 3000;
/** A fault shifted past the first holder pause and cut short at the healed tail lasts at least this. */
export const shiftedFaultMsMin = 1000;
/** …or from this far into the run if no holder was paused by then. */
export const faultsWaitForHolderPauseMsMax = 10_000;
/** A holder pause ends at least this long before the run does (the holder writes once continued). */
export const holderPauseEndMarginMs = 1000;
export const holderPauseGapMsMin = 2000;
export const holderPauseGapMsMax = 5000;
/** A pause lasts this many lease TTLs: long past the lease's expiry, however late the leader expires it. */
export const holderPauseTtlFactorMin = 2.5;
export const holderPauseTtlFactorMax = 3.5;

/**
 * The holder pauses of a run, deterministic from the seed: the first due
 * `holderPauseFirstAfterHoldMs` after a client first held the lock, then one every few seconds,
 * each planned to end (at `leaseTtlMs` × its factor) before the healed last fifth of the run
 * (counting from the run's start; `HolderPauses` skips one that would end later once shifted).
 */
export function planHolderPauses(options: { readonly seed: number; readonly runMs: number; readonly leaseTtlMs: number }): PlannedHolderPause[] {
  const { seed, runMs, leaseTtlMs } = options;
  if (!Number.isInteger(runMs) || runMs < 0) throw new TypeError(`runMs must be a non-negative integer, got ${runMs}`);
  if (!(leaseTtlMs > 0)) throw new TypeError(`leaseTtlMs must be positive, got ${leaseTtlMs}`);
  // A fork: a stream of its own, so the server faults a seed names do not depend on the workload.
  const random = new SeededPrng(seed).fork();
  const pausesEnd = Math.floor(runMs * (1 - healedTailFraction));
  const pauses: PlannedHolderPause[] = [];
  for (let at = holderPauseFirstAfterHoldMs; ; ) {
    const ttlFactor = holderPauseTtlFactorMin + random.nextFloat() * (holderPauseTtlFactorMax - holderPauseTtlFactorMin);
    const durationMs = Math.ceil(ttlFactor * leaseTtlMs);
    if (at + durationMs > pausesEnd) break;
    pauses.push({ at, ttlFactor });
    at += durationMs + between(random, holderPauseGapMsMin, holderPauseGapMsMax);
  }
  return pauses;
}
