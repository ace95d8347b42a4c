/**
 * `dkv jepsen sim`: a seed replays exactly, the test-only fault switch (reads without ReadIndex)
 * is caught by the checker, and the building blocks (pause, MVCC snapshots through Raft
 * snapshots, the fault plan) do what they say.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SIM_DEFAULTS, SimCluster } from '../../jepsen-lite/sim/cluster.js';
import { DEFAULT_FAULT_PLAN, faultPlanFor, runJepsenSim, simFaultKinds } from '../../jepsen-lite/sim/jepsen/index.js';
import { jepsenSimCommand, jepsenSimOutDefault } from '../../jepsen-lite/sim/jepsen/command.js';
import { composeStateMachine, kvEngineOf } from '../../src/runtime/index.js';
import { KvCommandKind, kvCommand } from '../../src/engines/kv/index.js';
import { etcdType } from '../../src/etcd-proto.js';
import type { MvccStore } from '../../storage/index.js';

describe('jepsen sim determinism', () => {
  it('the same seed gives the same history, faults and trace', async () => {
    for (const workload of ['register', 'watch'] as const) {
      const options = { seed: 77, workload, nodes: 3, durationMs: 1500, swarm: true };
      const first = await runJepsenSim(options);
      const second = await runJepsenSim(options);
      expect(first.operations.length).toBeGreaterThan(50);
      expect(second.operations).toEqual(first.operations);
      expect(second.faults).toEqual(first.faults);
      expect(second.watches).toEqual(first.watches);
      expect(second.stats).toEqual(first.stats);
      expect(second.replayCommand).toBe(first.replayCommand);
    }
  });

  it('a different seed gives a different history', async () => {
    const a = await runJepsenSim({ seed: 1, workload: 'register', nodes: 3, durationMs: 1000, swarm: false });
    const b = await runJepsenSim({ seed: 2, workload: 'register', nodes: 3, durationMs: 1000, swarm: false });
    expect(b.stats.traceHash).not.toBe(a.stats.traceHash);
  });

  it('the replay command names every option that shapes the run', async () => {
    const r = await runJepsenSim({ seed: 5, workload: 'kv', nodes: 5, durationMs: 300, swarm: true, unsafe: { staleReads: true } });
    expect(r.replayCommand).toBe('dkv jepsen sim --seed 5 --workload kv --nodes 5 --time 300 --swarm --unsafe-stale-reads');
  });
});

describe('the harness can fail', () => {
  it('reads served without ReadIndex (unsafe.staleReads) are caught as not linearizable', async () => {
    const verdicts: string[] = [];
    for (let seed = 0; seed < 6; seed++) {
      const r = await runJepsenSim({ seed, workload: 'register', nodes: 3, durationMs: 2500, swarm: false, unsafe: { staleReads: true } });
      verdicts.push(r.verdict);
      if (r.verdict === 'violation') {
        // The violation is the checker's (a stale read), not the simulator's own checks.
        expect(r.failure).toBeUndefined();
        expect(r.linearizability!.verdict).toBe('violation');
        expect(r.linearizability!.partitions.some((p) => p.verdict === 'violation' && (p.blocked ?? []).length > 0)).toBe(true);
      }
    }
    expect(verdicts.filter((v) => v === 'violation').length).toBeGreaterThan(0);
  });

  it('the same seeds pass with ReadIndex', async () => {
    for (let seed = 0; seed < 3; seed++) {
      const r = await runJepsenSim({ seed, workload: 'register', nodes: 3, durationMs: 2500, swarm: false });
      expect(r.verdict).toBe('ok');
    }
  });
});

describe('fault plans', () => {
  it('without --swarm every fault kind is on; with it the plan is drawn from the seed', () => {
    expect(faultPlanFor(3, false)).toBe(DEFAULT_FAULT_PLAN);
    expect(DEFAULT_FAULT_PLAN.kinds).toEqual(simFaultKinds);
    const plans = Array.from({ length: 40 }, (_, seed) => faultPlanFor(seed, true));
    expect(faultPlanFor(7, true)).toEqual(faultPlanFor(7, true));
    for (const plan of plans) expect(plan.kinds.length).toBeGreaterThan(0);
    expect(new Set(plans.map((p) => p.kinds.join(','))).size).toBeGreaterThan(10);
    // Over many seeds every kind is drawn at least once.
    for (const kind of simFaultKinds) expect(plans.some((p) => p.kinds.includes(kind))).toBe(true);
  });

  it('a run records fault windows of several kinds within the fault phase', async () => {
    const r = await runJepsenSim({ seed: 11, workload: 'register', nodes: 5, durationMs: 8000, swarm: false });
    const kinds = new Set(r.faults.map((f) => f.kind));
    expect(kinds.size).toBeGreaterThanOrEqual(4);
    // Leader transfers among them, some of which moved a group's leader.
    expect(kinds.has('transfer')).toBe(true);
    expect(r.stats.transfers).toBe(r.faults.filter((f) => f.kind === 'transfer').length);
    expect(r.stats.transfersChangedLeader).toBeGreaterThan(0);
    for (const f of r.faults) {
      expect(f.end).toBeDefined();
      expect(f.end!).toBeGreaterThanOrEqual(f.start);
      expect(f.description.length).toBeGreaterThan(0);
    }
    expect(r.verdict).toBe('ok');
  });
});

describe('leader transfers in the simulated cluster', () => {
  it('moves the leader of the group named, and only that group', () => {
    const cluster = new SimCluster({ ...SIM_DEFAULTS, seed: 12, nodeIds: [1, 2, 3], shards: [1, 2] });
    cluster.runUntil(3000);
    expect(cluster.groups()).toEqual([1, 2]);
    const first = cluster.leader(1)!;
    const second = cluster.leader(2)!;
    const to = [1, 2, 3].find((id) => id !== second.id)!;
    const term = second.runtime!.rawNode(2).raft.term;
    expect(cluster.transferLeader(second.id, to, 2)).toBeUndefined();
    cluster.runUntil(cluster.now + 1000);
    expect(cluster.leader(2)!.id).toBe(to);
    expect(cluster.leader(2)!.runtime!.rawNode(2).raft.term).toBeGreaterThan(term);
    expect(cluster.leader(1)!.id).toBe(first.id);
    // A node that does not host the group cannot be asked.
    expect(cluster.transferLeader(to, first.id, 9)).toBe('down');
  });
});

const PutRequest = etcdType('etcdserverpb.PutRequest');
const put = (key: string, value: string) =>
  kvCommand(KvCommandKind.Put, PutRequest.encode(PutRequest.fromObject({ key: Buffer.from(key), value: Buffer.from(value) })).finish());

/** A simulated cluster whose nodes run the real KV state machine on shard 1. */
function kvCluster(seed: number, snapshotEveryEntries: number): { cluster: SimCluster; store: (id: number) => MvccStore } {
  const cluster = new SimCluster({
    ...SIM_DEFAULTS,
    seed,
    nodeIds: [1, 2, 3],
    snapshotEveryEntries,
    snapshotKeepEntries: 2,
    stateMachine: () => composeStateMachine('data', { trackChain: true }),
  });
  return { cluster, store: (id) => kvEngineOf(cluster.nodes.get(id)!.machine()!).mvcc };
}

