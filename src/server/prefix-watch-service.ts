/**
 * `dkv.v1.Watch/WatchPrefix` (a DKV extension): snapshot + live. In one step on the event loop the
 * keys under the prefix are read at the current revision R and a watcher is registered from R + 1,
 * so nothing can fall between the snapshot and the first event. The snapshot goes out in pieces
 * (keys in order, `snapshot_done` on the last); events follow, whole revisions in order.
 */
import type * as grpc from '@grpc/grpc-js';
import { type KeyValue, type MvccEvent, beforeEnd, compareBytes, prefixEnd } from '../../storage/index.js';
import { eventToWire, keyValueToWire } from '../engines/kv/index.js';
import { Watcher, type WatchSink, watchLimits } from '../engines/watch/index.js';
import type { WatchRefusal, WatchedShard } from './watch-service.js';
import type { KeyRange } from '../runtime/index.js';
import { dkvRoot, int64IfSafe, int64Saturated, type Int64 } from '../etcd-proto.js';
import { DkvError, dkvError, errorTable, toGrpcError } from '../errors.js';
import { rangeAccess } from '../engines/index.js';
import { clientError } from '../error-mapping.js';
import { AUTH_OFF, type AuthGate } from './auth/gate.js';
import { type Incoming, serviceDefinition } from './grpc-service.js';
import { type BufferedBytes, ResponseQueue, grpcFrames } from './response-queue.js';

/** Keys per snapshot response (each piece stays well under gRPC's message limits). */
export const prefixSnapshotKeysPerResponse = 1000;

export interface PrefixWatchContext {
  /** The shards that serve `range`, each with its part of it, in key order; or why they cannot be watched. */
  readonly parts: (range: KeyRange) => WatchPart[] | WatchRefusal;
  /** A shard's store now (read in the same step as the watcher is registered). */
  readonly store: (shard: WatchedShard) => { revision: number; compactRevision: number; range(r: { key: Uint8Array; rangeEnd?: Uint8Array; revision?: number }): { kvs: KeyValue[] } };
  /** Counts the bytes every stream holds for slow clients (for metrics). */
  readonly buffered?: BufferedBytes;
  /** The caller must be able to read the whole prefix (checked when the stream starts). */
  readonly gate: AuthGate;
  /** The shard a split made `shard` from, by the meta shard as this member applied it (none: a mount made it). */
  readonly splitParent?: (shard: number) => number | undefined;
  /** Resolves once this member applied what the cluster committed to the shard map and the default store's cessions (ReadIndex of both). */
  readonly catchUp: () => Promise<void>;
  /**
   * Resolves once this member applied what the cluster committed to `shard` (a ReadIndex), so a
   * snapshot holds every write acknowledged before the watch (a Range is linearizable too).
   * Absent: the snapshot is read as the member has it.
   */
  readonly readIndex?: (shard: WatchedShard) => Promise<void>;
}

/** One shard's part of a watched range (etcd's conventions: rangeEnd [0] is "to the end"). */
export interface WatchPart {
  readonly shard: WatchedShard;
  readonly range: KeyRange;
}

interface WireRequest {
  prefix: Uint8Array;
  snapshot: boolean;
  prev_kv: boolean;
  start_revision: Int64;
  resume?: Array<{ shard: Int64; revision: Int64 }>;
}

/** The keys of a prefix, as a permission check names them (the empty prefix: every key). */
function prefixRange(prefix: Uint8Array): { key: Uint8Array; rangeEnd: Uint8Array } {
  return prefix.length === 0 ? { key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) } : { key: prefix, rangeEnd: prefixEnd(prefix) };
}

/**
 * Where each part's watch starts: 'snapshot' (read it now, then watch from the next revision),
 * 'now', or a revision; or the refusal. A start_revision is one shard's revision, so it is taken
 * only for a prefix in one shard. A resume names the shards that served the prefix when its
 * token was taken: each shard serving it now must be named, or have been split (`splitParent`,
 * maybe more than once) from a shard named, and every shard named must serve it now or be such
 * an ancestor (a shard missing would lose its changes; one too many names keys served elsewhere).
 * A split's child resumes from its ancestor's revision: it keeps the parent's revisions and
 * history for its keys, and the token's revision is at most the split's (the parent's watchers of
 * the moved keys are canceled as it applies the split, before any later revision of its own).
 */
