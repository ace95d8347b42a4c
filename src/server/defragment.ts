/**
 * `defrag` (Maintenance.Defragment): gives back memory the store no longer needs. The MVCC
 * store keeps versions that compaction dropped in its segment arenas until garbage passes half an
 * arena, and arenas keep room to grow; defragmenting rewrites every segment into a fresh arena
 * sized to its retained versions and drops the old one. It runs in bounded steps
 * (defragmentSegmentsPerStep segments, then the event loop turns), so the node keeps serving.
 * Then it asks V8 for a full garbage collection, so that the dropped arenas return to the
 * operating system now rather than at V8's next major GC (the resident size is what operators
 * watch), and glibc's malloc_trim (when `trim` is given: malloc-trim.ts) for the free
 * pages left inside malloc's heaps.
 *
 * Like etcd's, it acts on the member that receives the call only (replicas do not need the same
 * layout: the hash covers the data, not the arenas).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Router } from '../runtime/index.js';
import { kvEngineOf } from '../runtime/index.js';
import { defragmentSegmentsPerStep } from './limits.js';
import type { Trimmed } from './malloc-trim.js';

export interface DefragmentResult {
  readonly beforeBytes: number;
  readonly afterBytes: number;
  /** Whether a full V8 garbage collection ran after the rewrite. */
  readonly collected: boolean;
}

/** glibc's malloc_trim, or undefined where it cannot run (malloc-trim.ts). */
export type MemoryTrim = () => Trimmed | undefined;

/** Bytes as MiB with one decimal, as the memory lines print them. */
export const mb = (bytes: number): string => (bytes / 1048576).toFixed(1);

/** The log's words for a trim's effect, or '' when none ran. */
export function trimmedText(trimmed: Trimmed | undefined): string {
  if (trimmed === undefined) return '';
  return `; malloc_trim: rss ${mb(trimmed.rssBefore)} -> ${mb(trimmed.rssAfter)} MB in ${trimmed.ms.toFixed(1)} ms`;
}

export interface DefragmenterOptions {
  readonly log?: (message: string) => void;
  /** Called before the collection: other holders of store views let go (the watch hub's recent events). */
  readonly releaseViews?: () => void;
  /** Run after the collection. */
  readonly trim?: MemoryTrim;
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

let gcFunction: (() => void) | undefined;

/**
 * V8's full collection: `global.gc` when node runs with --expose-gc, else the same function taken
 * from a fresh context after turning the flag on (V8 installs `gc` in contexts made after that).
 * With `compact`, V8 compacts its whole old generation in this collection (its own heuristics move
 * only the emptiest pages; a heap a burst left sparse keeps the rest resident): the flag is on for
 * this one collection. Its pause grows with the live heap it moves (`settleLateCompactMsPerMib`),
 * so only an idle node asks for it, with a small enough heap: the memory settle's late collection.
 */
export function fullGc(options: { readonly compact?: boolean } = {}): boolean {
  if (gcFunction === undefined) {
    const exposed = (globalThis as { gc?: () => void }).gc;
    if (typeof exposed === 'function') {
      gcFunction = exposed;
    } else {
      setFlagsFromString('--expose-gc');
      const fromContext = runInNewContext('typeof gc === "function" ? gc : undefined') as (() => void) | undefined;
      if (typeof fromContext !== 'function') return false;
      gcFunction = fromContext;
    }
  }
  if (options.compact !== true) {
    gcFunction();
    return true;
  }
  // V8 reads the flag at each full collection; Node leaves V8's flags writable after start-up
  // (--no-freeze-flags-after-init), as v8.setFlagsFromString, and --expose-gc above, need.
  setFlagsFromString('--compact-on-every-full-gc');
  try {
    gcFunction();
  } finally {
    setFlagsFromString('--no-compact-on-every-full-gc');
  }
  return true;
}

/** Defragments every hosted data shard's store in bounded steps, then collects. */
export class Defragmenter {
  private running: Promise<DefragmentResult> | undefined;

  constructor(
    private readonly router: Router,
    private readonly options: DefragmenterOptions = {},
  ) {}

  /** One defragmentation at a time: a call while one runs waits for that one. */
  run(): Promise<DefragmentResult> {
    this.running ??= this.defragment().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async defragment(): Promise<DefragmentResult> {
    const started = performance.now();
    let beforeBytes = 0;
    let afterBytes = 0;
    for (const shard of this.router.hosted()) {
      if (shard.shardId === this.router.map.metaShard) continue;
      beforeBytes += kvEngineOf(shard.machine()).mvcc.sizeBytes;
      // The store is fetched again every step: a snapshot install may replace it in between.
      for (let from = 0; from >= 0; ) {
        from = kvEngineOf(shard.machine()).mvcc.defragmentStep(from, defragmentSegmentsPerStep);
        await nextTurn();
      }
      afterBytes += kvEngineOf(shard.machine()).mvcc.sizeBytes;
    }
    this.options.releaseViews?.();
    const memoryBefore = process.memoryUsage();
    // Twice: V8 frees an ArrayBuffer's memory one collection after the object that owned it.
    const collected = fullGc();
    await nextTurn();
    if (collected) fullGc();
    const memoryAfter = process.memoryUsage();
    const trimmed = this.options.trim?.();
    const memory = (m: NodeJS.MemoryUsage): string => `rss ${mb(m.rss)} heap ${mb(m.heapUsed)}/${mb(m.heapTotal)} external ${mb(m.external)} (buffers ${mb(m.arrayBuffers)}) MB`;
    this.options.log?.(
      `defragmented: store ${beforeBytes} -> ${afterBytes} bytes in ${Math.round(performance.now() - started)} ms; ` +
        (collected ? `full GC: ${memory(memoryBefore)} -> ${memory(memoryAfter)}` : 'no full GC (V8 does not expose it)') +
        trimmedText(trimmed),
    );
    return { beforeBytes, afterBytes, collected };
  }
}
