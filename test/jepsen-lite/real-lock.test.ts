/**
 * The lock workload of `dkv jepsen run`: the fencing checker on crafted histories (it must fail
 * on interleaved fenced writes, count lease-only overlaps, and catch a refused write that was
 * committed), the holder-pause plan, and one short real run on a 3-node DKV cluster with
 * partitions, kills and a lock holder paused past its lease: fenced writes never interleave,
 * and the pause produced a stale holder (a `fence-stale` refusal or a lease-only overlap).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type WatchHistory, checkFencing, checkLinearizability, fenceStaleError } from '../../jepsen-lite/check/index';
import type { LockInput, LockOutput, Operation, UnfencedWriteInput, UnfencedWriteOutput } from '../../jepsen-lite/history';
import { jepsenRunCommand, parseJepsenRunArgs } from '../../jepsen-lite/real/command';
import { healedTailFraction, holderPauseFirstAfterHoldMs, holderPauseTtlFactorMax, holderPauseTtlFactorMin, planHolderPauses } from '../../jepsen-lite/real/nemesis';
import { parseHistoryJson } from '../../jepsen-lite/report/index';

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

const runSeconds = 15;
const seed = 12;
const out = mkdtempSync(join(tmpdir(), 'dkv-jepsen-lock-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

interface LockResults {
  verdict: string;
  linearizability: { verdict: string };
  fencing: {
    ok: boolean;
    violations: string[];
    fenced: { accepted: number; refusedStale: number; unknown: number; committed: number };
    unfenced: { overlaps: number; holders: number };
  };
  stats: Record<string, number>;
}

describe('dkv jepsen run --workload lock (real DKV cluster)', () => {
  it(`runs ${runSeconds} s with partitions, kills and a holder paused past its lease: fenced writes never interleave`, async () => {
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
    // A holder was paused past its lease, and that made a stale holder: the store refused its
    // fenced write, or its lease-only writes overlapped another holder's.
    const pauses = history.faults.filter((f) => f.kind === 'holder-pause');
    expect(pauses.length, summary).toBeGreaterThanOrEqual(1);
    expect(results.stats['faults.holder-pause']).toBe(pauses.length);
    expect(results.fencing.fenced.refusedStale + results.fencing.unfenced.overlaps, summary).toBeGreaterThan(0);
    expect(history.faults.filter((f) => f.kind === 'partition' || f.kind === 'kill').length).toBeGreaterThanOrEqual(1);
    expect(readFileSync(join(out, 'index.html'), 'utf8')).toContain('<section id="fencing">');
  });
});
