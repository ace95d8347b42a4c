/**
 * Flag parsing for every `dkv` command, `dkv jepsen sim` and `dkv jepsen run` included (jepsen-lite
 * keeps its commands beside the code they drive and imports this file for their flags).
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';

/** A bad command line: the command prints the message and its usage, and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** `parseArgs` with flags only (no positionals), its errors as UsageError. */
export function parseOptions<T extends NonNullable<ParseArgsConfig['options']>>(
  args: string[],
  options: T,
): ReturnType<typeof parseArgs<{ args: string[]; options: T; strict: true; allowPositionals: false }>>['values'] {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** `parseArgs` with flags and positionals (`dkv lease grant 10 --endpoints …`), its errors as UsageError. */
export function parseCommand<T extends NonNullable<ParseArgsConfig['options']>>(
  args: string[],
  options: T,
): ReturnType<typeof parseArgs<{ args: string[]; options: T; strict: true; allowPositionals: true }>> {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: true });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** A whole number option within [min, max]; undefined keeps the fallback. */
export function intOption(value: string | undefined, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (!/^-?\d+$/.test(value)) throw new UsageError(`--${name} must be a whole number, got "${value}"`);
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be between ${min} and ${max}, got ${value}`);
  return n;
}

/** Runs a command body, turning usage errors into a message and exit code 2. */
export async function withUsage(help: string, body: () => Promise<number> | number): Promise<number> {
  try {
    return await body();
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`dkv: ${error.message}\n\n${help}`);
      return 2;
    }
    throw error;
  }
}

/** host:port list; an http:// scheme is dropped, https:// refused (`command` has no TLS). */
export function parseEndpoints(value: string, command = 'dkv bench'): string[] {
  const endpoints = value.split(',').map((e) => e.trim()).filter((e) => e !== '');
  if (endpoints.length === 0) throw new UsageError('--endpoints must name at least one host:port');
  return endpoints.map((endpoint) => {
    if (/^https:\/\//i.test(endpoint)) throw new UsageError(`--endpoints: TLS is not supported by ${command}, got "${endpoint}"`);
    const bare = endpoint.replace(/^http:\/\//i, '').replace(/\/$/, '');
    const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(bare);
    const port = match === null ? NaN : Number(match[2]);
    if (match === null || port < 1 || port > 65535) {
      throw new UsageError(`--endpoints: expected host:port, got "${endpoint}"`);
    }
    return bare;
  });
}
