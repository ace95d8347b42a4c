/**
 * Every error a client can see, in one table: a stable code (kebab-case), the gRPC status it is
 * sent with, and the message. Where etcd has the error, the message is etcd's exact string and the
 * status is etcd's, because clients match on them: Go's clientv3 maps the status message back to
 * its error values by exact string (rpctypes.Error), and the etcd3 npm client by substring. So the
 * message of an etcd error is sent as is, never decorated with details.
 *
 * Source of the etcd strings and statuses: etcd v3.5 `api/v3rpc/rpctypes/error.go` (errors sent as
 * gRPC statuses), `server/mvcc` (the `mvcc:` strings a watch carries in its cancel reason) and
 * `client/v3/concurrency` and `server/etcdserver/api/v3election` (election and mutex errors, which
 * etcd's v3lock and v3election servers return as plain Go errors, so they reach clients with status
 * UNKNOWN).
 *
 * DKV's own errors (extension: true) start with "dkv: " and may carry a detail after the message.
 *
 * Programmer errors (bad internal arguments, broken invariants) are not here: they are plain
 * TypeErrors or assertion failures, and reach a client only as the generic internal error.
 */
import type { status as GrpcStatus } from '@grpc/grpc-js';

/**
 * gRPC's status codes, numbered as the protocol (and grpc-js's `status` enum) numbers them. Written
 * out rather than imported: processes that never make a call read this table too (`dkv --help`,
 * through the client), and importing grpc-js would cost each of them tens of milliseconds.
 * test/errors.test.ts checks it against grpc-js's enum.
 */
