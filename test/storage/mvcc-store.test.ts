/** One test per etcd 3.5 rule the store implements. */
import { describe, expect, it } from 'vitest';
import { MvccError, mvccErrorMessages, MvccStore } from '../../storage/mvcc/index.js';
import type { KeyValue, RequestOp } from '../../storage/mvcc/index.js';

const enc = (text: string) => new TextEncoder().encode(text);
const dec = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const keys = (kvs: KeyValue[]) => kvs.map((kv) => dec(kv.key));
const ZERO = new Uint8Array([0]);

function errorCode(run: () => unknown): string | undefined {
  try {
    run();
  } catch (error) {
    if (error instanceof MvccError) return error.code;
    throw error;
  }
  return undefined;
}

function abc(): MvccStore {
  const store = new MvccStore();
  store.put(enc('a'), enc('3')); // rev 2
  store.put(enc('b'), enc('1')); // rev 3
  store.put(enc('c'), enc('2')); // rev 4
  store.put(enc('a'), enc('4')); // rev 5: a version 2
  return store;
}

const put = (key: string, value = 'v'): RequestOp => ({ type: 'put', put: { key: enc(key), value: enc(value) } });
const del = (key: string, rangeEnd?: string | Uint8Array): RequestOp => ({
  type: 'deleteRange',
  deleteRange: { key: enc(key), rangeEnd: typeof rangeEnd === 'string' ? enc(rangeEnd) : rangeEnd },
});

describe('revisions and generations', () => {
  it('starts at revision 1, empty', () => {
    const store = new MvccStore();
    expect(store.revision).toBe(1);
    expect(store.keyCount).toBe(0);
    expect(store.range({ key: enc('a') })).toEqual({ kvs: [], more: false, count: 0, revision: 1 });
  });

  it('tracks create/mod revision and version; a delete ends the generation', () => {
    const store = abc();
    const a = store.range({ key: enc('a') }).kvs[0]!;
    expect([a.createRevision, a.modRevision, a.version, dec(a.value)]).toEqual([2, 5, 2, '4']);
    const deleted = store.deleteRange({ key: enc('a'), prevKv: true });
    expect(deleted.revision).toBe(6);
    expect(deleted.deleted).toBe(1);
    expect(dec(deleted.prevKvs![0]!.value)).toBe('4');
    expect(deleted.events[0]!.type).toBe('delete');
    expect(deleted.events[0]!.kv.modRevision).toBe(6);
    store.put(enc('a'), enc('new'));
    const again = store.range({ key: enc('a') }).kvs[0]!;
    expect([again.createRevision, again.modRevision, again.version]).toEqual([7, 7, 1]);
  });

  it('a delete of nothing takes no revision', () => {
    const store = abc();
    expect(store.deleteRange({ key: enc('zzz') })).toMatchObject({ revision: 5, deleted: 0, events: [] });
    expect(store.revision).toBe(5);
  });

  it('put returns prevKv and events with prevKv', () => {
    const store = abc();
    const result = store.put(enc('b'), enc('x'), { prevKv: true, lease: 9n });
    expect(dec(result.prevKv!.value)).toBe('1');
    expect(result.events).toHaveLength(1);
    expect(result.events[0]!.prevKv!.modRevision).toBe(3);
    expect(result.events[0]!.kv.lease).toBe(9n);
  });

  it('ignoreValue / ignoreLease keep the old value / lease and need the key', () => {
    const store = abc();
    store.put(enc('b'), enc('x'), { lease: 7n });
    store.put(enc('b'), new Uint8Array(0), { ignoreValue: true, lease: 8n });
    expect(store.range({ key: enc('b') }).kvs[0]).toMatchObject({ value: enc('x'), lease: 8n });
    store.put(enc('b'), enc('y'), { ignoreLease: true });
    expect(store.range({ key: enc('b') }).kvs[0]).toMatchObject({ value: enc('y'), lease: 8n });
    expect(errorCode(() => store.put(enc('nope'), new Uint8Array(0), { ignoreValue: true }))).toBe('key-not-found');
    expect(errorCode(() => store.put(enc('b'), enc('v'), { ignoreValue: true }))).toBe('value-provided');
    expect(errorCode(() => store.put(enc('b'), enc('v'), { ignoreLease: true, lease: 1n }))).toBe('lease-provided');
    expect(errorCode(() => store.put(new Uint8Array(0), enc('v')))).toBe('empty-key');
  });

  it('uses etcd exact error strings', () => {
    const store = abc();
    try {
      store.range({ key: enc('a'), revision: 99 });
      expect.unreachable();
    } catch (error) {
      expect((error as MvccError).message).toBe('mvcc: required revision is a future revision');
    }
    expect(mvccErrorMessages.compacted).toBe('mvcc: required revision has been compacted');
    expect(mvccErrorMessages['duplicate-key']).toBe('etcdserver: duplicate key given in txn request');
  });
});

