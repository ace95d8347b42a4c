/**
 * The report page: one self-contained HTML file (inline CSS, SVG and a little JS; nothing fetched).
 * A failing run opens on its evidence: a "Failure" section with the checker's explanation, the
 * operations involved and a close-up of the timeline around them (`evidence.ts` picks what to
 * show). Then the run, the whole timeline (a lane per client process, a bar per operation coloured
 * by status, unknown ones hatched, violating ones red; fault windows coloured by kind), latency and
 * throughput over time with the faults behind them, and each checker's section.
 *
 * Tooltips come from the operations embedded as JSON. Every piece of recorded text (keys, values,
 * error messages, node names) is escaped: a history can hold anything.
 */
import type { ElleResult } from '../check/elle/types.js';
import type { ElectionResult, HolderInterval, PauseOutcome } from '../check/index.js';
import type { FaultWindow, Operation } from '../history.js';
import { type Evidence, cycleText, keyName, primaryEvidence, violatingIds } from './evidence.js';
import { faultKindLabel, faultLegend } from './faults.js';
import { perfCharts } from './perf.js';
import { drawTimeline, labelledLaneHeightPx, laneHeightPx, opLegend, patternDefs, timelineOpsMax } from './timeline.js';
import { escapeHtml, json, num, scriptJson, seconds } from './text.js';
import type { ReportLinearizability, ReportPartition, RunHistory, RunInfo, RunResults, RunVerdict } from './types.js';

export { escapeHtml, scriptJson } from './text.js';
export { blockedIds } from './evidence.js';
export { timelineOpsMax } from './timeline.js';

export const zoomMax = 200;
/** Of a violating key's linearized prefix, how many of the last operations are listed. */
export const linearizedShownMax = 12;
export const blockedShownMax = 100;
export const partitionsShownMax = 200;
export const watchViolationsShownMax = 200;
export const anomaliesShownMax = 50;
/** Lanes in the failure's close-up: the involved operations' processes, then others active there. */
export const failureLanesMax = 16;
/** The checker's message under the failure's explanation is shown unfolded up to this length. */
export const detailOpenCharsMax = 400;
/**
 * The close-up's margin on each side: the involved operations' span, at least `failureMarginMsMin`
 * (enough to show what ran around a few-millisecond operation, short enough that it is a bar).
 */
export const failureMarginMsMin = 100;

const verdictText: Readonly<Record<RunVerdict, string>> = {
  ok: 'OK: no violation found',
  violation: 'VIOLATION',
  unknown: 'UNKNOWN: the checker ran out of budget before deciding',
};

// ---- Sections -------------------------------------------------------------------------------

function banner(results: RunResults): string {
  const parts: string[] = [];
  const txn = results.txn;
  if (txn !== undefined) {
    const names = Object.entries(txn.counts).map(([name, count]) => `${name} ×${count}`);
    parts.push(`transactions (${escapeHtml(txn.model)}): ${escapeHtml(txn.verdict)}${names.length === 0 ? '' : ` — ${escapeHtml(names.join(', '))}`}`);
  }
  const lin = results.linearizability;
  if (lin !== undefined) parts.push(`linearizability (${escapeHtml(lin.model)}): ${escapeHtml(lin.verdict)}`);
  if (results.watch !== undefined) parts.push(`watch guarantees: ${results.watch.ok ? 'held' : `${results.watch.violations.length + results.watch.omitted} violation(s)`}`);
  if (results.fencing !== undefined) {
    const fencing = results.fencing;
    parts.push(`fencing: ${fencing.ok ? 'held' : `${fencing.violations.length + fencing.omitted} violation(s)`}, lease-only overlaps: ${fencing.unfenced.overlaps}`);
  }
  if (results.election !== undefined) {
    const election = results.election;
    parts.push(`election: ${election.ok ? 'held' : `${election.violations.length + election.omitted} violation(s)`}, leader changes: ${election.stats.leaderChanges}`);
  }
  if (results.replicas !== undefined) {
    const r = results.replicas;
    parts.push(`shard replicas: ${r.diverged > 0 ? `${r.diverged} shard(s) diverged` : `${r.compared} of ${r.shards} shard(s) equal`}${r.unsettled > 0 ? `, ${r.unsettled} unchecked` : ''}`);
  }
  return `<div id="verdict" class="banner ${escapeHtml(results.verdict)}"><strong>${escapeHtml(verdictText[results.verdict])}</strong><span>${parts.join(' · ')}</span></div>`;
}

