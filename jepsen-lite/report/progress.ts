/**
 * A progress bar for a run. On a terminal: one line redrawn in place (`\r`, then erase to the end
 * of the line) with a bar, elapsed/total time and the operation counts. Anywhere else (a CI log,
 * a pipe): one plain line each time another tenth of the run has passed, and nothing else — no
 * control characters.
 */
import type { Writable } from 'node:stream';

export const progressBarWidth = 30;
/** Non-terminal output: a line every this many percent. */
export const progressStepPercent = 10;

export interface ProgressCounts {
  readonly ok: number;
  readonly fail: number;
  readonly info: number;
}

const ERASE_TO_END = '\u001b[K';

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

export class ProgressBar {
  private readonly tty: boolean;
  /** The last line written (terminal: drawn), so an unchanged state is not written again. */
  private lastLine = '';
  /** Non-terminal: the highest step already printed (-1: none). */
  private lastStep = -1;
  private lastCounts: ProgressCounts = { ok: 0, fail: 0, info: 0 };
  private lastElapsedMs = 0;
  private finished = false;

  constructor(
    private readonly stream: NodeJS.WritableStream | Writable,
    private readonly totalMs: number,
    private readonly label: string,
  ) {
    if (!(totalMs > 0)) throw new TypeError(`totalMs must be positive, got ${totalMs}`);
    this.tty = (stream as { isTTY?: boolean }).isTTY === true;
  }

  update(elapsedMs: number, counts: ProgressCounts): void {
    if (this.finished) return;
    this.lastElapsedMs = Math.max(0, elapsedMs);
    this.lastCounts = counts;
    if (this.tty) {
      this.redraw();
      return;
    }
    const step = Math.floor(this.percent() / progressStepPercent);
    if (step > this.lastStep) {
      this.lastStep = step;
      this.writeLine(this.text());
    }
  }

  /** Ends the bar: the terminal line is completed with a newline; elsewhere the last state is printed once. */
  done(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.tty) {
      this.redraw();
      this.stream.write('\n');
      return;
    }
    const line = this.text();
    if (line !== this.lastLine) this.writeLine(line);
  }

  private writeLine(line: string): void {
    this.lastLine = line;
    this.stream.write(`${line}\n`);
  }

  private percent(): number {
    return Math.min(100, (100 * this.lastElapsedMs) / this.totalMs);
  }

  private text(): string {
    const c = this.lastCounts;
    return `${this.label} ${Math.floor(this.percent())}% ${seconds(this.lastElapsedMs)}/${seconds(this.totalMs)} ok ${c.ok} fail ${c.fail} info ${c.info}`;
  }

  private redraw(): void {
    const filled = Math.round((progressBarWidth * this.percent()) / 100);
    const bar = `[${'#'.repeat(filled)}${'-'.repeat(progressBarWidth - filled)}]`;
    const c = this.lastCounts;
    const line = `${this.label} ${bar} ${seconds(this.lastElapsedMs)}/${seconds(this.totalMs)} ok ${c.ok} fail ${c.fail} info ${c.info}`;
    if (line === this.lastLine) return;
    this.lastLine = line;
    this.stream.write(`\r${line}${ERASE_TO_END}`);
  }
}
