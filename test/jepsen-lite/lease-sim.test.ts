/**
 * `dkv jepsen sim --workload lease`: a seed replays exactly; the lease checker objects to every
 * broken promise, on hand-made histories and on runs with the test-only switches that break the
 * lease engine (no grace for a new leader, no expiry, clocks further apart than the grace covers);
 * and the command runs it. The seed suites are lease-sim-seeds-{a,b}.test.ts.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  type HeldLease,
  type LeaseHistory,
  type LeaseRequest,
  type LeaseTimeline,
  checkLeases,
  jepsenSimCommand,
  leaseClockOffsetMsMax,
  livenessSlackMs,
  runLeaseSim,
} from '../../jepsen-lite/sim/jepsen/index.js';

describe('lease sim determinism', () => {
  it('the same seed gives the same requests, leases, leaders, faults and trace', async () => {
    const options = { seed: 41, nodes: 3, durationMs: 3000, swarm: true };
    const first = await runLeaseSim(options);
    const second = await runLeaseSim(options);
    expect(first.history.requests.length).toBeGreaterThan(20);
    expect(second.history.requests).toEqual(first.history.requests);
    expect([...second.history.timelines]).toEqual([...first.history.timelines]);
    expect([...second.history.held]).toEqual([...first.history.held]);
    expect(second.history.leaders).toEqual(first.history.leaders);
    expect(second.faults).toEqual(first.faults);
    expect(second.failures).toEqual(first.failures);
    expect(second.stats).toEqual(first.stats);
  });

  it('a different seed gives a different run', async () => {
    const a = await runLeaseSim({ seed: 1, nodes: 3, durationMs: 1000, swarm: false });
    const b = await runLeaseSim({ seed: 2, nodes: 3, durationMs: 1000, swarm: false });
    expect(b.stats.traceHash).not.toBe(a.stats.traceHash);
  });

  it('the replay command names every option that shapes the run', async () => {
    const r = await runLeaseSim({ seed: 5, nodes: 5, durationMs: 300, swarm: true, holders: 2, unsafe: { noLeaderGrace: true } });
    expect(r.replayCommand).toBe('dkv jepsen sim --seed 5 --workload lease --nodes 5 --time 300 --swarm --clients 2 --unsafe-no-lease-grace');
  });

  it('clocks stay within the skew the lease grace covers: any two within one election timeout', async () => {
    const r = await runLeaseSim({ seed: 7, nodes: 5, durationMs: 0, swarm: false });
    const offsets = [...r.history.clockOffsetsMs.values()];
    expect(Math.max(...offsets.map(Math.abs))).toBeLessThanOrEqual(leaseClockOffsetMsMax);
    expect(Math.max(...offsets) - Math.min(...offsets)).toBeLessThanOrEqual(r.history.electionTimeoutMs);
  });
});

describe('the lease checker can fail', () => {
  it('a new leader that gives inherited deadlines no grace expires leases early (unsafe.noLeaderGrace)', async () => {
    const early: string[] = [];
    for (let i = 0; i < 24; i++) {
      const r = await runLeaseSim({ seed: i, nodes: i % 4 === 3 ? 5 : 3, durationMs: 4000, swarm: i % 2 === 1, unsafe: { noLeaderGrace: true } });
      early.push(...r.failures.filter((f) => /expired at \d+ \(entry \d+\), \d+ ms before its holder's (grant|renew)/.test(f)));
    }
    expect(early.length).toBeGreaterThan(0);
  });

  it('leaders that never expire fail liveness, and leases and their keys are left (unsafe.noExpiry)', async () => {
    const r = await runLeaseSim({ seed: 0, nodes: 3, durationMs: 2000, swarm: false, unsafe: { noExpiry: true } });
    expect(r.verdict).toBe('violation');
    expect(r.failures.some((f) => /never revoked, but due by \d+/.test(f))).toBe(true);
    expect(r.failures.some((f) => /still holds \d+ lease/.test(f))).toBe(true);
    expect(r.failures.some((f) => /still holds key\(s\) of revoked leases/.test(f))).toBe(true);
  });

  it('clocks two election timeouts apart (the simulator default) break the promise, by no more than the excess skew', async () => {
    // The first seed whose schedule makes it happen (seed 86 of 5 nodes once: clocks −601 to
    // +902 ms apart, 503 ms more than the grace of one election timeout covers, two leases of
    // 4 s expired 142 and 173 ms before their holders' belief ran out). Which seed it is moves
    // with any change to the runtime's schedule; that some seed does, and by how much, does not.
    let found: { options: { seed: number; nodes: number; durationMs: number; swarm: boolean }; excess: number; early: number[] } | undefined;
    for (let seed = 0; seed < 400 && found === undefined; seed++) {
      for (const nodes of [5, 3]) {
        const options = { seed, nodes, durationMs: 4000, swarm: true };
        const skewed = await runLeaseSim({ ...options, unsafe: { clockSkewBeyondGrace: true } });
        const early = skewed.failures.map((f) => /, (\d+) ms before its holder's/.exec(f)).filter((m) => m !== null);
        if (early.length === 0) continue;
        const offsets = [...skewed.history.clockOffsetsMs.values()];
        found = { options, excess: Math.max(...offsets) - Math.min(...offsets) - skewed.history.electionTimeoutMs, early: early.map((m) => Number(m[1])) };
        break;
      }
    }
    expect(found).toBeDefined();
    expect(found!.excess).toBeGreaterThan(0);
    for (const ms of found!.early) expect(ms).toBeLessThanOrEqual(found!.excess);
    // Within the grace, the same seed keeps the promise.
    expect((await runLeaseSim(found!.options)).failures).toEqual([]);
  }, 120_000);
});

// ---- The checker on hand-made histories --------------------------------------------------------

const ttlMs = 2000;

function request(id: number, kind: LeaseRequest['kind'], sent: number, result: LeaseRequest['result'], lease = '1'): LeaseRequest {
  return { id, holder: 0, lease, kind, node: 1, sent, answered: sent + 15, result };
}

/** Lease 1 (TTL 2 s) granted at 1,000 and renewed at 2,000 under n1 (term 2), abandoned at 2,500, expired at 4,060. */
function history(change: { timeline?: Partial<LeaseTimeline>; held?: Partial<HeldLease>; requests?: LeaseRequest[]; rest?: Partial<LeaseHistory> } = {}): LeaseHistory {
  const timeline: LeaseTimeline = {
    lease: '1',
    deadlines: [
      { at: 1010, index: 5, deadlineMs: 3010, term: 2 },
      { at: 2010, index: 8, deadlineMs: 4010, term: 2 },
    ],
    revoked: { at: 4060, index: 9, kind: 'expired' },
    ...change.timeline,
  };
  const held: HeldLease = { lease: '1', holder: 0, ttlMs, behaviour: 'abandon', stoppedAt: 2500, stopReason: 'abandoned', ...change.held };
  return {
    electionTimeoutMs: 1000,
    clockOffsetsMs: new Map([[1, 0], [2, -300], [3, 200]]),
    tickPeriodsMs: new Map([[1, 100], [2, 100], [3, 100]]),
    healedAt: 0,
    settledAt: 0,
    clientsStoppedAt: 8000,
    endedAt: 15_000,
    held: new Map([['1', held]]),
    timelines: new Map([['1', timeline]]),
    requests: change.requests ?? [request(0, 'grant', 1000, 'ok'), request(1, 'renew', 2000, 'ok')],
    leaders: [{ node: 1, term: 2, from: 500 }],
    ...change.rest,
  };
}

