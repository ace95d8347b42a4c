/**
 * etcd's `v3lockpb.Lock` service: Lock waits until the caller owns a named lock and answers with
 * its key; Unlock deletes a key. The recipe is etcd's concurrency.Mutex (src/server/concurrency.ts).
 */
import type * as grpc from '@grpc/grpc-js';
import { prefixEnd } from '../../storage/index.js';
import { type WireLockRequest, type WireUnlockRequest, int64Exact } from '../etcd-proto.js';
import { dkvError, toGrpcErrorOfRecipe } from '../errors.js';
import { deleteRangeAccess } from '../engines/index.js';
import { type ConcurrencyContext, checkRecipeAccess, recipeContext, checkClientKey, checkName, checkRequestSize, joinQueue, leaveQueue, namePrefix, waitForTurn } from './concurrency.js';
import { serviceDefinition } from './grpc-service.js';
import { permittedCaller, proposeDelete } from './kv-service.js';
import { type Logger, callerOptions, linkedSignal, responseHeader, unary, waitingUnary } from './service-common.js';

export function createLockService(ctx: ConcurrencyContext, log?: Logger): { definition: ReturnType<typeof serviceDefinition>; implementation: grpc.UntypedServiceImplementation } {
  const implementation: grpc.UntypedServiceImplementation = {
    Lock: waitingUnary<WireLockRequest>(async ({ raw, message }, canceled, call) => {
      checkRequestSize(ctx, raw);
      const name = checkName(message.name);
      const prefix = namePrefix(name);
      await checkRecipeAccess(ctx, call, prefix);
      const rctx = recipeContext(ctx, call);
      // The shard that holds the lock's keys (every key under its name and "/").
      const shard = ctx.router.forRange({ key: prefix, rangeEnd: prefixEnd(prefix) });
      const { signal, release } = linkedSignal(canceled, ctx.stopping);
      try {
        const joined = await joinQueue(rctx, shard, { prefix, lease: int64Exact(message.lease), value: new Uint8Array(0), withOwner: true });
        try {
          const owns = joined.owner === undefined || joined.owner.createRevision === joined.rev;
          if (!owns && !(await waitForTurn(rctx, shard, joined, prefix, signal)).held) throw dkvError('mutex-session-expired');
          // Acquired, but a client that gave up meanwhile would never unlock it.
          signal.throwIfAborted();
        } catch (error) {
          await leaveQueue(rctx, shard, joined);
          throw error;
        }
        // The header's revision is the lock key's create revision: the fencing token, which grows
        // from one owner to the next and which a txn can compare (create_revision(key) == token).
        // etcd reports it only when the lock was free; after a wait its header has the revision
        // of its last read, which a fencing check cannot use.
        return { header: responseHeader(ctx, shard, joined.rev), key: joined.key };
      } finally {
        release();
      }
    }, log, toGrpcErrorOfRecipe),
    // etcd deletes the key whoever holds it, and answers with a header even if there was none.
    Unlock: unary<WireUnlockRequest>(async ({ raw, message }, call) => {
      checkRequestSize(ctx, raw);
      const key = checkClientKey(message.key);
      const caller = await permittedCaller(ctx, call, () => deleteRangeAccess({ key }));
      const shard = ctx.router.forKey(key);
      const result = await proposeDelete(shard, key, callerOptions(ctx, caller));
      return { header: responseHeader(ctx, shard, result.revision) };
    }, log, toGrpcErrorOfRecipe),
  };
  return { definition: serviceDefinition('v3lockpb.Lock'), implementation };
}
