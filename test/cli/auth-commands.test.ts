/**
 * `dkv user`, `dkv role`, `dkv auth` and every remote command's --user, as users run them: `node
 * bin/dkv.js …` against a real one-node cluster, which the session turns auth on for. The listings
 * are compared with etcdctl's on the same cluster.
 *
 * The tests run in order: the first ones create the users and roles and enable auth.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CommandResult, TestCluster, etcdctl, waitUntil } from '../server/cluster-harness.js';
import { type DkvOptions, type Running, commandTimeoutMs, dkvBin as bin, dkvEnv, startDkv } from './dkv-process.js';

const outputWaitMs = 10_000;

const rootPassword = 'root-pw';
const alicePassword = 'alice-pw';

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 1 });
});

afterAll(async () => {
  await cluster?.stop();
});

function start(args: readonly string[], options: DkvOptions = {}): Running {
  // --endpoints before a lock's "-- COMMAND".
  const end = args.includes('--') ? args.indexOf('--') : args.length;
  return startDkv([...args.slice(0, end), '--endpoints', cluster.endpoint(0), ...args.slice(end)], options);
}

function dkv(args: readonly string[], options: { input?: string; env?: Record<string, string | undefined> } = {}): Promise<CommandResult> {
  return start(args, options).exited;
}

async function ok(args: readonly string[], options: { input?: string; env?: Record<string, string | undefined> } = {}): Promise<string> {
  const r = await dkv(args, options);
  expect(r, `dkv ${args.join(' ')}`).toMatchObject({ code: 0, stderr: '' });
  return r.stdout;
}

type Expected = string | CommandResult;

/**
 * Runs the commands side by side (`oneByOne`: one after the other); each must print its expected
 * stdout (exit 0, no stderr) or result.
 */
async function expectOutputs(cases: ReadonlyArray<readonly [readonly string[], Expected, { input?: string; env?: Record<string, string | undefined> }?]>, oneByOne = false): Promise<void> {
  const results: CommandResult[] = [];
  if (oneByOne) for (const [args, , options] of cases) results.push(await dkv(args, options));
  else results.push(...(await Promise.all(cases.map(([args, , options]) => dkv(args, options)))));
  for (const [i, [args, expected]] of cases.entries()) {
    const wanted = typeof expected === 'string' ? { code: 0, stdout: expected, stderr: '' } : expected;
    expect(results[i], `dkv ${args.join(' ')}`).toEqual(wanted);
  }
}

const root = ['--user', `root:${rootPassword}`];
const alice = ['--user', `alice:${alicePassword}`];

