import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dkvBin, mallocMmapThresholdBytes, serverProcessEnv } from '../../src/package-root.js';

describe('the environment dkv server runs with', () => {
  it('serverProcessEnv fixes glibc mmap threshold unless the caller set one', () => {
    expect(serverProcessEnv({ PATH: '/bin' })).toEqual({ PATH: '/bin', MALLOC_MMAP_THRESHOLD_: String(mallocMmapThresholdBytes) });
    expect(serverProcessEnv({ MALLOC_MMAP_THRESHOLD_: '131072', GONE: undefined })).toEqual({ MALLOC_MMAP_THRESHOLD_: '131072' });
  });

  it('bin/dkv.js run as a command exports the same threshold for `server` only, through sh, then execs node with the arguments intact', () => {
    const lines = readFileSync(dkvBin, 'utf8').split('\n');
    expect(lines[0]).toBe('#!/bin/sh');
    expect(lines[1]).toContain(`export MALLOC_MMAP_THRESHOLD_=${mallocMmapThresholdBytes};`);
    expect(lines[1]).toContain('exec node "$0" "$@"');
    // As the kernel runs it: sh, then the `node` on PATH (here a stub that prints what it got).
    const stubDir = mkdtempSync(join(tmpdir(), 'dkv-stub-node-'));
    try {
      writeFileSync(join(stubDir, 'node'), '#!/bin/sh\necho "threshold=${MALLOC_MMAP_THRESHOLD_-unset} args=$*"\n', { mode: 0o755 });
      const run = (args: string[], env: Record<string, string> = {}): string => {
        const result = spawnSync(dkvBin, args, { encoding: 'utf8', env: { PATH: `${stubDir}:/usr/bin:/bin`, ...env } });
        expect(result.status).toBe(0);
        return result.stdout.trim();
      };
      expect(run(['server', '--name', 'a b'])).toBe(`threshold=${mallocMmapThresholdBytes} args=${dkvBin} server --name a b`);
      expect(run(['server'], { MALLOC_MMAP_THRESHOLD_: '131072' })).toBe(`threshold=131072 args=${dkvBin} server`);
      expect(run(['get', 'k'])).toBe(`threshold=unset args=${dkvBin} get k`);
    } finally {
      rmSync(stubDir, { recursive: true, force: true });
    }
  });
});
