/**
 * Regressions the gRPC fuzz suites (fuzz-grpc-*.test.ts) found, one focused case each, against a
 * real single-node server.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { etcdType } from '../../src/etcd-proto.js';
import { everyMethod, expectServes, FuzzNode, type FuzzedMethod, StateTracker } from './fuzz-harness.js';
import { WatchClient } from './watch-client.js';

let node: FuzzNode;
let tracker: StateTracker;
const method = (path: string): FuzzedMethod => everyMethod().find((m) => m.path === path)!;

beforeAll(async () => {
  node = await FuzzNode.start();
  tracker = new StateTracker(node);
}, 60_000);

afterAll(async () => {
  await node?.stop();
});

const malformed = { code: grpc.status.INTERNAL, details: 'dkv: request message does not decode: not a valid' };

describe('a client-stream frame that does not decode', () => {
  // Two keep-alives of lease 0 are answered at once (no Raft round), so their responses were being
  // written when grpc-js refused the third frame behind the handler's back; the handler's next
  // write then kept the call from ever ending, and the client waited for its deadline.
  it('ends a LeaseKeepAlive stream with malformed-request after the answers before it', async () => {
    const keepAlive = method('/etcdserverpb.Lease/LeaseKeepAlive');
    const leaseZero = Buffer.alloc(0);
    const garbage = Buffer.from('0749', 'hex');
    // The fuzz suite's counterexample (seed 1702): two frames that decode to lease 0, then two that do not.
    const found = ['0d1ac56c12', '0d4273f722', '0749', '2203097890c3a3090e18ffffffffffffffffffffff'].map((hex) => Buffer.from(hex, 'hex'));
    // The hang depended on how the writes and grpc-js's refusal interleaved: the found case, many times.
    const repeats = Array.from({ length: 20 }, () => found);
    for (const frames of [...repeats, [leaseZero, leaseZero, garbage], [leaseZero, garbage, leaseZero], [garbage]]) {
      await tracker.before();
      const outcome = await node.call(keepAlive, frames);
      expect(outcome.kind === 'status' && [outcome.code, outcome.details.slice(0, malformed.details.length)], JSON.stringify(outcome)).toEqual([malformed.code, malformed.details]);
      await tracker.after(keepAlive, outcome, frames.map((f) => f.toString('hex')).join(' '));
    }
  });

  it('ends a Watch stream with malformed-request after the created responses before it', async () => {
    const watch = method('/etcdserverpb.Watch/Watch');
    const WatchRequest = etcdType('etcdserverpb.WatchRequest');
    const create = Buffer.from(WatchRequest.encode({ create_request: { key: Buffer.from('fuzz/w') } }).finish());
    const garbage = Buffer.from('0d1ac56c12ff', 'hex');
    for (const frames of [[create, create, garbage], [create, garbage, create], [garbage]]) {
      await tracker.before();
      const outcome = await node.call(watch, frames);
      expect(outcome.kind === 'status' && [outcome.code, outcome.details.slice(0, malformed.details.length)], JSON.stringify(outcome)).toEqual([malformed.code, malformed.details]);
      await tracker.after(watch, outcome, frames.map((f) => f.toString('hex')).join(' '));
    }
    await expectServes(node, 'malformed-frames');
  });
});

describe('a watch whose range_end is at or before its key', () => {
  // etcd 3.4 answers created + canceled, watch_id -1, "mvcc: watcher range is empty" (measured);
  // DKV registered a watcher that could never fire.
  it('is refused with etcd\'s cancel reason; \\0 (from key) and a range after the key are not', async () => {
    const watch = new WatchClient(node.endpoint);
    try {
      watch.create({ key: 'b', rangeEnd: 'a' });
      watch.create({ key: 'b', rangeEnd: 'b' });
      watch.create({ key: '', rangeEnd: Buffer.from([0]) });
      watch.create({ key: 'b', rangeEnd: Buffer.from([0]) });
      watch.create({ key: '', rangeEnd: 'a' });
      watch.create({ key: 'b', rangeEnd: 'c' });
      await watch.waitFor((rs) => rs.filter((r) => r.created === true).length === 6);
      const created = watch.responses.filter((r) => r.created === true).map((r) => [r.watch_id, r.canceled, r.cancel_reason]);
      expect(created).toEqual([
        [-1, true, 'mvcc: watcher range is empty'],
        [-1, true, 'mvcc: watcher range is empty'],
        [0, false, ''],
        [1, false, ''],
        [2, false, ''],
        [3, false, ''],
      ]);
    } finally {
      watch.close();
    }
    await expectServes(node, 'watch-range-empty');
  });
});

describe('boundary values the generators seldom pick', () => {
  // The fuzz suites mark these must-refuse, but a run of a few hundred cases may draw none of them:
  // removing the empty-key check, or the counter's zero-delta check, went unnoticed there.
  const cases: Array<{ path: string; message: Record<string, unknown>; details: string }> = [
    { path: '/etcdserverpb.KV/Put', message: { key: Buffer.alloc(0), value: Buffer.from('v') }, details: 'etcdserver: key is not provided' },
    { path: '/etcdserverpb.KV/Range', message: { key: Buffer.alloc(0) }, details: 'etcdserver: key is not provided' },
    { path: '/etcdserverpb.KV/DeleteRange', message: { key: Buffer.alloc(0) }, details: 'etcdserver: key is not provided' },
    { path: '/dkv.v1.KV/Put', message: { key: Buffer.alloc(0), value: Buffer.from('v') }, details: 'etcdserver: key is not provided' },
    { path: '/dkv.v1.Counter/Increment', message: { key: Buffer.from('fuzz/c'), delta: '0' }, details: 'delta must not be 0' },
    { path: '/dkv.v1.Counter/Decrement', message: { key: Buffer.from('fuzz/c'), delta: '0' }, details: 'delta must not be 0' },
    { path: '/dkv.v1.Counter/Set', message: { key: Buffer.alloc(0), value: '1' }, details: 'etcdserver: key is not provided' },
    { path: '/dkv.v1.Counter/Delete', message: { key: Buffer.alloc(0) }, details: 'etcdserver: key is not provided' },
  ];
  for (const { path, message, details } of cases) {
    it(`${path} ${JSON.stringify(message)}: INVALID_ARGUMENT, nothing changed`, async () => {
      const target = method(path);
      const frame = Buffer.from(target.requestType.encode(target.requestType.fromObject(message)).finish());
      // The describes before wrote (expectServes): the state to compare with is taken afresh.
      tracker.reset();
      await tracker.before();
      const outcome = await node.call(target, [frame]);
      expect(outcome.kind === 'status' && outcome.code, JSON.stringify(outcome)).toBe(grpc.status.INVALID_ARGUMENT);
      expect(outcome.kind === 'status' && outcome.details).toContain(details);
      await tracker.after(target, outcome, path);
    });
  }
});
