/**
 * Where the package's files are, whether this code runs from its TypeScript sources (`src/…`,
 * through tsx or vitest) or from the compiled build (`dist/src/…`): the protos, `bin/`, and
 * package.json are found from here, never relative to the running module.
 */
import { accessSync, constants } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** True when this module is the compiled build under dist/. */
export const runsCompiled = !import.meta.url.endsWith('.ts');

/** The package's root folder (the one holding package.json, bin/, proto/ and dist/). */
export const packageRoot = runsCompiled ? join(here, '..', '..') : join(here, '..');

/** The `dkv` command's entry (bin/dkv.js); children started with it run the same build as this process. */
export const dkvBin = join(packageRoot, 'bin', 'dkv.js');

/**
 * Why a `dkv` started now would not run the build in dist/ but the sources through tsx (bin/load.js:
 * `DKV_FROM_SOURCE=1`, `no build`, `stale`), or undefined when it would run the build. Benchmarks
 * ask: tsx's loader and transpiler add memory and CPU of their own.
 */
export async function buildUnusable(): Promise<string | undefined> {
  const loader = (await import(pathToFileURL(join(packageRoot, 'bin', 'load.js')).href)) as { buildUnusable(): string | undefined };
  return loader.buildUnusable();
}

/**
 * glibc's mmap threshold for `dkv server` processes. Left alone, glibc raises it (up to 32 MiB)
 * each time a large block is freed, after which the store's arenas and the Raft log's buffers come
 * from the heap, and memory they free stays in the process for good. Fixed, every block of this
 * size or more that no free heap chunk can hold gets a mapping of its own, returned to the system
 * when freed. glibc's free() gives back heap memory only from the heap's top (the rest waits for
 * malloc_trim, which each memory settle runs: src/server/malloc-trim.ts), so a lower threshold
 * keeps more of a burst's memory returnable: at 8 KiB the resident set after deleting 500k keys fell
 * from ~234 to ~153 MB (bench/footprint.ts), but every buffer of 8 KiB or more (request and
 * response buffers, Raft entries, watch responses) then cost a mapping, its page faults and an
 * unmapping, and on a 2-CPU VM the 3-node workloads lost 10-25% (compare-etcd.sh A/B: put with
 * 100 clients 0.74x -> 0.88x etcd, linearizable range 0.79x -> 1.01x, watch p50 42 -> 15 ms). At
 * 64 KiB those buffers come from the heap and large blocks (arenas, big entries) still return.
 */
export const mallocMmapThresholdBytes = 64 * 1024;

/**
 * glibc's arena limit for `dkv server` processes (MALLOC_ARENA_MAX). glibc's own is 8 per CPU: a
 * thread that finds the arenas in use by others gets one of its own (libuv's thread pool,
 * LevelDB's compaction thread, V8's workers), and each arena keeps the holes a burst of writes
 * leaves in it, giving memory back from its top only. With two, which all threads share (as
 * jemallocConf's narenas:2 does for jemalloc), four alternated bench/footprint.ts runs at
 * 500k keys against four with glibc's default (medians): resident after the keys were overwritten
 * and compacted 228 against 244 MB (growth over the loaded node 1.06 against 1.16), after all were
 * deleted 217 against 226 MB, bulk load 68.6k against 62.4k keys/s, restart 1.86 against 2.02 s.
 * Puts slowed no more than the noise: one node, one client, three alternated rounds, p50
 * 1.15-1.95 ms against 1.21-1.75; 3 nodes (compare-etcd.sh's put rows, four alternated rounds),
 * one client's p50 at 1.33-1.49x etcd's against 1.75-2.10x, 100 clients' rate at 0.83-0.96x
 * against 0.85-1.06x. One arena did as well in two footprint runs, but would make every thread
 * wait on one lock.
 */
export const mallocArenaMax = 2;

/**
 * V8's largest semi-space (MiB) for `dkv server` processes. V8's own default on 64-bit is 16: a burst
 * of writes grows the young generation to two semi-spaces of 16 MiB, and V8 keeps them resident
 * until a collection finds its recent allocation rate low (the memory settle's late collection,
 * memory-settle.ts). At 8 a burst leaves at most half as much resident until then, for more
 * frequent, shorter scavenges.
 */
export const serverSemiSpaceMib = 8;

/**
 * Where jemalloc 5 is looked for (Debian's and Ubuntu's package `libjemalloc2`, per architecture;
 * Fedora's, RHEL's and Arch's), in this order; with DKV_ALLOCATOR=jemalloc the first readable one
 * is preloaded into `dkv server` processes, unless the caller set LD_PRELOAD. bin/dkv.js's sh line
 * looks in the same places, `$(uname -m)` standing for the machine name.
 */
export function jemallocCandidates(machine: string = unameMachine()): string[] {
  return [`/usr/lib/${machine}-linux-gnu/libjemalloc.so.2`, '/usr/lib64/libjemalloc.so.2', '/usr/lib/libjemalloc.so.2'];
}

/**
 * `uname -m`'s name for this machine where it is also Debian's multiarch folder name (x86_64,
 * aarch64); elsewhere Node's name, which names no folder, so only /usr/lib64 and /usr/lib are
 * looked in, by the sh line too (set LD_PRELOAD by hand there).
 */
