/**
 * The TTL engine inside a data shard's state machine: TTLs set by dkv.v1 puts and txns and
 * cleared by any other write to the key, fencing tokens, expiry guarded by the mod revision and
 * applied in one revision per command, the leader's duty (bounded, retried, with a new leader's
 * grace), snapshots and hashes, and a property that the TTL table always matches a model.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Entry } from '../../raft/index.js';
import { type EngineCommand, EngineError, type LeaderContext } from '../../src/engines/index.js';
import { KvCommandKind, WireValueError, kvCommand, kvOutcome } from '../../src/engines/kv/index.js';
import { grantCommand, revokeCommand } from '../../src/engines/lease/index.js';
import { type TtlOutcome, dkvPutCommand, dkvTxnCommand, expireKeysCommand, ttlLimits, ttlOutcome } from '../../src/engines/ttl/index.js';
import { dkvType, etcdType } from '../../src/etcd-proto.js';
import { type ShardStateMachine, composeStateMachine, encodeEnvelope, kvEngineOf, leaseEngineOf, ttlEngineOf } from '../../src/runtime/index.js';
import { joinSnapshotFrames } from '../../storage/index.js';

const PutRequest = etcdType('etcdserverpb.PutRequest');
const DeleteRangeRequest = etcdType('etcdserverpb.DeleteRangeRequest');
const DkvPutRequest = dkvType('dkv.v1.PutRequest');
const DkvTxnRequest = dkvType('dkv.v1.TxnRequest');
const electionTimeoutMs = 1000;
const resolution = ttlLimits.ttlWheelResolutionMs;
const b = (text: string): Buffer => Buffer.from(text);

interface Fence {
  key: string;
  token: number;
}

const etcdPut = (key: string, lease = 0n): EngineCommand => kvCommand(KvCommandKind.Put, PutRequest.encode({ key: b(key), value: b('v'), lease: lease.toString() }).finish());
const del = (key: string): EngineCommand => kvCommand(KvCommandKind.DeleteRange, DeleteRangeRequest.encode({ key: b(key) }).finish());
const dkvPut = (key: string, ttlMs: number, options: { fence?: Fence; lease?: bigint; value?: string } = {}): EngineCommand =>
  dkvPutCommand(
    DkvPutRequest.encode(
      DkvPutRequest.fromObject({
        key: b(key),
        value: b(options.value ?? 'v'),
        lease: (options.lease ?? 0n).toString(),
        ttl_ms: ttlMs,
        fence: options.fence === undefined ? undefined : { key: b(options.fence.key), token: options.fence.token },
      }),
    ).finish(),
  );

/** A txn: if `ifExists` exists (version > 0) put `then`, else put `otherwise`; with TTLs by key. */
const dkvTxn = (ifExists: string, then: string, otherwise: string, ttls: Record<string, number>, fence?: Fence): EngineCommand =>
  dkvTxnCommand(
    DkvTxnRequest.encode(
      DkvTxnRequest.fromObject({
        txn: {
          compare: [{ key: b(ifExists), target: 0, result: 1, version: 0 }], // VERSION GREATER 0
          success: [{ request_put: { key: b(then), value: b('t') } }],
          failure: [{ request_put: { key: b(otherwise), value: b('f') } }],
        },
        ttls: Object.entries(ttls).map(([key, ttl]) => ({ key: b(key), ttl_ms: ttl })),
        fence: fence === undefined ? undefined : { key: b(fence.key), token: fence.token },
      }),
    ).finish(),
  );

/** A data shard's state machine fed entries with a given leader time and term. */
class Shard {
  readonly machine: ShardStateMachine = composeStateMachine('data', { electionTimeoutMs });
  private index = 0;

  constructor(leaderFromStart = true) {
    // A node that leads from the start: no key was written before it took office (no grace).
    if (leaderFromStart) this.ttls.onLeadership(true, this.leaderContext(0, 1, []));
  }