export const grpcStatus = Object.freeze({
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const satisfies Record<keyof typeof GrpcStatus, GrpcStatus>);

/** A gRPC status code (grpc-js's enum type). */
type status = GrpcStatus;
const status = grpcStatus;

/** How the error reaches a client: as the call's gRPC status, or as a watch's cancel_reason. */
export type ErrorSurface = 'status' | 'watch-cancel';

export interface ErrorSpec {
  readonly grpcStatus: status;
  readonly message: string;
  /** True for DKV's own errors; false means `message` and `grpcStatus` are etcd's exactly. */
  readonly extension: boolean;
  readonly surface: ErrorSurface;
}

function etcd(grpcStatus: status, message: string, surface: ErrorSurface = 'status'): ErrorSpec {
  return { grpcStatus, message, extension: false, surface };
}

function dkv(grpcStatus: status, message: string): ErrorSpec {
  return { grpcStatus, message, extension: true, surface: 'status' };
}

/** The table. Keys are the stable codes; never rename one, only add. */
export const errorTable = {
  // --- KV requests
  'empty-key': etcd(status.INVALID_ARGUMENT, 'etcdserver: key is not provided'),
  'key-not-found': etcd(status.INVALID_ARGUMENT, 'etcdserver: key not found'),
  'value-provided': etcd(status.INVALID_ARGUMENT, 'etcdserver: value is provided'),
  'lease-provided': etcd(status.INVALID_ARGUMENT, 'etcdserver: lease is provided'),
  'too-many-ops': etcd(status.INVALID_ARGUMENT, 'etcdserver: too many operations in txn request'),
  'duplicate-key': etcd(status.INVALID_ARGUMENT, 'etcdserver: duplicate key given in txn request'),
  compacted: etcd(status.OUT_OF_RANGE, 'etcdserver: mvcc: required revision has been compacted'),
  'future-revision': etcd(status.OUT_OF_RANGE, 'etcdserver: mvcc: required revision is a future revision'),
  'no-space': etcd(status.RESOURCE_EXHAUSTED, 'etcdserver: mvcc: database space exceeded'),

  // --- Watch (sent in WatchResponse.cancel_reason, not as a status; the status is what a
  // unary wrapper would use)
  'watch-compacted': etcd(status.OUT_OF_RANGE, 'mvcc: required revision has been compacted', 'watch-cancel'),
  'watch-range-empty': etcd(status.INVALID_ARGUMENT, 'mvcc: watcher range is empty', 'watch-cancel'),
  'watch-duplicate-id': etcd(
    status.INVALID_ARGUMENT,
    'mvcc: duplicate watch ID provided on the WatchStream',
    'watch-cancel',
  ),

  // --- Leases
  'lease-not-found': etcd(status.NOT_FOUND, 'etcdserver: requested lease not found'),
  'lease-exists': etcd(status.FAILED_PRECONDITION, 'etcdserver: lease already exists'),
  'lease-ttl-too-large': etcd(status.OUT_OF_RANGE, 'etcdserver: too large lease TTL'),

  // --- Cluster membership
  'member-exists': etcd(status.FAILED_PRECONDITION, 'etcdserver: member ID already exist'),
  'peer-url-exists': etcd(status.FAILED_PRECONDITION, 'etcdserver: Peer URLs already exists'),
  'member-not-enough-started': etcd(
    status.FAILED_PRECONDITION,
    'etcdserver: re-configuration failed due to not enough started members',
  ),
  // etcd has no separate "bad member ID" error: an unknown or zero ID is member-not-found.
  'member-bad-urls': etcd(status.INVALID_ARGUMENT, 'etcdserver: given member URLs are invalid'),
  'member-not-found': etcd(status.NOT_FOUND, 'etcdserver: member not found'),
  'member-not-learner': etcd(status.FAILED_PRECONDITION, 'etcdserver: can only promote a learner member'),
  'learner-not-ready': etcd(
    status.FAILED_PRECONDITION,
    'etcdserver: can only promote a learner member which is in sync with leader',
  ),
  'too-many-learners': etcd(status.FAILED_PRECONDITION, 'etcdserver: too many learner members in cluster'),

  // --- Request limits
  'request-too-large': etcd(status.INVALID_ARGUMENT, 'etcdserver: request is too large'),
  'invalid-sort-option': etcd(status.INVALID_ARGUMENT, 'etcdserver: invalid sort option'),
  'too-many-requests': etcd(status.RESOURCE_EXHAUSTED, 'etcdserver: too many requests'),

  // --- Auth
  'root-user-not-exist': etcd(status.FAILED_PRECONDITION, 'etcdserver: root user does not exist'),
  'root-role-not-exist': etcd(status.FAILED_PRECONDITION, 'etcdserver: root user does not have root role'),
  'user-already-exists': etcd(status.FAILED_PRECONDITION, 'etcdserver: user name already exists'),
  'user-empty': etcd(status.INVALID_ARGUMENT, 'etcdserver: user name is empty'),
  'user-not-found': etcd(status.FAILED_PRECONDITION, 'etcdserver: user name not found'),
  'role-already-exists': etcd(status.FAILED_PRECONDITION, 'etcdserver: role name already exists'),
  'role-not-found': etcd(status.FAILED_PRECONDITION, 'etcdserver: role name not found'),
  'role-empty': etcd(status.INVALID_ARGUMENT, 'etcdserver: role name is empty'),
  'auth-failed': etcd(status.INVALID_ARGUMENT, 'etcdserver: authentication failed, invalid user ID or password'),
  'permission-denied': etcd(status.PERMISSION_DENIED, 'etcdserver: permission denied'),
  'role-not-granted': etcd(status.FAILED_PRECONDITION, 'etcdserver: role is not granted to the user'),
  'permission-not-granted': etcd(status.FAILED_PRECONDITION, 'etcdserver: permission is not granted to the role'),
  'auth-not-enabled': etcd(status.FAILED_PRECONDITION, 'etcdserver: authentication is not enabled'),
  'invalid-auth-token': etcd(status.UNAUTHENTICATED, 'etcdserver: invalid auth token'),
  'invalid-auth-mgmt': etcd(status.INVALID_ARGUMENT, 'etcdserver: invalid auth management'),
  'permission-not-given': etcd(status.INVALID_ARGUMENT, 'etcdserver: permission not given'),
  'auth-old-revision': etcd(status.INVALID_ARGUMENT, 'etcdserver: revision of auth store is old'),

  // --- Leadership, availability, health
  'no-leader': etcd(status.UNAVAILABLE, 'etcdserver: no leader'),
  'not-leader': etcd(status.FAILED_PRECONDITION, 'etcdserver: not leader'),
  'leader-changed': etcd(status.UNAVAILABLE, 'etcdserver: leader changed'),
  'not-capable': etcd(status.UNAVAILABLE, 'etcdserver: not capable'),
  stopped: etcd(status.UNAVAILABLE, 'etcdserver: server stopped'),
  timeout: etcd(status.UNAVAILABLE, 'etcdserver: request timed out'),
  'timeout-due-to-leader-fail': etcd(
    status.UNAVAILABLE,
    'etcdserver: request timed out, possibly due to previous leader failure',
  ),
  'timeout-due-to-connection-lost': etcd(
    status.UNAVAILABLE,
    'etcdserver: request timed out, possibly due to connection lost',
  ),
  unhealthy: etcd(status.UNAVAILABLE, 'etcdserver: unhealthy cluster'),
  corrupt: etcd(status.DATA_LOSS, 'etcdserver: corrupt cluster'),
  'not-supported-for-learner': etcd(status.UNAVAILABLE, 'etcdserver: rpc not supported for learner'),
  'bad-leader-transferee': etcd(status.FAILED_PRECONDITION, 'etcdserver: bad leader transferee'),

  canceled: etcd(status.CANCELLED, 'etcdserver: request canceled'),

  // --- Lock and Election services (plain errors in etcd, hence UNKNOWN on the wire)
  'election-not-leader': etcd(status.UNKNOWN, 'election: not leader'),
  'election-no-leader': etcd(status.UNKNOWN, 'election: no leader'),
  // v3election's ErrMissingLeaderKey (Proclaim and Resign without `leader`).
  'missing-leader-key': etcd(status.UNKNOWN, '"leader" field must be provided'),
  // concurrency.ErrSessionExpired of etcd 3.5's Mutex: the waiter's own key was gone once its turn came.
  'mutex-session-expired': etcd(status.UNKNOWN, 'mutex: session is expired'),

  // --- DKV extensions
  'invalid-argument': dkv(status.INVALID_ARGUMENT, 'dkv: invalid argument'),
  // etcd takes an empty lock or election name (its keys are then "/<lease>"); DKV refuses it.
  'empty-name': dkv(status.INVALID_ARGUMENT, 'dkv: lock or election name is not provided'),
  'name-too-large': dkv(status.INVALID_ARGUMENT, 'dkv: lock or election name is too large'),
  'cross-shard-txn': dkv(status.FAILED_PRECONDITION, 'dkv: txn keys span more than one shard'),
  'cross-shard-range': dkv(status.FAILED_PRECONDITION, 'dkv: the range spans more than one shard'),
  'cross-shard-revision': dkv(status.FAILED_PRECONDITION, 'dkv: a range across shards is served at the current revision only'),
  'watch-other-store': dkv(status.FAILED_PRECONDITION, 'dkv: the watched keys are not served by this shard any more (a store took or gave back their prefix), watch them again'),
  'watch-shard-split': dkv(status.FAILED_PRECONDITION, 'dkv: the watched keys moved to a new shard (a split), watch them again from the next revision'),
  'watch-cross-shard': dkv(status.FAILED_PRECONDITION, "dkv: an etcd watch across shards is not served (watch the prefix with dkv.v1.Watch/WatchPrefix, or each shard's part of the range)"),
  'store-lease-unsupported': dkv(status.FAILED_PRECONDITION, "dkv: a lease attaches only keys of the shard that granted it, and LeaseGrant grants in the default store (give a store's keys per-key TTLs)"),
  'watch-resume-mismatch': dkv(status.FAILED_PRECONDITION, 'dkv: the resume token does not name the shards of the prefix'),
  'auth-stores-exist': dkv(status.FAILED_PRECONDITION, 'dkv: authentication cannot be enabled while stores exist (drop them first)'),
  'store-auth-unsupported': dkv(status.FAILED_PRECONDITION, 'dkv: only the default store is served while authentication is enabled'),
  'wrong-shard': dkv(status.UNAVAILABLE, 'dkv: this node does not serve the shard that owns the key'),
  // A stream (Watch, Observe), a waiting call (Lock, Campaign) or a multi-shard Range whose shard the
  // map places on other members only: this member forwards unary calls, not these. Send it to a replica.
  'shard-not-hosted': dkv(status.UNAVAILABLE, 'dkv: this member hosts no replica of the shard that owns the key; send the call to a member that does (dkv shard list names them)'),
  // Maintenance.Snapshot on a member that hosts no replica of a placed store's shard (a backup holds every shard's data).
  'snapshot-shard-elsewhere': dkv(status.FAILED_PRECONDITION, 'dkv: a snapshot needs a member that hosts every shard, and this one hosts no replica of a placed store\'s shard (save it from a member that hosts them all, or create the store on every member)'),
  // A call forwarded to a replica of its shard whose answer is larger than a peer answer may be
  // (it ran there: a write was applied).
  'forwarded-response-too-large': dkv(status.RESOURCE_EXHAUSTED, 'dkv: the call ran on the shard\'s replica, but its answer is too large to forward; send the call to a member that hosts the shard, or ask for less (limit)'),
  'store-not-found': dkv(status.NOT_FOUND, 'dkv: store not found'),
  'store-exists': dkv(status.ALREADY_EXISTS, 'dkv: store already exists'),
  // dkv.v1.Admin's ShardStatus of an id the answering node neither knows from its map nor hosts.
  'shard-not-found': dkv(status.NOT_FOUND, 'dkv: shard not found'),
  // The shard map's refusals of a store change (dkv.v1.Admin), each with the map's message as
  // its detail; src/error-mapping.ts maps the map's codes to these.
  'store-bad-name': dkv(status.INVALID_ARGUMENT, 'dkv: invalid store name'),
  'store-bad-prefix': dkv(status.INVALID_ARGUMENT, 'dkv: invalid store prefix'),
  'store-bad-shard-count': dkv(status.INVALID_ARGUMENT, 'dkv: invalid shard count'),
  // StoreCreate's replicas: more than replicasMax (7), or more than the cluster's voting members.
  'store-bad-replicas': dkv(status.INVALID_ARGUMENT, 'dkv: invalid replica count'),
  'store-default': dkv(status.INVALID_ARGUMENT, 'dkv: operation not allowed on the default store'),
  'store-prefix-overlap': dkv(status.FAILED_PRECONDITION, "dkv: store prefix overlaps another store's"),
  'too-many-stores': dkv(status.RESOURCE_EXHAUSTED, 'dkv: too many stores'),
  // A mount would hide the default store's keys under its prefix (the detail counts them).
  'store-prefix-in-use': dkv(status.FAILED_PRECONDITION, 'dkv: the default store holds keys under the prefix'),
  // A store change is a meta command of version 2: proposed only once every member applies it.
  // FAILED_PRECONDITION, not etcd's retryable `not capable`: it holds until every member is upgraded.
  'stores-unsupported': dkv(status.FAILED_PRECONDITION, "dkv: a member's build does not support stores yet (upgrade every member)"),
  'index-not-found': dkv(status.NOT_FOUND, 'dkv: index not found'),
  'counter-overflow': dkv(status.OUT_OF_RANGE, 'dkv: counter would leave the int64 range'),
  'counter-not-a-number': dkv(status.FAILED_PRECONDITION, 'dkv: value is not a 64-bit integer'),
  // UNIMPLEMENTED, not UNAVAILABLE: retrying cannot help until the server's build has a TTL engine.
  'counter-ttl-unavailable': dkv(status.UNIMPLEMENTED, 'dkv: counter TTLs need the TTL engine'),
  'too-many-watchers': dkv(status.RESOURCE_EXHAUSTED, 'dkv: too many watchers on this stream'),
  'shard-splitting': dkv(status.UNAVAILABLE, 'dkv: shard is splitting, retry'),
  // dkv.v1.Admin's ShardSplit: the key is not strictly inside the shard (or the shard has too
  // few keys to choose one), the shard changed since the caller's map (its epoch), too many shards.
  'shard-bad-split-key': dkv(status.INVALID_ARGUMENT, 'dkv: invalid split key'),
  'shard-stale-epoch': dkv(status.FAILED_PRECONDITION, 'dkv: the shard changed meanwhile (a split or a move), read the map again'),
  'too-many-shards': dkv(status.RESOURCE_EXHAUSTED, 'dkv: too many shards'),
  // A ShardSplit of a shard whose split is not finished yet (ShardSplit it again at the same key to finish that one).
  'shard-split-in-progress': dkv(status.FAILED_PRECONDITION, 'dkv: the shard has a split in progress'),
  // The shard's own log refused a split the map had recorded (a lease granted meanwhile): the split was undone, nothing changed.
  'shard-split-undone': dkv(status.FAILED_PRECONDITION, 'dkv: the shard refused the split, which was undone'),
  // ShardSplit of a shard holding leases (a Lock's or Campaign's session lease): a lease's keys would span two shards.
  // dkv.v1.Admin's ShardMove: the shard is not placed (every member hosts it), the member moved
  // from holds no replica of it, or the member moved to holds one already.
  'shard-bad-move': dkv(status.INVALID_ARGUMENT, 'dkv: invalid replica move'),
  'shard-holds-leases': dkv(status.FAILED_PRECONDITION, 'dkv: the shard holds leases, which a split would cut in two'),
  'membership-change-pending': dkv(status.FAILED_PRECONDITION, 'dkv: a membership change is still in progress, retry once it is applied'),
  'invalid-membership-change': dkv(status.INVALID_ARGUMENT, 'dkv: the membership change does not fit the current configuration'),
  'not-member': dkv(status.FAILED_PRECONDITION, 'dkv: this node is no longer a member of the shard'),
  // MemberRemove of a member holding one of a placed shard's one or two replicas: the shard's data
  // would go with it (one), or its group could not commit the removal without it (two).
  'member-replica-quorum': dkv(status.FAILED_PRECONDITION, 'dkv: removing the member would leave a shard without a quorum of its replicas'),
  // A dkv.v1.KV write's fence (a lock key and its create revision) no longer holds.
  'fence-stale': dkv(status.FAILED_PRECONDITION, 'dkv: fencing token is stale (the lock key has another owner or is gone)'),
  // UserAdd's hashed_password must be a hash this server can check (scrypt, as it stores them).
  'password-hash-unsupported': dkv(status.INVALID_ARGUMENT, 'dkv: hashed password is not an scrypt hash this server can check'),
  'auth-rate-limited': dkv(status.RESOURCE_EXHAUSTED, 'dkv: too many authentication attempts, retry later'),
  'auth-name-too-large': dkv(status.INVALID_ARGUMENT, 'dkv: user or role name is too large'),
  'password-too-large': dkv(status.INVALID_ARGUMENT, 'dkv: password is too large'),
  internal: dkv(status.INTERNAL, 'dkv: internal error'),
  // A frame of a client stream (Watch, LeaseKeepAlive) that is not a valid request message; the
  // stream ends with it. INTERNAL, as gRPC itself refuses a unary request that does not decode.
  'malformed-request': dkv(status.INTERNAL, 'dkv: request message does not decode'),
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof errorTable;

export const errorCodes: readonly ErrorCode[] = Object.keys(errorTable) as ErrorCode[];

export function isErrorCode(value: string): value is ErrorCode {
  return Object.hasOwn(errorTable, value);
}

/** An error meant for a client. */
export class DkvError extends Error {
  override readonly name = 'DkvError';
  readonly code: ErrorCode;
  readonly grpcStatus: status;
  /** Extra context for logs; sent to clients only for DKV extensions (etcd strings stay exact). */
  readonly detail: string | undefined;

  constructor(code: ErrorCode, detail?: string) {
    const spec: ErrorSpec = errorTable[code];
    super(spec.message);
    this.code = code;
    this.grpcStatus = spec.grpcStatus;
    this.detail = detail;
  }

  /** The message a client receives. */
  get wireMessage(): string {
    const spec: ErrorSpec = errorTable[this.code];
    return spec.extension && this.detail !== undefined && this.detail !== ''
      ? `${spec.message}: ${this.detail}`
      : spec.message;
  }
}

export function dkvError(code: ErrorCode, detail?: string): DkvError {
  return new DkvError(code, detail);
}

export function isDkvError(error: unknown, code?: ErrorCode): error is DkvError {
  return error instanceof DkvError && (code === undefined || error.code === code);
}

/** The shape a grpc-js unary callback or `call.emit('error', …)` takes. */
export interface GrpcErrorObject {
  code: status;
  details: string;
}

/**
 * Turns anything thrown while serving a call into a status for the client. Unknown errors become
 * the generic internal error: their text and stack may hold paths or data and stay in the log.
 */
export function toGrpcError(error: unknown): GrpcErrorObject {
  if (error instanceof DkvError) return { code: error.grpcStatus, details: error.wireMessage };
  return { code: errorTable.internal.grpcStatus, details: errorTable.internal.message };
}

/**
 * How etcd's Lock and Election services send an error. Their servers run etcd's concurrency recipes
 * through a client inside the server, and what that client returns is a plain Go error: every etcd
 * error reaches the caller with status UNKNOWN and its message unchanged (`etcdserver: key is not
 * provided`, `etcdserver: requested lease not found`, …). DKV's own errors keep their status.
 */
export function toGrpcErrorOfRecipe(error: unknown): GrpcErrorObject {
  const sent = toGrpcError(error);
  return error instanceof DkvError && !errorTable[error.code].extension ? { code: status.UNKNOWN, details: sent.details } : sent;
}

const codeByMessage: ReadonlyMap<string, ErrorCode> = new Map(
  errorCodes.filter((code) => errorTable[code].surface === 'status').map((code) => [errorTable[code].message, code]),
);

/**
 * The reverse of toGrpcError, for errors that come back from another node (forwarded proposals)
 * or from a server in the client: the code of a known message, or undefined. DKV extensions match
 * with or without a detail.
 */
export function errorCodeOfMessage(message: string): ErrorCode | undefined {
  const exact = codeByMessage.get(message);
  if (exact !== undefined) return exact;
  const separator = message.indexOf(': ', 'dkv: '.length);
  if (!message.startsWith('dkv: ') || separator < 0) return undefined;
  const code = codeByMessage.get(message.slice(0, separator));
  return code !== undefined && errorTable[code].extension ? code : undefined;
}

/**
 * The error a status another member answered stands for (a part of a Range read there): its
 * code when the message is a known one (an extension's detail kept), else the internal error.
 */
export function errorOfStatus(status: GrpcErrorObject): DkvError {
  const code = errorCodeOfMessage(status.details);
  if (code === undefined) return dkvError('internal');
  const base = errorTable[code].message;
  return dkvError(code, status.details.length > base.length + 2 && status.details.startsWith(`${base}: `) ? status.details.slice(base.length + 2) : undefined);
}
