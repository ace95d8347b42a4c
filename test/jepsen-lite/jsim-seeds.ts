/**
 * Shared body of the `dkv jepsen sim` seed suites: each seed runs the simulated cluster (real
 * Raft, real KV state machine) under faults and its history must check out: linearizable, every
 * watch guarantee kept, replicas converged.
 */
import { expect, it } from 'vitest';
import { describeOutcome, runJepsenSim } from '../../jepsen-lite/sim/jepsen/index.js';
import type { WorkloadName } from '../../jepsen-lite/workload/index.js';

/** Generous: these histories check in well under a second; a budget overrun must not pass as ok. */
const checkBudgetMs = 20_000;

export function jepsenSimSeeds(options: { workload: WorkloadName; first: number; count: number; durationMs: number }): void {
  it(`${options.count} seeds of the ${options.workload} workload under faults: 0 violations`, async () => {
    const failures: string[] = [];
    let operations = 0;
    let faults = 0;
    let okOps = 0;
    let slowFallbacks = 0;
    let compactions = 0;
    let compactedCancels = 0;
    let transfers = 0;
    let transfersChangedLeader = 0;
    const began = performance.now();
    for (let i = 0; i < options.count; i++) {
      const seed = options.first + i;
      // Every other seed is a swarm seed; every fourth a five-node cluster.
      const result = await runJepsenSim({
        seed,
        workload: options.workload,
        nodes: i % 4 === 3 ? 5 : 3,
        durationMs: options.durationMs,
        swarm: i % 2 === 1,
        checkBudgetMs,
      });
      operations += result.operations.length;
      okOps += result.stats.ok;
      faults += result.faults.length;
      if (result.verdict !== 'ok') failures.push(`${describeOutcome(result)}\n  replay: ${result.replayCommand}`);
      if (options.workload === 'append' || options.workload === 'rw-register') {
        // Both checkers ran: Elle over the transactions, and linearizability decided by revisions.
        expect(result.txn?.verdict, `seed ${seed}`).toBe('ok');
        expect(result.txn!.stats.committed, `seed ${seed}`).toBeGreaterThan(0);
        expect(result.linearizability?.method, `seed ${seed}`).toBe('revisions');
      }
      if (options.workload === 'watch') {
        expect(result.stats.watchEvents).toBeGreaterThan(0);
        // Streams on every node, at least two per node (records are named `w<i>#<k>@n<node>`).
        const perNode = new Map<string, number>();
        for (const w of result.watches ?? []) perNode.set(w.name!.split('@')[1]!, (perNode.get(w.name!.split('@')[1]!) ?? 0) + 1);
        const nodes = Array.from({ length: result.options.nodes }, (_, n) => `n${n + 1}`);
        for (const node of nodes) expect(perNode.get(node) ?? 0, `seed ${seed}: streams on ${node}`).toBeGreaterThanOrEqual(2);
        expect(result.stats.watchStreamsPerNodeMin).toBe(Math.min(...nodes.map((node) => perNode.get(node) ?? 0)));
        // Some streams started in the past, some from now, some resumed.
        const starts = (result.watches ?? []).map((w) => (w.resumedFrom !== undefined ? 'resumed' : w.params.startRevision === 0 ? 'now' : 'past'));
        expect(new Set(starts), `seed ${seed}`).toEqual(new Set(['resumed', 'now', 'past']));
      }
      slowFallbacks += result.stats.watchSlowFallbacks;
      compactions += result.stats.compactions;
      transfers += result.stats.transfers;
      transfersChangedLeader += result.stats.transfersChangedLeader;
      compactedCancels += (result.watches ?? []).filter((w) => w.responses.some((r) => r.kind === 'canceled' && r.compactRevision !== undefined)).length;
    }
    const seconds = (performance.now() - began) / 1000;
    console.log(`jepsen sim ${options.workload}: ${options.count} seeds, ${operations} ops, ${faults} fault windows, ${slowFallbacks} watch fall-backs, ${compactions} compactions, ${compactedCancels} watches cancelled by compaction, ${transfers} leader transfers (${transfersChangedLeader} changed the leader), ${(options.count / seconds).toFixed(2)} seeds/s`);
    expect(failures).toEqual([]);
    // The runs did something: faults were injected and most operations went through.
    expect(faults).toBeGreaterThanOrEqual(options.count);
    expect(okOps).toBeGreaterThan(options.count * 50);
    // The nemesis moved leaders: transfers were asked for (short runs, half of them swarm seeds
    // that may leave transfers out: not one in every seed), and most changed the group's leader.
    expect(transfers).toBeGreaterThanOrEqual(options.count / 2);
    expect(transfersChangedLeader).toBeGreaterThan(transfers / 2);
    // Slow readers filled their streams: the engine's fall-back-and-catch-up path ran too.
    if (options.workload === 'watch') expect(slowFallbacks).toBeGreaterThan(0);
    // Compactions happened, and some watchers met compacted history (and watched afresh).
    if (options.workload === 'watch') expect(compactions).toBeGreaterThan(0);
    if (options.workload === 'watch') expect(compactedCancels).toBeGreaterThan(0);
  });
}
