/**
 * The dependency graph: nodes are the transactions in the graph (0 … nodeCount-1), edges typed
 * ww / wr / rw / process / realtime. Built once from an edge list (duplicates dropped), stored as
 * compressed adjacency (CSR) in typed arrays so 100k transactions and millions of edges stay cheap.
 * Within a node's adjacency, entries are sorted by (target, type rank): a search that meets the
 * same target by several edges takes the weakest type first (ww before wr before rw before
 * process before realtime), which keeps found cycles in the most specific class.
 */
import type { ElleEdgeType } from './types.js';

/** Type ranks: the order edges of one pair are preferred in, and the bit of each in a mask. */
export const edgeTypes: readonly ElleEdgeType[] = ['ww', 'wr', 'rw', 'process', 'realtime'];
export const WW = 0;
export const WR = 1;
export const RW = 2;
export const PROCESS = 3;
export const REALTIME = 4;
export const bit = (type: number): number => 1 << type;
export const dependencyMask = bit(WW) | bit(WR) | bit(RW);
export const allMask = dependencyMask | bit(PROCESS) | bit(REALTIME);

/**
 * A growable edge list; `add` ignores self-edges. Besides its ends and type, an edge carries what
 * it is about, for explanations: `key` (interned; -1: none), `value` (ww: the later write; wr: the
 * value read; rw: the write the reader missed) and `other` (ww: the earlier write; rw: what the
 * reader saw, its list's last element or the register value). NaN: none (an empty or absent read).
 */
export class EdgeList {
  length = 0;
  from = new Int32Array(1024);
  to = new Int32Array(1024);
  type = new Uint8Array(1024);
  key = new Int32Array(1024);
  value = new Float64Array(1024);
  other = new Float64Array(1024);

  add(from: number, to: number, type: number, key = -1, value = Number.NaN, other = Number.NaN): void {
    if (from === to) return;
    if (this.length === this.from.length) this.grow();
    const at = this.length++;
    this.from[at] = from;
    this.to[at] = to;
    this.type[at] = type;
    this.key[at] = key;
    this.value[at] = value;
    this.other[at] = other;
  }

  private grow(): void {
    const size = this.from.length * 2;
    const widen = <T extends Int32Array | Uint8Array | Float64Array>(old: T, make: (n: number) => T): T => {
      const next = make(size);
      next.set(old);
      return next;
    };
    this.from = widen(this.from, (n) => new Int32Array(n));
    this.to = widen(this.to, (n) => new Int32Array(n));
    this.type = widen(this.type, (n) => new Uint8Array(n));
    this.key = widen(this.key, (n) => new Int32Array(n));
    this.value = widen(this.value, (n) => new Float64Array(n));
    this.other = widen(this.other, (n) => new Float64Array(n));
  }
}

/** Stable counting sort of `order` (edge indexes) by `bucketOf`, buckets 0 … buckets-1. */
function countingSort(order: Int32Array, buckets: number, bucketOf: (edge: number) => number): Int32Array {
  const starts = new Int32Array(buckets + 1);
  for (const edge of order) starts[bucketOf(edge) + 1]!++;
  for (let b = 0; b < buckets; b++) starts[b + 1]! += starts[b]!;
  const out = new Int32Array(order.length);
  for (const edge of order) out[starts[bucketOf(edge)]!++] = edge;
  return out;
}

export class Graph {
  /** Adjacency of node v: entries offsets[v] … offsets[v+1]-1. */
  readonly offsets: Int32Array;
  /** Per entry: the target node and the edge (index into `edges`). */
  readonly targets: Int32Array;
  readonly entryTypes: Uint8Array;
  readonly entryEdges: Int32Array;
  readonly edgeCount: number;
  readonly countsByType: number[] = [0, 0, 0, 0, 0];

  constructor(
    readonly nodeCount: number,
    readonly edges: EdgeList,
  ) {
    const { from, to, type } = edges;
    let order: Int32Array = new Int32Array(edges.length);
    for (let e = 0; e < edges.length; e++) order[e] = e;
    // LSD radix: by type, then target, then source — each source's block ends sorted by (target, type).
    order = countingSort(order, edgeTypes.length, (e) => type[e]!);
    order = countingSort(order, nodeCount, (e) => to[e]!);
    order = countingSort(order, nodeCount, (e) => from[e]!);
    const offsets = new Int32Array(nodeCount + 1);
    const targets = new Int32Array(order.length);
    const entryTypes = new Uint8Array(order.length);
    const entryEdges = new Int32Array(order.length);
    let kept = 0;
    let previous = -1;
    for (const e of order) {
      if (previous >= 0 && from[previous] === from[e] && to[previous] === to[e] && type[previous] === type[e]) continue; // duplicate
      previous = e;
      targets[kept] = to[e]!;
      entryTypes[kept] = type[e]!;
      entryEdges[kept] = e;
      offsets[from[e]! + 1]!++;
      this.countsByType[type[e]!]!++;
      kept++;
    }
    for (let v = 0; v < nodeCount; v++) offsets[v + 1]! += offsets[v]!;
    // invariant: the entries kept are exactly offsets[nodeCount]
    if (offsets[nodeCount] !== kept) throw new Error('elle graph: adjacency offsets disagree with the entries kept');
    this.offsets = offsets;
    this.targets = targets.subarray(0, kept);
    this.entryTypes = entryTypes.subarray(0, kept);
    this.entryEdges = entryEdges.subarray(0, kept);
    this.edgeCount = kept;
  }
}

/** Strongly connected components over the edges in `mask`: component id per node, sizes. */
export interface Components {
  readonly of: Int32Array;
  readonly sizes: number[];
  /** Nodes grouped by component: members of c are nodes[starts[c]] … nodes[starts[c+1]-1]. */
  readonly nodes: Int32Array;
  readonly starts: Int32Array;
}

