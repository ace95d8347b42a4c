import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dkvBin, mallocMmapThresholdBytes, serverProcessEnv, serverSemiSpaceMib } from '../../src/package-root.js';

const semiSpace = `--max-semi-space-size=${serverSemiSpaceMib}`;

describe('the environment dkv server runs with', () => {
  it('serverProcessEnv fixes glibc mmap threshold and V8 semi-space limit unless the caller set them', () => {
    expect(serverProcessEnv({ PATH: '/bin' })).toEqual({ PATH: '/bin', MALLOC_MMAP_THRESHOLD_: String(mallocMmapThresholdBytes), NODE_OPTIONS: semiSpace });
    expect(serverProcessEnv({ MALLOC_MMAP_THRESHOLD_: '131072', GONE: undefined })).toEqual({ MALLOC_MMAP_THRESHOLD_: '131072', NODE_OPTIONS: semiSpace });
    expect(serverProcessEnv({ NODE_OPTIONS: '--enable-source-maps' }).NODE_OPTIONS).toBe(`${semiSpace} --enable-source-maps`);
    expect(serverProcessEnv({ NODE_OPTIONS: '--max_semi_space_size=32' }).NODE_OPTIONS).toBe('--max_semi_space_size=32');
  });

  it('node accepts the semi-space limit in NODE_OPTIONS (it refuses options it does not allow there)', () => {
    const result = spawnSync(process.execPath, ['-e', 'process.stdout.write("ok")'], { encoding: 'utf8', env: serverProcessEnv({ PATH: process.env.PATH }) });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toBe('ok');
  });

  it('bin/dkv.js run as a command exports the same threshold for `server` only, through sh, then execs node with the arguments intact', () => {
    const lines = readFileSync(dkvBin, 'utf8').split('\n');
    expect(lines[0]).toBe('#!/bin/sh');
    expect(lines[1]).toContain(`export MALLOC_MMAP_THRESHOLD_=${mallocMmapThresholdBytes};`);
    expect(lines[1]).toContain(`export NODE_OPTIONS="${semiSpace}${'${NODE_OPTIONS:+ $NODE_OPTIONS}'}"`);
    expect(lines[1]).toContain('exec node "$0" "$@"');
    // As the kernel runs it: sh, then the `node` on PATH (here a stub that prints what it got).
    const stubDir = mkdtempSync(join(tmpdir(), 'dkv-stub-node-'));
    try {
      writeFileSync(join(stubDir, 'node'), '#!/bin/sh\necho "threshold=${MALLOC_MMAP_THRESHOLD_-unset} options=${NODE_OPTIONS-unset} args=$*"\n', { mode: 0o755 });
      const run = (args: string[], env: Record<string, string> = {}): string => {
        const result = spawnSync(dkvBin, args, { encoding: 'utf8', env: { PATH: `${stubDir}:/usr/bin:/bin`, ...env } });
        expect(result.status).toBe(0);
        return result.stdout.trim();
      };
      expect(run(['server', '--name', 'a b'])).toBe(`threshold=${mallocMmapThresholdBytes} options=${semiSpace} args=${dkvBin} server --name a b`);
      expect(run(['server'], { MALLOC_MMAP_THRESHOLD_: '131072', NODE_OPTIONS: '--enable-source-maps' })).toBe(
        `threshold=131072 options=${semiSpace} --enable-source-maps args=${dkvBin} server`,
      );
      expect(run(['server'], { NODE_OPTIONS: '--max-semi-space-size=32' })).toBe(`threshold=${mallocMmapThresholdBytes} options=--max-semi-space-size=32 args=${dkvBin} server`);
      expect(run(['get', 'k'])).toBe(`threshold=unset options=unset args=${dkvBin} get k`);
    } finally {
      rmSync(stubDir, { recursive: true, force: true });
    }
  });
});
