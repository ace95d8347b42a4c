/**
 * The store of the `shards` fault (DKV only): the run's keys live in a store of their own, placed
 * on every member but one, and the fault changes its shards while the clients run:
 *
 * - a **move** takes one replica of one of the store's shards (its leader's when asked) to the
 *   member without one, through `dkv.v1.Admin.ShardMove`;
 * - a **split** (when the run allows it: the register workload, whose checks need no single
 *   revision sequence) cuts one of its shards at the middle one of the run's keys inside it,
 *   through `ShardSplit` (asked again at the same key, as the server's refusal or a lost answer
 *   allow, up to `splitAttemptsMax` times); every second fault splits, until the store has
 *   `runStoreShardsMax` shards.
 *
 * Neither is undone: the next fault may find a move or a split still under way (the server's
 * repair finishes a split left half way). At the end the store's committed history is read shard
 * by shard (each shard has revisions of its own; a Watch across shards is refused), and every
 * shard's replicas are compared by their HashKV once they applied the same index.
 */
import { EtcdChannel, longsAsStrings } from '../../src/client/index.js';
import type { HistoryRevision, WatchEvent, WatchHistory } from '../check/index.js';
import type { ReplicaResults } from '../report/index.js';
import type { RealCluster } from './cluster.js';
import { type KeyRange, prefixRange, readCommittedHistory } from './committed.js';

/** The store's name. */
export const runStoreName = 'jepsen';
/** Deadline of a ShardMove call (it answers once the move is done, or near its deadline), and of the calls a fault makes. */
export const shardMoveCallTimeoutMs = 8000;
/** The `shards` fault splits no more once the store has this many shards. */
export const runStoreShardsMax = 3;
/** ShardSplit calls one split may make (each again at the same key, which finishes a split stopped half way). */
export const splitAttemptsMax = 3;
/** Between two of those calls: a move of the shard under way (the meta shard refuses its split meanwhile) takes about this long. */
const splitRetryMs = 2000;
/** After the run: how long every shard's replicas may take to reach one applied index. */
export const replicaSettleMs = 20_000;
const replicaSettlePollMs = 200;
/** Deadline of one ShardStatus call. */
const shardStatusTimeoutMs = 2000;
/** Problems listed by the replica check (the counts are always complete). */
export const replicaProblemsListedMax = 20;

/** What the run store needs of the cluster. */
export type RunStoreCluster = Pick<RealCluster, 'members' | 'endpoint' | 'running' | 'isPaused' | 'leader' | 'waitForLeader' | 'memberNames'>;

/** One shard of the store as a member's map lists it. */
export interface RunStoreShard {
  readonly id: number;
  readonly start: Buffer;
  /** undefined: up to the store's end. */
  readonly end: Buffer | undefined;
  /** Member ids (exact decimal strings). */
  readonly replicas: readonly string[];
}

interface WireShard {
  id: string;
  store?: string;
  start?: Uint8Array;
  end?: Uint8Array;
  replicas?: string[];
  leader?: string;
  raft_term?: string;
}

/** Every shard's replicas compared after the run. */
export type ReplicaCheck = ReplicaResults;

/** The part of `range` that `shard` owns (the store's shards lie inside its prefix). */
export function shardKeyRange(shard: Pick<RunStoreShard, 'start' | 'end'>, store: KeyRange): KeyRange {
  const key = Buffer.compare(shard.start, store.key) > 0 ? shard.start : store.key;
  const rangeEnd = shard.end !== undefined && shard.end.length > 0 && Buffer.compare(shard.end, store.rangeEnd) < 0 ? shard.end : store.rangeEnd;
  return { key: Buffer.from(key), rangeEnd: Buffer.from(rangeEnd) };
}

/**
 * One history of the shards' histories: the events of each revision number, whichever shard made
 * them (each shard counts its own revisions, so one number may name a change in several shards).
 * A write is looked for at its revision among the events of its own key, so merging loses nothing.
 */
export function mergeShardHistories(histories: readonly WatchHistory[]): WatchHistory {
  const byRevision = new Map<number, WatchEvent[]>();
  let head = 1;
  for (const history of histories) {
    head = Math.max(head, history.headRevision ?? history.revisions.at(-1)?.revision ?? 1);
    for (const { revision, events } of history.revisions) {
      const list = byRevision.get(revision) ?? [];
      list.push(...events);
      byRevision.set(revision, list);
    }
  }
  const revisions: HistoryRevision[] = [...byRevision.entries()].sort(([a], [b]) => a - b).map(([revision, events]) => ({ revision, events }));
  return { revisions, headRevision: head };
}

