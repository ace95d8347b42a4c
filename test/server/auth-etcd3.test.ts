/**
 * etcd's Auth API through the `etcd3` npm client (microsoft/etcd3) against a real 3-node DKV
 * cluster: the ground of the client's own role and auth tests (src/test/roles.test.ts and the
 * watch test whose fixture creates users), written anew here and widened: users with and without a
 * password, roles with key, range and prefix permissions of each type, auth enable and disable,
 * clients with `auth: { username, password }` doing allowed and refused KV, Txn, watch and lease
 * calls, and the typed errors the client maps from etcd's error strings.
 *
 * One cluster serves the whole file and auth is cluster-wide state, so the describes run in
 * order and each leaves auth disabled with no users and no roles.
 */
import type * as grpc from '@grpc/grpc-js';
import {
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdPermissionDeniedError,
  EtcdRoleExistsError,
  EtcdRoleNotFoundError,
  EtcdRoleNotGrantedError,
  EtcdUserExistsError,
  EtcdUserNotFoundError,
  GRPCDeadlineExceededError,
  GRPCFailedPreconditionError,
  GRPCInvalidArgumentError,
  type IOptions,
  type IPermissionResult,
  Range,
} from 'etcd3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, waitUntil } from './cluster-harness.js';

let cluster: TestCluster;
/** A client without credentials: manages users and roles while auth is disabled. */
let admin: Etcd3;
/** Every client a test opened, closed after it. */
const opened: Etcd3[] = [];

const connect = (options: Partial<IOptions> = {}): Etcd3 => {
  const client = new Etcd3({ hosts: cluster.nodes.map((n) => n.clientUrl), dialTimeout: 5000, ...options });
  opened.push(client);
  return client;
};
const as = (username: string, password: string, options: Partial<IOptions> = {}): Etcd3 => connect({ auth: { username, password }, ...options });

/** The error a promise rejects with (fails the test if it resolves). */
async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a rejection');
}

/** A permission as plain strings, to compare with toEqual. */
const plain = (p: IPermissionResult) => ({ permission: p.permission, start: p.range.start.toString(), end: p.range.end.toString() });

async function wipeUsersAndRoles(client: Etcd3): Promise<void> {
  for (const user of await client.getUsers()) await user.delete();
  for (const role of await client.getRoles()) await role.delete();
}

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
  admin = new Etcd3({ hosts: cluster.nodes.map((n) => n.clientUrl), dialTimeout: 5000 });
}, 60_000);

afterEach(() => {
  for (const client of opened.splice(0)) client.close();
});

afterAll(async () => {
  admin?.close();
  await cluster?.stop();
});

describe('users (auth disabled)', () => {
  afterEach(() => wipeUsersAndRoles(admin));

  it('creates users with a password, lists, gets their roles and deletes them', async () => {
    expect(await admin.getUsers()).toEqual([]);
    const connor = await admin.user('connor').create('password');
    await admin.user('alice').create('secret');
    expect((await admin.getUsers()).map((u) => u.name).sort()).toEqual(['alice', 'connor']);
    expect(await connor.roles()).toEqual([]);
    await connor.delete();
    expect((await admin.getUsers()).map((u) => u.name)).toEqual(['alice']);
  });

  it('creates a user without a password (UserAddOptions.no_password), who cannot authenticate by password', async () => {
    await admin.auth.userAdd({ name: 'nopass', options: { no_password: true } });
    expect((await admin.getUsers()).map((u) => u.name)).toEqual(['nopass']);
    expect(await admin.user('nopass').roles()).toEqual([]);
    // Shown once auth is on (Authenticate needs it): see 'password auth' below.
  });

  it('maps the user errors: exists, not found, role not found, role not granted', async () => {
    const connor = await admin.user('connor').create('password');
    const exists = await rejection(admin.user('connor').create('password'));
    expect(exists).toBeInstanceOf(EtcdUserExistsError);
    expect(exists.message).toContain('etcdserver: user name already exists');
    expect(await rejection(admin.user('nobody').delete())).toBeInstanceOf(EtcdUserNotFoundError);
    expect(await rejection(admin.user('nobody').roles())).toBeInstanceOf(EtcdUserNotFoundError);
    expect(await rejection(admin.user('nobody').setPassword('x'))).toBeInstanceOf(EtcdUserNotFoundError);
    expect(await rejection(connor.addRole('wut'))).toBeInstanceOf(EtcdRoleNotFoundError);
    await admin.role('foo').create();
    expect(await rejection(connor.removeRole('foo'))).toBeInstanceOf(EtcdRoleNotGrantedError);
    expect(await rejection(admin.user('nobody').addRole('foo'))).toBeInstanceOf(EtcdUserNotFoundError);
  });

  it('grants and revokes roles, from the user side and from the role side', async () => {
    const connor = await admin.user('connor').create('password');
    const foo = await admin.role('foo').create();
    const bar = await admin.role('bar').create();
    await connor.addRole(foo);
    await bar.addUser('connor');
    expect((await connor.roles()).map((r) => r.name).sort()).toEqual(['bar', 'foo']);
    await connor.removeRole('bar');
    expect((await connor.roles()).map((r) => r.name)).toEqual(['foo']);
    await foo.removeUser(connor);
    expect(await connor.roles()).toEqual([]);
    // Deleting a role takes it from its users.
    await connor.addRole(bar);
    await bar.delete();
    expect(await connor.roles()).toEqual([]);
  });
});

