/**
 * Issue 17's jepsen-lite proof: the register workload with auth enabled (`--auth`: the clients
 * call as a user who may read and write only the run's keys, with tokens), under partitions and
 * kills — a killed member forgets its simple tokens, so its clients authenticate again — stays
 * linearizable with every acknowledged write in the committed history. While it runs, a call
 * without a token and a call outside the user's keys are refused.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type RpcError, grpcStatus } from '../../src/client/index.js';
import { clientUser } from '../../jepsen-lite/real/auth.js';
import { memberChannel } from '../../jepsen-lite/real/clients.js';
import type { RealCluster } from '../../jepsen-lite/real/cluster.js';
import { runReal } from '../../jepsen-lite/real/run.js';
import { workloadDefaults } from '../../jepsen-lite/workload/index.js';

const runSeconds = 16;
const out = mkdtempSync(join(tmpdir(), 'dkv-jepsen-auth-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

/** How long a probe may look for a member that answers (faults come and go meanwhile). */
const probeDeadlineMs = 20_000;

/**
 * A serializable Range of `key` as `user` (none: no token), asked of each member in turn until
 * one answers rather than being down or cut off: 'allowed', or the refusal's message.
 */
async function answered(cluster: RealCluster, user: typeof clientUser | undefined, key: Buffer): Promise<string> {
  const started = Date.now();
  for (let attempt = 0; Date.now() - started < probeDeadlineMs; attempt++) {
    const member = cluster.members[attempt % cluster.members.length]!.name;
    const channel = memberChannel(cluster.endpoint(member), user);
    try {
      await channel.kv('Range', { key, serializable: true }, { timeoutMs: 1000 });
      return 'allowed';
    } catch (error) {
      const rpc = error as RpcError;
      // Down, cut off, or not yet caught up with the auth state (a token it has not applied,
      // an auth revision behind): ask another member.
      const details = rpc.details ?? '';
      const unreachable =
        rpc.code === grpcStatus.UNAVAILABLE ||
        rpc.code === grpcStatus.DEADLINE_EXCEEDED ||
        details.startsWith('authenticate failed') ||
        details === 'etcdserver: invalid auth token' ||
        details === 'etcdserver: revision of auth store is old';
      if (!unreachable) return rpc.details ?? String(error);
    } finally {
      channel.close();
    }
  }
  return 'no member answered';
}

describe('dkv jepsen run --auth (real DKV cluster)', () => {
  it(`runs ${runSeconds} s of register ops as a restricted user under partitions and kills, linearizably`, async () => {
    let cluster: RealCluster | undefined;
    const probes: Array<Promise<string[]>> = [];
    const outcome = await runReal({
      target: 'dkv',
      nodes: 3,
      timeMs: runSeconds * 1000,
      workload: 'register',
      faults: ['partition', 'kill'],
      clients: 4,
      seed: 17,
      outDir: out,
      auth: true,
      command: 'test',
      onCluster: (c) => (cluster = c),
      onProgress: (elapsedMs) => {
        // Once, a second into the run (auth is on by then): an anonymous read, and the clients'
        // user reading outside its keys.
        if (probes.length > 0 || elapsedMs < 1000 || cluster === undefined) return;
        const running = cluster;
        probes.push(
          (async () => {
            const answers: string[] = [];
            for (const [user, key] of [
              [undefined, workloadDefaults.keyPrefix],
              [clientUser, 'elsewhere'],
              [clientUser, `${workloadDefaults.keyPrefix}0`],
            ] as const) {
              answers.push(await answered(running, user, Buffer.from(key)));
            }
            return answers;
          })(),
        );
      },
    });
    expect(outcome.results.verdict, JSON.stringify(outcome.results.linearizability)).toBe('ok');
    expect(outcome.results.stats.acknowledgedWritesChecked).toBeGreaterThan(10);
    expect(outcome.results.stats.acknowledgedWritesMissing).toBe(0);
    expect(outcome.history.faults.filter((f) => f.kind === 'kill').length).toBeGreaterThanOrEqual(1);
    expect(probes).toHaveLength(1);
    expect(await probes[0]).toEqual(['etcdserver: user name is empty', 'etcdserver: permission denied', 'allowed']);
  }, 90_000);
});
