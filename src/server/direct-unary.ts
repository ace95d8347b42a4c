/**
 * Unary calls served straight from Node's HTTP/2 streams, without grpc-js's per-call machinery.
 *
 * Why: grpc-js gives every unary call an intercepting call, a listener object, a message decoder
 * and a writable stream (`ServerWritableStreamImpl`), and sends the answer's trailers only after
 * the message's socket write has called back, a turn or two of the event loop later. On a busy
 * node that is a share of each call's CPU, and with one client it sits on every round trip. Here a
 * unary call is one small object: its request is read from the stream's DATA, its wrapped handler
 * (the same one grpc-js would run: request log, learner guard, connection limits, forwarding) is
 * called with it, and the answer is written as HEADERS and DATA, with the trailers asked for as
 * soon as the DATA has gone out.
 *
 * What it takes and what it leaves: `attach` intercepts the 'stream' events of each HTTP/2 server
 * grpc-js listens with (client-sessions.ts hands them over). A stream is served here when its path
 * is a registered unary method, its content-type is gRPC's, it names no compression and its
 * `grpc-timeout` (if any) is valid; every other stream goes to grpc-js untouched — streaming
 * methods, unknown paths (UNIMPLEMENTED), compressed requests, a bad content-type (415) or
 * timeout (INTERNAL). What a client sees is what grpc-js answered: the same response headers and
 * trailers, the same message size limit, the same status code for each failure
 * (`directUnaryStatus`), with three differences in what only a hand-made client can send: a
 * missing or second message is named a unary method's (grpc-js calls it a "server streaming
 * method"); a message followed by part of a second one is refused (grpc-js runs the handler with
 * the first); a message flagged compressed on a call that names no compression is refused with
 * INTERNAL, as etcd's grpc-go refuses it (grpc-js reads it as uncompressed).
 *
 * The call object has what the services and wrappers use of grpc-js's `ServerUnaryCall`: the
 * request, metadata, peer, deadline, auth context, `cancelled` and its 'cancelled' event when the
 * call ends unanswered (the client's cancel, the stream's close, or the deadline; grpc-js also
 * emits it after an answer, which no handler here relies on), and an 'error' event that answers
 * with the error's status, as grpc-js's does. Handlers run unchanged under both.
 *
 * What grpc-js does per stream and this module does not: its interceptors (none are used), its
 * channelz call counts (none are read), and its idle-connection timer
 * (`grpc.max_connection_idle_ms`, not set: a connection busy with unary calls would look idle).
 */
import { EventEmitter } from 'node:events';
import type { Http2SecureServer, Http2Server, IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import { TLSSocket } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { assert } from '../../raft/index.js';
import { statusCodeOf } from './request-log.js';

type AuthContext = ReturnType<grpc.ServerUnaryCall<unknown, unknown>['getAuthContext']>;

/** A unary method as registered: its wrapped handler and its (de)serialisers. */
interface DirectMethod {
  readonly path: string;
  readonly handler: grpc.handleUnaryCall<unknown, unknown>;
  readonly deserialize: (raw: Buffer) => unknown;
  readonly serialize: (value: unknown) => Buffer;
}

/** gRPC's message prefix: a compressed flag byte and a 4-byte big-endian length. */
const messagePrefixBytes = 5;

/**
 * grpc-timeout's form in gRPC over HTTP/2 (at most 8 digits, then the unit). grpc-js reads the
 * header more loosely (the pattern anywhere in it); a value outside this form is left to grpc-js,
 * so either way the call gets grpc-js's reading.
 */
const grpcTimeoutPattern = /^(\d{1,8})([HMSmun])$/;
const grpcTimeoutUnitMs: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** Headers grpc-js keeps out of a call's metadata (transport headers, not the application's). */
const transportHeaders = ['grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding', 'accept-encoding', 'te', 'content-type'] as const;

/** The response headers grpc-js sends (it accepts compressed requests; those go to it). */
const responseHeaders = Object.freeze({
  ':status': 200,
  'content-type': 'application/grpc+proto',
  'grpc-accept-encoding': 'identity,deflate,gzip',
  'grpc-encoding': 'identity',
});
/** A status alone (gRPC's trailers-only response), as grpc-js sends one. */
const trailersOnlyHeaders = Object.freeze({ ':status': 200, 'content-type': 'application/grpc+proto' });
const okTrailers = Object.freeze({ 'grpc-status': String(grpc.status.OK), 'grpc-message': 'OK' });

