/**
 * etcd's key permissions as byte-string intervals, and the check a request's key range must pass.
 *
 * A permission (authpb.Permission) names a key, a range or a prefix:
 *  - `rangeEnd` empty: the one key `key`, the interval [key, key + "\0");
 *  - `rangeEnd` "\0": every key from `key` on, [key, +∞);
 *  - otherwise [key, rangeEnd), valid only when key < rangeEnd (etcd's isValidPermissionRange).
 * A request's range is read the same way. A user may do what the union of its roles' intervals of
 * that type covers: the whole of the request's range must be covered (a point is covered when one
 * interval holds it). READWRITE counts as both READ and WRITE.
 */
import { compareBytes as compare, isOpenEnd } from '../../../storage/index.js';

/** authpb.Permission.Type (never renumber: it is in the log and in snapshots). */
export const PermissionType = {
  Read: 0,
  Write: 1,
  ReadWrite: 2,
} as const;
export type PermissionType = (typeof PermissionType)[keyof typeof PermissionType];

export function isPermissionType(value: unknown): value is PermissionType {
  return value === PermissionType.Read || value === PermissionType.Write || value === PermissionType.ReadWrite;
}

export interface KeyPermission {
  readonly permType: PermissionType;
  readonly key: Uint8Array;
  readonly rangeEnd: Uint8Array;
}

/** A half-open interval of byte strings; `end` undefined is +∞. */
export interface KeyInterval {
  readonly begin: Uint8Array;
  readonly end: Uint8Array | undefined;
}

const ZERO = new Uint8Array([0]);

/** `end` compared with `other`, +∞ (undefined) above every byte string. */
function compareEnds(end: Uint8Array | undefined, other: Uint8Array | undefined): number {
  if (end === undefined) return other === undefined ? 0 : 1;
  if (other === undefined) return -1;
  return compare(end, other);
}

function pointEnd(key: Uint8Array): Uint8Array {
  const end = new Uint8Array(key.length + 1);
  end.set(key);
  return end;
}

/**
 * Whether a permission's key and range end are acceptable (etcd's isValidPermissionRange): a
 * non-empty key, and a range end that is empty (one key), "\0" (open-ended) or above the key.
 */
export function isValidPermissionRange(key: Uint8Array, rangeEnd: Uint8Array): boolean {
  if (key.length === 0) return false;
  if (rangeEnd.length === 0 || isOpenEnd(rangeEnd)) return true;
  return compare(key, rangeEnd) < 0;
}

/**
 * The keys `key` and `rangeEnd` name, as an interval. A range end at or below the key (a request
 * that names no key) is read as the key alone, so such a request needs the permission of `key`.
 */
export function keyInterval(key: Uint8Array, rangeEnd: Uint8Array): KeyInterval {
  if (rangeEnd.length === 0) return { begin: key, end: pointEnd(key) };
  if (isOpenEnd(rangeEnd)) return { begin: key, end: undefined };
  if (compare(key, rangeEnd) >= 0) return { begin: key, end: pointEnd(key) };
  return { begin: key, end: rangeEnd };
}

/** A union of intervals, kept merged: sorted, disjoint and not touching. */
export class IntervalSet {
  private constructor(private readonly intervals: readonly KeyInterval[]) {}

  static readonly empty = new IntervalSet([]);

  static of(intervals: readonly KeyInterval[]): IntervalSet {
    const sorted = [...intervals].sort((a, b) => compare(a.begin, b.begin) || compareEnds(a.end, b.end));
    const merged: KeyInterval[] = [];
    for (const next of sorted) {
      const last = merged[merged.length - 1];
      // Touching or overlapping (next starts at or before last's end): one interval.
      if (last !== undefined && (last.end === undefined || compare(next.begin, last.end) <= 0)) {
        if (compareEnds(next.end, last.end) > 0) merged[merged.length - 1] = { begin: last.begin, end: next.end };
      } else {
        merged.push(next);
      }
    }
    return new IntervalSet(merged);
  }

  /** How many merged intervals (for tests). */
  get size(): number {
    return this.intervals.length;
  }

  /** Whether every key of `interval` is in the set. */
  covers(interval: KeyInterval): boolean {
    // The last merged interval starting at or before the request: only it can hold the request's
    // first key, and as merged intervals do not touch, it must hold the whole request.
    let lo = 0;
    let hi = this.intervals.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (compare(this.intervals[mid]!.begin, interval.begin) <= 0) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    if (found < 0) return false;
    return compareEnds(this.intervals[found]!.end, interval.end) >= 0;
  }
}

/** What one user may read and write: the union of its roles' permissions. */
export class UserPermissions {
  private constructor(
    readonly read: IntervalSet,
    readonly write: IntervalSet,
  ) {}

  static of(permissions: Iterable<KeyPermission>): UserPermissions {
    const read: KeyInterval[] = [];
    const write: KeyInterval[] = [];
    for (const p of permissions) {
      const interval = keyInterval(p.key, p.rangeEnd);
      if (p.permType !== PermissionType.Write) read.push(interval);
      if (p.permType !== PermissionType.Read) write.push(interval);
    }
    return new UserPermissions(IntervalSet.of(read), IntervalSet.of(write));
  }

  /** Whether the keys `key`..`rangeEnd` name may be read (`Read`) or written (`Write`). */
  permits(key: Uint8Array, rangeEnd: Uint8Array, type: typeof PermissionType.Read | typeof PermissionType.Write): boolean {
    return (type === PermissionType.Read ? this.read : this.write).covers(keyInterval(key, rangeEnd));
  }
}

/** The root role's one permission as etcd reports it: read and write on every key. */
export const rootPermission: KeyPermission = { permType: PermissionType.ReadWrite, key: new Uint8Array(0), rangeEnd: ZERO };

