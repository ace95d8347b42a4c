/**
 * The KV engine's part of a shard split: retainRange keeps the keys of one range with their
 * history and revisions, in a new store; the engine goes on applying, snapshotting and hashing
 * from there.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type ApplyContext, type EngineCommand, KvEngine, sectionChunks } from '../../src/engines/index.js';
import { KvCommandKind, type KvDecoded, kvCommand, kvOutcome, putFromWire, txnFromWire } from '../../src/engines/kv/index.js';
import { etcdType, type WirePutRequest, type WireTxnRequest } from '../../src/etcd-proto.js';
import { decodeEnvelope, encodeEnvelope } from '../../src/runtime/index.js';
import { type Incoming, serviceDefinition } from '../../src/server/grpc-service.js';
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
  const kvService = serviceDefinition('etcdserverpb.KV');
  /** What the KV service's edge has for a call's bytes: grpc-js's deserializer, then the conversion the handler makes. */
  const atTheEdge = (method: 'Put' | 'Txn', bytes: Uint8Array): EngineCommand => {
    const raw = Buffer.from(bytes);
    const { message } = kvService[method]!.requestDeserialize(raw) as Incoming<unknown>;
    return method === 'Put'
      ? kvCommand(KvCommandKind.Put, raw, { kind: KvCommandKind.Put, request: putFromWire(message as WirePutRequest) })
      : kvCommand(KvCommandKind.Txn, raw, { kind: KvCommandKind.Txn, request: txnFromWire(message as WireTxnRequest) });
  };
  /** What every other replica applies: the payload out of the log entry's envelope. */
  const fromTheLog = (kind: KvCommandKind, bytes: Uint8Array): EngineCommand => {
    const envelope = decodeEnvelope(encodeEnvelope({ ...kvCommand(kind, bytes), timestampMs: 1, proposer: 2, requestId: 3, caller: { user: '', authRevision: 0 } }));
    return kvCommand(kind, Buffer.from(envelope.payload).subarray(0));
  };

  it('is applied from what it carries, not from its bytes', () => {
    const engine = new KvEngine(new MvccStore());
    const bytes = PutRequest.encode({ key: b('k'), value: b('from the bytes') }).finish();
    const carried = putFromWire({ key: b('k'), value: b('as decoded') } as unknown as WirePutRequest);
    applier(engine)(kvCommand(KvCommandKind.Put, bytes, { kind: KvCommandKind.Put, request: carried }));
    expect(contents(engine.mvcc)).toEqual(['k=as decoded@2']);
  });

  it('refuses a decoded request of another kind; an engine that checks refuses one its bytes do not decode to', () => {
    const request = putFromWire({ key: b('k'), value: b('v') } as unknown as WirePutRequest);
    expect(() => kvCommand(KvCommandKind.Txn, new Uint8Array(0), { kind: KvCommandKind.Put, request })).toThrow(/another kind/);
    const checking = new KvEngine(new MvccStore());
    checking.connect({ checkDecoded: true });
    const bytes = PutRequest.encode({ key: b('k'), value: b('from the bytes') }).finish();
    const differs = kvCommand(KvCommandKind.Put, bytes, { kind: KvCommandKind.Put, request: { ...request, value: b('not the bytes') } });
    expect(() => applier(checking)(differs)).toThrow(/not what its bytes decode to/);
    expect(contents(checking.mvcc)).toEqual([]);
    applier(checking)(atTheEdge('Put', bytes));
    expect(contents(checking.mvcc)).toEqual(['k=from the bytes@2']);
    // The log's copy of the bytes is a plain Uint8Array where the edge decoded a Buffer: the same request.
    const again = PutRequest.encode({ key: b('k'), value: b('again') }).finish();
    applier(checking)(kvCommand(KvCommandKind.Put, Uint8Array.from(again), atTheEdge('Put', again).decoded as KvDecoded));
    expect(contents(checking.mvcc)).toEqual(['k=again@3']);
  });

  it("gives the same outcomes and store as a replica decoding the log's bytes (puts and txns, compares, nested txns, refusals, a cap, an owner)", () => {
    const key = fc.constantFrom('a', 'b', 'c', 'd').map(b);
    const value = fc.constantFrom('', 'x', 'yy').map(b);
    const lease = fc.constantFrom(0, 7);
    const put = fc.record({ key, value, lease, prev_kv: fc.boolean(), ignore_value: fc.boolean(), ignore_lease: fc.boolean() });
    const compare = fc.record({ key, result: fc.constantFrom(0, 1, 2, 3), target: fc.constantFrom(0, 1, 2), version: fc.integer({ min: 0, max: 3 }), mod_revision: fc.integer({ min: 0, max: 6 }) });
    const op = fc.oneof(
      put.map((request_put) => ({ request_put })),
      key.map((k) => ({ request_delete_range: { key: k, prev_kv: true } })),
      key.map((k) => ({ request_range: { key: k } })),
      put.map((p) => ({ request_txn: { compare: [], success: [{ request_put: p }], failure: [] } })),
    );
    const txn = fc.record({ compare: fc.array(compare, { maxLength: 2 }), success: fc.array(op, { maxLength: 3 }), failure: fc.array(op, { maxLength: 3 }) });
    const command = fc.oneof(put.map((p) => ({ put: PutRequest.encode(p).finish() })), txn.map((t) => ({ txn: TxnRequest.encode(t).finish() })));
    // A store capped by a NOSPACE alarm, or serving only keys below "c", refuses some writes.
    const setting = fc.record({ capped: fc.boolean(), ownsBelowC: fc.boolean() });
    fc.assert(
      fc.property(fc.array(command, { minLength: 1, maxLength: 12 }), setting, (commands, { capped, ownsBelowC }) => {
        const engines = [new KvEngine(new MvccStore()), new KvEngine(new MvccStore())];
        for (const engine of engines) {
          engine.connect({ cap: { capped }, leaseExists: (id) => id === 7n, checkDecoded: true });
          if (ownsBelowC) engine.connect({ owner: { owns: (k: Uint8Array, end?: Uint8Array) => text(k) < 'c' && (end === undefined || end.length === 0 || text(end) <= 'c') } });
        }
        const [replica, proposer] = engines.map(applier) as [ReturnType<typeof applier>, ReturnType<typeof applier>];
        for (const c of commands) {
          const kind = 'put' in c ? KvCommandKind.Put : KvCommandKind.Txn;
          const bytes = 'put' in c ? c.put : c.txn;
          const own = atTheEdge('put' in c ? 'Put' : 'Txn', bytes);
          expect(own.decoded).toBeDefined();
          expect(proposer(own)).toEqual(replica(fromTheLog(kind, bytes)));
        }
        expect(engines[1]!.hash()).toBe(engines[0]!.hash());
        expect(contents(engines[1]!.mvcc)).toEqual(contents(engines[0]!.mvcc));
      }),
    );
  });
});
