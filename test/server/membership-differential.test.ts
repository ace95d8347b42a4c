/**
 * Differential test of membership administration: the same etcdctl session against a real etcd
 * (Debian's etcd 3.4) and a single DKV member — member add (learner), list, promote of a learner
 * not in sync, a second learner, remove, remove again, update, defrag, alarm list, endpoint
 * health --cluster. Every step's stdout, last stderr line and exit status must match. (Adding the
 * removed learner back at once is left out: etcd 3.4 answers it `member not found` in some runs
 * and accepts it in others. A re-added member's new id is checked in membership.test.ts.)
 *
 * Normalisations (the only ones): member and cluster ids, the first member's name and URLs (e1 on
 * etcd, dkv1 on DKV), the health check's duration.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RealEtcd, TestCluster, etcdctlAsync, freeBase } from './cluster-harness.js';

let etcd: RealEtcd;
let dkv: TestCluster;

beforeAll(async () => {
  [etcd, dkv] = await Promise.all([RealEtcd.start(), TestCluster.start({ nodes: 1 })]);
}, 60_000);

afterAll(async () => {
  await etcd?.stop();
  await dkv?.stop();
});

interface Self {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
}

async function selfOf(endpoint: string): Promise<Self> {
  const list = JSON.parse((await etcdctlAsync(endpoint, ['member', 'list', '-w', 'json'])).stdout) as { members: Array<{ name: string; clientURLs: string[]; peerURLs: string[] }> };
  const me = list.members[0]!;
  return { name: me.name, clientUrl: me.clientURLs[0]!, peerUrl: me.peerURLs[0]! };
}

/** The session on one server; not blocking, so both servers run theirs at the same time. */
async function session(endpoint: string): Promise<{ transcript: string[]; ids: string[] }> {
  const self = await selfOf(endpoint);
  const base = await freeBase(1);
  const newPeer = `http://127.0.0.1:${base + 1}`;
  const ids: string[] = [];
  const normalize = (text: string): string => {
    let out = text;
    for (const [i, id] of ids.entries()) out = out.replaceAll(id, `<id${i}>`);
    return out
      .replaceAll(self.peerUrl, '<self-peer>')
      .replaceAll(self.clientUrl, '<self-client>')
      .replaceAll(newPeer, '<new-peer>')
      .replace(new RegExp(`\\b${self.name}\\b`, 'g'), '<self>')
      .replace(/cluster +[0-9a-f]+/g, 'cluster <cluster>')
      .replace(/took = [0-9.]+[µm]?s/g, 'took = <t>')
      .replace(/member\[127\.0\.0\.1:\d+\]/g, 'member[<endpoint>]')
      .replace(/\b[0-9a-f]{12,16}\b/g, '<member>')
      // etcdctl pads ids to 16 hex digits; DKV's are below 2^53 (14 digits at most).
      .replace(/Member +</g, 'Member <')
      // Lists follow the member ids' order, which are random on etcd.
      .replace(/ETCD_INITIAL_CLUSTER="([^"]*)"/, (_m, list: string) => `ETCD_INITIAL_CLUSTER="${list.split(',').sort().join(',')}"`);
  };
  const transcript: string[] = [];
  const step = async (args: string[]): Promise<string> => {
    const r = await etcdctlAsync(endpoint, args);
    const lastErr = r.stderr.trim().split('\n').pop() ?? '';
    const added = /Member +([0-9a-f]+) added/.exec(r.stdout)?.[1];
    if (added !== undefined) ids.push(added);
    const stdout = args[0] === 'member' && args[1] === 'list' ? `${r.stdout.trim().split('\n').map(normalize).sort().join('\n')}\n` : r.stdout;
    transcript.push(normalize(`$ etcdctl ${args.join(' ')}\nexit ${r.code}\n${stdout}${lastErr === '' ? '' : `stderr: ${lastErr}\n`}`));
    return r.stdout;
  };
  await step(['member', 'add', 'm2', `--peer-urls=${newPeer}`, '--learner']);
  const learner = ids[0]!;
  await step(['member', 'list']);
  await step(['member', 'promote', learner]);
  await step(['member', 'add', 'm3', 'http://127.0.0.1:1', '--learner']);
  await step(['member', 'add', 'm3', '--peer-urls=http://127.0.0.1:1', '--learner']);
  await step(['member', 'remove', learner]);
  await step(['member', 'remove', learner]);
  const selfId = (JSON.parse((await etcdctlAsync(endpoint, ['member', 'list', '-w', 'json'])).stdout.replace(/"ID":(\d+)/g, '"ID":"$1"')) as { members: Array<{ ID: string }> }).members[0]!.ID;
  await step(['member', 'update', BigInt(selfId).toString(16), `--peer-urls=${self.peerUrl}`]);
  await step(['member', 'list']);
  await step(['defrag']);
  await step(['alarm', 'list']);
  await step(['endpoint', 'health', '--cluster']);
  return { transcript, ids };
}

describe('membership administration: etcd 3.4 and DKV side by side', () => {
  it('give the same outputs and errors', async () => {
    const [expected, actual] = await Promise.all([session(etcd.endpoint), session(dkv.endpoint(0))]);
    expect(actual.transcript).toEqual(expected.transcript);
    for (const side of [expected, actual]) expect(side.ids).toHaveLength(1);
    expect(expected.transcript.join('\n')).toContain('can only promote a learner member which is in sync with leader');
    expect(expected.transcript.join('\n')).toContain('too many learner members in cluster');
    expect(expected.transcript.join('\n')).toContain('member not found');
  }, 120_000);
});
