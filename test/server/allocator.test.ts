/**
 * `dkv server` run as the `dkv` command with DKV_ALLOCATOR=jemalloc (the sh line of bin/dkv.js
 * preloads it; CI installs Debian's libjemalloc2): the process maps jemalloc, says so in its
 * start-up lines, and serves writes. Without the library it says it runs on the C library's malloc.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dkvBin, serverProcessEnv } from '../../src/package-root.js';
import { devClusterLayout } from '../../src/server/config.js';
import { etcdctl, freeBase, waitUntil } from './cluster-harness.js';

const dir = mkdtempSync(join(tmpdir(), 'dkv-allocator-'));
let child: ChildProcess | undefined;
let output = '';

afterAll(() => {
  child?.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe('DKV_ALLOCATOR=jemalloc', () => {
  it('preloads jemalloc into a dkv server started as a command, which then serves writes', async () => {
    const layout = devClusterLayout({ nodes: 1, basePort: await freeBase(1), dataDir: dir });
    const node = layout.nodes[0]!;
    child = spawn(dkvBin, ['server', ...node.args], { env: { ...process.env, DKV_ALLOCATOR: 'jemalloc', LD_PRELOAD: undefined, MALLOC_CONF: undefined }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const log = (): string => `${output}${(() => {
      try {
        return readFileSync(node.logFile, 'utf8');
      } catch {
        return '';
      }
    })()}`;
    await waitUntil(async () => etcdctl(node.clientUrl, ['put', 'k', 'v']).code === 0, 30_000, log);
    await waitUntil(async () => log().includes('memory allocator:'), 10_000, log);
    expect(etcdctl(node.clientUrl, ['get', 'k', '--print-value-only']).stdout.trim()).toBe('v');
    const jemalloc = serverProcessEnv({ DKV_ALLOCATOR: 'jemalloc' }).LD_PRELOAD;
    const maps = readFileSync(`/proc/${child.pid}/maps`, 'utf8');
    if (jemalloc === undefined) {
      expect(log()).toMatch(/ WARN [^:\n]+: memory allocator: [^\n]*DKV_ALLOCATOR=jemalloc found no libjemalloc\.so\.2/);
      expect(maps).not.toContain('libjemalloc');
    } else {
      expect(log()).toMatch(/ INFO [^:\n]+: memory allocator: jemalloc \(/);
      expect(log()).toContain(`memory allocator: jemalloc (${jemalloc}, MALLOC_CONF=`);
      expect(maps).toContain(jemalloc);
      // glibc's malloc_trim has nothing to trim under jemalloc: the server does not run it.
      await waitUntil(async () => log().includes('memory trim:'), 10_000, log);
      expect(log()).toContain('memory trim: none (the process runs on jemalloc, which returns freed memory itself)');
    }
  });
});
