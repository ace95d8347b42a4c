/** `dkv sim`: the deterministic Raft simulator over random fault schedules. */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { packageRoot } from '../package-root.js';
import {
  describeFault,
  recoveryTicksMax,
  runScenario,
  scenarioForSeed,
  type SimResult,
  type SimScenario,
} from '../../jepsen-lite/sim/index.js';
import type { SeedWorkerInput, SeedWorkerMessage } from '../../jepsen-lite/sim/seed-worker.js';
import { UsageError, intOption, parseOptions, withUsage } from './args.js';

export const simHelp = `Usage: dkv sim [options]

Runs the server's shard runtime (the Raft core, the cycle, the state machine) on a simulated
network, disk and clock. Each seed draws a scenario: 3 or 5 nodes, network loss/duplication/delay,
partitions (majority/minority, isolated node, one-way, bridge), crashes that lose unpersisted
writes, slow and failing disks, restarts, leadership transfers, member
replacements (joint consensus or learner-then-promote), tight flow-control limits, client
proposals and ReadIndex reads (safe or lease-based). After every event it checks election
safety, log matching, leader completeness, state machine safety and read safety; after healing,
a proposal must commit on every member within ${recoveryTicksMax} ticks plus the time the slowest member
needs to catch up. A seed replays exactly.

Options:
  --seeds N            run N seeds (default 100)
  --start S            first seed of --seeds (default 0)
  --workers N          worker threads for --seeds (default: available CPUs)
  --seed S             run one seed and describe it
  --replay FILE        run a scenario saved by a failing test (sim-failures/*.json)
  --trace              with --seed/--replay: print every event
  --unsafe-vote-twice  break the core on purpose (a node may vote twice in a term), to watch
                       the checker catch it
  -h, --help           show this text
`;

export async function simCommand(args: string[]): Promise<number> {
  return withUsage(simHelp, async () => {
    const o = parseOptions(args, {
      seeds: { type: 'string' },
      start: { type: 'string' },
      workers: { type: 'string' },
      seed: { type: 'string' },
      replay: { type: 'string' },
      trace: { type: 'boolean' },
      'unsafe-vote-twice': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    });
    if (o.help === true) {
      process.stdout.write(simHelp);
      return 0;
    }
    const unsafe = o['unsafe-vote-twice'] === true;
    if (o.seed !== undefined && o.replay !== undefined) throw new UsageError('--seed and --replay cannot be combined');
    if (o.seed !== undefined || o.replay !== undefined) {
      const scenario =
        o.replay !== undefined
          ? loadScenario(o.replay)
          : scenarioForSeed(intOption(o.seed, 'seed', 0, 0, Number.MAX_SAFE_INTEGER));
      return runOne(scenario, o.trace === true, unsafe, o.seed);
    }
    const count = intOption(o.seeds, 'seeds', 100, 1, 100_000_000);
    const start = intOption(o.start, 'start', 0, 0, Number.MAX_SAFE_INTEGER - count);
    const workers = intOption(o.workers, 'workers', availableParallelism(), 1, 256);
    return runMany(start, count, Math.min(workers, count), unsafe);
  }, 'dkv sim');
}

function loadScenario(file: string): SimScenario {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read --replay file: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text) as SimScenario;
  } catch (error) {
    throw new UsageError(`--replay file is not a scenario (JSON): ${(error as Error).message}`);
  }
}

