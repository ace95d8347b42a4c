/**
 * The report page in a real browser (Debian's headless Chromium through playwright-core): a
 * failing run opens on the Failure section; the violating operation — 3 ms in a 60 s run — is a
 * visible red mark in the close-up without scrolling; the legend has one entry per fault kind;
 * unknown operations are hatched, and only the one that never returned runs to the end.
 *
 * Skips when Chromium is absent on a developer's machine; in CI (`CI` set) it must be there.
 * `JEPSEN_REPORT_SCREENSHOT=/tmp/report-shot.png` also saves screenshots: the Elle report's whole
 * page there, the linearizability report's first screen beside it (`-linearizability.png`).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ElleResult } from '../../jepsen-lite/check/elle/types.js';
import type { FaultWindow, OpStatus, Operation } from '../../jepsen-lite/history.js';
import { violationColour, writeReport, type RunHistory, type RunInfo, type RunResults } from '../../jepsen-lite/report/index.js';

const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const chromiumPresent = existsSync(chromiumPath);
const inCi = process.env.CI !== undefined && process.env.CI !== '';
if (!chromiumPresent && !inCi) {
  console.warn(`report-browser: SKIPPED — no Chromium at ${chromiumPath} (apt-get install chromium, or set CHROMIUM_PATH)`);
}

const RUN_MS = 60_000;
const VIOLATING_MS = 3;
const viewport = { width: 1280, height: 800 };

/** Red as the browser computes it. */
function rgb(hex: string): string {
  const n = Number.parseInt(hex.slice(1), 16);
  return `rgb(${n >> 16}, ${(n >> 8) & 255}, ${n & 255})`;
}

const faults: FaultWindow[] = [
  { kind: 'partition', start: 10_000, end: 15_000, description: 'n1 | n2 n3' },
  { kind: 'pause', start: 20_000, end: 24_000, description: 'SIGSTOP n2' },
  { kind: 'kill', start: 30_000, end: 33_000, description: 'SIGKILL n3' },
  { kind: 'partition', start: 40_500, end: 44_000, description: 'n2 | n1 n3' },
  { kind: 'clock-skew', start: 50_000, end: 54_000, description: 'n1 +300 ms' },
];
const faultKinds = ['partition', 'pause', 'kill', 'clock-skew'];

/** Five busy clients over the whole run, plus the operations the tests look at (ids from 10 000). */
function background(input: (i: number) => unknown, output: (i: number) => unknown): Operation[] {
  const ops: Operation[] = [];
  let id = 0;
  for (let p = 0; p < 5; p++) {
    for (let t = p * 37; t < RUN_MS - 500; t += 350 + ((id * 7919) % 200)) {
      const status: OpStatus = id % 23 === 0 ? 'fail' : 'ok';
      const latency = 4 + ((id * 104_729) % 60) + (t > 10_000 && t < 15_000 ? 150 : 0);
      ops.push({ id, process: p, call: t, ret: t + latency, status, input: input(id), ...(status === 'ok' ? { output: output(id) } : { error: 'etcdserver: too many requests' }), node: `n${1 + (p % 3)}` });
      id++;
    }
  }
  return ops;
}

const NEVER_RETURNED = 10_002;
const RETURNED_UNKNOWN = 10_003;

function unknownOps(input: unknown): Operation[] {
  return [
    { id: NEVER_RETURNED, process: 8, call: 20_500, status: 'info', input, error: 'DEADLINE_EXCEEDED', node: 'n2' },
    { id: RETURNED_UNKNOWN, process: 9, call: 30_500, ret: 32_000, status: 'info', input, error: 'UNAVAILABLE: connection reset', node: 'n3' },
  ];
}

function sorted(ops: Operation[]): Operation[] {
  return ops.sort((a, b) => a.call - b.call);
}

const info: RunInfo = {
  mode: 'real',
  target: 'dkv',
  workload: 'list-append',
  model: 'kv',
  seed: 7,
  nodes: ['n1', 'n2', 'n3'],
  startedAt: '2026-01-01T00:00:00.000Z',
  durationMs: RUN_MS,
  command: 'dkv jepsen run --workload list-append --seed 7',
};

// ---- An Elle anomaly: G-single between two 3 ms transactions ----------------------------------

