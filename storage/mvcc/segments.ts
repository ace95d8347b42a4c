/**
 * The ordered segment index: the key space as a list of bounded, sorted segments found by binary
 * search over their first keys. A segment packs every version of its keys into one byte arena:
 *
 *   record = header (49 bytes, little-endian) + key bytes + value bytes
 *   header = modRevision f64 | createRevision f64 | version f64 | lease i64 |
 *            sub u32 | previous-version offset u32 | key length u32 | value length u32 | flags u8
 *
 * and keeps one column per key, `heads` (offset of the key's newest record), in key order. Older
 * versions hang off the newest through the previous-version offset. A written record is never
 * changed: growing or rewriting an arena copies into a new buffer, so views handed out stay valid
 * and a captured (segment arena, heads copy) pair is a consistent snapshot for free.
 *
 * Garbage (versions compaction dropped) stays in the arena until it passes half of it; then the
 * segment's arena is rewritten with only retained versions (bounded work, amortised O(1)).
 */
import { assert } from './errors.js';
import {
  arenaBytesInitial,
  arenaBytesMax,
  arenaPresizedBytesMax,
  arenaGarbageHalvesMax,
  arenaGrowthQuarters,
  arenaRewriteHeadroomEighths,
  segmentBytesMax,
  segmentFillBytes,
  segmentFillQuarters,
  segmentKeysMinDivisor,
} from './limits.js';
import type { KeyValue } from './types.js';

const OFFSET_MOD = 0;
const OFFSET_CREATE = 8;
const OFFSET_VERSION = 16;
const OFFSET_LEASE = 24;
const OFFSET_SUB = 32;
const OFFSET_PREV = 36;
const OFFSET_KEY_LENGTH = 40;
const OFFSET_VALUE_LENGTH = 44;
const OFFSET_FLAGS = 48;
export const recordHeaderBytes = 49;
const FLAG_TOMBSTONE = 1;
/** A previous-version offset that points nowhere. */
export const noRecord = 0xffff_ffff;

const EMPTY = new Uint8Array(0);
/** The lease id of a record without one (shared: reading it allocates nothing). */
export const noLease = 0n;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Whether a lease id fits the record's i64 field exactly. */
export function isInt64(value: bigint): boolean {
  return value >= INT64_MIN && value <= INT64_MAX;
}

/** Writes a lease id as i64 (little-endian); almost none has one, and 0 needs no BigInt work. */
export function writeLease(view: DataView, at: number, lease: bigint): void {
  if (lease === noLease) {
    view.setUint32(at, 0, true);
    view.setUint32(at + 4, 0, true);
    return;
  }
  // setBigInt64 would wrap a value outside int64 silently.
  assert(isInt64(lease), 'a lease id must be an int64');
  view.setBigInt64(at, lease, true);
}

// ---------------------------------------------------------------------------------------------
// Bytes

/** Byte-wise comparison (etcd's bytes.Compare): negative, zero or positive. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = a.length < b.length ? a.length : b.length;
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

function compareRegion(arena: Uint8Array, start: number, length: number, b: Uint8Array): number {
  const n = length < b.length ? length : b.length;
  for (let i = 0; i < n; i++) {
    const d = arena[start + i]! - b[i]!;
    if (d !== 0) return d;
  }
  return length - b.length;
}

/** The range end that selects every key starting with `prefix` ([0], every key, for an empty or all-0xff prefix). */
export function prefixEnd(prefix: Uint8Array): Uint8Array {
  const end = Uint8Array.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Uint8Array.of(0);
}

/** True when `end` means "every key from the start on" (etcd's rangeEnd "\0"). */
export function isOpenEnd(end: Uint8Array): boolean {
  return end.length === 1 && end[0] === 0;
}

/**
 * Whether `key` lies before the end of a range: `end` undefined or empty = only the start key
 * (callers handle that case), [0] = no end, otherwise key < end.
 */
export function beforeEnd(key: Uint8Array, end: Uint8Array): boolean {
  return isOpenEnd(end) || compareBytes(key, end) < 0;
}

// ---------------------------------------------------------------------------------------------
// Records

/** Read access to the records of one arena (a live segment or a captured one). */
export interface RecordSource {
  readonly arena: Uint8Array;
  readonly view: DataView;
}

