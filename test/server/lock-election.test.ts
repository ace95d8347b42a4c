/**
 * etcd's Lock and Election services against a real 3-node DKV cluster of `dkv server` processes:
 * the raw gRPC calls (lease 0: the server grants a session lease, as etcd's), waiting and ordering on every node,
 * cancellation, Observe, bad input, the watch engine's watcher count coming back after every wait,
 * a node stopping under waiting calls; then the clients that run the recipes themselves over KV,
 * Watch and Lease (`etcdctl lock`, `etcdctl elect`, the etcd3 npm client's lock() and election()).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3, EtcdLockFailedError } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Decoded, type EtcdChannel, type RpcError, grpcStatus, longsAsStrings, methodCodec } from '../../src/client/index.js';
import { lockNameBytesMax, shutdownGraceMs } from '../../src/server/limits.js';
import { TestCluster, etcdChannel, prefixEnd, waitUntil } from './cluster-harness.js';

let cluster: TestCluster;
/** One channel per node. */
let channels: EtcdChannel[] = [];
/** Node indexes: the data shard's leader first, then the followers. */
let byRole: number[] = [];
let scratch: string;

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
  channels = cluster.nodes.map((_, i) => etcdChannel(cluster.endpoint(i)));
  scratch = mkdtempSync(join(tmpdir(), 'dkv-lock-'));
  byRole = await rolesOf();
}, 60_000);

afterAll(async () => {
  for (const c of channels) c.close();
  await cluster?.stop();
  if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
});

async function rolesOf(): Promise<number[]> {
  const statuses = await Promise.all(channels.map((c) => c.maintenance('Status', {})));
  const leader = statuses.findIndex((s) => s['leader'] === (s['header'] as Decoded)['member_id']);
  expect(leader).toBeGreaterThanOrEqual(0);
  return [leader, ...[0, 1, 2].filter((i) => i !== leader)];
}

const leaderNode = (): EtcdChannel => channels[byRole[0]!]!;
const follower = (n: 1 | 2): EtcdChannel => channels[byRole[n]!]!;

let names = 0;
/** A fresh lock or election name per test. */
const freshName = (what: string): Buffer => Buffer.from(`${what}-${++names}-${Date.now()}`);

// ---- Calls --------------------------------------------------------------------------------------

type Header = { revision: number; member_id: number; cluster_id: number; raft_term: number };
type LockResponse = { header: Header; key: Buffer };
/** `lease` exact: a session lease's id may pass 2^53 (etcd's do). */
type LeaderKey = { name: Buffer; key: Buffer; rev: number; lease: string };
type KeyValue = { key: Buffer; value: Buffer; create_revision: number; mod_revision: number; version: number; lease: number };

const lock = (c: EtcdChannel, name: Buffer, options: { lease?: number; timeoutMs?: number } = {}): Promise<LockResponse> =>
  c.call('v3lockpb.Lock', 'Lock', { name, lease: options.lease ?? 0 }, { timeoutMs: options.timeoutMs ?? 60_000 }) as Promise<LockResponse>;
const unlock = (c: EtcdChannel, key: Buffer): Promise<{ header: Header }> => c.call('v3lockpb.Lock', 'Unlock', { key }) as Promise<{ header: Header }>;
const campaignCodec = methodCodec('v3electionpb.Election', 'Campaign', longsAsStrings);
const leaderCodec = methodCodec('v3electionpb.Election', 'Leader', longsAsStrings);

async function campaign(c: EtcdChannel, name: Buffer, value: string, options: { timeoutMs?: number } = {}): Promise<{ header: Header; leader: LeaderKey }> {
  const request = { name, value: Buffer.from(value), lease: 0 };
  const r = (await c.unary(campaignCodec, request, { timeoutMs: options.timeoutMs ?? 60_000 })) as { header: { revision: string }; leader: Omit<LeaderKey, 'rev'> & { rev: string } };
  return { header: { ...r.header, revision: Number(r.header.revision) } as Header, leader: { ...r.leader, rev: Number(r.leader.rev) } };
}

const election = (c: EtcdChannel, method: 'Proclaim' | 'Leader' | 'Resign', request: object): Promise<Decoded> => c.call('v3electionpb.Election', method, request);

/** The leader's key and value (revisions as numbers, its lease exact). */
async function leaderOf(c: EtcdChannel, name: Buffer): Promise<{ header: Header; kv: Omit<KeyValue, 'lease'> & { lease: string } }> {
  const r = (await c.unary(leaderCodec, { name })) as { header: { revision: string }; kv: Record<string, unknown> & { key: Buffer; value: Buffer; lease: string } };
  const n = (field: string): number => Number(r.kv[field]);
  return {
    header: { ...r.header, revision: Number(r.header.revision) } as Header,
    kv: { key: r.kv.key, value: r.kv.value, create_revision: n('create_revision'), mod_revision: n('mod_revision'), version: n('version'), lease: r.kv.lease },
  };
}

