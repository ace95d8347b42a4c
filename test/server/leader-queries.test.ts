/**
 * The leader queries (src/server/leader-queries.ts): what a leader answers and refuses, and what
 * an asker makes of every answer and failure. An asker never reads a refusal or a malformed answer
 * as a configuration: a leader of an older build, which refuses a query it does not know as
 * `bad-query`, gives etcd's `not capable`.
 */
import { describe, expect, it } from 'vitest';
import type { ConfState } from '../../raft/index.js';
import { isDkvError } from '../../src/errors.js';
import { PeerRequestError, PeerRequestRefusal, type PeerTransport } from '../../src/server/peer/index.js';
import {
  type GroupConfig,
  type LeaderQueryHost,
  type MemberQueryHost,
  answerLeaderQuery,
  askTransferLeader,
  leadingShardsOf,
  groupConfigIdsMax,
  inGroupConfig,
  leaderGroupConfig,
  learnerProgress,
  leftGroupAtLeader,
  parseGroupConfig,
} from '../../src/server/leader-queries.js';

const text = (value: string): Uint8Array => new TextEncoder().encode(value);
const json = (bytes: Uint8Array): unknown => JSON.parse(new TextDecoder().decode(bytes));

const config: ConfState = { voters: [11, 12], votersOutgoing: [11, 12, 13], learners: [14], learnersNext: [13], autoLeave: true };

/** A node hosting shard 1: member 11 leading it, or member 13 following `lead` (0: it knows no leader). */
function host(options: { leads: boolean; lead?: number; applied?: number }): LeaderQueryHost {
  return {
    hasShard: (shard) => shard === 1,
    status: () => ({
      id: options.leads ? 11 : 13,
      config,
      lastIndex: 40,
      applied: options.applied ?? 39,
      lead: options.lead ?? (options.leads ? 11 : 0),
      progress: options.leads ? new Map([[14, { match: 38, next: 39, state: 'replicate', isLearner: true, recentActive: true, paused: false, inflight: 0, pendingSnapshot: 0 }]]) : undefined,
    }),
  };
}

function refusal(payload: string, on: LeaderQueryHost = host({ leads: true })): { code: string; message: string } {
  try {
    answerLeaderQuery(on, text(payload));
  } catch (error) {
    if (error instanceof PeerRequestRefusal) return { code: error.code, message: error.message };
    throw error;
  }
  throw new Error(`${payload} was answered`);
}

type Answer = Uint8Array | Error;

/** A transport whose requests get `answer` (bytes) or fail with it, per peer if a map; records what was asked. */
function transport(answer: Answer | ReadonlyMap<number, Answer>): Pick<PeerTransport, 'request'> & { asked: Array<{ to: number; query: unknown }> } {
  const asked: Array<{ to: number; query: unknown }> = [];
  return {
    asked,
    request: async (to, payload) => {
      asked.push({ to, query: json(payload) });
      const given = answer instanceof Map ? answer.get(to) : answer;
      if (given === undefined) throw new Error(`no answer for ${to}`);
      if (given instanceof Error) throw given;
      return given as Uint8Array;
    },
  };
}

const notLeader = (): PeerRequestError => new PeerRequestError('refused', 'yes', 'refused', { code: 'not-leader', message: 'not the leader of shard 1' });
/** What answerLeaderQuery refused every op but learner-progress with before config queries existed. */
const olderBuild = (): PeerRequestError => new PeerRequestError('refused', 'yes', 'refused', { code: 'bad-query', message: 'unknown or malformed query' });

async function failureCode(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (isDkvError(error)) return error.code;
    throw error;
  }
  throw new Error('the query did not fail');
}

