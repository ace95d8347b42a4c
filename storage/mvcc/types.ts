/**
 * The MVCC store's requests, responses and events: etcd 3.5's KV API shapes with camelCase names.
 * Keys and values are `Uint8Array`s; revisions, versions and counts are safe-integer numbers (at
 * most `revisionMax`); lease ids are `bigint`s anywhere in the int64 range, as etcd's are.
 *
 * Views handed out (`kv.key`, `kv.value`) may share memory with the store; they are read-only by
 * contract and stay valid (unchanged) for as long as the caller holds them.
 */

export interface KeyValue {
  readonly key: Uint8Array;
  /** Revision of the put that started this key's current generation. */
  readonly createRevision: number;
  /** Revision of the write that produced this version. */
  readonly modRevision: number;
  /** 1.. within a generation. */
  readonly version: number;
  readonly value: Uint8Array;
  /** Lease id, any int64; 0n = none. */
  readonly lease: bigint;
}

export type SortOrder = 'none' | 'ascend' | 'descend';
export type SortTarget = 'key' | 'version' | 'create' | 'mod' | 'value';

export interface RangeRequest {
  readonly key: Uint8Array;
  /** undefined or empty: the single key; [0]: every key >= key; otherwise [key, rangeEnd). */
  readonly rangeEnd?: Uint8Array;
  /** <= 0: the current revision. */
  readonly revision?: number;
  /** <= 0: no limit. */
  readonly limit?: number;
  readonly countOnly?: boolean;
  readonly keysOnly?: boolean;
  readonly sortOrder?: SortOrder;
  readonly sortTarget?: SortTarget;
  readonly minModRevision?: number;
  readonly maxModRevision?: number;
  readonly minCreateRevision?: number;
  readonly maxCreateRevision?: number;
}

export interface RangeResponse {
  readonly kvs: KeyValue[];
  readonly more: boolean;
  /** Keys in the range at the read revision, before filters and limit. */
  readonly count: number;
  readonly revision: number;
}

export interface PutOptions {
  /** Lease id, any int64; 0n or undefined = none. */
  readonly lease?: bigint;
  readonly prevKv?: boolean;
  readonly ignoreValue?: boolean;
  readonly ignoreLease?: boolean;
}

export interface PutRequest extends PutOptions {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
}

export interface PutResponse {
  readonly revision: number;
  readonly prevKv?: KeyValue;
}

export interface DeleteRangeRequest {
  readonly key: Uint8Array;
  readonly rangeEnd?: Uint8Array;
  readonly prevKv?: boolean;
}

export interface DeleteRangeResponse {
  readonly revision: number;
  readonly deleted: number;
  readonly prevKvs?: KeyValue[];
}

export type CompareTarget = 'version' | 'create' | 'mod' | 'value' | 'lease';
export type CompareResult = 'equal' | 'greater' | 'less' | 'not-equal';

export interface Compare {
  readonly key: Uint8Array;
  readonly rangeEnd?: Uint8Array;
  readonly target: CompareTarget;
  readonly result: CompareResult;
  /** A Uint8Array for target 'value', a bigint for 'lease', a number for the others. */
  readonly value: number | bigint | Uint8Array;
}

export type RequestOp =
  | { readonly type: 'range'; readonly range: RangeRequest }
  | { readonly type: 'put'; readonly put: PutRequest }
  | { readonly type: 'deleteRange'; readonly deleteRange: DeleteRangeRequest }
  | { readonly type: 'txn'; readonly txn: TxnRequest };

export interface TxnRequest {
  readonly compare: readonly Compare[];
  readonly success: readonly RequestOp[];
  readonly failure: readonly RequestOp[];
}

export type ResponseOp =
  | { readonly type: 'range'; readonly range: RangeResponse }
  | { readonly type: 'put'; readonly put: PutResponse }
  | { readonly type: 'deleteRange'; readonly deleteRange: DeleteRangeResponse }
  | { readonly type: 'txn'; readonly txn: TxnResponse };

export interface TxnResponse {
  readonly succeeded: boolean;
  readonly responses: ResponseOp[];
  /** The store's revision after the transaction (nested transactions carry the same). */
  readonly revision: number;
}

export interface MvccEvent {
  readonly type: 'put' | 'delete';
  /** For a delete: key and modRevision only (etcd's tombstone). */
  readonly kv: KeyValue;
  /** The key's version at revision - 1, if it was live then. */
  readonly prevKv?: KeyValue;
}

export interface WriteEvents {
  /** The write's changes in (revision, sub-revision) order. */
  readonly events: MvccEvent[];
}

export type PutResult = PutResponse & WriteEvents;
export type DeleteRangeResult = DeleteRangeResponse & WriteEvents;
export type TxnResult = TxnResponse & WriteEvents;

export interface ChangesRequest {
  /** First revision wanted; must be above the compact revision. */
  readonly fromRevision: number;
  /** Last revision wanted (inclusive); default the current revision. */
  readonly toRevision?: number;
  /** Key filter with range semantics as in RangeRequest; undefined = every key. */
  readonly key?: Uint8Array;
  readonly rangeEnd?: Uint8Array;
  /**
   * Stop at a revision boundary once the events gathered hold this many key and value bytes
   * (prevKv included); at least one revision's events are always returned. Default: no limit.
   */
  readonly bytesMax?: number;
}

/** A page of `changesPage`: the events, complete for every revision up to `throughRevision`. */
export interface ChangesPage {
  readonly events: MvccEvent[];
  readonly throughRevision: number;
}

export interface HashKvResult {
  readonly hash: number;
  readonly revision: number;
  readonly compactRevision: number;
}

export interface MvccStoreOptions {
  /** Keys per segment before it splits; default `segmentKeysMaxDefault`. */
  readonly segmentKeysMax?: number;
}
