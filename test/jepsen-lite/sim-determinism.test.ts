import { describe, expect, it } from 'vitest';
import { runScenario, scenarioForSeed } from '../../jepsen-lite/sim/index.js';
import { contentiousSample } from './contentious.js';

describe('simulation determinism', () => {
  it('a numbered seed always yields the same scenario', () => {
    for (const seed of [0, 1, 99, 123456]) expect(scenarioForSeed(seed)).toEqual(scenarioForSeed(seed));
    expect(scenarioForSeed(1)).not.toEqual(scenarioForSeed(2));
  });

  it('re-running a seed gives the identical event trace', () => {
    for (const seed of [3, 17, 4242]) {
      const first = runScenario(scenarioForSeed(seed), { traceEvents: true });
      const second = runScenario(scenarioForSeed(seed), { traceEvents: true });
      expect(first.trace.length).toBeGreaterThan(100);
      expect(second.trace).toEqual(first.trace);
      expect(second.traceHash).toBe(first.traceHash);
      expect(second.stats).toEqual(first.stats);
    }
  });

  it('a different seed gives a different trace', () => {
    const base = scenarioForSeed(5);
    const a = runScenario(base);
    const b = runScenario({ ...base, seed: base.seed + 1 });
    expect(b.traceHash).not.toBe(a.traceHash);
  });
});

describe('the checker catches a broken core', () => {
  const samples = contentiousSample(40);

  it('a node that may vote twice in a term produces two leaders in one term', () => {
    const violations = samples
      .map((scenario) => runScenario(scenario, { unsafeVoteTwiceInTerm: true }))
      .filter((result) => !result.ok);
    expect(violations.length).toBeGreaterThan(0);
    for (const result of violations) expect(result.violation!.kind).toBe('election-safety');
  });

  it('the same scenarios pass with the correct core', () => {
    const failures = samples.slice(0, 20).map((scenario) => runScenario(scenario)).filter((r) => !r.ok);
    expect(failures.map((r) => r.violation)).toEqual([]);
  });
});

describe('the simulator catches a broken runtime', () => {
  // Crashes lose what was not durable; a host that acknowledges before its write is durable lets
  // a quorum "remember" entries that are gone, and the checks must see it.
  const scenarios = Array.from({ length: 60 }, (_, seed) => scenarioForSeed(seed));

  it('acknowledging appends and votes before they are persisted breaks Raft, and the checks say so', () => {
    const broken = scenarios.map((scenario) => runScenario(scenario, { unsafeAcknowledgeBeforePersist: true })).filter((result) => !result.ok);
    expect(broken.length).toBeGreaterThan(0);
    for (const result of broken) expect(['assertion', 'commit-safety', 'state-machine-safety', 'leader-completeness', 'log-matching', 'read-safety']).toContain(result.violation!.kind);
  });

  it('the same scenarios pass with the runtime as it is', () => {
    const failures = scenarios.slice(0, 20).map((scenario) => runScenario(scenario)).filter((r) => !r.ok);
    expect(failures.map((r) => r.violation)).toEqual([]);
  });
});
