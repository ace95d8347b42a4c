/**
 * Chunked snapshot encoding of an MvccStore: revision, compact revision, applied index and every
 * retained version (history watchers may still need survives a restore).
 *
 * The stream is a sequence of chunks, each at most `snapshotChunkBytesMax` bytes, each framed as
 *
 *   magic u32 "MVCC" | format version u16 | kind u8 | 0 u8 | sequence u32 | payload length u32 |
 *   payload | crc32c u32 of everything before it                            (little-endian)
 *
 * kind 1 (header, first): revision f64 | compactRevision f64 | appliedIndex f64
 * kind 2 (data): a byte stream cut at any point, continued by the next data chunk, of key groups
 *   key length u32 | key | version count u32 | versions, oldest first:
 *   modRevision f64 | sub u32 | createRevision f64 | version f64 | lease i64 | flags u8 |
 *   value length u32 | value
 * kind 3 (end, last): keys f64 | versions f64
 *
 * Format 2 (written) holds the lease id as an exact int64. Format 1 held it as an f64 of a safe
 * integer; it is still read (the only difference), so snapshots written before stay restorable.
 * Every chunk of one stream carries the same format version.
 *
 * Chunk boundaries must survive transport (send each chunk as one message).
 */
import { crc32c } from '../checksum.js';
import { assert, SnapshotError } from './errors.js';
import {
  keyBytesMax,
  segmentFillBytes,
  snapshotChunkBytesMax,
  snapshotChunkFrameBytes,
  snapshotFormatVersion,
  snapshotFormatVersionMin,
  valueBytesMax,
} from './limits.js';
import {
  compareBytes,
  noLease,
  noRecord,
  recordCreateRevision,
  recordIsTombstone,
  recordKey,
  recordLease,
  recordModRevision,
  recordSub,
  recordValue,
  recordVersion,
  retainedChain,
  Segment,
  segmentFillKeys,
  writeLease,
} from './segments.js';
import { MvccStore } from './store.js';
import type { MvccStoreOptions } from './types.js';

const MAGIC = 0x4343_564d; // "MVCC" read as little-endian
const KIND_HEADER = 1;
const KIND_DATA = 2;
const KIND_END = 3;
const HEADER_BYTES = 16;
const VERSION_FIXED_BYTES = 8 + 4 + 8 + 8 + 8 + 1 + 4;
const FLAG_TOMBSTONE = 1;
/** Bytes of the next chunk first joined to a record the previous chunk cut (most records are smaller). */
const snapshotJoinBytesInitial = 64 * 1024;

/** Collects payload bytes into frames of at most snapshotChunkBytesMax. */
class ChunkWriter {
  readonly ready: Uint8Array[] = [];
  private sequence = 0;
  private buffer = new Uint8Array(snapshotChunkBytesMax);
  private length = HEADER_BYTES;
  private readonly scratch = new Uint8Array(64);
  readonly scratchView = new DataView(this.scratch.buffer);

  /** Appends bytes of the data stream, cutting chunks wherever they fill. */
  write(bytes: Uint8Array): void {
    let at = 0;
    while (at < bytes.length) {
      const room = snapshotChunkBytesMax - 4 - this.length;
      if (room === 0) {
        this.flush(KIND_DATA);
        continue;
      }
      const take = Math.min(room, bytes.length - at);
      this.buffer.set(bytes.subarray(at, at + take), this.length);
      this.length += take;
      at += take;
    }
  }

  writeScratch(length: number): void {
    this.write(this.scratch.subarray(0, length));
  }

  /** Closes the current chunk as `kind` (data chunks only when they hold anything). */
  flush(kind: number): void {
    if (kind === KIND_DATA && this.length === HEADER_BYTES) return;
    const view = new DataView(this.buffer.buffer, this.buffer.byteOffset);
    view.setUint32(0, MAGIC, true);
    view.setUint16(4, snapshotFormatVersion, true);
    view.setUint8(6, kind);
    view.setUint8(7, 0);
    view.setUint32(8, this.sequence++, true);
    view.setUint32(12, this.length - HEADER_BYTES, true);
    view.setUint32(this.length, crc32c(this.buffer.subarray(0, this.length)), true);
    const chunk = this.buffer.slice(0, this.length + 4);
    assert(chunk.length <= snapshotChunkBytesMax, 'snapshot chunk over its limit');
    this.ready.push(chunk);
    this.length = HEADER_BYTES;
  }

