/**
 * `DkvClient`: the TypeScript client of DKV and etcd v3. One object, many servers:
 *
 * - **Priority server list.** Reads go to the available server of highest priority; when it
 *   fails at the connection level the client fails over to the next one, probes the failed one
 *   in the background (Maintenance.Status, backoff, unref'd timers) and moves back once it is
 *   healthy. Waits between attempts follow `reconnect` (exponential backoff with jitter).
 * - **Leader-aware.** The leader is learned from response headers (a new raft term) through
 *   Maintenance.Status and Cluster.MemberList; writes and lease keep-alives go straight to it
 *   when it is one of the configured servers.
 * - **Safe retries.** Reads are retried; a write only when it was refused before being sent or
 *   applied, or when it is idempotent (`{ idempotent: true }`, guarded writes, lock and campaign
 *   with their lease). A write whose outcome is unknown rejects with `UNKNOWN_OUTCOME`.
 * - **Observable.** Events `'server'` (which server and why), `'state'` (connecting, ready,
 *   unavailable, closed) and `'leader'`.
 *
 * Types: keys and values go in as strings (UTF-8) or bytes and come back as Buffers; revisions,
 * versions and counts are numbers; lease, member and cluster ids are bigints; counter values are
 * bigints. Every failure is a `DkvError` with a stable `code`.
 */
import { EventEmitter } from 'node:events';
import { ClientCore, type ConnectionState, type LeaderEvent, type ServerEvent } from './core.js';
import { campaign, electionLeader, type FencingToken, type Leadership, lock, type LockHandle, observe, type SessionOptions } from './concurrency.js';
import { Counter } from './counter.js';
import { Shards } from './shards.js';
import { Stores } from './stores.js';
import { DkvError, isDkvError } from './errors.js';
import { type CallOptionsCommon, type DeleteOptions, type DeleteResult, deleteRequest, deleteResult, type IdempotentOption, type PutOptions, type PutResult, putRequest, putResult, type RangeOptions, type RangeResult, type RangeSelector, rangeRequest, rangeResult } from './kv.js';
import { grantedId, Lease } from './lease.js';
import { type DkvClientOptions, resolveOptions } from './options.js';
import { compare, op, Txn, type TxnOptions, type TxnResult, txnResult, txnRouteKey } from './txn.js';
import { PrefixWatch, type PrefixWatchOptions, Watcher, type WatchOptions } from './watch.js';
import { type Bytes, checkRevision, headerFromWire, idFromWire, type KeyValue, listOf, prefixRangeEnd, type ResponseHeader, toBytes } from './wire.js';

/** The events of a `DkvClient`. */
export interface DkvClientEvents {
  /** The server reads go to changed: `reason` 'initial', 'failover' or 'recovered' (a better server is healthy again). */
  server: [ServerEvent];
  /** The connection state changed. */
  state: [ConnectionState];
  /** A (new) leader was learned. */
  leader: [LeaderEvent];
}

/** Options of `grant`. */
export interface GrantOptions extends CallOptionsCommon {
  /** Keep the lease alive until revoked or closed (default true). */
  readonly keepAlive?: boolean;
}

/** Maintenance.Status of the server in use. */
export interface ServerStatus {
  /** The server that answered. */
  readonly address: string;
  /** The server's etcd API version. */
  readonly version: string;
  /** The member id of the leader it knows (0n: none). */
  readonly leader: bigint;
  readonly raftTerm: number;
  readonly raftIndex: number;
  /** The size of its store in bytes. */
  readonly dbSize: number;
  readonly header: ResponseHeader;
}

/** One member of the cluster. */
export interface Member {
  /** The member id (as response headers' memberId). */
  readonly id: bigint;
  readonly name: string;
  /** Where clients reach it. */
  readonly clientUrls: string[];
  /** Where its peers reach it. */
  readonly peerUrls: string[];
  readonly isLearner: boolean;
}

/** The TypeScript client of DKV and etcd v3 (see the module comment and src/client/README.md). */
export class DkvClient extends EventEmitter<DkvClientEvents> {
  private readonly core: ClientCore;
  /** undefined until known: whether the server offers dkv.v1.KV (fenced writes). */
  private fencedWrites: boolean | undefined;

