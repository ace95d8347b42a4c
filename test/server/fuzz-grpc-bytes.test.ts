/**
 * Issue #17 §2, malformed input: every method of every gRPC service the server is built from
 * (etcd's KV, Watch, Lease, Cluster, Maintenance, Auth, Lock and Election; dkv.v1's KV, Counter
 * and Watch) gets request bytes that are not what it expects — random bytes, protobuf-shaped
 * tokens that lie, its own fields with the wrong wire type, txns nested up to 100 000 deep — and,
 * on raw HTTP/2 streams, gRPC message prefixes and request headers (deadlines, compression,
 * content types, oversized metadata) that lie. Every call must end with an answer (a status, or a response when the
 * bytes happen to be a valid request; never a hang past the deadline, never the generic internal
 * error of an unhandled exception), the process must live on, and a refused call must leave the
 * node's state (HashKV, revision, leases, alarms, members) exactly as it was.
 *
 * fast-check prints the seed and the shrunk counterexample of a failure; rerun with that seed.
 */
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { everyMethod, expectServes, fuzzRunsScale, fuzzSeed, FuzzNode, type FuzzedMethod, StateTracker } from './fuzz-harness.js';
import { lyingGrpcFrames, protobufTokens, randomBytes, tag, varint, wrongTypes } from './fuzz-wire.js';

/** Cases per unary method (each is a call plus the state checks around it). */
const runsPerMethod = 24;
/** Streams that may stay open cost an observation window each: fewer cases. */
const runsPerOpenStream = 8;
/** Raw HTTP/2 requests per method. */
const framedRunsPerMethod = 6;
/** The store behind the deadline test's snapshots: 40 values of 64 KiB (~2.6 MB). */
const deadlineKeys = 40;
const deadlineValueBytes = 64 * 1024;
/** Snapshots asked for under a deadline of a few ms. */
const snapshotDeadlineRuns = 24;

const methods = everyMethod();
let node: FuzzNode;
let tracker: StateTracker;
const started = Date.now();

beforeAll(async () => {
  node = await FuzzNode.start();
  tracker = new StateTracker(node);
}, 60_000);

afterAll(async () => {
  console.log(`[fuzz-grpc-bytes] ${methods.length} methods; ${tracker?.refused} refused, ${tracker?.accepted} accepted, ${tracker?.open} open streams; ${((Date.now() - started) / 1000).toFixed(1)} s`);
  await node?.stop();
});

function malformed(method: FuzzedMethod): fc.Arbitrary<Buffer> {
  return fc.oneof(randomBytes, protobufTokens, wrongTypes(method.requestType));
}

function mayStayOpen(method: FuzzedMethod): boolean {
  return method.responseStream && !method.requestStream && method.name !== 'Snapshot';
}

describe('malformed request bytes, every method', () => {
  it('covers every service the server registers', () => {
    const services = new Set(methods.map((m) => m.service));
    for (const name of ['etcdserverpb.KV', 'etcdserverpb.Watch', 'etcdserverpb.Lease', 'etcdserverpb.Cluster', 'etcdserverpb.Maintenance', 'v3lockpb.Lock', 'v3electionpb.Election', 'dkv.v1.KV', 'dkv.v1.Counter', 'dkv.v1.Watch']) {
      expect(services.has(name as FuzzedMethod['service']), name).toBe(true);
    }
    expect(methods.length).toBeGreaterThanOrEqual(56);
  });

  for (const method of methods) {
    it(`${method.path}: answered, alive, and a refusal changes nothing`, async () => {
      const frames = method.requestStream ? fc.array(malformed(method), { minLength: 1, maxLength: 4 }) : malformed(method).map((b) => [b]);
      await fc.assert(
        fc.asyncProperty(frames, async (bodies) => {
          await tracker.before();
          const outcome = await node.call(method, bodies);
          try {
            await tracker.after(method, outcome, `bytes ${bodies.map((b) => b.toString('hex')).join(' | ')}`);
          } catch (error) {
            // While fast-check shrinks, each try must start from a state it knows.
            tracker.reset();
            throw error;
          }
        }),
        { seed: fuzzSeed, numRuns: fuzzRunsScale * (mayStayOpen(method) ? runsPerOpenStream : runsPerMethod) },
      );
    });
  }
});

