/**
 * Log lines about client requests, each carrying the request's id (`request_id`): the client's own
 * `x-request-id` metadata when it sends a valid one (so its logs and ours line up), else an id this
 * node makes (`<member id>-<sequence>`, hex). Every call through the client port gets one:
 * - at `debug`, one line per unary call when it is answered (method, took_ms, the status code) and
 *   one when a stream opens and ends;
 * - at `warn`, a unary call slower than `slowRequestWarnMs` (etcd's "request took too long"),
 *   at most `slowRequestLinesPerSecondMax` such lines a second (the rest are counted in the next
 *   line), leaving out the calls that wait by design (Lock, Campaign);
 * - the services' own lines about a call (an internal error's stack) carry its id too
 *   (`requestIdOfCall`).
 *
 * With the log level above debug, a fast successful call costs a clock read and a comparison for
 * its lines. A `CallObserver` (the node's: `CallMetrics`, two counter updates and a histogram
 * observation a call) also hears of each call's start and end: a unary or client-streaming call's
 * answer, a stream's end (`observeStreamEnd`).
 */
import { performance } from 'node:perf_hooks';
import type * as grpc from '@grpc/grpc-js';
import { formatId } from '../cluster/index.js';
import type { Counter, Histogram } from './metrics.js';

/** A unary call slower than this is logged at warn (etcd 3.4's fixed 100 ms). */
export const slowRequestWarnMs = 100;
/** Slow-request warnings a second at most; more are summed into the next line. */
export const slowRequestLinesPerSecondMax = 10;
/** Longest client-supplied `x-request-id` used as it is (a longer or non-printable one is replaced). */
export const requestIdLengthMax = 64;

/** Metadata key a client may set to choose its request's id. */
export const requestIdMetadataKey = 'x-request-id';

/** Calls that wait for as long as the client wants (a lock, a campaign): never "slow". */
const waitingMethods: ReadonlySet<string> = new Set(['/v3lockpb.Lock/Lock', '/v3electionpb.Election/Campaign']);

export type LogFields = Readonly<Record<string, string | number | boolean | undefined>>;

export interface RequestLogger {
  debug(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  /** Whether debug lines are written (else per-call lines are not even built). */
  readonly debugEnabled?: boolean;
}

const printable = /^[\x21-\x7e]+$/;

/** A call's kind, as go-grpc-prometheus's grpc_type names it. */
export type CallType = 'unary' | 'client_stream' | 'server_stream' | 'bidi_stream';

/** Hears of the calls of one method. */
export interface MethodObserver {
  started(): void;
  /**
   * `code` is the gRPC status code (0: OK); `seconds` from the handler's start to its answer (a
   * stream: to its end).
   */
  answered(code: number, seconds: number): void;
}

/** Gives the observer of each method (asked once per method, when its handler is wrapped). */
export interface CallObserver {
  method(path: string, type: CallType): MethodObserver;
}

/** gRPC status codes by number, named as Go's codes.Code.String() names them (go-grpc-prometheus's grpc_code). */
const grpcCodeNames: readonly string[] = [
  'OK', 'Canceled', 'Unknown', 'InvalidArgument', 'DeadlineExceeded', 'NotFound', 'AlreadyExists', 'PermissionDenied', 'ResourceExhausted',
  'FailedPrecondition', 'Aborted', 'OutOfRange', 'Unimplemented', 'Internal', 'Unavailable', 'DataLoss', 'Unauthenticated',
];

/** The grpc_code label of a status code (`Code(n)` for one gRPC does not define, as Go prints it). */
export function grpcCodeName(code: number): string {
  return grpcCodeNames[code] ?? `Code(${code})`;
}

/** gRPC's codes for a stream the client cancelled, a handler that threw (or an error without an integer code), and a stream whose deadline passed. */
const grpcStatusCancelled = 1;
const grpcStatusUnknown = 2;
const grpcStatusDeadlineExceeded = 4;

/**
 * The status code a client gets for an answer's error: grpc-js sends an integer `code` as it is
 * and anything else as UNKNOWN.
 */
export function statusCodeOf(error: { code?: unknown } | null | undefined): number {
  if (error === null || error === undefined) return 0;
  return typeof error.code === 'number' && Number.isInteger(error.code) ? error.code : grpcStatusUnknown;
}

type MethodLabels = Readonly<Record<'grpc_type' | 'grpc_service' | 'grpc_method', string>>;

/**
 * etcd's per-call server metrics (go-grpc-prometheus's): grpc_server_started_total,
 * grpc_server_handled_total by status, and grpc_server_handling_seconds, for every call: a stream
 * (Watch, LeaseKeepAlive, Snapshot, Observe…) is handled when it ends, so started minus handled is
 * the streams open (etcd's dashboards count watch streams so). A method's series appear with its
 * first call (go-grpc-prometheus makes them at zero when it starts).
 */
export class CallMetrics implements CallObserver {
  constructor(private readonly metrics: { readonly grpcStarted: Counter; readonly grpcHandled: Counter; readonly grpcHandlingSeconds: Histogram }) {}

