/**
 * The server's log: one line per event, `<ISO time> <LEVEL> <member name>: <message>`, written
 * to every output of --log-outputs (stderr, stdout or files). Lines under --log-level are dropped.
 * Member and cluster ids are written in hex, as etcd does (`formatId` of src/cluster).
 */
import { appendFileSync } from 'node:fs';
import type { LogLevel } from './config.js';

export interface ServerLogger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

const rank: Readonly<Record<LogLevel, number>> = { debug: 0, info: 1, warn: 2, error: 3 };

export function formatLogLine(time: Date, level: LogLevel, name: string, message: string): string {
  return `${time.toISOString()} ${level.toUpperCase()} ${name}: ${message}\n`;
}

export function createServerLogger(options: { name: string; level: LogLevel; outputs: readonly string[] }): ServerLogger {
  const writers = options.outputs.map((output): ((line: string) => void) => {
    if (output === 'stderr') return (line) => process.stderr.write(line);
    if (output === 'stdout') return (line) => process.stdout.write(line);
    return (line) => appendFileSync(output, line);
  });
  const write = (level: LogLevel, message: string): void => {
    if (rank[level] < rank[options.level]) return;
    const line = formatLogLine(new Date(), level, options.name, message);
    for (const writer of writers) writer(line);
  };
  return {
    debug: (m) => write('debug', m),
    info: (m) => write('info', m),
    warn: (m) => write('warn', m),
    error: (m) => write('error', m),
  };
}