export interface RecordFields {
  readonly modRevision: number;
  readonly sub: number;
  readonly createRevision: number;
  readonly version: number;
  readonly lease: bigint;
  readonly tombstone: boolean;
}

export function recordModRevision(source: RecordSource, offset: number): number {
  return source.view.getFloat64(offset + OFFSET_MOD, true);
}
export function recordCreateRevision(source: RecordSource, offset: number): number {
  return source.view.getFloat64(offset + OFFSET_CREATE, true);
}
export function recordVersion(source: RecordSource, offset: number): number {
  return source.view.getFloat64(offset + OFFSET_VERSION, true);
}
export function recordLease(source: RecordSource, offset: number): bigint {
  const view = source.view;
  // Almost no record has a lease: answer those without allocating a BigInt.
  if (view.getUint32(offset + OFFSET_LEASE, true) === 0 && view.getUint32(offset + OFFSET_LEASE + 4, true) === 0) return noLease;
  return view.getBigInt64(offset + OFFSET_LEASE, true);
}
export function recordSub(source: RecordSource, offset: number): number {
  return source.view.getUint32(offset + OFFSET_SUB, true);
}
export function recordPrevious(source: RecordSource, offset: number): number {
  return source.view.getUint32(offset + OFFSET_PREV, true);
}
export function recordIsTombstone(source: RecordSource, offset: number): boolean {
  return (source.arena[offset + OFFSET_FLAGS]! & FLAG_TOMBSTONE) !== 0;
}
export function recordKeyLength(source: RecordSource, offset: number): number {
  return source.view.getUint32(offset + OFFSET_KEY_LENGTH, true);
}
export function recordValueLength(source: RecordSource, offset: number): number {
  return source.view.getUint32(offset + OFFSET_VALUE_LENGTH, true);
}
export function recordBytes(source: RecordSource, offset: number): number {
  return recordHeaderBytes + recordKeyLength(source, offset) + recordValueLength(source, offset);
}
export function recordKey(source: RecordSource, offset: number): Uint8Array {
  const start = offset + recordHeaderBytes;
  return source.arena.subarray(start, start + recordKeyLength(source, offset));
}
export function recordValue(source: RecordSource, offset: number): Uint8Array {
  const start = offset + recordHeaderBytes + recordKeyLength(source, offset);
  return source.arena.subarray(start, start + recordValueLength(source, offset));
}

/** The record as etcd's KeyValue (views into the arena). A tombstone has key and modRevision only. */
export function recordToKeyValue(source: RecordSource, offset: number, keysOnly = false): KeyValue {
  const key = recordKey(source, offset);
  if (recordIsTombstone(source, offset)) {
    return { key, createRevision: 0, modRevision: recordModRevision(source, offset), version: 0, value: EMPTY, lease: noLease };
  }
  return {
    key,
    createRevision: recordCreateRevision(source, offset),
    modRevision: recordModRevision(source, offset),
    version: recordVersion(source, offset),
    value: keysOnly ? EMPTY : recordValue(source, offset),
    lease: recordLease(source, offset),
  };
}

/** The key's newest record with modRevision <= revision, or noRecord. */
export function versionAt(source: RecordSource, head: number, revision: number): number {
  let offset = head;
  while (offset !== noRecord && recordModRevision(source, offset) > revision) offset = recordPrevious(source, offset);
  return offset;
}

/** The key's newest record with modRevision < revision that is live (not a tombstone), or noRecord. */
export function liveVersionBefore(source: RecordSource, head: number, revision: number): number {
  const offset = versionAt(source, head, revision - 1);
  return offset === noRecord || recordIsTombstone(source, offset) ? noRecord : offset;
}

/**
 * Appends to `out` (newest first) the key's retained versions under compaction floor `floor`:
 * every version above the floor, plus the newest at or below it unless that is a tombstone.
 */
export function retainedChain(source: RecordSource, head: number, floor: number, out: number[]): void {
  let offset = head;
  while (offset !== noRecord) {
    if (recordModRevision(source, offset) <= floor) {
      if (!recordIsTombstone(source, offset)) out.push(offset);
      return;
    }
    out.push(offset);
    offset = recordPrevious(source, offset);
  }
}

