/**
 * The Watch service against a real 3-node cluster: created/canceled/progress responses as etcd
 * sends them, catch-up from history joining the live stream with no gap and no duplicate, the
 * same events in the same order on every node, compacted start revisions, slow consumers that
 * fall back to history, and many watchers on one stream.
 */
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Etcd3 } from 'etcd3';
import { watchLimits } from '../../src/engines/watch/index.js';
import type { EtcdChannel } from '../../src/client/index.js';
import { etcdChannel, TestCluster, prefixEnd, waitUntil } from './cluster-harness.js';
import { WatchClient } from './watch-client.js';

let cluster: TestCluster;
let kv: EtcdChannel;
const watchers: WatchClient[] = [];

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
  kv = etcdChannel(cluster.endpoint(0));
}, 60_000);

afterAll(async () => {
  for (const w of watchers) w.close();
  kv?.close();
  await cluster?.stop();
});

function watchOn(node: number): WatchClient {
  const w = new WatchClient(cluster.endpoint(node));
  watchers.push(w);
  return w;
}

/** A metric of node 1 (metrics refresh each second). */
async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${cluster.nodes[0]!.metricsUrl}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1] ?? NaN);
}

async function put(key: string, value: string): Promise<number> {
  const r = await kv.kv('Put', { key: Buffer.from(key), value: Buffer.from(value) });
  return (r.header as { revision: number }).revision;
}

/**
 * A prefix watch on node 1 whose client stops reading, then `writes` puts of 64 KiB values
 * ("i:xxx…") under the prefix; returns the watch, the puts' revisions and the filler.
 */
async function stalledPrefixWatch(prefix: string, writes: number): Promise<{ w: WatchClient; revisions: number[]; big: string }> {
  const w = watchOn(0);
  w.create({ key: prefix, rangeEnd: prefixEnd(prefix) });
  await w.waitFor((rs) => rs.some((r) => r.created === true));
  w.pause();
  const big = 'x'.repeat(64 * 1024);
  const revisions: number[] = [];
  for (let i = 0; i < writes; i++) revisions.push(await put(`${prefix}${i % 10}`, `${i}:${big}`));
  return { w, revisions, big };
}

