/**
 * Watch streams in the simulated cluster, served by the real watch engine: each node has a
 * `WatchHub` over its own MVCC store (catch-up scheduled in simulated time, as work of that
 * node), fed the events the node applies, told when a snapshot replaces its store. A watcher
 * watches the workload's key prefix (with prevKv) on one node through a simulated client that
 * reads slowly: its stream holds a few responses and drains one at a time, so a full stream
 * makes the engine fall back to the history and catch up once there is room — the slow path
 * is exercised too. Every node has its own watchers (`perNode` of them, homed there): half open
 * their first stream at a past revision (replaying history), half from now. When the node
 * crashes the stream ends `broken`; from time to time the client also closes it itself. Either
 * way the watcher reopens from its last seen revision + 1 (`resumedFrom`): on its home node, but
 * on another node (drawn from the seed) after closing a stream at home or while home is down —
 * so the checker's resumable guarantee is exercised within and across nodes, and every node's
 * streams are compared with the others' (`check/watch.ts`, agreement).
 */
import type { SeededPrng } from '../../../raft/index.js';
import { kvEngineOf } from '../../../src/runtime/index.js';
import { type KvApplied, KvCommandKind, kvCommand } from '../../../src/engines/kv/index.js';
import { etcdType } from '../../../src/etcd-proto.js';
import { WatchHub, Watcher as EngineWatcher, type WatchSink } from '../../../src/engines/watch/index.js';
import { type KeyValue, type MvccEvent, type MvccStore, prefixEnd } from '../../../storage/index.js';
import type { HistoryRevision, WatchEnd, WatchEvent, WatchHistory, WatchKeyValue, WatchParams, WatchRecord, WatchResponse } from '../../check/index.js';
import type { SimCluster } from '../cluster.js';

/** A watcher closes its stream and resumes elsewhere after a time uniform in [min, max] simulated ms. */
export const watchMoveMsMin = 800;
export const watchMoveMsMax = 3000;
/** Delay before a watcher whose stream ended (or found no node) opens the next one. */
export const watchReopenDelayMs = 20;
/** After closing a stream itself, a watcher stays away up to this much longer (simulated ms). */
export const watchAwayMsMax = 400;
/** Responses a stream holds before the client has read them: drawn per stream in [1, max]. */
export const watchStreamResponsesMax = 16;
/** Simulated ms the client takes to read one response: drawn per stream in [0, max]. */
export const watchReadMsMax = 4;
/** The compactor proposes a compaction every [min, max] simulated ms during the fault phase... */
export const compactEveryMsMin = 100;
export const compactEveryMsMax = 600;
/** ...keeping this many revisions of history behind the node's current revision. */
export const compactKeepRevisions = 2;
const CompactionRequestType = etcdType('etcdserverpb.CompactionRequest');

interface Stream {
  readonly node: number;
  readonly params: WatchParams;
  readonly responses: WatchResponse[];
  readonly resumedFrom?: number;
  /** Guards against a move scheduled for an earlier stream. */
  readonly serial: number;
  readonly engine: EngineWatcher;
  /** Responses sent and not yet read by the client. */
  unread: number;
  readonly capacity: number;
  readonly readMs: number;
}

interface Watcher {
  readonly name: string;
  /** The node its first stream, and every other one after, is opened on. */
  readonly home: number;
  /** Where its first stream starts: a past revision (history replayed) or now (start revision 0). */
  readonly firstFrom: 'past' | 'now';
  /** The next stream goes to another node (set when the client moved off its home node). */
  awayNext: boolean;
  /** The first revision this watcher has not seen yet. */
  nextRevision: number;
  /** The next stream starts afresh (after a compaction cancelled the last): no resumedFrom. */
  fresh: boolean;
  stream: Stream | undefined;
  streams: number;
  readonly records: WatchRecord[];
}

/**
 * Histories keep lease ids as JSON numbers. The workloads never attach a lease (there is no Lease
 * service yet), so every id is 0; one that does not fit a number stops the run rather than round.
 */
function historyLease(lease: bigint): number {
  const number = Number(lease);
  if (!Number.isSafeInteger(number)) throw new Error(`lease id ${lease} does not fit the history format`);
  return number;
}

export function toWatchKeyValue(kv: KeyValue): WatchKeyValue {
  return { key: kv.key, value: kv.value, createRevision: kv.createRevision, modRevision: kv.modRevision, version: kv.version, lease: historyLease(kv.lease) };
}

