/**
 * The watch engine of one shard: which watchers want which keys, and how events reach them.
 *
 * A watcher is **synced** when it has been given every matching event up to the store's current
 * revision: new events go to it as they are applied. Otherwise it is **unsynced** and catches up
 * from the store's history (`changes()`), a bounded batch at a time, whenever its stream has room.
 * Everything runs on the one event-loop thread, so a watcher that catches up to the current
 * revision and is marked synced in the same step can miss nothing: the next event is applied
 * after that step.
 *
 * A slow stream never loses events silently: when its buffer is full, the watchers that could not
 * be given an event become unsynced at that event's revision and catch up later; if the history
 * they need was compacted meanwhile, they are canceled with `compactRevision`.
 */
import { assert } from '../../../raft/index.js';
import { type ChangesPage, type KeyValue, type MvccEvent, type MvccStore, beforeEnd, compareBytes } from '../../../storage/index.js';
import { watchCatchUpBytesMax, watchCatchUpRevisionsMax, watchRecentEventBytes, watchRecentEventsBytesMax } from './limits.js';
import { RangeIndex } from './range-index.js';

/** Where a watcher's responses go (one client stream). */
export interface WatchSink {
  /**
   * Queues `events` (whole revisions, in order) for `watcher`; `headerRevision` is the revision the
   * response reports. Returns false — and queues nothing — when the stream's buffer is full.
   */
  deliver(watcher: Watcher, events: readonly MvccEvent[], headerRevision: number): boolean;
  /** The watcher's start revision was compacted: cancel it with `compactRevision`. */
  compacted(watcher: Watcher, compactRevision: number): void;
  /** The store no longer serves some of the watcher's keys (a store took their prefix): cancel it with `reason`. */
  canceled(watcher: Watcher, reason: string): void;
  /** Whether the stream has room for more (catch-up waits until it has). */
  hasRoom(): boolean;
  /** The watcher caught up and now gets events as they are applied. */
  synced?(watcher: Watcher): void;
}

export interface WatcherOptions {
  readonly key: Uint8Array;
  /** The store's range convention: undefined = the single key; [0] = every key >= key; else [key, rangeEnd). */
  readonly rangeEnd: Uint8Array | undefined;
  /** The first revision wanted (already resolved: 0 means "from now" is the caller's business). */
  readonly startRevision: number;
  readonly noPut: boolean;
  readonly noDelete: boolean;
  readonly prevKv: boolean;
  /**
   * The ranges the watcher is for, when they are not all of [key, rangeEnd) (a prefix whose
   * middle another shard serves): whether the shard still serves its keys is asked of these.
   */
  readonly parts?: ReadonlyArray<{ readonly key: Uint8Array; readonly rangeEnd?: Uint8Array }>;
}

export class Watcher {
  /** The next revision this watcher must be given events from. */
  nextRevision: number;
  synced = false;
  /** Set once the watcher is canceled or its stream closed; nothing is delivered afterwards. */
  closed = false;

  constructor(
    readonly id: number,
    readonly options: WatcherOptions,
    readonly sink: WatchSink,
  ) {
    this.nextRevision = options.startRevision;
  }

  matchesKey(key: Uint8Array): boolean {
    const { key: start, rangeEnd } = this.options;
    if (rangeEnd === undefined) return compareBytes(key, start) === 0;
    return compareBytes(key, start) >= 0 && beforeEnd(key, rangeEnd);
  }

  /**
   * The events of one revision this watcher gets (filters applied, prevKv as asked): `events`
   * itself when it gets all of them unchanged (no copy for the common case of many watchers on
   * one key), else a new array.
   */
  select(events: readonly MvccEvent[]): readonly MvccEvent[] {
    let out: MvccEvent[] | undefined;
    for (let i = 0; i < events.length; i++) {
      const event = events[i]!;
      let given: MvccEvent | undefined;
      if (this.matchesKey(event.kv.key) && !(event.type === 'put' ? this.options.noPut : this.options.noDelete)) {
        given = this.options.prevKv || event.prevKv === undefined ? event : { type: event.type, kv: event.kv };
      }
      if (out === undefined) {
        if (given === event) continue;
        out = events.slice(0, i);
      }
      if (given !== undefined) out.push(given);
    }
    return out ?? events;
  }
}

/** Whether `owns` (a shard's) still holds every key the watcher is for: its parts, or all of [key, rangeEnd). */
export function watcherOwned(watcher: Watcher, owns: (key: Uint8Array, rangeEnd?: Uint8Array) => boolean): boolean {
  return (watcher.options.parts ?? [watcher.options]).every((part) => owns(part.key, part.rangeEnd));
}

function keyString(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
}

