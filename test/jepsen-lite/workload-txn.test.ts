/** The transactional workloads' generator and the checker's view of their Txns (`workload/txn.ts`). */
import { describe, expect, it } from 'vitest';
import type { KvInput, KvOutput, Operation } from '../../jepsen-lite/history.js';
import {
  Generator,
  TxnGenerator,
  appendsPerKeyMax,
  decodeList,
  elleTxnsOf,
  encodeList,
  txnMicroOpsMax,
  unreadableValue,
  type TxnInput,
} from '../../jepsen-lite/workload/index.js';

function seeded(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s / 2 ** 31;
  };
}

const get = (value: string | null, modRevision: number) => ({ f: 'get' as const, value, modRevision, createRevision: modRevision, version: modRevision > 0 ? 1 : 0 });

describe('TxnGenerator', () => {
  it.each(['list-append', 'rw-register'] as const)('%s: deterministic, 1..max micro-ops, at most one write per key, unique values', (model) => {
    const draw = (seed: number) => {
      const g = new TxnGenerator(model, seeded(seed));
      return Array.from({ length: 400 }, () => g.next());
    };
    expect(draw(1)).toEqual(draw(1));
    expect(draw(2)).not.toEqual(draw(1));
    const values = new Set<number>();
    for (const txn of draw(3)) {
      expect(txn.mops.length).toBeGreaterThanOrEqual(1);
      expect(txn.mops.length).toBeLessThanOrEqual(txnMicroOpsMax);
      const written = txn.mops.filter((m) => m.f !== 'r');
      expect(new Set(written.map((m) => m.key)).size).toBe(written.length);
      for (const m of written) {
        expect(m.f).toBe(model === 'list-append' ? 'append' : 'w');
        expect(values.has((m as { value: number }).value)).toBe(false);
        values.add((m as { value: number }).value);
      }
      // The success branch runs the micro-ops in order: a Range per read, a Put per write.
      expect(txn.success.map((r) => [r.f === 'get' ? 'r' : 'w', r.key])).toEqual(txn.mops.map((m) => [m.f === 'r' ? 'r' : 'w', m.key]));
    }
  });

  it('rw-register: no compare, no failure branch; the put value is the written number', () => {
    const g = new TxnGenerator('rw-register', seeded(4));
    for (let i = 0; i < 100; i++) {
      const txn = g.next();
      expect(txn.compare).toEqual([]);
      expect(txn.failure).toEqual([]);
      txn.success.forEach((r, j) => {
        if (r.f === 'put') expect(r.value).toBe(String((txn.mops[j] as { value: number }).value));
      });
    }
  });

  it('append: the put writes the list last seen plus the element, guarded by the mod revision seen; the failure branch reads every key', () => {
    const g = new TxnGenerator('list-append', seeded(5));
    let txn: TxnInput;
    do txn = g.next();
    while (!txn.mops.some((m) => m.f === 'append'));
    const append = txn.mops.find((m) => m.f === 'append')! as { key: string; value: number };
    expect(txn.compare).toContainEqual({ target: 'mod', key: append.key, value: 0 });
    expect(txn.success).toContainEqual({ f: 'put', key: append.key, value: String(append.value) });
    expect(txn.failure.map((r) => r.key).sort()).toEqual([...new Set(txn.mops.map((m) => m.key))].sort());
    // Learn that the key holds [7, 9] at mod revision 12 (a failed compare's reads).
    const learned: KvInput = { f: 'txn', compare: [], success: [], failure: [{ f: 'get', key: append.key }] };
    g.observe(learned, { f: 'txn', revision: 12, succeeded: false, results: [get('7 9', 12)] });
    for (let i = 0; i < 200; i++) {
      const next = g.next();
      const again = next.mops.find((m) => m.f === 'append' && m.key === append.key) as { value: number } | undefined;
      if (again === undefined) continue;
      expect(next.compare).toContainEqual({ target: 'mod', key: append.key, value: 12 });
      expect(next.success).toContainEqual({ f: 'put', key: append.key, value: `7 9 ${again.value}` });
      return;
    }
    throw new Error('the key was never appended to again');
  });

  it('retires a key after appendsPerKeyMax writes', () => {
    const g = new TxnGenerator('list-append', seeded(6), 1);
    const writes = new Map<string, number>();
    for (let i = 0; i < appendsPerKeyMax * 6; i++) for (const m of g.next().mops) if (m.f !== 'r') writes.set(m.key, (writes.get(m.key) ?? 0) + 1);
    expect(writes.size).toBeGreaterThan(2);
    for (const count of writes.values()) expect(count).toBeLessThanOrEqual(appendsPerKeyMax);
  });

  it('Generator runs append and rw-register through it', () => {
    const g = new Generator('append', seeded(7));
    const input = g.next(0) as TxnInput;
    expect(input.f).toBe('txn');
    expect(input.mops.length).toBeGreaterThan(0);
  });
});

