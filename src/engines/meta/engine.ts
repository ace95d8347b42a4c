/**
 * The meta engine: what the meta shard (shard 0) replicates about the cluster: membership (member
 * records written as configuration changes are applied — their context carries the record — the
 * attributes each member publishes about itself, and the ids that were removed and may never come
 * back), and the stores with the shard map (stores.ts): mounts, activations, drops and the meta
 * steps of a shard's split are commands.
 *
 * The state lives in a small MVCC store (see members.ts for the keys), so it is snapshotted,
 * restored and hashed like any other; nothing here reads a clock.
 */
import type { ConfChange } from '../../../raft/index.js';
import { MvccStore, encodeSnapshot, restoreSnapshotPieces } from '../../../storage/index.js';
import { etcdType } from '../../etcd-proto.js';
import type { ShardMap, ShardMapErrorCode } from '../../cluster/model.js';
import { bytesToHex, hexToBytes } from '../bytes.js';
import { type ApplyContext, type Engine, type EngineCommand, EngineId, UnknownCommandError } from '../engine.js';
import { type Member, type MemberAttributes, admitMembershipChange, applyMembershipChange, attributesKey, encodeAttributes, isRemoved, listMembers, removedIds } from './members.js';
import { type Founders, type MovingReplica, type SplittingShard, type StoresChange, applyStoresChange, creatingStores, dropReplica, foundersOf, movingReplicas, readRoutingMap, readShardMap, splitParentOf, splittingShards } from './stores.js';

/** The meta engine's operation codes (in every meta log entry: never renumber). */
export const MetaCommandKind = {
  /** A member publishes its name, client URLs and engine versions: payload `{ id, name, clientUrls, engines }` (JSON). */
  PublishAttributes: 1,
  /** Mount a store (version 2): payload `{ name, prefixHex, shards }` (JSON). */
  MountStore: 2,
  /** Drop a store (version 2): payload `{ name, first }` (JSON; `first`: its first shard id). */
  DropStore: 3,
  /** Route requests to a store being created (version 2): payload `{ name, first }` (JSON). */
  ActivateStore: 4,
  /**
   * Split a mounted store's shard (version 3): payload `{ parent, atHex, epoch }` (JSON; `epoch`:
   * the parent's epoch in the proposer's map). The child takes the next shard id and is splitting.
   */
  SplitShard: 5,
  /** Finish a split (version 3): payload `{ child }` (JSON); the child is not splitting any more. */
  FinishSplit: 6,
  /**
   * Undo a split its parent refused (version 4): payload `{ child }` (JSON); the parent takes the
   * child's range back, the child leaves the map.
   */
  AbortSplit: 7,
  /**
   * Start moving one replica of a placed shard (version 6): payload `{ shard, from, to, epoch }`
   * (JSON; `epoch`: the shard's epoch in the proposer's map). Recorded as moving; the group adds
   * `to` (src/server/membership-sync.ts).
   */
  MoveReplica: 8,
  /** Finish a replica move (version 6): payload `{ shard, from, to }` (JSON); the list takes `to` in `from`'s place. */
  FinishMove: 9,
} as const;

/** The meta command format of member attributes (every build applies it). */
export const META_COMMAND_VERSION = 1;
/** The meta command format of store changes: proposed only once every member applies it. */
export const META_STORES_VERSION = 2;
/**
 * The meta command format of shard splits (SplitShard, FinishSplit): proposed only once every
 * member publishes that its meta engine applies it (`membersSupport(members, EngineId.Meta,
 * META_SPLIT_VERSION)`; the runtime refuses a proposal before then).
 */
export const META_SPLIT_VERSION = 3;
/** The meta command format of AbortSplit: proposed only once every member applies it. */
export const META_ABORT_SPLIT_VERSION = 4;
/**
 * The meta command format of a mount whose shards live on some members only (its `replicas`
 * field; an earlier build would mount them on every member): proposed only once every member
 * applies it, which also says every member forwards client calls for shards it does not host.
 */
