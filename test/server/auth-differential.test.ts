/**
 * Auth, differential: one `etcdctl` session that creates users and roles, grants and revokes,
 * enables auth and tries allowed and refused operations as each user, run against Debian's etcd
 * 3.4 and against a 3-node DKV cluster. Every step's exit code, output and error line must be the
 * same (lease ids, which differ by design, are captured per server and substituted).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RealEtcd, TestCluster, etcdctlAsync } from './cluster-harness.js';

let cluster: TestCluster;
let etcd: RealEtcd;

beforeAll(async () => {
  [cluster, etcd] = await Promise.all([TestCluster.start({ nodes: 3 }), RealEtcd.start()]);
}, 60_000);

afterAll(async () => {
  await Promise.all([cluster?.stop(), etcd?.stop()]);
});

/** A step: who runs it (none: no --user), the etcdctl arguments ({lease} is the session's lease id). */
interface Step {
  readonly as?: string;
  readonly args: readonly string[];
}

const passwords: Record<string, string> = { root: 'rootpw', alice: 'alicepw', bob: 'bobpw' };
const user = (name: string): string[] => ['--user', `${name}:${passwords[name] ?? 'wrong'}`];

const session: readonly Step[] = [
  // Before auth: anyone manages users and roles.
  { args: ['put', '/app/seed', 'x'] },
  { args: ['user', 'add', 'root', '--new-user-password=rootpw'] },
  { args: ['user', 'add', 'alice', '--new-user-password=alicepw'] },
  { args: ['user', 'add', 'bob', '--new-user-password=bobpw'] },
  { args: ['user', 'add', 'alice', '--new-user-password=again'] },
  { args: ['role', 'add', 'app'] },
  { args: ['role', 'add', 'app'] },
  { args: ['role', 'add', 'reader'] },
  { args: ['role', 'grant-permission', 'app', 'readwrite', '/app/', '--prefix=true'] },
  { args: ['role', 'grant-permission', 'app', 'read', '/cfg'] },
  { args: ['role', 'grant-permission', 'reader', 'read', '/app/a', '/app/m'] },
  { args: ['role', 'grant-permission', 'nosuch', 'read', '/x'] },
  { args: ['user', 'grant-role', 'alice', 'app'] },
  { args: ['user', 'grant-role', 'bob', 'reader'] },
  { args: ['user', 'grant-role', 'bob', 'nosuch'] },
  { args: ['user', 'grant-role', 'nobody', 'app'] },
  { args: ['auth', 'enable'] },
  { args: ['user', 'grant-role', 'root', 'root'] },
  { args: ['auth', 'enable'] },
  // Auth on: no user, a wrong password, an unknown user.
  { args: ['get', '/app/seed'] },
  { args: ['put', '/app/k', 'v'] },
  { as: 'mallory', args: ['get', '/app/seed'] },
  { as: 'alice-wrong', args: ['get', '/app/seed'] },
  // alice: readwrite /app/, read /cfg.
  { as: 'alice', args: ['put', '/app/k', 'v1'] },
  { as: 'alice', args: ['get', '/app/k'] },
  { as: 'alice', args: ['get', '/app/', '--prefix'] },
  { as: 'alice', args: ['get', '/', '--prefix'] },
  { as: 'alice', args: ['put', '/cfg', 'v'] },
  { as: 'alice', args: ['get', '/cfg'] },
  { as: 'alice', args: ['put', '/other', 'v'] },
  { as: 'alice', args: ['del', '/app/k'] },
  { as: 'alice', args: ['del', '/app/', '--prefix'] },
  { as: 'alice', args: ['put', '/app/k2', 'v', '--prev-kv'] },
  // bob: read [/app/a, /app/m).
  { as: 'bob', args: ['get', '/app/b'] },
  { as: 'bob', args: ['get', '/app/z'] },
  { as: 'bob', args: ['get', '/app/a', '/app/m'] },
  { as: 'bob', args: ['get', '/app/a', '/app/n'] },
  { as: 'bob', args: ['put', '/app/b', 'v'] },
  // Admin calls are root's.
  { as: 'alice', args: ['user', 'list'] },
  { as: 'alice', args: ['role', 'add', 'mine'] },
  { as: 'alice', args: ['auth', 'disable'] },
  { as: 'root', args: ['user', 'list'] },
  { as: 'root', args: ['role', 'list'] },
  { as: 'root', args: ['user', 'get', 'alice'] },
  { as: 'root', args: ['role', 'get', 'app'] },
  { as: 'root', args: ['role', 'get', 'root'] },
  { as: 'root', args: ['user', 'get', 'nobody'] },
  { as: 'root', args: ['get', '/', '--prefix', '--keys-only'] },
  // Leases: revoking deletes the lease's keys, so it needs write on every one of them.
  { as: 'root', args: ['put', '/secret', 's', '--lease={lease}'] },
  { as: 'alice', args: ['lease', 'revoke', '{lease}'] },
  { as: 'alice', args: ['put', '/app/leased', 'v', '--lease={lease}'] },
  // Revoking a permission takes effect for the next request.
  { as: 'root', args: ['role', 'revoke-permission', 'app', '/app/', '--prefix=true'] },
  { as: 'root', args: ['role', 'revoke-permission', 'app', '/app/', '--prefix=true'] },
  { as: 'alice', args: ['put', '/app/k', 'v'] },
  { as: 'alice', args: ['get', '/cfg'] },
  { as: 'root', args: ['user', 'revoke-role', 'alice', 'app'] },
  { as: 'root', args: ['user', 'revoke-role', 'alice', 'app'] },
  { as: 'alice', args: ['get', '/cfg'] },
  // Root cannot be removed while auth is on.
  { as: 'root', args: ['user', 'delete', 'root'] },
  { as: 'root', args: ['role', 'delete', 'root'] },
  { as: 'root', args: ['user', 'revoke-role', 'root', 'root'] },
  // A deleted user cannot authenticate; a changed password takes over.
  { as: 'root', args: ['user', 'delete', 'bob'] },
  { as: 'bob', args: ['get', '/app/b'] },
  { as: 'root', args: ['role', 'delete', 'reader'] },
  { as: 'root', args: ['auth', 'disable'] },
  { args: ['get', '/app/seed'] },
  { args: ['user', 'list'] },
];

