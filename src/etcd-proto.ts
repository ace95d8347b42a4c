/**
 * The etcd v3 protos (proto/etcd), loaded once with protobufjs, and the shapes of the decoded
 * messages this code reads. Field names stay as in the .proto files (snake_case); int64 fields
 * decode as `Long` and are converted to numbers once, here at the edge (`int64`).
 */
import { strict as assert } from 'node:assert';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { mvccLimits } from '../storage/index';

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

protobuf.util.recursionLimit = messageDepthMax;
protobuf.Reader.recursionLimit = messageDepthMax;
// Every response to a txn the store accepts must encode (and every request it can get, decode).
assert(messageDepthMax >= 2 * mvccLimits.txnDepthMax + 1, 'a txn response at the depth limit must encode');
assert(txnDepthDecodedMax > mvccLimits.txnDepthMax, 'a request past the depth limit must decode, to be refused clearly');


const base = join(dirname(fileURLToPath(import.meta.url)), '..', 'proto', 'etcd');

function loadRoot(): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (target.startsWith(base) ? target : join(base, target));
  root.loadSync('etcdserverpb/rpc.proto', { keepCase: true });
  root.resolveAll();
  return root;
}

export const etcdRoot = loadRoot();

const protoBase = join(dirname(fileURLToPath(import.meta.url)), '..', 'proto');

/** DKV's own extensions (proto/dkv), which import etcd's messages. */
function loadDkvRoot(): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (target.startsWith(protoBase) ? target : join(protoBase, target));
  root.loadSync('dkv/v1/watch.proto', { keepCase: true });
  root.resolveAll();
  return root;
}

export const dkvRoot = loadDkvRoot();

export function etcdType(name: string): protobuf.Type {
  return etcdRoot.lookupType(name);
}

export function etcdService(name: string): protobuf.Service {
  return etcdRoot.lookupService(name);
}

/** What protobufjs hands back for an int64/uint64 field. */
export interface LongLike {
  toNumber(): number;
  high: number;
  low: number;
}

export type Int64 = number | LongLike | string | undefined | null;

/**
 * An int64 from the wire as a JS number. Values beyond 2^53 lose precision; revisions, lease ids
 * and member ids never get there (they are created below 2^53 by this code).
 */
export function int64(value: Int64): number {
  if (value === undefined || value === null) return 0;
  if (typeof value === 'number') return value;
  if (typeof value === 'string') return Number(value);
  return value.toNumber();
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
  lease: number;
}

export interface WireResponseHeader {
  cluster_id: number;
  member_id: number;
  revision: number;
  raft_term: number;
}