  /** A chunk whose whole payload is given (header and end chunks). */
  whole(kind: number, payload: Uint8Array): void {
    assert(this.length === HEADER_BYTES, 'a whole chunk must not interrupt data');
    this.buffer.set(payload, HEADER_BYTES);
    this.length += payload.length;
    this.flush(kind);
  }

  take(): Uint8Array[] {
    return this.ready.splice(0, this.ready.length);
  }
}

function numbers(...values: number[]): Uint8Array {
  const bytes = new Uint8Array(values.length * 8);
  const view = new DataView(bytes.buffer);
  values.forEach((value, i) => view.setFloat64(i * 8, value, true));
  return bytes;
}

/**
 * The store as snapshot chunks. The state is captured when this is called (later writes to the
 * store do not change the stream); chunks are produced lazily, one key group at a time.
 */
export function encodeSnapshot(store: MvccStore): Generator<Uint8Array, void, undefined> {
  return encodeCapture(store.capture());
}

function* encodeCapture(capture: ReturnType<MvccStore['capture']>): Generator<Uint8Array, void, undefined> {
  const writer = new ChunkWriter();
  writer.whole(KIND_HEADER, numbers(capture.revision, capture.compactRevision, capture.appliedIndex));
  yield* writer.take();
  const scratch: number[] = [];
  const view = writer.scratchView;
  let keys = 0;
  let versions = 0;
  for (const { source, heads } of capture.segments) {
    for (const head of heads) {
      scratch.length = 0;
      retainedChain(source, head, capture.compactRevision, scratch);
      assert(scratch.length > 0, 'a key without retained versions');
      const key = recordKey(source, head);
      view.setUint32(0, key.length, true);
      writer.writeScratch(4);
      writer.write(key);
      view.setUint32(0, scratch.length, true);
      writer.writeScratch(4);
      for (let i = scratch.length - 1; i >= 0; i--) {
        const offset = scratch[i]!;
        const value = recordValue(source, offset);
        view.setFloat64(0, recordModRevision(source, offset), true);
        view.setUint32(8, recordSub(source, offset), true);
        view.setFloat64(12, recordCreateRevision(source, offset), true);
        view.setFloat64(20, recordVersion(source, offset), true);
        writeLease(view, 28, recordLease(source, offset));
        view.setUint8(36, recordIsTombstone(source, offset) ? FLAG_TOMBSTONE : 0);
        view.setUint32(37, value.length, true);
        writer.writeScratch(VERSION_FIXED_BYTES);
        writer.write(value);
        versions++;
      }
      keys++;
      if (writer.ready.length > 0) yield* writer.take();
    }
  }
  writer.flush(KIND_DATA);
  writer.whole(KIND_END, numbers(keys, versions));
  yield* writer.take();
}

// ---------------------------------------------------------------------------------------------
// Restore

/** Builds segments from keys and versions arriving in order, validating as it goes. */
class Loader {
  readonly segments: Segment[] = [];
  private segment: Segment | undefined;
  private slot = -1;
  private lastKey: Uint8Array | undefined;
  private key: Uint8Array = new Uint8Array(0);
  private versionsLeft = 0;
  private lastRevision = 0;
  private lastSub = 0;
  private belowFloor = false;
  liveKeys = 0;
  keys = 0;
  versions = 0;
  private readonly fillKeys: number;

  constructor(
    readonly revision: number,
    readonly compactRevision: number,
    private readonly keysMax: number,
  ) {
    this.fillKeys = segmentFillKeys(keysMax);
  }

  get expectingKey(): boolean {
    return this.versionsLeft === 0;
  }