/** The statuses this module answers by itself, each as grpc-js answers the same failure. */
export const directUnaryStatus = {
  tooLarge: (size: number, max: number) => ({ code: grpc.status.RESOURCE_EXHAUSTED, details: `Received message larger than max (${size} vs ${max})` }),
  noMessage: (path: string) => ({ code: grpc.status.UNIMPLEMENTED, details: `Received no request message for unary method ${path}` }),
  secondMessage: (path: string) => ({ code: grpc.status.UNIMPLEMENTED, details: `Received a second request message for unary method ${path}` }),
  compressedFlag: () => ({ code: grpc.status.INTERNAL, details: 'Received a message with the compressed flag set on a call without grpc-encoding' }),
  undecodable: () => ({ code: grpc.status.INTERNAL, details: 'Error deserializing request' }),
  unserializable: () => ({ code: grpc.status.INTERNAL, details: 'Error serializing response' }),
  threw: () => ({ code: grpc.status.UNKNOWN, details: 'Unknown error' }),
  deadline: () => ({ code: grpc.status.DEADLINE_EXCEEDED, details: 'Deadline exceeded' }),
} as const;

interface Status {
  readonly code: number;
  readonly details: string;
  readonly metadata?: grpc.Metadata | null;
}

/** The milliseconds a grpc-timeout header gives (as grpc-js computes them); undefined if not of gRPC's form. */
export function grpcTimeoutMs(header: string): number | undefined {
  const match = grpcTimeoutPattern.exec(header);
  if (match === null) return undefined;
  return (Number(match[1]) * grpcTimeoutUnitMs[match[2]!]!) | 0;
}

/** What grpc-js makes of a handler's error (its `serverErrorToStatus`; the code as request-log.ts counts it). */
function statusOfError(error: Partial<grpc.ServiceError>, trailer: grpc.Metadata | undefined): Status {
  const code = statusCodeOf(error);
  return {
    code,
    details: code === error.code && typeof error.details === 'string' ? error.details : typeof error.message === 'string' ? error.message : 'Unknown Error',
    metadata: trailer ?? error.metadata ?? null,
  };
}

export class DirectUnary {
  private readonly methods = new Map<string, DirectMethod>();

  constructor(private readonly options: { readonly maxReceiveMessageBytes: number }) {
    assert(Number.isSafeInteger(options.maxReceiveMessageBytes) && options.maxReceiveMessageBytes > 0, 'a positive receive limit');
  }

  /** Registers the unary methods of a service, with the implementation grpc-js is given for them. */
  add(definition: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation): void {
    for (const [name, handler] of Object.entries(implementation)) {
      const method = definition[name];
      if (method === undefined || method.requestStream || method.responseStream) continue;
      assert(!this.methods.has(method.path), `unary method ${method.path} registered twice`);
      this.methods.set(method.path, {
        path: method.path,
        handler: handler as grpc.handleUnaryCall<unknown, unknown>,
        deserialize: method.requestDeserialize as (raw: Buffer) => unknown,
        serialize: method.responseSerialize as (value: unknown) => Buffer,
      });
    }
  }

  /** Serves the unary streams of `http2Server` here; the rest reach its other 'stream' listeners (grpc-js). */
  attach(http2Server: Http2Server | Http2SecureServer): void {
    const direct = this;
    const emit = http2Server.emit;
    http2Server.emit = function emitUnlessServedDirectly(this: typeof http2Server, event: string | symbol, ...args: unknown[]): boolean {
      if (event === 'stream' && direct.serve(args[0] as ServerHttp2Stream, args[1] as IncomingHttpHeaders)) return true;
      return emit.call(this, event, ...args);
    } as typeof http2Server.emit;
  }