export const META_REPLICAS_VERSION = 5;
/**
 * The meta command format of MoveReplica: proposed only once every member applies it, which also
 * says every member's group leader carries a replica list's change out (learner, promotion, removal).
 */
export const META_MOVE_VERSION = 6;

/** The KV command kind of an earlier build's attribute publication (a Put into the meta store). */
const LEGACY_KV_PUT = 1;
const PutRequestType = etcdType('etcdserverpb.PutRequest');

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function publishAttributesCommand(id: number, attributes: MemberAttributes): EngineCommand {
  const payload = encoder.encode(JSON.stringify({ id, name: attributes.name, clientUrls: attributes.clientUrls, engines: attributes.engines ?? {} }));
  return { engine: EngineId.Meta, version: META_COMMAND_VERSION, kind: MetaCommandKind.PublishAttributes, payload };
}

/**
 * A command mounting store `name` on `prefix` as `shards` shards, each replicated on `replicas`
 * voting members the meta shard places (0: on every member; such a command keeps version 2's
 * form, which every build applies).
 */
export function mountStoreCommand(name: string, prefix: Uint8Array, shards: number, replicas = 0): EngineCommand {
  const prefixHex = bytesToHex(prefix);
  if (replicas === 0) return { engine: EngineId.Meta, version: META_STORES_VERSION, kind: MetaCommandKind.MountStore, payload: encoder.encode(JSON.stringify({ name, prefixHex, shards })) };
  return { engine: EngineId.Meta, version: META_REPLICAS_VERSION, kind: MetaCommandKind.MountStore, payload: encoder.encode(JSON.stringify({ name, prefixHex, shards, replicas })) };
}

/**
 * A command activating store `name` whose first shard is `first` (requests are routed to it from
 * then on); refused if the store of that name is another one (dropped and mounted again since).
 */
export function activateStoreCommand(name: string, first: number): EngineCommand {
  return { engine: EngineId.Meta, version: META_STORES_VERSION, kind: MetaCommandKind.ActivateStore, payload: encoder.encode(JSON.stringify({ name, first })) };
}

/** A command dropping store `name` whose first shard is `first` (its shards leave the map); refused as activate is. */
export function dropStoreCommand(name: string, first: number): EngineCommand {
  return { engine: EngineId.Meta, version: META_STORES_VERSION, kind: MetaCommandKind.DropStore, payload: encoder.encode(JSON.stringify({ name, first })) };
}

/**
 * A command splitting shard `parent` (at `epoch` in the proposer's map) at `at`: the child takes
 * `[at, parent's end)`. Idempotent: a repeat answers the split made already.
 */
export function splitShardCommand(parent: number, at: Uint8Array, epoch: number): EngineCommand {
  const payload = encoder.encode(JSON.stringify({ parent, atHex: bytesToHex(at), epoch }));
  return { engine: EngineId.Meta, version: META_SPLIT_VERSION, kind: MetaCommandKind.SplitShard, payload };
}

/**
 * A command undoing the unfinished split that made shard `child` (idempotent), once its parent's
 * log refused that split for good (a fenced refusal: the child can never be made).
 */
export function abortSplitCommand(child: number): EngineCommand {
  return { engine: EngineId.Meta, version: META_ABORT_SPLIT_VERSION, kind: MetaCommandKind.AbortSplit, payload: encoder.encode(JSON.stringify({ child })) };
}

/** A command finishing the split that made shard `child` (idempotent). */
export function finishSplitCommand(child: number): EngineCommand {
  return { engine: EngineId.Meta, version: META_SPLIT_VERSION, kind: MetaCommandKind.FinishSplit, payload: encoder.encode(JSON.stringify({ child })) };
}

/**
 * A command starting the move of shard `shard`'s replica from member `from` to member `to` (at
 * `epoch` in the proposer's map): recorded as moving, the map unchanged until it is finished.
 */
export function moveReplicaCommand(shard: number, from: number, to: number, epoch: number): EngineCommand {
  return { engine: EngineId.Meta, version: META_MOVE_VERSION, kind: MetaCommandKind.MoveReplica, payload: encoder.encode(JSON.stringify({ shard, from, to, epoch })) };
}

