/**
 * list-append: every appended element is unique per key, so each element names its writer and the
 * longest committed read of a key is that key's version order (every other read must be a prefix
 * of it). From that order: ww between the writers of consecutive elements, wr from the writer of a
 * read's last element to the reader, rw from a reader to the writer of the element just after what
 * it read. Directly visible anomalies: incompatible-order, duplicate-elements, garbage-read, G1a
 * (aborted read), G1b (intermediate read), internal, lost-update.
 */
import { showList, txnName } from './anomalies.js';
import type { Context } from './context.js';
import { ownWrites, writtenLater } from './own-writes.js';
import { RW, WR, WW } from './graph.js';
import type { ElleTxn } from './types.js';

interface Read {
  readonly txn: number;
  readonly list: readonly number[];
}

interface KeyState {
  /** element → writer (input index). */
  readonly writer: Map<number, number>;
  /** writer → its last append to this key. */
  readonly lastAppend: Map<number, number>;
  /** Committed reads (status ok, value known), in input order. */
  readonly reads: Read[];
}

export function analyzeListAppend(context: Context): void {
  const keys = indexKeys(context);
  for (const state of keys) for (const read of state.reads) for (const element of read.list) {
    const writer = state.writer.get(element);
    if (writer !== undefined && writer !== read.txn) context.observed(writer);
  }
  context.assignNodes();
  keys.forEach((state, key) => analyzeKey(context, key, state));
  for (let t = 0; t < context.txns.length; t++) if (context.txns[t]!.status === 'ok') checkInternal(context, context.txns[t]!);
  lostUpdates(context);
}

function indexKeys(context: Context): KeyState[] {
  const keys: KeyState[] = [];
  context.txns.forEach((txn, t) => {
    for (const mop of txn.mops) {
      const key = context.keyId(mop.key);
      let state = keys[key];
      if (state === undefined) keys[key] = state = { writer: new Map(), lastAppend: new Map(), reads: [] };
      if (mop.f === 'append') {
        if (state.writer.has(mop.value)) throw new TypeError(`elle checker: element ${mop.value} appended to ${mop.key} twice (txn ${txn.id}); elements must be unique per key`);
        state.writer.set(mop.value, t);
        state.lastAppend.set(t, mop.value);
      } else if (txn.status === 'ok' && mop.value !== undefined) {
        state.reads.push({ txn: t, list: mop.value as readonly number[] });
      }
    }
  });
  return keys;
}

function hasDuplicates(list: readonly number[]): number | undefined {
  const seen = new Set<number>();
  for (const element of list) {
    if (seen.has(element)) return element;
    seen.add(element);
  }
  return undefined;
}

function isPrefix(shorter: readonly number[], longer: readonly number[]): boolean {
  if (shorter.length > longer.length) return false;
  for (let i = 0; i < shorter.length; i++) if (shorter[i] !== longer[i]) return false;
  return true;
}

