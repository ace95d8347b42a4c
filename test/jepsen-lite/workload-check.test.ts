/**
 * The workload mapping and the checker's models agree about etcd: a history recorded by running
 * generated operations one at a time against the real state machine (as sim mode does) is
 * linearizable under the workload's model, and the same history with one output changed is not.
 * Then the same with concurrency: operations overlap around the moment they were applied, and
 * some never return (applied or not) — still linearizable.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SeededPrng } from '../../raft/index.js';
import { composeStateMachine } from '../../src/runtime/index.js';
import { checkLinearizability } from '../../jepsen-lite/check/index.js';
import type { Operation } from '../../jepsen-lite/history.js';
import { Generator, applyCall, fromEtcdResponse, modelOf, toEtcdCall, type WorkloadName } from '../../jepsen-lite/workload/index.js';

const OPS = 120;
const PROCESSES = 3;
const RUNS = 15;
const BUDGET_MS = 5000;

function sequentialHistory(workload: WorkloadName, seed: number): Operation[] {
  const prng = new SeededPrng(seed);
  const generator = new Generator(workload, () => prng.nextFloat());
  const machine = composeStateMachine('data');
  return Array.from({ length: OPS }, (_, id) => {
    const process = id % PROCESSES;
    const input = generator.next(process);
    const output = fromEtcdResponse(input, applyCall(machine, toEtcdCall(input, 'jepsen/'), { index: id + 1 }).response);
    generator.observe(input, output);
    return { id, process, call: 2 * id, ret: 2 * id + 1, status: 'ok' as const, input, output };
  });
}

/** Replaces the first read's observed value with one nobody wrote. */
function corruptRead(history: readonly Operation[]): Operation[] | undefined {
  const at = history.findIndex((op) => {
    const output = op.output as { f: string };
    return output.f === 'read' || output.f === 'get';
  });
  if (at < 0) return undefined;
  const op = history[at]!;
  const corrupted = { ...op, output: { ...(op.output as object), value: 'never-written' } };
  return [...history.slice(0, at), corrupted, ...history.slice(at + 1)];
}

/** Spread of call and return times around the moment an operation was applied. */
const OVERLAP_MS = 4;
const INFO_PERCENT = 5;
/**
 * Fewer operations than the sequential case: every unknown write stays pending to the end, and
 * the kv model checks the whole history at once, so the search grows fast with length (at 120
 * operations a rare seed runs past 5 s; at 60 the worst of 400 seeds took 0.2 s).
 */
const CONCURRENT_OPS = 60;

/**
 * Operation k is applied (or, for some unknown ones, dropped) at time k; its call and return lie
 * up to OVERLAP_MS around that, so many overlap. A process runs one operation at a time, and one
 * that never heard back is retired (a fresh process id takes over, as Jepsen does).
 */
function concurrentHistory(workload: WorkloadName, seed: number): Operation[] {
  const prng = new SeededPrng(seed);
  const random = () => prng.nextFloat();
  const generator = new Generator(workload, random);
  const machine = composeStateMachine('data');
  const busyUntil = new Map<number, number>();
  let nextProcess = 0;
  let index = 0;
  const ops: Omit<Operation, 'id'>[] = [];
  for (let k = 0; k < CONCURRENT_OPS; k++) {
    const call = k - random() * OVERLAP_MS;
    const ret = k + random() * OVERLAP_MS;
    let process = [...busyUntil].find(([, until]) => until < call)?.[0];
    if (process === undefined) process = nextProcess++;
    const input = generator.next(process);
    const unknown = random() * 100 < INFO_PERCENT;
    if (unknown) {
      if (random() < 0.5) applyCall(machine, toEtcdCall(input, 'jepsen/'), { index: ++index });
      busyUntil.delete(process);
      ops.push({ process, call, status: 'info', input, error: 'timeout' });
      continue;
    }
    const output = fromEtcdResponse(input, applyCall(machine, toEtcdCall(input, 'jepsen/'), { index: ++index }).response);
    generator.observe(input, output);
    busyUntil.set(process, ret);
    ops.push({ process, call, ret, status: 'ok', input, output });
  }
  return ops.sort((a, b) => a.call - b.call).map((op, id) => ({ ...op, id }));
}

describe('workload histories under the checker', () => {
  it.each(['register', 'kv', 'watch'] as const)('%s: overlapping operations and unknown outcomes are still linearizable', (workload) => {
    let unknown = 0;
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 }), (seed) => {
        const history = concurrentHistory(workload, seed);
        unknown += history.filter((op) => op.status === 'info').length;
        const result = checkLinearizability(modelOf(workload), history, { timeBudgetMs: BUDGET_MS });
        expect(result.verdict, JSON.stringify(result.partitions.find((p) => p.verdict !== 'ok'))).toBe('ok');
      }),
      { numRuns: RUNS },
    );
    expect(unknown).toBeGreaterThan(RUNS);
  });

  it.each(['register', 'kv', 'watch'] as const)('%s: a history of the real state machine is linearizable; a corrupted read is not', (workload) => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 }), (seed) => {
        const history = sequentialHistory(workload, seed);
        const result = checkLinearizability(modelOf(workload), history, { timeBudgetMs: BUDGET_MS });
        expect(result.verdict, JSON.stringify(result.partitions.find((p) => p.verdict !== 'ok'))).toBe('ok');
        const corrupted = corruptRead(history);
        if (corrupted === undefined) return;
        expect(checkLinearizability(modelOf(workload), corrupted, { timeBudgetMs: BUDGET_MS }).verdict).toBe('violation');
      }),
      { numRuns: RUNS },
    );
  });
});
