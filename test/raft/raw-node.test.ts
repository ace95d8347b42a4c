/**
 * The RawNode contract: configuration validation, the Ready/advance cycle, and every reason a
 * proposal (or request) is refused.
 */
import { describe, expect, it } from 'vitest';
import {
  type ConfChange,
  type DroppedProposal,
  MemoryLogStorage,
  type Message,
  ProposalDroppedError,
  dropReasonOfCode,
  dropReasonText,
  makeMessage,
  RaftAssertionError,
  RaftConfigError,
  type RaftConfig,
  RawNode,
  SeededPrng,
  limits,
} from '../../raft/index.js';

const none = new Uint8Array(0);
const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

/** A tiny synchronous cluster: persist, send and apply every Ready until nothing moves. */
class Group {
  readonly nodes = new Map<number, RawNode>();
  readonly storages = new Map<number, MemoryLogStorage>();
  readonly applied = new Map<number, string[]>();
  readonly down = new Set<number>();
  /** Proposals each node forwarded that came back refused (Ready.droppedProposals). */
  readonly dropped = new Map<number, DroppedProposal[]>();

  constructor(ids: readonly number[], options: Partial<RaftConfig> = {}) {
    for (const id of ids) {
      const storage = MemoryLogStorage.withMembers(ids);
      this.storages.set(id, storage);
      this.applied.set(id, []);
      this.nodes.set(id, new RawNode({ id, storage, random: new SeededPrng(id), ...options }));
    }
  }

  node(id: number): RawNode {
    return this.nodes.get(id)!;
  }

  stabilize(): void {
    for (let round = 0; round < 1000; round++) {
      const outbox: Message[] = [];
      let moved = false;
      for (const [id, node] of this.nodes) {
        if (this.down.has(id) || !node.hasReady()) continue;
        moved = true;
        const rd = node.ready();
        const storage = this.storages.get(id)!;
        if (rd.snapshot !== undefined) storage.applySnapshot(rd.snapshot);
        storage.append(rd.entries);
        if (rd.hardState !== undefined) storage.setHardState(rd.hardState);
        outbox.push(...rd.messages, ...rd.messagesAfterPersist);
        if (rd.droppedProposals.length > 0) this.dropped.set(id, [...(this.dropped.get(id) ?? []), ...rd.droppedProposals]);
        for (const entry of rd.committedEntries) {
          if (entry.type === 'conf-change') continue;
          if (entry.data.byteLength > 0) this.applied.get(id)!.push(new TextDecoder().decode(entry.data));
        }
        node.advance();
      }
      if (!moved) return;
      for (const m of outbox) if (this.nodes.has(m.to) && !this.down.has(m.to)) this.node(m.to).step(m);
    }
    throw new Error('group did not stabilize');
  }

  elect(id: number): void {
    this.node(id).campaign();
    this.stabilize();
    expect(this.node(id).status().role).toBe('leader');
  }
}

function refusal(action: () => void): string {
  try {
    action();
  } catch (error) {
    if (error instanceof ProposalDroppedError) return error.reason;
    throw error;
  }
  return 'accepted';
}

describe('RawNode configuration', () => {
  const base = { storage: new MemoryLogStorage(), random: new SeededPrng(1) };

  it.each([
    [{ id: 0 }, 'id must be a positive safe integer'],
    [{ id: 1.5 }, 'id must be a positive safe integer'],
    [{ id: 1, electionTicks: 1 }, 'electionTicks must be in'],
    [{ id: 1, electionTicks: 5, heartbeatTicks: 5 }, 'electionTicks must be greater than heartbeatTicks'],
    [{ id: 1, heartbeatTicks: 0 }, 'heartbeatTicks must be a positive integer'],
    [{ id: 1, messageBytesMax: -1 }, 'messageBytesMax must be a positive integer'],
    [{ id: 1, inflightMessagesMax: 0 }, 'inflightMessagesMax must be a positive integer'],
    [{ id: 1, messageBytesMax: 1000, inflightBytesMax: 10 }, 'inflightBytesMax must be 0 (unlimited) or at least messageBytesMax'],
    [{ id: 1, readOnlyOption: 'lease-based' as const, checkQuorum: false }, 'lease-based reads are only safe with checkQuorum'],
  ])('refuses %o', (fields, message) => {
    expect(() => new RawNode({ ...base, ...fields })).toThrow(RaftConfigError);
    expect(() => new RawNode({ ...base, ...fields })).toThrow(message);
  });

  it('accepts lease-based reads with checkQuorum on', () => {
    expect(() => new RawNode({ ...base, id: 1, readOnlyOption: 'lease-based', checkQuorum: true })).not.toThrow();
  });

  it('refuses a stored commit index beyond the stored log', () => {
    const storage = MemoryLogStorage.withMembers([1]);
    storage.setHardState({ term: 1, vote: 1, commit: 5 });
    expect(() => new RawNode({ id: 1, storage, random: new SeededPrng(1) })).toThrow(RaftAssertionError);
  });
});

