/**
 * One DKV node process: the log store, the shard host with its groups (shard 0: meta — members;
 * shard 1: the default store's data), the peer transport, the client gRPC server (KV, Cluster,
 * Maintenance) and the metrics/health HTTP server.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { type ConfChange, type Entry, SeededPrng, encodeConfChange } from '../../raft/index';
import { LevelLogStore, type ShardUpdate } from '../../storage/index';
import { CommandKind, encodeCommand } from '../engines/kv/command';
import { etcdType } from '../etcd-proto';
import { createClusterService } from './cluster-service';
import { type ServerConfig, type ServerUrl, type TlsConfig, clusterId as computeClusterId, memberId as computeMemberId } from './config';
import { createKvService } from './kv-service';
import { createMaintenanceService } from './maintenance-service';
import { BufferedBytes } from './response-queue';
import { createWatchService } from './watch-service';
import { createPrefixWatchService } from './prefix-watch-service';
import { WatchHub, watchLimits } from '../engines/watch/index';
import { type Member, type MemberRecord, applyMembershipChange, attributesKey, encodeAttributes, encodeMemberContext, listMembers } from './members';
import { type ServerMetrics, createServerMetrics, startMetricsServer } from './metrics';
import { PeerTransport } from './peer/index';
import { type Shard, ShardHost, wrapConfContext } from './shard-host';

/** Shard 0 holds cluster metadata; shard 1 the default store's data. */
export const META_SHARD = 0;
export const DEFAULT_STORE_SHARD = 1;
export const HOSTED_SHARDS = [META_SHARD, DEFAULT_STORE_SHARD] as const;

/** gRPC adds framing around a request; etcd allows this much on top of --max-request-bytes. */
export const grpcOverheadBytes = 512 * 1024;

/** The etcd API version DKV speaks (reported by Status; clients gate features on it). */
export const etcdApiVersion = '3.5.0';

export interface NodeLogger {
  info(message: string): void;
  warn(message: string): void;
  debug(message: string): void;
}

export interface DkvNodeOptions {
  /** The node cannot go on (storage failed, an invariant broke); the process should exit. */
  readonly onFatal?: (error: Error) => void;
  /** How often idle watchers with progress_notify hear the revision (etcd: 10 minutes). */
  readonly watchProgressIntervalMs?: number;
}

/** This member's identity, written to the data directory on first start. */
export interface Identity {
  memberId: number;
  clusterId: number;
  name: string;
  clusterToken: string;
}

const PutRequestType = etcdType('etcdserverpb.PutRequest');

function hostPort(url: ServerUrl): string {
  return url.host.includes(':') ? `[${url.host}]:${url.port}` : `${url.host}:${url.port}`;
}

function readTls(tls: TlsConfig): { cert: Buffer; key: Buffer; ca?: Buffer; clientCertAuth: boolean } | undefined {
  if (tls.certFile === undefined || tls.keyFile === undefined) return undefined;
  return {
    cert: readFileSync(tls.certFile),
    key: readFileSync(tls.keyFile),
    ca: tls.trustedCaFile === undefined ? undefined : readFileSync(tls.trustedCaFile),
    clientCertAuth: tls.clientCertAuth,
  };
}

export class DkvNode {
  readonly etcdApiVersion = etcdApiVersion;
  readonly host: ShardHost;
  readonly transport: PeerTransport;
  readonly metrics: ServerMetrics;
  /** Watchers of the default store. */
  readonly watchHub: WatchHub;
  /** Bytes every watch stream of this node holds for slow clients. */
  readonly watchBuffered = new BufferedBytes();
  private grpcServer: grpc.Server | undefined;
  private metricsServer: { close(): Promise<void> } | undefined;
  private stopping = false;
  private publishTimer: NodeJS.Timeout | undefined;
  private gaugeTimer: NodeJS.Timeout | undefined;
  readonly clientPorts: number[] = [];
  metricsPort = 0;

