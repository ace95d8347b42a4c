/**
 * The server's log, written to every output of --log-outputs (stderr, stdout or files); lines
 * under --log-level are dropped. Two formats (--log-format):
 * - `text`: `<ISO time> <LEVEL> <member name>: <message>` then the fields as ` key=value`;
 * - `json`: one object per line, `{"level","ts","name","msg", …fields}` (the shape etcd's zap
 *   logger writes, so the same log tools read both).
 * Member and cluster ids are written in hex, as etcd does (`formatId` of src/cluster). A line
 * about one client request carries its `request_id` field.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { LogFormat, LogLevel } from './config.js';

/** Structured context of a line: request id, shard, member id, durations… */
export type LogFields = Readonly<Record<string, string | number | boolean | undefined>>;

export interface ServerLogger {
  /** Whether debug lines are written (callers skip building them otherwise). */
  readonly debugEnabled: boolean;
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

const rank: Readonly<Record<LogLevel, number>> = { debug: 0, info: 1, warn: 2, error: 3 };

/** A value of the text format: bare when it has no space, quote or `=`, else JSON-quoted. */
function textValue(value: string | number | boolean): string {
  const text = String(value);
  return /^[^\s"=]+$/.test(text) ? text : JSON.stringify(text);
}

export function formatLogLine(time: Date, level: LogLevel, name: string, message: string, fields?: LogFields, format: LogFormat = 'text'): string {
  if (format === 'json') {
    const line: Record<string, unknown> = { level, ts: time.toISOString(), name, msg: message };
    if (fields !== undefined) {
      for (const [key, value] of Object.entries(fields)) if (value !== undefined && !(key in line)) line[key] = value;
    }
    return `${JSON.stringify(line)}\n`;
  }
  let text = `${time.toISOString()} ${level.toUpperCase()} ${name}: ${message}`;
  if (fields !== undefined) {
    for (const [key, value] of Object.entries(fields)) if (value !== undefined) text += ` ${key}=${textValue(value)}`;
  }
  return `${text}\n`;
}

export function createServerLogger(options: { name: string; level: LogLevel; outputs: readonly string[]; format?: LogFormat }): ServerLogger {
  const format = options.format ?? 'text';
  const writers = options.outputs.map((output): ((line: string) => void) => {
    if (output === 'stderr') return (line) => process.stderr.write(line);
    if (output === 'stdout') return (line) => process.stdout.write(line);
    // The file's folder may not exist yet (a --log-file beside a data dir not made yet).
    let made = false;
    return (line) => {
      if (!made) mkdirSync(dirname(output), { recursive: true });
      made = true;
      appendFileSync(output, line);
    };
  });
  const write = (level: LogLevel, message: string, fields: LogFields | undefined): void => {
    if (rank[level] < rank[options.level]) return;
    const line = formatLogLine(new Date(), level, options.name, message, fields, format);
    for (const writer of writers) writer(line);
  };
  return {
    debugEnabled: rank[options.level] <= rank.debug,
    debug: (m, f) => write('debug', m, f),
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
  };
}
