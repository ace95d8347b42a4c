import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type ConfChange,
  type ConfChangeSingle,
  ConfChangeDecodeError,
  LEAVE_JOINT,
  decodeConfChange,
  encodeConfChange,
  isLeaveJoint,
} from '../../../raft/index.js';

const confChange: fc.Arbitrary<ConfChange> = fc.record({
  transition: fc.constantFrom('auto', 'joint-implicit', 'joint-explicit'),
  changes: fc.array(
    fc.record({
      type: fc.constantFrom<ConfChangeSingle['type']>('add-voter', 'add-learner', 'remove', 'update'),
      nodeId: fc.oneof(fc.nat({ max: 10 }), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })),
    }),
    { maxLength: 6 },
  ),
  context: fc.uint8Array({ maxLength: 20 }),
});

function plain(cc: ConfChange): unknown {
  return { transition: cc.transition, changes: cc.changes.map((c) => ({ ...c })), context: Array.from(cc.context) };
}

const sample: ConfChange = {
  transition: 'joint-explicit',
  changes: [
    { type: 'add-voter', nodeId: 2 },
    { type: 'remove', nodeId: 0x1_0000_0001 },
  ],
  context: new Uint8Array([0xaa, 0xbb]),
};

describe('ConfChange encoding', () => {
  it('round-trips every change (property)', () => {
    fc.assert(
      fc.property(confChange, (cc) => {
        expect(plain(decodeConfChange(encodeConfChange(cc)))).toEqual(plain(cc));
      }),
      { numRuns: 200 },
    );
  });

  it('has the documented layout', () => {
    expect(Array.from(encodeConfChange(sample))).toEqual([
      1, // version
      2, // joint-explicit
      0, 0, 0, 2, // two changes
      0, 0, 0, 0, 0, 0, 0, 0, 2, // add-voter 2
      2, 0, 0, 0, 1, 0, 0, 0, 1, // remove 2^32 + 1
      0, 0, 0, 2, 0xaa, 0xbb, // context
    ]);
  });

  it('keeps the largest safe node id exact', () => {
    const cc: ConfChange = { transition: 'auto', changes: [{ type: 'add-learner', nodeId: Number.MAX_SAFE_INTEGER }], context: new Uint8Array(0) };
    expect(decodeConfChange(encodeConfChange(cc)).changes[0]!.nodeId).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('encodes the leave-joint change as an empty payload, and decodes an empty payload as it', () => {
    expect(encodeConfChange(LEAVE_JOINT).byteLength).toBe(0);
    const decoded = decodeConfChange(new Uint8Array(0));
    expect(isLeaveJoint(decoded)).toBe(true);
    expect(plain(decoded)).toEqual({ transition: 'auto', changes: [], context: [] });
  });

  it('decodes the long form of the empty change as leave-joint too', () => {
    const longForm = new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(isLeaveJoint(decodeConfChange(longForm))).toBe(true);
  });

  it('keeps a context on an otherwise empty change', () => {
    const cc: ConfChange = { transition: 'auto', changes: [], context: new Uint8Array([1]) };
    expect(encodeConfChange(cc).byteLength).toBeGreaterThan(0);
    expect(plain(decodeConfChange(encodeConfChange(cc)))).toEqual(plain(cc));
  });

  it('refuses negative and non-integer node ids', () => {
    for (const nodeId of [-1, 1.5, Number.NaN, 2 ** 53]) {
      const cc: ConfChange = { transition: 'auto', changes: [{ type: 'add-voter', nodeId }], context: new Uint8Array(0) };
      expect(() => encodeConfChange(cc)).toThrow(TypeError);
    }
  });

  it('decodes from a view into a larger buffer', () => {
    const encoded = encodeConfChange(sample);
    const buffer = new Uint8Array(encoded.byteLength + 7).fill(0xee);
    buffer.set(encoded, 3);
    const view = buffer.subarray(3, 3 + encoded.byteLength);
    expect(plain(decodeConfChange(view))).toEqual(plain(sample));
  });

  it('returns a context that does not alias the input', () => {
    const encoded = encodeConfChange(sample);
    const decoded = decodeConfChange(encoded);
    encoded[encoded.byteLength - 1] = 0;
    expect(Array.from(decoded.context)).toEqual([0xaa, 0xbb]);
  });
});

/**
 * Whatever decodes must encode back to the same bytes, except the long form of the empty change,
 * which encodes to the short (empty) form.
 */
function expectCanonical(bytes: Uint8Array, cc: ConfChange): void {
  const reencoded = Array.from(encodeConfChange(cc));
  if (isLeaveJoint(cc) && cc.context.byteLength === 0) expect(reencoded).toEqual([]);
  else expect(reencoded).toEqual(Array.from(bytes));
}

describe('ConfChange decoding errors', () => {
  const encoded = encodeConfChange(sample);

  it('throws ConfChangeDecodeError on every truncation', () => {
    for (let length = 1; length < encoded.byteLength; length++) {
      expect(() => decodeConfChange(encoded.slice(0, length)), `length ${length}`).toThrow(ConfChangeDecodeError);
    }
  });

  it('throws on trailing bytes', () => {
    const longer = new Uint8Array(encoded.byteLength + 1);
    longer.set(encoded);
    expect(() => decodeConfChange(longer)).toThrow(ConfChangeDecodeError);
  });

  it('throws on an unknown version, transition or change type', () => {
    const corrupt = (at: number, value: number): Uint8Array => {
      const copy = encoded.slice();
      copy[at] = value;
      return copy;
    };
    expect(() => decodeConfChange(corrupt(0, 2))).toThrow(/version/);
    expect(() => decodeConfChange(corrupt(0, 0))).toThrow(ConfChangeDecodeError);
    expect(() => decodeConfChange(corrupt(1, 3))).toThrow(/transition/);
    expect(() => decodeConfChange(corrupt(6, 4))).toThrow(/type/);
  });

  it('throws on a node id beyond 2^53', () => {
    const copy = encoded.slice();
    copy[7] = 0xff; // high word of the first node id
    expect(() => decodeConfChange(copy)).toThrow(ConfChangeDecodeError);
  });

  it('throws on a huge change count without reading past the input', () => {
    const copy = encoded.slice();
    copy.set([0xff, 0xff, 0xff, 0xff], 2);
    expect(() => decodeConfChange(copy)).toThrow(ConfChangeDecodeError);
  });

  it('never throws anything but ConfChangeDecodeError on garbage (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), (bytes) => {
        try {
          expectCanonical(bytes, decodeConfChange(bytes));
        } catch (error) {
          expect(error).toBeInstanceOf(ConfChangeDecodeError);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('decodes valid-looking garbage that starts with the version byte', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 40 }), fc.nat({ max: 2 }), (tail, transition) => {
        const bytes = new Uint8Array([1, transition, ...tail]);
        try {
          expectCanonical(bytes, decodeConfChange(bytes));
        } catch (error) {
          expect(error).toBeInstanceOf(ConfChangeDecodeError);
        }
      }),
      { numRuns: 200 },
    );
  });
});
