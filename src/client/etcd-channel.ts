/**
 * The one low-level client of the etcd v3 gRPC API (and DKV's `dkv.v1` services) in this
 * repository: a channel to one endpoint, with method codecs built from the same protos as the
 * server (`src/etcd-proto.ts`). DkvClient, the test harness, jepsen-lite's real mode and the load
 * generators all talk through it.
 *
 * It does no retries, no load balancing and no endpoint switching: a call fails exactly as gRPC
 * reports it, once. jepsen-lite relies on that (every failure reaches its history as it
 * happened); failover belongs to the layer above (DkvClient).
 *
 * Requests are plain objects with the proto's field names (snake_case), encoded with
 * `fromObject`; responses decode as the caller asks (`DecodeAs`). The load generators' hot path
 * sends pre-encoded bytes and takes raw bytes back (`unaryBytes`, `bidiStreamBytes`), with no
 * protobuf work per call.
 */
import type * as grpc from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import { dkvRoot, etcdRoot } from '../etcd-proto.js';
import { grpcJs } from './grpc-js.js';

export type ServiceName =
  | 'etcdserverpb.KV'
  | 'etcdserverpb.Watch'
  | 'etcdserverpb.Lease'
  | 'etcdserverpb.Cluster'
  | 'etcdserverpb.Maintenance'
  | 'etcdserverpb.Auth'
  | 'v3lockpb.Lock'
  | 'v3electionpb.Election'
  | 'dkv.v1.Watch'
  | 'dkv.v1.KV'
  | 'dkv.v1.Counter'
  | 'dkv.v1.Admin';

export type KvMethod = 'Range' | 'Put' | 'DeleteRange' | 'Txn' | 'Compact';
export type MaintenanceMethod = 'Alarm' | 'Status' | 'Defragment' | 'Hash' | 'HashKV' | 'MoveLeader';

/** gRPC status codes (`grpcStatus.DEADLINE_EXCEEDED` …), so callers need not import grpc-js. */
export { grpcStatus } from '../errors.js';

/** A response decoded to a plain object. */
export type Decoded = Record<string, unknown>;

/** A failed call: the gRPC status (`code`, `details`), or a plain Error where none came. */
export interface RpcError extends Error {
  code?: number;
  details?: string;
}

/**
 * How responses decode: protobufjs's `toObject` with these options, or `'message'` for the
 * decoded protobufjs message itself (int64 fields as `Long`, unset fields read from defaults;
 * convert with `int64()` from `src/etcd-proto.ts`).
 */
export type DecodeAs = Readonly<protobuf.IConversionOptions> | 'message';

/** int64 as JS numbers, bytes as Buffers, defaults and empty arrays filled in. */
export const longsAsNumbers: Readonly<protobuf.IConversionOptions> = Object.freeze({ longs: Number, defaults: true, arrays: true });
/** As `longsAsNumbers`, but int64 as decimal strings (exact past 2^53). */
export const longsAsStrings: Readonly<protobuf.IConversionOptions> = Object.freeze({ longs: String, defaults: true, arrays: true });

/** One method's path and codec. */
export interface MethodCodec<Response = Decoded> {
  /** `/package.Service/Method`. */
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  encode(request: object): Buffer;
  decode(bytes: Buffer): Response;
}

interface ResolvedMethod {
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  readonly requestType: protobuf.Type;
  readonly responseType: protobuf.Type;
}

const resolvedMethods = new Map<string, ResolvedMethod>();

function resolveMethod(service: ServiceName, method: string): ResolvedMethod {
  const path = `/${service}/${method}`;
  let found = resolvedMethods.get(path);
  if (found === undefined) {
    const root = service.startsWith('dkv.') ? dkvRoot() : etcdRoot();
    const definition = root.lookupService(service).methods[method];
    if (definition === undefined) throw new TypeError(`no method ${service}.${method}`);
    definition.resolve();
    found = {
      path,
      requestStream: definition.requestStream === true,
      responseStream: definition.responseStream === true,
      requestType: definition.resolvedRequestType!,
      responseType: definition.resolvedResponseType!,
    };
    resolvedMethods.set(path, found);
  }
  return found;
}