describe('roles (auth disabled)', () => {
  afterEach(() => wipeUsersAndRoles(admin));

  it('creates, lists and deletes roles', async () => {
    expect(await admin.getRoles()).toEqual([]);
    const foo = await admin.role('foo').create();
    await admin.role('bar').create();
    expect((await admin.getRoles()).map((r) => r.name)).toEqual(['bar', 'foo']);
    await foo.delete();
    expect((await admin.getRoles()).map((r) => r.name)).toEqual(['bar']);
  });

  it('maps the role errors: exists, not found on delete, grant, revoke and get', async () => {
    await admin.role('foo').create();
    const exists = await rejection(admin.role('foo').create());
    expect(exists).toBeInstanceOf(EtcdRoleExistsError);
    expect(exists.message).toContain('etcdserver: role name already exists');
    expect(await rejection(admin.role('nope').delete())).toBeInstanceOf(EtcdRoleNotFoundError);
    expect(await rejection(admin.role('nope').permissions())).toBeInstanceOf(EtcdRoleNotFoundError);
    expect(await rejection(admin.role('nope').grant({ permission: 'Read', range: admin.range({ prefix: '111' }) }))).toBeInstanceOf(EtcdRoleNotFoundError);
    expect(await rejection(admin.role('nope').revoke({ permission: 'Read', key: 'k' }))).toBeInstanceOf(EtcdRoleNotFoundError);
  });

  // Regression (found by this suite): a single-key permission has no range_end on the wire, and
  // RoleGrantPermission and RoleRevokePermission answered it with 'dkv: internal error'.
  it('grants a key, a range and a prefix as Read, Write and Readwrite, and round-trips them', async () => {
    const role = await admin.role('perms').create();
    await role.grant([
      { permission: 'Read', key: 'key' },
      { permission: 'Write', range: new Range('a', 'c') },
      { permission: 'Readwrite', range: admin.range({ prefix: 'p/' }) },
    ]);
    expect((await role.permissions()).map(plain)).toEqual([
      { permission: 'Write', start: 'a', end: 'c' },
      { permission: 'Read', start: 'key', end: '' },
      { permission: 'Readwrite', start: 'p/', end: 'p0' },
    ]);
    // Granting the same key again with another type replaces the type (etcd's rule).
    await role.grant({ permission: 'Readwrite', key: 'key' });
    expect((await role.permissions()).map(plain)).toContainEqual({ permission: 'Readwrite', start: 'key', end: '' });

    const perms = await role.permissions();
    await role.revoke(perms[0]!.range.end.length === 0 ? { permission: perms[0]!.permission, key: perms[0]!.range.start } : perms[0]!);
    await role.revoke({ permission: 'Read', key: 'key' });
    await role.revoke({ permission: 'Read', range: admin.range({ prefix: 'p/' }) });
    expect(await role.permissions()).toEqual([]);
  });

  it('refuses revoking a permission the role does not hold', async () => {
    const role = await admin.role('perms').create();
    await role.grant({ permission: 'Read', range: admin.range({ prefix: 'x/' }) });
    const error = await rejection(role.revoke({ permission: 'Read', key: 'x/' }));
    expect(error).toBeInstanceOf(GRPCFailedPreconditionError);
    expect(error.message).toContain('etcdserver: permission is not granted to the role');
    expect((await role.permissions()).map(plain)).toEqual([{ permission: 'Read', start: 'x/', end: 'x0' }]);
  });
});

