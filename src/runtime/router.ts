/**
 * The router: which shard serves a request, and the narrow handle services use to reach it.
 * Services never see a node or a Raft group; they get `propose`, `read`, `status` and the
 * shard's current state machine from a ShardHandle.
 *
 * Key → shard: by the shard map the meta shard holds (`metaShardMap`: the default store alone
 * until a store is mounted), or a fixed one (`singleStoreMap`). A request for a shard this node
 * does not host fails with `wrong-shard`; a txn whose keys and ranges fall in different shards
 * fails with `cross-shard`, a range over more than one shard with `cross-shard-range`.
 * Forwarding to a shard's leader is Raft's: a follower's proposal travels to the leader over the
 * peer transport, and its reads ask the leader for a read index.
 */
import type { ConfChange } from '../../raft/index.js';
import { ShardMap as ClusterShardMap } from '../cluster/model.js';
import { EngineError, anonymousCaller } from '../engines/index.js';
import { metaEngineOf } from './compose.js';
import type { EngineCommand } from './envelope.js';
import { RuntimeError, ShardElsewhereError } from './errors.js';
import { authOldRevisionProposalsMax } from './limits.js';
import { timeoutError } from './pending.js';
import type { NodeRuntime, RequestOptions, ShardStatus } from './runtime.js';
import type { Applied, ShardStateView } from './state-machine.js';

export interface ShardHandle {
  readonly shardId: number;
  /** Proposes a command; resolves with what applying it produced on this node. */
  propose(command: EngineCommand, options?: RequestOptions): Promise<Applied>;
  proposeConfChange(change: ConfChange, options?: RequestOptions): Promise<void>;
  /** Resolves once this node applied everything committed when it was asked (ReadIndex); with the read index. */
  read(options?: RequestOptions): Promise<number>;
  status(): ShardStatus;
  /** The current term (cheap: for response headers). */
  term(): number;
  /** The known leader (0: none). */
  leader(): number;
  /** The state machine now, to read (a snapshot install replaces it: fetch it after every await). */
  machine(): ShardStateView;
  /** Asks the shard's leader to hand leadership to `to` (ignored when refused). */
  transferLeader(to: number): void;
}

/** A key range as etcd gives one: `rangeEnd` empty is the key alone, `[0]` every key from `key` on. */
export interface KeyRange {
  readonly key: Uint8Array;
  readonly rangeEnd?: Uint8Array;
}

/** A part of a range and its shard here, or why this node does not host it (exactly one of the two). */
export type RoutedPart = { readonly range: KeyRange } & ({ readonly shard: ShardHandle; readonly elsewhere?: undefined } | { readonly shard?: undefined; readonly elsewhere: ShardElsewhereError });

/** The part of a range one shard serves (its own range in etcd's conventions). */
export interface RangePart {
  readonly shard: number;
  readonly range: KeyRange;
}

export interface ShardMap {
  /** The shard that owns `key`. */
  shardForKey(key: Uint8Array): number;
  /** The shards that serve `range`'s keys, in key order (the key's own shard for an empty range). */
  shardsOfRange(range: KeyRange): number[];
  /** The parts of `range` each shard serves, in key order (the key's own shard for an empty or one-key range, with the range as is). */
  partsOfRange(range: KeyRange): RangePart[];
  /** The shard of the default store (what Status, Hash and Snapshot describe). */
  readonly defaultStoreShard: number;
  /** The meta shard (members, stores and the shard map). */
  readonly metaShard: number;
  /** The members the map places shard `shardId` on (empty: every member, or a shard it does not list). */
  replicasOf?(shardId: number): readonly number[];
  /** Shard `shardId`'s epoch in the map (raised by each split or move of it; undefined: not listed). */
  epochOf?(shardId: number): number | undefined;
}

/** The map of a node with one store on one shard. */
export function singleStoreMap(metaShard: number, defaultStoreShard: number): ShardMap {
  return { shardForKey: () => defaultStoreShard, shardsOfRange: () => [defaultStoreShard], partsOfRange: (range) => [{ shard: defaultStoreShard, range }], defaultStoreShard, metaShard };
}

/**
 * The map the meta shard holds, as this node has applied it (the initial map, the default store
 * alone, while the node hosts no meta shard).
 */
