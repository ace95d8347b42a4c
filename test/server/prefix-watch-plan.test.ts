/**
 * Where a dkv.v1 prefix watch starts in each shard (planPrefixWatch) and which shards a prefix's
 * parts make (shardsOfParts): a snapshot everywhere; a start_revision only for a prefix in one
 * shard; a resume token that names exactly the prefix's shards, each once, or the shards they
 * were split from; everything else refused with a stable code, before any watcher exists.
 */
import { describe, expect, it } from 'vitest';
import { DkvError } from '../../src/errors.js';
import { planPrefixWatch, shardsOfParts } from '../../src/server/prefix-watch-service.js';

const request = (more: object) => ({ prefix: new Uint8Array(0), snapshot: false, prev_kv: false, start_revision: 0, ...more });
const code = (result: unknown): string | undefined => (result instanceof DkvError ? result.code : undefined);

describe('planPrefixWatch', () => {
  it('starts every shard from its snapshot, from now, or (one shard) from start_revision', () => {
    expect(planPrefixWatch(request({ snapshot: true }), [1, 2])).toEqual(['snapshot', 'snapshot']);
    expect(planPrefixWatch(request({}), [1, 2])).toEqual(['now', 'now']);
    expect(planPrefixWatch(request({ start_revision: 7 }), [2])).toEqual([7]);
  });

  it('refuses a start_revision for a prefix that spans shards (it is one shard\'s revision)', () => {
    expect(code(planPrefixWatch(request({ start_revision: 7 }), [1, 2]))).toBe('invalid-argument');
  });

  it('resumes each shard from its token, in the order the shards are given', () => {
    const resume = [
      { shard: 2, revision: 40 },
      { shard: 1, revision: 9 },
    ];
    expect(planPrefixWatch(request({ resume }), [1, 2])).toEqual([9, 40]);
  });

  it('refuses a token that misses a shard, names another or one twice, and one given with a snapshot or start_revision', () => {
    expect(code(planPrefixWatch(request({ resume: [{ shard: 1, revision: 3 }] }), [1, 2]))).toBe('watch-resume-mismatch');
    expect(code(planPrefixWatch(request({ resume: [{ shard: 1, revision: 3 }, { shard: 3, revision: 3 }] }), [1, 2]))).toBe('watch-resume-mismatch');
    expect(code(planPrefixWatch(request({ resume: [{ shard: 1, revision: 3 }, { shard: 1, revision: 4 }] }), [1]))).toBe('watch-resume-mismatch');
    expect(code(planPrefixWatch(request({ resume: [{ shard: 1, revision: 3 }], snapshot: true }), [1]))).toBe('invalid-argument');
    expect(code(planPrefixWatch(request({ resume: [{ shard: 1, revision: 3 }], start_revision: 3 }), [1]))).toBe('invalid-argument');
  });
});

describe('planPrefixWatch across splits', () => {
  // Shard 5 split into 5 and 7, then 7 into 7 and 9; shard 6 is another store's, made by a mount.
  const parents = new Map([
    [7, 5],
    [9, 7],
  ]);
  const splitParent = (shard: number): number | undefined => parents.get(shard);
  const resume = (...entries: Array<[number, number]>) => request({ resume: entries.map(([shard, revision]) => ({ shard, revision })) });

  it("resumes a split's children from the revision of their nearest ancestor the token names", () => {
    expect(planPrefixWatch(resume([5, 30]), [5, 7], splitParent)).toEqual([30, 30]);
    expect(planPrefixWatch(resume([5, 30]), [5, 7, 9], splitParent)).toEqual([30, 30, 30]);
    // A token taken after the first split names 7 itself: 9 resumes from 7's revision.
    expect(planPrefixWatch(resume([5, 30], [7, 44]), [5, 7, 9], splitParent)).toEqual([30, 44, 44]);
    // The prefix wholly in the child now: the parent named, serving none of it.
    expect(planPrefixWatch(resume([5, 30]), [9], splitParent)).toEqual([30]);
  });

  it('still refuses a token whose shards are not the prefix\'s or their ancestors', () => {
    expect(code(planPrefixWatch(resume([6, 30]), [5, 7], splitParent))).toBe('watch-resume-mismatch');
    // 6 named but serving nothing, and no ancestor of a shard serving it.
    expect(code(planPrefixWatch(resume([5, 30], [6, 3]), [5, 7], splitParent))).toBe('watch-resume-mismatch');
    // Without the lineage, a child is a shard the token misses.
    expect(code(planPrefixWatch(resume([5, 30]), [5, 7]))).toBe('watch-resume-mismatch');
    // A lineage that is not a chain of smaller ids (a corrupt record) ends the walk.
    expect(code(planPrefixWatch(resume([9, 30]), [5, 7], (shard) => (shard === 5 ? 9 : undefined)))).toBe('watch-resume-mismatch');
  });
});

describe('shardsOfParts', () => {
  it('gives each shard once, with its parts in key order (the default store on both sides of a store)', () => {
    const shard = (shardId: number) => ({ shardId }) as never;
    const [one, two] = [shard(1), shard(2)];
    const b = (s: string) => new TextEncoder().encode(s);
    const parts = [
      { shard: one, range: { key: b('/'), rangeEnd: b('/users/') } },
      { shard: two, range: { key: b('/users/'), rangeEnd: b('/users0') } },
      { shard: one, range: { key: b('/users0'), rangeEnd: b('0') } },
    ];
    expect(shardsOfParts(parts).map((s) => [s.shard, s.ranges.map((r) => new TextDecoder().decode(r.key))])).toEqual([
      [one, ['/', '/users0']],
      [two, ['/users/']],
    ]);
  });
});
