/**
 * dkv.v1.Admin's answers to what only a race or an older member can produce, which a healthy
 * cluster of one build never shows (test/server/admin-stores.test.ts covers the rest): the meta
 * engine refusing a change the edge's check let through (another change committed in between),
 * and a member whose build cannot apply store commands; and the steps of a create in order. The
 * service runs on a fake shard.
 */
import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { EngineId, anonymousCaller } from '../../src/engines/index.js';
import { MetaEngine, type MetaOutcome } from '../../src/engines/meta/index.js';
import { RuntimeError } from '../../src/runtime/index.js';
import { createAdminService } from '../../src/server/admin-service.js';

/** A shard handle whose machine is a fresh meta engine (and an empty KV store), proposing with `propose`. */
function fakeContext(propose: () => Promise<{ outcome: MetaOutcome }>) {
  const meta = new MetaEngine();
  const kv = { mvcc: { range: () => ({ kvs: [], count: 0, more: false }) } };
  const shard = {
    shardId: 1,
    read: async () => 1,
    propose,
    term: () => 2,
    leader: () => 7,
    machine: () => ({ engine: (id: number) => (id === EngineId.Meta ? meta : kv) }),
  };
  const router = { meta: () => shard, defaultStore: () => shard, hosted: () => [shard] };
  const gate = { admin: async () => anonymousCaller };
  return { router, gate, clusterId: () => 1, memberId: 7, requestTimeoutMs: 1000 } as unknown as Parameters<typeof createAdminService>[0];
}

/** Calls StoreCreate on the service; the status it answers with (OK: 0). */
function storeCreate(propose: () => Promise<{ outcome: MetaOutcome }>): Promise<{ code: number; details: string }> {
  const { implementation } = createAdminService(fakeContext(propose));
  const call = { request: { raw: Buffer.alloc(0), message: { name: 'orders', prefix: Buffer.from('orders/'), shards: 1 } }, metadata: undefined };
  return new Promise((resolve) => {
    (implementation.StoreCreate as (call: unknown, callback: (error: { code: number; details: string } | null) => void) => void)(call, (error) => resolve(error ?? { code: 0, details: '' }));
  });
}

describe('dkv.v1.Admin on a fake meta shard', () => {
  it('sends the meta engine\'s refusal of a change that passed the edge\'s check, with the map\'s message', async () => {
    const refused = await storeCreate(async () => ({ outcome: { kind: 'error', code: 'prefix-overlap', message: 'prefix 6f overlaps store "o" (prefix 6f)' } }));
    expect(refused).toEqual({ code: status.FAILED_PRECONDITION, details: 'dkv: store prefix overlaps another store\'s: prefix 6f overlaps store "o" (prefix 6f)' });
    const exists = await storeCreate(async () => ({ outcome: { kind: 'error', code: 'store-exists', message: 'store "orders" exists' } }));
    expect(exists).toEqual({ code: status.ALREADY_EXISTS, details: 'dkv: store already exists: store "orders" exists' });
  });

  it('says plainly that a member\'s build cannot apply store commands', async () => {
    const refused = await storeCreate(() => Promise.reject(new RuntimeError('unsupported-command', 'engine 2 command version 2 is not applied by this node or every member yet')));
    expect(refused.code).toBe(status.FAILED_PRECONDITION);
    expect(refused.details).toBe("dkv: a member's build does not support stores yet (upgrade every member): engine 2 command version 2 is not applied by this node or every member yet");
  });

  it('answers the shards a mount made, once the default store ceded the prefix', async () => {
    const proposed: number[] = [];
    const propose = async (command: { engine: number }) => {
      proposed.push(command.engine);
      return { outcome: command.engine === EngineId.Ownership ? ({ kind: 'ok' } as never) : { kind: 'stores' as const, shards: [2] } };
    };
    expect(await storeCreate(propose as never)).toEqual({ code: 0, details: '' });
    // Mount (creating), cede, activate.
    expect(proposed).toEqual([EngineId.Meta, EngineId.Ownership, EngineId.Meta]);
  });
});