/** The keys under `name/`, oldest first. */
async function queue(name: Buffer): Promise<KeyValue[]> {
  const prefix = Buffer.concat([name, Buffer.from('/')]);
  const r = await leaderNode().kv('Range', { key: prefix, range_end: prefixEnd(prefix.toString('latin1')), sort_target: 2, sort_order: 1 });
  return r['kvs'] as KeyValue[];
}

async function waitForQueue(name: Buffer, length: number): Promise<void> {
  await waitUntil(async () => (await queue(name)).length === length, 20_000, () => `${length} keys under ${name}/`);
}

async function failure(call: Promise<unknown>): Promise<RpcError> {
  const error = (await call.then(
    () => undefined,
    (e: unknown) => e,
  )) as RpcError | undefined;
  expect(error, 'the call should fail').toBeDefined();
  return error!;
}

/** The call fails with this status and message. */
async function expectStatus(call: Promise<unknown>, code: number, details: string): Promise<void> {
  const error = await failure(call);
  expect({ code: error.code, details: error.details }).toEqual({ code, details });
}

/** The call fails with this status (a deadline's message is the client's own, with timings). */
async function expectCode(call: Promise<unknown>, code: number): Promise<void> {
  expect((await failure(call)).code).toBe(code);
}

/** A promise with its outcome readable at any moment. */
function tracked<T>(promise: Promise<T>): { promise: Promise<T>; settled: () => boolean } {
  let done = false;
  promise.then(
    () => (done = true),
    () => (done = true),
  );
  return { promise, settled: () => done };
}

/** A round trip through Raft on `c` (a linearizable read): anything already resolvable has resolved. */
async function roundTrip(c: EtcdChannel): Promise<void> {
  await c.kv('Range', { key: Buffer.from('round-trip') });
}

interface Observation {
  readonly responses: Array<{ header: Header; kv: KeyValue }>;
  error: RpcError | undefined;
  ended: boolean;
  cancel(): void;
  /** Stops reading (gRPC's flow control then holds the server back), and starts again. */
  pause(): void;
  resume(): void;
}

function observe(c: EtcdChannel, name: Buffer): Observation {
  const stream = c.serverStream(methodCodec('v3electionpb.Election', 'Observe'), { name });
  const observation: Observation = {
    responses: [],
    error: undefined,
    ended: false,
    cancel: () => stream.cancel(),
    pause: () => stream.pause(),
    resume: () => stream.resume(),
  };
  stream.on('data', (r: { header: Header; kv: KeyValue }) => observation.responses.push(r));
  stream.on('error', (e: RpcError) => {
    observation.error = e;
    observation.ended = true;
  });
  stream.on('end', () => (observation.ended = true));
  return observation;
}

const values = (o: Observation): string[] => o.responses.map((r) => r.kv.value.toString());

async function metric(i: number, name: string): Promise<number> {
  const text = await (await fetch(`${cluster.nodes[i]!.metricsUrl}/metrics`)).text();
  const match = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  expect(match, name).not.toBeNull();
  return Number(match![1]);
}

const watcherCount = (i: number): Promise<number> => metric(i, 'etcd_debugging_mvcc_watcher_total');

async function waitForWatchers(i: number, expected: number): Promise<void> {
  let last = -1;
  await waitUntil(async () => (last = await watcherCount(i)) === expected, 20_000, () => `${expected} watchers on node ${i} (has ${last})`, 200);
}

// ---- Lock ---------------------------------------------------------------------------------------