export function planPrefixWatch(request: WireRequest, shards: readonly number[], splitParent: (shard: number) => number | undefined = () => undefined): Array<'snapshot' | 'now' | number> | DkvError {
  const start = int64Saturated(request.start_revision);
  const resume = request.resume ?? [];
  if (resume.length === 0) {
    if (request.snapshot === true) return shards.map(() => 'snapshot');
    if (start > 0 && shards.length > 1) return dkvError('invalid-argument', `start_revision is one shard's revision, and the prefix spans ${shards.length} shards: resume with a revision for each (resume)`);
    return shards.map(() => (start > 0 ? start : 'now'));
  }
  if (request.snapshot === true || start !== 0) return dkvError('invalid-argument', 'resume is given without snapshot and start_revision');
  const wanted = new Map<number, number>();
  for (const entry of resume) {
    const shard = int64IfSafe(entry.shard);
    if (shard === undefined || wanted.has(shard)) return dkvError('watch-resume-mismatch', `shard ${String(entry.shard)} named ${shard === undefined ? 'is not a shard id' : 'twice'}`);
    wanted.set(shard, Math.max(1, int64Saturated(entry.revision)));
  }
  const mismatch = (): DkvError => dkvError('watch-resume-mismatch', `the prefix is served by shards ${shards.join(', ')}; the token names ${[...wanted.keys()].join(', ')}: watch again with a snapshot`);
  const used = new Set<number>();
  const starts: number[] = [];
  for (const shard of shards) {
    // The shard itself, or the nearest ancestor the token names (a chain of splits is finite: ids only grow).
    let named: number | undefined = shard;
    while (named !== undefined && !wanted.has(named)) {
      const parent = splitParent(named);
      named = parent !== undefined && parent < named ? parent : undefined;
    }
    if (named === undefined) return mismatch();
    used.add(named);
    starts.push(wanted.get(named)!);
  }
  if (used.size !== wanted.size) return mismatch();
  return starts;
}

/**
 * One shard of the stream: its parts of the prefix, in key order (the default store's shard may
 * hold the keys on both sides of a store's prefix), and its one watcher, over the parts' hull;
 * events of keys between the parts (another shard's) are left out.
 */
interface StreamShard {
  readonly shard: WatchedShard;
  readonly ranges: KeyRange[];
  watcher?: Watcher;
}

/** Whether `key` is in `range` (etcd's conventions: no end is the key alone, [0] every key from it on). */
function inRange(key: Uint8Array, range: KeyRange): boolean {
  const end = range.rangeEnd;
  if (end === undefined || end.length === 0) return compareBytes(key, range.key) === 0;
  return compareBytes(key, range.key) >= 0 && beforeEnd(key, end);
}

/** The shards of `parts` (in key order), each once, in the order they first appear. */
export function shardsOfParts(parts: readonly WatchPart[]): StreamShard[] {
  const shards = new Map<number, StreamShard>();
  for (const part of parts) {
    const known = shards.get(part.shard.shardId);
    if (known === undefined) shards.set(part.shard.shardId, { shard: part.shard, ranges: [part.range] });
    else known.ranges.push(part.range);
  }
  return [...shards.values()];
}

class PrefixStream implements WatchSink {
  private readonly out: ResponseQueue;
  private closed = false;
  private readonly byWatcher = new Map<Watcher, StreamShard>();
  private readonly shards: readonly StreamShard[];

