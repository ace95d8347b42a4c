/**
 * Leader failover under load, against a real 3-node cluster of `dkv server` processes: writers
 * stream puts of distinct keys to every endpoint, the leader is SIGKILLed mid-stream, the
 * survivors keep taking writes, the killed node restarts from its data directory and takes writes
 * again. Then every acknowledged put must be readable from every node (linearizable and
 * serializable), with the revision its acknowledgement reported, nothing must appear that was
 * never written, and HashKV at one revision must agree on all three nodes.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Entry, SeededPrng, encodeConfChange } from '../../raft/index.js';
import { LevelLogStore } from '../../storage/index.js';
import { composeStateMachine, kvEngineOf } from '../../src/runtime/index.js';
import { type KvApplied, KvCommandKind, kvCommand, kvOutcome } from '../../src/engines/kv/index.js';
import { etcdType } from '../../src/etcd-proto.js';
import { type Applied, NodeRuntime, encodeEnvelope, firstRequestId } from '../../src/runtime/index.js';
import { Ticker, immediateScheduler, levelStorage, wallClock } from '../../src/server/runtime-host.js';
import type { Decoded, EtcdChannel } from '../../src/client/index.js';
import { etcdChannel, TestCluster, prefixEnd, waitUntil } from './cluster-harness.js';

const KEY_PREFIX = 'fo/';
/** Writers per endpoint (each has one put in flight at a time). */
const WRITERS_PER_NODE = 2;
/** Acknowledged puts wanted in each phase before moving to the next. */
const ACKS_PER_PHASE = 300;
/** A put that takes longer than this counts as failed (its outcome is then unknown). */
const PUT_TIMEOUT_MS = 3000;
/** A writer whose put failed waits this long before its next one, like any client's backoff. */
const RETRY_BACKOFF_MS = 25;
const PHASE_TIMEOUT_MS = 20_000;

let cluster: TestCluster;
let clients: EtcdChannel[] = [];

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
  clients = cluster.nodes.map((_, i) => etcdChannel(cluster.endpoint(i)));
}, 60_000);

afterAll(async () => {
  for (const client of clients) client.close();
  await cluster?.stop();
});

interface Ack {
  readonly value: string;
  readonly revision: number;
  readonly node: number;
}

/** Writers of distinct keys, each pinned to one node; they run until `stop()`. */
class Writers {
  readonly acked = new Map<string, Ack>();
  /** Keys whose put failed or timed out: they may or may not have been applied. */
  readonly failed = new Map<string, string>();
  readonly ackedByNode = [0, 0, 0];
  readonly failedByNode = [0, 0, 0];
  readonly failuresByCode = new Map<string, number>();
  private sequence = 0;
  private stopping = false;
  private readonly running: Array<Promise<void>> = [];

  start(nodes: number): void {
    for (let node = 0; node < nodes; node++) {
      for (let w = 0; w < WRITERS_PER_NODE; w++) this.running.push(this.loop(node));
    }
  }

  private async loop(node: number): Promise<void> {
    while (!this.stopping) {
      const n = this.sequence++;
      const key = `${KEY_PREFIX}${String(n).padStart(7, '0')}`;
      const value = `value-${n}-via-${node}`;
      try {
        const response = await clients[node]!.kv('Put', { key: Buffer.from(key), value: Buffer.from(value) }, { timeoutMs: PUT_TIMEOUT_MS });
        const header = response.header as { revision: number };
        this.acked.set(key, { value, revision: header.revision, node });
        this.ackedByNode[node]!++;
      } catch (error) {
        this.failed.set(key, value);
        this.failedByNode[node]!++;
        const code = String((error as { code?: number }).code ?? 'no code');
        this.failuresByCode.set(code, (this.failuresByCode.get(code) ?? 0) + 1);
        await new Promise((resolve) => setTimeout(resolve, RETRY_BACKOFF_MS));
      }
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.running);
  }
}

async function memberIdOf(node: number): Promise<number> {
  const status = await clients[node]!.maintenance('Status', {});
  return (status.header as { member_id: number }).member_id;
}

/** The index of the current leader, as a running node's Status reports it. */
async function leaderIndex(memberIds: readonly number[], asking: readonly number[]): Promise<number> {
  let found = -1;
  await waitUntil(async () => {
    for (const node of asking) {
      try {
        const status = await clients[node]!.maintenance('Status', {}, { timeoutMs: 2000 });
        found = memberIds.indexOf(status.leader as number);
        if (found >= 0) return true;
      } catch {
        // this node cannot answer now; ask the next
      }
    }
    return false;
  }, PHASE_TIMEOUT_MS, () => 'a node that knows the leader');
  return found;
}

async function rangePrefix(node: number, serializable: boolean): Promise<Map<string, { value: string; modRevision: number }>> {
  const response = await clients[node]!.kv('Range', { key: Buffer.from(KEY_PREFIX), range_end: prefixEnd(KEY_PREFIX), serializable }, { timeoutMs: 10_000 });
  const kvs = response.kvs as Array<{ key: Buffer; value: Buffer; mod_revision: number }>;
  expect(response.more).toBe(false);
  return new Map(kvs.map((kv) => [kv.key.toString(), { value: kv.value.toString(), modRevision: kv.mod_revision }]));
}

