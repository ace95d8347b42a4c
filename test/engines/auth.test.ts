/**
 * The auth engine: etcd's rules for users, roles and permissions (server/auth/store.go), the auth
 * revision each change bumps, permission checks (a request's whole key range covered by the union
 * of the user's roles; checked against a brute-force model by fast-check), and the state in the
 * snapshot and the hash.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type ApplyContext,
  AuthEngine,
  type AuthOutcome,
  type EngineCommand,
  type KeyPermission,
  PermissionType,
  UserPermissions,
  authCommands as c,
  isValidPermissionRange,
} from '../../src/engines/index.js';
import { AuthCommandKind, AUTH_COMMAND_VERSION, IntervalSet, keyInterval } from '../../src/engines/auth/index.js';
import { EngineId } from '../../src/engines/engine.js';

const b = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));
const hash = b('scrypt$hash-bytes');
const context: ApplyContext = { index: 1, term: 1, nowMs: 0, proposer: 1, requestId: 1 };

function apply(engine: AuthEngine, command: EngineCommand): AuthOutcome {
  return engine.apply(command, context);
}

/** The refusal code, or 'ok'. */
function result(engine: AuthEngine, command: EngineCommand): string {
  const outcome = apply(engine, command);
  return outcome.kind === 'error' ? outcome.error.code : 'ok';
}

function withRoot(): AuthEngine {
  const engine = new AuthEngine();
  expect(result(engine, c.userAdd('root', hash, false))).toBe('ok');
  expect(result(engine, c.userGrantRole('root', 'root'))).toBe('ok');
  return engine;
}

