/**
 * `dkv.v1.KV` against a real 3-node cluster: a put with ttl_ms expires (an etcd watcher sees an
 * ordinary DELETE), a plain etcd put clears the TTL, fenced puts and txns succeed with the lock
 * key's create revision and fail with `fence-stale` once the lock key is gone or recreated, and
 * bad input is refused before anything is proposed. Calls go through followers and the leader.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EtcdChannel, grpcStatus } from '../../src/client/index.js';
import { TestCluster, etcdChannel, prefixEnd, waitUntil } from './cluster-harness.js';

let cluster: TestCluster;
let channels: EtcdChannel[];
/** The dev layout's election timeout: 10 ticks of 100 ms. */
const electionTimeoutMs = 1000;
const tickMs = 100;
const b = (text: string): Buffer => Buffer.from(text);

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
  channels = [0, 1, 2].map((i) => etcdChannel(cluster.endpoint(i)));
}, 60_000);

afterAll(async () => {
  for (const channel of channels ?? []) channel.close();
  await cluster?.stop();
});

const dkvPut = (node: number, request: object) => channels[node]!.call('dkv.v1.KV', 'Put', request);
const dkvTxn = (node: number, request: object) => channels[node]!.call('dkv.v1.KV', 'Txn', request);
const get = async (key: string): Promise<Array<{ key: Buffer; value: Buffer; create_revision: number; mod_revision: number }>> =>
  (await channels[0]!.kv('Range', { key: b(key) })).kvs as Array<{ key: Buffer; value: Buffer; create_revision: number; mod_revision: number }>;
const exists = async (key: string): Promise<boolean> => (await get(key)).length === 1;

/** A node that does not lead the cluster now. */
async function follower(): Promise<number> {
  const statuses = await Promise.all(channels.map((c) => c.maintenance('Status', {})));
  const index = statuses.findIndex((s) => s.leader !== 0 && s.leader !== (s.header as { member_id: number }).member_id);
  expect(index).toBeGreaterThanOrEqual(0);
  return index;
}

/** Rejects with `code` and a message starting with `message`. */
async function refused(call: Promise<unknown>, code: number, message: string): Promise<void> {
  const error = (await call.then(
    () => undefined,
    (e: unknown) => e,
  )) as { code?: number; details?: string } | undefined;
  expect(error, 'the call succeeded').toBeDefined();
  expect(error!.code).toBe(code);
  expect(error!.details?.startsWith(message), error!.details).toBe(true);
}

