/**
 * The placement loop: on the meta shard's leader, it keeps the replicas of placed shards (stores
 * created with a replica count) on live members, and spread evenly, by starting replica moves
 * (src/engines/meta/stores.ts: MoveReplica; membership-sync.ts carries each out). At most one move
 * per look, one per shard, `placementMovesMax` under way in the cluster for re-replication, and a
 * balance move only while no other is under way (whoever started it). A shard of a store still
 * being created, or in a split, is left alone (the meta shard would refuse its move).
 *
 * - **Re-replication**: a member whose peer link has been down for `deadAfterMs` (counted by this
 *   leader; a new leader counts afresh) is dead. A shard listing a dead member moves that replica
 *   to the live voting member that hosts the fewest placed replicas (ties to the lower id), if a
 *   majority of its list is live (a group without a quorum could not take the new member; its
 *   data waits for its members to come back).
 * - A move under way to a member that died since goes to another live member instead.
 * - **Balance**: with every voting member live, when the most loaded hosts at least two placed
 *   replicas more than the least loaded, one replica moves from the first to the second (of the
 *   lowest-id shard that lists the first and not the second). Each move narrows the gap, so the
 *   loads end at most one apart and the loop stops moving.
 *
 * - **Leaderships** (with `rebalance`, every voter live, no replica move to start or under way,
 *   every `leaderBalancePasses` looks): the loop asks every voter which data shards it leads;
 *   when the member leading the most leads at least two more than a voter of one of its shards,
 *   that shard's leadership is handed to the voter of it leading the fewest (one per look, and a
 *   shard handed over rests for `leaderTransferRestLooks` looks). Each hand-over narrows the gap,
 *   so it stops. Only the shards of named stores are handed over: the default store's leader (the
 *   one etcd's tools show) moves only as Raft moves it, though it counts; the meta shard neither
 *   counts nor moves.
 *
 * `nextPlacementMove` and `nextLeaderTransfer` are pure (functions of the map, the moves under
 * way, the voters and who is dead or live, or leads what), so their properties are tested alone;
 * `PlacementLoop` adds the clock and the I/O.
 */
import { DEFAULT_STORE, type ShardMap } from '../cluster/index.js';

export interface PlacementMove {
  readonly shard: number;
  readonly from: number;
  readonly to: number;
  /** `redirect`: a move under way whose target died, sent to another member. */
  readonly why: 're-replicate' | 'redirect' | 'balance';
}

/** Replica moves under way in the cluster past which the loop starts no re-replication (balance waits for none). */
export const placementMovesMax = 4;

/** How many placed replicas each of `voters` hosts in `map`, a move under way counting at its target too. */
export function placedLoads(map: ShardMap, voters: readonly number[], moving: ReadonlyMap<number, { readonly to: number }> = new Map()): Map<number, number> {
  const load = new Map<number, number>(voters.map((id) => [id, 0]));
  const count = (id: number): void => {
    if (load.has(id)) load.set(id, load.get(id)! + 1);
  };
  for (const shard of map.shards()) for (const id of shard.replicas) count(id);
  for (const move of moving.values()) count(move.to);
  return load;
}

/**
 * The next replica move, if any (see the header). `voters`: the cluster's voting members;
 * `dead(id)`: down for longer than the grace period; `live(id)`: reachable now (this node, or a
 * live peer link). While a move is under way, only its replacement when its target died.
 */
