/**
 * Responses waiting for a server stream. Responses pushed during one task are written together
 * at its end; when the stream asks to wait ('drain'), they queue here. The queue's bytes are
 * what a slow client costs the server, so its owner checks `hasRoom()` against a named limit
 * before adding more.
 *
 * Two ways out. With a frame encoder, and when the grpc-js call exposes its HTTP/2 stream, each
 * flush frames every response itself (gRPC's 5-byte length prefix) and hands the stream ONE
 * write: a watch stream that gets a hundred responses in one apply pass costs one HTTP/2 write,
 * not a hundred trips through grpc-js's per-message Writable chain. (gRPC lets messages split or
 * share DATA frames any way; clients reassemble them from the prefixes.) Otherwise each response
 * goes through `call.write`, as grpc-js intends.
 */
import type { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';

interface GrpcWritable extends EventEmitter {
  write(response: object): boolean;
  sendMetadata(metadata: grpc.Metadata): void;
}

/** The part of an HTTP/2 stream the framed path uses. */
interface RawStream extends EventEmitter {
  write(chunk: Buffer, callback?: (error?: Error | null) => void): boolean;
  readonly destroyed: boolean;
  readonly writableEnded: boolean;
}

/** Bytes of responses one flush hands to the stream at most (then it flushes again). */
export const flushBytesTarget = 256 * 1024;

/** gRPC's length prefix: a compressed flag (0) and a big-endian 32-bit length. */
export const grpcPrefixBytes = 5;

/**
 * Writes responses as whole gRPC messages (5-byte length prefix included) into a buffer the queue
 * allocates once per flush: `bytes(r)` is asked first for every response of the flush, then
 * `write(r, ...)` for each, in the same order.
 */
export interface FrameEncoder {
  bytes(response: object): number;
  /** Writes the `bytes(response)` bytes of the framed response at `offset`. */
  write(response: object, out: Buffer, offset: number): void;
}

/** Writes gRPC's length prefix for a message of `length` bytes at `offset`. */
export function writeGrpcPrefix(out: Buffer, offset: number, length: number): void {
  out[offset] = 0;
  out.writeUInt32BE(length, offset + 1);
}

/** A frame encoder from a method's response serializer (each body is serialized once). */
export function grpcFrames(serialize: (response: object) => Uint8Array): FrameEncoder {
  const bodies = new Map<object, Uint8Array>();
  return {
    bytes(response) {
      const body = serialize(response);
      bodies.set(response, body);
      return grpcPrefixBytes + body.length;
    },
    write(response, out, offset) {
      const body = bodies.get(response) ?? serialize(response);
      bodies.delete(response);
      writeGrpcPrefix(out, offset, body.length);
      out.set(body, offset + grpcPrefixBytes);
    },
  };
}

/**
 * The HTTP/2 stream under a grpc-js server call, if grpc-js (the version pinned in
 * package-lock.json) exposes it as it does today: the call's `call` is the interceptor chain,
 * whose innermost link holds `stream`. Anything else (another version, interceptors that hide
 * it) gives undefined, and the queue uses `call.write`.
 */
export function rawHttp2Stream(call: object): RawStream | undefined {
  let link: unknown = (call as { call?: unknown }).call;
  for (let depth = 0; depth < 8 && link !== null && typeof link === 'object'; depth++) {
    const stream = (link as { stream?: unknown }).stream;
    if (
      stream !== null &&
      typeof stream === 'object' &&
      typeof (stream as RawStream).write === 'function' &&
      typeof (stream as { respond?: unknown }).respond === 'function' &&
      typeof (stream as { sendTrailers?: unknown }).sendTrailers === 'function'
    ) {
      return stream as RawStream;
    }
    link = (link as { nextCall?: unknown }).nextCall;
  }
  return undefined;
}

/** Bytes waiting in every queue that shares this tally (a node's watch streams), and the most ever. */
export class BufferedBytes {
  bytes = 0;
  peak = 0;

  add(delta: number): void {
    this.bytes += delta;
    if (this.bytes > this.peak) this.peak = this.bytes;
  }
}

export interface ResponseQueueOptions {
  /** Runs after a drain left room below `bytesMax`. */
  readonly onRoom: () => void;
  /** Counts the queued bytes too (shared by a node's streams, for metrics). */
  readonly tally?: BufferedBytes;
  /**
   * Frames responses as whole gRPC messages: with it, the responses of a flush are written to the
   * HTTP/2 stream together. `grpcFrames(serialize)` makes one from a serializer.
   */
  readonly frames?: FrameEncoder;
  /** Runs after a flush that left the queue empty. */
  readonly onEmpty?: () => void;
}

export class ResponseQueue {
  /**
   * Queued responses are queue[head..], their byte counts sizes[head..]; the response at index i
   * has sequence number baseSeq + i. The consumed front is cut off in large steps.
   */
  private queue: object[] = [];
  private sizes: number[] = [];
  private head = 0;
  private baseSeq = 0;
  private queuedBytes = 0;
  private waiting = false;
  private flushScheduled = false;
  private closed = false;
  private readonly tally: BufferedBytes;
  /** The HTTP/2 stream the framed path writes to (undefined: `call.write`). */
  private readonly raw: RawStream | undefined;
  private metadataSent = false;
  /** Times the stream asked us to wait for 'drain' (a slow client). */
  waits = 0;

  constructor(
    private readonly call: GrpcWritable,
    private readonly bytesMax: number,
    private readonly options: ResponseQueueOptions,
  ) {
    this.tally = options.tally ?? new BufferedBytes();
    this.raw = options.frames === undefined ? undefined : rawHttp2Stream(call);
    const drained = (): void => {
      if (!this.waiting) return;
      this.waiting = false;
      this.flush();
      if (this.hasRoom()) this.options.onRoom();
    };
    (this.raw ?? call).on('drain', drained);
  }

  /** Whether responses are framed here and written to the HTTP/2 stream in one write per flush. */
  get framed(): boolean {
    return this.raw !== undefined;
  }

  hasRoom(): boolean {
    return !this.closed && this.queuedBytes < this.bytesMax;
  }

  get isEmpty(): boolean {
    return this.head === this.queue.length;
  }

  /**
   * The response pushed as `seq` while it still waits in the queue (not yet handed to gRPC): its
   * owner may add to it, and then `grow` its bytes. Undefined once it is written.
   */
  pending(seq: number): object | undefined {
    const index = seq - this.baseSeq;
    return this.closed || index < this.head || index >= this.queue.length ? undefined : this.queue[index];
  }

  /** The bytes counted for the pending response `seq` (0 once it is written). */
  pendingBytes(seq: number): number {
    return this.pending(seq) === undefined ? 0 : this.sizes[seq - this.baseSeq]!;
  }

  /** Counts `extraBytes` more for the pending response `seq`, which its owner added to. */
  grow(seq: number, extraBytes: number): void {
    if (this.pending(seq) === undefined) return;
    this.sizes[seq - this.baseSeq]! += extraBytes;
    this.queuedBytes += extraBytes;
    this.tally.add(extraBytes);
  }

  /**
   * Queues a response and returns its sequence number; it is written at the end of the current
   * task, with the others queued in it.
   */
  push(response: object, bytes: number): number {
    const seq = this.baseSeq + this.queue.length;
    if (this.closed) return seq;
    this.queue.push(response);
    this.sizes.push(bytes);
    this.queuedBytes += bytes;
    this.tally.add(bytes);
    if (!this.flushScheduled && !this.waiting) {
      this.flushScheduled = true;
      queueMicrotask(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
    return seq;
  }

  /** Writes queued responses until the stream asks us to wait. */
  flush(): void {
    while (!this.waiting && this.head < this.queue.length && !this.closed) {
      // Take about `flushBytesTarget` of responses (at least one).
      const from = this.head;
      let bytes = 0;
      while (this.head < this.queue.length && (this.head === from || bytes < flushBytesTarget)) {
        bytes += this.sizes[this.head]!;
        this.head++;
      }
      this.queuedBytes -= bytes;
      this.tally.add(-bytes);
      if (!this.write(from, this.head)) {
        this.waiting = true;
        this.waits++;
      }
    }
    if (this.closed) return;
    // shift() is O(n) on a long queue: drop the written front only once it is most of the array.
    if (this.head === this.queue.length) {
      this.baseSeq += this.queue.length;
      this.queue = [];
      this.sizes = [];
      this.head = 0;
      this.options.onEmpty?.();
    } else if (this.head >= 1024 && this.head * 2 >= this.queue.length) {
      this.baseSeq += this.head;
      this.queue = this.queue.slice(this.head);
      this.sizes = this.sizes.slice(this.head);
      this.head = 0;
    }
  }

  /** Writes queue[from..to); false when the stream wants us to wait for 'drain'. */
  private write(from: number, to: number): boolean {
    const raw = this.raw;
    if (raw === undefined) {
      let more = true;
      for (let i = from; i < to; i++) more = this.call.write(this.queue[i]!) && more;
      return more;
    }
    if (raw.destroyed || raw.writableEnded) return true;
    if (!this.metadataSent) {
      // The response headers go first, exactly as grpc-js sends them (a no-op if it already did).
      this.call.sendMetadata(new grpc.Metadata());
      this.metadataSent = true;
    }
    const frames = this.options.frames!;
    const sizes: number[] = [];
    let total = 0;
    for (let i = from; i < to; i++) {
      const size = frames.bytes(this.queue[i]!);
      sizes.push(size);
      total += size;
    }
    const out = Buffer.allocUnsafe(total);
    let offset = 0;
    for (let i = from; i < to; i++) {
      frames.write(this.queue[i]!, out, offset);
      offset += sizes[i - from]!;
    }
    // A failed write means the stream is gone; grpc-js reports that to the call ('cancelled',
    // 'error', 'close'), which closes this queue.
    return raw.write(out, () => undefined);
  }

  close(): void {
    this.closed = true;
    this.queue = [];
    this.sizes = [];
    this.head = 0;
    this.tally.add(-this.queuedBytes);
    this.queuedBytes = 0;
  }
}
