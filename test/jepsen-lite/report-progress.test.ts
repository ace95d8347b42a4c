/**
 * The progress bar: plain lines every 10% and no control characters when the stream is not a
 * terminal; one line redrawn in place on a terminal. Also: the report page's script parses.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ProgressBar, SeedProgress, exitCodeOfVerdicts, renderHtml } from '../../jepsen-lite/report/index.js';

class Capture extends Writable {
  text = '';
  constructor(readonly isTTY: boolean) {
    super();
  }
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
}

const TOTAL_MS = 60_000;
const STEP_MS = 250;

function drive(stream: Capture): void {
  const bar = new ProgressBar(stream, TOTAL_MS, 'register');
  let ok = 0;
  for (let t = 0; t <= TOTAL_MS; t += STEP_MS) {
    ok += 3;
    bar.update(t, { ok, fail: 1, info: 2 });
  }
  bar.done();
}

describe('ProgressBar', () => {
  it('off a terminal: one plain line per 10%, no escape codes or carriage returns', () => {
    const stream = new Capture(false);
    drive(stream);
    expect(stream.text).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f]/);
    const lines = stream.text.trimEnd().split('\n');
    expect(lines.map((l) => l.split(' ')[1])).toEqual(['0%', '10%', '20%', '30%', '40%', '50%', '60%', '70%', '80%', '90%', '100%']);
    expect(lines[10]).toBe(`register 100% 60.0s/60.0s ok ${3 * (TOTAL_MS / STEP_MS + 1)} fail 1 info 2`);
  });

  it('off a terminal, done() prints the final state once when the last update did not', () => {
    const stream = new Capture(false);
    const bar = new ProgressBar(stream, 1000, 'kv');
    bar.update(0, { ok: 0, fail: 0, info: 0 });
    bar.update(420, { ok: 5, fail: 0, info: 0 });
    bar.update(470, { ok: 7, fail: 1, info: 0 });
    bar.done();
    bar.done();
    bar.update(900, { ok: 9, fail: 1, info: 0 });
    expect(stream.text).toBe('kv 0% 0.0s/1.0s ok 0 fail 0 info 0\nkv 42% 0.4s/1.0s ok 5 fail 0 info 0\nkv 47% 0.5s/1.0s ok 7 fail 1 info 0\n');
  });

  it('on a terminal: a single line redrawn with \\r and a bar, ended by one newline', () => {
    const stream = new Capture(true);
    drive(stream);
    expect(stream.text.split('\n')).toHaveLength(2);
    expect(stream.text.endsWith('\n')).toBe(true);
    const frames = stream.text.split('\r').filter((f) => f !== '');
    expect(frames.length).toBeGreaterThan(10);
    expect(frames.at(-1)).toMatch(/^register \[#{30}\] 60\.0s\/60\.0s ok \d+ fail 1 info 2\u001b\[K\n$/);
    expect(frames[0]).toMatch(/^register \[-{30}\] 0\.0s\/60\.0s/);
  });
});

describe('SeedProgress (simulator seeds)', () => {
  it('off a terminal: writes nothing at all', () => {
    const stream = new Capture(false);
    const progress = new SeedProgress(stream, 10, 'jepsen sim kv');
    for (let done = 1; done <= 10; done++) progress.update({ done, violations: 1, unknowns: 0 }, 100 * done);
    progress.clear();
    expect(stream.text).toBe('');
  });

  it('on a terminal: seeds done of total, violations, unknowns, seeds/s and time left, redrawn in place and erased', () => {
    const stream = new Capture(true);
    const progress = new SeedProgress(stream, 100, 'jepsen sim kv');
    progress.update({ done: 0, violations: 0, unknowns: 0 }, 0);
    progress.update({ done: 25, violations: 1, unknowns: 2 }, 50_000);
    progress.clear();
    progress.clear();
    expect(stream.text).not.toContain('\n');
    const frames = stream.text.split('\r').filter((f) => f !== '');
    expect(frames).toEqual([
      'jepsen sim kv: seed 0/100 (0%), 0 violations, 0 unknown, 0.00 seeds/s, ? left\u001b[K',
      'jepsen sim kv: seed 25/100 (25%), 1 violation, 2 unknown, 0.50 seeds/s, 2m30s left\u001b[K',
      '\u001b[K',
    ]);
  });
});

describe('exit status of verdicts', () => {
  it('0 when all are ok, 1 for any violation (which wins over unknown), 2 for unknown without violation', () => {
    expect(exitCodeOfVerdicts({ violations: 0, unknowns: 0 })).toBe(0);
    expect(exitCodeOfVerdicts({ violations: 1, unknowns: 0 })).toBe(1);
    expect(exitCodeOfVerdicts({ violations: 3, unknowns: 5 })).toBe(1);
    expect(exitCodeOfVerdicts({ violations: 0, unknowns: 1 })).toBe(2);
    expect(() => exitCodeOfVerdicts({ violations: -1, unknowns: 0 })).toThrow(TypeError);
  });
});

describe('the report page script', () => {
  it('is valid JavaScript', () => {
    const html = renderHtml(
      { mode: 'real', target: 'etcd', workload: 'kv', model: 'kv', nodes: ['n1'], startedAt: 'now', durationMs: 10, command: 'dkv jepsen run' },
      { operations: [], faults: [] },
      { verdict: 'ok', linearizability: { model: 'kv', verdict: 'ok', partitions: [], elapsedMs: 0, operations: 0 }, stats: {} },
    );
    const scripts = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]!);
    expect(scripts).toHaveLength(1);
    expect(() => new Function(scripts[0]!)).not.toThrow();
  });
});
