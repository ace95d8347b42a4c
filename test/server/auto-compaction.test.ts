/**
 * The auto-compactor on a real data shard state machine behind a stand-in shard handle: only the
 * leader proposes; revision mode keeps the last N revisions; periodic mode keeps at least the
 * retention of history; a compaction is proposed once.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { EngineCommand } from '../../src/engines/index.js';
import { KvCommandKind, kvCommand } from '../../src/engines/kv/index.js';
import { etcdType } from '../../src/etcd-proto.js';
import { type Applied, type ShardHandle, composeStateMachine, encodeEnvelope, kvEngineOf, singleStoreMap } from '../../src/runtime/index.js';
import { AutoCompactor, autoCompactionCheckMs } from '../../src/server/auto-compaction.js';
import type { AutoCompactionConfig } from '../../src/server/config.js';
import { TestCluster, etcdctl, waitUntil } from './cluster-harness.js';

const PutRequest = etcdType('etcdserverpb.PutRequest');
const self = 7;

/** A shard handle over a state machine that applies every proposal at once. */
function fakeShard(leader: number) {
  const machine = composeStateMachine('data');
  const proposals: EngineCommand[] = [];
  let index = 0;
  const apply = (command: EngineCommand): Applied => {
    index++;
    return machine.apply({ index, term: 1, type: 'normal', data: encodeEnvelope({ ...command, timestampMs: 0, proposer: self, requestId: index }) })!;
  };
  const shard = {
    shardId: 1,
    leader: () => leader,
    machine: () => machine,
    propose: (command: EngineCommand) => {
      proposals.push(command);
      return Promise.resolve(apply(command));
    },
  } as unknown as ShardHandle;
  const put = (n: number): void => {
    for (let i = 0; i < n; i++) apply(kvCommand(KvCommandKind.Put, PutRequest.encode({ key: Buffer.from(`k${i % 5}`), value: Buffer.from('v') }).finish()));
  };
  return { shard, proposals, put, mvcc: () => kvEngineOf(machine).mvcc };
}

function compactor(config: AutoCompactionConfig, shard: ShardHandle): AutoCompactor {
  return new AutoCompactor({ router: { hosted: () => [shard], map: singleStoreMap(0, 1) }, memberId: self, config });
}

describe('AutoCompactor', () => {
  it('revision mode: the leader compacts to the revision minus the retention, once per change', async () => {
    const { shard, proposals, put, mvcc } = fakeShard(self);
    const auto = compactor({ mode: 'revision', retention: 10 }, shard);
    put(5);
    auto.tick(0);
    expect(proposals).toHaveLength(0); // revision 6 - 10 < 1: nothing to compact
    put(20);
    auto.tick(1);
    await Promise.resolve();
    expect(mvcc().compactRevision).toBe(mvcc().revision - 10);
    auto.tick(2);
    expect(proposals).toHaveLength(1); // no new revisions: no second proposal
    put(3);
    auto.tick(3);
    await Promise.resolve();
    expect(proposals).toHaveLength(2);
    expect(mvcc().compactRevision).toBe(mvcc().revision - 10);
  });

  it('a follower never proposes', () => {
    const { shard, proposals, put } = fakeShard(99);
    const auto = compactor({ mode: 'revision', retention: 1 }, shard);
    put(20);
    auto.tick(0);
    expect(proposals).toHaveLength(0);
  });

  it('periodic mode: compacts to the newest revision sampled at least the retention ago', async () => {
    const { shard, put, mvcc } = fakeShard(self);
    const hourMs = 3_600_000;
    const config: AutoCompactionConfig = { mode: 'periodic', retention: hourMs };
    expect(autoCompactionCheckMs(config)).toBe(hourMs / 10);
    const auto = compactor(config, shard);
    const revisions: number[] = [];
    for (let step = 0; step <= 10; step++) {
      put(3);
      revisions.push(mvcc().revision);
      auto.tick(step * (hourMs / 10));
      await Promise.resolve();
      // Nothing is compacted before an hour of samples exists.
      if (step < 10) expect(mvcc().compactRevision).toBe(0);
    }
    expect(mvcc().compactRevision).toBe(revisions[0]);
    put(3);
    auto.tick(11 * (hourMs / 10));
    await Promise.resolve();
    expect(mvcc().compactRevision).toBe(revisions[1]);
  });

  it('is off with a retention of 0', () => {
    const { shard } = fakeShard(self);
    expect(compactor({ mode: 'periodic', retention: 0 }, shard).enabled).toBe(false);
  });
});

describe('--auto-compaction-retention on a running node', () => {
  it('periodic 1s: the leader compacts through Raft and logs it', async () => {
    const cluster = await TestCluster.start({ nodes: 1, args: ['--auto-compaction-mode=periodic', '--auto-compaction-retention=1s'] });
    try {
      const endpoint = cluster.endpoint(0);
      for (let i = 0; i < 5; i++) expect(etcdctl(endpoint, ['put', 'k', String(i)]).code).toBe(0);
      await waitUntil(() => etcdctl(endpoint, ['get', 'k', '--rev=2']).stderr.includes('required revision has been compacted'), 15_000, () => `auto-compaction\n${cluster.logs()}`);
      expect(readFileSync(cluster.nodes[0]!.logFile, 'utf8')).toMatch(/auto-compaction: shard \d+ compacted to revision \d+/);
      expect(etcdctl(endpoint, ['get', 'k', '--print-value-only']).stdout).toBe('4\n');
    } finally {
      await cluster.stop();
    }
  }, 60_000);
});
