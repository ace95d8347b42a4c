/**
 * Generated histories for the linearizability checker: a sequential reference run under random
 * concurrency (with refused and crashed ops) is always linearizable, and a read mutated to
 * something no run could produce makes it not — one property per model. Also: the time budget
 * answers unknown (never ok), and a 5,000-op register history checks fast.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type AnyModel, checkLinearizability, models } from '../../jepsen-lite/check/index.js';
import type { ModelName, Operation } from '../../jepsen-lite/history.js';
import { Random, generateHistory, info, kvReference, mutateRead, ok, references, registerReference } from './lin-histories.js';

const modelNames: readonly ModelName[] = ['register', 'kv', 'set', 'counter', 'lock'];
/** Runs per model property (each builds and checks two histories of up to 80 ops). */
const propertyRuns = 120;

describe.each(modelNames)('%s model on generated histories', (model) => {
  it('says ok on a sequential run under concurrency, and violation once a read is mutated', () => {
    let mutated = 0;
    fc.assert(
      fc.property(fc.integer(), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 80 }), (seed, processes, operations) => {
        const random = new Random(seed);
        const history = generateHistory(references[model](), random, { processes, operations, failRate: 0.05, infoRate: 0.05 });
        const clean = checkLinearizability(model, history);
        expect(clean.verdict, clean.partitions.find((p) => p.verdict !== 'ok')?.message).toBe('ok');
        const id = mutateRead(model, history, random);
        if (id === undefined) return;
        mutated++;
        const result = checkLinearizability(model, history);
        expect(result.verdict).toBe('violation');
        const broken = result.partitions.find((p) => p.verdict === 'violation')!;
        const ids = new Set(history.map((op) => op.id));
        expect(broken.blocked!.length).toBeGreaterThan(0);
        expect([...broken.blocked!, ...broken.linearized!].every((blockedId) => ids.has(blockedId))).toBe(true);
      }),
      { numRuns: propertyRuns },
    );
    expect(mutated).toBeGreaterThan(propertyRuns / 2);
  });
});

// ---------------------------------------------------------------------------------------------

/**
 * The plain definition, by brute force: some order of the ok ops (and any of the pending ones)
 * that respects real time and that the model accepts step by step. Exponential; tiny histories only.
 */
function bruteForce(model: ModelName, history: readonly Operation[]): boolean {
  const spec = models[model];
  const live = history.filter((op) => op.status !== 'fail');
  if (!spec.wholeHistory) {
    // the models' states are per key: split, as the definition of a per-key object demands
    const keys = new Set(live.map((op) => spec.partitionKey(op.input)));
    return [...keys].every((key) => bruteForceOne(spec, live.filter((op) => spec.partitionKey(op.input) === key)));
  }
  return bruteForceOne(spec, live);
}

function bruteForceOne(spec: AnyModel, ops: readonly Operation[]): boolean {
  const done = new Array<boolean>(ops.length).fill(false);
  const returned = (op: Operation): number => (op.status === 'ok' ? op.ret! : Number.POSITIVE_INFINITY);
  const search = (state: unknown): boolean => {
    if (ops.every((op, i) => done[i] || op.status !== 'ok')) return true;
    return ops.some((op, i) => {
      if (done[i] || ops.some((other, j) => !done[j] && j !== i && returned(other) < op.call)) return false;
      const after = spec.step(state, op.input, op.status === 'ok' ? op.output : undefined);
      if (after === undefined) return false;
      done[i] = true;
      const found = search(after);
      done[i] = false;
      return found;
    });
  };
  return search(spec.initial());
}

/** Another plausible output: a read's value from the references' small domains; kv: the revision one off. */
function plausibleOutput(model: ModelName, op: Operation, random: Random): unknown {
  const value = random.pick([null, 'v0', 'v1', 'v2', 'v3']);
  if (model === 'set') return { f: 'read', values: ['e0', 'e1', 'e2', 'e3'].filter(() => random.chance(0.5)) };
  if (model === 'counter') return { f: 'read', value: random.below(10) };
  if (model !== 'kv') return { f: 'read', value };
  const output = op.output as { revision: number };
  return { ...output, revision: Math.max(1, output.revision + random.pick([-1, 1])) };
}

/** Swaps some ok ops' outputs with those of other ops of the same kind (when they still fit), or gives a read another plausible value. */
function scramble(model: ModelName, history: Operation[], random: Random): void {
  const oks = history.filter((op) => op.status === 'ok');
  for (const op of oks) {
    if (!random.chance(0.5)) continue;
    const other = random.chance(0.5) ? random.pick(oks) : { output: plausibleOutput(model, op, random) };
    try {
      models[model].validate(op.input, other.output);
    } catch {
      continue; // another kind of op, or a txn branch of another length
    }
    history[history.indexOf(op)] = { ...op, output: other.output };
  }
}

