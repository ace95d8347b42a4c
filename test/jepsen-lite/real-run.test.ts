/**
 * Issue 6 §5's real-mode proof, and issue 18's real-mode shard fault: one `dkv jepsen run` of 32 s
 * on a real 3-node DKV cluster, the register keys in a store of one shard on two of the members,
 * with partitions, kills, replica moves and a split (seed 13: move the shard leader's replica, a
 * partition, a kill, split the shard), checked linearizable, every acknowledged write found in
 * the shards' committed histories and each shard's replicas hashing alike, with the faults
 * visible in the history and the report written.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { jepsenRunCommand } from '../../jepsen-lite/real/command.js';
import { opTimeoutMs } from '../../jepsen-lite/real/clients.js';
import { parseHistoryJson } from '../../jepsen-lite/report/index.js';

const runSeconds = 32;
const seed = 13;
/** Ok operations the healed cluster must serve after the last fault (it serves hundreds). */
const okAfterHealingMin = 50;

const out = mkdtempSync(join(tmpdir(), 'dkv-jepsen-real-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe('dkv jepsen run (real DKV cluster)', () => {
  it(`runs ${runSeconds} s of register ops under partitions, kills, replica moves and a split, and the history is linearizable`, async () => {
    const code = await jepsenRunCommand([
      '--target', 'dkv',
      '--nodes', '3',
      '--time', String(runSeconds),
      '--workload', 'register',
      '--faults', 'partition,kill,shards',
      '--clients', '5',
      '--seed', String(seed),
      '--out', out,
    ]);
    for (const file of ['history.json', 'results.json', 'index.html']) expect(existsSync(join(out, file)), file).toBe(true);
    const { results } = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as {
      results: {
        verdict: string;
        linearizability: { verdict: string; partitions: Array<{ key: string; operations: number; verdict: string }> };
        stats: Record<string, number>;
      };
    };
    const { info, history } = parseHistoryJson(readFileSync(join(out, 'history.json'), 'utf8'));
    expect(results.verdict, JSON.stringify(results.linearizability)).toBe('ok');
    expect(code).toBe(0);
    expect(info.mode).toBe('real');
    expect(results.linearizability.verdict).toBe('ok');
    expect(results.linearizability.partitions.length).toBeGreaterThan(1); // per key
    expect(results.stats.acknowledgedWritesChecked).toBeGreaterThan(100);
    expect(results.stats.acknowledgedWritesMissing).toBe(0);
    expect(results.stats.proxyUnidentified).toBe(0);

    // The faults happened, and were healed before the end.
    const faults = history.faults;
    expect(faults.filter((f) => f.kind === 'kill').length).toBeGreaterThanOrEqual(1);
    expect(faults.filter((f) => f.kind === 'partition').length).toBeGreaterThanOrEqual(1);
    // The run's keys lived in a store of one shard on two of the three members: one of its
    // replicas moved to the third while the clients ran (its leader's, at this seed), and the
    // next shards fault split it at one of the run's keys.
    const shardFaults = faults.filter((f) => f.kind === 'shards');
    expect(shardFaults.some((f) => /^move shard \d+'s replica from n\d \(its leader\) to n\d: done$/.test(f.description)), JSON.stringify(shardFaults)).toBe(true);
    expect(shardFaults.some((f) => /^split shard \d+ at jepsen\/k\d into shard \d+: done/.test(f.description)), JSON.stringify(shardFaults)).toBe(true);
    // Each shard's history was read on its own, and every shard's replicas hash alike.
    const splits = shardFaults.filter((f) => / into shard \d+: done/.test(f.description)).length;
    expect(results.stats['shards.atEnd']).toBe(1 + splits);
    expect(results.stats['shards.replicasCompared']).toBe(1 + splits);
    expect(results.stats['shards.replicasDiverged']).toBe(0);
    for (const fault of faults) expect(fault.end).toBeDefined();
    const lastHeal = Math.max(...faults.map((f) => f.end ?? Infinity));
    expect(lastHeal).toBeLessThanOrEqual(runSeconds * 1000 * 0.8 + 1000);

    // They hurt: operations failed or went unknown while a fault lasted...
    const ops = history.operations;
    const duringFault = (call: number): boolean => faults.some((f) => call >= f.start && call <= (f.end ?? Infinity) + opTimeoutMs);
    expect(ops.filter((op) => op.status !== 'ok' && duringFault(op.call)).length).toBeGreaterThan(0);
    // ...and the healed cluster served operations again.
    expect(ops.filter((op) => op.status === 'ok' && op.call > lastHeal).length).toBeGreaterThanOrEqual(okAfterHealingMin);
    // Every member served operations at some point (clients move between members).
    expect(new Set(ops.filter((op) => op.status === 'ok').map((op) => op.node))).toEqual(new Set(['n1', 'n2', 'n3']));
  });
});
