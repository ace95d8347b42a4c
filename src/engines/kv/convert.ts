/**
 * etcd wire messages (decoded protobuf, snake_case) to the MVCC store's requests and back. Pure
 * functions; validation of sizes and required fields happens before, at the request edge.
 *
 * int64 fields, field by field (see src/etcd-proto.ts):
 * - lease ids (Put.lease, Compare LEASE, KeyValue.lease): exact bigints both ways, any int64.
 * - revisions, versions, the range limit and the revision filters: saturated to ±(2^53 - 1),
 *   which keeps their meaning (the store stays below that): past 2^53 a range revision is still
 *   a future revision, a limit still no limit, a compare still greater than every revision.
 */
import type {
  Compare,
  CompareResult,
  CompareTarget,
  DeleteRangeRequest,
  DeleteRangeResponse,
  KeyValue,
  MvccEvent,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  RequestOp,
  ResponseOp,
  SortOrder,
  SortTarget,
  TxnRequest,
  TxnResponse,
} from '../../../storage/index.js';
import {
  type Int64,
  int64Exact,
  int64Saturated,
  int64ToWire,
  WireValueError,
  type WireCompare,
  type WireDeleteRangeRequest,
  type WireKeyValue,
  type WirePutRequest,
  type WireRangeRequest,
  type WireRequestOp,
  type WireTxnRequest,
} from '../../etcd-proto.js';

const SORT_ORDERS: readonly SortOrder[] = ['none', 'ascend', 'descend'];
const SORT_TARGETS: readonly SortTarget[] = ['key', 'version', 'create', 'mod', 'value'];
const COMPARE_RESULTS: readonly CompareResult[] = ['equal', 'greater', 'less', 'not-equal'];
const COMPARE_TARGETS: readonly CompareTarget[] = ['version', 'create', 'mod', 'value', 'lease'];

export { WireValueError };

const EMPTY = new Uint8Array(0);

function bytes(value: Uint8Array | undefined | null): Uint8Array {
  return value ?? EMPTY;
}

function optionalEnd(end: Uint8Array | undefined | null): Uint8Array | undefined {
  return end === undefined || end === null || end.length === 0 ? undefined : end;
}

function pick<T>(table: readonly T[], value: number | undefined, what: string, code: WireValueError['code'] = 'invalid-argument'): T {
  const found = table[value ?? 0];
  if (found === undefined) throw new WireValueError(`unknown ${what} ${value}`, code);
  return found;
}

export function rangeFromWire(r: WireRangeRequest): RangeRequest {
  return {
    key: bytes(r.key),
    rangeEnd: optionalEnd(r.range_end),
    revision: int64Saturated(r.revision),
    limit: int64Saturated(r.limit),
    countOnly: r.count_only === true,
    keysOnly: r.keys_only === true,
    sortOrder: pick(SORT_ORDERS, r.sort_order, 'sort order', 'invalid-sort-option'),
    sortTarget: pick(SORT_TARGETS, r.sort_target, 'sort target', 'invalid-sort-option'),
    minModRevision: int64Saturated(r.min_mod_revision),
    maxModRevision: int64Saturated(r.max_mod_revision),
    minCreateRevision: int64Saturated(r.min_create_revision),
    maxCreateRevision: int64Saturated(r.max_create_revision),
  };
}

/** The wire form of a Range request (the inverse of rangeFromWire): a part of a Range asked of another member. */
export function rangeRequestToWire(r: RangeRequest): WireRangeRequest {
  return {
    key: r.key,
    range_end: r.rangeEnd,
    revision: r.revision ?? 0,
    limit: r.limit ?? 0,
    count_only: r.countOnly === true,
    keys_only: r.keysOnly === true,
    sort_order: SORT_ORDERS.indexOf(r.sortOrder ?? 'none'),
    sort_target: SORT_TARGETS.indexOf(r.sortTarget ?? 'key'),
    min_mod_revision: r.minModRevision ?? 0,
    max_mod_revision: r.maxModRevision ?? 0,
    min_create_revision: r.minCreateRevision ?? 0,
    max_create_revision: r.maxCreateRevision ?? 0,
  } as WireRangeRequest;
}

/** A Range response as decoded off the wire (the inverse of rangeToWire), with its header's revision. */
export function rangeResponseFromWire(r: { kvs?: readonly WireKeyValue[] | null; more?: boolean | null; count?: Int64 }, revision: number): RangeResponse {
  return {
    kvs: (r.kvs ?? []).map((kv) => ({
      key: bytes(kv.key),
      createRevision: int64Saturated(kv.create_revision),
      modRevision: int64Saturated(kv.mod_revision),
      version: int64Saturated(kv.version),
      value: bytes(kv.value),
      lease: int64Exact(kv.lease),
    })),
    more: r.more === true,
    count: int64Saturated(r.count),
    revision,
  };
}

