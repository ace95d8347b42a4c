/**
 * A load generator for the etcd v3 Watch API (`dkv bench watch`), shaped like etcd's
 * `benchmark watch` so one generator measures DKV and real etcd alike.
 *
 * `streams` Watch streams, stream s on connection s mod conns (connection j on endpoint j mod
 * endpoints), each with `watchPerStream` watchers; watcher g (g = s·watchPerStream + i) watches key
 * g mod keySpaceSize, or with `prefix` the prefix that only that key has. Once every watcher is
 * `created`, a putter writes key n mod keySpaceSize for put n = 0 … putTotal−1 at `putRate` per
 * second (at most `putsInFlightMax` in flight, round-robin over the connections), so every put
 * matches about streams·watchPerStream/keySpaceSize watchers.
 *
 * Each put's value carries its number n in its first bytes (big-endian), so an event names the put
 * it came from: put-to-delivery latency is the event's receive time minus that put's send time.
 * At the end every watcher must have received exactly the puts of its key, each once, in revision
 * order, with the revision the put's response reported; anything else counts as an error.
 *
 * Pre-encoded requests and raw response bytes over src/client's `EtcdChannel`, as
 * bench/etcd-load.ts; watch and put responses are decoded here as protobufjs messages.
 */
import type * as grpc from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { type EtcdChannel, methodPath } from '../src/client/index.js';
import { etcdType, int64Saturated, type Int64 } from '../src/etcd-proto.js';
import { type Percentiles, benchKey, openChannels, pacer, percentiles } from './etcd-load.js';

/** Limits the CLI checks flags against (named here so the help and the checks agree). */
export const watchLoadLimits = {
  connsMax: 1_000,
  streamsMax: 10_000,
  /** DKV's watchers-per-stream limit (src/engines/watch/limits.ts). */
  watchPerStreamMax: 10_000,
  watchersMax: 1_000_000,
  putTotalMax: 100_000_000,
  /** Events the run expects in all (one latency sample each is kept). */
  eventsMax: 20_000_000,
  keySizeMax: 1_024 * 1_024,
  valSizeMax: 16 * 1_024 * 1_024,
  keySpaceSizeMax: 1_000_000_000,
  putRateMax: 10_000_000,
  /** Puts outstanding at once (like 100 put clients); the rate paces them below that. */
  putsInFlightMax: 100,
  requestTimeoutMs: 30_000,
  connectTimeoutMs: 10_000,
  /** Every watcher must be `created` within this. */
  createTimeoutMs: 30_000,
  /** After the last put is answered, missing events are given up on after this long without one. */
  idleTimeoutMs: 10_000,
  /** After the last expected event, how long to listen for extra (duplicate) events. */
  graceMs: 250,
} as const;

export interface WatchLoadOptions {
  /** host:port, no scheme. */
  readonly endpoints: readonly string[];
  readonly conns: number;
  /** An auth token (Auth.Authenticate's, `dkv bench --user`) every call carries; none when absent. */
  readonly token?: string | undefined;
  readonly streams: number;
  readonly watchPerStream: number;
  /** Puts per second; 0 = as fast as putsInFlightMax outstanding puts go. */
  readonly putRate: number;
  readonly putTotal: number;
  readonly keySize: number;
  readonly valSize: number;
  readonly keySpaceSize: number;
  /** Watch the prefix only key g mod keySpaceSize has, instead of the key itself. */
  readonly prefix: boolean;
}

export interface WatchLoadResult {
  readonly workload: 'watch';
  readonly watchers: number;
  /** From the first create request to the last `created`. */
  readonly createSeconds: number;
  readonly putTotal: number;
  /** From the first put sent to the last put answered. */
  readonly putSeconds: number;
  readonly putsPerSecond: number;
  readonly putLatencyMs: Percentiles;
  readonly expectedEvents: number;
  readonly events: number;
  /** Watch responses that carried events (etcd may put several revisions in one). */
  readonly eventResponses: number;
  /** From the first put sent to the last event received. */
  readonly seconds: number;
  readonly eventsPerSecond: number;
  /** Per delivered event: receive time − its put's send time. */
  readonly latencyMs: Percentiles;
  readonly errors: number;
  readonly errorsByMessage: ReadonlyMap<string, number>;
}

/** Bytes a put's number takes at the front of its value (big-endian), for put numbers < putTotal. */
export function seqBytesFor(putTotal: number): number {
  let bytes = 1;
  while (bytes < 7 && 256 ** bytes < putTotal) bytes++;
  return bytes;
}

