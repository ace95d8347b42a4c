/**
 * A small Prometheus registry (counters, gauges, histograms, with labels) rendered in the text
 * exposition format 0.0.4, the node's predefined metrics (etcd's names where the meaning is the
 * same, so etcd dashboards and alerts work), and the HTTP server for `/metrics` and `/health`.
 *
 * No dependency: the format is small, and the hot path (inc/observe) is a map lookup and an add.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { metricsKeepAliveMs, settleLateCollectMs } from './limits.js';
import { type RuntimeMetrics, registerRuntimeMetrics } from './runtime-metrics.js';

export type Labels = Readonly<Record<string, string>>;

const metricNamePattern = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const labelNamePattern = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Series (distinct label sets) one metric may hold; a guard against unbounded label values. */
export const seriesPerMetricMax = 10_000;
/** Buckets one histogram may have. */
export const histogramBucketsMax = 64;

export interface MetricOptions {
  readonly name: string;
  readonly help: string;
  readonly labelNames?: readonly string[];
}

type MetricType = 'counter' | 'gauge' | 'histogram';

interface Series<V> {
  readonly labelValues: readonly string[];
  value: V;
}

/** What every metric shares: its name, help, label names and series keyed by label values. */
abstract class Metric<V> {
  abstract readonly type: MetricType;
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  protected readonly series = new Map<string, Series<V>>();

  constructor(options: MetricOptions) {
    if (!metricNamePattern.test(options.name)) throw new TypeError(`bad metric name "${options.name}"`);
    this.name = options.name;
    this.help = options.help;
    this.labelNames = options.labelNames ?? [];
    for (const label of this.labelNames) {
      if (!labelNamePattern.test(label) || label.startsWith('__')) {
        throw new TypeError(`${this.name}: bad label name "${label}"`);
      }
    }
    if (new Set(this.labelNames).size !== this.labelNames.length) {
      throw new TypeError(`${this.name}: duplicate label names`);
    }
  }

  protected abstract initial(): V;

  /** The series for these labels, created on first use. */
  protected seriesFor(labels: Labels): Series<V> {
    const labelValues = this.labelValuesOf(labels);
    const key = labelValues.join('\u0000');
    let series = this.series.get(key);
    if (series === undefined) {
      if (this.series.size >= seriesPerMetricMax) {
        throw new TypeError(`${this.name}: more than ${seriesPerMetricMax} label sets`);
      }
      series = { labelValues, value: this.initial() };
      this.series.set(key, series);
    }
    return series;
  }

  private labelValuesOf(labels: Labels): string[] {
    const given = Object.keys(labels);
    if (given.length !== this.labelNames.length || given.some((name) => !this.labelNames.includes(name))) {
      throw new TypeError(`${this.name}: labels {${given.join(',')}} are not {${this.labelNames.join(',')}}`);
    }
    return this.labelNames.map((name) => labels[name] ?? '');
  }

  /** Removes every series (for tests, and for labels whose subject went away, e.g. a removed peer). */
  reset(): void {
    this.series.clear();
  }

  /** Appends this metric's lines; a labelled metric with no series yet is left out, as in Go. */
  render(lines: string[]): void {
    this.beforeRender();
    if (this.labelNames.length === 0 && this.series.size === 0) this.seriesFor({});
    if (this.series.size === 0) return;
    lines.push(`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`);
    for (const series of this.series.values()) this.renderSeries(series, lines);
  }

  protected beforeRender(): void {}

  protected abstract renderSeries(series: Series<V>, lines: string[]): void;

  protected labelText(labelValues: readonly string[], extra?: readonly [string, string]): string {
    const pairs = this.labelNames.map((name, i) => `${name}="${escapeLabelValue(labelValues[i] ?? '')}"`);
    if (extra !== undefined) pairs.push(`${extra[0]}="${escapeLabelValue(extra[1])}"`);
    return pairs.length === 0 ? '' : `{${pairs.join(',')}}`;
  }
}

export interface CollectedMetricOptions extends MetricOptions {
  /** Read at scrape time instead of being updated (unlabelled only), like Go's GaugeFunc. */
  readonly collect?: () => number;
}

/**
 * A number per label set, updated by the caller or, with `collect`, read at scrape time
 * (unlabelled only) — what counters and gauges share.
 */
