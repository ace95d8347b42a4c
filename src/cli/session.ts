/**
 * Leases kept alive from the command line. `LeaseKeeper` renews one lease over a LeaseKeepAlive
 * stream every third of its TTL, moving to the next endpoint when a stream fails or stops
 * answering (`dkv lease keep-alive` runs it in the foreground). `Session` is etcd's
 * concurrency.Session: a lease granted for this process and kept alive in the background, under
 * which `dkv lock` and `dkv elect` hold their keys; it reports the lease lost as soon as the
 * server answers TTL 0 or no renewal got through before the lease's deadline.
 */
import { strict as assert } from 'node:assert';
import { type Decoded, type EtcdChannel, longsAsStrings, methodCodec } from '../client/index.js';
import { type Endpoints, commandTimeoutMs, isStaleToken } from './remote.js';

/** The longest a renewal may go unanswered before its stream counts as failed (capped by TTL / 3). */
const renewalAnswerMsMax = commandTimeoutMs;
/** ...but never shorter than this, so a busy server is not abandoned after a few ms. */
const renewalAnswerMsMin = 1000;
/** The wait before reopening a failed stream grows by this per consecutive failure, up to the max. */
const reopenDelayMsStep = 100;
const reopenDelayMsMax = 1000;
/** Before any TTL is known (nothing renewed yet), this many failures per endpoint give up. */
const failuresPerEndpointMax = 3;
/** setTimeout's longest delay (a longer one fires at once); a lease's TTL may be up to 9e9 s. */
const timerMsMax = 2 ** 31 - 1;

assert(renewalAnswerMsMin <= renewalAnswerMsMax && reopenDelayMsStep <= reopenDelayMsMax && renewalAnswerMsMax <= timerMsMax);

const leaseCodec = (method: string) => methodCodec('etcdserverpb.Lease', method, longsAsStrings);

/** A lease id as etcdctl prints it: unsigned hex (the wire carries a signed int64, here as decimal text). */
export function leaseHex(id: unknown): string {
  return BigInt.asUintN(64, BigInt(String(id))).toString(16);
}

/** Why a kept lease is lost. */
export type LeaseLoss =
  /** The server answered a renewal with TTL 0: the lease expired or was revoked. */
  | { readonly kind: 'gone' }
  /** No renewal got through before the deadline the last one (or the grant) set. */
  | { readonly kind: 'deadline'; readonly error: unknown }
  /** No TTL known yet, and every endpoint failed repeatedly. */
  | { readonly kind: 'unreachable'; readonly error: unknown };

export function describeLoss(id: string, loss: LeaseLoss): string {
  switch (loss.kind) {
    case 'gone':
      return `lease ${leaseHex(id)} expired or was revoked`;
    case 'deadline':
      return `lease ${leaseHex(id)} could not be renewed within its TTL (${errorText(loss.error)})`;
    case 'unreachable':
      return `lease ${leaseHex(id)} could not be renewed (${errorText(loss.error)})`;
  }
}

function errorText(error: unknown): string {
  if (error === undefined) return 'no answer';
  return (error as { details?: string }).details ?? (error as Error).message ?? String(error);
}

export interface LeaseKeeperHandlers {
  /** A renewal the server answered with a TTL above 0. */
  readonly onRenewed?: (response: Decoded) => void;
  /** The lease is lost; the keeper has stopped. Called at most once, never after `stop()`. */
  readonly onLost: (loss: LeaseLoss) => void;
}

/**
 * Renews lease `id` (decimal int64 text) until stopped or lost. Time is Date.now(): the lease's
 * deadline is taken as the moment the last answered renewal was *sent* plus its TTL, which is no
 * later than the server's (it renews on applying, after that moment), so the keeper gives up no
 * later than the cluster can hand the lease's keys to someone else.
 */
export class LeaseKeeper {
  private stopped = false;
  private stream: ReturnType<EtcdChannel['bidiStream']> | undefined;
  private endpoint = 0;
  private failures = 0;
  private lastError: unknown;
  private sentAt = 0;
  private ttlMs: number | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  /** The next renewal, the wait for an answer, or the wait before reopening a stream. */
  private stepTimer: NodeJS.Timeout | undefined;

  /** `deadlineAt` (Date.now() ms) when the lease's deadline is already known, as after a grant. */
  constructor(
    private readonly endpoints: Endpoints,
    readonly id: string,
    private readonly handlers: LeaseKeeperHandlers,
    deadline?: { readonly at: number; readonly ttlMs: number },
  ) {
    if (deadline !== undefined) {
      this.ttlMs = deadline.ttlMs;
      this.armDeadline(deadline.at);
    }
  }

