/**
 * Binary frames of the peer transport. Every frame travels as one record of the link (wire.ts).
 *
 * Layout (big-endian; u64 values are safe integers < 2^53):
 *
 *   frame    = version u8 | kind u8 | body
 *   hello    (kind 1) = clusterId u64 | fromId u64 | toId u64 | protocolVersion u32
 *   batch    (kind 2) = count u32 | count × (shard u32 | message)
 *   snapshot header (kind 3) = shard u32 | totalBytes u32 | message (a MsgSnap whose data is empty)
 *   snapshot chunk  (kind 4) = shard u32 | snapshotIndex u64 | offset u32 | length u32 | bytes
 *   request  (kind 5) = requestId u64 | length u32 | payload
 *   response (kind 6) = requestId u64 | status u8 | answer
 *
 *   answer   = status 0 ok:          length u32 | payload
 *              status 1 refused:     codeLength u32 | code (1..64 bytes of [a-z0-9._-]) |
 *                                    messageLength u32 | message (UTF-8, at most 1024 bytes)
 *              status 2 busy:        (nothing) the receiver was handling too many requests of the
 *                                    sender; its handler did not run
 *              status 3 unsupported: (nothing) the receiver has no request handler
 *
 *   message  = type u8 | flags u8 (1 reject, 2 snapshot, 4 context) | to, from, term, logTerm,
 *              index, commit, rejectHint: u64 | entryCount u32 | entries | [snapshot] | [context]
 *   entry    = type u8 (0 normal, 1 conf-change) | term u64 | index u64 | length u32 | data
 *   snapshot = index u64 | term u64 | voters, votersOutgoing, learners, learnersNext: (count u32 |
 *              ids u64…) | autoLeave u8 | length u32 | data
 *   context  = length u32 | bytes
 *
 * Decoding validates every length, count, enum value and integer range and throws
 * `PeerProtocolError` on anything else; no length read from the wire is trusted before it is
 * checked against the bytes that remain, so garbage cannot make the decoder allocate. Decoded
 * byte fields are views into the frame (no copy).
 *
 * Protocol version: request and response frames (kinds 5 and 6) were added WITHOUT bumping
 * `protocolVersion`. A node of the previous build checks the hello's version for equality, so a
 * bump would have made old and new nodes refuse each other's streams and broken rolling upgrades.
 * Instead a node sends kinds 5 and 6 only on a link whose other side advertised them (the feature
 * `requests` in its preamble, see wire.ts): a node without a handler never receives a frame it
 * does not expect. (Had it received one, it would have refused that link with INVALID_ARGUMENT,
 * not crashed.)
 */
import type { ConfState, Entry, EntryType, Message, MessageType, Snapshot } from '../../../raft/index.js';
import {
  confStateMembersMax,
  frameBytesMax,
  frameMessagesMax,
  messageContextBytesMax,
  messageEntriesMax,
  protocolVersion,
  refusalCodeBytesMax,
  refusalMessageBytesMax,
  requestFrameHeaderBytesMax,
  requestPayloadBytesMax,
  responsePayloadBytesMax,
  snapshotBytesMax,
  snapshotChunkBytes,
} from './limits.js';

export class PeerProtocolError extends Error {
  override readonly name = 'PeerProtocolError';
}

export interface PeerHello {
  readonly clusterId: number;
  readonly fromId: number;
  readonly toId: number;
  readonly protocolVersion: number;
}

export interface ShardMessage {
  readonly shard: number;
  readonly message: Message;
}

/** The answer a response frame carries. */
export type PeerAnswer =
  | { readonly status: 'ok'; readonly payload: Uint8Array }
  /** The receiver's handler refused; `code` and `message` are its own. */
  | { readonly status: 'refused'; readonly code: string; readonly message: string }
  /** The receiver was handling too many requests of the sender; the handler did not run. */
  | { readonly status: 'busy' }
  /** The receiver has no request handler. */
  | { readonly status: 'unsupported' };

export type PeerFrame =
  | { readonly kind: 'hello'; readonly hello: PeerHello }
  | { readonly kind: 'batch'; readonly messages: ShardMessage[] }
  | {
      readonly kind: 'snapshot-header';
      readonly shard: number;
      readonly totalBytes: number;
      /** The MsgSnap with `snapshot.data` empty; the data follows in chunk frames. */
      readonly message: Message;
    }
  | {
      readonly kind: 'snapshot-chunk';
      readonly shard: number;
      readonly snapshotIndex: number;
      readonly offset: number;
      readonly data: Uint8Array;
    }
  | { readonly kind: 'request'; readonly id: number; readonly payload: Uint8Array }
  | { readonly kind: 'response'; readonly id: number; readonly answer: PeerAnswer };

