/** The command envelope: exact round trips, the legacy format, stamping, and refusal of garbage. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ENVELOPE_HEADER_BYTES, EnvelopeDecodeError, decodeEnvelope, encodeEnvelope, envelopeOrigin } from '../../src/runtime/index.js';
import { ENVELOPE_FORMAT, ENVELOPE_FORMAT_CALLER, sameCommand, stampEnvelope } from '../../src/runtime/envelope.js';
import { writeU64 } from '../../storage/index.js';

/** Format 1, earlier builds' (envelope.ts keeps its constant private). */
const LEGACY_FORMAT_BYTE = 1;
const safeId = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const envelope = fc.record({
  engine: fc.integer({ min: 0, max: 255 }),
  version: fc.integer({ min: 0, max: 255 }),
  kind: fc.integer({ min: 0, max: 255 }),
  timestampMs: safeId,
  proposer: safeId,
  requestId: safeId,
  payload: fc.uint8Array({ maxLength: 64 }),
});

describe('command envelope', () => {
  it('round-trips every field exactly (property)', () => {
    fc.assert(
      fc.property(envelope, (e) => {
        const bytes = encodeEnvelope(e);
        expect(bytes.length).toBe(ENVELOPE_HEADER_BYTES + e.payload.length);
        const decoded = decodeEnvelope(bytes);
        expect({ ...decoded, payload: [...decoded.payload] }).toEqual({ ...e, payload: [...e.payload] });
        expect(envelopeOrigin(bytes)).toEqual({ proposer: e.proposer, requestId: e.requestId });
      }),
    );
  });

  it('decodes the format-1 KV commands of earlier builds as the legacy engine', () => {
    const legacy = new Uint8Array(18 + 3);
    legacy[0] = 1;
    legacy[1] = 3; // a txn
    writeU64(legacy, 2, 0xabc);
    writeU64(legacy, 10, 42);
    legacy.set([7, 8, 9], 18);
    const decoded = decodeEnvelope(legacy);
    expect({ engine: decoded.engine, version: decoded.version, kind: decoded.kind, proposer: decoded.proposer, requestId: decoded.requestId }).toEqual({
      engine: 0,
      version: 1,
      kind: 3,
      proposer: 0xabc,
      requestId: 42,
    });
    expect([...decoded.payload]).toEqual([7, 8, 9]);
    expect(envelopeOrigin(legacy)).toEqual({ proposer: 0xabc, requestId: 42 });
  });

  it('a leader stamps its clock into a copy; the command stays the same command', () => {
    const original = encodeEnvelope({ engine: 2, version: 1, kind: 1, timestampMs: 5, proposer: 9, requestId: 11, payload: new Uint8Array([1, 2]) });
    const stamped = stampEnvelope(original, 123_456);
    expect(decodeEnvelope(original).timestampMs).toBe(5);
    expect(decodeEnvelope(stamped).timestampMs).toBe(123_456);
    expect(sameCommand(original, stamped)).toBe(true);
    const other = encodeEnvelope({ engine: 2, version: 1, kind: 1, timestampMs: 5, proposer: 9, requestId: 11, payload: new Uint8Array([1, 3]) });
    expect(sameCommand(original, other)).toBe(false);
  });

  it('refuses short, unknown or out-of-range headers with a clear error', () => {
    expect(() => decodeEnvelope(new Uint8Array(5).fill(2))).toThrow(EnvelopeDecodeError);
    const unknown = new Uint8Array(ENVELOPE_HEADER_BYTES);
    unknown[0] = 9;
    expect(() => decodeEnvelope(unknown)).toThrow(/unknown command envelope format 9/);
    const huge = encodeEnvelope({ engine: 2, version: 1, kind: 1, timestampMs: 0, proposer: 1, requestId: 1, payload: new Uint8Array(0) });
    huge.fill(0xff, 12, 20);
    expect(() => decodeEnvelope(huge)).toThrow(/beyond 2\^53/);
    expect(() => encodeEnvelope({ engine: 256, version: 1, kind: 1, timestampMs: 0, proposer: 1, requestId: 1, payload: new Uint8Array(0) })).toThrow(TypeError);
  });

  it('never throws anything but its own error on arbitrary bytes (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          decodeEnvelope(bytes);
        } catch (error) {
          expect(error).toBeInstanceOf(EnvelopeDecodeError);
        }
      }),
    );
  });
});

