/**
 * The recipes of etcd's `concurrency` package (Mutex, Election), run in the server as etcd's
 * v3lock and v3election servers run them: every participant of a named lock or election holds a
 * **session key** `name + "/" + hex(lease)`; the one whose key has the lowest create revision
 * owns the lock (leads the election); the others each wait for the deletion of the key with the
 * largest create revision below their own, and look again, until none is left.
 *
 * Writes are KV txns proposed through Raft on the shard that owns the name (any node: a follower's
 * proposal goes to the leader, as KV's do); a waiter's reads are of this node's state machine,
 * which already holds its join (`waitForTurn` says why no ReadIndex round is needed; the
 * election service's Leader and Observe take one). Waiting uses the shard's watch engine: a
 * watcher on the awaited key, registered in the same event-loop step as the read that found it,
 * from the revision after it, so no delete can fall between the read and the watch. Every
 * watcher is released when its wait ends: done, canceled by the client, or the node stopping.
 */
import { randomBytes } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import { strict as assert } from 'node:assert';
import { type KeyValue, type MvccStore, type ResponseOp, type TxnResult, compareBytes, mvccLimits, prefixEnd } from '../../storage/index.js';
import { type WatchHub, Watcher, type WatchSink } from '../engines/watch/index.js';
import { type WireRangeRequest, type WireRequestOp, type WireTxnRequest, int64ToWire } from '../etcd-proto.js';
import { dkvError } from '../errors.js';
import { type RequestOptions, type ShardHandle, kvEngineOf } from '../runtime/index.js';
import { checkLeasesOfShard, permittedCaller, proposeDelete, proposeTxn } from './kv-service.js';
import { type Caller, PermissionType } from '../engines/index.js';
import { lockNameBytesMax, sessionKeyDrawsMax, sessionLeaseTtlSeconds } from './limits.js';
import { type ServiceContext, type UnaryCall, callerOptions, requestOptions } from './service-common.js';

/**
 * Grants leases for requests that name none (lease 0). etcd's server gives such a Lock or
 * Campaign a session lease of `sessionLeaseTtlSeconds` that it never keeps alive, so an abandoned
 * key frees itself a minute later (node.ts wires the Lease service's grant).
 */
export interface SessionLeases {
  grant(shard: ShardHandle, ttlSeconds: number, options: RequestOptions): Promise<bigint>;
}

export interface ConcurrencyContext extends ServiceContext {
  readonly maxRequestBytes: number;
  /** The watch engine of `shard`, whose watchers every wait uses. */
  readonly watchHub: (shard: ShardHandle) => WatchHub;
  /** Aborts (with `stopped`) when the node stops: every wait and Observe stream ends. */
  readonly stopping: AbortSignal;
  readonly sessionLeases?: SessionLeases;
  /** The caller of the call a recipe runs for: its writes carry it to the apply-time auth guard. */
  readonly caller?: Caller;
}

// ---- Validation at the edge ------------------------------------------------------------------

export function checkRequestSize(ctx: ConcurrencyContext, raw: Buffer): void {
  if (raw.length > ctx.maxRequestBytes) throw dkvError('request-too-large');
}

/** A lock or election name: present, and short enough that its keys fit the store. */
export function checkName(name: Uint8Array | undefined): Uint8Array {
  if (name === undefined || name.length === 0) throw dkvError('empty-name');
  if (name.length > lockNameBytesMax) throw dkvError('name-too-large');
  return name;
}

/**
 * A key a client hands back (Unlock, Proclaim, Resign). Empty is the KV layer's `empty-key`; one
 * longer than any key the store holds could only come in a request over etcd's default limit.
 */
export function checkClientKey(key: Uint8Array | undefined): Uint8Array {
  const given = key ?? new Uint8Array(0);
  if (given.length > mvccLimits.keyBytesMax) throw dkvError('request-too-large');
  return given;
}

export function checkValue(value: Uint8Array | undefined): Uint8Array {
  const given = value ?? new Uint8Array(0);
  if (given.length > mvccLimits.valueBytesMax) throw dkvError('request-too-large');
  return given;
}

// ---- Keys ------------------------------------------------------------------------------------

/**
 * The caller of a Lock or Election call may read and write every key of the recipe's prefix (a
 * waiter's own key, and the others it reads and watches), checked where the call arrives; the
 * recipe's writes carry the caller too (recipeContext), so the guard checks each where it applies.
 */
