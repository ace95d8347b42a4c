/**
 * int64 fields at the wire edge: lease ids are exact bigints both ways over the whole int64 range;
 * revisions, versions, limits and revision filters saturate at ±(2^53 - 1), which keeps their
 * meaning; ids that must name something (members, watches) are compared exactly. The apply path
 * turns an out-of-range value into etcd's refusal, never into a crash.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KvCommandKind, kvCommand, kvOutcome } from '../../src/engines/kv/index.js';
import { composeStateMachine, encodeEnvelope } from '../../src/runtime/index.js';
import { compareFromWire, keyValueToWire, putFromWire, rangeFromWire } from '../../src/engines/kv/convert.js';
import {
  etcdType,
  int64Exact,
  int64IfSafe,
  int64Safe,
  int64Saturated,
  int64ToWire,
  type WireCompare,
  type WirePutRequest,
  type WireRangeRequest,
  WireValueError,
} from '../../src/etcd-proto.js';
import { MvccError, MvccStore } from '../../storage/index.js';

const PutRequest = etcdType('etcdserverpb.PutRequest');
const RangeRequest = etcdType('etcdserverpb.RangeRequest');
const Compare = etcdType('etcdserverpb.Compare');
const KeyValue = etcdType('mvccpb.KeyValue');
const MemberRemoveRequest = etcdType('etcdserverpb.MemberRemoveRequest');
const TxnRequest = etcdType('etcdserverpb.TxnRequest');
const CompactionRequest = etcdType('etcdserverpb.CompactionRequest');

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const SAFE = Number.MAX_SAFE_INTEGER;
const enc = (text: string) => new TextEncoder().encode(text);

/** Values around every edge: 0, ±1, the safe-integer bounds and one past, the int64 bounds. */
const edges = [0n, 1n, -1n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, -(2n ** 53n) + 1n, -(2n ** 53n) - 1n, INT64_MAX, INT64_MIN];
const int64Arb = fc.oneof(fc.constantFrom(...edges), fc.bigInt({ min: INT64_MIN, max: INT64_MAX }));

/** A value as the server sees it: encoded by a client (as a decimal string), decoded by protobufjs. */
function decodedPut(lease: bigint): WirePutRequest {
  return PutRequest.decode(PutRequest.encode(PutRequest.fromObject({ key: enc('k'), lease: lease.toString() })).finish()) as unknown as WirePutRequest;
}

function decodedRange(fields: Record<string, string | Uint8Array>): WireRangeRequest {
  return RangeRequest.decode(RangeRequest.encode(RangeRequest.fromObject({ key: enc('k'), ...fields })).finish()) as unknown as WireRangeRequest;
}

describe('int64 conversions of decoded fields', () => {
  it('int64Exact gives every int64 exactly; the others say what happens past 2^53', () => {
    fc.assert(
      fc.property(int64Arb, (value) => {
        const lease = decodedPut(value).lease;
        expect(int64Exact(lease)).toBe(value);
        const safe = value >= -BigInt(SAFE) && value <= BigInt(SAFE);
        expect(int64IfSafe(lease)).toBe(safe ? Number(value) : undefined);
        expect(int64Saturated(lease)).toBe(safe ? Number(value) : value > 0n ? SAFE : -SAFE);
        if (safe) expect(int64Safe(lease, 'lease')).toBe(Number(value));
        else expect(() => int64Safe(lease, 'lease')).toThrow(WireValueError);
      }),
      { numRuns: 500 },
    );
  });

  it('reads uint64 ids (members) exactly, up to 2^64 - 1', () => {
    for (const id of [2n ** 64n - 1n, 2n ** 63n, 2n ** 53n + 1n, 12345n]) {
      const message = MemberRemoveRequest.decode(MemberRemoveRequest.encode(MemberRemoveRequest.fromObject({ ID: id.toString() })).finish()) as unknown as { ID: never };
      expect(int64Exact(message.ID)).toBe(id);
      expect(int64IfSafe(message.ID)).toBe(id <= BigInt(SAFE) ? Number(id) : undefined);
    }
  });

  it('int64ToWire round-trips every int64 through protobufjs exactly (responses)', () => {
    fc.assert(
      fc.property(int64Arb, (lease) => {
        const wire = keyValueToWire({ key: enc('k'), value: enc('v'), createRevision: 2, modRevision: 3, version: 1, lease });
        expect(wire.lease).toBe(int64ToWire(lease));
        const back = KeyValue.decode(KeyValue.encode(wire).finish()) as unknown as { lease: never };
        expect(int64Exact(back.lease)).toBe(lease);
      }),
      { numRuns: 500 },
    );
  });
});

