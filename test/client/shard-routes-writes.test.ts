/**
 * Counter writes and guarded puts take the shard routes as put, txn and delete do, against three
 * scripted in-process gRPC servers (loopback, no cluster) that answer one cluster view: member 3
 * is the client's preferred server and leads nothing, member 1 leads the default store, member 2
 * leads store "s"'s shard (/s/). Once the client has the routes, a counter write or guarded put of
 * a /s/ key goes to member 2 and of a default-store key to member 1; a counter read stays on the
 * preferred server. A call that lost its routeKey would go to member 1 (the default store's
 * leader) for every key.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { DkvClient } from '../../src/client/index.js';
import { waitUntil } from '../server/cluster-harness.js';
import { type Arrival, ScriptedMembers } from './scripted-members.js';

const DEFAULT_LEADER = 1;
const STORE_LEADER = 2;
const PREFERRED = 3;

const scripted = new ScriptedMembers();
afterEach(() => scripted.close());

/** The three members, and a client whose preferred server is the one that leads nothing. */
async function cluster(): Promise<{ client: DkvClient; arrivals: Map<number, Arrival[]>; endpoints: Map<number, string> }> {
  const endpoints = new Map<number, string>();
  const arrivals = new Map<number, Arrival[]>();
  for (const id of [PREFERRED, DEFAULT_LEADER, STORE_LEADER]) {
    const m = await scripted.member({ id, defaultLeader: DEFAULT_LEADER, storeLeader: STORE_LEADER, endpoints });
    endpoints.set(id, m.endpoint);
    arrivals.set(id, m.arrivals);
  }
  const client = scripted.client([PREFERRED, DEFAULT_LEADER, STORE_LEADER].map((id) => endpoints.get(id)!));
  return { client, arrivals, endpoints };
}

describe('the client routes counter writes and guarded puts to the leader of their key\'s shard', () => {
  it('a store key\'s to the store shard\'s leader, a default-store key\'s to the default store\'s, a counter read to the preferred server', async () => {
    const { client, arrivals, endpoints } = await cluster();
    /** The members that answered a call of `method` naming `key`. */
    const answeredBy = (method: string, key: string): number[] => [...arrivals].filter(([, list]) => list.some((a) => a.method === method && a.key === key)).map(([id]) => id);
    // The routes come in the background after the first keyed call; the default store's leader
    // from the first answer's term. Plain puts (their routing is shard-routing.test.ts's) show both known.
    await client.put('/other', 'x');
    await waitUntil(() => client.leader.address === endpoints.get(DEFAULT_LEADER), 5_000, () => `the default store's leader known (${client.leader.address})`);
    let probes = 0;
    await waitUntil(
      async () => {
        const key = `/s/probe${probes++}`;
        await client.put(key, 'x');
        return answeredBy('KV.Put', key).includes(STORE_LEADER);
      },
      5_000,
      () => 'a put of a store key answered by its shard leader',
    );

    const token = { key: Buffer.from('/locks/l/1'), revision: 5 };
    const writes: Array<[string, string, () => Promise<unknown>]> = [];
    for (const key of ['/s/c', '/d/c']) {
      const counter = client.counter(key);
      writes.push(
        ['Counter.Increment', key, () => counter.increment(1)],
        ['Counter.Decrement', key, () => counter.decrement(1)],
        ['Counter.Set', key, () => counter.set(7)],
        ['Counter.Delete', key, () => counter.delete()],
      );
    }
    writes.push(['dkv.KV.Put', '/s/g', () => client.guardedPut('/s/g', 'v', token)], ['dkv.KV.Put', '/d/g', () => client.guardedPut('/d/g', 'v', token)]);
    for (const [, , write] of writes) await write();
    await client.counter('/s/c').get();

    const expected = (key: string): number => (key.startsWith('/s/') ? STORE_LEADER : DEFAULT_LEADER);
    expect(writes.map(([method, key]) => [method, key, answeredBy(method, key)])).toEqual(writes.map(([method, key]) => [method, key, [expected(key)]]));
    expect(answeredBy('Counter.Get', '/s/c')).toEqual([PREFERRED]);
  });
});
