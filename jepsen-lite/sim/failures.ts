/** Writing a failing scenario where a developer can replay it. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SimResult } from './scenario.js';

export const failuresDir = 'sim-failures';

/** Saves the scenario of a failed run and returns the command that replays it. */
export function saveFailure(result: SimResult, directory: string = failuresDir): string {
  mkdirSync(directory, { recursive: true });
  const file = join(directory, `scenario-${result.scenario.seed}.json`);
  writeFileSync(file, `${JSON.stringify(result.scenario, null, 2)}\n`);
  return `npm run sim -- --replay ${file} --trace`;
}

export function describeFailure(result: SimResult, replay: string): string {
  const v = result.violation!;
  return `${v.kind} at ${v.atMs} ms (scenario seed ${result.scenario.seed}): ${v.message}\n  replay: ${replay}`;
}
