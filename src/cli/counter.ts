/** `dkv counter`: atomic counters of a running cluster (the dkv.v1.Counter service). */
import { parseArgs } from 'node:util';
import { type Decoded, EtcdChannel, type RpcError, longsAsStrings } from '../client/index.js';
import { counterLimits } from '../engines/counter/index.js';
import { durationOption, intOption, parseEndpoints, UsageError, usageErrorOf, withUsage } from './args.js';
import { credentialsOf, credentialsOptionsHelp } from './credentials.js';
import { Endpoints, endpointsDefault } from './remote.js';

export const counterHelp = `Usage: dkv counter incr|decr KEY [N] [--ttl-ms MS] [options]
       dkv counter set KEY N [--ttl-ms MS] [options]
       dkv counter get KEY [--consistency l|s] [options]
       dkv counter del KEY [options]

Atomic signed 64-bit counters. A counter is an ordinary key whose value is the decimal text of
its number ("etcdctl get KEY" shows it); an absent key counts as 0. Prints the counter's value
(del: 1 if a key was deleted, else 0).

  incr      add N (default 1) and print the new value
  decr      subtract N (default 1) and print the new value
  set       write N, whatever the key held
  get       print the value (0 for an absent key)
  del       delete the key, whatever it held

N is a whole number in [-9223372036854775808, 9223372036854775807]. A counter never wraps: a
step past that range fails with "dkv: counter would leave the int64 range" and changes nothing;
incrementing a key that holds anything but a number fails with "dkv: value is not a 64-bit
integer".

Options:
  --endpoints E        comma-separated host:port (http:// accepted); the first one that accepts
                       a connection gets the request, which is never sent twice (default
                       127.0.0.1:2379)
  --ttl-ms MS          incr, decr, set: the key expires MS ms after this write (needs a server
                       with the TTL engine); without it the key has no TTL after the write
  --consistency l|s    get: linearizable (l) or serializable (s, this node's possibly stale
                       state) (default l)
  --timeout-ms MS      how long to wait for a connection, then for the answer (default 5000)
  --command-timeout D  the same as a duration (5s, 500ms), as the other commands take it
${credentialsOptionsHelp}  -h, --help           show this text

The endpoints default to $DKV_ENDPOINTS, else $ETCDCTL_ENDPOINTS, else 127.0.0.1:2379.

Exit status: 0 on success, 1 if the server refused or did not answer, 2 on a bad command line.
`;

const actions = ['incr', 'decr', 'set', 'get', 'del'] as const;
type Action = (typeof actions)[number];

/** Options that take a value, so "-5" after one is its value, not a number argument. */
const valueOptions = new Set(['--endpoints', '--ttl-ms', '--consistency', '--timeout-ms', '--command-timeout', '--user', '--password']);
const options = {
  endpoints: { type: 'string' },
  'ttl-ms': { type: 'string' },
  consistency: { type: 'string' },
  'timeout-ms': { type: 'string' },
  'command-timeout': { type: 'string' },
  user: { type: 'string' },
  password: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

const timeoutMsMax = 3_600_000;

/**
 * Flags and positionals, where a negative number ("-5") is a positional: node's parser would
 * take it for a short option, so the positionals go after "--".
 */
function parseCommandLine(args: readonly string[]): { values: ReturnType<typeof parseArgs<{ options: typeof options }>>['values']; positionals: string[] } {
  const flags: string[] = [];
  const positionals: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') {
      positionals.push(...args.slice(i + 1));
      break;
    }
    // Joined, so a value that starts with "-" stays the option's value.
    if (valueOptions.has(arg) && i + 1 < args.length) flags.push(`${arg}=${args[++i]!}`);
    else if (arg.startsWith('-') && !/^-[0-9]+$/.test(arg)) flags.push(arg);
    else positionals.push(arg);
  }
  try {
    const parsed = parseArgs({ args: [...flags, '--', ...positionals], options, strict: true, allowPositionals: true });
    return { values: parsed.values, positionals: parsed.positionals };
  } catch (error) {
    throw usageErrorOf(error, options);
  }
}

function int64Argument(text: string, what: string): bigint {
  if (!/^-?[0-9]+$/.test(text)) throw new UsageError(`${what} must be a whole number, got "${text}"`);
  const value = BigInt(text);
  if (value < counterLimits.counterValueMin || value > counterLimits.counterValueMax) throw new UsageError(`${what} must be within the int64 range, got ${text}`);
  return value;
}

/** The first endpoint that accepts a connection within the timeout (nothing is sent before). */
async function connect(endpoints: readonly string[], timeoutMs: number): Promise<{ channel: EtcdChannel; endpoint: string }> {
  const failures: string[] = [];
  for (const endpoint of endpoints) {
    const channel = new EtcdChannel(endpoint, { decode: longsAsStrings, callTimeoutMs: timeoutMs });
    try {
      await channel.waitForReady(timeoutMs);
      return { channel, endpoint };
    } catch (error) {
      channel.close();
      failures.push((error as Error).message);
    }
  }
  throw new Error(failures.join('; '));
}

