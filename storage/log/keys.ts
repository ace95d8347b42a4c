/**
 * Binary, ordered keys. Every key of a shard starts with [SHARD_PREFIX, u32 shard id] so one range
 * read loads one shard; within a shard the kind byte orders the small records before the log, and
 * indexes are big-endian so LevelDB's byte order is index order.
 *
 *   [0x00, 'v']                                 node format version
 *   [0x01, shard:u32, 0x00]                     the shard is being dropped (sorts first in the shard)
 *   [0x01, shard:u32, kind:u8]                  hard state, conf state, applied, truncated, snapshot
 *   [0x01, shard:u32, 0x06, index:u64, n:u32]   snapshot data chunk n of the snapshot at index
 *   [0x01, shard:u32, 0x10, index:u64]          log entry
 */
import { assert } from '../../raft/index.js';
import { shardIdMax } from './limits.js';

export const NODE_PREFIX = 0x00;
export const SHARD_PREFIX = 0x01;

export const Kind = {
  /**
   * The shard is being dropped: recovery treats a shard with this record as absent (and deletes
   * what is left of it). It sorts before every other record of the shard, so a range deletion
   * after it leaves it for last.
   */
  Dropped: 0x00,
  HardState: 0x01,
  ConfState: 0x02,
  Applied: 0x03,
  /** The index and term of the last entry removed from the log (by compaction or a snapshot). */
  Truncated: 0x04,
  SnapshotMeta: 0x05,
  SnapshotChunk: 0x06,
  Entry: 0x10,
} as const;
export type Kind = (typeof Kind)[keyof typeof Kind];

export const KNOWN_KINDS: ReadonlySet<number> = new Set(Object.values(Kind));

export const FORMAT_KEY = Uint8Array.of(NODE_PREFIX, 0x76);

/** Sorts after every record (all start with NODE_PREFIX or SHARD_PREFIX): a compaction range that covers none. */
export const PAST_ALL_RECORDS_KEY = Uint8Array.of(0xff);

const TWO_32 = 0x1_0000_0000;

function writeU32(target: Uint8Array, at: number, value: number): void {
  target[at] = value >>> 24;
  target[at + 1] = (value >>> 16) & 0xff;
  target[at + 2] = (value >>> 8) & 0xff;
  target[at + 3] = value & 0xff;
}

export function writeU64(target: Uint8Array, at: number, value: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, `not a u64-safe integer: ${value}`);
  writeU32(target, at, Math.floor(value / TWO_32));
  writeU32(target, at + 4, value % TWO_32);
}

export function readU64(source: Uint8Array, at: number): number {
  const view = new DataView(source.buffer, source.byteOffset, source.byteLength);
  const high = view.getUint32(at);
  // Anything above 2^53 cannot have been written by this code: report it as a bad record.
  if (high > 0x1f_ffff) return Number.NaN;
  return high * TWO_32 + view.getUint32(at + 4);
}

function assertShard(shard: number): void {
  assert(Number.isInteger(shard) && shard >= 0 && shard <= shardIdMax, `bad shard id ${shard}`);
}

export function shardKey(shard: number, kind: Kind): Uint8Array {
  assertShard(shard);
  const key = new Uint8Array(6);
  key[0] = SHARD_PREFIX;
  new DataView(key.buffer).setUint32(1, shard);
  key[5] = kind;
  return key;
}

export function entryKey(shard: number, index: number): Uint8Array {
  assertShard(shard);
  const key = new Uint8Array(14);
  key[0] = SHARD_PREFIX;
  writeU32(key, 1, shard);
  key[5] = Kind.Entry;
  writeU64(key, 6, index);
  return key;
}

export function chunkKey(shard: number, snapshotIndex: number, chunk: number): Uint8Array {
  const key = new Uint8Array(18);
  key.set(shardKey(shard, Kind.SnapshotChunk));
  writeU64(key, 6, snapshotIndex);
  new DataView(key.buffer).setUint32(14, chunk);
  return key;
}

/** The first key of shard `shard` and the first key after it: [lower, upper). */
export function shardRange(shard: number): { gte: Uint8Array; lt: Uint8Array } {
  assertShard(shard);
  const gte = new Uint8Array(5);
  gte[0] = SHARD_PREFIX;
  new DataView(gte.buffer).setUint32(1, shard);
  const lt = new Uint8Array(5);
  if (shard === shardIdMax) {
    lt[0] = SHARD_PREFIX + 1;
  } else {
    lt[0] = SHARD_PREFIX;
    new DataView(lt.buffer).setUint32(1, shard + 1);
  }
  return { gte, lt };
}

export interface ParsedKey {
  shard: number;
  kind: number;
  /** The entry index, or the snapshot index of a chunk; undefined for the small records. */
  index?: number;
  chunk?: number;
}

/** Parses a shard key; undefined when it is not one this format writes. */
export function parseShardKey(key: Uint8Array): ParsedKey | undefined {
  if (key.length < 6 || key[0] !== SHARD_PREFIX) return undefined;
  const view = new DataView(key.buffer, key.byteOffset, key.byteLength);
  const shard = view.getUint32(1);
  const kind = key[5]!;
  if (!KNOWN_KINDS.has(kind)) return undefined;
  if (kind === Kind.Entry) {
    if (key.length !== 14) return undefined;
    const index = readU64(key, 6);
    return Number.isNaN(index) ? undefined : { shard, kind, index };
  }
  if (kind === Kind.SnapshotChunk) {
    if (key.length !== 18) return undefined;
    const index = readU64(key, 6);
    return Number.isNaN(index) ? undefined : { shard, kind, index, chunk: view.getUint32(14) };
  }
  return key.length === 6 ? { shard, kind } : undefined;
}

export function hex(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('hex');
}
