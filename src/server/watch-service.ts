/**
 * The etcd `Watch` service: one bidirectional stream carries many watchers. Requests create,
 * cancel and ask for progress; responses carry `created`, events (a revision is never split
 * across responses, unless the client allowed `fragment`), `canceled` with `cancel_reason` or
 * `compact_revision`, and progress notifications that are sent only when true for every watcher
 * on the stream.
 */
import type * as grpc from '@grpc/grpc-js';
import { type KeyValue, type MvccEvent, compareBytes } from '../../storage/index.js';
import { eventToWire } from '../engines/kv/index.js';
import { WatchHub, Watcher, type WatchSink, watchLimits } from '../engines/watch/index.js';
import { etcdType, int64IfSafe, int64Saturated, type Int64 } from '../etcd-proto.js';
import { type DkvError, dkvError, errorTable, toGrpcError } from '../errors.js';
import { type Incoming, type StreamFrame, isMalformedFrame, serviceDefinition } from './grpc-service.js';
import { type BufferedBytes, type FrameEncoder, ResponseQueue, grpcFrames, grpcPrefixBytes, writeGrpcPrefix } from './response-queue.js';
import type { ShardHandle } from '../runtime/index.js';
import { type ServiceContext, responseHeader } from './service-common.js';
import { rangeAccess } from '../engines/index.js';

/**
 * The reason a watcher its caller may not read is refused or canceled with: etcd sends its gRPC
 * permission-denied error in this form (ErrGRPCPermissionDenied.Error()).
 */
export const watchPermissionDeniedReason = `rpc error: code = PermissionDenied desc = ${errorTable['permission-denied'].message}`;
/** etcd's id for "no watcher" / "every watcher on the stream". */
export const INVALID_WATCH_ID = -1;

/** A data shard as the watches it serves see it. */
export interface WatchedShard {
  readonly shardId: number;
  /** The shard's watch engine. */
  readonly hub: WatchHub;
  /** Its store's current revision. */
  readonly revision: () => number;
  /** Its handle (term and ids for response headers). */
  readonly handle: () => ShardHandle;
}

/** Why no shard serves a watch's range (an etcd watch is refused with its message as the cancel reason). */
export interface WatchRefusal {
  readonly refusal: DkvError;
}

export interface WatchServiceContext extends ServiceContext {
  /** The default store's shard: the headers of a stream's answers that concern no watcher. */
  readonly defaultShard: () => WatchedShard;
  /** The one shard that serves every key of `range`, or why none does (the range spans shards, or its shard no longer owns it). */
  readonly route: (range: { key: Uint8Array; rangeEnd?: Uint8Array }) => WatchedShard | WatchRefusal;
  readonly maxRequestBytes: number;
  readonly progressIntervalMs: number;
  /** Counts the bytes every stream holds for slow clients (for metrics). */
  readonly buffered?: BufferedBytes;
}

interface WireWatchRequest {
  create_request?: {
    key: Uint8Array;
    range_end: Uint8Array;
    start_revision: Int64;
    progress_notify: boolean;
    filters: number[];
    prev_kv: boolean;
    watch_id: Int64;
    fragment: boolean;
  };
  cancel_request?: { watch_id: Int64 };
  progress_request?: object;
}

function eventBytes(event: MvccEvent): number {
  const kv = event.kv;
  const prev = event.prevKv;
  return 48 + kv.key.length + kv.value.length + (prev === undefined ? 0 : 48 + prev.key.length + prev.value.length);
}

const EventType = etcdType('mvccpb.Event');
const WatchResponseType = etcdType('etcdserverpb.WatchResponse');
const ResponseHeaderType = etcdType('etcdserverpb.ResponseHeader');

/**
 * An event's encoding, made once however many watchers get it (a put watched by a thousand
 * watchers is encoded once, not a thousand times). Keyed by the event's KeyValue, which is one
 * object per event; [0] without prevKv, [1] with it.
 */
const encodedEvents = new WeakMap<KeyValue, [Uint8Array | undefined, Uint8Array | undefined]>();

export function encodeEvent(event: MvccEvent): Uint8Array {
  const withPrev = event.prevKv === undefined ? 0 : 1;
  let cached = encodedEvents.get(event.kv);
  if (cached === undefined) {
    cached = [undefined, undefined];
    encodedEvents.set(event.kv, cached);
  }
  return (cached[withPrev] ??= EventType.encode(eventToWire(event)).finish());
}