/** The path of a method, checked against the protos (for `unaryBytes` and `bidiStreamBytes`). */
export function methodPath(service: ServiceName, method: string): string {
  return resolveMethod(service, method).path;
}

/**
 * The codec of one method; `decode` says how its responses decode (default: longsAsNumbers). The
 * method is looked up in the protos on first use, so a module may make its codecs when it loads
 * without loading the protos (an unknown method throws then).
 */
export function methodCodec<Response = Decoded>(service: ServiceName, method: string, decode: DecodeAs = longsAsNumbers): MethodCodec<Response> {
  let resolved: ResolvedMethod | undefined;
  const resolve = (): ResolvedMethod => (resolved ??= resolveMethod(service, method));
  return {
    get path() {
      return resolve().path;
    },
    get requestStream() {
      return resolve().requestStream;
    },
    get responseStream() {
      return resolve().responseStream;
    },
    encode: (request) => {
      const { requestType } = resolve();
      return Buffer.from(requestType.encode(requestType.fromObject(request)).finish());
    },
    decode:
      decode === 'message'
        ? (bytes) => resolve().responseType.decode(bytes) as unknown as Response
        : (bytes) => {
            const { responseType } = resolve();
            return responseType.toObject(responseType.decode(bytes), decode) as Response;
          },
  };
}

export interface EtcdChannelOptions {
  /** TLS (`grpc.credentials.createSsl(ca, key, cert)`); plaintext when absent. */
  readonly credentials?: grpc.ChannelCredentials;
  /** The largest message either way in bytes, -1 for no limit; grpc-js's limits when absent (4 MiB in, none out). */
  readonly messageBytesMax?: number;
  /**
   * A TCP connection of this channel's own. grpc-js otherwise shares one connection among all
   * channels to the same endpoint with equal options (the load generator wants `--conns` real ones).
   */
  readonly ownConnection?: boolean;
  /** Backoff between attempts to reconnect; grpc-js's (1 s, growing to 120 s) when absent. */
  readonly reconnectBackoffMs?: { readonly initial: number; readonly max: number };
  /** How `call`, `kv`, `maintenance` and `watch` decode responses (default longsAsNumbers). */
  readonly decode?: DecodeAs;
  /** The deadline of a unary call that names none; no deadline when absent. */
  readonly callTimeoutMs?: number;
  /**
   * An auth token (from Auth.Authenticate) every call of this channel carries unless its own
   * options name one, the byte-level calls included: a load generator authenticates once.
   */
  readonly token?: string;
  /** Any other grpc-js channel option; these win over the ones above. */
  readonly channelOptions?: grpc.ChannelOptions;
}

export interface CallOptions {
  /**
   * Fail with DEADLINE_EXCEEDED after this long (unary: the channel's `callTimeoutMs` when absent;
   * `Infinity`: no deadline, for calls that wait, such as a Lock).
   */
  readonly timeoutMs?: number;
  /** Cancels a unary call when it aborts: the call then rejects with CANCELLED. */
  readonly signal?: AbortSignal;
  /** An auth token (etcd's `token` metadata, from Auth.Authenticate) sent with the call. */
  readonly token?: string;
}

function metadataOf(options: CallOptions): grpc.Metadata {
  const metadata = new (grpcJs().Metadata)();
  if (options.token !== undefined) metadata.set('token', options.token);
  return metadata;
}

/** An etcd Watch stream as `EtcdChannel.watch` opens it. */
export interface WatchStream {
  /** Writes a WatchRequest (`{ create_request: … }`, `{ cancel_request: … }`, `{ progress_request: {} }`); ignored once ended. */
  send(request: object): void;
  /** Closes the stream from this side; `onEnd` then gets no error. */
  close(): void;
}

export interface WatchHandlers {
  onResponse(response: Decoded): void;
  /** The stream ended: closed by this side (`error` undefined) or a failure. Called once. */
  onEnd(error: RpcError | undefined): void;
}

const identity = (bytes: Buffer): Buffer => bytes;

