/**
 * The TTL engine: per-key TTLs (the expiration wheel's second user, after leases), and the
 * `dkv.v1.KV` writes that set them — a put or a txn with TTLs and an optional fencing token,
 * each ONE command, so the fence check, the write and the TTL happen in one apply.
 *
 * - Replicated state: key → `{ deadline, mod revision }`. The deadline is absolute time on the
 *   leader's clock: the apply's stamped time plus the TTL (apply reads no clock).
 * - A TTL belongs to one version of a key. The engine follows every write to the store (it is a
 *   `KvWriteObserver`): an event for a key with a TTL at another mod revision than the TTL's (an
 *   etcd put or delete, a lease revocation, a counter write, a dkv write without TTL) clears it.
 *   So, invariant: every TTL names a live key at its current mod revision.
 * - Only the leader expires. The keys sit in a time wheel kept on every replica by apply and
 *   advanced only by the leader (`leaderTick`: at most `ttlExpiriesPerTickMax` keys and
 *   `ttlWheelAdvancesPerTickMax` bounded calls of the wheel a tick). It proposes Expire commands
 *   naming (key, mod revision) pairs; apply deletes, in ONE revision per command, each named key
 *   whose TTL is still that one and due at the stamped time — a key written meanwhile survives. The leader looks at every key it proposed again one election
 *   timeout later, so an Expire that was lost (a leader change, a full queue) is proposed again;
 *   a node that leads again in a later term looks at them at once. No duty runs while the leader
 *   hands leadership over (the runtime skips it: Raft refuses proposals then).
 * - A new leader gives the keys written before it took office one election timeout more (as the
 *   lease engine gives deadlines of earlier terms): a leader whose clock runs ahead of its
 *   predecessor's by up to that much does not expire them early.
 * - Other engines set TTLs in their own apply through `KeyTtlScheduler` (`setTtl`, `clearTtl`).
 */
import { assert } from '../../../raft/index.js';
import { MvccError, type MvccEvent, type PutResult, type TxnResult, crc32c, mvccLimits } from '../../../storage/index.js';
import { type Int64, type WireDkvPutRequest, type WireDkvTxnRequest, type WireFence, type WireKeyTtl, dkvType, int64Exact, int64Saturated } from '../../etcd-proto.js';
import {
  type ApplyContext,
  type Engine,
  type EngineCommand,
  EngineError,
  EngineId,
  type KeyTtlScheduler,
  type LeaderContext,
  UnknownCommandError,
} from '../engine.js';
import { ProposedExpiries, TimeWheel, type WheelTimer, wheelLimits } from '../expiry/index.js';
import { type KvEngine, type KvWriteObserver, WireValueError, notOwned, putFromWire, txnFromWire, txnPuts } from '../kv/index.js';
import {
  keyTtlMsMax,
  keyTtlsPerTxnMax,
  ttlExpireCommandKeyBytesMax,
  ttlExpireCommandsPerTickMax,
  ttlExpiriesPerCommandMax,
  ttlExpiriesPerTickMax,
  ttlSnapshotRecordsPerChunk,
  ttlWheelAdvancesPerTickMax,
  ttlWheelResolutionMs,
} from './limits.js';

/** The TTL engine's operation codes (in every TTL log entry: never renumber). */
export const TtlCommandKind = {
  /** dkv.v1.PutRequest bytes, as they arrived on the wire. */
  PutWithTtl: 1,
  /** dkv.v1.TxnRequest bytes, as they arrived on the wire. */
  Txn: 2,
  /** Keys a leader found due: (mod revision f64 | key length u32 | key) records. */
  Expire: 3,
} as const;
export type TtlCommandKind = (typeof TtlCommandKind)[keyof typeof TtlCommandKind];

/** The TTL command format this build writes and applies. */
export const TTL_COMMAND_VERSION = 1;

const DkvPutRequestType = dkvType('dkv.v1.PutRequest');
const DkvTxnRequestType = dkvType('dkv.v1.TxnRequest');

