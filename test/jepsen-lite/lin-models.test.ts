/**
 * Hand-written histories for every model of the linearizability checker: linearizable ones must
 * pass, and each classic anomaly (stale read, lost write, double cas, kv revisions going back or
 * repeating, a delete that bumped the revision, a fenced write accepted after a newer token, a
 * set read missing an acknowledged add) must be caught, with the blocked ops named.
 */
import { describe, expect, it } from 'vitest';
import { checkLinearizability } from '../../jepsen-lite/check/index.js';
import type { ModelName, Operation } from '../../jepsen-lite/history.js';
import { failed, info, ok } from './lin-histories.js';

function verdict(model: ModelName, history: Operation[]): string {
  return checkLinearizability(model, history).verdict;
}

const read = (key: string) => ({ f: 'read', key });
const write = (key: string, value: string) => ({ f: 'write', key, value });
const cas = (key: string, from: string, to: string) => ({ f: 'cas', key, from, to });
const value = (v: string | null) => ({ f: 'read', value: v });
const written = { f: 'write' };
const casDone = (succeeded: boolean) => ({ f: 'cas', succeeded });

describe('register', () => {
  it('accepts concurrent reads that see either side of a write', () => {
    const history = [
      ok(0, 0, 1, write('x', '1'), written),
      ok(1, 2, 10, write('x', '2'), written),
      ok(2, 3, 4, read('x'), value('1')),
      ok(3, 5, 6, read('x'), value('2')),
      ok(4, 11, 12, read('x'), value('2')),
    ];
    expect(verdict('register', history)).toBe('ok');
  });

  it('catches a stale read and names the blocked read', () => {
    const history = [
      ok(0, 0, 1, write('x', '1'), written),
      ok(1, 2, 3, write('x', '2'), written),
      ok(2, 4, 5, read('x'), value('1')),
    ];
    const result = checkLinearizability('register', history);
    expect(result.verdict).toBe('violation');
    const partition = result.partitions[0]!;
    expect(partition.key).toBe('x');
    expect(partition.blocked).toEqual([2]);
    expect(partition.linearized).toEqual([0, 1]);
    expect(partition.message).toContain('#2 read x ⇒ "1"');
  });

  it('catches a lost write (a later read sees the initial null)', () => {
    const history = [ok(0, 0, 1, write('x', '1'), written), ok(1, 2, 3, read('x'), value(null))];
    expect(verdict('register', history)).toBe('violation');
  });

  it('catches a cas that succeeded twice from the same value', () => {
    const base = [
      ok(0, 0, 1, write('x', '0'), written),
      ok(1, 2, 5, cas('x', '0', '1'), casDone(true)),
      ok(2, 2, 5, cas('x', '0', '2'), casDone(true)),
    ];
    const result = checkLinearizability('register', base);
    expect(result.verdict).toBe('violation');
    expect(result.partitions[0]!.blocked).toHaveLength(1);
    // a concurrent write of 0 between them explains it
    expect(verdict('register', [...base, ok(3, 2, 5, write('x', '0'), written)])).toBe('ok');
  });

  it('reads a failed cas as "the value differed"', () => {
    expect(verdict('register', [ok(0, 0, 1, write('x', 'a'), written), ok(1, 2, 3, cas('x', 'a', 'b'), casDone(false))])).toBe('violation');
    expect(verdict('register', [ok(0, 0, 1, cas('x', 'a', 'b'), casDone(false)), ok(1, 2, 3, read('x'), value(null))])).toBe('ok');
  });

  it('treats a pending write as taking effect at any moment after its call, or never', () => {
    const pending = [ok(0, 0, 1, write('x', '1'), written), info(1, 2, write('x', '2'))];
    expect(verdict('register', [...pending, ok(2, 100, 101, read('x'), value('2'))])).toBe('ok');
    expect(verdict('register', [...pending, ok(2, 100, 101, read('x'), value('1'))])).toBe('ok');
    // it took effect, then vanished
    expect(verdict('register', [...pending, ok(2, 100, 101, read('x'), value('2')), ok(3, 102, 103, read('x'), value('1'))])).toBe('violation');
    // seen before it was called
    expect(verdict('register', [ok(0, 0, 1, read('x'), value('2')), info(1, 2, write('x', '2'))])).toBe('violation');
  });

  it('treats an info op that has a return time as pending too', () => {
    const history: Operation[] = [
      { id: 0, process: 0, call: 0, ret: 1, status: 'info', input: write('x', '1'), error: 'timeout' },
      ok(1, 50, 51, read('x'), value('1')),
    ];
    expect(verdict('register', history)).toBe('ok');
  });

  it('drops failed ops', () => {
    expect(verdict('register', [failed(0, 0, 1, write('x', '1')), ok(1, 2, 3, read('x'), value('1'))])).toBe('violation');
    const result = checkLinearizability('register', [failed(0, 0, 1, write('x', '1')), ok(1, 2, 3, read('x'), value(null))]);
    expect(result.verdict).toBe('ok');
    expect(result.operations).toBe(1);
  });

  it('splits per key and reports each key', () => {
    const history = [
      ok(0, 0, 1, write('a', '1'), written),
      ok(1, 0, 1, write('b', '1'), written),
      ok(2, 2, 3, read('a'), value('1')),
      ok(3, 2, 3, read('b'), value(null)),
    ];
    const result = checkLinearizability('register', history);
    expect(result.verdict).toBe('violation');
    expect(result.partitions.map((p) => [p.key, p.verdict, p.operations])).toEqual([
      ['a', 'ok', 2],
      ['b', 'violation', 2],
    ]);
    expect(result.operations).toBe(4);
  });

  it('counts ops that touch at one instant as concurrent', () => {
    expect(verdict('register', [ok(0, 0, 5, write('x', '1'), written), ok(1, 5, 6, read('x'), value(null))])).toBe('ok');
    expect(verdict('register', [ok(0, 0, 5, write('x', '1'), written), ok(1, 6, 7, read('x'), value(null))])).toBe('violation');
  });

  it('rejects malformed histories with a TypeError', () => {
    expect(() => checkLinearizability('register', [ok(0, 0, 1, read('x'), value(null)), ok(0, 2, 3, read('x'), value(null))])).toThrow(TypeError);
    expect(() => checkLinearizability('register', [ok(0, 0, 1, read('x'), written)])).toThrow(TypeError);
    expect(() => checkLinearizability('register', [{ id: 0, process: 0, call: 0, ret: 1, status: 'ok', input: read('x') }])).toThrow(TypeError);
    expect(() => checkLinearizability('register', [ok(0, 5, 1, read('x'), value(null))])).toThrow(TypeError);
    expect(() => checkLinearizability('register', [ok(0, 0, 1, { f: 'frob', key: 'x' }, written)])).toThrow(TypeError);
  });

  it('answers ok on an empty history', () => {
    expect(checkLinearizability('register', [])).toMatchObject({ verdict: 'ok', partitions: [], operations: 0 });
  });
});