describe('range', () => {
  it('single key, [key, end), key..end-of-keyspace and all keys', () => {
    const store = abc();
    store.put(ZERO, enc('zero'));
    expect(keys(store.range({ key: enc('b') }).kvs)).toEqual(['b']);
    expect(keys(store.range({ key: enc('a'), rangeEnd: enc('c') }).kvs)).toEqual(['a', 'b']);
    expect(keys(store.range({ key: enc('b'), rangeEnd: ZERO }).kvs)).toEqual(['b', 'c']);
    expect(store.range({ key: ZERO, rangeEnd: ZERO }).count).toBe(4);
    expect(store.range({ key: enc('c'), rangeEnd: enc('a') }).count).toBe(0);
    expect(keys(store.range({ key: enc('a'), rangeEnd: new Uint8Array(0) }).kvs)).toEqual(['a']);
  });

  it('reads past revisions; future and compacted revisions fail', () => {
    const store = abc();
    expect(dec(store.range({ key: enc('a'), revision: 4 }).kvs[0]!.value)).toBe('3');
    expect(store.range({ key: enc('c'), revision: 3 }).count).toBe(0);
    expect(store.range({ key: enc('a'), revision: 4 }).revision).toBe(5);
    expect(errorCode(() => store.range({ key: enc('a'), revision: 6 }))).toBe('future-revision');
    store.compact(4);
    expect(errorCode(() => store.range({ key: enc('a'), revision: 3 }))).toBe('compacted');
    expect(store.range({ key: enc('a'), revision: 4 }).count).toBe(1);
    expect(store.range({ key: enc('a'), revision: -1 }).count).toBe(1);
  });

  it('count is before filters and limit; more follows the limit', () => {
    const store = abc();
    const all = { key: enc('a'), rangeEnd: enc('z') };
    expect(store.range({ ...all, limit: 2 })).toMatchObject({ count: 3, more: true });
    expect(keys(store.range({ ...all, limit: 2 }).kvs)).toEqual(['a', 'b']);
    expect(store.range({ ...all, limit: 3 }).more).toBe(false);
    const filtered = store.range({ ...all, minModRevision: 4 });
    expect(keys(filtered.kvs)).toEqual(['a', 'c']);
    expect(filtered.count).toBe(3);
    expect(store.range({ ...all, minModRevision: 4, limit: 1 })).toMatchObject({ count: 3, more: true });
    expect(keys(store.range({ ...all, maxCreateRevision: 3 }).kvs)).toEqual(['a', 'b']);
    expect(keys(store.range({ ...all, minCreateRevision: 3, maxModRevision: 3 }).kvs)).toEqual(['b']);
    expect(store.range({ ...all, countOnly: true })).toEqual({ kvs: [], more: false, count: 3, revision: 5 });
    expect(store.range({ ...all, keysOnly: true }).kvs.every((kv) => kv.value.length === 0)).toBe(true);
  });

  it('sorts like etcd', () => {
    const store = abc();
    const all = { key: enc('a'), rangeEnd: enc('z') };
    expect(keys(store.range({ ...all, sortTarget: 'value' }).kvs)).toEqual(['b', 'c', 'a']); // none → ascend
    expect(keys(store.range({ ...all, sortTarget: 'value', sortOrder: 'descend' }).kvs)).toEqual(['a', 'c', 'b']);
    expect(keys(store.range({ ...all, sortOrder: 'descend' }).kvs)).toEqual(['c', 'b', 'a']);
    expect(keys(store.range({ ...all, sortOrder: 'ascend' }).kvs)).toEqual(['a', 'b', 'c']);
    expect(keys(store.range({ ...all, sortTarget: 'mod', sortOrder: 'descend' }).kvs)).toEqual(['a', 'c', 'b']);
    expect(keys(store.range({ ...all, sortTarget: 'create' }).kvs)).toEqual(['a', 'b', 'c']);
    expect(keys(store.range({ ...all, sortTarget: 'version', sortOrder: 'descend' }).kvs)).toEqual(['a', 'b', 'c']);
    // Sort happens before the limit cut.
    expect(keys(store.range({ ...all, sortTarget: 'value', limit: 1 }).kvs)).toEqual(['b']);
  });
});

