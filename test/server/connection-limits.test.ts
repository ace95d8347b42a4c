/**
 * Limits per client connection (issue 17 §2): a client that floods one connection with calls, or
 * opens stream after stream on it, gets etcd's `too many requests` (RESOURCE_EXHAUSTED) past the
 * limit, the refusals are counted, the node's memory stays bounded, and another client on its own
 * connection is served all along.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Decoded, EtcdChannel, type RpcError, grpcStatus } from '../../src/client/etcd-channel.js';
import { TestCluster } from './cluster-harness.js';

const requestsMax = 64;
const streamsMax = 4;
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 1, args: [`--max-pending-requests-per-connection=${requestsMax}`, `--max-streams-per-connection=${streamsMax}`] });
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

/** A channel with a TCP connection of its own (grpc-js would otherwise share one). */
const ownChannel = (): EtcdChannel => new EtcdChannel(cluster.endpoint(0), { ownConnection: true, callTimeoutMs: 30_000 });

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${cluster.nodes[0]!.metricsUrl}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) if (line.startsWith(name)) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  return total;
}

describe('limits per client connection', () => {
  it('refuses calls past the limit on a flooding connection, and serves another connection meanwhile', async () => {
    const flooder = ownChannel();
    const other = ownChannel();
    try {
      await other.kv('Put', { key: Buffer.from('steady'), value: Buffer.from('1') });
      const rssBefore = await metric('process_resident_memory_bytes');
      const outcomes: string[] = [];
      const otherLatencies: number[] = [];
      for (let wave = 0; wave < 5; wave++) {
        const flood = Array.from({ length: 2000 }, (_, i) =>
          flooder.kv('Put', { key: Buffer.from(`flood/${i}`), value: Buffer.alloc(512, 1) }).then(
            () => 'ok',
            (error: RpcError) => `${error.code}: ${error.details}`,
          ),
        );
        // Meanwhile another client's reads go through, one after another.
        for (let i = 0; i < 5; i++) {
          const started = performance.now();
          const response: Decoded = await other.kv('Range', { key: Buffer.from('steady') });
          otherLatencies.push(performance.now() - started);
          expect(response.count).toBe(1);
        }
        outcomes.push(...(await Promise.all(flood)));
      }
      const refused = outcomes.filter((o) => o === `${grpcStatus.RESOURCE_EXHAUSTED}: etcdserver: too many requests`).length;
      // Nothing but successes and the limit's refusal.
      expect(outcomes.filter((o) => o !== 'ok' && !o.startsWith(`${grpcStatus.RESOURCE_EXHAUSTED}:`))).toEqual([]);
      expect(refused).toBeGreaterThan(0);
      expect(outcomes.filter((o) => o === 'ok').length).toBeGreaterThanOrEqual(requestsMax);
      expect(await metric('dkv_connection_limit_refused_total{kind="request"}')).toBe(refused);
      // 10,000 calls of 0.5 KiB went by; the node holds at most the admitted ones at a time.
      const rssAfter = await metric('process_resident_memory_bytes');
      expect(rssAfter - rssBefore, `RSS ${rssBefore} -> ${rssAfter}`).toBeLessThan(200 * 1024 * 1024);
      expect(otherLatencies).toHaveLength(25);
    } finally {
      flooder.close();
      other.close();
    }
  }, 120_000);

  it('refuses a stream past the limit on one connection; a closed stream gives its place back', async () => {
    const channel = ownChannel();
    /** Opens a watch stream and creates a watcher: 'created', or the status that ended the stream. */
    const open = async (): Promise<{ outcome: string; close(): void }> => {
      let settle: (outcome: string) => void = () => undefined;
      const settled = new Promise<string>((resolve) => (settle = resolve));
      const stream = channel.watch({
        onResponse: (r) => settle(r.created === true ? 'created' : JSON.stringify(r)),
        onEnd: (error) => settle(error === undefined ? 'ended' : `${error.code}: ${error.details}`),
      });
      stream.send({ create_request: { key: Buffer.from('k') } });
      return { outcome: await settled, close: () => stream.close() };
    };
    try {
      const streams = [];
      for (let i = 0; i < streamsMax; i++) streams.push(await open());
      expect(streams.map((s) => s.outcome)).toEqual(Array.from({ length: streamsMax }, () => 'created'));
      const extra = await open();
      expect(extra.outcome).toBe(`${grpcStatus.RESOURCE_EXHAUSTED}: etcdserver: too many requests`);
      // Closing one gives its place back (once the server has seen the close).
      streams[0]!.close();
      let again = await open();
      const deadline = Date.now() + 10_000;
      while (again.outcome !== 'created' && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        again = await open();
      }
      expect(again.outcome).toBe('created');
      for (const s of [...streams, again]) s.close();
      expect(await metric('dkv_connection_limit_refused_total{kind="stream"}')).toBeGreaterThanOrEqual(1);
    } finally {
      channel.close();
    }
  }, 60_000);
});
