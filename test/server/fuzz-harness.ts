/**
 * The fuzz suites' harness (issue #17 §2): one real `dkv server` process, every gRPC method of
 * the protos it serves, calls of raw bytes (no codec in the way) that always end — with a status,
 * a response, or, for a stream that may stay open, by our cancel after an observation window —
 * and a fingerprint of the node's state (HashKV, revision, leases, alarms, members) that a
 * refused call must leave as it was.
 *
 * Accepted calls may change the state (random bytes can be a valid request); `settle()` then
 * revokes every lease and disarms every alarm, so nothing left behind expires or refuses writes
 * while a later case is measured.
 */
import * as grpc from '@grpc/grpc-js';
import { connect as http2Connect, constants as http2Constants } from 'node:http2';
import type protobuf from 'protobufjs';
import { expect } from 'vitest';
import { type Decoded, type EtcdChannel, longsAsStrings, type ServiceName, methodPath } from '../../src/client/index.js';
import { dkvRoot, etcdRoot } from '../../src/etcd-proto.js';
import { etcdChannel, TestCluster } from './cluster-harness.js';

/**
 * The runs replay: a fixed seed (fast-check reports it, and the path to the shrunk case, on a
 * failure). For a longer exploration by hand: DKV_FUZZ_SEED=<n> DKV_FUZZ_RUNS_SCALE=<k>.
 */
export const fuzzSeed = Number(process.env['DKV_FUZZ_SEED'] ?? 1702);
export const fuzzRunsScale = Number(process.env['DKV_FUZZ_RUNS_SCALE'] ?? 1);

/** Every service of the protos the server is built from (those it does not serve answer UNIMPLEMENTED). */
export const fuzzedServices: readonly ServiceName[] = [
  'etcdserverpb.KV',
  'etcdserverpb.Watch',
  'etcdserverpb.Lease',
  'etcdserverpb.Cluster',
  'etcdserverpb.Maintenance',
  'etcdserverpb.Auth',
  'v3lockpb.Lock',
  'v3electionpb.Election',
  'dkv.v1.KV',
  'dkv.v1.Counter',
  'dkv.v1.Watch',
];

export interface FuzzedMethod {
  readonly service: ServiceName;
  readonly name: string;
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  readonly requestType: protobuf.Type;
}

export function everyMethod(): FuzzedMethod[] {
  const methods: FuzzedMethod[] = [];
  for (const service of fuzzedServices) {
    const root = service.startsWith('dkv.') ? dkvRoot() : etcdRoot();
    for (const method of root.lookupService(service).methodsArray) {
      method.resolve();
      methods.push({
        service,
        name: method.name,
        path: methodPath(service, method.name),
        requestStream: method.requestStream === true,
        responseStream: method.responseStream === true,
        requestType: method.resolvedRequestType!,
      });
    }
  }
  return methods;
}

/** How one call ended. */
export type Outcome =
  | { readonly kind: 'ok'; readonly responses: number }
  | { readonly kind: 'status'; readonly code: grpc.status; readonly details: string; readonly responses: number }
  /** A server stream still open after the observation window (then cancelled by us). */
  | { readonly kind: 'open'; readonly responses: number };

/** A unary call's deadline: far above any answer a healthy single node gives, so expiry means a hang. */
export const callDeadlineMs = 5000;
/** How long a server stream that may legitimately stay open (Observe, WatchPrefix) is watched. */
export const streamWindowMs = 150;

const identity = (bytes: Buffer): Buffer => bytes;

/** Keys every settled state holds, so that cases can name existing keys. */
export const seedKeys: readonly string[] = ['fuzz/a', 'fuzz/b', 'fuzz/c/1'];

/** The state a refused call must not change. */
export interface Fingerprint {
  readonly revision: number;
  readonly compactRevision: number;
  readonly hash: number;
  readonly leases: readonly string[];
  readonly alarms: readonly string[];
  readonly members: readonly string[];
}

export class FuzzNode {
  private constructor(
    readonly cluster: TestCluster,
    readonly client: EtcdChannel,
    private readonly raw: grpc.Client,
    private readonly pidAtStart: number | undefined,
  ) {}