  constructor(
    private readonly call: grpc.ServerWritableStream<Incoming<WireRequest>, object>,
    private readonly ctx: PrefixWatchContext,
    /** The parts of the prefix each shard serves, in key order (each response names its shard; revisions are each shard's). */
    private readonly parts: readonly WatchPart[],
    /** Where each shard's watch starts, in the order of `shardsOfParts(parts)`. */
    starts: ReadonlyArray<'snapshot' | 'now' | number>,
    serialize: (response: object) => Buffer,
  ) {
    this.shards = shardsOfParts(parts);
    this.out = new ResponseQueue(call, watchLimits.watchStreamBufferBytesMax, {
      onRoom: () => {
        for (const { shard } of this.shards) shard.hub.onRoom();
        this.endIfDone();
      },
      onEmpty: () => this.endIfDone(),
      tally: ctx.buffered,
      frames: grpcFrames(serialize),
    });
    call.on('cancelled', () => this.close());
    call.on('close', () => this.close());
    call.on('error', () => this.close());
    this.start(call.request.message, starts);
  }

  /**
   * Reads each snapshot and registers each watcher in one step: the next event applied to a shard
   * is its R + 1 at the earliest. Snapshot pieces go out in key order (a shard's parts at its one
   * revision), the last one saying `snapshot_done`.
   */
  private start(r: WireRequest, starts: ReadonlyArray<'snapshot' | 'now' | number>): void {
    const revisions = new Map(this.shards.map(({ shard }) => [shard.shardId, this.ctx.store(shard).revision]));
    this.parts.forEach((part, i) => {
      const at = starts[this.shards.findIndex((s) => s.shard === part.shard)];
      if (at !== 'snapshot') return;
      const revision = revisions.get(part.shard.shardId)!;
      const kvs = this.ctx.store(part.shard).range(part.range).kvs;
      const last = i === this.parts.length - 1;
      for (let k = 0; k < kvs.length || k === 0; k += prefixSnapshotKeysPerResponse) {
        const piece = kvs.slice(k, k + prefixSnapshotKeysPerResponse);
        const done = k + prefixSnapshotKeysPerResponse >= kvs.length;
        let bytes = 64;
        for (const kv of piece) bytes += kv.key.length + kv.value.length + 32;
        this.push({ shard: part.shard.shardId, shard_count: this.shards.length, revision, snapshot_kvs: piece.map(keyValueToWire), snapshot_done: done && last }, bytes);
        if (done) break;
      }
    });
    const froms = this.shards.map((entry, i) => {
      const at = starts[i]!;
      const current = revisions.get(entry.shard.shardId)!;
      const from = at === 'snapshot' || at === 'now' ? current + 1 : at;
      // Where each shard's watch starts, said before any event (a watcher from the past may
      // deliver at once): a client resumes from there if the stream breaks before any event
      // (else "from now" again would skip what came between).
      if (at !== 'snapshot') this.push({ shard: entry.shard.shardId, shard_count: this.shards.length, revision: from - 1 }, 64);
      return from;
    });
    this.shards.forEach((entry, i) => {
      const from = froms[i]!;
      const first = entry.ranges[0]!;
      const last = entry.ranges[entry.ranges.length - 1]!;
      const hullEnd = entry.ranges.length === 1 ? first.rangeEnd : last.rangeEnd !== undefined && last.rangeEnd.length > 0 ? last.rangeEnd : prefixEnd(last.key);
      const watcher = new Watcher(
        i,
        { key: first.key, rangeEnd: hullEnd !== undefined && hullEnd.length > 0 ? hullEnd : undefined, startRevision: from, noPut: false, noDelete: false, prevKv: r.prev_kv === true, parts: entry.ranges },
        this,
      );
      entry.watcher = watcher;
      this.byWatcher.set(watcher, entry);
      entry.shard.hub.add(watcher);
    });
  }

  hasRoom(): boolean {
    return !this.closed && this.out.hasRoom();
  }

