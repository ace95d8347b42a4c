/** The benchmarks' progress line: drawn in place on a terminal, erased at the end, silent elsewhere. */
import { describe, expect, it } from 'vitest';
import { progressIntervalMs, startProgress } from '../../bench/progress.js';

function fakeStream(isTTY: boolean): { stream: NodeJS.WriteStream; written: string[] } {
  const written: string[] = [];
  return { stream: { isTTY, write: (chunk: string) => written.push(chunk) } as unknown as NodeJS.WriteStream, written };
}

describe('benchmark progress', () => {
  it('redraws done/total on a terminal and erases the line when stopped', async () => {
    const { stream, written } = fakeStream(true);
    let done = 0;
    const stop = startProgress('put', 1000, () => done, stream);
    done = 500;
    await new Promise((resolve) => setTimeout(resolve, progressIntervalMs * 2 + 50));
    stop();
    expect(written[0]).toBe('\rput: 0/1,000 (0%)\x1b[K');
    expect(written).toContain('\rput: 500/1,000 (50%)\x1b[K');
    expect(written.at(-1)).toBe('\r\x1b[K');
  });

  it('writes nothing when stderr is not a terminal', async () => {
    const { stream, written } = fakeStream(false);
    const stop = startProgress('put', 1000, () => 1, stream);
    await new Promise((resolve) => setTimeout(resolve, progressIntervalMs + 50));
    stop();
    expect(written).toEqual([]);
  });
});
