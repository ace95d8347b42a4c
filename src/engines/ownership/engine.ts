/**
 * The ownership engine: which keys a data shard serves, decided in its own log. A shard of the
 * default store owns every key except the prefixes it ceded to mounted stores; a shard refuses
 * (`not-owned`) any write that touches a key it does not own, and the server refuses reads of
 * them, so a request routed by a node whose shard map lags (it has not applied a mount yet) can
 * neither write a key the mount would hide nor read a key's absence that another shard
 * contradicts: it gets a retryable error and is routed again.
 *
 * A prefix is ceded to one mounted store, named by its first shard id (ids are never reused, so
 * the id names one incarnation of the store), only while the shard holds no live key under it
 * (`prefix-in-use` otherwise, deterministic), so a mount never hides a key; it is reclaimed for
 * the same store when that store is dropped. Both are idempotent; a prefix ceded to another store
 * is refused (`prefix-ceded`, naming it) until that store's is reclaimed. A store's own shard is
 * **retired** before its store is dropped: from then on it serves no key at all, so no node whose
 * map still routes to it has a write acknowledged there that the drop would lose, or reads a key
 * the default store serves again. A shard **split** (the Split command) serves only `[lo, hi)`
 * of its keys from then on; the child the state machine makes at that index serves the rest. The
 * state is the sorted list of (prefix, store), the retired flag and the split bounds; a shard with
 * none of them writes no snapshot section (a build without this engine restores its
 * snapshots). Authentication and stores exclude each other here, in the default store's one log:
 * a prefix is not ceded while auth is on (`auth-enabled`), and auth is not enabled while a prefix
 * is ceded (the auth engine asks `hasCessions`).
 */
import { crc32c, prefixEnd } from '../../../storage/index.js';
import { compareKeys, storePrefixBytesMax } from '../../cluster/model.js';
import { bytesToHex, concatBytes } from '../bytes.js';
import { type ApplyContext, type Engine, type EngineCommand, EngineId, type KeyOwner, UnknownCommandError } from '../engine.js';
import type { KvEngine } from '../kv/index.js';

/** The ownership engine's operation codes (in every log entry: never renumber). */
export const OwnershipCommandKind = {
  /** Stop serving the keys under a prefix (payload: the store's first shard id u64, then the prefix's bytes). */
  Cede: 1,
  /** Serve the keys under a ceded prefix again (payload: as Cede's). */
  Reclaim: 2,
  /** Serve no key any more: the store of this shard is being dropped (payload: the store's first shard id u64). */
  Retire: 3,
  /**
   * Split the shard at a key (version 2): from then on it serves only the keys below it, and a
   * child shard made from this state at this index serves the rest (payload: the child's shard id
   * u64, the split key's length u32 and bytes, then the shard's end before the split as a flag byte
   * (1: there is one), its length u32 and bytes). At version 3 a split refused fences its child:
   * no later split into that child applies, so the coordinator may undo the map's split.
   */
  Split: 4,
} as const;

/** The version of the ownership commands this build applies (Split needs 2, a fenced Split 3). */
export const OWNERSHIP_COMMAND_VERSION = 3;
/** The version of Cede, Reclaim and Retire (members of every build apply them). */
export const OWNERSHIP_CESSION_VERSION = 1;
/** The first version with Split: proposed only once every member applies it. */
export const OWNERSHIP_SPLIT_VERSION = 2;
/**
 * The first version whose refused Split fences its child (`splitFence`): every later split into
 * that child is refused too, whatever the shard's state then. Proposed only once every member
 * applies it; the snapshot section is at this version while a fence is set.
 */
export const OWNERSHIP_FENCED_SPLIT_VERSION = 3;

/** Bytes of a ceded prefix: a mount prefix's limit. */
export const cededPrefixBytesMax = storePrefixBytesMax;

const OWNER_BYTES = 8;
/** Marks the snapshot tail of a shard with split bounds. */
const BOUNDS_TAG = 0xb0;
/** Marks the split fence after the bounds. */
const FENCE_TAG = 0xb1;

function payloadOf(prefix: Uint8Array, store: number): Uint8Array {
  const payload = new Uint8Array(OWNER_BYTES + prefix.length);
  new DataView(payload.buffer).setBigUint64(0, BigInt(store));
  payload.set(prefix, OWNER_BYTES);
  return payload;
}

