/**
 * One DKV node process: the log store, the shard runtime with its groups (shard 0: meta — members;
 * shard 1: the default store's data), the router in front of it, the peer transport, the client
 * gRPC server (KV, Cluster, Maintenance, Watch, Lease, Lock, Election; dkv.v1 Watch, KV and
 * Counter) and the metrics/health HTTP server. Services get the router and narrow interfaces,
 * never this object.
 */
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { type ConfChange, type Entry, SeededPrng, assert, encodeConfChange } from '../../raft/index.js';
import { LevelLogStore, type ShardUpdate } from '../../storage/index.js';
import { clusterIdOf, formatId, memberIdOf } from '../cluster/index.js';
import { authEngineOf, composeStateMachine, kvEngineOf, metaEngineOf, ownershipEngineOf } from '../runtime/index.js';
import { type Caller, type EngineCommand, EngineId, OWNERSHIP_FENCED_SPLIT_VERSION, authOutcome, eventsOf, isCompactionOutcome } from '../engines/index.js';
import { AuthGate } from './auth/gate.js';
import { acceptClientSession, onClientHttp2Servers } from './client-sessions.js';
import { DirectUnary } from './direct-unary.js';
import { ConnectionLoad, withConnectionLimits } from './connection-limits.js';
import { withStreamDeadlines } from './stream-deadline.js';
import { authenticateBurstPerPeer, authenticateBurstPerUser, authenticateRatePerPeerPerSecond, authenticateRatePerUserPerSecond, simpleTokenSweepMs } from './auth/limits.js';
import { JwtTokens } from './auth/jwt.js';
import { RateLimiter } from './auth/rate-limit.js';
import { createAuthService } from './auth/service.js';
import { SimpleTokens } from './auth/tokens.js';
import { DEFAULT_STORE_SHARD, META_ABORT_SPLIT_VERSION, META_MOVE_VERSION, type Member, type MemberRecord, encodeMemberContext, membersSupport, publishAttributesCommand } from '../engines/meta/index.js';
import { type Watcher, WatchHub, watchLimits, watcherOwned } from '../engines/watch/index.js';
import { DkvError, dkvError, errorTable } from '../errors.js';
import { clientError } from '../error-mapping.js';
import { type KeyRange, NodeRuntime, QUIESCE_FEATURE_VERSION, RUNTIME_FEATURES_ID, type RequestOptions, Router, ShardElsewhereError, type ShardHandle, firstRequestId, metaShardMap, wrapConfContext } from '../runtime/index.js';
import { type Membership, createClusterService, learnerReadyRatio } from './cluster-service.js';
import { type ServerConfig, type ServerUrl, type TlsConfig, electionTimeoutMsOf } from './config.js';
import { createElectionService } from './election-service.js';
import { createDkvKvService } from './dkv-kv-service.js';
import { createCounterService } from './counter-service.js';
import { createAdminService } from './admin-service.js';
import { createKvService } from './kv-service.js';
import { LeaseIdGenerator, createLeaseService, grantLease, leaseTtlSecondsMinFor } from './lease-service.js';
import { createLockService } from './lock-service.js';
import { clusterQueryRetryElections, grpcOverheadBytes, membershipAddAfterMs, membershipSyncChangeElections, membershipSyncPassElections, placementPassElections, ownRemovalPollMs, ownRemovalWatchMs, publishRetryElections, removedStopGraceElections, requestTimeoutMs, shutdownGraceMs, snapshotCatchUpEntriesMax, storeCreateStaleRequestTimeouts, shardSplitCheckMs, storeRepairElections, forwardedCallRequestTimeouts, forwardedCallTimeoutMsMax } from './limits.js';
import { createMaintenanceService } from './maintenance-service.js';
import { AutoCompactor } from './auto-compaction.js';
import { Defragmenter } from './defragment.js';
import { mallocTrim } from './malloc-trim.js';
import { MemorySettler, lateCompactHeapBytesFor } from './memory-settle.js';
import { BackendQuota } from './quota.js';
import { type ServerMetrics, createServerMetrics, startMetricsServer } from './metrics.js';
import { type LogFields, RequestLog, CallMetrics, withRequestLog } from './request-log.js';
import { PeerRequestRefusal, PeerTransport, peerRefusalReasons, type PeerTlsOptions } from './peer/index.js';
import { FORWARDED_CALL_TAG, FORWARDED_PROPOSAL_TAG, Forwarder, RETIRED_QUERY_TAG, type RoutedBy } from './forwarding.js';
import { type KnownPeer, type StartIdentity, StartupError, checkRecoveredState, currentPeers, encodeClusterInfo, identityFile, resolveNewIdentity, writeIdentity } from './startup.js';
import { followsMembership, guardLearner } from './learner-guard.js';
import { type WatchPart, createPrefixWatchService } from './prefix-watch-service.js';
import { BufferedBytes } from './response-queue.js';
import { Ticker, immediateScheduler, leaseScheduler, levelStorage, wallClock } from './runtime-host.js';
import { type WatchRefusal, type WatchedShard, createWatchService, rehomeWatcher } from './watch-service.js';
import { type MemberQueryHost, answerLeaderQuery, askTransferLeader, leadingShardsOf, learnerProgress, leftGroupAtLeader } from './leader-queries.js';
import { MembershipSync } from './membership-sync.js';
import { OwnRemovalWatch } from './own-removal-watch.js';
import { MembershipLog, type RecoveredShard, RecoveryLog, startupLines } from './operator-log.js';
import { finishMove, moveReplica, repairStores, splitShard } from './store-admin.js';
import { PlacementLoop } from './placement.js';
import { AutoSplitter, LoadTracker } from './auto-split.js';
import { StoreGroups } from './store-groups.js';

/** Shard 0 holds cluster metadata (members, stores, the shard map); shard 1 the default store's data. */
export const META_SHARD = 0;
export { DEFAULT_STORE_SHARD };
export const HOSTED_SHARDS = [META_SHARD, DEFAULT_STORE_SHARD] as const;

export { grpcOverheadBytes };

import { etcdApiVersion } from './version.js';

export { etcdApiVersion };

export interface NodeLogger {
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  debug(message: string, fields?: LogFields): void;
  /** Whether debug lines are written (per-request lines are skipped otherwise). */
  readonly debugEnabled?: boolean;
}

export interface DkvNodeOptions {
  /**
   * The node cannot go on (storage failed, an invariant broke, or it learnt that it was removed
   * from the cluster: then the error is a `StartupError`-like `MemberRemovedError` and the node
   * has stopped serving already); the process should exit.
   */
  readonly onFatal?: (error: Error) => void;
  /** How often idle watchers with progress_notify hear the revision (etcd: 10 minutes). */
  readonly watchProgressIntervalMs?: number;
}

/** This member's identity, written to the data directory once its first start set it up. */
export type Identity = StartIdentity;

/** The member learnt that it was removed from the cluster; it stops and the process exits non-zero. */
export class MemberRemovedError extends Error {
  override readonly name = 'MemberRemovedError';
}

function peerTlsOf(config: ServerConfig): ReturnType<typeof readTls> {
  return config.listenPeerUrls.some((u) => u.scheme === 'https') ? readTls(config.peerTls) : undefined;
}

function hostPort(url: ServerUrl): string {
  return url.host.includes(':') ? `[${url.host}]:${url.port}` : `${url.host}:${url.port}`;
}

function readTls(tls: TlsConfig): PeerTlsOptions | undefined {
  if (tls.certFile === undefined || tls.keyFile === undefined) return undefined;
  return {
    cert: readFileSync(tls.certFile),
    key: readFileSync(tls.keyFile),
    ca: tls.trustedCaFile === undefined ? undefined : readFileSync(tls.trustedCaFile),
    clientCertAuth: tls.clientCertAuth,
    allowedCertificate:
      tls.allowedCn !== undefined ? { commonName: tls.allowedCn } : tls.allowedHostname !== undefined ? { hostname: tls.allowedHostname } : undefined,
  };
}

/**
 * The highest command version of every engine this build applies, and the runtime's features
 * when the member quiesces (published with the member's attributes). A member that does not
 * quiesce leaves the runtime's entry out, as a build from before quiescence does, so no group
 * quiesces while it is a member: a follower here would take its quiet leader for a dead one.
 */
export function buildEngineVersions(options: { readonly quiesce: boolean }): Record<string, number> {
  const versions: Record<string, number> = {};
  for (const kind of ['meta', 'data'] as const) for (const engine of composeStateMachine(kind).engineList()) versions[String(engine.id)] = engine.version;
  if (options.quiesce) versions[String(RUNTIME_FEATURES_ID)] = QUIESCE_FEATURE_VERSION;
  return versions;
}

/** Whether every key of `watcher` is one `owner` serves. */
function ownedBy(owner: { owns(key: Uint8Array, rangeEnd?: Uint8Array): boolean }): (watcher: Watcher) => boolean {
  return (watcher) => watcherOwned(watcher, (key, rangeEnd) => owner.owns(key, rangeEnd));
}