  /** Validates `options` (DkvError INVALID_ARGUMENT naming the field) and opens channels lazily. */
  constructor(options: DkvClientOptions) {
    super();
    const resolved = resolveOptions(options);
    // Events go out on the next tick, so listeners attached right after construction see the first ones.
    this.core = new ClientCore(resolved, {
      server: (event) => process.nextTick(() => this.emit('server', event)),
      state: (state) => process.nextTick(() => this.emit('state', state)),
      leader: (event) => process.nextTick(() => this.emit('leader', event)),
    });
  }

  /** The connection state now. */
  get state(): ConnectionState {
    return this.core.state;
  }

  /** The address reads go to now (undefined while none is available). */
  get server(): string | undefined {
    const current = this.core.currentServer;
    return current?.available === true ? current.address : undefined;
  }

  /** The leader as last learned (memberId 0n while unknown). */
  get leader(): LeaderEvent {
    return this.core.leader;
  }

  // ---- KV

  /** The key's current (or `revision`'s) key-value, undefined when absent. */
  async get(key: Bytes, options: Omit<RangeOptions, keyof RangeSelector | 'limit' | 'countOnly'> & CallOptionsCommon = {}): Promise<KeyValue | undefined> {
    const result = await this.range(key, undefined, options);
    return result.kvs[0];
  }

  /**
   * Keys in a range: `selector` is the range end (keys in [key, rangeEnd)), `{ prefix: true }`,
   * or undefined for the key alone.
   */
  async range(key: Bytes, selector: Bytes | RangeSelector | undefined, options: RangeOptions & CallOptionsCommon = {}): Promise<RangeResult> {
    const range: RangeSelector = selector === undefined ? {} : typeof selector === 'string' || selector instanceof Uint8Array ? { rangeEnd: selector } : selector;
    const request = rangeRequest(key, { ...options, ...range });
    const response = await this.core.unary({ service: 'etcdserverpb.KV', method: 'Range', request, routeKey: request.key as Uint8Array, kind: 'read', retry: 'safe', what: 'range', timeoutMs: options.timeoutMs, signal: options.signal });
    return rangeResult(response);
  }

  /** Writes `value` at `key`. Not retried once sent unless `idempotent` (then UNKNOWN_OUTCOME). */
  async put(key: Bytes, value: Bytes, options: PutOptions & IdempotentOption & CallOptionsCommon = {}): Promise<PutResult> {
    const request = putRequest(key, value, options);
    const response = await this.core.unary({ service: 'etcdserverpb.KV', method: 'Put', request, routeKey: request.key as Uint8Array, kind: 'write', retry: options.idempotent === true ? 'safe' : 'unsafe', what: 'put', timeoutMs: options.timeoutMs, signal: options.signal });
    return putResult(response);
  }

  /** Deletes `key` (or a range, or a prefix). Not retried once sent unless `idempotent`. */
  async delete(key: Bytes, options: DeleteOptions & IdempotentOption & CallOptionsCommon = {}): Promise<DeleteResult> {
    const request = deleteRequest(key, options);
    const response = await this.core.unary({ service: 'etcdserverpb.KV', method: 'DeleteRange', request, routeKey: request.key as Uint8Array, kind: 'write', retry: options.idempotent === true ? 'safe' : 'unsafe', what: 'delete', timeoutMs: options.timeoutMs, signal: options.signal });
    return deleteResult(response);
  }

  /** Compacts history up to `revision` (retried: compacting twice to one revision changes nothing more). */
  async compact(revision: number, options: { readonly physical?: boolean } & CallOptionsCommon = {}): Promise<ResponseHeader> {
    const response = await this.core.unary({ service: 'etcdserverpb.KV', method: 'Compact', request: { revision: checkRevision(revision, 'revision'), physical: options.physical === true }, kind: 'write', retry: 'safe', what: 'compact', timeoutMs: options.timeoutMs, signal: options.signal });
    return headerFromWire(response.header);
  }

  /** A transaction: `.if(compare…).then(op…).else(op…).commit()`; see `compare` and `op`. */
  txn(options: TxnOptions = {}): Txn {
    return new Txn(async (request, readOnly) => {
      const response = await this.core.unary({ service: 'etcdserverpb.KV', method: 'Txn', request, routeKey: txnRouteKey(request), kind: readOnly ? 'read' : 'write', retry: readOnly || options.idempotent === true ? 'safe' : 'unsafe', what: 'txn', timeoutMs: options.timeoutMs, signal: options.signal });
      return txnResult(response);
    });
  }