function table(rows: readonly (readonly [string, string])[]): string {
  return `<table class="kv">${rows.map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${v}</td></tr>`).join('')}</table>`;
}

function runInfo(info: RunInfo, operations: readonly Operation[]): string {
  const count = (status: string) => operations.filter((o) => o.status === status).length;
  const rows: [string, string][] = [
    ['mode', escapeHtml(info.mode)],
    ['target', escapeHtml(info.target)],
    ['workload', escapeHtml(info.workload)],
    ['model', escapeHtml(info.model)],
  ];
  if (info.seed !== undefined) rows.push(['seed', escapeHtml(String(info.seed))]);
  rows.push(
    ['nodes', escapeHtml(info.nodes.join(', '))],
    ['started', escapeHtml(info.startedAt)],
    ['duration', escapeHtml(seconds(info.durationMs))],
    ['operations', `${operations.length} (ok ${count('ok')}, fail ${count('fail')}, unknown ${count('info')})`],
    [info.mode === 'sim' ? 'replay' : 'rerun', `<code>${escapeHtml(info.command)}</code>`],
  );
  return `<section id="run"><h2>Run</h2>${table(rows)}</section>`;
}

function stats(results: RunResults): string {
  const entries = Object.entries(results.stats);
  if (entries.length === 0) return '';
  return `<section id="stats"><h2>Stats</h2>${table(entries.map(([k, v]) => [k, escapeHtml(String(v))]))}</section>`;
}

/** The end of the drawing: the run's duration, or later if an operation or fault is. */
function runEnd(info: RunInfo, history: RunHistory): number {
  let end = Math.max(info.durationMs, 1);
  for (const op of history.operations) end = Math.max(end, op.ret ?? op.call);
  for (const f of history.faults) end = Math.max(end, f.end ?? f.start);
  return end;
}

function processes(operations: readonly Operation[]): number[] {
  return [...new Set(operations.map((o) => o.process))].sort((a, b) => a - b);
}

function legend(faults: readonly FaultWindow[]): string {
  const kinds = faultLegend(faults);
  return `<div class="legend">${opLegend()}${kinds === '' ? '' : ` <span class="legend-sep">faults:</span> ${kinds}`}</div>`;
}

function timelineSection(history: RunHistory, endMs: number, violating: ReadonlySet<number>): string {
  const drawn = drawTimeline(history.operations, history.faults, {
    id: 'timeline',
    fromMs: 0,
    toMs: endMs,
    runEndMs: endMs,
    lanes: processes(history.operations),
    laneHeightPx,
    violating,
    dimOthers: false,
    labelViolating: false,
  });
  return `<section id="timeline-section"><h2>Timeline of the whole run</h2>