/** The state machine of a hosted shard: membership on the meta shard, keys on the others. */
export function shardStateMachine(shard: number, electionTimeoutMs?: number) {
  return composeStateMachine(shard === META_SHARD ? 'meta' : 'data', { electionTimeoutMs });
}

export class DkvNode {
  readonly etcdApiVersion = etcdApiVersion;
  readonly runtime: NodeRuntime;
  readonly router: Router;
  readonly transport: PeerTransport;
  readonly metrics: ServerMetrics;
  /** The groups of mounted stores, kept in step with the meta shard's map. */
  private readonly storeGroups: StoreGroups;
  /** Each data shard's watch engine, made on first use (by an applied entry or a watch). */
  private readonly watchedShards = new Map<number, WatchedShard>();
  /** Bytes every watch stream of this node holds for slow clients. */
  readonly watchBuffered = new BufferedBytes();
  private readonly ticker = new Ticker();
  private readonly membershipLog: MembershipLog;
  private recoveryLog: RecoveryLog | undefined;
  /** Aborted as the node stops: Lock and Campaign waits and Observe streams end with `stopped`. */
  private readonly servicesStopping = new AbortController();
  private grpcServer: grpc.Server | undefined;
  private metricsServer: { close(): Promise<void> } | undefined;
  private stopping = false;
  private publishTimer: NodeJS.Timeout | undefined;
  private tokenSweepTimer: NodeJS.Timeout | undefined;
  /** Forwards client calls for shards other members host, and serves those forwarded here (set once clients are served). */
  private forwarder: Forwarder | undefined;
  /** A proposal to a shard other members host, through one of them (before clients are served: none reachable). */
  private readonly proposeElsewhere = (shard: number, replicas: readonly number[], command: EngineCommand): Promise<unknown> =>
    this.forwarder === undefined ? Promise.reject(new ShardElsewhereError(shard, replicas)) : this.forwarder.propose(shard, replicas, command);
  private membershipSyncTimer: NodeJS.Timeout | undefined;
  private storeRepairTimer: NodeJS.Timeout | undefined;
  private placementTimer: NodeJS.Timeout | undefined;
  private readonly placement: PlacementLoop;
  private storeRepairRunning = false;
  /** The requests this node routes to each store shard (the load --shard-split-qps compares). */
  private readonly loadTracker = new LoadTracker(() => Date.now());
  private autoSplitter: AutoSplitter | undefined;
  private autoSplitTimer: NodeJS.Timeout | undefined;
  /** Finishes, from the meta shard's member list, a membership change a failed call left half done in other groups. */
  private readonly membershipSync: MembershipSync;
  /** etcd's simple tokens this member accepts (registered by every applied Authenticate). */
  private readonly simpleTokens: SimpleTokens;
  /** --auth-token jwt,…: the signer and verifier of this member's tokens (none: simple tokens). */
  private readonly jwt: JwtTokens | undefined;
  /** --quota-backend-bytes: checked by the services before they propose a write. */
  readonly quota: BackendQuota;
  readonly defragmenter: Defragmenter;
  private readonly autoCompactor: AutoCompactor;
  private readonly memorySettler: MemorySettler;
  readonly clientPorts: number[] = [];
  metricsPort = 0;

