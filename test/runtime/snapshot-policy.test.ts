/**
 * When the runtime snapshots a shard and how far it compacts the log behind it: by entries (etcd's
 * --snapshot-count), by bytes of applied entries (so the log a restart replays is bounded in
 * bytes), and the log kept behind a snapshot bounded in bytes as well as in entries.
 */
import { describe, expect, it } from 'vitest';
import { recordCommand, RecordEngine } from '../../jepsen-lite/sim/record-engine.js';
import { applyUpdate } from '../../jepsen-lite/sim/disk.js';
import { MemoryLogStorage, SeededPrng } from '../../raft/index.js';
import { NodeRuntime, type NodeRuntimeOptions, type RuntimeStorage, ShardStateMachine } from '../../src/runtime/index.js';

const SHARD = 1;
const payloadBytes = 1000;
const writes = 40;

type Policy = Pick<NodeRuntimeOptions, 'snapshotCount' | 'snapshotBytes' | 'snapshotCatchUpEntries' | 'snapshotCatchUpBytes'>;

/** A single-member runtime that applies `writes` writes of `payloadBytes` each; returns its log. */
function run(policy: Policy): MemoryLogStorage {
  const tasks: Array<() => void> = [];
  const log = MemoryLogStorage.bootstrapped([1]);
  const storage: RuntimeStorage = {
    shard: () => log,
    save: (updates, _options, done) => {
      for (const update of updates) applyUpdate(log, update);
      tasks.push(() => done(undefined));
    },
  };
  const runtime = new NodeRuntime({
    memberId: 1,
    storage,
    transport: { send: () => undefined },
    clock: { now: () => 0 },
    scheduler: { soon: (task) => void tasks.push(task) },
    random: new SeededPrng(7),
    raft: { electionTicks: 10, heartbeatTicks: 1 },
    tickMs: 100,
    ...policy,
    requestTimeoutMs: 60_000,
    stateMachine: () => new ShardStateMachine({ engines: [new RecordEngine()] }),
    firstRequestId: 1,
  });
  runtime.addShard(SHARD);
  const drain = (): void => {
    for (let i = 0; i < 10_000 && tasks.length > 0; i++) tasks.shift()!();
  };
  for (let turn = 0; turn < 100 && runtime.leader(SHARD) !== 1; turn++) {
    runtime.tick();
    drain();
  }
  expect(runtime.leader(SHARD)).toBe(1);
  let done = 0;
  // One write at a time: each is its own entry (and its own apply batch).
  for (let i = 0; i < writes; i++) {
    runtime.propose(SHARD, recordCommand(new Uint8Array(payloadBytes).fill(i)), {}, (error) => {
      expect(error).toBeUndefined();
      done++;
    });
    drain();
  }
  expect(done).toBe(writes);
  return log;
}

describe('snapshot policy', () => {
  it('takes no snapshot below both thresholds', () => {
    const log = run({ snapshotCount: 1_000, snapshotBytes: 0, snapshotCatchUpEntries: 1_000 });
    expect(log.snapshot().metadata.index).toBe(0);
  });

  it('snapshots every snapshotBytes of applied entries, whatever their count', () => {
    const log = run({ snapshotCount: 1_000, snapshotBytes: 10 * payloadBytes, snapshotCatchUpEntries: 1_000 });
    const index = log.snapshot().metadata.index;
    // At least three snapshots' worth of bytes were applied: the latest is near the end.
    expect(index).toBeGreaterThan(writes - 12);
    expect(log.lastIndex() - index).toBeLessThanOrEqual(11);
    // 1,000 catch-up entries and the default byte budget keep the whole log.
    expect(log.firstIndex()).toBe(1);
  });

  it('keeps at most snapshotCatchUpBytes of entries behind a snapshot', () => {
    const log = run({ snapshotCount: 1_000, snapshotBytes: 10 * payloadBytes, snapshotCatchUpEntries: 1_000, snapshotCatchUpBytes: 3 * payloadBytes + 500 });
    const index = log.snapshot().metadata.index;
    expect(index).toBeGreaterThan(0);
    const kept = index - (log.firstIndex() - 1);
    expect(kept).toBeGreaterThanOrEqual(1);
    expect(kept).toBeLessThanOrEqual(3);
  });

  it('still compacts by entries when that keeps fewer', () => {
    const log = run({ snapshotCount: 10, snapshotBytes: 0, snapshotCatchUpEntries: 2 });
    const index = log.snapshot().metadata.index;
    expect(index).toBeGreaterThan(writes - 10);
    expect(log.firstIndex() - 1).toBe(index - 2);
  });
});
