/**
 * The Elle checker on hand-made histories: one per anomaly class, in both models where the class
 * exists, asserting the name, the transactions and the cycle's edges; and valid histories that
 * must check ok. Unless a test is about real time, every transaction runs in [0, 100] on a process
 * of its own, so no real-time or process edge exists.
 */
import { describe, expect, it } from 'vitest';
import { type ElleAnomalyName, type ElleMicroOp, type ElleModel, type ElleTxn, checkElle, elleExamplesPerAnomalyMax } from '../../jepsen-lite/check/index.js';

interface TxnOptions {
  readonly call?: number;
  readonly ret?: number | null;
  readonly status?: ElleTxn['status'];
  readonly revision?: number;
  readonly process?: number;
}

function txn(id: number, mops: ElleMicroOp[], options: TxnOptions = {}): ElleTxn {
  const status = options.status ?? 'ok';
  const ret = options.ret === null || (options.ret === undefined && status === 'info') ? undefined : (options.ret ?? 100);
  return {
    id,
    process: options.process ?? id,
    call: options.call ?? 0,
    ...(ret !== undefined ? { ret } : {}),
    status,
    mops,
    ...(options.revision !== undefined ? { revision: options.revision } : {}),
  };
}

const append = (key: string, value: number): ElleMicroOp => ({ f: 'append', key, value });
const write = (key: string, value: number): ElleMicroOp => ({ f: 'w', key, value });
const readList = (key: string, value: readonly number[]): ElleMicroOp => ({ f: 'r', key, value });
const readRegister = (key: string, value: number | null, modRevision?: number): ElleMicroOp => ({ f: 'r', key, value, ...(modRevision !== undefined ? { modRevision } : {}) });

function check(model: ElleModel, txns: ElleTxn[]) {
  return checkElle(model, txns);
}

/** The anomaly names found, each once, sorted. */
function names(result: ReturnType<typeof checkElle>): string[] {
  return Object.keys(result.counts).sort();
}

function only(result: ReturnType<typeof checkElle>, name: ElleAnomalyName) {
  const found = result.anomalies.filter((a) => a.name === name);
  expect(found, JSON.stringify(result.anomalies)).toHaveLength(1);
  return found[0]!;
}

describe('valid histories', () => {
  it('list-append: a chain of appends and reads, concurrent and then sequential, is ok', () => {
    const txns = [txn(1, [append('x', 1)]), txn(2, [readList('x', [1]), append('x', 2)]), txn(3, [readList('x', [1, 2]), readList('y', [])])];
    expect(check('list-append', txns).verdict).toBe('ok');
    const sequential = txns.map((t, i) => ({ ...t, call: i * 10, ret: i * 10 + 5 }));
    const result = check('list-append', sequential);
    expect(result.verdict).toBe('ok');
    expect(result.notSatisfied).toEqual([]);
    expect(result.stats).toMatchObject({ txns: 3, committed: 3, unknownIncluded: 0, sccs: 0 });
  });

  it('rw-register: writes in revision order, reads of them and of the initial state, is ok', () => {
    const txns = [
      txn(1, [readRegister('x', null, 0), write('x', 1)], { call: 0, ret: 5, revision: 2 }),
      txn(2, [readRegister('x', 1, 2), write('x', 2), readRegister('x', 2, 3)], { call: 10, ret: 15, revision: 3 }),
      txn(3, [readRegister('x', 2, 3), readRegister('y', null, 0)], { call: 20, ret: 25 }),
    ];
    const result = check('rw-register', txns);
    expect(result.anomalies).toEqual([]);
    expect(result.verdict).toBe('ok');
  });

  it('an unknown transaction a committed read saw joins the graph; an unseen one does not', () => {
    const txns = [txn(1, [append('x', 1)], { status: 'info' }), txn(2, [append('x', 2)], { status: 'info' }), txn(3, [readList('x', [1])], { call: 200, ret: 300 })];
    const result = check('list-append', txns);
    expect(result.verdict).toBe('ok');
    expect(result.stats.unknownIncluded).toBe(1);
  });

  it('an unknown transaction has no return: real time orders nothing after it', () => {
    const txns = [
      txn(1, [append('x', 1)], { status: 'info', call: 0 }),
      txn(2, [readList('x', [])], { call: 50, ret: 60 }),
      txn(3, [readList('x', [1])], { call: 70, ret: 80 }),
    ];
    const result = check('list-append', txns);
    expect(result.verdict).toBe('ok');
    expect(result.stats.unknownIncluded).toBe(1);
  });

  it('an unknown transaction whose client heard an error still has no return: it may apply later', () => {
    // Real mode records when the client heard the error as `ret`; the write may apply after it.
    const txns = [
      txn(1, [append('x', 1)], { call: 0, ret: 5 }),
      txn(2, [append('x', 2)], { status: 'info', call: 6, ret: 10, process: 7 }),
      txn(3, [readList('x', [1])], { call: 20, ret: 22, process: 7 }),
      txn(4, [readList('x', [1, 2])], { call: 40, ret: 45 }),
    ];
    const result = check('list-append', txns);
    expect(result.verdict, JSON.stringify(result.anomalies)).toBe('ok');
    expect(result.stats.unknownIncluded).toBe(1);
  });

  it('a failed transaction nobody read changes nothing', () => {
    const txns = [txn(1, [append('x', 1)], { status: 'fail' }), txn(2, [readList('x', [])])];
    expect(check('list-append', txns).verdict).toBe('ok');
  });
});

