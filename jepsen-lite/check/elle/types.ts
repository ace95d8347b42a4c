/**
 * The transactional checker's input and result (Elle: Kingsbury & Alvaro, VLDB 2020).
 *
 * A transactional workload's client runs transactions made of micro-operations on a few keys:
 * reads, and either appends to a per-key list (`list-append`) or writes of a per-key register
 * (`rw-register`). Every appended element and every written value is unique per key in the run, so
 * a read names the transaction that wrote what it saw. Workloads record etcd Txns; the adapter
 * (`toElleTxns`) turns them into `ElleTxn`s, which is all the checker looks at.
 */
import type { OpStatus } from '../../history.js';

export type ElleModel = 'list-append' | 'rw-register';

/**
 * A read. `value`: list-append — the list read (`[]` when the key is absent); rw-register — the
 * value read, `null` when the key is absent. Absent (`undefined`) when not known: the
 * transaction's outcome is unknown, so what it read is too.
 * `modRevision`: the key's etcd mod revision as read (0: absent), when known.
 */
export interface ElleRead {
  readonly f: 'r';
  readonly key: string;
  readonly value?: readonly number[] | number | null;
  readonly modRevision?: number;
}

/** An append of `value` to the key's list (list-append), or a write of `value` (rw-register). */
export interface ElleWrite {
  readonly f: 'append' | 'w';
  readonly key: string;
  readonly value: number;
}

export type ElleMicroOp = ElleRead | ElleWrite;

/** One transaction as the checker sees it. Times are milliseconds since the run began. */
export interface ElleTxn {
  /** The history operation's id (evidence names it). */
  readonly id: number;
  readonly process: number;
  readonly call: number;
  /** Absent when the client never heard back (status `info`). */
  readonly ret?: number;
  /** `ok`: committed; `fail`: certainly not committed; `info`: may or may not have committed. */
  readonly status: OpStatus;
  /** In the order the transaction ran them. */
  readonly mops: readonly ElleMicroOp[];
  /** The etcd revision the transaction ran at (its writes' mod revision), when known. */
  readonly revision?: number;
}

/** A dependency between two transactions (by history operation id). */
export type ElleEdgeType = 'ww' | 'wr' | 'rw' | 'realtime' | 'process';

export interface ElleEdge {
  readonly from: number;
  readonly to: number;
  readonly type: ElleEdgeType;
  /** The key (and element or value) the dependency is about; absent for realtime/process. */
  readonly key?: string;
  readonly value?: number;
}

/**
 * Anomaly names, as Elle names them (Adya's G0, G1a, G1b, G1c, G-single, G2; the `-realtime`
 * variants are cycles that need a real-time edge: they break strict serializability only), plus
 * the non-cycle anomalies a list or register history shows directly.
 */
export type ElleAnomalyName =
  | 'G0'
  | 'G1a'
  | 'G1b'
  | 'G1c'
  | 'G-single'
  | 'G2'
  | 'G0-realtime'
  | 'G1c-realtime'
  | 'G-single-realtime'
  | 'G2-realtime'
  | 'lost-update'
  | 'incompatible-order'
  | 'duplicate-elements'
  | 'garbage-read'
  | 'internal'
  | 'revision-mismatch';

export interface ElleAnomaly {
  readonly name: ElleAnomalyName;
  /** The operations involved (history ids), in cycle order for a cycle. */
  readonly opIds: readonly number[];
  /** For a cycle: its edges, the smallest cycle found. */
  readonly cycle?: readonly ElleEdge[];
  /** One sentence a reader understands without the paper. */
  readonly explanation: string;
}

export interface ElleResult {
  readonly model: ElleModel;
  /** Never `unknown`: the checker always finishes. */
  readonly verdict: 'ok' | 'violation';
  /** Examples, at most `elleExamplesPerAnomalyMax` per name, most telling first. */
  readonly anomalies: readonly ElleAnomaly[];
  /** How many of each anomaly were found (may exceed the examples listed). */
  readonly counts: Readonly<Partial<Record<ElleAnomalyName, number>>>;
  /** Consistency models the anomalies rule out (e.g. `strict-serializable`, `serializable`, `read-committed`). */
  readonly notSatisfied: readonly string[];
  readonly stats: {
    readonly txns: number;
    readonly committed: number;
    /** Transactions of unknown outcome that a read proved committed. */
    readonly unknownIncluded: number;
    readonly edges: number;
    readonly elapsedMs: number;
  };
}