describe('answerLeaderQuery', () => {
  it("answers a config query with the leader's applied configuration, joint halves included", () => {
    expect(json(answerLeaderQuery(host({ leads: true }), text('{"op":"config","shard":1}')))).toEqual({
      applied: 39,
      voters: [11, 12],
      votersOutgoing: [11, 12, 13],
      learners: [14],
      learnersNext: [13],
    });
  });

  it('still answers a learner-progress query', () => {
    expect(json(answerLeaderQuery(host({ leads: true }), text('{"op":"learner-progress","shard":1,"member":14}')))).toEqual({ match: 38, lastIndex: 40 });
    expect(json(answerLeaderQuery(host({ leads: true }), text('{"op":"learner-progress","shard":1,"member":99}')))).toEqual({ match: 0, lastIndex: 40 });
  });

  it('refuses what is not a well-formed query with bad-query', () => {
    for (const payload of ['not json', '', '42', 'null', '"config"', '[]', '{"op":"config"}', '{"op":"config","shard":"1"}', '{"op":"config","shard":-1}',
      '{"op":"config","shard":1.5}', '{"op":"config","shard":9007199254740992}', '{"op":"learner-progress","shard":1}', '{"op":"learner-progress","shard":1,"member":null}']) {
      expect(refusal(payload).code, payload).toBe('bad-query');
    }
  });

  it('refuses an op it does not know with unknown-query', () => {
    for (const payload of ['{"shard":1}', '{"op":"CONFIG","shard":1}', '{"op":"leader-lease","shard":1}', '{"op":{"x":1},"shard":1}']) {
      expect(refusal(payload).code, payload).toBe('unknown-query');
    }
    expect(refusal(`{"op":"${'x'.repeat(1000)}","shard":1}`).message.length).toBeLessThan(200);
  });

  it('refuses a shard not hosted here, and any shard it does not lead', () => {
    expect(refusal('{"op":"config","shard":7}').code).toBe('wrong-shard');
    expect(refusal('{"op":"config","shard":1}', host({ leads: false, lead: 11 })).code).toBe('not-leader');
    expect(refusal('{"op":"learner-progress","shard":1,"member":14}', host({ leads: false, lead: 11 })).code).toBe('not-leader');
  });
});

