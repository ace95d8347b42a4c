/**
 * `dkv bench … --user` against a real one-node cluster with auth enabled: each benchmark that
 * calls a cluster runs a few operations as a user whose role covers every key, without one error;
 * a wrong password stops the run before it starts, with the server's message; and the token is
 * really what lets the calls through (no user, or a user without the keys: every call refused).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EtcdChannel } from '../../src/client/index.js';
import { login, passwords, secure } from '../server/auth-harness.js';
import { type CommandResult, TestCluster, etcdChannel } from '../server/cluster-harness.js';

const bin = join(import.meta.dirname, '..', '..', 'bin', 'dkv.js');
const commandTimeoutMs = 60_000;
const benchPassword = 'bench-pw';

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 1 });
  const channel: EtcdChannel = etcdChannel(cluster.endpoint(0));
  try {
    await secure(channel);
    // The load generators' keys are binary (Go varints) and spread over the key space: the
    // bench user's role may read and write every key (etcd's "\0" to "\0").
    const root = { token: await login(channel, 'root', passwords.root) };
    const auth = (method: string, request: object): Promise<unknown> => channel.call('etcdserverpb.Auth', method, request, root);
    await auth('UserAdd', { name: 'bencher', password: benchPassword });
    await auth('RoleAdd', { name: 'everything' });
    await auth('RoleGrantPermission', { name: 'everything', perm: { permType: 2, key: Buffer.from([0]), range_end: Buffer.from([0]) } });
    await auth('UserGrantRole', { user: 'bencher', role: 'everything' });
  } finally {
    channel.close();
  }
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

/** `dkv bench …` as a user runs it, with none of the caller's endpoints or credentials. */
function bench(args: readonly string[]): Promise<CommandResult> {
  const env = { ...process.env, DKV_FROM_SOURCE: undefined, DKV_USER: undefined, ETCDCTL_USER: undefined, DKV_PASSWORD: undefined, ETCDCTL_PASSWORD: undefined };
  const child = spawn(process.execPath, [bin, 'bench', ...args, '--endpoints', cluster.endpoint(0)], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), commandTimeoutMs);
  return new Promise((resolve) =>
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}

/** Tiny runs of every benchmark that calls a cluster (unary calls, byte-level calls and streams). */
const tinyRuns: ReadonlyArray<readonly string[]> = [
  ['put', '--total', '5', '--clients', '2'],
  ['txn-put', '--total', '3', '--txn-ops', '2', '--key-space-size', '4'],
  ['range', '--total', '5'],
  ['watch', '--streams', '1', '--watch-per-stream', '2', '--key-space-size', '2', '--put-total', '4'],
  ['lease-keepalive', '--total', '4'],
  ['lease-grant', '--total', '3'],
  ['counter', '--total', '5', '--method', 'counter'],
  ['lock', '--total', '3'],
];

describe('dkv bench --user', () => {
  it('runs each benchmark as a user of an auth-enabled cluster, every call accepted', async () => {
    for (const run of tinyRuns) {
      const r = await bench([...run, '--user', `bencher:${benchPassword}`, '--json']);
      expect(r, run.join(' ')).toMatchObject({ code: 0, stderr: '' });
      expect(JSON.parse(r.stdout) as Record<string, unknown>, run.join(' ')).toMatchObject({ errors: 0 });
    }
    // --password names the password instead (the user is then the whole of --user).
    const r = await bench(['put', '--total', '2', '--user', 'bencher', '--password', benchPassword, '--json']);
    expect(r).toMatchObject({ code: 0, stderr: '' });
  }, 120_000);

  it('stops before the run with the server\'s message when the password is wrong', async () => {
    const r = await bench(['put', '--total', '5', '--user', 'bencher:wrong']);
    expect(r).toEqual({ code: 1, stdout: '', stderr: 'dkv bench put: etcdserver: authentication failed, invalid user ID or password\n' });
  });

  it('counts every call refused without a user, and for a user whose role does not cover the keys', async () => {
    const anonymous = await bench(['put', '--total', '3', '--json']);
    expect(anonymous.code).toBe(1);
    expect(JSON.parse(anonymous.stdout) as Record<string, unknown>).toMatchObject({ errors: 3, errorsByMessage: { 'etcdserver: user name is empty': 3 } });
    // alice may write /app/ only.
    const alice = await bench(['put', '--total', '3', '--json', '--user', `alice:${passwords.alice}`]);
    expect(alice.code).toBe(1);
    expect(JSON.parse(alice.stdout) as Record<string, unknown>).toMatchObject({ errors: 3, errorsByMessage: { 'etcdserver: permission denied': 3 } });
  });

  it('refuses --password without --user as a usage error', async () => {
    const r = await bench(['put', '--password', 'x']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--password needs --user');
  });
});