  static async start(args: readonly string[] = []): Promise<FuzzNode> {
    const cluster = await TestCluster.start({ nodes: 1, args });
    const endpoint = cluster.endpoint(0);
    const raw = new grpc.Client(endpoint, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      'grpc.max_send_message_length': 64 * 1024 * 1024,
    });
    // int64 as exact strings: lease ids past 2^53 must be revoked by their own id.
    return new FuzzNode(cluster, etcdChannel(endpoint, { decode: longsAsStrings }), raw, cluster.pid(0));
  }

  async stop(): Promise<void> {
    this.raw.close();
    this.client.close();
    await this.cluster.stop();
  }

  get endpoint(): string {
    return this.cluster.endpoint(0);
  }

  get clientPort(): number {
    return this.cluster.nodes[0]!.clientPort;
  }

  /** The same process as at the start, still running (a crash or an exit fails here, with the log). */
  expectAlive(label: string): void {
    expect(this.cluster.running(0), `${label}: the server exited\n${this.cluster.logs()}`).toBe(true);
    expect(this.cluster.pid(0), `${label}: the server was restarted\n${this.cluster.logs()}`).toBe(this.pidAtStart);
  }

  /** One call of `method` with `frames` as its request message(s), as raw bytes. */
  call(method: FuzzedMethod, frames: readonly Buffer[]): Promise<Outcome> {
    if (method.requestStream) return this.bidi(method.path, frames);
    if (method.responseStream) return this.serverStream(method.path, frames[0] ?? Buffer.alloc(0));
    return this.unary(method.path, frames[0] ?? Buffer.alloc(0));
  }

  unary(path: string, body: Buffer): Promise<Outcome> {
    return new Promise((resolve) => {
      this.raw.makeUnaryRequest(path, identity, identity, body, { deadline: Date.now() + callDeadlineMs }, (error) => {
        resolve(error === null ? { kind: 'ok', responses: 1 } : { kind: 'status', code: error.code, details: error.details, responses: 0 });
      });
    });
  }

  /**
   * A server stream: its end within the deadline, or — since Observe and WatchPrefix may stay open
   * for as long as the client wants — open after `streamWindowMs`, which is also an answer.
   */
  serverStream(path: string, body: Buffer): Promise<Outcome> {
    return new Promise((resolve) => {
      let responses = 0;
      let done = false;
      const call = this.raw.makeServerStreamRequest(path, identity, identity, body, { deadline: Date.now() + callDeadlineMs });
      const finish = (outcome: Outcome): void => {
        if (done) return;
        done = true;
        clearTimeout(window);
        resolve(outcome);
      };
      const window = setTimeout(() => {
        finish({ kind: 'open', responses });
        call.cancel();
      }, streamWindowMs);
      call.on('data', () => responses++);
      call.on('error', (error: grpc.ServiceError) => finish({ kind: 'status', code: error.code, details: error.details, responses }));
      call.on('status', (status: grpc.StatusObject) => {
        finish(status.code === grpc.status.OK ? { kind: 'ok', responses } : { kind: 'status', code: status.code, details: status.details, responses });
      });
    });
  }

  /** A bidi stream: every frame written, the write side closed; it must end within the deadline. */
  bidi(path: string, frames: readonly Buffer[]): Promise<Outcome> {
    return new Promise((resolve) => {
      let responses = 0;
      let done = false;
      const call = this.raw.makeBidiStreamRequest(path, identity, identity, { deadline: Date.now() + callDeadlineMs });
      const finish = (outcome: Outcome): void => {
        if (done) return;
        done = true;
        resolve(outcome);
      };
      call.on('data', () => responses++);
      call.on('error', (error: grpc.ServiceError) => finish({ kind: 'status', code: error.code, details: error.details, responses }));
      call.on('status', (status: grpc.StatusObject) => {
        finish(status.code === grpc.status.OK ? { kind: 'ok', responses } : { kind: 'status', code: status.code, details: status.details, responses });
      });
      for (const frame of frames) call.write(frame);
      call.end();
    });
  }

  /**
   * A gRPC request whose body is `payload` as it goes on the HTTP/2 stream — length prefixes and
   * compression flags included, so they can lie. Resolves with the grpc-status the server sent
   * (in trailers or headers), or the HTTP/2 stream's close code when it sent none.
   */
  framed(path: string, payload: Buffer, mayStayOpen = false, headers: Readonly<Record<string, string>> = {}): Promise<{ grpcStatus: number | undefined; rstCode: number; open: boolean; httpStatus: number | undefined; dataBytes: number }> {
    return new Promise((resolve, reject) => {
      const session = http2Connect(`http://${this.endpoint}`);
      let grpcStatus: number | undefined;
      let httpStatus: number | undefined;
      let dataBytes = 0;
      const timer = setTimeout(() => {
        session.destroy();
        if (mayStayOpen) resolve({ grpcStatus, rstCode: 0, open: true, httpStatus, dataBytes });
        else reject(new Error(`no answer to a framed request on ${path} within ${callDeadlineMs} ms`));
      }, mayStayOpen ? streamWindowMs : callDeadlineMs + 1000);
      session.on('error', () => undefined);
      const stream = session.request({
        [http2Constants.HTTP2_HEADER_METHOD]: 'POST',
        [http2Constants.HTTP2_HEADER_PATH]: path,
        [http2Constants.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
        te: 'trailers',
        'grpc-timeout': `${callDeadlineMs}m`,
        ...headers,
      });
      const readStatus = (headers: Record<string, unknown>): void => {
        const value = headers['grpc-status'];
        if (value !== undefined) grpcStatus = Number(value);
      };
      stream.on('response', (responseHeaders) => {
        httpStatus = Number(responseHeaders[http2Constants.HTTP2_HEADER_STATUS]);
        readStatus(responseHeaders);
      });
      stream.on('trailers', readStatus);
      stream.on('data', (chunk: Buffer) => (dataBytes += chunk.length));
      stream.on('error', () => undefined);
      stream.on('close', () => {
        clearTimeout(timer);
        const rstCode = stream.rstCode ?? 0;
        session.close();
        resolve({ grpcStatus, rstCode, open: false, httpStatus, dataBytes });
      });
      stream.end(payload);
    });
  }

  async fingerprint(): Promise<Fingerprint> {
    const hashKv = await this.client.maintenance('HashKV', { revision: 0 });
    const header = hashKv.header as { revision: number };
    const leases = (await this.client.call('etcdserverpb.Lease', 'LeaseLeases', {})).leases as Array<{ ID: string }>;
    const alarms = (await this.client.maintenance('Alarm', { action: 0, memberID: 0, alarm: 0 })).alarms as Decoded[];
    const members = (await this.client.call('etcdserverpb.Cluster', 'MemberList', {})).members as Decoded[];
    return {
      revision: Number(header.revision),
      compactRevision: Number(hashKv.compact_revision),
      hash: Number(hashKv.hash),
      leases: leases.map((l) => l.ID).sort(),
      alarms: alarms.map((a) => JSON.stringify(a)).sort(),
      members: members.map((m) => JSON.stringify(m)).sort(),
    };
  }

  /**
   * After a call that was accepted: revokes every lease, disarms every alarm, and replaces the
   * keyspace by the seed keys (a key with a TTL, or a counter's, must not expire while a later case
   * is measured; writing a key clears its TTL), compacted. The fingerprint then.
   */
  async settle(): Promise<Fingerprint> {
    const every = Buffer.from([0]);
    await this.client.kv('DeleteRange', { key: every, range_end: every });
    let revision = '0';
    for (const key of seedKeys) revision = ((await this.client.kv('Put', { key: Buffer.from(key), value: Buffer.from('seed') })).header as { revision: string }).revision;
    // HashKV hashes every revision since the last compaction: without one, each fingerprint would
    // hash the whole history of the run (megabyte values included).
    await this.client.kv('Compact', { revision, physical: true });
    const leases = (await this.client.call('etcdserverpb.Lease', 'LeaseLeases', {})).leases as Array<{ ID: string }>;
    for (const lease of leases) {
      await this.client.call('etcdserverpb.Lease', 'LeaseRevoke', { ID: lease.ID }).catch((error: { code?: number }) => {
        // Expired between the list and the revoke.
        if (error.code !== grpc.status.NOT_FOUND) throw error;
      });
    }
    const alarms = (await this.client.maintenance('Alarm', { action: 0, memberID: 0, alarm: 0 })).alarms as Array<{ memberID: string; alarm: number }>;
    for (const alarm of alarms) await this.client.maintenance('Alarm', { action: 2, memberID: alarm.memberID, alarm: alarm.alarm });
    return this.fingerprint();
  }
}

