/**
 * A load generator for the etcd v3 KV API (`dkv bench put|range|txn-put`), shaped like etcd's own
 * `benchmark` tool so one generator measures both DKV and real etcd: `conns` gRPC channels over
 * the endpoints round-robin, `clients` loops each keeping one request in flight, client i on
 * channel i mod conns (etcd's mustCreateClients), channel j on endpoint j mod endpoints.
 *
 * It talks through src/client's `EtcdChannel` (raw gRPC, the protobufjs-loaded etcd protos)
 * rather than the `etcd3` client: requests are encoded once per distinct key and sent as bytes,
 * responses are never decoded (a failed call arrives as a gRPC status), so the generator spends
 * its CPU on calls, not on objects.
 */
import type * as grpc from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { EtcdChannel, methodPath } from '../src/client/index.js';
import { etcdType } from '../src/etcd-proto.js';
import { startProgress } from './progress.js';

export type Workload = 'put' | 'range' | 'txn-put';
export const workloads: readonly Workload[] = ['put', 'range', 'txn-put'];

/** Limits the CLI checks flags against (named here so the help and the checks agree). */
export const loadLimits = {
  connsMax: 1_000,
  clientsMax: 10_000,
  totalMax: 100_000_000,
  keySizeMax: 1_024 * 1_024,
  valSizeMax: 16 * 1_024 * 1_024,
  keySpaceSizeMax: 1_000_000_000,
  rateMax: 10_000_000,
  txnOpsMax: 128,
  /** Distinct pre-encoded requests kept; past this, requests are encoded per call. */
  encodedCacheMax: 100_000,
  /** A request that takes longer counts as an error rather than hanging the run. */
  requestTimeoutMs: 30_000,
  connectTimeoutMs: 10_000,
} as const;

export interface LoadOptions {
  readonly workload: Workload;
  /** host:port, no scheme. */
  readonly endpoints: readonly string[];
  readonly conns: number;
  /** An auth token (Auth.Authenticate's, `dkv bench --user`) every call carries; none when absent. */
  readonly token?: string | undefined;
  readonly clients: number;
  readonly total: number;
  readonly keySize: number;
  readonly valSize: number;
  readonly keySpaceSize: number;
  readonly sequentialKeys: boolean;
  /** Range only: linearizable (l) or serializable (s). */
  readonly consistency: 'l' | 's';
  /** Requests per second over all clients; 0 = as fast as they go. */
  readonly rate: number;
  /** txn-put only: puts (on distinct keys) in the txn's success branch. */
  readonly txnOps: number;
  /**
   * A DKV store (`--store`): every key is the store's prefix, then `spreadByte(n)`, then the bench
   * key, so the load spreads over the store's shards. Absent: etcd's keys, as etcd's tool makes them.
   */
  readonly store?: { readonly name: string; readonly prefix: Uint8Array } | undefined;
}

export interface LoadResult {
  readonly workload: Workload;
  readonly total: number;
  readonly seconds: number;
  readonly requestsPerSecond: number;
  /** Latencies of the successful requests, in milliseconds. */
  readonly latencyMs: Percentiles;
  readonly errors: number;
  readonly errorsByMessage: ReadonlyMap<string, number>;
}

const path: Readonly<Record<Workload, string>> = {
  put: methodPath('etcdserverpb.KV', 'Put'),
  range: methodPath('etcdserverpb.KV', 'Range'),
  'txn-put': methodPath('etcdserverpb.KV', 'Txn'),
};

/** The bytes a zig-zag varint of `n` takes (Go's binary.PutVarint, which etcd's tool uses). */
export function varintLength(n: number): number {
  let zigzag = BigInt(n) * 2n;
  let length = 1;
  while (zigzag >= 0x80n) {
    zigzag >>= 7n;
    length++;
  }
  return length;
}

/** etcd's benchmark key: `keySize` bytes, Go's binary.PutVarint(k, n) at the front, zeroes after. */
export function benchKey(n: number, keySize: number): Buffer {
  const key = Buffer.alloc(keySize);
  let zigzag = BigInt(n) * 2n; // n >= 0, so zig-zag is 2n
  let i = 0;
  while (zigzag >= 0x80n) {
    key[i++] = Number(zigzag & 0x7fn) | 0x80;
    zigzag >>= 7n;
  }
  key[i] = Number(zigzag);
  return key;
}

/**
 * The byte after a store's prefix for key number n: the low 8 bits of n, reversed. A store's S
 * shards cut its range evenly by that byte, so with S a power of two the shard is read from the
 * byte's top log2(S) bits, the low bits of n reversed: any S consecutive key numbers fall in S
 * different shards, and random ones spread evenly (other S: within one key of even).
 */
