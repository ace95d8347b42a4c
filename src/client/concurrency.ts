/**
 * Locks and elections through etcd's `v3lockpb.Lock` and `v3electionpb.Election` services (the
 * server runs etcd's Mutex and Election recipes). A holder's key is `<name>/<lease in hex>`, so
 * sending Lock or Campaign again with the same lease finds the same key: both are retried like
 * reads. Without a lease of the caller's, each takes one of its own (TTL `ttl`, kept alive) and
 * revokes it on unlock, resign, or failure.
 */
import { AsyncQueue } from './async-queue.js';
import { Backoff } from './backoff.js';
import { type ClientCore, fatalStreamError, isAborted, type Server } from './core.js';
import { type Decoded, longsAsStrings, methodCodec } from './etcd-channel.js';
import { DkvError, isDkvError } from './errors.js';
import type { CallOptionsCommon } from './kv.js';
import { Lease } from './lease.js';
import { type Bytes, headerFromWire, type KeyValue, kvFromWire, type LeaseId, leaseToWire, revisionFromWire, toBytes } from './wire.js';

/** The TTL (seconds) of the lease a lock or campaign takes when the caller gives none. */
export const sessionTtlSecondsDefault = 10;

/**
 * A fencing token: the lock key and its create revision. A later holder's token has a higher
 * revision; a write guarded by a token applies only while that key still exists with that
 * create revision (`DkvClient.guardedPut`).
 */
export interface FencingToken {
  readonly key: Buffer;
  readonly revision: number;
}

/** Options of `lock` and `campaign`. */
export interface SessionOptions {
  /** Hold the key under this lease (the caller keeps it alive). */
  readonly lease?: Lease | LeaseId;
  /** Without `lease`: the TTL (seconds) of the lease taken for it (default `sessionTtlSecondsDefault`). */
  readonly ttl?: number;
  /** Stops waiting (rejects with ABORTED). */
  readonly signal?: AbortSignal;
  /** Wait at most this long (default: until the signal aborts). */
  readonly timeoutMs?: number;
}

/** A held lock. */
export interface LockHandle {
  /** The lock key (`<name>/<lease hex>`). */
  readonly key: Buffer;
  /** The revision the Lock call answered at. */
  readonly revision: number;
  readonly fencingToken: FencingToken;
  /** The lease the key lives under. */
  readonly lease: bigint;
  /** Releases the lock (and revokes the lease the lock took for itself). */
  unlock(options?: CallOptionsCommon): Promise<void>;
}

/** What locks and elections need of the client. */
export interface ConcurrencyHost {
  readonly core: ClientCore;
  grant(ttl: number): Promise<Lease>;
  get(key: Bytes): Promise<KeyValue | undefined>;
}

interface Session {
  readonly lease: bigint;
  readonly own: Lease | undefined;
}

async function session(host: ConcurrencyHost, options: SessionOptions): Promise<Session> {
  if (options.lease !== undefined) {
    const lease = options.lease instanceof Lease ? options.lease.id : BigInt(leaseToWire(options.lease));
    return { lease, own: undefined };
  }
  const own = await host.grant(options.ttl ?? sessionTtlSecondsDefault);
  return { lease: own.id, own };
}

/**
 * Deletes this session's key of lock or election `name` (`<name>/<lease in hex>`, etcd's
 * naming), before a Lock or Campaign whose outcome was unknown is sent again: the retry then
 * makes a new key, and the first attempt's server, cleaning up after the call it lost, deletes
 * only the key with the create revision it made.
 */
async function deleteOwnKey(host: ConcurrencyHost, name: Buffer, lease: bigint): Promise<void> {
  const hex = lease < 0n ? `-${(-lease).toString(16)}` : lease.toString(16);
  const key = Buffer.concat([name, Buffer.from(`/${hex}`)]);
  await host.core.unary({ service: 'etcdserverpb.KV', method: 'DeleteRange', request: { key }, kind: 'write', retry: 'safe', what: 'lock key cleanup' });
}

async function endSession(s: Session): Promise<void> {
  if (s.own !== undefined) await s.own.revoke().catch(() => {});
}

function waitOptions(options: SessionOptions): { waits: boolean; timeoutMs?: number; signal?: AbortSignal } {
  return options.timeoutMs === undefined ? { waits: true, signal: options.signal } : { waits: false, timeoutMs: options.timeoutMs, signal: options.signal };
}

/** etcd's Lock: waits until the lock `name` is this caller's. */
export async function lock(host: ConcurrencyHost, name: Bytes, options: SessionOptions = {}): Promise<LockHandle> {
  const s = await session(host, options);
  try {
    const nameBytes = toBytes(name, 'name');
    const response = await host.core.unary({
      service: 'v3lockpb.Lock',
      method: 'Lock',
      request: { name: nameBytes, lease: s.lease.toString() },
      kind: 'write',
      retry: 'safe',
      what: 'lock',
      beforeRetry: () => deleteOwnKey(host, nameBytes, s.lease),
      ...waitOptions(options),
    });
    const key = Buffer.from(response.key as Uint8Array);
    // etcd's Lock answers at the revision it saw the lock free, not the key's own: read the token.
    const kv = await host.get(key);
    if (kv === undefined) throw new DkvError('LEASE_NOT_FOUND', `lock: the lock key ${key.toString()} is gone (its lease expired)`);
    let released = false;
    return {
      key,
      revision: headerFromWire(response.header).revision,
      fencingToken: { key, revision: kv.createRevision },
      lease: s.lease,
      unlock: async (unlockOptions: CallOptionsCommon = {}) => {
        if (released) return;
        released = true;
        try {
          await host.core.unary({ service: 'v3lockpb.Lock', method: 'Unlock', request: { key }, kind: 'write', retry: 'safe', what: 'unlock', ...unlockOptions });
        } finally {
          await endSession(s);
        }
      },
    };
  } catch (error) {
    await endSession(s);
    throw error;
  }
}