/**
 * The client suite's fixture (util.ts setupAuth), plus a read-only and a write-only user: root
 * (root role), connor (readwrite on the prefix `f`), reader (read on the prefix `r/`), writer
 * (write on the key `w`), nopass (no password, readwrite on `f`); then auth enabled.
 */
async function setupAuth(): Promise<Etcd3> {
  await wipeUsersAndRoles(admin);
  await (await admin.user('root').create('password')).addRole('root');
  await admin.user('connor').create('password');
  await admin.user('reader').create('password');
  await admin.user('writer').create('password');
  await admin.auth.userAdd({ name: 'nopass', options: { no_password: true } });
  const rw = await admin.role('rw_prefix_f').create();
  await rw.grant({ permission: 'Readwrite', range: admin.range({ prefix: 'f' }) });
  await rw.addUser('connor');
  await rw.addUser('nopass');
  await (await admin.role('r_prefix_r').create()).grant({ permission: 'Read', range: admin.range({ prefix: 'r/' }) });
  await admin.user('reader').addRole('r_prefix_r');
  await (await admin.role('w_key_w').create()).grant({ permission: 'Write', key: 'w' });
  await admin.user('writer').addRole('w_key_w');
  await admin.put('r/seed').value('1');
  await admin.put('outside').value('1');
  await admin.auth.authEnable();
  return new Etcd3({ hosts: cluster.nodes.map((n) => n.clientUrl), dialTimeout: 5000, auth: { username: 'root', password: 'password' } });
}

/** Disables auth as root (the client suite's removeAuth), then wipes users, roles and keys. */
async function removeAuth(root: Etcd3): Promise<void> {
  await root.auth.authDisable();
  root.close();
  await wipeUsersAndRoles(admin);
  await admin.delete().all();
}

describe('auth enable and disable through the client', () => {
  afterEach(() => wipeUsersAndRoles(admin));

  it('refuses enabling auth without a root user, or with a root user lacking the root role', async () => {
    const noRoot = await rejection(admin.auth.authEnable());
    expect(noRoot).toBeInstanceOf(GRPCFailedPreconditionError);
    expect(noRoot.message).toContain('etcdserver: root user does not exist');
    await admin.user('root').create('password');
    const noRole = await rejection(admin.auth.authEnable());
    expect(noRole.message).toContain('etcdserver: root user does not have root role');
    expect((await admin.auth.authStatus()).enabled).toBe(false);
  });

  it('enables auth, which a client without credentials then feels, and root disables it', async () => {
    const root = await setupAuth();
    try {
      expect((await admin.auth.authStatus()).enabled).toBe(true);
      // etcd: a request without a token once auth is on has no user ("user name is empty").
      const anonymous = await rejection(admin.get('f1').string());
      expect(anonymous).toBeInstanceOf(GRPCInvalidArgumentError);
      expect(anonymous.message).toContain('etcdserver: user name is empty');
      expect(await rejection(admin.getUsers())).toBeInstanceOf(GRPCInvalidArgumentError);
      // Enabling again is no error (etcd: a no-op).
      await root.auth.authEnable();
      // Only root may disable it.
      const connor = as('connor', 'password');
      expect(await rejection(connor.auth.authDisable())).toBeInstanceOf(EtcdPermissionDeniedError);
    } finally {
      await removeAuth(root);
    }
    expect((await admin.auth.authStatus()).enabled).toBe(false);
    await admin.put('f1').value('anyone');
    expect(await admin.get('f1').string()).toBe('anyone');
  });
});

