/**
 * The store's committed history, read back at the end of a run on the healed cluster: one Watch
 * over the whole key space (or the run store's prefix) from revision 1 (the run's cluster is fresh, so that is every change
 * it ever made), until the revision a linearizable Range reported. The watch checker checks the
 * run's watch streams against it; `checkAcknowledgedWrites` checks that every write a client saw
 * acknowledged is in it, at the revision it was acknowledged at.
 */
import type { HistoryRevision, WatchEvent, WatchHistory } from '../check/index.js';
import type { CounterInput, CounterOutput, KvInput, KvOutput, KvRequest, KvResult, Operation, RegisterInput, RegisterOutput } from '../history.js';
import { etcdKey } from '../workload/index.js';
import type { EtcdChannel } from '../../src/client/index.js';
import { memberChannel, watchResponseOf } from './clients.js';
import type { RunAuth } from './auth.js';

/** How long reading the committed history may take. */
export const committedReadTimeoutMs = 20_000;
/** Problems listed per run (the count is always complete). */
export const acknowledgedProblemsListedMax = 20;

export interface KeyRange {
  readonly key: Buffer;
  readonly rangeEnd: Buffer;
}

export const wholeKeySpace: KeyRange = { key: Buffer.from([0]), rangeEnd: Buffer.from([0]) };

/** The keys that start with `prefix` (not empty, not all 0xff). */
export function prefixRange(prefix: Uint8Array): KeyRange {
  const end = Buffer.from(prefix);
  let at = end.length - 1;
  while (at >= 0 && end[at] === 0xff) at--;
  if (at < 0) throw new TypeError('prefixRange: the prefix must hold a byte below 0xff');
  end[at] = end[at]! + 1;
  return { key: Buffer.from(prefix), rangeEnd: end.subarray(0, at + 1) };
}

/**
 * Reads every committed revision up to the store's current one from the member at `endpoint`:
 * of the whole key space, or of `range` (a store of DKV's: its shard has a revision sequence of
 * its own, and a Watch across stores is refused).
 */
export async function readCommittedHistory(endpoint: string, timeoutMs = committedReadTimeoutMs, auth?: RunAuth, range: KeyRange = wholeKeySpace): Promise<WatchHistory> {
  const client = memberChannel(endpoint, auth);
  try {
    const counted = await client.kv('Range', { key: range.key, range_end: range.rangeEnd, count_only: true }, { timeoutMs });
    const head = Number((counted.header as { revision?: number } | undefined)?.revision ?? 0);
    const revisions = head > 1 ? await watchUpTo(client, head, timeoutMs, range) : [];
    return { revisions, headRevision: Math.max(head, 1) };
  } finally {
    client.close();
  }
}

function watchUpTo(client: EtcdChannel, head: number, timeoutMs: number, range: KeyRange): Promise<HistoryRevision[]> {
  return new Promise((resolve, reject) => {
    const byRevision = new Map<number, WatchEvent[]>();
    let last = 1;
    let done = false;
    const finish = (error: Error | undefined): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      stream.close();
      if (error !== undefined) {
        reject(error);
        return;
      }
      resolve([...byRevision.entries()].sort(([a], [b]) => a - b).map(([revision, events]) => ({ revision, events })));
    };
    const timer = setTimeout(() => finish(new Error(`committed history: reached revision ${last} of ${head} in ${timeoutMs} ms`)), timeoutMs);
    const stream = client.watch({
      onResponse: (raw) => {
        const response = watchResponseOf(raw);
        if (response.kind === 'canceled') {
          finish(new Error(`committed history: watch canceled: ${response.reason}`));
          return;
        }
        if (response.kind !== 'events') return;
        for (const event of response.events) {
          const { prevKv: _prevKv, ...plain } = event;
          const list = byRevision.get(event.modRevision) ?? [];
          list.push(plain);
          byRevision.set(event.modRevision, list);
          last = Math.max(last, event.modRevision);
        }
        if (last >= head && response.fragment !== true) finish(undefined);
      },
      onEnd: (error) => finish(error ?? new Error('committed history: watch ended early')),
    });
    stream.send({ create_request: { key: range.key, range_end: range.rangeEnd, start_revision: 1, prev_kv: false } });
  });
}

// ---------------------------------------------------------------------------------------------
// Acknowledged writes

