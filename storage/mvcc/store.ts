/**
 * MvccStore: one shard's multi-version key-value state, with etcd 3.5's semantics for Range, Put,
 * DeleteRange, Txn, Compact and HashKV. Committed Raft entries are applied to it one at a time;
 * it is synchronous, deterministic and reads no clock.
 *
 * Revisions: the store starts at revision 1 with nothing in it. A write that changes anything
 * takes the next revision; its changes take sub-revisions 0, 1, 2, … A write that changes nothing
 * (a delete of nothing, a read-only or no-op transaction) takes no revision.
 */
import { ChangeLog } from './change-log.js';
import { assert, assertSafeInteger, MvccError, SnapshotError, unreachable } from './errors.js';
import { hashKvFinish, hashKvInitial, hashKvVersion } from './hash.js';
import {
  arenaBytesInitial,
  keyBytesMax,
  revisionMax,
  segmentKeysMaxDefault,
  segmentKeysMaxLimit,
  segmentKeysMaxMin,
  txnDepthMax,
  txnOperationsMax,
  valueBytesMax,
} from './limits.js';
import {
  beforeEnd,
  compareBytes,
  type Cursor,
  isInt64,
  isOpenEnd,
  liveVersionBefore,
  noLease,
  noRecord,
  recordBytes,
  recordCreateRevision,
  recordIsTombstone,
  recordKey,
  recordLease,
  recordModRevision,
  recordPrevious,
  recordSub,
  type RecordSource,
  recordToKeyValue,
  recordValue,
  recordVersion,
  retainedChain,
  Segment,
  SegmentIndex,
  versionAt,
} from './segments.js';
import type {
  ChangesPage,
  ChangesRequest,
  Compare,
  DeleteRangeRequest,
  DeleteRangeResult,
  HashKvResult,
  KeyValue,
  MvccEvent,
  MvccStoreOptions,
  PutOptions,
  PutResponse,
  PutResult,
  RangeRequest,
  RangeResponse,
  RequestOp,
  ResponseOp,
  TxnRequest,
  TxnResponse,
  TxnResult,
} from './types.js';

/** etcd's initial revision: an empty store is at revision 1. */
export const initialRevision = 1;

/** Which branch each (nested) transaction of a request takes, decided before anything runs. */
/** Checks a write makes against state outside the store (the lease engine's table). */
export interface WriteChecks {
  /** Whether a lease exists; a put naming one that does not fails with `lease-not-found`. */
  readonly leaseExists?: (lease: bigint) => boolean;
}

interface TxnPath {
  readonly succeeded: boolean;
  /** One entry per nested transaction of the taken branch, in order. */
  readonly nested: TxnPath[];
}

/** A consistent, immutable view of every segment (arenas are never changed once written). */
const EMPTY_VALUE = new Uint8Array(0);

export interface StoreCapture {
  readonly revision: number;
  readonly compactRevision: number;
  readonly appliedIndex: number;
  readonly keyCount: number;
  readonly segments: readonly { readonly source: RecordSource; readonly heads: Uint32Array }[];
}

function validateSegmentKeysMax(value: number): number {
  assert(
    Number.isSafeInteger(value) && value >= segmentKeysMaxMin && value <= segmentKeysMaxLimit,
    () => `segmentKeysMax must be an integer in [${segmentKeysMaxMin}, ${segmentKeysMaxLimit}], got ${value}`,
  );
  return value;
}

function isEmpty(end: Uint8Array | undefined): end is undefined {
  return end === undefined || end.length === 0;
}

export class MvccStore {
  private readonly index: SegmentIndex;
  private readonly log = new ChangeLog();
  private readonly cursor: Cursor = { segment: 0, slot: 0 };
  private readonly scratch: number[] = [];
  private currentRevision = initialRevision;
  private compactedRevision = 0;
  private liveKeys = 0;
  private applied = 0;
  /** Changes made so far by the write in progress (it will take revision currentRevision + 1). */
  private pendingChanges = 0;
  private pendingEvents: MvccEvent[] = [];
  private writing = false;

  constructor(options: MvccStoreOptions = {}) {
    this.index = new SegmentIndex(validateSegmentKeysMax(options.segmentKeysMax ?? segmentKeysMaxDefault));
  }

  /** The store's current revision. */
  get revision(): number {
    return this.currentRevision;
  }

  get compactRevision(): number {
    return this.compactedRevision;
  }

  /** Keys live at the current revision. */
  get keyCount(): number {
    return this.liveKeys;
  }

  /** The Raft index this state reflects (set by the apply layer). */
  get appliedIndex(): number {
    return this.applied;
  }

  set appliedIndex(index: number) {
    assertSafeInteger(index, 'appliedIndex');
    assert(index >= 0, 'appliedIndex must not be negative');
    this.applied = index;
  }

  get segmentKeysMax(): number {
    return this.index.keysMax;
  }

  /** Segments in use (for tests and metrics). */
  get segmentCount(): number {
    return this.index.segments.length;
  }

  /** Bytes of arena capacity over all segments (for tests and metrics). */
  get arenaBytes(): number {
    let bytes = 0;
    for (const segment of this.index.segments) bytes += segment.arena.length;
    return bytes;
  }

  /**
   * What the store holds in memory, in bytes: every segment's arena (live versions, versions
   * compaction dropped but no rewrite reclaimed yet, and free room) plus its head array. This is
   * what `--quota-backend-bytes` counts and `etcdctl endpoint status` shows as DB SIZE (etcd's
   * backend file size has the same shape: compaction alone does not shrink it, defragment does).
   */
  get sizeBytes(): number {
    // Kept by the index as segments change: a quota check on every write must not visit them all.
    return this.index.sizeBytes;
  }

  /**
   * The key that divides the versions this store retains most evenly by their bytes (where a
   * shard splits by size), with the share of those bytes below it; none when the store has fewer
   * than two keys. One key holding most of the bytes (its history) leaves a lopsided share: a
   * split cannot divide it.
   */
  bytesMiddleKey(): { readonly key: Uint8Array; readonly share: number } | undefined {
    const middle = this.index.bytesMiddle();
    if (middle === undefined) return undefined;
    return { key: middle.key, share: middle.total === 0 ? 0.5 : middle.below / middle.total };
  }