describe('password auth (the client suite: roles.test.ts "password auth")', () => {
  let root: Etcd3;
  beforeAll(async () => {
    root = await setupAuth();
  }, 30_000);
  afterAll(async () => {
    await removeAuth(root);
  });

  it('authenticates with the correct credentials and writes and reads its prefix', async () => {
    const connor = as('connor', 'password');
    await connor.put('foo').value('bar');
    expect(await connor.get('foo').string()).toBe('bar');
    expect(await root.get('foo').string()).toBe('bar');
  });

  it('applies the auth call options (a deadline in the past)', async () => {
    const connor = as('connor', 'password', { auth: { username: 'connor', password: 'password', callOptions: { deadline: new Date(0) } } });
    expect(await rejection(connor.put('foo').value('bar').exec())).toBeInstanceOf(GRPCDeadlineExceededError);
  });

  it('throws EtcdAuthenticationFailedError on a wrong password, an unknown user and a user without a password', async () => {
    for (const [user, password] of [['connor', 'bad password'], ['ghost', 'password'], ['nopass', 'anything']] as const) {
      const error = await rejection(as(user, password).put('foo').value('bar').exec());
      expect(error, `${user}`).toBeInstanceOf(EtcdAuthenticationFailedError);
      expect(error.message).toContain('etcdserver: authentication failed, invalid user ID or password');
    }
  });

  it('a token refused as invalid ("etcdserver: invalid auth token") makes the client sign in again', async () => {
    const connor = as('connor', 'password');
    await connor.put('f/first').value('1');
    // The client's own test does this: swap the cached token for garbage, through its internals.
    // The client drops its token only on EtcdInvalidAuthTokenError, which it maps from etcd's
    // exact message, so counting the drops shows the server's refusal was that error.
    const authenticator = (connor as unknown as { pool: { authenticator: { awaitingMetadata: Promise<grpc.Metadata>; invalidateMetadata: () => void } } }).pool.authenticator;
    const bad = (await authenticator.awaitingMetadata).clone();
    bad.set('token', 'lol');
    authenticator.awaitingMetadata = Promise.resolve(bad);
    const invalidate = authenticator.invalidateMetadata.bind(authenticator);
    let invalidated = 0;
    authenticator.invalidateMetadata = () => {
      invalidated++;
      invalidate();
    };
    await connor.put('f/second').value('2');
    expect(invalidated).toBe(1);
    expect((await authenticator.awaitingMetadata).get('token')).not.toEqual(['lol']);
    expect(await root.get('f/second').string()).toBe('2');
  });

  it('refuses keys outside the user\'s range with EtcdPermissionDeniedError: Put, Range, Delete', async () => {
    const connor = as('connor', 'password');
    const put = await rejection(connor.put('wut').value('bar').exec());
    expect(put).toBeInstanceOf(EtcdPermissionDeniedError);
    expect(put.message).toContain('etcdserver: permission denied');
    expect(await rejection(connor.get('outside').string())).toBeInstanceOf(EtcdPermissionDeniedError);
    expect(await rejection(connor.getAll().strings())).toBeInstanceOf(EtcdPermissionDeniedError);
    expect(await rejection(connor.delete().key('outside').exec())).toBeInstanceOf(EtcdPermissionDeniedError);
    expect(await root.get('outside').string()).toBe('1');
    // Inside the prefix all three work.
    await connor.put('f/x').value('1');
    expect(await connor.getAll().prefix('f/x').keys()).toEqual(['f/x']);
    expect(Number((await connor.delete().key('f/x').exec()).deleted)).toBe(1);
  });

  it('a read-only user reads its prefix and nothing wider, and writes nothing', async () => {
    const reader = as('reader', 'password');
    expect(await reader.get('r/seed').string()).toBe('1');
    expect(await reader.getAll().prefix('r/').keys()).toEqual(['r/seed']);
    expect(await rejection(reader.getAll().prefix('r').keys())).toBeInstanceOf(EtcdPermissionDeniedError);
    expect(await rejection(reader.put('r/seed').value('2').exec())).toBeInstanceOf(EtcdPermissionDeniedError);
    expect(await rejection(reader.delete().key('r/seed').exec())).toBeInstanceOf(EtcdPermissionDeniedError);
    expect(await root.get('r/seed').string()).toBe('1');
  });

  it('a write-only user writes its key but reads nothing, not even its previous value', async () => {
    const writer = as('writer', 'password');
    await writer.put('w').value('1');
    expect(await rejection(writer.get('w').string())).toBeInstanceOf(EtcdPermissionDeniedError);
    // prev_kv reads the old value: etcd needs read permission for it.
    expect(await rejection(writer.put('w').value('2').getPrevious())).toBeInstanceOf(EtcdPermissionDeniedError);
    expect(await rejection(writer.delete().key('w').getPrevious())).toBeInstanceOf(EtcdPermissionDeniedError);
    expect(await root.get('w').string()).toBe('1');
    expect(Number((await writer.delete().key('w').exec()).deleted)).toBe(1);
  });

  it('Txn: allowed when every compare and every op of both branches is permitted, refused otherwise', async () => {
    const connor = as('connor', 'password');
    const ok = await connor.if('f/t', 'Create', '==', 0).then(connor.put('f/t').value('1')).else(connor.get('f/t')).commit();
    expect(ok.succeeded).toBe(true);
    expect(await connor.get('f/t').string()).toBe('1');
    // The else branch touches a key outside the prefix: refused though the then branch would run.
    const elseOutside = connor.if('f/t', 'Value', '==', '1').then(connor.put('f/t').value('2')).else(connor.put('outside').value('2')).commit();
    expect(await rejection(elseOutside)).toBeInstanceOf(EtcdPermissionDeniedError);
    const compareOutside = connor.if('outside', 'Value', '==', '1').then(connor.put('f/t').value('3')).commit();
    expect(await rejection(compareOutside)).toBeInstanceOf(EtcdPermissionDeniedError);
    expect(await connor.get('f/t').string()).toBe('1');
    expect(await root.get('outside').string()).toBe('1');
  });

  it('management calls are root only: a user gets EtcdPermissionDeniedError, root succeeds', async () => {
    const connor = as('connor', 'password');
    expect(await rejection(connor.getUsers())).toBeInstanceOf(EtcdPermissionDeniedError);
    expect(await rejection(connor.getRoles())).toBeInstanceOf(EtcdPermissionDeniedError);
    expect(await rejection(connor.user('mallory').create('x'))).toBeInstanceOf(EtcdPermissionDeniedError);
    expect(await rejection(connor.role('rw_prefix_f').grant({ permission: 'Readwrite', key: 'outside' }))).toBeInstanceOf(EtcdPermissionDeniedError);
    expect((await root.getUsers()).map((u) => u.name).sort()).toEqual(['connor', 'nopass', 'reader', 'root', 'writer']);
    expect((await root.getRoles()).map((r) => r.name)).toEqual(['r_prefix_r', 'rw_prefix_f', 'w_key_w']);
  });

  it('a permission granted or revoked by root takes effect for a client already signed in', async () => {
    const connor = as('connor', 'password');
    expect(await rejection(connor.put('g/1').value('1').exec())).toBeInstanceOf(EtcdPermissionDeniedError);
    const role = root.role('rw_prefix_f');
    await role.grant({ permission: 'Write', range: root.range({ prefix: 'g/' }) });
    await connor.put('g/1').value('1');
    await role.revoke({ permission: 'Write', range: root.range({ prefix: 'g/' }) });
    expect(await rejection(connor.put('g/1').value('2').exec())).toBeInstanceOf(EtcdPermissionDeniedError);
    expect(await root.get('g/1').string()).toBe('1');
  });

  it('changes a password: the new one signs in, the old one fails', async () => {
    await root.user('reader').setPassword('new password');
    expect(await as('reader', 'new password').get('r/seed').string()).toBe('1');
    expect(await rejection(as('reader', 'password').get('r/seed').string())).toBeInstanceOf(EtcdAuthenticationFailedError);
    await root.user('reader').setPassword('password');
  });

  it('a deleted user\'s client is refused', async () => {
    await root.user('temp').create('password');
    await root.user('temp').addRole('rw_prefix_f');
    const temp = as('temp', 'password');
    await temp.put('f/temp').value('1');
    await root.user('temp').delete();
    const error = await rejection(temp.put('f/temp').value('2').exec());
    // etcd 3.4: the user's simple token is dropped with the user, so the call's token is invalid
    // and the client signs in again, which fails.
    expect(error).toBeInstanceOf(EtcdAuthenticationFailedError);
  });
});