export type TtlOutcome =
  | { readonly kind: 'put'; readonly result: PutResult; readonly events: readonly MvccEvent[] }
  | { readonly kind: 'txn'; readonly result: TxnResult; readonly events: readonly MvccEvent[] }
  | { readonly kind: 'expired'; readonly revision: number; readonly deleted: number; readonly events: readonly MvccEvent[] }
  | { readonly kind: 'error'; readonly error: EngineError | MvccError | WireValueError; readonly events: readonly MvccEvent[] };

/** A key's TTL as services and tests see it. */
export interface KeyTtl {
  /** When it expires, on the clock of the leader that set it (ms). */
  readonly deadlineMs: number;
  /** The mod revision of the version it belongs to. */
  readonly modRevision: number;
}

interface TtlRecord {
  /** The key as a latin1 string (one char per byte: compact, and sorts as the bytes do). */
  readonly name: string;
  deadlineMs: number;
  modRevision: number;
  /** The Raft term of the entry that set the deadline (a later term's leader adds its grace). */
  term: number;
  timer: WheelTimer<TtlRecord>;
}

const NO_EVENTS: readonly MvccEvent[] = [];

// ---- Commands and validation (shared by the service at the edge and by apply) ----------------

function command(kind: TtlCommandKind, payload: Uint8Array): EngineCommand {
  return { engine: EngineId.Ttl, version: TTL_COMMAND_VERSION, kind, payload };
}

/** A dkv.v1.KV Put: the request's own bytes. */
export function dkvPutCommand(request: Uint8Array): EngineCommand {
  return command(TtlCommandKind.PutWithTtl, request);
}

/** A dkv.v1.KV Txn: the request's own bytes. */
export function dkvTxnCommand(request: Uint8Array): EngineCommand {
  return command(TtlCommandKind.Txn, request);
}

/** An expiry of keys a leader found due, each named with the mod revision its TTL belongs to. */
export function expireKeysCommand(due: ReadonlyArray<{ readonly key: Uint8Array; readonly modRevision: number }>): EngineCommand {
  assert(due.length >= 1 && due.length <= ttlExpiriesPerCommandMax, () => `an expiry names 1..${ttlExpiriesPerCommandMax} keys, not ${due.length}`);
  const payload = new Uint8Array(due.reduce((n, d) => n + 12 + d.key.length, 0));
  const view = new DataView(payload.buffer);
  let at = 0;
  for (const { key, modRevision } of due) {
    assert(key.length > 0 && Number.isSafeInteger(modRevision) && modRevision > 0, 'an expiry names a key and the revision of its TTL');
    view.setFloat64(at, modRevision);
    view.setUint32(at + 8, key.length);
    payload.set(key, at + 12);
    at += 12 + key.length;
  }
  return command(TtlCommandKind.Expire, payload);
}

function decodeExpire(payload: Uint8Array): Array<{ key: Uint8Array; modRevision: number }> {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const due: Array<{ key: Uint8Array; modRevision: number }> = [];
  let at = 0;
  while (at < payload.length) {
    if (at + 12 > payload.length) throw new UnknownCommandError('an Expire command is cut off');
    const modRevision = view.getFloat64(at);
    const length = view.getUint32(at + 8);
    if (length === 0 || at + 12 + length > payload.length || !Number.isSafeInteger(modRevision)) throw new UnknownCommandError('an Expire command with a bad record');
    due.push({ key: payload.subarray(at + 12, at + 12 + length), modRevision });
    at += 12 + length;
  }
  if (due.length === 0) throw new UnknownCommandError('an empty Expire command');
  return due;
}

/** A TTL from the wire (ms; 0: none). Negative or above `keyTtlMsMax`: WireValueError. */
export function ttlMsFromWire(value: Int64): number {
  const ms = int64Exact(value);
  if (ms < 0n) throw new WireValueError(`ttl_ms must not be negative, got ${ms}`);
  if (ms > BigInt(keyTtlMsMax)) throw new WireValueError(`ttl_ms ${ms} is above the maximum ${keyTtlMsMax} (10 years)`);
  return Number(ms);
}

