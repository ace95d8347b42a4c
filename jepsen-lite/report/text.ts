/** Small text helpers every part of the page uses: escaping, numbers for SVG, times for people. */

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

/** At most 3 decimals, for SVG coordinates. */
export function num(n: number): string {
  return String(Math.round(n * 1000) / 1000);
}

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

/** A time on an axis whose ticks are `stepMs` apart: milliseconds for short spans, seconds otherwise. */
export function axisTime(ms: number, stepMs: number): string {
  if (stepMs >= 1000) return seconds(ms);
  const decimals = stepMs >= 10 ? 0 : stepMs >= 1 ? 1 : 2;
  return `${ms.toFixed(decimals)} ms`;
}

export function json(value: unknown): string {
  return value === undefined ? '' : JSON.stringify(value);
}

/** The operation's kind (`input.f`), or `op` when its input has none. */
export function opType(input: unknown): string {
  const f = typeof input === 'object' && input !== null ? (input as { f?: unknown }).f : undefined;
  return typeof f === 'string' ? f : 'op';
}