/** A response carrying events, already encoded; the stream's serializer writes it field by field. */
export class EventsResponse {
  constructor(
    public header: Uint8Array,
    readonly watchId: number,
    readonly events: Uint8Array[],
    readonly fragment: boolean,
  ) {}
}

// WatchResponse field tags (field number << 3 | wire type): header 1 and events 11 are
// length-delimited, watch_id 2 and fragment 7 are varints.
const tagHeader = (1 << 3) | 2;
const tagWatchId = 2 << 3;
const tagFragment = 7 << 3;
const tagEvent = (11 << 3) | 2;

/** Bytes of a varint of a non-negative safe integer. */
function varintBytes(value: number): number {
  let n = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    n++;
  }
  return n;
}

function writeVarint(out: Buffer, offset: number, value: number): number {
  while (value >= 0x80) {
    out[offset++] = (value % 128) | 0x80;
    value = Math.floor(value / 128);
  }
  out[offset++] = value;
  return offset;
}

/** A negative int64 is a 10-byte varint of its two's complement (protobuf's int64 encoding). */
const negativeInt64VarintBytes = 10;

function int64VarintBytes(value: number): number {
  return value < 0 ? negativeInt64VarintBytes : varintBytes(value);
}

function writeInt64Varint(out: Buffer, offset: number, value: number): number {
  if (value >= 0) return writeVarint(out, offset, value);
  let bits = BigInt.asUintN(64, BigInt(value));
  for (let i = 0; i < negativeInt64VarintBytes - 1; i++) {
    out[offset++] = Number(bits & 0x7fn) | 0x80;
    bits >>= 7n;
  }
  out[offset++] = Number(bits);
  return offset;
}

/** The encoded size of an events response's message (without the gRPC prefix). */
function eventsMessageBytes(value: EventsResponse): number {
  // watch_id is an int64: the client may choose a negative one (etcd echoes it).
  let size = 1 + varintBytes(value.header.length) + value.header.length;
  if (value.watchId !== 0) size += 1 + int64VarintBytes(value.watchId);
  if (value.fragment) size += 2;
  for (const event of value.events) size += 1 + varintBytes(event.length) + event.length;
  return size;
}

/** Writes an events response's message of `size` bytes, prefix first, at `offset`. */
function writeEventsFrame(value: EventsResponse, size: number, out: Buffer, offset: number): void {
  writeGrpcPrefix(out, offset, size);
  let at = offset + grpcPrefixBytes;
  out[at++] = tagHeader;
  at = writeVarint(out, at, value.header.length);
  out.set(value.header, at);
  at += value.header.length;
  if (value.watchId !== 0) {
    out[at++] = tagWatchId;
    at = writeInt64Varint(out, at, value.watchId);
  }
  if (value.fragment) {
    out[at++] = tagFragment;
    out[at++] = 1;
  }
  for (const event of value.events) {
    out[at++] = tagEvent;
    at = writeVarint(out, at, event.length);
    out.set(event, at);
    at += event.length;
  }
}

const controlFrames = grpcFrames((value) => WatchResponseType.encode(value).finish());

/**
 * Watch responses as whole gRPC messages, written straight into the queue's output buffer:
 * pre-encoded events by concatenation; anything else (created, canceled, progress) by protobufjs.
 */
export const watchFrames: FrameEncoder = {
  bytes(value) {
    if (!(value instanceof EventsResponse)) return controlFrames.bytes(value);
    return grpcPrefixBytes + eventsMessageBytes(value);
  },
  write(value, out, offset) {
    if (!(value instanceof EventsResponse)) controlFrames.write(value, out, offset);
    else writeEventsFrame(value, eventsMessageBytes(value), out, offset);
  },
};

/** Serializes a Watch response (the message alone, for grpc-js's own framing). */
export function serializeWatchResponse(value: object): Buffer {
  const out = Buffer.allocUnsafe(watchFrames.bytes(value));
  watchFrames.write(value, out, 0);
  return out.subarray(grpcPrefixBytes);
}

