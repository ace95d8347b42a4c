/**
 * dkv.v1.Counter against a real 3-node cluster: concurrent increments through all three nodes sum
 * exactly (every increment answered with its own value), counters are decimal text that etcdctl
 * shows and etcd and dkv.v1 watchers see as puts, a Get on one node sees an Increment just
 * answered by another (linearizable), int64 values are exact end to end, refusals arrive with
 * their gRPC codes and messages, and `dkv counter` prints values and exits as documented.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DkvClient, type Decoded, type EtcdChannel, type RpcError, type WatchedEvent, grpcStatus, longsAsStrings } from '../../src/client/index.js';
import { TestCluster, etcdChannel, etcdctl, waitUntil } from './cluster-harness.js';
import { WatchClient } from './watch-client.js';

const dkvBin = join(import.meta.dirname, '..', '..', 'bin', 'dkv.js');
const INT64_MAX = 2n ** 63n - 1n;
const INT64_MIN = -(2n ** 63n);

let cluster: TestCluster;
/** One channel per node; int64 fields decode as exact decimal strings. */
let nodes: EtcdChannel[] = [];

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
  nodes = [0, 1, 2].map((i) => etcdChannel(cluster.endpoint(i), { decode: longsAsStrings }));
}, 60_000);

afterAll(async () => {
  for (const channel of nodes) channel.close();
  await cluster?.stop();
});

const counter = (node: number, method: string, request: object): Promise<Decoded> => nodes[node]!.call('dkv.v1.Counter', method, request);
const key = (text: string): Buffer => Buffer.from(text);
const increment = async (node: number, name: string, delta: bigint | number = 1): Promise<bigint> =>
  BigInt((await counter(node, 'Increment', { key: key(name), delta: delta.toString() })).value as string);
const get = async (node: number, name: string, serializable = false): Promise<Decoded> => counter(node, 'Get', { key: key(name), serializable });

async function refusal(call: Promise<unknown>): Promise<[number | undefined, string | undefined]> {
  try {
    await call;
  } catch (error) {
    return [(error as RpcError).code, (error as RpcError).details];
  }
  throw new Error('the call succeeded');
}

