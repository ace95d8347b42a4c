/**
 * The timeline: a lane per client process, a bar per operation from call to return under the fault
 * windows. The same drawing serves the whole run and the failure's close-up (a window of time,
 * the involved operations' lanes first, the others dimmed).
 *
 * Coordinates: x in percent of the view's time window (so the page width, or the zoom control,
 * stretches the drawing without redrawing it), y in pixels. A violating operation is a group of
 * its true bar and a bar at least `violatingMinWidthPx` wide centred on it: a 3 ms operation in a
 * 60 s run stays a visible red mark rather than a tenth of a pixel.
 */
import type { FaultWindow, Operation } from '../history.js';
import { faultColour, faultEnd, faultKindLabel } from './faults.js';
import { axisTime, escapeHtml, num, opType } from './text.js';

export const laneHeightPx = 16;
/** Lanes of the failure's close-up: room for a label above each bar. */
export const labelledLaneHeightPx = 30;
export const violatingMinWidthPx = 6;
/** A never-returned operation is a thin bar along its lane's bottom, so it hides nothing. */
export const pendingBarPx = 5;
/** Operations drawn on the timeline; beyond this only the violating ones are (the page stays usable). */
export const timelineOpsMax = 100_000;
/** Rows the fault labels above the timeline are spread over, so neighbours do not overlap. */
export const faultLabelRows = 3;
export const faultLabelRowPx = 15;
export const axisTicks = 10;
const faultOpacity = 0.16;

export interface TimelineView {
  /** The DOM id of the stretchable drawing (the zoom control sets its width). */
  readonly id: string;
  readonly fromMs: number;
  readonly toMs: number;
  /** Where a never-returned operation ends: the end of the run. */
  readonly runEndMs: number;
  /** Processes, one lane each, top to bottom. */
  readonly lanes: readonly number[];
  readonly laneHeightPx: number;
  readonly violating: ReadonlySet<number>;
  /** Dim every operation that is not violating (the close-up). */
  readonly dimOthers: boolean;
  /** Write each violating operation's id and kind above it (needs `labelledLaneHeightPx`). */
  readonly labelViolating: boolean;
}

function percent(ms: number, view: TimelineView): number {
  const x = (100 * (ms - view.fromMs)) / (view.toMs - view.fromMs);
  return Math.min(Math.max(x, 0), 100);
}

function opEnd(op: Operation, view: TimelineView): number {
  return op.ret ?? view.runEndMs;
}

function visible(op: Operation, view: TimelineView): boolean {
  return op.call <= view.toMs && opEnd(op, view) >= view.fromMs;
}

function opShape(op: Operation, lane: number, view: TimelineView): string {
  const top = lane * view.laneHeightPx;
  const violating = view.violating.has(op.id);
  const neverReturned = op.ret === undefined;
  const x0 = percent(op.call, view);
  const x1 = percent(opEnd(op, view), view);
  const classes = ['op', op.status];
  if (neverReturned) classes.push('pending');
  const barTop = view.labelViolating ? top + 13 : top + 2;
  const barHeight = view.labelViolating ? view.laneHeightPx - 15 : view.laneHeightPx - 4;
  if (!violating) {
    const thin = neverReturned;
    const y = thin ? top + view.laneHeightPx - pendingBarPx - 1 : barTop;
    const height = thin ? pendingBarPx : barHeight;
    return `<rect class="${classes.join(' ')}" data-id="${op.id}" x="${num(x0)}%" y="${y}" width="${num(x1 - x0)}%" height="${height}"/>`;
  }
  classes.push('violating');
  const mid = (x0 + x1) / 2;
  const half = violatingMinWidthPx / 2;
  return (
    `<g class="${classes.join(' ')}" data-id="${op.id}">` +
    `<rect x="${num(x0)}%" y="${barTop}" width="${num(x1 - x0)}%" height="${barHeight}"/>` +
    `<rect class="min-width" x="${num(mid)}%" y="${barTop}" width="${violatingMinWidthPx}" height="${barHeight}" transform="translate(-${half} 0)"/>` +
    `</g>`
  );
}

function opLabel(op: Operation, lane: number, view: TimelineView): string {
  const x = percent(op.call, view);
  // Near the right edge the label reads leftwards from the bar's end instead.
  const anchor = x > 80 ? ` text-anchor="end" x="${num(percent(opEnd(op, view), view))}%"` : ` x="${num(x)}%"`;
  return `<text class="op-label"${anchor} y="${lane * view.laneHeightPx + 11}">▼ #${op.id} ${escapeHtml(opType(op.input))}</text>`;
}

/** Drawn over the operations (translucent, not catching the mouse): dense lanes would hide a background. */
function faultBand(fault: FaultWindow, view: TimelineView, heightPx: number): string {
  const x0 = percent(fault.start, view);
  const x1 = percent(faultEnd(fault, view.runEndMs), view);
  return `<rect class="fault" data-kind="${escapeHtml(fault.kind)}" x="${num(x0)}%" y="0" width="${num(x1 - x0)}%" height="${heightPx}" fill="${faultColour(fault.kind)}" fill-opacity="${faultOpacity}"/>`;
}