/** A TxnRequest nested `levels` deep through success (2) -> RequestOp.request_txn (4). */
function nestedTxnBytes(levels: number): Buffer {
  let body = Buffer.alloc(0);
  for (let i = 0; i < levels; i++) {
    const op = Buffer.concat([tag(4, 2), varint(BigInt(body.length)), body]);
    body = Buffer.concat([tag(2, 2), varint(BigInt(op.length)), op]);
  }
  return body;
}

describe('txns nested far past the limit', () => {
  // etcd's limit is 129 levels; up to twice that decodes and gets etcd's error, deeper does not
  // decode (src/etcd-proto.ts): either way a refusal, never a stack overflow, at any depth.
  for (const path of ['/etcdserverpb.KV/Txn', '/dkv.v1.KV/Txn']) {
    it(`${path}: refused at 130 to 100 000 levels, and nothing changes`, async () => {
      const method = methods.find((m) => m.path === path)!;
      await fc.assert(
        fc.asyncProperty(fc.oneof(fc.constantFrom(130, 258, 259, 260, 100_000), fc.integer({ min: 130, max: 20_000 })), async (levels) => {
          const txn = nestedTxnBytes(levels);
          // dkv.v1's TxnRequest holds etcd's in its field 1.
          const body = path === '/dkv.v1.KV/Txn' ? Buffer.concat([tag(1, 2), varint(BigInt(txn.length)), txn]) : txn;
          await tracker.before();
          const outcome = await node.call(method, [body]);
          try {
            await tracker.expectRefused(method, outcome, `${levels} levels`);
          } catch (error) {
            tracker.reset();
            throw error;
          }
        }),
        { seed: fuzzSeed, numRuns: fuzzRunsScale * 8 },
      );
    });
  }
});

describe('gRPC message prefixes that lie, on raw HTTP/2 streams', () => {
  for (const method of methods) {
    it(`${method.path}: a status or a reset, never a hang`, async () => {
      await fc.assert(
        fc.asyncProperty(lyingGrpcFrames, async (payload) => {
          await tracker.before();
          const answer = await node.framed(method.path, payload, mayStayOpen(method));
          const label = `framed ${payload.toString('hex')}`;
          node.expectAlive(label);
          expect(answer.grpcStatus, `${method.path} ${label}: hung until the deadline`).not.toBe(grpc.status.DEADLINE_EXCEEDED);
          const outcome = answer.open
            ? ({ kind: 'open', responses: 0 } as const)
            : answer.grpcStatus === undefined || answer.grpcStatus === grpc.status.OK
              ? ({ kind: 'ok', responses: 1 } as const)
              : ({ kind: 'status', code: answer.grpcStatus, details: '', responses: 0 } as const);
          await tracker.after(method, outcome, label);
        }),
        { seed: fuzzSeed, numRuns: fuzzRunsScale * (mayStayOpen(method) ? 2 : framedRunsPerMethod) },
      );
    });
  }

});

/**
 * Request headers that lie or overflow: deadlines, compression, content types, metadata. Sizes
 * are drawn as numbers (so a failure prints short) and expanded when sent.
 */
const hostileHeaders = fc.record(
  {
    'grpc-timeout': fc.constantFrom('abc', '0n', '1n', '99999999H', '123456789S', '-1m', ''),
    'grpc-encoding': fc.constantFrom('gzip', 'deflate', 'br', 'identity', ''),
    'content-type': fc.constantFrom('application/grpc+json', 'text/plain', 'application/grpc-web'),
    'x-request-id': fc.oneof(fc.string({ maxLength: 40 }), fc.constant(16_000)),
    'x-fuzz-bin': fc.constantFrom('!!!not base64', 'AAAA', ''),
    'x-big': fc.constantFrom(60_000, 1),
  },
  { requiredKeys: [] },
);

function expand(headers: Record<string, string | number>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).map(([name, value]) => [name, typeof value === 'number' ? 'x'.repeat(value) : value]));
}

