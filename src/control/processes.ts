/**
 * An instance's server process: its pid file, and whether the pid in it is still that server.
 * A pid file is stale when the process is gone (or a zombie) or the pid now belongs to another
 * program: /proc/PID/cmdline must be `… server --config-file <this instance's config.yaml>`.
 * Linux only (/proc); elsewhere a live pid is trusted.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { InstancePaths } from './home.js';

export type ProcessState =
  | { readonly state: 'running'; readonly pid: number }
  | { readonly state: 'stopped'; readonly stalePid: number | undefined; readonly staleReason: string | undefined };

export function readPidFile(paths: InstancePaths): number | 'missing' | 'garbled' {
  let text: string;
  try {
    text = readFileSync(paths.pid, 'utf8').trim();
  } catch {
    return 'missing';
  }
  const pid = Number(text);
  return /^\d+$/.test(text) && Number.isSafeInteger(pid) && pid > 0 ? pid : 'garbled';
}

export function writePidFile(paths: InstancePaths, pid: number): void {
  if (!Number.isSafeInteger(pid) || pid <= 0) throw new TypeError(`not a pid: ${pid}`);
  writeFileSync(paths.pid, `${pid}\n`);
}

export function removePidFile(paths: InstancePaths): void {
  rmSync(paths.pid, { force: true });
}

/** Why `pid` is not this instance's server, or undefined when it is. */
export function notOurServer(pid: number, configPath: string): string | undefined {
  if (!existsSync('/proc/self')) {
    try {
      process.kill(pid, 0);
      return undefined;
    } catch {
      return 'process gone';
    }
  }
  let stat: string;
  let cmdline: string[];
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return 'process gone';
  }
  // The state follows the parenthesised command name, which may itself hold spaces or ')'.
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  if (state === 'Z' || state === 'X') return 'process gone';
  const at = cmdline.indexOf('--config-file');
  if (cmdline.includes('server') && at >= 0 && cmdline[at + 1] === configPath) return undefined;
  return `pid ${pid} is now another program (${cmdline.filter((arg) => arg !== '').join(' ').slice(0, 120)})`;
}

/**
 * Whether process `pid` has exited (gone, or a zombie). A killed process loses its command line
 * while it exits, before it is a zombie: it is not our server any more, yet it still runs.
 */
export function processExited(pid: number): boolean {
  if (!existsSync('/proc/self')) {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state === 'Z' || state === 'X';
  } catch {
    return true;
  }
}

/** Running (with its pid) or stopped (with the stale pid file's pid and why, if there was one). */
export function processState(paths: InstancePaths): ProcessState {
  const pid = readPidFile(paths);
  if (pid === 'missing') return { state: 'stopped', stalePid: undefined, staleReason: undefined };
  if (pid === 'garbled') return { state: 'stopped', stalePid: undefined, staleReason: 'pid file does not hold a pid' };
  const reason = notOurServer(pid, paths.config);
  return reason === undefined ? { state: 'running', pid } : { state: 'stopped', stalePid: pid, staleReason: reason };
}

/** Signals the server's process group (start makes it a group leader), or the process alone. */
export function signalServer(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    process.kill(pid, signal);
  }
}
