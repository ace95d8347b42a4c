/**
 * The lease engine: etcd's leases as replicated state of a data shard.
 *
 * - A lease is `{ id, granted TTL, deadline, the term that set the deadline }`. The deadline is an
 *   absolute time on the leader's clock, stamped into the command that set it (a grant or a
 *   renewal): apply reads no clock. Every renewal goes through Raft, so every replica knows every
 *   deadline exactly — each renewal is etcd's lease checkpoint, and a new leader neither expires a
 *   lease early nor renews it to its full TTL.
 * - Keys attach to a lease when a put names it and detach when a write names another lease (or
 *   none) or deletes them; the KV engine reports every write's events here (`written`). The
 *   attachments are derived from the store (each key's version carries its lease), so a snapshot
 *   holds only the lease table and a restore rebuilds them.
 * - Revoking a lease deletes every attached key in ONE revision.
 * - Only the leader expires. Its duty (`leaderTick`) takes due leases from the time wheel (kept on
 *   every replica by apply, advanced only by the leader) and proposes Expire commands naming each
 *   lease with the deadline it saw; apply revokes a lease only if that deadline is still its
 *   deadline and the stamped time is past it, so a renewal committed meanwhile always wins.
 *   A lost Expire is proposed again an election timeout on, or at once by a node that leads
 *   again in a later term; no duty runs while the leader hands leadership over (the runtime
 *   skips it: Raft refuses proposals then).
 *   A deadline set in an earlier term than the leader's is extended by one election timeout
 *   before the leader expires it: a new leader gives every holder a full election timeout to
 *   reach it (and covers clock skew between leaders up to that much).
 */
import { assert } from '../../../raft/index.js';
import { type MvccEvent, compareBytes } from '../../../storage/index.js';
import { etcdType, int64Exact, type Int64 } from '../../etcd-proto.js';
import { type ApplyContext, type Engine, type EngineCommand, EngineError, EngineId, type LeaderContext, UnknownCommandError, uncapped, type WriteCap } from '../engine.js';
import { ProposedExpiries, TimeWheel, type WheelTimer } from '../expiry/index.js';
import type { KvEngine } from '../kv/engine.js';
import {
  leaseExpireCommandsPerTickMax,
  leaseExpiriesPerCommandMax,
  leaseRenewalsPerCommandMax,
  leaseTtlSecondsMax,
  leaseWheelResolutionMs,
} from './limits.js';

/** The lease engine's operation codes (in every lease log entry: never renumber). */
export const LeaseCommandKind = {
  /** etcd LeaseGrantRequest bytes, the ID chosen by the proposer and the TTL raised to the minimum. */
  Grant: 1,
  /** etcd LeaseRevokeRequest bytes. */
  Revoke: 2,
  /** Lease ids, 8 bytes each (int64, big-endian): renew each to its TTL from the stamped time. */
  Renew: 3,
  /** (id int64, deadline f64) pairs a leader found due: revoke each whose deadline is unchanged. */
  Expire: 4,
} as const;
export type LeaseCommandKind = (typeof LeaseCommandKind)[keyof typeof LeaseCommandKind];

/** The lease command format this build writes and applies. */
export const LEASE_COMMAND_VERSION = 1;

const LeaseGrantRequestType = etcdType('etcdserverpb.LeaseGrantRequest');
const LeaseRevokeRequestType = etcdType('etcdserverpb.LeaseRevokeRequest');

export interface Lease {
  readonly id: bigint;
  /** The TTL it was granted (s). */
  readonly ttlSeconds: number;
  /** When it expires, on the clock of the leader that set it (ms). */
  readonly deadlineMs: number;
  /** The Raft term of the entry that set the deadline. */
  readonly deadlineTerm: number;
  /** Attached keys (latin1 of the key → the key). */
  readonly keys: ReadonlyMap<string, Uint8Array>;
}

