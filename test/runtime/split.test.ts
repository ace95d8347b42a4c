/**
 * A shard split on the deterministic simulator with the real runtime and the real data engines: a
 * Split command in the parent's log makes, on every replica at that index, the child group from
 * the replica's own data (nothing copied over the network); the parent keeps the keys below the
 * split key, the child the rest, each with its history and the parent's revision; writes that
 * land on the wrong side are refused; a restart replays the parent's log without making the child
 * twice; a replica that missed the split (the parent's leader sent it a snapshot past it) gets the
 * child from the child's leader.
 */
import { describe, expect, it } from 'vitest';
import { SIM_DEFAULTS, type SimCallback, SimCluster } from '../../jepsen-lite/sim/cluster.js';
import { etcdType } from '../../src/etcd-proto.js';
import { type EngineCommand, type OwnershipOutcome, splitCommand } from '../../src/engines/index.js';
import { KvCommandKind, kvCommand } from '../../src/engines/kv/index.js';
import { grantCommand, revokeCommand } from '../../src/engines/lease/engine.js';
import { composeStateMachine, kvEngineOf, ownershipEngineOf } from '../../src/runtime/compose.js';
import { encodeEnvelope } from '../../src/runtime/index.js';

const PARENT = 7;
const CHILD = 8;
const text = (s: string) => new TextEncoder().encode(s);
const PutRequest = etcdType('etcdserverpb.PutRequest');
const TxnRequest = etcdType('etcdserverpb.TxnRequest');
const key = (i: number) => `k${String(i).padStart(2, '0')}`;

function cluster(seed: number, options: { snapshotEveryEntries?: number; snapshotKeepEntries?: number } = {}): SimCluster {
  const c = new SimCluster({ ...SIM_DEFAULTS, seed, nodeIds: [1, 2, 3], requestTimeoutMs: 3000, stateMachine: () => composeStateMachine('data'), ...options });
  expect(c.runUntilCondition(() => c.leader() !== undefined, 10_000)).toBe(true);
  c.createShard(PARENT, [1, 2, 3]);
  expect(c.runUntilCondition(() => c.leader(PARENT) !== undefined, 10_000)).toBe(true);
  return c;
}

/** Submits and runs until answered; returns the outcome or the error code. */
function run(c: SimCluster, node: number, shard: number, command: Parameters<SimCluster['submit']>[2]): unknown {
  let heard: { error?: string; result?: unknown } | undefined;
  const callback: SimCallback = (error, result) => {
    heard = { error, result };
  };
  c.submit(node, shard, command, callback);
  expect(c.runUntilCondition(() => heard !== undefined, 10_000)).toBe(true);
  if (heard!.error !== undefined) return heard!.error;
  // The KV engine's outcome comes with the write's events; the others' alone.
  const result = heard!.result as { outcome?: unknown; events?: unknown } | undefined;
  return result !== undefined && 'events' in result && 'outcome' in result ? result.outcome : result;
}

const put = (k: string, v: string) => kvCommand(KvCommandKind.Put, PutRequest.encode({ key: text(k), value: text(v) }).finish());
const txnPuts = (keys: string[], v: string) => kvCommand(KvCommandKind.Txn, TxnRequest.encode({ success: keys.map((k) => ({ request_put: { key: text(k), value: text(v) } })) }).finish());

/** Every key's (key, value, create, mod, version) on `node`'s replica of `shard`, and the revision. */
function contents(c: SimCluster, node: number, shard: number): { revision: number; kvs: string[] } {
  const mvcc = kvEngineOf(c.nodes.get(node)!.machine(shard)!).mvcc;
  const kvs = mvcc.range({ key: new Uint8Array([0]), rangeEnd: new Uint8Array([0]) }).kvs.map((kv) => `${Buffer.from(kv.key)}=${Buffer.from(kv.value)}@${kv.createRevision}/${kv.modRevision}/${kv.version}`);
  return { revision: mvcc.revision, kvs };
}

function converged(c: SimCluster, shard: number, nodes: readonly number[]): boolean {
  const states = nodes.map((id) => {
    const m = c.nodes.get(id)!.machine(shard);
    return m === undefined ? 'absent' : `${m.appliedIndex}/${m.hash()}`;
  });
  return !states.includes('absent') && new Set(states).size === 1;
}

function leaderOf(c: SimCluster, shard: number): number {
  return c.leader(shard)!.id;
}

/** 30 keys with some history: overwrites and a txn across the split key. */
function load(c: SimCluster): void {
  const at = leaderOf(c, PARENT);
  for (let i = 0; i < 30; i++) expect(run(c, at, PARENT, put(key(i), `v${i}`))).toMatchObject({ kind: 'put' });
  for (let i = 0; i < 30; i += 7) expect(run(c, at, PARENT, put(key(i), `w${i}`))).toMatchObject({ kind: 'put' });
  expect(run(c, at, PARENT, txnPuts([key(5), key(25)], 'both'))).toMatchObject({ kind: 'txn' });
}

