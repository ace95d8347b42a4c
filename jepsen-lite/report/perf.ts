/**
 * Latency and throughput over the run, with the fault windows drawn behind them (as Jepsen's perf
 * plots): a scatter of each returned operation's latency at its call time (log scale, ms; colour
 * by operation type, mark by status) and a line of completions per second by status.
 *
 * Both are drawn in a fixed coordinate space (`chartWidth` × `chartHeight`) scaled as a whole to
 * the page width, so marks stay round and text stays legible.
 */
import type { FaultWindow, OpStatus, Operation } from '../history.js';
import { faultColour, faultEnd } from './faults.js';
import { axisTime, escapeHtml, num, opType } from './text.js';

export const chartWidth = 1000;
export const chartHeight = 220;
const plotLeft = 60;
const plotRight = 12;
const plotTop = 10;
const plotBottom = 26;
export const throughputBucketMs = 1000;
/** Points drawn in the latency scatter; beyond this every n-th one is (the page stays usable). */
export const latencyPointsMax = 100_000;
/** The scatter's floor: shorter latencies (the simulator can answer in 0 ms) are drawn on it. */
export const latencyFloorMs = 0.1;
const timeTicks = 10;

const typeColours = ['#1f77b4', '#ff7f0e', '#2ca02c', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f'];
const statusColours: Readonly<Record<OpStatus, string>> = { ok: '#3d8b3d', fail: '#888888', info: '#c99a12' };
const statuses: readonly OpStatus[] = ['ok', 'fail', 'info'];

interface Plot {
  readonly endMs: number;
  readonly x: (ms: number) => number;
}

function plotOf(endMs: number): Plot {
  const width = chartWidth - plotLeft - plotRight;
  return { endMs, x: (ms) => plotLeft + (width * Math.min(Math.max(ms, 0), endMs)) / endMs };
}

const plotBottomY = chartHeight - plotBottom;

function faultBands(faults: readonly FaultWindow[], plot: Plot): string {
  return faults
    .map((f) => {
      const x0 = plot.x(f.start);
      const x1 = plot.x(faultEnd(f, plot.endMs));
      return `<rect class="fault" data-kind="${escapeHtml(f.kind)}" x="${num(x0)}" y="${plotTop}" width="${num(x1 - x0)}" height="${plotBottomY - plotTop}" fill="${faultColour(f.kind)}" fill-opacity=".14"/>`;
    })
    .join('');
}

function timeAxis(plot: Plot): string {
  const step = plot.endMs / timeTicks;
  const ticks = Array.from({ length: timeTicks + 1 }, (_, i) => {
    const x = plot.x(step * i);
    return `<line class="grid" x1="${num(x)}" x2="${num(x)}" y1="${plotBottomY}" y2="${plotBottomY + 4}"/><text class="tick" x="${num(x)}" y="${plotBottomY + 16}" text-anchor="middle">${escapeHtml(axisTime(step * i, step))}</text>`;
  });
  return `<line class="axis-line" x1="${plotLeft}" x2="${chartWidth - plotRight}" y1="${plotBottomY}" y2="${plotBottomY}"/>${ticks.join('')}`;
}

function chart(id: string, label: string, body: string): string {
  return `<svg id="${id}" class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${chartWidth} ${chartHeight}" role="img" aria-label="${escapeHtml(label)}">${body}</svg>`;
}

/** A mark per status: ok a dot, fail a square, info (returned, outcome unknown) a cross. */
function marks(status: OpStatus, points: readonly (readonly [number, number])[]): string {
  if (status === 'info') return points.map(([x, y]) => `M${num(x - 3)} ${num(y - 3)}l6 6m0 -6l-6 6`).join('');
  return points.map(([x, y]) => `M${num(x)} ${num(y)}h0`).join('');
}

function latencyChart(operations: readonly Operation[], faults: readonly FaultWindow[], plot: Plot): string {
  const returned = operations.filter((op) => op.ret !== undefined);
  if (returned.length === 0) return '<p class="note">No operation returned: no latencies to plot.</p>';
  const latency = (op: Operation): number => Math.max(op.ret! - op.call, latencyFloorMs);
  let lo = Infinity;
  let hi = 0;
  for (const op of returned) {
    lo = Math.min(lo, latency(op));
    hi = Math.max(hi, latency(op));
  }
  const decadeLo = Math.floor(Math.log10(lo));
  const decadeHi = Math.max(Math.ceil(Math.log10(hi)), decadeLo + 1);
  const y = (ms: number): number => plotBottomY - ((plotBottomY - plotTop) * (Math.log10(ms) - decadeLo)) / (decadeHi - decadeLo);
  const types = [...new Set(returned.map((op) => opType(op.input)))].sort();
  const colourOf = new Map(types.map((t, i) => [t, typeColours[i % typeColours.length]!]));
  const stride = Math.ceil(returned.length / latencyPointsMax);
  const series = new Map<string, [number, number][]>();
  returned.forEach((op, i) => {
    if (i % stride !== 0) return;
    const key = `${opType(op.input)}\u0000${op.status}`;
    let points = series.get(key);
    if (points === undefined) series.set(key, (points = []));
    points.push([plot.x(op.call), y(latency(op))]);
  });
  const paths = [...series].map(([key, points]) => {
    const [type, status] = key.split('\u0000') as [string, OpStatus];
    const cap = status === 'fail' ? 'square' : 'round';
    const width = status === 'info' ? 1.5 : 4;
    return `<path class="points" data-type="${escapeHtml(type)}" data-status="${status}" d="${marks(status, points)}" stroke="${colourOf.get(type)!}" stroke-width="${width}" stroke-linecap="${cap}" fill="none" opacity=".75"/>`;
  });
  const yTicks: string[] = [];
  for (let d = decadeLo; d <= decadeHi; d++) {
    const ms = 10 ** d;
    yTicks.push(
      `<line class="grid" x1="${plotLeft}" x2="${chartWidth - plotRight}" y1="${num(y(ms))}" y2="${num(y(ms))}"/><text class="tick" x="${plotLeft - 6}" y="${num(y(ms) + 4)}" text-anchor="end">${escapeHtml(String(Number(ms.toPrecision(3))))}</text>`,
    );
  }
  const yLabel = `<text class="axis-label" transform="translate(14 ${(plotTop + plotBottomY) / 2}) rotate(-90)" text-anchor="middle">latency (ms, log)</text>`;
  const legend = types.map((t) => `<span class="legend-type"><span class="sw" style="background:${colourOf.get(t)!}"></span>${escapeHtml(t)}</span>`);
  const stampNote = stride > 1 ? ` (every ${stride}th operation drawn)` : '';
  return (
    chart('latency-chart', 'latency of each operation over time', `${faultBands(faults, plot)}${yTicks.join('')}${timeAxis(plot)}${yLabel}${paths.join('')}`) +
    `<div class="legend">${legend.join(' ')} <span class="legend-mark">● ok</span> <span class="legend-mark">■ fail</span> <span class="legend-mark">✕ unknown (returned)</span>${escapeHtml(stampNote)}</div>`
  );
}

/** A round maximum for a linear axis: 1, 2 or 5 times a power of ten, at least `value`. */
export function niceCeiling(value: number): number {
  if (value <= 1) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 5, 10]) if (m * power >= value) return m * power;
  return 10 * power;
}

