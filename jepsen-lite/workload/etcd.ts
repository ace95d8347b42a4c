/**
 * Workload operations as etcd v3 requests, and etcd responses back as history outputs. Both
 * modes use exactly this mapping (real mode over gRPC, sim mode against the state machine), so
 * their histories have the same shape.
 *
 * Requests are protobufjs plain objects (snake_case, keys and values as `Uint8Array`) as in
 * `src/etcd-proto.ts`. Responses are read loosely: a decoded protobufjs message (int64 as `Long`,
 * defaults on the prototype) and a plain object built in-process (int64 as number) both work.
 */
import {
  int64,
  type Int64,
  type WireCompare,
  type WireDeleteRangeRequest,
  type WirePutRequest,
  type WireRangeRequest,
  type WireRequestOp,
  type WireTxnRequest,
} from '../../src/etcd-proto.js';
import { prefixEnd } from '../../storage/index.js';
import type { KvCompare, KvInput, KvOutput, KvRequest, KvResult, RegisterInput, RegisterOutput } from '../history.js';

export type EtcdCall =
  | { readonly method: 'range'; readonly request: WireRangeRequest }
  | { readonly method: 'put'; readonly request: WirePutRequest }
  | { readonly method: 'deleteRange'; readonly request: WireDeleteRangeRequest }
  | { readonly method: 'txn'; readonly request: WireTxnRequest };

export type EtcdMethod = EtcdCall['method'];

/** etcd's Compare.CompareResult and Compare.CompareTarget enum values (rpc.proto). */
export const compareResultEqual = 0;
export const compareTarget = { version: 0, create: 1, mod: 2, value: 3 } as const;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const EMPTY = new Uint8Array(0);

export function etcdKey(keyPrefix: string, key: string): Uint8Array {
  return encoder.encode(keyPrefix + key);
}

/** Every key of a run: what the watch workload's streams watch (etcd's prefix range). */
export function prefixRange(keyPrefix: string): { readonly key: Uint8Array; readonly rangeEnd: Uint8Array } {
  const key = encoder.encode(keyPrefix);
  if (key.length === 0) throw new TypeError('an empty key prefix has no range');
  return { key, rangeEnd: prefixEnd(key) };
}

// ---- Requests -------------------------------------------------------------------------------

/** A single-key linearizable read (serializable false: through ReadIndex on DKV, quorum on etcd). */
function rangeRequest(key: Uint8Array): WireRangeRequest {
  return {
    key,
    range_end: EMPTY,
    limit: 0,
    revision: 0,
    sort_order: 0,
    sort_target: 0,
    serializable: false,
    keys_only: false,
    count_only: false,
    min_mod_revision: 0,
    max_mod_revision: 0,
    min_create_revision: 0,
    max_create_revision: 0,
  };
}

function putRequest(key: Uint8Array, value: string, prevKv: boolean): WirePutRequest {
  return { key, value: encoder.encode(value), lease: 0, prev_kv: prevKv, ignore_value: false, ignore_lease: false };
}

function deleteRequest(key: Uint8Array): WireDeleteRangeRequest {
  return { key, range_end: EMPTY, prev_kv: false };
}

function compareToWire(compare: KvCompare, keyPrefix: string): WireCompare {
  const key = etcdKey(keyPrefix, compare.key);
  const base = { result: compareResultEqual, target: compareTarget[compare.target], key, range_end: EMPTY };
  switch (compare.target) {
    case 'value':
      return { ...base, value: encoder.encode(compare.value) };
    case 'mod':
      return { ...base, mod_revision: compare.value };
    case 'version':
      return { ...base, version: compare.value };
    case 'create':
      return { ...base, create_revision: compare.value };
  }
}

function requestOpToWire(request: KvRequest, keyPrefix: string): WireRequestOp {
  const key = etcdKey(keyPrefix, request.key);
  switch (request.f) {
    case 'get':
      return { request_range: rangeRequest(key) };
    case 'put':
      return { request_put: putRequest(key, request.value, true) };
    case 'delete':
      return { request_delete_range: deleteRequest(key) };
  }
}

export function toEtcdCall(input: RegisterInput | KvInput, keyPrefix: string): EtcdCall {
  switch (input.f) {
    case 'read':
    case 'get':
      return { method: 'range', request: rangeRequest(etcdKey(keyPrefix, input.key)) };
    case 'write':
      return { method: 'put', request: putRequest(etcdKey(keyPrefix, input.key), input.value, false) };
    case 'put':
      return { method: 'put', request: putRequest(etcdKey(keyPrefix, input.key), input.value, true) };
    case 'delete':
      return { method: 'deleteRange', request: deleteRequest(etcdKey(keyPrefix, input.key)) };
    case 'cas': {
      const key = etcdKey(keyPrefix, input.key);
      const compare: WireCompare = {
        result: compareResultEqual,
        target: compareTarget.value,
        key,
        range_end: EMPTY,
        value: encoder.encode(input.from),
      };
      return { method: 'txn', request: { compare: [compare], success: [{ request_put: putRequest(key, input.to, false) }], failure: [] } };
    }
    case 'txn':
      return {
        method: 'txn',
        request: {
          compare: input.compare.map((c) => compareToWire(c, keyPrefix)),
          success: input.success.map((r) => requestOpToWire(r, keyPrefix)),
          failure: input.failure.map((r) => requestOpToWire(r, keyPrefix)),
        },
      };
  }
}

