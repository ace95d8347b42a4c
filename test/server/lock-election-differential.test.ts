/**
 * Differential test of the Lock and Election services: one script of raw gRPC calls (lease 0:
 * each server grants a session lease) runs against a real etcd (Debian's etcd-server 3.4) and against
 * DKV, each a single member started fresh; the transcripts must match.
 *
 * Normalisations (the only ones): `cluster_id`, `member_id` and `raft_term` in headers; the hex
 * id at the end of a lock or election key (each names it after the session lease it grants); lease
 * ids (each server picks its own). Where DKV differs on
 * purpose, the test states etcd's behaviour and DKV's explicitly, after the transcript.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Decoded, type EtcdChannel, type RpcError, longsAsStrings, methodCodec } from '../../src/client/index.js';
import { RealEtcd, TestCluster, etcdChannel, prefixEnd, waitUntil } from './cluster-harness.js';

let etcd: RealEtcd;
let dkv: TestCluster;

beforeAll(async () => {
  [etcd, dkv] = await Promise.all([RealEtcd.start(), TestCluster.start({ nodes: 1 })]);
}, 60_000);

afterAll(async () => {
  await Promise.all([etcd?.stop(), dkv?.stop()]);
});

/** int64 fields decode as decimal strings: etcd's lease ids pass 2^53. */
type Header = { revision: string };
const channel = (endpoint: string): EtcdChannel => etcdChannel(endpoint, { decode: longsAsStrings });

function normalise(value: unknown, field = ''): unknown {
  if (Buffer.isBuffer(value)) {
    const text = value.toString('latin1');
    return field === 'key' ? text.replace(/\/[0-9a-f]{1,16}$/, '/<id>') : text;
  }
  if (Array.isArray(value)) return value.map((v) => normalise(v, field));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (k === 'cluster_id' || k === 'member_id' || k === 'raft_term') out[k] = `<${k}>`;
      else if (k === 'lease') out[k] = '<lease>';
      else out[k] = normalise(v, k);
    }
    return out;
  }
  return value;
}

/** What differs on purpose, gathered from each run for the explicit checks. */
interface Facts {
  contendedLockRevision: string;
  contendedLockCreateRevision: string;
  unlockBeforeItRevision: string;
  emptyName: { key?: string; error?: string };
}

