/**
 * A group whose only voter is this member campaigns as soon as its committed entries are applied
 * (campaignWhenSoleVoter), not after an election timeout; a group with other voters still waits.
 */
import { describe, expect, it } from 'vitest';
import { RecordEngine, recordCommand } from '../../jepsen-lite/sim/record-engine.js';
import { applyUpdate } from '../../jepsen-lite/sim/disk.js';
import { MemoryLogStorage, SeededPrng } from '../../raft/index.js';
import { NodeRuntime, type RuntimeStorage, ShardStateMachine } from '../../src/runtime/index.js';

const SHARD = 1;

function soleVoterRuntime(voters: number[], campaignWhenSoleVoter: boolean): { runtime: NodeRuntime; tasks: Array<() => void> } {
  const tasks: Array<() => void> = [];
  const log = MemoryLogStorage.bootstrapped(voters);
  const storage: RuntimeStorage = {
    shard: () => log,
    save: (updates, _options, done) => {
      for (const update of updates) applyUpdate(log, update);
      tasks.push(() => done(undefined));
    },
  };
  const runtime = new NodeRuntime({
    memberId: 1,
    storage,
    transport: { send: () => undefined },
    clock: { now: () => 0 },
    scheduler: { soon: (task) => void tasks.push(task) },
    random: new SeededPrng(3),
    raft: { electionTicks: 10, heartbeatTicks: 1 },
    tickMs: 100,
    snapshotCount: 0,
    snapshotCatchUpEntries: 0,
    campaignWhenSoleVoter,
    requestTimeoutMs: 5000,
    stateMachine: () => new ShardStateMachine({ engines: [new RecordEngine()] }),
    firstRequestId: 1,
  });
  runtime.addShard(SHARD);
  return { runtime, tasks };
}

/** Ticks until member 1 leads the group of `voters` (at most 100), each tick's work run to the end. */
function ticksToLead(voters: number[], campaignWhenSoleVoter: boolean): number {
  const { runtime, tasks } = soleVoterRuntime(voters, campaignWhenSoleVoter);
  for (let ticks = 1; ticks <= 100; ticks++) {
    runtime.tick();
    for (let i = 0; i < 1000 && tasks.length > 0; i++) tasks.shift()!();
    if (runtime.leader(SHARD) === 1) return ticks;
  }
  return Infinity;
}

describe('campaignWhenSoleVoter', () => {
  it('leads a single-voter group after the first tick applies its log', () => {
    expect(ticksToLead([1], true)).toBe(1);
  });

  it('is off by default: the group waits an election timeout, as etcd-io/raft', () => {
    expect(ticksToLead([1], false)).toBeGreaterThanOrEqual(10);
  });

  it('never campaigns early in a group with other voters', () => {
    // Alone among three voters it can never win: no campaign comes before an election timeout.
    expect(ticksToLead([1, 2, 3], true)).toBe(Infinity);
  });

  it('a write that waited for the leader is proposed once the leader is known, not at the next tick', () => {
    const { runtime, tasks } = soleVoterRuntime([1], true);
    let answer: string | undefined;
    // Before the first tick: no leader yet, so the write is parked.
    runtime.propose(SHARD, recordCommand(new TextEncoder().encode('first')), {}, (error) => (answer = error?.code ?? 'ok'));
    runtime.tick();
    for (let i = 0; i < 1000 && tasks.length > 0; i++) tasks.shift()!();
    expect(runtime.leader(SHARD)).toBe(1);
    expect(answer).toBe('ok');
  });
});
