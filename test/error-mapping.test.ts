/**
 * The one mapping from store, engine and runtime errors to client errors: every runtime code maps
 * to a client error, and a client classifying that error (jepsen-lite's classifier, which follows
 * what etcd clients may assume) reaches the same verdict the runtime states: refused or proven not
 * applied is a definite failure; timed out or stopped may still apply.
 */
import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { classifyError } from '../jepsen-lite/workload/index.js';
import { WireValueError } from '../src/engines/kv/index.js';
import { ShardMapError, type ShardMapErrorCode } from '../src/cluster/index.js';
import { clientError, storeRefusal } from '../src/error-mapping.js';
import { DkvError } from '../src/errors.js';
import { RuntimeError, type RuntimeErrorCode, indeterminateCodes } from '../src/runtime/index.js';
import { MvccError } from '../storage/index.js';

const runtimeCodes: RuntimeErrorCode[] = [
  'no-leader',
  'leader-transfer',
  'leader-changed',
  'too-many-requests',
  'unsupported-command',
  'wrong-shard',
  'cross-shard',
  'lost',
  'conf-change-pending',
  'invalid-conf-change',
  'not-member',
  'timeout',
  'leader-failed',
  'stopped',
];

describe('error mapping', () => {
  it('maps every runtime code to a client error that classifies as the runtime says', () => {
    for (const code of runtimeCodes) {
      const mapped = clientError(new RuntimeError(code, code));
      expect(mapped, code).toBeInstanceOf(DkvError);
      const error = mapped as DkvError;
      const seen = { code: error.grpcStatus, details: error.wireMessage };
      expect(classifyError(seen), `${code} → ${error.wireMessage}`).toBe(indeterminateCodes.has(code) ? 'info' : 'fail');
    }
  });

  it('sends a full pipeline as etcd sends an overloaded server: RESOURCE_EXHAUSTED, too many requests', () => {
    const error = clientError(new RuntimeError('too-many-requests', 'etcdserver: too many requests (16384 reads are pending on shard 1)')) as DkvError;
    expect([error.grpcStatus, error.wireMessage]).toEqual([status.RESOURCE_EXHAUSTED, 'etcdserver: too many requests']);
  });

  it('maps store and wire refusals by their codes, never by message text', () => {
    expect((clientError(new MvccError('compacted')) as DkvError).code).toBe('compacted');
    expect((clientError(new WireValueError('unknown sort order 9', 'invalid-sort-option')) as DkvError).code).toBe('invalid-sort-option');
    expect((clientError(new WireValueError('sort of something')) as DkvError).code).toBe('invalid-argument');
    const unknown = new Error('boom');
    expect(clientError(unknown)).toBe(unknown);
  });

  it('maps the shard map\'s refusals a store change can meet to stable store errors, keeping the map\'s message', () => {
    const reachable: Array<[ShardMapErrorCode, number, string]> = [
      ['bad-store-name', status.INVALID_ARGUMENT, 'dkv: invalid store name'],
      ['bad-prefix', status.INVALID_ARGUMENT, 'dkv: invalid store prefix'],
      ['bad-shard-count', status.INVALID_ARGUMENT, 'dkv: invalid shard count'],
      ['default-store', status.INVALID_ARGUMENT, 'dkv: operation not allowed on the default store'],
      ['prefix-overlap', status.FAILED_PRECONDITION, "dkv: store prefix overlaps another store's"],
      ['store-exists', status.ALREADY_EXISTS, 'dkv: store already exists'],
      ['unknown-store', status.NOT_FOUND, 'dkv: store not found'],
      ['too-many-stores', status.RESOURCE_EXHAUSTED, 'dkv: too many stores'],
    ];
    for (const [code, grpcStatus, message] of reachable) {
      const thrown = clientError(new ShardMapError(code, 'the detail')) as DkvError;
      expect([thrown.grpcStatus, thrown.wireMessage], code).toEqual([grpcStatus, `${message}: the detail`]);
      expect(storeRefusal(code, 'the detail').wireMessage).toBe(`${message}: the detail`);
    }
    // What no mount or drop can meet (and a payload the server built wrong) is a server bug.
    expect(storeRefusal('bad-tiling', 'x').code).toBe('internal');
    expect(storeRefusal('bad-command', 'x').code).toBe('internal');
    expect(storeRefusal(undefined, 'x').code).toBe('internal');
  });
});
