/**
 * The command envelope: what every normal Raft entry of a shard carries. The runtime builds it
 * when it hands a proposal to Raft; the state machine opens it on apply and routes the payload to
 * its engine.
 *
 *   format u8 (2) | engine u8 | engine command version u8 | command kind u8 |
 *   timestamp u64 (ms, the leader's clock) | proposer u64 | request id u64 | payload
 *
 * - `engine` and `version` say who applies the payload and in which format; a build that does
 *   not know them must not apply the entry (see ShardStateMachine). `kind` is the engine's own
 *   operation code (a KV put, a delete, …), so the payload can be a request's bytes as they
 *   arrived, never copied to make room for a header of its own.
 * - `timestamp` is the leader's clock when it accepted the command. A follower's proposal carries
 *   its own clock until the leader stamps it (the leader rewrites the field when a forwarded
 *   proposal reaches it), so `apply` never reads a clock: time enters only through the log.
 * - `proposer` and `request id` let the node that proposed a command find the waiting request
 *   when the command is applied; nothing else depends on them.
 *
 * Format 3 is format 2 with the caller after the header — the client request's authenticated
 * user and the auth revision its permissions were checked at (etcd's request header):
 *
 *   format u8 (3) | … as format 2 … | auth revision u64 | user length u16 | user (UTF-8) | payload
 *
 * Every command a client's request proposes carries a caller (an empty user while auth is off or
 * the request came with no token), so the state machine re-checks permissions where the command
 * is applied; commands a node proposes on its own (a leader's lease expiry) are format 2.
 *
 * Format 1 (version u8 = 1 | KV command kind u8 | proposer u64 | request id u64 | etcd request)
 * is what earlier builds wrote; it still decodes, as a version-1 command of the legacy engine id 0,
 * so a data directory written by them keeps working.
 */
import type { Caller, EngineCommand } from '../engines/index.js';
import { readU64, writeU64 } from '../../storage/index.js';

export type { Caller, EngineCommand };

export const ENVELOPE_FORMAT = 2;
/** Format 2 with the caller after the header. */
export const ENVELOPE_FORMAT_CALLER = 3;
export const ENVELOPE_HEADER_BYTES = 28;
/** The caller's fixed part: auth revision u64 | user length u16. */
const CALLER_HEADER_BYTES = 10;
/** Where the caller's fields sit after the fixed header: auth revision (u64), then the user name's length (u16). */
const AT_CALLER_REVISION = ENVELOPE_HEADER_BYTES;
const AT_CALLER_USER_LENGTH = ENVELOPE_HEADER_BYTES + 8;
/** The longest user name a command can carry (bytes of UTF-8). */
export const callerUserBytesMax = 0xffff;
const LEGACY_FORMAT = 1;
const LEGACY_HEADER_BYTES = 18;

/** Offsets of the header fields. */
const AT_ENGINE = 1;
const AT_VERSION = 2;
const AT_KIND = 3;
const AT_TIMESTAMP = 4;
const AT_PROPOSER = 12;
const AT_REQUEST_ID = 20;

/** The engine id that format-1 entries decode to (a KV command of an earlier build). */
export const LEGACY_ENGINE = 0;

export interface CommandEnvelope extends EngineCommand {
  readonly timestampMs: number;
  readonly proposer: number;
  readonly requestId: number;
  /** Who asked for it (format 3): every client request's command has one. */
  readonly caller?: Caller;
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

/** Whether `bytes` is a command in format 2 or 3 (both have the same fixed header). */
function isCurrentFormat(bytes: Uint8Array): boolean {
  return bytes.length >= ENVELOPE_HEADER_BYTES && (bytes[0] === ENVELOPE_FORMAT || bytes[0] === ENVELOPE_FORMAT_CALLER);
}

export class EnvelopeDecodeError extends Error {
  override readonly name = 'EnvelopeDecodeError';
}

function assertByte(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 255) throw new TypeError(`${what} must be a byte, got ${value}`);
}

export function encodeEnvelope(envelope: CommandEnvelope): Uint8Array {
  assertByte(envelope.engine, 'engine');
  assertByte(envelope.version, 'version');
  assertByte(envelope.kind, 'kind');
  const caller = envelope.caller;
  const user = caller === undefined ? undefined : utf8Encoder.encode(caller.user);
  if (caller !== undefined) {
    if (!Number.isSafeInteger(caller.authRevision) || caller.authRevision < 0) throw new TypeError(`bad auth revision ${caller.authRevision}`);
    if (user!.length > callerUserBytesMax) throw new TypeError(`a user name of ${user!.length} bytes is over ${callerUserBytesMax}`);
  }
  const at = user === undefined ? ENVELOPE_HEADER_BYTES : ENVELOPE_HEADER_BYTES + CALLER_HEADER_BYTES + user.length;
  const bytes = new Uint8Array(at + envelope.payload.length);
  bytes[0] = caller === undefined ? ENVELOPE_FORMAT : ENVELOPE_FORMAT_CALLER;
  bytes[AT_ENGINE] = envelope.engine;
  bytes[AT_VERSION] = envelope.version;
  bytes[AT_KIND] = envelope.kind;
  writeU64(bytes, AT_TIMESTAMP, envelope.timestampMs);
  writeU64(bytes, AT_PROPOSER, envelope.proposer);
  writeU64(bytes, AT_REQUEST_ID, envelope.requestId);
  if (caller !== undefined) {
    writeU64(bytes, AT_CALLER_REVISION, caller.authRevision);
    bytes[AT_CALLER_USER_LENGTH] = user!.length >>> 8;
    bytes[AT_CALLER_USER_LENGTH + 1] = user!.length & 0xff;
    bytes.set(user!, ENVELOPE_HEADER_BYTES + CALLER_HEADER_BYTES);
  }
  bytes.set(envelope.payload, at);
  return bytes;
}

