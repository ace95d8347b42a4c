/**
 * The change log: every change the store made, in (revision, sub-revision) order, as
 * (revision, sub-revision, key) triples packed into fixed-size chunks. The changes of one revision
 * are consecutive, but need not all be there nor be numbered densely: compaction keeps only the
 * puts made at the compact revision, and a store kept for one side of a shard split
 * (`MvccStore.retained`) only that side's changes. Compaction drops whole revisions from the front
 * and frees whole chunks, so the log costs about key bytes + 16 bytes per retained change. Every
 * chunk is full but the last, except the chunks `retainAt` rebuilt at the front.
 */
import { assert } from './errors.js';
import { changeLogChunkEntries } from './limits.js';

class Chunk {
  readonly revisions = new Float64Array(changeLogChunkEntries);
  readonly subs = new Uint32Array(changeLogChunkEntries);
  /** End offset of entry i's key in `keys`. */
  readonly keyEnds = new Uint32Array(changeLogChunkEntries);
  keys = new Uint8Array(1024);
  count = 0;

  keyStart(entry: number): number {
    return entry === 0 ? 0 : this.keyEnds[entry - 1]!;
  }

  key(entry: number): Uint8Array {
    return this.keys.subarray(this.keyStart(entry), this.keyEnds[entry]!);
  }

  append(revision: number, sub: number, key: Uint8Array): void {
    const start = this.keyStart(this.count);
    if (start + key.length > this.keys.length) {
      const keys = new Uint8Array(Math.max(start + key.length, this.keys.length * 2));
      keys.set(this.keys.subarray(0, start));
      this.keys = keys;
    }
    this.keys.set(key, start);
    this.revisions[this.count] = revision;
    this.subs[this.count] = sub;
    this.keyEnds[this.count] = start + key.length;
    this.count++;
  }

  /** Gives back the unused key room of a full chunk. */
  trim(): void {
    const used = this.keyStart(this.count);
    if (this.keys.length - used > used >>> 3) this.keys = this.keys.slice(0, used);
  }
}

/** Visits one change; returning false stops the walk there. */
export type ChangeVisitor = (revision: number, sub: number, key: Uint8Array) => boolean | void;

export class ChangeLog {
  private readonly chunks: Chunk[] = [];
  /** Entries of chunks[0] already dropped by compaction. */
  private start = 0;
  private entries = 0;
  /** The last change appended (dropping changes does not move it: appends only go forward). */
  private lastRevision = 0;
  private lastSub = -1;

  get length(): number {
    return this.entries;
  }

  /** Bytes of the chunks' arrays (revisions, key ends, key bytes). */
  get bytes(): number {
    let bytes = 0;
    for (const chunk of this.chunks) bytes += chunk.revisions.byteLength + chunk.subs.byteLength + chunk.keyEnds.byteLength + chunk.keys.byteLength;
    return bytes;
  }

  /** Appends one change; (revision, sub) must come after every change appended before. */
  append(revision: number, sub: number, key: Uint8Array): void {
    assert(Number.isSafeInteger(sub) && sub >= 0 && sub <= 0xffff_ffff, 'a sub-revision is a u32');
    // invariant: the log is in strict (revision, sub) order, so no change is in it twice.
    assert(revision > this.lastRevision || (revision === this.lastRevision && sub > this.lastSub), 'change log entries must go forward in (revision, sub) order');
    this.lastRevision = revision;
    this.lastSub = sub;
    let last = this.chunks[this.chunks.length - 1];
    if (last === undefined || last.count === changeLogChunkEntries) {
      last?.trim();
      last = new Chunk();
      this.chunks.push(last);
    }
    last.append(revision, sub, key);
    this.entries++;
  }

  /** Visits the changes with fromRevision <= revision <= toRevision in order. */
  forEach(fromRevision: number, toRevision: number, visit: ChangeVisitor): void {
    let chunkNumber = this.firstChunkReaching(fromRevision);
    if (chunkNumber < 0) return;
    let entry = this.firstEntryReaching(chunkNumber, fromRevision);
    for (; chunkNumber < this.chunks.length; chunkNumber++, entry = 0) {
      const chunk = this.chunks[chunkNumber]!;
      for (; entry < chunk.count; entry++) {
        const revision = chunk.revisions[entry]!;
        if (revision > toRevision) return;
        if (visit(revision, chunk.subs[entry]!, chunk.key(entry)) === false) return;
      }
    }
  }

  /** Drops every change with revision <= `revision`, visiting each dropped key. */
  dropThrough(revision: number, visit: (key: Uint8Array) => void): void {
    while (this.chunks.length > 0) {
      const chunk = this.chunks[0]!;
      while (this.start < chunk.count && chunk.revisions[this.start]! <= revision) {
        visit(chunk.key(this.start));
        this.start++;
        this.entries--;
      }
      if (this.start < chunk.count) return;
      this.chunks.shift();
      this.start = 0;
    }
  }

  /**
   * Keeps, of the changes at `revision`, only those `keep` accepts. They must be the oldest left
   * (compaction dropped everything before `revision`). Compaction calls it for the changes at the
   * compact revision that lost their record (a delete made there): nothing reads them any more,
   * and a DeleteRange of a million keys would otherwise keep ~16 bytes plus the key for each one
   * until the next compaction. Copies the changes kept (into chunks of their own, full but the
   * last) and the rest of the chunk the last dropped one was in (at most a chunk); the chunks
   * after are untouched.
   */
  retainAt(revision: number, keep: (sub: number, key: Uint8Array) => boolean): void {
    const first = this.chunks[0];
    assert(first === undefined || this.start >= first.count || first.revisions[this.start]! >= revision, 'changes before the retained revision are still there');
    const front: Chunk[] = [];
    const add = (revisionOf: number, sub: number, key: Uint8Array): void => {
      let last = front[front.length - 1];
      if (last === undefined || last.count === changeLogChunkEntries) {
        last?.trim();
        last = new Chunk();
        front.push(last);
      }
      last.append(revisionOf, sub, key);
    };
    let atRevision = 0;
    let kept = 0;
    this.forEach(revision, revision, (_revision, sub, key) => {
      atRevision++;
      if (!keep(sub, key)) return;
      kept++;
      add(revision, sub, key);
    });
    if (kept === atRevision) return;
    this.dropThrough(revision, () => {});
    // The chunk now first may have been read part-way: its other changes move to the front too.
    const partial = this.chunks[0];
    if (partial !== undefined && this.start > 0) {
      for (let entry = this.start; entry < partial.count; entry++) add(partial.revisions[entry]!, partial.subs[entry]!, partial.key(entry));
      this.entries -= partial.count - this.start;
      this.chunks.shift();
      this.start = 0;
    }
    if (front.length === 0) return;
    // The tail takes the next appends: trimmed only when the log goes on after it.
    if (this.chunks.length > 0) front[front.length - 1]!.trim();
    for (const chunk of front) this.entries += chunk.count;
    this.chunks.unshift(...front);
  }

  private firstChunkReaching(revision: number): number {
    let low = 0;
    let high = this.chunks.length - 1;
    let found = -1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const chunk = this.chunks[middle]!;
      if (chunk.count > 0 && chunk.revisions[chunk.count - 1]! >= revision) {
        found = middle;
        high = middle - 1;
      } else {
        low = middle + 1;
      }
    }
    return found;
  }

  private firstEntryReaching(chunkNumber: number, revision: number): number {
    const chunk = this.chunks[chunkNumber]!;
    let low = chunkNumber === 0 ? this.start : 0;
    let high = chunk.count;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (chunk.revisions[middle]! < revision) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}
