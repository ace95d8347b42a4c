/**
 * storage/mvcc: the in-memory MVCC segment store (one per shard). The front door: other folders
 * import only from here.
 */
export { MvccStore, initialRevision, isReadOnlyTxn, sortKeyValues, type StoreCapture, type WriteChecks } from './store.js';
export { encodeSnapshot, joinSnapshotFrames, restoreSnapshot, restoreSnapshotPieces, restoreSnapshotSync, splitSnapshotFrames } from './snapshot.js';
export { MvccError, SnapshotError, MvccAssertionError, mvccErrorMessages, type MvccErrorCode } from './errors.js';
export { hashKvInitial, hashKvVersion, hashKvFinish, type HashedVersion } from './hash.js';
export { beforeEnd, compareBytes, isOpenEnd, prefixEnd } from './segments.js';
export * as mvccLimits from './limits.js';
export type {
  ChangesPage,
  ChangesRequest,
  Compare,
  CompareResult,
  CompareTarget,
  DeleteRangeRequest,
  DeleteRangeResponse,
  DeleteRangeResult,
  HashKvResult,
  KeyValue,
  MvccEvent,
  MvccStoreOptions,
  PutOptions,
  PutRequest,
  PutResponse,
  PutResult,
  RangeRequest,
  RangeResponse,
  RequestOp,
  ResponseOp,
  SortOrder,
  SortTarget,
  TxnRequest,
  TxnResponse,
  TxnResult,
} from './types.js';
