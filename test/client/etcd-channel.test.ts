/**
 * src/client's EtcdChannel against a tiny grpc-js server serving the etcd services from the same
 * protos: how responses decode (int64 as numbers, as strings, or the protobufjs message), a
 * deadline failing with DEADLINE_EXCEEDED, a failure reported once (no retry), raw-bytes calls,
 * the message size limit, a channel-wide auth token, and the Watch stream's one `onEnd`.
 */
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { EtcdChannel, type EtcdChannelOptions, grpcStatus, longsAsStrings, methodCodec, methodPath, type RpcError } from '../../src/client/index.js';
import { etcdType, int64, type Int64 } from '../../src/etcd-proto.js';
import { type Incoming, serviceDefinition } from '../../src/server/grpc-service.js';

/** A revision past 2^32, so a Long has a high word. */
const revision = 12_345_678_901_234;

interface Served {
  endpoint: string;
  /** Calls each method received, by name. */
  readonly calls: Map<string, number>;
  /** The raw request bytes of the last Put. */
  lastPut: Buffer | undefined;
  /** The `token` metadata each method's last call carried (undefined: none). */
  readonly tokens: Map<string, string | undefined>;
}

const cleanups: Array<() => void> = [];
afterEach(() => {
  while (cleanups.length > 0) cleanups.pop()!();
});

type Unary = (call: grpc.ServerUnaryCall<Incoming<Record<string, unknown>>, object>, callback: grpc.sendUnaryData<object>) => void;

async function serve(): Promise<Served> {
  const served: Served = { endpoint: '', calls: new Map(), lastPut: undefined, tokens: new Map() };
  const count = (method: string, call?: { metadata: grpc.Metadata }): void => {
    served.calls.set(method, (served.calls.get(method) ?? 0) + 1);
    const token = call?.metadata.get('token')[0];
    served.tokens.set(method, token === undefined ? undefined : String(token));
  };
  const header = { cluster_id: 1, member_id: 2, revision, raft_term: 3 };
  const kv: Record<string, Unary> = {
    Range: (call, callback) => {
      count('Range', call);
      const key = call.request.message.key as Buffer;
      // A key of 'big' answers with a 2 KiB value (for the size limit).
      const value = key.toString() === 'big' ? Buffer.alloc(2048, 1) : Buffer.from('v');
      callback(null, { header, kvs: [{ key, value, create_revision: revision, mod_revision: revision, version: 1 }], count: 1 });
    },
    Put: (call, callback) => {
      count('Put', call);
      served.lastPut = call.request.raw;
      callback(null, { header });
    },
    // Never answers: a caller's deadline is all that ends it.
    DeleteRange: () => count('DeleteRange'),
    Txn: (_call, callback) => {
      count('Txn');
      callback({ code: grpc.status.UNAVAILABLE, details: 'not now' });
    },
    Compact: (_call, callback) => callback(null, { header }),
  };
  const watch = {
    Watch: (call: grpc.ServerDuplexStream<Incoming<Record<string, unknown>>, object>) => {
      count('Watch', call);
      call.on('data', (request: Incoming<Record<string, unknown>>) => {
        if (request.message.create_request) call.write({ header, watch_id: 7, created: true });
        // A progress request asks this server to end the stream.
        else if (request.message.progress_request) call.end();
      });
      call.on('error', () => {});
    },
  };
  const server = new grpc.Server();
  server.addService(serviceDefinition('etcdserverpb.KV'), kv);
  server.addService(serviceDefinition('etcdserverpb.Watch'), watch);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  cleanups.push(() => server.forceShutdown());
  served.endpoint = `127.0.0.1:${port}`;
  return served;
}

function channel(endpoint: string, options?: EtcdChannelOptions): EtcdChannel {
  const opened = new EtcdChannel(endpoint, options);
  cleanups.push(() => opened.close());
  return opened;
}

const failure = (promise: Promise<unknown>): Promise<RpcError> =>
  promise.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (error: RpcError) => error,
  );

