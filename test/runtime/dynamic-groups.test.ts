/**
 * Raft groups created and removed while nodes run (as a node does when the meta shard mounts or
 * drops a store), on the deterministic simulator with the real runtime: a group created on some
 * nodes elects a leader among them and takes writes; a restarted node hosts the groups its disk
 * holds and catches up; removing a group fails what is pending on it with `wrong-shard`, sends
 * nothing more for it, and leaves the other groups working; the safety checker watches every group.
 */
import { describe, expect, it } from 'vitest';
import { SIM_DEFAULTS, type SimCallback, SimCluster, type SimClusterOptions } from '../../jepsen-lite/sim/cluster.js';
import { RECORD_ENGINE_ID, RecordEngine, recordCommand } from '../../jepsen-lite/sim/record-engine.js';
import { MemoryLogStorage, type Message, SeededPrng, makeMessage } from '../../raft/index.js';
import { applyUpdate } from '../../jepsen-lite/sim/disk.js';
import type { ShardUpdate } from '../../storage/index.js';
import { NodeRuntime, type RuntimeErrorCode, type RuntimeListener, ShardStateMachine } from '../../src/runtime/index.js';

const NEW = 7;
const text = (s: string) => new TextEncoder().encode(s);

function cluster(seed: number, options: Partial<SimClusterOptions> = {}): SimCluster {
  const c = new SimCluster({ ...SIM_DEFAULTS, seed, nodeIds: [1, 2, 3], requestTimeoutMs: 3000, ...options });
  expect(c.runUntilCondition(() => c.leader() !== undefined, 10_000)).toBe(true);
  return c;
}

/** Outcomes of requests; each must be heard exactly once. */
class Outcomes {
  readonly heard: Array<RuntimeErrorCode | 'ok' | undefined> = [];
  callback(): SimCallback {
    const id = this.heard.push(undefined) - 1;
    return (error) => {
      expect(this.heard[id], `request ${id} answered twice`).toBeUndefined();
      this.heard[id] = error ?? 'ok';
    };
  }
  all(): Array<RuntimeErrorCode | 'ok' | undefined> {
    return [...this.heard];
  }
}

function write(c: SimCluster, node: number, shard: number, payload: string, outcomes: Outcomes): void {
  c.submit(node, shard, recordCommand(text(payload)), outcomes.callback());
}

function count(c: SimCluster, node: number, shard: number): number | undefined {
  return c.nodes.get(node)!.machine(shard)?.engine<RecordEngine>(RECORD_ENGINE_ID).count;
}

/** Every hosting node applied the same state of `shard` (same applied index and hash). */
function converged(c: SimCluster, shard: number, nodes: readonly number[]): boolean {
  const states = nodes.map((id) => {
    const m = c.nodes.get(id)!.machine(shard);
    return m === undefined ? 'absent' : `${m.appliedIndex}/${m.hash()}`;
  });
  return !states.includes('absent') && new Set(states).size === 1;
}

function noFatal(c: SimCluster): void {
  for (const node of c.nodes.values()) expect(node.runtime?.fatalError).toBeUndefined();
}

