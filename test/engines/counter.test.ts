/**
 * The counter engine inside a data shard's state machine: counters as decimal text in ordinary
 * keys, increments and decrements from an absent key's 0, set and delete whatever a key held,
 * overflow refused at both ends (never wrapped, nothing changed), non-numbers refused, a leased
 * key detached by a counter write, the events every write carries, TTLs through a (fake)
 * scheduler, commands with a TTL refused by a build without one, and a property against a
 * BigInt model.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Entry } from '../../raft/index.js';
import { CounterEngine, type EngineCommand, EngineError, EngineId, KvEngine, LeaseEngine, eventsOf } from '../../src/engines/index.js';
import {
  COUNTER_COMMAND_VERSION,
  COUNTER_COMMAND_VERSION_TTL,
  type CounterTtlScheduler,
  counterLimits,
  counterOutcome,
  deleteCommand,
  encodeCounterValue,
  incrementCommand,
  parseCounterValue,
  setCommand,
} from '../../src/engines/counter/index.js';
import { KvCommandKind, kvCommand } from '../../src/engines/kv/index.js';
import { grantCommand } from '../../src/engines/lease/index.js';
import { etcdType } from '../../src/etcd-proto.js';
import {
  ShardStateMachine,
  StateMachineHaltError,
  composeStateMachine,
  counterEngineOf,
  encodeEnvelope,
  kvEngineOf,
  leaseEngineOf,
} from '../../src/runtime/index.js';
import { joinSnapshotFrames } from '../../storage/index.js';

const PutRequest = etcdType('etcdserverpb.PutRequest');
const MAX = counterLimits.counterValueMax;
const MIN = counterLimits.counterValueMin;
const k = (text: string): Uint8Array => Buffer.from(text);
const put = (key: string, value: string, lease = 0n): EngineCommand =>
  kvCommand(KvCommandKind.Put, PutRequest.encode({ key: Buffer.from(key), value: Buffer.from(value), lease: lease.toString() }).finish());

/** A data shard's state machine fed entries stamped with a leader time. */
class Shard {
  private index = 0;

  constructor(readonly machine: ShardStateMachine = composeStateMachine('data')) {}

  apply(command: EngineCommand, timestampMs = 0): unknown {
    this.index++;
    const entry: Entry = { index: this.index, term: 1, type: 'normal', data: encodeEnvelope({ ...command, timestampMs, proposer: 1, requestId: this.index }) };
    return this.machine.apply(entry)?.outcome;
  }

  counter(command: EngineCommand, timestampMs = 0) {
    return counterOutcome(this.apply(command, timestampMs));
  }

  get mvcc() {
    return kvEngineOf(this.machine).mvcc;
  }

  /** The key's stored text, or undefined. */
  text(key: string): string | undefined {
    const found = this.mvcc.range({ key: k(key) }).kvs[0];
    return found === undefined ? undefined : Buffer.from(found.value).toString();
  }
}

function refusedWith(outcome: ReturnType<typeof counterOutcome>): string | undefined {
  return outcome.kind === 'error' ? outcome.error.code : undefined;
}

describe('counter values', () => {
  it('parses canonical int64 text only', () => {
    for (const [text, value] of [
      ['0', 0n],
      ['7', 7n],
      ['-1', -1n],
      ['123456789012345', 123456789012345n],
      ['1234567890123456', 1234567890123456n],
      ['9223372036854775807', MAX],
      ['-9223372036854775808', MIN],
    ] as const) {
      expect(parseCounterValue(k(text)), text).toBe(value);
      expect(Buffer.from(encodeCounterValue(value)).toString()).toBe(text);
    }
    for (const text of ['', '-', '+5', ' 5', '5 ', '007', '-0', '00', '1e3', '1.0', '0x10', 'abc', '9223372036854775808', '-9223372036854775809', '99999999999999999999', '123456789012345678901']) {
      expect(parseCounterValue(k(text)), JSON.stringify(text)).toBeUndefined();
    }
  });
});

