/**
 * The stores workload of the simulator: stores created and dropped on key prefixes while clients
 * read and write keys under those prefixes and outside them, under the nemesis's faults.
 *
 * - **Admins** (one per store name) create a store as the server does (src/server/store-admin.ts:
 *   read the meta shard; mount it creating — or resume one still creating —, cede its prefix on
 *   the default store's shard, activate it; a cede refused for keys in use drops it) and drop it
 *   (drop on the meta shard, reclaim on the default store's shard), and repair (reclaim a prefix
 *   ceded to a store dropped since; finish a store left creating). Each step goes through some
 *   node; a step that fails or goes unanswered is retried through another node, or abandoned as
 *   a crashed admin would (the half-done change is resumed, dropped or repaired later).
 * - **Splitters** (one per store, a lane of their own) split the store's shard that holds the
 *   key `<prefix>2` at that key, as store-admin.ts does (the meta shard splits the map, the
 *   shard's own log applies the Split, the meta shard finishes it), abandoning half way like the
 *   admins; a repair finishes an unfinished split. Some splits meet a lease granted in the parent
 *   between the map's split and the parent's own: the parent refuses, and the split is undone.
 * - **Store groups** follow each node's own applied meta map, as src/server/store-groups.ts does
 *   (a shard of the map the node does not host starts, bootstrapped with its founders, or empty
 *   for a split's child once its split is finished; a child still splitting is left to the
 *   parent's Split; a hosted one that left a map which gave its id out goes). jepsen-lite may not import src/server, so the
 *   rules are mirrored here on the simulator's createShard/removeShard.
 * - **Placement**: half the mounts ask a replica count (1 to every node), so their shards live on
 *   some nodes only; a node that does not host a request's shard forwards it, one hop over the
 *   peer link (not across a partition), to a replica, which serves it by its own map
 *   (src/server/forwarding.ts), and so do admins' steps on such shards (store-admin.ts's
 *   proposeOn); a repair asks a replica whether a drop retired such a shard.
 * - **Movers** (one per store, a lane of their own) move a replica of one of the store's placed
 *   shards, from a listed node to one that never hosted it (the simulator never starts a group
 *   again on a node that removed it), as store-admin.ts's moveReplica does: the meta shard records
 *   the move; each node's reconcile then carries out src/server/membership-sync.ts's rules on the
 *   placed groups it leads (`nextPlacedChange`, shared with the server: the target added as a
 *   learner, promoted once caught up, the move finished once it votes in sync, a member no longer
 *   listed removed while a majority of the voters left is in sync, a leaving leader handing over),
 *   a move's target starts the group empty, and a node moved away removes its group once the
 *   group's leader no longer holds it (store-groups.ts).
 * - **Clients** route each request by the routing map of the node they call (its applied meta
 *   state, which may lag), to the shard it names: writes are proposed there (a `not-owned`
 *   outcome is a definite failure); reads go through ReadIndex and are answered only if the shard
 *   still owns the key once the read is due, as the KV service does.
 *
 * Checked: every key is a linearizable register whose value is absent at first, set by puts,
 * absent after deletes and after a drop of its store (a drop deletes the store's keys: it counts
 * as a delete of every key under the prefix, from its proposal until its acknowledgement, when
 * the prefix had been ceded to that store — otherwise the store never held a key); after healing
 * the half-done changes are finished, every key is read once more and that read returns the last
 * acknowledged write unless a delete or a drop came after it; every group's Raft safety; every
 * node hosts exactly the groups of the map, with no move left under way; every live group's
 * replicas converge.
 */
import { RaftAssertionError, SeededPrng } from '../../../raft/index.js';
import { prefixEnd } from '../../../storage/index.js';
import { type EngineCommand, type OwnershipOutcome, cedeCommand, ownsEveryKey, reclaimCommand, retireCommand, splitCommand } from '../../../src/engines/index.js';
import { type MetaOutcome, abortSplitCommand, activateStoreCommand, dropStoreCommand, finishMoveCommand, finishSplitCommand, moveReplicaCommand, mountStoreCommand, splitShardCommand } from '../../../src/engines/meta/index.js';
import { nextPlacedChange } from '../../../src/cluster/model.js';
import { grantCommand, revokeCommand } from '../../../src/engines/lease/index.js';
import { kvOutcome } from '../../../src/engines/kv/index.js';
import { type RuntimeErrorCode, type ShardStateMachine, StateMachineHaltError, kvEngineOf, metaEngineOf, ownershipEngineOf } from '../../../src/runtime/index.js';
import { type LinearizabilityResult, checkLinearizability } from '../../check/index.js';
import type { FaultWindow, Operation, OpStatus, RegisterInput, RegisterOutput } from '../../history.js';
import { writeCommand } from '../../workload/index.js';
import type { SimCluster, SimNode } from '../cluster.js';
import { SafetyViolation } from '../safety.js';
import { clientLinkDelayMsMax, clientLinkDelayMsMin, clientThinkMsMax, clientTimeoutMs, clientBackoffMs } from './clients.js';
import { type FaultPlan, Nemesis, faultPlanFor, transferStats } from './faults.js';
import { awaitLeader, convergenceMsMax, dataShard, electionTimeoutMs, jepsenCluster, recoveryMs } from './run.js';

export interface StoreSimOptions {
  readonly seed: number;
  /** 3 or 5. */
  readonly nodes: number;
  /** Simulated ms of faults (recovery, repair and the final reads follow). */
  readonly durationMs: number;
  readonly swarm: boolean;
  /** Test-only switches that break the protocol on purpose (the checks must object). */
  readonly unsafe?: {
    /** Admins activate a store without the default store ceding its prefix. */
    readonly skipCede?: boolean;
    /** Admins drop a store without retiring its shard first. */
    readonly skipRetire?: boolean;
    /** Every data shard owns every key (no ownership checks at apply or on reads). */
    readonly ownsEveryKey?: boolean;
    /** A split's child starts without the parent's keys (the split keeps nothing of them). */
    readonly splitChildEmpty?: boolean;
    /** A split its parent refused after the map recorded it stays recorded (nobody undoes it). */
    readonly noSplitAbort?: boolean;
    /** A replica move finishes as soon as it is recorded, and the node moved from drops its replica at once (no learner, no wait to leave). */
    readonly moveAtOnce?: boolean;
  };
  readonly trace?: boolean;
}

export interface StoreSimStats {
  readonly simulatedMs: number;
  readonly ok: number;
  readonly fail: number;
  readonly info: number;
  /** Definite failures of client requests because the shard did not own the key (routed by a lagging map). */
  readonly notOwned: number;
  readonly storesCreated: number;
  /** Stores mounted on some members only (a replica count); the others forward their requests. */
  readonly storesPlaced: number;
  /** Requests (clients' and admins' steps) a node forwarded to a replica of a shard it does not host. */
  readonly forwarded: number;
  /** Replica moves the meta shard recorded (MoveReplica), and those finished (FinishMove applied). */
  readonly moves: number;
  readonly movesFinished: number;
  readonly storesDropped: number;
  /** Splits finished (the parent applied its Split and the meta shard finished it). */
  readonly splits: number;
  /** Splits the parent refused after the map recorded them (a lease granted between), undone in the map. */
  readonly splitsUndone: number;
  /** Creates refused because the default store held keys under the prefix. */
  readonly prefixInUse: number;
  /** Admin flows abandoned half way (a crashed admin). */
  readonly abandoned: number;
  /** Client operations acknowledged by a store's own shard (not the default store's). */
  readonly okInStores: number;
  readonly crashes: number;
  /**
   * Leader transfers the nemesis asked for (of any group: meta, default store, stores'); of them,
   * those after which the group had another leader in a later term, and those where it was the transferee.
   */
  readonly transfers: number;
  readonly transfersChangedLeader: number;
  readonly transfersToTransferee: number;
  readonly traceHash: number;
}