/** A fence from the wire, or undefined if the request has none. An empty key or a token <= 0: WireValueError. */
export function fenceFromWire(fence: WireFence | null | undefined): { key: Uint8Array; token: number } | undefined {
  if (fence === null || fence === undefined) return undefined;
  if (fence.key === undefined || fence.key === null || fence.key.length === 0) throw new WireValueError('fence.key is empty');
  // A key the store could never hold (the store asserts its limit): refused, never proposed.
  if (fence.key.length > mvccLimits.keyBytesMax) throw new WireValueError(`fence.key of ${fence.key.length} bytes is over the key limit`);
  const token = int64Saturated(fence.token);
  if (token <= 0) throw new WireValueError(`fence.token must be > 0 (a create revision), got ${token}`);
  return { key: fence.key, token };
}

/** A txn's TTLs by key (latin1), checked: keys not empty and unique, at most keyTtlsPerTxnMax, TTLs as `ttlMsFromWire`. */
export function keyTtlsFromWire(ttls: readonly WireKeyTtl[] | undefined): Map<string, number> {
  const byKey = new Map<string, number>();
  if (ttls === undefined) return byKey;
  if (ttls.length > keyTtlsPerTxnMax) throw new WireValueError(`more than ${keyTtlsPerTxnMax} ttls`);
  for (const entry of ttls) {
    if (entry.key === undefined || entry.key === null || entry.key.length === 0) throw new WireValueError('a ttls entry has an empty key');
    const name = keyName(entry.key);
    if (byKey.has(name)) throw new WireValueError('a key appears twice in ttls');
    byKey.set(name, ttlMsFromWire(entry.ttl_ms));
  }
  return byKey;
}

function keyName(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
}

function keyBytes(name: string): Uint8Array {
  return Buffer.from(name, 'latin1');
}

// ---- The engine ------------------------------------------------------------------------------

export interface TtlEngineOptions {
  /** The KV engine whose keys expire (its store is replaced on restore: held by engine). */
  readonly kv: KvEngine;
  /** One election timeout (ms): when a proposed expiry is looked at again, and a new leader's grace. */
  readonly electionTimeoutMs: number;
  /**
   * The state machine's time (the leader-stamped time of the last applied entry): where the wheel
   * starts when the first TTL is set, so its cursor starts near the leaders' clocks.
   */
  readonly appliedTimeMs: () => number;
}

export class TtlEngine implements Engine, KvWriteObserver, KeyTtlScheduler {
  readonly id = EngineId.Ttl;
  readonly name = 'ttl';
  readonly version = TTL_COMMAND_VERSION;
  private readonly records = new Map<string, TtlRecord>();
  /** Made at the first TTL, so its cursor starts near the leader clocks' time. */
  private wheel: TimeWheel<TtlRecord> | undefined;
  private readonly kv: KvEngine;
  private readonly electionTimeoutMs: number;
  private readonly appliedTimeMs: () => number;
  /** The term this node leads in (0: not leading). */
  private leaderTerm = 0;
  /** Keys whose expiry this node proposed (due at once when it leads again in a later term). */
  private readonly proposedExpiries = new ProposedExpiries<TtlRecord>();
  /** True while an expiry reports its own deletes to the KV engine's observers. */
  private expiring = false;

  constructor(options: TtlEngineOptions) {
    assert(Number.isSafeInteger(options.electionTimeoutMs) && options.electionTimeoutMs > 0, 'an election timeout in ms');
    this.kv = options.kv;
    this.electionTimeoutMs = options.electionTimeoutMs;
    this.appliedTimeMs = options.appliedTimeMs;
  }

  // ---- Reads (services, tests) -------------------------------------------------------------

  /** The TTL of `key`, or undefined if it has none. */
  ttlOf(key: Uint8Array): KeyTtl | undefined {
    const record = this.records.get(keyName(key));
    return record === undefined ? undefined : { deadlineMs: record.deadlineMs, modRevision: record.modRevision };
  }

  /** Keys with a TTL. */
  get size(): number {
    return this.records.size;
  }

  /** Timers in the expiry wheel (one per key with a TTL). */
  get scheduled(): number {
    return this.wheel?.size ?? 0;
  }