describe('watch with a user (the client suite: watch.test.ts "permission denied")', () => {
  let root: Etcd3;
  beforeAll(async () => {
    root = await setupAuth();
  }, 30_000);
  afterAll(async () => {
    await removeAuth(root);
  });

  it('watches a key inside its range and receives the puts', async () => {
    const connor = as('connor', 'password');
    const watcher = await connor.watch().prefix('f/w/').create();
    const seen: string[] = [];
    watcher.on('put', (kv) => seen.push(`${kv.key.toString()}=${kv.value.toString()}`));
    await root.put('f/w/1').value('a');
    await connor.put('f/w/2').value('b');
    await waitUntil(() => seen.length === 2, 10_000, () => `two puts, saw ${JSON.stringify(seen)}`);
    expect(seen).toEqual(['f/w/1=a', 'f/w/2=b']);
    await watcher.cancel();
  });

  it('a watch outside its range is canceled at creation with etcd\'s PermissionDenied reason', async () => {
    const connor = as('connor', 'password');
    const error = await rejection(connor.watch().key('outside of range').create());
    expect(error).toBeInstanceOf(EtcdPermissionDeniedError);
    expect(error.message).toBe('Watcher canceled: rpc error: code = PermissionDenied desc = etcdserver: permission denied');
    // A read-only user may watch; a write-only one may not.
    const reader = await as('reader', 'password').watch().prefix('r/').create();
    await reader.cancel();
    expect(await rejection(as('writer', 'password').watch().key('w').create())).toBeInstanceOf(EtcdPermissionDeniedError);
  });

  // DKV checks a watcher's read permission again once the auth state changed (src/server/
  // watch-service.ts), and cancels it with the same reason. Keep last: connor loses his role.
  it('a watcher whose user lost read permission is canceled with the PermissionDenied reason', async () => {
    const connor = as('connor', 'password');
    const watcher = await connor.watch().prefix('f/lost/').create();
    const errors: Error[] = [];
    watcher.on('error', (error: Error) => errors.push(error));
    await root.user('connor').removeRole('rw_prefix_f');
    // The check runs when an event is due; the role's removal reaches the watcher's member by its
    // own log, so keep writing until the watcher is canceled.
    let written = 0;
    await waitUntil(async () => {
      if (errors.length > 0) return true;
      await root.put(`f/lost/${written++}`).value('x');
      return false;
    }, 10_000, () => `the watcher canceled after ${written} puts`);
    expect(errors[0]).toBeInstanceOf(EtcdPermissionDeniedError);
    expect(errors[0]!.message).toBe('Watcher canceled: rpc error: code = PermissionDenied desc = etcdserver: permission denied');
  });
});

