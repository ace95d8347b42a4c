/**
 * The snapshot file `etcdctl snapshot save` writes against DKV, and how a Raft snapshot carries
 * the same state:
 *
 *   "DKVSNAP1" | MVCC snapshot frames | zero padding to a multiple of 512 bytes | SHA-256 of all before
 *
 * The padding is there because etcdctl checks that a snapshot's size is a multiple of 512 (a bolt
 * database's pages) plus the 32-byte hash; the hash lets a torn or altered file be refused.
 */
import { createHash } from 'node:crypto';
import { mvccLimits } from '../../storage/index';

export const SNAPSHOT_FILE_MAGIC = new TextEncoder().encode('DKVSNAP1');
export const SNAPSHOT_HASH_BYTES = 32;
const SNAPSHOT_FILE_ALIGN_BYTES = 512;
/** Where a frame's payload length sits in its header (little-endian u32). */
const FRAME_LENGTH_OFFSET = 12;

export class SnapshotFileError extends Error {
  override readonly name = 'SnapshotFileError';
}

/** The pieces of a snapshot file, in order: magic, frames, padding, hash. */
export function snapshotFileParts(frames: readonly Uint8Array[]): Uint8Array[] {
  let size = SNAPSHOT_FILE_MAGIC.length;
  for (const f of frames) size += f.length;
  const padding = new Uint8Array((SNAPSHOT_FILE_ALIGN_BYTES - (size % SNAPSHOT_FILE_ALIGN_BYTES)) % SNAPSHOT_FILE_ALIGN_BYTES);
  const hash = createHash('sha256');
  hash.update(SNAPSHOT_FILE_MAGIC);
  for (const f of frames) hash.update(f);
  hash.update(padding);
  return [SNAPSHOT_FILE_MAGIC, ...frames, padding, new Uint8Array(hash.digest())];
}

/** The MVCC frames of a snapshot file, after checking its magic, hash and padding. */
export function readSnapshotFile(file: Uint8Array): Uint8Array[] {
  const magic = SNAPSHOT_FILE_MAGIC;
  if (file.length < magic.length + SNAPSHOT_HASH_BYTES || !magic.every((b, i) => file[i] === b)) {
    throw new SnapshotFileError('not a DKV snapshot file (bad magic)');
  }
  const body = file.subarray(0, file.length - SNAPSHOT_HASH_BYTES);
  const digest = createHash('sha256').update(body).digest();
  if (!digest.equals(Buffer.from(file.subarray(file.length - SNAPSHOT_HASH_BYTES)))) {
    throw new SnapshotFileError('snapshot file is damaged: its SHA-256 does not match');
  }
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
