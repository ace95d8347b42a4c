/** The Prometheus registry, its text format, the node's metrics and the /metrics + /health endpoint. */
import { afterEach, describe, expect, it } from 'vitest';
import {
  type HealthStatus,
  type MetricsServer,
  Registry,
  createServerMetrics,
  diskLatencyBuckets,
  escapeLabelValue,
  exponentialBuckets,
  formatNumber,
  metricsContentType,
  startMetricsServer,
} from '../../src/server/metrics.js';

describe('text exposition format 0.0.4', () => {
  it('renders counters and gauges with HELP and TYPE lines (golden)', () => {
    const registry = new Registry();
    const requests = registry.counter({ name: 'requests_total', help: 'Requests served.', labelNames: ['method'] });
    const temperature = registry.gauge({ name: 'temperature', help: 'Heat.' });
    requests.inc(1, { method: 'put' });
    requests.inc(2, { method: 'range' });
    requests.inc(1, { method: 'put' });
    temperature.set(21.5);
    temperature.dec(0.5);
    expect(registry.render()).toBe(
      [
        '# HELP requests_total Requests served.',
        '# TYPE requests_total counter',
        'requests_total{method="put"} 2',
        'requests_total{method="range"} 2',
        '# HELP temperature Heat.',
        '# TYPE temperature gauge',
        'temperature 21',
        '',
      ].join('\n'),
    );
  });

  it('shows unlabelled metrics at 0 and leaves out labelled ones with no series, like Go clients', () => {
    const registry = new Registry();
    registry.counter({ name: 'a_total', help: 'A.' });
    registry.counter({ name: 'b_total', help: 'B.', labelNames: ['peer'] });
    expect(registry.render()).toBe('# HELP a_total A.\n# TYPE a_total counter\na_total 0\n');
  });

  it('renders histograms with cumulative buckets, +Inf, _sum and _count (golden)', () => {
    const registry = new Registry();
    const latency = registry.histogram({ name: 'op_seconds', help: 'Op latency.', buckets: [0.1, 0.5, 1] });
    for (const value of [0.05, 0.1, 0.3, 0.7, 2]) latency.observe(value);
    expect(registry.render()).toBe(
      [
        '# HELP op_seconds Op latency.',
        '# TYPE op_seconds histogram',
        'op_seconds_bucket{le="0.1"} 2',
        'op_seconds_bucket{le="0.5"} 3',
        'op_seconds_bucket{le="1"} 4',
        'op_seconds_bucket{le="+Inf"} 5',
        'op_seconds_sum 3.15',
        'op_seconds_count 5',
        '',
      ].join('\n'),
    );
  });

  it('puts le after the other labels of a histogram', () => {
    const registry = new Registry();
    const latency = registry.histogram({ name: 'h', help: 'H.', labelNames: ['shard'], buckets: [1] });
    latency.observe(0.5, { shard: '7' });
    expect(registry.render()).toContain('h_bucket{shard="7",le="1"} 1\nh_bucket{shard="7",le="+Inf"} 1\n');
    expect(registry.render()).toContain('h_sum{shard="7"} 0.5\nh_count{shard="7"} 1\n');
  });

  it('escapes label values and help text', () => {
    expect(escapeLabelValue('a\\b"c\nd')).toBe('a\\\\b\\"c\\nd');
    const registry = new Registry();
    const counter = registry.counter({ name: 'x_total', help: 'Line one\nback\\slash "quoted"', labelNames: ['k'] });
    counter.inc(1, { k: 'say "hi"\n\\' });
    expect(registry.render()).toBe(
      [
        '# HELP x_total Line one\\nback\\\\slash "quoted"',
        '# TYPE x_total counter',
        'x_total{k="say \\"hi\\"\\n\\\\"} 1',
        '',
      ].join('\n'),
    );
  });

  it('formats special values', () => {
    expect(formatNumber(Number.NaN)).toBe('NaN');
    expect(formatNumber(Number.POSITIVE_INFINITY)).toBe('+Inf');
    expect(formatNumber(Number.NEGATIVE_INFINITY)).toBe('-Inf');
    expect(formatNumber(1e-7)).toBe('1e-7');
    expect(formatNumber(42)).toBe('42');
  });

  it('rejects misuse as programmer errors', () => {
    const registry = new Registry();
    const counter = registry.counter({ name: 'c_total', help: 'C.', labelNames: ['a'] });
    expect(() => counter.inc(-1, { a: 'x' })).toThrow(TypeError);
    expect(() => counter.inc(1, {})).toThrow(/labels/);
    expect(() => counter.inc(1, { a: 'x', b: 'y' })).toThrow(/labels/);
    expect(() => registry.counter({ name: 'c_total', help: 'again' })).toThrow(/already registered/);
    expect(() => registry.gauge({ name: 'bad-name', help: '' })).toThrow(/bad metric name/);
    expect(() => registry.gauge({ name: 'g', help: '', labelNames: ['__x'] })).toThrow(/bad label name/);
    expect(() => registry.histogram({ name: 'h', help: '', labelNames: ['le'], buckets: [1] })).toThrow(/reserved/);
    expect(() => registry.histogram({ name: 'h2', help: '', buckets: [1, 1] })).toThrow(/ascending/);
    expect(() => registry.histogram({ name: 'h3', help: '', buckets: [] })).toThrow(/buckets/);
  });

  it('reads collected metrics at scrape time', () => {
    const registry = new Registry();
    let size = 1;
    registry.gauge({ name: 'size_bytes', help: 'Size.', collect: () => size });
    expect(registry.render()).toContain('size_bytes 1\n');
    size = 4096;
    expect(registry.render()).toContain('size_bytes 4096\n');
  });
});

