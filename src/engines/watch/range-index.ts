/**
 * The synced range watchers of a shard, indexed by their key range, so an applied event finds
 * the watchers whose range holds its key in O(log n + matches) instead of asking every range
 * watcher (a config store has many `--prefix` watchers, each interested in few events).
 *
 * Watchers with the same range share one interval; the intervals form a treap ordered by (start,
 * end) whose nodes also carry the largest end below them (an augmented interval tree). Priorities
 * come from a fixed sequence, so the tree's shape, and the order in which `stab` reports
 * watchers, depend only on what was added and removed (the simulator replays from a seed).
 */
import { compareBytes, isOpenEnd } from '../../../storage/index.js';

interface Interval<T> {
  readonly start: Uint8Array;
  /** undefined: open (every key from `start` on). */
  readonly end: Uint8Array | undefined;
  readonly name: string;
  readonly priority: number;
  readonly members: Set<T>;
  /** The largest end in this subtree (undefined: open, larger than any key). */
  maxEnd: Uint8Array | undefined;
  left: Interval<T> | undefined;
  right: Interval<T> | undefined;
}

/** Whether `key` lies before `end` (an open end lies after every key). */
function beforeEnd(key: Uint8Array, end: Uint8Array | undefined): boolean {
  return end === undefined || compareBytes(key, end) < 0;
}

/** Orders ends, open last. */
function compareEnds(a: Uint8Array | undefined, b: Uint8Array | undefined): number {
  if (a === undefined) return b === undefined ? 0 : 1;
  if (b === undefined) return -1;
  return compareBytes(a, b);
}

function compareIntervals(aStart: Uint8Array, aEnd: Uint8Array | undefined, b: Interval<unknown>): number {
  return compareBytes(aStart, b.start) || compareEnds(aEnd, b.end);
}

function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

function update<T>(node: Interval<T>): void {
  let max = node.end;
  for (const child of [node.left, node.right]) {
    if (child !== undefined && compareEnds(child.maxEnd, max) > 0) max = child.maxEnd;
  }
  node.maxEnd = max;
}

function rotateRight<T>(node: Interval<T>): Interval<T> {
  const top = node.left!;
  node.left = top.right;
  top.right = node;
  update(node);
  update(top);
  return top;
}

function rotateLeft<T>(node: Interval<T>): Interval<T> {
  const top = node.right!;
  node.right = top.left;
  top.left = node;
  update(node);
  update(top);
  return top;
}

function insert<T>(root: Interval<T> | undefined, node: Interval<T>): Interval<T> {
  if (root === undefined) return node;
  if (compareIntervals(node.start, node.end, root) < 0) {
    root.left = insert(root.left, node);
    if (root.left.priority > root.priority) return rotateRight(root);
  } else {
    root.right = insert(root.right, node);
    if (root.right.priority > root.priority) return rotateLeft(root);
  }
  update(root);
  return root;
}

function remove<T>(root: Interval<T> | undefined, node: Interval<T>): Interval<T> | undefined {
  if (root === undefined) return undefined;
  if (root === node) {
    if (root.left === undefined) return root.right;
    if (root.right === undefined) return root.left;
    // Rotate the higher-priority child up, then remove the node from below it.
    if (root.left.priority > root.right.priority) {
      const top = rotateRight(root);
      top.right = remove(top.right, node);
      update(top);
      return top;
    }
    const top = rotateLeft(root);
    top.left = remove(top.left, node);
    update(top);
    return top;
  }
  if (compareIntervals(node.start, node.end, root) < 0) root.left = remove(root.left, node);
  else root.right = remove(root.right, node);
  update(root);
  return root;
}

export class RangeIndex<T> {
  private root: Interval<T> | undefined;
  private readonly byName = new Map<string, Interval<T>>();
  private readonly rangeOf = new Map<T, Interval<T>>();
  /** State of the priority sequence (xorshift32). */
  private seed = 0x9e3779b9;

  /** Members indexed. */
  get size(): number {
    return this.rangeOf.size;
  }

  /** Distinct ranges indexed. */
  get rangeCount(): number {
    return this.byName.size;
  }

  /**
   * Adds `member` for the range [start, rangeEnd) in the store's convention: rangeEnd [0] means
   * every key from `start` on. A member is in at most one range: adding it again moves it.
   */
  add(member: T, start: Uint8Array, rangeEnd: Uint8Array): void {
    this.delete(member);
    const end = isOpenEnd(rangeEnd) ? undefined : rangeEnd;
    const name = `${start.length}:${latin1(start)}${end === undefined ? '' : latin1(end)}${end === undefined ? '+' : '.'}`;
    let interval = this.byName.get(name);
    if (interval === undefined) {
      interval = { start, end, name, priority: this.nextPriority(), members: new Set(), maxEnd: end, left: undefined, right: undefined };
      this.byName.set(name, interval);
      this.root = insert(this.root, interval);
    }
    interval.members.add(member);
    this.rangeOf.set(member, interval);
  }

  /** Removes `member` (nothing if it is not indexed). */
  delete(member: T): void {
    const interval = this.rangeOf.get(member);
    if (interval === undefined) return;
    this.rangeOf.delete(member);
    interval.members.delete(member);
    if (interval.members.size > 0) return;
    this.byName.delete(interval.name);
    this.root = remove(this.root, interval);
  }

  /** Every member whose range holds `key`, appended to `out` in range order. */
  stab(key: Uint8Array, out: T[]): void {
    stabFrom(this.root, key, out);
  }

  /** Every member, in range order. */
  all(): T[] {
    const out: T[] = [];
    const walk = (node: Interval<T> | undefined): void => {
      if (node === undefined) return;
      walk(node.left);
      for (const m of node.members) out.push(m);
      walk(node.right);
    };
    walk(this.root);
    return out;
  }

  private nextPriority(): number {
    let x = this.seed;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.seed = x >>> 0;
    return this.seed;
  }
}

function stabFrom<T>(node: Interval<T> | undefined, key: Uint8Array, out: T[]): void {
  while (node !== undefined) {
    // No range below here reaches past `key`.
    if (!beforeEnd(key, node.maxEnd)) return;
    stabFrom(node.left, key, out);
    // This range and everything to its right start after `key`.
    if (compareBytes(node.start, key) > 0) return;
    if (beforeEnd(key, node.end)) for (const m of node.members) out.push(m);
    node = node.right;
  }
}
