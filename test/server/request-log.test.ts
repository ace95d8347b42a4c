/**
 * Structured logs (--log-format json|text), request ids on the lines about a request, slow-request
 * warnings, etcd's per-call gRPC metrics (grpc_server_*) and the Node runtime's metrics on /metrics.
 */
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { etcdType } from '../../src/etcd-proto.js';
import { formatLogLine } from '../../src/server/logger.js';
import { createServerMetrics, grpcHandlingBuckets, Registry } from '../../src/server/metrics.js';
import {
  grpcCodeName,
  type LogFields,
  RequestLog,
  requestIdLengthMax,
  slowRequestLinesPerSecondMax,
  slowRequestWarnMs,
  statusCodeOf,
  CallMetrics,
  observeStreamEnd,
  withRequestLog,
} from '../../src/server/request-log.js';
import { registerRuntimeMetrics } from '../../src/server/runtime-metrics.js';
import { etcdChannel, TestCluster, waitUntil } from './cluster-harness.js';

interface Line {
  readonly level: 'debug' | 'warn';
  readonly message: string;
  readonly fields: LogFields | undefined;
}

function recorder(debugEnabled: boolean): { lines: Line[]; logger: { debugEnabled: boolean; debug(m: string, f?: LogFields): void; warn(m: string, f?: LogFields): void } } {
  const lines: Line[] = [];
  return {
    lines,
    logger: {
      debugEnabled,
      debug: (message, fields) => lines.push({ level: 'debug', message, fields }),
      warn: (message, fields) => lines.push({ level: 'warn', message, fields }),
    },
  };
}

describe('log lines', () => {
  const time = new Date('2026-12-04T10:00:00.000Z');

  it('text: time, level, name, message, then the fields as key=value (quoted when needed)', () => {
    expect(formatLogLine(time, 'info', 'n1', 'hello')).toBe('2026-12-04T10:00:00.000Z INFO n1: hello\n');
    expect(formatLogLine(time, 'warn', 'n1', 'slow', { request_id: 'ab-1', took_ms: 120.5, note: 'two words', gone: undefined })).toBe(
      '2026-12-04T10:00:00.000Z WARN n1: slow request_id=ab-1 took_ms=120.5 note="two words"\n',
    );
  });

  it('json: one object per line with level, ts, name, msg and the fields; fields never replace those four', () => {
    const line = formatLogLine(time, 'error', 'n1', 'boom "quoted"', { request_id: 'x', msg: 'shadow', n: 3 }, 'json');
    expect(line.endsWith('\n')).toBe(true);
    expect(line.trim().includes('\n')).toBe(false);
    expect(JSON.parse(line)).toEqual({ level: 'error', ts: '2026-12-04T10:00:00.000Z', name: 'n1', msg: 'boom "quoted"', request_id: 'x', n: 3 });
  });
});

