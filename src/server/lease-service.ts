/**
 * The etcd `Lease` service. Grants, revocations and renewals are lease-engine commands proposed
 * through Raft on the shard of the default store (a follower's proposal travels to the leader
 * over the peer stream it already has, and the answer comes back when this node applies it), so
 * every keep-alive answered is a deadline every replica knows. TimeToLive and Leases read this
 * node's state machine after a ReadIndex round, as a linearizable Range does.
 */
import type * as grpc from '@grpc/grpc-js';
import { type EngineCommand, EngineError } from '../engines/index.js';
import { type LeaseOutcome, grantCommand, leaseLimits, leaseOutcome, renewCommand, revokeCommand } from '../engines/lease/index.js';
import { type Int64, int64Exact, int64ToWire } from '../etcd-proto.js';
import { dkvError, toGrpcError } from '../errors.js';
import { compareBytes } from '../../storage/index.js';
import { type ShardHandle, kvEngineOf, leaseEngineOf } from '../runtime/index.js';
import { type Incoming, type StreamFrame, isMalformedFrame, serviceDefinition } from './grpc-service.js';
import { leaseGrantCost } from './quota.js';
import { type ServiceContext, callerOptions, clientError, requestOptions, responseHeader, unary } from './service-common.js';
import { leaseKeysOf, permittedCaller } from './kv-service.js';
import { type Caller, PermissionType } from '../engines/index.js';
import { leaseKeepAlivesPendingPerStreamMax } from './limits.js';

export interface LeaseServiceContext extends ServiceContext {
  readonly maxRequestBytes: number;
  /** etcd's minimum TTL: 1.5 election timeouts, rounded up to seconds; shorter grants are raised to it. */
  readonly leaseTtlSecondsMin: number;
  /** Counts each keep-alive request read from a client's stream (the `dkv_lease_keepalives_total` metric). */
  readonly keepAliveRead?: () => void;
  /** The clock remaining TTLs are measured on (ms). */
  readonly now: () => number;
  /** Where ids come from for grants that name none (shared with the Lock and Election session leases). */
  readonly ids: LeaseIdGenerator;
}

/** etcd's minimum lease TTL for an election timeout: 1.5 × it, rounded up to whole seconds. */
export function leaseTtlSecondsMinFor(electionTimeoutMs: number): number {
  return Math.ceil((3 * electionTimeoutMs) / 2 / 1000);
}

const INT63_MASK = (1n << 63n) - 1n;

/**
 * Lease ids this member proposes for grants that ask for none: its id's low 16 bits, then the
 * time it started (ms) shifted by 8 bits plus a counter, kept positive (etcd's scheme). Chosen by
 * the proposer and carried in the entry; apply never draws one.
 */
export class LeaseIdGenerator {
  private next: bigint;

  constructor(memberId: number, startMs: number) {
    this.next = (BigInt(memberId & 0xffff) << 48n) | ((BigInt(Math.floor(startMs)) << 8n) & ((1n << 48n) - 1n));
  }

  take(): bigint {
    this.next = (this.next + 1n) & INT63_MASK;
    if (this.next === 0n) this.next = 1n;
    return this.next;
  }
}

/**
 * Grants a lease of `ttlSeconds` with an id from `ids` on `shard` (a Lock or Campaign with lease 0
 * gets such a session lease, as etcd's server gives one).
 */
export async function grantLease(shard: ShardHandle, ids: LeaseIdGenerator, ttlSeconds: number, options: ReturnType<typeof requestOptions>): Promise<bigint> {
  const outcome = leaseOutcome((await shard.propose(grantCommand(ids.take(), ttlSeconds), options)).outcome);
  if (outcome.kind === 'error') throw outcome.error;
  if (outcome.kind !== 'granted') throw new Error(`grant applied as ${outcome.kind}`);
  return outcome.id;
}

interface WireLeaseId {
  ID?: Int64;
}

interface WireLeaseGrantRequest extends WireLeaseId {
  TTL?: Int64;
}

interface WireLeaseTimeToLiveRequest extends WireLeaseId {
  keys?: boolean;
}

/**
 * Renewals from every keep-alive stream of a node, gathered over one turn of the event loop and
 * proposed as one Renew command per `leaseRenewalsPerCommandMax` leases: one Raft entry (and one
 * apply) for many keep-alives, each still answered with its own lease's outcome. A revoke this
 * node proposes takes the batch along first (`proposeNow`), so that gathering never moves a
 * keep-alive behind a revoke read after it.
 */
export class RenewalBatcher {
  private batch: Array<{ readonly id: bigint; readonly resolve: (ttlSeconds: number) => void; readonly reject: (error: unknown) => void }> = [];
  /** The turn's end, when the batch is proposed unless a revoke took it along earlier. */
  private scheduled: NodeJS.Immediate | undefined;

