/**
 * Leases: `Lease` renews itself over a LeaseKeepAlive stream to the leader (or the preferred
 * server) every third of its TTL, moving to another server when a stream fails, and emits
 * `'lost'` once when the server answers TTL 0 (expired or revoked) or no renewal got through
 * before the lease's deadline: the moment the last answered renewal was *sent* plus its TTL,
 * which is no later than the cluster's own deadline.
 */
import { EventEmitter } from 'node:events';
import type * as grpc from '@grpc/grpc-js';
import { Backoff } from './backoff.js';
import type { ClientCore, Server } from './core.js';
import { type Decoded, longsAsStrings, methodCodec } from './etcd-channel.js';
import { DkvError, isDkvError } from './errors.js';
import type { CallOptionsCommon } from './kv.js';
import { headerFromWire, idFromWire, int64SafeOf, listOf, type ResponseHeader } from './wire.js';

/** A renewal waits at most this long for its answer before the stream counts as failed (also capped at TTL / 3). */
export const renewalAnswerMsMax = 5_000;
/** Renewals are never more often than this. */
export const renewalIntervalMsMin = 100;
/** setTimeout's longest delay. */
const timerMsMax = 2 ** 31 - 1;

const keepAliveCodec = methodCodec('etcdserverpb.Lease', 'LeaseKeepAlive', longsAsStrings);

/** Why a lease was lost. */
export interface LeaseLostEvent {
  /** 'expired': the server said the lease is gone (expired or revoked elsewhere); 'unreachable': no renewal got through in time. */
  readonly reason: 'expired' | 'unreachable';
  readonly error?: DkvError;
}

/** The events of a `Lease`. */
export interface LeaseEvents {
  /** The lease is lost; keep-alives stopped. Emitted at most once, never after `revoke()` or `close()`. */
  lost: [LeaseLostEvent];
  /** A renewal was answered with this TTL (seconds). */
  renewed: [number];
}

/** `timeToLive`'s answer. */
export interface LeaseTimeToLive {
  /** Seconds left; -1 when the lease does not exist. */
  readonly ttl: number;
  /** The TTL it was granted with. */
  readonly grantedTtl: number;
  /** With `keys`: the keys attached to it. */
  readonly keys: Buffer[];
  readonly header: ResponseHeader;
}

/** A lease granted by `DkvClient.grant`, kept alive until revoked, closed or lost. */
export class Lease extends EventEmitter<LeaseEvents> {
  private stopped = false;
  private isLost = false;
  private stream: grpc.ClientDuplexStream<object, Decoded> | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private stepTimer: NodeJS.Timeout | undefined;
  private sentAt = 0;
  private readonly backoff: Backoff;
  private readonly untrack: () => void;

  /** @internal */
  constructor(
    private readonly core: ClientCore,
    /** The lease id. */
    readonly id: bigint,
    /** The TTL granted (seconds). */
    readonly ttl: number,
    grantSentAt: number,
    keepAlive: boolean,
  ) {
    super();
    this.backoff = new Backoff(core.options.reconnect);
    // Only a kept lease has timers and a stream for the client's close to stop.
    this.untrack = keepAlive ? core.track(this) : () => {};
    if (keepAlive) {
      this.armDeadline(grantSentAt + ttl * 1000);
      this.open();
    } else this.stopped = true;
  }

  /** True once the lease was lost. */
  get lost(): boolean {
    return this.isLost;
  }

  private armDeadline(at: number): void {
    clearTimeout(this.deadlineTimer);
    this.deadlineTimer = setTimeout(() => this.lose({ reason: 'unreachable', error: new DkvError('UNAVAILABLE', `lease ${this.id}: no renewal got through before its TTL ran out`) }), Math.min(timerMsMax, Math.max(0, at - Date.now())));
    this.deadlineTimer.unref();
  }

  private step(ms: number, then: () => void): void {
    clearTimeout(this.stepTimer);
    this.stepTimer = setTimeout(then, Math.min(timerMsMax, ms));
    this.stepTimer.unref();
  }

  private open(): void {
    if (this.stopped) return;
    const server = this.core.route('write') ?? this.core.route('read');
    if (server === undefined) {
      // No server available: probes bring one back; try the most preferred meanwhile.
      this.step(this.backoff.next(), () => {
        const any = this.core.servers.find((s) => s.available) ?? this.core.servers[0]!;
        this.openOn(any);
      });
      return;
    }
    this.openOn(server);
  }

