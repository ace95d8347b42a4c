/**
 * Shared body of the randomised simulation suites: fast-check draws whole scenarios (network,
 * fault schedule, load) and every run must keep every safety property and recover after healing.
 * The base seed is fixed so CI is deterministic; SIM_SEED explores others.
 */
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { describeFailure, saveFailure } from '../../jepsen-lite/sim/failures.js';
import { runScenario, scenarioArbitrary } from '../../jepsen-lite/sim/index.js';

export function simulateSeeds(options: { baseSeed: number; runs: number }): void {
  const seed = process.env.SIM_SEED === undefined ? options.baseSeed : Number(process.env.SIM_SEED) + options.baseSeed;
  it(`${options.runs} random scenarios keep Raft safe and live (fast-check seed ${seed})`, () => {
    let runs = 0;
    let worstRecovery = 0;
    fc.assert(
      fc.property(scenarioArbitrary, (scenario) => {
        runs++;
        const result = runScenario(scenario);
        if (!result.ok) throw new Error(describeFailure(result, saveFailure(result)));
        expect(result.recoveryTicks).toBeLessThanOrEqual(result.recoveryBound!);
        worstRecovery = Math.max(worstRecovery, result.recoveryTicks ?? 0);
      }),
      { seed, numRuns: options.runs, endOnFailure: false },
    );
    expect(runs).toBeGreaterThanOrEqual(options.runs);
    expect(worstRecovery).toBeGreaterThan(0);
  });
}