  /** Bytes of versions still retained (etcd's DB SIZE IN USE): `sizeBytes` less garbage and free room. */
  get sizeInUseBytes(): number {
    let bytes = 0;
    for (const segment of this.index.segments) bytes += segment.liveBytes + 4 * segment.count;
    return bytes;
  }

  /**
   * One bounded step of defragmentation: rewrites up to `segmentsMax` segments from segment
   * `from` on into fresh arenas sized to their retained versions, dropping the old arenas (a
   * captured snapshot that still reads one keeps it alive until it is done). Returns the segment
   * to continue from, or -1 once every segment was visited. Safe between writes: a write may
   * split or merge segments in between, which at worst visits a segment twice or skips one.
   */
  defragmentStep(from: number, segmentsMax: number): number {
    assert(!this.writing, 'defragment called during a write');
    assert(Number.isSafeInteger(from) && from >= 0 && segmentsMax > 0, 'bad defragment step');
    const segments = this.index.segments;
    const end = Math.min(segments.length, from + segmentsMax);
    for (let i = from; i < end; i++) {
      const segment = segments[i]!;
      // A rewrite leaves an eighth of headroom: only more slack than a quarter is worth a copy.
      const slack = segment.arena.length > arenaBytesInitial && segment.arena.length - segment.used > segment.used >>> 2;
      if (segment.garbage > 0 || slack) this.index.rewrite(i);
    }
    return end >= segments.length ? -1 : end;
  }

  /** Changes kept for `changes()` (for tests and metrics). */
  get changeLogLength(): number {
    return this.log.length;
  }

  /** Bytes the change log's chunks hold (for metrics). */
  get changeLogBytes(): number {
    return this.log.bytes;
  }

  /**
   * Throws if the segment index breaks an invariant (sorted, bounded, no empty segment), the live
   * key count is off, or the change log and the retained versions disagree.
   */
  checkInvariants(): void {
    assert(!this.writing, 'checkInvariants called during a write');
    this.index.checkInvariants();
    const floor = this.compactedRevision;
    assert(this.index.floor === floor, `the index compacts at ${this.index.floor}, the store at ${floor}`);
    const scratch = this.scratch;
    let live = 0;
    let changes = 0;
    for (const segment of this.index.segments) {
      for (let slot = 0; slot < segment.count; slot++) {
        if (!recordIsTombstone(segment, segment.heads[slot]!)) live++;
        scratch.length = 0;
        retainedChain(segment, segment.heads[slot]!, floor, scratch);
        for (const offset of scratch) if (recordModRevision(segment, offset) >= floor) changes++;
      }
    }
    assert(live === this.liveKeys, `live key count ${this.liveKeys} but ${live} keys are live`);
    // The log is in strict (revision, sub) order (it asserts that as changes come), so each
    // change it holds names a different version: the same count means each one is there once.
    let logged = 0;
    this.log.forEach(floor, this.currentRevision, (revision, sub, key) => {
      if (this.retainedChange(key, revision, sub) !== undefined) logged++;
    });
    assert(logged === changes, `the change log holds ${logged} retained changes, the segments ${changes}`);
    // And nothing else: compaction lets go of the changes at its revision that lost their record.
    assert(this.log.length === logged, `the change log holds ${this.log.length - logged} changes no read returns`);
  }

  // -------------------------------------------------------------------------------------------
  // Range

  range(request: RangeRequest): RangeResponse {
    assert(!this.writing, 'range called during a write');
    validateKey(request.key);
    this.checkReadRevision(request.revision ?? 0, this.currentRevision);
    return this.rangeAt(request, this.currentRevision);
  }

  /** Range against a state whose newest visible revision is `visible` (inside a txn: pending). */
  private rangeAt(request: RangeRequest, visible: number): RangeResponse {
    const requested = request.revision ?? 0;
    const revision = requested <= 0 ? visible : requested;
    const limit = request.limit !== undefined && request.limit > 0 ? request.limit : 0;
    const sortOrder = request.sortOrder ?? 'none';
    const sortTarget = request.sortTarget ?? 'key';
    const filtered =
      (request.minModRevision ?? 0) !== 0 ||
      (request.maxModRevision ?? 0) !== 0 ||
      (request.minCreateRevision ?? 0) !== 0 ||
      (request.maxCreateRevision ?? 0) !== 0;
    // etcd fetches everything when it must sort or filter, else limit + 1 to learn `more`. A
    // target other than the key sorts even with order 'none' (ascending: sortKeyValues).
    const sorts = sortOrder !== 'none' || sortTarget !== 'key';
    const fetch = request.countOnly ? 0 : sorts || filtered || limit === 0 ? Infinity : limit + 1;
    let kvs: KeyValue[] = [];
    const count = this.visitRange(request.key, request.rangeEnd, (source, head) => {
      const offset = versionAt(source, head, revision);
      if (offset === noRecord || recordIsTombstone(source, offset)) return false;
      // Values are kept until after the sort (sorting by value with keys_only sorts by value, as
      // etcd does) and dropped below.
      if (kvs.length < fetch) kvs.push(recordToKeyValue(source, offset, request.keysOnly === true && sortTarget !== 'value'));
      return true;
    });
    if (filtered) kvs = kvs.filter((kv) => passesFilters(kv, request));
    kvs = sortKeyValues(kvs, sortOrder, sortTarget);
    let more = false;
    if (limit > 0 && kvs.length > limit) {
      kvs = kvs.slice(0, limit);
      more = true;
    }
    if (request.keysOnly === true && sortTarget === 'value') kvs = kvs.map((kv) => ({ ...kv, value: EMPTY_VALUE }));
    return { kvs, more, count, revision: visible };
  }