function deadlineOf(timeoutMs: number | undefined): grpc.CallOptions {
  return timeoutMs === undefined || timeoutMs === Infinity ? {} : { deadline: Date.now() + timeoutMs };
}

function channelOptionsOf(options: EtcdChannelOptions): grpc.ChannelOptions {
  const out: grpc.ChannelOptions = {};
  if (options.messageBytesMax !== undefined) {
    out['grpc.max_send_message_length'] = options.messageBytesMax;
    out['grpc.max_receive_message_length'] = options.messageBytesMax;
  }
  if (options.ownConnection === true) out['grpc.use_local_subchannel_pool'] = 1;
  if (options.reconnectBackoffMs !== undefined) {
    out['grpc.initial_reconnect_backoff_ms'] = options.reconnectBackoffMs.initial;
    out['grpc.max_reconnect_backoff_ms'] = options.reconnectBackoffMs.max;
  }
  return { ...out, ...options.channelOptions };
}

/** One gRPC channel to one endpoint (`host:port`, no scheme). */
export class EtcdChannel {
  private readonly client: grpc.Client;
  private readonly decodeAs: DecodeAs;
  private readonly callTimeoutMs: number | undefined;
  private readonly channelToken: string | undefined;
  /** Codecs of `call`, with this channel's decoding, by path. */
  private readonly codecs = new Map<string, MethodCodec>();

  constructor(
    readonly endpoint: string,
    options: EtcdChannelOptions = {},
  ) {
    const { Client, credentials } = grpcJs();
    this.client = new Client(endpoint, options.credentials ?? credentials.createInsecure(), channelOptionsOf(options));
    this.decodeAs = options.decode ?? longsAsNumbers;
    this.callTimeoutMs = options.callTimeoutMs;
    this.channelToken = options.token;
  }

  /** A call's metadata: its own token, else the channel's. */
  private metadata(options: CallOptions): grpc.Metadata {
    return metadataOf(options.token === undefined && this.channelToken !== undefined ? { token: this.channelToken } : options);
  }

  private codec(service: ServiceName, method: string): MethodCodec {
    const key = `${service}/${method}`;
    let found = this.codecs.get(key);
    if (found === undefined) {
      found = methodCodec(service, method, this.decodeAs);
      this.codecs.set(key, found);
    }
    return found;
  }

  /** One unary call with an explicit codec; rejects with the gRPC status (`RpcError`). */
  unary<Response>(codec: MethodCodec<Response>, request: object, options: CallOptions = {}): Promise<Response> {
    return new Promise((resolve, reject) => {
      const callOptions = deadlineOf(options.timeoutMs ?? this.callTimeoutMs);
      const signal = options.signal;
      const cancel = (): void => call.cancel();
      const call = this.client.makeUnaryRequest(codec.path, codec.encode, codec.decode, request, this.metadata(options), callOptions, (error, response) => {
        signal?.removeEventListener('abort', cancel);
        if (error !== null) reject(error);
        else if (response === undefined) reject(new Error(`${codec.path}: empty response`));
        else resolve(response);
      });
      if (signal?.aborted === true) cancel();
      else signal?.addEventListener('abort', cancel, { once: true });
    });
  }

  /** One unary call by name, e.g. `call('etcdserverpb.KV', 'Put', { key, value })`. */
  call(service: ServiceName, method: string, request: object, options: CallOptions = {}): Promise<Decoded> {
    return this.unary(this.codec(service, method), request, options);
  }

  kv(method: KvMethod, request: object, options?: CallOptions): Promise<Decoded> {
    return this.call('etcdserverpb.KV', method, request, options);
  }

  maintenance(method: MaintenanceMethod, request: object, options?: CallOptions): Promise<Decoded> {
    return this.call('etcdserverpb.Maintenance', method, request, options);
  }

