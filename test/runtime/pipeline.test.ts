/**
 * The runtime's request pipeline on the deterministic simulator (real runtimes, simulated time):
 * every pending write and read is released — on its outcome, on proof it can never apply, on its
 * deadline, on a leader change, on shutdown — and the limits refuse what would grow memory.
 */
import { describe, expect, it } from 'vitest';
import { SIM_DEFAULTS, SimCluster } from '../../jepsen-lite/sim/cluster.js';
import { recordCommand } from '../../jepsen-lite/sim/record-engine.js';
import { type Entry, MemoryLogStorage, type Message, SeededPrng, makeMessage } from '../../raft/index.js';
import { encodeEnvelope } from '../../src/runtime/envelope.js';
import { onlyCommitNews } from '../../src/runtime/runtime.js';
import { applyUpdate } from '../../jepsen-lite/sim/disk.js';
import { RECORD_ENGINE_ID, RecordEngine } from '../../jepsen-lite/sim/record-engine.js';
import type { RuntimeErrorCode, RuntimeStorage } from '../../src/runtime/index.js';
import { NodeRuntime, RuntimeError, ShardStateMachine, runtimeLimits } from '../../src/runtime/index.js';

const SHARD = 1;
const requestTimeoutMs = 3000;

function cluster(seed: number): SimCluster {
  const c = new SimCluster({ ...SIM_DEFAULTS, seed, nodeIds: [1, 2, 3], requestTimeoutMs });
  expect(c.runUntilCondition(() => c.leader() !== undefined, 10_000)).toBe(true);
  c.runFor(500);
  return c;
}

function pending(c: SimCluster, id: number): { writes: number; forwarded: number; reads: number; readRounds: number } {
  const totals = c.nodes.get(id)!.runtime!.pendingTotals();
  return { writes: totals.writes, forwarded: totals.forwarded, reads: totals.reads, readRounds: totals.readRounds };
}

const idle = { writes: 0, forwarded: 0, reads: 0, readRounds: 0 };

/** Outcomes of requests, each of which must be heard exactly once. */
class Outcomes {
  readonly heard = new Map<number, RuntimeErrorCode | 'ok'>();
  private next = 0;

  callback(): (error: RuntimeErrorCode | undefined) => void {
    const id = this.next++;
    return (error) => {
      expect(this.heard.has(id), `request ${id} answered twice`).toBe(false);
      this.heard.set(id, error ?? 'ok');
    };
  }

  get issued(): number {
    return this.next;
  }

  codes(): string[] {
    return [...new Set(this.heard.values())].sort();
  }
}

const payload = (text: string) => new TextEncoder().encode(text);

/** A linearizable read at `id` whose outcome `outcomes` hears once. */
function read(c: SimCluster, id: number, outcomes: Outcomes): void {
  const heard = outcomes.callback();
  c.readIndex(id, () => heard(undefined), (code) => heard(code));
}

