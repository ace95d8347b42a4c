/**
 * The auth engine: etcd's authentication state as replicated state — whether auth is enabled, the
 * auth revision, users (a password hash, or none for a user added with no password, and granted
 * roles) and roles (key permissions) — with etcd's rules for changing it (server/auth/store.go):
 *  - auth cannot be enabled without a `root` user that has the `root` role; while it is enabled,
 *    the root user cannot be deleted nor lose the root role, and the root role cannot be deleted;
 *  - the root role needs no RoleAdd to be granted, and grants every key (`rootPermission`);
 *  - every change bumps the auth revision, except enabling auth and a grant that changes nothing;
 *    a request checked at an older revision is refused (`auth-old-revision`), so a permission
 *    revoked at apply time is never used after it;
 *  - deleting a role takes it from every user that has it.
 * Passwords arrive hashed (the server hashes them before proposing; nothing in the log or a
 * snapshot is a clear password), and the engine only stores the hash.
 *
 * Commands are JSON (byte fields in base64), like the meta engine's: few, small and rare. A
 * malformed command is a deterministic refusal (`invalid-auth-mgmt`), as every replica sees the
 * same bytes. The snapshot section and the hash cover the whole state; tokens are not state (the
 * server keeps them).
 */
import { compareBytes, crc32c } from '../../../storage/index.js';
import { type ApplyContext, type Engine, type EngineCommand, EngineError, EngineId, UnknownCommandError } from '../engine.js';
import { type KeyPermission, type PermissionType, UserPermissions, isPermissionType, isValidPermissionRange, rootPermission } from './permissions.js';
import { PermissionType as Perm } from './permissions.js';

/** etcd's root user and role names. */
export const ROOT = 'root';

/** The auth engine's operation codes (in every auth log entry: never renumber). */
export const AuthCommandKind = {
  Enable: 1,
  Disable: 2,
  UserAdd: 3,
  UserDelete: 4,
  UserChangePassword: 5,
  UserGrantRole: 6,
  UserRevokeRole: 7,
  RoleAdd: 8,
  RoleDelete: 9,
  RoleGrantPermission: 10,
  RoleRevokePermission: 11,
  /** A password checked by the server at an auth revision: refused if the state changed since. */
  Authenticate: 12,
} as const;

/** The auth command format this build writes and applies. */
export const AUTH_COMMAND_VERSION = 1;
/**
 * The longest simple-token prefix an Authenticate command may carry (the server makes 16 letters:
 * src/server/auth/limits.ts); anything else is refused where it applies.
 */
export const tokenPrefixLettersMax = 64;
const tokenPrefixPattern = new RegExp(`^[A-Za-z]{1,${tokenPrefixLettersMax}}$`);

export interface AuthUser {
  readonly name: string;
  /** The stored password hash (empty for a user with no password). */
  readonly passwordHash: Uint8Array;
  readonly noPassword: boolean;
  /** Granted role names, in byte order. */
  readonly roles: readonly string[];
}

export interface AuthRole {
  readonly name: string;
  /** In (key, range end) byte order. */
  readonly permissions: readonly KeyPermission[];
}

/** A change applied (with the auth revision after it), or a successful Authenticate. */
export type AuthOutcome =
  | {
      readonly kind: 'auth';
      readonly revision: number;
      /** Tokens that must stop working on every member: a user's (deleted, or a new password), or all (auth disabled). */
      readonly invalidates?: { readonly user: string } | 'all';
    }
  | {
      readonly kind: 'authenticated';
      readonly name: string;
      readonly revision: number;
      /** The simple token every member now accepts for `name` (the proposer's prefix, "." and this entry's index); none for JWT. */
      readonly token?: string;
    }
  | { readonly kind: 'error'; readonly error: EngineError };

export function authOutcome(outcome: unknown): AuthOutcome {
  return outcome as AuthOutcome;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

const utf8 = (s: string): Uint8Array => encoder.encode(s);
const byName = (a: string, b: string): number => compareBytes(utf8(a), utf8(b));
const b64 = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
const unb64 = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'base64'));

function command(kind: number, body: Record<string, unknown>): EngineCommand {
  return { engine: EngineId.Auth, version: AUTH_COMMAND_VERSION, kind, payload: encoder.encode(JSON.stringify(body)) };
}

// ---- Commands (what the Auth service proposes) ----------------------------------------------

