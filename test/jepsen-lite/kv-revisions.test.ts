/**
 * The kv checker that decides from revisions (`check/kv-revisions.ts`): hand-made histories for
 * each way it can fail, and, on generated histories, agreement with the search — it never calls
 * linearizable what the search refutes, and calls every truthful history linearizable.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkKvByRevision, checkLinearizability, type HistoryRevision, type WatchHistory } from '../../jepsen-lite/check/index.js';
import type { KvInput, KvOutput, Operation } from '../../jepsen-lite/history.js';
import { Random, failed, generateHistory, info, ok, recordingKv } from './lin-histories.js';

const prefix = 'p/';
const enc = new TextEncoder();

function put(key: string, value: string, revision: number): HistoryRevision {
  return { revision, events: [{ type: 'put', key: enc.encode(prefix + key), value: enc.encode(value), createRevision: revision, modRevision: revision, version: 1 }] };
}
function del(key: string, revision: number): HistoryRevision {
  return { revision, events: [{ type: 'delete', key: enc.encode(prefix + key), createRevision: 0, modRevision: revision, version: 0 }] };
}
function history(...revisions: HistoryRevision[]): WatchHistory {
  return { revisions };
}
const get = (key: string): KvInput => ({ f: 'get', key });
const putIn = (key: string, value: string): KvInput => ({ f: 'put', key, value });
const got = (value: string | null, mod: number, revision: number, create = mod, version = value === null ? 0 : 1): KvOutput => ({
  f: 'get',
  value,
  modRevision: value === null ? 0 : mod,
  createRevision: value === null ? 0 : create,
  version,
  revision,
});
const putOut = (prevValue: string | null, revision: number): KvOutput => ({ f: 'put', prevValue, revision });

function verdict(ops: Operation[], committed: WatchHistory) {
  const result = checkKvByRevision(ops, committed, prefix);
  expect(result).toBeDefined();
  return result!.partitions[0]!;
}

describe('checkKvByRevision', () => {
  it('accepts a history the committed one explains, unknown writes included', () => {
    const ops = [
      ok(0, 0, 2, putIn('a', 'v1'), putOut(null, 2)),
      info(1, 3, putIn('a', 'v2')),
      ok(2, 5, 6, get('a'), got('v2', 3, 3, 2, 2)),
      info(3, 7, putIn('b', 'never')),
    ];
    expect(verdict(ops, history(put('a', 'v1', 2), { ...put('a', 'v2', 3) }))).toMatchObject({ verdict: 'ok' });
  });

  it('finds a stale read against real time and names both operations', () => {
    const ops = [ok(0, 0, 2, putIn('a', 'v1'), putOut(null, 2)), ok(1, 3, 4, get('a'), got(null, 0, 1))];
    const p = verdict(ops, history(put('a', 'v1', 2)));
    expect(p.verdict).toBe('violation');
    expect(p.blocked).toEqual([0, 1]);
    expect(p.message).toMatch(/stale read/);
  });

  it('finds an acknowledged write the committed history lost', () => {
    const ops = [ok(0, 0, 2, putIn('a', 'v1'), putOut(null, 2)), ok(1, 3, 4, putIn('a', 'v2'), putOut('v1', 3))];
    const p = verdict(ops, history(put('a', 'v1', 2), put('a', 'other', 3)));
    expect(p.verdict).toBe('violation');
  });

  it('finds a refused write that took effect', () => {
    const ops = [failed(0, 0, 2, putIn('a', 'v1'))];
    const p = verdict(ops, history(put('a', 'v1', 2)));
    expect(p).toMatchObject({ verdict: 'violation', blocked: [0] });
    expect(p.message).toMatch(/refused/);
  });

  it('finds an unknown write that took effect before it was called', () => {
    const ops = [ok(0, 0, 1, get('a'), got('v1', 2, 2)), info(1, 5, putIn('a', 'v1'))];
    const p = verdict(ops, history(put('a', 'v1', 2)));
    expect(p).toMatchObject({ verdict: 'violation', blocked: [0, 1] });
  });

  it('attributes a delete-only revision to an unknown delete that could have run', () => {
    const ops = [
      ok(0, 0, 1, putIn('a', 'v1'), putOut(null, 2)),
      info(1, 2, { f: 'delete', key: 'a' }),
      ok(2, 10, 11, get('a'), got(null, 0, 3)),
    ];
    expect(verdict(ops, history(put('a', 'v1', 2), del('a', 3))).verdict).toBe('ok');
    // Without the unknown delete nothing can have made revision 3.
    const p = verdict([ops[0]!, ops[2]!], history(put('a', 'v1', 2), del('a', 3)));
    expect(p.verdict).toBe('violation');
    expect(p.message).toMatch(/revision 3 deleted a/);
  });

  it('falls back (undefined) on a gap, a foreign key or a value written twice', () => {
    const ops = [ok(0, 0, 1, putIn('a', 'v1'), putOut(null, 3))];
    expect(checkKvByRevision(ops, history(put('a', 'v1', 3)), prefix)).toBeUndefined();
    const foreign: WatchHistory = { revisions: [{ revision: 2, events: [{ ...put('a', 'v1', 2).events[0]!, key: enc.encode('other/a') }] }] };
    expect(checkKvByRevision(ops, foreign, prefix)).toBeUndefined();
    const twice = [ok(0, 0, 1, putIn('a', 'v1'), putOut(null, 2)), info(1, 2, putIn('a', 'v1'))];
    expect(checkKvByRevision(twice, history(put('a', 'v1', 2)), prefix)).toBeUndefined();
  });
});

// ---- generated histories: agreement with the search -----------------------------------------

/** Moves one ok get to report an older revision's answer, or the absent key: often, not always, a violation. */
function staleRead(ops: Operation[], random: Random): void {
  const reads = ops.filter((op) => op.status === 'ok' && (op.input as KvInput).f === 'get');
  if (reads.length === 0) return;
  const target = random.pick(reads);
  ops[ops.indexOf(target)] = { ...target, output: got(null, 0, Math.max(1, (target.output as KvOutput).revision - 1 - random.below(3))) };
}