describe('RequestLog', () => {
  it('uses the client\'s x-request-id when it is printable and short, else makes one per call', () => {
    const log = new RequestLog(0xabc, recorder(false).logger);
    const metadata = (value: string): grpc.Metadata => {
      const m = new grpc.Metadata();
      m.set('x-request-id', value);
      return m;
    };
    expect(log.idOf(metadata('client-42'))).toBe('client-42');
    expect(log.idOf(metadata('x'.repeat(requestIdLengthMax + 1)))).toBe('abc-1');
    expect(log.idOf(metadata('has space'))).toBe('abc-2');
    expect(log.idOf(new grpc.Metadata())).toBe('abc-3');
    expect(log.idOf(undefined)).toBe('abc-4');
  });

  it('writes a debug line per answered call only when debug is on', () => {
    let now = 0;
    const quiet = recorder(false);
    new RequestLog(1, quiet.logger, { now: () => now }).answered({ method: '/etcdserverpb.KV/Put', id: 'id1', startedAt: 0 }, null);
    expect(quiet.lines).toEqual([]);
    const loud = recorder(true);
    now = 3;
    new RequestLog(1, loud.logger, { now: () => now }).answered({ method: '/etcdserverpb.KV/Put', id: 'id1', startedAt: 0 }, { code: 5, details: 'nope' });
    expect(loud.lines).toEqual([{ level: 'debug', message: 'request', fields: { request_id: 'id1', method: '/etcdserverpb.KV/Put', took_ms: 3, code: 5 } }]);
  });

  it('warns about slow calls with their id, at most a bounded number a second, counting the rest', () => {
    let now = 10_000;
    const { lines, logger } = recorder(false);
    const log = new RequestLog(1, logger, { now: () => now });
    const started = now - slowRequestWarnMs;
    for (let i = 0; i < slowRequestLinesPerSecondMax + 5; i++) log.answered({ method: '/etcdserverpb.KV/Range', id: `r${i}`, startedAt: started }, null);
    expect(lines).toHaveLength(slowRequestLinesPerSecondMax);
    expect(lines[0]).toEqual({
      level: 'warn',
      message: 'request took too long',
      fields: { request_id: 'r0', method: '/etcdserverpb.KV/Range', took_ms: slowRequestWarnMs, expected_ms: slowRequestWarnMs, code: 0, slow_requests_not_logged: undefined },
    });
    now += 1000;
    log.answered({ method: '/etcdserverpb.KV/Range', id: 'later', startedAt: now - 2 * slowRequestWarnMs }, null);
    expect(lines.at(-1)?.fields?.slow_requests_not_logged).toBe(5);
    // A lock or campaign waits as long as it must: never "slow". A fast call is not either.
    const before = lines.length;
    log.answered({ method: '/v3lockpb.Lock/Lock', id: 'lock', startedAt: now - 60_000 }, null);
    log.answered({ method: '/etcdserverpb.KV/Put', id: 'fast', startedAt: now - 1 }, null);
    expect(lines).toHaveLength(before);
  });
});

