/**
 * Watch streams in the simulated cluster. A watcher watches the workload's key prefix on one
 * node and receives the events that node applies — first what its store already holds from the
 * watcher's next revision (catch-up from the MVCC history, as the watch engine does), then each
 * applied revision as it happens. When the node crashes the stream ends `broken`; from time to
 * time the client also closes it itself. Either way the watcher reopens on another node from its
 * last seen revision + 1 (`resumedFrom`), so the checker's resumable guarantee is exercised.
 *
 * Events are fed directly from the applied commands rather than through `WatchHub`, whose
 * catch-up runs on `setImmediate` — outside the simulated clock, so not replayable from a seed.
 */
import type { SeededPrng } from '../../../raft/index';
import type { AppliedCommand } from '../../../src/engines/kv/state-machine';
import { type KeyValue, type MvccEvent, type MvccStore, prefixEnd } from '../../../storage/index';
import type { HistoryRevision, WatchEnd, WatchEvent, WatchHistory, WatchKeyValue, WatchParams, WatchRecord, WatchResponse } from '../../check/index';
import type { SimCluster } from '../cluster';
import type { SimKvApplication } from './kv-app';

/** A watcher closes its stream and resumes elsewhere after a time uniform in [min, max] simulated ms. */
export const watchMoveMsMin = 800;
export const watchMoveMsMax = 3000;
/** Delay before a watcher whose stream ended (or found no node) opens the next one. */
export const watchReopenDelayMs = 20;

interface Stream {
  readonly node: number;
  readonly params: WatchParams;
  readonly responses: WatchResponse[];
  readonly resumedFrom?: number;
  /** Guards against a move scheduled for an earlier stream. */
  readonly serial: number;
}

interface Watcher {
  readonly name: string;
  /** The first revision this watcher has not seen yet. */
  nextRevision: number;
  stream: Stream | undefined;
  streams: number;
  readonly records: WatchRecord[];
}

export function toWatchKeyValue(kv: KeyValue): WatchKeyValue {
  return { key: kv.key, value: kv.value, createRevision: kv.createRevision, modRevision: kv.modRevision, version: kv.version, lease: kv.lease };
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
    lease: kv.lease,
    prevKv: event.prevKv === undefined ? undefined : toWatchKeyValue(event.prevKv),
  };
}

/** Events grouped by revision, in order. */
function byRevision(events: readonly MvccEvent[]): MvccEvent[][] {
  const groups: MvccEvent[][] = [];
  for (const event of events) {
    const last = groups[groups.length - 1];
    if (last !== undefined && last[0]!.kv.modRevision === event.kv.modRevision) last.push(event);
    else groups.push([event]);
  }
  return groups;
}

/** The committed history of a store, every revision from 1 (what the watch checker compares against). */
export function watchHistoryOf(store: MvccStore): WatchHistory {
  const revisions: HistoryRevision[] = byRevision(store.changes({ fromRevision: 1 })).map((events) => ({
    revision: events[0]!.kv.modRevision,
    events: events.map(toWatchEvent),
  }));
  return { revisions, headRevision: store.revision };
}

export class SimWatchers {
  private readonly watchers: Watcher[];
  private readonly key: Uint8Array;
  private readonly rangeEnd: Uint8Array;
  private serial = 0;
  private finished = false;

  constructor(
    private readonly cluster: SimCluster,
    private readonly applications: ReadonlyMap<number, SimKvApplication>,
    private readonly random: SeededPrng,
    count: number,
    keyPrefix: string,
  ) {
    this.key = new TextEncoder().encode(keyPrefix);
    this.rangeEnd = prefixEnd(this.key);
    this.watchers = Array.from({ length: count }, (_, i) => ({ name: `w${i}`, nextRevision: 1, stream: undefined, streams: 0, records: [] }));
  }

  start(): void {
    for (const watcher of this.watchers) this.cluster.at(this.random.nextInt(watchReopenDelayMs) + 1, `watch ${watcher.name} open`, () => this.open(watcher));
  }