describe('a group created at runtime', () => {
  it('on all three nodes: elects a leader, takes writes, and a restarted node re-adds it from its disk and catches up', () => {
    const c = cluster(71, { snapshotEveryEntries: 20, snapshotKeepEntries: 5 });
    expect(c.createShard(NEW, [1, 2, 3])).toEqual([1, 2, 3]);
    expect(c.runUntilCondition(() => c.leader(NEW) !== undefined, 10_000)).toBe(true);
    expect(c.hosts(NEW)).toEqual([1, 2, 3]);
    const outcomes = new Outcomes();
    for (let i = 0; i < 10; i++) write(c, 1 + (i % 3), NEW, `w${i}`, outcomes);
    c.runFor(1000);
    expect(outcomes.all()).toEqual(Array(10).fill('ok'));
    const leader = c.leader(NEW)!.id;
    const follower = [1, 2, 3].find((id) => id !== leader)!;
    c.crash(follower);
    // Enough writes meanwhile that the leader snapshots and compacts past the follower.
    for (let i = 10; i < 60; i++) write(c, leader, NEW, `w${i}`, outcomes);
    c.runFor(1000);
    expect(c.nodes.get(follower)!.disk.shards()).toContain(NEW);
    c.restart(follower);
    expect(c.hosts(NEW)).toEqual([1, 2, 3]);
    expect(c.runUntilCondition(() => converged(c, NEW, [1, 2, 3]), 10_000)).toBe(true);
    expect(count(c, follower, NEW)).toBe(60);
    expect(outcomes.all()).toEqual(Array(60).fill('ok'));
    // The configured group is untouched.
    const other = new Outcomes();
    write(c, follower, 1, 'still', other);
    c.runFor(1000);
    expect(other.all()).toEqual(['ok']);
    noFatal(c);
  });

  it('on two of three nodes: works with those two, the third refuses it, and it needs both for a quorum', () => {
    const c = cluster(72);
    c.createShard(8, [1, 3]);
    expect(c.runUntilCondition(() => c.leader(8) !== undefined, 10_000)).toBe(true);
    expect([1, 3]).toContain(c.leader(8)!.id);
    expect(c.hosts(8)).toEqual([1, 3]);
    const outcomes = new Outcomes();
    write(c, 1, 8, 'a', outcomes);
    write(c, 3, 8, 'b', outcomes);
    write(c, 2, 8, 'c', outcomes);
    c.runFor(1000);
    expect(outcomes.all()).toEqual(['ok', 'ok', 'wrong-shard']);
    expect(c.nodes.get(2)!.disk.shards()).not.toContain(8);
    // One of two down: no quorum, no write; back up: it works again.
    c.crash(3);
    c.runFor(3000);
    const stalled = new Outcomes();
    write(c, 1, 8, 'd', stalled);
    c.runFor(2000);
    expect(stalled.all()[0]).not.toBe('ok');
    c.restart(3);
    expect(c.runUntilCondition(() => c.leader(8) !== undefined, 10_000)).toBe(true);
    write(c, 3, 8, 'e', stalled);
    expect(c.runUntilCondition(() => stalled.all()[1] !== undefined && converged(c, 8, [1, 3]), 10_000)).toBe(true);
    expect(stalled.all()[1]).toBe('ok');
    // 'a', 'b', 'e', and 'd' only if it was not refused outright.
    expect(count(c, 1, 8)).toBe(stalled.all()[0] === 'no-leader' ? 3 : count(c, 1, 8));
    expect(count(c, 1, 8)).toBeGreaterThanOrEqual(3);
    noFatal(c);
  });

  it('removed before its bootstrap is durable: it never starts, and is gone from the disks', () => {
    const c = cluster(78);
    c.createShard(NEW, [1, 2, 3]);
    c.removeShard(NEW, [1, 2, 3]);
    c.runFor(3000);
    expect(c.hosts(NEW)).toEqual([]);
    for (const node of c.nodes.values()) expect(node.disk.shards()).toEqual([1]);
    noFatal(c);
  });

  it('a crash before the bootstrap is durable leaves the node without the group', () => {
    const c = cluster(73);
    c.createShard(NEW, [1, 2, 3]);
    c.crash(2);
    c.restart(2);
    expect(c.runUntilCondition(() => c.leader(NEW) !== undefined, 10_000)).toBe(true);
    expect(c.hosts(NEW)).toEqual([1, 3]);
    noFatal(c);
  });
});

