/** The real-mode nemesis: its schedule (deterministic from the seed) and how it applies a plan. */
import { parseJepsenRunArgs } from '../../jepsen-lite/real/command.js';
import { describe, expect, it } from 'vitest';
import {
  type FaultKind,
  Nemesis,
  type NemesisCluster,
  type PlannedFault,
  faultKinds,
  faultMsMax,
  faultMsMin,
  gapMsMax,
  gapMsMin,
  healedTailFraction,
  planFaults,
  warmupMs,
} from '../../jepsen-lite/real/nemesis.js';

const runMs = 60_000;

describe('planFaults', () => {
  it('is deterministic from the seed, and seeds differ', () => {
    const options = { faults: faultKinds, runMs, nodes: 3 };
    expect(planFaults({ ...options, seed: 7 })).toEqual(planFaults({ ...options, seed: 7 }));
    const plans = new Set(Array.from({ length: 20 }, (_, seed) => JSON.stringify(planFaults({ ...options, seed }))));
    expect(plans.size).toBe(20);
  });

  it('keeps the warmup and the last fifth healed, one fault at a time with gaps', () => {
    for (let seed = 0; seed < 200; seed++) {
      const plan = planFaults({ seed, faults: faultKinds, runMs, nodes: 5 });
      expect(plan.length).toBeGreaterThan(0);
      expect(plan[0]!.start).toBe(warmupMs);
      plan.forEach((fault, i) => {
        expect(fault.end - fault.start).toBeGreaterThanOrEqual(faultMsMin);
        expect(fault.end - fault.start).toBeLessThanOrEqual(faultMsMax);
        expect(fault.end).toBeLessThanOrEqual(runMs * (1 - healedTailFraction));
        const next = plan[i + 1];
        if (next !== undefined) {
          expect(next.start - fault.end).toBeGreaterThanOrEqual(gapMsMin);
          expect(next.start - fault.end).toBeLessThanOrEqual(gapMsMax);
        }
      });
    }
  });

  it('takes turns over the enabled kinds, so a short run still has each', () => {
    for (let seed = 0; seed < 100; seed++) {
      const plan = planFaults({ seed, faults: ['partition', 'kill'], runMs: 32_000, nodes: 3 });
      const kinds = new Set(plan.map((f) => f.action.kind));
      expect(kinds).toEqual(new Set<FaultKind>(['partition', 'kill']));
    }
  });

  it('draws only valid targets: halves are minorities, one-way shapes are blackholes', () => {
    for (let seed = 0; seed < 200; seed++) {
      for (const fault of planFaults({ seed, faults: faultKinds, runMs, nodes: 5 })) {
        const action = fault.action;
        if (action.kind === 'partition') {
          expect(action.side.length).toBe(action.shape === 'halves' ? 2 : 1);
          for (const node of action.side) expect(node).toBeLessThan(5);
          if (action.shape.startsWith('one-way')) expect(action.mode).toBe('blackhole');
        } else if (action.kind === 'delay') {
          expect(action.delayMs).toBeGreaterThan(0);
        } else if (action.kind === 'shards') {
          expect(Number.isSafeInteger(action.pick) && action.pick >= 0).toBe(true);
        } else {
          expect(action.target.node).toBeLessThan(5);
        }
      }
    }
  });

  it('plans nothing without fault kinds or time', () => {
    expect(planFaults({ seed: 1, faults: [], runMs, nodes: 3 })).toEqual([]);
    expect(planFaults({ seed: 1, faults: faultKinds, runMs: faultMsMin, nodes: 3 })).toEqual([]);
  });
});

/** A cluster that only records what the nemesis does to it. */
function fakeCluster(leader: string): NemesisCluster & { calls: string[] } {
  const calls: string[] = [];
  const running = new Set(['n1', 'n2', 'n3']);
  return {
    calls,
    members: [{ name: 'n1' }, { name: 'n2' }, { name: 'n3' }],
    leader: () => Promise.resolve(leader),
    waitForLeader: () => {
      calls.push('wait for leader');
      return Promise.resolve(leader);
    },
    kill: (name) => {
      running.delete(name);
      calls.push(`kill ${name}`);
      return Promise.resolve();
    },
    startMember: (name) => {
      running.add(name);
      calls.push(`start ${name}`);
    },
    running: (name) => running.has(name),
    pause: (name) => calls.push(`pause ${name}`),
    resume: (name) => calls.push(`resume ${name}`),
    replaceMember: (name, via) => {
      calls.push(`replace ${name} via ${via}`);
      return Promise.resolve({ oldId: '10', newId: '11', exitedByItself: true });
    },
    proxies: {
      setLink: (from, to, change) => calls.push(`link ${from}->${to} ${change.mode ?? ''}${change.delayMs ?? ''}`),
      healAll: () => calls.push('heal'),
    },
  };
}

