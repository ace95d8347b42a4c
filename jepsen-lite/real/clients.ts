/**
 * The clients of a real run: N processes, each with one gRPC channel bound to one member, one
 * operation at a time (inputs from the workload generator), each with a deadline; after an error
 * a client moves to the next member. Every operation is recorded as an `Operation`. In the watch
 * workload watchers run besides them, `watchersPerNode` homed on each member (`watcherPlan`): a
 * Watch stream on the run's key prefix with prevKv, recorded as a `WatchRecord` named
 * `w<i>.<stream>@<member>`. Half open their first stream from now, half a moment later from
 * revision 1 (a past revision: history replayed). A stream that breaks or is cut (every
 * `watchCutMs`) resumes from the first revision not yet seen (`resumedFrom`), alternately on
 * another member and back on its home member.
 */
import type { WatchEvent, WatchKeyValue, WatchRecord, WatchResponse } from '../check/index.js';
import type { CounterInput, CounterOutput, Operation, OpStatus } from '../history.js';
import {
  type CounterGenerator,
  classifyError,
  describeError,
  fromCounterResponse,
  fromEtcdResponse,
  prefixRange,
  toCounterCall,
  toEtcdCall,
  type EtcdMethod,
  type Generator,
  type WorkloadInput,
  type WorkloadOutput,
} from '../workload/index.js';
import { AuthenticatedChannel, type RunAuth } from './auth.js';
import { type Decoded, EtcdChannel, grpcStatus, type KvMethod, type RpcError, type WatchStream } from '../../src/client/index.js';

/** Deadline of one operation; past it the client gives up and records `info` (or `fail` for a read). */
export const opTimeoutMs = 1500;
/** Pause after an error before the next operation, so a client facing a dead cluster does not spin. */
export const errorPauseMs = 100;
/** Pause between a client's operations: keeps the history small enough for the checker. */
export const opIntervalMs = 10;
/** Pause before a broken watch stream is reopened. */
export const watchReopenPauseMs = 200;
/** Watch streams homed on each member in the watch workload (`--watchers-per-node`). */
export const watchersPerNodeDefault = 2;
export const watchersPerNodeMax = 16;
/** A watcher from the past opens its first stream this long after the run began, at revision 1. */
export const watchPastOpenDelayMs = 1500;
/** A watcher cuts its own stream after this long and resumes (besides streams the faults break). */
export const watchCutMs = 4000;
/** The largest message either way (a final history read may be large). */
export const messageBytesMax = 64 * 1024 * 1024;

/**
 * A channel to one member, as every part of a real run opens it: no retries (src/client's channel
 * has none), and quick reconnects, so a client fails fast while a node is down instead of backing
 * off for up to 2 minutes.
 */
export function memberChannel(endpoint: string, auth?: RunAuth): EtcdChannel {
  const options = { messageBytesMax, reconnectBackoffMs: { initial: 100, max: 1000 } };
  return auth === undefined ? new EtcdChannel(endpoint, options) : new AuthenticatedChannel(endpoint, options, auth);
}

const grpcMethod: Readonly<Record<EtcdMethod, KvMethod>> = {
  range: 'Range',
  put: 'Put',
  deleteRange: 'DeleteRange',
  txn: 'Txn',
};

export interface ClientCluster {
  readonly members: readonly { readonly name: string }[];
  endpoint(name: string): string;
}

/** What one operation came to. */
export type Invoked<O> = { readonly status: 'ok'; readonly output: O } | { readonly status: Exclude<OpStatus, 'ok'>; readonly error: string; readonly heardBack: boolean };

/** What the clients run: the next input of a process, and how one input is called on a member. */
export interface ClientWorkload<I = unknown, O = unknown> {
  next(process: number): I;
  /** Feedback: what an ok operation returned. */
  observe?(input: I, output: O): void;
  invoke(client: EtcdChannel, input: I): Promise<Invoked<O>>;
}

function failureOf(error: unknown, status: Exclude<OpStatus, 'ok'>): Invoked<never> {
  // A deadline means we never heard back: the operation has no return.
  const heardBack = (error as RpcError).code !== grpcStatus.DEADLINE_EXCEEDED;
  return { status, error: describeError(error), heardBack };
}