function analyzeKey(context: Context, key: number, state: KeyState): void {
  const { txns, anomalies, nodeOf, edges } = context;
  const keyName = context.keys[key]!;
  const id = (t: number): number => txns[t]!.id;
  // The longest read without duplicates is the version order; a read that is a prefix of it has
  // none either, so only the others are searched for duplicates (a Set per read costs).
  const byLength = [...state.reads].sort((a, b) => b.list.length - a.list.length);
  const duplicated = new Set<Read>();
  const reportDuplicate = (read: Read): boolean => {
    const duplicate = hasDuplicates(read.list);
    if (duplicate === undefined) return false;
    duplicated.add(read);
    anomalies.add('duplicate-elements', 0, () => ({ opIds: [id(read.txn)], explanation: `${txnName(id(read.txn))} read ${keyName}=${showList(read.list)}, in which ${duplicate} appears more than once` }));
    return true;
  };
  const longest = byLength.find((read) => !reportDuplicate(read));
  const order = longest?.list ?? [];
  for (const read of state.reads) if (read !== longest && !duplicated.has(read) && !isPrefix(read.list, order)) reportDuplicate(read);
  const usable = state.reads.filter((read) => !duplicated.has(read));
  // ww along the version order
  for (let i = 0; i + 1 < order.length; i++) {
    const a = state.writer.get(order[i]!);
    const b = state.writer.get(order[i + 1]!);
    if (a !== undefined && b !== undefined && nodeOf[a]! >= 0 && nodeOf[b]! >= 0) edges.add(nodeOf[a]!, nodeOf[b]!, WW, key, order[i + 1]!, order[i]!);
  }
  for (const read of state.reads) checkElements(context, key, state, read);
  const prefix = usable.map((read) => isPrefix(read.list, order));
  orderUnobserved(context, key, state, order, usable.filter((read, i) => prefix[i] && read.list.length === order.length).map((read) => read.txn));
  usable.forEach((read, i) => {
    const reader = nodeOf[read.txn]!;
    const last = read.list[read.list.length - 1];
    if (last !== undefined) {
      const writer = state.writer.get(last);
      if (writer !== undefined && nodeOf[writer]! >= 0) edges.add(nodeOf[writer]!, reader, WR, key, last);
    }
    if (!prefix[i]) {
      anomalies.add('incompatible-order', 0, () => ({
        opIds: [id(read.txn), id(longest!.txn)],
        explanation: `${txnName(id(read.txn))} read ${keyName}=${showList(read.list)} and ${txnName(id(longest!.txn))} read ${keyName}=${showList(longest!.list)}: neither is a prefix of the other, so the key has no single order of appends`,
      }));
      return;
    }
    const next = order[read.list.length];
    if (next === undefined) return;
    const missed = state.writer.get(next);
    if (missed !== undefined && nodeOf[missed]! >= 0) edges.add(reader, nodeOf[missed]!, RW, key, next, last ?? Number.NaN);
  });
}

/**
 * A committed append no read saw still ends up in the key's list, after everything the longest
 * read saw (lists only grow): ww from the writer of that read's last element to it, rw from the
 * readers of the whole longest list to it (readers of shorter lists reach it through the order).
 * Unseen appends stay unordered among themselves.
 */
function orderUnobserved(context: Context, key: number, state: KeyState, order: readonly number[], fullReaders: readonly number[]): void {
  const { txns, nodeOf, edges } = context;
  const seen = new Set(order);
  const last = order[order.length - 1];
  const lastWriter = last === undefined ? undefined : state.writer.get(last);
  const done = new Set<number>();
  for (const [element, writer] of state.writer) {
    if (seen.has(element) || txns[writer]!.status !== 'ok' || done.has(writer)) continue;
    done.add(writer);
    const appended = state.lastAppend.get(writer)!;
    if (lastWriter !== undefined && nodeOf[lastWriter]! >= 0) edges.add(nodeOf[lastWriter]!, nodeOf[writer]!, WW, key, appended, last!);
    for (const reader of fullReaders) edges.add(nodeOf[reader]!, nodeOf[writer]!, RW, key, appended, last ?? Number.NaN);
  }
}

/** garbage-read, G1a and G1b of one committed read. */
function checkElements(context: Context, key: number, state: KeyState, read: Read): void {
  const { txns, anomalies } = context;
  const keyName = context.keys[key]!;
  const reader = txnName(txns[read.txn]!.id);
  for (const element of read.list) {
    const writer = state.writer.get(element);
    if (writer === undefined) {
      anomalies.add('garbage-read', 0, () => ({ opIds: [txns[read.txn]!.id], explanation: `${reader} read ${keyName}=${showList(read.list)}, but no transaction appended ${element} to ${keyName}` }));
    } else if (txns[writer]!.status === 'fail') {
      anomalies.add('G1a', 0, () => ({
        opIds: [txns[read.txn]!.id, txns[writer]!.id],
        explanation: `${reader} read ${keyName}=${showList(read.list)}, including ${element}, appended by ${txnName(txns[writer]!.id)}, which failed (an aborted read)`,
      }));
    }
  }
  const last = read.list[read.list.length - 1];
  if (last === undefined) return;
  const writer = state.writer.get(last);
  if (writer === undefined || writer === read.txn || txns[writer]!.status === 'fail') return;
  const final = state.lastAppend.get(writer)!;
  if (final === last) return;
  anomalies.add('G1b', 0, () => ({
    opIds: [txns[read.txn]!.id, txns[writer]!.id],
    explanation: `${reader} read ${keyName}=${showList(read.list)}, ending at ${last}, which ${txnName(txns[writer]!.id)} appended before its later append of ${final} to ${keyName} (an intermediate read)`,
  }));
}