function unameMachine(): string {
  const names: Record<string, string> = { x64: 'x86_64', arm64: 'aarch64' };
  return names[process.arch] ?? process.arch;
}

/**
 * DKV_ variables that say how the process runs, not how the server is configured: the server does
 * not warn about them, and `dkv instance` passes them to the servers it starts.
 */
export const processVariables: readonly string[] = ['DKV_ALLOCATOR', 'DKV_DEBUG', 'DKV_FROM_SOURCE', 'DKV_TEST_PORTS'];

/** The fewest ports DKV_TEST_PORTS may name. */
export const harnessPortsMin = 100;

/**
 * The ports that harnesses pick free ones from (the test suites' clusters, jepsen-lite's real
 * clusters, `dkv instance create` without ports), when `DKV_TEST_PORTS=low-high` narrows them:
 * for a machine shared with other runs, and for test files running at once, which the suite
 * gives a slice each (test/setup-ports.ts). Unset: undefined, each picker's own range.
 */
export function harnessPortRange(env: Readonly<Record<string, string | undefined>> = process.env): { low: number; high: number } | undefined {
  const setting = env.DKV_TEST_PORTS;
  if (setting === undefined || setting === '') return undefined;
  const match = /^(\d+)-(\d+)$/.exec(setting);
  const low = Number(match?.[1]);
  const high = Number(match?.[2]);
  if (match === null || low < 1024 || high > 65535 || high - low < harnessPortsMin) {
    throw new Error(`DKV_TEST_PORTS: want low-high within 1024-65535, ${harnessPortsMin} ports at least, got '${setting}'`);
  }
  return { low, high };
}

/** A picker's range, [low, high) with `high` excluded: DKV_TEST_PORTS's when set, else the picker's own. */
export function harnessPortBounds(low: number, highExcluded: number): { low: number; high: number } {
  const narrowed = harnessPortRange();
  return narrowed === undefined ? { low, high: highExcluded } : { low: narrowed.low, high: narrowed.high + 1 };
}

/**
 * jemalloc's settings for `dkv server` with DKV_ALLOCATOR=jemalloc (MALLOC_CONF, unless the caller
 * set it). glibc's malloc gives back freed memory only from the top of its heap: after a burst of
 * writes, the many small buffers it served (Raft entries, request buffers) leave free holes that
 * stay resident. Measured with 500k keys of 16 + 100 bytes on one node (load, SIGKILL and restart,
 * load again and compact, delete all and compact; 2 runs each, resident MB):
 *
 *                  empty  loaded  overwritten  deleted  load (128-put txns/s)
 *   glibc           116   309       348-359    315-318   508-618
 *   jemalloc        108   230-238   139-149    105-107   397-400
 *
 * glibc's deleted figure fell to ~105 MB when malloc_trim was called from a debugger: the memory
 * is free, just not returned. jemalloc returns free pages on its own, here within 1 s, by a
 * background thread (so an idle node gives memory back too), with two arenas (the event loop and
 * LevelDB's and libuv's threads share them). It costs ~10% of the bulk load's rate and ~16% of
 * the restart (medians of five alternated footprint runs, bench/README.md), so it is a choice
 * and not the default.
 */
export const jemallocConf = 'narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0,background_thread:true';

/** `--max-semi-space-size` as NODE_OPTIONS may spell it (V8 takes `-` or `_`). */
const semiSpaceOption = /--max[-_]semi[-_]space[-_]size/;

/**
 * The environment a `dkv server` child gets: `env` plus glibc's fixed mmap threshold and arena
 * limit, each unless the caller set it; with DKV_ALLOCATOR=jemalloc, jemalloc preloaded with
 * `jemallocConf` (the first of `jemallocCandidates` that is `readable`; none: glibc's malloc),
 * unless the caller set LD_PRELOAD; and V8's semi-space limit in NODE_OPTIONS, unless the caller's
 * NODE_OPTIONS set one (bin/dkv.js does the same for a `dkv server` started by hand).
 */
export function serverProcessEnv(
  env: Readonly<Record<string, string | undefined>> = process.env,
  readable: (path: string) => boolean = isReadable,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) if (value !== undefined) out[key] = value;
  out.MALLOC_MMAP_THRESHOLD_ ??= String(mallocMmapThresholdBytes);
  out.MALLOC_ARENA_MAX ??= String(mallocArenaMax);
  if (out.LD_PRELOAD === undefined && out.DKV_ALLOCATOR === 'jemalloc') {
    const jemalloc = jemallocCandidates().find(readable);
    if (jemalloc !== undefined) {
      out.LD_PRELOAD = jemalloc;
      out.MALLOC_CONF ??= jemallocConf;
    }
  }
  const nodeOptions = out.NODE_OPTIONS ?? '';
  if (!semiSpaceOption.test(nodeOptions)) out.NODE_OPTIONS = `--max-semi-space-size=${serverSemiSpaceMib}${nodeOptions === '' ? '' : ` ${nodeOptions}`}`;
  return out;
}

function isReadable(path: string): boolean {
  try {
    accessSync(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}
