/**
 * Cycle search and classification. Tarjan's strongly connected components over the dependency
 * edges (ww, wr, rw); in each component of two or more transactions, the smallest cycle of each
 * class found by breadth-first searches closing one start edge:
 *
 * - G0: ww start, ww path (writes only);
 * - G1c: wr start, ww/wr path (at least one wr, no rw);
 * - G-single: rw start, ww/wr path (exactly one rw);
 * - G2: rw start, any dependency path, kept when it has a second rw.
 *
 * Then components over all edges (adding realtime and process): a component holding a
 * realtime/process edge between two different dependency components has cycles that need it.
 * From each such edge: G0-realtime (ww and realtime/process only), G1c-realtime (with a wr),
 * G-single-realtime (exactly one rw: a layered search counting rw edges), G2-realtime (two or more).
 *
 * Bounded work: at most `elleCycleStartsPerSearchMax` start edges per class and component, fewer
 * once `elleCycleEdgeVisitsPerSearchMax` entries were scanned. Never empty-handed: if the bounded
 * searches of a component found nothing, one unrestricted search from one of its edges closes a
 * cycle (both ends of an edge inside a component reach each other) and is classed by its edges.
 */
import { txnName } from './anomalies.js';
import type { Context } from './context.js';
import { type Components, type Graph, PathSearch, PROCESS, REALTIME, RW, WR, WW, allMask, bit, dependencyMask, edgeTypes, stronglyConnected } from './graph.js';
import { elleCycleEdgeVisitsPerSearchMax, elleCycleStartsPerSearchMax, elleExplanationEdgesMax } from './limits.js';
import type { ElleAnomalyName, ElleEdge } from './types.js';

export interface CycleStats {
  /** Strongly connected components of two or more transactions (over all edges). */
  readonly sccs: number;
  readonly largestScc: number;
}

type Cycle = number[]; // adjacency entries, in order; the first is the start edge

interface ClassSearch {
  readonly name: ElleAnomalyName;
  readonly startTypes: number;
  readonly pathMask: number;
  readonly rwExactly?: 0 | 1;
  readonly accept?: (counts: TypeCounts) => boolean;
}

const realtimeMask = bit(REALTIME) | bit(PROCESS);

const dependencyClasses: readonly ClassSearch[] = [
  { name: 'G0', startTypes: bit(WW), pathMask: bit(WW) },
  { name: 'G1c', startTypes: bit(WR), pathMask: bit(WW) | bit(WR) },
  { name: 'G-single', startTypes: bit(RW), pathMask: bit(WW) | bit(WR) },
  { name: 'G2', startTypes: bit(RW), pathMask: dependencyMask, accept: (c) => c.rw >= 2 },
];

const realtimeClasses: readonly ClassSearch[] = [
  { name: 'G0-realtime', startTypes: realtimeMask, pathMask: bit(WW) | realtimeMask },
  { name: 'G1c-realtime', startTypes: realtimeMask, pathMask: bit(WW) | bit(WR) | realtimeMask, accept: (c) => c.wr >= 1 },
  { name: 'G-single-realtime', startTypes: realtimeMask, pathMask: allMask, rwExactly: 1 },
  { name: 'G2-realtime', startTypes: realtimeMask, pathMask: allMask, accept: (c) => c.rw >= 2 },
];

interface TypeCounts {
  ww: number;
  wr: number;
  rw: number;
  realtime: number;
}

export function findCycles(context: Context, graph: Graph): CycleStats {
  const dependency = stronglyConnected(graph, dependencyMask);
  const dependencySearch = new PathSearch(graph, dependency.of);
  for (let c = 0; c < dependency.sizes.length; c++) {
    if (dependency.sizes[c]! < 2) continue;
    const inComponent = (entry: number): boolean => dependency.of[graph.targets[entry]!] === c;
    searchComponent(context, graph, dependency, c, dependencySearch, dependencyClasses, inComponent, false);
  }
  if (graph.countsByType[REALTIME]! + graph.countsByType[PROCESS]! === 0) return componentStats(dependency);
  const full = stronglyConnected(graph, allMask);
  const fullSearch = new PathSearch(graph, full.of);
  for (let c = 0; c < full.sizes.length; c++) {
    if (full.sizes[c]! < 2) continue;
    // A realtime/process edge joining two dependency components: cycles through it need it.
    const crossing = (entry: number): boolean => {
      const to = graph.targets[entry]!;
      const from = graph.edges.from[graph.entryEdges[entry]!]!;
      return full.of[to] === c && dependency.of[to] !== dependency.of[from];
    };
    searchComponent(context, graph, full, c, fullSearch, realtimeClasses, crossing, true);
  }
  return componentStats(full);
}

