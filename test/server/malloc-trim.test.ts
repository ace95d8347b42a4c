/**
 * glibc's malloc_trim through the addon `npm run build` compiles (src/native/): where it could be
 * built (CI, which installs a C compiler; any glibc machine with one) it is built, loads and gives
 * back what free() keeps; elsewhere the server says why not. The child process below leaves the
 * pattern a burst of small buffers leaves in a dkv server's heap: ~100 MB of 1,000-byte buffers
 * freed, one in 64 still held, so no free run reaches the heap's top and free() returns none of it.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { mallocArenaMax, mallocMmapThresholdBytes } from '../../src/package-root.js';
import { mallocTrim, mallocTrimAddonPath, mallocTrimAvailability } from '../../src/server/malloc-trim.js';

/** Whether this machine can build the addon: Linux, glibc, a C compiler and malloc.h. */
function canBuild(): boolean {
  if (process.platform !== 'linux') return false;
  const glibc = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime !== undefined;
  const compiler = spawnSync(process.env.CC?.trim().split(/\s+/)[0] || 'cc', ['--version'], { encoding: 'utf8' });
  return glibc && compiler.status === 0 && spawnSync('test', ['-r', '/usr/include/malloc.h']).status === 0;
}

/** CI must build it (.ci/run installs gcc and libc6-dev): there, a missing addon is a failure. */
const expected = process.env.CI === 'true' || canBuild();

const child = `
const { mallocTrim } = require(process.argv[1]);
const kept = [];
let dropped = [];
for (let i = 0; i < 100000; i++) {
  const buffer = Buffer.allocUnsafeSlow(1000);
  buffer.fill(i & 0xff);
  (i % 64 === 0 ? kept : dropped).push(buffer);
}
dropped = undefined;
globalThis.gc();
setImmediate(() => {
  globalThis.gc(); // a buffer's memory is freed one collection after its owner
  const before = process.memoryUsage.rss();
  mallocTrim();
  const after = process.memoryUsage.rss();
  console.log(JSON.stringify({ before, after, kept: kept.length }));
});
`;

describe('malloc_trim', () => {
  it('is built and loads where it can be built, and says why not elsewhere', () => {
    const availability = mallocTrimAvailability();
    if (expected) {
      expect(availability).toEqual({ available: true });
      const trimmed = mallocTrim()!;
      expect(trimmed.ms).toBeGreaterThanOrEqual(0);
    } else {
      expect(availability.available).toBe(false);
      expect((availability as { reason: string }).reason).not.toBe('');
      expect(mallocTrim()).toBeUndefined();
    }
  });

  it('hands back the free pages between buffers still held, which free() keeps', () => {
    if (!expected) {
      expect(mallocTrim()).toBeUndefined();
      return;
    }
    const env: NodeJS.ProcessEnv = { ...process.env, MALLOC_MMAP_THRESHOLD_: String(mallocMmapThresholdBytes), MALLOC_ARENA_MAX: String(mallocArenaMax), NODE_OPTIONS: '' };
    // glibc's malloc, as a dkv server runs (serverProcessEnv): not a preloaded one.
    delete env.LD_PRELOAD;
    const result = spawnSync(process.execPath, ['--expose-gc', '-e', child, mallocTrimAddonPath], { encoding: 'utf8', timeout: 60_000, env });
    expect(result.status, result.stderr).toBe(0);
    const { before, after, kept } = JSON.parse(result.stdout) as { before: number; after: number; kept: number };
    expect(kept).toBe(1563);
    // ~98 MB were freed; free() kept them resident, the trim gives back at least 60 MB of them.
    expect(before - after).toBeGreaterThan(60 * 1024 * 1024);
  });
});
