/**
 * Unary calls served straight from Node's HTTP/2 streams (direct-unary.ts), on a real grpc-js
 * server over loopback. grpc-js is given one implementation of etcd's KV service and DirectUnary
 * another, each answering with its own revision, so each test sees which of the two answered:
 * what DirectUnary takes it must answer as grpc-js would (headers, trailers, each failure's
 * status code; the module's comment lists where the words differ), and what it leaves (streams, unknown paths, compressed requests, bad headers) must
 * reach grpc-js untouched. Requests go over a raw HTTP/2 client, so each frame is the test's own.
 */
import { EventEmitter } from 'node:events';
import { connect, constants as http2Constants, type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { gzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { etcdType } from '../../src/etcd-proto.js';
import { onClientHttp2Servers } from '../../src/server/client-sessions.js';
import { DirectUnary, directUnaryStatus, grpcTimeoutMs } from '../../src/server/direct-unary.js';
import { type Incoming, serviceDefinition } from '../../src/server/grpc-service.js';
import { waitUntil } from './cluster-harness.js';

const rangePath = '/etcdserverpb.KV/Range';
const rangeRequest = etcdType('etcdserverpb.RangeRequest');
const rangeResponse = etcdType('etcdserverpb.RangeResponse');
/** The limit DirectUnary is given (grpc-js gets the same). */
const maxReceiveMessageBytes = 64 * 1024;
/** The revision each side answers with. */
const grpcJsRevision = 1;
const directRevision = 2;

type UnaryCall = grpc.ServerUnaryCall<Incoming<{ key?: Uint8Array }>, object>;

/** What the direct implementation's handler does with each call (a test sets it). */
let behaviour: (call: UnaryCall, callback: grpc.sendUnaryData<object>) => void;
/** Every call the direct implementation's handler was given. */
const directCalls: UnaryCall[] = [];

function answerWith(revision: number) {
  return (call: UnaryCall, callback: grpc.sendUnaryData<object>): void => callback(null, { header: { revision }, count: call.request.message.key?.length ?? 0 });
}

let server: grpc.Server;
let port: number;
let session: ClientHttp2Session | undefined;

beforeAll(async () => {
  const definition = serviceDefinition('etcdserverpb.KV');
  server = new grpc.Server({ 'grpc.max_receive_message_length': maxReceiveMessageBytes });
  const direct = new DirectUnary({ maxReceiveMessageBytes });
  onClientHttp2Servers(server, (http2Server) => direct.attach(http2Server));
  server.addService(definition, { Range: answerWith(grpcJsRevision) });
  direct.add(definition, {
    Range: (call: UnaryCall, callback: grpc.sendUnaryData<object>) => {
      directCalls.push(call);
      behaviour(call, callback);
    },
  });
  port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))));
});

afterAll(() => {
  server?.forceShutdown();
});

afterEach(() => {
  session?.destroy();
  session = undefined;
  directCalls.length = 0;
});

/** The test's connection, opened on first use. */
function open(): ClientHttp2Session {
  if (session !== undefined) return session;
  const opened = connect(`http://127.0.0.1:${port}`);
  opened.on('error', () => undefined);
  session = opened;
  return opened;
}

/** A gRPC message: the flag byte, the length, the bytes. */
function framed(message: Uint8Array, flag = 0): Buffer {
  const frame = Buffer.alloc(5 + message.byteLength);
  frame[0] = flag;
  frame.writeUInt32BE(message.byteLength, 1);
  frame.set(message, 5);
  return frame;
}

const rangeBytes = (key: string): Uint8Array => rangeRequest.encode({ key: Buffer.from(key) }).finish();

interface Answer {
  readonly headers: IncomingHttpHeaders;
  readonly trailers: IncomingHttpHeaders;
  readonly body: Buffer;
  /** The status, from the trailers or (trailers-only) the headers. */
  readonly status: number;
  readonly message: string;
  readonly revision: number | undefined;
}

/** Sends one request whose DATA is `chunks` (each written in turn) and reads the whole answer. */
async function call(chunks: readonly Buffer[], headers: OutgoingHttpHeaders = {}, path = rangePath): Promise<Answer> {
  const stream = open().request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...headers });
  for (const chunk of chunks) stream.write(chunk);
  stream.end();
  let responseHeaders: IncomingHttpHeaders = {};
  let trailers: IncomingHttpHeaders = {};
  const body: Buffer[] = [];
  stream.on('response', (h) => (responseHeaders = h));
  stream.on('trailers', (t) => (trailers = t));
  stream.on('data', (chunk: Buffer) => body.push(chunk));
  await new Promise<void>((resolve, reject) => {
    stream.on('close', resolve);
    stream.on('error', reject);
  });
  const bytes = Buffer.concat(body);
  const statusOf = trailers['grpc-status'] ?? responseHeaders['grpc-status'];
  const messageOf = trailers['grpc-message'] ?? responseHeaders['grpc-message'];
  const decoded = bytes.length >= 5 ? (rangeResponse.toObject(rangeResponse.decode(bytes.subarray(5)), { longs: Number }) as { header?: { revision?: number } }) : undefined;
  return {
    headers: responseHeaders,
    trailers,
    body: bytes,
    status: Number(statusOf),
    message: decodeURIComponent(String(messageOf ?? '')),
    revision: decoded?.header?.revision,
  };
}

