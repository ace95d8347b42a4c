/** `DkvClient`'s options, their defaults and their validation (at the edge, with clear errors). */
import { type ReconnectPolicy, reconnectPolicyDefault, reconnectPolicyProblem } from './backoff.js';
import { invalidArgument } from './errors.js';

/** One server the client may use. */
export interface ServerOption {
  /** `host:port` (a scheme such as `http://` is accepted and dropped). */
  readonly address: string;
  /** Higher is preferred (default 0); equal priorities are preferred in configuration order. */
  readonly priority?: number;
}

/** TLS material (PEM, as Buffers or strings). With `tls` absent the client speaks plaintext. */
export interface TlsOption {
  /** The CA that signed the servers' certificates (the system's roots when absent). */
  readonly ca?: Buffer | string;
  /** A client certificate, with `key`, for mutual TLS. */
  readonly cert?: Buffer | string;
  readonly key?: Buffer | string;
}

/** etcd authentication: the client authenticates once and again whenever its token is refused. */
export interface AuthOption {
  readonly username: string;
  readonly password: string;
}

/** What `new DkvClient(options)` takes. */
export interface DkvClientOptions {
  /** At least one server. */
  readonly servers: readonly ServerOption[];
  /** The wait between attempts after a failure (defaults: `reconnectPolicyDefault`). */
  readonly reconnect?: Partial<ReconnectPolicy>;
  /** The deadline of one operation, retries included, unless the call names one (default 10 s). */
  readonly timeoutMs?: number;
  /** How long a connection attempt may take before the server counts as unavailable (default 1.5 s). */
  readonly connectTimeoutMs?: number;
  readonly tls?: TlsOption;
  readonly auth?: AuthOption;
}

/** An operation's deadline, retries included, by default. */
export const operationTimeoutMsDefault = 10_000;
/** How long connecting to a server may take before it counts as unavailable, by default. */
export const connectTimeoutMsDefault = 1_500;

/** Options after validation, defaults filled in. */
export interface ResolvedOptions {
  readonly servers: ReadonlyArray<{ readonly address: string; readonly priority: number }>;
  readonly reconnect: ReconnectPolicy;
  readonly timeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly tls: TlsOption | undefined;
  readonly auth: AuthOption | undefined;
}

function positiveMs(value: number | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw invalidArgument(`${name} must be a finite number of ms > 0 (got ${String(value)})`);
  return value;
}

const pemLike = (value: unknown): boolean => value === undefined || typeof value === 'string' || Buffer.isBuffer(value);

/** Validates `options`; throws `DkvError` INVALID_ARGUMENT naming the bad field. */
export function resolveOptions(options: DkvClientOptions): ResolvedOptions {
  if (typeof options !== 'object' || options === null) throw invalidArgument('DkvClient options must be an object');
  if (!Array.isArray(options.servers) || options.servers.length === 0) throw invalidArgument('options.servers must list at least one server ({ address: "host:port" })');
  const seen = new Set<string>();
  const servers = options.servers.map((server: ServerOption, i) => {
    const address = typeof server?.address === 'string' ? server.address.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').replace(/\/$/, '') : '';
    if (!/^[^\s/:]+:\d{1,5}$/.test(address) && !/^\[[0-9a-f:.]+\]:\d{1,5}$/i.test(address)) throw invalidArgument(`options.servers[${i}].address must be "host:port" (got ${JSON.stringify(server?.address)})`);
    if (seen.has(address)) throw invalidArgument(`options.servers[${i}].address ${address} is listed twice`);
    seen.add(address);
    const priority = server.priority ?? 0;
    if (typeof priority !== 'number' || !Number.isFinite(priority)) throw invalidArgument(`options.servers[${i}].priority must be a finite number (got ${String(server.priority)})`);
    return { address, priority };
  });
  const reconnect = { ...reconnectPolicyDefault, ...options.reconnect };
  const problem = reconnectPolicyProblem(reconnect);
  if (problem !== undefined) throw invalidArgument(`options.${problem}`);
  const tls = options.tls;
  if (tls !== undefined) {
    if (!pemLike(tls.ca) || !pemLike(tls.cert) || !pemLike(tls.key)) throw invalidArgument('options.tls.ca, .cert and .key must be Buffers or strings (PEM)');
    if ((tls.cert === undefined) !== (tls.key === undefined)) throw invalidArgument('options.tls.cert and options.tls.key go together');
  }
  const auth = options.auth;
  if (auth !== undefined && (typeof auth.username !== 'string' || auth.username === '' || typeof auth.password !== 'string')) throw invalidArgument('options.auth needs a non-empty username and a password');
  return {
    servers,
    reconnect,
    timeoutMs: positiveMs(options.timeoutMs, 'options.timeoutMs', operationTimeoutMsDefault),
    connectTimeoutMs: positiveMs(options.connectTimeoutMs, 'options.connectTimeoutMs', connectTimeoutMsDefault),
    tls,
    auth,
  };
}
