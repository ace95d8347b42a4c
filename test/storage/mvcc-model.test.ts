/**
 * Model test: random sequences of writes, transactions, compactions and reads run against
 * MvccStore and the simple reference model in mvcc-model.ts; every result, every error and the
 * HashKV must match after every step. One variant uses 4-key segments so splits and merges happen
 * all the time.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MvccError, MvccStore } from '../../storage/mvcc/index.js';
import type { ChangesRequest, Compare, DeleteRangeRequest, MvccEvent, PutRequest, RangeRequest, RequestOp, TxnRequest } from '../../storage/mvcc/index.js';
import { MvccModel, plain } from './mvcc-model.js';

const byteArb = fc.constantFrom(0x00, 0x61, 0x62, 0x63, 0xff);
const keyArb = fc.array(byteArb, { minLength: 1, maxLength: 2 }).map((b) => new Uint8Array(b));
const endArb = fc.oneof(
  fc.constant(undefined),
  fc.constant(new Uint8Array(0)),
  fc.constant(new Uint8Array([0])),
  keyArb,
  fc.array(byteArb, { minLength: 1, maxLength: 3 }).map((b) => new Uint8Array(b)),
);
const valueArb = fc.array(fc.constantFrom(0x00, 0x31, 0x32, 0x33), { maxLength: 3 }).map((b) => new Uint8Array(b));
const revisionArb = fc.integer({ min: -1, max: 60 });

/** Lease ids: mostly none or small, sometimes anywhere in the int64 range (exact past 2^53). */
const leaseArb = fc.oneof(
  { arbitrary: fc.constantFrom(0n, 0n, 1n, 7n), weight: 4 },
  { arbitrary: fc.constantFrom(2n ** 53n + 1n, 2n ** 63n - 1n, -(2n ** 63n), -1n), weight: 1 },
  { arbitrary: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), weight: 1 },
);

const putArb: fc.Arbitrary<PutRequest> = fc.record({
  key: keyArb,
  value: valueArb,
  lease: leaseArb,
  prevKv: fc.boolean(),
  ignoreValue: fc.constantFrom(false, false, false, false, false, true),
  ignoreLease: fc.constantFrom(false, false, false, false, false, true),
  keepProvided: fc.constantFrom(false, false, false, false, false, false, false, true),
})
  // Mostly valid ignore_* requests; now and then one that etcd rejects (value/lease provided).
  .map(({ keepProvided, ...p }) => ({
    ...p,
    value: p.ignoreValue && !keepProvided ? new Uint8Array(0) : p.value,
    lease: p.ignoreLease && !keepProvided ? 0n : p.lease,
  }));

const deleteArb: fc.Arbitrary<DeleteRangeRequest> = fc.record({ key: keyArb, rangeEnd: endArb, prevKv: fc.boolean() });

const rangeArb: fc.Arbitrary<RangeRequest> = fc.record(
  {
    key: keyArb,
    rangeEnd: endArb,
    revision: revisionArb,
    limit: fc.integer({ min: 0, max: 3 }),
    countOnly: fc.boolean(),
    keysOnly: fc.boolean(),
    sortOrder: fc.constantFrom('none', 'ascend', 'descend'),
    sortTarget: fc.constantFrom('key', 'version', 'create', 'mod', 'value'),
    minModRevision: fc.integer({ min: 0, max: 30 }),
    maxModRevision: fc.integer({ min: 0, max: 40 }),
    minCreateRevision: fc.integer({ min: 0, max: 30 }),
    maxCreateRevision: fc.integer({ min: 0, max: 40 }),
  },
  { requiredKeys: ['key'] },
);