  apply(command: EngineCommand, timestampMs: number, term = 1): unknown {
    this.index++;
    const entry: Entry = { index: this.index, term, type: 'normal', data: encodeEnvelope({ ...command, timestampMs, proposer: 1, requestId: this.index }) };
    return this.machine.apply(entry)?.outcome;
  }

  ttl(command: EngineCommand, timestampMs: number, term = 1): TtlOutcome {
    return ttlOutcome(this.apply(command, timestampMs, term));
  }

  get ttls() {
    return ttlEngineOf(this.machine);
  }

  get mvcc() {
    return kvEngineOf(this.machine).mvcc;
  }

  /** Every key with a TTL: key → [deadline, mod revision]. */
  table(): Record<string, [number, number]> {
    return Object.fromEntries(this.ttls.entries().map((e) => [Buffer.from(e.key).toString(), [e.deadlineMs, e.modRevision]]));
  }

  has(key: string): boolean {
    return this.mvcc.range({ key: b(key) }).kvs.length === 1;
  }

  modRevision(key: string): number {
    return this.mvcc.range({ key: b(key) }).kvs[0]!.modRevision;
  }

  private leaderContext(nowMs: number, term: number, proposed: EngineCommand[]): LeaderContext {
    return { shardId: 1, term, nowMs, propose: (c) => proposed.push(c) };
  }

  /** Runs the leader's duty at `nowMs` in `term`; returns what it proposed. */
  leaderTick(nowMs: number, term = 1): EngineCommand[] {
    const proposed: EngineCommand[] = [];
    this.ttls.leaderTick(this.leaderContext(nowMs, term, proposed));
    return proposed;
  }

  /** The leader's duty at `nowMs`, its proposals applied at once; returns the keys deleted. */
  tickAndApply(nowMs: number, term = 1): string[] {
    const deleted: string[] = [];
    for (const command of this.leaderTick(nowMs, term)) {
      const outcome = this.ttl(command, nowMs, term);
      expect(outcome.kind).toBe('expired');
      for (const event of outcome.events) deleted.push(Buffer.from(event.kv.key).toString());
    }
    return deleted.sort();
  }
}