  /**
   * Calls `visit` with every key of [key, rangeEnd) in order (segment, newest record, segment
   * number, slot); counts the calls that return true. The callback must not change the index.
   */
  private visitRange(key: Uint8Array, rangeEnd: Uint8Array | undefined, visit: RangeVisitor): number {
    const cursor = this.cursor;
    const segments = this.index.segments;
    let count = 0;
    if (isEmpty(rangeEnd)) {
      if (!this.index.lookup(key, cursor)) return 0;
      const segment = segments[cursor.segment]!;
      return visit(segment, segment.heads[cursor.slot]!, cursor.segment, cursor.slot) ? 1 : 0;
    }
    const open = isOpenEnd(rangeEnd);
    if (!open && compareBytes(key, rangeEnd) >= 0) return 0;
    if (!this.index.seek(key, cursor)) return 0;
    let segmentNumber = cursor.segment;
    let slot = cursor.slot;
    for (; segmentNumber < segments.length; segmentNumber++, slot = 0) {
      const segment = segments[segmentNumber]!;
      for (; slot < segment.count; slot++) {
        if (!open && segment.compareKey(slot, rangeEnd) >= 0) return count;
        if (visit(segment, segment.heads[slot]!, segmentNumber, slot)) count++;
      }
    }
    return count;
  }

  private checkReadRevision(requested: number, visible: number): void {
    assertSafeInteger(requested, 'revision');
    if (requested > visible) throw new MvccError('future-revision');
    if (requested > 0 && requested < this.compactedRevision) throw new MvccError('compacted');
  }

  // -------------------------------------------------------------------------------------------
  // Put and DeleteRange

  put(key: Uint8Array, value: Uint8Array, options: PutOptions = {}, checks: WriteChecks = {}): PutResult {
    validatePut({ key, value, ...options });
    // etcd's order: the lease is looked up before ignore_value / ignore_lease need the key.
    if (checks.leaseExists !== undefined && (options.lease ?? noLease) !== noLease && !checks.leaseExists(options.lease!)) {
      throw new MvccError('lease-not-found');
    }
    if ((options.ignoreValue || options.ignoreLease) && this.liveHead(key) === undefined) {
      throw new MvccError('key-not-found');
    }
    this.beginWrite();
    const response = this.putInWrite({ key, value, ...options });
    const events = this.endWrite();
    return { ...response, events };
  }

  deleteRange(request: DeleteRangeRequest): DeleteRangeResult {
    validateKey(request.key);
    this.beginWrite();
    const response = this.deleteInWrite(request);
    const events = this.endWrite();
    return { ...response, revision: this.currentRevision, events };
  }

  /**
   * Deletes each of `keys` that is live, all in ONE revision (a lease revocation or a batch of
   * expiries: a watcher sees every delete in one response). Returns the events; no revision is
   * used when none of the keys is live.
   */
  deleteKeys(keys: readonly Uint8Array[]): { revision: number; deleted: number; events: MvccEvent[] } {
    for (const key of keys) validateKey(key);
    this.beginWrite();
    let deleted = 0;
    for (const key of keys) deleted += this.deleteInWrite({ key }).deleted;
    const events = this.endWrite();
    return { revision: this.currentRevision, deleted, events };
  }

  private beginWrite(): void {
    assert(!this.writing, 'writes do not nest');
    this.writing = true;
    this.pendingChanges = 0;
    this.pendingEvents = [];
  }

  private endWrite(): MvccEvent[] {
    assert(this.writing, 'no write in progress');
    this.writing = false;
    if (this.pendingChanges > 0) this.currentRevision++;
    assertSafeInteger(this.currentRevision, 'revision');
    assert(this.currentRevision <= revisionMax, 'the store ran out of revisions');
    const events = this.pendingEvents;
    this.pendingEvents = [];
    this.pendingChanges = 0;
    return events;
  }

  /** The newest revision a read inside the write in progress sees. */
  private get visibleRevision(): number {
    return this.currentRevision + (this.pendingChanges > 0 ? 1 : 0);
  }

  /** The key's live newest version (the writes in progress included), or undefined. */
  private liveHead(key: Uint8Array): { segment: Segment; offset: number } | undefined {
    if (!this.index.lookup(key, this.cursor)) return undefined;
    const segment = this.index.segments[this.cursor.segment]!;
    const offset = segment.heads[this.cursor.slot]!;
    return recordIsTombstone(segment, offset) ? undefined : { segment, offset };
  }

  private putInWrite(request: { key: Uint8Array; value: Uint8Array } & PutOptions): PutResponse {
    const revision = this.currentRevision + 1;
    const cursor = this.cursor;
    const found = this.index.lookup(request.key, cursor);
    const segment = this.index.segmentForInsert(cursor, found);
    const head = found ? segment.heads[cursor.slot]! : noRecord;
    const live = head !== noRecord && !recordIsTombstone(segment, head);
    assert(live || !(request.ignoreValue || request.ignoreLease), 'ignore flags on a missing key passed the checks');
    const prevKv = request.prevKv && live ? recordToKeyValue(segment, head) : undefined;
    const value = request.ignoreValue ? recordValue(segment, head) : request.value;
    const lease = request.ignoreLease ? recordLease(segment, head) : (request.lease ?? noLease);
    const offset = segment.append(
      {
        modRevision: revision,
        sub: this.pendingChanges,
        createRevision: live ? recordCreateRevision(segment, head) : revision,
        version: live ? recordVersion(segment, head) + 1 : 1,
        lease,
        tombstone: false,
      },
      request.key,
      value,
      head,
    );
    if (found) segment.heads[cursor.slot] = offset;
    else segment.insertSlot(cursor.slot, offset);
    if (!live) this.liveKeys++;
    this.recordChange(segment, offset, 'put');
    this.index.splitIfFull(cursor.segment);
    return prevKv === undefined ? { revision } : { revision, prevKv };
  }

  private deleteInWrite(request: DeleteRangeRequest): { deleted: number; prevKvs?: KeyValue[]; revision: number } {
    const revision = this.currentRevision + 1;
    const prevKvs: KeyValue[] | undefined = request.prevKv ? [] : undefined;
    const touched: number[] = [];
    // Appending a tombstone never moves a slot; splitting does, so splits wait for the end.
    const deleted = this.visitRange(request.key, request.rangeEnd, (segment, head, segmentNumber, slot) => {
      if (recordIsTombstone(segment, head)) return false;
      prevKvs?.push(recordToKeyValue(segment, head));
      const offset = segment.append(
        { modRevision: revision, sub: this.pendingChanges, createRevision: 0, version: 0, lease: noLease, tombstone: true },
        recordKey(segment, head),
        EMPTY,
        head,
      );
      segment.heads[slot] = offset;
      this.liveKeys--;
      this.recordChange(segment, offset, 'delete');
      if (touched[touched.length - 1] !== segmentNumber) touched.push(segmentNumber);
      return true;
    });
    for (let i = touched.length - 1; i >= 0; i--) this.index.splitIfFull(touched[i]!);
    const response = { deleted, revision: this.visibleRevision };
    return prevKvs === undefined ? response : { ...response, prevKvs };
  }

