/**
 * Watches checked against etcd's six guarantees (jepsen-lite/check) over a randomized
 * put/delete/txn/compact workload on a real 3-node cluster. The watched node is SIGKILLed
 * midway; each watch resumes from its last seen revision + 1 on the restarted node, and the
 * first and second halves are checked as separate records against one history.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type WatchHistory, type WatchParams, type WatchRecord, type WatchResponse, checkWatches, type HistoryRevision, type WatchEvent } from '../../jepsen-lite/check/index.js';
import { SeededPrng } from '../../raft/index.js';
import type { Decoded } from '../../src/client/index.js';
import { etcdChannel, TestCluster, etcdctl, prefixEnd, waitUntil } from './cluster-harness.js';
import { WatchClient } from './watch-client.js';

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

const enc = (s: string): Uint8Array => Buffer.from(s);

function toEvent(e: Decoded): WatchEvent {
  const kv = e.kv as Decoded;
  const prev = e.prev_kv as Decoded | null | undefined;
  return {
    type: e.type === 1 ? 'delete' : 'put',
    key: kv.key as Buffer,
    value: kv.value as Buffer,
    createRevision: kv.create_revision as number,
    modRevision: kv.mod_revision as number,
    version: kv.version as number,
    prevKv:
      prev === null || prev === undefined
        ? undefined
        : { key: prev.key as Buffer, value: prev.value as Buffer, createRevision: prev.create_revision as number, modRevision: prev.mod_revision as number, version: prev.version as number },
  };
}

/**
 * The responses of watch `id` on a stream. A progress answer for the whole stream (id -1) goes to
 * every watch still open then.
 */
function responsesOf(client: WatchClient, id: number): WatchResponse[] {
  const out: WatchResponse[] = [];
  for (const r of client.responses) {
    const header = (r.header as { revision: number }).revision;
    if (out.some((x) => x.kind === 'canceled')) break;
    if (r.watch_id === -1 && r.created !== true) {
      out.push({ kind: 'progress', headerRevision: header });
      continue;
    }
    if (r.watch_id !== id) continue;
    if (r.created === true) out.push({ kind: 'created', headerRevision: header });
    else if (r.canceled === true) out.push({ kind: 'canceled', reason: r.cancel_reason as string, compactRevision: (r.compact_revision as number) || undefined });
    else if (((r.events as Decoded[]) ?? []).length === 0) out.push({ kind: 'progress', headerRevision: header });
    else out.push({ kind: 'events', headerRevision: header, events: (r.events as Decoded[]).map(toEvent), fragment: r.fragment === true });
  }
  return out;
}

/** The first revision the client has not seen: last delivered or bookmarked + 1. */
function resumeRevision(responses: readonly WatchResponse[], start: number): number {
  let next = start;
  for (const r of responses) {
    if (r.kind === 'events') next = Math.max(next, r.events[r.events.length - 1]!.modRevision + 1);
    if (r.kind === 'progress') next = Math.max(next, r.headerRevision + 1);
  }
  return next;
}

