/**
 * The client's own cost: the same sequential puts and linearizable gets through `DkvClient` and
 * through the `etcd3` npm client, on the same cluster, one request at a time (latency p50/p99)
 * and with `--concurrency` requests in flight (requests/s). The difference is what each client
 * adds on top of gRPC and the server. Run it against DKV and against etcd (the same script works
 * with both), e.g. `bench/compare-etcd.sh` style:
 *
 *   node --import tsx bench/client-overhead.ts --endpoints 127.0.0.1:2379[,…] [--requests N] [--concurrency C] [--prefix P]
 *
 * --prefix (default `bench/overhead/`) puts the 1,000 keys under another prefix: a DKV store's
 * (`dkv store create s --prefix /s/ --shards 4`) shows what routing each write straight to its
 * shard's leader (DkvClient) saves against sending it to any member, which forwards it (etcd3);
 * the last rows then send the same sequential puts to each endpoint alone (a bare channel), naming
 * the member that answered and whether it leads the first key's shard (from dkv.v1 ShardList),
 * and which members answered DkvClient's puts.
 */
import { parseArgs } from 'node:util';
import { Etcd3 } from 'etcd3';
import { DkvClient, EtcdChannel } from '../src/client/index.js';

interface Client {
  readonly name: string;
  put(key: string, value: string): Promise<unknown>;
  get(key: string): Promise<unknown>;
  close(): void;
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function sequential(client: Client, op: 'put' | 'get', requests: number): Promise<{ p50: number; p99: number }> {
  const times: number[] = [];
  for (let i = 0; i < requests; i++) {
    const key = `${prefix}${i % 1000}`;
    const started = process.hrtime.bigint();
    if (op === 'put') await client.put(key, 'v'.repeat(100));
    else await client.get(key);
    times.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  times.sort((a, b) => a - b);
  return { p50: quantile(times, 0.5), p99: quantile(times, 0.99) };
}

async function concurrent(client: Client, op: 'put' | 'get', requests: number, concurrency: number): Promise<number> {
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < requests) {
        const i = next++;
        const key = `${prefix}${i % 1000}`;
        if (op === 'put') await client.put(key, 'v'.repeat(100));
        else await client.get(key);
      }
    }),
  );
  return requests / (Number(process.hrtime.bigint() - started) / 1e9);
}

const { values } = parseArgs({
  options: {
    endpoints: { type: 'string', default: '127.0.0.1:2379' },
    requests: { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '64' },
    prefix: { type: 'string', default: 'bench/overhead/' },
  },
});
const endpoints = values.endpoints.split(',').map((e) => e.trim()).filter((e) => e !== '');
const requests = Number(values.requests);
const concurrency = Number(values.concurrency);
const prefix = values.prefix;
if (!Number.isInteger(requests) || requests < 10) throw new Error('--requests must be an integer >= 10');
if (!Number.isInteger(concurrency) || concurrency < 1) throw new Error('--concurrency must be a positive integer');

const makers: (() => Client)[] = [
  () => {
    const client = new DkvClient({ servers: endpoints.map((address) => ({ address })) });
    return { name: 'DkvClient', put: (k, v) => client.put(k, v), get: (k) => client.get(k), close: () => client.close() };
  },
  () => {
    const client = new Etcd3({ hosts: endpoints.map((e) => `http://${e}`) });
    return { name: 'etcd3', put: (k, v) => client.put(k).value(v).exec(), get: (k) => client.get(k).buffer(), close: () => client.close() };
  },
];

