/**
 * `dkv.v1.Watch/WatchPrefix` (a DKV extension): snapshot + live. In one step on the event loop the
 * keys under the prefix are read at the current revision R and a watcher is registered from R + 1,
 * so nothing can fall between the snapshot and the first event. The snapshot goes out in pieces
 * (keys in order, `snapshot_done` on the last); events follow, whole revisions in order.
 */
import type * as grpc from '@grpc/grpc-js';
import { type KeyValue, type MvccEvent, prefixEnd } from '../../storage/index.js';
import { eventToWire, keyValueToWire } from '../engines/kv/index.js';
import { WatchHub, Watcher, type WatchSink, watchLimits } from '../engines/watch/index.js';
import { dkvRoot, int64Saturated, type Int64 } from '../etcd-proto.js';
import { dkvError, errorTable, toGrpcError } from '../errors.js';
import { rangeAccess } from '../engines/index.js';
import { clientError } from '../error-mapping.js';
import { AUTH_OFF, type AuthGate } from './auth/gate.js';
import { type Incoming, serviceDefinition } from './grpc-service.js';
import { type BufferedBytes, ResponseQueue, grpcFrames } from './response-queue.js';

/** Keys per snapshot response (each piece stays well under gRPC's message limits). */
export const prefixSnapshotKeysPerResponse = 1000;

export interface PrefixWatchContext {
  readonly hub: () => WatchHub;
  readonly store: () => { revision: number; compactRevision: number; range(r: { key: Uint8Array; rangeEnd?: Uint8Array; revision?: number }): { kvs: KeyValue[] } };
  /** Counts the bytes every stream holds for slow clients (for metrics). */
  readonly buffered?: BufferedBytes;
  /** The caller must be able to read the whole prefix (checked when the stream starts). */
  readonly gate: AuthGate;
  /** Whether the hub's store serves every key of `range` (another store's keys are refused). */
  readonly serves: (range: { key: Uint8Array; rangeEnd?: Uint8Array }) => boolean;
}

interface WireRequest {
  prefix: Uint8Array;
  snapshot: boolean;
  prev_kv: boolean;
  start_revision: Int64;
}



/** The keys of a prefix, as a permission check names them (the empty prefix: every key). */
function prefixRange(prefix: Uint8Array): { key: Uint8Array; rangeEnd: Uint8Array } {
  return prefix.length === 0 ? { key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) } : { key: prefix, rangeEnd: prefixEnd(prefix) };
}

class PrefixStream implements WatchSink {
  private readonly out: ResponseQueue;
  private closed = false;
  private watcher: Watcher | undefined;

  constructor(
    private readonly call: grpc.ServerWritableStream<Incoming<WireRequest>, object>,
    private readonly ctx: PrefixWatchContext,
    serialize: (response: object) => Buffer,
  ) {
    this.out = new ResponseQueue(call, watchLimits.watchStreamBufferBytesMax, {
      onRoom: () => {
        this.ctx.hub().onRoom();
        this.endIfDone();
      },
      onEmpty: () => this.endIfDone(),
      tally: ctx.buffered,
      frames: grpcFrames(serialize),
    });
    call.on('cancelled', () => this.close());
    call.on('close', () => this.close());
    call.on('error', () => this.close());
    this.start(call.request.message);
  }

  private start(r: WireRequest): void {
    const prefix = r.prefix ?? new Uint8Array(0);
    const store = this.ctx.store();
    const key = prefix.length === 0 ? Uint8Array.of(0) : prefix;
    const storeEnd = prefixEnd(prefix);
    // Saturated: a start revision past 2^53 is still one the store never reaches.
    let from = int64Saturated(r.start_revision);
    if (r.snapshot === true) {
      // Read and register in the same step: the next event applied is R + 1 at the earliest.
      const revision = store.revision;
      const kvs = store.range({ key, rangeEnd: storeEnd }).kvs;
      for (let i = 0; i < kvs.length || i === 0; i += prefixSnapshotKeysPerResponse) {
        const piece = kvs.slice(i, i + prefixSnapshotKeysPerResponse);
        const done = i + prefixSnapshotKeysPerResponse >= kvs.length;
        let bytes = 64;
        for (const kv of piece) bytes += kv.key.length + kv.value.length + 32;
        this.push({ revision, snapshot_kvs: piece.map(keyValueToWire), snapshot_done: done }, bytes);
        if (done) break;
      }
      from = revision + 1;
    } else if (from <= 0) {
      from = store.revision + 1;
    }
    this.watcher = new Watcher(0, { key, rangeEnd: storeEnd, startRevision: from, noPut: false, noDelete: false, prevKv: r.prev_kv === true }, this);
    this.ctx.hub().add(this.watcher);
  }