const KIND_HELLO = 1;
const KIND_BATCH = 2;
const KIND_SNAPSHOT_HEADER = 3;
const KIND_SNAPSHOT_CHUNK = 4;
const KIND_REQUEST = 5;
const KIND_RESPONSE = 6;

/** The stable wire codes of response statuses. Never renumber; add new ones at the end. */
const ANSWER_STATUSES: readonly PeerAnswer['status'][] = ['ok', 'refused', 'busy', 'unsupported'];

/** A refusal code: a short lower-case token, so that callers can switch on it. */
const REFUSAL_CODE = /^[a-z0-9][a-z0-9._-]*$/;

/**
 * The stable wire codes of message types. Never renumber; add new types at the end. Local
 * messages (MsgHup, MsgBeat, MsgCheckQuorum, MsgUnreachable, MsgSnapStatus) never cross the wire
 * and have no code.
 */
const MESSAGE_TYPE_CODES: ReadonlyMap<MessageType, number> = new Map<MessageType, number>([
  ['MsgProp', 1],
  ['MsgApp', 2],
  ['MsgAppResp', 3],
  ['MsgVote', 4],
  ['MsgVoteResp', 5],
  ['MsgPreVote', 6],
  ['MsgPreVoteResp', 7],
  ['MsgSnap', 8],
  ['MsgHeartbeat', 9],
  ['MsgHeartbeatResp', 10],
  ['MsgTransferLeader', 11],
  ['MsgTimeoutNow', 12],
  ['MsgReadIndex', 13],
  ['MsgReadIndexResp', 14],
  // Sent only to peers that list `prop-dropped` in their preamble (transport.ts).
  ['MsgPropDropped', 15],
]);
const MESSAGE_TYPES_BY_CODE: ReadonlyMap<number, MessageType> = new Map(
  [...MESSAGE_TYPE_CODES].map(([type, code]) => [code, type]),
);
/** The message types that may cross the wire, in code order. */
export const wireMessageTypes: readonly MessageType[] = [...MESSAGE_TYPE_CODES.keys()];

const ENTRY_TYPES: readonly EntryType[] = ['normal', 'conf-change'];

const FLAG_REJECT = 1;
const FLAG_SNAPSHOT = 2;
const FLAG_CONTEXT = 4;
const FLAGS_ALL = FLAG_REJECT | FLAG_SNAPSHOT | FLAG_CONTEXT;

const FRAME_HEADER_BYTES = 2;
const MESSAGE_FIXED_BYTES = 2 + 7 * 8 + 4;
const ENTRY_FIXED_BYTES = 1 + 8 + 8 + 4;
const SNAPSHOT_FIXED_BYTES = 8 + 8 + 4 * 4 + 1 + 4;
const HELLO_BYTES = FRAME_HEADER_BYTES + 3 * 8 + 4;
/** Bytes of a batch frame beyond its messages' bytes. */
export const batchFrameOverheadBytes = FRAME_HEADER_BYTES + 4;
/** Bytes each message of a batch adds beyond `messageBytes` (its shard id). */
export const batchItemOverheadBytes = 4;
/** Bytes of a chunk frame beyond its data. */
export const snapshotChunkOverheadBytes = FRAME_HEADER_BYTES + 4 + 8 + 4 + 4;
/** Bytes of a request frame beyond its payload. */
export const requestFrameOverheadBytes = FRAME_HEADER_BYTES + 8 + 4;
/** Bytes of an 'ok' response frame beyond its payload (a refusal adds a second length prefix). */
export const responseFrameOverheadBytes = FRAME_HEADER_BYTES + 8 + 1 + 4;

if (requestFrameOverheadBytes > requestFrameHeaderBytesMax || responseFrameOverheadBytes + 4 > requestFrameHeaderBytesMax) {
  throw new Error('peer/codec: request and response headers must fit requestFrameHeaderBytesMax');
}

