/**
 * `DkvClient.watchPrefix(prefix, { snapshot: true })`: the building block for config consumers —
 * the keys under a prefix at revision R, then every change after R. If the node it talks to goes
 * away, the watch moves to the next endpoint and resumes from the last revision it delivered + 1,
 * so the consumer sees every change once and in order; if that history was compacted meanwhile,
 * the watch ends with an error saying so (take a new snapshot).
 */
import type * as grpc from '@grpc/grpc-js';
import { int64Exact, int64Safe, type Int64, WireValueError } from '../etcd-proto.js';
import { EtcdChannel, methodCodec } from './etcd-channel.js';

/** Responses stay protobufjs messages (int64 as Long, converted once by `int64`). */
const watchPrefixMethod = methodCodec<object>('dkv.v1.Watch', 'WatchPrefix', 'message');

/** How long the client waits before trying the next endpoint after a stream broke. */
export const reconnectDelayMs = 100;

export interface DkvClientOptions {
  /** host:port of every member; the client tries them in order. */
  readonly endpoints: readonly string[];
  readonly credentials?: grpc.ChannelCredentials;
}

export interface WatchedKeyValue {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  /** Lease id, exact over the whole int64 range; 0n = none. */
  readonly lease: bigint;
}

export interface WatchedEvent {
  readonly type: 'put' | 'delete';
  readonly kv: WatchedKeyValue;
  readonly prevKv?: WatchedKeyValue;
}

export interface PrefixWatchOptions {
  /** Deliver the current keys first (default true). */
  readonly snapshot?: boolean;
  readonly prevKv?: boolean;
  /** Without snapshot: the first revision wanted. */
  readonly startRevision?: number;
}

export interface PrefixWatchHandlers {
  /** The keys under the prefix at `revision` (called once, before any event). */
  onSnapshot?(kvs: WatchedKeyValue[], revision: number): void;
  /** Changes of one or more whole revisions, in order. */
  onEvents?(events: WatchedEvent[], revision: number): void;
  /** The watch cannot go on (its history was compacted); it is closed. */
  onError?(error: Error): void;
}

interface WireKv {
  key: Uint8Array;
  value: Uint8Array;
  create_revision: Int64;
  mod_revision: Int64;
  version: Int64;
  lease: Int64;
}

function fromWire(kv: WireKv): WatchedKeyValue {
  return {
    key: kv.key,
    value: kv.value,
    createRevision: int64Safe(kv.create_revision, 'create_revision'),
    modRevision: int64Safe(kv.mod_revision, 'mod_revision'),
    version: int64Safe(kv.version, 'version'),
    lease: int64Exact(kv.lease),
  };
}

export class PrefixWatch {
  /** The last revision delivered (snapshot or events); a resume starts after it. */
  revision = 0;
  private closed = false;
  private call: grpc.ClientReadableStream<object> | undefined;
  private snapshotKvs: WatchedKeyValue[] = [];
  private snapshotPending: boolean;
  private endpointIndex = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly client: DkvClient,
    private readonly prefix: Uint8Array,
    private readonly options: PrefixWatchOptions,
    private readonly handlers: PrefixWatchHandlers,
  ) {
    this.snapshotPending = options.snapshot !== false;
    if (!this.snapshotPending && options.startRevision !== undefined) this.revision = options.startRevision - 1;
    this.open();
  }

  private open(): void {
    if (this.closed) return;
    const resume = !this.snapshotPending && this.revision > 0;
    const request = {
      prefix: this.prefix,
      snapshot: this.snapshotPending,
      prev_kv: this.options.prevKv === true,
      start_revision: resume ? this.revision + 1 : 0,
    };
    const call = this.client.channel(this.endpointIndex).serverStream(watchPrefixMethod, request);
    this.call = call;
    call.on('data', (response: object) => {
      try {
        this.onResponse(response as Record<string, unknown>);
      } catch (error) {
        // A response this client cannot read exactly (a revision past 2^53) ends the watch.
        if (!(error instanceof WireValueError)) throw error;
        this.close();
        this.handlers.onError?.(error);
      }
    });
    call.on('error', () => this.reconnect(call));
    call.on('end', () => this.reconnect(call));
  }

  private onResponse(r: Record<string, unknown>): void {
    if (this.closed) return;
    const revision = int64Safe(r.revision as Int64, 'revision');
    if (r.canceled === true) {
      this.close();
      const compact = int64Safe(r.compact_revision as Int64, 'compact_revision');
      this.handlers.onError?.(new Error(`watch canceled: ${String(r.cancel_reason ?? '')}${compact > 0 ? ` (compacted at ${compact})` : ''}`));
      return;
    }
    const kvs = (r.snapshot_kvs as WireKv[] | undefined) ?? [];
    if (this.snapshotPending) {
      for (const kv of kvs) this.snapshotKvs.push(fromWire(kv));
      if (r.snapshot_done === true) {
        this.snapshotPending = false;
        this.revision = revision;
        const all = this.snapshotKvs;
        this.snapshotKvs = [];
        this.handlers.onSnapshot?.(all, revision);
      }
      return;
    }
    const events = ((r.events as Array<{ type: number; kv: WireKv; prev_kv?: WireKv | null }> | undefined) ?? []).map((e): WatchedEvent => {
      const kv = fromWire(e.kv);
      return e.prev_kv ? { type: e.type === 1 ? 'delete' : 'put', kv, prevKv: fromWire(e.prev_kv) } : { type: e.type === 1 ? 'delete' : 'put', kv };
    });
    if (events.length === 0) return;
    this.revision = events[events.length - 1]!.kv.modRevision;
    this.handlers.onEvents?.(events, revision);
  }

  /** The stream broke: try the next endpoint, resuming after the last revision delivered. */
  private reconnect(call: grpc.ClientReadableStream<object>): void {
    if (this.closed || call !== this.call) return;
    this.call = undefined;
    // A snapshot cut off halfway is taken again from the start.
    this.snapshotKvs = [];
    this.endpointIndex = (this.endpointIndex + 1) % this.client.endpointCount;
    this.timer = setTimeout(() => this.open(), reconnectDelayMs);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    this.call?.cancel();
    this.call = undefined;
  }
}

export class DkvClient {
  private readonly channels: EtcdChannel[];

  constructor(options: DkvClientOptions) {
    if (options.endpoints.length === 0) throw new TypeError('DkvClient needs at least one endpoint');
    this.channels = options.endpoints.map((e) => new EtcdChannel(e, { credentials: options.credentials }));
  }

  get endpointCount(): number {
    return this.channels.length;
  }

  /** @internal */
  channel(index: number): EtcdChannel {
    return this.channels[index % this.channels.length]!;
  }

  watchPrefix(prefix: string | Uint8Array, options: PrefixWatchOptions = {}, handlers: PrefixWatchHandlers = {}): PrefixWatch {
    const bytes = typeof prefix === 'string' ? new TextEncoder().encode(prefix) : prefix;
    return new PrefixWatch(this, bytes, options, handlers);
  }

  close(): void {
    for (const channel of this.channels) channel.close();
  }
}
