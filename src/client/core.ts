/**
 * The connection machinery under `DkvClient`: one `EtcdChannel` per configured server, the choice
 * of server (priority, availability, leader), background health probes, the retry loop of unary
 * calls and its safety rules. Internal: `DkvClient` is its only user.
 *
 * Retry rules (also in README.md):
 * - a call that failed *before it was sent* (the server could not be connected within
 *   `connectTimeoutMs`) goes to the next server, whatever it is;
 * - a call the server *refused without applying it* (etcd's "no leader", "not capable", "rpc not
 *   supported for learner", "too many requests", DKV's wrong-shard, shard-splitting and shard-not-hosted) is retried;
 * - a call whose outcome is unknown (the connection broke after sending, a deadline) is retried
 *   only when `retry` is 'safe' (reads, and writes the caller or a guard made idempotent);
 *   otherwise it rejects with `UNKNOWN_OUTCOME`, never repeated blindly;
 * - every other error is the answer and rejects at once.
 */
import { strict as assert } from 'node:assert';
import { setMaxListeners } from 'node:events';
import type * as grpc from '@grpc/grpc-js';
import type { ErrorCode } from '../errors.js';
import { Backoff } from './backoff.js';
import { type Decoded, EtcdChannel, grpcStatus, longsAsStrings, type RpcError, type ServiceName } from './etcd-channel.js';
import { DkvError, fromRpcError } from './errors.js';
import { grpcJs } from './grpc-js.js';
import type { ResolvedOptions } from './options.js';
import { hostPort, isPreferredOver, preferredServer, serversByPreference } from './servers.js';
import { defaultStoreName, type RoutedShard, ShardRoutes } from './shard-routes.js';
import { shardFromWire } from './stores.js';
import { headerFromWire, idFromWire, listOf } from './wire.js';

/** Where a call goes: reads to the preferred server, writes (and lease keep-alives) to the leader when it is known. */
export type CallKind = 'read' | 'write';

/** Connection states `DkvClient` reports. */
export type ConnectionState = 'connecting' | 'ready' | 'unavailable' | 'closed';

/** Why the client uses the server it uses. */
export type ServerChangeReason = 'initial' | 'failover' | 'recovered';

/** The `'server'` event. */
export interface ServerEvent {
  readonly address: string;
  readonly priority: number;
  readonly reason: ServerChangeReason;
  /** The server used before, if any. */
  readonly previous: string | undefined;
  /** For a failover: what went wrong with the previous server. */
  readonly error?: DkvError;
}

/** The `'leader'` event. */
export interface LeaderEvent {
  readonly memberId: bigint;
  readonly raftTerm: number;
  /** The configured server that is the leader, undefined when it is none of them. */
  readonly address: string | undefined;
}

/** What the core tells its owner. */
export interface CoreEvents {
  server(event: ServerEvent): void;
  state(state: ConnectionState): void;
  leader(event: LeaderEvent): void;
}

/** A health probe waits at most this long for its Status answer. */
export const probeTimeoutMsMax = 1_000;
/** How long a member list learned from the cluster is used before it is asked again. */
export const memberListMaxAgeMs = 30_000;
/** How long the shard routes are used before a keyed write asks for them again (in the background). */
export const shardRoutesMaxAgeMs = 30_000;
/** Routes are asked for at most this often, whatever says they are stale (a new term, a wrong-shard refusal). */
export const shardRoutesRefreshMinMs = 200;
/** After a server refused ShardList (etcd has no dkv.v1; under auth it is root's): ask again after this long. */
export const shardRoutesRefusedRetryMs = 60_000;

/** One configured server. */
export interface Server {
  readonly index: number;
  readonly address: string;
  readonly priority: number;
  readonly channel: EtcdChannel;
  available: boolean;
  readonly probeBackoff: Backoff;
  probeTimer: NodeJS.Timeout | undefined;
}