export function nextPlacementMove(
  map: ShardMap,
  moving: ReadonlyMap<number, { readonly from: number; readonly to: number }>,
  voters: readonly number[],
  dead: (id: number) => boolean,
  live: (id: number) => boolean,
  /** Shards that cannot move now (a store still creating, a split not finished): the meta shard would refuse them. */
  fixed: ReadonlySet<number> = new Set(),
): PlacementMove | undefined {
  const placed = map.shards().filter((shard) => shard.replicas.length > 0 && !fixed.has(shard.id));
  if (placed.length === 0) return undefined;
  const load = placedLoads(map, voters, moving);
  const byLoad = (candidates: readonly number[]): number[] => [...candidates].sort((a, b) => load.get(a)! - load.get(b)! || a - b);
  const targets = voters.filter((id) => live(id) && !dead(id));
  // A move to a member that died since would never finish: it is sent elsewhere (a move from the
  // same member to another replaces it).
  for (const [id, move] of moving) {
    const shard = map.shard(id);
    if (shard === undefined || !dead(move.to)) continue;
    const to = byLoad(targets.filter((t) => !shard.replicas.includes(t) && t !== move.to))[0];
    if (to !== undefined) return { shard: id, from: move.from, to, why: 'redirect' };
  }
  // A few moves at once: one that cannot finish (its shard lost its quorum meanwhile) does not
  // keep every other shard under-replicated.
  if (moving.size >= placementMovesMax) return undefined;
  for (const shard of placed) {
    if (moving.has(shard.id)) continue;
    const gone = shard.replicas.find((id) => dead(id));
    if (gone === undefined) continue;
    const alive = shard.replicas.filter((id) => live(id) && !dead(id)).length;
    if (2 * alive <= shard.replicas.length) continue;
    const to = byLoad(targets.filter((id) => !shard.replicas.includes(id)))[0];
    if (to !== undefined) return { shard: shard.id, from: gone, to, why: 're-replicate' };
  }
  // Balance one move at a time, with nothing else under way.
  if (moving.size > 0 || voters.length < 2 || !voters.every((id) => live(id) && !dead(id))) return undefined;
  const ordered = byLoad(voters);
  const least = ordered[0]!;
  // The most loaded, ties to the higher id (so a tie never picks the least loaded member itself).
  const most = ordered[ordered.length - 1]!;
  if (load.get(most)! - load.get(least)! < 2) return undefined;
  const shard = placed.find((s) => s.replicas.includes(most) && !s.replicas.includes(least));
  return shard === undefined ? undefined : { shard: shard.id, from: most, to: least, why: 'balance' };
}

/** A leadership to hand over for balance. */
export interface LeaderTransfer {
  readonly shard: number;
  readonly from: number;
  readonly to: number;
}

/** Looks between two leadership balancing looks (each a placement look, one election timeout apart). */
export const leaderBalancePasses = 3;
/**
 * Balancing looks during which a shard whose hand-over was asked for is left alone: one that did
 * not happen (its target fell behind, say) is not asked for again at once.
 */
export const leaderTransferRestLooks = 4;

/**
 * The next leadership to hand over for balance, if any (see the header). `leading`: the data
 * shards each voter leads (a voter missing leads none); `fixed`: shards not to touch now.
 */
export function nextLeaderTransfer(
  map: ShardMap,
  voters: readonly number[],
  leading: ReadonlyMap<number, readonly number[]>,
  fixed: ReadonlySet<number> = new Set(),
): LeaderTransfer | undefined {
  // Only shards of the map count (a dropped store's groups may linger until they are removed).
  const led = new Map([...leading].map(([id, shards]) => [id, shards.filter((shard) => map.shard(shard) !== undefined)]));
  const count = (id: number): number => led.get(id)?.length ?? 0;
  // Most loaded first (ties to the lower id), so the first hand-over found comes from it.
  const byCountDesc = [...voters].sort((a, b) => count(b) - count(a) || a - b);
  for (const from of byCountDesc) {
    const shards = [...(led.get(from) ?? [])].sort((a, b) => a - b);
    for (const id of shards) {
      const shard = map.shard(id);
      if (shard === undefined || shard.store === DEFAULT_STORE || fixed.has(id)) continue;
      const members = shard.replicas.length > 0 ? shard.replicas : voters;
      const to = members
        .filter((m) => m !== from && voters.includes(m) && count(m) <= count(from) - 2)
        .sort((a, b) => count(a) - count(b) || a - b)[0];
      if (to !== undefined) return { shard: id, from, to };
    }
  }
  return undefined;
}

/** What the loop needs of its node. */
export interface PlacementHost {
  /** Whether this node leads the meta shard now. */
  leadsMeta(): boolean;
  /** Whether every member applies replica moves (none is proposed before). */
  movesSupported(): boolean;
  readonly self: number;
  map(): ShardMap;
  moving(): ReadonlyMap<number, { readonly from: number; readonly to: number }>;
  /** Shards whose store is still being created, or that are in a split (as parent or child). */
  unmovable(): ReadonlySet<number>;
  /** The cluster's voting members now. */
  voters(): readonly number[];
  /** The members with a live peer link now. */
  connected(): readonly number[];
  /** Starts a move (settles once the meta shard recorded it, or fails). */
  move(move: PlacementMove): Promise<void>;
  /** How long a member's link must be down before its replicas move elsewhere (0: never). */
  readonly deadAfterMs: number;
  /** Whether replicas (and leaderships) are moved for balance. */
  readonly rebalance: boolean;
  /** The data shards each voter leads, asked of every one (undefined when one does not answer). */
  leading(voters: readonly number[]): Promise<ReadonlyMap<number, readonly number[]> | undefined>;
  /** Hands a leadership over (asks its leader; settles once it started). */
  transferLeader(transfer: LeaderTransfer): Promise<void>;
  now(): number;
  readonly log: { info(message: string): void; warn(message: string): void };
}