describe('auth engine rules (etcd)', () => {
  it('auth cannot be enabled without a root user holding the root role', () => {
    const engine = new AuthEngine();
    expect(result(engine, c.enable())).toBe('root-user-not-exist');
    expect(result(engine, c.userAdd('root', hash, false))).toBe('ok');
    expect(result(engine, c.enable())).toBe('root-role-not-exist');
    // The root role needs no RoleAdd to be granted.
    expect(result(engine, c.userGrantRole('root', 'root'))).toBe('ok');
    expect(result(engine, c.enable())).toBe('ok');
    expect(engine.enabled).toBe(true);
    // Enabling twice is no error and no change.
    const revision = engine.revision;
    expect(result(engine, c.enable())).toBe('ok');
    expect(engine.revision).toBe(revision);
  });

  it('while enabled, root cannot be deleted, lose the root role, nor the root role be deleted', () => {
    const engine = withRoot();
    expect(result(engine, c.roleAdd('root'))).toBe('ok');
    expect(result(engine, c.enable())).toBe('ok');
    expect(result(engine, c.userDelete('root'))).toBe('invalid-auth-mgmt');
    expect(result(engine, c.userRevokeRole('root', 'root'))).toBe('invalid-auth-mgmt');
    expect(result(engine, c.roleDelete('root'))).toBe('invalid-auth-mgmt');
    expect(result(engine, c.disable())).toBe('ok');
    expect(result(engine, c.userRevokeRole('root', 'root'))).toBe('ok');
    expect(result(engine, c.roleDelete('root'))).toBe('ok');
    expect(result(engine, c.userDelete('root'))).toBe('ok');
  });

  it('users and roles: empty names, duplicates, missing ones, grants and revokes', () => {
    const engine = new AuthEngine();
    expect(result(engine, c.userAdd('', hash, false))).toBe('user-empty');
    expect(result(engine, c.roleAdd(''))).toBe('role-empty');
    expect(result(engine, c.userAdd('alice', hash, false))).toBe('ok');
    expect(result(engine, c.userAdd('alice', hash, false))).toBe('user-already-exists');
    expect(result(engine, c.roleAdd('reader'))).toBe('ok');
    expect(result(engine, c.roleAdd('reader'))).toBe('role-already-exists');
    expect(result(engine, c.userGrantRole('bob', 'reader'))).toBe('user-not-found');
    expect(result(engine, c.userGrantRole('alice', 'writer'))).toBe('role-not-found');
    expect(result(engine, c.userRevokeRole('alice', 'reader'))).toBe('role-not-granted');
    expect(result(engine, c.userGrantRole('alice', 'reader'))).toBe('ok');
    // A second grant of the same role changes nothing (no new revision).
    const revision = engine.revision;
    expect(result(engine, c.userGrantRole('alice', 'reader'))).toBe('ok');
    expect(engine.revision).toBe(revision);
    expect(engine.user('alice')?.roles).toEqual(['reader']);
    expect(result(engine, c.userDelete('bob'))).toBe('user-not-found');
    expect(result(engine, c.userChangePassword('bob', hash))).toBe('user-not-found');
    expect(result(engine, c.roleDelete('writer'))).toBe('role-not-found');
    expect(result(engine, c.roleRevokePermission('writer', b('a'), b('')))).toBe('role-not-found');
    expect(result(engine, c.roleRevokePermission('reader', b('a'), b('')))).toBe('permission-not-granted');
    // Deleting a role takes it from its users.
    expect(result(engine, c.roleDelete('reader'))).toBe('ok');
    expect(engine.user('alice')?.roles).toEqual([]);
  });

  it('lists are in byte order; the root role reports read-write on every key', () => {
    const engine = new AuthEngine();
    for (const name of ['b', 'a', 'B', 'é', 'aa']) expect(result(engine, c.userAdd(name, hash, false))).toBe('ok');
    expect(engine.userNames()).toEqual(['B', 'a', 'aa', 'b', 'é']);
    expect(result(engine, c.roleAdd('root'))).toBe('ok');
    expect(engine.role('root')?.permissions).toEqual([{ permType: PermissionType.ReadWrite, key: new Uint8Array(0), rangeEnd: new Uint8Array([0]) }]);
    expect(engine.roleNames()).toEqual(['root']);
  });

  it('a permission grant validates its range and replaces one on the same range', () => {
    const engine = new AuthEngine();
    expect(result(engine, c.roleAdd('r'))).toBe('ok');
    expect(result(engine, c.roleGrantPermission('r', { permType: PermissionType.Read, key: b(''), rangeEnd: b('') }))).toBe('invalid-auth-mgmt');
    expect(result(engine, c.roleGrantPermission('r', { permType: PermissionType.Read, key: b('b'), rangeEnd: b('a') }))).toBe('invalid-auth-mgmt');
    expect(result(engine, c.roleGrantPermission('r', { permType: PermissionType.Read, key: b('b'), rangeEnd: b('b') }))).toBe('invalid-auth-mgmt');
    expect(result(engine, c.roleGrantPermission('x', { permType: PermissionType.Read, key: b('a'), rangeEnd: b('') }))).toBe('role-not-found');
    expect(result(engine, c.roleGrantPermission('r', { permType: PermissionType.Read, key: b('k'), rangeEnd: b('\u0000') }))).toBe('ok');
    expect(result(engine, c.roleGrantPermission('r', { permType: PermissionType.Write, key: b('a'), rangeEnd: b('b') }))).toBe('ok');
    expect(result(engine, c.roleGrantPermission('r', { permType: PermissionType.ReadWrite, key: b('k'), rangeEnd: b('\u0000') }))).toBe('ok');
    expect(engine.role('r')?.permissions.map((p) => [Buffer.from(p.key).toString(), p.permType])).toEqual([
      ['a', PermissionType.Write],
      ['k', PermissionType.ReadWrite],
    ]);
    expect(result(engine, c.roleRevokePermission('r', b('k'), b('\u0000')))).toBe('ok');
    expect(engine.role('r')?.permissions).toHaveLength(1);
  });

  it('a user without a password keeps none, even when a password change names one', () => {
    const engine = new AuthEngine();
    expect(result(engine, c.userAdd('svc', new Uint8Array(0), true))).toBe('ok');
    expect(result(engine, c.userChangePassword('svc', hash))).toBe('ok');
    expect(engine.user('svc')?.passwordHash).toEqual(new Uint8Array(0));
    // A user with a password always has a hash.
    expect(result(engine, c.userAdd('p', new Uint8Array(0), false))).toBe('invalid-auth-mgmt');
  });

  it('every change bumps the revision, and a check made at an older one is refused', () => {
    const engine = withRoot();
    expect(result(engine, c.roleAdd('rw'))).toBe('ok');
    expect(result(engine, c.roleGrantPermission('rw', { permType: PermissionType.ReadWrite, key: b('app/'), rangeEnd: b('app0') }))).toBe('ok');
    expect(result(engine, c.userAdd('alice', hash, false))).toBe('ok');
    expect(result(engine, c.userGrantRole('alice', 'rw'))).toBe('ok');
    expect(result(engine, c.enable())).toBe('ok');
    const at = engine.revision;
    expect(engine.refusal('alice', at, b('app/x'), b(''), PermissionType.Write)).toBeUndefined();
    expect(engine.refusal('alice', at, b('other'), b(''), PermissionType.Read)?.code).toBe('permission-denied');
    expect(engine.refusal('', 0, b('app/x'), b(''), PermissionType.Read)?.code).toBe('user-empty');
    expect(engine.refusal('root', at, b('anything'), b('\u0000'), PermissionType.Write)).toBeUndefined();
    expect(result(engine, c.roleRevokePermission('rw', b('app/'), b('app0')))).toBe('ok');
    expect(engine.revision).toBe(at + 1);
    expect(engine.refusal('alice', at, b('app/x'), b(''), PermissionType.Write)?.code).toBe('auth-old-revision');
    expect(engine.refusal('alice', at + 1, b('app/x'), b(''), PermissionType.Write)?.code).toBe('permission-denied');
    // Admin calls: root only.
    expect(engine.adminRefusal('root')).toBeUndefined();
    expect(engine.adminRefusal('alice')?.code).toBe('permission-denied');
    expect(engine.adminRefusal('nobody')?.code).toBe('user-not-found');
    expect(engine.adminRefusal('')?.code).toBe('user-empty');
    // Disabled: nothing is refused (and disabling is a change).
    expect(result(engine, c.disable())).toBe('ok');
    expect(engine.refusal('alice', 1, b('other'), b(''), PermissionType.Write)).toBeUndefined();
    expect(engine.adminRefusal('alice')).toBeUndefined();
  });

  it('authenticate: only while enabled, only a user with a password, only at the current revision', () => {
    const engine = withRoot();
    expect(result(engine, c.authenticate('root', engine.revision))).toBe('auth-not-enabled');
    expect(result(engine, c.userAdd('svc', new Uint8Array(0), true))).toBe('ok');
    expect(result(engine, c.enable())).toBe('ok');
    expect(result(engine, c.authenticate('nobody', engine.revision))).toBe('auth-failed');
    expect(result(engine, c.authenticate('svc', engine.revision))).toBe('auth-failed');
    expect(result(engine, c.authenticate('root', engine.revision - 1))).toBe('auth-old-revision');
    expect(apply(engine, c.authenticate('root', engine.revision))).toEqual({ kind: 'authenticated', name: 'root', revision: engine.revision });
  });

  it('a malformed command is a refusal on every replica, an unknown kind stops the node', () => {
    const engine = new AuthEngine();
    const raw = (kind: number, text: string): EngineCommand => ({ engine: EngineId.Auth, version: AUTH_COMMAND_VERSION, kind, payload: new TextEncoder().encode(text) });
    expect(result(engine, raw(AuthCommandKind.UserAdd, 'not json'))).toBe('invalid-auth-mgmt');
    expect(result(engine, raw(AuthCommandKind.UserAdd, '[]'))).toBe('invalid-auth-mgmt');
    expect(result(engine, raw(AuthCommandKind.UserAdd, '{"name":1,"passwordHash":"","noPassword":true}'))).toBe('invalid-auth-mgmt');
    expect(result(engine, raw(AuthCommandKind.RoleGrantPermission, '{"name":"r","permType":7,"key":"YQ==","rangeEnd":""}'))).toBe('invalid-auth-mgmt');
    expect(engine.revision).toBe(1);
    expect(() => apply(engine, raw(99, '{}'))).toThrow(/unknown auth command kind 99/);
  });
});

