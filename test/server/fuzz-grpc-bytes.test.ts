/**
 * Issue #17 §2, malformed input: every method of every gRPC service the server is built from
 * (etcd's KV, Watch, Lease, Cluster, Maintenance, Auth, Lock and Election; dkv.v1's KV, Counter
 * and Watch) gets request bytes that are not what it expects — random bytes, protobuf-shaped
 * tokens that lie, its own fields with the wrong wire type — and, on raw HTTP/2 streams, gRPC
 * message prefixes that lie. Every call must end with an answer (a status, or a response when the
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

  it('the node still serves a normal put and get', async () => {
    await expectServes(node, 'bytes');
  });
});