/**
 * A transaction must see its own appends: per key, once a read told us the list, each own append
 * extends it and the next read must equal it; before any read, the next read must end with the
 * appends made so far.
 */
function checkInternal(context: Context, txn: ElleTxn): void {
  const known = new Map<string, number[]>();
  const appendedSinceUnknown = new Map<string, number[]>();
  const writes = ownWrites(txn);
  for (const [at, mop] of txn.mops.entries()) {
    if (mop.f === 'append') {
      const list = known.get(mop.key);
      if (list !== undefined) list.push(mop.value);
      else {
        let appended = appendedSinceUnknown.get(mop.key);
        if (appended === undefined) appendedSinceUnknown.set(mop.key, (appended = []));
        appended.push(mop.value);
      }
      continue;
    }
    if (mop.f !== 'r' || mop.value === undefined) continue;
    const read = mop.value as readonly number[];
    const future = writtenLater(writes, mop.key, at, read);
    if (future !== undefined) {
      context.anomalies.add('internal', 0, () => ({ opIds: [txn.id], explanation: `${txnName(txn.id)} read ${mop.key}=${showList(read)}, including ${future}, which it appended only later` }));
    }
    const expected = known.get(mop.key);
    const appended = appendedSinceUnknown.get(mop.key) ?? [];
    const fine = expected !== undefined ? expected.length === read.length && isPrefix(expected, read) : isPrefix(appended, read.slice(read.length - appended.length)) && read.length >= appended.length;
    if (!fine) {
      const explanation =
        expected !== undefined
          ? `${txnName(txn.id)} read ${mop.key}=${showList(read)}, but what it read and appended before says ${showList(expected)}`
          : `${txnName(txn.id)} appended ${appended.join(', ')} to ${mop.key} and then read ${mop.key}=${showList(read)}, not ending with its own appends`;
      context.anomalies.add('internal', 0, () => ({ opIds: [txn.id], explanation }));
    }
    known.set(mop.key, [...read]);
    appendedSinceUnknown.delete(mop.key);
  }
}

/** Two or more committed transactions read the same version of a key and both appended to it. */
function lostUpdates(context: Context): void {
  const groups = new Map<string, number[]>();
  const versionSeen = new Map<string, string>();
  context.txns.forEach((txn, t) => {
    if (txn.status !== 'ok') return;
    const readBefore = new Map<string, readonly number[]>();
    const appended = new Set<string>();
    for (const mop of txn.mops) {
      if (mop.f === 'r') {
        if (mop.value !== undefined && !appended.has(mop.key) && !readBefore.has(mop.key)) readBefore.set(mop.key, mop.value as readonly number[]);
      } else if (!appended.has(mop.key)) {
        appended.add(mop.key);
        const read = readBefore.get(mop.key);
        if (read === undefined) continue;
        const last = read[read.length - 1];
        const group = `${mop.key.length}:${mop.key}:${last ?? ''}`;
        let members = groups.get(group);
        if (members === undefined) {
          groups.set(group, (members = []));
          versionSeen.set(group, last === undefined ? `read ${mop.key} empty` : `read ${mop.key} ending at ${last}`);
        }
        members.push(t);
      }
    }
  });
  for (const [group, members] of groups) {
    if (members.length < 2) continue;
    const ids = members.map((t) => context.txns[t]!.id);
    const key = group.slice(group.indexOf(':') + 1, group.lastIndexOf(':'));
    context.anomalies.add('lost-update', 0, () => ({
      opIds: ids,
      explanation: `${ids.map(txnName).join(' and ')} each ${versionSeen.get(group)!} and then appended to ${key}: each updated the same version, so one update was lost`,
    }));
  }
}
