/**
 * The workload generators: deterministic per draw sequence, the documented mix, values unique per
 * write, keys from the small set, txns on one or two keys with no key written twice in a branch.
 */
import { describe, expect, it } from 'vitest';
import { SeededPrng } from '../../raft/index.js';
import type { KvInput, RegisterInput } from '../../jepsen-lite/history.js';
import {
  Generator,
  kvMix,
  modelOf,
  registerMix,
  watchMix,
  workloadNames,
  type WorkloadInput,
  type WorkloadName,
} from '../../jepsen-lite/workload/index.js';

const seeded = (seed: number): (() => number) => {
  const prng = new SeededPrng(seed);
  return () => prng.nextFloat();
};

const OPS = 6000;
const PROCESSES = 5;
/** Observed share may differ from the weight by this many percentage points over OPS draws. */
const MIX_TOLERANCE_POINTS = 3;

function run(workload: WorkloadName, seed: number, ops = OPS): WorkloadInput[] {
  const generator = new Generator(workload, seeded(seed));
  return Array.from({ length: ops }, (_, i) => generator.next(i % PROCESSES));
}

function writtenValues(input: WorkloadInput): string[] {
  switch (input.f) {
    case 'write':
    case 'put':
      return [input.value];
    case 'cas':
      return [input.to];
    case 'txn':
      return [...input.success, ...input.failure].flatMap((r) => (r.f === 'put' ? [r.value] : []));
    default:
      return [];
  }
}

function keysOf(input: WorkloadInput): string[] {
  if (input.f === 'txn') return [...input.compare.map((c) => c.key), ...input.success.map((r) => r.key), ...input.failure.map((r) => r.key)];
  if ('key' in input) return [input.key];
  return [];
}

function expectMix(inputs: readonly WorkloadInput[], mix: Readonly<Record<string, number>>): void {
  const total = Object.values(mix).reduce((a, b) => a + b, 0);
  for (const [f, weight] of Object.entries(mix)) {
    const share = (100 * inputs.filter((i) => i.f === f).length) / inputs.length;
    expect(Math.abs(share - (100 * weight) / total), `share of ${f}`).toBeLessThan(MIX_TOLERANCE_POINTS);
  }
}

describe('Generator', () => {
  it('maps workloads to models', () => {
    expect(workloadNames.map(modelOf)).toEqual(['register', 'kv', 'kv', 'kv', 'kv']);
  });

  it.each(workloadNames)('%s: the same draws give the same inputs; another seed gives others', (workload) => {
    expect(run(workload, 7, 500)).toEqual(run(workload, 7, 500));
    expect(run(workload, 8, 500)).not.toEqual(run(workload, 7, 500));
  });

  it('register: the 50/30/20 mix, and some cas expect a value that was written', () => {
    const inputs = run('register', 1) as RegisterInput[];
    expectMix(inputs, registerMix);
    const written = new Set(inputs.flatMap(writtenValues));
    const cas = inputs.filter((i): i is Extract<RegisterInput, { f: 'cas' }> => i.f === 'cas');
    expect(cas.filter((c) => written.has(c.from)).length).toBeGreaterThan(cas.length / 2);
  });

  it.each([
    ['kv', kvMix],
    ['watch', watchMix],
  ] as const)('%s: its mix', (workload, mix) => {
    expectMix(run(workload, 2), mix);
  });

  // The transactional workloads' values are numbers (test/jepsen-lite/workload-txn.test.ts).
  it.each(['register', 'kv', 'watch'] as const)('%s: every written value is unique and names its process', (workload) => {
    const generator = new Generator(workload, seeded(3));
    const values: string[] = [];
    for (let i = 0; i < OPS; i++) {
      const process = i % PROCESSES;
      const vs = writtenValues(generator.next(process));
      for (const v of vs) expect(v.startsWith(`${process}-`)).toBe(true);
      values.push(...vs);
    }
    expect(values.length).toBeGreaterThan(OPS / 4);
    expect(new Set(values).size).toBe(values.length);
  });

  it.each([
    ['register', 5],
    ['kv', 4],
    ['watch', 3],
  ] as const)('%s: keys come from a set of %i (and the option changes it)', (workload, keys) => {
    expect(new Set(run(workload, 4).flatMap(keysOf))).toEqual(new Set(Array.from({ length: keys }, (_, i) => `k${i}`)));
    const generator = new Generator(workload, seeded(4), { keys: 2 });
    const used = new Set(Array.from({ length: 500 }, () => keysOf(generator.next(0))).flat());
    expect(used).toEqual(new Set(['k0', 'k1']));
  });

  it('kv: txns touch one or two keys, write a key at most once per branch, and use every compare target', () => {
    const generator = new Generator('kv', seeded(5));
    const targets = new Set<string>();
    let twoKeys = 0;
    for (let i = 0; i < OPS; i++) {
      const input = generator.next(i % PROCESSES) as KvInput;
      if (input.f === 'put') generator.observe(input, { f: 'put', revision: i + 2, prevValue: null });
      if (input.f !== 'txn') continue;
      const keys = new Set(keysOf(input));
      expect(keys.size).toBeGreaterThanOrEqual(1);
      expect(keys.size).toBeLessThanOrEqual(2);
      if (keys.size === 2) twoKeys++;
      for (const branch of [input.success, input.failure]) {
        const written = branch.filter((r) => r.f !== 'get').map((r) => r.key);
        expect(new Set(written).size).toBe(written.length);
      }
      for (const c of input.compare) targets.add(c.target);
    }
    expect(twoKeys).toBeGreaterThan(0);
    expect(targets).toEqual(new Set(['value', 'mod', 'version', 'create']));
  });

  it('refuses bad options and bad draws', () => {
    expect(() => new Generator('kv', Math.random, { keys: 0 })).toThrow(TypeError);
    expect(() => new Generator('nope' as WorkloadName, Math.random)).toThrow(TypeError);
    expect(() => new Generator('kv', () => 1).next(0)).toThrow(TypeError);
  });
});