  private constructor(
    readonly config: ServerConfig,
    readonly identity: Identity,
    readonly logStore: LevelLogStore,
    private readonly logger: NodeLogger,
    private readonly options: DkvNodeOptions,
    /** Members a cluster query named (ids the meta shard may not know yet). */
    queried: readonly KnownPeer[] = [],
  ) {
    for (const peer of queried) if (peer.id !== identity.memberId) this.queriedPeers.set(peer.id, peer.url);
    this.simpleTokens = new SimpleTokens(config.authTokenTtlSeconds * 1000);
    this.jwt = config.authToken.kind === 'jwt' ? new JwtTokens(config.authToken) : undefined;
    this.metrics = createServerMetrics();
    // Every reason's series exists from the start, so that rate() over it sees the first refusal.
    for (const reason of peerRefusalReasons) this.metrics.peerRefused.inc(0, { reason });
    this.membershipLog = new MembershipLog(identity.clusterId, (line) => logger.info(line));
    const peers = new Map<number, string | readonly string[]>();
    for (const member of this.initialPeers()) if (member.id !== identity.memberId) peers.set(member.id, member.urls);
    // A joiner's query answer wins: --initial-cluster names founding ids, which replaced members no longer have.
    if (this.queriedPeers.size > 0) {
      peers.clear();
      for (const [id, url] of this.queriedPeers) peers.set(id, url);
    }
    const peerListen = config.listenPeerUrls[0]!;
    const peerTls = peerTlsOf(config);
    this.transport = new PeerTransport({
      localId: identity.memberId,
      clusterId: identity.clusterId,
      listenHost: peerListen.host,
      listenPort: peerListen.port,
      peers,
      tls: peerTls,
      onMessages: (_from, batch) => {
        // With lease reads, a stall's ticks are counted before its messages are stepped (a
        // follower's ReadIndex is answered from the lease); without, catchUp does nothing.
        this.ticker.catchUp();
        this.runtime.receive(batch);
      },
      isKnownShard: (shard) => this.runtime.hasShard(shard),
      onUnreachable: (peer, shards) => this.runtime.reportUnreachable(peer, shards),
      onSnapshotStatus: (peer, shard, ok) => this.runtime.reportSnapshot(peer, shard, ok),
      // A forwarded client call (forwarding.ts) or a question for a shard's leader (JSON).
      onRequest: async (_from, payload) => {
        if (payload[0] !== FORWARDED_CALL_TAG && payload[0] !== FORWARDED_PROPOSAL_TAG && payload[0] !== RETIRED_QUERY_TAG) return answerLeaderQuery(this.memberQueryHost(), payload);
        if (this.forwarder === undefined) throw new PeerRequestRefusal('not-serving', 'this member does not serve clients yet');
        if (payload[0] === RETIRED_QUERY_TAG) return this.forwarder.answerRetired(payload);
        return payload[0] === FORWARDED_CALL_TAG ? this.forwarder.answer(payload) : this.forwarder.answerProposal(payload);
      },
      isRemoved: (id) => this.runtime.hasShard(META_SHARD) && metaEngineOf(this.router.meta().machine()).isRemoved(id),
      onRemoved: (by) => this.removed(`member ${formatId(by)} refused this member's messages: it was removed from the cluster`),
      // Silent peers are probed after two election timeouts: a removed member hears of it soon.
      removedProbe: { afterMs: 2 * electionTimeoutMsOf(config), intervalMs: 2 * electionTimeoutMsOf(config) },
      onRefused: (reason) => this.metrics.peerRefused.inc(1, { reason }),
      onRoundTrip: (peer, seconds) => this.metrics.peerRoundTripSeconds.observe(seconds, { To: formatId(peer) }),
      clusterInfo: () => encodeClusterInfo(this.identity.clusterId, this.members(), metaEngineOf(this.router.meta().machine()).removedIds()),
      log: (level, message) => (level === 'error' || level === 'warn' ? logger.warn(message) : level === 'info' ? logger.info(message) : logger.debug(message)),
    });
    const electionTimeoutMs = electionTimeoutMsOf(config);
    this.runtime = new NodeRuntime({
      memberId: identity.memberId,
      storage: levelStorage(logStore),
      transport: this.transport,
      clock: wallClock,
      scheduler: config.experimentalLeaseReads ? leaseScheduler(this.ticker) : immediateScheduler,
      random: new SeededPrng((Date.now() ^ identity.memberId) >>> 0),
      raft: {
        electionTicks: config.electionTicks,
        heartbeatTicks: config.heartbeatTicks,
        checkQuorum: true,
        preVote: true,
        readOnlyOption: config.experimentalLeaseReads ? 'lease-based' : 'safe',
      },
      tickMs: config.tickMs,
      snapshotCount: config.snapshotCount,
      snapshotBytes: config.snapshotBytes,
      campaignWhenSoleVoter: true,
      snapshotCatchUpEntries: Math.min(snapshotCatchUpEntriesMax, config.snapshotCount),
      requestTimeoutMs: requestTimeoutMs(electionTimeoutMs),
      quiesce: config.experimentalQuiesce,
      stateMachine: (shard) => shardStateMachine(shard, electionTimeoutMs),
      membersSupport: (engine, version) => this.membersSupportCached(engine, version),
      firstRequestId: firstRequestId(Date.now()),
      logger: { debug: (m) => logger.debug(m), info: (m) => logger.debug(m), warn: (m) => logger.warn(m) },
      listener: {
        saved: (seconds) => this.metrics.walFsyncSeconds.observe(seconds),
        leaderChanged: (shard, leader, term) => {
          logger.info(`shard ${shard}: ${leader === 0 ? 'no leader' : `leader is now ${formatId(leader)}`} (term ${term})`);
          if (shard === DEFAULT_STORE_SHARD) this.metrics.leaderChanges.inc();
          this.metrics.shardLeaderChanges.inc();
          if (leader === identity.memberId && this.started) void this.membershipSync.poke();
        },
        proposalDropped: (_shard, reason) => this.metrics.forwardedProposalsRefused.inc(1, { reason }),
        confChangeApplied: (shard) => {
          this.refreshLearner(shard);
          if (this.started) void this.membershipSync.poke();
          if (shard !== META_SHARD) return;
          this.membershipLog.changed(this.members());
          this.membershipChanged();
        },
        applied: (shard, applied, entry) => {
          if (shard === META_SHARD && (applied.outcome as { kind?: string } | undefined)?.kind === 'stores') this.reconcileStoreGroups();
          if (shard === META_SHARD) return;
          const hub = this.watchedShard(shard).hub;
          // A restart's replay of the stored log is not kept among the recent revisions: a watcher
          // behind reads it from the store's history, and keeping (then dropping) every replayed
          // event made the replay's garbage outlive young collections.
          hub.onApplied(eventsOf(applied.outcome), this.recoveryLog?.replays(shard, entry.index) !== true);
          // A prefix ceded to a new store, or a store's shard retired before its drop: those keys'
          // events are applied elsewhere from now on (or nowhere), so the watchers of any of them
          // are canceled (they would wait for events that never come here).
          if (applied.engine === EngineId.Ownership) this.cancelUnownedWatchers(shard);
          if (shard !== DEFAULT_STORE_SHARD) return;
          if (isCompactionOutcome(applied.outcome)) this.memorySettler.compactionApplied();
          if (applied.engine === EngineId.Auth) this.authApplied(applied.outcome, this.recoveryLog?.replays(shard, entry.index) === true);
        },
        shardSplit: (parent, child) => {
          // A restart's replay of the parent's log met a split counted before.
          if (this.recoveryLog?.replaying(parent) !== true) this.metrics.shardSplits.inc();
          logger.info(`shard ${parent}: split at index ${this.runtime.machine(parent).appliedIndex}; its keys from the split key on are shard ${child}'s`);
          // Watchers of the keys that moved: their events are the child's from now on. An etcd
          // watch whose keys the child serves whole moves there on its stream, from the next
          // revision it owes (the child keeps the revisions and history); any other (its range
          // across both halves, a dkv.v1 prefix watch, an Observe) is canceled with the reason,
          // and a watch again from the next revision misses nothing.
          const ownedByParent = ownedBy(ownershipEngineOf(this.runtime.machine(parent)));
          const ownedByChild = this.runtime.hasShard(child) ? ownedBy(ownershipEngineOf(this.runtime.machine(child))) : () => false;
          const rehome = (w: Watcher): boolean => ownedByChild(w) && rehomeWatcher(w, this.watchedShard(child));
          this.watchedShard(parent).hub.cancelWhere((w) => !ownedByParent(w), errorTable['watch-shard-split'].message, rehome);
        },
        stateReplaced: (shard, from) => {
          const source = from === 'leader' ? "the leader's snapshot" : 'the stored snapshot';
          logger.info(`shard ${shard}: state restored from ${source} at index ${this.runtime.machine(shard).appliedIndex}`);
          if (shard === META_SHARD) {
            this.roleByShard.delete(shard);
            this.membershipLog.changed(this.members(), from !== 'leader');
            this.membershipChanged();
            this.reconcileStoreGroups();
          } else {
            this.refreshLearner(shard);
          }
          if (this.started) void this.membershipSync.poke();
          if (shard !== META_SHARD) {
            this.watchedShard(shard).hub.onStoreReplaced();
            // The snapshot may carry a cession or a retirement its log entry never brought here.
            this.cancelUnownedWatchers(shard);
          }
          // Authenticates and password changes inside the snapshot were never seen here: clients re-authenticate.
          if (shard === DEFAULT_STORE_SHARD) this.simpleTokens.clear();
        },
        fatal: (error) => this.options.onFatal?.(error),
        entryApplied: (shard, entry) => {
          this.recoveryLog?.entryApplied(shard, entry.index);
          if (shard === DEFAULT_STORE_SHARD) this.memorySettler.applied(entry.data.length);
        },
      },
    });
    // Auth is checked where a command applies, against the applying shard's auth state, which only
    // the default store's shard keeps: another store's keys are not served while auth is on.
    const admit = (shard: number): void => {
      if (shard !== DEFAULT_STORE_SHARD && authEngineOf(this.router.defaultStore().machine()).enabled) throw dkvError('store-auth-unsupported');
    };
    // Only store shards are counted (the default store and the meta shard are never split).
    const observe = config.shardSplitQps === 0 ? undefined : (shard: number, key: Uint8Array): void => {
      if (shard !== DEFAULT_STORE_SHARD && shard !== META_SHARD) this.loadTracker.record(shard, key);
    };
    this.router = new Router(this.runtime, metaShardMap(this.runtime, META_SHARD, DEFAULT_STORE_SHARD), admit, observe, identity.memberId);
    this.membershipSync = new MembershipSync({
      groups: () => this.runtime.shardIds().filter((shard) => shard !== META_SHARD),
      leads: (shard) => this.runtime.leader(shard) === identity.memberId,
      // Not status(): a leader's status copies every member's progress, and a pass asks of every group it leads.
      config: (shard) => this.runtime.rawNode(shard).basicStatus().config,
      metaVersion: () => this.router.meta().machine().appliedIndex,
      members: () => this.members(),
      replicasOf: (shard) => metaEngineOf(this.router.meta().machine()).shardMap().shard(shard)?.replicas ?? [],
      isRemoved: (id) => metaEngineOf(this.router.meta().machine()).isRemoved(id),
      readMeta: async () => {
        await this.router.meta().read({ timeoutMs: electionTimeoutMs });
      },
      proposeChange: (shard, change) => this.router.shard(shard).proposeConfChange({ transition: 'auto', changes: [change], context: new Uint8Array(0) }, { timeoutMs: membershipSyncChangeElections * electionTimeoutMs }),
      self: identity.memberId,
      caughtUp: (shard, id) => {
        // As MemberPromote's check: the member holds etcd's share of the leader's log (and is heard from).
        const status = this.runtime.status(shard);
        const progress = status.progress?.get(id);
        return progress !== undefined && progress.recentActive && progress.match > 0 && progress.match >= status.lastIndex * learnerReadyRatio;
      },
      inSync: (shard, id) => {
        const status = this.runtime.status(shard);
        const progress = status.progress?.get(id);
        return progress !== undefined && progress.recentActive && progress.match >= status.commit;
      },
      promotionSettleMs: electionTimeoutMs,
      transferLeader: (shard, to) => this.runtime.transferLeader(shard, to),
      movingOf: (shard) => metaEngineOf(this.router.meta().machine()).moving().get(shard),
      finishMove: async (shard, from, to) => {
        await finishMove({ router: this.router, options: { timeoutMs: membershipSyncChangeElections * electionTimeoutMs } }, shard, from, to);
        this.metrics.replicaMovesFinished.inc();
      },
      addAfterMs: membershipAddAfterMs(electionTimeoutMs),
      now: () => Date.now(),
      log: { info: (m) => logger.info(m), warn: (m) => logger.warn(m) },
    });
    this.placement = new PlacementLoop({
      leadsMeta: () => this.runtime.hasShard(META_SHARD) && this.runtime.leader(META_SHARD) === identity.memberId,
      movesSupported: () => this.membersSupportCached(EngineId.Meta, META_MOVE_VERSION),
      self: identity.memberId,
      map: () => metaEngineOf(this.router.meta().machine()).shardMap(),
      moving: () => metaEngineOf(this.router.meta().machine()).moving(),
      unmovable: () => {
        const meta = metaEngineOf(this.router.meta().machine());
        const out = new Set<number>();
        for (const [child, split] of meta.splitting()) out.add(child).add(split.parent);
        const map = meta.shardMap();
        for (const name of meta.creatingStores().keys()) for (const shard of map.shardsOf(name)) out.add(shard.id);
        return out;
      },
      voters: () => this.members().filter((m) => !m.isLearner).map((m) => m.id),
      connected: () => this.transport.connectedPeers(),
      move: async (move) => {
        await moveReplica({ router: this.router, options: { timeoutMs: this.requestTimeoutMs } }, move.shard, move.from, move.to);
        this.metrics.placementMoves.inc(1, { reason: move.why });
      },
      deadAfterMs: config.shardReplicaDeadSeconds * 1000,
      rebalance: config.shardRebalance,
      leading: async (voters) => {
        const answers = await Promise.all(
          // One election timeout: the loop waits for the answers, and a slow one is no answer.
          voters.map((id) => (id === identity.memberId ? Promise.resolve(this.memberQueryHost().leadingShards!()) : leadingShardsOf(this.transport, id, electionTimeoutMs))),
        );
        const leading = new Map<number, number[]>();
        for (let i = 0; i < voters.length; i++) {
          const shards = answers[i];
          if (shards === undefined) return undefined; // a voter that did not answer: no balancing this time
          leading.set(voters[i]!, shards);
        }
        return leading;
      },
      transferLeader: async (transfer) => {
        if (transfer.from === identity.memberId) answerLeaderQuery(this.memberQueryHost(), new TextEncoder().encode(JSON.stringify({ op: 'transfer-leader', shard: transfer.shard, to: transfer.to })));
        else await askTransferLeader(this.transport, transfer.from, transfer.shard, transfer.to, this.requestTimeoutMs);
        this.metrics.leaderBalanceTransfers.inc();
      },
      now: () => Date.now(),
      log: { info: (m) => logger.info(m), warn: (m) => logger.warn(m) },
    });
    this.storeGroups = new StoreGroups({
      memberId: identity.memberId,
      meta: () => (this.runtime.hasShard(META_SHARD) ? metaEngineOf(this.router.meta().machine()) : undefined),
      fixed: HOSTED_SHARDS,
      hosted: () => this.runtime.shardIds(),
      stored: (shard) => {
        const log = logStore.shard(shard);
        return log.lastIndex() > 0 || log.snapshot().metadata.index > 0;
      },
      bootstrap: (shard, entries, hardState) => logStore.save([{ shard, entries, hardState }]),
      addGroup: (shard) => this.runtime.addShard(shard),
      removeGroup: (shard, why) => {
        // A watch of a moved replica is opened again on a member that hosts it, from the revision it owes.
        this.dropWatchedShard(shard, why === 'moved' ? errorTable['shard-not-hosted'].message : errorTable['watch-other-store'].message);
        this.runtime.removeShard(shard);
        this.roleByShard.delete(shard);
      },
      dropStorage: (shard) => logStore.dropShard(shard),
      leftGroup: async (shard) => {
        // Nothing stored: it never joined (a move to it replaced before its leader added it). Else
        // the leader says: this member's own configuration lacking it may only mean it has not
        // applied its addition yet.
        const log = logStore.shard(shard);
        if (log.lastIndex() === 0 && log.snapshot().metadata.index === 0) return true;
        try {
          return await leftGroupAtLeader(this.runtime, this.transport, shard, identity.memberId, electionTimeoutMs);
        } catch {
          // No leader, no answer in time: asked again on the next pass.
          return false;
        }
      },
      log: { info: (m) => logger.info(m), warn: (m) => logger.warn(m) },
    });
    const info = (message: string): void => logger.info(message);
    this.quota = new BackendQuota({ quotaBytes: config.quotaBackendBytes, memberId: identity.memberId, log: info });
    const trim = (): ReturnType<typeof mallocTrim> => {
      const trimmed = mallocTrim();
      if (trimmed !== undefined) this.metrics.memoryTrimmed.inc(Math.max(0, trimmed.rssBefore - trimmed.rssAfter));
      return trimmed;
    };
    this.defragmenter = new Defragmenter(this.router, {
      log: info,
      releaseViews: () => {
        for (const watched of this.watchedShards.values()) watched.hub.releaseRecentEvents();
      },
      trim,
    });
    this.memorySettler = new MemorySettler({
      storeBytes: () => {
        const mvcc = kvEngineOf(this.router.defaultStore().machine()).mvcc;
        return { total: mvcc.sizeBytes, inUse: mvcc.sizeInUseBytes };
      },
      defragment: () => this.defragmenter.run(),
      releaseCaches: () => this.logStore.releaseAppliedCaches(),
      flushStorage: () => this.logStore.flushMemtable(),
      compactHeapBytesMax: lateCompactHeapBytesFor(electionTimeoutMs),
      trim,
      log: info,
      onSettled: (kind) => this.metrics.memorySettles.inc(1, { kind }),
    });
    this.autoCompactor = new AutoCompactor({ router: this.router, memberId: identity.memberId, config: config.autoCompaction, log: info });
    // As etcd: the quota, and the store's bytes in use beside its total (the quota counts the total).
    this.metrics.registry.gauge({ name: 'etcd_server_quota_backend_bytes', help: 'Current backend storage quota size in bytes.', collect: () => this.quota.quotaBytes });
    this.metrics.registry.gauge({
      name: 'etcd_mvcc_db_total_size_in_use_in_bytes',
      help: 'Total size of the underlying database logically in use in bytes.',
      collect: () => (this.runtime.fatalError === undefined ? kvEngineOf(this.router.defaultStore().machine()).mvcc.sizeInUseBytes : 0),
    });
    this.metrics.registry.gauge({
      name: 'dkv_snapshot_log_bytes',
      help: "Bytes of the default store's log applied since its latest snapshot: what a restart replays after restoring that snapshot (a snapshot is due at --snapshot-bytes).",
      collect: () => (this.runtime.fatalError === undefined ? this.runtime.appliedBytesSinceSnapshot(DEFAULT_STORE_SHARD) : 0),
    });
    // etcd's peer byte counters, per member, from the transport's totals at each scrape.
    this.metrics.registry.beforeRender(() => {
      for (const [peer, bytes] of this.transport.bytesByPeer()) {
        const To = formatId(peer);
        this.metrics.peerSentBytes.inc(bytes.sent - this.metrics.peerSentBytes.get({ To }), { To });
        this.metrics.peerReceivedBytes.inc(bytes.received - this.metrics.peerReceivedBytes.get({ From: To }), { From: To });
      }
    });
    logStore.onSyncedWrite((seconds) => this.metrics.logSyncedWriteSeconds.observe(seconds));
    // Group commit at work: saves (one per runtime cycle that wrote) against the fsyncs they shared.
    this.metrics.registry.counter({
      name: 'dkv_log_synced_batches_total',
      help: 'Synced LevelDB batches the Raft log store wrote (one fsync each; many saves share one).',
      collect: () => logStore.stats.syncedBatches,
    });
    this.metrics.registry.counter({
      name: 'dkv_log_saves_total',
      help: 'Saves of Raft log entries and state written to LevelDB (a save waits for the batch that carries it).',
      collect: () => logStore.stats.saves,
    });
    this.metrics.registry.counter({
      name: 'dkv_log_loads_total',
      help: 'Reads of Raft log entries no longer held in memory (a follower behind the tail cache, or one after an idle node let it go), each of up to a request of entries.',
      collect: () => logStore.stats.loads,
    });
    this.metrics.registry.counter({
      name: 'dkv_requests_refused_total',
      help: 'Requests refused with RESOURCE_EXHAUSTED because a pending-request limit was reached.',
      collect: () => this.runtime.refusedTotal,
    });
  }