/** The register, kv and watch workloads: the generator's inputs as etcd KV calls. */
export function etcdWorkload(generator: Generator, keyPrefix: string): ClientWorkload<WorkloadInput, WorkloadOutput> {
  return {
    next: (process) => generator.next(process),
    observe: (input, output) => generator.observe(input, output),
    async invoke(client, input) {
      const call = toEtcdCall(input, keyPrefix);
      let response: Decoded;
      try {
        response = await client.kv(grpcMethod[call.method], call.request, { timeoutMs: opTimeoutMs });
      } catch (error) {
        return failureOf(error, classifyError(error, input));
      }
      // A response the mapping cannot read is a harness or server bug; the op may have happened.
      try {
        return { status: 'ok', output: fromEtcdResponse(input, response) };
      } catch (error) {
        return { status: 'info', error: `unreadable response: ${(error as Error).message}`, heardBack: true };
      }
    },
  };
}

/** The counter workload: dkv.v1.Counter Increment and (linearizable) Get. */
export function counterWorkload(generator: CounterGenerator, keyPrefix: string): ClientWorkload<CounterInput, CounterOutput> {
  return {
    next: (process) => generator.next(process),
    async invoke(client, input) {
      const call = toCounterCall(input, keyPrefix);
      let response: Decoded;
      try {
        response = await client.call('dkv.v1.Counter', call.method, call.request, { timeoutMs: opTimeoutMs });
      } catch (error) {
        // A Get changes nothing: any error of it is a definite failure.
        return failureOf(error, input.f === 'read' ? 'fail' : classifyError(error));
      }
      return { status: 'ok', output: fromCounterResponse(input, response) };
    },
  };
}

export interface ClientsOptions {
  readonly cluster: ClientCluster;
  /** The user the clients call as (--auth); none: no auth. */
  readonly auth?: RunAuth;
  readonly workload: ClientWorkload;
  /** The watchers' prefix. */
  readonly keyPrefix: string;
  /** Processes that issue operations. */
  readonly clients: number;
  /** Watchers homed on each member (0 outside the watch workload). */
  readonly watchersPerNode: number;
  /** ms since the run began. */
  readonly now: () => number;
  /** Called as each operation completes (progress). */
  readonly onOperation?: (op: Operation) => void;
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** A watcher: the member (by index) it is homed on, and where its first stream starts. */
export interface PlannedWatcher {
  readonly home: number;
  readonly firstFrom: 'now' | 'past';
}

/** `perNode` watchers homed on each of `members` members, alternately from now and from the past. */
export function watcherPlan(members: number, perNode: number): PlannedWatcher[] {
  if (!Number.isSafeInteger(members) || members < 1) throw new TypeError(`members must be a positive integer, got ${members}`);
  if (!Number.isSafeInteger(perNode) || perNode < 0) throw new TypeError(`perNode must be a non-negative integer, got ${perNode}`);
  return Array.from({ length: members * perNode }, (_, i) => ({ home: Math.floor(i / perNode), firstFrom: i % 2 === 0 ? 'now' : 'past' }));
}

/** The member a watcher's `stream`-th stream goes to: home every other time, the others in turn between. */
export function watchMember(home: number, stream: number, members: number): number {
  if (stream % 2 === 0 || members === 1) return home;
  return (home + 1 + (Math.floor(stream / 2) % (members - 1))) % members;
}

/** Streams per member, from the records' names (`…@<member>`); members without one count 0. */
export function watchStreamsPerMember(records: readonly WatchRecord[], members: readonly string[]): Map<string, number> {
  const counts = new Map(members.map((m) => [m, 0]));
  for (const record of records) {
    const member = record.name?.slice(record.name.lastIndexOf('@') + 1);
    if (member !== undefined && counts.has(member)) counts.set(member, counts.get(member)! + 1);
  }
  return counts;
}

/** The watch streams' numbers, flat, for the stats table (per member: `watch.<member>.streams`). */
export function watchStats(watches: readonly WatchRecord[], members: readonly string[]): Record<string, number> {
  const perMember = watchStreamsPerMember(watches, members);
  return {
    'watch.streams': watches.length,
    'watch.events': watches.reduce((sum, w) => sum + w.responses.reduce((n, r) => n + (r.kind === 'events' ? r.events.length : 0), 0), 0),
    'watch.streamsPerNodeMin': Math.min(...perMember.values()),
    ...Object.fromEntries([...perMember].map(([member, n]) => [`watch.${member}.streams`, n])),
  };
}

/** Runs the clients and the watchers until `signal` aborts; then returns what they recorded. */
export class ClientPool {
  private nextId = 0;
  private readonly operations: Operation[] = [];
  private readonly watches: WatchRecord[] = [];
  private readonly openStreams = new Set<() => void>();