<div class="controls"><label>zoom <input id="zoom" type="range" min="1" max="${zoomMax}" value="1"></label>
${drawn.omitted > 0 ? `<span class="note">${drawn.omitted} operations not drawn (more than ${timelineOpsMax})</span>` : ''}</div>
${legend(history.faults)}
${drawn.html}
${faultsTable(history.faults)}
</section>`;
}

function faultsTable(faults: readonly FaultWindow[]): string {
  if (faults.length === 0) return '<p class="note">No faults were injected.</p>';
  const rows = faults.map(
    (f) => `<tr><td>${escapeHtml(faultKindLabel(f.kind))}</td><td>${escapeHtml(seconds(f.start))}</td><td>${f.end === undefined ? 'end of run' : escapeHtml(seconds(f.end))}</td><td>${escapeHtml(f.description)}</td></tr>`,
  );
  return `<details><summary>${faults.length} fault window(s)</summary><table class="list"><tr><th>kind</th><th>start</th><th>end</th><th>what</th></tr>${rows.join('')}</table></details>`;
}

function opRow(op: Operation): string {
  return `<tr class="op-row" data-id="${op.id}"><td><a href="#" class="goto" data-id="${op.id}">#${op.id}</a></td><td>p${op.process}</td><td>${escapeHtml(op.node ?? '')}</td><td>${escapeHtml(num(op.call))}</td><td>${op.ret === undefined ? '—' : escapeHtml(num(op.ret))}</td><td class="${op.status}">${op.status === 'info' ? 'unknown' : op.status}</td><td><code>${escapeHtml(json(op.input))}</code></td><td><code>${escapeHtml(json(op.output))}</code></td><td>${escapeHtml(op.error ?? '')}</td></tr>`;
}

function opTable(ids: readonly number[], byId: ReadonlyMap<number, Operation>): string {
  const rows = ids.map((id) => byId.get(id)).filter((op): op is Operation => op !== undefined);
  return `<table class="list"><tr><th>op</th><th>process</th><th>node</th><th>call ms</th><th>ret ms</th><th>status</th><th>input</th><th>output</th><th>error</th></tr>${rows.map(opRow).join('')}</table>`;
}

// ---- The failure --------------------------------------------------------------------------------

/** The involved operations' span, widened by a margin, within the run. */
export function failureWindow(involved: readonly Operation[], endMs: number): { fromMs: number; toMs: number } {
  let from = Infinity;
  let to = -Infinity;
  for (const op of involved) {
    from = Math.min(from, op.call);
    to = Math.max(to, op.ret ?? op.call);
  }
  const margin = Math.max(to - from, failureMarginMsMin);
  const fromMs = Math.max(0, from - margin);
  const toMs = Math.min(endMs, to + margin);
  return toMs > fromMs ? { fromMs, toMs } : { fromMs, toMs: fromMs + failureMarginMsMin };
}

/** The involved operations' processes first (in the order named), then others active in the window. */
function failureLanes(involved: readonly Operation[], operations: readonly Operation[], window: { fromMs: number; toMs: number }, endMs: number): number[] {
  const lanes = [...new Set(involved.map((op) => op.process))];
  const others = new Set<number>();
  for (const op of operations) if (op.call <= window.toMs && (op.ret ?? endMs) >= window.fromMs) others.add(op.process);
  for (const p of [...others].sort((a, b) => a - b)) {
    if (lanes.length >= failureLanesMax) break;
    if (!lanes.includes(p)) lanes.push(p);
  }
  return lanes;
}

function closeUp(evidence: Evidence, history: RunHistory, byId: ReadonlyMap<number, Operation>, endMs: number): string {
  const involved = evidence.opIds.map((id) => byId.get(id)).filter((op): op is Operation => op !== undefined);
  if (involved.length === 0) return '<p class="note">The checker named no operation of the history: see its section below.</p>';
  const window = failureWindow(involved, endMs);
  const lanes = failureLanes(involved, history.operations, window, endMs);
  const drawn = drawTimeline(history.operations, history.faults, {
    id: 'failure-timeline',
    ...window,
    runEndMs: endMs,
    lanes,
    laneHeightPx: labelledLaneHeightPx,
    violating: new Set(evidence.opIds),
    dimOthers: true,
    labelViolating: true,
  });
  return `<h3>Close-up: ${escapeHtml(seconds(window.fromMs))} – ${escapeHtml(seconds(window.toMs))} (the whole run is below)</h3>
${legend(drawn.faults)}
${drawn.html}`;
}

