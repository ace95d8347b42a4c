/**
 * Limits per client connection, so one client cannot take what every other client needs: calls
 * in progress on one connection (unary calls: `requestsPendingPerConnectionMax`) and streams open
 * on one connection (Watch, LeaseKeepAlive, Observe, Snapshot: `streamsPerConnectionMax`). A call
 * over a limit is refused at once with etcd's `too many requests` (RESOURCE_EXHAUSTED), before
 * any work; the connection's other calls and every other connection go on. A connection is
 * known by its peer address (`ipv4:host:port`: one per TCP connection).
 */
import type * as grpc from '@grpc/grpc-js';
import { dkvError, toGrpcError } from '../errors.js';

export interface ConnectionLimits {
  readonly requestsPendingPerConnectionMax: number;
  readonly streamsPerConnectionMax: number;
}

type AnyHandler = (call: unknown, callback?: unknown) => void;

/** Counts by connection; an entry leaves the map when it reaches 0, so closed connections cost nothing. */
class Counts {
  private readonly counts = new Map<string, number>();

  /** Takes one for `peer` if it has fewer than `max`; false when full. */
  take(peer: string, max: number): boolean {
    const count = this.counts.get(peer) ?? 0;
    if (count >= max) return false;
    this.counts.set(peer, count + 1);
    return true;
  }

  release(peer: string): void {
    const count = this.counts.get(peer) ?? 0;
    if (count <= 1) this.counts.delete(peer);
    else this.counts.set(peer, count - 1);
  }

  get connections(): number {
    return this.counts.size;
  }
}

/** Tracks every service's calls against the limits (one instance per server). */
export class ConnectionLoad {
  readonly requests = new Counts();
  readonly streams = new Counts();
  constructor(
    readonly limits: ConnectionLimits,
    /** Told of each refused call (metrics). */
    readonly onRefused: (kind: 'request' | 'stream') => void = () => undefined,
  ) {
    if (!(limits.requestsPendingPerConnectionMax >= 1 && limits.streamsPerConnectionMax >= 1)) throw new RangeError('connection limits must be at least 1');
  }
}

const tooMany = (): grpc.ServiceError => toGrpcError(dkvError('too-many-requests')) as grpc.ServiceError;

/** `implementation` with every handler counted against `load`'s limits. */
export function withConnectionLimits(definition: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation, load: ConnectionLoad): grpc.UntypedServiceImplementation {
  const wrapped: grpc.UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(implementation)) {
    const method = definition[name];
    const original = handler as AnyHandler;
    if (method === undefined) {
      wrapped[name] = handler;
    } else if (!method.responseStream && !method.requestStream) {
      wrapped[name] = ((call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        const peer = call.getPeer();
        if (!load.requests.take(peer, load.limits.requestsPendingPerConnectionMax)) {
          load.onRefused('request');
          callback(tooMany());
          return;
        }
        let released = false;
        const release = (): void => {
          if (released) return;
          released = true;
          load.requests.release(peer);
        };
        // Released when the handler answers, not when the client cancels: the work it started
        // (a proposal, a password hash, a read barrier) goes on until then, and must count.
        original(call, ((error, value, trailer, flags) => {
          release();
          callback(error, value, trailer, flags);
        }) as grpc.sendUnaryData<unknown>);
      }) as grpc.UntypedHandleCall;
    } else {
      wrapped[name] = ((call: grpc.ServerWritableStream<unknown, unknown>) => {
        const peer = call.getPeer();
        if (!load.streams.take(peer, load.limits.streamsPerConnectionMax)) {
          load.onRefused('stream');
          call.emit('error', tooMany());
          return;
        }
        let released = false;
        const release = (): void => {
          if (released) return;
          released = true;
          load.streams.release(peer);
        };
        call.once('close', release);
        call.once('cancelled', release);
        call.once('finish', release);
        call.once('error', release);
        original(call);
      }) as grpc.UntypedHandleCall;
    }
  }
  return wrapped;
}
