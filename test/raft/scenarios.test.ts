/**
 * Scenario transcripts of the Raft core (test/raft/scenarios/*.txt), one test per file. Each file
 * is a list of commands with their expected output; see test/raft/scenario/README.md.
 *
 * UPDATE_SCENARIOS=1 rewrites the expected outputs with what the code prints now. Read the diff
 * critically before keeping it: the transcripts are the specification. Assertion commands
 * (`expect-*`) and the built-in safety checks fail the test either way.
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runTranscript } from './scenario/harness.js';

const directory = join(import.meta.dirname, 'scenarios');
const update = process.env.UPDATE_SCENARIOS === '1';
const files = readdirSync(directory)
  .filter((name) => name.endsWith('.txt'))
  .sort();

describe('raft scenario transcripts', () => {
  it('has transcripts to run', () => {
    expect(files.length).toBeGreaterThan(0);
  });

  for (const name of files) {
    it(name, () => {
      const path = join(directory, name);
      const source = readFileSync(path, 'utf8');
      const result = runTranscript(source, name);
      if (update) {
        if (result.actual !== source) writeFileSync(path, result.actual);
      } else {
        expect(result.actual, `${name}: ${firstDifference(source, result.actual)} (UPDATE_SCENARIOS=1 rewrites it)`).toBe(
          source,
        );
      }
      expect(result.failures, `${name}: assertions failed`).toEqual([]);
    });
  }
});

/** Where the expected and the actual transcript first differ, for the failure message. */
function firstDifference(expected: string, actual: string): string {
  const want = expected.split('\n');
  const got = actual.split('\n');
  const line = want.findIndex((text, i) => text !== got[i]);
  const at = line < 0 ? want.length : line;
  return `line ${at + 1}: expected ${JSON.stringify(want[at] ?? '<end>')}, got ${JSON.stringify(got[at] ?? '<end>')}`;
}
