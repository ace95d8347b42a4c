/**
 * The etcd `Maintenance` service: status (DB SIZE is the store's memory, what the quota counts),
 * hashes, alarms (the default store's alarm engine, raised and cleared through Raft),
 * defragment (defragment.ts), a consistent snapshot stream, and leadership transfer.
 */
import * as grpc from '@grpc/grpc-js';
import type { MvccStore } from '../../storage/index.js';
import { DEFAULT_STORE } from '../cluster/index.js';
import type { RequestOptions, Router, ShardHandle } from '../runtime/index.js';
import type { KvEngine } from '../engines/kv/index.js';
import { int64IfSafe, int64Saturated, type Int64 } from '../etcd-proto.js';
import { dkvError, errorTable, toGrpcError } from '../errors.js';
import { AlarmType, type AlarmMember, EngineId, activateAlarmCommand, alarmOutcome, deactivateAlarmCommand } from '../engines/index.js';
import { alarmEngineOf, metaEngineOf, ownershipEngineOf } from '../runtime/index.js';
import type { Defragmenter } from './defragment.js';
import { serviceDefinition, type Incoming } from './grpc-service.js';
import { moveLeaderPollMs } from './limits.js';
import { type SnapshotStore, snapshotFileParts } from './snapshot-file.js';
import { type ServiceContext, callerOptions, clientError, requestOptions, responseHeader, unary } from './service-common.js';

export interface MaintenanceServiceContext extends ServiceContext {
  /** The etcd API version this server speaks (Status reports it). */
  readonly apiVersion: string;
  readonly defragmenter: Defragmenter;
  readonly log?: (message: string) => void;
}

/** etcd's AlarmRequest.AlarmAction. */
const AlarmAction = { Get: 0, Activate: 1, Deactivate: 2 } as const;

const alarmNames: Readonly<Record<number, string>> = { [AlarmType.None]: 'NONE', [AlarmType.NoSpace]: 'NOSPACE', [AlarmType.Corrupt]: 'CORRUPT' };

/** An alarm as etcd's Status lists it in `errors` (the AlarmMember's protobuf text form). */
export function alarmText(alarm: AlarmMember): string {
  return `memberID:${alarm.memberId} alarm:${alarmNames[alarm.alarm] ?? alarm.alarm} `;
}

const wireAlarm = (alarm: AlarmMember): object => ({ memberID: alarm.memberId, alarm: alarm.alarm });

function alarmTypeOf(value: unknown): AlarmType | undefined {
  return value === AlarmType.None || value === AlarmType.NoSpace || value === AlarmType.Corrupt ? value : undefined;
}