/** One unary call as the retry loop sees it. */
export interface UnaryCall {
  readonly service: ServiceName;
  readonly method: string;
  readonly request: object;
  readonly kind: CallKind;
  /** 'safe': may be sent again when its outcome is unknown. */
  readonly retry: 'safe' | 'unsafe';
  /** What the call does, for error messages ("put", "lock"…). */
  readonly what: string;
  readonly timeoutMs?: number;
  /** Calls that wait (Lock, Campaign) have no deadline; only the signal ends them. */
  readonly waits?: boolean;
  readonly signal?: AbortSignal | undefined;
  /**
   * The key the call names (a txn's first one): a write goes to the leader of the shard that holds
   * it when the client knows that shard is a store's and who leads it; and the response's term, for
   * a store's key, is that shard's, not the default store's.
   */
  readonly routeKey?: Uint8Array;
  /**
   * Runs before a 'safe' call is sent again after an attempt whose outcome is unknown. Lock and
   * Campaign delete their own key here: the server that lost the first attempt may still take
   * that key out of the queue, and must not take the one a retry found in place and won with.
   */
  readonly beforeRetry?: () => Promise<void>;
}

/** Server-side codes meaning "refused, nothing applied": any call may be sent again. */
const notAppliedCodes: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['no-leader', 'not-capable', 'not-supported-for-learner', 'too-many-requests', 'wrong-shard', 'shard-splitting', 'shard-not-hosted']);
/** Of those, the ones that say this server cannot serve now: use another. */
const serverUnfitCodes: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['no-leader', 'not-capable', 'not-supported-for-learner', 'wrong-shard']);

/** How a failed attempt is handled. */
type Failure =
  | { readonly kind: 'answer'; readonly error: DkvError }
  | { readonly kind: 'not-applied'; readonly error: DkvError; readonly serverUnfit: boolean }
  | { readonly kind: 'unknown-outcome'; readonly error: DkvError; readonly transport: boolean }
  | { readonly kind: 'token-refused'; readonly error: DkvError };

function classify(raw: unknown, what: string): Failure {
  const error = fromRpcError(raw, what);
  const status = error.grpcStatus;
  if (error.serverCode !== undefined && notAppliedCodes.has(error.serverCode)) return { kind: 'not-applied', error, serverUnfit: serverUnfitCodes.has(error.serverCode) };
  if (error.serverCode === 'invalid-auth-token') return { kind: 'token-refused', error };
  if (status === grpcStatus.UNAVAILABLE) return { kind: 'unknown-outcome', error, transport: error.serverCode === undefined };
  if (status === grpcStatus.DEADLINE_EXCEEDED) return { kind: 'unknown-outcome', error, transport: false };
  // A server stopping (etcd's "server stopped", a connection reset mid-call) ends a call like this.
  if (status === grpcStatus.CANCELLED || (status === grpcStatus.INTERNAL && /RST_STREAM|stream/i.test(error.serverMessage ?? ''))) return { kind: 'unknown-outcome', error, transport: true };
  return { kind: 'answer', error };
}

/** The connection machinery of one `DkvClient` (see the module comment). */
export class ClientCore {
  readonly servers: Server[];
  private current: Server | undefined;
  private leaderServer: Server | undefined;
  private leaderId = 0n;
  private leaderTerm = 0;
  private refreshingLeader = false;
  private members: { readonly at: number; readonly urls: ReadonlyMap<bigint, readonly string[]> } | undefined;
  private routes:
    | {
        readonly at: number;
        readonly table: ShardRoutes;
        readonly leaders: ReadonlyMap<number, Server>;
        /** Of a shard placed on some members: the configured servers that host it (reads go there). */
        readonly hosts: ReadonlyMap<number, readonly Server[]>;
      }
    | undefined;
  private routesAsked = -Infinity;
  private routesRefusedAt = -Infinity;
  private refreshingRoutes = false;
  /** Raised whenever the routes are found stale: a ShardList asked before that is not installed. */
  private routesGeneration = 0;
  private stateNow: ConnectionState = 'connecting';
  private closedNow = false;
  private token: string | undefined;
  private authenticating: Promise<void> | undefined;
  /** Aborts every wait of the core when the client closes. */
  private readonly closing = new AbortController();
  /** Watches, leases and other long-lived parts to close with the client. */
  private readonly closables = new Set<{ close(): void }>();

