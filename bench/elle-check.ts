/**
 * The transactional (Elle) checker on 100k-transaction histories: for list-append and
 * rw-register, a serial execution spread over ~10 concurrent client processes (valid), and the
 * same history with one stale read injected (a read-only transaction moved to begin after a
 * committed write it missed returned: G-single-realtime), and one where 2% of the transactions read
 * from a replica 1-3 versions behind (many cycles). Prints check time, edges, strongly
 * connected components and what was found. Then the kv checker that decides from revisions
 * (`check/kv-revisions.ts`) on a 100k-operation kv history, valid and with a stale read. Prints
 * numbers; never gates CI.
 *
 *   npx tsx bench/elle-check.ts [--txns 100000] [--processes 10] [--runs 3]
 */
import { performance } from 'node:perf_hooks';
import { type ElleModel, type ElleTxn, checkElle, checkKvByRevision } from '../jepsen-lite/check/index.js';
import type { KvOutput, Operation } from '../jepsen-lite/history.js';
import { Random, serialHistory, staleRead } from '../test/jepsen-lite/elle-histories.js';
import { Random as LinRandom, generateHistory, recordingKv } from '../test/jepsen-lite/lin-histories.js';

function argument(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
}

const txnCount = argument('--txns', 100_000);
const processes = argument('--processes', 10);
const runs = argument('--runs', 3);

function measure(model: ElleModel, history: string, txns: readonly ElleTxn[]): Record<string, string> {
  // Wall time, and the process's CPU time (user + system: GC threads included), which a loaded
  // machine inflates less.
  const times: number[] = [];
  const cpuTimes: number[] = [];
  let result: ReturnType<typeof checkElle> | undefined;
  for (let run = 0; run < runs; run++) {
    const cpuBefore = process.cpuUsage();
    result = checkElle(model, txns);
    const cpu = process.cpuUsage(cpuBefore);
    times.push(result.stats.elapsedMs);
    cpuTimes.push((cpu.user + cpu.system) / 1000);
  }
  if (result === undefined) throw new Error('--runs must be at least 1');
  times.sort((a, b) => a - b);
  cpuTimes.sort((a, b) => a - b);
  const { stats } = result;
  return {
    model,
    history,
    txns: stats.txns.toLocaleString('en'),
    mops: txns.reduce((sum, txn) => sum + txn.mops.length, 0).toLocaleString('en'),
    'check ms (min)': times[0]!.toFixed(0),
    'check ms (median)': times[Math.floor(times.length / 2)]!.toFixed(0),
    'cpu ms (min)': cpuTimes[0]!.toFixed(0),
    'dep edges': stats.dependencyEdges.toLocaleString('en'),
    'rt+process edges': stats.realtimeEdges.toLocaleString('en'),
    'unknown included': String(stats.unknownIncluded),
    sccs: String(stats.sccs),
    'largest scc': String(stats.largestScc),
    verdict: result.verdict,
    found: Object.entries(result.counts).map(([name, count]) => `${name}×${count}`).join(' ') || '-',
  };
}

const rows: Record<string, string>[] = [];
for (const model of ['list-append', 'rw-register'] as const) {
  const random = new Random(20_261_204);
  const generateStart = performance.now();
  const history = serialHistory(model, random, { txns: txnCount, processes });
  const generateMs = performance.now() - generateStart;
  console.log(`${model}: generated ${txnCount.toLocaleString('en')} transactions in ${generateMs.toFixed(0)} ms`);
  rows.push(measure(model, 'valid', history.txns));
  const broken = staleRead(history, random);
  if (broken === undefined) throw new Error('no place for a stale read');
  rows.push(measure(model, 'stale read', broken.txns));
  const example = checkElle(model, broken.txns).anomalies[0];
  console.log(`  injected: ${broken.description}\n  found:    ${example?.name}: ${example?.explanation}`);
  // A broken store: 2% of transactions read from a replica 1-3 versions behind (many cycles).
  const lagging = serialHistory(model, new Random(20_261_205), { txns: txnCount, processes, staleRate: 0.02 });
  rows.push(measure(model, 'lagging 2%', lagging.txns));
}
console.table(rows);

// The kv histories' checker: linearizability decided by revisions against the committed history
// (`check/kv-revisions.ts`), on a 100k-operation kv history of 8 keys (get, put, delete, txn; some
// operations refused, some of unknown outcome), valid and with one stale read.
const kvRows: Record<string, string>[] = [];
{
  const prefix = 'bench/';
  const { reference, committed } = recordingKv(prefix, ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']);
  const ops = generateHistory(reference, new LinRandom(20_261_206), { processes, operations: txnCount, failRate: 0.02, infoRate: 0.01 });
  const measureKv = (history: string, operations: readonly Operation[]): void => {
    const times: number[] = [];
    let result: ReturnType<typeof checkKvByRevision>;
    for (let run = 0; run < runs; run++) {
      result = checkKvByRevision(operations, { revisions: committed }, prefix);
      times.push(result!.elapsedMs);
    }
    times.sort((a, b) => a - b);
    kvRows.push({
      history,
      operations: operations.length.toLocaleString('en'),
      revisions: committed.length.toLocaleString('en'),
      'check ms (min)': times[0]!.toFixed(0),
      'check ms (median)': times[Math.floor(times.length / 2)]!.toFixed(0),
      verdict: result!.verdict,
      found: result!.partitions[0]?.message?.slice(0, 100) ?? '-',
    });
  };
  measureKv('valid', ops);
  // A get that answered an older revision's value, after a write that finished before it began.
  const stale = [...ops];
  const read = [...stale].reverse().find((op) => op.status === 'ok' && (op.input as { f: string }).f === 'get' && (op.output as KvOutput).revision > 10)!;
  stale[stale.indexOf(read)] = { ...read, output: { f: 'get', value: null, modRevision: 0, createRevision: 0, version: 0, revision: 1 } };
  measureKv('stale read', stale);
}
console.table(kvRows);
