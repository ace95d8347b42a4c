/**
 * The report page: one self-contained HTML file (inline CSS, SVG and a little JS; nothing fetched)
 * showing the verdict, the run, a timeline of every operation (one lane per client process, a bar
 * from call to return coloured by status, pending operations running to the end) under the fault
 * windows, and — on a violation — the operations the checker could not linearize, highlighted on
 * the timeline and listed with what it did manage to linearize just before.
 *
 * Bars are plain SVG rects in a viewBox measured in milliseconds and stretched to the page width,
 * so zooming (a range input) only changes one width and ~20k operations stay responsive.
 * Tooltips come from the operations embedded as JSON. Every piece of recorded text (keys, values,
 * error messages, node names) is escaped: a history can hold anything.
 */
import type { ElectionResult, HolderInterval, PauseOutcome } from '../check/index.js';
import type { FaultWindow, Operation } from '../history.js';
import type { ReportPartition, RunHistory, RunInfo, RunResults, RunVerdict } from './types.js';

export const laneHeightPx = 16;
const pendingBarPx = 4;
/** Operations drawn on the timeline; beyond this only the highlighted ones are (the page stays usable). */
export const timelineOpsMax = 100_000;
export const zoomMax = 200;
/** Rows the fault labels above the timeline are spread over, so neighbours do not overlap. */
export const faultLabelRows = 3;
const faultLabelRowPx = 15;
export const axisTicks = 10;
/** Of a violating partition's linearized prefix, how many of the last operations are listed. */
export const linearizedShownMax = 12;
export const blockedShownMax = 100;
export const partitionsShownMax = 200;
export const watchViolationsShownMax = 200;

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** JSON that is safe inside a <script> element (no "</script>", no HTML comment openers, no line separators). */
export function scriptJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