describe('the request pipeline releases everything it holds', () => {
  it('a forwarded proposal lost on the wire is released at its deadline', () => {
    const c = cluster(11);
    const leader = c.leader()!.id;
    const follower = [1, 2, 3].find((id) => id !== leader)!;
    c.dropWhere = (_shard, m) => m.type === 'MsgProp';
    const outcomes = new Outcomes();
    c.propose(follower, payload('lost'), outcomes.callback());
    c.runFor(1000);
    expect(pending(c, follower)).toEqual({ writes: 1, forwarded: 1, reads: 0, readRounds: 0 });
    c.runFor(requestTimeoutMs);
    expect(outcomes.codes()).toEqual(['timeout']);
    expect(pending(c, follower)).toEqual(idle);
    // The pipeline still works once the wire does.
    c.dropWhere = undefined;
    c.propose(follower, payload('delivered'), outcomes.callback());
    c.runFor(500);
    expect(outcomes.heard.get(1)).toBe('ok');
    expect(pending(c, follower)).toEqual(idle);
  });

  // A write, or a read, at a node that knows no leader (restarted, until the leader's next
  // heartbeat reaches it) waits for one and is served; with no leader possible (two of three
  // down) it is refused `no-leader` after the wait, not before (the request's deadline is later).
  const asks = {
    write: (c: SimCluster, id: number, outcomes: Outcomes, name: string) => c.propose(id, payload(name), outcomes.callback()),
    read: (c: SimCluster, id: number, outcomes: Outcomes) => read(c, id, outcomes),
  };
  it.each(['write', 'read'] as const)('a %s at a node that knows no leader waits for one; with no leader possible it is refused after the wait', (kind) => {
    const ask = asks[kind];
    const c = cluster(13);
    const leader = c.leader()!.id;
    const follower = [1, 2, 3].find((id) => id !== leader)!;
    c.crash(follower);
    c.restart(follower);
    expect(c.nodes.get(follower)!.runtime!.status(SHARD).lead).toBe(0);
    const outcomes = new Outcomes();
    ask(c, follower, outcomes, 'waits');
    c.runFor(1500);
    expect(outcomes.heard.get(0)).toBe('ok');
    const others = [1, 2, 3].filter((id) => id !== follower);
    for (const id of others) c.crash(id);
    c.runFor(3000);
    ask(c, follower, outcomes, 'refused');
    const waitMs = runtimeLimits.noLeaderWaitElections * (SIM_DEFAULTS.raft.electionTicks ?? 10) * SIM_DEFAULTS.tickIntervalMs;
    c.runFor(waitMs - 200);
    expect(outcomes.heard.has(1)).toBe(false);
    c.runFor(400);
    expect(outcomes.heard.get(1)).toBe('no-leader');
    expect(pending(c, follower)).toEqual(idle);
  });

  it('a leader change A→B releases pending reads at once and every write by its outcome or deadline', () => {
    const c = cluster(12);
    const a = c.leader()!.id;
    const others = [1, 2, 3].filter((id) => id !== a);
    const reads = new Outcomes();
    const writes = new Outcomes();
    // Writes the old leader appended itself (their place is known there) and writes and reads at
    // a follower, all in flight as A is cut off.
    for (let i = 0; i < 20; i++) c.submit(a, SHARD, recordCommand(payload(`a${i}`)), writes.callback(), 60_000);
    for (let i = 0; i < 20; i++) c.propose(others[0]!, payload(`f${i}`), writes.callback());
    c.dropWhere = (_shard, m) => m.from === a || m.to === a;
    for (let i = 0; i < 10; i++) read(c, others[0]!, reads);
    c.runUntilCondition(() => c.leader() !== undefined && c.leader()!.id !== a, 10_000);
    const b = c.leader()!.id;
    expect(b).not.toBe(a);
    c.runFor(requestTimeoutMs + 1000);
    // The follower holds nothing any more: its reads failed or were served, its writes applied or timed out.
    expect(pending(c, others[0]!)).toEqual(idle);
    expect(pending(c, b)).toEqual(idle);
    // The old leader still holds its own writes (it cannot learn their fate while cut off)...
    expect(pending(c, a).writes).toBeGreaterThan(0);
    // ...until it hears from B and applies past them: the entries B's log put in their place
    // prove they never apply.
    c.dropWhere = undefined;
    for (let i = 0; i < 30; i++) c.propose(b, payload(`b${i}`));
    c.runFor(2000);
    expect(pending(c, a)).toEqual(idle);
    expect(writes.heard.size).toBe(writes.issued);
    expect(writes.codes()).toContain('lost');
    for (const code of writes.heard.values()) expect(['ok', 'lost', 'timeout', 'leader-failed', 'no-leader', 'leader-changed', 'leader-transfer']).toContain(code);
  });

  it('a write at or forwarded to a leader handing over waits for the hand-over and applies once', () => {
    const c = cluster(14);
    const a = c.leader()!.id;
    const [follower, target] = [1, 2, 3].filter((id) => id !== a) as [number, number];
    const applied = new Map<number, number>();
    c.onApply((node, entry) => {
      if (node.id !== a || entry.type !== 'normal' || entry.data.byteLength === 0) return;
      const text = new TextDecoder().decode(entry.data);
      if (text.includes('handed-over')) applied.set(entry.index, (applied.get(entry.index) ?? 0) + 1);
    });
    // The transfer stalls (its TimeoutNow never arrives), so A refuses proposals until it gives up
    // after an election timeout.
    c.dropWhere = (_shard, m) => m.type === 'MsgTimeoutNow';
    c.transferLeader(a, target);
    c.runFor(20);
    expect(c.nodes.get(a)!.raw!.raft.leadTransferee).toBe(target);
    const outcomes = new Outcomes();
    const sentAt = c.now;
    let answeredAt = 0;
    const heard = outcomes.callback();
    c.propose(follower, payload('handed-over-forwarded'), (error) => {
      answeredAt = Math.max(answeredAt, c.now);
      heard(error);
    });
    // And one at the leader itself, which refuses it to Raft: it waits too, not failing with `leader changed`.
    const heardAtLeader = outcomes.callback();
    c.propose(a, payload('handed-over-local'), (error) => {
      answeredAt = Math.max(answeredAt, c.now);
      heardAtLeader(error);
    });
    expect(c.runUntilCondition(() => outcomes.heard.size === 2, requestTimeoutMs)).toBe(true);
    expect([...outcomes.heard.values()]).toEqual(['ok', 'ok']);
    // Answered once the transfer gave up (an election timeout), not at the request's deadline.
    const electionMs = (SIM_DEFAULTS.raft.electionTicks ?? 10) * SIM_DEFAULTS.tickIntervalMs;
    expect(answeredAt - sentAt).toBeLessThanOrEqual(electionMs + 2 * SIM_DEFAULTS.tickIntervalMs);
    expect([...applied.values()]).toEqual([1, 1]);
    expect(pending(c, follower)).toEqual(idle);
    expect(pending(c, a)).toEqual(idle);
  });

  it('a write refused again and again (a hand-over restarted each time it gives up) fails at its deadline, known not applied', () => {
    const c = cluster(15);
    const a = c.leader()!.id;
    const [follower, target] = [1, 2, 3].filter((id) => id !== a) as [number, number];
    const applied: string[] = [];
    c.onApply((node, entry) => {
      if (node.id === a && entry.type === 'normal' && new TextDecoder().decode(entry.data).includes('never')) applied.push('never');
    });
    c.dropWhere = (_shard, m) => m.type === 'MsgTimeoutNow';
    c.transferLeader(a, target);
    c.runFor(20);
    const outcomes = new Outcomes();
    const sentAt = c.now;
    c.propose(follower, payload('never-forwarded'), outcomes.callback());
    c.propose(a, payload('never-local'), outcomes.callback());
    let refusedAt = 0;
    for (let t = 0; t < requestTimeoutMs + 2000; t += 10) {
      if (c.nodes.get(a)!.raw!.raft.leadTransferee === 0) c.transferLeader(a, target);
      c.runFor(10);
      if (refusedAt === 0 && [...outcomes.heard.values()].includes('leader-transfer')) refusedAt = c.now;
    }
    // Each is answered: applied (a retry can slip in between a transfer giving up and the next
    // one starting), or refused at its deadline with the refusal that kept it waiting, never
    // left pending.
    const codes = [...outcomes.heard.values()];
    expect(codes).toHaveLength(2);
    for (const code of codes) expect(['ok', 'leader-transfer']).toContain(code);
    expect(codes).toContain('leader-transfer');
    expect(refusedAt - sentAt).toBeGreaterThanOrEqual(requestTimeoutMs);
    expect(refusedAt - sentAt).toBeLessThanOrEqual(requestTimeoutMs + 2 * SIM_DEFAULTS.tickIntervalMs);
    expect(applied).toHaveLength(codes.filter((code) => code === 'ok').length);
    expect(pending(c, follower)).toEqual(idle);
    expect(pending(c, a)).toEqual(idle);
  });

  it('a read asked of a leader that lost its leadership is asked again of the next one', () => {
    const c = cluster(13);
    const a = c.leader()!.id;
    const follower = [1, 2, 3].find((id) => id !== a)!;
    const reads = new Outcomes();
    // The read index request reaches A, but A's answer never comes back.
    c.dropWhere = (_shard, m) => m.type === 'MsgReadIndexResp' && m.from === a;
    read(c, follower, reads);
    c.runFor(50);
    expect(pending(c, follower).reads).toBe(1);
    expect(pending(c, follower).readRounds).toBe(1);
    const b = [1, 2, 3].find((id) => id !== a && id !== follower)!;
    c.transferLeader(a, b);
    const askedAt = c.now;
    expect(c.runUntilCondition(() => reads.heard.size === 1, 5000)).toBe(true);
    expect(reads.codes()).toEqual(['ok']);
    expect(c.leader()!.id).toBe(b);
    expect(c.now - askedAt).toBeLessThan(requestTimeoutMs);
    expect(pending(c, follower)).toEqual(idle);
  });

  it('a read asked of a leader re-elected in a new term (never seen deposed here) is asked again', () => {
    const c = cluster(17);
    const a = c.leader()!.id;
    const [follower, b] = [1, 2, 3].filter((id) => id !== a) as [number, number];
    const reads = new Outcomes();
    // A's answer to the follower's round never comes back, and the follower misses what follows.
    c.dropWhere = (_shard, m) => (m.type === 'MsgReadIndexResp' && m.from === a) || m.to === follower || m.from === follower;
    read(c, follower, reads);
    c.runFor(50);
    expect(pending(c, follower).readRounds).toBe(1);
    const termBefore = c.nodes.get(follower)!.raw!.raft.term;
    // A hands over to B and gets it back: two new terms, the same leader when the follower hears again.
    c.transferLeader(a, b);
    expect(c.runUntilCondition(() => c.leader()?.id === b, 3000)).toBe(true);
    c.transferLeader(b, a);
    expect(c.runUntilCondition(() => c.leader()?.id === a, 3000)).toBe(true);
    c.dropWhere = (_shard, m) => m.type === 'MsgReadIndexResp' && m.from === a && m.term <= termBefore;
    const healedAt = c.now;
    expect(c.runUntilCondition(() => reads.heard.size === 1, requestTimeoutMs)).toBe(true);
    expect(c.nodes.get(follower)!.raw!.raft.term).toBeGreaterThan(termBefore);
    expect(reads.codes()).toEqual(['ok']);
    expect(c.now - healedAt).toBeLessThan(1000);
    expect(pending(c, follower)).toEqual(idle);
  });

  it('a read whose leader was lost, with no leader to follow, fails by its deadline', () => {
    const c = cluster(16);
    const a = c.leader()!.id;
    const [follower, other] = [1, 2, 3].filter((id) => id !== a) as [number, number];
    const reads = new Outcomes();
    c.dropWhere = (_shard, m) => m.type === 'MsgReadIndexResp';
    read(c, follower, reads);
    c.runFor(50);
    expect(pending(c, follower).readRounds).toBe(1);
    // The leader and the third member go: the follower learns no new leader.
    c.crash(a);
    c.crash(other);
    const askedAt = c.now;
    expect(c.runUntilCondition(() => reads.heard.size === 1, requestTimeoutMs + 2000)).toBe(true);
    // Refused `no leader` once the wait for one is over, or at its deadline if that comes first.
    expect(['no-leader', 'timeout']).toContain(reads.codes()[0]);
    expect(c.now - askedAt).toBeLessThanOrEqual(requestTimeoutMs + SIM_DEFAULTS.tickIntervalMs);
    expect(pending(c, follower)).toEqual(idle);
  });

  it('stopping a node fails everything it holds with stopped', () => {
    const c = cluster(14);
    const leader = c.leader()!.id;
    const outcomes = new Outcomes();
    c.dropWhere = () => true;
    for (const id of [1, 2, 3]) {
      for (let i = 0; i < 5; i++) c.propose(id, payload(`s${id}-${i}`), outcomes.callback());
      read(c, id, outcomes);
    }
    c.runFor(20);
    expect(pending(c, leader).writes).toBe(5);
    for (const id of [1, 2, 3]) c.nodes.get(id)!.runtime!.stop();
    for (const id of [1, 2, 3]) expect(pending(c, id)).toEqual(idle);
    expect([...outcomes.heard.values()].filter((code) => code !== 'stopped')).toEqual([]);
    expect(outcomes.heard.size).toBe(3 * 6);
  });
});