  /** Every key with a TTL, in key order, with its TTL. */
  entries(): Array<{ key: Uint8Array } & KeyTtl> {
    return [...this.records.keys()].sort().map((name) => {
      const record = this.records.get(name)!;
      return { key: keyBytes(name), deadlineMs: record.deadlineMs, modRevision: record.modRevision };
    });
  }

  /**
   * Checks every invariant: each TTL names a live key at its mod revision, one timer per TTL, the
   * wheel's own. O(keys); for tests, a broken invariant throws.
   */
  checkInvariants(): void {
    for (const record of this.records.values()) {
      const live = this.kv.mvcc.range({ key: keyBytes(record.name), keysOnly: true }).kvs[0];
      assert(live !== undefined && live.modRevision === record.modRevision, () => `the TTL of ${JSON.stringify(record.name)} names revision ${record.modRevision}, the key is at ${live?.modRevision}`);
      assert(record.timer.item === record, 'a TTL owns its timer');
    }
    assert(this.scheduled === this.records.size, () => `${this.records.size} TTLs but ${this.scheduled} timers`);
    this.wheel?.checkInvariants();
  }

  private wheelNow(): TimeWheel<TtlRecord> {
    this.wheel ??= new TimeWheel<TtlRecord>({ resolutionMs: ttlWheelResolutionMs, startMs: Math.max(0, this.appliedTimeMs() - ttlWheelResolutionMs) });
    return this.wheel;
  }

  // ---- KeyTtlScheduler -----------------------------------------------------------------------

  setTtl(key: Uint8Array, deadlineMs: number, modRevision: number, term: number): void {
    assert(Number.isSafeInteger(deadlineMs) && deadlineMs >= 0, () => `a deadline is a time in ms, got ${deadlineMs}`);
    assert(Number.isSafeInteger(modRevision) && modRevision > 0, () => `a TTL belongs to a revision, got ${modRevision}`);
    assert(Number.isSafeInteger(term) && term >= 0, () => `a TTL is set in a term, got ${term}`);
    const name = keyName(key);
    const record = this.records.get(name);
    if (record !== undefined) {
      record.deadlineMs = deadlineMs;
      record.modRevision = modRevision;
      record.term = term;
      this.wheel!.reschedule(record.timer, deadlineMs);
      return;
    }
    const created = { name, deadlineMs, modRevision, term } as TtlRecord;
    created.timer = this.wheelNow().schedule(created, deadlineMs);
    this.records.set(name, created);
  }

  clearTtl(key: Uint8Array): void {
    const record = this.records.get(keyName(key));
    if (record !== undefined) this.remove(record);
  }

  private remove(record: TtlRecord): void {
    this.records.delete(record.name);
    this.proposedExpiries.forget(record);
    this.wheel!.cancel(record.timer);
  }

  /**
   * Forgets the TTL of every key outside [start, end) (start empty: from the first key; end
   * undefined: no end), with its timer and any expiry proposed for it: one side of a shard split,
   * once the KV engine kept the same range. The kept TTLs keep their deadlines, revisions and
   * terms. O(TTLs).
   */
  retainRange(start: Uint8Array, end: Uint8Array | undefined): void {
    // Names are latin1 (one char per byte): they compare as the bytes do.
    const first = keyName(start);
    const last = end === undefined ? undefined : keyName(end);
    for (const record of [...this.records.values()]) {
      if (record.name < first || (last !== undefined && record.name >= last)) this.remove(record);
    }
  }

  /** Every write to the store: a write to a key with a TTL at another revision clears the TTL. */
  written(events: readonly MvccEvent[]): void {
    // An expiry's deletes: their TTLs are gone already (`expire` removed them).
    if (this.expiring) return;
    for (const event of events) {
      if (this.records.size === 0) return;
      const record = this.records.get(keyName(event.kv.key));
      if (record !== undefined && (event.type === 'delete' || event.kv.modRevision !== record.modRevision)) this.remove(record);
    }
  }

  // ---- Apply ----------------------------------------------------------------------------------