  deliver(watcher: Watcher, events: readonly MvccEvent[], headerRevision: number): boolean {
    // Ended (one shard's watcher canceled): nothing follows the cancel.
    if (this.closed || this.endAfterFlush) return true;
    if (!this.hasRoom()) return false;
    if (!this.stillPermitted()) return true;
    const entry = this.byWatcher.get(watcher);
    if (entry === undefined) return true;
    const mine = entry.ranges.length === 1 ? events : events.filter((e) => entry.ranges.some((range) => inRange(e.kv.key, range)));
    let bytes = 64;
    for (const e of mine) bytes += e.kv.key.length + e.kv.value.length + 48;
    // Revisions with none of the parts' keys still say how far the shard's watch got: up to the
    // last of them (not the header's, which may be ahead while the watch catches up).
    const revision = mine.length === 0 ? events[events.length - 1]!.kv.modRevision : headerRevision;
    this.push({ shard: entry.shard.shardId, revision, events: mine.map(eventToWire) }, bytes);
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

  /** One shard's watcher ended: the whole stream ends with it, after what was queued (the cancel names the shard). */
  canceled(watcher: Watcher, reason: string): void {
    this.end(watcher, { canceled: true, cancel_reason: reason });
  }

  compacted(watcher: Watcher, compactRevision: number): void {
    this.end(watcher, { canceled: true, compact_revision: compactRevision, cancel_reason: errorTable.compacted.message });
  }

  private end(watcher: Watcher, response: Record<string, unknown>): void {
    const part = this.byWatcher.get(watcher);
    if (part === undefined || this.endAfterFlush) return;
    this.push({ shard: part.shard.shardId, revision: part.shard.revision(), ...response }, 64);
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
    for (const { shard, watcher } of this.shards) if (watcher !== undefined) shard.hub.remove(watcher);
    this.out.close();
  }
}

export function createPrefixWatchService(ctx: PrefixWatchContext): { definition: ReturnType<typeof serviceDefinition>; implementation: grpc.UntypedServiceImplementation } {
  const definition = serviceDefinition('dkv.v1.Watch', dkvRoot());
  const serialize = definition['WatchPrefix']!.responseSerialize as (response: object) => Buffer;
  const implementation: grpc.UntypedServiceImplementation = {
    WatchPrefix: (call: grpc.ServerWritableStream<Incoming<WireRequest>, object>) => {
      // Routed (and the plan checked) again once the auth check is done: the map may change meanwhile.
      const open = (caughtUp = false, read = false): void => {
        const parts = ctx.parts(prefixRange(call.request.message.prefix ?? new Uint8Array(0)));
        if ('refusal' in parts) return void call.emit('error', toGrpcError(parts.refusal));
        const starts = planPrefixWatch(call.request.message, shardsOfParts(parts).map((entry) => entry.shard.shardId), ctx.splitParent);
        if (starts instanceof DkvError && starts.code === 'watch-resume-mismatch' && !caughtUp) {
          // This member's map may lag the token's (a resume after failover): refused only once it caught up.
          ctx.catchUp().then(
            () => void (call.cancelled ? undefined : open(true)),
            (error: unknown) => call.emit('error', toGrpcError(clientError(error))),
          );
          return;
        }
        if (starts instanceof DkvError) return void call.emit('error', toGrpcError(starts));
        const readIndex = ctx.readIndex;
        if (!read && readIndex !== undefined && starts.includes('snapshot')) {
          // Planned again after the reads: the map may have changed meanwhile.
          Promise.all(shardsOfParts(parts).map((entry) => readIndex(entry.shard))).then(
            () => void (call.cancelled ? undefined : open(caughtUp, true)),
            (error: unknown) => call.emit('error', toGrpcError(clientError(error))),
          );
          return;
        }
        new PrefixStream(call, ctx, parts, starts, serialize);
      };
      if (!ctx.gate.enabled) {
        open();
        return;
      }
      // Refused only once this member's auth state has caught up with the cluster's (AuthGate.permitted).
      const access = () => ({ admin: false as const, keys: rangeAccess(prefixRange(call.request.message.prefix ?? new Uint8Array(0))) });
      ctx.gate
        .permitted(call, access)
        .then(() => {
          if (!call.cancelled) open();
        })
        .catch((error: unknown) => call.emit('error', toGrpcError(clientError(error))));
    },
  };
  return { definition, implementation };
}