describe('the pipeline limits', () => {
  it('refuses writes and reads beyond their limits with too-many-requests, holding no more', () => {
    const c = cluster(15);
    const leader = c.leader()!.id;
    const runtime = c.nodes.get(leader)!.runtime!;
    const command = recordCommand(payload('x'));
    // Queued within one turn: nothing runs in between, so the queue is as full as a flood makes it.
    for (let i = 0; i < runtimeLimits.proposalsPendingMax; i++) runtime.propose(SHARD, command, {}, () => undefined);
    expect(() => runtime.propose(SHARD, command, {}, () => undefined)).toThrow(RuntimeError);
    for (let i = 0; i < runtimeLimits.readsPendingMax; i++) runtime.read(SHARD, {}, () => undefined);
    let refused: RuntimeError | undefined;
    try {
      runtime.read(SHARD, {}, () => undefined);
    } catch (error) {
      refused = error as RuntimeError;
    }
    expect(refused?.code).toBe('too-many-requests');
    expect(runtime.pendingTotals().writes).toBe(runtimeLimits.proposalsPendingMax);
    expect(runtime.pendingTotals().reads).toBe(runtimeLimits.readsPendingMax);
    expect(runtime.refusedTotal).toBe(2);
    // They drain: everything applies or is served.
    c.runFor(5000);
    expect(pending(c, leader)).toEqual(idle);
  });

  it('bounds the bytes of pending writes and the writes forwarded to a leader', () => {
    const c = cluster(16);
    const leader = c.leader()!.id;
    const follower = [1, 2, 3].find((id) => id !== leader)!;
    const runtime = c.nodes.get(follower)!.runtime!;
    c.dropWhere = (_shard, m) => m.type === 'MsgProp';
    const big = recordCommand(new Uint8Array(1024 * 1024));
    let accepted = 0;
    try {
      for (;;) {
        runtime.propose(SHARD, big, {}, () => undefined);
        accepted++;
      }
    } catch (error) {
      expect((error as RuntimeError).code).toBe('too-many-requests');
    }
    expect(accepted * 1024 * 1024).toBeLessThanOrEqual(runtimeLimits.proposalBytesPendingMax);
    c.runFor(requestTimeoutMs + 500);
    expect(pending(c, follower)).toEqual(idle);
    // Forwarded writes whose place is unknown are bounded on their own.
    const small = recordCommand(payload('f'));
    for (let i = 0; i < runtimeLimits.forwardedProposalsPendingMax; i++) runtime.propose(SHARD, small, {}, () => undefined);
    c.runFor(10);
    expect(pending(c, follower).forwarded).toBe(runtimeLimits.forwardedProposalsPendingMax);
    expect(() => runtime.propose(SHARD, small, {}, () => undefined)).toThrow(/forwarded writes/);
  });
});

