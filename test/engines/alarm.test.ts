/**
 * The alarm engine: alarms raised and cleared as commands, idempotent as etcd's alarm store; a
 * NOSPACE alarm caps the state machine (puts, txns with puts and lease grants are refused alike on
 * every replica; deletes, read-only txns, compaction and revokes apply); alarms are in the
 * snapshot and the hash.
 */
import { describe, expect, it } from 'vitest';
import type { Entry } from '../../raft/index.js';
import { AlarmEngine, AlarmType, activateAlarmCommand, alarmOutcome, deactivateAlarmCommand, EngineError, type EngineCommand } from '../../src/engines/index.js';
import { KvCommandKind, kvCommand, kvOutcome } from '../../src/engines/kv/index.js';
import { grantCommand, leaseOutcome, revokeCommand } from '../../src/engines/lease/index.js';
import { counterOutcome, incrementCommand } from '../../src/engines/counter/index.js';
import { dkvPutCommand, ttlOutcome } from '../../src/engines/ttl/index.js';
import { dkvType, etcdType } from '../../src/etcd-proto.js';
import { type ShardStateMachine, alarmEngineOf, composeStateMachine, encodeEnvelope, kvEngineOf } from '../../src/runtime/index.js';
import { joinSnapshotFrames } from '../../storage/index.js';

const PutRequest = etcdType('etcdserverpb.PutRequest');
const DeleteRangeRequest = etcdType('etcdserverpb.DeleteRangeRequest');
const TxnRequest = etcdType('etcdserverpb.TxnRequest');
const CompactionRequest = etcdType('etcdserverpb.CompactionRequest');
const put = (key: string, value: string): EngineCommand => kvCommand(KvCommandKind.Put, PutRequest.encode({ key: Buffer.from(key), value: Buffer.from(value) }).finish());
const del = (key: string): EngineCommand => kvCommand(KvCommandKind.DeleteRange, DeleteRangeRequest.encode({ key: Buffer.from(key) }).finish());
const txn = (body: object): EngineCommand => kvCommand(KvCommandKind.Txn, TxnRequest.encode(body).finish());
const compact = (revision: number): EngineCommand => kvCommand(KvCommandKind.Compaction, CompactionRequest.encode({ revision }).finish());

class Log {
  index = 0;
  constructor(readonly machine: ShardStateMachine = composeStateMachine('data')) {}
  apply(command: EngineCommand): unknown {
    this.index++;
    const entry: Entry = { index: this.index, term: 1, type: 'normal', data: encodeEnvelope({ ...command, timestampMs: 1000 + this.index, proposer: 1, requestId: this.index }) };
    return this.machine.apply(entry)?.outcome;
  }
}

const kvError = (outcome: unknown): unknown => {
  const o = kvOutcome(outcome).outcome;
  return o.kind === 'error' ? (o.error as EngineError).code : undefined;
};