describe("etcd's per-call metrics (grpc_server_*)", () => {
  it('counts started and answered calls by type, service, method and code, and their handling time', () => {
    const metrics = createServerMetrics();
    let now = 1_000;
    const log = new RequestLog(1, recorder(false).logger, { now: () => now, observer: new CallMetrics(metrics) });
    const definition = {
      Put: { path: '/etcdserverpb.KV/Put', requestStream: false, responseStream: false },
      Upload: { path: '/test.Files/Upload', requestStream: true, responseStream: false },
      Watch: { path: '/etcdserverpb.Watch/Watch', requestStream: true, responseStream: true },
    } as unknown as grpc.ServiceDefinition;
    const answers: Array<(error: Partial<grpc.StatusObject> | null) => void> = [];
    const handler = (_call: unknown, callback: (error: Partial<grpc.StatusObject> | null) => void): void => void answers.push(callback);
    const wrapped = withRequestLog(definition, { Put: handler, Upload: handler, Watch: () => undefined } as unknown as grpc.UntypedServiceImplementation, log, () => now);
    const call = (name: string): void => (wrapped[name] as unknown as (call: object, callback: () => void) => void)({ metadata: new grpc.Metadata() }, () => undefined);
    call('Put');
    call('Put');
    call('Upload');
    const watchCall = Object.assign(new EventEmitter(), { metadata: new grpc.Metadata() });
    (wrapped.Watch as unknown as (call: object) => void)(watchCall);
    // Started as the handler starts: calls in flight are started minus handled.
    const inFlight = metrics.registry.render();
    expect(inFlight).toContain('grpc_server_started_total{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put"} 2\n');
    expect(inFlight).not.toContain('grpc_server_handled_total');
    now += 2.5;
    answers[0]!(null);
    // A second answer to one call (grpc-js sends only the first) is not counted again.
    answers[0]!({ code: grpc.status.INTERNAL });
    now += 1;
    answers[1]!({ code: grpc.status.FAILED_PRECONDITION, details: 'no' });
    answers[2]!({ code: 99 as grpc.status });
    const text = metrics.registry.render();
    expect(text).toContain('grpc_server_started_total{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put"} 2\n');
    expect(text).toContain('grpc_server_started_total{grpc_type="client_stream",grpc_service="test.Files",grpc_method="Upload"} 1\n');
    expect(text).toContain('grpc_server_handled_total{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put",grpc_code="OK"} 1\n');
    expect(text).toContain('grpc_server_handled_total{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put",grpc_code="FailedPrecondition"} 1\n');
    expect(text).toContain('grpc_server_handled_total{grpc_type="client_stream",grpc_service="test.Files",grpc_method="Upload",grpc_code="Code(99)"} 1\n');
    expect(text).not.toContain('grpc_code="Internal"');
    // 2.5 ms and 3.5 ms: both above 0.0016 s; the first within 0.0032 s, both within 0.0064 s.
    expect(text).toContain('grpc_server_handling_seconds_bucket{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put",le="0.0016"} 0\n');
    expect(text).toContain('grpc_server_handling_seconds_bucket{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put",le="0.0032"} 1\n');
    expect(text).toContain('grpc_server_handling_seconds_bucket{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put",le="0.0064"} 2\n');
    expect(text).toContain('grpc_server_handling_seconds_count{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put"} 2\n');
    expect(metrics.grpcHandlingSeconds.get({ grpc_type: 'unary', grpc_service: 'etcdserverpb.KV', grpc_method: 'Put' }).sum).toBeCloseTo(0.006, 9);
    // A stream open and not ended is started, not handled.
    expect(text).toContain('grpc_server_started_total{grpc_type="bidi_stream",grpc_service="etcdserverpb.Watch",grpc_method="Watch"} 1\n');
    expect(text).not.toContain('grpc_server_handled_total{grpc_type="bidi_stream"');
  });

  it('counts a stream handled when it ends: its error (Unknown when the handler threw), DeadlineExceeded, Canceled when reset, OK when the handler ended it', () => {
    const metrics = createServerMetrics();
    let nowMs = 10_000;
    const observer = new CallMetrics(metrics).method('/etcdserverpb.Watch/Watch', 'bidi_stream');
    const stream = (deadline: number = Infinity) => {
      const call = Object.assign(new EventEmitter(), { ended: 0, end: () => void call.ended++, getDeadline: () => deadline });
      // grpc-js's own 'error' listener, registered when it makes the call, ends the stream.
      call.on('error', () => call.end());
      observeStreamEnd(call, observer, () => 0.25, () => nowMs);
      return call;
    };
    const handled = (code: string): number => metrics.grpcHandled.get({ grpc_type: 'bidi_stream', grpc_service: 'etcdserverpb.Watch', grpc_method: 'Watch', grpc_code: code });
    const ok = stream();
    ok.end();
    ok.emit('cancelled');
    ok.emit('close');
    expect(ok.ended).toBe(1);
    const failed = stream();
    failed.emit('error', { code: grpc.status.FAILED_PRECONDITION });
    failed.emit('cancelled');
    const cancelled = stream();
    cancelled.emit('cancelled');
    // The handler ends its side after the client went: still the client's cancel.
    cancelled.end();
    cancelled.emit('close');
    // The client reset the stream (grpc-js's call holds its HTTP/2 stream); the handler then ended its side.
    const reset = stream();
    Object.assign(reset, { call: { stream: { rstCode: 8 } } });
    reset.end();
    reset.emit('cancelled');
    const overdue = stream(nowMs + 50);
    nowMs += 50;
    overdue.emit('close');
    // stream-deadline.ts ends a stream a few milliseconds before its deadline, with reason 'deadline':
    // DeadlineExceeded (what the client gets), though the deadline has not quite passed.
    const endedByDeadline = stream(nowMs + 5);
    endedByDeadline.end();
    endedByDeadline.emit('cancelled', 'deadline');
    // A handler that throws: grpc-js answers UNKNOWN.
    const thrower = Object.assign(new EventEmitter(), { end: () => undefined, getDeadline: () => Infinity });
    observeStreamEnd(thrower, observer, () => 0.25, () => nowMs).threw();
    thrower.emit('cancelled');
    const open = stream();
    open.emit('data');
    expect([handled('OK'), handled('FailedPrecondition'), handled('Canceled'), handled('DeadlineExceeded'), handled('Unknown')]).toEqual([1, 1, 2, 2, 1]);
    expect(metrics.grpcStarted.get({ grpc_type: 'bidi_stream', grpc_service: 'etcdserverpb.Watch', grpc_method: 'Watch' })).toBe(8);
    expect(metrics.grpcHandlingSeconds.get({ grpc_type: 'bidi_stream', grpc_service: 'etcdserverpb.Watch', grpc_method: 'Watch' }).count).toBe(7);
  });

  it('counts a handler that throws as Unknown, and an answer whose code is no integer as grpc-js sends it (Unknown)', () => {
    const metrics = createServerMetrics();
    const log = new RequestLog(1, recorder(false).logger, { observer: new CallMetrics(metrics) });
    const definition = { Get: { path: '/test.S/Get', requestStream: false, responseStream: false } } as unknown as grpc.ServiceDefinition;
    let throws = true;
    const handler = (_call: unknown, callback: (error: { code?: unknown } | null) => void): void => {
      if (throws) throw new Error('boom');
      callback({ code: 'ENOENT' });
    };
    const wrapped = withRequestLog(definition, { Get: handler } as unknown as grpc.UntypedServiceImplementation, log);
    const call = (): void => (wrapped.Get as unknown as (call: object, callback: () => void) => void)({ metadata: new grpc.Metadata() }, () => undefined);
    expect(call).toThrow('boom');
    throws = false;
    call();
    expect(metrics.grpcHandled.get({ grpc_type: 'unary', grpc_service: 'test.S', grpc_method: 'Get', grpc_code: 'Unknown' })).toBe(2);
    expect(metrics.grpcHandlingSeconds.get({ grpc_type: 'unary', grpc_service: 'test.S', grpc_method: 'Get' }).count).toBe(2);
    expect(statusCodeOf({ code: 5 })).toBe(5);
    expect(statusCodeOf({ code: 1.5 })).toBe(2);
    expect(statusCodeOf(null)).toBe(0);
  });

  it("names codes as Go's codes.Code.String() and buckets from 100 µs, doubling", () => {
    expect([0, 1, 4, 8, 14, 16].map(grpcCodeName)).toEqual(['OK', 'Canceled', 'DeadlineExceeded', 'ResourceExhausted', 'Unavailable', 'Unauthenticated']);
    expect(grpcCodeName(17)).toBe('Code(17)');
    expect(grpcHandlingBuckets[0]).toBe(0.0001);
    expect(grpcHandlingBuckets[1]).toBe(0.0002);
    expect(grpcHandlingBuckets.at(-1)).toBeGreaterThan(10);
  });
});