describe('txn', () => {
  it('compares on missing keys: zero for revisions, false for values', () => {
    const store = abc();
    const t = (compare: Parameters<MvccStore['txn']>[0]['compare'][number]) => store.txn({ compare: [compare], success: [], failure: [] }).succeeded;
    expect(t({ key: enc('zz'), target: 'version', result: 'equal', value: 0 })).toBe(true);
    expect(t({ key: enc('zz'), target: 'create', result: 'equal', value: 0 })).toBe(true);
    expect(t({ key: enc('zz'), target: 'value', result: 'equal', value: new Uint8Array(0) })).toBe(false);
    expect(t({ key: enc('zz'), target: 'value', result: 'not-equal', value: enc('x') })).toBe(false);
    expect(t({ key: enc('a'), target: 'value', result: 'greater', value: enc('3') })).toBe(true);
    expect(t({ key: enc('a'), target: 'mod', result: 'less', value: 6 })).toBe(true);
  });

  it('a range compare must hold for every key in the range', () => {
    const store = abc();
    const t = (value: number) =>
      store.txn({ compare: [{ key: enc('a'), rangeEnd: enc('z'), target: 'create', result: 'greater', value }], success: [], failure: [] }).succeeded;
    expect(t(1)).toBe(true);
    expect(t(2)).toBe(false);
  });

  it('takes one revision with sub-revisions; later ops see earlier writes', () => {
    const store = abc();
    const result = store.txn({
      compare: [{ key: enc('a'), target: 'version', result: 'equal', value: 2 }],
      success: [put('x', '1'), { type: 'range', range: { key: enc('x') } }, del('b'), put('y', '2')],
      failure: [],
    });
    expect(result.succeeded).toBe(true);
    expect(result.revision).toBe(6);
    expect(result.events.map((e) => [e.type, dec(e.kv.key), e.kv.modRevision])).toEqual([
      ['put', 'x', 6],
      ['delete', 'b', 6],
      ['put', 'y', 6],
    ]);
    const read = result.responses[1]!;
    expect(read.type === 'range' && read.range.count === 1 && read.range.revision === 6).toBe(true);
    expect(store.changes({ fromRevision: 6 }).map((e) => dec(e.kv.key))).toEqual(['x', 'b', 'y']);
  });

  it('a read-only or failing no-op txn takes no revision', () => {
    const store = abc();
    const result = store.txn({ compare: [{ key: enc('a'), target: 'version', result: 'equal', value: 9 }], success: [put('q')], failure: [{ type: 'range', range: { key: enc('a') } }] });
    expect(result.succeeded).toBe(false);
    expect(result.revision).toBe(5);
    expect(store.revision).toBe(5);
  });

  it('nested txns: compares see the state before the outer txn', () => {
    const store = abc();
    const result = store.txn({
      compare: [],
      success: [
        put('n', '1'),
        { type: 'txn', txn: { compare: [{ key: enc('n'), target: 'version', result: 'equal', value: 0 }], success: [put('m', 'ok')], failure: [] } },
      ],
      failure: [],
    });
    const nested = result.responses[1]!;
    expect(nested.type === 'txn' && nested.txn.succeeded).toBe(true);
    expect(store.range({ key: enc('m') }).count).toBe(1);
  });

  it('refuses duplicate keys like etcd checkIntervals', () => {
    const store = abc();
    const txn = (success: RequestOp[]) => errorCode(() => store.txn({ compare: [], success, failure: [] }));
    expect(txn([put('a'), put('a')])).toBe('duplicate-key');
    expect(txn([put('b'), del('a', 'c')])).toBe('duplicate-key');
    expect(txn([del('a', 'c'), del('b')])).toBeUndefined(); // delete/delete may overlap
    expect(txn([put('a'), { type: 'txn', txn: { compare: [], success: [put('a')], failure: [] } }])).toBe('duplicate-key');
    expect(txn([{ type: 'txn', txn: { compare: [], success: [put('k')], failure: [put('k')] } }])).toBeUndefined();
    expect(txn([del('a', 'c'), { type: 'txn', txn: { compare: [], success: [put('b')], failure: [] } }])).toBe('duplicate-key');
    expect(txn([put('zz'), del('a', ZERO)])).toBeUndefined(); // etcd's raw "\0" interval overlaps nothing
    expect(store.revision).toBe(8); // three of the txns above ran
  });

  it('refuses a key put twice in a branch of puts and ranges alone, in order or not', () => {
    const store = abc();
    const start = store.revision;
    const txn = (success: RequestOp[], failure: RequestOp[] = []) => errorCode(() => store.txn({ compare: [], success, failure }));
    const range: RequestOp = { type: 'range', range: { key: enc('a') } };
    expect(txn([put('b'), put('c'), range, put('d')])).toBeUndefined();
    expect(txn([put('d'), put('b'), put('c')])).toBeUndefined();
    expect(txn([put('b'), put('c'), range, put('b')])).toBe('duplicate-key');
    expect(txn([put('d'), put('b'), put('c'), put('b')])).toBe('duplicate-key');
    expect(txn([put('x')], [put('y'), put('x'), put('y')])).toBe('duplicate-key'); // the other branch too
    expect(store.revision).toBe(start + 2); // two of the txns above ran
  });

  it('refuses more than 128 operations per branch, nested budgets shrink', () => {
    const store = new MvccStore();
    const many = (n: number) => Array.from({ length: n }, (_, i) => put(`k${i}`));
    expect(errorCode(() => store.txn({ compare: [], success: many(129), failure: [] }))).toBe('too-many-operations');
    expect(errorCode(() => store.txn({ compare: [], success: many(128), failure: [] }))).toBeUndefined();
    const nested: RequestOp = { type: 'txn', txn: { compare: [], success: many(100), failure: [] } };
    expect(errorCode(() => store.txn({ compare: [], success: [nested, ...many(40).map((op, i) => put(`z${i}`))], failure: [] }))).toBe(
      'too-many-operations',
    );
  });

  it('checks ignore_value and range revisions before running anything', () => {
    const store = abc();
    const bad = { type: 'put', put: { key: enc('nope'), value: new Uint8Array(0), ignoreValue: true } } as RequestOp;
    expect(errorCode(() => store.txn({ compare: [], success: [put('x'), bad], failure: [] }))).toBe('key-not-found');
    expect(errorCode(() => store.txn({ compare: [], success: [put('x'), { type: 'range', range: { key: enc('a'), revision: 9 } }], failure: [] }))).toBe(
      'future-revision',
    );
    expect(store.revision).toBe(5);
    expect(store.range({ key: enc('x') }).count).toBe(0);
  });
});

