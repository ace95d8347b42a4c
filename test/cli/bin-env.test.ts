import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dkvBin, jemallocCandidates, jemallocConf, mallocArenaMax, mallocMmapThresholdBytes, serverProcessEnv, serverSemiSpaceMib } from '../../src/package-root.js';

const semiSpace = `--max-semi-space-size=${serverSemiSpaceMib}`;
/** A system without jemalloc. */
const noJemalloc = (): boolean => false;

describe('the environment dkv server runs with', () => {
  it('serverProcessEnv fixes glibc mmap threshold and arena limit and V8 semi-space limit unless the caller set them', () => {
    const arenas = String(mallocArenaMax);
    expect(serverProcessEnv({ PATH: '/bin' }, noJemalloc)).toEqual({ PATH: '/bin', MALLOC_MMAP_THRESHOLD_: String(mallocMmapThresholdBytes), MALLOC_ARENA_MAX: arenas, NODE_OPTIONS: semiSpace });
    expect(serverProcessEnv({ MALLOC_MMAP_THRESHOLD_: '131072', GONE: undefined }, noJemalloc)).toEqual({ MALLOC_MMAP_THRESHOLD_: '131072', MALLOC_ARENA_MAX: arenas, NODE_OPTIONS: semiSpace });
    expect(serverProcessEnv({ MALLOC_ARENA_MAX: '8' }, noJemalloc).MALLOC_ARENA_MAX).toBe('8');
    expect(serverProcessEnv({ NODE_OPTIONS: '--enable-source-maps' }, noJemalloc).NODE_OPTIONS).toBe(`${semiSpace} --enable-source-maps`);
    expect(serverProcessEnv({ NODE_OPTIONS: '--max_semi_space_size=32' }, noJemalloc).NODE_OPTIONS).toBe('--max_semi_space_size=32');
  });

  it('serverProcessEnv preloads the first jemalloc found when DKV_ALLOCATOR=jemalloc, unless the caller preloads something', () => {
    const [first, second] = jemallocCandidates('x86_64');
    expect(first).toBe('/usr/lib/x86_64-linux-gnu/libjemalloc.so.2');
    const only = (path: string | undefined) => (candidate: string): boolean => candidate === path;
    const found = (readable: (path: string) => boolean, env: Record<string, string> = {}) => {
      const out = serverProcessEnv({ DKV_ALLOCATOR: 'jemalloc', ...env }, readable);
      return { LD_PRELOAD: out.LD_PRELOAD, MALLOC_CONF: out.MALLOC_CONF };
    };
    const candidates = jemallocCandidates();
    expect(found(only(candidates[1]))).toEqual({ LD_PRELOAD: candidates[1], MALLOC_CONF: jemallocConf });
    expect(found(() => true)).toEqual({ LD_PRELOAD: candidates[0], MALLOC_CONF: jemallocConf });
    expect(found(() => false)).toEqual({ LD_PRELOAD: undefined, MALLOC_CONF: undefined });
    expect(found(() => true, { MALLOC_CONF: 'narenas:1' })).toEqual({ LD_PRELOAD: candidates[0], MALLOC_CONF: 'narenas:1' });
    expect(found(() => true, { LD_PRELOAD: '/opt/other.so' })).toEqual({ LD_PRELOAD: '/opt/other.so', MALLOC_CONF: undefined });
    expect(found(() => true, { DKV_ALLOCATOR: 'glibc' })).toEqual({ LD_PRELOAD: undefined, MALLOC_CONF: undefined });
    expect(serverProcessEnv({}, () => true).LD_PRELOAD).toBeUndefined();
    expect(second).toBe('/usr/lib64/libjemalloc.so.2');
  });

  it('node accepts the semi-space limit in NODE_OPTIONS (it refuses options it does not allow there)', () => {
    const result = spawnSync(process.execPath, ['-e', 'process.stdout.write("ok")'], { encoding: 'utf8', env: serverProcessEnv({ PATH: process.env.PATH }) });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toBe('ok');
  });

  it('bin/dkv.js run as a command exports the same threshold and arena limit for `server` only, through sh, then execs node with the arguments intact', () => {
    const lines = readFileSync(dkvBin, 'utf8').split('\n');
    expect(lines[0]).toBe('#!/bin/sh');
    expect(lines[1]).toContain(`export MALLOC_MMAP_THRESHOLD_=${mallocMmapThresholdBytes};`);
    expect(lines[1]).toContain(`export MALLOC_ARENA_MAX=${mallocArenaMax};`);
    expect(lines[1]).toContain(`export NODE_OPTIONS="${semiSpace}${'${NODE_OPTIONS:+ $NODE_OPTIONS}'}"`);
    expect(lines[1]).toContain('exec node "$0" "$@"');
    // As the kernel runs it: sh, then the `node` on PATH (here a stub that prints what it got).
    const stubDir = mkdtempSync(join(tmpdir(), 'dkv-stub-node-'));
    try {
      writeFileSync(join(stubDir, 'node'), '#!/bin/sh\necho "threshold=${MALLOC_MMAP_THRESHOLD_-unset} arenas=${MALLOC_ARENA_MAX-unset} options=${NODE_OPTIONS-unset} args=$*"\necho "preload=${LD_PRELOAD-unset} conf=${MALLOC_CONF-unset}" >&2\n', { mode: 0o755 });
      const run = (args: string[], env: Record<string, string> = {}): string => {
        const result = spawnSync(dkvBin, args, { encoding: 'utf8', env: { PATH: `${stubDir}:/usr/bin:/bin`, ...env } });
        expect(result.status).toBe(0);
        return result.stdout.trim();
      };
      expect(run(['server', '--name', 'a b'])).toBe(`threshold=${mallocMmapThresholdBytes} arenas=${mallocArenaMax} options=${semiSpace} args=${dkvBin} server --name a b`);
      expect(run(['server'], { MALLOC_MMAP_THRESHOLD_: '131072', NODE_OPTIONS: '--enable-source-maps' })).toBe(
        `threshold=131072 arenas=${mallocArenaMax} options=${semiSpace} --enable-source-maps args=${dkvBin} server`,
      );
      expect(run(['server'], { MALLOC_ARENA_MAX: '8' })).toBe(`threshold=${mallocMmapThresholdBytes} arenas=8 options=${semiSpace} args=${dkvBin} server`);
      expect(run(['server'], { NODE_OPTIONS: '--max-semi-space-size=32' })).toBe(`threshold=${mallocMmapThresholdBytes} arenas=${mallocArenaMax} options=--max-semi-space-size=32 args=${dkvBin} server`);
      expect(run(['get', 'k'])).toBe(`threshold=unset arenas=unset options=unset args=${dkvBin} get k`);
      // jemalloc: the sh line looks where serverProcessEnv looks, and leaves a caller's choice alone.
      const preload = (args: string[], env: Record<string, string> = {}): string =>
        spawnSync(dkvBin, args, { encoding: 'utf8', env: { PATH: `${stubDir}:/usr/bin:/bin`, ...env } }).stderr.trim();
      const jemalloc = serverProcessEnv({ DKV_ALLOCATOR: 'jemalloc' }).LD_PRELOAD;
      expect(preload(['server'], { DKV_ALLOCATOR: 'jemalloc' })).toBe(jemalloc === undefined ? 'preload=unset conf=unset' : `preload=${jemalloc} conf=${jemallocConf}`);
      expect(preload(['server'])).toBe('preload=unset conf=unset');
      expect(preload(['server'], { DKV_ALLOCATOR: 'jemalloc', LD_PRELOAD: '' })).toBe('preload= conf=unset');
      expect(preload(['get', 'k'], { DKV_ALLOCATOR: 'jemalloc' })).toBe('preload=unset conf=unset');
    } finally {
      rmSync(stubDir, { recursive: true, force: true });
    }
  });
});
