/**
 * An online split on a real 3-node cluster, through dkv.v1.Admin's ShardSplit and `dkv shard
 * split`: a store's shard splits at a key while a client keeps writing into the half that moves;
 * every replica then holds the two halves (the same keys, values and revisions on every member),
 * both take writes, a range across them is merged, an etcd watch of a moved key goes on in the
 * child without a cancel, one across both halves is canceled with the reason, the others keep
 * their events, the groups come back from disk
 * after a SIGKILL, and bad requests are refused with stable errors, changing nothing. A shard
 * past `--shard-split-bytes` splits itself at its middle key, one past `--shard-split-qps` at the
 * key that divides its requests. A client's prefix watch and key watch go on through a split with
 * every change once, in its shard's order.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Decoded, DkvClient, type EtcdChannel } from '../../src/client/index.js';
import type { ServiceName } from '../../src/client/etcd-channel.js';
import { errorTable } from '../../src/errors.js';
import { TestCluster, etcdChannel, etcdctl, waitUntil } from './cluster-harness.js';
import { WatchClient } from './watch-client.js';

const dkvBin = join(import.meta.dirname, '..', '..', 'bin', 'dkv.js');

const autoSplitBytes = 256 * 1024;
const autoSplitQps = 300;

let cluster: TestCluster;
let channels: EtcdChannel[] = [];

beforeAll(async () => {
  // Low thresholds for the automatic splits (the last two tests); the other tests stay far below them.
  cluster = await TestCluster.start({ nodes: 3, args: [`--shard-split-bytes=${autoSplitBytes}`, `--shard-split-qps=${autoSplitQps}`] });
  channels = [0, 1, 2].map((i) => etcdChannel(cluster.endpoint(i)));
}, 60_000);

afterAll(async () => {
  for (const channel of channels) channel.close();
  await cluster?.stop();
});

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const admin = (node: number, method: string, request: object = {}): Promise<Decoded> => channels[node]!.call('dkv.v1.Admin', method, request);
const ctl = (node: number, ...args: string[]) => etcdctl(cluster.endpoint(node), args);
const key = (i: number) => `/u/k${String(i).padStart(2, '0')}`;

/** Every node's replica of `shard`: its live keys and revision (ShardStatus, this node's own). */
async function replicas(shard: number): Promise<string[]> {
  return Promise.all([0, 1, 2].map(async (node) => {
    const s = await admin(node, 'ShardStatus', { shard_id: shard });
    return `${String(s.key_count)}@${String(s.revision)}`;
  }));
}