// ---------------------------------------------------------------------------------------------

const put = (key: string, v: string) => ({ f: 'put', key, value: v });
const get = (key: string) => ({ f: 'get', key });
const del = (key: string) => ({ f: 'delete', key });
const putDone = (revision: number, prevValue: string | null = null) => ({ f: 'put', prevValue, revision });
const got = (revision: number, v: string | null, modRevision = 0, createRevision = 0, version = 0) => ({ f: 'get', value: v, modRevision, createRevision, version, revision });
const deleted = (revision: number, count: number) => ({ f: 'delete', deleted: count, revision });

describe('kv', () => {
  it('follows etcd: revisions from 1, put bumps, versions count, prevValue, delete', () => {
    const history = [
      ok(0, 0, 1, get('a'), got(1, null)),
      ok(1, 2, 3, put('a', 'x'), putDone(2)),
      ok(2, 4, 5, put('a', 'y'), putDone(3, 'x')),
      ok(3, 6, 7, get('a'), got(3, 'y', 3, 2, 2)),
      ok(4, 8, 9, del('b'), deleted(3, 0)),
      ok(5, 10, 11, del('a'), deleted(4, 1)),
      ok(6, 12, 13, get('a'), got(4, null)),
      ok(7, 14, 15, put('a', 'z'), putDone(5)),
      ok(8, 16, 17, get('a'), got(5, 'z', 5, 5, 1)),
    ];
    expect(verdict('kv', history)).toBe('ok');
  });

  it('catches a get whose revision goes backwards', () => {
    const history = [
      ok(0, 0, 1, put('a', 'x'), putDone(2)),
      ok(1, 2, 3, put('b', 'y'), putDone(3)),
      ok(2, 4, 5, get('a'), got(2, 'x', 2, 2, 1)),
    ];
    const result = checkLinearizability('kv', history);
    expect(result.verdict).toBe('violation');
    expect(result.partitions[0]!.key).toBe('');
    expect(result.partitions[0]!.blocked).toEqual([2]);
  });

  it('catches a put whose revision duplicates another', () => {
    const history = [ok(0, 0, 3, put('a', 'x'), putDone(2)), ok(1, 1, 3, put('b', 'y'), putDone(2))];
    expect(verdict('kv', history)).toBe('violation');
    expect(verdict('kv', [ok(0, 0, 3, put('a', 'x'), putDone(2)), ok(1, 1, 3, put('b', 'y'), putDone(3))])).toBe('ok');
  });

  it('catches a delete of an absent key that bumped the revision', () => {
    expect(verdict('kv', [ok(0, 0, 1, del('a'), deleted(2, 0))])).toBe('violation');
    expect(verdict('kv', [ok(0, 0, 1, del('a'), deleted(1, 0))])).toBe('ok');
  });

  it('sees a get\'s fields exactly (createRevision kept across puts)', () => {
    const base = [ok(0, 0, 1, put('a', 'x'), putDone(2)), ok(1, 2, 3, put('a', 'y'), putDone(3, 'x'))];
    expect(verdict('kv', [...base, ok(2, 4, 5, get('a'), got(3, 'y', 3, 2, 2))])).toBe('ok');
    expect(verdict('kv', [...base, ok(2, 4, 5, get('a'), got(3, 'y', 3, 3, 2))])).toBe('violation');
    expect(verdict('kv', [...base, ok(2, 4, 5, get('a'), got(3, 'y', 3, 2, 1))])).toBe('violation');
    expect(verdict('kv', [ok(0, 0, 1, put('a', 'x'), putDone(2, 'old'))])).toBe('violation');
  });

  it('runs txns: one revision for all writes, own writes visible, compares on absent keys', () => {
    const txn = (compare: unknown[], success: unknown[], failure: unknown[] = []) => ({ f: 'txn', compare, success, failure });
    const txnDone = (revision: number, succeeded: boolean, results: unknown[]) => ({ f: 'txn', revision, succeeded, results });
    const history = [
      // create-if-absent: create == 0 holds for an absent key
      ok(0, 0, 1, txn([{ target: 'create', key: 'a', value: 0 }], [put('a', '1'), put('b', '2'), get('a')]), txnDone(2, true, [
        { f: 'put', prevValue: null },
        { f: 'put', prevValue: null },
        { f: 'get', value: '1', modRevision: 2, createRevision: 2, version: 1 },
      ])),
      // value compare on an absent key is false; failure branch is read-only: revision stays
      ok(1, 2, 3, txn([{ target: 'value', key: 'zz', value: '' }], [put('zz', '1')], [get('b')]), txnDone(2, false, [
        { f: 'get', value: '2', modRevision: 2, createRevision: 2, version: 1 },
      ])),
      // only deletes of absent keys: no bump
      ok(2, 4, 5, txn([], [del('nope')]), txnDone(2, true, [{ f: 'delete', deleted: 0 }])),
      ok(3, 6, 7, txn([{ target: 'mod', key: 'a', value: 2 }, { target: 'version', key: 'a', value: 1 }], [del('a'), del('nope')]), txnDone(3, true, [
        { f: 'delete', deleted: 1 },
        { f: 'delete', deleted: 0 },
      ])),
      ok(4, 8, 9, get('b'), got(3, '2', 2, 2, 1)),
    ];
    expect(verdict('kv', history)).toBe('ok');
    // the same txns, but the no-op txn claims a new revision
    const bumped = history.map((op) => (op.id === 2 ? { ...op, output: txnDone(3, true, [{ f: 'delete', deleted: 0 }]) } : op));
    expect(verdict('kv', bumped)).toBe('violation');
  });

  it('lets a pending put take effect (or not)', () => {
    const pending = [info(0, 0, put('a', 'x'))];
    expect(verdict('kv', [...pending, ok(1, 10, 11, put('b', 'y'), putDone(3))])).toBe('ok');
    expect(verdict('kv', [...pending, ok(1, 10, 11, put('b', 'y'), putDone(2))])).toBe('ok');
    expect(verdict('kv', [...pending, ok(1, 10, 11, put('b', 'y'), putDone(4))])).toBe('violation');
  });
});