export function createMaintenanceService(ctx: MaintenanceServiceContext): { definition: ReturnType<typeof serviceDefinition>; implementation: grpc.UntypedServiceImplementation } {
  // Status, hashes and snapshots describe the default store.
  const data = () => ctx.router.defaultStore();
  const store = (): MvccStore => data().machine().engine<KvEngine>(EngineId.Kv).mvcc;
  const header = () => responseHeader(ctx, data(), store().revision);
  const options = requestOptions(ctx);

  const implementation: grpc.UntypedServiceImplementation = {
    Status: unary<object>(async () => {
      const shard = data();
      const status = shard.status();
      const mvcc = store();
      return {
        header: header(),
        version: ctx.apiVersion,
        dbSize: mvcc.sizeBytes,
        dbSizeInUse: mvcc.sizeInUseBytes,
        leader: status.lead,
        raftIndex: status.commit,
        raftTerm: status.term,
        raftAppliedIndex: shard.machine().appliedIndex,
        // As etcd: a member without a leader says so in `endpoint status`'s ERRORS column, beside its alarms.
        errors: [...(status.lead === 0 ? [errorTable['no-leader'].message] : []), ...alarmEngineOf(shard.machine()).list().map(alarmText)],
        isLearner: status.config.learners.includes(ctx.memberId),
      };
    }),

    // etcd hashes its whole backend (leases included); here: every engine of the default store's
    // state machine (keys, leases, the leader-stamped time), equal on replicas at one applied index.
    // etcd's authMaintenanceServer: Hash, HashKV, Snapshot, Defragment and MoveLeader are root's.
    Hash: unary<object>(async (_request, call) => {
      await ctx.gate.admin(call);
      return { header: header(), hash: data().machine().hash() };
    }),

    HashKV: unary<{ revision: Int64 }>(async ({ message }, call) => {
      await ctx.gate.admin(call);
      // Saturated: past 2^53 still a future revision, below -2^53 still "current" (as etcd).
      const result = store().hashKV(int64Saturated(message.revision));
      return { header: header(), hash: result.hash, compact_revision: result.compactRevision, hash_revision: result.revision };
    }),

    // As etcd: GET lists the alarms of a type (NONE: all) after a linearizable read; ACTIVATE and
    // DEACTIVATE go through Raft and answer with the alarm they changed (none if nothing changed).
    Alarm: unary<{ action?: number; memberID?: Int64; alarm?: number }>(async ({ message }, call) => {
      // etcd checks no permission for alarms; the caller is carried all the same.
      const caller = await ctx.gate.permitted(call);
      const shard = data();
      const type = alarmTypeOf(message.alarm ?? AlarmType.None);
      const action = message.action ?? AlarmAction.Get;
      if (type === undefined) return { header: header(), alarms: [] };
      // Every data shard keeps its own alarms (a store's shard raises NOSPACE when a write to it
      // would pass the quota): listed together, disarmed in each shard that has it.
      const dataShards = ctx.router.hosted().filter((hosted) => hosted.shardId !== ctx.router.map.metaShard);
      if (action === AlarmAction.Get) {
        await Promise.all(dataShards.map((hosted) => hosted.read(options)));
        // One entry per member and type, however many shards hold it.
        const alarms = new Map<string, AlarmMember>();
        for (const hosted of dataShards) for (const alarm of alarmEngineOf(hosted.machine()).list(type)) alarms.set(`${alarm.memberId}/${alarm.alarm}`, alarm);
        return { header: header(), alarms: [...alarms.values()].map(wireAlarm) };
      }
      const memberId = int64IfSafe(message.memberID ?? 0);
      if (memberId === undefined || memberId <= 0 || type === AlarmType.None) return { header: header(), alarms: [] };
      if (action !== AlarmAction.Activate && action !== AlarmAction.Deactivate) throw dkvError('invalid-argument', `unknown alarm action ${action}`);
      // Raised in the default store's shard (as etcd's one store); disarmed wherever it is active.
      const targets = action === AlarmAction.Activate ? [shard] : dataShards.filter((hosted) => alarmEngineOf(hosted.machine()).list(type).some((a) => a.memberId === memberId) || hosted === shard);
      const command = action === AlarmAction.Activate ? activateAlarmCommand(memberId, type) : deactivateAlarmCommand(memberId, type);
      const outcomes = await Promise.all(targets.map(async (target) => alarmOutcome((await target.propose(command, callerOptions(ctx, caller))).outcome).changed));
      const changed = outcomes.find((c) => c !== undefined);
      if (changed !== undefined) ctx.log?.(`alarm ${alarmNames[changed.alarm]} of member ${changed.memberId.toString(16)} ${action === AlarmAction.Activate ? 'raised' : 'disarmed'}`);
      return { header: header(), alarms: changed === undefined ? [] : [wireAlarm(changed)] };
    }),

    Defragment: unary<object>(async (_request, call) => {
      await ctx.gate.admin(call);
      await ctx.defragmenter.run();
      return { header: header() };
    }),

    MoveLeader: unary<{ targetID: Int64 }>(async ({ message }, call) => {
      await ctx.gate.admin(call);
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
      const started = (async () => {
        await ctx.gate.admin(call);
        const read = await readEveryShard(ctx.router, requestOptions(ctx));
        await streamSnapshot(call, header, () => snapshotParts(ctx.router, read));
      })();
      started.catch((error: unknown) => {
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
 * A ReadIndex of every shard a snapshot holds: the member has applied everything each had
 * committed when the call came (a member that joined lately holds its stores' data, not the
 * empty groups it started them with). A shard this member does not host yet is refused.
 */
async function readEveryShard(router: Router, options: RequestOptions): Promise<ReadonlySet<number>> {
  const read = new Set<number>();
  const reads = [router.defaultStore().read(options)];
  const map = metaEngineOf(router.meta().machine()).routingMap();
  for (const store of map.stores()) {
    if (store.name === DEFAULT_STORE) continue;
    for (const def of map.shardsOf(store.name)) {
      if (def.replicas.length > 0 && !router.hosts(def.id)) {
        throw dkvError('snapshot-shard-elsewhere', `shard ${def.id} of store ${store.name} is placed on member${def.replicas.length === 1 ? '' : 's'} ${def.replicas.map((id) => id.toString(16)).join(', ')}`);
      }
      if (!router.hosts(def.id)) throw dkvError('wrong-shard', `shard ${def.id} of store ${store.name} is not on this member yet: save the snapshot from another member, or again later`);
      reads.push(router.shard(def.id).read(options));
      read.add(def.id);
    }
  }
  await Promise.all(reads);
  return read;
}

/**
 * The snapshot file of this member's state now: the default store's state machine snapshot
 * (every engine) and each store's shards' (each read before: `readEveryShard`), all captured in
 * one step. A store being created (not activated yet, or since the reads) or being dropped (a
 * shard retired) is left out. Each shard's state is this
 * member's as it applied it; the shards are not one cut (as a Range across shards is not).
 */
function snapshotParts(router: Router, read: ReadonlySet<number>): Uint8Array[] {
  const frames = (shard: ShardHandle): Uint8Array[] => [...iterate(shard.machine().snapshot())];
  const map = metaEngineOf(router.meta().machine()).routingMap();
  const stores: Array<SnapshotStore<Uint8Array[]>> = [];
  for (const store of map.stores()) {
    if (store.name === DEFAULT_STORE) continue;
    // A store activated since the reads is left out: its shards were not read.
    if (map.shardsOf(store.name).some((def) => !read.has(def.id))) continue;
    const shards = map.shardsOf(store.name).map((def) => ({ def, handle: router.shard(def.id) }));
    if (shards.some(({ handle }) => ownershipEngineOf(handle.machine()).retired !== 0)) continue;
    stores.push({ name: store.name, prefix: store.prefix, shards: shards.map(({ def, handle }) => ({ start: def.start, end: def.end, stateMachine: frames(handle) })) });
  }
  return snapshotFileParts(frames(router.defaultStore()), stores);
}

/** Streams a snapshot file (snapshot-file.ts) made of `parts` (taken when the call starts). */
async function streamSnapshot(call: grpc.ServerWritableStream<Incoming<object>, object>, header: () => object, take: () => Uint8Array[]): Promise<void> {
  const parts = take();
  let remaining = 0;
  for (const part of parts) remaining += part.length;
  const h = header();
  // A call that ends early (the client cancels, its deadline passes) stops the stream: no more
  // writes, no wait for a drain that will never come.
  let stopped = call.cancelled;
  const stop = (): void => {
    stopped = true;
  };
  call.once('cancelled', stop);
  call.once('close', stop);
  for (const blob of parts) {
    if (stopped) return;
    remaining -= blob.length;
    if (!call.write({ header: h, remaining_bytes: remaining, blob })) {
      await new Promise<void>((resolve) => {
        call.once('drain', () => resolve());
        call.once('cancelled', () => resolve());
        call.once('close', () => resolve());
      });
    }
  }
  if (!stopped) call.end();
}

function* iterate<T>(iterator: Iterator<T>): Generator<T> {
  for (let next = iterator.next(); next.done !== true; next = iterator.next()) yield next.value;
}
