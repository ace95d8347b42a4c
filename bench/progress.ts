/**
 * A progress line for long benchmark runs: `label: done/total (percent)` rewritten in place on
 * stderr every `progressIntervalMs`, only when stderr is a terminal (quiet in pipes, logs and CI),
 * and erased when the run ends so the results print on a clean line.
 */

/** How often the line is redrawn. */
export const progressIntervalMs = 250;

/** Starts the line; the returned function stops and erases it. */
export function startProgress(label: string, total: number, done: () => number, stream: NodeJS.WriteStream = process.stderr): () => void {
  if (stream.isTTY !== true || total <= 0) return () => {};
  const draw = (): void => {
    const now = Math.min(done(), total);
    stream.write(`\r${label}: ${now.toLocaleString('en-US')}/${total.toLocaleString('en-US')} (${Math.floor((100 * now) / total)}%)\x1b[K`);
  };
  draw();
  const timer = setInterval(draw, progressIntervalMs);
  timer.unref();
  return () => {
    clearInterval(timer);
    stream.write('\r\x1b[K');
  };
}