describe('command envelope with a caller (format 3)', () => {
  const caller = fc.record({ user: fc.string({ maxLength: 40 }), authRevision: safeId });

  it('round-trips the caller and every other field, and stamping keeps the caller (property)', () => {
    fc.assert(
      fc.property(envelope, caller, fc.integer({ min: 0, max: 2 ** 40 }), (e, who, now) => {
        const bytes = encodeEnvelope({ ...e, caller: who });
        expect(bytes[0]).toBe(3);
        const decoded = decodeEnvelope(bytes);
        expect({ ...decoded, payload: [...decoded.payload] }).toEqual({ ...e, caller: who, payload: [...e.payload] });
        expect(envelopeOrigin(bytes)).toEqual({ proposer: e.proposer, requestId: e.requestId });
        const stamped = stampEnvelope(bytes, now);
        expect(decodeEnvelope(stamped).caller).toEqual(who);
        expect(decodeEnvelope(stamped).timestampMs).toBe(now);
        expect(sameCommand(bytes, stamped)).toBe(true);
      }),
    );
  });

  it('sameCommand: equal but for the timestamp of a current-format command, one flipped byte anywhere else tells', () => {
    // The timestamp's bytes: after format, engine, version and kind; a u64.
    const timestampFrom = 4;
    const timestampTo = 12;
    const reference = (a: Uint8Array, b: Uint8Array): boolean => {
      if (a.length !== b.length) return false;
      const current = a.length >= ENVELOPE_HEADER_BYTES && (a[0] === ENVELOPE_FORMAT || a[0] === ENVELOPE_FORMAT_CALLER);
      for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(current && i >= timestampFrom && i < timestampTo)) return false;
      return true;
    };
    const edges = [0, 3, timestampFrom, timestampTo - 1, timestampTo, ENVELOPE_HEADER_BYTES - 1, ENVELOPE_HEADER_BYTES];
    const flipAt = fc.oneof(fc.constantFrom(...edges, -1), fc.nat());
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300, size: 'max' }), fc.constantFrom(LEGACY_FORMAT_BYTE, ENVELOPE_FORMAT, ENVELOPE_FORMAT_CALLER, 9), flipAt, fc.integer({ min: 1, max: 255 }), (bytes, format, at, flip) => {
        const a = Uint8Array.from(bytes);
        if (a.length > 0) a[0] = format;
        const b = a.slice();
        // -1: the last byte.
        if (b.length > 0) b[at < 0 ? b.length - 1 : at % b.length]! ^= flip;
        expect(sameCommand(a, b)).toBe(reference(a, b));
        expect(sameCommand(a, a.slice())).toBe(true);
        expect(sameCommand(a, a.subarray(0, Math.max(0, a.length - 1)))).toBe(a.length === 0);
      }),
      { numRuns: 2000 },
    );
    // Both sides of the timestamp, in a current-format command long enough to have one.
    const command = encodeEnvelope({ engine: 2, version: 1, kind: 1, timestampMs: 5, proposer: 9, requestId: 11, payload: new Uint8Array(40) });
    for (let i = 0; i < command.length; i++) {
      const other = command.slice();
      other[i]! ^= 0x80;
      expect(sameCommand(command, other), `byte ${i}`).toBe(i >= timestampFrom && i < timestampTo);
    }
  });

  it('two commands that differ only in their caller are not the same command', () => {
    const base = { engine: 2, version: 1, kind: 1, timestampMs: 5, proposer: 1, requestId: 9, payload: Uint8Array.of(1, 2, 3) };
    const alice = encodeEnvelope({ ...base, caller: { user: 'alice', authRevision: 3 } });
    const bob = encodeEnvelope({ ...base, caller: { user: 'bobby', authRevision: 3 } });
    expect(sameCommand(alice, bob)).toBe(false);
    expect(sameCommand(alice, encodeEnvelope(base))).toBe(false);
  });

  it('refuses a caller cut off, a user name that is not UTF-8, and a revision past 2^53', () => {
    const good = encodeEnvelope({ engine: 2, version: 1, kind: 1, timestampMs: 5, proposer: 1, requestId: 9, payload: new Uint8Array(0), caller: { user: 'ab', authRevision: 1 } });
    expect(() => decodeEnvelope(good.subarray(0, ENVELOPE_HEADER_BYTES + 5))).toThrow(EnvelopeDecodeError);
    expect(() => decodeEnvelope(good.subarray(0, good.length - 1))).toThrow(EnvelopeDecodeError);
    const badUtf8 = good.slice();
    badUtf8[ENVELOPE_HEADER_BYTES + 10] = 0xff;
    expect(() => decodeEnvelope(badUtf8)).toThrow(EnvelopeDecodeError);
    const huge = good.slice();
    huge[ENVELOPE_HEADER_BYTES] = 0xff; // the top byte, whichever end the u64 keeps it at
    huge[ENVELOPE_HEADER_BYTES + 7] = 0xff;
    expect(() => decodeEnvelope(huge)).toThrow(EnvelopeDecodeError);
    expect(() => encodeEnvelope({ engine: 2, version: 1, kind: 1, timestampMs: 5, proposer: 1, requestId: 9, payload: new Uint8Array(0), caller: { user: 'x'.repeat(0x10000), authRevision: 1 } })).toThrow(TypeError);
  });
});