describe('the pipeline, found by review', () => {
  it('forgets a ReadIndex round whose reads all timed out, though the leader never changed', () => {
    const c = cluster(17);
    const leader = c.leader()!.id;
    const follower = [1, 2, 3].find((id) => id !== leader)!;
    c.dropWhere = (_shard, m) => m.type === 'MsgReadIndex';
    const reads = new Outcomes();
    for (let i = 0; i < 50; i++) {
      read(c, follower, reads);
      c.runFor(5);
    }
    expect(pending(c, follower).readRounds).toBeGreaterThan(1);
    c.runFor(requestTimeoutMs + 500);
    expect(c.leader()!.id).toBe(leader);
    expect(reads.codes()).toEqual(['timeout']);
    expect(pending(c, follower)).toEqual(idle);
  });

  it('a late ReadIndex answer meant for an earlier process serves no read of the restarted one', () => {
    const c = cluster(7);
    const leader = c.leader()!.id;
    const follower = [1, 2, 3].find((id) => id !== leader)!;
    for (let i = 0; i < 5; i++) c.propose(leader, payload(`a${i}`));
    c.runFor(500);
    let held: Message | undefined;
    c.dropWhere = (_shard, m) => {
      if (m.type !== 'MsgReadIndexResp' || m.to !== follower || held !== undefined) return false;
      held = m;
      return true;
    };
    read(c, follower, new Outcomes());
    c.runFor(200);
    expect(held).toBeDefined();
    c.dropWhere = undefined;
    c.crash(follower);
    c.runFor(50);
    c.restart(follower);
    c.runFor(1000);
    for (let i = 0; i < 20; i++) c.propose(leader, payload(`b${i}`));
    c.runFor(1000);
    // The restarted process asks again; its real answer is held back and the old one delivered.
    c.dropWhere = (_shard, m) => m.type === 'MsgReadIndex' && m.from === follower;
    const reads = new Outcomes();
    read(c, follower, reads);
    c.runFor(10);
    c.inject(1, held!);
    // The safety checker throws on a read served below what was committed when it began.
    c.runFor(100);
    expect(reads.heard.size).toBe(0);
    c.runFor(requestTimeoutMs);
    expect(reads.codes()).toEqual(['timeout']);
  });

  it('answers a membership change only once Raft takes the next one', () => {
    for (const seed of [1, 2, 3]) {
      const c = cluster(seed);
      const leader = c.leader()!.id;
      c.addNode(4);
      for (let t = 0; t < 2000; t++) c.at(t, 'load', () => c.propose(leader, payload(`w${t}`)));
      const results: string[] = [];
      c.proposeConfChange(leader, { transition: 'auto', changes: [{ type: 'add-learner', nodeId: 4 }], context: new Uint8Array(0) }, (first) => {
        results.push(first ?? 'ok');
        // A client that sends its next change the moment it hears the first applied.
        c.at(0, 'second', () =>
          c.proposeConfChange(leader, { transition: 'auto', changes: [{ type: 'remove', nodeId: 4 }], context: new Uint8Array(0) }, (second) =>
            results.push(second ?? 'ok'),
          ),
        );
      });
      c.runFor(3000);
      expect(results, `seed ${seed}`).toEqual(['ok', 'ok']);
    }
  });

  it('stops cleanly after its storage failed', () => {
    const tasks: Array<() => void> = [];
    const log = MemoryLogStorage.bootstrapped([1]);
    let saves = 0;
    const storage: RuntimeStorage = {
      shard: () => log,
      save: (updates, _options, done) => {
        for (const update of updates) applyUpdate(log, update);
        const fail = ++saves > 3;
        tasks.push(() => done(fail ? new Error('disk failed') : undefined));
      },
    };
    let fatal: Error | undefined;
    const runtime = new NodeRuntime({
      memberId: 1,
      storage,
      transport: { send: () => undefined },
      clock: { now: () => 0 },
      scheduler: { soon: (task) => void tasks.push(task) },
      random: new SeededPrng(1),
      raft: { electionTicks: 10, heartbeatTicks: 1 },
      tickMs: 100,
      snapshotCount: 0,
      snapshotCatchUpEntries: 0,
      requestTimeoutMs: 5000,
      stateMachine: () => new ShardStateMachine({ engines: [new RecordEngine()] }),
      firstRequestId: 1,
      listener: { fatal: (error) => (fatal = error) },
    });
    runtime.addShard(1);
    const outcomes = new Outcomes();
    for (let turn = 0; turn < 200 && fatal === undefined; turn++) {
      runtime.tick();
      if (turn > 20) {
        const heard = outcomes.callback();
        runtime.propose(1, recordCommand(payload(`x${turn}`)), {}, (error) => heard(error?.code));
      }
      for (let i = 0; i < 50 && tasks.length > 0; i++) tasks.shift()!();
    }
    expect(fatal?.message).toBe('disk failed');
    expect(runtime.cyclesInFlight).toBe(0);
    let stopped = false;
    runtime.stop(() => (stopped = true));
    for (let i = 0; i < 100 && tasks.length > 0; i++) tasks.shift()!();
    expect(stopped).toBe(true);
    expect(runtime.pendingTotals().writes).toBe(0);
    expect(outcomes.heard.size).toBe(outcomes.issued);
  });
});

