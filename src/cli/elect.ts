/**
 * `dkv elect NAME VALUE` and `dkv elect NAME --listen`: etcdctl's elect on the cluster's Election
 * service (v3electionpb), campaigning under a session lease this process keeps alive.
 */
import { strict as assert } from 'node:assert';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Decoded, longsAsStrings, methodCodec } from '../client/index.js';
// The limits alone: the lease engine's front door loads the engine and the protos.
import * as leaseLimits from '../engines/lease/limits.js';
import { UsageError, intOption, parseCommand, withUsage } from './args.js';
import { Interrupts, sessionKeyOf, waitingCall } from './holding.js';
import { type Endpoints, exitFailure, isStaleToken, remoteOf, remoteOptions, remoteOptionsHelp, reportFailure } from './remote.js';
import { Session, describeLoss, leaseHex } from './session.js';

export const electHelp = `Usage: dkv elect NAME VALUE [options]
       dkv elect NAME --listen [options]

With VALUE: campaigns in the election NAME through the cluster's Election service (any node
serves it) under a session lease this process keeps alive (a keep-alive every third of its TTL,
on the next endpoint when one fails), waiting behind the leader and the candidates before it.
Once elected, prints the leader's key and VALUE, a line each, as etcdctl elect prints them, and
stays leader until SIGINT or SIGTERM, then resigns and revokes the lease. If the lease is lost
meanwhile (a renewal answered with TTL 0, or none got through within the TTL), prints an error
and exits 1: someone else may lead by then.

With --listen: prints the leader's key and value, a line each, now and at every change of
leader or value, until SIGINT or SIGTERM; when the node serving it fails, it goes on from the
next endpoint without printing a leader twice.

Options:
  -l, --listen    observe instead of campaigning
  --ttl S         the session lease's TTL in seconds (default 60, etcd's session default, which
                  etcdctl elect uses; the server raises a shorter one to its minimum)
  --json          print each leader as one JSON line: {"name","key","value","rev","lease"}
                  (rev: the leader key's create revision; lease in hex; also -w json)
${remoteOptionsHelp}
Exit status: 0 after leading or listening until a signal; 1 when the server refused or could
not be reached, the lease was lost, the observer was lost, or a signal came before this
candidate was elected; 2 on a bad command line.
`;

/** etcd's concurrency.Session default TTL, which etcdctl elect's session has. */
export const electTtlSecondsDefault = 60;
/** --listen: consecutive failed Observe streams per endpoint before giving up. */
const observeFailuresPerEndpointMax = 3;
const observeRetryDelayMsStep = 100;
const observeRetryDelayMsMax = 1000;

const electionCodec = (method: string) => methodCodec('v3electionpb.Election', method, longsAsStrings);

interface Leader {
  readonly key: Buffer;
  readonly value: Buffer;
  /** The leader key's create revision (decimal text). */
  readonly rev: string;
  /** Its lease (decimal int64 text). */
  readonly lease: string;
}

export async function electCommand(args: string[]): Promise<number> {
  return withUsage(electHelp, async () => {
    const { values: o, positionals } = parseCommand(args, {
      listen: { type: 'boolean', short: 'l' },
      ttl: { type: 'string' },
      json: { type: 'boolean' },
      ...remoteOptions,
    });
    if (o.help === true) {
      process.stdout.write(electHelp);
      return 0;
    }
    const [name, value, ...extra] = positionals;
    if (name === undefined || name === '' || extra.length > 0) throw new UsageError('elect takes one election name argument and an optional proposal argument');
    const listen = o.listen === true;
    if (value === undefined && !listen) throw new UsageError('no proposal argument but --listen not set');
    if (value !== undefined && listen) throw new UsageError('proposal given but --listen is set');
    if (listen && o.ttl !== undefined) throw new UsageError('--ttl applies to a campaign, not to --listen');
    const ttl = intOption(o.ttl, 'ttl', electTtlSecondsDefault, 1, leaseLimits.leaseTtlSecondsMax);
    const remote = remoteOf(o, 'dkv elect');
    const endpoints = remote.endpoints;
    const json = o.json === true || remote.format === 'json';
    const interrupts = new Interrupts();
    const print = (leader: Leader): void => printLeader(name, leader, json);
    try {
      if (value === undefined) return await listenTo(endpoints, name, interrupts, print);
      return await campaign({ endpoints, interrupts, name, value, ttl, print });
    } catch (error) {
      return reportFailure('dkv elect', error);
    } finally {
      interrupts.dispose();
      endpoints.close();
    }
  }, 'dkv elect');
}

function printLeader(name: string, leader: Leader, json: boolean): void {
  if (json) {
    const line = { name, key: leader.key.toString(), value: leader.value.toString(), rev: leader.rev, lease: leaseHex(leader.lease) };
    process.stdout.write(`${JSON.stringify(line)}\n`);
  } else process.stdout.write(`${leader.key.toString()}\n${leader.value.toString()}\n`);
}

