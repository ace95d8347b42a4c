/**
 * The etcd v3 protos (proto/etcd: etcdserverpb's services, and the Lock and Election services of
 * v3lockpb and v3electionpb), loaded once with protobufjs, and the shapes of the decoded messages
 * this code reads. Field names stay as in the .proto files (snake_case); int64 fields
 * decode as `Long` and are converted once, here at the edge, by the int64 functions below, each
 * saying what happens to a value beyond 2^53.
 *
 * protobufjs and the protos are loaded on first use (`etcdRoot()`, `etcdType()` …), not when this
 * module is imported: what imports it and never encodes a message (`dkv --help`, a usage error)
 * skips most of its start-up (test/cli/lazy-load.test.ts).
 */
import { strict as assert } from 'node:assert';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type protobuf from 'protobufjs';
import * as mvccLimits from '../storage/mvcc/limits.js';
import { packageRoot } from './package-root.js';

// ---- Message nesting -------------------------------------------------------------------------

/**
 * Levels of txn nesting a request may have and still decode. Deeper than `txnDepthMax` is refused
 * by the KV service's checkTxn with etcd's own error; decoding twice that far means a request
 * nested a little too deep gets that error rather than grpc's "Error deserializing request".
 * Beyond this (absurd nesting) the decoder itself refuses the call. Either way nothing is proposed.
 */
export const txnDepthDecodedMax = 2 * mvccLimits.txnDepthMax;

/**
 * How deep protobufjs nests messages when it decodes, encodes or converts (its default is protoc's
 * 100, which cut etcd's txns off at 50 levels). protobufjs counts from 0 at the top message: a txn
 * at depth d is at 2(d-1) (TxnRequest, RequestOp, TxnRequest, …), its ops' requests at 2d, and a
 * response reaches one level more (a KeyValue in a RangeResponse or a PutResponse's prev_kv at
 * 2d+1). So 2·depth + 1 covers a request and its response at that depth.
 */
export const messageDepthMax = 2 * txnDepthDecodedMax + 1;

// Every response to a txn the store accepts must encode (and every request it can get, decode).
assert(messageDepthMax >= 2 * mvccLimits.txnDepthMax + 1, 'a txn response at the depth limit must encode');
assert(txnDepthDecodedMax > mvccLimits.txnDepthMax, 'a request past the depth limit must decode, to be refused clearly');

let protobufLoaded: typeof protobuf | undefined;

/**
 * protobufjs, with its nesting limits set, loaded on first use. A CommonJS require, so that it is
 * synchronous like the lookups that need it (the same module instance an `import` gets).
 */
function protobufjs(): typeof protobuf {
  if (protobufLoaded === undefined) {
    protobufLoaded = createRequire(import.meta.url)('protobufjs') as typeof protobuf;
    protobufLoaded.util.recursionLimit = messageDepthMax;
    protobufLoaded.Reader.recursionLimit = messageDepthMax;
  }
  return protobufLoaded;
}

const base = join(packageRoot, 'proto', 'etcd');

function loadRoot(): protobuf.Root {
  const root = new (protobufjs().Root)();
  root.resolvePath = (_origin, target) => (target.startsWith(base) ? target : join(base, target));
  // The lock and election services import rpc.proto's messages: one root holds them all.
  root.loadSync(['etcdserverpb/rpc.proto', 'v3lockpb/v3lock.proto', 'v3electionpb/v3election.proto'], { keepCase: true });
  root.resolveAll();
  return root;
}

let etcdRootLoaded: protobuf.Root | undefined;

/** etcd's protos, parsed on the first call. */
export function etcdRoot(): protobuf.Root {
  etcdRootLoaded ??= loadRoot();
  return etcdRootLoaded;
}

const protoBase = join(packageRoot, 'proto');

/** DKV's own extensions (proto/dkv), which import etcd's messages. */
function loadDkvRoot(): protobuf.Root {
  const root = new (protobufjs().Root)();
  // etcd's files import each other relative to proto/etcd; DKV's name them from proto/.
  root.resolvePath = (origin, target) => {
    if (target.startsWith(protoBase)) return target;
    return join(origin.startsWith(base) ? base : protoBase, target);
  };
  root.loadSync(['dkv/v1/watch.proto', 'dkv/v1/kv.proto', 'dkv/v1/counter.proto', 'dkv/v1/admin.proto'], { keepCase: true });
  root.resolveAll();
  return root;
}