describe('request headers that lie or overflow, on raw HTTP/2 streams', () => {
  it('every unary method: a status or an HTTP error, never a hang; a refusal changes nothing', async () => {
    // Unary methods here; streams under deadlines that pass while they answer are the next describe.
    const unary = methods.filter((m) => !m.requestStream && !m.responseStream);
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...unary.map((m) => m.path)), hostileHeaders, fc.constantFrom(Buffer.alloc(5), Buffer.from([1, 0, 0, 0, 3, 1, 2, 3])), async (path, headers, payload) => {
        const method = unary.find((m) => m.path === path)!;
        await tracker.before();
        const answer = await node.framed(method.path, payload, false, expand(headers));
        const label = `headers ${JSON.stringify(headers)} body ${payload.toString('hex')}`;
        node.expectAlive(label);
        // A deadline of a nanosecond (or of `-1m`, which grpc-js reads as 1 ms) passes: DEADLINE_EXCEEDED
        // is then the answer asked for, not a hang, and whether the request ran before it is unknown.
        const deadlineAsked = ['0n', '1n', '-1m'].includes(headers['grpc-timeout'] ?? '');
        const refused = answer.grpcStatus !== undefined ? answer.grpcStatus !== grpc.status.OK : answer.httpStatus !== 200;
        const outcome =
          refused && !(deadlineAsked && answer.grpcStatus === grpc.status.DEADLINE_EXCEEDED)
            ? ({ kind: 'status', code: answer.grpcStatus ?? grpc.status.UNKNOWN, details: '', responses: 0 } as const)
            : ({ kind: 'ok', responses: 1 } as const);
        try {
          await tracker.after(method, outcome, label);
        } catch (error) {
          tracker.reset();
          throw error;
        }
      }),
      { seed: fuzzSeed, numRuns: fuzzRunsScale * 120 },
    );
  });

  it('the node still serves a normal put and get', async () => {
    await expectServes(node, 'bytes');
  });
});

describe('streams whose deadline passes while they answer, on raw HTTP/2 streams', () => {
  it('every streaming method under a deadline of a few ms ends with a status, never a hang (a snapshot of megabytes included)', async () => {
    // A snapshot of this store spans many messages, so its deadline passes while they wait on the
    // client's flow-control window (src/server/stream-deadline.ts: a raw client that does not reset
    // the stream itself used to wait for trailers forever).
    const value = Buffer.alloc(deadlineValueBytes, 7);
    for (let i = 0; i < deadlineKeys; i++) await node.client.call('etcdserverpb.KV', 'Put', { key: Buffer.from(`fuzz-deadline/${i}`), value });
    const deadlines = ['1n', '1m', '2m', '3m', '5m', '8m'];
    for (const method of methods.filter((m) => m.requestStream || m.responseStream)) {
      for (const deadline of deadlines) {
        const answer = await node.framed(method.path, Buffer.alloc(5), false, { 'grpc-timeout': deadline });
        expect(answer.open, `${method.path} under ${deadline}`).toBe(false);
        node.expectAlive(`${method.path} under ${deadline}`);
      }
    }
    const whole = await node.framed('/etcdserverpb.Maintenance/Snapshot', Buffer.alloc(5));
    expect(whole.grpcStatus).toBe(grpc.status.OK);
    for (let i = 0; i < snapshotDeadlineRuns; i++) {
      const answer = await node.framed('/etcdserverpb.Maintenance/Snapshot', Buffer.alloc(5), false, { 'grpc-timeout': deadlines[i % deadlines.length]! });
      // The whole snapshot in time, or the deadline: either way a status in trailers, and never OK
      // with messages missing.
      expect([grpc.status.OK, grpc.status.DEADLINE_EXCEEDED]).toContain(answer.grpcStatus);
      if (answer.grpcStatus === grpc.status.OK) expect(answer.dataBytes).toBe(whole.dataBytes);
    }
    await node.client.call('etcdserverpb.KV', 'DeleteRange', { key: Buffer.from('fuzz-deadline/'), range_end: Buffer.from('fuzz-deadline0') });
    await expectServes(node, 'stream deadlines');
  }, 120_000);
});
