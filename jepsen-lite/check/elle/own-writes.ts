/**
 * A transaction's own writes by key and value, with where in the transaction each was made: a
 * read that shows one of them before it was made read the future (an internal anomaly).
 */
import type { ElleTxn } from './types.js';

export type OwnWrites = Map<string, Map<number, number>>;

export function ownWrites(txn: ElleTxn): OwnWrites {
  const writes: OwnWrites = new Map();
  txn.mops.forEach((mop, at) => {
    if (mop.f === 'r') return;
    let byValue = writes.get(mop.key);
    if (byValue === undefined) writes.set(mop.key, (byValue = new Map()));
    byValue.set(mop.value, at);
  });
  return writes;
}

/** The first of `values` the transaction writes to `key` only after mop index `at`. */
export function writtenLater(writes: OwnWrites, key: string, at: number, values: readonly (number | null)[]): number | undefined {
  const byValue = writes.get(key);
  if (byValue === undefined) return undefined;
  for (const value of values) {
    if (value === null) continue;
    const writtenAt = byValue.get(value);
    if (writtenAt !== undefined && writtenAt > at) return value;
  }
  return undefined;
}