abstract class NumberMetric extends Metric<number> {
  private readonly collect: (() => number) | undefined;

  constructor(options: CollectedMetricOptions) {
    super(options);
    this.collect = options.collect;
    if (this.collect !== undefined && this.labelNames.length > 0) {
      throw new TypeError(`${this.name}: a collected metric takes no labels`);
    }
  }

  protected initial(): number {
    return 0;
  }

  get(labels: Labels = {}): number {
    return this.seriesFor(labels).value;
  }

  protected override beforeRender(): void {
    if (this.collect !== undefined) this.seriesFor({}).value = this.collect();
  }

  protected renderSeries(series: Series<number>, lines: string[]): void {
    lines.push(`${this.name}${this.labelText(series.labelValues)} ${formatNumber(series.value)}`);
  }
}

export class Counter extends NumberMetric {
  readonly type = 'counter';

  inc(by = 1, labels: Labels = {}): void {
    if (!(by >= 0) || !Number.isFinite(by)) throw new TypeError(`${this.name}: a counter only goes up, got ${by}`);
    this.seriesFor(labels).value += by;
  }
}

export class Gauge extends NumberMetric {
  readonly type = 'gauge';

  set(value: number, labels: Labels = {}): void {
    this.seriesFor(labels).value = value;
  }

  inc(by = 1, labels: Labels = {}): void {
    this.seriesFor(labels).value += by;
  }

  dec(by = 1, labels: Labels = {}): void {
    this.seriesFor(labels).value -= by;
  }
}

interface HistogramValue {
  /** Observations per bucket, not cumulative; the last slot is the +Inf bucket. */
  readonly bucketCounts: number[];
  sum: number;
  count: number;
}

export interface HistogramOptions extends MetricOptions {
  /** Upper bounds, ascending and finite; the +Inf bucket is implicit. */
  readonly buckets: readonly number[];
}

export class Histogram extends Metric<HistogramValue> {
  readonly type = 'histogram';
  readonly buckets: readonly number[];

  constructor(options: HistogramOptions) {
    super(options);
    if (this.labelNames.includes('le')) throw new TypeError(`${this.name}: "le" is reserved in a histogram`);
    const buckets = options.buckets;
    if (buckets.length === 0 || buckets.length > histogramBucketsMax) {
      throw new TypeError(`${this.name}: needs 1 to ${histogramBucketsMax} buckets`);
    }
    for (let i = 0; i < buckets.length; i++) {
      const bound = buckets[i] ?? Number.NaN;
      if (!Number.isFinite(bound) || (i > 0 && bound <= (buckets[i - 1] ?? Number.NaN))) {
        throw new TypeError(`${this.name}: buckets must be finite and ascending`);
      }
    }
    this.buckets = [...buckets];
  }