interface Observed {
  readonly step: string;
  readonly code: number | null;
  readonly stdout: string;
  readonly error: string;
}

/**
 * Runs the session against `endpoint`; the lease is granted by root once auth is on. Not
 * blocking: etcd and DKV run theirs at the same time.
 */
async function runSession(endpoint: string): Promise<Observed[]> {
  const observed: Observed[] = [];
  let lease = '';
  for (const step of session) {
    if (step.args.some((a) => a.includes('{lease}')) && lease === '') {
      const granted = await etcdctlAsync(endpoint, [...user('root'), 'lease', 'grant', '600']);
      lease = /lease ([0-9a-f]+) granted/.exec(granted.stdout)?.[1] ?? 'none';
    }
    const who = step.as === undefined ? [] : step.as === 'alice-wrong' ? ['--user', 'alice:nope'] : user(step.as);
    const args = step.args.map((a) => a.replace('{lease}', lease));
    const r = await etcdctlAsync(endpoint, [...who, ...args]);
    const error = r.stderr
      .split('\n')
      .filter((line) => line.startsWith('Error:'))
      .join('\n');
    observed.push({ step: `${step.as ?? '-'}: ${step.args.join(' ')}`, code: r.code, stdout: lease === '' ? r.stdout : r.stdout.replaceAll(lease, '{lease}'), error });
  }
  return observed;
}

describe('auth: an etcdctl session, DKV against etcd 3.4', () => {
  it('answers every step as etcd does', async () => {
    const [expected, actual] = await Promise.all([runSession(etcd.endpoint), runSession(cluster.endpoints)]);
    // The session must exercise both outcomes, or it proves little.
    expect(expected.filter((o) => o.code === 0).length).toBeGreaterThan(20);
    expect(expected.filter((o) => o.error.includes('permission denied')).length).toBeGreaterThan(8);
    for (let i = 0; i < session.length; i++) expect(actual[i], `step ${i}`).toEqual(expected[i]);
  }, 120_000);
});