describe('Nemesis', () => {
  it('applies each fault, heals it at its end and records the windows', async () => {
    const plan: PlannedFault[] = [
      { start: 0, end: 20, action: { kind: 'partition', shape: 'isolate-leader', side: [0], leader: true, mode: 'cut' } },
      { start: 30, end: 50, action: { kind: 'kill', target: { node: 1, leader: false } } },
      { start: 60, end: 70, action: { kind: 'partition', shape: 'one-way-out', side: [2], leader: false, mode: 'blackhole' } },
    ];
    const cluster = fakeCluster('n2');
    const origin = Date.now();
    const nemesis = new Nemesis({ plan, cluster, now: () => Date.now() - origin });
    await nemesis.run(new AbortController().signal);
    const calls = cluster.calls;
    expect(calls.slice(0, 5)).toEqual(['link n2->n1 cut', 'link n1->n2 cut', 'link n2->n3 cut', 'link n3->n2 cut', 'heal']);
    expect(calls.slice(5, 7)).toEqual(['kill n2', 'start n2']);
    expect(calls.slice(7, 10)).toEqual(['link n3->n1 blackhole', 'link n3->n2 blackhole', 'heal']);
    expect(nemesis.windows.map((w) => [w.kind, w.description])).toEqual([
      ['partition', 'cut n2 (leader) | n1 n3'],
      ['kill', 'kill n2'],
      ['partition', 'blackhole n3 -/-> n1 n2'],
    ]);
    for (const window of nemesis.windows) expect(window.end).toBeGreaterThanOrEqual(window.start);
  });

  it('asks the run store for a shards fault, and skips it on a cluster without one', async () => {
    const plan: PlannedFault[] = [{ start: 0, end: 10, action: { kind: 'shards', pick: 7, leader: true } }];
    const moved: string[] = [];
    const shards = (pick: number, leader: boolean): Promise<string> => (moved.push(`${pick} ${leader}`), Promise.resolve('move shard 2: done'));
    const origin = Date.now();
    const nemesis = new Nemesis({ plan, cluster: fakeCluster('n1'), shards, now: () => Date.now() - origin });
    await nemesis.run(new AbortController().signal);
    expect(moved).toEqual(['7 true']);
    expect(nemesis.windows.map((w) => [w.kind, w.description])).toEqual([['shards', 'move shard 2: done']]);
    const without = new Nemesis({ plan, cluster: fakeCluster('n1'), now: () => Date.now() - origin });
    await without.run(new AbortController().signal);
    expect(without.windows.map((w) => w.description)).toEqual(['shards: skipped, the cluster has no run store']);
  });

  it('heals the active fault when aborted', async () => {
    const plan: PlannedFault[] = [{ start: 0, end: 60_000, action: { kind: 'pause', target: { node: 2, leader: false } } }];
    const cluster = fakeCluster('n1');
    const stop = new AbortController();
    const origin = Date.now();
    const nemesis = new Nemesis({ plan, cluster, now: () => Date.now() - origin });
    const running = nemesis.run(stop.signal);
    setTimeout(() => stop.abort(), 20);
    await running;
    expect(cluster.calls.slice(0, 2)).toEqual(['pause n3', 'resume n3']);
    expect(nemesis.windows).toHaveLength(1);
    expect(nemesis.windows[0]!.end).toBeLessThan(1000);
  });

  it('replaces a member through another running one, and names the old and new ids', async () => {
    const plan: PlannedFault[] = [{ start: 0, end: 10, action: { kind: 'membership', target: { node: 0, leader: true } } }];
    const cluster = fakeCluster('n2');
    const origin = Date.now();
    const nemesis = new Nemesis({ plan, cluster, now: () => Date.now() - origin });
    await nemesis.run(new AbortController().signal);
    expect(cluster.calls[0]).toBe('replace n2 via n1');
    expect(nemesis.windows.map((w) => [w.kind, w.description])).toEqual([
      ['membership', 'replace n2 (leader): removed a (it exited by itself), added back as b on an empty data dir'],
    ]);
  });
});

describe('--faults shards', () => {
  it('is refused, with the reason, where it cannot run', () => {
    const refused = (args: string[]): string => {
      try {
        parseJepsenRunArgs(['--faults', 'shards', ...args]);
        return 'accepted';
      } catch (error) {
        return (error as Error).message;
      }
    };
    expect(refused(['--target', 'etcd'])).toMatch(/needs --target dkv/);
    expect(refused(['--nodes', '2'])).toMatch(/needs --nodes 3 or more/);
    expect(refused(['--workload', 'watch'])).toMatch(/runs with --workload register or kv/);
    expect(refused(['--workload', 'lock'])).toMatch(/runs with --workload register or kv/);
    expect(refused(['--auth'])).toMatch(/does not run with --auth/);
    expect(refused(['--workload', 'kv', '--nodes', '5'])).toBe('accepted');
    expect(parseJepsenRunArgs(['--faults', 'partition,shards'])?.faults).toEqual(['partition', 'shards']);
  });
});