describe('cycles', () => {
  it('G0 (list-append): two transactions whose appends interleave on two keys', () => {
    const txns = [txn(1, [append('x', 1), append('y', 2)]), txn(2, [append('x', 3), append('y', 4)]), txn(3, [readList('x', [1, 3]), readList('y', [4, 2])])];
    const result = check('list-append', txns);
    expect(names(result)).toEqual(['G0']);
    const g0 = only(result, 'G0');
    expect(g0.opIds).toEqual([1, 2]);
    expect(g0.cycle).toEqual([
      { from: 1, to: 2, type: 'ww', key: 'x', value: 3 },
      { from: 2, to: 1, type: 'ww', key: 'y', value: 2 },
    ]);
    expect(g0.explanation).toBe('T1 appended 1 to x before T2 appended 3 (ww), T2 appended 4 to y before T1 appended 2 (ww): a cycle, so no serial order exists');
    expect(result.notSatisfied).toEqual(['read-uncommitted', 'read-committed', 'snapshot-isolation', 'repeatable-read', 'serializable', 'strict-serializable']);
  });

  it('G0 (rw-register, no revisions): read-then-write orders each key one way', () => {
    const txns = [txn(1, [readRegister('y', 4), write('y', 2), write('x', 1)]), txn(2, [readRegister('x', 1), write('x', 3), write('y', 4)])];
    const result = check('rw-register', txns);
    expect(names(result)).toEqual(['G0', 'G1c']);
    expect(only(result, 'G0').cycle).toEqual([
      { from: 1, to: 2, type: 'ww', key: 'x', value: 3 },
      { from: 2, to: 1, type: 'ww', key: 'y', value: 2 },
    ]);
  });

  it.each<ElleModel>(['list-append', 'rw-register'])('G1c (%s): each reads the other\'s write', (model) => {
    const txns =
      model === 'list-append'
        ? [txn(1, [append('x', 1), readList('y', [2])]), txn(2, [append('y', 2), readList('x', [1])])]
        : [txn(1, [write('x', 1), readRegister('y', 2, 3)], { revision: 2 }), txn(2, [write('y', 2), readRegister('x', 1, 2)], { revision: 3 })];
    const result = check(model, txns);
    expect(names(result)).toEqual(['G1c']);
    const g1c = only(result, 'G1c');
    expect(g1c.opIds).toEqual([1, 2]);
    expect(g1c.cycle).toEqual([
      { from: 1, to: 2, type: 'wr', key: 'x', value: 1 },
      { from: 2, to: 1, type: 'wr', key: 'y', value: 2 },
    ]);
    expect(result.notSatisfied).not.toContain('read-uncommitted');
    expect(result.notSatisfied).toContain('read-committed');
  });

  it.each<ElleModel>(['list-append', 'rw-register'])('G-single (%s): a read skew', (model) => {
    const txns =
      model === 'list-append'
        ? [txn(1, [append('x', 1), append('y', 1)]), txn(2, [readList('x', []), readList('y', [1])])]
        : [txn(1, [write('x', 1), write('y', 1)], { revision: 2 }), txn(2, [readRegister('x', null, 0), readRegister('y', 1, 2)])];
    const result = check(model, txns);
    expect(names(result)).toEqual(['G-single']);
    const single = only(result, 'G-single');
    expect(single.opIds).toEqual([1, 2]);
    expect(single.cycle).toEqual([
      { from: 1, to: 2, type: 'wr', key: 'y', value: 1 },
      { from: 2, to: 1, type: 'rw', key: 'x', value: 1 },
    ]);
    expect(result.notSatisfied).toEqual(['snapshot-isolation', 'repeatable-read', 'serializable', 'strict-serializable']);
  });

  it.each<ElleModel>(['list-append', 'rw-register'])('G2 (%s): a write skew', (model) => {
    const txns =
      model === 'list-append'
        ? [txn(1, [readList('x', []), append('y', 1)]), txn(2, [readList('y', []), append('x', 1)])]
        : [txn(1, [readRegister('x', null, 0), write('y', 1)], { revision: 2 }), txn(2, [readRegister('y', null, 0), write('x', 1)], { revision: 3 })];
    const result = check(model, txns);
    expect(names(result)).toEqual(['G2']);
    const g2 = only(result, 'G2');
    expect(g2.cycle).toEqual([
      { from: 1, to: 2, type: 'rw', key: 'x', value: 1 },
      { from: 2, to: 1, type: 'rw', key: 'y', value: 1 },
    ]);
    expect(result.notSatisfied).toEqual(['repeatable-read', 'serializable', 'strict-serializable']);
  });

  it.each<ElleModel>(['list-append', 'rw-register'])('lost-update (%s): two read the same version and both write', (model) => {
    const txns =
      model === 'list-append'
        ? [txn(1, [append('x', 1)]), txn(2, [readList('x', [1]), append('x', 2)]), txn(3, [readList('x', [1]), append('x', 3)]), txn(4, [readList('x', [1, 2, 3])])]
        : [txn(1, [write('x', 1)], { revision: 2 }), txn(2, [readRegister('x', 1, 2), write('x', 2)], { revision: 3 }), txn(3, [readRegister('x', 1, 2), write('x', 3)], { revision: 4 })];
    const result = check(model, txns);
    expect(names(result)).toEqual(['G-single', 'lost-update']);
    expect(only(result, 'lost-update').opIds).toEqual([2, 3]);
    expect(only(result, 'G-single').cycle).toEqual([
      { from: 2, to: 3, type: 'ww', key: 'x', value: 3 },
      { from: 3, to: 2, type: 'rw', key: 'x', value: 2 },
    ]);
  });
});

