/**
 * What the `dkv` commands that talk to a running cluster share: the --endpoints list, a unary
 * call that tries the next endpoint when one is unreachable, the auth token (--user), and how a
 * failed call is printed.
 */
import { type CallOptions, EtcdChannel, type MethodCodec, grpcStatus, longsAsStrings, methodCodec } from '../client/index.js';
import type { ParseArgsConfig } from 'node:util';
import { errorCodeOfMessage } from '../errors.js';
import { UsageError, durationOption, parseCommand, parseEndpoints, withUsage } from './args.js';
import { type Credentials, credentialsOf, credentialsOptionsHelp } from './credentials.js';

export const endpointsDefault = '127.0.0.1:2379';

/** A call's deadline from the command line (etcdctl's --command-timeout default). */
export const commandTimeoutMs = 5000;

/** Exit code of a command the server refused or that could not reach it (usage errors exit 2). */
export const exitFailure = 1;

const authenticateCodec = methodCodec('etcdserverpb.Auth', 'Authenticate', longsAsStrings);

/**
 * A channel per endpoint, opened on first use; `close()` closes them all. With credentials, the
 * first call authenticates (once per run) and every call carries the token.
 */
export class Endpoints {
  private readonly channels = new Map<string, EtcdChannel>();
  private preferred = 0;
  /** The token being fetched or held; undefined until the first call (or after it went stale). */
  private token: Promise<string | undefined> | undefined;

  constructor(
    readonly list: readonly string[],
    /** Each unary call's deadline unless it names one (--command-timeout). */
    readonly timeoutMs = commandTimeoutMs,
    /** --user's name and password; undefined: calls carry no token. */
    private readonly credentials?: Credentials,
  ) {}

  /**
   * The options that authenticate a call: `{ token }` once Auth.Authenticate answered, `{}`
   * without credentials or when the cluster's auth is not enabled (as etcd's client goes on).
   */
  async authOptions(): Promise<{ token?: string }> {
    if (this.credentials === undefined) return {};
    this.token ??= this.authenticate(this.credentials);
    try {
      const token = await this.token;
      return token === undefined ? {} : { token };
    } catch (error) {
      this.token = undefined;
      throw error;
    }
  }

  /**
   * After a call failed with `error`: true when the failure was the token (invalidated, or older
   * than the auth store) and a new one was fetched, so the call may be sent again; the server
   * refused it before applying anything. `used` is the token the call carried.
   */
  async renewedAfter(error: unknown, used: { token?: string }): Promise<boolean> {
    if (this.credentials === undefined || !isStaleToken(error)) return false;
    await this.discardToken(used);
    await this.authOptions();
    return true;
  }

  /** Forgets `used`'s token (the server found it stale), unless another call already replaced it. */
  async discardToken(used: { token?: string }): Promise<void> {
    const current = this.token === undefined ? undefined : await this.token.catch(() => undefined);
    if (current === used.token) this.token = undefined;
  }

  /** Runs `call` with the token, and once more with a new one if the server found it stale. */
  async withAuth<R>(call: (auth: { token?: string }) => Promise<R>): Promise<R> {
    const auth = await this.authOptions();
    try {
      return await call(auth);
    } catch (error) {
      if (!(await this.renewedAfter(error, auth))) throw error;
      return call(await this.authOptions());
    }
  }

  /** Auth.Authenticate on the first endpoint that answers; undefined when auth is not enabled. */
  private async authenticate(credentials: Credentials): Promise<string | undefined> {
    const password = await credentials.password();
    try {
      const r = await this.unaryUnauthenticated(authenticateCodec, { name: credentials.user, password }, {});
      return String(r.token);
    } catch (error) {
      if (errorCodeOfMessage(failureMessage(error)) === 'auth-not-enabled') return undefined;
      throw error;
    }
  }