let dkvRootLoaded: protobuf.Root | undefined;

/** DKV's protos (with the etcd messages they import), parsed on the first call. */
export function dkvRoot(): protobuf.Root {
  dkvRootLoaded ??= loadDkvRoot();
  return dkvRootLoaded;
}

export function dkvType(name: string): protobuf.Type {
  return dkvRoot().lookupType(name);
}

export function etcdType(name: string): protobuf.Type {
  return etcdRoot().lookupType(name);
}

export function etcdService(name: string): protobuf.Service {
  return etcdRoot().lookupService(name);
}

// ---- int64 fields ----------------------------------------------------------------------------

/** What protobufjs hands back for an int64/uint64 field (a long.js `Long`). */
export interface LongLike {
  toNumber(): number;
  high: number;
  low: number;
  unsigned?: boolean;
}

export type Int64 = number | LongLike | string | bigint | undefined | null;

/**
 * A wire value the request edge refuses (gRPC INVALID_ARGUMENT). Deterministic, so the apply path
 * returns it to the client instead of stopping the node. `code` says which client error it is.
 */
export class WireValueError extends Error {
  override readonly name = 'WireValueError';

  constructor(
    message: string,
    readonly code: 'invalid-argument' | 'invalid-sort-option' = 'invalid-argument',
  ) {
    super(message);
  }
}

const INT64_MIN = -(2n ** 63n);
const UINT64_MAX = 2n ** 64n - 1n;
const maxSafe = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * The exact value of an int64 or uint64 field, as a bigint (lease ids, and wherever a value past
 * 2^53 must not change). Absent is 0n. A number must be an integer (it is taken as it is).
 */
export function int64Exact(value: Int64): bigint {
  if (value === undefined || value === null) return 0n;
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number') return BigInt(value);
  if (typeof value === 'string') {
    if (!/^-?[0-9]+$/.test(value)) throw new WireValueError(`${JSON.stringify(value)} is not a decimal integer`);
    const parsed = BigInt(value);
    if (parsed < INT64_MIN || parsed > UINT64_MAX) throw new WireValueError(`${value} is outside the 64-bit range`);
    return parsed;
  }
  const bits = (BigInt(value.high >>> 0) << 32n) | BigInt(value.low >>> 0);
  return value.unsigned === true ? bits : BigInt.asIntN(64, bits);
}

/**
 * The value as the nearest double. Rounding is monotonic, so the result is a safe integer exactly
 * when the value is one, and has the value's sign.
 */
function nearestNumber(value: Exclude<Int64, undefined | null>): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'bigint') return Number(value);
  if (typeof value === 'string') return Number(int64Exact(value));
  return value.toNumber();
}

/** The value as a number when it is a safe integer (|v| < 2^53), else undefined. Absent is 0. */
export function int64IfSafe(value: Int64): number | undefined {
  if (value === undefined || value === null) return 0;
  const number = nearestNumber(value);
  return Number.isSafeInteger(number) ? number : undefined;
}

/**
 * Saturating: the exact value inside ±(2^53 - 1), else the nearest of those bounds. For
 * revisions, versions, limits and revision filters, whose meaning this keeps: the store never
 * reaches Number.MAX_SAFE_INTEGER (`revisionMax` is one below), so a saturated value compares
 * with every revision, version and count exactly as the int64 would (a revision past 2^53 is
 * still a future revision, a limit past 2^53 still "no limit", a negative one still "current").
 */
export function int64Saturated(value: Int64): number {
  if (value === undefined || value === null) return 0;
  const number = nearestNumber(value);
  if (Number.isSafeInteger(number)) return number;
  assert(!Number.isNaN(number), 'an int64 field is not a number');
  return number > 0 ? Number.MAX_SAFE_INTEGER : -Number.MAX_SAFE_INTEGER;
}

