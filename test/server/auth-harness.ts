/**
 * What the auth suites over `EtcdChannel` share: the users and roles they set up, signing in, and
 * a refused call's status.
 *
 * `secure()` makes: root (root role); alice (role app: readwrite on the prefix /app/, read on the
 * key /cfg); bob (no role at all); then enables auth.
 */
import { type Decoded, type EtcdChannel, type RpcError, grpcStatus } from '../../src/client/etcd-channel.js';

export const b = (s: string): Buffer => Buffer.from(s);

export const permissionDenied = 'etcdserver: permission denied';

/** A KV, Lease, Counter or dkv.v1 call refused for want of a permission. */
export const denied = { code: grpcStatus.PERMISSION_DENIED, details: permissionDenied };

/**
 * A Lock or Election call refused for want of a permission. etcd's lock and election servers pass
 * their inner client's errors on as plain errors: status UNKNOWN, etcd's message.
 */
export const recipeDenied = { code: grpcStatus.UNKNOWN, details: permissionDenied };

export const passwords = { root: 'rootpw', alice: 'alicepw', bob: 'bobpw' } as const;

/** The call's gRPC failure (code and message); throws if it succeeded. */
export async function failure(call: Promise<unknown>): Promise<{ code: number | undefined; details: string }> {
  try {
    await call;
  } catch (error) {
    const rpc = error as RpcError;
    return { code: rpc.code, details: rpc.details ?? rpc.message };
  }
  throw new Error('the call succeeded');
}

/** Users, roles and auth on, through `channel` (anonymous until auth is enabled). */
export async function secure(channel: EtcdChannel): Promise<void> {
  const auth = (method: string, request: object): Promise<Decoded> => channel.call('etcdserverpb.Auth', method, request);
  await auth('UserAdd', { name: 'root', password: passwords.root });
  await auth('UserGrantRole', { user: 'root', role: 'root' });
  await auth('UserAdd', { name: 'alice', password: passwords.alice });
  await auth('UserAdd', { name: 'bob', password: passwords.bob });
  await auth('RoleAdd', { name: 'app' });
  await auth('RoleGrantPermission', { name: 'app', perm: { permType: 2, key: b('/app/'), range_end: b('/app0') } });
  await auth('RoleGrantPermission', { name: 'app', perm: { permType: 0, key: b('/cfg') } });
  await auth('UserGrantRole', { user: 'alice', role: 'app' });
  await auth('AuthEnable', {});
}

export async function login(channel: EtcdChannel, name: string, password: string): Promise<string> {
  const response = await channel.call('etcdserverpb.Auth', 'Authenticate', { name, password });
  return response.token as string;
}