describe('buckets', () => {
  it('matches etcd\'s disk latency buckets: 0.001 * 2^k for k = 0..13', () => {
    expect(diskLatencyBuckets).toEqual([
      0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192,
    ]);
    expect(exponentialBuckets(1, 10, 3)).toEqual([1, 10, 100]);
    expect(() => exponentialBuckets(0, 2, 3)).toThrow(TypeError);
  });

  it('counts an observation equal to a bound in that bound\'s bucket', () => {
    const registry = new Registry();
    const h = registry.histogram({ name: 'h', help: 'H.', buckets: diskLatencyBuckets });
    h.observe(0.004);
    h.observe(100);
    const text = registry.render();
    expect(text).toContain('h_bucket{le="0.002"} 0\n');
    expect(text).toContain('h_bucket{le="0.004"} 1\n');
    expect(text).toContain('h_bucket{le="8.192"} 1\n');
    expect(text).toContain('h_bucket{le="+Inf"} 2\n');
    expect(h.get()).toEqual({ sum: 100.004, count: 2 });
  });
});

describe('the node\'s metrics', () => {
  it('registers etcd\'s names with etcd\'s types, plus dkv_ and process_ basics', () => {
    const metrics = createServerMetrics();
    metrics.hasLeader.set(1);
    metrics.peerSentBytes.inc(128, { To: '8e9e05c52164694d' });
    metrics.walFsyncSeconds.observe(0.003);
    metrics.recoverySeconds.set(0.5, { phase: 'restore' });
    const text = metrics.registry.render();
    const types = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]));
    expect(Object.fromEntries(types)).toMatchObject({
      etcd_server_has_leader: 'gauge',
      etcd_server_leader_changes_seen_total: 'counter',
      etcd_server_proposals_committed_total: 'gauge',
      etcd_server_proposals_applied_total: 'gauge',
      etcd_server_proposals_pending: 'gauge',
      etcd_server_proposals_failed_total: 'counter',
      etcd_disk_wal_fsync_duration_seconds: 'histogram',
      etcd_disk_backend_commit_duration_seconds: 'histogram',
      dkv_log_synced_write_duration_seconds: 'histogram',
      etcd_network_peer_sent_bytes_total: 'counter',
      etcd_mvcc_db_total_size_in_bytes: 'gauge',
      etcd_debugging_mvcc_keys_total: 'gauge',
      dkv_shards: 'gauge',
      dkv_shard_leaders: 'gauge',
      dkv_shard_leader_changes_total: 'counter',
      dkv_shards_quiesced: 'gauge',
      dkv_recovery_seconds: 'gauge',
      process_cpu_seconds_total: 'counter',
      process_resident_memory_bytes: 'gauge',
      process_start_time_seconds: 'gauge',
    });
    expect(text).toContain('etcd_server_has_leader 1\n');
    expect(text).toContain('dkv_recovery_seconds{phase="restore"} 0.5\n');
    expect(text).toContain('etcd_network_peer_sent_bytes_total{To="8e9e05c52164694d"} 128\n');
    expect(text).toContain('etcd_disk_wal_fsync_duration_seconds_bucket{le="0.004"} 1\n');
    // Every sample line parses as name{labels} value.
    for (const line of text.trimEnd().split('\n')) {
      if (!line.startsWith('#')) expect(line).toMatch(/^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? (-?[\d.e+-]+|NaN|[+-]Inf)$/);
    }
  });
});

describe('metrics server', () => {
  let server: MetricsServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  async function start(health: () => HealthStatus | Promise<HealthStatus>): Promise<MetricsServer> {
    const metrics = createServerMetrics();
    metrics.hasLeader.set(1);
    server = await startMetricsServer({ host: '127.0.0.1', port: 0, registry: metrics.registry, health });
    return server;
  }

  it('serves /metrics as text/plain version 0.0.4', async () => {
    const s = await start(() => ({ health: true }));
    expect(s.port).toBeGreaterThan(0);
    const response = await fetch(`${s.url}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe(metricsContentType);
    expect(response.headers.get('content-type')).toContain('version=0.0.4');
    expect(await response.text()).toContain('etcd_server_has_leader 1\n');
  });

  it('answers /health with 200 or 503 and etcd\'s JSON', async () => {
    let healthy: HealthStatus = { health: true };
    const s = await start(() => healthy);
    let response = await fetch(`${s.url}/health`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json');
    expect(await response.json()).toEqual({ health: 'true' });

    healthy = { health: false, reason: 'RAFT NO LEADER' };
    response = await fetch(`${s.url}/health?serializable=false`);
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual({ health: 'false', reason: 'RAFT NO LEADER' });
  });

  it('reports a failing health check as unhealthy without its message', async () => {
    const s = await start(async () => {
      throw new Error('secret detail');
    });
    const response = await fetch(`${s.url}/health`);
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual({ health: 'false', reason: 'health check failed' });
  });

  it('answers 404 elsewhere and 405 for other methods', async () => {
    const s = await start(() => ({ health: true }));
    expect((await fetch(`${s.url}/`)).status).toBe(404);
    expect((await fetch(`${s.url}/metricsx`)).status).toBe(404);
    const post = await fetch(`${s.url}/metrics`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('stops listening on close', async () => {
    const s = await start(() => ({ health: true }));
    await s.close();
    server = undefined;
    await expect(fetch(`${s.url}/metrics`)).rejects.toThrow();
  });
});