describe('DirectUnary: the unary calls it takes', () => {
  it("answers a registered unary method with its own handler, with grpc-js's headers and trailers", async () => {
    behaviour = answerWith(directRevision);
    const answer = await call([framed(rangeBytes('abc'))]);
    expect(answer.revision).toBe(directRevision);
    expect(answer.status).toBe(grpc.status.OK);
    expect(answer.message).toBe('OK');
    expect(answer.headers[':status']).toBe(200);
    expect(answer.headers['content-type']).toBe('application/grpc+proto');
    expect(answer.headers['grpc-encoding']).toBe('identity');
    expect(answer.headers['grpc-accept-encoding']).toBe('identity,deflate,gzip');
    expect(answer.headers['grpc-status']).toBeUndefined();
    // The message is the handler's response, framed once.
    expect(answer.body.readUInt32BE(1)).toBe(answer.body.length - 5);
    expect(directCalls).toHaveLength(1);
    expect(Buffer.from(directCalls[0]!.request.raw)).toEqual(Buffer.from(rangeBytes('abc')));
  });

  it('reads a request split over many DATA frames, and keeps a copy of just its message', async () => {
    behaviour = answerWith(directRevision);
    const key = 'k'.repeat(40_000);
    const whole = framed(rangeBytes(key));
    const chunks: Buffer[] = [];
    for (let at = 0; at < whole.length; at += 1000) chunks.push(whole.subarray(at, at + 1000));
    const answer = await call(chunks);
    expect(answer.status).toBe(grpc.status.OK);
    const raw = directCalls[0]!.request.raw;
    expect(Buffer.from(raw)).toEqual(Buffer.from(rangeBytes(key)));
    // Not a view of a larger buffer (the frame it arrived in).
    expect(raw.buffer.byteLength).toBe(raw.byteLength);
  });

  it('gives the handler the metadata grpc-js would (transport headers left out), the peer, no deadline', async () => {
    let peerWhileServed = '';
    behaviour = (call, callback) => {
      peerWhileServed = call.getPeer();
      answerWith(directRevision)(call, callback);
    };
    const client = open();
    await call([framed(rangeBytes('a'))], { token: 'secret', 'x-request-id': 'req-7', 'trace-bin': Buffer.from([1, 2, 3]).toString('base64') });
    const seen = directCalls[0]!;
    expect(peerWhileServed).toBe(`127.0.0.1:${client.socket.localPort}`);
    expect(seen.metadata.get('token')).toEqual(['secret']);
    expect(seen.metadata.get('x-request-id')).toEqual(['req-7']);
    expect(seen.metadata.get('trace-bin')).toEqual([Buffer.from([1, 2, 3])]);
    for (const transport of ['content-type', 'te', 'grpc-timeout', 'grpc-encoding']) expect(seen.metadata.get(transport)).toEqual([]);
    expect(seen.getPeer()).toBe(`127.0.0.1:${client.socket.localPort}`);
    expect(seen.getDeadline()).toBe(Infinity);
    expect(seen.getAuthContext()).toEqual({});
    expect(seen.cancelled).toBe(false);
  });

  it("answers a handler's error as grpc-js does: its code, its details percent-encoded, its metadata", async () => {
    behaviour = (_call, callback) => {
      const metadata = new grpc.Metadata();
      metadata.set('why', 'because');
      callback({ code: grpc.status.FAILED_PRECONDITION, details: 'etcdserver: key not found — ключ', metadata, name: 'Error', message: 'x' });
    };
    const answer = await call([framed(rangeBytes('a'))]);
    expect(answer.status).toBe(grpc.status.FAILED_PRECONDITION);
    expect(answer.message).toBe('etcdserver: key not found — ключ');
    // Trailers-only: the status and the error's metadata in the one HEADERS frame.
    expect(answer.headers['grpc-status']).toBe(String(grpc.status.FAILED_PRECONDITION));
    expect(answer.headers.why).toBe('because');
    expect(answer.body.length).toBe(0);
  });

  it('answers an error without a code UNKNOWN with its message, and a handler that throws UNKNOWN', async () => {
    behaviour = (_call, callback) => callback(new Error('plain failure'));
    expect(await call([framed(rangeBytes('a'))])).toMatchObject({ status: grpc.status.UNKNOWN, message: 'plain failure' });
    behaviour = () => {
      throw new Error('thrown');
    };
    expect(await call([framed(rangeBytes('a'))])).toMatchObject({ status: grpc.status.UNKNOWN, message: directUnaryStatus.threw().details });
  });

  it("answers a success's trailing metadata in the trailers, and an 'error' event with its status", async () => {
    behaviour = (_call, callback) => {
      const trailer = new grpc.Metadata();
      trailer.set('served-by', 'direct');
      callback(null, { header: { revision: directRevision } }, trailer);
    };
    const answer = await call([framed(rangeBytes('a'))]);
    expect(answer).toMatchObject({ status: grpc.status.OK, revision: directRevision });
    expect(answer.trailers['served-by']).toBe('direct');
    behaviour = (call) => (call as unknown as EventEmitter).emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details: 'etcdserver: too many requests' });
    expect(await call([framed(rangeBytes('a'))])).toMatchObject({ status: grpc.status.RESOURCE_EXHAUSTED, message: 'etcdserver: too many requests' });
  });

  it('reads a message whose prefix itself is split over DATA frames', async () => {
    behaviour = answerWith(directRevision);
    const whole = framed(rangeBytes('split'));
    const chunks: Buffer[] = [];
    for (let at = 0; at < whole.length; at += 2) chunks.push(whole.subarray(at, at + 2));
    expect(await call(chunks)).toMatchObject({ status: grpc.status.OK, revision: directRevision });
    expect(Buffer.from(directCalls[0]!.request.raw)).toEqual(Buffer.from(rangeBytes('split')));
  });

  it('answers once: a second callback, or one after an error, is ignored', async () => {
    behaviour = (call, callback) => {
      callback(null, { header: { revision: directRevision } });
      callback(null, { header: { revision: 99 } });
      callback({ code: grpc.status.INTERNAL, details: 'late', name: 'Error', message: 'late' });
    };
    const answer = await call([framed(rangeBytes('a'))]);
    expect(answer).toMatchObject({ status: grpc.status.OK, revision: directRevision });
  });
});