function dkv(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [dkvBin, 'counter', ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('dkv.v1.Counter on a 3-node cluster', () => {
  it('sums concurrent increments from all three nodes exactly, each answered with its own value', async () => {
    const perNode = 60;
    const loopsPerNode = 6;
    const answers: bigint[] = [];
    const loops: Promise<void>[] = [];
    for (let node = 0; node < 3; node++) {
      for (let loop = 0; loop < loopsPerNode; loop++) {
        loops.push((async () => {
          for (let i = 0; i < perNode / loopsPerNode; i++) answers.push(await increment(node, 'sum'));
        })());
      }
    }
    await Promise.all(loops);
    const total = 3 * perNode;
    // Atomic: every increment saw a different value, so the answers are exactly 1..total.
    expect(answers.sort((a, b) => (a < b ? -1 : 1))).toEqual(Array.from({ length: total }, (_, i) => BigInt(i + 1)));
    for (let node = 0; node < 3; node++) expect(await get(node, 'sum')).toMatchObject({ value: String(total), exists: true });
    // Decrements from every node bring it back exactly.
    await Promise.all([0, 1, 2].map((node) => counter(node, 'Decrement', { key: key('sum'), delta: String(perNode) })));
    expect((await get(1, 'sum')).value).toBe('0');
  }, 60_000);

  it('stores decimal text that etcdctl shows, and counts on from a value etcdctl put', async () => {
    await counter(0, 'Set', { key: key('shown'), value: '41' });
    expect(await increment(1, 'shown')).toBe(42n);
    expect(etcdctl(cluster.endpoints, ['get', 'shown', '--print-value-only']).stdout).toBe('42\n');
    expect(etcdctl(cluster.endpoints, ['put', '--', 'typed', '-17']).code).toBe(0);
    expect(await increment(2, 'typed', 20)).toBe(3n);
    expect(etcdctl(cluster.endpoints, ['get', 'typed', '--print-value-only']).stdout).toBe('3\n');
  });

  it('answers a linearizable Get on one node with an Increment another node just answered', async () => {
    for (let i = 0; i < 30; i++) {
      const value = await increment(i % 3, 'linear');
      expect((await get((i + 1) % 3, 'linear')).value).toBe(value.toString());
    }
    // Serializable reads are served too (possibly stale, so only the shape is checked).
    expect((await get(2, 'linear', true)).exists).toBe(true);
  });

  it('keeps int64 values exact end to end, and answers an absent counter as 0 that does not exist', async () => {
    for (const value of [INT64_MAX, INT64_MIN, 2n ** 53n + 1n, -(2n ** 53n) - 3n]) {
      const set = await counter(0, 'Set', { key: key('exact'), value: value.toString() });
      expect(set.value).toBe(value.toString());
      expect((await get(1, 'exact')).value).toBe(value.toString());
      expect(etcdctl(cluster.endpoints, ['get', 'exact', '--print-value-only']).stdout).toBe(`${value}\n`);
    }
    await counter(0, 'Set', { key: key('exact'), value: (2n ** 53n).toString() });
    expect(await increment(2, 'exact', 1)).toBe(2n ** 53n + 1n);
    expect(await get(0, 'never-written')).toMatchObject({ value: '0', exists: false });
    const deleted = await counter(1, 'Delete', { key: key('exact') });
    expect(deleted.deleted).toBe(true);
    expect(Number((deleted.header as Decoded).revision)).toBeGreaterThan(0);
    expect((await counter(2, 'Delete', { key: key('exact') })).deleted).toBe(false);
    expect(await get(0, 'exact')).toMatchObject({ value: '0', exists: false });
  });

  it('shows counter changes to etcd and dkv.v1 watchers as ordinary puts and deletes', async () => {
    const watch = new WatchClient(cluster.endpoint(1));
    const client = new DkvClient({ servers: [{ address: cluster.endpoint(2) }] });
    const seen: WatchedEvent[] = [];
    let snapshotDone = false;
    const prefixWatch = client.watchPrefix('w/', { snapshot: true });
    const consumed = (async () => {
      for await (const item of prefixWatch) {
        if (item.type === 'snapshot') snapshotDone = true;
        else seen.push(...item.events);
      }
    })();
    try {
      watch.create({ key: 'w/c', prevKv: true });
      await watch.waitFor((rs) => rs.some((r) => r.created === true));
      await waitUntil(() => snapshotDone, 10_000, () => 'the prefix watch snapshot');
      await increment(0, 'w/c', 1);
      await increment(1, 'w/c', 1);
      await counter(2, 'Set', { key: key('w/c'), value: '10' });
      await counter(0, 'Delete', { key: key('w/c') });
      await watch.waitFor(() => watch.events(0).length === 4);
      expect(watch.events(0).map((e) => [e.type, e.key, e.value, e.prevValue])).toEqual([
        ['PUT', 'w/c', '1', undefined],
        ['PUT', 'w/c', '2', '1'],
        ['PUT', 'w/c', '10', '2'],
        ['DELETE', 'w/c', '', '10'],
      ]);
      await waitUntil(() => seen.length === 4, 10_000, () => `dkv.v1 watch events: ${seen.length}`);
      expect(seen.map((e) => [e.type, Buffer.from(e.kv.value).toString()])).toEqual([['put', '1'], ['put', '2'], ['put', '10'], ['delete', '']]);
    } finally {
      prefixWatch.close();
      await consumed;
      client.close();
      watch.close();
    }
  });

  it('expires a counter written with a TTL (an increment with a TTL slides it; one without clears it)', async () => {
    const started = Date.now();
    expect(await increment(0, 'ttl/gone', 5)).toBe(5n);
    await counter(1, 'Increment', { key: key('ttl/gone'), delta: '1', ttl_ms: 800 });
    await counter(2, 'Set', { key: key('ttl/kept'), value: '9', ttl_ms: 800 });
    // A write without a TTL clears it: that counter stays.
    await counter(0, 'Increment', { key: key('ttl/kept'), delta: '1' });
    await waitUntil(async () => (await get(0, 'ttl/gone')).exists === false, 10_000, () => 'the counter expired');
    expect(Date.now() - started).toBeGreaterThanOrEqual(800);
    expect(await increment(1, 'ttl/kept', 0n + 1n)).toBe(11n);
    const cli = dkv('incr', 'cli/ttl', '--ttl-ms', '500', '--endpoints', cluster.endpoints);
    expect(cli).toMatchObject({ code: 0, stdout: '1\n' });
    await waitUntil(async () => (await get(2, 'cli/ttl')).exists === false, 10_000, () => 'the CLI counter expired');
  }, 60_000);

  it('refuses bad requests and impossible steps with stable codes, changing nothing', async () => {
    const { INVALID_ARGUMENT, OUT_OF_RANGE, FAILED_PRECONDITION } = grpcStatus;
    expect(await refusal(counter(0, 'Increment', { key: Buffer.alloc(0), delta: '1' }))).toEqual([INVALID_ARGUMENT, 'etcdserver: key is not provided']);
    expect(await refusal(counter(1, 'Get', {}))).toEqual([INVALID_ARGUMENT, 'etcdserver: key is not provided']);
    expect(await refusal(counter(1, 'Increment', { key: key('e/zero') }))).toEqual([INVALID_ARGUMENT, 'dkv: invalid argument: delta must not be 0']);
    expect(await refusal(counter(2, 'Set', { key: key('e/ttl'), value: '1', ttl_ms: -1 }))).toEqual([INVALID_ARGUMENT, 'dkv: invalid argument: ttl_ms must be between 0 and 9000000000000, got -1']);
    expect((await refusal(counter(2, 'Increment', { key: key('e/ttl'), delta: '1', ttl_ms: '9000000000001' })))[0]).toBe(INVALID_ARGUMENT);
    expect((await get(0, 'e/ttl')).exists).toBe(false);
    const tooLarge = Buffer.alloc(1536 * 1024 + 1, 'k');
    expect(await refusal(counter(0, 'Increment', { key: tooLarge, delta: '1' }))).toEqual([INVALID_ARGUMENT, 'etcdserver: request is too large']);

    await counter(1, 'Set', { key: key('e/max'), value: INT64_MAX.toString() });
    await counter(1, 'Set', { key: key('e/min'), value: INT64_MIN.toString() });
    const revision = (await get(0, 'e/max')).header as Decoded;
    const overflow: [number, string] = [OUT_OF_RANGE, 'dkv: counter would leave the int64 range'];
    expect(await refusal(counter(0, 'Increment', { key: key('e/max'), delta: '1' }))).toEqual(overflow);
    expect(await refusal(counter(2, 'Decrement', { key: key('e/min'), delta: '1' }))).toEqual(overflow);
    expect(await refusal(counter(2, 'Increment', { key: key('e/min'), delta: INT64_MIN.toString() }))).toEqual(overflow);
    // -(-2^63) is no int64: refused at the edge, whatever the counter holds.
    expect(await refusal(counter(1, 'Decrement', { key: key('e/absent'), delta: INT64_MIN.toString() }))).toEqual(overflow);
    expect((await get(1, 'e/max')).value).toBe(INT64_MAX.toString());
    expect((await get(1, 'e/min')).value).toBe(INT64_MIN.toString());
    expect(((await get(2, 'e/max')).header as Decoded).revision).toBe(revision.revision);

    expect(etcdctl(cluster.endpoints, ['put', 'e/text', 'twelve']).code).toBe(0);
    const notANumber: [number, string] = [FAILED_PRECONDITION, 'dkv: value is not a 64-bit integer'];
    expect(await refusal(counter(0, 'Increment', { key: key('e/text'), delta: '1' }))).toEqual(notANumber);
    expect(await refusal(get(1, 'e/text'))).toEqual(notANumber);
    expect(etcdctl(cluster.endpoints, ['get', 'e/text', '--print-value-only']).stdout).toBe('twelve\n');
    // Set and Delete act on any key.
    expect((await counter(2, 'Set', { key: key('e/text'), value: '12' })).value).toBe('12');
  });
});

describe('dkv bench counter', () => {
  it('measures increments through dkv.v1.Counter and through a Txn compare-and-swap loop, and both check out', () => {
    for (const method of ['counter', 'cas']) {
      const result = spawnSync(process.execPath, [dkvBin, 'bench', 'counter', '--endpoints', cluster.endpoints, '--conns', '3', '--clients', '10', '--counters', '2', '--total', '200', '--method', method, '--json'], { encoding: 'utf8', timeout: 60_000 });
      expect(result.status, result.stderr).toBe(0);
      const run = JSON.parse(result.stdout) as { method: string; errors: number; counted: string; consistent: boolean; rpcsPerIncrement: number };
      expect(run).toMatchObject({ method, errors: 0, counted: '200', consistent: true });
      if (method === 'cas') expect(run.rpcsPerIncrement).toBeGreaterThanOrEqual(2);
      else expect(run.rpcsPerIncrement).toBe(1);
    }
  }, 60_000);
});

describe('dkv counter', () => {
  it('increments, decrements, sets, gets and deletes, printing the value', () => {
    const endpoints = ['--endpoints', cluster.endpoints];
    expect(dkv('incr', 'cli/n', ...endpoints)).toMatchObject({ code: 0, stdout: '1\n' });
    expect(dkv('incr', 'cli/n', '41', ...endpoints)).toMatchObject({ code: 0, stdout: '42\n' });
    expect(dkv('decr', 'cli/n', '-8', ...endpoints)).toMatchObject({ code: 0, stdout: '50\n' });
    expect(dkv('decr', 'cli/n', ...endpoints)).toMatchObject({ code: 0, stdout: '49\n' });
    expect(dkv('get', 'cli/n', '--endpoints', cluster.endpoint(2))).toMatchObject({ code: 0, stdout: '49\n' });
    expect(dkv('get', 'cli/n', '--consistency', 's', ...endpoints)).toMatchObject({ code: 0 });
    expect(dkv('set', 'cli/n', '-9223372036854775808', ...endpoints)).toMatchObject({ code: 0, stdout: '-9223372036854775808\n' });
    expect(etcdctl(cluster.endpoints, ['get', 'cli/n', '--print-value-only']).stdout).toBe('-9223372036854775808\n');
    expect(dkv('del', 'cli/n', ...endpoints)).toMatchObject({ code: 0, stdout: '1\n' });
    expect(dkv('del', 'cli/n', ...endpoints)).toMatchObject({ code: 0, stdout: '0\n' });
    expect(dkv('get', 'cli/n', ...endpoints)).toMatchObject({ code: 0, stdout: '0\n' });
  });

  it('exits 1 with the server refusal, 2 on a bad command line, and skips endpoints it cannot reach', () => {
    const endpoints = ['--endpoints', cluster.endpoints];
    expect(dkv('set', 'cli/max', '9223372036854775807', ...endpoints).code).toBe(0);
    const overflow = dkv('incr', 'cli/max', ...endpoints);
    expect([overflow.code, overflow.stdout, overflow.stderr]).toEqual([1, '', 'dkv counter incr: dkv: counter would leave the int64 range\n']);
    expect(dkv('incr', 'cli/x', 'abc', ...endpoints).code).toBe(2);
    expect(dkv('frob', 'cli/x', ...endpoints).code).toBe(2);
    expect(dkv('get', 'cli/x', '--ttl-ms', '5', ...endpoints).code).toBe(2);
    // A dead endpoint first: the next one gets the request.
    const unreachable = `127.0.0.1:${cluster.nodes[0]!.clientPort + 5}`;
    expect(dkv('incr', 'cli/failover', '--endpoints', `${unreachable},${cluster.endpoint(1)}`, '--timeout-ms', '1000')).toMatchObject({ code: 0, stdout: '1\n' });
  });
});