function faultLabel(fault: FaultWindow, row: number, view: TimelineView): string {
  const text = `${faultKindLabel(fault.kind)}: ${fault.description}`;
  return `<div class="fault-label" style="left:${num(percent(fault.start, view))}%;top:${row * faultLabelRowPx}px;border-color:${faultColour(fault.kind)}" title="${escapeHtml(text)}">${escapeHtml(text)}</div>`;
}

function axis(view: TimelineView): string {
  const step = (view.toMs - view.fromMs) / axisTicks;
  const ticks = Array.from({ length: axisTicks + 1 }, (_, i) => {
    const ms = view.fromMs + step * i;
    return `<div class="tick" style="left:${num((100 * i) / axisTicks)}%">${escapeHtml(axisTime(ms, step))}</div>`;
  });
  return `<div class="axis">${ticks.join('')}</div>`;
}

export interface DrawnTimeline {
  readonly html: string;
  /** Operations in the view's window left out (beyond `timelineOpsMax`). */
  readonly omitted: number;
  /** Faults whose window meets the view's. */
  readonly faults: readonly FaultWindow[];
}

/** The lane labels, fault labels, the SVG and the time axis of one view. */
export function drawTimeline(operations: readonly Operation[], faults: readonly FaultWindow[], view: TimelineView): DrawnTimeline {
  if (!(view.toMs > view.fromMs)) throw new TypeError(`empty timeline window ${view.fromMs}–${view.toMs}`);
  const laneOf = new Map(view.lanes.map((p, i) => [p, i]));
  const heightPx = Math.max(view.lanes.length, 1) * view.laneHeightPx;
  const inView = operations.filter((op) => laneOf.has(op.process) && visible(op, view));
  const drawn = inView.filter((op, i) => i < timelineOpsMax || view.violating.has(op.id));
  // Never-returned bars first (underneath), then the others; violating ones go above the fault bands.
  const plain = drawn.filter((op) => !view.violating.has(op.id));
  plain.sort((a, b) => Number(b.ret === undefined) - Number(a.ret === undefined));
  const violating = drawn.filter((op) => view.violating.has(op.id));
  const shown = faults.filter((f) => f.start <= view.toMs && faultEnd(f, view.runEndMs) >= view.fromMs);
  // As many label rows as there are faults to label, up to `faultLabelRows`.
  const headerPx = Math.max(Math.min(faultLabelRows, shown.length), 1) * faultLabelRowPx;
  const laneLabels = view.lanes.map((p) => `<div class="lane-label" style="height:${view.laneHeightPx}px;line-height:${view.laneHeightPx}px">p${p}</div>`);
  const svgClass = view.dimOthers ? 'ops-svg dim' : 'ops-svg';
  const html = `<div class="timeline-grid">
<div class="lane-labels"><div style="height:${headerPx}px"></div>${laneLabels.join('')}</div>
<div class="timeline-scroll"><div id="${view.id}" class="timeline" style="width:100%">
<div class="fault-labels" style="height:${headerPx}px">${shown.map((f, i) => faultLabel(f, i % faultLabelRows, view)).join('')}</div>
<svg class="${svgClass}" xmlns="http://www.w3.org/2000/svg" width="100%" height="${heightPx}">
<g class="lanes">${view.lanes.map((_, i) => `<rect class="lane lane-${i % 2}" x="0" y="${i * view.laneHeightPx}" width="100%" height="${view.laneHeightPx}"/>`).join('')}</g>
<g class="ops">${plain.map((op) => opShape(op, laneOf.get(op.process)!, view)).join('\n')}</g>
<g class="faults">${shown.map((f) => faultBand(f, view, heightPx)).join('')}</g>
<g class="violating-ops">${violating.map((op) => opShape(op, laneOf.get(op.process)!, view)).join('\n')}</g>
${view.labelViolating ? `<g class="op-labels">${violating.map((op) => opLabel(op, laneOf.get(op.process)!, view)).join('')}</g>` : ''}
</svg>
${axis(view)}
</div></div></div>`;
  return { html, omitted: inView.length - drawn.length, faults: shown };
}

/** The legend of operation statuses, each swatch drawn with the timeline's own classes. */
export function opLegend(): string {
  const entry = (status: string, classes: string, label: string): string =>
    `<span class="legend-op" data-status="${status}"><svg width="18" height="11"><rect class="${classes}" x="0" y="0" width="18" height="11"/></svg>${label}</span>`;
  return [
    entry('ok', 'op ok', 'ok'),
    entry('fail', 'op fail', 'fail'),
    entry('info', 'op info', 'unknown (info; a thin bar to the end of the run when it never returned)'),
    entry('violating', 'op violating', 'violating'),
  ].join(' ');
}

/** The SVG pattern that marks unknown operations, defined once per page. */
export const patternDefs = `<svg class="defs" width="0" height="0" aria-hidden="true" style="position:absolute"><defs>
<pattern id="hatch-info" patternUnits="userSpaceOnUse" width="6" height="6" patternTransform="rotate(45)">
<rect width="6" height="6" fill="#f7dc8a"/><rect width="3" height="6" fill="#c99a12"/></pattern>
</defs></svg>`;
