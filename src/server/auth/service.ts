/**
 * The etcd `Auth` service: enabling auth, users, roles and their key permissions (changes go
 * through Raft as auth engine commands, which check root where they are applied), reading them
 * (root only, after a linearizable read barrier), and Authenticate: the password is checked here
 * against the replicated hash, then an Authenticate command registers the simple token on every
 * member (or the proposer signs a JWT once it applied) — refused if the auth state changed
 * between the check and the command, in which case the check runs again, as etcd retries.
 */
import type * as grpc from '@grpc/grpc-js';
import {
  type AuthEngine,
  type AuthOutcome,
  type Caller,
  type EngineCommand,
  EngineError,
  type KeyPermission,
  PermissionType,
  ROOT,
  anonymousCaller,
  authCommands,
  authOutcome,
  isValidPermissionRange,
} from '../../engines/index.js';
import { authEngineOf } from '../../runtime/index.js';
import { dkvError } from '../../errors.js';
import { serviceDefinition } from '../grpc-service.js';
import { type ServiceContext, type UnaryCall, callerOptions, responseHeader, unary } from '../service-common.js';
import { authenticateAttemptsMax, authNameBytesMax, passwordBytesMax } from './limits.js';
import { hashPassword, isPasswordHash, spendPasswordCheck, verifyPassword } from './password.js';
import type { RateLimiter } from './rate-limit.js';
import { newTokenPrefix } from './tokens.js';

/** How tokens are made: simple tokens (registered on every member through the log) or JWTs. */
export interface TokenIssuer {
  readonly kind: 'simple' | 'jwt';
  /** A signed token for `user` at `authRevision` (JWT only). */
  sign?(user: string, authRevision: number, nowMs: number): string;
}

export interface AuthServiceContext extends ServiceContext {
  readonly tokens: TokenIssuer;
  /** Whether this member holds as many simple tokens as it may (Authenticate is then refused). */
  readonly tokensFull: () => boolean;
  /** scrypt cost (log2 N) for new password hashes. */
  readonly passwordCostLog2: number;
  readonly perUser: RateLimiter;
  readonly perPeer: RateLimiter;
  readonly nowMs: () => number;
}

interface WireAuthenticateRequest {
  name?: string;
  password?: string;
}
interface WireUserAddRequest {
  name?: string;
  password?: string;
  options?: { no_password?: boolean } | null;
  hashedPassword?: string;
}
interface WireName {
  name?: string;
}
interface WireUserChangePasswordRequest {
  name?: string;
  password?: string;
  hashedPassword?: string;
}
interface WireUserRoleRequest {
  user?: string;
  name?: string;
  role?: string;
}
interface WireRoleNameRequest {
  role?: string;
}
interface WirePermission {
  permType?: number;
  key?: Uint8Array;
  range_end?: Uint8Array;
}
interface WireRoleGrantPermissionRequest {
  name?: string;
  perm?: WirePermission | null;
}
interface WireRoleRevokePermissionRequest {
  role?: string;
  key?: Uint8Array;
  range_end?: Uint8Array;
}

const EMPTY = new Uint8Array(0);

/** A bytes field as decoded: protobufjs hands an unset one back as its default, an empty Array, not a Uint8Array. */
function bytesField(value: Uint8Array | readonly number[] | undefined | null): Uint8Array {
  if (value instanceof Uint8Array) return value;
  return value === undefined || value === null || value.length === 0 ? EMPTY : Uint8Array.from(value);
}

function checkName(name: string | undefined, empty: 'user-empty' | 'role-empty'): string {
  if (name === undefined || name === '') throw dkvError(empty);
  if (Buffer.byteLength(name) > authNameBytesMax) throw dkvError('auth-name-too-large');
  return name;
}

function checkPassword(password: string | undefined): string {
  const text = password ?? '';
  if (Buffer.byteLength(text) > passwordBytesMax) throw dkvError('password-too-large');
  return text;
}

/** The host of a gRPC peer string ("ipv4:1.2.3.4:5", "ipv6:[::1]:5", "1.2.3.4:5"): attempts are limited per address, not per port. */
export function peerHost(peer: string): string {
  const bare = peer.replace(/^ipv[46]:/, '');
  const bracket = /^\[([^\]]*)\]/.exec(bare);
  if (bracket !== null) return bracket[1]!;
  const colon = bare.lastIndexOf(':');
  return colon > 0 && bare.indexOf(':') === colon ? bare.slice(0, colon) : bare;
}

