/**
 * The Raft groups of mounted stores on this node, kept in step with the meta shard's map:
 *
 * - A shard of the map this member hosts a replica of (every shard while replica lists are empty:
 *   every member hosts every shard; a placed shard whose list names it, or whose replica move
 *   under way moves to it) and does not host yet is added. Its log is bootstrapped first
 *   with its founders' configuration when this member is one of them and holds nothing of it
 *   (every founder writes the same entries, so their logs agree); any other member starts it
 *   empty and gets it from the group's leader (a member that joined after the mount).
 * - A shard still **splitting** (a split's child not finished: src/engines/meta/stores.ts) is
 *   neither bootstrapped nor added: the parent's Split makes its group on every replica of the
 *   parent that applies it, from the parent's data. Once the split is finished the rule above
 *   applies: a member without it starts it empty (a child has no founders record, so nobody
 *   writes a founders log for it, which would be a history the group never had) and gets a
 *   snapshot from its leader.
 * - A hosted group of a shard the map places on other members only (a finished replica move took
 *   this member out of its list, or a move to it was replaced) is removed and its storage dropped
 *   once this member has left the group (`leftGroup`: it stored nothing of it, or the group's
 *   leader's configuration lacks it). Before then it still votes there, and the group may need it for a quorum; passes run on a timer too, as nothing
 *   this member applies tells it when the leader removed it.
 * - A hosted group whose shard has left the map is removed and its storage dropped, but only
 *   when the map has given its id out (`highestShardId`): ids are never reused, so a shard absent
 *   from such a map was dropped for good. While a restart replays the meta shard from an older
 *   state, the map has not given the id out yet and the group is kept.
 *
 * The meta and default-store shards are never touched here. Passes run one at a time; a request
 * for a pass while one runs makes one more afterwards.
 */
import { type ConfChange, type Entry, encodeConfChange } from '../../raft/index.js';
import type { ShardMap } from '../cluster/index.js';
import type { Founders, SplittingShard } from '../engines/meta/index.js';
import { wrapConfContext } from '../runtime/index.js';

export interface StoreGroupsHost {
  readonly memberId: number;
  /**
   * The map, founders and unfinished splits' children as this node's meta shard applied them
   * (undefined: no meta shard yet); the meta engine itself is one.
   */
  meta(): {
    shardMap(): ShardMap;
    founders(shard: number): Founders | undefined;
    splitting(): ReadonlyMap<number, SplittingShard>;
    moving(): ReadonlyMap<number, { readonly from: number; readonly to: number }>;
  } | undefined;
  /** Shards never added or removed here (the meta shard, the default store's). */
  readonly fixed: readonly number[];
  hosted(): number[];
  /** Whether this node's storage holds anything of `shard` (its log or a snapshot). */
  stored(shard: number): boolean;
  /** Writes a new group's first entries (durably). */
  bootstrap(shard: number, entries: Entry[], hardState: { term: number; vote: number; commit: number }): Promise<void>;
  addGroup(shard: number): void;
  /** Stops a hosted group: `moved` when this member's replica moved away, `dropped` when its store was dropped. */
  removeGroup(shard: number, why: 'moved' | 'dropped'): void;
  /** Deletes a removed group's storage (durably). */
  dropStorage(shard: number): Promise<void>;
  /**
   * Whether this member has left `shard`'s group: it stored nothing of it (never joined), or the
   * group's leader's configuration, applied at least as far as this member's, lacks it (false
   * when that cannot be known now).
   */
  leftGroup(shard: number): Promise<boolean>;
  readonly log: { info(message: string): void; warn(message: string): void };
}

