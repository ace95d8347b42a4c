/**
 * Issue #17 §2 on a 3-node cluster: the hostile requests that etcd refuses (fuzz-cases.ts, every
 * service), sent round-robin to the leader and the followers (whose writes go through the leader),
 * are each refused, and the cluster's HashKV — on every node, at one revision — is the same after
 * every refusal as before the first. Every node is still the same process and serves at the end.
 *
 * fast-check prints the seed and the shrunk counterexample of a failure; rerun with that seed.
 */
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EtcdChannel } from '../../src/client/index.js';
import { type Case, encode, hostileCaseGroups, methodOf } from './fuzz-cases.js';
import { etcdChannel, TestCluster } from './cluster-harness.js';
import { expectAnswered, fuzzRunsScale, fuzzSeed, seedKeys } from './fuzz-harness.js';

/** Refused cases sent in all (spread over the groups). */
const casesPerGroup = 12;

let cluster: TestCluster;
let clients: EtcdChannel[] = [];
let raw: grpc.Client[] = [];
let pids: Array<number | undefined> = [];

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
  clients = cluster.nodes.map((_, i) => etcdChannel(cluster.endpoint(i)));
  raw = cluster.nodes.map((_, i) => new grpc.Client(cluster.endpoint(i), grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': 64 * 1024 * 1024 }));
  pids = cluster.nodes.map((_, i) => cluster.pid(i));
  for (const key of seedKeys) await clients[0]!.kv('Put', { key: Buffer.from(key), value: Buffer.from('seed') });
}, 60_000);

afterAll(async () => {
  for (const client of raw) client.close();
  for (const client of clients) client.close();
  await cluster?.stop();
});

/** Every node's HashKV at the current revision (read linearizably first, so all have applied it). */
async function clusterHash(): Promise<{ revision: number; hashes: number[] }> {
  const revision = Number(((await clients[0]!.kv('Range', { key: Buffer.from(seedKeys[0]!) })).header as { revision: number }).revision);
  const hashes: number[] = [];
  for (const client of clients) {
    // A follower may apply the last entry a moment after the leader answered: its linearizable read waits for it.
    await client.kv('Range', { key: Buffer.from(seedKeys[0]!) });
    hashes.push(Number((await client.maintenance('HashKV', { revision })).hash));
  }
  return { revision, hashes };
}

function send(node: number, c: Case): Promise<{ code: grpc.status; details: string } | 'accepted'> {
  const method = methodOf(c.path);
  const body = encode(method, c.messages[0]!);
  return new Promise((resolve) => {
    raw[node]!.makeUnaryRequest(method.path, (b: Buffer) => b, (b: Buffer) => b, body, { deadline: Date.now() + 5000 }, (error) => {
      resolve(error === null ? 'accepted' : { code: error.code, details: error.details });
    });
  });
}

describe('refused requests on a 3-node cluster', () => {
  it('are refused by leader and followers alike, and leave every node\'s HashKV as it was', async () => {
    const before = await clusterHash();
    expect(new Set(before.hashes).size, `the nodes disagree before any refusal: ${before.hashes.join(', ')}`).toBe(1);
    // Member ids are below 2^53: exact as numbers.
    const members = (await clients[0]!.call('etcdserverpb.Cluster', 'MemberList', {})).members as Array<{ ID: number; peerURLs: string[] }>;
    const facts = { memberIds: members.map((m) => String(m.ID)), peerUrls: members.flatMap((m) => m.peerURLs) };
    // Unary methods only: a stream's refusal is its status, which the single-node suites check.
    const groups = hostileCaseGroups(facts).filter(([name]) => name !== 'Watch streams');
    const refused = fc.oneof(...groups.map(([, cases]) => cases.filter((c) => c.mustRefuse === true && !methodOf(c.path).requestStream && !methodOf(c.path).responseStream)));
    let sent = 0;
    await fc.assert(
      fc.asyncProperty(refused, fc.integer({ min: 0, max: 2 }), async (c, node) => {
        const answer = await send(node, c);
        sent++;
        const label = `${c.path} on node ${node}: ${JSON.stringify(c.messages).slice(0, 400)}`;
        expect(answer, `${label}: accepted, which etcd refuses`).not.toBe('accepted');
        if (answer !== 'accepted') expectAnswered(methodOf(c.path), { kind: 'status', code: answer.code, details: answer.details, responses: 0 }, label);
        const after = await clusterHash();
        expect(after, `${label}: refused with "${answer === 'accepted' ? '' : answer.details}" but the cluster changed`).toEqual(before);
      }),
      { seed: fuzzSeed, numRuns: fuzzRunsScale * casesPerGroup * groups.length },
    );
    console.log(`[fuzz-grpc-cluster] ${sent} refused requests over 3 nodes; HashKV ${before.hashes[0]} at revision ${before.revision} throughout`);
    for (let node = 0; node < 3; node++) {
      expect(cluster.pid(node), `node ${node} was restarted or died\n${cluster.logs()}`).toBe(pids[node]);
      expect(cluster.running(node), `node ${node} is not running\n${cluster.logs()}`).toBe(true);
      await clients[node]!.kv('Put', { key: Buffer.from(`fuzz/after/${node}`), value: Buffer.from('ok') });
    }
    const final = await clusterHash();
    expect(new Set(final.hashes).size, `the nodes disagree after the run: ${final.hashes.join(', ')}`).toBe(1);
  });
});