// ---------------------------------------------------------------------------------------------
// Segment

/** The bytes the segments of one index hold (arenas and head arrays), kept as they change. */
export interface SizeAccount {
  bytes: number;
}

export class Segment implements RecordSource {
  arena: Uint8Array;
  /** The account of the index this segment is in (told of every change of the arena's size). */
  account: SizeAccount | undefined;
  view: DataView;
  /** Arena bytes written. */
  used = 0;
  /** Bytes of records no retained chain reaches (counted by compaction). */
  garbage = 0;
  /** Newest record of each key, in key order; `count` of them are in use. */
  heads: Uint32Array;
  count = 0;

  constructor(keysCapacity: number, arenaBytes: number) {
    assert(arenaBytes > 0 && arenaBytes <= arenaBytesMax, 'arena size out of bounds');
    this.arena = new Uint8Array(arenaBytes);
    this.view = new DataView(this.arena.buffer);
    this.heads = new Uint32Array(keysCapacity);
  }

  head(slot: number): number {
    assert(slot >= 0 && slot < this.count, 'slot out of bounds');
    return this.heads[slot]!;
  }

  /** Compares the key in `slot` with `key`. */
  compareKey(slot: number, key: Uint8Array): number {
    const offset = this.heads[slot]!;
    return compareRegion(this.arena, offset + recordHeaderBytes, recordKeyLength(this, offset), key);
  }

  keyAt(slot: number): Uint8Array {
    return recordKey(this, this.head(slot));
  }

  /** The slot holding `key`, or -(insertion point + 1). */
  find(key: Uint8Array): number {
    let low = 0;
    let high = this.count - 1;
    // Keys loaded in order land after the last one: one comparison tells.
    if (high >= 0 && this.compareKey(high, key) < 0) return -(high + 2);
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const c = this.compareKey(middle, key);
      if (c < 0) low = middle + 1;
      else if (c > 0) high = middle - 1;
      else return middle;
    }
    return -(low + 1);
  }

  get liveBytes(): number {
    return this.used - this.garbage;
  }

  /** Appends one record (never touching written bytes) and returns its offset. */
  append(fields: RecordFields, key: Uint8Array, value: Uint8Array, previous: number): number {
    const bytes = recordHeaderBytes + key.length + value.length;
    if (this.used + bytes > this.arena.length) this.grow(bytes);
    const offset = this.used;
    const view = this.view;
    view.setFloat64(offset + OFFSET_MOD, fields.modRevision, true);
    view.setFloat64(offset + OFFSET_CREATE, fields.createRevision, true);
    view.setFloat64(offset + OFFSET_VERSION, fields.version, true);
    writeLease(view, offset + OFFSET_LEASE, fields.lease);
    view.setUint32(offset + OFFSET_SUB, fields.sub, true);
    view.setUint32(offset + OFFSET_PREV, previous, true);
    view.setUint32(offset + OFFSET_KEY_LENGTH, key.length, true);
    view.setUint32(offset + OFFSET_VALUE_LENGTH, value.length, true);
    this.arena[offset + OFFSET_FLAGS] = fields.tombstone ? FLAG_TOMBSTONE : 0;
    this.arena.set(key, offset + recordHeaderBytes);
    this.arena.set(value, offset + recordHeaderBytes + key.length);
    this.used += bytes;
    return offset;
  }

  /** Copies a record of another arena (with a new previous-version offset). */
  copyRecord(source: RecordSource, offset: number, previous: number): number {
    const bytes = recordBytes(source, offset);
    if (this.used + bytes > this.arena.length) this.grow(bytes);
    const at = this.used;
    this.arena.set(source.arena.subarray(offset, offset + bytes), at);
    this.view.setUint32(at + OFFSET_PREV, previous, true);
    this.used += bytes;
    return at;
  }

  /** Moves the arena to a bigger buffer; the old one is left untouched for views that share it. */
  private grow(needed: number): void {
    const wanted = Math.max(this.used + needed, Math.ceil((this.arena.length * arenaGrowthQuarters) / 4));
    const length = Math.min(wanted, arenaBytesMax);
    assert(length >= this.used + needed, 'a segment arena outgrew the 32-bit offsets');
    const arena = new Uint8Array(length);
    arena.set(this.arena.subarray(0, this.used));
    this.replaceArena(arena);
  }

  /** Gives back arena room a finished bulk load will not use (restore). */
  shrink(): void {
    const room = this.arena.length - this.used;
    if (room <= this.used >>> 3) return;
    const arena = new Uint8Array(Math.max(this.used + (this.used >>> 4), 64));
    arena.set(this.arena.subarray(0, this.used));
    this.replaceArena(arena);
  }

  private replaceArena(arena: Uint8Array): void {
    if (this.account !== undefined) this.account.bytes += arena.length - this.arena.length;
    this.arena = arena;
    this.view = new DataView(arena.buffer);
  }

  /** Bytes this segment holds in memory: its arena and its head array. */
  get sizeBytes(): number {
    return this.arena.length + this.heads.byteLength;
  }

  insertSlot(slot: number, head: number): void {
    assert(slot >= 0 && slot <= this.count && this.count < this.heads.length, 'insert slot out of bounds');
    this.heads.copyWithin(slot + 1, slot, this.count);
    this.heads[slot] = head;
    this.count++;
  }

  removeSlot(slot: number): void {
    assert(slot >= 0 && slot < this.count, 'remove slot out of bounds');
    this.heads.copyWithin(slot, slot + 1, this.count);
    this.count--;
  }

  /** True when garbage passed the rewrite threshold. */
  get needsRewrite(): boolean {
    return this.garbage * 2 > this.used * arenaGarbageHalvesMax;
  }
}