export interface AcknowledgedCheck {
  /** Acknowledged writes looked for. */
  readonly checked: number;
  /** How many were not found where they should be. */
  readonly missing: number;
  /** The first few, described. */
  readonly problems: readonly string[];
}

const decoder = new TextDecoder();

function eventText(event: WatchEvent): { key: string; value: string | undefined } {
  return { key: decoder.decode(event.key), value: event.value === undefined ? undefined : decoder.decode(event.value) };
}

interface ExpectedWrite {
  readonly op: number;
  readonly type: 'put' | 'delete';
  readonly key: string;
  readonly value?: string;
  /** Known for the kv model (every output carries its revision); register writes are found by value. */
  readonly revision?: number;
}

function kvWrites(op: number, requests: readonly KvRequest[], results: readonly KvResult[], revision: number, keyPrefix: string): ExpectedWrite[] {
  const writes: ExpectedWrite[] = [];
  requests.forEach((request, i) => {
    const key = decoder.decode(etcdKey(keyPrefix, request.key));
    const result = results[i];
    if (request.f === 'put') writes.push({ op, type: 'put', key, value: request.value, revision });
    else if (request.f === 'delete' && result?.f === 'delete' && result.deleted > 0) writes.push({ op, type: 'delete', key, revision });
  });
  return writes;
}

function expectedWrites(op: Operation, keyPrefix: string): ExpectedWrite[] {
  if (op.status !== 'ok' || op.output === undefined) return [];
  const input = op.input as RegisterInput | KvInput;
  const output = op.output as RegisterOutput | KvOutput;
  const counter = op.input as CounterInput;
  const counterOutput = op.output as CounterOutput;
  const key = (k: string): string => decoder.decode(etcdKey(keyPrefix, k));
  // A counter is a key holding its value's decimal text; with positive deltas each value is unique per key.
  if (counter.f === 'add' && counterOutput.f === 'add' && counterOutput.value !== undefined) {
    return [{ op: op.id, type: 'put', key: key(counter.key), value: String(counterOutput.value) }];
  }
  if (input.f === 'write') return [{ op: op.id, type: 'put', key: key(input.key), value: input.value }];
  if (input.f === 'cas' && output.f === 'cas' && output.succeeded) return [{ op: op.id, type: 'put', key: key(input.key), value: input.to }];
  if (input.f === 'put' && output.f === 'put') return [{ op: op.id, type: 'put', key: key(input.key), value: input.value, revision: output.revision }];
  if (input.f === 'delete' && output.f === 'delete' && output.deleted > 0) return [{ op: op.id, type: 'delete', key: key(input.key), revision: output.revision }];
  if (input.f === 'txn' && output.f === 'txn') {
    return kvWrites(op.id, output.succeeded ? input.success : input.failure, output.results, output.revision, keyPrefix);
  }
  return [];
}

/**
 * Every acknowledged write is in the committed history: kv writes at the revision their
 * response carried, register writes and counter increments (whose responses carry no revision)
 * by their unique value.
 */
export function checkAcknowledgedWrites(operations: readonly Operation[], history: WatchHistory, keyPrefix: string): AcknowledgedCheck {
  const atRevision = new Map<number, Array<{ type: string; key: string; value: string | undefined }>>();
  const putValues = new Set<string>();
  for (const revision of history.revisions) {
    atRevision.set(revision.revision, revision.events.map((e) => ({ type: e.type, ...eventText(e) })));
    for (const event of revision.events) {
      const { key, value } = eventText(event);
      if (event.type === 'put') putValues.add(`${key}\u0000${value ?? ''}`);
    }
  }
  let checked = 0;
  let missing = 0;
  const problems: string[] = [];
  for (const op of operations) {
    for (const write of expectedWrites(op, keyPrefix)) {
      checked++;
      const found =
        write.revision === undefined
          ? putValues.has(`${write.key}\u0000${write.value ?? ''}`)
          : (atRevision.get(write.revision) ?? []).some((e) => e.type === write.type && e.key === write.key && (write.type === 'delete' || e.value === write.value));
      if (found) continue;
      missing++;
      if (problems.length < acknowledgedProblemsListedMax) {
        const what = write.type === 'put' ? `put ${write.key}=${write.value ?? ''}` : `delete ${write.key}`;
        problems.push(`op ${write.op}: acknowledged ${what}${write.revision === undefined ? '' : ` at revision ${write.revision}`} is not in the committed history`);
      }
    }
  }
  return { checked, missing, problems };
}
