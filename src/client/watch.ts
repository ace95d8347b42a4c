/**
 * Watches that survive failover: `Watcher` (etcd's Watch on one key or range) and `PrefixWatch`
 * (a snapshot of a prefix, then every change after it). Each remembers the next revision it
 * owes its consumer; when the stream breaks it reopens on the server the client prefers then,
 * from that revision, so the consumer sees every change once and in order. History compacted
 * past that revision ends the watch with `DkvError` COMPACTED.
 */
import { strict as assert } from 'node:assert';
import { AsyncQueue } from './async-queue.js';
import { Backoff } from './backoff.js';
import { abortedError, type ClientCore, fatalStreamError, isAborted, type Server } from './core.js';
import type { Decoded, WatchStream } from './etcd-channel.js';
import { DkvError } from './errors.js';
import { type RangeOptions, type RangeResult, type RangeSelector } from './kv.js';
import { eventFromWire, headerFromWire, type KeyValue, kvFromWire, listOf, prefixRangeEnd, revisionFromWire, type WatchEvent } from './wire.js';
import { fromRpcError } from './errors.js';
import { errorCodeOfMessage } from '../errors.js';
import { grpcStatus } from './etcd-channel.js';

/** The start of the server's message for a resume token that names other shards than the prefix's. */
const RESUME_MISMATCH = 'dkv: the resume token does not name the shards of the prefix';

/**
 * A watch canceled because its keys moved to a split's child, or refused by a member whose map
 * lags the split: the child keeps the parent's revisions and history, so it resumes from the
 * revision owed.
 */
function movedBySplit(reason: string): boolean {
  const code = errorCodeOfMessage(reason);
  return code === 'watch-shard-split' || code === 'wrong-shard';
}

/** A watch refused by a member that hosts no replica of its placed shard. */
function notHostedThere(reason: string): boolean {
  return errorCodeOfMessage(reason) === 'shard-not-hosted';
}

/**
 * Times in a row a watch is opened again after `shard-not-hosted` (the routes asked again each
 * time, with the reconnect backoff between) before it fails. It fails at once when the routes
 * say that none of the configured servers hosts the shard.
 */
export const watchNotHostedRetriesMax = 10;

/** Options of `watch`. */
export interface WatchOptions extends RangeSelector {
  /** The first revision wanted (default: changes after the watch is created). */
  readonly startRevision?: number;
  /** Events carry the key's previous version. */
  readonly prevKv?: boolean;
  /** Leave out puts or deletes. */
  readonly filters?: ReadonlyArray<'noPut' | 'noDelete'>;
  /** The server sends empty batches (`progressNotify: true`) when idle, saying up to which revision nothing happened. */
  readonly progressNotify?: boolean;
  /** Ends the watch (the iteration ends without an error). */
  readonly signal?: AbortSignal;
  /**
   * Batches buffered for a slow consumer before the watch stops reading (default
   * `watchBufferedBatchesMax`); it resumes from the next revision owed once half are consumed.
   */
  readonly bufferedBatchesMax?: number;
}

/** Batches a watch buffers for a consumer that does not keep up, by default. */
export const watchBufferedBatchesMax = 1_000;

/** What a watch yields: the events of one or more whole revisions, in order. */
export interface WatchBatch {
  readonly events: WatchEvent[];
  /** The store's revision when the batch was sent. */
  readonly revision: number;
  /** An idle notification: no events, nothing happened up to `revision`. */
  readonly progressNotify: boolean;
}

const filterValues = { noPut: 0, noDelete: 1 } as const;