  /** Starts a node from its configuration; resolves when it serves clients. */
  static async start(config: ServerConfig, logger: NodeLogger, options: DkvNodeOptions = {}): Promise<DkvNode> {
    mkdirSync(config.dataDir, { recursive: true });
    const file = identityFile(config.dataDir);
    const restarting = existsSync(file);
    let identity: Identity;
    let queried: KnownPeer[] = [];
    if (restarting) {
      identity = JSON.parse(readFileSync(file, 'utf8')) as Identity;
      if (identity.name !== config.name) {
        throw new StartupError(
          `data dir ${config.dataDir} belongs to member ${JSON.stringify(identity.name)} (${formatId(identity.memberId)}), not ${JSON.stringify(config.name)}: wrong --data-dir or --name?`,
        );
      }
    } else {
      // No identity file: no start finished setting this directory up (the file is written before
      // the node first talks to a peer). What a failed start left is set aside, never deleted: a
      // lost member.json must not cost a member its log.
      const raftDir = join(config.dataDir, 'raft');
      if (existsSync(raftDir)) {
        const aside = `${raftDir}.unfinished-${Date.now()}`;
        logger.warn(`data dir ${config.dataDir}: no member.json, so ${raftDir} is what an unfinished start left behind; moved to ${aside}`);
        renameSync(raftDir, aside);
      }
      const electionTimeoutMs = electionTimeoutMsOf(config);
      ({ identity, peers: queried } = await resolveNewIdentity(config, peerTlsOf(config), clusterQueryRetryElections * electionTimeoutMs));
    }
    const openStarted = performance.now();
    const logStore = await LevelLogStore.open({ path: join(config.dataDir, 'raft') });
    const node = new DkvNode(config, identity, logStore, logger, options, queried);
    node.metrics.recoverySeconds.set((performance.now() - openStarted) / 1000, { phase: 'open' });
    const recovered = HOSTED_SHARDS.map((shard): RecoveredShard => {
      const log = logStore.shard(shard);
      const { hardState } = log.initialState();
      return { shard, lastIndex: log.lastIndex(), snapshotIndex: log.snapshot().metadata.index, term: hardState.term, commit: hardState.commit };
    });
    let replayStarted = performance.now();
    node.recoveryLog = new RecoveryLog(
      recovered,
      (shard) => (shard === DEFAULT_STORE_SHARD ? kvEngineOf(node.runtime.machine(shard)).mvcc.revision : undefined),
      (line) => logger.info(line),
      (shard) => {
        if (shard === DEFAULT_STORE_SHARD) node.metrics.recoverySeconds.set((performance.now() - replayStarted) / 1000, { phase: 'replay' });
        if (shard === META_SHARD) node.reconcileStoreGroups();
      },
    );
    try {
      if (!restarting) {
        await node.bootstrapIfNew();
        writeIdentity(file, identity);
      }
      // A founding member's log starts with the bootstrap entries: none at all, on a restart, means
      // raft/ was deleted or not restored, and a member that forgot its votes must not vote again.
      if (restarting && identity.joined !== true && recovered.every((r) => r.lastIndex === 0 && r.snapshotIndex === 0 && r.term === 0)) {
        throw new StartupError(
          `data dir ${config.dataDir} holds member ${formatId(identity.memberId)}'s identity but no Raft log (raft/ was deleted or not restored): restore the whole data dir, or replace the member (docs/replace-member.md)`,
        );
      }
      const restoreStarted = performance.now();
      for (const shard of HOSTED_SHARDS) node.runtime.addShard(shard);
      // The groups of mounted stores this node holds (the map, once replayed, removes dropped ones).
      for (const shard of logStore.shards()) if (!node.runtime.hasShard(shard)) node.runtime.addShard(shard);
      replayStarted = performance.now();
      node.metrics.recoverySeconds.set((replayStarted - restoreStarted) / 1000, { phase: 'restore' });
      if (restarting) checkRecoveredState(config, identity, metaEngineOf(node.router.meta().machine()));
      // A joiner added as a learner knows it from the cluster's answer before any state reaches it.
      node.learnerByQuery = queried.find((p) => p.id === identity.memberId)?.isLearner === true;
      node.refreshLearner();
      node.refreshPeers();
      await node.transport.start();
      node.ticker.start(node.runtime, config.tickMs, { leaseReads: config.experimentalLeaseReads });
      await node.serveClients();
      await node.serveMetrics();
      node.publishAttributes();
      node.autoCompactor.start();
      node.started = true;
      node.reconcileStoreGroups();
      // Retries what a pass could not finish (a leader change in the middle, a pending change).
      node.membershipSyncTimer = setInterval(() => {
        void node.membershipSync.poke();
        // A replica moved away learns it left the group by asking: see store-groups.ts.
        node.reconcileStoreGroups();
      }, membershipSyncPassElections * electionTimeoutMsOf(config));
      node.membershipSyncTimer.unref();
      node.storeRepairTimer = setInterval(() => node.repairStores(), storeRepairElections * electionTimeoutMsOf(config));
      node.storeRepairTimer.unref();
      node.placementTimer = setInterval(() => void node.placement.tick(), placementPassElections * electionTimeoutMsOf(config));
      node.placementTimer.unref();
      node.startAutoSplits();
      void node.membershipSync.poke();
      // A removal in the log tail may have been applied while starting (entries replay on ticks).
      if (node.removedWhileStarting !== undefined) node.removed(node.removedWhileStarting);
      if (restarting) node.learnCurrentPeers();
      const applied = HOSTED_SHARDS.map((shard) => ({ shard, appliedIndex: node.runtime.machine(shard).appliedIndex, revision: shard === DEFAULT_STORE_SHARD ? kvEngineOf(node.runtime.machine(shard)).mvcc.revision : undefined }));
      for (const line of startupLines({ config, memberId: identity.memberId, clusterId: identity.clusterId, recovered, applied })) logger[line.level](line.text);
      logger.info(`serving clients on ${config.advertiseClientUrls.map((u) => u.href).join(',')}`);
    } catch (error) {
      await node.stop();
      throw error;
    }
    return node;
  }

