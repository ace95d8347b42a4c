/**
 * `dkv jepsen run`: a partition test against a real local cluster (DKV or etcd), from the
 * command line. Parses the options, runs `runReal` with a progress bar, writes the report folder
 * and prints the verdict. Exit codes: 0 ok, 1 violation, 2 unknown (the checker ran out of time,
 * the committed history could not be read, or the run was interrupted), a usage error or a
 * harness error (the cluster did not start, …).
 */
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { UsageError, intOption, parseOptions } from '../../src/cli/args.js';
import type { ElectionResult, ElleResult, FencingResult, LinearizabilityResult } from '../check/index.js';
import { ProgressBar, exitCodeOfVerdicts, pauseLine, writeReport } from '../report/index.js';
import type { RealCluster, Target } from './cluster.js';
import { defaultEtcdBin } from './cluster.js';
import { electionObservers } from './election-clients.js';
import { type FaultKind, defaultFaultKinds, faultKinds, isFaultKind } from './nemesis.js';
import { type RealRunOutcome, checkTimeBudgetMsDefault, runReal, shardsFaultProblem } from './run.js';
import { watchCutMs, watchersPerNodeDefault, watchersPerNodeMax } from './clients.js';
import { type RealWorkloadName, isRealWorkloadName, realWorkloadNames, unsupportedReason } from './workloads.js';

export const nodesMax = 9;
export const timeSecondsMin = 5;
export const timeSecondsMax = 3600;
export const clientsMax = 64;
export const checkBudgetSecondsMax = 3600;
const watchCutSeconds = watchCutMs / 1000;