describe('the lease checker on hand-made histories', () => {
  it('passes a lease that expired after its last acknowledged renewal ran out, within its bound', () => {
    const result = checkLeases(history());
    expect(result.failures).toEqual([]);
    expect(result.safetyMarginMsMin).toBe(60);
    expect(result.livenessChecked).toBe(1);
    // Due at 4,010 on n1's clock (offset 0), then a tick and the slack.
    expect(result.livenessMarginsMs).toEqual([4010 + 100 + livenessSlackMs - 4060]);
  });

  it('an expiry before an acknowledged renewal ran out is a violation; an unacknowledged one does not count', () => {
    const early = checkLeases(history({ timeline: { revoked: { at: 3990, index: 9, kind: 'expired' } } }));
    expect(early.failures).toEqual([expect.stringMatching(/expired at 3990 \(entry 9\), 10 ms before its holder's renew 1 sent at 2000/)]);
    const unacknowledged = [request(0, 'grant', 1000, 'ok'), request(1, 'renew', 2000, 'timeout')];
    expect(checkLeases(history({ requests: unacknowledged, timeline: { revoked: { at: 3990, index: 9, kind: 'expired' } } })).failures).toEqual([]);
  });

  it('a revocation the holder did not ask for is a violation', () => {
    const revoked = { revoked: { at: 2600, index: 9, kind: 'revoked' as const } };
    expect(checkLeases(history({ timeline: revoked })).failures).toEqual([expect.stringMatching(/revoked at 2600 \(entry 9\) without its holder asking/)]);
    const asked = [request(0, 'grant', 1000, 'ok'), request(1, 'renew', 2000, 'ok'), request(2, 'revoke', 2550, 'ok')];
    expect(checkLeases(history({ timeline: revoked, requests: asked })).failures).toEqual([]);
  });

  it('a lease revoked late, or never, fails liveness', () => {
    const late = checkLeases(history({ timeline: { revoked: { at: 4200, index: 9, kind: 'expired' } } }));
    expect(late.failures).toEqual([expect.stringMatching(/revoked at 4200, but due by 4160 \(deadline 4010 of term 2/)]);
    expect(checkLeases(history({ timeline: { revoked: undefined } })).failures).toEqual([expect.stringMatching(/never revoked, but due by 4160/)]);
  });

  it("a later term's leader gets one election timeout more, counted on its own clock", () => {
    // n2 (clock −300 ms) leads term 3 from 3,000: the deadline 4,010 of term 2 is due at 5,010 on its clock, 5,310 in real time.
    const leaders = [{ node: 1, term: 2, from: 500, to: 3000 }, { node: 2, term: 3, from: 3000 }];
    const bound = 5310 + 100 + livenessSlackMs;
    expect(checkLeases(history({ rest: { leaders }, timeline: { revoked: { at: bound, index: 9, kind: 'expired' } } })).failures).toEqual([]);
    expect(checkLeases(history({ rest: { leaders }, timeline: { revoked: { at: bound + 1, index: 9, kind: 'expired' } } })).failures).toEqual([
      expect.stringMatching(new RegExp(`due by ${bound} .*n2 leader of term 3 from 3000, clock -300 ms`)),
    ]);
  });

  it('liveness counts from when the cluster settled, under a leader that stays in office', () => {
    // Healed at 4,500 (settled at 5,000): due at 5,000 then.
    expect(checkLeases(history({ rest: { healedAt: 4500, settledAt: 5000 }, timeline: { revoked: { at: 5150, index: 9, kind: 'expired' } } })).failures).toEqual([]);
    // No leader stays long enough: the checker says so rather than passing.
    const churn = [{ node: 1, term: 2, from: 500, to: 4050 }, { node: 2, term: 3, from: 4050, to: 4100 }];
    expect(checkLeases(history({ rest: { leaders: churn }, timeline: { revoked: undefined } })).failures).toEqual([expect.stringMatching(/no leader held office/)]);
  });

  it('a lease renewed on the healed cluster and still renewed must not expire before the clients stop', () => {
    const keep = { behaviour: 'keep' as const, stoppedAt: undefined, stopReason: undefined };
    const healed = { healedAt: 1500, settledAt: 1500 };
    expect(checkLeases(history({ held: keep, rest: healed })).failures).toEqual([expect.stringMatching(/expired at 4060 on a healed cluster while its holder kept renewing it/)]);
    // Renewed only before healing (its holder cut off since): it may lapse.
    expect(checkLeases(history({ held: keep, rest: { healedAt: 2500, settledAt: 2500 } })).failures).toEqual([]);
  });

  it('a lease no holder asked for is a violation', () => {
    expect(checkLeases(history({ rest: { held: new Map() } })).failures).toEqual([expect.stringMatching(/granted, but no holder asked for it/)]);
  });
});

describe('dkv jepsen sim --workload lease', () => {
  it('runs seeds, refuses options that do not apply, and writes a failing seed’s lease history', async () => {
    const out: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    const writeErr = process.stderr.write.bind(process.stderr);
    process.stdout.write = ((chunk: string) => (out.push(chunk), true)) as typeof process.stdout.write;
    process.stderr.write = ((chunk: string) => (out.push(chunk), true)) as typeof process.stderr.write;
    const dir = await mkdtemp(join(tmpdir(), 'dkv-lease-sim-'));
    try {
      expect(await jepsenSimCommand(['--help'])).toBe(0);
      expect(out.join('')).toContain('--workload lease');
      expect(await jepsenSimCommand(['--workload', 'lease', '--unsafe-stale-reads'])).toBe(2);
      expect(await jepsenSimCommand(['--workload', 'register', '--unsafe-no-expiry'])).toBe(2);
      out.length = 0;
      expect(await jepsenSimCommand(['--workload', 'lease', '--seeds', '2', '--time', '1000', '--swarm'])).toBe(0);
      expect(out.join('')).toMatch(/2 seeds, \d+ leases, \d+ acknowledged grants and renewals, 0 violations/);
      out.length = 0;
      expect(await jepsenSimCommand(['--workload', 'lease', '--seed', '0', '--time', '1000', '--unsafe-no-expiry', '--out', dir])).toBe(1);
      const printed = out.join('');
      expect(printed).toContain('replay: dkv jepsen sim --seed 0 --workload lease --nodes 3 --time 1000 --unsafe-no-expiry');
      const report = JSON.parse(await readFile(join(dir, 'seed-0-lease', 'lease-history.json'), 'utf8')) as { verdict: string; failures: string[]; requests: unknown[]; leases: unknown[] };
      expect(report.verdict).toBe('violation');
      expect(report.failures.length).toBeGreaterThan(0);
      expect(report.requests.length).toBeGreaterThan(0);
      expect(report.leases.length).toBeGreaterThan(0);
    } finally {
      process.stdout.write = write;
      process.stderr.write = writeErr;
      await rm(dir, { recursive: true, force: true });
    }
  });
});
