/**
 * The ownership engine: which keys a data shard serves, decided in its own log. A shard of the
 * default store owns every key except the prefixes it ceded to mounted stores; a shard refuses
 * (`not-owned`) any write that touches a key it does not own, and the server refuses reads of
 * them, so a request routed by a node whose shard map lags (it has not applied a mount yet) can
 * neither write a key the mount would hide nor read a key's absence that another shard
 * contradicts: it gets a retryable error and is routed again.
 *
 * A prefix is ceded only while the shard holds no live key under it (`prefix-in-use` otherwise,
 * deterministic), so a mount never hides a key; it is reclaimed when its store is dropped. Both
 * are idempotent. The state is the sorted list of ceded prefixes; a shard that ceded none writes
 * no snapshot section (a build without this engine restores its snapshots).
 */
import { crc32c, prefixEnd } from '../../../storage/index.js';
import { type ApplyContext, type Engine, type EngineCommand, EngineId, type KeyOwner, UnknownCommandError } from '../engine.js';
import type { KvEngine } from '../kv/index.js';

/** The ownership engine's operation codes (in every log entry: never renumber). */
export const OwnershipCommandKind = {
  /** Stop serving the keys under a prefix (payload: the prefix's bytes). */
  Cede: 1,
  /** Serve the keys under a ceded prefix again (payload: the prefix's bytes). */
  Reclaim: 2,
} as const;

export const OWNERSHIP_COMMAND_VERSION = 1;

/** Bytes of a ceded prefix (a mount prefix is at most 512: src/cluster/limits.ts). */
export const cededPrefixBytesMax = 4096;

export function cedeCommand(prefix: Uint8Array): EngineCommand {
  return { engine: EngineId.Ownership, version: OWNERSHIP_COMMAND_VERSION, kind: OwnershipCommandKind.Cede, payload: Uint8Array.from(prefix) };
}

export function reclaimCommand(prefix: Uint8Array): EngineCommand {
  return { engine: EngineId.Ownership, version: OWNERSHIP_COMMAND_VERSION, kind: OwnershipCommandKind.Reclaim, payload: Uint8Array.from(prefix) };
}

export type OwnershipOutcome =
  | { readonly kind: 'ok' }
  | { readonly kind: 'error'; readonly code: 'prefix-in-use' | 'prefix-overlap' | 'bad-prefix'; readonly message: string };

function compare(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

function startsWith(key: Uint8Array, prefix: Uint8Array): boolean {
  if (key.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (key[i] !== prefix[i]) return false;
  return true;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export class OwnershipEngine implements Engine, KeyOwner {
  readonly id = EngineId.Ownership;
  readonly name = 'ownership';
  readonly version = OWNERSHIP_COMMAND_VERSION;
  /** Ceded prefixes, sorted, none starting another. */
  private ceded: Uint8Array[] = [];

  constructor(private readonly kv: KvEngine) {}

  apply(command: EngineCommand, _context: ApplyContext): OwnershipOutcome {
    const prefix = command.payload;
    if (command.kind !== OwnershipCommandKind.Cede && command.kind !== OwnershipCommandKind.Reclaim) throw new UnknownCommandError(`unknown ownership command kind ${command.kind}`);
    if (prefix.length === 0 || prefix.length > cededPrefixBytesMax) return { kind: 'error', code: 'bad-prefix', message: `a ceded prefix is 1 to ${cededPrefixBytesMax} bytes, got ${prefix.length}` };
    const at = this.ceded.findIndex((p) => compare(p, prefix) === 0);
    if (command.kind === OwnershipCommandKind.Reclaim) {
      if (at >= 0) this.ceded = this.ceded.filter((_, i) => i !== at);
      return { kind: 'ok' };
    }
    if (at >= 0) return { kind: 'ok' };
    const overlapping = this.ceded.find((p) => startsWith(p, prefix) || startsWith(prefix, p));
    if (overlapping !== undefined) return { kind: 'error', code: 'prefix-overlap', message: `prefix ${hex(prefix)} overlaps ceded prefix ${hex(overlapping)}` };
    const live = this.kv.mvcc.range({ key: prefix, rangeEnd: prefixEnd(prefix), countOnly: true }).count;
    if (live > 0) return { kind: 'error', code: 'prefix-in-use', message: `${live} key${live === 1 ? '' : 's'} under prefix ${hex(prefix)}` };
    this.ceded = [...this.ceded, Uint8Array.from(prefix)].sort(compare);
    return { kind: 'ok' };
  }

  /** The prefixes this shard ceded, sorted. */
  cededPrefixes(): Uint8Array[] {
    return this.ceded.map((p) => Uint8Array.from(p));
  }

  owns(key: Uint8Array, rangeEnd?: Uint8Array): boolean {
    if (this.ceded.length === 0) return true;
    // etcd's conventions: no end (or an empty one) is the key alone, [0] every key from it on.
    if (rangeEnd === undefined || rangeEnd.length === 0) return !this.ceded.some((p) => startsWith(key, p));
    const end = rangeEnd.length === 1 && rangeEnd[0] === 0 ? undefined : rangeEnd;
    // An empty range holds no key.
    if (end !== undefined && compare(key, end) >= 0) return true;
    // [key, end) meets [p, prefixEnd(p)) unless it ends at or before p or starts at or past its end.
    return !this.ceded.some((p) => {
      const pEnd = prefixEnd(p);
      const endsBefore = end !== undefined && compare(end, p) <= 0;
      const startsAfter = pEnd.length > 0 && !(pEnd.length === 1 && pEnd[0] === 0) && compare(key, pEnd) >= 0;
      return !endsBefore && !startsAfter;
    });
  }

  private encode(): Uint8Array {
    let size = 4;
    for (const p of this.ceded) size += 4 + p.length;
    const bytes = new Uint8Array(size);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, this.ceded.length);
    let at = 4;
    for (const p of this.ceded) {
      view.setUint32(at, p.length);
      bytes.set(p, at + 4);
      at += 4 + p.length;
    }
    return bytes;
  }

  snapshot(): Iterator<Uint8Array> {
    return (this.ceded.length === 0 ? [] : [this.encode()])[Symbol.iterator]();
  }

  restore(chunks: readonly Uint8Array[]): void {
    const bytes = chunks.length === 1 ? chunks[0]! : concat(chunks);
    if (bytes.length === 0) {
      this.ceded = [];
      return;
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const fail = (why: string): never => {
      throw new TypeError(`ownership snapshot section: ${why}`);
    };
    if (bytes.length < 4) fail('cut off');
    const count = view.getUint32(0);
    const restored: Uint8Array[] = [];
    let at = 4;
    for (let i = 0; i < count; i++) {
      if (at + 4 > bytes.length) fail('cut off');
      const length = view.getUint32(at);
      if (length === 0 || length > cededPrefixBytesMax || at + 4 + length > bytes.length) fail(`prefix ${i} of ${length} bytes`);
      restored.push(bytes.slice(at + 4, at + 4 + length));
      at += 4 + length;
    }
    if (at !== bytes.length) fail(`${bytes.length - at} bytes after the prefixes`);
    this.ceded = restored.sort(compare);
  }

  hash(): number {
    return this.ceded.length === 0 ? 0 : crc32c(this.encode());
  }
}

function concat(chunks: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const chunk of chunks) length += chunk.length;
  const bytes = new Uint8Array(length);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return bytes;
}
