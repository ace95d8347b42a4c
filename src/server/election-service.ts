/**
 * etcd's `v3electionpb.Election` service: Campaign waits until the caller leads a named election;
 * Proclaim replaces the leader's value; Leader reads it; Observe streams it and every change of
 * leader or value (until its caller loses the read permission: then it ends refused); Resign gives
 * leadership up. The recipe is etcd's concurrency.Election
 * (src/server/concurrency.ts).
 */
import type * as grpc from '@grpc/grpc-js';
import type { KeyValue, MvccEvent } from '../../storage/index.js';
import { prefixEnd } from '../../storage/index.js';
import { keyValueToWire } from '../engines/kv/index.js';
import { type WatchHub, Watcher, type WatchSink } from '../engines/watch/index.js';
import {
  type WireCampaignRequest,
  type WireLeaderKey,
  type WireLeaderRequest,
  type WireProclaimRequest,
  type WireResignRequest,
  int64Exact,
  int64Saturated,
  int64ToWire,
} from '../etcd-proto.js';
import { dkvError, toGrpcErrorOfRecipe } from '../errors.js';
import { type ShardHandle, kvEngineOf } from '../runtime/index.js';
import {
  type ConcurrencyContext,
  checkClientKey,
  checkName,
  checkRequestSize,
  checkValue,
  deleteIfCreatedAt,
  joinQueue,
  leaveQueue,
  namePrefix,
  ownerAt,
  putIfCreatedAt,
  releaseWatcher,
  sameKey,
  storeOf,
  waitForTurn,
} from './concurrency.js';
import { type Incoming, serviceDefinition } from './grpc-service.js';
import { observeBufferBytesMax } from './limits.js';
import { ResponseQueue } from './response-queue.js';
import { type Logger, type UnaryCall, clientErrorLogged, linkedSignal, requestOptions, responseHeader, unary, waitingUnary } from './service-common.js';
import { type KeyAccess, PermissionType, rangeAccess } from '../engines/index.js';
import { notServed, permittedCaller } from './kv-service.js';
import { AUTH_UNCHECKED } from './auth/gate.js';
import { checkRecipeAccess, recipeContext } from './concurrency.js';

/** The leader key of a Proclaim or Resign (etcd refuses a request without one). */
function leaderKeyOf(leader: WireLeaderKey | null | undefined): { key: Uint8Array; rev: number; lease: bigint } {
  if (leader === undefined || leader === null) throw dkvError('missing-leader-key');
  // Saturated: a rev past 2^53 is one no key was created at, as the int64 is.
  return { key: checkClientKey(leader.key), rev: int64Saturated(leader.rev), lease: int64Exact(leader.lease) };
}

/** Bytes a LeaderResponse holds in an Observe stream's queue (its kv plus the header and framing). */
function leaderResponseBytes(kv: KeyValue): number {
  return 96 + kv.key.length + kv.value.length;
}

/**
 * One Observe call. It reads the leader at revision R (linearizable) and, in the same step,
 * watches the whole prefix from R + 1; from the events of each revision it knows when the leader
 * key is written (a new value) or deleted (then the leader at that revision is read), and sends
 * the leader whenever its key, generation or value changed — in revision order, none skipped.
 * A slow reader's watcher falls back to the history and catches up, as a Watch stream's does.
 */
class ObserveStream implements WatchSink {
  private readonly out: ResponseQueue;
  private readonly hub: WatchHub;
  private watcher: Watcher | undefined;
  /** The leader as of the last revision looked at, and the one last sent. */
  private leader: KeyValue | undefined;
  private sent: KeyValue | undefined;
  private closed = false;
  /** The auth state the caller's read permission was last checked at (AuthGate.state). */
  private authCheckedAt: number;
  private readonly onStopping = (): void => this.fail(this.ctx.stopping.reason);

  constructor(
    private readonly call: grpc.ServerWritableStream<Incoming<WireLeaderRequest>, object>,
    private readonly ctx: ConcurrencyContext,
    private readonly shard: ShardHandle,
    private readonly prefix: Uint8Array,
    private readonly log: Logger | undefined,
  ) {
    this.hub = ctx.watchHub(shard);
    // Not checked yet: the first check is made once the linearizable read is due (start), so it
    // sees every auth change committed before the call, as the read does.
    this.authCheckedAt = AUTH_UNCHECKED;
    this.out = new ResponseQueue(call, observeBufferBytesMax, { onRoom: () => this.hub.onRoom() });
    call.on('cancelled', () => this.close());
    call.on('close', () => this.close());
    call.on('error', () => this.close());
    if (ctx.stopping.aborted) this.onStopping();
    else ctx.stopping.addEventListener('abort', this.onStopping, { once: true });
  }

