/**
 * A lock load generator (`dkv bench lock`): acquire → release cycles per second under contention,
 * through etcd's Lock service (`v3lockpb.Lock`), which both DKV and etcd serve on their client
 * port, so one recipe measures both. Channels as bench/etcd-load.ts: `conns` real connections
 * over the endpoints round-robin, client i on connection i mod conns.
 *
 * The recipe, per client: a session lease (TTL `sessionTtlSeconds`, as etcd's concurrency
 * Session) granted once before the clock starts and kept alive on a LeaseKeepAlive stream of the
 * client's own (a renewal every third of the TTL, as clientv3's KeepAlive); then, one call in
 * flight, `Lock(name, lease)` on one of `locks` names (picked at random; one name puts every
 * client on it) and, as soon as it answers, `Unlock(key)` of the key it answered with. A cycle
 * counts when both succeeded. The run ends after `total` cycles were started, or once `duration`
 * seconds have passed (no cycle starts after that).
 *
 * The run checks itself, cheaply:
 * - **Mutual exclusion**: each client records its hold of a name as [Lock answered, Unlock sent]
 *   on this process's monotonic clock. A later holder's Lock can only be answered after the
 *   earlier holder's key was deleted, which is after its Unlock was sent, so the holds of one name
 *   never overlap when the server is right; an overlap means two clients held one lock at once.
 * - **Nothing left behind**: after the last cycle, no key is left under the run's lock names
 *   (a linearizable Range, before the sessions' leases are revoked).
 * Either failing makes the run fail (exit 1), as a failed call does.
 *
 * The lock names are `bench/lock/<run id>/<n>`, fresh per run, so a killed earlier run (whose
 * keys live until their leases expire) cannot block this one.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { type EtcdChannel, methodPath } from '../src/client/index.js';
import { type Int64, etcdType, int64Saturated, int64ToWire } from '../src/etcd-proto.js';
import { type Percentiles, openChannels, percentiles } from './etcd-load.js';
import { Errors, KeepAliveStream, grantClientLeases, keepAliveProblem, latencyLine, revokeAll, unary } from './lease-load.js';

/** Limits the CLI checks flags against, and the run's fixed settings (named so help and checks agree). */
export const lockLoadLimits = {
  connsMax: 1_000,
  clientsMax: 10_000,
  totalMax: 100_000_000,
  durationSecondsMax: 3_600,
  locksMax: 100_000,
  /** The session lease's TTL: etcd's concurrency.Session default. */
  sessionTtlSeconds: 60,
  /** Renewals per TTL (clientv3's KeepAlive renews every third of it). */
  renewalsPerTtl: 3,
  /** A Lock waits for the holders before it: under full contention, clients × a cycle. */
  lockTimeoutMs: 120_000,
  /** Tries of one Unlock: it is idempotent, and a key left behind would block its name. */
  unlockAttemptsMax: 3,
  connectTimeoutMs: 10_000,
} as const;

export const lockNamePrefix = 'bench/lock/';

export interface LockLoadOptions {
  /** host:port, no scheme. */
  readonly endpoints: readonly string[];
  readonly conns: number;
  /** An auth token (Auth.Authenticate's, `dkv bench --user`) every call carries; none when absent. */
  readonly token?: string | undefined;
  readonly clients: number;
  /** Cycles to start, or undefined when the run is timed by `durationSeconds`. */
  readonly total: number | undefined;
  readonly durationSeconds: number | undefined;
  /** Distinct lock names; 1 puts every client on one lock. */
  readonly locks: number;
}

