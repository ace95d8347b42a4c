/**
 * Automatic splits of mounted stores' shards, by size and by load (`--shard-split-bytes`,
 * `--shard-split-qps`), through the same coordinator as `dkv shard split` (store-admin.ts).
 *
 * - **Size:** a shard whose retained versions (its DB SIZE IN USE) reach the threshold is split
 *   at the key that divides those bytes most evenly (`MvccStore.bytesMiddleKey`), if each side
 *   gets at least `shardSplitSideMin` of them: one key whose history holds most of the bytes is
 *   compaction's to shrink, not a split's. Every replica holds the same data, so only the node
 *   leading the shard decides; a half still too large is split again at a later pass.
 * - **Load:** each node counts the requests it routes to each store shard (`LoadTracker`, fed by
 *   the router) over windows of `shardSplitLoadWindowMs`, keeping a reservoir of the keys asked.
 *   A shard whose count over a whole window reaches the threshold on one node is split, by that
 *   node, at the sampled key that divides the sampled requests most evenly, if each side gets at
 *   least `shardSplitSideMin` of them (one hot key is not split: no key would divide its
 *   load). A request is counted where it arrives: the DKV client sends a shard's requests to its
 *   leader, etcd's clients spread them over the members, each of which counts its own share.
 *
 * Never split: the default store and the meta shard (as `dkv shard split` refuses them), a store
 * still being created or being dropped, a shard whose split is not finished, a shard holding
 * leases (the coordinator would refuse it). Nothing is split while a member's build does not
 * apply fenced splits (a split a lease raced could not be undone). One split at a time per node;
 * a split refused or failed is not tried again for that shard before `shardSplitRetryMs`. Two
 * nodes deciding at once is harmless: the meta shard takes the first split and refuses the
 * other's stale epoch. Splits made are counted by `dkv_shard_auto_splits_total{reason}`.
 */
import { DEFAULT_STORE, type ShardDef, compareKeys } from '../cluster/index.js';
import { type Router, kvEngineOf, leaseEngineOf, metaEngineOf, ownershipEngineOf } from '../runtime/index.js';
import { shardSplitLoadWindowMs } from './config.js';
import { shardSplitLoadSampleKeyBytesMax, shardSplitLoadSampleKeys, shardSplitRetryMs, shardSplitSideMin } from './limits.js';
import { type ShardSplitDone, StoreChangeRefused, printableKey } from './store-admin.js';

/** Why a shard was split (the `reason` label of dkv_shard_splits_total). */
export type SplitReason = 'size' | 'load';

/** The thresholds: 0 turns one off. */
export interface AutoSplitSettings {
  readonly bytes: number;
  readonly qps: number;
}

/** One shard's requests over the current window, and a uniform sample of their keys. */
interface LoadWindow {
  epoch: number;
  startMs: number;
  requests: number;
  samples: Uint8Array[];
}

/** A copy of (the start of) a key for the sample. */
function sampled(key: Uint8Array): Uint8Array {
  return Uint8Array.from(key.length > shardSplitLoadSampleKeyBytesMax ? key.subarray(0, shardSplitLoadSampleKeyBytesMax) : key);
}

/** A whole window's load of one shard. */
export interface ShardLoad {
  readonly qps: number;
  readonly samples: readonly Uint8Array[];
}

/**
 * The requests this node routes to each store shard, per window, with a reservoir sample of their
 * keys (a uniform sample of `shardSplitLoadSampleKeys` whatever the rate; a sampled key is copied,
 * at most its first `shardSplitLoadSampleKeyBytesMax` bytes, so no request's buffer is kept; a cut
 * key that sorts below the shard's start, past a long start, is left out when choosing the cut).
 */
export class LoadTracker {
  private readonly windows = new Map<number, LoadWindow>();

  constructor(
    private readonly now: () => number,
    private readonly random: () => number = Math.random,
    private readonly windowMs = shardSplitLoadWindowMs,
    private readonly sampleKeys = shardSplitLoadSampleKeys,
  ) {}

  /** A request for `key` routed to `shardId`. */
  record(shardId: number, key: Uint8Array): void {
    let window = this.windows.get(shardId);
    if (window === undefined) {
      // Epoch -1: the window's shard epoch is learnt at its first roll, which starts it again.
      window = { epoch: -1, startMs: this.now(), requests: 0, samples: [] };
      this.windows.set(shardId, window);
    }
    window.requests++;
    if (window.samples.length < this.sampleKeys) window.samples.push(sampled(key));
    else {
      const slot = Math.floor(this.random() * window.requests);
      if (slot < this.sampleKeys) window.samples[slot] = sampled(key);
    }
  }