interface WatcherState {
  readonly watcher: Watcher;
  /** The shard whose changes the watcher gets (its revisions are that shard's own). */
  readonly shard: WatchedShard;
  readonly progressNotify: boolean;
  readonly fragment: boolean;
  /** Events went out since the last periodic progress tick (then no progress is due). */
  sentSinceTick: boolean;
  /** The auth state its read permission was last checked at (AuthGate.state). */
  authCheckedAt: number;
}

/**
 * etcd's watchStream.Watch refusal: a range_end (other than \0, "every key from key on") at or
 * before the key (an empty key is \0) selects no key, and the watch is refused, never registered.
 */
export function isEmptyWatchRange(key: Uint8Array | undefined, rangeEnd: Uint8Array | undefined): boolean {
  if (rangeEnd === undefined || rangeEnd.length === 0 || (rangeEnd.length === 1 && rangeEnd[0] === 0)) return false;
  return compareBytes(key !== undefined && key.length > 0 ? key : Uint8Array.of(0), rangeEnd) >= 0;
}

/**
 * Moves an etcd Watch watcher of a shard that split to the child that now serves all its keys
 * (`WatchStream.rehome`); false for any other watcher (a dkv.v1 prefix watch, an Observe), which
 * is canceled instead.
 */
export function rehomeWatcher(watcher: Watcher, to: WatchedShard): boolean {
  return watcher.sink instanceof WatchStream && watcher.sink.rehome(watcher, to);
}

/** One client stream: its watchers and a bounded queue of responses for a slow reader. */
class WatchStream implements WatchSink {
  private readonly states = new Map<number, WatcherState>();
  /** The watch engines of the stream's watchers, with how many watchers each. */
  private readonly hubs = new Map<WatchHub, number>();
  private nextAutoId = 0;
  private readonly out: ResponseQueue;
  /** Each watcher's latest events response, which may still be waiting in the queue. */
  private readonly lastQueued = new Map<number, number>();
  private closed = false;
  /** A progress request waits for every watcher to be synced. */
  private progressPending = false;
  private readonly progressTimer: NodeJS.Timeout;

  constructor(
    private readonly call: grpc.ServerDuplexStream<Incoming<WireWatchRequest>, object>,
    private readonly ctx: WatchServiceContext,
  ) {
    this.out = new ResponseQueue(call, watchLimits.watchStreamBufferBytesMax, {
      onRoom: () => {
        for (const hub of this.hubs.keys()) hub.onRoom();
      },
      tally: ctx.buffered,
      frames: watchFrames,
    });
    this.progressTimer = setInterval(() => this.progressTick(), ctx.progressIntervalMs);
    this.progressTimer.unref();
    call.on('data', (request: StreamFrame<WireWatchRequest>) => (isMalformedFrame(request) ? this.fail(request.error) : this.onRequest(request.message)));
    call.on('end', () => this.close(true));
    call.on('error', () => this.close(false));
    call.on('close', () => this.close(false));
  }

  /** A header of `shard` at `revision` (its current revision when not given). */
  private header(shard: WatchedShard, revision = shard.revision()): object {
    return responseHeader(this.ctx, shard.handle(), revision);
  }

  /** Each shard's last encoded header, reused while the revision and term stay the same. */
  private readonly encodedHeaders = new Map<number, { revision: number; term: number; bytes: Uint8Array }>();

  private headerBytes(shard: WatchedShard, revision: number): Uint8Array {
    const term = shard.handle().term();
    const cached = this.encodedHeaders.get(shard.shardId);
    if (cached !== undefined && cached.revision === revision && cached.term === term) return cached.bytes;
    const header = this.header(shard, revision) as { raft_term: number };
    const bytes = ResponseHeaderType.encode(header).finish();
    this.encodedHeaders.set(shard.shardId, { revision, term: header.raft_term, bytes });
    return bytes;
  }

  private track(state: WatcherState): void {
    this.states.set(state.watcher.id, state);
    this.hubs.set(state.shard.hub, (this.hubs.get(state.shard.hub) ?? 0) + 1);
  }

  /** Forgets a watcher (the caller tells its hub, or the hub already let it go). */
  private untrack(state: WatcherState): void {
    this.states.delete(state.watcher.id);
    this.lastQueued.delete(state.watcher.id);
    const left = (this.hubs.get(state.shard.hub) ?? 1) - 1;
    if (left === 0) this.hubs.delete(state.shard.hub);
    else this.hubs.set(state.shard.hub, left);
  }