  async start(): Promise<void> {
    if (this.closed) return;
    try {
      await this.shard.read(requestOptions(this.ctx));
    } catch (error) {
      this.fail(error);
      return;
    }
    if (this.closed || !this.stillPermitted()) return;
    // A store took the election's keys since the call was routed (this node's map lagged): the
    // client routes again. A cession applied after this step cancels the watcher instead.
    if (!servesName(this.shard, this.prefix)) {
      this.fail(notServed());
      return;
    }
    // Read and register in one step: the next change is R + 1 at the earliest.
    const store = storeOf(this.shard);
    const revision = store.revision;
    this.leader = ownerAt(store, this.prefix);
    this.send(revision);
    const options = { key: this.prefix, rangeEnd: prefixEnd(this.prefix), startRevision: revision + 1, noPut: false, noDelete: false, prevKv: false };
    this.watcher = new Watcher(0, options, this);
    this.hub.add(this.watcher);
  }

  hasRoom(): boolean {
    return !this.closed && this.out.hasRoom();
  }

  deliver(_watcher: Watcher, events: readonly MvccEvent[]): boolean {
    if (this.closed) return true;
    if (!this.out.hasRoom()) return false;
    if (!this.stillPermitted()) return true;
    // Whole revisions, in order; a delete's kv carries the revision it happened at.
    for (let start = 0; start < events.length && !this.closed; ) {
      const revision = events[start]!.kv.modRevision;
      let end = start + 1;
      while (end < events.length && events[end]!.kv.modRevision === revision) end++;
      this.onRevision(events.slice(start, end), revision);
      start = end;
    }
    return true;
  }

  private onRevision(events: readonly MvccEvent[], revision: number): void {
    const leader = this.leader;
    let reread = false;
    for (const event of events) {
      // Keys created now come after every live one: only the leader's own key, or a first key
      // when there was none, can change who leads.
      if (leader === undefined) reread ||= event.type === 'put';
      else if (sameKey(event.kv.key, leader.key)) {
        if (event.type === 'delete') reread = true;
        else this.leader = event.kv;
      }
    }
    if (reread) {
      try {
        this.leader = ownerAt(storeOf(this.shard), this.prefix, revision);
      } catch (error) {
        // That revision was compacted while this stream was behind.
        this.fail(error);
        return;
      }
    }
    this.send(revision);
  }

  /**
   * Whether the stream may still be sent leaders: as a Watch's, its caller's read permission on
   * the prefix is checked again whenever the auth state changed (the caller found again from the
   * call's token); a caller who lost it ends the stream refused.
   */
  private stillPermitted(): boolean {
    const check = this.ctx.gate.recheck(this.call, this.authCheckedAt, () => rangeAccess({ key: this.prefix, rangeEnd: prefixEnd(this.prefix) }));
    if (check.refusal !== undefined) {
      this.fail(check.refusal);
      return false;
    }
    this.authCheckedAt = check.checkedAt;
    return true;
  }

  /** Sends the leader if it is not the one last sent (another key, generation or write). */
  private send(revision: number): void {
    const leader = this.leader;
    const sent = this.sent;
    if (leader === undefined) return;
    if (sent !== undefined && sameKey(sent.key, leader.key) && sent.createRevision === leader.createRevision && sent.modRevision === leader.modRevision) return;
    this.sent = leader;
    this.out.push({ header: responseHeader(this.ctx, this.shard, revision), kv: keyValueToWire(leader) }, leaderResponseBytes(leader));
  }

  compacted(_watcher: Watcher): void {
    this.fail(dkvError('compacted'));
  }

  canceled(_watcher: Watcher): void {
    this.fail(dkvError('watch-other-store'));
  }

  /**
   * Ends the call with `error` as its status: after the responses already handed to gRPC; any still
   * queued here for a slow reader are dropped with the call.
   */
  private fail(error: unknown): void {
    if (this.closed) return;
    const status = toGrpcErrorOfRecipe(clientErrorLogged(error, this.log));
    this.close();
    // Not framed: the queue wrote through the call, whose end waits for those writes.
    this.call.emit('error', status);
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ctx.stopping.removeEventListener('abort', this.onStopping);
    if (this.watcher !== undefined) releaseWatcher(this.hub, this.watcher);
    this.out.close();
  }
}

/** A leader key's txn (compare its create revision, then write it): read and write the key. */
function txnAccessOfKey(key: Uint8Array): KeyAccess[] {
  return [
    { key, rangeEnd: new Uint8Array(0), type: PermissionType.Read },
    { key, rangeEnd: new Uint8Array(0), type: PermissionType.Write },
  ];
}

/** An election's keys: every key under its name and "/" (the shard that holds them serves it). */
function nameRange(name: Uint8Array): { key: Uint8Array; rangeEnd: Uint8Array } {
  return { key: namePrefix(name), rangeEnd: prefixEnd(namePrefix(name)) };
}

