/**
 * What a learner serves: as etcd 3.4's gRPC interceptors, Maintenance.Status and serializable
 * KV.Range (and dkv.v1.Admin's ShardStatus, Status for one shard); every other call, and every
 * stream, gets `etcdserver: rpc not supported for learner` (UNAVAILABLE, so clients move on to
 * another member). A learner holds no vote and may lag: a linearizable read or a write through
 * it would only add a hop, and a watch from it could lag.
 */
import type * as grpc from '@grpc/grpc-js';
import type { ShardMap } from '../cluster/index.js';
import { dkvError, toGrpcError } from '../errors.js';
import type { Incoming } from './grpc-service.js';

/**
 * Whether group `shard`'s configuration follows the cluster's membership, so that this member
 * being its learner makes it etcd's learner: the meta shard and every shard all members host. A
 * placed shard (its map entry lists replicas) has a learner of its own while a replica moves in;
 * that member stays a voter of the cluster. A group the map does not list counts, to be safe.
 */
export function followsMembership(shard: number, metaShard: number, map: Pick<ShardMap, 'shard'>): boolean {
  if (shard === metaShard) return true;
  const entry = map.shard(shard);
  return entry === undefined || entry.replicas.length === 0;
}

/** Calls a learner answers; `Range` only when serializable. */
export function servedByLearner(path: string, request: unknown): boolean {
  // dkv.v1.Admin's ShardStatus is Status for one shard: it describes this member's replica.
  if (path === '/etcdserverpb.Maintenance/Status' || path === '/dkv.v1.Admin/ShardStatus') return true;
  if (path === '/etcdserverpb.KV/Range') return (request as Incoming<{ serializable?: boolean }> | undefined)?.message?.serializable === true;
  return false;
}

type AnyHandler = (...args: unknown[]) => void;

/** Wraps every handler of `implementation` to refuse, while `isLearner()`, what a learner does not serve. */
export function guardLearner(
  definition: grpc.ServiceDefinition,
  implementation: grpc.UntypedServiceImplementation,
  isLearner: () => boolean,
): grpc.UntypedServiceImplementation {
  const guarded: grpc.UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(implementation)) {
    const method = definition[name];
    if (method === undefined) {
      guarded[name] = handler;
      continue;
    }
    const refusal = () => toGrpcError(dkvError('not-supported-for-learner'));
    const original = handler as AnyHandler;
    if (!method.requestStream && !method.responseStream) {
      guarded[name] = ((call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        if (isLearner() && !servedByLearner(method.path, call.request)) callback(refusal());
        else (original as (c: typeof call, cb: typeof callback) => void)(call, callback);
      }) as grpc.UntypedHandleCall;
    } else if (method.requestStream && !method.responseStream) {
      guarded[name] = ((call: grpc.ServerReadableStream<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        if (isLearner()) callback(refusal());
        else (original as (c: typeof call, cb: typeof callback) => void)(call, callback);
      }) as grpc.UntypedHandleCall;
    } else {
      guarded[name] = ((call: grpc.ServerWritableStream<unknown, unknown>) => {
        if (isLearner()) call.emit('error', refusal());
        else (original as (c: typeof call) => void)(call);
      }) as grpc.UntypedHandleCall;
    }
  }
  return guarded;
}
