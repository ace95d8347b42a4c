/**
 * `fullGc({ compact: true })`: V8's whole old generation compacted in one collection, the flag
 * that does it on for that collection only.
 */
import { cachedDataVersionTag, getHeapSpaceStatistics } from 'node:v8';
import { describe, expect, it } from 'vitest';
import { fullGc } from '../../src/server/defragment.js';

/** Old space committed and not in use. */
function oldSpaceFreeBytes(): number {
  const old = getHeapSpaceStatistics().find((space) => space.space_name === 'old_space');
  if (old === undefined) throw new Error('V8 reports no old_space');
  return old.space_size - old.space_used_size;
}

/**
 * Makes objects that reach the old generation, drops nine in ten of them, and collects once the
 * way `collect` does; returns the old space's free bytes after that one collection.
 */
function sparseThenCollect(collect: () => void): number {
  let all: Array<{ n: number; s: string }> | undefined = [];
  for (let i = 0; i < 1_000_000; i++) all.push({ n: i, s: `v${i}` });
  fullGc();
  fullGc();
  const kept = all.filter((_, i) => i % 10 === 0);
  all = undefined;
  collect();
  const free = oldSpaceFreeBytes();
  expect(kept.length).toBe(100_000);
  return free;
}

describe('fullGc', () => {
  it('with compact, gives back in one collection the sparse old space a plain one keeps; the flag is off again after', () => {
    // The flags V8 runs with are part of its code cache tag: a flag left on changes it.
    fullGc();
    const tag = cachedDataVersionTag();
    const plain = sparseThenCollect(() => fullGc());
    fullGc({ compact: true });
    const compacted = sparseThenCollect(() => fullGc({ compact: true }));
    expect(plain).toBeGreaterThan(8 * 1048576);
    expect(compacted).toBeLessThan(plain / 4);
    expect(cachedDataVersionTag()).toBe(tag);
  });
});