/** A watch on a key or range: iterate it with `for await`; `close()` ends it. */
export class Watcher implements AsyncIterable<WatchBatch> {
  /** Resolves with the revision the server created the watch at (the first time); rejects if it never was. */
  readonly ready: Promise<number>;
  private resolveReady!: (revision: number) => void;
  private rejectReady!: (error: unknown) => void;
  private readonly queue: AsyncQueue<WatchBatch>;
  /** The next revision the consumer is owed; 0 = not known yet (changes from now). */
  private nextRevision: number;
  private stream: WatchStream | undefined;
  private server: Server | undefined;
  private closed = false;
  private created = false;
  /** Reading stopped because the consumer fell `bufferMax` batches behind. */
  private paused = false;
  /** Opens again in a row after `shard-not-hosted` (reset once a server created the watch). */
  private notHostedRetries = 0;
  private readonly bufferMax: number;
  private readonly backoff: Backoff;
  private readonly untrack: () => void;
  private readonly onAbort = (): void => this.close();

  /** @internal */
  constructor(
    private readonly core: ClientCore,
    private readonly key: Buffer,
    private readonly rangeEnd: Buffer | undefined,
    private readonly options: WatchOptions,
  ) {
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {});
    this.bufferMax = options.bufferedBatchesMax ?? watchBufferedBatchesMax;
    if (!Number.isSafeInteger(this.bufferMax) || this.bufferMax < 2) throw new DkvError('INVALID_ARGUMENT', `bufferedBatchesMax must be an integer >= 2 (got ${this.bufferMax})`);
    this.queue = new AsyncQueue(
      () => this.close(),
      () => this.resumeIfDrained(),
    );
    this.nextRevision = options.startRevision ?? 0;
    this.backoff = new Backoff(core.options.reconnect);
    this.untrack = core.track(this);
    if (isAborted(options.signal)) {
      this.close();
      return;
    }
    options.signal?.addEventListener('abort', this.onAbort, { once: true });
    void this.open(false);
  }

  /** The next revision this watch will deliver (0 while not known). */
  get revision(): number {
    return this.nextRevision;
  }

  /** Batches received and not yet consumed (at most `bufferedBatchesMax`). */
  get buffered(): number {
    return this.queue.buffered;
  }

  /** The consumer fell behind: stop reading (closing the stream) until it catches up; nothing is lost, the resume starts at nextRevision. */
  private pause(): void {
    this.paused = true;
    const stream = this.stream;
    this.stream = undefined;
    stream?.close();
  }

  private resumeIfDrained(): void {
    if (!this.paused || this.closed || this.queue.buffered > this.bufferMax / 2) return;
    this.paused = false;
    void this.open(false);
  }

  private async open(delay: boolean): Promise<void> {
    let server: Server;
    try {
      if (delay) await this.core.sleep(this.backoff.next(), this.core.closeSignal);
      // A key of a shard placed on some members: a server that hosts it.
      server = await this.core.pick('read', this.backoff, this.core.closeSignal, undefined, this.key);
      if (this.closed) return;
      if (!(await this.core.connect(server, this.core.options.connectTimeoutMs))) return void this.open(false);
    } catch {
      return; // the client closed
    }
    if (this.closed) return;
    this.server = server;
    const stream = server.channel.watch({
      onResponse: (response) => this.onResponse(stream, server, response),
      onEnd: (error) => this.onEnd(stream, server, error),
    });
    this.stream = stream;
    stream.send({
      create_request: {
        key: this.key,
        ...(this.rangeEnd === undefined ? {} : { range_end: this.rangeEnd }),
        start_revision: this.nextRevision,
        prev_kv: this.options.prevKv === true,
        progress_notify: this.options.progressNotify === true,
        filters: (this.options.filters ?? []).map((f) => filterValues[f]),
      },
    });
  }

  private onResponse(stream: WatchStream, server: Server, r: Decoded): void {
    if (this.closed || stream !== this.stream) return;
    const revision = headerFromWire(r.header).revision;
    if (r.canceled === true) {
      const compactRevision = revisionFromWire(r.compact_revision, 'compact_revision');
      const reason = String(r.cancel_reason ?? '');
      // Refused where the key's placed shard is not hosted: opened again on a server that hosts
      // it once the routes say which (asked again now), a few times, then failed with the reason.
      if (compactRevision === 0 && notHostedThere(reason) && this.notHostedRetries < watchNotHostedRetriesMax && this.core.placedHostCount(this.key) !== 0) {
        this.notHostedRetries++;
        this.core.askRoutes();
        this.stream = undefined;
        stream.close();
        void this.open(true);
        return;
      }
      if (compactRevision === 0 && movedBySplit(reason)) {
        // The keys moved to a split's child, which keeps their revisions and history (or this
        // member's map lags the split): the watch goes on from the revision owed (or, created
        // nowhere yet, from now), on a new stream.
        this.stream = undefined;
        stream.close();
        void this.open(true);
        return;
      }
      this.fail(
        compactRevision > 0
          ? new DkvError('COMPACTED', `watch: revision ${this.nextRevision} was compacted (compact revision ${compactRevision})`, { compactRevision, serverMessage: reason })
          : new DkvError('UNKNOWN', `watch canceled by the server: ${reason}`, { serverMessage: reason }),
      );
      return;
    }
    if (r.created === true) {
      this.core.markAvailable(server);
      this.backoff.reset();
      this.notHostedRetries = 0;
      if (this.nextRevision === 0) this.nextRevision = revision + 1;
      if (!this.created) {
        this.created = true;
        this.resolveReady(revision);
      }
      return;
    }
    const events = listOf(r.events)
      .map(eventFromWire)
      .filter((e) => e.kv.modRevision >= this.nextRevision);
    if (events.length > 0) {
      const last = events[events.length - 1]!.kv.modRevision;
      // invariant: deliveries strictly increase, so a resume from nextRevision repeats nothing
      assert(last >= this.nextRevision);
      this.nextRevision = last + 1;
      this.queue.push({ events, revision, progressNotify: false });
    } else if (listOf(r.events).length === 0) {
      this.nextRevision = Math.max(this.nextRevision, revision + 1);
      this.queue.push({ events: [], revision, progressNotify: true });
    }
    if (this.queue.buffered >= this.bufferMax) this.pause();
  }

  private onEnd(stream: WatchStream, server: Server, error: unknown): void {
    if (this.closed || stream !== this.stream) return;
    this.stream = undefined;
    const fatal = fatalStreamError(error, 'watch');
    if (fatal !== undefined) {
      this.fail(fatal);
      return;
    }
    this.core.streamFailed(server, error ?? new Error('the watch stream ended'), 'watch');
    void this.open(true);
  }

  private fail(error: DkvError): void {
    this.rejectReady(error);
    this.queue.fail(error);
    this.shutDown();
  }

  private shutDown(): void {
    if (this.closed) return;
    this.closed = true;
    this.options.signal?.removeEventListener('abort', this.onAbort);
    this.untrack();
    this.stream?.close();
    this.stream = undefined;
  }

  /** Ends the watch: the iteration ends after what was already delivered to it. */
  close(): void {
    if (this.closed) return;
    this.rejectReady(this.core.closed ? this.core.closedError() : abortedError());
    this.shutDown();
    this.queue.end();
  }

  /** The batches, in order (one iteration per watch). */
  [Symbol.asyncIterator](): AsyncIterator<WatchBatch> {
    return this.queue;
  }
}