  /** Takes `stream` if it is a unary call this module serves (see the module's comment): true if taken. */
  serve(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): boolean {
    const path = headers[':path'];
    const method = path === undefined ? undefined : this.methods.get(path);
    if (method === undefined) return false;
    const contentType = headers['content-type'];
    if (contentType === undefined || !contentType.startsWith('application/grpc')) return false;
    const encoding = headers['grpc-encoding'];
    if (encoding !== undefined && encoding !== 'identity') return false;
    const timeout = headers['grpc-timeout'];
    const timeoutMs = typeof timeout === 'string' ? grpcTimeoutMs(timeout) : undefined;
    if (timeout !== undefined && timeoutMs === undefined) return false;
    new DirectUnaryCall(method, stream, headers, this.options.maxReceiveMessageBytes, timeoutMs);
    return true;
  }
}

/**
 * One unary call served here. It reads the one request message (refusing a larger one than the
 * limit as soon as its length is known, and a second one as soon as it starts), runs the handler
 * at the client's half-close, and answers once: the handler's answer, the deadline's status, or
 * nothing when the client went away first.
 */
class DirectUnaryCall extends EventEmitter {
  /** Set before the handler runs. */
  request: unknown = undefined;
  cancelled = false;
  private answered = false;
  private readonly chunks: Buffer[] = [];
  private receivedBytes = 0;
  /** The request message's length and compressed flag, once its prefix has arrived. */
  private messageBytes: number | undefined = undefined;
  private flag = 0;
  private readonly deadline: number;
  private deadlineTimer: NodeJS.Timeout | undefined = undefined;
  private builtMetadata: grpc.Metadata | undefined = undefined;
  /** The connection, held from the start: a closed stream no longer names its session. */
  private readonly session: ServerHttp2Stream['session'];

  constructor(
    private readonly method: DirectMethod,
    private readonly stream: ServerHttp2Stream,
    private readonly headers: IncomingHttpHeaders,
    private readonly maxReceiveMessageBytes: number,
    timeoutMs: number | undefined,
  ) {
    super();
    this.session = stream.session;
    this.deadline = timeoutMs === undefined ? Infinity : Date.now() + timeoutMs;
    if (timeoutMs !== undefined) this.deadlineTimer = setTimeout(() => this.expire(), timeoutMs);
    // Without an 'error' listener a stream's error would be thrown; its 'close' follows and says enough.
    stream.on('error', ignoreStreamError);
    stream.on('data', (chunk: Buffer) => this.received(chunk));
    stream.once('end', () => this.halfClosed());
    stream.once('close', () => this.closed());
    // grpc-js answers a call's 'error' event with the error's status; a wrapper may emit one.
    this.on('error', (error: Partial<grpc.ServiceError>) => this.finish(statusOfError(error, undefined)));
  }

  /** The request's metadata, as grpc-js gives it (built on first use). */
  get metadata(): grpc.Metadata {
    if (this.builtMetadata === undefined) {
      const metadata = grpc.Metadata.fromHttp2Headers(this.headers);
      for (const name of transportHeaders) metadata.remove(name);
      this.builtMetadata = metadata;
    }
    return this.builtMetadata;
  }

  getPeer(): string {
    const socket = this.session?.socket;
    if (socket?.remoteAddress === undefined) return 'unknown';
    return socket.remotePort === undefined ? socket.remoteAddress : `${socket.remoteAddress}:${socket.remotePort}`;
  }

  getDeadline(): number {
    return this.deadline;
  }

  getPath(): string {
    return this.method.path;
  }

  getHost(): string {
    return this.headers[':authority'] ?? this.headers.host ?? '';
  }

  /** The TLS peer's certificate, as grpc-js reports it (auth's `--client-cert-auth`). */
  getAuthContext(): AuthContext {
    const socket = this.session?.socket;
    if (!(socket instanceof TLSSocket) || !socket.authorized) return {};
    const certificate = socket.getPeerCertificate();
    return { transportSecurityType: 'ssl', sslPeerCertificate: certificate.raw === undefined ? undefined : certificate };
  }

  /** A unary answer carries no early metadata; accepted and ignored, as the services never send any. */
  sendMetadata(): void {}

  private received(chunk: Buffer): void {
    if (this.answered) return;
    this.chunks.push(chunk);
    this.receivedBytes += chunk.byteLength;
    if (this.messageBytes === undefined && this.receivedBytes >= messagePrefixBytes) {
      const prefix = this.gathered();
      this.flag = prefix[0]!;
      this.messageBytes = prefix.readUInt32BE(1);
      if (this.messageBytes > this.maxReceiveMessageBytes) return this.finish(directUnaryStatus.tooLarge(this.messageBytes, this.maxReceiveMessageBytes));
    }
    if (this.messageBytes !== undefined && this.receivedBytes > messagePrefixBytes + this.messageBytes) this.finish(directUnaryStatus.secondMessage(this.method.path));
  }

