/**
 * The shard state machine: commands routed to engines with a leader-stamped, non-decreasing
 * clock; unknown engines and versions stop the node instead of being skipped; snapshots carry
 * every engine and are restored whole or not at all; an earlier build's data still loads.
 */
import { describe, expect, it } from 'vitest';
import type { Entry } from '../../raft/index.js';
import { EngineId } from '../../src/engines/index.js';
import { KvCommandKind, kvCommand, kvOutcome } from '../../src/engines/kv/index.js';
import { MetaEngine, encodeMemberContext, publishAttributesCommand } from '../../src/engines/meta/index.js';
import { etcdType } from '../../src/etcd-proto.js';
import {
  ShardStateMachine,
  SnapshotFormatError,
  StateMachineHaltError,
  composeStateMachine,
  encodeEnvelope,
  kvEngineOf,
  metaEngineOf,
} from '../../src/runtime/index.js';
import type { EngineCommand } from '../../src/engines/index.js';
import { encodeSnapshot, joinSnapshotFrames, MvccStore, writeU64 } from '../../storage/index.js';
import { RecordEngine, recordCommand } from '../../jepsen-lite/sim/record-engine.js';

const PutRequest = etcdType('etcdserverpb.PutRequest');
const put = (key: string, value: string): EngineCommand => kvCommand(KvCommandKind.Put, PutRequest.encode({ key: Buffer.from(key), value: Buffer.from(value) }).finish());

function entry(index: number, command: EngineCommand, timestampMs = 0, requestId = index): Entry {
  return { index, term: 1, type: 'normal', data: encodeEnvelope({ ...command, timestampMs, proposer: 7, requestId }) };
}

function joined(machine: ShardStateMachine): Uint8Array {
  return joinSnapshotFrames(machine.snapshot());
}