/** Watchers in all, and the events they should get: watcher g gets every put of key g mod K. */
export function expectedEventCount(options: Pick<WatchLoadOptions, 'streams' | 'watchPerStream' | 'putTotal' | 'keySpaceSize'>): number {
  const watchers = options.streams * options.watchPerStream;
  const K = options.keySpaceSize;
  const perKey = Math.floor(options.putTotal / K);
  const extra = options.putTotal % K; // keys 0 … extra−1 get one put more
  const fullRounds = Math.floor(watchers / K);
  const restWatchers = watchers % K; // watchers of keys 0 … restWatchers−1 in the last round
  return fullRounds * options.putTotal + restWatchers * perKey + Math.min(restWatchers, extra);
}

/** The varint bytes of key n (no padding): prefix-free, so as a prefix it matches key n alone. */
function keyPrefix(n: number): Buffer {
  const key = benchKey(n, 16);
  let length = 1;
  while (key[length - 1]! >= 0x80) length++;
  return key.subarray(0, length);
}

function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  end[end.length - 1]!++; // the last varint byte is < 0x80: no carry
  return end;
}

interface WireEvent {
  type: number;
  kv?: { key: Uint8Array; value: Uint8Array; mod_revision: Int64 };
}

interface WireWatchResponse {
  header?: { revision: Int64 };
  watch_id: Int64;
  created: boolean;
  canceled: boolean;
  compact_revision: Int64;
  cancel_reason: string;
  events: WireEvent[];
}