export async function checkRecipeAccess(ctx: ServiceContext, call: UnaryCall<unknown> | grpc.ServerWritableStream<unknown, object>, prefix: Uint8Array): Promise<void> {
  const key = prefix;
  const rangeEnd = prefixEnd(prefix);
  await permittedCaller(ctx, call as UnaryCall<unknown>, () => [
    { key, rangeEnd, type: PermissionType.Read },
    { key, rangeEnd, type: PermissionType.Write },
  ]);
}

/** A recipe's request options: the caller its writes carry, when the call has one. */
function recipeOptions(ctx: ConcurrencyContext): RequestOptions {
  return ctx.caller === undefined ? requestOptions(ctx) : callerOptions(ctx, ctx.caller);
}

/** The context of one call's recipe: its writes are proposed as the call's caller. */
export function recipeContext(ctx: ConcurrencyContext, call: UnaryCall<unknown>): ConcurrencyContext {
  return { ...ctx, caller: ctx.gate.caller(call) };
}

/** The prefix every session key of `name` starts with (etcd: name + "/"). */
export function namePrefix(name: Uint8Array): Buffer {
  return Buffer.concat([name, Buffer.from('/')]);
}

/** An int64 as Go's `%x` prints it: lower-case hex, no leading zeros, a sign when negative. */
export function goHex(id: bigint): string {
  return id < 0n ? `-${(-id).toString(16)}` : id.toString(16);
}

export function sessionKey(prefix: Uint8Array, id: bigint): Buffer {
  return Buffer.concat([prefix, Buffer.from(goHex(id))]);
}

/** The session a request runs under: the lease its key is attached to, and the id its key names. */
export interface Session {
  readonly lease: bigint;
  /** undefined: a random id is drawn for each attempt (no lease to name the key after). */
  readonly keyId: bigint | undefined;
}

/**
 * The session of a request naming `lease`. With lease 0 etcd grants a session lease; DKV does
 * the same through `sessionLeases`. Without one (a context that wires none) the key gets no lease
 * (it stays until Unlock, Resign or the waiter's cancellation deletes it) and is named after 63
 * random bits instead, drawn afresh if taken, so two such requests never share a key.
 */
export async function openSession(ctx: ConcurrencyContext, shard: ShardHandle, lease: bigint): Promise<Session> {
  if (lease !== 0n) return { lease, keyId: lease };
  if (ctx.sessionLeases !== undefined) {
    const granted = await ctx.sessionLeases.grant(shard, sessionLeaseTtlSeconds, recipeOptions(ctx));
    assert(granted !== 0n, 'a granted lease has a nonzero id');
    return { lease: granted, keyId: granted };
  }
  return { lease: 0n, keyId: undefined };
}

function drawKeyId(): bigint {
  for (;;) {
    const id = randomBytes(8).readBigUInt64BE() >> 1n;
    if (id !== 0n) return id;
  }
}

// ---- Txn parts (etcd's wire shapes, as a client would send them) ----------------------------

const CompareResultEqual = 0;
const CompareTargetCreate = 1;
const SortAscend = 1;
const SortDescend = 2;
const SortTargetCreate = 2;

function range(fields: Partial<WireRangeRequest> & Pick<WireRangeRequest, 'key'>): WireRangeRequest {
  return {
    range_end: new Uint8Array(0),
    limit: 0,
    revision: 0,
    sort_order: 0,
    sort_target: 0,
    serializable: false,
    keys_only: false,
    count_only: false,
    min_mod_revision: 0,
    max_mod_revision: 0,
    min_create_revision: 0,
    max_create_revision: 0,
    ...fields,
  };
}

function createRevisionIs(key: Uint8Array, revision: number): WireTxnRequest['compare'][number] {
  return { result: CompareResultEqual, target: CompareTargetCreate, key, create_revision: revision, range_end: new Uint8Array(0) };
}

function putOp(key: Uint8Array, value: Uint8Array, lease: bigint): WireRequestOp {
  return { request_put: { key, value, lease: int64ToWire(lease), prev_kv: false, ignore_value: false, ignore_lease: false } };
}

function getOp(key: Uint8Array): WireRequestOp {
  return { request_range: range({ key }) };
}

/** etcd's `WithFirstCreate()` on a prefix: the key with the lowest create revision, the owner. */
function ownerOp(prefix: Uint8Array): WireRequestOp {
  return { request_range: range({ key: prefix, range_end: prefixEnd(prefix), sort_order: SortAscend, sort_target: SortTargetCreate, limit: 1 }) };
}

