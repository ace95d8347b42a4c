/**
 * Real-time order (T1 → T2 when T1 returned before T2 was called) without its O(n²) edges: only
 * the transitive reduction. Events run in time order (at equal times calls first: the order is
 * strict); the frontier holds completed transactions no later completion has superseded. A call
 * takes an edge from each frontier member; a completion removes from the frontier what was in it
 * at its own call (those now precede it and, through it, everything it precedes) and joins it.
 * Only a committed (`ok`) transaction's return counts: one of unknown outcome may take effect
 * after its client heard an error (real mode records that moment as its `ret`), so it gets edges
 * in, never out.
 *
 * Process order (consecutive transactions of one client) adds `process` edges, for clients whose
 * previous transaction committed and returned no later than the next call.
 */
import type { Context } from './context.js';
import { PROCESS, REALTIME } from './graph.js';

export function addRealtimeEdges(context: Context): void {
  const { txns, txnOfNode, edges } = context;
  const nodeCount = txnOfNode.length;
  // Calls and returns, each sorted by time (histories come nearly in call order: cheap), then
  // merged; at equal times calls go first, as the order is strict.
  const callOf = (node: number): number => txns[txnOfNode[node]!]!.call;
  const retOf = (node: number): number => txns[txnOfNode[node]!]!.ret!;
  const returned = (node: number): boolean => txns[txnOfNode[node]!]!.status === 'ok' && txns[txnOfNode[node]!]!.ret !== undefined;
  const calls: number[] = [];
  const returns: number[] = [];
  for (let node = 0; node < nodeCount; node++) {
    calls.push(node);
    if (returned(node)) returns.push(node);
  }
  calls.sort((a, b) => callOf(a) - callOf(b) || a - b);
  returns.sort((a, b) => retOf(a) - retOf(b) || a - b);
  // Event e < nodeCount: node e's call; e >= nodeCount: node e - nodeCount's return.
  const events: number[] = [];
  for (let c = 0, r = 0; c < calls.length || r < returns.length; ) {
    if (r >= returns.length || (c < calls.length && callOf(calls[c]!) <= retOf(returns[r]!))) events.push(calls[c++]!);
    else events.push(returns[r++]! + nodeCount);
  }
  const frontier = new Set<number>();
  const frontierAtCall = new Map<number, number[]>();
  for (const event of events) {
    if (event < nodeCount) {
      const before = [...frontier];
      for (const node of before) edges.add(node, event, REALTIME);
      frontierAtCall.set(event, before);
      continue;
    }
    const node = event - nodeCount;
    for (const superseded of frontierAtCall.get(node)!) frontier.delete(superseded);
    frontierAtCall.delete(node);
    frontier.add(node);
  }
}

export function addProcessEdges(context: Context): void {
  const { txns, txnOfNode, edges } = context;
  const byProcess = new Map<number, number[]>();
  for (let node = 0; node < txnOfNode.length; node++) {
    const process = txns[txnOfNode[node]!]!.process;
    let nodes = byProcess.get(process);
    if (nodes === undefined) byProcess.set(process, (nodes = []));
    nodes.push(node);
  }
  for (const nodes of byProcess.values()) {
    nodes.sort((a, b) => txns[txnOfNode[a]!]!.call - txns[txnOfNode[b]!]!.call || a - b);
    for (let i = 0; i + 1 < nodes.length; i++) {
      const previous = txns[txnOfNode[nodes[i]!]!]!;
      const next = txns[txnOfNode[nodes[i + 1]!]!]!;
      if (previous.status === 'ok' && previous.ret !== undefined && previous.ret <= next.call) edges.add(nodes[i]!, nodes[i + 1]!, PROCESS);
    }
  }
}
