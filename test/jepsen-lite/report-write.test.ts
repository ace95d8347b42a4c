/**
 * The report folder: history.json reads back to the same operations, faults and watch streams
 * (bytes included), results.json parses, and index.html shows the verdict, a lane per process, a
 * bar per operation, the fault bands, the highlighted violation — with every recorded string
 * escaped. A 20k-operation report stays small and quick to build.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import type { WatchRecord } from '../../jepsen-lite/check/index.js';
import type { FaultWindow, Operation } from '../../jepsen-lite/history.js';
import {
  bytesMarker,
  decodeBytes,
  deserializeWatchRecord,
  encodeBytes,
  parseHistoryJson,
  renderHtml,
  serializeWatchRecord,
  writeReport,
  type RunHistory,
  type RunInfo,
  type RunResults,
} from '../../jepsen-lite/report/index.js';

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

const info: RunInfo = {
  mode: 'sim',
  target: 'dkv',
  workload: 'register',
  model: 'register',
  seed: 42,
  nodes: ['n1', 'n2', 'n3'],
  startedAt: '2025-01-01T00:00:00.000Z',
  durationMs: 1000,
  command: 'dkv jepsen sim --seed 42 --workload register',
};

const EVIL = '<script>alert(1)</script>';

const operations: Operation[] = [
  { id: 0, process: 0, call: 0, ret: 10, status: 'ok', input: { f: 'write', key: EVIL, value: '0-1' }, output: { f: 'write' }, node: 'n1' },
  { id: 1, process: 1, call: 5, ret: 20, status: 'ok', input: { f: 'read', key: EVIL }, output: { f: 'read', value: '0-1' }, node: 'n2' },
  { id: 2, process: 2, call: 12, status: 'info', input: { f: 'write', key: EVIL, value: '2-3' }, error: 'UNAVAILABLE: etcdserver: request timed out', node: 'n3' },
  { id: 3, process: 0, call: 30, ret: 40, status: 'ok', input: { f: 'read', key: EVIL }, output: { f: 'read', value: 'never-written' }, node: '<b>n1</b>' },
  { id: 4, process: 1, call: 31, ret: 33, status: 'fail', input: { f: 'cas', key: EVIL, from: 'a', to: '1-5' }, error: 'INVALID_ARGUMENT: x', node: 'n2' },
  { id: 5, process: 7, call: 50, ret: 60, status: 'ok', input: { f: 'read', key: 'k2' }, output: { f: 'read', value: null } },
];

const faults: FaultWindow[] = [
  { kind: 'partition', start: 8, end: 35, description: 'n1 | n2 n3' },
  { kind: 'pause', start: 45, description: 'SIGSTOP <n2>' },
];

const watch: WatchRecord = {
  name: 'w0',
  params: { key: bytes('jepsen/'), rangeEnd: new Uint8Array([0]), prevKv: true, startRevision: 2 },
  responses: [
    { kind: 'created', headerRevision: 1 },
    {
      kind: 'events',
      headerRevision: 3,
      events: [
        { type: 'put', key: bytes('jepsen/k0'), value: new Uint8Array([0xff, 0xfe, 0x00]), createRevision: 2, modRevision: 2, version: 1 },
        {
          type: 'put',
          key: bytes('jepsen/k1'),
          value: bytes('base64:looks-encoded'),
          createRevision: 3,
          modRevision: 3,
          version: 1,
          prevKv: { key: bytes('jepsen/k1'), value: bytes('é'), createRevision: 1, modRevision: 1, version: 1 },
        },
      ],
    },
    { kind: 'events', headerRevision: 4, events: [{ type: 'delete', key: bytes('jepsen/k0'), createRevision: 0, modRevision: 4, version: 0 }] },
    { kind: 'progress', headerRevision: 4 },
    { kind: 'canceled', reason: 'client closed' },
  ],
  end: 'client-closed',
  resumedFrom: 2,
};

const history: RunHistory = { operations, faults, watches: [watch] };

const violation: RunResults = {
  verdict: 'violation',
  linearizability: {
    model: 'register',
    verdict: 'violation',
    elapsedMs: 3,
    operations: 5,
    partitions: [
      { key: EVIL, operations: 5, verdict: 'violation', elapsedMs: 2, message: `read of ${EVIL} returned never-written`, linearized: [0, 1], blocked: [3] },
      { key: 'k2', operations: 1, verdict: 'ok', elapsedMs: 0 },
    ],
  },
  watch: { ok: false, violations: [{ guarantee: 'reliable', watch: 'w0', revision: 3, message: `reliable: watch w0 missed ${EVIL}` }], omitted: 0, streams: 1, events: 3 },
  stats: { 'ops/s': 123.5, clients: 3 },
};

describe('watch record serialization', () => {
  it('round-trips bytes: UTF-8 as text, anything else (and text that looks encoded) as base64', () => {
    const json = JSON.parse(JSON.stringify(serializeWatchRecord(watch)));
    expect(json.params.key).toBe('jepsen/');
    expect(json.responses[1].events[0].value.startsWith(bytesMarker)).toBe(true);
    expect(json.responses[1].events[1].value.startsWith(bytesMarker)).toBe(true);
    expect(json.responses[1].events[1].prevKv.value).toBe('é');
    expect(deserializeWatchRecord(json)).toEqual(watch);
  });

  it('any bytes round-trip', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (b) => {
        expect(decodeBytes(encodeBytes(b))).toEqual(b);
      }),
    );
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 20 }), (s) => {
        expect(decodeBytes(encodeBytes(bytes(s)))).toEqual(bytes(s));
      }),
    );
  });
});

describe('writeReport', () => {
  it('writes history.json that reads back unchanged, and results.json', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'jepsen-report-'));
    dirs.push(dir);
    const paths = await writeReport(join(dir, 'run'), info, history, violation);
    const back = parseHistoryJson(await readFile(paths.historyPath, 'utf8'));
    expect(back.info).toEqual(info);
    expect(back.history.operations).toEqual(operations);
    expect(back.history.faults).toEqual(faults);
    expect(back.history.watches).toEqual([watch]);
    const results = JSON.parse(await readFile(paths.resultsPath, 'utf8'));
    expect(results.results).toEqual(violation);
    expect(results.info).toEqual(info);
    const html = await readFile(paths.htmlPath, 'utf8');
    expect(html).toContain('VIOLATION');
    // one operation per line: the history file greps
    expect((await readFile(paths.historyPath, 'utf8')).split('\n').filter((l) => l.includes('"process"')).length).toBe(operations.length);
  });

  it('refuses a file that is not a history', () => {
    expect(() => parseHistoryJson('{"format":"other"}')).toThrow(/not a jepsen-lite-history/);
  });
});

describe('the HTML page', () => {
  const html = renderHtml(info, history, violation);

  it('shows the verdict and the run', () => {
    expect(html).toMatch(/<div id="verdict" class="banner violation"><strong>VIOLATION/);
    expect(html).toContain('dkv jepsen sim --seed 42 --workload register');
    expect(html).toContain('n1, n2, n3');
    expect(html).toContain('ops/s');
  });

  /** The whole-run timeline's drawing (the failure's close-up draws some operations again). */
  const fullTimeline = (page: string): string => {
    const start = page.indexOf('<div id="timeline"');
    expect(start).toBeGreaterThan(0);
    return page.slice(start, page.indexOf('</svg>', start));
  };

  it('has a lane per process and a bar per operation, never-returned ones running to the end', () => {
    for (const p of [0, 1, 2, 7]) expect(html).toContain(`>p${p}</div>`);
    const timeline = fullTimeline(html);
    const rects = [...timeline.matchAll(/<rect class="op ([a-z ]+)" data-id="(\d+)" x="([\d.]+)%" y="(\d+)" width="([\d.]+)%"/g)];
    const violating = [...timeline.matchAll(/<g class="op [a-z ]*violating" data-id="(\d+)"/g)];
    expect([...rects.map((m) => Number(m[2])), ...violating.map((m) => Number(m[1]))].sort((a, b) => a - b)).toEqual(operations.map((o) => o.id));
    const pending = rects.find((m) => m[2] === '2')!;
    expect(pending[1]).toBe('info pending');
    // drawn first, so that later operations of its lane stay visible on top of it
    expect(rects[0]![2]).toBe('2');
    expect(Number(pending[3]) + Number(pending[5])).toBe(100);
    // process 7 is the fourth lane
    expect(rects.find((m) => m[2] === '5')![4]).toBe(String(3 * 16 + 2));
  });

  it('opens on the failure: the blocked operation explained, listed, highlighted and labelled in a close-up', () => {
    expect(html.indexOf('<section id="failure"')).toBeLessThan(html.indexOf('<section id="run"'));
    expect(html).toContain('Failure: Linearizability (register model), key &#60;script&#62;');
    expect(html).toMatch(/<div id="failure-timeline"[\s\S]*<g class="op ok violating" data-id="3">[\s\S]*▼ #3 read/);
    expect([...fullTimeline(html).matchAll(/class="op [a-z ]*violating/g)]).toHaveLength(1);
    expect(html).toContain('Operations that could not be linearized next (1)');
    expect(html).toMatch(/The last 2 of 2 operations linearized before it/);
    expect(html).toContain('never-written');
    expect(html).toContain('reliable: watch w0 missed');
    expect(html).toContain('over 2 independent key(s)');
    // "partition" in the page's text is only ever a network partition.
    const text = html.replace(/<script[\s\S]*?<\/script>|<style[\s\S]*?<\/style>/g, '').replace(/<[^>]*>/g, ' ');
    expect(text.match(/(?<!network )partition/gi)).toBeNull();
  });

  it('draws the fault windows as bands coloured by kind, an open one to the end, with a legend entry per kind', () => {
    const timeline = fullTimeline(html);
    expect(timeline).toContain('<rect class="fault" data-kind="partition" x="0.8%" y="0" width="2.7%" height="64" fill="#d62728"');
    expect(timeline).toContain('<rect class="fault" data-kind="pause" x="4.5%" y="0" width="95.5%" height="64" fill="#1f77b4"');
    expect(html).toContain('network partition: n1 | n2 n3');
    expect([...html.matchAll(/<span class="legend-fault" data-kind="([a-z-]+)"/g)].map((m) => m[1])).toContain('partition');
    const section = html.slice(html.indexOf('<section id="timeline-section"'));
    expect([...section.slice(0, section.indexOf('</section>')).matchAll(/class="legend-fault" data-kind="([a-z-]+)"/g)].map((m) => m[1])).toEqual(['partition', 'pause']);
  });

  it('plots latency and throughput with the faults behind them', () => {
    expect(html).toMatch(/<svg id="latency-chart"[\s\S]*?data-kind="partition"[\s\S]*?<path class="points"/);
    expect(html).toMatch(/<svg id="throughput-chart"[\s\S]*?<polyline class="rate" data-status="ok"/);
  });

  it('escapes every recorded string', () => {
    expect(html).not.toContain(EVIL);
    expect(html).not.toContain('<b>n1</b>');
    expect(html).not.toContain('<n2>');
    expect(html).toContain('&#60;script&#62;alert(1)&#60;/script&#62;');
    // exactly the page's own two script elements
    expect(html.match(/<script/g)).toHaveLength(2);
    expect(html.match(/<\/script>/g)).toHaveLength(2);
  });

  it('an ok run says so and highlights nothing', () => {
    const ok: RunResults = {
      verdict: 'ok',
      linearizability: { model: 'register', verdict: 'ok', elapsedMs: 1, operations: 5, partitions: [{ key: EVIL, operations: 5, verdict: 'ok', elapsedMs: 1 }] },
      stats: {},
    };
    const page = renderHtml(info, history, ok);
    expect(page).toMatch(/class="banner ok"><strong>OK/);
    expect(page).not.toMatch(/<g class="op [a-z ]*violating/);
    expect(page).not.toContain('<section id="failure"');
  });

  it('stays small and quick for 20k operations', () => {
    const many: Operation[] = Array.from({ length: 20_000 }, (_, id) => ({
      id,
      process: id % 10,
      call: id * 3,
      ret: id * 3 + 2,
      status: 'ok',
      input: { f: 'write', key: `k${id % 5}`, value: `${id % 10}-${id}` },
      output: { f: 'write' },
      node: 'n1',
    }));
    const started = performance.now();
    const page = renderHtml({ ...info, durationMs: 60_000 }, { operations: many, faults }, { ...violation, linearizability: { ...violation.linearizability!, partitions: [] } });
    // Generous for a loaded machine; a quadratic step over 20k operations would take far longer.
    expect(performance.now() - started).toBeLessThan(5000);
    expect(page.length).toBeLessThan(8 * 1024 * 1024);
    expect(fullTimeline(page).match(/<rect class="op /g)).toHaveLength(20_000);
  });
});