export const jepsenRunHelp = `Usage: dkv jepsen run [--nodes N] [--time S] [--workload register|kv|watch|append|rw-register|counter|lock|election]
                      [--faults partition,kill,pause,delay,membership,shards] [--target dkv|etcd] [--clients N]
                      [--watchers-per-node N] [--seed S] [--out DIR] [--etcd-bin PATH] [--unsafe-stale-reads]
                      [--unsafe-ignore-txn-compare]

Starts a real local cluster on 127.0.0.1 (DKV servers, or etcd with --target etcd), routes
every member's peer traffic through a TCP proxy that can blackhole, delay or cut each direction
of each link, and runs concurrent clients through the etcd gRPC API while a nemesis injects
faults: network partitions (majority/minority, an isolated node, the isolated leader, one-way),
SIGKILL and restart of a member, SIGSTOP/SIGCONT, latency on links, and (asked for by name)
member replacement as etcd's runbook does it: MemberRemove, the data dir wiped, MemberAdd on
the same peer URL, a start with --initial-cluster-state existing, and (asked for by name, DKV
only, register and kv workloads) shard changes: the run's keys live in a store of one
shard placed on every member but one, and the fault moves a replica of one of its shards,
often a leader's, to the member without one (dkv.v1.Admin.ShardMove), or with register,
every second time, splits a shard (ShardSplit, up to 3 shards); each shard's committed
history is read on its own, and its replicas must hash alike (HashKV). Faults last a few
seconds with healthy gaps; the last fifth of the run is healed. The recorded history is checked
for linearizability (register, counter: per key; kv and watch: etcd's key space with revisions,
decided from them against the committed history; lock: fencing tokens), the append and
rw-register workloads' Txns for Elle's transactional anomalies (G0, G1a/b/c, G-single, G2,
lost updates, stale reads against real time), watch streams against etcd's watch guarantees and against each other
(every member's streams the same events in the same order), every acknowledged write
against the committed history read back at the end, (lock) fenced writes for interleaving and
(election) the election's leaders against the committed history. The report folder gets history.json, results.json and index.html
(a timeline of every operation with the fault windows and any violation highlighted).

Options:
  --nodes N          cluster members (default 3, at most ${nodesMax})
  --time S           seconds of load and faults (default 60); --time-limit S is the same
  --workload W       register (read/write/cas per key), kv (get/put/delete/txn), watch
                     (kv writes while --watchers-per-node Watch streams are held on every
                     member besides the clients, half from now, half from revision 1; each is
                     cut every ${watchCutSeconds} s or broken by faults and resumed where it left off,
                     alternately on another member and its own), append (transactions of
                     reads and appends to per-key lists, each one etcd Txn guarded by the
                     mod revisions last seen; checked by Elle), rw-register (transactions of
                     reads and writes of unique values, each one etcd Txn; Elle), counter
                     (dkv.v1.Counter increments and reads, checked with a counter model; DKV
                     only) or lock (clients take one etcd lock with 2 s leases they keep alive
                     and write a shared resource fenced — dkv.v1.KV Put with the lock key's
                     create revision as fencing token, DKV only — and unfenced — a plain Put
                     trusting the lease; each client is a process of its own, and holders are
                     stopped with SIGSTOP past their lease (state T checked in /proc), then
                     SIGCONT, and write as if nothing happened — the first 0.5 s after the
                     lock is first held, server faults 3 s after
                     it ends. Interleaved fenced writes
                     are a violation; per pause the report says whether another client took
                     the lock and how many of the paused holder's fenced writes were refused
                     and lease-only writes overlapped a newer holder) or election
                     (the clients campaign on one etcd election with 2 s leases they keep
                     alive, proclaim new values while they lead, then resign, let the lease
                     lapse, or pause past it and proclaim as if still leading; ${electionObservers}
                     observers hold Observe streams, reopened on another member when they
                     break. Checked against the committed history: at most one leader per
                     revision, acknowledged campaigns led, observers see leaders in the true
                     order, acknowledged proclaims came from the leader) (default register)
  --faults LIST      comma-separated: ${faultKinds.join(', ')}; "none" for none
                     (default ${defaultFaultKinds.join(',')});
                     the lock workload pauses its holders and the election workload its
                     leaders whatever this says
  --target T         dkv (node bin/dkv.js server) or etcd (default dkv)
  --etcd-bin PATH    the etcd binary for --target etcd (default ${defaultEtcdBin})
  --clients N        concurrent clients (default 5)
  --watchers-per-node N
                     (watch) Watch streams homed on each member (default ${watchersPerNodeDefault})
  --seed S           seeds the fault schedule and the operations (default: time-based, printed)
  --out DIR          the report folder; cluster data and logs go to DIR/cluster
                     (default .dkv/jepsen/<time>-<target>-<workload>, never the current
                     folder); a folder that already holds a run's cluster is refused
  --check-budget S   seconds the linearizability search may take before it answers unknown
                     (default ${checkTimeBudgetMsDefault / 1000})
  --auth             (register, kv) enable auth first: the clients call as a user who may read
                     and write only the run's keys, each with a token of its member's (etcd's
                     simple tokens, so a restarted member makes its clients authenticate again)
  --unsafe-stale-reads
                     DKV only, test only: start the servers with --unsafe-stale-reads, so
                     reads skip ReadIndex and may be stale; the checker must report it
  --unsafe-ignore-txn-compare
                     DKV only, test only: start the servers with --unsafe-ignore-txn-compare,
                     so every Txn that writes runs its success branch whatever its compares say (lost
                     updates); the append workload's checker must report it
  -h, --help         show this text

Exit status: 0 ok, 1 violation (wins over unknown), 2 unknown (a checker ran out of budget, the
committed history could not be read — never taken for ok), interrupted, usage or harness error.
`;

function parseFaults(value: string | undefined): FaultKind[] {
  if (value === undefined) return [...defaultFaultKinds];
  if (value === 'none' || value === '') return [];
  const faults = value.split(',').map((f) => f.trim()).filter((f) => f !== '');
  for (const fault of faults) {
    if (!isFaultKind(fault)) throw new UsageError(`--faults: unknown fault "${fault}" (choose from ${faultKinds.join(', ')})`);
  }
  return [...new Set(faults as FaultKind[])];
}