describe('leaderGroupConfig', () => {
  const answered: GroupConfig = { applied: 39, voters: [11, 12], votersOutgoing: [], learners: [], learnersNext: [] };

  it('reads the configuration here when this node leads, asking no one', async () => {
    const peers = transport(new Error('no request expected'));
    expect(await leaderGroupConfig(host({ leads: true }), peers, 1, 1000)).toEqual({ applied: 39, voters: [11, 12], votersOutgoing: [11, 12, 13], learners: [14], learnersNext: [13] });
    expect(peers.asked).toEqual([]);
  });

  it("asks the leader this node knows, and takes the leader's answer", async () => {
    const peers = transport(text(JSON.stringify(answered)));
    expect(await leaderGroupConfig(host({ leads: false, lead: 12 }), peers, 1, 1000)).toEqual(answered);
    expect(peers.asked).toEqual([{ to: 12, query: { op: 'config', shard: 1 } }]);
  });

  it('asks the other voters when the leader this node knows leads no more (a removed, quiesced member never hears of the next)', async () => {
    const peers = transport(new Map<number, Answer>([[12, notLeader()], [11, text(JSON.stringify(answered))]]));
    expect(await leaderGroupConfig(host({ leads: false, lead: 12 }), peers, 1, 1000)).toEqual(answered);
    expect(peers.asked.map((a) => a.to)).toEqual([12, 11]);
  });

  it('a leader answer round-trips through answerLeaderQuery', async () => {
    const leaderAnswer = answerLeaderQuery(host({ leads: true }), text('{"op":"config","shard":1}'));
    expect(await leaderGroupConfig(host({ leads: false, lead: 11 }), transport(leaderAnswer), 1, 1000)).toEqual(parseGroupConfig(leaderAnswer));
  });

  it('knowing no leader, asks every other voter at once and takes the answer of the one that leads', async () => {
    const peers = transport(new Map<number, Answer>([[11, notLeader()], [12, text(JSON.stringify(answered))]]));
    expect(await leaderGroupConfig(host({ leads: false }), peers, 1, 1000)).toEqual(answered);
    // Voters of both joint halves but itself (13).
    expect(peers.asked.map((a) => a.to).sort()).toEqual([11, 12]);
    expect(peers.asked.every((a) => JSON.stringify(a.query) === '{"op":"config","shard":1}')).toBe(true);
    // A leader of the older build that is not asked first does not hide the answer of the one that leads.
    expect(await leaderGroupConfig(host({ leads: false }), transport(new Map<number, Answer>([[11, olderBuild()], [12, text(JSON.stringify(answered))]])), 1, 1000)).toEqual(answered);
  });

  it("knowing no leader, fails with a timeout or no leader (both tried again) unless every voter is an older build", async () => {
    expect(await failureCode(leaderGroupConfig(host({ leads: false }), transport(notLeader()), 1, 1000))).toBe('no-leader');
    const timeout = new PeerRequestError('timeout', 'maybe', 'no answer');
    expect(await failureCode(leaderGroupConfig(host({ leads: false }), transport(new Map<number, Answer>([[11, notLeader()], [12, timeout]])), 1, 1000))).toBe('timeout');
    // An older follower's refusal says nothing of the leader, which was only slow here.
    expect(await failureCode(leaderGroupConfig(host({ leads: false }), transport(new Map<number, Answer>([[11, timeout], [12, olderBuild()]])), 1, 1000))).toBe('timeout');
    expect(await failureCode(leaderGroupConfig(host({ leads: false }), transport(new Map<number, Answer>([[11, notLeader()], [12, olderBuild()]])), 1, 1000))).toBe('no-leader');
    expect(await failureCode(leaderGroupConfig(host({ leads: false }), transport(new Map<number, Answer>([[11, olderBuild()], [12, olderBuild()]])), 1, 1000))).toBe('not-capable');
  });

  it("a leader of an older build (it refuses an op it does not know as bad-query) gives 'not capable', never an answer", async () => {
    const older = olderBuild();
    expect(await failureCode(leaderGroupConfig(host({ leads: false, lead: 12 }), transport(older), 1, 1000))).toBe('not-capable');
    const unknown = new PeerRequestError('refused', 'yes', 'refused', { code: 'unknown-query', message: 'unknown query op config' });
    expect(await failureCode(leaderGroupConfig(host({ leads: false, lead: 12 }), transport(unknown), 1, 1000))).toBe('not-capable');
    const noRequests = new PeerRequestError('unsupported', 'no', 'member c does not answer requests');
    expect(await failureCode(leaderGroupConfig(host({ leads: false, lead: 12 }), transport(noRequests), 1, 1000))).toBe('not-capable');
  });

  it('a timeout is a timeout; a leader that no longer leads or cannot be reached is no leader', async () => {
    const cases: Array<[PeerRequestError, string]> = [
      [new PeerRequestError('timeout', 'maybe', 'no answer'), 'timeout'],
      [new PeerRequestError('refused', 'yes', 'refused', { code: 'not-leader', message: 'not the leader of shard 1' }), 'no-leader'],
      [new PeerRequestError('refused', 'yes', 'refused', { code: 'wrong-shard', message: 'shard 1 is not hosted here' }), 'no-leader'],
      [new PeerRequestError('unreachable', 'no', 'no link'), 'no-leader'],
      [new PeerRequestError('stopped', 'no', 'stopped'), 'no-leader'],
    ];
    for (const [error, code] of cases) expect(await failureCode(leaderGroupConfig(host({ leads: false, lead: 12 }), transport(error), 1, 1000)), error.code).toBe(code);
  });

  it('refuses an answer that is not four lists of member ids', async () => {
    const ids = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);
    const lists = (voters: unknown, applied: unknown = 39): string => JSON.stringify({ applied, voters, votersOutgoing: [], learners: [], learnersNext: [] });
    for (const answer of ['not json', 'null', '[]', '{}', '{"applied":1,"voters":[11],"learners":[]}', lists([11], -1), lists([11], '39'), lists([11], null), JSON.stringify({ voters: [11], votersOutgoing: [], learners: [], learnersNext: [] }), lists('11'), lists([11, '12']), lists([0]), lists([-1]), lists([1.5]),
      lists([2 ** 53]), lists([null]), lists(ids(groupConfigIdsMax + 1))]) {
      expect(await failureCode(leaderGroupConfig(host({ leads: false, lead: 12 }), transport(text(answer)), 1, 1000)), answer.slice(0, 80)).toBe('internal');
    }
    expect((await leaderGroupConfig(host({ leads: false, lead: 12 }), transport(text(lists(ids(groupConfigIdsMax)))), 1, 1000)).voters).toHaveLength(groupConfigIdsMax);
  });
});

