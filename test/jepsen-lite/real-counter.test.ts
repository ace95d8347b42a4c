/**
 * The counter workload of `dkv jepsen run`: its generator and dkv.v1.Counter mapping, the counter
 * model on crafted histories (it must reject non-linearizable ones and handle increments whose
 * outcome is unknown), and one short real run on a 3-node DKV cluster with partitions and kills,
 * checked linearizable, every acknowledged increment found in the committed history.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkLinearizability } from '../../jepsen-lite/check/index.js';
import type { CounterInput, CounterOutput, Operation } from '../../jepsen-lite/history.js';
import { jepsenRunCommand } from '../../jepsen-lite/real/command.js';
import { CounterGenerator, counterDeltaMax, fromCounterResponse, toCounterCall } from '../../jepsen-lite/workload/index.js';
import { SeededPrng } from '../../raft/index.js';

let nextId = 0;

function add(process: number, call: number, ret: number | undefined, delta: number, value?: number): Operation<CounterInput, CounterOutput> {
  const input: CounterInput = { f: 'add', key: 'c0', delta };
  if (ret === undefined) return { id: nextId++, process, call, input, status: 'info', error: 'DEADLINE_EXCEEDED' };
  return { id: nextId++, process, call, ret, input, status: 'ok', output: { f: 'add', ...(value === undefined ? {} : { value }) } };
}

function read(process: number, call: number, ret: number, value: number): Operation<CounterInput, CounterOutput> {
  return { id: nextId++, process, call, ret, input: { f: 'read', key: 'c0' }, status: 'ok', output: { f: 'read', value } };
}

describe('the counter workload', () => {
  it('draws the same inputs from the same seed: small positive increments and reads', () => {
    const draw = (seed: number): CounterInput[] => {
      const random = new SeededPrng(seed);
      const generator = new CounterGenerator(() => random.nextFloat());
      return Array.from({ length: 200 }, (_, i) => generator.next(i % 5));
    };
    expect(draw(3)).toEqual(draw(3));
    expect(draw(3)).not.toEqual(draw(4));
    const inputs = draw(3);
    expect(inputs.some((i) => i.f === 'read')).toBe(true);
    for (const input of inputs) if (input.f === 'add') expect(input.delta >= 1 && input.delta <= counterDeltaMax).toBe(true);
  });

  it('maps to dkv.v1.Counter Increment and linearizable Get', () => {
    expect(toCounterCall({ f: 'add', key: 'c1', delta: 4 }, 'p/')).toEqual({ method: 'Increment', request: { key: new TextEncoder().encode('p/c1'), delta: 4, ttl_ms: 0 } });
    expect(toCounterCall({ f: 'read', key: 'c1' }, 'p/')).toEqual({ method: 'Get', request: { key: new TextEncoder().encode('p/c1'), serializable: false } });
    expect(fromCounterResponse({ f: 'add', key: 'c1', delta: 4 }, { value: 9 })).toEqual({ f: 'add', value: 9 });
    expect(fromCounterResponse({ f: 'read', key: 'c1' }, {})).toEqual({ f: 'read', value: 0 });
  });
});

describe('the counter model', () => {
  it('accepts concurrent increments in either order and reads of the value at some point', () => {
    const history = [add(0, 0, 50, 2, 5), add(1, 10, 40, 3, 3), read(2, 5, 60, 3), read(2, 70, 80, 5)];
    expect(checkLinearizability('counter', history).verdict).toBe('ok');
  });

  it('rejects a read that misses an increment completed before it began', () => {
    const result = checkLinearizability('counter', [add(0, 0, 10, 3, 3), read(1, 20, 30, 0)]);
    expect(result.verdict).toBe('violation');
  });

  it('rejects two increments that both saw the counter at 0 (a lost update)', () => {
    const result = checkLinearizability('counter', [add(0, 0, 50, 2, 2), add(1, 10, 40, 3, 3)]);
    expect(result.verdict).toBe('violation');
    expect(result.partitions[0]?.key).toBe('c0');
  });

  it('rejects an increment answered with a value no order of the increments gives', () => {
    expect(checkLinearizability('counter', [add(0, 0, 10, 2, 2), add(0, 20, 30, 3, 6)]).verdict).toBe('violation');
  });

  it('lets an increment of unknown outcome take effect, or not, at any point after its call', () => {
    expect(checkLinearizability('counter', [add(0, 0, undefined, 4), add(1, 10, 20, 1, 5), read(1, 30, 40, 5)]).verdict).toBe('ok');
    expect(checkLinearizability('counter', [add(0, 0, undefined, 4), add(1, 10, 20, 1, 1), read(1, 30, 40, 5)]).verdict).toBe('ok');
    // ...but not before it was called.
    expect(checkLinearizability('counter', [add(1, 0, 10, 1, 5), add(0, 20, undefined, 4)]).verdict).toBe('violation');
  });
});

// ---- A real run -------------------------------------------------------------------------------

const runSeconds = 12;
const seed = 12;
const out = mkdtempSync(join(tmpdir(), 'dkv-jepsen-counter-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe('dkv jepsen run --workload counter (real DKV cluster)', () => {
  it(`runs ${runSeconds} s of increments and reads under partitions and kills, and the history is linearizable`, async () => {
    const code = await jepsenRunCommand([
      '--target', 'dkv',
      '--nodes', '3',
      '--time', String(runSeconds),
      '--workload', 'counter',
      '--faults', 'partition,kill',
      '--clients', '4',
      '--seed', String(seed),
      '--out', out,
    ]);
    const { results } = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as {
      results: { verdict: string; linearizability: { verdict: string; model: string; partitions: Array<{ key: string }> }; stats: Record<string, number> };
    };
    expect(results.linearizability.verdict, JSON.stringify(results.linearizability)).toBe('ok');
    expect(results.linearizability.model).toBe('counter');
    expect(results.linearizability.partitions.map((p) => p.key).sort()).toEqual(['c0', 'c1']);
    expect(results.verdict).toBe('ok');
    expect(code).toBe(0);
    expect(results.stats.acknowledgedWritesChecked).toBeGreaterThan(100);
    expect(results.stats.acknowledgedWritesMissing).toBe(0);
    expect((results.stats['faults.partition'] ?? 0) + (results.stats['faults.kill'] ?? 0)).toBeGreaterThanOrEqual(1);
  });
});
