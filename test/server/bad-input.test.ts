/**
 * Bad input against a real 3-node cluster of `dkv server` processes: requests over the size
 * limit, empty keys, compacted and future revisions, txns with duplicate keys or too many
 * operations, undecodable protobuf, and raw garbage bytes on the client and peer ports. After each,
 * the node that got it must still be the same process, still serve, and still hold every put that
 * was acknowledged before.
 */
import * as grpc from '@grpc/grpc-js';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { etcdType } from '../../src/etcd-proto.js';
import { type Decoded, type EtcdChannel, methodPath } from '../../src/client/index.js';
import { etcdChannel, TestCluster, waitUntil } from './cluster-harness.js';
import { WatchClient } from './watch-client.js';
import { dialRaw } from './peer-harness.js';

/** etcd's default --max-request-bytes, which DKV keeps. */
const MAX_REQUEST_BYTES = 1_572_864;
const INVALID_ARGUMENT = grpc.status.INVALID_ARGUMENT;
const OUT_OF_RANGE = grpc.status.OUT_OF_RANGE;

let cluster: TestCluster;
let clients: EtcdChannel[] = [];
let pids: Array<number | undefined> = [];
/** Every put acknowledged so far: key -> value. */
const acknowledged = new Map<string, string>();

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
  clients = cluster.nodes.map((_, i) => etcdChannel(cluster.endpoint(i)));
  pids = cluster.nodes.map((_, i) => cluster.pid(i));
  for (let i = 0; i < 10; i++) await put(i % 3, `before/${i}`, `value-${i}`);
}, 60_000);

afterAll(async () => {
  for (const client of clients) client.close();
  await cluster?.stop();
});

async function put(node: number, key: string, value: string | Buffer): Promise<Decoded> {
  const response = await clients[node]!.kv('Put', { key: Buffer.from(key), value: Buffer.from(value) });
  acknowledged.set(key, Buffer.from(value).toString('base64'));
  return response;
}

/** The gRPC error a call fails with (the test fails if it succeeds). */
async function failure(call: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await call;
  } catch (error) {
    const e = error as { code: number; details: string };
    return { code: e.code, details: e.details };
  }
  throw new Error('the call succeeded');
}

/**
 * The node is the same process as at the start, serves a put and a linearizable read, and every
 * node still holds every acknowledged put.
 */
async function stillServing(node: number, label: string): Promise<void> {
  expect(cluster.pid(node), `${label}: node ${node} was restarted or died\n${cluster.logs()}`).toBe(pids[node]);
  expect(cluster.running(node), `${label}: node ${node} is not running\n${cluster.logs()}`).toBe(true);
  await put(node, `after/${label}`, 'ok');
  for (let reader = 0; reader < 3; reader++) {
    for (const [key, value] of acknowledged) {
      const response = await clients[reader]!.kv('Range', { key: Buffer.from(key) });
      const kvs = response.kvs as Array<{ value: Buffer }>;
      expect(kvs.map((kv) => kv.value.toString('base64')), `${key} on node ${reader} after ${label}`).toEqual([value]);
    }
  }
}

/** A small seeded generator, so a failing garbage test replays with the same bytes. */
function garbage(seed: number, length: number): Buffer {
  const bytes = Buffer.alloc(length);
  let state = seed >>> 0;
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    bytes[i] = state >>> 24;
  }
  return bytes;
}

interface RawExchange {
  /** Bytes the server sent back before it closed (or before we gave up). */
  readonly received: Buffer;
  /** True if the server closed the connection itself. */
  readonly closedByServer: boolean;
}

/** Writes `payload` on a plain TCP connection and waits for the server to close it (up to 5 s). */
function sendRaw(port: number, payload: Buffer): Promise<RawExchange> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ received: Buffer.concat(chunks), closedByServer: false });
    }, 5000);
    socket.on('connect', () => socket.write(payload));
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', (error: NodeJS.ErrnoException) => {
      // A reset after the server gave up on us is a close, not a failure of the test.
      if (error.code !== 'ECONNRESET' && error.code !== 'EPIPE') {
        clearTimeout(timer);
        reject(error);
      }
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ received: Buffer.concat(chunks), closedByServer: true });
    });
  });
}

const http2Preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