describe('TTL engine: setting and clearing TTLs', () => {
  it('a dkv put with ttl_ms records the deadline (stamped time + TTL) and the revision of that put', () => {
    const shard = new Shard();
    const outcome = shard.ttl(dkvPut('a', 5_000), 1_000);
    expect(outcome.kind).toBe('put');
    expect(outcome.kind === 'put' && outcome.result.revision).toBe(2);
    expect(outcome.events.map((e) => [e.type, Buffer.from(e.kv.key).toString()])).toEqual([['put', 'a']]);
    expect(shard.table()).toEqual({ a: [6_000, 2] });
    // Put again with another TTL: the new one replaces it; without ttl_ms the TTL is gone.
    shard.ttl(dkvPut('a', 10_000), 2_000);
    expect(shard.table()).toEqual({ a: [12_000, 3] });
    shard.ttl(dkvPut('a', 0), 2_000);
    expect(shard.table()).toEqual({});
    expect(shard.ttls.scheduled).toBe(0);
    shard.ttls.checkInvariants();
  });

  it('an etcd put, a delete, a lease revocation clear the TTL of the keys they write', () => {
    const shard = new Shard();
    shard.apply(grantCommand(7n, 60), 0);
    shard.ttl(dkvPut('put', 5_000), 0);
    shard.ttl(dkvPut('deleted', 5_000), 0);
    shard.ttl(dkvPut('leased', 5_000, { lease: 7n }), 0);
    shard.ttl(dkvPut('other', 5_000), 0);
    expect(Object.keys(shard.table()).sort()).toEqual(['deleted', 'leased', 'other', 'put']);
    shard.apply(etcdPut('put'), 0);
    expect(kvOutcome(shard.apply(del('deleted'), 0)).outcome.kind).toBe('delete-range');
    shard.apply(revokeCommand(7n), 0);
    expect(shard.has('leased')).toBe(false);
    expect(shard.table()).toEqual({ other: [5_000, 5] });
    expect(shard.ttls.scheduled).toBe(1);
    shard.ttls.checkInvariants();
  });

  it('a txn gives TTLs to the keys its taken branch puts, clears them on keys it puts without one', () => {
    const shard = new Shard();
    shard.ttl(dkvPut('then', 1_000), 0);
    const failed = shard.ttl(dkvTxn('missing', 'then', 'else', { then: 5_000, else: 7_000 }), 100);
    expect(failed.kind === 'txn' && failed.result.succeeded).toBe(false);
    // The failure branch put `else` (TTL); `then` kept its TTL, untouched.
    expect(shard.table()).toEqual({ then: [1_000, 2], else: [7_100, 3] });
    const succeeded = shard.ttl(dkvTxn('else', 'then', 'else', { else: 9_000 }), 200);
    expect(succeeded.kind === 'txn' && succeeded.result.succeeded).toBe(true);
    // `then` was put without a TTL entry: its TTL is gone; `else` (not put) keeps its own.
    expect(shard.table()).toEqual({ else: [7_100, 3] });
    shard.ttls.checkInvariants();
  });

  it('lets another engine set and clear a TTL in its own apply (KeyTtlScheduler)', () => {
    const shard = new Shard();
    shard.apply(etcdPut('counter'), 0);
    const revision = shard.modRevision('counter');
    shard.ttls.setTtl(b('counter'), 3_000, revision, 1);
    expect(shard.table()).toEqual({ counter: [3_000, revision] });
    // The write's own events arriving after setTtl (an engine that sets first) keep the TTL.
    kvEngineOf(shard.machine).written([{ type: 'put', kv: shard.mvcc.range({ key: b('counter') }).kvs[0]! }]);
    expect(shard.table()).toEqual({ counter: [3_000, revision] });
    shard.ttls.clearTtl(b('counter'));
    shard.ttls.clearTtl(b('never-had-one'));
    expect(shard.table()).toEqual({});
    shard.ttls.checkInvariants();
  });

  it('refuses bad TTLs and bad fences deterministically, before anything is written', () => {
    const shard = new Shard();
    for (const command of [dkvPut('a', -1), dkvPut('a', ttlLimits.keyTtlMsMax + 1), dkvPut('a', 1_000, { fence: { key: '', token: 2 } }), dkvPut('a', 1_000, { fence: { key: 'lock', token: 0 } })]) {
      const outcome = shard.ttl(command, 0);
      expect(outcome.kind === 'error' && outcome.error).toBeInstanceOf(WireValueError);
    }
    const duplicate = dkvTxnCommand(DkvTxnRequest.encode(DkvTxnRequest.fromObject({ ttls: [{ key: b('k'), ttl_ms: 1 }, { key: b('k'), ttl_ms: 2 }] })).finish());
    expect(shard.ttl(duplicate, 0).kind).toBe('error');
    expect(shard.ttl(dkvPut('a', ttlLimits.keyTtlMsMax), 0).kind).toBe('put');
    expect(shard.mvcc.revision).toBe(2);
  });
});

describe('TTL engine: fencing tokens', () => {
  it('applies a fenced put or txn only while the lock key lives with that create revision', () => {
    const shard = new Shard();
    shard.apply(etcdPut('lock'), 0);
    const token = shard.mvcc.range({ key: b('lock') }).kvs[0]!.createRevision;
    shard.apply(etcdPut('lock'), 0); // a write by the holder keeps the create revision
    expect(shard.ttl(dkvPut('data', 0, { fence: { key: 'lock', token } }), 0).kind).toBe('put');
    expect(shard.ttl(dkvTxn('data', 'x', 'y', {}, { key: 'lock', token }), 0).kind).toBe('txn');
    shard.apply(del('lock'), 0);
    shard.apply(etcdPut('lock'), 0); // another owner
    const before = shard.mvcc.revision;
    for (const fenced of [dkvPut('data', 1_000, { fence: { key: 'lock', token } }), dkvTxn('data', 'x', 'y', { x: 1_000 }, { key: 'lock', token }), dkvPut('data', 0, { fence: { key: 'nobody', token } })]) {
      const outcome = shard.ttl(fenced, 0);
      expect(outcome.kind === 'error' && outcome.error).toBeInstanceOf(EngineError);
      expect(outcome.kind === 'error' && (outcome.error as EngineError).code).toBe('fence-stale');
      expect(outcome.events).toEqual([]);
    }
    expect(shard.mvcc.revision).toBe(before);
    expect(shard.table()).toEqual({});
    const fresh = shard.mvcc.range({ key: b('lock') }).kvs[0]!.createRevision;
    expect(shard.ttl(dkvPut('data', 0, { fence: { key: 'lock', token: fresh } }), 0).kind).toBe('put');
  });
});

