/**
 * Seeds that long `dkv jepsen sim` runs found failing, replayed exactly as the command line did
 * then (these were found before the leader-transfer fault: `withoutTransfers` keeps their plans).
 * Each entry is only `runJepsenSim` options, so it keeps guarding whatever host the simulator
 * runs Raft in; the `cause` says what broke, for whoever sees it fail again.
 */
import { describe, expect, it } from 'vitest';
import { type JepsenSimOptions, describeOutcome, runJepsenSim } from '../../jepsen-lite/sim/jepsen/index.js';

interface FoundSeed {
  readonly options: JepsenSimOptions;
  readonly cause: string;
}

const foundSeeds: readonly FoundSeed[] = [
  {
    // dkv jepsen sim --seed 1020 --workload register --nodes 3 --time 10000 --swarm
    options: { seed: 1020, workload: 'register', nodes: 3, durationMs: 10_000, swarm: true, withoutTransfers: true },
    cause:
      'a MsgSnap to a lagging follower was dropped; its failure report came due while the leader ' +
      'was paused (SIGSTOP) and was discarded, so the leader kept that follower in snapshot state ' +
      'forever and it never caught up (n3 applied 86 < committed 177)',
  },
  {
    // dkv jepsen sim --seed 115 --workload watch --nodes 3 --time 10000 --swarm
    options: { seed: 115, workload: 'watch', nodes: 3, durationMs: 10_000, swarm: true, withoutTransfers: true },
    cause:
      'the kv search ran out of its 60 s budget (UNKNOWN after 31 million steps: ~470 operations in ' +
      'one partition, 25 of unknown outcome); the history is now decided from its revisions against ' +
      'the committed history, in milliseconds',
  },
];

describe('jepsen sim seeds found by long runs', () => {
  for (const { options, cause } of foundSeeds) {
    it(`seed ${options.seed} (${options.workload}, ${options.nodes} nodes${options.swarm ? ', swarm' : ''}): ok`, async () => {
      const result = await runJepsenSim(options);
      const outcome = result.verdict === 'ok' ? 'ok' : `${result.verdict}: ${describeOutcome(result)} (once caused by: ${cause})`;
      expect(outcome).toBe('ok');
    });
  }
});
