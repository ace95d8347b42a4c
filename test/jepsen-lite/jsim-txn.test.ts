/**
 * The transactional workloads in the simulator: seeds under faults check out (Elle finds no
 * anomaly, the Txns are linearizable), and each test-only break is found and named — a Txn
 * applied without its compare loses appends (the lists stop being prefixes of one another, or a
 * transaction reads what its own append contradicts), a read-only Txn served without ReadIndex
 * misses a write that finished before it began (a stale read: G-single-realtime).
 */
import { describe, expect, it } from 'vitest';
import { runJepsenSim } from '../../jepsen-lite/sim/jepsen/index.js';
import { jepsenSimSeeds } from './jsim-seeds.js';

describe('jepsen sim, append workload', () => jepsenSimSeeds({ workload: 'append', first: 3000, count: 24, durationMs: 1500 }));
describe('jepsen sim, rw-register workload', () => jepsenSimSeeds({ workload: 'rw-register', first: 4000, count: 24, durationMs: 1500 }));

describe('jepsen sim, transactional workloads broken on purpose', () => {
  it('a Txn applied without its compare: append finds lost appends (incompatible order or an internal contradiction)', async () => {
    for (const seed of [1, 2, 3]) {
      const result = await runJepsenSim({ seed, workload: 'append', nodes: 3, durationMs: 3000, swarm: false, unsafe: { ignoreTxnCompare: true } });
      expect(result.verdict, `seed ${seed}`).toBe('violation');
      const names = Object.keys(result.txn!.counts);
      expect(names.some((name) => name === 'incompatible-order' || name === 'internal'), `seed ${seed}: ${names.join(', ')}`).toBe(true);
      expect(result.txn!.notSatisfied).toContain('serializable');
      // The evidence first: the fewest transactions involved.
      const sizes = result.txn!.anomalies.map((a) => a.opIds.length);
      expect(sizes).toEqual([...sizes].sort((a, b) => a - b));
    }
  });

  it.each(['append', 'rw-register'] as const)('%s: read-only Txns without ReadIndex are stale reads against real time', async (workload) => {
    const explanations: string[] = [];
    for (const seed of [1, 2]) {
      const result = await runJepsenSim({ seed, workload, nodes: 3, durationMs: 3000, swarm: true, unsafe: { staleReads: true } });
      expect(result.verdict, `seed ${seed}`).toBe('violation');
      expect(result.txn!.counts['G-single-realtime'] ?? 0, `seed ${seed}: ${JSON.stringify(result.txn!.counts)}`).toBeGreaterThan(0);
      expect(result.txn!.notSatisfied).toContain('strict-serializable');
      for (const anomaly of result.txn!.anomalies) if (anomaly.name === 'G-single-realtime') explanations.push(anomaly.explanation);
    }
    // Each is a read that missed a write finished before it began: directly (two transactions,
    // named a stale read) or through a third one ordered between them.
    for (const explanation of explanations) expect(explanation).toMatch(/(completed before .* began, yet .* a stale read|\(realtime\).*\(rw\): a cycle, so no serial order consistent with real time exists)$/);
    expect(explanations.some((explanation) => /a stale read$/.test(explanation))).toBe(true);
  });
});
