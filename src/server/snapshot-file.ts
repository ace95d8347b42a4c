/**
 * The snapshot file `etcdctl snapshot save` writes against DKV:
 *
 *   "DKVSNAP2" | length u64 (BE) | the default store's state machine snapshot (every engine: keys,
 *   leases …, as a Raft snapshot carries it) | zero padding to a multiple of 512 bytes | SHA-256
 *   of all before
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
const LENGTH_BYTES = 8;
export const SNAPSHOT_HASH_BYTES = 32;
const SNAPSHOT_FILE_ALIGN_BYTES = 512;
/** Where a frame's payload length sits in its header (little-endian u32). */
const FRAME_LENGTH_OFFSET = 12;

export class SnapshotFileError extends Error {
  override readonly name = 'SnapshotFileError';
}

/** The pieces of a snapshot file, in order: magic and length, the state machine snapshot's frames, padding, hash. */
export function snapshotFileParts(frames: readonly Uint8Array[]): Uint8Array[] {
  let length = 0;
  for (const f of frames) length += f.length;
  const head = new Uint8Array(SNAPSHOT_FILE_MAGIC.length + LENGTH_BYTES);
  head.set(SNAPSHOT_FILE_MAGIC);
  new DataView(head.buffer).setBigUint64(SNAPSHOT_FILE_MAGIC.length, BigInt(length));
  const size = head.length + length;
  const padding = new Uint8Array((SNAPSHOT_FILE_ALIGN_BYTES - (size % SNAPSHOT_FILE_ALIGN_BYTES)) % SNAPSHOT_FILE_ALIGN_BYTES);
  const hash = createHash('sha256');
  hash.update(head);
  for (const f of frames) hash.update(f);
  hash.update(padding);
  return [head, ...frames, padding, new Uint8Array(hash.digest())];
}

/** What a snapshot file holds: a state machine snapshot (format 2) or an earlier build's MVCC frames. */
export type SnapshotFileContents = { readonly format: 2; readonly stateMachine: Uint8Array } | { readonly format: 1; readonly mvccFrames: Uint8Array[] };

/** A snapshot file's contents, after checking its magic, hash and padding. */
export function readSnapshotFile(file: Uint8Array): SnapshotFileContents {
  const isMagic = (magic: Uint8Array) => file.length >= magic.length + SNAPSHOT_HASH_BYTES && magic.every((b, i) => file[i] === b);
  const v2 = isMagic(SNAPSHOT_FILE_MAGIC);
  if (!v2 && !isMagic(SNAPSHOT_FILE_MAGIC_V1)) throw new SnapshotFileError('not a DKV snapshot file (bad magic)');
  const body = file.subarray(0, file.length - SNAPSHOT_HASH_BYTES);
  const digest = createHash('sha256').update(body).digest();
  if (!digest.equals(Buffer.from(file.subarray(file.length - SNAPSHOT_HASH_BYTES)))) {
    throw new SnapshotFileError('snapshot file is damaged: its SHA-256 does not match');
  }
  if (v2) {
    const start = SNAPSHOT_FILE_MAGIC.length + LENGTH_BYTES;
    if (body.length < start) throw new SnapshotFileError('snapshot file is damaged: no length');
    const length = Number(new DataView(body.buffer, body.byteOffset, body.byteLength).getBigUint64(SNAPSHOT_FILE_MAGIC.length));
    if (start + length > body.length || !isZero(body.subarray(start + length))) throw new SnapshotFileError('snapshot file is damaged: its length does not match');
    return { format: 2, stateMachine: body.subarray(start, start + length) };
  }
  return { format: 1, mvccFrames: mvccFrames(body) };
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
