/**
 * `--quota-backend-bytes`: how much a store may hold before writes are refused, as etcd's
 * backend quota (etcd server/etcdserver/quota.go and api/v3rpc/quota.go).
 *
 * What it counts: `MvccStore.sizeBytes`, the memory the shard's MVCC store holds — every
 * segment's arena (live versions, history not yet compacted, versions compaction dropped that no
 * rewrite reclaimed yet, free room) and its head array. Like etcd's backend file, compaction
 * alone does not always shrink it; `defrag` does. The Raft log, watch buffers and V8's own
 * overhead are not counted (they are bounded by --snapshot-count and the watch limits).
 *
 * A member that receives a Put, a Txn that could put, or a LeaseGrant checks first whether the
 * store plus the request's cost (etcd's: key + value + 256 bytes a put, 64 a grant) stays under
 * the quota. If not, it raises a NOSPACE alarm under its own member id through Raft (once; the
 * alarm engine then caps every replica's apply) and refuses the request with etcd's
 * `etcdserver: mvcc: database space exceeded` (RESOURCE_EXHAUSTED). While the alarm is active
 * writes are refused until an operator disarms it (`etcdctl alarm disarm`), after making room
 * (delete, compact, defrag). Deletes, compactions, reads and revokes are never checked.
 */
import type { WirePutRequest, WireRequestOp, WireTxnRequest } from '../etcd-proto.js';
import { AlarmType, activateAlarmCommand } from '../engines/index.js';
import { dkvError } from '../errors.js';
import { type ShardHandle, alarmEngineOf, kvEngineOf } from '../runtime/index.js';
import { quotaKvOverheadBytes, quotaLeaseOverheadBytes } from './limits.js';

export interface QuotaOptions {
  /** The quota in bytes (the configuration has already turned 0 into the default). */
  readonly quotaBytes: number;
  /** This member: the alarm it raises carries its id (as etcd). */
  readonly memberId: number;
  readonly log?: (message: string) => void;
}

/** etcd's cost of a put: its key and value plus a fixed overhead. */
export function putCost(put: Pick<WirePutRequest, 'key' | 'value'>): number {
  return quotaKvOverheadBytes + (put.key?.length ?? 0) + (put.value?.length ?? 0);
}

/** etcd's cost of a txn: the larger branch's puts (nested txns included); 0 for a txn that cannot put. */
export function txnCost(txn: Pick<WireTxnRequest, 'success' | 'failure'>): number {
  const branch = (ops: readonly WireRequestOp[] | undefined): number => {
    let cost = 0;
    for (const op of ops ?? []) {
      if (op.request_put !== undefined && op.request_put !== null) cost += putCost(op.request_put);
      else if (op.request_txn !== undefined && op.request_txn !== null) cost += txnCost(op.request_txn);
    }
    return cost;
  };
  return Math.max(branch(txn.success), branch(txn.failure));
}

/** etcd's cost of a lease grant. */
export const leaseGrantCost = quotaLeaseOverheadBytes;

export class BackendQuota {
  /** Shards whose NOSPACE proposal from this member is on its way (one at a time). */
  private readonly raising = new Set<number>();

  constructor(private readonly options: QuotaOptions) {
    if (!Number.isSafeInteger(options.quotaBytes) || options.quotaBytes <= 0) throw new TypeError(`bad quota ${options.quotaBytes}`);
  }

  get quotaBytes(): number {
    return this.options.quotaBytes;
  }

  /**
   * Throws `no-space` if a write of `cost` bytes may not go to `shard`: its NOSPACE alarm is
   * active, or the write would take the store to the quota (then the alarm is raised first).
   * A cost of 0 (a txn that only reads and deletes) is never refused.
   */
  check(shard: ShardHandle, cost: number): void {
    if (cost === 0) return;
    const machine = shard.machine();
    if (alarmEngineOf(machine).capped) throw dkvError('no-space');
    const size = kvEngineOf(machine).mvcc.sizeBytes;
    if (size + cost < this.options.quotaBytes) return;
    this.raise(shard, size);
    throw dkvError('no-space');
  }

  private raise(shard: ShardHandle, size: number): void {
    if (this.raising.has(shard.shardId)) return;
    this.raising.add(shard.shardId);
    this.options.log?.(`shard ${shard.shardId}: the store holds ${size} bytes, at the quota of ${this.options.quotaBytes}: raising NOSPACE`);
    shard.propose(activateAlarmCommand(this.options.memberId, AlarmType.NoSpace)).then(
      () => this.raising.delete(shard.shardId),
      (error: unknown) => {
        // The next refused write tries again (no leader now, a timeout): nothing is lost.
        this.raising.delete(shard.shardId);
        this.options.log?.(`shard ${shard.shardId}: raising NOSPACE failed: ${error instanceof Error ? error.message : String(error)}`);
      },
    );
  }
}

/** A counter write's cost: a put of its key with the longest int64 text as value. */
export function counterWriteCost(key: Uint8Array): number {
  return quotaKvOverheadBytes + key.length + '-9223372036854775808'.length;
}