describe('leftGroupAtLeader', () => {
  const answer = (applied: number, voters: number[]): Uint8Array => text(JSON.stringify({ applied, voters, votersOutgoing: [], learners: [], learnersNext: [] }));

  it("is true once the leader's configuration, at least as new as this node's, lacks the member", async () => {
    expect(await leftGroupAtLeader(host({ leads: false, lead: 11, applied: 39 }), transport(answer(45, [11, 12])), 1, 13, 1000)).toBe(true);
    expect(await leftGroupAtLeader(host({ leads: false, lead: 11, applied: 39 }), transport(answer(39, [11, 12])), 1, 13, 1000)).toBe(true);
  });

  it('is false while the configuration holds the member, and when the leader has not applied as far as this node', async () => {
    expect(await leftGroupAtLeader(host({ leads: false, lead: 11, applied: 39 }), transport(answer(45, [11, 12, 13])), 1, 13, 1000)).toBe(false);
    // Not a configuration this node's could have come after: no answer about a member it holds.
    expect(await leftGroupAtLeader(host({ leads: false, lead: 11, applied: 39 }), transport(answer(38, [11, 12])), 1, 13, 1000)).toBe(false);
  });
});

describe('learnerProgress', () => {
  it("reads here when leading, else asks the leader; an older leader's refusal is not read as progress", async () => {
    expect(await learnerProgress(host({ leads: true }), transport(new Error('no request expected')), 1, 14, 1000)).toEqual({ match: 38, lastIndex: 40 });
    const peers = transport(text('{"match":5,"lastIndex":9}'));
    expect(await learnerProgress(host({ leads: false, lead: 12 }), peers, 1, 14, 1000)).toEqual({ match: 5, lastIndex: 9 });
    expect(peers.asked).toEqual([{ to: 12, query: { op: 'learner-progress', shard: 1, member: 14 } }]);
    expect(await failureCode(learnerProgress(host({ leads: false, lead: 12 }), transport(text('{"match":5}')), 1, 14, 1000))).toBe('internal');
    // Knowing no leader, it asks no one (a deposed leader's progress must not pass for readiness).
    const none = transport(text('{"match":40,"lastIndex":40}'));
    expect(await failureCode(learnerProgress(host({ leads: false }), none, 1, 14, 1000))).toBe('no-leader');
    expect(none.asked).toEqual([]);
  });
});

describe('inGroupConfig', () => {
  it('counts a member in any role, in either half of a joint configuration', () => {
    const joint: GroupConfig = { applied: 9, voters: [1, 2], votersOutgoing: [2, 3], learners: [4], learnersNext: [5] };
    for (const id of [1, 2, 3, 4, 5]) expect(inGroupConfig(joint, id), String(id)).toBe(true);
    expect(inGroupConfig(joint, 6)).toBe(false);
    expect(inGroupConfig({ applied: 9, voters: [], votersOutgoing: [], learners: [], learnersNext: [] }, 1)).toBe(false);
  });
});