  /** Whether this member is a learner now (refreshed on every membership change). */
  private learner = false;
  private removedNoticed = false;
  private readonly removedSelf = (() => {
    let settle = (): void => {};
    const promise = new Promise<void>((resolve) => (settle = resolve));
    return { promise, settle };
  })();
  /** Set once start() finished. */
  private started = false;
  /** How this member learnt of its removal before start() finished (handled once it has). */
  private removedWhileStarting: string | undefined;

  /** Asks the peers whether this member, which removed itself, is done (it may never apply its removal). */
  private readonly ownRemoval = new OwnRemovalWatch({
    peersSayRemoved: async () => {
      const urls = this.members().filter((m) => m.id !== this.identity.memberId).flatMap((m) => m.peerUrls);
      const { removed } = await currentPeers(urls, peerTlsOf(this.config), this.identity.clusterId);
      return removed.has(this.identity.memberId);
    },
    over: () => this.stopping || this.removedNoticed,
    removed: () => this.removed("a peer's member list says so"),
    now: () => Date.now(),
    after: (ms, task) => setTimeout(task, ms).unref(),
    pollMs: ownRemovalPollMs,
    watchMs: ownRemovalWatchMs,
  });

  /** What the cluster query said at start-up (until some shard's configuration says otherwise). */
  private learnerByQuery = false;
  /**
   * This member's role in each hosted group's configuration, as last read (a conf change or a
   * snapshot install of a group drops its entry): a store create of N shards applies N groups'
   * changes, each of which would otherwise read every group's Raft status again.
   */
  private readonly roleByShard = new Map<number, 'voter' | 'learner' | 'none'>();

  /**
   * A learner in any hosted group's configuration that follows the cluster's membership: the meta
   * shard and the shards every member hosts (the default store's shard may learn of a promotion
   * before the meta shard, or the other way round: a learner until every such group says voter).
   * A placed shard's group (a store created with a replica count) does not count: this member is
   * its learner while a replica moves in, and serves every call meanwhile as the voter it is.
   */
  private refreshLearner(changed?: number): void {
    if (changed !== undefined) this.roleByShard.delete(changed);
    let known = false;
    let learner = false;
    const map = metaEngineOf(this.router.meta().machine()).shardMap();
    for (const shard of this.runtime.unorderedShardIds()) {
      if (!followsMembership(shard, this.router.map.metaShard, map)) continue;
      let role = this.roleByShard.get(shard);
      if (role === undefined) {
        const config = this.runtime.rawNode(shard).basicStatus().config;
        role = config.learners.includes(this.identity.memberId) ? 'learner' : config.voters.includes(this.identity.memberId) ? 'voter' : 'none';
        this.roleByShard.set(shard, role);
      }
      if (role === 'learner') learner = true;
      if (role !== 'none') known = true;
    }
    this.learner = known ? learner : this.learnerByQuery;
  }

  /** The meta shard changed membership (a change applied, a snapshot installed). */
  private membershipChanged(): void {
    this.refreshPeers();
    const meta = metaEngineOf(this.router.meta().machine());
    this.refreshLearner();
    if (meta.isRemoved(this.identity.memberId)) this.removed('this member applied its own removal');
  }

  /**
   * The member was removed from the cluster: it stops serving (the calls in flight finish, so a
   * MemberRemove this node answers gets its answer), logs why, and hands the process a
   * `MemberRemovedError` to exit with, as etcd's removed member exits.
   */
  private removed(how: string): void {
    // During start-up the recovered state is checked instead (checkRecoveredState), and a refusal
    // heard from a peer comes again with its next dial.
    if (!this.started) {
      this.removedWhileStarting ??= how;
      return;
    }
    if (this.removedNoticed || this.stopping) return;
    this.removedNoticed = true;
    this.removedSelf.settle();
    const message =
      `the member has been permanently removed from the cluster (${how}); ` +
      `the data dir ${this.config.dataDir} can never be used again: delete it, add the member back with etcdctl member add, ` +
      'and start it with --initial-cluster-state existing (docs/replace-member.md)';
    this.logger.warn(message);
    // Off the apply path (the runtime is in the middle of applying the change), after a grace
    // period in which answers to forwarded requests and the last heartbeats still go out.
    setTimeout(() => {
      this.stop().then(
        () => this.options.onFatal?.(new MemberRemovedError(message)),
        () => this.options.onFatal?.(new MemberRemovedError(message)),
      );
    }, removedStopGraceElections * electionTimeoutMsOf(this.config));
  }

  private initialPeers(): Array<{ id: number; url: string; urls: string[] }> {
    const token = this.identity.clusterToken;
    return this.config.initialCluster.map((m) => ({ id: memberIdOf(m.peerUrls, token), url: m.peerUrls[0]!.href, urls: m.peerUrls.map((u) => u.href) }));
  }

  /** A node of a new cluster writes the bootstrap configuration of every group once. */
  private async bootstrapIfNew(): Promise<void> {
    if (this.config.initialClusterState !== 'new') return;
    const updates: ShardUpdate[] = [];
    for (const shard of HOSTED_SHARDS) {
      const log = this.logStore.shard(shard);
      if (log.lastIndex() > 0 || log.snapshot().metadata.index > 0) continue;
      updates.push({ shard, ...bootstrapLog(this.config) });
    }
    if (updates.length > 0) await this.logStore.save(updates);
  }