export function putFromWire(r: WirePutRequest): PutRequest {
  return {
    key: bytes(r.key),
    value: bytes(r.value),
    lease: int64Exact(r.lease),
    prevKv: r.prev_kv === true,
    ignoreValue: r.ignore_value === true,
    ignoreLease: r.ignore_lease === true,
  };
}

export function deleteRangeFromWire(r: WireDeleteRangeRequest): DeleteRangeRequest {
  return { key: bytes(r.key), rangeEnd: optionalEnd(r.range_end), prevKv: r.prev_kv === true };
}

export function compareFromWire(c: WireCompare): Compare {
  const target = pick(COMPARE_TARGETS, c.target, 'compare target');
  let value: number | bigint | Uint8Array;
  switch (target) {
    case 'version':
      value = int64Saturated(c.version);
      break;
    case 'create':
      value = int64Saturated(c.create_revision);
      break;
    case 'mod':
      value = int64Saturated(c.mod_revision);
      break;
    case 'lease':
      value = int64Exact(c.lease);
      break;
    case 'value':
      value = bytes(c.value);
      break;
  }
  return { key: bytes(c.key), rangeEnd: optionalEnd(c.range_end), target, result: pick(COMPARE_RESULTS, c.result, 'compare result'), value };
}

export function requestOpFromWire(op: WireRequestOp): RequestOp {
  if (op.request_range) return { type: 'range', range: rangeFromWire(op.request_range) };
  if (op.request_put) return { type: 'put', put: putFromWire(op.request_put) };
  if (op.request_delete_range) return { type: 'deleteRange', deleteRange: deleteRangeFromWire(op.request_delete_range) };
  if (op.request_txn) return { type: 'txn', txn: txnFromWire(op.request_txn) };
  throw new WireValueError('a txn operation with no request set');
}

export function txnFromWire(t: WireTxnRequest): TxnRequest {
  return {
    compare: (t.compare ?? []).map(compareFromWire),
    success: (t.success ?? []).map(requestOpFromWire),
    failure: (t.failure ?? []).map(requestOpFromWire),
  };
}

// ---- Responses (without the header, which the server adds) ----------------------------------

export function keyValueToWire(kv: KeyValue): WireKeyValue {
  return {
    key: kv.key,
    create_revision: kv.createRevision,
    mod_revision: kv.modRevision,
    version: kv.version,
    value: kv.value,
    lease: int64ToWire(kv.lease),
  };
}

/** An MVCC event as mvccpb.Event (type PUT = 0, DELETE = 1; prev_kv when the event has one). */
export function eventToWire(event: MvccEvent): object {
  return {
    type: event.type === 'put' ? 0 : 1,
    kv: keyValueToWire(event.kv),
    prev_kv: event.prevKv === undefined ? undefined : keyValueToWire(event.prevKv),
  };
}

export interface WireRangeResponse {
  kvs: WireKeyValue[];
  more: boolean;
  count: number;
}

export function rangeToWire(r: RangeResponse): WireRangeResponse {
  return { kvs: r.kvs.map(keyValueToWire), more: r.more, count: r.count };
}

export function putToWire(r: PutResponse): { prev_kv?: WireKeyValue } {
  return r.prevKv === undefined ? {} : { prev_kv: keyValueToWire(r.prevKv) };
}

export function deleteRangeToWire(r: DeleteRangeResponse): { deleted: number; prev_kvs: WireKeyValue[] } {
  return { deleted: r.deleted, prev_kvs: (r.prevKvs ?? []).map(keyValueToWire) };
}

export interface WireTxnResponse {
  succeeded: boolean;
  responses: object[];
}

function responseOpToWire(op: ResponseOp, header: object): object {
  switch (op.type) {
    case 'range':
      return { response_range: { header, ...rangeToWire(op.range) } };
    case 'put':
      return { response_put: { header, ...putToWire(op.put) } };
    case 'deleteRange':
      return { response_delete_range: { header, ...deleteRangeToWire(op.deleteRange) } };
    case 'txn':
      return { response_txn: { header, ...txnToWire(op.txn, header as { revision: number }) } };
  }
}

/** Responses inside a txn carry a header with only the revision, as etcd's do. */
export function txnToWire(r: TxnResponse, header: { revision: number }): WireTxnResponse {
  const inner = { revision: header.revision };
  return { succeeded: r.succeeded, responses: r.responses.map((op) => responseOpToWire(op, inner)) };
}