/** Bytes of a key's retained versions under `floor`. */
export function retainedBytes(source: RecordSource, head: number, floor: number, scratch: number[]): number {
  scratch.length = 0;
  retainedChain(source, head, floor, scratch);
  let bytes = 0;
  for (const offset of scratch) bytes += recordBytes(source, offset);
  return bytes;
}

/** Keys a segment built in bulk (a restore, a copy of a key range) gets before the next one starts. */
export function segmentFillKeys(keysMax: number): number {
  return Math.max(1, Math.floor((keysMax * segmentFillQuarters) / 4));
}

/** Slots [start, end) of one segment. */
interface SlotRange {
  readonly segment: Segment;
  readonly start: number;
  end: number;
}

/**
 * A new segment holding slots [start, end) of the given sources (in order), retained versions
 * only, oldest version first so previous-version offsets point backwards.
 */
function buildSegment(parts: readonly SlotRange[], floor: number, keysCapacity: number, arenaBytesMin = 0): Segment {
  const scratch: number[] = [];
  let live = 0;
  let keys = 0;
  for (const { segment, start, end } of parts) {
    for (let slot = start; slot < end; slot++) live += retainedBytes(segment, segment.heads[slot]!, floor, scratch);
    keys += end - start;
  }
  assert(keys <= keysCapacity, 'segment built over capacity');
  const arenaBytes = Math.max(arenaBytesInitial, arenaBytesMin, live + Math.ceil((live * arenaRewriteHeadroomEighths) / 8));
  const built = new Segment(keysCapacity, Math.min(arenaBytes, arenaBytesMax));
  for (const { segment, start, end } of parts) {
    for (let slot = start; slot < end; slot++) {
      scratch.length = 0;
      retainedChain(segment, segment.heads[slot]!, floor, scratch);
      assert(scratch.length > 0, 'a key without retained versions must have been removed');
      let previous = noRecord;
      for (let i = scratch.length - 1; i >= 0; i--) previous = built.copyRecord(segment, scratch[i]!, previous);
      built.heads[built.count++] = previous;
    }
  }
  return built;
}

// ---------------------------------------------------------------------------------------------
// Segment index

/** A position in the index: segment number and slot within it. */
export interface Cursor {
  segment: number;
  slot: number;
}

export class SegmentIndex {
  /** In key order. Changed only through this class's methods (they keep `account` true). */
  readonly segments: Segment[] = [];
  /** What every segment holds (Segment.sizeBytes summed), kept as segments come, go and grow. */
  private readonly account: SizeAccount = { bytes: 0 };
  readonly keysMax: number;
  readonly keysMin: number;
  /** Versions at or below this revision are compacted (the store's compactRevision). */
  floor = 0;
  /** The segment `locate` found last: a txn's keys, or keys loaded in order, are often in it again. */
  private located = 0;

