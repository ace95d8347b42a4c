/** bench/stores.ts's pure parts: how idle shards are split into stores, and what it reads from /proc and /metrics. */
import { describe, expect, it } from 'vitest';
import { cpuTicksOfStat, idleStorePlan, metricSum } from '../../bench/stores.js';

describe('bench/stores.ts', () => {
  it('adds idle shards in stores of at most 256 shards', () => {
    expect(idleStorePlan(0, 0)).toEqual([]);
    expect(idleStorePlan(0, 100)).toEqual([100]);
    expect(idleStorePlan(100, 1000)).toEqual([256, 256, 256, 132]);
    expect(idleStorePlan(0, 512)).toEqual([256, 256]);
    expect(() => idleStorePlan(100, 10)).toThrow(TypeError);
  });

  it('reads utime + stime from /proc/PID/stat, whatever the command name holds', () => {
    const rest = 'S 1 2 3 4 5 6 7 8 9 10 1234 567 0 0 20 0 11 0 100 2000 300';
    expect(cpuTicksOfStat(`4242 (node) ${rest}`)).toBe(1234 + 567);
    expect(cpuTicksOfStat(`4242 (a) b (c) ${rest}`)).toBe(1234 + 567);
    expect(() => cpuTicksOfStat('4242 (node) S 1')).toThrow(/unreadable/);
  });

  it('sums a metric over its label sets, and not a metric whose name it starts', () => {
    const text = [
      '# HELP etcd_disk_wal_fsync_duration_seconds The latency',
      'etcd_disk_wal_fsync_duration_seconds_bucket{le="0.001"} 3',
      'etcd_disk_wal_fsync_duration_seconds_count 42',
      'dkv_shards 12',
      'dkv_shards_extra 5',
      'x_total{To="a"} 1.5',
      'x_total{To="b"} 2',
    ].join('\n');
    expect(metricSum(text, 'etcd_disk_wal_fsync_duration_seconds_count')).toBe(42);
    expect(metricSum(text, 'dkv_shards')).toBe(12);
    expect(metricSum(text, 'x_total')).toBe(3.5);
    expect(metricSum(text, 'absent')).toBe(0);
  });
});