  hasRoom(): boolean {
    return !this.closed && this.out.hasRoom();
  }

  deliver(_watcher: Watcher, events: readonly MvccEvent[], headerRevision: number): boolean {
    if (this.closed) return true;
    if (!this.hasRoom()) return false;
    if (!this.stillPermitted()) return true;
    let bytes = 64;
    for (const e of events) bytes += e.kv.key.length + e.kv.value.length + 48;
    this.push(
      {
        revision: headerRevision,
        events: events.map(eventToWire),
      },
      bytes,
    );
    return true;
  }

  /** The auth state the caller's read permission was last checked at (AuthGate.state). */
  private authCheckedAt = AUTH_OFF;

  /**
   * Whether the stream may still be sent events: its caller's permission on the prefix is checked
   * again whenever the auth state changed (found again from the stream's token); a caller that
   * lost it ends the stream with PERMISSION_DENIED.
   */
  private stillPermitted(): boolean {
    const check = this.ctx.gate.recheck(this.call, this.authCheckedAt, () => rangeAccess(prefixRange(this.call.request.message.prefix ?? new Uint8Array(0))));
    if (check.refusal !== undefined) {
      this.close();
      this.call.emit('error', toGrpcError(clientError(check.refusal)));
      return false;
    }
    this.authCheckedAt = check.checkedAt;
    return true;
  }

  canceled(_watcher: Watcher, reason: string): void {
    this.push({ revision: this.ctx.store().revision, canceled: true, cancel_reason: reason }, 64);
    this.endAfterFlush = true;
    this.endIfDone();
  }

  compacted(_watcher: Watcher, compactRevision: number): void {
    this.push({ revision: this.ctx.store().revision, canceled: true, compact_revision: compactRevision, cancel_reason: errorTable.compacted.message }, 64);
    this.endAfterFlush = true;
    this.endIfDone();
  }

  private endAfterFlush = false;

  private push(response: Record<string, unknown>, bytes: number): void {
    if (!this.closed) this.out.push(response, bytes);
  }

  /** After a cancel: end the call once everything before it is written. */
  private endIfDone(): void {
    if (this.endAfterFlush && this.out.isEmpty && !this.closed) {
      this.close();
      this.call.end();
    }
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.watcher !== undefined) this.ctx.hub().remove(this.watcher);
    this.out.close();
  }
}

export function createPrefixWatchService(ctx: PrefixWatchContext): { definition: ReturnType<typeof serviceDefinition>; implementation: grpc.UntypedServiceImplementation } {
  const definition = serviceDefinition('dkv.v1.Watch', dkvRoot());
  const serialize = definition['WatchPrefix']!.responseSerialize as (response: object) => Buffer;
  const implementation: grpc.UntypedServiceImplementation = {
    WatchPrefix: (call: grpc.ServerWritableStream<Incoming<WireRequest>, object>) => {
      if (!ctx.serves(prefixRange(call.request.message.prefix ?? new Uint8Array(0)))) {
        call.emit('error', toGrpcError(dkvError('watch-other-store')));
        return;
      }
      if (!ctx.gate.enabled) {
        new PrefixStream(call, ctx, serialize);
        return;
      }
      // Refused only once this member's auth state has caught up with the cluster's (AuthGate.permitted).
      const access = () => ({ admin: false as const, keys: rangeAccess(prefixRange(call.request.message.prefix ?? new Uint8Array(0))) });
      ctx.gate
        .permitted(call, access)
        .then(() => {
          if (!call.cancelled) new PrefixStream(call, ctx, serialize);
        })
        .catch((error: unknown) => call.emit('error', toGrpcError(clientError(error))));
    },
  };
  return { definition, implementation };
}