export const authCommands = {
  enable: (): EngineCommand => command(AuthCommandKind.Enable, {}),
  disable: (): EngineCommand => command(AuthCommandKind.Disable, {}),
  /** `passwordHash` empty only with `noPassword`. */
  userAdd: (name: string, passwordHash: Uint8Array, noPassword: boolean): EngineCommand => command(AuthCommandKind.UserAdd, { name, passwordHash: b64(passwordHash), noPassword }),
  userDelete: (name: string): EngineCommand => command(AuthCommandKind.UserDelete, { name }),
  userChangePassword: (name: string, passwordHash: Uint8Array): EngineCommand => command(AuthCommandKind.UserChangePassword, { name, passwordHash: b64(passwordHash) }),
  userGrantRole: (user: string, role: string): EngineCommand => command(AuthCommandKind.UserGrantRole, { user, role }),
  userRevokeRole: (name: string, role: string): EngineCommand => command(AuthCommandKind.UserRevokeRole, { name, role }),
  roleAdd: (name: string): EngineCommand => command(AuthCommandKind.RoleAdd, { name }),
  roleDelete: (role: string): EngineCommand => command(AuthCommandKind.RoleDelete, { role }),
  roleGrantPermission: (name: string, permission: KeyPermission): EngineCommand =>
    command(AuthCommandKind.RoleGrantPermission, { name, permType: permission.permType, key: b64(permission.key), rangeEnd: b64(permission.rangeEnd) }),
  roleRevokePermission: (role: string, key: Uint8Array, rangeEnd: Uint8Array): EngineCommand => command(AuthCommandKind.RoleRevokePermission, { role, key: b64(key), rangeEnd: b64(rangeEnd) }),
  /**
   * The password of `name` matched its hash when the auth revision was `checkedRevision`; with a
   * `tokenPrefix`, every member registers the simple token `${tokenPrefix}.${index}` for `name`.
   */
  authenticate: (name: string, checkedRevision: number, tokenPrefix?: string): EngineCommand =>
    command(AuthCommandKind.Authenticate, tokenPrefix === undefined ? { name, checkedRevision } : { name, checkedRevision, tokenPrefix }),
};

/** A field of a decoded command, or a refusal when it is missing or of the wrong type. */
function field<T>(body: Record<string, unknown>, name: string, check: (v: unknown) => v is T): T {
  const value = body[name];
  if (!check(value)) throw new EngineError('invalid-auth-mgmt', `auth command field ${name} is missing or malformed`);
  return value;
}
const isString = (v: unknown): v is string => typeof v === 'string';
const isBoolean = (v: unknown): v is boolean => typeof v === 'boolean';
const isRevision = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

export class AuthEngine implements Engine {
  readonly id = EngineId.Auth;
  readonly name = 'auth';
  readonly version = AUTH_COMMAND_VERSION;

  private enabledValue = false;
  /**
   * Whether stores hold keys of this state machine's keyspace (the ownership engine ceded a
   * prefix): auth is not enabled then, since only the default store's shard checks callers.
   */
  private readonly storesExist: () => boolean;
  /** etcd starts its auth revision at 1. */
  private revisionValue = 1;
  private users = new Map<string, AuthUser>();
  private roles = new Map<string, AuthRole>();
  /** Each user's merged permissions, rebuilt after every change (etcd's rangePermCache). */
  private permissions = new Map<string, UserPermissions>();

  constructor(options: { readonly storesExist?: () => boolean } = {}) {
    this.storesExist = options.storesExist ?? (() => false);
  }

  get enabled(): boolean {
    return this.enabledValue;
  }

  get revision(): number {
    return this.revisionValue;
  }

  // ---- Reads --------------------------------------------------------------------------------

  user(name: string): AuthUser | undefined {
    return this.users.get(name);
  }

  /** User names in byte order (etcd's UserList). */
  userNames(): string[] {
    return [...this.users.keys()].sort(byName);
  }

  /** A role's permissions (the root role's: `rootPermission`, as etcd's RoleGet answers). */
  role(name: string): AuthRole | undefined {
    const role = this.roles.get(name);
    if (role === undefined) return undefined;
    return name === ROOT ? { name, permissions: [rootPermission] } : role;
  }

  /** Role names in byte order (etcd's RoleList). */
  roleNames(): string[] {
    return [...this.roles.keys()].sort(byName);
  }