  beginKey(key: Uint8Array, versions: number): void {
    this.endKey();
    if (key.length === 0 || key.length > keyBytesMax) throw new SnapshotError(`snapshot: bad key length ${key.length}`);
    if (versions === 0) throw new SnapshotError('snapshot: a key without versions');
    if (this.lastKey !== undefined && compareBytes(this.lastKey, key) >= 0) throw new SnapshotError('snapshot: keys out of order');
    if (this.segment === undefined || this.segment.count >= this.fillKeys || this.segment.liveBytes >= segmentFillBytes) {
      this.segment?.shrink();
      this.segment = new Segment(this.keysMax + 1, 64 * 1024);
      this.segments.push(this.segment);
    }
    this.slot = this.segment.count++;
    this.segment.heads[this.slot] = noRecord;
    // A view of the chunk (chunks are never changed): append copies it into the arena.
    this.key = key;
    this.lastKey = key;
    this.versionsLeft = versions;
    this.lastRevision = 0;
    this.lastSub = 0;
    this.belowFloor = false;
    this.keys++;
  }

  addVersion(fields: { modRevision: number; sub: number; createRevision: number; version: number; lease: bigint; tombstone: boolean }, value: Uint8Array): void {
    const segment = this.segment;
    if (segment === undefined || this.versionsLeft === 0) throw new SnapshotError('snapshot: a version without its key');
    const { modRevision, sub } = fields;
    if (!isCount(modRevision) || !isCount(sub) || !isCount(fields.createRevision) || !isCount(fields.version)) {
      throw new SnapshotError('snapshot: a version field is not a non-negative safe integer');
    }
    if (modRevision > this.revision) throw new SnapshotError('snapshot: a version newer than the snapshot');
    if (modRevision < this.lastRevision || (modRevision === this.lastRevision && sub <= this.lastSub && this.lastRevision !== 0)) {
      throw new SnapshotError('snapshot: versions out of order');
    }
    if (modRevision <= this.compactRevision) {
      // Only the oldest retained version may be at or below the compact revision, and it is live.
      if (this.belowFloor || this.lastRevision !== 0 || fields.tombstone) throw new SnapshotError('snapshot: compacted history in the stream');
      this.belowFloor = true;
    }
    if (modRevision < 2) throw new SnapshotError('snapshot: a version at or below the initial revision');
    const head = segment.heads[this.slot]!;
    segment.heads[this.slot] = segment.append(fields, this.key, value, head);
    this.lastRevision = modRevision;
    this.lastSub = sub;
    this.versionsLeft--;
    this.versions++;
    if (this.versionsLeft === 0 && !fields.tombstone) this.liveKeys++;
  }

  endKey(): void {
    if (this.versionsLeft !== 0) throw new SnapshotError('snapshot: a key group ended early');
  }

  finish(): Segment[] {
    this.endKey();
    this.segment?.shrink();
    return this.segments;
  }
}

/** Parses the data byte stream across chunk boundaries. */
class DataParser {
  private carry: Uint8Array = new Uint8Array(0);

  constructor(
    private readonly loader: Loader,
    /** The stream's format version (1 held lease ids as f64). */
    private readonly format: number,
  ) {}

  private lease(view: DataView, at: number): bigint {
    // Almost no version has a lease (0 has the same bytes in both formats): no BigInt for those.
    if (view.getUint32(at, true) === 0 && view.getUint32(at + 4, true) === 0) return noLease;
    if (this.format >= 2) return view.getBigInt64(at, true);
    const lease = view.getFloat64(at, true);
    if (!Number.isSafeInteger(lease) || lease < 0) throw new SnapshotError('snapshot: a format 1 lease id is not a non-negative safe integer');
    return BigInt(lease);
  }

  /**
   * Parses `payload`, continuing a record the previous chunk cut. Only that record is joined (on
   * a small buffer); the rest is read in place, so a chunk is never copied whole.
   */
  push(payload: Uint8Array): void {
    let start = 0;
    if (this.carry.length > 0) {
      const carried = this.carry.length;
      let take = Math.min(payload.length, snapshotJoinBytesInitial);
      for (;;) {
        const joined = new Uint8Array(carried + take);
        joined.set(this.carry);
        joined.set(payload.subarray(0, take), carried);
        const at = this.parse(joined, 0, carried);
        if (at >= carried) {
          start = at - carried;
          break;
        }
        if (take === payload.length) {
          // The whole chunk is inside one record: carry it all.
          this.carry = joined.slice(at);
          return;
        }
        take = payload.length;
      }
    }
    const at = this.parse(payload, start, payload.length);
    this.carry = payload.slice(at);
  }

