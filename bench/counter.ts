/**
 * A counter load generator (`dkv bench counter`): `clients` loops each keeping one increment in
 * flight, over `conns` channels (channel j on endpoint j mod endpoints, client i on channel
 * i mod conns, as `etcd-load.ts`), on `counters` keys (client increments pick one at random).
 *
 * Two ways to increment, so one generator measures DKV and etcd side by side:
 * - `counter`: one `dkv.v1.Counter/Increment` call per increment, the request encoded once per
 *   key and sent as bytes (`unaryBytes`), the response not decoded.
 * - `cas`: what an etcd client has to do (etcd has no counter): a linearizable Range for the value
 *   and its mod_revision, then a Txn comparing mod_revision and putting value + 1, whose failure
 *   branch reads the key again, so a lost race retries with the new value and no extra read
 *   (etcd's STM does the same). An increment is one Range plus one or more Txns.
 * `auto` picks `counter` when the first endpoint serves dkv.v1.Counter, else `cas`.
 *
 * Both store the counter as decimal text, so the run checks itself: the counters' sum moves by
 * exactly the increments acknowledged (with failed calls, at least that and at most that plus the
 * failures, whose outcome is unknown).
 */
import { performance } from 'node:perf_hooks';
import type * as grpc from '@grpc/grpc-js';
import { type Decoded, type EtcdChannel, grpcStatus, longsAsStrings, methodCodec, methodPath } from '../src/client/index.js';
import { dkvRoot, etcdType } from '../src/etcd-proto.js';
import { openChannels } from './etcd-load.js';

export type CounterMethod = 'counter' | 'cas';

/** Limits the CLI checks flags against (named here so the help and the checks agree). */
export const counterLoadLimits = {
  connsMax: 1_000,
  clientsMax: 10_000,
  totalMax: 100_000_000,
  countersMax: 1_000_000,
  /** An increment that takes longer counts as an error rather than hanging the run. */
  requestTimeoutMs: 30_000,
  connectTimeoutMs: 10_000,
  /** A CAS increment gives up (an error) after this many lost races. */
  casAttemptsMax: 10_000,
} as const;

/** The counters' keys: `bench/counter/<n>`. */
export const counterKeyPrefix = 'bench/counter/';

export interface CounterLoadOptions {
  /** host:port, no scheme. */
  readonly endpoints: readonly string[];
  readonly conns: number;
  /** An auth token (Auth.Authenticate's, `dkv bench --user`) every call carries; none when absent. */
  readonly token?: string | undefined;
  readonly clients: number;
  /** Increments to make. */
  readonly total: number;
  /** Distinct counters (keys); 1 means every client contends on one key. */
  readonly counters: number;
  readonly method: CounterMethod | 'auto';
}

export interface CounterLoadResult {
  readonly workload: 'counter';
  readonly method: CounterMethod;
  readonly total: number;
  readonly seconds: number;
  /** Increments per second (named as etcd-load's rate, so bench/compare-etcd.sh tables it). */
  readonly requestsPerSecond: number;
  /** Latencies of the successful increments (read and retries included), in milliseconds. */
  readonly latencyMs: { readonly p50: number; readonly p90: number; readonly p99: number; readonly max: number; readonly mean: number };
  /** RPCs per successful increment (counter: 1; cas: 1 Range + the Txns). */
  readonly rpcsPerIncrement: number;
  /** How far the counters' sum moved during the run. */
  readonly counted: string;
  /** Whether `counted` fits the increments acknowledged (see the file comment). */
  readonly consistent: boolean;
  readonly errors: number;
  readonly errorsByMessage: ReadonlyMap<string, number>;
}

const counterKey = (n: number): Buffer => Buffer.from(`${counterKeyPrefix}${n}`);

const IncrementRequest = dkvRoot().lookupType('dkv.v1.CounterIncrementRequest');
const TxnRequest = etcdType('etcdserverpb.TxnRequest');
const RangeRequest = etcdType('etcdserverpb.RangeRequest');
const incrementPath = methodPath('dkv.v1.Counter', 'Increment');
const rangePath = methodPath('etcdserverpb.KV', 'Range');
const txnPath = methodPath('etcdserverpb.KV', 'Txn');
const rangeCodec = methodCodec('etcdserverpb.KV', 'Range', longsAsStrings);
const txnCodec = methodCodec('etcdserverpb.KV', 'Txn', longsAsStrings);
const counterGet = methodCodec('dkv.v1.Counter', 'Get', longsAsStrings);

