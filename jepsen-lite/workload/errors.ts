/**
 * Which errors prove an operation did not happen. A history is only as good as this table: an
 * error called `fail` that in fact took effect makes the checker report a violation that is not
 * there; an error called `info` that did not take effect only makes the search slower. So `fail`
 * is kept to errors raised before the request could reach the Raft log, on DKV and on etcd alike,
 * and everything else — timeouts, lost connections, unknown errors — is `info`.
 */
import { grpcStatus } from '../../src/errors.js';
import { isReadOnly } from './etcd.js';
import type { KvInput, RegisterInput } from '../history.js';

/** gRPC status codes (fixed by the gRPC spec): the table src/errors.ts writes out. */
export const grpcCode = grpcStatus;

const grpcCodeName: ReadonlyMap<number, string> = new Map(Object.entries(grpcCode).map(([name, code]) => [code, name]));

/**
 * Codes a server only sends when it refused the request outright: validation at the edge
 * (etcd's and DKV's key, size, txn and lease checks), auth, an unknown method. A write whose
 * apply refuses it deterministically (a duplicate key in a txn) also comes back as
 * INVALID_ARGUMENT, and it changed nothing either.
 */
const definiteCodes: ReadonlySet<number> = new Set([
  grpcCode.INVALID_ARGUMENT,
  grpcCode.NOT_FOUND,
  grpcCode.PERMISSION_DENIED,
  grpcCode.UNAUTHENTICATED,
  grpcCode.UNIMPLEMENTED,
]);

/**
 * Messages that mean "refused before proposing", whatever their code:
 * - "too many requests": etcd refuses when applied lags committed too far, DKV when its proposal
 *   queue is full — both before proposing;
 * - "database space exceeded": etcd's quota check, before proposing;
 * - "no leader": etcd's require-leader interceptor, DKV's proposal dropped by a node that knows
 *   no leader (Raft never appends it);
 * - "leader changed": DKV's proposal dropped during a leader transfer; etcd sends it only for
 *   reads and lease renewals, never after proposing a KV write;
 * - "raft proposal dropped": etcd's raft refused the proposal locally (no leader known, or a
 *   leader transfer), so it never entered a log;
 * - "not capable": etcd refuses a request its cluster version does not allow yet, DKV a command
 *   version some member's build cannot apply — both before proposing;
 * - DKV's cross-shard txn refusal, checked at the edge, and its wrong-shard refusal (this node
 *   does not host the shard: nothing was proposed);
 * - "rpc not supported for learner": etcd's and DKV's learner refuses the call at the edge;
 * - grpc-js's "No connection established" (UNAVAILABLE): the call never had a connection, so
 *   the request was never sent (a connection lost mid-call says something else and stays `info`).
 * A timeout (any of etcd's "request timed out" forms), "server stopped" and connection errors
 * stay `info`: the proposal may be in the log.
 */
export const definiteMessages: readonly string[] = [
  'etcdserver: too many requests',
  'etcdserver: mvcc: database space exceeded',
  'etcdserver: no leader',
  'etcdserver: leader changed',
  'raft proposal dropped',
  'etcdserver: not capable',
  'dkv: a membership change is still in progress',
  'dkv: this node is no longer a member of the shard',
  'dkv: txn keys span more than one shard',
  'dkv: this node does not serve the shard that owns the key',
  'etcdserver: rpc not supported for learner',
  'No connection established',
];

/** An etcd error as a client sees it: what sim mode throws where real mode gets a gRPC status. */
export class EtcdCallError extends Error {
  override readonly name = 'EtcdCallError';

  constructor(
    readonly code: number,
    readonly details: string,
  ) {
    super(`${code} ${grpcCodeName.get(code) ?? 'UNKNOWN'}: ${details}`);
  }
}

/** The gRPC code and message of anything thrown: a grpc-js ServiceError, an EtcdCallError, a DkvError. */
export function errorParts(error: unknown): { code: number | undefined; message: string } {
  if (typeof error !== 'object' || error === null) return { code: undefined, message: String(error) };
  const e = error as { code?: unknown; grpcStatus?: unknown; details?: unknown; message?: unknown };
  const code = typeof e.code === 'number' ? e.code : typeof e.grpcStatus === 'number' ? e.grpcStatus : undefined;
  const details = typeof e.details === 'string' && e.details !== '' ? e.details : undefined;
  const message = details ?? (typeof e.message === 'string' ? e.message : String(error));
  return { code, message };
}

/** A short text for the history's `error` field. */
export function describeError(error: unknown): string {
  const { code, message } = errorParts(error);
  if (code === undefined) return message;
  const name = grpcCodeName.get(code) ?? String(code);
  return message.startsWith(`${code} ${name}`) ? message : `${name}: ${message}`;
}

/**
 * `fail` if the operation certainly did not take effect, `info` if it may have. Give the input
 * when known: an error of an operation that cannot write (a read, a txn of gets) is always `fail`.
 */
export function classifyError(error: unknown, input?: RegisterInput | KvInput): 'fail' | 'info' {
  if (input !== undefined && isReadOnly(input)) return 'fail';
  const { code, message } = errorParts(error);
  if (code !== undefined && definiteCodes.has(code)) return 'fail';
  if (code !== undefined && definiteMessages.some((m) => message.includes(m))) return 'fail';
  return 'info';
}
