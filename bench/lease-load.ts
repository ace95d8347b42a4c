/**
 * Load generators for the etcd v3 Lease API (`dkv bench lease-keepalive|lease-grant`), shaped like
 * etcd's `benchmark lease-keepalive` so one generator measures DKV and real etcd alike: `conns`
 * real connections over the endpoints round-robin, `clients` loops each keeping one request in
 * flight, client i on connection i mod conns (as bench/etcd-load.ts).
 *
 * lease-keepalive: every client grants a lease of its own (TTL 100 s, as etcd's tool), opens a
 * LeaseKeepAlive stream and renews once before the clock starts; then the clients renew, one
 * request in flight each, until `total` renewals were sent. Every answer must name the client's
 * lease with a TTL above 0 (a lease lost during the run is an error). etcd's tool calls
 * clientv3's KeepAliveOnce, which opens a new stream per renewal; here each client keeps one
 * stream open, as a long-lived client does, so the numbers measure renewals, not stream setup.
 * The leases are revoked after the run (not timed).
 *
 * lease-grant: every client loops grant (TTL 60 s, the server picks the id) → revoke of that
 * lease, one call in flight, until `total` cycles were started; latency is reported per call and
 * per cycle.
 *
 * Requests go as pre-encoded bytes over src/client's `EtcdChannel`; responses are decoded (they
 * are small, and their id and TTL are checked).
 */
import type * as grpc from '@grpc/grpc-js';
import { strict as assert } from 'node:assert';
import { performance } from 'node:perf_hooks';
import { type EtcdChannel, methodPath } from '../src/client/index.js';
import { type Int64, etcdType, int64Exact, int64Saturated, int64ToWire } from '../src/etcd-proto.js';
import { type Percentiles, openChannels, percentiles } from './etcd-load.js';

export type LeaseWorkload = 'lease-keepalive' | 'lease-grant';

/** Limits the CLI checks flags against, and the run's fixed settings (named so help and checks agree). */
export const leaseLoadLimits = {
  connsMax: 1_000,
  clientsMax: 10_000,
  totalMax: 100_000_000,
  /** The TTL of each keep-alive client's lease (etcd's tool grants 100 s). */
  keepAliveTtlSeconds: 100,
  /** The TTL lease-grant asks for. */
  grantTtlSeconds: 60,
  /** A request that takes longer counts as an error rather than hanging the run. */
  requestTimeoutMs: 30_000,
  connectTimeoutMs: 10_000,
} as const;

assert(leaseLoadLimits.keepAliveTtlSeconds * 1000 > leaseLoadLimits.requestTimeoutMs, 'a lease must outlive a timed-out renewal');

export interface LeaseLoadOptions {
  readonly workload: LeaseWorkload;
  /** host:port, no scheme. */
  readonly endpoints: readonly string[];
  readonly conns: number;
  /** An auth token (Auth.Authenticate's, `dkv bench --user`) every call carries; none when absent. */
  readonly token?: string | undefined;
  readonly clients: number;
  /** lease-keepalive: renewals to send; lease-grant: grant → revoke cycles to start. */
  readonly total: number;
}

export interface LeaseKeepAliveResult {
  readonly workload: 'lease-keepalive';
  readonly clients: number;
  readonly total: number;
  readonly seconds: number;
  readonly requestsPerSecond: number;
  /** Latencies of the renewals answered with the client's lease and a TTL above 0, in ms. */
  readonly latencyMs: Percentiles;
  readonly errors: number;
  readonly errorsByMessage: ReadonlyMap<string, number>;
}

export interface LeaseGrantResult {
  readonly workload: 'lease-grant';
  readonly clients: number;
  /** Cycles started. */
  readonly total: number;
  readonly seconds: number;
  /** Cycles started over the run's seconds. */
  readonly cyclesPerSecond: number;
  /** Grant and revoke calls made over the run's seconds. */
  readonly requestsPerSecond: number;
  /** Whole cycles (grant sent to revoke answered) that succeeded, in ms. */
  readonly latencyMs: Percentiles;
  readonly grantLatencyMs: Percentiles;
  readonly revokeLatencyMs: Percentiles;
  readonly errors: number;
  readonly errorsByMessage: ReadonlyMap<string, number>;
}

export type LeaseLoadResult = LeaseKeepAliveResult | LeaseGrantResult;

