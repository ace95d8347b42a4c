/**
 * The peer port of real `dkv server` processes refuses who is not a member: this test process
 * says hello as an id that is no member, then as a member that was removed, and sends a vote of a
 * far higher term behind the hello; each link is refused with the reason, logged at warn with
 * the address and counted in dkv_peer_refused_total{reason}, and the cluster's state (term,
 * leader, members, data) is unchanged. With peer TLS and --peer-cert-allowed-cn, a member
 * restarted with a certificate of another CN (signed by the same CA) is refused and cut off; with
 * its right certificate it catches up.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeMessage } from '../../raft/index.js';
import {
  LINK_CLOSE,
  LINK_FRAME,
  RecordReader,
  decodeClose,
  encodeBatch,
  encodeHello,
  encodePreamble,
  encodeRecord,
  linkStatus,
  peerLimits,
} from '../../src/server/peer/index.js';
import { TestCluster, etcdctl, waitUntil } from './cluster-harness.js';

interface EndpointStatus {
  readonly Status: { readonly header: { readonly cluster_id: number; readonly member_id: number }; readonly leader: number; readonly raftTerm: number };
}

function statusOf(cluster: TestCluster, i: number): EndpointStatus['Status'] {
  const result = etcdctl(cluster.endpoint(i), ['endpoint', 'status', '-w', 'json'], undefined, cluster.etcdctlArgs);
  expect(result.code, result.stderr).toBe(0);
  const status = (JSON.parse(result.stdout) as EndpointStatus[])[0]!.Status;
  expect(Number.isSafeInteger(status.header.cluster_id) && Number.isSafeInteger(status.header.member_id)).toBe(true);
  return status;
}

/** Node i's status, or undefined while etcdctl cannot get it. */
function tryStatus(cluster: TestCluster, i: number): EndpointStatus['Status'] | undefined {
  const result = etcdctl(cluster.endpoint(i), ['endpoint', 'status', '-w', 'json'], undefined, cluster.etcdctlArgs);
  return result.code === 0 ? (JSON.parse(result.stdout) as EndpointStatus[])[0]?.Status : undefined;
}

/**
 * Waits until nodes `among` agree on a leader that is one of them (after a member left, the
 * others may still name it until they elect another).
 */
async function waitForLeaderAmong(cluster: TestCluster, among: readonly number[]): Promise<void> {
  await waitUntil(
    () => {
      const statuses = among.map((i) => tryStatus(cluster, i));
      const ids = statuses.map((status) => status?.header.member_id);
      const leader = statuses[0]?.leader;
      return leader !== undefined && ids.includes(leader) && statuses.every((status) => status?.leader === leader);
    },
    20_000,
    () => cluster.logs(),
  );
}

/** Says hello to a node's peer port as `fromId`, sends `frames` behind it, and returns the close record the node answers with. */
function helloAs(port: number, hello: { clusterId: number; fromId: number; toId: number }, frames: readonly Buffer[]): Promise<{ code: number; details: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => finish(new Error('no close record within 10 s')), 10_000);
    const finish = (error: Error | undefined, close?: { code: number; details: string }): void => {
      clearTimeout(timer);
      socket.destroy();
      if (close !== undefined) resolve(close);
      else reject(error ?? new Error('closed without a close record'));
    };
    const reader = new RecordReader();
    socket.on('data', (chunk: Buffer) => {
      reader.push(chunk, (kind, body) => {
        if (kind === LINK_CLOSE) finish(undefined, decodeClose(body));
        return kind !== LINK_CLOSE;
      });
    });
    socket.on('error', (error) => finish(error));
    socket.on('close', () => finish(undefined));
    socket.write(encodePreamble([]));
    socket.write(encodeRecord(LINK_FRAME, encodeHello({ ...hello, protocolVersion: peerLimits.protocolVersion })));
    for (const frame of frames) socket.write(encodeRecord(LINK_FRAME, frame));
  });
}

/**
 * Heartbeats of a far higher term for both shards (meta and data): delivered, they would make the
 * node a follower of `from` at that term (Raft steps down for any MsgHeartbeat of a higher term).
 */
function deposing(from: number, to: number, term: number): Buffer {
  return encodeBatch([0, 1].map((shard) => ({ shard, message: makeMessage({ type: 'MsgHeartbeat', from, to, term }) })));
}

