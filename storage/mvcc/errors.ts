/**
 * Errors of the MVCC store. Client-visible failures are `MvccError`s with a stable code and
 * etcd 3.5's exact message (one table below). Broken invariants and bad internal arguments are
 * `MvccAssertionError`s: never caught and logged, they stop the process.
 */

/** Every client-visible error of the store: code → etcd's exact message. */
export const mvccErrorMessages = {
  'future-revision': 'mvcc: required revision is a future revision',
  compacted: 'mvcc: required revision has been compacted',
  'key-not-found': 'etcdserver: key not found',
  'too-many-operations': 'etcdserver: too many operations in txn request',
  'duplicate-key': 'etcdserver: duplicate key given in txn request',
  'empty-key': 'etcdserver: key is not provided',
  'value-provided': 'etcdserver: value is provided',
  'lease-provided': 'etcdserver: lease is provided',
  'lease-not-found': 'etcdserver: requested lease not found',
} as const;

export type MvccErrorCode = keyof typeof mvccErrorMessages;

export class MvccError extends Error {
  override readonly name = 'MvccError';
  readonly code: MvccErrorCode;

  constructor(code: MvccErrorCode) {
    super(mvccErrorMessages[code]);
    this.code = code;
  }
}

/** A damaged, truncated or foreign snapshot stream. */
export class SnapshotError extends Error {
  override readonly name = 'SnapshotError';
}

export class MvccAssertionError extends Error {
  override readonly name = 'MvccAssertionError';
}

export function assert(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new MvccAssertionError(typeof message === 'string' ? message : message());
}

/** Revisions, lease ids and indexes are plain numbers; they must stay exact integers. */
export function assertSafeInteger(value: number, what: string): void {
  if (!Number.isSafeInteger(value)) throw new MvccAssertionError(`${what} must be a safe integer, got ${value}`);
}

export function unreachable(value: never, what: string): never {
  throw new MvccAssertionError(`unexpected ${what}: ${String(value)}`);
}