export class WatchHub {
  /** Synced single-key watchers by key, and synced range watchers by range. */
  private readonly byKey = new Map<string, Set<Watcher>>();
  private readonly ranges = new RangeIndex<Watcher>();
  private readonly unsynced = new Set<Watcher>();
  private catchUpScheduled = false;
  /**
   * The most recently applied revisions, oldest first and without gaps: recent[recentHead + i] is
   * revision recentStart + i (its events as applied).
   */
  private recent: Array<readonly MvccEvent[]> = [];
  private recentHead = 0;
  private recentStart = 0;
  /**
   * The buffers the recent events' keys and values are views of, with how many views each: an
   * event's value is a view into a store arena, and holding the view holds the whole arena (an
   * outgrown or compacted one included), so the budget counts each whole buffer once.
   */
  private recentBuffers = new Map<ArrayBufferLike, number>();
  private recentBytes = 0;
  /** Times a watcher fell back to history because its stream's buffer was full. */
  slowFallbacks = 0;

  /**
   * `schedule` runs catch-up work on a later turn (default `setImmediate`; the simulator passes
   * its own, so catch-up happens in simulated time and replays from a seed).
   */
  constructor(
    private readonly store: () => MvccStore,
    private readonly schedule: (run: () => void) => void = setImmediate,
  ) {}

  /** Watchers behind the current revision (catching up from history). */
  get unsyncedCount(): number {
    return this.unsynced.size;
  }

  /** Memory the recent revisions hold (the whole buffers behind their keys and values) and how many revisions they are. */
  get recentEvents(): { bytes: number; revisions: number } {
    return { bytes: this.recentBytes, revisions: this.recent.length - this.recentHead };
  }

  get watcherCount(): number {
    let n = this.ranges.size + this.unsynced.size;
    for (const set of this.byKey.values()) n += set.size;
    return n;
  }

  /** Adds a watcher; one starting in the past (or whose history must be checked) catches up first. */
  add(watcher: Watcher): void {
    this.unsynced.add(watcher);
    this.catchUp(watcher);
  }

  remove(watcher: Watcher): void {
    watcher.closed = true;
    this.unsynced.delete(watcher);
    this.unsubscribe(watcher);
  }

  /**
   * Cancels, with `reason`, every watcher for which `drop` holds (the store ceded some of its keys
   * to a new store: no event of them will be applied here any more), unless `rehome` takes it
   * over elsewhere (then it is only removed from here).
   */
  cancelWhere(drop: (watcher: Watcher) => boolean, reason: string, rehome?: (watcher: Watcher) => boolean): number {
    const chosen = new Set<Watcher>();
    for (const watcher of this.unsynced) if (drop(watcher)) chosen.add(watcher);
    for (const watcher of this.ranges.all()) if (drop(watcher)) chosen.add(watcher);
    for (const set of this.byKey.values()) for (const watcher of set) if (drop(watcher)) chosen.add(watcher);
    for (const watcher of chosen) {
      const synced = watcher.synced;
      this.remove(watcher);
      if (rehome === undefined) {
        watcher.sink.canceled(watcher, reason);
        continue;
      }
      // A synced watcher was given every revision up to the store's (its next revision moves only
      // with its own keys' events): taken over from the next one, not from a quiet key's old one.
      if (synced) watcher.nextRevision = Math.max(watcher.nextRevision, this.store().revision + 1);
      // Taken over elsewhere (a split's child serving all its keys, from its next revision): no cancel.
      if (!rehome(watcher)) watcher.sink.canceled(watcher, reason);
    }
    return chosen.size;
  }

  /** Every watcher is synced (progress notifications are true only then). */
  allSynced(watchers: Iterable<Watcher>): boolean {
    for (const w of watchers) if (!w.synced) return false;
    return true;
  }

  /**
   * The events of one applied command (one revision), in order. `remember: false` keeps them out
   * of the recent revisions (a restart's replay): the next remembered revision starts them afresh,
   * and watchers behind read the history instead.
   */
  onApplied(events: readonly MvccEvent[], remember = true): void {
    if (events.length === 0) return;
    const revision = events[0]!.kv.modRevision;
    // Kept only while someone watches: a shard nobody watches holds no recent events (a node has
    // a hub per shard it hosts); a watcher that comes later catches up from the store's history.
    if (remember && (this.byKey.size > 0 || this.ranges.size > 0 || this.unsynced.size > 0)) this.remember(revision, events);
    // No synced watcher: nothing to look up per key (a bulk load's txns of many puts).
    if (this.byKey.size === 0 && this.ranges.size === 0) return;
    if (events.length === 1) {
      // One key: its single-key watchers and the ranges holding it never overlap.
      const key = events[0]!.kv.key;
      const set = this.byKey.get(keyString(key));
      // (A watcher that desyncs leaves `set` while it is being iterated, which Set allows.)
      if (set !== undefined) for (const watcher of set) this.offer(watcher, events, revision);
      const inRange: Watcher[] = [];
      this.ranges.stab(key, inRange);
      for (const watcher of inRange) this.offer(watcher, events, revision);
      return;
    }
    // Several keys (a txn): a watcher may hold more than one of them, and hears the revision once.
    const candidates = new Set<Watcher>();
    const inRange: Watcher[] = [];
    for (const event of events) {
      const set = this.byKey.get(keyString(event.kv.key));
      if (set !== undefined) for (const w of set) candidates.add(w);
      this.ranges.stab(event.kv.key, inRange);
    }
    for (const w of inRange) candidates.add(w);
    for (const watcher of candidates) this.offer(watcher, events, revision);
  }

