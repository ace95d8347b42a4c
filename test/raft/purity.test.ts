/**
 * raft/ must stay a pure state machine: no node:* modules, no clock, timers, process or ambient
 * randomness, and no imports from outer folders (ARCHITECTURE.md, STYLE.md).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const raftDir = join(import.meta.dirname, '..', '..', 'raft');
const forbidden: Array<[RegExp, string]> = [
  [/from\s+['"](node:|fs|os|net|path|crypto|child_process|worker_threads)/, 'node module import'],
  [/from\s+['"]\.\.\//, 'import from outside raft/'],
  [/\brequire\(/, 'require()'],
  [/Date\.now|new Date\(/, 'clock'],
  [/Math\.random/, 'ambient randomness'],
  [/setTimeout|setInterval|setImmediate|queueMicrotask/, 'timer'],
  [/performance\.now|process\./, 'process or clock'],
  [/\bawait\b|\basync\b/, 'asynchrony'],
];

describe('raft/ purity', () => {
  const files = readdirSync(raftDir).filter((f) => f.endsWith('.ts'));

  it('has source files to check', () => {
    expect(files.length).toBeGreaterThan(5);
  });

  for (const file of files) {
    it(`${file} uses nothing impure`, () => {
      const source = readFileSync(join(raftDir, file), 'utf8');
      const violations = forbidden
        .filter(([pattern]) => pattern.test(source.replace(/\/\/.*$|\/\*[\s\S]*?\*\//gm, '')))
        .map(([, what]) => what);
      expect(violations).toEqual([]);
    });
  }
});
