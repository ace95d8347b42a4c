/**
 * Bugs the simulator found, each pinned by a direct test of the core.
 */
import { describe, expect, it } from 'vitest';
import {
  MemoryLogStorage,
  RawNode,
  SeededPrng,
  decodeConfChange,
  makeMessage,
  type Snapshot,
} from '../../raft/index.js';

describe('snapshot arriving while committed conf changes are being applied (sim seed 2526)', () => {
  const jointSnapshot: Snapshot = {
    metadata: {
      index: 30,
      term: 2,
      confState: { voters: [2, 3, 4], votersOutgoing: [1, 2, 3], learners: [], learnersNext: [], autoLeave: true },
    },
    data: new Uint8Array([1]),
  };

  it('is postponed until the entries are applied, then installed', () => {
    const storage = MemoryLogStorage.bootstrapped([1, 2, 3]);
    const node = new RawNode({ id: 2, storage, random: new SeededPrng(2) });
    // A restarted node hands out its committed bootstrap entries (add-voter 1, 2, 3) ...
    const first = node.ready();
    expect(first.committedEntries.map((e) => e.index)).toEqual([1, 2, 3]);
    // ... and, before they are applied, the leader's snapshot with a joint configuration arrives.
    node.step(makeMessage({ type: 'MsgSnap', from: 1, to: 2, term: 2, snapshot: jointSnapshot }));
    expect(node.raft.log.committed).toBe(3);
    // Applying the simple changes must still work on the configuration they were written for.
    for (const entry of first.committedEntries) node.applyConfChange(decodeConfChange(entry.data));
    node.advance();
    expect(node.status().config.voters).toEqual([1, 2, 3]);

    const refusal = node.ready();
    expect(refusal.snapshot).toBeUndefined();
    expect(refusal.messagesAfterPersist).toEqual([expect.objectContaining({ type: 'MsgAppResp', to: 1, index: 3, reject: false })]);
    node.advance();

    // Sent again once nothing is being applied, the snapshot is installed.
    node.step(makeMessage({ type: 'MsgSnap', from: 1, to: 2, term: 2, snapshot: jointSnapshot }));
    const install = node.ready();
    expect(install.snapshot?.metadata.index).toBe(30);
    storage.applySnapshot(install.snapshot!);
    node.advance();
    expect(node.status().config).toEqual(jointSnapshot.metadata.confState);
    expect(node.raft.log.applied).toBe(30);
  });
});

describe('a snapshot older than a member is never sent to it (sim seed 57)', () => {
  it('the leader does not send a snapshot whose configuration lacks the follower', () => {
    // Leader 1 with voters 1, 2, 3 and a compacted log whose snapshot predates node 4.
    const storage = MemoryLogStorage.withMembers([1, 2, 3]);
    const entries = Array.from({ length: 10 }, (_, i) => ({ term: 1, index: i + 1, type: 'normal' as const, data: new Uint8Array(0) }));
    storage.append(entries);
    storage.setHardState({ term: 1, vote: 1, commit: 10 });
    storage.createSnapshot(8, { voters: [1, 2, 3], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false }, new Uint8Array(0));
    storage.compact(8);
    const node = new RawNode({ id: 1, storage, random: new SeededPrng(1), applied: 10 });
    node.campaign();
    let rd = node.ready();
    node.advance();
    for (const id of [2, 3]) node.step(makeMessage({ type: 'MsgPreVoteResp', from: id, to: 1, term: 2 }));
    rd = node.ready();
    node.advance();
    for (const id of [2, 3]) node.step(makeMessage({ type: 'MsgVoteResp', from: id, to: 1, term: 2 }));
    expect(node.status().role).toBe('leader');
    rd = node.ready();
    node.advance();
    // Node 4 joins (the conf change is applied by the application).
    node.applyConfChange({ transition: 'auto', changes: [{ type: 'add-learner', nodeId: 4 }], context: new Uint8Array(0) });
    // It rejects the probe with an empty log: the leader would need index 1, which is compacted.
    node.step(makeMessage({ type: 'MsgHeartbeatResp', from: 4, to: 1, term: 2 }));
    rd = node.ready();
    const probe = rd.messages.find((m) => m.to === 4 && m.type === 'MsgApp')!;
    node.advance();
    node.step(makeMessage({ type: 'MsgAppResp', from: 4, to: 1, term: 2, index: probe.index, reject: true, rejectHint: 0 }));
    rd = node.ready();
    expect(rd.messages.filter((m) => m.to === 4 && m.type === 'MsgSnap')).toEqual([]);
    node.advance();
    expect(node.status().progress!.get(4)!.state).not.toBe('snapshot');
  });
});

describe('a caught-up follower put back in probe (CI: a leadership hand-over refused for a minute)', () => {
  it('returns to replicate on its next heartbeat answer though nothing is proposed', () => {
    const storage = MemoryLogStorage.withMembers([1, 2, 3]);
    const node = new RawNode({ id: 1, storage, random: new SeededPrng(3) });
    node.campaign();
    node.ready();
    node.advance();
    for (const id of [2, 3]) node.step(makeMessage({ type: 'MsgPreVoteResp', from: id, to: 1, term: node.raft.term + 1 }));
    node.ready();
    node.advance();
    for (const id of [2, 3]) node.step(makeMessage({ type: 'MsgVoteResp', from: id, to: 1, term: node.raft.term }));
    expect(node.status().role).toBe('leader');
    // The leader's empty entry, persisted here and acknowledged by both followers.
    const rd = node.ready();
    storage.append(rd.entries);
    node.advance();
    const last = node.raft.log.lastIndex();
    for (const id of [2, 3]) node.step(makeMessage({ type: 'MsgAppResp', from: id, to: 1, term: node.raft.term, index: last }));
    node.ready();
    node.advance();
    expect(node.status().progress!.get(2)).toMatchObject({ state: 'replicate', match: last });
    // Its node restarted: the link reported it unreachable, so the leader probes it again.
    node.reportUnreachable(2);
    expect(node.status().progress!.get(2)).toMatchObject({ state: 'probe', match: last });
    // Back: its heartbeat answer brings an (empty) append, and the answer to that, replicate.
    node.step(makeMessage({ type: 'MsgHeartbeatResp', from: 2, to: 1, term: node.raft.term }));
    const probe = node.ready().messages.filter((m) => m.to === 2 && m.type === 'MsgApp');
    node.advance();
    expect(probe).toHaveLength(1);
    expect(probe[0]!.entries).toEqual([]);
    expect(probe[0]!.index).toBe(last);
    node.step(makeMessage({ type: 'MsgAppResp', from: 2, to: 1, term: node.raft.term, index: last }));
    expect(node.status().progress!.get(2)).toMatchObject({ state: 'replicate', match: last, recentActive: true });
  });
});
