/**
 * DkvClient's retry rules against scripted in-process gRPC servers (loopback, no cluster): reads
 * are retried; a write whose outcome is unknown rejects with UNKNOWN_OUTCOME after one attempt
 * unless marked idempotent; a write the server refused without applying ("etcdserver: no
 * leader") is sent again; a server that cannot be connected is skipped for the next one; the
 * deadline ends retries with TIMEOUT; server errors map to stable codes.
 */
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { DkvClient, type DkvClientOptions, isDkvError, type LeaseLostEvent, type ServerEvent } from '../../src/client/index.js';
import { type Incoming, serviceDefinition } from '../../src/server/grpc-service.js';

const header = { cluster_id: 1, member_id: 2, revision: 10, raft_term: 3 };

type Reply = { readonly error: { code: grpc.status; details: string } } | { readonly ok: true } | { readonly hang: true };

interface Scripted {
  readonly endpoint: string;
  readonly calls: Map<string, number>;
  /** Every unary call's method, in the order they arrived. */
  readonly order: string[];
  /** Replies per method, consumed in order; the last one repeats. */
  readonly script: Map<string, Reply[]>;
  close(): void;
}

const cleanups: Array<() => void> = [];
afterEach(() => {
  while (cleanups.length > 0) cleanups.pop()!();
});