/** Tarjan's algorithm, iterative (no recursion: 100k-node chains would overflow the stack). */
export function stronglyConnected(graph: Graph, mask: number): Components {
  const n = graph.nodeCount;
  const { offsets, targets, entryTypes } = graph;
  const index = new Int32Array(n).fill(-1);
  const low = new Int32Array(n);
  const of = new Int32Array(n).fill(-1);
  const onStack = new Uint8Array(n);
  const stack = new Int32Array(n);
  let stackTop = 0;
  const callNode = new Int32Array(n);
  const callEntry = new Int32Array(n);
  let callTop = 0;
  let counter = 0;
  const sizes: number[] = [];
  for (let root = 0; root < n; root++) {
    if (index[root] !== -1) continue;
    callNode[0] = root;
    callEntry[0] = offsets[root]!;
    callTop = 1;
    index[root] = low[root] = counter++;
    stack[stackTop++] = root;
    onStack[root] = 1;
    while (callTop > 0) {
      const v = callNode[callTop - 1]!;
      const entry = callEntry[callTop - 1]!;
      if (entry < offsets[v + 1]!) {
        callEntry[callTop - 1] = entry + 1;
        if ((mask & (1 << entryTypes[entry]!)) === 0) continue;
        const w = targets[entry]!;
        if (index[w] === -1) {
          index[w] = low[w] = counter++;
          stack[stackTop++] = w;
          onStack[w] = 1;
          callNode[callTop] = w;
          callEntry[callTop] = offsets[w]!;
          callTop++;
        } else if (onStack[w] === 1 && index[w]! < low[v]!) {
          low[v] = index[w]!;
        }
        continue;
      }
      // v is done: pop its component if it is a root, then hand its low link to its caller.
      if (low[v] === index[v]) {
        const id = sizes.length;
        let size = 0;
        let w: number;
        do {
          w = stack[--stackTop]!;
          onStack[w] = 0;
          of[w] = id;
          size++;
        } while (w !== v);
        sizes.push(size);
      }
      callTop--;
      if (callTop > 0) {
        const caller = callNode[callTop - 1]!;
        if (low[v]! < low[caller]!) low[caller] = low[v]!;
      }
    }
  }
  const starts = new Int32Array(sizes.length + 1);
  for (let c = 0; c < sizes.length; c++) starts[c + 1] = starts[c]! + sizes[c]!;
  const fill = starts.slice(0, sizes.length);
  const nodes = new Int32Array(n);
  for (let v = 0; v < n; v++) nodes[fill[of[v]!]!++] = v;
  return { of, sizes, nodes, starts };
}

/**
 * Breadth-first searches restricted to one component, reusing their buffers (a search stamps
 * what it visited instead of clearing arrays of the graph's size).
 */
export class PathSearch {
  private readonly seen: Int32Array;
  private readonly previous: Int32Array;
  private readonly queue: Int32Array;
  private stamp = 0;
  /** Adjacency entries scanned by all searches so far. */
  visits = 0;

  constructor(
    private readonly graph: Graph,
    private readonly component: Int32Array,
  ) {
    // Two states per node: the layered search counts rw edges used (0 or 1).
    this.seen = new Int32Array(graph.nodeCount * 2);
    this.previous = new Int32Array(graph.nodeCount * 2);
    this.queue = new Int32Array(graph.nodeCount * 2);
  }

  /**
   * The shortest path source → target over entries whose type is in `mask`, inside the source's
   * component, as entry indexes; undefined if there is none. With `rwExactly`, the path uses
   * exactly that many (0 or 1) rw entries (rw must then be in the mask to use one).
   */
  path(source: number, target: number, mask: number, rwExactly?: 0 | 1): number[] | undefined {
    const { offsets, targets, entryTypes } = this.graph;
    const component = this.component[source]!;
    const layered = rwExactly !== undefined;
    const stamp = ++this.stamp;
    const goal = layered ? target * 2 + rwExactly : target * 2;
    let head = 0;
    let tail = 0;
    this.seen[source * 2] = stamp;
    this.previous[source * 2] = -1;
    this.queue[tail++] = source * 2;
    while (head < tail) {
      const state = this.queue[head++]!;
      if (state === goal) return this.unwind(state);
      const v = state >> 1;
      const layer = state & 1;
      for (let entry = offsets[v]!; entry < offsets[v + 1]!; entry++) {
        this.visits++;
        const type = entryTypes[entry]!;
        if ((mask & (1 << type)) === 0) continue;
        const w = targets[entry]!;
        if (this.component[w] !== component) continue;
        let nextLayer = 0;
        if (layered) {
          nextLayer = layer + (type === RW ? 1 : 0);
          if (nextLayer > 1) continue;
        }
        const next = w * 2 + nextLayer;
        if (this.seen[next] === stamp) continue;
        this.seen[next] = stamp;
        this.previous[next] = entry;
        this.queue[tail++] = next;
      }
    }
    return undefined;
  }

  private unwind(state: number): number[] {
    const { entryTypes, entryEdges } = this.graph;
    const { from } = this.graph.edges;
    const path: number[] = [];
    for (let s = state; this.previous[s] !== -1; ) {
      const entry = this.previous[s]!;
      path.push(entry);
      // Only an rw entry moves a layered search from layer 0 to 1.
      const previousLayer = (s & 1) === 1 && entryTypes[entry] === RW ? 0 : s & 1;
      s = from[entryEdges[entry]!]! * 2 + previousLayer;
    }
    return path.reverse();
  }
}
