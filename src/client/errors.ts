/**
 * The client's one error class. `DkvError.code` is a stable string from `dkvErrorCodes` (never
 * renamed, only added to); `grpcStatus` and `serverMessage` carry what the server sent, and
 * `serverCode` the server-side stable code of `src/errors.ts` when the message is one of its
 * table's (etcd's exact strings, or DKV's "dkv: …" extensions).
 */
import { type ErrorCode, errorCodeOfMessage } from '../errors.js';
import { grpcStatus, type RpcError } from './etcd-channel.js';

/** Every code a `DkvError` can carry. */
export const dkvErrorCodes = [
  /** No configured server could be reached (or none had a leader) before the deadline. */
  'UNAVAILABLE',
  /** A write that is not idempotent may or may not have been applied (connection lost after sending it, deadline). */
  'UNKNOWN_OUTCOME',
  /** The requested revision was compacted (`compactRevision` says up to where). */
  'COMPACTED',
  /** The requested revision is past the store's current one. */
  'FUTURE_REVISION',
  /** The key, member or other named thing does not exist. */
  'NOT_FOUND',
  /** What the call would create exists already (a store of that name). */
  'ALREADY_EXISTS',
  /** The lease does not exist (expired or revoked). */
  'LEASE_NOT_FOUND',
  /** The operation's deadline (`timeoutMs`) passed. */
  'TIMEOUT',
  /** The server does not offer this (a DKV extension on etcd). */
  'NOT_SUPPORTED',
  /** The request is malformed (the client's validation or the server's). */
  'INVALID_ARGUMENT',
  /** The authenticated user may not do this. */
  'PERMISSION_DENIED',
  /** Authentication failed or the token was refused. */
  'UNAUTHENTICATED',
  /** A guarded write's fencing token no longer holds. */
  'FENCE_STALE',
  /** The server refused the request in its current state. */
  'FAILED_PRECONDITION',
  /** A quota or limit of the server was hit (database space, too many requests). */
  'RESOURCE_EXHAUSTED',
  /** The operation's AbortSignal aborted. */
  'ABORTED',
  /** The client was closed. */
  'CLOSED',
  /** The server failed internally. */
  'INTERNAL',
  /** Election: the caller is not (or no longer) the leader. */
  'NOT_LEADER',
  /** Anything else (the gRPC status and message say more). */
  'UNKNOWN',
] as const;

/** A stable error code of the client. */
export type DkvErrorCode = (typeof dkvErrorCodes)[number];

/** What a `DkvError` carries besides its code and message. */
export interface DkvErrorDetails {
  /** The gRPC status of the failed call, when a call failed. */
  readonly grpcStatus?: number;
  /** The server's message (gRPC details) as sent. */
  readonly serverMessage?: string;
  /** For `COMPACTED`: the compact revision. */
  readonly compactRevision?: number;
  /** The error this one wraps. */
  readonly cause?: unknown;
}

/** Every error the client's operations reject with (programmer errors are TypeErrors). */
export class DkvError extends Error {
  override readonly name = 'DkvError';
  readonly grpcStatus: number | undefined;
  readonly serverMessage: string | undefined;
  /** The server-side stable code (`src/errors.ts`) of `serverMessage`, when it is one. */
  readonly serverCode: ErrorCode | undefined;
  readonly compactRevision: number | undefined;

  constructor(
    readonly code: DkvErrorCode,
    message: string,
    details: DkvErrorDetails = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.grpcStatus = details.grpcStatus;
    this.serverMessage = details.serverMessage;
    this.serverCode = details.serverMessage === undefined ? undefined : errorCodeOfMessage(details.serverMessage);
    this.compactRevision = details.compactRevision;
  }
}

/** True for a `DkvError`, of `code` when given. */
export function isDkvError(error: unknown, code?: DkvErrorCode): error is DkvError {
  return error instanceof DkvError && (code === undefined || error.code === code);
}

/** Server-side codes whose client code is more specific than the gRPC status says. */
const codeOfServerCode: Partial<Record<ErrorCode, DkvErrorCode>> = {
  compacted: 'COMPACTED',
  'watch-compacted': 'COMPACTED',
  'future-revision': 'FUTURE_REVISION',
  'lease-not-found': 'LEASE_NOT_FOUND',
  'fence-stale': 'FENCE_STALE',
  'permission-denied': 'PERMISSION_DENIED',
  'auth-failed': 'UNAUTHENTICATED',
  'invalid-auth-token': 'UNAUTHENTICATED',
  'election-not-leader': 'NOT_LEADER',
  'election-no-leader': 'NOT_FOUND',
  'key-not-found': 'NOT_FOUND',
  'member-not-found': 'NOT_FOUND',
  'no-space': 'RESOURCE_EXHAUSTED',
  // etcd's Lock and Election services send every etcd error with status UNKNOWN.
  'empty-key': 'INVALID_ARGUMENT',
};

const codeOfStatus: ReadonlyMap<number, DkvErrorCode> = new Map<number, DkvErrorCode>([
  [grpcStatus.UNAVAILABLE, 'UNAVAILABLE'],
  [grpcStatus.DEADLINE_EXCEEDED, 'TIMEOUT'],
  [grpcStatus.NOT_FOUND, 'NOT_FOUND'],
  [grpcStatus.ALREADY_EXISTS, 'ALREADY_EXISTS'],
  [grpcStatus.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
  [grpcStatus.PERMISSION_DENIED, 'PERMISSION_DENIED'],
  [grpcStatus.UNAUTHENTICATED, 'UNAUTHENTICATED'],
  [grpcStatus.FAILED_PRECONDITION, 'FAILED_PRECONDITION'],
  [grpcStatus.RESOURCE_EXHAUSTED, 'RESOURCE_EXHAUSTED'],
  [grpcStatus.OUT_OF_RANGE, 'INVALID_ARGUMENT'],
  [grpcStatus.UNIMPLEMENTED, 'NOT_SUPPORTED'],
  [grpcStatus.CANCELLED, 'ABORTED'],
  [grpcStatus.INTERNAL, 'INTERNAL'],
]);

/** The `DkvError` for a failed gRPC call, as the server reported it. */
export function fromRpcError(error: unknown, what: string): DkvError {
  if (error instanceof DkvError) return error;
  const rpc = error as RpcError;
  const status = typeof rpc?.code === 'number' ? rpc.code : undefined;
  const serverMessage = rpc?.details ?? (error instanceof Error ? error.message : String(error));
  const serverCode = errorCodeOfMessage(serverMessage);
  const code = (serverCode !== undefined ? codeOfServerCode[serverCode] : undefined) ?? (status !== undefined ? codeOfStatus.get(status) : undefined) ?? 'UNKNOWN';
  return new DkvError(code, `${what}: ${serverMessage}`, { grpcStatus: status, serverMessage, cause: error });
}

/** A client-side validation failure. */
export function invalidArgument(message: string): DkvError {
  return new DkvError('INVALID_ARGUMENT', message);
}