describe("DirectUnary: a request it refuses, with grpc-js's status code", () => {
  it('a message over the limit, as soon as its length arrives (the handler never runs)', async () => {
    behaviour = answerWith(directRevision);
    const prefix = Buffer.from([0, 0, 0, 0, 0]);
    prefix.writeUInt32BE(maxReceiveMessageBytes + 1, 1);
    const answer = await call([prefix]);
    expect(answer).toMatchObject({ status: grpc.status.RESOURCE_EXHAUSTED, message: directUnaryStatus.tooLarge(maxReceiveMessageBytes + 1, maxReceiveMessageBytes).details });
    expect(directCalls).toHaveLength(0);
  });

  it('a message at the limit is read', async () => {
    behaviour = answerWith(directRevision);
    // A key of n bytes encodes to n + 1 + the varint of n (3 bytes here).
    const message = rangeBytes('k'.repeat(maxReceiveMessageBytes - 4));
    expect(message.byteLength).toBe(maxReceiveMessageBytes);
    expect(await call([framed(message)])).toMatchObject({ status: grpc.status.OK, revision: directRevision });
  });

  it('no message, a truncated message, or a second message', async () => {
    behaviour = answerWith(directRevision);
    expect(await call([])).toMatchObject({ status: grpc.status.UNIMPLEMENTED, message: directUnaryStatus.noMessage(rangePath).details });
    expect(await call([framed(rangeBytes('abc')).subarray(0, 7)])).toMatchObject({ status: grpc.status.UNIMPLEMENTED, message: directUnaryStatus.noMessage(rangePath).details });
    expect(await call([framed(rangeBytes('a')), framed(rangeBytes('b'))])).toMatchObject({ status: grpc.status.UNIMPLEMENTED, message: directUnaryStatus.secondMessage(rangePath).details });
    expect(directCalls).toHaveLength(0);
  });

  it('a message flagged compressed on a call that names no encoding, and bytes that do not decode', async () => {
    behaviour = answerWith(directRevision);
    expect(await call([framed(rangeBytes('a'), 1)])).toMatchObject({ status: grpc.status.INTERNAL, message: directUnaryStatus.compressedFlag().details });
    // Field 1 as a length-delimited value that runs past the end.
    expect(await call([framed(Buffer.from([0x0a, 0x7f, 0x01]))])).toMatchObject({ status: grpc.status.INTERNAL, message: directUnaryStatus.undecodable().details });
    expect(directCalls).toHaveLength(0);
  });
});

