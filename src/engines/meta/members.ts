/**
 * Cluster membership, kept in the meta shard's MVCC store so it is replicated, snapshotted and
 * restored with everything else:
 *
 *   members/<id hex>  {id, name, peerUrls, isLearner}   written when a conf change is applied
 *   attrs/<id hex>    {name, clientUrls, engines}        published by the member itself
 *   removed/<id hex>  {}                                 ids that may never come back
 *
 * Configuration changes carry the member record in their context, so applying the same log
 * gives every replica the same membership.
 */
import type { ConfChange } from '../../../raft/index.js';
import { type MvccStore, prefixEnd } from '../../../storage/index.js';

export interface MemberRecord {
  readonly id: number;
  readonly name: string;
  readonly peerUrls: readonly string[];
  readonly isLearner: boolean;
}

export interface MemberAttributes {
  readonly name: string;
  readonly clientUrls: readonly string[];
  /** The highest command version of each engine (by id) the member's build applies. */
  readonly engines?: Readonly<Record<string, number>>;
}

export interface Member extends MemberRecord {
  readonly clientUrls: readonly string[];
  /** What the member's build applies (absent until it published, or from a build before engines). */
  readonly engines?: Readonly<Record<string, number>>;
}

/**
 * Whether every member can apply version `version` of `engine`'s commands, so a mixed-version
 * cluster never puts in the log an entry one of its members would have to refuse (it would stop).
 * A member's published engine versions decide. The engines every build has had (meta and KV)
 * count as version 1 for a member that published none (a build from before they were
 * published); any other engine missing from what a member published is one its build lacks. A
 * member that never published anything (added, not started yet) is not counted: it publishes
 * what it applies when it starts, and a build that cannot apply the log stops with a message.
 */
export function membersSupport(members: readonly Member[], engine: number, version: number): boolean {
  const baseline = engine === BASELINE_META_ENGINE || engine === BASELINE_KV_ENGINE ? 1 : 0;
  return members.every((m) => {
    const published = m.engines?.[String(engine)];
    if (published !== undefined) return published >= version;
    if (m.engines === undefined && m.clientUrls.length === 0) return true;
    return baseline >= version;
  });
}

/** Engine ids every build has had (src/engines/engine.ts's EngineId.Meta and EngineId.Kv). */
const BASELINE_META_ENGINE = 1;
const BASELINE_KV_ENGINE = 2;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function idHex(id: number): string {
  return id.toString(16).padStart(14, '0');
}

export const memberKey = (id: number): Uint8Array => encoder.encode(`members/${idHex(id)}`);
export const attributesKey = (id: number): Uint8Array => encoder.encode(`attrs/${idHex(id)}`);
export const removedKey = (id: number): Uint8Array => encoder.encode(`removed/${idHex(id)}`);

export function encodeMemberContext(record: MemberRecord): Uint8Array {
  return encoder.encode(JSON.stringify(record));
}

export function encodeAttributes(attributes: MemberAttributes): Uint8Array {
  return encoder.encode(JSON.stringify(attributes));
}

function parse<T>(bytes: Uint8Array): T | undefined {
  if (bytes.length === 0) return undefined;
  return JSON.parse(decoder.decode(bytes)) as T;
}

/**
 * Applies a configuration change to the membership records (meta shard only). Deterministic: it
 * reads only the change and the store.
 */
/**
 * The part of a committed change the member list lets through, as etcd's apply-time check: an
 * add of a removed id is dropped (a removed id may never come back: a late duplicate of an add, or
 * a promotion that raced a removal), and so is an add-learner of a member that is a voter (a late
 * duplicate of a learner's add after its promotion; etcd has no demotion).
 */
export function admitMembershipChange(mvcc: MvccStore, change: ConfChange): ConfChange {
  const admitted = change.changes.filter((single) => {
    if (single.type !== 'add-voter' && single.type !== 'add-learner') return true;
    if (isRemoved(mvcc, single.nodeId)) return false;
    return !(single.type === 'add-learner' && readRecord(mvcc, single.nodeId)?.isLearner === false);
  });
  return admitted.length === change.changes.length ? change : { ...change, changes: admitted };
}

export function applyMembershipChange(mvcc: MvccStore, change: ConfChange): void {
  const context = parse<MemberRecord>(change.context);
  for (const single of change.changes) {
    const existing = readRecord(mvcc, single.nodeId);
    switch (single.type) {
      case 'add-voter':
      case 'add-learner': {
        const base: MemberRecord = existing ?? {
          id: single.nodeId,
          name: context?.id === single.nodeId ? context.name : '',
          peerUrls: context?.id === single.nodeId ? context.peerUrls : [],
          isLearner: false,
        };
        mvcc.put(memberKey(single.nodeId), encoder.encode(JSON.stringify({ ...base, isLearner: single.type === 'add-learner' })));
        break;
      }
      case 'remove':
        mvcc.deleteRange({ key: memberKey(single.nodeId) });
        mvcc.deleteRange({ key: attributesKey(single.nodeId) });
        mvcc.put(removedKey(single.nodeId), encoder.encode('{}'));
        break;
      case 'update':
        if (existing !== undefined && context !== undefined) {
          mvcc.put(memberKey(single.nodeId), encoder.encode(JSON.stringify({ ...existing, peerUrls: context.peerUrls })));
        }
        break;
    }
  }
}

function readRecord(mvcc: MvccStore, id: number): MemberRecord | undefined {
  const kv = mvcc.range({ key: memberKey(id) }).kvs[0];
  return kv === undefined ? undefined : parse<MemberRecord>(kv.value);
}


/** Every member, with its published attributes, ordered by id. */
export function listMembers(mvcc: MvccStore): Member[] {
  const attributes = new Map<number, MemberAttributes>();
  for (const kv of mvcc.range({ key: encoder.encode('attrs/'), rangeEnd: prefixEnd(encoder.encode('attrs/')) }).kvs) {
    const id = Number.parseInt(decoder.decode(kv.key).slice('attrs/'.length), 16);
    const parsed = parse<MemberAttributes>(kv.value);
    if (parsed !== undefined) attributes.set(id, parsed);
  }
  const members: Member[] = [];
  for (const kv of mvcc.range({ key: encoder.encode('members/'), rangeEnd: prefixEnd(encoder.encode('members/')) }).kvs) {
    const record = parse<MemberRecord>(kv.value);
    if (record === undefined) continue;
    const attrs = attributes.get(record.id);
    members.push({
      ...record,
      name: attrs?.name ?? record.name,
      clientUrls: attrs?.clientUrls ?? [],
      ...(attrs?.engines === undefined ? {} : { engines: attrs.engines }),
    });
  }
  return members.sort((a, b) => a.id - b.id);
}

export function isRemoved(mvcc: MvccStore, id: number): boolean {
  return mvcc.range({ key: removedKey(id), countOnly: true }).count > 0;
}

/** Every removed id, ascending. */
export function removedIds(mvcc: MvccStore): number[] {
  const prefix = encoder.encode('removed/');
  return mvcc
    .range({ key: prefix, rangeEnd: prefixEnd(prefix), keysOnly: true })
    .kvs.map((kv) => Number.parseInt(decoder.decode(kv.key).slice('removed/'.length), 16))
    .sort((a, b) => a - b);
}