  method(path: string, type: CallType): MethodObserver {
    // A method path is /package.Service/Method (grpc-js routes nothing else to a handler).
    const slash = path.lastIndexOf('/');
    const labels: MethodLabels = { grpc_type: type, grpc_service: path.slice(1, slash), grpc_method: path.slice(slash + 1) };
    // The handled series' labels, one object per code seen, made once.
    const byCode = new Map<number, Readonly<Record<'grpc_type' | 'grpc_service' | 'grpc_method' | 'grpc_code', string>>>();
    const { grpcStarted, grpcHandled, grpcHandlingSeconds } = this.metrics;
    return {
      started: () => grpcStarted.inc(1, labels),
      answered: (code, seconds) => {
        let handled = byCode.get(code);
        if (handled === undefined) {
          handled = { ...labels, grpc_code: grpcCodeName(code) };
          byCode.set(code, handled);
        }
        grpcHandled.inc(1, handled);
        grpcHandlingSeconds.observe(seconds, labels);
      },
    };
  }
}

/** A unary call being answered, as `RequestLog.answered` takes it. */
export interface AnsweredCall {
  readonly method: string;
  readonly id: string | number;
  /** When its handler started, on the log's clock. */
  readonly startedAt: number;
  readonly observer?: MethodObserver;
}

export interface RequestLogOptions {
  /** The clock in milliseconds (default performance.now). */
  readonly now?: () => number;
  readonly observer?: CallObserver;
}

/** Makes request ids for one node and rate-limits its slow-request lines. */
export class RequestLog {
  private sequence = 0;
  private readonly prefix: string;
  private windowStart = 0;
  private linesInWindow = 0;
  private suppressed = 0;

  private readonly now: () => number;
  private readonly observer: CallObserver | undefined;

  constructor(
    memberId: number,
    private readonly logger: RequestLogger,
    options: RequestLogOptions = {},
  ) {
    this.prefix = formatId(memberId);
    this.now = options.now ?? (() => performance.now());
    this.observer = options.observer;
  }

  /** The id of a call: the client's `x-request-id` if valid, else a fresh one. */
  idOf(metadata: grpc.Metadata | undefined): string {
    return this.name(this.claim(metadata));
  }

  /**
   * The call's id, cheaply: the client's string, or this node's sequence number (made into text
   * by `name` only when a line needs it).
   */
  claim(metadata: grpc.Metadata | undefined): string | number {
    const given = metadata?.get(requestIdMetadataKey)[0];
    if (typeof given === 'string' && given.length <= requestIdLengthMax && printable.test(given)) return given;
    return ++this.sequence;
  }

  /** The text of an id `claim` gave. */
  name(id: string | number): string {
    return typeof id === 'string' ? id : `${this.prefix}-${id.toString(16)}`;
  }

  /** The observer of one method's calls (none without a `CallObserver`). */
  observe(path: string, type: CallType): MethodObserver | undefined {
    return this.observer?.method(path, type);
  }

  /** Called when a unary call is answered. */
  answered(call: AnsweredCall, error: { readonly code?: unknown; readonly details?: unknown } | null | undefined): void {
    const { method, id } = call;
    const tookMs = this.now() - call.startedAt;
    const code = statusCodeOf(error);
    call.observer?.answered(code, tookMs / 1000);
    if (this.logger.debugEnabled === true) this.logger.debug('request', { request_id: this.name(id), method, took_ms: round(tookMs), code });
    if (tookMs >= slowRequestWarnMs && !waitingMethods.has(method)) this.slow(method, this.name(id), tookMs, code);
  }

  /** A stream opened or ended (debug only). */
  stream(event: 'opened' | 'ended', method: string, id: string | number, startedAt?: number): void {
    if (this.logger.debugEnabled !== true) return;
    this.logger.debug(`stream ${event}`, { request_id: this.name(id), method, took_ms: startedAt === undefined ? undefined : round(this.now() - startedAt) });
  }

