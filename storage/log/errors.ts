/** Errors of the log store. Both stop the node: neither is ever caught and ignored. */
import { hex } from './keys.js';

/**
 * The data on disk is damaged or inconsistent. It names the shard, the index and the key so an
 * operator can find the record; the store never resets or truncates a log to get past it.
 */
export class StorageCorruptionError extends Error {
  override readonly name = 'StorageCorruptionError';
  readonly code = 'storage-corrupted';
  readonly keyHex: string;
  constructor(
    readonly shard: number | undefined,
    readonly index: number | undefined,
    key: Uint8Array,
    readonly reason: string,
  ) {
    super(
      `storage corrupted: shard ${shard ?? '(none)'}, index ${index ?? '(none)'}, key ${hex(key)}: ${reason}`,
    );
    this.keyHex = hex(key);
  }
}

/** A write to LevelDB failed; the store refuses everything after it (memory may be ahead of disk). */
export class StorageFailedError extends Error {
  override readonly name = 'StorageFailedError';
  readonly code = 'storage-failed';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