describe('TTL engine: expiry', () => {
  it('deletes only keys whose TTL still belongs to the revision named, and only once due at the stamped time', () => {
    const shard = new Shard();
    shard.ttl(dkvPut('a', 1_000), 0); // revision 2
    shard.ttl(dkvPut('b', 1_000), 0); // revision 3
    // Stamped before the deadline: nothing happens.
    expect(shard.ttl(expireKeysCommand([{ key: b('a'), modRevision: 2 }]), 999)).toMatchObject({ kind: 'expired', deleted: 0, events: [] });
    // Written again meanwhile (a new TTL at revision 4, deadline 999 + 5,000): the leader's old
    // view does not delete it.
    shard.ttl(dkvPut('a', 5_000), 999);
    expect(shard.ttl(expireKeysCommand([{ key: b('a'), modRevision: 2 }]), 1_000)).toMatchObject({ kind: 'expired', deleted: 0 });
    // An etcd put of b meanwhile: no TTL any more, it stays.
    shard.apply(etcdPut('b'), 999);
    expect(shard.ttl(expireKeysCommand([{ key: b('b'), modRevision: 3 }]), 1_000)).toMatchObject({ kind: 'expired', deleted: 0 });
    expect(shard.has('a') && shard.has('b')).toBe(true);
    // Not yet due at the stamped time.
    expect(shard.ttl(expireKeysCommand([{ key: b('a'), modRevision: 4 }]), 5_998)).toMatchObject({ kind: 'expired', deleted: 0 });
    // Even once the new TTL is due, the old revision names another version: it stays.
    expect(shard.ttl(expireKeysCommand([{ key: b('a'), modRevision: 2 }]), 6_000)).toMatchObject({ kind: 'expired', deleted: 0 });
    const expired = shard.ttl(expireKeysCommand([{ key: b('a'), modRevision: 4 }]), 6_000);
    expect(expired).toMatchObject({ kind: 'expired', deleted: 1, revision: 6 });
    expect(shard.has('a')).toBe(false);
    expect(shard.table()).toEqual({});
  });

  it('deletes a batch in ONE revision, the events together, and detaches leases', () => {
    const shard = new Shard();
    shard.apply(grantCommand(9n, 600), 0);
    const keys = ['k1', 'k2', 'k3', 'k4', 'k5'];
    for (const key of keys) shard.ttl(dkvPut(key, 1_000, { lease: key === 'k3' ? 9n : 0n }), 0);
    expect([...leaseEngineOf(shard.machine).get(9n)!.keys.keys()]).toEqual(['k3']);
    const before = shard.mvcc.revision;
    const outcome = shard.ttl(expireKeysCommand(keys.map((key) => ({ key: b(key), modRevision: shard.modRevision(key) }))), 1_000);
    expect(outcome).toMatchObject({ kind: 'expired', deleted: 5, revision: before + 1 });
    expect(outcome.events.map((e) => [e.type, Buffer.from(e.kv.key).toString(), e.kv.modRevision])).toEqual(keys.map((key) => ['delete', key, before + 1]));
    expect(leaseEngineOf(shard.machine).get(9n)!.keys.size).toBe(0);
    expect(shard.ttls.size).toBe(0);
    shard.ttls.checkInvariants();
  });

  it('the leader proposes expiries as deadlines pass, in commands of bounded size and number per tick', () => {
    const shard = new Shard();
    const count = ttlLimits.ttlExpiriesPerTickMax + 100;
    for (let i = 0; i < count; i++) shard.ttl(dkvPut(`k${i}`, 1_000 + (i % 3)), 0);
    shard.ttl(dkvPut('later', 5_000), 0);
    expect(shard.leaderTick(999)).toEqual([]);
    const first = shard.leaderTick(1_010);
    expect(first.length).toBe(ttlLimits.ttlExpireCommandsPerTickMax);
    let deleted = 0;
    for (const command of first) deleted += (shard.ttl(command, 1_010) as { deleted: number }).deleted;
    expect(deleted).toBe(ttlLimits.ttlExpiriesPerTickMax);
    // The rest on the next tick.
    expect(shard.tickAndApply(1_110).length).toBe(100);
    expect(shard.tickAndApply(4_990)).toEqual([]);
    expect(shard.tickAndApply(5_000)).toEqual(['later']);
    expect(shard.ttls.size).toBe(0);
    expect(shard.ttls.scheduled).toBe(0);
    shard.ttls.checkInvariants();
  });

  it('finishes cascading a dense slot of the wheel within the tick, so its keys are not a tick late', () => {
    const shard = new Shard();
    // 20,000 TTLs due over ticks 64..127 of the wheel (640..1,270 ms): one level-1 slot holding
    // more timers than one advance of the wheel moves. No key is written: only the duty is run.
    const count = 20_000;
    for (let i = 0; i < count; i++) shard.ttls.setTtl(b(`dense/${i}`), 640 + (i % 64) * 10, 5, 1);
    const keysProposed = (commands: EngineCommand[]): number => {
      let keys = 0;
      for (const command of commands) {
        const view = new DataView(command.payload.buffer, command.payload.byteOffset, command.payload.byteLength);
        for (let at = 0; at < view.byteLength; at += 12 + view.getUint32(at + 8)) keys++;
      }
      return keys;
    };
    expect(keysProposed(shard.leaderTick(639))).toBe(0);
    // Every tick of the slot proposes exactly the keys due at it, the first one included.
    for (let j = 0; j < 64; j++) expect(keysProposed(shard.leaderTick(640 + 10 * j)), `tick ${64 + j}`).toBe(Math.floor(count / 64) + (j < count % 64 ? 1 : 0));
  });

  it('a lost expiry is proposed again one election timeout later; a key written meanwhile is not', () => {
    const shard = new Shard();
    shard.ttl(dkvPut('lost', 1_000), 0);
    shard.ttl(dkvPut('rewritten', 1_000), 0);
    expect(shard.leaderTick(1_000).length).toBe(1); // both, proposed and lost
    shard.apply(etcdPut('rewritten'), 1_100);
    expect(shard.leaderTick(1_500)).toEqual([]);
    expect(shard.tickAndApply(2_000)).toEqual(['lost']);
    expect(shard.has('rewritten')).toBe(true);
    expect(shard.ttls.scheduled).toBe(0);
  });

  it('a node that leads again in a later term looks at once at the expiries it proposed before (they were lost with its term)', () => {
    const shard = new Shard();
    shard.ttl(dkvPut('lost', 1_000), 0);
    // Proposed late (a paused leader), in term 1, and lost with it: looked at again at 2,500.
    expect(shard.leaderTick(1_500).length).toBe(1);
    shard.ttls.onLeadership(false, { shardId: 1, term: 1, nowMs: 1_550, propose: () => undefined });
    // Leader again in term 3: the term-1 deadline gets this term's grace (2,000), not the retry's wait.
    shard.ttls.onLeadership(true, { shardId: 1, term: 3, nowMs: 1_600, propose: () => undefined });
    expect(shard.tickAndApply(1_990, 3)).toEqual([]);
    expect(shard.tickAndApply(2_000, 3)).toEqual(['lost']);
    // In the same term the retry stays an election timeout on.
    const again = new Shard();
    again.ttl(dkvPut('k', 1_000), 0);
    expect(again.leaderTick(1_500).length).toBe(1);
    again.ttls.onLeadership(true, { shardId: 1, term: 1, nowMs: 1_550, propose: () => undefined });
    expect(again.leaderTick(2_490)).toEqual([]);
    expect(again.leaderTick(2_500).length).toBe(1);
  });

  it("a new leader gives keys written before it took office one election timeout more", () => {
    const shard = new Shard(false);
    shard.ttl(dkvPut('old', 1_000), 0, 1);
    shard.ttls.onLeadership(true, { shardId: 1, term: 2, nowMs: 500, propose: () => undefined });
    shard.ttl(dkvPut('new', 1_000), 500, 2);
    expect(shard.tickAndApply(1_000, 2)).toEqual([]);
    expect(shard.tickAndApply(1_500, 2)).toEqual(['new']);
    expect(shard.tickAndApply(1_990, 2)).toEqual([]);
    expect(shard.tickAndApply(2_000, 2)).toEqual(['old']);
  });

  it("gives the grace to an earlier term's key applied after the new leader's first tick", () => {
    const shard = new Shard(false);
    shard.ttl(dkvPut('a', 5_000), 0, 1);
    shard.ttls.onLeadership(true, { shardId: 1, term: 2, nowMs: 10, propose: () => undefined });
    expect(shard.leaderTick(10, 2)).toEqual([]);
    // Committed in term 1, applied after the term-2 leader's tick: still a term-1 deadline.
    shard.ttl(dkvPut('b', 5_000), 0, 1);
    expect(shard.tickAndApply(5_100, 2)).toEqual([]);
    expect(shard.tickAndApply(6_000, 2).sort()).toEqual(['a', 'b']);
  });
});