describe('ShardStateMachine', () => {
  it('routes commands to their engine and owns the applied index (empty entries too)', () => {
    const machine = composeStateMachine('data');
    const applied = machine.apply(entry(1, put('a', '1')))!;
    expect(applied).toMatchObject({ index: 1, engine: EngineId.Kv, proposer: 7, requestId: 1 });
    expect(kvOutcome(applied.outcome).outcome.kind).toBe('put');
    expect(machine.apply({ index: 2, term: 1, type: 'normal', data: new Uint8Array(0) })).toBeUndefined();
    expect(machine.appliedIndex).toBe(2);
    // Entries at or below the applied index are already in the state.
    expect(machine.apply(entry(2, put('b', '2')))).toBeUndefined();
    expect(kvEngineOf(machine).mvcc.revision).toBe(2);
    expect(() => machine.apply(entry(4, put('c', '3')))).toThrow(/gap/);
  });

  it('gives engines the leader-stamped time, never going backwards', () => {
    const seen: number[] = [];
    const engine = new RecordEngine();
    const original = engine.apply.bind(engine);
    engine.apply = (command, context) => {
      seen.push(context.nowMs);
      return original(command, context);
    };
    const machine = new ShardStateMachine({ engines: [engine] });
    for (const [i, t] of [[1, 1000], [2, 900], [3, 1500]] as const) machine.apply(entry(i, recordCommand(new Uint8Array([i])), t));
    expect(seen).toEqual([1000, 1000, 1500]);
    expect(machine.timestampMs).toBe(1500);
  });

  it('stops on an engine or command version this build does not know, never skipping it', () => {
    const machine = composeStateMachine('data');
    expect(() => machine.apply(entry(1, { engine: 99, version: 1, kind: 1, payload: new Uint8Array(0) }))).toThrow(StateMachineHaltError);
    expect(() => machine.apply(entry(1, { ...put('a', '1'), version: 2 }))).toThrow(/kv command version 2 \(this build applies up to 1\)/);
    expect(machine.appliedIndex).toBe(0);
    expect(machine.supports(EngineId.Kv, 1)).toBe(true);
    expect(machine.supports(EngineId.Kv, 2)).toBe(false);
    expect(machine.supports(EngineId.Meta, 1)).toBe(false);
  });

  it('snapshots every engine and restores them together, at the same hash', () => {
    const machine = new ShardStateMachine({ engines: [new MetaEngine(), new RecordEngine()], trackChain: true });
    machine.apply(entry(1, publishAttributesCommand(5, { name: 'n5', clientUrls: ['http://a:1'] }), 10));
    for (let i = 2; i <= 40; i++) machine.apply(entry(i, recordCommand(new Uint8Array([i, i])), 10 + i));
    const data = joined(machine);
    const copy = new ShardStateMachine({ engines: [new MetaEngine(), new RecordEngine()], trackChain: true });
    copy.restore(data, 40);
    expect(copy.appliedIndex).toBe(40);
    expect(copy.timestampMs).toBe(50);
    expect(copy.hash()).toBe(machine.hash());
    expect(copy.chain).toEqual(machine.chain);
    expect(metaEngineOf(copy).members()).toEqual(metaEngineOf(machine).members());
    // The same state applied differently hashes differently.
    machine.apply(entry(41, recordCommand(new Uint8Array([1]))));
    expect(copy.hash()).not.toBe(machine.hash());
  });

  it('refuses damaged, truncated or mislabelled snapshots and keeps its state', () => {
    const machine = composeStateMachine('data');
    for (let i = 1; i <= 5; i++) machine.apply(entry(i, put(`k${i}`, 'v')));
    const data = joined(machine);
    const target = composeStateMachine('data');
    target.apply(entry(1, put('mine', 'x')));
    const flipped = data.slice();
    flipped[flipped.length - 40]! ^= 0xff;
    expect(() => target.restore(flipped, 5)).toThrow();
    expect(() => target.restore(data.subarray(0, data.length - 3), 5)).toThrow(SnapshotFormatError);
    expect(() => target.restore(data, 6)).toThrow(/covers index 5, its metadata says 6/);
    expect(kvEngineOf(target).mvcc.range({ key: Buffer.from('mine') }).kvs.length).toBe(1);
    // A snapshot of engines this build does not have stops the node.
    const foreign = joined(new ShardStateMachine({ engines: [new RecordEngine()] }));
    expect(() => target.restore(foreign, 0)).toThrow(StateMachineHaltError);
  });

  it('loads what an earlier build wrote: bare MVCC snapshots and format-1 commands', () => {
    const store = new MvccStore();
    store.put(Buffer.from('old'), Buffer.from('value'));
    const legacySnapshot = joinSnapshotFrames(encodeSnapshot(store));
    const machine = composeStateMachine('data');
    machine.restore(legacySnapshot, 12);
    expect(machine.appliedIndex).toBe(12);
    expect(Buffer.from(kvEngineOf(machine).mvcc.range({ key: Buffer.from('old') }).kvs[0]!.value).toString()).toBe('value');
    const legacyPut = put('later', 'v').payload;
    const bytes = new Uint8Array(18 + legacyPut.length);
    bytes[0] = 1;
    bytes[1] = KvCommandKind.Put;
    writeU64(bytes, 2, 3);
    writeU64(bytes, 10, 4);
    bytes.set(legacyPut, 18);
    const applied = machine.apply({ index: 13, term: 2, type: 'normal', data: bytes })!;
    expect(kvOutcome(applied.outcome).outcome.kind).toBe('put');
    expect(kvEngineOf(machine).mvcc.revision).toBe(3);
    // The meta shard: attributes an earlier build published as a KV put into its store.
    const meta = composeStateMachine('meta');
    const member = { id: 9, name: '', peerUrls: ['http://x:2'], isLearner: false };
    meta.applyConfChange(
      { index: 1, term: 1, type: 'conf-change', data: new Uint8Array(0) },
      { transition: 'auto', changes: [{ type: 'add-voter', nodeId: 9 }], context: encodeMemberContext(member) },
      { proposer: 0, requestId: 0 },
    );
    const attrs = PutRequest.encode({ key: Buffer.from(`attrs/${(9).toString(16).padStart(14, '0')}`), value: Buffer.from('{"name":"n9","clientUrls":["http://x:1"]}') }).finish();
    const legacyAttrs = new Uint8Array(18 + attrs.length);
    legacyAttrs[0] = 1;
    legacyAttrs[1] = KvCommandKind.Put;
    legacyAttrs.set(attrs, 18);
    meta.apply({ index: 2, term: 1, type: 'normal', data: legacyAttrs });
    expect(metaEngineOf(meta).members()).toEqual([{ ...member, name: 'n9', clientUrls: ['http://x:1'] }]);
  });
});