// ---------------------------------------------------------------------------------------------

describe('set', () => {
  const add = (v: string) => ({ f: 'add', value: v });
  const added = { f: 'add' };
  const readAll = { f: 'read' };
  const values = (...vs: string[]) => ({ f: 'read', values: vs });

  it('accepts reads in any order, with repeats, seeing concurrent adds or not', () => {
    const history = [
      ok(0, 0, 1, add('a'), added),
      ok(1, 2, 10, add('b'), added),
      ok(2, 3, 4, readAll, values('a')),
      ok(3, 5, 6, readAll, values('b', 'a', 'a')),
      ok(4, 11, 12, readAll, values('a', 'b')),
    ];
    expect(verdict('set', history)).toBe('ok');
  });

  it('catches a read missing an acknowledged add', () => {
    const history = [ok(0, 0, 1, add('a'), added), ok(1, 2, 3, add('b'), added), ok(2, 4, 5, readAll, values('b'))];
    const result = checkLinearizability('set', history);
    expect(result.verdict).toBe('violation');
    expect(result.partitions[0]!.blocked).toEqual([2]);
  });

  it('catches an element never added, and a pending add that was seen then lost', () => {
    expect(verdict('set', [ok(0, 0, 1, readAll, values('ghost'))])).toBe('violation');
    const pending = [info(0, 0, add('a'))];
    expect(verdict('set', [...pending, ok(1, 5, 6, readAll, values('a'))])).toBe('ok');
    expect(verdict('set', [...pending, ok(1, 5, 6, readAll, values())])).toBe('ok');
    expect(verdict('set', [...pending, ok(1, 5, 6, readAll, values('a')), ok(2, 7, 8, readAll, values())])).toBe('violation');
  });
});

