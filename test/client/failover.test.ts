/**
 * DkvClient's failover against a real 3-node DKV cluster with server priorities: a loop of puts
 * and gets runs; the preferred node, made the leader, is SIGKILLed; operations continue on the next server within
 * a bound; the node restarts and the client moves back to it (a 'server' event with reason
 * 'recovered'). A `watchPrefix` running throughout must deliver every put exactly once in
 * revision order: what it saw equals what the store holds, and includes every acknowledged put.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkWatch, type WatchResponse } from '../../jepsen-lite/check/index.js';
import { DkvClient, isDkvError, prefixRangeEnd, type ServerEvent } from '../../src/client/index.js';
import { etcdChannel, TestCluster, waitUntil } from '../server/cluster-harness.js';

/** Makes node `target` the leader (Maintenance.MoveLeader sent to the current leader), so killing it also costs an election. */
async function moveLeaderTo(target: number): Promise<void> {
  const channels = cluster.nodes.map((_, i) => etcdChannel(cluster.endpoint(i), { decode: { longs: String, defaults: true } }));
  try {
    await waitUntil(async () => {
      const statuses = await Promise.all(channels.map((c) => c.maintenance('Status', {})));
      const leader = String(statuses[0]!.leader);
      const targetId = String((statuses[target]!.header as { member_id: string }).member_id);
      if (leader === targetId) return true;
      const leaderIndex = statuses.findIndex((s) => String((s.header as { member_id: string }).member_id) === leader);
      if (leaderIndex >= 0) await channels[leaderIndex]!.maintenance('MoveLeader', { targetID: targetId }).catch(() => undefined);
      return false;
    }, 20_000, () => `node ${target} to lead`, 200);
  } finally {
    for (const c of channels) c.close();
  }
}

/** How long operations may stall after the preferred node dies: a connect timeout, a Raft election, backoff. */
const FAILOVER_BOUND_MS = 8_000;
/** How long after the node is healthy again the client may take to move back (probe backoff is capped at 500 ms). */
const RECOVERY_BOUND_MS = 5_000;
const PREFIX = 'fail/';

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

