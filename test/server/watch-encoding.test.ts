/** Watch responses built from pre-encoded events decode exactly as protobufjs's own encoding. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { eventToWire } from '../../src/engines/kv/convert.js';
import { etcdType } from '../../src/etcd-proto.js';
import { EventsResponse, encodeEvent, serializeWatchResponse, watchFrames } from '../../src/server/watch-service.js';
import type { KeyValue, MvccEvent } from '../../storage/index.js';

const WatchResponse = etcdType('etcdserverpb.WatchResponse');
const ResponseHeader = etcdType('etcdserverpb.ResponseHeader');

const bytes = fc.uint8Array({ minLength: 0, maxLength: 12 });
const keyValue: fc.Arbitrary<KeyValue> = fc.record({
  key: fc.uint8Array({ minLength: 1, maxLength: 12 }),
  value: bytes,
  createRevision: fc.integer({ min: 1, max: 2 ** 40 }),
  modRevision: fc.integer({ min: 1, max: 2 ** 40 }),
  version: fc.integer({ min: 1, max: 1000 }),
  // Lease ids over the whole int64 range: they must reach the client exactly.
  lease: fc.oneof(fc.constantFrom(0n, 7n, 2n ** 35n, 2n ** 53n + 1n, 2n ** 63n - 1n, -(2n ** 63n), -1n), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })),
});
/** Watch ids the client may choose: any safe integer, negative ones included (etcd echoes them). */
const watchIdArb = fc.oneof(
  fc.integer({ min: 0, max: 2 ** 40 }),
  fc.integer({ min: -(2 ** 40), max: -1 }),
  fc.constantFrom(Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, -1),
);
const event: fc.Arbitrary<MvccEvent> = fc.record(
  { type: fc.constantFrom('put' as const, 'delete' as const), kv: keyValue, prevKv: keyValue },
  { requiredKeys: ['type', 'kv'] },
);
const header = fc.record({
  cluster_id: fc.integer({ min: 0, max: 2 ** 52 }),
  member_id: fc.integer({ min: 0, max: 2 ** 52 }),
  revision: fc.integer({ min: 1, max: 2 ** 45 }),
  raft_term: fc.integer({ min: 0, max: 1000 }),
});

function decoded(bytes: Uint8Array): unknown {
  return WatchResponse.toObject(WatchResponse.decode(bytes), { longs: String, bytes: String, defaults: true });
}

describe('serializeWatchResponse', () => {
  it('writes pre-encoded events that decode to the same response as a direct encoding', () => {
    fc.assert(
      fc.property(header, watchIdArb, fc.array(event, { maxLength: 6 }), fc.boolean(), (h, watchId, events, fragment) => {
        const fast = serializeWatchResponse(
          new EventsResponse(ResponseHeader.encode(h).finish(), watchId, events.map(encodeEvent), fragment),
        );
        const direct = WatchResponse.encode({ header: h, watch_id: watchId, fragment, events: events.map(eventToWire) }).finish();
        expect(decoded(fast)).toEqual(decoded(direct));
        expect(fast.length).toBe(direct.length);
        const got = decoded(fast) as { watch_id: string; events: Array<{ kv: { lease: string }; prev_kv: { lease: string } | null }> };
        expect(got.watch_id).toBe(String(watchId));
        expect(got.events.map((e) => BigInt(e.kv.lease))).toEqual(events.map((e) => e.kv.lease));
      }),
      { numRuns: 300, seed: 4242 },
    );
  });

  it('encodes an event once per prevKv variant and reuses it', () => {
    const kv: KeyValue = { key: Buffer.from('k'), value: Buffer.from('v'), createRevision: 2, modRevision: 3, version: 2, lease: 0n };
    const prevKv: KeyValue = { ...kv, value: Buffer.from('old'), modRevision: 2, version: 1 };
    const withPrev = encodeEvent({ type: 'put', kv, prevKv });
    const without = encodeEvent({ type: 'put', kv });
    expect(encodeEvent({ type: 'put', kv, prevKv })).toBe(withPrev);
    expect(encodeEvent({ type: 'put', kv })).toBe(without);
    expect(withPrev.length).toBeGreaterThan(without.length);
  });

  it('leaves control responses (created, canceled, progress) to protobufjs', () => {
    const response = { header: { revision: 9 }, watch_id: -1, canceled: true, cancel_reason: 'x', compact_revision: 4 };
    expect(decoded(serializeWatchResponse(response))).toEqual(decoded(WatchResponse.encode(response).finish()));
  });

  it('frames a response as one gRPC message: flag 0, big-endian length, then the message', () => {
    const h = ResponseHeader.encode({ cluster_id: 1, member_id: 2, revision: 300, raft_term: 4 }).finish();
    const kv: KeyValue = { key: Buffer.from('k'), value: Buffer.alloc(300, 1), createRevision: 2, modRevision: 300, version: 7, lease: 0n };
    for (const response of [new EventsResponse(h, 2 ** 33, [encodeEvent({ type: 'put', kv })], true), { header: { revision: 9 }, watch_id: 3, created: true }]) {
      const frame = Buffer.alloc(watchFrames.bytes(response));
      watchFrames.write(response, frame, 0);
      expect(frame[0]).toBe(0);
      expect(frame.readUInt32BE(1)).toBe(frame.length - 5);
      expect(Buffer.compare(frame.subarray(5), serializeWatchResponse(response))).toBe(0);
    }
  });
});
