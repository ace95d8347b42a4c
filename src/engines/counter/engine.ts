/**
 * The counter engine: atomic signed 64-bit counters kept as ordinary keys of the store.
 *
 * - A counter's value is the decimal ASCII text of an int64 in its key's value ("42", "-7"), so
 *   `etcdctl get` shows it, etcd and `dkv.v1` watchers see every counter change as a put, and
 *   counters are in the KV engine's snapshot and hash. This engine holds no state of its own.
 * - Increment reads the key's value (absent: 0), which must be canonical int64 text (`-?[0-9]+`,
 *   no leading zero, no "-0", within range) or the command is refused with
 *   `counter-not-a-number`; it adds with BigInt and refuses a result outside int64 with
 *   `counter-overflow` (never wraps). Either refusal changes nothing. Set writes a value whatever
 *   the key held; Delete deletes the key whatever it held (as Redis's SET and DEL).
 * - A write is a plain put (no lease): a leased key a counter writes is detached from its lease,
 *   as by any put. The KV engine's observers (the lease engine) see it through `kv.written`.
 * - TTL: with a scheduler connected (the TTL engine), a write with a TTL sets the key's deadline
 *   at the leader's stamped time plus the TTL; a write without one clears any deadline the key
 *   had (as any write to a key does in the TTL engine). Commands that
 *   carry a TTL are version 2, which only a build with a scheduler applies, so a member without
 *   one stops rather than diverges, and leaders do not propose them until every member publishes
 *   that it applies version 2 (clients get `not capable` meanwhile).
 */
import { assert } from '../../../raft/index.js';
import type { MvccEvent } from '../../../storage/index.js';
import { type ApplyContext, type Engine, type EngineCommand, EngineError, EngineId, UnknownCommandError } from '../engine.js';
import type { KvEngine } from '../kv/engine.js';
import { counterDigitsMax, counterHeaderBytes, counterKeyBytesMax, counterTtlMsMax, counterValueMax, counterValueMin } from './limits.js';

/** The counter engine's operation codes (in every counter log entry: never renumber). */
export const CounterCommandKind = {
  /** amount i64 | TTL ms f64 | key: add amount to the key's value. */
  Increment: 1,
  /** value i64 | TTL ms f64 | key: write value. */
  Set: 2,
  /** key: delete the key. */
  Delete: 3,
} as const;
export type CounterCommandKind = (typeof CounterCommandKind)[keyof typeof CounterCommandKind];

/** Counter commands without a TTL (the TTL field is 0). */
export const COUNTER_COMMAND_VERSION = 1;
/** The same format, with a TTL that may be nonzero: applied only by a build with a TTL scheduler. */
export const COUNTER_COMMAND_VERSION_TTL = 2;

/** Per-key deadlines (the TTL engine): what the counter engine needs of it. */
export interface CounterTtlScheduler {
  /** Expire `key` at `deadlineMs` (the leader's clock) unless it is written again after `modRevision`. */
  setTtl(key: Uint8Array, deadlineMs: number, modRevision: number, term: number): void;
  /** Forget `key`'s deadline. */
  clearTtl(key: Uint8Array): void;
}

export type CounterOutcome =
  | { readonly kind: 'incremented' | 'set'; readonly value: bigint; readonly revision: number; readonly events: readonly MvccEvent[] }
  | { readonly kind: 'deleted'; readonly deleted: boolean; readonly revision: number; readonly events: readonly MvccEvent[] }
  | { readonly kind: 'error'; readonly error: EngineError; readonly events: readonly MvccEvent[] };

const NO_EVENTS: readonly MvccEvent[] = [];

// ---- Values ------------------------------------------------------------------------------------

const MINUS = 0x2d;
const ZERO = 0x30;
const NINE = 0x39;
/** Digits that always fit a double exactly (10^15 < 2^53). */
const exactDigitsMax = 15;

export function isInt64(value: bigint): boolean {
  return value >= counterValueMin && value <= counterValueMax;
}

/**
 * The int64 a counter's stored text holds, or undefined when the text is not one in canonical
 * form: `-?[0-9]+`, no leading zero, no "-0", within int64.
 */