describe('watches under a randomized workload with the watched node killed', () => {
  it('keep every guarantee, before and after resuming', async () => {
    const prng = new SeededPrng(5150);
    // The watched node is a follower (the writer keeps its leader).
    const status = JSON.parse(etcdctl(cluster.endpoints, ['endpoint', 'status', '-w', 'json']).stdout) as Array<{ Endpoint: string; Status: { leader: number; header: { member_id: number } } }>;
    const watched = cluster.nodes.findIndex((_, i) => {
      const s = status.find((x) => x.Endpoint === cluster.endpoint(i));
      return s !== undefined && s.Status.leader !== s.Status.header.member_id;
    });
    const writerNode = [0, 1, 2].find((i) => i !== watched)!;
    const kv = etcdChannel(cluster.endpoint(writerNode));
    // The history: every change from revision 1, recorded on a node that is never killed.
    const historyClient = new WatchClient(cluster.endpoint(writerNode));
    historyClient.create({ key: '\0', rangeEnd: '\0', startRevision: 1, prevKv: true });

    const params: WatchParams[] = [
      { key: enc('k'), rangeEnd: prefixEnd('k'), startRevision: 1, prevKv: true },
      { key: enc('k3') },
      { key: enc('k2'), rangeEnd: enc('k7'), noPut: true },
      { key: enc('k'), rangeEnd: prefixEnd('k'), noDelete: true, prevKv: true },
    ];
    const open = (node: number, starts: readonly (number | undefined)[]): WatchClient => {
      const client = new WatchClient(cluster.endpoint(node));
      params.forEach((p, i) =>
        client.create({
          key: Buffer.from(p.key).toString('latin1'),
          rangeEnd: p.rangeEnd === undefined ? undefined : Buffer.from(p.rangeEnd),
          startRevision: starts[i] ?? p.startRevision ?? 0,
          prevKv: p.prevKv,
          filters: [...(p.noPut ? [0] : []), ...(p.noDelete ? [1] : [])],
          watchId: i + 1,
        }),
      );
      return client;
    };
    const first = open(watched, []);
    await first.waitFor((rs) => rs.filter((r) => r.created === true).length === params.length);

    const compactions: Array<{ revision: number; atRevision: number }> = [];
    let acked = 0;
    const work = async (ops: number, compact: boolean): Promise<void> => {
      for (let i = 0; i < ops; i++) {
        const choice = prng.nextInt(10);
        const key = `k${prng.nextInt(10)}`;
        if (choice < 5) await kv.kv('Put', { key: enc(key), value: enc(`v${prng.nextInt(1000)}`) });
        else if (choice < 7) await kv.kv('DeleteRange', { key: enc(key) });
        else if (choice < 8) await kv.kv('DeleteRange', { key: enc('k8'), range_end: enc('k9') });
        else {
          const keys = [...new Set([key, `k${prng.nextInt(10)}`, `k${prng.nextInt(10)}`])];
          await kv.kv('Txn', { success: keys.map((k) => ({ request_put: { key: enc(k), value: enc(`t${prng.nextInt(1000)}`) } })) });
        }
        acked++;
        if (compact && i % 60 === 59) {
          const current = ((await kv.kv('Range', { key: enc('k0') })).header as { revision: number }).revision;
          const at = Math.max(2, current - 15 - prng.nextInt(10));
          const r = await kv.kv('Compact', { revision: at });
          compactions.push({ revision: at, atRevision: (r.header as { revision: number }).revision });
        }
      }
    };
    await work(150, true);
    await cluster.kill(watched);
    const firstRecords = params.map((p, i): WatchRecord => ({ name: `before-kill #${i + 1}`, params: p, responses: responsesOf(first, i + 1), end: 'broken' }));
    first.close();
    // No compaction while the node is down, so the resumed watches have history to catch up from.
    await work(60, false);
    cluster.startNode(watched);
    await cluster.waitForHealthy(watched);
    const resumeAt = firstRecords.map((r, i) => resumeRevision(r.responses, params[i]!.startRevision ?? 0));
    const second = open(watched, resumeAt);
    await work(150, true);

    // Let every watch reach the end: a progress answer means every watch on the stream is synced.
    const final = ((await kv.kv('Range', { key: enc('k0') })).header as { revision: number }).revision;
    for (const client of [second, historyClient]) {
      await waitUntil(() => {
        client.requestProgress();
        return client.responses.some((r) => r.watch_id === -1 && !r.created && (r.header as { revision: number }).revision >= final);
      }, 20_000, () => 'watches to catch up', 200);
    }
    const secondRecords = params.map((p, i): WatchRecord => ({
      name: `after-restart #${i + 1}`,
      params: { ...p, startRevision: resumeAt[i] },
      responses: responsesOf(second, i + 1),
      end: responsesOf(second, i + 1).some((x) => x.kind === 'canceled') ? 'canceled' : 'client-closed',
      resumedFrom: resumeAt[i],
    }));
    second.close();

    const byRevision = new Map<number, WatchEvent[]>();
    for (const e of responsesOf(historyClient, 0).flatMap((r) => (r.kind === 'events' ? r.events : []))) {
      const list = byRevision.get(e.modRevision) ?? [];
      list.push(e);
      byRevision.set(e.modRevision, list);
    }
    historyClient.close();
    kv.close();
    const revisions: HistoryRevision[] = [...byRevision.entries()].sort((a, b) => a[0] - b[0]).map(([revision, events]) => ({ revision, events }));
    const history: WatchHistory = { revisions, compactions, headRevision: final };
    // The history watch itself is continuous: every revision from the first write (2) to the last.
    expect(revisions.map((r) => r.revision)).toEqual(Array.from({ length: final - 1 }, (_, i) => i + 2));

    const result = checkWatches(history, [...firstRecords, ...secondRecords]);
    const delivered = [...firstRecords, ...secondRecords].map((r) => r.responses.filter((x) => x.kind === 'events').length);
    console.log(`watch check: ${acked} writes, ${compactions.length} compactions, responses per watch ${delivered.join('/')}, resumed from ${resumeAt.join(',')}`);
    expect(result.violations.map((v) => v.message)).toEqual([]);
    expect(result.ok).toBe(true);
  }, 120_000);
});
