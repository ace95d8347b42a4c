/**
 * Shared body of the lease workload's seed suites: each seed runs the simulated cluster (real
 * Raft, the real lease engine in the data shard) under the nemesis and the holders' own faults,
 * and the lease checker must find the promise kept: no lease expired before an acknowledged
 * renewal ran out, every lease revoked in time once healed, renewed leases kept on the healed
 * cluster, replicas converged with no lease or holder key left.
 */
import { expect, it } from 'vitest';
import { runLeaseSim } from '../../jepsen-lite/sim/jepsen/index.js';

export function leaseSimSeeds(options: { first: number; count: number; durationMs: number }): void {
  it(`${options.count} seeds of the lease workload under faults: the lease promise holds`, async () => {
    const failures: string[] = [];
    const totals = { leases: 0, acknowledged: 0, expired: 0, revoked: 0, faultWindows: 0, keptAlive: 0, liveness: 0, crashes: 0, leaderChanges: 0, transfers: 0, transfersChangedLeader: 0 };
    let safetyMarginMsMin = Infinity;
    const began = performance.now();
    for (let i = 0; i < options.count; i++) {
      const seed = options.first + i;
      // Every other seed is a swarm seed; every fourth a five-node cluster.
      const result = await runLeaseSim({ seed, nodes: i % 4 === 3 ? 5 : 3, durationMs: options.durationMs, swarm: i % 2 === 1 });
      const s = result.stats;
      totals.leases += s.leases;
      totals.acknowledged += s.acknowledged;
      totals.expired += s.expired;
      totals.revoked += s.revoked;
      totals.faultWindows += s.faultWindows;
      totals.keptAlive += s.keptAliveChecked;
      totals.liveness += s.livenessChecked;
      totals.crashes += s.crashes;
      totals.leaderChanges += s.leadersElected - 1;
      totals.transfers += s.transfers;
      totals.transfersChangedLeader += s.transfersChangedLeader;
      if (s.safetyMarginMsMin !== undefined) safetyMarginMsMin = Math.min(safetyMarginMsMin, s.safetyMarginMsMin);
      if (result.verdict !== 'ok') failures.push(`seed ${seed}: ${result.failures.join('\n  ')}\n  replay: ${result.replayCommand}`);
    }
    const seconds = (performance.now() - began) / 1000;
    console.log(
      `jepsen sim lease: ${options.count} seeds, ${totals.leases} leases, ${totals.acknowledged} acknowledged grants and renewals, ` +
        `${totals.expired} expired (the closest ${safetyMarginMsMin} ms after a belief ran out), ${totals.revoked} revoked, ` +
        `${totals.liveness} liveness bounds, ${totals.keptAlive} leases renewed once healed, ${totals.faultWindows} fault windows, ` +
        `${totals.crashes} crashes, ${totals.leaderChanges} leader changes, ` +
        `${totals.transfers} leader transfers (${totals.transfersChangedLeader} changed the leader), ${(options.count / seconds).toFixed(1)} seeds/s`,
    );
    expect(failures).toEqual([]);
    // The runs did something: faults, leader changes, expiries checked against acknowledgements.
    expect(totals.faultWindows).toBeGreaterThanOrEqual(options.count * 3);
    expect(totals.leaderChanges).toBeGreaterThan(options.count / 2);
    expect(totals.transfers).toBeGreaterThanOrEqual(options.count);
    expect(totals.transfersChangedLeader).toBeGreaterThan(totals.transfers / 2);
    expect(totals.expired).toBeGreaterThan(options.count * 3);
    expect(totals.revoked).toBeGreaterThan(options.count / 10);
    expect(totals.liveness).toBeGreaterThan(options.count * 2);
    expect(totals.keptAlive).toBeGreaterThan(options.count * 2);
  });
}
