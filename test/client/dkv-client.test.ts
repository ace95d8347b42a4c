/**
 * DkvClient's API, one suite run against a 3-node DKV cluster and against Debian's etcd 3.4
 * (for everything etcd has): KV and range options, txns, watches and their compaction error,
 * watchPrefix, leases with keep-alive and the 'lost' event, locks with fencing tokens and
 * guarded writes, elections; counters exist only on DKV (NOT_SUPPORTED on etcd).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compare, DkvClient, type DkvClientOptions, isDkvError, type KeyValue, type LeaseLostEvent, op, type WatchBatch } from '../../src/client/index.js';
import { RealEtcd, TestCluster, waitUntil } from '../server/cluster-harness.js';

interface Target {
  readonly name: 'dkv' | 'etcd';
  start(): Promise<{ readonly servers: string[]; stop(): Promise<void> }>;
}

const targets: Target[] = [
  {
    name: 'dkv',
    start: async () => {
      const cluster = await TestCluster.start({ nodes: 3 });
      return { servers: [0, 1, 2].map((i) => cluster.endpoint(i)), stop: () => cluster.stop() };
    },
  },
  {
    name: 'etcd',
    start: async () => {
      const etcd = await RealEtcd.start();
      return { servers: [etcd.endpoint], stop: () => etcd.stop() };
    },
  },
];

const text = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : Buffer.from(b).toString());

/** Rejects with the DkvError code `promise` failed with. */
async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (isDkvError(error)) return error.code;
    throw error;
  }
  throw new Error('expected a DkvError, got a result');
}

/** The next `count` batches' events of a watch. */
async function nextEvents(iterator: AsyncIterator<WatchBatch>, count: number): Promise<Array<[string, string, string]>> {
  const events: Array<[string, string, string]> = [];
  while (events.length < count) {
    const next = await iterator.next();
    if (next.done === true) break;
    for (const e of next.value.events) events.push([e.type, text(e.kv.key)!, text(e.kv.value)!]);
  }
  return events;
}