describe('a shard split', () => {
  it('gives every replica the same two halves, each with its keys, history and the parent revision', () => {
    const c = cluster(31);
    load(c);
    const before = contents(c, leaderOf(c, PARENT), PARENT);
    expect(run(c, leaderOf(c, PARENT), PARENT, splitCommand(CHILD, text(key(15)), undefined))).toEqual({ kind: 'ok' });
    expect(c.runUntilCondition(() => c.hosts(CHILD).length === 3 && c.leader(CHILD) !== undefined, 10_000)).toBe(true);
    const low = before.kvs.filter((kv) => kv < key(15));
    const high = before.kvs.filter((kv) => kv >= key(15));
    expect(low.length).toBe(15);
    expect(high.length).toBe(15);
    for (const node of [1, 2, 3]) {
      expect(contents(c, node, PARENT)).toEqual({ revision: before.revision, kvs: low });
      expect(contents(c, node, CHILD)).toEqual({ revision: before.revision, kvs: high });
      // History is kept: the key's first value, at its first revision.
      const child = kvEngineOf(c.nodes.get(node)!.machine(CHILD)!).mvcc;
      const first = child.range({ key: text(key(21)), revision: 23 }).kvs[0];
      expect(Buffer.from(first!.value).toString()).toBe('v21');
      expect(ownershipEngineOf(c.nodes.get(node)!.machine(PARENT)!).owns(text(key(15)))).toBe(false);
      expect(ownershipEngineOf(c.nodes.get(node)!.machine(CHILD)!).owns(text(key(14)))).toBe(false);
    }
    expect(c.runUntilCondition(() => converged(c, PARENT, [1, 2, 3]) && converged(c, CHILD, [1, 2, 3]), 10_000)).toBe(true);

    // Each half takes its own keys, and refuses the other's.
    expect(run(c, leaderOf(c, PARENT), PARENT, put(key(20), 'late'))).toMatchObject({ kind: 'error' });
    expect(run(c, leaderOf(c, CHILD), CHILD, put(key(3), 'wrong'))).toMatchObject({ kind: 'error' });
    expect(run(c, leaderOf(c, CHILD), CHILD, put(key(20), 'new'))).toMatchObject({ kind: 'put', result: { revision: before.revision + 1 } });
    expect(run(c, leaderOf(c, PARENT), PARENT, put(key(3), 'new'))).toMatchObject({ kind: 'put', result: { revision: before.revision + 1 } });
    // The same split again changes nothing.
    expect(run(c, leaderOf(c, PARENT), PARENT, splitCommand(CHILD, text(key(15)), undefined))).toEqual({ kind: 'ok' });
    expect(c.runUntilCondition(() => converged(c, PARENT, [1, 2, 3]) && converged(c, CHILD, [1, 2, 3]), 10_000)).toBe(true);
    for (const node of c.nodes.values()) expect(node.runtime?.fatalError).toBeUndefined();
  });

  it('refuses a key outside the shard, a stale end, and a shard that holds a lease, changing nothing', () => {
    const c = cluster(32);
    load(c);
    const at = leaderOf(c, PARENT);
    expect(run(c, at, PARENT, splitCommand(CHILD, text(key(15)), undefined))).toEqual({ kind: 'ok' });
    expect(c.runUntilCondition(() => c.leader(CHILD) !== undefined, 10_000)).toBe(true);
    // Each refusal fences its child, so each case names a child of its own (a refusal by the
    // fence would hide the one meant) and is told by its message.
    const bad = (outcome: unknown, why: RegExp) => {
      expect(outcome).toMatchObject({ kind: 'error', code: 'bad-split' });
      expect((outcome as { message: string }).message).toMatch(why);
    };
    // Above the parent's new end, with the parent's stale end, at the child's start, below it.
    bad(run(c, leaderOf(c, PARENT), PARENT, splitCommand(9, text(key(20)), text(key(15)))), /not below the shard's end/);
    bad(run(c, leaderOf(c, PARENT), PARENT, splitCommand(10, text(key(10)), undefined)), /the shard ends at/);
    bad(run(c, leaderOf(c, CHILD), CHILD, splitCommand(11, text(key(15)), undefined)), /not above the shard's start/);
    bad(run(c, leaderOf(c, CHILD), CHILD, splitCommand(12, text(key(2)), undefined)), /not above the shard's start/);
    bad(run(c, leaderOf(c, CHILD), CHILD, splitCommand(13, new Uint8Array(0), undefined)), /empty/);
    c.runFor(2000);
    for (const child of [9, 10, 11, 12, 13]) expect(c.hosts(child)).toEqual([]);
    // A lease in the shard: refused; then fenced against that child even once the lease is gone.
    expect(run(c, leaderOf(c, CHILD), CHILD, grantCommand(5n, 60))).toMatchObject({ kind: 'granted' });
    bad(run(c, leaderOf(c, CHILD), CHILD, splitCommand(14, text(key(25)), undefined)), /holds 1 lease/);
    expect(run(c, leaderOf(c, CHILD), CHILD, revokeCommand(5n))).toMatchObject({ kind: 'revoked' });
    bad(run(c, leaderOf(c, CHILD), CHILD, splitCommand(14, text(key(25)), undefined)), /fenced/);
    c.runFor(2000);
    expect(c.hosts(14)).toEqual([]);
  });

  it('survives restarts: a restart replays the split without making the child twice; a replica that missed it gets the child from its leader', () => {
    const c = cluster(33, { snapshotEveryEntries: 10, snapshotKeepEntries: 2 });
    load(c);
    const lagging = [1, 2, 3].find((id) => id !== leaderOf(c, PARENT))!;
    c.crash(lagging);
    const at = leaderOf(c, PARENT);
    const before = contents(c, at, PARENT);
    expect(run(c, at, PARENT, splitCommand(CHILD, text(key(15)), undefined))).toEqual({ kind: 'ok' });
    expect(c.runUntilCondition(() => c.leader(CHILD) !== undefined, 10_000)).toBe(true);
    // Enough writes to both that each snapshots and compacts past the split.
    for (let i = 0; i < 25; i++) {
      expect(run(c, leaderOf(c, PARENT), PARENT, put(key(i % 15), `p${i}`))).toMatchObject({ kind: 'put' });
      expect(run(c, leaderOf(c, CHILD), CHILD, put(key(15 + (i % 15)), `c${i}`))).toMatchObject({ kind: 'put' });
    }
    // A replica that was up restarts: its disk holds the child.
    const up = [1, 2, 3].find((id) => id !== lagging && id !== leaderOf(c, PARENT))!;
    c.crash(up);
    c.restart(up);
    expect(c.hosts(CHILD)).toContain(up);
    // The lagging one comes back: the parent's leader sends it a snapshot past the split, so it
    // never applies the split; the child is started on it empty (as the server does once the
    // map names it) and gets the child's state from its leader.
    c.restart(lagging);
    expect(c.runUntilCondition(() => converged(c, PARENT, [1, 2, 3]), 10_000)).toBe(true);
    expect(c.hosts(CHILD)).not.toContain(lagging);
    c.nodes.get(lagging)!.runtime!.addShard(CHILD);
    expect(c.runUntilCondition(() => converged(c, PARENT, [1, 2, 3]) && converged(c, CHILD, [1, 2, 3]), 10_000)).toBe(true);
    for (const node of [1, 2, 3]) {
      const parent = contents(c, node, PARENT);
      const child = contents(c, node, CHILD);
      expect(parent.kvs.every((kv) => kv < key(15))).toBe(true);
      expect(child.kvs.every((kv) => kv >= key(15))).toBe(true);
      expect(parent.kvs.length + child.kvs.length).toBe(before.kvs.length);
    }
    for (const node of c.nodes.values()) expect(node.runtime?.fatalError).toBeUndefined();
  });

  it('a replay through a split whose child this node has already keeps only the parent half, as the first apply did, without making the child again', () => {
    const apply = (made: boolean) => {
      const machine = composeStateMachine('data');
      machine.splitChildMade = () => made;
      let index = 0;
      const entry = (command: EngineCommand) => {
        index++;
        return machine.apply({ index, term: 1, type: 'normal', data: encodeEnvelope({ ...command, timestampMs: 1000 + index, proposer: 1, requestId: index }) });
      };
      for (let i = 0; i < 30; i++) entry(put(key(i), `v${i}`));
      expect(entry(splitCommand(CHILD, text(key(15)), undefined))?.outcome).toEqual({ kind: 'ok' });
      return { machine, splits: machine.takeSplits() };
    };
    const first = apply(false);
    const replay = apply(true);
    expect(first.splits.map((split) => split.child)).toEqual([CHILD]);
    expect(kvEngineOf(first.splits[0]!.machine!).mvcc.keyCount).toBe(15);
    expect(replay.splits).toEqual([{ child: CHILD, machine: undefined }]);
    expect(replay.machine.hash()).toBe(first.machine.hash());
    expect(kvEngineOf(replay.machine).mvcc.keyCount).toBe(15);
  });
});
