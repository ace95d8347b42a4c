/**
 * The meta engine: what the meta shard (shard 0) replicates about the cluster. Today that is
 * membership: member records written as configuration changes are applied (their context carries
 * the record), the attributes each member publishes about itself (name, client URLs), and the ids
 * that were removed and may never come back. Later issues add stores and the shard map here.
 *
 * The state lives in a small MVCC store (see members.ts for the keys), so it is snapshotted,
 * restored and hashed like any other; nothing here reads a clock.
 */
import type { ConfChange } from '../../../raft/index.js';
import { MvccStore, encodeSnapshot, restoreSnapshotPieces } from '../../../storage/index.js';
import { etcdType } from '../../etcd-proto.js';
import { type ApplyContext, type Engine, type EngineCommand, EngineId, UnknownCommandError } from '../engine.js';
import { type Member, type MemberAttributes, admitMembershipChange, applyMembershipChange, attributesKey, encodeAttributes, isRemoved, listMembers, removedIds } from './members.js';

/** The meta engine's operation codes (in every meta log entry: never renumber). */
export const MetaCommandKind = {
  /** A member publishes its name, client URLs and engine versions: payload `{ id, name, clientUrls, engines }` (JSON). */
  PublishAttributes: 1,
} as const;

/** The meta command format this build writes and applies. */
export const META_COMMAND_VERSION = 1;

/** The KV command kind of an earlier build's attribute publication (a Put into the meta store). */
const LEGACY_KV_PUT = 1;
const PutRequestType = etcdType('etcdserverpb.PutRequest');

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function publishAttributesCommand(id: number, attributes: MemberAttributes): EngineCommand {
  const payload = encoder.encode(JSON.stringify({ id, name: attributes.name, clientUrls: attributes.clientUrls, engines: attributes.engines ?? {} }));
  return { engine: EngineId.Meta, version: META_COMMAND_VERSION, kind: MetaCommandKind.PublishAttributes, payload };
}

export type MetaOutcome = { readonly kind: 'ok' } | { readonly kind: 'error'; readonly message: string };

export class MetaEngine implements Engine {
  readonly id = EngineId.Meta;
  readonly name = 'meta';
  readonly version = META_COMMAND_VERSION;
  private store = new MvccStore();

  apply(command: EngineCommand, _context: ApplyContext): MetaOutcome {
    if (command.engine === 0) return this.applyLegacy(command);
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
  }

  snapshot(): Iterator<Uint8Array> {
    return encodeSnapshot(this.store);
  }

  restore(chunks: readonly Uint8Array[]): void {
    this.store = chunks.length === 0 ? new MvccStore() : restoreSnapshotPieces(chunks);
  }

  hash(): number {
    return this.store.hashKV(0).hash;
  }

  /** Every member, with its published attributes, ordered by id. */
  members(): Member[] {
    return listMembers(this.store);
  }

  /** Whether `id` was removed (a removed id may never join again). */
  isRemoved(id: number): boolean {
    return isRemoved(this.store, id);
  }

  /** Every removed id, ascending. */
  removedIds(): number[] {
    return removedIds(this.store);
  }
}

function isEngineVersions(value: unknown): value is Record<string, number> {
  if (value === undefined) return true;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  return Object.entries(value).every(([engine, version]) => /^[0-9]{1,3}$/.test(engine) && Number.isSafeInteger(version) && (version as number) >= 1);
}