interface LeaseRecord {
  readonly id: bigint;
  ttlSeconds: number;
  deadlineMs: number;
  deadlineTerm: number;
  readonly keys: Map<string, Uint8Array>;
  timer: WheelTimer<bigint> | undefined;
}

export type LeaseOutcome =
  | { readonly kind: 'granted'; readonly id: bigint; readonly ttlSeconds: number; readonly events: readonly MvccEvent[] }
  | { readonly kind: 'revoked'; readonly id: bigint; readonly revision: number; readonly events: readonly MvccEvent[] }
  | { readonly kind: 'renewed'; readonly renewals: ReadonlyArray<{ readonly id: bigint; readonly ttlSeconds: number }>; readonly events: readonly MvccEvent[] }
  | { readonly kind: 'expired'; readonly revoked: readonly bigint[]; readonly events: readonly MvccEvent[] }
  | { readonly kind: 'error'; readonly error: EngineError; readonly events: readonly MvccEvent[] };

const NO_EVENTS: readonly MvccEvent[] = [];

// ---- Commands ---------------------------------------------------------------------------------

function command(kind: LeaseCommandKind, payload: Uint8Array): EngineCommand {
  return { engine: EngineId.Lease, version: LEASE_COMMAND_VERSION, kind, payload };
}

/** A grant of lease `id` (nonzero, chosen by the proposer) for `ttlSeconds` (already raised to the minimum). */
export function grantCommand(id: bigint, ttlSeconds: number): EngineCommand {
  assert(id !== 0n, 'a grant names its lease id');
  return command(LeaseCommandKind.Grant, LeaseGrantRequestType.encode({ ID: id.toString(), TTL: ttlSeconds }).finish());
}

export function revokeCommand(id: bigint): EngineCommand {
  return command(LeaseCommandKind.Revoke, LeaseRevokeRequestType.encode({ ID: id.toString() }).finish());
}

export function renewCommand(ids: readonly bigint[]): EngineCommand {
  assert(ids.length >= 1 && ids.length <= leaseRenewalsPerCommandMax, () => `a renewal carries 1..${leaseRenewalsPerCommandMax} leases, not ${ids.length}`);
  const payload = new Uint8Array(8 * ids.length);
  const view = new DataView(payload.buffer);
  ids.forEach((id, i) => view.setBigInt64(8 * i, id));
  return command(LeaseCommandKind.Renew, payload);
}

export function expireCommand(due: ReadonlyArray<{ readonly id: bigint; readonly deadlineMs: number }>): EngineCommand {
  assert(due.length >= 1 && due.length <= leaseExpiriesPerCommandMax, 'an expiry names 1..leaseExpiriesPerCommandMax leases');
  const payload = new Uint8Array(16 * due.length);
  const view = new DataView(payload.buffer);
  due.forEach(({ id, deadlineMs }, i) => {
    view.setBigInt64(16 * i, id);
    view.setFloat64(16 * i + 8, deadlineMs);
  });
  return command(LeaseCommandKind.Expire, payload);
}

function fixedRecords(payload: Uint8Array, size: number, what: string): DataView {
  if (payload.length === 0 || payload.length % size !== 0) throw new UnknownCommandError(`a lease ${what} command of ${payload.length} bytes`);
  return new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
}

function keyName(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
}

export interface LeaseEngineOptions {
  /** The KV engine whose keys attach to leases (its store is replaced on restore: held by engine). */
  readonly kv: KvEngine;
  /** One election timeout (ms): what a new leader adds to deadlines set in earlier terms. */
  readonly electionTimeoutMs: number;
  /** Grants are refused while writes are capped (a NOSPACE alarm), as etcd's applierV3Capped. */
  readonly cap?: WriteCap;
}