export async function runWatchLoad(options: WatchLoadOptions): Promise<WatchLoadResult> {
  if (options.endpoints.length === 0) throw new TypeError('no endpoints');
  const watchRequest = etcdType('etcdserverpb.WatchRequest');
  const watchResponse = etcdType('etcdserverpb.WatchResponse');
  const putRequest = etcdType('etcdserverpb.PutRequest');
  const putResponse = etcdType('etcdserverpb.PutResponse');
  const watchPath = methodPath('etcdserverpb.Watch', 'Watch');
  const putPath = methodPath('etcdserverpb.KV', 'Put');
  const K = options.keySpaceSize;
  const watcherTotal = options.streams * options.watchPerStream;
  const expectedTotal = expectedEventCount(options);
  const seqBytes = seqBytesFor(options.putTotal);

  const errorsByMessage = new Map<string, number>();
  let errors = 0;
  const error = (message: string, count = 1): void => {
    errors += count;
    errorsByMessage.set(message, (errorsByMessage.get(message) ?? 0) + count);
  };

  // Per put: send time (ms, performance clock), answered time, revision from the response (0: none).
  const putSent = new Float64Array(options.putTotal);
  const putLatency = new Float64Array(options.putTotal);
  const putRevision = new Float64Array(options.putTotal);
  // Per watcher: events received and the last revision (for the order check).
  const watcherCount = new Uint32Array(watcherTotal);
  const watcherLastRevision = new Float64Array(watcherTotal);
  // Per received event (up to the expected number): latency, the put it came from, its revision.
  const latencies = new Float64Array(expectedTotal);
  const eventSeq = new Float64Array(expectedTotal);
  const eventRevision = new Float64Array(expectedTotal);
  let received = 0;
  let extra = 0;
  let eventResponses = 0;
  let lastEventAt = 0;
  let finished = false;
  let onProgress: () => void = () => {};

  const channels = openChannels(options);
  const calls: grpc.ClientDuplexStream<Buffer, Buffer>[] = [];
  try {
    await Promise.all(channels.map((channel) => channel.waitForReady(watchLoadLimits.connectTimeoutMs)));

    // ---- Streams and watchers -------------------------------------------------------------
    let createdTotal = 0;
    let streamFailed = false;
    let onCreated: () => void = () => {};
    const createStarted = performance.now();
    for (let s = 0; s < options.streams; s++) {
      const call = channels[s % channels.length]!.bidiStreamBytes(watchPath);
      calls.push(call);
      const watcherById = new Map<number, number>();
      let createdOnStream = 0;
      call.on('data', (bytes: Buffer) => {
        const now = performance.now();
        if (finished) return;
        const response = watchResponse.decode(bytes) as unknown as WireWatchResponse;
        const id = int64Saturated(response.watch_id);
        if (response.created) {
          if (response.canceled) {
            error(`watch create refused: ${response.cancel_reason || 'canceled'}`);
            streamFailed = true;
          } else {
            // A stream answers its create requests in order.
            watcherById.set(id, s * options.watchPerStream + createdOnStream);
          }
          createdOnStream++;
          createdTotal++;
          onCreated();
          if (response.events === undefined || response.events.length === 0) return;
        } else if (response.canceled) {
          const compact = int64Saturated(response.compact_revision);
          error(`watch canceled: ${response.cancel_reason || (compact > 0 ? `compacted at ${compact}` : 'by the server')}`);
          streamFailed = true;
          onProgress();
          return;
        }
        const events = response.events ?? [];
        if (events.length === 0) return; // progress notification
        eventResponses++;
        const g = watcherById.get(id);
        if (g === undefined) {
          error('events for an unknown watch id', events.length);
          return;
        }
        for (const event of events) {
          const kv = event.kv;
          if (event.type !== 0 || kv === undefined) {
            error('an event that is not a put');
            continue;
          }
          const revision = int64Saturated(kv.mod_revision);
          let seq = 0;
          for (let b = 0; b < seqBytes && b < kv.value.length; b++) seq = seq * 256 + kv.value[b]!;
          if (kv.value.length !== options.valSize || seq >= options.putTotal || putSent[seq] === 0 || seq % K !== g % K) {
            error('an event this run did not put on the watched key');
            continue;
          }
          if (revision <= watcherLastRevision[g]!) {
            error('an event out of revision order or repeated');
            continue;
          }
          watcherLastRevision[g] = revision;
          watcherCount[g]!++;
          lastEventAt = now;
          if (received < expectedTotal) {
            latencies[received] = now - putSent[seq]!;
            eventSeq[received] = seq;
            eventRevision[received] = revision;
            received++;
          } else {
            extra++;
          }
        }
        onProgress();
      });
      call.on('error', (e: grpc.ServiceError) => {
        if (finished) return;
        error(`watch stream: ${e.details || e.message}`);
        streamFailed = true;
        onCreated();
        onProgress();
      });
      call.on('end', () => {
        if (finished) return;
        error('watch stream ended by the server');
        streamFailed = true;
        onCreated();
        onProgress();
      });
      for (let i = 0; i < options.watchPerStream; i++) {
        const g = s * options.watchPerStream + i;
        const key = options.prefix ? keyPrefix(g % K) : benchKey(g % K, options.keySize);
        const create = options.prefix ? { key, range_end: prefixEnd(key) } : { key };
        call.write(Buffer.from(watchRequest.encode({ create_request: create }).finish()));
      }
    }
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`only ${createdTotal} of ${watcherTotal} watchers were created within ${watchLoadLimits.createTimeoutMs / 1000} s`));
      }, watchLoadLimits.createTimeoutMs);
      onCreated = () => {
        if (createdTotal < watcherTotal && !streamFailed) return;
        clearTimeout(timer);
        if (streamFailed) reject(new Error(`watchers could not be created: ${[...errorsByMessage.keys()].join('; ')}`));
        else resolve();
      };
      onCreated();
    });
    onCreated = () => {};
    const createSeconds = (performance.now() - createStarted) / 1000;

    // ---- Putter ---------------------------------------------------------------------------
    const value = randomBytes(options.valSize);
    const pace = pacer(options.putRate);
    let issued = 0;
    let putsAnswered = 0;
    let lastPutDone = 0;
    const firstPutAt = performance.now();
    const putOne = (seq: number, channel: EtcdChannel): Promise<void> => {
      const v = Buffer.from(value);
      for (let b = seqBytes - 1, n = seq; b >= 0; b--, n = Math.floor(n / 256)) v[b] = n % 256;
      const request = Buffer.from(putRequest.encode({ key: benchKey(seq % K, options.keySize), value: v }).finish());
      return new Promise((resolve) => {
        putSent[seq] = performance.now();
        channel.unaryBytes(putPath, request, watchLoadLimits.requestTimeoutMs, (e, response) => {
          const now = performance.now();
          putLatency[seq] = now - putSent[seq]!;
          lastPutDone = now;
          putsAnswered++;
          if (e) error(`put: ${e.details || e.message}`);
          else if (response !== undefined) {
            const decoded = putResponse.decode(response) as unknown as { header?: { revision: Int64 } };
            putRevision[seq] = int64Saturated(decoded.header?.revision);
          }
          resolve();
        });
      });
    };
    const putLoop = async (worker: number): Promise<void> => {
      const channel = channels[worker % channels.length]!;
      while (issued < options.putTotal) {
        const seq = issued++;
        await pace();
        await putOne(seq, channel);
      }
    };
    const putters: Promise<void>[] = [];
    for (let w = 0; w < Math.min(watchLoadLimits.putsInFlightMax, options.putTotal); w++) putters.push(putLoop(w));
    const putsDone = Promise.all(putters).then(() => true);

    // ---- Wait for every expected event (or give up after an idle period) -------------------
    let putterFinished = false;
    void putsDone.then(() => {
      putterFinished = true;
      onProgress();
    });
    await new Promise<void>((resolve) => {
      let lastActivity = performance.now();
      const check = setInterval(() => {
        if (!putterFinished) return;
        const idleSince = Math.max(lastActivity, lastPutDone);
        if (performance.now() - idleSince >= watchLoadLimits.idleTimeoutMs) done();
      }, 100);
      const done = (): void => {
        clearInterval(check);
        onProgress = () => {};
        resolve();
      };
      onProgress = () => {
        lastActivity = performance.now();
        if (received >= expectedTotal && putterFinished) {
          onProgress = () => {};
          clearInterval(check);
          setTimeout(resolve, watchLoadLimits.graceMs); // extra events still count as errors
        } else if (streamFailed && putterFinished) {
          done();
        }
      };
      onProgress();
    });
    finished = true;

    // ---- Checks ---------------------------------------------------------------------------
    const putCounts = new Float64Array(Math.min(K, watcherTotal));
    for (let k = 0; k < putCounts.length; k++) putCounts[k] = Math.floor(options.putTotal / K) + (k < options.putTotal % K ? 1 : 0);
    let missing = 0;
    let surplus = 0;
    for (let g = 0; g < watcherTotal; g++) {
      const want = putCounts[g % K]!;
      const got = watcherCount[g]!;
      if (got < want) missing += want - got;
      else if (got > want) surplus += got - want;
    }
    if (missing > 0) error('events a watcher should have got and did not', missing);
    if (surplus > 0 || extra > 0) error('events beyond what a watcher should get', Math.max(surplus, extra));
    let wrongRevision = 0;
    for (let i = 0; i < received; i++) {
      const expected = putRevision[eventSeq[i]!]!;
      if (expected !== 0 && expected !== eventRevision[i]) wrongRevision++;
    }
    if (wrongRevision > 0) error("events whose revision differs from their put's response", wrongRevision);

    const seconds = ((lastEventAt || performance.now()) - firstPutAt) / 1000;
    const putSeconds = (lastPutDone - firstPutAt) / 1000;
    return {
      workload: 'watch',
      watchers: watcherTotal,
      createSeconds,
      putTotal: options.putTotal,
      putSeconds,
      putsPerSecond: putSeconds > 0 ? putsAnswered / putSeconds : 0,
      putLatencyMs: percentiles(putLatency.subarray(0, options.putTotal)),
      expectedEvents: expectedTotal,
      events: received + extra,
      eventResponses,
      seconds,
      eventsPerSecond: seconds > 0 ? (received + extra) / seconds : 0,
      latencyMs: percentiles(latencies.subarray(0, received)),
      errors,
      errorsByMessage,
    };
  } finally {
    finished = true;
    for (const call of calls) call.cancel();
    for (const channel of channels) channel.close();
  }
}