describe('counter engine', () => {
  it('increments and decrements from an absent key at 0, stored as decimal text', () => {
    const shard = new Shard();
    // Composed with the TTL engine as its scheduler: this build applies TTL commands too.
    expect(counterEngineOf(shard.machine).version).toBe(COUNTER_COMMAND_VERSION_TTL);
    expect(shard.counter(incrementCommand(k('c'), 5n))).toMatchObject({ kind: 'incremented', value: 5n, revision: 2 });
    expect(shard.counter(incrementCommand(k('c'), 2n))).toMatchObject({ kind: 'incremented', value: 7n, revision: 3 });
    expect(shard.counter(incrementCommand(k('c'), -10n))).toMatchObject({ kind: 'incremented', value: -3n, revision: 4 });
    expect(shard.text('c')).toBe('-3');
    expect(shard.counter(incrementCommand(k('d'), -1n))).toMatchObject({ value: -1n });
    expect(counterEngineOf(shard.machine).value(k('c'))).toBe(-3n);
    expect(counterEngineOf(shard.machine).value(k('absent'))).toBe(0n);
    expect(shard.mvcc.range({ key: k('c') }).kvs[0]).toMatchObject({ version: 3, lease: 0n });
  });

  it('sets whatever the key held, and deletes whatever it held', () => {
    const shard = new Shard();
    shard.apply(put('x', 'not a number'));
    expect(shard.counter(setCommand(k('x'), -42n))).toMatchObject({ kind: 'set', value: -42n, revision: 3 });
    expect(shard.text('x')).toBe('-42');
    expect(shard.counter(incrementCommand(k('x'), 1n))).toMatchObject({ value: -41n });
    shard.apply(put('y', 'text'));
    expect(shard.counter(deleteCommand(k('y')))).toMatchObject({ kind: 'deleted', deleted: true, revision: 6 });
    expect(shard.text('y')).toBeUndefined();
    // Nothing to delete: no revision.
    expect(shard.counter(deleteCommand(k('y')))).toMatchObject({ kind: 'deleted', deleted: false, revision: 6, events: [] });
    expect(shard.mvcc.revision).toBe(6);
  });

  it('refuses overflow at both ends: never wraps, changes nothing', () => {
    const shard = new Shard();
    shard.counter(setCommand(k('hi'), MAX));
    shard.counter(setCommand(k('lo'), MIN));
    const revision = shard.mvcc.revision;
    for (const [key, delta] of [['hi', 1n], ['hi', MAX], ['lo', -1n], ['lo', MIN]] as const) {
      const refused = shard.counter(incrementCommand(k(key), delta));
      expect(refusedWith(refused), `${key} ${delta}`).toBe('counter-overflow');
      expect(refused.kind === 'error' && refused.error).toBeInstanceOf(EngineError);
      expect(refused.events).toEqual([]);
    }
    expect(shard.mvcc.revision).toBe(revision);
    expect([shard.text('hi'), shard.text('lo')]).toEqual([MAX.toString(), MIN.toString()]);
    // Up to the bounds exactly is fine.
    expect(shard.counter(incrementCommand(k('hi'), MIN))).toMatchObject({ value: -1n });
    expect(shard.counter(incrementCommand(k('hi'), MIN + 1n))).toMatchObject({ value: MIN });
    expect(shard.counter(incrementCommand(k('lo'), MAX))).toMatchObject({ value: -1n });
    expect(shard.counter(incrementCommand(k('lo'), MAX))).toMatchObject({ value: MAX - 1n });
  });

  it('refuses to increment a key whose value is not a canonical int64, changing nothing', () => {
    const shard = new Shard();
    for (const text of ['abc', '', '007', '-0', '+1', '1.5', '9223372036854775808']) shard.apply(put(`n/${text}`, text));
    const revision = shard.mvcc.revision;
    for (const text of ['abc', '', '007', '-0', '+1', '1.5', '9223372036854775808']) {
      expect(refusedWith(shard.counter(incrementCommand(k(`n/${text}`), 1n))), JSON.stringify(text)).toBe('counter-not-a-number');
      expect(counterEngineOf(shard.machine).value(k(`n/${text}`))).toBeUndefined();
    }
    expect(shard.mvcc.revision).toBe(revision);
    expect(shard.text('n/007')).toBe('007');
  });

  it('detaches a leased key, as any plain put does', () => {
    const shard = new Shard();
    shard.apply(grantCommand(1n, 60));
    shard.apply(put('leased', '10', 1n));
    expect([...leaseEngineOf(shard.machine).get(1n)!.keys.keys()]).toEqual(['leased']);
    expect(shard.counter(incrementCommand(k('leased'), 1n))).toMatchObject({ value: 11n });
    expect(shard.mvcc.range({ key: k('leased') }).kvs[0]!.lease).toBe(0n);
    expect(leaseEngineOf(shard.machine).get(1n)!.keys.size).toBe(0);
  });

  it("returns every write's events for the watch engine", () => {
    const shard = new Shard();
    const first = shard.apply(incrementCommand(k('e'), 3n));
    expect(eventsOf(first).map((e) => [e.type, Buffer.from(e.kv.key).toString(), Buffer.from(e.kv.value).toString(), e.kv.modRevision, e.prevKv])).toEqual([['put', 'e', '3', 2, undefined]]);
    const second = shard.apply(setCommand(k('e'), 9n));
    expect(eventsOf(second).map((e) => [e.type, Buffer.from(e.kv.value).toString(), e.kv.version, Buffer.from(e.prevKv!.value).toString()])).toEqual([['put', '9', 2, '3']]);
    const deleted = shard.apply(deleteCommand(k('e')));
    expect(eventsOf(deleted).map((e) => [e.type, Buffer.from(e.kv.key).toString(), e.kv.modRevision])).toEqual([['delete', 'e', 4]]);
    expect(eventsOf(shard.apply(incrementCommand(k('e'), MAX))).length).toBe(1);
    expect(eventsOf(shard.apply(incrementCommand(k('e'), 1n)))).toEqual([]);
  });

  it('sets deadlines through a TTL scheduler at the stamped time plus the TTL, clears them on a write without one and on delete', () => {
    const calls: string[] = [];
    const scheduler: CounterTtlScheduler = {
      setTtl: (key, deadlineMs, modRevision) => calls.push(`set ${Buffer.from(key).toString()} ${deadlineMs} ${modRevision}`),
      clearTtl: (key) => calls.push(`clear ${Buffer.from(key).toString()}`),
    };
    const kv = new KvEngine();
    const leases = new LeaseEngine({ kv, electionTimeoutMs: 1000 });
    kv.connect({ leaseExists: (id) => leases.has(id), observer: leases });
    const counters = new CounterEngine({ kv, ttl: scheduler });
    expect(counters.version).toBe(COUNTER_COMMAND_VERSION_TTL);
    expect(counters.ttlCapable).toBe(true);
    const shard = new Shard(new ShardStateMachine({ engines: [kv, leases, counters], legacyEngine: EngineId.Kv }));
    expect(incrementCommand(k('t'), 1n, 5000).version).toBe(COUNTER_COMMAND_VERSION_TTL);
    expect(shard.counter(incrementCommand(k('t'), 1n, 5000), 1000)).toMatchObject({ value: 1n, revision: 2 });
    // A write without a TTL clears the deadline.
    shard.counter(incrementCommand(k('t'), 1n), 2000);
    shard.counter(setCommand(k('t'), 7n, 60_000), 3000);
    shard.counter(setCommand(k('t'), 8n), 4000);
    shard.counter(deleteCommand(k('t')), 5000);
    // A refused increment sets nothing.
    shard.counter(setCommand(k('max'), MAX), 6000);
    shard.counter(incrementCommand(k('max'), 1n, 1000), 6000);
    expect(calls).toEqual(['set t 6000 2', 'clear t', 'set t 63000 4', 'clear t', 'clear t', 'clear max']);
  });

  it('a build without a TTL scheduler stops at a command with a TTL rather than diverge', () => {
    const kv = new KvEngine();
    const counters = new CounterEngine({ kv });
    expect([counters.ttlCapable, counters.version]).toEqual([false, COUNTER_COMMAND_VERSION]);
    const shard = new Shard(new ShardStateMachine({ engines: [kv, counters], legacyEngine: EngineId.Kv }));
    expect(() => shard.apply(incrementCommand(k('t'), 1n, 5000))).toThrow(StateMachineHaltError);
  });

  it('stops at a malformed or unknown counter command', () => {
    const bad: EngineCommand[] = [
      { engine: EngineId.Counter, version: 1, kind: 99, payload: k('x') },
      { engine: EngineId.Counter, version: 1, kind: 1, payload: new Uint8Array(16) },
      { engine: EngineId.Counter, version: 1, kind: 3, payload: new Uint8Array(0) },
      // A TTL in a version-1 command.
      { ...incrementCommand(k('x'), 1n, 10), version: 1 },
    ];
    for (const command of bad) expect(() => new Shard().apply(command)).toThrow(StateMachineHaltError);
  });

  // Also restores a data shard that has no lease (the lease engine's empty table made no wheel).
  it('keeps counters in the KV snapshot and hash; its own section is empty', () => {
    const shard = new Shard();
    shard.counter(incrementCommand(k('a'), 41n), 100);
    shard.counter(incrementCommand(k('a'), 1n), 100);
    const copy = composeStateMachine('data');
    copy.restore(joinSnapshotFrames(shard.machine.snapshot()), shard.machine.appliedIndex);
    expect(counterEngineOf(copy).value(k('a'))).toBe(42n);
    expect(copy.hash()).toBe(shard.machine.hash());
    expect(counterEngineOf(copy).hash()).toBe(counterEngineOf(shard.machine).hash());
    expect([...{ [Symbol.iterator]: () => counterEngineOf(shard.machine).snapshot() }]).toEqual([]);
    shard.counter(incrementCommand(k('a'), 1n), 200);
    expect(shard.machine.hash()).not.toBe(copy.hash());
  });

  it('property: every outcome and stored value equals a BigInt model, overflow never wraps', () => {
    const amount = fc.oneof(
      fc.bigInt({ min: -5n, max: 5n }),
      fc.bigInt({ min: MIN, max: MAX }),
      fc.constantFrom(MIN, MAX, MIN + 1n, MAX - 1n, 2n ** 62n, -(2n ** 62n)),
    );
    const op = fc.oneof(
      fc.record({ type: fc.constant('increment' as const), key: fc.integer({ min: 0, max: 2 }), amount }),
      fc.record({ type: fc.constant('set' as const), key: fc.integer({ min: 0, max: 2 }), amount }),
      fc.record({ type: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 2 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 50 }), (ops) => {
        const shard = new Shard();
        const model = new Map<number, bigint>();
        let revision = shard.mvcc.revision;
        for (const o of ops) {
          const key = k(`c${o.key}`);
          const before = model.get(o.key);
          if (o.type === 'increment') {
            const next = (before ?? 0n) + o.amount;
            const outcome = shard.counter(incrementCommand(key, o.amount));
            if (next < MIN || next > MAX) {
              expect(refusedWith(outcome)).toBe('counter-overflow');
            } else {
              expect(outcome).toMatchObject({ kind: 'incremented', value: next, revision: ++revision });
              model.set(o.key, next);
            }
          } else if (o.type === 'set') {
            expect(shard.counter(setCommand(key, o.amount))).toMatchObject({ kind: 'set', value: o.amount, revision: ++revision });
            model.set(o.key, o.amount);
          } else {
            const outcome = shard.counter(deleteCommand(key));
            expect(outcome).toMatchObject({ kind: 'deleted', deleted: before !== undefined, revision: before !== undefined ? ++revision : revision });
            model.delete(o.key);
          }
          for (let i = 0; i <= 2; i++) expect(shard.text(`c${i}`)).toBe(model.get(i)?.toString());
        }
        expect(shard.mvcc.revision).toBe(revision);
      }),
      { numRuns: 300 },
    );
  });
});