/** The middle one of `keys` (sorted) inside `shard`, if it holds two or more: a key strictly inside it. */
export function splitPoint(shard: Pick<RunStoreShard, 'start' | 'end'>, keys: readonly Buffer[]): Buffer | undefined {
  const owned = keys.filter((k) => Buffer.compare(k, shard.start) >= 0 && (shard.end === undefined || shard.end.length === 0 || Buffer.compare(k, shard.end) < 0));
  if (owned.length < 2) return undefined;
  // The upper middle of the keys it owns (distinct, sorted): above its start, and both halves keep one.
  return owned[Math.floor(owned.length / 2)];
}

export class RunStore {
  /** Faults asked of the store so far. */
  private faults = 0;

  private constructor(
    private readonly cluster: RunStoreCluster,
    /** The store's keys. */
    readonly range: KeyRange,
    /** The run's keys the fault may split the store's shards at (none: it only moves replicas). */
    private readonly splitKeys: readonly Buffer[],
  ) {}

  /**
   * Mounts `prefix` on a store of one shard placed on `replicas` members. `splitKeys` (the run's
   * keys) are where the fault may split its shards; empty: it only moves replicas.
   */
  static async create(cluster: RunStoreCluster, prefix: Uint8Array, replicas: number, splitKeys: readonly Uint8Array[]): Promise<{ store: RunStore; shard: number }> {
    const store = new RunStore(cluster, prefixRange(prefix), splitKeys.map((k) => Buffer.from(k)).sort(Buffer.compare));
    const via = await cluster.waitForLeader(shardMoveCallTimeoutMs * 4);
    const shard = await store.withChannel(via, async (admin) => {
      const created = (await admin.call('dkv.v1.Admin', 'StoreCreate', { name: runStoreName, prefix, shards: 1, replicas })) as { shard_ids?: string[] };
      const id = Number(created.shard_ids?.[0]);
      if (!Number.isSafeInteger(id) || id <= 0) throw new Error(`StoreCreate answered no shard (${JSON.stringify(created)})`);
      return id;
    });
    return { store, shard };
  }

  /** Running, unpaused members. */
  private live(): string[] {
    return this.cluster.members.map((m) => m.name).filter((name) => this.cluster.running(name) && !this.cluster.isPaused(name));
  }

  private async withChannel<T>(name: string, use: (channel: EtcdChannel) => Promise<T>, timeoutMs = shardMoveCallTimeoutMs): Promise<T> {
    const channel = new EtcdChannel(this.cluster.endpoint(name), { decode: longsAsStrings, callTimeoutMs: timeoutMs });
    try {
      return await use(channel);
    } finally {
      channel.close();
    }
  }

  /** The store's shards as `channel`'s member lists them (with the leader and term it sees). */
  private static async listed(channel: EtcdChannel): Promise<WireShard[]> {
    const answer = (await channel.call('dkv.v1.Admin', 'ShardList', {})) as { shards?: WireShard[] };
    return (answer.shards ?? []).filter((s) => s.store === runStoreName);
  }

  /**
   * Member names by id and the store's shards as `admin`'s member lists them, each with the
   * leader named in the highest term by the running members that host one of its replicas (only
   * those know a shard's leader).
   */
  private async view(admin: EtcdChannel): Promise<{ names: Map<string, string>; shards: Array<RunStoreShard & { leader: string }> }> {
    const names = await this.cluster.memberNames(admin);
    const shards = (await RunStore.listed(admin)).map((s) => ({
      id: Number(s.id),
      start: Buffer.from(s.start ?? []),
      end: s.end === undefined ? undefined : Buffer.from(s.end),
      replicas: s.replicas ?? [],
      leader: '0',
      term: -1,
    }));
    const hosts = new Set(shards.flatMap((s) => s.replicas));
    for (const [id, name] of names) {
      if (!hosts.has(id) || !this.live().includes(name)) continue;
      try {
        const seen = await this.withChannel(name, (channel) => RunStore.listed(channel), shardStatusTimeoutMs);
        for (const shard of shards) {
          const there = seen.find((s) => Number(s.id) === shard.id);
          if (!shard.replicas.includes(id) || there === undefined || (there.leader ?? '0') === '0') continue;
          const term = Number(there.raft_term ?? 0);
          if (term > shard.term) Object.assign(shard, { leader: there.leader!, term });
        }
      } catch {
        // Not answering: another replica may.
      }
    }
    return { names, shards: shards.sort((a, b) => a.id - b.id) };
  }