  protected initial(): HistogramValue {
    return { bucketCounts: new Array<number>(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
  }

  observe(value: number, labels: Labels = {}): void {
    if (Number.isNaN(value)) throw new TypeError(`${this.name}: cannot observe NaN`);
    const series = this.seriesFor(labels).value;
    let bucket = 0;
    while (bucket < this.buckets.length && value > (this.buckets[bucket] ?? Number.POSITIVE_INFINITY)) bucket++;
    series.bucketCounts[bucket] = (series.bucketCounts[bucket] ?? 0) + 1;
    series.sum += value;
    series.count += 1;
  }

  /** Observes the seconds elapsed since `startNs` (from process.hrtime.bigint()). */
  observeSince(startNs: bigint, labels: Labels = {}): void {
    this.observe(Number(process.hrtime.bigint() - startNs) / 1e9, labels);
  }

  get(labels: Labels = {}): { readonly sum: number; readonly count: number } {
    const value = this.seriesFor(labels).value;
    return { sum: value.sum, count: value.count };
  }

  protected renderSeries(series: Series<HistogramValue>, lines: string[]): void {
    let cumulative = 0;
    for (let i = 0; i <= this.buckets.length; i++) {
      cumulative += series.value.bucketCounts[i] ?? 0;
      const le = i < this.buckets.length ? formatNumber(this.buckets[i] ?? 0) : '+Inf';
      lines.push(`${this.name}_bucket${this.labelText(series.labelValues, ['le', le])} ${cumulative}`);
    }
    const labelText = this.labelText(series.labelValues);
    lines.push(`${this.name}_sum${labelText} ${formatNumber(series.value.sum)}`);
    lines.push(`${this.name}_count${labelText} ${series.value.count}`);
  }
}

/** `count` buckets starting at `start`, each `factor` times the previous (Go's ExponentialBuckets). */
export function exponentialBuckets(start: number, factor: number, count: number): number[] {
  if (!(start > 0) || !(factor > 1) || !Number.isInteger(count) || count < 1) {
    throw new TypeError('exponentialBuckets needs start > 0, factor > 1 and count >= 1');
  }
  // Rounded to 15 significant digits so that 0.001 * 2^k prints as 0.008, not 0.008000000000000002.
  return Array.from({ length: count }, (_, k) => Number((start * factor ** k).toPrecision(15)));
}

/** Metrics of one node, rendered in registration order. */
export class Registry {
  private readonly metrics = new Map<string, Counter | Gauge | Histogram>();
  private readonly beforeHooks: (() => void)[] = [];
  private readonly afterHooks: (() => void)[] = [];

  /** Runs `hook` at each scrape before rendering (to refill labelled gauges). */
  beforeRender(hook: () => void): void {
    this.beforeHooks.push(hook);
  }

  /** Runs `hook` at each scrape after rendering (to reset per-interval statistics). */
  afterRender(hook: () => void): void {
    this.afterHooks.push(hook);
  }

  counter(options: CollectedMetricOptions): Counter {
    return this.add(new Counter(options));
  }

  gauge(options: CollectedMetricOptions): Gauge {
    return this.add(new Gauge(options));
  }

  histogram(options: HistogramOptions): Histogram {
    return this.add(new Histogram(options));
  }

  get(name: string): Counter | Gauge | Histogram | undefined {
    return this.metrics.get(name);
  }

  private add<M extends Counter | Gauge | Histogram>(metric: M): M {
    if (this.metrics.has(metric.name)) throw new TypeError(`metric ${metric.name} is already registered`);
    this.metrics.set(metric.name, metric);
    return metric;
  }

  /** The text exposition format 0.0.4. */
  render(): string {
    for (const hook of this.beforeHooks) hook();
    const lines: string[] = [];
    for (const metric of this.metrics.values()) metric.render(lines);
    for (const hook of this.afterHooks) hook();
    return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
  }
}

export const metricsContentType = 'text/plain; version=0.0.4; charset=utf-8';

/** HELP text escapes backslash and newline. */
export function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** Label values escape backslash, double quote and newline. */
export function escapeLabelValue(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export function formatNumber(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Number.POSITIVE_INFINITY) return '+Inf';
  if (value === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(value);
}

// ---------------------------------------------------------------------------------------------
// The node's metrics

/** etcd's buckets for WAL fsync and backend commit latency: 1 ms to about 8 s, doubling. */
export const diskLatencyBuckets: readonly number[] = exponentialBuckets(0.001, 2, 14);
/** etcd's buckets for peer round trips: 100 µs to about 0.8 s, doubling. */
export const peerRoundTripBuckets: readonly number[] = exponentialBuckets(0.0001, 2, 14);
/** A synced LevelDB batch: 100 µs to about 0.8 s, doubling (etcd's fsync buckets start at 1 ms, above a fast disk's). */
export const syncedWriteBuckets: readonly number[] = peerRoundTripBuckets;
/**
 * A client call's handling time: 100 µs to about 13 s, doubling. (etcd's go-grpc-prometheus uses
 * Prometheus's default buckets, 5 ms to 10 s, too coarse for a put that takes a millisecond or two.)
 */
export const grpcHandlingBuckets: readonly number[] = exponentialBuckets(0.0001, 2, 18);

export interface ServerMetrics {
  readonly registry: Registry;
  /** The Node runtime's figures (event-loop delay, heap, GC); `stop()` when the node stops. */
  readonly runtime: RuntimeMetrics;
  /** 1 when every shard this node hosts knows a leader, else 0 (etcd: the one Raft group). */
  readonly hasLeader: Gauge;
  readonly leaderChanges: Counter;
  readonly shardLeaderChanges: Counter;
  readonly shardSplits: Counter;
  readonly shardAutoSplits: Counter;
  readonly placementMoves: Counter;
  readonly forwardedProposalsRefused: Counter;
  readonly leaderBalanceTransfers: Counter;
  readonly replicaMovesFinished: Counter;
  /** Gauges, as in etcd: the committed and applied indexes summed over local shards. */
  readonly proposalsCommitted: Gauge;
  readonly proposalsApplied: Gauge;
  readonly proposalsPending: Gauge;
  readonly proposalsFailed: Counter;
  /** From a save being handed to the log store to its completion (the wait behind a batch in flight included). */
  readonly walFsyncSeconds: Histogram;
  /** The synced LevelDB batch alone, from being handed to LevelDB to its completion. */
  readonly logSyncedWriteSeconds: Histogram;
  readonly backendCommitSeconds: Histogram;
  /** Labelled `To` / `From` with the peer's member id in hex, as etcd labels them. */
  readonly peerSentBytes: Counter;
  readonly peerReceivedBytes: Counter;
  /** Round trips of the peer links' keepalive pings, labelled `To` (etcd's prober measures the like). */
  readonly peerRoundTripSeconds: Histogram;
  readonly peerRefused: Counter;
  readonly dbTotalSizeBytes: Gauge;
  readonly keysTotal: Gauge;
  readonly shards: Gauge;
  readonly shardLeaders: Gauge;
  readonly shardsQuiesced: Gauge;
  readonly watchers: Gauge;
  /** Watchers catching up from history (etcd: unsynced watchers). */
  readonly slowWatchers: Gauge;
  /** Times a watcher fell back to history because its stream's buffer was full. */
  readonly watchSlowFallbacks: Gauge;
  /** Where the node's memory goes, by part (store arenas, change log, recent watch events, Raft log cache). */
  readonly memoryBytes: Gauge;
  /** Memory settles after writes stopped, by kind (collect, defragment). */
  readonly memorySettles: Counter;
  /** Resident bytes malloc_trim gave back (memory-settle.ts, defragment.ts). */
  readonly memoryTrimmed: Counter;
  /** Bytes watch streams hold for slow clients now, and the most they ever held. */
  readonly watchBufferedBytes: Gauge;
  readonly watchBufferedBytesPeak: Gauge;
  readonly pendingWrites: Gauge;
  readonly pendingWriteBytes: Gauge;
  readonly pendingForwardedWrites: Gauge;
  /** Seconds each phase of this start took (open, restore, replay). */
  readonly recoverySeconds: Gauge;
  readonly pendingReads: Gauge;
  /** Keep-alive requests read from clients' LeaseKeepAlive streams. */
  readonly leaseKeepAlives: Counter;
  readonly connectionRefused: Counter;
  /** Client calls forwarded to a shard's replica, by outcome; and those served for other members. */
  readonly forwardedCalls: Counter;
  /** Client calls started, answered (a stream: ended) and their handling time (`CallMetrics`). */
  readonly grpcStarted: Counter;
  readonly grpcHandled: Counter;
  readonly grpcHandlingSeconds: Histogram;
}

/** Registers the node's metrics (and the process basics) on a fresh registry. */
export function createServerMetrics(registry: Registry = new Registry()): ServerMetrics {
  const metrics: Omit<ServerMetrics, 'runtime'> = {
    registry,
    hasLeader: registry.gauge({
      name: 'etcd_server_has_leader',
      help: 'Whether or not a leader exists. 1 is existence, 0 is not.',
    }),
    leaderChanges: registry.counter({
      name: 'etcd_server_leader_changes_seen_total',
      help: 'The number of leader changes seen.',
    }),
    shardLeaderChanges: registry.counter({
      name: 'dkv_shard_leader_changes_total',
      help: "Leader changes this node saw in every shard it hosts, the meta shard's included (etcd_server_leader_changes_seen_total counts the default store's).",
    }),
    shardSplits: registry.counter({
      name: 'dkv_shard_splits_total',
      help: 'Splits applied by the shard replicas this node hosts (each split counts once on every replica of its shard).',
    }),
    shardAutoSplits: registry.counter({
      name: 'dkv_shard_auto_splits_total',
      help: 'Splits this node made on its own (--shard-split-bytes, --shard-split-qps), by reason: size or load.',
      labelNames: ['reason'],
    }),
    placementMoves: registry.counter({
      name: 'dkv_shard_placement_moves_total',
      help: "Replica moves this node's placement loop started while leading the meta shard, by reason: re-replicate (a dead member's replica), redirect (a move whose target died), balance.",
      labelNames: ['reason'],
    }),
    forwardedProposalsRefused: registry.counter({
      name: 'dkv_forwarded_proposals_refused_total',
      help: 'Refusals of writes this node forwarded that came back, by reason (transfer-in-progress, no-leader, not-member: the write goes again, so one write may count several times; any other: it failed, known not applied).',
      labelNames: ['reason'],
    }),
    leaderBalanceTransfers: registry.counter({
      name: 'dkv_shard_leader_balance_transfers_total',
      help: "Leadership hand-overs this node's placement loop asked for while leading the meta shard, to even out the shards each member leads (--shard-rebalance).",
    }),
    replicaMovesFinished: registry.counter({
      name: 'dkv_shard_replica_moves_finished_total',
      help: "Replica moves this node finished in the meta shard while leading the moved shard's group (the map then lists the new member).",
    }),
    proposalsCommitted: registry.gauge({
      name: 'etcd_server_proposals_committed_total',
      help: 'The total number of consensus proposals committed.',
    }),
    proposalsApplied: registry.gauge({
      name: 'etcd_server_proposals_applied_total',
      help: 'The total number of consensus proposals applied.',
    }),
    proposalsPending: registry.gauge({
      name: 'etcd_server_proposals_pending',
      help: 'The current number of pending proposals to commit.',
    }),
    proposalsFailed: registry.counter({
      name: 'etcd_server_proposals_failed_total',
      help: 'The total number of failed proposals seen.',
    }),
    walFsyncSeconds: registry.histogram({
      name: 'etcd_disk_wal_fsync_duration_seconds',
      help: 'The latency distributions of fsync called by WAL.',
      buckets: diskLatencyBuckets,
    }),
    logSyncedWriteSeconds: registry.histogram({
      name: 'dkv_log_synced_write_duration_seconds',
      help: 'Synced LevelDB batches of the Raft log store, from being handed to LevelDB to their completion (write and fsync).',
      buckets: syncedWriteBuckets,
    }),
    backendCommitSeconds: registry.histogram({
      name: 'etcd_disk_backend_commit_duration_seconds',
      help: 'The latency distributions of commit called by backend.',
      buckets: diskLatencyBuckets,
    }),
    peerSentBytes: registry.counter({
      name: 'etcd_network_peer_sent_bytes_total',
      help: 'The total number of bytes sent to peers.',
      labelNames: ['To'],
    }),
    peerReceivedBytes: registry.counter({
      name: 'etcd_network_peer_received_bytes_total',
      help: 'The total number of bytes received from peers.',
      labelNames: ['From'],
    }),
    peerRoundTripSeconds: registry.histogram({
      name: 'dkv_peer_round_trip_seconds',
      help: 'Round trip of a ping over the peer link to a member and back (link and both event loops, no disk).',
      labelNames: ['To'],
      buckets: peerRoundTripBuckets,
    }),
    peerRefused: registry.counter({
      name: 'dkv_peer_refused_total',
      help: 'Links refused on the peer port, by reason (not_member, removed, address, certificate, cluster_mismatch, protocol).',
      labelNames: ['reason'],
    }),
    dbTotalSizeBytes: registry.gauge({
      name: 'etcd_mvcc_db_total_size_in_bytes',
      help: 'Total size of the underlying database physically allocated in bytes.',
    }),
    keysTotal: registry.gauge({ name: 'etcd_debugging_mvcc_keys_total', help: 'Total number of keys.' }),
    shards: registry.gauge({ name: 'dkv_shards', help: 'Shard replicas hosted on this node.' }),
    shardLeaders: registry.gauge({ name: 'dkv_shard_leaders', help: 'Shards whose leader is this node.' }),
    shardsQuiesced: registry.gauge({ name: 'dkv_shards_quiesced', help: 'Shards hosted here whose Raft group is quiesced: idle, neither ticked nor heartbeating (see src/runtime/README.md).' }),
    watchers: registry.gauge({ name: 'etcd_debugging_mvcc_watcher_total', help: 'Total number of watchers.' }),
    slowWatchers: registry.gauge({ name: 'etcd_debugging_mvcc_slow_watcher_total', help: 'Total number of unsynced slow watchers.' }),
    watchSlowFallbacks: registry.gauge({
      name: 'dkv_watch_slow_fallbacks_total',
      help: 'Times a watcher fell back to the history because its stream was full (it catches up; nothing is lost).',
    }),
    memoryBytes: registry.gauge({
      name: 'dkv_memory_bytes',
      help: 'Memory the node accounts for, by part: store_arenas (the MVCC store, etcd_mvcc_db_total_size_in_bytes), change_log (the history index watchers read), watch_recent (recent events kept for watchers, with the arenas they view), raft_log_cache (Raft entries held in memory).',
      labelNames: ['part'],
    }),
    memorySettles: registry.counter({
      name: 'dkv_memory_settles_total',
      help: `Times the node gave memory back once writes stopped, by kind: collect (full garbage collections), defragment (the store rewritten after a compaction left it mostly garbage) or late (one more collection once ${settleLateCollectMs / 1000} s passed since either and since the last write, which lets V8 shrink its young generation; LevelDB's memtable is written out first, and V8's old generation compacted when the heap is small enough for a short pause).`,
      labelNames: ['kind'],
    }),
    memoryTrimmed: registry.counter({
      name: 'dkv_memory_trimmed_bytes_total',
      help: "Resident bytes glibc's malloc_trim handed back to the system after memory settles and defragmentations (0 where it cannot run: see the start-up line 'memory trim').",
    }),
    watchBufferedBytes: registry.gauge({
      name: 'dkv_watch_buffered_bytes',
      help: 'Bytes of watch responses waiting for slow clients, over every stream (each stream is bounded).',
    }),
    watchBufferedBytesPeak: registry.gauge({
      name: 'dkv_watch_buffered_bytes_peak',
      help: 'The most bytes of watch responses ever waiting for clients at once since the node started.',
    }),
    pendingWrites: registry.gauge({ name: 'dkv_pending_writes', help: 'Writes this node holds (queued, in Raft, or forwarded) over every shard.' }),
    pendingWriteBytes: registry.gauge({ name: 'dkv_pending_write_bytes', help: 'Bytes of the commands of pending writes over every shard.' }),
    pendingForwardedWrites: registry.gauge({
      name: 'dkv_pending_forwarded_writes',
      help: 'Writes forwarded to a leader whose place in the log is not known here yet.',
    }),
    recoverySeconds: registry.gauge({
      name: 'dkv_recovery_seconds',
      help: 'Seconds each phase of this start took: open (reading the Raft log store), restore (every shard from its stored snapshot), replay (applying the log after the snapshots up to the stored commit index).',
      labelNames: ['phase'],
    }),
    pendingReads: registry.gauge({ name: 'dkv_pending_reads', help: 'Linearizable reads this node holds over every shard.' }),
    connectionRefused: registry.counter({
      name: 'dkv_connection_limit_refused_total',
      help: "Client calls refused because their connection was at a limit (--max-pending-requests-per-connection: kind 'request', --max-streams-per-connection: kind 'stream').",
      labelNames: ['kind'],
    }),
    leaseKeepAlives: registry.counter({
      name: 'dkv_lease_keepalives_total',
      help: 'Lease keep-alive requests read from clients (a stream is not read while its pending renewals and unsent answers are at their bound).',
    }),
    forwardedCalls: registry.counter({
      name: 'dkv_forwarded_calls_total',
      help:
        'Unary client calls for shards this member hosts no replica of, forwarded to one that does, by outcome: ok (a response), status (an error the replica answered), ' +
        'failed (no replica reached, or no answer); redirected: a replica whose newer map placed the shard elsewhere, whose route was followed; served: calls other members forwarded here.',
      labelNames: ['outcome'],
    }),
    // go-grpc-prometheus's names and labels, as etcd serves them (its handling-time histogram only
    // with --metrics=extensive), so etcd's alerts on failed and slow requests and its dashboards'
    // open streams (started minus handled) read them unchanged.
    grpcStarted: registry.counter({
      name: 'grpc_server_started_total',
      help: 'Total number of RPCs started on the server.',
      labelNames: ['grpc_type', 'grpc_service', 'grpc_method'],
    }),
    grpcHandled: registry.counter({
      name: 'grpc_server_handled_total',
      help: 'Total number of RPCs completed on the server, regardless of success or failure (a stream: when it ends).',
      labelNames: ['grpc_type', 'grpc_service', 'grpc_method', 'grpc_code'],
    }),
    grpcHandlingSeconds: registry.histogram({
      name: 'grpc_server_handling_seconds',
      help: "Histogram of response latency (seconds) of gRPC calls that had been application-level handled by the server: from the handler's start to its answer (a stream: to its end).",
      labelNames: ['grpc_type', 'grpc_service', 'grpc_method'],
      buckets: grpcHandlingBuckets,
    }),
  };
  registerProcessMetrics(registry);
  return { ...metrics, runtime: registerRuntimeMetrics(registry) };
}

/** process_* metrics as Prometheus clients name them, read at scrape time. */
export function registerProcessMetrics(registry: Registry): void {
  const startTimeSeconds = Math.floor(Date.now() / 1000 - process.uptime());
  registry.counter({
    name: 'process_cpu_seconds_total',
    help: 'Total user and system CPU time spent in seconds.',
    collect: () => {
      const usage = process.cpuUsage();
      return (usage.user + usage.system) / 1e6;
    },
  });
  registry.gauge({
    name: 'process_resident_memory_bytes',
    help: 'Resident memory size in bytes.',
    collect: () => process.memoryUsage.rss(),
  });
  registry.gauge({
    name: 'process_start_time_seconds',
    help: 'Start time of the process since unix epoch in seconds.',
    collect: () => startTimeSeconds,
  });
}

// ---------------------------------------------------------------------------------------------
// The HTTP endpoint

export interface HealthStatus {
  readonly health: boolean;
  readonly reason?: string;
}

export interface MetricsHandlerOptions {
  readonly registry: Registry;
  readonly health: () => HealthStatus | Promise<HealthStatus>;
}

export interface MetricsServerOptions extends MetricsHandlerOptions {
  readonly host: string;
  /** 0 picks a free port (tests). */
  readonly port: number;
}

export interface MetricsServer {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

/** Answers `GET /metrics` and `GET /health` like etcd; usable on any node:http server. */
export function metricsRequestHandler(
  options: MetricsHandlerOptions,
): (request: IncomingMessage, response: ServerResponse) => void {
  return (request, response) => {
    const path = (request.url ?? '/').split('?', 1)[0];
    if (path !== '/metrics' && path !== '/health') {
      send(response, 404, 'text/plain; charset=utf-8', '404 page not found\n');
    } else if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.setHeader('Allow', 'GET, HEAD');
      send(response, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
    } else if (path === '/metrics') {
      send(response, 200, metricsContentType, options.registry.render());
    } else {
      void answerHealth(options, response);
    }
  };
}

async function answerHealth(options: MetricsHandlerOptions, response: ServerResponse): Promise<void> {
  let result: HealthStatus;
  try {
    result = await options.health();
  } catch {
    result = { health: false, reason: 'health check failed' };
  }
  const body = result.health
    ? { health: 'true' }
    : { health: 'false', reason: result.reason ?? 'unhealthy' };
  send(response, result.health ? 200 : 503, 'application/json', `${JSON.stringify(body)}\n`);
}

function send(response: ServerResponse, statusCode: number, contentType: string, body: string): void {
  response.writeHead(statusCode, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) });
  response.end(response.req.method === 'HEAD' ? undefined : body);
}

/** Starts the metrics listener; resolves once it is listening. */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const server: Server = createServer(metricsRequestHandler(options));
  // Idle connections stay open longer than a client keeps them (undici: 4 s; Prometheus scrapes
  // every 15-60 s on one connection), so the client, not the server, closes an idle one: a
  // client that reuses a connection the server closed a moment ago gets "other side closed".
  server.keepAliveTimeout = metricsKeepAliveMs;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const hostInUrl = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    host: options.host,
    port,
    url: `http://${hostInUrl}:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error === undefined ? resolve() : reject(error)));
        server.closeAllConnections();
      }),
  };
}
