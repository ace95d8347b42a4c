/**
 * The client routes writes of a store's keys straight to the leader of the shard that holds them,
 * on a real 3-node cluster: once it has the routes (ShardList, asked in the background at the first
 * keyed call), every put, delete and txn of a store shard's key is answered by that shard's leader
 * (the response header's member), and a default-store key's by the default store's leader; each
 * write is applied once, at the revision it was answered with. A round counts only when some store
 * shard is led by another node than the default store (a client that sent everything to the
 * default store's leader then fails) and no leader changed under it; otherwise it is done again
 * with a new store (new groups, new elections). */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Decoded, DkvClient, type EtcdChannel, compare, op } from '../../src/client/index.js';
import { TestCluster, etcdChannel, waitUntil } from '../server/cluster-harness.js';

let cluster: TestCluster;
let channels: EtcdChannel[] = [];
let client: DkvClient;

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
  channels = [0, 1, 2].map((i) => etcdChannel(cluster.endpoint(i)));
  client = new DkvClient({ servers: [0, 1, 2].map((i) => ({ address: cluster.endpoint(i) })) });
}, 60_000);

afterAll(async () => {
  client?.close();
  for (const channel of channels) channel.close();
  await cluster?.stop();
});

interface Led {
  readonly id: number;
  readonly store: string;
  readonly start: Buffer;
  readonly leader: bigint;
  readonly term: number;
}

const asJson = (value: unknown): string => JSON.stringify(value, (_, x: unknown) => (typeof x === 'bigint' ? String(x) : x));

/** Every data shard with its leader and term, once all three nodes name the same ones. */
async function leaders(): Promise<Led[]> {
  let agreed: Led[] = [];
  await waitUntil(
    async () => {
      const views = await Promise.all(channels.map((c) => c.call('dkv.v1.Admin', 'ShardList', {})));
      const of = (view: Decoded): Led[] =>
        (view.shards as Decoded[])
          .filter((s) => s.store !== '(meta)')
          .map((s) => ({ id: Number(s.id), store: String(s.store), start: Buffer.from((s.start as Uint8Array | undefined) ?? []), leader: BigInt(String(s.leader ?? 0)), term: Number(s.raft_term ?? 0) }));
      const first = of(views[0]!);
      agreed = first;
      return first.every((s) => s.leader !== 0n) && views.every((v) => asJson(of(v)) === asJson(first));
    },
    30_000,
    () => 'every shard led, and every node agreeing who leads',
  );
  return agreed;
}

/**
 * At most this many rounds: a round whose store's shards are all led by the default store's leader,
 * or in which some shard changed leader (its term moved), proves nothing.
 */
const ROUNDS_MAX = 5;

describe('client routing to shard leaders', () => {
  it('sends a store shard key write to that shard leader and a default-store key write to the default leader', async () => {
    let clean = false;
    for (let round = 0; round < ROUNDS_MAX && !clean; round++) {
      // A store of its own per round: new groups, whose elections place their leaders anew.
      const name = `routed${round}`;
      await channels[0]!.call('dkv.v1.Admin', 'StoreCreate', { name, prefix: Buffer.from(`/r${round}/`), shards: 4 });
      // A new client per round: one that took its routes in an earlier round keeps them for up to
      // shardRoutesMaxAgeMs (30 s) and meanwhile sends this round's store's keys where the default
      // store's go, which forwards them: correct, but not what this test is about.
      if (round > 0) {
        client.close();
        client = new DkvClient({ servers: [0, 1, 2].map((i) => ({ address: cluster.endpoint(i) })) });
      }
      const led = await leaders();
      const defaultShard = led.find((s) => s.store === 'default')!;
      const storeShards = led.filter((s) => s.store === name);
      expect(storeShards).toHaveLength(4);
      // Every shard led by the default store's leader: a client that ignored the routes would pass.
      if (storeShards.every((s) => s.leader === defaultShard.leader)) continue;
      // A zero byte after the shard's start keeps the key below the next shard's start.
      const keyOf = (s: Led, suffix: string): Buffer => Buffer.concat([s.start, Buffer.from(`\0${suffix}`)]);
      /** Each answer: the shard it was for, who answered, in which term; and the revision each key was last written at. */
      const answers: Array<{ shard: Led; memberId: bigint; raftTerm: number }> = [];
      const written = new Map<string, number>();

      // The client asks for the routes in the background (the first keyed call, a newer term in a
      // store shard's answer): wait until each shard's writes reach its leader, or its leader
      // changed (its term moved: the round proves nothing).
      for (const shard of storeShards) {
        await waitUntil(
          async () => {
            const put = await client.put(keyOf(shard, 'warm'), 'x');
            written.set(keyOf(shard, 'warm').toString(), put.header.revision);
            return put.header.memberId === shard.leader || put.header.raftTerm !== shard.term;
          },
          10_000,
          () => `shard ${shard.id}'s put answered by its leader`,
        );
      }
      for (const shard of storeShards) {
        for (let i = 0; i < 5; i++) {
          const put = await client.put(keyOf(shard, String(i)), `v${i}`);
          written.set(keyOf(shard, String(i)).toString(), put.header.revision);
          answers.push({ shard, ...put.header });
        }
        const txn = await client
          .txn()
          .if(compare.value(keyOf(shard, '0'), '=', 'v0'))
          .then(op.put(keyOf(shard, '1'), 'txn'))
          .commit();
        expect(txn.succeeded).toBe(true);
        written.set(keyOf(shard, '1').toString(), txn.header.revision);
        answers.push({ shard, ...txn.header });
        const del = await client.delete(keyOf(shard, '2'));
        expect(del.deleted).toBe(1);
        answers.push({ shard, ...del.header });
      }
      // A default-store key's write goes to the default store's leader, as before, once the client
      // learned it (from a default-store answer's term: a store's answers do not move it).
      await waitUntil(
        async () => (await client.put(`/default-${round}-learn`, 'x')).header.raftTerm !== defaultShard.term || client.leader.memberId === defaultShard.leader,
        10_000,
        () => "the client knows the default store's leader",
      );
      for (let i = 0; i < 3; i++) answers.push({ shard: defaultShard, ...(await client.put(`/default-${round}-${i}`, 'x')).header });

      // Every write was applied once, in its own shard: each key holds the value and the revision
      // its last write was answered with.
      for (const shard of storeShards) {
        const got = await client.range(keyOf(shard, ''), { prefix: true });
        expect(got.kvs.map((kv) => [kv.key.toString(), kv.value.toString(), kv.modRevision])).toEqual(
          [['0', 'v0'], ['1', 'txn'], ['3', 'v3'], ['4', 'v4'], ['warm', 'x']].map(([k, v]) => {
            const key = keyOf(shard, k!).toString();
            return [key, v, written.get(key)];
          }),
        );
      }
      // Whoever answered in another term than the one listed: a leader changed under the round.
      if (answers.some((a) => a.raftTerm !== a.shard.term)) continue;
      for (const a of answers) expect({ shard: a.shard.id, answeredBy: a.memberId }).toEqual({ shard: a.shard.id, answeredBy: a.shard.leader });
      clean = true;
    }
    expect(clean).toBe(true);
  }, 180_000);
});