const compareArb: fc.Arbitrary<Compare> = fc.oneof(
  fc.record({
    key: keyArb,
    rangeEnd: endArb,
    target: fc.constantFrom('version', 'create', 'mod') as fc.Arbitrary<Compare['target']>,
    result: fc.constantFrom('equal', 'greater', 'less', 'not-equal') as fc.Arbitrary<Compare['result']>,
    value: fc.integer({ min: 0, max: 20 }) as fc.Arbitrary<Compare['value']>,
  }),
  fc.record({
    key: keyArb,
    rangeEnd: endArb,
    target: fc.constant('lease') as fc.Arbitrary<Compare['target']>,
    result: fc.constantFrom('equal', 'greater', 'less', 'not-equal') as fc.Arbitrary<Compare['result']>,
    value: leaseArb as fc.Arbitrary<Compare['value']>,
  }),
  fc.record({
    key: keyArb,
    rangeEnd: endArb,
    target: fc.constant('value') as fc.Arbitrary<Compare['target']>,
    result: fc.constantFrom('equal', 'greater', 'less', 'not-equal') as fc.Arbitrary<Compare['result']>,
    value: valueArb as fc.Arbitrary<Compare['value']>,
  }),
);

const { txn: txnArb } = fc.letrec<{ txn: TxnRequest; op: RequestOp }>((tie) => ({
  txn: fc.record({
    compare: fc.array(compareArb, { maxLength: 2 }),
    success: fc.array(tie('op'), { maxLength: 3 }),
    failure: fc.array(tie('op'), { maxLength: 3 }),
  }),
  op: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    rangeArb.map((range) => ({ type: 'range', range }) as RequestOp),
    putArb.map((put) => ({ type: 'put', put }) as RequestOp),
    deleteArb.map((deleteRange) => ({ type: 'deleteRange', deleteRange }) as RequestOp),
    tie('txn').map((txn) => ({ type: 'txn', txn }) as RequestOp),
  ),
}));

type Step =
  | { kind: 'put'; put: PutRequest }
  | { kind: 'delete'; del: DeleteRangeRequest }
  | { kind: 'txn'; txn: TxnRequest }
  | { kind: 'compact'; back: number }
  | { kind: 'range'; range: RangeRequest }
  | { kind: 'changes'; from: number; to: number | undefined; key?: Uint8Array; rangeEnd?: Uint8Array; bytesMax: number }
  | { kind: 'hash'; back: number };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { arbitrary: putArb.map((put) => ({ kind: 'put', put }) as Step), weight: 12 },
  { arbitrary: deleteArb.map((del) => ({ kind: 'delete', del }) as Step), weight: 2 },
  { arbitrary: txnArb.map((txn) => ({ kind: 'txn', txn }) as Step), weight: 3 },
  { arbitrary: fc.integer({ min: -1, max: 8 }).map((back) => ({ kind: 'compact', back }) as Step), weight: 1 },
  { arbitrary: rangeArb.map((range) => ({ kind: 'range', range }) as Step), weight: 3 },
  {
    arbitrary: fc
      .record({
        from: fc.integer({ min: 0, max: 60 }),
        to: fc.option(fc.integer({ min: 0, max: 60 }), { nil: undefined }),
        key: fc.option(keyArb, { nil: undefined }),
        rangeEnd: endArb,
        bytesMax: fc.integer({ min: 1, max: 64 }),
      })
      .map((c) => ({ kind: 'changes', ...c }) as Step),
    weight: 2,
  },
  { arbitrary: fc.integer({ min: -1, max: 10 }).map((back) => ({ kind: 'hash', back }) as Step), weight: 1 },
);


