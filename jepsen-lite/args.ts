/**
 * Flag parsing for every `dkv` command: `src/cli/args.ts` re-exports it, and `dkv jepsen sim` /
 * `dkv jepsen run` use it here (jepsen-lite keeps its commands beside the code they drive and
 * may not import `src/cli/`).
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';

/** A bad command line: the command prints the message and its usage, and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** `parseArgs` with flags only (no positionals), its errors as UsageError. */
export function parseFlags<T extends NonNullable<ParseArgsConfig['options']>>(
  args: string[],
  options: T,
): ReturnType<typeof parseArgs<{ args: string[]; options: T; strict: true; allowPositionals: false }>>['values'] {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** A whole number option within [min, max]; undefined keeps the fallback. */
export function wholeOption(value: string | undefined, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (!/^-?\d+$/.test(value)) throw new UsageError(`--${name} must be a whole number, got "${value}"`);
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be between ${min} and ${max}, got ${value}`);
  return n;
}
