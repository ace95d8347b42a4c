/**
 * rw-register: every written value is unique per key (null: absent, the initial version), so a
 * read names its writer: wr from the writer to the reader. The version order comes from etcd
 * revisions: a committed writer's `revision` is its writes' mod revision (for a writer of unknown
 * outcome, the mod revision a read of its value reported); versions are ordered by revision, the
 * initial version first; ww joins consecutive versions and rw goes from each reader of a version to
 * the writer of the next. Where a version has no revision, only what Elle infers without one is
 * used: a transaction that read v and then wrote v' of the key puts v before v' — ww from v's
 * writer to it, rw from v's other readers to it. Only a transaction's first access of a key, if
 * a read, is an external read (what it saw of others); later reads are checked as internal.
 */
import { showValue, txnName } from './anomalies.js';
import type { Context } from './context.js';
import { ownWrites, writtenLater } from './own-writes.js';
import { RW, WR, WW } from './graph.js';
import type { ElleTxn } from './types.js';

interface Read {
  readonly txn: number;
  readonly value: number | null;
  readonly modRevision?: number;
  /** The transaction writes the key after this read. */
  readonly thenWrites?: number;
}

interface KeyState {
  /** value → writer (input index). */
  readonly writer: Map<number, number>;
  /** writer → its last write of this key (the version it installed). */
  readonly lastWrite: Map<number, number>;
  /** External committed reads. */
  readonly reads: Read[];
  /** Every committed read with a mod revision (internal ones too): the revision check covers them all. */
  readonly revisionReads: Read[];
}

export function analyzeRwRegister(context: Context): void {
  const keys = indexKeys(context);
  for (const state of keys) for (const read of state.reads) {
    const writer = read.value === null ? undefined : state.writer.get(read.value);
    if (writer !== undefined && writer !== read.txn) context.observed(writer);
  }
  context.assignNodes();
  keys.forEach((state, key) => analyzeKey(context, key, state));
  for (const txn of context.txns) if (txn.status === 'ok') checkInternal(context, txn);
}

function indexKeys(context: Context): KeyState[] {
  const keys: KeyState[] = [];
  context.txns.forEach((txn, t) => {
    // Per key: the external read not yet settled; null once the first access is settled.
    const external = new Map<string, Read | null>();
    for (const mop of txn.mops) {
      const key = context.keyId(mop.key);
      let state = keys[key];
      if (state === undefined) keys[key] = state = { writer: new Map(), lastWrite: new Map(), reads: [], revisionReads: [] };
      if (mop.f === 'w') {
        if (state.writer.has(mop.value)) throw new TypeError(`elle checker: value ${mop.value} written to ${mop.key} twice (txn ${txn.id}); values must be unique per key`);
        state.writer.set(mop.value, t);
        state.lastWrite.set(t, mop.value);
        const pending = external.get(mop.key);
        if (pending) state.reads.push({ ...pending, thenWrites: mop.value });
        external.set(mop.key, null);
        continue;
      }
      if (mop.f !== 'r' || txn.status !== 'ok' || mop.value === undefined) {
        if (!external.has(mop.key)) external.set(mop.key, null);
        continue;
      }
      const read: Read = { txn: t, value: mop.value as number | null, ...(mop.modRevision !== undefined ? { modRevision: mop.modRevision } : {}) };
      if (read.modRevision !== undefined) state.revisionReads.push(read);
      if (!external.has(mop.key)) external.set(mop.key, read);
    }
    for (const [keyName, pending] of external) if (pending) keys[context.keyId(keyName)]!.reads.push(pending);
  });
  return keys;
}

function analyzeKey(context: Context, key: number, state: KeyState): void {
  const { txns, anomalies, nodeOf, edges } = context;
  const keyName = context.keys[key]!;
  const id = (t: number): number => txns[t]!.id;
  const node = (t: number | undefined): number => (t === undefined ? -1 : nodeOf[t]!);

  // Revisions of the versions: the writer's own, else the first read that reported one.
  const revisionOf = new Map<number, number>();
  for (const [writer, value] of state.lastWrite) {
    const revision = txns[writer]!.revision;
    if (revision !== undefined && txns[writer]!.status === 'ok') revisionOf.set(value, revision);
  }
  for (const read of state.revisionReads) checkRevision(context, key, state, read, revisionOf);

  // The version chain: included writers' installed values with a revision, by revision.
  const chain: { value: number; writer: number; revision: number }[] = [];
  for (const [writer, value] of state.lastWrite) {
    const revision = revisionOf.get(value);
    if (revision !== undefined && nodeOf[writer]! >= 0) chain.push({ value, writer, revision });
  }
  chain.sort((a, b) => a.revision - b.revision || id(a.writer) - id(b.writer));
  const position = new Map<number, number>();
  chain.forEach((version, i) => {
    position.set(version.value, i + 1); // 0: the initial version
    const previous = chain[i - 1];
    if (previous === undefined) return;
    if (previous.revision === version.revision && previous.writer !== version.writer) {
      anomalies.add('revision-mismatch', 0, () => ({
        opIds: [id(previous.writer), id(version.writer)],
        explanation: `${txnName(id(previous.writer))} and ${txnName(id(version.writer))} both wrote ${keyName} at revision ${version.revision}`,
      }));
    }
    edges.add(nodeOf[previous.writer]!, nodeOf[version.writer]!, WW, key, version.value, previous.value);
  });

  const readersOf = new Map<number | null, number[]>();
  for (const read of state.reads) {
    let readers = readersOf.get(read.value);
    if (readers === undefined) readersOf.set(read.value, (readers = []));
    readers.push(read.txn);
  }
  for (const read of state.reads) {
    const reader = nodeOf[read.txn]!;
    const writer = read.value === null ? undefined : state.writer.get(read.value);
    if (read.value !== null) {
      if (writer === undefined) {
        anomalies.add('garbage-read', 0, () => ({ opIds: [id(read.txn)], explanation: `${txnName(id(read.txn))} read ${keyName}=${read.value}, a value no transaction wrote` }));
        continue;
      }
      if (txns[writer]!.status === 'fail') {
        anomalies.add('G1a', 0, () => ({
          opIds: [id(read.txn), id(writer)],
          explanation: `${txnName(id(read.txn))} read ${keyName}=${read.value}, written by ${txnName(id(writer))}, which failed (an aborted read)`,
        }));
        continue;
      }
      const installed = state.lastWrite.get(writer)!;
      if (installed !== read.value && writer !== read.txn) {
        anomalies.add('G1b', 0, () => ({
          opIds: [id(read.txn), id(writer)],
          explanation: `${txnName(id(read.txn))} read ${keyName}=${read.value}, which ${txnName(id(writer))} overwrote with ${installed} in the same transaction (an intermediate read)`,
        }));
      }
      if (node(writer) >= 0) edges.add(nodeOf[writer]!, reader, WR, key, read.value);
    }
    const at = read.value === null ? 0 : position.get(read.value);
    const next = at === undefined ? undefined : chain[at];
    if (next !== undefined) edges.add(reader, nodeOf[next.writer]!, RW, key, next.value, read.value ?? Number.NaN);
    // Read-then-write order, where a revision is missing.
    if (read.thenWrites !== undefined && (at === undefined || !position.has(state.lastWrite.get(read.txn)!)) && reader >= 0) {
      if (node(writer) >= 0) edges.add(nodeOf[writer!]!, reader, WW, key, read.thenWrites, read.value ?? Number.NaN);
      for (const other of readersOf.get(read.value)!) if (node(other) >= 0) edges.add(nodeOf[other]!, reader, RW, key, read.thenWrites, read.value ?? Number.NaN);
    }
  }
  lostUpdates(context, keyName, state);
}

