/**
 * The canonical HashKV encoding. The store and the test's reference model both hash through
 * these two functions, so two states hash equal exactly when they hold the same retained versions.
 *
 *   hash = crc32c over, for each key in byte order, for each retained version of it with
 *          modRevision <= the hashed revision in ascending (modRevision, sub) order:
 *            key length u32 | key | modRevision f64 | sub u32 | createRevision f64 |
 *            version f64 | lease i64 | tombstone u8 | value length u32 | value
 *          then compactRevision f64            (all little-endian)
 *
 * A tombstone hashes with createRevision, version and lease 0 and an empty value.
 */
import { crc32c } from '../checksum.js';

export interface HashedVersion {
  readonly key: Uint8Array;
  readonly modRevision: number;
  readonly sub: number;
  readonly createRevision: number;
  readonly version: number;
  readonly lease: bigint;
  readonly tombstone: boolean;
  readonly value: Uint8Array;
}

const FIXED_BYTES = 4 + 8 + 4 + 8 + 8 + 8 + 1 + 4;
const scratch = new Uint8Array(FIXED_BYTES);
const scratchView = new DataView(scratch.buffer);

/** The running hash before the first version. */
export const hashKvInitial = 0;

/** Extends the running hash with one version (call in canonical order). */
export function hashKvVersion(crc: number, version: HashedVersion): number {
  scratchView.setUint32(0, version.key.length, true);
  let hash = crc32c(scratch.subarray(0, 4), crc);
  hash = crc32c(version.key, hash);
  scratchView.setFloat64(0, version.modRevision, true);
  scratchView.setUint32(8, version.sub, true);
  scratchView.setFloat64(12, version.tombstone ? 0 : version.createRevision, true);
  scratchView.setFloat64(20, version.tombstone ? 0 : version.version, true);
  // i64: lease 0 hashes the same bytes as the f64 0 of the older encoding.
  scratchView.setBigInt64(28, version.tombstone ? 0n : version.lease, true);
  scratch[36] = version.tombstone ? 1 : 0;
  const value = version.tombstone ? new Uint8Array(0) : version.value;
  scratchView.setUint32(37, value.length, true);
  hash = crc32c(scratch.subarray(0, 41), hash);
  return crc32c(value, hash);
}

/** Ends the hash with the compact revision. */
export function hashKvFinish(crc: number, compactRevision: number): number {
  scratchView.setFloat64(0, compactRevision, true);
  return crc32c(scratch.subarray(0, 8), crc);
}