describe('compact, hashKV and changes', () => {
  it('compaction errors and what it keeps', () => {
    const store = abc();
    store.deleteRange({ key: enc('c') }); // rev 6
    expect(errorCode(() => store.compact(7))).toBe('future-revision');
    store.compact(5);
    expect(errorCode(() => store.compact(5))).toBe('compacted');
    expect(errorCode(() => store.compact(4))).toBe('compacted');
    expect(dec(store.range({ key: enc('a'), revision: 5 }).kvs[0]!.value)).toBe('4');
    expect(store.range({ key: enc('c'), revision: 5 }).count).toBe(1);
    store.compact(6);
    expect(store.range({ key: enc('c'), revision: 6 }).count).toBe(0);
    // History stays readable from the compact revision on (as etcd's watch); the delete made at
    // revision 6 itself was compacted away, so nothing is left there.
    expect(errorCode(() => store.changes({ fromRevision: 5 }))).toBe('compacted');
    expect(store.changes({ fromRevision: 6 })).toEqual([]);
    expect(errorCode(() => store.hashKV(5))).toBe('compacted');
    expect(store.hashKV().compactRevision).toBe(6);
  });

  it('hashKV is the same for the same history and differs otherwise', () => {
    const a = abc();
    const b = abc();
    expect(a.hashKV()).toEqual(b.hashKV());
    expect(a.hashKV(3).hash).toBe(b.hashKV(3).hash);
    b.put(enc('a'), enc('4'));
    expect(a.hashKV().hash).not.toBe(b.hashKV().hash);
    expect(a.hashKV(5).hash).toBe(b.hashKV(5).hash);
    expect(errorCode(() => a.hashKV(6))).toBe('future-revision');
  });

  it('changes: revision window, key filter, prevKv', () => {
    const store = abc();
    store.deleteRange({ key: enc('b') }); // 6
    const events = store.changes({ fromRevision: 3, toRevision: 5 });
    expect(events.map((e) => [e.type, dec(e.kv.key), e.kv.modRevision])).toEqual([
      ['put', 'b', 3],
      ['put', 'c', 4],
      ['put', 'a', 5],
    ]);
    expect(dec(events[2]!.prevKv!.value)).toBe('3');
    const filtered = store.changes({ fromRevision: 2, key: enc('b') });
    expect(filtered.map((e) => e.type)).toEqual(['put', 'delete']);
    expect(dec(filtered[1]!.prevKv!.value)).toBe('1');
    expect(store.changes({ fromRevision: 7 })).toEqual([]);
  });

  it('appliedIndex is kept as set', () => {
    const store = new MvccStore();
    store.appliedIndex = 42;
    expect(store.appliedIndex).toBe(42);
    expect(() => (store.appliedIndex = 1.5)).toThrow();
  });

  it('validates the segment size option', () => {
    expect(() => new MvccStore({ segmentKeysMax: 2 })).toThrow();
    expect(new MvccStore({ segmentKeysMax: 4 }).segmentKeysMax).toBe(4);
  });
});