export interface StoreSimResult {
  readonly options: StoreSimOptions;
  readonly plan: FaultPlan;
  readonly operations: readonly Operation<RegisterInput, RegisterOutput>[];
  readonly faults: readonly FaultWindow[];
  readonly linearizability: LinearizabilityResult;
  /** A failure found besides linearizability (Raft safety, lost writes, groups out of step, divergence). */
  readonly failure?: string;
  readonly verdict: 'ok' | 'violation' | 'unknown';
  readonly replay: string;
  readonly stats: StoreSimStats;
  readonly trace?: readonly string[];
}

const metaShard = 0;
/** Shards no store change adds or removes on a node. */
const fixedShards: readonly number[] = [metaShard, dataShard];
/** The stores the admins create and drop, one admin each. */
const stores: readonly { readonly name: string; readonly prefix: string }[] = [
  { name: 'sa', prefix: 'a/' },
  { name: 'sb', prefix: 'b/' },
];
/** The keys clients use: some under each store's prefix, one outside every prefix. */
export const storeSimKeys: readonly string[] = ['a/1', 'a/2', 'b/1', 'b/2', 'z/1'];
/** The register value of an absent key (the model's registers hold strings). */
export const absent = '∅';
const clientProcesses = 4;
/** An admin waits this long between two actions, uniform in [min, max] simulated ms. */
const adminGapMsMin = 50;
const adminGapMsMax = 600;
/**
 * Percent of splits where a lease is granted in the parent between the map's split and the
 * parent's own (a Lock's session lease a lagging map routed there): the parent refuses the split,
 * which is undone.
 */
const splitLeaseRacePercent = 30;
/** That lease's TTL (it is revoked once the split was undone, or expires). */
const splitLeaseTtlSeconds = 2;
/** A splitter waits this long between two splits, uniform in [min, max] simulated ms. */
const splitGapMsMin = 300;
const splitGapMsMax = 1500;
/** A mover waits this long between two replica moves of its store, uniform in [min, max] simulated ms. */
const moveGapMsMin = 100;
const moveGapMsMax = 400;
/** As the server's learnerReadyRatio: a learner is promoted once it holds this share of the leader's log. */
const learnerReadyRatio = 0.9;
/** As the server's membershipAddAfterMs: a member moved away that stays out of sync is removed after this long. */
const movedAwayWaitMs = 3 * electionTimeoutMs;
/** An admin gives up on a step's answer after this long, then retries it elsewhere or abandons. */
const adminStepTimeoutMs = clientTimeoutMs + 2 * clientLinkDelayMsMax;
/** Percent of creates that first delete the keys under the prefix (a cede needs none there). */
const adminClearPercent = 70;
/** Percent of failed steps an admin retries (through another node); the rest it abandons. */
const adminRetryPercent = 75;
/** Attempts of one step before the admin gives up on it. */
const adminAttemptsMax = 6;
/** Every node reconciles its store groups at least this often (and after each meta apply). */
const reconcileEveryMs = 100;
/** After healing: the admins' last repair and the groups' reconciliation must finish within this. */
const settleMsMax = 20_000;
const settleStepMs = 50;
/** The final read of a key is tried this many times (through different nodes) before the run fails. */
const finalReadAttemptsMax = 20;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (s: string): Uint8Array => encoder.encode(s);

export function storeSimReplay(options: StoreSimOptions): string {
  const unsafe = Object.entries(options.unsafe ?? {}).filter(([, on]) => on === true).map(([name]) => name);
  return `runStoreSim({ seed: ${options.seed}, nodes: ${options.nodes}, durationMs: ${options.durationMs}, swarm: ${options.swarm}${unsafe.length > 0 ? `, unsafe: { ${unsafe.map((u) => `${u}: true`).join(', ')} }` : ''}, trace: true })`;
}

interface ClientOp {
  readonly id: number;
  process: number;
  readonly call: number;
  ret?: number;
  status?: OpStatus;
  readonly input: RegisterInput;
  /** A delete: a write of `absent`, proposed as a DeleteRange. */
  readonly remove: boolean;
  output?: RegisterOutput;
  error?: string;
  readonly node: number;
  /** The shard that answered (for stats). */
  shard?: number;
}

type Reply = { readonly status: 'ok'; readonly value?: string; readonly shard: number } | { readonly status: 'fail' | 'info'; readonly error: string; readonly notOwned?: boolean };

/** A drop of a store incarnation (its first shard id), as the admin saw it. */
interface DropRecord {
  readonly prefix: string;
  readonly first: number;
  readonly call: number;
  ret?: number;
}

class Run {
  readonly operations: ClientOp[] = [];
  readonly drops: DropRecord[] = [];
  /** Store incarnations (first shard ids) whose prefix a cede was acknowledged for. */
  readonly ceded = new Set<number>();
  issueUntil = Number.POSITIVE_INFINITY;
  adminsUntil = Number.POSITIVE_INFINITY;
  readonly counts = { notOwned: 0, created: 0, dropped: 0, prefixInUse: 0, abandoned: 0, splits: 0, splitsUndone: 0, forwarded: 0, placed: 0, moves: 0, movesFinished: 0 };
  private readonly nodeIds: number[];
  /** Groups a node is bootstrapping (`node/incarnation/shard`): not started twice. */
  private readonly bootstrapping = new Set<string>();
  private nextValue = 0;
  private adminProcess = 100_000;

  /** A process number for an admin's client request (never reused: each may be left open). */
  nextAdminProcess(): number {
    this.adminProcess += 10;
    return this.adminProcess;
  }

  constructor(
    readonly cluster: SimCluster,
    private readonly random: SeededPrng,
    private readonly adminRandom: SeededPrng,
    private readonly unsafe: StoreSimOptions['unsafe'],
    /** The splitters' own draws: the admins' schedules per seed are those of a build without splits. */
    private readonly splitRandom: SeededPrng,
    /** Placement's own draws (how many replicas a mount asks, which replica a forward goes to). */
    readonly placementRandom: SeededPrng,
    /** The movers' own draws (which replica moves where, and when). */
    readonly moveRandom: SeededPrng,
  ) {
    this.nodeIds = [...cluster.nodes.keys()].sort((a, b) => a - b);
  }

  // ---- store groups: src/server/store-groups.ts's rules, per node, on its own applied map ----

  reconcileSoon(node: SimNode): void {
    const incarnation = node.incarnation;
    this.cluster.atNode(node.id, 0, `reconcile n${node.id}`, () => {
      if (node.incarnation === incarnation) this.reconcile(node);
    });
  }

  reconcileEvery(): void {
    this.cluster.at(reconcileEveryMs, 'reconcile all', () => {
      for (const node of this.cluster.nodes.values()) if (!node.paused) this.reconcile(node);
      this.reconcileEvery();
    });
  }