  constructor(keysMax: number) {
    this.keysMax = keysMax;
    this.keysMin = Math.max(1, Math.floor(keysMax / segmentKeysMinDivisor));
  }

  /** Bytes the segments hold (arenas and head arrays), without visiting them. */
  get sizeBytes(): number {
    return this.account.bytes;
  }

  /**
   * The key before which the retained bytes divide most evenly (segments' live bytes to find the
   * middle segment, then each key's retained versions in it), and the bytes below it; none for a
   * store of fewer than two keys. The cut before the first key is never taken.
   */
  bytesMiddle(): { key: Uint8Array; below: number; total: number } | undefined {
    const segments = this.segments.filter((segment) => segment.count > 0);
    let total = 0;
    for (const segment of segments) total += segment.liveBytes;
    let best: { segment: Segment; slot: number; below: number } | undefined;
    // A cut before key `slot` of `segment`, with `below` bytes before it (never before the first key).
    const consider = (segment: Segment, slot: number, below: number): void => {
      if (segment === segments[0] && slot === 0) return;
      if (best === undefined || Math.abs(total - 2 * below) < Math.abs(total - 2 * best.below)) best = { segment, slot, below };
    };
    const scratch: number[] = [];
    let below = 0;
    for (let i = 0; i < segments.length; i++) {
      const segment = segments[i]!;
      // Cuts inside a segment that ends before the middle are no better than its edges.
      if (below + segment.liveBytes < total / 2) {
        consider(segment, 0, below);
        below += segment.liveBytes;
        continue;
      }
      let at = below;
      for (let slot = 0; slot < segment.count; slot++) {
        consider(segment, slot, at);
        at += retainedBytes(segment, segment.heads[slot]!, this.floor, scratch);
      }
      if (i + 1 < segments.length) consider(segments[i + 1]!, 0, below + segment.liveBytes);
      break;
    }
    if (best === undefined) return undefined;
    const { segment, slot } = best;
    return { key: Uint8Array.from(segment.keyAt(slot)), below: best.below, total };
  }

  /** Appends segments built elsewhere (a restore's loader), in key order after every current one. */
  adopt(segments: readonly Segment[]): void {
    for (const segment of segments) this.segments.push(this.accounted(segment));
  }

  private accounted(segment: Segment): Segment {
    assert(segment.account === undefined, 'a segment joined a second index');
    segment.account = this.account;
    this.account.bytes += segment.sizeBytes;
    return segment;
  }

  private released(segment: Segment): void {
    assert(segment.account === this.account, 'a segment left an index it was not in');
    segment.account = undefined;
    this.account.bytes -= segment.sizeBytes;
  }

  /** Replaces `count` segments from `at` on by `added` (which the account takes on). */
  private replace(at: number, count: number, ...added: Segment[]): void {
    for (let i = at; i < at + count; i++) this.released(this.segments[i]!);
    this.segments.splice(at, count, ...added.map((segment) => this.accounted(segment)));
  }

  get keyCount(): number {
    let keys = 0;
    for (const segment of this.segments) keys += segment.count;
    return keys;
  }