export function toWatchEvent(event: MvccEvent): WatchEvent {
  const kv = event.kv;
  return {
    type: event.type,
    key: kv.key,
    value: kv.value,
    createRevision: kv.createRevision,
    modRevision: kv.modRevision,
    version: kv.version,
    lease: historyLease(kv.lease),
    prevKv: event.prevKv === undefined ? undefined : toWatchKeyValue(event.prevKv),
  };
}

export class SimWatchers {
  private readonly watchers: Watcher[];
  private readonly key: Uint8Array;
  private readonly rangeEnd: Uint8Array;
  private readonly hubs = new Map<number, WatchHub>();
  /** Streams opened per node over the run. */
  private readonly streamsByNode = new Map<number, number>();
  private serial = 0;
  private finished = false;

  constructor(
    private readonly cluster: SimCluster,
    /** The shard that holds the workload's keys. */
    private readonly shard: number,
    private readonly random: SeededPrng,
    /** Watchers homed on each node. */
    perNode: number,
    keyPrefix: string,
  ) {
    if (!Number.isSafeInteger(perNode) || perNode < 1) throw new TypeError(`perNode must be a positive integer, got ${perNode}`);
    this.key = new TextEncoder().encode(keyPrefix);
    this.rangeEnd = prefixEnd(this.key);
    const homes = [...cluster.nodes.keys()].sort((a, b) => a - b).flatMap((node) => Array.from({ length: perNode }, (_, j) => ({ node, j })));
    this.watchers = homes.map(({ node, j }, i) => ({
      name: `w${i}`,
      home: node,
      firstFrom: j % 2 === 0 ? 'past' : 'now',
      awayNext: false,
      nextRevision: 1,
      fresh: true,
      stream: undefined,
      streams: 0,
      records: [],
    }));
  }

  /** The fewest streams any node served (0 for a node that never had one). */
  streamsPerNodeMin(): number {
    return Math.min(...[...this.cluster.nodes.keys()].map((node) => this.streamsByNode.get(node) ?? 0));
  }

  /** Watch engine statistics over every node, for the run's stats. */
  get slowFallbacks(): number {
    let n = 0;
    for (const hub of this.hubs.values()) n += hub.slowFallbacks;
    return n;
  }

  private hub(node: number): WatchHub {
    let hub = this.hubs.get(node);
    if (hub === undefined) {
      const store = (): MvccStore => this.store(node)!;
      hub = new WatchHub(store, (run) => this.cluster.atNode(node, 0, `watch catch-up n${node}`, run));
      this.hubs.set(node, hub);
    }
    return hub;
  }

  /** A node's store, while it is up. */
  private store(node: number): MvccStore | undefined {
    const machine = this.cluster.nodes.get(node)!.machine(this.shard);
    return machine === undefined ? undefined : kvEngineOf(machine).mvcc;
  }

  start(): void {
    for (const watcher of this.watchers) this.cluster.at(this.random.nextInt(watchReopenDelayMs) + 1, `watch ${watcher.name} open`, () => this.open(watcher));
  }

  /**
   * Opens the watcher's next stream: on its home node, unless it just moved off it or the home
   * node is not up — then on another node drawn from the seed (up ones first).
   */
  private open(watcher: Watcher): void {
    if (this.finished || watcher.stream !== undefined) return;
    const up = (id: number): boolean => this.cluster.nodes.get(id)!.status === 'up';
    const others = [...this.cluster.nodes.keys()].sort((a, b) => a - b).filter((id) => id !== watcher.home);
    const candidates = others.some(up) ? others.filter(up) : others;
    const away = watcher.awayNext || !up(watcher.home);
    watcher.awayNext = false;
    const node = !away || candidates.length === 0 ? watcher.home : candidates[this.random.nextInt(candidates.length)]!;
    // Creating the watch is work the node does: it waits while the node is paused.
    this.cluster.atNode(node, 1, `watch ${watcher.name} create at n${node}`, () => this.create(watcher, node));
  }

