/**
 * Counter writes and guarded puts take the shard routes as put, txn and delete do, against three
 * scripted in-process gRPC servers (loopback, no cluster) that answer one cluster view: member 3
 * is the client's preferred server and leads nothing, member 1 leads the default store, member 2
 * leads store "s"'s shard (/s/). Once the client has the routes, a counter write or guarded put of
 * a /s/ key goes to member 2 and of a default-store key to member 1; a counter read stays on the
 * preferred server. A call that lost its routeKey would go to member 1 (the default store's
 * leader) for every key.
 */
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { DkvClient } from '../../src/client/index.js';
import { dkvRoot } from '../../src/etcd-proto.js';
import { type Incoming, serviceDefinition } from '../../src/server/grpc-service.js';
import { waitUntil } from '../server/cluster-harness.js';

const DEFAULT_LEADER = 1;
const STORE_LEADER = 2;
const PREFERRED = 3;
const DEFAULT_TERM = 3;
const STORE_TERM = 9;

const cleanups: Array<() => void> = [];
afterEach(() => {
  while (cleanups.length > 0) cleanups.pop()!();
});

type Call = grpc.ServerUnaryCall<Incoming<Record<string, unknown>>, object>;
type Done = grpc.sendUnaryData<object>;

/** A call a member answered: its service and method, and the key it named. */
interface Arrival {
  readonly method: string;
  readonly key: string;
}

const keyOf = (call: Call): string => Buffer.from((call.request.message.key as Uint8Array | undefined) ?? []).toString();

/**
 * One scripted member: it answers every call as the member `id` of a cluster whose client URLs
 * are `endpoints` (filled once every member is bound), and records each call it answered.
 */
async function member(id: number, endpoints: Map<number, string>): Promise<{ endpoint: string; arrivals: Arrival[] }> {
  const arrivals: Arrival[] = [];
  const header = (key: string) => ({ cluster_id: 1, member_id: id, revision: 10, raft_term: key.startsWith('/s/') ? STORE_TERM : DEFAULT_TERM });
  /** A handler that records the call and answers with the key's header and `more`. */
  const keyed =
    (method: string, more: object = {}) =>
    (call: Call, done: Done): void => {
      arrivals.push({ method, key: keyOf(call) });
      done(null, { header: header(keyOf(call)), ...more });
    };
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
    Status: (_call: Call, done: Done) => done(null, { header: { cluster_id: 1, member_id: id, revision: 10, raft_term: DEFAULT_TERM }, leader: DEFAULT_LEADER }),
  });
  server.addService(serviceDefinition('etcdserverpb.Cluster'), {
    MemberList: (_call: Call, done: Done) =>
      done(null, { header: { cluster_id: 1, member_id: id, raft_term: DEFAULT_TERM }, members: [...endpoints].map(([memberId, endpoint]) => ({ ID: memberId, name: `m${memberId}`, clientURLs: [`http://${endpoint}`] })) }),
  });
  server.addService(serviceDefinition('dkv.v1.Admin', dkvRoot()), {
    ShardList: (_call: Call, done: Done) =>
      done(null, {
        header: { cluster_id: 1, member_id: id, raft_term: 1 },
        shards: [
          { id: 0, store: '(meta)', start: Buffer.alloc(0), end: Buffer.alloc(0), epoch: 0, leader: DEFAULT_LEADER, raft_term: 1 },
          { id: 1, store: 'default', start: Buffer.alloc(0), epoch: 1, leader: DEFAULT_LEADER, raft_term: DEFAULT_TERM },
          { id: 2, store: 's', start: Buffer.from('/s/'), end: Buffer.from('/s0'), epoch: 1, leader: STORE_LEADER, raft_term: STORE_TERM },
        ],
      }),
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))));
  cleanups.push(() => server.forceShutdown());
  return { endpoint: `127.0.0.1:${port}`, arrivals };
}

/** The three members, and a client whose preferred server is the one that leads nothing. */
async function cluster(): Promise<{ client: DkvClient; arrivals: Map<number, Arrival[]>; endpoints: Map<number, string> }> {
  const endpoints = new Map<number, string>();
  const arrivals = new Map<number, Arrival[]>();
  for (const id of [PREFERRED, DEFAULT_LEADER, STORE_LEADER]) {
    const m = await member(id, endpoints);
    endpoints.set(id, m.endpoint);
    arrivals.set(id, m.arrivals);
  }
  const client = new DkvClient({ servers: [PREFERRED, DEFAULT_LEADER, STORE_LEADER].map((id) => ({ address: endpoints.get(id)! })), reconnect: { initialDelayMs: 5, maxDelayMs: 20, multiplier: 2, jitter: 0 } });
  cleanups.push(() => client.close());
  return { client, arrivals, endpoints };
}

describe('the client routes counter writes and guarded puts to the leader of their key\'s shard', () => {
  it('a store key\'s to the store shard\'s leader, a default-store key\'s to the default store\'s, a counter read to the preferred server', async () => {
    const { client, arrivals, endpoints } = await cluster();
    /** The members that answered a call of `method` naming `key`. */
    const answeredBy = (method: string, key: string): number[] => [...arrivals].filter(([, list]) => list.some((a) => a.method === method && a.key === key)).map(([id]) => id);
    // The routes come in the background after the first keyed call; the default store's leader
    // from the first answer's term. Plain puts (their routing is shard-routing.test.ts's) show both known.
    await client.put('/other', 'x');
    await waitUntil(() => client.leader.address === endpoints.get(DEFAULT_LEADER), 5_000, () => `the default store's leader known (${client.leader.address})`);
    let probes = 0;
    await waitUntil(
      async () => {
        const key = `/s/probe${probes++}`;
        await client.put(key, 'x');
        return answeredBy('KV.Put', key).includes(STORE_LEADER);
      },
      5_000,
      () => 'a put of a store key answered by its shard leader',
    );

    const token = { key: Buffer.from('/locks/l/1'), revision: 5 };
    const writes: Array<[string, string, () => Promise<unknown>]> = [];
    for (const key of ['/s/c', '/d/c']) {
      const counter = client.counter(key);
      writes.push(
        ['Counter.Increment', key, () => counter.increment(1)],
        ['Counter.Decrement', key, () => counter.decrement(1)],
        ['Counter.Set', key, () => counter.set(7)],
        ['Counter.Delete', key, () => counter.delete()],
      );
    }
    writes.push(['dkv.KV.Put', '/s/g', () => client.guardedPut('/s/g', 'v', token)], ['dkv.KV.Put', '/d/g', () => client.guardedPut('/d/g', 'v', token)]);
    for (const [, , write] of writes) await write();
    await client.counter('/s/c').get();

    const expected = (key: string): number => (key.startsWith('/s/') ? STORE_LEADER : DEFAULT_LEADER);
    expect(writes.map(([method, key]) => [method, key, answeredBy(method, key)])).toEqual(writes.map(([method, key]) => [method, key, [expected(key)]]));
    expect(answeredBy('Counter.Get', '/s/c')).toEqual([PREFERRED]);
  });
});
