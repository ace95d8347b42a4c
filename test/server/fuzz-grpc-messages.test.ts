/**
 * Issue #17 §2, hostile but well-formed requests: every method of the services the server
 * registers gets messages that decode and are at or past a limit or out of the values that mean
 * something — empty keys, keys and values at and one past the request limit, range_end before
 * key, negative and huge revisions, limits, TTLs, lease, member and watch ids, txns of 128+
 * operations and nested 129+ deep, compares with unknown targets, member URLs that are no URLs,
 * lock and election names at and past their limit, and bidi streams (Watch, LeaseKeepAlive) fed
 * such frames. Each case is answered (never a hang or an unhandled error), the process lives on,
 * a refusal changes nothing (HashKV, revision, leases, alarms, members), a read changes nothing
 * whatever its answer, and a case etcd refuses is refused.
 *
 * fast-check prints the seed and the shrunk counterexample of a failure; rerun with that seed.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Case, type ClusterFacts, encode, hostileCaseGroups, hostileGroupNames, methodOf } from './fuzz-cases.js';
import { expectServes, fuzzRunsScale, fuzzSeed, FuzzNode, type Outcome, StateTracker } from './fuzz-harness.js';


let node: FuzzNode;
let tracker: StateTracker;
let facts: ClusterFacts;
const started = Date.now();

beforeAll(async () => {
  node = await FuzzNode.start();
  tracker = new StateTracker(node);
  const members = (await node.client.call('etcdserverpb.Cluster', 'MemberList', {})).members as Array<{ ID: string; peerURLs: string[] }>;
  facts = { memberIds: members.map((m) => m.ID), peerUrls: members.flatMap((m) => m.peerURLs) };
}, 60_000);

afterAll(async () => {
  console.log(`[fuzz-grpc-messages] ${tracker?.refused} refused, ${tracker?.accepted} accepted, ${tracker?.open} open streams; ${((Date.now() - started) / 1000).toFixed(1)} s`);
  await node?.stop();
});

async function run(c: Case): Promise<void> {
  const method = methodOf(c.path);
  await tracker.before();
  const outcome: Outcome = await node.call(method, c.messages.map((m) => encode(method, m)));
  const label = `${JSON.stringify(c.messages, (_k, v: unknown) => (typeof v === 'object' && v !== null && (v as { type?: string }).type === 'Buffer' ? `<${(v as { data: number[] }).data.length} bytes>` : v)).slice(0, 600)}`;
  try {
    if (c.mustRefuse === true) await tracker.expectRefused(method, outcome, label);
    else if (c.readOnly === true) await tracker.expectUnchanged(method, outcome, label);
    else await tracker.after(method, outcome, label);
  } catch (error) {
    // While fast-check shrinks, each try must start from a state it knows.
    tracker.reset();
    throw error;
  }
}

describe('hostile requests that decode', () => {
  // The groups need the member ids, known once the node runs: each test builds them.
  const groups = (): ReturnType<typeof hostileCaseGroups> => hostileCaseGroups(facts);
  for (const [index, label] of hostileGroupNames.entries()) {
    it(`${label}: answered, alive; refusals and reads change nothing; what etcd refuses is refused`, async () => {
      const [name, cases, numRuns] = groups()[index]!;
      expect(name).toBe(label);
      await fc.assert(fc.asyncProperty(cases, run), { seed: fuzzSeed, numRuns: fuzzRunsScale * numRuns });
    });
  }

  it('the node still serves a normal put and get', async () => {
    await expectServes(node, 'messages');
  });
});
