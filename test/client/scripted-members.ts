/**
 * Scripted in-process gRPC servers (loopback, no cluster) that answer as the members of one
 * cluster with two data stores: the default store (shard 1, term 3) and store "s" on /s/ (shard 2,
 * term 9). Each answers a keyed call with the term of the key's shard, lists the shards with the
 * leaders it is given, and records every call it answered; and clients of them, quick to reconnect.
 */
import * as grpc from '@grpc/grpc-js';
import { DkvClient } from '../../src/client/index.js';
import { dkvRoot } from '../../src/etcd-proto.js';
import { type Incoming, serviceDefinition } from '../../src/server/grpc-service.js';

export const DEFAULT_TERM = 3;
export const STORE_TERM = 9;

type Call = grpc.ServerUnaryCall<Incoming<Record<string, unknown>>, object>;
type Done = grpc.sendUnaryData<object>;

/** A call a member answered: its service and method ("KV.Put", "dkv.KV.Put", "Admin.ShardList"), and the key it named ('' for none). */
export interface Arrival {
  readonly method: string;
  readonly key: string;
}

export interface ScriptedMemberOptions {
  /** The member id it answers as. */
  readonly id: number;
  /** The member that leads the default store (and the meta shard). */
  readonly defaultLeader: number;
  /** The member that leads store "s"'s shard. */
  readonly storeLeader: number;
  /** Every member's client endpoint by id, as MemberList lists them (read at each call: filled once all are bound). */
  readonly endpoints: ReadonlyMap<number, string>;
}

export interface ScriptedMember {
  readonly endpoint: string;
  /** Every call it answered, refused ones too, in order. */
  readonly arrivals: Arrival[];
  /** How many calls of `method` it answered. */
  calls(method: string): number;
  /** Refuses the next `count` calls of `method` unapplied (RESOURCE_EXHAUSTED, etcd's "too many requests"). */
  refuseNext(method: string, count: number): void;
}

const keyOf = (call: Call): string => Buffer.from((call.request.message.key as Uint8Array | undefined) ?? []).toString();

/** The scripted members and clients a test made, closed together after it (`close` in an afterEach). */
export class ScriptedMembers {
  private readonly cleanups: Array<() => void> = [];

  async member(options: ScriptedMemberOptions): Promise<ScriptedMember> {
    const { id, defaultLeader, storeLeader, endpoints } = options;
    const arrivals: Arrival[] = [];
    const refusals = new Map<string, number>();
    const header = (key: string) => ({ cluster_id: 1, member_id: id, revision: 10, raft_term: key.startsWith('/s/') ? STORE_TERM : DEFAULT_TERM });
    /** A handler that records the call, then refuses it or answers with `answer(key)`. */
    const handler =
      (method: string, answer: (key: string) => object) =>
      (call: Call, done: Done): void => {
        const key = keyOf(call);
        arrivals.push({ method, key });
        const refuse = refusals.get(method) ?? 0;
        if (refuse > 0) {
          refusals.set(method, refuse - 1);
          done({ code: grpc.status.RESOURCE_EXHAUSTED, details: 'etcdserver: too many requests' });
          return;
        }
        done(null, answer(key));
      };
    /** A keyed call's answer: the key's header and `more`. */
    const keyed = (method: string, more: object = {}) => handler(method, (key) => ({ header: header(key), ...more }));
    const server = new grpc.Server();
    server.addService(serviceDefinition('etcdserverpb.KV'), { Range: keyed('KV.Range', { kvs: [], count: 0 }), Put: keyed('KV.Put') });
    server.addService(serviceDefinition('dkv.v1.KV', dkvRoot()), { Put: keyed('dkv.KV.Put') });
    server.addService(serviceDefinition('dkv.v1.Counter', dkvRoot()), {
      Increment: keyed('Counter.Increment', { value: '1', exists: true }),
      Decrement: keyed('Counter.Decrement', { value: '0', exists: true }),
      Set: keyed('Counter.Set', { value: '7', exists: true }),
      Get: keyed('Counter.Get', { value: '7', exists: true }),
      Delete: keyed('Counter.Delete', { deleted: true }),
    });
    server.addService(serviceDefinition('etcdserverpb.Maintenance'), {
      Status: handler('Maintenance.Status', () => ({ header: { cluster_id: 1, member_id: id, revision: 10, raft_term: DEFAULT_TERM }, leader: defaultLeader })),
    });
    server.addService(serviceDefinition('etcdserverpb.Cluster'), {
      MemberList: handler('Cluster.MemberList', () => ({
        header: { cluster_id: 1, member_id: id, raft_term: DEFAULT_TERM },
        members: [...endpoints].map(([memberId, endpoint]) => ({ ID: memberId, name: `m${memberId}`, clientURLs: [`http://${endpoint}`] })),
      })),
    });
    server.addService(serviceDefinition('dkv.v1.Admin', dkvRoot()), {
      ShardList: handler('Admin.ShardList', () => ({
        header: { cluster_id: 1, member_id: id, raft_term: 1 },
        shards: [
          { id: 0, store: '(meta)', start: Buffer.alloc(0), end: Buffer.alloc(0), epoch: 0, leader: defaultLeader, raft_term: 1 },
          { id: 1, store: 'default', start: Buffer.alloc(0), epoch: 1, leader: defaultLeader, raft_term: DEFAULT_TERM },
          { id: 2, store: 's', start: Buffer.from('/s/'), end: Buffer.from('/s0'), epoch: 1, leader: storeLeader, raft_term: STORE_TERM },
        ],
      })),
    });
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))));
    this.cleanups.push(() => server.forceShutdown());
    return {
      endpoint: `127.0.0.1:${port}`,
      arrivals,
      calls: (method) => arrivals.filter((a) => a.method === method).length,
      refuseNext: (method, count) => void refusals.set(method, count),
    };
  }

  /** A client of `addresses` (the first its preferred server) that reconnects within milliseconds. */
  client(addresses: readonly string[]): DkvClient {
    const client = new DkvClient({ servers: addresses.map((address) => ({ address })), reconnect: { initialDelayMs: 5, maxDelayMs: 20, multiplier: 2, jitter: 0 } });
    this.cleanups.push(() => client.close());
    return client;
  }

  /** Closes every client and server made so far, the latest first. */
  close(): void {
    while (this.cleanups.length > 0) this.cleanups.pop()!();
  }
}
