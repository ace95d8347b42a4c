/**
 * A digest chain over the sequence of applied entries (index, term, bytes): two replicas that
 * applied the same prefix hold the same chain. The simulator keeps one per replica (and in every
 * snapshot) to check state machine safety; production does not pay for it.
 */
import type { Entry } from '../../raft/index.js';

/** A 64-bit-ish digest of an applied prefix, as two 32-bit halves. */
export interface AppliedChain {
  readonly a: number;
  readonly b: number;
}

export const CHAIN_START: AppliedChain = Object.freeze({ a: 0x811c9dc5, b: 0x01000193 });

function mix(h: number, value: number): number {
  h ^= value & 0xff;
  h = Math.imul(h, 0x01000193);
  h ^= (value >>> 8) & 0xff;
  h = Math.imul(h, 0x01000193);
  h ^= (value >>> 16) & 0xff;
  h = Math.imul(h, 0x01000193);
  h ^= value >>> 24;
  return Math.imul(h, 0x01000193) >>> 0;
}

/** FNV-1a over bytes, continuing from `h`. */
export function hashBytes(h: number, data: Uint8Array): number {
  for (let i = 0; i < data.length; i++) {
    h ^= data[i]!;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Extends the chain with one applied entry. */
export function extendChain(chain: AppliedChain, entry: Entry): AppliedChain {
  let a = mix(chain.a, entry.index);
  a = mix(a, entry.term);
  a = hashBytes(a, entry.data);
  let b = mix(chain.b ^ 0x5bd1e995, entry.term);
  b = mix(b, entry.index);
  b = hashBytes(Math.imul(b, 0x2545f491) >>> 0, entry.data);
  return { a, b };
}
