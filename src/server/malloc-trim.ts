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
 * Whether `mallocTrim` can run here, and why not: not Linux, the process runs on jemalloc
 * (preloaded: it returns freed memory itself, and glibc's arenas hold nothing to trim), no build
 * of the addon (not glibc, or no C compiler at `npm run build`), or an addon that does not load
 * (built for another platform or C library: a package installed from a tarball carries the
 * addon built where it was packed). Another malloc preloaded (tcmalloc) is not detected: the
 * trims then find little to do. `mapped`: the shared objects the process maps. The first call
 * decides for the process (its malloc is chosen when it starts).
 */
export function mallocTrimAvailability(mapped: readonly string[] = mappedObjects()): MallocTrimAvailability {
  if (availability !== undefined) return availability;
  if (process.platform !== 'linux') return (availability = { available: false, reason: `${process.platform} has no glibc` });
  if (mapped.some((path) => jemallocPath.test(path))) return (availability = { available: false, reason: 'the process runs on jemalloc, which returns freed memory itself' });
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

/** A mapped shared object that is jemalloc. */
export const jemallocPath = /\/libjemalloc[^/]*$/;

/** The shared objects this process maps (empty where /proc is not Linux's). */
export function mappedObjects(maps: () => string = () => readFileSync('/proc/self/maps', 'utf8')): string[] {
  let text: string;
  try {
    text = maps();
  } catch {
    return [];
  }
  const paths = new Set<string>();
  for (const line of text.split('\n')) {
    const slash = line.indexOf(' /');
    if (slash >= 0 && line.includes('.so')) paths.add(line.slice(slash + 1).trim());
  }
  return [...paths];
}

/** What a trim did: the resident bytes before and after (it gave back their difference), and how long it took. */
export interface Trimmed {
  readonly rssBefore: number;
  readonly rssAfter: number;
  readonly ms: number;
}

/**
 * Runs malloc_trim(0) when available, or returns undefined. It walks the free chunks of every
 * arena, holding each arena's lock (LevelDB's threads wait meanwhile), and blocks the event loop:
 * 2-72 ms on a node of ~200-570 MB (bench/README.md), more on a larger heap. So it runs only when
 * the node settles or defragments, once writes have stopped.
 */
export function mallocTrim(): Trimmed | undefined {
  if (addon === undefined && !mallocTrimAvailability().available) return undefined;
  const rssBefore = process.memoryUsage.rss();
  const started = performance.now();
  addon!.mallocTrim();
  return { rssBefore, rssAfter: process.memoryUsage.rss(), ms: performance.now() - started };
}
