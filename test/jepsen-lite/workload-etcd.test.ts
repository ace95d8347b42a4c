/**
 * The etcd mapping, end to end in-process: generated operations become etcd requests, run against
 * the real KV state machine (writes as encoded log commands, reads from the MVCC store, as the
 * server does), and the responses map back to outputs that must equal a plain sequential model
 * of etcd. Responses also go through protobuf encode/decode, so the Long-valued shape real mode
 * receives is covered too. Then: error classification.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SeededPrng } from '../../raft/index.js';
import { composeStateMachine } from '../../src/runtime/index.js';
import { etcdType } from '../../src/etcd-proto.js';
import type { KvCompare, KvInput, KvOutput, KvRequest, KvResult, RegisterInput, RegisterOutput } from '../../jepsen-lite/history.js';
import {
  EtcdCallError,
  Generator,
  applyCall,
  classifyError,
  fromEtcdResponse,
  grpcCode,
  prefixRange,
  toEtcdCall,
  type EtcdCall,
  type EtcdResponse,
  type WorkloadInput,
  type WorkloadName,
} from '../../jepsen-lite/workload/index.js';

const seeded = (seed: number): (() => number) => {
  const prng = new SeededPrng(seed);
  return () => prng.nextFloat();
};
const PREFIX = 'jepsen/';
const RUNS = 40;
const OPS_PER_RUN = 150;

// ---- A sequential model of etcd, written from etcd's documented semantics -------------------

interface Version {
  value: string;
  createRevision: number;
  modRevision: number;
  version: number;
}

class EtcdModel {
  revision = 1;
  readonly keys = new Map<string, Version>();

  apply(input: WorkloadInput): RegisterOutput | KvOutput {
    switch (input.f) {
      case 'read':
        return { f: 'read', value: this.keys.get(input.key)?.value ?? null };
      case 'write':
        this.write(input.key, input.value, ++this.revision);
        return { f: 'write' };
      case 'cas': {
        const succeeded = this.keys.get(input.key)?.value === input.from;
        if (succeeded) this.write(input.key, input.to, ++this.revision);
        return { f: 'cas', succeeded };
      }
      case 'txn':
        return this.txn(input);
      default: {
        const pending = this.revision + 1;
        const result = this.request(input, pending);
        if (this.changed(input, result)) this.revision = pending;
        return { ...result, revision: this.revision };
      }
    }
  }

  private txn(input: Extract<KvInput, { f: 'txn' }>): KvOutput {
    const succeeded = input.compare.every((c) => this.holds(c));
    const pending = this.revision + 1;
    let changed = false;
    const results = (succeeded ? input.success : input.failure).map((r) => {
      const result = this.request(r, pending);
      changed ||= this.changed(r, result);
      return result;
    });
    if (changed) this.revision = pending;
    return { f: 'txn', revision: this.revision, succeeded, results };
  }

  private holds(c: KvCompare): boolean {
    const kv = this.keys.get(c.key);
    if (c.target === 'value') return kv !== undefined && kv.value === c.value;
    const actual = c.target === 'mod' ? kv?.modRevision : c.target === 'create' ? kv?.createRevision : kv?.version;
    return (actual ?? 0) === c.value;
  }

  private changed(r: KvRequest, result: KvResult): boolean {
    return r.f === 'put' || (result.f === 'delete' && result.deleted > 0);
  }

  private request(r: KvRequest, revision: number): KvResult {
    const kv = this.keys.get(r.key);
    switch (r.f) {
      case 'get':
        return kv === undefined
          ? { f: 'get', value: null, modRevision: 0, createRevision: 0, version: 0 }
          : { f: 'get', value: kv.value, modRevision: kv.modRevision, createRevision: kv.createRevision, version: kv.version };
      case 'put':
        this.write(r.key, r.value, revision);
        return { f: 'put', prevValue: kv?.value ?? null };
      case 'delete':
        this.keys.delete(r.key);
        return { f: 'delete', deleted: kv === undefined ? 0 : 1 };
    }
  }

  private write(key: string, value: string, revision: number): void {
    const kv = this.keys.get(key);
    this.keys.set(key, {
      value,
      createRevision: kv?.createRevision ?? revision,
      modRevision: revision,
      version: (kv?.version ?? 0) + 1,
    });
  }
}

// ---- Wire round trip: what a gRPC client decodes ---------------------------------------------

const responseTypes: Record<EtcdCall['method'], string> = {
  range: 'etcdserverpb.RangeResponse',
  put: 'etcdserverpb.PutResponse',
  deleteRange: 'etcdserverpb.DeleteRangeResponse',
  txn: 'etcdserverpb.TxnResponse',
};

function overTheWire(call: EtcdCall, response: EtcdResponse): EtcdResponse {
  const type = etcdType(responseTypes[call.method]);
  return type.decode(type.encode(type.fromObject(response as Record<string, unknown>)).finish()) as unknown as EtcdResponse;
}

function runAgainstStateMachine(workload: WorkloadName, seed: number, wire: boolean): { ops: number; mismatches: string[] } {
  const generator = new Generator(workload, seeded(seed));
  const machine = composeStateMachine('data');
  const model = new EtcdModel();
  const mismatches: string[] = [];
  let index = 0;
  for (let i = 0; i < OPS_PER_RUN; i++) {
    const input = generator.next(i % 3);
    const call = toEtcdCall(input, PREFIX);
    const { response } = applyCall(machine, call, { index: ++index });
    const output = fromEtcdResponse(input, wire ? overTheWire(call, response) : response);
    const expected = model.apply(input);
    if (JSON.stringify(output) !== JSON.stringify(expected)) {
      mismatches.push(`op ${i} ${JSON.stringify(input)}: got ${JSON.stringify(output)}, model says ${JSON.stringify(expected)}`);
    }
    generator.observe(input, output);
  }
  return { ops: OPS_PER_RUN, mismatches };
}

describe('etcd mapping against the real state machine', () => {
  it.each(['register', 'kv', 'watch'] as const)('%s: outputs equal the sequential model (in-process and over the wire)', (workload) => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 }), fc.boolean(), (seed, wire) => {
        const { mismatches } = runAgainstStateMachine(workload, seed, wire);
        expect(mismatches.slice(0, 3)).toEqual([]);
      }),
      { numRuns: RUNS },
    );
  });

  it('a txn exercises both branches and revisions move only on writes', () => {
    const generator = new Generator('kv', seeded(11));
    const machine = composeStateMachine('data');
    const branches = new Set<boolean>();
    let index = 0;
    let lastRevision = 1;
    for (let i = 0; i < 400; i++) {
      const input = generator.next(0) as KvInput;
      const { response } = applyCall(machine, toEtcdCall(input, PREFIX), { index: ++index });
      const output = fromEtcdResponse(input, response);
      generator.observe(input, output);
      expect(output.revision).toBeGreaterThanOrEqual(lastRevision);
      if (input.f === 'get') expect(output.revision).toBe(lastRevision);
      if (input.f === 'put') expect(output.revision).toBe(lastRevision + 1);
      lastRevision = output.revision;
      if (output.f === 'txn') branches.add(output.succeeded);
    }
    expect(branches).toEqual(new Set([true, false]));
  });

  it('keys go on the wire with the prefix; a register read is linearizable and a missing key reads null', () => {
    const read: RegisterInput = { f: 'read', key: 'k1' };
    const call = toEtcdCall(read, PREFIX);
    expect(call.method).toBe('range');
    if (call.method !== 'range') return;
    expect(new TextDecoder().decode(call.request.key)).toBe('jepsen/k1');
    expect(call.request.serializable).toBe(false);
    const machine = composeStateMachine('data');
    expect(fromEtcdResponse(read, applyCall(machine, call, { index: 1 }).response)).toEqual({ f: 'read', value: null });
  });

  it('the prefix range covers exactly the run\'s keys', () => {
    const { key, rangeEnd } = prefixRange(PREFIX);
    expect(new TextDecoder().decode(key)).toBe('jepsen/');
    expect(new TextDecoder().decode(rangeEnd)).toBe('jepsen0');
    expect(() => prefixRange('')).toThrow(TypeError);
  });

  it('a cas on a missing key fails (a value compare on nothing is false, as in etcd)', () => {
    const machine = composeStateMachine('data');
    const cas: RegisterInput = { f: 'cas', key: 'k0', from: '', to: '1-1' };
    expect(fromEtcdResponse(cas, applyCall(machine, toEtcdCall(cas, PREFIX), { index: 1 }).response)).toEqual({ f: 'cas', succeeded: false });
  });

  it('a response that does not fit its request is refused', () => {
    const txn: KvInput = { f: 'txn', compare: [], success: [{ f: 'get', key: 'k0' }], failure: [] };
    expect(() => fromEtcdResponse(txn, { header: { revision: 3 }, succeeded: true, responses: [] })).toThrow(TypeError);
    expect(() => fromEtcdResponse({ f: 'get', key: 'k0' }, { kvs: [] })).toThrow(TypeError);
  });
});

describe('classifyError', () => {
  const put: KvInput = { f: 'put', key: 'k0', value: '1-1' };
  const grpcError = (code: number, details: string) => Object.assign(new Error(`${code}: ${details}`), { code, details });

  it('a refusal in apply comes back as INVALID_ARGUMENT and is a definite failure', () => {
    const machine = composeStateMachine('data');
    const input: KvInput = {
      f: 'txn',
      compare: [],
      success: [
        { f: 'put', key: 'k0', value: '1-1' },
        { f: 'put', key: 'k0', value: '1-2' },
      ],
      failure: [],
    };
    let thrown: unknown;
    try {
      applyCall(machine, toEtcdCall(input, PREFIX), { index: 1 });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(EtcdCallError);
    expect((thrown as EtcdCallError).code).toBe(grpcCode.INVALID_ARGUMENT);
    expect((thrown as EtcdCallError).details).toBe('etcdserver: duplicate key given in txn request');
    expect(classifyError(thrown, input)).toBe('fail');
  });

  it.each([
    [grpcCode.INVALID_ARGUMENT, 'etcdserver: request is too large', 'fail'],
    [grpcCode.RESOURCE_EXHAUSTED, 'etcdserver: too many requests', 'fail'],
    [grpcCode.UNAVAILABLE, 'etcdserver: no leader', 'fail'],
    [grpcCode.UNAVAILABLE, 'etcdserver: leader changed', 'fail'],
    [grpcCode.UNAVAILABLE, 'etcdserver: request timed out', 'info'],
    [grpcCode.UNAVAILABLE, 'etcdserver: request timed out, possibly due to previous leader failure', 'info'],
    [grpcCode.UNAVAILABLE, 'etcdserver: server stopped', 'info'],
    // grpc-js: the call never had a connection (never sent) vs a connection lost mid-call.
    [grpcCode.UNAVAILABLE, 'No connection established. Last error: connect ECONNREFUSED 127.0.0.1:2379', 'fail'],
    [grpcCode.UNAVAILABLE, 'etcdserver: rpc not supported for learner', 'fail'], // refused at the edge
    [grpcCode.UNAVAILABLE, 'Connection dropped', 'info'],
    [grpcCode.UNAVAILABLE, 'read ECONNRESET', 'info'],
    [grpcCode.DEADLINE_EXCEEDED, 'Deadline exceeded', 'info'],
    [grpcCode.CANCELLED, 'Cancelled on client', 'info'],
    [grpcCode.RESOURCE_EXHAUSTED, 'Received message larger than max', 'info'],
    [grpcCode.UNKNOWN, 'something', 'info'],
    [grpcCode.INTERNAL, 'dkv: internal error', 'info'],
  ] as const)('a write failing with %i %s is %s', (code, details, expected) => {
    expect(classifyError(grpcError(code, details), put)).toBe(expected);
    expect(classifyError(new EtcdCallError(code, details), put)).toBe(expected);
  });

  it('errors without a gRPC code are unknown; any error of a read-only operation is a failure', () => {
    expect(classifyError(new Error('socket hang up'), put)).toBe('info');
    expect(classifyError('boom')).toBe('info');
    expect(classifyError(grpcError(grpcCode.UNAVAILABLE, 'etcdserver: request timed out'), { f: 'read', key: 'k0' })).toBe('fail');
    expect(classifyError(new Error('x'), { f: 'get', key: 'k0' })).toBe('fail');
    const readTxn: KvInput = { f: 'txn', compare: [], success: [{ f: 'get', key: 'k0' }], failure: [{ f: 'get', key: 'k1' }] };
    expect(classifyError(new Error('x'), readTxn)).toBe('fail');
    const writeTxn: KvInput = { ...readTxn, failure: [{ f: 'delete', key: 'k1' }] };
    expect(classifyError(new Error('x'), writeTxn)).toBe('info');
  });
});
