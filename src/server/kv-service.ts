/**
 * The etcd `KV` service. The router finds the shard that owns a request's keys; writes go through
 * Raft (the request's own bytes become the command); reads are linearizable through the runtime's
 * batched ReadIndex unless `serializable`, then served from this node's state machine.
 */
import { strict as assert } from 'node:assert';
import type * as grpc from '@grpc/grpc-js';
import { isReadOnlyTxn, mvccLimits } from '../../storage/index.js';
import type { DeleteRangeResult, RangeRequest, RangeResponse, RequestOp, TxnRequest, TxnResult } from '../../storage/index.js';
import { KvCommandKind, type KvEngine, NOT_OWNED_DETAIL, type WriteOutcome, deleteRangeToWire, kvCommand, kvOutcome, putFromWire, putToWire, rangeFromWire, rangeRequestToWire, rangeResponseFromWire, rangeToWire, txnFromWire, txnToWire } from '../engines/kv/index.js';
import { type Caller, type EngineCommand, EngineError, EngineId, type KeyAccess, type LeaseEngine, deleteRangeAccess, putAccess, rangeAccess, txnAccess } from '../engines/index.js';
import type { KeyRange, RequestOptions, RoutedPart, Router, ShardHandle } from '../runtime/index.js';
import { mergeRange } from './range-merge.js';
import {
  type WireDeleteRangeRequest,
  type WirePutRequest,
  type WireRangeRequest,
  type WireRequestOp,
  type WireTxnRequest,
  type Int64,
  type WireKeyValue,
  etcdType,
  int64Exact,
  int64Saturated,
} from '../etcd-proto.js';
import { dkvError, errorOfStatus } from '../errors.js';
import { RawResponse, serviceDefinition } from './grpc-service.js';
import { forwardedCallerOf } from './forwarding.js';
import { putCost, txnCost } from './quota.js';
import { type ServiceContext, type UnaryCall, callerOptions, clientError, requestOptions, responseHeader, unary } from './service-common.js';

/** etcd's limit on operations in each branch of a txn, shared down nested txns (storage/mvcc/limits.ts). */
export const txnOperationsMax = mvccLimits.txnOperationsMax;
/** The deepest txn nesting that budget allows (storage/mvcc/limits.ts says why). */
export const txnDepthMax = mvccLimits.txnDepthMax;

export interface KvServiceContext extends ServiceContext {
  readonly maxRequestBytes: number;
  /** Test only (`--unsafe-stale-reads`): skip ReadIndex for linearizable reads. */
  readonly unsafeStaleReads?: boolean;
  /** Test only (`--unsafe-ignore-txn-compare`): propose every Txn without its compares. */
  readonly unsafeIgnoreTxnCompare?: boolean;
}

// ---- Validation at the edge (etcd's rules, in etcd's order) ---------------------------------

/**
 * A key present and within what the store holds. etcd bounds keys only by the request size; with
 * --max-request-bytes raised past the store's key limit, a longer key is refused here as a
 * request too large, never proposed (the store asserts it on every replica).
 */
function checkKey(key: Uint8Array | undefined): void {
  if (key === undefined || key.length === 0) throw dkvError('empty-key');
  if (key.length > mvccLimits.keyBytesMax) throw dkvError('request-too-large');
}

export function checkPut(r: WirePutRequest): void {
  checkKey(r.key);
  // As a key: a value over the store's limit is refused before it is proposed.
  if (r.value !== undefined && r.value.length > mvccLimits.valueBytesMax) throw dkvError('request-too-large');
  if (r.ignore_value && r.value !== undefined && r.value.length !== 0) throw dkvError('value-provided');
  // Whether the lease exists is decided where it is applied (the lease engine's table).
  if (r.ignore_lease && int64Exact(r.lease) !== 0n) throw dkvError('lease-provided');
}

function checkOps(ops: readonly WireRequestOp[], operationsLeft: number, depth: number): void {
  for (const op of ops) {
    if (op.request_range) checkKey(op.request_range.key);
    else if (op.request_put) checkPut(op.request_put);
    else if (op.request_delete_range) checkKey(op.request_delete_range.key);
    else if (op.request_txn) checkTxn(op.request_txn, operationsLeft, depth + 1);
  }
}

