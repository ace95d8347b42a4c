/**
 * Each client connection a node accepts opens wide receive windows (client-sessions.ts): a client
 * learns the stream window from the node's SETTINGS and the connection window from its
 * WINDOW_UPDATE; Txns larger than HTTP/2's initial 64 KiB still go through, several at once. And
 * the node serves unary calls itself (direct-unary.ts), streams through grpc-js.
 */
import { connect, type ClientHttp2Session } from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientConnectionWindowBytes, clientStreamWindowBytes, http2InitialWindowBytes } from '../../src/server/limits.js';
import { directUnaryStatus } from '../../src/server/direct-unary.js';
import { etcdType } from '../../src/etcd-proto.js';
import { TestCluster, etcdChannel, waitUntil } from './cluster-harness.js';

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 1 });
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

describe('a client connection of a node', () => {
  it("gets the node's stream window in its SETTINGS and its connection window in a WINDOW_UPDATE", async () => {
    expect(clientStreamWindowBytes).toBeGreaterThan(http2InitialWindowBytes);
    expect(clientConnectionWindowBytes).toBeGreaterThanOrEqual(clientStreamWindowBytes);
    const session: ClientHttp2Session = connect(`http://${cluster.endpoint(0)}`);
    // A reset fails the wait below with its message, not as an unhandled 'error'.
    session.on('error', () => undefined);
    try {
      await waitUntil(() => session.remoteSettings?.initialWindowSize === clientStreamWindowBytes, 5_000, () => `the stream window the node announced: ${session.remoteSettings?.initialWindowSize}`);
      await waitUntil(() => session.state.remoteWindowSize === clientConnectionWindowBytes, 5_000, () => `the connection window: ${session.state.remoteWindowSize}`);
    } finally {
      session.destroy();
    }
  });

  it("still takes Txns larger than HTTP/2's initial window, 8 at once on one connection (the first test proves the windows)", async () => {
    const channel = etcdChannel(cluster.endpoint(0));
    try {
      const value = Buffer.alloc(1024, 0x61);
      const txn = (n: number) => ({ success: Array.from({ length: 128 }, (_, i) => ({ request_put: { key: Buffer.from(`window/${n}/${i}`), value } })) });
      const answers = (await Promise.all(Array.from({ length: 8 }, (_, n) => channel.kv('Txn', txn(n))))) as Array<{ succeeded: boolean }>;
      expect(answers.map((a) => a.succeeded)).toEqual(Array(8).fill(true));
      const { count } = (await channel.kv('Range', { key: Buffer.from('window/'), range_end: Buffer.from('window0'), count_only: true })) as { count: number | string };
      expect(Number(count)).toBe(8 * 128);
    } finally {
      channel.close();
    }
  });

  it('has its unary calls served by direct-unary.ts, not grpc-js (a request only the direct path refuses)', async () => {
    // A message flagged compressed on a call that names no compression: grpc-js would read it as
    // uncompressed and answer the Range; the direct path refuses it (the module's comment).
    const message = etcdType('etcdserverpb.RangeRequest').encode({ key: Buffer.from('direct') }).finish();
    const frame = Buffer.alloc(5 + message.byteLength);
    frame[0] = 1;
    frame.writeUInt32BE(message.byteLength, 1);
    frame.set(message, 5);
    const session: ClientHttp2Session = connect(`http://${cluster.endpoint(0)}`);
    session.on('error', () => undefined);
    try {
      const stream = session.request({ ':method': 'POST', ':path': '/etcdserverpb.KV/Range', 'content-type': 'application/grpc', te: 'trailers' });
      let status: unknown;
      let details: unknown;
      stream.on('response', (headers) => ((status = headers['grpc-status']), (details = headers['grpc-message'])));
      stream.on('trailers', (trailers) => ((status ??= trailers['grpc-status']), (details ??= trailers['grpc-message'])));
      stream.resume();
      stream.end(frame);
      await new Promise<void>((resolve, reject) => (stream.on('close', resolve), stream.on('error', reject)));
      const refusal = directUnaryStatus.compressedFlag();
      expect({ status: Number(status), details: decodeURIComponent(String(details)) }).toEqual({ status: refusal.code, details: refusal.details });
      // The same call, well formed, is answered.
      const channel = etcdChannel(cluster.endpoint(0));
      try {
        const { count } = (await channel.kv('Range', { key: Buffer.from('direct') })) as { count: number | string };
        expect(Number(count)).toBe(0);
      } finally {
        channel.close();
      }
    } finally {
      session.destroy();
    }
  });
});