  /** Everything received so far as one buffer (the common case, one DATA frame, is not copied here). */
  private gathered(): Buffer {
    if (this.chunks.length > 1) this.chunks.splice(0, this.chunks.length, Buffer.concat(this.chunks, this.receivedBytes));
    return this.chunks[0]!;
  }

  private halfClosed(): void {
    if (this.answered) return;
    if (this.messageBytes === undefined || this.receivedBytes < messagePrefixBytes + this.messageBytes) return this.finish(directUnaryStatus.noMessage(this.method.path));
    if (this.flag !== 0) return this.finish(directUnaryStatus.compressedFlag());
    // A copy of just the message, made once from the chunks it came in: the request's bytes may be
    // kept (a write's go into the Raft log) and must not hold on to the frames they arrived in.
    // Below 4 KiB Node's allocator places it in its shared pool, as grpc-js's copy is placed.
    const raw = Buffer.allocUnsafe(this.messageBytes);
    let skip = messagePrefixBytes;
    let filled = 0;
    for (const chunk of this.chunks) {
      const from = Math.min(skip, chunk.byteLength);
      skip -= from;
      filled += chunk.copy(raw, filled, from);
    }
    assert(filled === this.messageBytes, 'the request message is copied whole');
    this.chunks.length = 0;
    try {
      this.request = this.method.deserialize(raw);
    } catch {
      return this.finish(directUnaryStatus.undecodable());
    }
    try {
      this.method.handler(this as unknown as grpc.ServerUnaryCall<unknown, unknown>, (error, value, trailer) => this.answer(error, value, trailer ?? undefined));
    } catch {
      this.finish(directUnaryStatus.threw());
    }
  }

  private answer(error: Partial<grpc.ServiceError> | null, value: unknown, trailer: grpc.Metadata | undefined): void {
    if (error !== null && error !== undefined) return this.finish(statusOfError(error, trailer));
    if (this.answered) return;
    let message: Buffer;
    try {
      message = this.method.serialize(value);
    } catch {
      return this.finish(directUnaryStatus.unserializable());
    }
    if (!this.settle()) return;
    const frame = Buffer.allocUnsafe(messagePrefixBytes + message.byteLength);
    frame[0] = 0;
    frame.writeUInt32BE(message.byteLength, 1);
    message.copy(frame, messagePrefixBytes);
    const stream = this.stream;
    const trailers = trailer === undefined ? okTrailers : { ...okTrailers, ...trailer.toHttp2Headers() };
    try {
      stream.respond(responseHeaders, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers(trailers));
      stream.end(frame);
    } catch {
      // The stream closed under us (the session was destroyed): the client has gone.
    }
  }

  /** Answers with `status` alone (gRPC's trailers-only response), unless already answered. */
  private finish(status: Status): void {
    if (this.answered || !this.settle()) return;
    const headers: Record<string, string | number | string[]> = { 'grpc-status': status.code, 'grpc-message': encodeURI(status.details), ...trailersOnlyHeaders };
    if (status.metadata !== undefined && status.metadata !== null) Object.assign(headers, status.metadata.toHttp2Headers());
    try {
      this.stream.respond(headers, { endStream: true });
    } catch {
      // As in `answer`.
    }
  }

  /** Marks the call answered; false if its stream can no longer carry an answer. */
  private settle(): boolean {
    this.answered = true;
    this.chunks.length = 0;
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
    return !this.stream.destroyed && !this.stream.closed && !this.stream.headersSent;
  }

  private expire(): void {
    this.deadlineTimer = undefined;
    if (this.answered) return;
    this.finish(directUnaryStatus.deadline());
    this.cancel();
  }

  private closed(): void {
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
    if (this.answered) return;
    this.answered = true;
    this.chunks.length = 0;
    this.cancel();
  }

  private cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.emit('cancelled', 'cancelled');
  }
}

function ignoreStreamError(): void {}