function rangeKvs(op: ResponseOp | undefined): KeyValue[] {
  assert(op !== undefined && op.type === 'range', 'a range was asked in this txn');
  return op.range.kvs;
}

// ---- Reads of the state machine ---------------------------------------------------------------

export function storeOf(shard: ShardHandle): MvccStore {
  return kvEngineOf(shard.machine()).mvcc;
}

/** The owner of `prefix` (lowest create revision) at `revision` (0: now); undefined if none. */
export function ownerAt(store: MvccStore, prefix: Uint8Array, revision = 0): KeyValue | undefined {
  return store.range({ key: prefix, rangeEnd: prefixEnd(prefix), revision, sortOrder: 'ascend', sortTarget: 'create', limit: 1 }).kvs[0];
}

export function sameKey(a: Uint8Array, b: Uint8Array): boolean {
  return compareBytes(a, b) === 0;
}

// ---- Joining, waiting, leaving ---------------------------------------------------------------

/** A session key in a name's queue. */
export interface Joined {
  readonly session: Session;
  readonly key: Buffer;
  /** The key's create revision: its place in the queue (and a lock's fencing token). */
  readonly rev: number;
  /** The revision of the txn that joined (etcd's response header of a Campaign). */
  readonly txnRevision: number;
  /** The key existed already (the same lease joined before): its value then. */
  readonly existingValue: Uint8Array | undefined;
  /** The owner right after joining, when asked for. */
  readonly owner: KeyValue | undefined;
}

/**
 * Creates the session key (`if create_revision(key) == 0 then put(key, value, lease) else
 * get(key)`, with the owner read in the same txn when `withOwner`), or finds it already there.
 * A drawn key that exists is someone else's: another is drawn.
 */
export async function joinQueue(
  ctx: ConcurrencyContext,
  shard: ShardHandle,
  request: { prefix: Uint8Array; lease: bigint; value: Uint8Array; withOwner: boolean },
): Promise<Joined> {
  checkLeasesOfShard(ctx.router, shard, [request.lease]);
  const session = await openSession(ctx, shard, request.lease);
  const extra = request.withOwner ? [ownerOp(request.prefix)] : [];
  for (let draw = 1; ; draw++) {
    const key = sessionKey(request.prefix, session.keyId ?? drawKeyId());
    let result: TxnResult;
    try {
      result = await proposeTxn(
        shard,
        { compare: [createRevisionIs(key, 0)], success: [putOp(key, request.value, session.lease), ...extra], failure: [getOp(key), ...extra] },
        recipeOptions(ctx),
      );
    } catch (error) {
      // Its outcome may be unknown (a timeout): a drawn key is nobody else's, so it goes.
      if (session.keyId === undefined) await forget(ctx, shard, key);
      throw error;
    }
    const owner = request.withOwner ? rangeKvs(result.responses[1])[0] : undefined;
    if (result.succeeded) return { session, key, rev: result.revision, txnRevision: result.revision, existingValue: undefined, owner };
    if (session.keyId !== undefined) {
      const existing = rangeKvs(result.responses[0])[0];
      assert(existing !== undefined, 'the compare found the key, so the get in the same txn does');
      return { session, key, rev: existing.createRevision, txnRevision: result.revision, existingValue: existing.value, owner };
    }
    if (draw >= sessionKeyDrawsMax) throw new Error(`${draw} random session keys under one name were all taken`);
  }
}

/** Deletes `key` if it is still the generation created at `rev` (etcd's Resign; an orphan lock key). */
export async function deleteIfCreatedAt(ctx: ConcurrencyContext, shard: ShardHandle, key: Uint8Array, rev: number): Promise<TxnResult> {
  return proposeTxn(shard, { compare: [createRevisionIs(key, rev)], success: [{ request_delete_range: { key, range_end: new Uint8Array(0), prev_kv: false } }], failure: [] }, recipeOptions(ctx));
}

/** Puts `value` on `key` if it is still the generation created at `rev` (etcd's Proclaim). */
export async function putIfCreatedAt(ctx: ConcurrencyContext, shard: ShardHandle, request: { key: Uint8Array; rev: number; value: Uint8Array; lease: bigint }): Promise<TxnResult> {
  return proposeTxn(shard, { compare: [createRevisionIs(request.key, request.rev)], success: [putOp(request.key, request.value, request.lease)], failure: [] }, recipeOptions(ctx));
}

/**
 * Takes a waiter's key out of the queue after its request failed (canceled, timed out, the node
 * stopping), so it does not block the ones behind it, as etcd does. Best effort: the request's
 * own error is what the client hears.
 */