describe('lease ids end to end: wire → store → wire', () => {
  it('a put lease and a LEASE compare stay exact over the whole int64 range', () => {
    fc.assert(
      fc.property(int64Arb, (lease) => {
        const store = new MvccStore();
        const put = putFromWire(decodedPut(lease));
        expect(put.lease).toBe(lease);
        store.put(put.key, enc('v'), put);
        const kv = store.range({ key: enc('k') }).kvs[0]!;
        const back = KeyValue.decode(KeyValue.encode(keyValueToWire(kv)).finish()) as unknown as { lease: never };
        expect(int64Exact(back.lease)).toBe(lease);
        // LEASE compares: EQUAL (0) with the id itself, and LESS (2) than one more.
        const compare = (value: bigint, result: number) =>
          compareFromWire(Compare.decode(Compare.encode(Compare.fromObject({ key: enc('k'), target: 4, result, lease: value.toString() })).finish()) as unknown as WireCompare);
        expect(compare(lease, 0).value).toBe(lease);
        expect(store.txn({ compare: [compare(lease, 0)], success: [], failure: [] }).succeeded).toBe(true);
        if (lease < INT64_MAX) expect(store.txn({ compare: [compare(lease + 1n, 2)], success: [], failure: [] }).succeeded).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});

describe('revisions, limits and filters saturate without changing their meaning', () => {
  const store = new MvccStore();
  store.put(enc('k'), enc('v1'));
  store.put(enc('k'), enc('v2'));

  it('a revision past 2^53 is a future revision; one below -2^53 is the current revision', () => {
    for (const revision of [2n ** 53n + 1n, 2n ** 53n, INT64_MAX]) {
      const request = rangeFromWire(decodedRange({ revision: revision.toString() }));
      expect(request.revision).toBe(SAFE);
      expect(() => store.range(request)).toThrow(new MvccError('future-revision'));
    }
    const current = rangeFromWire(decodedRange({ revision: INT64_MIN.toString() }));
    expect(store.range(current).kvs.map((kv) => new TextDecoder().decode(kv.value))).toEqual(['v2']);
  });

  it('a limit past 2^53 is no limit; filters past 2^53 keep or drop everything as the int64 would', () => {
    const all = (fields: Record<string, string>) => store.range(rangeFromWire(decodedRange({ range_end: Uint8Array.of(0), ...fields }))).kvs.length;
    expect(all({ limit: INT64_MAX.toString() })).toBe(1);
    expect(all({ limit: INT64_MIN.toString() })).toBe(1);
    expect(all({ max_mod_revision: INT64_MAX.toString() })).toBe(1);
    expect(all({ min_mod_revision: INT64_MAX.toString() })).toBe(0);
    expect(all({ min_create_revision: INT64_MIN.toString() })).toBe(1);
    expect(all({ max_create_revision: (2n ** 53n + 1n).toString() })).toBe(1);
  });

  it('a revision compare past 2^53 is greater than every revision', () => {
    const compare = (result: number) =>
      compareFromWire(Compare.decode(Compare.encode(Compare.fromObject({ key: enc('k'), target: 2, result, mod_revision: (2n ** 53n + 1n).toString() })).finish()) as unknown as WireCompare);
    expect(store.txn({ compare: [compare(2)], success: [], failure: [] }).succeeded).toBe(true); // LESS
    expect(store.txn({ compare: [compare(0)], success: [], failure: [] }).succeeded).toBe(false); // EQUAL
  });
});

describe('the apply path refuses out-of-range values instead of crashing', () => {
  const entry = (machine: { appliedIndex: number }, kind: KvCommandKind, payload: Uint8Array) => {
    const index = machine.appliedIndex + 1;
    return { term: 1, index, type: 'normal' as const, data: encodeEnvelope({ ...kvCommand(kind, payload), timestampMs: 0, proposer: 1, requestId: index }) };
  };

  it('a txn whose range asks for revision 2^60 gets future-revision on every replica', () => {
    const machine = composeStateMachine('data');
    const payload = TxnRequest.encode(TxnRequest.fromObject({ success: [{ request_range: { key: enc('k'), revision: (2n ** 60n).toString() } }] })).finish();
    const applied = kvOutcome(machine.apply(entry(machine, KvCommandKind.Txn, payload))!.outcome);
    expect(applied.outcome).toEqual({ kind: 'error', error: new MvccError('future-revision') });
  });

  it('a compaction past 2^53 is a future revision, one below -2^53 already compacted', () => {
    const machine = composeStateMachine('data');
    const compact = (revision: bigint) =>
      kvOutcome(machine.apply(entry(machine, KvCommandKind.Compaction, CompactionRequest.encode(CompactionRequest.fromObject({ revision: revision.toString() })).finish()))!.outcome).outcome;
    expect(compact(2n ** 53n + 1n)).toEqual({ kind: 'error', error: new MvccError('future-revision') });
    expect(compact(INT64_MIN)).toEqual({ kind: 'error', error: new MvccError('compacted') });
  });
});