const paths = {
  grant: methodPath('etcdserverpb.Lease', 'LeaseGrant'),
  revoke: methodPath('etcdserverpb.Lease', 'LeaseRevoke'),
  keepAlive: methodPath('etcdserverpb.Lease', 'LeaseKeepAlive'),
};

interface WireLeaseAnswer {
  ID: Int64;
  TTL: Int64;
  error?: string;
}

/** What one call brought back: its response bytes, or why it failed. */
export type Answer = { readonly response: Buffer; readonly error?: undefined } | { readonly error: string };

/** Errors counted by message (shared with bench/lock.ts). */
export class Errors {
  total = 0;
  readonly byMessage = new Map<string, number>();

  add(message: string): void {
    this.total++;
    this.byMessage.set(message, (this.byMessage.get(message) ?? 0) + 1);
  }
}

export function unary(channel: EtcdChannel, path: string, request: Buffer, timeoutMs: number = leaseLoadLimits.requestTimeoutMs): Promise<Answer> {
  return new Promise((resolve) => {
    channel.unaryBytes(path, request, timeoutMs, (error, response) => {
      if (error !== null) resolve({ error: error.details || error.message });
      else if (response === undefined) resolve({ error: 'an empty response' });
      else resolve({ response });
    });
  });
}

/** Sends a pre-encoded LeaseGrantRequest; the granted id, or why there is none. */
async function grant(channel: EtcdChannel, request: Buffer): Promise<bigint | string> {
  const answer = await unary(channel, paths.grant, request);
  if (answer.error !== undefined) return answer.error;
  const response = etcdType('etcdserverpb.LeaseGrantResponse').decode(answer.response) as unknown as WireLeaseAnswer;
  if (response.error !== undefined && response.error !== '') return response.error;
  const id = int64Exact(response.ID);
  if (id === 0n || int64Saturated(response.TTL) <= 0) return `a grant answered id ${id} with TTL ${int64Saturated(response.TTL)}`;
  return id;
}

function revokeRequest(id: bigint): Buffer {
  return Buffer.from(etcdType('etcdserverpb.LeaseRevokeRequest').encode({ ID: int64ToWire(id) }).finish());
}

/**
 * One client's LeaseKeepAlive stream with one renewal in flight. A stream that fails or ends
 * fails the renewal in flight and is opened again for the next one.
 */
export class KeepAliveStream {
  private call: grpc.ClientDuplexStream<Buffer, Buffer> | undefined;
  private waiting: ((answer: Answer) => void) | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly channel: EtcdChannel,
    private readonly request: Buffer,
    private readonly errors: Errors,
  ) {}

  renew(): Promise<Answer> {
    assert(this.waiting === undefined, 'one renewal in flight per stream');
    return new Promise((resolve) => {
      this.waiting = resolve;
      this.timer = setTimeout(() => this.fail('a keep-alive timed out'), leaseLoadLimits.requestTimeoutMs);
      (this.call ??= this.open()).write(this.request);
    });
  }

  /** Ends the stream; a renewal still in flight is answered with an error at once. */
  close(): void {
    this.endCall();
    if (this.waiting !== undefined) this.answer({ error: 'the keep-alive stream was closed' });
  }

  private endCall(): void {
    const call = this.call;
    this.call = undefined;
    call?.cancel();
  }

  private open(): grpc.ClientDuplexStream<Buffer, Buffer> {
    const call = this.channel.bidiStreamBytes(paths.keepAlive);
    call.on('data', (response: Buffer) => {
      if (call === this.call) this.answer({ response });
    });
    call.on('error', (error: grpc.ServiceError) => {
      if (call === this.call) this.fail(`keep-alive stream: ${error.details || error.message}`);
    });
    call.on('end', () => {
      if (call === this.call) this.fail('keep-alive stream ended by the server');
    });
    return call;
  }

  /** The stream is given up on: the renewal in flight fails, the next one opens a new stream. */
  private fail(message: string): void {
    this.endCall();
    this.answer({ error: message });
  }

  private answer(answer: Answer): void {
    const resolve = this.waiting;
    if (resolve === undefined) {
      this.errors.add('a keep-alive answer that no request was waiting for');
      return;
    }
    clearTimeout(this.timer);
    this.waiting = undefined;
    resolve(answer);
  }
}

