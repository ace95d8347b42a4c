/**
 * `dkv.v1.KV` (a DKV extension, proto/dkv/v1/kv.proto): etcd's Put and Txn with per-key TTLs and
 * fencing tokens. Each call is one TTL-engine command carrying the request's own bytes, so the
 * fence check, the write and the TTLs happen in one apply; a follower's proposal travels to the
 * leader through Raft. Requests are checked here first with etcd's rules (kv-service.ts) plus
 * the TTL and fence rules the engine applies again, so a refused request never reaches the log.
 */
import type * as grpc from '@grpc/grpc-js';
import { putToWire, txnFromWire, txnToWire } from '../engines/kv/index.js';
import { type TtlOutcome, dkvPutCommand, dkvTxnCommand, fenceFromWire, keyTtlsFromWire, ttlMsFromWire, ttlOutcome } from '../engines/ttl/index.js';
import type { EngineCommand } from '../engines/index.js';
import { type WireDkvPutRequest, type WireDkvTxnRequest, dkvRoot, int64Exact } from '../etcd-proto.js';
import { dkvError } from '../errors.js';
import type { ShardHandle } from '../runtime/index.js';
import { serviceDefinition } from './grpc-service.js';
import { putCost, txnCost } from './quota.js';
import { checkLeasesOfShard, checkPut, checkTxn, txnLeases, txnRanges } from './kv-service.js';
import { type ServiceContext, callerOptions, responseHeader, unary } from './service-common.js';
import type { Caller } from '../engines/index.js';

export interface DkvKvServiceContext extends ServiceContext {
  readonly maxRequestBytes: number;
}

const emptyTxn = { compare: [], success: [], failure: [] };

export function createDkvKvService(ctx: DkvKvServiceContext): { definition: ReturnType<typeof serviceDefinition>; implementation: grpc.UntypedServiceImplementation } {

  const checkSize = (raw: Buffer): void => {
    if (raw.length > ctx.maxRequestBytes) throw dkvError('request-too-large');
  };

  // The caller's permissions are checked where the command is applied (the auth guard knows the
  // keys of a put, a txn and its fence); a refusal comes back as the proposal's error.
  const propose = async (shard: ShardHandle, command: EngineCommand, caller: Caller): Promise<TtlOutcome> => {
    const outcome = ttlOutcome((await shard.propose(command, callerOptions(ctx, caller))).outcome);
    if (outcome.kind === 'error') throw outcome.error;
    return outcome;
  };

  const implementation: grpc.UntypedServiceImplementation = {
    Put: unary<WireDkvPutRequest>(async ({ raw, message }, call) => {
      checkSize(raw);
      checkPut(message);
      ttlMsFromWire(message.ttl_ms);
      const fence = fenceFromWire(message.fence);
      // The fence key must live on the shard that applies the write.
      const shard = ctx.router.forKeys(fence === undefined ? [message.key] : [message.key, fence.key]);
      checkLeasesOfShard(ctx.router, shard, [int64Exact(message.lease)]);
      ctx.quota?.check(shard, putCost(message));
      const outcome = await propose(shard, dkvPutCommand(raw), await ctx.gate.permitted(call));
      if (outcome.kind !== 'put') throw new Error(`dkv put applied as ${outcome.kind}`);
      return { header: responseHeader(ctx, shard, outcome.result.revision), ...putToWire(outcome.result) };
    }),
    Txn: unary<WireDkvTxnRequest>(async ({ raw, message }, call) => {
      checkSize(raw);
      const txn = message.txn ?? emptyTxn;
      checkTxn(txn);
      const ttls = keyTtlsFromWire(message.ttls);
      const fence = fenceFromWire(message.fence);
      const ranges = txnRanges(txn);
      for (const name of ttls.keys()) ranges.push({ key: Buffer.from(name, 'latin1') });
      if (fence !== undefined) ranges.push({ key: fence.key });
      const shard = ctx.router.forRanges(ranges);
      checkLeasesOfShard(ctx.router, shard, txnLeases(txnFromWire(txn)));
      ctx.quota?.check(shard, txnCost(txn));
      const outcome = await propose(shard, dkvTxnCommand(raw), await ctx.gate.permitted(call));
      if (outcome.kind !== 'txn') throw new Error(`dkv txn applied as ${outcome.kind}`);
      const header = responseHeader(ctx, shard, outcome.result.revision);
      return { header, ...txnToWire(outcome.result, header) };
    }),
  };
  return { definition: serviceDefinition('dkv.v1.KV', dkvRoot()), implementation };
}
