/** `dkv jepsen sim`: seeds of the simulated cluster under faults, each history checked. */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UsageError, intOption, parseOptions } from '../../../src/cli/args.js';
import type { RunInfo, RunResults } from '../../report/index.js';
import { SeedProgress, exitCodeOfVerdicts, writeReport } from '../../report/index.js';
import { elleModelOf, isWorkloadName, modelOf, workloadNames, type WorkloadName } from '../../workload/index.js';
import { describePlan, simFaultKinds } from './faults.js';
import {
  type JepsenSimOptions,
  type JepsenSimResult,
  jepsenClientsDefault,
  jepsenNodeCounts,
  jepsenWatchersPerNodeDefault,
  jepsenWatchersPerNodeMax,
  recoveryMs,
  runJepsenSim,
} from './run.js';
import { type LeaseSimOptions, type LeaseSimResult, leaseHistoryJson, leaseHoldersDefault, leaseRecoveryMs, runLeaseSim } from './leases.js';

export const jepsenSimSeedsDefault = 10;
export const jepsenSimTimeMsDefault = 10_000;
export const jepsenSimTimeMsMax = 3_600_000;
export const jepsenSimClientsMax = 64;
/** Failing and unknown seeds' report folders go under `<root>/<run stamp>-<workload>/` unless --out says otherwise. */
export const jepsenSimOutRoot = join('.dkv', 'jepsen-sim');
export const jepsenSimCheckBudgetMsMax = 3_600_000;

export function jepsenSimOutDefault(workload: string, now: Date = new Date()): string {
  return join(jepsenSimOutRoot, `${now.toISOString().replace(/[:.]/g, '-')}-${workload}`);
}

export const jepsenSimHelp = `Usage: dkv jepsen sim [options]

Runs seeds of a simulated DKV cluster: every node runs the server's shard runtime and engines (the
meta shard and a KV shard, commands encoded as the server encodes them, real MVCC snapshots) on a
simulated network, disk (slow, failing and crashing writes) and clock, all driven by the seed. A
nemesis injects faults (${simFaultKinds.join(', ')}, and the disks') for
--time simulated ms — transfer asks the leader of a drawn group (the data shard, the meta shard)
to hand leadership to a drawn other voter, as etcd's MoveLeader does, and counts those after which
the group had another leader — while ${jepsenClientsDefault} clients run the workload; then everything heals, the clients
go on for ${recoveryMs} ms, the replicas must converge, and the history goes to the checkers:
linearizability (kv, watch and the transactional workloads' Txns decided from their revisions
against the committed history; register by search), Elle for append and rw-register (the
anomalies G0 … G2, lost updates, incompatible orders, stale reads against real time), and for
the watch workload the watch checker. A seed replays
exactly: a failing seed — a violation, or unknown (a checker ran out of budget) — prints the
command that replays it and writes its report folder. The watch workload holds
--watchers-per-node streams on every node besides the clients (some from a past revision, some
from now, cut and resumed from where they left off, on their own node or another) and checks
each against the committed history and all of them against each other (same events, same order).
On a terminal, stderr shows seeds done, violations, unknowns, seeds/s and time left.

--workload lease checks the lease promise instead: ${leaseHoldersDefault} holders (--clients) grant leases, attach
keys, and renew them every TTL/3 through some node, or abandon or release them, under the same
faults and faults of their own (cut from the nodes, paused); after healing they go on for
${leaseRecoveryMs} ms, then stop. No lease may expire before an acknowledged renewal's TTL ran out
(counted from its send); every lease must be revoked within its deadline, one election timeout
if a later leader inherited it, and a tick once the cluster healed; leases renewed on the healed
cluster must survive; at the end no replica holds a lease or its key. A failing seed's report
folder holds lease-history.json.

Options:
  --seeds N              run N seeds (default ${jepsenSimSeedsDefault}; 1 with --seed)
  --seed S               the first seed (default 0)
  --workload W           ${[...workloadNames, 'lease'].join(' | ')} (default register)
  --swarm                draw the fault kinds and rates from each seed
  --nodes N              ${jepsenNodeCounts.join(' or ')} (default 3)
  --time MS              simulated milliseconds of faults per seed (default ${jepsenSimTimeMsDefault})
  --clients N            client processes (default ${jepsenClientsDefault}; lease holders: ${leaseHoldersDefault})
  --watchers-per-node N  (watch) watch streams homed on each node (default ${jepsenWatchersPerNodeDefault})
  --check-budget MS      wall ms the linearizability search may take per seed before it answers
                         unknown (default the checker's; 0 answers unknown at once)
  --out DIR              where failing and unknown seeds' report folders go
                         (default ${jepsenSimOutRoot}/<time>-<workload>/, seed-N-<workload> in it)
  --unsafe-stale-reads   break the system on purpose: reads skip ReadIndex (the checker must object)
  --unsafe-ignore-txn-compare   break the system on purpose: every Txn that writes runs its success branch,
                         whatever its compares say (the append workload's checker must object)
  --unsafe-no-lease-grace   (lease) a new leader gives inherited deadlines 1 ms, not an election timeout
  --unsafe-no-expiry        (lease) leaders never expire leases
  --unsafe-clock-skew       (lease) clocks up to two election timeouts apart, past what the grace covers
  -h, --help             show this text

Exit status: 0 every seed ok, 1 a violation in any seed, 2 otherwise a seed unknown (never taken
for ok), and 2 for a usage error.
`;

