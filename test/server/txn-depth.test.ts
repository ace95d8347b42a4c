/**
 * Nested txns, at every depth up to the limit and past it. etcd shares its 128-operation budget
 * down a path of nested txns, which bounds nesting at txnDepthMax (129) levels; DKV refuses a
 * deeper one at the edge with etcd's error, before it is proposed. Every txn it accepts must also
 * come back: the response is one message level deeper than the request, and protobufjs's default
 * recursion limit (100) used to fail it after the write was applied.
 */
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { txnFromWire, txnToWire } from '../../src/engines/kv/convert.js';
import { etcdType, messageDepthMax, txnDepthDecodedMax, type WireTxnRequest } from '../../src/etcd-proto.js';
import { isDkvError } from '../../src/errors.js';
import { checkTxn, txnDepthMax, txnOperationsMax } from '../../src/server/kv-service.js';
import { MvccError, MvccStore } from '../../storage/index.js';
import type { Decoded, EtcdChannel } from '../../src/client/index.js';
import { etcdChannel, TestCluster } from './cluster-harness.js';

const TxnRequest = etcdType('etcdserverpb.TxnRequest');
const TxnResponse = etcdType('etcdserverpb.TxnResponse');
const enc = (text: string) => Buffer.from(text);
const tooManyOps = { code: grpc.status.INVALID_ARGUMENT, details: 'etcdserver: too many operations in txn request' };

/** One level of a nested txn: how many operations each list holds (one of them the nested txn). */
interface Level {
  readonly width: number;
  /** The nested txn (and the ops) go in the failure branch, behind a compare that fails. */
  readonly viaFailure: boolean;
}

/**
 * A txn nested `levels.length + 1` deep: each level holds `width` ops in its taken branch (one of
 * them the next level), the innermost holds `innermost` puts. Keys are unique per op.
 */
function nestedTxn(levels: readonly Level[], innermost: number, prefix: string): WireTxnRequest {
  const puts = (n: number, at: number) =>
    Array.from({ length: n }, (_, i) => ({ request_put: { key: enc(`${prefix}/${at}/${i}`), value: enc(`v${at}.${i}`), prev_kv: true } }));
  let txn: Record<string, unknown> = { success: puts(innermost, levels.length) };
  for (let at = levels.length - 1; at >= 0; at--) {
    const { width, viaFailure } = levels[at]!;
    const ops = [{ request_txn: txn }, ...puts(width - 1, at)];
    txn = viaFailure
      ? { compare: [{ key: enc(`${prefix}/absent`), target: 'VERSION', result: 'GREATER', version: 0 }], failure: ops }
      : { success: ops };
  }
  return TxnRequest.toObject(TxnRequest.fromObject(txn)) as unknown as WireTxnRequest;
}

function edgeRefuses(txn: WireTxnRequest): boolean {
  try {
    checkTxn(txn);
    return false;
  } catch (error) {
    if (isDkvError(error, 'too-many-ops')) return true;
    throw error;
  }
}

function storeRefuses(txn: WireTxnRequest): boolean {
  try {
    new MvccStore().txn(txnFromWire(txn));
    return false;
  } catch (error) {
    if (error instanceof MvccError && error.code === 'too-many-operations') return true;
    throw error;
  }
}