describe('Watch', () => {
  it('creates, delivers live events with prev_kv and filters, cancels, and answers progress requests', async () => {
    const w = watchOn(1);
    w.create({ key: 'live/', rangeEnd: prefixEnd('live/'), prevKv: true });
    w.create({ key: 'live/', rangeEnd: prefixEnd('live/'), filters: [0] }); // NOPUT: deletes only
    await w.waitFor((rs) => rs.filter((r) => r.created === true).length === 2);
    expect(w.responses.map((r) => r.watch_id)).toEqual([0, 1]);
    await put('live/a', '1');
    await put('live/a', '2');
    await kv.kv('DeleteRange', { key: Buffer.from('live/a') });
    await w.waitFor(() => w.events(0).length === 3 && w.events(1).length === 1);
    expect(w.events(0).map((e) => [e.type, e.key, e.value, e.prevValue])).toEqual([
      ['PUT', 'live/a', '1', undefined],
      ['PUT', 'live/a', '2', '1'],
      ['DELETE', 'live/a', '', '2'],
    ]);
    expect(w.events(1).map((e) => e.type)).toEqual(['DELETE']);
    w.requestProgress();
    await w.waitFor((rs) => rs.some((r) => r.watch_id === -1 && !r.created));
    const progress = w.responses.find((r) => r.watch_id === -1)!;
    expect((progress.header as { revision: number }).revision).toBe(w.events(0)[2]!.modRevision);
    w.cancel(1);
    await w.waitFor((rs) => rs.some((r) => r.watch_id === 1 && r.canceled === true));
    // A client-chosen id already in use is refused the way etcd refuses it.
    w.create({ key: 'x', watchId: 0 });
    w.create({ key: 'y', watchId: 7 });
    w.create({ key: 'z', watchId: 7 });
    await w.waitFor((rs) => rs.some((r) => r.cancel_reason === 'mvcc: duplicate watch ID provided on the WatchStream'));
  });

  it('catches up from the history and joins the live stream with no gap or duplicate, on every node', async () => {
    const first = await put('gap/0', 'v0');
    const writes: Promise<number>[] = [];
    for (let i = 1; i < 200; i++) writes.push(put(`gap/${i % 7}`, `v${i}`));
    // Watchers on all three nodes start from the first write while the rest are still arriving.
    const ws = [0, 1, 2].map((n) => {
      const w = watchOn(n);
      w.create({ key: 'gap/', rangeEnd: prefixEnd('gap/'), startRevision: first });
      return w;
    });
    const revisions = await Promise.all(writes);
    const last = Math.max(...revisions);
    for (const w of ws) await w.waitFor(() => w.events(0).length === 200 && w.events(0)[199]!.modRevision === last);
    const expected = [first, ...[...revisions].sort((a, b) => a - b)];
    for (const w of ws) {
      expect(w.events(0).map((e) => e.modRevision)).toEqual(expected);
    }
    // Identical events (values, versions) on every node.
    expect(ws[1]!.events(0)).toEqual(ws[0]!.events(0));
    expect(ws[2]!.events(0)).toEqual(ws[0]!.events(0));
  });

  it('cancels a watch whose start revision was compacted, with compact_revision', async () => {
    const r1 = await put('cmp/a', '1');
    const r2 = await put('cmp/a', '2');
    await kv.kv('Compact', { revision: r2 });
    // The watch's member must have applied the compaction (as on etcd, a member that has not yet
    // serves the older revisions): a linearizable read there waits for it.
    const node2 = etcdChannel(cluster.endpoint(2));
    try {
      await node2.kv('Range', { key: Buffer.from('cmp/a') });
    } finally {
      node2.close();
    }
    const w = watchOn(2);
    w.create({ key: 'cmp/a', startRevision: r1 });
    await w.waitFor((rs) => rs.some((r) => r.canceled === true));
    const canceled = w.responses.find((r) => r.canceled === true)!;
    expect(canceled.compact_revision).toBe(r2);
    // At the compact revision itself the watch works (the value written there is kept), as in etcd.
    w.create({ key: 'cmp/a', startRevision: r2 });
    await w.waitFor(() => w.events(1).length === 1);
    expect(w.events(1)[0]!.value).toBe('2');
  });

  it('gives a slow consumer every event in order once it reads again', async () => {
    const writes = 480;
    // ~30 MiB of events, about twice the stream's buffer: the watcher must fall back to history.
    const { w, revisions, big } = await stalledPrefixWatch('slow/', writes);
    // While the client reads nothing, the server holds at most the stream's buffer for it (plus
    // the one response that found it full), not everything written.
    await waitUntil(async () => (await metric('dkv_watch_slow_fallbacks_total')) > 0, 5_000, () => 'a slow-watcher fallback on node 1');
    const peak = await metric('dkv_watch_buffered_bytes_peak');
    expect(peak).toBeGreaterThan(watchLimits.watchStreamBufferBytesMax / 2);
    expect(peak).toBeLessThan(watchLimits.watchStreamBufferBytesMax + 2 * big.length);
    w.resume();
    await w.waitFor(() => w.events(0).length === writes, 30_000, 'all events after the pause');
    expect(w.events(0).map((e) => e.modRevision)).toEqual(revisions);
    expect(w.events(0).map((e) => e.value.split(':')[0])).toEqual(revisions.map((_, i) => String(i)));
    // Once it has read everything, nothing is left waiting for it.
    await waitUntil(async () => (await metric('dkv_watch_buffered_bytes')) < 64 * 1024, 5_000, () => 'the buffer drained');
  }, 60_000);

  it('releases what it held for a stalled client the moment that client goes away', async () => {
    const { w } = await stalledPrefixWatch('gone/', 200);
    await waitUntil(async () => (await metric('dkv_watch_buffered_bytes')) > 1024 * 1024, 5_000, () => 'the server holding events for the stalled client');
    w.close();
    await waitUntil(async () => (await metric('dkv_watch_buffered_bytes')) === 0, 5_000, () => 'the buffer released after the client left');
    // The node keeps serving watchers.
    const next = watchOn(0);
    next.create({ key: 'gone/after' });
    await next.waitFor((rs) => rs.some((r) => r.created === true));
    const revision = await put('gone/after', 'v');
    await next.waitFor(() => next.events(0).length === 1);
    expect(next.events(0)[0]!.modRevision).toBe(revision);
  }, 60_000);

  it('serves 1,000 watchers on one stream, each getting its events in order', async () => {
    const w = watchOn(1);
    for (let i = 0; i < 1000; i++) w.create({ key: `many/${i % 10}` });
    await w.waitFor((rs) => rs.filter((r) => r.created === true).length === 1000, 20_000, '1,000 created');
    const revisions: number[][] = Array.from({ length: 10 }, () => []);
    for (let i = 0; i < 50; i++) revisions[i % 10]!.push(await put(`many/${i % 10}`, String(i)));
    await w.waitFor(() => Array.from({ length: 1000 }, (_, id) => w.events(id).length).every((n) => n === 5), 20_000, 'every watcher has its 5 events');
    for (let id = 0; id < 1000; id++) expect(w.events(id).map((e) => e.modRevision)).toEqual(revisions[id % 10]);
  }, 60_000);

  it('cancels a stalled watcher with compact_revision when the history it needs is compacted', async () => {
    const w = watchOn(2);
    w.create({ key: 'stall/', rangeEnd: prefixEnd('stall/') });
    await w.waitFor((rs) => rs.some((r) => r.created === true));
    w.pause();
    const big = 'y'.repeat(64 * 1024);
    let last = 0;
    for (let i = 0; i < 320; i++) last = await put(`stall/${i % 10}`, `${i}:${big}`);
    await kv.kv('Compact', { revision: last });
    w.resume();
    await w.waitFor((rs) => rs.some((r) => r.canceled === true), 30_000, 'the cancel');
    const canceled = w.responses.find((r) => r.canceled === true)!;
    expect(canceled.compact_revision).toBe(last);
    // What it did get before the cancel is a gap-free, ordered prefix of the writes.
    const got = w.events(0).map((e) => Number(e.value.split(':')[0]));
    expect(got).toEqual(got.map((_, i) => i));
    expect(got.length).toBeLessThan(320);
  }, 60_000);

  it('serves 10,000 watchers over 100 streams while a writer runs', async () => {
    const streams = Array.from({ length: 100 }, (_, s) => watchOn(s % 3));
    streams.forEach((w) => {
      for (let i = 0; i < 100; i++) w.create({ key: `wide/${i % 20}` });
    });
    await Promise.all(streams.map((w) => w.waitFor((rs) => rs.filter((r) => r.created === true).length === 100, 30_000, '100 created')));
    const revisions: number[][] = Array.from({ length: 20 }, () => []);
    for (let i = 0; i < 60; i++) revisions[i % 20]!.push(await put(`wide/${i % 20}`, String(i)));
    for (const w of streams) {
      await w.waitFor(() => Array.from({ length: 100 }, (_, id) => w.events(id).length).every((n) => n === 3), 30_000, 'every watcher has its 3 events');
      for (let id = 0; id < 100; id++) expect(w.events(id).map((e) => e.modRevision)).toEqual(revisions[id % 20]);
    }
  }, 90_000);

  it('answers etcdctl watch -i progress requests only once every watcher has caught up', async () => {
    const first = await put('inter/a', '1');
    await put('inter/a', '2');
    const last = await put('inter/b', '3');
    const r = spawnSync('sh', ['-c', `(printf 'watch inter/ --prefix --rev=${first}\\nprogress\\n'; sleep 1.5) | timeout -s INT 2 etcdctl --endpoints=${cluster.endpoint(1)} watch -i`], { encoding: 'utf8' });
    const lines = r.stdout.trim().split('\n');
    expect(lines).toEqual(['PUT', 'inter/a', '1', 'PUT', 'inter/a', '2', 'PUT', 'inter/b', '3', `progress notify: ${last}`]);
  });

  it('splits a revision larger than the request limit into fragments only for watchers that allow it', async () => {
    const big = (c: string) => c.repeat(500_000);
    for (const k of ['a', 'b', 'c']) await put(`frag/${k}`, big('p'));
    const w = watchOn(0);
    w.create({ key: 'frag/', rangeEnd: prefixEnd('frag/'), prevKv: true, fragment: true });
    w.create({ key: 'frag/', rangeEnd: prefixEnd('frag/'), prevKv: true });
    await w.waitFor((rs) => rs.filter((r) => r.created === true).length === 2);
    // One txn, one revision, ~3 MB of events with their previous values.
    await kv.kv('Txn', { success: ['a', 'b', 'c'].map((k) => ({ request_put: { key: Buffer.from(`frag/${k}`), value: Buffer.from(big('n')) } })) });
    await w.waitFor(() => w.events(0).length === 3 && w.events(1).length === 3, 20_000);
    const pieces = w.responses.filter((r) => r.watch_id === 0 && ((r.events as unknown[]) ?? []).length > 0);
    expect(pieces.map((r) => r.fragment)).toEqual([true, true, false]);
    const whole = w.responses.filter((r) => r.watch_id === 1 && ((r.events as unknown[]) ?? []).length > 0);
    expect(whole.length).toBe(1);
    expect(w.events(0).map((e) => e.key)).toEqual(['frag/a', 'frag/b', 'frag/c']);
    expect(new Set(w.events(0).map((e) => e.modRevision)).size).toBe(1);
  }, 30_000);

  it('works with the etcd3 npm client\'s watch builder', async () => {
    const client = new Etcd3({ hosts: cluster.endpoint(2) });
    try {
      const start = await put('e3/a', 'old');
      const watcher = await client.watch().prefix('e3/').startRevision(String(start)).withPreviousKV().create();
      const seen: string[] = [];
      watcher.on('put', (kv, previous) => seen.push(`put ${kv.key.toString()}=${kv.value.toString()} prev=${previous?.value.toString() ?? '-'}`));
      watcher.on('delete', (kv, previous) => seen.push(`delete ${kv.key.toString()} prev=${previous?.value.toString() ?? '-'}`));
      await client.put('e3/a').value('new');
      await client.delete().key('e3/a');
      await client.put('elsewhere').value('x');
      await waitUntil(() => seen.length === 3, 10_000, () => `etcd3 watch events: ${seen.join('; ')}`);
      expect(seen).toEqual(['put e3/a=old prev=-', 'put e3/a=new prev=old', 'delete e3/a prev=new']);
      await watcher.cancel();
    } finally {
      client.close();
    }
  });
});
