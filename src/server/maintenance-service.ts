/**
 * The etcd `Maintenance` service: status, hashes, alarms, defragment (a no-op: the store is in
 * memory and compacts itself), a consistent snapshot stream, and leadership transfer.
 */
import * as grpc from '@grpc/grpc-js';
import { encodeSnapshot } from '../../storage/index';
import { int64IfSafe, int64Saturated, type Int64 } from '../etcd-proto';
import { dkvError, toGrpcError } from '../errors';
import { serviceDefinition, type Incoming } from './grpc-service';
import type { DkvNode } from './node';
import { snapshotFileParts } from './snapshot-file';
import { type ServiceContext, clientError, responseHeader, unary } from './service-common';

export interface MaintenanceServiceContext extends ServiceContext {
  readonly node: DkvNode;
  /** The shard that holds the default store (what status, hashes and snapshots describe). */
  readonly shardId: number;
}

export function createMaintenanceService(ctx: MaintenanceServiceContext): { definition: ReturnType<typeof serviceDefinition>; implementation: grpc.UntypedServiceImplementation } {
  const node = ctx.node;
  const data = () => {
    const shard = node.host.shard(ctx.shardId);
    if (shard === undefined) throw dkvError('wrong-shard');
    return shard;
  };
  const header = () => responseHeader(ctx, ctx.shardId, data().machine.mvcc.revision);

  const implementation: grpc.UntypedServiceImplementation = {
    Status: unary<object>(async () => {
      const shard = data();
      const status = shard.node.status();
      return {
        header: header(),
        version: node.etcdApiVersion,
        dbSize: shard.machine.mvcc.arenaBytes,
        dbSizeInUse: shard.machine.mvcc.arenaBytes,
        leader: status.lead,
        raftIndex: status.commit,
        raftTerm: status.term,
        raftAppliedIndex: shard.machine.appliedIndex,
        errors: [],
        isLearner: status.config.learners.includes(node.identity.memberId),
      };
    }),

    Hash: unary<object>(async () => ({ header: header(), hash: data().machine.mvcc.hashKV(0).hash })),

    HashKV: unary<{ revision: Int64 }>(async ({ message }) => {
      const mvcc = data().machine.mvcc;
      // Saturated: past 2^53 still a future revision, below -2^53 still "current" (as etcd).
      const result = mvcc.hashKV(int64Saturated(message.revision));
      return { header: header(), hash: result.hash, compact_revision: result.compactRevision, hash_revision: result.revision };
    }),

    Alarm: unary<object>(async () => ({ header: header(), alarms: [] })),

    Defragment: unary<object>(async () => ({ header: header() })),

    MoveLeader: unary<{ targetID: Int64 }>(async ({ message }) => {
      // Member ids are below 2^53: a target that is not a safe integer is no member (exact, never rounded).
      const target = int64IfSafe(message.targetID);
      const shard = data();
      const status = shard.node.status();
      if (status.lead !== node.identity.memberId) throw dkvError('not-leader');
      if (target === undefined || !status.config.voters.includes(target) || target === node.identity.memberId) throw dkvError('bad-leader-transferee');
      for (const id of node.host.shardIds()) {
        if (node.host.shard(id)?.node.status().lead === node.identity.memberId) node.host.transferLeader(id, target);
      }
      await waitFor(() => data().leader === target, ctx.requestTimeoutMs);
      return { header: header() };
    }),

    Snapshot: (call: grpc.ServerWritableStream<Incoming<object>, object>) => {
      streamSnapshot(call, header, () => data().machine.mvcc).catch((error: unknown) => {
        call.emit('error', toGrpcError(clientError(error)));
      });
    },
  };
  return { definition: serviceDefinition('etcdserverpb.Maintenance'), implementation };
}

function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const check = (): void => {
      if (condition()) resolve();
      else if (Date.now() - started > timeoutMs) reject(dkvError('timeout'));
      else setTimeout(check, 20);
    };
    check();
  });
}

/**
 * Streams a consistent snapshot of the default store: the magic, the MVCC snapshot frames (the
 * state is captured when the call starts), then a SHA-256 of all of it.
 */
async function streamSnapshot(
  call: grpc.ServerWritableStream<Incoming<object>, object>,
  header: () => object,
  store: () => Parameters<typeof encodeSnapshot>[0],
): Promise<void> {
  const parts = snapshotFileParts([...encodeSnapshot(store())]);
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