  /** The fault: a split every second time when splits are allowed and the store may have more shards, a move otherwise. Returns what happened. */
  async fault(pick: number, leader: boolean): Promise<string> {
    this.faults++;
    const split = this.splitKeys.length > 0 && this.faults % 2 === 0;
    const via = (await this.cluster.leader()) ?? this.live()[0];
    if (via === undefined) return 'shards: skipped, no member runs';
    try {
      return await this.withChannel(via, async (admin) => {
        const view = await this.view(admin);
        if (view.shards.length === 0) return 'shards: skipped, the store lists no shard';
        if (split && view.shards.length < runStoreShardsMax) {
          // A shard holding two of the run's keys or more (the split key is never its first key).
          const splittable = view.shards.filter((shard) => splitPoint(shard, this.splitKeys) !== undefined);
          if (splittable.length > 0) return this.split(admin, splittable[pick % splittable.length]!);
        }
        return this.move(admin, view, pick, leader);
      });
    } catch (error) {
      // The shard list could not be read: nothing was asked.
      return `shards: failed before asking anything (${(error as Error).message})`;
    }
  }

  private async split(admin: EtcdChannel, shard: RunStoreShard): Promise<string> {
    const at = splitPoint(shard, this.splitKeys)!;
    const what = `split shard ${shard.id} at ${at.toString('latin1')}`;
    let failure = '';
    for (let attempt = 1; attempt <= splitAttemptsMax; attempt++) {
      try {
        const done = (await admin.call('dkv.v1.Admin', 'ShardSplit', { shard_id: shard.id, at })) as { child?: { id?: string } };
        return `${what} into shard ${done.child?.id ?? '?'}: done${attempt > 1 ? ` (attempt ${attempt})` : ''}`;
      } catch (error) {
        failure = (error as Error).message;
      }
      if (attempt < splitAttemptsMax) await new Promise((resolve) => setTimeout(resolve, splitRetryMs));
    }
    return `${what}: ${failure} (${splitAttemptsMax} attempts)`;
  }

  private async move(admin: EtcdChannel, view: { names: Map<string, string>; shards: Array<RunStoreShard & { leader: string }> }, pick: number, leader: boolean): Promise<string> {
    // The shard from bits of `pick` the replica choices below do not use first.
    const shard = view.shards[Math.floor(pick / 7) % view.shards.length]!;
    const spare = [...view.names.keys()].filter((id) => !shard.replicas.includes(id));
    if (shard.replicas.length === 0 || spare.length === 0) return `move shard ${shard.id}: skipped, no replica or no spare member`;
    const from = leader && shard.replicas.includes(shard.leader) ? shard.leader : shard.replicas[pick % shard.replicas.length]!;
    const to = spare[pick % spare.length]!;
    const what = `move shard ${shard.id}'s replica from ${view.names.get(from) ?? from}${from === shard.leader ? ' (its leader)' : ''} to ${view.names.get(to) ?? to}`;
    try {
      const moved = (await admin.call('dkv.v1.Admin', 'ShardMove', { shard_id: shard.id, from_member: from, to_member: to })) as { done?: boolean };
      return `${what}: ${moved.done === true ? 'done' : 'under way'}`;
    } catch (error) {
      return `${what}: ${(error as Error).message}`;
    }
  }

  /** The store's shards (as the leader's map lists them) with the running members hosting each, through a member that runs. */
  private async hosted(timeoutMs: number): Promise<Array<{ shard: RunStoreShard; hosts: string[] }>> {
    const via = await this.cluster.waitForLeader(timeoutMs);
    return this.withChannel(via, async (admin) => {
      const { names, shards } = await this.view(admin);
      return shards.map((shard) => ({ shard, hosts: shard.replicas.map((id) => names.get(id)).filter((name): name is string => name !== undefined && this.live().includes(name)) }));
    });
  }

