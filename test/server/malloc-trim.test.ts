/**
 * glibc's malloc_trim through the addon `npm run build` compiles (src/native/): it is built and
 * loads on this glibc machine (CI installs a C compiler), and it gives back what free() keeps.
 * The child process below leaves the pattern a burst of small buffers leaves in a dkv server's
 * heap: ~100 MB of 1,000-byte buffers freed, one in 64 still held, so no free run reaches the
 * heap's top and free() returns none of it.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { mallocMmapThresholdBytes, mallocArenaMax } from '../../src/package-root.js';
import { mallocTrim, mallocTrimAddonPath, mallocTrimAvailability } from '../../src/server/malloc-trim.js';

const glibc = process.platform === 'linux' && (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime !== undefined;

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
  const second = (mallocTrim(), process.memoryUsage.rss());
  console.log(JSON.stringify({ before, after, second, kept: kept.length }));
});
`;

describe('malloc_trim', () => {
  it('is built and loads where the C library is glibc, and says why not elsewhere', () => {
    const availability = mallocTrimAvailability();
    if (glibc) expect(availability).toEqual({ available: true });
    else expect(availability).toEqual({ available: false, reason: expect.stringContaining(mallocTrimAddonPath) });
    const trimmed = mallocTrim();
    if (!glibc) expect(trimmed).toBeUndefined();
    else {
      expect(trimmed!.rssBefore).toBeGreaterThan(0);
      expect(trimmed!.rssAfter).toBeGreaterThan(0);
    }
  });

  it('hands back the free pages between buffers still held, which free() keeps', () => {
    expect(glibc).toBe(true); // the suite runs on Debian: the addon must be there
    const result = spawnSync(process.execPath, ['--expose-gc', '-e', child, mallocTrimAddonPath], {
      encoding: 'utf8',
      timeout: 60_000,
      // As a dkv server runs (serverProcessEnv): 1,000-byte buffers come from malloc's heaps.
      env: { ...process.env, MALLOC_MMAP_THRESHOLD_: String(mallocMmapThresholdBytes), MALLOC_ARENA_MAX: String(mallocArenaMax), NODE_OPTIONS: '' },
    });
    expect(result.status, result.stderr).toBe(0);
    const { before, after, second, kept } = JSON.parse(result.stdout) as { before: number; after: number; second: number; kept: number };
    expect(kept).toBe(1563);
    const mb = 1024 * 1024;
    // ~98 MB were freed; free() kept them resident, the trim gives back at least 60 MB of them.
    expect(before - after).toBeGreaterThan(60 * mb);
    // Nothing is left to give back a second time.
    expect(Math.abs(second - after)).toBeLessThan(8 * mb);
  });
});