  constructor(
    readonly options: ResolvedOptions,
    private readonly events: CoreEvents,
  ) {
    // Every call in flight listens to the close signal (and removes its listener when it ends):
    // many at once are normal, not a leak.
    setMaxListeners(0, this.closing.signal);
    const credentials = this.credentials();
    const interceptor: grpc.Interceptor = (callOptions, nextCall) =>
      new (grpcJs().InterceptingCall)(nextCall(callOptions), {
        start: (metadata, listener, next) => {
          if (this.token !== undefined) metadata.set('token', this.token);
          next(metadata, listener);
        },
      });
    this.servers = options.servers.map((s, index) => ({
      index,
      address: s.address,
      priority: s.priority,
      channel: new EtcdChannel(s.address, {
        credentials,
        decode: longsAsStrings,
        reconnectBackoffMs: { initial: Math.max(options.reconnect.initialDelayMs, 1), max: Math.max(options.reconnect.maxDelayMs, 1) },
        channelOptions: options.auth === undefined ? {} : { interceptors: [interceptor] },
      }),
      available: true,
      probeBackoff: new Backoff(options.reconnect),
      probeTimer: undefined,
    }));
    this.select(undefined);
  }

  private credentials(): grpc.ChannelCredentials | undefined {
    const tls = this.options.tls;
    if (tls === undefined) return undefined;
    const buffer = (v: Buffer | string | undefined): Buffer | null => (v === undefined ? null : Buffer.from(v));
    return grpcJs().credentials.createSsl(buffer(tls.ca), buffer(tls.key), buffer(tls.cert));
  }

  get state(): ConnectionState {
    return this.stateNow;
  }

  get closed(): boolean {
    return this.closedNow;
  }

  /** The server reads go to now. */
  get currentServer(): Server | undefined {
    return this.current;
  }

  /** The leader as last learned (memberId 0n: unknown). */
  get leader(): LeaderEvent {
    return { memberId: this.leaderId, raftTerm: this.leaderTerm, address: this.leaderServer?.address };
  }

  /** A signal that aborts when the client closes. */
  get closeSignal(): AbortSignal {
    return this.closing.signal;
  }

  private setState(state: ConnectionState): void {
    if (this.stateNow === state || this.stateNow === 'closed') return;
    this.stateNow = state;
    this.events.state(state);
  }

  /** Re-chooses the server in use after availability changed. */
  private select(error: DkvError | undefined): void {
    const index = preferredServer(this.servers);
    const next = index === undefined ? undefined : this.servers[index];
    if (next === undefined) {
      this.setState('unavailable');
      return;
    }
    if (next === this.current) return;
    const previous = this.current;
    this.current = next;
    const reason: ServerChangeReason = previous === undefined ? 'initial' : isPreferredOver(this.servers, next.index, previous.index) ? 'recovered' : 'failover';
    this.events.server(error === undefined || reason !== 'failover' ? { address: next.address, priority: next.priority, reason, previous: previous?.address } : { address: next.address, priority: next.priority, reason, previous: previous?.address, error });
  }

  /** A call to `server` failed at the connection level (or it said it cannot serve): use another, probe it. */
  markUnavailable(server: Server, error: DkvError): void {
    if (this.closedNow) return;
    if (this.leaderServer === server) this.leaderServer = undefined;
    if (!server.available) return;
    server.available = false;
    this.select(error);
    this.scheduleProbe(server);
  }

  /** A call to `server` succeeded. */
  markAvailable(server: Server): void {
    if (this.closedNow) return;
    server.probeBackoff.reset();
    clearTimeout(server.probeTimer);
    server.probeTimer = undefined;
    if (!server.available) {
      server.available = true;
      this.select(undefined);
    }
    this.setState('ready');
  }

  private scheduleProbe(server: Server): void {
    if (this.closedNow || server.probeTimer !== undefined) return;
    server.probeTimer = setTimeout(() => {
      server.probeTimer = undefined;
      void this.probe(server);
    }, server.probeBackoff.next());
    server.probeTimer.unref();
  }

