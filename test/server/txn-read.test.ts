/**
 * A txn that only reads is served as etcd serves one: as a Range is (ReadIndex, then the local
 * store), never through the log — the Raft index does not move — with the same answers and
 * errors the applied path gives. The store's side: `readTxn` answers exactly what `txn` would
 * for any read-only txn, and changes nothing.
 */
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MvccStore, isReadOnlyTxn, type TxnRequest } from '../../storage/index.js';
import { wireTxnSerializable } from '../../src/server/kv-service.js';
import type { EtcdChannel } from '../../src/client/index.js';
import type { WireTxnRequest } from '../../src/etcd-proto.js';
import { etcdChannel, TestCluster } from './cluster-harness.js';

const enc = (text: string) => Buffer.from(text);
const bytes = (text: string) => new TextEncoder().encode(text);

describe('MvccStore.readTxn', () => {
  const keys = ['a', 'b', 'c'];
  const readOnlyTxn = fc.record({
    compare: fc.array(fc.record({ key: fc.constantFrom(...keys), version: fc.integer({ min: 0, max: 3 }) }), { maxLength: 2 }),
    success: fc.array(fc.constantFrom(...keys), { maxLength: 3 }),
    failure: fc.array(fc.constantFrom(...keys), { maxLength: 3 }),
  });
  const toRequest = (t: { compare: { key: string; version: number }[]; success: string[]; failure: string[] }): TxnRequest => ({
    compare: t.compare.map((c) => ({ key: bytes(c.key), target: 'version', result: 'equal', value: c.version })),
    success: t.success.map((key) => ({ type: 'range', range: { key: bytes(key) } })),
    failure: t.failure.map((key) => ({ type: 'range', range: { key: bytes(key) } })),
  }) as unknown as TxnRequest;

  it('answers what txn answers, and leaves the store as it was', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom(...keys), fc.boolean()), { maxLength: 12 }), readOnlyTxn, (writes, t) => {
        const build = () => {
          const store = new MvccStore();
          for (const [key, put] of writes) {
            if (put) store.put(bytes(key), bytes(`${key}${store.revision}`));
            else store.deleteRange({ key: bytes(key) });
          }
          return store;
        };
        const request = toRequest(t);
        expect(isReadOnlyTxn(request)).toBe(true);
        const viaRead = build();
        const before = viaRead.hashKV().hash;
        const read = viaRead.readTxn(request);
        expect(viaRead.hashKV().hash).toBe(before);
        const applied = build().txn(request);
        expect({ ...read, events: [] }).toEqual({ ...applied, events: [] });
        expect(applied.events).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses a txn that writes, and knows one when it sees it', () => {
    const writes = { compare: [], success: [{ type: 'put', put: { key: bytes('a'), value: bytes('1') } }], failure: [] } as unknown as TxnRequest;
    expect(isReadOnlyTxn(writes)).toBe(false);
    const nested = { compare: [], success: [], failure: [{ type: 'txn', txn: writes }] } as unknown as TxnRequest;
    expect(isReadOnlyTxn(nested)).toBe(false);
    // As etcd's isTxnReadonly: any nested txn goes through the log, even one that only reads.
    const readsOnly = { compare: [], success: [{ type: 'range', range: { key: bytes('a') } }], failure: [] } as unknown as TxnRequest;
    expect(isReadOnlyTxn(readsOnly)).toBe(true);
    expect(isReadOnlyTxn({ compare: [], success: [{ type: 'txn', txn: readsOnly }], failure: [] } as unknown as TxnRequest)).toBe(false);
    expect(() => new MvccStore().readTxn(writes)).toThrow(/writes/);
  });

  it('a txn is serializable only if every op is a serializable range', () => {
    const wire = (txn: object) => txn as unknown as WireTxnRequest;
    expect(wireTxnSerializable(wire({ success: [{ request_range: { key: enc('a'), serializable: true } }] }))).toBe(true);
    expect(wireTxnSerializable(wire({ success: [{ request_range: { key: enc('a'), serializable: true } }], failure: [{ request_range: { key: enc('a') } }] }))).toBe(false);
    expect(wireTxnSerializable(wire({}))).toBe(false);
  });
});

describe('a read-only Txn on a server', () => {
  let cluster: TestCluster;
  let client: EtcdChannel;
  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 1 });
    client = etcdChannel(cluster.endpoint(0));
  }, 60_000);
  afterAll(async () => {
    client?.close();
    await cluster?.stop();
  });

  const raftIndex = async (): Promise<number> => Number((await client.maintenance('Status', {})).raftIndex);

  it('is answered without going through the log; a writing one goes through it', async () => {
    await client.kv('Put', { key: enc('ro/a'), value: enc('1') });
    const before = await raftIndex();
    const read = await client.kv('Txn', {
      compare: [{ key: enc('ro/a'), target: 'VALUE', result: 'EQUAL', value: enc('1') }],
      success: [{ request_range: { key: enc('ro/a') } }, { request_range: { key: enc('ro/b') } }],
      failure: [],
    });
    expect(read.succeeded).toBe(true);
    const responses = read.responses as { response_range: { kvs: { value: Buffer }[] } }[];
    expect(Buffer.from(responses[0]!.response_range.kvs[0]!.value).toString()).toBe('1');
    expect(responses[1]!.response_range.kvs ?? []).toEqual([]);
    expect(await raftIndex()).toBe(before);
    await client.kv('Txn', { success: [{ request_put: { key: enc('ro/b'), value: enc('2') } }] });
    expect(await raftIndex()).toBeGreaterThan(before);
  });

  it('refuses a compacted revision as the applied path does', async () => {
    const put = await client.kv('Put', { key: enc('ro/c'), value: enc('x') });
    const revision = Number((put.header as { revision: number }).revision);
    await client.kv('Put', { key: enc('ro/c'), value: enc('y') });
    await client.kv('Compact', { revision: revision + 1 });
    await expect(client.kv('Txn', { success: [{ request_range: { key: enc('ro/c'), revision } }] })).rejects.toMatchObject({
      code: grpc.status.OUT_OF_RANGE,
      details: 'etcdserver: mvcc: required revision has been compacted',
    });
  });
});