  channel(index = this.preferred): EtcdChannel {
    const endpoint = this.list[index % this.list.length]!;
    let channel = this.channels.get(endpoint);
    if (channel === undefined) {
      channel = new EtcdChannel(endpoint, { callTimeoutMs: this.timeoutMs, decode: longsAsStrings });
      this.channels.set(endpoint, channel);
    }
    return channel;
  }

  /**
   * One unary call; an unreachable endpoint (UNAVAILABLE) passes the call to the next one. A
   * `write` is never sent twice: it goes to an endpoint only once connected to it, and when the
   * connection then fails under it the outcome is unknown and reported as such (exit 1), unless
   * the server refused it unapplied ("no leader", learner, too many requests). With --user the
   * call carries the token, and is sent once more with a new one if the server found it stale.
   */
  async unary<R>(codec: MethodCodec<R>, request: object, options: CallOptions & { readonly write?: boolean } = {}): Promise<R> {
    // A stale token is refused before anything is applied, so a write is safe to send again too.
    return this.withAuth((auth) => this.unaryUnauthenticated(codec, request, { ...options, ...auth }));
  }

  private async unaryUnauthenticated<R>(codec: MethodCodec<R>, request: object, options: CallOptions & { readonly write?: boolean }): Promise<R> {
    let lastError: unknown;
    for (let attempt = 0; attempt < this.list.length; attempt++) {
      const index = (this.preferred + attempt) % this.list.length;
      const channel = this.channel(index);
      if (options.write === true) {
        try {
          await channel.waitForReady(Math.min(this.timeoutMs, connectWaitMsMax));
        } catch (error) {
          lastError = Object.assign(new Error((error as Error).message), { code: grpcStatus.UNAVAILABLE, details: (error as Error).message });
          continue;
        }
      }
      try {
        const response = await channel.unary(codec, request, options);
        this.preferred = index;
        return response;
      } catch (error) {
        lastError = error;
        if (!isUnavailable(error) || options.signal?.aborted === true) throw error;
        if (options.write === true && !refusedUnapplied(error)) {
          throw Object.assign(new Error(`the outcome is unknown (${failureMessage(error)}); not sent again, check before retrying`), { code: grpcStatus.UNAVAILABLE, details: `the outcome is unknown (${failureMessage(error)}); not sent again, check before retrying` });
        }
      }
    }
    throw lastError;
  }

  /** Makes the next endpoint the preferred one (after a call on this one failed). */
  failover(): void {
    this.preferred = (this.preferred + 1) % this.list.length;
  }

  close(): void {
    for (const channel of this.channels.values()) channel.close();
    this.channels.clear();
  }
}

/** How long a write waits to connect to one endpoint before it tries the next. */
export const connectWaitMsMax = 2000;

/** etcd's refusals that apply nothing (the request may go to another member). */
function refusedUnapplied(error: unknown): boolean {
  return /etcdserver: (no leader|too many requests|rpc not supported for learner|not capable)/.test(failureMessage(error));
}

/** The server refused a call's token: invalidated (password changed, restarted) or older than its auth store. */
export function isStaleToken(error: unknown): boolean {
  const code = errorCodeOfMessage(failureMessage(error));
  return code === 'invalid-auth-token' || code === 'auth-old-revision';
}

/** The call never reached a server that could answer it (or it stopped, or lost its leader). */
export function isUnavailable(error: unknown): boolean {
  return (error as { code?: number }).code === grpcStatus.UNAVAILABLE;
}

/** What a failed call says: the server's message (gRPC details), else the error's. */
export function failureMessage(error: unknown): string {
  const details = (error as { details?: string }).details;
  return details ?? (error as Error).message ?? String(error);
}

/** Prints a failed call as "<command>: <message>" ("dkv get: …") and returns the failure exit code. */
export function reportFailure(command: string, error: unknown): number {
  process.stderr.write(`${command}: ${failureMessage(error)}\n`);
  return exitFailure;
}

/** Output formats of -w/--write-out, as etcdctl names them. */
export const writeOutFormats = ['simple', 'json', 'table'] as const;
export type WriteOut = (typeof writeOutFormats)[number];