/** What every outcome must be: an answer, never a hang, never an unhandled exception in a handler. */
export function expectAnswered(method: FuzzedMethod, outcome: Outcome, label: string): void {
  if (outcome.kind !== 'status') return;
  expect(outcome.code, `${method.path} ${label}: hung until the deadline`).not.toBe(grpc.status.DEADLINE_EXCEEDED);
  // A handler that threw something that is no client error: the generic internal error (its stack is in the log).
  expect(outcome.details, `${method.path} ${label}: an unhandled error in the handler`).not.toBe('dkv: internal error');
  // The connection broke or the server went away.
  expect(outcome.code, `${method.path} ${label}: ${outcome.details}`).not.toBe(grpc.status.UNAVAILABLE);
}

/**
 * Tracks the state across a run of cases: a refused call must leave the fingerprint as it was;
 * an accepted one may change it, and the state is settled before the next case.
 */
export class StateTracker {
  private current: Fingerprint | undefined;
  refused = 0;
  accepted = 0;
  open = 0;

  constructor(private readonly node: FuzzNode) {}

  /** After a failed case (its state unknown): the next case starts from a settled state. */
  reset(): void {
    this.current = undefined;
  }

  async before(): Promise<void> {
    this.current ??= await this.node.settle();
  }

  async after(method: FuzzedMethod, outcome: Outcome, label: string): Promise<void> {
    this.node.expectAlive(`${method.path} ${label}`);
    expectAnswered(method, outcome, label);
    if (outcome.kind === 'status' && outcome.responses === 0) {
      this.refused++;
      const now = await this.node.fingerprint();
      expect(now, `${method.path} ${label}: refused with ${grpc.status[outcome.code]} "${outcome.details}" but the state changed`).toEqual(this.current);
    } else {
      if (outcome.kind === 'open') this.open++;
      else this.accepted++;
      this.current = await this.node.settle();
    }
  }