  /**
   * The load of `shardId` over its window if the window is over (a new one starts), undefined
   * otherwise. A window that began under another epoch of the shard (it split since) is thrown
   * away: its requests were for another range.
   */
  roll(shardId: number, epoch: number, nowMs: number): ShardLoad | undefined {
    const window = this.windows.get(shardId);
    if (window === undefined) return undefined;
    if (window.epoch !== epoch) {
      this.windows.set(shardId, { epoch, startMs: nowMs, requests: 0, samples: [] });
      return undefined;
    }
    const elapsed = nowMs - window.startMs;
    if (elapsed < this.windowMs) return undefined;
    this.windows.set(shardId, { epoch, startMs: nowMs, requests: 0, samples: [] });
    return { qps: (window.requests * 1000) / elapsed, samples: window.samples };
  }

  /** Forgets every shard but those in `keep` (dropped or merged away, or no longer hosted). */
  retain(keep: ReadonlySet<number>): void {
    for (const id of this.windows.keys()) if (!keep.has(id)) this.windows.delete(id);
  }

  /** Shards with a window open (for tests). */
  get size(): number {
    return this.windows.size;
  }
}

/**
 * The key that divides the sampled requests of a shard `[start, end)` most evenly: of the sampled
 * keys strictly inside the range, the one with the fewest samples below it closest to half. None
 * when no candidate leaves at least `sideMin` of the samples on each side (one hot key, or too
 * few samples inside the range).
 */
export function loadSplitKey(samples: readonly Uint8Array[], start: Uint8Array, end: Uint8Array | undefined, sideMin = shardSplitSideMin): Uint8Array | undefined {
  const inside = samples.filter((key) => compareKeys(key, start) >= 0 && (end === undefined || compareKeys(key, end) < 0)).sort(compareKeys);
  const total = inside.length;
  if (total < 2) return undefined;
  let best: { key: Uint8Array; below: number } | undefined;
  for (let i = 1; i < total; i++) {
    const key = inside[i]!;
    // Candidates are distinct keys: `below` counts every sample before the key's first copy.
    if (compareKeys(inside[i - 1]!, key) === 0 || compareKeys(key, start) === 0) continue;
    if (best === undefined || Math.abs(total - 2 * i) < Math.abs(total - 2 * best.below)) best = { key, below: i };
  }
  if (best === undefined) return undefined;
  const smaller = Math.min(best.below, total - best.below);
  return smaller >= sideMin * total ? best.key : undefined;
}

/** What one shard looks like to the splitter at a pass. */
export interface ShardFigures {
  /** This node leads the shard. */
  readonly leader: boolean;
  /** Bytes of versions the shard retains. */
  readonly sizeBytes: number;
  /** Where those bytes divide most evenly, and the share below that key (asked only of a leader past the threshold). */
  readonly sizeMiddle?: { readonly key: Uint8Array; readonly share: number };
  /** Leases the shard holds (a split would be refused). */
  readonly leases: number;
  /** The shard is being dropped. */
  readonly retired: boolean;
  /** Its load over a window that just ended, if one did. */
  readonly load?: ShardLoad;
}

/** Why a shard over a threshold is not split (logged once per shard and kind). */
export type HeldKind = 'leases' | 'size-undivided' | 'load-undivided';

/** A decision about one shard. */
export type SplitChoice =
  | { readonly split: true; readonly reason: SplitReason; readonly at: Uint8Array; readonly why: string }
  | { readonly split: false; readonly held?: HeldKind; readonly why?: string };

/** Whether to split `shard` now, and where (pure). */
export function chooseSplit(shard: Pick<ShardDef, 'start' | 'end'>, figures: ShardFigures, settings: AutoSplitSettings): SplitChoice {
  if (figures.retired) return { split: false };
  const bySize = settings.bytes > 0 && figures.leader && figures.sizeBytes >= settings.bytes;
  const byLoad = settings.qps > 0 && figures.load !== undefined && figures.load.qps >= settings.qps;
  if (!bySize && !byLoad) return { split: false };
  if (figures.leases > 0) return { split: false, held: 'leases', why: `it holds ${figures.leases} lease${figures.leases === 1 ? '' : 's'}, whose keys would span two shards` };
  if (bySize) {
    const middle = figures.sizeMiddle;
    if (middle !== undefined && Math.min(middle.share, 1 - middle.share) >= shardSplitSideMin) {
      return { split: true, reason: 'size', at: middle.key, why: `${figures.sizeBytes} bytes in use, the threshold is ${settings.bytes}` };
    }
    if (!byLoad) return { split: false, held: 'size-undivided', why: `${figures.sizeBytes} bytes in use, but no key divides them (one key, or its history, holds most of them: compact the store)` };
  }
  const load = figures.load!;
  const at = loadSplitKey(load.samples, shard.start, shard.end);
  if (at === undefined) return { split: false, held: 'load-undivided', why: `${Math.round(load.qps)} requests/s, but no key divides them (a single hot key, or one side takes under ${shardSplitSideMin * 100}% of them)` };
  return { split: true, reason: 'load', at, why: `${Math.round(load.qps)} requests/s, the threshold is ${settings.qps}` };
}