  constructor(
    private readonly shard: () => ShardHandle,
    private readonly options: ReturnType<typeof requestOptions>,
  ) {}

  /** The renewed lease's TTL in seconds, or 0 when the lease is gone or past its deadline (etcd's answer). */
  renew(id: bigint): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.batch.push({ id, resolve, reject });
      this.scheduled ??= setImmediate(() => this.proposeNow());
    });
  }

  /**
   * Proposes the renewals gathered so far at once: what the caller proposes next on the default
   * store's shard goes after them (a shard's writes are proposed in the order they were asked).
   */
  proposeNow(): void {
    if (this.scheduled !== undefined) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    const batch = this.batch;
    this.batch = [];
    const shard = this.shard();
    for (let from = 0; from < batch.length; from += leaseLimits.leaseRenewalsPerCommandMax) {
      const part = batch.slice(from, from + leaseLimits.leaseRenewalsPerCommandMax);
      shard.propose(renewCommand(part.map((r) => r.id)), this.options).then(
        (applied) => {
          const outcome = leaseOutcome(applied.outcome);
          if (outcome.kind !== 'renewed') {
            const error = outcome.kind === 'error' ? outcome.error : new Error(`renewal applied as ${outcome.kind}`);
            for (const r of part) r.reject(error);
            return;
          }
          part.forEach((r, i) => r.resolve(outcome.renewals[i]!.ttlSeconds));
        },
        (error: unknown) => {
          for (const r of part) r.reject(error);
        },
      );
    }
  }
}

export function createLeaseService(ctx: LeaseServiceContext): { definition: ReturnType<typeof serviceDefinition>; implementation: grpc.UntypedServiceImplementation } {
  const options = requestOptions(ctx);
  const ids = ctx.ids;

  const checkSize = (raw: Buffer): void => {
    if (raw.length > ctx.maxRequestBytes) throw dkvError('request-too-large');
  };

  const propose = async (shard: ShardHandle, command: EngineCommand, caller: Caller): Promise<LeaseOutcome> => {
    const outcome = leaseOutcome((await shard.propose(command, callerOptions(ctx, caller))).outcome);
    if (outcome.kind === 'error') throw outcome.error;
    return outcome;
  };

  const revision = (shard: ShardHandle): number => kvEngineOf(shard.machine()).mvcc.revision;
  const renewals = new RenewalBatcher(() => ctx.router.defaultStore(), options);

  const implementation: grpc.UntypedServiceImplementation = {
    LeaseGrant: unary<WireLeaseGrantRequest>(async ({ raw, message }, call) => {
      checkSize(raw);
      // etcd checks no permission for a grant (keys attach later, each put checked).
      const caller = await ctx.gate.permitted(call);
      const ttl = int64Exact(message.TTL);
      if (ttl > BigInt(leaseLimits.leaseTtlSecondsMax)) throw dkvError('lease-ttl-too-large');
      const ttlSeconds = Math.max(ctx.leaseTtlSecondsMin, Number(ttl));
      const requested = int64Exact(message.ID);
      const shard = ctx.router.defaultStore();
      ctx.quota?.check(shard, leaseGrantCost);
      const outcome = await propose(shard, grantCommand(requested === 0n ? ids.take() : requested, ttlSeconds), caller);
      if (outcome.kind !== 'granted') throw new Error(`grant applied as ${outcome.kind}`);
      return { header: responseHeader(ctx, shard, revision(shard)), ID: int64ToWire(outcome.id), TTL: outcome.ttlSeconds, error: '' };
    }),
    LeaseRevoke: unary<WireLeaseId>(async ({ raw, message }, call) => {
      checkSize(raw);
      const id = int64Exact(message.ID);
      if (id === 0n) throw dkvError('lease-not-found');
      const shard = ctx.router.defaultStore();
      // Revoking deletes the lease's keys: the caller must be able to write every one (etcd's rule).
      const caller = await permittedCaller(ctx, call, () => [...leaseKeysOf(shard)(id)].map((key) => ({ key, rangeEnd: new Uint8Array(0), type: PermissionType.Write })));
      // Keep-alives this node read before the revoke are renewed before it, so they answer the
      // lease's TTL and only later ones TTL 0, as etcd's leader answers them (it renews at once,
      // outside Raft). Left to the turn's end, their renewal would be applied after the revoke.
      renewals.proposeNow();
      const outcome = await propose(shard, revokeCommand(id), caller);
      if (outcome.kind !== 'revoked') throw new Error(`revoke applied as ${outcome.kind}`);
      return { header: responseHeader(ctx, shard, outcome.revision) };
    }),
    LeaseTimeToLive: unary<WireLeaseTimeToLiveRequest>(async ({ raw, message }, call) => {
      checkSize(raw);
      const id = int64Exact(message.ID);
      const shard = ctx.router.defaultStore();
      await shard.read(options);
      // etcd 3.5's rule: the caller must be able to read every key the lease holds.
      await permittedCaller(ctx, call, () => [...leaseKeysOf(shard)(id)].map((key) => ({ key, rangeEnd: new Uint8Array(0), type: PermissionType.Read })));
      const machine = shard.machine();
      const engine = leaseEngineOf(machine);
      const lease = engine.get(id);
      const header = responseHeader(ctx, shard, kvEngineOf(machine).mvcc.revision);
      // etcd answers an unknown (expired or revoked) lease with TTL -1, not an error.
      if (lease === undefined) return { header, ID: int64ToWire(id), TTL: -1, grantedTTL: 0, keys: [] };
      const remainingMs = engine.remainingMs(id, ctx.now(), shard.term()) ?? 0;
      const keys = message.keys === true ? [...lease.keys.values()].sort(compareBytes).slice(0, leaseLimits.leaseKeysListedMax) : [];
      return { header, ID: int64ToWire(id), TTL: Math.floor(remainingMs / 1000), grantedTTL: lease.ttlSeconds, keys };
    }),
    LeaseLeases: unary<object>(async ({ raw }) => {
      checkSize(raw);
      const shard = ctx.router.defaultStore();
      await shard.read(options);
      const machine = shard.machine();
      const leases = leaseEngineOf(machine).ids().map((id) => ({ ID: int64ToWire(id) }));
      return { header: responseHeader(ctx, shard, kvEngineOf(machine).mvcc.revision), leases };
    }),
    LeaseKeepAlive: (call: grpc.ServerDuplexStream<Incoming<WireLeaseId>, object>) => keepAliveStream(ctx, call, renewals),
  };
  return { definition: serviceDefinition('etcdserverpb.Lease'), implementation };
}