function failureSection(results: RunResults, history: RunHistory, evidence: Evidence | undefined, endMs: number): string {
  if (results.verdict !== 'violation') return '';
  if (evidence === undefined) {
    return `<section id="failure" class="failure"><h2>Failure</h2><p>A checker reported a violation without naming operations: see its section below.</p></section>`;
  }
  const byId = new Map(history.operations.map((op) => [op.id, op]));
  const cycle = evidence.cycle === undefined ? '' : `<p class="cycle">Cycle: <code>${escapeHtml(evidence.cycle)}</code></p>`;
  const revisions = evidence.revisions === undefined ? '' : `<p>Revision(s): ${escapeHtml(evidence.revisions.join(', '))}</p>`;
  // A short message is shown open; a long one (a big model state) stays folded.
  const open = evidence.detail !== undefined && evidence.detail.length <= detailOpenCharsMax ? ' open' : '';
  const detail = evidence.detail === undefined ? '' : `<details${open}><summary>more from the checker</summary><pre class="message">${escapeHtml(evidence.detail)}</pre></details>`;
  const ops = evidence.opIds.length === 0 ? '' : `<h3>Operations involved (${evidence.opIds.length})</h3>${opTable(evidence.opIds, byId)}`;
  return `<section id="failure" class="failure"><h2>Failure: ${escapeHtml(evidence.title)}</h2>
<p class="explanation">${escapeHtml(evidence.explanation)}</p>
${cycle}${revisions}${detail}
${closeUp(evidence, history, byId, endMs)}
${ops}
</section>`;
}

// ---- Checkers -------------------------------------------------------------------------------

function txnSection(txn: ElleResult | undefined, byId: ReadonlyMap<number, Operation>): string {
  if (txn === undefined) return '';
  const { stats } = txn;
  const rows: [string, string][] = [
    ['model', escapeHtml(txn.model)],
    ['transactions (committed / unknown proved committed)', escapeHtml(`${stats.txns} (${stats.committed} / ${stats.unknownIncluded})`)],
    ['dependency edges', escapeHtml(String(stats.edges))],
    ['checked in', escapeHtml(`${num(stats.elapsedMs)} ms`)],
  ];
  if (txn.notSatisfied.length > 0) rows.push(['not satisfied', escapeHtml(txn.notSatisfied.join(', '))]);
  const counts = Object.entries(txn.counts).map(([name, count]) => `<tr><td>${escapeHtml(name)}</td><td>${escapeHtml(String(count))}</td></tr>`);
  const anomalies = txn.anomalies.slice(0, anomaliesShownMax).map((a) => {
    const cycle = a.cycle === undefined ? '' : `<p class="cycle">Cycle: <code>${escapeHtml(cycleText(a.cycle))}</code></p>`;
    return `<div class="anomaly"><h3>${escapeHtml(a.name)}</h3><p>${escapeHtml(a.explanation)}</p>${cycle}${opTable(a.opIds, byId)}</div>`;
  });
  return `<section id="txn"><h2>Transactions (Elle): ${escapeHtml(txn.verdict)}</h2>
${table(rows)}
${counts.length === 0 ? '' : `<table class="list"><tr><th>anomaly</th><th>found</th></tr>${counts.join('')}</table>`}
${anomalies.join('\n')}
</section>`;
}

function partitionDetails(p: ReportPartition, byId: ReadonlyMap<number, Operation>): string {
  const blocked = p.blocked ?? [];
  const linearized = p.linearized ?? [];
  const last = linearized.slice(-linearizedShownMax);
  return `<div class="partition ${escapeHtml(p.verdict)}"><h3>${escapeHtml(keyName(p.key))}: ${escapeHtml(p.verdict)} (${p.operations} operations)</h3>
${p.message === undefined ? '' : `<pre class="message">${escapeHtml(p.message)}</pre>`}
${blocked.length === 0 ? '' : `<h4>Operations that could not be linearized next (${blocked.length})</h4>${opTable(blocked.slice(0, blockedShownMax), byId)}`}
${last.length === 0 ? '' : `<h4>The last ${last.length} of ${linearized.length} operations linearized before it</h4>${opTable(last, byId)}`}
</div>`;
}

