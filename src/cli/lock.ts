/**
 * `dkv lock NAME [-- COMMAND…]`: etcdctl's lock on the cluster's Lock service (v3lockpb), under a
 * session lease this process keeps alive, with the lock's fencing token.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { strict as assert } from 'node:assert';
import { constants } from 'node:os';
import { type Decoded, longsAsStrings, methodCodec } from '../client/index.js';
// The limits alone: the lease engine's front door loads the engine and the protos.
import * as leaseLimits from '../engines/lease/limits.js';
import { UsageError, intOption, parseCommand, withUsage } from './args.js';
import { Interrupts, sessionKeyOf, waitingCall } from './holding.js';
import { type Endpoints, exitFailure, remoteOf, remoteOptions, remoteOptionsHelp, reportFailure } from './remote.js';
import { type LeaseLoss, Session, describeLoss } from './session.js';

export const lockHelp = `Usage: dkv lock NAME [options]
       dkv lock NAME [options] -- COMMAND [ARGS…]

Acquires the lock NAME through the cluster's Lock service (any node serves it), waiting behind
its holder and the ones queued before, under a session lease this process keeps alive (a
keep-alive every third of its TTL, on the next endpoint when one fails).

Without COMMAND: prints the lock's key and an empty line (the key's value), as etcdctl lock
prints them, then holds the lock until SIGINT or SIGTERM, unlocks it and revokes the lease.
--json prints one JSON line instead: {"name","key","lease","fencing_token"}.

With COMMAND: runs it while holding the lock, its environment holding
  ETCD_LOCK_KEY       the lock's key (as etcdctl sets it)
  ETCD_LOCK_REV       the key's create revision (as etcdctl sets it)
  DKV_FENCING_TOKEN   the same number: the fencing token, which grows from one holder of the
                      lock to the next; a write fenced with it (dkv.v1.KV's fence, or a Txn
                      comparing create_revision(ETCD_LOCK_KEY) with it) fails once the lock is
                      someone else's
SIGINT and SIGTERM are passed on to COMMAND. When it exits the lock is released and dkv exits
with its status (128 + N when signal N ended it). Put "--" before a COMMAND that has options.

If the session lease is lost while the lock is held (a renewal answered with TTL 0, or none got
through within the TTL), dkv prints an error, sends COMMAND SIGTERM (SIGKILL 10 s later if it
is still running) and exits 1: the lock may be someone else's by then.

Options:
  --ttl S         the session lease's TTL in seconds (default 10, as etcdctl lock's --ttl; the
                  server raises a shorter one to its minimum, 1.5 election timeouts)
  --json          without COMMAND: print the lock as one JSON line, fencing token included
                  (also -w json)
${remoteOptionsHelp}
Exit status: COMMAND's status when one ran; otherwise 0 when the lock was held and released,
1 when the server refused or could not be reached, the lease was lost, or a signal came before
the lock was acquired; 2 on a bad command line.
`;

/** etcdctl lock's --ttl default (etcd's concurrency.Session default, used by etcdctl elect, is 60). */
export const lockTtlSecondsDefault = 10;
/** How long a COMMAND has to exit after SIGTERM, once the lock is lost, before SIGKILL. */
const commandKillGraceMs = 10_000;

const lockCodec = (method: string) => methodCodec('v3lockpb.Lock', method, longsAsStrings);

interface Held {
  readonly name: string;
  readonly key: Buffer;
  /** The key's create revision (decimal text): the fencing token. */
  readonly token: string;
}

export async function lockCommand(args: string[]): Promise<number> {
  return withUsage(lockHelp, async () => {
    const { values: o, positionals } = parseCommand(args, {
      ttl: { type: 'string' },
      json: { type: 'boolean' },
      ...remoteOptions,
    });
    if (o.help === true) {
      process.stdout.write(lockHelp);
      return 0;
    }
    const [name, ...command] = positionals;
    if (name === undefined || name === '') throw new UsageError('lock takes a lock name argument and an optional command to execute');
    if ((o.json === true || o['write-out'] === 'json') && command.length > 0) throw new UsageError('--json applies only without a COMMAND');
    const ttl = intOption(o.ttl, 'ttl', lockTtlSecondsDefault, 1, leaseLimits.leaseTtlSecondsMax);
    const remote = remoteOf(o, 'dkv lock');
    const endpoints = remote.endpoints;
    const json = o.json === true || remote.format === 'json';
    const interrupts = new Interrupts();
    try {
      return await lockAndHold({ endpoints, interrupts, name, ttl, command, json });
    } catch (error) {
      return reportFailure('dkv lock', error);
    } finally {
      interrupts.dispose();
      endpoints.close();
    }
  }, 'dkv lock');
}