describe('the placement loop\'s questions', () => {
  /**
   * Member 11 leading shard 1 of voters 11, 12, 13, 15, 16 (13 not heard from lately, 14 a learner,
   * 15 behind the applied index, 16 probing); `transferee`: a hand-over under way.
   */
  function balancingHost(transferee = 0): MemberQueryHost & { transfers: Array<[number, number]> } {
    const transfers: Array<[number, number]> = [];
    const progress = (recentActive: boolean, isLearner = false, match = 40, state: 'replicate' | 'probe' = 'replicate') => ({ match, next: match + 1, state, isLearner, recentActive, paused: false, inflight: 0, pendingSnapshot: 0 });
    return {
      transfers,
      hasShard: (shard) => shard === 1,
      status: () => ({
        id: 11,
        config: { voters: [11, 12, 13, 15, 16], votersOutgoing: [], learners: [14], learnersNext: [], autoLeave: false },
        lastIndex: 41,
        applied: 40,
        lead: 11,
        leadTransferee: transferee,
        progress: new Map([[11, progress(true)], [12, progress(true)], [13, progress(false)], [14, progress(true, true)], [15, progress(true, false, 39)], [16, progress(true, false, 40, 'probe')]]),
      }),
      leadingShards: () => [1, 5],
      transferLeader: (shard, to) => transfers.push([shard, to]),
    };
  }

  it('answers which shards it leads, and hands a leadership only to a voter heard from lately', () => {
    const on = balancingHost();
    expect(json(answerLeaderQuery(on, text('{"op":"leading"}')))).toEqual({ shards: [1, 5] });
    expect(json(answerLeaderQuery(on, text('{"op":"transfer-leader","shard":1,"to":12}')))).toEqual({ started: true });
    expect(on.transfers).toEqual([[1, 12]]);
    for (const to of [13, 14, 15, 16, 11, 99]) expect(refusal(`{"op":"transfer-leader","shard":1,"to":${to}}`, on).code, String(to)).toBe('not-in-touch');
    expect(refusal('{"op":"transfer-leader","shard":1,"to":12}', balancingHost(12)).code).toBe('transfer-in-progress');
    // A quiesced (idle) group's progress is stale: any other voter will do (Raft catches it up),
    // never a learner or a stranger.
    const idle = { ...balancingHost(), quiesced: () => true };
    for (const to of [13, 15, 16]) expect(json(answerLeaderQuery(idle, text(`{"op":"transfer-leader","shard":1,"to":${to}}`)))).toEqual({ started: true });
    for (const to of [14, 11, 99]) expect(refusal(`{"op":"transfer-leader","shard":1,"to":${to}}`, idle).code, String(to)).toBe('not-in-touch');
    expect(refusal('{"op":"transfer-leader","shard":2,"to":12}', on).code).toBe('wrong-shard');
    expect(refusal('{"op":"transfer-leader","shard":1}', on).code).toBe('bad-query');
    expect(refusal('{"op":"transfer-leader","shard":1,"to":12}', host({ leads: false })).code).toBe('unknown-query');
    expect(on.transfers).toEqual([[1, 12]]);
  });

  it('an asker reads a member that cannot answer as no answer, and a malformed one as an error', async () => {
    expect(await leadingShardsOf(transport(text('{"shards":[3,4]}')), 12, 1000)).toEqual([3, 4]);
    expect(await leadingShardsOf(transport(olderBuild()), 12, 1000)).toBeUndefined();
    expect(await failureCode(leadingShardsOf(transport(text('{"shards":[-1]}')), 12, 1000))).toBe('internal');
    await expect(askTransferLeader(transport(new PeerRequestError('refused', 'yes', 'refused', { code: 'not-in-touch', message: 'member d is not a voter' })), 12, 1, 13, 1000)).rejects.toThrow(/did not hand shard 1's leadership to d: member d is not a voter/);
  });
});