describe('checkKvByRevision against the search', () => {
  it('agrees: truthful histories are ok; a refuted history is never called ok', () => {
    let refuted = 0;
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), fc.boolean(), (seed, mutate) => {
        const random = new Random(seed);
        const { reference, committed } = recordingKv(prefix);
        const ops = generateHistory(reference, random, { processes: 3, operations: 14, failRate: 0.1, infoRate: 0.1 });
        if (mutate) staleRead(ops, random);
        const byRevision = checkKvByRevision(ops, { revisions: committed }, prefix);
        expect(byRevision).toBeDefined();
        const search = checkLinearizability('kv', ops);
        if (!mutate) expect(byRevision!.verdict).toBe('ok');
        if (search.verdict === 'violation') expect(byRevision!.verdict).toBe('violation');
        if (byRevision!.verdict === 'ok') expect(search.verdict).toBe('ok');
        if (search.verdict === 'violation') refuted++;
      }),
      { numRuns: 300 },
    );
    // The mutation has teeth: many of the mutated histories are refuted (by both).
    expect(refuted).toBeGreaterThan(30);
  });
});

describe('checkKvByRevision: what review found', () => {
  const delTxn = (guard: string, keys: string[]): KvInput => ({
    f: 'txn',
    compare: [{ target: 'value', key: guard, value: 'x' }],
    success: keys.map((key) => ({ f: 'delete', key })),
    failure: [{ f: 'get', key: keys[0]! }],
  });

  it('a delete-only revision goes to the unknown op that makes exactly it, not the first that could', () => {
    // The txn is called first but its compare fails (j is absent): only the plain delete makes revision 3.
    const ops = [ok(0, 0, 1, putIn('k', 'v1'), putOut(null, 2)), info(1, 2, delTxn('j', ['k'])), info(2, 3, { f: 'delete', key: 'k' })];
    expect(verdict(ops, history(put('k', 'v1', 2), del('k', 3))).verdict).toBe('ok');
  });

  it('delete-only revisions are matched as a whole: using a two-key delete early cannot strand a later revision', () => {
    const both: KvInput = { f: 'txn', compare: [], success: [{ f: 'delete', key: 'k' }, { f: 'delete', key: 'j' }], failure: [] };
    const ops = [
      ok(0, 0, 1, putIn('k', 'v1'), putOut(null, 2)),
      info(1, 2, both),
      info(2, 3, { f: 'delete', key: 'k' }),
      ok(3, 10, 11, putIn('k', 'v2'), putOut(null, 4)),
      ok(4, 12, 13, putIn('j', 'v3'), putOut(null, 5)),
    ];
    const twoKeys: HistoryRevision = { revision: 6, events: [...del('k', 6).events, ...del('j', 6).events] };
    expect(verdict(ops, history(put('k', 'v1', 2), del('k', 3), put('k', 'v2', 4), put('j', 'v3', 5), twoKeys)).verdict).toBe('ok');
  });

  it('an acknowledged write that answered revision 1 (no write can) is a violation', () => {
    const p = verdict([ok(0, 0, 1, putIn('k', 'lost'), putOut(null, 1))], history());
    expect(p.verdict).toBe('violation');
    expect(p.blocked).toEqual([0]);
  });
});