type Parsed =
  | { readonly help: boolean; readonly first: number; readonly count: number; readonly out: string; readonly lease: false; readonly base: Omit<JepsenSimOptions, 'seed'> }
  | { readonly help: boolean; readonly first: number; readonly count: number; readonly out: string; readonly lease: true; readonly base: Omit<LeaseSimOptions, 'seed'> };

function parse(argv: string[]): Parsed {
  const values = parseOptions(argv, {
    seeds: { type: 'string' },
    seed: { type: 'string' },
    workload: { type: 'string' },
    swarm: { type: 'boolean' },
    nodes: { type: 'string' },
    time: { type: 'string' },
    clients: { type: 'string' },
    out: { type: 'string' },
    'watchers-per-node': { type: 'string' },
    'check-budget': { type: 'string' },
    'unsafe-stale-reads': { type: 'boolean' },
    'unsafe-ignore-txn-compare': { type: 'boolean' },
    'unsafe-no-lease-grace': { type: 'boolean' },
    'unsafe-no-expiry': { type: 'boolean' },
    'unsafe-clock-skew': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  const workload = values.workload ?? 'register';
  const lease = workload === 'lease';
  if (!lease && !isWorkloadName(workload)) throw new UsageError(`--workload must be one of ${[...workloadNames, 'lease'].join(', ')}, got "${workload}"`);
  const nodes = intOption(values.nodes, 'nodes', 3, 3, 5);
  if (!jepsenNodeCounts.includes(nodes)) throw new UsageError(`--nodes must be ${jepsenNodeCounts.join(' or ')}, got ${nodes}`);
  const first = intOption(values.seed, 'seed', 0, 0, 2 ** 31 - 1);
  const count = intOption(values.seeds, 'seeds', values.seed === undefined ? jepsenSimSeedsDefault : 1, 1, 100_000_000);
  const clientsDefault = lease ? leaseHoldersDefault : jepsenClientsDefault;
  const clients = intOption(values.clients, 'clients', clientsDefault, 1, jepsenSimClientsMax);
  const durationMs = intOption(values.time, 'time', jepsenSimTimeMsDefault, 0, jepsenSimTimeMsMax);
  const swarm = values.swarm === true;
  const common = { help: values.help === true, first, count, out: values.out ?? jepsenSimOutDefault(workload) };
  const leaseUnsafe = { noLeaderGrace: values['unsafe-no-lease-grace'] === true, noExpiry: values['unsafe-no-expiry'] === true, clockSkewBeyondGrace: values['unsafe-clock-skew'] === true };
  if (lease) {
    if (values['unsafe-stale-reads'] === true) throw new UsageError('--unsafe-stale-reads breaks reads, which the lease workload does not make');
    if (values['watchers-per-node'] !== undefined || values['check-budget'] !== undefined) throw new UsageError('--watchers-per-node and --check-budget are not for the lease workload');
    const unsafe = Object.values(leaseUnsafe).some((on) => on) ? { unsafe: leaseUnsafe } : {};
    return { ...common, lease, base: { nodes, durationMs, swarm, ...(clients === clientsDefault ? {} : { holders: clients }), ...unsafe } };
  }
  if (Object.values(leaseUnsafe).some((on) => on)) throw new UsageError('--unsafe-no-lease-grace, --unsafe-no-expiry and --unsafe-clock-skew are for --workload lease');
  if (values['watchers-per-node'] !== undefined && workload !== 'watch') throw new UsageError('--watchers-per-node is for --workload watch');
  const watchersPerNode = intOption(values['watchers-per-node'], 'watchers-per-node', jepsenWatchersPerNodeDefault, 1, jepsenWatchersPerNodeMax);
  const checkBudgetMs = values['check-budget'] === undefined ? undefined : intOption(values['check-budget'], 'check-budget', 0, 0, jepsenSimCheckBudgetMsMax);
  return {
    ...common,
    lease,
    base: {
      workload: workload as WorkloadName,
      nodes,
      durationMs,
      swarm,
      ...(clients === clientsDefault ? {} : { clients }),
      ...(watchersPerNode === jepsenWatchersPerNodeDefault ? {} : { watchersPerNode }),
      ...(checkBudgetMs === undefined ? {} : { checkBudgetMs }),
      ...(values['unsafe-stale-reads'] === true || values['unsafe-ignore-txn-compare'] === true
        ? { unsafe: { staleReads: values['unsafe-stale-reads'] === true, ignoreTxnCompare: values['unsafe-ignore-txn-compare'] === true } }
        : {}),
    },
  };
}

/** A run's leader transfers, for the one-seed summary. */
function describeTransfers(stats: { transfers: number; transfersChangedLeader: number }): string {
  return `${stats.transfers} leader transfer${stats.transfers === 1 ? '' : 's'} (${stats.transfersChangedLeader} changed the leader)`;
}

/** The one-line reason a seed failed. */
export function describeOutcome(result: JepsenSimResult): string {
  if (result.failure !== undefined) return result.failure;
  const parts: string[] = [];
  for (const anomaly of result.txn?.anomalies ?? []) parts.push(`${anomaly.name}: ${anomaly.explanation}`);
  for (const p of result.linearizability?.partitions ?? []) {
    if (p.verdict !== 'ok') parts.push(`${p.key === '' ? 'history' : `key ${p.key}`}: ${p.message ?? p.verdict}`);
  }
  for (const v of result.watch?.violations ?? []) parts.push(v.message);
  return parts[0] === undefined ? result.verdict : `${parts[0]}${parts.length > 1 ? ` (+${parts.length - 1} more)` : ''}`;
}

async function writeFailure(dir: string, result: JepsenSimResult): Promise<string> {
  const o = result.options;
  const info: RunInfo = {
    mode: 'sim',
    target: 'dkv',
    workload: o.workload,
    model: elleModelOf(o.workload) ?? modelOf(o.workload),
    seed: o.seed,
    nodes: Array.from({ length: o.nodes }, (_, i) => `n${i + 1}`),
    // Simulated time starts at the epoch: the run has no wall-clock start (it replays anywhere).
    startedAt: new Date(0).toISOString(),
    durationMs: result.stats.simulatedMs,
    command: result.replayCommand,
  };
  const watchEvents = result.stats.watchEvents;
  const results: RunResults = {
    verdict: result.verdict,
    ...(result.linearizability === undefined ? {} : { linearizability: result.linearizability }),
    ...(result.txn === undefined ? {} : { txn: result.txn }),
    ...(result.watch === undefined ? {} : { watch: { ...result.watch, streams: result.stats.watchStreams, events: watchEvents } }),
    stats: { ...result.stats },
  };
  const folder = join(dir, `seed-${o.seed}-${o.workload}`);
  await writeReport(folder, info, { operations: result.operations, faults: result.faults, watches: result.watches, watchHistory: result.watchHistory }, results);
  return folder;
}

export async function jepsenSimCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parse(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`dkv jepsen sim: ${error.message}\n\n${jepsenSimHelp}`);
    return 2;
  }
  if (parsed.help) {
    process.stdout.write(jepsenSimHelp);
    return 0;
  }
  if (parsed.lease) return leaseSeeds(parsed.first, parsed.count, parsed.base, parsed.out);
  const { first, count, base, out } = parsed;
  process.stdout.write(
    `dkv jepsen sim: ${count} seed${count === 1 ? '' : 's'} from ${first}, workload ${base.workload}, ${base.nodes} nodes, ` +
      `${base.durationMs} ms of faults${base.swarm ? ' (swarm)' : ''}${base.unsafe?.staleReads === true ? ', UNSAFE stale reads' : ''}${base.unsafe?.ignoreTxnCompare === true ? ', UNSAFE Txn compares ignored' : ''}\n`,
  );
  const began = performance.now();
  const progress = new SeedProgress(process.stderr, count, `jepsen sim ${base.workload}`);
  let operations = 0;
  let violations = 0;
  let unknowns = 0;
  let watchStreams = 0;
  let watchEvents = 0;
  for (let seed = first; seed < first + count; seed++) {
    const result = await runJepsenSim({ ...base, seed });
    operations += result.operations.length;
    watchStreams += result.stats.watchStreams;
    watchEvents += result.stats.watchEvents;
    if (result.verdict === 'violation') violations++;
    if (result.verdict === 'unknown') unknowns++;
    const lines: string[] = [];
    if (count === 1) lines.push(`  ${describePlan(result.plan)}\n  ${result.faults.length} fault windows, ${describeTransfers(result.stats)}; trace hash ${result.stats.traceHash.toString(16).padStart(8, '0')}\n`);
    if (result.verdict !== 'ok') {
      const folder = await writeFailure(out, result);
      lines.push(`seed ${seed}: ${result.verdict.toUpperCase()}: ${describeOutcome(result)}\n  replay: ${result.replayCommand}\n  report: ${folder}\n`);
    }
    if (lines.length > 0) {
      progress.clear();
      process.stdout.write(lines.join(''));
    }
    progress.update({ done: seed - first + 1, violations, unknowns }, performance.now() - began);
  }
  progress.clear();
  const seconds = (performance.now() - began) / 1000;
  const ok = count - violations - unknowns;
  const watched = base.workload === 'watch' ? `, ${watchStreams} watch streams, ${watchEvents} watch events checked` : '';
  process.stdout.write(
    `${count} seeds: ${ok} ok, ${violations} violation${violations === 1 ? '' : 's'}, ${unknowns} unknown; ${operations} operations${watched}, ` +
      `${(count / Math.max(seconds, 1e-9)).toFixed(2)} seeds/s\n`,
  );
  return exitCodeOfVerdicts({ violations, unknowns });
}