describe('the order of what a commit releases', () => {
  it("a leader answers the writes a commit releases before it tells the followers of that commit; they still learn it", () => {
    const c = cluster(21);
    const leader = c.leader()!.id;
    const runtime = c.nodes.get(leader)!.runtime!;
    const followers = [1, 2, 3].filter((id) => id !== leader);
    for (let round = 0; round < 5; round++) {
      const outcomes = new Outcomes();
      const commitBefore = runtime.status(SHARD).commit;
      // Appends without entries that carry a commit past the write, in the order they are sent.
      const news: Array<{ to: number; answered: boolean }> = [];
      c.dropWhere = (shard, m) => {
        if (shard === SHARD && m.from === leader && m.type === 'MsgApp' && m.entries.length === 0 && m.commit > commitBefore) {
          news.push({ to: m.to, answered: outcomes.heard.size === 1 });
        }
        return false;
      };
      c.propose(leader, payload(`w${round}`), outcomes.callback());
      c.runFor(500);
      expect(outcomes.heard.get(0)).toBe('ok');
      expect(news.length).toBeGreaterThanOrEqual(followers.length);
      expect(news.filter((n) => !n.answered)).toEqual([]);
      // The followers learned the commit all the same.
      for (const id of followers) expect(c.nodes.get(id)!.runtime!.status(SHARD).commit).toBeGreaterThan(commitBefore);
    }
    c.dropWhere = undefined;
    expect(pending(c, leader)).toEqual(idle);
  });
});

