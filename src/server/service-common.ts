/** What every client service needs: the router, response headers, unary call plumbing. */
import type * as grpc from '@grpc/grpc-js';
import { clientError } from '../error-mapping';
import type { WireResponseHeader } from '../etcd-proto';
import { DkvError, toGrpcError } from '../errors';
import type { RequestOptions, Router, ShardHandle } from '../runtime/index';
import type { Incoming } from './grpc-service';

export interface ServiceContext {
  readonly router: Router;
  readonly clusterId: () => number;
  readonly memberId: number;
  /** How long a request may wait for Raft (the runtime releases it then). */
  readonly requestTimeoutMs: number;
}

export { clientError };

export function requestOptions(ctx: ServiceContext): RequestOptions {
  return { timeoutMs: ctx.requestTimeoutMs };
}

export function responseHeader(ctx: ServiceContext, shard: ShardHandle, revision: number): WireResponseHeader {
  return { cluster_id: ctx.clusterId(), member_id: ctx.memberId, revision, raft_term: shard.term() };
}

export type Logger = (message: string) => void;

/** A unary handler: the promise's value is the response; a rejection becomes a gRPC status. */
export function unary<Req>(handle: (request: Incoming<Req>) => Promise<object>, log?: Logger): grpc.handleUnaryCall<Incoming<Req>, object> {
  return (call, callback) => {
    let pending: Promise<object>;
    try {
      pending = handle(call.request);
    } catch (error) {
      pending = Promise.reject(error);
    }
    pending.then(
      (response) => callback(null, response),
      (error: unknown) => {
        const mapped = clientError(error);
        if (!(mapped instanceof DkvError)) log?.(`request failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
        callback(toGrpcError(mapped) as grpc.ServiceError);
      },
    );
  };
}