  // ---- Watches

  /** Watches a key, a range or a prefix; resumes across failover with no gap and no duplicate. */
  watch(key: Bytes, options: WatchOptions = {}): Watcher {
    this.core.assertOpen();
    const keyBytes = toBytes(key);
    if (options.prefix === true && options.rangeEnd !== undefined) throw new DkvError('INVALID_ARGUMENT', 'give prefix or rangeEnd, not both');
    const rangeEnd = options.prefix === true ? prefixRangeEnd(keyBytes) : options.rangeEnd === undefined ? undefined : toBytes(options.rangeEnd, 'rangeEnd');
    checkRevision(options.startRevision, 'startRevision');
    return new Watcher(this.core, keyBytes, rangeEnd, options);
  }

  /** The keys under `prefix` (with `snapshot`, the default), then every change after them. */
  watchPrefix(prefix: Bytes, options: PrefixWatchOptions = {}): PrefixWatch {
    this.core.assertOpen();
    checkRevision(options.startRevision, 'startRevision');
    return new PrefixWatch(this.core, toBytes(prefix, 'prefix'), options, (key, rangeOptions) => this.range(key, undefined, rangeOptions));
  }

  // ---- Leases

  /** Grants a lease of `ttl` seconds, kept alive (on the leader) unless `keepAlive: false`. */
  async grant(ttl: number, options: GrantOptions = {}): Promise<Lease> {
    if (!Number.isSafeInteger(ttl) || ttl <= 0) throw new DkvError('INVALID_ARGUMENT', `ttl must be a whole number of seconds > 0 (got ${ttl})`);
    const sentAt = Date.now();
    // Retried: a repeated grant at worst leaves an unused lease that expires after its TTL.
    const response = await this.core.unary({ service: 'etcdserverpb.Lease', method: 'LeaseGrant', request: { TTL: ttl, ID: 0 }, kind: 'write', retry: 'safe', what: 'lease grant', timeoutMs: options.timeoutMs, signal: options.signal });
    const granted = Number(idFromWire(response.TTL));
    return new Lease(this.core, grantedId(response), granted, sentAt, options.keepAlive !== false);
  }

  /** A handle on an existing lease (not kept alive by this client): for `revoke` and `timeToLive`. */
  lease(id: bigint): Lease {
    return new Lease(this.core, id, 0, Date.now(), false);
  }

  /** Ids of every lease. */
  async leases(options: CallOptionsCommon = {}): Promise<bigint[]> {
    const response = await this.core.unary({ service: 'etcdserverpb.Lease', method: 'LeaseLeases', request: {}, kind: 'read', retry: 'safe', what: 'lease list', ...options });
    return listOf(response.leases).map((l) => idFromWire((l as Record<string, unknown>).ID));
  }

  // ---- Locks, fenced writes, elections

  /** Waits for the lock `name` (etcd's Lock service) and holds it under a lease. */
  lock(name: Bytes, options: SessionOptions = {}): Promise<LockHandle> {
    return lock(this.concurrencyHost(), name, options);
  }

