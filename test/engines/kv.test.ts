/**
 * The KV engine's part of a shard split: retainRange keeps the keys of one range with their
 * history and revisions, in a new store; the engine goes on applying, snapshotting and hashing
 * from there.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type ApplyContext, type EngineCommand, KvEngine, sectionChunks } from '../../src/engines/index.js';
import { KvCommandKind, kvCommand, kvOutcome, putFromWire, txnFromWire } from '../../src/engines/kv/index.js';
import { etcdType, type WirePutRequest, type WireTxnRequest } from '../../src/etcd-proto.js';
import { MvccStore } from '../../storage/index.js';

const PutRequest = etcdType('etcdserverpb.PutRequest');
const TxnRequest = etcdType('etcdserverpb.TxnRequest');
const CompactionRequest = etcdType('etcdserverpb.CompactionRequest');
const b = (text: string): Buffer => Buffer.from(text);
const text = (bytes: Uint8Array): string => Buffer.from(bytes).toString();

const put = (key: string, value: string): EngineCommand => kvCommand(KvCommandKind.Put, PutRequest.encode({ key: b(key), value: b(value) }).finish());
const putAll = (keys: string[], value: string): EngineCommand =>
  kvCommand(KvCommandKind.Txn, TxnRequest.encode({ compare: [], success: keys.map((key) => ({ request_put: { key: b(key), value: b(value) } })), failure: [] }).finish());
const compaction = (revision: number): EngineCommand => kvCommand(KvCommandKind.Compaction, CompactionRequest.encode({ revision }).finish());

function applier(engine: KvEngine): (command: EngineCommand) => ReturnType<typeof kvOutcome> {
  let index = 0;
  return (command) => {
    index++;
    const context: ApplyContext = { index, term: 1, nowMs: 0, proposer: 1, requestId: index };
    return kvOutcome(engine.apply(command, context));
  };
}

/** Every key live at `revision` as "key=value@modRevision". */
function contents(store: MvccStore, revision = 0): string[] {
  return store.range({ key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0), revision }).kvs.map((kv) => `${text(kv.key)}=${text(kv.value)}@${kv.modRevision}`);
}

/** An engine whose history spans both sides of a split at "c": a txn over both, later writes, a compaction. */
function history(): KvEngine {
  const engine = new KvEngine(new MvccStore({ segmentKeysMax: 4 }));
  const apply = applier(engine);
  apply(putAll(['d', 'a', 'c', 'b'], '1')); // revision 2, sub-revisions in another order than the keys
  apply(put('a', '2')); // 3
  apply(put('c', '2')); // 4
  apply(compaction(3));
  apply(put('e', '1')); // 5
  engine.mvcc.appliedIndex = 7;
  return engine;
}

describe('KvEngine.retainRange', () => {
  it('keeps the keys of [start, end) with their history at the same revisions, in a new store; the old one is left as it was', () => {
    const engine = history();
    const before = engine.mvcc;
    const hashBefore = before.hashKV().hash;
    engine.retainRange(b('c'), undefined);
    expect(engine.mvcc).not.toBe(before);
    expect(before.hashKV().hash).toBe(hashBefore);
    expect(contents(before)).toEqual(['a=2@3', 'b=1@2', 'c=2@4', 'd=1@2', 'e=1@5']);
    expect([engine.mvcc.revision, engine.mvcc.compactRevision, engine.mvcc.appliedIndex, engine.mvcc.keyCount]).toEqual([5, 3, 7, 3]);
    expect(contents(engine.mvcc)).toEqual(['c=2@4', 'd=1@2', 'e=1@5']);
    expect(contents(engine.mvcc, 3)).toEqual(['c=1@2', 'd=1@2']);
    expect(engine.mvcc.changes({ fromRevision: 3 }).map((e) => `${e.type} ${text(e.kv.key)}@${e.kv.modRevision}`)).toEqual(['put c@4', 'put e@5']);
    engine.mvcc.checkInvariants();

    // The other side, from the first key up to "c".
    const left = history();
    left.retainRange(new Uint8Array(0), b('c'));
    expect(contents(left.mvcc)).toEqual(['a=2@3', 'b=1@2']);
    expect(left.mvcc.revision).toBe(5);
  });

  it('goes on applying from the same revision; snapshots and hashes cover only the kept keys', () => {
    const engine = history();
    engine.retainRange(b('b'), b('d'));
    const outcome = applier(engine)(put('c', '3'));
    expect(outcome.outcome).toMatchObject({ kind: 'put', result: { revision: 6 } });
    expect(contents(engine.mvcc)).toEqual(['b=1@2', 'c=3@6']);
    const copy = new KvEngine();
    copy.restore(sectionChunks(engine.snapshot()));
    expect(copy.hash()).toBe(engine.hash());
    expect(contents(copy.mvcc, 4)).toEqual(contents(engine.mvcc, 4));
    // The same write on the whole store, split afterwards, hashes alike: splitting commutes with writes in the range.
    const whole = history();
    applier(whole)(put('c', '3'));
    expect(engine.hash()).not.toBe(whole.hash());
    expect(engine.hash()).toBe(whole.mvcc.retained(b('b'), b('d')).hashKV().hash);
  });
});

