/**
 * A client's GOAWAY (src/server/client-goaway.ts): raw HTTP/2 sessions send GOAWAY and go on
 * using the connection, against one DKV node and the real etcd side by side. A call queued when
 * the client closes its session — the sequence a grpc-js channel close sends: GOAWAY, then the
 * queued HEADERS — and calls opened while one of the client's streams is open get a normal gRPC
 * answer from both (Node's HTTP/2 core alone refuses them: REFUSED_STREAM), and a watch open at
 * the time keeps delivering events. DKV then closes the idle connection (Node stops reading it),
 * and still stops promptly with such a session open.
 */
import { connect as tcpConnect } from 'node:net';
import { constants as http2Constants } from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { etcdType } from '../../src/etcd-proto.js';
import { RealEtcd, TestCluster, etcdChannel, waitUntil } from './cluster-harness.js';
import { type RawOutcome, RawSession, grpcFramed, sessionCloseMsMax } from './raw-grpc.js';

/** How long a watch event may take to arrive after the Put that caused it. */
const watchEventMsMax = 5000;
/** How long a node may take to stop (SIGTERM) with a client's session still open: its shutdown grace and then some. */
const nodeStopMsMax = 10_000;
/** An HTTP/2 frame header: 3 length bytes, type, flags, 4 stream id bytes (RFC 9113 §4.1). */
const http2FrameHeaderBytes = 9;
const frameTypeSettings = 0x4;
const frameTypeGoaway = 0x7;
const clientPreface = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n';

/** A connection-level frame (stream 0, no flags); a GOAWAY of 8 zero bytes is last stream 0, NO_ERROR. */
function http2Frame(type: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(http2FrameHeaderBytes);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  return Buffer.concat([header, payload]);
}

const rangeRequest = etcdType('etcdserverpb.RangeRequest');
const rangeResponse = etcdType('etcdserverpb.RangeResponse');
const watchRequest = etcdType('etcdserverpb.WatchRequest');
const watchResponse = etcdType('etcdserverpb.WatchResponse');

const key = Buffer.from('client-goaway/key');

let cluster: TestCluster;
let etcd: RealEtcd;

beforeAll(async () => {
  [cluster, etcd] = await Promise.all([TestCluster.start({ nodes: 1 }), RealEtcd.start()]);
  for (const endpoint of [cluster.endpoint(0), etcd.endpoint]) {
    const channel = etcdChannel(endpoint);
    try {
      await channel.kv('Put', { key, value: Buffer.from('v') });
    } finally {
      channel.close();
    }
  }
}, 60_000);

afterAll(async () => {
  await Promise.all([cluster?.stop(), etcd?.stop()]);
});

/** A Range of `key`, sent whole (HEADERS, DATA, end of stream) at once. */
function range(raw: RawSession): Promise<RawOutcome> {
  return raw.unary('/etcdserverpb.KV/Range', rangeRequest.encode({ key }).finish());
}

/** The answer a Range of `key` gets from a server that served it: status OK and the one key. */
function expectServedRange(outcome: RawOutcome): void {
  expect({ grpcStatus: outcome.grpcStatus, rstCode: outcome.rstCode, messages: outcome.messages.length }).toEqual({
    grpcStatus: 0,
    rstCode: http2Constants.NGHTTP2_NO_ERROR,
    messages: 1,
  });
  expect(Number(rangeResponse.decode(outcome.messages[0]!).toJSON()['count'])).toBe(1);
}

const servers = [
  { name: 'etcd', endpoint: () => etcd.endpoint },
  { name: 'DKV', endpoint: () => cluster.endpoint(0) },
];

describe.each(servers)("a client's GOAWAY on $name", ({ endpoint }) => {
  it('answers a call queued as the client closes its session (its HEADERS follow the GOAWAY)', async () => {
    const raw = await RawSession.open(endpoint());
    expectServedRange(await range(raw));
    const queued = range(raw);
    raw.session.close();
    expectServedRange(await queued);
    // (DKV, unlike etcd, then closes the idle connection too: a GOAWAY may cross the client's close.)
    await raw.closed('the client to close its session once its call was answered');
  });

  it('answers a call sent right after the GOAWAY, in the same write', async () => {
    const raw = await RawSession.open(endpoint());
    try {
      raw.goaway();
      expectServedRange(await range(raw));
    } finally {
      raw.session.destroy();
    }
  });

  it('keeps a watch open at the time delivering events, and serves calls opened meanwhile', async () => {
    const raw = await RawSession.open(endpoint());
    const channel = etcdChannel(endpoint());
    try {
      const responses: Array<{ created: boolean; events: number }> = [];
      const { stream } = raw.open('/etcdserverpb.Watch/Watch', (message) => {
        const response = watchResponse.decode(message).toJSON() as { created?: boolean; events?: unknown[] };
        responses.push({ created: response.created === true, events: response.events?.length ?? 0 });
      });
      stream.write(grpcFramed(watchRequest.encode({ create_request: { key } }).finish()));
      await waitUntil(() => responses.some((r) => r.created), watchEventMsMax, () => 'the watch to be created');
      raw.goaway();
      expectServedRange(await range(raw));
      await channel.kv('Put', { key, value: Buffer.from('after goaway') });
      await waitUntil(() => responses.some((r) => r.events > 0), watchEventMsMax, () => 'the event of a Put made after the GOAWAY');
      expectServedRange(await range(raw));
      expect(stream.closed).toBe(false);
      expect(raw.goawaysReceived).toEqual([]);
    } finally {
      channel.close();
      raw.session.destroy();
    }
  });
});

describe("a DKV node's connections after a client's GOAWAY", () => {
  it('closes a connection once the client went away and has no stream open', async () => {
    // Node's own client stops reading once it sent GOAWAY with no stream open (nghttp2's rule),
    // so this one speaks HTTP/2 over a bare socket: the preface, SETTINGS, GOAWAY, then listens.
    const [host, port] = cluster.endpoint(0).split(':') as [string, string];
    const socket = tcpConnect(Number(port), host);
    const frameTypes: number[] = [];
    let received: Buffer = Buffer.alloc(0);
    let closed = false;
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      while (received.length >= http2FrameHeaderBytes && received.length >= http2FrameHeaderBytes + received.readUIntBE(0, 3)) {
        frameTypes.push(received[3]!);
        received = received.subarray(http2FrameHeaderBytes + received.readUIntBE(0, 3));
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => (closed = true));
    try {
      socket.write(Buffer.concat([Buffer.from(clientPreface), http2Frame(frameTypeSettings, Buffer.alloc(0)), http2Frame(frameTypeGoaway, Buffer.alloc(8))]));
      await waitUntil(() => closed, sessionCloseMsMax, () => 'the node to close the connection of a client that went away');
      expect(frameTypes).toContain(frameTypeGoaway);
    } finally {
      socket.destroy();
    }
  });

  it("still closes a session at the node's own shutdown, and the node stops promptly", async () => {
    const raw = await RawSession.open(cluster.endpoint(0));
    const { stream } = raw.open('/etcdserverpb.Watch/Watch');
    stream.write(grpcFramed(watchRequest.encode({ create_request: { key } }).finish()));
    raw.goaway();
    expectServedRange(await range(raw));
    const started = Date.now();
    await cluster.stop();
    expect(Date.now() - started).toBeLessThan(nodeStopMsMax);
    await raw.closed('the stopped node to close the connection');
    expect(raw.goawaysReceived.length).toBeGreaterThan(0);
  });
});