describe('Lock (raw gRPC, lease 0)', () => {
  it('locks a free name at once on every node: the key is name/<hex>, the header revision its create revision', async () => {
    for (const c of channels) {
      const name = freshName('free');
      const held = await lock(c, name);
      expect(held.key.subarray(0, name.length + 1).equals(Buffer.concat([name, Buffer.from('/')]))).toBe(true);
      expect(held.key.subarray(name.length + 1).toString()).toMatch(/^[0-9a-f]{1,16}$/);
      const [kv] = await queue(name);
      expect(kv!.key.equals(held.key)).toBe(true);
      expect(held.header.revision).toBe(kv!.create_revision);
      expect(kv!.value.length).toBe(0);
      const released = await unlock(c, held.key);
      expect(released.header.revision).toBe(held.header.revision + 1);
      expect(await queue(name)).toEqual([]);
    }
  });

  it('hands the lock to waiters in the order they came, across nodes, with growing fencing tokens', async () => {
    const name = freshName('queue');
    const first = await lock(follower(1), name);
    const second = tracked(lock(follower(2), name));
    await waitForQueue(name, 2);
    const third = tracked(lock(leaderNode(), name));
    await waitForQueue(name, 3);
    await roundTrip(follower(2));
    await roundTrip(leaderNode());
    expect([second.settled(), third.settled()]).toEqual([false, false]);

    await unlock(leaderNode(), first.key);
    const secondHeld = await second.promise;
    await roundTrip(leaderNode());
    expect(third.settled()).toBe(false);
    expect(secondHeld.header.revision).toBeGreaterThan(first.header.revision);
    const [owner] = await queue(name);
    expect(owner!.key.equals(secondHeld.key)).toBe(true);
    expect(secondHeld.header.revision).toBe(owner!.create_revision);

    await unlock(follower(1), secondHeld.key);
    const thirdHeld = await third.promise;
    expect(thirdHeld.header.revision).toBeGreaterThan(secondHeld.header.revision);
    await unlock(follower(2), thirdHeld.key);
    expect(await queue(name)).toEqual([]);
  });

  it('a waiter whose key is deleted behind its back is refused when its turn comes; the one behind it waits on', async () => {
    const name = freshName('skip');
    const a = await lock(leaderNode(), name);
    const b = tracked(lock(follower(1), name));
    await waitForQueue(name, 2);
    const c = tracked(lock(follower(2), name));
    await waitForQueue(name, 3);
    // b's key goes while b waits for a: c, which waited for b's key, now waits for a's.
    await unlock(leaderNode(), (await queue(name))[1]!.key);
    await waitForQueue(name, 2);
    await roundTrip(follower(1));
    await roundTrip(follower(2));
    expect([b.settled(), c.settled()]).toEqual([false, false]);
    await unlock(follower(1), a.key);
    // etcd 3.5's Mutex: its own key gone, b does not hold the lock.
    await expectStatus(b.promise, grpcStatus.UNKNOWN, 'mutex: session is expired');
    const cHeld = await c.promise;
    expect((await queue(name)).map((kv) => kv.key.toString())).toEqual([cHeld.key.toString()]);
    await unlock(follower(2), cHeld.key);
  });

  it('a waiter whose deadline passes leaves the queue, and the one behind it still gets the lock', async () => {
    const name = freshName('deadline');
    const a = await lock(leaderNode(), name);
    const b = lock(follower(1), name, { timeoutMs: 1500 });
    await waitForQueue(name, 2);
    const c = tracked(lock(follower(2), name));
    await waitForQueue(name, 3);
    await expectCode(b, grpcStatus.DEADLINE_EXCEEDED);
    await waitForQueue(name, 2);
    expect(c.settled()).toBe(false);
    await unlock(leaderNode(), a.key);
    const cHeld = await c.promise;
    await unlock(leaderNode(), cHeld.key);
    expect(await queue(name)).toEqual([]);
  });

  it('a waiter canceled by its client leaves the queue', async () => {
    const name = freshName('cancel');
    const a = await lock(follower(1), name);
    // Through the server-stream API, whose call has cancel(): a unary method answers it as a
    // stream of one response.
    const call = follower(2).serverStream(methodCodec('v3lockpb.Lock', 'Lock'), { name });
    call.on('error', () => undefined);
    await waitForQueue(name, 2);
    call.cancel();
    await waitForQueue(name, 1);
    await unlock(follower(1), a.key);
  });

  it('unlocking a key nobody holds answers with the current revision, as etcd', async () => {
    const before = await leaderNode().kv('Put', { key: Buffer.from('unlock-nothing'), value: Buffer.from('x') });
    const r = await unlock(follower(1), Buffer.from('no-such-lock/1234'));
    expect(r.header.revision).toBe((before['header'] as Header).revision);
  });

  // etcd's Lock and Election servers run a client inside the server and send its errors as plain
  // Go errors: every etcd error reaches the caller with status UNKNOWN (the differential test shows it).
  it('names no lease that does not exist: etcd\'s lease-not-found, nothing left behind', async () => {
    const name = freshName('no-lease');
    await expectStatus(lock(follower(1), name, { lease: 0x1234abcd }), grpcStatus.UNKNOWN, 'etcdserver: requested lease not found');
    expect(await queue(name)).toEqual([]);
  });
});

// ---- Election -----------------------------------------------------------------------------------