/** Compare enums (etcd's rpc.proto): result EQUAL = 0, target MOD = 2. */
const COMPARE_EQUAL = 0;
const TARGET_MOD = 2;

function unaryBytes(channel: EtcdChannel, path: string, request: Buffer): Promise<{ error: grpc.ServiceError | null; response: Buffer | undefined }> {
  return new Promise((resolve) => {
    channel.unaryBytes(path, request, counterLoadLimits.requestTimeoutMs, (error, response) => resolve({ error, response }));
  });
}

/** A key's counter and mod revision as a range of it reports them (absent: 0 at revision 0). */
interface Observed {
  readonly value: bigint;
  readonly modRevision: string;
}

function observed(range: Decoded | undefined): Observed {
  const kv = (range?.kvs as Decoded[] | undefined)?.[0];
  if (kv === undefined) return { value: 0n, modRevision: '0' };
  return { value: BigInt((kv.value as Buffer).toString()), modRevision: kv.mod_revision as string };
}

class CallFailed extends Error {
  constructor(readonly error: grpc.ServiceError) {
    super(error.details || error.message);
  }
}

async function call(channel: EtcdChannel, path: string, request: Buffer): Promise<Buffer> {
  const { error, response } = await unaryBytes(channel, path, request);
  if (error !== null) throw new CallFailed(error);
  return response!;
}

/** One increment through a CAS loop; returns the RPCs it took. */
async function casIncrement(channel: EtcdChannel, key: Buffer, range: Buffer): Promise<number> {
  let current = observed(rangeCodec.decode(await call(channel, rangePath, range)));
  let rpcs = 1;
  for (let attempt = 1; attempt <= counterLoadLimits.casAttemptsMax; attempt++) {
    const request = TxnRequest.encode({
      compare: [{ key, target: TARGET_MOD, result: COMPARE_EQUAL, mod_revision: current.modRevision }],
      success: [{ request_put: { key, value: Buffer.from((current.value + 1n).toString()) } }],
      failure: [{ request_range: { key } }],
    }).finish();
    const response = txnCodec.decode(await call(channel, txnPath, Buffer.from(request)));
    rpcs++;
    if (response.succeeded === true) return rpcs;
    current = observed((response.responses as Decoded[])[0]?.response_range as Decoded | undefined);
  }
  throw new Error(`gave up after ${counterLoadLimits.casAttemptsMax} lost races`);
}

/** Whether the first endpoint serves dkv.v1.Counter (etcd answers UNIMPLEMENTED). */
async function servesCounters(channel: EtcdChannel): Promise<boolean> {
  try {
    await channel.unary(counterGet, { key: counterKey(0) }, { timeoutMs: counterLoadLimits.connectTimeoutMs });
    return true;
  } catch (error) {
    if ((error as { code?: number }).code === grpcStatus.UNIMPLEMENTED) return false;
    throw error;
  }
}

/** The counters' sum, read linearizably from one node (each key's text as etcd stores it). */
async function counterSum(channel: EtcdChannel, counters: number): Promise<bigint> {
  const prefix = Buffer.from(counterKeyPrefix);
  const end = Buffer.from(prefix);
  end[end.length - 1]! += 1;
  const response = await channel.unary(rangeCodec, { key: prefix, range_end: end }, { timeoutMs: counterLoadLimits.requestTimeoutMs });
  let sum = 0n;
  for (const kv of (response.kvs as Decoded[]) ?? []) {
    const name = (kv.key as Buffer).subarray(prefix.length).toString();
    if (Number(name) < counters) sum += BigInt((kv.value as Buffer).toString());
  }
  return sum;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index]!;
}