  private create(watcher: Watcher, node: number): void {
    if (this.finished || watcher.stream !== undefined) return;
    const store = this.store(node);
    if (this.cluster.nodes.get(node)!.status !== 'up' || store === undefined) {
      this.cluster.at(watchReopenDelayMs, `watch ${watcher.name} retry`, () => this.open(watcher));
      return;
    }
    const first = watcher.fresh;
    const opening = watcher.streams === 0;
    watcher.fresh = false;
    watcher.streams++;
    this.streamsByNode.set(node, (this.streamsByNode.get(node) ?? 0) + 1);
    // A first stream from now asks for revision 0 (the server resolves it); from the past, for a revision drawn in [1, current].
    let startRevision = watcher.nextRevision;
    if (opening) startRevision = watcher.firstFrom === 'now' ? 0 : 1 + this.random.nextInt(Math.max(1, store.revision));
    watcher.nextRevision = startRevision === 0 ? store.revision + 1 : startRevision;
    const params: WatchParams = { key: this.key, rangeEnd: this.rangeEnd, startRevision, prevKv: true };
    const sink = this.sinkFor(watcher);
    const engine = new EngineWatcher(
      watcher.streams,
      { key: this.key, rangeEnd: this.rangeEnd, startRevision: watcher.nextRevision, noPut: false, noDelete: false, prevKv: true },
      sink,
    );
    const stream: Stream = {
      node,
      params,
      responses: [{ kind: 'created', headerRevision: store.revision }],
      resumedFrom: first ? undefined : watcher.nextRevision,
      serial: ++this.serial,
      engine,
      unread: 0,
      capacity: 1 + this.random.nextInt(watchStreamResponsesMax),
      readMs: this.random.nextInt(watchReadMsMax + 1),
    };
    watcher.stream = stream;
    this.hub(node).add(engine);
    const moveAfter = watchMoveMsMin + this.random.nextInt(watchMoveMsMax - watchMoveMsMin + 1);
    this.cluster.at(moveAfter, `watch ${watcher.name} move`, () => {
      if (watcher.stream?.serial !== stream.serial) return;
      this.end(watcher, 'client-closed');
      // Off its home node to resume elsewhere; from there, back home.
      watcher.awayNext = stream.node === watcher.home;
      // A client that closed its stream may stay away a while (long enough to meet compaction).
      const away = watchReopenDelayMs + this.random.nextInt(watchAwayMsMax + 1);
      this.cluster.at(away, `watch ${watcher.name} reopen`, () => this.open(watcher));
    });
  }

  /** The stream's end of the engine: a bounded buffer the simulated client reads slowly. */
  private sinkFor(watcher: Watcher): WatchSink {
    const current = (engine: EngineWatcher): Stream | undefined => (watcher.stream?.engine === engine ? watcher.stream : undefined);
    const sink: WatchSink = {
      canceled: () => {
        throw new Error('the watch workload mounts no store: nothing cedes a watched key');
      },
      hasRoom: () => {
        const stream = watcher.stream;
        return stream !== undefined && stream.unread < stream.capacity;
      },
      deliver: (engine, events, headerRevision) => {
        const stream = current(engine);
        if (stream === undefined) return true;
        if (stream.unread >= stream.capacity) return false;
        stream.responses.push({ kind: 'events', headerRevision, events: events.map(toWatchEvent) });
        watcher.nextRevision = events[events.length - 1]!.kv.modRevision + 1;
        stream.unread++;
        this.cluster.at(stream.readMs * stream.unread, `watch ${watcher.name} read`, () => {
          if (watcher.stream !== stream) return;
          const wasFull = stream.unread >= stream.capacity;
          stream.unread--;
          // Room again: the node's engine lets unsynced watchers catch up (work of that node).
          if (wasFull) this.cluster.atNode(stream.node, 0, `watch ${watcher.name} room`, () => this.hubs.get(stream.node)?.onRoom());
        });
        return true;
      },
      compacted: (engine, compactRevision) => {
        const stream = current(engine);
        if (stream === undefined) return;
        stream.responses.push({ kind: 'canceled', reason: 'compacted', compactRevision });
        this.end(watcher, 'canceled');
        // What was compacted is gone: watch afresh from the compact revision (as a client must).
        watcher.nextRevision = compactRevision;
        watcher.fresh = true;
        this.cluster.at(watchReopenDelayMs, `watch ${watcher.name} reopen after compaction`, () => this.open(watcher));
      },
    };
    return sink;
  }