  reconcile(node: SimNode): void {
    const runtime = node.runtime;
    const machine = node.machine(metaShard);
    if (node.status !== 'up' || runtime === undefined || runtime.fatalError !== undefined || machine === undefined) return;
    const meta = metaEngineOf(machine);
    const map = meta.shardMap();
    const splitting = meta.splitting();
    const moving = meta.moving();
    for (const shard of map.shards()) {
      const movingHere = moving.get(shard.id)?.to === node.id;
      if (fixedShards.includes(shard.id) || (shard.replicas.length > 0 && !shard.replicas.includes(node.id) && !movingHere)) continue;
      if (runtime.hasShard(shard.id)) continue;
      // A member a move names starts the group empty (never from the founders log): its leader adds it.
      if (movingHere) {
        if (node.disk.shards().includes(shard.id) || node.removedShards.has(shard.id)) continue;
        this.cluster.record(`add-shard ${node.id} shard=${shard.id} (a move's target, empty)`);
        runtime.addShard(shard.id);
        continue;
      }
      // A child still splitting: the parent's Split makes it here.
      if (splitting.has(shard.id)) continue;
      // Stored but not hosted: a restart adds it (the simulator's boot), a bootstrap in flight adds it when durable.
      const key = `${node.id}/${node.incarnation}/${shard.id}`;
      if (this.bootstrapping.has(key) || node.disk.shards().includes(shard.id)) continue;
      // The simulator never starts a group again on a node that removed it (store-groups.ts
      // would, while a restarted meta shard replays a map from before the drop; see the README).
      if (node.removedShards.has(shard.id)) continue;
      const founders = meta.founders(shard.id);
      if (founders === undefined) {
        // A split's child this node missed (its parent's replica got a snapshot past the split):
        // started empty, it gets the child's state from the child's leader.
        this.cluster.record(`add-shard ${node.id} shard=${shard.id} (a split's child, empty)`);
        runtime.addShard(shard.id);
        continue;
      }
      // A member that is no founder starts the group empty in the server; every member here is one.
      if (!founders.voters.includes(node.id)) continue;
      this.bootstrapping.add(key);
      this.cluster.createShard(shard.id, [node.id], founders.voters);
    }
    for (const id of runtime.shardIds()) {
      if (fixedShards.includes(id)) continue;
      const shard = map.shard(id);
      if (shard !== undefined && shard.replicas.length > 0 && !shard.replicas.includes(node.id) && moving.get(id)?.to !== node.id) {
        // Moved away: removed once out of the group, as its leader's configuration says.
        if (this.leftGroup(node, id)) this.cluster.removeShard(id, [node.id]);
        continue;
      }
      if (shard !== undefined || id > map.highestShardId) continue;
      this.cluster.removeShard(id, [node.id]);
    }
    for (const shard of map.shards()) if (shard.replicas.length > 0 && runtime.hasShard(shard.id) && runtime.leader(shard.id) === node.id) this.placedStep(node, shard.id, shard.replicas, moving.get(shard.id));
  }

  /** Whether `node` has left group `shard`: it stored nothing of it, or the group's leader (reachable, applied as far) lacks it. */
  private leftGroup(node: SimNode, shard: number): boolean {
    if (this.moveAtOnce) return true;
    const raft = node.runtime!.rawNode(shard).raft;
    if (raft.log.lastIndex() === 0) return true;
    const leader = this.cluster.leader(shard);
    if (leader === undefined || leader.id === node.id || this.cluster.network.isCut(node.id, leader.id) || this.cluster.network.isCut(leader.id, node.id)) return false;
    const status = leader.runtime!.rawNode(shard).basicStatus();
    const config = status.config;
    const inConfig = [...config.voters, ...config.votersOutgoing, ...config.learners, ...config.learnersNext].includes(node.id);
    return status.applied >= (node.machine(shard)?.appliedIndex ?? 0) && !inConfig;
  }

  /** Per node and group, a membership step in flight (one at a time, as membership-sync.ts). */
  private readonly stepping = new Set<string>();
  /** Per node and group, the member a move adds and since when that node has seen it vote. */
  private readonly votingSince = new Map<string, { readonly key: string; readonly sinceMs: number }>();
  /** Per node, group and member moved away out of sync: since when its removal has been due. */
  private readonly removeDueSince = new Map<string, number>();

  /** src/server/membership-sync.ts's rules for a placed group this node leads: one step toward its list and the move under way. */
  private placedStep(node: SimNode, shard: number, replicas: readonly number[], moving: { readonly from: number; readonly to: number } | undefined): void {
    const key = `${node.id}/${node.incarnation}/${shard}`;
    if (this.stepping.has(key)) return;
    const runtime = node.runtime!;
    const status = runtime.status(shard);
    const config = status.config;
    const progress = (id: number) => status.progress?.get(id);
    const caughtUp = (id: number): boolean => {
      const p = progress(id);
      return p !== undefined && p.recentActive && p.match > 0 && p.match >= status.lastIndex * learnerReadyRatio;
    };
    const inSync = (id: number): boolean => {
      const p = progress(id);
      return p !== undefined && p.recentActive && p.match >= status.commit;
    };
    const done = (): void => {
      this.cluster.at(reconcileEveryMs, `placed step done n${node.id} shard ${shard}`, () => this.stepping.delete(key));
    };
    // Finished once the target has voted for an election timeout (as the server's promotionSettleMs) and is in sync.
    const voting = moving !== undefined && config.votersOutgoing.length === 0 && config.voters.includes(moving.to);
    const votingKey = `${shard}/${moving?.to}`;
    if (!voting) this.votingSince.delete(`${node.id}/${shard}`);
    else if (this.votingSince.get(`${node.id}/${shard}`)?.key !== votingKey) this.votingSince.set(`${node.id}/${shard}`, { key: votingKey, sinceMs: this.cluster.now });
    const settled = voting && this.cluster.now - this.votingSince.get(`${node.id}/${shard}`)!.sinceMs >= electionTimeoutMs;
    if (moving !== undefined && settled && config.voters.includes(moving.from) && inSync(moving.to)) {
      this.stepping.add(key);
      this.cluster.record(`finish-move shard=${shard} ${moving.from}->${moving.to} at ${node.id}`);
      if (this.cluster.submit(node.id, metaShard, finishMoveCommand(shard, moving.from, moving.to), (code, outcome) => {
        if (code === undefined && (outcome as MetaOutcome | undefined)?.kind === 'stores') this.counts.movesFinished++;
        done();
      }) === 'down') done();
      return;
    }
    const target = moving === undefined || replicas.includes(moving.to) ? replicas : [...replicas, moving.to];
    const step = nextPlacedChange(target, () => false, config, node.id, caughtUp, inSync);
    if (step === undefined) return;
    if ('transferTo' in step) {
      this.cluster.transferLeader(node.id, step.transferTo, shard);
      return;
    }
    // A member moved away leaves once in sync, or after a wait when it is not (as the server does).
    if (step.change.type === 'remove' && !inSync(step.change.nodeId)) {
      const waitKey = `${node.id}/${shard}/${step.change.nodeId}`;
      const since = this.removeDueSince.get(waitKey) ?? this.cluster.now;
      this.removeDueSince.set(waitKey, since);
      if (this.cluster.now - since < movedAwayWaitMs) return;
    }
    this.stepping.add(key);
    if (this.cluster.proposeConfChange(node.id, { transition: 'auto', changes: [step.change], context: new Uint8Array(0) }, () => done(), shard) === 'down') done();
  }

  /** Whether every up node hosts exactly the map's groups (its own map), and every node applied the same meta state. */
  groupsInStep(): string | undefined {
    const hashes = new Set<number>();
    for (const node of this.cluster.nodes.values()) {
      const machine = node.machine(metaShard);
      if (machine === undefined) return `n${node.id} is down`;
      hashes.add(machine.hash());
      const meta = metaEngineOf(machine);
      if (meta.moving().size > 0) return `n${node.id}'s map has moves under way: ${[...meta.moving()].map(([id, m]) => `shard ${id} ${m.from}->${m.to}`).join(', ')}`;
      const map = meta.shardMap();
      const placedHere = map.shards().filter((s) => s.replicas.length === 0 || s.replicas.includes(node.id));
      const want = [...new Set([...fixedShards, ...placedHere.map((s) => s.id)])].sort((a, b) => a - b);
      const have = node.runtime!.shardIds().sort((a, b) => a - b);
      if (want.join(',') !== have.join(',')) return `n${node.id} hosts groups ${have.join(',')}, its map has ${want.join(',')}`;
    }
    return hashes.size === 1 ? undefined : 'the meta shard differs across nodes';
  }

  // ---- clients ----

  startClients(): void {
    for (let p = 0; p < clientProcesses; p++) this.scheduleClient(p, this.random.nextInt(clientThinkMsMax + 1));
  }

  private linkDelay(): number {
    return clientLinkDelayMsMin + this.random.nextInt(clientLinkDelayMsMax - clientLinkDelayMsMin + 1);
  }

