/**
 * Quiescence of idle groups on the deterministic simulator (real runtimes, simulated time): an
 * idle cluster quiesces every group on every node and then sends only liveness heartbeats, one
 * per pair of nodes per tick whatever the number of groups; a request wakes a group and it
 * quiesces again; a leader's node that dies or is cut off is replaced in every group it led
 * within the silence limit plus one election timeout, and a leader cut off steps down; with a node down the others' groups
 * quiesce without it, and it catches up when it is back, as it does after a quick restart; a member added later is caught up; a quiesced leader that lost its quorum
 * serves no linearizable read; two nodes cut off from each other alone take over none of each other's groups;
 * a learner that was down catches up once back; a leader that hears no one loses its groups;
 * lease-based reads and a member that cannot quiesce (an older build) turn quiescence off. The safety checkers run
 * throughout.
 */
import { describe, expect, it } from 'vitest';
import { SIM_DEFAULTS, SimCluster } from '../../jepsen-lite/sim/cluster.js';
import { recordCommand } from '../../jepsen-lite/sim/record-engine.js';
import { QUIESCE_FEATURE_VERSION, RUNTIME_FEATURES_ID, runtimeLimits } from '../../src/runtime/index.js';

const nodeIds = [1, 2, 3];
const tickMs = SIM_DEFAULTS.tickIntervalMs;
const electionMs = (SIM_DEFAULTS.raft.electionTicks ?? 10) * tickMs;

function cluster(seed: number, shards: number, quiesce?: boolean, readOnlyOption?: 'lease-based', tickAdvance?: boolean): SimCluster {
  const ids = Array.from({ length: shards }, (_, i) => i + 1);
  const c = new SimCluster({ ...SIM_DEFAULTS, raft: { ...SIM_DEFAULTS.raft, readOnlyOption }, seed, nodeIds, shards: ids, quiesce, tickAdvance });
  expect(c.runUntilCondition(() => ids.every((shard) => c.leader(shard) !== undefined), 20_000)).toBe(true);
  return c;
}

function allQuiesced(c: SimCluster): boolean {
  for (const node of c.upNodes()) for (const shard of c.shards) if (!node.runtime!.isQuiesced(shard)) return false;
  return true;
}

/** Messages sent over `ms` of simulated time. */
function messagesOver(c: SimCluster, ms: number): number {
  const before = c.stats.messagesSent;
  c.runFor(ms);
  return c.stats.messagesSent - before;
}

function termsAndLeaders(c: SimCluster): string {
  return c.shards.map((shard) => `${shard}:${c.leader(shard)?.id}@${c.leader(shard)?.runtime!.term(shard)}`).join(' ');
}

function write(c: SimCluster, at: number, shard: number, text: string): () => string | undefined {
  let outcome: string | undefined;
  c.submit(at, shard, recordCommand(new TextEncoder().encode(text)), (error) => (outcome = error ?? 'ok'));
  return () => outcome;
}

