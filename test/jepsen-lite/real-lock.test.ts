/**
 * The lock workload of `dkv jepsen run`: the fencing checker on crafted histories (it must fail
 * on interleaved fenced writes, count lease-only overlaps, catch a refused write that was
 * committed, and judge each holder pause), the holder-pause plan, and real runs on a 3-node DKV
 * cluster whose lock clients are processes of their own: one with partitions, kills and holders
 * SIGSTOPped past their lease (seen stopped in /proc, another client took the lock, the paused
 * holder's fenced write was refused, fenced writes never interleave, lease-only overlaps
 * reported), and two ended early — by an abort while a holder is stopped, and by SIGINT to the
 * `dkv` command — after which no client process is left.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type PausedHolder, type WatchHistory, checkFencing, checkLinearizability, fenceStaleError, pauseOutcomes } from '../../jepsen-lite/check/index.js';
import type { LockInput, LockOutput, Operation, UnfencedWriteInput, UnfencedWriteOutput } from '../../jepsen-lite/history.js';
import { jepsenRunCommand, parseJepsenRunArgs } from '../../jepsen-lite/real/command.js';
import { healedTailFraction, holderPauseFirstAfterHoldMs, holderPauseTtlFactorMax, holderPauseTtlFactorMin, planHolderPauses } from '../../jepsen-lite/real/nemesis.js';
import { processState } from '../../jepsen-lite/real/proc-state.js';
import { runReal } from '../../jepsen-lite/real/run.js';
import { parseHistoryJson } from '../../jepsen-lite/report/index.js';

// ---- Crafted histories ------------------------------------------------------------------------

let nextId = 0;

function op<I, O>(process: number, call: number, ret: number | undefined, input: I, result: { output: O } | { status: 'fail' | 'info'; error: string }): Operation<I, O> {
  const base = { id: nextId++, process, call, input };
  if ('output' in result) return { ...base, ret: ret!, status: 'ok', output: result.output };
  return { ...base, ...(ret === undefined ? {} : { ret }), status: result.status, error: result.error };
}

const acquire = (process: number, call: number, ret: number, token: number): Operation =>
  op<LockInput, LockOutput>(process, call, ret, { f: 'acquire', lock: 'L' }, { output: { f: 'acquire', token } });
const fenced = (process: number, call: number, ret: number, token: number, revision: number): Operation =>
  op<LockInput, LockOutput>(process, call, ret, { f: 'write', lock: 'L', token, value: `p${process}-t${token}-r${revision}` }, { output: { f: 'write', accepted: true, revision } });
const stale = (process: number, call: number, ret: number, token: number, value: string): Operation =>
  op<LockInput, LockOutput>(process, call, ret, { f: 'write', lock: 'L', token, value }, { status: 'fail', error: `${fenceStaleError}: FAILED_PRECONDITION: dkv: fencing token is stale` });
const unfenced = (process: number, call: number, ret: number, token: number, revision: number): Operation =>
  op<UnfencedWriteInput, UnfencedWriteOutput>(process, call, ret, { f: 'unfenced-write', lock: 'L', token, value: `u${process}-${revision}` }, { output: { f: 'unfenced-write', revision } });

/** Holder 1 (token 10) pauses from 100 to 900 ms; holder 2 (token 20) takes the lock at 400. */
function pausedHolderHistory(): Operation[] {
  return [
    acquire(1, 0, 10, 10),
    fenced(1, 20, 30, 10, 11),
    unfenced(1, 30, 40, 10, 12),
    acquire(2, 5, 400, 20),
    fenced(2, 410, 420, 20, 21),
    unfenced(2, 420, 430, 20, 22),
    // Holder 1 wakes up and writes as if it still held the lock.
    stale(1, 900, 910, 10, 'p1-t10-late'),
    unfenced(1, 910, 920, 10, 23),
  ];
}