describe('removing a group', () => {
  it('fails every pending request of it with wrong-shard, sends nothing more for it, and the other groups keep working', () => {
    const c = cluster(74);
    c.createShard(NEW, [1, 2, 3]);
    expect(c.runUntilCondition(() => c.leader(NEW) !== undefined, 10_000)).toBe(true);
    c.runFor(500);
    const leader = c.leader(NEW)!.id;
    const [f1, f2] = [1, 2, 3].filter((id) => id !== leader) as [number, number];
    // Nothing of the group crosses the wire: its writes, reads and conf changes stay pending.
    const sentAfter = new Map<number, number>();
    let removedAt = Number.POSITIVE_INFINITY;
    c.dropWhere = (shard: number, m: Message) => {
      if (shard === NEW && c.now >= removedAt) sentAfter.set(m.from, (sentAfter.get(m.from) ?? 0) + 1);
      return shard === NEW;
    };
    const outcomes = new Outcomes();
    for (let i = 0; i < 5; i++) write(c, leader, NEW, `l${i}`, outcomes); // appended by the leader
    for (let i = 0; i < 5; i++) write(c, f1, NEW, `f${i}`, outcomes); // forwarded
    for (const id of [leader, f1]) {
      const heard = outcomes.callback();
      c.readIndex(id, () => heard(undefined), (code) => heard(code), NEW);
    }
    const conf = outcomes.callback();
    c.nodes.get(leader)!.runtime!.proposeConfChange(NEW, { transition: 'auto', changes: [{ type: 'add-learner', nodeId: 4 }], context: new Uint8Array(0) }, {}, (error) => conf(error?.code));
    c.runFor(300);
    // f2 restarted knows no leader of the group: its write is parked.
    c.crash(f2);
    c.restart(f2);
    expect(c.nodes.get(f2)!.runtime!.hasShard(NEW)).toBe(true);
    write(c, f2, NEW, 'parked', outcomes);
    c.runFor(50);
    expect(outcomes.all().every((o) => o === undefined)).toBe(true);
    expect(c.nodes.get(f2)!.runtime!.status(NEW).pending.writes).toBe(1);
    removedAt = c.now;
    c.removeShard(NEW, [1, 2, 3]);
    // Every request heard at once, exactly once.
    expect(outcomes.all()).toEqual(Array(14).fill('wrong-shard'));
    expect(c.hosts(NEW)).toEqual([]);
    // Messages of the group still on the wire (and any later) are ignored.
    c.dropWhere = (shard: number, m: Message) => {
      if (shard === NEW) sentAfter.set(m.from, (sentAfter.get(m.from) ?? 0) + 1);
      return false;
    };
    const after = new Outcomes();
    write(c, leader, NEW, 'late', after);
    for (let i = 0; i < 5; i++) write(c, 1 + (i % 3), 1, `d${i}`, after);
    c.runFor(3000);
    expect(after.all()).toEqual(['wrong-shard', 'ok', 'ok', 'ok', 'ok', 'ok']);
    expect([...sentAfter.entries()]).toEqual([]);
    for (const node of c.nodes.values()) expect(node.disk.shards()).not.toContain(NEW);
    // A restart does not bring it back.
    c.crash(leader);
    c.restart(leader);
    expect(c.hosts(NEW)).toEqual([]);
    noFatal(c);
  });

  it('from inside an apply of another group, while that cycle holds its Ready', () => {
    let c: SimCluster | undefined;
    const removedIn: number[] = [];
    const removedAt = new Map<number, number>();
    const late: string[] = [];
    c = cluster(75, {
      observer: {
        applied: (node, shard, _outcome, entry) => {
          // What the meta shard will do: an applied command drops a store's group.
          if (shard === 1 && new TextDecoder().decode(entry.data).includes('drop-7') && c!.nodes.get(node.id)!.runtime!.hasShard(NEW)) {
            removedIn.push(c!.nodes.get(node.id)!.runtime!.cyclesInFlight);
            removedAt.set(node.id, c!.now);
            c!.removeShard(NEW, [node.id]);
          }
        },
      },
    });
    c.dropWhere = (shard, m) => {
      if (shard === NEW && removedAt.has(m.from)) late.push(`${m.from}->${m.to} ${m.type}`);
      return false;
    };
    c.createShard(NEW, [1, 2, 3]);
    expect(c.runUntilCondition(() => c!.leader(NEW) !== undefined, 10_000)).toBe(true);
    const outcomes = new Outcomes();
    // Shard 7 busy in the same cycles as the command that removes it.
    const leader1 = c.leader(1)!.id;
    const busy = (): void => {
      for (let i = 0; i < 3; i++) write(c!, 1 + (i % 3), NEW, `busy${i}`, outcomes);
    };
    busy();
    c.runFor(2);
    busy();
    c.submit(leader1, 1, recordCommand(text('drop-7')), outcomes.callback());
    busy();
    c.runFor(3000);
    expect(c.hosts(NEW)).toEqual([]);
    expect(removedIn.length).toBe(3);
    // Nothing of the group left a node after it removed the group, though its cycles held Readies.
    expect(late).toEqual([]);
    for (const node of c.nodes.values()) expect(node.disk.shards()).not.toContain(NEW);
    const heard = outcomes.all();
    expect(heard.every((o) => o === 'ok' || o === 'wrong-shard')).toBe(true);
    expect(heard.includes('wrong-shard')).toBe(true);
    const after = new Outcomes();
    write(c, 2, 1, 'after', after);
    c.runFor(1000);
    expect(after.all()).toEqual(['ok']);
    noFatal(c);
  });

  it('from a leader-change listener of another group, between the Readies of one cycle', () => {
    let c: SimCluster | undefined;
    const removedAt = new Map<number, number>();
    const late: string[] = [];
    c = cluster(77, {
      observer: {
        leaderChanged: (node, shard, leader) => {
          if (shard !== 1 || leader !== node.id || c!.leader(NEW) === undefined || !node.runtime!.hasShard(NEW)) return;
          removedAt.set(node.id, c!.now);
          c!.removeShard(NEW, [node.id]);
        },
      },
    });
    c.dropWhere = (shard, m) => {
      if (shard === NEW && removedAt.has(m.from)) late.push(`${m.from}->${m.to} ${m.type}`);
      return false;
    };
    c.createShard(NEW, [1, 2, 3]);
    expect(c.runUntilCondition(() => c!.leader(NEW) !== undefined, 10_000)).toBe(true);
    const outcomes = new Outcomes();
    const old = c.leader(1)!.id;
    // Shard 7 busy everywhere while shard 1 elects a new leader.
    for (let round = 0; round < 40; round++) c.at(round * 20, 'busy', () => {
      for (const id of c!.hosts(NEW)) write(c!, id, NEW, `b${round}`, outcomes);
    });
    c.at(30, 'crash', () => c!.crash(old));
    expect(c.runUntilCondition(() => removedAt.size > 0, 10_000)).toBe(true);
    c.runFor(2000);
    expect(late).toEqual([]);
    for (const id of removedAt.keys()) expect(c.nodes.get(id)!.disk.shards()).not.toContain(NEW);
    noFatal(c);
  });

  it('a removed id may be added again from its storage once no cycle holds the old group', () => {
    const c = cluster(76);
    c.createShard(NEW, [1, 2, 3]);
    expect(c.runUntilCondition(() => c.leader(NEW) !== undefined, 10_000)).toBe(true);
    const node = c.nodes.get(1)!;
    const runtime = node.runtime!;
    runtime.removeShard(NEW);
    expect(c.runUntilCondition(() => runtime.cyclesInFlight === 0, 1000)).toBe(true);
    runtime.addShard(NEW);
    const outcomes = new Outcomes();
    write(c, 2, NEW, 'again', outcomes);
    expect(c.runUntilCondition(() => outcomes.all()[0] !== undefined && converged(c, NEW, [1, 2, 3]), 10_000)).toBe(true);
    expect(outcomes.all()).toEqual(['ok']);
    noFatal(c);
  });
});

