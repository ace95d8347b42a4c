/**
 * A Range merged from parts answers exactly what one store answers for the whole range: random
 * stores (puts, overwrites, deletes), random requests (limits, every sort order and target,
 * keys_only, count_only, revision filters) and random cuts of the range into parts, each part
 * read from the same store, must give the same keys, `more` and `count` as the unsplit range.
 * Every other part is read as another member serves it (forwarding.ts): its request and answer
 * go through their wire forms, and it answers later (a promise).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MvccStore, type RangeRequest } from '../../storage/index.js';
import { mergeRange } from '../../src/server/range-merge.js';
import { rangeFromWire, rangeRequestToWire, rangeResponseFromWire, rangeToWire } from '../../src/engines/kv/convert.js';

const alphabet = ['a', 'b', 'c', '\xff'];
const key = fc.array(fc.constantFrom(...alphabet), { minLength: 1, maxLength: 3 }).map((cs) => Buffer.from(cs.join(''), 'latin1'));
const compare = (a: Uint8Array, b: Uint8Array): number => Buffer.compare(Buffer.from(a), Buffer.from(b));

describe('mergeRange', () => {
  it('answers as one store answers the unsplit range', async () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('put' as const), key, value: fc.constantFrom('x', 'yy', 'z', '') }),
      fc.record({ kind: fc.constant('del' as const), key }),
    );
    const request = fc.record({
      limit: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 6 })),
      sortOrder: fc.constantFrom('none', 'ascend', 'descend') as fc.Arbitrary<'none' | 'ascend' | 'descend'>,
      sortTarget: fc.constantFrom('key', 'version', 'create', 'mod', 'value') as fc.Arbitrary<'key' | 'version' | 'create' | 'mod' | 'value'>,
      keysOnly: fc.boolean(),
      countOnly: fc.boolean(),
      minModRevision: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 20 })),
      maxCreateRevision: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 20 })),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 25 }), request, key, fc.option(key, { nil: undefined }), fc.array(key, { maxLength: 3 }), async (ops, r, start, end, cuts) => {
        const store = new MvccStore();
        for (const o of ops) {
          if (o.kind === 'put') store.put(o.key, Buffer.from(o.value));
          else store.deleteRange({ key: o.key });
        }
        // [start, end), end undefined: every key from start on (etcd's "\0").
        const rangeEnd = end ?? Uint8Array.of(0);
        const whole: RangeRequest = { key: start, rangeEnd, ...r };
        if (end !== undefined && compare(end, start) <= 0) return;
        const inside = [...new Set(cuts.map((c) => c.toString('latin1')))]
          .map((c) => Buffer.from(c, 'latin1'))
          .filter((c) => compare(c, start) > 0 && (end === undefined || compare(c, end) < 0))
          .sort(compare);
        const bounds = [start, ...inside];
        const parts = bounds.map((from, i) => ({
          range: { key: from, rangeEnd: i + 1 < bounds.length ? bounds[i + 1]! : rangeEnd },
          read:
            i % 2 === 0
              ? (request: RangeRequest) => store.range(request)
              : async (request: RangeRequest) => {
                  const answered = store.range(rangeFromWire(rangeRequestToWire(request)));
                  return rangeResponseFromWire(rangeToWire(answered), answered.revision);
                },
        }));
        const expected = store.range(whole);
        const merged = await mergeRange(whole, parts);
        expect(merged).toEqual({ kvs: expected.kvs, more: expected.more, count: expected.count });
      }),
      { numRuns: 3000 },
    );
  });
});
