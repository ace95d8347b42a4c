/**
 * Responses waiting for a server stream: written as fast as gRPC takes them; when gRPC asks to
 * wait ('drain'), they queue here. The queue's bytes are what a slow client costs the server, so
 * its owner checks `hasRoom()` against a named limit before adding more.
 */
import type { EventEmitter } from 'node:events';

interface Writable extends EventEmitter {
  write(response: object): boolean;
}

export class ResponseQueue {
  private readonly queue: Array<{ response: object; bytes: number }> = [];
  private queuedBytes = 0;
  private waiting = false;
  private closed = false;

  /** `onRoom` runs after a drain left room below `bytesMax`. */
  constructor(
    private readonly call: Writable,
    private readonly bytesMax: number,
    private readonly onRoom: () => void,
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
    return this.queue.length === 0;
  }

  push(response: object, bytes: number): void {
    if (this.closed) return;
    this.queue.push({ response, bytes });
    this.queuedBytes += bytes;
    this.flush();
  }

  /** Writes queued responses until gRPC asks us to wait. */
  flush(): void {
    while (!this.waiting && this.queue.length > 0 && !this.closed) {
      const { response, bytes } = this.queue.shift()!;
      this.queuedBytes -= bytes;
      if (!this.call.write(response)) this.waiting = true;
    }
  }

  close(): void {
    this.closed = true;
    this.queue.length = 0;
    this.queuedBytes = 0;
  }
}