export class LeaseEngine implements Engine {
  readonly id = EngineId.Lease;
  readonly name = 'lease';
  readonly version = LEASE_COMMAND_VERSION;
  private readonly leases = new Map<bigint, LeaseRecord>();
  /**
   * Made when the first deadline is set, its cursor at the stamped time that set it (never at a
   * deadline: a wheel whose cursor is ahead of the leader's clock puts every earlier deadline in
   * its due list, which it returns in the order scheduled, stopping at the first one not yet due).
   */
  private wheel: TimeWheel<bigint> | undefined;
  private readonly kv: KvEngine;
  private readonly electionTimeoutMs: number;
  private readonly cap: WriteCap;
  /** The term this node leads in (0: not leading). */
  private leaderTerm = 0;
  /** Leases whose expiry this node proposed (due at once when it leads again in a later term). */
  private readonly proposedExpiries = new ProposedExpiries<bigint>();

  constructor(options: LeaseEngineOptions) {
    assert(Number.isSafeInteger(options.electionTimeoutMs) && options.electionTimeoutMs > 0, 'an election timeout in ms');
    this.kv = options.kv;
    this.electionTimeoutMs = options.electionTimeoutMs;
    this.cap = options.cap ?? uncapped;
  }

  // ---- Reads (services) ---------------------------------------------------------------------

  has(id: bigint): boolean {
    return this.leases.has(id);
  }

  get(id: bigint): Lease | undefined {
    return this.leases.get(id);
  }

  get size(): number {
    return this.leases.size;
  }