  /** Whether `name` is a user with the root role. */
  isRoot(name: string): boolean {
    return this.users.get(name)?.roles.includes(ROOT) === true;
  }

  /**
   * Why `user`, authenticated at auth revision `authRevision`, may not read (or write) the keys
   * `key`..`rangeEnd` name — undefined when it may (always, while auth is disabled). Refusals as
   * etcd's isOpPermitted: `user-empty` for no user, `auth-old-revision` for a check made before
   * the latest change, `permission-denied` otherwise.
   */
  refusal(user: string, authRevision: number, key: Uint8Array, rangeEnd: Uint8Array, type: typeof Perm.Read | typeof Perm.Write): EngineError | undefined {
    if (!this.enabledValue) return undefined;
    if (user === '' || authRevision === 0) return new EngineError('user-empty');
    if (authRevision < this.revisionValue) return new EngineError('auth-old-revision');
    if (!this.users.has(user)) return new EngineError('permission-denied');
    if (this.isRoot(user)) return undefined;
    return this.permissions.get(user)?.permits(key, rangeEnd, type) === true ? undefined : new EngineError('permission-denied');
  }

  /** Why `user` may not make an admin call (root only, while auth is enabled; etcd's IsAdminPermitted). */
  adminRefusal(user: string): EngineError | undefined {
    if (!this.enabledValue) return undefined;
    if (user === '') return new EngineError('user-empty');
    if (!this.users.has(user)) return new EngineError('user-not-found');
    return this.isRoot(user) ? undefined : new EngineError('permission-denied');
  }

  // ---- Apply --------------------------------------------------------------------------------