describe('TTL engine: snapshots and hashes', () => {
  it('snapshots the table in key order, restores it with its timers, hashes equal replicas equally', () => {
    const shard = new Shard();
    shard.ttl(dkvPut('b', 2_000), 100);
    shard.ttl(dkvPut('a', 30_000), 100);
    shard.ttl(dkvPut('\u00ff\u0000binary', 5_000), 100);
    shard.apply(etcdPut('plain'), 100);
    const copy = composeStateMachine('data', { electionTimeoutMs });
    copy.restore(joinSnapshotFrames(shard.machine.snapshot()), shard.machine.appliedIndex);
    const restored = ttlEngineOf(copy);
    expect(restored.entries()).toEqual(shard.ttls.entries());
    expect(restored.scheduled).toBe(3);
    restored.checkInvariants();
    expect(copy.hash()).toBe(shard.machine.hash());
    expect(restored.hash()).toBe(shard.ttls.hash());
    // The restored wheel expires them on time (as a new leader: one election timeout late).
    const proposed: EngineCommand[] = [];
    restored.onLeadership(true, { shardId: 1, term: 2, nowMs: 100, propose: () => undefined });
    restored.leaderTick({ shardId: 1, term: 2, nowMs: 3_099, propose: (c) => proposed.push(c) });
    expect(proposed.length).toBe(0);
    restored.leaderTick({ shardId: 1, term: 2, nowMs: 3_100, propose: (c) => proposed.push(c) });
    expect(proposed.length).toBe(1);
    // A changed deadline changes the hash; an empty table restores empty.
    shard.ttl(dkvPut('a', 31_000), 100);
    expect(shard.machine.hash()).not.toBe(copy.hash());
    const empty = composeStateMachine('data', { electionTimeoutMs });
    empty.restore(joinSnapshotFrames(composeStateMachine('data').snapshot()), 0);
    expect(ttlEngineOf(empty).size).toBe(0);
  });

  it('a snapshot section is captured when taken: later changes do not leak into it', () => {
    const shard = new Shard();
    for (let i = 0; i < 50; i++) shard.ttl(dkvPut(`k${i}`, 1_000 + i), 0);
    const section = shard.ttls.snapshot();
    const entries = shard.ttls.entries();
    shard.ttl(dkvPut('k1', 0), 0);
    shard.apply(etcdPut('k2'), 0);
    shard.ttl(dkvPut('k3', 7), 0);
    const chunks: Uint8Array[] = [];
    for (let next = section.next(); next.done !== true; next = section.next()) chunks.push(next.value);
    const copy = ttlEngineOf(composeStateMachine('data', { electionTimeoutMs }));
    copy.restore(chunks);
    expect(copy.entries()).toEqual(entries);
  });
});

