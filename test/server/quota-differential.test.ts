/**
 * Differential test of quotas and alarms: the same etcdctl session against a real etcd (Debian's
 * etcd 3.4) and against a single DKV member, both with a 2 MiB --quota-backend-bytes. Puts of
 * 64 KiB values go in until one is refused; from there on every step's stdout, stderr's last line
 * and exit status must match: the refusal's error, `alarm list`, refused puts, txns and lease
 * grants, deletes and reads that still work, compact, defrag, `alarm disarm`, writes that work
 * again.
 *
 * Normalisations (the only ones): member ids (decimal, in `memberID:`) become a placeholder, and
 * the compact revision is each server's own current revision. The number of puts before the
 * refusal differs (etcd counts its bbolt file, DKV the store's memory) and is not compared.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RealEtcd, TestCluster, etcdctlAsync } from './cluster-harness.js';

const quota = ['--quota-backend-bytes=2097152'];
const value = 'v'.repeat(64 * 1024);

let etcd: RealEtcd;
let dkv: TestCluster;

beforeAll(async () => {
  [etcd, dkv] = await Promise.all([RealEtcd.start(quota), TestCluster.start({ nodes: 1, args: quota })]);
}, 60_000);

afterAll(async () => {
  await etcd?.stop();
  await dkv?.stop();
});

interface Step {
  readonly args: string[];
  readonly input?: string;
}

async function outcome(endpoint: string, step: Step): Promise<string> {
  const r = await etcdctlAsync(endpoint, step.args, step.input);
  const lastErr = r.stderr.trim().split('\n').pop() ?? '';
  return `exit ${r.code}\n${r.stdout}${lastErr === '' ? '' : `stderr: ${lastErr}\n`}`.replace(/memberID:\d+/g, 'memberID:<id>');
}

/** Puts until one is refused; returns the refusal's outcome and how many went in. */
async function fill(endpoint: string): Promise<{ refusal: string; accepted: number }> {
  for (let i = 0; i < 400; i++) {
    const r = await etcdctlAsync(endpoint, ['put', `big/${String(i).padStart(4, '0')}`], value);
    if (r.code !== 0) return { refusal: await outcome(endpoint, { args: ['put', 'one-more'], input: value }), accepted: i };
  }
  throw new Error('no put was refused');
}

async function revisionOf(endpoint: string): Promise<number> {
  return (JSON.parse((await etcdctlAsync(endpoint, ['get', 'x', '-w', 'json'])).stdout) as { header: { revision: number } }).header.revision;
}

/** The session on one server; not blocking, so both servers run theirs at the same time. */
async function session(endpoint: string): Promise<string[]> {
  const { refusal } = await fill(endpoint);
  const steps: Array<Step | (() => Promise<Step>)> = [
    { args: ['alarm', 'list'] },
    { args: ['put', 'small', 'x'] },
    { args: ['lease', 'grant', '60'] },
    { args: ['txn'], input: '\n\nput small x\n\n' },
    { args: ['txn'], input: '\nget small\n\n\n' },
    { args: ['get', 'big/0000', '--keys-only'] },
    { args: ['del', 'big/', '--prefix'] },
    { args: ['put', 'small', 'x'] },
    async () => ({ args: ['compact', String(await revisionOf(endpoint))] }),
    { args: ['defrag', '--command-timeout=30s'] },
    { args: ['put', 'small', 'x'] },
    { args: ['alarm', 'list'] },
    { args: ['alarm', 'disarm'] },
    { args: ['alarm', 'list'] },
    { args: ['alarm', 'disarm'] },
    { args: ['put', 'small', 'x'] },
    { args: ['get', 'small', '--print-value-only'] },
  ];
  const status = JSON.parse((await etcdctlAsync(endpoint, ['endpoint', 'status', '-w', 'json'])).stdout) as Array<{ Status: { errors?: string[] } }>;
  const errors = (status[0]?.Status.errors ?? []).map((e) => e.replace(/memberID:\d+/g, 'memberID:<id>'));
  const transcript = [`refusal: ${refusal}`, `status errors: ${JSON.stringify(errors)}`];
  for (const step of steps) {
    const s = typeof step === 'function' ? await step() : step;
    let text = await outcome(endpoint, s);
    // How many puts fit differs (etcd counts its bbolt file, DKV its store's memory).
    if (s.args[0] === 'del') text = text.replace(/^\d+$/m, '<count>');
    text = text.replace(/compacted revision \d+/, 'compacted revision <rev>').replace(/Finished defragmenting etcd member\[[^\]]+\]/, 'Finished defragmenting etcd member[<endpoint>]');
    const shown = s.args[0] === 'compact' ? 'compact <rev>' : s.args.join(' ');
    transcript.push(`$ etcdctl ${shown}\n${text}`);
  }
  return transcript;
}

describe('quota and alarms: etcd 3.4 and DKV side by side', () => {
  it('give the same outputs and errors', async () => {
    const [expected, actual] = await Promise.all([session(etcd.endpoint), session(dkv.endpoint(0))]);
    expect(actual).toEqual(expected);
    // The session exercised what it claims to.
    expect(expected[0]).toContain('etcdserver: mvcc: database space exceeded');
    expect(expected[1]).toMatch(/memberID:<id> alarm:NOSPACE/);
    expect(expected[2]).toMatch(/memberID:<id> alarm:NOSPACE/);
  }, 180_000);
});
