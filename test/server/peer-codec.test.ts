import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { makeMessage, type Entry, type Message, type Snapshot } from '../../raft/index.js';
import {
  PeerProtocolError,
  batchFrameBytes,
  decodeFrame,
  encodeBatch,
  encodeHello,
  encodeRequest,
  encodeResponse,
  encodeSnapshotChunk,
  encodeSnapshotHeader,
  messageBytes,
  peerLimits,
  requestFrameOverheadBytes,
  responseFrameOverheadBytes,
  wireMessageTypes,
  type PeerAnswer,
  type ShardMessage,
} from '../../src/server/peer/index.js';

const u64 = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const smallU64 = fc.integer({ min: 0, max: 1000 });
const anyU64 = fc.oneof(u64, smallU64);
const bytes = (maxLength: number): fc.Arbitrary<Uint8Array> => fc.uint8Array({ maxLength });
const ids = fc.array(anyU64, { maxLength: 5 });

const entry: fc.Arbitrary<Entry> = fc.record({
  term: anyU64,
  index: anyU64,
  type: fc.constantFrom<Entry['type']>('normal', 'conf-change'),
  data: bytes(64),
});

const snapshot: fc.Arbitrary<Snapshot> = fc.record({
  metadata: fc.record({
    index: anyU64,
    term: anyU64,
    confState: fc.record({ voters: ids, votersOutgoing: ids, learners: ids, learnersNext: ids, autoLeave: fc.boolean() }),
  }),
  data: bytes(256),
});

const message: fc.Arbitrary<Message> = fc
  .record({
    type: fc.constantFrom(...wireMessageTypes),
    to: anyU64,
    from: anyU64,
    term: anyU64,
    logTerm: anyU64,
    index: anyU64,
    entries: fc.array(entry, { maxLength: 4 }),
    commit: anyU64,
    snapshot: fc.option(snapshot, { nil: undefined }),
    reject: fc.boolean(),
    rejectHint: anyU64,
    context: fc.option(bytes(32), { nil: undefined }),
  })
  .chain((m) => (m.type === 'MsgSnap' && m.snapshot === undefined ? snapshot.map((s) => ({ ...m, snapshot: s })) : fc.constant(m)));

const batch: fc.Arbitrary<ShardMessage[]> = fc.array(
  fc.record({ shard: fc.integer({ min: 0, max: 0xffff_ffff }), message }),
  { minLength: 1, maxLength: 6 },
);

const requestId = fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER });
const refusalCode = fc
  .tuple(fc.constantFrom(...'abz09'), fc.array(fc.constantFrom(...'az09._-'), { maxLength: peerLimits.refusalCodeBytesMax - 1 }))
  .map(([first, rest]) => first + rest.join(''));
const answer: fc.Arbitrary<PeerAnswer> = fc.oneof(
  bytes(256).map((payload) => ({ status: 'ok' as const, payload })),
  fc.record({ status: fc.constant('refused' as const), code: refusalCode, message: fc.string({ unit: 'grapheme', maxLength: 100 }).filter((m) => Buffer.byteLength(m) <= peerLimits.refusalMessageBytesMax) }),
  fc.constant({ status: 'busy' as const }),
  fc.constant({ status: 'unsupported' as const }),
);
const rpcFrame: fc.Arbitrary<Buffer> = fc.oneof(
  fc.tuple(requestId, bytes(64)).map(([id, payload]) => encodeRequest(id, payload)),
  fc.tuple(requestId, answer).map(([id, a]) => encodeResponse(id, a)),
);

/** Decoded byte fields are Uint8Array views; compare them as plain arrays of numbers. */
function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return { bytes: [...value] };
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

function onlyProtocolErrors(input: Uint8Array): void {
  try {
    decodeFrame(input);
  } catch (error) {
    if (!(error instanceof PeerProtocolError)) throw error;
  }
}