/** Cede `prefix` to the store whose first shard is `store`. */
export function cedeCommand(prefix: Uint8Array, store: number): EngineCommand {
  return { engine: EngineId.Ownership, version: OWNERSHIP_CESSION_VERSION, kind: OwnershipCommandKind.Cede, payload: payloadOf(prefix, store) };
}

/** Reclaim `prefix` from the store whose first shard is `store` (nothing happens if it holds it not). */
export function reclaimCommand(prefix: Uint8Array, store: number): EngineCommand {
  return { engine: EngineId.Ownership, version: OWNERSHIP_CESSION_VERSION, kind: OwnershipCommandKind.Reclaim, payload: payloadOf(prefix, store) };
}

/** Retire a store's shard (its store is being dropped): it serves no key from then on. */
export function retireCommand(store: number): EngineCommand {
  return { engine: EngineId.Ownership, version: OWNERSHIP_CESSION_VERSION, kind: OwnershipCommandKind.Retire, payload: payloadOf(new Uint8Array(0), store) };
}

/**
 * Split the shard at `at` into itself (keys below) and shard `child` (`[at, end)`; `end`: the
 * shard's end before the split, undefined for none). At `version` 3 (the default) a refusal fences
 * the child; 2 is for a cluster with a member of an earlier build.
 */
export function splitCommand(child: number, at: Uint8Array, end: Uint8Array | undefined, version = OWNERSHIP_FENCED_SPLIT_VERSION): EngineCommand {
  const payload = new Uint8Array(OWNER_BYTES + 4 + at.length + 1 + 4 + (end?.length ?? 0));
  const view = new DataView(payload.buffer);
  view.setBigUint64(0, BigInt(child));
  view.setUint32(OWNER_BYTES, at.length);
  payload.set(at, OWNER_BYTES + 4);
  let offset = OWNER_BYTES + 4 + at.length;
  payload[offset] = end === undefined ? 0 : 1;
  view.setUint32(offset + 1, end?.length ?? 0);
  offset += 5;
  if (end !== undefined) payload.set(end, offset);
  return { engine: EngineId.Ownership, version, kind: OwnershipCommandKind.Split, payload };
}

/** A split command's payload, or why it is malformed. */
function parseSplit(payload: Uint8Array): { child: number; at: Uint8Array; end: Uint8Array | undefined } | string {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  if (payload.length < OWNER_BYTES + 4 + 5) return `a split command of ${payload.length} bytes`;
  const child = view.getBigUint64(0);
  const atLength = view.getUint32(OWNER_BYTES);
  let offset = OWNER_BYTES + 4;
  if (offset + atLength + 5 > payload.length) return 'a split command whose key is cut off';
  const at = payload.slice(offset, offset + atLength);
  offset += atLength;
  const flag = payload[offset]!;
  const endLength = view.getUint32(offset + 1);
  offset += 5;
  if (flag > 1 || offset + endLength !== payload.length || (flag === 0 && endLength !== 0)) return 'a split command whose end is malformed';
  if (child === 0n || child > BigInt(Number.MAX_SAFE_INTEGER)) return `a split child is a shard id, got ${child}`;
  return { child: Number(child), at, end: flag === 0 ? undefined : payload.slice(offset) };
}

/** What a split needs of the rest of the state machine. */
export interface Splitter {
  /** Leases of this shard: a shard holding any is not split (a lease's keys would span two shards). */
  leaseCount(): number;
  /**
   * Makes shard `child` from this state machine's state at this index, serving `[at, end)`, and
   * keeps in this one only the keys below `at` (every engine's `retainRange`).
   */
  split(child: number, at: Uint8Array, end: Uint8Array | undefined): void;
}

/** A ceded prefix and the store (its first shard id) it was ceded to. */
export interface Cession {
  readonly prefix: Uint8Array;
  readonly store: number;
}

export type OwnershipOutcome =
  | { readonly kind: 'ok' }
  | {
      readonly kind: 'error';
      readonly code: 'prefix-in-use' | 'prefix-overlap' | 'bad-prefix' | 'prefix-ceded' | 'auth-enabled' | 'bad-split';
      readonly message: string;
      /** The store (first shard id) and prefix a `prefix-ceded` or `prefix-overlap` refusal names. */
      readonly store?: number;
      readonly prefix?: Uint8Array;
    };