  private onRequest(request: WireWatchRequest): void {
    if (this.closed) return;
    if (request.create_request) this.create(request.create_request);
    else if (request.cancel_request) {
      // Watch ids here are safe integers (a create with any other is refused), so an id that is
      // not one names no watcher: compared exactly, never rounded onto another.
      const id = int64IfSafe(request.cancel_request.watch_id);
      if (id !== undefined) this.cancel(id);
    }
    else if (request.progress_request) this.progressAll();
  }

  /** `caughtUp`: this member's auth state has caught up with the cluster's since the create came. */
  private create(r: NonNullable<WireWatchRequest['create_request']>, caughtUp = false): void {
    // Saturated: a start revision past 2^53 is still one the store never reaches.
    const start = int64Saturated(r.start_revision);
    // The shard whose header a refusal carries: the default store's until the range is routed.
    let shard = this.ctx.defaultShard();
    const refuse = (reason: string, watchId: number = INVALID_WATCH_ID): void => {
      this.push({ header: this.header(shard), watch_id: watchId, created: true, canceled: true, cancel_reason: reason });
    };
    if (isEmptyWatchRange(r.key, r.range_end)) return refuse(errorTable['watch-range-empty'].message);
    const routed = this.ctx.route({ key: r.key !== undefined && r.key.length > 0 ? r.key : Uint8Array.of(0), rangeEnd: r.range_end });
    if ('refusal' in routed) return refuse(routed.refusal.message);
    shard = routed;
    const current = shard.revision();
    if (start < 0) return refuse(errorTable.compacted.message);
    // A client-chosen id must be a safe integer: etcd echoes any int64 exactly, and rounding or
    // saturating would fold different ids into one, so any other is refused.
    let id = int64IfSafe(r.watch_id);
    if (id === undefined) return refuse(`${errorTable['invalid-argument'].message}: watch_id is not a safe integer (|v| < 2^53)`);
    if (id !== 0 && this.states.has(id)) return refuse(errorTable['watch-duplicate-id'].message);
    if (this.states.size >= watchLimits.watchersPerStreamMax) return refuse(errorTable['too-many-watchers'].message);
    // etcd answers a watcher its caller may not read with the id the client asked for. This
    // member's auth state may lag the cluster's (a grant, or the Authenticate of the stream's
    // token, applied elsewhere first), so it refuses only once it has caught up; the stream's
    // later requests wait meanwhile, so that the answers keep their order.
    if (!this.mayRead(r.key !== undefined && r.key.length > 0 ? r.key : Uint8Array.of(0), r.range_end)) {
      if (caughtUp) return refuse(watchPermissionDeniedReason, id);
      this.call.pause();
      this.ctx.gate
        .caughtUp()
        .then(
          () => this.resumeCreate(r),
          () => this.resumeCreate(r),
        )
        .catch((error: unknown) => this.fail(dkvError('internal', error instanceof Error ? error.message : String(error))));
      return;
    }
    if (id === 0) {
      while (this.states.has(this.nextAutoId)) this.nextAutoId++;
      id = this.nextAutoId++;
    }
    // etcd's key conventions, which the store shares: an empty key is \0 (the smallest), an empty
    // range_end the single key, range_end \0 every key >= key.
    const key = r.key !== undefined && r.key.length > 0 ? r.key : Uint8Array.of(0);
    const rangeEnd = r.range_end !== undefined && r.range_end.length > 0 ? r.range_end : undefined;
    const filters = r.filters ?? [];
    const watcher = new Watcher(
      id,
      {
        key,
        rangeEnd,
        startRevision: start === 0 ? current + 1 : start,
        noPut: filters.includes(0),
        noDelete: filters.includes(1),
        prevKv: r.prev_kv === true,
      },
      this,
    );
    this.track({ watcher, shard, progressNotify: r.progress_notify === true, fragment: r.fragment === true, sentSinceTick: false, authCheckedAt: this.ctx.gate.state });
    // `created` goes out before any event of the watcher (the hub may deliver at once). Its
    // revision is the watcher's shard's: a client resumes a watch from now at the next one.
    this.push({ header: this.header(shard, current), watch_id: id, created: true });
    shard.hub.add(watcher);
  }