describe('Election (raw gRPC, lease 0)', () => {
  it('campaigns, proclaims, reads the leader, resigns; a stale leader key is refused', async () => {
    const name = freshName('elect');
    await expectStatus(election(follower(1), 'Leader', { name }), grpcStatus.UNKNOWN, 'election: no leader');
    const won = await campaign(follower(1), name, 'v1');
    const leader = won.leader;
    expect(leader.name.equals(name)).toBe(true);
    expect(leader.key.subarray(0, name.length + 1).toString()).toBe(`${name}/`);
    expect(leader.rev).toBe(won.header.revision);
    const read = await leaderOf(follower(2), name);
    expect(read.kv.key.equals(leader.key)).toBe(true);
    // The session lease the server granted for lease 0 (as etcd's does): the key's.
    expect(leader.lease).toBe(read.kv.lease);
    expect(read.kv.value.toString()).toBe('v1');
    expect(read.kv.create_revision).toBe(leader.rev);

    const proclaimed = await election(leaderNode(), 'Proclaim', { leader, value: Buffer.from('v2') });
    expect((proclaimed['header'] as Header).revision).toBe(leader.rev + 1);
    expect((await leaderOf(leaderNode(), name)).kv.value.toString()).toBe('v2');

    const stale = { ...leader, rev: leader.rev + 100 };
    await expectStatus(election(follower(2), 'Proclaim', { leader: stale, value: Buffer.from('no') }), grpcStatus.UNKNOWN, 'election: not leader');
    // Resigning with a stale key changes nothing and still succeeds (etcd).
    const noop = await election(follower(2), 'Resign', { leader: stale });
    expect((noop['header'] as Header).revision).toBe(leader.rev + 1);
    expect((await leaderOf(leaderNode(), name)).kv.value.toString()).toBe('v2');

    const resigned = await election(follower(2), 'Resign', { leader });
    expect((resigned['header'] as Header).revision).toBe(leader.rev + 2);
    await expectStatus(election(follower(1), 'Leader', { name }), grpcStatus.UNKNOWN, 'election: no leader');
    await expectStatus(election(follower(1), 'Proclaim', { leader, value: Buffer.from('v3') }), grpcStatus.UNKNOWN, 'election: not leader');
  });

  it('the next campaigner leads once the leader resigns, in the order they came', async () => {
    const name = freshName('succession');
    const a = await campaign(leaderNode(), name, 'a');
    const b = tracked(campaign(follower(1), name, 'b'));
    await waitForQueue(name, 2);
    const c = tracked(campaign(follower(2), name, 'c'));
    await waitForQueue(name, 3);
    await roundTrip(follower(1));
    await roundTrip(follower(2));
    expect([b.settled(), c.settled()]).toEqual([false, false]);
    await election(follower(2), 'Resign', { leader: a.leader });
    const bWon = await b.promise;
    expect((await leaderOf(follower(2), name)).kv.value.toString()).toBe('b');
    expect(bWon.leader.rev).toBeGreaterThan(a.leader.rev);
    await roundTrip(follower(2));
    expect(c.settled()).toBe(false);
    await election(leaderNode(), 'Resign', { leader: bWon.leader });
    const cWon = await c.promise;
    expect((await leaderOf(leaderNode(), name)).kv.value.toString()).toBe('c');
    await election(leaderNode(), 'Resign', { leader: cWon.leader });
  });

  it('Observe sends the leader now and then every change of leader or value, in order, none skipped', async () => {
    const name = freshName('observe');
    const early = observe(follower(1), name); // no leader yet: waits for the first
    const a = await campaign(leaderNode(), name, 'a1');
    await waitUntil(() => early.responses.length === 1, 20_000, () => 'the first leader');
    for (const v of ['a2', 'a3']) await election(follower(2), 'Proclaim', { leader: a.leader, value: Buffer.from(v) });
    const b = tracked(campaign(follower(2), name, 'b1'));
    await waitForQueue(name, 2);
    const late = observe(follower(2), name); // a leader now: starts with it
    await waitUntil(() => late.responses.length === 1, 20_000, () => 'the current leader');
    expect(values(late)).toEqual(['a3']);
    // A non-leader's writes change nothing the observers see.
    const bKey = (await queue(name))[1]!;
    await leaderNode().kv('Put', { key: bKey.key, value: Buffer.from('b-not-yet') });
    await election(leaderNode(), 'Resign', { leader: a.leader });
    const bWon = await b.promise;
    await election(follower(1), 'Proclaim', { leader: bWon.leader, value: Buffer.from('b2') });
    await election(follower(1), 'Resign', { leader: bWon.leader });
    const c = await campaign(follower(1), name, 'c1');
    // The leader's key deleted and a new one written in one txn: one change, at that revision.
    const swap = await leaderNode().kv('Txn', {
      compare: [],
      success: [
        { request_delete_range: { key: c.leader.key } },
        { request_put: { key: Buffer.concat([name, Buffer.from('/ffff')]), value: Buffer.from('d1') } },
      ],
    });
    const swapRevision = (swap['header'] as Header).revision;
    // b led with the value its key had then; the txn's new key is the only one left.
    const expected = ['a1', 'a2', 'a3', 'b-not-yet', 'b2', 'c1', 'd1'];
    await waitUntil(() => early.responses.length >= expected.length && late.responses.length >= expected.length - 2, 20_000, () => `observed ${values(early)} and ${values(late)}`);
    await roundTrip(follower(1));
    await roundTrip(follower(2));
    expect(values(early)).toEqual(expected);
    expect(values(late)).toEqual(['a3', 'b-not-yet', 'b2', 'c1', 'd1']);
    // Header revisions: the revision each change happened at, increasing.
    const revisions = early.responses.map((r) => r.header.revision);
    expect(revisions).toEqual([...revisions].sort((x, y) => x - y));
    expect(early.responses.at(-1)!.header.revision).toBe(swapRevision);
    expect(early.responses.at(-1)!.kv.create_revision).toBe(swapRevision);
    for (const r of early.responses) expect(r.kv.mod_revision).toBeLessThanOrEqual(r.header.revision);
    early.cancel();
    late.cancel();
    await leaderNode().kv('DeleteRange', { key: Buffer.concat([name, Buffer.from('/')]), range_end: prefixEnd(`${name}/`) });
  });

  it('a slow observer falls back to the history and still gets every change, in order', async () => {
    const node = byRole[1]!;
    const name = freshName('slow-observer');
    const won = await campaign(leaderNode(), name, 'v0:');
    const slow = observe(channels[node]!, name);
    await waitUntil(() => slow.responses.length === 1, 20_000, () => 'the current leader');
    slow.pause();
    const fallbacks = await metric(node, 'dkv_watch_slow_fallbacks_total');
    // Far more than the stream's buffers hold: grpc-js's (16 messages each side), HTTP/2's
    // window, and the service's own (4 MiB).
    const proclaims = 160;
    const big = (i: number): Buffer => Buffer.concat([Buffer.from(`v${i}:`), Buffer.alloc(64 * 1024, i % 256)]);
    for (let i = 1; i <= proclaims; i++) await election(leaderNode(), 'Proclaim', { leader: won.leader, value: big(i) });
    await waitUntil(async () => (await metric(node, 'dkv_watch_slow_fallbacks_total')) > fallbacks, 20_000, () => 'the observer fell back to the history');
    slow.resume();
    await waitUntil(() => slow.responses.length === proclaims + 1 || slow.ended, 30_000, () => `${slow.responses.length} responses`);
    expect(slow.error).toBeUndefined();
    expect(slow.responses.map((r) => r.kv.value.subarray(0, r.kv.value.indexOf(':')).toString())).toEqual(Array.from({ length: proclaims + 1 }, (_, i) => `v${i}`));
    expect(slow.responses.at(-1)!.kv.value.equals(big(proclaims))).toBe(true);
    slow.cancel();
    await election(leaderNode(), 'Resign', { leader: won.leader });
  });

  it('a campaigner whose deadline passes leaves the queue', async () => {
    const name = freshName('campaign-deadline');
    const a = await campaign(leaderNode(), name, 'a');
    await expectCode(campaign(follower(1), name, 'b', { timeoutMs: 1500 }), grpcStatus.DEADLINE_EXCEEDED);
    await waitForQueue(name, 1);
    await election(leaderNode(), 'Resign', { leader: a.leader });
  });
});