describe('cycles that need real time', () => {
  it.each<ElleModel>(['list-append', 'rw-register'])('G-single-realtime (%s): a stale read', (model) => {
    const txns =
      model === 'list-append'
        ? [txn(1, [append('x', 1)], { call: 0, ret: 10 }), txn(2, [readList('x', [])], { call: 20, ret: 30 })]
        : [txn(1, [write('x', 1)], { call: 0, ret: 10, revision: 2 }), txn(2, [readRegister('x', null, 0)], { call: 20, ret: 30 })];
    const result = check(model, txns);
    expect(names(result)).toEqual(['G-single-realtime']);
    const stale = only(result, 'G-single-realtime');
    expect(stale.cycle).toEqual([
      { from: 1, to: 2, type: 'realtime' },
      { from: 2, to: 1, type: 'rw', key: 'x', value: 1 },
    ]);
    const missed = model === 'list-append' ? 'append of 1 to x' : 'write of x=1';
    expect(stale.explanation).toBe(`T1 completed before T2 began, yet T2 read x without T1's ${missed}: a stale read`);
    expect(result.notSatisfied).toEqual(['strict-serializable']);
    // Without real time the same history is serializable.
    expect(checkElle(model, txns, { realtime: false, processOrder: false }).verdict).toBe('ok');
  });

  it('process order alone also orders a client\'s transactions', () => {
    const txns = [txn(1, [append('x', 1)], { call: 0, ret: 10, process: 7 }), txn(2, [readList('x', [])], { call: 10, ret: 30, process: 7 })];
    const result = check('list-append', txns);
    expect(only(result, 'G-single-realtime').cycle).toEqual([
      { from: 1, to: 2, type: 'process' },
      { from: 2, to: 1, type: 'rw', key: 'x', value: 1 },
    ]);
  });

  it.each<ElleModel>(['list-append', 'rw-register'])('G1c-realtime (%s): a read of a write not yet begun', (model) => {
    const txns =
      model === 'list-append'
        ? [txn(1, [readList('x', [1])], { call: 0, ret: 10 }), txn(2, [append('x', 1)], { call: 20, ret: 30 })]
        : [txn(1, [readRegister('x', 1, 2)], { call: 0, ret: 10 }), txn(2, [write('x', 1)], { call: 20, ret: 30, revision: 2 })];
    const result = check(model, txns);
    expect(names(result)).toEqual(['G1c-realtime']);
    expect(only(result, 'G1c-realtime').cycle).toEqual([
      { from: 1, to: 2, type: 'realtime' },
      { from: 2, to: 1, type: 'wr', key: 'x', value: 1 },
    ]);
  });

  it('G0-realtime: writes ordered against real time', () => {
    const txns = [
      txn(1, [append('x', 1), append('y', 2)], { call: 0, ret: 30 }),
      txn(2, [append('x', 2)], { call: 0, ret: 10 }),
      txn(3, [append('y', 1)], { call: 20, ret: 30 }),
      txn(4, [readList('x', [1, 2]), readList('y', [1, 2])], { call: 0, ret: 40 }),
    ];
    const result = check('list-append', txns);
    expect(names(result)).toEqual(['G0-realtime']);
    expect(only(result, 'G0-realtime').cycle).toEqual([
      { from: 1, to: 2, type: 'ww', key: 'x', value: 2 },
      { from: 2, to: 3, type: 'realtime' },
      { from: 3, to: 1, type: 'ww', key: 'y', value: 2 },
    ]);
  });

  it.each<ElleModel>(['list-append', 'rw-register'])('G2-realtime (%s): two missed writes and real time', (model) => {
    const txns =
      model === 'list-append'
        ? [txn(1, [readList('x', []), append('y', 1)], { call: 0, ret: 30 }), txn(2, [append('x', 1)], { call: 0, ret: 10 }), txn(3, [readList('y', [])], { call: 20, ret: 30 })]
        : [
            txn(1, [readRegister('x', null, 0), write('y', 1)], { call: 0, ret: 30, revision: 3 }),
            txn(2, [write('x', 1)], { call: 0, ret: 10, revision: 2 }),
            txn(3, [readRegister('y', null, 0)], { call: 20, ret: 30 }),
          ];
    const result = check(model, txns);
    expect(names(result)).toEqual(['G2-realtime']);
    expect(only(result, 'G2-realtime').cycle).toEqual([
      { from: 1, to: 2, type: 'rw', key: 'x', value: 1 },
      { from: 2, to: 3, type: 'realtime' },
      { from: 3, to: 1, type: 'rw', key: 'y', value: 1 },
    ]);
  });
});