async function scripted(): Promise<Scripted> {
  const calls = new Map<string, number>();
  const order: string[] = [];
  const script = new Map<string, Reply[]>();
  const handler =
    (method: string, ok: object) =>
    (_call: grpc.ServerUnaryCall<Incoming<Record<string, unknown>>, object>, callback: grpc.sendUnaryData<object>): void => {
      calls.set(method, (calls.get(method) ?? 0) + 1);
      order.push(method);
      const replies = script.get(method) ?? [{ ok: true }];
      const reply = replies.length > 1 ? replies.shift()! : replies[0]!;
      if ('hang' in reply) return;
      if ('error' in reply) callback(reply.error);
      else callback(null, ok);
    };
  const server = new grpc.Server();
  server.addService(serviceDefinition('etcdserverpb.KV'), {
    Range: handler('Range', { header, kvs: [{ key: Buffer.from('k'), value: Buffer.from('v'), create_revision: 5, mod_revision: 5, version: 1 }], count: 1 }),
    Put: handler('Put', { header }),
    DeleteRange: handler('DeleteRange', { header, deleted: 1 }),
    Txn: handler('Txn', { header, succeeded: true }),
    Compact: handler('Compact', { header }),
  });
  server.addService(serviceDefinition('etcdserverpb.Lease'), {
    LeaseGrant: handler('LeaseGrant', { header, ID: 7, TTL: 1 }),
    // Answers renewals with the scripted reply: ok = TTL 1, an error = TTL 0 (gone), hang = never.
    LeaseKeepAlive: (call: grpc.ServerDuplexStream<Incoming<Record<string, unknown>>, object>) => {
      call.on('data', () => {
        calls.set('LeaseKeepAlive', (calls.get('LeaseKeepAlive') ?? 0) + 1);
        const reply = (script.get('LeaseKeepAlive') ?? [{ ok: true }])[0]!;
        if ('hang' in reply) return;
        call.write({ header, ID: 7, TTL: 'ok' in reply ? 1 : 0 });
      });
      call.on('error', () => {});
    },
  });
  server.addService(serviceDefinition('v3lockpb.Lock'), {
    Lock: handler('Lock', { header, key: Buffer.from('jobs/7') }),
    Unlock: handler('Unlock', { header }),
  });
  server.addService(serviceDefinition('etcdserverpb.Maintenance'), {
    Status: handler('Status', { header, leader: 0 }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  const close = (): void => server.forceShutdown();
  cleanups.push(close);
  return { endpoint: `127.0.0.1:${port}`, calls, order, script, close };
}

function client(options: DkvClientOptions): DkvClient {
  const c = new DkvClient({ reconnect: { initialDelayMs: 5, maxDelayMs: 50, multiplier: 2, jitter: 0.5 }, connectTimeoutMs: 300, ...options });
  cleanups.push(() => c.close());
  return c;
}

async function rejection(promise: Promise<unknown>): Promise<{ code: string; grpcStatus: number | undefined; serverMessage: string | undefined }> {
  try {
    await promise;
  } catch (error) {
    if (isDkvError(error)) return { code: error.code, grpcStatus: error.grpcStatus, serverMessage: error.serverMessage };
    throw error;
  }
  throw new Error('expected a rejection');
}

const lost = { error: { code: grpc.status.UNAVAILABLE, details: 'Connection dropped' } } as const;

describe('DkvClient retry policy', () => {
  it('rejects a put whose outcome is unknown with UNKNOWN_OUTCOME after exactly one attempt', async () => {
    const s = await scripted();
    s.script.set('Put', [lost]);
    const c = client({ servers: [{ address: s.endpoint }] });
    expect(await rejection(c.put('k', 'v'))).toMatchObject({ code: 'UNKNOWN_OUTCOME', grpcStatus: grpc.status.UNAVAILABLE, serverMessage: 'Connection dropped' });
    expect(s.calls.get('Put')).toBe(1);
    // A deadline leaves the outcome unknown too.
    s.script.set('DeleteRange', [{ hang: true }]);
    expect((await rejection(c.delete('k', { timeoutMs: 200 }))).code).toBe('UNKNOWN_OUTCOME');
    expect(s.calls.get('DeleteRange')).toBe(1);
  });

  it('retries a read, an idempotent put and an idempotent txn until they succeed', async () => {
    const s = await scripted();
    s.script.set('Range', [lost, lost, { ok: true }]);
    s.script.set('Put', [lost, { ok: true }]);
    s.script.set('Txn', [lost, { ok: true }]);
    const c = client({ servers: [{ address: s.endpoint }] });
    expect((await c.get('k'))?.value.toString()).toBe('v');
    expect(s.calls.get('Range')).toBe(3);
    await c.put('k', 'v', { idempotent: true });
    expect(s.calls.get('Put')).toBe(2);
    expect((await c.txn({ idempotent: true }).commit()).succeeded).toBe(true);
    expect(s.calls.get('Txn')).toBe(2);
  });

  it('sends a write again when the server refused it unapplied ("no leader")', async () => {
    const s = await scripted();
    s.script.set('Put', [{ error: { code: grpc.status.UNAVAILABLE, details: 'etcdserver: no leader' } }, { ok: true }]);
    const c = client({ servers: [{ address: s.endpoint }] });
    await c.put('k', 'v');
    expect(s.calls.get('Put')).toBe(2);
  });

  it('sends a write to the next server when the preferred one cannot be connected, and says so', async () => {
    const dead = await scripted();
    dead.close();
    const live = await scripted();
    const c = client({ servers: [{ address: dead.endpoint, priority: 2 }, { address: live.endpoint, priority: 1 }] });
    const events: ServerEvent[] = [];
    c.on('server', (e) => events.push(e));
    await c.put('k', 'v');
    expect(live.calls.get('Put')).toBe(1);
    await new Promise((resolve) => setImmediate(resolve));
    expect(events.map((e) => [e.reason, e.address])).toEqual([
      ['initial', dead.endpoint],
      ['failover', live.endpoint],
    ]);
    expect(c.server).toBe(live.endpoint);
  });

  it('ends retries at the deadline: TIMEOUT, or UNAVAILABLE when no server could be reached', async () => {
    const s = await scripted();
    s.script.set('Range', [{ hang: true }]);
    const c = client({ servers: [{ address: s.endpoint }], timeoutMs: 300 });
    const states: string[] = [];
    c.on('state', (state) => states.push(state));
    expect((await rejection(c.get('k'))).code).toBe('TIMEOUT');
    expect(s.calls.get('Range')).toBe(1);
    s.close();
    const started = Date.now();
    expect((await rejection(c.get('k'))).code).toBe('UNAVAILABLE');
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(c.state).toBe('unavailable');
    c.close();
    await new Promise((resolve) => setImmediate(resolve));
    expect(states).toEqual(['unavailable', 'closed']);
  });

  it('maps server errors to stable codes and rejects them at once', async () => {
    const s = await scripted();
    s.script.set('Range', [{ error: { code: grpc.status.OUT_OF_RANGE, details: 'etcdserver: mvcc: required revision has been compacted' } }]);
    s.script.set('Put', [{ error: { code: grpc.status.NOT_FOUND, details: 'etcdserver: requested lease not found' } }]);
    s.script.set('Txn', [{ error: { code: grpc.status.INVALID_ARGUMENT, details: 'etcdserver: duplicate key given in txn request' } }]);
    const c = client({ servers: [{ address: s.endpoint }] });
    expect(await rejection(c.get('k', { revision: 1 }))).toMatchObject({ code: 'COMPACTED', grpcStatus: grpc.status.OUT_OF_RANGE });
    expect((await rejection(c.put('k', 'v', { lease: 5n }))).code).toBe('LEASE_NOT_FOUND');
    expect((await rejection(c.txn().commit())).code).toBe('INVALID_ARGUMENT');
    expect([s.calls.get('Range'), s.calls.get('Put'), s.calls.get('Txn')]).toEqual([1, 1, 1]);
    expect((await rejection(c.counter('n').get())).code).toBe('NOT_SUPPORTED');
  });

  it("reports a lease 'lost' when renewals go unanswered past its TTL, or the server says it is gone", async () => {
    const s = await scripted();
    s.script.set('LeaseKeepAlive', [{ hang: true }]);
    const c = client({ servers: [{ address: s.endpoint }] });
    const started = Date.now();
    const lease = await c.grant(1);
    expect(lease.id).toBe(7n);
    const unreachable = await new Promise<LeaseLostEvent>((resolve) => lease.once('lost', resolve));
    expect(unreachable.reason).toBe('unreachable');
    // Never later than the TTL after the grant was sent (plus timer slack).
    expect(Date.now() - started).toBeLessThan(1_500);
    expect(s.calls.get('LeaseKeepAlive')).toBeGreaterThanOrEqual(1);
    s.script.set('LeaseKeepAlive', [{ ok: true }]);
    const kept = await c.grant(1);
    let renewals = 0;
    kept.on('renewed', () => renewals++);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(kept.lost).toBe(false);
    expect(renewals).toBeGreaterThanOrEqual(3);
    s.script.set('LeaseKeepAlive', [lost]);
    expect((await new Promise<LeaseLostEvent>((resolve) => kept.once('lost', resolve))).reason).toBe('expired');
  });

  it('deletes its own lock key before sending a Lock whose outcome was unknown again', async () => {
    const s = await scripted();
    const dropped = { error: { code: grpc.status.UNAVAILABLE, details: 'Connection dropped' } };
    s.script.set('Lock', [dropped, { ok: true }]);
    const c = client({ servers: [{ address: s.endpoint }] });
    const held = await c.lock('jobs', { lease: 7n });
    expect(held.key.toString()).toBe('jobs/7');
    // The own key's delete came between the two Lock calls.
    expect(s.order.filter((m) => m === 'Lock' || m === 'DeleteRange')).toEqual(['Lock', 'DeleteRange', 'Lock']);
  });

  it('ends a watch whose server does not implement Watch with that error instead of reopening it forever', async () => {
    const s = await scripted();
    const c = client({ servers: [{ address: s.endpoint }] });
    const consume = async (): Promise<void> => {
      for await (const batch of c.watch('k')) expect(batch).toBeUndefined();
    };
    expect(await rejection(consume())).toMatchObject({ grpcStatus: grpc.status.UNIMPLEMENTED });
  });

  it('rejects a write that was sent when its signal aborts or the client closes with UNKNOWN_OUTCOME', async () => {
    const s = await scripted();
    s.script.set('Put', [{ hang: true }]);
    const c = client({ servers: [{ address: s.endpoint }] });
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 50);
    expect((await rejection(c.put('k', 'v', { signal: abort.signal }))).code).toBe('UNKNOWN_OUTCOME');
    const pending = c.put('k', 'v');
    setTimeout(() => c.close(), 50);
    expect((await rejection(pending)).code).toBe('UNKNOWN_OUTCOME');
  });

  it('rejects an aborted call with ABORTED and every call after close with CLOSED', async () => {
    const s = await scripted();
    s.script.set('Range', [{ hang: true }]);
    const c = client({ servers: [{ address: s.endpoint }] });
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 50);
    expect((await rejection(c.get('k', { signal: abort.signal }))).code).toBe('ABORTED');
    const pending = c.get('k');
    setTimeout(() => c.close(), 50);
    const closedAt = Date.now();
    expect((await rejection(pending)).code).toBe('CLOSED');
    expect(Date.now() - closedAt).toBeLessThan(1_000);
    expect((await rejection(c.get('k'))).code).toBe('CLOSED');
    expect(c.state).toBe('closed');
  });
});