interface Request {
  readonly method: 'Increment' | 'Decrement' | 'Set' | 'Get' | 'Delete';
  readonly body: object;
  /** What to print of the response. */
  readonly print: (response: Decoded) => string;
}

function requestOf(action: Action, key: Buffer, rest: readonly string[], values: ReturnType<typeof parseCommandLine>['values']): Request {
  const takesTtl = action === 'incr' || action === 'decr' || action === 'set';
  if (!takesTtl && values['ttl-ms'] !== undefined) throw new UsageError(`--ttl-ms applies to incr, decr and set, not ${action}`);
  if (action !== 'get' && values.consistency !== undefined) throw new UsageError(`--consistency applies to get only, not ${action}`);
  const ttlMs = intOption(values['ttl-ms'], 'ttl-ms', 0, 0, counterLimits.counterTtlMsMax);
  const maxArguments = action === 'get' || action === 'del' ? 0 : 1;
  if (rest.length > maxArguments) throw new UsageError(`too many arguments for ${action}: ${rest.join(' ')}`);
  const value = (response: Decoded): string => String(response.value);
  switch (action) {
    case 'incr':
    case 'decr': {
      const delta = rest[0] === undefined ? 1n : int64Argument(rest[0], 'N');
      if (delta === 0n) throw new UsageError('N must not be 0');
      return { method: action === 'incr' ? 'Increment' : 'Decrement', body: { key, delta: delta.toString(), ttl_ms: ttlMs }, print: value };
    }
    case 'set': {
      if (rest[0] === undefined) throw new UsageError('set needs the value: dkv counter set KEY N');
      return { method: 'Set', body: { key, value: int64Argument(rest[0], 'N').toString(), ttl_ms: ttlMs }, print: value };
    }
    case 'get': {
      if (values.consistency !== undefined && values.consistency !== 'l' && values.consistency !== 's') {
        throw new UsageError(`--consistency must be l (linearizable) or s (serializable), got "${values.consistency}"`);
      }
      return { method: 'Get', body: { key, serializable: values.consistency === 's' }, print: value };
    }
    case 'del':
      return { method: 'Delete', body: { key }, print: (response) => (response.deleted === true ? '1' : '0') };
  }
}

export async function counterCommand(args: string[]): Promise<number> {
  return withUsage(counterHelp, async () => {
    const { values, positionals } = parseCommandLine(args);
    if (values.help === true) {
      process.stdout.write(counterHelp);
      return 0;
    }
    const [action, key, ...rest] = positionals;
    if (action === undefined) throw new UsageError('counter needs an action: incr, decr, set, get or del');
    if (!(actions as readonly string[]).includes(action)) throw new UsageError(`unknown counter action "${action}"`);
    if (key === undefined || key === '') throw new UsageError(`${action} needs a KEY`);
    const request = requestOf(action as Action, Buffer.from(key), rest, values);
    const list = values.endpoints ?? (process.env.DKV_ENDPOINTS || undefined) ?? (process.env.ETCDCTL_ENDPOINTS || undefined) ?? endpointsDefault;
    const endpoints = parseEndpoints(list, 'dkv counter');
    if (values['timeout-ms'] !== undefined && values['command-timeout'] !== undefined) throw new UsageError('give --timeout-ms or --command-timeout, not both');
    const timeoutMs = Math.min(timeoutMsMax, values['command-timeout'] !== undefined ? durationOption(values['command-timeout'], 'command-timeout', 5000) : intOption(values['timeout-ms'], 'timeout-ms', 5000, 1, timeoutMsMax));
    const credentials = credentialsOf(values, 'dkv counter');
    let channel: EtcdChannel;
    let auth: Endpoints;
    try {
      const connected = await connect(endpoints, timeoutMs);
      channel = connected.channel;
      // Authenticates on the endpoint the request goes to (Auth.Authenticate is not a write).
      auth = new Endpoints([connected.endpoint], timeoutMs, credentials);
    } catch (error) {
      process.stderr.write(`dkv counter: ${(error as Error).message}\n`);
      return 1;
    }
    try {
      const response = await auth.withAuth((token) => channel.call('dkv.v1.Counter', request.method, request.body, token));
      process.stdout.write(`${request.print(response)}\n`);
      return 0;
    } catch (error) {
      const rpc = error as RpcError;
      process.stderr.write(`dkv counter ${action}: ${rpc.details ?? rpc.message}\n`);
      return 1;
    } finally {
      channel.close();
      auth.close();
    }
  }, 'dkv counter');
}