  /** After a read (or a write that must change nothing): whatever its answer, the state is as it was. */
  async expectUnchanged(method: FuzzedMethod, outcome: Outcome, label: string): Promise<void> {
    this.node.expectAlive(`${method.path} ${label}`);
    expectAnswered(method, outcome, label);
    if (outcome.kind === 'status') this.refused++;
    else if (outcome.kind === 'open') this.open++;
    else this.accepted++;
    const now = await this.node.fingerprint();
    expect(now, `${method.path} ${label}: answered ${JSON.stringify(outcome)} but the state changed`).toEqual(this.current);
  }

  /** After a refusal expected by the case: nothing changed (the outcome must be a refusal). */
  async expectRefused(method: FuzzedMethod, outcome: Outcome, label: string, code?: grpc.status, details?: string): Promise<void> {
    expect(outcome.kind, `${method.path} ${label}: expected a refusal, got ${JSON.stringify(outcome)}`).toBe('status');
    if (outcome.kind !== 'status') return;
    if (code !== undefined) expect([grpc.status[outcome.code], outcome.details], `${method.path} ${label}`).toEqual([grpc.status[code], details ?? outcome.details]);
    await this.after(method, outcome, label);
  }
}

/** A node still serves a normal write and read. */
export async function expectServes(node: FuzzNode, label: string): Promise<void> {
  node.expectAlive(label);
  const key = Buffer.from(`fuzz/after/${label}`);
  await node.client.kv('Put', { key, value: Buffer.from('ok') });
  const read = await node.client.kv('Range', { key });
  expect((read.kvs as Array<{ value: Buffer }>).map((kv) => kv.value.toString())).toEqual(['ok']);
}