  /** The health probe: Maintenance.Status answered, with a leader known to the server. */
  private async probe(server: Server): Promise<void> {
    if (this.closedNow || server.available) return;
    try {
      const status = await server.channel.maintenance('Status', {}, { timeoutMs: Math.min(probeTimeoutMsMax, this.options.connectTimeoutMs) });
      if (idFromWire(status.leader) === 0n) throw new Error('no leader');
      this.markAvailable(server);
    } catch {
      this.scheduleProbe(server);
    }
  }

  /** The server a call of `kind` goes to now, or undefined when none is available. */
  route(kind: CallKind, routeKey?: Uint8Array): Server | undefined {
    if (kind === 'write') {
      if (routeKey !== undefined) {
        const shardLeader = this.shardLeaderServer(routeKey);
        if (shardLeader !== undefined) return shardLeader;
      }
    }
    // A shard placed on some members: a server that hosts it (no forwarding hop; a watch must).
    if (routeKey !== undefined) {
      const host = this.shardHostServer(routeKey);
      if (host !== undefined) return host;
    }
    if (kind === 'write' && this.leaderServer?.available === true) return this.leaderServer;
    return this.current?.available === true ? this.current : undefined;
  }

  /**
   * For a key of a shard placed on some members: how many configured servers host it, as the
   * routes say; undefined when they do not say (not asked yet, or the key's shard is not placed
   * in them: they may predate the store).
   */
  placedHostCount(key: Uint8Array): number | undefined {
    const shard = this.routes === undefined ? undefined : this.storeShardOf(key);
    if (shard === undefined || shard.replicas.length === 0) return undefined;
    return this.routes?.hosts.get(shard.id)?.length ?? 0;
  }

  /**
   * For a key of a shard placed on some members (a store created with replicas): an available
   * configured server that hosts it, the current one when it does; undefined otherwise.
   */
  shardHostServer(key: Uint8Array): Server | undefined {
    this.refreshRoutesIfOld();
    const shard = this.storeShardOf(key);
    if (shard === undefined || shard.replicas.length === 0) return undefined;
    const hosts = this.routes?.hosts.get(shard.id) ?? [];
    if (this.current !== undefined && this.current.available && hosts.includes(this.current)) return this.current;
    return hosts.find((server) => server.available);
  }

  /** The store shard that holds `key`, as the routes last said (undefined: the default store's, or not known). */
  private storeShardOf(key: Uint8Array): RoutedShard | undefined {
    const routes = this.routes;
    if (routes === undefined || !routes.table.hasStores) return undefined;
    const shard = routes.table.shardOf(key);
    return shard === undefined || shard.store === defaultStoreName ? undefined : shard;
  }

  /** Whether a call naming `key` (none: no key) is known to be the default store's. */
  private inDefaultStore(key: Uint8Array | undefined): boolean {
    if (key === undefined) return true;
    const routes = this.routes;
    // No routes because the server refused them (etcd, or auth without root): no store is known.
    if (routes === undefined) return Date.now() - this.routesRefusedAt < shardRoutesRefusedRetryMs;
    return !routes.table.hasStores || routes.table.shardOf(key)?.store === defaultStoreName;
  }

  /**
   * The configured server that leads the store shard holding `key`, when it is known and available;
   * asks for the routes in the background when they are missing or old.
   */
  private shardLeaderServer(key: Uint8Array): Server | undefined {
    this.refreshRoutesIfOld();
    const shard = this.storeShardOf(key);
    if (shard === undefined) return undefined;
    const server = this.routes?.leaders.get(shard.id);
    return server?.available === true ? server : undefined;
  }

