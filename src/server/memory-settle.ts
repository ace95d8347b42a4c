/**
 * Gives memory back once writes stop, as a Go server's collector and scavenger do for etcd.
 *
 * V8 collects when it allocates, so a node that goes idle after a burst of writes (a bulk load,
 * overwrites, a DeleteRange of a million keys) keeps that burst's garbage — heap objects and the
 * store arenas outgrown or dropped meanwhile — for as long as it stays idle. The settler counts the
 * bytes applied; once they pass both `settleChurnBytesMin` and `settleChurnStoreFraction` of the
 * store's arenas (or a compaction was applied) and no entry was applied for `settleIdleMs`, it
 * settles:
 *  - after a compaction that left the store's arenas mostly garbage or free room (in use below
 *    `settleRewriteInUseFraction` of their size), it defragments (the store rewritten in bounded
 *    steps, then collected), so a second load of the same keys after a compaction costs no more
 *    memory than the first;
 *  - otherwise two full collections (the first frees the objects, the second the buffers they
 *    held; V8 releases an ArrayBuffer's memory one collection after its owner).
 * Each settle first lets the Raft logs' tail caches go of their applied entries (`releaseCaches`;
 * a follower that asks for them later has them read back from LevelDB). `settleLateCollectMs`
 * after a settle, and after the last entry applied since, one more collection (kind `late`): V8
 * shrinks its young generation only in a collection that sees a low allocation rate, which the
 * settle's collections, right after the burst, never see. Before it, LevelDB writes out and frees
 * its memtable (`flushStorage`), which an idle node would otherwise keep with up to 4 MiB of the
 * burst's last writes; and it compacts V8's whole old generation, which the burst left sparse,
 * when the heap is small enough for the pause to stay short (`compactHeapBytesMax`).
 * At most once per `settleIntervalMsMin`. Whether the freed memory leaves the resident set is the
 * C allocator's business: `dkv server` run as the `dkv` command, or by `dkv dev`, `dkv instance` or
 * jepsen-lite, has glibc's mmap threshold and arena limit fixed (`serverProcessEnv` in
 * src/package-root.ts), so large buffers are returned when freed and fewer arenas keep holes; and
 * each settle ends with glibc's malloc_trim (`trim`, malloc-trim.ts), which returns the
 * free pages inside malloc's heaps that free() keeps.
 */
import { getHeapStatistics } from 'node:v8';
import { type MemoryTrim, fullGc, mb, trimmedText } from './defragment.js';
import {
  settleChurnBytesMin,
  settleChurnStoreFraction,
  settleIdleMs,
  settleIntervalMsMin,
  settleLateCollectMs,
  settleLateCompactElectionFraction,
  settleLateCompactMsPerMib,
  settleRewriteInUseFraction,
} from './limits.js';

export interface MemorySettlerOptions {
  /** The data store's arena bytes and bytes in use (Maintenance.Status dbSize / dbSizeInUse). */
  readonly storeBytes: () => { readonly total: number; readonly inUse: number };
  /** Defragments (rewrites the store and collects). */
  readonly defragment: () => Promise<unknown>;
  readonly log?: (message: string) => void;
  /** Injected for tests: a full collection, compacting the whole old generation when asked; false when V8 offers none. */
  readonly collect?: (options: { readonly compact: boolean }) => boolean;
  /** Injected for tests: the bytes V8's heap holds (live and not yet collected). */
  readonly heapUsedBytes?: () => number;
  /** The largest heap the late collection compacts (`lateCompactHeapBytesFor` the election timeout). */
  readonly compactHeapBytesMax: number;
  readonly now?: () => number;
  readonly setTimer?: (run: () => void, ms: number) => { unref?(): unknown; ref?(): unknown } | number;
  readonly clearTimer?: (timer: unknown) => void;
  /** Run after a settle's collections (the defragment path trims in `defragment`); none: no trim. */
  readonly trim?: MemoryTrim;
  /** Lets go of caches an idle node does not need (the Raft logs' applied entries); returns the bytes released. */
  readonly releaseCaches?: () => number;
  /** Has the storage engine write out and free its write buffer (the Raft log store's LevelDB memtable), before the late collection; false when it could not (closed or failed). */
  readonly flushStorage?: () => Promise<boolean>;
  /** Called after each settle with its kind (the dkv_memory_settles_total counter). */
  readonly onSettled?: (kind: SettleKind) => void;
}

/** collect: full collections; defragment: the store rewritten, then collected; late: the collection `settleLateCollectMs` after either. */
export type SettleKind = 'collect' | 'defragment' | 'late';