  apply(cmd: EngineCommand, context: ApplyContext): TtlOutcome {
    try {
      switch (cmd.kind) {
        case TtlCommandKind.PutWithTtl:
          return this.put(DkvPutRequestType.decode(cmd.payload) as unknown as WireDkvPutRequest, context);
        case TtlCommandKind.Txn:
          return this.txn(DkvTxnRequestType.decode(cmd.payload) as unknown as WireDkvTxnRequest, context);
        case TtlCommandKind.Expire:
          return this.expire(decodeExpire(cmd.payload), context);
        default:
          throw new UnknownCommandError(`unknown TTL command kind ${cmd.kind}`);
      }
    } catch (error) {
      // Deterministic refusals (the same on every replica, before anything changed) go back to
      // the client; anything else is a bug and must stop the node.
      if (error instanceof MvccError || error instanceof WireValueError) return { kind: 'error', error, events: NO_EVENTS };
      throw error;
    }
  }

  private ownsFence(fence: WireFence | null | undefined): boolean {
    const parsed = fenceFromWire(fence);
    return parsed === undefined || this.kv.owns(parsed.key);
  }

  /** The fence's refusal, if it does not hold: its key must be live with the token as create revision. */
  private fenceRefusal(fence: WireFence | null | undefined): TtlOutcome | undefined {
    const parsed = fenceFromWire(fence);
    if (parsed === undefined) return undefined;
    const holder = this.kv.mvcc.range({ key: parsed.key, keysOnly: true }).kvs[0];
    if (holder !== undefined && holder.createRevision === parsed.token) return undefined;
    return { kind: 'error', error: new EngineError('fence-stale', holder === undefined ? 'the lock key is gone' : `the lock key was created at revision ${holder.createRevision}`), events: NO_EVENTS };
  }

  private put(request: WireDkvPutRequest, context: ApplyContext): TtlOutcome {
    const ttlMs = ttlMsFromWire(request.ttl_ms);
    const put = putFromWire(request);
    // The fence key is read here too: both must be this shard's (the router sends them to one shard).
    if (!this.kv.owns(put.key) || !this.ownsFence(request.fence)) return { ...notOwned(), events: NO_EVENTS };
    const refused = this.fenceRefusal(request.fence);
    if (refused !== undefined) return refused;
    if (this.kv.capped) return { kind: 'error', error: new EngineError('no-space'), events: NO_EVENTS };
    // The KV engine tells every observer, this one included: a TTL the key had is cleared.
    const result = this.kv.putFor(put);
    if (ttlMs > 0) this.setTtl(put.key, context.nowMs + ttlMs, result.revision, context.term);
    return { kind: 'put', result, events: result.events };
  }

  private txn(request: WireDkvTxnRequest, context: ApplyContext): TtlOutcome {
    const ttls = keyTtlsFromWire(request.ttls);
    const txn = txnFromWire(request.txn ?? { compare: [], success: [], failure: [] });
    if (!this.kv.ownsTxn(txn) || !this.ownsFence(request.fence)) return { ...notOwned(), events: NO_EVENTS };
    const refused = this.fenceRefusal(request.fence);
    if (refused !== undefined) return refused;
    if (this.kv.capped && txnPuts(txn)) return { kind: 'error', error: new EngineError('no-space'), events: NO_EVENTS };
    const result = this.kv.txnFor(txn);
    if (ttls.size > 0) {
      for (const event of result.events) {
        if (event.type !== 'put') continue;
        const ttlMs = ttls.get(keyName(event.kv.key));
        if (ttlMs !== undefined && ttlMs > 0) this.setTtl(event.kv.key, context.nowMs + ttlMs, event.kv.modRevision, context.term);
      }
    }
    return { kind: 'txn', result, events: result.events };
  }