/** A founded group's first entries: one configuration change per founder, committed from the start. */
export function foundersLog(founders: Founders): { entries: Entry[]; hardState: { term: number; vote: number; commit: number } } {
  const changes = [...founders.voters.map((id) => ({ type: 'add-voter' as const, nodeId: id })), ...founders.learners.map((id) => ({ type: 'add-learner' as const, nodeId: id }))];
  const entries: Entry[] = changes.map((single, i) => {
    const change: ConfChange = { transition: 'auto', changes: [single], context: wrapConfContext(0, 0, new Uint8Array(0)) };
    return { index: i + 1, term: 1, type: 'conf-change', data: encodeConfChange(change) };
  });
  return { entries, hardState: { term: 1, vote: 0, commit: entries.length } };
}

export class StoreGroups {
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  constructor(private readonly host: StoreGroupsHost) {}

  /** Brings the hosted groups in step with the map (now, or after the pass that runs). */
  reconcile(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.running !== undefined) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          try {
            await this.pass();
          } catch (error) {
            // A runtime stopping, storage that failed (the node stops on its own then): the next pass tries again.
            if (!this.stopped) this.host.log.warn(`store groups: ${error instanceof Error ? error.message : String(error)}`);
          }
        } while (this.again && !this.stopped);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  /** No pass starts after this; resolves once the running one ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.running?.catch(() => {});
  }

  private async pass(): Promise<void> {
    const meta = this.host.meta();
    if (meta === undefined) return;
    // Read in one turn, so the map and the splits agree.
    const map = meta.shardMap();
    const splitting = meta.splitting();
    const moving = meta.moving();
    const fixed = new Set(this.host.fixed);
    const self = this.host.memberId;
    // A member a replica move names hosts the shard from the start (its group adds it as a learner).
    const listed = (shard: { readonly id: number; readonly replicas: readonly number[] }): boolean =>
      shard.replicas.length === 0 || shard.replicas.includes(self) || moving.get(shard.id)?.to === self;
    // A set, not hosted().includes per shard: a map of 1,000 shards made each pass O(shards²).
    let hosted = new Set(this.host.hosted());
    for (const shard of map.shards()) {
      if (this.stopped) return;
      if (fixed.has(shard.id) || !listed(shard)) continue;
      if (hosted.has(shard.id) || splitting.has(shard.id)) continue;
      if (!this.host.stored(shard.id)) {
        const founders = meta.founders(shard.id);
        // Never for a member only a move names (its group has moved on from the founders' configuration).
        const inList = shard.replicas.length === 0 || shard.replicas.includes(self);
        if (inList && founders !== undefined && (founders.voters.includes(self) || founders.learners.includes(self))) {
          const { entries, hardState } = foundersLog(founders);
          await this.host.bootstrap(shard.id, entries, hardState);
          if (this.stopped) return;
          hosted = new Set(this.host.hosted());
        }
      }
      // The map may have moved on while the bootstrap was written: the next pass sees it.
      if (!hosted.has(shard.id)) {
        this.host.addGroup(shard.id);
        hosted.add(shard.id);
        this.host.log.info(`shard ${shard.id} of store "${shard.store}": group started here`);
      }
    }
    const current = meta.shardMap();
    for (const id of this.host.hosted()) {
      if (this.stopped) return;
      if (fixed.has(id)) continue;
      const shard = current.shard(id);
      if (shard !== undefined && !listed(shard)) {
        // Moved away: kept until out of the group (the map may list it again meanwhile).
        if (!(await this.host.leftGroup(id)) || this.stopped) continue;
        const now = meta.shardMap().shard(id);
        if (now === undefined || now.replicas.length === 0 || now.replicas.includes(self) || meta.moving().get(id)?.to === self) continue;
        this.host.removeGroup(id, 'moved');
        await this.host.dropStorage(id);
        this.host.log.info(`shard ${id}: this member's replica moved away and left the group; group removed and its storage deleted`);
        continue;
      }
      if (shard !== undefined || id > current.highestShardId) continue;
      this.host.removeGroup(id, 'dropped');
      await this.host.dropStorage(id);
      this.host.log.info(`shard ${id}: its store was dropped; group removed and its storage deleted`);
    }
  }
}