  /** Logs one change of the write in progress and queues its event. */
  private recordChange(segment: Segment, offset: number, type: 'put' | 'delete'): void {
    const revision = this.currentRevision + 1;
    const kv = recordToKeyValue(segment, offset);
    const previous = liveVersionBefore(segment, offset, revision);
    const event: MvccEvent = previous === noRecord ? { type, kv } : { type, kv, prevKv: recordToKeyValue(segment, previous) };
    this.pendingEvents.push(event);
    this.log.append(revision, this.pendingChanges, kv.key);
    this.pendingChanges++;
  }

  // -------------------------------------------------------------------------------------------
  // Txn

  txn(request: TxnRequest, options: WriteChecks = {}): TxnResult {
    checkTxnRequest(request, txnOperationsMax);
    checkNoKeyWrittenTwice(request.success);
    checkNoKeyWrittenTwice(request.failure);
    const path = this.decide(request);
    this.checkRequests(request, path, options);
    this.beginWrite();
    const response = this.executeTxn(request, path);
    const events = this.endWrite();
    return { ...response, revision: this.currentRevision, events };
  }

  /**
   * A read-only txn (`isReadOnlyTxn`: only ranges, in both branches) evaluated
   * against the current state, outside any write: etcd serves these as it serves a Range, not
   * through the log. Same checks and answers as `txn` would give; never changes the store.
   */
  readTxn(request: TxnRequest): TxnResult {
    assert(!this.writing, 'readTxn called during a write');
    assert(isReadOnlyTxn(request), 'readTxn of a txn that writes');
    checkTxnRequest(request, txnOperationsMax);
    const path = this.decide(request);
    this.checkRequests(request, path, {});
    const response = this.executeTxn(request, path);
    return { ...response, revision: this.currentRevision, events: [] };
  }

  /** Evaluates every compare of the request and its nested requests against the state before it. */
  private decide(request: TxnRequest): TxnPath {
    const succeeded = request.compare.every((compare) => this.applyCompare(compare));
    const nested: TxnPath[] = [];
    for (const op of succeeded ? request.success : request.failure) if (op.type === 'txn') nested.push(this.decide(op.txn));
    return { succeeded, nested };
  }

  private applyCompare(compare: Compare): boolean {
    const kvs: KeyValue[] = [];
    const revision = this.currentRevision;
    this.visitRange(compare.key, compare.rangeEnd, (segment, head) => {
      const offset = versionAt(segment, head, revision);
      if (offset === noRecord || recordIsTombstone(segment, offset)) return false;
      kvs.push(recordToKeyValue(segment, offset));
      return true;
    });
    if (kvs.length === 0) {
      // No way to represent a missing value on the wire: a value compare on nothing fails.
      if (compare.target === 'value') return false;
      return compareKeyValue(compare, { key: compare.key, createRevision: 0, modRevision: 0, version: 0, value: new Uint8Array(0), lease: noLease });
    }
    return kvs.every((kv) => compareKeyValue(compare, kv));
  }

  /**
   * etcd's checkRequests on the taken path, against the state before the txn: ignore_value /
   * ignore_lease need the key to exist, range revisions must be in bounds.
   */
  private checkRequests(request: TxnRequest, path: TxnPath, checks: WriteChecks): void {
    const deletes: DeleteRangeRequest[] = [];
    this.checkPath(request, path, deletes, checks);
  }

  private checkPath(request: TxnRequest, path: TxnPath, deletes: DeleteRangeRequest[], checks: WriteChecks): void {
    let nested = 0;
    for (const op of path.succeeded ? request.success : request.failure) {
      switch (op.type) {
        case 'range':
          this.checkReadRevision(op.range.revision ?? 0, this.currentRevision);
          break;
        case 'put':
          if (checks.leaseExists !== undefined && (op.put.lease ?? noLease) !== noLease && !checks.leaseExists(op.put.lease!)) {
            throw new MvccError('lease-not-found');
          }
          if (op.put.ignoreValue || op.put.ignoreLease) {
            if (this.liveHead(op.put.key) === undefined) throw new MvccError('key-not-found');
            // etcd lets a delete with rangeEnd "\0" past its overlap check and then panics when
            // the put finds its key gone; refuse the request instead.
            if (deletes.some((d) => coversKey(d, op.put.key))) throw new MvccError('key-not-found');
          }
          break;
        case 'deleteRange':
          deletes.push(op.deleteRange);
          break;
        case 'txn':
          this.checkPath(op.txn, path.nested[nested++]!, deletes, checks);
          break;
        default:
          unreachable(op, 'request op');
      }
    }
  }

  private executeTxn(request: TxnRequest, path: TxnPath): TxnResponse {
    const responses: ResponseOp[] = [];
    let nested = 0;
    for (const op of path.succeeded ? request.success : request.failure) {
      switch (op.type) {
        case 'range':
          responses.push({ type: 'range', range: this.rangeAt(op.range, this.visibleRevision) });
          break;
        case 'put':
          responses.push({ type: 'put', put: this.putInWrite(op.put) });
          break;
        case 'deleteRange':
          responses.push({ type: 'deleteRange', deleteRange: this.deleteInWrite(op.deleteRange) });
          break;
        case 'txn':
          responses.push({ type: 'txn', txn: this.executeTxn(op.txn, path.nested[nested++]!) });
          break;
        default:
          unreachable(op, 'request op');
      }
    }
    return { succeeded: path.succeeded, responses, revision: this.visibleRevision };
  }

  // -------------------------------------------------------------------------------------------
  // Compaction

