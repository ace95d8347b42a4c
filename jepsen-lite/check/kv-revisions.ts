/**
 * Linearizability of an etcd key-space history, decided from its revisions instead of searched for.
 *
 * etcd numbers every change: a write answers the revision it made, a read the revision it saw.
 * So the order of the writes in any linearization is forced — write r comes right after write
 * r − 1 — and each read belongs right after the write whose revision it reports. The one freedom
 * left is which operations of unknown outcome (`info`) took effect, and where. The store's
 * committed history (every revision's events, read back at the end of the run) answers that:
 * each committed revision is attributed to the operation that made it (every written value is
 * unique in a run, so a put names its writer; the revisions that only delete are matched to
 * unknown operations that make exactly those events and can have run by then, by a maximum
 * bipartite matching, so no arbitrary choice decides the verdict). What is left is a check, not a
 * search: O(n log n) plus, for the delete-only revisions, (such revisions × unknown writes):
 *
 * 1. every committed revision is attributed to exactly one operation, and no acknowledged write
 *    is missing from it or appears twice;
 * 2. replaying the attributed operations in revision order through the `kv` model gives, at each
 *    revision, exactly the committed events, and every acknowledged output — reads included,
 *    each against the state at the revision it reported;
 * 3. real time: an operation that returned before another was called is ordered before it
 *    (an unknown write that took effect is ordered where it took effect, and never before its call).
 *
 * When all three hold, the order built is a linearization: the history is linearizable. When one
 * fails, no linearization exists — the acknowledged outputs fix the order, and the committed history
 * fixes what the unknown operations did — so the verdict is a violation, never unknown. The one
 * case it cannot decide is a committed history that is incomplete (a revision missing), or that
 * holds keys outside the run's prefix, or a history that writes one value twice (then a committed
 * put does not name its writer); `checkKvByRevision` then returns `undefined` and the caller falls
 * back to the search (`checkLinearizability`).
 */
import type { KvInput, KvOutput, KvRequest, Operation } from '../history.js';
import type { LinearizabilityResult, PartitionResult } from './linearizability.js';
import { type KeyMeta, type KvState, changedStore, executeKv, kvInitialRevision, kvModel, kvOutputsEqual, kvStateOf } from './models/index.js';
import type { HistoryRevision, WatchEvent, WatchHistory } from './watch.js';

/** Operations named in a violation's message (all of them are in `blocked`). */
export const kvRevisionOpsDescribedMax = 4;

type KvOp = Operation<KvInput, KvOutput>;

/** An operation's place in the order: after the write of `revision` (0) or among its reads (1). */
interface Place {
  readonly revision: number;
  readonly read: 0 | 1;
}

class Violation extends Error {
  constructor(
    message: string,
    readonly blocked: readonly number[],
  ) {
    super(message);
  }
}

const decoder = new TextDecoder();

function describe(op: KvOp): string {
  return `op ${op.id} (process ${op.process}, ${op.status}) ${kvModel.describe(op.input, op.status === 'ok' ? op.output : undefined)}`;
}

/** The writes a request list would make: the put values, and the keys deleted. */
function writesOf(requests: readonly KvRequest[]): { puts: Map<string, string>; deletes: Set<string> } {
  const puts = new Map<string, string>();
  const deletes = new Set<string>();
  for (const request of requests) {
    if (request.f === 'put') {
      puts.set(request.key, request.value);
      deletes.delete(request.key);
    } else if (request.f === 'delete') {
      deletes.add(request.key);
      puts.delete(request.key);
    }
  }
  return { puts, deletes };
}

function branches(input: KvInput): (readonly KvRequest[])[] {
  return input.f === 'txn' ? [input.success, input.failure] : [[input]];
}

function compareUnsigned(a: Place, b: Place): number {
  return a.revision - b.revision || a.read - b.read;
}