/** `--workload lease`: seeds of the lease workload (leases.ts), each checked by the lease checker. */
async function leaseSeeds(first: number, count: number, base: Omit<LeaseSimOptions, 'seed'>, out: string): Promise<number> {
  const unsafe = Object.entries(base.unsafe ?? {}).filter(([, on]) => on).map(([name]) => name);
  process.stdout.write(
    `dkv jepsen sim: ${count} seed${count === 1 ? '' : 's'} from ${first}, workload lease, ${base.nodes} nodes, ` +
      `${base.durationMs} ms of faults${base.swarm ? ' (swarm)' : ''}${unsafe.length > 0 ? `, UNSAFE ${unsafe.join(', ')}` : ''}\n`,
  );
  const began = performance.now();
  const progress = new SeedProgress(process.stderr, count, 'jepsen sim lease');
  let leases = 0;
  let renewals = 0;
  let violations = 0;
  for (let seed = first; seed < first + count; seed++) {
    const result = await runLeaseSim({ ...base, seed });
    leases += result.stats.leases;
    renewals += result.stats.acknowledged;
    progress.clear();
    if (count === 1) {
      process.stdout.write(
        `  ${describePlan(result.plan)}; holders: ${result.holderFaults.join(',') || 'no faults'}\n` +
          `  ${result.faults.length} fault windows, ${describeTransfers(result.stats)}, ${result.stats.leases} leases, ${result.stats.expired} expired, ${result.stats.revoked} revoked; trace hash ${result.stats.traceHash.toString(16).padStart(8, '0')}\n`,
      );
    }
    if (result.verdict !== 'ok') {
      violations++;
      const folder = await writeLeaseFailure(out, result);
      const more = result.failures.length > 1 ? ` (+${result.failures.length - 1} more)` : '';
      process.stdout.write(`seed ${seed}: VIOLATION: ${result.failures[0]}${more}\n  replay: ${result.replayCommand}\n  report: ${folder}\n`);
    }
    progress.update({ done: seed - first + 1, violations, unknowns: 0 }, performance.now() - began);
  }
  progress.clear();
  const seconds = (performance.now() - began) / 1000;
  process.stdout.write(
    `${count} seeds, ${leases} leases, ${renewals} acknowledged grants and renewals, ${violations} violation${violations === 1 ? '' : 's'}, ` +
      `${(count / Math.max(seconds, 1e-9)).toFixed(2)} seeds/s\n`,
  );
  return exitCodeOfVerdicts({ violations, unknowns: 0 });
}

async function writeLeaseFailure(dir: string, result: LeaseSimResult): Promise<string> {
  const folder = join(dir, `seed-${result.options.seed}-lease`);
  await mkdir(folder, { recursive: true });
  await writeFile(join(folder, 'lease-history.json'), leaseHistoryJson(result));
  return folder;
}