describe('DkvClient failover with priorities', () => {
  it('fails over from a killed preferred node, moves back when it returns, and the prefix watch misses nothing', async () => {
    await moveLeaderTo(0);
    const client = new DkvClient({
      servers: [
        { address: cluster.endpoint(0), priority: 3 },
        { address: cluster.endpoint(1), priority: 2 },
        { address: cluster.endpoint(2), priority: 1 },
      ],
      reconnect: { initialDelayMs: 20, maxDelayMs: 500, multiplier: 2, jitter: 0.2 },
      connectTimeoutMs: 500,
      timeoutMs: 15_000,
    });
    const serverEvents: Array<ServerEvent & { at: number }> = [];
    client.on('server', (event) => serverEvents.push({ ...event, at: Date.now() }));

    // The watch runs for the whole test, on the same client (so on the preferred node first).
    const watched: Array<{ key: string; revision: number }> = [];
    // Everything the watch delivered, as jepsen-lite's watch checker reads a stream.
    const responses: WatchResponse[] = [{ kind: 'created' }];
    const watch = client.watchPrefix(PREFIX);
    let snapshotRevision = 0;
    const consumed = (async () => {
      for await (const item of watch) {
        if (item.type === 'snapshot') snapshotRevision = item.revision;
        else {
          for (const e of item.events) watched.push({ key: e.kv.key.toString(), revision: e.kv.modRevision });
          responses.push({
            kind: 'events',
            headerRevision: item.revision,
            events: item.events.map((e) => ({ type: e.type, key: e.kv.key, value: e.kv.value, createRevision: e.kv.createRevision, modRevision: e.kv.modRevision, version: e.kv.version })),
          });
        }
      }
    })();
    await watch.ready();
    expect(client.server).toBe(cluster.endpoint(0));
    expect(serverEvents[0]).toMatchObject({ reason: 'initial', address: cluster.endpoint(0) });

    // The loop of operations: a put of a new key, then a read of it.
    const acked = new Map<string, number>();
    const maybe = new Set<string>();
    const successes: number[] = [];
    const failures = new Map<string, number>();
    let running = true;
    const loop = (async () => {
      for (let i = 0; running; i++) {
        const key = `${PREFIX}${String(i).padStart(6, '0')}`;
        try {
          const put = await client.put(key, `v${i}`);
          acked.set(key, put.header.revision);
          successes.push(Date.now());
          const read = await client.get(key);
          expect(read?.modRevision).toBe(put.header.revision);
          successes.push(Date.now());
        } catch (error) {
          if (!isDkvError(error)) throw error;
          // Not retried by the client: it may or may not have been applied.
          maybe.add(key);
          failures.set(error.code, (failures.get(error.code) ?? 0) + 1);
        }
      }
    })();

    await waitUntil(() => acked.size >= 100, 20_000, () => `100 puts (${acked.size})`);
    // Writes go straight to the leader, which is the preferred node.
    expect(client.leader.address).toBe(cluster.endpoint(0));
    const killedAt = Date.now();
    await cluster.kill(0);
    await waitUntil(() => successes.some((t) => t > killedAt), FAILOVER_BOUND_MS, () => 'an operation to succeed after the kill');
    const firstAfterKill = successes.find((t) => t > killedAt)!;
    const stallMs = firstAfterKill - killedAt;
    expect(stallMs).toBeLessThan(FAILOVER_BOUND_MS);
    await waitUntil(() => serverEvents.some((e) => e.reason === 'failover'), FAILOVER_BOUND_MS, () => 'a failover event');
    expect(serverEvents.find((e) => e.reason === 'failover')).toMatchObject({ address: cluster.endpoint(1), previous: cluster.endpoint(0) });
    const ackedBeforeRestart = acked.size;
    await waitUntil(() => acked.size >= ackedBeforeRestart + 100, 20_000, () => 'puts on the other nodes');

    cluster.startNode(0);
    await cluster.waitForHealthy(0);
    const healthyAt = Date.now();
    // (Another server may recover too: one a connect timed out on under load was marked unavailable.)
    const recoveredEvent = (e: ServerEvent): boolean => e.reason === 'recovered' && e.address === cluster.endpoint(0);
    await waitUntil(() => serverEvents.some(recoveredEvent), RECOVERY_BOUND_MS, () => `a recovered event (${JSON.stringify(serverEvents)})`);
    const recovered = serverEvents.find(recoveredEvent)!;
    expect(recovered).toMatchObject({ address: cluster.endpoint(0) });
    expect(recovered.at - healthyAt).toBeLessThan(RECOVERY_BOUND_MS);
    expect(client.server).toBe(cluster.endpoint(0));
    const ackedAtRecovery = acked.size;
    await waitUntil(() => acked.size >= ackedAtRecovery + 100, 20_000, () => 'puts after moving back');
    running = false;
    await loop;

    // The watch catches up with the store, and saw exactly what the store holds.
    const store = await client.range(PREFIX, { prefix: true });
    const last = Math.max(0, ...store.kvs.map((kv) => kv.modRevision));
    await waitUntil(() => watch.revision >= last, 20_000, () => `the watch to reach ${last} (at ${watch.revision})`);
    const revisions = watched.map((w) => w.revision);
    expect(revisions[0]).toBeGreaterThan(snapshotRevision);
    for (let i = 1; i < revisions.length; i++) expect(revisions[i]).toBeGreaterThan(revisions[i - 1]!);
    expect(watched).toEqual(store.kvs.map((kv) => ({ key: kv.key.toString(), revision: kv.modRevision })));
    // Every acknowledged put, at its revision; anything else only from a put whose outcome was unknown.
    const seen = new Map(watched.map((w) => [w.key, w.revision]));
    for (const [key, revision] of acked) expect(seen.get(key)).toBe(revision);
    for (const key of seen.keys()) if (!acked.has(key)) expect(maybe.has(key)).toBe(true);
    // jepsen-lite's watch checker on the delivered stream (one logical stream across failovers):
    // ordered, unique, atomic, reliable against the committed history (each key was put once, so
    // the store's final keys are that history).
    const history = {
      revisions: store.kvs.map((kv) => ({ revision: kv.modRevision, events: [{ type: 'put' as const, key: kv.key, value: kv.value, createRevision: kv.createRevision, modRevision: kv.modRevision, version: kv.version }] })),
      headRevision: store.header.revision,
    };
    const verdict = checkWatch(history, { name: 'watchPrefix', params: { key: Buffer.from(PREFIX), rangeEnd: prefixRangeEnd(Buffer.from(PREFIX)), startRevision: snapshotRevision + 1 }, responses, end: 'client-closed' });
    expect(verdict.violations).toEqual([]);
    expect(verdict.ok).toBe(true);
    console.log(`failover: stall ${stallMs} ms, ${acked.size} acked, failures ${JSON.stringify([...failures])}, moved back ${recovered.at - healthyAt} ms after healthy, events ${serverEvents.map((e) => `${e.reason}:${e.address}`).join(' ')}`);

    watch.close();
    await consumed;
    client.close();
  }, 120_000);
});