export function spreadByte(n: number): number {
  let low = n & 0xff;
  let reversed = 0;
  for (let bit = 0; bit < 8; bit++) {
    reversed = (reversed << 1) | (low & 1);
    low >>= 1;
  }
  return reversed;
}

/**
 * A store's benchmark key: `prefix`, `spreadByte(spreadFrom)`, then `benchKey(n, keySize)`. A
 * txn's puts share one `spreadFrom` (its first key's number), so they fall in one shard (a txn
 * across shards is refused).
 */
export function storeBenchKey(prefix: Uint8Array, n: number, keySize: number, spreadFrom = n): Buffer {
  const key = Buffer.alloc(prefix.length + 1 + keySize);
  key.set(prefix);
  key[prefix.length] = spreadByte(spreadFrom);
  benchKey(n, keySize).copy(key, prefix.length + 1);
  return key;
}

/** Key number n of a run: etcd's key, or the store's (an empty prefix is the default store: etcd's keys). */
export function loadKey(options: Pick<LoadOptions, 'keySize' | 'store'>, n: number, spreadFrom = n): Buffer {
  const prefix = options.store?.prefix;
  return prefix === undefined || prefix.length === 0 ? benchKey(n, options.keySize) : storeBenchKey(prefix, n, options.keySize, spreadFrom);
}

/** Builds the encoded request for key number n (and the n+1 … that a multi-op txn adds). */
function requestEncoder(options: LoadOptions): (n: number) => Buffer {
  const value = randomBytes(options.valSize);
  const keyOf = (n: number, spreadFrom = n): Buffer => loadKey(options, n % options.keySpaceSize, spreadFrom % options.keySpaceSize);
  switch (options.workload) {
    case 'put': {
      const type = etcdType('etcdserverpb.PutRequest');
      return (n) => Buffer.from(type.encode({ key: keyOf(n), value }).finish());
    }
    case 'range': {
      const type = etcdType('etcdserverpb.RangeRequest');
      const serializable = options.consistency === 's';
      return (n) => Buffer.from(type.encode({ key: keyOf(n), serializable }).finish());
    }
    case 'txn-put': {
      const type = etcdType('etcdserverpb.TxnRequest');
      return (n) => {
        const success = [];
        for (let op = 0; op < options.txnOps; op++) success.push({ request_put: { key: keyOf(n + op, n), value } });
        return Buffer.from(type.encode({ compare: [], success, failure: [] }).finish());
      };
    }
  }
}

/** Request bytes by key number, encoded once while the key space is small enough to keep. */
function requestSource(options: LoadOptions): (sequence: number) => Buffer {
  const encode = requestEncoder(options);
  const pick = options.sequentialKeys
    ? (sequence: number) => sequence % options.keySpaceSize
    : () => Math.floor(Math.random() * options.keySpaceSize);
  if (options.keySpaceSize > loadLimits.encodedCacheMax) return (sequence) => encode(pick(sequence));
  const cache = new Array<Buffer | undefined>(options.keySpaceSize);
  return (sequence) => {
    const n = pick(sequence);
    return (cache[n] ??= encode(n));
  };
}

/** `conns` real connections, connection j to endpoint j mod endpoints (as etcd's tool); every call carries `token`. */
export function openChannels(options: { readonly endpoints: readonly string[]; readonly conns: number; readonly token?: string | undefined }): EtcdChannel[] {
  const channels: EtcdChannel[] = [];
  for (let j = 0; j < options.conns; j++) {
    // etcd's tool opens a real connection per --conns (grpc-js would share one among equal channels).
    channels.push(new EtcdChannel(options.endpoints[j % options.endpoints.length]!, { ownConnection: true, messageBytesMax: -1, ...(options.token === undefined ? {} : { token: options.token }) }));
  }
  return channels;
}

function call(channel: EtcdChannel, method: string, request: Buffer): Promise<grpc.ServiceError | null> {
  return new Promise((resolve) => {
    channel.unaryBytes(method, request, loadLimits.requestTimeoutMs, (error) => {
      resolve(error ?? null);
    });
  });
}

/** Hands out send times at `rate` per second over all clients (0: no pacing). */
export function pacer(rate: number): () => Promise<void> {
  if (rate === 0) return () => Promise.resolve();
  const intervalMs = 1000 / rate;
  let next = performance.now();
  return () => {
    const now = performance.now();
    const slot = Math.max(now, next);
    next = slot + intervalMs;
    const waitMs = slot - now;
    return waitMs < 1 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, waitMs));
  };
}