/**
 * One keep-alive stream: each request renews its lease through Raft and is answered in order
 * (TTL 0 for a lease that does not exist, as etcd answers). Any other failure ends the stream
 * with its status, as etcd's does; clients open a new one. A client that sends faster than
 * renewals commit, or than it reads their answers, is paused (the stream stops reading) while
 * leaseKeepAlivesPendingPerStreamMax requests are read and unanswered or answered and unsent.
 */
function keepAliveStream(ctx: LeaseServiceContext, call: grpc.ServerDuplexStream<Incoming<WireLeaseId>, object>, renewals: RenewalBatcher): void {
  let chain: Promise<void> = Promise.resolve();
  let pending = 0;
  let ended = false;
  const fail = (error: unknown): void => {
    if (ended) return;
    ended = true;
    settleDrained();
    call.emit('error', toGrpcError(clientError(error)));
  };
  // Settles when the stream's write buffer drains, or when the stream ends (nothing more is written).
  let drained: Promise<void> = Promise.resolve();
  let settleDrained: () => void = () => undefined;
  const armDrained = (): void => {
    drained = new Promise<void>((resolve) => {
      settleDrained = resolve;
    });
  };
  armDrained();
  call.on('drain', () => {
    settleDrained();
    armDrained();
  });
  call.on('data', (request: StreamFrame<WireLeaseId>) => {
    if (ended) return;
    let id: bigint;
    try {
      if (isMalformedFrame(request)) throw request.error;
      if (request.raw.length > ctx.maxRequestBytes) throw dkvError('request-too-large');
      id = int64Exact(request.message.ID);
    } catch (error) {
      fail(error);
      return;
    }
    ctx.keepAliveRead?.();
    pending++;
    if (pending >= leaseKeepAlivesPendingPerStreamMax) call.pause();
    // Proposed at once (with every stream's renewals of this turn, in one command), answered in request order.
    const shard = ctx.router.defaultStore();
    const renewal = id === 0n ? Promise.resolve(0) : renewals.renew(id);
    chain = chain.then(async () => {
      try {
        const ttl = await renewal;
        if (ended) return;
        // An answer the client has not taken stays pending: a client that writes and never
        // reads stops being read once its answers fill the stream's buffers and flow control.
        if (!call.write({ header: responseHeader(ctx, shard, kvEngineOf(shard.machine()).mvcc.revision), ID: int64ToWire(id), TTL: ttl })) await drained;
      } catch (error) {
        fail(error instanceof EngineError ? clientError(error) : error);
      } finally {
        pending--;
        if (pending < leaseKeepAlivesPendingPerStreamMax && !ended) call.resume();
      }
    });
    renewal.catch(() => undefined);
  });
  call.on('end', () => {
    void chain.then(() => {
      if (!ended) {
        ended = true;
        call.end();
      }
    });
  });
  call.on('error', () => {
    ended = true;
    settleDrained();
  });
  call.on('cancelled', () => {
    ended = true;
    settleDrained();
  });
  call.on('close', () => {
    ended = true;
    settleDrained();
  });
}