describe('groups come and go under crashes (seeded)', () => {
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    it(`seed ${seed}: the safety checker stays green and every group converges`, () => {
      const c = cluster(700 + seed, { snapshotEveryEntries: 15, snapshotKeepEntries: 3 });
      const prng = new SeededPrng(seed);
      const live = new Map<number, number[]>();
      let nextShard = 10;
      const outcomes = new Outcomes();
      live.set(nextShard, c.createShard(nextShard++, [1, 2, 3]));
      for (let step = 0; step < 100; step++) {
        const roll = prng.nextInt(10);
        const up = c.upNodes().map((n) => n.id);
        if (roll === 0 && live.size < 4) {
          const nodes = [1, 2, 3].filter(() => prng.nextInt(4) !== 0);
          if (nodes.length > 0) live.set(nextShard, c.createShard(nextShard++, nodes));
        } else if (roll === 1 && live.size > 0) {
          const [shard, nodes] = [...live.entries()][prng.nextInt(live.size)]!;
          c.removeShard(shard, nodes);
          live.delete(shard);
        } else if (roll === 2 && up.length === 3) {
          c.crash(1 + prng.nextInt(3));
        } else if (roll === 3) {
          for (const id of [1, 2, 3]) if (c.nodes.get(id)!.status === 'down') c.restart(id);
        } else {
          for (const [shard, nodes] of live) if (nodes.length > 0) write(c, nodes[prng.nextInt(nodes.length)]!, shard, `s${step}`, outcomes);
        }
        c.runFor(50 + prng.nextInt(400));
      }
      for (const id of [1, 2, 3]) if (c.nodes.get(id)!.status === 'down') c.restart(id);
      c.runFor(5000);
      for (const [shard, nodes] of live) {
        // A node that crashed before its bootstrap was durable never got the group.
        const hosting = nodes.filter((id) => c.hosts(shard).includes(id));
        if (hosting.length * 2 <= nodes.length) continue;
        expect({ shard, ok: c.runUntilCondition(() => converged(c, shard, hosting), 20_000) }).toEqual({ shard, ok: true });
      }
      for (const node of c.nodes.values()) for (const shard of node.disk.shards()) expect(shard === 1 || live.has(shard)).toBe(true);
      expect(outcomes.all().filter((o) => o === 'ok').length).toBeGreaterThan(10);
      // The checker watched the groups created at runtime too.
      expect(c.checkers.size).toBe(nextShard - 10 + 1);
      noFatal(c);
    });
  }
});

