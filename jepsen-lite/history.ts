/**
 * The shape of a recorded run, shared by both modes (`dkv jepsen sim`, `dkv jepsen run`), the
 * checkers and the report. Everything here is plain JSON (keys and values are strings, numbers are
 * safe integers), so a history written to `history.json` reads back unchanged.
 *
 * A client ("process") runs one operation at a time. Each operation has a call time and, if the
 * client heard back, a return time, both in milliseconds since the run began (simulated time in
 * sim mode). Status:
 * - `ok`:   it happened, and `output` says what it returned;
 * - `fail`: it certainly did not happen (refused before it could take effect) — checkers drop it;
 * - `info`: unknown (timeout, lost connection, node died): it may or may not have taken effect, at
 *           any moment after its call. Checkers treat it as pending until the end of the history.
 */

export type OpStatus = 'ok' | 'fail' | 'info';

// ---------------------------------------------------------------------------------------------
// Operations by model. `key` is the unit P-compositional checking splits on where a model allows.

/** A register per key: read, blind write, compare-and-set. Missing key reads as null. */
export type RegisterInput =
  | { readonly f: 'read'; readonly key: string }
  | { readonly f: 'write'; readonly key: string; readonly value: string }
  | { readonly f: 'cas'; readonly key: string; readonly from: string; readonly to: string };
export type RegisterOutput =
  | { readonly f: 'read'; readonly value: string | null }
  | { readonly f: 'write' }
  /** A cas that answered "compare failed" is ok with `succeeded: false` (it tells us the value differed). */
  | { readonly f: 'cas'; readonly succeeded: boolean };

/** The etcd key space with revisions. Every output carries the response header's revision. */
export type KvCompare =
  | { readonly target: 'value'; readonly key: string; readonly value: string }
  /** modRevision / version / createRevision equal to `value` (0 means "the key does not exist"). */
  | { readonly target: 'mod' | 'version' | 'create'; readonly key: string; readonly value: number };
export type KvRequest =
  | { readonly f: 'put'; readonly key: string; readonly value: string }
  | { readonly f: 'get'; readonly key: string }
  | { readonly f: 'delete'; readonly key: string };
export type KvResult =
  | { readonly f: 'put'; readonly prevValue: string | null }
  | {
      readonly f: 'get';
      readonly value: string | null;
      readonly modRevision: number;
      readonly createRevision: number;
      readonly version: number;
    }
  | { readonly f: 'delete'; readonly deleted: number };
export type KvInput =
  | KvRequest
  | {
      readonly f: 'txn';
      readonly compare: readonly KvCompare[];
      readonly success: readonly KvRequest[];
      readonly failure: readonly KvRequest[];
    };
export type KvOutput =
  | (KvResult & { readonly revision: number })
  | { readonly f: 'txn'; readonly revision: number; readonly succeeded: boolean; readonly results: readonly KvResult[] };

/** A grow-only set: add an element, read them all. */
export type SetInput = { readonly f: 'add'; readonly value: string } | { readonly f: 'read' };
export type SetOutput = { readonly f: 'add' } | { readonly f: 'read'; readonly values: readonly string[] };

/** A counter per key: add a delta (the new value returned when known), read. */
export type CounterInput =
  | { readonly f: 'add'; readonly key: string; readonly delta: number }
  | { readonly f: 'read'; readonly key: string };
export type CounterOutput = { readonly f: 'add'; readonly value?: number } | { readonly f: 'read'; readonly value: number };

/**
 * A lock per name with fencing tokens. `acquire` returns a token larger than every earlier
 * token of that lock; `write` is a guarded write to the resource the lock protects, accepted only
 * if its token is the newest the resource has seen; `read` reads the resource.
 */
export type LockInput =
  | { readonly f: 'acquire'; readonly lock: string }
  | { readonly f: 'release'; readonly lock: string; readonly token: number }
  | { readonly f: 'write'; readonly lock: string; readonly token: number; readonly value: string }
  | { readonly f: 'read'; readonly lock: string };
export type LockOutput =
  | { readonly f: 'acquire'; readonly token: number }
  | { readonly f: 'release' }
  /** `revision`: where the resource applied an accepted write, when the recorder knows it (the fencing check orders by it). */
  | { readonly f: 'write'; readonly accepted: boolean; readonly revision?: number }
  | { readonly f: 'read'; readonly value: string | null };

/**
 * The lock workload's unfenced write: a plain put by a client that believes it holds `lock`
 * (mutual exclusion by lease alone), tagged with the token it holds. Not an op of the lock model:
 * `check/fencing.ts` counts how such writes of different holders overlapped.
 */
export type UnfencedWriteInput = { readonly f: 'unfenced-write'; readonly lock: string; readonly token: number; readonly value: string };
export type UnfencedWriteOutput = { readonly f: 'unfenced-write'; readonly revision: number };

/**
 * The election workload (real mode): candidates campaign on one etcd election
 * (`v3electionpb.Election`), proclaim new values while they lead, and resign. Keys are the
 * election's session keys as text (`name/<lease hex>`); `rev` is a leader key's create revision
 * (etcd's `LeaderKey.rev`); `revision` is the response header's. Checked by `check/election.ts`
 * (and, mapped to acquire / fenced write / release, by the `lock` model).
 */
export type ElectionInput =
  | { readonly f: 'campaign'; readonly election: string; readonly value: string }
  | { readonly f: 'proclaim'; readonly election: string; readonly key: string; readonly rev: number; readonly value: string }
  | { readonly f: 'resign'; readonly election: string; readonly key: string; readonly rev: number };
export type ElectionOutput =
  /** Campaign answered: `key` leads (created at `rev`); `revision` is the header's (etcd: the txn that joined). */
  | { readonly f: 'campaign'; readonly key: string; readonly rev: number; readonly revision: number }
  | { readonly f: 'proclaim'; readonly revision: number }
  | { readonly f: 'resign'; readonly revision: number };

export type ModelName = 'register' | 'kv' | 'set' | 'counter' | 'lock';

export interface ModelIo {
  register: { input: RegisterInput; output: RegisterOutput };
  kv: { input: KvInput; output: KvOutput };
  set: { input: SetInput; output: SetOutput };
  counter: { input: CounterInput; output: CounterOutput };
  lock: { input: LockInput; output: LockOutput };
}

export interface Operation<I = unknown, O = unknown> {
  /** Unique in the history; operations are listed in call order. */
  readonly id: number;
  readonly process: number;
  /** Milliseconds since the run began. */
  readonly call: number;
  /** Absent when the client never heard back (then status is `info`). */
  readonly ret?: number;
  readonly status: OpStatus;
  readonly input: I;
  /** Present when status is `ok`. */
  readonly output?: O;
  /** Why it failed or is unknown (an error code or message), for the report. */
  readonly error?: string;
  /** The node the client sent it to, for the report. */
  readonly node?: string;
}

/** A fault's window on the timeline (for the report). `end` absent: lasted to the end of the run. */
export interface FaultWindow {
  readonly kind: string;
  readonly start: number;
  readonly end?: number;
  /** e.g. "n1 | n2 n3" or "SIGSTOP n2". */
  readonly description: string;
}