describe('commit news held back past a stop', () => {
  it('is never sent by a runtime stopped before its turn came', () => {
    const c = cluster(23);
    const leader = c.leader()!.id;
    const runtime = c.nodes.get(leader)!.runtime!;
    const commitBefore = runtime.status(SHARD).commit;
    let stopped = false;
    const sentAfterStop: Message[] = [];
    c.dropWhere = (_shard, m) => {
      if (stopped && m.from === leader) sentAfterStop.push(m);
      return false;
    };
    const outcomes = new Outcomes();
    c.propose(leader, payload('last'), outcomes.callback());
    // The answer comes in the turn that applies the commit; the news to the followers waits.
    expect(c.runUntilCondition(() => outcomes.heard.size === 1, 1000)).toBe(true);
    expect(runtime.status(SHARD).commit).toBeGreaterThan(commitBefore);
    runtime.stop();
    stopped = true;
    c.runFor(50);
    expect(sentAfterStop).toEqual([]);
  });
});

describe('which commit news may wait for the answers', () => {
  const self = 7;
  const entry = (proposer: number, type: 'normal' | 'conf-change' = 'normal'): Entry => ({
    term: 2,
    index: 10,
    type,
    data: encodeEnvelope({ engine: 1, version: 1, kind: 1, payload: new Uint8Array(0), timestampMs: 0, proposer, requestId: 1 }),
  });
  const news = (to: number): Message => ({ ...makeMessage({ type: 'MsgApp', to, from: self }), entries: [] });

  it('appends without entries that commit only what this member (or no one) proposed', () => {
    expect(onlyCommitNews({ messages: [news(1), news(2)], committedEntries: [entry(self), entry(self)] }, self)).toBe(true);
    // A leader's empty entry of its term carries no proposer.
    expect(onlyCommitNews({ messages: [news(1)], committedEntries: [{ term: 2, index: 9, type: 'normal', data: new Uint8Array(0) }] }, self)).toBe(true);
  });

  it('never news another member waits for, appends with entries, heartbeats, or a ready with nothing to answer', () => {
    // Member 2 forwarded a write: it answers its client once it hears of the commit.
    expect(onlyCommitNews({ messages: [news(1), news(2)], committedEntries: [entry(self), entry(2)] }, self)).toBe(false);
    expect(onlyCommitNews({ messages: [news(1)], committedEntries: [entry(self, 'conf-change')] }, self)).toBe(false);
    expect(onlyCommitNews({ messages: [{ ...news(1), entries: [entry(self)] }], committedEntries: [entry(self)] }, self)).toBe(false);
    expect(onlyCommitNews({ messages: [makeMessage({ type: 'MsgHeartbeat', to: 1, from: self })], committedEntries: [entry(self)] }, self)).toBe(false);
    expect(onlyCommitNews({ messages: [news(1)], committedEntries: [] }, self)).toBe(false);
    // Raft handed over only part of what the news commits: what follows may be a follower's.
    expect(onlyCommitNews({ messages: [{ ...news(1), commit: 11 }], committedEntries: [entry(self)] }, self)).toBe(false);
    expect(onlyCommitNews({ messages: [{ ...news(1), commit: 10 }], committedEntries: [entry(self)] }, self)).toBe(true);
    expect(onlyCommitNews({ messages: [], committedEntries: [entry(self)] }, self)).toBe(false);
  });
});