describe('EtcdChannel', () => {
  it('encodes requests from the proto field names and decodes int64 as numbers by default', async () => {
    const served = await serve();
    const response = await channel(served.endpoint).kv('Range', { key: Buffer.from('k'), limit: 5 });
    expect((response.header as { revision: unknown }).revision).toBe(revision);
    const [kv] = response.kvs as Array<{ key: Buffer; value: Buffer; mod_revision: unknown; lease: unknown }>;
    expect(kv!.key.toString()).toBe('k');
    expect(kv!.value).toBeInstanceOf(Buffer);
    expect(kv!.mod_revision).toBe(revision);
    expect(kv!.lease).toBe(0); // defaults filled in
    expect(response.more).toBe(false);
  });

  it('decodes int64 as strings or as the protobufjs message when asked', async () => {
    const served = await serve();
    const asStrings = await channel(served.endpoint, { decode: longsAsStrings }).kv('Range', { key: Buffer.from('k') });
    expect((asStrings.header as { revision: unknown }).revision).toBe(String(revision));
    const message = await channel(served.endpoint).unary(methodCodec<{ header: { revision: Int64 } }>('etcdserverpb.KV', 'Range', 'message'), { key: Buffer.from('k') });
    expect(typeof message.header.revision).toBe('object'); // a Long
    expect(int64(message.header.revision)).toBe(revision);
  });

  it('fails a call at its deadline with DEADLINE_EXCEEDED, or at the channel default', async () => {
    const served = await serve();
    const started = Date.now();
    const error = await failure(channel(served.endpoint).kv('DeleteRange', { key: Buffer.from('k') }, { timeoutMs: 200 }));
    expect(error.code).toBe(grpcStatus.DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeLessThan(5000);
    const byDefault = await failure(channel(served.endpoint, { callTimeoutMs: 200 }).kv('DeleteRange', { key: Buffer.from('k') }));
    expect(byDefault.code).toBe(grpcStatus.DEADLINE_EXCEEDED);
  });

  it('reports a failure once, as the server gave it, without retrying', async () => {
    const served = await serve();
    const error = await failure(channel(served.endpoint).kv('Txn', {}));
    expect(error.code).toBe(grpcStatus.UNAVAILABLE);
    expect(error.details).toBe('not now');
    expect(served.calls.get('Txn')).toBe(1);
  });

  it('fails with UNAVAILABLE when nothing listens, and waitForReady says which endpoint', async () => {
    const served = await serve();
    cleanups.pop()!(); // shut the server down
    const closed = channel(served.endpoint);
    const error = await failure(closed.kv('Range', { key: Buffer.from('k') }, { timeoutMs: 5000 }));
    expect(error.code).toBe(grpcStatus.UNAVAILABLE);
    await expect(closed.waitForReady(200)).rejects.toThrow(`cannot connect to ${served.endpoint}`);
  });

  it('sends pre-encoded bytes and hands back the raw response bytes', async () => {
    const served = await serve();
    const request = Buffer.from(etcdType('etcdserverpb.PutRequest').encode({ key: Buffer.from('a'), value: Buffer.from('b') }).finish());
    const response = await new Promise<Buffer | undefined>((resolve, reject) => {
      channel(served.endpoint).unaryBytes(methodPath('etcdserverpb.KV', 'Put'), request, 5000, (error, bytes) => (error ? reject(error) : resolve(bytes)));
    });
    expect(served.lastPut?.equals(request)).toBe(true);
    const decoded = etcdType('etcdserverpb.PutResponse').decode(response!) as unknown as { header: { revision: Int64 } };
    expect(int64(decoded.header.revision)).toBe(revision);
    expect(() => methodPath('etcdserverpb.KV', 'Nope')).toThrow(TypeError);
  });

  it("sends the channel's token with every call, pre-encoded bytes and streams included, unless a call names its own", async () => {
    const served = await serve();
    const plain = channel(served.endpoint);
    await plain.kv('Range', { key: Buffer.from('k') });
    expect(served.tokens.get('Range')).toBeUndefined();
    const signedIn = channel(served.endpoint, { token: 'channel.1' });
    await signedIn.kv('Range', { key: Buffer.from('k') });
    expect(served.tokens.get('Range')).toBe('channel.1');
    await signedIn.kv('Range', { key: Buffer.from('k') }, { token: 'call.2' });
    expect(served.tokens.get('Range')).toBe('call.2');
    const request = Buffer.from(etcdType('etcdserverpb.PutRequest').encode({ key: Buffer.from('a'), value: Buffer.from('b') }).finish());
    await new Promise<void>((resolve, reject) => signedIn.unaryBytes(methodPath('etcdserverpb.KV', 'Put'), request, 5000, (error) => (error ? reject(error) : resolve())));
    expect(served.tokens.get('Put')).toBe('channel.1');
    const stream = signedIn.bidiStreamBytes(methodPath('etcdserverpb.Watch', 'Watch'));
    const created = new Promise<void>((resolve) => stream.once('data', () => resolve()));
    stream.on('error', () => {});
    stream.write(Buffer.from(etcdType('etcdserverpb.WatchRequest').encode({ create_request: { key: Buffer.from('a') } }).finish()));
    await created;
    stream.cancel();
    expect(served.tokens.get('Watch')).toBe('channel.1');
  });

  it('refuses a response larger than messageBytesMax with RESOURCE_EXHAUSTED', async () => {
    const served = await serve();
    const small = channel(served.endpoint, { messageBytesMax: 1024 });
    expect((await small.kv('Range', { key: Buffer.from('k') })).count).toBe(1);
    const error = await failure(small.kv('Range', { key: Buffer.from('big') }));
    expect(error.code).toBe(grpcStatus.RESOURCE_EXHAUSTED);
  });

  it('ends a Watch stream once: no error when closed here, an error when the server ends it', async () => {
    const served = await serve();
    const watcher = channel(served.endpoint);
    const run = (closeHere: boolean): Promise<{ responses: Array<Record<string, unknown>>; ends: Array<RpcError | undefined> }> =>
      new Promise((resolve) => {
        const responses: Array<Record<string, unknown>> = [];
        const ends: Array<RpcError | undefined> = [];
        const stream = watcher.watch({
          onResponse: (response) => {
            responses.push(response);
            if (closeHere) stream.close();
            else stream.send({ progress_request: {} });
          },
          onEnd: (error) => {
            ends.push(error);
            // Anything after the end (a late close, a late event) must not call onEnd again.
            stream.close();
            setTimeout(() => resolve({ responses, ends }), 100);
          },
        });
        stream.send({ create_request: { key: Buffer.from('k') } });
      });
    const closed = await run(true);
    expect(closed.responses).toHaveLength(1);
    expect(closed.responses[0]).toMatchObject({ watch_id: 7, created: true, header: { revision } });
    expect(closed.ends).toEqual([undefined]);
    const ended = await run(false);
    expect(ended.ends).toHaveLength(1);
    expect(ended.ends[0]?.message).toBe('watch stream ended by the server');
  });
});
