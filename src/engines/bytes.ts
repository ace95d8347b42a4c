/** Small byte helpers the engines share. */
import { joinSnapshotFrames } from '../../storage/index.js';

/** The chunks of a snapshot section as one buffer (the chunk itself when there is one). */
export function concatBytes(chunks: readonly Uint8Array[]): Uint8Array {
  return chunks.length === 1 ? chunks[0]! : joinSnapshotFrames(chunks);
}

/** Lower-case hex, two digits a byte (for messages and JSON payloads). */
export function bytesToHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