  private open(watcher: Watcher): void {
    if (this.finished || watcher.stream !== undefined) return;
    const ids = [...this.cluster.nodes.keys()].sort((a, b) => a - b);
    const node = ids[this.random.nextInt(ids.length)]!;
    // Creating the watch is work the node does: it waits while the node is paused.
    this.cluster.atNode(node, 1, `watch ${watcher.name} create at n${node}`, () => this.create(watcher, node));
  }

  private create(watcher: Watcher, node: number): void {
    if (this.finished || watcher.stream !== undefined) return;
    const machine = this.applications.get(node)!.machine;
    if (this.cluster.nodes.get(node)!.status !== 'up' || machine === undefined) {
      this.cluster.at(watchReopenDelayMs, `watch ${watcher.name} retry`, () => this.open(watcher));
      return;
    }
    const first = watcher.streams === 0;
    watcher.streams++;
    const stream: Stream = {
      node,
      params: { key: this.key, rangeEnd: this.rangeEnd, startRevision: watcher.nextRevision, prevKv: true },
      responses: [{ kind: 'created', headerRevision: machine.mvcc.revision }],
      resumedFrom: first ? undefined : watcher.nextRevision,
      serial: ++this.serial,
    };
    watcher.stream = stream;
    this.catchUp(watcher, machine.mvcc);
    const moveAfter = watchMoveMsMin + this.random.nextInt(watchMoveMsMax - watchMoveMsMin + 1);
    this.cluster.at(moveAfter, `watch ${watcher.name} move`, () => {
      if (watcher.stream?.serial !== stream.serial) return;
      this.end(watcher, 'client-closed');
      this.cluster.at(watchReopenDelayMs, `watch ${watcher.name} reopen`, () => this.open(watcher));
    });
  }

  /** Delivers what the node's store holds from the watcher's next revision on. */
  private catchUp(watcher: Watcher, store: MvccStore): void {
    const stream = watcher.stream!;
    if (watcher.nextRevision > store.revision) return;
    if (watcher.nextRevision < store.compactRevision) {
      stream.responses.push({ kind: 'canceled', reason: 'compacted', compactRevision: store.compactRevision });
      this.end(watcher, 'canceled');
      return;
    }
    const changes = store.changes({ fromRevision: watcher.nextRevision, key: this.key, rangeEnd: this.rangeEnd });
    for (const events of byRevision(changes)) this.deliver(watcher, events, store.revision);
    watcher.nextRevision = store.revision + 1;
  }

  private deliver(watcher: Watcher, events: readonly MvccEvent[], headerRevision: number): void {
    watcher.stream!.responses.push({ kind: 'events', headerRevision, events: events.map(toWatchEvent) });
    watcher.nextRevision = events[0]!.kv.modRevision + 1;
  }

  private end(watcher: Watcher, end: WatchEnd): void {
    const stream = watcher.stream;
    if (stream === undefined) return;
    watcher.stream = undefined;
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

  /** A node applied a command: its watchers get the revision's matching events. */
  applied(node: number, applied: AppliedCommand): void {
    if (applied.events.length === 0) return;
    for (const watcher of this.onNode(node)) {
      const revision = applied.events[0]!.kv.modRevision;
      if (revision < watcher.nextRevision) continue;
      const events = applied.events.filter((e) => watcher.stream!.params.key.length === 0 || inPrefix(e.kv.key, this.key));
      if (events.length > 0) this.deliver(watcher, events, revision);
    }
  }

  /** A node's store was replaced by a snapshot: its watchers catch up from the new history. */
  replaced(node: number): void {
    const machine = this.applications.get(node)!.machine;
    if (machine === undefined) return;
    for (const watcher of this.onNode(node)) this.catchUp(watcher, machine.mvcc);
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

function inPrefix(key: Uint8Array, prefix: Uint8Array): boolean {
  if (key.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (key[i] !== prefix[i]) return false;
  return true;
}