/** Whether `code` may be a refusal's code (a token of [a-z0-9._-], 1..refusalCodeBytesMax bytes). */
export function isRefusalCode(code: string): boolean {
  return code.length > 0 && code.length <= refusalCodeBytesMax && REFUSAL_CODE.test(code);
}

/** `text` cut to at most `bytesMax` bytes of UTF-8, at a character boundary. */
export function truncateUtf8(text: string, bytesMax: number): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.byteLength <= bytesMax) return text;
  let end = bytesMax;
  // Back off over continuation bytes (10xxxxxx) so no character is split.
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end -= 1;
  return bytes.subarray(0, end).toString('utf8');
}

// ---------------------------------------------------------------------------------------------
// Encoding

function snapshotBytes(snapshot: Snapshot, dataBytes: number): number {
  const cs = snapshot.metadata.confState;
  const ids = cs.voters.length + cs.votersOutgoing.length + cs.learners.length + cs.learnersNext.length;
  return SNAPSHOT_FIXED_BYTES + ids * 8 + dataBytes;
}

/** Exact encoded size of one message (without its shard id). */
export function messageBytes(message: Message): number {
  let size = MESSAGE_FIXED_BYTES;
  for (const entry of message.entries) size += ENTRY_FIXED_BYTES + entry.data.byteLength;
  if (message.snapshot !== undefined) size += snapshotBytes(message.snapshot, message.snapshot.data.byteLength);
  if (message.context !== undefined) size += 4 + message.context.byteLength;
  return size;
}

class Writer {
  readonly bytes: Buffer;
  private readonly view: DataView;
  at = 0;

  constructor(size: number) {
    if (size > frameBytesMax) throw new TypeError(`peer frame of ${size} bytes exceeds frameBytesMax ${frameBytesMax}`);
    this.bytes = Buffer.allocUnsafe(size);
    this.view = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
  }

  u8(value: number): void {
    this.view.setUint8(this.at, value);
    this.at += 1;
  }

  u32(value: number, what: string): void {
    if (!Number.isInteger(value) || value < 0 || value > 0xffff_ffff) {
      throw new TypeError(`${what} must be a u32, got ${value}`);
    }
    this.view.setUint32(this.at, value);
    this.at += 4;
  }

  u64(value: number, what: string): void {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new TypeError(`${what} must be a non-negative safe integer, got ${value}`);
    }
    this.view.setUint32(this.at, Math.floor(value / 0x1_0000_0000));
    this.view.setUint32(this.at + 4, value >>> 0);
    this.at += 8;
  }

  raw(data: Uint8Array): void {
    this.bytes.set(data, this.at);
    this.at += data.byteLength;
  }

  lengthPrefixed(data: Uint8Array, what: string): void {
    this.u32(data.byteLength, what);
    this.raw(data);
  }

  finish(): Buffer {
    if (this.at !== this.bytes.byteLength) {
      throw new TypeError(`peer frame size miscomputed: wrote ${this.at} of ${this.bytes.byteLength} bytes`);
    }
    return this.bytes;
  }
}

function writeIds(writer: Writer, ids: readonly number[], what: string): void {
  if (ids.length > confStateMembersMax) throw new TypeError(`${what}: ${ids.length} ids exceed ${confStateMembersMax}`);
  writer.u32(ids.length, what);
  for (const id of ids) writer.u64(id, what);
}

function writeSnapshot(writer: Writer, snapshot: Snapshot, data: Uint8Array): void {
  const { index, term, confState } = snapshot.metadata;
  writer.u64(index, 'snapshot index');
  writer.u64(term, 'snapshot term');
  writeIds(writer, confState.voters, 'voters');
  writeIds(writer, confState.votersOutgoing, 'outgoing voters');
  writeIds(writer, confState.learners, 'learners');
  writeIds(writer, confState.learnersNext, 'next learners');
  writer.u8(confState.autoLeave ? 1 : 0);
  writer.lengthPrefixed(data, 'snapshot data length');
}

