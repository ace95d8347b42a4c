/**
 * Alarms of every data shard: a NOSPACE raised in a store's shard (a write to it would pass the
 * quota) is listed by Maintenance.Alarm beside the default store's, and disarming it clears it in
 * every shard that holds it, so a store never stays read-only for want of a way to clear it.
 * The service runs on real state machines behind fake shard handles.
 */
import { describe, expect, it } from 'vitest';
import type { Entry } from '../../raft/index.js';
import { AlarmType, type EngineCommand, activateAlarmCommand, anonymousCaller } from '../../src/engines/index.js';
import { type Applied, type ShardStateMachine, alarmEngineOf, composeStateMachine, encodeEnvelope } from '../../src/runtime/index.js';
import { createMaintenanceService } from '../../src/server/maintenance-service.js';

function handle(id: number, machine: ShardStateMachine) {
  let index = 0;
  return {
    shardId: id,
    read: async () => index,
    machine: () => machine,
    term: () => 1,
    propose: async (command: EngineCommand): Promise<Applied> => {
      index++;
      const entry: Entry = { index, term: 1, type: 'normal', data: encodeEnvelope({ ...command, timestampMs: 1, proposer: 1, requestId: index }) };
      return machine.apply(entry)!;
    },
  };
}

function setup() {
  const meta = handle(0, composeStateMachine('meta'));
  const data = handle(1, composeStateMachine('data'));
  const store = handle(2, composeStateMachine('data'));
  const router = { defaultStore: () => data, hosted: () => [meta, data, store], map: { metaShard: 0, defaultStoreShard: 1 } };
  const gate = { permitted: async () => anonymousCaller };
  const ctx = { router, gate, clusterId: () => 1, memberId: 7, requestTimeoutMs: 1000, apiVersion: '3.5.0', defragmenter: undefined } as unknown as Parameters<typeof createMaintenanceService>[0];
  const { implementation } = createMaintenanceService(ctx);
  const alarm = (message: object): Promise<{ alarms: Array<{ memberID: number; alarm: number }> }> =>
    new Promise((resolve, reject) => {
      (implementation.Alarm as (call: unknown, callback: (error: unknown, value: unknown) => void) => void)({ request: { raw: Buffer.alloc(0), message }, metadata: undefined }, (error, value) =>
        error ? reject(error) : resolve(value as { alarms: Array<{ memberID: number; alarm: number }> }),
      );
    });
  return { data, store, alarm };
}

describe('Maintenance.Alarm over every data shard', () => {
  it("lists a store shard's NOSPACE beside the default store's, once each, and disarms it everywhere", async () => {
    const { data, store, alarm } = setup();
    await store.propose(activateAlarmCommand(5, AlarmType.NoSpace));
    await data.propose(activateAlarmCommand(6, AlarmType.NoSpace));
    await store.propose(activateAlarmCommand(6, AlarmType.NoSpace));
    const listed = await alarm({ action: 0, alarm: AlarmType.None });
    expect(listed.alarms.map((a) => [Number(a.memberID), a.alarm]).sort()).toEqual([
      [5, AlarmType.NoSpace],
      [6, AlarmType.NoSpace],
    ]);
    expect((await alarm({ action: 2, memberID: 6, alarm: AlarmType.NoSpace })).alarms).toHaveLength(1);
    expect(alarmEngineOf(data.machine()).list(AlarmType.None)).toEqual([]);
    expect(alarmEngineOf(store.machine()).list(AlarmType.None)).toEqual([{ memberId: 5, alarm: AlarmType.NoSpace }]);
    await alarm({ action: 2, memberID: 5, alarm: AlarmType.NoSpace });
    expect(alarmEngineOf(store.machine()).capped).toBe(false);
    expect((await alarm({ action: 0, alarm: AlarmType.None })).alarms).toEqual([]);
  });
});
