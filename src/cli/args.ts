/**
 * Flag parsing for every `dkv` command, `dkv jepsen sim` and `dkv jepsen run` included (jepsen-lite
 * keeps its commands beside the code they drive and imports this file for their flags).
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';

/** A bad command line: the command prints the message and its usage, and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** The closest of `candidates` to `word` within a small edit distance, for "did you mean". */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const candidate of candidates) {
    const distance = editDistance(word, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/** Levenshtein distance (insertions, deletions, substitutions, and adjacent swaps count 1). */
export function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    const row: number[] = [i];
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        row.push(j);
        continue;
      }
      const above = rows[i - 1]!;
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(above[j]! + 1, row[j - 1]! + 1, above[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      row.push(d);
    }
    rows.push(row);
  }
  return rows[a.length]![b.length]!;
}

/** Node's parse error as a UsageError; an unknown flag gets the nearest known one suggested. */
export function usageErrorOf(error: unknown, options: NonNullable<ParseArgsConfig['options']>): UsageError {
  const code = (error as { code?: string }).code;
  const message = (error as Error).message;
  if (code !== 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return new UsageError(message);
  const flag = /[Uu]nknown option '([^']+)'/.exec(message)?.[1] ?? message;
  const known = Object.entries(options).flatMap(([name, option]) => [`--${name}`, ...(option.short === undefined ? [] : [`-${option.short}`])]);
  const suggestion = closest(flag.replace(/=.*$/, ''), known.filter((k) => k.startsWith('--')));
  return new UsageError(`unknown flag ${flag}${suggestion === undefined ? '' : ` (did you mean ${suggestion}?)`}`);
}

/** `parseArgs` with flags only (no positionals), its errors as UsageError. */
export function parseOptions<T extends NonNullable<ParseArgsConfig['options']>>(
  args: string[],
  options: T,
): ReturnType<typeof parseArgs<{ args: string[]; options: T; strict: true; allowPositionals: false }>>['values'] {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw usageErrorOf(error, options);
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
    throw usageErrorOf(error, options);
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

/**
 * Runs a command body, turning usage errors into "<command>: <message>", the usage text (both on
 * stderr) and exit code 2. `command` is how the message starts ("dkv get").
 */
export async function withUsage(help: string, body: () => Promise<number> | number, command = 'dkv'): Promise<number> {
  try {
    return await body();
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`${command}: ${error.message}\n\n${help}`);
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

const durationUnitsMs: Readonly<Record<string, number>> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A Go duration ("5s", "1m30s", "500ms", as etcdctl's --command-timeout takes) in ms. */
export function durationOption(value: string | undefined, name: string, fallbackMs: number): number {
  if (value === undefined) return fallbackMs;
  const parts = [...value.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== value) throw new UsageError(`--${name} must be a duration such as 5s or 500ms, got "${value}"`);
  const ms = parts.reduce((sum, p) => sum + Number(p[1]) * durationUnitsMs[p[2]!]!, 0);
  if (!(ms > 0)) throw new UsageError(`--${name} must be positive, got "${value}"`);
  return ms;
}
