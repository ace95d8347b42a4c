/**
 * The one mapping from what engines, the store and the runtime throw to the errors clients see
 * (src/errors.ts). The server sends the result as a gRPC status; the simulator's clients receive
 * the same code and message, so both modes classify failures alike.
 */
import { MvccError, type MvccErrorCode } from '../storage/index.js';
import { ShardMapError, type ShardMapErrorCode } from './cluster/model.js';
import { EngineError, type EngineErrorCode } from './engines/index.js';
import { WireValueError } from './engines/kv/convert.js';
import { type ErrorCode, DkvError, dkvError } from './errors.js';
import { RuntimeError, type RuntimeErrorCode, ShardElsewhereError } from './runtime/index.js';

const MVCC_CODES: Record<MvccErrorCode, ErrorCode> = {
  'future-revision': 'future-revision',
  compacted: 'compacted',
  'key-not-found': 'key-not-found',
  'too-many-operations': 'too-many-ops',
  'duplicate-key': 'duplicate-key',
  'empty-key': 'empty-key',
  'value-provided': 'value-provided',
  'lease-provided': 'lease-provided',
  'lease-not-found': 'lease-not-found',
};

const ENGINE_CODES: Record<EngineErrorCode, ErrorCode> = {
  'lease-not-found': 'lease-not-found',
  'lease-exists': 'lease-exists',
  'lease-ttl-too-large': 'lease-ttl-too-large',
  'fence-stale': 'fence-stale',
  'counter-not-a-number': 'counter-not-a-number',
  'counter-overflow': 'counter-overflow',
  'no-space': 'no-space',
  // The shard's ownership changed under a request a lagging map routed: route it again.
  'not-owned': 'wrong-shard',
  'auth-stores-exist': 'auth-stores-exist',
  'root-user-not-exist': 'root-user-not-exist',
  'root-role-not-exist': 'root-role-not-exist',
  'user-already-exists': 'user-already-exists',
  'user-empty': 'user-empty',
  'user-not-found': 'user-not-found',
  'role-already-exists': 'role-already-exists',
  'role-not-found': 'role-not-found',
  'role-empty': 'role-empty',
  'auth-failed': 'auth-failed',
  'permission-denied': 'permission-denied',
  'role-not-granted': 'role-not-granted',
  'permission-not-granted': 'permission-not-granted',
  'auth-not-enabled': 'auth-not-enabled',
  'invalid-auth-mgmt': 'invalid-auth-mgmt',
  'auth-old-revision': 'auth-old-revision',
};

const RUNTIME_CODES: Record<RuntimeErrorCode, ErrorCode> = {
  'no-leader': 'no-leader',
  'leader-transfer': 'leader-changed',
  'leader-changed': 'leader-changed',
  // Its place in the log went to another entry: it was not applied, as after a leader change.
  lost: 'leader-changed',
  'too-many-requests': 'too-many-requests',
  'unsupported-command': 'not-capable',
  'conf-change-pending': 'membership-change-pending',
  'invalid-conf-change': 'invalid-membership-change',
  'not-member': 'not-member',
  'wrong-shard': 'wrong-shard',
  'shard-elsewhere': 'shard-not-hosted',
  'cross-shard': 'cross-shard-txn',
  'cross-shard-range': 'cross-shard-range',
  timeout: 'timeout',
  'leader-failed': 'timeout-due-to-leader-fail',
  stopped: 'stopped',
};

/**
 * The shard map's refusals of a store change (src/cluster/shard-map.ts; the meta engine's outcome
 * carries them, and dkv.v1.Admin checks a change against the map before proposing it), plus the
 * meta engine's `bad-command`. A mount or drop meets the store codes, a ShardSplit the shard codes;
 * the rest come from replica moves and decoding, which no client request makes yet: were one to
 * reach a client it would be a server bug, sent as the internal error with the map's message.
 */
const SHARD_MAP_CODES: Record<ShardMapErrorCode | 'bad-command', ErrorCode> = {
  'bad-store-name': 'store-bad-name',
  'bad-prefix': 'store-bad-prefix',
  'prefix-overlap': 'store-prefix-overlap',
  'store-exists': 'store-exists',
  'unknown-store': 'store-not-found',
  'default-store': 'store-default',
  'too-many-stores': 'too-many-stores',
  'bad-shard-count': 'store-bad-shard-count',
  // A mount asking more replicas than the cluster has voters (or none voting).
  'bad-replicas': 'store-bad-replicas',
  'bad-shard-id': 'internal',
  'shard-exists': 'internal',
  'unknown-shard': 'shard-not-found',
  'too-many-shards': 'too-many-shards',
  'empty-shard': 'shard-bad-split-key',
  'bad-split-key': 'shard-bad-split-key',
  'bad-epoch': 'shard-stale-epoch',
  'split-in-progress': 'shard-split-in-progress',
  'bad-move': 'shard-bad-move',
  'unknown-member': 'member-not-found',
  'bad-tiling': 'internal',
  'bad-encoding': 'internal',
  // A store change's payload the meta engine could not read: the server built it, so a bug.
  'bad-command': 'internal',
};

/** A store change the shard map (or the meta engine) refused with `code`, as its client sees it; `message` is the detail. */
export function storeRefusal(code: ShardMapErrorCode | 'bad-command' | undefined, message: string): DkvError {
  return dkvError(code === undefined ? 'internal' : SHARD_MAP_CODES[code], message);
}

/** The client-facing form of anything a request can fail with (unknown errors pass through). */
export function clientError(error: unknown): unknown {
  if (error instanceof DkvError) return error;
  if (error instanceof MvccError) return dkvError(MVCC_CODES[error.code]);
  // Which members the map places the shard on, at which epoch: the route to take instead.
  if (error instanceof ShardElsewhereError) return dkvError('shard-not-hosted', error.message);
  if (error instanceof RuntimeError) return dkvError(RUNTIME_CODES[error.code]);
  if (error instanceof EngineError) return dkvError(ENGINE_CODES[error.code], error.detail);
  if (error instanceof ShardMapError) return storeRefusal(error.code, error.message);
  if (error instanceof WireValueError) return error.code === 'invalid-sort-option' ? dkvError('invalid-sort-option') : dkvError('invalid-argument', error.message);
  return error;
}
