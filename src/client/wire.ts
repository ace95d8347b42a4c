/**
 * The client's plain types and their conversion from and to the wire, done once here.
 * Revisions, versions and counts are numbers (safe integers, asserted); 64-bit ids (leases,
 * members, clusters) are bigints; keys and values are Buffers (strings are taken as UTF-8).
 */
import { int64Exact, int64Safe, int64ToWire, type Int64 } from '../etcd-proto.js';
import type { Decoded } from './etcd-channel.js';
import { invalidArgument } from './errors.js';

/** A key or value as the caller gives it: bytes, or a string taken as UTF-8. */
export type Bytes = string | Uint8Array;

/** The bytes of `value` (strings as UTF-8). */
export function toBytes(value: Bytes, what = 'key'): Buffer {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw invalidArgument(`${what} must be a string or a Uint8Array`);
}

/** The etcd range end that selects every key starting with `prefix` ("\0" for an empty prefix: all keys). */
export function prefixRangeEnd(prefix: Uint8Array): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** A lease id as callers give it. */
export type LeaseId = bigint | number | string;

/** A lease id for the wire (0 = none). */
export function leaseToWire(id: LeaseId | undefined): number | string {
  if (id === undefined) return 0;
  try {
    return int64ToWire(BigInt(id));
  } catch {
    throw invalidArgument(`lease id ${String(id)} is not an integer`);
  }
}

/** A revision or count the caller gives: a safe integer >= 0. */
export function checkRevision(value: number | undefined, what: string): number {
  if (value === undefined) return 0;
  if (!Number.isSafeInteger(value) || value < 0) throw invalidArgument(`${what} must be a safe integer >= 0 (got ${value})`);
  return value;
}

/** The header of every response. */
export interface ResponseHeader {
  readonly clusterId: bigint;
  /** The member that answered. */
  readonly memberId: bigint;
  /** The store's revision when the request was served. */
  readonly revision: number;
  readonly raftTerm: number;
}

/** A key-value pair as stored (etcd's mvccpb.KeyValue). */
export interface KeyValue {
  readonly key: Buffer;
  readonly value: Buffer;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  /** The lease the key is attached to; 0n = none. */
  readonly lease: bigint;
}

/** One change seen by a watch. */
export interface WatchEvent {
  readonly type: 'put' | 'delete';
  readonly kv: KeyValue;
  /** With `prevKv`: the key before this change (absent when it did not exist). */
  readonly prevKv?: KeyValue;
}

const emptyBytes = Buffer.alloc(0);

function bytesOf(value: unknown): Buffer {
  if (value === undefined || value === null) return emptyBytes;
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (typeof value === 'string') return Buffer.from(value, 'base64');
  throw new TypeError('a bytes field is not bytes');
}

/** @internal */
export function revisionFromWire(value: unknown, what = 'revision'): number {
  return int64Safe(value as Int64, what);
}

/** @internal */
export function idFromWire(value: unknown): bigint {
  return int64Exact(value as Int64);
}

/** @internal */
export function headerFromWire(header: unknown): ResponseHeader {
  const h = (header ?? {}) as Decoded;
  return {
    clusterId: BigInt.asUintN(64, idFromWire(h.cluster_id)),
    memberId: BigInt.asUintN(64, idFromWire(h.member_id)),
    revision: revisionFromWire(h.revision),
    raftTerm: revisionFromWire(h.raft_term, 'raft_term'),
  };
}

/** @internal */
export function kvFromWire(kv: unknown): KeyValue {
  const k = kv as Decoded;
  return {
    key: bytesOf(k.key),
    value: bytesOf(k.value),
    createRevision: revisionFromWire(k.create_revision, 'create_revision'),
    modRevision: revisionFromWire(k.mod_revision, 'mod_revision'),
    version: revisionFromWire(k.version, 'version'),
    lease: idFromWire(k.lease),
  };
}

/** @internal */
export function eventFromWire(event: unknown): WatchEvent {
  const e = event as Decoded;
  const type = e.type === 1 || e.type === 'DELETE' ? 'delete' : 'put';
  const kv = kvFromWire(e.kv);
  return e.prev_kv !== undefined && e.prev_kv !== null ? { type, kv, prevKv: kvFromWire(e.prev_kv) } : { type, kv };
}

/** @internal A decoded response's repeated field (absent = empty). */
export function listOf(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

/** @internal a number field that must be a safe integer */
export function int64SafeOf(value: unknown, what: string): number {
  return int64Safe(value as Int64, what);
}
