/**
 * The client's routes against a scripted in-process gRPC server (loopback, no cluster): a store
 * shard's responses carry that shard's term, which must neither pass for the default store's
 * (each would make the client ask Status who leads the default store again) nor stop the routes
 * from being learned by a client that only reads; and a store-routed write refused unapplied
 * leaves the default store's leader alone.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { DkvClient } from '../../src/client/index.js';
import { waitUntil } from '../server/cluster-harness.js';
import { DEFAULT_TERM, type ScriptedMember, ScriptedMembers } from './scripted-members.js';

const MEMBER = 2;

const scripted = new ScriptedMembers();
afterEach(() => scripted.close());

/** One member (id 2) that leads the default store (term 3) and store "s" on /s/ (term 9), and a client of it. */
async function member(): Promise<{ m: ScriptedMember; client: DkvClient }> {
  const endpoints = new Map<number, string>();
  const m = await scripted.member({ id: MEMBER, defaultLeader: MEMBER, storeLeader: MEMBER, endpoints });
  endpoints.set(MEMBER, m.endpoint);
  return { m, client: scripted.client([m.endpoint]) };
}

describe('the client routes and the default store leader', () => {
  it('a client that only reads a store\'s keys learns the routes and asks Status once, not once per read', async () => {
    const { m, client } = await member();
    await client.get('/s/k');
    await waitUntil(() => m.calls('Admin.ShardList') > 0, 5_000, () => 'routes asked for');
    await waitUntil(() => client.leader.raftTerm === DEFAULT_TERM, 5_000, () => `the default store's term (${client.leader.raftTerm})`);
    const statusBefore = m.calls('Maintenance.Status');
    for (let i = 0; i < 50; i++) await client.get('/s/k');
    await client.get('/other');
    expect({ status: m.calls('Maintenance.Status') - statusBefore, shardLists: m.calls('Admin.ShardList'), term: client.leader.raftTerm }).toEqual({ status: 0, shardLists: 1, term: DEFAULT_TERM });
    expect(statusBefore).toBeLessThanOrEqual(2);
  });

  it('a store-routed write refused unapplied keeps the default store leader', async () => {
    const { m, client } = await member();
    await client.put('/other', 'x');
    await client.put('/s/k', 'x');
    await waitUntil(() => client.leader.address === m.endpoint && m.calls('Admin.ShardList') > 0, 5_000, () => 'leader and routes known');
    const statusBefore = m.calls('Maintenance.Status');
    m.refuseNext('KV.Put', 2);
    await client.put('/s/k', 'y');
    expect(m.calls('KV.Put')).toBe(5);
    expect({ leader: client.leader.address, status: m.calls('Maintenance.Status') - statusBefore }).toEqual({ leader: m.endpoint, status: 0 });
  });
});