function componentStats(components: Components): CycleStats {
  let sccs = 0;
  let largestScc = 0;
  for (const size of components.sizes) {
    if (size >= 2) sccs++;
    if (size > largestScc) largestScc = size;
  }
  return { sccs, largestScc: sccs === 0 ? 0 : largestScc };
}

function searchComponent(
  context: Context,
  graph: Graph,
  components: Components,
  component: number,
  search: PathSearch,
  classes: readonly ClassSearch[],
  startable: (entry: number) => boolean,
  realtime: boolean,
): void {
  let found = false;
  let firstStart: number | undefined;
  for (const spec of classes) {
    const cycle = smallestCycle(graph, components, component, search, spec, startable, (entry) => (firstStart ??= entry));
    if (cycle === undefined) continue;
    found = true;
    report(context, graph, spec.name, cycle);
  }
  if (found || firstStart === undefined) return;
  // The bounded searches found nothing: close any cycle through the first start edge and class it.
  const source = graph.edges.from[graph.entryEdges[firstStart]!]!;
  const path = search.path(graph.targets[firstStart]!, source, realtime ? allMask : dependencyMask);
  if (path === undefined) throw new Error('elle cycles: an edge inside a strongly connected component closes no cycle');
  const cycle = [firstStart, ...path];
  report(context, graph, classify(countTypes(graph, cycle), realtime), cycle);
}

function smallestCycle(
  graph: Graph,
  components: Components,
  component: number,
  search: PathSearch,
  spec: ClassSearch,
  startable: (entry: number) => boolean,
  noteStart: (entry: number) => void,
): Cycle | undefined {
  const { offsets, entryTypes, targets, entryEdges } = graph;
  let best: Cycle | undefined;
  let tries = 0;
  const visitsAtStart = search.visits;
  for (let i = components.starts[component]!; i < components.starts[component + 1]!; i++) {
    const v = components.nodes[i]!;
    for (let entry = offsets[v]!; entry < offsets[v + 1]!; entry++) {
      if ((spec.startTypes & bit(entryTypes[entry]!)) === 0 || !startable(entry)) continue;
      noteStart(entry);
      if (tries >= elleCycleStartsPerSearchMax || (tries > 0 && search.visits - visitsAtStart > elleCycleEdgeVisitsPerSearchMax)) return best;
      tries++;
      const source = graph.edges.from[entryEdges[entry]!]!;
      const rwBefore = entryTypes[entry] === RW ? 1 : 0;
      const rwExactly = spec.rwExactly === undefined ? undefined : ((spec.rwExactly - rwBefore) as 0 | 1);
      const path = search.path(targets[entry]!, source, spec.pathMask, rwExactly);
      if (path === undefined) continue;
      const cycle = [entry, ...path];
      if (spec.accept !== undefined && !spec.accept(countTypes(graph, cycle))) continue;
      if (best === undefined || cycle.length < best.length) best = cycle;
      if (best.length === 2) return best;
    }
  }
  return best;
}

function countTypes(graph: Graph, cycle: Cycle): TypeCounts {
  const counts = { ww: 0, wr: 0, rw: 0, realtime: 0 };
  for (const entry of cycle) {
    const type = graph.entryTypes[entry]!;
    if (type === WW) counts.ww++;
    else if (type === WR) counts.wr++;
    else if (type === RW) counts.rw++;
    else counts.realtime++;
  }
  return counts;
}

function classify(counts: TypeCounts, realtime: boolean): ElleAnomalyName {
  const base = counts.rw >= 2 ? 'G2' : counts.rw === 1 ? 'G-single' : counts.wr >= 1 ? 'G1c' : 'G0';
  return realtime ? (`${base}-realtime` as ElleAnomalyName) : base;
}

/** A cycle edge as reported, plus what the explanation needs besides (`other`: see `EdgeList`). */
interface CycleEdge {
  readonly edge: ElleEdge;
  readonly other: number;
  /** The process of the edge's source. */
  readonly process: number;
}