  private expire(due: ReadonlyArray<{ key: Uint8Array; modRevision: number }>, context: ApplyContext): TtlOutcome {
    const keys: Uint8Array[] = [];
    for (const { key, modRevision } of due) {
      const record = this.records.get(keyName(key));
      // Written again (or deleted) since the leader looked, or not due at the stamped time: it
      // stays. (A key named twice is taken once: its record is gone after the first.)
      if (record === undefined || record.modRevision !== modRevision || context.nowMs < record.deadlineMs) continue;
      this.remove(record);
      keys.push(key);
    }
    if (keys.length === 0) return { kind: 'expired', revision: this.kv.mvcc.revision, deleted: 0, events: NO_EVENTS };
    const result = this.kv.mvcc.deleteKeys(keys);
    // invariant: every TTL names a live key at its mod revision, so each named key was deleted.
    assert(result.deleted === keys.length, () => `an expiry of ${keys.length} keys deleted ${result.deleted}`);
    // The other observers (leases) see the deletes; this one removed the TTLs above already.
    this.expiring = true;
    this.kv.written(result.events);
    this.expiring = false;
    return { kind: 'expired', revision: result.revision, deleted: result.deleted, events: result.events };
  }

  // ---- Leader duties -------------------------------------------------------------------------

  onLeadership(isLeader: boolean, context: LeaderContext): void {
    const gained = isLeader && this.leaderTerm !== context.term;
    this.leaderTerm = isLeader ? context.term : 0;
    // Due at the next tick, which weighs each deadline in this term.
    if (gained && this.wheel !== undefined) this.proposedExpiries.dueNow(this.wheel, context.nowMs, (record) => (this.records.get(record.name) === record ? record.timer : undefined));
  }

  leaderTick(context: LeaderContext): void {
    if (this.leaderTerm !== context.term) this.onLeadership(true, context);
    const wheel = this.wheel;
    if (wheel === undefined) return;
    const due: TtlRecord[] = [];
    let taken = 0;
    for (let advances = 0; advances < ttlWheelAdvancesPerTickMax && taken < ttlExpiriesPerTickMax; advances++) {
      const timers = wheel.advance(context.nowMs, Math.min(ttlExpiriesPerTickMax - taken, wheelLimits.wheelTimersDuePerAdvanceMax));
      taken += timers.length;
      for (const timer of timers) {
        const record = timer.item;
        // invariant: a TTL that is cleared has its timer cancelled, so only live TTLs come back
        // (checkInvariants counts one timer per TTL).
        // Set in an earlier term than this leader's: one election timeout more (it covers the
        // difference between the clock that stamped the deadline and this leader's).
        const effective = record.term < context.term ? record.deadlineMs + this.electionTimeoutMs : record.deadlineMs;
        if (effective > context.nowMs) wheel.reschedule(timer, effective);
        else due.push(record);
      }
      if (!wheel.behind) break;
    }
    this.proposeExpiries(due, context, wheel);
  }

  /**
   * Proposes the due keys in Expire commands of at most ttlExpiriesPerCommandMax keys and
   * ttlExpireCommandKeyBytesMax key bytes, at most ttlExpireCommandsPerTickMax commands; the rest
   * go back to the wheel as due, for the next tick. A proposed key is looked at again one
   * election timeout on, in case its Expire is lost.
   */
  private proposeExpiries(due: readonly TtlRecord[], context: LeaderContext, wheel: TimeWheel<TtlRecord>): void {
    let batch: Array<{ key: Uint8Array; modRevision: number }> = [];
    let bytes = 0;
    let commands = 0;
    const retryAtMs = context.nowMs + this.electionTimeoutMs;
    for (const record of due) {
      const length = record.name.length;
      if (batch.length > 0 && (batch.length === ttlExpiriesPerCommandMax || bytes + length > ttlExpireCommandKeyBytesMax)) {
        context.propose(expireKeysCommand(batch));
        commands++;
        batch = [];
        bytes = 0;
      }
      if (commands === ttlExpireCommandsPerTickMax) {
        wheel.reschedule(record.timer, record.timer.deadlineMs);
        continue;
      }
      batch.push({ key: keyBytes(record.name), modRevision: record.modRevision });
      bytes += length;
      wheel.reschedule(record.timer, retryAtMs);
      this.proposedExpiries.proposed(record, record.timer);
    }
    if (batch.length > 0) context.propose(expireKeysCommand(batch));
  }

  // ---- Snapshot, restore, hash -----------------------------------------------------------------