  /**
   * Asks the server in use for ShardList and maps each store shard's leader to a configured server
   * by its client URLs. In the background, one at a time, at most every shardRoutesRefreshMinMs; a
   * server that refuses (etcd, or auth without root) is asked again only after a minute. Until routes
   * come, and for a leader none of the configured servers is, writes go where they went before (the
   * node forwards them to the shard's leader).
   */
  /** Asks for the routes when there are none or they are older than shardRoutesMaxAgeMs. */
  private refreshRoutesIfOld(): void {
    const routes = this.routes;
    if (routes === undefined || Date.now() - routes.at > shardRoutesMaxAgeMs) this.refreshRoutes();
  }

  /**
   * Asks for the routes again (at most every shardRoutesRefreshMinMs), keeping the ones held and
   * any answer on its way: a call refused where its placed shard is not hosted.
   */
  askRoutes(): void {
    this.refreshRoutes();
  }

  /** The routes are stale (the map changed under a call, a shard's leader refused it): ask again. */
  private invalidateRoutes(): void {
    this.routes = undefined;
    this.routesGeneration += 1;
    this.refreshRoutes(); // (at most every shardRoutesRefreshMinMs still: a later keyed call asks otherwise)
  }

  private refreshRoutes(): void {
    const now = Date.now();
    if (this.refreshingRoutes || this.closedNow || now - this.routesAsked < shardRoutesRefreshMinMs || now - this.routesRefusedAt < shardRoutesRefusedRetryMs) return;
    const server = this.current;
    if (server === undefined || !server.available) return;
    this.refreshingRoutes = true;
    this.routesAsked = now;
    const generation = this.routesGeneration;
    void (async () => {
      try {
        const response = await server.channel.call('dkv.v1.Admin', 'ShardList', {}, { timeoutMs: probeTimeoutMsMax, signal: this.closing.signal });
        const table = ShardRoutes.of(listOf(response.shards).map((shard) => ({ ...shardFromWire(shard), store: String((shard as Record<string, unknown>).store ?? '') })));
        const leaders = new Map<number, Server>();
        const hosts = new Map<number, Server[]>();
        if (table.hasStores) {
          const urls = await this.memberUrls(server);
          for (const shard of listOf(response.shards).map(shardFromWire)) {
            if (table.shard(shard.id) === undefined) continue;
            const placed = shard.replicas.map((id) => this.serverOf(urls.get(id))).filter((s): s is Server => s !== undefined);
            if (placed.length > 0) hosts.set(shard.id, placed);
            if (shard.leader === 0n) continue;
            const leaderServer = this.serverOf(urls.get(shard.leader));
            if (leaderServer !== undefined) leaders.set(shard.id, leaderServer);
          }
        }
        if (generation !== this.routesGeneration) return; // found stale meanwhile: asked again below
        this.routes = { at: Date.now(), table, leaders, hosts };
        // The default store's term as that server sees it: a term learned from a store's response
        // before these routes said it was one no longer stands for the default store's.
        const defaultTerm = table.defaultTerm;
        if (defaultTerm > 0) this.leaderTerm = defaultTerm;
      } catch (error) {
        const status = (error as RpcError | null)?.code;
        if (status === grpcStatus.UNIMPLEMENTED || status === grpcStatus.PERMISSION_DENIED || status === grpcStatus.UNAUTHENTICATED) this.routesRefusedAt = Date.now();
        // Otherwise the next keyed write asks again (after shardRoutesRefreshMinMs).
      } finally {
        this.refreshingRoutes = false;
        if (generation !== this.routesGeneration && !this.closedNow) this.refreshRoutes();
      }
    })();
  }

  /** The members' client URLs, from the cache while it is young, else from `server`'s MemberList. */
  private async memberUrls(server: Server): Promise<ReadonlyMap<bigint, readonly string[]>> {
    if (this.members !== undefined && Date.now() - this.members.at < memberListMaxAgeMs) return this.members.urls;
    const list = await server.channel.call('etcdserverpb.Cluster', 'MemberList', {}, { timeoutMs: probeTimeoutMsMax, signal: this.closing.signal });
    const map = new Map<bigint, readonly string[]>();
    for (const m of listOf(list.members)) {
      const member = m as Decoded;
      map.set(BigInt.asUintN(64, idFromWire(member.ID)), listOf(member.clientURLs).map(String));
    }
    this.members = { at: Date.now(), urls: map };
    return map;
  }