// ---- Responses ------------------------------------------------------------------------------

type Bytes = Uint8Array | null | undefined;

export interface WireKeyValueIn {
  readonly key?: Bytes;
  readonly value?: Bytes;
  readonly create_revision?: Int64;
  readonly mod_revision?: Int64;
  readonly version?: Int64;
}

export interface WireResponseOpIn {
  readonly response_range?: EtcdResponse | null;
  readonly response_put?: EtcdResponse | null;
  readonly response_delete_range?: EtcdResponse | null;
  readonly response_txn?: EtcdResponse | null;
}

/** Any KV response (RangeResponse, PutResponse, DeleteRangeResponse, TxnResponse), read loosely. */
export interface EtcdResponse {
  readonly header?: { readonly revision?: Int64 } | null;
  readonly kvs?: readonly WireKeyValueIn[] | null;
  readonly count?: Int64;
  readonly prev_kv?: WireKeyValueIn | null;
  readonly deleted?: Int64;
  readonly succeeded?: boolean | null;
  readonly responses?: readonly WireResponseOpIn[] | null;
}

/** A response that does not fit its request: the server (or the mapping) is broken. */
export class ResponseShapeError extends TypeError {
  override readonly name = 'ResponseShapeError';
}

function text(bytes: Bytes): string {
  return decoder.decode(bytes ?? EMPTY);
}

function revisionOf(response: EtcdResponse, fallback?: number): number {
  const revision = response.header?.revision;
  if (revision === undefined || revision === null) {
    if (fallback !== undefined) return fallback;
    throw new ResponseShapeError('response without a header revision');
  }
  return int64(revision);
}

function firstKv(response: EtcdResponse): WireKeyValueIn | undefined {
  const kvs = response.kvs ?? [];
  if (kvs.length > 1) throw new ResponseShapeError(`a single-key range returned ${kvs.length} keys`);
  return kvs[0];
}

function getResult(response: EtcdResponse): Extract<KvResult, { f: 'get' }> {
  const kv = firstKv(response);
  if (kv === undefined) return { f: 'get', value: null, modRevision: 0, createRevision: 0, version: 0 };
  return {
    f: 'get',
    value: text(kv.value),
    modRevision: int64(kv.mod_revision),
    createRevision: int64(kv.create_revision),
    version: int64(kv.version),
  };
}

function kvResult(request: KvRequest, response: EtcdResponse): KvResult {
  switch (request.f) {
    case 'get':
      return getResult(response);
    case 'put':
      return { f: 'put', prevValue: response.prev_kv ? text(response.prev_kv.value) : null };
    case 'delete':
      return { f: 'delete', deleted: int64(response.deleted) };
  }
}

function responseOf(op: WireResponseOpIn | undefined, request: KvRequest): EtcdResponse {
  const inner = request.f === 'get' ? op?.response_range : request.f === 'put' ? op?.response_put : op?.response_delete_range;
  if (inner === undefined || inner === null) throw new ResponseShapeError(`txn response has no ${request.f} result where the request had one`);
  return inner;
}

function txnOutput(input: Extract<KvInput, { f: 'txn' }>, response: EtcdResponse): KvOutput {
  const revision = revisionOf(response);
  const succeeded = response.succeeded === true;
  const branch = succeeded ? input.success : input.failure;
  const responses = response.responses ?? [];
  if (responses.length !== branch.length) {
    throw new ResponseShapeError(`txn branch has ${branch.length} requests but ${responses.length} responses`);
  }
  return { f: 'txn', revision, succeeded, results: branch.map((request, i) => kvResult(request, responseOf(responses[i], request))) };
}

export function fromEtcdResponse(input: RegisterInput, response: EtcdResponse): RegisterOutput;
export function fromEtcdResponse(input: KvInput, response: EtcdResponse): KvOutput;
export function fromEtcdResponse(input: RegisterInput | KvInput, response: EtcdResponse): RegisterOutput | KvOutput;
export function fromEtcdResponse(input: RegisterInput | KvInput, response: EtcdResponse): RegisterOutput | KvOutput {
  switch (input.f) {
    case 'read': {
      const kv = firstKv(response);
      return { f: 'read', value: kv === undefined ? null : text(kv.value) };
    }
    case 'write':
      return { f: 'write' };
    case 'cas':
      return { f: 'cas', succeeded: response.succeeded === true };
    case 'get':
      return { ...getResult(response), revision: revisionOf(response) };
    case 'put':
    case 'delete':
      return { ...kvResult(input, response), revision: revisionOf(response) };
    case 'txn':
      return txnOutput(input, response);
  }
}

/** Whether the operation cannot change the store (every error of it is then a definite failure). */
export function isReadOnly(input: RegisterInput | KvInput): boolean {
  if (input.f === 'read' || input.f === 'get') return true;
  if (input.f === 'txn') return [...input.success, ...input.failure].every((r) => r.f === 'get');
  return false;
}
