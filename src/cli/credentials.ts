/**
 * --user and --password, as etcdctl 3.4 reads them, and asking for a password on the terminal
 * without echo.
 */
import { UsageError } from './args.js';

/** Who a command authenticates as; the password is asked for (on the terminal) only when needed. */
export interface Credentials {
  readonly user: string;
  readonly password: () => Promise<string>;
}

export const credentialsOptionsHelp = `  --user NAME[:PASSWORD] authenticate as NAME (default $DKV_USER, else $ETCDCTL_USER); without a
                         password (here, --password, else $DKV_PASSWORD, else $ETCDCTL_PASSWORD)
                         it is asked for on the terminal
  --password P           NAME's password (then --user is the name, colons included)
`;

/** Ctrl-C and Ctrl-D while a password is typed. */
const interruptChar = '\u0003';
const endOfInputChar = '\u0004';
const backspaceChars = ['\u007f', '\b'];

function fromEnv(...names: string[]): string | undefined {
  for (const name of names) {
    const value = process.env[name];
    if (value !== undefined && value !== '') return value;
  }
  return undefined;
}

/**
 * The credentials of --user/--password (--user defaults to $DKV_USER, else $ETCDCTL_USER), or
 * undefined without a user. As etcdctl: with --password, the user is the whole of --user; else
 * NAME:PASSWORD splits at the first colon; else the password is $DKV_PASSWORD or
 * $ETCDCTL_PASSWORD, else asked for on the terminal (a usage error when stdin is not one).
 */
export function credentialsOf(values: { user?: string | undefined; password?: string | undefined }, command: string): Credentials | undefined {
  const user = values.user ?? fromEnv('DKV_USER', 'ETCDCTL_USER');
  const password = values.password;
  if (user === undefined) {
    if (password !== undefined) throw new UsageError('--password needs --user');
    return undefined;
  }
  if (password !== undefined) return checked({ user, password: () => Promise.resolve(password) });
  const colon = user.indexOf(':');
  if (colon >= 0) {
    const given = user.slice(colon + 1);
    return checked({ user: user.slice(0, colon), password: () => Promise.resolve(given) });
  }
  // Unlike etcdctl (where $ETCDCTL_PASSWORD is --password), the variables do not override a
  // NAME:PASSWORD given on the command line.
  const fromVariable = fromEnv('DKV_PASSWORD', 'ETCDCTL_PASSWORD');
  if (fromVariable !== undefined) return checked({ user, password: () => Promise.resolve(fromVariable) });
  if (process.stdin.isTTY !== true) {
    throw new UsageError(`${command} --user ${user}: no password (give --user NAME:PASSWORD, --password or $DKV_PASSWORD; stdin is not a terminal to ask on)`);
  }
  let asked: Promise<string> | undefined;
  return checked({ user, password: () => (asked ??= askPassword('Password: ')) });
}

function checked(credentials: Credentials): Credentials {
  if (credentials.user === '') throw new UsageError('--user: the user name is empty');
  return credentials;
}

/**
 * Reads a line from the terminal without echoing it, `prompt` on stderr (stdout stays the
 * command's output). Rejects on Ctrl-C or Ctrl-D.
 */
export function askPassword(prompt: string): Promise<string> {
  const input = process.stdin;
  if (input.isTTY !== true) return Promise.reject(new UsageError('stdin is not a terminal to ask for a password on'));
  // Echo off before the prompt shows: what is typed after it must never be echoed.
  input.setRawMode(true);
  process.stderr.write(prompt);
  return new Promise((resolve, reject) => {
    let typed = '';
    const finish = (error?: Error): void => {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      process.stderr.write('\n');
      if (error === undefined) resolve(typed);
      else reject(error);
    };
    const onData = (chunk: Buffer): void => {
      for (const char of chunk.toString('utf8')) {
        if (char === '\r' || char === '\n') return finish();
        if (char === interruptChar || char === endOfInputChar) return finish(new Error('password not given (interrupted)'));
        if (backspaceChars.includes(char)) typed = typed.slice(0, -1);
        else typed += char;
      }
    };
    input.resume();
    input.on('data', onData);
  });
}

/**
 * etcdctl's "user add" without --interactive: the first word on stdin (Go's fmt.Scanf("%s")).
 */
export function readPasswordFromStdin(): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    process.stdin.on('data', (chunk: Buffer) => chunks.push(chunk));
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString().trim().split(/\s+/)[0] ?? ''));
    process.stdin.on('error', reject);
  });
}
