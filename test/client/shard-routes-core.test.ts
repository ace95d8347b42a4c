/**
 * The client's routes against a scripted in-process gRPC server (loopback, no cluster): a store
 * shard's responses carry that shard's term, which must neither pass for the default store's
 * (each would make the client ask Status who leads the default store again) nor stop the routes
 * from being learned by a client that only reads; and a store-routed write refused unapplied
 * leaves the default store's leader alone.
 */
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { DkvClient } from '../../src/client/index.js';
import { dkvRoot } from '../../src/etcd-proto.js';
import { type Incoming, serviceDefinition } from '../../src/server/grpc-service.js';
import { waitUntil } from '../server/cluster-harness.js';

const DEFAULT_TERM = 3;
const STORE_TERM = 9;
const MEMBER = 2;

const cleanups: Array<() => void> = [];
afterEach(() => {
  while (cleanups.length > 0) cleanups.pop()!();
});

type Call = grpc.ServerUnaryCall<Incoming<Record<string, unknown>>, object>;

/** One member (id 2) that leads the default store (term 3) and store "s" on /s/ (term 9). */
async function member(): Promise<{ endpoint: string; calls: Map<string, number>; refusePuts: { left: number } }> {
  const calls = new Map<string, number>();
  const refusePuts = { left: 0 };
  const count = (method: string): void => void calls.set(method, (calls.get(method) ?? 0) + 1);
  const headerFor = (key: unknown) => ({ cluster_id: 1, member_id: MEMBER, revision: 10, raft_term: Buffer.from((key as Uint8Array | undefined) ?? []).toString().startsWith('/s/') ? STORE_TERM : DEFAULT_TERM });
  let endpoint = '';
  const server = new grpc.Server();
  server.addService(serviceDefinition('etcdserverpb.KV'), {
    Range: (call: Call, done: grpc.sendUnaryData<object>) => {
      count('Range');
      done(null, { header: headerFor(call.request.message.key), kvs: [], count: 0 });
    },
    Put: (call: Call, done: grpc.sendUnaryData<object>) => {
      count('Put');
      if (refusePuts.left > 0) {
        refusePuts.left -= 1;
        done({ code: grpc.status.RESOURCE_EXHAUSTED, details: 'etcdserver: too many requests' });
        return;
      }
      done(null, { header: headerFor(call.request.message.key) });
    },
  });
  server.addService(serviceDefinition('etcdserverpb.Maintenance'), {
    Status: (_call: Call, done: grpc.sendUnaryData<object>) => {
      count('Status');
      done(null, { header: { cluster_id: 1, member_id: MEMBER, revision: 10, raft_term: DEFAULT_TERM }, leader: MEMBER });
    },
  });
  server.addService(serviceDefinition('etcdserverpb.Cluster'), {
    MemberList: (_call: Call, done: grpc.sendUnaryData<object>) => {
      count('MemberList');
      done(null, { header: { cluster_id: 1, member_id: MEMBER, raft_term: DEFAULT_TERM }, members: [{ ID: MEMBER, name: 'a', clientURLs: [`http://${endpoint}`] }] });
    },
  });
  server.addService(serviceDefinition('dkv.v1.Admin', dkvRoot()), {
    ShardList: (_call: Call, done: grpc.sendUnaryData<object>) => {
      count('ShardList');
      done(null, {
        header: { cluster_id: 1, member_id: MEMBER, raft_term: 1 },
        shards: [
          { id: 0, store: '(meta)', start: Buffer.alloc(0), end: Buffer.alloc(0), epoch: 0, leader: MEMBER, raft_term: 1 },
          { id: 1, store: 'default', start: Buffer.alloc(0), epoch: 1, leader: MEMBER, raft_term: DEFAULT_TERM },
          { id: 2, store: 's', start: Buffer.from('/s/'), end: Buffer.from('/s0'), epoch: 1, leader: MEMBER, raft_term: STORE_TERM },
        ],
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))));
  endpoint = `127.0.0.1:${port}`;
  cleanups.push(() => server.forceShutdown());
  return { endpoint, calls, refusePuts };
}

function clientOf(endpoint: string): DkvClient {
  const client = new DkvClient({ servers: [{ address: endpoint }], reconnect: { initialDelayMs: 5, maxDelayMs: 20, multiplier: 2, jitter: 0 } });
  cleanups.push(() => client.close());
  return client;
}

describe('the client routes and the default store leader', () => {
  it('a client that only reads a store\'s keys learns the routes and asks Status once, not once per read', async () => {
    const m = await member();
    const client = clientOf(m.endpoint);
    await client.get('/s/k');
    await waitUntil(() => (m.calls.get('ShardList') ?? 0) > 0, 5_000, () => 'routes asked for');
    await waitUntil(() => client.leader.raftTerm === DEFAULT_TERM, 5_000, () => `the default store's term (${client.leader.raftTerm})`);
    const statusBefore = m.calls.get('Status') ?? 0;
    for (let i = 0; i < 50; i++) await client.get('/s/k');
    await client.get('/other');
    expect({ status: (m.calls.get('Status') ?? 0) - statusBefore, shardLists: m.calls.get('ShardList'), term: client.leader.raftTerm }).toEqual({ status: 0, shardLists: 1, term: DEFAULT_TERM });
    expect(statusBefore).toBeLessThanOrEqual(2);
  });

  it('a store-routed write refused unapplied keeps the default store leader', async () => {
    const m = await member();
    const client = clientOf(m.endpoint);
    await client.put('/other', 'x');
    await client.put('/s/k', 'x');
    await waitUntil(() => client.leader.address === m.endpoint && (m.calls.get('ShardList') ?? 0) > 0, 5_000, () => 'leader and routes known');
    const statusBefore = m.calls.get('Status') ?? 0;
    m.refusePuts.left = 2;
    await client.put('/s/k', 'y');
    expect(m.calls.get('Put')).toBe(5);
    expect({ leader: client.leader.address, status: (m.calls.get('Status') ?? 0) - statusBefore }).toEqual({ leader: m.endpoint, status: 0 });
  });
});