  private scheduleClient(process: number, delayMs: number): void {
    this.cluster.at(delayMs, `client ${process}`, () => {
      if (this.cluster.now >= this.issueUntil) return;
      const key = storeSimKeys[this.random.nextInt(storeSimKeys.length)]!;
      const draw = this.random.nextInt(100);
      const input: RegisterInput = draw < 40 ? { f: 'read', key } : { f: 'write', key, value: draw < 80 ? `v${this.nextValue++}` : absent };
      const node = this.nodeIds[this.random.nextInt(this.nodeIds.length)]!;
      this.request(process, input, node, (op) => {
        const next = op.status === 'info' ? op.process + clientProcesses : op.process;
        this.scheduleClient(next, op.status === 'fail' ? clientBackoffMs : this.random.nextInt(clientThinkMsMax + 1));
      });
    });
  }

  /** One client request through `node`; `done` hears it once answered or timed out. */
  request(process: number, input: RegisterInput, node: number, done: (op: ClientOp) => void): void {
    const c = this.cluster;
    const op: ClientOp = { id: this.operations.length, process, call: c.now, input, remove: input.f === 'write' && input.value === absent, node };
    this.operations.push(op);
    const finish = this.finisher(op, done);
    c.at(clientTimeoutMs, `client ${process} timeout`, () => finish(input.f === 'read' ? { status: 'fail', error: 'timeout' } : { status: 'info', error: 'timeout' }));
    c.atNode(node, this.linkDelay(), `request ${op.id} at n${node}`, () =>
      this.atNode(node, input, (reply) => c.at(this.linkDelay(), `answer ${op.id}`, () => finish(reply))),
    );
  }

  /**
   * An admin's DeleteRange of every key under `prefix` through `node` (before a create, so the
   * default store may cede it): in the history, a delete of each key under it, all with its one answer.
   */
  clear(process: number, prefix: string, node: number, done: () => void): void {
    const c = this.cluster;
    const ops = storeSimKeys
      .filter((key) => key.startsWith(prefix))
      .map((key, i): ClientOp => ({ id: this.operations.length + i, process: process + i, call: c.now, input: { f: 'write', key, value: absent }, remove: true, node }));
    this.operations.push(...ops);
    let left = ops.length;
    const finishers = ops.map((op) => this.finisher(op, () => {
      if (--left === 0) done();
    }));
    const finish = (reply: Reply): void => finishers.forEach((f) => f(reply));
    c.at(clientTimeoutMs, `clear ${prefix} timeout`, () => finish({ status: 'info', error: 'timeout' }));
    c.atNode(node, this.linkDelay(), `clear ${prefix} at n${node}`, () => {
      const metaMachine = c.nodes.get(node)!.machine(metaShard);
      if (metaMachine === undefined) return finish({ status: 'fail', error: `n${node} is down` });
      const key = bytes(prefix);
      const shard = metaEngineOf(metaMachine).routingMap().shardForKey(key).id;
      const command = writeCommand({ method: 'deleteRange', request: { key, range_end: prefixEnd(key), prev_kv: false } });
      this.write(node, shard, command, (reply) => c.at(this.linkDelay(), `clear ${prefix} answer`, () => finish(reply)));
    });
  }

  private finisher(op: ClientOp, done: (op: ClientOp) => void): (reply: Reply) => void {
    const c = this.cluster;
    const input = op.input;
    let settled = false;
    return (reply: Reply): void => {
      if (settled) return;
      settled = true;
      op.ret = c.now;
      op.status = reply.status;
      if (reply.status === 'ok') {
        op.shard = reply.shard;
        op.output = input.f === 'read' ? { f: 'read', value: reply.value ?? absent } : { f: 'write' };
      } else {
        op.error = reply.error;
        if (reply.notOwned === true) this.counts.notOwned++;
        // Never answered for sure: open to the end of the history.
        if (reply.status === 'info') op.ret = undefined;
      }
      done(op);
    };
  }

  /**
   * The request reached `node`: routed by its own routing map, served as the KV service serves it.
   * A shard its map places on other members only is forwarded to one of them, one hop over the
   * peer link (src/server/forwarding.ts), which serves it by its own map (`forwarded`).
   */
  private atNode(id: number, input: RegisterInput, respond: (reply: Reply) => void, forwarded = false): void {
    const c = this.cluster;
    const node = c.nodes.get(id)!;
    const metaMachine = node.machine(metaShard);
    if (node.status !== 'up' || metaMachine === undefined) {
      respond({ status: 'fail', error: `n${id} is down` });
      return;
    }
    const key = bytes(input.key);
    const shard = metaEngineOf(metaMachine).routingMap().shardForKey(key).id;
    if (node.machine(shard) === undefined) {
      const to = forwarded ? undefined : this.forwardTarget(id, metaEngineOf(metaMachine).routingMap().shard(shard)?.replicas ?? []);
      if (to !== undefined) {
        this.counts.forwarded++;
        c.atNode(to, this.linkDelay(), `forward to n${to}`, () => this.atNode(to, input, (reply) => c.at(this.linkDelay(), `forwarded answer from n${to}`, () => respond(reply)), true));
        return;
      }
      // The router's wrong-shard (or shard-not-hosted): refused before anything was proposed.
      respond({ status: 'fail', error: `shard ${shard} is not hosted on n${id}` });
      return;
    }
    if (input.f === 'read') {
      c.readIndex(
        id,
        () => {
          const machine = node.machine(shard);
          if (machine === undefined) return respond({ status: 'fail', error: `shard ${shard} left n${id} during the read` });
          const kv = kvEngineOf(machine);
          // Once the read is due: a shard that ceded the key since the request was routed does not answer for it.
          if (!kv.owns(key)) return respond({ status: 'fail', error: 'not-owned', notOwned: true });
          const found = kv.mvcc.range({ key }).kvs[0];
          respond({ status: 'ok', value: found === undefined ? absent : decoder.decode(found.value), shard });
        },
        (code) => respond({ status: 'fail', error: code }),
        shard,
      );
      return;
    }
    if (input.f !== 'write') throw new TypeError(`the stores workload makes no ${input.f}`);
    const command =
      input.value === absent
        ? writeCommand({ method: 'deleteRange', request: { key, range_end: new Uint8Array(0), prev_kv: false } })
        : writeCommand({ method: 'put', request: { key, value: bytes(input.value), lease: 0, prev_kv: false, ignore_value: false, ignore_lease: false } });
    this.write(id, shard, command, respond);
  }

  /**
   * The replica a node forwards to: a random one of `replicas` (a shard placed on other members
   * only) it can reach over the peer link; undefined when none (refused, as a forward that could
   * not be sent: nothing proposed).
   */
  forwardTarget(id: number, replicas: readonly number[]): number | undefined {
    if (replicas.length === 0 || replicas.includes(id)) return undefined;
    const reachable = replicas.filter((to) => !this.cluster.network.isCut(id, to) && !this.cluster.network.isCut(to, id));
    return reachable.length === 0 ? undefined : reachable[this.placementRandom.nextInt(reachable.length)];
  }

  /** Proposes a KV write on `shard` at node `id` (which hosts it or is down). */
  private write(id: number, shard: number, command: EngineCommand, respond: (reply: Reply) => void): void {
    const submitted = this.cluster.submit(id, shard, command, (code, outcome) => {
      if (code !== undefined) return respond({ status: writeFailureStatus(code), error: code });
      const applied = kvOutcome(outcome).outcome;
      if (applied.kind === 'error') return respond({ status: 'fail', error: applied.error.code, notOwned: applied.error.code === 'not-owned' });
      respond({ status: 'ok', shard });
    });
    if (submitted === 'down') respond({ status: 'fail', error: `n${id} is down` });
  }

  // ---- admins: src/server/store-admin.ts's steps, each through some node ----

  startAdmins(): void {
    for (const store of stores) this.scheduleAdmin(store);
    for (const store of stores) this.scheduleSplitter(store);
    for (const store of stores) this.scheduleMover(store);
  }

