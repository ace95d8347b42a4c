/** An instance's log: its last lines, and following it as it grows. */
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { followPollMs, logTailBytesMax } from './limits.js';

function readRange(path: string, start: number, end: number): string {
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(Math.max(0, end - start));
    let done = 0;
    while (done < buffer.length) {
      const n = readSync(fd, buffer, done, buffer.length - done, start + done);
      if (n === 0) break;
      done += n;
    }
    return buffer.subarray(0, done).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/**
 * The last `count` lines of the file (from its last `logTailBytesMax` bytes); with `after`, only
 * the lines after the last line that starts with it (a start marker). A missing file has none.
 */
export function tailLines(path: string, count: number, after?: string): string[] {
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    return [];
  }
  const text = readRange(path, Math.max(0, size - logTailBytesMax), size);
  let lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  if (after !== undefined) {
    let marker = lines.length - 1;
    while (marker >= 0 && !(lines[marker] ?? '').startsWith(after)) marker--;
    if (marker >= 0) lines = lines.slice(marker + 1);
  }
  return count === 0 ? [] : lines.slice(-count);
}

/**
 * Writes what is appended to the file from now on, until `signal` aborts. A truncated file
 * (logrotate's copytruncate) is followed from its new start.
 */
export async function followLog(path: string, write: (text: string) => void, signal: AbortSignal): Promise<void> {
  let offset = statSync(path).size;
  while (!signal.aborted) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, followPollMs);
      signal.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve();
      }, { once: true });
    });
    const fd = openSync(path, 'r');
    let size: number;
    try {
      size = fstatSync(fd).size;
    } finally {
      closeSync(fd);
    }
    if (size < offset) offset = 0;
    if (size > offset) {
      write(readRange(path, offset, size));
      offset = size;
    }
  }
}