process.stdout.write(`client overhead on ${endpoints.join(',')}: ${requests} requests each under ${JSON.stringify(prefix)}, sequential then ${concurrency} in flight\n`);
const rows: { name: string; op: string; p50: number; p99: number; rate: number }[] = [];
for (const make of makers) {
  const client = make();
  try {
    await sequential(client, 'put', Math.min(200, requests)); // warm up connections and the JIT
    for (const op of ['put', 'get'] as const) {
      const { p50, p99 } = await sequential(client, op, requests);
      const rate = await concurrent(client, op, requests, concurrency);
      rows.push({ name: client.name, op, p50, p99, rate });
      process.stdout.write(`  ${client.name.padEnd(10)} ${op}: p50 ${p50.toFixed(3)} ms, p99 ${p99.toFixed(3)} ms, ${rate.toFixed(0)} req/s at ${concurrency} in flight\n`);
    }
  } finally {
    client.close();
  }
}
for (const op of ['put', 'get']) {
  const dkv = rows.find((r) => r.name === 'DkvClient' && r.op === op)!;
  const etcd3 = rows.find((r) => r.name === 'etcd3' && r.op === op)!;
  process.stdout.write(`${op}: DkvClient/etcd3 p50 ${(dkv.p50 / etcd3.p50).toFixed(2)}×, rate ${(dkv.rate / etcd3.rate).toFixed(2)}×\n`);
}

// Each endpoint alone: what a put costs at the key's shard leader and at a member that forwards it.
const firstKey = Buffer.from(`${prefix}0`);
const shardLeaderOf = async (channel: EtcdChannel): Promise<string | undefined> => {
  try {
    const shards = ((await channel.call('dkv.v1.Admin', 'ShardList', {})).shards ?? []) as Array<Record<string, unknown>>;
    // The most specific shard holding the key: a store's over the default store's.
    const holding = shards.filter((s) => {
      const start = Buffer.from((s.start as Uint8Array | undefined) ?? []);
      const end = s.end === undefined || s.end === null ? undefined : Buffer.from(s.end as Uint8Array);
      return s.store !== '(meta)' && Buffer.compare(start, firstKey) <= 0 && (end === undefined || Buffer.compare(firstKey, end) < 0);
    });
    const shard = holding.find((s) => s.store !== 'default') ?? holding[0];
    return shard === undefined ? undefined : BigInt(String(shard.leader)).toString(16);
  } catch {
    return undefined; // etcd: no dkv.v1
  }
};
const answered = new Map<string, number>();
{
  const client = new DkvClient({ servers: endpoints.map((address) => ({ address })) });
  try {
    for (let i = 0; i < Math.min(200, requests); i++) await client.put(`${prefix}${i % 1000}`, 'v'.repeat(100));
    for (let i = 0; i < Math.min(500, requests); i++) {
      const member = (await client.put(`${prefix}${i % 1000}`, 'v'.repeat(100))).header.memberId.toString(16);
      answered.set(member, (answered.get(member) ?? 0) + 1);
    }
  } finally {
    client.close();
  }
}
process.stdout.write(`DkvClient's puts answered by: ${[...answered].map(([member, n]) => `${member} ×${n}`).join(', ')}\n`);
for (const endpoint of endpoints) {
  const channel = new EtcdChannel(endpoint);
  try {
    const member = BigInt(String(((await channel.call('etcdserverpb.Maintenance', 'Status', {})).header as Record<string, unknown>).member_id)).toString(16);
    const leader = await shardLeaderOf(channel);
    const bare: Client = { name: endpoint, put: (k, v) => channel.call('etcdserverpb.KV', 'Put', { key: Buffer.from(k), value: Buffer.from(v) }), get: (k) => channel.call('etcdserverpb.KV', 'Range', { key: Buffer.from(k) }), close: () => {} };
    await sequential(bare, 'put', Math.min(200, requests));
    const { p50, p99 } = await sequential(bare, 'put', requests);
    process.stdout.write(`  ${endpoint} alone (member ${member}${leader === undefined ? '' : leader === member ? ', leads the keys\' shard' : ', forwards to the shard\'s leader'}): put p50 ${p50.toFixed(3)} ms, p99 ${p99.toFixed(3)} ms\n`);
  } finally {
    channel.close();
  }
}
