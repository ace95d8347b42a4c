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
import { type ClientHttp2Session, type ClientHttp2Stream, connect as http2Connect, constants as http2Constants } from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { etcdType } from '../../src/etcd-proto.js';
import { RealEtcd, TestCluster, etcdChannel, waitUntil } from './cluster-harness.js';

/** A call's deadline (sent as grpc-timeout): an answer from a healthy local server comes far sooner. */
const callDeadlineMs = 5000;
/** How long a watch event may take to arrive after the Put that caused it. */
const watchEventMsMax = 5000;
/** How long a node may take to stop (SIGTERM) with a client's session still open: its shutdown grace and then some. */
const nodeStopMsMax = 10_000;
/** How long a connection may stay open once it has nothing left to do (server or client closing it). */
const sessionCloseMsMax = 5000;
/** gRPC's length-prefixed message: 1 flag byte, 4 length bytes. */
const grpcFrameHeaderBytes = 5;
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

function framed(message: Uint8Array): Buffer {
  const header = Buffer.alloc(grpcFrameHeaderBytes);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}

/** Splits gRPC length-prefixed messages off the front of `buffer`; the rest stays for more data. */
function deframe(buffer: Buffer): { messages: Buffer[]; rest: Buffer } {
  const messages: Buffer[] = [];
  let offset = 0;
  while (buffer.length - offset >= grpcFrameHeaderBytes) {
    const length = buffer.readUInt32BE(offset + 1);
    if (buffer.length - offset - grpcFrameHeaderBytes < length) break;
    messages.push(buffer.subarray(offset + grpcFrameHeaderBytes, offset + grpcFrameHeaderBytes + length));
    offset += grpcFrameHeaderBytes + length;
  }
  return { messages, rest: buffer.subarray(offset) };
}

/** How a raw call ended: its gRPC status (undefined when the stream was reset) and messages. */
interface RawOutcome {
  readonly grpcStatus: number | undefined;
  readonly rstCode: number;
  readonly messages: Buffer[];
}

/** One HTTP/2 connection, driven frame by frame; remembers every GOAWAY the server sent. */
class RawSession {
  readonly goawaysReceived: number[] = [];
  private isClosed = false;

  private constructor(readonly session: ClientHttp2Session) {
    session.on('goaway', (code: number) => this.goawaysReceived.push(code));
    session.on('error', () => undefined);
    session.once('close', () => (this.isClosed = true));
  }

  /** Waits for the connection to be closed (by either side). */
  closed(what: string): Promise<void> {
    return waitUntil(() => this.isClosed, sessionCloseMsMax, () => what);
  }

  static async open(endpoint: string): Promise<RawSession> {
    const session = http2Connect(`http://${endpoint}`);
    await new Promise<void>((resolve, reject) => {
      session.once('connect', () => resolve());
      session.once('error', reject);
    });
    return new RawSession(session);
  }

  /** Opens a call; `onMessage` sees each response message as it arrives. */
  open(path: string, onMessage: (message: Buffer) => void = () => undefined): { stream: ClientHttp2Stream; outcome: Promise<RawOutcome> } {
    const stream = this.session.request({
      [http2Constants.HTTP2_HEADER_METHOD]: 'POST',
      [http2Constants.HTTP2_HEADER_PATH]: path,
      [http2Constants.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
      te: 'trailers',
      'grpc-timeout': `${callDeadlineMs}m`,
    });
    const outcome = new Promise<RawOutcome>((resolve) => {
      let grpcStatus: number | undefined;
      let pending: Buffer = Buffer.alloc(0);
      const messages: Buffer[] = [];
      const readStatus = (headers: Record<string, unknown>): void => {
        if (headers['grpc-status'] !== undefined) grpcStatus = Number(headers['grpc-status']);
      };
      stream.on('response', readStatus);
      stream.on('trailers', readStatus);
      stream.on('data', (chunk: Buffer) => {
        const { messages: arrived, rest } = deframe(Buffer.concat([pending, chunk]));
        pending = rest;
        for (const message of arrived) {
          messages.push(message);
          onMessage(message);
        }
      });
      stream.on('error', () => undefined);
      stream.on('close', () => resolve({ grpcStatus, rstCode: stream.rstCode ?? 0, messages }));
    });
    return { stream, outcome };
  }

  /** A Range of `key`, sent whole (HEADERS, DATA, end of stream) at once. */
  range(): Promise<RawOutcome> {
    const { stream, outcome } = this.open('/etcdserverpb.KV/Range');
    stream.end(framed(rangeRequest.encode({ key }).finish()));
    return outcome;
  }

  /** Sends a GOAWAY with NO_ERROR and keeps the session open (what a client does before its last calls). */
  goaway(): void {
    this.session.goaway(http2Constants.NGHTTP2_NO_ERROR);
  }
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
    expectServedRange(await raw.range());
    const queued = raw.range();
    raw.session.close();
    expectServedRange(await queued);
    // (DKV, unlike etcd, then closes the idle connection too: a GOAWAY may cross the client's close.)
    await raw.closed('the client to close its session once its call was answered');
  });

  it('answers a call sent right after the GOAWAY, in the same write', async () => {
    const raw = await RawSession.open(endpoint());
    try {
      raw.goaway();
      expectServedRange(await raw.range());
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
      stream.write(framed(watchRequest.encode({ create_request: { key } }).finish()));
      await waitUntil(() => responses.some((r) => r.created), watchEventMsMax, () => 'the watch to be created');
      raw.goaway();
      expectServedRange(await raw.range());
      await channel.kv('Put', { key, value: Buffer.from('after goaway') });
      await waitUntil(() => responses.some((r) => r.events > 0), watchEventMsMax, () => 'the event of a Put made after the GOAWAY');
      expectServedRange(await raw.range());
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
    stream.write(framed(watchRequest.encode({ create_request: { key } }).finish()));
    raw.goaway();
    expectServedRange(await raw.range());
    const started = Date.now();
    await cluster.stop();
    expect(Date.now() - started).toBeLessThan(nodeStopMsMax);
    await raw.closed('the stopped node to close the connection');
    expect(raw.goawaysReceived.length).toBeGreaterThan(0);
  });
});
