/**
 * The snapshot file `etcdctl snapshot save` writes against DKV:
 *
 *   "DKVSNAP2" | length u64 (BE) | the default store's state machine snapshot (every engine: keys,
 *   leases …, as a Raft snapshot carries it) | zero padding to a multiple of 512 bytes | SHA-256
 *   of all before
 *
 * and, once stores exist, the same with "DKVSNAP3" and the stores after the default store's
 * snapshot (all integers big-endian):
 *
 *   store count u32 | per store: name length u32, name (UTF-8), prefix length u32, prefix, shard
 *   count u32 | per shard, in key order: start length u32, start, has end u8, [end length u32,
 *   end], length u64, the shard's state machine snapshot
 *
 * Files of earlier builds ("DKVSNAP1" | MVCC snapshot frames | padding | SHA-256) still restore
 * (keys only).
 *
 * The padding is there because etcdctl checks that a snapshot's size is a multiple of 512 (a bolt
 * database's pages) plus the 32-byte hash; the hash lets a torn or altered file be refused.
 */
import { createHash } from 'node:crypto';
// The limits alone (not storage/'s front door, which loads LevelDB): `dkv snapshot` reads this file.
import * as mvccLimits from '../../storage/mvcc/limits.js';

export const SNAPSHOT_FILE_MAGIC_V1 = new TextEncoder().encode('DKVSNAP1');
export const SNAPSHOT_FILE_MAGIC = new TextEncoder().encode('DKVSNAP2');
export const SNAPSHOT_FILE_MAGIC_V3 = new TextEncoder().encode('DKVSNAP3');
const LENGTH_BYTES = 8;
export const SNAPSHOT_HASH_BYTES = 32;
const SNAPSHOT_FILE_ALIGN_BYTES = 512;
/** Where a frame's payload length sits in its header (little-endian u32). */
const FRAME_LENGTH_OFFSET = 12;

export class SnapshotFileError extends Error {
  override readonly name = 'SnapshotFileError';
}

/** A store in a snapshot file: its shards in key order, each with its state machine snapshot. */
export interface SnapshotStore<Data = Uint8Array> {
  readonly name: string;
  readonly prefix: Uint8Array;
  readonly shards: ReadonlyArray<{ readonly start: Uint8Array; readonly end: Uint8Array | undefined; readonly stateMachine: Data }>;
}

/**
 * The pieces of a snapshot file, in order: magic and length, the default store's state machine
 * snapshot frames, the stores (format 3, when there are any), padding, hash.
 */
export function snapshotFileParts(frames: readonly Uint8Array[], stores: ReadonlyArray<SnapshotStore<readonly Uint8Array[]>> = []): Uint8Array[] {
  const magic = stores.length === 0 ? SNAPSHOT_FILE_MAGIC : SNAPSHOT_FILE_MAGIC_V3;
  const head = new Uint8Array(magic.length + LENGTH_BYTES);
  head.set(magic);
  new DataView(head.buffer).setBigUint64(magic.length, BigInt(bytesOf(frames)));
  const parts = [head, ...frames];
  if (stores.length > 0) {
    parts.push(u32(stores.length));
    for (const store of stores) {
      const name = new TextEncoder().encode(store.name);
      parts.push(u32(name.length), name, u32(store.prefix.length), store.prefix, u32(store.shards.length));
      for (const shard of store.shards) {
        parts.push(u32(shard.start.length), shard.start);
        if (shard.end === undefined) parts.push(Uint8Array.of(0));
        else parts.push(Uint8Array.of(1), u32(shard.end.length), shard.end);
        const length = new Uint8Array(LENGTH_BYTES);
        new DataView(length.buffer).setBigUint64(0, BigInt(bytesOf(shard.stateMachine)));
        parts.push(length, ...shard.stateMachine);
      }
    }
  }
  const size = bytesOf(parts);
  parts.push(new Uint8Array((SNAPSHOT_FILE_ALIGN_BYTES - (size % SNAPSHOT_FILE_ALIGN_BYTES)) % SNAPSHOT_FILE_ALIGN_BYTES));
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  parts.push(new Uint8Array(hash.digest()));
  return parts;
}

function bytesOf(parts: readonly Uint8Array[]): number {
  let length = 0;
  for (const part of parts) length += part.length;
  return length;
}

function u32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value);
  return out;
}

/**
 * What a snapshot file holds: the default store's state machine snapshot and the stores (none in
 * format 2), or an earlier build's MVCC frames.
 */
export type SnapshotFileContents =
  | { readonly format: 2 | 3; readonly stateMachine: Uint8Array; readonly stores: readonly SnapshotStore[] }
  | { readonly format: 1; readonly mvccFrames: Uint8Array[] };

