/**
 * A process's scheduling state from /proc/<pid>/stat (Linux): `R` running, `S` sleeping, `T`
 * stopped by a signal, `Z` zombie, … The lock workload reads it to prove a paused holder was
 * really stopped (SIGSTOP is asynchronous: the state turns `T` once the kernel has delivered it).
 */
import { readFileSync } from 'node:fs';

/** Polls between reads while waiting for a state. */
export const procStatePollMs = 2;

/** The state letter, or undefined if the process is gone. */
export function processState(pid: number): string | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // "pid (comm) S …": comm may hold spaces and parentheses, so the state follows the last ')'.
  const close = stat.lastIndexOf(')');
  const state = stat.slice(close + 2, close + 3);
  return close < 0 || state === '' ? undefined : state;
}

/** Waits until `pid`'s state is `wanted` (true) or `deadlineMs` passed (false). */
export async function waitForState(pid: number, wanted: (state: string | undefined) => boolean, deadlineMs: number): Promise<boolean> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    if (wanted(processState(pid))) return true;
    if (Date.now() >= until) return false;
    await new Promise((resolve) => setTimeout(resolve, procStatePollMs));
  }
}
