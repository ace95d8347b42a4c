/**
 * Body of one `dkv sim` worker thread: runs every `stride`-th seed of a range and reports each
 * result to the parent.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { runScenario, scenarioForSeed } from './scenario.js';

export interface SeedWorkerInput {
  readonly start: number;
  readonly count: number;
  readonly offset: number;
  readonly stride: number;
  readonly unsafeVoteTwiceInTerm: boolean;
}

export type SeedWorkerMessage =
  | { readonly type: 'result'; readonly seed: number; readonly ok: boolean; readonly violation?: string; readonly recoveryTicks?: number }
  | { readonly type: 'done' };

const input = workerData as SeedWorkerInput;
for (let i = input.offset; i < input.count; i += input.stride) {
  const seed = input.start + i;
  const result = runScenario(scenarioForSeed(seed), { unsafeVoteTwiceInTerm: input.unsafeVoteTwiceInTerm });
  const message: SeedWorkerMessage = {
    type: 'result',
    seed,
    ok: result.ok,
    violation: result.violation === undefined ? undefined : `${result.violation.kind} at ${result.violation.atMs} ms: ${result.violation.message}`,
    recoveryTicks: result.recoveryTicks,
  };
  parentPort!.postMessage(message);
}
parentPort!.postMessage({ type: 'done' } satisfies SeedWorkerMessage);