function report(context: Context, graph: Graph, name: ElleAnomalyName, cycle: Cycle): void {
  context.anomalies.add(name, cycle.length, () => {
    const edges = cycle.map((entry) => toCycleEdge(context, graph, entry));
    // Start at the smallest id, so the same cycle always reads the same.
    let first = 0;
    for (let i = 1; i < edges.length; i++) if (edges[i]!.edge.from < edges[first]!.edge.from) first = i;
    const ordered = [...edges.slice(first), ...edges.slice(0, first)];
    // invariant: each edge starts where the previous one ended, and the last returns to the first
    ordered.forEach(({ edge }, i) => {
      if (edge.to !== ordered[(i + 1) % ordered.length]!.edge.from) throw new Error(`elle cycles: ${name} cycle is not closed at edge ${i}`);
    });
    return { opIds: ordered.map(({ edge }) => edge.from), cycle: ordered.map(({ edge }) => edge), explanation: explainCycle(context, name, ordered) };
  });
}

function toCycleEdge(context: Context, graph: Graph, entry: number): CycleEdge {
  const { edges } = graph;
  const e = graph.entryEdges[entry]!;
  const edge: { from: number; to: number; type: ElleEdge['type']; key?: string; value?: number } = {
    from: context.idOfNode(edges.from[e]!),
    to: context.idOfNode(edges.to[e]!),
    type: edgeTypes[edges.type[e]!]!,
  };
  if (edges.key[e]! >= 0) edge.key = context.keys[edges.key[e]!]!;
  if (!Number.isNaN(edges.value[e]!)) edge.value = edges.value[e]!;
  return { edge, other: edges.other[e]!, process: context.txns[context.txnOfNode[edges.from[e]!]!]!.process };
}

// ---------------------------------------------------------------------------------------------
// Explanations

function explainCycle(context: Context, name: ElleAnomalyName, cycleEdges: readonly CycleEdge[]): string {
  const cycle = cycleEdges.map(({ edge }) => edge);
  const realtime = name.endsWith('-realtime');
  const list = context.model === 'list-append';
  // The classic stale read: T1 finished before T2 began, yet T2 missed T1's write.
  if (cycle.length === 2) {
    const rt = cycle.find((edge) => edge.type === 'realtime' || edge.type === 'process');
    const rw = cycle.find((edge) => edge.type === 'rw');
    if (rt !== undefined && rw !== undefined) {
      const write = list ? `append of ${rw.value} to ${rw.key}` : `write of ${rw.key}=${rw.value}`;
      return `${txnName(rt.from)} completed before ${txnName(rt.to)} began, yet ${txnName(rw.from)} read ${rw.key} without ${txnName(rw.to)}'s ${write}: a stale read`;
    }
  }
  const phrases = cycleEdges.slice(0, elleExplanationEdgesMax).map(({ edge, other, process }) => describeEdge(edge, other, process, list));
  const more = cycle.length > elleExplanationEdgesMax ? `, … and ${cycle.length - elleExplanationEdgesMax} more` : '';
  const order = realtime ? 'no serial order consistent with real time' : 'no serial order';
  return `${phrases.join(', ')}${more}: a cycle, so ${order} exists`;
}

function describeEdge(edge: ElleEdge, other: number, process: number, list: boolean): string {
  const a = txnName(edge.from);
  const b = txnName(edge.to);
  const hasOther = !Number.isNaN(other);
  switch (edge.type) {
    case 'ww':
      return list ? `${a} appended ${other} to ${edge.key} before ${b} appended ${edge.value} (ww)` : `${a} wrote ${edge.key}=${other} before ${b} wrote ${edge.key}=${edge.value} (ww)`;
    case 'wr':
      return list ? `${b} read ${a}'s append of ${edge.value} to ${edge.key} (wr)` : `${b} read ${edge.key}=${edge.value} written by ${a} (wr)`;
    case 'rw': {
      if (list) return `${a} read ${edge.key} ${hasOther ? `ending at ${other}` : 'empty'} without ${b}'s append of ${edge.value} (rw)`;
      return `${a} read ${edge.key}=${hasOther ? other : 'absent'}, missing ${b}'s write of ${edge.value} (rw)`;
    }
    case 'realtime':
      return `${a} completed before ${b} began (realtime)`;
    case 'process':
      return `${a} ran before ${b} in process ${process} (process)`;
  }
}