function linearizability(lin: ReportLinearizability | undefined, byId: ReadonlyMap<number, Operation>): string {
  if (lin === undefined) return '';
  const bad = lin.partitions.filter((p) => p.verdict !== 'ok');
  const rows = lin.partitions
    .slice(0, partitionsShownMax)
    .map((p) => `<tr><td>${p.key === '' ? '(whole history)' : escapeHtml(p.key)}</td><td>${p.operations}</td><td class="${escapeHtml(p.verdict)}">${escapeHtml(p.verdict)}</td><td>${escapeHtml(num(p.elapsedMs))}</td></tr>`);
  const more = lin.partitions.length > partitionsShownMax ? `<p class="note">${lin.partitions.length - partitionsShownMax} more independent keys</p>` : '';
  return `<section id="linearizability"><h2>Linearizability: ${escapeHtml(lin.verdict)}</h2>
<p>model <code>${escapeHtml(lin.model)}</code>, ${lin.operations} operations over ${lin.partitions.length} independent key(s) (each checked on its own), checked in ${escapeHtml(num(lin.elapsedMs))} ms.</p>
${bad.map((p) => partitionDetails(p, byId)).join('\n')}
<details${bad.length > 0 ? '' : ' open'}><summary>independent keys</summary><table class="list"><tr><th>key</th><th>operations</th><th>verdict</th><th>ms</th></tr>${rows.join('')}</table>${more}</details>
</section>`;
}

function perfSection(history: RunHistory, endMs: number): string {
  return `<section id="perf"><h2>Latency and throughput</h2>${perfCharts(history.operations, history.faults, endMs)}</section>`;
}

function watchSection(results: RunResults): string {
  const watch = results.watch;
  if (watch === undefined) return '';
  const shown = watch.violations.slice(0, watchViolationsShownMax);
  const items = shown.map((v) => `<li><span class="tag">${escapeHtml(v.guarantee)}</span> ${escapeHtml(v.message)}</li>`);
  const left = watch.omitted + watch.violations.length - shown.length;
  return `<section id="watch"><h2>Watch guarantees: ${watch.ok ? 'held' : 'violated'}</h2>
<p>${watch.streams} stream(s), ${watch.events} event(s) delivered.</p>
${items.length === 0 ? '' : `<ul class="violations">${items.join('')}</ul>`}
${left > 0 ? `<p class="note">${left} more violation(s) not shown</p>` : ''}
</section>`;
}

function interval(h: HolderInterval): string {
  return `process ${h.process} token ${h.token} believed it held the lock ${seconds(h.start)}–${seconds(h.end)}`;
}

function fencingSection(results: RunResults): string {
  const fencing = results.fencing;
  if (fencing === undefined) return '';
  const { fenced, unfenced } = fencing;
  const rows: [string, string][] = [
    ['fenced writes accepted', String(fenced.accepted)],
    ['fenced writes refused: fence stale', String(fenced.refusedStale)],
    ['fenced writes refused otherwise', String(fenced.refusedOther)],
    ['fenced writes unknown', String(fenced.unknown)],
    ['resource puts in the committed history', fenced.committed < 0 ? 'not read' : String(fenced.committed)],
    ['unfenced (lease-only) writes acknowledged', String(unfenced.acknowledged)],
    ['holders with unfenced writes', String(unfenced.holders)],
    ['lease-only overlaps (holder pairs)', String(unfenced.overlaps)],
    ['lease-only interleavings (writes by an older holder after a newer one)', String(unfenced.interleavings)],
  ];
  const violations = fencing.violations.map((v) => `<li>${escapeHtml(v)}</li>`);
  const examples = unfenced.overlapExamples.map(([a, b]) => `<li>${escapeHtml(interval(a))}; ${escapeHtml(interval(b))}</li>`);
  const pauses = (fencing.pauses ?? []).map((p) => `<li>${escapeHtml(pauseLine(p))}</li>`);
  return `<section id="fencing"><h2>Fencing: ${fencing.ok ? 'held' : 'violated'}</h2>
<p>Fenced writes must never interleave (tokens non-decreasing in revision order). Lease-only overlaps are what a lock without fencing allows when a holder pauses past its lease: expected, not a failure.</p>
${table(rows.map(([k, v]) => [k, escapeHtml(v)]))}
${violations.length === 0 ? '' : `<ul class="violations">${violations.join('')}</ul>`}
${fencing.omitted > 0 ? `<p class="note">${fencing.omitted} more violation(s) not shown</p>` : ''}
${pauses.length === 0 ? '' : `<h3>Holder pauses</h3><ul class="pauses">${pauses.join('')}</ul>`}
${examples.length === 0 ? '' : `<details><summary>overlapping holders (first ${examples.length})</summary><ul>${examples.join('')}</ul></details>`}
</section>`;
}

