/**
 * glibc's malloc_trim(0) through the optional addon src/native/build.mjs compiles into
 * dist/native/malloc-trim.node. glibc's free() returns memory to the system only from the top of
 * a heap (and whole blocks of the fixed mmap threshold or more), so the holes a burst of small
 * buffers leaves (Raft entries, request buffers, LevelDB's blocks) stay resident after the burst
 * is gone; malloc_trim releases every free page of every arena. The memory settler and the
 * Defragmenter call it after their full collections (memory-settle.ts, defragment.ts).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { packageRoot } from '../package-root.js';

/** Where the build puts the addon. */
export const mallocTrimAddonPath = join(packageRoot, 'dist', 'native', 'malloc-trim.node');

export type MallocTrimAvailability = { readonly available: true } | { readonly available: false; readonly reason: string };

let addon: { mallocTrim(): boolean } | undefined;
let availability: MallocTrimAvailability | undefined;

/**
 * Whether `mallocTrim` can run here, and why not: the process runs on jemalloc (preloaded: it
 * returns freed memory itself, and glibc's arenas hold nothing to trim), no build of the addon
 * (not glibc, or no C compiler at `npm run build`), or an addon that does not load (built for
 * another platform or C library).
 */
export function mallocTrimAvailability(): MallocTrimAvailability {
  if (availability !== undefined) return availability;
  if (mapsJemalloc()) return (availability = { available: false, reason: 'the process runs on jemalloc, which returns freed memory itself' });
  try {
    const loaded = createRequire(import.meta.url)(mallocTrimAddonPath) as { mallocTrim?: unknown };
    if (typeof loaded.mallocTrim !== 'function') return (availability = { available: false, reason: `${mallocTrimAddonPath} has no mallocTrim` });
    addon = loaded as { mallocTrim(): boolean };
    return (availability = { available: true });
  } catch (error) {
    const code = (error as { code?: string }).code;
    const reason = code === 'MODULE_NOT_FOUND' ? `no ${mallocTrimAddonPath} (built by npm run build when a C compiler is there)` : `${mallocTrimAddonPath} did not load: ${(error as Error).message}`;
    return (availability = { available: false, reason });
  }
}

function mapsJemalloc(): boolean {
  try {
    return /\/libjemalloc[^/\n]*$/m.test(readFileSync('/proc/self/maps', 'utf8'));
  } catch {
    return false; // no /proc: not Linux, and no addon either
  }
}

/**
 * Runs malloc_trim(0) when available: the resident bytes before and after (what it gave back is
 * their difference), or undefined when it cannot run. It walks every arena and blocks the event
 * loop meanwhile (2-60 ms on a node of a few hundred MB), so it runs only where a full collection
 * already does.
 */
export function mallocTrim(): { readonly rssBefore: number; readonly rssAfter: number } | undefined {
  if (addon === undefined && !mallocTrimAvailability().available) return undefined;
  const rssBefore = process.memoryUsage.rss();
  addon!.mallocTrim();
  return { rssBefore, rssAfter: process.memoryUsage.rss() };
}
