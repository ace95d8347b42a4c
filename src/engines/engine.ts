/**
 * What an engine is: one part of a shard's replicated state machine (KV/MVCC, members, later
 * leases, counters, indexes, auth). The shard runtime's state machine (src/runtime) composes
 * engines and routes each command to its engine; engines know nothing of Raft, clocks or I/O.
 */
import type { ConfChange } from '../../raft/index.js';
import type { MvccEvent } from '../../storage/index.js';

/** A command for an engine: what a log entry's envelope carries besides who proposed it and when. */
export interface EngineCommand {
  /** Which engine applies it (an `EngineId`). */
  readonly engine: number;
  /** The engine's command format version. */
  readonly version: number;
  /** The engine's operation code. */
  readonly kind: number;
  readonly payload: Uint8Array;
  /**
   * The payload as the proposing node's edge already decoded it, kept by that node only (never in
   * the log): its own apply may use it instead of decoding the payload again. It must be exactly
   * what the engine's own decoding of `payload` gives, and any memory it shares with the payload
   * must not change until the command is applied; an engine checks it is for this `kind`.
   */
  readonly decoded?: unknown;
}

/** Stable engine ids (they are in every log entry and snapshot: never renumber). */
export const EngineId = {
  Meta: 1,
  Kv: 2,
  Lease: 3,
  /** Per-key TTLs and the dkv.v1.KV writes that set them (id 5 is the counter engine's). */
  Ttl: 4,
  /** Counters kept as decimal keys of the store. */
  Counter: 5,
  /** etcd's alarms (NOSPACE, CORRUPT) of the store; NOSPACE caps writes. */
  Alarm: 6,
  /** etcd's users, roles, permissions and auth revision. */
  Auth: 7,
  /** Which keys a data shard serves (the prefixes it ceded to mounted stores). */
  Ownership: 8,
} as const;
export type EngineId = (typeof EngineId)[keyof typeof EngineId];

/**
 * Who asked for a command: the authenticated user of the client request that proposed it (empty
 * for none: auth off, or no token) and the auth revision its permissions were checked at.
 */
export interface Caller {
  readonly user: string;
  readonly authRevision: number;
  /**
   * The same request's caller found again now (a simple token's, or a certificate's, is checked at
   * the auth revision this member has applied by then). A command refused for an old auth
   * revision is proposed again with it, as etcd retries ErrAuthOldRevision. None for a JWT, whose
   * revision is its own, and for a command a node proposes itself. Never carried in a command.
   */
  readonly again?: () => Caller;
}

/** A caller with no user (auth off, or a request with no token). */
export const anonymousCaller: Caller = { user: '', authRevision: 0 };

export interface ApplyContext {
  readonly index: number;
  readonly term: number;
  /**
   * The leader's clock (ms) when it accepted the command, never below an earlier entry's: a new
   * leader whose clock is behind does not make time go backwards for the state machine.
   */
  readonly nowMs: number;
  readonly proposer: number;
  readonly requestId: number;
  /** The client request's caller; undefined for a command the node proposed on its own. */
  readonly caller?: Caller;
}

/** What a leader's duties may do: propose commands of their own (fire and forget). */
export interface LeaderContext {
  readonly shardId: number;
  /** The term this node leads in. */
  readonly term: number;
  /** This node's clock (ms). */
  readonly nowMs: number;
  propose(command: EngineCommand): void;
}

export interface Engine {
  readonly id: number;
  /** For messages and logs. */
  readonly name: string;
  /** The highest command version this build applies. */
  readonly version: number;
  /**
   * The version stamped on this engine's snapshot section now (default `version`): the oldest
   * format that holds the state, so a member of an earlier build restores a snapshot whose
   * section did not change although the engine's commands did (a rolling upgrade).
   */
  readonly sectionVersion?: number;
  /**
   * Applies one command; returns the engine's outcome (deterministic refusals included). Throws
   * only for a bug (it stops the node): a refusal that depends on the state is an outcome.
   */
  apply(command: EngineCommand, context: ApplyContext): unknown;
  /**
   * The part of a committed configuration change this state lets through (etcd checks a change
   * again where it applies: a removed id may never come back). Deterministic: it reads only the
   * replicated state, so every replica drops the same parts.
   */
  admitConfChange?(change: ConfChange): ConfChange;
  /** A configuration change was applied (the meta engine records members). */
  applyConfChange?(change: ConfChange, context: ApplyContext): void;
  /** The state as section chunks, captured now; the iterator may be drained later. */
  snapshot(): Iterator<Uint8Array>;
  /** Replaces the state by a section's chunks (none: the empty state). */
  restore(chunks: readonly Uint8Array[]): void;
  /** A digest of the whole state (u32). */
  hash(): number;
  /**
   * The state was just restored from another cluster's backup into a new log: forget what
   * depended on that cluster's clocks (every replica of the new cluster does the same).
   */
  restoredAsNew?(): void;
  /**
   * Keeps only the state of keys in `[start, end)` (`end` undefined: no upper bound): one half of
   * a split, on every replica alike. An engine whose state names no key has none.
   */
  retainRange?(start: Uint8Array, end: Uint8Array | undefined): void;
  /**
   * Makes `target` (a new engine of this kind, in a new state machine) hold this engine's state
   * of keys in `[start, end)`: what restoring this state into it and then `retainRange` would
   * give, without copying the rest (a split's child, from a large parent). Optional: the state
   * machine does the restore and `retainRange` otherwise.
   */
  copyRangeInto?(target: Engine, start: Uint8Array, end: Uint8Array | undefined): void;
  /** Leader-only duties: called when this node becomes or stops being the shard's leader. */
  onLeadership?(isLeader: boolean, context: LeaderContext): void;
  /** Leader-only duties: called on every tick while this node leads the shard. */
  leaderTick?(context: LeaderContext): void;
}


