/**
 * The ownership engine: a data shard cedes a prefix only while it holds no live key under it,
 * then refuses, where they apply, every write that touches a ceded key (KV puts, deletes and txns,
 * dkv.v1 puts and txns, counters) on every replica alike, changing nothing; reclaiming serves the
 * keys again; the ceded prefixes are in the snapshot (none: no section) and the hash. `owns`
 * agrees with an exact oracle over random prefixes and ranges.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Entry } from '../../raft/index.js';
import { type EngineCommand, type EngineError, OwnershipEngine, cedeCommand, reclaimCommand, retireCommand, sectionChunks, splitCommand } from '../../src/engines/index.js';
import { counterOutcome, deleteCommand, incrementCommand } from '../../src/engines/counter/index.js';
import { grantCommand, revokeCommand } from '../../src/engines/lease/engine.js';
import { KvCommandKind, KvEngine, kvCommand, kvOutcome } from '../../src/engines/kv/index.js';
import { dkvPutCommand, dkvTxnCommand, ttlOutcome } from '../../src/engines/ttl/index.js';
import { dkvType, etcdType } from '../../src/etcd-proto.js';
import { type ShardStateMachine, composeStateMachine, encodeEnvelope, kvEngineOf, ownershipEngineOf } from '../../src/runtime/index.js';
import { joinSnapshotFrames } from '../../storage/index.js';

const PutRequest = etcdType('etcdserverpb.PutRequest');
const DeleteRangeRequest = etcdType('etcdserverpb.DeleteRangeRequest');
const TxnRequest = etcdType('etcdserverpb.TxnRequest');
const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const put = (key: string): EngineCommand => kvCommand(KvCommandKind.Put, PutRequest.encode({ key: b(key), value: b('v') }).finish());
const del = (key: string, end?: string): EngineCommand => kvCommand(KvCommandKind.DeleteRange, DeleteRangeRequest.encode({ key: b(key), range_end: end === undefined ? undefined : b(end) }).finish());
const txn = (body: object): EngineCommand => kvCommand(KvCommandKind.Txn, TxnRequest.encode(body).finish());

class Log {
  index = 0;
  constructor(readonly machine: ShardStateMachine = composeStateMachine('data')) {}
  apply(command: EngineCommand): unknown {
    this.index++;
    const entry: Entry = { index: this.index, term: 1, type: 'normal', data: encodeEnvelope({ ...command, timestampMs: 1000 + this.index, proposer: 1, requestId: this.index }) };
    return this.machine.apply(entry)?.outcome;
  }
}

const refusalCode = (outcome: unknown): string | undefined => {
  const o = outcome as { kind?: string; outcome?: { kind: string; error?: EngineError }; error?: EngineError };
  const inner = o.outcome ?? o;
  return inner.kind === 'error' ? (inner.error as EngineError | undefined)?.code : undefined;
};

describe('OwnershipEngine', () => {
  it('cedes a prefix only while no live key is under it, and refuses overlaps', () => {
    const log = new Log();
    log.apply(put('/users/a'));
    expect(log.apply(cedeCommand(b('/users/'), 2))).toMatchObject({ kind: 'error', code: 'prefix-in-use', message: expect.stringContaining('1 key') });
    log.apply(del('/users/a'));
    // A deleted key's history does not count.
    expect(log.apply(cedeCommand(b('/users/'), 2))).toEqual({ kind: 'ok' });
    expect(log.apply(cedeCommand(b('/users/'), 2))).toEqual({ kind: 'ok' });
    expect(log.apply(cedeCommand(b('/users/admins/'), 2))).toMatchObject({ kind: 'error', code: 'prefix-overlap' });
    expect(log.apply(cedeCommand(b('/us'), 2))).toMatchObject({ kind: 'error', code: 'prefix-overlap' });
    expect(log.apply(cedeCommand(new Uint8Array(0), 2))).toMatchObject({ kind: 'error', code: 'bad-prefix' });
    expect(ownershipEngineOf(log.machine).cessions()).toEqual([{ prefix: Uint8Array.from(b('/users/')), store: 2 }]);
    // One store's prefix: another store (a later incarnation) is refused until it is reclaimed.
    expect(log.apply(cedeCommand(b('/users/'), 9))).toMatchObject({ kind: 'error', code: 'prefix-ceded', store: 2 });
    expect(log.apply(reclaimCommand(b('/users/'), 9))).toEqual({ kind: 'ok' });
    expect(ownershipEngineOf(log.machine).cessions()).toHaveLength(1);
    expect(log.apply(reclaimCommand(b('/users/'), 2))).toEqual({ kind: 'ok' });
    expect(log.apply(cedeCommand(b('/users/'), 9))).toEqual({ kind: 'ok' });
    expect(log.apply(cedeCommand(b('/x/'), 0))).toMatchObject({ kind: 'error', code: 'bad-prefix' });
  });

  it('refuses every write that touches a ceded key, changing nothing, and serves the rest', () => {
    const log = new Log();
    log.apply(put('/other'));
    log.apply(cedeCommand(b('/users/'), 2));
    // The machine's hash moves with the leader's time of each entry: the store's must not move.
    const before = kvEngineOf(log.machine).hash();
    const revision = kvEngineOf(log.machine).mvcc.revision;
    const refused: unknown[] = [
      log.apply(put('/users/a')),
      log.apply(del('/users/a')),
      // A range that crosses the prefix, and every key from below it on.
      log.apply(del('/a', '/z')),
      log.apply(del('/', '\0')),
      log.apply(txn({ compare: [{ key: b('/users/a'), target: 0, result: 0, version: 0 }], success: [{ request_put: { key: b('/x'), value: b('1') } }] })),
      log.apply(txn({ success: [{ request_range: { key: b('/users/'), range_end: b('/users0') } }] })),
      log.apply(txn({ failure: [{ request_txn: { success: [{ request_delete_range: { key: b('/users/q') } }] } }] })),
    ];
    for (const outcome of refused) expect(refusalCode(kvOutcome(outcome))).toBe('not-owned');
    expect(refusalCode(ttlOutcome(log.apply(dkvPutCommand(dkvType('dkv.v1.PutRequest').encode({ key: b('/users/t'), value: b('1'), ttl_ms: 60_000 }).finish()))))).toBe('not-owned');
    // A fence key under the ceded prefix: the fenced write is refused as not owned, not as stale.
    expect(refusalCode(ttlOutcome(log.apply(dkvPutCommand(dkvType('dkv.v1.PutRequest').encode({ key: b('/x'), value: b('1'), fence: { key: b('/users/lock'), token: 3 } }).finish()))))).toBe('not-owned');
    expect(refusalCode(ttlOutcome(log.apply(dkvTxnCommand(dkvType('dkv.v1.TxnRequest').encode({ txn: { success: [{ request_put: { key: b('/users/t'), value: b('1') } }] } }).finish()))))).toBe('not-owned');
    expect(refusalCode(counterOutcome(log.apply(incrementCommand(b('/users/n'), 1n))))).toBe('not-owned');
    expect(refusalCode(counterOutcome(log.apply(deleteCommand(b('/users/n')))))).toBe('not-owned');
    expect(kvEngineOf(log.machine).hash()).toBe(before);
    expect(kvEngineOf(log.machine).mvcc.revision).toBe(revision);
    // Beside the prefix everything applies.
    expect(kvOutcome(log.apply(put('/users')))).toMatchObject({ outcome: { kind: 'put' } });
    expect(kvOutcome(log.apply(put('/users0')))).toMatchObject({ outcome: { kind: 'put' } });
    expect(kvOutcome(log.apply(del('/a', '/users/')))).toMatchObject({ outcome: { kind: 'delete-range' } });
    expect(counterOutcome(log.apply(incrementCommand(b('/n'), 1n))).kind).toBe('incremented');
    // Reclaimed: served again.
    expect(log.apply(reclaimCommand(b('/users/'), 2))).toEqual({ kind: 'ok' });
    expect(log.apply(reclaimCommand(b('/users/'), 2))).toEqual({ kind: 'ok' });
    expect(kvOutcome(log.apply(put('/users/a')))).toMatchObject({ outcome: { kind: 'put' } });
  });

  it('keeps the ceded prefixes in the snapshot and the hash; none ceded, no section', () => {
    const log = new Log();
    const empty = [...log.machine.snapshot()];
    log.apply(cedeCommand(b('/users/'), 2));
    log.apply(cedeCommand(b('\xff\xff'), 2));
    expect(log.machine.hash()).not.toBe(new Log().machine.hash());
    const replica = composeStateMachine('data');
    replica.restore(joinSnapshotFrames(log.machine.snapshot()), log.index);
    expect(ownershipEngineOf(replica).cessions()).toEqual(ownershipEngineOf(log.machine).cessions());
    expect(replica.hash()).toBe(log.machine.hash());
    const next = new Log(replica);
    next.index = log.index;
    expect(refusalCode(kvOutcome(next.apply(put('/users/a'))))).toBe('not-owned');
    // Nothing ceded: the snapshot is what a build without the engine writes (no ownership section).
    const engine = new OwnershipEngine(new KvEngine());
    expect([...{ [Symbol.iterator]: () => engine.snapshot() }]).toEqual([]);
    expect(empty.length).toBeGreaterThan(0);
    engine.restore([]);
    expect(engine.hash()).toBe(0);
    const one = [0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 65];
    engine.restore([new Uint8Array([0, 0, 0, 1, ...one])]);
    expect(engine.cessions()).toEqual([{ prefix: Uint8Array.of(65), store: 2 }]);
    expect(() => engine.restore([new Uint8Array([0, 0, 0, 2, ...one])])).toThrow(/cut off/);
    expect(() => engine.restore([new Uint8Array([0, 0, 0, 1, ...one, 66])])).toThrow(/after the prefixes/);
    expect(() => engine.restore([new Uint8Array([0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 65])])).toThrow(/store 0/);
  });

  it('serves no key once retired (its store is being dropped), through a snapshot; a restore as a new cluster serves again', () => {
    const log = new Log();
    log.apply(put('/users/a'));
    expect(log.apply(retireCommand(2))).toEqual({ kind: 'ok' });
    expect(refusalCode(kvOutcome(log.apply(put('/users/b'))))).toBe('not-owned');
    expect(refusalCode(kvOutcome(log.apply(del('/users/a'))))).toBe('not-owned');
    expect(ownershipEngineOf(log.machine).owns(b('anything'))).toBe(false);
    const replica = composeStateMachine('data');
    replica.restore(joinSnapshotFrames(log.machine.snapshot()), log.index);
    expect(ownershipEngineOf(replica).retired).toBe(2);
    expect(ownershipEngineOf(replica).owns(b('/users/a'))).toBe(false);
    // A backup restored as a new cluster holds the default store alone: nothing stays ceded or retired.
    const restored = ownershipEngineOf(replica);
    new Log(replica);
    restored.restoredAsNew();
    expect([restored.retired, restored.cessions(), restored.owns(b('/users/a'))]).toEqual([0, [], true]);
    const ceded = new Log();
    ceded.apply(cedeCommand(b('/x/'), 2));
    ownershipEngineOf(ceded.machine).restoredAsNew();
    expect(ownershipEngineOf(ceded.machine).owns(b('/x/a'))).toBe(true);
  });

  it('owns exactly the keys no ceded prefix starts (random prefixes and ranges against an exact oracle)', () => {
    const alphabet = ['a', 'b', '\xff', '\0'];
    const word = (max: number) => fc.array(fc.constantFrom(...alphabet), { minLength: 0, maxLength: max }).map((cs) => cs.join(''));
    const startsWith = (k: string, p: string): boolean => k.startsWith(p);
    fc.assert(
      fc.property(fc.array(word(3).filter((p) => p.length > 0), { maxLength: 4 }), word(4), fc.option(word(4), { nil: undefined }), (prefixes, key, end) => {
        const engine = new OwnershipEngine(new KvEngine());
        const ceded: string[] = [];
        for (const p of prefixes) {
          const outcome = engine.apply(cedeCommand(b(p), 2), { index: 1, term: 1, nowMs: 0, proposer: 0, requestId: 0 });
          if (outcome.kind === 'ok' && !ceded.includes(p)) ceded.push(p);
        }
        const k = key.length === 0 ? '\0' : key;
        // The range [k, end): end undefined is the key alone; '\0' every key from k on.
        const inRange = (x: string): boolean => (end === undefined || end === '' ? x === k : x >= k && (end === '\0' || x < end));
        // [k, end) meets [p, p's end) iff p itself is in the range or k lies under p.
        const expected = !ceded.some((p) => inRange(p) || ((end === undefined || end === '' || end === '\0' || k < end) && startsWith(k, p)));
        expect(engine.owns(b(k), end === undefined ? undefined : b(end))).toBe(expected);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('split bounds', () => {
  const keys = fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 3 }).map((bytes) => Buffer.from(bytes));
  /** The oracle: every key of [key, end) (etcd's conventions) lies in [lo, hi). */
  const inside = (key: Buffer, end: Buffer | undefined, lo: Buffer | undefined, hi: Buffer | undefined): boolean => {
    const within = (k: Buffer) => (lo === undefined || Buffer.compare(k, lo) >= 0) && (hi === undefined || Buffer.compare(k, hi) < 0);
    if (end === undefined || end.length === 0) return within(key);
    const noEnd = end.length === 1 && end[0] === 0;
    if (!noEnd && Buffer.compare(key, end) >= 0) return true;
    if (!within(key)) return false;
    if (hi === undefined) return true;
    return !noEnd && Buffer.compare(end, hi) <= 0;
  };

  it('owns exactly the keys and ranges inside [lo, hi) after splits, and keeps the bounds through a snapshot', () => {
    fc.assert(
      fc.property(keys, keys, keys, fc.option(keys, { nil: undefined }), (a, c, key, end) => {
        const [lo, hi] = Buffer.compare(a, c) <= 0 ? [a, c] : [c, a];
        const engine = new OwnershipEngine(new KvEngine());
        engine.retainRange(lo, undefined);
        if (hi.length > 0) engine.retainRange(new Uint8Array(0), hi);
        const hiBound = hi.length > 0 ? hi : undefined;
        const loBound = lo.length > 0 ? lo : undefined;
        expect(engine.owns(key, end)).toBe(inside(key, end, loBound, hiBound));
        const copy = new OwnershipEngine(new KvEngine());
        copy.restore(sectionChunks(engine.snapshot()));
        expect(copy.owns(key, end)).toBe(engine.owns(key, end));
        expect(copy.hash()).toBe(engine.hash());
        expect(copy.bounds()).toEqual(engine.bounds());
      }),
      { numRuns: 500 },
    );
  });

  it('keeps a retired shard retired with bounds, and an 8-byte retired tail still restores', () => {
    const engine = new OwnershipEngine(new KvEngine());
    engine.apply(retireCommand(9), { index: 1, term: 1, nowMs: 0, proposer: 1, requestId: 1 });
    const legacy = sectionChunks(engine.snapshot());
    expect(joinSnapshotFrames(legacy).length).toBe(4 + 8);
    engine.retainRange(b('m'), undefined);
    const copy = new OwnershipEngine(new KvEngine());
    copy.restore(sectionChunks(engine.snapshot()));
    expect(copy.retired).toBe(9);
    expect(copy.bounds().lo).toEqual(new Uint8Array(b('m')));
    const old = new OwnershipEngine(new KvEngine());
    old.restore(legacy);
    expect(old.retired).toBe(9);
    expect(old.bounds()).toEqual({ lo: undefined, hi: undefined });
  });

  it('refuses a split of a shard that ceded a prefix (a default-store shard), and one without a splitter', () => {
    const log = new Log();
    expect(log.apply(cedeCommand(b('/s/'), 2))).toEqual({ kind: 'ok' });
    expect(log.apply(splitCommand(3, b('m'), undefined))).toMatchObject({ kind: 'error', code: 'bad-split' });
    const bare = new OwnershipEngine(new KvEngine());
    expect(bare.apply(splitCommand(3, b('m'), undefined), { index: 1, term: 1, nowMs: 0, proposer: 1, requestId: 1 })).toMatchObject({ kind: 'error', code: 'bad-split' });
  });
});