describe('anomalies a read shows directly', () => {
  it.each<ElleModel>(['list-append', 'rw-register'])('G1a (%s): a read of a failed write', (model) => {
    const txns =
      model === 'list-append'
        ? [txn(1, [append('x', 1)], { status: 'fail' }), txn(2, [readList('x', [1])])]
        : [txn(1, [write('x', 1)], { status: 'fail' }), txn(2, [readRegister('x', 1)])];
    const result = check(model, txns);
    expect(names(result)).toEqual(['G1a']);
    expect(only(result, 'G1a').opIds).toEqual([2, 1]);
    expect(result.notSatisfied).toEqual(['read-committed', 'snapshot-isolation', 'repeatable-read', 'serializable', 'strict-serializable']);
  });

  it.each<ElleModel>(['list-append', 'rw-register'])('G1b (%s): a read of an intermediate write', (model) => {
    const txns =
      model === 'list-append'
        ? [txn(1, [append('x', 1), append('x', 2)]), txn(2, [readList('x', [1])])]
        : [txn(1, [write('x', 1), write('x', 2)], { revision: 2 }), txn(2, [readRegister('x', 1, 2)])];
    const result = check(model, txns);
    // In list-append T2 also missed T1's second append, which T1 made after the one T2 saw: a
    // read skew within one transaction's writes, so G-single as well.
    expect(names(result)).toEqual(model === 'list-append' ? ['G-single', 'G1b'] : ['G1b']);
    expect(only(result, 'G1b').opIds).toEqual([2, 1]);
  });

  it('incompatible-order: two reads that are not prefixes of one another', () => {
    const txns = [txn(1, [append('x', 1)]), txn(2, [append('x', 2)]), txn(3, [readList('x', [1, 2])]), txn(4, [readList('x', [2])])];
    const result = check('list-append', txns);
    expect(names(result)).toEqual(['incompatible-order']);
    expect(only(result, 'incompatible-order').opIds).toEqual([4, 3]);
  });

  it('duplicate-elements: an element twice in one read', () => {
    const result = check('list-append', [txn(1, [append('x', 1)]), txn(2, [readList('x', [1, 1])])]);
    expect(names(result)).toEqual(['duplicate-elements']);
    expect(only(result, 'duplicate-elements').opIds).toEqual([2]);
  });

  it.each<ElleModel>(['list-append', 'rw-register'])('garbage-read (%s): a value nobody wrote', (model) => {
    const txns = model === 'list-append' ? [txn(1, [readList('x', [9])])] : [txn(1, [readRegister('x', 9)])];
    const result = check(model, txns);
    expect(names(result)).toEqual(['garbage-read']);
    expect(only(result, 'garbage-read').opIds).toEqual([1]);
  });

  it.each<ElleModel>(['list-append', 'rw-register'])('internal (%s): a transaction that does not see its own write', (model) => {
    const txns = model === 'list-append' ? [txn(1, [append('x', 1), readList('x', [])])] : [txn(1, [write('x', 1), readRegister('x', null)])];
    const result = check(model, txns);
    expect(names(result)).toEqual(['internal']);
    expect(only(result, 'internal').opIds).toEqual([1]);
  });

  it.each<ElleModel>(['list-append', 'rw-register'])('internal (%s): a read of the transaction\'s own later write', (model) => {
    const txns = model === 'list-append' ? [txn(1, [readList('x', [1]), append('x', 1)])] : [txn(1, [readRegister('x', 1), write('x', 1)])];
    const result = check(model, txns);
    expect(names(result)).toEqual(['internal']);
    expect(only(result, 'internal').explanation).toContain('only later');
  });

  it('internal (list-append): two reads disagreeing with the appends between them', () => {
    const txns = [txn(1, [append('x', 5)]), txn(2, [readList('x', [5]), append('x', 6), readList('x', [5])])];
    expect(names(check('list-append', txns))).toContain('internal');
  });

  it('revision-mismatch: a read whose mod revision is not its writer\'s revision', () => {
    const txns = [txn(1, [write('x', 1)], { revision: 5 }), txn(2, [readRegister('x', 1, 6)]), txn(3, [readRegister('y', null, 4)])];
    const result = check('rw-register', txns);
    expect(names(result)).toEqual(['revision-mismatch']);
    expect(result.anomalies.map((a) => a.opIds)).toEqual([[3], [2, 1]]);
    expect(result.notSatisfied).toEqual(['serializable', 'strict-serializable']);
  });
});