describe('auth engine snapshot and hash', () => {
  it('restores the same state, hash and checks; the empty snapshot is the empty state', () => {
    const engine = withRoot();
    apply(engine, c.roleAdd('rw'));
    apply(engine, c.roleGrantPermission('rw', { permType: PermissionType.Read, key: b('a'), rangeEnd: b('\u0000') }));
    apply(engine, c.userAdd('alice', hash, false));
    apply(engine, c.userGrantRole('alice', 'rw'));
    apply(engine, c.userAdd('svc', new Uint8Array(0), true));
    apply(engine, c.enable());
    const chunks = [...{ [Symbol.iterator]: () => engine.snapshot() }];
    const copy = new AuthEngine();
    copy.restore(chunks);
    expect(copy.hash()).toBe(engine.hash());
    expect(copy.enabled).toBe(true);
    expect(copy.revision).toBe(engine.revision);
    expect(copy.user('alice')).toEqual(engine.user('alice'));
    expect(copy.refusal('alice', copy.revision, b('zz'), b(''), PermissionType.Read)).toBeUndefined();
    expect(copy.refusal('alice', copy.revision, b('zz'), b(''), PermissionType.Write)?.code).toBe('permission-denied');
    // A change shows in the hash.
    apply(copy, c.userDelete('svc'));
    expect(copy.hash()).not.toBe(engine.hash());
    copy.restore([]);
    expect(copy.hash()).toBe(new AuthEngine().hash());
  });

  it('a damaged section fails the restore', () => {
    const engine = new AuthEngine();
    expect(() => engine.restore([new TextEncoder().encode('{"enabled":true}')])).toThrow(/auth snapshot section/);
    expect(() => engine.restore([new TextEncoder().encode('{nope')])).toThrow();
  });

  it('the same commands give the same hash (apply is deterministic)', () => {
    fc.assert(
      fc.property(fc.array(commandArbitrary(), { maxLength: 30 }), (commands) => {
        const one = new AuthEngine();
        const two = new AuthEngine();
        for (const command of commands) {
          expect(apply(one, command)).toEqual(apply(two, command));
        }
        expect(one.hash()).toBe(two.hash());
        const restored = new AuthEngine();
        restored.restore([...{ [Symbol.iterator]: () => one.snapshot() }]);
        expect(restored.hash()).toBe(one.hash());
      }),
      { numRuns: 200 },
    );
  });
});