  /** A create held back for the auth state to catch up, answered now; the stream's requests flow again. */
  private resumeCreate(r: NonNullable<WireWatchRequest['create_request']>): void {
    if (this.closed) return;
    this.create(r, true);
    this.call.resume();
  }

  /**
   * Whether the stream's caller may read `key`..`rangeEnd` now (always while auth is off). The
   * caller is found again from the stream's token at every check, as etcd does at every create: a
   * token that stopped working (a password change, a JWT from before an auth change) reads nothing.
   */
  private mayRead(key: Uint8Array, rangeEnd: Uint8Array | undefined): boolean {
    if (!this.ctx.gate.enabled) return true;
    try {
      this.ctx.gate.checkKeys(this.ctx.gate.caller(this.call), rangeAccess({ key, rangeEnd }));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Whether a watcher may still be sent events: its read permission is checked again whenever
   * the auth state changed since the last check, and a watcher that lost it is canceled.
   */
  private stillPermitted(state: WatcherState): boolean {
    const { key, rangeEnd } = state.watcher.options;
    const check = this.ctx.gate.recheck(this.call, state.authCheckedAt, () => rangeAccess({ key, rangeEnd }));
    if (check.refusal !== undefined) {
      this.untrack(state);
      state.shard.hub.remove(state.watcher);
      this.push({ header: this.header(state.shard), watch_id: state.watcher.id, canceled: true, cancel_reason: watchPermissionDeniedReason });
      return false;
    }
    state.authCheckedAt = check.checkedAt;
    return true;
  }

  private cancel(id: number): void {
    const state = this.states.get(id);
    if (state === undefined) return;
    this.untrack(state);
    state.shard.hub.remove(state.watcher);
    this.push({ header: this.header(state.shard), watch_id: id, canceled: true });
    this.answerProgress();
  }

  /**
   * A progress request: answered (watch_id -1, the current revision) once every watcher of the
   * stream is synced — at once if they are, else as soon as the last one catches up. An answer
   * while a watcher is behind would promise events it has not been given. Each shard has its own
   * revisions, so when the stream's watchers are on more than one shard no revision is true for
   * all of them: each watcher is then answered on its own (its id, its shard's revision), as a
   * periodic progress notification is.
   */
  private progressAll(): void {
    this.progressPending = true;
    this.answerProgress();
  }

  private answerProgress(): void {
    if (!this.progressPending) return;
    const states = [...this.states.values()];
    if (!states.every((s) => s.watcher.synced)) return;
    this.progressPending = false;
    const shards = new Set(states.map((s) => s.shard.shardId));
    if (shards.size <= 1) {
      this.push({ header: this.header(states[0]?.shard ?? this.ctx.defaultShard()), watch_id: INVALID_WATCH_ID });
      return;
    }
    for (const state of states) this.push({ header: this.header(state.shard), watch_id: state.watcher.id });
  }

  synced(): void {
    this.answerProgress();
  }

  /** Periodic progress for idle, synced watchers that asked for it. */
  private progressTick(): void {
    if (this.closed) return;
    for (const state of this.states.values()) {
      if (state.progressNotify && !state.sentSinceTick && state.watcher.synced) {
        this.push({ header: this.header(state.shard), watch_id: state.watcher.id });
      }
      state.sentSinceTick = false;
    }
  }

  // ---- WatchSink ------------------------------------------------------------------------

  hasRoom(): boolean {
    return !this.closed && this.out.hasRoom();
  }

  deliver(watcher: Watcher, events: readonly MvccEvent[], headerRevision: number): boolean {
    if (this.closed || watcher.closed) return true;
    if (!this.hasRoom()) return false;
    const state = this.states.get(watcher.id);
    if (state === undefined) return true;
    if (!this.stillPermitted(state)) return true;
    state.sentSinceTick = true;
    const header = this.headerBytes(state.shard, headerRevision);
    let bytes = 0;
    for (const e of events) bytes += eventBytes(e);
    if (!state.fragment) {
      // While the client is behind, later revisions join the watcher's response still waiting in
      // the queue (whole revisions, in order), as etcd batches for a lagging watcher.
      const seq = this.lastQueued.get(watcher.id);
      const waiting = seq === undefined ? undefined : (this.out.pending(seq) as EventsResponse | undefined);
      if (waiting !== undefined && this.out.pendingBytes(seq!) + bytes < this.ctx.maxRequestBytes) {
        for (const e of events) waiting.events.push(encodeEvent(e));
        waiting.header = header;
        this.out.grow(seq!, bytes);
        return true;
      }
    }
    if (!state.fragment || bytes < this.ctx.maxRequestBytes || events.length < 2) {
      const item = this.out.push(new EventsResponse(header, watcher.id, events.map(encodeEvent), false), bytes);
      if (!state.fragment) this.lastQueued.set(watcher.id, item);
      return true;
    }
    // Fragments: pieces under the request size limit; every piece but the last says fragment.
    let piece: Uint8Array[] = [];
    let pieceBytes = 0;
    for (let i = 0; i < events.length; i++) {
      const size = eventBytes(events[i]!);
      if (piece.length > 0 && pieceBytes + size >= this.ctx.maxRequestBytes) {
        this.push(new EventsResponse(header, watcher.id, piece, true), pieceBytes);
        piece = [];
        pieceBytes = 0;
      }
      piece.push(encodeEvent(events[i]!));
      pieceBytes += size;
    }
    this.push(new EventsResponse(header, watcher.id, piece, false), pieceBytes);
    return true;
  }

  /**
   * Takes `watcher` (removed from its hub already) over in shard `to`, from the next revision it
   * owes: a split's child, which keeps the parent's revisions and history for its keys. Same id,
   * same stream, no cancel: its events and headers are the child's from then on. False when the
   * watcher is not this stream's (any more).
   */
  rehome(watcher: Watcher, to: WatchedShard): boolean {
    const state = this.states.get(watcher.id);
    if (this.closed || state === undefined || state.watcher !== watcher) return false;
    const moved = new Watcher(watcher.id, { ...watcher.options, startRevision: watcher.nextRevision }, this);
    this.untrack(state);
    this.track({ ...state, watcher: moved, shard: to });
    to.hub.add(moved);
    return true;
  }

  canceled(watcher: Watcher, reason: string): void {
    const state = this.states.get(watcher.id);
    if (state === undefined || state.watcher !== watcher) return;
    this.untrack(state);
    this.push({ header: this.header(state.shard), watch_id: watcher.id, canceled: true, cancel_reason: reason });
    this.answerProgress();
  }

  compacted(watcher: Watcher, compactRevision: number): void {
    const state = this.states.get(watcher.id);
    if (state === undefined || state.watcher !== watcher) return;
    this.untrack(state);
    this.push({ header: this.header(state.shard), watch_id: watcher.id, canceled: true, compact_revision: compactRevision });
    this.answerProgress();
  }

  // ---- Output ---------------------------------------------------------------------------

  /** Queues a control response (created, canceled, progress) or a fragment. */
  private push(response: object, bytes = 64): void {
    if (this.closed) return;
    // Events may not join a response queued before this one: they would overtake it.
    this.lastQueued.clear();
    this.out.push(response, bytes);
  }

  /** Ends the stream with `error` as its status, after the responses already written (a frame that did not decode). */
  private fail(error: DkvError): void {
    if (this.closed) return;
    this.close(false);
    this.call.emit('error', toGrpcError(error));
  }

  private close(ended: boolean): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.progressTimer);
    for (const state of this.states.values()) state.shard.hub.remove(state.watcher);
    this.states.clear();
    this.hubs.clear();
    this.out.close();
    if (ended) this.call.end();
  }
}

export function createWatchService(ctx: WatchServiceContext): { definition: ReturnType<typeof serviceDefinition>; implementation: grpc.UntypedServiceImplementation } {
  const implementation: grpc.UntypedServiceImplementation = {
    Watch: (call: grpc.ServerDuplexStream<Incoming<WireWatchRequest>, object>) => {
      new WatchStream(call, ctx);
    },
  };
  const generic = serviceDefinition('etcdserverpb.Watch');
  const definition: typeof generic = { ...generic, Watch: { ...generic['Watch']!, responseSerialize: serializeWatchResponse } };
  return { definition, implementation };
}

export { WatchHub };