export function createAuthService(ctx: AuthServiceContext): { definition: ReturnType<typeof serviceDefinition>; implementation: grpc.UntypedServiceImplementation } {
  const shard = () => ctx.router.defaultStore();
  const auth = (): AuthEngine => authEngineOf(shard().machine());
  const header = (revision?: number) => responseHeader(ctx, shard(), revision ?? 0);

  /** Proposes an auth command for `caller`; resolves with its outcome (a refusal throws). */
  const propose = async (command: EngineCommand, caller: Caller): Promise<AuthOutcome> => {
    const applied = await shard().propose(command, callerOptions(ctx, caller));
    const outcome = authOutcome(applied.outcome);
    if (outcome.kind === 'error') throw outcome.error;
    return outcome;
  };

  /** A change: root only (anyone while auth is off), checked here and again where it is applied. */
  const change = async (call: UnaryCall<unknown>, command: EngineCommand): Promise<object> => {
    const caller = await ctx.gate.admin(call);
    await propose(command, caller);
    return { header: header() };
  };

  /** A read of the auth state: root only, linearizable. */
  const readAuth = async (call: UnaryCall<unknown>): Promise<AuthEngine> => {
    await ctx.gate.admin(call);
    await shard().read(callerOptions(ctx, anonymousCaller));
    return auth();
  };

  const authenticate = async (request: WireAuthenticateRequest, call: UnaryCall<WireAuthenticateRequest>): Promise<object> => {
    const name = checkName(request.name, 'user-empty');
    const password = checkPassword(request.password);
    const now = ctx.nowMs();
    if (!ctx.perPeer.take(peerHost(call.getPeer()), now) || (ctx.tokens.kind === 'simple' && ctx.tokensFull())) throw dkvError('auth-rate-limited');
    // Buckets per user only for users that exist: the table is then bounded by the users, and
    // names made up to fill it cost the caller its address's attempts.
    if (auth().user(name) !== undefined && !ctx.perUser.take(name, now)) throw dkvError('auth-rate-limited');
    // The password is checked against the cluster's users, not an older copy (etcd reads
    // linearizably first too): a user just added through another member signs in here.
    await shard().read(callerOptions(ctx, anonymousCaller));
    for (let attempt = 1; ; attempt++) {
      const state = auth();
      if (!state.enabled) throw dkvError('auth-not-enabled');
      const checkedRevision = state.revision;
      const user = state.user(name);
      if (user === undefined || user.noPassword) {
        await spendPasswordCheck(password, ctx.passwordCostLog2);
        throw dkvError('auth-failed');
      }
      if (!(await verifyPassword(password, user.passwordHash))) throw dkvError('auth-failed');
      const prefix = ctx.tokens.kind === 'simple' ? newTokenPrefix() : undefined;
      let outcome: AuthOutcome;
      try {
        outcome = await propose(authCommands.authenticate(name, checkedRevision, prefix), anonymousCaller);
      } catch (error) {
        // The users changed while the password was checked: check it again against the new state.
        if (error instanceof EngineError && error.code === 'auth-old-revision' && attempt < authenticateAttemptsMax) continue;
        throw error;
      }
      if (outcome.kind !== 'authenticated') throw new Error(`authenticate applied as ${outcome.kind}`);
      const token = outcome.token ?? ctx.tokens.sign?.(name, outcome.revision, ctx.nowMs());
      if (token === undefined) throw new Error('no token was issued');
      return { header: header(), token };
    }
  };

  const newHash = async (password: string | undefined, hashed: string | undefined): Promise<Uint8Array> => {
    if (hashed !== undefined && hashed !== '') {
      const bytes = new Uint8Array(Buffer.from(hashed));
      if (!isPasswordHash(bytes)) throw dkvError('password-hash-unsupported');
      return bytes;
    }
    return hashPassword(checkPassword(password), ctx.passwordCostLog2);
  };

  const permissionFromWire = (perm: WirePermission | null | undefined): KeyPermission => {
    if (perm === undefined || perm === null) throw dkvError('permission-not-given');
    const permType = perm.permType ?? PermissionType.Read;
    if (permType !== PermissionType.Read && permType !== PermissionType.Write && permType !== PermissionType.ReadWrite) throw dkvError('invalid-argument', `permission type ${permType}`);
    const key = bytesField(perm.key);
    const rangeEnd = bytesField(perm.range_end);
    if (!isValidPermissionRange(key, rangeEnd)) throw dkvError('invalid-auth-mgmt');
    return { permType, key, rangeEnd };
  };

  const implementation: grpc.UntypedServiceImplementation = {
    AuthEnable: unary<object>(async (_request, call) => change(call, authCommands.enable())),
    AuthDisable: unary<object>(async (_request, call) => change(call, authCommands.disable())),
    AuthStatus: unary<object>(async () => {
      await shard().read(callerOptions(ctx, anonymousCaller));
      const state = auth();
      return { header: header(), enabled: state.enabled, authRevision: state.revision };
    }),
    Authenticate: unary<WireAuthenticateRequest>(async ({ message }, call) => authenticate(message, call)),
    UserAdd: unary<WireUserAddRequest>(async ({ message }, call) => {
      const name = checkName(message.name, 'user-empty');
      const noPassword = message.options?.no_password === true;
      await ctx.gate.admin(call); // before the hash: a refused caller costs no scrypt
      const hash = noPassword ? EMPTY : await newHash(message.password, message.hashedPassword);
      return change(call, authCommands.userAdd(name, hash, noPassword));
    }),
    UserGet: unary<WireName>(async ({ message }, call) => {
      const name = checkName(message.name, 'user-empty');
      const user = (await readAuth(call)).user(name);
      if (user === undefined) throw dkvError('user-not-found');
      return { header: header(), roles: [...user.roles] };
    }),
    UserList: unary<object>(async (_request, call) => ({ header: header(), users: (await readAuth(call)).userNames() })),
    UserDelete: unary<WireName>(async ({ message }, call) => change(call, authCommands.userDelete(checkName(message.name, 'user-empty')))),
    UserChangePassword: unary<WireUserChangePasswordRequest>(async ({ message }, call) => {
      const name = checkName(message.name, 'user-empty');
      await ctx.gate.admin(call);
      const user = auth().user(name);
      // A user added with no password keeps none (etcd ignores the new one); else hash it.
      const hash = user?.noPassword === true ? EMPTY : await newHash(message.password, message.hashedPassword);
      return change(call, authCommands.userChangePassword(name, hash));
    }),
    UserGrantRole: unary<WireUserRoleRequest>(async ({ message }, call) =>
      change(call, authCommands.userGrantRole(checkName(message.user, 'user-empty'), checkName(message.role, 'role-empty'))),
    ),
    UserRevokeRole: unary<WireUserRoleRequest>(async ({ message }, call) =>
      change(call, authCommands.userRevokeRole(checkName(message.name, 'user-empty'), checkName(message.role, 'role-empty'))),
    ),
    RoleAdd: unary<WireName>(async ({ message }, call) => change(call, authCommands.roleAdd(checkName(message.name, 'role-empty')))),
    RoleGet: unary<WireRoleNameRequest>(async ({ message }, call) => {
      const name = checkName(message.role, 'role-empty');
      const role = (await readAuth(call)).role(name);
      if (role === undefined) throw dkvError('role-not-found');
      // etcd lists no permissions for the root role (root may do anything without them).
      const listed = name === ROOT ? [] : role.permissions;
      return { header: header(), perm: listed.map((p) => ({ permType: p.permType, key: p.key, range_end: p.rangeEnd })) };
    }),
    RoleList: unary<object>(async (_request, call) => ({ header: header(), roles: (await readAuth(call)).roleNames() })),
    RoleDelete: unary<WireRoleNameRequest>(async ({ message }, call) => change(call, authCommands.roleDelete(checkName(message.role, 'role-empty')))),
    RoleGrantPermission: unary<WireRoleGrantPermissionRequest>(async ({ message }, call) =>
      change(call, authCommands.roleGrantPermission(checkName(message.name, 'role-empty'), permissionFromWire(message.perm))),
    ),
    RoleRevokePermission: unary<WireRoleRevokePermissionRequest>(async ({ message }, call) =>
      change(call, authCommands.roleRevokePermission(checkName(message.role, 'role-empty'), bytesField(message.key), bytesField(message.range_end))),
    ),
  };
  return { definition: serviceDefinition('etcdserverpb.Auth'), implementation };
}