describe('the KV state machine in the simulated cluster', () => {
  it('a node that crashed and missed compacted entries is rebuilt from a real MVCC snapshot', () => {
    const { cluster, store } = kvCluster(4, 10);
    cluster.runUntil(3000);
    const leader = cluster.leader()!;
    const victim = [1, 2, 3].find((id) => id !== leader.id)!;
    cluster.crash(victim);
    for (let i = 0; i < 60; i++) {
      expect(cluster.submit(leader.id, 1, put(`k${i % 7}`, `v${i}`), () => undefined)).toBeUndefined();
      cluster.runUntil(cluster.now + 20);
    }
    cluster.restart(victim);
    cluster.runUntil(cluster.now + 3000);
    expect(cluster.stats.snapshotsSent).toBeGreaterThan(0);
    const hashes = [1, 2, 3].map((id) => store(id).hashKV());
    expect(hashes[0]!.revision).toBe(61);
    expect(new Set(hashes.map((h) => h.hash)).size).toBe(1);
    // Every version is there, not only the latest: the snapshot carried the history.
    expect(store(victim).changes({ fromRevision: 1 }).length).toBe(60);
  });

  it('a paused node handles nothing until resumed, then catches up', () => {
    const { cluster, store } = kvCluster(9, 0);
    cluster.runUntil(3000);
    const leader = cluster.leader()!;
    const paused = [1, 2, 3].find((id) => id !== leader.id)!;
    cluster.pause(paused);
    const before = cluster.nodes.get(paused)!.raw!.raft.log.lastIndex();
    for (let i = 0; i < 5; i++) cluster.submit(leader.id, 1, put('p', `v${i}`), () => undefined);
    cluster.runUntil(cluster.now + 2000);
    expect(cluster.nodes.get(paused)!.raw!.raft.log.lastIndex()).toBe(before);
    expect(store(leader.id).revision).toBe(6);
    cluster.resume(paused);
    cluster.runUntil(cluster.now + 1000);
    expect(store(paused).revision).toBe(6);
  });
});