  /** A mover's lane: now and then, one replica of one of the store's placed shards moves to a node that never hosted it. */
  private scheduleMover(store: (typeof stores)[number]): void {
    const gap = moveGapMsMin + this.moveRandom.nextInt(moveGapMsMax - moveGapMsMin + 1);
    this.cluster.at(gap, `mover ${store.name}`, () => {
      if (this.cluster.now >= this.adminsUntil) return;
      new AdminFlow(this, store.name, bytes(store.prefix), this.moveRandom, true, () => this.scheduleMover(store)).move();
    });
  }

  /** A splitter's lane: now and then, a split of the store's shard that holds `<prefix>2`. */
  private scheduleSplitter(store: (typeof stores)[number]): void {
    const gap = splitGapMsMin + this.splitRandom.nextInt(splitGapMsMax - splitGapMsMin + 1);
    this.cluster.at(gap, `splitter ${store.name}`, () => {
      if (this.cluster.now >= this.adminsUntil) return;
      new AdminFlow(this, store.name, bytes(store.prefix), this.splitRandom, true, () => this.scheduleSplitter(store)).split();
    });
  }

  private scheduleAdmin(store: (typeof stores)[number]): void {
    const gap = adminGapMsMin + this.adminRandom.nextInt(adminGapMsMax - adminGapMsMin + 1);
    this.cluster.at(gap, `admin ${store.name}`, () => {
      if (this.cluster.now >= this.adminsUntil) return;
      const draw = this.adminRandom.nextInt(100);
      const flow = new AdminFlow(this, store.name, bytes(store.prefix), this.adminRandom, true, () => this.scheduleAdmin(store));
      if (draw < 50) flow.create();
      else if (draw < 85) flow.drop();
      else flow.repair();
    });
  }

  /** After healing: every store left creating is finished (or dropped), every prefix ceded to a dropped store reclaimed. */
  finalRepair(done: () => void): void {
    let left = stores.length;
    for (const store of stores) {
      new AdminFlow(this, store.name, bytes(store.prefix), this.adminRandom, false, () => {
        if (--left === 0) done();
      }).repair();
    }
  }

  get skipCede(): boolean {
    return this.unsafe?.skipCede === true;
  }

  get skipRetire(): boolean {
    return this.unsafe?.skipRetire === true;
  }

  get noSplitAbort(): boolean {
    return this.unsafe?.noSplitAbort === true;
  }

  get moveAtOnce(): boolean {
    return this.unsafe?.moveAtOnce === true;
  }

  /** A lease id for a splitter's race (each run's own, never 0). */
  nextLeaseId(): bigint {
    return BigInt(++this.leaseIds);
  }

  private leaseIds = 0;

  randomNode(random: SeededPrng = this.adminRandom): number {
    return this.nodeIds[random.nextInt(this.nodeIds.length)]!;
  }
}

/** Whether a write refused by the runtime may still apply (`info`) or surely will not (`fail`). */
function writeFailureStatus(code: RuntimeErrorCode): 'fail' | 'info' {
  switch (code) {
    // Refused before the proposal entered the log.
    case 'no-leader':
    case 'leader-transfer':
    case 'too-many-requests':
    case 'not-member':
    case 'cross-shard':
    case 'cross-shard-range':
    case 'unsupported-command':
      return 'fail';
    // Pending when its group was removed, its leader changed, or it timed out: it may have been committed.
    default:
      return 'info';
  }
}

/**
 * One admin action on one store, step by step as store-admin.ts runs it. A step that fails or
 * goes unanswered is retried through another node (`adminRetryPercent`) or the flow is abandoned;
 * `persistent` flows (the final repair) retry until they finish.
 */
class AdminFlow {
  private readonly c: SimCluster;

  constructor(
    private readonly run: Run,
    private readonly name: string,
    private readonly prefix: Uint8Array,
    private readonly random: SeededPrng,
    private readonly mayAbandon: boolean,
    private readonly finished: () => void,
  ) {
    this.c = run.cluster;
  }

  private end(): void {
    this.finished();
  }

  private abandonOrRetry(attempt: number, retry: () => void, why: string): void {
    const c = this.c;
    if (this.mayAbandon && (attempt + 1 >= adminAttemptsMax || this.random.nextInt(100) >= adminRetryPercent)) {
      this.run.counts.abandoned++;
      c.record(`admin ${this.name}: abandoned (${why})`);
      this.end();
      return;
    }
    c.at(clientBackoffMs, `admin ${this.name} retry`, retry);
  }

  /** Proposes `command` on `shard` through some node; `onOutcome` hears the applied outcome. */
  private step(label: string, shard: number, command: EngineCommand, onOutcome: (outcome: unknown) => void, attempt = 0): void {
    const c = this.c;
    const node = this.run.randomNode(this.random);
    let settled = false;
    const failed = (why: string): void => {
      if (settled) return;
      settled = true;
      this.abandonOrRetry(attempt, () => this.step(label, shard, command, onOutcome, attempt + 1), `${label} through n${node}: ${why}`);
    };
    c.at(adminStepTimeoutMs, `admin ${this.name} ${label} timeout`, () => failed('timeout'));
    const submitAt = (at: number): void => {
      if (c.submit(at, shard, command, (code, outcome) => {
        c.at(clientLinkDelayMsMax, `admin ${this.name} ${label} answer`, () => {
          if (code !== undefined || outcome === undefined) return failed(code ?? 'refused');
          if (settled) return;
          settled = true;
          c.record(`admin ${this.name}: ${label} applied through n${at}`);
          onOutcome(outcome);
        });
      }) === 'down') failed('down');
    };
    c.atNode(node, clientLinkDelayMsMax, `admin ${this.name} ${label} at n${node}`, () => {
      // A shard this node's map places on other members only: proposed through one of them
      // (store-admin.ts's proposeOn, over forwarding.ts).
      const here = c.nodes.get(node)!;
      const meta = here.machine(metaShard);
      const to = here.machine(shard) !== undefined || meta === undefined ? undefined : this.run.forwardTarget(node, metaEngineOf(meta).shardMap().shard(shard)?.replicas ?? []);
      if (to === undefined) return submitAt(node);
      this.run.counts.forwarded++;
      c.atNode(to, clientLinkDelayMsMax, `admin ${this.name} ${label} forwarded to n${to}`, () => submitAt(to));
    });
  }

  /** A ReadIndex on the meta shard through some node; `onMeta` gets that node's meta engine then. */
  private readMeta(onMeta: (node: SimNode) => void, attempt = 0): void {
    const c = this.c;
    const id = this.run.randomNode(this.random);
    let settled = false;
    const failed = (why: string): void => {
      if (settled) return;
      settled = true;
      this.abandonOrRetry(attempt, () => this.readMeta(onMeta, attempt + 1), `meta read through n${id}: ${why}`);
    };
    c.at(adminStepTimeoutMs, `admin ${this.name} meta read timeout`, () => failed('timeout'));
    c.atNode(id, clientLinkDelayMsMax, `admin ${this.name} meta read at n${id}`, () => {
      const node = c.nodes.get(id)!;
      const read = c.readIndex(
        id,
        () => {
          if (settled || node.machine(metaShard) === undefined || node.machine(dataShard) === undefined) return;
          settled = true;
          onMeta(node);
        },
        (code) => failed(code),
        metaShard,
      );
      if (read === 'down') failed('down');
    });
  }

  create(): void {
    this.readMeta((node) => {
      const meta = metaEngineOf(node.machine(metaShard)!);
      const map = meta.shardMap();
      const existing = map.store(this.name);
      if (existing !== undefined) {
        // A store still being created on the same prefix is resumed; an active one stays.
        if (meta.creatingStores().has(this.name) && Buffer.from(existing.prefix).equals(Buffer.from(this.prefix))) this.finishCreate(map.shardsOf(this.name)[0]!.id);
        else this.end();
        return;
      }
      if (this.random.nextInt(100) < adminClearPercent) {
        this.run.clear(this.run.nextAdminProcess(), decoder.decode(this.prefix), this.run.randomNode(), () => this.mount());
        return;
      }
      this.mount();
    });
  }

