/**
 * fast-check arbitraries of malformed protobuf for the fuzz suites: random bytes, streams of
 * protobuf-shaped tokens that lie (truncated and overlong varints, length prefixes past the end or
 * near 2^64, unbalanced groups, reserved wire types, nesting hundreds deep), a method's own fields
 * sent with the wrong wire type, and gRPC message prefixes that lie (for raw HTTP/2 requests).
 */
import fc from 'fast-check';
import protobuf from 'protobufjs';

/** A varint of any unsigned 64-bit value (protobuf's base-128 encoding). */
export function varint(value: bigint): Buffer {
  const out: number[] = [];
  let v = BigInt.asUintN(64, value);
  do {
    const low = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v === 0n ? low : low | 0x80);
  } while (v !== 0n);
  return Buffer.from(out);
}

export function tag(field: number, wireType: number): Buffer {
  return varint((BigInt(field) << 3n) | BigInt(wireType));
}

const fieldNumber = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 16 }) },
  // Field 0 is invalid; 19000-19999 are reserved; 2^29 - 1 is the largest.
  { weight: 1, arbitrary: fc.constantFrom(0, 19_000, 2 ** 29 - 1) },
);

/** Sizes a length prefix may claim: small, exact, past the end, or absurd. */
const lengthClaim = fc.oneof(
  fc.integer({ min: 0, max: 40 }).map(BigInt),
  fc.constantFrom(2n ** 31n - 1n, 2n ** 32n - 1n, 2n ** 63n - 1n, 2n ** 64n - 1n, 1_572_864n, 1_572_865n),
);

const varintValue = fc.oneof(
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  fc.constantFrom(0n, 1n, 2n ** 53n + 1n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n),
);

/** One protobuf-shaped token; `depth` bounds the nested messages drawn inside. */
function token(depth: number): fc.Arbitrary<Buffer> {
  const leaves: Array<fc.Arbitrary<Buffer>> = [
    fc.tuple(fieldNumber, varintValue).map(([f, v]) => Buffer.concat([tag(f, 0), varint(v)])),
    // An overlong varint (11 bytes), and one cut off after its continuation bits.
    fieldNumber.map((f) => Buffer.concat([tag(f, 0), Buffer.alloc(11, 0xff)])),
    fieldNumber.map((f) => Buffer.concat([tag(f, 0), Buffer.from([0x80, 0x80])])),
    fc.tuple(fieldNumber, lengthClaim, fc.uint8Array({ maxLength: 24 })).map(([f, n, bytes]) => Buffer.concat([tag(f, 2), varint(n), bytes])),
    fc.tuple(fieldNumber, fc.uint8Array({ maxLength: 24 })).map(([f, bytes]) => Buffer.concat([tag(f, 2), varint(BigInt(bytes.length)), bytes])),
    fc.tuple(fieldNumber, fc.uint8Array({ maxLength: 8 })).map(([f, bytes]) => Buffer.concat([tag(f, 1), bytes])),
    fc.tuple(fieldNumber, fc.uint8Array({ maxLength: 4 })).map(([f, bytes]) => Buffer.concat([tag(f, 5), bytes])),
    // Groups (wire types 3 and 4), balanced or not, and the undefined wire types 6 and 7.
    fieldNumber.map((f) => tag(f, 3)),
    fieldNumber.map((f) => tag(f, 4)),
    fc.tuple(fieldNumber, fc.constantFrom(6, 7)).map(([f, w]) => tag(f, w)),
    // A message nested hundreds deep in one field.
    fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 50, max: 400 })).map(([f, levels]) => nested(f, levels, Buffer.alloc(0))),
  ];
  if (depth > 0) {
    leaves.push(
      fc.tuple(fieldNumber, fc.array(token(depth - 1), { maxLength: 4 })).map(([f, inner]) => {
        const body = Buffer.concat(inner);
        return Buffer.concat([tag(f, 2), varint(BigInt(body.length)), body]);
      }),
      fc.tuple(fieldNumber, fc.array(token(depth - 1), { maxLength: 3 })).map(([f, inner]) => Buffer.concat([tag(f, 3), ...inner, tag(f, 4)])),
    );
  }
  return fc.oneof(...leaves);
}

/** `levels` messages, each field `field` of the one around it, around `inner`. */
export function nested(field: number, levels: number, inner: Buffer): Buffer {
  let body = inner;
  for (let i = 0; i < levels; i++) body = Buffer.concat([tag(field, 2), varint(BigInt(body.length)), body]);
  return body;
}