/** Why a keep-alive answer is wrong for lease `id`, or undefined when it is right. */
export function keepAliveProblem(answer: Answer, id: bigint): string | undefined {
  if (answer.error !== undefined) return answer.error;
  const response = etcdType('etcdserverpb.LeaseKeepAliveResponse').decode(answer.response) as unknown as WireLeaseAnswer;
  const ttl = int64Saturated(response.TTL);
  if (ttl <= 0) return `lease lost: a keep-alive answered TTL ${ttl}`;
  if (int64Exact(response.ID) !== id) return "a keep-alive answered another lease's id";
  return undefined;
}

/**
 * Each client's lease (client i's through channel i mod channels), granted concurrently; throws
 * (after revoking the ones granted) if any grant fails.
 */
export async function grantClientLeases(channels: readonly EtcdChannel[], clients: number, ttlSeconds: number): Promise<bigint[]> {
  const request = Buffer.from(etcdType('etcdserverpb.LeaseGrantRequest').encode({ TTL: ttlSeconds }).finish());
  const granted = await Promise.all(Array.from({ length: clients }, (_, i) => grant(channels[i % channels.length]!, request)));
  const ids = granted.filter((g): g is bigint => typeof g === 'bigint');
  const failure = granted.find((g): g is string => typeof g === 'string');
  if (failure !== undefined) {
    await revokeAll(channels, ids, new Errors());
    throw new Error(`could not grant the clients' leases (${clients - ids.length} of ${clients} failed): ${failure}`);
  }
  return ids;
}

export async function revokeAll(channels: readonly EtcdChannel[], ids: readonly bigint[], errors: Errors): Promise<void> {
  const answers = await Promise.all(ids.map((id, i) => unary(channels[i % channels.length]!, paths.revoke, revokeRequest(id))));
  for (const answer of answers) if (answer.error !== undefined) errors.add(`revoke after the run: ${answer.error}`);
}

async function runKeepAlive(options: LeaseLoadOptions, channels: readonly EtcdChannel[]): Promise<LeaseKeepAliveResult> {
  const errors = new Errors();
  const ids = await grantClientLeases(channels, options.clients, leaseLoadLimits.keepAliveTtlSeconds);
  const keepAliveRequest = etcdType('etcdserverpb.LeaseKeepAliveRequest');
  const streams = ids.map((id, i) => new KeepAliveStream(channels[i % channels.length]!, Buffer.from(keepAliveRequest.encode({ ID: int64ToWire(id) }).finish()), errors));
  let revoked = false;
  try {
    // One renewal per client before the clock starts: the streams are open and the leases known alive.
    const first = await Promise.all(streams.map(async (stream, i) => keepAliveProblem(await stream.renew(), ids[i]!)));
    const problem = first.find((p) => p !== undefined);
    if (problem !== undefined) throw new Error(`the first keep-alive of ${first.filter((p) => p !== undefined).length} client(s) failed: ${problem}`);

    const latencies = new Float64Array(options.total);
    let issued = 0;
    let succeeded = 0;
    const clientLoop = async (stream: KeepAliveStream, id: bigint): Promise<void> => {
      while (issued < options.total) {
        issued++;
        const started = performance.now();
        const answer = await stream.renew();
        const latency = performance.now() - started;
        const why = keepAliveProblem(answer, id);
        if (why === undefined) latencies[succeeded++] = latency;
        else errors.add(why);
      }
    };
    const started = performance.now();
    await Promise.all(streams.map((stream, i) => clientLoop(stream, ids[i]!)));
    const seconds = (performance.now() - started) / 1000;
    for (const stream of streams) stream.close();
    await revokeAll(channels, ids, errors);
    revoked = true;
    return {
      workload: 'lease-keepalive',
      clients: options.clients,
      total: options.total,
      seconds,
      requestsPerSecond: options.total / seconds,
      latencyMs: percentiles(latencies.subarray(0, succeeded)),
      errors: errors.total,
      errorsByMessage: errors.byMessage,
    };
  } finally {
    for (const stream of streams) stream.close();
    if (!revoked) await revokeAll(channels, ids, new Errors()); // a failed run leaves no leases behind
  }
}