/**
 * An engine was handed a command it does not understand (an unknown kind under a version it
 * knows). Apply must not turn that into an outcome — a build that understands it would apply it
 * and the replicas would diverge — so the state machine stops the node instead.
 */
export class UnknownCommandError extends Error {
  override readonly name = 'UnknownCommandError';
}

/** Every code an engine's deterministic refusal can carry (src/error-mapping.ts maps each to a client error). */
export type EngineErrorCode =
  | 'lease-not-found'
  | 'lease-exists'
  | 'lease-ttl-too-large'
  | 'fence-stale'
  | 'counter-not-a-number'
  | 'counter-overflow'
  | 'no-space'
  | 'not-owned'
  | 'auth-stores-exist'
  | AuthErrorCode;

/** The auth engine's refusals (etcd's auth errors; src/errors.ts has their statuses and strings). */
export type AuthErrorCode =
  | 'root-user-not-exist'
  | 'root-role-not-exist'
  | 'user-already-exists'
  | 'user-empty'
  | 'user-not-found'
  | 'role-already-exists'
  | 'role-not-found'
  | 'role-empty'
  | 'auth-failed'
  | 'permission-denied'
  | 'role-not-granted'
  | 'permission-not-granted'
  | 'auth-not-enabled'
  | 'invalid-auth-mgmt'
  | 'auth-old-revision';

/**
 * Whether the state machine refuses writes that grow the store (the alarm engine: a NOSPACE
 * alarm is active). Engines that write read it in apply, so every replica refuses alike.
 */
export interface WriteCap {
  readonly capped: boolean;
}

/** No cap: every write applies (engines built without an alarm engine). */
export const uncapped: WriteCap = { capped: false };

/**
 * Which keys the state machine serves (the ownership engine). Engines that write refuse, in
 * apply, a write that touches a key it does not own (`not-owned`), on every replica alike.
 */
export interface KeyOwner {
  /** Whether every key of the range is served: etcd's conventions (no end: the key alone; [0]: every key from it on). */
  owns(key: Uint8Array, rangeEnd?: Uint8Array): boolean;
}

/** Every key is served (engines built without an ownership engine). */
export const ownsEveryKey: KeyOwner = { owns: () => true };

/**
 * A deterministic refusal of a command by an engine (the same on every replica): it is the
 * command's outcome, returned to the client, never a reason to stop.
 */
export class EngineError extends Error {
  override readonly name = 'EngineError';

  constructor(
    readonly code: EngineErrorCode,
    /** Sent to clients only for DKV's own errors (etcd's messages stay exact). */
    readonly detail?: string,
  ) {
    super(detail === undefined ? code : `${code}: ${detail}`);
  }
}

/**
 * Per-key TTLs as other engines set them (the TTL engine implements it): an engine that writes a
 * key with a TTL in its own apply (a counter increment with a TTL) records the TTL right after
 * the write, with the revision the write gave the key. Any later write to the key clears it (the
 * TTL engine follows every write), so only the writer that wants a TTL has to say so.
 */
export interface KeyTtlScheduler {
  /**
   * Key `key`, live at mod revision `modRevision` (just written), expires at `deadlineMs` on the
   * leader's clock (`context.nowMs` of the apply plus the TTL). Replaces any TTL it had.
   */
  setTtl(key: Uint8Array, deadlineMs: number, modRevision: number, term: number): void;
  /** Key `key` has no TTL any more (nothing happens if it had none). */
  clearTtl(key: Uint8Array): void;
}

/** Whether what an engine applied is a compaction (the KV engine's `{ outcome: { kind: 'compaction' } }`). */
export function isCompactionOutcome(applied: unknown): boolean {
  if (typeof applied !== 'object' || applied === null || !('outcome' in applied)) return false;
  const { outcome } = applied as { outcome: unknown };
  return typeof outcome === 'object' && outcome !== null && (outcome as { kind?: unknown }).kind === 'compaction';
}

/**
 * The changes to a store's keys an outcome carries: every data-shard engine that writes keys (KV,
 * leases, TTLs and counters) returns them as `events`, in order, for the watch engine.
 */
export function eventsOf(outcome: unknown): readonly MvccEvent[] {
  if (typeof outcome !== 'object' || outcome === null || !('events' in outcome)) return [];
  return (outcome as { events: readonly MvccEvent[] }).events;
}