  /**
   * A unary call of pre-encoded bytes whose response stays bytes: no protobuf work at all, for
   * the load generators' hot path. `path` from `methodPath`. Positional arguments and a callback
   * rather than an options object and a promise: one call per request, nothing allocated that
   * grpc-js does not need.
   */
  unaryBytes(path: string, request: Buffer, timeoutMs: number | undefined, callback: (error: grpc.ServiceError | null, response?: Buffer) => void): void {
    if (this.channelToken === undefined) this.client.makeUnaryRequest(path, identity, identity, request, deadlineOf(timeoutMs), callback);
    else this.client.makeUnaryRequest(path, identity, identity, request, metadataOf({ token: this.channelToken }), deadlineOf(timeoutMs), callback);
  }

  /** A server-streaming call (dkv.v1 WatchPrefix, Maintenance Snapshot). */
  serverStream<Response>(codec: MethodCodec<Response>, request: object, options: CallOptions = {}): grpc.ClientReadableStream<Response> {
    return this.client.makeServerStreamRequest(codec.path, codec.encode, codec.decode, request, this.metadata(options), deadlineOf(options.timeoutMs));
  }

  /** A bidirectional stream of objects in, decoded responses out. */
  bidiStream<Response>(codec: MethodCodec<Response>, options: CallOptions = {}): grpc.ClientDuplexStream<object, Response> {
    return this.client.makeBidiStreamRequest(codec.path, codec.encode, codec.decode, this.metadata(options), deadlineOf(options.timeoutMs));
  }

  /** A bidirectional stream of pre-encoded bytes in, raw bytes out. */
  bidiStreamBytes(path: string, options: CallOptions = {}): grpc.ClientDuplexStream<Buffer, Buffer> {
    return this.client.makeBidiStreamRequest(path, identity, identity, this.metadata(options), deadlineOf(options.timeoutMs));
  }

  /**
   * An etcd Watch stream, responses decoded as the channel decodes. `onEnd` runs once, whatever
   * ends the stream: this side's `close()` (no error), the server ending it (an Error saying so)
   * or a failure (its gRPC status).
   */
  watch(handlers: WatchHandlers, options: CallOptions = {}): WatchStream {
    const call = this.bidiStream(this.codec('etcdserverpb.Watch', 'Watch'), options);
    const stream = handledStream(call, handlers);
    return {
      send: (request) => {
        if (!stream.ended()) call.write(request);
      },
      close: stream.close,
    };
  }

  /**
   * A dkv.v1 WatchPrefix stream: decoded responses to `onResponse`; `onEnd` once, as `watch`'s.
   * `pause()` and `resume()` stop and restart reading (a slow consumer).
   */
  prefixWatch(request: object, handlers: WatchHandlers, options: CallOptions = {}): { close(): void; pause(): void; resume(): void } {
    const call = this.serverStream<Decoded>(this.codec('dkv.v1.Watch', 'WatchPrefix'), request, options);
    return { close: handledStream(call, handlers).close, pause: () => call.pause(), resume: () => call.resume() };
  }

  /** Resolves once the channel is connected; rejects after `timeoutMs`. */
  waitForReady(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.waitForReady(Date.now() + timeoutMs, (error) => {
        if (error) reject(new Error(`cannot connect to ${this.endpoint} within ${timeoutMs / 1000} s: ${error.message}`));
        else resolve();
      });
    });
  }

  close(): void {
    this.client.close();
  }
}

/**
 * Hands a stream's responses to `handlers` and its end to `onEnd`, once: this side's `close()`
 * (no error), the server ending it (an Error saying so) or a failure (its gRPC status).
 */
function handledStream(call: grpc.ClientReadableStream<Decoded> | grpc.ClientDuplexStream<object, Decoded>, handlers: WatchHandlers): { ended(): boolean; close(): void } {
  let ended = false;
  let closedByUs = false;
  const end = (error: RpcError | undefined): void => {
    if (ended) return;
    ended = true;
    handlers.onEnd(closedByUs ? undefined : error ?? new Error('watch stream ended by the server'));
  };
  call.on('data', (response: Decoded) => {
    if (!ended) handlers.onResponse(response);
  });
  call.on('error', (error: RpcError) => end(error));
  call.on('end', () => end(undefined));
  call.on('close', () => end(undefined));
  return {
    ended: () => ended,
    close: () => {
      closedByUs = true;
      call.cancel();
      end(undefined);
    },
  };
}