describe('peer codec', () => {
  it('round-trips batches of random messages, and messageBytes is exact', () => {
    fc.assert(
      fc.property(batch, (items) => {
        const frame = encodeBatch(items);
        expect(frame.byteLength).toBe(batchFrameBytes(items));
        const decoded = decodeFrame(frame);
        expect(decoded.kind).toBe('batch');
        if (decoded.kind !== 'batch') return;
        expect(plain(decoded.messages)).toEqual(plain(items));
      }),
      { numRuns: 300 },
    );
  });

  it('round-trips hello, snapshot header and chunk frames', () => {
    fc.assert(
      fc.property(u64, u64, u64, fc.integer({ min: 0, max: 0xffff_ffff }), (clusterId, fromId, toId, protocolVersion) => {
        const hello = { clusterId, fromId, toId, protocolVersion };
        expect(decodeFrame(encodeHello(hello))).toEqual({ kind: 'hello', hello });
      }),
    );
    fc.assert(
      fc.property(snapshot, fc.integer({ min: 0, max: 0xffff_ffff }), u64, (snap, shard, offset32) => {
        const data = new Uint8Array(snap.data.byteLength + 1).fill(7);
        const m = makeMessage({ type: 'MsgSnap', to: 2, from: 1, term: 3, snapshot: { ...snap, data } });
        const header = decodeFrame(encodeSnapshotHeader(shard, m));
        expect(header.kind).toBe('snapshot-header');
        if (header.kind !== 'snapshot-header') return;
        expect(header.totalBytes).toBe(data.byteLength);
        expect(header.shard).toBe(shard);
        expect(plain(header.message)).toEqual(plain({ ...m, snapshot: { ...m.snapshot, data: new Uint8Array(0) } }));
        const offset = offset32 % 1000;
        const chunk = decodeFrame(encodeSnapshotChunk(shard, snap.metadata.index, offset, data));
        expect(plain(chunk)).toEqual(plain({ kind: 'snapshot-chunk', shard, snapshotIndex: snap.metadata.index, offset, data }));
      }),
      { numRuns: 100 },
    );
  });

  it('random bytes never throw anything but PeerProtocolError', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), onlyProtocolErrors), { numRuns: 2000 });
    // Random bytes behind a valid header reach the deeper decoders.
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 7 }), fc.uint8Array({ maxLength: 512 }), (kind, body) => {
        onlyProtocolErrors(new Uint8Array([peerLimits.protocolVersion, kind, ...body]));
      }),
      { numRuns: 2000 },
    );
  });

  it('every truncation and every single-byte corruption of a valid frame is a PeerProtocolError or decodes', () => {
    fc.assert(
      fc.property(batch, fc.nat(), fc.integer({ min: 0, max: 255 }), (items, at, value) => {
        const frame = encodeBatch(items);
        const cut = at % frame.byteLength;
        expect(() => decodeFrame(frame.subarray(0, cut))).toThrow(PeerProtocolError);
        const corrupt = Buffer.from(frame);
        corrupt[cut] = value;
        onlyProtocolErrors(corrupt);
      }),
      { numRuns: 500 },
    );
  });

  it('refuses with clear messages: versions, kinds, enums, limits, trailing bytes, unsafe integers', () => {
    const good = encodeBatch([{ shard: 1, message: makeMessage({ type: 'MsgApp', to: 2, from: 1, term: 1 }) }]);
    const with_ = (at: number, value: number): Buffer => {
      const copy = Buffer.from(good);
      copy[at] = value;
      return copy;
    };
    expect(() => decodeFrame(with_(0, 9))).toThrow(/unsupported peer frame version 9/);
    expect(() => decodeFrame(with_(1, 77))).toThrow(/unknown peer frame kind 77/);
    expect(() => decodeFrame(with_(10, 0))).toThrow(/unknown message type code 0/);
    expect(() => decodeFrame(with_(11, 0x80))).toThrow(/unknown message flags/);
    expect(() => decodeFrame(with_(12, 0xff))).toThrow(/exceeds 2\^53/);
    expect(() => decodeFrame(Buffer.concat([good, Buffer.from([0])]))).toThrow(/trailing bytes/);
    const countAt = 2;
    const huge = Buffer.from(good);
    huge.writeUInt32BE(0xffff_ffff, countAt);
    expect(() => decodeFrame(huge)).toThrow(/message count .* exceeds the limit/);
    const empty = Buffer.from(good.subarray(0, 6));
    empty.writeUInt32BE(0, countAt);
    expect(() => decodeFrame(empty)).toThrow(/empty batch/);
    expect(() => decodeFrame(new Uint8Array(peerLimits.frameBytesMax + 1))).toThrow(/exceeds frameBytesMax/);
  });

  it('refuses to encode what cannot cross the wire', () => {
    expect(() => encodeBatch([{ shard: 1, message: makeMessage({ type: 'MsgHup' }) }])).toThrow(/local/);
    expect(() => encodeBatch([{ shard: 1, message: makeMessage({ type: 'MsgApp', term: 2 ** 53 }) }])).toThrow(TypeError);
    expect(() => encodeBatch([{ shard: -1, message: makeMessage({ type: 'MsgApp' }) }])).toThrow(TypeError);
    expect(() => encodeBatch([])).toThrow(TypeError);
    expect(messageBytes(makeMessage({ type: 'MsgHeartbeat' }))).toBe(62);
  });
});

