import type { Message, ReadOnlyOption } from './types.js';

/** A ReadIndex request waiting for a heartbeat quorum to confirm the leader's commit index. */
export interface PendingRead {
  /** The leader's commit index when the request arrived: reads may be served at it. */
  readonly index: number;
  readonly request: Message;
  readonly acks: Map<number, boolean>;
}

/** Turns a request context into a map key (contexts are small, bounded by the limits). */
export function contextKey(context: Uint8Array | undefined): string {
  if (context === undefined || context.byteLength === 0) return '';
  let key = '';
  for (let i = 0; i < context.byteLength; i++) key += String.fromCharCode(context[i]!);
  return key;
}

/**
 * The leader's queue of ReadIndex requests: each is confirmed when a quorum answers a heartbeat
 * that carried its context (or any later one), in arrival order.
 */
export class ReadOnlyQueue {
  private readonly pending = new Map<string, PendingRead>();
  private readonly queue: string[] = [];

  constructor(readonly option: ReadOnlyOption) {}

  get size(): number {
    return this.queue.length;
  }

  has(context: Uint8Array | undefined): boolean {
    return this.pending.has(contextKey(context));
  }

  add(index: number, request: Message): void {
    const key = contextKey(request.context);
    if (this.pending.has(key)) return;
    this.pending.set(key, { index, request, acks: new Map() });
    this.queue.push(key);
  }

  /** Records a heartbeat acknowledgement; returns the acks of that request so far. */
  recvAck(from: number, context: Uint8Array | undefined): ReadonlyMap<number, boolean> | undefined {
    const read = this.pending.get(contextKey(context));
    if (read === undefined) return undefined;
    read.acks.set(from, true);
    return read.acks;
  }

  /**
   * Removes and returns every request up to and including the one with `context`: once a quorum
   * confirmed a later heartbeat, every earlier request is confirmed too.
   */
  advance(context: Uint8Array | undefined): PendingRead[] {
    const key = contextKey(context);
    const position = this.queue.indexOf(key);
    if (position < 0) return [];
    const released = this.queue.splice(0, position + 1);
    const reads: PendingRead[] = [];
    for (const releasedKey of released) {
      const read = this.pending.get(releasedKey);
      this.pending.delete(releasedKey);
      if (read !== undefined) reads.push(read);
    }
    return reads;
  }

  /** The context of the newest request: heartbeats carry it so one round confirms them all. */
  lastPendingContext(): Uint8Array | undefined {
    const key = this.queue[this.queue.length - 1];
    if (key === undefined) return undefined;
    return this.pending.get(key)!.request.context;
  }
}