// ---------------------------------------------------------------------------------------------

describe('counter', () => {
  const add = (key: string, delta: number) => ({ f: 'add', key, delta });
  const addDone = (v?: number) => (v === undefined ? { f: 'add' } : { f: 'add', value: v });
  const count = (v: number) => ({ f: 'read', value: v });

  it('accepts adds and reads, a missing key reading 0', () => {
    const history = [
      ok(0, 0, 1, { f: 'read', key: 'c' }, count(0)),
      ok(1, 2, 6, add('c', 2), addDone(2)),
      ok(2, 2, 6, add('c', 3), addDone()),
      ok(3, 3, 4, { f: 'read', key: 'c' }, count(2)),
      ok(4, 7, 8, { f: 'read', key: 'c' }, count(5)),
    ];
    expect(verdict('counter', history)).toBe('ok');
  });

  it('catches a read that lost an add, and a wrong value after an add', () => {
    const adds = [ok(0, 0, 1, add('c', 2), addDone()), ok(1, 2, 3, add('c', 3), addDone())];
    expect(verdict('counter', [...adds, ok(2, 4, 5, { f: 'read', key: 'c' }, count(3))])).toBe('violation');
    expect(verdict('counter', [ok(0, 0, 1, add('c', 2), addDone(2)), ok(1, 2, 3, add('c', 3), addDone(6))])).toBe('violation');
  });

  it('lets a pending add take effect (or not)', () => {
    const pending = [info(0, 0, add('c', 4))];
    expect(verdict('counter', [...pending, ok(1, 5, 6, { f: 'read', key: 'c' }, count(4))])).toBe('ok');
    expect(verdict('counter', [...pending, ok(1, 5, 6, { f: 'read', key: 'c' }, count(0))])).toBe('ok');
    expect(verdict('counter', [...pending, ok(1, 5, 6, { f: 'read', key: 'c' }, count(2))])).toBe('violation');
  });
});