export async function leaveQueue(ctx: ConcurrencyContext, shard: ShardHandle, joined: Joined): Promise<void> {
  try {
    await deleteIfCreatedAt(ctx, shard, joined.key, joined.rev);
  } catch {
    // The key stays until its lease expires (or, without one, until someone deletes it).
  }
}

async function forget(ctx: ConcurrencyContext, shard: ShardHandle, key: Uint8Array): Promise<void> {
  try {
    await proposeDelete(shard, key, recipeOptions(ctx));
  } catch {
    // As leaveQueue.
  }
}

/**
 * etcd's waitDeletes: until no key under `prefix` was created before `rev`, waits for the
 * deletion of the newest such key. Then, in the same step as that last read, checks that the
 * waiter's own key is still the one created at `rev` (`held`; etcd 3.5's Mutex checks this too).
 * Returns the revision of that read.
 *
 * The reads are of this node's state as it is, without a ReadIndex round first (etcd's recipe,
 * a client of the KV API, reads linearizably). They need none: this node applied the join
 * (a write resolves once its proposer applied it), so its state holds every key created before
 * ours that was not deleted since, and no key created later can come before ours. A state
 * behind the leader's can only still show keys that are gone, which makes the waiter wait for a
 * delete it will see applied here; "none left" read here was true at the revision read, which
 * was committed after the join, within the request. The round cost a heartbeat to a quorum on
 * every handoff of a contended lock, after the holder's delete was already applied here.
 * What it gives up is freshness on a node that lags (catching up after a partition): it may find
 * the waiter's own key still there at the revision it reads though the cluster deleted it since
 * (the session was lost), and answer a holder that no longer holds. That is the lease-only
 * overlap any lease-based lock has after a lost session, and the fencing token refuses its writes.
 * A ReadIndex would narrow the window, not close it: the key can go right after the read.
 */
export async function waitForTurn(
  ctx: ConcurrencyContext,
  shard: ShardHandle,
  joined: Joined,
  prefix: Uint8Array,
  signal: AbortSignal,
): Promise<{ revision: number; held: boolean }> {
  // The store's first write is revision 2, and max_create_revision 0 would mean "no bound".
  assert(joined.rev >= 2, 'a session key is created at revision 2 or later');
  for (;;) {
    signal.throwIfAborted();
    // From here to the watcher's registration nothing yields: no write can come between.
    const store = storeOf(shard);
    const revision = store.revision;
    // invariant: this node applied the join (see above), so its state is at or after it.
    assert(revision >= joined.txnRevision, 'the waiter reads a state that holds its own join');
    const before = store.range({
      key: prefix,
      rangeEnd: prefixEnd(prefix),
      sortOrder: 'descend',
      sortTarget: 'create',
      limit: 1,
      maxCreateRevision: joined.rev - 1,
      keysOnly: true,
    }).kvs[0];
    if (before === undefined) {
      const mine = store.range({ key: joined.key }).kvs[0];
      return { revision, held: mine !== undefined && mine.createRevision === joined.rev };
    }
    await waitForDelete(ctx.watchHub(shard), before.key, revision + 1, signal);
  }
}

/**
 * Releases a watcher. Deferred to a microtask: it may be called from inside the hub's delivery,
 * and a hub catching a watcher up subscribes it after delivering (removed first, it would stay).
 */
export function releaseWatcher(hub: WatchHub, watcher: Watcher): void {
  watcher.closed = true;
  queueMicrotask(() => hub.remove(watcher));
}

/**
 * Resolves once `key` is deleted at `fromRevision` or later (or its history from there was
 * compacted away: the caller reads again); rejects with the signal's reason when it aborts.
 */
export function waitForDelete(hub: WatchHub, key: Uint8Array, fromRevision: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (error?: unknown): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      releaseWatcher(hub, watcher);
      if (error === undefined) resolve();
      else reject(error);
    };
    const onAbort = (): void => settle(signal.reason);
    const sink: WatchSink = {
      deliver: (_watcher, events) => {
        if (events.some((event) => event.type === 'delete')) settle();
        return true;
      },
      compacted: () => settle(),
      // A store took the key's prefix (none can while a lock or election key lives there): the wait ends.
      canceled: () => settle(dkvError('watch-other-store')),
      hasRoom: () => true,
    };
    const watcher = new Watcher(0, { key, rangeEnd: undefined, startRevision: fromRevision, noPut: true, noDelete: false, prevKv: false }, sink);
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    hub.add(watcher);
  });
}