describe('runtime metrics', () => {
  it('exposes event-loop delay, heap spaces, GC pauses and the Node version under prom-client\'s names', async () => {
    const registry = new Registry();
    const runtime = registerRuntimeMetrics(registry);
    try {
      // Let the sampler start, then block the loop so the delay histogram has something to show,
      // and make garbage enough for young-generation collections.
      await new Promise((resolve) => setTimeout(resolve, 50));
      let garbage: unknown[] = [];
      for (let i = 0; i < 500_000; i++) garbage.push({ i });
      garbage = [];
      const until = Date.now() + 100;
      while (Date.now() < until) {
        // busy
      }
      await new Promise((resolve) => setTimeout(resolve, 30));
      expect(garbage).toEqual([]);
      const text = registry.render();
      const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
      expect(value('nodejs_eventloop_lag_max_seconds')).toBeGreaterThan(0.03);
      expect(value('nodejs_eventloop_lag_p99_seconds')).toBeGreaterThan(0);
      expect(text).toMatch(/^nodejs_heap_space_size_used_bytes\{space="old"\} \d+$/m);
      expect(value('nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
      expect(text).toContain(`nodejs_version_info{version="${process.version}"`);
      expect(text).toMatch(/^nodejs_gc_duration_seconds_count\{kind="minor"\} [1-9]\d*$/m);
      expect(value('process_open_fds')).toBeGreaterThan(0);
      expect(text).toMatch(/^nodejs_active_resources\{type="\w+"\} \d+$/m);
      // The delay statistics cover the time since the last scrape.
      expect(value('nodejs_eventloop_lag_max_seconds')).toBeGreaterThan(0);
      const again = registry.render();
      expect(Number(/^nodejs_eventloop_lag_max_seconds (\S+)$/m.exec(again)?.[1])).toBeLessThan(0.03);
    } finally {
      runtime.stop();
    }
  });
});

describe('a node with --log-format json --log-level debug', () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 1, args: ['--log-format', 'json', '--log-level', 'debug'] });
    await cluster.waitForLeader();
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  it('logs JSON lines, and a request\'s lines carry the id the client sent', async () => {
    const putType = etcdType('etcdserverpb.PutRequest');
    const client = new grpc.Client(cluster.nodes[0]!.clientUrl.replace('http://', ''), grpc.credentials.createInsecure());
    const metadata = new grpc.Metadata();
    metadata.set('x-request-id', 'my-put-7');
    await new Promise<void>((resolve, reject) => {
      client.makeUnaryRequest(
        '/etcdserverpb.KV/Put',
        (value: Buffer) => value,
        (bytes: Buffer) => bytes,
        Buffer.from(putType.encode({ key: Buffer.from('k'), value: Buffer.from('v') }).finish()),
        metadata,
        (error) => (error === null ? resolve() : reject(error)),
      );
    });
    client.close();
    const lines = (): Record<string, unknown>[] =>
      cluster
        .log(0)
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    await waitUntil(() => lines().some((line) => line.request_id === 'my-put-7'), 5000, () => 'the request line');
    const line = lines().find((l) => l.request_id === 'my-put-7')!;
    expect(line).toMatchObject({ level: 'debug', name: cluster.nodes[0]!.name, msg: 'request', method: '/etcdserverpb.KV/Put', code: 0 });
    expect(typeof line.took_ms).toBe('number');
    // Every line of the node's log is JSON (the start-up lines included).
    const all = cluster.log(0).split('\n').filter((l) => l.trim() !== '' && l.includes('"level"'));
    expect(all.length).toBeGreaterThan(5);
    expect(lines().some((l) => typeof l.msg === 'string' && (l.msg as string).includes('bootstrapped a new cluster'))).toBe(true);
  });

  it("counts the node's calls in etcd's grpc_server_* metrics, a refused one under its code", async () => {
    const rangeType = etcdType('etcdserverpb.RangeRequest');
    const client = new grpc.Client(cluster.nodes[0]!.clientUrl.replace('http://', ''), grpc.credentials.createInsecure());
    // An empty key is refused at the edge (etcd's "key is not provided": InvalidArgument).
    const error = await new Promise<grpc.ServiceError | null>((resolve) => {
      client.makeUnaryRequest('/etcdserverpb.KV/Range', (value: Buffer) => value, (bytes: Buffer) => bytes, Buffer.from(rangeType.encode({}).finish()), new grpc.Metadata(), (e) => resolve(e));
    });
    client.close();
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    const labels = 'grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method';
    const putsBefore = await cluster.metric(0, `grpc_server_handled_total{${labels}="Put",grpc_code="OK"}`);
    const channel = etcdChannel(cluster.endpoint(0));
    try {
      await channel.kv('Put', { key: Buffer.from('metrics-k'), value: Buffer.from('v') });
    } finally {
      channel.close();
    }
    expect(await cluster.metric(0, `grpc_server_handled_total{${labels}="Put",grpc_code="OK"}`)).toBe(putsBefore + 1);
    expect(await cluster.metric(0, `grpc_server_handled_total{${labels}="Range",grpc_code="InvalidArgument"}`)).toBe(1);
    expect(await cluster.metric(0, `grpc_server_started_total{${labels}="Range"}`)).toBeGreaterThanOrEqual(1);
    // Every answered Range is timed once.
    const text = await (await fetch(`${cluster.nodes[0]!.metricsUrl}/metrics`)).text();
    const handledRanges = [...text.matchAll(new RegExp(`^grpc_server_handled_total\\{${labels}="Range",grpc_code="\\w+"\\} (\\d+)$`, 'gm'))].reduce((sum, m) => sum + Number(m[1]), 0);
    expect(handledRanges).toBeGreaterThanOrEqual(1);
    expect(await cluster.metric(0, `grpc_server_handling_seconds_count{${labels}="Range"}`)).toBe(handledRanges);
    expect(await cluster.metric(0, `grpc_server_handling_seconds_sum{${labels}="Range"}`)).toBeGreaterThan(0);
  });

  it("counts a node's Watch stream started when it opens and handled when its client ends it: started minus handled is the streams open", async () => {
    const labels = 'grpc_type="bidi_stream",grpc_service="etcdserverpb.Watch",grpc_method="Watch"';
    const handledWatches = async (): Promise<number> => {
      const text = await (await fetch(`${cluster.nodes[0]!.metricsUrl}/metrics`)).text();
      return [...text.matchAll(new RegExp(`^grpc_server_handled_total\\{${labels},grpc_code="\\w+"\\} (\\d+)$`, 'gm'))].reduce((sum, m) => sum + Number(m[1]), 0);
    };
    const openWatches = async (): Promise<number> => (await cluster.metric(0, `grpc_server_started_total{${labels}}`)) - (await handledWatches());
    const startedBefore = await cluster.metric(0, `grpc_server_started_total{${labels}}`);
    const openBefore = await openWatches();
    const client = new grpc.Client(cluster.nodes[0]!.clientUrl.replace('http://', ''), grpc.credentials.createInsecure());
    try {
      const watch = client.makeBidiStreamRequest('/etcdserverpb.Watch/Watch', (value: Buffer) => value, (bytes: Buffer) => bytes);
      watch.on('error', () => undefined);
      const created = new Promise<void>((resolve) => watch.once('data', () => resolve()));
      watch.write(Buffer.from(etcdType('etcdserverpb.WatchRequest').encode({ create_request: { key: Buffer.from('metrics-w') } }).finish()));
      await created;
      expect(await cluster.metric(0, `grpc_server_started_total{${labels}}`)).toBe(startedBefore + 1);
      expect(await openWatches()).toBe(openBefore + 1);
      // grpc-js's cancel half-closes the stream, then resets it: Canceled when the node reads the
      // reset before the watch has ended on the half-close, else OK; either way no longer open.
      watch.cancel();
      await waitUntil(async () => (await openWatches()) === openBefore, 5_000, () => 'the ended watch counted handled');
    } finally {
      client.close();
    }
  });

  it('serves the runtime metrics on /metrics', async () => {
    const text = await (await fetch(`${cluster.nodes[0]!.metricsUrl}/metrics`)).text();
    expect(text).toContain('nodejs_eventloop_lag_p99_seconds');
    expect(text).toMatch(/^nodejs_heap_space_size_used_bytes\{space="new"\} \d+$/m);
    expect(text).toContain('process_cpu_user_seconds_total');
  });
});