  /** Drops history at and below `revision` (keeping each key's version at it); frees memory. */
  compact(revision: number): void {
    assert(!this.writing, 'compact called during a write');
    assertSafeInteger(revision, 'compact revision');
    if (revision <= this.compactedRevision) throw new MvccError('compacted');
    if (revision > this.currentRevision) throw new MvccError('future-revision');
    this.compactedRevision = revision;
    this.index.floor = revision;
    // Only keys changed since the last compaction can have versions to drop; the log knows them.
    // The log keeps the changes AT the compact revision (a watch may start there, as in etcd),
    // and drops everything before it.
    const affected = new Set<number>();
    const cursor = this.cursor;
    const note = (key: Uint8Array): void => {
      if (this.index.lookup(key, cursor)) affected.add(cursor.segment);
    };
    this.log.dropThrough(revision - 1, note);
    this.log.forEach(revision, revision, (_revision, _sub, key) => note(key));
    for (const segmentNumber of affected) this.compactSegment(segmentNumber);
    this.index.rebalance();
    // The changes at the compact revision whose record compaction dropped (deletes made there)
    // are skipped by every read (`retainedChange`): the log lets them go too.
    this.log.retainAt(revision, (sub, key) => this.retainedChange(key, revision, sub) !== undefined);
  }

  private compactSegment(segmentNumber: number): void {
    const segment = this.index.segments[segmentNumber]!;
    const scratch = this.scratch;
    let live = 0;
    for (let slot = segment.count - 1; slot >= 0; slot--) {
      const head = segment.heads[slot]!;
      scratch.length = 0;
      retainedChain(segment, head, this.compactedRevision, scratch);
      if (scratch.length === 0) {
        assert(recordIsTombstone(segment, head), 'only a deleted key can lose all its versions');
        segment.removeSlot(slot);
        continue;
      }
      for (const offset of scratch) live += recordBytes(segment, offset);
    }
    segment.garbage = segment.used - live;
    if (segment.needsRewrite) this.index.rewrite(segmentNumber);
  }

  // -------------------------------------------------------------------------------------------
  // HashKV

  /** CRC-32C of the retained state at `revision` (default current); see hash.ts for the encoding. */
  hashKV(revision = 0): HashKvResult {
    assertSafeInteger(revision, 'revision');
    if (revision > this.currentRevision) throw new MvccError('future-revision');
    if (revision > 0 && revision < this.compactedRevision) throw new MvccError('compacted');
    const at = revision <= 0 ? this.currentRevision : revision;
    let hash = hashKvInitial;
    const scratch = this.scratch;
    for (const segment of this.index.segments) {
      for (let slot = 0; slot < segment.count; slot++) {
        scratch.length = 0;
        retainedChain(segment, segment.heads[slot]!, this.compactedRevision, scratch);
        for (let i = scratch.length - 1; i >= 0; i--) {
          const offset = scratch[i]!;
          if (recordModRevision(segment, offset) > at) break;
          hash = hashKvVersion(hash, {
            key: recordKey(segment, offset),
            modRevision: recordModRevision(segment, offset),
            sub: recordSub(segment, offset),
            createRevision: recordCreateRevision(segment, offset),
            version: recordVersion(segment, offset),
            lease: recordLease(segment, offset),
            tombstone: recordIsTombstone(segment, offset),
            value: recordValue(segment, offset),
          });
        }
      }
    }
    return { hash: hashKvFinish(hash, this.compactedRevision), revision: this.currentRevision, compactRevision: this.compactedRevision };
  }

  // -------------------------------------------------------------------------------------------
  // Changes (the watch engine's history)

  /** Events with revision in [fromRevision, toRevision] in (revision, sub) order, with prevKv. */
  changes(request: ChangesRequest): MvccEvent[] {
    return this.changesPage(request).events;
  }

  /**
   * As `changes`, stopping early (at a revision boundary) once `bytesMax` bytes of events are
   * gathered; `throughRevision` says how far the page is complete.
   */
  changesPage(request: ChangesRequest): ChangesPage {
    assert(!this.writing, 'changes called during a write');
    assertSafeInteger(request.fromRevision, 'fromRevision');
    // As etcd: history is readable from the compact revision on; at that revision only what
    // compaction kept (the puts made there) is left.
    if (request.fromRevision < this.compactedRevision || request.fromRevision < 1) throw new MvccError('compacted');
    const to = Math.min(request.toRevision ?? this.currentRevision, this.currentRevision);
    const events: MvccEvent[] = [];
    const floor = this.compactedRevision;
    const bytesMax = request.bytesMax ?? Number.POSITIVE_INFINITY;
    let bytes = 0;
    let throughRevision = to;
    this.log.forEach(request.fromRevision, to, (revision, sub, key) => {
      if (request.key !== undefined && !inRange(key, request.key, request.rangeEnd)) return true;
      const lastRevision = events.length === 0 ? 0 : events[events.length - 1]!.kv.modRevision;
      if (bytes >= bytesMax && revision !== lastRevision) {
        throughRevision = revision - 1;
        return false;
      }
      const change = this.retainedChange(key, revision, sub);
      if (change === undefined) return; // at the compact revision, and compacted away
      const { segment, offset } = change;
      const kv = recordToKeyValue(segment, offset);
      const type = recordIsTombstone(segment, offset) ? 'delete' : 'put';
      // prevKv is the key read at revision - 1, which is gone when that is below the compact revision.
      const previous = revision - 1 < floor ? noRecord : liveVersionBefore(segment, offset, revision);
      const prevKv = previous === noRecord ? undefined : recordToKeyValue(segment, previous);
      events.push(prevKv === undefined ? { type, kv } : { type, kv, prevKv });
      bytes += kv.key.length + kv.value.length + (prevKv === undefined ? 0 : prevKv.key.length + prevKv.value.length);
      return true;
    });
    return { events, throughRevision };
  }

