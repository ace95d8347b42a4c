/**
 * A deliberately simple reference model of etcd 3.5's MVCC KV semantics: a Map of key → every
 * version ever written (tombstones included) in write order, scanned and sorted on demand. No
 * segments, arenas, change log or cleverness — it exists to be obviously right.
 */
import { hashKvFinish, hashKvInitial, hashKvVersion } from '../../storage/mvcc/hash.js';
import { MvccError } from '../../storage/mvcc/errors.js';
import type {
  Compare,
  DeleteRangeRequest,
  KeyValue,
  MvccEvent,
  PutRequest,
  RangeRequest,
  RangeResponse,
  RequestOp,
  ResponseOp,
  TxnRequest,
  TxnResponse,
} from '../../storage/mvcc/types.js';

interface Version {
  key: Uint8Array;
  modRevision: number;
  sub: number;
  createRevision: number;
  version: number;
  lease: bigint;
  tombstone: boolean;
  value: Uint8Array;
}

const EMPTY = new Uint8Array(0);

export function cmp(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

function hex(key: Uint8Array): string {
  return Buffer.from(key).toString('hex');
}

/** etcd's range rule: no end = the key; [0] = every key >= key; else [key, end). */
export function modelInRange(key: Uint8Array, start: Uint8Array, end: Uint8Array | undefined): boolean {
  if (end === undefined || end.length === 0) return cmp(key, start) === 0;
  if (end.length === 1 && end[0] === 0) return cmp(key, start) >= 0;
  return cmp(key, start) >= 0 && cmp(key, end) < 0;
}

function toKv(v: Version, keysOnly = false): KeyValue {
  if (v.tombstone) return { key: v.key, createRevision: 0, modRevision: v.modRevision, version: 0, value: EMPTY, lease: 0n };
  return { key: v.key, createRevision: v.createRevision, modRevision: v.modRevision, version: v.version, value: keysOnly ? EMPTY : v.value, lease: v.lease };
}

export class MvccModel {
  readonly versions = new Map<string, Version[]>();
  revision = 1;
  compactRevision = 0;
  private pending = 0;
  private events: MvccEvent[] = [];

  private sortedKeys(): Version[][] {
    return [...this.versions.values()].sort((a, b) => cmp(a[0]!.key, b[0]!.key));
  }

  private at(history: Version[], revision: number): Version | undefined {
    let found: Version | undefined;
    for (const v of history) if (v.modRevision <= revision) found = v;
    return found && !found.tombstone ? found : undefined;
  }

  private visible(): number {
    return this.revision + (this.pending > 0 ? 1 : 0);
  }

  private liveKvs(key: Uint8Array, end: Uint8Array | undefined, revision: number): Version[] {
    const out: Version[] = [];
    for (const history of this.sortedKeys()) {
      if (!modelInRange(history[0]!.key, key, end)) continue;
      const v = this.at(history, revision);
      if (v) out.push(v);
    }
    return out;
  }

  range(r: RangeRequest, visible = this.revision): RangeResponse {
    const requested = r.revision ?? 0;
    if (requested > visible) throw new MvccError('future-revision');
    if (requested > 0 && requested < this.compactRevision) throw new MvccError('compacted');
    const revision = requested > 0 ? requested : visible;
    const all = this.liveKvs(r.key, r.rangeEnd, revision);
    const count = all.length;
    if (r.countOnly) return { kvs: [], more: false, count, revision: visible };
    // Values go only after sorting and the limit (etcd sorts by value even for keys_only).
    let kvs = all.map((v) => toKv(v));
    const f = (x: number | undefined) => x ?? 0;
    kvs = kvs.filter(
      (kv) =>
        !(f(r.maxModRevision) && kv.modRevision > f(r.maxModRevision)) &&
        !(f(r.minModRevision) && kv.modRevision < f(r.minModRevision)) &&
        !(f(r.maxCreateRevision) && kv.createRevision > f(r.maxCreateRevision)) &&
        !(f(r.minCreateRevision) && kv.createRevision < f(r.minCreateRevision)),
    );
    const target = r.sortTarget ?? 'key';
    let order = r.sortOrder ?? 'none';
    if (target !== 'key' && order === 'none') order = 'ascend';
    if (order !== 'none') {
      const value = (kv: KeyValue): number | Uint8Array =>
        target === 'key' ? kv.key : target === 'value' ? kv.value : target === 'version' ? kv.version : target === 'create' ? kv.createRevision : kv.modRevision;
      const c = (a: KeyValue, b: KeyValue) => {
        const x = value(a);
        const y = value(b);
        return typeof x === 'number' ? x - (y as number) : cmp(x, y as Uint8Array);
      };
      kvs = [...kvs].sort((a, b) => (order === 'ascend' ? c(a, b) : c(b, a)));
    }
    const limit = r.limit ?? 0;
    let more = false;
    if (limit > 0 && kvs.length > limit) {
      kvs = kvs.slice(0, limit);
      more = true;
    }
    if (r.keysOnly === true) kvs = kvs.map((kv) => ({ ...kv, value: EMPTY }));
    return { kvs, more, count, revision: visible };
  }

  private write(key: Uint8Array, make: (live: Version | undefined) => Omit<Version, 'key' | 'modRevision' | 'sub'>): void {
    const name = hex(key);
    const history = this.versions.get(name) ?? [];
    const latest = history[history.length - 1];
    const live = latest && !latest.tombstone ? latest : undefined;
    const R = this.revision + 1;
    const v: Version = { key: key.slice(), modRevision: R, sub: this.pending++, ...make(live) };
    const before = this.at(history, R - 1);
    history.push(v);
    this.versions.set(name, history);
    const event: MvccEvent = { type: v.tombstone ? 'delete' : 'put', kv: toKv(v) };
    this.events.push(before ? { ...event, prevKv: toKv(before) } : event);
  }

  private doPut(p: PutRequest): { revision: number; prevKv?: KeyValue } {
    const history = this.versions.get(hex(p.key));
    const latest = history?.[history.length - 1];
    const live = latest && !latest.tombstone ? latest : undefined;
    this.write(p.key, (l) => ({
      createRevision: l ? l.createRevision : this.revision + 1,
      version: l ? l.version + 1 : 1,
      lease: p.ignoreLease ? l!.lease : (p.lease ?? 0n),
      tombstone: false,
      value: p.ignoreValue ? l!.value : p.value.slice(),
    }));
    return p.prevKv && live ? { revision: this.revision + 1, prevKv: toKv(live) } : { revision: this.revision + 1 };
  }

  private doDelete(d: DeleteRangeRequest): { revision: number; deleted: number; prevKvs?: KeyValue[] } {
    const live = this.liveKvs(d.key, d.rangeEnd, this.visible());
    for (const v of live) this.write(v.key, () => ({ createRevision: 0, version: 0, lease: 0n, tombstone: true, value: EMPTY }));
    const out = { revision: this.visible(), deleted: live.length };
    return d.prevKv ? { ...out, prevKvs: live.map((v) => toKv(v)) } : out;
  }

  private finish(): MvccEvent[] {
    if (this.pending > 0) this.revision++;
    this.pending = 0;
    const events = this.events;
    this.events = [];
    return events;
  }

  private hasLive(key: Uint8Array): boolean {
    return this.at(this.versions.get(hex(key)) ?? [], this.revision) !== undefined;
  }

  put(p: PutRequest) {
    if (p.key.length === 0) throw new MvccError('empty-key');
    if (p.ignoreValue && p.value.length > 0) throw new MvccError('value-provided');
    if (p.ignoreLease && (p.lease ?? 0n) !== 0n) throw new MvccError('lease-provided');
    if ((p.ignoreValue || p.ignoreLease) && !this.hasLive(p.key)) throw new MvccError('key-not-found');
    const response = this.doPut(p);
    return { ...response, events: this.finish() };
  }

  deleteRange(d: DeleteRangeRequest) {
    const response = this.doDelete(d);
    const events = this.finish();
    return { ...response, revision: this.revision, events };
  }

  private compare(c: Compare): boolean {
    const kvs = this.liveKvs(c.key, c.rangeEnd, this.revision).map((v) => toKv(v));
    const check = (kv: KeyValue) => {
      const r =
        c.target === 'value'
          ? Math.sign(cmp(kv.value, c.value as Uint8Array))
          : c.target === 'lease'
            ? Number(kv.lease - (c.value as bigint) > 0n) - Number(kv.lease - (c.value as bigint) < 0n)
            : Math.sign((c.target === 'version' ? kv.version : c.target === 'create' ? kv.createRevision : kv.modRevision) - (c.value as number));
      return c.result === 'equal' ? r === 0 : c.result === 'not-equal' ? r !== 0 : c.result === 'greater' ? r > 0 : r < 0;
    };
    if (kvs.length === 0) return c.target === 'value' ? false : check({ key: c.key, createRevision: 0, modRevision: 0, version: 0, value: EMPTY, lease: 0n });
    return kvs.every(check);
  }

  /** Every put key and delete interval of a branch; throws duplicate-key like etcd's checkIntervals. */
  private intervals(ops: readonly RequestOp[]): { puts: Map<string, Uint8Array>; dels: [Uint8Array, Uint8Array | undefined][] } {
    const dels: [Uint8Array, Uint8Array | undefined][] = [];
    for (const op of ops) {
      if (op.type !== 'deleteRange') continue;
      const { key, rangeEnd } = op.deleteRange;
      if (rangeEnd && rangeEnd.length > 0) dels.push([key, rangeEnd]);
      else dels.push([key, new Uint8Array([...key, 0])]);
    }
    // etcd's interval overlap with a point: begin <= k < end (a raw "\0" end overlaps nothing).
    const hit = (k: Uint8Array) => dels.some(([b, e]) => cmp(b, k) <= 0 && (e === undefined || cmp(k, e) < 0));
    const puts = new Map<string, Uint8Array>();
    for (const op of ops) {
      if (op.type !== 'txn') continue;
      const a = this.intervals(op.txn.success);
      const b = this.intervals(op.txn.failure);
      for (const [n, k] of a.puts) {
        if (puts.has(n) || hit(k)) throw new MvccError('duplicate-key');
        puts.set(n, k);
      }
      for (const [n, k] of b.puts) {
        if ((puts.has(n) && !a.puts.has(n)) || hit(k)) throw new MvccError('duplicate-key');
        puts.set(n, k);
      }
      dels.push(...a.dels, ...b.dels);
    }
    for (const op of ops) {
      if (op.type !== 'put') continue;
      const n = hex(op.put.key);
      if (puts.has(n) || hit(op.put.key)) throw new MvccError('duplicate-key');
      puts.set(n, op.put.key);
    }
    return { puts, dels };
  }

  private checkOps(t: TxnRequest, budget: number): void {
    const n = Math.max(t.compare.length, t.success.length, t.failure.length);
    if (n > budget) throw new MvccError('too-many-operations');
    for (const c of t.compare) if (c.key.length === 0) throw new MvccError('empty-key');
    for (const op of [...t.success, ...t.failure]) {
      if (op.type === 'txn') this.checkOps(op.txn, budget - n);
      else if (op.type === 'put') {
        const p = op.put;
        if (p.key.length === 0) throw new MvccError('empty-key');
        if (p.ignoreValue && p.value.length > 0) throw new MvccError('value-provided');
        if (p.ignoreLease && (p.lease ?? 0n) !== 0n) throw new MvccError('lease-provided');
      } else if ((op.type === 'range' ? op.range.key : op.deleteRange.key).length === 0) throw new MvccError('empty-key');
    }
  }

  txn(t: TxnRequest) {
    this.checkOps(t, 128);
    this.intervals(t.success);
    this.intervals(t.failure);
    // All compares (nested ones too) see the state before the txn.
    type Plan = { ok: boolean; nested: Plan[] };
    const plan = (x: TxnRequest): Plan => {
      const ok = x.compare.every((c) => this.compare(c));
      return { ok, nested: (ok ? x.success : x.failure).filter((o) => o.type === 'txn').map((o) => plan((o as { txn: TxnRequest }).txn)) };
    };
    const root = plan(t);
    const deleted: DeleteRangeRequest[] = [];
    const check = (x: TxnRequest, p: Plan) => {
      let i = 0;
      for (const op of p.ok ? x.success : x.failure) {
        if (op.type === 'range') {
          const r = op.range.revision ?? 0;
          if (r > this.revision) throw new MvccError('future-revision');
          if (r > 0 && r < this.compactRevision) throw new MvccError('compacted');
        } else if (op.type === 'put' && (op.put.ignoreValue || op.put.ignoreLease)) {
          if (!this.hasLive(op.put.key) || deleted.some((d) => modelInRange(op.put.key, d.key, d.rangeEnd))) throw new MvccError('key-not-found');
        } else if (op.type === 'deleteRange') deleted.push(op.deleteRange);
        else if (op.type === 'txn') check(op.txn, p.nested[i++]!);
      }
    };
    check(t, root);
    const run = (x: TxnRequest, p: Plan): TxnResponse => {
      const responses: ResponseOp[] = [];
      let i = 0;
      for (const op of p.ok ? x.success : x.failure) {
        if (op.type === 'range') responses.push({ type: 'range', range: this.range(op.range, this.visible()) });
        else if (op.type === 'put') responses.push({ type: 'put', put: this.doPut(op.put) });
        else if (op.type === 'deleteRange') responses.push({ type: 'deleteRange', deleteRange: this.doDelete(op.deleteRange) });
        else responses.push({ type: 'txn', txn: run(op.txn, p.nested[i++]!) });
      }
      return { succeeded: p.ok, responses, revision: this.visible() };
    };
    const response = run(t, root);
    const events = this.finish();
    return { ...response, revision: this.revision, events };
  }

  compact(revision: number): void {
    if (revision <= this.compactRevision) throw new MvccError('compacted');
    if (revision > this.revision) throw new MvccError('future-revision');
    this.compactRevision = revision;
    for (const [name, history] of this.versions) {
      let keepFrom = -1;
      history.forEach((v, i) => {
        if (v.modRevision <= revision) keepFrom = i;
      });
      let kept = keepFrom < 0 ? history : history.slice(keepFrom);
      if (keepFrom >= 0 && kept[0]!.tombstone) kept = kept.slice(1);
      if (kept.length === 0) this.versions.delete(name);
      else this.versions.set(name, kept);
    }
  }

  hashKV(revision = 0): number {
    if (revision > this.revision) throw new MvccError('future-revision');
    if (revision > 0 && revision < this.compactRevision) throw new MvccError('compacted');
    const at = revision > 0 ? revision : this.revision;
    let hash = hashKvInitial;
    for (const history of this.sortedKeys()) for (const v of history) if (v.modRevision <= at) hash = hashKvVersion(hash, v);
    return hashKvFinish(hash, this.compactRevision);
  }

  changes(from: number, to: number | undefined, key?: Uint8Array, rangeEnd?: Uint8Array): MvccEvent[] {
    if (from < this.compactRevision || from < 1) throw new MvccError('compacted');
    const last = Math.min(to ?? this.revision, this.revision);
    const all: { v: Version; prev: Version | undefined }[] = [];
    for (const history of this.versions.values()) {
      for (const v of history) {
        if (v.modRevision < from || v.modRevision > last) continue;
        if (key !== undefined && !modelInRange(v.key, key, rangeEnd)) continue;
        all.push({ v, prev: this.at(history, v.modRevision - 1) });
      }
    }
    all.sort((a, b) => a.v.modRevision - b.v.modRevision || a.v.sub - b.v.sub);
    return all.map(({ v, prev }) => {
      const e: MvccEvent = { type: v.tombstone ? 'delete' : 'put', kv: toKv(v) };
      return prev ? { ...e, prevKv: toKv(prev) } : e;
    });
  }

  get keyCount(): number {
    return this.liveKvs(new Uint8Array([0]), new Uint8Array([0]), this.revision).length;
  }
}

/** Uint8Arrays as hex and bigints as text, so results compare as plain data. */
export function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  if (typeof value === 'bigint') return `${value}n`;
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = plain(v);
    return out;
  }
  return value;
}
