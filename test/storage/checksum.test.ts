/** CRC-32C: the standard check value, chaining, and agreement with the byte-at-a-time definition. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { crc32c } from '../../storage/checksum.js';

/** The definition, one bit at a time (slow, obviously right). */
function reference(data: Uint8Array, previous = 0): number {
  let crc = ~previous >>> 0;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return ~crc >>> 0;
}

describe('crc32c', () => {
  it('gives the standard check value for "123456789"', () => {
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0))).toBe(0);
  });

  it('agrees with the bitwise definition and chains like one pass (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ maxLength: 50 }), fc.nat({ max: 20 }), (a, b, offset) => {
        expect(crc32c(a)).toBe(reference(a));
        const joined = new Uint8Array([...a, ...b]);
        expect(crc32c(b, crc32c(a))).toBe(crc32c(joined));
        // Unaligned views into a larger buffer give the same answer.
        const padded = new Uint8Array(offset + a.length);
        padded.set(a, offset);
        expect(crc32c(padded.subarray(offset))).toBe(crc32c(a));
      }),
      { numRuns: 300 },
    );
  });
});
