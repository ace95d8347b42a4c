/**
 * The automatic splitter's decisions (src/server/auto-split.ts), pure: where a load split cuts
 * (the sampled key dividing the sampled requests most evenly, never one that leaves a side under
 * its minimum share, never the shard's start or a key outside it), the per-shard load windows and
 * their key reservoir, where a size split cuts (the key dividing the retained bytes, not one that
 * leaves a side too little), and when a shard is split by size or load or left alone, with why.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareKeys } from '../../src/cluster/index.js';
import { LoadTracker, chooseSplit, loadSplitKey } from '../../src/server/auto-split.js';
import { shardSplitLoadSampleKeyBytesMax, shardSplitSideMin } from '../../src/server/limits.js';

const b = (s: string): Uint8Array => Buffer.from(s, 'latin1');
const s = (k: Uint8Array | undefined): string | undefined => (k === undefined ? undefined : Buffer.from(k).toString('latin1'));
const key = fc.array(fc.constantFrom('a', 'b', 'c', 'd'), { minLength: 1, maxLength: 3 }).map((cs) => b(cs.join('')));

/** Samples strictly below `cut` among those in [start, end). */
function split(samples: readonly Uint8Array[], start: Uint8Array, end: Uint8Array | undefined, cut: Uint8Array): { below: number; total: number } {
  const inside = samples.filter((k) => compareKeys(k, start) >= 0 && (end === undefined || compareKeys(k, end) < 0));
  return { below: inside.filter((k) => compareKeys(k, cut) < 0).length, total: inside.length };
}