  apply(cmd: EngineCommand, context: ApplyContext): AuthOutcome {
    let body: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(decoder.decode(cmd.payload));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new TypeError('not an object');
      body = parsed as Record<string, unknown>;
    } catch {
      return { kind: 'error', error: new EngineError('invalid-auth-mgmt', 'auth command is not a JSON object') };
    }
    try {
      return this.applyBody(cmd.kind, body, context);
    } catch (error) {
      if (error instanceof EngineError) return { kind: 'error', error };
      throw error;
    }
  }

  private changed(invalidates?: { readonly user: string } | 'all'): AuthOutcome {
    this.revisionValue++;
    this.rebuildPermissions();
    return invalidates === undefined ? { kind: 'auth', revision: this.revisionValue } : { kind: 'auth', revision: this.revisionValue, invalidates };
  }

  private unchanged(): AuthOutcome {
    return { kind: 'auth', revision: this.revisionValue };
  }

  private existingUser(name: string): AuthUser {
    const user = this.users.get(name);
    if (user === undefined) throw new EngineError('user-not-found');
    return user;
  }

  private existingRole(name: string): AuthRole {
    const role = this.roles.get(name);
    if (role === undefined) throw new EngineError('role-not-found');
    return role;
  }

  private applyBody(kind: number, body: Record<string, unknown>, context: ApplyContext): AuthOutcome {
    switch (kind) {
      case AuthCommandKind.Enable: {
        if (this.enabledValue) return this.unchanged();
        if (this.storesExist()) throw new EngineError('auth-stores-exist');
        const root = this.users.get(ROOT);
        if (root === undefined) throw new EngineError('root-user-not-exist');
        if (!root.roles.includes(ROOT)) throw new EngineError('root-role-not-exist');
        this.enabledValue = true;
        return this.unchanged();
      }
      case AuthCommandKind.Disable: {
        if (!this.enabledValue) return this.unchanged();
        this.enabledValue = false;
        return this.changed('all');
      }
      case AuthCommandKind.UserAdd: {
        const name = field(body, 'name', isString);
        const noPassword = field(body, 'noPassword', isBoolean);
        const passwordHash = unb64(field(body, 'passwordHash', isString));
        if (name === '') throw new EngineError('user-empty');
        if (this.users.has(name)) throw new EngineError('user-already-exists');
        if (!noPassword && passwordHash.length === 0) throw new EngineError('invalid-auth-mgmt', 'a user with a password needs its hash');
        this.users.set(name, { name, passwordHash: noPassword ? new Uint8Array(0) : passwordHash, noPassword, roles: [] });
        return this.changed();
      }
      case AuthCommandKind.UserDelete: {
        const name = field(body, 'name', isString);
        if (this.enabledValue && name === ROOT) throw new EngineError('invalid-auth-mgmt');
        this.existingUser(name);
        this.users.delete(name);
        return this.changed({ user: name });
      }
      case AuthCommandKind.UserChangePassword: {
        const name = field(body, 'name', isString);
        const passwordHash = unb64(field(body, 'passwordHash', isString));
        const user = this.existingUser(name);
        if (!user.noPassword && passwordHash.length === 0) throw new EngineError('invalid-auth-mgmt', 'a user with a password needs its hash');
        this.users.set(name, { ...user, passwordHash: user.noPassword ? new Uint8Array(0) : passwordHash });
        return this.changed({ user: name });
      }
      case AuthCommandKind.UserGrantRole: {
        const name = field(body, 'user', isString);
        const role = field(body, 'role', isString);
        const user = this.existingUser(name);
        if (role !== ROOT) this.existingRole(role);
        if (user.roles.includes(role)) return this.unchanged();
        this.users.set(name, { ...user, roles: [...user.roles, role].sort(byName) });
        return this.changed();
      }
      case AuthCommandKind.UserRevokeRole: {
        const name = field(body, 'name', isString);
        const role = field(body, 'role', isString);
        if (this.enabledValue && name === ROOT && role === ROOT) throw new EngineError('invalid-auth-mgmt');
        const user = this.existingUser(name);
        if (!user.roles.includes(role)) throw new EngineError('role-not-granted');
        this.users.set(name, { ...user, roles: user.roles.filter((r) => r !== role) });
        return this.changed();
      }
      case AuthCommandKind.RoleAdd: {
        const name = field(body, 'name', isString);
        if (name === '') throw new EngineError('role-empty');
        if (this.roles.has(name)) throw new EngineError('role-already-exists');
        this.roles.set(name, { name, permissions: [] });
        return this.changed();
      }
      case AuthCommandKind.RoleDelete: {
        const name = field(body, 'role', isString);
        if (this.enabledValue && name === ROOT) throw new EngineError('invalid-auth-mgmt');
        this.existingRole(name);
        this.roles.delete(name);
        for (const [userName, user] of this.users) {
          if (user.roles.includes(name)) this.users.set(userName, { ...user, roles: user.roles.filter((r) => r !== name) });
        }
        return this.changed();
      }
      case AuthCommandKind.RoleGrantPermission: {
        const name = field(body, 'name', isString);
        const permType = field(body, 'permType', isPermissionType);
        const key = unb64(field(body, 'key', isString));
        const rangeEnd = unb64(field(body, 'rangeEnd', isString));
        if (!isValidPermissionRange(key, rangeEnd)) throw new EngineError('invalid-auth-mgmt');
        const role = this.existingRole(name);
        const kept = role.permissions.filter((p) => !(compareBytes(p.key, key) === 0 && compareBytes(p.rangeEnd, rangeEnd) === 0));
        const permissions = [...kept, { permType, key, rangeEnd }].sort(comparePermissions);
        this.roles.set(name, { name, permissions });
        return this.changed();
      }
      case AuthCommandKind.RoleRevokePermission: {
        const name = field(body, 'role', isString);
        const key = unb64(field(body, 'key', isString));
        const rangeEnd = unb64(field(body, 'rangeEnd', isString));
        const role = this.existingRole(name);
        const kept = role.permissions.filter((p) => !(compareBytes(p.key, key) === 0 && compareBytes(p.rangeEnd, rangeEnd) === 0));
        if (kept.length === role.permissions.length) throw new EngineError('permission-not-granted');
        this.roles.set(name, { name, permissions: kept });
        return this.changed();
      }
      case AuthCommandKind.Authenticate: {
        const name = field(body, 'name', isString);
        const checkedRevision = field(body, 'checkedRevision', isRevision);
        if (!this.enabledValue) throw new EngineError('auth-not-enabled');
        const user = this.users.get(name);
        if (user === undefined || user.noPassword) throw new EngineError('auth-failed');
        if (checkedRevision !== this.revisionValue) throw new EngineError('auth-old-revision');
        const prefix = body.tokenPrefix;
        if (prefix === undefined) return { kind: 'authenticated', name, revision: this.revisionValue };
        if (!isString(prefix) || !tokenPrefixPattern.test(prefix)) throw new EngineError('invalid-auth-mgmt', 'a token prefix is letters');
        return { kind: 'authenticated', name, revision: this.revisionValue, token: `${prefix}.${context.index}` };
      }
      default:
        throw new UnknownCommandError(`unknown auth command kind ${kind}`);
    }
  }

  private rebuildPermissions(): void {
    const permissions = new Map<string, UserPermissions>();
    for (const user of this.users.values()) {
      const granted: KeyPermission[] = [];
      for (const roleName of user.roles) granted.push(...(this.roles.get(roleName)?.permissions ?? []));
      permissions.set(user.name, UserPermissions.of(granted));
    }
    this.permissions = permissions;
  }

  // ---- Snapshot and hash ----------------------------------------------------------------------

  private encode(): Uint8Array {
    const state = {
      enabled: this.enabledValue,
      revision: this.revisionValue,
      users: this.userNames().map((name) => {
        const u = this.users.get(name)!;
        return { name, passwordHash: b64(u.passwordHash), noPassword: u.noPassword, roles: u.roles };
      }),
      roles: this.roleNames().map((name) => {
        const r = this.roles.get(name)!;
        return { name, permissions: r.permissions.map((p) => ({ permType: p.permType, key: b64(p.key), rangeEnd: b64(p.rangeEnd) })) };
      }),
    };
    return encoder.encode(JSON.stringify(state));
  }

  snapshot(): Iterator<Uint8Array> {
    return [this.encode()][Symbol.iterator]();
  }

  restore(chunks: readonly Uint8Array[]): void {
    this.enabledValue = false;
    this.revisionValue = 1;
    this.users = new Map();
    this.roles = new Map();
    if (chunks.length > 0) {
      const state = decodeState(chunks);
      this.enabledValue = state.enabled;
      this.revisionValue = state.revision;
      for (const u of state.users) this.users.set(u.name, u);
      for (const r of state.roles) this.roles.set(r.name, r);
    }
    this.rebuildPermissions();
  }

  hash(): number {
    return crc32c(this.encode());
  }
}