export interface LockLoadResult {
  readonly workload: 'lock';
  readonly clients: number;
  readonly locks: number;
  /** Cycles started. */
  readonly total: number;
  /** Cycles completed: Lock and Unlock both succeeded. */
  readonly cycles: number;
  readonly seconds: number;
  readonly cyclesPerSecond: number;
  /** Whole cycles (Lock sent → Unlock answered), in ms. */
  readonly latencyMs: Percentiles;
  /** Lock sent → answered: the wait for the lock included. */
  readonly acquireLatencyMs: Percentiles;
  /** Unlock sent → answered. */
  readonly releaseLatencyMs: Percentiles;
  /** Pairs of holds of one name that overlapped (must be 0). */
  readonly overlaps: number;
  /** Keys left under the lock names after the run (must be 0). */
  readonly leftoverKeys: number;
  readonly errors: number;
  readonly errorsByMessage: ReadonlyMap<string, number>;
}

const paths = {
  lock: methodPath('v3lockpb.Lock', 'Lock'),
  unlock: methodPath('v3lockpb.Lock', 'Unlock'),
  range: methodPath('etcdserverpb.KV', 'Range'),
};
const LockRequest = etcdType('v3lockpb.LockRequest');
const LockResponse = etcdType('v3lockpb.LockResponse');
const UnlockRequest = etcdType('v3lockpb.UnlockRequest');
const RangeRequest = etcdType('etcdserverpb.RangeRequest');
const RangeResponse = etcdType('etcdserverpb.RangeResponse');

/** Numbers appended to a typed array that grows by doubling (a duration run's count is unknown). */
class Samples {
  private values = new Float64Array(1024);
  length = 0;

  push(value: number): void {
    if (this.length === this.values.length) {
      const grown = new Float64Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.length++] = value;
  }

  view(): Float64Array {
    return this.values.subarray(0, this.length);
  }
}

/**
 * The holds of one name, as [start, end] pairs. Overlapping pairs are counted after the run: sorted
 * by start, each must start at or after the latest end before it.
 */
export class Holds {
  private readonly starts = new Samples();
  private readonly ends = new Samples();

  add(start: number, end: number): void {
    assert(end >= start, 'a hold ends after it starts');
    this.starts.push(start);
    this.ends.push(end);
  }

  /** Holds that began before an earlier-begun hold had ended. */
  overlaps(): number {
    const starts = this.starts.view();
    const ends = this.ends.view();
    const order = Array.from({ length: starts.length }, (_, i) => i).sort((a, b) => starts[a]! - starts[b]!);
    let latestEnd = -Infinity;
    let overlaps = 0;
    for (const i of order) {
      if (starts[i]! < latestEnd) overlaps++;
      latestEnd = Math.max(latestEnd, ends[i]!);
    }
    return overlaps;
  }
}

/** A client's session: its lease, renewed every third of its TTL on a stream of its own. */
class SessionKeepAlive {
  private readonly stream: KeepAliveStream;
  private readonly timer: NodeJS.Timeout;
  private renewing = false;
  private closed = false;

  constructor(
    channel: EtcdChannel,
    private readonly lease: bigint,
    private readonly errors: Errors,
  ) {
    const request = Buffer.from(etcdType('etcdserverpb.LeaseKeepAliveRequest').encode({ ID: int64ToWire(lease) }).finish());
    this.stream = new KeepAliveStream(channel, request, errors);
    const everyMs = (lockLoadLimits.sessionTtlSeconds * 1000) / lockLoadLimits.renewalsPerTtl;
    this.timer = setInterval(() => void this.renew(), everyMs);
  }

  /** One renewal; undefined when the lease was renewed, else why not (also counted as an error). */
  async renew(): Promise<string | undefined> {
    if (this.renewing) return undefined; // the one before is still waiting: a renewal is in flight
    this.renewing = true;
    const problem = keepAliveProblem(await this.stream.renew(), this.lease);
    this.renewing = false;
    if (this.closed) return undefined; // the run is over: a renewal cut short is no error
    if (problem !== undefined) this.errors.add(`session: ${problem}`);
    return problem;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.stream.close();
  }
}