describe('loadSplitKey', () => {
  it('cuts strictly inside the shard, at the most even sampled key, and only when each side keeps its share', () => {
    fc.assert(
      fc.property(fc.array(key, { maxLength: 80 }), key, fc.option(key, { nil: undefined }), (samples, start, endGiven) => {
        const end = endGiven !== undefined && compareKeys(endGiven, start) > 0 ? endGiven : undefined;
        const at = loadSplitKey(samples, start, end);
        // Every sampled key inside the range other than the start is a candidate; the best one
        // (fewest samples from half) decides, by brute force.
        const candidates = samples.filter((k) => compareKeys(k, start) > 0 && (end === undefined || compareKeys(k, end) < 0));
        const imbalance = (cut: Uint8Array): number => {
          const { below, total } = split(samples, start, end, cut);
          return Math.abs(total - 2 * below);
        };
        const fair = (cut: Uint8Array): boolean => {
          const { below, total } = split(samples, start, end, cut);
          return Math.min(below, total - below) >= shardSplitSideMin * total;
        };
        const best = candidates.length === 0 ? undefined : Math.min(...candidates.map(imbalance));
        if (at === undefined) {
          // None only when the most even cut is still unfair (or there is no cut at all).
          expect(candidates.filter((c) => imbalance(c) === best).every((c) => !fair(c))).toBe(true);
          return;
        }
        expect(compareKeys(at, start)).toBeGreaterThan(0);
        if (end !== undefined) expect(compareKeys(at, end)).toBeLessThan(0);
        expect(samples.some((k) => compareKeys(k, at) === 0)).toBe(true);
        expect(imbalance(at)).toBe(best);
        expect(fair(at)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('does not split one hot key, and cuts just past it when the rest balances it', () => {
    expect(loadSplitKey(Array(64).fill(b('/h/k')), b('/h/'), b('/h0'))).toBeUndefined();
    // 40 of 64 on one key: a cut before it leaves 12, after it 12: both under a quarter.
    const skewed = [...Array(40).fill(b('/h/m')), ...Array(12).fill(b('/h/a')), ...Array(12).fill(b('/h/z'))];
    expect(loadSplitKey(skewed, b('/h/'), b('/h0'))).toBeUndefined();
    // 30 of 64: cutting before it leaves 17 below, 47 above (more than a quarter each side).
    const hot = [...Array(30).fill(b('/h/m')), ...Array(17).fill(b('/h/a')), ...Array(17).fill(b('/h/z'))];
    expect(s(loadSplitKey(hot, b('/h/'), b('/h0')))).toBe('/h/m');
    // Uniform keys: the middle one.
    const uniform = Array.from({ length: 26 }, (_, i) => b(`/h/${String.fromCharCode(97 + i)}`));
    expect(s(loadSplitKey(uniform, b('/h/'), b('/h0')))).toBe('/h/n');
    // Samples outside the shard (taken before it split) do not count.
    expect(s(loadSplitKey([...uniform, ...Array(50).fill(b('/i/x'))], b('/h/'), b('/h0')))).toBe('/h/n');
    // The shard's own start is never a split key: past it, 4 of 5 would stay below.
    expect(s(loadSplitKey([b('/h/'), b('/h/'), b('/h/a'), b('/h/a')], b('/h/'), b('/h0')))).toBe('/h/a');
    expect(loadSplitKey([b('/h/'), b('/h/'), b('/h/'), b('/h/'), b('/h/a')], b('/h/'), b('/h0'))).toBeUndefined();
  });
});

describe('LoadTracker', () => {
  it('keeps at most the first bytes of a long key in its sample', () => {
    const tracker = new LoadTracker(() => 0, () => 0, 10, 4);
    tracker.record(1, b('x'));
    tracker.roll(1, 1, 0);
    const long = new Uint8Array(100_000).fill(0x61);
    tracker.record(1, long);
    const [sample] = tracker.roll(1, 1, 10)!.samples;
    expect(sample!.length).toBe(shardSplitLoadSampleKeyBytesMax);
    expect(sample!.buffer.byteLength).toBe(shardSplitLoadSampleKeyBytesMax);
  });

  it('counts a whole window per shard epoch, keeping a bounded copy-sample of the keys', () => {
    let now = 0;
    const tracker = new LoadTracker(() => now, () => 0.5, 10_000, 8);
    const asked = b('/h/a');
    tracker.record(7, asked);
    // The first roll learns the epoch and starts the window again.
    expect(tracker.roll(7, 1, now)).toBeUndefined();
    for (let i = 0; i < 1000; i++) tracker.record(7, b(`/h/${i}`));
    now = 5_000;
    expect(tracker.roll(7, 1, now)).toBeUndefined();
    now = 10_000;
    const load = tracker.roll(7, 1, now)!;
    expect(load.qps).toBe(100);
    expect(load.samples.length).toBe(8);
    // A new window: empty.
    now = 20_000;
    expect(tracker.roll(7, 1, now)).toEqual({ qps: 0, samples: [] });
    // Keys are copies: changing the caller's buffer changes no sample.
    tracker.record(7, asked);
    asked[3] = 0x7a;
    now = 30_000;
    expect(s(tracker.roll(7, 1, now)!.samples[0])).toBe('/h/a');
    // A window begun under another epoch (the shard split since) is thrown away.
    for (let i = 0; i < 100; i++) tracker.record(7, b('/h/x'));
    now = 40_000;
    expect(tracker.roll(7, 2, now)).toBeUndefined();
    now = 50_000;
    expect(tracker.roll(7, 2, now)!.qps).toBe(0);
    tracker.record(8, b('/i/'));
    expect(tracker.size).toBe(2);
    tracker.retain(new Set([8]));
    expect(tracker.size).toBe(1);
  });

  it('samples uniformly: each of many keys is as likely to be kept', () => {
    let seed = 1;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const kept = new Array<number>(4).fill(0);
    for (let round = 0; round < 200; round++) {
      const tracker = new LoadTracker(() => 0, random, 1, 16);
      tracker.record(1, Uint8Array.of(0));
      tracker.roll(1, 1, 0);
      // A quarter of the requests for each of 4 keys, in 4 runs (the first key earliest).
      for (let k = 0; k < 4; k++) for (let i = 0; i < 250; i++) tracker.record(1, Uint8Array.of(k));
      for (const sample of tracker.roll(1, 1, 1)!.samples) kept[sample[0]!]!++;
    }
    // 200 × 16 samples: 800 per key expected; a biased reservoir would favour the first run.
    for (const count of kept) expect(Math.abs(count - 800)).toBeLessThan(120);
  });
});

describe('chooseSplit', () => {
  const shard = { start: b('/h/'), end: b('/h0') };
  const settings = { bytes: 1000, qps: 100 };
  const quiet = { leader: true, sizeBytes: 10, leases: 0, retired: false };
  const middle = { key: b('/h/q'), share: 0.5 };
  const uniform = Array.from({ length: 26 }, (_, i) => b(`/h/${String.fromCharCode(97 + i)}`));

  it('splits by size on the leader only, at the key that divides its bytes, unless one side would keep too little of them', () => {
    expect(chooseSplit(shard, { ...quiet, sizeBytes: 1000, sizeMiddle: middle }, settings)).toMatchObject({ split: true, reason: 'size', at: b('/h/q') });
    expect(chooseSplit(shard, { ...quiet, sizeBytes: 1000, sizeMiddle: { ...middle, share: shardSplitSideMin } }, settings)).toMatchObject({ split: true });
    expect(chooseSplit(shard, { ...quiet, sizeBytes: 999, sizeMiddle: middle }, settings)).toEqual({ split: false });
    expect(chooseSplit(shard, { ...quiet, sizeBytes: 5000, sizeMiddle: middle, leader: false }, settings)).toEqual({ split: false });
    expect(chooseSplit(shard, { ...quiet, sizeBytes: 5000, sizeMiddle: middle }, { ...settings, bytes: 0 })).toEqual({ split: false });
    // One key's history holds most of the bytes (or fewer than two keys): compaction's to shrink.
    for (const lopsided of [{ sizeMiddle: { ...middle, share: 0.9 } }, { sizeMiddle: { ...middle, share: 0.1 } }, {}]) {
      expect(chooseSplit(shard, { ...quiet, sizeBytes: 5000, ...lopsided }, settings)).toMatchObject({ split: false, held: 'size-undivided', why: expect.stringMatching(/compact the store/) });
    }
    // Then load may still split it where its requests divide.
    expect(chooseSplit(shard, { ...quiet, sizeBytes: 5000, sizeMiddle: { ...middle, share: 0.9 }, load: { qps: 500, samples: uniform } }, settings)).toMatchObject({ split: true, reason: 'load', at: b('/h/n') });
  });

  it('splits by load on whichever node saw it, at the balancing key', () => {
    const load = { qps: 100, samples: uniform };
    expect(s((chooseSplit(shard, { ...quiet, leader: false, load }, settings) as { at?: Uint8Array }).at)).toBe('/h/n');
    expect(chooseSplit(shard, { ...quiet, load: { ...load, qps: 99 } }, settings)).toEqual({ split: false });
    expect(chooseSplit(shard, { ...quiet, load }, { ...settings, qps: 0 })).toEqual({ split: false });
    const hot = chooseSplit(shard, { ...quiet, load: { qps: 500, samples: Array(64).fill(b('/h/k')) } }, settings);
    expect(hot).toMatchObject({ split: false, held: 'load-undivided' });
    expect((hot as { why: string }).why).toMatch(/no key divides them/);
  });

  it('leaves a shard holding leases, or being dropped, alone (saying why for the leases)', () => {
    const leased = chooseSplit(shard, { ...quiet, sizeBytes: 5000, leases: 2 }, settings);
    expect(leased).toEqual({ split: false, held: 'leases', why: 'it holds 2 leases, whose keys would span two shards' });
    expect(chooseSplit(shard, { ...quiet, sizeBytes: 5000, retired: true }, settings)).toEqual({ split: false });
  });
});