// ---------------------------------------------------------------------------------------------

describe('lock', () => {
  const acquire = { f: 'acquire', lock: 'L' };
  const token = (t: number) => ({ f: 'acquire', token: t });
  const guarded = (t: number, v: string) => ({ f: 'write', lock: 'L', token: t, value: v });
  const accepted = (yes: boolean) => ({ f: 'write', accepted: yes });
  const readLock = { f: 'read', lock: 'L' };
  const lockValue = (v: string | null) => ({ f: 'read', value: v });

  it('accepts a takeover after a lease expired: the old holder is fenced off', () => {
    const history = [
      ok(0, 0, 1, acquire, token(5), 1),
      ok(1, 2, 3, guarded(5, 'a'), accepted(true), 1),
      // the holder's lease expires unseen; another client gets the lock without a release
      ok(2, 4, 5, acquire, token(9), 2),
      ok(3, 6, 7, guarded(9, 'b'), accepted(true), 2),
      ok(4, 8, 9, guarded(9, 'c'), accepted(true), 2),
      ok(5, 10, 11, guarded(5, 'late'), accepted(false), 1),
      ok(6, 12, 13, readLock, lockValue('c')),
      ok(7, 14, 15, { f: 'release', lock: 'L', token: 9 }, { f: 'release' }, 2),
    ];
    expect(verdict('lock', history)).toBe('ok');
  });

  it('catches a fenced write accepted after a newer token wrote', () => {
    const history = [
      ok(0, 0, 1, acquire, token(5), 1),
      ok(1, 2, 3, acquire, token(9), 2),
      ok(2, 4, 5, guarded(9, 'b'), accepted(true), 2),
      ok(3, 6, 7, guarded(5, 'a'), accepted(true), 1),
    ];
    const result = checkLinearizability('lock', history);
    expect(result.verdict).toBe('violation');
    expect(result.partitions[0]!.key).toBe('L');
    expect(result.partitions[0]!.blocked).toEqual([3]);
  });

  it('catches tokens that do not increase, and a read of a rejected write', () => {
    expect(verdict('lock', [ok(0, 0, 1, acquire, token(5), 1), ok(1, 2, 3, acquire, token(5), 2)])).toBe('violation');
    expect(verdict('lock', [ok(0, 0, 1, acquire, token(5), 1), ok(1, 2, 3, acquire, token(4), 2)])).toBe('violation');
    const fenced = [
      ok(0, 0, 1, guarded(9, 'new'), accepted(true), 1),
      ok(1, 2, 3, guarded(5, 'old'), accepted(false), 2),
    ];
    expect(verdict('lock', [...fenced, ok(2, 4, 5, readLock, lockValue('new'))])).toBe('ok');
    expect(verdict('lock', [...fenced, ok(2, 4, 5, readLock, lockValue('old'))])).toBe('violation');
    expect(verdict('lock', [ok(0, 0, 1, guarded(5, 'a'), accepted(false))])).toBe('violation');
  });

  it('drops a pending acquire (it could only raise the bar for later tokens)', () => {
    const base = [ok(0, 0, 1, acquire, token(5), 1), info(1, 2, acquire, 2)];
    expect(verdict('lock', [...base, ok(2, 10, 11, acquire, token(6), 3)])).toBe('ok');
    expect(verdict('lock', [...base, ok(2, 10, 11, acquire, token(7), 3)])).toBe('ok');
    expect(verdict('lock', [...base, ok(2, 10, 11, acquire, token(5), 3)])).toBe('violation');
  });

  it('splits per lock name', () => {
    const history = [
      ok(0, 0, 1, { f: 'acquire', lock: 'A' }, token(5)),
      ok(1, 2, 3, { f: 'acquire', lock: 'B' }, token(3)),
    ];
    const result = checkLinearizability('lock', history);
    expect(result.verdict).toBe('ok');
    expect(result.partitions.map((p) => p.key)).toEqual(['A', 'B']);
  });
});