  private slow(method: string, id: string, tookMs: number, code: number): void {
    const now = this.now();
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.linesInWindow = 0;
    }
    if (this.linesInWindow >= slowRequestLinesPerSecondMax) {
      this.suppressed++;
      return;
    }
    this.linesInWindow++;
    const suppressed = this.suppressed;
    this.suppressed = 0;
    this.logger.warn('request took too long', {
      request_id: id,
      method,
      took_ms: round(tookMs),
      expected_ms: slowRequestWarnMs,
      code,
      slow_requests_not_logged: suppressed > 0 ? suppressed : undefined,
    });
  }
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

type AnyHandler = (...args: unknown[]) => void;

/** The request id a wrapped handler's call carries (for the service's own log lines). */
const requestIdKey = Symbol('dkv.requestId');

interface TaggedCall {
  [requestIdKey]?: { readonly log: RequestLog; readonly id: string | number };
}

/** The id `withRequestLog` gave this call, if any. */
export function requestIdOfCall(call: object): string | undefined {
  const tag = (call as TaggedCall)[requestIdKey];
  return tag === undefined ? undefined : tag.log.name(tag.id);
}

/** Wraps every handler of `implementation` so that each call gets an id and its log lines. */
export function withRequestLog(
  definition: grpc.ServiceDefinition,
  implementation: grpc.UntypedServiceImplementation,
  log: RequestLog,
  now: () => number = () => performance.now(),
): grpc.UntypedServiceImplementation {
  const wrapped: grpc.UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(implementation)) {
    const method = definition[name];
    if (method === undefined) {
      wrapped[name] = handler;
      continue;
    }
    const original = handler as AnyHandler;
    const path = method.path;
    if (!method.responseStream) {
      // Unary and client-streaming calls end with the callback.
      const observer = log.observe(path, method.requestStream ? 'client_stream' : 'unary');
      wrapped[name] = ((call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        const startedAt = now();
        const id = log.claim(call.metadata);
        (call as TaggedCall)[requestIdKey] = { log, id };
        observer?.started();
        // Counted once, whatever the handler does: grpc-js sends only the first answer, and a
        // handler that throws is answered UNKNOWN by grpc-js.
        let answered = false;
        const answer = ((error, value, trailer, flags) => {
          if (answered) {
            callback(error, value, trailer, flags);
            return;
          }
          answered = true;
          try {
            log.answered({ method: path, id, startedAt, observer }, error);
          } finally {
            callback(error, value, trailer, flags);
          }
        }) as grpc.sendUnaryData<unknown>;
        try {
          original(call, answer);
        } catch (error) {
          if (!answered) {
            answered = true;
            log.answered({ method: path, id, startedAt, observer }, { code: grpcStatusUnknown });
          }
          throw error;
        }
      }) as grpc.UntypedHandleCall;
    } else {
      const observer = log.observe(path, method.requestStream ? 'bidi_stream' : 'server_stream');
      wrapped[name] = ((call: grpc.ServerWritableStream<unknown, unknown>) => {
        const startedAt = now();
        const id = log.claim(call.metadata);
        (call as TaggedCall)[requestIdKey] = { log, id };
        log.stream('opened', path, id);
        call.once('close', () => log.stream('ended', path, id, startedAt));
        const observed = observer === undefined ? undefined : observeStreamEnd(call, observer, () => (now() - startedAt) / 1000);
        try {
          original(call);
        } catch (error) {
          // grpc-js answers a stream handler that throws UNKNOWN.
          observed?.threw();
          throw error;
        }
      }) as grpc.UntypedHandleCall;
    }
  }
  return wrapped;
}

/** The parts of a grpc-js stream call `observeStreamEnd` uses. */
interface ObservedStream {
  end(...args: never[]): unknown;
  on(event: 'error', listener: (error: { code?: unknown } | null | undefined) => void): unknown;
  once(event: 'cancelled' | 'close', listener: (reason?: unknown) => void): unknown;
  getDeadline(): grpc.Deadline;
  /** grpc-js's call under the stream, and its HTTP/2 stream (private to grpc-js; see `observeStreamEnd`). */
  readonly call?: { readonly stream?: { readonly rstCode?: number } };
}

/**
 * Tells `observer` once that the stream `call` ended, with the code go-grpc-prometheus would count:
 * the status of the error the handler ended it with (`emit('error', status)`) or Unknown when it
 * threw (`threw()`); else DeadlineExceeded when its deadline ended it (stream-deadline.ts emits
 * 'cancelled' with reason 'deadline', a few milliseconds before the deadline) or had passed unended; else
 * Canceled when the client reset the stream or its connection went (a handler that sees its
 * client's side end ends its own, so its `end()` says nothing of why); else OK when the handler
 * ended it (`end()`); else Canceled. grpc-js emits 'cancelled' at the end of every stream, and
 * 'close' once both sides are done; whichever comes first settles it. Whether the client reset the
 * stream is read from its HTTP/2 stream's `rstCode`, which grpc-js 1.14's call holds as
 * `call.stream` (pinned; without it, a reset stream the handler ended counts as OK). A status
 * grpc-js sends by itself (a message over the size limit) is counted Canceled.
 */
export function observeStreamEnd(call: ObservedStream, observer: MethodObserver, seconds: () => number, nowMs: () => number = Date.now): { threw(): void } {
  observer.started();
  let errorCode: number | undefined;
  let ended = false;
  let settled = false;
  const end = call.end;
  call.end = function endObserved(this: ObservedStream, ...args: never[]): unknown {
    ended = true;
    return end.apply(this, args);
  };
  call.on('error', (error) => {
    errorCode ??= statusCodeOf(error);
  });
  const settle = (reason?: unknown): void => {
    if (settled) return;
    settled = true;
    const deadline = call.getDeadline();
    const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
    const overdue = reason === 'deadline' || (!ended && nowMs() >= deadlineMs);
    const reset = (call.call?.stream?.rstCode ?? 0) !== 0;
    const code = errorCode ?? (overdue ? grpcStatusDeadlineExceeded : reset ? grpcStatusCancelled : ended ? 0 : grpcStatusCancelled);
    observer.answered(code, seconds());
  };
  call.once('cancelled', settle);
  call.once('close', () => settle());
  return {
    threw: () => {
      errorCode ??= grpcStatusUnknown;
    },
  };
}