// ---- Permission checks against a brute-force model -------------------------------------------

/** Keys over a small alphabet, so ranges and points collide often. */
const keyArb = fc.array(fc.constantFrom(0, 1, 2, 0x61), { minLength: 0, maxLength: 3 }).map((a) => new Uint8Array(a));
const permissionArb: fc.Arbitrary<KeyPermission> = fc
  .record({ permType: fc.constantFrom(PermissionType.Read, PermissionType.Write, PermissionType.ReadWrite), key: keyArb, end: fc.oneof(keyArb, fc.constant(new Uint8Array([0])), fc.constant(new Uint8Array(0))) })
  .filter(({ key, end }) => isValidPermissionRange(key, end))
  .map(({ permType, key, end }) => ({ permType, key, rangeEnd: end }));

function commandArbitrary(): fc.Arbitrary<EngineCommand> {
  const name = fc.constantFrom('root', 'alice', 'bob', '');
  const role = fc.constantFrom('root', 'r1', 'r2', '');
  return fc.oneof(
    fc.constant(c.enable()),
    fc.constant(c.disable()),
    fc.tuple(name, fc.boolean()).map(([n, noPassword]) => c.userAdd(n, noPassword ? new Uint8Array(0) : hash, noPassword)),
    name.map((n) => c.userDelete(n)),
    name.map((n) => c.userChangePassword(n, hash)),
    fc.tuple(name, role).map(([n, r]) => c.userGrantRole(n, r)),
    fc.tuple(name, role).map(([n, r]) => c.userRevokeRole(n, r)),
    role.map((r) => c.roleAdd(r)),
    role.map((r) => c.roleDelete(r)),
    fc.tuple(role, permissionArb).map(([r, p]) => c.roleGrantPermission(r, p)),
    fc.tuple(role, permissionArb).map(([r, p]) => c.roleRevokePermission(r, p.key, p.rangeEnd)),
    fc.tuple(name, fc.integer({ min: 0, max: 40 })).map(([n, rev]) => c.authenticate(n, rev)),
  );
}