describe('an online shard split', () => {
  let first = 0;

  it('splits a store shard at a key while a client writes into the half that moves', async () => {
    const created = await admin(0, 'StoreCreate', { name: 'users', prefix: b('/u/'), shards: 1 });
    first = Number((created.shard_ids as unknown[])[0]);
    for (let i = 0; i < 40; i++) await channels[i % 3]!.call('etcdserverpb.KV', 'Put', { key: b(key(i)), value: b(`v${i}`) });
    const watches = [new WatchClient(cluster.endpoint(2)), new WatchClient(cluster.endpoint(2)), new WatchClient(cluster.endpoint(2))];
    const client = new DkvClient({ servers: cluster.endpoints.split(',').map((address) => ({ address })) });
    try {
      // etcd watches: the key written into the moving half, a key that stays, and a range across both halves.
      watches[0]!.create({ key: key(35), watchId: 1 });
      watches[1]!.create({ key: key(5), watchId: 2 });
      watches[2]!.create({ key: key(10), rangeEnd: key(30), watchId: 3 });
      for (const w of watches) await w.waitFor((r) => r.some((x) => x.created === true));
      // A writer into the half that moves, for as long as the split takes.
      let writing = true;
      let written = 0;
      let slowest = 0;
      const writer = (async () => {
        while (writing) {
          const started = performance.now();
          await client.put(key(35), `w${written}`);
          slowest = Math.max(slowest, performance.now() - started);
          written++;
        }
      })();
      await new Promise((resolve) => setTimeout(resolve, 200));
      const split = await admin(1, 'ShardSplit', { shard_id: first, at: b(key(20)) });
      // The client's split at the same key again: the same two halves, nothing more.
      const again = await client.shards.split(first, key(20));
      expect([again.parent.id, again.child.id]).toEqual([first, first + 1]);
      await new Promise((resolve) => setTimeout(resolve, 300));
      writing = false;
      await writer;
      const parent = split.parent as Decoded;
      const child = split.child as Decoded;
      expect(Number(parent.id)).toBe(first);
      expect(Number(child.id)).toBe(first + 1);
      expect(Buffer.from(parent.end as Buffer).toString()).toBe(key(20));
      expect(Buffer.from(child.start as Buffer).toString()).toBe(key(20));
      expect([Number(parent.epoch), Number(child.epoch)]).toEqual([2, 2]);
      expect(String(child.leader)).not.toBe('0');
      // Every write was acknowledged once, in order: the last value is the last acknowledged.
      expect(written).toBeGreaterThan(5);
      expect(ctl(0, 'get', key(35), '--print-value-only').stdout.trim()).toBe(`w${written - 1}`);
      // Unavailability of a moving key, as a client retrying sees it (printed for the record).
      console.log(`shard split: ${written} puts into the moving half, the slowest took ${slowest.toFixed(0)} ms`);
      expect(slowest).toBeLessThan(3000);

      // The moved key's etcd watch went on, on its stream, in the child: every put once, in
      // order, never canceled (an etcd client sees nothing of the split).
      const valuesOf = (w: WatchClient) => w.responses.flatMap((x) => ((x.events as Decoded[] | undefined) ?? []).map((e) => Buffer.from((e.kv as Decoded).value as Buffer).toString()));
      await watches[0]!.waitFor(() => valuesOf(watches[0]!).length >= written);
      expect(valuesOf(watches[0]!)).toEqual(Array.from({ length: written }, (_, n) => `w${n}`));
      expect(watches[0]!.responses.some((x) => x.canceled === true)).toBe(false);
      // The range across both halves cannot be one shard's watch: canceled with the reason.
      await watches[2]!.waitFor((r) => r.some((x) => x.canceled === true));
      expect(watches[2]!.responses.find((x) => x.canceled === true)!.cancel_reason).toBe(errorTable['watch-shard-split'].message);
      // The key that stays keeps its events.
      expect(ctl(0, 'put', key(5), 'after').code).toBe(0);
      await watches[1]!.waitFor((r) => r.some((x) => ((x.events as Decoded[] | undefined) ?? []).length > 0));
      expect(watches[1]!.responses.some((x) => x.canceled === true)).toBe(false);
    } finally {
      for (const w of watches) w.close();
      client.close();
    }
    // Both halves on every member alike: 20 keys each, the same revision.
    await waitUntil(async () => new Set(await replicas(first)).size === 1 && new Set(await replicas(first + 1)).size === 1, 10_000, () => cluster.logs());
    expect((await replicas(first))[0]).toMatch(/^20@/);
    expect((await replicas(first + 1))[0]).toMatch(/^20@/);
    for (const node of [0, 1, 2]) {
      const all = ctl(node, 'get', '/u/', '--prefix', '--keys-only');
      expect(all.stdout.split('\n').filter((l) => l.startsWith('/u/')).length).toBe(40);
      expect(ctl(node, 'get', key(3), '--print-value-only').stdout.trim()).toBe('v3');
      expect(ctl(node, 'get', key(23), '--print-value-only').stdout.trim()).toBe('v23');
    }
    // Each half takes writes.
    expect(ctl(2, 'put', key(25), 'new').code).toBe(0);
    expect(ctl(0, 'put', key(15), 'new').code).toBe(0);
    expect(ctl(1, 'get', key(25), '--print-value-only').stdout.trim()).toBe('new');
  }, 90_000);

  it('refuses bad splits with stable errors, changing nothing', async () => {
    const before = await admin(0, 'ShardList');
    const refusal = (request: object) => admin(0, 'ShardSplit', request).then(() => 'accepted', (error: Error) => error.message);
    expect(await refusal({ shard_id: first + 1, at: b(key(10)) })).toContain(errorTable['shard-bad-split-key'].message);
    expect(await refusal({ shard_id: first + 1, at: b(key(20)) })).toContain(errorTable['shard-bad-split-key'].message);
    expect(await refusal({ shard_id: first, at: b('/v/') })).toContain(errorTable['shard-bad-split-key'].message);
    expect(await refusal({ shard_id: 0, at: b('x') })).toContain(errorTable['invalid-argument'].message);
    expect(await refusal({ shard_id: 1, at: b('x') })).toContain(errorTable['store-default'].message);
    expect(await refusal({ shard_id: 999, at: b('x') })).toContain(errorTable['shard-not-found'].message);
    expect(await refusal({ shard_id: first, at: new Uint8Array(0) })).toContain(errorTable['shard-bad-split-key'].message);
    // A lock under the store (lease 0: the server grants a session lease in the lock's shard):
    // a lease's keys would span two shards, so the split is refused before the map changes.
    const lock = await channels[0]!.call('v3lockpb.Lock', 'Lock', { name: b('/u/a-lock'), lease: 0 });
    expect(await refusal({ shard_id: first, at: b(key(10)) })).toContain(errorTable['shard-holds-leases'].message);
    await channels[0]!.call('v3lockpb.Lock', 'Unlock', { key: lock.key });
    const after = await admin(0, 'ShardList');
    expect((after.shards as Decoded[]).map((s) => `${String(s.id)}/${String(s.epoch)}`)).toEqual((before.shards as Decoded[]).map((s) => `${String(s.id)}/${String(s.epoch)}`));
  }, 30_000);

  it('dkv shard split splits at the middle key, and the groups come back from disk after a SIGKILL', async () => {
    const r = spawnSync(process.execPath, [dkvBin, 'shard', 'split', String(first + 1), '--endpoints', cluster.endpoints], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    // 20 keys in [k20, end): the middle one is k30.
    expect(r.stdout.split('\n')[0]).toBe(`Shard ${first + 1} split at ${key(30)} into shards ${first + 1} and ${first + 2}`);
    await waitUntil(async () => new Set(await replicas(first + 2)).size === 1, 10_000, () => cluster.logs());
    await cluster.kill(2);
    cluster.startNode(2);
    await waitUntil(async () => {
      try {
        return ctl(2, 'get', key(33), '--print-value-only', '--consistency=s').stdout.trim() === 'v33';
      } catch {
        return false;
      }
    }, 20_000, () => cluster.logs());
    await waitUntil(async () => (await Promise.all([first, first + 1, first + 2].map(async (id) => new Set(await replicas(id).catch(() => ['x', 'y'])).size === 1))).every(Boolean), 20_000, () => cluster.logs());
    expect((await replicas(first + 2))[0]).toMatch(/^10@/);
    // The killed node may have led the meta shard: its election must be over before the next
    // test's raw calls (etcd's clients retry `no leader` and timeouts; these do not).
    await waitUntil(async () => (await Promise.all([0, 1, 2].map((node) => admin(node, 'StoreList').then(() => true, () => false)))).every(Boolean), 20_000, () => cluster.logs());
  }, 60_000);

  it('a drop takes every shard the splits made, and the default store serves the prefix again, empty', async () => {
    // A step that met the meta shard's election after the last test's restart fails with a
    // retryable error; the drop is run again, as an operator would (each of its steps is
    // idempotent), until it answers or the store is gone.
    let dropped: number[] | undefined;
    await waitUntil(async () => {
      try {
        dropped = ((await admin(0, 'StoreDrop', { name: 'users' })).shard_ids as unknown[]).map(Number);
        return true;
      } catch (error) {
        if (/store not found/.test((error as Error).message)) return true;
        if (!/UNAVAILABLE/.test((error as Error).message)) throw error;
        return false;
      }
    }, 20_000, () => cluster.logs());
    if (dropped !== undefined) expect(dropped).toEqual([first, first + 1, first + 2]);
    const listed = await admin(1, 'ShardList');
    expect((listed.shards as Decoded[]).map((shard) => Number(shard.id))).toEqual([0, 1]);
    // A node that has not applied the reclaim yet refuses the prefix with a retryable error.
    for (const node of [0, 1, 2]) {
      await waitUntil(async () => {
        const r = ctl(node, 'get', '/u/', '--prefix', '--keys-only');
        if (r.code !== 0) return false;
        expect(r.stdout.trim()).toBe('');
        return true;
      }, 10_000, () => cluster.logs());
    }
  }, 30_000);
  /** A call asked again while it meets the retryable UNAVAILABLE (a node that has not applied the store's mount yet), as etcd's clients do. */
  async function callRetrying(node: number, service: ServiceName, method: string, request: object): Promise<Decoded> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await channels[node]!.call(service, method, request);
      } catch (error) {
        if ((error as { code?: number }).code !== 14 || attempt === 50) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  /** The shards of store `name`, in key order, as node 0's map has them. */
  async function shardsOf(name: string): Promise<Decoded[]> {
    return ((await admin(0, 'ShardList')).shards as Decoded[]).filter((shard) => shard.store === name);
  }

  /** The sum of a counter's series on every node. */
  async function counted(metric: string): Promise<number> {
    let total = 0;
    for (const node of [0, 1, 2]) {
      const text = await (await fetch(`${cluster.metricsUrl(node)}/metrics`)).text();
      for (const line of text.split('\n')) if (line.startsWith(metric)) total += Number(line.split(' ').pop());
    }
    return total;
  }

  it('a store shard past --shard-split-bytes splits itself at its middle key, losing nothing', async () => {
    await admin(0, 'StoreCreate', { name: 'big', prefix: b('/big/'), shards: 1 });
    const bigKey = (i: number) => `/big/${String(i).padStart(3, '0')}`;
    const value = 'x'.repeat(1000);
    // 300 values of 1,000 bytes (about 310 KiB with their keys and versions' headers), 100 per
    // txn: after two txns the shard holds about 207 KiB, well under the threshold, so the split
    // can only come after the third, with all 300 keys in (in txns of 50, 250 keys, ~259 KiB,
    // would already pass it, and the split could come at /big/125).
    for (let t = 0; t < 3; t++) {
      const success = Array.from({ length: 100 }, (_, i) => ({ request_put: { key: b(bigKey(t * 100 + i)), value: b(value) } }));
      await callRetrying(t % 3, 'etcdserverpb.KV', 'Txn', { success });
    }
    await waitUntil(async () => (await shardsOf('big')).length === 2, 15_000, () => cluster.logs());
    const [low, high] = await shardsOf('big');
    expect(Buffer.from(high!.start as Buffer).toString()).toBe(bigKey(150));
    expect(Buffer.from(low!.end as Buffer).toString()).toBe(bigKey(150));
    // Each half (~155 KiB) is under the threshold: no further split.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect((await shardsOf('big')).length).toBe(2);
    expect(await counted('dkv_shard_auto_splits_total{reason="size"}')).toBe(1);
    expect(cluster.logs()).toContain(`automatic split: shard ${String(low!.id)} of store "big" split at "${bigKey(150)}"`);
    for (const node of [0, 1, 2]) {
      await waitUntil(async () => ctl(node, 'get', '/big/', '--prefix', '--keys-only').stdout.split('\n').filter((l) => l.startsWith('/big/')).length === 300, 10_000, () => cluster.logs());
      expect(ctl(node, 'get', bigKey(299), '--print-value-only').stdout.trim()).toBe(value);
    }
    await waitUntil(async () => new Set(await replicas(Number(high!.id))).size === 1, 10_000, () => cluster.logs());
    expect((await replicas(Number(high!.id)))[0]).toMatch(/^150@/);
  }, 60_000);

  it('a store shard past --shard-split-qps splits at the key that divides its requests', async () => {
    await admin(0, 'StoreCreate', { name: 'hot', prefix: b('/hot/'), shards: 1 });
    const letters = Array.from({ length: 26 }, (_, i) => String.fromCharCode(97 + i));
    for (const letter of letters) await callRetrying(1, 'etcdserverpb.KV', 'Put', { key: b(`/hot/${letter}`), value: b(letter) });
    // Reads spread evenly over the 26 keys, through node 1, four at a time, until the split
    // (a whole window of --shard-split-qps and more: about 11 s). A read that meets the split
    // gets the retryable UNAVAILABLE and is asked again, as etcd's clients do.
    let reads = 0;
    let retried = 0;
    let done = false;
    const reader = async (): Promise<void> => {
      while (!done) {
        try {
          await channels[1]!.call('etcdserverpb.KV', 'Range', { key: b(`/hot/${letters[reads % 26]!}`), serializable: true });
          reads++;
        } catch (error) {
          if ((error as { code?: number }).code !== 14) throw error;
          retried++;
        }
      }
    };
    const readers = [reader(), reader(), reader(), reader()];
    const started = Date.now();
    try {
      await waitUntil(async () => (await shardsOf('hot')).length === 2, 30_000, () => cluster.logs());
    } finally {
      done = true;
      await Promise.all(readers);
    }
    const rate = (reads * 1000) / (Date.now() - started);
    console.log(`load split: ${reads} reads in ${Date.now() - started} ms (${rate.toFixed(0)}/s against a threshold of ${autoSplitQps}/s), ${retried} retried`);
    const [, high] = await shardsOf('hot');
    // The sampled reads were even over the letters: the cut is near the middle one.
    const cut = Buffer.from(high!.start as Buffer).toString();
    expect(cut >= '/hot/f' && cut <= '/hot/u').toBe(true);
    // The map shows the split once the meta shard has applied it; the node that asked for it
    // counts and logs it when its request returns, which can be a moment later.
    await waitUntil(async () => (await counted('dkv_shard_auto_splits_total{reason="load"}')) >= 1, 10_000, () => cluster.logs());
    expect(await counted('dkv_shard_auto_splits_total{reason="load"}')).toBe(1);
    expect(cluster.logs()).toMatch(/automatic split: shard \d+ of store "hot" split at "\/hot\/[a-z]" into shards \d+ and \d+ \(load: /);
    for (const letter of letters) expect(ctl(0, 'get', `/hot/${letter}`, '--print-value-only').stdout.trim()).toBe(letter);
  }, 60_000);
  it("a client's prefix watch and key watch go on through a split: every change once, in its shard's order", async () => {
    await admin(0, 'StoreCreate', { name: 'cfg', prefix: b('/c/'), shards: 1 });
    const letters = Array.from({ length: 26 }, (_, i) => String.fromCharCode(97 + i));
    const client = new DkvClient({ servers: cluster.endpoints.split(',').map((address) => ({ address })) });
    const seen: Array<{ shard: number; key: string; value: string; revision: number }> = [];
    const keySeen: string[] = [];
    try {
      for (const letter of letters) await client.put(`/c/${letter}`, 'v0');
      const prefixWatch = client.watchPrefix('/c/');
      const keyWatch = client.watch('/c/x');
      const consumed = (async () => {
        for await (const item of prefixWatch) {
          if (item.type !== 'events') continue;
          for (const e of item.events) seen.push({ shard: item.shard ?? 0, key: e.kv.key.toString(), value: e.kv.value.toString(), revision: e.kv.modRevision });
        }
      })();
      const keyConsumed = (async () => {
        for await (const batch of keyWatch) for (const e of batch.events) keySeen.push(e.kv.value.toString());
      })();
      await prefixWatch.ready();
      await keyWatch.ready;
      // One writer over every letter (about 100 puts/s, under --shard-split-qps), split half way.
      const written: Array<{ key: string; value: string }> = [];
      let writing = true;
      const writer = (async () => {
        for (let n = 1; writing; n++) {
          const key = `/c/${letters[n % 26]!}`;
          await client.put(key, `v${n}`);
          written.push({ key, value: `v${n}` });
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      })();
      await new Promise((resolve) => setTimeout(resolve, 800));
      const split = await admin(2, 'ShardSplit', { shard_id: Number(((await shardsOf('cfg'))[0]!).id), at: b('/c/m') });
      await new Promise((resolve) => setTimeout(resolve, 1200));
      writing = false;
      await writer;
      // Every acknowledged put arrives once.
      await waitUntil(async () => seen.length >= written.length, 15_000, () => `${seen.length} of ${written.length} events\n${cluster.logs()}`);
      await waitUntil(async () => keySeen.length >= written.filter((w) => w.key === '/c/x').length, 15_000, () => cluster.logs());
      prefixWatch.close();
      keyWatch.close();
      await Promise.all([consumed, keyConsumed]);
      expect(seen.map((e) => `${e.key}=${e.value}`)).toEqual(expect.arrayContaining(written.map((w) => `${w.key}=${w.value}`)));
      expect(seen.length).toBe(written.length);
      // Per shard, revisions only grow; the moved keys' later events come from the child.
      const child = Number((split.child as Decoded).id);
      for (const shard of new Set(seen.map((e) => e.shard))) {
        const revisions = seen.filter((e) => e.shard === shard).map((e) => e.revision);
        expect(revisions).toEqual([...revisions].sort((x, y) => x - y));
        expect(new Set(revisions).size).toBe(revisions.length);
      }
      expect(seen.some((e) => e.shard === child && e.key >= '/c/m')).toBe(true);
      expect(seen.filter((e) => e.shard === child).every((e) => e.key >= '/c/m')).toBe(true);
      // Per key, the writer's order.
      for (const letter of letters) {
        const key = `/c/${letter}`;
        expect(seen.filter((e) => e.key === key).map((e) => e.value)).toEqual(written.filter((w) => w.key === key).map((w) => w.value));
      }
      expect(keySeen).toEqual(written.filter((w) => w.key === '/c/x').map((w) => w.value));
      expect([...prefixWatch.resumeToken.keys()].sort((x, y) => x - y)).toEqual([Number((split.parent as Decoded).id), child]);
    } finally {
      client.close();
    }
  }, 60_000);
});
