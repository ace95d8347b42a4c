/**
 * The client's routing table: which shard holds a key and which member leads it, made from a
 * ShardList answer. Pure (no I/O, no clock), so its lookups are property-tested against the
 * server's shard map.
 *
 * A store's shards tile its prefix and mounts never overlap, so the store shards are disjoint; the
 * default store's shards tile the whole keyspace, and a key falls to them only when no store shard
 * holds it (a default-store shard whose range covers a mount does not own the mount's keys).
 */
import type { ShardInfo } from './shards.js';

/** The default store's name in ShardList (it owns every key no store claims). */
export const defaultStoreName = 'default';

/** One data shard as routing needs it. */
export interface RoutedShard {
  readonly id: number;
  readonly store: string;
  readonly start: Buffer;
  readonly end: Buffer | undefined;
  readonly epoch: number;
  /** As the answering member saw it (0n: unknown). */
  readonly leader: bigint;
  readonly raftTerm: number;
  /** The members the shard is placed on (empty: every member). */
  readonly replicas: readonly bigint[];
}

/** The shards of one tiling, sorted by start, with their starts for the binary search. */
class Tiling {
  private readonly shards: RoutedShard[];

  constructor(shards: RoutedShard[]) {
    this.shards = shards.sort((a, b) => Buffer.compare(a.start, b.start));
  }

  /** The shard whose [start, end) holds `key`, if any. */
  find(key: Uint8Array): RoutedShard | undefined {
    let lo = 0;
    let hi = this.shards.length - 1;
    let at = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (Buffer.compare(this.shards[mid]!.start, key) <= 0) {
        at = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    if (at < 0) return undefined;
    const shard = this.shards[at]!;
    return shard.end === undefined || Buffer.compare(key, shard.end) < 0 ? shard : undefined;
  }

  get size(): number {
    return this.shards.length;
  }
}

export class ShardRoutes {
  private readonly stores: Tiling;
  private readonly defaults: Tiling;
  private readonly byId: ReadonlyMap<number, RoutedShard>;

  private constructor(shards: readonly RoutedShard[]) {
    this.stores = new Tiling(shards.filter((s) => s.store !== defaultStoreName));
    this.defaults = new Tiling(shards.filter((s) => s.store === defaultStoreName));
    this.byId = new Map(shards.map((s) => [s.id, s]));
  }

  /** From ShardList's shards; the meta shard (and any shard of no store) is left out: it holds no client key. */
  static of(shards: readonly ShardInfo[]): ShardRoutes {
    const data = shards.filter((s) => s.store !== '' && !s.store.startsWith('('));
    return new ShardRoutes(data.map(({ id, store, start, end, epoch, leader, raftTerm, replicas }) => ({ id, store, start, end, epoch, leader, raftTerm, replicas: replicas ?? [] })));
  }

  /** The highest Raft term the default store's shards were listed with (0: none known). */
  get defaultTerm(): number {
    let term = 0;
    for (const shard of this.byId.values()) if (shard.store === defaultStoreName) term = Math.max(term, shard.raftTerm);
    return term;
  }

  /** Whether any store besides the default one exists: only then does routing by key matter. */
  get hasStores(): boolean {
    return this.stores.size > 0;
  }

  /** The shard that holds `key`: a store's shard when a mount claims it, else the default store's. */
  shardOf(key: Uint8Array): RoutedShard | undefined {
    return this.stores.find(key) ?? this.defaults.find(key);
  }

  shard(id: number): RoutedShard | undefined {
    return this.byId.get(id);
  }
}
