/**
 * Raft core throughput: an in-process 3-node group on the simulator with zero network and disk
 * latency, so only the core (and the simulator's bookkeeping) is measured. Prints numbers; never
 * gates CI.
 *
 *   npm run bench            (or: dkv bench raft [--seconds S])
 */
import { SIM_DEFAULTS, SimCluster, ZERO_LATENCY_NETWORK } from '../jepsen-lite/sim/index.js';

export interface RaftBenchResult {
  readonly batch: number;
  readonly rounds: number;
  readonly entries: number;
  readonly seconds: number;
  readonly roundsPerSecond: number;
  readonly entriesPerSecond: number;
}

function newCluster(): SimCluster {
  const cluster = new SimCluster({
    ...SIM_DEFAULTS,
    seed: 1,
    nodeIds: [1, 2, 3],
    network: ZERO_LATENCY_NETWORK,
    diskLatencyMinMs: 0,
    diskLatencyMaxMs: 0,
    checkSafety: false,
    traceEvents: false,
    snapshotEveryEntries: 10_000,
    snapshotKeepEntries: 1_000,
  });
  const elected = cluster.runUntilCondition(() => cluster.leader() !== undefined, 60_000);
  if (!elected) throw new Error('no leader elected');
  return cluster;
}

/** Proposes `batch` entries per round at the leader and waits until all three nodes applied them. */
export function measureRounds(batch: number, seconds: number): RaftBenchResult {
  const cluster = newCluster();
  const leader = cluster.leader()!;
  const nodes = [...cluster.nodes.values()];
  const payload = new Uint8Array(64).fill(7);
  const commands = Array.from({ length: batch }, () => payload);
  let target = leader.appliedIndex;
  let rounds = 0;
  const deadline = performance.now() + seconds * 1000;
  const start = performance.now();
  while (performance.now() < deadline) {
    for (let i = 0; i < 64; i++) {
      if (batch === 1) cluster.propose(leader.id, payload);
      else cluster.proposeMany(leader.id, commands);
      target += batch;
      const done = cluster.runUntilCondition(() => nodes.every((n) => n.appliedIndex >= target), 1_000);
      if (!done) throw new Error(`round ${rounds} did not commit`);
      rounds++;
    }
  }
  const elapsed = (performance.now() - start) / 1000;
  return {
    batch,
    rounds,
    entries: rounds * batch,
    seconds: elapsed,
    roundsPerSecond: rounds / elapsed,
    entriesPerSecond: (rounds * batch) / elapsed,
  };
}

export function runRaftBench(options: { seconds: number; print: (line: string) => void }): RaftBenchResult[] {
  const results: RaftBenchResult[] = [];
  options.print('Raft core, 3 nodes in one process, zero-latency simulated network and disk');
  options.print('batch   rounds/s      entries/s     (goal)');
  for (const batch of [1, 64, 1024]) {
    const r = measureRounds(batch, options.seconds);
    results.push(r);
    const goal = batch === 1 ? '>= 50,000 rounds/s' : batch === 1024 ? '>= 1,000,000 entries/s' : '';
    options.print(
      `${String(batch).padStart(5)}  ${Math.round(r.roundsPerSecond).toLocaleString('en-US').padStart(10)}  ${Math.round(r.entriesPerSecond).toLocaleString('en-US').padStart(13)}     ${goal}`,
    );
  }
  return results;
}