  /**
   * On the meta shard's leader: finishes store changes nobody finished (a prefix ceded to a store
   * dropped since, a store still being created long after its mount). One pass at a time.
   */
  private repairStores(): void {
    if (this.stopping || this.storeRepairRunning || this.runtime.leader(META_SHARD) !== this.identity.memberId) return;
    this.storeRepairRunning = true;
    const timeoutMs = this.requestTimeoutMs;
    repairStores({ router: this.router, options: { timeoutMs }, log: this.logger, proposeElsewhere: this.proposeElsewhere, retiredElsewhere: (shard, replicas) => this.forwarder?.retired(shard, replicas, electionTimeoutMsOf(this.config)) ?? Promise.resolve(undefined) }, Date.now(), storeCreateStaleRequestTimeouts * timeoutMs)
      .catch((error: unknown) => this.logger.warn(`store repair: ${error instanceof Error ? error.message : String(error)}`))
      .finally(() => (this.storeRepairRunning = false));
  }

  /** Automatic splits by size and load (auto-split.ts), unless both thresholds are 0. */
  private startAutoSplits(): void {
    const settings = { bytes: this.config.shardSplitBytes, qps: this.config.shardSplitQps };
    if (settings.bytes === 0 && settings.qps === 0) return;
    this.autoSplitter = new AutoSplitter({
      router: this.router,
      selfId: this.identity.memberId,
      membersReady: () => this.membersSupportCached(EngineId.Ownership, OWNERSHIP_FENCED_SPLIT_VERSION) && this.membersSupportCached(EngineId.Meta, META_ABORT_SPLIT_VERSION),
      settings,
      tracker: this.loadTracker,
      split: (shard, at) => splitShard({ router: this.router, options: { timeoutMs: this.requestTimeoutMs }, proposeElsewhere: this.proposeElsewhere }, shard, at),
      log: this.logger,
      now: () => Date.now(),
      splitDone: (reason) => this.metrics.shardAutoSplits.inc(1, { reason }),
    });
    this.autoSplitTimer = setInterval(() => {
      if (!this.stopping) void this.autoSplitter?.pass();
    }, shardSplitCheckMs);
    this.autoSplitTimer.unref();
  }

  /**
   * Brings the store groups in step with the meta shard's map, once the meta shard has replayed
   * the log it stored: a map from the middle of the replay is an old one (a store mounted then
   * dropped would be bootstrapped again, for nothing).
   */
  private reconcileStoreGroups(): void {
    if (this.recoveryLog?.replaying(META_SHARD) === true) return;
    // Which groups follow the cluster's membership depends on the map (placed shards do not).
    this.refreshLearner();
    void this.storeGroups.reconcile();
  }

  /** How long a client request may wait (ms): etcd's rule from the election timeout. */
  private get requestTimeoutMs(): number {
    return requestTimeoutMs(electionTimeoutMsOf(this.config));
  }

  /** Members learnt from a cluster query that the meta shard has not recorded (yet). */
  private readonly queriedPeers = new Map<number, string>();

  /**
   * A restarted member's meta shard may be behind: members replaced while it was down have new
   * ids it cannot know, and it needs their streams to catch up. Ask the peers once who the
   * members are now (best effort, in the background).
   */
  private learnCurrentPeers(): void {
    const urls = [...this.config.initialCluster.flatMap((m) => m.peerUrls.map((u) => u.href)), ...this.members().flatMap((m) => m.peerUrls)];
    const own = new Set(this.config.initialAdvertisePeerUrls.map((u) => u.href));
    currentPeers(urls.filter((u) => !own.has(u)), peerTlsOf(this.config), this.identity.clusterId).then(
      ({ peers }) => {
        if (this.stopping) return;
        for (const peer of peers) if (peer.id !== this.identity.memberId) this.queriedPeers.set(peer.id, peer.url);
        this.refreshPeers();
      },
      () => {},
    );
  }

  /** Points the transport at the members the meta shard knows (and queried ones it does not know of yet). */
  private refreshPeers(): void {
    const members = this.members();
    if (members.length === 0 && this.queriedPeers.size === 0) return;
    const meta = this.runtime.hasShard(META_SHARD) ? metaEngineOf(this.router.meta().machine()) : undefined;
    // Every peer URL: the first is dialed, and a link from the member may come from any of their hosts.
    const wanted = new Map<number, string | readonly string[]>();
    for (const m of members) if (m.id !== this.identity.memberId && m.peerUrls.length > 0) wanted.set(m.id, m.peerUrls);
    for (const [id, url] of this.queriedPeers) {
      // Kept until the meta shard records the member (then its record rules) or its removal.
      if (members.some((m) => m.id === id) || meta?.isRemoved(id) === true) this.queriedPeers.delete(id);
      else wanted.set(id, url);
    }
    const known = new Set(this.transport.peerIds());
    for (const [id, url] of wanted) {
      if (known.has(id)) this.transport.updatePeer(id, url);
      else this.transport.addPeer(id, url);
    }
    for (const id of known) if (!wanted.has(id)) this.transport.removePeer(id);
  }

  /** Answers of membersSupport for the meta shard's state now (asked on every proposal). */
  private supportAnswers: { machine: unknown; index: number; answers: Map<number, boolean> } = { machine: undefined, index: -1, answers: new Map() };

  /** What answers the peers' questions about this node's groups (leader-queries.ts). */
  private memberQueryHost(): MemberQueryHost {
    const runtime = this.runtime;
    return {
      hasShard: (shard) => runtime.hasShard(shard),
      status: (shard) => runtime.status(shard),
      leadingShards: () => runtime.shardIds().filter((shard) => shard !== META_SHARD && runtime.leader(shard) === this.identity.memberId),
      transferLeader: (shard, to) => runtime.transferLeader(shard, to),
      quiesced: (shard) => runtime.isQuiesced(shard),
    };
  }

  private membersSupportCached(engine: number, version: number): boolean {
    if (!this.runtime.hasShard(META_SHARD)) return true;
    const machine = this.router.meta().machine();
    if (this.supportAnswers.machine !== machine || this.supportAnswers.index !== machine.appliedIndex) {
      this.supportAnswers = { machine, index: machine.appliedIndex, answers: new Map() };
    }
    const key = engine * 256 + version;
    let answer = this.supportAnswers.answers.get(key);
    if (answer === undefined) {
      answer = membersSupport(this.members(), engine, version);
      this.supportAnswers.answers.set(key, answer);
    }
    return answer;
  }

  members(): Member[] {
    return this.runtime.hasShard(META_SHARD) ? metaEngineOf(this.router.meta().machine()).members() : [];
  }

  /** What the Cluster service needs of membership. */
  private membership(): Membership {
    return {
      members: () => this.members(),
      isRemoved: (id) => metaEngineOf(this.router.meta().machine()).isRemoved(id),
      clusterToken: this.identity.clusterToken,
      peersSayRemovedSelf: () => this.ownRemoval.askOnce(),
      leftGroupAtLeader: (shard, id, timeoutMs) => leftGroupAtLeader(this.runtime, this.transport, shard, id, timeoutMs),
      placedShards: () => metaEngineOf(this.router.meta().machine()).shardMap().shards().filter((shard) => shard.replicas.length > 0),
      removedSelf: () => {
        this.ownRemoval.start();
        return this.removedSelf.promise;
      },
      electionTimeoutMs: electionTimeoutMsOf(this.config),
      learnerReady: async (id, ratio) => {
        // Progress is known where each shard's leader is: asked of it when this node does not lead.
        const timeoutMs = this.requestTimeoutMs;
        for (const shard of this.runtime.shardIds()) {
          const progress = await learnerProgress(this.runtime, this.transport, shard, id, timeoutMs);
          if (progress.match < progress.lastIndex * ratio) return false;
        }
        return true;
      },
    };
  }

  /** Publishes this member's name and client URLs through the meta shard (retried until done). */
  private publishAttributes(): void {
    const attributes = { name: this.config.name, clientUrls: this.config.advertiseClientUrls.map((u) => u.href), engines: buildEngineVersions({ quiesce: this.config.experimentalQuiesce }) };
    const retryMs = publishRetryElections * electionTimeoutMsOf(this.config);
    const attempt = (): void => {
      if (this.stopping) return;
      const current = this.members().find((m) => m.id === this.identity.memberId);
      if (current !== undefined && JSON.stringify([current.name, current.clientUrls, current.engines]) === JSON.stringify([attributes.name, attributes.clientUrls, attributes.engines])) return;
      // The runtime settles every proposal (applied, refused or timed out): try again until done.
      this.router
        .meta()
        .propose(publishAttributesCommand(this.identity.memberId, attributes), { timeoutMs: retryMs })
        .then(attempt, () => {
          if (!this.stopping) this.publishTimer = setTimeout(attempt, retryMs);
        });
    };
    this.publishTimer = setTimeout(attempt, 0);
  }

  /**
   * An applied auth command's effect on this member's simple tokens. A restart's replay of the
   * stored log registers none: tokens live in memory only, as etcd's do (clients authenticate again).
   */
  private authApplied(outcome: unknown, replayed: boolean): void {
    const result = authOutcome(outcome);
    if (result.kind === 'authenticated' && result.token !== undefined && !replayed) this.simpleTokens.register(result.token, result.name, Date.now());
    if (result.kind !== 'auth' || result.invalidates === undefined) return;
    if (result.invalidates === 'all') this.simpleTokens.clear();
    else this.simpleTokens.invalidateUser(result.invalidates.user);
  }