/**
 * Checks a `kv`-model history against the committed history read back from the store. `keyPrefix`
 * is what the workload put before its logical keys on the wire. Returns `undefined` when the
 * committed history cannot decide (see the file comment).
 */
export function checkKvByRevision(
  operations: readonly Operation[],
  committed: WatchHistory,
  keyPrefix: string,
  now: () => number = () => performance.now(),
): LinearizabilityResult | undefined {
  const started = now();
  for (const op of operations) kvModel.validate(op.input, op.status === 'ok' ? op.output : undefined);
  const ops = operations.filter((op) => op.status !== 'fail') as KvOp[];
  const revisions = logicalRevisions(committed, keyPrefix);
  if (revisions === undefined || !valuesUnique(operations as readonly KvOp[])) return undefined;
  let partition: PartitionResult;
  try {
    checkOrder(ops, revisions, operations.filter((op) => op.status === 'fail') as KvOp[]);
    partition = { key: '', operations: ops.length, verdict: 'ok', elapsedMs: now() - started };
  } catch (error) {
    if (!(error instanceof Violation)) throw error;
    partition = { key: '', operations: ops.length, verdict: 'violation', elapsedMs: now() - started, message: error.message, blocked: error.blocked };
  }
  return { model: 'kv', method: 'revisions', verdict: partition.verdict, partitions: [partition], elapsedMs: now() - started, operations: ops.length };
}

/** Whether no value is written by two operations (a committed put then names its writer). */
function valuesUnique(ops: readonly KvOp[]): boolean {
  const writer = new Map<string, number>();
  for (const op of ops) {
    for (const requests of branches(op.input)) {
      for (const [key, value] of writesOf(requests).puts) {
        const name = `${key}\u0000${value}`;
        if ((writer.get(name) ?? op.id) !== op.id) return false;
        writer.set(name, op.id);
      }
    }
  }
  return true;
}

interface LogicalEvent {
  readonly type: 'put' | 'delete';
  readonly key: string;
  readonly value?: string;
}

/** The committed revisions 2..head with logical keys; undefined if one is missing or foreign. */
function logicalRevisions(committed: WatchHistory, keyPrefix: string): Map<number, LogicalEvent[]> | undefined {
  const out = new Map<number, LogicalEvent[]>();
  let expected = kvInitialRevision + 1;
  for (const revision of committed.revisions as readonly HistoryRevision[]) {
    if (revision.revision !== expected) return undefined;
    expected++;
    const events: LogicalEvent[] = [];
    for (const event of revision.events as readonly WatchEvent[]) {
      const key = decoder.decode(event.key);
      if (!key.startsWith(keyPrefix)) return undefined;
      const logical = key.slice(keyPrefix.length);
      events.push(event.type === 'put' ? { type: 'put', key: logical, value: decoder.decode(event.value ?? new Uint8Array()) } : { type: 'delete', key: logical });
    }
    out.set(revision.revision, events);
  }
  const head = committed.headRevision ?? expected - 1;
  if (head > expected - 1) return undefined;
  return out;
}

