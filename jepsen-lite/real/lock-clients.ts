/**
 * The lock workload's clients (real mode): N clients in this process, each with its own gRPC
 * channel, fighting over one etcd lock. Each cycle of a client:
 *
 * 1. grants a lease (`leaseTtlSecondsRequested`; the server may raise it) and keeps it alive on a
 *    LeaseKeepAlive stream of its own (`LeaseKeeper`: a renewal every third of the TTL, the
 *    stream reopened on another member when it breaks);
 * 2. `Lock(name, lease)` — the history's `acquire`, whose token is the lock key's create revision
 *    (DKV: the response header's revision; etcd: read back with a Range, as etcd's header has it
 *    only when the lock was free);
 * 3. holds it for up to `writeRoundsPerHold` rounds, each a **fenced** write of the resource
 *    (DKV only: `dkv.v1.KV` Put with `fence { lock key, token }`) and an **unfenced** write (a
 *    plain etcd Put to another key). Before a round the holder checks that its lease is still
 *    alive as far as it knows (renewals answered: the send time of the last one + its TTL, less
 *    `leaseSafetyMarginMs`) and stops otherwise, as a careful lease-based client does; a stale
 *    refusal also ends the hold. After the first round a holder may be **paused** (`HolderPauses`,
 *    planned from the seed): no renewals, no writes, for 2.5–3.5 TTLs — a GC pause — after which it
 *    makes its next round at once, without looking at its lease, as a paused process would;
 * 4. reads the resource (DKV only), `Unlock`s, revokes the lease.
 *
 * Every acquire, fenced write, read and release is recorded as a `lock` model operation; each
 * unfenced write as an `unfenced-write` (checked by `check/fencing.ts`). An operation that never
 * returned makes its client a new process for the history, as in the other workloads.
 */
import { type Decoded, type EtcdChannel, type MethodCodec, grpcStatus, longsAsStrings, methodCodec, type RpcError } from '../../src/client/index';
import { fenceStaleError } from '../check/index';
import type { FaultWindow, LockInput, LockOutput, Operation, UnfencedWriteInput, UnfencedWriteOutput } from '../history';
import {
  type LockKeys,
  classifyError,
  describeError,
  fencedPutRequest,
  isFenceStale,
  leaseGrantRequest,
  lockKeys,
  lockName,
  lockRequest,
  lockWriteValue,
  toEtcdCall,
  unfencedPutRequest,
  unlockRequest,
} from '../workload/index';
import { type ClientCluster, type Invoked, errorPauseMs, memberChannel, opIntervalMs, opTimeoutMs } from './clients';
import type { Target } from './cluster';
import type { PlannedHolderPause } from './nemesis';

/** The lease TTL clients ask for (DKV and etcd raise it to 1.5 election timeouts: 2 s by default). */
export const leaseTtlSecondsRequested = 2;
/** Renewals per lease TTL. */
export const keepAlivesPerTtl = 3;
/** A holder starts a round only while its lease has this much left, as far as it knows. */
export const leaseSafetyMarginMs = 200;
/** Rounds of writes per hold. */
export const writeRoundsPerHold = 3;
/** Lock's deadline: long enough to wait out a paused holder whose lease must expire first. */
export const lockWaitMsMax = 12_000;
/** Deadline of the best-effort revoke at the end of a cycle (not recorded). */
export const revokeTimeoutMs = 1000;

const leaseGrantCodec = methodCodec('etcdserverpb.Lease', 'LeaseGrant', longsAsStrings);
const leaseRevokeCodec = methodCodec('etcdserverpb.Lease', 'LeaseRevoke', longsAsStrings);
const leaseKeepAliveCodec = methodCodec('etcdserverpb.Lease', 'LeaseKeepAlive', longsAsStrings);
const lockCodec = methodCodec('v3lockpb.Lock', 'Lock', longsAsStrings);
const unlockCodec = methodCodec('v3lockpb.Lock', 'Unlock', longsAsStrings);

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) {
      resolve();
      return;
    }
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

function revisionOf(response: Decoded): number {
  const revision = Number((response.header as { revision?: unknown } | undefined)?.revision ?? 0);
  if (!Number.isSafeInteger(revision) || revision <= 0) throw new Error(`response without a revision: ${JSON.stringify(response.header)}`);
  return revision;
}