const ms = (value: number): string => value.toFixed(value < 10 ? 3 : 1);

export function describeWatchLoad(options: WatchLoadOptions): string {
  const watchers = options.streams * options.watchPerStream;
  const perPut = watchers / options.keySpaceSize;
  return `watch: ${options.streams} stream(s) × ${options.watchPerStream} watcher(s) over ${options.conns} conn(s) to ${options.endpoints.join(',')}; ` +
    `${options.prefix ? 'prefix' : 'key'} watches over a key space of ${options.keySpaceSize} (${perPut >= 1 ? perPut.toFixed(perPut % 1 === 0 ? 0 : 1) : '≤1'} watcher(s) per put); ` +
    `${options.putTotal} puts ${options.putRate > 0 ? `at ${options.putRate}/s` : 'as fast as possible'}, key ${options.keySize} B, value ${options.valSize} B`;
}

export function formatWatchLoadResult(result: WatchLoadResult): string[] {
  const l = result.latencyMs;
  const p = result.putLatencyMs;
  const lines = [
    `  watchers     ${result.watchers} (all created in ${result.createSeconds.toFixed(3)} s)`,
    `  puts         ${result.putTotal} in ${result.putSeconds.toFixed(3)} s (${result.putsPerSecond.toFixed(1)}/s; put latency ms p50 ${ms(p.p50)} p99 ${ms(p.p99)})`,
    `  events       ${result.events} of ${result.expectedEvents} expected, in ${result.eventResponses} responses`,
    `  seconds      ${result.seconds.toFixed(3)} (first put sent to last event received)`,
    `  events/s     ${result.eventsPerSecond.toFixed(1)}`,
    `  latency ms   p50 ${ms(l.p50)}  p90 ${ms(l.p90)}  p99 ${ms(l.p99)}  max ${ms(l.max)}  (mean ${ms(l.mean)}; put sent to event received)`,
    `  errors       ${result.errors}`,
  ];
  const byCount = [...result.errorsByMessage].sort((a, b) => b[1] - a[1]);
  for (const [message, count] of byCount) lines.push(`    ${String(count).padStart(8)}  ${message}`);
  return lines;
}

/** One JSON line per run, for scripts (bench/compare-etcd.sh). */
export function watchLoadResultJson(result: WatchLoadResult): string {
  return JSON.stringify({ ...result, errorsByMessage: Object.fromEntries(result.errorsByMessage) });
}