describe('txn nesting: the edge check, the store and the codec agree', () => {
  it('the limit is what etcd 3.4 accepts: 128 one-op levels around an empty txn', () => {
    expect(txnOperationsMax).toBe(128);
    expect(txnDepthMax).toBe(129);
    const level: Level = { width: 1, viaFailure: false };
    expect(edgeRefuses(nestedTxn(Array(txnDepthMax - 1).fill(level), 0, 'a'))).toBe(false);
    expect(edgeRefuses(nestedTxn(Array(txnDepthMax).fill(level), 0, 'a'))).toBe(true);
    expect(edgeRefuses(nestedTxn(Array(txnDepthMax - 2).fill(level), 1, 'a'))).toBe(false);
    expect(edgeRefuses(nestedTxn(Array(txnDepthMax - 1).fill(level), 1, 'a'))).toBe(true);
  });

  it('checkTxn refuses exactly what the store would refuse on apply (property)', () => {
    const levelArb = fc.record({ width: fc.oneof(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 130 })), viaFailure: fc.boolean() });
    fc.assert(
      fc.property(fc.array(levelArb, { maxLength: txnDepthMax + 4 }), fc.integer({ min: 0, max: 130 }), (levels, innermost) => {
        const txn = nestedTxn(levels, innermost, 'p');
        const refused = edgeRefuses(txn);
        expect(storeRefuses(txn)).toBe(refused);
        if (levels.length + 1 > txnDepthMax) expect(refused).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('protobufjs decodes requests to twice the limit and encodes the response at the limit', () => {
    expect(messageDepthMax).toBeGreaterThanOrEqual(2 * txnDepthMax + 1);
    // Requests built byte by byte (the encoder has the same limit): a put, wrapped in txns.
    const wrap = (inner: Uint8Array): Uint8Array => {
      const op = protobuf.Writer.create().uint32((4 << 3) | 2).bytes(inner).finish(); // RequestOp.request_txn
      return protobuf.Writer.create().uint32((2 << 3) | 2).bytes(op).finish(); // TxnRequest.success
    };
    let bytes = TxnRequest.encode(nestedTxn([], 1, 'd')).finish();
    for (let depth = 1; depth < txnDepthDecodedMax; depth++) bytes = wrap(bytes);
    expect(() => TxnRequest.decode(bytes)).not.toThrow();
    // Past that the decoder refuses (grpc then answers "Error deserializing request"; nothing is proposed).
    expect(() => TxnRequest.decode(wrap(bytes))).toThrow(/max depth/);

    // The deepest response an accepted txn can get: a range (whose KeyValue is the deepest message)
    // at depth txnDepthMax - 1, the deepest level the budget leaves an operation for.
    const store = new MvccStore();
    store.put(enc('k'), enc('v'));
    let request = { compare: [], success: [{ type: 'range' as const, range: { key: enc('k') } }], failure: [] } as Parameters<MvccStore['txn']>[0];
    for (let depth = 1; depth < txnDepthMax - 1; depth++) request = { compare: [], success: [{ type: 'txn', txn: request }], failure: [] };
    const result = store.txn(request);
    const header = { revision: result.revision };
    let response = TxnResponse.decode(TxnResponse.encode({ header, ...txnToWire(result, header) }).finish()) as unknown as { responses: Array<{ response_txn?: unknown; response_range?: { kvs: Array<{ value: Uint8Array }> } }> };
    for (let depth = 1; depth < txnDepthMax - 1; depth++) response = response.responses[0]!.response_txn as typeof response;
    expect(Buffer.from(response.responses[0]!.response_range!.kvs[0]!.value).toString()).toBe('v');
  });
});

describe('nested txns against a real 3-node cluster, at every depth from 1 to txnDepthMax + 2', () => {
  let cluster: TestCluster;
  let clients: EtcdChannel[] = [];

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3 });
    clients = cluster.nodes.map((_, i) => etcdChannel(cluster.endpoint(i)));
  }, 60_000);

  afterAll(async () => {
    for (const client of clients) client.close();
    await cluster?.stop();
  });

  /** The store's revision and the highest commit index any node reports (the leader's). */
  async function position(): Promise<{ revision: number; committed: number }> {
    const statuses = await Promise.all(clients.map((c) => c.maintenance('Status', {})));
    const committed = Math.max(...statuses.map((s) => s.raftIndex as number));
    const range = await clients[0]!.kv('Range', { key: enc('depth/'), range_end: enc('depth0'), count_only: true });
    return { revision: (range.header as { revision: number }).revision, committed };
  }

  async function attempt(node: number, txn: WireTxnRequest): Promise<{ ok: Decoded } | { error: { code: number; details: string } }> {
    try {
      return { ok: await clients[node]!.kv('Txn', txn, { timeoutMs: 30_000 }) };
    } catch (error) {
      const e = error as { code: number; details: string };
      return { error: { code: e.code, details: e.details } };
    }
  }

  it('applies and answers every depth the budget allows, refuses the rest before proposing', async () => {
    // Every key the innermost puts exists already, so each put's prev_kv (the deepest message of
    // the response, one level below the deepest of the request) is there to check.
    for (let depth = 1; depth <= txnOperationsMax; depth++) await clients[depth % 3]!.kv('Put', { key: enc(`depth/${depth - 1}/0`), value: enc('old') });
    const outcomes: string[] = [];
    for (let depth = 1; depth <= txnDepthMax + 2; depth++) {
      // Odd depths take the failure branch at every level (behind a compare that fails), even
      // ones the success branch; each level that nests spends one operation of the budget, so the
      // innermost holds one put while the budget lasts and nothing after that.
      const viaFailure = depth % 2 === 1;
      const innermost = depth <= txnOperationsMax ? 1 : 0;
      const txn = nestedTxn(Array<Level>(depth - 1).fill({ width: 1, viaFailure }), innermost, 'depth');
      const before = await position();
      const node = depth % 3;
      const result = await attempt(node, txn);
      const after = await position();
      if ('error' in result) {
        outcomes.push(`${depth}: refused`);
        expect(result.error, `depth ${depth}`).toEqual(tooManyOps);
        expect(after, `depth ${depth}: a refused txn must not be proposed`).toEqual(before);
        continue;
      }
      outcomes.push(`${depth}: applied`);
      const response = result.ok as { header: { revision: number }; succeeded: boolean; responses: Decoded[] };
      const wrote = innermost > 0;
      expect(after.revision, `depth ${depth}`).toBe(before.revision + (wrote ? 1 : 0));
      expect(response.header.revision).toBe(after.revision);
      // Walk down: every level answers with the branch it took and the txn's revision.
      let level = response;
      for (let d = 1; d < depth; d++) {
        expect(level.succeeded, `depth ${depth}, level ${d}`).toBe(!viaFailure);
        expect(level.responses).toHaveLength(1);
        level = level.responses[0]!.response_txn as typeof response;
        expect(level.header.revision, `depth ${depth}, level ${d + 1}`).toBe(after.revision);
      }
      expect(level.succeeded, 'the innermost txn has no compare').toBe(true);
      if (!wrote) {
        expect(level.responses).toEqual([]);
        continue;
      }
      const key = `depth/${depth - 1}/0`;
      const put = level.responses[0]!.response_put as { header: { revision: number }; prev_kv: { key: Buffer; value: Buffer } };
      expect(put.header.revision).toBe(after.revision);
      expect([put.prev_kv.key.toString(), put.prev_kv.value.toString()]).toEqual([key, 'old']);
      for (let reader = 0; reader < 3; reader++) {
        const read = await clients[reader]!.kv('Range', { key: enc(key) });
        const kv = (read.kvs as Array<{ value: Buffer; mod_revision: number }>)[0]!;
        expect([kv.value.toString(), kv.mod_revision], `${key} on node ${reader}`).toEqual([`v${depth - 1}.0`, after.revision]);
      }
    }
    console.log(`[txn-depth] ${outcomes.filter((o) => o.endsWith('applied')).length} depths applied, refused: ${outcomes.filter((o) => o.endsWith('refused')).join(', ')}`);
    expect(outcomes.filter((o) => o.endsWith('refused'))).toEqual([`${txnDepthMax + 1}: refused`, `${txnDepthMax + 2}: refused`]);

    // Every replica decoded and applied the same deep commands: one state, one hash.
    const last = await position();
    const hashes = await Promise.all(clients.map((c) => c.maintenance('HashKV', { revision: last.revision }, { timeoutMs: 10_000 })));
    expect(new Set(hashes.map((h) => h.hash)).size).toBe(1);
    for (let node = 0; node < 3; node++) expect(cluster.running(node), cluster.logs()).toBe(true);
  }, 240_000);
});