export function decodeEnvelope(bytes: Uint8Array): CommandEnvelope {
  if (bytes.length > 0 && bytes[0] === LEGACY_FORMAT) return decodeLegacy(bytes);
  if (bytes.length < ENVELOPE_HEADER_BYTES) throw new EnvelopeDecodeError(`a command of ${bytes.length} bytes is shorter than its header`);
  if (!isCurrentFormat(bytes)) throw new EnvelopeDecodeError(`unknown command envelope format ${bytes[0]}`);
  const timestampMs = readU64(bytes, AT_TIMESTAMP);
  const proposer = readU64(bytes, AT_PROPOSER);
  const requestId = readU64(bytes, AT_REQUEST_ID);
  if (Number.isNaN(timestampMs) || Number.isNaN(proposer) || Number.isNaN(requestId)) {
    throw new EnvelopeDecodeError('command header fields beyond 2^53');
  }
  const header = { engine: bytes[AT_ENGINE]!, version: bytes[AT_VERSION]!, kind: bytes[AT_KIND]!, timestampMs, proposer, requestId };
  if (bytes[0] === ENVELOPE_FORMAT) return { ...header, payload: bytes.subarray(ENVELOPE_HEADER_BYTES) };
  if (bytes.length < ENVELOPE_HEADER_BYTES + CALLER_HEADER_BYTES) throw new EnvelopeDecodeError('a command\'s caller is cut off');
  const authRevision = readU64(bytes, AT_CALLER_REVISION);
  const userBytes = (bytes[AT_CALLER_USER_LENGTH]! << 8) | bytes[AT_CALLER_USER_LENGTH + 1]!;
  const payloadAt = ENVELOPE_HEADER_BYTES + CALLER_HEADER_BYTES + userBytes;
  if (Number.isNaN(authRevision)) throw new EnvelopeDecodeError('a caller\'s auth revision beyond 2^53');
  if (payloadAt > bytes.length) throw new EnvelopeDecodeError('a command\'s caller is cut off');
  let user: string;
  try {
    user = utf8Decoder.decode(bytes.subarray(ENVELOPE_HEADER_BYTES + CALLER_HEADER_BYTES, payloadAt));
  } catch {
    throw new EnvelopeDecodeError('a caller\'s user name is not UTF-8');
  }
  return { ...header, caller: { user, authRevision }, payload: bytes.subarray(payloadAt) };
}

function decodeLegacy(bytes: Uint8Array): CommandEnvelope {
  if (bytes.length < LEGACY_HEADER_BYTES) throw new EnvelopeDecodeError(`a format-1 command of ${bytes.length} bytes is shorter than its header`);
  const proposer = readU64(bytes, 2);
  const requestId = readU64(bytes, 10);
  if (Number.isNaN(proposer) || Number.isNaN(requestId)) throw new EnvelopeDecodeError('command header fields beyond 2^53');
  return { engine: LEGACY_ENGINE, version: 1, kind: bytes[1]!, timestampMs: 0, proposer, requestId, payload: bytes.subarray(LEGACY_HEADER_BYTES) };
}

/** The engine and version of a command, without decoding the rest (undefined if not format 2 or 3). */
export function envelopeKind(bytes: Uint8Array): { engine: number; version: number } | undefined {
  if (!isCurrentFormat(bytes)) return undefined;
  return { engine: bytes[AT_ENGINE]!, version: bytes[AT_VERSION]! };
}

/** Who proposed a command and under which request id, without decoding the rest (0, 0 if unreadable). */
export function envelopeOrigin(bytes: Uint8Array): { proposer: number; requestId: number } {
  if (isCurrentFormat(bytes)) {
    return { proposer: readU64(bytes, AT_PROPOSER), requestId: readU64(bytes, AT_REQUEST_ID) };
  }
  if (bytes.length >= LEGACY_HEADER_BYTES && bytes[0] === LEGACY_FORMAT) return { proposer: readU64(bytes, 2), requestId: readU64(bytes, 10) };
  return { proposer: 0, requestId: 0 };
}

/**
 * The same command with the leader's clock in its timestamp (a copy: the bytes given may be
 * shared with the proposer's own record of the request). Other formats pass through unchanged.
 */
export function stampEnvelope(bytes: Uint8Array, timestampMs: number): Uint8Array {
  if (!isCurrentFormat(bytes)) return bytes;
  const stamped = bytes.slice();
  writeU64(stamped, AT_TIMESTAMP, Math.max(0, Math.floor(timestampMs)));
  return stamped;
}

/** Whether bytes [from, to) of `a` and `b` are equal (a native compare: commands run to kilobytes). */
function rangeEqual(a: Uint8Array, b: Uint8Array, from: number, to: number): boolean {
  return Buffer.compare(a.subarray(from, to), b.subarray(from, to)) === 0;
}

/** Whether two envelopes carry the same command (everything but the timestamp is equal). */
export function sameCommand(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  if (!isCurrentFormat(a)) return rangeEqual(a, b, 0, a.length);
  return rangeEqual(a, b, 0, AT_TIMESTAMP) && rangeEqual(a, b, AT_TIMESTAMP + 8, a.length);
}
