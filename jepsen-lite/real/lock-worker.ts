/**
 * One lock client, in a process of its own (`lock-worker.js` loads this file through tsx and
 * calls `runLockWorker`), so that a holder pause is a real SIGSTOP: the harness stops the whole
 * process — event loop, lease keep-alive timer, gRPC channels — and continues it later. The
 * client talks to the harness over the IPC channel (`lock-protocol.ts`) and stamps its operations
 * with the run's shared monotonic clock (`clock.ts`). Each cycle:
 *
 * 1. grants a lease and keeps it alive on a LeaseKeepAlive stream of its own (`LeaseKeeper`);
 * 2. `Lock(name, lease)` — the history's `acquire`, whose token is the lock key's create revision
 *    (DKV: the response header's revision; etcd: read back with a Range, as etcd's header has it
 *    only when the lock was free);
 * 3. holds it for up to `writeRoundsPerHold` rounds, each a **fenced** write of the resource
 *    (DKV only: `dkv.v1.KV` Put with `fence { lock key, token }`) and an **unfenced** write (a
 *    plain etcd Put to another key). Before a round the holder checks that its lease is still
 *    alive as far as it knows and stops otherwise, as a careful lease-based client does; a stale
 *    refusal also ends the hold. After the first round the holder reaches a **pause point**: it
 *    tells the harness and waits; the harness may SIGSTOP it there for 2.5–3.5 TTLs. Once
 *    continued it makes its next round at once, without looking at its lease, as a process
 *    that was stopped mid-thought would;
 * 4. reads the resource (DKV only), `Unlock`s, revokes the lease.
 *
 * Every acquire, fenced write, read and release is recorded as a `lock` model operation; each
 * unfenced write as an `unfenced-write` (checked by `check/fencing.ts`).
 */
import { type EtcdChannel, longsAsStrings, methodCodec } from '../../src/client/index.js';
import { fenceStaleError } from '../check/index.js';
import type { LockInput, LockOutput, UnfencedWriteInput, UnfencedWriteOutput } from '../history.js';
import {
  type LockKeys,
  describeError,
  fencedPutRequest,
  isFenceStale,
  lockKeys,
  lockName,
  lockRequest,
  lockWriteValue,
  toEtcdCall,
  unfencedPutRequest,
  unlockRequest,
} from '../workload/index.js';
import { type ClientCluster, type Invoked, opIntervalMs, opTimeoutMs } from './clients.js';
import { type Link, type Me, Members, OperationRecorder, headerRevision, pause, runCycles } from './client-loop.js';
import { decodeOrigin, runClock } from './clock.js';
import type { Target } from './cluster.js';
import { LeaseKeeper, grantLease, revokeLease } from './lease-keeper.js';
import { type PausePoint, type WorkerMessage, parseHarnessMessage } from './lock-protocol.js';

/** Rounds of writes per hold. */
export const writeRoundsPerHold = 3;
/** Lock's deadline: long enough to wait out a paused holder whose lease must expire first. */
export const lockWaitMsMax = 12_000;

const lockCodec = methodCodec('v3lockpb.Lock', 'Lock', longsAsStrings);
const unlockCodec = methodCodec('v3lockpb.Lock', 'Unlock', longsAsStrings);

export interface LockClientOptions {
  readonly cluster: ClientCluster;
  readonly target: Target;
  readonly keyPrefix: string;
  /** This client's first process number and member. */
  readonly client: number;
  readonly recorder: OperationRecorder;
  readonly members: Members;
  readonly now: () => number;
  /** Resolves once the harness lets the holder go on; true if it was stopped meanwhile. */
  readonly pausePoint: (point: PausePoint) => Promise<boolean>;
}

interface Held {
  readonly lease: string;
  readonly ttlMs: number;
  readonly key: Uint8Array;
  readonly token: number;
}

export class LockClient {
  private valueSeq = 0;
  private readonly keys: LockKeys;

  constructor(private readonly options: LockClientOptions) {
    this.keys = lockKeys(options.keyPrefix);
  }

  run(signal: AbortSignal): Promise<void> {
    const me: Me = { process: this.options.client, member: this.options.client };
    return runCycles(me, this.options.members, signal, (link) => this.cycle(me, link, signal));
  }

  /** One grant–lock–write–unlock cycle; false when something failed. */
  private async cycle(me: Me, link: Link, signal: AbortSignal): Promise<boolean> {
    const { now, cluster } = this.options;
    const grantedAt = now();
    const granted = await grantLease(link.channel);
    if (granted === undefined) return false;
    const keeper = new LeaseKeeper({ cluster, member: me.member, lease: granted.lease, ttlMs: granted.ttlMs, now, grantedAt });
    try {
      const held = await this.acquire(me, link.channel, granted.lease, granted.ttlMs, signal);
      if (held === undefined) return false;
      const wrote = await this.hold(me, link, held, keeper, signal);
      const released = await this.release(me, link.channel, held);
      return wrote && released;
    } finally {
      keeper.stop();
      // Frees the lock key too if Unlock did not.
      await revokeLease(link.channel, granted.lease);
    }
  }

