/**
 * The Node runtime's own figures on `/metrics`, under the names prom-client's default metrics
 * give them (so the Node.js dashboards people already have work): event-loop delay — what breaks
 * elections first — heap and its spaces, GC pauses by kind, active resources, open file
 * descriptors, CPU split into user and system, the Node version.
 *
 * Costs nothing per request: the event-loop delay histogram is sampled by libuv
 * (`monitorEventLoopDelay`, `eventLoopResolutionMs`), GC pauses come from a PerformanceObserver,
 * and everything else is read when `/metrics` is scraped. The delay statistics cover the time since
 * the previous scrape (the histogram is reset after each), as prom-client's do.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { type IntervalHistogram, PerformanceObserver, monitorEventLoopDelay } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';
import type { Registry } from './metrics.js';

/** Sampling resolution of the event-loop delay histogram (prom-client's default). */
export const eventLoopResolutionMs = 10;
/** Buckets of `nodejs_gc_duration_seconds` (prom-client's). */
export const gcDurationBuckets: readonly number[] = [0.001, 0.01, 0.1, 1, 2, 5];

/** GC kinds as perf_hooks numbers them (NODE_PERFORMANCE_GC_*). */
const gcKinds: Readonly<Record<number, string>> = { 1: 'minor', 2: 'major', 4: 'incremental', 8: 'weakcb' };

const nanosecondsPerSecond = 1e9;

export interface RuntimeMetrics {
  /** Stops the samplers (a node that stops; tests start many in one process). */
  stop(): void;
}

function openFds(): number | undefined {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return undefined;
  }
}

function maxFds(): number | undefined {
  try {
    const limits = readFileSync('/proc/self/limits', 'utf8');
    const match = /^Max open files\s+(\d+)/m.exec(limits);
    return match === null ? undefined : Number(match[1]);
  } catch {
    return undefined;
  }
}

function virtualMemoryBytes(): number | undefined {
  try {
    // /proc/self/stat: field 23 is vsize in bytes; the command name (field 2) may hold spaces.
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[20]);
  } catch {
    return undefined;
  }
}

export function registerRuntimeMetrics(registry: Registry): RuntimeMetrics {
  const delay: IntervalHistogram = monitorEventLoopDelay({ resolution: eventLoopResolutionMs });
  delay.enable();
  const seconds = (nanoseconds: number): number => (Number.isFinite(nanoseconds) ? nanoseconds / nanosecondsPerSecond : 0);
  const lag = (name: string, help: string, read: () => number): void => {
    registry.gauge({ name, help, collect: () => seconds(read()) });
  };
  lag('nodejs_eventloop_lag_min_seconds', 'The minimum recorded event loop delay.', () => delay.min);
  lag('nodejs_eventloop_lag_max_seconds', 'The maximum recorded event loop delay.', () => delay.max);
  lag('nodejs_eventloop_lag_mean_seconds', 'The mean of the recorded event loop delays.', () => delay.mean);
  lag('nodejs_eventloop_lag_stddev_seconds', 'The standard deviation of the recorded event loop delays.', () => delay.stddev);
  lag('nodejs_eventloop_lag_p50_seconds', 'The 50th percentile of the recorded event loop delays.', () => delay.percentile(50));
  lag('nodejs_eventloop_lag_p90_seconds', 'The 90th percentile of the recorded event loop delays.', () => delay.percentile(90));
  lag('nodejs_eventloop_lag_p99_seconds', 'The 99th percentile of the recorded event loop delays.', () => delay.percentile(99));

  const gc = registry.histogram({
    name: 'nodejs_gc_duration_seconds',
    help: 'Garbage collection duration by kind, one of major, minor, incremental or weakcb.',
    labelNames: ['kind'],
    buckets: gcDurationBuckets,
  });
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const kind = gcKinds[((entry as { detail?: unknown }).detail as { kind?: number } | undefined)?.kind ?? 0] ?? 'unknown';
      gc.observe(entry.duration / 1000, { kind });
    }
  });
  observer.observe({ entryTypes: ['gc'] });

  registry.gauge({ name: 'nodejs_heap_size_total_bytes', help: 'Process heap size from Node.js in bytes.', collect: () => process.memoryUsage().heapTotal });
  registry.gauge({ name: 'nodejs_heap_size_used_bytes', help: 'Process heap size used from Node.js in bytes.', collect: () => process.memoryUsage().heapUsed });
  registry.gauge({ name: 'nodejs_external_memory_bytes', help: 'Node.js external memory size in bytes.', collect: () => process.memoryUsage().external });
  registry.gauge({ name: 'nodejs_array_buffers_bytes', help: 'Memory of ArrayBuffers and SharedArrayBuffers (Buffers included) in bytes.', collect: () => process.memoryUsage().arrayBuffers });
  const spaceTotal = registry.gauge({ name: 'nodejs_heap_space_size_total_bytes', help: 'Process heap space size total from Node.js in bytes.', labelNames: ['space'] });
  const spaceUsed = registry.gauge({ name: 'nodejs_heap_space_size_used_bytes', help: 'Process heap space size used from Node.js in bytes.', labelNames: ['space'] });
  const spaceAvailable = registry.gauge({ name: 'nodejs_heap_space_size_available_bytes', help: 'Process heap space size available from Node.js in bytes.', labelNames: ['space'] });
  const activeResources = registry.gauge({ name: 'nodejs_active_resources', help: 'Active resources keeping the event loop alive, by type.', labelNames: ['type'] });
  registry.gauge({ name: 'nodejs_active_resources_total', help: 'Total number of active resources.', collect: () => process.getActiveResourcesInfo().length });
  const version = registry.gauge({ name: 'nodejs_version_info', help: 'Node.js version info.', labelNames: ['version', 'major', 'minor', 'patch'] });
  const [major = '0', minor = '0', patch = '0'] = process.versions.node.split('.');
  version.set(1, { version: process.version, major, minor, patch });

  registry.counter({ name: 'process_cpu_user_seconds_total', help: 'Total user CPU time spent in seconds.', collect: () => process.cpuUsage().user / 1e6 });
  registry.counter({ name: 'process_cpu_system_seconds_total', help: 'Total system CPU time spent in seconds.', collect: () => process.cpuUsage().system / 1e6 });
  registry.gauge({ name: 'process_virtual_memory_bytes', help: 'Virtual memory size in bytes.', collect: () => virtualMemoryBytes() ?? 0 });
  registry.gauge({ name: 'process_heap_bytes', help: 'Process heap size in bytes.', collect: () => process.memoryUsage().heapTotal });
  registry.gauge({ name: 'process_open_fds', help: 'Number of open file descriptors.', collect: () => openFds() ?? 0 });
  const maxFdCount = maxFds();
  if (maxFdCount !== undefined) registry.gauge({ name: 'process_max_fds', help: 'Maximum number of open file descriptors.', collect: () => maxFdCount });

  registry.beforeRender(() => {
    for (const space of getHeapSpaceStatistics()) {
      const labels = { space: space.space_name.replace(/_space$/, '') };
      spaceTotal.set(space.space_size, labels);
      spaceUsed.set(space.space_used_size, labels);
      spaceAvailable.set(space.space_available_size, labels);
    }
    activeResources.reset();
    const counts = new Map<string, number>();
    for (const type of process.getActiveResourcesInfo()) counts.set(type, (counts.get(type) ?? 0) + 1);
    for (const [type, count] of counts) activeResources.set(count, { type });
  });
  registry.afterRender(() => delay.reset());

  return {
    stop() {
      delay.disable();
      observer.disconnect();
    },
  };
}