function etcdctlOk(args: readonly string[], user?: string): string {
  const r = etcdctl(cluster.endpoint(0), args, undefined, user === undefined ? [] : [`--user=${user}`]);
  expect(r.code, `etcdctl ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

describe('dkv user, role and auth, then --user on the data commands', () => {
  it('creates users and roles and prints them as etcdctl does', async () => {
    // Each step's commands are independent of one another: they run side by side.
    await expectOutputs([
      [['user', 'add', `root:${rootPassword}`], 'User root created\n'],
      [['user', 'add', 'alice', '--new-user-password', alicePassword], 'User alice created\n'],
      [['user', 'add', 'bob', '--interactive=false'], 'User bob created\n', { input: 'bob-pw extra\n' }],
      [['user', 'add', 'nopw', '--no-password'], 'User nopw created\n'],
      [['role', 'add', 'app'], 'Role app created\n'],
    ]);
    await expectOutputs([
      [['role', 'grant-permission', 'app', 'readwrite', 'app/', '--prefix'], 'Role app updated\n'],
      [['role', 'grant-permission', 'app', 'read', 'conf/a', 'conf/c'], 'Role app updated\n'],
      [['role', 'grant-permission', 'app', 'write', 'logs/', '--from-key'], 'Role app updated\n'],
      [['role', 'grant-permission', 'app', 'READ', 'single'], 'Role app updated\n'],
      [['role', 'grant-permission', 'app', 'read', 'gone'], 'Role app updated\n'],
      [['user', 'grant-role', 'alice', 'app'], 'Role app is granted to user alice\n'],
      [['user', 'grant-role', 'bob', 'app'], 'Role app is granted to user bob\n'],
    ]);
    await expectOutputs([
      [['role', 'revoke-permission', 'app', 'gone'], 'Permission of key gone is revoked from role app\n'],
      [['user', 'revoke-role', 'bob', 'app'], 'Role app is revoked from user bob\n'],
    ]);
    const sameAsEtcdctl = [['role', 'get', 'app'], ['user', 'get', 'alice'], ['user', 'get', 'alice', '--detail'], ['user', 'list'], ['role', 'list']];
    const outputs = await Promise.all(sameAsEtcdctl.map((args) => ok(args)));
    for (const [i, args] of sameAsEtcdctl.entries()) expect(outputs[i], `dkv ${args.join(' ')}`).toBe(etcdctlOk(args));
    expect(outputs[0]).toContain('\t[app/, app0) (prefix app/)\n');
    expect(outputs[0]).toContain('\t[logs/, <open ended>\n');
    expect(outputs[0]).not.toContain('gone');
    expect(outputs[1]).toBe('User: alice\nRoles: app\n');
    expect(JSON.parse(await ok(['user', 'list', '-w', 'json'])).users).toEqual(['alice', 'bob', 'nopw', 'root']);
    expect(await ok(['auth', 'status'])).toMatch(/^Authentication Status: false\nAuthRevision: \d+\n$/);
  });

  it('refuses what etcd refuses, with its message and exit 1', async () => {
    expect(await dkv(['user', 'add', 'alice:again'])).toMatchObject({ code: 1, stderr: 'dkv user: etcdserver: user name already exists\n' });
    expect(await dkv(['role', 'get', 'nope'])).toMatchObject({ code: 1, stderr: 'dkv role: etcdserver: role name not found\n' });
  });

  it('enables auth, creating the root role as etcdctl does', async () => {
    expect(await ok(['auth', 'enable'])).toBe('Authentication Enabled\n');
    expect(await ok(['auth', 'status', ...root])).toMatch(/^Authentication Status: true\n/);
    expect(await ok(['user', 'get', 'root', ...root])).toBe('User: root\nRoles: root\n');
  });

  it('lets a user read and write what its role allows, and refuses the rest', async () => {
    expect(await ok(['put', 'app/k', 'v1', ...alice])).toBe('OK\n');
    const denied = (command: string): CommandResult => ({ code: 1, stdout: '', stderr: `dkv ${command}: etcdserver: permission denied\n` });
    const authFailed = { code: 1, stdout: '', stderr: 'dkv get: etcdserver: authentication failed, invalid user ID or password\n' };
    await expectOutputs([
      [['get', 'app/k', '--user', 'alice', '--password', alicePassword], 'app/k\nv1\n'],
      [['get', 'app/k', '--user', 'alice'], 'app/k\nv1\n', { env: { DKV_PASSWORD: alicePassword } }],
      [['get', 'app/k'], 'app/k\nv1\n', { env: { ETCDCTL_USER: `alice:${alicePassword}` } }],
      // A NAME:PASSWORD on the command line wins over the variable.
      [['get', 'app/k', ...alice], 'app/k\nv1\n', { env: { DKV_PASSWORD: 'wrong' } }],
      [['counter', 'incr', 'app/n', ...alice], '1\n'],
      [['get', 'conf/a', ...alice], ''],
      // "aaa" is below every key the role names; "conf/a" is readable only.
      [['put', 'aaa', 'v', ...alice], denied('put')],
      [['get', 'conf/z', ...alice], denied('get')],
      [['put', 'conf/a', 'v', ...alice], denied('put')],
      [['user', 'list', ...alice], denied('user')],
      [['get', 'app/k', '--user', 'alice:wrong'], authFailed],
      [['get', 'app/k', '--user', 'nopw:x'], authFailed],
      [['get', 'app/k'], { code: 1, stdout: '', stderr: 'dkv get: etcdserver: user name is empty\n' }],
      // One by one: each command authenticates as alice, and eleven at once would pass the
      // per-user burst of Authenticate calls (authenticateBurstPerUser, refilled over time).
    ], true);
  });

  it('asks for the password on a terminal, without echo', async () => {
    // script(1) gives dkv a pseudo-terminal; the password is typed once the prompt is shown.
    const command = [process.execPath, bin, 'get', 'app/k', '--user', 'alice', '--endpoints', cluster.endpoint(0)].join(' ');
    const child = spawn('script', ['-qec', command, '/dev/null'], { env: dkvEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    let typed = false;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
      if (!typed && output.includes('Password: ')) {
        typed = true;
        child.stdin.write(`${alicePassword}\r`);
      }
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), commandTimeoutMs);
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    clearTimeout(timer);
    expect({ code, output }).toEqual({ code: 0, output: 'Password: \r\napp/k\r\nv1\r\n' });
  });

  it('watches with a token, and a refused watch ends with exit 1', async () => {
    const watch = start(['watch', 'app/', '--prefix', ...alice]);
    // The watch is in place once a put made after it starts shows up; retry puts until one does.
    await waitUntil(async () => {
      await ok(['put', 'app/w', 'seen', ...alice]);
      return watch.stdout().includes('PUT\napp/w\nseen\n');
    }, outputWaitMs, () => `dkv watch printed ${JSON.stringify(watch.stdout())}`, 200);
    watch.signal('SIGINT');
    expect((await watch.exited).code).toBe(0);
    const refused = await dkv(['watch', 'aaa', ...alice]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^dkv watch: watch was canceled \(.*etcdserver: permission denied\)\n$/);
  });

  it('grants and keeps leases, and locks what the role allows', async () => {
    const granted = await ok(['lease', 'grant', '60', ...alice]);
    const id = /^lease ([0-9a-f]+) granted with TTL\(60s\)\n$/.exec(granted)?.[1];
    expect(id, granted).toBeDefined();
    expect(await ok(['lease', 'keep-alive', '--once', id!, ...alice])).toBe(`lease ${id!} keepalived with TTL(60)\n`);
    expect(await ok(['lease', 'revoke', id!, ...alice])).toBe(`lease ${id!} revoked\n`);
    expect(await ok(['lock', 'app/lock', ...alice, '--', process.execPath, '-e', 'process.stdout.write("held\\n")'])).toBe('held\n');
    expect(await dkv(['lock', 'aaa', ...alice, '--', process.execPath, '-e', ''])).toMatchObject({ code: 1, stderr: 'dkv lock: etcdserver: permission denied\n' });
  });

  it('authenticates again when the token is invalidated during a run', async () => {
    // The command under the lock changes alice's password (to the same one), which invalidates
    // her token: the Unlock and lease Revoke that follow are refused with "invalid auth token"
    // and must go through with a new one.
    const passwd = [bin, 'user', 'passwd', 'alice', '--new-user-password', alicePassword, ...root, '--endpoints', cluster.endpoint(0)];
    const r = await dkv(['lock', 'app/relock', ...alice, '--', process.execPath, ...passwd]);
    expect(r).toMatchObject({ code: 0, stdout: 'Password updated\n', stderr: '' });
    expect(await ok(['get', 'app/relock', '--prefix', '--count-only', ...alice])).toBe('0\n');
  });

  it('rejects bad command lines with exit 2 and the usage', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['user'], /^dkv user: user needs a subcommand/],
      [['user', 'add'], /^dkv user: user add command requires user name as its argument/],
      [['user', 'add', 'carol'], /^dkv user: no password for carol/],
      [['user', 'add', 'x', '--interactive=maybe'], /^dkv user: --interactive must be true or false/],
      [['role', 'grant-permission', 'app', 'delete', 'k'], /^dkv role: permission type must be read, write or readwrite/],
      [['role', 'grant-permission', 'app', 'read', 'a', 'b', '--prefix'], /^dkv role: unexpected endkey argument with --prefix flag/],
      [['role', 'grant-permission', 'app', 'read', 'a', '--prefix', '--from-key'], /^dkv role: --from-key and --prefix flags are mutually exclusive/],
      [['role', 'list', '--prefix'], /^dkv role: --prefix and --from-key apply to grant-permission and revoke-permission/],
      [['get', 'k', '--password', 'x'], /^dkv get: --password needs --user/],
      [['get', 'k', '--user', 'alice'], /^dkv get: dkv get --user alice: no password/],
      [['watch', 'k', '--user', ':pw'], /^dkv watch: --user: the user name is empty/],
    ];
    // None of these reaches the cluster: run them side by side.
    const results = await Promise.all(cases.map(([args]) => dkv(args)));
    for (const [i, [args, message]] of cases.entries()) {
      const r = results[i]!;
      expect(r.code, `dkv ${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toContain('Usage: dkv');
    }
  });

  it('documents the commands and --user in --help', async () => {
    // The remote commands share their --user text; counter has its own.
    const commands = ['user', 'role', 'auth', 'counter'];
    for (const help of await Promise.all(commands.map((command) => ok([command, '--help'])))) {
      expect(help).toContain('--user NAME[:PASSWORD]');
      expect(help).toContain('--password');
    }
    const top = await ok(['--help']);
    for (const line of ['user add|get|list|delete|passwd|grant-role|revoke-role', 'role add|get|list|delete|grant-permission|revoke-permission', 'auth enable|disable|status']) {
      expect(top).toContain(line);
    }
  });

  it('disables auth as root', async () => {
    expect(await dkv(['auth', 'disable', ...alice])).toMatchObject({ code: 1, stderr: 'dkv auth: etcdserver: permission denied\n' });
    expect(await ok(['auth', 'disable', ...root])).toBe('Authentication Disabled\n');
    // Auth is off: a --user still works (Authenticate's "not enabled" means: no token).
    expect(await ok(['get', 'app/k', ...alice])).toBe('app/k\nv1\n');
  });
});