  /**
   * Section: a header chunk (count u32 | the state machine's time f64), then chunks of records in
   * key order: key length u32 | key | deadline f64 | mod revision f64. Captured now (the sorted
   * keys and their values), encoded as the iterator is drained.
   */
  snapshot(): Iterator<Uint8Array> {
    // No TTLs, no section: a member whose build lacks this engine can still restore the snapshot.
    if (this.records.size === 0) return [][Symbol.iterator]();
    const header = new Uint8Array(12);
    const view = new DataView(header.buffer);
    view.setUint32(0, this.records.size);
    view.setFloat64(4, this.appliedTimeMs());
    return (function* (chunks: Iterable<Uint8Array>) {
      yield header;
      yield* chunks;
    })(this.recordChunks());
  }

  /** The records in key order as encoded chunks, their values captured when this is called. */
  private recordChunks(): Iterable<Uint8Array> {
    const names = [...this.records.keys()].sort();
    const deadlines = new Float64Array(names.length);
    const revisions = new Float64Array(names.length);
    const terms = new Float64Array(names.length);
    names.forEach((name, i) => {
      const record = this.records.get(name)!;
      deadlines[i] = record.deadlineMs;
      revisions[i] = record.modRevision;
      terms[i] = record.term;
    });
    return (function* () {
      for (let first = 0; first < names.length; first += ttlSnapshotRecordsPerChunk) {
        const end = Math.min(names.length, first + ttlSnapshotRecordsPerChunk);
        let size = 0;
        for (let i = first; i < end; i++) size += 28 + names[i]!.length;
        const chunk = Buffer.allocUnsafe(size);
        let at = 0;
        for (let i = first; i < end; i++) {
          const name = names[i]!;
          chunk.writeUInt32BE(name.length, at);
          chunk.write(name, at + 4, 'latin1');
          at += 4 + name.length;
          chunk.writeDoubleBE(deadlines[i]!, at);
          chunk.writeDoubleBE(revisions[i]!, at + 8);
          chunk.writeDoubleBE(terms[i]!, at + 16);
          at += 24;
        }
        yield chunk;
      }
    })();
  }

  /** Replaces the TTLs by a section's (the KV engine is restored first: it comes first). */
  restore(chunks: readonly Uint8Array[]): void {
    this.records.clear();
    this.proposedExpiries.clear();
    this.wheel = undefined;
    const total = chunks.reduce((n, c) => n + c.length, 0);
    if (total === 0) return;
    const bytes = Buffer.concat(chunks.map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength)), total);
    assert(bytes.length >= 12, 'a TTL snapshot section without its header');
    const count = bytes.readUInt32BE(0);
    const timeMs = bytes.readDoubleBE(4);
    this.wheel = new TimeWheel<TtlRecord>({ resolutionMs: ttlWheelResolutionMs, startMs: Math.max(0, timeMs - ttlWheelResolutionMs) });
    let at = 12;
    for (let i = 0; i < count; i++) {
      assert(at + 4 <= bytes.length, 'a TTL snapshot section is cut off');
      const length = bytes.readUInt32BE(at);
      assert(at + 28 + length <= bytes.length, 'a TTL snapshot section is cut off');
      const name = bytes.toString('latin1', at + 4, at + 4 + length);
      at += 4 + length;
      const record = { name, deadlineMs: bytes.readDoubleBE(at), modRevision: bytes.readDoubleBE(at + 8), term: bytes.readDoubleBE(at + 16) } as TtlRecord;
      at += 24;
      record.timer = this.wheel.schedule(record, record.deadlineMs);
      this.records.set(name, record);
    }
    assert(at === bytes.length && this.records.size === count, 'a TTL snapshot section of the wrong length');
  }

  hash(): number {
    // Over the records only: the time in the header is the state machine's, which it hashes itself.
    let crc = 0;
    for (const chunk of this.recordChunks()) crc = crc32c(chunk, crc);
    return crc >>> 0;
  }
}

/** The TTL outcome of an Applied from the TTL engine. */
export function ttlOutcome(outcome: unknown): TtlOutcome {
  return outcome as TtlOutcome;
}
