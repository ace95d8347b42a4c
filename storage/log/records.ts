/**
 * Record values. Every value is [crc32c:u32][payload], the CRC taken over the key and the payload,
 * so a torn, flipped or misplaced value is caught on read. Payloads are fixed binary layouts
 * (no JSON on this path).
 */
import type { ConfState, Entry, EntryType, HardState } from '../../raft/index.js';
import { crc32c } from '../checksum.js';
import { readU64, writeU64 } from './keys.js';

const CRC_BYTES = 4;

/** Frames `payload` with its CRC for `key`. */
export function seal(key: Uint8Array, payload: Uint8Array): Uint8Array {
  const value = new Uint8Array(CRC_BYTES + payload.length);
  value.set(payload, CRC_BYTES);
  new DataView(value.buffer).setUint32(0, crc32c(payload, crc32c(key)));
  return value;
}

/** The payload of a value written by `seal` for `key`, or undefined when it does not check out. */
export function unseal(key: Uint8Array, value: Uint8Array): Uint8Array | undefined {
  if (value.length < CRC_BYTES) return undefined;
  const payload = value.subarray(CRC_BYTES);
  const stored = new DataView(value.buffer, value.byteOffset, value.byteLength).getUint32(0);
  return stored === crc32c(payload, crc32c(key)) ? payload : undefined;
}

/** A bounds-checked reader: any read past the end marks the record as bad instead of throwing. */
class Reader {
  private at = 0;
  bad = false;
  constructor(private readonly bytes: Uint8Array) {}

  private take(n: number): number {
    if (this.at + n > this.bytes.length) {
      this.bad = true;
      return -1;
    }
    const at = this.at;
    this.at += n;
    return at;
  }

  u8(): number {
    const at = this.take(1);
    return at < 0 ? 0 : this.bytes[at]!;
  }

  u32(): number {
    const at = this.take(4);
    return at < 0 ? 0 : new DataView(this.bytes.buffer, this.bytes.byteOffset + at, 4).getUint32(0);
  }

  u64(): number {
    const at = this.take(8);
    if (at < 0) return 0;
    const value = readU64(this.bytes, at);
    if (Number.isNaN(value)) this.bad = true;
    return Number.isNaN(value) ? 0 : value;
  }

  rest(): Uint8Array {
    const at = this.at;
    this.at = this.bytes.length;
    return this.bytes.subarray(at);
  }

  /** True when everything was read and nothing was out of bounds. */
  done(): boolean {
    return !this.bad && this.at === this.bytes.length;
  }
}

class Writer {
  private readonly bytes: Uint8Array;
  private at = 0;
  constructor(size: number) {
    this.bytes = new Uint8Array(size);
  }
  u8(value: number): this {
    this.bytes[this.at++] = value;
    return this;
  }
  u32(value: number): this {
    new DataView(this.bytes.buffer).setUint32(this.at, value);
    this.at += 4;
    return this;
  }
  u64(value: number): this {
    writeU64(this.bytes, this.at, value);
    this.at += 8;
    return this;
  }
  raw(data: Uint8Array): this {
    this.bytes.set(data, this.at);
    this.at += data.length;
    return this;
  }
  finish(): Uint8Array {
    return this.bytes;
  }
}

const ENTRY_TYPES: readonly EntryType[] = ['normal', 'conf-change'];

/** The sealed record of an entry, built in one buffer (the hot path of every save). */
export function sealedEntry(key: Uint8Array, entry: Entry): Uint8Array {
  const value = new Uint8Array(CRC_BYTES + 9 + entry.data.length);
  value[CRC_BYTES] = entry.type === 'normal' ? 0 : 1;
  writeU64(value, CRC_BYTES + 1, entry.term);
  value.set(entry.data, CRC_BYTES + 9);
  const crc = crc32c(value.subarray(CRC_BYTES), crc32c(key));
  value[0] = crc >>> 24;
  value[1] = (crc >>> 16) & 0xff;
  value[2] = (crc >>> 8) & 0xff;
  value[3] = crc & 0xff;
  return value;
}

export function encodeEntry(entry: Entry): Uint8Array {
  return new Writer(9 + entry.data.length)
    .u8(ENTRY_TYPES.indexOf(entry.type))
    .u64(entry.term)
    .raw(entry.data)
    .finish();
}