  /** Gives a synced watcher its part of one revision's events. */
  private offer(watcher: Watcher, events: readonly MvccEvent[], revision: number): void {
    if (!watcher.synced || watcher.nextRevision > revision) return;
    const selected = watcher.select(events);
    if (selected.length === 0) {
      watcher.nextRevision = revision + 1;
      return;
    }
    if (watcher.sink.deliver(watcher, selected, revision)) {
      watcher.nextRevision = revision + 1;
    } else {
      // The stream is full: this revision waits in the history until there is room.
      this.slowFallbacks++;
      this.desync(watcher);
    }
  }

  /** Keeps `events` of `revision` among the recent revisions (a gap starts them afresh). */
  private remember(revision: number, events: readonly MvccEvent[]): void {
    if (this.recent.length > this.recentHead && revision !== this.recentStart + this.recent.length - this.recentHead) this.forgetRecent();
    if (this.recent.length === this.recentHead) this.recentStart = revision;
    this.recent.push(events);
    for (const e of events) this.holdViews(e, 1);
    this.recentBytes += events.length * watchRecentEventBytes;
    // The newest revision goes too if it alone is over the budget (one DeleteRange of a million
    // keys): watchers behind it read it from the store's history.
    while (this.recentBytes > watchRecentEventsBytesMax && this.recent.length > this.recentHead) {
      const oldest = this.recent[this.recentHead]!;
      for (const e of oldest) this.holdViews(e, -1);
      this.recentBytes -= oldest.length * watchRecentEventBytes;
      // Let go of the events now, not at the next slice: their values are views that keep whole
      // store arenas alive (compacted and defragmented ones included).
      this.recent[this.recentHead] = [];
      this.recentHead++;
      this.recentStart++;
    }
    if (this.recentHead >= 1024 && this.recentHead * 2 >= this.recent.length) {
      this.recent = this.recent.slice(this.recentHead);
      this.recentHead = 0;
    }
  }

  /** Counts (delta 1) or releases (delta -1) the buffers behind an event's keys and values. */
  private holdViews(event: MvccEvent, delta: 1 | -1): void {
    this.holdBuffer(event.kv.key.buffer, delta);
    this.holdBuffer(event.kv.value.buffer, delta);
    if (event.prevKv !== undefined) {
      this.holdBuffer(event.prevKv.key.buffer, delta);
      this.holdBuffer(event.prevKv.value.buffer, delta);
    }
  }

  private holdBuffer(buffer: ArrayBufferLike, delta: 1 | -1): void {
    const views = (this.recentBuffers.get(buffer) ?? 0) + delta;
    assert(views >= 0, 'a recent event released a buffer it did not hold');
    if (views === 0) {
      this.recentBuffers.delete(buffer);
      this.recentBytes -= buffer.byteLength;
    } else {
      if (views === 1 && delta === 1) this.recentBytes += buffer.byteLength;
      this.recentBuffers.set(buffer, views);
    }
  }

  private forgetRecent(): void {
    this.recent = [];
    this.recentHead = 0;
    this.recentBuffers = new Map();
    this.recentBytes = 0;
  }

  /**
   * Drops the recent revisions kept for catch-up (defragment: their values are views into the old
   * arenas). Watchers behind catch up from the store's history instead; nothing is lost.
   */
  releaseRecentEvents(): void {
    this.forgetRecent();
  }

  /** The store was replaced (a snapshot from the leader): everyone re-checks against its history. */
  onStoreReplaced(): void {
    this.forgetRecent();
    for (const set of this.byKey.values()) for (const w of set) this.desync(w);
    for (const w of this.ranges.all()) this.desync(w);
    this.scheduleCatchUp();
  }

  /** A stream has room again: let its unsynced watchers catch up. */
  onRoom(): void {
    this.scheduleCatchUp();
  }

  private desync(watcher: Watcher): void {
    this.unsubscribe(watcher);
    watcher.synced = false;
    this.unsynced.add(watcher);
    this.scheduleCatchUp();
  }

