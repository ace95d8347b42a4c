/**
 * Collecting anomalies (every one counted, the best few kept as examples) and what each rules out.
 */
import { elleExamplesPerAnomalyMax, elleListShownElementsMax } from './limits.js';
import type { ElleAnomaly, ElleAnomalyName } from './types.js';

/** Names in the order the result lists them: cycles first, weakest model broken first. */
export const elleAnomalyOrder: readonly ElleAnomalyName[] = [
  'G0',
  'G1a',
  'G1b',
  'G1c',
  'G-single',
  'G2',
  'lost-update',
  'G0-realtime',
  'G1c-realtime',
  'G-single-realtime',
  'G2-realtime',
  'incompatible-order',
  'duplicate-elements',
  'garbage-read',
  'internal',
  'revision-mismatch',
];

/** Consistency models, weakest first, as named in `notSatisfied`. */
export const elleConsistencyModels = [
  'read-uncommitted',
  'read-committed',
  'snapshot-isolation',
  'repeatable-read',
  'serializable',
  'strict-serializable',
] as const;

const fromReadUncommitted = elleConsistencyModels;
const fromReadCommitted = elleConsistencyModels.slice(1);
const serializableAndStrict = ['serializable', 'strict-serializable'] as const;

/**
 * What each anomaly rules out (Adya's levels as Elle uses them). G0 breaks even read uncommitted;
 * G1a/b/c break read committed; G-single (read skew) and lost update break snapshot isolation and
 * everything above; G2 (write skew) is allowed by snapshot isolation but not by repeatable read
 * (our anti-dependencies are on single keys, never predicates) or serializability. A cycle that
 * needs a real-time edge breaks strict serializability only. Histories that are not histories of
 * any store — a key whose reads fork, duplicates, values nobody wrote, a transaction that does not
 * see its own writes — rule out every model; a revision that disagrees with what was read rules out
 * the (strict) serializability the revision order is meant to witness.
 */
export const elleRuledOut: Readonly<Record<ElleAnomalyName, readonly string[]>> = {
  G0: fromReadUncommitted,
  G1a: fromReadCommitted,
  G1b: fromReadCommitted,
  G1c: fromReadCommitted,
  'G-single': ['snapshot-isolation', 'repeatable-read', ...serializableAndStrict],
  G2: ['repeatable-read', ...serializableAndStrict],
  'lost-update': ['snapshot-isolation', 'repeatable-read', ...serializableAndStrict],
  'G0-realtime': ['strict-serializable'],
  'G1c-realtime': ['strict-serializable'],
  'G-single-realtime': ['strict-serializable'],
  'G2-realtime': ['strict-serializable'],
  'incompatible-order': fromReadUncommitted,
  'duplicate-elements': fromReadUncommitted,
  'garbage-read': fromReadUncommitted,
  internal: fromReadUncommitted,
  'revision-mismatch': serializableAndStrict,
};

interface Kept {
  readonly anomaly: ElleAnomaly;
  readonly rank: number;
  readonly sequence: number;
}

/** Counts every anomaly; keeps per name the `elleExamplesPerAnomalyMax` of lowest rank (then first found). */
export class AnomalyCollector {
  private readonly kept = new Map<ElleAnomalyName, Kept[]>();
  readonly counts: Partial<Record<ElleAnomalyName, number>> = {};
  private sequence = 0;

  /** `build` runs only when the example is kept (explanations cost strings). */
  add(name: ElleAnomalyName, rank: number, build: () => Omit<ElleAnomaly, 'name'>): void {
    this.counts[name] = (this.counts[name] ?? 0) + 1;
    let list = this.kept.get(name);
    if (list === undefined) this.kept.set(name, (list = []));
    const sequence = this.sequence++;
    if (list.length < elleExamplesPerAnomalyMax) {
      list.push({ anomaly: { name, ...build() }, rank, sequence });
      return;
    }
    let worst = 0;
    for (let i = 1; i < list.length; i++) if (list[i]!.rank > list[worst]!.rank) worst = i;
    if (rank < list[worst]!.rank) list[worst] = { anomaly: { name, ...build() }, rank, sequence };
  }

  /**
   * The examples, the most telling first: the fewest transactions involved (a reader sees the
   * whole story), then the order of `elleAnomalyOrder`. A report opens on the first.
   */
  anomalies(): ElleAnomaly[] {
    const out: { anomaly: ElleAnomaly; order: number; within: number }[] = [];
    elleAnomalyOrder.forEach((name, order) => {
      const list = this.kept.get(name);
      if (list === undefined) return;
      list.sort((a, b) => a.rank - b.rank || a.sequence - b.sequence);
      list.forEach((kept, within) => out.push({ anomaly: kept.anomaly, order, within }));
    });
    out.sort((a, b) => a.anomaly.opIds.length - b.anomaly.opIds.length || a.order - b.order || a.within - b.within);
    return out.map((entry) => entry.anomaly);
  }

  notSatisfied(): string[] {
    const out = new Set<string>();
    for (const name of elleAnomalyOrder) if ((this.counts[name] ?? 0) > 0) for (const model of elleRuledOut[name]) out.add(model);
    return elleConsistencyModels.filter((model) => out.has(model));
  }
}

// ---------------------------------------------------------------------------------------------
// Wording shared by the explanations.

export const txnName = (id: number): string => `T${id}`;

/** A list as read, its last elements only when long: [1, 2, 3] or […, 8, 9]. */
export function showList(list: readonly number[]): string {
  if (list.length <= elleListShownElementsMax) return `[${list.join(', ')}]`;
  return `[…, ${list.slice(list.length - elleListShownElementsMax).join(', ')}]`;
}

/** A register value as read. */
export const showValue = (value: number | null): string => (value === null ? 'absent' : String(value));