describe('AlarmEngine', () => {
  it('raises and clears alarms once each, as etcd answers (the changed alarm, or none)', () => {
    const log = new Log();
    expect(alarmOutcome(log.apply(activateAlarmCommand(5, AlarmType.NoSpace))).changed).toEqual({ memberId: 5, alarm: AlarmType.NoSpace });
    expect(alarmOutcome(log.apply(activateAlarmCommand(5, AlarmType.NoSpace))).changed).toBeUndefined();
    log.apply(activateAlarmCommand(3, AlarmType.Corrupt));
    const alarms = alarmEngineOf(log.machine);
    expect(alarms.list()).toEqual([
      { memberId: 3, alarm: AlarmType.Corrupt },
      { memberId: 5, alarm: AlarmType.NoSpace },
    ]);
    expect(alarms.list(AlarmType.NoSpace)).toEqual([{ memberId: 5, alarm: AlarmType.NoSpace }]);
    expect(alarmOutcome(log.apply(deactivateAlarmCommand(7, AlarmType.NoSpace))).changed).toBeUndefined();
    expect(alarmOutcome(log.apply(deactivateAlarmCommand(5, AlarmType.NoSpace))).changed).toEqual({ memberId: 5, alarm: AlarmType.NoSpace });
    expect(alarms.list()).toEqual([{ memberId: 3, alarm: AlarmType.Corrupt }]);
    expect(alarms.capped).toBe(false);
  });

  it('NOSPACE refuses puts, txns with puts and lease grants; deletes, reads, compaction and revokes apply', () => {
    const log = new Log();
    log.apply(put('a', '1'));
    log.apply(put('b', '1'));
    expect(leaseOutcome(log.apply(grantCommand(77n, 60))).kind).toBe('granted');
    log.apply(activateAlarmCommand(9, AlarmType.NoSpace));
    expect(alarmEngineOf(log.machine).capped).toBe(true);
    expect(kvError(log.apply(put('c', '1')))).toBe('no-space');
    const nestedPut = { compare: [], success: [{ request_txn: { success: [{ request_put: { key: Buffer.from('x'), value: Buffer.from('1') } }] } }], failure: [] };
    expect(kvError(log.apply(txn(nestedPut)))).toBe('no-space');
    expect(kvError(log.apply(txn({ compare: [], success: [], failure: [{ request_put: { key: Buffer.from('x') } }] })))).toBe('no-space');
    expect(kvError(log.apply(txn({ compare: [], success: [{ request_range: { key: Buffer.from('a') } }, { request_delete_range: { key: Buffer.from('b') } }] })))).toBeUndefined();
    const grant = leaseOutcome(log.apply(grantCommand(78n, 60)));
    expect(grant.kind === 'error' ? grant.error.code : grant.kind).toBe('no-space');
    expect(kvError(log.apply(del('a')))).toBeUndefined();
    expect(leaseOutcome(log.apply(revokeCommand(77n))).kind).toBe('revoked');
    const mvcc = kvEngineOf(log.machine).mvcc;
    expect(kvError(log.apply(compact(mvcc.revision)))).toBeUndefined();
    expect(mvcc.keyCount).toBe(0);
    // DKV's own writes grow the store too: a dkv.v1 put with a TTL and a counter write.
    const dkvPut = ttlOutcome(log.apply(dkvPutCommand(dkvType('dkv.v1.PutRequest').encode({ key: Buffer.from('t'), value: Buffer.from('1'), ttl_ms: 60_000 }).finish())));
    expect(dkvPut.kind === 'error' ? (dkvPut.error as EngineError).code : dkvPut.kind).toBe('no-space');
    const counter = counterOutcome(log.apply(incrementCommand(Buffer.from('n'), 1n)));
    expect(counter.kind === 'error' ? counter.error.code : counter.kind).toBe('no-space');
    log.apply(deactivateAlarmCommand(9, AlarmType.NoSpace));
    expect(kvError(log.apply(put('c', '1')))).toBeUndefined();
    expect(counterOutcome(log.apply(incrementCommand(Buffer.from('n'), 1n))).kind).toBe('incremented');
  });

  it('is in the snapshot and the hash; a restored replica is capped too', () => {
    const log = new Log();
    log.apply(put('a', '1'));
    const before = log.machine.hash();
    log.apply(activateAlarmCommand(11, AlarmType.NoSpace));
    const raised = log.machine.hash();
    expect(raised).not.toBe(before);
    const replica = composeStateMachine('data');
    replica.restore(joinSnapshotFrames(log.machine.snapshot()), log.index);
    expect(replica.hash()).toBe(raised);
    expect(alarmEngineOf(replica).list()).toEqual([{ memberId: 11, alarm: AlarmType.NoSpace }]);
    const follower = new Log(replica);
    follower.index = log.index;
    expect(kvError(follower.apply(put('b', '1')))).toBe('no-space');
  });

  it('restores an empty section as no alarms, and refuses a damaged one', () => {
    const engine = new AlarmEngine();
    engine.restore([]);
    expect(engine.list()).toEqual([]);
    expect(() => engine.restore([new Uint8Array([0, 0, 0, 2, 1])])).toThrow(/does not hold 2 alarms/);
  });
});