describe('TTL engine: a shard split', () => {
  /** A shard with TTLs on a, b, bÿ, c, d (revisions 2..6), a and c proposed for expiry and lost. */
  function shardWithTtls(): Shard {
    const shard = new Shard();
    for (const [key, ttlMs] of [['a', 1_000], ['b', 2_000], ['b\u00ff', 3_000], ['c', 1_000], ['d', 4_000]] as const) shard.ttl(dkvPut(key, ttlMs), 0);
    expect(shard.leaderTick(1_000).length).toBe(1);
    return shard;
  }

  function split(shard: Shard, start: Uint8Array, end: Uint8Array | undefined): void {
    kvEngineOf(shard.machine).retainRange(start, end);
    shard.ttls.retainRange(start, end);
  }

  it('forgets the TTLs, timers and proposed expiries of keys outside [start, end); the kept ones expire when they would have', () => {
    const shard = shardWithTtls();
    split(shard, b('b'), b('d'));
    expect(shard.table()).toEqual({ b: [2_000, 3], 'b\u00ff': [3_000, 4], c: [1_000, 5] });
    expect(shard.ttls.scheduled).toBe(3);
    shard.ttls.checkInvariants();
    // c's lost expiry is proposed again an election timeout on, with b, due then; a's is gone with it.
    expect(shard.tickAndApply(2_000)).toEqual(['b', 'c']);
    expect(shard.tickAndApply(2_990)).toEqual([]);
    expect(shard.tickAndApply(3_000)).toEqual(['b\u00ff']);
    expect(shard.tickAndApply(10_000)).toEqual([]);
    expect(shard.ttls.scheduled).toBe(0);
    shard.ttls.checkInvariants();
  });

  it('splits from the first key or to no end; snapshots and hashes then cover only the kept TTLs', () => {
    const left = shardWithTtls();
    split(left, new Uint8Array(0), b('b'));
    expect(left.table()).toEqual({ a: [1_000, 2] });
    const right = shardWithTtls();
    split(right, b('c'), undefined);
    expect(right.table()).toEqual({ c: [1_000, 5], d: [4_000, 6] });
    right.ttls.checkInvariants();
    const copy = composeStateMachine('data', { electionTimeoutMs });
    copy.restore(joinSnapshotFrames(right.machine.snapshot()), right.machine.appliedIndex);
    expect(ttlEngineOf(copy).entries()).toEqual(right.ttls.entries());
    expect(ttlEngineOf(copy).hash()).toBe(right.ttls.hash());
    expect(copy.hash()).toBe(right.machine.hash());
    ttlEngineOf(copy).checkInvariants();
    // The same TTLs set on a shard that never held the others hash alike.
    const fresh = new Shard();
    fresh.ttls.setTtl(b('c'), 1_000, 5, 1);
    fresh.ttls.setTtl(b('d'), 4_000, 6, 1);
    expect(fresh.ttls.hash()).toBe(right.ttls.hash());
    expect(fresh.ttls.hash()).not.toBe(shardWithTtls().ttls.hash());
  });
});