  /** The last segment whose first key <= key (0 when key precedes every segment), -1 when empty. */
  locate(key: Uint8Array): number {
    const segments = this.segments;
    if (segments.length === 0) return -1;
    const hint = this.located;
    if (hint < segments.length && (hint === 0 || segments[hint]!.compareKey(0, key) <= 0) && (hint + 1 === segments.length || segments[hint + 1]!.compareKey(0, key) > 0)) {
      return hint;
    }
    let low = 1;
    let high = segments.length - 1;
    let found = 0;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      if (segments[middle]!.compareKey(0, key) <= 0) {
        found = middle;
        low = middle + 1;
      } else {
        high = middle - 1;
      }
    }
    this.located = found;
    return found;
  }

  /** Where `key` is (found) or would be inserted; false when absent. */
  lookup(key: Uint8Array, cursor: Cursor): boolean {
    const segmentNumber = this.locate(key);
    cursor.segment = segmentNumber;
    if (segmentNumber < 0) {
      cursor.slot = 0;
      return false;
    }
    const slot = this.segments[segmentNumber]!.find(key);
    cursor.slot = slot >= 0 ? slot : -slot - 1;
    return slot >= 0;
  }

  /** Moves the cursor to the first key >= key; false when there is none. */
  seek(key: Uint8Array, cursor: Cursor): boolean {
    this.lookup(key, cursor);
    return this.normalize(cursor);
  }

  /** Moves a cursor past the end of its segment to the next segment; false at the end. */
  normalize(cursor: Cursor): boolean {
    if (cursor.segment < 0) return false;
    while (cursor.segment < this.segments.length && cursor.slot >= this.segments[cursor.segment]!.count) {
      cursor.segment++;
      cursor.slot = 0;
    }
    return cursor.segment < this.segments.length;
  }

  /** Steps to the next key; false at the end. */
  next(cursor: Cursor): boolean {
    cursor.slot++;
    return this.normalize(cursor);
  }

  /**
   * The segment a new key goes into, the cursor at its slot (after `lookup` found the key absent).
   * Creates the first segment of an empty index. A key past the end of a full segment (keys
   * loaded in order) starts a segment of its own after it rather than splitting that one in two:
   * the full one stays full and nothing is copied; the new one's arena is sized for a full
   * segment of keys like its neighbour's (at most `arenaPresizedBytesMax`), so it never grows
   * while such keys fill it.
   */
  segmentForInsert(cursor: Cursor, found = false): Segment {
    if (cursor.segment < 0) {
      this.replace(0, 0, new Segment(this.keysMax + 1, arenaBytesInitial));
      cursor.segment = 0;
      cursor.slot = 0;
    }
    const segment = this.segments[cursor.segment]!;
    if (found || segment.count < this.keysMax) return segment;
    if (cursor.slot < segment.count) {
      // A new key inside a full segment (keys loaded slightly out of order) splits it first:
      // growing its arena for one more record, only to copy it into two halves right after,
      // would copy it twice.
      this.split(cursor.segment, false);
      const left = this.segments[cursor.segment]!;
      if (cursor.slot > left.count) {
        cursor.slot -= left.count;
        cursor.segment++;
      }
      return this.segments[cursor.segment]!;
    }
    const bytesPerKey = Math.ceil(segment.liveBytes / segment.count);
    const arenaBytes = Math.min(arenaPresizedBytesMax, Math.max(arenaBytesInitial, bytesPerKey * this.keysMax));
    const next = new Segment(this.keysMax + 1, arenaBytes);
    cursor.segment++;
    cursor.slot = 0;
    this.replace(cursor.segment, 0, next);
    return next;
  }

  /**
   * Copies of the keys in [start, end) (end undefined: no end), retained versions only, in new
   * segments that share no memory with this index's (left unchanged), each filled as a restore
   * fills them (`segmentFillKeys`, `segmentFillBytes`) with arenas sized to what they hold.
   */
  copyRange(start: Uint8Array, end: Uint8Array | undefined): Segment[] {
    const copies: Segment[] = [];
    const fillKeys = segmentFillKeys(this.keysMax);
    const cursor: Cursor = { segment: 0, slot: 0 };
    const scratch: number[] = [];
    const parts: SlotRange[] = [];
    let keys = 0;
    let bytes = 0;
    const close = (): void => {
      copies.push(buildSegment(parts, this.floor, this.keysMax + 1));
      parts.length = 0;
      keys = 0;
      bytes = 0;
    };
    for (let more = this.seek(start, cursor); more; more = this.next(cursor)) {
      const segment = this.segments[cursor.segment]!;
      if (end !== undefined && segment.compareKey(cursor.slot, end) >= 0) break;
      if (keys === fillKeys || bytes >= segmentFillBytes) close();
      const last = parts[parts.length - 1];
      if (last !== undefined && last.segment === segment && last.end === cursor.slot) last.end++;
      else parts.push({ segment, start: cursor.slot, end: cursor.slot + 1 });
      keys++;
      bytes += retainedBytes(segment, segment.heads[cursor.slot]!, this.floor, scratch);
    }
    if (keys > 0) close();
    return copies;
  }

  /** Splits segment `index` in two if a write made it too big. */
  splitIfFull(index: number): void {
    const segment = this.segments[index]!;
    const tooManyKeys = segment.count > this.keysMax;
    const tooManyBytes = segment.liveBytes > segmentBytesMax && segment.count >= 2;
    if (!tooManyKeys && !tooManyBytes) return;
    this.split(index, tooManyBytes);
  }

  private split(index: number, tooManyBytes: boolean): void {
    const segment = this.segments[index]!;
    assert(segment.count >= 2, 'a segment splits into two non-empty halves');
    const middle = segment.count >>> 1;
    const left = buildSegment([{ segment, start: 0, end: middle }], this.floor, this.keysMax + 1);
    // The last segment is where keys loaded in (nearly) ascending order keep landing: its right
    // half gets room for a full segment of such keys, as `segmentForInsert` gives a new one, so it
    // does not grow (copying itself) a few times while it fills.
    const last = index === this.segments.length - 1;
    const arenaBytesMin = last && !tooManyBytes ? Math.min(arenaPresizedBytesMax, Math.ceil(segment.liveBytes / segment.count) * this.keysMax) : 0;
    const right = buildSegment([{ segment, start: middle, end: segment.count }], this.floor, this.keysMax + 1, arenaBytesMin);
    this.replace(index, 1, left, right);
  }

  /** Rewrites segment `index` with retained versions only. */
  rewrite(index: number): void {
    const segment = this.segments[index]!;
    this.replace(index, 1, buildSegment([{ segment, start: 0, end: segment.count }], this.floor, this.keysMax + 1));
  }

  /** Drops empty segments and merges small ones into a neighbour when they fit together. */
  rebalance(): void {
    const segments = this.segments;
    for (let i = 0; i < segments.length; ) {
      const segment = segments[i]!;
      if (segment.count === 0) {
        this.replace(i, 1);
        continue;
      }
      if (segment.count >= this.keysMin || segments.length === 1) {
        i++;
        continue;
      }
      const left = i > 0 ? segments[i - 1]! : undefined;
      const right = i + 1 < segments.length ? segments[i + 1]! : undefined;
      const useLeft = left !== undefined && (right === undefined || left.count <= right.count);
      const partner = useLeft ? left! : right!;
      const fits =
        partner.count + segment.count <= this.keysMax && partner.liveBytes + segment.liveBytes <= segmentBytesMax;
      if (!fits) {
        i++;
        continue;
      }
      const first = useLeft ? partner : segment;
      const second = useLeft ? segment : partner;
      const merged = buildSegment(
        [
          { segment: first, start: 0, end: first.count },
          { segment: second, start: 0, end: second.count },
        ],
        this.floor,
        this.keysMax + 1,
      );
      const at = useLeft ? i - 1 : i;
      this.replace(at, 2, merged);
      i = at;
    }
  }

  /** Checks the structural invariants (tests and debug builds); throws on the first broken one. */
  checkInvariants(): void {
    const segments = this.segments;
    let bytes = 0;
    for (const segment of segments) bytes += segment.sizeBytes;
    assert(bytes === this.account.bytes, `the size account says ${this.account.bytes} bytes, the segments hold ${bytes}`);
    let previousKey: Uint8Array | undefined;
    for (let i = 0; i < segments.length; i++) {
      const segment = segments[i]!;
      assert(segment.count > 0, `segment ${i} is empty`);
      assert(segment.count <= this.keysMax, `segment ${i} holds ${segment.count} keys, over ${this.keysMax}`);
      assert(segment.used <= segment.arena.length && segment.garbage >= 0, `segment ${i} arena accounting broken`);
      assert(!segment.needsRewrite, `segment ${i} kept more than half garbage`);
      for (let slot = 0; slot < segment.count; slot++) {
        const key = segment.keyAt(slot);
        assert(previousKey === undefined || compareBytes(previousKey, key) < 0, `keys out of order in segment ${i}`);
        let offset = segment.heads[slot]!;
        let newer = Infinity;
        while (offset !== noRecord) {
          assert(offset < segment.used, 'record offset outside the arena');
          const revision = recordModRevision(segment, offset);
          assert(revision <= newer, 'versions out of order');
          assert(compareBytes(recordKey(segment, offset), key) === 0, 'a version holds another key');
          newer = revision;
          offset = recordPrevious(segment, offset);
        }
        previousKey = key;
      }
    }
  }
}