/** A read's mod revision must be the revision its value was written at (0 for absent). */
function checkRevision(context: Context, key: number, state: KeyState, read: Read, revisionOf: Map<number, number>): void {
  const { txns, anomalies } = context;
  const keyName = context.keys[key]!;
  const reader = txns[read.txn]!.id;
  const modRevision = read.modRevision!;
  if (read.value === null) {
    if (modRevision !== 0) {
      anomalies.add('revision-mismatch', 0, () => ({ opIds: [reader], explanation: `${txnName(reader)} read ${keyName} absent, yet at mod revision ${modRevision}` }));
    }
    return;
  }
  const writer = state.writer.get(read.value);
  if (writer === undefined || txns[writer]!.status === 'fail' || state.lastWrite.get(writer) !== read.value) return;
  const expected = revisionOf.get(read.value);
  if (expected === undefined) {
    revisionOf.set(read.value, modRevision);
    return;
  }
  if (expected === modRevision) return;
  const writerId = txns[writer]!.id;
  const how = txns[writer]!.revision !== undefined ? `${txnName(writerId)} wrote it at revision ${expected}` : `another read put ${txnName(writerId)}'s write at revision ${expected}`;
  anomalies.add('revision-mismatch', 0, () => ({ opIds: [reader, writerId], explanation: `${txnName(reader)} read ${keyName}=${read.value} at mod revision ${modRevision}, but ${how}` }));
}

/** Within a transaction a read sees the key as its own last read or write of it left it. */
function checkInternal(context: Context, txn: ElleTxn): void {
  const known = new Map<string, { value: number | null; wrote: boolean }>();
  const writes = ownWrites(txn);
  for (const [at, mop] of txn.mops.entries()) {
    if (mop.f === 'w') {
      known.set(mop.key, { value: mop.value, wrote: true });
      continue;
    }
    if (mop.f !== 'r' || mop.value === undefined) continue;
    const value = mop.value as number | null;
    if (writtenLater(writes, mop.key, at, [value]) !== undefined) {
      context.anomalies.add('internal', 0, () => ({ opIds: [txn.id], explanation: `${txnName(txn.id)} read ${mop.key}=${value}, a value it wrote only later` }));
    }
    const expected = known.get(mop.key);
    if (expected !== undefined && expected.value !== value) {
      const explanation = expected.wrote
        ? `${txnName(txn.id)} wrote ${mop.key}=${showValue(expected.value)} and then read ${mop.key}=${showValue(value)}`
        : `${txnName(txn.id)} read ${mop.key}=${showValue(expected.value)} and then ${mop.key}=${showValue(value)} with no write between`;
      context.anomalies.add('internal', 0, () => ({ opIds: [txn.id], explanation }));
    }
    known.set(mop.key, { value, wrote: false });
  }
}

/** Two or more committed transactions read the same version of the key and then wrote it. */
function lostUpdates(context: Context, keyName: string, state: KeyState): void {
  const byVersion = new Map<number | null, number[]>();
  for (const read of state.reads) {
    if (read.thenWrites === undefined || context.txns[read.txn]!.status !== 'ok') continue;
    let members = byVersion.get(read.value);
    if (members === undefined) byVersion.set(read.value, (members = []));
    members.push(read.txn);
  }
  for (const [value, members] of byVersion) {
    if (members.length < 2) continue;
    const ids = members.map((t) => context.txns[t]!.id);
    context.anomalies.add('lost-update', 0, () => ({
      opIds: ids,
      explanation: `${ids.map(txnName).join(' and ')} each read ${keyName}=${showValue(value)} and then wrote ${keyName}: each updated the same version, so one update was lost`,
    }));
  }
}
