/** Small byte helpers the engines share. */
import { joinSnapshotFrames } from '../../storage/index.js';

/** The chunks of a snapshot section as one buffer (the chunk itself when there is one). */
export function concatBytes(chunks: readonly Uint8Array[]): Uint8Array {
  return chunks.length === 1 ? chunks[0]! : joinSnapshotFrames(chunks);
}

/** Every chunk an engine's `snapshot()` hands out, drained now (a section's chunks, for `restore`). */
export function sectionChunks(chunks: Iterator<Uint8Array>): Uint8Array[] {
  const drained: Uint8Array[] = [];
  for (let next = chunks.next(); next.done !== true; next = chunks.next()) drained.push(next.value);
  return drained;
}

/** Lower-case hex, two digits a byte (for messages and JSON payloads). */
export function bytesToHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** The bytes `bytesToHex` wrote; undefined for anything else (odd length, upper case, not hex). */
export function hexToBytes(hex: string): Uint8Array | undefined {
  if (!/^(?:[0-9a-f]{2})*$/.test(hex)) return undefined;
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}