/** The value as a number, refusing (WireValueError: invalid argument) one that is not a safe integer. */
export function int64Safe(value: Int64, what: string): number {
  const safe = int64IfSafe(value);
  if (safe === undefined) throw new WireValueError(`${what} ${int64Exact(value)} is not a safe integer (|v| < 2^53)`);
  return safe;
}

/**
 * A bigint for an int64 field of a message protobufjs encodes. protobufjs takes numbers, Longs and
 * decimal strings (never a bigint: it would silently encode 0), so safe values go as numbers and
 * the rest as exact decimal strings.
 */
export function int64ToWire(value: bigint): number | string {
  return value >= -maxSafe && value <= maxSafe ? Number(value) : value.toString();
}

/**
 * @deprecated Say what a value past 2^53 should do: `int64Saturated` (which this is), `int64Safe`,
 * `int64IfSafe` or `int64Exact`.
 */
export function int64(value: Int64): number {
  return int64Saturated(value);
}

export interface WireRangeRequest {
  key: Uint8Array;
  range_end: Uint8Array;
  limit: Int64;
  revision: Int64;
  sort_order: number;
  sort_target: number;
  serializable: boolean;
  keys_only: boolean;
  count_only: boolean;
  min_mod_revision: Int64;
  max_mod_revision: Int64;
  min_create_revision: Int64;
  max_create_revision: Int64;
}

export interface WirePutRequest {
  key: Uint8Array;
  value: Uint8Array;
  lease: Int64;
  prev_kv: boolean;
  ignore_value: boolean;
  ignore_lease: boolean;
}

export interface WireDeleteRangeRequest {
  key: Uint8Array;
  range_end: Uint8Array;
  prev_kv: boolean;
}

export interface WireCompare {
  result: number;
  target: number;
  key: Uint8Array;
  version?: Int64;
  create_revision?: Int64;
  mod_revision?: Int64;
  value?: Uint8Array;
  lease?: Int64;
  range_end: Uint8Array;
}

export interface WireRequestOp {
  request_range?: WireRangeRequest;
  request_put?: WirePutRequest;
  request_delete_range?: WireDeleteRangeRequest;
  request_txn?: WireTxnRequest;
}

export interface WireTxnRequest {
  compare: WireCompare[];
  success: WireRequestOp[];
  failure: WireRequestOp[];
}

export interface WireCompactionRequest {
  revision: Int64;
  physical: boolean;
}

export interface WireKeyValue {
  key: Uint8Array;
  create_revision: number;
  mod_revision: number;
  version: number;
  value: Uint8Array;
  /** int64ToWire of the lease id (exact past 2^53). */
  lease: number | string;
}

export interface WireResponseHeader {
  cluster_id: number;
  member_id: number;
  revision: number;
  raft_term: number;
}

// ---- Lock and Election (v3lockpb, v3electionpb) ---------------------------------------------

export interface WireLockRequest {
  name: Uint8Array;
  lease: Int64;
}

export interface WireUnlockRequest {
  key: Uint8Array;
}

export interface WireCampaignRequest {
  name: Uint8Array;
  lease: Int64;
  value: Uint8Array;
}

export interface WireLeaderKey {
  name: Uint8Array;
  key: Uint8Array;
  rev: Int64;
  lease: Int64;
}

export interface WireLeaderRequest {
  name: Uint8Array;
}

export interface WireProclaimRequest {
  /** Absent when the client sent none (etcd: `"leader" field must be provided`). */
  leader?: WireLeaderKey | null;
  value: Uint8Array;
}

export interface WireResignRequest {
  leader?: WireLeaderKey | null;
}

// ---- dkv.v1.KV (proto/dkv/v1/kv.proto) -----------------------------------------------------

/** An unset message field decodes as null. */
export interface WireFence {
  key: Uint8Array;
  token: Int64;
}

export interface WireDkvPutRequest extends WirePutRequest {
  ttl_ms: Int64;
  fence?: WireFence | null;
}

export interface WireKeyTtl {
  key: Uint8Array;
  ttl_ms: Int64;
}

export interface WireDkvTxnRequest {
  txn?: WireTxnRequest | null;
  ttls: WireKeyTtl[];
  fence?: WireFence | null;
}