  /** Every lease id, ascending. */
  ids(): bigint[] {
    return [...this.leases.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /** Timers in the expiry wheel (one per lease). */
  get scheduled(): number {
    return this.wheel?.size ?? 0;
  }

  private wheelAt(nowMs: number): TimeWheel<bigint> {
    this.wheel ??= new TimeWheel<bigint>({ resolutionMs: leaseWheelResolutionMs, startMs: Math.max(0, nowMs - leaseWheelResolutionMs) });
    return this.wheel;
  }

  // ---- Apply ----------------------------------------------------------------------------------

  apply(cmd: EngineCommand, context: ApplyContext): LeaseOutcome {
    switch (cmd.kind) {
      case LeaseCommandKind.Grant:
        return this.grant(cmd.payload, context);
      case LeaseCommandKind.Revoke: {
        const request = LeaseRevokeRequestType.decode(cmd.payload) as unknown as { ID?: Int64 };
        const id = int64Exact(request.ID);
        const lease = this.leases.get(id);
        if (lease === undefined) return { kind: 'error', error: new EngineError('lease-not-found'), events: NO_EVENTS };
        const { revision, events } = this.revoke(lease);
        return { kind: 'revoked', id, revision, events };
      }
      case LeaseCommandKind.Renew: {
        const view = fixedRecords(cmd.payload, 8, 'renew');
        const renewals: Array<{ id: bigint; ttlSeconds: number }> = [];
        for (let at = 0; at < view.byteLength; at += 8) {
          const id = view.getBigInt64(at);
          const lease = this.leases.get(id);
          // Gone, or past its deadline as the renewing leader counts it (the expiry may not have
          // applied yet): not renewed, TTL 0, as etcd's leader answers a lease past its expiry.
          if (lease === undefined || this.expiredAt(lease, context.nowMs, context.term)) {
            renewals.push({ id, ttlSeconds: 0 });
            continue;
          }
          this.setDeadline(lease, context, lease.ttlSeconds);
          renewals.push({ id, ttlSeconds: lease.ttlSeconds });
        }
        return { kind: 'renewed', renewals, events: NO_EVENTS };
      }
      case LeaseCommandKind.Expire: {
        const view = fixedRecords(cmd.payload, 16, 'expire');
        const revoked: bigint[] = [];
        const events: MvccEvent[] = [];
        for (let at = 0; at < view.byteLength; at += 16) {
          const id = view.getBigInt64(at);
          const lease = this.leases.get(id);
          // Renewed since the leader looked (or gone): the renewal wins.
          if (lease === undefined || lease.deadlineMs !== view.getFloat64(at + 8) || context.nowMs < lease.deadlineMs) continue;
          revoked.push(id);
          for (const event of this.revoke(lease).events) events.push(event);
        }
        return { kind: 'expired', revoked, events };
      }
      default:
        throw new UnknownCommandError(`unknown lease command kind ${cmd.kind}`);
    }
  }

  private grant(payload: Uint8Array, context: ApplyContext): LeaseOutcome {
    if (this.cap.capped) return { kind: 'error', error: new EngineError('no-space'), events: NO_EVENTS };
    const request = LeaseGrantRequestType.decode(payload) as unknown as { ID?: Int64; TTL?: Int64 };
    const id = int64Exact(request.ID);
    const ttl = int64Exact(request.TTL);
    if (id === 0n) return { kind: 'error', error: new EngineError('lease-not-found'), events: NO_EVENTS };
    if (ttl > BigInt(leaseTtlSecondsMax)) return { kind: 'error', error: new EngineError('lease-ttl-too-large'), events: NO_EVENTS };
    if (this.leases.has(id)) return { kind: 'error', error: new EngineError('lease-exists'), events: NO_EVENTS };
    const ttlSeconds = Math.max(1, Number(ttl));
    const lease: LeaseRecord = { id, ttlSeconds, deadlineMs: 0, deadlineTerm: 0, keys: new Map(), timer: undefined };
    this.leases.set(id, lease);
    this.setDeadline(lease, context, ttlSeconds);
    return { kind: 'granted', id, ttlSeconds, events: NO_EVENTS };
  }

  /** The lease runs `ttlSeconds` from the stamped time of the entry applied. */
  private setDeadline(lease: LeaseRecord, context: ApplyContext, ttlSeconds: number): void {
    const deadlineMs = context.nowMs + ttlSeconds * 1000;
    lease.deadlineMs = deadlineMs;
    lease.deadlineTerm = context.term;
    // invariant: stamped times never decrease, so every deadline set is after the wheel's start.
    const wheel = this.wheelAt(context.nowMs);
    lease.timer = lease.timer === undefined ? wheel.schedule(lease.id, deadlineMs) : wheel.reschedule(lease.timer, deadlineMs);
  }

  /** Removes the lease and deletes its keys in one revision. */
  private revoke(lease: LeaseRecord): { revision: number; events: MvccEvent[] } {
    this.leases.delete(lease.id);
    this.proposedExpiries.forget(lease.id);
    if (lease.timer !== undefined) this.wheel?.cancel(lease.timer);
    lease.timer = undefined;
    // In key order, as etcd's lessor revokes: a replica restored from a snapshot holds the
    // attachments in another order than one that applied the puts, and the deletes' order is
    // replicated state (their sub-revisions, the events).
    const keys = [...lease.keys.values()].sort(compareBytes);
    lease.keys.clear();
    if (keys.length === 0) return { revision: this.kv.mvcc.revision, events: [] };
    const result = this.kv.mvcc.deleteKeys(keys);
    // The deletes detach the keys from this (gone) lease; other engines see them too.
    this.kv.written(result.events);
    return { revision: result.revision, events: result.events };
  }

  /**
   * A backup restored into a new cluster: its deadlines were stamped by another cluster's
   * clocks. Each lease's deadline becomes 0, "not yet set": the first leader renews it to its full
   * TTL from its own clock (a Renew through Raft, so every replica agrees) instead of expiring it.
   */
  restoredAsNew(): void {
    for (const lease of this.leases.values()) {
      lease.deadlineMs = 0;
      lease.deadlineTerm = 0;
      // Due at once: the first leader's first tick renews it.
      if (lease.timer !== undefined && this.wheel !== undefined) lease.timer = this.wheel.reschedule(lease.timer, this.wheel.cursorMs);
    }
  }

  /** The KV engine's writes: keys move between leases. */
  written(events: readonly MvccEvent[]): void {
    for (const event of events) {
      const before = event.prevKv?.lease ?? 0n;
      const after = event.type === 'put' ? event.kv.lease : 0n;
      if (before === after) continue;
      const name = keyName(event.kv.key);
      if (before !== 0n) this.leases.get(before)?.keys.delete(name);
      if (after !== 0n) {
        const lease = this.leases.get(after);
        // A put naming a missing lease was refused before it was applied.
        assert(lease !== undefined, () => `a key was put with lease ${after}, which does not exist`);
        lease.keys.set(name, event.kv.key);
      }
    }
  }

  // ---- Leader duties -------------------------------------------------------------------------

  onLeadership(isLeader: boolean, context: LeaderContext): void {
    this.leaderTerm = isLeader ? context.term : 0;
    // Due at the next tick, which weighs each deadline in this term.
    if (isLeader && this.wheel !== undefined) this.proposedExpiries.dueNow(this.wheel, context.nowMs, (id) => this.leases.get(id)?.timer);
  }

  leaderTick(context: LeaderContext): void {
    if (this.leaderTerm === 0) this.leaderTerm = context.term;
    // No lease was ever granted here (most shards): nothing to allocate, every tick.
    const wheel = this.wheel;
    if (wheel === undefined) return;
    const due: Array<{ id: bigint; deadlineMs: number }> = [];
    const unset: bigint[] = [];
    const budget = leaseExpiriesPerCommandMax * leaseExpireCommandsPerTickMax;
    for (const timer of wheel.advance(context.nowMs, budget)) {
      const lease = this.leases.get(timer.item);
      if (lease === undefined || lease.timer !== timer) continue;
      lease.timer = undefined;
      if (lease.deadlineMs === 0) {
        // Restored from a backup: renewed to its full TTL from this leader's clock.
        unset.push(lease.id);
        lease.timer = wheel.schedule(lease.id, context.nowMs + this.electionTimeoutMs);
        continue;
      }
      // A deadline an earlier leader set gets one election timeout more from this one.
      const effective = lease.deadlineTerm < context.term ? lease.deadlineMs + this.electionTimeoutMs : lease.deadlineMs;
      if (effective > context.nowMs) {
        lease.timer = wheel.schedule(lease.id, effective);
        continue;
      }
      due.push({ id: lease.id, deadlineMs: lease.deadlineMs });
      // If the expiry is lost (a leader change, a full queue), look again one election timeout on.
      lease.timer = wheel.schedule(lease.id, context.nowMs + this.electionTimeoutMs);
      this.proposedExpiries.proposed(lease.id, lease.timer);
    }
    for (let at = 0; at < due.length; at += leaseExpiriesPerCommandMax) context.propose(expireCommand(due.slice(at, at + leaseExpiriesPerCommandMax)));
    for (let at = 0; at < unset.length; at += leaseRenewalsPerCommandMax) context.propose(renewCommand(unset.slice(at, at + leaseRenewalsPerCommandMax)));
  }

  /**
   * Whether the lease's deadline has passed at `nowMs` for a leader of `term` (a deadline set in
   * an earlier term counts one election timeout later; an unset one, from a restored backup,
   * has not passed).
   */
  private expiredAt(lease: LeaseRecord, nowMs: number, term: number): boolean {
    if (lease.deadlineMs === 0) return false;
    const effective = lease.deadlineTerm < term ? lease.deadlineMs + this.electionTimeoutMs : lease.deadlineMs;
    return nowMs > effective;
  }

  /** When lease `id` expires as this node sees it now (ms on its clock), or undefined. */
  remainingMs(id: bigint, nowMs: number, term: number): number | undefined {
    const lease = this.leases.get(id);
    if (lease === undefined) return undefined;
    const effective = lease.deadlineTerm < term ? lease.deadlineMs + this.electionTimeoutMs : lease.deadlineMs;
    return Math.max(0, effective - nowMs);
  }

  // ---- Snapshot, restore, hash -----------------------------------------------------------------

  /** Section: count u32, then per lease (ascending id) id i64 | ttl f64 | deadline f64 | term f64. */
  snapshot(): Iterator<Uint8Array> {
    // No leases, no section: a member whose build lacks this engine can still restore the snapshot.
    if (this.leases.size === 0) return [][Symbol.iterator]();
    return [this.encodeTable()][Symbol.iterator]();
  }

  private encodeTable(): Uint8Array {
    const ids = this.ids();
    const bytes = new Uint8Array(4 + 32 * ids.length);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, ids.length);
    ids.forEach((id, i) => {
      const lease = this.leases.get(id)!;
      const at = 4 + 32 * i;
      view.setBigInt64(at, id);
      view.setFloat64(at + 8, lease.ttlSeconds);
      view.setFloat64(at + 16, lease.deadlineMs);
      view.setFloat64(at + 24, lease.deadlineTerm);
    });
    return bytes;
  }

  /**
   * Replaces the table by a section's. The KV engine is restored first (it comes first in the
   * state machine), so the attachments are rebuilt from its store here.
   */
  restore(chunks: readonly Uint8Array[]): void {
    this.leases.clear();
    this.proposedExpiries.clear();
    this.wheel = undefined;
    const total = chunks.reduce((n, c) => n + c.length, 0);
    if (total > 0) {
      const bytes = new Uint8Array(total);
      let at = 0;
      for (const chunk of chunks) {
        bytes.set(chunk, at);
        at += chunk.length;
      }
      const view = new DataView(bytes.buffer);
      const count = view.getUint32(0);
      assert(bytes.length === 4 + 32 * count, 'a lease snapshot section of the wrong length');
      for (let i = 0; i < count; i++) {
        const base = 4 + 32 * i;
        const lease: LeaseRecord = {
          id: view.getBigInt64(base),
          ttlSeconds: view.getFloat64(base + 8),
          deadlineMs: view.getFloat64(base + 16),
          deadlineTerm: view.getFloat64(base + 24),
          keys: new Map(),
          timer: undefined,
        };
        this.leases.set(lease.id, lease);
      }
    }
    this.scheduleRestored();
    this.rebuildAttachments();
  }

  /** Schedules the restored leases (none: the wheel waits for the first deadline set). */
  private scheduleRestored(): void {
    if (this.leases.size === 0) return;
    // The earliest stamped time that set a deadline (each is its deadline less its TTL): later
    // deadlines are set from later stamped times, so all of them come after the wheel's start.
    let earliest = Infinity;
    for (const lease of this.leases.values()) earliest = Math.min(earliest, lease.deadlineMs - lease.ttlSeconds * 1000);
    const wheel = this.wheelAt(earliest);
    for (const lease of this.leases.values()) lease.timer = wheel.schedule(lease.id, lease.deadlineMs);
  }

  private rebuildAttachments(): void {
    if (this.leases.size === 0) return;
    const all = this.kv.mvcc.range({ key: new Uint8Array([0]), rangeEnd: new Uint8Array([0]) });
    for (const kv of all.kvs) {
      if (kv.lease === 0n) continue;
      const lease = this.leases.get(kv.lease);
      assert(lease !== undefined, () => `a key holds lease ${kv.lease}, which the snapshot does not have`);
      lease.keys.set(keyName(kv.key), kv.key);
    }
  }

  hash(): number {
    // FNV-1a over the snapshot section: the table is small next to the keys it guards.
    let h = 0x811c9dc5;
    for (const byte of this.encodeTable()) h = Math.imul(h ^ byte, 0x01000193);
    return h >>> 0;
  }
}

/** The lease outcome of an Applied from the lease engine. */
export function leaseOutcome(outcome: unknown): LeaseOutcome {
  return outcome as LeaseOutcome;
}
