/**
 * KV requests and results: the options callers give, the wire requests they become, and the
 * plain results they get back. Used by `DkvClient` and by txn operations alike.
 */
import type { Decoded } from './etcd-channel.js';
import { invalidArgument } from './errors.js';
import { type Bytes, checkRevision, headerFromWire, kvFromWire, type KeyValue, type LeaseId, leaseToWire, listOf, prefixRangeEnd, type ResponseHeader, revisionFromWire, toBytes } from './wire.js';

/** Which keys a range covers beyond `key` itself. */
export interface RangeSelector {
  /** Every key starting with `key`. */
  readonly prefix?: boolean;
  /** Keys in [key, rangeEnd); "\0" means every key >= key. */
  readonly rangeEnd?: Bytes;
}

/** The order of a range's results. */
export type SortOrder = 'none' | 'ascend' | 'descend';
/** What a range's results are sorted by. */
export type SortTarget = 'key' | 'version' | 'create' | 'mod' | 'value';

/** Options of `get` and `range`. */
export interface RangeOptions extends RangeSelector {
  /** At most this many keys (0: no limit). */
  readonly limit?: number;
  /** Read at this revision (0: the current one). */
  readonly revision?: number;
  readonly sortOrder?: SortOrder;
  readonly sortTarget?: SortTarget;
  /** Served by the answering member from its own state, without a leader round (may be stale). */
  readonly serializable?: boolean;
  /** Keys without values. */
  readonly keysOnly?: boolean;
  /** Only the count. */
  readonly countOnly?: boolean;
  readonly minModRevision?: number;
  readonly maxModRevision?: number;
  readonly minCreateRevision?: number;
  readonly maxCreateRevision?: number;
}

/** The result of `range`. */
export interface RangeResult {
  readonly kvs: KeyValue[];
  /** More keys matched than `limit` let through. */
  readonly more: boolean;
  /** How many keys matched. */
  readonly count: number;
  readonly header: ResponseHeader;
}

/** Options of `put`. */
export interface PutOptions {
  /** Attach the key to this lease. */
  readonly lease?: LeaseId;
  /** Return the key's previous version. */
  readonly prevKv?: boolean;
  /** Keep the current value (update the lease only). */
  readonly ignoreValue?: boolean;
  /** Keep the current lease. */
  readonly ignoreLease?: boolean;
}

/** The result of `put`. */
export interface PutResult {
  readonly header: ResponseHeader;
  /** With `prevKv`: the key before the put, if it existed. */
  readonly prevKv?: KeyValue;
}

/** Options of `delete`. */
export interface DeleteOptions extends RangeSelector {
  /** Return the deleted keys. */
  readonly prevKv?: boolean;
}

/** The result of `delete`. */
export interface DeleteResult {
  readonly deleted: number;
  readonly prevKvs: KeyValue[];
  readonly header: ResponseHeader;
}

/** Marks a write as safe to send again when its outcome is unknown (the caller vouches for it). */
export interface IdempotentOption {
  readonly idempotent?: boolean;
}

/** Per-call options every operation takes. */
export interface CallOptionsCommon {
  /** This call's deadline, retries included (the client's `timeoutMs` when absent). */
  readonly timeoutMs?: number;
  /** Aborts the call (it rejects with `ABORTED`). */
  readonly signal?: AbortSignal;
}

const sortOrders: Readonly<Record<SortOrder, number>> = { none: 0, ascend: 1, descend: 2 };
const sortTargets: Readonly<Record<SortTarget, number>> = { key: 0, version: 1, create: 2, mod: 3, value: 4 };

function rangeEndOf(key: Buffer, selector: RangeSelector): Buffer | undefined {
  if (selector.prefix === true && selector.rangeEnd !== undefined) throw invalidArgument('give prefix or rangeEnd, not both');
  if (selector.prefix === true) return prefixRangeEnd(key);
  return selector.rangeEnd === undefined ? undefined : toBytes(selector.rangeEnd, 'rangeEnd');
}

/** @internal */
export function rangeRequest(key: Bytes, options: RangeOptions = {}): Decoded {
  const keyBytes = toBytes(key);
  const rangeEnd = rangeEndOf(keyBytes, options);
  const sortOrder = options.sortOrder ?? 'none';
  const sortTarget = options.sortTarget ?? 'key';
  if (!(sortOrder in sortOrders)) throw invalidArgument(`sortOrder must be one of ${Object.keys(sortOrders).join(', ')}`);
  if (!(sortTarget in sortTargets)) throw invalidArgument(`sortTarget must be one of ${Object.keys(sortTargets).join(', ')}`);
  return {
    key: keyBytes,
    ...(rangeEnd === undefined ? {} : { range_end: rangeEnd }),
    limit: checkRevision(options.limit, 'limit'),
    revision: checkRevision(options.revision, 'revision'),
    sort_order: sortOrders[sortOrder],
    sort_target: sortTargets[sortTarget],
    serializable: options.serializable === true,
    keys_only: options.keysOnly === true,
    count_only: options.countOnly === true,
    min_mod_revision: checkRevision(options.minModRevision, 'minModRevision'),
    max_mod_revision: checkRevision(options.maxModRevision, 'maxModRevision'),
    min_create_revision: checkRevision(options.minCreateRevision, 'minCreateRevision'),
    max_create_revision: checkRevision(options.maxCreateRevision, 'maxCreateRevision'),
  };
}

/** @internal */
export function rangeResult(response: Decoded, header = headerFromWire(response.header)): RangeResult {
  return { kvs: listOf(response.kvs).map(kvFromWire), more: response.more === true, count: revisionFromWire(response.count, 'count'), header };
}

/** @internal */
export function putRequest(key: Bytes, value: Bytes, options: PutOptions = {}): Decoded {
  return {
    key: toBytes(key),
    value: toBytes(value, 'value'),
    lease: leaseToWire(options.lease),
    prev_kv: options.prevKv === true,
    ignore_value: options.ignoreValue === true,
    ignore_lease: options.ignoreLease === true,
  };
}

/** @internal */
export function putResult(response: Decoded, header = headerFromWire(response.header)): PutResult {
  return response.prev_kv !== undefined && response.prev_kv !== null ? { header, prevKv: kvFromWire(response.prev_kv) } : { header };
}

/** @internal */
export function deleteRequest(key: Bytes, options: DeleteOptions = {}): Decoded {
  const keyBytes = toBytes(key);
  const rangeEnd = rangeEndOf(keyBytes, options);
  return { key: keyBytes, ...(rangeEnd === undefined ? {} : { range_end: rangeEnd }), prev_kv: options.prevKv === true };
}

/** @internal */
export function deleteResult(response: Decoded, header = headerFromWire(response.header)): DeleteResult {
  return { deleted: revisionFromWire(response.deleted, 'deleted'), prevKvs: listOf(response.prev_kvs).map(kvFromWire), header };
}