  /**
   * The record of change (revision, sub) to `key`, or undefined when compaction dropped it: only
   * a change at the compact revision may be gone (a delete made there, or a put a later change of
   * the same key in that revision replaced). A dropped record may still sit in its arena until
   * the segment is rewritten: it is not answered, so the store reads the same before and after.
   */
  private retainedChange(key: Uint8Array, revision: number, sub: number): { segment: Segment; offset: number } | undefined {
    const floor = this.compactedRevision;
    const cursor = this.cursor;
    if (!this.index.lookup(key, cursor)) {
      assert(revision === floor, 'a logged key is missing from the index');
      return undefined;
    }
    const segment = this.index.segments[cursor.segment]!;
    const head = segment.heads[cursor.slot]!;
    // Newest first: versions of one revision are chained in descending sub order.
    let offset = head;
    while (offset !== noRecord && (recordModRevision(segment, offset) > revision || (recordModRevision(segment, offset) === revision && recordSub(segment, offset) > sub))) {
      offset = recordPrevious(segment, offset);
    }
    const found = offset !== noRecord && recordModRevision(segment, offset) === revision && recordSub(segment, offset) === sub;
    if (revision === floor) {
      // At the compact revision only the key's newest version there is kept, and only if live.
      return found && !recordIsTombstone(segment, offset) && versionAt(segment, head, floor) === offset ? { segment, offset } : undefined;
    }
    assert(found, () => `logged change ${revision}.${sub} is missing from its key`);
    return { segment, offset };
  }

  // -------------------------------------------------------------------------------------------
  // Snapshots (see snapshot.ts)

  /** A consistent view for the snapshot encoder; later writes do not change it. */
  capture(): StoreCapture {
    assert(!this.writing, 'capture called during a write');
    return {
      revision: this.currentRevision,
      compactRevision: this.compactedRevision,
      appliedIndex: this.applied,
      keyCount: this.liveKeys,
      segments: this.index.segments.map((segment) => ({
        source: { arena: segment.arena, view: segment.view },
        heads: segment.heads.slice(0, segment.count),
      })),
    };
  }

  /** Restore: installs segments built by the loader and rebuilds the change log from them. */
  static fromLoaded(loaded: LoadedState, options: MvccStoreOptions = {}): MvccStore {
    const store = new MvccStore(options);
    store.currentRevision = loaded.revision;
    store.compactedRevision = loaded.compactRevision;
    store.index.floor = loaded.compactRevision;
    store.applied = loaded.appliedIndex;
    store.liveKeys = loaded.liveKeys;
    store.index.adopt(loaded.segments);
    store.rebuildLog();
    return store;
  }

  // -------------------------------------------------------------------------------------------
  // Shard split

  /**
   * A new store holding only the keys in [start, end) (start empty: from the first key; end
   * undefined: no end — not etcd's "\0"), each with its whole retained history, at this store's
   * revision, compact revision and applied index: what one side of a shard split keeps. The kept
   * versions are copied into new arenas, so the new store shares no memory with this one (left
   * unchanged) and dropping this one frees whatever was not kept. Its change log is rebuilt from
   * the kept versions: a revision may keep only some of its changes, or none.
   *
   * O(kept versions + revisions since the compact revision): the kept versions are copied, and
   * the log is rebuilt with a counting pass over every revision since the compact revision (8
   * bytes of scratch each, however few the range kept). The range is found by binary search.
   */
  retained(start: Uint8Array, end: Uint8Array | undefined): MvccStore {
    assert(!this.writing, 'retained called during a write');
    assert(start.length <= keyBytesMax && (end === undefined || end.length <= keyBytesMax), 'a retained range bound is over keyBytesMax');
    assert(end === undefined || compareBytes(start, end) <= 0, 'a retained range must not end before it starts');
    const store = new MvccStore({ segmentKeysMax: this.index.keysMax });
    store.currentRevision = this.currentRevision;
    store.compactedRevision = this.compactedRevision;
    store.index.floor = this.compactedRevision;
    store.applied = this.applied;
    const segments = this.index.copyRange(start, end);
    for (const segment of segments) {
      for (let slot = 0; slot < segment.count; slot++) if (!recordIsTombstone(segment, segment.heads[slot]!)) store.liveKeys++;
    }
    store.index.adopt(segments);
    store.rebuildLog();
    return store;
  }

  /**
   * Rebuilds the log from the retained versions: every change at or above the compact revision,
   * in (revision, sub) order. A revision's changes need not all be retained nor be numbered
   * densely (compaction keeps only the puts made at the compact revision, `retained` one side of
   * a split, so many revisions keep none): a counting pass places the changes by revision, then
   * each revision's are put in sub order, which they mostly have already (a range delete numbers
   * its keys in key order). O(revisions since the compact revision + retained changes).
   */
  private rebuildLog(): void {
    const floor = this.compactedRevision;
    const span = this.currentRevision - floor;
    const scratch = this.scratch;
    const segments = this.index.segments;
    const eachChange = (visit: (segmentNumber: number, slot: number, revision: number, sub: number) => void): void => {
      for (let segmentNumber = 0; segmentNumber < segments.length; segmentNumber++) {
        const segment = segments[segmentNumber]!;
        for (let slot = 0; slot < segment.count; slot++) {
          scratch.length = 0;
          retainedChain(segment, segment.heads[slot]!, floor, scratch);
          for (const offset of scratch) {
            const revision = recordModRevision(segment, offset);
            // A version from below the compact revision is kept; its change is not.
            if (revision >= floor) visit(segmentNumber, slot, revision, recordSub(segment, offset));
          }
        }
      }
    };
    // bounds[i + 2] counts revision floor + i; the prefix sums make bounds[i + 1] where it starts;
    // placing its changes moves that on to where it ends, so revision floor + i ends up at
    // [bounds[i], bounds[i + 1]).
    const bounds = new Float64Array(span + 3);
    eachChange((_segmentNumber, _slot, revision) => {
      bounds[revision - floor + 2]!++;
    });
    for (let i = 2; i <= span + 2; i++) bounds[i]! += bounds[i - 1]!;
    const total = bounds[span + 2]!;
    const columns: ChangeColumns = { segment: new Uint32Array(total), slot: new Uint32Array(total), sub: new Uint32Array(total) };
    eachChange((segmentNumber, slot, revision, sub) => {
      const position = bounds[revision - floor + 1]!++;
      columns.segment[position] = segmentNumber;
      columns.slot[position] = slot;
      columns.sub[position] = sub;
    });
    for (let i = 0; i <= span; i++) {
      const first = bounds[i]!;
      const end = bounds[i + 1]!;
      if (end - first > 1) sortBySub(columns, first, end);
      for (let position = first; position < end; position++) {
        const sub = columns.sub[position]!;
        if (position > first && sub === columns.sub[position - 1]) throw new SnapshotError(`snapshot: revision ${floor + i}.${sub} appears twice`);
        this.log.append(floor + i, sub, segments[columns.segment[position]!]!.keyAt(columns.slot[position]!));
      }
    }
  }
}

