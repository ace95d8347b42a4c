/**
 * The etcd `Maintenance` service: status, hashes, alarms, defragment (a no-op: the store is in
 * memory and compacts itself), a consistent snapshot stream, and leadership transfer.
 */
import * as grpc from '@grpc/grpc-js';
import type { MvccStore } from '../../storage/index';
import type { ShardStateView } from '../runtime/index';
import type { KvEngine } from '../engines/kv/index';
import { int64IfSafe, int64Saturated, type Int64 } from '../etcd-proto';
import { dkvError, errorTable, toGrpcError } from '../errors';
import { EngineId } from '../engines/index';
import { serviceDefinition, type Incoming } from './grpc-service';
import { moveLeaderPollMs } from './limits';
import { snapshotFileParts } from './snapshot-file';
import { type ServiceContext, clientError, responseHeader, unary } from './service-common';

export interface MaintenanceServiceContext extends ServiceContext {
  /** The etcd API version this server speaks (Status reports it). */
  readonly apiVersion: string;
}

export function createMaintenanceService(ctx: MaintenanceServiceContext): { definition: ReturnType<typeof serviceDefinition>; implementation: grpc.UntypedServiceImplementation } {
  // Status, hashes and snapshots describe the default store.
  const data = () => ctx.router.defaultStore();
  const store = (): MvccStore => data().machine().engine<KvEngine>(EngineId.Kv).mvcc;
  const header = () => responseHeader(ctx, data(), store().revision);

  const implementation: grpc.UntypedServiceImplementation = {
    Status: unary<object>(async () => {
      const shard = data();
      const status = shard.status();
      const mvcc = store();
      return {
        header: header(),
        version: ctx.apiVersion,
        dbSize: mvcc.arenaBytes,
        dbSizeInUse: mvcc.arenaBytes,
        leader: status.lead,
        raftIndex: status.commit,
        raftTerm: status.term,
        raftAppliedIndex: shard.machine().appliedIndex,
        // As etcd: a member without a leader says so in `endpoint status`'s ERRORS column.
        errors: status.lead === 0 ? [errorTable['no-leader'].message] : [],
        isLearner: status.config.learners.includes(ctx.memberId),
      };
    }),

    // etcd hashes its whole backend (leases included); here: every engine of the default store's
    // state machine (keys, leases, the leader-stamped time), equal on replicas at one applied index.
    Hash: unary<object>(async () => ({ header: header(), hash: data().machine().hash() })),

    HashKV: unary<{ revision: Int64 }>(async ({ message }) => {
      // Saturated: past 2^53 still a future revision, below -2^53 still "current" (as etcd).
      const result = store().hashKV(int64Saturated(message.revision));
      return { header: header(), hash: result.hash, compact_revision: result.compactRevision, hash_revision: result.revision };
    }),

    Alarm: unary<object>(async () => ({ header: header(), alarms: [] })),

    Defragment: unary<object>(async () => ({ header: header() })),

    MoveLeader: unary<{ targetID: Int64 }>(async ({ message }) => {
      // Member ids are below 2^53: a target that is not a safe integer is no member (exact, never rounded).
      const target = int64IfSafe(message.targetID);
      const status = data().status();
      if (status.lead !== ctx.memberId) throw dkvError('not-leader');
      if (target === undefined || !status.config.voters.includes(target) || target === ctx.memberId) throw dkvError('bad-leader-transferee');
      for (const shard of ctx.router.hosted()) if (shard.leader() === ctx.memberId) shard.transferLeader(target);
      await waitFor(() => data().leader() === target, ctx.requestTimeoutMs);
      return { header: header() };
    }),

    Snapshot: (call: grpc.ServerWritableStream<Incoming<object>, object>) => {
      streamSnapshot(call, header, () => data().machine()).catch((error: unknown) => {
        call.emit('error', toGrpcError(clientError(error)));
      });
    },
  };
  return { definition: serviceDefinition('etcdserverpb.Maintenance'), implementation };
}

/** Resolves once `condition` holds (checked every moveLeaderPollMs), or fails with etcd's timeout. */
function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const check = (): void => {
      if (condition()) resolve();
      else if (performance.now() - started > timeoutMs) reject(dkvError('timeout'));
      else setTimeout(check, moveLeaderPollMs);
    };
    check();
  });
}

/**
 * Streams a consistent snapshot of the default store: its state machine snapshot (every engine;
 * the state is captured when the call starts) in the snapshot file format (snapshot-file.ts).
 */
async function streamSnapshot(
  call: grpc.ServerWritableStream<Incoming<object>, object>,
  header: () => object,
  machine: () => ShardStateView,
): Promise<void> {
  const parts = snapshotFileParts([...iterate(machine().snapshot())]);
  let remaining = 0;
  for (const part of parts) remaining += part.length;
  const h = header();
  for (const blob of parts) {
    remaining -= blob.length;
    if (!call.write({ header: h, remaining_bytes: remaining, blob })) {
      await new Promise<void>((resolve) => call.once('drain', () => resolve()));
    }
  }
  call.end();
}

function* iterate<T>(iterator: Iterator<T>): Generator<T> {
  for (let next = iterator.next(); next.done !== true; next = iterator.next()) yield next.value;
}