function writeMessage(writer: Writer, message: Message, snapshotData: Uint8Array | undefined): void {
  const code = MESSAGE_TYPE_CODES.get(message.type);
  if (code === undefined) throw new TypeError(`message type ${message.type} is local and never crosses the wire`);
  if (message.entries.length > messageEntriesMax) {
    throw new TypeError(`message has ${message.entries.length} entries, more than ${messageEntriesMax}`);
  }
  if (message.context !== undefined && message.context.byteLength > messageContextBytesMax) {
    throw new TypeError(`message context of ${message.context.byteLength} bytes exceeds ${messageContextBytesMax}`);
  }
  writer.u8(code);
  writer.u8(
    (message.reject ? FLAG_REJECT : 0) |
      (message.snapshot !== undefined ? FLAG_SNAPSHOT : 0) |
      (message.context !== undefined ? FLAG_CONTEXT : 0),
  );
  writer.u64(message.to, 'to');
  writer.u64(message.from, 'from');
  writer.u64(message.term, 'term');
  writer.u64(message.logTerm, 'logTerm');
  writer.u64(message.index, 'index');
  writer.u64(message.commit, 'commit');
  writer.u64(message.rejectHint, 'rejectHint');
  writer.u32(message.entries.length, 'entry count');
  for (const entry of message.entries) {
    writer.u8(entry.type === 'conf-change' ? 1 : 0);
    writer.u64(entry.term, 'entry term');
    writer.u64(entry.index, 'entry index');
    writer.lengthPrefixed(entry.data, 'entry data length');
  }
  if (message.snapshot !== undefined) writeSnapshot(writer, message.snapshot, snapshotData ?? message.snapshot.data);
  if (message.context !== undefined) writer.lengthPrefixed(message.context, 'context length');
}

function frameWriter(kind: number, bodyBytes: number): Writer {
  const writer = new Writer(FRAME_HEADER_BYTES + bodyBytes);
  writer.u8(protocolVersion);
  writer.u8(kind);
  return writer;
}

export function encodeHello(hello: PeerHello): Buffer {
  const writer = frameWriter(KIND_HELLO, HELLO_BYTES - FRAME_HEADER_BYTES);
  writer.u64(hello.clusterId, 'cluster id');
  writer.u64(hello.fromId, 'from id');
  writer.u64(hello.toId, 'to id');
  writer.u32(hello.protocolVersion, 'protocol version');
  return writer.finish();
}

/** Exact size of the batch frame holding `messages`. */
export function batchFrameBytes(messages: readonly ShardMessage[]): number {
  let size = batchFrameOverheadBytes;
  for (const item of messages) size += batchItemOverheadBytes + messageBytes(item.message);
  return size;
}

export function encodeBatch(messages: readonly ShardMessage[]): Buffer {
  if (messages.length === 0 || messages.length > frameMessagesMax) {
    throw new TypeError(`a batch holds 1..${frameMessagesMax} messages, got ${messages.length}`);
  }
  const writer = frameWriter(KIND_BATCH, batchFrameBytes(messages) - FRAME_HEADER_BYTES);
  writer.u32(messages.length, 'message count');
  for (const item of messages) {
    writer.u32(item.shard, 'shard');
    writeMessage(writer, item.message, undefined);
  }
  return writer.finish();
}

/** The header of a chunked snapshot: the MsgSnap without its data, and the data's size. */
export function encodeSnapshotHeader(shard: number, message: Message): Buffer {
  const snapshot = message.snapshot;
  if (message.type !== 'MsgSnap' || snapshot === undefined) throw new TypeError('a snapshot header needs a MsgSnap');
  const totalBytes = snapshot.data.byteLength;
  if (totalBytes === 0 || totalBytes > snapshotBytesMax) {
    throw new TypeError(`snapshot of ${totalBytes} bytes is outside 1..${snapshotBytesMax}`);
  }
  const body = 4 + 4 + messageBytes(message) - totalBytes;
  const writer = frameWriter(KIND_SNAPSHOT_HEADER, body);
  writer.u32(shard, 'shard');
  writer.u32(totalBytes, 'snapshot size');
  writeMessage(writer, message, new Uint8Array(0));
  return writer.finish();
}

export function encodeSnapshotChunk(shard: number, snapshotIndex: number, offset: number, data: Uint8Array): Buffer {
  if (data.byteLength === 0 || data.byteLength > snapshotChunkBytes) {
    throw new TypeError(`snapshot chunk of ${data.byteLength} bytes is outside 1..${snapshotChunkBytes}`);
  }
  const writer = frameWriter(KIND_SNAPSHOT_CHUNK, snapshotChunkOverheadBytes - FRAME_HEADER_BYTES + data.byteLength);
  writer.u32(shard, 'shard');
  writer.u64(snapshotIndex, 'snapshot index');
  writer.u32(offset, 'chunk offset');
  writer.lengthPrefixed(data, 'chunk length');
  return writer.finish();
}

