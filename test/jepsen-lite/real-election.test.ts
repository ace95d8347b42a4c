/**
 * The election workload of `dkv jepsen run`: one short real run on a 3-node DKV cluster under the
 * nemesis (a kill, then a majority/minority partition) with leaders that resign, let their lease
 * lapse or pause past it. The election check passes, and the run had teeth: several leader
 * changes in the committed history, every observer saw several leaders, a fault window. If
 * `/usr/bin/etcd` is installed (CI installs etcd-server), a shorter differential run against etcd:
 * the same properties hold except that etcd's Campaign may answer "leader" for a key whose lease
 * expired while it waited (etcd-io/etcd#19597) — the check reports that, and nothing else.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ElectionResult } from '../../jepsen-lite/check/index.js';
import { defaultEtcdBin } from '../../jepsen-lite/real/cluster.js';
import { jepsenRunCommand, parseJepsenRunArgs } from '../../jepsen-lite/real/command.js';
import { electionObservers } from '../../jepsen-lite/real/election-clients.js';
import { parseHistoryJson } from '../../jepsen-lite/report/index.js';

interface Results {
  verdict: string;
  linearizability: { verdict: string; model: string };
  election: ElectionResult;
  stats: Record<string, number>;
}

const out = mkdtempSync(join(tmpdir(), 'dkv-jepsen-election-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

async function run(target: 'dkv' | 'etcd', seconds: number, seed: number): Promise<{ code: number; results: Results; dir: string }> {
  const dir = join(out, target);
  const code = await jepsenRunCommand([
    '--target', target,
    '--nodes', '3',
    '--time', String(seconds),
    '--workload', 'election',
    '--clients', '4',
    '--seed', String(seed),
    '--out', dir,
  ]);
  const { results } = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')) as { results: Results };
  return { code, results, dir };
}

/** The run had teeth: leaders changed, every observer saw it happen, and the nemesis struck. */
function expectTeeth(results: Results, dir: string, leaderChangesMin: number): void {
  const summary = JSON.stringify({ stats: results.election.stats, violations: results.election.violations });
  const { stats } = results.election;
  expect(stats.leaderChanges, summary).toBeGreaterThanOrEqual(leaderChangesMin);
  expect(stats.campaignsWon, summary).toBeGreaterThanOrEqual(leaderChangesMin);
  expect(stats.proclaimsAcknowledged, summary).toBeGreaterThan(2 * leaderChangesMin);
  expect(stats.observers).toHaveLength(electionObservers);
  for (const observer of stats.observers) {
    expect(observer.leaders, summary).toBeGreaterThanOrEqual(leaderChangesMin);
    expect(observer.leaderChanges, summary).toBeGreaterThanOrEqual(leaderChangesMin - 1);
  }
  const { history } = parseHistoryJson(readFileSync(join(dir, 'history.json'), 'utf8'));
  expect(history.faults.filter((f) => ['partition', 'kill', 'pause', 'delay'].includes(f.kind)).length).toBeGreaterThanOrEqual(1);
  expect(history.observers?.length).toBeGreaterThanOrEqual(electionObservers);
  expect(readFileSync(join(dir, 'index.html'), 'utf8')).toContain('<section id="election">');
}

describe('dkv jepsen run --workload election: options', () => {
  it('takes election on both targets', () => {
    expect(parseJepsenRunArgs(['--workload', 'election'])?.workload).toBe('election');
    expect(parseJepsenRunArgs(['--workload', 'election', '--target', 'etcd'])?.workload).toBe('election');
  });
});

describe('dkv jepsen run --workload election (real DKV cluster)', () => {
  it('runs 15 s with a kill and a partition, leaders resigning, lapsing and pausing: one leader at a time, observers agree', async () => {
    // Seed 27: a kill at 1.5–4.1 s, then a majority/minority partition at 7.0–11.0 s.
    const { code, results, dir } = await run('dkv', 15, 27);
    const summary = JSON.stringify({ election: results.election, stats: results.stats });
    expect(results.election.violations, summary).toEqual([]);
    expect(results.election.ok).toBe(true);
    expect(results.linearizability).toMatchObject({ model: 'lock', verdict: 'ok' });
    expect(results.verdict).toBe('ok');
    expect(code).toBe(0);
    expectTeeth(results, dir, 4);
  });
});

describe.runIf(existsSync(defaultEtcdBin))('dkv jepsen run --workload election --target etcd (differential)', () => {
  it('runs 8 s against etcd: the same properties hold, but for campaigns won by a key already gone', async () => {
    // Seed 3: a kill at 0.8–4.2 s.
    const { results, dir } = await run('etcd', 8, 3);
    const unexpected = results.election.violations.filter((v) => !(v.property === 'campaign' && /never led: it was deleted at revision \d+/.test(v.message)));
    expect(unexpected, JSON.stringify(results.election.violations)).toEqual([]);
    expect(results.linearizability).toMatchObject({ model: 'lock', verdict: 'ok' });
    expectTeeth(results, dir, 2);
  });
});
