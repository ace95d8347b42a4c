/**
 * Generated transactional histories for the Elle checker's tests and benchmark: random
 * transactions applied one at a time to a reference store (so the history is serializable by
 * construction, in that order), with increasing revisions, then given call/return intervals around
 * each one's point in the serial order (so real time agrees with it) on a pool of client
 * processes. Some transactions fail (never applied) or end unknown (applied or not, no return,
 * reads unknown). Mutations then break such a history in ways a checker must see.
 */
import type { ElleMicroOp, ElleModel, ElleTxn } from '../../jepsen-lite/check/index.js';
import { Random } from './lin-histories.js';

export { Random };

export interface SerialOptions {
  readonly txns: number;
  /** Client processes running at once. */
  readonly processes: number;
  /** Keys in use at once; a key is retired after `writesPerKeyMax` writes and a fresh one takes its place. */
  readonly keysActive: number;
  readonly writesPerKeyMax: number;
  readonly mopsMax: number;
  readonly failRate: number;
  readonly infoRate: number;
  /** Committed transactions whose reads come from a lagging replica (1 to 3 versions behind): a broken store. */
  readonly staleRate: number;
}

export const serialDefaults: SerialOptions = { txns: 200, processes: 10, keysActive: 6, writesPerKeyMax: 24, mopsMax: 4, failRate: 0.03, infoRate: 0.03, staleRate: 0 };

/** Where each transaction falls in the serial order and what it did there (for mutations). */
export interface SerialHistory {
  readonly model: ElleModel;
  readonly txns: ElleTxn[];
  /** Per key: the versions in order (value written, its writer's index in `txns`). */
  readonly versions: Map<string, { value: number; txn: number; revision: number }[]>;
}

/** Milliseconds between consecutive serial points; a transaction spans up to `spreadMs` either side. */
const spacingMs = 10;
const spreadMs = 40;

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** With `staleRate` 0 (the default) the history is serializable in its serial order. */
export function serialHistory(model: ElleModel, random: Random, options: Partial<SerialOptions> = {}): SerialHistory {
  const o = { ...serialDefaults, ...options };
  const lists = new Map<string, number[]>();
  const registers = new Map<string, { value: number; revision: number }>();
  const versions = new Map<string, { value: number; txn: number; revision: number }[]>();
  const writes = new Map<string, number>();
  let keyCounter = 0;
  const active: string[] = [];
  for (let k = 0; k < o.keysActive; k++) active.push(`k${keyCounter++}`);
  let nextValue = 1;
  let revision = 1;
  // Client slots: the process id each runs as, and when it is free again.
  const slots = Array.from({ length: o.processes }, (_, p) => ({ process: p, freeAt: -Infinity }));
  let nextProcess = o.processes;
  const txns: ElleTxn[] = [];
  for (let i = 0; i < o.txns; i++) {
    const point = i * spacingMs + 5;
    const outcome = random.chance(o.failRate) ? 'fail' : random.chance(o.infoRate) ? (random.chance(0.5) ? 'info-applied' : 'info-lost') : 'ok';
    const applied = outcome === 'ok' || outcome === 'info-applied';
    const lag = o.staleRate > 0 && random.chance(o.staleRate) ? 1 + random.below(3) : 0;
    const mops: ElleMicroOp[] = [];
    const count = 1 + random.below(o.mopsMax);
    let wrote = false;
    for (let m = 0; m < count; m++) {
      const slot = random.below(active.length);
      const key = active[slot]!;
      if (random.chance(0.5)) {
        const value = nextValue++;
        mops.push({ f: model === 'list-append' ? 'append' : 'w', key, value });
        if (!applied) continue;
        wrote = true;
        if (model === 'list-append') {
          let list = lists.get(key);
          if (list === undefined) lists.set(key, (list = []));
          list.push(value);
        } else {
          registers.set(key, { value, revision: revision + 1 });
        }
        let keyVersions = versions.get(key);
        if (keyVersions === undefined) versions.set(key, (keyVersions = []));
        keyVersions.push({ value, txn: i, revision: revision + 1 });
        const written = (writes.get(key) ?? 0) + 1;
        writes.set(key, written);
        if (written >= o.writesPerKeyMax) active[slot] = `k${keyCounter++}`;
      } else if (!applied || outcome !== 'ok') {
        mops.push({ f: 'r', key });
      } else if (model === 'list-append') {
        const list = lists.get(key) ?? [];
        mops.push({ f: 'r', key, value: list.slice(0, Math.max(0, list.length - lag)) });
      } else if (lag > 0) {
        const keyVersions = versions.get(key) ?? [];
        const old = keyVersions[keyVersions.length - 1 - lag];
        mops.push({ f: 'r', key, value: old?.value ?? null, modRevision: old?.revision ?? 0 });
      } else {
        const current = registers.get(key);
        mops.push({ f: 'r', key, value: current?.value ?? null, modRevision: current?.revision ?? 0 });
      }
    }
    if (wrote) revision++;
    const free = slots.filter((s) => s.freeAt < point);
    let slot = free.length > 0 ? random.pick(free) : undefined;
    if (slot === undefined) {
      slot = { process: nextProcess++, freeAt: -Infinity };
      slots.push(slot);
    }
    const call = Math.max(slot.freeAt + 1, point - random.below(spreadMs));
    const txn: Mutable<ElleTxn> = { id: i + 1, process: slot.process, call, status: outcome === 'ok' ? 'ok' : outcome === 'fail' ? 'fail' : 'info', mops };
    if (outcome === 'ok' || outcome === 'fail') txn.ret = point + random.below(spreadMs);
    if (outcome === 'ok' && wrote) txn.revision = revision;
    if (txn.ret !== undefined) slot.freeAt = txn.ret;
    else {
      // A client that never heard back moves on as a new process.
      slot.process = nextProcess++;
      slot.freeAt = point + spreadMs;
    }
    txns.push(txn);
  }
  return { model, txns, versions };
}