  constructor(private readonly options: ClientsOptions) {}

  async run(signal: AbortSignal): Promise<{ operations: Operation[]; watches: WatchRecord[] }> {
    const { clients, watchersPerNode, cluster } = this.options;
    const workers: Promise<void>[] = [];
    for (let p = 0; p < clients; p++) workers.push(this.client(p, signal));
    watcherPlan(cluster.members.length, watchersPerNode).forEach((planned, w) => workers.push(this.watcher(w, planned, signal)));
    signal.addEventListener('abort', () => {
      for (const close of [...this.openStreams]) close();
    }, { once: true });
    await Promise.all(workers);
    const operations = [...this.operations].sort((a, b) => a.id - b.id);
    return { operations, watches: this.watches };
  }

  private memberName(index: number): string {
    const members = this.options.cluster.members;
    return members[index % members.length]!.name;
  }

  /**
   * Client `first`'s loop. An operation that ends `info` never returned, so its process stays
   * busy with it forever: the client goes on as a new process (+ clients), as Jepsen does.
   */
  private async client(first: number, signal: AbortSignal): Promise<void> {
    const { workload, now, cluster, clients } = this.options;
    let process = first;
    let node = first;
    let client = memberChannel(cluster.endpoint(this.memberName(node)), this.options.auth);
    try {
      while (!signal.aborted) {
        const input = workload.next(process);
        const id = this.nextId++;
        const call = now();
        const name = this.memberName(node);
        const op = await workload.invoke(client, input);
        const ret = now();
        const base = { id, process, call, input, node: name };
        let recorded: Operation;
        if (op.status === 'ok') {
          workload.observe?.(input, op.output);
          recorded = { ...base, ret, status: 'ok', output: op.output };
        } else {
          recorded = { ...base, ...(op.heardBack ? { ret } : {}), status: op.status, error: op.error };
        }
        this.operations.push(recorded);
        this.options.onOperation?.(recorded);
        if (op.status === 'info') process += clients;
        if (op.status !== 'ok') {
          client.close();
          node++;
          client = memberChannel(cluster.endpoint(this.memberName(node)), this.options.auth);
          await pause(errorPauseMs);
        } else {
          await pause(opIntervalMs);
        }
      }
    } finally {
      client.close();
    }
  }

  // ---- watchers ------------------------------------------------------------------------------

  private async watcher(index: number, planned: PlannedWatcher, signal: AbortSignal): Promise<void> {
    const { key, rangeEnd } = prefixRange(this.options.keyPrefix);
    const members = this.options.cluster.members.length;
    /** The first revision not yet seen, once there is one (from the past: revision 1, after a while). */
    let resumeFrom: number | undefined;
    if (planned.firstFrom === 'past') {
      await pause(watchPastOpenDelayMs, signal);
      resumeFrom = 1;
    }
    for (let stream = 0; !signal.aborted; stream++) {
      const name = this.memberName(watchMember(planned.home, stream, members));
      const params = { key, rangeEnd, startRevision: resumeFrom ?? 0, prevKv: true };
      const result = await this.watchOnce(name, params, signal);
      this.watches.push({
        name: `w${index}.${stream}@${name}`,
        params,
        responses: result.responses,
        end: result.end,
        ...(resumeFrom === undefined || stream === 0 ? {} : { resumedFrom: resumeFrom }),
      });
      if (result.nextRevision !== undefined) resumeFrom = result.nextRevision;
      if (signal.aborted) break;
      await pause(watchReopenPauseMs);
    }
  }