describe('peer codec: requests and responses', () => {
  it('round-trips request frames and every kind of response, with exact overheads', () => {
    fc.assert(
      fc.property(requestId, bytes(512), (id, payload) => {
        const frame = encodeRequest(id, payload);
        expect(frame.byteLength).toBe(requestFrameOverheadBytes + payload.byteLength);
        expect(plain(decodeFrame(frame))).toEqual(plain({ kind: 'request', id, payload }));
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(requestId, answer, (id, a) => {
        const frame = encodeResponse(id, a);
        if (a.status === 'ok') expect(frame.byteLength).toBe(responseFrameOverheadBytes + a.payload.byteLength);
        expect(plain(decodeFrame(frame))).toEqual(plain({ kind: 'response', id, answer: a }));
      }),
      { numRuns: 300 },
    );
    expect(requestFrameOverheadBytes).toBeLessThanOrEqual(peerLimits.requestFrameHeaderBytesMax);
    expect(responseFrameOverheadBytes + 4).toBeLessThanOrEqual(peerLimits.requestFrameHeaderBytesMax);
  });

  it('every truncation and every single-byte corruption is a PeerProtocolError or decodes', () => {
    fc.assert(
      fc.property(rpcFrame, fc.nat(), fc.integer({ min: 0, max: 255 }), (frame, at, value) => {
        const cut = at % frame.byteLength;
        expect(() => decodeFrame(frame.subarray(0, cut))).toThrow(PeerProtocolError);
        const corrupt = Buffer.from(frame);
        corrupt[cut] = value;
        onlyProtocolErrors(corrupt);
      }),
      { numRuns: 1000 },
    );
  });

  it('refuses reserved ids, unknown statuses, bad codes, bad UTF-8 and lengths beyond the limits', () => {
    const request = encodeRequest(7, new Uint8Array([1, 2, 3]));
    const zeroId = Buffer.from(request);
    zeroId.fill(0, 2, 10);
    expect(() => decodeFrame(zeroId)).toThrow(/request id 0/);
    const hugeRequest = Buffer.from(request);
    hugeRequest.writeUInt32BE(peerLimits.requestPayloadBytesMax + 1, 10);
    expect(() => decodeFrame(hugeRequest)).toThrow(/request payload of \d+ bytes exceeds the limit/);
    const lying = Buffer.from(request);
    lying.writeUInt32BE(4, 10);
    expect(() => decodeFrame(lying)).toThrow(/truncated/);
    expect(() => decodeFrame(Buffer.concat([request, Buffer.from([0])]))).toThrow(/trailing bytes/);

    const busy = encodeResponse(7, { status: 'busy' });
    const badStatus = Buffer.from(busy);
    badStatus[10] = 4;
    expect(() => decodeFrame(badStatus)).toThrow(/unknown response status 4/);
    const ok = encodeResponse(7, { status: 'ok', payload: new Uint8Array(2) });
    const hugeResponse = Buffer.from(ok);
    hugeResponse.writeUInt32BE(peerLimits.responsePayloadBytesMax + 1, 11);
    expect(() => decodeFrame(hugeResponse)).toThrow(/response payload of \d+ bytes exceeds the limit/);

    const refusal = encodeResponse(7, { status: 'refused', code: 'ab', message: 'xy' });
    // header 2 | id 8 | status 1 | code length 4 | 'ab' | message length 4 | 'xy'
    const upper = Buffer.from(refusal);
    upper[15] = 'A'.charCodeAt(0);
    expect(() => decodeFrame(upper)).toThrow(/refusal code is not a token/);
    const emptyCode = Buffer.concat([refusal.subarray(0, 11), Buffer.from([0, 0, 0, 0]), refusal.subarray(17)]);
    expect(() => decodeFrame(emptyCode)).toThrow(/refusal code is not a token/);
    const longCode = Buffer.from(refusal);
    longCode.writeUInt32BE(peerLimits.refusalCodeBytesMax + 1, 11);
    expect(() => decodeFrame(longCode)).toThrow(/refusal code of \d+ bytes exceeds the limit/);
    const badUtf8 = Buffer.from(refusal);
    badUtf8[21] = 0xff;
    expect(() => decodeFrame(badUtf8)).toThrow(/not UTF-8/);
    const longMessage = Buffer.from(refusal);
    longMessage.writeUInt32BE(peerLimits.refusalMessageBytesMax + 1, 17);
    expect(() => decodeFrame(longMessage)).toThrow(/refusal message of \d+ bytes exceeds the limit/);
  });

  it('refuses to encode what the other side would refuse', () => {
    expect(() => encodeRequest(0, new Uint8Array(0))).toThrow(TypeError);
    expect(() => encodeRequest(2 ** 53, new Uint8Array(0))).toThrow(TypeError);
    expect(() => encodeRequest(1, new Uint8Array(peerLimits.requestPayloadBytesMax + 1))).toThrow(TypeError);
    expect(() => encodeResponse(1, { status: 'ok', payload: new Uint8Array(peerLimits.responsePayloadBytesMax + 1) })).toThrow(TypeError);
    expect(() => encodeResponse(1, { status: 'refused', code: 'Bad', message: '' })).toThrow(TypeError);
    expect(() => encodeResponse(1, { status: 'refused', code: 'ok', message: 'x'.repeat(peerLimits.refusalMessageBytesMax + 1) })).toThrow(TypeError);
    // The largest payloads fit a frame.
    expect(decodeFrame(encodeRequest(1, new Uint8Array(peerLimits.requestPayloadBytesMax))).kind).toBe('request');
  });
});
