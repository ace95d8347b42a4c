/**
 * The etcdctl compatibility suite: the real `etcdctl` (Debian's etcd-client) against a real
 * 3-node DKV cluster of `dkv server` processes.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, etcdChannel, etcdctl, freeBase, waitUntil } from './cluster-harness.js';

const dkvBin = join(import.meta.dirname, '..', '..', 'bin', 'dkv.js');

let cluster: TestCluster;
const run = (args: string[], input?: string) => etcdctl(cluster.endpoints, args, input);
const ok = (args: string[], input?: string): string => {
  const r = run(args, input);
  if (r.code !== 0) throw new Error(`etcdctl ${args.join(' ')} failed (${r.code}): ${r.stderr}\n${cluster.logs()}`);
  return r.stdout;
};

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

describe('etcdctl against a 3-node DKV cluster', () => {
  it('puts and gets, with print-value-only and json output', () => {
    expect(ok(['put', 'foo', 'bar'])).toBe('OK\n');
    expect(ok(['get', 'foo'])).toBe('foo\nbar\n');
    expect(ok(['get', 'foo', '--print-value-only'])).toBe('bar\n');
    const json = JSON.parse(ok(['get', 'foo', '-w', 'json'])) as { header: Record<string, number>; kvs: Array<Record<string, unknown>>; count: number };
    expect(json.header.cluster_id).toBeGreaterThan(0);
    expect(json.header.member_id).toBeGreaterThan(0);
    expect(json.header.raft_term).toBeGreaterThan(0);
    expect(json.count).toBe(1);
    expect(json.kvs[0]).toMatchObject({ key: Buffer.from('foo').toString('base64'), value: Buffer.from('bar').toString('base64'), version: 1 });
    expect(json.kvs[0]!.create_revision).toBe(json.kvs[0]!.mod_revision);
  });

  it('reads every node the same, linearizable and serializable', () => {
    ok(['put', 'everywhere', 'yes']);
    for (let i = 0; i < 3; i++) {
      expect(etcdctl(cluster.endpoint(i), ['get', 'everywhere', '--print-value-only']).stdout).toBe('yes\n');
      expect(etcdctl(cluster.endpoint(i), ['get', 'everywhere', '--print-value-only', '--consistency=s']).stdout).toBe('yes\n');
    }
  });

  it('ranges by prefix, from a key, with limit, sort, keys-only and count-only', () => {
    for (const [k, v] of [['p/a', '3'], ['p/b', '1'], ['p/c', '2'], ['q', 'x']]) ok(['put', k!, v!]);
    expect(ok(['get', 'p/', '--prefix', '--keys-only'])).toBe('p/a\n\np/b\n\np/c\n\n');
    expect(ok(['get', 'p/', '--prefix', '--limit=2'])).toBe('p/a\n3\np/b\n1\n');
    expect(ok(['get', 'p/', '--prefix', '--sort-by=VALUE', '--order=DESCEND', '--print-value-only'])).toBe('3\n2\n1\n');
    expect(ok(['get', 'p/', '--prefix', '--sort-by=KEY', '--order=DESCEND', '--keys-only'])).toBe('p/c\n\np/b\n\np/a\n\n');
    expect(ok(['get', 'p/b', '--from-key', '--keys-only'])).toBe('p/b\n\np/c\n\nq\n\n');
    const limited = JSON.parse(ok(['get', 'p/', '--prefix', '--limit=1', '-w', 'json'])) as { count: number; more: boolean };
    expect([limited.count, limited.more]).toEqual([3, true]);
  });

  it('reads at a past revision', () => {
    const first = JSON.parse(ok(['put', 'rev', 'one', '-w', 'json'])) as { header: { revision: number } };
    ok(['put', 'rev', 'two']);
    expect(ok(['get', 'rev', `--rev=${first.header.revision}`, '--print-value-only'])).toBe('one\n');
    expect(ok(['get', 'rev', '--print-value-only'])).toBe('two\n');
  });

  it('deletes by prefix and with prev-kv', () => {
    ok(['put', 'd/1', 'a']);
    ok(['put', 'd/2', 'b']);
    expect(ok(['del', 'd/1', '--prev-kv'])).toBe('1\nd/1\na\n');
    expect(ok(['del', 'd/', '--prefix'])).toBe('1\n');
    expect(ok(['del', 'nothing-here'])).toBe('0\n');
  });

  it('runs an interactive txn on both branches', () => {
    ok(['put', 'tx', 'v1']);
    const success = ok(['txn'], 'value("tx") = "v1"\n\nput tx v2\nput tx-side yes\n\nget tx\n\n');
    expect(success).toBe('SUCCESS\n\nOK\n\nOK\n');
    const failure = ok(['txn'], 'value("tx") = "v1"\n\nput tx v3\n\nget tx\n\n');
    expect(failure).toBe('FAILURE\n\ntx\nv2\n');
    const dup = run(['txn'], '\nput dup a\nput dup b\n\n\n');
    expect(dup.code).not.toBe(0);
    expect(dup.stderr).toContain('etcdserver: duplicate key given in txn request');
  });

  it('compacts, then refuses reads of compacted revisions', () => {
    const r1 = JSON.parse(ok(['put', 'c', '1', '-w', 'json'])) as { header: { revision: number } };
    const r2 = JSON.parse(ok(['put', 'c', '2', '-w', 'json'])) as { header: { revision: number } };
    expect(ok(['compact', String(r2.header.revision)])).toBe(`compacted revision ${r2.header.revision}\n`);
    const old = run(['get', 'c', `--rev=${r1.header.revision}`]);
    expect(old.code).not.toBe(0);
    expect(old.stderr).toContain('etcdserver: mvcc: required revision has been compacted');
    const future = run(['get', 'c', '--rev=1000000']);
    expect(future.stderr).toContain('etcdserver: mvcc: required revision is a future revision');
  });

  it('refuses an empty key and an oversized value with etcd errors', () => {
    const empty = run(['put', '', 'x']);
    expect(empty.stderr).toContain('etcdserver: key is not provided');
    const big = run(['put', 'big'], 'x'.repeat(2 * 1024 * 1024));
    expect(big.code).not.toBe(0);
    expect(big.stderr).toMatch(/request is too large|trying to send message larger than max/);
    expect(ok(['get', 'foo', '--print-value-only'])).toBe('bar\n');
  });

  it('lists members with names and URLs, and reports every endpoint healthy with equal hashes', () => {
    const members = JSON.parse(ok(['member', 'list', '-w', 'json'])) as { members: Array<{ name: string; peerURLs: string[]; clientURLs: string[] }> };
    expect(members.members.map((m) => m.name).sort()).toEqual(['dkv1', 'dkv2', 'dkv3']);
    for (const m of members.members) {
      const node = cluster.nodes.find((n) => n.name === m.name)!;
      expect(m.peerURLs).toEqual([node.peerUrl]);
      expect(m.clientURLs).toEqual([node.clientUrl]);
    }
    const health = run(['endpoint', 'health']);
    expect(health.code).toBe(0);
    expect(health.stderr.match(/is healthy/g)?.length ?? health.stdout.match(/is healthy/g)?.length).toBe(3);
    const status = JSON.parse(ok(['endpoint', 'status', '-w', 'json'])) as Array<{ Status: { leader: number; header: { member_id: number } } }>;
    expect(new Set(status.map((s) => s.Status.leader)).size).toBe(1);
    expect(status.filter((s) => s.Status.leader === s.Status.header.member_id).length).toBe(1);
    const hashes = JSON.parse(ok(['endpoint', 'hashkv', '-w', 'json'])) as Array<{ HashKV: { hash: number } }>;
    expect(new Set(hashes.map((h) => h.HashKV.hash)).size).toBe(1);
  });

  it('serves /metrics with etcd metric names and /health', async () => {
    const node = cluster.nodes[0]!;
    const health = await fetch(`${node.metricsUrl}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ health: 'true' });
    // Gauges refresh once a second; wait for a refresh that has seen the writes above.
    const started = Date.now();
    let text = '';
    do {
      text = await (await fetch(`${node.metricsUrl}/metrics`)).text();
      if (/^etcd_debugging_mvcc_keys_total [1-9]/m.test(text)) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    } while (Date.now() - started < 5000);
    expect(text).toMatch(/^etcd_server_has_leader 1$/m);
    expect(text).toMatch(/^etcd_disk_wal_fsync_duration_seconds_bucket\{le="0\.001"\} \d+$/m);
    expect(text).toMatch(/^etcd_disk_wal_fsync_duration_seconds_count [1-9]\d*$/m);
    expect(text).toMatch(/^etcd_server_proposals_committed_total [1-9]\d*$/m);
    expect(text).toMatch(/^etcd_debugging_mvcc_keys_total [1-9]\d*$/m);
    // Group commit: every synced batch carried at least one save.
    const synced = Number(/^dkv_log_synced_batches_total (\d+)$/m.exec(text)?.[1]);
    const saves = Number(/^dkv_log_saves_total (\d+)$/m.exec(text)?.[1]);
    expect(synced).toBeGreaterThan(0);
    expect(saves).toBeGreaterThanOrEqual(synced);
    // Each synced batch's own write time, one observation per batch (buckets from 100 µs).
    expect(Number(/^dkv_log_synced_write_duration_seconds_count (\d+)$/m.exec(text)?.[1])).toBe(synced);
    expect(text).toMatch(/^dkv_log_synced_write_duration_seconds_bucket\{le="0\.0001"\} \d+$/m);
    // Leader changes: etcd's counts the default store's, DKV's every shard's (the meta shard's too).
    const defaultChanges = Number(/^etcd_server_leader_changes_seen_total (\d+)$/m.exec(text)?.[1]);
    expect(defaultChanges).toBeGreaterThan(0);
    expect(Number(/^dkv_shard_leader_changes_total (\d+)$/m.exec(text)?.[1])).toBeGreaterThan(defaultChanges);
    // etcd's peer byte counters, one series per peer a node exchanged frames with: a follower may
    // talk only to the node that leads every shard, a leader talks to both others. So each node
    // has a series each way, every member is sent to by some node, and each byte is counted
    // once: a second scrape right after adds only what the links carried in between, far less
    // than everything since the start.
    const seriesOf = (scrape: string, name: string, label: string) => new Map([...scrape.matchAll(new RegExp(`^${name}\\{${label}="([0-9a-f]+)"\\} (\\d+)$`, 'gm'))].map((m) => [m[1]!, Number(m[2])]));
    const scrapes = await Promise.all(cluster.nodes.map(async (n) => (n === node ? text : await (await fetch(`${n.metricsUrl}/metrics`)).text())));
    const again = await (await fetch(`${node.metricsUrl}/metrics`)).text();
    const sentTo = new Set<string>();
    for (const [name, label] of [['etcd_network_peer_sent_bytes_total', 'To'], ['etcd_network_peer_received_bytes_total', 'From']] as const) {
      for (const [i, scrape] of scrapes.entries()) {
        const series = seriesOf(scrape, name, label);
        expect({ node: i, name, some: series.size >= 1 && series.size <= 2 }).toEqual({ node: i, name, some: true });
        for (const [peer, bytes] of series) {
          expect(bytes).toBeGreaterThan(0);
          if (label === 'To') sentTo.add(peer);
        }
      }
      const first = seriesOf(text, name, label);
      const second = seriesOf(again, name, label);
      expect([...second.keys()].sort()).toEqual([...first.keys()].sort());
      for (const [peer, bytes] of first) {
        expect(second.get(peer)!).toBeGreaterThanOrEqual(bytes);
        expect(second.get(peer)! - bytes).toBeLessThan(bytes);
      }
    }
    expect(sentTo.size).toBe(3);
  });

  it('saves a snapshot that dkv restores a new cluster from', async () => {
    const file = join(cluster.dir, 'snap.db');
    const lease = /^lease ([0-9a-f]+) granted/.exec(ok(['lease', 'grant', '300']))![1]!;
    ok(['put', 'snap-leased', 'v', `--lease=${lease}`]);
    // Per-key TTLs keep their absolute deadlines: one that passes before the restore, one far off.
    const dkv = etcdChannel(cluster.endpoint(0));
    const shortTtlMs = 1500;
    const shortDeadline = Date.now() + shortTtlMs;
    await dkv.call('dkv.v1.KV', 'Put', { key: Buffer.from('snap-ttl-short'), value: Buffer.from('s'), ttl_ms: shortTtlMs });
    await dkv.call('dkv.v1.KV', 'Put', { key: Buffer.from('snap-ttl-long'), value: Buffer.from('l'), ttl_ms: 3_600_000 });
    dkv.close();
    const before = JSON.parse(ok(['get', '', '--prefix', '-w', 'json'])) as { header: { revision: number }; count: number };
    const r = etcdctl(cluster.endpoint(0), ['snapshot', 'save', file]);
    expect(r.code).toBe(0);
    expect(Date.now()).toBeLessThan(shortDeadline);
    expect(existsSync(file)).toBe(true);
    expect(statSync(file).size % 512).toBe(32);

    const base = await freeBase(1);
    const peer = `http://127.0.0.1:${base + 1}`;
    const flags = ['--name', 'r1', '--data-dir', join(cluster.dir, 'restored'), '--initial-cluster', `r1=${peer}`, '--initial-advertise-peer-urls', peer,
      '--listen-peer-urls', peer, '--listen-client-urls', `http://127.0.0.1:${base}`, '--advertise-client-urls', `http://127.0.0.1:${base}`,
      '--listen-metrics-urls', `http://127.0.0.1:${base + 2}`, '--initial-cluster-token', 'restored'];
    const restore = spawnSync(process.execPath, [dkvBin, 'snapshot', 'restore', file, ...flags], { encoding: 'utf8' });
    expect(restore.status, restore.stderr).toBe(0);
    expect(restore.stdout).toMatch(/restored \d+ keys at revision \d+/);
    const again = spawnSync(process.execPath, [dkvBin, 'snapshot', 'restore', file, ...flags], { encoding: 'utf8' });
    expect(again.status).toBe(1);
    expect(again.stderr).toContain('is not empty');

    // The restored member starts after the short TTL's deadline has passed.
    await waitUntil(() => Date.now() > shortDeadline, 10_000, () => 'the short TTL\'s deadline');
    const server = spawn(process.execPath, [dkvBin, 'server', ...flags], { stdio: 'ignore' });
    try {
      const endpoint = `127.0.0.1:${base}`;
      const started = Date.now();
      while (etcdctl(endpoint, ['endpoint', 'health']).code !== 0) {
        if (Date.now() - started > 20_000) throw new Error('the restored cluster did not come up');
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const after = JSON.parse(etcdctl(endpoint, ['get', '', '--prefix', '-w', 'json']).stdout) as { header: { revision: number }; count: number; kvs?: Array<{ key: string }> };
      // Everything came back; the passed deadline may already have been acted on (one more
      // revision). Judged from the same read: a second read could see an expiry the first did not.
      const expired = !(after.kvs ?? []).some((kv) => Buffer.from(kv.key, 'base64').toString() === 'snap-ttl-short');
      expect([after.count, after.header.revision]).toEqual(expired ? [before.count - 1, before.header.revision + 1] : [before.count, before.header.revision]);
      await waitUntil(() => etcdctl(endpoint, ['get', 'snap-ttl-short', '--print-value-only']).stdout === '', 10_000, () => 'the passed TTL expiring');
      expect(etcdctl(endpoint, ['get', 'snap-ttl-long', '--print-value-only']).stdout).toBe('l\n');
      expect(etcdctl(endpoint, ['get', 'foo', '--print-value-only']).stdout).toBe('bar\n');
      // Leases come back with their keys, renewed to their full TTL by the new cluster's leader.
      await waitUntil(() => /remaining\((29\d|300)s\)/.test(etcdctl(endpoint, ['lease', 'timetolive', lease]).stdout), 10_000, () => 'the restored lease');
      expect(etcdctl(endpoint, ['lease', 'timetolive', '--keys', lease]).stdout).toMatch(new RegExp(`^lease ${lease} granted with TTL\\(300s\\), remaining\\(\\d+s\\), attached keys\\(\\[snap-leased\\]\\)\n$`));
      const members = JSON.parse(etcdctl(endpoint, ['member', 'list', '-w', 'json']).stdout) as { members: Array<{ name: string }> };
      expect(members.members.map((m) => m.name)).toEqual(['r1']);
    } finally {
      await new Promise((resolve) => {
        server.once('exit', resolve);
        server.kill('SIGTERM');
      });
    }
  }, 60_000);

  it('adds a learner that catches up, promotes it, then removes it', async () => {
    const base = await freeBase(1);
    const peer = `http://127.0.0.1:${base + 1}`;
    const added = run(['member', 'add', 'dkv4', `--peer-urls=${peer}`, '--learner']);
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toMatch(/Member +[0-9a-f]+ added to cluster +[0-9a-f]+/);
    const id = /Member +([0-9a-f]+) added/.exec(added.stdout)![1]!;
    const initialCluster = /ETCD_INITIAL_CLUSTER="([^"]+)"/.exec(added.stdout)![1]!;
    expect(initialCluster).toContain(`dkv4=${peer}`);
    const listed = JSON.parse(ok(['member', 'list', '-w', 'json']).replace(/"ID":(\d+)/g, '"ID":"$1"')) as { members: Array<{ ID: string; isLearner?: boolean }> };
    expect(listed.members.find((m) => BigInt(m.ID).toString(16) === id)?.isLearner).toBe(true);

    // Not started, so not in sync: every node refuses to promote it, whether or not it leads a
    // shard (each shard's leader is asked).
    for (let node = 0; node < 3; node++) {
      const early = etcdctl(cluster.endpoint(node), ['member', 'promote', id]);
      expect(early.code, `promote through node ${node}`).not.toBe(0);
      expect(early.stderr).toContain('can only promote a learner member which is in sync with leader');
    }

    const flags = ['--name', 'dkv4', '--data-dir', join(cluster.dir, 'dkv4'), '--initial-cluster', initialCluster, '--initial-cluster-state', 'existing',
      '--initial-advertise-peer-urls', peer, '--listen-peer-urls', peer, '--listen-client-urls', `http://127.0.0.1:${base}`,
      '--advertise-client-urls', `http://127.0.0.1:${base}`, '--listen-metrics-urls', `http://127.0.0.1:${base + 2}`];
    const logFile = join(cluster.dir, 'dkv4.log');
    const server = spawn(process.execPath, [dkvBin, 'server', ...flags, '--log-file', logFile], { stdio: 'ignore' });
    try {
      const endpoint = `127.0.0.1:${base}`;
      const started = Date.now();
      while (etcdctl(endpoint, ['get', 'foo', '--print-value-only', '--consistency=s']).stdout !== 'bar\n') {
        if (Date.now() - started > 20_000) throw new Error(`the learner did not catch up\n${readFileSync(logFile, 'utf8')}\n${cluster.logs()}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      // As etcd's runbook says: a learner not yet in sync with a leader cannot be promoted; try
      // again. Every shard's leader must see it in sync (the data shard was waited for above; the
      // meta shard's leader may still be a heartbeat behind).
      let promoted = run(['member', 'promote', id]);
      while (promoted.code !== 0 && promoted.stderr.includes('in sync with leader') && Date.now() - started < 20_000) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        promoted = run(['member', 'promote', id]);
      }
      expect(promoted.code, promoted.stderr).toBe(0);
      expect(promoted.stdout).toContain('promoted');
      const four = JSON.parse(ok(['member', 'list', '-w', 'json'])) as { members: Array<{ isLearner?: boolean; name: string }> };
      expect(four.members.length).toBe(4);
      expect(four.members.every((m) => m.isLearner !== true)).toBe(true);
      expect(etcdctl(endpoint, ['put', 'via-dkv4', 'ok']).stdout).toBe('OK\n');
      const removed = run(['member', 'remove', id]);
      expect(removed.code, removed.stderr).toBe(0);
      expect(removed.stdout).toContain('removed from cluster');
      const three = JSON.parse(ok(['member', 'list', '-w', 'json'])) as { members: unknown[] };
      expect(three.members.length).toBe(3);
      expect(ok(['get', 'via-dkv4', '--print-value-only'])).toBe('ok\n');
      // etcd: the removed member logs that it was permanently removed and exits. So does dkv4.
      const code = await new Promise<number | null>((resolve) => (server.exitCode !== null ? resolve(server.exitCode) : server.once('exit', (c) => resolve(c))));
      expect(code).not.toBe(0);
      expect(readFileSync(logFile, 'utf8')).toContain('the member has been permanently removed from the cluster');
    } finally {
      if (server.exitCode === null && server.signalCode === null) {
        await new Promise((resolve) => {
          server.once('exit', resolve);
          server.kill('SIGTERM');
        });
      }
    }
  }, 60_000);

  it('updates a member\'s peer URLs, lists no alarms and defragments', () => {
    const members = JSON.parse(ok(['member', 'list', '-w', 'json']).replace(/"ID":(\d+)/g, '"ID":"$1"')) as { members: Array<{ ID: string; name: string; peerURLs: string[] }> };
    const target = members.members.find((m) => m.name === 'dkv3')!;
    const id = BigInt(target.ID).toString(16);
    // The same URL under a different spelling of the port list: an update that keeps the node reachable.
    const updated = run(['member', 'update', id, `--peer-urls=${target.peerURLs[0]}`]);
    expect(updated.code, updated.stderr).toBe(0);
    expect(updated.stdout).toMatch(new RegExp(`Member +${id} updated in cluster`));
    const clash = run(['member', 'update', id, `--peer-urls=${members.members.find((m) => m.name === 'dkv1')!.peerURLs[0]}`]);
    expect(clash.code).not.toBe(0);
    expect(clash.stderr).toContain('etcdserver: Peer URLs already exists');
    const missing = run(['member', 'remove', 'abcdef']);
    expect(missing.stderr).toContain('etcdserver: member not found');
    expect(ok(['alarm', 'list'])).toBe('');
    const defrag = run(['defrag']);
    expect(defrag.code, defrag.stderr).toBe(0);
    expect(defrag.stdout.match(/Finished defragmenting etcd member/g)?.length).toBe(3);
  });

  it('moves the leader', () => {
    const status = JSON.parse(ok(['endpoint', 'status', '-w', 'json'])) as Array<{ Endpoint: string; Status: { leader: number; header: { member_id: number } } }>;
    const leader = status.find((s) => s.Status.leader === s.Status.header.member_id)!;
    const target = status.find((s) => s !== leader)!;
    const moved = etcdctl(leader.Endpoint, ['move-leader', target.Status.header.member_id.toString(16)]);
    expect(moved.code).toBe(0);
    expect(moved.stdout).toContain('Leadership transferred');
    const after = JSON.parse(ok(['endpoint', 'status', '-w', 'json'])) as Array<{ Status: { leader: number } }>;
    expect(after.every((s) => s.Status.leader === target.Status.header.member_id)).toBe(true);
    const notLeader = etcdctl(target === status[0] ? status[1]!.Endpoint : status[0]!.Endpoint, ['move-leader', leader.Status.header.member_id.toString(16)]);
    if (notLeader.code !== 0) expect(notLeader.stderr).toMatch(/not leader|no leader endpoint/);
  });
});