/** A command finishing the move of `shard`'s replica from `from` to `to` (its group holds `to` as a voter). */
export function finishMoveCommand(shard: number, from: number, to: number): EngineCommand {
  return { engine: EngineId.Meta, version: META_MOVE_VERSION, kind: MetaCommandKind.FinishMove, payload: encoder.encode(JSON.stringify({ shard, from, to })) };
}

export type MetaOutcome =
  | { readonly kind: 'ok' }
  /**
   * A store change applied: the shards it made (mount), took out of the map (drop) or activated;
   * a split's `[parent, child]`; a finished split's `[child]`.
   */
  | { readonly kind: 'stores'; readonly shards: readonly number[] }
  | { readonly kind: 'error'; readonly message: string; readonly code?: ShardMapErrorCode | 'bad-command' };

export class MetaEngine implements Engine {
  readonly id = EngineId.Meta;
  readonly name = 'meta';
  readonly version = META_MOVE_VERSION;
  /**
   * The section's format is unchanged since version 2 (the records are keys of the meta store):
   * earlier builds restore it, unless a shard is placed on some members (version 5), which a
   * build before placement would read as "every member" and add the others to its group, or a
   * replica move is not finished (version 6).
   */
  get sectionVersion(): number {
    // A move not finished (version 6) would be forgotten by a build before moves.
    if (this.moving().size > 0) return META_MOVE_VERSION;
    return this.shardMap().shards().some((shard) => shard.replicas.length > 0) ? META_REPLICAS_VERSION : META_STORES_VERSION;
  }
  private store = new MvccStore();
  /** The maps decoded from `store` (undefined: not decoded since the store last changed). */
  private map: ShardMap | undefined;
  private routing: ShardMap | undefined;

