/**
 * Progress of a run, two shapes. `ProgressBar` (one real run) — on a terminal: one line redrawn in place (`\r`, then erase to the end
 * of the line) with a bar, elapsed/total time and the operation counts. Anywhere else (a CI log,
 * a pipe): one plain line each time another tenth of the run has passed, and nothing else — no
 * control characters. `SeedProgress` (many simulated seeds): seeds done of the total, violations,
 * unknowns, seeds/s and time left, one line redrawn in place — on a terminal only; elsewhere it
 * writes nothing (the command's own lines say what matters).
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

export interface SeedCounts {
  readonly done: number;
  readonly violations: number;
  readonly unknowns: number;
}

/** `1m05s`, `42s`: time left, to the second. */
function minutesSeconds(ms: number): string {
  const total = Math.max(0, Math.round(ms / 1000));
  const minutes = Math.floor(total / 60);
  return minutes > 0 ? `${minutes}m${String(total % 60).padStart(2, '0')}s` : `${total}s`;
}

export class SeedProgress {
  private readonly tty: boolean;
  private drawn = false;
  private lastLine = '';

  constructor(
    private readonly stream: NodeJS.WritableStream | Writable,
    private readonly total: number,
    private readonly label: string,
  ) {
    if (!Number.isSafeInteger(total) || total < 1) throw new TypeError(`total must be a positive integer, got ${total}`);
    this.tty = (stream as { isTTY?: boolean }).isTTY === true;
  }

  /** The line for these counts after `elapsedMs` of wall time (exported for tests through `update`). */
  text(counts: SeedCounts, elapsedMs: number): string {
    if (!(counts.done >= 0 && counts.done <= this.total)) throw new TypeError(`done must be in [0, ${this.total}], got ${counts.done}`);
    const rate = elapsedMs > 0 ? (1000 * counts.done) / elapsedMs : 0;
    const left = counts.done === 0 || rate === 0 ? '?' : minutesSeconds((1000 * (this.total - counts.done)) / rate);
    const percent = Math.floor((100 * counts.done) / this.total);
    return `${this.label}: seed ${counts.done}/${this.total} (${percent}%), ${counts.violations} violation${counts.violations === 1 ? '' : 's'}, ${counts.unknowns} unknown, ${rate.toFixed(2)} seeds/s, ${left} left`;
  }

  update(counts: SeedCounts, elapsedMs: number): void {
    if (!this.tty) return;
    const line = this.text(counts, elapsedMs);
    if (this.drawn && line === this.lastLine) return;
    this.lastLine = line;
    this.drawn = true;
    this.stream.write(`\r${line}${ERASE_TO_END}`);
  }

  /** Erases the line (before other output, and at the end) so what follows starts on a clean line. */
  clear(): void {
    if (!this.tty || !this.drawn) return;
    this.drawn = false;
    this.stream.write(`\r${ERASE_TO_END}`);
  }
}