export function encodeRequest(id: number, payload: Uint8Array): Buffer {
  if (id === 0) throw new TypeError('request id 0 is reserved');
  if (payload.byteLength > requestPayloadBytesMax) {
    throw new TypeError(`request payload of ${payload.byteLength} bytes exceeds ${requestPayloadBytesMax}`);
  }
  const writer = frameWriter(KIND_REQUEST, requestFrameOverheadBytes - FRAME_HEADER_BYTES + payload.byteLength);
  writer.u64(id, 'request id');
  writer.lengthPrefixed(payload, 'request payload length');
  return writer.finish();
}

export function encodeResponse(id: number, answer: PeerAnswer): Buffer {
  if (id === 0) throw new TypeError('request id 0 is reserved');
  const status = ANSWER_STATUSES.indexOf(answer.status);
  const fixed = FRAME_HEADER_BYTES + 8 + 1;
  let writer: Writer;
  switch (answer.status) {
    case 'ok':
      if (answer.payload.byteLength > responsePayloadBytesMax) {
        throw new TypeError(`response payload of ${answer.payload.byteLength} bytes exceeds ${responsePayloadBytesMax}`);
      }
      writer = frameWriter(KIND_RESPONSE, fixed - FRAME_HEADER_BYTES + 4 + answer.payload.byteLength);
      writer.u64(id, 'request id');
      writer.u8(status);
      writer.lengthPrefixed(answer.payload, 'response payload length');
      break;
    case 'refused': {
      if (!isRefusalCode(answer.code)) throw new TypeError(`refusal code '${answer.code}' is not a token of [a-z0-9._-] of 1..${refusalCodeBytesMax} bytes`);
      const code = Buffer.from(answer.code, 'latin1');
      const message = Buffer.from(answer.message, 'utf8');
      if (message.byteLength > refusalMessageBytesMax) {
        throw new TypeError(`refusal message of ${message.byteLength} bytes exceeds ${refusalMessageBytesMax}`);
      }
      writer = frameWriter(KIND_RESPONSE, fixed - FRAME_HEADER_BYTES + 4 + code.byteLength + 4 + message.byteLength);
      writer.u64(id, 'request id');
      writer.u8(status);
      writer.lengthPrefixed(code, 'refusal code length');
      writer.lengthPrefixed(message, 'refusal message length');
      break;
    }
    case 'busy':
    case 'unsupported':
      writer = frameWriter(KIND_RESPONSE, fixed - FRAME_HEADER_BYTES);
      writer.u64(id, 'request id');
      writer.u8(status);
      break;
  }
  return writer.finish();
}

// ---------------------------------------------------------------------------------------------
// Decoding

class Reader {
  private readonly view: DataView;
  at = 0;