// ---- Holder pauses ------------------------------------------------------------------------------

/** Hands the planned pauses out, one per holder, in plan order; records their windows. */
export class HolderPauses {
  readonly windows: FaultWindow[] = [];
  private next = 0;

  constructor(
    private readonly plan: readonly PlannedHolderPause[],
    /** A pause that would end past this (ms since the run began) is skipped: the run's end stays healed. */
    private readonly endByMs: number,
  ) {}

  /** How long the holder at `now`, whose lease has `ttlMs`, must pause; undefined: none due. */
  claim(now: number, ttlMs: number): number | undefined {
    for (;;) {
      const due = this.plan[this.next];
      if (due === undefined || now < due.at) return undefined;
      this.next++;
      const durationMs = Math.ceil(due.ttlFactor * ttlMs);
      if (now + durationMs <= this.endByMs) return durationMs;
    }
  }

  get planned(): number {
    return this.plan.length;
  }
}

// ---- Keeping a lease alive ---------------------------------------------------------------------

interface KeeperOptions {
  readonly cluster: ClientCluster;
  /** The member the first stream goes to (by index, modulo the members). */
  readonly member: number;
  /** The lease id, as the decimal string it came in. */
  readonly lease: string;
  readonly ttlMs: number;
  readonly now: () => number;
  /** When the grant was sent: the lease lives at least until then + TTL. */
  readonly grantedAt: number;
}

/**
 * Renews a lease every `ttlMs / keepAlivesPerTtl` on a LeaseKeepAlive stream. Knows until when
 * the lease surely lives: an answered renewal proves the lease lives until its send time + TTL
 * (the server's deadline counts from when it applied it, later). A broken stream is reopened on
 * the next member at the next renewal.
 */
export class LeaseKeeper {
  /** ms since the run began. */
  validUntil: number;
  /** A renewal answered TTL 0: the lease is gone. */
  lost = false;
  private member: number;
  private channel: EtcdChannel | undefined;
  private stream: ReturnType<EtcdChannel['bidiStream']> | undefined;
  /** Send times of renewals not yet answered, in order (a stream answers in order). */
  private unanswered: number[] = [];
  private readonly timer: NodeJS.Timeout;
  private suspended = false;
  private stopped = false;

  constructor(private readonly options: KeeperOptions) {
    this.validUntil = options.grantedAt + options.ttlMs;
    this.member = options.member;
    this.timer = setInterval(() => this.renew(), Math.max(1, Math.floor(options.ttlMs / keepAlivesPerTtl)));
  }

  /** Whether the lease still has `leaseSafetyMarginMs` left, as far as this client knows. */
  alive(now: number): boolean {
    return !this.lost && now + leaseSafetyMarginMs < this.validUntil;
  }

  /** A paused process renews nothing. */
  suspend(): void {
    this.suspended = true;
  }

  resume(): void {
    this.suspended = false;
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    this.closeStream();
  }

  private renew(): void {
    if (this.suspended || this.stopped) return;
    const stream = this.stream ?? this.open();
    this.unanswered.push(this.options.now());
    stream.write({ ID: this.options.lease });
  }

  private open(): NonNullable<LeaseKeeper['stream']> {
    const { cluster } = this.options;
    const members = cluster.members;
    const channel = memberChannel(cluster.endpoint(members[this.member % members.length]!.name));
    const stream = channel.bidiStream(leaseKeepAliveCodec as MethodCodec<Decoded>);
    stream.on('data', (response: Decoded) => {
      const sentAt = this.unanswered.shift();
      const ttlSeconds = Number(response.TTL ?? 0);
      if (ttlSeconds <= 0) this.lost = true;
      else if (sentAt !== undefined) this.validUntil = Math.max(this.validUntil, sentAt + ttlSeconds * 1000);
    });
    stream.on('error', () => {
      if (this.stream !== stream) return;
      this.closeStream();
      this.member++;
    });
    stream.on('end', () => {
      if (this.stream === stream) this.closeStream();
    });
    this.channel = channel;
    this.stream = stream;
    return stream;
  }