const T9 = 10_000;
const T12 = 10_001;
const txnInput = (i: number) => ({ f: 'txn', mops: [{ f: 'append', key: `k${i % 4}`, value: i }, { f: 'r', key: `k${(i + 1) % 4}` }] });
const elleHistory: RunHistory = {
  operations: sorted([
    ...background(txnInput, () => ({ f: 'txn', revision: 1, succeeded: true, results: [] })),
    { id: T9, process: 3, call: 41_200, ret: 41_200 + VIOLATING_MS, status: 'ok', input: { f: 'txn', mops: [{ f: 'append', key: 'x', value: 9 }, { f: 'r', key: 'y' }] }, output: { f: 'txn', revision: 70, succeeded: true, results: [] } },
    { id: T12, process: 4, call: 41_201, ret: 41_201 + VIOLATING_MS, status: 'ok', input: { f: 'txn', mops: [{ f: 'append', key: 'y', value: 12 }, { f: 'r', key: 'x' }] }, output: { f: 'txn', revision: 71, succeeded: true, results: [] } },
    ...unknownOps(txnInput(0)),
  ]),
  faults,
};
const elle: ElleResult = {
  model: 'list-append',
  verdict: 'violation',
  anomalies: [
    {
      name: 'G-single',
      opIds: [T12, T9],
      cycle: [
        { from: T12, to: T9, type: 'ww', key: 'x' },
        { from: T9, to: T12, type: 'rw', key: 'x' },
      ],
      explanation: `T${T12} appended to x before T${T9} did, yet T${T9} did not see T${T12}'s append to x: each ran before the other (read skew).`,
    },
  ],
  counts: { 'G-single': 1 },
  notSatisfied: ['snapshot-isolation', 'serializable', 'strict-serializable'],
  stats: { txns: elleHistory.operations.length, committed: elleHistory.operations.length - 3, unknownIncluded: 0, edges: 812, elapsedMs: 14 },
};
const elleResults: RunResults = { verdict: 'violation', txn: elle, stats: { 'ops/s': 14 } };

// ---- A linearizability violation: a stale read ------------------------------------------------

const STALE_READ = 10_000;
const registerInput = (i: number) => (i % 2 === 0 ? { f: 'write', key: `k${i % 3}`, value: `${i}` } : { f: 'read', key: `k${i % 3}` });
const linHistory: RunHistory = {
  operations: sorted([
    ...background(registerInput, (i) => (i % 2 === 0 ? { f: 'write' } : { f: 'read', value: `${i - 1}` })),
    { id: STALE_READ, process: 2, call: 41_300, ret: 41_300 + VIOLATING_MS, status: 'ok', input: { f: 'read', key: 'k1' }, output: { f: 'read', value: 'stale' }, node: 'n2' },
    ...unknownOps(registerInput(0)),
  ]),
  faults,
};
const linResults: RunResults = {
  verdict: 'violation',
  linearizability: {
    model: 'register',
    verdict: 'violation',
    elapsedMs: 40,
    operations: linHistory.operations.length,
    partitions: [
      { key: 'k0', operations: 300, verdict: 'ok', elapsedMs: 10 },
      { key: 'k1', operations: 300, verdict: 'violation', elapsedMs: 20, message: 'not linearizable: after #117, in state "116", none of these can go next: #10000 read k1 → stale', linearized: [0, 3, 6], blocked: [STALE_READ] },
    ],
  },
  stats: {},
};

// ---- The browser ----------------------------------------------------------------------------

const dirs: string[] = [];
let browser: Browser | undefined;