/** Tokens of the holders that took the lock during a pause named in its line. */
const pauseTokensShownMax = 5;

/** One holder pause's outcome, in words (the HTML report and the command's summary). */
export function pauseLine(p: PauseOutcome): string {
  const shown = p.takenOverBy.slice(0, pauseTokensShownMax).join(', ');
  const more = p.takenOverBy.length > pauseTokensShownMax ? ', …' : '';
  const taken = p.takenOverBy.length === 0 ? 'nobody took the lock meanwhile' : `taken by ${p.takenOverBy.length} holder(s) (tokens ${shown}${more})`;
  return `process ${p.process} (token ${p.token}) stopped ${p.start}–${p.end} ms${p.stopped ? ' (state T seen)' : ' (NOT seen stopped)'}: ${taken}; after it fenced writes accepted ${p.fencedAfter.accepted}, refused stale ${p.fencedAfter.refusedStale}; lease-only writes ${p.unfencedAfter.acknowledged}, ${p.unfencedAfter.overlapping} overlapping a newer holder`;
}

function electionSection(election: ElectionResult | undefined): string {
  if (election === undefined) return '';
  const { stats } = election;
  const known = (n: number): string => (n < 0 ? 'not read' : String(n));
  const rows: [string, string][] = [
    ['campaigns (won / refused / unknown)', `${stats.campaigns} (${stats.campaignsWon} / ${stats.campaignsFailed} / ${stats.campaignsUnknown})`],
    ['proclaims (acknowledged / refused / unknown)', `${stats.proclaims} (${stats.proclaimsAcknowledged} / ${stats.proclaimsRefused} / ${stats.proclaimsUnknown})`],
    ['resigns (acknowledged)', `${stats.resigns} (${stats.resignsAcknowledged})`],
    ['leader terms in the committed history', known(stats.leaders)],
    ['leader changes in the committed history', known(stats.leaderChanges)],
    ['leader states (leader and value) in the committed history', known(stats.states)],
    ['events checked', String(stats.eventsChecked)],
  ];
  const observers = stats.observers.map(
    (o) => `<tr><td>o${o.observer}</td><td>${o.segments}</td><td>${o.states}</td><td>${o.leaders}</td><td>${o.leaderChanges}</td><td>${o.skipped < 0 ? '—' : o.skipped}</td></tr>`,
  );
  const violations = election.violations.map((v) => `<li><span class="tag">${escapeHtml(v.property)}</span> ${escapeHtml(v.message)}</li>`);
  return `<section id="election"><h2>Election: ${election.ok ? 'held' : 'violated'}</h2>
<p>From the committed history, the leader at a revision is the key under the election's prefix with the lowest create revision alive there. Checked: at most one leader per revision; every acknowledged campaign's key led when it can have been acknowledged; every observer saw leaders in the true order (a reopened stream may miss what changed in its gap); every acknowledged proclaim was written by the leader.</p>
${table(rows.map(([k, v]) => [k, escapeHtml(v)]))}
<h3>Observers</h3><table class="list"><tr><th>observer</th><th>streams</th><th>leader states seen</th><th>leaders seen</th><th>leader changes seen</th><th>states skipped inside a stream</th></tr>${observers.join('')}</table>
${violations.length === 0 ? '' : `<ul class="violations">${violations.join('')}</ul>`}
${election.omitted > 0 ? `<p class="note">${election.omitted} more violation(s) not shown</p>` : ''}
</section>`;
}