  private mount(): void {
    // Half the stores are placed on some members (1 to all of them), the rest on every member.
    const replicas = this.run.placementRandom.nextInt(2) === 0 ? 0 : 1 + this.run.placementRandom.nextInt(this.run.cluster.nodes.size);
    this.step('mount', metaShard, mountStoreCommand(this.name, this.prefix, 1, replicas), (outcome) => {
      const o = outcome as MetaOutcome;
      // Refused (a mount through an earlier attempt that did apply: the store exists): done.
      if (o.kind !== 'stores') return this.end();
      if (replicas > 0) this.run.counts.placed++;
      this.finishCreate(o.shards[0]!);
    });
  }

  /** Cede the prefix to the store whose first shard is `first`, then activate it (a cede refused for keys in use drops it). */
  private finishCreate(first: number, reclaimed = false): void {
    if (this.run.skipCede) return this.activate(first);
    this.step(`cede to ${first}`, dataShard, cedeCommand(this.prefix, first), (outcome) => {
      const ceded = outcome as OwnershipOutcome;
      if (ceded.kind === 'ok') {
        this.run.ceded.add(first);
        this.activate(first);
        return;
      }
      if (ceded.code === 'prefix-ceded' && !reclaimed && ceded.store !== undefined) {
        // Ceded to a store dropped since whose reclaim never ran: reclaim it first (only if it is gone).
        this.readMeta((node) => {
          const map = metaEngineOf(node.machine(metaShard)!).shardMap();
          if (!(map.shard(ceded.store!) === undefined && ceded.store! <= map.highestShardId)) return this.dropCreating(first);
          this.step(`reclaim from ${ceded.store}`, dataShard, reclaimCommand(this.prefix, ceded.store!), () => this.finishCreate(first, true));
        });
        return;
      }
      if (ceded.code === 'prefix-in-use') this.run.counts.prefixInUse++;
      this.dropCreating(first);
    });
  }

  private activate(first: number): void {
    this.step(`activate ${first}`, metaShard, activateStoreCommand(this.name, first), (outcome) => {
      if ((outcome as MetaOutcome).kind === 'stores') this.run.counts.created++;
      this.end();
    });
  }

  /** A create the default store refused: the store goes (it never served a key). */
  private dropCreating(first: number): void {
    this.step('drop (refused create)', metaShard, dropStoreCommand(this.name, first), () => this.end());
  }

  drop(): void {
    this.readMeta((node) => {
      const map = metaEngineOf(node.machine(metaShard)!).shardMap();
      const store = map.store(this.name);
      if (store === undefined) return this.end();
      const record: DropRecord = { prefix: decoder.decode(store.prefix), first: map.shardsOf(this.name)[0]!.id, call: this.c.now };
      this.run.drops.push(record);
      this.finishDrop(record, store.prefix);
    });
  }

  /** The steps of a drop (each idempotent): retire the store's shards, drop it from the map, reclaim its prefix. */
  private finishDrop(record: DropRecord, prefix: Uint8Array, retired: Set<number> = new Set()): void {
    const first = record.first;
    if (this.run.skipRetire) return this.dropFromMap(record, prefix);
    // Every shard of the store, read again after each retire: a split applied before its
    // parent's retire made a child the first read did not list (a retired shard never splits).
    this.readMeta((node) => {
      const meta = metaEngineOf(node.machine(metaShard)!);
      // Out of the map already: a step of an attempt given up on (its command applied after all)
      // dropped it. The drop step is then refused as unknown, and the drop ends.
      if (meta.shardMap().store(this.name) === undefined) return this.dropFromMap(record, prefix);
      const shards = meta.shardMap().shardsOf(this.name).map((shard) => shard.id);
      const next = shards[0] === first ? shards.find((id) => !retired.has(id)) : undefined;
      if (next === undefined) return this.dropFromMap(record, prefix);
      const retire = (): void => this.step(`retire ${next}`, next, retireCommand(first), () => this.finishDrop(record, prefix, retired.add(next)));
      const splitting = meta.splitting().get(next);
      if (splitting === undefined) return retire();
      // A child still splitting: its parent (retired before it, in key order) decides whether it exists.
      this.step(`split ${splitting.parent} before the drop`, splitting.parent, splitCommand(next, splitting.at, splitting.end), (outcome) => {
        if ((outcome as OwnershipOutcome).kind === 'ok') return retire();
        this.finishDrop(record, prefix, retired.add(next));
      });
    });
  }

  /** The drop's last steps: out of the map, then the prefix reclaimed. */
  private dropFromMap(record: DropRecord, prefix: Uint8Array): void {
    const first = record.first;
    {
      this.step(`drop ${first}`, metaShard, dropStoreCommand(this.name, first), (outcome) => {
        const o = outcome as MetaOutcome;
        // Refused: an earlier attempt dropped it (unknown-store), or a later incarnation is in the map.
        if (o.kind !== 'stores' || o.shards[0] !== first) return this.end();
        record.ret = this.c.now;
        this.run.counts.dropped++;
        this.step(`reclaim from ${first}`, dataShard, reclaimCommand(prefix, first), () => this.end());
      });
    }
  }

  /** A split of the store's shard that holds `<prefix>2`, at that key, as store-admin.ts's splitShard does. */
  split(): void {
    this.readMeta((node) => {
      const meta = metaEngineOf(node.machine(metaShard)!);
      const map = meta.shardMap();
      if (map.store(this.name) === undefined || meta.creatingStores().has(this.name)) return this.end();
      const shards = map.shardsOf(this.name);
      for (const [child, record] of meta.splitting()) {
        if (shards.some((shard) => shard.id === record.parent)) return this.finishSplit(record.parent, child, record.at, record.end);
      }
      const at = Uint8Array.from([...this.prefix, 0x32]);
      const parent = map.shardForKey(at);
      // Split there already (this incarnation of the store).
      if (Buffer.from(parent.start).equals(Buffer.from(at))) return this.end();
      const race = this.random.nextInt(100) < splitLeaseRacePercent;
      this.step(`split ${parent.id} in the map`, metaShard, splitShardCommand(parent.id, at, parent.epoch), (outcome) => {
        const o = outcome as MetaOutcome;
        // Refused (the store went, or the map moved on since the read): nothing to finish.
        if (o.kind !== 'stores' || o.shards.length !== 2) return this.end();
        const child = o.shards[1]!;
        if (!race) return this.finishSplit(parent.id, child, at, parent.end);
        // A lease granted in the parent after the coordinator's check: the parent refuses the split.
        const lease = this.run.nextLeaseId();
        this.step(`grant lease ${lease} in ${parent.id}`, parent.id, grantCommand(lease, splitLeaseTtlSeconds), () => this.finishSplit(parent.id, child, at, parent.end, lease));
      });
    });
  }

  /**
   * Steps 2 and 3 of a split: the parent's log applies it, the meta shard finishes it. Refused
   * (a lease in the parent, or the parent retired: its store is being dropped), the refusal fences
   * the child in the parent's log, so the map's split is undone (AbortSplit) and the parent serves
   * its whole range again; then `lease`, if the race granted one, is revoked.
   */
  private finishSplit(parent: number, child: number, at: Uint8Array, end: Uint8Array | undefined, lease?: bigint): void {
    const done = (): void => {
      if (lease === undefined) return this.end();
      this.step(`revoke lease ${lease} in ${parent}`, parent, revokeCommand(lease), () => this.end());
    };
    this.step(`split ${parent} into ${child}`, parent, splitCommand(child, at, end), (outcome) => {
      if ((outcome as OwnershipOutcome).kind !== 'ok') {
        if (this.run.noSplitAbort) return done();
        return this.step(`undo split ${child}`, metaShard, abortSplitCommand(child), (undone) => {
          // `[parent, child]`: undone now (`[child]`: gone already, with its store's drop or an earlier undo).
          const o = undone as MetaOutcome;
          if (o.kind === 'stores' && o.shards.length === 2) this.run.counts.splitsUndone++;
          done();
        });
      }
      this.step(`finish split ${child}`, metaShard, finishSplitCommand(child), () => {
        this.run.counts.splits++;
        done();
      });
    });
  }

