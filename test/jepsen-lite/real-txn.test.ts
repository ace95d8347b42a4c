/**
 * The transactional workloads in real mode, on real clusters over gRPC: `append` against DKV
 * under partitions and kills checks out (Elle finds no anomaly; the Txns are linearizable by
 * their revisions); the same run against servers started with `--unsafe-ignore-txn-compare`
 * is caught; `append` against the Debian etcd checks out too. (`rw-register` runs through the same
 * client code; the simulator's seeds cover it.)
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ElleResult } from '../../jepsen-lite/check/index.js';
import { jepsenRunCommand } from '../../jepsen-lite/real/command.js';

const root = mkdtempSync(join(tmpdir(), 'dkv-jepsen-txn-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface Results {
  readonly verdict: string;
  readonly txn?: ElleResult;
  readonly linearizability?: { readonly verdict: string; readonly method?: string };
  readonly stats: Record<string, number>;
}

async function run(name: string, args: string[], seconds = 6): Promise<{ code: number; results: Results }> {
  const out = join(root, name);
  const code = await jepsenRunCommand([...args, '--nodes', '3', '--time', String(seconds), '--clients', '5', '--seed', '5', '--out', out]);
  const { results } = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as { results: Results };
  return { code, results };
}

describe('dkv jepsen run, transactional workloads', () => {
  it('append against DKV under partitions and kills: no anomaly, linearizable by revisions', async () => {
    const { code, results } = await run('dkv', ['--target', 'dkv', '--workload', 'append', '--faults', 'partition,kill']);
    expect(results.txn?.verdict, JSON.stringify(results.txn?.anomalies?.slice(0, 3))).toBe('ok');
    expect(results.txn!.stats.committed).toBeGreaterThan(100);
    expect(results.linearizability).toMatchObject({ verdict: 'ok', method: 'revisions' });
    expect(results.stats.acknowledgedWritesMissing).toBe(0);
    expect(code).toBe(0);
  });

  it('append against DKV applying Txns without their compares: the lost appends are found', async () => {
    const { code, results } = await run('unsafe', ['--target', 'dkv', '--workload', 'append', '--faults', 'none', '--unsafe-ignore-txn-compare'], 5);
    expect(results.verdict).toBe('violation');
    expect(code).toBe(1);
    const names = Object.keys(results.txn!.counts);
    expect(names.some((name) => name === 'incompatible-order' || name === 'internal'), names.join(', ')).toBe(true);
    expect(results.txn!.notSatisfied).toContain('serializable');
  });

  it('append against etcd under partitions, kills, pauses and delays: no anomaly', async () => {
    const { code, results } = await run('etcd', ['--target', 'etcd', '--workload', 'append', '--faults', 'partition,kill,pause,delay']);
    expect(results.txn?.verdict, JSON.stringify(results.txn?.anomalies?.slice(0, 3))).toBe('ok');
    expect(results.txn!.stats.committed).toBeGreaterThan(100);
    expect(code).toBe(0);
  });
});