// ---- Bad input ----------------------------------------------------------------------------------

describe('bad input', () => {
  it('refuses an empty name, a name too long for a key, a request too large, an empty key, a missing leader', async () => {
    const c = follower(1);
    const emptyName = 'dkv: lock or election name is not provided';
    await expectStatus(lock(c, Buffer.alloc(0)), grpcStatus.INVALID_ARGUMENT, emptyName);
    await expectStatus(campaign(c, Buffer.alloc(0), 'v'), grpcStatus.INVALID_ARGUMENT, emptyName);
    await expectStatus(election(c, 'Leader', { name: Buffer.alloc(0) }), grpcStatus.INVALID_ARGUMENT, emptyName);
    const empty = observe(c, Buffer.alloc(0));
    await waitUntil(() => empty.ended, 10_000, () => 'observe of an empty name ends');
    expect({ code: empty.error?.code, details: empty.error?.details }).toEqual({ code: grpcStatus.INVALID_ARGUMENT, details: emptyName });

    const long = Buffer.alloc(lockNameBytesMax + 1, 'n');
    await expectStatus(lock(c, long), grpcStatus.INVALID_ARGUMENT, 'dkv: lock or election name is too large');
    await expectStatus(campaign(c, long, 'v'), grpcStatus.INVALID_ARGUMENT, 'dkv: lock or election name is too large');
    // Over --max-request-bytes (1.5 MiB by default), under gRPC's limit (512 KiB more).
    const huge = Buffer.alloc(1_700_000, 'n');
    await expectStatus(lock(c, huge), grpcStatus.UNKNOWN, 'etcdserver: request is too large');
    await expectStatus(election(c, 'Proclaim', { leader: { name: Buffer.from('x'), key: Buffer.from('x/1'), rev: 2 }, value: huge }), grpcStatus.UNKNOWN, 'etcdserver: request is too large');

    await expectStatus(unlock(c, Buffer.alloc(0)), grpcStatus.UNKNOWN, 'etcdserver: key is not provided');
    await expectStatus(election(c, 'Proclaim', { value: Buffer.from('v') }), grpcStatus.UNKNOWN, '"leader" field must be provided');
    await expectStatus(election(c, 'Resign', {}), grpcStatus.UNKNOWN, '"leader" field must be provided');
    await expectStatus(election(c, 'Resign', { leader: { name: Buffer.from('x'), rev: 2 } }), grpcStatus.UNKNOWN, 'etcdserver: key is not provided');
    for (let i = 0; i < 3; i++) expect(cluster.running(i)).toBe(true);
  });
});