describe('TTL engine: property', () => {
  it('the TTL table always equals a model of which writes set and cleared each key\'s TTL, and expiry deletes exactly the due keys', () => {
    const key = fc.integer({ min: 0, max: 5 }).map((i) => `k${i}`);
    const op = fc.oneof(
      fc.record({ type: fc.constant('dkv-put' as const), key, ttl: fc.integer({ min: 0, max: 3_000 }), lease: fc.boolean() }),
      fc.record({ type: fc.constant('etcd-put' as const), key }),
      fc.record({ type: fc.constant('delete' as const), key }),
      fc.record({ type: fc.constant('txn' as const), cond: key, then: key, otherwise: key, thenTtl: fc.integer({ min: 0, max: 3_000 }), otherwiseTtl: fc.integer({ min: 0, max: 3_000 }) }),
      fc.record({ type: fc.constant('grant' as const) }),
      fc.record({ type: fc.constant('revoke' as const) }),
      fc.record({ type: fc.constant('tick' as const) }),
      fc.record({ type: fc.constant('snapshot' as const) }),
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(op, fc.integer({ min: 0, max: 700 })), { maxLength: 80 }), (ops) => {
        const shard = new Shard();
        let now = 1_000;
        let leaseId = 0n;
        const model = new Map<string, { deadlineMs: number; modRevision: number }>();
        for (const [o, elapsed] of ops) {
          now += elapsed;
          switch (o.type) {
            case 'dkv-put': {
              const outcome = shard.ttl(dkvPut(o.key, o.ttl, { lease: o.lease ? leaseId : 0n }), now);
              if (outcome.kind !== 'put') break; // a lease that is gone (or none granted yet)
              if (o.ttl > 0) model.set(o.key, { deadlineMs: now + o.ttl, modRevision: outcome.result.revision });
              else model.delete(o.key);
              break;
            }
            case 'etcd-put':
              shard.apply(etcdPut(o.key), now);
              model.delete(o.key);
              break;
            case 'delete':
              shard.apply(del(o.key), now);
              model.delete(o.key);
              break;
            case 'txn': {
              const ttls: Record<string, number> = o.then === o.otherwise ? { [o.then]: o.thenTtl } : { [o.then]: o.thenTtl, [o.otherwise]: o.otherwiseTtl };
              const outcome = shard.ttl(dkvTxn(o.cond, o.then, o.otherwise, ttls), now);
              expect(outcome.kind).toBe('txn');
              if (outcome.kind !== 'txn') break;
              const written = outcome.result.succeeded ? o.then : o.otherwise;
              const ttl = ttls[written]!;
              if (ttl > 0) model.set(written, { deadlineMs: now + ttl, modRevision: outcome.result.revision });
              else model.delete(written);
              break;
            }
            case 'grant':
              leaseId++;
              shard.apply(grantCommand(leaseId, 600), now);
              break;
            case 'revoke': {
              const attached = [...(leaseEngineOf(shard.machine).get(leaseId)?.keys.keys() ?? [])];
              shard.apply(revokeCommand(leaseId), now);
              for (const k of attached) model.delete(k);
              break;
            }
            case 'tick': {
              // Due once the wheel's grid time at or after the deadline has come; a timer the wheel
              // cascades after its deadline passed may go at the deadline itself. Never before it.
              const mustGo = [...model].filter(([, t]) => Math.ceil(t.deadlineMs / resolution) * resolution <= now).map(([k]) => k).sort();
              const mayGo = new Set([...model].filter(([, t]) => t.deadlineMs <= now).map(([k]) => k));
              const due = shard.tickAndApply(now);
              for (const k of mustGo) expect(due).toContain(k);
              for (const k of due) expect(mayGo.has(k), `${k} expired before its deadline`).toBe(true);
              for (const k of due) model.delete(k);
              for (const k of due) expect(shard.has(k)).toBe(false);
              break;
            }
            case 'snapshot': {
              const copy = composeStateMachine('data', { electionTimeoutMs });
              copy.restore(joinSnapshotFrames(shard.machine.snapshot()), shard.machine.appliedIndex);
              expect(copy.hash()).toBe(shard.machine.hash());
              expect(ttlEngineOf(copy).entries()).toEqual(shard.ttls.entries());
              ttlEngineOf(copy).checkInvariants();
              break;
            }
          }
          const expected = Object.fromEntries([...model].sort(([a], [b2]) => (a < b2 ? -1 : 1)).map(([k, t]) => [k, [t.deadlineMs, t.modRevision]]));
          expect(shard.table()).toEqual(expected);
          shard.ttls.checkInvariants();
        }
      }),
      { numRuns: 300 },
    );
  });
});