  private clientCredentials(): grpc.ServerCredentials {
    const tls = this.config.listenClientUrls.some((u) => u.scheme === 'https') ? readTls(this.config.clientTls) : undefined;
    if (tls === undefined) return grpc.ServerCredentials.createInsecure();
    return grpc.ServerCredentials.createSsl(tls.ca ?? null, [{ cert_chain: tls.cert, private_key: tls.key }], tls.clientCertAuth);
  }

  private async serveClients(): Promise<void> {
    const server = new grpc.Server({
      'grpc.max_receive_message_length': this.config.maxRequestBytes + grpcOverheadBytes,
      'grpc.max_send_message_length': 2 ** 31 - 1,
      // Not 'grpc.enable_channelz': 0, though no channelz service is served: grpc-js 1.14 then
      // leaves its sessions out of the set forceShutdown destroys, and a stopping node waits on
      // its clients' connections (test/server/client-goaway.test.ts, the shutdown case).
    });
    // A client's GOAWAY must not refuse the calls it still sends (etcd's server ignores it); its
    // requests are not held to HTTP/2's initial 64 KiB windows. Unary calls are served without
    // grpc-js's per-call machinery (direct-unary.ts); streams go to grpc-js.
    const direct = new DirectUnary({ maxReceiveMessageBytes: this.config.maxRequestBytes + grpcOverheadBytes });
    onClientHttp2Servers(server, (http2Server) => {
      http2Server.on('session', acceptClientSession);
      direct.attach(http2Server);
    });
    const gate = new AuthGate({
      auth: () => authEngineOf(this.router.defaultStore().machine()),
      simpleTokens: this.simpleTokens,
      jwt: this.jwt,
      clientCertAuth: this.config.clientTls.clientCertAuth,
      nowMs: () => Date.now(),
      // Before a refusal: a ReadIndex of the shard that holds the auth state.
      catchUp: async () => this.router.defaultStore().read({ timeoutMs: this.requestTimeoutMs }),
    });
    this.tokenSweepTimer = setInterval(() => this.simpleTokens.sweep(Date.now()), simpleTokenSweepMs);
    this.tokenSweepTimer.unref();
    const forwarder = new Forwarder({
      request: (to, payload, timeoutMs) => this.transport.request(to, payload, { timeoutMs }),
      caller: (call) => gate.caller(call),
      // A store's shard hosted here (the meta shard has no ownership engine: not one).
      retiredHere: (shard) => (shard !== META_SHARD && this.runtime.hasShard(shard) ? ownershipEngineOf(this.runtime.machine(shard)).retired !== 0 : undefined),
      proposeHere: async (shard, command) => (await this.router.shard(shard).propose(command, { timeoutMs: this.requestTimeoutMs })).outcome,
      // Without a client deadline: a few of the replica's own request timeouts (a forwarded split
      // makes several proposals), and the way there and back.
      timeoutMs: Math.min(forwardedCallRequestTimeouts * this.requestTimeoutMs + electionTimeoutMsOf(this.config), forwardedCallTimeoutMsMax),
      counted: (outcome) => this.metrics.forwardedCalls.inc(1, { outcome }),
      memberId: this.identity.memberId,
    });
    this.forwarder = forwarder;
    const common = {
      router: this.router,
      proposeElsewhere: (shard: number, replicas: readonly number[], command: EngineCommand) => forwarder.propose(shard, replicas, command),
      callElsewhere: (path: string, raw: Uint8Array, caller: Caller, replicas: readonly number[], route?: RoutedBy) => forwarder.call(path, raw, caller, replicas, undefined, route),
      clusterId: () => this.identity.clusterId,
      memberId: this.identity.memberId,
      requestTimeoutMs: this.requestTimeoutMs,
      quota: this.quota,
      gate,
    };
    // A learner serves what etcd's learner serves (Status, serializable Range); anything else gets
    // etcd's `rpc not supported for learner`, so clients move on to a voting member.
    const requestLog = new RequestLog(this.identity.memberId, this.logger, { observer: new CallMetrics(this.metrics) });
    const load = new ConnectionLoad(
      { requestsPendingPerConnectionMax: this.config.requestsPendingPerConnectionMax, streamsPerConnectionMax: this.config.streamsPerConnectionMax },
      (kind) => this.metrics.connectionRefused.inc(1, { kind }),
    );
    const addService = (service: { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation }): void => {
      const implementation = withRequestLog(
        service.definition,
        guardLearner(service.definition, withConnectionLimits(service.definition, withStreamDeadlines(service.definition, forwarder.wrap(service.definition, service.implementation)), load), () => this.learner),
        requestLog,
      );
      server.addService(service.definition, implementation);
      direct.add(service.definition, implementation);
    };
    const kv = createKvService({ ...common, maxRequestBytes: this.config.maxRequestBytes, unsafeStaleReads: this.config.unsafeStaleReads, unsafeIgnoreTxnCompare: this.config.unsafeIgnoreTxnCompare });
    addService(kv);
    const cluster = createClusterService({ ...common, membership: this.membership() });
    addService(cluster);
    const maintenance = createMaintenanceService({ ...common, apiVersion: etcdApiVersion, defragmenter: this.defragmenter, log: (m) => this.logger.info(m) });
    addService(maintenance);
    const leaseIds = new LeaseIdGenerator(this.identity.memberId, Date.now());
    const lease = createLeaseService({
      ...common,
      maxRequestBytes: this.config.maxRequestBytes,
      leaseTtlSecondsMin: leaseTtlSecondsMinFor(electionTimeoutMsOf(this.config)),
      now: () => Date.now(),
      ids: leaseIds,
      keepAliveRead: () => this.metrics.leaseKeepAlives.inc(),
    });
    addService(lease);
    const dkvKv = createDkvKvService({ ...common, maxRequestBytes: this.config.maxRequestBytes });
    addService(dkvKv);
    const counter = createCounterService({ ...common, maxRequestBytes: this.config.maxRequestBytes });
    addService(counter);
    addService(createAdminService(common));
    // A watch is served by the one shard that holds its keys, by the map as this node applied it.
    const watchRoute = (range: KeyRange): WatchedShard | WatchRefusal => this.watchRoute(range);
    const watch = createWatchService({
      ...common,
      defaultShard: () => this.watchedShard(DEFAULT_STORE_SHARD),
      route: watchRoute,
      maxRequestBytes: this.config.maxRequestBytes,
      progressIntervalMs: this.options.watchProgressIntervalMs ?? watchLimits.watchProgressIntervalMsDefault,
      buffered: this.watchBuffered,
    });
    addService(watch);
    const prefixWatch = createPrefixWatchService({
      parts: (range) => this.watchParts(range),
      splitParent: (shard) => metaEngineOf(this.router.meta().machine()).splitParent(shard),
      catchUp: async () => {
        await this.router.meta().read({ timeoutMs: this.requestTimeoutMs });
        await this.router.defaultStore().read({ timeoutMs: this.requestTimeoutMs });
      },
      store: (shard) => kvEngineOf(this.runtime.machine(shard.shardId)).mvcc,
      readIndex: async (shard) => void (await shard.handle().read({ timeoutMs: this.requestTimeoutMs })),
      buffered: this.watchBuffered,
      gate,
    });
    addService(prefixWatch);
    const concurrency = {
      ...common,
      maxRequestBytes: this.config.maxRequestBytes,
      watchHub: (shard: { shardId: number }) => this.watchedShard(shard.shardId).hub,
      stopping: this.servicesStopping.signal,
      // etcd's server gives a Lock or Campaign with lease 0 a session lease it never keeps alive.
      sessionLeases: { grant: (shard: ShardHandle, ttlSeconds: number, options: RequestOptions) => grantLease(shard, leaseIds, ttlSeconds, options) },
    };
    const serviceLog = (message: string, fields?: LogFields): void => this.logger.warn(message, fields);
    const lock = createLockService(concurrency, serviceLog);
    addService(lock);
    const election = createElectionService(concurrency, serviceLog);
    addService(election);
    const authService = createAuthService({
      ...common,
      tokensFull: () => this.simpleTokens.full,
      tokens: this.jwt === undefined ? { kind: 'simple' } : { kind: 'jwt', sign: (user, revision, now) => this.jwt!.sign(user, revision, now) },
      passwordCostLog2: this.config.scryptLog2N,
      perUser: new RateLimiter(authenticateBurstPerUser, authenticateRatePerUserPerSecond),
      perPeer: new RateLimiter(authenticateBurstPerPeer, authenticateRatePerPeerPerSecond),
      nowMs: () => Date.now(),
    });
    addService(authService);
    const credentials = this.clientCredentials();
    for (const url of this.config.listenClientUrls) {
      const port = await new Promise<number>((resolve, reject) => {
        server.bindAsync(hostPort(url), credentials, (error, bound) => (error ? reject(error) : resolve(bound)));
      });
      this.clientPorts.push(port);
    }
    this.grpcServer = server;
  }

