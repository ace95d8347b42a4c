/**
 * The pure parts of the `shards` fault's store (jepsen-lite/real/run-store.ts): the key range of
 * each shard the committed history is read over, the shards' histories merged into one that the
 * acknowledged-writes check reads, and the verdict a replica comparison gives. The fault itself
 * runs against real servers in real-run.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { checkAcknowledgedWrites, prefixRange } from '../../jepsen-lite/real/committed.js';
import { mergeShardHistories, shardKeyRange, splitPoint } from '../../jepsen-lite/real/run-store.js';
import { combineVerdict } from '../../jepsen-lite/real/run.js';
import type { Operation } from '../../jepsen-lite/history.js';
import type { WatchEvent, WatchHistory } from '../../jepsen-lite/check/index.js';

const b = (text: string): Buffer => Buffer.from(text, 'latin1');
const store = prefixRange(b('jepsen/'));

describe('shardKeyRange', () => {
  it('is the part of the store a shard owns: its start and end, the store\'s where the shard has none or reaches past it', () => {
    expect(shardKeyRange({ start: b('jepsen/'), end: b('jepsen/k2') }, store)).toEqual({ key: b('jepsen/'), rangeEnd: b('jepsen/k2') });
    expect(shardKeyRange({ start: b('jepsen/k2'), end: undefined }, store)).toEqual({ key: b('jepsen/k2'), rangeEnd: b('jepsen0') });
    expect(shardKeyRange({ start: b('jepsen/k2'), end: Buffer.alloc(0) }, store)).toEqual({ key: b('jepsen/k2'), rangeEnd: b('jepsen0') });
    expect(shardKeyRange({ start: b('a'), end: b('z') }, store)).toEqual({ key: b('jepsen/'), rangeEnd: b('jepsen0') });
  });
});

describe('splitPoint', () => {
  const keys = ['jepsen/k0', 'jepsen/k1', 'jepsen/k2', 'jepsen/k3', 'jepsen/k4'].map(b);

  it('is the upper middle of the run\'s keys a shard owns, strictly inside it; none with fewer than two', () => {
    expect(splitPoint({ start: b('jepsen/'), end: b('jepsen0') }, keys)).toEqual(b('jepsen/k2'));
    expect(splitPoint({ start: b('jepsen/'), end: b('jepsen/k2') }, keys)).toEqual(b('jepsen/k1'));
    expect(splitPoint({ start: b('jepsen/k2'), end: undefined }, keys)).toEqual(b('jepsen/k3'));
    // A shard starting at a key owns it: the split is never at its start.
    expect(splitPoint({ start: b('jepsen/k3'), end: b('jepsen0') }, keys)).toEqual(b('jepsen/k4'));
    expect(splitPoint({ start: b('jepsen/k4'), end: b('jepsen0') }, keys)).toBeUndefined();
    expect(splitPoint({ start: b('jepsen/k1'), end: b('jepsen/k2') }, keys)).toBeUndefined();
    expect(splitPoint({ start: b('jepsen/'), end: b('jepsen0') }, [])).toBeUndefined();
  });
});

describe('mergeShardHistories', () => {
  const put = (key: string, value: string, modRevision: number): WatchEvent => ({ type: 'put', key: b(key), value: b(value), modRevision, createRevision: modRevision, version: 1 });
  // Two shards after a split at k2: both carry the history before it (each its own keys), then count on their own.
  const parent: WatchHistory = { revisions: [{ revision: 2, events: [put('jepsen/k0', 'a', 2)] }, { revision: 4, events: [put('jepsen/k1', 'c', 4)] }], headRevision: 4 };
  const child: WatchHistory = { revisions: [{ revision: 3, events: [put('jepsen/k3', 'b', 3)] }, { revision: 4, events: [put('jepsen/k3', 'd', 4)] }, { revision: 5, events: [put('jepsen/k4', 'e', 5)] }], headRevision: 5 };

  it('keeps every event, one revision number listing the changes every shard made at it, in revision order', () => {
    const merged = mergeShardHistories([parent, child]);
    expect(merged.headRevision).toBe(5);
    expect(merged.revisions.map((r) => [r.revision, r.events.map((e) => `${Buffer.from(e.key).toString()}=${Buffer.from(e.value ?? []).toString()}`)])).toEqual([
      [2, ['jepsen/k0=a']],
      [3, ['jepsen/k3=b']],
      [4, ['jepsen/k1=c', 'jepsen/k3=d']],
      [5, ['jepsen/k4=e']],
    ]);
    expect(mergeShardHistories([])).toEqual({ revisions: [], headRevision: 1 });
  });

  it('lets the acknowledged-writes check find each shard\'s writes, and miss one no shard holds', () => {
    const write = (id: number, key: string, value: string): Operation => ({ id, process: 0, node: 'n1', call: id, ret: id + 1, status: 'ok', input: { f: 'write', key, value }, output: { f: 'write' } }) as Operation;
    const merged = mergeShardHistories([parent, child]);
    expect(checkAcknowledgedWrites([write(1, 'k0', 'a'), write(2, 'k3', 'd'), write(3, 'k1', 'c')], merged, 'jepsen/')).toMatchObject({ checked: 3, missing: 0 });
    expect(checkAcknowledgedWrites([write(4, 'k4', 'lost')], merged, 'jepsen/')).toMatchObject({ checked: 1, missing: 1 });
  });
});

describe('combineVerdict with the replicas of the shards fault', () => {
  const replicas = (over: { diverged?: number; unsettled?: number }) => ({ shards: 2, compared: 2, diverged: 0, unsettled: 0, problems: [], ...over });

  it('is a violation when replicas diverged, unknown when some were not compared, ok otherwise', () => {
    expect(combineVerdict('ok', undefined, undefined, undefined, undefined, undefined, undefined, replicas({}))).toBe('ok');
    expect(combineVerdict('ok', undefined, undefined, undefined, undefined, undefined, undefined, replicas({ diverged: 1 }))).toBe('violation');
    expect(combineVerdict('ok', undefined, undefined, undefined, undefined, undefined, undefined, replicas({ unsettled: 1 }))).toBe('unknown');
    expect(combineVerdict('violation', undefined, undefined, undefined, undefined, undefined, undefined, replicas({ unsettled: 1 }))).toBe('violation');
  });
});
