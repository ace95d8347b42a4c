/**
 * A raw etcd v3 gRPC client for the harness: one channel to one endpoint, built from the same
 * protos as the server (src/etcd-proto.ts), no retries and no load balancing, so every failure
 * reaches the history as it happened. Responses decode with int64 as numbers, bytes as Buffers
 * and defaults filled in; requests use the proto's field names (snake_case).
 */
import * as grpc from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import { etcdService } from '../../src/etcd-proto';

export type Decoded = Record<string, unknown>;

/** The largest message either way (a final history read may be large). */
export const messageBytesMax = 64 * 1024 * 1024;

export type EtcdServiceName = 'etcdserverpb.KV' | 'etcdserverpb.Maintenance' | 'etcdserverpb.Watch' | 'etcdserverpb.Cluster';

const decodeOptions: protobuf.IConversionOptions = { longs: Number, defaults: true, arrays: true };

interface MethodCodec {
  path: string;
  encode: (value: object) => Buffer;
  decode: (bytes: Buffer) => Decoded;
}

function methodCodec(serviceName: EtcdServiceName, method: string): MethodCodec {
  const definition = etcdService(serviceName).methods[method];
  if (definition === undefined) throw new TypeError(`no method ${serviceName}.${method}`);
  definition.resolve();
  const requestType = definition.resolvedRequestType!;
  const responseType = definition.resolvedResponseType!;
  return {
    path: `/${serviceName}/${method}`,
    encode: (value) => Buffer.from(requestType.encode(requestType.fromObject(value)).finish()),
    decode: (bytes) => responseType.toObject(responseType.decode(bytes), decodeOptions) as Decoded,
  };
}

const codecs = new Map<string, MethodCodec>();

function codec(serviceName: EtcdServiceName, method: string): MethodCodec {
  const key = `${serviceName}/${method}`;
  let found = codecs.get(key);
  if (found === undefined) {
    found = methodCodec(serviceName, method);
    codecs.set(key, found);
  }
  return found;
}

/** A gRPC failure as the harness sees it. */
export interface RpcError extends Error {
  code?: number;
  details?: string;
}

export interface WatchStream {
  send(request: object): void;
  /** Closes the stream from our side (its end is 'client-closed'). */
  close(): void;
}

export interface WatchHandlers {
  onResponse(response: Decoded): void;
  /** The stream ended: by our close (error undefined) or a failure. Called once. */
  onEnd(error: RpcError | undefined): void;
}

export class EtcdClient {
  private readonly client: grpc.Client;

  constructor(readonly endpoint: string) {
    this.client = new grpc.Client(endpoint, grpc.credentials.createInsecure(), {
      'grpc.max_send_message_length': messageBytesMax,
      'grpc.max_receive_message_length': messageBytesMax,
      // Fail fast while a node is down instead of backing off for up to 2 minutes.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
    });
  }

  /** One unary call; rejects with the gRPC status on failure or at the deadline. */
  call(serviceName: EtcdServiceName, method: string, request: object, timeoutMs: number): Promise<Decoded> {
    const { path, encode, decode } = codec(serviceName, method);
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(path, encode, decode, request, { deadline: Date.now() + timeoutMs }, (error, response) => {
        if (error !== null) reject(error);
        else if (response === undefined) reject(new Error(`${path}: empty response`));
        else resolve(response);
      });
    });
  }

  kv(method: 'Range' | 'Put' | 'DeleteRange' | 'Txn' | 'Compact', request: object, timeoutMs: number): Promise<Decoded> {
    return this.call('etcdserverpb.KV', method, request, timeoutMs);
  }

  status(timeoutMs: number): Promise<Decoded> {
    return this.call('etcdserverpb.Maintenance', 'Status', {}, timeoutMs);
  }

  /** Opens a Watch stream; `handlers.onEnd` runs once when it ends for any reason. */
  watch(handlers: WatchHandlers): WatchStream {
    const { path, encode, decode } = codec('etcdserverpb.Watch', 'Watch');
    const call = this.client.makeBidiStreamRequest(path, encode, decode);
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
      send: (request) => {
        if (!ended) call.write(request);
      },
      close: () => {
        closedByUs = true;
        call.cancel();
        end(undefined);
      },
    };
  }

  close(): void {
    this.client.close();
  }
}