/** `changes` read page by page with `changesPage` and a byte limit; checks each page's bounds. */
function pagedChanges(store: MvccStore, request: ChangesRequest, bytesMax: number): MvccEvent[] {
  const to = Math.min(request.toRevision ?? store.revision, store.revision);
  const events: MvccEvent[] = [];
  for (let from = request.fromRevision; ; ) {
    const page = store.changesPage({ ...request, fromRevision: from, bytesMax });
    for (const event of page.events) {
      expect(event.kv.modRevision).toBeGreaterThanOrEqual(from);
      expect(event.kv.modRevision).toBeLessThanOrEqual(page.throughRevision);
    }
    events.push(...page.events);
    if (page.throughRevision >= to) return events;
    // A cut page holds at least one revision and reached the limit.
    expect(page.throughRevision).toBeGreaterThanOrEqual(from);
    const bytes = page.events.reduce((n, e) => n + e.kv.key.length + e.kv.value.length + (e.prevKv === undefined ? 0 : e.prevKv.key.length + e.prevKv.value.length), 0);
    expect(bytes).toBeGreaterThanOrEqual(bytesMax);
    from = page.throughRevision + 1;
  }
}

function outcome(run: () => unknown): unknown {
  try {
    return { ok: plain(run()) };
  } catch (error) {
    if (error instanceof MvccError) return { error: error.code };
    throw error;
  }
}

function runSteps(steps: Step[], segmentKeysMax: number): void {
  const store = new MvccStore({ segmentKeysMax });
  const model = new MvccModel();
  for (const step of steps) {
    let actual: unknown;
    let expected: unknown;
    switch (step.kind) {
      case 'put':
        actual = outcome(() => store.put(step.put.key, step.put.value, step.put));
        expected = outcome(() => model.put(step.put));
        break;
      case 'delete':
        actual = outcome(() => store.deleteRange(step.del));
        expected = outcome(() => model.deleteRange(step.del));
        break;
      case 'txn':
        actual = outcome(() => store.txn(step.txn));
        expected = outcome(() => model.txn(step.txn));
        break;
      case 'compact': {
        const revision = store.revision - step.back;
        actual = outcome(() => store.compact(revision));
        expected = outcome(() => model.compact(revision));
        break;
      }
      case 'range':
        actual = outcome(() => store.range(step.range));
        expected = outcome(() => model.range(step.range));
        break;
      case 'changes': {
        const request = { fromRevision: step.from, toRevision: step.to, key: step.key, rangeEnd: step.rangeEnd };
        actual = outcome(() => store.changes(request));
        expected = outcome(() => model.changes(step.from, step.to, step.key, step.rangeEnd));
        // Paging with a byte limit returns the same events, cut only between revisions.
        expect(outcome(() => pagedChanges(store, request, step.bytesMax))).toEqual(actual);
        break;
      }
      case 'hash': {
        const revision = store.revision - step.back;
        actual = outcome(() => store.hashKV(revision).hash);
        expected = outcome(() => model.hashKV(revision));
        break;
      }
    }
    expect(actual, JSON.stringify(plain(step))).toEqual(expected);
    expect(store.revision).toBe(model.revision);
    expect(store.compactRevision).toBe(model.compactRevision);
    expect(store.keyCount).toBe(model.keyCount);
    expect(store.hashKV().hash).toBe(model.hashKV());
  }
  store.checkInvariants();
}

describe('MvccStore against the reference model', () => {
  it('matches with default segments', () => {
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 10, maxLength: 50, size: 'max' }), (steps) => runSteps(steps, 512)),
      { numRuns: 150 },
    );
  });

  it('matches with 4-key segments (constant splits and merges)', () => {
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 20, maxLength: 80, size: 'max' }), (steps) => runSteps(steps, 4)),
      { numRuns: 200 },
    );
  });
});

describe('MvccStore: a sort by another target than the key, with order none and a limit', () => {
  it('sorts every key of the range before the limit (ascending, as etcd), not the first limit + 1', () => {
    const store = new MvccStore();
    for (const key of ['c', 'a', 'b']) store.put(Buffer.from(key), Buffer.from('v'));
    const r = store.range({ key: Buffer.from('a'), rangeEnd: Uint8Array.of(0), limit: 1, sortTarget: 'mod' });
    expect(r.kvs.map((kv) => Buffer.from(kv.key).toString())).toEqual(['c']);
    expect([r.more, r.count]).toEqual([true, 3]);
  });
});