/** Options of `watchPrefix`. */
export interface PrefixWatchOptions {
  /** Yield the current keys first (default true). */
  readonly snapshot?: boolean;
  readonly prevKv?: boolean;
  /** Without a snapshot: the first revision wanted (default: from now). */
  readonly startRevision?: number;
  /** Ends the watch (the iteration ends without an error). */
  readonly signal?: AbortSignal;
}

/**
 * What a prefix watch yields: first the snapshot (when asked for), then changes. On DKV a prefix
 * may span shards (stores mounted under it), each with its own revisions: `shard` names the
 * shard an item's revision belongs to, and a snapshot lists each shard's revision (`shards`).
 */
export type PrefixWatchItem =
  /** The keys under the prefix at `revision` (each shard's in `shards`, on DKV). */
  | { readonly type: 'snapshot'; readonly kvs: KeyValue[]; readonly revision: number; readonly shards?: ReadonlyArray<{ readonly shard: number; readonly revision: number }> }
  /** Changes of one or more whole revisions after the snapshot, in order (in their shard's order). */
  | { readonly type: 'events'; readonly events: WatchEvent[]; readonly revision: number; readonly shard?: number };

/** Items a prefix watch buffers for a slow consumer before it stops reading its stream. */
export const prefixWatchBufferedItemsMax = 1_000;