describe("a proposer's own decoding of its command", () => {
  const decodedApplied = (c: SimCluster, id: number): number => c.nodes.get(id)!.machine(c.shards[0]!)!.engine<RecordEngine>(RECORD_ENGINE_ID).decodedApplied;

  it('reaches its own apply only, at a leader and at a follower that forwarded it; every member applies the same', () => {
    const c = cluster(23);
    const leader = c.leader()!.id;
    const follower = [1, 2, 3].find((id) => id !== leader)!;
    const third = [1, 2, 3].find((id) => id !== leader && id !== follower)!;
    const outcomes = new Outcomes();
    for (let i = 0; i < 5; i++) c.submit(leader, c.shards[0]!, { ...recordCommand(payload(`at leader ${i}`)), decoded: i }, outcomes.callback());
    for (let i = 0; i < 3; i++) c.submit(follower, c.shards[0]!, { ...recordCommand(payload(`at follower ${i}`)), decoded: i }, outcomes.callback());
    c.propose(third, payload('without'), outcomes.callback());
    c.runFor(2000);
    expect(outcomes.codes()).toEqual(['ok']);
    expect(outcomes.heard.size).toBe(9);
    expect([decodedApplied(c, leader), decodedApplied(c, follower), decodedApplied(c, third)]).toEqual([5, 3, 0]);
    const states = [1, 2, 3].map((id) => c.nodes.get(id)!.machine(c.shards[0]!)!.hash());
    expect(new Set(states).size).toBe(1);
  });

  it('is not used for an entry that carries its request id with a command changed on the way', () => {
    const c = cluster(29);
    const leader = c.leader()!.id;
    const follower = [1, 2, 3].find((id) => id !== leader)!;
    // The follower's forwarded proposal arrives at the leader changed: the leader appends the
    // changed command; the follower's apply of it must not take its own decoding for it.
    const original = c.dropWhere;
    c.dropWhere = (_shard, m) => {
      if (m.type === 'MsgProp') {
        // A changed copy (the proposer's record of its command shares the bytes it sent).
        const changed = m.entries.map((entry) => ({ ...entry, data: entry.data.map((byte, i) => (i === entry.data.length - 1 ? byte ^ 1 : byte)) }));
        (m as { entries: Entry[] }).entries = changed;
      }
      return original?.(_shard, m) ?? false;
    };
    const outcomes = new Outcomes();
    c.submit(follower, c.shards[0]!, { ...recordCommand(payload('changed on the way')), decoded: 'mine' }, outcomes.callback());
    c.runFor(500);
    c.dropWhere = original;
    expect(decodedApplied(c, follower)).toBe(0);
    expect(c.nodes.get(follower)!.machine(c.shards[0]!)!.engine<RecordEngine>(RECORD_ENGINE_ID).count).toBeGreaterThan(0);
  });
});