  /** Data shard `shard`'s watch engine and what a watch response reports of it. */
  private watchedShard(shard: number): WatchedShard {
    let watched = this.watchedShards.get(shard);
    if (watched === undefined) {
      assert(this.runtime.hasShard(shard), `a watch engine for shard ${shard}, which this node does not host`);
      const mvcc = () => kvEngineOf(this.runtime.machine(shard)).mvcc;
      watched = { shardId: shard, hub: new WatchHub(mvcc), revision: () => mvcc().revision, handle: () => this.router.shard(shard) };
      this.watchedShards.set(shard, watched);
    }
    return watched;
  }

  /** Cancels, with the reason, the watchers of shard `shard` whose keys it no longer serves (ceded to a store, or the shard retired). */
  private cancelUnownedWatchers(shard: number): void {
    const ownership = ownershipEngineOf(this.runtime.machine(shard));
    // A store's shard that split (a snapshot past the split replaced its state here): its keys
    // moved to a child that keeps their history, so the reason says so (a client watches again
    // from its next revision); otherwise a store took or gave back the keys.
    const owned = ownedBy(ownership);
    this.watchedShard(shard).hub.cancelWhere((w) => !owned(w), errorTable[ownership.servesSplitPart ? 'watch-shard-split' : 'watch-other-store'].message);
  }

  /** A store's shard leaves this node: its watchers are canceled, with the reason, before its group goes. */
  private dropWatchedShard(shard: number, reason: string = errorTable['watch-other-store'].message): void {
    const watched = this.watchedShards.get(shard);
    if (watched === undefined) return;
    watched.hub.cancelWhere(() => true, reason);
    this.watchedShards.delete(shard);
  }

  /**
   * The one data shard that serves every key of `range` by the map as this node applied it, or
   * why none does: the range spans shards, or the shard no longer owns those keys (a store took
   * them, or was dropped, and this node's map lags).
   */
  private watchRoute(range: KeyRange): WatchedShard | WatchRefusal {
    if (this.router.map.shardsOfRange(range).length > 1) return { refusal: dkvError('watch-cross-shard') };
    const parts = this.watchParts(range);
    return 'refusal' in parts ? parts : parts[0]!.shard;
  }

  /** The data shards that serve `range`, each with its part, in key order; or why they cannot be watched (as `watchRoute`). */
  private watchParts(range: KeyRange): WatchPart[] | WatchRefusal {
    let parts: Array<{ readonly shard: ShardHandle; readonly range: KeyRange }>;
    try {
      parts = this.router.partsOf(range);
    } catch (error) {
      const refusal = clientError(error);
      if (refusal instanceof DkvError) return { refusal };
      throw error;
    }
    for (const part of parts) {
      const machine = this.runtime.machine(part.shard.shardId);
      if (kvEngineOf(machine).owns(part.range.key, part.range.rangeEnd)) continue;
      // A store's shard with bounds split: this node's map lags the split, and the keys are its
      // child's (retryable). Otherwise a store took or gave back the prefix, or was dropped.
      return { refusal: dkvError(ownershipEngineOf(machine).servesSplitPart ? 'wrong-shard' : 'watch-other-store') };
    }
    return parts.map((part) => ({ shard: this.watchedShard(part.shard.shardId), range: part.range }));
  }

  /**
   * Gauges that describe state rather than events, refreshed as /metrics is scraped: they walk
   * every hosted group, which no idle node should pay for on a timer (1,000 groups: a few percent
   * of a core, every second, for figures nobody read).
   */
  private refreshGauges(): void {
    if (this.runtime.fatalError !== undefined || this.stopping) return;
    let committed = 0;
    let applied = 0;
    let leaders = 0;
    let allHaveLeaders = true;
    for (const shard of this.runtime.shardIds()) {
      // Not status(): a leader's copies every member's progress.
      const status = this.runtime.rawNode(shard).basicStatus();
      committed += status.commit;
      applied += this.runtime.machine(shard).appliedIndex;
      if (status.lead === this.identity.memberId) leaders++;
      if (status.lead === 0) allHaveLeaders = false;
    }
    const pending = this.runtime.pendingTotals();
    const data = kvEngineOf(this.router.defaultStore().machine()).mvcc;
    const m = this.metrics;
    m.proposalsCommitted.set(committed);
    m.proposalsApplied.set(applied);
    m.proposalsPending.set(pending.writes);
    m.pendingWrites.set(pending.writes);
    m.pendingWriteBytes.set(pending.writeBytes);
    m.pendingForwardedWrites.set(pending.forwarded);
    m.pendingReads.set(pending.reads);
    m.hasLeader.set(allHaveLeaders ? 1 : 0);
    m.shards.set(this.runtime.shardIds().length);
    m.shardLeaders.set(leaders);
    m.shardsQuiesced.set(this.runtime.quiescedCount());
    m.dbTotalSizeBytes.set(data.sizeBytes);
    m.keysTotal.set(data.keyCount);
    let watchers = 0;
    let slowWatchers = 0;
    let slowFallbacks = 0;
    let watchRecentBytes = 0;
    for (const { hub } of this.watchedShards.values()) {
      watchers += hub.watcherCount;
      slowWatchers += hub.unsyncedCount;
      slowFallbacks += hub.slowFallbacks;
      watchRecentBytes += hub.recentEvents.bytes;
    }
    m.watchers.set(watchers);
    m.slowWatchers.set(slowWatchers);
    m.watchSlowFallbacks.set(slowFallbacks);
    m.watchBufferedBytes.set(this.watchBuffered.bytes);
    m.watchBufferedBytesPeak.set(this.watchBuffered.peak);
    let raftLogCache = 0;
    for (const shard of this.runtime.shardIds()) raftLogCache += this.logStore.shard(shard).cacheStats().bytes;
    m.memoryBytes.set(data.sizeBytes, { part: 'store_arenas' });
    m.memoryBytes.set(data.changeLogBytes, { part: 'change_log' });
    m.memoryBytes.set(watchRecentBytes, { part: 'watch_recent' });
    m.memoryBytes.set(raftLogCache, { part: 'raft_log_cache' });
  }

  private async serveMetrics(): Promise<void> {
    this.metrics.registry.beforeRender(() => this.refreshGauges());
    this.refreshGauges();
    const url = this.config.listenMetricsUrls[0];
    if (url === undefined) return;
    const server = await startMetricsServer({
      host: url.host,
      port: url.port,
      registry: this.metrics.registry,
      health: () => {
        const leader = this.runtime.fatalError === undefined ? this.router.defaultStore().leader() : 0;
        return leader !== 0 ? { health: true } : { health: false, reason: 'RAFT NO LEADER' };
      },
    });
    this.metricsPort = server.port;
    this.metricsServer = server;
  }

  /** Refreshes the gauges now (a scrape of /metrics does it too). */
  refreshMetrics(): void {
    this.refreshGauges();
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearTimeout(this.publishTimer);
    clearInterval(this.tokenSweepTimer);
    clearInterval(this.membershipSyncTimer);
    clearInterval(this.storeRepairTimer);
    clearInterval(this.placementTimer);
    clearInterval(this.autoSplitTimer);
    this.membershipSync.stop();
    this.autoCompactor.stop();
    const storeGroupsStopped = this.storeGroups.stop();
    void this.memorySettler.stop();
    // Calls that wait (Lock, Campaign, Observe) end now rather than hold the shutdown's grace period.
    this.servicesStopping.abort(dkvError('stopped'));
    const server = this.grpcServer;
    if (server !== undefined) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, shutdownGraceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    await this.metricsServer?.close();
    this.metrics.runtime.stop();
    this.ticker.stop();
    await new Promise<void>((resolve) => this.runtime.stop(resolve));
    await this.transport.stop();
    await storeGroupsStopped;
    await this.logStore.close();
  }
}

/** The initial members of a new cluster, from --initial-cluster. */
export function initialMembers(config: ServerConfig): MemberRecord[] {
  return config.initialCluster.map((m) => ({
    id: memberIdOf(m.peerUrls, config.initialClusterToken),
    name: m.name,
    peerUrls: m.peerUrls.map((u) => u.href),
    isLearner: false,
  }));
}

/**
 * A new group's log: one configuration change per initial member (carrying its record for the
 * meta shard), committed from the start, as etcd bootstraps.
 */
export function bootstrapLog(config: ServerConfig): { entries: Entry[]; hardState: { term: number; vote: number; commit: number } } {
  const entries: Entry[] = initialMembers(config).map((member, i) => {
    const change: ConfChange = {
      transition: 'auto',
      changes: [{ type: 'add-voter', nodeId: member.id }],
      context: wrapConfContext(0, 0, encodeMemberContext(member)),
    };
    return { index: i + 1, term: 1, type: 'conf-change', data: encodeConfChange(change) };
  });
  return { entries, hardState: { term: 1, vote: 0, commit: entries.length } };
}


