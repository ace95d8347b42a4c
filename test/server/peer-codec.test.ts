import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { makeMessage, type Entry, type Message, type Snapshot } from '../../raft/index';
import {
  PeerProtocolError,
  batchFrameBytes,
  decodeFrame,
  encodeBatch,
  encodeHello,
  encodeSnapshotChunk,
  encodeSnapshotHeader,
  messageBytes,
  peerLimits,
  wireMessageTypes,
  type ShardMessage,
} from '../../src/server/peer/index';

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
      fc.property(fc.integer({ min: 1, max: 5 }), fc.uint8Array({ maxLength: 512 }), (kind, body) => {
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