  private closeStream(): void {
    const stream = this.stream;
    const channel = this.channel;
    this.stream = undefined;
    this.channel = undefined;
    this.unanswered = [];
    stream?.cancel();
    channel?.close();
  }
}

// ---- The clients -------------------------------------------------------------------------------

export interface LockClientsOptions {
  readonly cluster: ClientCluster;
  readonly target: Target;
  readonly keyPrefix: string;
  readonly clients: number;
  readonly pauses: HolderPauses;
  /** ms since the run began. */
  readonly now: () => number;
  readonly onOperation?: (op: Operation) => void;
  readonly log?: (message: string) => void;
}

/** A client's identity in the history: a new process after an operation that never returned. */
interface Me {
  process: number;
  member: number;
}

/** A client's channel for one cycle; a holder may fail over to other members. */
interface Link {
  channel: EtcdChannel;
  failovers: number;
}

interface Held {
  readonly lease: string;
  readonly ttlMs: number;
  readonly key: Uint8Array;
  readonly token: number;
}

export class LockClients {
  private nextId = 0;
  private valueSeq = 0;
  private readonly operations: Operation[] = [];
  private readonly keys: LockKeys;

  constructor(private readonly options: LockClientsOptions) {
    this.keys = lockKeys(options.keyPrefix);
  }

  async run(signal: AbortSignal): Promise<{ operations: Operation[]; pauses: FaultWindow[] }> {
    const workers: Promise<void>[] = [];
    for (let p = 0; p < this.options.clients; p++) workers.push(this.client(p, signal));
    await Promise.all(workers);
    return { operations: [...this.operations].sort((a, b) => a.id - b.id), pauses: this.options.pauses.windows };
  }

  private memberName(index: number): string {
    const members = this.options.cluster.members;
    return members[index % members.length]!.name;
  }

  private async client(first: number, signal: AbortSignal): Promise<void> {
    const me: Me = { process: first, member: first };
    while (!signal.aborted) {
      const link: Link = { channel: this.channelTo(me.member), failovers: 0 };
      let ok: boolean;
      try {
        ok = await this.cycle(me, link, signal);
      } finally {
        link.channel.close();
      }
      if (!ok) {
        me.member++;
        await pause(errorPauseMs, signal);
      }
    }
  }

  private channelTo(member: number): EtcdChannel {
    return memberChannel(this.options.cluster.endpoint(this.memberName(member)));
  }

  /**
   * Moves a holder to the next member after a write that certainly did not happen (its member is
   * down or cut off), as a client with several endpoints does; false once it has tried them all.
   */
  private failover(me: Me, link: Link): boolean {
    if (link.failovers >= this.options.cluster.members.length - 1) return false;
    link.failovers++;
    link.channel.close();
    me.member++;
    link.channel = this.channelTo(me.member);
    return true;
  }

  /** One grant–lock–write–unlock cycle; false when something failed (the client then moves to another member). */
  private async cycle(me: Me, link: Link, signal: AbortSignal): Promise<boolean> {
    const { now } = this.options;
    const grantedAt = now();
    let lease: string;
    let ttlMs: number;
    try {
      const granted = await link.channel.unary(leaseGrantCodec, leaseGrantRequest(leaseTtlSecondsRequested), { timeoutMs: opTimeoutMs });
      lease = String(granted.ID);
      ttlMs = 1000 * Number(granted.TTL);
      if (lease === '0' || !(ttlMs > 0)) throw new Error(`grant answered lease ${lease} with TTL ${ttlMs} ms`);
    } catch {
      return false;
    }
    const keeper = new LeaseKeeper({ cluster: this.options.cluster, member: me.member, lease, ttlMs, now, grantedAt });
    try {
      const held = await this.acquire(me, link.channel, lease, ttlMs, signal);
      if (held === undefined) return false;
      const wrote = await this.hold(me, link, held, keeper, signal);
      const released = await this.release(me, link.channel, held);
      return wrote && released;
    } finally {
      keeper.stop();
      // Frees the lock key too if Unlock did not; an expired lease answers "not found".
      await link.channel.unary(leaseRevokeCodec, { ID: lease }, { timeoutMs: revokeTimeoutMs }).catch(() => undefined);
    }
  }