/** Milliseconds with at most 3 decimals, for SVG coordinates. */
function num(n: number): string {
  return String(Math.round(n * 1000) / 1000);
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

function json(value: unknown): string {
  return value === undefined ? '' : JSON.stringify(value);
}

const verdictText: Readonly<Record<RunVerdict, string>> = {
  ok: 'OK: no violation found',
  violation: 'VIOLATION',
  unknown: 'UNKNOWN: the checker ran out of budget before deciding',
};

// ---- Sections -------------------------------------------------------------------------------

function banner(results: RunResults): string {
  const parts: string[] = [];
  const lin = results.linearizability;
  parts.push(`linearizability (${escapeHtml(lin.model)}): ${escapeHtml(lin.verdict)}`);
  if (results.watch !== undefined) parts.push(`watch guarantees: ${results.watch.ok ? 'held' : `${results.watch.violations.length + results.watch.omitted} violation(s)`}`);
  if (results.fencing !== undefined) {
    const fencing = results.fencing;
    parts.push(`fencing: ${fencing.ok ? 'held' : `${fencing.violations.length + fencing.omitted} violation(s)`}, lease-only overlaps: ${fencing.unfenced.overlaps}`);
  }
  if (results.election !== undefined) {
    const election = results.election;
    parts.push(`election: ${election.ok ? 'held' : `${election.violations.length + election.omitted} violation(s)`}, leader changes: ${election.stats.leaderChanges}`);
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
    ['operations', `${operations.length} (ok ${count('ok')}, fail ${count('fail')}, info ${count('info')})`],
    [info.mode === 'sim' ? 'replay' : 'rerun', `<code>${escapeHtml(info.command)}</code>`],
  );
  return `<section id="run"><h2>Run</h2>${table(rows)}</section>`;
}

function stats(results: RunResults): string {
  const entries = Object.entries(results.stats);
  if (entries.length === 0) return '';
  return `<section id="stats"><h2>Stats</h2>${table(entries.map(([k, v]) => [k, escapeHtml(String(v))]))}</section>`;
}

interface Timeline {
  readonly endMs: number;
  readonly lanes: readonly number[];
}

function timelineBounds(info: RunInfo, history: RunHistory): Timeline {
  let end = Math.max(info.durationMs, 1);
  for (const op of history.operations) end = Math.max(end, op.ret ?? op.call);
  for (const f of history.faults) end = Math.max(end, f.end ?? f.start);
  const lanes = [...new Set(history.operations.map((o) => o.process))].sort((a, b) => a - b);
  return { endMs: end, lanes };
}

function opRect(op: Operation, lane: number, endMs: number, highlight: ReadonlySet<number>): string {
  const end = op.ret ?? endMs;
  const classes = ['op', op.status];
  if (op.ret === undefined) classes.push('pending');
  if (highlight.has(op.id)) classes.push('blocked');
  // A pending operation is a thin bar along the lane's bottom: it runs to the end of the run and
  // would otherwise hide everything its process did afterwards.
  const pending = op.ret === undefined && !highlight.has(op.id);
  const y = lane * laneHeightPx + (pending ? laneHeightPx - pendingBarPx - 1 : 2);
  const height = pending ? pendingBarPx : laneHeightPx - 4;
  return `<rect class="${classes.join(' ')}" data-id="${op.id}" x="${num(op.call)}" y="${y}" width="${num(Math.max(end - op.call, 0))}" height="${height}"/>`;
}

/** Drawn over the operations (translucent, not catching the mouse): dense lanes would hide a background. */
function faultBand(fault: FaultWindow, index: number, endMs: number, heightPx: number): string {
  const end = fault.end ?? endMs;
  return `<rect class="fault fault-${index % 4}" x="${num(fault.start)}" y="0" width="${num(Math.max(end - fault.start, 0))}" height="${heightPx}"/>`;
}

function faultLabel(fault: FaultWindow, index: number, endMs: number): string {
  const left = (100 * fault.start) / endMs;
  const top = (index % faultLabelRows) * faultLabelRowPx;
  const text = `${fault.kind}: ${fault.description}`;
  return `<div class="fault-label fault-${index % 4}" style="left:${num(left)}%;top:${top}px" title="${escapeHtml(text)}">${escapeHtml(text)}</div>`;
}

function timeline(info: RunInfo, history: RunHistory, highlight: ReadonlySet<number>): string {
  const { endMs, lanes } = timelineBounds(info, history);
  const laneOf = new Map(lanes.map((p, i) => [p, i]));
  const heightPx = Math.max(lanes.length, 1) * laneHeightPx;
  const drawn = history.operations.filter((op, i) => i < timelineOpsMax || highlight.has(op.id));
  // Pending bars first (underneath), highlighted ones last (on top).
  const layer = (op: Operation): number => (highlight.has(op.id) ? 2 : op.ret === undefined ? 0 : 1);
  drawn.sort((a, b) => layer(a) - layer(b));
  const rects = drawn.map((op) => opRect(op, laneOf.get(op.process)!, endMs, highlight));
  const bands = history.faults.map((f, i) => faultBand(f, i, endMs, heightPx));
  const labels = history.faults.map((f, i) => faultLabel(f, i, endMs));
  const ticks = Array.from({ length: axisTicks + 1 }, (_, i) => {
    const ms = (endMs * i) / axisTicks;
    return `<div class="tick" style="left:${num((100 * i) / axisTicks)}%">${escapeHtml(seconds(ms))}</div>`;
  });
  const laneLabels = lanes.map((p) => `<div class="lane-label" style="height:${laneHeightPx}px">p${p}</div>`);
  const headerPx = faultLabelRows * faultLabelRowPx;
  const omitted = history.operations.length - drawn.length;
  return `<section id="timeline-section"><h2>Timeline</h2>
<div class="controls"><label>zoom <input id="zoom" type="range" min="1" max="${zoomMax}" value="1"></label>
<span class="legend"><span class="sw ok"></span>ok <span class="sw fail"></span>fail <span class="sw info"></span>info (unknown) <span class="sw blocked"></span>not linearizable <span class="sw fault-0"></span>fault</span>
${omitted > 0 ? `<span class="note">${omitted} operations not drawn (more than ${timelineOpsMax})</span>` : ''}</div>
<div class="timeline-grid">
<div class="lane-labels"><div style="height:${headerPx}px"></div>${laneLabels.join('')}</div>
<div id="timeline-scroll"><div id="timeline" style="width:100%">
<div class="fault-labels" style="height:${headerPx}px">${labels.join('')}</div>
<svg id="ops-svg" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${num(endMs)} ${heightPx}" preserveAspectRatio="none" width="100%" height="${heightPx}">
<g class="lanes">${lanes.map((_, i) => `<rect class="lane lane-${i % 2}" x="0" y="${i * laneHeightPx}" width="${num(endMs)}" height="${laneHeightPx}"/>`).join('')}</g>
<g class="ops">${rects.join('\n')}</g>
<g class="faults">${bands.join('')}</g>
</svg>
<div class="axis">${ticks.join('')}</div>
</div></div></div>
${faultsTable(history.faults)}
</section>`;
}

function faultsTable(faults: readonly FaultWindow[]): string {
  if (faults.length === 0) return '<p class="note">No faults were injected.</p>';
  const rows = faults.map(
    (f) => `<tr><td>${escapeHtml(f.kind)}</td><td>${escapeHtml(seconds(f.start))}</td><td>${f.end === undefined ? 'end of run' : escapeHtml(seconds(f.end))}</td><td>${escapeHtml(f.description)}</td></tr>`,
  );
  return `<details><summary>${faults.length} fault window(s)</summary><table class="list"><tr><th>kind</th><th>start</th><th>end</th><th>what</th></tr>${rows.join('')}</table></details>`;
}

function opRow(op: Operation): string {
  return `<tr class="op-row" data-id="${op.id}"><td><a href="#" class="goto" data-id="${op.id}">#${op.id}</a></td><td>p${op.process}</td><td>${escapeHtml(op.node ?? '')}</td><td>${escapeHtml(num(op.call))}</td><td>${op.ret === undefined ? '—' : escapeHtml(num(op.ret))}</td><td class="${op.status}">${op.status}</td><td><code>${escapeHtml(json(op.input))}</code></td><td><code>${escapeHtml(json(op.output))}</code></td><td>${escapeHtml(op.error ?? '')}</td></tr>`;
}

function opTable(ids: readonly number[], byId: ReadonlyMap<number, Operation>): string {
  const rows = ids.map((id) => byId.get(id)).filter((op): op is Operation => op !== undefined);
  return `<table class="list"><tr><th>op</th><th>process</th><th>node</th><th>call ms</th><th>ret ms</th><th>status</th><th>input</th><th>output</th><th>error</th></tr>${rows.map(opRow).join('')}</table>`;
}

function partitionDetails(p: ReportPartition, byId: ReadonlyMap<number, Operation>): string {
  const blocked = p.blocked ?? [];
  const linearized = p.linearized ?? [];
  const last = linearized.slice(-linearizedShownMax);
  return `<div class="partition ${escapeHtml(p.verdict)}"><h3>${p.key === '' ? 'whole history' : `key ${escapeHtml(p.key)}`}: ${escapeHtml(p.verdict)} (${p.operations} operations)</h3>
${p.message === undefined ? '' : `<pre class="message">${escapeHtml(p.message)}</pre>`}
${blocked.length === 0 ? '' : `<h4>Operations that could not be linearized next (${blocked.length})</h4>${opTable(blocked.slice(0, blockedShownMax), byId)}`}
${last.length === 0 ? '' : `<h4>The last ${last.length} of ${linearized.length} operations linearized before it</h4>${opTable(last, byId)}`}
</div>`;
}

function linearizability(results: RunResults, byId: ReadonlyMap<number, Operation>): string {
  const lin = results.linearizability;
  const bad = lin.partitions.filter((p) => p.verdict !== 'ok');
  const rows = lin.partitions
    .slice(0, partitionsShownMax)
    .map((p) => `<tr><td>${escapeHtml(p.key)}</td><td>${p.operations}</td><td class="${escapeHtml(p.verdict)}">${escapeHtml(p.verdict)}</td><td>${escapeHtml(num(p.elapsedMs))}</td></tr>`);
  const more = lin.partitions.length > partitionsShownMax ? `<p class="note">${lin.partitions.length - partitionsShownMax} more partitions</p>` : '';
  return `<section id="linearizability"><h2>Linearizability: ${escapeHtml(lin.verdict)}</h2>
<p>model <code>${escapeHtml(lin.model)}</code>, ${lin.operations} operations in ${lin.partitions.length} partition(s), checked in ${escapeHtml(num(lin.elapsedMs))} ms.</p>
${bad.map((p) => partitionDetails(p, byId)).join('\n')}
<details${bad.length > 0 ? '' : ' open'}><summary>partitions</summary><table class="list"><tr><th>key</th><th>operations</th><th>verdict</th><th>ms</th></tr>${rows.join('')}</table>${more}</details>
</section>`;
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

const css = `
body{font:13px/1.4 system-ui,sans-serif;margin:0 16px 40px;color:#222}
h2{margin:24px 0 8px;font-size:16px}h3{font-size:14px;margin:12px 0 4px}h4{margin:8px 0 4px;font-size:13px}
.banner{margin:12px 0;padding:12px 16px;border-radius:6px;display:flex;gap:16px;align-items:baseline;font-size:15px}
.banner.ok{background:#dff3df;border:1px solid #6db56d}.banner.violation{background:#fbdada;border:1px solid #d62728}
.banner.unknown{background:#fff1cc;border:1px solid #e0a800}
table.kv th{text-align:left;padding-right:12px;font-weight:600}table.list{border-collapse:collapse;margin:4px 0}
table.list td,table.list th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
code{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all}
.controls{display:flex;gap:16px;align-items:center;margin:4px 0}.note{color:#777}
.sw{display:inline-block;width:12px;height:10px;margin:0 3px 0 8px;vertical-align:middle}
.timeline-grid{display:flex;border:1px solid #ccc}.lane-labels{flex:none;width:44px;font-size:11px;background:#fafafa}
.lane-label{line-height:${laneHeightPx}px;padding-left:4px}
#timeline-scroll{overflow-x:auto;flex:1}#timeline{position:relative}
#ops-svg{display:block}.fault-labels{position:relative;overflow:hidden}
.fault-label{position:absolute;white-space:nowrap;font-size:11px;padding:0 3px;border-left:2px solid}
.axis{position:relative;height:18px;font-size:11px;color:#555}.tick{position:absolute;border-left:1px solid #aaa;padding-left:2px}
.lane-0{fill:#fff}.lane-1{fill:#f4f4f4}
rect.op{stroke-width:1;vector-effect:non-scaling-stroke}rect.fault{pointer-events:none}
.ok{fill:#6db56d;stroke:#3d8b3d;background:#6db56d}.fail{fill:#bbb;stroke:#888;background:#bbb}
.info{fill:#f0c040;stroke:#b08a10;background:#f0c040}rect.pending{fill-opacity:.8}
rect.op.blocked,.sw.blocked{fill:#d62728;stroke:#000;stroke-width:2;background:#d62728}
rect.op.flash{stroke:#00f;stroke-width:3}
.fault-0{fill:rgba(214,39,40,.2);border-color:#d62728;background:rgba(214,39,40,.13)}
.fault-1{fill:rgba(31,119,180,.2);border-color:#1f77b4;background:rgba(31,119,180,.13)}
.fault-2{fill:rgba(148,103,189,.22);border-color:#9467bd;background:rgba(148,103,189,.15)}
.fault-3{fill:rgba(140,86,75,.22);border-color:#8c564b;background:rgba(140,86,75,.15)}
td.ok,td.fail,td.info,td.violation,td.unknown{background:none;font-weight:600}td.violation{color:#d62728}
.partition.violation{border-left:4px solid #d62728;padding-left:8px}.partition.unknown{border-left:4px solid #e0a800;padding-left:8px}
pre.message{background:#f6f6f6;padding:6px;white-space:pre-wrap}.tag{background:#eee;padding:0 4px;border-radius:3px}
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
    var lines=['#'+o.id+'  process '+o.process+(o.node?'  node '+o.node:'')+'  '+o.status,
      'call '+ms(o.call)+(o.ret===undefined?'  (never returned)':'  ret '+ms(o.ret)+'  ('+ms(o.ret-o.call)+')'),
      'input:  '+JSON.stringify(o.input)];
    if(o.output!==undefined)lines.push('output: '+JSON.stringify(o.output));
    if(o.error!==undefined)lines.push('error:  '+o.error);
    return lines.join('\\n');
  }
  document.getElementById('ops-svg').addEventListener('mousemove',function(e){
    var id=e.target.getAttribute('data-id'),o=id===null?undefined:ops.get(Number(id));
    if(!o){tip.hidden=true;return;}
    tip.textContent=text(o);tip.style.left=(e.pageX+14)+'px';tip.style.top=(e.pageY+14)+'px';tip.hidden=false;
  });
  document.getElementById('ops-svg').addEventListener('mouseleave',function(){tip.hidden=true;});
  document.addEventListener('click',function(e){
    var a=e.target.closest&&e.target.closest('a.goto');if(!a)return;e.preventDefault();
    var r=document.querySelector('rect.op[data-id="'+a.getAttribute('data-id')+'"]');if(!r)return;
    r.classList.add('flash');r.scrollIntoView({block:'center',inline:'center'});
    setTimeout(function(){r.classList.remove('flash');},1500);
  });
})();
`;

/** Ids of every operation a non-ok partition names as blocked. */
export function blockedIds(results: RunResults): Set<number> {
  const ids = new Set<number>();
  for (const p of results.linearizability.partitions) for (const id of p.blocked ?? []) ids.add(id);
  return ids;
}

export function renderHtml(info: RunInfo, history: RunHistory, results: RunResults): string {
  const byId = new Map(history.operations.map((op) => [op.id, op]));
  const title = `jepsen-lite ${info.mode} ${info.target} ${info.workload}: ${results.verdict}`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(title)}</title><style>${css}</style></head>
<body>
<h1>jepsen-lite report</h1>
${banner(results)}
${runInfo(info, history.operations)}
${timeline(info, history, blockedIds(results))}
${linearizability(results, byId)}
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