/** The retained changes as columns (segment number, slot, sub-revision), grouped by revision. */
interface ChangeColumns {
  readonly segment: Uint32Array;
  readonly slot: Uint32Array;
  readonly sub: Uint32Array;
}

/** Puts positions [first, end) of the columns (one revision's changes) in sub order. */
function sortBySub(columns: ChangeColumns, first: number, end: number): void {
  let sorted = true;
  for (let position = first + 1; position < end && sorted; position++) sorted = columns.sub[position - 1]! < columns.sub[position]!;
  if (sorted) return;
  const order = Array.from({ length: end - first }, (_, i) => first + i).sort((a, b) => columns.sub[a]! - columns.sub[b]!);
  for (const column of [columns.segment, columns.slot, columns.sub]) {
    const values = order.map((position) => column[position]!);
    column.set(values, first);
  }
}

/** What the snapshot loader hands to `MvccStore.fromLoaded`. */
export interface LoadedState {
  readonly revision: number;
  readonly compactRevision: number;
  readonly appliedIndex: number;
  readonly liveKeys: number;
  readonly segments: Segment[];
}

// ---------------------------------------------------------------------------------------------
// Pure helpers

const EMPTY = new Uint8Array(0);

type RangeVisitor = (segment: Segment, head: number, segmentNumber: number, slot: number) => boolean;

function validateKey(key: Uint8Array): void {
  if (key.length === 0) throw new MvccError('empty-key');
  assert(key.length <= keyBytesMax, () => `key of ${key.length} bytes is over keyBytesMax`);
}

function validatePut(request: { key: Uint8Array; value: Uint8Array } & PutOptions): void {
  validateKey(request.key);
  assert(request.value.length <= valueBytesMax, () => `value of ${request.value.length} bytes is over valueBytesMax`);
  if (request.ignoreValue && request.value.length !== 0) throw new MvccError('value-provided');
  if (request.ignoreLease && (request.lease ?? noLease) !== noLease) throw new MvccError('lease-provided');
  if (request.lease !== undefined) assert(typeof request.lease === 'bigint' && isInt64(request.lease), 'a lease id must be an int64 bigint');
}

/**
 * Whether a txn only reads, whichever branch it takes: both branches hold only Ranges (etcd's
 * isTxnReadonly; a nested txn counts as a write, as there, so it goes through the log).
 */
export function isReadOnlyTxn(request: TxnRequest): boolean {
  const reads = (ops: TxnRequest['success']): boolean => ops.every((op) => op.type === 'range');
  return reads(request.success) && reads(request.failure);
}

/** Whether `key` is in the range (key, rangeEnd) with etcd's rangeEnd rules. */

export function inRange(key: Uint8Array, start: Uint8Array, rangeEnd: Uint8Array | undefined): boolean {
  if (isEmpty(rangeEnd)) return compareBytes(key, start) === 0;
  return compareBytes(key, start) >= 0 && beforeEnd(key, rangeEnd);
}

function coversKey(request: DeleteRangeRequest, key: Uint8Array): boolean {
  return inRange(key, request.key, request.rangeEnd);
}

function passesFilters(kv: KeyValue, request: RangeRequest): boolean {
  const maxMod = request.maxModRevision ?? 0;
  const minMod = request.minModRevision ?? 0;
  const maxCreate = request.maxCreateRevision ?? 0;
  const minCreate = request.minCreateRevision ?? 0;
  if (maxMod !== 0 && kv.modRevision > maxMod) return false;
  if (minMod !== 0 && kv.modRevision < minMod) return false;
  if (maxCreate !== 0 && kv.createRevision > maxCreate) return false;
  if (minCreate !== 0 && kv.createRevision < minCreate) return false;
  return true;
}

/**
 * etcd's sort rules: a non-key target with order 'none' sorts ascending; key order ascending is
 * the natural order. Ties keep key order (a stable sort; etcd's unstable sort does the same for
 * the small results where it uses insertion sort).
 */
export function sortKeyValues(kvs: KeyValue[], order: RangeRequest['sortOrder'] & string, target: NonNullable<RangeRequest['sortTarget']>): KeyValue[] {
  let effective = order;
  if (target !== 'key' && effective === 'none') effective = 'ascend';
  else if (target === 'key' && effective === 'ascend') effective = 'none';
  if (effective === 'none') return kvs;
  const compare = keyValueComparator(target);
  const sign = effective === 'ascend' ? 1 : -1;
  return kvs.slice().sort((a, b) => sign * compare(a, b));
}

function keyValueComparator(target: NonNullable<RangeRequest['sortTarget']>): (a: KeyValue, b: KeyValue) => number {
  switch (target) {
    case 'key':
      return (a, b) => compareBytes(a.key, b.key);
    case 'version':
      return (a, b) => a.version - b.version;
    case 'create':
      return (a, b) => a.createRevision - b.createRevision;
    case 'mod':
      return (a, b) => a.modRevision - b.modRevision;
    case 'value':
      return (a, b) => compareBytes(a.value, b.value);
    default:
      return unreachable(target, 'sort target');
  }
}