  /** The configured server one of `urls` names, if any. */
  private serverOf(urls: readonly string[] | undefined): Server | undefined {
    if (urls === undefined) return undefined;
    const addresses = new Set(urls.map(hostPort));
    return this.servers.find((s) => addresses.has(s.address));
  }

  /** Waits `ms`, unless the client closes or `signal` aborts (then rejects). Unref'd. */
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const signals = signal === undefined ? [this.closing.signal] : [this.closing.signal, signal];
      const done = (): void => {
        clearTimeout(timer);
        for (const s of signals) s.removeEventListener('abort', done);
        reject(this.closedNow ? this.closedError() : abortedError());
      };
      const timer = setTimeout(() => {
        for (const s of signals) s.removeEventListener('abort', done);
        resolve();
      }, ms);
      timer.unref();
      if (signals.some((s) => s.aborted)) return done();
      for (const s of signals) s.addEventListener('abort', done, { once: true });
    });
  }

  /** The error of an operation on a closed client. */
  closedError(): DkvError {
    return new DkvError('CLOSED', 'the client is closed');
  }

  /** Throws CLOSED once the client is closed. */
  assertOpen(): void {
    if (this.closedNow) throw this.closedError();
  }

  /**
   * A server to send to: the routed one, or (none available) the most preferred one after a
   * backoff wait, since the probes may not have caught up yet.
   */
  async pick(kind: CallKind, backoff: Backoff, signal?: AbortSignal, tried?: Set<Server>, routeKey?: Uint8Array): Promise<Server> {
    const routed = this.route(kind, routeKey);
    if (routed !== undefined && tried?.has(routed) !== true) return routed;
    await this.sleep(backoff.next(), signal);
    const order = serversByPreference(this.servers).map((i) => this.servers[i]!);
    return order.find((s) => s.available && tried?.has(s) !== true) ?? order.find((s) => tried?.has(s) !== true) ?? order[0]!;
  }

  /** Connects `server` within `timeoutMs`; false (and the server marked unavailable) if it cannot. */
  async connect(server: Server, timeoutMs: number): Promise<boolean> {
    try {
      await server.channel.waitForReady(Math.max(1, Math.min(timeoutMs, this.options.connectTimeoutMs)));
      return true;
    } catch (error) {
      this.markUnavailable(server, new DkvError('UNAVAILABLE', `cannot connect to ${server.address}`, { cause: error }));
      return false;
    }
  }

  /** Authenticates on `server` when the client has credentials and no token. */
  private async ensureToken(server: Server, timeoutMs: number): Promise<void> {
    const auth = this.options.auth;
    if (auth === undefined || this.token !== undefined) return;
    this.authenticating ??= (async () => {
      try {
        const response = await server.channel.call('etcdserverpb.Auth', 'Authenticate', { name: auth.username, password: auth.password }, { timeoutMs });
        this.token = String(response.token);
      } catch (error) {
        throw fromRpcError(error, 'authenticate');
      } finally {
        this.authenticating = undefined;
      }
    })();
    await this.authenticating;
  }

  /** One unary call with the retry rules above. */
  async unary(call: UnaryCall): Promise<Decoded> {
    this.assertOpen();
    const deadline = call.waits === true ? Infinity : Date.now() + (call.timeoutMs ?? this.options.timeoutMs);
    const backoff = new Backoff(this.options.reconnect);
    let lastError: DkvError | undefined;
    let tokenRefreshed = false;
    const tried = new Set<Server>();
    for (;;) {
      this.assertOpen();
      if (call.signal?.aborted === true) throw abortedError();
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw timeoutError(call.what, lastError);
      const server = await this.pick(call.kind, backoff, call.signal, tried, call.routeKey);
      if (!(await this.connect(server, Math.min(remaining, this.options.connectTimeoutMs)))) {
        lastError = new DkvError('UNAVAILABLE', `${call.what}: cannot connect to ${server.address}`);
        tried.add(server);
        if (tried.size >= this.servers.length) tried.clear();
        continue;
      }
      tried.clear();
      try {
        await this.ensureToken(server, Math.max(1, Math.min(remaining, this.options.timeoutMs)));
        const left = deadline - Date.now();
        // The client's close cancels the call too (closing a grpc-js channel leaves its calls running).
        const signal = call.signal === undefined ? this.closing.signal : AbortSignal.any([this.closing.signal, call.signal]);
        const response = await server.channel.call(call.service, call.method, call.request, { timeoutMs: call.waits === true ? Infinity : Math.max(1, left), signal });
        this.markAvailable(server);
        this.learn(server, response.header, call.routeKey);
        return response;
      } catch (raw) {
        // The call was sent: a write that is not idempotent may have been applied all the same.
        const mayHaveApplied = call.kind === 'write' && call.retry === 'unsafe';
        if (this.closedNow) throw mayHaveApplied ? unknownOutcome(call.what, 'the client was closed while it ran', this.closedError()) : this.closedError();
        if (isAborted(call.signal)) throw mayHaveApplied ? unknownOutcome(call.what, 'it was aborted while it ran', abortedError(raw)) : abortedError(raw);
        if (raw instanceof DkvError) throw raw;
        const failure = classify(raw, call.what);
        lastError = failure.error;
        switch (failure.kind) {
          case 'answer':
            throw failure.error;
          case 'token-refused':
            if (tokenRefreshed) throw failure.error;
            tokenRefreshed = true;
            this.token = undefined;
            continue;
          case 'not-applied': {
            if (failure.serverUnfit) this.markUnavailable(server, failure.error);
            // A store shard's write refused: its route is stale (or the map changed under the call,
            // a store created or dropped); the default store's leader is forgotten only for a
            // call the routes place in the default store (a key the routes do not know yet may be
            // a store's).
            if (call.routeKey !== undefined && (this.storeShardOf(call.routeKey) !== undefined || failure.error.serverCode === 'wrong-shard')) this.invalidateRoutes();
            if (this.leaderServer === server && this.inDefaultStore(call.routeKey)) this.leaderServer = undefined;
            await this.sleep(backoff.next(), call.signal);
            continue;
          }
          case 'unknown-outcome':
            if (failure.transport) this.markUnavailable(server, failure.error);
            if (call.retry === 'unsafe') {
              throw new DkvError('UNKNOWN_OUTCOME', `${call.what}: the outcome is unknown (${failure.error.serverMessage ?? failure.error.message}); it was not retried because it is not idempotent`, {
                grpcStatus: failure.error.grpcStatus,
                serverMessage: failure.error.serverMessage,
                cause: failure.error,
              });
            }
            await this.sleep(backoff.next(), call.signal);
            if (call.beforeRetry !== undefined) await call.beforeRetry();
            continue;
        }
      }
    }
  }

  /**
   * Learns the leader from a response header: a new term means asking who leads now. A response
   * for a key of a store's shard carries that shard's term: a newer one means asking for the
   * routes again, and it says nothing of the default store's leader.
   */
  learn(server: Server, header: unknown, routeKey?: Uint8Array): void {
    if (header === undefined || header === null) return;
    const term = headerFromWire(header).raftTerm;
    if (routeKey !== undefined) {
      // A keyed response: its term may be a store shard's, which only the routes tell.
      this.refreshRoutesIfOld();
      const shard = this.storeShardOf(routeKey);
      if (shard !== undefined) {
        // 0: the server that listed the routes does not host the shard; its term says nothing.
        if (shard.raftTerm > 0 && term > shard.raftTerm) this.refreshRoutes();
        return;
      }
    }
    if (term > this.leaderTerm || (this.leaderId === 0n && !this.refreshingLeader)) {
      if (term > this.leaderTerm) this.leaderTerm = term;
      void this.refreshLeader(server);
    }
  }

  /** Asks `server` who leads and maps that member to a configured server by its client URLs. */
  private async refreshLeader(server: Server): Promise<void> {
    if (this.refreshingLeader || this.closedNow) return;
    this.refreshingLeader = true;
    try {
      const status = await server.channel.maintenance('Status', {}, { timeoutMs: probeTimeoutMsMax });
      const leaderId = BigInt.asUintN(64, idFromWire(status.leader));
      const term = headerFromWire(status.header).raftTerm;
      if (leaderId === 0n) return;
      let urls = (await this.memberUrls(server)).get(leaderId);
      if (urls === undefined) {
        this.members = undefined; // a member the cached list does not have: ask again
        urls = (await this.memberUrls(server)).get(leaderId);
      }
      const leaderServer = this.serverOf(urls);
      const changed = leaderId !== this.leaderId || leaderServer !== this.leaderServer;
      this.leaderId = leaderId;
      this.leaderTerm = Math.max(this.leaderTerm, term);
      this.leaderServer = leaderServer;
      if (changed && !this.closedNow) this.events.leader({ memberId: leaderId, raftTerm: this.leaderTerm, address: leaderServer?.address });
    } catch {
      // The next response with a newer term asks again; until then writes go to the preferred server.
    } finally {
      this.refreshingLeader = false;
    }
  }

  /** A server went away under a stream: forget it as leader, mark it unavailable when the failure was its connection. */
  streamFailed(server: Server, raw: unknown, what: string): DkvError {
    const error = fromRpcError(raw, what);
    // (Not shard-not-hosted: the server serves other keys; only this one's shard is elsewhere.)
    if (error.serverCode === 'shard-not-hosted') this.askRoutes();
    else if (error.grpcStatus === grpcStatus.UNAVAILABLE || (error.serverCode !== undefined && serverUnfitCodes.has(error.serverCode))) this.markUnavailable(server, error);
    else if (this.leaderServer === server) this.leaderServer = undefined;
    return error;
  }

  /** Registers a long-lived part to close with the client; returns its unregistration. */
  track(part: { close(): void }): () => void {
    this.closables.add(part);
    return () => this.closables.delete(part);
  }

  /** Closes channels, probes and every tracked part. */
  close(): void {
    if (this.closedNow) return;
    this.closedNow = true;
    this.closing.abort();
    for (const part of [...this.closables]) part.close();
    this.closables.clear();
    for (const server of this.servers) {
      clearTimeout(server.probeTimer);
      server.channel.close();
    }
    this.stateNow = 'closed';
    this.events.state('closed');
  }
}