export class MemorySettler {
  private churnBytes = 0;
  /** The churn that makes a settle due, as of the store's size when last asked. */
  private churnBytesNeeded = settleChurnBytesMin;
  private compacted = false;
  private lastAppliedAt = 0;
  private lastSettledAt = Number.NEGATIVE_INFINITY;
  private timer: unknown;
  /** The late collection's timer, armed after each settle; and when that settle ended. */
  private lateTimer: unknown;
  private lateArmedAt = 0;
  private settling: Promise<void> | undefined;
  /** The late collection under way (from its storage flush to its trim), and any queued after it. */
  private late: Promise<void> | undefined;
  /** Settles begun: a late collection whose settle is no longer the latest gives way to the latest's. */
  private settlesBegun = 0;
  private stopped = false;
  /** Settles done, by kind. */
  readonly settles = { collect: 0, defragment: 0, late: 0 };

  constructor(private readonly options: MemorySettlerOptions) {}

  private now(): number {
    return (this.options.now ?? performance.now.bind(performance))();
  }

  /** An entry of `bytes` was applied to the data store. */
  applied(bytes: number): void {
    this.churnBytes += bytes;
    this.lastAppliedAt = this.now();
    this.arm();
  }

  /** A compaction was applied to the data store. */
  compactionApplied(): void {
    this.compacted = true;
    this.lastAppliedAt = this.now();
    this.arm();
  }

  /** No settle starts after this; resolves when one that was running (and a late collection) is done. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.clearTimer(this.timer);
    this.clearTimer(this.lateTimer);
    this.timer = undefined;
    this.lateTimer = undefined;
    await Promise.all([this.settling, this.late]);
  }

  private due(): boolean {
    if (this.compacted) return true;
    // The store's size is summed over its segments: asked only when the churn passes what the
    // size asked last allowed (and again after each settle), not on every applied entry.
    if (this.churnBytes < this.churnBytesNeeded) return false;
    this.churnBytesNeeded = settleChurnBytesFor(this.options.storeBytes().total);
    return this.churnBytes >= this.churnBytesNeeded;
  }

  private arm(): void {
    if (this.stopped || this.settling !== undefined || this.timer !== undefined || !this.due()) return;
    const wait = Math.max(settleIdleMs - (this.now() - this.lastAppliedAt), this.lastSettledAt + settleIntervalMsMin - this.now(), 0);
    this.timer = this.startTimer(() => {
      this.timer = undefined;
      this.fire();
    }, wait);
  }

  private fire(): void {
    if (this.stopped) return;
    // Writes came meanwhile: wait until they stop.
    if (this.now() - this.lastAppliedAt < settleIdleMs || this.now() - this.lastSettledAt < settleIntervalMsMin) {
      this.arm();
      return;
    }
    // A settle that fails (a store replaced or stopped under it) is logged, never left to reject.
    this.settlesBegun++;
    this.settling = this.settle()
      .then(() => this.armLate())
      .catch((error: unknown) => this.options.log?.(`memory settle failed: ${errorText(error)}`))
      .finally(() => {
        this.settling = undefined;
        this.lastSettledAt = this.now();
        this.arm();
      });
  }

  private startTimer(run: () => void, ms: number): unknown {
    const timer = (this.options.setTimer ?? setTimeout)(run, ms);
    if (typeof timer === 'object') timer.unref?.();
    return timer;
  }

  private clearTimer(timer: unknown): void {
    if (timer !== undefined) (this.options.clearTimer ?? clearTimeout)(timer as NodeJS.Timeout);
  }

  /** Arms the late collection after a settle, in place of one still waiting. */
  private armLate(): void {
    if (this.stopped) return;
    this.clearTimer(this.lateTimer);
    this.lateArmedAt = this.now();
    this.waitLate(settleLateCollectMs);
  }

  /** The late collection runs once `settleLateCollectMs` passed since its settle and the last entry applied. */
  private waitLate(ms: number): void {
    this.lateTimer = this.startTimer(() => {
      this.lateTimer = undefined;
      // A settle under way arms its own when it ends.
      if (this.stopped || this.settling !== undefined) return;
      const wait = settleLateCollectMs - (this.now() - Math.max(this.lastAppliedAt, this.lateArmedAt));
      if (wait > 0) this.waitLate(wait);
      else this.startLate();
    }, ms);
  }

  /** Runs the late collection, after one still under way (whose storage flush takes its time). */
  private startLate(): void {
    const begun = this.settlesBegun;
    const late = (this.late ?? Promise.resolve())
      .then(() => this.collectLate(begun))
      .catch((error: unknown) => this.options.log?.(`memory settle failed (late collection): ${errorText(error)}`));
    this.late = late;
    void late.finally(() => {
      if (this.late === late) this.late = undefined;
    });
  }