  private constructor(
    readonly config: ServerConfig,
    readonly identity: Identity,
    readonly logStore: LevelLogStore,
    private readonly logger: NodeLogger,
    private readonly options: DkvNodeOptions,
  ) {
    this.metrics = createServerMetrics();
    this.watchHub = new WatchHub(() => this.host.shard(DEFAULT_STORE_SHARD)!.machine.mvcc);
    const peers = new Map<number, string>();
    for (const member of this.initialPeers()) if (member.id !== identity.memberId) peers.set(member.id, member.url);
    const peerListen = config.listenPeerUrls[0]!;
    const peerTls = config.listenPeerUrls.some((u) => u.scheme === 'https') ? readTls(config.peerTls) : undefined;
    this.transport = new PeerTransport({
      localId: identity.memberId,
      clusterId: identity.clusterId,
      listenHost: peerListen.host,
      listenPort: peerListen.port,
      peers,
      tls: peerTls,
      onMessages: (_from, batch) => this.host.receive(batch),
      isKnownShard: (shard) => this.host.isKnownShard(shard),
      onUnreachable: (peer, shards) => this.host.reportUnreachable(peer, shards),
      onSnapshotStatus: (peer, shard, ok) => this.host.reportSnapshot(peer, shard, ok),
      log: (level, message) => (level === 'error' || level === 'warn' ? logger.warn(message) : level === 'info' ? logger.info(message) : logger.debug(message)),
    });
    this.host = new ShardHost({
      memberId: identity.memberId,
      logStore,
      transport: this.transport,
      random: new SeededPrng((Date.now() ^ identity.memberId) >>> 0),
      tickMs: config.tickMs,
      electionTicks: config.electionTicks,
      heartbeatTicks: config.heartbeatTicks,
      snapshotCount: config.snapshotCount,
      snapshotCatchUpEntries: Math.min(5000, config.snapshotCount),
      logger: { debug: (m) => logger.debug(m), info: (m) => logger.debug(m), warn: (m) => logger.warn(m) },
      onSave: (seconds) => this.metrics.walFsyncSeconds.observe(seconds),
      onLeaderChange: (shard, leader, term) => {
        logger.info(`shard ${shard}: leader is now ${leader === 0 ? 'unknown' : leader.toString(16)} (term ${term})`);
        if (shard === DEFAULT_STORE_SHARD) {
          this.metrics.leaderChanges.inc();
        }
      },
      onConfChange: (shard, change) => this.confChangeApplied(shard, change),
      onApplied: (shard, applied) => {
        if (shard === DEFAULT_STORE_SHARD) this.watchHub.onApplied(applied.events);
      },
      onFatal: (error) => this.options.onFatal?.(error),
      onSnapshotInstalled: (shard) => {
        logger.info(`shard ${shard.id}: state restored from the leader's snapshot at index ${shard.machine.appliedIndex}`);
        if (shard.id === META_SHARD) this.refreshPeers();
        if (shard.id === DEFAULT_STORE_SHARD) this.watchHub.onStoreReplaced();
      },
    });
  }

  /** Starts a node from its configuration; resolves when it serves clients. */
  static async start(config: ServerConfig, logger: NodeLogger, options: DkvNodeOptions = {}): Promise<DkvNode> {
    mkdirSync(config.dataDir, { recursive: true });
    const identity = DkvNode.identityOf(config);
    const logStore = await LevelLogStore.open({ path: join(config.dataDir, 'raft') });
    const node = new DkvNode(config, identity, logStore, logger, options);
    try {
      await node.bootstrapIfNew();
      for (const shard of HOSTED_SHARDS) await node.host.addShard(shard);
      await node.transport.start();
      node.host.start();
      await node.serveClients();
      await node.serveMetrics();
      node.publishAttributes();
      logger.info(`member ${identity.memberId.toString(16)} of cluster ${identity.clusterId.toString(16)} serving clients on ${config.advertiseClientUrls.map((u) => u.href).join(',')}`);
    } catch (error) {
      await node.stop();
      throw error;
    }
    return node;
  }