describe('lists and elleTxnsOf', () => {
  it('encodes and decodes lists; anything else is refused', () => {
    expect(encodeList([3, 1, 2])).toBe('3 1 2');
    expect(decodeList('3 1 2')).toEqual([3, 1, 2]);
    expect(decodeList(null)).toEqual([]);
    expect(() => decodeList('1  2')).toThrow();
    expect(() => decodeList('x')).toThrow();
  });

  const input: TxnInput = {
    f: 'txn',
    compare: [{ target: 'mod', key: 'a', value: 4 }],
    success: [{ f: 'get', key: 'b' }, { f: 'put', key: 'a', value: '1 5' }, { f: 'get', key: 'a' }],
    failure: [{ f: 'get', key: 'b' }, { f: 'get', key: 'a' }],
    mops: [{ f: 'r', key: 'b' }, { f: 'append', key: 'a', value: 5 }, { f: 'r', key: 'a' }],
  };
  const op = (status: Operation['status'], output?: KvOutput): Operation => ({ id: 3, process: 1, call: 10, ...(status === 'info' ? {} : { ret: 12 }), status, input, ...(output === undefined ? {} : { output }) });

  it('a committed Txn: reads from its results, appends from its micro-ops, its revision', () => {
    const [txn] = elleTxnsOf('list-append', [op('ok', { f: 'txn', revision: 9, succeeded: true, results: [get('2', 6), { f: 'put', prevValue: '1' }, get('1 5', 9)] })]);
    expect(txn).toEqual({
      id: 3, process: 1, call: 10, ret: 12, status: 'ok', revision: 9,
      mops: [{ f: 'r', key: 'b', value: [2], modRevision: 6 }, { f: 'append', key: 'a', value: 5 }, { f: 'r', key: 'a', value: [1, 5], modRevision: 9 }],
    });
  });

  it('a failed compare is a committed read-only transaction; unknown and refused keep their micro-ops', () => {
    const [failed] = elleTxnsOf('list-append', [op('ok', { f: 'txn', revision: 8, succeeded: false, results: [get(null, 0), get('1 3', 8)] })]);
    expect(failed!.mops).toEqual([{ f: 'r', key: 'b', value: [], modRevision: 0 }, { f: 'r', key: 'a', value: [1, 3], modRevision: 8 }]);
    expect(elleTxnsOf('list-append', [op('info')])[0]).toMatchObject({ status: 'info', mops: input.mops });
    // A client that heard an error recorded when (real mode): no return for the checker, the write may apply later.
    expect(elleTxnsOf('list-append', [{ ...op('info'), ret: 11 }])[0]!.ret).toBeUndefined();
    expect(elleTxnsOf('list-append', [op('fail')])[0]).toMatchObject({ status: 'fail', mops: input.mops });
  });

  it('a value that is not a list reads as an element nobody appended', () => {
    const [txn] = elleTxnsOf('list-append', [op('ok', { f: 'txn', revision: 8, succeeded: false, results: [get('garbage', 3), get('1', 8)] })]);
    expect(txn!.mops[0]).toMatchObject({ value: [unreadableValue] });
  });
});