  /**
   * The store's committed history, read shard by shard from a running replica of each and merged
   * (`mergeShardHistories`).
   */
  async readHistory(timeoutMs: number, read: typeof readCommittedHistory = readCommittedHistory): Promise<WatchHistory> {
    const histories: WatchHistory[] = [];
    for (const { shard, hosts } of await this.hosted(timeoutMs)) {
      if (hosts.length === 0) throw new Error(`shard ${shard.id} of store ${runStoreName} has no running replica to read its history from`);
      // A replica the map lists may not have made its group yet (it refuses the Watch): the next one.
      let failure: unknown;
      let history: WatchHistory | undefined;
      for (const reader of hosts) {
        try {
          history = await read(this.cluster.endpoint(reader), timeoutMs, undefined, shardKeyRange(shard, this.range));
          break;
        } catch (error) {
          failure = error;
        }
      }
      if (history === undefined) throw new Error(`shard ${shard.id}: no replica gave its history (${hosts.join(', ')}): ${(failure as Error).message}`);
      histories.push(history);
    }
    return mergeShardHistories(histories);
  }

  /**
   * Compares every shard's running replicas: each is asked for its HashKV (ShardStatus with
   * `hash_kv`) until all answer at one applied index (the clients have stopped), then the hashes
   * must be equal. A shard whose replicas do not settle within `settleMs` is counted unsettled.
   */
  async compareReplicas(settleMs = replicaSettleMs): Promise<ReplicaCheck> {
    const deadline = Date.now() + settleMs;
    const ids = (await this.hosted(settleMs)).map(({ shard }) => shard.id);
    let compared = 0;
    let diverged = 0;
    let unsettled = 0;
    const problems: string[] = [];
    const note = (problem: string): void => {
      if (problems.length < replicaProblemsListedMax) problems.push(problem);
    };
    for (const id of ids) {
      let last: Array<{ name: string; applied: number; hash: number } | undefined> = [];
      let hosts: string[] = [];
      for (;;) {
        // The hosts again each time: a move under way may finish meanwhile (its old replica goes).
        hosts = (await this.hosted(settleMs).catch(() => [])).find(({ shard }) => shard.id === id)?.hosts ?? [];
        last = await Promise.all(hosts.map((name) => this.replicaHash(name, id)));
        const answered = last.filter((s) => s !== undefined);
        if (hosts.length > 0 && answered.length === hosts.length && new Set(answered.map((s) => s.applied)).size === 1) break;
        if (Date.now() > deadline) break;
        await new Promise((resolve) => setTimeout(resolve, replicaSettlePollMs));
      }
      const answered = last.filter((s) => s !== undefined);
      const describe = (): string => last.map((s, i) => (s === undefined ? `${hosts[i]}=no answer` : `${s.name}=${s.hash.toString(16)}@${s.applied}`)).join(' ');
      if (hosts.length === 0 || answered.length < hosts.length || new Set(answered.map((s) => s.applied)).size !== 1) {
        unsettled++;
        note(`shard ${id}: its replicas did not reach one applied index in ${settleMs} ms (${hosts.length === 0 ? 'no running replica' : describe()})`);
        continue;
      }
      if (answered.every((s) => s.hash === 0)) {
        // A build without hash_kv answers 0: nothing to compare.
        unsettled++;
        note(`shard ${id}: its replicas answered no hash (a build without ShardStatus's hash_kv?)`);
        continue;
      }
      compared++;
      if (new Set(answered.map((s) => s.hash)).size !== 1) {
        diverged++;
        note(`shard ${id}: replicas at one applied index hash differently: ${describe()}`);
      }
    }
    return { shards: ids.length, compared, diverged, unsettled, problems };
  }

  /** Member `name`'s replica of shard `id`: its applied index and HashKV (undefined: no answer, or not hosted). */
  private async replicaHash(name: string, id: number): Promise<{ name: string; applied: number; hash: number } | undefined> {
    try {
      const status = (await this.withChannel(name, (c) => c.call('dkv.v1.Admin', 'ShardStatus', { shard_id: id, hash_kv: true }), shardStatusTimeoutMs)) as { hosted?: boolean; applied_index?: string; hash_kv?: number };
      return status.hosted === true ? { name, applied: Number(status.applied_index ?? 0), hash: Number(status.hash_kv ?? 0) } : undefined;
    } catch {
      return undefined;
    }
  }
}
