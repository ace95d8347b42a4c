/** The meta engine: members from configuration changes, published attributes, removed ids, and version gating. */
import { describe, expect, it } from 'vitest';
import type { ConfChange } from '../../raft/index.js';
import { EngineId, MetaEngine } from '../../src/engines/index.js';
import { encodeMemberContext, membersSupport, publishAttributesCommand } from '../../src/engines/meta/index.js';

const context = { index: 1, term: 1, nowMs: 0, proposer: 0, requestId: 0 };
const add = (id: number): ConfChange => ({
  transition: 'auto',
  changes: [{ type: 'add-voter', nodeId: id }],
  context: encodeMemberContext({ id, name: `n${id}`, peerUrls: [`http://h${id}:2380`], isLearner: false }),
});

describe('meta engine', () => {
  it('records members, their attributes and engine versions, and removed ids', () => {
    const meta = new MetaEngine();
    meta.applyConfChange(add(1), context);
    meta.applyConfChange(add(2), context);
    expect(meta.apply(publishAttributesCommand(1, { name: 'one', clientUrls: ['http://h1:2379'], engines: { [EngineId.Kv]: 2 } }), context)).toEqual({ kind: 'ok' });
    expect(meta.members().map((m) => [m.id, m.name, m.clientUrls, m.engines])).toEqual([
      [1, 'one', ['http://h1:2379'], { [EngineId.Kv]: 2 }],
      [2, 'n2', [], undefined],
    ]);
    meta.applyConfChange({ transition: 'auto', changes: [{ type: 'remove', nodeId: 2 }], context: new Uint8Array(0) }, context);
    expect(meta.members().map((m) => m.id)).toEqual([1]);
    expect(meta.isRemoved(2)).toBe(true);
  });

  it('admits no add of a removed id, and no add-learner of a voter (a late duplicate, a promotion that raced a removal)', () => {
    const meta = new MetaEngine();
    meta.applyConfChange(add(1), context);
    meta.applyConfChange(add(2), context);
    meta.applyConfChange({ transition: 'auto', changes: [{ type: 'remove', nodeId: 2 }], context: new Uint8Array(0) }, context);
    expect(meta.admitConfChange(add(2)).changes).toEqual([]);
    expect(meta.admitConfChange({ ...add(2), changes: [{ type: 'add-learner', nodeId: 2 }] }).changes).toEqual([]);
    expect(meta.admitConfChange({ ...add(1), changes: [{ type: 'add-learner', nodeId: 1 }] }).changes).toEqual([]);
    // What is allowed goes through unchanged: a new member, a promotion, a removal, an update.
    for (const single of [{ type: 'add-voter', nodeId: 3 }, { type: 'add-learner', nodeId: 4 }, { type: 'add-voter', nodeId: 1 }, { type: 'remove', nodeId: 1 }, { type: 'update', nodeId: 1 }] as const) {
      const change: ConfChange = { ...add(1), changes: [single] };
      expect(meta.admitConfChange(change)).toBe(change);
    }
  });

  it('refuses malformed attributes deterministically, changing nothing', () => {
    const meta = new MetaEngine();
    const before = meta.hash();
    const bad = { ...publishAttributesCommand(1, { name: 'x', clientUrls: [] }), payload: new TextEncoder().encode('{"id":1,"name":"x","clientUrls":[],"engines":{"kv":"two"}}') };
    expect(meta.apply(bad, context)).toEqual({ kind: 'error', message: 'member engine versions are malformed' });
    expect(meta.apply({ ...bad, payload: new TextEncoder().encode('not json') }, context)).toEqual({ kind: 'error', message: 'member attributes are not JSON' });
    expect(meta.hash()).toBe(before);
  });

  it('lets a newer command version through only once every member applies it', () => {
    const members = [
      { id: 1, name: 'a', peerUrls: [], isLearner: false, clientUrls: [], engines: { [EngineId.Kv]: 2 } },
      // Published, from a build before engine versions were published: meta and KV version 1 only.
      { id: 2, name: 'b', peerUrls: [], isLearner: false, clientUrls: ['http://b:2379'] },
    ];
    expect(membersSupport(members, EngineId.Kv, 1)).toBe(true);
    expect(membersSupport(members, EngineId.Kv, 2)).toBe(false);
    expect(membersSupport([members[0]!, { ...members[1]!, engines: { [EngineId.Kv]: 3 } }], EngineId.Kv, 2)).toBe(true);
  });

  it('lets commands of an engine a member does not publish through only once it does (a rolling upgrade)', () => {
    const upgraded = { id: 1, name: 'a', peerUrls: [], isLearner: false, clientUrls: ['http://a:2379'], engines: { [EngineId.Kv]: 1, [EngineId.Lease]: 1 } };
    const old = { id: 2, name: 'b', peerUrls: [], isLearner: false, clientUrls: ['http://b:2379'], engines: { [EngineId.Kv]: 1 } };
    const older = { id: 3, name: 'c', peerUrls: [], isLearner: false, clientUrls: ['http://c:2379'] };
    const notStarted = { id: 4, name: '', peerUrls: [], isLearner: true, clientUrls: [] };
    expect(membersSupport([upgraded, old], EngineId.Lease, 1)).toBe(false);
    expect(membersSupport([upgraded, older], EngineId.Lease, 1)).toBe(false);
    expect(membersSupport([upgraded, notStarted], EngineId.Lease, 1)).toBe(true);
    expect(membersSupport([upgraded, { ...old, engines: { ...old.engines, [EngineId.Lease]: 1 } }], EngineId.Lease, 1)).toBe(true);
    expect(membersSupport([upgraded, old, older], EngineId.Kv, 1)).toBe(true);
  });
});