describe('leases with a user', () => {
  let root: Etcd3;
  beforeAll(async () => {
    root = await setupAuth();
  }, 30_000);
  afterAll(async () => {
    await removeAuth(root);
  });

  it('grants a lease, attaches its keys, and revokes it, which deletes them', async () => {
    const connor = as('connor', 'password');
    const lease = connor.lease(30, { autoKeepAlive: false });
    const id = await lease.grant();
    expect(BigInt(id)).toBeGreaterThan(0n);
    await lease.put('f/leased').value('1');
    expect((await root.get('f/leased').exec()).kvs[0]?.lease).toBe(id);
    expect(await rejection(lease.put('outside-leased').value('1').exec())).toBeInstanceOf(EtcdPermissionDeniedError);
    await lease.revoke();
    expect(await root.get('f/leased').string()).toBeNull();
  });

  it('refuses revoking a lease that holds a key the user may not write', async () => {
    const connor = as('connor', 'password');
    const granted = await connor.leaseClient.leaseGrant({ TTL: 30 });
    await root.put('outside-leased').value('1').lease(granted.ID);
    expect(await rejection(connor.leaseClient.leaseRevoke({ ID: granted.ID }))).toBeInstanceOf(EtcdPermissionDeniedError);
    expect(await root.get('outside-leased').string()).toBe('1');
    await root.leaseClient.leaseRevoke({ ID: granted.ID });
    expect(await root.get('outside-leased').string()).toBeNull();
  });
});
