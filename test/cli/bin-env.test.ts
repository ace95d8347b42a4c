import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { dkvBin, mallocMmapThresholdBytes, serverProcessEnv } from '../../src/package-root.js';

describe('the environment dkv server runs with', () => {
  it('serverProcessEnv fixes glibc mmap threshold unless the caller set one', () => {
    expect(serverProcessEnv({ PATH: '/bin' })).toEqual({ PATH: '/bin', MALLOC_MMAP_THRESHOLD_: String(mallocMmapThresholdBytes) });
    expect(serverProcessEnv({ MALLOC_MMAP_THRESHOLD_: '131072', GONE: undefined })).toEqual({ MALLOC_MMAP_THRESHOLD_: '131072' });
  });

  it('bin/dkv.js run as a command sets the same threshold for `server` through sh, then execs node', () => {
    const lines = readFileSync(dkvBin, 'utf8').split('\n');
    expect(lines[0]).toBe('#!/bin/sh');
    expect(lines[1]).toContain(`export MALLOC_MMAP_THRESHOLD_=${mallocMmapThresholdBytes};`);
    expect(lines[1]).toContain('exec node "$0" "$@"');
    // As the kernel runs it (sh, then node on the same file): the arguments arrive intact.
    const result = spawnSync(dkvBin, ['server', '--version'], { encoding: 'utf8' });
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/^DKV Version: /);
  });
});