// ---- Page -----------------------------------------------------------------------------------

/** The colour of a violating operation, its legend entry and the failure section. */
export const violationColour = '#d62728';

const css = `
body{font:13px/1.4 system-ui,sans-serif;margin:0 16px 40px;color:#222}
h1{font-size:18px;margin:12px 0 4px}
h2{margin:24px 0 8px;font-size:16px}h3{font-size:14px;margin:12px 0 4px}h4{margin:8px 0 4px;font-size:13px}
.banner{margin:12px 0;padding:12px 16px;border-radius:6px;display:flex;gap:16px;align-items:baseline;font-size:15px}
.banner.ok{background:#dff3df;border:1px solid #6db56d}.banner.violation{background:#fbdada;border:1px solid ${violationColour}}
.banner.unknown{background:#fff1cc;border:1px solid #e0a800}
section.failure{border:2px solid ${violationColour};border-radius:6px;padding:4px 12px 12px;background:#fffafa}
section.failure h2{color:${violationColour}}p.explanation{font-size:15px;margin:6px 0}
p.cycle code{font-size:14px;background:#f3f3f3;padding:2px 6px}
table.kv th{text-align:left;padding-right:12px;font-weight:600}table.list{border-collapse:collapse;margin:4px 0}
table.list td,table.list th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
code{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all}
.controls{display:flex;gap:16px;align-items:center;margin:4px 0}.note{color:#777}
.legend{margin:4px 0;display:flex;flex-wrap:wrap;gap:4px 14px;align-items:center}
.legend>span{white-space:nowrap}.legend svg{vertical-align:middle;margin-right:4px}.legend-sep{font-weight:600}
.sw{display:inline-block;width:14px;height:10px;margin:0 4px 0 0;vertical-align:middle}
.timeline-grid{display:flex;border:1px solid #ccc;background:#fff}.lane-labels{flex:none;width:44px;font-size:11px;background:#fafafa}
.lane-label{padding-left:4px}
.timeline-scroll{overflow-x:auto;flex:1}.timeline{position:relative}
.ops-svg{display:block}.fault-labels{position:relative;overflow:hidden}
.fault-label{position:absolute;white-space:nowrap;font-size:11px;padding:0 3px;border-left:3px solid;background:rgba(255,255,255,.85)}
.axis{position:relative;height:18px;font-size:11px;color:#555}.tick{position:absolute;border-left:1px solid #aaa;padding-left:2px;white-space:nowrap}
.lane-0{fill:#fff}.lane-1{fill:#f5f5f5}
.op{stroke-width:1;vector-effect:non-scaling-stroke}rect.fault{pointer-events:none}
.op.ok{fill:#6db56d;stroke:#3d8b3d}.op.fail{fill:#c4c4c4;stroke:#888}
.op.info{fill:url(#hatch-info);stroke:#b08a10}.op.info.pending{fill-opacity:.7;stroke-opacity:.6}
.op.violating,.op.violating.ok,.op.violating.fail,.op.violating.info{fill:${violationColour};stroke:#000;stroke-width:1.5}
.op.violating rect.min-width{stroke:none}
.op.flash{stroke:#00f;stroke-width:3}
.dim .ops .op{opacity:.3}
text.op-label{font:bold 11px system-ui,sans-serif;fill:${violationColour}}
td.ok,td.fail,td.info,td.violation,td.unknown{background:none;font-weight:600}td.violation{color:${violationColour}}
.partition.violation{border-left:4px solid ${violationColour};padding-left:8px}.partition.unknown{border-left:4px solid #e0a800;padding-left:8px}
.anomaly{border-left:4px solid ${violationColour};padding-left:8px;margin:8px 0}
pre.message{background:#f6f6f6;padding:6px;white-space:pre-wrap}.tag{background:#eee;padding:0 4px;border-radius:3px}
svg.chart{display:block;width:100%;max-width:1400px;border:1px solid #ccc;background:#fff}
svg.chart text{font:11px system-ui,sans-serif;fill:#555}svg.chart .axis-label{font-size:12px;fill:#333}
svg.chart line.grid{stroke:#e4e4e4}svg.chart line.axis-line{stroke:#999}
#tip{position:absolute;z-index:10;background:#fff;border:1px solid #888;padding:6px;white-space:pre-wrap;max-width:560px;
font:12px ui-monospace,monospace;box-shadow:2px 2px 6px rgba(0,0,0,.2);pointer-events:none}
`;