/** Whether `shard` still serves the election keys under `prefix` (no store took them). */
function servesName(shard: ShardHandle, prefix: Uint8Array): boolean {
  return kvEngineOf(shard.machine()).owns(prefix, prefixEnd(prefix));
}

export function createElectionService(ctx: ConcurrencyContext, log?: Logger): { definition: ReturnType<typeof serviceDefinition>; implementation: grpc.UntypedServiceImplementation } {
  const implementation: grpc.UntypedServiceImplementation = {
    Campaign: waitingUnary<WireCampaignRequest>(async ({ raw, message }, canceled, call) => {
      checkRequestSize(ctx, raw);
      const name = checkName(message.name);
      const value = checkValue(message.value);
      const prefix = namePrefix(name);
      await checkRecipeAccess(ctx, call, prefix);
      const rctx = recipeContext(ctx, call);
      const shard = ctx.router.forRange(nameRange(name));
      const { signal, release } = linkedSignal(canceled, ctx.stopping);
      try {
        const joined = await joinQueue(rctx, shard, { prefix, lease: int64Exact(message.lease), value, withOwner: false });
        try {
          // The lease campaigned before with another value: the new one replaces it (etcd proclaims).
          if (joined.existingValue !== undefined && Buffer.compare(joined.existingValue, value) !== 0) {
            const proclaimed = await putIfCreatedAt(rctx, shard, { key: joined.key, rev: joined.rev, value, lease: joined.session.lease });
            if (!proclaimed.succeeded) throw dkvError('election-not-leader');
          }
          // etcd returns even when its own key vanished meanwhile; a leader without a key is none.
          if (!(await waitForTurn(rctx, shard, joined, prefix, signal)).held) throw dkvError('election-not-leader');
          signal.throwIfAborted();
        } catch (error) {
          await leaveQueue(rctx, shard, joined);
          throw error;
        }
        return {
          // As etcd: the header of the txn that joined (its revision is leader.rev for a new key).
          header: responseHeader(ctx, shard, joined.txnRevision),
          leader: { name, key: joined.key, rev: joined.rev, lease: int64ToWire(joined.session.lease) },
        };
      } finally {
        release();
      }
    }, log, toGrpcErrorOfRecipe),
    Proclaim: unary<WireProclaimRequest>(async ({ raw, message }, call) => {
      checkRequestSize(ctx, raw);
      const leader = leaderKeyOf(message.leader);
      await permittedCaller(ctx, call, () => txnAccessOfKey(leader.key));
      const value = checkValue(message.value);
      const shard = ctx.router.forKey(leader.key);
      const result = await putIfCreatedAt(recipeContext(ctx, call), shard, { key: leader.key, rev: leader.rev, value, lease: leader.lease });
      if (!result.succeeded) throw dkvError('election-not-leader');
      return { header: responseHeader(ctx, shard, result.revision) };
    }, log, toGrpcErrorOfRecipe),
    Leader: unary<WireLeaderRequest>(async ({ raw, message }, call) => {
      checkRequestSize(ctx, raw);
      const name = checkName(message.name);
      const shard = ctx.router.forRange(nameRange(name));
      await shard.read(requestOptions(ctx));
      await permittedCaller(ctx, call, () => rangeAccess(nameRange(name)));
      if (!servesName(shard, namePrefix(name))) throw notServed();
      const store = storeOf(shard);
      const leader = ownerAt(store, namePrefix(name));
      if (leader === undefined) throw dkvError('election-no-leader');
      return { header: responseHeader(ctx, shard, store.revision), kv: keyValueToWire(leader) };
    }, log, toGrpcErrorOfRecipe),
    Observe: (call: grpc.ServerWritableStream<Incoming<WireLeaderRequest>, object>) => {
      let stream: ObserveStream;
      try {
        checkRequestSize(ctx, call.request.raw);
        const name = checkName(call.request.message.name);
        stream = new ObserveStream(call, ctx, ctx.router.forRange(nameRange(name)), namePrefix(name), log);
      } catch (error) {
        call.emit('error', toGrpcErrorOfRecipe(clientErrorLogged(error, log)));
        return;
      }
      stream.start().catch((error: unknown) => call.emit('error', toGrpcErrorOfRecipe(clientErrorLogged(error, log))));
    },
    // As etcd: success whether or not the key was still the leader's (then nothing is deleted).
    Resign: unary<WireResignRequest>(async ({ raw, message }, call) => {
      checkRequestSize(ctx, raw);
      const leader = leaderKeyOf(message.leader);
      await permittedCaller(ctx, call, () => txnAccessOfKey(leader.key));
      const shard = ctx.router.forKey(leader.key);
      const result = await deleteIfCreatedAt(recipeContext(ctx, call), shard, leader.key, leader.rev);
      return { header: responseHeader(ctx, shard, result.revision) };
    }, log, toGrpcErrorOfRecipe),
  };
  return { definition: serviceDefinition('v3electionpb.Election'), implementation };
}