function startsWith(key: Uint8Array, prefix: Uint8Array): boolean {
  if (key.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (key[i] !== prefix[i]) return false;
  return true;
}


export class OwnershipEngine implements Engine, KeyOwner {
  readonly id = EngineId.Ownership;
  readonly name = 'ownership';
  readonly version = OWNERSHIP_COMMAND_VERSION;
  /** Version 3 only with a split fence, 2 only with split bounds: an earlier build restores every other section. */
  get sectionVersion(): number {
    if (this.fence !== 0) return OWNERSHIP_FENCED_SPLIT_VERSION;
    return this.lo === undefined && this.hi === undefined ? OWNERSHIP_CESSION_VERSION : OWNERSHIP_SPLIT_VERSION;
  }
  /** Ceded prefixes with their stores, sorted by prefix, no prefix starting another. */
  private ceded: Cession[] = [];
  /** The store (first shard id) this shard was retired for; 0: serving. */
  private retiredFor = 0;
  /** The keys the shard serves are at or above this (undefined: no lower bound); set by splits. */
  private lo: Uint8Array | undefined;
  /** The keys the shard serves are below this (undefined: no upper bound); set by splits. */
  private hi: Uint8Array | undefined;
  /** The highest child id a fenced split into was refused (0: none): no split into it or below applies. */
  private fence = 0;

  constructor(
    private readonly kv: KvEngine,
    /** Whether authentication is on in this state machine (a prefix is not ceded then). */
    private readonly authEnabled: () => boolean = () => false,
    /** How this shard splits (without one, a split is refused). */
    private readonly splitter?: Splitter,
  ) {}

  apply(command: EngineCommand, _context: ApplyContext): OwnershipOutcome {
    if (command.kind === OwnershipCommandKind.Split) return this.applySplit(command);
    if (command.kind !== OwnershipCommandKind.Cede && command.kind !== OwnershipCommandKind.Reclaim && command.kind !== OwnershipCommandKind.Retire) throw new UnknownCommandError(`unknown ownership command kind ${command.kind}`);
    if (command.payload.length < OWNER_BYTES) throw new UnknownCommandError(`an ownership command of ${command.payload.length} bytes`);
    const owner = new DataView(command.payload.buffer, command.payload.byteOffset, command.payload.byteLength).getBigUint64(0);
    const prefix = command.payload.subarray(OWNER_BYTES);
    if (owner === 0n || owner > BigInt(Number.MAX_SAFE_INTEGER)) return { kind: 'error', code: 'bad-prefix', message: `a prefix is ceded to a store's first shard id, got ${owner}` };
    const store = Number(owner);
    if (command.kind === OwnershipCommandKind.Retire) {
      if (prefix.length !== 0) throw new UnknownCommandError(`a retire command with ${prefix.length} bytes of prefix`);
      this.retiredFor ||= store;
      return { kind: 'ok' };
    }
    if (prefix.length === 0 || prefix.length > cededPrefixBytesMax) return { kind: 'error', code: 'bad-prefix', message: `a ceded prefix is 1 to ${cededPrefixBytesMax} bytes, got ${prefix.length}` };
    const at = this.ceded.findIndex((c) => compareKeys(c.prefix, prefix) === 0);
    const held = at >= 0 ? this.ceded[at]! : undefined;
    if (command.kind === OwnershipCommandKind.Reclaim) {
      if (held !== undefined && held.store === store) this.ceded = this.ceded.filter((_, i) => i !== at);
      return { kind: 'ok' };
    }
    if (held !== undefined) {
      return held.store === store
        ? { kind: 'ok' }
        : { kind: 'error', code: 'prefix-ceded', message: `prefix ${bytesToHex(prefix)} is ceded to the store of shard ${held.store}`, store: held.store, prefix: Uint8Array.from(held.prefix) };
    }
    const overlapping = this.ceded.find((c) => startsWith(c.prefix, prefix) || startsWith(prefix, c.prefix));
    if (overlapping !== undefined) {
      return {
        kind: 'error',
        code: 'prefix-overlap',
        message: `prefix ${bytesToHex(prefix)} overlaps prefix ${bytesToHex(overlapping.prefix)}, ceded to the store of shard ${overlapping.store}`,
        store: overlapping.store,
        prefix: Uint8Array.from(overlapping.prefix),
      };
    }
    if (this.authEnabled()) return { kind: 'error', code: 'auth-enabled', message: 'authentication is on: the default store keeps every key while it is' };
    const live = this.kv.mvcc.range({ key: prefix, rangeEnd: prefixEnd(prefix), countOnly: true }).count;
    if (live > 0) return { kind: 'error', code: 'prefix-in-use', message: `${live} key${live === 1 ? '' : 's'} under the prefix` };
    this.ceded = [...this.ceded, { prefix: Uint8Array.from(prefix), store }].sort((a, b) => compareKeys(a.prefix, b.prefix));
    return { kind: 'ok' };
  }

  /**
   * A split: refused (changing nothing, alike on every replica) when the shard is retired, ceded a
   * prefix (the default store's), holds a lease, or `at` is not strictly inside the keys it serves;
   * `end` must be the shard's end as it knows it (a stale command is refused). A split at the
   * shard's end already is the same split again: ok, nothing done. A split into a child at or
   * below the fence is refused; a fenced split (version 3) refused raises the fence to its child,
   * the only change a refusal makes.
   */
  private applySplit(command: EngineCommand): OwnershipOutcome {
    if (command.version < OWNERSHIP_SPLIT_VERSION) throw new UnknownCommandError(`an ownership split needs version ${OWNERSHIP_SPLIT_VERSION}, got ${command.version}`);
    const parsed = parseSplit(command.payload);
    // Malformed: refused alike everywhere (the shard keeps serving), not a reason to stop.
    if (typeof parsed === 'string') return { kind: 'error', code: 'bad-split', message: parsed };
    const { child, at, end } = parsed;
    // Fenced first: a refused split stays refused even once another split at its key applied.
    if (child <= this.fence) return { kind: 'error', code: 'bad-split', message: `a split into shard ${child} was refused here before (the shard is fenced against it up to shard ${this.fence})` };
    if (this.hi !== undefined && compareKeys(this.hi, at) === 0) return { kind: 'ok' };
    const refuse = (message: string): OwnershipOutcome => {
      if (command.version >= OWNERSHIP_FENCED_SPLIT_VERSION) this.fence = child;
      return { kind: 'error', code: 'bad-split', message };
    };
    if (this.splitter === undefined) return refuse('this shard cannot split');
    if (this.retiredFor !== 0) return refuse('the shard is retired (its store is being dropped)');
    if (this.ceded.length > 0) return refuse('the shard ceded prefixes to other stores (a default-store shard)');
    if (this.authEnabled()) return refuse('authentication is on (stores and auth exclude each other)');
    if (at.length === 0) return refuse('the split key is empty');
    if (this.lo !== undefined && compareKeys(at, this.lo) <= 0) return refuse(`the split key ${bytesToHex(at)} is not above the shard's start ${bytesToHex(this.lo)}`);
    if (end !== undefined && compareKeys(at, end) >= 0) return refuse(`the split key ${bytesToHex(at)} is not below the shard's end ${bytesToHex(end)}`);
    if (this.hi !== undefined && (end === undefined || compareKeys(end, this.hi) !== 0)) {
      return refuse(`the shard ends at ${bytesToHex(this.hi)}, the split says ${end === undefined ? '(no end)' : bytesToHex(end)}`);
    }
    const leases = this.splitter.leaseCount();
    if (leases > 0) return refuse(`the shard holds ${leases} lease${leases === 1 ? '' : 's'}`);
    if (this.hi === undefined) this.hi = end === undefined ? undefined : Uint8Array.from(end);
    this.splitter.split(child, at, this.hi);
    return { kind: 'ok' };
  }

  /** Serves only keys in `[start, end)` from now on, as well as what it served (a split's halves). */
  retainRange(start: Uint8Array, end: Uint8Array | undefined): void {
    if (start.length > 0 && (this.lo === undefined || compareKeys(start, this.lo) > 0)) this.lo = Uint8Array.from(start);
    if (end !== undefined && (this.hi === undefined || compareKeys(end, this.hi) < 0)) this.hi = Uint8Array.from(end);
  }

  /** The keys this shard serves by its splits: `[lo, hi)`, either undefined for no bound. */
  bounds(): { readonly lo: Uint8Array | undefined; readonly hi: Uint8Array | undefined } {
    return { lo: this.lo === undefined ? undefined : Uint8Array.from(this.lo), hi: this.hi === undefined ? undefined : Uint8Array.from(this.hi) };
  }

  /** The highest child id a fenced split into was refused here (0: none); no split into it or below applies. */
  get splitFence(): number {
    return this.fence;
  }

  /**
   * Whether this shard serves one part of a split store shard (it has split bounds and is not
   * retired): a key outside its bounds moved to a shard split from it, which keeps its history.
   */
  get servesSplitPart(): boolean {
    return this.retiredFor === 0 && (this.lo !== undefined || this.hi !== undefined);
  }

  /** Whether a split at `at` was applied here (this shard ends there, or below). */
  splitApplied(at: Uint8Array): boolean {
    return this.hi !== undefined && compareKeys(this.hi, at) <= 0;
  }

  /** The prefixes this shard ceded, with their stores, by prefix. */
  cessions(): Cession[] {
    return this.ceded.map((c) => ({ prefix: Uint8Array.from(c.prefix), store: c.store }));
  }

  /** Whether this shard ceded any prefix (authentication is not enabled then). */
  get hasCessions(): boolean {
    return this.ceded.length > 0;
  }

  /** The store (first shard id) this shard was retired for; 0 while it serves. */
  get retired(): number {
    return this.retiredFor;
  }

  /**
   * Restored from another cluster's backup as a new cluster: that cluster's stores are not in it
   * (a backup holds the default store alone), so what was ceded to them is served again.
   */
  restoredAsNew(): void {
    this.ceded = [];
    this.retiredFor = 0;
    this.lo = undefined;
    this.hi = undefined;
  }

  owns(key: Uint8Array, rangeEnd?: Uint8Array): boolean {
    if (this.retiredFor !== 0) return false;
    // etcd's conventions: no end (or an empty one) is the key alone, [0] every key from it on.
    const single = rangeEnd === undefined || rangeEnd.length === 0;
    const end = single ? undefined : rangeEnd.length === 1 && rangeEnd[0] === 0 ? undefined : rangeEnd;
    // An empty range holds no key.
    if (!single && end !== undefined && compareKeys(key, end) >= 0) return true;
    if (this.lo !== undefined && compareKeys(key, this.lo) < 0) return false;
    if (this.hi !== undefined) {
      if (compareKeys(key, this.hi) >= 0) return false;
      // The range's last key is below `end`: within bounds when end <= hi.
      if (!single && (end === undefined || compareKeys(end, this.hi) > 0)) return false;
    }
    if (this.ceded.length === 0) return true;
    if (single) return !this.ceded.some((c) => startsWith(key, c.prefix));
    // [key, end) meets [p, prefixEnd(p)) unless it ends at or before p or starts at or past its end.
    return !this.ceded.some(({ prefix: p }) => {
      const pEnd = prefixEnd(p);
      const endsBefore = end !== undefined && compareKeys(end, p) <= 0;
      const startsAfter = pEnd.length > 0 && !(pEnd.length === 1 && pEnd[0] === 0) && compareKeys(key, pEnd) >= 0;
      return !endsBefore && !startsAfter;
    });
  }

  /**
   * count u32 | per cession: store u64, prefix length u32, prefix | then, with no bounds: [retired
   * for u64, when retired]; with bounds (a split shard): BOUNDS_TAG u8, retired for u64 (0: not),
   * lo length i32 (-1: none), lo, hi length i32 (-1: none), hi, and with a split fence FENCE_TAG
   * u8, fence u64 (a fence alone has the bounded form with neither bound). The tail is never 8
   * bytes long with bounds, so the two forms are told apart by its length.
   */
  private encode(): Uint8Array {
    const bounded = this.lo !== undefined || this.hi !== undefined || this.fence !== 0;
    const fenceBytes = this.fence === 0 ? 0 : 1 + OWNER_BYTES;
    let size = 4 + (bounded ? 1 + OWNER_BYTES + 8 + (this.lo?.length ?? 0) + (this.hi?.length ?? 0) + fenceBytes : this.retiredFor === 0 ? 0 : OWNER_BYTES);
    for (const c of this.ceded) size += OWNER_BYTES + 4 + c.prefix.length;
    const bytes = new Uint8Array(size);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, this.ceded.length);
    let at = 4;
    for (const c of this.ceded) {
      view.setBigUint64(at, BigInt(c.store));
      view.setUint32(at + OWNER_BYTES, c.prefix.length);
      bytes.set(c.prefix, at + OWNER_BYTES + 4);
      at += OWNER_BYTES + 4 + c.prefix.length;
    }
    if (bounded) {
      bytes[at] = BOUNDS_TAG;
      view.setBigUint64(at + 1, BigInt(this.retiredFor));
      at += 1 + OWNER_BYTES;
      for (const bound of [this.lo, this.hi]) {
        view.setInt32(at, bound === undefined ? -1 : bound.length);
        if (bound !== undefined) bytes.set(bound, at + 4);
        at += 4 + (bound?.length ?? 0);
      }
      if (this.fence !== 0) {
        bytes[at] = FENCE_TAG;
        view.setBigUint64(at + 1, BigInt(this.fence));
      }
    } else if (this.retiredFor !== 0) view.setBigUint64(at, BigInt(this.retiredFor));
    return bytes;
  }

  private get empty(): boolean {
    return this.ceded.length === 0 && this.retiredFor === 0 && this.lo === undefined && this.hi === undefined && this.fence === 0;
  }

  snapshot(): Iterator<Uint8Array> {
    return (this.empty ? [] : [this.encode()])[Symbol.iterator]();
  }

  restore(chunks: readonly Uint8Array[]): void {
    const bytes = concatBytes(chunks);
    if (bytes.length === 0) {
      this.ceded = [];
      this.retiredFor = 0;
      this.lo = undefined;
      this.hi = undefined;
      this.fence = 0;
      return;
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const fail = (why: string): never => {
      throw new TypeError(`ownership snapshot section: ${why}`);
    };
    if (bytes.length < 4) fail('cut off');
    const count = view.getUint32(0);
    const restored: Cession[] = [];
    let at = 4;
    for (let i = 0; i < count; i++) {
      if (at + OWNER_BYTES + 4 > bytes.length) fail('cut off');
      const store = view.getBigUint64(at);
      const length = view.getUint32(at + OWNER_BYTES);
      if (store === 0n || store > BigInt(Number.MAX_SAFE_INTEGER)) fail(`store ${store} of prefix ${i}`);
      if (length === 0 || length > cededPrefixBytesMax || at + OWNER_BYTES + 4 + length > bytes.length) fail(`prefix ${i} of ${length} bytes`);
      restored.push({ store: Number(store), prefix: bytes.slice(at + OWNER_BYTES + 4, at + OWNER_BYTES + 4 + length) });
      at += OWNER_BYTES + 4 + length;
    }
    let retired = 0;
    let lo: Uint8Array | undefined;
    let hi: Uint8Array | undefined;
    let fence = 0;
    if (at + OWNER_BYTES === bytes.length) {
      const store = view.getBigUint64(at);
      if (store === 0n || store > BigInt(Number.MAX_SAFE_INTEGER)) fail(`retired for store ${store}`);
      retired = Number(store);
      at += OWNER_BYTES;
    } else if (at < bytes.length) {
      if (bytes[at] !== BOUNDS_TAG || at + 1 + OWNER_BYTES > bytes.length) fail('a malformed tail after the prefixes');
      const store = view.getBigUint64(at + 1);
      if (store > BigInt(Number.MAX_SAFE_INTEGER)) fail(`retired for store ${store}`);
      retired = Number(store);
      at += 1 + OWNER_BYTES;
      const bound = (): Uint8Array | undefined => {
        if (at + 4 > bytes.length) fail('a bound is cut off');
        const length = view.getInt32(at);
        at += 4;
        if (length === -1) return undefined;
        if (length < 0 || at + length > bytes.length) fail(`a bound of ${length} bytes`);
        const key = bytes.slice(at, at + length);
        at += length;
        return key;
      };
      lo = bound();
      hi = bound();
      if (at < bytes.length && bytes[at] === FENCE_TAG) {
        if (at + 1 + OWNER_BYTES > bytes.length) fail('a split fence cut off');
        const child = view.getBigUint64(at + 1);
        if (child === 0n || child > BigInt(Number.MAX_SAFE_INTEGER)) fail(`a split fence at shard ${child}`);
        fence = Number(child);
        at += 1 + OWNER_BYTES;
      }
      if (lo === undefined && hi === undefined && fence === 0) fail('bounds with neither end');
    }
    if (at !== bytes.length) fail(`${bytes.length - at} bytes after the prefixes`);
    this.ceded = restored.sort((a, b) => compareKeys(a.prefix, b.prefix));
    this.retiredFor = retired;
    this.lo = lo;
    this.hi = hi;
    this.fence = fence;
  }

  hash(): number {
    return this.empty ? 0 : crc32c(this.encode());
  }
}