// ---------------------------------------------------------------------------------------------
// Mutations: each returns the broken history and what it did, or undefined if it found no place.

export interface Mutation {
  readonly txns: ElleTxn[];
  readonly description: string;
}

interface ReadAt {
  readonly txn: number;
  readonly mop: number;
}

function committedReads(history: SerialHistory): Map<string, ReadAt[]> {
  const byKey = new Map<string, ReadAt[]>();
  history.txns.forEach((txn, t) => {
    if (txn.status !== 'ok') return;
    txn.mops.forEach((mop, m) => {
      if (mop.f !== 'r' || mop.value === undefined) return;
      let reads = byKey.get(mop.key);
      if (reads === undefined) byKey.set(mop.key, (reads = []));
      reads.push({ txn: t, mop: m });
    });
  });
  return byKey;
}

function replaceMop(txns: ElleTxn[], at: ReadAt, mop: ElleMicroOp): void {
  const txn = txns[at.txn]!;
  const mops = [...txn.mops];
  mops[at.mop] = mop;
  txns[at.txn] = { ...txn, mops };
}

const readOf = (history: SerialHistory, at: ReadAt) => history.txns[at.txn]!.mops[at.mop] as Extract<ElleMicroOp, { f: 'r' }>;

/** list-append: drop from a read an element an earlier, shorter read already showed. */
export function dropElement(history: SerialHistory, random: Random): Mutation | undefined {
  const candidates: [ReadAt, ReadAt][] = [];
  for (const reads of committedReads(history).values()) {
    for (let j = 1; j < reads.length; j++) {
      const i = random.below(j);
      const later = readOf(history, reads[j]!).value as number[];
      const earlier = readOf(history, reads[i]!).value as number[];
      if (earlier.length >= 1 && later.length > earlier.length) candidates.push([reads[i]!, reads[j]!]);
    }
  }
  if (candidates.length === 0) return undefined;
  const [earlierAt, laterAt] = random.pick(candidates);
  const earlier = readOf(history, earlierAt).value as number[];
  const later = readOf(history, laterAt);
  const dropped = random.below(earlier.length);
  const list = (later.value as number[]).filter((_, i) => i !== dropped);
  const txns = [...history.txns];
  replaceMop(txns, laterAt, { ...later, value: list });
  return { txns, description: `T${txns[laterAt.txn]!.id} read ${later.key} without element ${earlier[dropped]} that T${txns[earlierAt.txn]!.id} saw` };
}