  /** Parses whole items of `bytes` from `at` while they start before `before`; returns where it stopped. */
  private parse(bytes: Uint8Array, from: number, before: number): number {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let at = from;
    while (at < before) {
      const left = bytes.length - at;
      if (this.loader.expectingKey) {
        if (left < 4) break;
        const keyLength = view.getUint32(at, true);
        if (keyLength === 0 || keyLength > keyBytesMax) throw new SnapshotError(`snapshot: bad key length ${keyLength}`);
        if (left < 8 + keyLength) break;
        const key = bytes.subarray(at + 4, at + 4 + keyLength);
        this.loader.beginKey(key, view.getUint32(at + 4 + keyLength, true));
        at += 8 + keyLength;
      } else {
        if (left < VERSION_FIXED_BYTES) break;
        const valueLength = view.getUint32(at + 37, true);
        if (valueLength > valueBytesMax) throw new SnapshotError(`snapshot: bad value length ${valueLength}`);
        if (left < VERSION_FIXED_BYTES + valueLength) break;
        const flags = view.getUint8(at + 36);
        if ((flags & ~FLAG_TOMBSTONE) !== 0) throw new SnapshotError('snapshot: unknown version flags');
        this.loader.addVersion(
          {
            modRevision: view.getFloat64(at, true),
            sub: view.getUint32(at + 8, true),
            createRevision: view.getFloat64(at + 12, true),
            version: view.getFloat64(at + 20, true),
            lease: this.lease(view, at + 28),
            tombstone: flags === FLAG_TOMBSTONE,
          },
          bytes.subarray(at + VERSION_FIXED_BYTES, at + VERSION_FIXED_BYTES + valueLength),
        );
        at += VERSION_FIXED_BYTES + valueLength;
      }
    }
    return at;
  }

  get pendingBytes(): number {
    return this.carry.length;
  }
}

function isCount(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0;
}

function readNumbers(payload: Uint8Array, count: number, what: string): number[] {
  if (payload.length !== count * 8) throw new SnapshotError(`snapshot: ${what} chunk has ${payload.length} bytes`);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const values: number[] = [];
  for (let i = 0; i < count; i++) {
    const value = view.getFloat64(i * 8, true);
    if (!Number.isSafeInteger(value) || value < 0) throw new SnapshotError(`snapshot: bad number ${value} in the ${what}`);
    values.push(value);
  }
  return values;
}

/** Checks one chunk's frame; returns its format version, kind and payload. */
function unframe(chunk: Uint8Array, sequence: number): { format: number; kind: number; payload: Uint8Array } {
  if (chunk.length < snapshotChunkFrameBytes || chunk.length > snapshotChunkBytesMax) {
    throw new SnapshotError(`snapshot: chunk ${sequence} has ${chunk.length} bytes`);
  }
  const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (view.getUint32(0, true) !== MAGIC) throw new SnapshotError(`snapshot: chunk ${sequence} is not an MVCC snapshot chunk`);
  const format = view.getUint16(4, true);
  if (format < snapshotFormatVersionMin || format > snapshotFormatVersion) throw new SnapshotError(`snapshot: format version ${format} is not supported`);
  const length = view.getUint32(12, true);
  if (length !== chunk.length - snapshotChunkFrameBytes) throw new SnapshotError(`snapshot: chunk ${sequence} is truncated`);
  if (view.getUint32(HEADER_BYTES + length, true) !== crc32c(chunk.subarray(0, HEADER_BYTES + length))) {
    throw new SnapshotError(`snapshot: chunk ${sequence} fails its checksum`);
  }
  if (view.getUint32(8, true) !== sequence) throw new SnapshotError(`snapshot: chunk ${view.getUint32(8, true)} arrived where ${sequence} was expected`);
  return { format, kind: view.getUint8(6), payload: chunk.subarray(HEADER_BYTES, HEADER_BYTES + length) };
}

/** Rebuilds a store chunk by chunk; rejects a damaged, reordered or truncated stream. */
class SnapshotRestorer {
  private sequence = 0;
  private loader: Loader | undefined;
  private parser: DataParser | undefined;
  private appliedIndex = 0;
  private ended = false;
  private streamFormat: number | undefined;
  private readonly keysMax: number;

  constructor(private readonly options: MvccStoreOptions) {
    this.keysMax = new MvccStore(options).segmentKeysMax;
  }