  private async acquire(me: Me, channel: EtcdChannel, lease: string, ttlMs: number, signal: AbortSignal): Promise<Held | undefined> {
    const input: LockInput = { f: 'acquire', lock: lockName };
    let key: Uint8Array = new Uint8Array(0);
    const result = await this.options.recorder.invoke(me, input, async () => {
      const response = await channel.unary(lockCodec, lockRequest(this.keys, lease), { timeoutMs: lockWaitMsMax, signal });
      key = Buffer.from((response.key as Uint8Array | undefined) ?? []);
      const token = this.options.target === 'dkv' ? headerRevision(response) : await this.createRevision(channel, key);
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
    const { now, members } = this.options;
    let justResumed = false;
    for (let round = 0; round < writeRoundsPerHold && !signal.aborted; ) {
      // A stopped process resumes mid-thought: it does not look at its lease before writing.
      if (!justResumed && !keeper.alive(now())) break;
      const outcome = await this.writeRound(me, link.channel, held);
      if (outcome === 'unknown') return false;
      if (outcome === 'refused') {
        if (!members.failover(me, link)) return false;
        continue;
      }
      justResumed = false;
      if (outcome === 'stale') break;
      if (round === 0) justResumed = await this.options.pausePoint({ process: me.process, token: held.token, ttlMs: held.ttlMs });
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

  private async fencedWrite(me: Me, channel: EtcdChannel, held: Held): Promise<{ status: 'ok' | 'fail' | 'info'; stale: boolean }> {
    const value = lockWriteValue(me.process, held.token, ++this.valueSeq);
    const input: LockInput = { f: 'write', lock: lockName, token: held.token, value };
    const request = fencedPutRequest(this.keys, value, { lockKey: held.key, token: held.token });
    const result = await this.options.recorder.invoke(
      me,
      input,
      async () => ({ f: 'write', accepted: true, revision: headerRevision(await channel.call('dkv.v1.KV', 'Put', request, { timeoutMs: opTimeoutMs })) }) satisfies LockOutput,
      (error) => (isFenceStale(error) ? { status: 'fail', error: `${fenceStaleError}: ${describeError(error)}` } : undefined),
    );
    return { status: result.status, stale: result.status === 'fail' && result.error.startsWith(fenceStaleError) };
  }

  private async unfencedWrite(me: Me, channel: EtcdChannel, held: Held): Promise<Invoked<UnfencedWriteOutput>> {
    const value = lockWriteValue(me.process, held.token, ++this.valueSeq);
    const input: UnfencedWriteInput = { f: 'unfenced-write', lock: lockName, token: held.token, value };
    return this.options.recorder.invoke(me, input, async () => {
      const response = await channel.kv('Put', unfencedPutRequest(this.keys, value), { timeoutMs: opTimeoutMs });
      return { f: 'unfenced-write', revision: headerRevision(response) } satisfies UnfencedWriteOutput;
    });
  }

  private async readResource(me: Me, channel: EtcdChannel): Promise<void> {
    const input: LockInput = { f: 'read', lock: lockName };
    const call = toEtcdCall({ f: 'read', key: 'lock-resource' }, this.options.keyPrefix);
    await this.options.recorder.invoke(
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
    const result = await this.options.recorder.invoke(me, input, async () => {
      await channel.unary(unlockCodec, unlockRequest(held.key), { timeoutMs: opTimeoutMs });
      return { f: 'release' } satisfies LockOutput;
    });
    return result.status === 'ok';
  }
}

// ---- The process -------------------------------------------------------------------------------

function send(message: WorkerMessage): void {
  process.send?.(message);
}

/**
 * The worker process's main: waits for `start`, runs one `LockClient` until `stop`, answers
 * `done` and exits. If the harness goes away (the IPC channel closes) it exits at once: a client
 * must never outlive its run.
 */
export function runLockWorker(): void {
  if (process.send === undefined) throw new TypeError('lock-worker: must be started by the harness with an IPC channel (child_process.fork)');
  const stop = new AbortController();
  let continueHolder: ((paused: boolean) => void) | undefined;
  let started = false;
  process.on('disconnect', () => process.exit(1));
  // Ctrl-C reaches the whole process group: the harness, not the terminal, ends this run's clients.
  process.on('SIGINT', () => undefined);
  process.on('message', (raw: unknown) => {
    const message = parseHarnessMessage(raw);
    if (message.type === 'stop') {
      stop.abort();
      continueHolder?.(false);
      return;
    }
    if (message.type === 'continue') {
      const resume = continueHolder;
      continueHolder = undefined;
      if (resume === undefined) throw new TypeError('lock-worker: continue without a pause point');
      resume(message.paused);
      return;
    }
    if (started) throw new TypeError('lock-worker: started twice');
    started = true;
    const endpoints = new Map(message.members.map((m) => [m.name, m.endpoint]));
    const cluster: ClientCluster = {
      members: message.members.map((m) => ({ name: m.name })),
      endpoint: (name) => {
        const endpoint = endpoints.get(name);
        if (endpoint === undefined) throw new TypeError(`lock-worker: no member ${name}`);
        return endpoint;
      },
    };
    const now = runClock(decodeOrigin(message.clockOrigin));
    const members = new Members(cluster);
    const recorder = new OperationRecorder({
      now,
      members,
      processStride: message.clients,
      onInvoke: (invocation) => send({ type: 'invoke', invocation }),
      onComplete: (op) => send({ type: 'complete', op }),
    });
    const pausePoint = (point: PausePoint): Promise<boolean> =>
      new Promise((resolve) => {
        if (stop.signal.aborted) {
          resolve(false);
          return;
        }
        continueHolder = resolve;
        send({ type: 'pause-point', ...point });
      });
    const client = new LockClient({ cluster, target: message.target, keyPrefix: message.keyPrefix, client: message.client, recorder, members, now, pausePoint });
    void client.run(stop.signal).then(() => {
      process.send?.({ type: 'done' } satisfies WorkerMessage, () => process.exit(0));
    });
  });
  send({ type: 'ready' });
}
