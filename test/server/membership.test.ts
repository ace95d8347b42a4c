/**
 * Day-2 membership as etcd's runbooks run it, on a real 3-process cluster: a learner refuses what
 * etcd's learner refuses; a member restarted on an empty data dir is refused with one line; the
 * member is replaced (remove, add back on the same peer URL, start on an empty dir with
 * --initial-cluster-state existing) and ends with the same data; a removed leader exits; a removed
 * member's data dir cannot start again. etcd 3.4's behaviour is quoted beside each check.
 */
import { spawn } from 'node:child_process';
import { readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, etcdctl, freeBase, waitUntil } from './cluster-harness.js';

const dkvBin = join(import.meta.dirname, '..', '..', 'bin', 'dkv.js');

interface ListedMember {
  ID: string;
  name: string;
  peerURLs: string[];
  clientURLs?: string[];
  isLearner?: boolean;
}

describe('membership runbooks against a 3-node DKV cluster', () => {
  let cluster: TestCluster;
  const run = (args: string[], endpoints = cluster.endpoints) => etcdctl(endpoints, args);
  const members = (endpoints = cluster.endpoints): ListedMember[] => {
    const r = run(['member', 'list', '-w', 'json'], endpoints);
    expect(r.code, r.stderr).toBe(0);
    // ids are uint64: keep them exact (JSON numbers above 2^53 would round).
    return (JSON.parse(r.stdout.replace(/"ID":(\d+)/g, '"ID":"$1"')) as { members: ListedMember[] }).members;
  };
  const hex = (id: string) => BigInt(id).toString(16);

  beforeAll(async () => {
    cluster = await TestCluster.start();
    for (let i = 0; i < 20; i++) expect(run(['put', `k${i}`, `v${i}`]).code).toBe(0);
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it('a learner serves Status and serializable reads only, as etcd 3.4', async () => {
    const base = await freeBase(1);
    const peer = `http://127.0.0.1:${base + 1}`;
    const added = run(['member', 'add', 'learner', `--peer-urls=${peer}`, '--learner']);
    expect(added.code, added.stderr).toBe(0);
    const initialCluster = /ETCD_INITIAL_CLUSTER="([^"]+)"/.exec(added.stdout)![1]!;
    const dir = join(cluster.dir, 'learner');
    const logFile = join(cluster.dir, 'learner.log');
    const flags = ['--name', 'learner', '--data-dir', dir, '--initial-cluster', initialCluster, '--initial-cluster-state', 'existing',
      '--initial-advertise-peer-urls', peer, '--listen-peer-urls', peer, '--listen-client-urls', `http://127.0.0.1:${base}`,
      '--advertise-client-urls', `http://127.0.0.1:${base}`, '--listen-metrics-urls', `http://127.0.0.1:${base + 2}`, '--log-file', logFile];
    const server = spawn(process.execPath, [dkvBin, 'server', ...flags], { stdio: 'ignore' });
    const exited = new Promise<number | null>((resolve) => server.once('exit', (code) => resolve(code)));
    const endpoint = `127.0.0.1:${base}`;
    try {
      await waitUntil(() => run(['get', 'k19', '--print-value-only', '--consistency=s'], endpoint).stdout === 'v19\n', 20_000, () => `the learner catching up\n${readFileSync(logFile, 'utf8')}`);
      // etcd 3.4: "etcdserver: rpc not supported for learner" for writes, linearizable reads,
      // and every stream; Status and serializable Range are served.
      const put = run(['put', 'via-learner', 'x'], endpoint);
      expect(put.code).not.toBe(0);
      expect(put.stderr).toContain('rpc not supported for learner');
      const linearizable = run(['get', 'k1'], endpoint);
      expect(linearizable.code).not.toBe(0);
      expect(linearizable.stderr).toContain('rpc not supported for learner');
      const leases = run(['lease', 'grant', '10'], endpoint);
      expect(leases.stderr).toContain('rpc not supported for learner');
      const status = run(['endpoint', 'status', '-w', 'json'], endpoint);
      expect(status.code, status.stderr).toBe(0);
      expect(status.stdout).toContain('"isLearner":true');
      expect(run(['get', 'k1', '--print-value-only', '--consistency=s'], endpoint).stdout).toBe('v1\n');
      expect(run(['get', 'via-learner'], cluster.endpoints).stdout).toBe('');

      // Removing it: etcd's removed member logs "the member has been permanently removed from
      // the cluster" and exits. So does DKV's, non-zero.
      const id = hex(members().find((m) => m.isLearner === true)!.ID);
      expect(run(['member', 'remove', id]).code).toBe(0);
      const code = await Promise.race([exited, new Promise<'running'>((resolve) => setTimeout(() => resolve('running'), 20_000))]);
      expect(code).toBe(3);
      expect(readFileSync(logFile, 'utf8')).toContain('the member has been permanently removed from the cluster');
      // Its data dir can never serve again (etcd: the restarted removed member hears it from its
      // peers and exits): refused at start if it applied its removal (exit 2), else as soon as a
      // peer refuses it (exit 3, a removed member's code).
      const again = spawn(process.execPath, [dkvBin, 'server', ...flags], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      again.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const againCode = await new Promise<number | null>((resolve) => again.once('exit', (c) => resolve(c)));
      expect([2, 3]).toContain(againCode);
      expect(stderr).toMatch(/(was|permanently) removed from the cluster/);
      expect(stderr).not.toContain('    at ');
    } finally {
      if (server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
    }
  }, 90_000);

  it('refuses to restart a member on an empty data dir, then replaces it by etcd\'s runbook', async () => {
    const before = members();
    const old = before.find((m) => m.name === 'dkv3')!;
    await cluster.kill(2);
    rmSync(cluster.nodes[2]!.dataDir, { recursive: true, force: true });

    // etcd: "member … has already been bootstrapped". DKV: one line, exit code 2, no stack, and
    // nothing left behind that breaks the next try — for state new and existing alike.
    for (const state of ['new', 'existing', 'new']) {
      cluster.startNode(2, { 'initial-cluster-state': state });
      expect(await cluster.waitForExit(2)).toBe(2);
      const log = cluster.log(2);
      expect(log).toContain('has already been bootstrapped');
      expect(log).not.toContain('RaftAssertionError');
      expect(log).not.toMatch(/\n\s+at /);
    }

    // The runbook: remove the member, add it back with the same peer URL (a new id: removed ids
    // never come back), start it on an empty data dir with --initial-cluster-state existing.
    expect(run(['member', 'remove', hex(old.ID)], cluster.endpoint(0)).code).toBe(0);
    const added = run(['member', 'add', 'dkv3', `--peer-urls=${old.peerURLs[0]}`], cluster.endpoint(0));
    expect(added.code, added.stderr).toBe(0);
    const newId = /Member +([0-9a-f]+) added/.exec(added.stdout)![1]!;
    expect(newId).not.toBe(hex(old.ID));
    rmSync(cluster.nodes[2]!.dataDir, { recursive: true, force: true });
    cluster.startNode(2, { 'initial-cluster-state': 'existing' });
    await cluster.waitForHealthy(2);
    await waitUntil(() => run(['get', 'k19', '--print-value-only', '--consistency=s'], cluster.endpoint(2)).stdout === 'v19\n', 20_000, () => `dkv3 catching up\n${cluster.logs()}`);
    expect(run(['put', 'after-replace', 'yes'], cluster.endpoint(2)).stdout).toBe('OK\n');
    await cluster.waitForMembersPublished();
    const after = members();
    expect(after.map((m) => m.name).sort()).toEqual(['dkv1', 'dkv2', 'dkv3']);
    expect(hex(after.find((m) => m.name === 'dkv3')!.ID)).toBe(newId);
    // Every member holds the same data: equal HashKV at one revision.
    await waitUntil(() => {
      const hashes = cluster.nodes.map((_, i) => JSON.parse(run(['endpoint', 'hashkv', '-w', 'json'], cluster.endpoint(i)).stdout || '[]') as Array<{ HashKV: { hash: number; header: { revision: number } } }>);
      const seen = new Set(hashes.map((h) => `${h[0]?.HashKV.header.revision}:${h[0]?.HashKV.hash}`));
      return seen.size === 1 && !seen.has('undefined:undefined');
    }, 20_000, () => 'equal HashKV on every member');
  }, 120_000);

  it('refuses a member whose Raft log is gone, and starts it again once the log is back', async () => {
    // etcd 3.4 would start such a member with an empty WAL only if its member dir were gone as a
    // whole; DKV refuses it: a founding member that forgot its votes must not vote again.
    await cluster.kill(1);
    const raftDir = join(cluster.nodes[1]!.dataDir, 'raft');
    renameSync(raftDir, `${raftDir}.saved`);
    cluster.startNode(1);
    expect(await cluster.waitForExit(1)).toBe(2);
    expect(cluster.log(1)).toContain('but no Raft log');
    rmSync(raftDir, { recursive: true, force: true });
    renameSync(`${raftDir}.saved`, raftDir);
    cluster.startNode(1);
    await cluster.waitForHealthy(1);
    await waitUntil(() => run(['put', 'log-back', 'yes'], cluster.endpoint(1)).code === 0, 20_000, () => `dkv2 serving again\n${cluster.logs()}`);
  }, 60_000);

  it('a removed leader stops serving and exits while a client writes through every member', async () => {
    const status = JSON.parse(run(['endpoint', 'status', '-w', 'json']).stdout) as Array<{ Endpoint: string; Status: { leader: number; header: { member_id: number } } }>;
    const leaderIndex = status.findIndex((s) => s.Status.leader === s.Status.header.member_id);
    expect(leaderIndex).toBeGreaterThanOrEqual(0);
    const leaderId = status[leaderIndex]!.Status.header.member_id.toString(16);
    const nodeIndex = cluster.nodes.findIndex((n) => status[leaderIndex]!.Endpoint.endsWith(`:${n.clientPort}`));
    // Removed through the leader itself, as in the report.
    const removed = run(['member', 'remove', leaderId], cluster.endpoint(nodeIndex));
    expect(removed.code, removed.stderr).toBe(0);
    const code = await cluster.waitForExit(nodeIndex, 20_000);
    expect(code).toBe(3);
    expect(cluster.log(nodeIndex)).toContain('the member has been permanently removed from the cluster');
    // The two left elect a leader and take writes through either.
    const rest = cluster.nodes.map((_, i) => i).filter((i) => i !== nodeIndex);
    await waitUntil(() => rest.every((i) => run(['put', `after-leader-${i}`, 'ok'], cluster.endpoint(i)).code === 0), 20_000, () => `writes after the leader left\n${cluster.logs()}`);
    // The member list is the meta shard's: a write through the data shard says nothing about
    // whether this member applied the removal there yet.
    await waitUntil(() => rest.every((i) => members(cluster.endpoint(i)).length === 2), 10_000, () => `both members list two members\n${cluster.logs()}`);
  }, 60_000);
});
