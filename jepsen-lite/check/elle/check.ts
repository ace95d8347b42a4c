/**
 * checkElle: the transactional checker (Elle: Kingsbury & Alvaro, VLDB 2020). Builds the
 * dependency graph of the committed transactions (and the unknown ones a committed read proved
 * committed) from the model's reads and writes, adds real-time and process order, and looks for
 * cycles and for the anomalies a list or register history shows directly. Always answers ok or
 * violation — the cycle search is bounded per component, never per history (see `limits.ts`).
 * Pure: no I/O; the clock for `elapsedMs` comes from `options.now`.
 */
import { Context } from './context.js';
import { type CycleStats, findCycles } from './cycles.js';
import { Graph, PROCESS, REALTIME } from './graph.js';
import { analyzeListAppend } from './list-append.js';
import { addProcessEdges, addRealtimeEdges } from './realtime.js';
import { analyzeRwRegister } from './rw-register.js';
import type { ElleModel, ElleResult, ElleTxn } from './types.js';

export interface ElleCheckOptions {
  /** Add real-time edges (strict serializability). Default true. */
  readonly realtime?: boolean;
  /** Add process-order edges (consecutive transactions of one client). Default true. */
  readonly processOrder?: boolean;
  /** Milliseconds from any fixed origin; default `performance.now`. */
  readonly now?: () => number;
}

/** The result, with what the graph looked like (for benchmarks and reports). */
export type ElleCheckResult = ElleResult & {
  readonly stats: ElleResult['stats'] & {
    /** ww + wr + rw edges. */
    readonly dependencyEdges: number;
    /** realtime + process edges. */
    readonly realtimeEdges: number;
  } & CycleStats;
};

export function checkElle(model: ElleModel, txns: readonly ElleTxn[], options: ElleCheckOptions = {}): ElleCheckResult {
  const now = options.now ?? (() => performance.now());
  const start = now();
  const context = new Context(model, txns);
  if (model === 'list-append') analyzeListAppend(context);
  else analyzeRwRegister(context);
  if (options.realtime !== false) addRealtimeEdges(context);
  if (options.processOrder !== false) addProcessEdges(context);
  const graph = new Graph(context.txnOfNode.length, context.edges);
  const cycles = findCycles(context, graph);
  const realtimeEdges = graph.countsByType[REALTIME]! + graph.countsByType[PROCESS]!;
  const anomalies = context.anomalies.anomalies();
  return {
    model,
    verdict: anomalies.length === 0 ? 'ok' : 'violation',
    anomalies,
    counts: { ...context.anomalies.counts },
    notSatisfied: context.anomalies.notSatisfied(),
    stats: {
      txns: txns.length,
      committed: txns.filter((txn) => txn.status === 'ok').length,
      unknownIncluded: context.unknownIncluded,
      edges: graph.edgeCount,
      dependencyEdges: graph.edgeCount - realtimeEdges,
      realtimeEdges,
      ...cycles,
      elapsedMs: now() - start,
    },
  };
}