/** Lock's answer: the key it holds, or why there is none. */
async function acquire(channel: EtcdChannel, name: Buffer, lease: bigint): Promise<Buffer | string> {
  const request = Buffer.from(LockRequest.encode({ name, lease: int64ToWire(lease) }).finish());
  const answer = await unary(channel, paths.lock, request, lockLoadLimits.lockTimeoutMs);
  if (answer.error !== undefined) return answer.error;
  const key = (LockResponse.decode(answer.response) as unknown as { key?: Uint8Array }).key;
  if (key === undefined || key.length <= name.length || !Buffer.from(key).subarray(0, name.length + 1).equals(Buffer.concat([name, Buffer.from('/')]))) {
    return 'Lock answered a key that is not under its name';
  }
  return Buffer.from(key);
}

/** Unlock of `key`, tried again when it fails; undefined when one try succeeded, else the last error. */
async function release(channel: EtcdChannel, key: Buffer, errors: Errors): Promise<string | undefined> {
  const request = Buffer.from(UnlockRequest.encode({ key }).finish());
  let last: string | undefined;
  for (let attempt = 1; attempt <= lockLoadLimits.unlockAttemptsMax; attempt++) {
    const answer = await unary(channel, paths.unlock, request);
    if (answer.error === undefined) return undefined;
    last = answer.error;
    errors.add(`unlock: ${last}`);
  }
  return last;
}

/** Keys under `prefix`, counted linearizably (the leftover check). */
export async function countKeys(channel: EtcdChannel, prefix: Buffer): Promise<number> {
  const end = Buffer.from(prefix);
  end[end.length - 1]! += 1;
  const answer = await unary(channel, paths.range, Buffer.from(RangeRequest.encode({ key: prefix, range_end: end, count_only: true }).finish()));
  if (answer.error !== undefined) throw new Error(`counting the keys left under ${prefix.toString()}: ${answer.error}`);
  return int64Saturated((RangeResponse.decode(answer.response) as unknown as { count: Int64 }).count);
}

export async function runLockLoad(options: LockLoadOptions): Promise<LockLoadResult> {
  if (options.endpoints.length === 0) throw new TypeError('no endpoints');
  assert((options.total === undefined) !== (options.durationSeconds === undefined), 'a run has a total or a duration, not both');
  const channels = openChannels(options);
  try {
    await Promise.all(channels.map((channel) => channel.waitForReady(lockLoadLimits.connectTimeoutMs)));
    return await runSessions(options, channels);
  } finally {
    for (const channel of channels) channel.close();
  }
}