/** A promise with its settle functions (Promise.withResolvers is Node 22+). */
function resolvers<T>(): { promise: Promise<T>; resolve(value: T): void; reject(error: unknown): void } {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Keys a snapshot reads per Range (all at one revision). */
export const snapshotPageKeysMax = 1_000;

/** A range reader for the snapshot (the client's `range`, with its retries). */
export type RangeReader = (key: Buffer, options: RangeOptions & { readonly signal?: AbortSignal }) => Promise<RangeResult>;

/**
 * Snapshot + live on a prefix. On DKV through `dkv.v1.Watch/WatchPrefix`: the server reads the
 * snapshot and starts watching in one step, in every shard that serves the prefix; the watch
 * keeps each shard's next revision (the resume token) and resumes from it on another server
 * when its stream breaks, so each change comes once, in its shard's order. On etcd (which has no
 * `dkv.v1`): the keys at revision R (read with Range, paged at R), then a `Watcher` from R + 1,
 * which resumes across failover as `Watcher` does.
 */
export class PrefixWatch implements AsyncIterable<PrefixWatchItem> {
  private readonly abort = new AbortController();
  private readonly queue: AsyncQueue<PrefixWatchItem>;
  private watcher: Watcher | undefined;
  /** Settles when the live part starts (or rejects when the watch ends first). */
  private readonly startWatcher = resolvers<{ readonly ready: Promise<number> }>();
  private readonly watcherStarted = this.startWatcher.promise;
  private readonly untrack: () => void;
  /** The last revision delivered (snapshot or events; of the item's own shard). */
  revision = 0;
  /** Per shard, the next revision owed (DKV only): what a resume asks for. */
  private readonly next = new Map<number, number>();
  /** How many shards serve the prefix (the server says so): the token is whole once `next` has them all. */
  private shardCount = 0;
  /**
   * `next` was whole once: a resume with it is always right, even when a stream after a split
   * broke before each new shard said where it starts (the server maps a split's children to
   * their ancestor's revision).
   */
  private tokenWhole = false;
  private readonly backoff: Backoff;

  /** @internal */
  constructor(
    private readonly core: ClientCore,
    private readonly prefix: Buffer,
    private readonly options: PrefixWatchOptions,
    private readonly readRange: RangeReader,
  ) {
    this.queue = new AsyncQueue(() => this.close());
    this.backoff = new Backoff(core.options.reconnect);
    this.watcherStarted.catch(() => {});
    this.untrack = core.track(this);
    if (isAborted(options.signal)) this.close();
    else {
      options.signal?.addEventListener('abort', () => this.close(), { once: true });
      void this.run().catch((error: unknown) => {
        this.startWatcher.reject(error);
        if (this.abort.signal.aborted) this.queue.end();
        else this.queue.fail(error);
        this.close();
      });
    }
  }

  /** The resume token: for each shard watched, the next revision owed (empty on etcd, or before the watch started). */
  get resumeToken(): ReadonlyMap<number, number> {
    return new Map(this.next);
  }

  private async run(): Promise<void> {
    if (await this.runOnDkv()) return;
    let start = this.options.startRevision;
    if (this.options.snapshot !== false) {
      const { kvs, revision } = await this.snapshot();
      this.revision = revision;
      this.queue.push({ type: 'snapshot', kvs, revision });
      start = revision + 1;
    }
    if (this.abort.signal.aborted) return;
    const watcher = new Watcher(this.core, this.prefix, prefixRangeEnd(this.prefix), { startRevision: start, prevKv: this.options.prevKv, signal: this.abort.signal });
    this.watcher = watcher;
    this.startWatcher.resolve(watcher);
    for await (const batch of watcher) {
      if (batch.events.length === 0) continue;
      this.revision = batch.events[batch.events.length - 1]!.kv.modRevision;
      this.queue.push({ type: 'events', events: batch.events, revision: batch.revision });
      // Pull from the watch only as fast as the consumer pulls from here, so its bound holds.
      await this.queue.drained(1);
    }
    this.queue.end();
  }

  /**
   * The watch through `dkv.v1.Watch/WatchPrefix`, stream after stream until it ends; false when
   * the first server has no such call (etcd), for the Range + Watch way instead.
   */
  private async runOnDkv(): Promise<boolean> {
    let first = true;
    let snapshotDone = this.options.snapshot === false;
    for (;;) {
      let server: Server;
      try {
        server = await this.core.pick('read', this.backoff, this.abort.signal, undefined, this.prefix);
        if (!(await this.core.connect(server, this.core.options.connectTimeoutMs))) continue;
      } catch {
        return true; // closed
      }
      if (this.abort.signal.aborted) return true;
      // A first stream broken before every shard said where it starts delivered nothing yet: begin again.
      if (!this.tokenWhole && this.next.size < this.shardCount) this.next.clear();
      const resume = [...this.next].map(([shard, revision]) => ({ shard, revision }));
      const request = {
        prefix: this.prefix,
        prev_kv: this.options.prevKv === true,
        ...(!snapshotDone ? { snapshot: true } : resume.length > 0 ? { resume } : { start_revision: this.options.startRevision ?? 0 }),
      };
      let ended = await this.stream(server, request, !snapshotDone, () => (snapshotDone = true));
      if (ended === 'done') return true;
      // No dkv.v1 there (etcd): Range + Watch, unless this watch already delivered something.
      if (ended === 'unimplemented' && (first || (this.next.size === 0 && this.revision === 0))) return false;
      if (ended === 'unimplemented') ended = new DkvError('NOT_SUPPORTED', 'watch: the server has no dkv.v1.Watch to resume this watch on');
      first = false;
      if (ended !== 'retry') {
        this.queue.fail(ended);
        this.close();
        return true;
      }
      try {
        await this.core.sleep(this.backoff.next(), this.abort.signal);
      } catch {
        return true;
      }
    }
  }

  /** One WatchPrefix stream: 'done' when the watch was closed, 'retry' when the stream broke, or why the watch ends. */
  private stream(server: Server, request: object, withSnapshot: boolean, snapshotDelivered: () => void): Promise<'done' | 'retry' | 'unimplemented' | DkvError> {
    return new Promise((resolve) => {
      // The snapshot's pieces, held until it is complete (a stream broken half way starts it again).
      let pending: KeyValue[] | undefined = withSnapshot ? [] : undefined;
      let shards: Array<{ shard: number; revision: number }> = [];
      let settled = false;
      const settle = (outcome: 'done' | 'retry' | 'unimplemented' | DkvError): void => {
        if (settled) return;
        settled = true;
        this.abort.signal.removeEventListener('abort', onAbort);
        call.close();
        resolve(outcome);
      };
      const onAbort = (): void => settle('done');
      const call = server.channel.prefixWatch(request, {
        onResponse: (r) => {
          if (settled) return;
          this.core.markAvailable(server);
          this.backoff.reset();
          const shard = Number(r.shard ?? 0);
          const revision = revisionFromWire(r.revision, 'revision');
          if (Number(r.shard_count ?? 0) > 0) this.shardCount = Number(r.shard_count);
          if (r.canceled === true) {
            const compactRevision = revisionFromWire(r.compact_revision, 'compact_revision');
            const reason = String(r.cancel_reason ?? '');
            const owed = this.next.get(shard) ?? 0;
            // A shard split under the prefix: the token resumes in the parent and its children.
            if (compactRevision === 0 && movedBySplit(reason) && pending === undefined) return settle('retry');
            settle(
              compactRevision > 0
                ? new DkvError('COMPACTED', `watch: revision ${owed} of shard ${shard} was compacted (compact revision ${compactRevision})`, { compactRevision, serverMessage: reason })
                : new DkvError(errorCodeOfMessage(reason) === 'watch-other-store' ? 'FAILED_PRECONDITION' : 'UNKNOWN', `watch canceled by the server: ${reason}`, { serverMessage: reason }),
            );
            return;
          }
          if (pending !== undefined) {
            pending.push(...listOf(r.snapshot_kvs).map(kvFromWire));
            if (!shards.some((s) => s.shard === shard)) shards.push({ shard, revision });
            if (r.snapshot_done !== true) return;
            for (const s of shards) this.next.set(s.shard, s.revision + 1);
            this.tokenWhole ||= this.next.size >= this.shardCount;
            this.revision = shards[shards.length - 1]!.revision;
            this.queue.push({ type: 'snapshot', kvs: pending, revision: shards[0]!.revision, shards });
            pending = undefined;
            shards = [];
            snapshotDelivered();
            this.startWatcher.resolve({ ready: Promise.resolve(this.revision) });
            return;
          }
          const events = listOf(r.events)
            .map(eventFromWire)
            .filter((e) => e.kv.modRevision >= (this.next.get(shard) ?? 0));
          if (events.length > 0) {
            const last = events[events.length - 1]!.kv.modRevision;
            this.next.set(shard, last + 1);
            this.revision = last;
            this.queue.push({ type: 'events', events, revision, shard });
          } else if (listOf(r.events).length === 0) {
            // Where the shard's watch starts, or nothing happened there up to `revision`.
            this.next.set(shard, Math.max(this.next.get(shard) ?? 0, revision + 1));
            this.tokenWhole ||= this.next.size >= this.shardCount;
            this.startWatcher.resolve({ ready: Promise.resolve(revision) });
          }
          if (this.queue.buffered >= prefixWatchBufferedItemsMax) {
            call.pause();
            void this.queue.drained(prefixWatchBufferedItemsMax / 2).then(() => call.resume());
          }
        },
        onEnd: (error) => {
          if (settled) return;
          if (this.abort.signal.aborted) return settle('done');
          if ((error as { code?: unknown } | undefined)?.code === grpcStatus.UNIMPLEMENTED) return settle('unimplemented');
          const failure = fromRpcError(error ?? new Error('the watch stream ended'), 'watch');
          // The shards that serve the prefix changed since the token was taken: only a new snapshot can go on.
          if (failure.serverMessage?.startsWith(RESUME_MISMATCH) === true) return settle(failure);
          const fatal = fatalStreamError(error, 'watch');
          if (fatal !== undefined) return settle(fatal);
          this.core.streamFailed(server, error ?? new Error('the watch stream ended'), 'watch');
          settle('retry');
        },
      });
      this.abort.signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private async snapshot(): Promise<{ kvs: KeyValue[]; revision: number }> {
    const end = prefixRangeEnd(this.prefix);
    const kvs: KeyValue[] = [];
    let revision = 0;
    let from = this.prefix;
    for (;;) {
      const page = await this.readRange(from, { rangeEnd: end, revision, limit: snapshotPageKeysMax, signal: this.abort.signal });
      if (revision === 0) revision = page.header.revision;
      kvs.push(...page.kvs);
      const last = page.kvs[page.kvs.length - 1];
      if (!page.more || last === undefined) return { kvs, revision };
      from = Buffer.concat([last.key, Buffer.from([0])]);
    }
  }

  /** A watch's `ready`: resolves once the live part is being watched (after the snapshot). */
  async ready(): Promise<number> {
    return (await this.watcherStarted).ready;
  }

  /** Ends the watch: the iteration ends after what was already delivered to it. */
  close(): void {
    if (this.abort.signal.aborted) return;
    this.abort.abort();
    this.startWatcher.reject(this.core.closed ? this.core.closedError() : abortedError());
    this.untrack();
    this.watcher?.close();
    this.queue.end();
  }

  /** The snapshot, then the changes (one iteration per watch). */
  [Symbol.asyncIterator](): AsyncIterator<PrefixWatchItem> {
    return this.queue;
  }
}