/** A won election: this caller leads `name` until it resigns or its lease ends. */
export interface Leadership {
  readonly name: Buffer;
  /** The leader key (`<name>/<lease hex>`). */
  readonly key: Buffer;
  /** The leader key's create revision. */
  readonly revision: number;
  readonly lease: bigint;
  /** Announces a new value as the leader (NOT_LEADER when no longer the leader). */
  proclaim(value: Bytes, options?: CallOptionsCommon): Promise<void>;
  /** Gives up leadership (and revokes the lease the campaign took for itself). */
  resign(options?: CallOptionsCommon): Promise<void>;
  /** The current leader's key-value (undefined when nobody leads). */
  leader(options?: CallOptionsCommon): Promise<KeyValue | undefined>;
}

/** The current leader of election `name`, or undefined. */
export async function electionLeader(core: ClientCore, name: Buffer, options: CallOptionsCommon = {}): Promise<KeyValue | undefined> {
  try {
    const response = await core.unary({ service: 'v3electionpb.Election', method: 'Leader', request: { name }, kind: 'read', retry: 'safe', what: 'election leader', ...options });
    return response.kv === undefined || response.kv === null ? undefined : kvFromWire(response.kv);
  } catch (error) {
    if (isDkvError(error) && error.serverCode === 'election-no-leader') return undefined;
    throw error;
  }
}

/** etcd's Campaign: waits until this caller leads `name`, with `value`. */
export async function campaign(host: ConcurrencyHost, name: Bytes, value: Bytes, options: SessionOptions = {}): Promise<Leadership> {
  const nameBytes = toBytes(name, 'name');
  const s = await session(host, options);
  try {
    const response = await host.core.unary({
      service: 'v3electionpb.Election',
      method: 'Campaign',
      request: { name: nameBytes, lease: s.lease.toString(), value: toBytes(value, 'value') },
      kind: 'write',
      retry: 'safe',
      what: 'campaign',
      beforeRetry: () => deleteOwnKey(host, nameBytes, s.lease),
      ...waitOptions(options),
    });
    const leader = (response.leader ?? {}) as Decoded;
    const leaderKey = { name: nameBytes, key: Buffer.from(leader.key as Uint8Array), rev: String(leader.rev), lease: s.lease.toString() };
    const core = host.core;
    let resigned = false;
    return {
      name: nameBytes,
      key: leaderKey.key,
      revision: revisionFromWire(leader.rev, 'leader revision'),
      lease: s.lease,
      proclaim: async (next, callOptions = {}) => {
        await core.unary({ service: 'v3electionpb.Election', method: 'Proclaim', request: { leader: leaderKey, value: toBytes(next, 'value') }, kind: 'write', retry: 'safe', what: 'proclaim', ...callOptions });
      },
      resign: async (callOptions = {}) => {
        if (resigned) return;
        resigned = true;
        try {
          await core.unary({ service: 'v3electionpb.Election', method: 'Resign', request: { leader: leaderKey }, kind: 'write', retry: 'safe', what: 'resign', ...callOptions });
        } finally {
          await endSession(s);
        }
      },
      leader: (callOptions) => electionLeader(core, nameBytes, callOptions),
    };
  } catch (error) {
    await endSession(s);
    throw error;
  }
}

const observeCodec = methodCodec('v3electionpb.Election', 'Observe', longsAsStrings);

/**
 * etcd's Observe: the leaders of `name` as they change (each leader key-value, including a new
 * value proclaimed). Reopens on another server when the stream breaks, skipping a leader value
 * it already delivered.
 */
export function observe(core: ClientCore, name: Buffer, options: { readonly signal?: AbortSignal } = {}): AsyncIterable<KeyValue> & { close(): void } {
  let closed = false;
  let call: ReturnType<Server['channel']['serverStream']> | undefined;
  let last: KeyValue | undefined;
  const backoff = new Backoff(core.options.reconnect);
  const close = (): void => {
    if (closed) return;
    closed = true;
    untrack();
    call?.cancel();
    queue.end();
  };
  const queue = new AsyncQueue<KeyValue>(close);
  const untrack = core.track({ close });
  const open = async (delay: boolean): Promise<void> => {
    let server: Server;
    try {
      if (delay) await core.sleep(backoff.next(), core.closeSignal);
      server = await core.pick('read', backoff, core.closeSignal);
    } catch {
      return;
    }
    if (closed) return;
    const stream = server.channel.serverStream(observeCodec, { name });
    call = stream;
    stream.on('data', (r: Decoded) => {
      if (closed || r.kv === undefined || r.kv === null) return;
      backoff.reset();
      const kv = kvFromWire(r.kv);
      if (last !== undefined && last.key.equals(kv.key) && last.modRevision >= kv.modRevision) return;
      last = kv;
      queue.push(kv);
    });
    const broken = (error: unknown): void => {
      if (closed || call !== stream) return;
      call = undefined;
      const fatal = fatalStreamError(error, 'observe');
      if (fatal !== undefined) {
        queue.fail(fatal);
        close();
        return;
      }
      core.streamFailed(server, error, 'observe');
      void open(true);
    };
    stream.on('error', broken);
    stream.on('end', () => broken(new Error('the observe stream ended')));
  };
  if (isAborted(options.signal)) close();
  else {
    options.signal?.addEventListener('abort', close, { once: true });
    void open(false);
  }
  return { [Symbol.asyncIterator]: () => queue, close };
}
