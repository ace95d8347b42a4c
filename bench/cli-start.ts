/**
 * Start-up time of the `dkv` command: `dkv --help` and `dkv --version` from the compiled build
 * (what an installed package runs) and from the TypeScript sources through tsx (what the test
 * suite runs), against a bare `node -e 0` and `etcdctl version` on the same machine. Prints the
 * median and the spread of `--runs` launches each. Run `npm run build` first.
 *
 * Usage: node --import tsx bench/cli-start.ts [--runs N]
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const repo = join(import.meta.dirname, '..');
const dkv = join(repo, 'bin', 'dkv.js');

interface Case {
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
}

function timeOnce(c: Case): number {
  const env = { ...process.env, ...c.env };
  if (c.env?.DKV_FROM_SOURCE === undefined) delete env.DKV_FROM_SOURCE;
  const started = process.hrtime.bigint();
  const result = spawnSync(c.command, c.args, { env, stdio: 'ignore' });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (result.status !== 0) throw new Error(`${c.name}: exit ${result.status ?? result.signal}`);
  return ms;
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

const { values } = parseArgs({ options: { runs: { type: 'string', default: '15' } } });
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer');
if (!existsSync(join(repo, 'dist', 'src', 'cli', 'main.js'))) throw new Error('no build: run npm run build first');

const cases: Case[] = [
  { name: 'node -e 0', command: process.execPath, args: ['-e', '0'] },
  { name: 'dkv --help (dist)', command: process.execPath, args: [dkv, '--help'] },
  { name: 'dkv --version (dist)', command: process.execPath, args: [dkv, '--version'] },
  { name: 'dkv --help (sources, tsx)', command: process.execPath, args: [dkv, '--help'], env: { DKV_FROM_SOURCE: '1' } },
];
if (spawnSync('etcdctl', ['version'], { stdio: 'ignore' }).status === 0) cases.push({ name: 'etcdctl version', command: 'etcdctl', args: ['version'] });

const results = new Map<string, number>();
process.stdout.write(`launch time over ${runs} runs each (ms): median [p10 … p90]\n`);
for (const c of cases) {
  timeOnce(c); // warm the page cache
  const times = Array.from({ length: runs }, () => timeOnce(c)).sort((a, b) => a - b);
  const median = quantile(times, 0.5);
  results.set(c.name, median);
  process.stdout.write(`  ${c.name.padEnd(28)} ${median.toFixed(0).padStart(5)} [${quantile(times, 0.1).toFixed(0)} … ${quantile(times, 0.9).toFixed(0)}]\n`);
}
const dist = results.get('dkv --help (dist)')!;
const source = results.get('dkv --help (sources, tsx)')!;
process.stdout.write(`dkv --help: the build starts ${(source / dist).toFixed(2)}× faster than the sources; ${(dist - results.get('node -e 0')!).toFixed(0)} ms above a bare node\n`);
