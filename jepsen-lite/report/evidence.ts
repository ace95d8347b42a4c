/**
 * The evidence a failing report opens on: the first violation a checker can show with operations,
 * in this order — the transactional (Elle) checker's first anomaly, the first key the
 * linearizability checker found no order for, then the watch, fencing and election checkers'
 * first violation. Pure: reads the results and the history, returns plain data.
 */
import type { ElleEdge } from '../check/elle/types.js';
import type { Operation } from '../history.js';
import type { RunHistory, RunResults } from './types.js';

export type EvidenceSource = 'txn' | 'linearizability' | 'watch' | 'fencing' | 'election';

export interface Evidence {
  readonly source: EvidenceSource;
  /** What found it, e.g. "Elle: G-single (transactional checker, list-append)". */
  readonly title: string;
  /** One sentence a reader understands without the checker's internals. */
  readonly explanation: string;
  /** The checker's own, longer message, when there is one beyond the explanation. */
  readonly detail?: string;
  /** The operations involved that are in the history, in the order the checker named them. */
  readonly opIds: readonly number[];
  /** For a cycle: "T12 -ww x→ T9 -rw x→ T12". */
  readonly cycle?: string;
  /** Store revisions the violation is about, when it names some. */
  readonly revisions?: readonly number[];
}

/** "T12 -ww x→ T9 -rw x→ T12": the cycle's first transaction, then each edge and where it leads. */
export function cycleText(edges: readonly ElleEdge[]): string {
  const first = edges[0];
  if (first === undefined) return '';
  const steps = edges.map((e) => ` -${e.type}${e.key === undefined ? '' : ` ${e.key}`}→ T${e.to}`);
  return `T${first.from}${steps.join('')}`;
}

/** Operation ids written as `#12` in a checker's message, kept when the history has them. */
export function opRefs(message: string, byId: ReadonlyMap<number, Operation>): number[] {
  const ids = [...message.matchAll(/#(\d+)/g)].map((m) => Number(m[1]));
  return [...new Set(ids)].filter((id) => byId.has(id));
}

function known(ids: readonly number[], byId: ReadonlyMap<number, Operation>): number[] {
  return [...new Set(ids)].filter((id) => byId.has(id));
}

/** The name the report gives a checker partition: an independent key, or the whole history. */
export function keyName(key: string): string {
  return key === '' ? 'the whole history' : `key ${key}`;
}

function txnEvidence(results: RunResults, byId: ReadonlyMap<number, Operation>): Evidence | undefined {
  const txn = results.txn;
  const anomaly = txn?.verdict === 'violation' ? txn.anomalies[0] : undefined;
  if (txn === undefined || anomaly === undefined) return undefined;
  const cycle = anomaly.cycle === undefined ? undefined : cycleText(anomaly.cycle);
  const ruled = txn.notSatisfied.length === 0 ? undefined : `Not satisfied: ${txn.notSatisfied.join(', ')}.`;
  return {
    source: 'txn',
    title: `Elle: ${anomaly.name} (transactional checker, ${txn.model})`,
    explanation: anomaly.explanation,
    ...(ruled === undefined ? {} : { detail: ruled }),
    opIds: known(anomaly.opIds, byId),
    ...(cycle === undefined || cycle === '' ? {} : { cycle }),
  };
}

function linearizabilityEvidence(results: RunResults, byId: ReadonlyMap<number, Operation>): Evidence | undefined {
  const lin = results.linearizability;
  const partition = lin?.partitions.find((p) => p.verdict === 'violation');
  if (lin === undefined || partition === undefined) return undefined;
  const blocked = known(partition.blocked ?? [], byId);
  const linearized = partition.linearized?.length ?? 0;
  const explanation =
    `On ${keyName(partition.key)}, no order of the operations agrees with the ${lin.model} model: ` +
    `after the ${linearized} operation(s) it could order, none of the ${blocked.length} highlighted can take effect next.`;
  return {
    source: 'linearizability',
    title: `Linearizability (${lin.model} model), ${keyName(partition.key)}`,
    explanation,
    ...(partition.message === undefined ? {} : { detail: partition.message }),
    opIds: blocked,
  };
}

/** Writes (put, delete, txn) that answered with store revision `revision`. */
function writesAt(revision: number, operations: readonly Operation[]): number[] {
  const writes = new Set(['put', 'delete', 'txn']);
  return operations
    .filter((op) => {
      const output = op.output as { revision?: unknown } | undefined;
      const f = (op.input as { f?: unknown } | undefined)?.f;
      return op.status === 'ok' && output?.revision === revision && typeof f === 'string' && writes.has(f);
    })
    .map((op) => op.id);
}

function watchEvidence(results: RunResults, history: RunHistory, byId: ReadonlyMap<number, Operation>): Evidence | undefined {
  const violation = results.watch?.ok === false ? results.watch.violations[0] : undefined;
  if (violation === undefined) return undefined;
  const ids = violation.revision === undefined ? [] : writesAt(violation.revision, history.operations);
  return {
    source: 'watch',
    title: `Watch guarantee: ${violation.guarantee} (watch ${violation.watch})`,
    explanation: violation.message,
    opIds: known([...opRefs(violation.message, byId), ...ids], byId),
    ...(violation.revision === undefined ? {} : { revisions: [violation.revision] }),
  };
}

function fencingEvidence(results: RunResults, byId: ReadonlyMap<number, Operation>): Evidence | undefined {
  const message = results.fencing?.ok === false ? results.fencing.violations[0] : undefined;
  if (message === undefined) return undefined;
  return { source: 'fencing', title: 'Fencing', explanation: message, opIds: opRefs(message, byId) };
}

function electionEvidence(results: RunResults, byId: ReadonlyMap<number, Operation>): Evidence | undefined {
  const violation = results.election?.ok === false ? results.election.violations[0] : undefined;
  if (violation === undefined) return undefined;
  return { source: 'election', title: `Election: ${violation.property}`, explanation: violation.message, opIds: opRefs(violation.message, byId) };
}

/** The first evidence available (see the top of this file), or undefined when no checker found a violation it can show. */
export function primaryEvidence(results: RunResults, history: RunHistory): Evidence | undefined {
  const byId = new Map(history.operations.map((op) => [op.id, op]));
  return (
    txnEvidence(results, byId) ??
    linearizabilityEvidence(results, byId) ??
    watchEvidence(results, history, byId) ??
    fencingEvidence(results, byId) ??
    electionEvidence(results, byId)
  );
}

/** Ids of every operation a non-ok linearizability partition names as blocked. */
export function blockedIds(results: RunResults): Set<number> {
  const ids = new Set<number>();
  for (const p of results.linearizability?.partitions ?? []) for (const id of p.blocked ?? []) ids.add(id);
  return ids;
}

/** Every operation a checker names as violating: blocked ones, every listed Elle anomaly's, and the evidence's. */
export function violatingIds(results: RunResults, evidence: Evidence | undefined): Set<number> {
  const ids = blockedIds(results);
  for (const anomaly of results.txn?.anomalies ?? []) for (const id of anomaly.opIds) ids.add(id);
  for (const id of evidence?.opIds ?? []) ids.add(id);
  return ids;
}