export function decodeEntry(index: number, payload: Uint8Array): Entry | undefined {
  const reader = new Reader(payload);
  const type = ENTRY_TYPES[reader.u8()];
  const term = reader.u64();
  const data = reader.rest();
  if (reader.bad || type === undefined) return undefined;
  return { index, term, type, data };
}

export function encodeHardState(hs: HardState): Uint8Array {
  return new Writer(24).u64(hs.term).u64(hs.vote).u64(hs.commit).finish();
}

export function decodeHardState(payload: Uint8Array): HardState | undefined {
  const reader = new Reader(payload);
  const hs = { term: reader.u64(), vote: reader.u64(), commit: reader.u64() };
  return reader.done() ? hs : undefined;
}

function confStateBytes(cs: ConfState): number {
  return 1 + 4 * 4 + 8 * (cs.voters.length + cs.votersOutgoing.length + cs.learners.length + cs.learnersNext.length);
}

function writeConfState(writer: Writer, cs: ConfState): void {
  writer.u8(cs.autoLeave ? 1 : 0);
  for (const ids of [cs.voters, cs.votersOutgoing, cs.learners, cs.learnersNext]) {
    writer.u32(ids.length);
    for (const id of ids) writer.u64(id);
  }
}

function readConfState(reader: Reader): ConfState {
  const autoLeave = reader.u8() === 1;
  const lists: number[][] = [];
  for (let list = 0; list < 4; list++) {
    const count = reader.u32();
    const ids: number[] = [];
    // A count larger than the bytes left is damage, not a reason to loop for ever.
    for (let i = 0; i < count && !reader.bad; i++) ids.push(reader.u64());
    lists.push(ids);
  }
  return { voters: lists[0]!, votersOutgoing: lists[1]!, learners: lists[2]!, learnersNext: lists[3]!, autoLeave };
}

export function encodeConfState(cs: ConfState): Uint8Array {
  const writer = new Writer(confStateBytes(cs));
  writeConfState(writer, cs);
  return writer.finish();
}

export function decodeConfState(payload: Uint8Array): ConfState | undefined {
  const reader = new Reader(payload);
  const cs = readConfState(reader);
  return reader.done() ? cs : undefined;
}

export function encodeIndex(index: number): Uint8Array {
  return new Writer(8).u64(index).finish();
}

export function decodeIndex(payload: Uint8Array): number | undefined {
  const reader = new Reader(payload);
  const index = reader.u64();
  return reader.done() ? index : undefined;
}

export interface Truncated {
  index: number;
  term: number;
}

export function encodeTruncated(t: Truncated): Uint8Array {
  return new Writer(16).u64(t.index).u64(t.term).finish();
}

export function decodeTruncated(payload: Uint8Array): Truncated | undefined {
  const reader = new Reader(payload);
  const t = { index: reader.u64(), term: reader.u64() };
  return reader.done() ? t : undefined;
}

/** The snapshot descriptor: its metadata and how its data is laid out in chunk records. */
export interface SnapshotDescriptor {
  index: number;
  term: number;
  confState: ConfState;
  dataBytes: number;
  chunks: number;
  /** CRC-32C of the whole data, checked when the chunks are read back. */
  dataCrc: number;
}

export function encodeSnapshotDescriptor(d: SnapshotDescriptor): Uint8Array {
  const writer = new Writer(32 + confStateBytes(d.confState));
  writer.u64(d.index).u64(d.term).u64(d.dataBytes).u32(d.chunks).u32(d.dataCrc);
  writeConfState(writer, d.confState);
  return writer.finish();
}

export function decodeSnapshotDescriptor(payload: Uint8Array): SnapshotDescriptor | undefined {
  const reader = new Reader(payload);
  const index = reader.u64();
  const term = reader.u64();
  const dataBytes = reader.u64();
  const chunks = reader.u32();
  const dataCrc = reader.u32();
  const confState = readConfState(reader);
  return reader.done() ? { index, term, confState, dataBytes, chunks, dataCrc } : undefined;
}

export function encodeFormat(version: number): Uint8Array {
  return new Writer(4).u32(version).finish();
}

export function decodeFormat(payload: Uint8Array): number | undefined {
  const reader = new Reader(payload);
  const version = reader.u32();
  return reader.done() ? version : undefined;
}
