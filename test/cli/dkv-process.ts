/**
 * Runs `node bin/dkv.js …` as users run it, for the CLI suites. The commands run the build when it
 * is fresh (bin/load.js falls back to the sources when it is stale or missing), as the clusters'
 * servers do: what users run, and ~3x faster to start than the sources through tsx. The caller's
 * DKV_FROM_SOURCE, endpoints and credentials are cleared for them; `env` sets what a case needs.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { CommandResult } from '../server/cluster-harness.js';

export const dkvBin = join(import.meta.dirname, '..', '..', 'bin', 'dkv.js');
/** A command still running after this is killed (its result then says so: code null). */
export const commandTimeoutMs = 30_000;

export interface DkvOptions {
  readonly input?: string;
  readonly env?: Record<string, string | undefined>;
}

export interface Running {
  readonly exited: Promise<CommandResult>;
  readonly stdout: () => string;
  signal(name: NodeJS.Signals): void;
}

/** The environment of a dkv run: none of the caller's endpoints or credentials. */
export function dkvEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    DKV_FROM_SOURCE: undefined,
    DKV_ENDPOINTS: undefined,
    ETCDCTL_ENDPOINTS: undefined,
    DKV_USER: undefined,
    ETCDCTL_USER: undefined,
    DKV_PASSWORD: undefined,
    ETCDCTL_PASSWORD: undefined,
    ...extra,
  };
}

/** Starts `dkv ARGS`; its output is collected, its stdin gets `input` then closes. */
export function startDkv(args: readonly string[], options: DkvOptions = {}): Running {
  const child = spawn(process.execPath, [dkvBin, ...args], { env: dkvEnv(options.env), stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdin.end(options.input ?? '');
  const timer = setTimeout(() => child.kill('SIGKILL'), commandTimeoutMs);
  const exited = new Promise<CommandResult>((resolve) =>
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
  return { exited, stdout: () => stdout, signal: (name) => child.kill(name) };
}