const rawPayloads: ReadonlyArray<[string, Buffer]> = [
  ['random bytes', garbage(1, 64 * 1024)],
  ['an HTTP/1.1 request', Buffer.from('GET /etcdserverpb.KV/Range HTTP/1.1\r\nHost: x\r\n\r\n')],
  ['the HTTP/2 preface then random frames', Buffer.concat([http2Preface, garbage(2, 4096)])],
  ['an HTTP/2 frame header claiming 16 MiB', Buffer.concat([http2Preface, Buffer.from([0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01])])],
  ['a TLS client hello', Buffer.from('16030100a5010000a103035b', 'hex')],
];

describe('bad input to a 3-node cluster', () => {
  it('refuses a put over --max-request-bytes with "request is too large" and accepts one at the limit', async () => {
    const PutRequest = etcdType('etcdserverpb.PutRequest');
    const sizeOf = (key: string, valueBytes: number) =>
      PutRequest.encode({ key: Buffer.from(key), value: Buffer.alloc(valueBytes) }).finish().length;
    // The largest value whose whole request is exactly the limit (the keys have the same length).
    let atLimit = MAX_REQUEST_BYTES - 64;
    while (sizeOf('big/at-limit', atLimit + 1) <= MAX_REQUEST_BYTES) atLimit++;
    expect(sizeOf('big/at-limit', atLimit)).toBe(MAX_REQUEST_BYTES);
    expect(sizeOf('big/over-one', atLimit + 1)).toBe(MAX_REQUEST_BYTES + 1);

    const over = await failure(clients[0]!.kv('Put', { key: Buffer.from('big/over-one'), value: Buffer.alloc(atLimit + 1, 0x61) }));
    expect(over).toEqual({ code: INVALID_ARGUMENT, details: 'etcdserver: request is too large' });
    const wellOver = await failure(clients[1]!.kv('Put', { key: Buffer.from('big/1.9MiB'), value: Buffer.alloc(1.9 * 1024 * 1024, 0x62) }));
    expect(wellOver).toEqual({ code: INVALID_ARGUMENT, details: 'etcdserver: request is too large' });
    // Beyond the limit plus gRPC's slack, gRPC itself refuses the message, as in etcd.
    const huge = await failure(clients[2]!.kv('Put', { key: Buffer.from('big/4MiB'), value: Buffer.alloc(4 * 1024 * 1024, 0x63) }));
    expect(huge.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    const txn = await failure(clients[0]!.kv('Txn', {
      success: [{ request_put: { key: Buffer.from('big/txn'), value: Buffer.alloc(MAX_REQUEST_BYTES, 0x64) } }],
    }));
    expect(txn).toEqual({ code: INVALID_ARGUMENT, details: 'etcdserver: request is too large' });

    // A put of exactly the limit is accepted and replicated to every node.
    await put(0, 'big/at-limit', Buffer.alloc(atLimit, 0x65));
    for (let node = 0; node < 3; node++) {
      const response = await clients[node]!.kv('Range', { key: Buffer.from('big/'), range_end: Buffer.from('big0'), keys_only: true });
      expect((response.kvs as Array<{ key: Buffer }>).map((kv) => kv.key.toString())).toEqual(['big/at-limit']);
    }
    for (let node = 0; node < 3; node++) await stillServing(node, `oversized-${node}`);
  });

  it('refuses an empty key in put, range, delete and inside a txn', async () => {
    const notProvided = { code: INVALID_ARGUMENT, details: 'etcdserver: key is not provided' };
    expect(await failure(clients[0]!.kv('Put', { key: Buffer.alloc(0), value: Buffer.from('x') }))).toEqual(notProvided);
    expect(await failure(clients[0]!.kv('Put', { value: Buffer.from('x') }))).toEqual(notProvided);
    expect(await failure(clients[1]!.kv('Range', { key: Buffer.alloc(0) }))).toEqual(notProvided);
    expect(await failure(clients[2]!.kv('DeleteRange', { key: Buffer.alloc(0) }))).toEqual(notProvided);
    expect(await failure(clients[0]!.kv('Txn', { success: [{ request_put: { key: Buffer.alloc(0), value: Buffer.from('x') } }] }))).toEqual(notProvided);
    await stillServing(0, 'empty-key');
  });

  it('refuses reads of compacted and future revisions, and compactions of either', async () => {
    const first = await put(0, 'rev/k', 'one');
    const firstRevision = (first.header as { revision: number }).revision;
    const second = await put(1, 'rev/k', 'two');
    const compactAt = (second.header as { revision: number }).revision;
    await put(2, 'rev/k', 'three');
    await clients[0]!.kv('Compact', { revision: compactAt, physical: true });

    const compacted = { code: OUT_OF_RANGE, details: 'etcdserver: mvcc: required revision has been compacted' };
    const future = { code: OUT_OF_RANGE, details: 'etcdserver: mvcc: required revision is a future revision' };
    for (let node = 0; node < 3; node++) {
      for (const serializable of [false, true]) {
        expect(await failure(clients[node]!.kv('Range', { key: Buffer.from('rev/k'), revision: firstRevision, serializable }))).toEqual(compacted);
        expect(await failure(clients[node]!.kv('Range', { key: Buffer.from('rev/k'), revision: 1_000_000_000, serializable }))).toEqual(future);
      }
    }
    // The compaction revision itself is still readable, as in etcd.
    const atCompaction = await clients[1]!.kv('Range', { key: Buffer.from('rev/k'), revision: compactAt });
    expect((atCompaction.kvs as Array<{ value: Buffer }>).map((kv) => kv.value.toString())).toEqual(['two']);
    expect(await failure(clients[2]!.kv('Compact', { revision: compactAt }))).toEqual(compacted);
    expect(await failure(clients[2]!.kv('Compact', { revision: 1_000_000_000 }))).toEqual(future);
    for (let node = 0; node < 3; node++) await stillServing(node, `revisions-${node}`);
  });

  it('refuses a txn with a duplicate key, and accepts one key in both branches', async () => {
    const duplicate = { code: INVALID_ARGUMENT, details: 'etcdserver: duplicate key given in txn request' };
    const putOp = (key: string, value: string) => ({ request_put: { key: Buffer.from(key), value: Buffer.from(value) } });
    expect(await failure(clients[0]!.kv('Txn', { success: [putOp('dup/a', '1'), putOp('dup/a', '2')] }))).toEqual(duplicate);
    expect(await failure(clients[1]!.kv('Txn', { failure: [putOp('dup/a', '1'), { request_delete_range: { key: Buffer.from('dup/a') } }] }))).toEqual(duplicate);
    expect(await failure(clients[2]!.kv('Txn', {
      success: [putOp('dup/b', '1'), { request_delete_range: { key: Buffer.from('dup/'), range_end: Buffer.from('dup0') } }],
    }))).toEqual(duplicate);
    expect((await clients[0]!.kv('Range', { key: Buffer.from('dup/a') })).kvs).toEqual([]);

    const both = await clients[0]!.kv('Txn', { success: [putOp('dup/c', 'then')], failure: [putOp('dup/c', 'else')] });
    expect(both.succeeded).toBe(true);
    acknowledged.set('dup/c', Buffer.from('then').toString('base64'));
    await stillServing(0, 'duplicate-key');
  });

  it('refuses a txn with 129 operations or 129 compares, and accepts 128', async () => {
    const tooMany = { code: INVALID_ARGUMENT, details: 'etcdserver: too many operations in txn request' };
    const puts = (n: number) => Array.from({ length: n }, (_, i) => ({ request_put: { key: Buffer.from(`ops/${i}`), value: Buffer.from(`${i}`) } }));
    const compares = (n: number) => Array.from({ length: n }, (_, i) => ({ key: Buffer.from(`ops/${i}`), target: 'VERSION', result: 'EQUAL', version: 0 }));
    expect(await failure(clients[0]!.kv('Txn', { success: puts(129) }))).toEqual(tooMany);
    expect(await failure(clients[1]!.kv('Txn', { failure: puts(129) }))).toEqual(tooMany);
    expect(await failure(clients[2]!.kv('Txn', { compare: compares(129), success: puts(1) }))).toEqual(tooMany);
    expect((await clients[0]!.kv('Range', { key: Buffer.from('ops/'), range_end: Buffer.from('ops0'), count_only: true })).count).toBe(0);

    const full = await clients[1]!.kv('Txn', { compare: compares(128), success: puts(128) });
    expect(full.succeeded).toBe(true);
    expect((await clients[2]!.kv('Range', { key: Buffer.from('ops/'), range_end: Buffer.from('ops0'), count_only: true })).count).toBe(128);
    acknowledged.set('ops/127', Buffer.from('127').toString('base64'));
    await stillServing(1, 'too-many-ops');
  });

  it('keeps int64 fields exact past 2^53: revisions saturate into etcd\'s errors, ids never round onto another', async () => {
    const future = { code: OUT_OF_RANGE, details: 'etcdserver: mvcc: required revision is a future revision' };
    const compacted = { code: OUT_OF_RANGE, details: 'etcdserver: mvcc: required revision has been compacted' };
    const written = await put(0, 'int64/k', 'v');
    const revision = (written.header as { revision: number }).revision;
    const past53 = (2n ** 53n + 1n).toString();
    for (let node = 0; node < 3; node++) {
      for (const serializable of [false, true]) {
        expect(await failure(clients[node]!.kv('Range', { key: Buffer.from('int64/k'), revision: past53, serializable }))).toEqual(future);
        expect(await failure(clients[node]!.kv('Range', { key: Buffer.from('int64/k'), revision: (2n ** 63n - 1n).toString(), serializable }))).toEqual(future);
      }
      // Below -2^53 is still "the current revision", a limit past 2^53 still "no limit", as in etcd.
      const current = await clients[node]!.kv('Range', { key: Buffer.from('int64/'), range_end: Buffer.from('int640'), revision: (-(2n ** 63n)).toString(), limit: (2n ** 63n - 1n).toString() });
      expect((current.kvs as Array<{ value: Buffer }>).map((kv) => kv.value.toString())).toEqual(['v']);
    }
    // Inside a txn the read is checked when the txn is applied, on every replica: etcd's refusal,
    // not a node that stops on a revision it cannot represent.
    expect(await failure(clients[1]!.kv('Txn', { success: [{ request_range: { key: Buffer.from('int64/k'), revision: (2n ** 60n).toString() } }] }))).toEqual(future);
    expect(await failure(clients[2]!.kv('Compact', { revision: past53 }))).toEqual(future);
    expect(await failure(clients[2]!.kv('Compact', { revision: (-(2n ** 63n)).toString() }))).toEqual(compacted);
    expect(await failure(clients[0]!.maintenance('HashKV', { revision: past53 }))).toEqual(future);
    // A revision compare past 2^53 is greater than every revision: LESS holds, EQUAL does not.
    const less = await clients[0]!.kv('Txn', { compare: [{ key: Buffer.from('int64/k'), target: 'MOD', result: 'LESS', mod_revision: past53 }] });
    expect(less.succeeded).toBe(true);
    // Lease ids are exact: none of these was granted, so each is unknown, whatever its size.
    const leaseNotFound = { code: grpc.status.NOT_FOUND, details: 'etcdserver: requested lease not found' };
    for (const lease of [past53, (2n ** 63n - 1n).toString(), '-1', (-(2n ** 63n)).toString()]) {
      expect(await failure(clients[0]!.kv('Put', { key: Buffer.from('int64/k'), value: Buffer.from('x'), lease }))).toEqual(leaseNotFound);
    }
    const leaseLess = await clients[0]!.kv('Txn', { compare: [{ key: Buffer.from('int64/k'), target: 'LEASE', result: 'LESS', lease: (2n ** 63n - 1n).toString() }] });
    expect(leaseLess.succeeded).toBe(true);

    // Member ids are below 2^53; one past it names no member (compared exactly, never rounded).
    const memberNotFound = { code: grpc.status.NOT_FOUND, details: 'etcdserver: member not found' };
    const members = (await clients[0]!.call('etcdserverpb.Cluster', 'MemberList', {})).members as Array<{ ID: number }>;
    for (const member of members) {
      for (const id of [(2n ** 53n + BigInt(member.ID)).toString(), (2n ** 64n - 1n - BigInt(member.ID)).toString()]) {
        expect(await failure(clients[1]!.call('etcdserverpb.Cluster', 'MemberRemove', { ID: id }))).toEqual(memberNotFound);
        expect(await failure(clients[1]!.call('etcdserverpb.Cluster', 'MemberPromote', { ID: id }))).toEqual(memberNotFound);
        expect(await failure(clients[1]!.call('etcdserverpb.Cluster', 'MemberUpdate', { ID: id, peerURLs: ['http://127.0.0.1:1'] }))).toEqual(memberNotFound);
        // MoveLeader: the leader says bad transferee, the others that they are not the leader.
        for (let node = 0; node < 3; node++) {
          const moved = await failure(clients[node]!.maintenance('MoveLeader', { targetID: id }));
          expect(['etcdserver: bad leader transferee', 'etcdserver: not leader']).toContain(moved.details);
        }
      }
    }
    expect(((await clients[2]!.call('etcdserverpb.Cluster', 'MemberList', {})).members as unknown[]).length).toBe(3);

    // Watch ids: a client-chosen id must be a safe integer (refused otherwise, never folded onto
    // another); a negative one is echoed exactly on events.
    const watch = new WatchClient(cluster.endpoint(0));
    try {
      watch.create({ key: 'int64/k', watchId: past53 });
      watch.create({ key: 'int64/k', watchId: -5, startRevision: revision });
      await watch.waitFor((rs) => rs.some((r) => r.canceled === true) && rs.some((r) => r.watch_id === -5 && ((r.events as unknown[]) ?? []).length > 0));
      const refused = watch.responses.find((r) => r.canceled === true)!;
      expect([refused.watch_id, refused.cancel_reason]).toEqual([-1, 'dkv: invalid argument: watch_id is not a safe integer (|v| < 2^53)']);
      expect(watch.events(-5).map((e) => [e.key, e.value, e.modRevision])).toEqual([['int64/k', 'v', revision]]);
      // Cancelling an id past 2^53 cancels nothing.
      watch.cancel(past53);
      watch.cancel(-5);
      await watch.waitFor((rs) => rs.filter((r) => r.canceled === true).length === 2);
      expect(watch.responses.filter((r) => r.canceled === true).map((r) => r.watch_id)).toEqual([-1, -5]);
    } finally {
      watch.close();
    }
    for (let node = 0; node < 3; node++) await stillServing(node, `int64-${node}`);
  });

  it('answers a KV call whose body is not protobuf with an error and keeps serving', async () => {
    const client = etcdChannel(cluster.endpoint(0));
    try {
      for (const [label, body] of [['random', garbage(3, 300)], ['truncated', Buffer.from([0x0a, 0x7f, 0x61])]] as const) {
        const error = await new Promise<grpc.ServiceError | null>((resolve) => {
          client.unaryBytes(methodPath('etcdserverpb.KV', 'Put'), body, 5000, (e) => resolve(e));
        });
        expect(error, `a put whose body is ${label} bytes`).not.toBeNull();
        expect(error!.code, error!.details).not.toBe(grpc.status.DEADLINE_EXCEEDED);
      }
    } finally {
      client.close();
    }
    await stillServing(0, 'bad-protobuf');
  });

  for (const [label, payload] of rawPayloads) {
    it(`survives ${label} on a client port and on a peer port`, async () => {
      const node = label.length % 3;
      const onClient = await sendRaw(cluster.nodes[node]!.clientPort, payload);
      const onPeer = await sendRaw(cluster.nodes[node]!.peerPort, payload);
      console.log(`[bad-input] ${label}: client port replied ${onClient.received.length} B, closed by server ${onClient.closedByServer}; ` +
        `peer port replied ${onPeer.received.length} B, closed by server ${onPeer.closedByServer}`);
      expect(onClient.closedByServer, 'the client port hangs up on garbage').toBe(true);
      expect(onPeer.closedByServer, 'the peer port hangs up on garbage').toBe(true);
      await stillServing(node, `raw-${label}`);
    });
  }

  it('survives garbage frames on a well-formed peer link, and Raft keeps replicating', async () => {
    const node = 2;
    const link = dialRaw(cluster.nodes[node]!.peerPort);
    try {
      link.sendFrame(garbage(4, 1000));
      link.sendFrame(Buffer.alloc(0));
      link.sendFrame(garbage(5, 70_000));
      const ended = link.ended.then((end) => (end === 'closed' ? 'closed' : `close ${end.code}: ${end.details}`));
      const outcome = await Promise.race([ended, new Promise<string>((resolve) => setTimeout(() => resolve('still open'), 8000))]);
      console.log(`[bad-input] garbage peer link: ${outcome}`);
      expect(outcome, 'the node ends a peer link that sends garbage').not.toBe('still open');
    } finally {
      link.destroy();
    }
    await stillServing(node, 'peer-stream-garbage');
    // Replication through the node still works: all three agree on one hash at one revision.
    const last = await put(0, 'after/peer-garbage-final', 'x');
    const revision = (last.header as { revision: number }).revision;
    await waitUntil(async () => {
      const hashes = await Promise.all(clients.map((c) => c.maintenance('HashKV', { revision }).catch(() => undefined)));
      return hashes.every((h) => h !== undefined && h.hash === hashes[0]!.hash);
    }, 10_000, () => `equal HashKV at ${revision}`);
  });
});