async function runSessions(options: LockLoadOptions, channels: readonly EtcdChannel[]): Promise<LockLoadResult> {
  const errors = new Errors();
  const prefix = Buffer.from(`${lockNamePrefix}${randomBytes(4).toString('hex')}/`);
  const names = Array.from({ length: options.locks }, (_, n) => Buffer.concat([prefix, Buffer.from(String(n))]));
  const channelOf = (client: number): EtcdChannel => channels[client % channels.length]!;
  const leases = await grantClientLeases(channels, options.clients, lockLoadLimits.sessionTtlSeconds);
  const sessions = leases.map((lease, i) => new SessionKeepAlive(channelOf(i), lease, errors));
  let revoked = false;
  try {
    // One renewal per session before the clock starts: the streams are open, the leases alive.
    const first = await Promise.all(sessions.map((session) => session.renew()));
    const problem = first.find((p) => p !== undefined);
    if (problem !== undefined) throw new Error(`the first keep-alive of ${first.filter((p) => p !== undefined).length} session(s) failed: ${problem}`);

    const holds = names.map(() => new Holds());
    const acquireLatencies = new Samples();
    const releaseLatencies = new Samples();
    const cycleLatencies = new Samples();
    let issued = 0;
    const started = performance.now();
    const deadline = options.durationSeconds === undefined ? Infinity : started + options.durationSeconds * 1000;
    const more = (): boolean => (options.total === undefined ? performance.now() < deadline : issued < options.total);
    const clientLoop = async (client: number): Promise<void> => {
      const channel = channelOf(client);
      while (more()) {
        issued++;
        const n = options.locks === 1 ? 0 : Math.floor(Math.random() * options.locks);
        const lockSent = performance.now();
        const key = await acquire(channel, names[n]!, leases[client]!);
        const acquired = performance.now();
        if (typeof key === 'string') {
          errors.add(`lock: ${key}`);
          continue;
        }
        acquireLatencies.push(acquired - lockSent);
        const unlockSent = performance.now();
        holds[n]!.add(acquired, unlockSent);
        const failed = await release(channel, key, errors);
        const released = performance.now();
        if (failed !== undefined) continue;
        releaseLatencies.push(released - unlockSent);
        cycleLatencies.push(released - lockSent);
      }
    };
    await Promise.all(Array.from({ length: options.clients }, (_, client) => clientLoop(client)));
    const seconds = (performance.now() - started) / 1000;

    const leftoverKeys = await countKeys(channels[0]!, prefix);
    for (const session of sessions) session.close();
    await revokeAll(channels, leases, errors);
    revoked = true;
    return {
      workload: 'lock',
      clients: options.clients,
      locks: options.locks,
      total: issued,
      cycles: cycleLatencies.length,
      seconds,
      cyclesPerSecond: cycleLatencies.length / seconds,
      latencyMs: percentiles(cycleLatencies.view()),
      acquireLatencyMs: percentiles(acquireLatencies.view()),
      releaseLatencyMs: percentiles(releaseLatencies.view()),
      overlaps: holds.reduce((sum, h) => sum + h.overlaps(), 0),
      leftoverKeys,
      errors: errors.total,
      errorsByMessage: errors.byMessage,
    };
  } finally {
    for (const session of sessions) session.close();
    if (!revoked) await revokeAll(channels, leases, new Errors()); // a failed run leaves no sessions behind
  }
}

/** Whether a run went well: every call succeeded, no two holds of a name overlapped, no key was left. */
export function lockLoadOk(result: LockLoadResult): boolean {
  return result.errors === 0 && result.overlaps === 0 && result.leftoverKeys === 0;
}

export function describeLockLoad(options: LockLoadOptions): string {
  const length = options.total === undefined ? `for ${options.durationSeconds} s` : `${options.total} cycles`;
  return `lock: Lock → Unlock ${length}, ${options.clients} client(s) over ${options.conns} conn(s) to ${options.endpoints.join(',')}; ` +
    `${options.locks} lock name(s), a session lease (TTL ${lockLoadLimits.sessionTtlSeconds} s) per client`;
}

export function formatLockLoadResult(result: LockLoadResult): string[] {
  const lines = [
    `  total        ${result.total} cycles started, ${result.cycles} completed`,
    `  seconds      ${result.seconds.toFixed(3)}`,
    `  cycles/s     ${result.cyclesPerSecond.toFixed(1)}`,
    `  cycle ms     ${latencyLine(result.latencyMs)}`,
    `  acquire ms   ${latencyLine(result.acquireLatencyMs)}`,
    `  release ms   ${latencyLine(result.releaseLatencyMs)}`,
    `  check        ${result.overlaps} overlapping holds, ${result.leftoverKeys} keys left: ${result.overlaps === 0 && result.leftoverKeys === 0 ? 'ok' : 'VIOLATED'}`,
    `  errors       ${result.errors}`,
  ];
  const byCount = [...result.errorsByMessage].sort((a, b) => b[1] - a[1]);
  for (const [message, count] of byCount) lines.push(`    ${String(count).padStart(8)}  ${message}`);
  return lines;
}

/** One JSON line per run, for scripts (bench/compare-etcd.sh). */
export function lockLoadResultJson(result: LockLoadResult): string {
  return JSON.stringify({ ...result, errorsByMessage: Object.fromEntries(result.errorsByMessage) });
}