  /** A replica move (store-admin.ts's moveReplica): of a placed shard of this store, from a listed node to one that never hosted it. */
  move(): void {
    this.readMeta((node) => {
      const meta = metaEngineOf(node.machine(metaShard)!);
      const map = meta.shardMap();
      if (map.store(this.name) === undefined || meta.creatingStores().has(this.name)) return this.end();
      const splitting = meta.splitting();
      const moving = meta.moving();
      const candidates = map.shardsOf(this.name).filter((s) => s.replicas.length > 0 && !moving.has(s.id) && !splitting.has(s.id) && ![...splitting.values()].some((r) => r.parent === s.id));
      if (candidates.length === 0) return this.end();
      const shard = candidates[this.random.nextInt(candidates.length)]!;
      // The simulator never starts a group again on a node that removed it: a move goes to a node that never hosted it.
      const targets = [...this.c.nodes.keys()].filter((id) => !shard.replicas.includes(id) && !this.c.nodes.get(id)!.removedShards.has(shard.id) && !this.c.hosts(shard.id).includes(id));
      if (targets.length === 0) return this.end();
      const from = shard.replicas[this.random.nextInt(shard.replicas.length)]!;
      const to = targets[this.random.nextInt(targets.length)]!;
      this.step(`move ${shard.id} ${from}->${to}`, metaShard, moveReplicaCommand(shard.id, from, to, shard.epoch), (outcome) => {
        if ((outcome as MetaOutcome).kind !== 'stores') return this.end();
        this.run.counts.moves++;
        if (!this.run.moveAtOnce) return this.end();
        this.step(`finish move ${shard.id} at once`, metaShard, finishMoveCommand(shard.id, from, to), () => this.end());
      });
    });
  }

  /** repairStores for this store: reclaim the prefix from a store dropped since; finish a store left creating. */
  repair(): void {
    this.readMeta((node) => {
      const meta = metaEngineOf(node.machine(metaShard)!);
      const map = meta.shardMap();
      const cession = ownershipEngineOf(node.machine(dataShard)!)
        .cessions()
        .find((c) => Buffer.from(c.prefix).equals(Buffer.from(this.prefix)));
      const finish = (): void => {
        const store = map.store(this.name);
        if (store === undefined) return this.end();
        const shards = map.shardsOf(this.name).map((shard) => shard.id);
        const first = shards[0]!;
        // A drop that stopped after retiring one of the store's shards: finish it. A shard this
        // node does not host is asked of a replica it reaches (store-admin.ts's retiredElsewhere).
        const holder = (id: number): SimNode | undefined => {
          if (node.machine(id) !== undefined) return node;
          const to = this.run.forwardTarget(node.id, map.shard(id)?.replicas ?? []);
          return to === undefined ? undefined : this.c.nodes.get(to);
        };
        const retired = shards.some((id) => {
          const machine = holder(id)?.machine(id);
          return machine !== undefined && ownershipEngineOf(machine).retired !== 0;
        });
        if (retired) {
          const record: DropRecord = { prefix: decoder.decode(store.prefix), first, call: this.c.now };
          this.run.drops.push(record);
          return this.finishDrop(record, store.prefix);
        }
        if (meta.creatingStores().has(this.name)) return this.finishCreate(first);
        // A split that stopped half way: finish it.
        for (const [child, record] of meta.splitting()) {
          if (shards.includes(record.parent)) return this.finishSplit(record.parent, child, record.at, record.end);
        }
        this.end();
      };
      if (cession !== undefined && map.shard(cession.store) === undefined && cession.store <= map.highestShardId) {
        this.step(`reclaim from ${cession.store}`, dataShard, reclaimCommand(this.prefix, cession.store), finish);
        return;
      }
      finish();
    });
  }
}

/** The history the register model checks: an absent start per key, the clients' operations, the drops as deletes. */
function registerHistory(run: Run): Operation<RegisterInput, RegisterOutput>[] {
  const ops: Operation<RegisterInput, RegisterOutput>[] = [];
  let id = 0;
  for (const key of storeSimKeys) ops.push({ id: id++, process: -1, call: -2, ret: -1, status: 'ok', input: { f: 'write', key, value: absent }, output: { f: 'write' } });
  for (const op of run.operations) {
    ops.push({
      id: id++,
      process: op.process,
      call: op.call,
      ...(op.ret === undefined ? {} : { ret: op.ret }),
      status: op.status ?? 'info',
      input: op.input,
      ...(op.output === undefined ? {} : { output: op.output }),
      node: `n${op.node}`,
      ...(op.error === undefined ? {} : { error: op.error }),
    });
  }
  let dropProcess = 1_000_000;
  for (const drop of run.drops) {
    // A store the prefix was never ceded to held no key: its drop changes no value.
    if (!run.ceded.has(drop.first)) continue;
    for (const key of storeSimKeys) {
      if (!key.startsWith(drop.prefix)) continue;
      ops.push({
        id: id++,
        process: dropProcess++,
        call: drop.call,
        ...(drop.ret === undefined ? {} : { ret: drop.ret }),
        status: drop.ret === undefined ? 'info' : 'ok',
        input: { f: 'write', key, value: absent },
        ...(drop.ret === undefined ? {} : { output: { f: 'write' } }),
        node: `drop of store ${drop.first}`,
      });
    }
  }
  return ops;
}

/**
 * No acknowledged write lost or hidden: a key's final read returns a value some write that no
 * acknowledged write definitely followed may have left (a put's value; absent after a delete, a
 * drop, or no acknowledged write at all).
 */
function lostWrites(history: readonly Operation<RegisterInput, RegisterOutput>[], finals: ReadonlyMap<string, Operation<RegisterInput, RegisterOutput>>): string | undefined {
  for (const [key, final] of finals) {
    const value = (final.output as { value: string | null }).value;
    const writes = history.filter((op) => op.input.key === key && op.input.f === 'write' && op.status !== 'fail' && op.call < final.ret!);
    const acked = writes.filter((op) => op.status === 'ok' && op.ret !== undefined && op.ret < final.call);
    // Writes that may be the last before the read: none acknowledged before the read began started after it ended.
    const candidates = writes.filter((w) => !acked.some((a) => w.ret !== undefined && a.call > w.ret));
    const possible = new Set(candidates.map((w) => (w.input as { value: string }).value));
    if (!possible.has(value ?? absent)) {
      const last = acked.reduce<Operation<RegisterInput, RegisterOutput> | undefined>((a, b) => (a === undefined || b.ret! > a.ret! ? b : a), undefined);
      return `key ${key}: the final read returned ${value ?? absent}, but the last acknowledged write (op ${last?.id}: ${(last?.input as { value: string } | undefined)?.value}, acknowledged at ${last?.ret}) was not overwritten by anything that may have applied`;
    }
  }
  return undefined;
}