describe('dkv.v1.KV TTLs', () => {
  it('a put with ttl_ms (through a follower) expires as an ordinary DELETE an etcd watcher sees', async () => {
    const events: Array<{ type: number; key: string; mod_revision: number }> = [];
    let created = false;
    const through = await follower();
    const stream = channels[(through + 1) % 3]!.watch({
      onResponse: (response) => {
        if (response.created === true) created = true;
        for (const e of (response.events ?? []) as Array<{ type: number; kv: { key: Buffer; mod_revision: number } }>) events.push({ type: e.type, key: e.kv.key.toString(), mod_revision: e.kv.mod_revision });
      },
      onEnd: () => undefined,
    });
    try {
      stream.send({ create_request: { key: b('ttl/'), range_end: prefixEnd('ttl/') } });
      await waitUntil(() => created, 10_000, () => 'watch created');
      const ttlMs = 1500;
      const started = Date.now();
      const put = await dkvPut(through, { key: b('ttl/a'), value: b('1'), ttl_ms: ttlMs });
      const header = put.header as { revision: number };
      expect(header.revision).toBeGreaterThan(1);
      expect((await get('ttl/a'))[0]!.value.toString()).toBe('1');
      await waitUntil(() => events.some((e) => e.key === 'ttl/a' && e.type === 1), 15_000, () => `the DELETE of ttl/a (events: ${JSON.stringify(events)})`, 20);
      const elapsedMs = Date.now() - started;
      expect(elapsedMs).toBeGreaterThanOrEqual(ttlMs - 50);
      // Within the TTL, a tick and the wheel's resolution, plus the commit and the watch hop (and
      // one election timeout should leadership have changed on the way).
      expect(elapsedMs).toBeLessThan(ttlMs + tickMs + electionTimeoutMs + 1000);
      expect(events.map((e) => [e.type, e.key])).toEqual([
        [0, 'ttl/a'],
        [1, 'ttl/a'],
      ]);
      expect(events[1]!.mod_revision).toBeGreaterThan(header.revision);
      expect(await exists('ttl/a')).toBe(false);
    } finally {
      stream.close();
    }
  }, 30_000);

  it('a plain etcd put clears the TTL: the key outlives a key whose TTL ran out after its old deadline', async () => {
    await dkvPut(0, { key: b('ttl/b'), value: b('ttl'), ttl_ms: 1000 });
    await channels[1]!.kv('Put', { key: b('ttl/b'), value: b('plain') });
    // Put after ttl/b's dkv put, with the same TTL: once it is gone, ttl/b's old deadline passed.
    await dkvPut(0, { key: b('ttl/sentinel'), value: b('x'), ttl_ms: 1000 });
    await waitUntil(async () => !(await exists('ttl/sentinel')), 15_000, () => 'the sentinel expires');
    expect((await get('ttl/b'))[0]!.value.toString()).toBe('plain');
  }, 30_000);

  it('a txn gives TTLs to the keys its taken branch puts; its response is etcd\'s', async () => {
    const response = await dkvTxn(await follower(), {
      txn: {
        compare: [{ key: b('ttl/missing'), target: 0, result: 0, version: 0 }], // VERSION EQUAL 0: true
        success: [{ request_put: { key: b('ttl/t1'), value: b('x') } }, { request_put: { key: b('ttl/t2'), value: b('y') } }],
        failure: [],
      },
      ttls: [{ key: b('ttl/t1'), ttl_ms: 1000 }],
    });
    expect(response.succeeded).toBe(true);
    expect((response.responses as unknown[]).length).toBe(2);
    expect((response.header as { revision: number }).revision).toBeGreaterThan(1);
    await waitUntil(async () => !(await exists('ttl/t1')), 15_000, () => 'ttl/t1 expires');
    expect(await exists('ttl/t2')).toBe(true);
  }, 30_000);
});

describe('dkv.v1.KV fencing tokens', () => {
  it('a fenced put applies with the lock key\'s create revision and is refused once the lock is recreated', async () => {
    const lock = await channels[0]!.kv('Put', { key: b('lock/a'), value: b('holder-1') });
    const token = (lock.header as { revision: number }).revision;
    expect((await get('lock/a'))[0]!.create_revision).toBe(token);
    await dkvPut(await follower(), { key: b('fenced/k'), value: b('by-1'), fence: { key: b('lock/a'), token } });
    await channels[0]!.kv('DeleteRange', { key: b('lock/a') });
    const refusedMessage = 'dkv: fencing token is stale (the lock key has another owner or is gone)';
    await refused(dkvPut(2, { key: b('fenced/k'), value: b('late'), fence: { key: b('lock/a'), token } }), grpcStatus.FAILED_PRECONDITION, refusedMessage);
    const relock = await channels[0]!.kv('Put', { key: b('lock/a'), value: b('holder-2') });
    const newToken = (relock.header as { revision: number }).revision;
    await refused(dkvPut(0, { key: b('fenced/k'), value: b('late'), fence: { key: b('lock/a'), token } }), grpcStatus.FAILED_PRECONDITION, refusedMessage);
    expect((await get('fenced/k'))[0]!.value.toString()).toBe('by-1');
    await dkvPut(2, { key: b('fenced/k'), value: b('by-2'), ttl_ms: 60_000, fence: { key: b('lock/a'), token: newToken } });
    expect((await get('fenced/k'))[0]!.value.toString()).toBe('by-2');
  });

  it('a fenced txn likewise, refused whole: nothing of it is applied', async () => {
    const lock = await channels[0]!.kv('Put', { key: b('lock/t'), value: b('me') });
    const token = (lock.header as { revision: number }).revision;
    const txn = (value: string, fenceToken: number) => ({
      txn: { compare: [], success: [{ request_put: { key: b('fenced/t1'), value: b(value) } }, { request_put: { key: b('fenced/t2'), value: b(value) } }], failure: [] },
      fence: { key: b('lock/t'), token: fenceToken },
    });
    expect((await dkvTxn(1, txn('first', token))).succeeded).toBe(true);
    await channels[0]!.kv('DeleteRange', { key: b('lock/t') });
    await channels[0]!.kv('Put', { key: b('lock/t'), value: b('someone else') });
    await refused(dkvTxn(2, txn('second', token)), grpcStatus.FAILED_PRECONDITION, 'dkv: fencing token is stale');
    expect((await get('fenced/t1'))[0]!.value.toString()).toBe('first');
    expect((await get('fenced/t2'))[0]!.value.toString()).toBe('first');
  });
});