describe('the Ready cycle', () => {
  it('a single node elects itself only after its (pre-)votes are persisted', () => {
    const g = new Group([1]);
    const node = g.node(1);
    node.campaign();
    expect(node.status().role).toBe('pre-candidate');
    // The pre-vote changes no durable state; its own pre-vote counts on advance.
    const preVote = node.ready();
    expect(preVote.hardState).toBeUndefined();
    node.advance();
    expect(node.status().role).toBe('candidate');
    const vote = node.ready();
    expect(vote.hardState).toEqual({ term: 1, vote: 1, commit: 0 });
    expect(vote.mustSync).toBe(true);
    expect(node.status().role).toBe('candidate');
    node.advance();
    expect(node.status().role).toBe('leader');
  });

  it('refuses a second ready() before advance(), and advance() without ready()', () => {
    const g = new Group([1]);
    g.node(1).campaign();
    g.node(1).ready();
    expect(g.node(1).hasReady()).toBe(false);
    expect(() => g.node(1).ready()).toThrow(RaftAssertionError);
    g.node(1).advance();
    expect(() => g.node(1).advance()).toThrow(RaftAssertionError);
  });

  it('keeps acknowledgements for after the persist and lets appends go at once', () => {
    const g = new Group([1, 2, 3]);
    g.elect(1);
    g.node(1).propose(bytes('x'));
    const leaderReady = g.node(1).ready();
    expect(leaderReady.entries.map((e) => e.index)).toEqual([2]);
    expect(leaderReady.messages.every((m) => m.type === 'MsgApp')).toBe(true);
    expect(leaderReady.messagesAfterPersist).toEqual([]);
    const append = leaderReady.messages.find((m) => m.to === 2)!;
    g.node(1).advance();
    g.node(2).step(append);
    const followerReady = g.node(2).ready();
    expect(followerReady.messages).toEqual([]);
    expect(followerReady.messagesAfterPersist.map((m) => [m.type, m.index])).toEqual([['MsgAppResp', 2]]);
    g.node(2).advance();
  });

  it('rejects local message types from the network', () => {
    const g = new Group([1]);
    expect(() => g.node(1).step({ ...emptyMessage(), type: 'MsgHup' })).toThrow(TypeError);
  });

  it('reports status with progress only on the leader', () => {
    const g = new Group([1, 2, 3]);
    g.elect(1);
    g.node(1).propose(bytes('x'));
    g.stabilize();
    const status = g.node(1).status();
    expect(status).toMatchObject({ id: 1, role: 'leader', lead: 1, term: 1, commit: 2, applied: 2, lastIndex: 2 });
    expect([...status.progress!.keys()]).toEqual([1, 2, 3]);
    expect(status.progress!.get(2)).toMatchObject({ match: 2, next: 3, state: 'replicate' });
    expect(g.node(2).status().progress).toBeUndefined();
    expect(g.applied.get(3)).toEqual(['x']);
  });
});

function emptyMessage(): Message {
  return { type: 'MsgApp', to: 1, from: 2, term: 0, logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0 };
}