export function metaShardMap(runtime: NodeRuntime, metaShard: number, defaultStoreShard: number): ShardMap {
  const initial = ClusterShardMap.initial(defaultStoreShard);
  const current = (): ClusterShardMap => (runtime.hasShard(metaShard) ? metaEngineOf(runtime.machine(metaShard)).routingMap() : initial);
  return {
    shardForKey: (key) => current().shardForKey(key).id,
    shardsOfRange: (range) => partsOfRange(current(), range).map((part) => part.shard),
    partsOfRange: (range) => partsOfRange(current(), range),
    defaultStoreShard,
    metaShard,
    replicasOf: (shardId) => current().shard(shardId)?.replicas ?? [],
    epochOf: (shardId) => current().shard(shardId)?.epoch,
  };
}

function partsOfRange(map: ClusterShardMap, range: KeyRange): RangePart[] {
  const { key, rangeEnd } = range;
  if (rangeEnd === undefined || rangeEnd.length === 0) return [{ shard: map.shardForKey(key).id, range }];
  const pieces = map.piecesOfRange(key, rangeEnd.length === 1 && rangeEnd[0] === 0 ? undefined : rangeEnd);
  // An empty range (its end at or before its key: etcd answers it with nothing): the key's shard.
  if (pieces.length <= 1) return [{ shard: pieces[0]?.shard.id ?? map.shardForKey(key).id, range }];
  return pieces.map((piece) => ({ shard: piece.shard.id, range: { key: piece.start, rangeEnd: piece.end ?? Uint8Array.of(0) } }));
}

class RuntimeShardHandle implements ShardHandle {
  constructor(
    private readonly runtime: NodeRuntime,
    readonly shardId: number,
  ) {}

  /**
   * Proposes `command`. One refused for an old auth revision (an auth change came between finding
   * its caller and applying it; the refusal changed nothing) is proposed again with its caller
   * found anew, while that caller's revision is newer than the one refused and the request's
   * deadline has not passed.
   */
  async propose(command: EngineCommand, options: RequestOptions = {}): Promise<Applied> {
    // Every attempt shares the request's one deadline, as etcd's retries share the client's context.
    const deadline = this.runtime.now() + (options.timeoutMs ?? this.runtime.requestTimeoutMs);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.proposeOnce(command, options);
      } catch (error) {
        const caller = options.caller;
        if (!(error instanceof EngineError) || error.code !== 'auth-old-revision' || caller?.again === undefined || attempt >= authOldRevisionProposalsMax) throw error;
        const again = caller.again();
        // Auth disabled meanwhile: the anonymous caller (revision 0) passes where it applies.
        if (again !== anonymousCaller && again.authRevision <= caller.authRevision) throw error;
        // Out of time: what etcd answers once the client's context ends between its retries.
        const left = deadline - this.runtime.now();
        if (left <= 0) throw timeoutError('timeout');
        options = { ...options, caller: again, timeoutMs: left };
      }
    }
  }

  private proposeOnce(command: EngineCommand, options: RequestOptions): Promise<Applied> {
    return new Promise((resolve, reject) => {
      this.runtime.propose(this.shardId, command, options, (error, applied) => {
        if (error !== undefined) reject(error);
        else if (applied!.refusal !== undefined) reject(applied!.refusal);
        else resolve(applied!);
      });
    });
  }

  proposeConfChange(change: ConfChange, options: RequestOptions = {}): Promise<void> {
    return new Promise((resolve, reject) => {
      this.runtime.proposeConfChange(this.shardId, change, options, (error) => (error === undefined ? resolve() : reject(error)));
    });
  }

  read(options: RequestOptions = {}): Promise<number> {
    return new Promise((resolve, reject) => {
      this.runtime.read(this.shardId, options, (error, index) => (error === undefined ? resolve(index!) : reject(error)));
    });
  }

  status(): ShardStatus {
    return this.runtime.status(this.shardId);
  }

  machine(): ShardStateView {
    return this.runtime.machine(this.shardId);
  }

  term(): number {
    return this.runtime.term(this.shardId);
  }

  leader(): number {
    return this.runtime.leader(this.shardId);
  }

  transferLeader(to: number): void {
    this.runtime.transferLeader(this.shardId, to);
  }
}

export class Router {
  private readonly handles = new Map<number, ShardHandle>();

  constructor(
    private readonly runtime: NodeRuntime,
    readonly map: ShardMap,
    /**
     * Checks that a client request may be served by the shard its keys route to (throws the
     * client's error if not); called by `forKey`, `forRange` and `forRanges`, not for the shards
     * a node reaches on its own.
     */
    private readonly admit: (shardId: number) => void = () => {},
    /** Hears each client request's shard and first key (the server's load counts for automatic splits). */
    private readonly observe: (shardId: number, key: Uint8Array) => void = () => {},
    /** This node's member id: a shard the map places on other members only is `shard-elsewhere` here. */
    private readonly self = 0,
  ) {}

