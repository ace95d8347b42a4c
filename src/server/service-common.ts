/** What every client service needs: the router, response headers, unary call plumbing. */
import type * as grpc from '@grpc/grpc-js';
import { clientError } from '../error-mapping.js';
import type { WireResponseHeader } from '../etcd-proto.js';
import { DkvError, type GrpcErrorObject, dkvError, toGrpcError } from '../errors.js';
import { type RequestOptions, type Router, type ShardHandle, ShardElsewhereError } from '../runtime/index.js';
import { type Incoming, RawResponse } from './grpc-service.js';
import { type RoutedBy, forwardingOf, noteElsewhere } from './forwarding.js';
import { type LogFields, requestIdOfCall } from './request-log.js';
import type { BackendQuota } from './quota.js';
import type { AuthGate } from './auth/gate.js';
import type { Caller, EngineCommand } from '../engines/index.js';

export interface ServiceContext {
  readonly router: Router;
  readonly clusterId: () => number;
  readonly memberId: number;
  /** How long a request may wait for Raft (the runtime releases it then). */
  readonly requestTimeoutMs: number;
  /** --quota-backend-bytes: writes that grow a store are checked against it (none: unchecked). */
  readonly quota?: BackendQuota;
  /** Who each call's caller is and what it may do (etcd's auth). */
  readonly gate: AuthGate;
  /**
   * Calls unary method `path` (request `raw`, encoded) as `caller` on one of `replicas`, members
   * hosting a shard this node does not (forwarding.ts): the response's bytes, or its status.
   */
  readonly callElsewhere?: (path: string, raw: Uint8Array, caller: Caller, replicas: readonly number[], route?: RoutedBy) => Promise<RawResponse | GrpcErrorObject>;
  /** Proposes a command to a shard other members host, through one of `replicas` (forwarding.ts); the outcome. */
  readonly proposeElsewhere?: (shard: number, replicas: readonly number[], command: EngineCommand) => Promise<unknown>;
}

export { clientError };

export function requestOptions(ctx: ServiceContext): RequestOptions {
  return { timeoutMs: ctx.requestTimeoutMs };
}

/** A client request's options: the timeout, and the caller its command carries to the state machine's guard. */
export function callerOptions(ctx: ServiceContext, caller: Caller): RequestOptions {
  return { timeoutMs: ctx.requestTimeoutMs, caller };
}

export function responseHeader(ctx: ServiceContext, shard: ShardHandle, revision: number): WireResponseHeader {
  return { cluster_id: ctx.clusterId(), member_id: ctx.memberId, revision, raft_term: shard.term() };
}

export type Logger = (message: string, fields?: LogFields) => void;

/** How a service turns what a request failed with into the status its client gets. */
export type ToStatus = (error: unknown) => GrpcErrorObject;

/** A unary call as its handler sees it: metadata and TLS details, for the caller (auth). */
export type UnaryCall<Req> = grpc.ServerUnaryCall<Incoming<Req>, object>;

/** A unary handler: the promise's value is the response; a rejection becomes a gRPC status. */
export function unary<Req>(handle: (request: Incoming<Req>, call: UnaryCall<Req>) => Promise<object>, log?: Logger, toStatus: ToStatus = toGrpcError): grpc.handleUnaryCall<Incoming<Req>, object> {
  return (call, callback) => answer(() => handle(call.request, call), callback, log, toStatus, requestIdOfCall(call), call as UnaryCall<unknown>);
}

/**
 * A unary handler that may wait for long (Lock, Campaign): `signal` aborts with `canceled` once
 * the client cancels the call or its deadline passes (grpc-js reports both as 'cancelled').
 */
export function waitingUnary<Req>(
  handle: (request: Incoming<Req>, signal: AbortSignal, call: UnaryCall<Req>) => Promise<object>,
  log?: Logger,
  toStatus: ToStatus = toGrpcError,
): grpc.handleUnaryCall<Incoming<Req>, object> {
  return (call, callback) => {
    const controller = new AbortController();
    const cancel = (): void => controller.abort(dkvError('canceled'));
    if (call.cancelled) cancel();
    else call.once('cancelled', cancel);
    answer(() => handle(call.request, controller.signal, call), callback, log, toStatus, requestIdOfCall(call));
  };
}

/**
 * Answers a unary call with what `handle` settles with. `forwardable`: a client's own unary call
 * whose shard the map places on other members only is forwarded to one of them (forwarding.ts),
 * and their answer is this call's.
 */
function answer(handle: () => Promise<object>, callback: grpc.sendUnaryData<object>, log: Logger | undefined, toStatus: ToStatus, requestId: string | undefined, forwardable?: UnaryCall<unknown>): void {
  let pending: Promise<object>;
  try {
    pending = handle();
  } catch (error) {
    pending = Promise.reject(error);
  }
  const fail = (error: unknown): void => callback(toStatus(clientErrorLogged(error, log, requestId)) as grpc.ServiceError);
  pending.then(
    (response) => callback(null, response),
    (error: unknown) => {
      if (forwardable !== undefined && error instanceof ShardElsewhereError) noteElsewhere(forwardable, error);
      const forwarding = forwardable === undefined || !(error instanceof ShardElsewhereError) ? undefined : forwardingOf(forwardable);
      if (forwarding === undefined) return fail(error);
      const elsewhere = error as ShardElsewhereError;
      forwarding.forwarder.forward(forwarding, forwardable!, elsewhere.replicas, { shard: elsewhere.shardId, epoch: elsewhere.epoch }).then(
        (answered) => (answered instanceof RawResponse ? callback(null, answered) : callback(answered as grpc.ServiceError)),
        fail,
      );
    },
  );
}

/** The client-facing form of `error`; anything that is not a client error is logged. */
export function clientErrorLogged(error: unknown, log: Logger | undefined, requestId?: string): unknown {
  const mapped = clientError(error);
  if (!(mapped instanceof DkvError)) log?.(`request failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`, requestId === undefined ? undefined : { request_id: requestId });
  return mapped;
}

/**
 * A signal that aborts with the reason of whichever of `a` and `b` aborts first. `release()`
 * detaches it from both (a node-wide signal must not collect a listener per request).
 */
export function linkedSignal(a: AbortSignal, b: AbortSignal): { signal: AbortSignal; release(): void } {
  const controller = new AbortController();
  const fromA = (): void => controller.abort(a.reason);
  const fromB = (): void => controller.abort(b.reason);
  const release = (): void => {
    a.removeEventListener('abort', fromA);
    b.removeEventListener('abort', fromB);
  };
  if (a.aborted) fromA();
  else if (b.aborted) fromB();
  else {
    a.addEventListener('abort', fromA, { once: true });
    b.addEventListener('abort', fromB, { once: true });
  }
  return { signal: controller.signal, release };
}