describe('refusals carry a reason', () => {
  it('no-leader: a follower that knows no leader, and a candidate', () => {
    const g = new Group([1, 2, 3]);
    expect(refusal(() => g.node(2).propose(bytes('x')))).toBe('no-leader');
    expect(refusal(() => g.node(2).readIndex(bytes('r')))).toBe('no-leader');
    g.node(2).campaign();
    expect(g.node(2).status().role).toBe('pre-candidate');
    expect(refusal(() => g.node(2).propose(bytes('x')))).toBe('no-leader');
  });

  it('forwarding-disabled: a follower that may not forward proposals', () => {
    const g = new Group([1, 2, 3], { disableProposalForwarding: true });
    g.elect(1);
    expect(refusal(() => g.node(2).propose(bytes('x')))).toBe('forwarding-disabled');
  });

  it('a follower forwards proposals to the leader when allowed', () => {
    const g = new Group([1, 2, 3]);
    g.elect(1);
    expect(refusal(() => g.node(2).propose(bytes('via-2')))).toBe('accepted');
    g.stabilize();
    expect(g.applied.get(1)).toEqual(['via-2']);
  });

  it('uncommitted-size-limit: a leader whose followers do not acknowledge', () => {
    const g = new Group([1, 2, 3], { uncommittedEntriesBytesMax: 10 });
    g.elect(1);
    g.down.add(2);
    g.down.add(3);
    // One proposal is always admitted when nothing is uncommitted, however large.
    expect(refusal(() => g.node(1).propose(new Uint8Array(100)))).toBe('accepted');
    expect(refusal(() => g.node(1).propose(bytes('y')))).toBe('uncommitted-size-limit');
    g.down.clear();
    g.stabilize();
    g.node(1).tick(); // a heartbeat round brings the followers' acknowledgements
    g.stabilize();
    expect(refusal(() => g.node(1).propose(bytes('z')))).toBe('accepted');
  });

  it('too-many-entries: one proposal with more entries than allowed', () => {
    const g = new Group([1]);
    g.elect(1);
    const commands = Array.from({ length: limits.proposalEntriesMax + 1 }, () => bytes('c'));
    expect(refusal(() => g.node(1).proposeMany(commands))).toBe('too-many-entries');
  });

  it('conf-change-pending, -in-joint, -not-joint and -invalid', () => {
    const g = new Group([1, 2, 3]);
    g.elect(1);
    const node = g.node(1);
    const change = (cc: Partial<ConfChange>): ConfChange => ({ transition: 'auto', changes: [], context: none, ...cc });
    expect(refusal(() => node.proposeConfChange(change({})))).toBe('conf-change-not-joint');
    expect(refusal(() => node.proposeConfChange(change({ changes: [{ type: 'remove', nodeId: 1 }, { type: 'remove', nodeId: 2 }, { type: 'remove', nodeId: 3 }] })))).toBe(
      'conf-change-invalid',
    );
    expect(refusal(() => node.proposeConfChange(change({ changes: [{ type: 'add-voter', nodeId: 0 }] })))).toBe('conf-change-invalid');
    const joint = change({ transition: 'joint-explicit', changes: [{ type: 'add-learner', nodeId: 4 }] });
    expect(refusal(() => node.proposeConfChange(joint))).toBe('accepted');
    expect(refusal(() => node.proposeConfChange(change({ changes: [{ type: 'add-learner', nodeId: 5 }] })))).toBe('conf-change-pending');
    // Apply the joint change everywhere, as the application does.
    for (const id of [1, 2, 3]) g.node(id).applyConfChange(joint);
    g.stabilize();
    expect(node.status().config.votersOutgoing).toEqual([1, 2, 3]);
    expect(refusal(() => node.proposeConfChange(change({ changes: [{ type: 'add-learner', nodeId: 5 }] })))).toBe('conf-change-in-joint');
    expect(refusal(() => node.proposeConfChange(change({})))).toBe('accepted');
  });

  it('transfer-in-progress: proposals wait while leadership moves', () => {
    const g = new Group([1, 2, 3]);
    g.elect(1);
    g.down.add(3);
    g.node(1).transferLeader(3);
    expect(refusal(() => g.node(1).propose(bytes('x')))).toBe('transfer-in-progress');
  });

  it('a forwarded proposal refused where it arrives comes back to its proposer, appended nowhere', () => {
    const g = new Group([1, 2, 3]);
    g.elect(1);
    g.down.add(3);
    g.node(1).transferLeader(3);
    const lastIndex = g.node(1).raft.log.lastIndex();
    g.node(2).propose(bytes('forwarded'));
    g.stabilize();
    const dropped = g.dropped.get(2) ?? [];
    expect(dropped.map((d) => d.reason)).toEqual(['transfer-in-progress']);
    expect(dropped[0]!.entries.map((e) => new TextDecoder().decode(e.data))).toEqual(['forwarded']);
    expect(g.node(1).raft.log.lastIndex()).toBe(lastIndex);
    expect(g.node(2).raft.log.lastIndex()).toBe(lastIndex);
    expect(g.dropped.has(1)).toBe(false);
    // Proposed again once the transfer is over (here: it timed out), it is appended and applied once.
    for (let i = 0; i < 40 && g.node(1).raft.leadTransferee !== 0; i++) g.node(1).tick();
    expect(g.node(1).raft.leadTransferee).toBe(0);
    g.node(2).propose(bytes('forwarded'));
    g.stabilize();
    expect(g.applied.get(1)!.filter((v) => v === 'forwarded')).toHaveLength(1);
  });

  it('names every refusal on the wire with a code of its own; a code this build does not know reads as unknown', () => {
    const seen = new Set<string>();
    for (let code = 0; code < 64; code++) {
      const reason = dropReasonOfCode(code);
      if (reason !== 'unknown') seen.add(reason);
    }
    expect([...seen].sort()).toEqual(Object.keys(dropReasonText).filter((r) => r !== 'unknown').sort());
    expect(dropReasonOfCode(1)).toBe('transfer-in-progress');
    expect(dropReasonOfCode(9999)).toBe('unknown');
  });

  it('a forwarded proposal that reaches a node without a leader comes back as no-leader', () => {
    const g = new Group([1, 2, 3]);
    g.elect(1);
    // Node 3 knows no leader (a fresh term with no winner yet) while node 2 still sends to it.
    g.node(3).raft.becomeFollower(g.node(3).raft.term + 1, 0);
    const refused = g.node(3).step(makeMessage({ type: 'MsgProp', to: 3, from: 2, entries: [{ term: 0, index: 0, type: 'normal', data: bytes('lost') }] }));
    expect(refused).toBe('no-leader');
    g.stabilize();
    expect((g.dropped.get(2) ?? []).map((d) => d.reason)).toEqual(['no-leader']);
  });

  it('read-index-queue-full: reads waiting for a heartbeat quorum that never answers', () => {
    const g = new Group([1, 2, 3]);
    g.elect(1);
    g.down.add(2);
    g.down.add(3);
    const leader = g.node(1);
    for (let i = 0; i < limits.readIndexPendingMax; i++) leader.readIndex(bytes(`read-${i}`));
    expect(refusal(() => leader.readIndex(bytes('one-too-many')))).toBe('read-index-queue-full');
  });
});