/** A put that must succeed (retried on another node while the cluster settles). */
async function putSurely(key: string, value: string): Promise<Decoded> {
  let response: Decoded | undefined;
  await waitUntil(async () => {
    for (const client of clients) {
      try {
        response = await client.kv('Put', { key: Buffer.from(key), value: Buffer.from(value) }, { timeoutMs: PUT_TIMEOUT_MS });
        return true;
      } catch {
        // try the next node
      }
    }
    return false;
  }, PHASE_TIMEOUT_MS, () => `put ${key}`);
  return response!;
}

describe('failover of the leader under a stream of puts', () => {
  it('keeps every acknowledged put on every node after the leader is killed and restarted', async () => {
    const started = Date.now();
    const phase = (name: string) => console.log(`[failover] ${((Date.now() - started) / 1000).toFixed(1)}s ${name}`);
    const memberIds = await Promise.all(clients.map((_, i) => memberIdOf(i)));
    const writers = new Writers();
    writers.start(3);
    try {
      await waitUntil(() => writers.acked.size >= ACKS_PER_PHASE, PHASE_TIMEOUT_MS, () => `${ACKS_PER_PHASE} acks before the kill`);
      const leader = await leaderIndex(memberIds, [0, 1, 2]);
      const survivors = [0, 1, 2].filter((i) => i !== leader);
      const ackedAtKill = writers.acked.size;
      phase(`killing leader ${cluster.nodes[leader]!.name} with ${ackedAtKill} puts acked`);
      await cluster.kill(leader);

      // The survivors elect a new leader and take writes again.
      const survivorAcksAtKill = survivors.map((i) => writers.ackedByNode[i]!);
      await waitUntil(
        () => survivors.every((i, j) => writers.ackedByNode[i]! >= survivorAcksAtKill[j]! + ACKS_PER_PHASE / 2),
        PHASE_TIMEOUT_MS,
        () => `writes through both survivors after the kill\n${cluster.logs()}`,
      );
      const newLeader = await leaderIndex(memberIds, survivors);
      expect(newLeader).not.toBe(leader);
      phase(`new leader ${cluster.nodes[newLeader]!.name}; ${writers.acked.size} acked, restarting ${cluster.nodes[leader]!.name}`);

      // The killed node comes back from its data directory and takes writes again.
      cluster.startNode(leader);
      await cluster.waitForHealthy(leader);
      const restartedAcks = writers.ackedByNode[leader]!;
      await waitUntil(
        () => writers.ackedByNode[leader]! >= restartedAcks + ACKS_PER_PHASE / 2,
        PHASE_TIMEOUT_MS,
        () => `writes through the restarted node\n${cluster.logs()}`,
      );
      phase(`restarted node serving; ${writers.acked.size} acked`);
    } finally {
      await writers.stop();
    }
    console.log(
      `[failover] acked ${writers.acked.size} (by node ${writers.ackedByNode.join('/')}), failed ${writers.failed.size}` +
        ` (by node ${writers.failedByNode.join('/')}; by gRPC code ${JSON.stringify(Object.fromEntries(writers.failuresByCode))})`,
    );

    // A last put whose revision every node must reach before its serializable read counts.
    const barrier = await putSurely('fo-barrier', 'done');
    const barrierRevision = (barrier.header as { revision: number }).revision;
    for (let node = 0; node < 3; node++) {
      await waitUntil(async () => {
        const r = await clients[node]!.kv('Range', { key: Buffer.from('fo-barrier'), serializable: true }).catch(() => undefined);
        return ((r?.header as { revision: number } | undefined)?.revision ?? 0) >= barrierRevision;
      }, PHASE_TIMEOUT_MS, () => `node ${node} applying revision ${barrierRevision}`);
    }

    const views: string[] = [];
    for (let node = 0; node < 3; node++) {
      for (const serializable of [false, true]) {
        const seen = await rangePrefix(node, serializable);
        const where = `node ${cluster.nodes[node]!.name} (${serializable ? 'serializable' : 'linearizable'})`;
        const missing = [...writers.acked.keys()].filter((key) => !seen.has(key));
        expect(missing, `acknowledged puts missing on ${where}`).toEqual([]);
        const wrongRevision = [...writers.acked].filter(([key, ack]) => seen.get(key)!.modRevision !== ack.revision || seen.get(key)!.value !== ack.value);
        expect(
          wrongRevision.slice(0, 5).map(([key, ack]) => ({ key, ack, stored: seen.get(key) })),
          `acknowledgements whose revision or value differ from what ${where} stores`,
        ).toEqual([]);
        const phantom = [...seen].filter(([key, kv]) => (writers.acked.get(key)?.value ?? writers.failed.get(key)) !== kv.value);
        expect(phantom.map(([key]) => key), `keys on ${where} that no writer wrote`).toEqual([]);
        views.push(JSON.stringify([...seen].sort(([a], [b]) => (a < b ? -1 : 1))));
      }
    }
    expect(new Set(views).size, 'every node and read mode sees the same keys').toBe(1);

    const hashes = await Promise.all(clients.map((client) => client.maintenance('HashKV', { revision: barrierRevision })));
    expect(hashes.map((h) => h.hash_revision)).toEqual([barrierRevision, barrierRevision, barrierRevision]);
    expect(new Set(hashes.map((h) => h.hash)).size, `HashKV at ${barrierRevision}: ${hashes.map((h) => h.hash).join(', ')}`).toBe(1);
  }, 90_000);
});

