/**
 * What `dkv` loads to answer without calling anything: `--help`, `--version`, each command's
 * `--help` and a bad command line print their text without loading grpc-js or protobufjs (so
 * without parsing the .proto files), which are most of a command's start-up (bench/cli-start.ts
 * measures it). A command that does call a cluster loads both, which shows that the check sees a
 * load. Each case is a real process through bin/dkv.js; a preloaded module writes the packages
 * the process loaded (CommonJS's module cache, where grpc-js and protobufjs live) to fd 3.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { dkvBin, dkvEnv } from './dkv-process.js';

/** The packages only a call needs. */
const callPackages = ['@grpc/grpc-js', 'protobufjs'];

const reportLoadedPackages = [
  'import { createRequire } from "node:module";',
  'import { writeSync } from "node:fs";',
  'process.on("exit", () => writeSync(3, JSON.stringify(Object.keys(createRequire(process.execPath).cache))));',
].join('');

function dkvLoading(args: readonly string[]): { code: number | null; stdout: string; stderr: string; loaded: string[] } {
  const result = spawnSync(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(reportLoadedPackages)}`, dkvBin, ...args], {
    encoding: 'utf8',
    env: dkvEnv(),
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    timeout: 60_000,
  });
  const files = JSON.parse(String(result.output[3])) as string[];
  const loaded = callPackages.filter((name) => files.some((file) => file.includes(`/node_modules/${name}/`)));
  return { code: result.status, stdout: result.stdout, stderr: result.stderr, loaded };
}

/** Command lines answered from the text alone, and their exit codes. */
const answeredWithoutCalling: ReadonlyArray<readonly [string, number]> = [
  ['--help', 0],
  ['help', 0],
  ['--version', 0],
  ['frobnicate', 2],
  ...['get', 'put', 'del', 'txn', 'compact', 'watch', 'member', 'endpoint', 'defrag', 'snapshot', 'counter', 'user', 'role', 'auth', 'lease', 'lock', 'elect', 'store', 'shard'].map(
    (command) => [`${command} --help`, 0] as const,
  ),
  ['member list --help', 0],
  ['endpoint status --help', 0],
  ['snapshot save --help', 0],
  ['user add --help', 0],
  ['lease grant --help', 0],
  ['counter incr --help', 0],
  ['config --help', 0],
  ['instance --help', 0],
  ['bench --help', 0],
  ['bench put --help', 0],
  // Bad command lines: a missing argument, an unknown flag, bad flag values.
  ['get', 2],
  ['put --bogus', 2],
  ['get k --write-out yaml', 2],
  ['get k --endpoints https://127.0.0.1:2379', 2],
  ['lease grant', 2],
  ['lock', 2],
  ['counter incr', 2],
  ['shard describe', 2],
  ['shard describe x1', 2],
];

describe('dkv without calling a cluster', () => {
  for (const [line, code] of answeredWithoutCalling) {
    it(`dkv ${line}: exit ${code}, neither grpc-js nor protobufjs loaded`, () => {
      const r = dkvLoading(line.split(' '));
      expect([r.code, r.loaded], r.stderr).toEqual([code, []]);
      expect(code === 0 ? r.stdout : r.stderr).toMatch(/Usage|dkv|DKV/);
    });
  }

  it('a command that calls a cluster loads both (the check sees a load)', () => {
    // Port 1: refused at once, so the call fails fast (exit 1) after loading what it needs.
    const r = dkvLoading(['get', 'k', '--endpoints', '127.0.0.1:1', '--command-timeout', '2s']);
    expect(r.code).toBe(1);
    expect(r.loaded).toEqual(callPackages);
  });
});