/** The flags every command that calls a cluster takes (etcdctl's global ones). */
export const remoteOptions = {
  endpoints: { type: 'string' },
  'write-out': { type: 'string', short: 'w' },
  'command-timeout': { type: 'string' },
  user: { type: 'string' },
  password: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** The usage lines of `remoteOptions`, for each command's help text. */
export const remoteOptionsHelp = `  --endpoints E          comma-separated host:port (http:// accepted); the next one is tried
                         when one is unreachable (default: $DKV_ENDPOINTS, else
                         $ETCDCTL_ENDPOINTS, else ${endpointsDefault})
  -w, --write-out F      output format: simple, json (etcdctl's -w json) or table (default simple)
  --command-timeout D    each call's deadline, a duration such as 5s or 500ms (default 5s)
${credentialsOptionsHelp}  -h, --help             show this text
`;

/** What a remote command runs with: its endpoints, output format and deadline. */
export interface Remote {
  readonly endpoints: Endpoints;
  readonly format: WriteOut;
  readonly timeoutMs: number;
}

/**
 * The endpoints (flag, then $DKV_ENDPOINTS, then $ETCDCTL_ENDPOINTS, then the default), the
 * output format (`formats`: the ones this command prints) and the deadline.
 */
export function remoteOf(
  values: { endpoints?: string | undefined; 'write-out'?: string | undefined; 'command-timeout'?: string | undefined; user?: string | undefined; password?: string | undefined },
  command: string,
  formats: readonly WriteOut[] = ['simple', 'json'],
): Remote {
  const format = values['write-out'] ?? 'simple';
  if (!(writeOutFormats as readonly string[]).includes(format)) throw new UsageError(`--write-out must be one of ${writeOutFormats.join(', ')}, got "${format}"`);
  if (!formats.includes(format as WriteOut)) throw new UsageError(`${format} output is not supported by ${command} (it prints ${formats.join(' or ')})`);
  const list = values.endpoints ?? nonEmpty(process.env.DKV_ENDPOINTS) ?? nonEmpty(process.env.ETCDCTL_ENDPOINTS) ?? endpointsDefault;
  const timeoutMs = durationOption(values['command-timeout'], 'command-timeout', commandTimeoutMs);
  const credentials = credentialsOf(values, command);
  return { endpoints: new Endpoints(parseEndpoints(list, command), timeoutMs, credentials), format: format as WriteOut, timeoutMs };
}

function nonEmpty(text: string | undefined): string | undefined {
  return text === undefined || text.trim() === '' ? undefined : text;
}

type Parsed<T extends NonNullable<ParseArgsConfig['options']>> = ReturnType<typeof parseCommand<T & typeof remoteOptions>>;

/**
 * Runs a remote command: parses its flags with the remote ones, prints its help on -h, and turns
 * usage errors into exit 2 and failed calls into exit 1 ("dkv <name>: …").
 */
export async function runRemote<T extends NonNullable<ParseArgsConfig['options']>>(
  run: { name: string; help: string; options: T; formats?: readonly WriteOut[] },
  args: readonly string[],
  body: (remote: Remote, values: Parsed<T>['values'], positionals: string[]) => Promise<number>,
): Promise<number> {
  const command = `dkv ${run.name}`;
  return withUsage(
    run.help,
    async () => {
      const parsed = parseCommand([...args], { ...run.options, ...remoteOptions });
      const values = parsed.values as Parsed<T>['values'] & { help?: boolean; endpoints?: string; 'write-out'?: string; 'command-timeout'?: string };
      const positionals = parsed.positionals;
      if (values.help === true) {
        process.stdout.write(run.help);
        return 0;
      }
      const remote = remoteOf(values, command, run.formats);
      try {
        return await body(remote, values, positionals);
      } catch (error) {
        if (error instanceof UsageError) throw error;
        return reportFailure(command, error);
      } finally {
        remote.endpoints.close();
      }
    },
    command,
  );
}