/** Bytes that look like protobuf and are not (or are, by chance: then a valid request). */
export const protobufTokens: fc.Arbitrary<Buffer> = fc.array(token(2), { minLength: 1, maxLength: 8 }).map((parts) => Buffer.concat(parts));

/** Random bytes. */
export const randomBytes: fc.Arbitrary<Buffer> = fc.uint8Array({ minLength: 0, maxLength: 96 }).map((bytes) => Buffer.from(bytes));

/** The wire type protobuf uses for a field of `type` (not packed). */
function wireTypeOf(field: protobuf.Field): number {
  if (field.resolvedType instanceof protobuf.Type) return 2;
  switch (field.type) {
    case 'string':
    case 'bytes':
      return 2;
    case 'fixed32':
    case 'sfixed32':
    case 'float':
      return 5;
    case 'fixed64':
    case 'sfixed64':
    case 'double':
      return 1;
    default:
      return 0;
  }
}

function payloadOf(wireType: number): fc.Arbitrary<Buffer> {
  switch (wireType) {
    case 0:
      return varintValue.map(varint);
    case 1:
      return fc.uint8Array({ minLength: 8, maxLength: 8 }).map(Buffer.from);
    case 5:
      return fc.uint8Array({ minLength: 4, maxLength: 4 }).map(Buffer.from);
    case 2:
      return fc.uint8Array({ maxLength: 16 }).map((b) => Buffer.concat([varint(BigInt(b.length)), b]));
    default:
      return fc.constant(Buffer.alloc(0));
  }
}

/**
 * One of `type`'s own fields (or of a message inside it) on the wire with a wire type it does not
 * have: a key as a varint, a revision as bytes, a nested request as a fixed64 …
 */
export function wrongTypeField(type: protobuf.Type, depth = 2): fc.Arbitrary<Buffer> {
  const fields = type.fieldsArray;
  if (fields.length === 0) return fc.tuple(fieldNumber, fc.constantFrom(0, 1, 2, 5)).chain(([f, w]) => payloadOf(w).map((p) => Buffer.concat([tag(f, w), p])));
  return fc.constantFrom(...fields).chain((field) => {
    const right = wireTypeOf(field);
    const wrong = fc.constantFrom(...[0, 1, 2, 5].filter((w) => w !== right || (right === 2 && field.resolvedType instanceof protobuf.Type)));
    const direct = wrong.chain((w) => {
      if (w === 2 && field.resolvedType instanceof protobuf.Type && depth > 0) {
        // The right wire type, with a wrongly typed field inside the nested message.
        return wrongTypeField(field.resolvedType, depth - 1).map((inner) => Buffer.concat([tag(field.id, 2), varint(BigInt(inner.length)), inner]));
      }
      return payloadOf(w).map((p) => Buffer.concat([tag(field.id, w), p]));
    });
    return direct;
  });
}

/** A valid-looking message of `type` with one or more of its fields wrongly typed, in any order. */
export function wrongTypes(type: protobuf.Type): fc.Arbitrary<Buffer> {
  return fc.array(wrongTypeField(type), { minLength: 1, maxLength: 3 }).map((parts) => Buffer.concat(parts));
}

/**
 * A gRPC request body as it goes on the HTTP/2 stream: message prefixes (compression flag and a
 * 4-byte length) that may lie about what follows, then bytes.
 */
export const lyingGrpcFrames: fc.Arbitrary<Buffer> = fc
  .array(
    fc.tuple(
      fc.constantFrom(0, 1, 2, 0xff),
      fc.oneof(fc.integer({ min: 0, max: 64 }), fc.constantFrom(0xffff_ffff, 0x7fff_ffff, 2_097_152, 2_097_153)),
      fc.uint8Array({ maxLength: 48 }),
    ),
    { minLength: 0, maxLength: 3 },
  )
  .chain((frames) =>
    fc.integer({ min: 0, max: 4 }).map((cut) => {
      const body = Buffer.concat(
        frames.map(([flag, length, bytes]) => {
          const prefix = Buffer.alloc(5);
          prefix[0] = flag;
          prefix.writeUInt32BE(length >>> 0, 1);
          return Buffer.concat([prefix, bytes]);
        }),
      );
      // Sometimes the last prefix itself is cut short.
      return cut === 0 || body.length < cut ? body : body.subarray(0, body.length - cut);
    }),
  );
