/**
 * `--auto-compaction-mode` and `--auto-compaction-retention`, as etcd's compactors: the leader
 * of each data shard proposes a Compaction through Raft (so every replica compacts at the same
 * revision), followers do nothing.
 *
 * - revision: every autoCompactionRevisionCheckMs (etcd: 5 minutes), compact to the current
 *   revision minus the retention, when that moved since the last compaction.
 * - periodic: the store's revision is sampled every tenth of the retention (bounded by
 *   autoCompactionPeriodicCheckMsMin/Max); compaction goes to the newest sample at least
 *   `retention` old, so at least `retention` of history is always kept.
 *
 * A node that just became leader starts sampling afresh (etcd's compactor also waits a full
 * retention after it is resumed).
 */
import { KvCommandKind, kvCommand, kvOutcome } from '../engines/kv/index.js';
import { etcdType } from '../etcd-proto.js';
import { type Router, type ShardHandle, kvEngineOf } from '../runtime/index.js';
import type { AutoCompactionConfig } from './config.js';
import { autoCompactionPeriodicCheckMsMax, autoCompactionPeriodicCheckMsMin, autoCompactionRevisionCheckMs } from './limits.js';

const CompactionRequestType = etcdType('etcdserverpb.CompactionRequest');

export interface AutoCompactorOptions {
  /** The shards this node hosts (the router, or a stand-in in tests). */
  readonly router: Pick<Router, 'hosted' | 'map'>;
  readonly memberId: number;
  readonly config: AutoCompactionConfig;
  readonly log?: (message: string) => void;
}

interface Sample {
  readonly atMs: number;
  readonly revision: number;
}

/** How often the compactor looks (ms) for `config`. */
export function autoCompactionCheckMs(config: AutoCompactionConfig): number {
  if (config.mode === 'revision') return autoCompactionRevisionCheckMs;
  return Math.min(autoCompactionPeriodicCheckMsMax, Math.max(autoCompactionPeriodicCheckMsMin, Math.floor(config.retention / 10)));
}

export class AutoCompactor {
  /** Per data shard this node leads: revision samples, oldest first (periodic mode). */
  private readonly samples = new Map<number, Sample[]>();
  /** Per shard: the revision last proposed, so the same compaction is not proposed twice. */
  private readonly proposed = new Map<number, number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: AutoCompactorOptions) {}

  get enabled(): boolean {
    return this.options.config.retention > 0;
  }

  start(): void {
    if (!this.enabled || this.timer !== undefined) return;
    const { mode, retention } = this.options.config;
    this.options.log?.(`auto-compaction: ${mode}, retention ${mode === 'revision' ? `${retention} revisions` : `${retention} ms`}`);
    this.timer = setInterval(() => this.tick(Date.now()), autoCompactionCheckMs(this.options.config));
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One look at every data shard this node leads (the timer calls it; tests call it directly). */
  tick(nowMs: number): void {
    const { router, memberId } = this.options;
    for (const shard of router.hosted()) {
      if (shard.shardId === router.map.metaShard) continue;
      if (shard.leader() !== memberId) {
        this.samples.delete(shard.shardId);
        continue;
      }
      const target = this.targetOf(shard, nowMs);
      if (target !== undefined) this.compact(shard, target);
    }
  }

  /** The revision to compact `shard` to now, if any. */
  private targetOf(shard: ShardHandle, nowMs: number): number | undefined {
    const mvcc = kvEngineOf(shard.machine()).mvcc;
    const { mode, retention } = this.options.config;
    let target: number;
    if (mode === 'revision') {
      target = mvcc.revision - retention;
    } else {
      let samples = this.samples.get(shard.shardId);
      if (samples === undefined) this.samples.set(shard.shardId, (samples = []));
      samples.push({ atMs: nowMs, revision: mvcc.revision });
      // The newest sample at least `retention` old; older ones are no longer needed.
      let old = -1;
      for (let i = 0; i < samples.length && nowMs - samples[i]!.atMs >= retention; i++) old = i;
      if (old < 0) return undefined;
      target = samples[old]!.revision;
      samples.splice(0, old);
    }
    if (target <= mvcc.compactRevision || target <= 0 || target === this.proposed.get(shard.shardId)) return undefined;
    return target;
  }

  private compact(shard: ShardHandle, revision: number): void {
    this.proposed.set(shard.shardId, revision);
    const command = kvCommand(KvCommandKind.Compaction, CompactionRequestType.encode({ revision }).finish());
    shard.propose(command).then(
      (applied) => {
        const outcome = kvOutcome(applied.outcome).outcome;
        // Refused (someone compacted past it meanwhile): nothing to do.
        if (outcome.kind === 'compaction') this.options.log?.(`auto-compaction: shard ${shard.shardId} compacted to revision ${revision}`);
      },
      (error: unknown) => {
        this.proposed.delete(shard.shardId);
        this.options.log?.(`auto-compaction: shard ${shard.shardId} to revision ${revision} failed: ${error instanceof Error ? error.message : String(error)}`);
      },
    );
  }
}