async function runScript(c: EtcdChannel): Promise<{ transcript: string[]; facts: Facts }> {
  const transcript: string[] = [];
  const record = (label: string, value: unknown): void => {
    transcript.push(`${label}: ${JSON.stringify(normalise(value))}`);
  };
  const step = async <T extends Decoded>(label: string, call: Promise<Decoded>): Promise<T | undefined> => {
    try {
      const response = (await call) as T;
      record(label, response);
      return response;
    } catch (error) {
      record(label, { code: (error as RpcError).code, details: (error as RpcError).details });
      return undefined;
    }
  };
  const lock = (name: string, extra: object = {}, timeoutMs = 30_000): Promise<Decoded> => c.call('v3lockpb.Lock', 'Lock', { name: Buffer.from(name), ...extra }, { timeoutMs });
  const unlock = (key: Buffer | string): Promise<Decoded> => c.call('v3lockpb.Lock', 'Unlock', { key: Buffer.from(key) });
  const elect = (method: string, request: object, timeoutMs = 30_000): Promise<Decoded> => c.call('v3electionpb.Election', method, request, { timeoutMs });
  const under = async (prefix: string): Promise<Decoded> => c.kv('Range', { key: Buffer.from(prefix), range_end: prefixEnd(prefix), sort_target: 2, sort_order: 1 });
  const count = async (prefix: string): Promise<number> => ((await under(prefix))['kvs'] as unknown[]).length;

  // Lock: free, unlocked twice, bad key, a lease that does not exist.
  const a = await step<{ key: Buffer }>('lock a', lock('a'));
  await step('range a/', under('a/'));
  await step('unlock', unlock(a!.key));
  await step('unlock again', unlock(a!.key));
  await step('unlock empty key', unlock(''));
  await step('lock with a missing lease', lock('a', { lease: 0x1234abcd }));
  await step('range a/ after', under('a/'));

  // Contended: the second locker gets the lock when the first unlocks.
  const first = await step<{ key: Buffer }>('lock c', lock('c'));
  const second = lock('c');
  await waitUntil(async () => (await count('c/')) === 2, 20_000, () => 'the second locker waits');
  const unlocked = await step<{ header: Header }>('unlock c first', unlock(first!.key));
  const got = (await second) as { header: Header; key: Buffer };
  const created = ((await under('c/'))['kvs'] as Array<{ create_revision: string }>)[0]!.create_revision;
  record('lock c second (header revision aside)', { ...got, header: { ...got.header, revision: '<differs>' } });
  const facts: Facts = {
    contendedLockRevision: got.header.revision,
    contendedLockCreateRevision: created,
    unlockBeforeItRevision: unlocked!.header.revision,
    emptyName: {},
  };

  // A waiter whose deadline passes: its key is deleted. The client's own timer and the server's
  // answer race at the deadline: usually the client's DEADLINE_EXCEEDED (4) wins, but etcd's
  // handler returns its context's error ("context deadline exceeded", UNKNOWN) at the same
  // moment and sometimes arrives first. Either is the deadline.
  const deadline = await lock('c', {}, 1000).then(
    () => 'locked',
    (e: RpcError) => (e.code === 4 || (e.code === 2 && e.details === 'context deadline exceeded') ? 'the deadline' : e.code),
  );
  record('lock c with a deadline', deadline);
  await waitUntil(async () => (await count('c/')) === 1, 20_000, () => 'the waiter left');
  await step('range c/ after the deadline', under('c/'));
  await step('unlock c second', unlock(got.key));

  // Election.
  const e = Buffer.from('e');
  await step('leader e (none)', elect('Leader', { name: e }));
  const won = await step<{ leader: Decoded }>('campaign e v1', elect('Campaign', { name: e, value: Buffer.from('v1') }));
  const leader = won!.leader;
  await step('leader e', elect('Leader', { name: e }));
  await step('proclaim v2', elect('Proclaim', { leader, value: Buffer.from('v2') }));
  await step('leader e after proclaim', elect('Leader', { name: e }));
  await step('proclaim with a stale rev', elect('Proclaim', { leader: { ...leader, rev: Number(leader['rev']) + 100 }, value: Buffer.from('no') }));
  await step('proclaim without a leader', elect('Proclaim', { value: Buffer.from('no') }));
  await step('resign with a stale rev', elect('Resign', { leader: { ...leader, rev: Number(leader['rev']) + 100 } }));
  await step('resign', elect('Resign', { leader }));
  await step('resign again', elect('Resign', { leader }));
  await step('resign without a leader', elect('Resign', {}));
  await step('leader e after resign', elect('Leader', { name: e }));
  // Rev 0 on a key that does not exist: the compare holds, so the put creates it (etcd's recipe).
  await step('proclaim rev 0 on a missing key', elect('Proclaim', { leader: { name: e, key: Buffer.from('e/zzz'), rev: 0 }, value: Buffer.from('x') }));
  await step('leader e after that', elect('Leader', { name: e }));
  await step('delete e/zzz', c.kv('DeleteRange', { key: Buffer.from('e/zzz') }));

  // Observe: no leader first, then a campaign, a proclaim, a successor.
  const o = Buffer.from('o');
  const observed: Decoded[] = [];
  const stream = c.serverStream(methodCodec('v3electionpb.Election', 'Observe'), { name: o });
  stream.on('data', (r: Decoded) => observed.push(r));
  stream.on('error', () => undefined);
  const x = (await elect('Campaign', { name: o, value: Buffer.from('x1') })) as { leader: Decoded };
  await waitUntil(() => observed.length === 1, 20_000, () => 'observed x1');
  await elect('Proclaim', { leader: x.leader, value: Buffer.from('x2') });
  await waitUntil(() => observed.length === 2, 20_000, () => 'observed x2');
  const y = elect('Campaign', { name: o, value: Buffer.from('y1') });
  await waitUntil(async () => (await count('o/')) === 2, 20_000, () => 'y waits');
  await elect('Resign', { leader: x.leader });
  const yWon = (await y) as { leader: Decoded };
  await waitUntil(() => observed.length === 3, 20_000, () => 'observed y1');
  // A second observer starts with the leader of now.
  const late: Decoded[] = [];
  const lateStream = c.serverStream(methodCodec('v3electionpb.Election', 'Observe'), { name: o });
  lateStream.on('data', (r: Decoded) => late.push(r));
  lateStream.on('error', () => undefined);
  await waitUntil(() => late.length === 1, 20_000, () => 'the late observer');
  await elect('Resign', { leader: yWon.leader });
  await c.kv('Put', { key: Buffer.from('o/after'), value: Buffer.from('z') });
  await waitUntil(() => observed.length === 4 && late.length === 2, 20_000, () => 'observed the key put after');
  stream.cancel();
  lateStream.cancel();
  record('observed', observed);
  record('observed late', late);

  // An empty name: etcd takes it (keys "/<lease>"); DKV refuses it.
  try {
    const r = (await lock('')) as { key: Buffer };
    facts.emptyName.key = r.key.toString().replace(/[0-9a-f]+$/, '<id>');
    await unlock(r.key);
  } catch (error) {
    facts.emptyName.error = (error as RpcError).details;
  }
  return { transcript, facts };
}

describe('Lock and Election: DKV against real etcd', () => {
  it('matches step by step, and differs only where DKV says it does', async () => {
    const fromEtcd = await runScript(channel(etcd.endpoint));
    const fromDkv = await runScript(channel(dkv.endpoint(0)));
    for (let i = 0; i < Math.max(fromEtcd.transcript.length, fromDkv.transcript.length); i++) expect(fromDkv.transcript[i]).toBe(fromEtcd.transcript[i]);

    // A lock got after a wait: etcd's header has the revision of its last read (here the unlock
    // before it); DKV's, the lock key's create revision (its fencing token).
    expect(fromEtcd.facts.contendedLockRevision).toBe(fromEtcd.facts.unlockBeforeItRevision);
    expect(fromDkv.facts.contendedLockRevision).toBe(fromDkv.facts.contendedLockCreateRevision);
    expect(fromDkv.facts.contendedLockCreateRevision).toBe(fromEtcd.facts.contendedLockCreateRevision);

    expect(fromEtcd.facts.emptyName).toEqual({ key: '/<id>' });
    expect(fromDkv.facts.emptyName).toEqual({ error: 'dkv: lock or election name is not provided' });
  });
});
