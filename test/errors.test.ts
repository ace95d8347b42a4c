/** The client-visible error table: complete, consistent, and equal to etcd where etcd has the error. */
import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import {
  DkvError,
  type ErrorCode,
  dkvError,
  errorCodeOfMessage,
  errorCodes,
  errorTable,
  grpcStatus,
  isDkvError,
  toGrpcError,
  toGrpcErrorOfRecipe,
} from '../src/errors.js';

/**
 * etcd v3.5's errors as (message, status), transcribed from api/v3rpc/rpctypes/error.go and the
 * mvcc/election packages. Kept apart from the table so that a change to either shows up here.
 */
const etcdErrors: ReadonlyArray<readonly [ErrorCode, status, string]> = [
  ['empty-key', status.INVALID_ARGUMENT, 'etcdserver: key is not provided'],
  ['key-not-found', status.INVALID_ARGUMENT, 'etcdserver: key not found'],
  ['value-provided', status.INVALID_ARGUMENT, 'etcdserver: value is provided'],
  ['lease-provided', status.INVALID_ARGUMENT, 'etcdserver: lease is provided'],
  ['too-many-ops', status.INVALID_ARGUMENT, 'etcdserver: too many operations in txn request'],
  ['duplicate-key', status.INVALID_ARGUMENT, 'etcdserver: duplicate key given in txn request'],
  ['compacted', status.OUT_OF_RANGE, 'etcdserver: mvcc: required revision has been compacted'],
  ['future-revision', status.OUT_OF_RANGE, 'etcdserver: mvcc: required revision is a future revision'],
  ['no-space', status.RESOURCE_EXHAUSTED, 'etcdserver: mvcc: database space exceeded'],
  ['watch-compacted', status.OUT_OF_RANGE, 'mvcc: required revision has been compacted'],
  ['watch-range-empty', status.INVALID_ARGUMENT, 'mvcc: watcher range is empty'],
  ['watch-duplicate-id', status.INVALID_ARGUMENT, 'mvcc: duplicate watch ID provided on the WatchStream'],
  ['lease-not-found', status.NOT_FOUND, 'etcdserver: requested lease not found'],
  ['lease-exists', status.FAILED_PRECONDITION, 'etcdserver: lease already exists'],
  ['lease-ttl-too-large', status.OUT_OF_RANGE, 'etcdserver: too large lease TTL'],
  ['member-exists', status.FAILED_PRECONDITION, 'etcdserver: member ID already exist'],
  ['peer-url-exists', status.FAILED_PRECONDITION, 'etcdserver: Peer URLs already exists'],
  [
    'member-not-enough-started',
    status.FAILED_PRECONDITION,
    'etcdserver: re-configuration failed due to not enough started members',
  ],
  ['member-bad-urls', status.INVALID_ARGUMENT, 'etcdserver: given member URLs are invalid'],
  ['member-not-found', status.NOT_FOUND, 'etcdserver: member not found'],
  ['member-not-learner', status.FAILED_PRECONDITION, 'etcdserver: can only promote a learner member'],
  [
    'learner-not-ready',
    status.FAILED_PRECONDITION,
    'etcdserver: can only promote a learner member which is in sync with leader',
  ],
  ['too-many-learners', status.FAILED_PRECONDITION, 'etcdserver: too many learner members in cluster'],
  ['request-too-large', status.INVALID_ARGUMENT, 'etcdserver: request is too large'],
  ['invalid-sort-option', status.INVALID_ARGUMENT, 'etcdserver: invalid sort option'],
  ['too-many-requests', status.RESOURCE_EXHAUSTED, 'etcdserver: too many requests'],
  ['root-user-not-exist', status.FAILED_PRECONDITION, 'etcdserver: root user does not exist'],
  ['root-role-not-exist', status.FAILED_PRECONDITION, 'etcdserver: root user does not have root role'],
  ['user-already-exists', status.FAILED_PRECONDITION, 'etcdserver: user name already exists'],
  ['user-empty', status.INVALID_ARGUMENT, 'etcdserver: user name is empty'],
  ['user-not-found', status.FAILED_PRECONDITION, 'etcdserver: user name not found'],
  ['role-already-exists', status.FAILED_PRECONDITION, 'etcdserver: role name already exists'],
  ['role-not-found', status.FAILED_PRECONDITION, 'etcdserver: role name not found'],
  ['role-empty', status.INVALID_ARGUMENT, 'etcdserver: role name is empty'],
  ['auth-failed', status.INVALID_ARGUMENT, 'etcdserver: authentication failed, invalid user ID or password'],
  ['permission-denied', status.PERMISSION_DENIED, 'etcdserver: permission denied'],
  ['role-not-granted', status.FAILED_PRECONDITION, 'etcdserver: role is not granted to the user'],
  ['permission-not-granted', status.FAILED_PRECONDITION, 'etcdserver: permission is not granted to the role'],
  ['auth-not-enabled', status.FAILED_PRECONDITION, 'etcdserver: authentication is not enabled'],
  ['invalid-auth-token', status.UNAUTHENTICATED, 'etcdserver: invalid auth token'],
  ['invalid-auth-mgmt', status.INVALID_ARGUMENT, 'etcdserver: invalid auth management'],
  ['permission-not-given', status.INVALID_ARGUMENT, 'etcdserver: permission not given'],
  ['auth-old-revision', status.INVALID_ARGUMENT, 'etcdserver: revision of auth store is old'],
  ['no-leader', status.UNAVAILABLE, 'etcdserver: no leader'],
  ['not-leader', status.FAILED_PRECONDITION, 'etcdserver: not leader'],
  ['leader-changed', status.UNAVAILABLE, 'etcdserver: leader changed'],
  ['not-capable', status.UNAVAILABLE, 'etcdserver: not capable'],
  ['stopped', status.UNAVAILABLE, 'etcdserver: server stopped'],
  ['timeout', status.UNAVAILABLE, 'etcdserver: request timed out'],
  [
    'timeout-due-to-leader-fail',
    status.UNAVAILABLE,
    'etcdserver: request timed out, possibly due to previous leader failure',
  ],
  [
    'timeout-due-to-connection-lost',
    status.UNAVAILABLE,
    'etcdserver: request timed out, possibly due to connection lost',
  ],
  ['unhealthy', status.UNAVAILABLE, 'etcdserver: unhealthy cluster'],
  ['corrupt', status.DATA_LOSS, 'etcdserver: corrupt cluster'],
  ['not-supported-for-learner', status.UNAVAILABLE, 'etcdserver: rpc not supported for learner'],
  ['bad-leader-transferee', status.FAILED_PRECONDITION, 'etcdserver: bad leader transferee'],
  ['canceled', status.CANCELLED, 'etcdserver: request canceled'],
  ['election-not-leader', status.UNKNOWN, 'election: not leader'],
  ['election-no-leader', status.UNKNOWN, 'election: no leader'],
  ['missing-leader-key', status.UNKNOWN, '"leader" field must be provided'],
  ['mutex-session-expired', status.UNKNOWN, 'mutex: session is expired'],
];