  private subscribe(watcher: Watcher): void {
    watcher.synced = true;
    this.unsynced.delete(watcher);
    watcher.sink.synced?.(watcher);
    if (watcher.options.rangeEnd !== undefined) {
      this.ranges.add(watcher, watcher.options.key, watcher.options.rangeEnd);
      return;
    }
    const key = keyString(watcher.options.key);
    let set = this.byKey.get(key);
    if (set === undefined) this.byKey.set(key, (set = new Set()));
    set.add(watcher);
  }

  private unsubscribe(watcher: Watcher): void {
    this.ranges.delete(watcher);
    if (watcher.options.rangeEnd === undefined) {
      const key = keyString(watcher.options.key);
      const set = this.byKey.get(key);
      set?.delete(watcher);
      if (set !== undefined && set.size === 0) this.byKey.delete(key);
    }
  }

  private scheduleCatchUp(): void {
    if (this.catchUpScheduled || this.unsynced.size === 0) return;
    this.catchUpScheduled = true;
    this.schedule(() => {
      this.catchUpScheduled = false;
      // Watchers that fell behind together (many on one key) read the same page of history: read
      // it once per pass, so its events are shared objects (and encoded once by the stream).
      const pages = new Map<string, ChangesPage>();
      for (const watcher of [...this.unsynced]) this.catchUp(watcher, pages);
      // Watchers still behind (a full stream or a long history) continue on a later turn.
      if ([...this.unsynced].some((w) => w.sink.hasRoom())) this.scheduleCatchUp();
    });
  }

  /** One bounded step of catching `watcher` up from the history; synced once it reaches now. */
  private catchUp(watcher: Watcher, pages?: Map<string, ChangesPage>): void {
    if (watcher.closed || watcher.synced || !watcher.sink.hasRoom()) return;
    const store = this.store();
    const current = store.revision;
    // As etcd: a watch may start at the compact revision itself, not before it.
    if (watcher.nextRevision < store.compactRevision) {
      this.unsynced.delete(watcher);
      watcher.closed = true;
      watcher.sink.compacted(watcher, store.compactRevision);
      return;
    }
    // At the compact revision itself the store's history is what a watcher gets (etcd: no
    // tombstones there, no prevKv read below it), so the recent revisions serve only later ones.
    if (watcher.nextRevision <= current && watcher.nextRevision > store.compactRevision && this.catchUpFromRecent(watcher, current)) return;
    if (watcher.nextRevision <= current) {
      const to = Math.min(current, watcher.nextRevision + watchCatchUpRevisionsMax - 1);
      const { key, rangeEnd } = watcher.options;
      const pageKey = pages === undefined ? '' : `${watcher.nextRevision} ${to} ${key.length} ${keyString(key)}${rangeEnd === undefined ? '' : keyString(rangeEnd)}`;
      let page = pages?.get(pageKey);
      if (page === undefined) {
        page = store.changesPage({ fromRevision: watcher.nextRevision, toRevision: to, key, rangeEnd, bytesMax: watchCatchUpBytesMax });
        pages?.set(pageKey, page);
      }
      const selected = watcher.select(page.events);
      if (selected.length > 0 && !watcher.sink.deliver(watcher, selected, current)) {
        this.scheduleCatchUp();
        return;
      }
      watcher.nextRevision = page.throughRevision + 1;
      if (page.throughRevision < current) {
        this.scheduleCatchUp();
        return;
      }
    }
    this.subscribe(watcher);
  }

  /**
   * One catch-up step from the recent revisions, when they reach back to the watcher's next
   * revision and up to the store's current one (else the store's history serves it): the same
   * bounds as a step from the store, and the events are the applied objects themselves.
   */
  private catchUpFromRecent(watcher: Watcher, current: number): boolean {
    const held = this.recent.length - this.recentHead;
    if (held === 0 || watcher.nextRevision < this.recentStart || this.recentStart + held - 1 !== current) return false;
    const to = Math.min(current, watcher.nextRevision + watchCatchUpRevisionsMax - 1);
    const out: MvccEvent[] = [];
    let bytes = 0;
    let through = watcher.nextRevision - 1;
    for (let revision = watcher.nextRevision; revision <= to; revision++) {
      const index = this.recentHead + revision - this.recentStart;
      const selected = watcher.select(this.recent[index]!);
      if (selected.length > 0) {
        let size = 0;
        for (const e of selected) size += e.kv.key.length + e.kv.value.length;
        // Whole revisions, at least one, about watchCatchUpBytesMax at most.
        if (out.length > 0 && bytes + size > watchCatchUpBytesMax) break;
        for (const e of selected) out.push(e);
        bytes += size;
      }
      through = revision;
    }
    if (out.length > 0 && !watcher.sink.deliver(watcher, out, current)) {
      this.scheduleCatchUp();
      return true;
    }
    watcher.nextRevision = through + 1;
    if (through < current) this.scheduleCatchUp();
    else this.subscribe(watcher);
    return true;
  }
}

export type { KeyValue };
