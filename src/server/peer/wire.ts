/**
 * The peer link's framing on a plain TCP (or TLS) socket: length-prefixed records, each carrying
 * one codec frame (codec.ts) or one of the link's own control records.
 *
 * Layout (big-endian):
 *
 *   record   = length u32 (of kind and body) | kind u8 | body
 *   preamble (kind 1) = magic 'dkv-peer' (8 bytes) | linkVersion u8 | features (UTF-8, comma-separated)
 *   frame    (kind 2) = one codec frame (hello, batch, snapshot header or chunk, request, response)
 *   close    (kind 3) = code u8 (a gRPC status number, so logs and callers read as before) | details (UTF-8)
 *   cluster query  (kind 4) = (nothing): asks for the cluster's members, instead of a hello
 *   cluster answer (kind 5) = the host's cluster info
 *   ping     (kind 6) = sentAt f64 (the sender's monotonic clock, ms): keeps a quiet link proven alive
 *   pong     (kind 7) = the ping's body, echoed at once: the sender learns the link's round trip
 *
 * Both sides send a preamble first (the dialer unprompted, the acceptor once it read the
 * dialer's); then the dialer sends a hello frame or a cluster query. A side that refuses or ends
 * a link sends a close record with its reason before it closes the socket; an acceptor that
 * refuses the dialer's preamble (or first record) still sends its own preamble first, so the
 * dialer's reader gets to the close record and its reason. A record longer than
 * `linkPreambleBytesMax` before the preamble, `linkRecordBytesMaxBeforeHello` until the link is
 * live (its hello accepted) and `linkRecordBytesMax` after is a protocol error: garbage and other
 * protocols (an HTTP/2 preface reads as a length of 1.3 GB) are refused before anything is
 * buffered, and a side that has not said hello cannot make the other buffer more than a few KiB.
 * Ping and pong are refused before hello, and their body is exactly `linkPingBytes`.
 */
import { closeDetailsBytesMax, linkPreambleBytesMax, linkRecordBytesMax, linkRecordBytesMaxBeforeHello, linkVersion } from './limits.js';

export const LINK_PREAMBLE = 1;
export const LINK_FRAME = 2;
export const LINK_CLOSE = 3;
export const LINK_CLUSTER_QUERY = 4;
export const LINK_CLUSTER_ANSWER = 5;
export const LINK_PING = 6;
export const LINK_PONG = 7;
/** Bytes of a ping's (and its pong's) body. */
export const linkPingBytes = 8;

/** Bytes before a record's body: length u32 and kind u8. */
export const linkRecordHeaderBytes = 5;

const MAGIC = Buffer.from('dkv-peer', 'latin1');

/**
 * Status numbers a close record carries: the gRPC status codes the link used when it was a gRPC
 * stream, kept so that logs, tests and `queryCluster`'s callers read the same.
 */
export const linkStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  ABORTED: 10,
  PERMISSION_DENIED: 7,
  FAILED_PRECONDITION: 9,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;
export type LinkStatus = (typeof linkStatus)[keyof typeof linkStatus];

export class LinkProtocolError extends Error {
  override readonly name = 'LinkProtocolError';
}

/** One record: header and body in one buffer (bodies on the hot path are small). */
export function encodeRecord(kind: number, body: Uint8Array = new Uint8Array(0)): Buffer {
  const length = 1 + body.byteLength;
  if (length > linkRecordBytesMax) throw new TypeError(`link record of ${length} bytes exceeds linkRecordBytesMax ${linkRecordBytesMax}`);
  const record = Buffer.allocUnsafe(linkRecordHeaderBytes + body.byteLength);
  record.writeUInt32BE(length, 0);
  record.writeUInt8(kind, 4);
  record.set(body, linkRecordHeaderBytes);
  return record;
}

/** The header of a record whose body is written separately (large frames are not copied). */
export function encodeRecordHeader(kind: number, bodyBytes: number): Buffer {
  const length = 1 + bodyBytes;
  if (length > linkRecordBytesMax) throw new TypeError(`link record of ${length} bytes exceeds linkRecordBytesMax ${linkRecordBytesMax}`);
  const header = Buffer.allocUnsafe(linkRecordHeaderBytes);
  header.writeUInt32BE(length, 0);
  header.writeUInt8(kind, 4);
  return header;
}

