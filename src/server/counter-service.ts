/**
 * The `dkv.v1.Counter` service (a DKV extension): atomic int64 counters kept as keys of the
 * store (src/engines/counter). Increment, Decrement, Set and Delete are counter-engine commands
 * proposed through Raft on the shard that owns the key (a follower's proposal travels to the
 * leader, and the answer comes when this node applies it); Get reads this node's state after a
 * ReadIndex round unless `serializable`, as a KV Range does. Every field is checked here, before
 * anything is proposed.
 */
import type * as grpc from '@grpc/grpc-js';
import { type CounterOutcome, counterLimits, counterOutcome, deleteCommand, incrementCommand, isInt64, parseCounterValue, setCommand } from '../engines/counter/index.js';
import type { EngineCommand } from '../engines/index.js';
import { dkvRoot, type Int64, int64Exact, int64ToWire } from '../etcd-proto.js';
import { dkvError } from '../errors.js';
import { type ShardHandle, counterEngineOf, kvEngineOf } from '../runtime/index.js';
import { notServed } from './kv-service.js';
import { serviceDefinition } from './grpc-service.js';
import { counterWriteCost } from './quota.js';
import { type ServiceContext, type UnaryCall, callerOptions, requestOptions, responseHeader, unary } from './service-common.js';
import { type Caller, PermissionType } from '../engines/index.js';

export interface CounterServiceContext extends ServiceContext {
  readonly maxRequestBytes: number;
}

interface WireIncrementRequest {
  key?: Uint8Array;
  delta?: Int64;
  ttl_ms?: Int64;
}

interface WireGetRequest {
  key?: Uint8Array;
  serializable?: boolean;
}

interface WireSetRequest {
  key?: Uint8Array;
  value?: Int64;
  ttl_ms?: Int64;
}

interface WireDeleteRequest {
  key?: Uint8Array;
}

function checkKey(key: Uint8Array | undefined): Uint8Array {
  if (key === undefined || key.length === 0) throw dkvError('empty-key');
  if (key.length > counterLimits.counterKeyBytesMax) throw dkvError('request-too-large');
  return key;
}

/** A TTL in [0, counterTtlMsMax] ms. */
function checkTtl(value: Int64): number {
  const ttlMs = int64Exact(value);
  if (ttlMs < 0n || ttlMs > BigInt(counterLimits.counterTtlMsMax)) throw dkvError('invalid-argument', `ttl_ms must be between 0 and ${counterLimits.counterTtlMsMax}, got ${ttlMs}`);
  return Number(ttlMs);
}

/** An int64 field's value (protobufjs hands int64 as a signed Long: never outside, checked anyway). */
function checkInt64(value: Int64, what: string): bigint {
  const exact = int64Exact(value);
  if (!isInt64(exact)) throw dkvError('invalid-argument', `${what} ${exact} is outside int64`);
  return exact;
}

export function createCounterService(ctx: CounterServiceContext): { definition: ReturnType<typeof serviceDefinition>; implementation: grpc.UntypedServiceImplementation } {
  const options = requestOptions(ctx);

  const checkSize = (raw: Buffer): void => {
    if (raw.length > ctx.maxRequestBytes) throw dkvError('request-too-large');
  };

  /** A TTL needs a TTL scheduler in this build (one without refuses TTL commands before they are proposed). */
  const checkTtlCapable = (shard: ShardHandle, ttlMs: number): void => {
    if (ttlMs > 0 && !counterEngineOf(shard.machine()).ttlCapable) throw dkvError('counter-ttl-unavailable');
  };

  // A counter write reads and writes its key: the guard checks both where it is applied.
  const propose = async (shard: ShardHandle, command: EngineCommand, caller: Caller): Promise<CounterOutcome> => {
    const outcome = counterOutcome((await shard.propose(command, callerOptions(ctx, caller))).outcome);
    if (outcome.kind === 'error') throw outcome.error;
    return outcome;
  };

  const valueResponse = async (shard: ShardHandle, command: EngineCommand, caller: Caller): Promise<object> => {
    const outcome = await propose(shard, command, caller);
    if (outcome.kind !== 'incremented' && outcome.kind !== 'set') throw new Error(`counter write applied as ${outcome.kind}`);
    return { header: responseHeader(ctx, shard, outcome.revision), value: int64ToWire(outcome.value), exists: true };
  };

  /** Increment by `sign` × delta (Decrement is Increment by -delta). */
  const increment = (sign: 1n | -1n) => async ({ raw, message }: { raw: Buffer; message: WireIncrementRequest }, call: UnaryCall<WireIncrementRequest>): Promise<object> => {
    checkSize(raw);
    const key = checkKey(message.key);
    const delta = checkInt64(message.delta, 'delta');
    if (delta === 0n) throw dkvError('invalid-argument', 'delta must not be 0');
    const amount = sign * delta;
    // -(-2^63) is 2^63: no int64 counter can take that step.
    if (!isInt64(amount)) throw dkvError('counter-overflow');
    const ttlMs = checkTtl(message.ttl_ms);
    const shard = ctx.router.forKey(key);
    checkTtlCapable(shard, ttlMs);
    ctx.quota?.check(shard, counterWriteCost(key));
    return valueResponse(shard, incrementCommand(key, amount, ttlMs), await ctx.gate.permitted(call));
  };

  const implementation: grpc.UntypedServiceImplementation = {
    Increment: unary<WireIncrementRequest>(increment(1n)),
    Decrement: unary<WireIncrementRequest>(increment(-1n)),
    Set: unary<WireSetRequest>(async ({ raw, message }, call) => {
      checkSize(raw);
      const key = checkKey(message.key);
      const value = checkInt64(message.value, 'value');
      const ttlMs = checkTtl(message.ttl_ms);
      const shard = ctx.router.forKey(key);
      checkTtlCapable(shard, ttlMs);
      ctx.quota?.check(shard, counterWriteCost(key));
      return valueResponse(shard, setCommand(key, value, ttlMs), await ctx.gate.permitted(call));
    }),
    Get: unary<WireGetRequest>(async ({ raw, message }, call) => {
      checkSize(raw);
      const key = checkKey(message.key);
      const shard = ctx.router.forKey(key);
      if (message.serializable !== true) await shard.read(options);
      const caller = ctx.gate.caller(call);
      if (ctx.gate.enabled) ctx.gate.checkKeys(caller, [{ key, rangeEnd: new Uint8Array(0), type: PermissionType.Read }]);
      if (!kvEngineOf(shard.machine()).owns(key)) throw notServed();
      const mvcc = kvEngineOf(shard.machine()).mvcc;
      const found = mvcc.range({ key }).kvs[0];
      const header = responseHeader(ctx, shard, mvcc.revision);
      if (found === undefined) return { header, value: 0, exists: false };
      const value = parseCounterValue(found.value);
      if (value === undefined) throw dkvError('counter-not-a-number');
      return { header, value: int64ToWire(value), exists: true };
    }),
    Delete: unary<WireDeleteRequest>(async ({ raw, message }, call) => {
      checkSize(raw);
      const key = checkKey(message.key);
      const shard = ctx.router.forKey(key);
      const outcome = await propose(shard, deleteCommand(key), await ctx.gate.permitted(call));
      if (outcome.kind !== 'deleted') throw new Error(`counter delete applied as ${outcome.kind}`);
      return { header: responseHeader(ctx, shard, outcome.revision), deleted: outcome.deleted };
    }),
  };
  return { definition: serviceDefinition('dkv.v1.Counter', dkvRoot()), implementation };
}