  push(chunk: Uint8Array): void {
    if (this.ended) throw new SnapshotError('snapshot: data after the end chunk');
    const { format, kind, payload } = unframe(chunk, this.sequence++);
    if (this.streamFormat !== undefined && format !== this.streamFormat) throw new SnapshotError(`snapshot: format version ${format} in a format ${this.streamFormat} stream`);
    this.streamFormat = format;
    if (this.loader === undefined || this.parser === undefined) {
      if (kind !== KIND_HEADER) throw new SnapshotError('snapshot: the stream does not start with a header');
      const [revision, compactRevision, applied] = readNumbers(payload, 3, 'header') as [number, number, number];
      if (revision < 1 || compactRevision > revision) throw new SnapshotError('snapshot: inconsistent revisions in the header');
      this.appliedIndex = applied;
      this.loader = new Loader(revision, compactRevision, this.keysMax);
      this.parser = new DataParser(this.loader, format);
    } else if (kind === KIND_DATA) {
      this.parser.push(payload);
    } else if (kind === KIND_END) {
      const [keys, versions] = readNumbers(payload, 2, 'end') as [number, number];
      if (this.parser.pendingBytes !== 0 || !this.loader.expectingKey) throw new SnapshotError('snapshot: the data stops inside a record');
      if (keys !== this.loader.keys || versions !== this.loader.versions) throw new SnapshotError('snapshot: key or version count does not match the end chunk');
      this.ended = true;
    } else {
      throw new SnapshotError(`snapshot: unexpected chunk kind ${kind}`);
    }
  }

  finish(): MvccStore {
    const loader = this.loader;
    if (loader === undefined || !this.ended) throw new SnapshotError('snapshot: the stream is truncated (no end chunk)');
    return MvccStore.fromLoaded(
      {
        revision: loader.revision,
        compactRevision: loader.compactRevision,
        appliedIndex: this.appliedIndex,
        liveKeys: loader.liveKeys,
        segments: loader.finish(),
      },
      this.options,
    );
  }
}

/** Rebuilds a store from snapshot chunks; rejects a damaged, reordered or truncated stream. */
export async function restoreSnapshot(
  chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
  options: MvccStoreOptions = {},
): Promise<MvccStore> {
  const restorer = new SnapshotRestorer(options);
  for await (const chunk of chunks) restorer.push(chunk);
  return restorer.finish();
}

/** `restoreSnapshot` for chunks already in memory, without yielding (the shard runtime's path). */
export function restoreSnapshotSync(chunks: Iterable<Uint8Array>, options: MvccStoreOptions = {}): MvccStore {
  const restorer = new SnapshotRestorer(options);
  for (const chunk of chunks) restorer.push(chunk);
  return restorer.finish();
}

/**
 * A store from snapshot data held in memory: each piece is one chunk or several concatenated (an
 * engine's snapshot section, or an earlier build's whole Raft snapshot data).
 */
export function restoreSnapshotPieces(pieces: readonly Uint8Array[], options: MvccStoreOptions = {}): MvccStore {
  return restoreSnapshotSync(pieces.flatMap((piece) => [...splitSnapshotFrames(piece)]), options);
}

/** Concatenated snapshot chunks (each carries its own length) split back into chunks, as views. */
export function* splitSnapshotFrames(bytes: Uint8Array): Generator<Uint8Array> {
  let at = 0;
  while (at < bytes.length) {
    if (at + snapshotChunkFrameBytes > bytes.length) throw new SnapshotError('snapshot: a frame is cut off');
    const length = new DataView(bytes.buffer, bytes.byteOffset + at, snapshotChunkFrameBytes).getUint32(12, true);
    const end = at + snapshotChunkFrameBytes + length;
    if (end > bytes.length) throw new SnapshotError('snapshot: a frame is cut off');
    yield bytes.subarray(at, end);
    at = end;
  }
}

/** Snapshot chunks joined into one byte string (what `splitSnapshotFrames` takes apart). */
export function joinSnapshotFrames(frames: Iterable<Uint8Array>): Uint8Array {
  const list = [...frames];
  let size = 0;
  for (const f of list) size += f.length;
  const data = new Uint8Array(size);
  let at = 0;
  for (const f of list) {
    data.set(f, at);
    at += f.length;
  }
  return data;
}