describe('lease-based reads', () => {
  const leaseGroup = (): Group => new Group([1, 2, 3], { readOnlyOption: 'lease-based', checkQuorum: true, electionTicks: 10 });

  /** Node 1 leads, past the startup vote guard, after one acknowledged heartbeat round. */
  function leaseLeader(): { g: Group; leader: RawNode } {
    const g = leaseGroup();
    for (let i = 0; i < 10; i++) for (const id of [1, 2, 3]) g.node(id).tick();
    g.elect(1);
    const leader = g.node(1);
    expect(leader.raft.leaseValid()).toBe(false); // no heartbeat acknowledged yet
    leader.tick(); // heartbeat, stamped with the leader's tick
    g.stabilize();
    expect(leader.raft.leaseValid()).toBe(true);
    return { g, leader };
  }

  it('lease ticks leave room for clock-rate error', () => {
    // (electionTicks - 1) * (1 - leaseClockRateErrorMax), rounded down.
    expect(leaseGroup().node(1).raft.leaseTicks).toBe(Math.floor(9 * (1 - limits.leaseClockRateErrorMax)));
    expect(new Group([1]).node(1).raft.leaseTicks).toBe(0);
  });

  it('are answered at once while a quorum acknowledged a recent heartbeat', () => {
    const { g, leader } = leaseLeader();
    leader.readIndex(bytes('lease-read'));
    const rd = leader.ready();
    expect(rd.readStates).toEqual([{ index: leader.status().commit, requestContext: bytes('lease-read') }]);
    expect(rd.messages).toEqual([]); // no quorum round was needed
    leader.advance();
  });

  it('fall back to a heartbeat round once the lease ran out', () => {
    const { g, leader } = leaseLeader();
    g.down.add(2);
    g.down.add(3);
    for (let i = 0; i < leader.raft.leaseTicks; i++) leader.tick();
    g.stabilize();
    expect(leader.raft.leaseValid()).toBe(false);
    leader.readIndex(bytes('late-read'));
    const rd = leader.ready();
    expect(rd.readStates).toEqual([]);
    expect(rd.messages.filter((m) => m.type === 'MsgHeartbeat' && m.context !== undefined)).toHaveLength(2);
    leader.advance();
  });

  it('are given up for the rest of the term once a leadership transfer starts', () => {
    const { g, leader } = leaseLeader();
    g.down.add(3);
    leader.transferLeader(3);
    for (let i = 0; i < 10; i++) leader.tick(); // the transfer times out and is aborted
    g.stabilize();
    expect(leader.status().leadTransferee).toBe(0);
    leader.tick();
    g.stabilize();
    expect(leader.raft.leaseValid()).toBe(false);
  });

  it('a node that just started refuses votes for an election timeout', () => {
    const g = leaseGroup();
    g.node(1).campaign();
    g.stabilize();
    expect(g.node(1).status().role).toBe('pre-candidate');
    expect(g.node(2).status().term).toBe(0);
    for (let i = 0; i < 10; i++) for (const id of [2, 3]) g.node(id).tick();
    g.stabilize();
    g.node(1).raft.becomeFollower(g.node(1).raft.term, 0);
    g.elect(1);
  });
});