  /** The late collection for the settle that was the `begun`th. */
  private async collectLate(begun: number): Promise<void> {
    // Queued behind a slow flush while a newer settle began: that settle's collection is the one to run.
    if (this.stopped || this.settlesBegun !== begun) return;
    const before = process.memoryUsage();
    // What the settle could not release (a write was under way) goes now.
    const released = this.options.releaseCaches?.() ?? 0;
    let flushed = '';
    if (this.options.flushStorage !== undefined) {
      const started = performance.now();
      try {
        flushed = (await this.options.flushStorage())
          ? `, LevelDB memtable flushed in ${(performance.now() - started).toFixed(1)} ms`
          : ', LevelDB memtable not flushed (the store is closed or failed)';
      } catch (error) {
        // The collection is still worth making.
        flushed = `, LevelDB memtable not flushed (${errorText(error)})`;
      }
      // A settle that began meanwhile has a late collection of its own.
      if (this.stopped || this.settlesBegun !== begun) return;
    }
    const heapUsed = (this.options.heapUsedBytes ?? (() => getHeapStatistics().used_heap_size))();
    const compact = heapUsed <= this.options.compactHeapBytesMax;
    const started = performance.now();
    if (!(this.options.collect ?? fullGc)({ compact })) return;
    const collectedMs = performance.now() - started;
    const trimmed = this.options.trim?.();
    this.settles.late++;
    this.options.onSettled?.('late');
    const after = process.memoryUsage();
    this.options.log?.(
      `memory settled, late collection: rss ${mb(before.rss)} -> ${mb(after.rss)} MB, heap total ${mb(before.heapTotal)} -> ${mb(after.heapTotal)} MB ` +
        (compact ? `(compacted in ${collectedMs.toFixed(1)} ms)` : `(collected in ${collectedMs.toFixed(1)} ms, not compacted: heap ${mb(heapUsed)} MB)`) +
        releasedText(released) +
        flushed +
        trimmedText(trimmed),
    );
  }

  private async settle(): Promise<void> {
    const rewrite = this.compacted && this.shouldRewrite();
    this.compacted = false;
    this.churnBytes = 0;
    this.churnBytesNeeded = settleChurnBytesMin;
    const before = process.memoryUsage();
    const released = this.options.releaseCaches?.() ?? 0;
    if (rewrite) {
      await this.options.defragment();
      this.settles.defragment++;
      this.options.onSettled?.('defragment');
    } else {
      const collect = this.options.collect ?? fullGc;
      collect({ compact: false });
      // The second collection frees the buffers whose owners the first one freed.
      await new Promise((resolve) => setImmediate(resolve));
      if (this.stopped) return;
      collect({ compact: false });
      this.settles.collect++;
      this.options.onSettled?.('collect');
    }
    const trimmed = rewrite ? undefined : this.options.trim?.();
    const after = process.memoryUsage();
    this.options.log?.(
      `memory settled after writes stopped (${rewrite ? 'store rewritten, then collected' : 'collected'}): ` +
        `rss ${mb(before.rss)} -> ${mb(after.rss)} MB, heap ${mb(before.heapUsed)} -> ${mb(after.heapUsed)} MB, external ${mb(before.external)} -> ${mb(after.external)} MB` +
        releasedText(released) +
        trimmedText(trimmed),
    );
  }

  private shouldRewrite(): boolean {
    const { total, inUse } = this.options.storeBytes();
    return total > 0 && inUse < total * settleRewriteInUseFraction;
  }
}

/** An error's message for the log. */
function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The log's words for the Raft log cache bytes a settle let go, or '' when none. */
function releasedText(released: number): string {
  return released > 0 ? `, Raft log cache ${mb(released)} MB released` : '';
}

/** The largest heap whose compaction, at `settleLateCompactMsPerMib`, pauses for at most `settleLateCompactElectionFraction` of `electionTimeoutMs`. */
export function lateCompactHeapBytesFor(electionTimeoutMs: number): number {
  return Math.floor(((electionTimeoutMs * settleLateCompactElectionFraction) / settleLateCompactMsPerMib) * 1048576);
}

/** The bytes written since the last settle that make a store of `storeBytes` arena bytes due for one. */
export function settleChurnBytesFor(storeBytes: number): number {
  return Math.max(settleChurnBytesMin, Math.ceil(storeBytes * settleChurnStoreFraction));
}