describe('dkv.v1.KV refusals', () => {
  it('refuses bad TTLs, empty keys and bad fences before proposing anything', async () => {
    const before = (await channels[0]!.kv('Range', { key: b('x') })).header as { revision: number };
    await refused(dkvPut(0, { key: b('bad/k'), value: b('v'), ttl_ms: -1 }), grpcStatus.INVALID_ARGUMENT, 'dkv: invalid argument: ttl_ms must not be negative');
    await refused(dkvPut(1, { key: b('bad/k'), value: b('v'), ttl_ms: '9223372036854775807' }), grpcStatus.INVALID_ARGUMENT, 'dkv: invalid argument: ttl_ms');
    await refused(dkvPut(1, { key: b('bad/k'), value: b('v'), ttl_ms: 315_360_000_001 }), grpcStatus.INVALID_ARGUMENT, 'dkv: invalid argument: ttl_ms');
    await refused(dkvPut(2, { key: b(''), value: b('v'), ttl_ms: 1000 }), grpcStatus.INVALID_ARGUMENT, 'etcdserver: key is not provided');
    await refused(dkvPut(2, { key: b('bad/k'), value: b('v'), ignore_lease: true, lease: 5 }), grpcStatus.INVALID_ARGUMENT, 'etcdserver: lease is provided');
    await refused(dkvPut(0, { key: b('bad/k'), value: b('v'), fence: { key: b(''), token: 5 } }), grpcStatus.INVALID_ARGUMENT, 'dkv: invalid argument: fence.key is empty');
    await refused(dkvPut(0, { key: b('bad/k'), value: b('v'), fence: { key: b('lock/x'), token: 0 } }), grpcStatus.INVALID_ARGUMENT, 'dkv: invalid argument: fence.token');
    await refused(dkvTxn(1, { txn: {}, ttls: [{ key: b('k'), ttl_ms: 1 }, { key: b('k'), ttl_ms: 2 }] }), grpcStatus.INVALID_ARGUMENT, 'dkv: invalid argument: a key appears twice');
    await refused(dkvTxn(1, { txn: {}, ttls: [{ key: b(''), ttl_ms: 1 }] }), grpcStatus.INVALID_ARGUMENT, 'dkv: invalid argument: a ttls entry has an empty key');
    await refused(dkvTxn(2, { txn: { success: [{ request_put: { key: b('') } }] } }), grpcStatus.INVALID_ARGUMENT, 'etcdserver: key is not provided');
    const after = (await channels[0]!.kv('Range', { key: b('x') })).header as { revision: number };
    expect(after.revision).toBe(before.revision);
    // A fence naming a key that does not exist is well formed, and stale (decided in apply).
    await refused(dkvPut(0, { key: b('bad/k'), value: b('v'), fence: { key: b('lock/none'), token: 3 } }), grpcStatus.FAILED_PRECONDITION, 'dkv: fencing token is stale');
    expect(await exists('bad/k')).toBe(false);
  });

  it('every replica holds the same state (the TTL table included) once it applied the same entries', async () => {
    await waitUntil(async () => {
      const hashes = await Promise.all(channels.map((c) => c.maintenance('Hash', {})));
      return new Set(hashes.map((h) => h.hash)).size === 1;
    }, 10_000, () => 'equal state machine hashes');
  });
});