  /** Reads this member's identity from its data directory, or creates it from the configuration. */
  static identityOf(config: ServerConfig): Identity {
    const file = join(config.dataDir, 'member.json');
    if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as Identity;
    const token = config.initialClusterToken;
    const memberId = memberIdOf(config.initialAdvertisePeerUrls, token);
    const identity: Identity = { memberId, clusterId: clusterIdOf(token), name: config.name, clusterToken: token };
    writeFileSync(`${file}.tmp`, JSON.stringify(identity));
    renameSync(`${file}.tmp`, file);
    return identity;
  }

  private initialPeers(): Array<{ id: number; url: string }> {
    const token = this.identity.clusterToken;
    return this.config.initialCluster.map((m) => ({ id: memberIdOf(m.peerUrls, token), url: m.peerUrls[0]!.href }));
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

  private confChangeApplied(shard: Shard, change: ConfChange): void {
    if (shard.id !== META_SHARD) return;
    applyMembershipChange(shard.machine.mvcc, change);
    this.refreshPeers();
  }

  /** Points the transport at the members the meta shard knows. */
  private refreshPeers(): void {
    const members = this.members();
    if (members.length === 0) return;
    const wanted = new Map<number, string>();
    for (const m of members) if (m.id !== this.identity.memberId && m.peerUrls[0] !== undefined) wanted.set(m.id, m.peerUrls[0]);
    const known = new Set(this.transport.peerIds());
    for (const [id, url] of wanted) {
      if (known.has(id)) this.transport.updatePeer(id, url);
      else this.transport.addPeer(id, url);
    }
    for (const id of known) if (!wanted.has(id)) this.transport.removePeer(id);
  }

  members(): Member[] {
    const meta = this.host.shard(META_SHARD);
    return meta === undefined ? [] : listMembers(meta.machine.mvcc);
  }

  /** Publishes this member's name and client URLs through the meta shard (retried until done). */
  private publishAttributes(): void {
    const attributes = { name: this.config.name, clientUrls: this.config.advertiseClientUrls.map((u) => u.href) };
    const attempt = (): void => {
      if (this.stopping) return;
      const current = this.members().find((m) => m.id === this.identity.memberId);
      if (current !== undefined && current.name === attributes.name && JSON.stringify(current.clientUrls) === JSON.stringify(attributes.clientUrls)) return;
      const payload = PutRequestType.encode({ key: attributesKey(this.identity.memberId), value: encodeAttributes(attributes) }).finish();
      const retryMs = this.config.tickMs * this.config.electionTicks;
      // A forwarded proposal can be lost with a leader; try again after an election timeout.
      let settled = false;
      const retry = (): void => {
        if (settled) return;
        settled = true;
        clearTimeout(this.publishTimer);
        this.publishTimer = setTimeout(attempt, retryMs);
      };
      this.publishTimer = setTimeout(retry, 2 * retryMs);
      this.host
        .propose(META_SHARD, (proposer, requestId) => encodeCommand({ kind: CommandKind.Put, proposer, requestId, payload }))
        .then(() => {
          settled = true;
          clearTimeout(this.publishTimer);
          attempt();
        }, retry);
    };
    this.publishTimer = setTimeout(attempt, 0);
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
    });
    const common = {
      host: this.host,
      clusterId: () => this.identity.clusterId,
      memberId: this.identity.memberId,
      requestTimeoutMs: 5000 + 2 * this.config.electionTicks * this.config.tickMs,
    };
    const kv = createKvService({
      ...common,
      shardId: DEFAULT_STORE_SHARD,
      maxRequestBytes: this.config.maxRequestBytes,
      unsafeStaleReads: this.config.unsafeStaleReads,
    });
    server.addService(kv.definition, kv.implementation);
    const cluster = createClusterService({ ...common, node: this });
    server.addService(cluster.definition, cluster.implementation);
    const maintenance = createMaintenanceService({ ...common, node: this, shardId: DEFAULT_STORE_SHARD });
    server.addService(maintenance.definition, maintenance.implementation);
    const watch = createWatchService({
      ...common,
      shardId: DEFAULT_STORE_SHARD,
      hub: () => this.watchHub,
      currentRevision: () => this.host.shard(DEFAULT_STORE_SHARD)!.machine.mvcc.revision,
      maxRequestBytes: this.config.maxRequestBytes,
      progressIntervalMs: this.options.watchProgressIntervalMs ?? watchLimits.watchProgressIntervalMsDefault,
      buffered: this.watchBuffered,
    });
    server.addService(watch.definition, watch.implementation);
    const prefixWatch = createPrefixWatchService({
      hub: () => this.watchHub,
      store: () => this.host.shard(DEFAULT_STORE_SHARD)!.machine.mvcc,
      buffered: this.watchBuffered,
    });
    server.addService(prefixWatch.definition, prefixWatch.implementation);
    const credentials = this.clientCredentials();
    for (const url of this.config.listenClientUrls) {
      const port = await new Promise<number>((resolve, reject) => {
        server.bindAsync(hostPort(url), credentials, (error, bound) => (error ? reject(error) : resolve(bound)));
      });
      this.clientPorts.push(port);
    }
    this.grpcServer = server;
  }

  /** Gauges that describe state rather than events, refreshed once a second. */
  private refreshGauges(): void {
    let committed = 0;
    let applied = 0;
    let pending = 0;
    let leaders = 0;
    let allHaveLeaders = true;
    for (const id of this.host.shardIds()) {
      const shard = this.host.shard(id)!;
      const status = shard.node.status();
      committed += status.commit;
      applied += shard.machine.appliedIndex;
      pending += shard.waiters.size;
      if (status.lead === this.identity.memberId) leaders++;
      if (status.lead === 0) allHaveLeaders = false;
    }
    const data = this.host.shard(DEFAULT_STORE_SHARD)?.machine.mvcc;
    const m = this.metrics;
    m.proposalsCommitted.set(committed);
    m.proposalsApplied.set(applied);
    m.proposalsPending.set(pending);
    m.hasLeader.set(allHaveLeaders ? 1 : 0);
    m.shards.set(this.host.shardIds().length);
    m.shardLeaders.set(leaders);
    m.dbTotalSizeBytes.set(data?.arenaBytes ?? 0);
    m.keysTotal.set(data?.keyCount ?? 0);
    m.watchers.set(this.watchHub.watcherCount);
    m.slowWatchers.set(this.watchHub.unsyncedCount);
    m.watchSlowFallbacks.set(this.watchHub.slowFallbacks);
    m.watchBufferedBytes.set(this.watchBuffered.bytes);
    m.watchBufferedBytesPeak.set(this.watchBuffered.peak);
  }

  private async serveMetrics(): Promise<void> {
    this.gaugeTimer = setInterval(() => this.refreshGauges(), 1000);
    this.gaugeTimer.unref();
    this.refreshGauges();
    const url = this.config.listenMetricsUrls[0];
    if (url === undefined) return;
    const server = await startMetricsServer({
      host: url.host,
      port: url.port,
      registry: this.metrics.registry,
      health: () => {
        const leader = this.host.shard(DEFAULT_STORE_SHARD)?.leader ?? 0;
        return leader !== 0 ? { health: true } : { health: false, reason: 'RAFT NO LEADER' };
      },
    });
    this.metricsPort = server.port;
    this.metricsServer = server;
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearTimeout(this.publishTimer);
    clearInterval(this.gaugeTimer);
    const server = this.grpcServer;
    if (server !== undefined) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    await this.metricsServer?.close();
    await this.host.stop();
    await this.transport.stop();
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

/** Reads or creates the member identity file in `dataDir`. */
export function memberIdentity(config: ServerConfig): Identity {
  return DkvNode.identityOf(config);
}

/**
 * A member's id: from its peer URLs and the cluster token only, so every member can work out
 * every other's from --initial-cluster, and MemberAdd gives an added member the id it will
 * compute for itself.
 */
export function memberIdOf(peerUrls: ReadonlyArray<string | ServerUrl>, token: string): number {
  return computeMemberId('', peerUrls, token);
}

/**
 * The cluster id. It depends only on the cluster token, so a member that joins later knows it
 * without asking; give every cluster its own --initial-cluster-token.
 */
export function clusterIdOf(token: string): number {
  return computeClusterId([], token);
}