  constructor(private readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get remaining(): number {
    return this.bytes.byteLength - this.at;
  }

  private need(n: number, what: string): void {
    if (n > this.remaining) {
      throw new PeerProtocolError(`peer frame truncated: ${what} needs ${n} bytes at offset ${this.at}, ${this.remaining} left`);
    }
  }

  u8(what: string): number {
    this.need(1, what);
    const value = this.view.getUint8(this.at);
    this.at += 1;
    return value;
  }

  u32(what: string): number {
    this.need(4, what);
    const value = this.view.getUint32(this.at);
    this.at += 4;
    return value;
  }

  u64(what: string): number {
    this.need(8, what);
    const high = this.view.getUint32(this.at);
    const low = this.view.getUint32(this.at + 4);
    if (high > 0x1f_ffff) throw new PeerProtocolError(`${what} exceeds 2^53 at offset ${this.at}`);
    this.at += 8;
    return high * 0x1_0000_0000 + low;
  }

  /** A count of items of at least `itemBytes` each, checked against `max` and the bytes left. */
  count(what: string, max: number, itemBytes: number): number {
    const n = this.u32(what);
    if (n > max) throw new PeerProtocolError(`${what} ${n} exceeds the limit ${max}`);
    if (n * itemBytes > this.remaining) throw new PeerProtocolError(`${what} ${n} does not fit the ${this.remaining} bytes left`);
    return n;
  }

  /** A u32 length followed by that many bytes, returned as a view into the frame. */
  lengthPrefixed(what: string, max: number): Uint8Array {
    const length = this.u32(`${what} length`);
    if (length > max) throw new PeerProtocolError(`${what} of ${length} bytes exceeds the limit ${max}`);
    this.need(length, what);
    const view = new Uint8Array(this.bytes.buffer, this.bytes.byteOffset + this.at, length);
    this.at += length;
    return view;
  }

  end(): void {
    if (this.remaining !== 0) throw new PeerProtocolError(`${this.remaining} trailing bytes after the peer frame`);
  }
}

function readIds(reader: Reader, what: string): number[] {
  const count = reader.count(`${what} count`, confStateMembersMax, 8);
  const ids: number[] = [];
  for (let i = 0; i < count; i++) ids.push(reader.u64(what));
  return ids;
}

function readSnapshot(reader: Reader): Snapshot {
  const index = reader.u64('snapshot index');
  const term = reader.u64('snapshot term');
  const voters = readIds(reader, 'voters');
  const votersOutgoing = readIds(reader, 'outgoing voters');
  const learners = readIds(reader, 'learners');
  const learnersNext = readIds(reader, 'next learners');
  const autoLeaveByte = reader.u8('autoLeave');
  if (autoLeaveByte > 1) throw new PeerProtocolError(`autoLeave flag must be 0 or 1, got ${autoLeaveByte}`);
  const data = reader.lengthPrefixed('snapshot data', frameBytesMax);
  const confState: ConfState = { voters, votersOutgoing, learners, learnersNext, autoLeave: autoLeaveByte === 1 };
  return { metadata: { index, term, confState }, data };
}

function readEntry(reader: Reader): Entry {
  const typeCode = reader.u8('entry type');
  const type = ENTRY_TYPES[typeCode];
  if (type === undefined) throw new PeerProtocolError(`unknown entry type ${typeCode}`);
  const term = reader.u64('entry term');
  const index = reader.u64('entry index');
  const data = reader.lengthPrefixed('entry data', frameBytesMax);
  return { term, index, type, data };
}

function readMessage(reader: Reader): Message {
  const code = reader.u8('message type');
  const type = MESSAGE_TYPES_BY_CODE.get(code);
  if (type === undefined) throw new PeerProtocolError(`unknown message type code ${code}`);
  const flags = reader.u8('message flags');
  if ((flags & ~FLAGS_ALL) !== 0) throw new PeerProtocolError(`unknown message flags 0x${flags.toString(16)}`);
  const to = reader.u64('to');
  const from = reader.u64('from');
  const term = reader.u64('term');
  const logTerm = reader.u64('logTerm');
  const index = reader.u64('index');
  const commit = reader.u64('commit');
  const rejectHint = reader.u64('rejectHint');
  const entryCount = reader.count('entry count', messageEntriesMax, ENTRY_FIXED_BYTES);
  const entries: Entry[] = [];
  for (let i = 0; i < entryCount; i++) entries.push(readEntry(reader));
  const snapshot = (flags & FLAG_SNAPSHOT) !== 0 ? readSnapshot(reader) : undefined;
  const context = (flags & FLAG_CONTEXT) !== 0 ? reader.lengthPrefixed('context', messageContextBytesMax) : undefined;
  if (type === 'MsgSnap' && snapshot === undefined) throw new PeerProtocolError('MsgSnap without a snapshot');
  // Same field order as makeMessage: monomorphic objects.
  return { type, to, from, term, logTerm, index, entries, commit, snapshot, reject: (flags & FLAG_REJECT) !== 0, rejectHint, context };
}

function readHello(reader: Reader): PeerFrame {
  const clusterId = reader.u64('cluster id');
  const fromId = reader.u64('from id');
  const toId = reader.u64('to id');
  const version = reader.u32('protocol version');
  return { kind: 'hello', hello: { clusterId, fromId, toId, protocolVersion: version } };
}

function readBatch(reader: Reader): PeerFrame {
  const count = reader.count('message count', frameMessagesMax, batchItemOverheadBytes + MESSAGE_FIXED_BYTES);
  if (count === 0) throw new PeerProtocolError('empty batch frame');
  const messages: ShardMessage[] = [];
  for (let i = 0; i < count; i++) {
    const shard = reader.u32('shard');
    messages.push({ shard, message: readMessage(reader) });
  }
  return { kind: 'batch', messages };
}

function readSnapshotHeader(reader: Reader): PeerFrame {
  const shard = reader.u32('shard');
  const totalBytes = reader.u32('snapshot size');
  if (totalBytes === 0 || totalBytes > snapshotBytesMax) {
    throw new PeerProtocolError(`snapshot size ${totalBytes} is outside 1..${snapshotBytesMax}`);
  }
  const message = readMessage(reader);
  if (message.type !== 'MsgSnap' || message.snapshot === undefined) {
    throw new PeerProtocolError(`snapshot header carries ${message.type}, not MsgSnap`);
  }
  if (message.snapshot.data.byteLength !== 0) throw new PeerProtocolError('snapshot header carries inline data');
  return { kind: 'snapshot-header', shard, totalBytes, message };
}

function readSnapshotChunk(reader: Reader): PeerFrame {
  const shard = reader.u32('shard');
  const snapshotIndex = reader.u64('snapshot index');
  const offset = reader.u32('chunk offset');
  const data = reader.lengthPrefixed('chunk', snapshotChunkBytes);
  if (data.byteLength === 0) throw new PeerProtocolError('empty snapshot chunk');
  if (offset + data.byteLength > snapshotBytesMax) throw new PeerProtocolError('snapshot chunk beyond snapshotBytesMax');
  return { kind: 'snapshot-chunk', shard, snapshotIndex, offset, data };
}

function readRequestId(reader: Reader): number {
  const id = reader.u64('request id');
  if (id === 0) throw new PeerProtocolError('request id 0 is reserved');
  return id;
}

function readRequest(reader: Reader): PeerFrame {
  const id = readRequestId(reader);
  const payload = reader.lengthPrefixed('request payload', requestPayloadBytesMax);
  return { kind: 'request', id, payload };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function readRefusal(reader: Reader): PeerAnswer {
  const codeBytes = reader.lengthPrefixed('refusal code', refusalCodeBytesMax);
  const code = Buffer.from(codeBytes.buffer, codeBytes.byteOffset, codeBytes.byteLength).toString('latin1');
  if (!isRefusalCode(code)) throw new PeerProtocolError('refusal code is not a token of [a-z0-9._-]');
  const messageBytes = reader.lengthPrefixed('refusal message', refusalMessageBytesMax);
  let message: string;
  try {
    message = utf8.decode(messageBytes);
  } catch {
    throw new PeerProtocolError('refusal message is not UTF-8');
  }
  return { status: 'refused', code, message };
}

function readResponse(reader: Reader): PeerFrame {
  const id = readRequestId(reader);
  const statusCode = reader.u8('response status');
  const status = ANSWER_STATUSES[statusCode];
  if (status === undefined) throw new PeerProtocolError(`unknown response status ${statusCode}`);
  let answer: PeerAnswer;
  switch (status) {
    case 'ok':
      answer = { status, payload: reader.lengthPrefixed('response payload', responsePayloadBytesMax) };
      break;
    case 'refused':
      answer = readRefusal(reader);
      break;
    case 'busy':
    case 'unsupported':
      answer = { status };
      break;
  }
  return { kind: 'response', id, answer };
}

export function decodeFrame(bytes: Uint8Array): PeerFrame {
  if (bytes.byteLength > frameBytesMax) {
    throw new PeerProtocolError(`peer frame of ${bytes.byteLength} bytes exceeds frameBytesMax ${frameBytesMax}`);
  }
  const reader = new Reader(bytes);
  const version = reader.u8('frame version');
  if (version !== protocolVersion) throw new PeerProtocolError(`unsupported peer frame version ${version}`);
  const kind = reader.u8('frame kind');
  let frame: PeerFrame;
  switch (kind) {
    case KIND_HELLO:
      frame = readHello(reader);
      break;
    case KIND_BATCH:
      frame = readBatch(reader);
      break;
    case KIND_SNAPSHOT_HEADER:
      frame = readSnapshotHeader(reader);
      break;
    case KIND_SNAPSHOT_CHUNK:
      frame = readSnapshotChunk(reader);
      break;
    case KIND_REQUEST:
      frame = readRequest(reader);
      break;
    case KIND_RESPONSE:
      frame = readResponse(reader);
      break;
    default:
      throw new PeerProtocolError(`unknown peer frame kind ${kind}`);
  }
  reader.end();
  return frame;
}
