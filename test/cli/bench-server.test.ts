/**
 * `dkv bench put|range|txn-put|watch|lease-keepalive|lease-grant|counter|lock` as users run it, without a cluster:
 * help and flag checking only (the load itself is measured by bench/compare-etcd.sh, which never runs in CI;
 * bench-lock.test.ts runs `dkv bench lock` against a real cluster for its checks).
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const bin = join(import.meta.dirname, '..', '..', 'bin', 'dkv.js');

function dkv(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  // The fresh build (bin/load.js falls back to the sources when it is stale): ~3x faster to start.
  const result = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, DKV_FROM_SOURCE: undefined } });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('dkv bench put|range|txn-put', () => {
  it('prints help with the etcd benchmark flags', () => {
    const r = dkv('bench', 'put', '--help');
    expect(r.code).toBe(0);
    for (const flag of ['--endpoints', '--conns', '--clients', '--total', '--key-size', '--val-size', '--key-space-size', '--sequential-keys', '--consistency', '--rate', '--store']) {
      expect(r.stdout).toContain(flag);
    }
  });

  it('refuses bad flags with exit code 2 and a clear message, before connecting anywhere', () => {
    const cases: [string[], string][] = [
      [['put', '--clients', '0'], '--clients must be between 1'],
      [['put', '--frobnicate'], "unknown flag --frobnicate"],
      [['range', '--consistency', 'x'], '--consistency must be l (linearizable) or s (serializable)'],
      [['put', '--consistency', 's'], '--consistency applies to range only'],
      [['put', '--endpoints', 'localhost'], '--endpoints: expected host:port, got "localhost"'],
      [['put', '--key-size', '1', '--key-space-size', '1000'], 'keys need at least 2 bytes'],
      [['txn-put', '--txn-ops', '3'], '--txn-ops 3 needs --key-space-size of at least 3'],
      [['put', '--store', ''], '--store needs a store name'],
    ];
    for (const [args, message] of cases) {
      const r = dkv('bench', ...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(message);
    }
  });
});

describe('dkv bench watch', () => {
  it('prints help with the etcd benchmark watch flags', () => {
    const r = dkv('bench', 'watch', '--help');
    expect(r.code).toBe(0);
    for (const flag of ['--endpoints', '--conns', '--streams', '--watch-per-stream', '--put-rate', '--put-total', '--key-size', '--val-size', '--key-space-size', '--prefix', '--json']) {
      expect(r.stdout).toContain(flag);
    }
  });

  it('refuses bad flags with exit code 2 and a clear message, before connecting anywhere', () => {
    const cases: [string[], string][] = [
      [['--streams', '0'], '--streams must be between 1'],
      [['--put-rate=-1'], '--put-rate must be between 0'],
      [['--watch-per-stream', '20000'], '--watch-per-stream must be between 1 and 10000'],
      [['--put-total', '1000000', '--key-space-size', '1'], 'more than 20000000'],
      [['--clients', '5'], "unknown flag --clients"],
      [['--val-size', '1', '--put-total', '1000'], 'values carry the put\'s number in at least 2 bytes'],
      [['--key-size', '1', '--key-space-size', '1000'], 'keys need at least 2 bytes'],
    ];
    for (const [args, message] of cases) {
      const r = dkv('bench', 'watch', ...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(message);
    }
  });
});

describe('dkv bench lease-keepalive|lease-grant', () => {
  it('is listed in dkv --help and dkv bench --help', () => {
    expect(dkv('--help').stdout).toContain('lease-keepalive|lease-grant');
    const r = dkv('bench', '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('lease-keepalive');
    expect(r.stdout).toContain('lease-grant');
  });

  it('prints help with the etcd benchmark flags', () => {
    for (const target of ['lease-keepalive', 'lease-grant']) {
      const r = dkv('bench', target, '--help');
      expect(r.code, target).toBe(0);
      for (const flag of ['--endpoints', '--conns', '--clients', '--total', '--json']) expect(r.stdout).toContain(flag);
    }
  });

  it('refuses bad flags with exit code 2 and a clear message, before connecting anywhere', () => {
    const cases: [string[], string][] = [
      [['lease-keepalive', '--clients', '0'], '--clients must be between 1'],
      [['lease-keepalive', '--total', '0'], '--total must be between 1'],
      [['lease-grant', '--conns', 'x'], '--conns must be a whole number'],
      [['lease-grant', '--val-size', '8'], "unknown flag --val-size"],
      [['lease-keepalive', '--endpoints', 'https://127.0.0.1:2379'], 'TLS is not supported'],
    ];
    for (const [args, message] of cases) {
      const r = dkv('bench', ...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(message);
    }
  });
});

describe('dkv bench counter', () => {
  it('prints help with its flags and refuses bad ones with exit code 2, before connecting anywhere', () => {
    const help = dkv('bench', 'counter', '--help');
    expect(help.code).toBe(0);
    for (const flag of ['--endpoints', '--conns', '--clients', '--total', '--counters', '--method', '--json']) expect(help.stdout).toContain(flag);
    const cases: [string[], string][] = [
      [['--method', 'x'], '--method must be counter, cas or auto, got "x"'],
      [['--counters', '0'], '--counters must be between 1'],
      [['--key-size', '8'], "unknown flag --key-size"],
    ];
    for (const [args, message] of cases) {
      const r = dkv('bench', 'counter', ...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(message);
    }
  });
});

describe('dkv bench lock', () => {
  it('is listed in dkv --help and described in dkv bench --help with its flags', () => {
    expect(dkv('--help').stdout).toContain('bench lock');
    const r = dkv('bench', 'lock', '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('dkv bench lock [--endpoints E]');
    expect(r.stdout).toContain('Options (lock):');
    for (const flag of ['--endpoints', '--conns', '--clients', '--total', '--duration', '--locks', '--json']) expect(r.stdout).toContain(flag);
  });

  it('refuses bad flags with exit code 2 and a clear message, before connecting anywhere', () => {
    const cases: [string[], string][] = [
      [['--total', '10', '--duration', '5'], 'give --total or --duration, not both'],
      [['--duration', '0'], '--duration must be between 1'],
      [['--locks', '0'], '--locks must be between 1'],
      [['--clients', 'many'], '--clients must be a whole number'],
      [['--counters', '3'], "unknown flag --counters"],
    ];
    for (const [args, message] of cases) {
      const r = dkv('bench', 'lock', ...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(message);
    }
  });
});