export async function runCounterLoad(options: CounterLoadOptions): Promise<CounterLoadResult> {
  if (options.endpoints.length === 0) throw new TypeError('no endpoints');
  const channels = openChannels(options);
  try {
    await Promise.all(channels.map((channel) => channel.waitForReady(counterLoadLimits.connectTimeoutMs)));
    const first = channels[0]!;
    const method: CounterMethod = options.method === 'auto' ? ((await servesCounters(first)) ? 'counter' : 'cas') : options.method;
    const before = await counterSum(first, options.counters);
    const keys = Array.from({ length: options.counters }, (_, n) => counterKey(n));
    const increments = keys.map((key) => Buffer.from(IncrementRequest.encode({ key, delta: 1 }).finish()));
    const ranges = keys.map((key) => Buffer.from(RangeRequest.encode({ key }).finish()));
    const latencies = new Float64Array(options.total);
    const errorsByMessage = new Map<string, number>();
    let issued = 0;
    let succeeded = 0;
    let errors = 0;
    let rpcs = 0;
    const clientLoop = async (channel: EtcdChannel): Promise<void> => {
      while (issued < options.total) {
        issued++;
        const n = Math.floor(Math.random() * options.counters);
        const started = performance.now();
        try {
          if (method === 'counter') {
            await call(channel, incrementPath, increments[n]!);
            rpcs++;
          } else {
            const used = await casIncrement(channel, keys[n]!, ranges[n]!);
            rpcs += used;
          }
          latencies[succeeded++] = performance.now() - started;
        } catch (error) {
          errors++;
          const message = (error as Error).message;
          errorsByMessage.set(message, (errorsByMessage.get(message) ?? 0) + 1);
        }
      }
    };
    const started = performance.now();
    const loops: Promise<void>[] = [];
    for (let i = 0; i < options.clients; i++) loops.push(clientLoop(channels[i % channels.length]!));
    await Promise.all(loops);
    const seconds = (performance.now() - started) / 1000;
    const counted = (await counterSum(first, options.counters)) - before;
    const ok = latencies.subarray(0, succeeded).sort();
    let sum = 0;
    for (const latency of ok) sum += latency;
    return {
      workload: 'counter',
      method,
      total: options.total,
      seconds,
      requestsPerSecond: succeeded / seconds,
      latencyMs: {
        p50: percentile(ok, 50),
        p90: percentile(ok, 90),
        p99: percentile(ok, 99),
        max: ok.length === 0 ? 0 : ok[ok.length - 1]!,
        mean: ok.length === 0 ? 0 : sum / ok.length,
      },
      rpcsPerIncrement: succeeded === 0 ? 0 : rpcs / succeeded,
      counted: counted.toString(),
      consistent: counted >= BigInt(succeeded) && counted <= BigInt(succeeded + errors),
      errors,
      errorsByMessage,
    };
  } finally {
    for (const channel of channels) channel.close();
  }
}

const ms = (value: number): string => value.toFixed(value < 10 ? 3 : 1);

export function describeCounterLoad(options: CounterLoadOptions): string {
  return `counter (${options.method}): ${options.total} increments, ${options.clients} client(s) over ${options.conns} conn(s) to ${options.endpoints.join(',')}; ` +
    `${options.counters} counter(s) under ${counterKeyPrefix}`;
}

export function formatCounterLoadResult(result: CounterLoadResult): string[] {
  const l = result.latencyMs;
  const how = result.method === 'counter' ? 'dkv.v1.Counter/Increment' : 'Range + Txn compare-and-swap';
  const lines = [
    `  method        ${result.method} (${how})`,
    `  total         ${result.total}`,
    `  seconds       ${result.seconds.toFixed(3)}`,
    `  increments/s  ${result.requestsPerSecond.toFixed(1)}`,
    `  latency ms    p50 ${ms(l.p50)}  p90 ${ms(l.p90)}  p99 ${ms(l.p99)}  max ${ms(l.max)}  (mean ${ms(l.mean)})`,
    `  RPCs/incr     ${result.rpcsPerIncrement.toFixed(2)}`,
    `  check         counters moved by ${result.counted} for ${result.total - result.errors} acknowledged increments: ${result.consistent ? 'ok' : 'MISMATCH'}`,
    `  errors        ${result.errors}`,
  ];
  const byCount = [...result.errorsByMessage].sort((a, b) => b[1] - a[1]);
  for (const [message, count] of byCount) lines.push(`    ${String(count).padStart(8)}  ${message}`);
  return lines;
}

/** One JSON line per run, for scripts (bench/compare-etcd.sh). */
export function counterLoadResultJson(result: CounterLoadResult): string {
  return JSON.stringify({ ...result, errorsByMessage: Object.fromEntries(result.errorsByMessage) });
}
