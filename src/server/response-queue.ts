/**
 * Responses waiting for a server stream: written as fast as gRPC takes them; when gRPC asks to
 * wait ('drain'), they queue here. The queue's bytes are what a slow client costs the server, so
 * its owner checks `hasRoom()` against a named limit before adding more.
 */
import type { EventEmitter } from 'node:events';

interface Writable extends EventEmitter {
  write(response: object): boolean;
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

/** A queued response; while `isPending`, its owner may still add to it (and `grow` its bytes). */
export interface QueuedResponse {
  readonly response: object;
  bytes: number;
  readonly seq: number;
}

export class ResponseQueue {
  /** Queued responses are queue[head..]; the consumed front is cut off in large steps. */
  private queue: QueuedResponse[] = [];
  private head = 0;
  private nextSeq = 0;
  /** Responses written so far (every queued response with a lower seq is written). */
  private writtenSeq = 0;
  private queuedBytes = 0;
  private waiting = false;
  private closed = false;

  /** `onRoom` runs after a drain left room below `bytesMax`; `tally` counts the queued bytes too. */
  constructor(
    private readonly call: Writable,
    private readonly bytesMax: number,
    private readonly onRoom: () => void,
    private readonly tally: BufferedBytes = new BufferedBytes(),
  ) {
    call.on('drain', () => {
      this.waiting = false;
      this.flush();
      if (this.hasRoom()) this.onRoom();
    });
  }

  hasRoom(): boolean {
    return !this.closed && this.queuedBytes < this.bytesMax;
  }

  get isEmpty(): boolean {
    return this.head === this.queue.length;
  }

  /** Whether `item` is still waiting in the queue (not yet handed to gRPC). */
  isPending(item: QueuedResponse): boolean {
    return !this.closed && item.seq >= this.writtenSeq;
  }

  /** Counts `extraBytes` more for a pending item its owner added to. */
  grow(item: QueuedResponse, extraBytes: number): void {
    item.bytes += extraBytes;
    this.queuedBytes += extraBytes;
    this.tally.add(extraBytes);
  }

  push(response: object, bytes: number): QueuedResponse {
    const item: QueuedResponse = { response, bytes, seq: this.nextSeq++ };
    if (this.closed) return item;
    this.queue.push(item);
    this.queuedBytes += bytes;
    this.tally.add(bytes);
    this.flush();
    return item;
  }

  /** Writes queued responses until gRPC asks us to wait. */
  flush(): void {
    while (!this.waiting && this.head < this.queue.length && !this.closed) {
      const { response, bytes } = this.queue[this.head]!;
      this.head++;
      this.writtenSeq++;
      this.queuedBytes -= bytes;
      this.tally.add(-bytes);
      if (!this.call.write(response)) this.waiting = true;
    }
    // shift() is O(n) on a long queue: drop the written front only once it is most of the array.
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }

  close(): void {
    this.closed = true;
    this.queue = [];
    this.head = 0;
    this.tally.add(-this.queuedBytes);
    this.queuedBytes = 0;
  }
}