describe('limits and input', () => {
  it('counts every anomaly and keeps at most elleExamplesPerAnomalyMax examples', () => {
    const txns = [txn(1, [append('x', 1)], { status: 'fail' })];
    for (let i = 2; i < 22; i++) txns.push(txn(i, [readList('x', [1])]));
    const result = check('list-append', txns);
    expect(result.counts.G1a).toBe(20);
    expect(result.anomalies).toHaveLength(elleExamplesPerAnomalyMax);
  });

  it('a 20,000-transaction G0 ring is one component, found and explained briefly', () => {
    const ring = 20_000;
    const txns: ElleTxn[] = [];
    const reads: ElleMicroOp[] = [];
    // T(i) appends to key i first and to key i-1 second: key i orders T(i) before T(i+1).
    for (let i = 0; i < ring; i++) {
      txns.push(txn(i + 1, [append(`k${i}`, 1), append(`k${(i + ring - 1) % ring}`, 2)]));
      reads.push(readList(`k${i}`, [1, 2]));
    }
    txns.push(txn(ring + 1, reads));
    const result = check('list-append', txns);
    expect(names(result)).toEqual(['G0']);
    expect(result.stats.largestScc).toBe(ring);
    const g0 = only(result, 'G0');
    expect(g0.cycle).toHaveLength(ring);
    expect(g0.explanation.length).toBeLessThan(500);
  });

  it('malformed input throws a TypeError', () => {
    expect(() => check('list-append', [txn(1, [append('x', 1)]), txn(2, [append('x', 1)])])).toThrow(TypeError);
    expect(() => check('list-append', [txn(1, [write('x', 1)])])).toThrow(TypeError);
    expect(() => check('rw-register', [txn(1, [readList('x', [1])])])).toThrow(TypeError);
    expect(() => check('list-append', [txn(1, []), txn(1, [])])).toThrow(TypeError);
    expect(() => check('list-append', [{ id: 1, process: 0, call: 0, status: 'ok', mops: [] }])).toThrow(TypeError);
  });
});