function checkOrder(ops: readonly KvOp[], revisions: ReadonlyMap<number, readonly LogicalEvent[]>, refused: readonly KvOp[]): void {
  const head = kvInitialRevision + revisions.size;
  // 1. Who made each revision.
  const madeBy = new Map<number, KvOp>();
  const placeOf = new Map<number, Place>();
  const writerOfValue = new Map<string, KvOp>();
  for (const op of [...refused, ...ops]) {
    for (const requests of branches(op.input)) for (const [key, value] of writesOf(requests).puts) writerOfValue.set(`${key}\u0000${value}`, op);
  }
  for (const op of ops) {
    if (op.status !== 'ok') continue;
    const output = op.output!;
    if (output.revision < kvInitialRevision || output.revision > head) {
      throw new Violation(`${describe(op)} answered revision ${output.revision}, but the store's committed history ends at revision ${head}`, [op.id]);
    }
    const changed = changedStore(output);
    if (changed && output.revision <= kvInitialRevision) {
      throw new Violation(`${describe(op)} answered revision ${output.revision}, but a write makes a revision after the empty store's ${kvInitialRevision}`, [op.id]);
    }
    if (changed) {
      const other = madeBy.get(output.revision);
      if (other !== undefined) throw new Violation(`${describe(other)} and ${describe(op)} both answered that they made revision ${output.revision}`, [other.id, op.id]);
      madeBy.set(output.revision, op);
    }
    placeOf.set(op.id, { revision: output.revision, read: changed ? 0 : 1 });
  }
  // The lowest revision each op can have taken effect at: the highest place of an op that returned before its call.
  const lowest = lowestPlaces(ops, placeOf);
  const attributedUnknown = new Set<number>();
  const deleteOnly: number[] = [];
  for (let revision = kvInitialRevision + 1; revision <= head; revision++) {
    if (madeBy.has(revision)) continue;
    const events = revisions.get(revision)!;
    const put = events.find((event) => event.type === 'put');
    if (put === undefined) {
      deleteOnly.push(revision);
      continue;
    }
    const writer = writerOfValue.get(`${put.key}\u0000${put.value!}`);
    if (writer === undefined) throw new Violation(`revision ${revision} put ${put.key} = ${JSON.stringify(put.value)}, a value no client wrote`, []);
    if (writer.status === 'fail') throw new Violation(`revision ${revision} holds the write of ${describe(writer)}, which was refused`, [writer.id]);
    if (writer.status === 'ok') {
      throw new Violation(`revision ${revision} holds the write of ${describe(writer)}, which answered revision ${writer.output!.revision}`, [writer.id]);
    }
    if (attributedUnknown.has(writer.id)) throw new Violation(`${describe(writer)} took effect twice (revision ${revision} and before)`, [writer.id]);
    attributedUnknown.add(writer.id);
    madeBy.set(revision, writer);
    placeOf.set(writer.id, { revision, read: 0 });
  }
  attributeDeletes(ops, deleteOnly, revisions, head, lowest, attributedUnknown, madeBy, placeOf);

  // 2. Replay in revision order; each read against the state at the revision it reported.
  const readsAt = new Map<number, KvOp[]>();
  for (const op of ops) {
    const place = placeOf.get(op.id);
    if (op.status === 'ok' && place !== undefined && place.read === 1) {
      const list = readsAt.get(place.revision) ?? [];
      list.push(op);
      readsAt.set(place.revision, list);
    }
  }
  // The store's keys, kept up to date from the committed events. Each op runs against a state of
  // just the keys it (and the revision's events) touch: the same answers, without copying every
  // key per revision.
  const store = new Map<string, KeyMeta>();
  const slice = (keys: Iterable<string>, revision: number): KvState => sliceOf(store, keys, revision);
  for (let revision = kvInitialRevision; revision <= head; revision++) {
    if (revision > kvInitialRevision) {
      const writer = madeBy.get(revision)!;
      const events = revisions.get(revision)!;
      const before = slice(new Set([...keysOf(writer.input), ...events.map((event) => event.key)]), revision - 1);
      const next = executeKv(before, writer.input);
      const expected = applyEvents(before, revision, events);
      if (next.state.revision !== revision || next.state.key !== expected.key) {
        throw new Violation(
          `revision ${revision} is ${describeEvents(events)} in the committed history, but ${describe(writer)}, run at revision ${revision - 1}, would have answered ${kvModel.describe(writer.input, next.output)}, ${next.state.revision === revision - 1 ? 'changing nothing' : `making ${describeChange(before, next.state)}`}`,
          [writer.id],
        );
      }
      if (writer.status === 'ok' && !kvOutputsEqual(next.output, writer.output!)) {
        throw new Violation(`${describe(writer)}, run at revision ${revision - 1}, would have answered ${kvModel.describe(writer.input, next.output)}`, [writer.id]);
      }
      applyTo(store, revision, events);
    }
    for (const read of readsAt.get(revision) ?? []) {
      const { output } = executeKv(slice(keysOf(read.input), revision), read.input);
      if (!kvOutputsEqual(output, read.output!)) {
        throw new Violation(`${describe(read)}, but at revision ${revision} the store answered ${kvModel.describe(read.input, output)}`, [read.id]);
      }
    }
  }

  // 3. Real time: nothing that returned before an op's call may be ordered after it.
  for (const op of ops) {
    const place = placeOf.get(op.id);
    const before = lowest.get(op.id);
    if (place === undefined || before === undefined || compareUnsigned(before.place, place) <= 0) continue;
    const earlier = before.op;
    const what = place.read === 1 ? `saw revision ${place.revision}` : `made revision ${place.revision}`;
    throw new Violation(
      `${describe(earlier)} returned at ${earlier.ret} ms, before ${describe(op)} was called at ${op.call} ms, yet the later one ${what}, older than the earlier one's ${before.place.revision}: ${place.read === 1 ? 'a stale read' : 'a write ordered before one that finished earlier'}`,
      [earlier.id, op.id],
    );
  }
}