export function parseCounterValue(text: Uint8Array): bigint | undefined {
  const length = text.length;
  if (length === 0 || length > counterDigitsMax) return undefined;
  const negative = text[0] === MINUS;
  const first = negative ? 1 : 0;
  if (first === length) return undefined;
  if (text[first] === ZERO && (length - first > 1 || negative)) return undefined;
  let small = 0;
  for (let i = first; i < length; i++) {
    const c = text[i]!;
    if (c < ZERO || c > NINE) return undefined;
    small = small * 10 + (c - ZERO);
  }
  if (length - first <= exactDigitsMax) return BigInt(negative ? -small : small);
  const value = BigInt(String.fromCharCode(...text));
  return isInt64(value) ? value : undefined;
}

/** A counter value as the text stored in its key. */
export function encodeCounterValue(value: bigint): Uint8Array {
  assert(isInt64(value), () => `counter value ${value} is outside int64`);
  const text = value.toString();
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  // Paired with the parse that reads it back: what a counter writes, it can always increment.
  assert(parseCounterValue(bytes) === value, () => `counter text ${text} does not read back as ${value}`);
  return bytes;
}

// ---- Commands ----------------------------------------------------------------------------------

function checkKey(key: Uint8Array): void {
  assert(key.length >= 1 && key.length <= counterKeyBytesMax, () => `a counter key of ${key.length} bytes`);
}

function amountCommand(kind: CounterCommandKind, key: Uint8Array, amount: bigint, ttlMs: number): EngineCommand {
  checkKey(key);
  assert(isInt64(amount), () => `counter amount ${amount} is outside int64`);
  assert(Number.isSafeInteger(ttlMs) && ttlMs >= 0 && ttlMs <= counterTtlMsMax, () => `counter TTL ${ttlMs} ms`);
  const payload = new Uint8Array(counterHeaderBytes + key.length);
  const view = new DataView(payload.buffer);
  view.setBigInt64(0, amount);
  view.setFloat64(8, ttlMs);
  payload.set(key, counterHeaderBytes);
  const version = ttlMs === 0 ? COUNTER_COMMAND_VERSION : COUNTER_COMMAND_VERSION_TTL;
  return { engine: EngineId.Counter, version, kind, payload };
}

/**
 * Adds `delta` to `key`'s counter; with `ttlMs` > 0 the key expires that long after the write,
 * without one it has no deadline after it (either way, whatever deadline it had is replaced).
 */
export function incrementCommand(key: Uint8Array, delta: bigint, ttlMs = 0): EngineCommand {
  return amountCommand(CounterCommandKind.Increment, key, delta, ttlMs);
}

/** Sets `key`'s counter to `value`; with `ttlMs` > 0 the key expires that long after the write. */
export function setCommand(key: Uint8Array, value: bigint, ttlMs = 0): EngineCommand {
  return amountCommand(CounterCommandKind.Set, key, value, ttlMs);
}

export function deleteCommand(key: Uint8Array): EngineCommand {
  checkKey(key);
  return { engine: EngineId.Counter, version: COUNTER_COMMAND_VERSION, kind: CounterCommandKind.Delete, payload: key.slice() };
}

interface AmountPayload {
  readonly amount: bigint;
  readonly ttlMs: number;
  readonly key: Uint8Array;
}

/** An Increment's or Set's payload; a malformed one is from a build this one does not understand. */
function decodeAmount(command: EngineCommand): AmountPayload {
  const payload = command.payload;
  const keyBytes = payload.length - counterHeaderBytes;
  if (keyBytes < 1 || keyBytes > counterKeyBytesMax) throw new UnknownCommandError(`a counter command of ${payload.length} bytes`);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const ttlMs = view.getFloat64(8);
  if (!Number.isSafeInteger(ttlMs) || ttlMs < 0 || ttlMs > counterTtlMsMax) throw new UnknownCommandError(`a counter TTL of ${ttlMs} ms`);
  if (ttlMs !== 0 && command.version < COUNTER_COMMAND_VERSION_TTL) throw new UnknownCommandError(`a version ${command.version} counter command with a TTL`);
  // A copy: the key outlives the entry (in the TTL scheduler).
  return { amount: view.getBigInt64(0), ttlMs, key: payload.slice(counterHeaderBytes) };
}

function refusal(code: 'counter-not-a-number' | 'counter-overflow' | 'no-space' | 'not-owned'): CounterOutcome {
  return { kind: 'error', error: new EngineError(code), events: NO_EVENTS };
}