/**
 * Regression (found by this suite): a proposal's waiter is found by (proposer, request id). When
 * request ids restarted at 1 in every process, an entry a killed leader had proposed before the
 * crash could commit after its restart and complete a NEW request with the same id — the client
 * was acknowledged with another write's result before its own write was applied. Request ids
 * now start from the process start time (unique across restarts), and a waiter completes only
 * when the applied entry holds exactly the bytes it proposed. Here the state is made
 * deterministic in process: a single-member shard whose log holds three puts of this member
 * (request ids 1..3 of an earlier life) after its commit index, and a put proposed the moment the
 * restarted member becomes leader.
 */
describe('request ids after a restart (in process, one shard runtime)', () => {
  it('acknowledges a put only once that put itself is applied', async () => {
    const PutRequest = etcdType('etcdserverpb.PutRequest');
    const memberId = 0xa1;
    const dir = mkdtempSync(join(tmpdir(), 'dkv-request-ids-'));
    const putRequest = (key: string) => PutRequest.encode({ key: Buffer.from(key), value: Buffer.from('v') }).finish();
    const store = await LevelLogStore.open({ path: dir });
    const ticker = new Ticker();
    let runtime: NodeRuntime | undefined;
    try {
      // The state a killed leader leaves: its bootstrap entry committed, three of its own puts
      // (request ids 1..3 of its previous incarnation) persisted after the commit index.
      const bootstrap: Entry = {
        index: 1,
        term: 1,
        type: 'conf-change',
        data: encodeConfChange({ transition: 'auto', changes: [{ type: 'add-voter', nodeId: memberId }], context: new Uint8Array(0) }),
      };
      const oldPuts: Entry[] = [1, 2, 3].map((requestId) => ({
        index: 1 + requestId,
        term: 1,
        type: 'normal',
        data: encodeEnvelope({ ...kvCommand(KvCommandKind.Put, putRequest(`old/${requestId}`)), timestampMs: 0, proposer: memberId, requestId }),
      }));
      await store.save([{ shard: 1, entries: [bootstrap, ...oldPuts], hardState: { term: 1, vote: memberId, commit: 1 } }]);

      let proposed: Promise<Applied> | undefined;
      const restarted: NodeRuntime = new NodeRuntime({
        memberId,
        storage: levelStorage(store),
        transport: { send: () => undefined },
        clock: wallClock,
        scheduler: immediateScheduler,
        random: new SeededPrng(7),
        raft: { electionTicks: 10, heartbeatTicks: 1 },
        tickMs: 5,
        snapshotCount: 10_000,
        snapshotCatchUpEntries: 100,
        requestTimeoutMs: 10_000,
        stateMachine: () => composeStateMachine('data'),
        // Request ids of the new incarnation start where the old ones did (the worst case).
        firstRequestId: 1,
        listener: {
          // A client's put arriving just as the restarted member is leader again.
          leaderChanged: (shard, leader) => {
            if (shard === 1 && leader === memberId && proposed === undefined) {
              proposed = new Promise((resolve, reject) =>
                restarted.propose(1, kvCommand(KvCommandKind.Put, putRequest('new/key')), {}, (error, applied) => (error ? reject(error) : resolve(applied!))),
              );
            }
          },
        },
      });
      runtime = restarted;
      restarted.addShard(1);
      ticker.start(restarted, 5);
      await waitUntil(() => proposed !== undefined, 10_000, () => 'the restarted member to become leader');
      const applied = await proposed!;
      const outcome: KvApplied = kvOutcome(applied.outcome);

      // The acknowledgement must be new/key's own entry (index 6, after the new leader's empty
      // entry at 5), reporting the revision new/key was written at.
      const stored = kvEngineOf(restarted.machine(1)).mvcc.range({ key: Buffer.from('new/key') }).kvs[0];
      expect(
        { index: applied.index, revision: outcome.outcome.kind === 'put' ? outcome.outcome.result.revision : outcome.outcome.kind },
        'the waiter of new/key was resolved by an entry of the previous incarnation',
      ).toEqual({ index: 6, revision: stored?.modRevision });
      expect(firstRequestId(Date.now())).toBeGreaterThan(2 ** 40);
    } finally {
      ticker.stop();
      await new Promise<void>((resolve) => (runtime === undefined ? resolve() : runtime.stop(resolve)));
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