  apply(command: EngineCommand, context: ApplyContext): MetaOutcome {
    if (command.engine === 0) return this.applyLegacy(command);
    if (command.kind === MetaCommandKind.MountStore || command.kind === MetaCommandKind.DropStore || command.kind === MetaCommandKind.ActivateStore) {
      return this.applyStores(command, context, META_STORES_VERSION);
    }
    if (command.kind === MetaCommandKind.SplitShard || command.kind === MetaCommandKind.FinishSplit) return this.applyStores(command, context, META_SPLIT_VERSION);
    if (command.kind === MetaCommandKind.AbortSplit) return this.applyStores(command, context, META_ABORT_SPLIT_VERSION);
    if (command.kind === MetaCommandKind.MoveReplica || command.kind === MetaCommandKind.FinishMove) return this.applyStores(command, context, META_MOVE_VERSION);
    if (command.kind !== MetaCommandKind.PublishAttributes) throw new UnknownCommandError(`unknown meta command kind ${command.kind}`);
    let parsed: { id?: unknown; name?: unknown; clientUrls?: unknown; engines?: unknown };
    try {
      parsed = JSON.parse(decoder.decode(command.payload)) as typeof parsed;
    } catch {
      return { kind: 'error', message: 'member attributes are not JSON' };
    }
    const { id, name, clientUrls, engines } = parsed;
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id <= 0 || typeof name !== 'string' || !Array.isArray(clientUrls) || !clientUrls.every((u) => typeof u === 'string')) {
      return { kind: 'error', message: 'member attributes are malformed' };
    }
    if (!isEngineVersions(engines)) return { kind: 'error', message: 'member engine versions are malformed' };
    this.store.put(attributesKey(id), encodeAttributes({ name, clientUrls: clientUrls as string[], engines }));
    return { kind: 'ok' };
  }

  /** A store change; `needs`: the command version its kind came with (an older one never carried it). */
  private applyStores(command: EngineCommand, context: ApplyContext, needs: number): MetaOutcome {
    if (command.version < needs) throw new UnknownCommandError(`meta command kind ${command.kind} needs version ${needs}, got ${command.version}`);
    const splitStep = command.kind === MetaCommandKind.SplitShard || command.kind === MetaCommandKind.FinishSplit || command.kind === MetaCommandKind.AbortSplit;
    const change =
      command.kind === MetaCommandKind.MoveReplica || command.kind === MetaCommandKind.FinishMove ? parseMove(command.kind, command.payload) : splitStep ? parseSplitChange(command.kind, command.payload) : parseStoresChange(command.kind, command.version, command.payload);
    if (typeof change === 'string') return { kind: 'error', code: 'bad-command', message: change };
    const outcome = applyStoresChange(this.store, change, context.nowMs);
    this.map = undefined;
    this.routing = undefined;
    return outcome.kind === 'ok' ? { kind: 'stores', shards: outcome.shards } : outcome;
  }

  /** An earlier build published attributes as a KV Put of `attrs/<id>` into the meta store. */
  private applyLegacy(command: EngineCommand): MetaOutcome {
    if (command.kind !== LEGACY_KV_PUT) throw new UnknownCommandError(`legacy meta command kind ${command.kind} is not a put`);
    const put = PutRequestType.decode(command.payload) as unknown as { key: Uint8Array; value: Uint8Array };
    this.store.put(put.key, put.value);
    return { kind: 'ok' };
  }

  admitConfChange(change: ConfChange): ConfChange {
    return admitMembershipChange(this.store, change);
  }

  applyConfChange(change: ConfChange, _context: ApplyContext): void {
    applyMembershipChange(this.store, change);
    // A removed member leaves the replica lists of placed shards (their groups drop it too).
    for (const single of change.changes) {
      if (single.type === 'remove' && dropReplica(this.store, single.nodeId)) {
        this.map = undefined;
        this.routing = undefined;
      }
    }
  }

  snapshot(): Iterator<Uint8Array> {
    return encodeSnapshot(this.store);
  }

  restore(chunks: readonly Uint8Array[]): void {
    this.store = chunks.length === 0 ? new MvccStore() : restoreSnapshotPieces(chunks);
    this.map = undefined;
    this.routing = undefined;
  }

  hash(): number {
    return this.store.hashKV(0).hash;
  }

  /** Every member, with its published attributes, ordered by id. */
  members(): Member[] {
    // Read from the store once per revision: a node asks for every group it leads, each pass.
    const cached = this.membersRead;
    if (cached !== undefined && cached.store === this.store && cached.revision === this.store.revision) return [...cached.members];
    const members = listMembers(this.store);
    this.membersRead = { store: this.store, revision: this.store.revision, members };
    return [...members];
  }

  /** The member list as last read, with the store and revision it was read at. */
  private membersRead: { readonly store: MvccStore; readonly revision: number; readonly members: readonly Member[] } | undefined;

  /** Whether `id` was removed (a removed id may never join again). */
  isRemoved(id: number): boolean {
    return isRemoved(this.store, id);
  }

  /** Every removed id, ascending. */
  removedIds(): number[] {
    return removedIds(this.store);
  }

  /** Every store and shard now, stores being created included (immutable: a later change makes a new map). */
  shardMap(): ShardMap {
    return (this.map ??= readShardMap(this.store));
  }

  /** The map requests are routed by: without the stores being created (their prefixes are still the default store's). */
  routingMap(): ShardMap {
    return (this.routing ??= readRoutingMap(this.store, this.shardMap()));
  }

  /** The stores mounted and not activated yet, with the leader's time of their mount. */
  creatingStores(): Map<string, { readonly createdAtMs: number }> {
    return creatingStores(this.store);
  }

  /** The children of unfinished splits, by shard id (no member starts such a group on its own). */
  splitting(): Map<number, SplittingShard> {
    return splittingShards(this.store);
  }

  /** The placed shards' unfinished replica moves, by shard id. */
  moving(): Map<number, MovingReplica> {
    return movingReplicas(this.store);
  }

  /** The shard a split made `shard` from (none: a mount made it). */
  splitParent(shard: number): number | undefined {
    return splitParentOf(this.store, shard);
  }

  /** The configuration a mounted shard's group starts with on its founders (none: the default store's shard or a split's child). */
  founders(shard: number): Founders | undefined {
    return foundersOf(this.store, shard);
  }
}