  private end(watcher: Watcher, end: WatchEnd): void {
    const stream = watcher.stream;
    if (stream === undefined) return;
    watcher.stream = undefined;
    this.hubs.get(stream.node)?.remove(stream.engine);
    watcher.records.push({
      name: `${watcher.name}#${watcher.records.length + 1}@n${stream.node}`,
      params: stream.params,
      responses: stream.responses,
      end,
      ...(stream.resumedFrom === undefined ? {} : { resumedFrom: stream.resumedFrom }),
    });
  }

  private onNode(node: number): Watcher[] {
    return this.watchers.filter((w) => w.stream?.node === node);
  }

  /** A node applied a command: its watch engine gets the revision's events. */
  applied(node: number, applied: KvApplied): void {
    if (applied.events.length === 0) return;
    this.hubs.get(node)?.onApplied(applied.events);
  }

  /** A node's store was replaced by a snapshot: its watchers re-check against the new history. */
  replaced(node: number): void {
    this.hubs.get(node)?.onStoreReplaced();
  }

  /** A node crashed: its streams break and reopen elsewhere. */
  crashed(node: number): void {
    for (const watcher of this.onNode(node)) {
      this.end(watcher, 'broken');
      this.cluster.at(watchReopenDelayMs, `watch ${watcher.name} reopen`, () => this.open(watcher));
    }
  }

  /** Closes every stream; returns all the records. */
  finish(): WatchRecord[] {
    this.finished = true;
    for (const watcher of this.watchers) this.end(watcher, 'client-closed');
    return this.watchers.flatMap((w) => w.records);
  }
}

/**
 * The committed history as the nodes applied it: each revision's events from the first node to
 * apply it (replicas apply the same), and each compaction with the store revision it took effect
 * at. Unlike one store's `changes()`, it survives compaction.
 */
export class HistoryRecorder {
  private readonly revisions = new Map<number, readonly MvccEvent[]>();
  /** Compact revision -> the store's revision when it took effect. */
  private readonly compactions = new Map<number, number>();

  applied(applied: KvApplied, store: MvccStore): void {
    if (applied.events.length > 0) {
      const revision = applied.events[0]!.kv.modRevision;
      if (!this.revisions.has(revision)) this.revisions.set(revision, applied.events);
    } else if (applied.outcome.kind === 'compaction' && !this.compactions.has(store.compactRevision)) {
      this.compactions.set(store.compactRevision, applied.outcome.revision);
    }
  }

  get compactionCount(): number {
    return this.compactions.size;
  }

  history(headRevision: number): WatchHistory {
    const revisions: HistoryRevision[] = [...this.revisions.entries()]
      .sort(([a], [b]) => a - b)
      .map(([revision, events]) => ({ revision, events: events.map(toWatchEvent) }));
    const compactions = [...this.compactions.entries()].sort(([a], [b]) => a - b).map(([revision, atRevision]) => ({ revision, atRevision }));
    return { revisions, compactions, headRevision };
  }
}

/**
 * Proposes compactions now and then through a random live node, as an operator's periodic
 * compaction would, so watchers meet compacted history under faults.
 */
export class SimCompactor {
  private proposed = 0;

  constructor(
    private readonly cluster: SimCluster,
    /** The shard that holds the workload's keys. */
    private readonly shard: number,
    private readonly random: SeededPrng,
  ) {}

  start(until: number): void {
    const next = (): void => {
      const delay = compactEveryMsMin + this.random.nextInt(compactEveryMsMax - compactEveryMsMin + 1);
      if (this.cluster.now + delay >= until) return;
      this.cluster.at(delay, 'compactor', () => {
        this.compact();
        next();
      });
    };
    next();
  }

  private compact(): void {
    const ids = [...this.cluster.nodes.keys()].sort((a, b) => a - b);
    const node = ids[this.random.nextInt(ids.length)]!;
    this.cluster.atNode(node, 0, `compact via n${node}`, () => {
      const machine = this.cluster.nodes.get(node)?.machine(this.shard);
      if (this.cluster.nodes.get(node)?.status !== 'up' || machine === undefined) return;
      const mvcc = kvEngineOf(machine).mvcc;
      const revision = mvcc.revision - compactKeepRevisions;
      if (revision <= mvcc.compactRevision) return;
      const payload = CompactionRequestType.encode({ revision }).finish();
      this.proposed++;
      // A refusal (no leader, …) just means no compaction this time.
      this.cluster.submit(node, this.shard, kvCommand(KvCommandKind.Compaction, payload), () => undefined);
    });
  }
}