/**
 * etcd's checkTxnRequest, before anything is proposed: the compares and each branch hold at most
 * `operationsLeft`, and a nested txn gets what its parent left (etcd passes maxTxnOps - opc down).
 * That budget is also what bounds nesting: a txn deeper than `txnDepthMax` always overdraws it, so
 * it is refused here with etcd's own error, as etcd 3.4 refuses it. The store applies the same
 * rule (deterministically, on every replica); this copy keeps a refused txn out of the Raft log.
 */
export function checkTxn(r: WireTxnRequest, operationsLeft: number = txnOperationsMax, depth = 1): void {
  // invariant: depth <= txnDepthMax, since every enclosing level spent at least one operation.
  assert(depth <= txnDepthMax && operationsLeft >= 0, 'txn nesting beyond what the operations budget allows');
  const compares = r.compare ?? [];
  const success = r.success ?? [];
  const failure = r.failure ?? [];
  const operations = Math.max(compares.length, success.length, failure.length);
  if (operations > operationsLeft) throw dkvError('too-many-ops');
  for (const c of compares) checkKey(c.key);
  checkOps(success, operationsLeft - operations, depth);
  checkOps(failure, operationsLeft - operations, depth);
}

/**
 * etcd's isTxnSerializable: every operation of both branches is a serializable Range (a txn with
 * none is not, here: it gets the linearizable read, which costs little and promises more).
 */
export function wireTxnSerializable(r: WireTxnRequest): boolean {
  const ops = [...(r.success ?? []), ...(r.failure ?? [])];
  return ops.length > 0 && ops.every((op) => op.request_range?.serializable === true);
}

/** Every key and range a txn touches (compares and operations, nested txns included). */
export function txnRanges(r: WireTxnRequest, ranges: KeyRange[] = []): KeyRange[] {
  for (const c of r.compare ?? []) ranges.push({ key: c.key, rangeEnd: c.range_end });
  for (const op of [...(r.success ?? []), ...(r.failure ?? [])]) {
    if (op.request_range) ranges.push({ key: op.request_range.key, rangeEnd: op.request_range.range_end });
    else if (op.request_put) ranges.push({ key: op.request_put.key });
    else if (op.request_delete_range) ranges.push({ key: op.request_delete_range.key, rangeEnd: op.request_delete_range.range_end });
    else if (op.request_txn) txnRanges(op.request_txn, ranges);
  }
  return ranges;
}

/** A read of keys the shard it was routed to no longer serves (a mount moved them): route it again. */
export function notServed(): Error {
  return clientError(new EngineError('not-owned', NOT_OWNED_DETAIL)) as Error;
}

// ---- Writes through Raft (this service's, and those the Lock and Election services build) ----

const TxnRequestType = etcdType('etcdserverpb.TxnRequest');
const RangeRequestType = etcdType('etcdserverpb.RangeRequest');
const RangeResponseType = etcdType('etcdserverpb.RangeResponse');
/** The method a part of a Range hosted elsewhere is asked with. */
const rangeMethodPath = '/etcdserverpb.KV/Range';
const DeleteRangeRequestType = etcdType('etcdserverpb.DeleteRangeRequest');

/** Proposes a KV command (`kvCommand`); a deterministic refusal at apply rejects. */
export async function proposeKv(shard: ShardHandle, command: EngineCommand, options: RequestOptions): Promise<WriteOutcome> {
  const { outcome } = kvOutcome((await shard.propose(command, options)).outcome);
  if (outcome.kind === 'error') throw outcome.error;
  return outcome;
}

/**
 * A txn another service builds (Lock, Election): checked exactly as a client's txn (etcd's rules,
 * and what the KV layer requires of the leases it names), encoded, proposed.
 */
export async function proposeTxn(shard: ShardHandle, request: WireTxnRequest, options: RequestOptions): Promise<TxnResult> {
  checkTxn(request);
  const outcome = await proposeKv(shard, kvCommand(KvCommandKind.Txn, TxnRequestType.encode(request).finish()), options);
  if (outcome.kind !== 'txn') throw new Error(`txn applied as ${outcome.kind}`);
  return outcome.result;
}