  /** One Watch stream until it breaks, is canceled, is cut (after `watchCutMs`), or the run ends. */
  private watchOnce(
    member: string,
    params: { key: Uint8Array; rangeEnd: Uint8Array; startRevision: number; prevKv: boolean },
    signal: AbortSignal,
  ): Promise<{ responses: WatchResponse[]; end: WatchRecord['end']; nextRevision: number | undefined }> {
    const client = memberChannel(this.options.cluster.endpoint(member));
    const responses: WatchResponse[] = [];
    let nextRevision: number | undefined = params.startRevision > 0 ? params.startRevision : undefined;
    return new Promise((resolve) => {
      let stream: WatchStream | undefined;
      const close = (): void => stream?.close();
      const cut = setTimeout(close, watchCutMs);
      stream = client.watch({
        onResponse: (raw) => {
          const response = watchResponseOf(raw);
          responses.push(response);
          if (response.kind === 'created' && nextRevision === undefined && response.headerRevision !== undefined) {
            nextRevision = response.headerRevision + 1;
          } else if (response.kind === 'events') {
            const last = response.events[response.events.length - 1];
            if (last !== undefined) nextRevision = Math.max(nextRevision ?? 0, last.modRevision + 1);
          } else if (response.kind === 'progress') {
            nextRevision = Math.max(nextRevision ?? 0, response.headerRevision + 1);
          } else if (response.kind === 'canceled') {
            stream?.close();
          }
        },
        onEnd: (error) => {
          clearTimeout(cut);
          this.openStreams.delete(close);
          client.close();
          const canceled = responses.some((r) => r.kind === 'canceled');
          const end = canceled ? 'canceled' : error === undefined ? 'client-closed' : 'broken';
          resolve({ responses, end, nextRevision });
        },
      });
      this.openStreams.add(close);
      if (signal.aborted) close();
      stream.send({
        create_request: {
          key: params.key,
          range_end: params.rangeEnd,
          start_revision: params.startRevision,
          prev_kv: params.prevKv,
          progress_notify: false,
        },
      });
    });
  }
}

interface WireKv {
  key?: Uint8Array;
  value?: Uint8Array;
  create_revision?: number;
  mod_revision?: number;
  version?: number;
  lease?: number;
}

function keyValueOf(kv: WireKv): WatchKeyValue {
  return {
    key: Buffer.from(kv.key ?? []),
    value: Buffer.from(kv.value ?? []),
    createRevision: Number(kv.create_revision ?? 0),
    modRevision: Number(kv.mod_revision ?? 0),
    version: Number(kv.version ?? 0),
    lease: Number(kv.lease ?? 0),
  };
}

/** etcd's mvccpb.Event.EventType: PUT = 0, DELETE = 1. */
const eventTypeDelete = 1;

export function watchEventOf(raw: { type?: number; kv?: WireKv | null; prev_kv?: WireKv | null }): WatchEvent {
  const kv = keyValueOf(raw.kv ?? {});
  const type = raw.type === eventTypeDelete ? 'delete' : 'put';
  const prev = raw.prev_kv === null || raw.prev_kv === undefined || (raw.prev_kv.key?.length ?? 0) === 0 ? undefined : keyValueOf(raw.prev_kv);
  const event: WatchEvent =
    type === 'put'
      ? { type, key: kv.key, value: kv.value, createRevision: kv.createRevision, modRevision: kv.modRevision, version: kv.version, lease: kv.lease }
      : { type, key: kv.key, createRevision: 0, modRevision: kv.modRevision, version: 0 };
  return prev === undefined ? event : { ...event, prevKv: prev };
}

/** A decoded etcd WatchResponse as the watch checker reads it. */
export function watchResponseOf(raw: Decoded): WatchResponse {
  const header = raw.header as { revision?: number } | null | undefined;
  const headerRevision = Number(header?.revision ?? 0);
  if (raw.canceled === true) {
    const compactRevision = Number(raw.compact_revision ?? 0);
    return { kind: 'canceled', reason: String(raw.cancel_reason ?? ''), ...(compactRevision > 0 ? { compactRevision } : {}) };
  }
  if (raw.created === true) return { kind: 'created', headerRevision };
  const events = (raw.events as Array<Parameters<typeof watchEventOf>[0]> | undefined) ?? [];
  if (events.length === 0) return { kind: 'progress', headerRevision };
  return { kind: 'events', headerRevision, events: events.map(watchEventOf), ...(raw.fragment === true ? { fragment: true } : {}) };
}
