/**
 * The watch workload in real mode: watchers homed on every member (half from now, half from a
 * past revision), resuming on another member and back, and one short run on a real 3-node DKV
 * cluster with kills whose streams — at least two per member — all check out against the
 * committed history and against each other.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { WatchRecord } from '../../jepsen-lite/check/index.js';
import { watchMember, watchStreamsPerMember, watcherPlan } from '../../jepsen-lite/real/clients.js';
import { jepsenRunCommand, parseJepsenRunArgs, rerunCommand } from '../../jepsen-lite/real/command.js';
import { parseHistoryJson } from '../../jepsen-lite/report/index.js';

describe('real-mode watchers', () => {
  it('are homed perNode to a member, alternately from now and from the past', () => {
    expect(watcherPlan(3, 2)).toEqual([
      { home: 0, firstFrom: 'now' },
      { home: 0, firstFrom: 'past' },
      { home: 1, firstFrom: 'now' },
      { home: 1, firstFrom: 'past' },
      { home: 2, firstFrom: 'now' },
      { home: 2, firstFrom: 'past' },
    ]);
  });

  it('resume on another member, then back home', () => {
    expect(Array.from({ length: 6 }, (_, stream) => watchMember(1, stream, 3))).toEqual([1, 2, 1, 0, 1, 2]);
    expect(Array.from({ length: 3 }, (_, stream) => watchMember(0, stream, 1))).toEqual([0, 0, 0]);
  });

  it('are counted per member from their records', () => {
    const record = (name: string): WatchRecord => ({ name, params: { key: new Uint8Array([0x61]) }, responses: [], end: 'broken' });
    expect([...watchStreamsPerMember([record('w0.0@n1'), record('w0.1@n2'), record('w1.0@n1')], ['n1', 'n2', 'n3'])]).toEqual([
      ['n1', 2],
      ['n2', 1],
      ['n3', 0],
    ]);
  });

  it('--watchers-per-node is for the watch workload and shows in the rerun command', () => {
    const config = parseJepsenRunArgs(['--workload', 'watch', '--watchers-per-node', '3', '--seed', '1'])!;
    expect(config.watchersPerNode).toBe(3);
    expect(rerunCommand(config)).toContain('--watchers-per-node 3');
    expect(rerunCommand(parseJepsenRunArgs(['--workload', 'watch', '--seed', '1'])!)).not.toContain('--watchers-per-node');
    expect(() => parseJepsenRunArgs(['--workload', 'kv', '--watchers-per-node', '3'])).toThrow(/--watchers-per-node is for --workload watch/);
  });
});

const runSeconds = 5;
const out = mkdtempSync(join(tmpdir(), 'dkv-jepsen-watch-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe('dkv jepsen run --workload watch (real DKV cluster)', () => {
  it(`${runSeconds} s with kills: at least two streams on every member, all agreeing`, async () => {
    const code = await jepsenRunCommand([
      '--target', 'dkv',
      '--nodes', '3',
      '--time', String(runSeconds),
      '--workload', 'watch',
      '--faults', 'kill',
      '--clients', '3',
      '--seed', '11',
      '--out', out,
    ]);
    expect(existsSync(join(out, 'results.json'))).toBe(true);
    const { results } = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as {
      results: { verdict: string; watch?: { ok: boolean; streams: number; events: number; violations: unknown[] }; stats: Record<string, number> };
    };
    expect(results.verdict, JSON.stringify(results.watch?.violations ?? [])).toBe('ok');
    expect(code).toBe(0);
    expect(results.watch?.ok).toBe(true);
    const stats = results.stats;
    expect(stats['watch.streamsPerNodeMin']).toBeGreaterThanOrEqual(2);
    for (const member of ['n1', 'n2', 'n3']) expect(stats[`watch.${member}.streams`], member).toBeGreaterThanOrEqual(2);
    expect(stats['watch.events']).toBeGreaterThan(0);
    expect(results.watch?.streams).toBe(stats['watch.streams']);
    const { history } = parseHistoryJson(readFileSync(join(out, 'history.json'), 'utf8'));
    const watches = history.watches ?? [];
    // From now, from a past revision, and resumed where an earlier stream left off.
    expect(watches.some((w) => w.resumedFrom === undefined && (w.params.startRevision ?? 0) === 0)).toBe(true);
    expect(watches.some((w) => w.resumedFrom === undefined && w.params.startRevision === 1)).toBe(true);
    expect(watches.some((w) => w.resumedFrom !== undefined)).toBe(true);
  });
});
