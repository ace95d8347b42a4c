import { assert } from './assert.js';

/**
 * The append messages in flight to one follower: a bounded ring of (last index, payload bytes),
 * freed as acknowledgements arrive. Full when either the message count or the byte count reaches
 * its maximum.
 */
export class Inflights {
  private start = 0;
  private countNow = 0;
  private bytesNow = 0;
  private readonly indexes: number[];
  private readonly sizes: number[];

  constructor(
    readonly messagesMax: number,
    /** 0 means unlimited bytes. */
    readonly bytesMax: number,
  ) {
    assert(Number.isSafeInteger(messagesMax) && messagesMax > 0, 'inflight messages max must be positive');
    assert(Number.isSafeInteger(bytesMax) && bytesMax >= 0, 'inflight bytes max must be non-negative');
    this.indexes = [];
    this.sizes = [];
  }

  get count(): number {
    return this.countNow;
  }

  get bytes(): number {
    return this.bytesNow;
  }

  /** Records a message whose last entry is `index`; indexes must increase. */
  add(index: number, bytes: number): void {
    assert(!this.full(), 'cannot add to a full inflights window');
    if (this.countNow > 0) {
      const last = this.indexes[(this.start + this.countNow - 1) % this.messagesMax]!;
      assert(index > last, () => `inflight index ${index} not above the previous ${last}`);
    }
    const slot = (this.start + this.countNow) % this.messagesMax;
    this.indexes[slot] = index;
    this.sizes[slot] = bytes;
    this.countNow++;
    this.bytesNow += bytes;
  }

  /** Frees every message whose last index is at or below `index`. */
  freeLE(index: number): void {
    if (this.countNow === 0 || index < this.indexes[this.start]!) return;
    let freed = 0;
    let bytes = 0;
    let slot = this.start;
    while (freed < this.countNow && this.indexes[slot]! <= index) {
      bytes += this.sizes[slot]!;
      freed++;
      slot = (slot + 1) % this.messagesMax;
    }
    this.countNow -= freed;
    this.bytesNow -= bytes;
    this.start = this.countNow === 0 ? 0 : slot;
  }

  full(): boolean {
    return this.countNow === this.messagesMax || (this.bytesMax > 0 && this.bytesNow >= this.bytesMax);
  }

  reset(): void {
    this.start = 0;
    this.countNow = 0;
    this.bytesNow = 0;
  }

  clone(): Inflights {
    const copy = new Inflights(this.messagesMax, this.bytesMax);
    for (let i = 0; i < this.countNow; i++) {
      const slot = (this.start + i) % this.messagesMax;
      copy.add(this.indexes[slot]!, this.sizes[slot]!);
    }
    return copy;
  }
}
