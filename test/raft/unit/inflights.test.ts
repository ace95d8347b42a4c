import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Inflights, RaftAssertionError } from '../../../raft/index.js';

function filled(messagesMax: number, bytesMax: number, adds: ReadonlyArray<readonly [number, number]>): Inflights {
  const inflights = new Inflights(messagesMax, bytesMax);
  for (const [index, bytes] of adds) inflights.add(index, bytes);
  return inflights;
}

/** The indexes in flight, oldest first, found by freeing a clone one index at a time. */
function indexesInFlight(inflights: Inflights): number[] {
  const probe = inflights.clone();
  const found: number[] = [];
  for (let index = 0; probe.count > 0; index++) {
    const before = probe.count;
    probe.freeLE(index);
    // Indexes strictly increase, so freeing up to `index` frees at most the one at `index`.
    if (probe.count < before) found.push(index);
  }
  return found;
}

describe('Inflights', () => {
  it('rejects non-positive message limits and negative byte limits', () => {
    expect(() => new Inflights(0, 0)).toThrow(RaftAssertionError);
    expect(() => new Inflights(1.5, 0)).toThrow(RaftAssertionError);
    expect(() => new Inflights(4, -1)).toThrow(RaftAssertionError);
  });

  it('counts messages and bytes as they are added', () => {
    const inflights = new Inflights(10, 0);
    expect(inflights.count).toBe(0);
    expect(inflights.bytes).toBe(0);
    inflights.add(3, 100);
    inflights.add(5, 50);
    expect(inflights.count).toBe(2);
    expect(inflights.bytes).toBe(150);
    expect(inflights.full()).toBe(false);
  });

  it('is full at the message limit and refuses more', () => {
    const inflights = filled(3, 0, [
      [1, 10],
      [2, 10],
    ]);
    expect(inflights.full()).toBe(false);
    inflights.add(3, 10);
    expect(inflights.full()).toBe(true);
    expect(() => inflights.add(4, 10)).toThrow(RaftAssertionError);
    expect(inflights.count).toBe(3);
  });

  it('is full once the bytes reach the byte limit (0 means unlimited)', () => {
    const limited = filled(10, 100, [[1, 60]]);
    expect(limited.full()).toBe(false);
    limited.add(2, 39);
    expect(limited.full()).toBe(false);
    limited.add(3, 1);
    expect(limited.bytes).toBe(100);
    expect(limited.full()).toBe(true);
    // One message may overshoot the limit: the window is checked before, not after, adding.
    const overshoot = filled(10, 100, [[1, 500]]);
    expect(overshoot.full()).toBe(true);
    expect(overshoot.bytes).toBe(500);
    const unlimited = filled(10, 0, [[1, Number.MAX_SAFE_INTEGER - 1]]);
    expect(unlimited.full()).toBe(false);
  });

  it('asserts that indexes increase', () => {
    const inflights = filled(10, 0, [[5, 1]]);
    expect(() => inflights.add(5, 1)).toThrow(RaftAssertionError);
    expect(() => inflights.add(4, 1)).toThrow(RaftAssertionError);
    inflights.add(6, 1);
    expect(inflights.count).toBe(2);
  });

  it('freeLE frees every message at or below the index, and nothing below the first', () => {
    const inflights = filled(10, 0, [
      [2, 1],
      [4, 2],
      [6, 4],
      [8, 8],
    ]);
    inflights.freeLE(1);
    expect([inflights.count, inflights.bytes]).toEqual([4, 15]);
    inflights.freeLE(4);
    expect([inflights.count, inflights.bytes]).toEqual([2, 12]);
    inflights.freeLE(4); // again: nothing more
    expect([inflights.count, inflights.bytes]).toEqual([2, 12]);
    inflights.freeLE(7);
    expect([inflights.count, inflights.bytes]).toEqual([1, 8]);
    inflights.freeLE(100);
    expect([inflights.count, inflights.bytes]).toEqual([0, 0]);
    inflights.freeLE(100); // empty: no-op
    expect(inflights.count).toBe(0);
  });

  it('frees a full window and admits new messages again', () => {
    const inflights = filled(2, 0, [
      [1, 1],
      [2, 1],
    ]);
    expect(inflights.full()).toBe(true);
    inflights.freeLE(1);
    expect(inflights.full()).toBe(false);
    inflights.add(3, 1);
    expect(inflights.full()).toBe(true);
  });

  it('wraps around the ring', () => {
    const inflights = new Inflights(4, 0);
    for (let index = 1; index <= 4; index++) inflights.add(index, index);
    inflights.freeLE(2); // start moves to slot 2
    inflights.add(5, 5); // slot 0
    inflights.add(6, 6); // slot 1
    expect(inflights.full()).toBe(true);
    expect(inflights.bytes).toBe(3 + 4 + 5 + 6);
    // The oldest is 3 (slot 2); freeing up to 5 crosses the end of the ring.
    inflights.freeLE(5);
    expect([inflights.count, inflights.bytes]).toEqual([1, 6]);
    inflights.add(7, 7);
    inflights.add(8, 8);
    inflights.add(9, 9);
    expect(inflights.full()).toBe(true);
    expect(indexesInFlight(inflights)).toEqual([6, 7, 8, 9]);
    inflights.freeLE(8);
    expect([inflights.count, inflights.bytes]).toEqual([1, 9]);
  });

  it('reset empties the window', () => {
    const inflights = filled(3, 10, [
      [1, 5],
      [2, 5],
    ]);
    expect(inflights.full()).toBe(true);
    inflights.reset();
    expect([inflights.count, inflights.bytes, inflights.full()]).toEqual([0, 0, false]);
    inflights.add(1, 1); // indexes may start over after a reset
    expect(inflights.count).toBe(1);
  });

  it('clone is an independent copy', () => {
    const original = filled(4, 0, [
      [1, 1],
      [2, 2],
      [3, 3],
    ]);
    original.freeLE(1);
    original.add(4, 4);
    original.add(5, 5); // wrapped
    const copy = original.clone();
    expect([copy.count, copy.bytes, copy.full()]).toEqual([4, 14, true]);
    copy.freeLE(3);
    expect([copy.count, copy.bytes]).toEqual([2, 9]);
    expect([original.count, original.bytes]).toEqual([4, 14]);
  });

  it('matches a queue model under random adds and frees (property)', () => {
    type Op = { add: true; gap: number; bytes: number } | { add: false; upTo: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ add: fc.constant(true as const), gap: fc.integer({ min: 1, max: 3 }), bytes: fc.nat({ max: 50 }) }),
      fc.record({ add: fc.constant(false as const), upTo: fc.nat({ max: 8 }) }),
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 150 })),
        fc.array(op, { maxLength: 60 }),
        (messagesMax, bytesMax, ops) => {
          const inflights = new Inflights(messagesMax, bytesMax);
          let model: Array<{ index: number; bytes: number }> = [];
          let lastIndex = 0;
          for (const o of ops) {
            const modelBytes = model.reduce((sum, m) => sum + m.bytes, 0);
            const modelFull = model.length === messagesMax || (bytesMax > 0 && modelBytes >= bytesMax);
            expect(inflights.full()).toBe(modelFull);
            if (o.add) {
              if (modelFull) {
                expect(() => inflights.add(lastIndex + o.gap, o.bytes)).toThrow(RaftAssertionError);
                continue;
              }
              lastIndex += o.gap;
              inflights.add(lastIndex, o.bytes);
              model.push({ index: lastIndex, bytes: o.bytes });
            } else {
              // Free relative to the oldest in flight so that frees actually hit.
              const to = (model[0]?.index ?? lastIndex) - 2 + o.upTo;
              inflights.freeLE(to);
              model = model.filter((m) => m.index > to);
            }
            expect(inflights.count).toBe(model.length);
            expect(inflights.bytes).toBe(model.reduce((sum, m) => sum + m.bytes, 0));
          }
          expect(indexesInFlight(inflights)).toEqual(model.map((m) => m.index));
          const copy = inflights.clone();
          expect([copy.count, copy.bytes, copy.full()]).toEqual([inflights.count, inflights.bytes, inflights.full()]);
        },
      ),
      { numRuns: 200 },
    );
  });
});
