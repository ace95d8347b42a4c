/**
 * One DKV node process: the log store, the shard host with its groups (shard 0: meta, shard 1:
 * the default store), the peer transport, and the client gRPC server.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { type Message, type RaftLogger, SeededPrng, bootstrapEntries } from '../../raft/index';
import { LevelLogStore } from '../../storage/log/index';
import { createKvService } from './kv-service';
import { type HostTransport, ShardHost } from './shard-host';

/** Shard 0 holds cluster metadata; shard 1 the default store's data. */
export const META_SHARD = 0;
export const DEFAULT_STORE_SHARD = 1;

/** gRPC adds framing around a request; etcd allows this much on top of --max-request-bytes. */
export const grpcOverheadBytes = 512 * 1024;

export interface NodeMember {
  readonly id: number;
  readonly name: string;
  readonly peerUrls: readonly string[];
  readonly clientUrls: readonly string[];
}

export interface DkvNodeOptions {
  readonly memberId: number;
  readonly clusterId: number;
  readonly name: string;
  readonly dataDir: string;
  readonly initialMembers: readonly NodeMember[];
  /** host:port to serve clients on (plain gRPC here; TLS is configured by the caller's credentials). */
  readonly clientListen: string;
  readonly clientCredentials?: grpc.ServerCredentials;
  readonly tickMs: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly snapshotCount: number;
  readonly maxRequestBytes: number;
  readonly transport: HostTransport & { start?(): Promise<void>; stop?(): Promise<void> };
  readonly logger?: RaftLogger;
  readonly seed?: number;
}

export class DkvNode {
  readonly host: ShardHost;
  private grpcServer: grpc.Server | undefined;
  clientPort = 0;

  private constructor(
    readonly options: DkvNodeOptions,
    readonly logStore: LevelLogStore,
  ) {
    this.host = new ShardHost({
      memberId: options.memberId,
      logStore,
      transport: options.transport,
      random: new SeededPrng(options.seed ?? Date.now() + options.memberId),
      tickMs: options.tickMs,
      electionTicks: options.electionTicks,
      heartbeatTicks: options.heartbeatTicks,
      snapshotCount: options.snapshotCount,
      snapshotCatchUpEntries: Math.min(5000, options.snapshotCount),
      logger: options.logger,
    });
  }

  static async start(options: DkvNodeOptions): Promise<DkvNode> {
    mkdirSync(options.dataDir, { recursive: true });
    const logStore = await LevelLogStore.open({ path: join(options.dataDir, 'raft') });
    const node = new DkvNode(options, logStore);
    try {
      await node.bootstrapIfNew();
      await node.host.addShard(META_SHARD);
      await node.host.addShard(DEFAULT_STORE_SHARD);
      await options.transport.start?.();
      node.host.start();
      await node.serveClients();
    } catch (error) {
      await node.stop();
      throw error;
    }
    return node;
  }

  /** A node of a new cluster writes the bootstrap configuration of every group once. */
  private async bootstrapIfNew(): Promise<void> {
    const voters = this.options.initialMembers.map((m) => m.id);
    const updates = [];
    for (const shard of [META_SHARD, DEFAULT_STORE_SHARD]) {
      const log = this.logStore.shard(shard);
      if (log.lastIndex() > 0 || log.snapshot().metadata.index > 0) continue;
      const { entries, hardState } = bootstrapEntries(voters);
      updates.push({ shard, entries, hardState });
    }
    if (updates.length > 0) await this.logStore.save(updates);
  }

  private async serveClients(): Promise<void> {
    const server = new grpc.Server({
      'grpc.max_receive_message_length': this.options.maxRequestBytes + grpcOverheadBytes,
      'grpc.max_send_message_length': 2 ** 31 - 1,
    });
    const kv = createKvService({
      host: this.host,
      shardId: DEFAULT_STORE_SHARD,
      clusterId: () => this.options.clusterId,
      memberId: this.options.memberId,
      maxRequestBytes: this.options.maxRequestBytes,
      requestTimeoutMs: 5000 + 2 * this.options.electionTicks * this.options.tickMs,
    });
    server.addService(kv.definition, kv.implementation);
    this.clientPort = await new Promise<number>((resolve, reject) => {
      server.bindAsync(this.options.clientListen, this.options.clientCredentials ?? grpc.ServerCredentials.createInsecure(), (error, port) =>
        error ? reject(error) : resolve(port),
      );
    });
    this.grpcServer = server;
  }

  /** Messages from a peer. */
  receive(batch: ReadonlyArray<{ shard: number; message: Message }>): void {
    this.host.receive(batch);
  }

  async stop(): Promise<void> {
    const server = this.grpcServer;
    if (server !== undefined) await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    await this.host.stop();
    await this.options.transport.stop?.();
    await this.logStore.close();
  }
}