/** `--time-limit` is `--time` by Jepsen's name for it. */
function timeOption(time: string | undefined, timeLimit: string | undefined): string | undefined {
  if (time !== undefined && timeLimit !== undefined) throw new UsageError('--time and --time-limit are the same option: give one');
  return time ?? timeLimit;
}

/**
 * Why a report folder cannot take a new run (undefined: it can): a run's cluster data directories
 * would be reused — the members would start on an old cluster's logs — and its report overwritten.
 */
export function staleOutReason(outDir: string): string | undefined {
  const cluster = join(outDir, 'cluster');
  if (existsSync(cluster) && readdirSync(cluster).length > 0) {
    return `--out ${outDir} already holds a run (${cluster} is not empty): give a fresh folder, or remove that one first`;
  }
  return undefined;
}

export interface JepsenRunConfig {
  readonly target: Target;
  readonly nodes: number;
  readonly timeMs: number;
  readonly workload: RealWorkloadName;
  readonly faults: FaultKind[];
  readonly clients: number;
  readonly watchersPerNode: number;
  readonly seed: number;
  readonly outDir: string;
  readonly etcdBin: string;
  readonly checkTimeBudgetMs: number;
  readonly unsafeStaleReads: boolean;
  readonly unsafeIgnoreTxnCompare: boolean;
  /** --auth: auth enabled before the clients start (register and kv workloads). */
  readonly auth: boolean;
}

