/** What a report is made of: the run's description, its recorded history and the checkers' results. */
import type { CheckResult, ElectionResult, FencingResult, LinearizabilityResult, ObserverSegment, PartitionResult, Verdict, WatchHistory, WatchRecord } from '../check/index.js';
import type { ElleModel, ElleResult } from '../check/elle/types.js';
import type { FaultWindow, ModelName, Operation } from '../history.js';

/** The run's verdict: violation if any checker found one, else unknown if any ran out of budget, else ok. */
export type RunVerdict = Verdict;

export interface RunInfo {
  readonly mode: 'sim' | 'real';
  readonly target: 'dkv' | 'etcd';
  readonly workload: string;
  /** The linearizability model, or for a transactional workload the Elle model. */
  readonly model: ModelName | ElleModel;
  /** The seed (sim mode: replays the run exactly). */
  readonly seed?: number;
  readonly nodes: readonly string[];
  /** ISO 8601. */
  readonly startedAt: string;
  readonly durationMs: number;
  /** The command that replays (sim) or reruns (real) this run. */
  readonly command: string;
}

/** One independently checked part of the history (a key, or '' for the whole history). */
export type ReportPartition = PartitionResult;
export type ReportLinearizability = LinearizabilityResult;

/** The watch checker's result and what it looked at. */
export interface WatchResults extends CheckResult {
  /** Watch streams checked. */
  readonly streams: number;
  /** Events delivered over all streams. */
  readonly events: number;
}

/** The `shards` fault's store after the run: every shard's replicas compared by their HashKV. */
export interface ReplicaResults {
  /** The store's shards at the end. */
  readonly shards: number;
  /** Shards whose running replicas reached one applied index and were compared. */
  readonly compared: number;
  /** Shards whose replicas answered different hashes at one applied index (a violation). */
  readonly diverged: number;
  /** Shards whose replicas did not settle in time, or did not answer (unchecked: the verdict is at best unknown). */
  readonly unsettled: number;
  /** The first few problems, described. */
  readonly problems: readonly string[];
}

export interface RunResults {
  readonly verdict: RunVerdict;
  /** Absent when the workload's checker is another one (transactional workloads: `txn`). */
  readonly linearizability?: ReportLinearizability;
  /** A transactional workload: the Elle checker's result. */
  readonly txn?: ElleResult;
  readonly watch?: WatchResults;
  /** The lock workload: fenced writes checked, unfenced (lease-only) overlaps counted. */
  readonly fencing?: FencingResult;
  /** The election workload: one leader per revision, campaigns, observers' order, proclaims. */
  readonly election?: ElectionResult;
  /** The `shards` fault's store: its shards' replicas compared after the run. */
  readonly replicas?: ReplicaResults;
  readonly stats: Readonly<Record<string, number>>;
}

export interface RunHistory {
  readonly operations: readonly Operation[];
  readonly faults: readonly FaultWindow[];
  readonly watches?: readonly WatchRecord[];
  /** The store's committed history the watches were checked against, when recorded. */
  readonly watchHistory?: WatchHistory;
  /** The election workload's Observe streams (plain JSON). */
  readonly observers?: readonly ObserverSegment[];
}