/** Deletes one key, as a client's DeleteRange of it would. */
export async function proposeDelete(shard: ShardHandle, key: Uint8Array, options: RequestOptions): Promise<DeleteRangeResult> {
  checkKey(key);
  const outcome = await proposeKv(shard, kvCommand(KvCommandKind.DeleteRange, DeleteRangeRequestType.encode({ key }).finish()), options);
  if (outcome.kind !== 'delete-range') throw new Error(`delete applied as ${outcome.kind}`);
  return outcome.result;
}

/** The leases a txn's puts name, nested txns included. */
export function txnLeases(request: TxnRequest): bigint[] {
  const leases: bigint[] = [];
  const walk = (ops: readonly RequestOp[]): void => {
    for (const op of ops) {
      if (op.type === 'put' && op.put.lease !== undefined && op.put.lease !== 0n) leases.push(op.put.lease);
      else if (op.type === 'txn') walk([...op.txn.success, ...op.txn.failure]);
    }
  };
  walk([...request.success, ...request.failure]);
  return leases;
}

/**
 * Refuses, with a clear error, a write to a store's shard that names a lease only the default
 * store has (LeaseGrant grants there; a lease attaches keys of the shard that granted it). A
 * lease the shard has itself (the session lease of a Lock or Campaign on its keys) passes; one
 * no shard has is the engine's `lease not found`, as etcd's.
 */
export function checkLeasesOfShard(router: Router, shard: ShardHandle, leases: Iterable<bigint>): void {
  if (shard.shardId === router.map.defaultStoreShard) return;
  const here = shard.machine().engine<LeaseEngine>(EngineId.Lease);
  const granted = router.defaultStore().machine().engine<LeaseEngine>(EngineId.Lease);
  for (const lease of leases) if (lease !== 0n && here.get(lease) === undefined && granted.get(lease) !== undefined) throw dkvError('store-lease-unsupported');
}

/** The keys each lease holds now, on this member (the edge's view; the guard checks again where it applies). */
export function leaseKeysOf(shard: ShardHandle): (lease: bigint) => Iterable<Uint8Array> {
  const leases = shard.machine().engine<LeaseEngine>(EngineId.Lease);
  return (lease) => leases.get(lease)?.keys.values() ?? [];
}

/**
 * The call's caller, checked at the edge against what the request touches (only while auth is
 * on: `keys` is not even computed otherwise; a refusal only once this member's auth state has
 * caught up). Writes are checked again where they are applied.
 */
export function permittedCaller(ctx: ServiceContext, call: UnaryCall<unknown>, keys: () => KeyAccess[]): Promise<Caller> {
  return ctx.gate.permitted(call, () => ({ admin: false, keys: keys() }));
}