// ---- Watchers ------------------------------------------------------------------------------------

describe('the watch engine after waits', () => {
  it('gets back every watcher a wait or an Observe took: done, canceled, timed out', async () => {
    const node = byRole[1]!;
    const c = channels[node]!;
    // No client of this suite watches: every watcher is a wait's or an observer's, and those of
    // the tests above are all gone too.
    for (let i = 0; i < 3; i++) await waitForWatchers(i, 0);
    const base = 0;
    const lockName = freshName('leak-lock');
    const electName = freshName('leak-elect');
    const held = await lock(leaderNode(), lockName);
    const won = await campaign(leaderNode(), electName, 'leader');
    const timesOut = lock(c, lockName, { timeoutMs: 6000 }).catch((e: RpcError) => e);
    await waitForQueue(lockName, 2);
    const acquires = lock(c, lockName);
    const campaigns = campaign(c, electName, 'next');
    const observers = [observe(c, lockName), observe(c, electName)];
    await waitForQueue(lockName, 3);
    await waitForQueue(electName, 2);
    // Two lock waiters and one campaigner each watch one key; each observer watches its prefix.
    await waitForWatchers(node, base + 5);

    expect(((await timesOut) as RpcError).code).toBe(grpcStatus.DEADLINE_EXCEEDED);
    await waitForWatchers(node, base + 4);
    await unlock(leaderNode(), held.key);
    const acquired = await acquires;
    await election(leaderNode(), 'Resign', { leader: won.leader });
    const elected = await campaigns;
    await waitForWatchers(node, base + 2);
    for (const o of observers) o.cancel();
    await waitForWatchers(node, base);
    await unlock(c, acquired.key);
    await election(c, 'Resign', { leader: elected.leader });
  });
});

// ---- With leases the client grants ----------------------------------------------------------------

describe('Lock and Election with a lease the client grants', () => {
  /** Lease ids may pass 2^53: int64 fields as decimal strings here. */
  let exact: EtcdChannel;
  beforeAll(() => {
    exact = etcdChannel(cluster.endpoint(byRole[1]!), { decode: longsAsStrings });
  });
  afterAll(() => exact?.close());

  const grant = async (): Promise<string> => (await exact.call('etcdserverpb.Lease', 'LeaseGrant', { TTL: 60 }))['ID'] as string;
  const revoke = (id: string): Promise<Decoded> => exact.call('etcdserverpb.Lease', 'LeaseRevoke', { ID: id });
  const keyOf = (name: Buffer, id: string): string => `${name}/${BigInt(id).toString(16)}`;

  it('names the key after the lease; locking twice with one lease is one acquisition', async () => {
    const name = freshName('leased-lock');
    const id = await grant();
    const first = (await exact.call('v3lockpb.Lock', 'Lock', { name, lease: id })) as { header: { revision: string }; key: Buffer };
    expect(first.key.toString()).toBe(keyOf(name, id));
    const again = (await exact.call('v3lockpb.Lock', 'Lock', { name, lease: id })) as { header: { revision: string }; key: Buffer };
    expect(again.key.equals(first.key)).toBe(true);
    expect(again.header.revision).toBe(first.header.revision);
    const [kv] = await queue(name);
    expect(String(kv!.lease)).toBe(String(Number(id)));
    await revoke(id);
    expect(await queue(name)).toEqual([]);
  });

  it('hands the lock to the next waiter when the holder\'s lease is revoked', async () => {
    const name = freshName('revoked');
    const [holder, waiter] = [await grant(), await grant()];
    await exact.call('v3lockpb.Lock', 'Lock', { name, lease: holder });
    const next = tracked(exact.call('v3lockpb.Lock', 'Lock', { name, lease: waiter }, { timeoutMs: 60_000 }));
    await waitForQueue(name, 2);
    await roundTrip(exact);
    expect(next.settled()).toBe(false);
    await revoke(holder);
    const held = (await next.promise) as { key: Buffer };
    expect(held.key.toString()).toBe(keyOf(name, waiter));
    await revoke(waiter);
  });

  it('campaigning again with one lease keeps the key and its rev, and proclaims the new value', async () => {
    const name = freshName('leased-elect');
    const id = await grant();
    const first = (await exact.call('v3electionpb.Election', 'Campaign', { name, lease: id, value: Buffer.from('a') })) as { leader: { key: Buffer; rev: string; lease: string } };
    expect(first.leader.key.toString()).toBe(keyOf(name, id));
    expect(first.leader.lease).toBe(id);
    const again = (await exact.call('v3electionpb.Election', 'Campaign', { name, lease: id, value: Buffer.from('b') })) as { leader: { key: Buffer; rev: string } };
    expect([again.leader.key.toString(), again.leader.rev]).toEqual([first.leader.key.toString(), first.leader.rev]);
    const read = (await exact.call('v3electionpb.Election', 'Leader', { name })) as { kv: { value: Buffer; lease: string } };
    expect([read.kv.value.toString(), read.kv.lease]).toEqual(['b', id]);
    await exact.call('v3electionpb.Election', 'Proclaim', { leader: first.leader, value: Buffer.from('c') });
    const proclaimed = (await exact.call('v3electionpb.Election', 'Leader', { name })) as { kv: { value: Buffer; lease: string } };
    expect([proclaimed.kv.value.toString(), proclaimed.kv.lease]).toEqual(['c', id]);
    await revoke(id);
    await expectStatus(election(leaderNode(), 'Leader', { name }), grpcStatus.UNKNOWN, 'election: no leader');
  });
});