  /**
   * Puts `value` at `key` only while `token` holds (its lock key exists with that create
   * revision); otherwise rejects with FENCE_STALE and writes nothing. On DKV this is
   * `dkv.v1.KV` Put with a fence; on etcd, which has no fenced put, the same check as a Txn
   * (`createRevision(token.key) = token.revision` → put), which is equivalent: a missing key has
   * create revision 0 and a token is > 0. Retried like a read: a repeat while the token holds
   * rewrites the same value.
   */
  async guardedPut(key: Bytes, value: Bytes, token: FencingToken, options: PutOptions & CallOptionsCommon = {}): Promise<PutResult> {
    if (!Number.isSafeInteger(token.revision) || token.revision <= 0) throw new DkvError('INVALID_ARGUMENT', 'a fencing token has a revision > 0');
    const call = { timeoutMs: options.timeoutMs, signal: options.signal };
    if (this.fencedWrites !== false) {
      try {
        const request = putRequest(key, value, options);
        const response = await this.core.unary({ service: 'dkv.v1.KV', method: 'Put', request: { ...request, fence: { key: token.key, token: token.revision } }, routeKey: request.key as Uint8Array, kind: 'write', retry: 'safe', what: 'guarded put', ...call });
        this.fencedWrites = true;
        return putResult(response);
      } catch (error) {
        if (!isDkvError(error, 'NOT_SUPPORTED')) throw error;
        this.fencedWrites = false;
      }
    }
    const result = await this.txn({ idempotent: true, ...call })
      .if(compare.createRevision(token.key, '=', token.revision))
      .then(op.put(key, value, options))
      .commit();
    if (!result.succeeded) throw new DkvError('FENCE_STALE', 'guarded put: fencing token is stale (the lock key has another owner or is gone)');
    const first = result.responses[0];
    return first?.type === 'put' ? first : { header: result.header };
  }

  /** Waits to lead election `name` with `value` (etcd's Election service). */
  campaign(name: Bytes, value: Bytes, options: SessionOptions = {}): Promise<Leadership> {
    return campaign(this.concurrencyHost(), name, value, options);
  }

  /** The current leader of election `name` (undefined when nobody leads). */
  electionLeader(name: Bytes, options: CallOptionsCommon = {}): Promise<KeyValue | undefined> {
    return electionLeader(this.core, toBytes(name, 'name'), options);
  }

  /** The leaders of election `name` as they change. */
  observe(name: Bytes, options: { readonly signal?: AbortSignal } = {}): AsyncIterable<KeyValue> & { close(): void } {
    this.core.assertOpen();
    return observe(this.core, toBytes(name, 'name'), options);
  }

  private concurrencyHost(): { core: ClientCore; grant: (ttl: number) => Promise<Lease>; get: (key: Bytes) => Promise<KeyValue | undefined> } {
    return { core: this.core, grant: (ttl) => this.grant(ttl), get: (key) => this.get(key) };
  }

  // ---- Counters

  /** DKV's atomic counter at `key` (NOT_SUPPORTED on etcd). */
  counter(key: Bytes): Counter {
    return new Counter(this.core, toBytes(key));
  }

  // ---- Stores

  /** DKV's stores: create, list, describe, drop (`dkv.v1.Admin`; root only under auth; NOT_SUPPORTED on etcd). */
  get stores(): Stores {
    return new Stores(this.core);
  }

  /** DKV's shards: the map's list, and one server's replica of a shard (`dkv.v1.Admin`; root only under auth; NOT_SUPPORTED on etcd). */
  get shards(): Shards {
    return new Shards(this.core);
  }

  // ---- Cluster

  /** Maintenance.Status of the server reads go to. */
  async status(options: CallOptionsCommon = {}): Promise<ServerStatus> {
    const response = await this.core.unary({ service: 'etcdserverpb.Maintenance', method: 'Status', request: {}, kind: 'read', retry: 'safe', what: 'status', ...options });
    const header = headerFromWire(response.header);
    return {
      address: this.server ?? '',
      version: String(response.version ?? ''),
      leader: BigInt.asUintN(64, idFromWire(response.leader)),
      raftTerm: Number(idFromWire(response.raftTerm)),
      raftIndex: Number(idFromWire(response.raftIndex)),
      dbSize: Number(idFromWire(response.dbSize)),
      header,
    };
  }

  /** The cluster's members. */
  async members(options: CallOptionsCommon = {}): Promise<Member[]> {
    const response = await this.core.unary({ service: 'etcdserverpb.Cluster', method: 'MemberList', request: {}, kind: 'read', retry: 'safe', what: 'member list', ...options });
    return listOf(response.members).map((m) => {
      const member = m as Record<string, unknown>;
      return {
        id: BigInt.asUintN(64, idFromWire(member.ID)),
        name: String(member.name ?? ''),
        clientUrls: listOf(member.clientURLs).map(String),
        peerUrls: listOf(member.peerURLs).map(String),
        isLearner: member.isLearner === true,
      };
    });
  }

  /** Closes every channel, watch, lease keep-alive and timer; pending operations reject with CLOSED. */
  close(): void {
    this.core.close();
  }
}
