/**
 * Runs with auth on (`--auth`): before the clients start, the run's cluster gets a root user and a
 * `jepsen` user whose one role may read and write the run's key prefix and nothing else, then auth
 * is enabled. The clients call as `jepsen` (their token authenticated on their member and sent
 * with every call); the committed history is read as root (it watches the whole key space).
 *
 * A token a member no longer accepts (simple tokens live in a member's memory, so a restarted
 * member forgets them; any auth change makes a JWT stale) fails that one call — a definite
 * failure, as the check comes before anything is applied — and the next call authenticates again.
 */
import { type Decoded, EtcdChannel, type EtcdChannelOptions, type CallOptions, type MethodCodec, type WatchHandlers, type WatchStream, grpcStatus, type RpcError } from '../../src/client/index.js';

export interface RunAuth {
  readonly username: string;
  readonly password: string;
  /**
   * The token every channel of the run shares (every member accepts a simple token once it
   * applied the Authenticate): clients that move between members do not log in again each time,
   * which Authenticate's rate limit would refuse.
   */
  readonly shared?: { token: string | undefined };
}

/** The user the clients call as, and root (for the set-up and the final read). */
export const clientUser: RunAuth = { username: 'jepsen', password: 'jepsen-pw' };
export const rootUser: RunAuth = { username: 'root', password: 'root-pw' };
const clientRole = 'jepsen';
/** How long the set-up's calls may take each. */
const setUpCallTimeoutMs = 10_000;

const tokenRefusals = ['etcdserver: invalid auth token', 'etcdserver: revision of auth store is old', 'etcdserver: user name is empty'];

function tokenRefused(error: unknown): boolean {
  const rpc = error as RpcError;
  return (rpc.code === grpcStatus.UNAUTHENTICATED || rpc.code === grpcStatus.INVALID_ARGUMENT) && tokenRefusals.some((m) => (rpc.details ?? '').includes(m));
}

/** A channel that calls as `auth`'s user: Authenticate on first use and again after a refused token. */
export class AuthenticatedChannel extends EtcdChannel {
  private readonly shared: { token: string | undefined };

  constructor(
    endpoint: string,
    options: EtcdChannelOptions,
    private readonly auth: RunAuth,
  ) {
    super(endpoint, options);
    this.shared = auth.shared ?? { token: undefined };
  }

  private get token(): string | undefined {
    return this.shared.token;
  }

  private set token(value: string | undefined) {
    this.shared.token = value;
  }

  private async currentToken(timeoutMs: number | undefined): Promise<string> {
    if (this.token !== undefined) return this.token;
    let response: Decoded;
    try {
      response = await super.call('etcdserverpb.Auth', 'Authenticate', { name: this.auth.username, password: this.auth.password }, { timeoutMs });
    } catch (error) {
      // The operation itself was never sent: a definite failure whatever stopped the login.
      const rpc = error as RpcError;
      throw Object.assign(new Error(`authenticate failed: ${rpc.details ?? rpc.message}`), { code: grpcStatus.UNAUTHENTICATED, details: `authenticate failed: ${rpc.details ?? rpc.message}` });
    }
    this.token = String(response.token);
    return this.token;
  }

  override async unary<Response>(codec: MethodCodec<Response>, request: object, options: CallOptions = {}): Promise<Response> {
    if (codec.path.endsWith('/Authenticate')) return super.unary(codec, request, options);
    const token = await this.currentToken(options.timeoutMs);
    try {
      return await super.unary(codec, request, { ...options, token });
    } catch (error) {
      if (tokenRefused(error)) this.token = undefined;
      throw error;
    }
  }

  /** A watch with the token of the last call (make one first: streams cannot wait to authenticate). */
  override watch(handlers: WatchHandlers, options: CallOptions = {}): WatchStream {
    return super.watch(handlers, this.token === undefined ? options : { ...options, token: this.token });
  }
}

/** Creates root and the clients' user (read and write on `keyPrefix` only), then enables auth. */
export async function setUpAuth(endpoint: string, keyPrefix: string): Promise<void> {
  const channel = new EtcdChannel(endpoint, { callTimeoutMs: setUpCallTimeoutMs });
  const auth = (method: string, request: object): Promise<unknown> => channel.call('etcdserverpb.Auth', method, request);
  try {
    const prefix = Buffer.from(keyPrefix);
    const end = Buffer.from(prefix);
    end[end.length - 1]! += 1; // the prefix's range end (its last byte is never 0xff: it is text)
    await auth('UserAdd', { name: rootUser.username, password: rootUser.password });
    await auth('UserGrantRole', { user: rootUser.username, role: 'root' });
    await auth('UserAdd', { name: clientUser.username, password: clientUser.password });
    await auth('RoleAdd', { name: clientRole });
    await auth('RoleGrantPermission', { name: clientRole, perm: { permType: 2, key: prefix, range_end: end } });
    await auth('UserGrantRole', { user: clientUser.username, role: clientRole });
    await auth('AuthEnable', {});
  } finally {
    channel.close();
  }
}
