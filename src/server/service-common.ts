/** What every client service needs: response headers, request timeouts, unary call plumbing. */
import type * as grpc from '@grpc/grpc-js';
import { MvccError, type MvccErrorCode } from '../../storage/index';
import { WireValueError } from '../etcd-proto';
import type { WireResponseHeader } from '../etcd-proto';
import { type ErrorCode, DkvError, dkvError, toGrpcError } from '../errors';
import type { Incoming } from './grpc-service';
import { HostError, type ShardHost } from './shard-host';

export interface ServiceContext {
  readonly host: ShardHost;
  readonly clusterId: () => number;
  readonly memberId: number;
  readonly requestTimeoutMs: number;
}

const MVCC_CODES: Record<MvccErrorCode, ErrorCode> = {
  'future-revision': 'future-revision',
  compacted: 'compacted',
  'key-not-found': 'key-not-found',
  'too-many-operations': 'too-many-ops',
  'duplicate-key': 'duplicate-key',
  'empty-key': 'empty-key',
  'value-provided': 'value-provided',
  'lease-provided': 'lease-provided',
};

const HOST_CODES: Record<HostError['code'], ErrorCode> = {
  'no-leader': 'no-leader',
  'leader-transfer': 'leader-changed',
  'proposals-over-limit': 'too-many-requests',
  stopped: 'stopped',
  'not-found': 'wrong-shard',
};

/** The client-facing form of anything a request can fail with (unknown errors pass through). */
export function clientError(error: unknown): unknown {
  if (error instanceof DkvError) return error;
  if (error instanceof MvccError) return dkvError(MVCC_CODES[error.code]);
  if (error instanceof HostError) return dkvError(HOST_CODES[error.code]);
  if (error instanceof WireValueError) {
    return error.code === 'invalid-argument' ? dkvError('invalid-argument', error.message) : dkvError(error.code);
  }
  return error;
}

export function responseHeader(ctx: ServiceContext, shardId: number, revision: number): WireResponseHeader {
  return { cluster_id: ctx.clusterId(), member_id: ctx.memberId, revision, raft_term: ctx.host.shard(shardId)?.term ?? 0 };
}

/** Fails with etcd's "request timed out" when `promise` takes longer than the request timeout. */
export function withTimeout<T>(ctx: ServiceContext, promise: Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(dkvError('timeout')), ctx.requestTimeoutMs);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

export type Logger = (message: string) => void;

/** A unary handler: the promise's value is the response; a rejection becomes a gRPC status. */
export function unary<Req>(handle: (request: Incoming<Req>) => Promise<object>, log?: Logger): grpc.handleUnaryCall<Incoming<Req>, object> {
  return (call, callback) => {
    handle(call.request).then(
      (response) => callback(null, response),
      (error: unknown) => {
        const mapped = clientError(error);
        if (!(mapped instanceof DkvError)) log?.(`request failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
        callback(toGrpcError(mapped) as grpc.ServiceError);
      },
    );
  };
}