/** Plain Go errors of etcd's concurrency recipes and v3election server: sent with status UNKNOWN. */
const plainGoErrors = /^(election-.*|mutex-.*|missing-leader-key)$/;

describe('error table', () => {
  it('holds every etcd error, with etcd\'s exact message and gRPC status', () => {
    for (const [code, grpcStatus, message] of etcdErrors) {
      expect(errorTable[code], code).toMatchObject({ grpcStatus, message, extension: false });
    }
  });

  it('has no etcd entry that the transcription above lacks', () => {
    const transcribed = new Set(etcdErrors.map(([code]) => code));
    const etcdCodes = errorCodes.filter((code) => !errorTable[code].extension);
    expect(etcdCodes.filter((code) => !transcribed.has(code))).toEqual([]);
  });

  it('uses kebab-case codes and unique messages', () => {
    for (const code of errorCodes) expect(code).toMatch(/^[a-z]+(-[a-z0-9]+)*$/);
    const messages = errorCodes.map((code) => errorTable[code].message);
    expect(new Set(messages).size).toBe(messages.length);
  });

  it('prefixes messages the way etcd does, and marks DKV extensions with "dkv: "', () => {
    for (const code of errorCodes) {
      const spec = errorTable[code];
      if (spec.extension) {
        expect(spec.message, code).toMatch(/^dkv: [^:]+$/);
        expect(spec.surface).toBe('status');
      } else if (spec.surface === 'watch-cancel') {
        expect(spec.message, code).toMatch(/^mvcc: /);
      } else if (code.startsWith('election-')) {
        expect(spec.message, code).toMatch(/^election: /);
      } else if (code.startsWith('mutex-')) {
        expect(spec.message, code).toMatch(/^mutex: /);
      } else if (code === 'missing-leader-key') {
        expect(spec.message, code).toBe('"leader" field must be provided');
      } else {
        expect(spec.message, code).toMatch(/^etcdserver: /);
      }
    }
  });

  it('never sends OK, and sends UNKNOWN only where etcd does', () => {
    for (const code of errorCodes) {
      expect(errorTable[code].grpcStatus).not.toBe(status.OK);
      if (errorTable[code].grpcStatus === status.UNKNOWN) expect(code).toMatch(plainGoErrors);
    }
  });
});

