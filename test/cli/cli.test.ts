/** The `dkv` command as users run it: a real process through bin/dkv.js. */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runScenario } from '../../jepsen-lite/sim/index.js';
import { contentiousSample } from '../jepsen-lite/contentious.js';

const bin = join(import.meta.dirname, '..', '..', 'bin', 'dkv.js');

function dkv(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  // The fresh build (bin/load.js falls back to the sources when it is stale): ~3x faster to start.
  const result = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, DKV_FROM_SOURCE: undefined } });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('dkv command', () => {
  it('prints help listing the commands that exist', () => {
    const r = dkv('--help');
    expect(r.code).toBe(0);
    for (const command of ['demo', 'sim', 'bench raft', 'bench log']) expect(r.stdout).toContain(command);
  });

  it('bench log measures group commit against a synced batch per shard', () => {
    const r = dkv('bench', 'log', '--seconds', '1');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/8 shards +shared batch \(one save\) +[\d,]+ entries\/s/);
    expect(r.stdout).toMatch(/one shared synced batch writes [\d.]+x the entries\/s of a synced batch per shard/);
  });

  it('refuses an unknown command with exit code 2', () => {
    const r = dkv('frobnicate');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown command "frobnicate"');
  });

  it('demo elects, replicates, fails over and catches up', () => {
    const r = dkv('demo', '--fast');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/node \d won the election for term \d+/);
    expect(r.stdout).toMatch(/failover took [\d.]+ s/);
    expect(r.stdout).toMatch(/node \d caught up to index \d+/);
    expect(r.stdout).toContain('All three nodes applied the same commands in the same order.');
  });

  it('sim replays one seed deterministically', () => {
    const first = dkv('sim', '--seed', '11');
    const second = dkv('sim', '--seed', '11');
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('ok: safe');
    const hash = (out: string): string | undefined => /trace hash ([0-9a-f]{8})/.exec(out)?.[1];
    expect(hash(first.stdout)).toBeDefined();
    expect(hash(second.stdout)).toBe(hash(first.stdout));
  });

  it('sim runs a range of seeds on worker threads', () => {
    const r = dkv('sim', '--seeds', '6', '--start', '500', '--workers', '2');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/done: 6 seeds in [\d.]+ s .* 0 failures/);
  });

  it('sim exits non-zero when the broken core is caught, and passes with the real one', () => {
    // A scenario in which a node that may vote twice produces two leaders in one term.
    const violating = contentiousSample(40).find((s) => !runScenario(s, { unsafeVoteTwiceInTerm: true }).ok);
    expect(violating).toBeDefined();
    const scenario = join(mkdtempSync(join(tmpdir(), 'dkv-sim-')), 'double-vote.json');
    writeFileSync(scenario, JSON.stringify(violating));
    const broken = dkv('sim', '--replay', scenario, '--unsafe-vote-twice');
    expect(broken.code).toBe(1);
    expect(broken.stdout).toContain('VIOLATION election-safety');
    const correct = dkv('sim', '--replay', scenario);
    expect(correct.code).toBe(0);
    expect(correct.stdout).toContain('ok: safe');
  });

  it('rejects bad option values with a clear message', () => {
    const r = dkv('sim', '--seeds', 'lots');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--seeds must be a whole number');
  });
});