/**
 * One runtime (member 2) hosting groups 1 and 7, both bootstrapped with voters 1 and 2; member 1
 * is played by the test (its appends injected), saves complete only when the test says so.
 */
function harness(listener: (runtime: () => NodeRuntime) => RuntimeListener) {
  const tasks: Array<() => void> = [];
  const logs = new Map([1, NEW].map((shard) => [shard, MemoryLogStorage.bootstrapped([1, 2])]));
  const saves: Array<{ shards: number[]; finish: () => void }> = [];
  const sent: Array<{ shard: number; type: string; removed: boolean }> = [];
  let runtime: NodeRuntime | undefined;
  runtime = new NodeRuntime({
    memberId: 2,
    storage: {
      shard: (id) => logs.get(id)!,
      save: (updates: readonly ShardUpdate[], _options, done) => {
        for (const update of updates) applyUpdate(logs.get(update.shard)!, update);
        saves.push({ shards: updates.map((u) => u.shard), finish: () => tasks.push(() => done()) });
      },
    },
    transport: { send: (_to, shard, messages) => messages.forEach((m) => sent.push({ shard, type: m.type, removed: !runtime!.hasShard(shard) })) },
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
    listener: listener(() => runtime!),
  });
  runtime.addShard(1);
  runtime.addShard(NEW);
  const run = (): void => {
    for (let i = 0; i < 100 && tasks.length > 0; i++) tasks.shift()!();
  };
  // Member 1, leader in term 2, appends one entry to both groups.
  const append = (): void =>
    runtime!.receive(
      [1, NEW].map((shard) => ({
        shard,
        message: makeMessage({ type: 'MsgApp', from: 1, to: 2, term: 2, logTerm: 1, index: 2, commit: 2, entries: [{ index: 3, term: 2, type: 'normal', data: new Uint8Array(0) }] }),
      })),
    );
  return { runtime: runtime!, saves, sent, run, append };
}

describe('a cycle in flight when its group is removed', () => {
  it('neither acknowledges, advances nor applies for the removed group once its save is done', () => {
    const h = harness(() => ({}));
    h.append();
    h.run();
    // The cycle took both groups' Readies and waits for its save.
    expect(h.saves.map((s) => s.shards)).toEqual([[1, NEW]]);
    expect(h.runtime.cyclesInFlight).toBe(1);
    h.runtime.removeShard(NEW);
    h.saves[0]!.finish();
    h.run();
    expect(h.runtime.cyclesInFlight).toBe(0);
    // Group 1 acknowledged its append; group 7 sent nothing once removed.
    expect(h.sent.filter((m) => m.shard === 1 && m.type === 'MsgAppResp').length).toBe(1);
    expect(h.sent.filter((m) => m.removed)).toEqual([]);
    expect(h.runtime.fatalError).toBeUndefined();
  });

  it('removed by a listener between two groups\' Readies of one cycle: nothing of it is sent or saved', () => {
    const appliedAfter: number[] = [];
    const h = harness((runtime) => ({
      leaderChanged: (shard, leader) => {
        if (shard === 1 && leader === 1 && runtime().hasShard(NEW)) runtime().removeShard(NEW);
      },
      entryApplied: (shard, entry) => {
        if (!runtime().hasShard(shard)) appliedAfter.push(entry.index);
      },
    }));
    // The first cycle: both groups also apply their bootstrap entries (committed).
    h.append();
    h.run();
    expect(h.runtime.hasShard(NEW)).toBe(false);
    expect(appliedAfter).toEqual([]);
    expect(h.saves.map((s) => s.shards)).toEqual([[1]]);
    for (const save of h.saves) save.finish();
    h.run();
    expect(h.sent.filter((m) => m.shard === NEW)).toEqual([]);
    expect(h.sent.filter((m) => m.shard === 1 && m.type === 'MsgAppResp').length).toBe(1);
    expect(h.runtime.fatalError).toBeUndefined();
  });

  it('removed by a listener of its own apply: nothing more is applied to it', () => {
    const applied: Array<[number, number]> = [];
    const h = harness((runtime) => ({
      entryApplied: (shard, entry) => {
        applied.push([shard, entry.index]);
        if (shard === NEW && runtime().hasShard(NEW)) runtime().removeShard(NEW);
      },
    }));
    h.runtime.tick();
    h.run();
    // Both bootstrap entries of group 1; only the first of group 7.
    expect(applied).toEqual([
      [1, 1],
      [1, 2],
      [NEW, 1],
    ]);
    expect(h.runtime.fatalError).toBeUndefined();
  });
});