describe('grpcStatus', () => {
  it("numbers gRPC's status codes as grpc-js does (written out so that the table does not load grpc-js)", () => {
    const grpcJs = Object.fromEntries(Object.entries(status).filter(([name]) => !/^[0-9]+$/.test(name)));
    expect(grpcStatus).toEqual(grpcJs);
  });
});

describe('DkvError and toGrpcError', () => {
  it('carries the code, status and etcd message', () => {
    const error = dkvError('compacted', 'revision 5 < compact revision 9');
    expect(error).toBeInstanceOf(DkvError);
    expect(error).toBeInstanceOf(Error);
    expect(error.code).toBe('compacted');
    expect(error.grpcStatus).toBe(status.OUT_OF_RANGE);
    expect(error.message).toBe('etcdserver: mvcc: required revision has been compacted');
    expect(isDkvError(error, 'compacted')).toBe(true);
    expect(isDkvError(error, 'no-leader')).toBe(false);
  });

  it('sends etcd messages exactly, without the detail (clients match them by string)', () => {
    expect(toGrpcError(dkvError('no-leader', 'shard 3'))).toEqual({
      code: status.UNAVAILABLE,
      details: 'etcdserver: no leader',
    });
    expect(toGrpcError(dkvError('request-too-large'))).toEqual({
      code: status.INVALID_ARGUMENT,
      details: 'etcdserver: request is too large',
    });
  });

  it('sends the detail of a DKV extension', () => {
    expect(toGrpcError(dkvError('store-not-found', 'orders'))).toEqual({
      code: status.NOT_FOUND,
      details: 'dkv: store not found: orders',
    });
    expect(toGrpcError(dkvError('cross-shard-txn'))).toEqual({
      code: status.FAILED_PRECONDITION,
      details: 'dkv: txn keys span more than one shard',
    });
  });

  it('sends etcd errors of the Lock and Election services with status UNKNOWN, as etcd does; DKV\'s keep theirs', () => {
    expect(toGrpcErrorOfRecipe(dkvError('lease-not-found'))).toEqual({ code: status.UNKNOWN, details: 'etcdserver: requested lease not found' });
    expect(toGrpcErrorOfRecipe(dkvError('election-no-leader'))).toEqual({ code: status.UNKNOWN, details: 'election: no leader' });
    expect(toGrpcErrorOfRecipe(dkvError('empty-name'))).toEqual({ code: status.INVALID_ARGUMENT, details: 'dkv: lock or election name is not provided' });
    expect(toGrpcErrorOfRecipe(new Error('secret'))).toEqual({ code: status.INTERNAL, details: 'dkv: internal error' });
  });

  it('hides unknown errors behind a generic internal error', () => {
    const secret = new Error('ENOENT: /var/lib/dkv/secret-path');
    for (const thrown of [secret, new TypeError('x is undefined'), 'a string', undefined, { code: 5 }]) {
      const result = toGrpcError(thrown);
      expect(result).toEqual({ code: status.INTERNAL, details: 'dkv: internal error' });
    }
    expect(JSON.stringify(toGrpcError(secret))).not.toContain('secret');
  });

  it('maps wire messages back to codes', () => {
    for (const code of errorCodes) {
      if (errorTable[code].surface !== 'status') continue;
      expect(errorCodeOfMessage(toGrpcError(dkvError(code)).details)).toBe(code);
    }
    expect(errorCodeOfMessage('dkv: store not found: orders')).toBe('store-not-found');
    expect(errorCodeOfMessage('etcdserver: no leader: extra')).toBeUndefined();
    expect(errorCodeOfMessage('something else')).toBeUndefined();
  });
});