function runOne(scenario: SimScenario, trace: boolean, unsafe: boolean, seedText: string | undefined): number {
  const label = seedText === undefined ? 'replayed scenario' : `seed ${seedText}`;
  process.stdout.write(
    `${label}: ${scenario.nodeCount} nodes, ${scenario.faultPhaseTicks} ticks of faults, election timeout ` +
      `${scenario.electionTicks} ticks, network drop ${scenario.network.dropRate} dup ${scenario.network.duplicateRate} ` +
      `delay ${scenario.network.delayMinMs}-${scenario.network.delayMaxMs} ms, snapshot every ${scenario.snapshotEveryEntries || 'never'}, ` +
      `${scenario.readOnlyOption ?? 'safe'} reads\n`,
  );
  for (const { atTick, fault } of scenario.faults) process.stdout.write(`  tick ${String(atTick).padStart(3)}: ${describeFault(fault)}\n`);
  const result = runScenario(scenario, { traceEvents: trace, unsafeVoteTwiceInTerm: unsafe });
  if (trace) for (const line of result.trace) process.stdout.write(`${line}\n`);
  printSummary(result);
  return result.ok ? 0 : 1;
}

function printSummary(result: SimResult): void {
  const s = result.stats;
  process.stdout.write(
    `events ${s.events}, messages ${s.messagesSent} sent / ${s.messagesDelivered} delivered, leaders elected ${s.leadersElected}, ` +
      `proposals ${s.proposals} (${s.proposalsDropped} refused), entries applied ${s.entriesApplied}, reads ${s.readsCompleted}, ` +
      `snapshots sent ${s.snapshotsSent}, crashes ${s.crashes}, simulated ${(s.simulatedMs / 1000).toFixed(1)} s\n` +
      `trace hash ${result.traceHash.toString(16).padStart(8, '0')}\n`,
  );
  if (result.ok) {
    process.stdout.write(`ok: safe, and recovered in ${result.recoveryTicks} ticks after healing (bound ${result.recoveryBound})\n`);
  }
  else process.stdout.write(`VIOLATION ${result.violation!.kind} at ${result.violation!.atMs} ms: ${result.violation!.message}\n`);
}

async function runMany(start: number, count: number, workers: number, unsafe: boolean): Promise<number> {
  process.stdout.write(`dkv sim: ${count} seeds from ${start} on ${workers} worker${workers === 1 ? '' : 's'}\n`);
  const began = Date.now();
  let done = 0;
  let worstRecovery = 0;
  const failures: { seed: number; violation: string }[] = [];
  const progress = setInterval(() => {
    const seconds = (Date.now() - began) / 1000;
    process.stdout.write(`  ${done}/${count} seeds, ${failures.length} failures, ${(done / seconds).toFixed(0)} seeds/s\n`);
  }, 10_000);
  const workerUrl = join(packageRoot, 'bin', 'sim-worker.js');
  try {
    await Promise.all(
      Array.from({ length: workers }, (_, offset) => {
        const input: SeedWorkerInput = { start, count, offset, stride: workers, unsafeVoteTwiceInTerm: unsafe };
        return new Promise<void>((resolve, reject) => {
          const worker = new Worker(workerUrl, { workerData: input });
          worker.on('message', (message: SeedWorkerMessage) => {
            if (message.type === 'done') return;
            done++;
            if (message.recoveryTicks !== undefined) worstRecovery = Math.max(worstRecovery, message.recoveryTicks);
            if (!message.ok) {
              failures.push({ seed: message.seed, violation: message.violation ?? 'unknown' });
              process.stdout.write(`seed ${message.seed} FAILED: ${message.violation}\n  replay: npm run sim -- --seed ${message.seed} --trace\n`);
            }
          });
          worker.on('error', reject);
          worker.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`sim worker exited with code ${code}`))));
        });
      }),
    );
  } finally {
    clearInterval(progress);
  }
  const seconds = (Date.now() - began) / 1000;
  process.stdout.write(
    `done: ${done} seeds in ${seconds.toFixed(1)} s (${(done / seconds).toFixed(0)} seeds/s), ${failures.length} failures, ` +
      `worst recovery ${worstRecovery} ticks (each run within its bound: ${recoveryTicksMax} ticks plus catch-up time)\n`,
  );
  if (failures.length > 0) {
    process.stdout.write(`failing seeds: ${failures.map((f) => f.seed).join(' ')}\n`);
    return 1;
  }
  return 0;
}