  /** Opens the stream and sends the first renewal at once. */
  start(): void {
    this.open();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.deadlineTimer);
    clearTimeout(this.stepTimer);
    this.discardStream();
  }

  private open(): void {
    if (this.stopped) return;
    // The token first (fetched once per run; again after the server found it stale).
    void this.endpoints.authOptions().then(
      (auth) => this.openWith(auth),
      (error: unknown) => this.onFailed(error),
    );
  }

  private openWith(auth: { token?: string }): void {
    if (this.stopped) return;
    const stream = this.endpoints.channel(this.endpoint).bidiStream(leaseCodec('LeaseKeepAlive'), auth);
    this.stream = stream;
    stream.on('data', (response: Decoded) => this.onAnswer(stream, response));
    stream.on('error', (error) => {
      if (isStaleToken(error)) void this.endpoints.discardToken(auth);
      this.onStreamFailed(stream, error);
    });
    stream.on('end', () => this.onStreamFailed(stream, new Error('the keep-alive stream ended')));
    this.renew(stream);
  }

  private renew(stream: NonNullable<LeaseKeeper['stream']>): void {
    this.sentAt = Date.now();
    stream.write({ ID: this.id });
    const answerMs = Math.min(renewalAnswerMsMax, Math.max(renewalAnswerMsMin, (this.ttlMs ?? Infinity) / 3));
    this.stepTimer = setTimeout(() => this.onStreamFailed(stream, new Error(`no keep-alive answer within ${answerMs} ms`)), answerMs);
  }

  private onAnswer(stream: NonNullable<LeaseKeeper['stream']>, response: Decoded): void {
    if (stream !== this.stream || this.stopped) return;
    clearTimeout(this.stepTimer);
    this.failures = 0;
    const ttlSeconds = Number(response.TTL);
    if (ttlSeconds <= 0) {
      this.lose({ kind: 'gone' });
      return;
    }
    this.ttlMs = ttlSeconds * 1000;
    this.armDeadline(this.sentAt + this.ttlMs);
    this.handlers.onRenewed?.(response);
    if (this.stopped) return;
    this.stepTimer = setTimeout(() => this.renew(stream), Math.min(timerMsMax, this.ttlMs / 3));
  }

  private onStreamFailed(stream: NonNullable<LeaseKeeper['stream']>, error: unknown): void {
    if (stream !== this.stream || this.stopped) return;
    this.onFailed(error);
  }

  /** The stream failed, or could not be opened: try again (on the next endpoint) or give up. */
  private onFailed(error: unknown): void {
    if (this.stopped) return;
    clearTimeout(this.stepTimer);
    this.discardStream();
    this.failures++;
    this.lastError = error;
    // With a deadline known, only the deadline gives up: a lease can be saved until then.
    if (this.ttlMs === undefined && this.failures >= this.endpoints.list.length * failuresPerEndpointMax) {
      this.lose({ kind: 'unreachable', error });
      return;
    }
    this.endpoint = (this.endpoint + 1) % this.endpoints.list.length;
    this.stepTimer = setTimeout(() => this.open(), Math.min(reopenDelayMsMax, reopenDelayMsStep * this.failures));
  }

  private armDeadline(at: number): void {
    clearTimeout(this.deadlineTimer);
    const left = at - Date.now();
    if (left <= 0) {
      this.lose({ kind: 'deadline', error: this.lastError });
      return;
    }
    this.deadlineTimer = setTimeout(() => this.armDeadline(at), Math.min(timerMsMax, left));
  }

  private lose(loss: LeaseLoss): void {
    if (this.stopped) return;
    this.stop();
    this.handlers.onLost(loss);
  }

  private discardStream(): void {
    const stream = this.stream;
    if (stream === undefined) return;
    this.stream = undefined;
    stream.removeAllListeners();
    stream.on('error', () => undefined);
    stream.cancel();
  }
}

/**
 * A lease granted for this process (etcd's concurrency.Session), kept alive until `close()`.
 * `lost` resolves if it is lost first: whatever was held under it may be someone else's by then.
 */
export class Session {
  readonly lost: Promise<LeaseLoss>;
  private readonly keeper: LeaseKeeper;

  private constructor(
    private readonly endpoints: Endpoints,
    /** The lease id, decimal int64 text. */
    readonly id: string,
    /** The TTL the server granted (it raises one below its minimum). */
    readonly ttlSeconds: number,
    grantSentAt: number,
  ) {
    let onLost: (loss: LeaseLoss) => void = () => undefined;
    this.lost = new Promise((resolve) => (onLost = resolve));
    this.keeper = new LeaseKeeper(endpoints, id, { onLost }, { at: grantSentAt + ttlSeconds * 1000, ttlMs: ttlSeconds * 1000 });
  }

  /** Grants a lease of `ttlSeconds` (a server error rejects) and starts keeping it alive. */
  static async open(endpoints: Endpoints, ttlSeconds: number): Promise<Session> {
    const sentAt = Date.now();
    const granted = await endpoints.unary(leaseCodec('LeaseGrant'), { TTL: ttlSeconds, ID: '0' });
    const session = new Session(endpoints, String(granted.ID), Number(granted.TTL), sentAt);
    assert(session.id !== '0' && session.ttlSeconds > 0, 'a granted lease has an id and a TTL');
    session.keeper.start();
    return session;
  }

  get hex(): string {
    return leaseHex(this.id);
  }

  /** Stops the keep-alives and revokes the lease (every key under it is deleted); errors reject. */
  async close(): Promise<void> {
    this.keeper.stop();
    await this.endpoints.unary(leaseCodec('LeaseRevoke'), { ID: this.id });
  }

  /** Stops the keep-alives only (the lease is lost already, or left to expire). */
  abandon(): void {
    this.keeper.stop();
  }
}