// ---- The engine --------------------------------------------------------------------------------

export interface CounterEngineOptions {
  /** The KV engine whose keys hold the counters (its store is replaced on restore: held by engine). */
  readonly kv: KvEngine;
  /** Per-key deadlines; without one, this build applies no command with a TTL (version 1 only). */
  readonly ttl?: CounterTtlScheduler;
}

export class CounterEngine implements Engine {
  readonly id = EngineId.Counter;
  readonly name = 'counter';
  readonly version: number;
  private readonly kv: KvEngine;
  private readonly ttl: CounterTtlScheduler | undefined;

  constructor(options: CounterEngineOptions) {
    this.kv = options.kv;
    this.ttl = options.ttl;
    this.version = options.ttl === undefined ? COUNTER_COMMAND_VERSION : COUNTER_COMMAND_VERSION_TTL;
  }

  /** Whether this build applies counter writes with a TTL (a TTL scheduler is connected). */
  get ttlCapable(): boolean {
    return this.ttl !== undefined;
  }

  /** The counter `key` holds now: 0n when absent, undefined when its value is not an int64. */
  value(key: Uint8Array): bigint | undefined {
    const found = this.kv.mvcc.range({ key }).kvs[0];
    return found === undefined ? 0n : parseCounterValue(found.value);
  }

  apply(command: EngineCommand, context: ApplyContext): CounterOutcome {
    switch (command.kind) {
      case CounterCommandKind.Increment: {
        const { amount, ttlMs, key } = decodeAmount(command);
        if (!this.kv.owns(key)) return refusal('not-owned');
        const current = this.value(key);
        if (current === undefined) return refusal('counter-not-a-number');
        const next = current + amount;
        if (!isInt64(next)) return refusal('counter-overflow');
        return this.write('incremented', key, next, ttlMs, context);
      }
      case CounterCommandKind.Set: {
        const { amount, ttlMs, key } = decodeAmount(command);
        if (!this.kv.owns(key)) return refusal('not-owned');
        return this.write('set', key, amount, ttlMs, context);
      }
      case CounterCommandKind.Delete: {
        const key = command.payload;
        if (key.length < 1 || key.length > counterKeyBytesMax) throw new UnknownCommandError(`a counter delete of ${key.length} bytes`);
        if (!this.kv.owns(key)) return refusal('not-owned');
        const result = this.kv.mvcc.deleteKeys([key]);
        this.kv.written(result.events);
        this.ttl?.clearTtl(key.slice());
        return { kind: 'deleted', deleted: result.deleted > 0, revision: result.revision, events: result.events };
      }
      default:
        throw new UnknownCommandError(`unknown counter command kind ${command.kind}`);
    }
  }

  private write(kind: 'incremented' | 'set', key: Uint8Array, value: bigint, ttlMs: number, context: ApplyContext): CounterOutcome {
    // A NOSPACE alarm caps the store: a counter write is a put.
    if (this.kv.capped) return refusal('no-space');
    // No lease: a counter write detaches the key from one, as any plain put does.
    const result = this.kv.mvcc.put(key, encodeCounterValue(value));
    this.kv.written(result.events);
    if (ttlMs > 0) {
      // decodeAmount let a TTL through only in a version-2 command, which only a build with a
      // scheduler is handed.
      assert(this.ttl !== undefined, 'a counter TTL without a scheduler');
      this.ttl.setTtl(key, context.nowMs + ttlMs, result.revision, context.term);
    } else {
      this.ttl?.clearTtl(key);
    }
    return { kind, value, revision: result.revision, events: result.events };
  }

  // ---- Snapshot, restore, hash: counters live in the KV engine's store, which snapshots and
  // hashes them; this engine has no state of its own, so its section is empty and its hash constant.

  snapshot(): Iterator<Uint8Array> {
    return [][Symbol.iterator]();
  }

  restore(chunks: readonly Uint8Array[]): void {
    assert(chunks.every((chunk) => chunk.length === 0), 'the counter engine has no snapshot state');
  }

  hash(): number {
    return 0;
  }
}

/** The counter outcome of an Applied from the counter engine. */
export function counterOutcome(outcome: unknown): CounterOutcome {
  return outcome as CounterOutcome;
}
