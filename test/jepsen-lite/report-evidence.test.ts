/**
 * What a failing report opens on (`primaryEvidence`: Elle's first anomaly, then the first
 * non-linearizable key, then watch / fencing / election violations), the cycle as text, and the
 * fault colours and labels by kind. A transactional run without the linearizability checker renders.
 */
import { describe, expect, it } from 'vitest';
import type { ElleResult } from '../../jepsen-lite/check/elle/types.js';
import type { Operation } from '../../jepsen-lite/history.js';
import {
  cycleText,
  fallbackColour,
  faultColour,
  faultKindLabel,
  primaryEvidence,
  renderHtml,
  type RunHistory,
  type RunResults,
} from '../../jepsen-lite/report/index.js';

const operations: Operation[] = [
  { id: 1, process: 0, call: 0, ret: 5, status: 'ok', input: { f: 'put', key: 'a', value: '1' }, output: { f: 'put', prevValue: null, revision: 2 } },
  { id: 2, process: 1, call: 3, ret: 9, status: 'ok', input: { f: 'get', key: 'a' }, output: { f: 'get', value: '1', revision: 2, modRevision: 2, createRevision: 2, version: 1 } },
  { id: 9, process: 2, call: 10, ret: 13, status: 'ok', input: { f: 'txn', mops: [] } },
  { id: 12, process: 3, call: 11, ret: 14, status: 'ok', input: { f: 'txn', mops: [] } },
];
const history: RunHistory = { operations, faults: [] };

const elle: ElleResult = {
  model: 'list-append',
  verdict: 'violation',
  anomalies: [
    {
      name: 'G-single',
      opIds: [12, 9, 404],
      cycle: [
        { from: 12, to: 9, type: 'ww', key: 'x', value: 3 },
        { from: 9, to: 12, type: 'rw', key: 'x' },
      ],
      explanation: 'T9 missed T12’s append to x, though T12 came first.',
    },
  ],
  counts: { 'G-single': 1 },
  notSatisfied: ['serializable'],
  stats: { txns: 4, committed: 4, unknownIncluded: 0, edges: 2, elapsedMs: 1 },
};

const lin: NonNullable<RunResults['linearizability']> = {
  model: 'kv',
  verdict: 'violation',
  elapsedMs: 1,
  operations: 2,
  partitions: [{ key: '', operations: 2, verdict: 'violation', elapsedMs: 1, message: 'not linearizable', linearized: [1], blocked: [2] }],
};

describe('primaryEvidence', () => {
  it('takes Elle first: its first anomaly, the operations the history has, the cycle', () => {
    const evidence = primaryEvidence({ verdict: 'violation', txn: elle, linearizability: lin, stats: {} }, history)!;
    expect(evidence.source).toBe('txn');
    expect(evidence.opIds).toEqual([12, 9]);
    expect(evidence.cycle).toBe('T12 -ww x→ T9 -rw x→ T12');
    expect(evidence.explanation).toBe(elle.anomalies[0]!.explanation);
  });

  it('then a non-linearizable key: its blocked operations and the checker message', () => {
    const evidence = primaryEvidence({ verdict: 'violation', txn: { ...elle, verdict: 'ok', anomalies: [] }, linearizability: lin, stats: {} }, history)!;
    expect(evidence).toMatchObject({ source: 'linearizability', opIds: [2], detail: 'not linearizable' });
    expect(evidence.explanation).toContain('the whole history');
  });

  it('then watch (the writes at its revision), fencing and election (the #ids they name)', () => {
    const watch: RunResults = {
      verdict: 'violation',
      watch: { ok: false, omitted: 0, streams: 1, events: 1, violations: [{ guarantee: 'reliable', watch: 'w0', revision: 2, message: 'reliable: watch w0 at revision 2: missed' }] },
      stats: {},
    };
    expect(primaryEvidence(watch, history)).toMatchObject({ source: 'watch', opIds: [1], revisions: [2] });
    const fencing = { ok: false, violations: ['write #9 (process 2, token 3) was accepted after #12 (process 3, token 4)'], omitted: 0 } as unknown as RunResults['fencing'];
    expect(primaryEvidence({ verdict: 'violation', fencing, stats: {} }, history)).toMatchObject({ source: 'fencing', opIds: [9, 12] });
    const election = { ok: false, violations: [{ property: 'proclaim', message: 'proclaim #2 (process 1) by a non-leader; #77 unknown' }], omitted: 0 } as unknown as RunResults['election'];
    expect(primaryEvidence({ verdict: 'violation', election, stats: {} }, history)).toMatchObject({ source: 'election', opIds: [2] });
  });

  it('none when every checker held', () => {
    expect(primaryEvidence({ verdict: 'ok', linearizability: { ...lin, verdict: 'ok', partitions: [] }, stats: {} }, history)).toBeUndefined();
  });
});

describe('cycleText', () => {
  it('names edges without a key by type alone', () => {
    expect(cycleText([{ from: 1, to: 2, type: 'realtime' }, { from: 2, to: 1, type: 'wr', key: 'k' }])).toBe('T1 -realtime→ T2 -wr k→ T1');
    expect(cycleText([])).toBe('');
  });
});

describe('fault kinds', () => {
  it('network faults are "network partition"; unknown kinds get a stable colour of their own', () => {
    expect(faultKindLabel('partition')).toBe('network partition');
    expect(faultKindLabel('isolate-leader')).toContain('network partition');
    expect(faultColour('crash')).not.toBe(faultColour('partition'));
    expect(faultColour('clock-skew')).toBe(fallbackColour('clock-skew'));
    expect(fallbackColour('clock-skew')).toBe(fallbackColour('clock-skew'));
    expect(fallbackColour('clock-skew')).not.toBe(fallbackColour('clock-jump'));
    expect(faultKindLabel('clock-skew')).toBe('clock-skew');
  });
});

describe('a transactional run', () => {
  it('renders without the linearizability checker, opening on the anomaly', () => {
    const page = renderHtml(
      { mode: 'sim', target: 'dkv', workload: 'list-append', model: 'kv', nodes: ['n1'], startedAt: 'now', durationMs: 100, command: 'dkv jepsen sim' },
      history,
      { verdict: 'violation', txn: elle, stats: {} },
    );
    expect(page).not.toContain('<section id="linearizability"');
    expect(page).toContain('<section id="txn"');
    expect(page.indexOf('<section id="failure"')).toBe(page.indexOf('<section'));
    expect(page).toContain('T12 -ww x→ T9 -rw x→ T12');
  });
});