/** Every live group's replicas apply the same prefix and hold the same state. */
function converged(cluster: SimCluster, shards: readonly number[]): string | undefined {
  const deadline = cluster.now + convergenceMsMax;
  const nodes = [...cluster.nodes.values()];
  // A shard placed on some nodes: those (groupsInStep checked that each hosts exactly its map's).
  const hosts = (shard: number): SimNode[] => nodes.filter((n) => n.runtime?.hasShard(shard) === true);
  const lagging = (): string | undefined => {
    for (const shard of shards) {
      const committed = Math.max(0, ...hosts(shard).map((n) => n.runtime!.rawNode(shard).raft.log.committed));
      const behind = hosts(shard).filter((n) => (n.machine(shard)?.appliedIndex ?? 0) < committed);
      if (behind.length > 0) return `shard ${shard}: ${behind.map((n) => `n${n.id} applied ${n.machine(shard)?.appliedIndex ?? 'nothing'}`).join(', ')} < committed ${committed}`;
    }
    return undefined;
  };
  while (lagging() !== undefined && cluster.now < deadline) cluster.runUntil(cluster.now + settleStepMs);
  const behind = lagging();
  if (behind !== undefined) return `replicas did not converge within ${convergenceMsMax} ms after healing: ${behind}`;
  for (const shard of shards) {
    const states = hosts(shard).map((n) => ({ node: n.id, hash: n.machine(shard)!.hash(), index: n.machine(shard)!.appliedIndex }));
    if (states.length === 0) return `shard ${shard} is hosted nowhere`;
    const first = states[0]!;
    if (states.some((s) => s.index === first.index && s.hash !== first.hash)) {
      return `replicas diverged on shard ${shard}: ${states.map((s) => `n${s.node}=${s.hash}@${s.index}`).join(' ')}`;
    }
  }
  return undefined;
}

/** Runs one seed of the stores workload (synchronous: the simulator runs to the end). */
export function runStoreSim(options: StoreSimOptions): StoreSimResult {
  if (options.nodes !== 3 && options.nodes !== 5) throw new TypeError(`nodes must be 3 or 5, got ${options.nodes}`);
  const plan = faultPlanFor(options.seed, options.swarm);
  const master = new SeededPrng(options.seed);
  const clientRandom = master.fork();
  const adminRandom = master.fork();
  const nemesisRandom = master.fork();
  const splitRandom = master.fork();
  const placementRandom = master.fork();
  const moveRandom = master.fork();
  let run: Run | undefined;
  const cluster = jepsenCluster({
    seed: options.seed,
    nodes: options.nodes,
    plan,
    trace: options.trace === true,
    observer: {
      applied: (node, shard) => {
        if (shard === metaShard) run?.reconcileSoon(node);
      },
      stateReplaced: (node, shard) => {
        if (shard === metaShard) run?.reconcileSoon(node);
      },
    },
    alterDataShard: (machine: ShardStateMachine) => {
      if (options.unsafe?.ownsEveryKey === true) kvEngineOf(machine).connect({ owner: ownsEveryKey });
      if (options.unsafe?.splitChildEmpty === true) {
        const splitOff = machine.splitOff.bind(machine);
        machine.splitOff = (child, makeInto, at, end, index) => {
          let into: ShardStateMachine | undefined;
          splitOff(child, () => (into = makeInto()), at, end, index);
          if (into !== undefined) kvEngineOf(into).retainRange(at, at);
        };
      }
    },
  });
  run = new Run(cluster, clientRandom, adminRandom, options.unsafe, splitRandom, placementRandom, moveRandom);
  const nemesis = new Nemesis(cluster, plan, nemesisRandom, { crash: (node) => cluster.crash(node), restart: (node) => cluster.restart(node) });

  let failure: string | undefined;
  /** Each key's final read: its client operation's id. */
  const finals = new Map<string, number>();
  try {
    awaitLeader(cluster);
    const faultsEnd = cluster.now + options.durationMs;
    run.reconcileEvery();
    nemesis.start(faultsEnd);
    run.startClients();
    run.startAdmins();
    cluster.runUntil(faultsEnd);
    nemesis.healAll();
    run.issueUntil = cluster.now + recoveryMs;
    run.adminsUntil = run.issueUntil;
    cluster.runUntil(run.issueUntil);
    // Every operation answered or timed out: the final reads follow them all.
    cluster.runUntil(cluster.now + clientTimeoutMs + 2 * clientLinkDelayMsMax + 1);
    failure = settle(run);
    if (failure === undefined) failure = finalReads(run, finals);
    if (failure === undefined) failure = converged(cluster, [metaShard, dataShard, ...metaEngineOf(cluster.nodes.get(1)!.machine(metaShard)!).shardMap().shards().map((s) => s.id).filter((id) => id !== dataShard)]);
  } catch (error) {
    if (!(error instanceof SafetyViolation || error instanceof RaftAssertionError || error instanceof StateMachineHaltError)) throw error;
    failure = `${error.message} (at ${cluster.now} simulated ms)`;
    nemesis.healAll();
  }
  const history = registerHistory(run);
  // The history starts with one absent write per key, then the clients' operations in order.
  const finalOps = new Map([...finals].map(([key, id]) => [key, history[storeSimKeys.length + id]!] as const));
  failure ??= lostWrites(history, finalOps);
  const linearizability = checkLinearizability('register', history);
  const verdict = failure !== undefined || linearizability.verdict === 'violation' ? 'violation' : linearizability.verdict === 'unknown' ? 'unknown' : 'ok';
  const count = (status: OpStatus): number => run.operations.filter((op) => op.status === status).length;
  return {
    options,
    plan,
    operations: history,
    faults: nemesis.windows,
    linearizability,
    ...(failure === undefined ? {} : { failure }),
    verdict,
    replay: storeSimReplay(options),
    stats: {
      simulatedMs: cluster.now,
      ok: count('ok'),
      fail: count('fail'),
      info: run.operations.filter((op) => op.status === 'info' || op.status === undefined).length,
      notOwned: run.counts.notOwned,
      storesCreated: run.counts.created,
      storesPlaced: run.counts.placed,
      forwarded: run.counts.forwarded,
      moves: run.counts.moves,
      movesFinished: run.counts.movesFinished,
      storesDropped: run.counts.dropped,
      splits: run.counts.splits,
      splitsUndone: run.counts.splitsUndone,
      prefixInUse: run.counts.prefixInUse,
      abandoned: run.counts.abandoned,
      okInStores: run.operations.filter((op) => op.status === 'ok' && op.shard !== undefined && op.shard !== dataShard).length,
      crashes: cluster.stats.crashes,
      ...transferStats(nemesis.transfers),
      traceHash: cluster.traceHash,
    },
    ...(options.trace === true ? { trace: cluster.trace } : {}),
  };
}

/** After healing: the admins' last flows end, a final repair finishes half-done changes, every node's groups follow its map. */
function settle(run: Run): string | undefined {
  const c = run.cluster;
  // Twice, as the meta leader's repair runs every few election timeouts: a step an admin gave up
  // on may still apply after the first pass looked (a Retire forwarded to a replica that answers
  // late, say), and the second, once every such step has had its time, finishes what it began.
  for (const pass of [1, 2]) {
    let repaired = false;
    run.finalRepair(() => {
      repaired = true;
    });
    if (!c.runUntilCondition(() => repaired, settleMsMax)) return `the final repair (pass ${pass}) did not finish within ${settleMsMax} ms of healing`;
    if (pass === 1) c.runUntil(c.now + adminStepTimeoutMs);
  }
  const deadline = c.now + settleMsMax;
  while (run.groupsInStep() !== undefined && c.now < deadline) c.runUntil(c.now + settleStepMs);
  const out = run.groupsInStep();
  return out === undefined ? undefined : `store groups not in step with the map ${settleMsMax} ms after healing: ${out}`;
}

/** One read of every key through the healed cluster (retried through other nodes on failure). */
function finalReads(run: Run, finals: Map<string, number>): string | undefined {
  const c = run.cluster;
  for (const key of storeSimKeys) {
    let answered: ClientOp | undefined;
    for (let attempt = 0; attempt < finalReadAttemptsMax && answered === undefined; attempt++) {
      let op: ClientOp | undefined;
      run.request(-2 - attempt, { f: 'read', key }, run.randomNode(), (done) => {
        op = done;
      });
      c.runUntilCondition(() => op !== undefined, clientTimeoutMs + 2 * clientLinkDelayMsMax + 1);
      if (op?.status === 'ok') answered = op;
      else c.runUntil(c.now + clientBackoffMs);
    }
    if (answered === undefined) return `key ${key} could not be read after healing (${finalReadAttemptsMax} attempts)`;
    finals.set(key, answered.id);
  }
  return undefined;
}