describe('dkv jepsen sim command', () => {
  it('prints its usage with --help and refuses bad options', async () => {
    const out: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    const writeErr = process.stderr.write.bind(process.stderr);
    process.stdout.write = ((chunk: string) => (out.push(chunk), true)) as typeof process.stdout.write;
    process.stderr.write = ((chunk: string) => (out.push(chunk), true)) as typeof process.stderr.write;
    try {
      expect(await jepsenSimCommand(['--help'])).toBe(0);
      expect(out.join('')).toContain('Usage: dkv jepsen sim');
      expect(await jepsenSimCommand(['--nodes', '4'])).toBe(2);
      expect(await jepsenSimCommand(['--workload', 'bank'])).toBe(2);
      out.length = 0;
      expect(await jepsenSimCommand(['--seed', '3', '--time', '300'])).toBe(0);
      expect(out.join('')).toMatch(/1 seeds: 1 ok, 0 violations, 0 unknown; \d+ operations/);
    } finally {
      process.stdout.write = write;
      process.stderr.write = writeErr;
    }
  });

  it('an unknown seed is never success: exit 2, its replay command and report folder under --out', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dkv-jsim-unknown-'));
    const out: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((chunk: string) => (out.push(chunk), true)) as typeof process.stdout.write;
    try {
      // A check budget of 0 ms: the linearizability search answers unknown at once.
      expect(await jepsenSimCommand(['--seed', '3', '--time', '300', '--check-budget', '0', '--out', dir])).toBe(2);
    } finally {
      process.stdout.write = write;
    }
    try {
      const text = out.join('');
      expect(text).toMatch(/1 seeds: 0 ok, 0 violations, 1 unknown; \d+ operations/);
      expect(text).toContain('seed 3: UNKNOWN: ');
      expect(text).toContain('replay: dkv jepsen sim --seed 3 --workload register --nodes 3 --time 300 --check-budget 0');
      const folder = join(dir, 'seed-3-register');
      expect(text).toContain(`report: ${folder}`);
      expect(JSON.parse(readFileSync(join(folder, 'results.json'), 'utf8')).results.verdict).toBe('unknown');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('writes failing seeds under .dkv/jepsen-sim/<run stamp>-<workload> by default, not the current folder', () => {
    expect(jepsenSimOutDefault('watch', new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 6)))).toBe(join('.dkv', 'jepsen-sim', '2026-01-02T03-04-05-006Z-watch'));
  });
});