  /** Whether this node hosts a group of `shardId`. */
  hosts(shardId: number): boolean {
    return this.runtime.hasShard(shardId);
  }

  /**
   * The handle of a shard this node hosts; otherwise `shard-elsewhere` (ShardElsewhereError) when
   * the map places it on other members only, `wrong-shard` (retryable) when it is this node's to
   * host and its group has not started here yet (or has gone).
   */
  shard(shardId: number): ShardHandle {
    let handle = this.handles.get(shardId);
    // A group removed here since (a replica moved away) leaves no handle behind.
    if (handle !== undefined && !this.runtime.hasShard(shardId)) {
      this.handles.delete(shardId);
      handle = undefined;
    }
    if (handle === undefined) {
      if (!this.runtime.hasShard(shardId)) {
        const replicas = this.map.replicasOf?.(shardId) ?? [];
        if (replicas.length > 0 && !replicas.includes(this.self)) throw new ShardElsewhereError(shardId, replicas, this.map.epochOf?.(shardId));
        throw new RuntimeError('wrong-shard', `shard ${shardId} is not hosted on this node`);
      }
      handle = new RuntimeShardHandle(this.runtime, shardId);
      this.handles.set(shardId, handle);
    }
    return handle;
  }

  /** The shard that owns `key`. */
  forKey(key: Uint8Array): ShardHandle {
    return this.routed(this.map.shardForKey(key), key);
  }

  /** The one shard that serves `range`; `cross-shard-range` if it spans more. */
  forRange(range: KeyRange): ShardHandle {
    const shards = this.map.shardsOfRange(range);
    if (shards.length > 1) throw new RuntimeError('cross-shard-range', 'dkv: the range spans more than one shard');
    return this.routed(shards[0]!, range.key);
  }

  /** The shards that serve `range`, each with its part, in key order (a Range merges their answers). */
  partsOf(range: KeyRange): Array<{ readonly shard: ShardHandle; readonly range: KeyRange }> {
    return this.map.partsOfRange(range).map((part) => ({ shard: this.routed(part.shard, part.range.key), range: part.range }));
  }

  /**
   * As `partsOf`, but a part whose shard the map places on other members only comes with that
   * refusal (`elsewhere`) instead of a handle: a Range reads such parts through a replica.
   */
  partsAnywhere(range: KeyRange): RoutedPart[] {
    return this.map.partsOfRange(range).map((part) => {
      try {
        return { shard: this.routed(part.shard, part.range.key), range: part.range };
      } catch (error) {
        if (error instanceof ShardElsewhereError) return { elsewhere: error, range: part.range };
        throw error;
      }
    });
  }

  /** The one shard that owns every key given (a txn's); `cross-shard` if they span more. */
  forKeys(keys: Iterable<Uint8Array>): ShardHandle {
    return this.forRanges([...keys].map((key) => ({ key })));
  }

  /** The one shard that serves every range given (a txn's keys and ranges); `cross-shard` if they span more. */
  forRanges(ranges: Iterable<KeyRange>): ShardHandle {
    let shardId: number | undefined;
    let first: Uint8Array | undefined;
    for (const range of ranges) {
      first ??= range.key;
      for (const owner of this.map.shardsOfRange(range)) {
        if (shardId !== undefined && owner !== shardId) throw new RuntimeError('cross-shard', 'dkv: txn keys span more than one shard');
        shardId = owner;
      }
    }
    return this.routed(shardId ?? this.map.defaultStoreShard, first);
  }

  private routed(shardId: number, key: Uint8Array | undefined): ShardHandle {
    this.admit(shardId);
    // A replica moved away serves no more requests, though it still hosts its group until it has
    // left it (src/server/store-groups.ts): they go to the members the map lists.
    if (this.self !== 0 && this.runtime.hasShard(shardId)) {
      const replicas = this.map.replicasOf?.(shardId) ?? [];
      if (replicas.length > 0 && !replicas.includes(this.self)) throw new ShardElsewhereError(shardId, replicas, this.map.epochOf?.(shardId));
    }
    const handle = this.shard(shardId);
    if (key !== undefined) this.observe(shardId, key);
    return handle;
  }

  defaultStore(): ShardHandle {
    return this.shard(this.map.defaultStoreShard);
  }

  meta(): ShardHandle {
    return this.shard(this.map.metaShard);
  }

  /** Every shard this node hosts, in id order. */
  hosted(): ShardHandle[] {
    return this.runtime.shardIds().map((id) => this.shard(id));
  }
}
