/**
 * Transactions: compares (`compare.value(key, '=', 'x')` …), operations (`op.put(…)` …) and the
 * builder `client.txn().if(…).then(…).else(…).commit()`.
 */
import type { Decoded } from './etcd-channel.js';
import { invalidArgument } from './errors.js';
import { type DeleteOptions, type DeleteResult, deleteRequest, deleteResult, type PutOptions, type PutResult, putRequest, putResult, type RangeOptions, type RangeResult, rangeRequest, rangeResult } from './kv.js';
import { type Bytes, checkRevision, headerFromWire, type LeaseId, leaseToWire, listOf, prefixRangeEnd, type ResponseHeader, toBytes } from './wire.js';

/** A comparison operator. */
export type CompareOperator = '=' | '!=' | '>' | '<';

/** One compare of a txn (build it with `compare.*`). */
export interface Compare {
  /** @internal the wire form */
  readonly wire: Decoded;
}

const results: Readonly<Record<CompareOperator, number>> = { '=': 0, '>': 1, '<': 2, '!=': 3 };
const targets = { version: 0, create: 1, mod: 2, value: 3, lease: 4 } as const;

function makeCompare(key: Bytes, operator: CompareOperator, target: keyof typeof targets, field: string, value: unknown, options: { readonly prefix?: boolean } = {}): Compare {
  if (!(operator in results)) throw invalidArgument(`compare operator must be one of ${Object.keys(results).join(' ')}`);
  const keyBytes = toBytes(key);
  return { wire: { key: keyBytes, result: results[operator], target: targets[target], [field]: value, ...(options.prefix === true ? { range_end: prefixRangeEnd(keyBytes) } : {}) } };
}

/** Compare helpers. A key that does not exist has version, createRevision and modRevision 0. */
export const compare = {
  /** The key's value. */
  value: (key: Bytes, operator: CompareOperator, value: Bytes): Compare => makeCompare(key, operator, 'value', 'value', toBytes(value, 'value')),
  /** The key's version (0: the key does not exist). */
  version: (key: Bytes, operator: CompareOperator, version: number): Compare => makeCompare(key, operator, 'version', 'version', checkRevision(version, 'version')),
  /** The revision that created the key (0: the key does not exist). */
  createRevision: (key: Bytes, operator: CompareOperator, revision: number): Compare => makeCompare(key, operator, 'create', 'create_revision', checkRevision(revision, 'createRevision')),
  /** The revision of the key's last change. */
  modRevision: (key: Bytes, operator: CompareOperator, revision: number): Compare => makeCompare(key, operator, 'mod', 'mod_revision', checkRevision(revision, 'modRevision')),
  /** The key's lease (0: none). */
  lease: (key: Bytes, operator: CompareOperator, lease: LeaseId): Compare => makeCompare(key, operator, 'lease', 'lease', leaseToWire(lease)),
} as const;

/** One operation of a txn branch (build it with `op.*`). */
export type Operation =
  | { readonly type: 'get'; readonly wire: Decoded }
  | { readonly type: 'put'; readonly wire: Decoded }
  | { readonly type: 'delete'; readonly wire: Decoded };

/** Operation helpers. */
export const op = {
  get: (key: Bytes, options?: RangeOptions): Operation => ({ type: 'get', wire: { request_range: rangeRequest(key, options) } }),
  put: (key: Bytes, value: Bytes, options?: PutOptions): Operation => ({ type: 'put', wire: { request_put: putRequest(key, value, options) } }),
  delete: (key: Bytes, options?: DeleteOptions): Operation => ({ type: 'delete', wire: { request_delete_range: deleteRequest(key, options) } }),
} as const;

/** The result of one operation of the branch taken. */
export type OperationResult =
  | ({ readonly type: 'get' } & RangeResult)
  | ({ readonly type: 'put' } & PutResult)
  | ({ readonly type: 'delete' } & DeleteResult);

/** The result of `commit()`. */
export interface TxnResult {
  /** True when every compare held (the `then` branch ran). */
  readonly succeeded: boolean;
  readonly responses: OperationResult[];
  readonly header: ResponseHeader;
}

/**
 * @internal The key a txn is routed by: its first compare's, else its first operation's (all of a
 * txn's keys are in one shard, or the server refuses it).
 */
export function txnRouteKey(request: Decoded): Uint8Array | undefined {
  const first = (list: unknown): Record<string, unknown> | undefined => (Array.isArray(list) && list.length > 0 ? (list[0] as Record<string, unknown>) : undefined);
  const compared = first(request.compare);
  if (compared?.key instanceof Uint8Array) return compared.key;
  for (const branch of [request.success, request.failure]) {
    const o = first(branch);
    const inner = (o?.request_put ?? o?.request_delete_range ?? o?.request_range) as Record<string, unknown> | undefined;
    if (inner?.key instanceof Uint8Array) return inner.key;
  }
  return undefined;
}

/** @internal */
export function txnRequest(compares: readonly Compare[], success: readonly Operation[], failure: readonly Operation[]): Decoded {
  return { compare: compares.map((c) => c.wire), success: success.map((o) => o.wire), failure: failure.map((o) => o.wire) };
}

/** @internal */
export function txnResult(response: Decoded): TxnResult {
  const header = headerFromWire(response.header);
  const responses = listOf(response.responses).map((r): OperationResult => {
    const one = r as Decoded;
    if (one.response_range !== undefined && one.response_range !== null) return { type: 'get', ...rangeResult(one.response_range as Decoded, header) };
    if (one.response_put !== undefined && one.response_put !== null) return { type: 'put', ...putResult(one.response_put as Decoded, header) };
    if (one.response_delete_range !== undefined && one.response_delete_range !== null) return { type: 'delete', ...deleteResult(one.response_delete_range as Decoded, header) };
    throw new TypeError('a txn response holds an operation this client does not know');
  });
  return { succeeded: response.succeeded === true, responses, header };
}

/** Options of `txn()`. */
export interface TxnOptions {
  /**
   * The caller vouches that running this txn twice is harmless (its compares make a repeat a
   * no-op): it may then be sent again when its outcome is unknown. Read-only txns are always.
   */
  readonly idempotent?: boolean;
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** A txn being built: `if`, `then`, `else` in any order, once each at most; then `commit()`. */
export class Txn {
  private compares: Compare[] = [];
  private success: Operation[] = [];
  private failure: Operation[] = [];

  /** @internal */
  constructor(private readonly run: (request: Decoded, readOnly: boolean) => Promise<TxnResult>) {}

  /** Compares that must all hold for the `then` branch. */
  if(...compares: Compare[]): this {
    this.compares.push(...compares);
    return this;
  }

  /** Operations run when every compare holds. */
  then(...operations: Operation[]): this {
    // A Txn has a `then` but is no promise: `await txn` must not treat it as one.
    if (operations.some((o) => typeof o === 'function')) throw new TypeError('a Txn is not a promise: call commit()');
    this.success.push(...operations);
    return this;
  }

  /** Operations run otherwise. */
  else(...operations: Operation[]): this {
    this.failure.push(...operations);
    return this;
  }

  /** Sends the txn. */
  commit(): Promise<TxnResult> {
    const readOnly = [...this.success, ...this.failure].every((o) => o.type === 'get');
    return this.run(txnRequest(this.compares, this.success, this.failure), readOnly);
  }
}
