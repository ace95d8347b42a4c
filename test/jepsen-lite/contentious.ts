/** Scenarios with contentious elections: five nodes, short timeouts, a slow and lossy network. */
import fc from 'fast-check';
import { scenarioArbitrary, type SimScenario } from '../../jepsen-lite/sim/index.js';

export const contentiousScenarios: fc.Arbitrary<SimScenario> = scenarioArbitrary.map(
  (s): SimScenario => ({
    ...s,
    nodeCount: 5,
    electionTicks: 5,
    network: { dropRate: 0.05, duplicateRate: 0, delayMinMs: 1, delayMaxMs: 150 },
  }),
);

/** A fixed sample of them (fast-check seed 42). */
export function contentiousSample(count: number): SimScenario[] {
  return fc.sample(contentiousScenarios, { seed: 42, numRuns: count });
}