/**
 * The revisions that only delete, each matched to an unknown operation that, run at the state
 * before it, makes exactly its events, and that can have run by then (its lower bound is below
 * it). Several unknown deletes may fit several revisions; a maximum bipartite matching (augmenting
 * paths) finds an assignment whenever one exists, so no choice made here can turn a linearizable
 * history into a violation. A revision no unknown operation can have made is a violation.
 */
function attributeDeletes(
  ops: readonly KvOp[],
  deleteOnly: readonly number[],
  revisions: ReadonlyMap<number, readonly LogicalEvent[]>,
  head: number,
  lowest: ReadonlyMap<number, { place: Place; op: KvOp }>,
  attributed: ReadonlySet<number>,
  madeBy: Map<number, KvOp>,
  placeOf: Map<number, Place>,
): void {
  if (deleteOnly.length === 0) return;
  const unknown = ops.filter((op) => op.status === 'info' && !attributed.has(op.id) && !kvModel.readOnly(op.input));
  // The unknown ops by a key one of their branches deletes: a revision's candidates come from one key's list.
  const deleting = new Map<string, KvOp[]>();
  for (const op of unknown) {
    const keys = new Set<string>();
    for (const requests of branches(op.input)) for (const key of writesOf(requests).deletes) keys.add(key);
    for (const key of keys) {
      const list = deleting.get(key) ?? [];
      list.push(op);
      deleting.set(key, list);
    }
  }
  // The state before each delete-only revision, from the committed events alone.
  const store = new Map<string, KeyMeta>();
  const wanted = new Set(deleteOnly);
  const candidates = new Map<number, KvOp[]>();
  for (let revision = kvInitialRevision + 1; revision <= head; revision++) {
    const events = revisions.get(revision)!;
    if (wanted.has(revision)) {
      const keys = events.map((event) => event.key);
      const fits = (deleting.get(keys[0]!) ?? []).filter((op) => {
        if ((lowest.get(op.id)?.place.revision ?? kvInitialRevision) >= revision) return false;
        if (!branches(op.input).some((requests) => keys.every((key) => writesOf(requests).deletes.has(key)))) return false;
        const before = sliceOf(store, new Set([...keysOf(op.input), ...keys]), revision - 1);
        const next = executeKv(before, op.input);
        return next.state.revision === revision && next.state.key === applyEvents(before, revision, events).key;
      });
      candidates.set(revision, fits);
    }
    applyTo(store, revision, events);
  }
  const revisionOf = new Map<number, number>();
  const augment = (revision: number, seen: Set<number>): boolean => {
    for (const op of candidates.get(revision)!) {
      if (seen.has(op.id)) continue;
      seen.add(op.id);
      const taken = revisionOf.get(op.id);
      if (taken === undefined || augment(taken, seen)) {
        revisionOf.set(op.id, revision);
        return true;
      }
    }
    return false;
  };
  for (const revision of deleteOnly) {
    if (!augment(revision, new Set())) {
      const keys = revisions.get(revision)!.map((event) => event.key);
      throw new Violation(`revision ${revision} deleted ${keys.join(', ')}, but no acknowledged or unknown operation can have made exactly that`, []);
    }
  }
  const byId = new Map(unknown.map((op) => [op.id, op]));
  for (const [id, revision] of revisionOf) {
    madeBy.set(revision, byId.get(id)!);
    placeOf.set(id, { revision, read: 0 });
  }
}