/** A store change's payload, or why it is malformed (the same on every replica). */
function parseStoresChange(kind: number, version: number, payload: Uint8Array): StoresChange | string {
  let parsed: { name?: unknown; prefixHex?: unknown; shards?: unknown; first?: unknown; replicas?: unknown };
  try {
    parsed = JSON.parse(decoder.decode(payload)) as typeof parsed;
  } catch {
    return 'a store change is not JSON';
  }
  if (typeof parsed !== 'object' || parsed === null || typeof parsed.name !== 'string') return 'a store change names no store';
  if (kind === MetaCommandKind.DropStore || kind === MetaCommandKind.ActivateStore) {
    const { first } = parsed;
    if (typeof first !== 'number' || !Number.isSafeInteger(first) || first <= 0) return 'a store change names no first shard';
    return { kind: kind === MetaCommandKind.DropStore ? 'drop' : 'activate', name: parsed.name, first };
  }
  const { prefixHex, shards } = parsed;
  const prefix = typeof prefixHex === 'string' ? hexToBytes(prefixHex) : undefined;
  if (prefix === undefined) return 'a mount\'s prefix is not hex';
  if (typeof shards !== 'number') return 'a mount has no shard count';
  const replicas = parsed.replicas ?? 0;
  if (typeof replicas !== 'number') return 'a mount\'s replica count is not a number';
  if (replicas !== 0 && version < META_REPLICAS_VERSION) return 'a mount with a replica count needs command version 5';
  return { kind: 'mount', name: parsed.name, prefix, shards, replicas };
}

/** A split step's payload, or why it is malformed (the same on every replica). */
function parseSplitChange(kind: number, payload: Uint8Array): StoresChange | string {
  let parsed: { parent?: unknown; atHex?: unknown; epoch?: unknown; child?: unknown };
  try {
    parsed = JSON.parse(decoder.decode(payload)) as typeof parsed;
  } catch {
    return 'a split step is not JSON';
  }
  if (typeof parsed !== 'object' || parsed === null) return 'a split step is not an object';
  const isShardId = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value > 0;
  if (kind === MetaCommandKind.FinishSplit) return isShardId(parsed.child) ? { kind: 'finish-split', child: parsed.child } : 'a split\'s finish names no child shard';
  if (kind === MetaCommandKind.AbortSplit) return isShardId(parsed.child) ? { kind: 'abort-split', child: parsed.child } : 'a split\'s undoing names no child shard';
  if (!isShardId(parsed.parent)) return 'a split names no parent shard';
  if (!isShardId(parsed.epoch)) return 'a split names no epoch';
  const at = typeof parsed.atHex === 'string' ? hexToBytes(parsed.atHex) : undefined;
  if (at === undefined) return 'a split\'s key is not hex';
  return { kind: 'split', parent: parsed.parent, at, epoch: parsed.epoch };
}

/** A move's payload, or why it is malformed (the same on every replica). */
function parseMove(kind: number, payload: Uint8Array): StoresChange | string {
  let parsed: { shard?: unknown; from?: unknown; to?: unknown; epoch?: unknown };
  try {
    parsed = JSON.parse(decoder.decode(payload)) as typeof parsed;
  } catch {
    return 'a replica move is not JSON';
  }
  if (typeof parsed !== 'object' || parsed === null) return 'a replica move is not an object';
  const isId = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value > 0;
  if (!isId(parsed.shard) || !isId(parsed.from) || !isId(parsed.to)) return 'a replica move needs a shard and two member ids';
  if (kind === MetaCommandKind.FinishMove) return { kind: 'finish-move', shard: parsed.shard, from: parsed.from, to: parsed.to };
  if (!isId(parsed.epoch)) return 'a replica move needs an epoch';
  return { kind: 'move', shard: parsed.shard, from: parsed.from, to: parsed.to, epoch: parsed.epoch };
}

function isEngineVersions(value: unknown): value is Record<string, number> {
  if (value === undefined) return true;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  return Object.entries(value).every(([engine, version]) => /^[0-9]{1,3}$/.test(engine) && Number.isSafeInteger(version) && (version as number) >= 1);
}
