/**
 * Generated histories for the Elle checker: a serial execution under random concurrency (with
 * failed and unknown transactions) always checks ok; one mutation that breaks it — an element
 * dropped from a later read, two reads' values swapped so one reads the future, a read moved after
 * a write it missed — is always flagged. And a 100,000-transaction history checks ok.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type ElleModel, checkElle } from '../../jepsen-lite/check/index.js';
import { type Mutation, Random, type SerialHistory, dropElement, serialHistory, staleRead, swapReads } from './elle-histories.js';

const models: readonly ElleModel[] = ['list-append', 'rw-register'];
/** Runs per property (each checks a history of up to 150 transactions, twice). */
const propertyRuns = 100;

const mutations: Record<string, (history: SerialHistory, random: Random) => Mutation | undefined> = { dropElement, swapReads, staleRead };

/** What each mutation must produce, at least (it may produce more). */
const expected: Record<string, (names: readonly string[]) => boolean> = {
  dropElement: (names) => names.includes('incompatible-order'),
  // A read of a write called after the reader returned: a cycle through real time.
  swapReads: (names) => names.some((name) => name.endsWith('-realtime') || name === 'internal' || name.startsWith('G')),
  // A read that missed a write completed before it began: a cycle through real time.
  staleRead: (names) => names.some((name) => name.endsWith('-realtime')),
};

describe.each(models)('%s on generated histories', (model) => {
  it('says ok on a serial execution under concurrency', () => {
    fc.assert(
      fc.property(fc.integer(), fc.integer({ min: 1, max: 10 }), fc.integer({ min: 1, max: 150 }), (seed, processes, txns) => {
        const history = serialHistory(model, new Random(seed), { txns, processes, keysActive: 3, writesPerKeyMax: 12, failRate: 0.05, infoRate: 0.08 });
        const result = checkElle(model, history.txns);
        expect(result.anomalies, JSON.stringify(result.anomalies[0])).toEqual([]);
        expect(result.verdict).toBe('ok');
        expect(result.notSatisfied).toEqual([]);
      }),
      { numRuns: propertyRuns },
    );
  });

  for (const [name, mutate] of Object.entries(mutations)) {
    if (name === 'dropElement' && model !== 'list-append') continue;
    it(`flags a history broken by ${name}`, () => {
      let mutated = 0;
      fc.assert(
        fc.property(fc.integer(), fc.integer({ min: 2, max: 10 }), fc.integer({ min: 10, max: 150 }), (seed, processes, txns) => {
          const random = new Random(seed);
          const history = serialHistory(model, random, { txns, processes, keysActive: 3, writesPerKeyMax: 12, failRate: 0.05, infoRate: 0.08 });
          const mutation = mutate(history, random);
          if (mutation === undefined) return;
          mutated++;
          const result = checkElle(model, mutation.txns);
          expect(result.verdict, mutation.description).toBe('violation');
          expect(result.notSatisfied, mutation.description).toContain('strict-serializable');
          expect(expected[name]!(Object.keys(result.counts)), `${mutation.description}: ${Object.keys(result.counts).join(', ')}`).toBe(true);
        }),
        { numRuns: propertyRuns },
      );
      expect(mutated).toBeGreaterThan(propertyRuns / 2);
    });
  }
});

describe('real-time order through its transitive reduction', () => {
  it('orders T before U exactly when T returned before U was called', () => {
    const interval = fc.tuple(fc.integer({ min: 0, max: 12 }), fc.integer({ min: 0, max: 6 })).map(([call, length]) => ({ call, ret: call + length }));
    fc.assert(
      fc.property(fc.array(interval, { minLength: 2, maxLength: 9 }), fc.nat(), fc.nat(), (intervals, a, b) => {
        const writer = a % intervals.length;
        const reader = (writer + 1 + (b % (intervals.length - 1))) % intervals.length;
        // The reader misses the writer's append: a cycle exactly when real time puts the writer first.
        const txns = intervals.map(({ call, ret }, i) => ({
          id: i + 1,
          process: i,
          call,
          ret,
          status: 'ok' as const,
          mops: i === writer ? [{ f: 'append' as const, key: 'x', value: 1 }] : i === reader ? [{ f: 'r' as const, key: 'x', value: [] }] : [{ f: 'r' as const, key: `y${i}`, value: [] }],
        }));
        const result = checkElle('list-append', txns);
        const before = intervals[writer]!.ret < intervals[reader]!.call;
        expect(result.verdict).toBe(before ? 'violation' : 'ok');
        if (before) expect(Object.keys(result.counts)).toEqual(['G-single-realtime']);
      }),
      { numRuns: 300 },
    );
  });
});

describe.each(models)('%s at size', (model) => {
  it('checks a 100,000-transaction serial history ok', () => {
    const history = serialHistory(model, new Random(7), { txns: 100_000, processes: 10 });
    const result = checkElle(model, history.txns);
    expect(result.anomalies).toEqual([]);
    expect(result.verdict).toBe('ok');
    expect(result.stats.txns).toBe(100_000);
    expect(result.stats.unknownIncluded).toBeGreaterThan(0);
    expect(result.stats.sccs).toBe(0);
  }, 60_000);
});