describe('a KV command carrying its decoded request', () => {
  const decodedPut = (bytes: Uint8Array): EngineCommand =>
    kvCommand(KvCommandKind.Put, bytes, { kind: KvCommandKind.Put, request: putFromWire(PutRequest.decode(bytes) as unknown as WirePutRequest) });
  const decodedTxn = (bytes: Uint8Array): EngineCommand =>
    kvCommand(KvCommandKind.Txn, bytes, { kind: KvCommandKind.Txn, request: txnFromWire(TxnRequest.decode(bytes) as unknown as WireTxnRequest) });

  it('is applied from what it carries, not from its bytes', () => {
    const engine = new KvEngine(new MvccStore());
    const bytes = PutRequest.encode({ key: b('k'), value: b('from the bytes') }).finish();
    const carried = putFromWire({ key: b('k'), value: b('as decoded') } as unknown as WirePutRequest);
    applier(engine)(kvCommand(KvCommandKind.Put, bytes, { kind: KvCommandKind.Put, request: carried }));
    expect(contents(engine.mvcc)).toEqual(['k=as decoded@2']);
  });

  it('refuses a decoded request of another kind', () => {
    const request = putFromWire({ key: b('k'), value: b('v') } as unknown as WirePutRequest);
    expect(() => kvCommand(KvCommandKind.Txn, new Uint8Array(0), { kind: KvCommandKind.Put, request })).toThrow(/another kind/);
  });

  it('gives the same outcomes and the same store as decoding the bytes (puts and txns, compares, nested txns, refusals)', () => {
    const key = fc.constantFrom('a', 'b', 'c', 'd').map(b);
    const value = fc.constantFrom('', 'x', 'yy').map(b);
    const put = fc.record({ key, value, prev_kv: fc.boolean(), ignore_value: fc.boolean() });
    const compare = fc.record({ key, result: fc.constantFrom(0, 1, 2, 3), target: fc.constantFrom(0, 1, 2), version: fc.integer({ min: 0, max: 3 }), mod_revision: fc.integer({ min: 0, max: 6 }) });
    const op = fc.oneof(
      put.map((request_put) => ({ request_put })),
      key.map((k) => ({ request_delete_range: { key: k, prev_kv: true } })),
      key.map((k) => ({ request_range: { key: k } })),
      put.map((p) => ({ request_txn: { compare: [], success: [{ request_put: p }], failure: [] } })),
    );
    const txn = fc.record({ compare: fc.array(compare, { maxLength: 2 }), success: fc.array(op, { maxLength: 3 }), failure: fc.array(op, { maxLength: 3 }) });
    const command = fc.oneof(put.map((p) => ({ put: PutRequest.encode(p).finish() })), txn.map((t) => ({ txn: TxnRequest.encode(t).finish() })));
    fc.assert(
      fc.property(fc.array(command, { minLength: 1, maxLength: 12 }), (commands) => {
        const plain = new KvEngine(new MvccStore());
        const carried = new KvEngine(new MvccStore());
        const [applyPlain, applyCarried] = [applier(plain), applier(carried)];
        for (const c of commands) {
          const bytes = 'put' in c ? c.put : c.txn;
          const kind = 'put' in c ? KvCommandKind.Put : KvCommandKind.Txn;
          const a = applyPlain(kvCommand(kind, bytes));
          const d = applyCarried('put' in c ? decodedPut(bytes) : decodedTxn(bytes));
          expect(d).toEqual(a);
        }
        expect(carried.hash()).toBe(plain.hash());
        expect(contents(carried.mvcc)).toEqual(contents(plain.mvcc));
      }),
    );
  });
});