export function encodePreamble(features: readonly string[]): Buffer {
  return encodeRecord(LINK_PREAMBLE, Buffer.concat([MAGIC, Buffer.from([linkVersion]), Buffer.from(features.join(','), 'utf8')]));
}

/** The features a preamble lists; throws `LinkProtocolError` on a wrong magic or link version. */
export function decodePreamble(body: Buffer): string[] {
  if (body.byteLength < MAGIC.byteLength + 1 || !body.subarray(0, MAGIC.byteLength).equals(MAGIC)) {
    throw new LinkProtocolError('not a dkv peer link (bad preamble)');
  }
  const version = body[MAGIC.byteLength];
  if (version !== linkVersion) throw new LinkProtocolError(`peer link version ${version}, this node speaks ${linkVersion}`);
  const list = body.subarray(MAGIC.byteLength + 1).toString('utf8');
  return list === '' ? [] : list.split(',').map((feature) => feature.trim());
}

export function encodeClose(code: LinkStatus, details: string): Buffer {
  const text = Buffer.from(details, 'utf8').subarray(0, closeDetailsBytesMax);
  return encodeRecord(LINK_CLOSE, Buffer.concat([Buffer.from([code]), text]));
}

export function decodeClose(body: Buffer): { code: number; details: string } {
  if (body.byteLength < 1) throw new LinkProtocolError('empty close record');
  // Cut, not refused: a peer may send a long reason, but only this much of it reaches a log line.
  return { code: body[0] ?? linkStatus.UNKNOWN, details: body.subarray(1, 1 + closeDetailsBytesMax).toString('utf8') };
}

/**
 * Cuts a socket's byte stream into records. Bodies are views into what arrived when a record
 * lies within one chunk, and a copy when it spans several.
 */
export class RecordReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private preambleRead = false;
  /** Bytes of a record after the preamble: small until `widen` (the link is live). */
  private recordBytesMax: number;

  constructor(recordBytesMax = linkRecordBytesMaxBeforeHello) {
    if (!Number.isSafeInteger(recordBytesMax) || recordBytesMax < linkPreambleBytesMax || recordBytesMax > linkRecordBytesMax) {
      throw new TypeError(`record limit must be in ${linkPreambleBytesMax}..${linkRecordBytesMax}, got ${recordBytesMax}`);
    }
    this.recordBytesMax = recordBytesMax;
  }

  /** Allows records up to `linkRecordBytesMax` from now on: the link's hello was accepted. */
  widen(): void {
    this.recordBytesMax = linkRecordBytesMax;
  }

  /**
   * Takes one chunk from the socket and hands every complete record to `onRecord`, in order.
   * Throws `LinkProtocolError` on a length out of bounds (the caller closes the link). Stops early
   * when `onRecord` returns false (the link was closed meanwhile).
   */
  push(chunk: Buffer, onRecord: (kind: number, body: Buffer) => boolean): void {
    this.chunks.push(chunk);
    this.buffered += chunk.byteLength;
    while (this.buffered >= linkRecordHeaderBytes) {
      const head = this.head(linkRecordHeaderBytes);
      const length = head.readUInt32BE(0);
      const lengthMax = this.preambleRead ? this.recordBytesMax : linkPreambleBytesMax;
      if (length < 1 || length > lengthMax) throw new LinkProtocolError(`link record of ${length} bytes (at most ${lengthMax} here)`);
      if (this.buffered < 4 + length) return;
      const record = this.take(4 + length);
      const kind = record[4] ?? 0;
      if (!this.preambleRead && kind !== LINK_PREAMBLE) throw new LinkProtocolError(`first link record must be a preamble, got kind ${kind}`);
      this.preambleRead = true;
      if (!onRecord(kind, record.subarray(linkRecordHeaderBytes))) return;
    }
  }

  /** The first `bytes` buffered bytes, in one buffer (merging chunks when they span several). */
  private head(bytes: number): Buffer {
    const first = this.chunks[0];
    if (first !== undefined && first.byteLength >= bytes) return first;
    const merged = Buffer.concat(this.chunks, this.buffered);
    this.chunks = [merged];
    return merged;
  }

  private take(bytes: number): Buffer {
    const head = this.head(bytes);
    const record = head.subarray(0, bytes);
    if (head.byteLength === bytes) this.chunks.shift();
    else this.chunks[0] = head.subarray(bytes);
    this.buffered -= bytes;
    return record;
  }
}