function throughputChart(operations: readonly Operation[], faults: readonly FaultWindow[], plot: Plot): string {
  const buckets = Math.max(Math.ceil(plot.endMs / throughputBucketMs), 1);
  const counts = new Map(statuses.map((s) => [s, new Array<number>(buckets).fill(0)]));
  for (const op of operations) {
    const at = op.ret ?? op.call;
    const bucket = Math.min(Math.floor(at / throughputBucketMs), buckets - 1);
    counts.get(op.status)![bucket]!++;
  }
  // Counts per bucket are per second when the bucket is a second; a last partial bucket is scaled.
  const perSecond = (count: number, i: number): number => {
    const length = Math.min(throughputBucketMs, plot.endMs - i * throughputBucketMs);
    return length > 0 ? (count * 1000) / length : 0;
  };
  let peak = 0;
  for (const values of counts.values()) values.forEach((c, i) => (peak = Math.max(peak, perSecond(c, i))));
  const top = niceCeiling(peak);
  const y = (rate: number): number => plotBottomY - ((plotBottomY - plotTop) * rate) / top;
  const lines = statuses
    .filter((s) => counts.get(s)!.some((c) => c > 0))
    .map((s) => {
      const points = counts.get(s)!.map((c, i) => `${num(plot.x(Math.min((i + 0.5) * throughputBucketMs, plot.endMs)))},${num(y(perSecond(c, i)))}`);
      return `<polyline class="rate" data-status="${s}" points="${points.join(' ')}" fill="none" stroke="${statusColours[s]}" stroke-width="2"/>`;
    });
  const yTicks = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const rate = top * f;
    return `<line class="grid" x1="${plotLeft}" x2="${chartWidth - plotRight}" y1="${num(y(rate))}" y2="${num(y(rate))}"/><text class="tick" x="${plotLeft - 6}" y="${num(y(rate) + 4)}" text-anchor="end">${escapeHtml(String(Number(rate.toPrecision(3))))}</text>`;
  });
  const yLabel = `<text class="axis-label" transform="translate(14 ${(plotTop + plotBottomY) / 2}) rotate(-90)" text-anchor="middle">ops/s</text>`;
  const legend = statuses.map((s) => `<span class="legend-rate"><span class="sw" style="background:${statusColours[s]}"></span>${s === 'info' ? 'unknown' : s}</span>`);
  return (
    chart('throughput-chart', 'operations completed per second', `${faultBands(faults, plot)}${yTicks.join('')}${timeAxis(plot)}${yLabel}${lines.join('')}`) +
    `<div class="legend">${legend.join(' ')} <span class="note">completions per ${throughputBucketMs / 1000} s (an operation that never returned counts at its call)</span></div>`
  );
}

/** The "Latency and throughput" section's body. */
export function perfCharts(operations: readonly Operation[], faults: readonly FaultWindow[], endMs: number): string {
  const plot = plotOf(Math.max(endMs, 1));
  return `<h3>Latency</h3>${latencyChart(operations, faults, plot)}<h3>Throughput</h3>${throughputChart(operations, faults, plot)}`;
}