describe.each(modelNames)('%s search agrees with brute force', (model) => {
  it('on tiny scrambled histories', () => {
    const verdicts = { ok: 0, violation: 0 };
    fc.assert(
      fc.property(fc.integer(), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 2, max: 8 }), (seed, processes, operations) => {
        const random = new Random(seed);
        const history = generateHistory(references[model](), random, { processes, operations, failRate: 0.1, infoRate: 0.15 });
        scramble(model, history, random);
        const result = checkLinearizability(model, history);
        expect(result.verdict).not.toBe('unknown');
        expect(result.verdict === 'ok').toBe(bruteForce(model, history));
        verdicts[result.verdict as 'ok' | 'violation']++;
      }),
      { numRuns: propertyRuns * 2 },
    );
    // both answers were exercised
    expect(verdicts.ok).toBeGreaterThan(propertyRuns / 10);
    expect(verdicts.violation).toBeGreaterThan(propertyRuns / 10);
  });
});

// ---------------------------------------------------------------------------------------------

/** 40 concurrent writes of distinct values, then a read of a value none wrote: 2^40 configurations. */
function exponentialHistory(): Operation[] {
  const writes = Array.from({ length: 40 }, (_, i) => ok(i, 0, 100, { f: 'write', key: 'x', value: `v${i}` }, { f: 'write' }));
  return [...writes, ok(40, 200, 201, { f: 'read', key: 'x' }, { f: 'read', value: 'nobody' })];
}

describe('time budget', () => {
  it('answers unknown, deterministically, when a fake clock runs past the budget', () => {
    let tick = 0;
    const now = () => tick++;
    const history = generateHistory(registerReference(), new Random(7), { processes: 5, operations: 200, failRate: 0, infoRate: 0 });
    expect(checkLinearizability('register', history).verdict).toBe('ok');
    const result = checkLinearizability('register', history, { timeBudgetMs: 1, now });
    expect(result.verdict).toBe('unknown');
    expect(result.partitions.every((p) => p.verdict === 'unknown')).toBe(true);
    expect(result.partitions[0]!.message).toMatch(/time budget of 1 ms/);
  });

  it('answers unknown, not violation or ok, on a search it cannot finish in time', () => {
    let tick = 0;
    const fake = checkLinearizability('register', exponentialHistory(), { timeBudgetMs: 50, now: () => tick++ });
    expect(fake.verdict).toBe('unknown');
    const start = performance.now();
    const real = checkLinearizability('register', exponentialHistory(), { timeBudgetMs: 50 });
    expect(real.verdict).toBe('unknown');
    expect(performance.now() - start).toBeLessThan(2_000);
  });

  it('keeps a violation found in one partition even when another ran out of time', () => {
    let tick = 0;
    const stale = [
      ok(100, 0, 1, { f: 'write', key: 'a', value: '1' }, { f: 'write' }),
      ok(101, 2, 3, { f: 'read', key: 'a' }, { f: 'read', value: null }),
    ];
    const result = checkLinearizability('register', [...stale, ...exponentialHistory()], { timeBudgetMs: 500, now: () => tick++ });
    expect(result.partitions.map((p) => p.verdict)).toEqual(['violation', 'unknown']);
    expect(result.verdict).toBe('violation');
  });
});

describe('speed', () => {
  it('checks a 5,000-op register history (10 keys, 10 clients, some pending) well under a second', () => {
    const keyNames = Array.from({ length: 10 }, (_, i) => `k${i}`);
    const history = generateHistory(registerReference(keyNames), new Random(42), { processes: 10, operations: 5_000, failRate: 0.01, infoRate: 0.01 });
    const result = checkLinearizability('register', history);
    expect(result.verdict).toBe('ok');
    expect(result.partitions).toHaveLength(10);
    expect(result.elapsedMs).toBeLessThan(1_000);
  });

  it('checks a 2,000-op kv history (whole-history, 10 clients) in well under the default budget', () => {
    const history = generateHistory(kvReference(), new Random(43), { processes: 10, operations: 2_000, failRate: 0.01, infoRate: 0.01 });
    const result = checkLinearizability('kv', history);
    expect(result.verdict).toBe('ok');
    expect(result.elapsedMs).toBeLessThan(5_000);
  });

  it('handles 20,000 sequential ops without deep recursion', () => {
    const history = generateHistory(registerReference(['only']), new Random(44), { processes: 1, operations: 20_000, failRate: 0, infoRate: 0 });
    expect(checkLinearizability('register', history).verdict).toBe('ok');
  });
});

describe('each model can say violation', () => {
  it.each(modelNames)('%s', (model) => {
    const history = generateHistory(references[model](), new Random(1), { processes: 3, operations: 60, failRate: 0, infoRate: 0 });
    expect(mutateRead(model, history, new Random(2))).toBeDefined();
    expect(checkLinearizability(model, history).verdict).toBe('violation');
  });

  it('a pending op that never returned does not excuse a read of a value nobody wrote', () => {
    const history = [info(0, 0, { f: 'write', key: 'x', value: 'a' }), ok(1, 5, 6, { f: 'read', key: 'x' }, { f: 'read', value: 'b' })];
    expect(checkLinearizability('register', history).verdict).toBe('violation');
  });
});
