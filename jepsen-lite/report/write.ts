/** Writes a run's report folder: history.json, results.json and index.html. */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { renderHtml } from './html.js';
import { historyJson, resultsJson } from './json.js';
import type { RunHistory, RunInfo, RunResults } from './types.js';

export const historyFileName = 'history.json';
export const resultsFileName = 'results.json';
export const htmlFileName = 'index.html';

export interface ReportPaths {
  readonly historyPath: string;
  readonly resultsPath: string;
  readonly htmlPath: string;
}

/** Creates `dir` if needed and writes the three files (the history first: it is what matters most). */
export async function writeReport(dir: string, info: RunInfo, history: RunHistory, results: RunResults): Promise<ReportPaths> {
  await mkdir(dir, { recursive: true });
  const paths: ReportPaths = {
    historyPath: join(dir, historyFileName),
    resultsPath: join(dir, resultsFileName),
    htmlPath: join(dir, htmlFileName),
  };
  await writeFile(paths.historyPath, historyJson(info, history));
  await writeFile(paths.resultsPath, resultsJson(info, results));
  await writeFile(paths.htmlPath, renderHtml(info, history, results));
  return paths;
}