describe('the fencing checker', () => {
  it('passes a paused holder whose fenced write was refused, and counts the lease-only overlap it made', () => {
    const result = checkFencing(pausedHolderHistory());
    expect(result.violations).toEqual([]);
    expect(result.ok).toBe(true);
    expect(result.fenced).toMatchObject({ attempted: 3, accepted: 2, refusedStale: 1, refusedOther: 0, unknown: 0, committed: -1 });
    expect(result.unfenced).toMatchObject({ attempted: 3, acknowledged: 3, holders: 2, overlaps: 1, interleavings: 1 });
    expect(result.unfenced.overlapExamples[0]).toEqual([
      { process: 1, token: 10, start: 10, end: 910 },
      { process: 2, token: 20, start: 400, end: 420 },
    ]);
    // The lock model agrees (refused writes are `fail`: they did not happen).
    const modelOps = pausedHolderHistory().filter((o) => (o.input as { f: string }).f !== 'unfenced-write');
    expect(checkLinearizability('lock', modelOps).verdict).toBe('ok');
  });

  it('fails on interleaved fenced writes: an older token accepted after a newer one', () => {
    const history = [
      acquire(1, 0, 10, 10),
      fenced(1, 20, 30, 10, 11),
      acquire(2, 5, 400, 20),
      fenced(2, 410, 420, 20, 21),
      // The paused holder's write got through: the fence did not hold.
      fenced(1, 900, 910, 10, 23),
    ];
    const result = checkFencing(history);
    expect(result.ok).toBe(false);
    expect(result.violations).toHaveLength(1);
    expect(result.violations[0]).toMatch(/token 10\) at revision 23 was accepted after .*token 20\) at revision 21/);
  });

  it('fails on two accepted writes at one revision', () => {
    const result = checkFencing([acquire(1, 0, 10, 10), fenced(1, 20, 30, 10, 11), fenced(1, 40, 50, 10, 11)]);
    expect(result.ok).toBe(false);
    expect(result.violations[0]).toMatch(/share revision 11/);
  });

  it('checks the committed history: a write refused as stale must not be there, and tokens never go down', () => {
    const history = pausedHolderHistory();
    const put = (revision: number, value: string): WatchHistory['revisions'][number] => ({
      revision,
      events: [{ type: 'put', key: Buffer.from('R'), value: Buffer.from(value), createRevision: 11, modRevision: revision, version: 1, lease: 0 }],
    });
    const valueOf = (o: Operation | undefined): string => (o!.input as { value: string }).value;
    const good: WatchHistory = { revisions: [put(11, valueOf(history[1])), put(21, valueOf(history[4]))] };
    const committedGood = checkFencing(history, { committed: { history: good, resourceKey: Buffer.from('R') } });
    expect(committedGood.violations).toEqual([]);
    expect(committedGood.fenced.committed).toBe(2);

    const bad: WatchHistory = { revisions: [...good.revisions, put(24, 'p1-t10-late')] };
    const committedBad = checkFencing(history, { committed: { history: bad, resourceKey: Buffer.from('R') } });
    expect(committedBad.ok).toBe(false);
    expect(committedBad.violations.join('\n')).toMatch(/refused as stale but is in the committed history/);
    expect(committedBad.violations.join('\n')).toMatch(/committed write .*token 10\) at revision 24 follows .*token 20\)/);

    const missing: WatchHistory = { revisions: [put(11, valueOf(history[1]))] };
    expect(checkFencing(history, { committed: { history: missing, resourceKey: Buffer.from('R') } }).violations).toEqual([
      expect.stringMatching(/accepted write .*revision 21 is not in the committed history/),
    ]);
  });

  it('does not count a holder that stopped writing before the next one acquired', () => {
    const history = [acquire(1, 0, 10, 10), unfenced(1, 20, 30, 10, 11), acquire(2, 5, 400, 20), unfenced(2, 410, 420, 20, 21)];
    expect(checkFencing(history).unfenced).toMatchObject({ holders: 2, overlaps: 0, interleavings: 0 });
  });
});