describe('pipelined Readies (readiesInFlightMax)', () => {
  it('hands out new entries while earlier Readies are in flight, never twice, and commits them in order', () => {
    const storage = MemoryLogStorage.withMembers([1]);
    const node = new RawNode({ id: 1, storage, random: new SeededPrng(1), readiesInFlightMax: 3 });
    node.campaign();
    // Become leader (one-node group) with the usual cycle.
    for (let i = 0; i < 5 && node.hasReady(); i++) {
      const rd = node.ready();
      storage.append(rd.entries);
      if (rd.hardState !== undefined) storage.setHardState(rd.hardState);
      node.advance();
    }
    expect(node.status().role).toBe('leader');
    const inFlight: Array<ReturnType<RawNode['ready']>> = [];
    for (const text of ['a', 'b', 'c']) {
      node.propose(bytes(text));
      expect(node.hasReady()).toBe(true);
      const rd = node.ready();
      inFlight.push(rd);
      // Only the new proposal: earlier ones are in flight already.
      expect(rd.entries.map((e) => new TextDecoder().decode(e.data))).toEqual([text]);
    }
    // At most three in flight.
    node.propose(bytes('d'));
    expect(node.hasReady()).toBe(false);
    expect(() => node.ready()).toThrow(RaftAssertionError);
    // Persist and advance in order; each advance commits its entry (the leader's own ack).
    const applied: string[] = [];
    for (const rd of inFlight) {
      storage.append(rd.entries);
      if (rd.hardState !== undefined) storage.setHardState(rd.hardState);
      node.advance();
    }
    while (node.hasReady()) {
      const rd = node.ready();
      storage.append(rd.entries);
      if (rd.hardState !== undefined) storage.setHardState(rd.hardState);
      for (const e of rd.committedEntries) if (e.data.length > 0) applied.push(new TextDecoder().decode(e.data));
      node.advance();
    }
    expect(applied).toEqual(['a', 'b', 'c', 'd']);
    expect(node.status().commit).toBe(storage.lastIndex());
  });

  it('keeps one Ready in flight by default', () => {
    const storage = MemoryLogStorage.withMembers([1]);
    const node = new RawNode({ id: 1, storage, random: new SeededPrng(1) });
    node.campaign();
    node.ready();
    expect(node.hasReady()).toBe(false);
    expect(() => node.ready()).toThrow(RaftAssertionError);
  });
});

describe('restartQuorumCheck', () => {
  it("restarts a leader's check-quorum period, with the members named counted as not heard from", () => {
    const g = new Group([1, 2, 3], { checkQuorum: true, electionTicks: 10 });
    g.elect(1);
    const leader = g.node(1);
    for (let i = 0; i < 4; i++) leader.tick();
    g.stabilize();
    expect(leader.raft.electionElapsed).toBe(4);
    expect([...leader.raft.tracker.progress].filter(([id]) => id !== 1).every(([, p]) => p.recentActive)).toBe(true);
    leader.restartQuorumCheck((id) => id === 3);
    expect(leader.raft.electionElapsed).toBe(0);
    expect(leader.raft.tracker.progress.get(2)!.recentActive).toBe(true);
    expect(leader.raft.tracker.progress.get(3)!.recentActive).toBe(false);
    // With 3 silent and 2 silent too, the next check-quorum steps the leader down.
    leader.restartQuorumCheck((id) => id === 2);
    for (let i = 0; i < 10; i++) leader.tick();
    expect(leader.raft.role).toBe('follower');
    // A follower's clock is its election timer: untouched.
    const follower = g.node(2);
    follower.tick();
    const elapsed = follower.raft.electionElapsed;
    follower.restartQuorumCheck(() => true);
    expect(follower.raft.electionElapsed).toBe(elapsed);
  });
});
