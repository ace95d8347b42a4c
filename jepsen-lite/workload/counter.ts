/**
 * The `counter` workload (DKV only: etcd has no counter): increments by small random deltas and
 * linearizable reads of a few counters, over `dkv.v1.Counter`. Deterministic like the other
 * generators (same `random()` draws, same inputs). Its history is checked with the `counter`
 * model, per key: an answered Increment returns the new value, a Get the current one.
 */
import { int64, type Int64 } from '../../src/etcd-proto.js';
import type { CounterInput, CounterOutput } from '../history.js';
import { etcdKey } from './etcd.js';

/** Logical counter keys (`c0`, `c1`, …): few, so increments and reads collide. */
export const counterKeysDefault = 2;
/** Operation mix; weights are relative. */
export const counterMix = { add: 60, read: 40 } as const;
/** Deltas are drawn from [1, counterDeltaMax] (Increment refuses 0; positive deltas keep every value of a key distinct). */
export const counterDeltaMax = 5;

export class CounterGenerator {
  private readonly keyNames: readonly string[];

  constructor(
    private readonly random: () => number,
    keys = counterKeysDefault,
  ) {
    if (!Number.isInteger(keys) || keys < 1) throw new TypeError(`keys must be a positive integer, got ${keys}`);
    this.keyNames = Array.from({ length: keys }, (_, i) => `c${i}`);
  }

  get keys(): readonly string[] {
    return this.keyNames;
  }

  next(process: number): CounterInput {
    if (!Number.isSafeInteger(process) || process < 0) throw new TypeError(`process must be a non-negative integer, got ${process}`);
    const key = this.keyNames[this.draw(this.keyNames.length)]!;
    if (this.draw(counterMix.add + counterMix.read) >= counterMix.add) return { f: 'read', key };
    return { f: 'add', key, delta: 1 + this.draw(counterDeltaMax) };
  }

  private draw(n: number): number {
    const r = this.random();
    if (!(r >= 0 && r < 1)) throw new TypeError(`random() must return a number in [0, 1), got ${r}`);
    return Math.floor(r * n);
  }
}

/** A counter operation as a `dkv.v1.Counter` call (requests in the proto's snake_case fields). */
export type CounterCall =
  | { readonly method: 'Increment'; readonly request: { readonly key: Uint8Array; readonly delta: number; readonly ttl_ms: number } }
  | { readonly method: 'Get'; readonly request: { readonly key: Uint8Array; readonly serializable: boolean } };

export function toCounterCall(input: CounterInput, keyPrefix: string): CounterCall {
  const key = etcdKey(keyPrefix, input.key);
  if (input.f === 'read') return { method: 'Get', request: { key, serializable: false } };
  return { method: 'Increment', request: { key, delta: input.delta, ttl_ms: 0 } };
}

/** A CounterResponse, read loosely (int64 as number or Long). */
export interface CounterResponse {
  readonly value?: Int64;
}

export function fromCounterResponse(input: CounterInput, response: CounterResponse): CounterOutput {
  const value = int64(response.value ?? 0);
  return input.f === 'read' ? { f: 'read', value } : { f: 'add', value };
}