  private async acquire(me: Me, channel: EtcdChannel, lease: string, ttlMs: number, signal: AbortSignal): Promise<Held | undefined> {
    const input: LockInput = { f: 'acquire', lock: lockName };
    let key: Uint8Array = new Uint8Array(0);
    const result = await this.invoke(me, input, async () => {
      const response = await channel.unary(lockCodec, lockRequest(this.keys, lease), { timeoutMs: lockWaitMsMax, signal });
      key = Buffer.from((response.key as Uint8Array | undefined) ?? []);
      const token = this.options.target === 'dkv' ? revisionOf(response) : await this.createRevision(channel, key);
      return { f: 'acquire', token } satisfies LockOutput;
    });
    if (result.status !== 'ok' || result.output.f !== 'acquire') return undefined;
    return { lease, ttlMs, key, token: result.output.token };
  }

  /** etcd's Lock header carries the key's create revision only when the lock was free: read it. */
  private async createRevision(channel: EtcdChannel, key: Uint8Array): Promise<number> {
    const response = await channel.kv('Range', { key }, { timeoutMs: opTimeoutMs });
    const kv = (response.kvs as Array<{ create_revision?: number }> | undefined)?.[0];
    if (kv === undefined) throw new Error('the lock key was gone before its create revision could be read');
    return Number(kv.create_revision);
  }

  /** The critical section; false when a write's outcome is unknown or every member refused it. */
  private async hold(me: Me, link: Link, held: Held, keeper: LeaseKeeper, signal: AbortSignal): Promise<boolean> {
    const { now } = this.options;
    let justResumed = false;
    for (let round = 0; round < writeRoundsPerHold && !signal.aborted; ) {
      // A paused process resumes mid-thought: it does not look at its lease before writing.
      if (!justResumed && !keeper.alive(now())) break;
      const outcome = await this.writeRound(me, link.channel, held);
      if (outcome === 'unknown') return false;
      if (outcome === 'refused') {
        if (!this.failover(me, link)) return false;
        continue;
      }
      justResumed = false;
      if (outcome === 'stale') break;
      if (round === 0) justResumed = await this.maybePause(me, held, keeper, signal);
      else await pause(opIntervalMs, signal);
      round++;
    }
    if (this.options.target === 'dkv' && !signal.aborted) await this.readResource(me, link.channel);
    return true;
  }

  /**
   * A fenced write (DKV) and an unfenced one. The unfenced write is made whatever the fence said:
   * it stands for a client that trusts its lease alone. `refused`: a write certainly did not
   * happen for another reason than its fence (worth another member); `unknown`: it may have.
   */
  private async writeRound(me: Me, channel: EtcdChannel, held: Held): Promise<'ok' | 'stale' | 'refused' | 'unknown'> {
    let stale = false;
    if (this.options.target === 'dkv') {
      const fenced = await this.fencedWrite(me, channel, held);
      if (fenced.status === 'info') return 'unknown';
      if (fenced.status === 'fail' && !fenced.stale) return 'refused';
      stale = fenced.stale;
    }
    const unfenced = await this.unfencedWrite(me, channel, held);
    if (unfenced.status === 'info') return 'unknown';
    if (unfenced.status === 'fail') return 'refused';
    return stale ? 'stale' : 'ok';
  }

  /** Takes the pause due now, if any; true if the holder paused. */
  private async maybePause(me: Me, held: Held, keeper: LeaseKeeper, signal: AbortSignal): Promise<boolean> {
    const { now, pauses, log } = this.options;
    const durationMs = pauses.claim(now(), held.ttlMs);
    if (durationMs === undefined) return false;
    const description = `process ${me.process} holding token ${held.token} stops for ${durationMs} ms (lease TTL ${held.ttlMs / 1000} s): no renewals, no writes`;
    const index = pauses.windows.length;
    pauses.windows.push({ kind: 'holder-pause', start: now(), description });
    log?.(`holder pause: ${description}`);
    keeper.suspend();
    await pause(durationMs, signal);
    keeper.resume();
    pauses.windows[index] = { ...pauses.windows[index]!, end: now() };
    return !signal.aborted;
  }