  private openOn(server: Server): void {
    if (this.stopped) return;
    const stream = server.channel.bidiStream(keepAliveCodec, {});
    this.stream = stream;
    stream.on('data', (response: Decoded) => this.onAnswer(stream, server, response));
    stream.on('error', (error) => this.onStreamFailed(stream, server, error));
    stream.on('end', () => this.onStreamFailed(stream, server, new Error('the keep-alive stream ended')));
    this.renew(stream, server);
  }

  private renew(stream: grpc.ClientDuplexStream<object, Decoded>, server: Server): void {
    if (this.stopped || stream !== this.stream) return;
    this.sentAt = Date.now();
    stream.write({ ID: this.id.toString() });
    const answerMs = Math.max(renewalIntervalMsMin, Math.min(renewalAnswerMsMax, (this.ttl * 1000) / 3));
    this.step(answerMs, () => this.onStreamFailed(stream, server, new DkvError('TIMEOUT', 'a lease renewal went unanswered')));
  }

  private onAnswer(stream: grpc.ClientDuplexStream<object, Decoded>, server: Server, response: Decoded): void {
    if (this.stopped || stream !== this.stream) return;
    const ttl = int64SafeOf(response.TTL, 'TTL');
    if (ttl <= 0) {
      this.lose({ reason: 'expired' });
      return;
    }
    this.core.markAvailable(server);
    this.backoff.reset();
    this.armDeadline(this.sentAt + ttl * 1000);
    this.emit('renewed', ttl);
    this.step(Math.max(renewalIntervalMsMin, (ttl * 1000) / 3), () => this.renew(stream, server));
  }

  private onStreamFailed(stream: grpc.ClientDuplexStream<object, Decoded>, server: Server, error: unknown): void {
    if (this.stopped || stream !== this.stream) return;
    this.stream = undefined;
    stream.cancel();
    if (!isDkvError(error, 'TIMEOUT')) this.core.streamFailed(server, error, 'lease keep-alive');
    this.step(this.backoff.next(), () => this.open());
  }

  private lose(event: LeaseLostEvent): void {
    if (this.stopped) return;
    this.isLost = true;
    this.stop();
    this.emit('lost', event);
  }

  private stop(): void {
    this.stopped = true;
    this.untrack();
    clearTimeout(this.deadlineTimer);
    clearTimeout(this.stepTimer);
    const stream = this.stream;
    this.stream = undefined;
    stream?.cancel();
  }

  /** Stops keeping the lease alive without revoking it (it expires after its TTL). */
  close(): void {
    this.stop();
  }

  /** Revokes the lease (its keys are deleted) and stops the keep-alives. A lease already gone counts as revoked. */
  async revoke(options: CallOptionsCommon = {}): Promise<void> {
    this.stop();
    try {
      await this.core.unary({ service: 'etcdserverpb.Lease', method: 'LeaseRevoke', request: { ID: this.id.toString() }, kind: 'write', retry: 'safe', what: 'lease revoke', ...options });
    } catch (error) {
      if (!isDkvError(error, 'LEASE_NOT_FOUND')) throw error;
    }
  }

  /** The lease's remaining TTL (and, with `keys`, its keys). */
  async timeToLive(options: CallOptionsCommon & { readonly keys?: boolean } = {}): Promise<LeaseTimeToLive> {
    const response = await this.core.unary({ service: 'etcdserverpb.Lease', method: 'LeaseTimeToLive', request: { ID: this.id.toString(), keys: options.keys === true }, kind: 'read', retry: 'safe', what: 'lease time-to-live', timeoutMs: options.timeoutMs, signal: options.signal });
    return {
      ttl: int64SafeOf(response.TTL, 'TTL'),
      grantedTtl: int64SafeOf(response.grantedTTL, 'grantedTTL'),
      keys: listOf(response.keys).map((k) => Buffer.from(k as Uint8Array)),
      header: headerFromWire(response.header),
    };
  }
}

/** @internal the lease id of a grant's answer */
export function grantedId(response: Decoded): bigint {
  const error = String(response.error ?? '');
  if (error !== '') throw new DkvError('UNKNOWN', `lease grant: ${error}`, { serverMessage: error });
  return idFromWire(response.ID);
}