function comparePermissions(a: KeyPermission, b: KeyPermission): number {
  return compareBytes(a.key, b.key) || compareBytes(a.rangeEnd, b.rangeEnd);
}

/** Parses a snapshot section; throws (the restore fails) on anything malformed. */
function decodeState(chunks: readonly Uint8Array[]): { enabled: boolean; revision: number; users: AuthUser[]; roles: AuthRole[] } {
  const text = chunks.map((c) => decoder.decode(c, { stream: true })).join('') + decoder.decode();
  const raw = JSON.parse(text) as Record<string, unknown>;
  const bad = (what: string): never => {
    throw new TypeError(`auth snapshot section: ${what}`);
  };
  if (typeof raw.enabled !== 'boolean') bad('enabled is not a boolean');
  if (!Number.isSafeInteger(raw.revision) || (raw.revision as number) < 1) bad('revision is not a positive integer');
  if (!Array.isArray(raw.users) || !Array.isArray(raw.roles)) bad('users or roles missing');
  const users = (raw.users as Array<Record<string, unknown>>).map((u): AuthUser => {
    if (typeof u.name !== 'string' || typeof u.passwordHash !== 'string' || typeof u.noPassword !== 'boolean' || !Array.isArray(u.roles) || !u.roles.every(isString)) bad('a malformed user');
    return { name: u.name as string, passwordHash: unb64(u.passwordHash as string), noPassword: u.noPassword as boolean, roles: [...(u.roles as string[])].sort(byName) };
  });
  const roles = (raw.roles as Array<Record<string, unknown>>).map((r): AuthRole => {
    if (typeof r.name !== 'string' || !Array.isArray(r.permissions)) bad('a malformed role');
    const permissions = (r.permissions as Array<Record<string, unknown>>).map((p): KeyPermission => {
      if (!isPermissionType(p.permType) || typeof p.key !== 'string' || typeof p.rangeEnd !== 'string') bad('a malformed permission');
      return { permType: p.permType as PermissionType, key: unb64(p.key as string), rangeEnd: unb64(p.rangeEnd as string) };
    });
    return { name: r.name as string, permissions: permissions.sort(comparePermissions) };
  });
  return { enabled: raw.enabled as boolean, revision: raw.revision as number, users, roles };
}