/** The last value a read saw: its list's last element, or the register value. */
function lastSeen(read: Extract<ElleMicroOp, { f: 'r' }>): number | undefined {
  if (Array.isArray(read.value)) return read.value[read.value.length - 1];
  return (read.value as number | null) ?? undefined;
}

function writerOf(history: SerialHistory, key: string, value: number): number | undefined {
  return history.versions.get(key)?.find((v) => v.value === value)?.txn;
}

/**
 * Swap the values of two reads of one key, A's earlier than B's, where what B saw was written by
 * a transaction called after A returned: A now reads the future.
 */
export function swapReads(history: SerialHistory, random: Random): Mutation | undefined {
  const candidates: [ReadAt, ReadAt][] = [];
  for (const reads of committedReads(history).values()) {
    for (let j = 1; j < reads.length; j++) {
      const b = reads[j]!;
      const seen = lastSeen(readOf(history, b));
      if (seen === undefined) continue;
      const writer = writerOf(history, readOf(history, b).key, seen);
      if (writer === undefined) continue;
      const a = reads[random.below(j)]!;
      if (a.txn === b.txn || !(history.txns[a.txn]!.ret! < history.txns[writer]!.call)) continue;
      if (JSON.stringify(readOf(history, a).value) === JSON.stringify(readOf(history, b).value)) continue;
      candidates.push([a, b]);
    }
  }
  if (candidates.length === 0) return undefined;
  const [a, b] = random.pick(candidates);
  const readA = readOf(history, a);
  const readB = readOf(history, b);
  const txns = [...history.txns];
  const swapped = (to: typeof readA, from: typeof readA): ElleMicroOp => {
    const { modRevision: _, ...rest } = to;
    return { ...rest, value: from.value!, ...(from.modRevision !== undefined ? { modRevision: from.modRevision } : {}) };
  };
  replaceMop(txns, a, swapped(readA, readB));
  replaceMop(txns, b, swapped(readB, readA));
  return { txns, description: `swapped the reads of ${readA.key} of T${txns[a.txn]!.id} and T${txns[b.txn]!.id}` };
}

/** Move a read-only transaction to begin after a committed write it missed returned: a stale read. */
export function staleRead(history: SerialHistory, random: Random): Mutation | undefined {
  const candidates: [ReadAt, number][] = [];
  for (const [key, reads] of committedReads(history)) {
    const keyVersions = history.versions.get(key) ?? [];
    for (const at of reads) {
      const txn = history.txns[at.txn]!;
      if (txn.mops.some((mop) => mop.f !== 'r')) continue;
      const seen = lastSeen(readOf(history, at));
      const next = seen === undefined ? 0 : keyVersions.findIndex((v) => v.value === seen) + 1;
      const missed = keyVersions[next];
      if (missed === undefined || history.txns[missed.txn]!.status !== 'ok') continue;
      candidates.push([at, missed.txn]);
    }
  }
  if (candidates.length === 0) return undefined;
  const [at, writer] = random.pick(candidates);
  const txns = [...history.txns];
  const call = txns[writer]!.ret! + 1;
  const process = txns.reduce((max, t) => Math.max(max, t.process), 0) + 1;
  txns[at.txn] = { ...txns[at.txn]!, call, ret: call + 1, process };
  return { txns, description: `T${txns[at.txn]!.id} moved to begin after T${txns[writer]!.id}, whose write it missed, returned` };
}