describe.each(targets)('DkvClient on $name', (target) => {
  let stop: () => Promise<void>;
  let options: DkvClientOptions;
  let client: DkvClient;
  const others: DkvClient[] = [];
  const another = (): DkvClient => {
    const c = new DkvClient(options);
    others.push(c);
    return c;
  };
  const k = (name: string): string => `${target.name}/${name}`;

  beforeAll(async () => {
    const started = await target.start();
    stop = started.stop;
    options = { servers: started.servers.map((address) => ({ address })), timeoutMs: 10_000 };
    client = new DkvClient(options);
  }, 60_000);

  afterAll(async () => {
    client?.close();
    for (const c of others) c.close();
    await stop?.();
  });

  it('puts, gets and deletes keys given as strings or bytes', async () => {
    const first = await client.put(k('kv/a'), 'one');
    expect(first.header.revision).toBeGreaterThan(0);
    expect(first.prevKv).toBeUndefined();
    const second = await client.put(Buffer.from(k('kv/a')), new Uint8Array([0x74, 0x77, 0x6f]), { prevKv: true });
    expect(text(second.prevKv?.value)).toBe('one');
    const kv = await client.get(k('kv/a'));
    expect(kv).toMatchObject({ version: 2, createRevision: first.header.revision, modRevision: second.header.revision, lease: 0n });
    expect(text(kv?.value)).toBe('two');
    expect(await client.get(k('kv/missing'))).toBeUndefined();
    const deleted = await client.delete(k('kv/a'), { prevKv: true });
    expect(deleted.deleted).toBe(1);
    expect(text(deleted.prevKvs[0]?.value)).toBe('two');
    expect((await client.delete(k('kv/a'))).deleted).toBe(0);
    // The old value stays readable at its revision.
    expect(text((await client.get(k('kv/a'), { revision: second.header.revision }))?.value)).toBe('two');
  });

  it('reads ranges with limit, sort, keys-only, count-only, revision and mod-revision filters', async () => {
    const revisions: number[] = [];
    for (const [i, v] of ['c', 'a', 'b', 'e', 'd'].entries()) revisions.push((await client.put(k(`r/${i}`), v)).header.revision);
    await client.put(k('r0'), 'outside the prefix');
    const all = await client.range(k('r/'), { prefix: true });
    expect(all.kvs.map((x) => text(x.key))).toEqual([0, 1, 2, 3, 4].map((i) => k(`r/${i}`)));
    expect(all.count).toBe(5);
    const limited = await client.range(k('r/'), { prefix: true }, { limit: 2 });
    expect(limited).toMatchObject({ more: true, count: 5 });
    expect(limited.kvs).toHaveLength(2);
    const byValue = await client.range(k('r/'), { prefix: true }, { sortOrder: 'descend', sortTarget: 'value' });
    expect(byValue.kvs.map((x) => text(x.value))).toEqual(['e', 'd', 'c', 'b', 'a']);
    const keysOnly = await client.range(k('r/'), { prefix: true }, { keysOnly: true, serializable: true });
    expect(keysOnly.kvs.every((x) => x.value.length === 0)).toBe(true);
    const countOnly = await client.range(k('r/'), { prefix: true }, { countOnly: true });
    expect(countOnly).toMatchObject({ count: 5, kvs: [] });
    const half = await client.range(k('r/'), { prefix: true }, { revision: revisions[2] });
    expect(half.kvs).toHaveLength(3);
    const recent = await client.range(k('r/'), { prefix: true }, { minModRevision: revisions[3] });
    expect(recent.kvs.map((x) => text(x.value))).toEqual(['e', 'd']);
    const between = await client.range(k('r/1'), k('r/3'));
    expect(between.kvs.map((x) => text(x.key))).toEqual([k('r/1'), k('r/2')]);
    expect(await codeOf(client.range(k('r/'), { prefix: true }, { revision: 10_000_000 }))).toBe('FUTURE_REVISION');
  });

  it('commits txns: compares, both branches, and every operation result', async () => {
    await client.put(k('t/x'), '1');
    const taken = await client
      .txn()
      .if(compare.value(k('t/x'), '=', '1'), compare.version(k('t/x'), '>', 0), compare.createRevision(k('t/absent'), '=', 0))
      .then(op.put(k('t/x'), '2', { prevKv: true }), op.get(k('t/x')), op.delete(k('t/y')))
      .else(op.put(k('t/x'), 'never'))
      .commit();
    expect(taken.succeeded).toBe(true);
    expect(taken.responses.map((r) => r.type)).toEqual(['put', 'get', 'delete']);
    const [put, get] = taken.responses;
    expect(put?.type === 'put' && text(put.prevKv?.value)).toBe('1');
    expect(get?.type === 'get' && text(get.kvs[0]?.value)).toBe('2');
    const modRevision = (await client.get(k('t/x')))!.modRevision;
    const other = await client
      .txn()
      .if(compare.modRevision(k('t/x'), '<', modRevision), compare.lease(k('t/x'), '=', 0n))
      .then(op.put(k('t/x'), 'never'))
      .else(op.get(k('t/x')))
      .commit();
    expect(other.succeeded).toBe(false);
    expect(other.responses[0]?.type === 'get' && text(other.responses[0].kvs[0]?.value)).toBe('2');
    // A txn is no promise.
    await expect(Promise.resolve().then(() => client.txn() as unknown)).rejects.toThrow(/not a promise/);
  });

  it('watches a prefix (prevKv, filters) and fails with COMPACTED from a compacted revision', async () => {
    const watcher = client.watch(k('w/'), { prefix: true, prevKv: true });
    const created = await watcher.ready;
    expect(created).toBeGreaterThan(0);
    const iterator = watcher[Symbol.asyncIterator]();
    await client.put(k('w/a'), '1');
    await client.put(k('w/a'), '2');
    await client.delete(k('w/a'));
    await client.put(k('wx'), 'outside');
    expect(await nextEvents(iterator, 3)).toEqual([['put', k('w/a'), '1'], ['put', k('w/a'), '2'], ['delete', k('w/a'), '']]);
    watcher.close();
    expect((await iterator.next()).done).toBe(true);

    const noPuts = client.watch(k('w/'), { prefix: true, filters: ['noPut'], startRevision: created + 1 });
    const deletes = await nextEvents(noPuts[Symbol.asyncIterator](), 1);
    expect(deletes).toEqual([['delete', k('w/a'), '']]);
    noPuts.close();

    const compactAt = (await client.put(k('w/b'), 'x')).header.revision;
    await client.compact(compactAt);
    // The compaction went to the leader; the watch goes to the server reads use, which may not have
    // applied it yet (it would then serve the older revisions, as an etcd member does). A
    // linearizable read there waits until it has.
    await client.get(k('w/b'));
    const late = client.watch(k('w/'), { prefix: true, startRevision: created });
    const failure = await late[Symbol.asyncIterator]()
      .next()
      .then(() => undefined, (error: unknown) => error);
    expect(isDkvError(failure, 'COMPACTED')).toBe(true);
    expect((failure as { compactRevision: number }).compactRevision).toBe(compactAt);
    expect(await codeOf(client.get(k('w/a'), { revision: created }))).toBe('COMPACTED');
  });

  it('stops reading for a consumer that falls behind and resumes where it stopped, losing nothing', async () => {
    const watcher = client.watch(k('slow/'), { prefix: true, bufferedBatchesMax: 4 });
    await watcher.ready;
    const revisions: number[] = [];
    for (let i = 0; i < 20; i++) revisions.push((await client.put(k(`slow/${i}`), `${i}`)).header.revision);
    await waitUntil(() => watcher.buffered === 4, 5_000, () => `4 buffered batches (${watcher.buffered})`);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(watcher.buffered).toBe(4);
    const seen: number[] = [];
    for await (const batch of watcher) {
      seen.push(...batch.events.map((e) => e.kv.modRevision));
      if (seen.length >= 20) break;
    }
    expect(seen).toEqual(revisions);
  });

  it('ends a watch cleanly when its signal aborts or the client closes', async () => {
    const abort = new AbortController();
    const own = another();
    const watched = own.watch(k('end/'), { prefix: true, signal: abort.signal });
    await watched.ready;
    const consumed = (async () => {
      let batches = 0;
      for await (const batch of watched) batches += batch.events.length;
      return batches;
    })();
    await client.put(k('end/1'), 'x');
    await waitUntil(() => watched.revision > 0, 5_000);
    abort.abort();
    expect(await consumed).toBeGreaterThanOrEqual(0);
    const second = own.watch(k('end/'), { prefix: true });
    await second.ready;
    const done = (async () => {
      for await (const _ of second) void _;
      return 'ended';
    })();
    own.close();
    expect(await done).toBe('ended');
    expect(await codeOf(own.get('x'))).toBe('CLOSED');
  });

  it('watchPrefix yields the snapshot, then live events, in order', async () => {
    for (let i = 0; i < 5; i++) await client.put(k(`p/${i}`), `v${i}`);
    const watch = client.watchPrefix(k('p/'));
    const iterator = watch[Symbol.asyncIterator]();
    const first = await iterator.next();
    expect(first.value?.type).toBe('snapshot');
    if (first.value?.type !== 'snapshot') throw new Error('no snapshot');
    expect(first.value.kvs.map((x: KeyValue) => text(x.value))).toEqual(['v0', 'v1', 'v2', 'v3', 'v4']);
    await watch.ready();
    const revisions: number[] = [];
    for (let i = 0; i < 3; i++) revisions.push((await client.put(k(`p/${i}`), `w${i}`)).header.revision);
    const seen: number[] = [];
    while (seen.length < 3) {
      const next = await iterator.next();
      if (next.done === true || next.value.type !== 'events') throw new Error('the watch ended');
      seen.push(...next.value.events.map((e) => e.kv.modRevision));
    }
    expect(seen).toEqual(revisions);
    expect(revisions[0]).toBeGreaterThan(first.value.revision);
    watch.close();
  });

  it('keeps a lease alive past its TTL, lists it, and reports it lost when another client revokes it', async () => {
    const lease = await client.grant(2);
    expect(lease.id).toBeGreaterThan(0n);
    await client.put(k('l/key'), 'held', { lease: lease.id });
    expect((await client.get(k('l/key')))?.lease).toBe(lease.id);
    // Twice the TTL: only the keep-alives keep it.
    await new Promise((resolve) => setTimeout(resolve, 4_500));
    const ttl = await lease.timeToLive({ keys: true });
    expect(ttl.ttl).toBeGreaterThan(0);
    expect(ttl.grantedTtl).toBe(2);
    expect(ttl.keys.map((key) => key.toString())).toEqual([k('l/key')]);
    expect(await client.leases()).toContain(lease.id);
    const lost = new Promise<LeaseLostEvent>((resolve) => lease.once('lost', resolve));
    await another().lease(lease.id).revoke();
    expect(await lost).toMatchObject({ reason: 'expired' });
    expect(lease.lost).toBe(true);
    expect(await client.get(k('l/key'))).toBeUndefined();
    expect((await lease.timeToLive()).ttl).toBe(-1);
    // Revoking a lease that is gone resolves (it is gone either way).
    await lease.revoke();
  }, 30_000);

  it('hands a lock to the second client after the first unlocks; fencing tokens increase and guard writes', async () => {
    const a = await client.lock(k('lock'), { ttl: 5 });
    const b = another();
    let bHolds = false;
    const bLock = b.lock(k('lock'), { ttl: 5 }).then((handle) => {
      bHolds = true;
      return handle;
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(bHolds).toBe(false);
    await client.guardedPut(k('lock/data'), 'from a', a.fencingToken);
    await a.unlock();
    const second = await bLock;
    expect(second.fencingToken.revision).toBeGreaterThan(a.fencingToken.revision);
    expect(second.key.toString().startsWith(`${k('lock')}/`)).toBe(true);
    expect(await codeOf(client.guardedPut(k('lock/data'), 'stale a', a.fencingToken))).toBe('FENCE_STALE');
    await b.guardedPut(k('lock/data'), 'from b', second.fencingToken);
    expect(text((await client.get(k('lock/data')))?.value)).toBe('from b');
    await second.unlock();
    // A waiter's abort ends its wait.
    const holder = await client.lock(k('lock2'), { ttl: 5 });
    const abort = new AbortController();
    const waiting = another().lock(k('lock2'), { ttl: 5, signal: abort.signal });
    setTimeout(() => abort.abort(), 200);
    expect(await codeOf(waiting)).toBe('ABORTED');
    await holder.unlock();
  }, 30_000);

  it('runs an election: campaign, observe, proclaim, resign', async () => {
    const name = k('election');
    const observer = another();
    const abort = new AbortController();
    const seen: string[] = [];
    const observing = (async () => {
      for await (const kv of observer.observe(name, { signal: abort.signal })) seen.push(text(kv.value)!);
    })();
    expect(await client.electionLeader(name)).toBeUndefined();
    const first = await client.campaign(name, 'a', { ttl: 5 });
    expect(text((await first.leader())?.value)).toBe('a');
    let secondLeads = false;
    const secondCampaign = another()
      .campaign(name, 'b', { ttl: 5 })
      .then((l) => {
        secondLeads = true;
        return l;
      });
    await first.proclaim('a2');
    await waitUntil(() => seen.includes('a2'), 10_000, () => `observed ${seen.join(',')}`);
    expect(secondLeads).toBe(false);
    await first.resign();
    const second = await secondCampaign;
    expect(text((await client.electionLeader(name))?.value)).toBe('b');
    expect(await codeOf(first.proclaim('late'))).toBe('NOT_LEADER');
    await waitUntil(() => seen.includes('b'), 10_000, () => `observed ${seen.join(',')}`);
    expect(seen.indexOf('a2')).toBeLessThan(seen.indexOf('b'));
    await second.resign();
    abort.abort();
    await observing;
  }, 30_000);

  it(target.name === 'dkv' ? 'counts with dkv.v1.Counter' : 'refuses counters with NOT_SUPPORTED', async () => {
    const counter = client.counter(k('counter'));
    if (target.name === 'etcd') {
      expect(await codeOf(counter.increment())).toBe('NOT_SUPPORTED');
      expect(await codeOf(counter.get())).toBe('NOT_SUPPORTED');
      return;
    }
    expect(await counter.get()).toBe(0n);
    expect(await counter.increment(5)).toBe(5n);
    expect(await counter.decrement()).toBe(4n);
    await counter.set(2n ** 60n);
    expect(await counter.increment(1n)).toBe(2n ** 60n + 1n);
    expect(text((await client.get(k('counter')))?.value)).toBe((2n ** 60n + 1n).toString());
    expect(await counter.delete()).toBe(true);
    expect(await counter.get({ serializable: false })).toBe(0n);
  });

  it('learns the leader and reports ready', async () => {
    const fresh = another();
    const leader = new Promise((resolve) => fresh.once('leader', resolve));
    await fresh.put(k('leader'), 'x');
    expect(fresh.state).toBe('ready');
    expect(await leader).toMatchObject({ address: expect.any(String) });
    expect(fresh.leader.memberId).toBe((await fresh.status()).leader);
    expect((await fresh.members()).length).toBe(target.name === 'dkv' ? 3 : 1);
  });
});