/** True once `signal` aborted (a function, so TypeScript does not narrow it across awaits). */
export function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

/** Statuses a stream cannot recover from by reopening (the server does not have the call, or refuses this client). */
const streamFatalStatuses: ReadonlySet<number> = new Set([grpcStatus.UNIMPLEMENTED, grpcStatus.PERMISSION_DENIED, grpcStatus.UNAUTHENTICATED, grpcStatus.INVALID_ARGUMENT]);

/** The error a broken stream should end with instead of reopening, if reopening cannot help. */
export function fatalStreamError(error: unknown, what: string): DkvError | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'number' && streamFatalStatuses.has(code) ? fromRpcError(error, what) : undefined;
}

/** A write that was sent and may or may not have been applied. */
function unknownOutcome(what: string, why: string, cause: DkvError): DkvError {
  return new DkvError('UNKNOWN_OUTCOME', `${what}: the outcome is unknown (${why})`, { grpcStatus: cause.grpcStatus, cause });
}

/** The error an aborted operation rejects with. */
export function abortedError(cause?: unknown): DkvError {
  return new DkvError('ABORTED', 'the operation was aborted', cause === undefined ? {} : { cause });
}

function timeoutError(what: string, last: DkvError | undefined): DkvError {
  assert(last === undefined || last instanceof DkvError);
  if (last?.code === 'UNAVAILABLE') return new DkvError('UNAVAILABLE', `${what}: no server could serve it before the deadline (${last.message})`, { cause: last });
  return new DkvError('TIMEOUT', `${what}: the deadline passed${last === undefined ? '' : ` (${last.message})`}`, last === undefined ? {} : { cause: last });
}