/** The state at `revision` restricted to `keys` (a state of just what an op looks at). */
function sliceOf(store: ReadonlyMap<string, KeyMeta>, keys: Iterable<string>, revision: number): KvState {
  const part = new Map<string, KeyMeta>();
  for (const key of keys) {
    const meta = store.get(key);
    if (meta !== undefined) part.set(key, meta);
  }
  return kvStateOf(revision, part);
}

/** For each op: the highest place (and its op) among ops that returned before its call. */
function lowestPlaces(ops: readonly KvOp[], placeOf: ReadonlyMap<number, Place>): Map<number, { place: Place; op: KvOp }> {
  const returned = ops.filter((op) => op.status === 'ok' && placeOf.has(op.id)).sort((a, b) => a.ret! - b.ret!);
  const byCall = [...ops].sort((a, b) => a.call - b.call);
  const out = new Map<number, { place: Place; op: KvOp }>();
  let best: { place: Place; op: KvOp } | undefined;
  let i = 0;
  for (const op of byCall) {
    while (i < returned.length && returned[i]!.ret! < op.call) {
      const candidate = returned[i++]!;
      const place = placeOf.get(candidate.id)!;
      if (best === undefined || compareUnsigned(place, best.place) > 0) best = { place, op: candidate };
    }
    if (best !== undefined) out.set(op.id, best);
  }
  return out;
}

/** Every key an operation reads, writes or compares. */
function keysOf(input: KvInput): Set<string> {
  const keys = new Set<string>();
  for (const requests of branches(input)) for (const request of requests) keys.add(request.key);
  if (input.f === 'txn') for (const compare of input.compare) keys.add(compare.key);
  return keys;
}

/** Applies a revision's events to `keys` as etcd does (a put keeps the create revision and bumps the version). */
function applyTo(keys: Map<string, KeyMeta>, revision: number, events: readonly LogicalEvent[]): void {
  for (const event of events) {
    if (event.type === 'delete') {
      keys.delete(event.key);
      continue;
    }
    const meta = keys.get(event.key);
    keys.set(event.key, { value: event.value!, createRevision: meta?.createRevision ?? revision, modRevision: revision, version: (meta?.version ?? 0) + 1 });
  }
}

function applyEvents(state: KvState, revision: number, events: readonly LogicalEvent[]): KvState {
  const keys = new Map<string, KeyMeta>(state.keys);
  applyTo(keys, revision, events);
  return kvStateOf(revision, keys);
}

function describeEvents(events: readonly LogicalEvent[]): string {
  return events.map((event) => (event.type === 'put' ? `put ${event.key} = ${JSON.stringify(event.value)}` : `delete ${event.key}`)).join(', ');
}

function describeChange(before: KvState, after: KvState): string {
  const parts: string[] = [];
  for (const [key, meta] of after.keys) if (before.keys.get(key)?.modRevision !== meta.modRevision) parts.push(`put ${key} = ${JSON.stringify(meta.value)}`);
  for (const key of before.keys.keys()) if (!after.keys.has(key)) parts.push(`delete ${key}`);
  return parts.join(', ') || 'no change';
}