/** A snapshot file's contents, after checking its magic, hash and padding. */
export function readSnapshotFile(file: Uint8Array): SnapshotFileContents {
  const isMagic = (magic: Uint8Array) => file.length >= magic.length + SNAPSHOT_HASH_BYTES && magic.every((b, i) => file[i] === b);
  const v3 = isMagic(SNAPSHOT_FILE_MAGIC_V3);
  const v2 = v3 || isMagic(SNAPSHOT_FILE_MAGIC);
  if (!v2 && !isMagic(SNAPSHOT_FILE_MAGIC_V1)) throw new SnapshotFileError('not a DKV snapshot file (bad magic)');
  const body = file.subarray(0, file.length - SNAPSHOT_HASH_BYTES);
  const digest = createHash('sha256').update(body).digest();
  if (!digest.equals(Buffer.from(file.subarray(file.length - SNAPSHOT_HASH_BYTES)))) {
    throw new SnapshotFileError('snapshot file is damaged: its SHA-256 does not match');
  }
  if (v2) {
    const start = SNAPSHOT_FILE_MAGIC.length + LENGTH_BYTES;
    if (body.length < start) throw new SnapshotFileError('snapshot file is damaged: no length');
    const reader = new BodyReader(body, SNAPSHOT_FILE_MAGIC.length);
    const stateMachine = reader.bytes(reader.u64());
    const stores = v3 ? readStores(reader) : [];
    if (!isZero(body.subarray(reader.at))) throw new SnapshotFileError('snapshot file is damaged: its length does not match');
    return { format: v3 ? 3 : 2, stateMachine, stores };
  }
  return { format: 1, mvccFrames: mvccFrames(body) };
}

function readStores(reader: BodyReader): SnapshotStore[] {
  const stores: SnapshotStore[] = [];
  for (let count = reader.u32(); count > 0; count--) {
    const name = new TextDecoder('utf-8', { fatal: true }).decode(reader.bytes(reader.u32()));
    const prefix = reader.bytes(reader.u32());
    const shards: Array<SnapshotStore['shards'][number]> = [];
    const shardCount = reader.u32();
    // (Zero padding read as a store would be one without a name or shards.)
    if (name.length === 0 || shardCount === 0) throw new SnapshotFileError('snapshot file is damaged: a store without a name or shards');
    for (let n = shardCount; n > 0; n--) {
      const start = reader.bytes(reader.u32());
      const end = reader.bytes(1)[0] === 0 ? undefined : reader.bytes(reader.u32());
      shards.push({ start, end, stateMachine: reader.bytes(reader.u64()) });
    }
    stores.push({ name, prefix, shards });
  }
  return stores;
}

/** Reads a file's body in order; any read past its end is a damaged file. */
class BodyReader {
  private readonly view: DataView;
  constructor(
    private readonly body: Uint8Array,
    public at: number,
  ) {
    this.view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  }

  private need(bytes: number): void {
    if (!Number.isSafeInteger(bytes) || this.at + bytes > this.body.length) throw new SnapshotFileError('snapshot file is damaged: its length does not match');
  }

  u32(): number {
    this.need(4);
    const value = this.view.getUint32(this.at);
    this.at += 4;
    return value;
  }

  u64(): number {
    this.need(LENGTH_BYTES);
    const value = Number(this.view.getBigUint64(this.at));
    this.at += LENGTH_BYTES;
    return value;
  }

  bytes(length: number): Uint8Array {
    this.need(length);
    const out = this.body.subarray(this.at, this.at + length);
    this.at += length;
    return out;
  }
}

function mvccFrames(body: Uint8Array): Uint8Array[] {
  const magic = SNAPSHOT_FILE_MAGIC_V1;
  // Frames carry their lengths; what follows the last one is the zero padding.
  const frames: Uint8Array[] = [];
  let at = magic.length;
  const view = body;
  while (at < view.length) {
    if (view.length - at < mvccLimits.snapshotChunkFrameBytes || isZero(view.subarray(at))) break;
    const length = new DataView(view.buffer, view.byteOffset + at, mvccLimits.snapshotChunkFrameBytes).getUint32(FRAME_LENGTH_OFFSET, true);
    const frameEnd = at + mvccLimits.snapshotChunkFrameBytes + length;
    if (frameEnd > view.length) throw new SnapshotFileError('snapshot file is damaged: a frame is cut off');
    frames.push(view.subarray(at, frameEnd));
    at = frameEnd;
  }
  return frames;
}

function isZero(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b !== 0) return false;
  return true;
}