/** Zoom, tooltips, and "go to operation" links. Reads the operations from the embedded JSON. */
const script = `
(function(){
  var ops=new Map();
  JSON.parse(document.getElementById('ops-data').textContent).forEach(function(o){ops.set(o.id,o);});
  var tl=document.getElementById('timeline'),zoom=document.getElementById('zoom'),tip=document.getElementById('tip');
  zoom.addEventListener('input',function(){tl.style.width=(Number(zoom.value)*100)+'%';});
  function text(o){
    function ms(n){return Math.round(n*1000)/1000+' ms';}
    var lines=['#'+o.id+'  process '+o.process+(o.node?'  node '+o.node:'')+'  '+(o.status==='info'?'unknown':o.status),
      'call '+ms(o.call)+(o.ret===undefined?'  (never returned)':'  ret '+ms(o.ret)+'  ('+ms(o.ret-o.call)+')'),
      'input:  '+JSON.stringify(o.input)];
    if(o.output!==undefined)lines.push('output: '+JSON.stringify(o.output));
    if(o.error!==undefined)lines.push('error:  '+o.error);
    return lines.join('\\n');
  }
  document.querySelectorAll('svg.ops-svg').forEach(function(svg){
    svg.addEventListener('mousemove',function(e){
      var el=e.target.closest&&e.target.closest('[data-id]'),o=el?ops.get(Number(el.getAttribute('data-id'))):undefined;
      if(!o){tip.hidden=true;return;}
      tip.textContent=text(o);tip.style.left=(e.pageX+14)+'px';tip.style.top=(e.pageY+14)+'px';tip.hidden=false;
    });
    svg.addEventListener('mouseleave',function(){tip.hidden=true;});
  });
  document.addEventListener('click',function(e){
    var a=e.target.closest&&e.target.closest('a.goto');if(!a)return;e.preventDefault();
    var r=document.querySelector('#timeline .op[data-id="'+a.getAttribute('data-id')+'"]');if(!r)return;
    r.classList.add('flash');r.scrollIntoView({block:'center',inline:'center'});
    setTimeout(function(){r.classList.remove('flash');},1500);
  });
})();
`;

export function renderHtml(info: RunInfo, history: RunHistory, results: RunResults): string {
  const byId = new Map(history.operations.map((op) => [op.id, op]));
  const evidence = results.verdict === 'violation' ? primaryEvidence(results, history) : undefined;
  const violating = violatingIds(results, evidence);
  const endMs = runEnd(info, history);
  const title = `jepsen-lite ${info.mode} ${info.target} ${info.workload}: ${results.verdict}`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(title)}</title><style>${css}</style></head>
<body>
${patternDefs}
<h1>jepsen-lite report</h1>
${banner(results)}
${failureSection(results, history, evidence, endMs)}
${runInfo(info, history.operations)}
${timelineSection(history, endMs, violating)}
${perfSection(history, endMs)}
${txnSection(results.txn, byId)}
${linearizability(results.linearizability, byId)}
${watchSection(results)}
${fencingSection(results)}
${electionSection(results.election)}
${stats(results)}
<div id="tip" hidden></div>
<script id="ops-data" type="application/json">${scriptJson(history.operations)}</script>
<script>${script}</script>
</body></html>
`;
}