async function runGrant(options: LeaseLoadOptions, channels: readonly EtcdChannel[]): Promise<LeaseGrantResult> {
  const errors = new Errors();
  const grantRequest = Buffer.from(etcdType('etcdserverpb.LeaseGrantRequest').encode({ TTL: leaseLoadLimits.grantTtlSeconds }).finish());
  const grantLatencies = new Float64Array(options.total);
  const revokeLatencies = new Float64Array(options.total);
  const cycleLatencies = new Float64Array(options.total);
  let grants = 0;
  let revokes = 0;
  let calls = 0;
  let issued = 0;
  const clientLoop = async (channel: EtcdChannel): Promise<void> => {
    while (issued < options.total) {
      issued++;
      const started = performance.now();
      const granted = await grant(channel, grantRequest);
      const grantedAt = performance.now();
      calls++;
      if (typeof granted === 'string') {
        errors.add(`grant: ${granted}`);
        continue;
      }
      grantLatencies[grants++] = grantedAt - started;
      const revoked = await unary(channel, paths.revoke, revokeRequest(granted));
      const revokedAt = performance.now();
      calls++;
      if (revoked.error !== undefined) {
        errors.add(`revoke: ${revoked.error}`);
        continue;
      }
      revokeLatencies[revokes] = revokedAt - grantedAt;
      cycleLatencies[revokes++] = revokedAt - started;
    }
  };
  const started = performance.now();
  const loops: Promise<void>[] = [];
  for (let i = 0; i < options.clients; i++) loops.push(clientLoop(channels[i % channels.length]!));
  await Promise.all(loops);
  const seconds = (performance.now() - started) / 1000;
  return {
    workload: 'lease-grant',
    clients: options.clients,
    total: options.total,
    seconds,
    cyclesPerSecond: options.total / seconds,
    requestsPerSecond: calls / seconds,
    latencyMs: percentiles(cycleLatencies.subarray(0, revokes)),
    grantLatencyMs: percentiles(grantLatencies.subarray(0, grants)),
    revokeLatencyMs: percentiles(revokeLatencies.subarray(0, revokes)),
    errors: errors.total,
    errorsByMessage: errors.byMessage,
  };
}

export async function runLeaseLoad(options: LeaseLoadOptions): Promise<LeaseLoadResult> {
  if (options.endpoints.length === 0) throw new TypeError('no endpoints');
  const channels = openChannels(options);
  try {
    await Promise.all(channels.map((channel) => channel.waitForReady(leaseLoadLimits.connectTimeoutMs)));
    return options.workload === 'lease-keepalive' ? await runKeepAlive(options, channels) : await runGrant(options, channels);
  } finally {
    for (const channel of channels) channel.close();
  }
}

const ms = (value: number): string => value.toFixed(value < 10 ? 3 : 1);
export const latencyLine = (l: Percentiles): string => `p50 ${ms(l.p50)}  p90 ${ms(l.p90)}  p99 ${ms(l.p99)}  max ${ms(l.max)}  (mean ${ms(l.mean)})`;

export function describeLeaseLoad(options: LeaseLoadOptions): string {
  const what = options.workload === 'lease-keepalive'
    ? `${options.total} keep-alives, one lease (TTL ${leaseLoadLimits.keepAliveTtlSeconds} s) and stream per client`
    : `${options.total} grant (TTL ${leaseLoadLimits.grantTtlSeconds} s) → revoke cycles`;
  return `${options.workload}: ${what}, ${options.clients} client(s) over ${options.conns} conn(s) to ${options.endpoints.join(',')}`;
}

export function formatLeaseLoadResult(result: LeaseLoadResult): string[] {
  const lines = [`  total        ${result.total}${result.workload === 'lease-grant' ? ' cycles' : ''}`, `  seconds      ${result.seconds.toFixed(3)}`];
  if (result.workload === 'lease-keepalive') {
    lines.push(`  requests/s   ${result.requestsPerSecond.toFixed(1)}`, `  latency ms   ${latencyLine(result.latencyMs)}`);
  } else {
    lines.push(
      `  cycles/s     ${result.cyclesPerSecond.toFixed(1)} (${result.requestsPerSecond.toFixed(1)} calls/s)`,
      `  cycle ms     ${latencyLine(result.latencyMs)}`,
      `  grant ms     ${latencyLine(result.grantLatencyMs)}`,
      `  revoke ms    ${latencyLine(result.revokeLatencyMs)}`,
    );
  }
  lines.push(`  errors       ${result.errors}`);
  const byCount = [...result.errorsByMessage].sort((a, b) => b[1] - a[1]);
  for (const [message, count] of byCount) lines.push(`    ${String(count).padStart(8)}  ${message}`);
  return lines;
}

/** One JSON line per run, for scripts (bench/compare-etcd.sh). */
export function leaseLoadResultJson(result: LeaseLoadResult): string {
  return JSON.stringify({ ...result, errorsByMessage: Object.fromEntries(result.errorsByMessage) });
}