// ---- Clients that run the recipes themselves (over KV, Watch and Lease) ----------------------------

interface EtcdctlProcess {
  readonly child: ChildProcess;
  /** What it printed on stdout so far. */
  output(): string;
  /** stdout and stderr, for a failure's message. */
  log(): string;
  readonly exited: Promise<number | null>;
}

function etcdctlProcess(args: readonly string[]): EtcdctlProcess {
  const child = spawn('etcdctl', [`--endpoints=${cluster.endpoints}`, ...args], { env: { ...process.env, ETCDCTL_API: '3' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => stdout, log: () => `${stdout}\n--- stderr ---\n${stderr}`, exited };
}

async function exitWithin<T>(exited: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not exit within ${ms} ms`)), ms)));
  try {
    return await Promise.race([exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe('etcdctl lock and elect (client-side recipes over KV, Watch and Lease)', () => {
  it('runs the second locker\'s command only after the first one\'s ended', async () => {
    const name = `ctl-lock-${Date.now()}`;
    const file = (f: string): string => join(scratch, `${name}-${f}`);
    // The first holder's command runs until the test creates `release`.
    const first = etcdctlProcess(['lock', name, '--', 'sh', '-c', `date +%s%N > ${file('start1')}; while [ ! -e ${file('release')} ]; do sleep 0.05; done; date +%s%N > ${file('end1')}`]);
    await waitUntil(() => existsSync(file('start1')) || first.child.exitCode !== null, 20_000, () => `first lock held\n${first.log()}`);
    expect(first.child.exitCode, first.log()).toBeNull();
    const second = etcdctlProcess(['lock', name, '--', 'sh', '-c', `date +%s%N > ${file('start2')}; echo "$ETCD_LOCK_KEY"`]);
    await waitForQueue(Buffer.from(name), 2);
    expect(existsSync(file('start2'))).toBe(false);
    writeFileSync(file('release'), '');
    expect(await exitWithin(first.exited, 20_000, 'the first etcdctl lock'), first.log()).toBe(0);
    expect(await exitWithin(second.exited, 20_000, 'the second etcdctl lock'), second.log()).toBe(0);
    const end1 = BigInt(readFileSync(file('end1'), 'utf8').trim());
    const start2 = BigInt(readFileSync(file('start2'), 'utf8').trim());
    expect(start2 >= end1).toBe(true);
    expect(second.output(), second.log()).toMatch(new RegExp(`^${name}/[0-9a-f]+\\n`));
    expect(await queue(Buffer.from(name))).toEqual([]);
  });

  it('elects, observes with --listen, and hands over when the leader is interrupted', async () => {
    const name = `ctl-elect-${Date.now()}`;
    const listener = etcdctlProcess(['elect', '--listen', name]);
    const one = etcdctlProcess(['elect', name, 'one']);
    await waitUntil(() => one.output().includes('one\n') || one.child.exitCode !== null, 20_000, () => `first candidate elected\n${one.log()}`);
    expect(one.output(), one.log()).toMatch(new RegExp(`^${name}/[0-9a-f]+\\none\\n$`));
    const two = etcdctlProcess(['elect', name, 'two']);
    await waitForQueue(Buffer.from(name), 2);
    expect(two.output()).toBe('');
    one.child.kill('SIGINT');
    expect(await exitWithin(one.exited, 20_000, 'etcdctl elect one'), one.log()).toBe(0);
    await waitUntil(() => two.output().includes('two\n'), 20_000, () => `second candidate elected\n${two.log()}`);
    await waitUntil(() => listener.output().includes('two\n'), 20_000, () => `listener saw two\n${listener.log()}`);
    expect(listener.output(), listener.log()).toMatch(new RegExp(`^${name}/[0-9a-f]+\\none\\n${name}/[0-9a-f]+\\ntwo\\n$`));
    two.child.kill('SIGINT');
    listener.child.kill('SIGINT');
    expect(await exitWithin(two.exited, 20_000, 'etcdctl elect two'), two.log()).toBe(0);
    await exitWithin(listener.exited, 20_000, 'etcdctl elect --listen');
    expect(await queue(Buffer.from(name))).toEqual([]);
  });
});

describe('the etcd3 npm client\'s lock() and election() (client-side recipes, with leases)', () => {
  let client: Etcd3;
  beforeAll(() => {
    client = new Etcd3({ hosts: cluster.nodes.map((n) => n.clientUrl), dialTimeout: 5000 });
  });
  afterAll(() => client?.close());

  it('lock(): one holder at a time, the next acquires after release', async () => {
    const name = `npm-lock-${Date.now()}`;
    const first = await client.lock(name).ttl(10).acquire();
    await expect(client.lock(name).ttl(10).acquire()).rejects.toBeInstanceOf(EtcdLockFailedError);
    await first.release();
    const second = await client.lock(name).ttl(10).acquire();
    await second.release();
  });

  it('election(): campaign, observe, proclaim, resign hands over', async () => {
    const e = client.election(`npm-elect-${Date.now()}`, 10);
    const observer = await e.observe();
    try {
      const a = await e.campaign('a').wait();
      expect(await e.leader()).toBe('a');
      // wait() at once: the etcd3 client's Campaign.wait() only listens for a later 'elected'
      // event, so a wait() called after b is elected never settles. b's election can come before
      // a.resign() returns (the revoke's answer and b's delete event travel separately), which
      // hung this test twice.
      const b = e.campaign('b');
      const bElected = b.wait();
      await waitUntil(() => observer.leader() === 'a', 20_000, () => `the observer has ${observer.leader()}`);
      await a.proclaim('a2');
      expect(await e.leader()).toBe('a2');
      await waitUntil(() => observer.leader() === 'a2', 20_000, () => `the observer has ${observer.leader()}`);
      await a.resign();
      await bElected;
      expect(await e.leader()).toBe('b');
      await waitUntil(() => observer.leader() === 'b', 20_000, () => `the observer has ${observer.leader()}`);
      await b.resign();
    } finally {
      await observer.cancel();
    }
  });
});

// ---- Last: a node stopping under waiting calls ---------------------------------------------------

describe('a node stopping', () => {
  it('ends its waiting Lock and Campaign calls and Observe streams with `server stopped`, at once', async () => {
    const node = byRole[2]!;
    const c = channels[node]!;
    const lockName = freshName('stop-lock');
    const electName = freshName('stop-elect');
    const held = await lock(leaderNode(), lockName);
    const won = await campaign(leaderNode(), electName, 'leader');
    let started = 0;
    /** How long after the signal each waiting call failed. */
    const failedAfter = (call: Promise<unknown>): Promise<{ error: RpcError; ms: number }> =>
      call.then(
        () => ({ error: new Error('it succeeded') as RpcError, ms: Date.now() - started }),
        (error: RpcError) => ({ error, ms: Date.now() - started }),
      );
    const waiting = [failedAfter(lock(c, lockName)), failedAfter(campaign(c, electName, 'next'))];
    const observer = observe(c, electName);
    await waitForQueue(lockName, 2);
    await waitForQueue(electName, 2);
    await waitUntil(() => observer.responses.length === 1, 20_000, () => 'observer started');
    started = Date.now();
    process.kill(cluster.pid(node)!, 'SIGTERM');
    for (const { error, ms } of await Promise.all(waiting)) {
      expect({ code: error.code, details: error.details }).toEqual({ code: grpcStatus.UNKNOWN, details: 'etcdserver: server stopped' });
      // Not held until the shutdown's grace period for calls in progress (2 s) runs out.
      expect(ms).toBeLessThan(shutdownGraceMs);
    }
    await waitUntil(() => !cluster.running(node), 20_000, () => 'the node exits');
    await waitUntil(() => observer.ended, 10_000, () => 'observer ended');
    expect({ code: observer.error?.code, details: observer.error?.details }).toEqual({ code: grpcStatus.UNKNOWN, details: 'etcdserver: server stopped' });
    cluster.startNode(node);
    await cluster.waitForHealthy(node);
    await unlock(leaderNode(), held.key);
    await election(leaderNode(), 'Resign', { leader: won.leader });
  });
});