beforeAll(async () => {
  if (!chromiumPresent) return;
  browser = await chromium.launch({ executablePath: chromiumPath });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

// This project's TypeScript has no DOM types: the little of the browser the checks use, typed here.
interface BrowserElement {
  getAttribute(name: string): string | null;
}
interface BrowserGlobals {
  getComputedStyle(element: BrowserElement): Record<string, string>;
  document: { querySelector(selector: string): { id: string } | null };
  scrollY: number;
}

function style(locator: Locator, property: 'fill' | 'opacity'): Promise<string> {
  return locator.evaluate((el, p) => (globalThis as unknown as BrowserGlobals).getComputedStyle(el as BrowserElement)[p]!, property);
}

function styles(locator: Locator, property: 'fill'): Promise<string[]> {
  return locator.evaluateAll((els, p) => els.map((el) => (globalThis as unknown as BrowserGlobals).getComputedStyle(el as BrowserElement)[p]!), property);
}

function attributes(locator: Locator, name: string): Promise<(string | null)[]> {
  return locator.evaluateAll((els, n) => els.map((el) => (el as BrowserElement).getAttribute(n)), name);
}

async function open(history: RunHistory, results: RunResults): Promise<Page> {
  const dir = await mkdtemp(join(tmpdir(), 'jepsen-report-browser-'));
  dirs.push(dir);
  const { htmlPath } = await writeReport(dir, info, history, results);
  const page = await browser!.newPage({ viewport });
  await page.goto(pathToFileURL(htmlPath).href);
  return page;
}

async function expectFailureFirst(page: Page, violatingId: number): Promise<void> {
  const firstSection = await page.evaluate(() => (globalThis as unknown as BrowserGlobals).document.querySelector('section')?.id);
  expect(firstSection).toBe('failure');
  const mark = page.locator(`#failure-timeline .op.violating[data-id="${violatingId}"]`);
  const box = await mark.boundingBox();
  expect(box).not.toBeNull();
  expect(box!.width).toBeGreaterThanOrEqual(4);
  expect(box!.height).toBeGreaterThanOrEqual(4);
  // Inside the first screen: the page opens on it.
  expect(await page.evaluate(() => (globalThis as unknown as BrowserGlobals).scrollY)).toBe(0);
  expect(box!.x).toBeGreaterThanOrEqual(0);
  expect(box!.y).toBeGreaterThanOrEqual(0);
  expect(box!.x + box!.width).toBeLessThanOrEqual(viewport.width);
  expect(box!.y + box!.height).toBeLessThanOrEqual(viewport.height);
  const fills = await styles(mark.locator('rect'), 'fill');
  expect(fills.length).toBeGreaterThan(0);
  for (const fill of fills) expect(fill).toBe(rgb(violationColour));
  // Labelled, and the others dimmed.
  await expect.poll(() => page.locator('#failure-timeline text.op-label', { hasText: `#${violatingId}` }).count()).toBe(1);
  const dimmed = await style(page.locator('#failure-timeline .ops .op').first(), 'opacity');
  expect(Number(dimmed)).toBeLessThan(1);
}

async function expectLegendAndUnknowns(page: Page): Promise<void> {
  const kinds = await attributes(page.locator('#timeline-section .legend .legend-fault'), 'data-kind');
  expect(kinds.sort()).toEqual([...faultKinds].sort());
  const statuses = await attributes(page.locator('#timeline-section .legend .legend-op'), 'data-status');
  expect(statuses).toEqual(['ok', 'fail', 'info', 'violating']);
  const svg = (await page.locator('#timeline svg.ops-svg').boundingBox())!;
  const never = page.locator(`#timeline .op[data-id="${NEVER_RETURNED}"]`);
  const returned = page.locator(`#timeline .op[data-id="${RETURNED_UNKNOWN}"]`);
  for (const op of [never, returned]) expect(await style(op, 'fill')).toContain('hatch-info');
  const neverBox = (await never.boundingBox())!;
  const returnedBox = (await returned.boundingBox())!;
  // To the end of the run (within the stroke's half pixel).
  expect(Math.abs(neverBox.x + neverBox.width - (svg.x + svg.width))).toBeLessThanOrEqual(2);
  // 30.5 s – 32 s of 60 s: it ends about 53% of the way across, nowhere near the end.
  expect(returnedBox.x + returnedBox.width).toBeLessThan(svg.x + svg.width * 0.6);
  expect(returnedBox.width).toBeGreaterThan(0);
}

describe.skipIf(!chromiumPresent && !inCi)('the report page in Chromium', () => {
  it('Chromium is installed (CI must have it: .ci/run installs Debian chromium)', () => {
    expect(chromiumPresent, `no Chromium at ${chromiumPath}`).toBe(true);
  });

  it('an Elle anomaly: the page opens on the failure, the 3 ms transactions red and wide enough to see', async () => {
    const page = await open(elleHistory, elleResults);
    await expectFailureFirst(page, T9);
    await expectFailureFirst(page, T12);
    expect(await page.locator('#failure p.cycle').textContent()).toContain(`T${T12} -ww x→ T${T9} -rw x→ T${T12}`);
    await expectLegendAndUnknowns(page);
    // Perf charts with the fault windows behind them.
    expect(await page.locator('#latency-chart rect.fault').count()).toBe(faults.length);
    expect(await page.locator('#throughput-chart polyline.rate').count()).toBeGreaterThanOrEqual(2);
    const screenshot = process.env.JEPSEN_REPORT_SCREENSHOT;
    if (screenshot !== undefined && screenshot !== '') await page.screenshot({ path: screenshot, fullPage: true });
    await page.close();
  }, 60_000);

  it('a linearizability violation: the blocked read is the evidence', async () => {
    const page = await open(linHistory, linResults);
    await expectFailureFirst(page, STALE_READ);
    expect(await page.locator('#failure h2').textContent()).toContain('key k1');
    await expectLegendAndUnknowns(page);
    expect(await page.locator('#linearizability').textContent()).toContain('independent key');
    const screenshot = process.env.JEPSEN_REPORT_SCREENSHOT;
    if (screenshot !== undefined && screenshot !== '') await page.screenshot({ path: screenshot.replace(/(\.png)?$/, '-linearizability.png') });
    await page.close();
  }, 60_000);
});
