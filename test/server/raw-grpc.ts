/**
 * gRPC over a bare Node HTTP/2 session, for tests that must decide which frames go out together
 * and in what order (a gRPC client library buffers, reorders calls over its own queues and reads
 * ahead). Messages are framed and read back by hand; every answer is kept as its raw bytes.
 */
import { type ClientHttp2Session, type ClientHttp2Stream, connect as http2Connect, constants as http2Constants } from 'node:http2';
import { waitUntil } from './cluster-harness.js';

/** A call's deadline (sent as grpc-timeout): an answer from a healthy local server comes far sooner. */
export const rawCallDeadlineMs = 5000;
/** How long a connection may stay open once it has nothing left to do (server or client closing it). */
export const sessionCloseMsMax = 5000;
/** gRPC's length-prefixed message: 1 flag byte, 4 length bytes. */
const grpcFrameHeaderBytes = 5;

/** One gRPC length-prefixed message (uncompressed). */
export function grpcFramed(message: Uint8Array): Buffer {
  const header = Buffer.alloc(grpcFrameHeaderBytes);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}

/** Splits gRPC length-prefixed messages off the front of `buffer`; the rest stays for more data. */
export function grpcDeframe(buffer: Buffer): { messages: Buffer[]; rest: Buffer } {
  const messages: Buffer[] = [];
  let offset = 0;
  while (buffer.length - offset >= grpcFrameHeaderBytes) {
    const length = buffer.readUInt32BE(offset + 1);
    if (buffer.length - offset - grpcFrameHeaderBytes < length) break;
    messages.push(buffer.subarray(offset + grpcFrameHeaderBytes, offset + grpcFrameHeaderBytes + length));
    offset += grpcFrameHeaderBytes + length;
  }
  return { messages, rest: buffer.subarray(offset) };
}

/** How a raw call ended: its gRPC status (undefined when the stream was reset) and messages. */
export interface RawOutcome {
  readonly grpcStatus: number | undefined;
  readonly rstCode: number;
  readonly messages: Buffer[];
}

/** One HTTP/2 connection, driven frame by frame; remembers every GOAWAY the server sent. */
export class RawSession {
  readonly goawaysReceived: number[] = [];
  private isClosed = false;

  private constructor(readonly session: ClientHttp2Session) {
    session.on('goaway', (code: number) => this.goawaysReceived.push(code));
    session.on('error', () => undefined);
    session.once('close', () => (this.isClosed = true));
  }

  /** Waits for the connection to be closed (by either side). */
  closed(what: string): Promise<void> {
    return waitUntil(() => this.isClosed, sessionCloseMsMax, () => what);
  }

  static async open(endpoint: string): Promise<RawSession> {
    const session = http2Connect(`http://${endpoint}`);
    await new Promise<void>((resolve, reject) => {
      session.once('connect', () => resolve());
      session.once('error', reject);
    });
    return new RawSession(session);
  }

  /** Opens a call; `onMessage` sees each response message as it arrives. */
  open(path: string, onMessage: (message: Buffer) => void = () => undefined): { stream: ClientHttp2Stream; outcome: Promise<RawOutcome> } {
    const stream = this.session.request({
      [http2Constants.HTTP2_HEADER_METHOD]: 'POST',
      [http2Constants.HTTP2_HEADER_PATH]: path,
      [http2Constants.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
      te: 'trailers',
      'grpc-timeout': `${rawCallDeadlineMs}m`,
    });
    const outcome = new Promise<RawOutcome>((resolve) => {
      let grpcStatus: number | undefined;
      let pending: Buffer = Buffer.alloc(0);
      const messages: Buffer[] = [];
      const readStatus = (headers: Record<string, unknown>): void => {
        if (headers['grpc-status'] !== undefined) grpcStatus = Number(headers['grpc-status']);
      };
      stream.on('response', readStatus);
      stream.on('trailers', readStatus);
      stream.on('data', (chunk: Buffer) => {
        const { messages: arrived, rest } = grpcDeframe(Buffer.concat([pending, chunk]));
        pending = rest;
        for (const message of arrived) {
          messages.push(message);
          onMessage(message);
        }
      });
      stream.on('error', () => undefined);
      stream.on('close', () => resolve({ grpcStatus, rstCode: stream.rstCode ?? 0, messages }));
    });
    return { stream, outcome };
  }

  /** A unary call, sent whole (HEADERS, DATA, end of stream) in this turn of the event loop. */
  unary(path: string, request: Uint8Array): Promise<RawOutcome> {
    const { stream, outcome } = this.open(path);
    stream.end(grpcFramed(request));
    return outcome;
  }

  /** Sends a GOAWAY with NO_ERROR and keeps the session open (what a client does before its last calls). */
  goaway(): void {
    this.session.goaway(http2Constants.NGHTTP2_NO_ERROR);
  }
}