/** Latency percentiles (ms) of a sample set; all zero for no samples. */
export interface Percentiles {
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  readonly mean: number;
}

/** Sorts `samples` in place and reads its percentiles (nearest rank). */
export function percentiles(samples: Float64Array): Percentiles {
  const sorted = samples.sort();
  if (sorted.length === 0) return { p50: 0, p90: 0, p99: 0, max: 0, mean: 0 };
  const at = (p: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
  let sum = 0;
  for (const v of sorted) sum += v;
  return { p50: at(50), p90: at(90), p99: at(99), max: sorted[sorted.length - 1]!, mean: sum / sorted.length };
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  if (options.endpoints.length === 0) throw new TypeError('no endpoints');
  const channels = openChannels(options);
  try {
    await Promise.all(channels.map((channel) => channel.waitForReady(loadLimits.connectTimeoutMs)));
    const nextRequest = requestSource(options);
    const method = path[options.workload];
    const latencies = new Float64Array(options.total);
    const errorsByMessage = new Map<string, number>();
    const pace = pacer(options.rate);
    let issued = 0;
    let succeeded = 0;
    let errors = 0;
    const clientLoop = async (channel: EtcdChannel): Promise<void> => {
      while (issued < options.total) {
        const sequence = issued++;
        await pace();
        const request = nextRequest(sequence);
        const started = performance.now();
        const error = await call(channel, method, request);
        if (error === null) {
          latencies[succeeded++] = performance.now() - started;
        } else {
          errors++;
          const message = error.details || error.message;
          errorsByMessage.set(message, (errorsByMessage.get(message) ?? 0) + 1);
        }
      }
    };
    const started = performance.now();
    const loops: Promise<void>[] = [];
    for (let i = 0; i < options.clients; i++) loops.push(clientLoop(channels[i % channels.length]!));
    const stopProgress = startProgress(options.workload, options.total, () => succeeded + errors);
    try {
      await Promise.all(loops);
    } finally {
      stopProgress();
    }
    const seconds = (performance.now() - started) / 1000;
    return {
      workload: options.workload,
      total: options.total,
      seconds,
      requestsPerSecond: options.total / seconds,
      latencyMs: percentiles(latencies.subarray(0, succeeded)),
      errors,
      errorsByMessage,
    };
  } finally {
    for (const channel of channels) channel.close();
  }
}

const ms = (value: number): string => value.toFixed(value < 10 ? 3 : 1);

export function describeLoad(options: LoadOptions): string {
  const detail = options.workload === 'range'
    ? `, ${options.consistency === 'l' ? 'linearizable' : 'serializable'}`
    : `, value ${options.valSize} B${options.workload === 'txn-put' ? `, ${options.txnOps} put(s) per txn` : ''}`;
  const store = options.store === undefined
    ? ''
    : `; store ${options.store.name} (prefix ${JSON.stringify(Buffer.from(options.store.prefix).toString('latin1'))}, then a byte spreading keys over its shards)`;
  return `${options.workload}: ${options.total} requests, ${options.clients} client(s) over ${options.conns} conn(s) to ${options.endpoints.join(',')}${store}; ` +
    `key ${options.keySize} B, key space ${options.keySpaceSize}${options.sequentialKeys ? ' (sequential)' : ''}${detail}` +
    `${options.rate > 0 ? `, rate ${options.rate}/s` : ''}`;
}

export function formatLoadResult(result: LoadResult): string[] {
  const l = result.latencyMs;
  const lines = [
    `  total        ${result.total}`,
    `  seconds      ${result.seconds.toFixed(3)}`,
    `  requests/s   ${result.requestsPerSecond.toFixed(1)}`,
    `  latency ms   p50 ${ms(l.p50)}  p90 ${ms(l.p90)}  p99 ${ms(l.p99)}  max ${ms(l.max)}  (mean ${ms(l.mean)})`,
    `  errors       ${result.errors}`,
  ];
  const byCount = [...result.errorsByMessage].sort((a, b) => b[1] - a[1]);
  for (const [message, count] of byCount) lines.push(`    ${String(count).padStart(8)}  ${message}`);
  return lines;
}

/** One JSON line per run, for scripts (bench/compare-etcd.sh). */
export function loadResultJson(result: LoadResult): string {
  return JSON.stringify({ ...result, errorsByMessage: Object.fromEntries(result.errorsByMessage) });
}
