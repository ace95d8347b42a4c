/**
 * The `membership` fault of `dkv jepsen run` on a real 3-node DKV cluster: members are replaced
 * under load as etcd's runbook does (MemberRemove, the data dir wiped, MemberAdd on the same peer
 * URL, a start with --initial-cluster-state existing). Every replaced member exits by itself once
 * removed, comes back under a new id, and the history stays linearizable with every acknowledged
 * write in the committed history.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { jepsenRunCommand } from '../../jepsen-lite/real/command.js';

const runSeconds = 20;
const out = mkdtempSync(join(tmpdir(), 'jepsen-membership-'));

let passed = false;

// A failed run keeps its report and the members' logs (the path is printed) for the next look.
afterAll(() => {
  if (passed) rmSync(out, { recursive: true, force: true });
  else console.log(`real-membership: kept ${out} (report, history and cluster logs)`);
});

describe('the membership fault', () => {
  it('replaces members under load; linearizable, no acknowledged write lost', { timeout: 180_000 }, async () => {
    const code = await jepsenRunCommand(['--target', 'dkv', '--nodes', '3', '--time', String(runSeconds), '--workload', 'kv', '--faults', 'membership', '--clients', '4', '--seed', '3', '--out', out]);
    const { results } = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as {
      results: { verdict: string; linearizability: { verdict: string }; stats: Record<string, number> };
    };
    expect(results.linearizability.verdict, JSON.stringify(results.linearizability)).toBe('ok');
    expect(results.verdict).toBe('ok');
    expect(code).toBe(0);
    expect(results.stats.acknowledgedWritesChecked).toBeGreaterThan(100);
    expect(results.stats.acknowledgedWritesMissing).toBe(0);
    expect(results.stats['faults.membership']).toBeGreaterThanOrEqual(2);
    const history = readFileSync(join(out, 'history.json'), 'utf8');
    const replaced = [...history.matchAll(/"description":"(replace [^"]*)"/g)].map((m) => m[1]!);
    expect(replaced.length).toBe(results.stats['faults.membership']);
    for (const line of replaced) expect(line).toMatch(/^replace n\d( \(leader\))?: removed [0-9a-f]+ \(it exited by itself\), added back as [0-9a-f]+ on an empty data dir$/);
    passed = true;
  });
});