function compareKeyValue(compare: Compare, kv: KeyValue): boolean {
  let result: number;
  if (compare.target === 'value') {
    assert(compare.value instanceof Uint8Array, 'a value compare needs a Uint8Array');
    result = Math.sign(compareBytes(kv.value, compare.value));
  } else if (compare.target === 'lease') {
    // Lease ids are compared exactly over the whole int64 range (signed, as etcd's are).
    assert(typeof compare.value === 'bigint', 'a lease compare needs a bigint');
    result = kv.lease === compare.value ? 0 : kv.lease > compare.value ? 1 : -1;
  } else {
    assert(typeof compare.value === 'number', 'a revision or version compare needs a number');
    const actual = compare.target === 'version' ? kv.version : compare.target === 'create' ? kv.createRevision : kv.modRevision;
    result = Math.sign(actual - compare.value);
  }
  switch (compare.result) {
    case 'equal':
      return result === 0;
    case 'not-equal':
      return result !== 0;
    case 'greater':
      return result > 0;
    case 'less':
      return result < 0;
    default:
      return unreachable(compare.result, 'compare result');
  }
}

/**
 * etcd's checkTxnRequest: the compares and each branch may hold at most `maxOperations`; a nested
 * transaction gets what its parent left (maxOperations minus the parent's largest list).
 */
function checkTxnRequest(request: TxnRequest, maxOperations: number, depth = 1): void {
  // invariant: depth <= txnDepthMax, because every enclosing level spent at least one operation.
  assert(depth <= txnDepthMax && maxOperations >= 0, 'txn nesting beyond what the operations budget allows');
  const operations = Math.max(request.compare.length, request.success.length, request.failure.length);
  if (operations > maxOperations) throw new MvccError('too-many-operations');
  for (const compare of request.compare) if (compare.key.length === 0) throw new MvccError('empty-key');
  for (const op of [...request.success, ...request.failure]) checkRequestOp(op, maxOperations - operations, depth);
}

function checkRequestOp(op: RequestOp, maxOperations: number, depth: number): void {
  switch (op.type) {
    case 'range':
      if (op.range.key.length === 0) throw new MvccError('empty-key');
      return;
    case 'put':
      validatePut(op.put);
      return;
    case 'deleteRange':
      if (op.deleteRange.key.length === 0) throw new MvccError('empty-key');
      return;
    case 'txn':
      checkTxnRequest(op.txn, maxOperations, depth + 1);
      return;
    default:
      unreachable(op, 'request op');
  }
}

// --- etcd's checkIntervals: no key may be written twice by one branch (nested branches included).

/** A deleted interval [begin, end); end undefined = +infinity (etcd's affine ""), as etcd builds them. */
interface Interval {
  readonly begin: Uint8Array;
  readonly end: Uint8Array | undefined;
}

/** etcd's point interval [key, key + "\0"). */
function pointInterval(key: Uint8Array): Interval {
  const end = new Uint8Array(key.length + 1);
  end.set(key);
  return { begin: key, end };
}

/** Whether [key, key+"\0") overlaps the interval, with etcd's (affine-string) comparisons. */
function intersectsPoint(interval: Interval, key: Uint8Array): boolean {
  // Overlap of [a, b) and [k, k+"\0"): a <= k (since a < k+"\0" means a <= k) and k < b.
  if (compareBytes(interval.begin, key) > 0) return false;
  return interval.end === undefined || compareBytes(key, interval.end) < 0;
}

/**
 * Returns the keys put and the intervals deleted by `ops` (recursively), throwing 'duplicate-key'
 * on an overlap exactly where etcd 3.5 does. Note etcd builds a delete's interval from its raw
 * rangeEnd, so rangeEnd "\0" makes an empty interval that overlaps nothing; this mirrors that.
 */
function checkIntervals(ops: readonly RequestOp[]): { puts: Map<string, Uint8Array>; deletes: Interval[] } {
  const deletes: Interval[] = [];
  for (const op of ops) {
    if (op.type !== 'deleteRange') continue;
    const { key, rangeEnd } = op.deleteRange;
    deletes.push(rangeEnd !== undefined && rangeEnd.length !== 0 ? { begin: key, end: rangeEnd } : pointInterval(key));
  }
  const overlapsDelete = (key: Uint8Array) => deletes.some((interval) => intersectsPoint(interval, key));
  const puts = new Map<string, Uint8Array>();
  for (const op of ops) {
    if (op.type !== 'txn') continue;
    const then = checkIntervals(op.txn.success);
    const otherwise = checkIntervals(op.txn.failure);
    for (const [name, key] of then.puts) {
      if (puts.has(name) || overlapsDelete(key)) throw new MvccError('duplicate-key');
      puts.set(name, key);
    }
    for (const [name, key] of otherwise.puts) {
      // A key put by both branches of one nested txn is fine: only one branch runs.
      if (puts.has(name) && !then.puts.has(name)) throw new MvccError('duplicate-key');
      if (overlapsDelete(key)) throw new MvccError('duplicate-key');
      puts.set(name, key);
    }
    deletes.push(...then.deletes, ...otherwise.deletes);
  }
  for (const op of ops) {
    if (op.type !== 'put') continue;
    const name = bytesToHex(op.put.key);
    if (puts.has(name) || overlapsDelete(op.put.key)) throw new MvccError('duplicate-key');
    puts.set(name, op.put.key);
  }
  return { puts, deletes };
}

/**
 * etcd's checkIntervals on one branch. A branch of puts and ranges only (a bulk load) needs no
 * intervals: its put keys, in order, must all differ, which needs no copy of a key when they
 * come sorted already.
 */
function checkNoKeyWrittenTwice(ops: readonly RequestOp[]): void {
  const keys: Uint8Array[] = [];
  for (const op of ops) {
    if (op.type === 'deleteRange' || op.type === 'txn') {
      checkIntervals(ops);
      return;
    }
    if (op.type === 'put') keys.push(op.put.key);
  }
  let sorted = true;
  for (let i = 1; i < keys.length && sorted; i++) sorted = compareBytes(keys[i - 1]!, keys[i]!) < 0;
  if (sorted) return;
  keys.sort(compareBytes);
  for (let i = 1; i < keys.length; i++) if (compareBytes(keys[i - 1]!, keys[i]!) === 0) throw new MvccError('duplicate-key');
}

/** Set key for a byte string (internal bookkeeping only; never leaves this file). */
function bytesToHex(bytes: Uint8Array): string {
  let text = '';
  for (let i = 0; i < bytes.length; i++) text += (bytes[i]! < 16 ? '0' : '') + bytes[i]!.toString(16);
  return text;
}