async function lockAndHold(run: { endpoints: Endpoints; interrupts: Interrupts; name: string; ttl: number; command: string[]; json: boolean }): Promise<number> {
  const { endpoints, interrupts, name } = run;
  const session = await Session.open(endpoints, run.ttl);
  const lost = session.lost.then((loss) => ({ lost: loss }));
  let acquired: Awaited<ReturnType<typeof acquire>>;
  try {
    acquired = await acquire(endpoints, session, name, interrupts);
  } catch (error) {
    // Refused (permission denied, …): the session's keep-alive must not keep the process alive.
    await session.close().catch(() => undefined);
    throw error;
  }
  if ('lost' in acquired) {
    session.abandon();
    process.stderr.write(`dkv lock: stopped waiting for the lock "${name}": the session ${describeLoss(session.id, acquired.lost)}\n`);
    return exitFailure;
  }
  if ('interrupted' in acquired) {
    process.stderr.write(`dkv lock: interrupted while waiting for the lock "${name}"\n`);
    await release(endpoints, session, undefined);
    return exitFailure;
  }
  const held = acquired.held;
  const announceLoss = (loss: LeaseLoss): void => reportLoss(name, session, loss, run.command.length > 0 ? '; stopping the command (SIGTERM)' : '');
  let outcome: { code: number } | { lost: LeaseLoss };
  if (run.command.length === 0) {
    printHeld(held, session, run.json);
    outcome = await Promise.race([interrupts.received.then(() => ({ code: 0 })), lost]);
    if ('lost' in outcome) announceLoss(outcome.lost);
  } else if (interrupts.signal.aborted) {
    process.stderr.write(`dkv lock: interrupted before the command started\n`);
    outcome = { code: exitFailure };
  } else outcome = await runCommand(run.command, held, lost, interrupts, announceLoss);
  // The lock key went with the lease, or goes when the server expires it: nothing to release.
  if ('lost' in outcome) return exitFailure;
  const released = await release(endpoints, session, held.key);
  return outcome.code === 0 && !released ? exitFailure : outcome.code;
}

/** Waits for the lock, until a signal comes or the session is lost. */
async function acquire(endpoints: Endpoints, session: Session, name: string, interrupts: Interrupts): Promise<{ held: Held } | { lost: LeaseLoss } | { interrupted: true }> {
  const waiting = new AbortController();
  let loss: LeaseLoss | undefined;
  const stop = (): void => waiting.abort();
  interrupts.signal.addEventListener('abort', stop, { once: true });
  void session.lost.then((reason) => {
    loss = reason;
    waiting.abort();
  });
  const ownKey = sessionKeyOf(name, session.id);
  try {
    if (interrupts.signal.aborted) return { interrupted: true };
    const response = await waitingCall(endpoints, lockCodec('Lock'), { name: Buffer.from(name), lease: session.id }, ownKey, waiting.signal);
    const key = response.key as Buffer;
    const token = String((response.header as Decoded).revision);
    assert(key.equals(ownKey), `the Lock service answered with the key ${key.toString()}, not ${ownKey.toString()}`);
    assert(/^[1-9][0-9]*$/.test(token), `a fencing token is a positive revision, got ${token}`);
    return { held: { name, key, token } };
  } catch (error) {
    if (!waiting.signal.aborted) throw error;
    return loss !== undefined ? { lost: loss } : { interrupted: true };
  } finally {
    interrupts.signal.removeEventListener('abort', stop);
  }
}

function printHeld(held: Held, session: Session, json: boolean): void {
  const key = held.key.toString();
  if (json) process.stdout.write(`${JSON.stringify({ name: held.name, key, lease: session.hex, fencing_token: held.token })}\n`);
  // etcdctl prints the key and its (empty) value, a line each.
  else process.stdout.write(`${key}\n\n`);
}

/**
 * Runs the command holding the lock; resolves with its exit status, or, if the session is lost
 * first, with the loss, after `onLost`, SIGTERM to the command (SIGKILL after a grace) and its exit.
 */
async function runCommand(
  command: string[],
  held: Held,
  lost: Promise<{ lost: LeaseLoss }>,
  interrupts: Interrupts,
  onLost: (loss: LeaseLoss) => void,
): Promise<{ code: number } | { lost: LeaseLoss }> {
  const [file, ...args] = command as [string, ...string[]];
  const env = { ...process.env, ETCD_LOCK_KEY: held.key.toString(), ETCD_LOCK_REV: held.token, DKV_FENCING_TOKEN: held.token };
  const child = spawn(file, args, { stdio: 'inherit', env });
  const exited = exitOf(child);
  const stopForwarding = interrupts.onEach((signal) => child.kill(signal));
  try {
    const first = await Promise.race([exited.then((code) => ({ code })), lost]);
    if ('code' in first) return first;
    onLost(first.lost);
    child.kill('SIGTERM');
    const kill = setTimeout(() => child.kill('SIGKILL'), commandKillGraceMs);
    await exited;
    clearTimeout(kill);
    return first;
  } finally {
    stopForwarding();
  }
}

/** The child's exit status: its code, 128 + N for signal N, 1 if it could not be started. */
function exitOf(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    child.once('error', (error) => {
      process.stderr.write(`dkv lock: cannot run ${child.spawnfile}: ${error.message}\n`);
      resolve(exitFailure);
    });
    child.once('exit', (code, signal) => {
      if (code !== null) resolve(code);
      else resolve(128 + (signal === null ? 0 : constants.signals[signal]));
    });
  });
}

function reportLoss(name: string, session: Session, loss: LeaseLoss, next: string): void {
  session.abandon();
  process.stderr.write(`dkv lock: lost the lock "${name}" while holding it: the session ${describeLoss(session.id, loss)}; the lock may be someone else's now${next}\n`);
}

/**
 * Unlocks (deletes the lock key) and revokes the session lease, which deletes the key too: the
 * lock is released if either succeeds. False, with the errors printed, if both failed (the lock
 * is then released when the lease expires).
 */
async function release(endpoints: Endpoints, session: Session, key: Buffer | undefined): Promise<boolean> {
  const errors: unknown[] = [];
  if (key !== undefined) {
    try {
      await endpoints.unary(lockCodec('Unlock'), { key });
    } catch (error) {
      errors.push(error);
    }
  }
  try {
    await session.close();
  } catch (error) {
    errors.push(error);
  }
  if (errors.length < (key === undefined ? 1 : 2)) return true;
  for (const error of errors) reportFailure('dkv lock', error);
  process.stderr.write(`dkv lock: the lock is released when lease ${session.hex} expires (TTL ${session.ttlSeconds} s)\n`);
  return false;
}