export class PlacementLoop {
  /** Per member, since when this leader has seen no live link to it. */
  private readonly downSince = new Map<number, number>();
  private running = false;
  private lastFailure = '';
  /** Looks since the last leadership balancing look. */
  private passesSinceLeaderLook = 0;
  /** Balancing looks so far, and the look at which each shard's hand-over was last asked for. */
  private leaderLooks = 0;
  private readonly handedOverAt = new Map<number, number>();

  constructor(private readonly host: PlacementHost) {}

  /** One look (called on a timer): at most one move started. */
  async tick(): Promise<void> {
    if (this.running) return;
    if (!this.host.leadsMeta()) {
      // A new leader counts afresh: it has not watched the links.
      this.downSince.clear();
      return;
    }
    this.running = true;
    try {
      const nowMs = this.host.now();
      const voters = this.host.voters();
      const connected = new Set(this.host.connected());
      const live = (id: number): boolean => id === this.host.self || connected.has(id);
      for (const id of voters) {
        if (live(id)) this.downSince.delete(id);
        else if (!this.downSince.has(id)) this.downSince.set(id, nowMs);
      }
      for (const id of this.downSince.keys()) if (!voters.includes(id)) this.downSince.delete(id);
      if (!this.host.movesSupported()) return;
      const deadAfterMs = this.host.deadAfterMs;
      const dead = (id: number): boolean => deadAfterMs > 0 && this.downSince.has(id) && nowMs - this.downSince.get(id)! >= deadAfterMs;
      const move = nextPlacementMove(this.host.map(), this.host.moving(), voters, dead, live, this.host.unmovable());
      if (move === undefined || (move.why === 'balance' && !this.host.rebalance)) {
        if (move === undefined && this.host.rebalance && this.host.moving().size === 0 && voters.every(live)) await this.balanceLeaders(voters);
        return;
      }
      const hex = (id: number): string => id.toString(16);
      const downFor = (id: number): number => Math.round((nowMs - (this.downSince.get(id) ?? nowMs)) / 1000);
      this.host.log.info(
        move.why === 're-replicate'
          ? `placement: member ${hex(move.from)} has been unreachable for ${downFor(move.from)} s; moving shard ${move.shard}'s replica to ${hex(move.to)}`
          : move.why === 'redirect'
            ? `placement: shard ${move.shard}'s replica was moving from ${hex(move.from)} to a member unreachable for ${downFor(this.host.moving().get(move.shard)?.to ?? move.to)} s; moving it to ${hex(move.to)} instead`
            : `placement: moving shard ${move.shard}'s replica from ${hex(move.from)} to ${hex(move.to)} to even out the replicas per member`,
      );
      await this.host.move(move);
      this.lastFailure = '';
    } catch (error) {
      const reason = `placement: ${error instanceof Error ? error.message : String(error)}`;
      if (reason !== this.lastFailure) this.host.log.warn(`${reason} (retrying)`);
      this.lastFailure = reason;
    } finally {
      this.running = false;
    }
  }

  private async balanceLeaders(voters: readonly number[]): Promise<void> {
    if (++this.passesSinceLeaderLook < leaderBalancePasses) return;
    this.passesSinceLeaderLook = 0;
    const look = ++this.leaderLooks;
    const leading = await this.host.leading(voters);
    if (leading === undefined) return;
    const resting = new Set(this.host.unmovable());
    for (const [shard, at] of this.handedOverAt) {
      if (look - at < leaderTransferRestLooks) resting.add(shard);
      else this.handedOverAt.delete(shard);
    }
    const transfer = nextLeaderTransfer(this.host.map(), voters, leading, resting);
    if (transfer === undefined) return;
    this.handedOverAt.set(transfer.shard, look);
    const hex = (id: number): string => id.toString(16);
    const led = (id: number): number => leading.get(id)?.length ?? 0;
    this.host.log.info(
      `placement: handing shard ${transfer.shard}'s leadership from ${hex(transfer.from)} (leads ${led(transfer.from)} shards) to ${hex(transfer.to)} (leads ${led(transfer.to)}) to even out the leaderships per member`,
    );
    await this.host.transferLeader(transfer);
  }
}