/** Holder 1's pause in `pausedHolderHistory`: stopped from 100 to 900 ms, while holder 2 acquired at 400. */
const pauseOfHolder1: PausedHolder = { process: 1, pid: 4242, token: 10, start: 100, end: 900, stopped: true };

describe('holder pause outcomes', () => {
  it('sees the lock taken over during the pause, the fenced write after it refused, the lease-only write overlapping', () => {
    const [outcome] = pauseOutcomes(pausedHolderHistory(), [pauseOfHolder1]);
    expect(outcome).toEqual({
      ...pauseOfHolder1,
      takenOverBy: [20],
      fencedAfter: { accepted: 0, refusedStale: 1, other: 0 },
      unfencedAfter: { acknowledged: 1, overlapping: 1 },
    });
    expect(checkFencing(pausedHolderHistory(), { pauses: [pauseOfHolder1] }).pauses).toEqual([outcome]);
  });

  it('a pause nobody used: no takeover, the writes after it accepted and overlapping nothing', () => {
    const history = [acquire(1, 0, 10, 10), fenced(1, 20, 30, 10, 11), fenced(1, 950, 960, 10, 12), unfenced(1, 960, 970, 10, 13), acquire(2, 5, 1500, 20)];
    const result = checkFencing(history, { pauses: [pauseOfHolder1] });
    expect(result.ok).toBe(true);
    expect(result.pauses[0]).toMatchObject({ takenOverBy: [], fencedAfter: { accepted: 1, refusedStale: 0, other: 0 }, unfencedAfter: { acknowledged: 1, overlapping: 0 } });
  });

  it('counts only the paused holder\'s writes after the pause, and an acquire that returned after the pause is no takeover', () => {
    const history = [
      acquire(1, 0, 10, 10),
      unfenced(1, 30, 40, 10, 11),
      acquire(2, 5, 950, 20),
      unfenced(2, 960, 970, 20, 21),
      stale(1, 1000, 1010, 10, 'p1-t10-late'),
      unfenced(1, 1010, 1020, 10, 22),
    ];
    const [outcome] = pauseOutcomes(history, [pauseOfHolder1]);
    expect(outcome).toMatchObject({ takenOverBy: [], fencedAfter: { accepted: 0, refusedStale: 1, other: 0 }, unfencedAfter: { acknowledged: 1, overlapping: 1 } });
  });

  it('fails when the paused holder\'s fenced write was accepted after a newer holder acquired', () => {
    const history = [acquire(1, 0, 10, 10), fenced(1, 20, 30, 10, 11), acquire(2, 5, 400, 20), fenced(1, 900, 910, 10, 12)];
    const result = checkFencing(history, { pauses: [pauseOfHolder1] });
    expect(result.ok).toBe(false);
    expect(result.violations).toEqual([expect.stringMatching(/token 10\) after its holder's pause was accepted though a newer holder had acquired the lock at 400 ms/)]);
    expect(result.pauses[0]!.fencedAfter.accepted).toBe(1);
    // Without the pause the same history passes the order check (the newer holder never wrote).
    expect(checkFencing(history).ok).toBe(true);
  });
});

describe('planHolderPauses', () => {
  it('is deterministic, starts early, and every pause ends before the healed tail', () => {
    const options = { runMs: 15_000, leaseTtlMs: 2000 };
    expect(planHolderPauses({ ...options, seed: 4 })).toEqual(planHolderPauses({ ...options, seed: 4 }));
    for (let seed = 0; seed < 100; seed++) {
      const plan = planHolderPauses({ ...options, seed });
      expect(plan.length).toBeGreaterThanOrEqual(1);
      expect(plan[0]!.at).toBe(holderPauseFirstAfterHoldMs);
      for (const pause of plan) {
        expect(pause.ttlFactor).toBeGreaterThanOrEqual(holderPauseTtlFactorMin);
        expect(pause.ttlFactor).toBeLessThanOrEqual(holderPauseTtlFactorMax);
        expect(pause.at + pause.ttlFactor * options.leaseTtlMs).toBeLessThanOrEqual(options.runMs * (1 - healedTailFraction));
      }
    }
    expect(planHolderPauses({ runMs: 60_000, leaseTtlMs: 2000, seed: 1 }).length).toBeGreaterThan(3);
  });
});

describe('dkv jepsen run --workload lock: options', () => {
  it('takes lock on both targets and counter only on DKV', () => {
    expect(parseJepsenRunArgs(['--workload', 'lock', '--target', 'etcd'])?.workload).toBe('lock');
    expect(parseJepsenRunArgs(['--workload', 'counter'])?.workload).toBe('counter');
    expect(() => parseJepsenRunArgs(['--workload', 'counter', '--target', 'etcd'])).toThrow(/etcd has no counter/);
  });
});

// ---- A real run -------------------------------------------------------------------------------

const runSeconds = 20;
const seed = 12;
const out = mkdtempSync(join(tmpdir(), 'dkv-jepsen-lock-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

interface PauseResult {
  process: number;
  pid: number;
  token: number;
  start: number;
  end: number;
  stopped: boolean;
  takenOverBy: number[];
  fencedAfter: { accepted: number; refusedStale: number; other: number };
  unfencedAfter: { acknowledged: number; overlapping: number };
}

interface LockResults {
  verdict: string;
  linearizability: { verdict: string };
  fencing: {
    ok: boolean;
    violations: string[];
    fenced: { accepted: number; refusedStale: number; unknown: number; committed: number };
    unfenced: { overlaps: number; holders: number };
    pauses: PauseResult[];
  };
  stats: Record<string, number>;
}

/** Waits until no pid of `pids` exists any more (false past the deadline). */
async function allGone(pids: readonly number[], deadlineMs: number): Promise<boolean> {
  const until = Date.now() + deadlineMs;
  while (pids.some((pid) => processState(pid) !== undefined)) {
    if (Date.now() > until) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

describe('dkv jepsen run --workload lock (real DKV cluster)', () => {
  it(`runs ${runSeconds} s with partitions, kills and holders SIGSTOPped past their lease: fenced writes never interleave`, async () => {
    const code = await jepsenRunCommand([
      '--target', 'dkv',
      '--nodes', '3',
      '--time', String(runSeconds),
      '--workload', 'lock',
      '--faults', 'partition,kill',
      '--clients', '4',
      '--seed', String(seed),
      '--out', out,
    ]);
    const { results } = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as { results: LockResults };
    const { history } = parseHistoryJson(readFileSync(join(out, 'history.json'), 'utf8'));
    const summary = JSON.stringify({ fencing: results.fencing, stats: results.stats });
    expect(results.fencing.violations, summary).toEqual([]);
    expect(results.fencing.ok).toBe(true);
    expect(results.linearizability.verdict, summary).toBe('ok');
    expect(results.verdict).toBe('ok');
    expect(code).toBe(0);

    // The holders wrote, and the store kept the writes it accepted (and maybe some whose client never heard back).
    const { accepted, committed, unknown } = results.fencing.fenced;
    expect(accepted).toBeGreaterThan(10);
    expect(committed).toBeGreaterThanOrEqual(accepted);
    expect(committed).toBeLessThanOrEqual(accepted + unknown);

    // Holders were really stopped: SIGSTOP, then state T in /proc/<pid>/stat, for 2.5–3.5 TTLs.
    const pauses = results.fencing.pauses;
    expect(pauses.length, summary).toBeGreaterThanOrEqual(1);
    expect(history.faults.filter((f) => f.kind === 'holder-pause')).toHaveLength(pauses.length);
    expect(results.stats['lock.pausesStopped']).toBe(pauses.length);
    for (const pause of pauses) {
      expect(pause.stopped, summary).toBe(true);
      expect(pause.end - pause.start).toBeGreaterThanOrEqual(holderPauseTtlFactorMin * 2000);
    }
    // The first pause came early, and the server faults only after it.
    const first = pauses[0]!;
    const serverFaults = history.faults.filter((f) => f.kind === 'partition' || f.kind === 'kill');
    expect(serverFaults.length).toBeGreaterThanOrEqual(1);
    expect(serverFaults[0]!.start).toBeGreaterThan(first.end);
    // A pause let another client take the lock; the paused holder's fenced write after it was
    // refused as stale (never accepted: that would be a violation, checked above), and its
    // lease-only write landed while the newer holder held the lock — counted in the report.
    const takenOver = pauses.filter((p) => p.takenOverBy.length > 0);
    expect(takenOver.length, summary).toBeGreaterThanOrEqual(1);
    expect(takenOver.every((p) => p.fencedAfter.accepted === 0)).toBe(true);
    expect(takenOver.some((p) => p.fencedAfter.refusedStale > 0), summary).toBe(true);
    expect(results.stats['lock.leaseOnlyOverlaps'], summary).toBeGreaterThan(0);
    expect(results.stats['lock.pausedLeaseOnlyOverlapping'], summary).toBeGreaterThan(0);
    expect(readFileSync(join(out, 'index.html'), 'utf8')).toContain('<section id="fencing">');
    // Every client process is gone, the paused ones included.
    expect(await allGone(pauses.map((p) => p.pid), 1000)).toBe(true);
  });

  it('an abort while a holder is stopped continues and ends every client process', async () => {
    const abortDir = mkdtempSync(join(tmpdir(), 'dkv-jepsen-lock-abort-'));
    const interrupt = new AbortController();
    let pausedPid: number | undefined;
    let stateAtAbort: string | undefined;
    try {
      const outcome = await runReal({
        target: 'dkv',
        nodes: 3,
        timeMs: 60_000,
        workload: 'lock',
        faults: [],
        clients: 3,
        seed,
        outDir: abortDir,
        command: 'test',
        signal: interrupt.signal,
        log: (message) => {
          const stopped = /^holder pause: SIGSTOP process \d+ \(pid (\d+)\).*state T/.exec(message);
          if (stopped === null) return;
          pausedPid = Number(stopped[1]);
          // The holder is stopped right now: abort the run under it.
          stateAtAbort = processState(pausedPid);
          interrupt.abort();
        },
      });
      expect(outcome.interrupted).toBe(true);
      expect(pausedPid).toBeDefined();
      expect(stateAtAbort).toBe('T');
      expect(outcome.clientPids).toContain(pausedPid);
      expect(outcome.clientPids).toHaveLength(3);
      expect(await allGone(outcome.clientPids ?? [], 1000)).toBe(true);
      const pause = outcome.history.faults.find((f) => f.kind === 'holder-pause');
      expect(pause?.end).toBeDefined();
    } finally {
      rmSync(abortDir, { recursive: true, force: true });
    }
  });

  it('SIGINT to dkv jepsen run leaves no client process behind', async () => {
    const sigintDir = mkdtempSync(join(tmpdir(), 'dkv-jepsen-lock-sigint-'));
    try {
      const child = spawn(process.execPath, ['bin/dkv.js', 'jepsen', 'run', '--workload', 'lock', '--time', '60', '--faults', 'none', '--clients', '3', '--seed', String(seed), '--out', sigintDir], {
        env: { ...process.env, DKV_JEPSEN_VERBOSE: '1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const pids: number[] = [];
      let stderr = '';
      let interrupted = false;
      child.stdout.resume();
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString('utf8');
        for (const match of chunk.toString('utf8').matchAll(/lock client \d+: pid (\d+)/g)) pids.push(Number(match[1]));
        // Interrupt once a holder is stopped: the hardest moment to clean up.
        if (!interrupted && /holder pause: SIGSTOP .*state T/.test(stderr)) {
          interrupted = true;
          child.kill('SIGINT');
        }
      });
      const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
      expect(interrupted, stderr).toBe(true);
      expect(code, stderr).toBe(2);
      expect(pids).toHaveLength(3);
      expect(await allGone(pids, 1000), stderr).toBe(true);
    } finally {
      rmSync(sigintDir, { recursive: true, force: true });
    }
  });
});
