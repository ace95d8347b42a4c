/**
 * Why the runtime could not carry a request out. The server maps these codes to client errors in
 * one place (src/error-mapping.ts); the simulator's clients classify them the same way.
 *
 * Whether the request may still take effect matters to a client (a retry could apply it twice):
 * - definitely not applied: `no-leader`, `leader-transfer`, `too-many-requests`,
 *   `unsupported-command`, `wrong-shard`, `shard-elsewhere`, `cross-shard`, `cross-shard-range`, `conf-change-pending`,
 *   `invalid-conf-change`, `not-member`, `lost` (its place in the log was taken by another entry,
 *   so it can never be applied: this relies on the peer transport never delivering a forwarded
 *   proposal twice, which a stream that does not resend guarantees);
 * - unknown: `timeout`, `leader-failed` (timed out after a leader change), `stopped` (the node
 *   stopped while the request was pending).
 */
export type RuntimeErrorCode =
  | 'no-leader'
  | 'leader-transfer'
  | 'leader-changed'
  | 'too-many-requests'
  | 'unsupported-command'
  | 'wrong-shard'
  | 'shard-elsewhere'
  | 'cross-shard'
  | 'cross-shard-range'
  | 'lost'
  | 'conf-change-pending'
  | 'invalid-conf-change'
  | 'not-member'
  | 'timeout'
  | 'leader-failed'
  | 'stopped';

export class RuntimeError extends Error {
  override readonly name = 'RuntimeError';
  constructor(
    readonly code: RuntimeErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A request routed to a shard the map places on other members only (`replicas`, never this one):
 * nothing was done; the server forwards the call to one of them, or refuses it (a stream).
 */
export class ShardElsewhereError extends RuntimeError {
  constructor(
    readonly shardId: number,
    readonly replicas: readonly number[],
    /** The shard's epoch in the map that placed it so (undefined: not known). */
    readonly epoch?: number,
  ) {
    super('shard-elsewhere', `shard ${shardId}${epoch === undefined ? '' : ` (epoch ${epoch})`} is hosted on member${replicas.length === 1 ? '' : 's'} ${replicas.map((id) => id.toString(16)).join(', ')}, not on this node`);
  }
}

/** Codes after which the request may still have been applied. */
export const indeterminateCodes: ReadonlySet<RuntimeErrorCode> = new Set(['timeout', 'leader-failed', 'stopped']);