  private async fencedWrite(me: Me, channel: EtcdChannel, held: Held): Promise<{ status: 'ok' | 'fail' | 'info'; stale: boolean }> {
    const value = lockWriteValue(me.process, held.token, ++this.valueSeq);
    const input: LockInput = { f: 'write', lock: lockName, token: held.token, value };
    const request = fencedPutRequest(this.keys, value, { lockKey: held.key, token: held.token });
    const result = await this.invoke(
      me,
      input,
      async () => ({ f: 'write', accepted: true, revision: revisionOf(await channel.call('dkv.v1.KV', 'Put', request, { timeoutMs: opTimeoutMs })) }) satisfies LockOutput,
      (error) => (isFenceStale(error) ? { status: 'fail', error: `${fenceStaleError}: ${describeError(error)}` } : undefined),
    );
    return { status: result.status, stale: result.status === 'fail' && result.error.startsWith(fenceStaleError) };
  }

  private async unfencedWrite(me: Me, channel: EtcdChannel, held: Held): Promise<Invoked<UnfencedWriteOutput>> {
    const value = lockWriteValue(me.process, held.token, ++this.valueSeq);
    const input: UnfencedWriteInput = { f: 'unfenced-write', lock: lockName, token: held.token, value };
    return this.invoke(me, input, async () => {
      const response = await channel.kv('Put', unfencedPutRequest(this.keys, value), { timeoutMs: opTimeoutMs });
      return { f: 'unfenced-write', revision: revisionOf(response) } satisfies UnfencedWriteOutput;
    });
  }

  private async readResource(me: Me, channel: EtcdChannel): Promise<void> {
    const input: LockInput = { f: 'read', lock: lockName };
    const call = toEtcdCall({ f: 'read', key: 'lock-resource' }, this.options.keyPrefix);
    await this.invoke(
      me,
      input,
      async () => {
        const response = await channel.kv('Range', call.request, { timeoutMs: opTimeoutMs });
        const kv = (response.kvs as Array<{ value?: Uint8Array }> | undefined)?.[0];
        return { f: 'read', value: kv === undefined ? null : new TextDecoder().decode(kv.value ?? new Uint8Array(0)) } satisfies LockOutput;
      },
      // A read changes nothing: any error means it did not happen.
      (error) => ({ status: 'fail', error: describeError(error) }),
    );
  }

  private async release(me: Me, channel: EtcdChannel, held: Held): Promise<boolean> {
    const input: LockInput = { f: 'release', lock: lockName, token: held.token };
    const result = await this.invoke(me, input, async () => {
      await channel.unary(unlockCodec, unlockRequest(held.key), { timeoutMs: opTimeoutMs });
      return { f: 'release' } satisfies LockOutput;
    });
    return result.status === 'ok';
  }

  /**
   * Runs one operation and records it. `classify` may claim an error first (a stale fence);
   * otherwise errors are classified as every workload classifies them (`fail` only for errors
   * that prove nothing happened).
   */
  private async invoke<O>(
    me: Me,
    input: unknown,
    run: () => Promise<O>,
    classify?: (error: unknown) => { status: 'fail' | 'info'; error: string } | undefined,
  ): Promise<Invoked<O>> {
    const { now } = this.options;
    const id = this.nextId++;
    const call = now();
    const node = this.memberName(me.member);
    let result: Invoked<O>;
    try {
      result = { status: 'ok', output: await run() };
    } catch (error) {
      const code = (error as RpcError).code;
      const heardBack = code !== grpcStatus.DEADLINE_EXCEEDED && code !== grpcStatus.CANCELLED;
      const claimed = classify?.(error);
      result = claimed !== undefined ? { ...claimed, heardBack } : { status: classifyError(error), error: describeError(error), heardBack };
    }
    const ret = now();
    const base = { id, process: me.process, call, input, node };
    const recorded: Operation =
      result.status === 'ok'
        ? { ...base, ret, status: 'ok', output: result.output }
        : { ...base, ...(result.heardBack ? { ret } : {}), status: result.status, error: result.error };
    this.operations.push(recorded);
    this.options.onOperation?.(recorded);
    if (result.status === 'info') me.process += this.options.clients;
    return result;
  }
}