async function refusedCount(cluster: TestCluster, i: number, reason: string): Promise<number> {
  const text = await (await fetch(`${cluster.nodes[i]!.metricsUrl}/metrics`, { signal: AbortSignal.timeout(2000) })).text();
  const line = text.split('\n').find((l) => l.startsWith(`dkv_peer_refused_total{reason="${reason}"}`));
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

function memberIds(cluster: TestCluster, endpoint: string): string[] {
  const result = etcdctl(endpoint, ['member', 'list'], undefined, cluster.etcdctlArgs);
  expect(result.code, result.stderr).toBe(0);
  return result.stdout.trim().split('\n').map((line) => line.split(',')[0]!.trim()).sort();
}

describe('peer port of a real cluster', () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3 });
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it('refuses a process that is not a member, then a removed member; counted, logged, state unchanged', async () => {
    expect(etcdctl(cluster.endpoints, ['put', 'k', 'v1']).code).toBe(0);
    const target = 0;
    const before = statusOf(cluster, target);
    const members = memberIds(cluster, cluster.endpoints);
    const clusterId = before.header.cluster_id;
    const toId = before.header.member_id;
    const stranger = 0x5eed;
    const vote = deposing(stranger, toId, before.raftTerm + 100);

    const close = await helloAs(cluster.nodes[target]!.peerPort, { clusterId, fromId: stranger, toId }, [vote]);
    expect(close.code).toBe(linkStatus.PERMISSION_DENIED);
    expect(close.details).toMatch(/member 5eed is not a configured member/);
    await waitUntil(async () => (await refusedCount(cluster, target, 'not_member')) >= 1, 10_000, () => cluster.logs());
    expect(cluster.log(target)).toMatch(/refusing accepted link \(before hello\) from 127\.0\.0\.1:\d+ \(not_member\)/);

    const after = statusOf(cluster, target);
    expect(after.raftTerm).toBe(before.raftTerm);
    expect(after.leader).toBe(before.leader);
    expect(memberIds(cluster, cluster.endpoints)).toEqual(members);
    expect(etcdctl(cluster.endpoints, ['get', 'k', '--print-value-only']).stdout.trim()).toBe('v1');

    // Remove node 2 (it exits, code 3), then speak as it: refused as removed, nothing changes.
    const removed = statusOf(cluster, 2).header.member_id;
    expect(etcdctl(cluster.endpoint(target), ['member', 'remove', removed.toString(16)]).code).toBe(0);
    expect(await cluster.waitForExit(2)).toBe(3);
    await waitForLeaderAmong(cluster, [0, 1]);
    const term = statusOf(cluster, target).raftTerm;
    const removedVote = deposing(removed, toId, term + 100);
    const refusal = await helloAs(cluster.nodes[target]!.peerPort, { clusterId, fromId: removed, toId }, [removedVote]);
    expect(refusal.code).toBe(linkStatus.PERMISSION_DENIED);
    expect(refusal.details).toMatch(/^member removed:/);
    await waitUntil(async () => (await refusedCount(cluster, target, 'removed')) >= 1, 10_000, () => cluster.logs());
    expect(statusOf(cluster, target).raftTerm).toBe(term);
    expect(etcdctl(cluster.endpoint(target), ['put', 'k', 'v2']).code).toBe(0);
    expect(etcdctl(cluster.endpoint(target), ['get', 'k', '--print-value-only']).stdout.trim()).toBe('v2');
  }, 90_000);
});

describe('--peer-cert-allowed-cn on a real cluster', () => {
  let dir = '';
  let cluster: TestCluster | undefined;
  const file = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  /** Node 2's peer certificate: the allowed CN or another one (same CA). */
  let nodeTwoCert = 'member';

  function makeCert(name: string, cn: string): void {
    openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', 'ext.cnf');
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dkv-peer-cn-cluster-'));
    writeFileSync(file('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n');
    openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=ca');
    makeCert('member', 'dkv-peer');
    makeCert('other', 'not-a-peer');
    const peerCert = (i: number) => (i === 2 ? nodeTwoCert : 'member');
    cluster = await TestCluster.start({
      nodes: 3,
      https: true,
      args: [
        `--cert-file=${file('member.crt')}`,
        `--key-file=${file('member.key')}`,
        `--peer-trusted-ca-file=${file('ca.crt')}`,
        '--peer-client-cert-auth',
        '--peer-cert-allowed-cn=dkv-peer',
      ],
      nodeArgs: (i) => [`--peer-cert-file=${file(`${peerCert(i)}.crt`)}`, `--peer-key-file=${file(`${peerCert(i)}.key`)}`],
      etcdctlArgs: [`--cacert=${file('ca.crt')}`],
    });
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  it('a member restarted with a certificate of another CN is refused and cut off; with the allowed CN it catches up', async () => {
    const c = cluster!;
    const endpoints = c.nodes.slice(0, 2).map((n) => n.clientUrl.replace('https://', '')).join(',');
    await c.kill(2);
    nodeTwoCert = 'other';
    c.startNode(2);
    await waitUntil(
      async () => (await refusedCount(c, 0, 'certificate')) + (await refusedCount(c, 1, 'certificate')) >= 2,
      20_000,
      () => c.logs(),
    );
    expect(c.log(0) + c.log(1)).toMatch(/\(certificate\): (client|server) certificate refused: certificate CN not-a-peer is not the allowed CN dkv-peer/);
    // Node 2 may have led before it was killed: the others elect one of them.
    await waitForLeaderAmong(c, [0, 1]);
    expect(etcdctl(endpoints, ['put', 'cn-key', 'written-while-refused'], undefined, c.etcdctlArgs).code).toBe(0);
    // Node 2 hears from no one: it never learns of a leader.
    expect(await c.healthy(2)).toBe(false);

    await c.kill(2);
    nodeTwoCert = 'member';
    c.startNode(2);
    await c.waitForHealthy(2);
    await waitUntil(
      () => etcdctl(c.endpoint(2), ['get', 'cn-key', '--print-value-only', '--consistency=s'], undefined, c.etcdctlArgs).stdout.trim() === 'written-while-refused',
      20_000,
      () => c.logs(),
    );
  }, 90_000);
});