describe('split fences', () => {
  const grant = (id: bigint) => grantCommand(id, 60);
  const revoke = (id: bigint) => revokeCommand(id);

  it('fences the child of a refused split (version 3): no later split into it applies, even once the shard allows splits', () => {
    const log = new Log();
    log.apply(put('a'));
    log.apply(put('p'));
    expect(log.apply(grant(5n))).toMatchObject({ kind: 'granted' });
    const ownership = ownershipEngineOf(log.machine);
    expect(log.apply(splitCommand(9, b('m'), undefined))).toMatchObject({ kind: 'error', code: 'bad-split' });
    expect(ownership.splitFence).toBe(9);
    log.apply(revoke(5n));
    // The same split again, or into a lower id: refused, the shard whole.
    expect(log.apply(splitCommand(9, b('m'), undefined))).toMatchObject({ kind: 'error', message: expect.stringContaining('fenced') });
    expect(log.apply(splitCommand(8, b('m'), undefined))).toMatchObject({ kind: 'error', code: 'bad-split' });
    expect(ownership.bounds()).toEqual({ lo: undefined, hi: undefined });
    expect(log.machine.takeSplits()).toEqual([]);
    // A new split (a new child id) applies.
    expect(log.apply(splitCommand(10, b('m'), undefined))).toEqual({ kind: 'ok' });
    expect(ownership.bounds().hi).toEqual(new Uint8Array(b('m')));
    expect(ownership.splitFence).toBe(9);
    // The refused one again, late (a repair that read the map before the undo): still refused,
    // though a split at its key applied since; the one made is answered as made.
    expect(log.apply(splitCommand(9, b('m'), undefined))).toMatchObject({ kind: 'error', message: expect.stringContaining('fenced') });
    expect(log.apply(splitCommand(10, b('m'), undefined))).toEqual({ kind: 'ok' });
  });

  it('fences nothing at version 2 (a member of an earlier build applies it alike)', () => {
    const log = new Log();
    log.apply(put('a'));
    log.apply(grant(5n));
    expect(log.apply(splitCommand(9, b('m'), undefined, 2))).toMatchObject({ kind: 'error', code: 'bad-split' });
    expect(ownershipEngineOf(log.machine).splitFence).toBe(0);
    log.apply(revoke(5n));
    expect(log.apply(splitCommand(9, b('m'), undefined, 2))).toEqual({ kind: 'ok' });
  });

  it('keeps the fence through a snapshot and in the hash, with or without bounds; the section is version 3 only with one', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 40 }), fc.boolean(), fc.boolean(), (fence, bounded, retired) => {
        const engine = new OwnershipEngine(new KvEngine());
        if (retired) engine.apply(retireCommand(4), { index: 1, term: 1, nowMs: 0, proposer: 1, requestId: 1 });
        if (bounded) engine.retainRange(b('c'), b('x'));
        const before = engine.hash();
        engine.apply(splitCommand(fence, b('m'), undefined), { index: 2, term: 1, nowMs: 0, proposer: 1, requestId: 2 });
        expect(engine.splitFence).toBe(fence);
        expect(engine.sectionVersion).toBe(3);
        expect(engine.hash()).not.toBe(before);
        const copy = new OwnershipEngine(new KvEngine());
        copy.restore(sectionChunks(engine.snapshot()));
        expect([copy.splitFence, copy.hash(), copy.retired, copy.bounds()]).toEqual([fence, engine.hash(), engine.retired, engine.bounds()]);
        // A truncated fence is refused, not read as something else.
        const bytes = joinSnapshotFrames(sectionChunks(engine.snapshot()));
        expect(() => new OwnershipEngine(new KvEngine()).restore([bytes.subarray(0, bytes.length - 3)])).toThrow(/ownership snapshot section/);
      }),
      { numRuns: 100 },
    );
  });
});

describe('versions for a rolling upgrade', () => {
  it('keeps Cede, Reclaim and Retire at version 1, and stamps the section 2 only with split bounds', () => {
    expect([cedeCommand(b('/a/'), 2).version, reclaimCommand(b('/a/'), 2).version, retireCommand(2).version]).toEqual([1, 1, 1]);
    expect(splitCommand(3, b('m'), undefined).version).toBe(3);
    expect(splitCommand(3, b('m'), undefined, 2).version).toBe(2);
    const engine = new OwnershipEngine(new KvEngine());
    expect(engine.sectionVersion).toBe(1);
    engine.retainRange(new Uint8Array(0), b('m'));
    expect(engine.sectionVersion).toBe(2);
  });

  it('refuses a malformed split payload without stopping', () => {
    const engine = new OwnershipEngine(new KvEngine());
    const bad = { ...splitCommand(3, b('m'), undefined), payload: new Uint8Array([1, 2, 3]) };
    expect(engine.apply(bad, { index: 1, term: 1, nowMs: 0, proposer: 1, requestId: 1 })).toMatchObject({ kind: 'error', code: 'bad-split' });
  });
});