export interface AutoSplitterDeps {
  readonly router: Router;
  /** Whether every member applies fenced splits and AbortSplit (no split is made before). */
  readonly membersReady: () => boolean;
  readonly selfId: number;
  readonly settings: AutoSplitSettings;
  readonly tracker: LoadTracker;
  readonly split: (shardId: number, at: Uint8Array | undefined) => Promise<ShardSplitDone>;
  readonly log: { info(message: string): void; warn(message: string): void };
  readonly now: () => number;
  /** A split made (for the metric). */
  readonly splitDone?: (reason: SplitReason) => void;
}

/** The splitter of one node: `pass()` looks at every store shard it hosts and splits at most one. */
export class AutoSplitter {
  private running = false;
  /** Shards not to try again before this time (their split was refused or failed). */
  private readonly holdUntil = new Map<number, number>();
  /** Why each shard over a threshold was logged as not split (once per kind, until it is under both again or splits). */
  private readonly held = new Map<number, Set<HeldKind>>();

  constructor(private readonly deps: AutoSplitterDeps) {}

  /** One look at every store shard this node hosts; at most one split. Never throws. */
  async pass(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      const candidate = this.choose();
      if (candidate !== undefined) await this.splitOne(candidate.shard, candidate.choice);
    } catch (error) {
      this.deps.log.warn(`automatic split: ${error instanceof Error ? error.message : String(error)}`);
    } finally {
      this.running = false;
    }
  }

  private choose(): { shard: ShardDef; choice: SplitChoice & { split: true } } | undefined {
    const { router, tracker, settings } = this.deps;
    if (!router.hosts(router.map.metaShard) || !this.deps.membersReady()) return undefined;
    const meta = metaEngineOf(router.meta().machine());
    const map = meta.shardMap();
    const creating = meta.creatingStores();
    const busy = new Set<number>();
    for (const [child, record] of meta.splitting()) busy.add(child).add(record.parent);
    const nowMs = this.deps.now();
    const seen = new Set<number>();
    let found: { shard: ShardDef; choice: SplitChoice & { split: true } } | undefined;
    for (const shard of map.shards()) {
      if (shard.store === DEFAULT_STORE || !router.hosts(shard.id)) continue;
      seen.add(shard.id);
      // Once a split is chosen the other shards' windows go on (rolled at the next pass, over
      // their longer time): a second hot shard is not made to wait a window more.
      if (found !== undefined) continue;
      // Every other hosted shard's window rolls at each pass, so a window never outlives its epoch.
      const load = tracker.roll(shard.id, shard.epoch, nowMs);
      if (creating.has(shard.store) || busy.has(shard.id) || (this.holdUntil.get(shard.id) ?? 0) > nowMs) continue;
      const handle = router.shard(shard.id);
      const machine = handle.machine();
      const mvcc = kvEngineOf(machine).mvcc;
      const leader = handle.leader() === this.deps.selfId;
      const sizeBytes = mvcc.sizeInUseBytes;
      const sizeMiddle = settings.bytes > 0 && leader && sizeBytes >= settings.bytes ? mvcc.bytesMiddleKey() : undefined;
      const figures: ShardFigures = {
        leader,
        sizeBytes,
        ...(sizeMiddle === undefined ? {} : { sizeMiddle }),
        leases: leaseEngineOf(machine).size,
        retired: ownershipEngineOf(machine).retired !== 0,
        ...(load === undefined ? {} : { load }),
      };
      const choice = chooseSplit(shard, figures, settings);
      const held = this.held.get(shard.id);
      if (choice.split) found = { shard, choice };
      else if (choice.held === undefined) {
        // Under both thresholds (a load window not over says nothing of the load).
        if (load !== undefined || settings.qps === 0) this.held.delete(shard.id);
      } else if (held?.has(choice.held) !== true) {
        this.held.set(shard.id, (held ?? new Set()).add(choice.held));
        this.deps.log.info(`automatic split: shard ${shard.id} of store "${shard.store}" is not split: ${choice.why}`);
      }
    }
    tracker.retain(seen);
    for (const id of [...this.holdUntil.keys(), ...this.held.keys()]) {
      if (!seen.has(id)) {
        this.holdUntil.delete(id);
        this.held.delete(id);
      }
    }
    return found;
  }

  private async splitOne(shard: ShardDef, choice: SplitChoice & { split: true }): Promise<void> {
    const { log } = this.deps;
    try {
      const done = await this.deps.split(shard.id, choice.at);
      this.held.delete(shard.id);
      this.deps.splitDone?.(choice.reason);
      log.info(`automatic split: shard ${shard.id} of store "${shard.store}" split at ${printableKey(done.at)} into shards ${done.parent} and ${done.child} (${choice.reason}: ${choice.why})`);
    } catch (error) {
      this.holdUntil.set(shard.id, this.deps.now() + shardSplitRetryMs);
      // Another node's split got there first (the map moved on): nothing to report.
      if (error instanceof StoreChangeRefused && (error.code === 'bad-epoch' || error.code === 'split-in-progress')) return;
      log.warn(`automatic split: shard ${shard.id} of store "${shard.store}" (${choice.reason}: ${choice.why}) was not split: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}