describe('DirectUnary: deadlines and cancellation', () => {
  it("answers DEADLINE_EXCEEDED at the client's grpc-timeout, tells the handler ('cancelled'), and drops its late answer", async () => {
    let late: (() => void) | undefined;
    behaviour = (call, callback) => {
      late = () => callback(null, { header: { revision: directRevision } });
    };
    const startedAt = Date.now();
    const answer = await call([framed(rangeBytes('a'))], { 'grpc-timeout': '100m' });
    expect(answer).toMatchObject({ status: grpc.status.DEADLINE_EXCEEDED, message: directUnaryStatus.deadline().details });
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(90);
    const seen = directCalls[0]!;
    expect(seen.cancelled).toBe(true);
    expect(seen.getDeadline()).toBeGreaterThanOrEqual(startedAt + 100);
    late!();
  });

  it("emits 'cancelled' when the client resets the stream before the answer", async () => {
    behaviour = () => undefined;
    const stream = open().request({ ':method': 'POST', ':path': rangePath, 'content-type': 'application/grpc' });
    stream.on('error', () => undefined);
    stream.end(framed(rangeBytes('a')));
    await waitUntil(() => directCalls.length === 1, 5_000, () => 'the handler was called');
    const seen = directCalls[0]! as unknown as EventEmitter & { cancelled: boolean };
    const cancelled = new Promise<void>((resolve) => seen.once('cancelled', () => resolve()));
    stream.close(http2Constants.NGHTTP2_CANCEL);
    await cancelled;
    expect(seen.cancelled).toBe(true);
  });

  it('runs no handler for a stream the client resets before its half-close', async () => {
    behaviour = answerWith(directRevision);
    const stream = open().request({ ':method': 'POST', ':path': rangePath, 'content-type': 'application/grpc' });
    stream.on('error', () => undefined);
    stream.write(framed(rangeBytes('a')));
    await new Promise((resolve) => setImmediate(resolve));
    // destroy() sends RST_STREAM alone (close() would end the stream first: a half-close).
    const closed = new Promise<void>((resolve) => stream.on('close', resolve));
    stream.destroy();
    await closed;
    // The connection still serves, and the reset call never reached the handler.
    expect(await call([framed(rangeBytes('b'))])).toMatchObject({ status: grpc.status.OK, revision: directRevision });
    expect(directCalls.map((c) => Buffer.from(c.request.raw).toString('latin1'))).toEqual([Buffer.from(rangeBytes('b')).toString('latin1')]);
  });
});

describe('DirectUnary: what it leaves to grpc-js', () => {
  it('a request compressed with gzip (grpc-js decompresses it)', async () => {
    behaviour = answerWith(directRevision);
    const answer = await call([framed(gzipSync(rangeBytes('a')), 1)], { 'grpc-encoding': 'gzip' });
    expect(answer).toMatchObject({ status: grpc.status.OK, revision: grpcJsRevision });
    expect(directCalls).toHaveLength(0);
  });

  it('an unknown method (UNIMPLEMENTED), a bad grpc-timeout (INTERNAL), a content-type not gRPC (415)', async () => {
    behaviour = answerWith(directRevision);
    const unknown = await call([framed(rangeBytes('a'))], {}, '/etcdserverpb.KV/Nothing');
    expect(unknown.status).toBe(grpc.status.UNIMPLEMENTED);
    const badTimeout = await call([framed(rangeBytes('a'))], { 'grpc-timeout': 'soon' });
    expect(badTimeout).toMatchObject({ status: grpc.status.INTERNAL, message: 'Invalid grpc-timeout value "soon"' });
    const notGrpc = await call([framed(rangeBytes('a'))], { 'content-type': 'text/plain' });
    expect(notGrpc.headers[':status']).toBe(415);
    expect(directCalls).toHaveLength(0);
  });
});

describe('grpcTimeoutMs', () => {
  it("reads gRPC's units as grpc-js does, and takes nothing outside gRPC's form (grpc-js reads that)", () => {
    expect(grpcTimeoutMs('2H')).toBe(7_200_000);
    expect(grpcTimeoutMs('3M')).toBe(180_000);
    expect(grpcTimeoutMs('4S')).toBe(4000);
    expect(grpcTimeoutMs('250m')).toBe(250);
    expect(grpcTimeoutMs('1500u')).toBe(1);
    expect(grpcTimeoutMs('999999n')).toBe(0);
    expect(grpcTimeoutMs('4999999m')).toBe(4_999_999);
    expect(grpcTimeoutMs('soon')).toBeUndefined();
    for (const loose of ['123456789m', ' 5S', '5 S', '5S ', '5s', '']) expect(grpcTimeoutMs(loose)).toBeUndefined();
  });
});
