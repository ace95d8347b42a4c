/**
 * Where the package's files are, whether this code runs from its TypeScript sources (`src/…`,
 * through tsx or vitest) or from the compiled build (`dist/src/…`): the protos, `bin/`, and
 * package.json are found from here, never relative to the running module.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** True when this module is the compiled build under dist/. */
export const runsCompiled = !import.meta.url.endsWith('.ts');

/** The package's root folder (the one holding package.json, bin/, proto/ and dist/). */
export const packageRoot = runsCompiled ? join(here, '..', '..') : join(here, '..');

/** The `dkv` command's entry (bin/dkv.js); children started with it run the same build as this process. */
export const dkvBin = join(packageRoot, 'bin', 'dkv.js');

/**
 * glibc's mmap threshold for `dkv server` processes. Left alone, glibc raises it (up to 32 MiB)
 * each time a large block is freed, after which the store's arenas and the Raft log's buffers come
 * from the heap, and memory they free stays in the process for good. Fixed at this size, every
 * block of this size or more is its own mapping, returned to the system when freed (bench/
 * footprint.ts: the resident set after deleting every key falls back near the empty node's).
 */
export const mallocMmapThresholdBytes = 64 * 1024;

/**
 * The environment a `dkv server` child gets: `env` plus glibc's fixed mmap threshold, unless the
 * caller set one (bin/dkv.js does the same for a `dkv server` started by hand).
 */
export function serverProcessEnv(env: Readonly<Record<string, string | undefined>> = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) if (value !== undefined) out[key] = value;
  out.MALLOC_MMAP_THRESHOLD_ ??= String(mallocMmapThresholdBytes);
  return out;
}