const cmp = (a: Uint8Array, x: Uint8Array): number => Buffer.compare(Buffer.from(a), Buffer.from(x));

/** Every key of up to 4 bytes over the alphabet: every end of a permission or request interval is one. */
const universe: Uint8Array[] = (() => {
  const out: Uint8Array[] = [new Uint8Array(0)];
  let layer: Uint8Array[] = [new Uint8Array(0)];
  for (let depth = 0; depth < 4; depth++) {
    layer = layer.flatMap((k) => [0, 1, 2, 0x61].map((c2) => new Uint8Array([...k, c2])));
    out.push(...layer);
  }
  return out;
})();

/** Whether `k` is named by key/rangeEnd, read as etcd reads a permission. */
function inRange(k: Uint8Array, key: Uint8Array, rangeEnd: Uint8Array): boolean {
  if (rangeEnd.length === 0) return cmp(k, key) === 0;
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return cmp(k, key) >= 0;
  return cmp(k, key) >= 0 && cmp(k, rangeEnd) < 0;
}

describe('permission checks', () => {
  it('a request is permitted exactly when every key it names is in some permission of the type (model check)', () => {
    fc.assert(
      fc.property(fc.array(permissionArb, { maxLength: 6 }), keyArb.filter((k) => k.length > 0), fc.oneof(keyArb, fc.constant(new Uint8Array([0]))), fc.constantFrom(PermissionType.Read, PermissionType.Write), (perms, key, rangeEnd, type) => {
        const user = UserPermissions.of(perms);
        const allowed = perms.filter((p) => p.permType === PermissionType.ReadWrite || p.permType === type);
        // The request names key..rangeEnd; an empty or inverted range names the key alone.
        const interval = keyInterval(key, rangeEnd);
        const named = universe.filter((k) => cmp(k, interval.begin) >= 0 && (interval.end === undefined || cmp(k, interval.end) < 0));
        const model = named.every((k) => allowed.some((p) => inRange(k, p.key, p.rangeEnd)));
        // Exact although the universe stops at 4 bytes: every interval's ends are such keys, so a
        // gap in the union, or the end of a union that stops, is a key of the universe.
        expect(user.permits(key, rangeEnd, type)).toBe(model);
      }),
      { numRuns: 2000 },
    );
  });

  it('merges touching and overlapping intervals, and a point needs only one', () => {
    const set = IntervalSet.of([keyInterval(b('a'), b('c')), keyInterval(b('c'), b('e')), keyInterval(b('b'), b('d')), keyInterval(b('x'), b(''))]);
    expect(set.size).toBe(2);
    expect(set.covers(keyInterval(b('a'), b('e')))).toBe(true);
    expect(set.covers(keyInterval(b('a'), b('e\u0000')))).toBe(false);
    expect(set.covers(keyInterval(b('x'), b('')))).toBe(true);
    expect(set.covers(keyInterval(b('x'), b('\u0000')))).toBe(false);
    expect(IntervalSet.of([keyInterval(b('m'), b('\u0000'))]).covers(keyInterval(b('z'), b('\u0000')))).toBe(true);
    expect(IntervalSet.empty.covers(keyInterval(b('a'), b('')))).toBe(false);
  });
});