describe('quiescence', () => {
  it('an idle cluster quiesces every group; then one liveness heartbeat per pair of nodes per tick, whatever the groups', () => {
    const perTick: number[] = [];
    for (const shards of [2, 24]) {
      const c = cluster(11, shards);
      expect(c.runUntilCondition(() => allQuiesced(c), 5_000)).toBe(true);
      const before = termsAndLeaders(c);
      const sent = messagesOver(c, 10_000);
      // Nothing moved: no election, no term change, every group still quiesced.
      expect(termsAndLeaders(c)).toBe(before);
      expect(allQuiesced(c)).toBe(true);
      perTick.push(sent / (10_000 / tickMs));
    }
    // A heartbeat and its answer per (leading node, other node) pair at most.
    for (const n of perTick) expect(n).toBeLessThanOrEqual(2 * nodeIds.length * (nodeIds.length - 1) + 1);
    // Without quiescence 24 groups send 2 heartbeats and 2 answers each per tick (96).
    const awake = cluster(11, 24, false);
    awake.runFor(2_000);
    expect(messagesOver(awake, 10_000) / (10_000 / tickMs)).toBeGreaterThanOrEqual(24 * 4);
  });

  it('a write wakes its group, is applied everywhere, and the group quiesces again', () => {
    const c = cluster(12, 4);
    expect(c.runUntilCondition(() => allQuiesced(c), 5_000)).toBe(true);
    const leader = c.leader(3)!.id;
    const follower = nodeIds.find((id) => id !== leader)!;
    const outcome = write(c, follower, 3, 'through a follower');
    expect(c.runUntilCondition(() => outcome() !== undefined, 1_000)).toBe(true);
    expect(outcome()).toBe('ok');
    const applied = c.upNodes().map((node) => node.runtime!.machine(3).appliedIndex);
    expect(c.runUntilCondition(() => allQuiesced(c), 2_000)).toBe(true);
    // Every replica has applied the write (the quiesce heartbeat carries the commit index).
    const after = c.upNodes().map((node) => node.runtime!.machine(3).appliedIndex);
    expect(new Set(after).size).toBe(1);
    expect(after[0]).toBeGreaterThanOrEqual(Math.max(...applied));
    // Only that group woke: the others kept their leaders and terms.
    expect(c.upNodes().every((node) => node.runtime!.term(1) === c.leader(1)!.runtime!.term(1))).toBe(true);
  });

  it("the leader's node crashes: every group it led has a new leader within the silence limit and one election timeout more", () => {
    const c = cluster(13, 12);
    expect(c.runUntilCondition(() => allQuiesced(c), 5_000)).toBe(true);
    const victim = c.leader(1)!.id;
    const led = c.shards.filter((shard) => c.leader(shard)!.id === victim);
    c.crash(victim);
    const start = c.now;
    // An unquiesced follower campaigns 1–2 election timeouts after its leader's last heartbeat; a
    // quiesced one wakes after the silence limit with the ticks it missed counted (without them,
    // this seed took 2.76 s).
    const bound = (runtimeLimits.quiescedLeaderSilenceElections + 1) * electionMs + 5 * tickMs;
    expect(c.runUntilCondition(() => led.every((shard) => c.leader(shard) !== undefined && c.leader(shard)!.id !== victim), bound)).toBe(true);
    const took = c.now - start;
    expect(took).toBeLessThanOrEqual(bound);
    // Groups led elsewhere kept their leaders.
    for (const shard of c.shards) if (!led.includes(shard)) expect(c.leader(shard)!.id).not.toBe(victim);
    // Every group takes writes again.
    const outcomes = c.shards.map((shard) => write(c, c.leader(shard)!.id, shard, `after ${shard}`));
    expect(c.runUntilCondition(() => outcomes.every((o) => o() !== undefined), 2_000)).toBe(true);
    expect(outcomes.map((o) => o())).toEqual(c.shards.map(() => 'ok'));
  });

  it('with a node down the groups quiesce without it; back, it catches up and they quiesce again', () => {
    const c = cluster(17, 6);
    expect(c.runUntilCondition(() => allQuiesced(c), 5_000)).toBe(true);
    const down = nodeIds.find((id) => c.shards.every((shard) => c.leader(shard)!.id !== id)) ?? c.leader(1)!.id;
    c.crash(down);
    const outcomes = c.shards.map((shard) => {
      const result = { outcome: undefined as string | undefined };
      c.runUntilCondition(() => c.leader(shard) !== undefined && c.leader(shard)!.id !== down, 5_000);
      c.submit(c.leader(shard)!.id, shard, recordCommand(new TextEncoder().encode(`while ${down} is down`)), (error) => (result.outcome = error ?? 'ok'));
      return result;
    });
    expect(c.runUntilCondition(() => outcomes.every((o) => o.outcome !== undefined), 3_000)).toBe(true);
    expect(outcomes.map((o) => o.outcome)).toEqual(c.shards.map(() => 'ok'));
    // Once the down node's silence passes the limit, every group quiesces on the two left.
    expect(c.runUntilCondition(() => allQuiesced(c), 3_000)).toBe(true);
    const sent = messagesOver(c, 5_000);
    expect(sent / (5_000 / tickMs)).toBeLessThanOrEqual(2 * nodeIds.length * (nodeIds.length - 1) + 1);
    c.restart(down);
    const applied = (id: number): number[] => c.shards.map((shard) => c.nodes.get(id)!.runtime!.machine(shard).appliedIndex);
    const up = nodeIds.filter((id) => id !== down);
    // Its first message wakes the groups it replicates: within an election timeout it knows every
    // leader and holds what was written while it was down (before it would campaign).
    const caughtUp = (): boolean =>
      c.shards.every((shard) => c.nodes.get(down)!.runtime!.rawNode(shard).raft.lead === c.leader(shard)?.id) && applied(down).join() === applied(up[0]!).join();
    expect(c.runUntilCondition(caughtUp, electionMs)).toBe(true);
    expect(c.runUntilCondition(() => allQuiesced(c) && applied(up[1]!).join() === applied(up[0]!).join(), 5_000)).toBe(true);
  });

  it('a member added to a quiesced group is caught up before the group quiesces again', () => {
    const c = cluster(18, 1);
    expect(c.runUntilCondition(() => allQuiesced(c), 5_000)).toBe(true);
    const written = [write(c, c.leader(1)!.id, 1, 'before the add'), write(c, c.leader(1)!.id, 1, 'also before')];
    expect(c.runUntilCondition(() => written.every((o) => o() === 'ok') && allQuiesced(c), 5_000)).toBe(true);
    // etcd's runbook: the member is added first, and its node started later (here 3 s).
    let added: string | undefined;
    c.proposeConfChange(c.leader(1)!.id, { transition: 'auto', changes: [{ type: 'add-learner', nodeId: 4 }], context: new Uint8Array(0) }, (error) => (added = error ?? 'ok'));
    expect(c.runUntilCondition(() => added !== undefined, 2_000)).toBe(true);
    expect(added).toBe('ok');
    c.runFor(3_000);
    c.addNode(4);
    const leaderApplied = (): number => c.leader(1)!.runtime!.machine(1).appliedIndex;
    expect(c.runUntilCondition(() => c.nodes.get(4)!.runtime!.machine(1).appliedIndex === leaderApplied() && allQuiesced(c), 5_000)).toBe(true);
  });

  it('a node restarted within the silence limit knows every leader within a few ticks, its election clocks advanced at start (as the server does) or not', () => {
    for (const tickAdvance of [false, true]) {
      for (const seed of [24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35]) {
        const c = cluster(seed, 12, undefined, undefined, tickAdvance);
        expect(c.runUntilCondition(() => allQuiesced(c), 5_000)).toBe(true);
        const node = c.leader(1)!.id === 1 ? 2 : 1;
        const ledElsewhere = c.shards.filter((shard) => c.leader(shard)!.id !== node);
        c.crash(node);
        c.runFor(300);
        c.restart(node);
        // Its groups ask each member to wake once they hear from it (not during the advance,
        // which runs before any link is up: then they learned a leader only when they campaigned,
        // 1 to 11 ticks on); the quiesced leaders heartbeat it at their next tick. The groups it
        // led fail over, as tested above.
        const knows = (shard: number): boolean => c.nodes.get(node)!.runtime!.rawNode(shard).raft.lead === c.leader(shard)?.id;
        expect(c.runUntilCondition(() => ledElsewhere.every(knows), 4 * tickMs), `seed ${seed}, advance ${tickAdvance}`).toBe(true);
      }
    }
  });

  it("the leader's node restarts within the silence limit: the groups it led elect as soon as unquiesced followers would", () => {
    for (const seed of [13, 14, 15]) {
      const c = cluster(seed, 12, undefined, undefined, true);
      expect(c.runUntilCondition(() => allQuiesced(c), 5_000)).toBe(true);
      const victim = c.leader(1)!.id;
      const led = c.shards.filter((shard) => c.leader(shard)!.id === victim);
      const terms = new Map(led.map((shard) => [shard, c.leader(shard)!.runtime!.rawNode(shard).raft.term]));
      c.crash(victim);
      const start = c.now;
      c.runFor(electionMs * 0.7);
      c.restart(victim);
      // Its first messages (its campaign, its wake calls) wake its followers, which count the ticks
      // since its node went silent; without that they waited a whole timeout more from the
      // restart (2.1-2.6 s on these seeds). An unquiesced follower campaigns 1-2 timeouts after
      // its leader's last heartbeat. The restarted node may win again: a new term is the proof.
      const elected = (shard: number): boolean => {
        const leader = c.leader(shard);
        return leader !== undefined && leader.runtime!.rawNode(shard).raft.term > terms.get(shard)!;
      };
      expect(c.runUntilCondition(() => led.every(elected), 2 * electionMs + 2 * tickMs - (c.now - start))).toBe(true);
    }
  });


  it("the leader's node crashes and a follower is woken by a write before the silence limit: a new term as soon as unquiesced followers would elect", () => {
    for (const wakeAt of [0.5, 0.9]) {
      for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
        const c = cluster(seed, 1, undefined, undefined, true);
        expect(c.runUntilCondition(() => allQuiesced(c), 5_000)).toBe(true);
        const victim = c.leader(1)!.id;
        const term = c.leader(1)!.runtime!.rawNode(1).raft.term;
        const follower = nodeIds.find((id) => id !== victim)!;
        c.crash(victim);
        const start = c.now;
        c.runFor(electionMs * wakeAt);
        // The write wakes the follower's group; the other follower wakes at its campaign. Both
        // count the ticks since the dead leader's node was last heard (without that: 1.9-2.7 s).
        c.submit(follower, 1, recordCommand(new TextEncoder().encode('x')), () => undefined, 20_000);
        const elected = (): boolean => {
          const leader = c.leader(1);
          return leader !== undefined && leader.runtime!.rawNode(1).raft.term > term;
        };
        expect(c.runUntilCondition(elected, 2 * electionMs + 2 * tickMs - (c.now - start)), `seed ${seed}, woken at ${wakeAt} timeouts`).toBe(true);
      }
    }
  });

  it('a quiesced leader cut off from the others serves no linearizable read once they elected another', () => {
    const c = cluster(14, 3);
    expect(c.runUntilCondition(() => allQuiesced(c), 5_000)).toBe(true);
    const old = c.leader(1)!.id;
    const others = nodeIds.filter((id) => id !== old);
    c.network.partition([[old], others]);
    expect(c.runUntilCondition(() => others.some((id) => c.nodes.get(id)!.runtime!.rawNode(1).raft.role === 'leader'), 5_000)).toBe(true);
    const newLeader = others.find((id) => c.nodes.get(id)!.runtime!.rawNode(1).raft.role === 'leader')!;
    const outcome = write(c, newLeader, 1, 'on the majority side');
    expect(c.runUntilCondition(() => outcome() === 'ok', 2_000)).toBe(true);
    // The old leader still thinks it leads (it was quiesced); a read there must not be served.
    let read: string | undefined;
    c.readIndex(old, () => (read = 'served'), (error) => (read = error));
    c.runFor(3_000);
    expect(read).not.toBe('served');
    // It steps down while still cut off (check-quorum), as an unquiesced leader would, in every
    // group it led: it reports no leader rather than itself.
    expect(c.runUntilCondition(() => c.shards.every((shard) => c.nodes.get(old)!.runtime!.rawNode(shard).raft.role !== 'leader'), 3_000)).toBe(true);
    c.network.heal();
  });

  it('two nodes that cannot reach each other take over none of each other\'s groups: a follower woken by a campaign wakes its leader', () => {
    const c = cluster(16, 6);
    expect(c.runUntilCondition(() => allQuiesced(c), 5_000)).toBe(true);
    const [a, b] = [c.leader(1)!.id, nodeIds.find((id) => id !== c.leader(1)!.id)!];
    // Lost silently (no unreachable report wakes a leader), as through a proxy that drops packets.
    c.dropWhere = (_shard, m) => (m.from === a && m.to === b) || (m.from === b && m.to === a);
    const before = termsAndLeaders(c);
    c.runFor(15_000);
    // As without quiescence (pre-vote and check-quorum): the third node hears from every leader,
    // so it refuses the campaigns of the node cut off from a group's leader; nothing moves.
    expect(termsAndLeaders(c)).toBe(before);
  });

  it('a learner that was down while its groups took writes and quiesced catches up in every group once back', () => {
    const c = cluster(21, 6);
    c.addNode(4);
    let added = 0;
    for (const shard of c.shards) {
      c.leader(shard)!.runtime!.proposeConfChange(shard, { transition: 'auto', changes: [{ type: 'add-learner', nodeId: 4 }], context: new Uint8Array(0) }, {}, (error) => {
        expect(error).toBeUndefined();
        added++;
      });
    }
    expect(c.runUntilCondition(() => added === c.shards.length, 5_000)).toBe(true);
    const lagging = (): number[] => c.shards.filter((shard) => c.nodes.get(4)!.runtime!.machine(shard).appliedIndex < c.leader(shard)!.runtime!.machine(shard).appliedIndex);
    expect(c.runUntilCondition(() => lagging().length === 0, 5_000)).toBe(true);
    c.crash(4);
    for (const shard of c.shards) c.submit(c.leader(shard)!.id, shard, recordCommand(new TextEncoder().encode(`w${shard}`)), () => undefined);
    c.runFor(3_000);
    expect(nodeIds.every((id) => c.shards.every((shard) => c.nodes.get(id)!.runtime!.isQuiesced(shard)))).toBe(true);
    // A learner never campaigns: what wakes its groups is its node being heard from again.
    c.restart(4);
    expect(c.runUntilCondition(() => lagging().length === 0, electionMs)).toBe(true);
  });

  it('a leader whose node hears no one (a one-way fault) loses its groups to a node that does, and writes go on', () => {
    const c = cluster(23, 6);
    expect(c.runUntilCondition(() => allQuiesced(c), 5_000)).toBe(true);
    const deaf = c.leader(1)!.id;
    const led = c.shards.filter((shard) => c.leader(shard)!.id === deaf);
    // Everything to `deaf` is lost; what it sends arrives, so its followers never find it silent.
    c.dropWhere = (_shard, m) => m.to === deaf;
    const leaders = (shard: number): number[] => c.upNodes().filter((node) => node.runtime!.rawNode(shard).raft.role === 'leader').map((node) => node.id);
    // It wakes once it has heard from no quorum, and check-quorum steps it down.
    expect(c.runUntilCondition(() => led.every((shard) => !leaders(shard).includes(deaf) && leaders(shard).length === 1), 5 * electionMs)).toBe(true);
    const other = nodeIds.find((id) => id !== deaf)!;
    const outcomes = led.map((shard) => write(c, other, shard, `w${shard}`));
    expect(c.runUntilCondition(() => outcomes.every((o) => o() !== undefined), 5 * electionMs)).toBe(true);
    expect(outcomes.map((o) => o())).toEqual(led.map(() => 'ok'));
  });

  it('is off while some member cannot quiesce (an older build): quiesced groups wake when one joins', () => {
    let everyMemberQuiesces = true;
    const ids = [1, 2, 3, 4];
    const c = new SimCluster({
      ...SIM_DEFAULTS,
      seed: 19,
      nodeIds,
      shards: ids,
      membersSupport: (engine, version) => engine !== RUNTIME_FEATURES_ID || version > QUIESCE_FEATURE_VERSION || everyMemberQuiesces,
    });
    expect(c.runUntilCondition(() => ids.every((shard) => c.leader(shard) !== undefined) && allQuiesced(c), 10_000)).toBe(true);
    const before = termsAndLeaders(c);
    everyMemberQuiesces = false;
    c.runFor(tickMs);
    for (const node of c.upNodes()) for (const shard of ids) expect(node.runtime!.isQuiesced(shard)).toBe(false);
    // Back to heartbeats: nobody campaigns, nothing quiesces again.
    c.runFor(5_000);
    expect(termsAndLeaders(c)).toBe(before);
    for (const node of c.upNodes()) for (const shard of ids) expect(node.runtime!.isQuiesced(shard)).toBe(false);
  });

  it('is off with lease-based reads, and when turned off', () => {
    for (const c of [cluster(15, 3, undefined, 'lease-based'), cluster(15, 3, false)]) {
      c.runFor(5_000);
      for (const node of c.upNodes()) for (const shard of c.shards) expect(node.runtime!.isQuiesced(shard)).toBe(false);
    }
  });
});
