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
 * from the heap, and memory they free stays in the process for good. Fixed, every block of this
 * size or more that no free heap chunk can hold gets a mapping of its own, returned to the system
 * when freed. glibc gives back heap memory only from the heap's top, so a lower threshold keeps
 * more of a burst's memory returnable: at 8 KiB the resident set after deleting 500k keys fell
 * from ~234 to ~153 MB (bench/footprint.ts), but every buffer of 8 KiB or more (request and
 * response buffers, Raft entries, watch responses) then cost a mapping, its page faults and an
 * unmapping, and on a 2-CPU VM the 3-node workloads lost 10-25% (compare-etcd.sh A/B: put with
 * 100 clients 0.74x -> 0.88x etcd, linearizable range 0.79x -> 1.01x, watch p50 42 -> 15 ms). At
 * 64 KiB those buffers come from the heap and large blocks (arenas, big entries) still return.
 */
export const mallocMmapThresholdBytes = 64 * 1024;

/**
 * V8's largest semi-space (MiB) for `dkv server` processes. V8's own default on 64-bit is 16: a burst
 * of writes grows the young generation to two semi-spaces of 16 MiB, and V8 keeps them resident
 * for good (a full collection does not shrink them). At 8 the node's resident set is 14 to 19 MiB
 * lower at every step of bench/footprint.ts (500k keys: loaded 217 -> 203 MB, all deleted
 * 153 -> 135 MB) for more frequent, shorter scavenges. At 4 it would save 24 MiB.
 */
export const serverSemiSpaceMib = 8;

/** `--max-semi-space-size` as NODE_OPTIONS may spell it (V8 takes `-` or `_`). */
const semiSpaceOption = /--max[-_]semi[-_]space[-_]size/;

/**
 * The environment a `dkv server` child gets: `env` plus glibc's fixed mmap threshold, unless the
 * caller set one, and V8's semi-space limit in NODE_OPTIONS, unless the caller's NODE_OPTIONS set
 * one (bin/dkv.js does the same for a `dkv server` started by hand).
 */
export function serverProcessEnv(env: Readonly<Record<string, string | undefined>> = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) if (value !== undefined) out[key] = value;
  out.MALLOC_MMAP_THRESHOLD_ ??= String(mallocMmapThresholdBytes);
  const nodeOptions = out.NODE_OPTIONS ?? '';
  if (!semiSpaceOption.test(nodeOptions)) out.NODE_OPTIONS = `--max-semi-space-size=${serverSemiSpaceMib}${nodeOptions === '' ? '' : ` ${nodeOptions}`}`;
  return out;
}
