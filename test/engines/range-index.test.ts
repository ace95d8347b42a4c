/** The range watchers' interval index against a brute-force list, over random adds, deletes and stabs. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RangeIndex } from '../../src/engines/watch/range-index.js';
import { beforeEnd, compareBytes } from '../../storage/index.js';

// Short keys over a tiny alphabet, so ranges overlap, nest, share starts and repeat exactly.
const key = fc.uint8Array({ minLength: 1, maxLength: 3, min: 0, max: 3 });
const rangeEnd = fc.oneof(key, fc.constant(Uint8Array.of(0)));
const op = fc.oneof(
  fc.record({ kind: fc.constant('add' as const), member: fc.integer({ min: 0, max: 40 }), start: key, end: rangeEnd }),
  fc.record({ kind: fc.constant('delete' as const), member: fc.integer({ min: 0, max: 40 }) }),
  fc.record({ kind: fc.constant('stab' as const), key }),
);

function holds(start: Uint8Array, end: Uint8Array, k: Uint8Array): boolean {
  return compareBytes(k, start) >= 0 && beforeEnd(k, end);
}

describe('RangeIndex', () => {
  it('finds exactly the members whose range holds the key', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        const index = new RangeIndex<number>();
        const model = new Map<number, { start: Uint8Array; end: Uint8Array }>();
        for (const o of ops) {
          if (o.kind === 'add') {
            index.add(o.member, o.start, o.end);
            model.set(o.member, { start: o.start, end: o.end });
          } else if (o.kind === 'delete') {
            index.delete(o.member);
            model.delete(o.member);
          } else {
            const found: number[] = [];
            index.stab(o.key, found);
            const expected = [...model].filter(([, r]) => holds(r.start, r.end, o.key)).map(([m]) => m);
            expect([...found].sort((a, b) => a - b)).toEqual(expected.sort((a, b) => a - b));
          }
          expect(index.size).toBe(model.size);
          expect(new Set(index.all())).toEqual(new Set(model.keys()));
        }
      }),
      { numRuns: 400, seed: 20261126 },
    );
  });

  it('reports members in the same order for the same history (the simulator replays from a seed)', () => {
    const build = (): number[] => {
      const index = new RangeIndex<number>();
      for (let m = 0; m < 200; m++) index.add(m, Uint8Array.of(m % 7, m % 3), Uint8Array.of(6 - (m % 5), 9));
      for (let m = 0; m < 200; m += 3) index.delete(m);
      const out: number[] = [];
      index.stab(Uint8Array.of(3, 1), out);
      return out;
    };
    const first = build();
    expect(first.length).toBeGreaterThan(10);
    expect(build()).toEqual(first);
  });

  it('moves a member added again, and ignores deleting one it does not hold', () => {
    const index = new RangeIndex<string>();
    index.add('a', Uint8Array.of(1), Uint8Array.of(2));
    index.add('a', Uint8Array.of(5), Uint8Array.of(6));
    index.delete('b');
    expect(index.size).toBe(1);
    expect(index.rangeCount).toBe(1);
    const found: string[] = [];
    index.stab(Uint8Array.of(1), found);
    expect(found).toEqual([]);
    index.stab(Uint8Array.of(5), found);
    expect(found).toEqual(['a']);
  });
});