export function createKvService(ctx: KvServiceContext): { definition: ReturnType<typeof serviceDefinition>; implementation: grpc.UntypedServiceImplementation } {
  const checkSize = (raw: Buffer): void => {
    if (raw.length > ctx.maxRequestBytes) throw dkvError('request-too-large');
  };

  const propose = (shard: ShardHandle, command: EngineCommand, caller: Caller): Promise<WriteOutcome> => proposeKv(shard, command, callerOptions(ctx, caller));
  const options = requestOptions(ctx);

  const kv = (shard: ShardHandle): KvEngine => shard.machine().engine<KvEngine>(EngineId.Kv);

  /**
   * A Range over more than one shard: each shard read (linearizably unless serializable) and the
   * parts merged with etcd's rules (range-merge.ts). Not one snapshot: each shard's part is its
   * state once its own read is due. The header is the default store's when it serves a part
   * (else the first hosted part's shard's, else the first remote part's): its revision is that
   * shard's, as before any part was read. A part whose shard this node does not host is read as
   * a Range of its own from a replica, except in a call forwarded here (one hop).
   */
  const crossShardRange = async (message: WireRangeRequest, parts: readonly RoutedPart[], call: UnaryCall<unknown>): Promise<object> => {
    const request = rangeFromWire(message);
    if ((request.revision ?? 0) > 0) throw dkvError('cross-shard-revision');
    const here = parts.filter((part): part is RoutedPart & { shard: ShardHandle } => part.shard !== undefined);
    const shards = [...new Map(here.map((part) => [part.shard.shardId, part.shard])).values()];
    if (!message.serializable && ctx.unsafeStaleReads !== true) await Promise.all(shards.map((shard) => shard.read(options)));
    const caller = ctx.gate.caller(call);
    if (ctx.gate.enabled) ctx.gate.checkKeys(caller, rangeAccess({ key: message.key, rangeEnd: message.range_end }));
    for (const part of here) if (!kv(part.shard).owns(part.range.key, part.range.rangeEnd)) throw notServed();
    // A part whose shard other members host is asked of one of them as a Range of its own (read
    // there as this one would be: linearizably unless serializable), when the merge needs it.
    let elsewhereRevision: number | undefined;
    // A call forwarded here goes no further (one hop): its parts hosted elsewhere are refused.
    const forwarded = forwardedCallerOf(call) !== undefined;
    const readElsewhere = async (part: RoutedPart, r: RangeRequest): Promise<RangeResponse> => {
      if (ctx.callElsewhere === undefined || forwarded) throw part.elsewhere!;
      const raw = RangeRequestType.encode({ ...rangeRequestToWire(r), serializable: message.serializable === true }).finish();
      const answered = await ctx.callElsewhere(rangeMethodPath, raw, caller, part.elsewhere!.replicas, { shard: part.elsewhere!.shardId, epoch: part.elsewhere!.epoch });
      if (!(answered instanceof RawResponse)) throw errorOfStatus(answered);
      const decoded = RangeResponseType.decode(answered.bytes) as unknown as { header?: { revision?: Int64 }; kvs?: WireKeyValue[]; more?: boolean; count?: Int64 };
      const revision = int64Saturated(decoded.header?.revision);
      elsewhereRevision ??= revision;
      return rangeResponseFromWire(decoded, revision);
    };
    const headerShard = shards.find((shard) => shard.shardId === ctx.router.map.defaultStoreShard) ?? shards[0];
    // Taken before the merge: a part read after a remote part's answer came may be newer, never
    // older, so a watch from the header's revision + 1 misses nothing (with every part here, the
    // merge's awaits are of values already there: no entry is applied between them, as entries
    // are applied in the runtime's own turns, so every part is read at this revision).
    const headerRevision = headerShard === undefined ? undefined : kv(headerShard).mvcc.revision;
    const merged = await mergeRange(
      request,
      parts.map((part) => ({ range: part.range, read: (r: RangeRequest) => (part.shard === undefined ? readElsewhere(part, r) : kv(part.shard).mvcc.range(r)) })),
    );
    // No part here: the header is this node's default store's, with the first remote part's revision.
    const revision = headerRevision ?? elsewhereRevision ?? 0;
    return { header: responseHeader(ctx, headerShard ?? ctx.router.defaultStore(), revision), ...rangeToWire({ ...merged, revision }) };
  };

  const implementation: grpc.UntypedServiceImplementation = {
    Range: unary<WireRangeRequest>(async ({ raw, message }, call) => {
      checkSize(raw);
      checkKey(message.key);
      const parts = ctx.router.partsAnywhere({ key: message.key, rangeEnd: message.range_end });
      if (parts.length > 1) return crossShardRange(message, parts, call);
      // One shard, hosted elsewhere: the whole call is forwarded (service-common.ts).
      if (parts[0]!.elsewhere !== undefined) throw parts[0]!.elsewhere;
      const shard = parts[0]!.shard!;
      if (!message.serializable && ctx.unsafeStaleReads !== true) await shard.read(options);
      // Checked once the read is due, as etcd does: a permission revoked before it is not used,
      // and one granted before it is (so is an auth change: the caller is found after the read).
      const caller = ctx.gate.caller(call);
      if (ctx.gate.enabled) ctx.gate.checkKeys(caller, rangeAccess({ key: message.key, rangeEnd: message.range_end }));
      // Once the read is due: a shard that ceded the keys since the request was routed does not answer for them.
      if (!kv(shard).owns(message.key, message.range_end)) throw notServed();
      const mvcc = kv(shard).mvcc;
      const result = mvcc.range(rangeFromWire(message));
      return { header: responseHeader(ctx, shard, mvcc.revision), ...rangeToWire(result) };
    }),
    Put: unary<WirePutRequest>(async ({ raw, message }, call) => {
      checkSize(raw);
      checkPut(message);
      const shard = ctx.router.forKey(message.key);
      checkLeasesOfShard(ctx.router, shard, [int64Exact(message.lease)]);
      const caller = await permittedCaller(ctx, call, () => putAccess({ key: message.key, lease: int64Exact(message.lease), prevKv: message.prev_kv }, leaseKeysOf(shard)));
      ctx.quota?.check(shard, putCost(message));
      // The request as decoded here goes along: this member's apply need not decode `raw` again.
      const outcome = await propose(shard, kvCommand(KvCommandKind.Put, raw, { kind: KvCommandKind.Put, request: putFromWire(message) }), caller);
      if (outcome.kind !== 'put') throw new Error(`put applied as ${outcome.kind}`);
      return { header: responseHeader(ctx, shard, outcome.result.revision), ...putToWire(outcome.result) };
    }),
    DeleteRange: unary<WireDeleteRangeRequest>(async ({ raw, message }, call) => {
      checkSize(raw);
      checkKey(message.key);
      const caller = await permittedCaller(ctx, call, () => deleteRangeAccess({ key: message.key, rangeEnd: message.range_end, prevKv: message.prev_kv }));
      const shard = ctx.router.forRange({ key: message.key, rangeEnd: message.range_end });
      const outcome = await propose(shard, kvCommand(KvCommandKind.DeleteRange, raw), caller);
      if (outcome.kind !== 'delete-range') throw new Error(`delete applied as ${outcome.kind}`);
      return { header: responseHeader(ctx, shard, outcome.result.revision), ...deleteRangeToWire(outcome.result) };
    }),
    Txn: unary<WireTxnRequest>(async ({ raw, message }, call) => {
      checkSize(raw);
      checkTxn(message);
      const shard = ctx.router.forRanges(txnRanges(message));
      const request = txnFromWire(message);
      if (isReadOnlyTxn(request)) {
        // etcd serves a txn that only reads as it serves a Range: ReadIndex (unless every range
        // in it is serializable), then the local state; nothing goes through the log.
        if (!wireTxnSerializable(message) && ctx.unsafeStaleReads !== true) await shard.read(options);
        const reader = ctx.gate.caller(call);
        if (ctx.gate.enabled) ctx.gate.checkKeys(reader, txnAccess(request, leaseKeysOf(shard)));
        if (!kv(shard).ownsTxn(request)) throw notServed();
        const mvcc = kv(shard).mvcc;
        const result = mvcc.readTxn(request);
        const h = responseHeader(ctx, shard, mvcc.revision);
        return { header: h, ...txnToWire(result, h) };
      }
      checkLeasesOfShard(ctx.router, shard, txnLeases(request));
      const caller = await permittedCaller(ctx, call, () => txnAccess(request, leaseKeysOf(shard)));
      ctx.quota?.check(shard, txnCost(message));
      const outcome =
        ctx.unsafeIgnoreTxnCompare === true
          ? await propose(shard, kvCommand(KvCommandKind.Txn, Buffer.from(TxnRequestType.encode({ ...message, compare: [] }).finish())), caller)
          : await propose(shard, kvCommand(KvCommandKind.Txn, raw, { kind: KvCommandKind.Txn, request }), caller);
      if (outcome.kind !== 'txn') throw new Error(`txn applied as ${outcome.kind}`);
      const h = responseHeader(ctx, shard, outcome.result.revision);
      return { header: h, ...txnToWire(outcome.result, h) };
    }),
    Compact: unary<object>(async ({ raw }, call) => {
      checkSize(raw);
      // etcd checks no permission for a compaction; the caller is carried all the same.
      const caller = await ctx.gate.permitted(call);
      const shard = ctx.router.defaultStore();
      const outcome = await propose(shard, kvCommand(KvCommandKind.Compaction, raw), caller);
      if (outcome.kind !== 'compaction') throw new Error(`compaction applied as ${outcome.kind}`);
      return { header: responseHeader(ctx, shard, outcome.revision) };
    }),
  };
  return { definition: serviceDefinition('etcdserverpb.KV'), implementation };
}