async function campaign(run: { endpoints: Endpoints; interrupts: Interrupts; name: string; value: string; ttl: number; print: (leader: Leader) => void }): Promise<number> {
  const { endpoints, interrupts, name } = run;
  const session = await Session.open(endpoints, run.ttl);
  const waiting = new AbortController();
  const stop = (): void => waiting.abort();
  interrupts.signal.addEventListener('abort', stop, { once: true });
  let lost = false;
  const loss = session.lost.then((reason) => {
    lost = true;
    waiting.abort();
    return describeLoss(session.id, reason);
  });
  const ownKey = sessionKeyOf(name, session.id);
  let leaderKey: Decoded;
  try {
    if (interrupts.signal.aborted) stop();
    waiting.signal.throwIfAborted();
    const response = await waitingCall(endpoints, electionCodec('Campaign'), { name: Buffer.from(name), value: Buffer.from(run.value), lease: session.id }, ownKey, waiting.signal);
    leaderKey = response.leader as Decoded;
    assert((leaderKey.key as Buffer).equals(ownKey), `the Election service answered with the key ${String(leaderKey.key)}, not ${ownKey.toString()}`);
  } catch (error) {
    if (!waiting.signal.aborted) {
      // Refused (permission denied, …): the session's keep-alive must not keep the process alive.
      await session.close().catch(() => undefined);
      throw error;
    }
    if (lost) {
      process.stderr.write(`dkv elect: the campaign in "${name}" ended: the session ${await loss}\n`);
      return exitFailure;
    }
    process.stderr.write(`dkv elect: interrupted before "${name}" elected this candidate\n`);
    await session.close().catch((error: unknown) => reportFailure('dkv elect', error));
    return exitFailure;
  } finally {
    interrupts.signal.removeEventListener('abort', stop);
  }
  run.print({ key: ownKey, value: Buffer.from(run.value), rev: String(leaderKey.rev), lease: session.id });
  const ended = await Promise.race([interrupts.received.then(() => undefined), loss]);
  if (ended !== undefined) {
    process.stderr.write(`dkv elect: lost the leadership of "${name}": the session ${ended}; someone else may lead now\n`);
    return exitFailure;
  }
  return resign(endpoints, session, leaderKey);
}

/** Resigns, then revokes the lease (which deletes the leader key too): 0 if either took the key away. */
async function resign(endpoints: Endpoints, session: Session, leaderKey: Decoded): Promise<number> {
  const errors: unknown[] = [];
  await endpoints.unary(electionCodec('Resign'), { leader: leaderKey }).catch((error: unknown) => errors.push(error));
  await session.close().catch((error: unknown) => errors.push(error));
  if (errors.length < 2) return 0;
  for (const error of errors) reportFailure('dkv elect', error);
  process.stderr.write(`dkv elect: the leadership ends when lease ${session.hex} expires (TTL ${session.ttlSeconds} s)\n`);
  return exitFailure;
}

/**
 * Prints the leader now and at every change (the Observe stream), until a signal. A failed stream
 * is opened again on the next endpoint; the leader it starts with is skipped if already printed.
 */
async function listenTo(endpoints: Endpoints, name: string, interrupts: Interrupts, print: (leader: Leader) => void): Promise<number> {
  let last: Decoded | undefined;
  const isLast = (kv: Decoded): boolean =>
    last !== undefined && (last.key as Buffer).equals(kv.key as Buffer) && last.create_revision === kv.create_revision && last.mod_revision === kv.mod_revision;
  for (let failures = 0; ; ) {
    const auth = await endpoints.authOptions();
    const ended = await new Promise<{ error: unknown } | 'interrupted'>((resolve) => {
      const stream = endpoints.channel().serverStream(electionCodec('Observe'), { name: Buffer.from(name) }, auth);
      const finish = (result: { error: unknown } | 'interrupted'): void => {
        interrupts.signal.removeEventListener('abort', onSignal);
        stream.removeAllListeners();
        stream.on('error', () => undefined);
        stream.cancel();
        resolve(result);
      };
      const onSignal = (): void => finish('interrupted');
      stream.on('data', (response: Decoded) => {
        failures = 0;
        const kv = response.kv as Decoded;
        if (isLast(kv)) return;
        last = kv;
        print({ key: kv.key as Buffer, value: kv.value as Buffer, rev: String(kv.create_revision), lease: String(kv.lease) });
      });
      stream.on('error', (error) => finish({ error }));
      stream.on('end', () => finish({ error: new Error('the server ended the Observe stream') }));
      if (interrupts.signal.aborted) onSignal();
      else interrupts.signal.addEventListener('abort', onSignal, { once: true });
    });
    if (ended === 'interrupted') return 0;
    if (isStaleToken(ended.error)) await endpoints.discardToken(auth);
    failures++;
    if (failures >= endpoints.list.length * observeFailuresPerEndpointMax) {
      reportFailure('dkv elect', ended.error);
      process.stderr.write('dkv elect: observer lost\n');
      return exitFailure;
    }
    endpoints.failover();
    try {
      await sleep(Math.min(observeRetryDelayMsMax, observeRetryDelayMsStep * failures), undefined, { signal: interrupts.signal });
    } catch {
      return 0;
    }
  }
}