/** Parses the command line; undefined means --help. Throws UsageError. */
export function parseJepsenRunArgs(argv: string[], now: Date = new Date()): JepsenRunConfig | undefined {
  const values = parseOptions(argv, {
    nodes: { type: 'string' },
    time: { type: 'string' },
    'time-limit': { type: 'string' },
    workload: { type: 'string' },
    faults: { type: 'string' },
    target: { type: 'string' },
    'etcd-bin': { type: 'string' },
    clients: { type: 'string' },
    'watchers-per-node': { type: 'string' },
    seed: { type: 'string' },
    out: { type: 'string' },
    'check-budget': { type: 'string' },
    'unsafe-stale-reads': { type: 'boolean' },
    'unsafe-ignore-txn-compare': { type: 'boolean' },
    auth: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help === true) return undefined;
  const target = values.target ?? 'dkv';
  if (target !== 'dkv' && target !== 'etcd') throw new UsageError(`--target must be dkv or etcd, got "${target}"`);
  const workload = values.workload ?? 'register';
  if (!isRealWorkloadName(workload)) throw new UsageError(`--workload must be one of ${realWorkloadNames.join(', ')}, got "${workload}"`);
  const unsupported = unsupportedReason(workload, target);
  if (unsupported !== undefined) throw new UsageError(unsupported);
  const unsafeStaleReads = values['unsafe-stale-reads'] === true;
  if (unsafeStaleReads && target !== 'dkv') throw new UsageError('--unsafe-stale-reads works only with --target dkv');
  const unsafeIgnoreTxnCompare = values['unsafe-ignore-txn-compare'] === true;
  if (unsafeIgnoreTxnCompare && target !== 'dkv') throw new UsageError('--unsafe-ignore-txn-compare works only with --target dkv');
  if (values['watchers-per-node'] !== undefined && workload !== 'watch') throw new UsageError('--watchers-per-node is for --workload watch');
  const auth = values.auth === true;
  if (auth && workload !== 'register' && workload !== 'kv') throw new UsageError('--auth is for --workload register or kv');
  const faults = parseFaults(values.faults);
  const nodes = intOption(values.nodes, 'nodes', 3, 1, nodesMax);
  const shardsProblem = shardsFaultProblem({ faults, target, nodes, workload, auth });
  if (shardsProblem !== undefined) throw new UsageError(shardsProblem);
  const stamp = now.toISOString().replace(/[:.]/g, '-');
  return {
    target,
    nodes,
    timeMs: 1000 * intOption(timeOption(values.time, values['time-limit']), 'time', 60, timeSecondsMin, timeSecondsMax),
    workload,
    faults,
    clients: intOption(values.clients, 'clients', 5, 1, clientsMax),
    watchersPerNode: intOption(values['watchers-per-node'], 'watchers-per-node', watchersPerNodeDefault, 1, watchersPerNodeMax),
    seed: intOption(values.seed, 'seed', now.getTime() % 1_000_000_000, 0, Number.MAX_SAFE_INTEGER),
    outDir: resolve(values.out ?? join('.dkv', 'jepsen', `${stamp}-${target}-${workload}`)),
    etcdBin: values['etcd-bin'] ?? defaultEtcdBin,
    checkTimeBudgetMs: 1000 * intOption(values['check-budget'], 'check-budget', checkTimeBudgetMsDefault / 1000, 1, checkBudgetSecondsMax),
    unsafeStaleReads,
    unsafeIgnoreTxnCompare,
    auth,
  };
}

/** The command line that reruns a configuration (same seed, same schedule). */
export function rerunCommand(config: JepsenRunConfig): string {
  const parts = [
    'dkv jepsen run',
    `--target ${config.target}`,
    `--nodes ${config.nodes}`,
    `--time ${config.timeMs / 1000}`,
    `--workload ${config.workload}`,
    `--faults ${config.faults.length === 0 ? 'none' : config.faults.join(',')}`,
    `--clients ${config.clients}`,
    `--seed ${config.seed}`,
  ];
  if (config.workload === 'watch' && config.watchersPerNode !== watchersPerNodeDefault) parts.push(`--watchers-per-node ${config.watchersPerNode}`);
  if (config.target === 'etcd' && config.etcdBin !== defaultEtcdBin) parts.push(`--etcd-bin ${config.etcdBin}`);
  if (config.unsafeStaleReads) parts.push('--unsafe-stale-reads');
  if (config.unsafeIgnoreTxnCompare) parts.push('--unsafe-ignore-txn-compare');
  if (config.auth) parts.push('--auth');
  return parts.join(' ');
}

/** A violation wins; an unknown verdict or an interrupted run is never success. */
export function exitCodeOf(outcome: Pick<RealRunOutcome, 'results' | 'interrupted'>): number {
  const verdict = outcome.results.verdict;
  return exitCodeOfVerdicts({ violations: verdict === 'violation' ? 1 : 0, unknowns: verdict === 'unknown' || outcome.interrupted ? 1 : 0 });
}

/** Examples listed under the transactional checker's summary line (all are in results.json). */
export const elleExamplesListedMax = 5;

/** The transactional checker's lines: verdict and size, anomaly counts, what they rule out, examples. */
export function elleSummary(txn: ElleResult): string[] {
  const { stats } = txn;
  const lines = [
    `  transactions (Elle, ${txn.model}): ${txn.verdict}, ${stats.txns} txns (${stats.committed} committed, ${stats.unknownIncluded} of unknown outcome proved committed), ${stats.edges} dependencies, ${Math.round(stats.elapsedMs)} ms`,
  ];
  if (txn.verdict === 'ok') return lines;
  const counts = Object.entries(txn.counts).map(([name, n]) => `${name} ×${n}`);
  lines.push(`    anomalies: ${counts.join(', ')}; not ${txn.notSatisfied.join(', ')}`);
  for (const anomaly of txn.anomalies.slice(0, elleExamplesListedMax)) lines.push(`    ${anomaly.name}: ${anomaly.explanation}`);
  return lines;
}

/** The checker's partitions, as the report names them. */
function independentKeys(result: LinearizabilityResult): string {
  const keys = result.partitions.filter((p) => p.key !== '').length;
  return keys === 0 ? 'whole history' : `${keys} independent key${keys === 1 ? '' : 's'}`;
}

function summary(outcome: RealRunOutcome): string[] {
  const { results, linearizability, acknowledged, watch } = outcome;
  const stats = results.stats;
  const lines = [
    `verdict: ${results.verdict}${outcome.interrupted ? ' (interrupted)' : ''}`,
    `  operations: ${stats.operations ?? 0} (ok ${stats.ok ?? 0}, fail ${stats.fail ?? 0}, info ${stats.info ?? 0})`,
    `  faults: ${stats.faults ?? 0} (partition ${stats['faults.partition'] ?? 0}, kill ${stats['faults.kill'] ?? 0}, pause ${stats['faults.pause'] ?? 0}, delay ${stats['faults.delay'] ?? 0}, membership ${stats['faults.membership'] ?? 0}${(stats['faults.shards'] ?? 0) > 0 ? `, shards ${stats['faults.shards']}` : ''}${outcome.fencing === undefined ? '' : `, holder pause ${stats['faults.holder-pause'] ?? 0}`}${outcome.election === undefined ? '' : `, leader pause ${stats['faults.leader-pause'] ?? 0}`})`,
  ];
  if (linearizability !== undefined) {
    lines.push(
      `  linearizability (${linearizability.model}${linearizability.method === 'revisions' ? ', decided by revisions against the committed history' : ''}): ${linearizability.verdict}, ${independentKeys(linearizability)}, ${Math.round(linearizability.elapsedMs)} ms`,
    );
    for (const partition of linearizability.partitions) {
      if (partition.verdict !== 'ok') lines.push(`    ${partition.key === '' ? '(whole history)' : partition.key}: ${partition.verdict}: ${partition.message ?? ''}`);
    }
  }
  if (outcome.txn !== undefined) lines.push(...elleSummary(outcome.txn));
  if (watch !== undefined) {
    const perNode = Object.entries(stats).filter(([k]) => /^watch\.[^.]+\.streams$/.test(k)).map(([k, n]) => `${k.split('.')[1]} ${n}`);
    lines.push(`  watch: ${watch.ok ? 'ok' : 'violation'} over ${results.watch?.streams ?? 0} stream(s) (per member: ${perNode.join(', ')}), ${results.watch?.events ?? 0} event(s), each against the committed history and all against each other`);
    for (const violation of watch.violations.slice(0, 10)) lines.push(`    ${violation.message}`);
  }
  if (acknowledged !== undefined) {
    lines.push(`  acknowledged writes: ${acknowledged.checked - acknowledged.missing} of ${acknowledged.checked} found in the committed history`);
    for (const problem of acknowledged.problems) lines.push(`    ${problem}`);
  }
  if (outcome.fencing !== undefined) lines.push(...fencingSummary(outcome.fencing, results.stats['faults.holder-pause'] ?? 0, outcome.info.target));
  if (outcome.election !== undefined) lines.push(...electionSummary(outcome.election, results.stats['faults.leader-pause'] ?? 0));
  if (outcome.committedError !== undefined) lines.push(`  committed history not read: ${outcome.committedError}`);
  if (results.replicas !== undefined) {
    const r = results.replicas;
    lines.push(`  shard replicas (HashKV at one applied index): ${r.compared} of ${r.shards} shard(s) compared, ${r.diverged} diverged, ${r.unsettled} unchecked`);
    for (const problem of r.problems) lines.push(`    ${problem}`);
  }
  return lines;
}

function fencingSummary(fencing: FencingResult, holderPauses: number, target: Target): string[] {
  const { fenced, unfenced } = fencing;
  const lines = [
    target === 'dkv'
      ? `  fencing: ${fencing.ok ? 'ok' : 'violation'}: fenced writes accepted ${fenced.accepted}, refused stale ${fenced.refusedStale}, refused otherwise ${fenced.refusedOther}, unknown ${fenced.unknown}`
      : '  fencing: not run (etcd has no fenced write; dkv.v1.KV is a DKV extension)',
    `  lease-only: ${unfenced.overlaps} overlap(s) between holders, ${unfenced.interleavings} interleaved write(s), over ${unfenced.holders} holder(s); holder pauses ${holderPauses} (expected with pauses, not a failure)`,
    ...fencing.pauses.map((p) => `    pause: ${pauseLine(p)}`),
  ];
  for (const violation of fencing.violations.slice(0, 10)) lines.push(`    ${violation}`);
  return lines;
}

function electionSummary(election: ElectionResult, leaderPauses: number): string[] {
  const { stats } = election;
  const known = (n: number): string => (n < 0 ? 'not read' : String(n));
  const lines = [
    `  election: ${election.ok ? 'ok' : 'violation'}: campaigns won ${stats.campaignsWon} of ${stats.campaigns}, proclaims acknowledged ${stats.proclaimsAcknowledged} (refused ${stats.proclaimsRefused}, unknown ${stats.proclaimsUnknown}), resigns ${stats.resignsAcknowledged} of ${stats.resigns}, leader pauses ${leaderPauses}`,
    `    committed history: ${known(stats.leaders)} leader(s), ${known(stats.leaderChanges)} leader change(s), ${known(stats.states)} leader state(s); ${stats.eventsChecked} event(s) checked`,
    `    observers: ${stats.observers.map((o) => `o${o.observer} saw ${o.leaderChanges} leader change(s) over ${o.segments} stream(s)${o.skipped > 0 ? `, skipped ${o.skipped} state(s)` : ''}`).join('; ')}`,
  ];
  for (const violation of election.violations.slice(0, 10)) lines.push(`    ${violation.property}: ${violation.message}`);
  if (election.violations.length + election.omitted > 10) lines.push(`    … ${election.violations.length + election.omitted - 10} more in results.json`);
  return lines;
}

export async function jepsenRunCommand(argv: string[]): Promise<number> {
  let config: JepsenRunConfig | undefined;
  try {
    config = parseJepsenRunArgs(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`dkv jepsen run: ${error.message}\n\n${jepsenRunHelp}`);
    return 2;
  }
  if (config === undefined) {
    process.stdout.write(jepsenRunHelp);
    return 0;
  }
  return runCommand(config);
}

async function runCommand(config: JepsenRunConfig): Promise<number> {
  const stale = staleOutReason(config.outDir);
  if (stale !== undefined) {
    process.stderr.write(`dkv jepsen run: ${stale}\n`);
    return 2;
  }
  mkdirSync(config.outDir, { recursive: true });
  const command = rerunCommand(config);
  process.stdout.write(`${command}\nreport folder: ${config.outDir}\n`);
  const interrupt = new AbortController();
  let cluster: RealCluster | undefined;
  let clientProcesses: { killAllNow(): void } | undefined;
  // Whatever happens, no member or client process outlives us: a second Ctrl-C kills them now and leaves.
  const onExit = (): void => {
    clientProcesses?.killAllNow();
    cluster?.killAllNow();
  };
  const onSigint = (): void => {
    if (interrupt.signal.aborted) {
      onExit();
      process.exit(130);
    }
    process.stderr.write('\ninterrupted: stopping the run (Ctrl-C again to kill everything now)\n');
    interrupt.abort();
  };
  process.on('exit', onExit);
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  const bar = new ProgressBar(process.stderr, config.timeMs, `${config.target} ${config.workload}`);
  try {
    const outcome = await runReal({
      ...config,
      command,
      signal: interrupt.signal,
      onCluster: (c) => {
        cluster = c;
      },
      onClientProcesses: (processes) => {
        clientProcesses = processes;
      },
      onProgress: (elapsedMs, counts) => bar.update(elapsedMs, counts),
      log: (message) => {
        if (process.env.DKV_JEPSEN_VERBOSE === '1') process.stderr.write(`${message}\n`);
      },
    });
    bar.done();
    const paths = await writeReport(config.outDir, outcome.info, outcome.history, outcome.results);
    process.stdout.write(`${summary(outcome).join('\n')}\nreport: ${paths.htmlPath}\n`);
    return exitCodeOf(outcome);
  } catch (error) {
    bar.done();
    process.stderr.write(`dkv jepsen run: ${(error as Error).message}\n`);
    return 2;
  } finally {
    process.off('exit', onExit);
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
  }
}
