/**
 * Assertions for invariants of the Raft core. A failed assertion means the core (or its caller)
 * is broken; it is never caught and logged, it stops the process (TIGER_STYLE).
 */
export class RaftAssertionError extends Error {
  override readonly name = 'RaftAssertionError';
}

export function assert(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) {
    throw new RaftAssertionError(typeof message === 'string' ? message : message());
  }
}

/** Raft terms, indexes and node ids are plain numbers; they must stay exact integers. */
export function assertIndex(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RaftAssertionError(`${what} must be a non-negative safe integer, got ${value}`);
  }
}

export function unreachable(value: never, what: string): never {
  throw new RaftAssertionError(`unexpected ${what}: ${String(value)}`);
}
