/**
 * The election checker (`jepsen-lite/check/election.ts`) on crafted histories: a clean run with a
 * resign, a lease expiry, a refused stale proclaim and an observer that reopened across a gap
 * passes; each property fails on the history that breaks it (two leaders at one revision, an
 * observer that sees B then A when A led first, a campaign acknowledged while an older key was
 * alive, a proclaim acknowledged by a non-leader, and more), naming the evidence.
 */
import { describe, expect, it } from 'vitest';
import { type ObservedLeader, type ObserverSegment, type WatchHistory, checkElection, checkLinearizability, electionLockOperations } from '../../jepsen-lite/check/index.js';
import type { ElectionInput, ElectionOutput, Operation } from '../../jepsen-lite/history.js';

const prefix = 'E/';
const encoder = new TextEncoder();

type Change = { type: 'put'; key: string; value: string; create: number } | { type: 'delete'; key: string };

function committed(revisions: Record<number, Change[]>): WatchHistory {
  return {
    revisions: Object.entries(revisions).map(([r, changes]) => {
      const revision = Number(r);
      return {
        revision,
        events: changes.map((c) =>
          c.type === 'put'
            ? { type: 'put' as const, key: encoder.encode(c.key), value: encoder.encode(c.value), createRevision: c.create, modRevision: revision, version: 1 }
            : { type: 'delete' as const, key: encoder.encode(c.key), createRevision: 0, modRevision: revision, version: 0 },
        ),
      };
    }),
  };
}

const put = (key: string, value: string, create: number): Change => ({ type: 'put', key: prefix + key, value, create });
const del = (key: string): Change => ({ type: 'delete', key: prefix + key });

let nextId = 0;
function op(process: number, call: number, ret: number | undefined, input: ElectionInput, result: { output: ElectionOutput } | { status: 'fail' | 'info'; error: string }): Operation {
  const base = { id: nextId++, process, call, input, node: 'n1' };
  if ('output' in result) return { ...base, ret: ret!, status: 'ok', output: result.output };
  return { ...base, ...(ret === undefined ? {} : { ret }), status: result.status, error: result.error };
}

const campaign = (process: number, call: number, ret: number, key: string, rev: number, value = `${key}0`): Operation =>
  op(process, call, ret, { f: 'campaign', election: 'E', value }, { output: { f: 'campaign', key: prefix + key, rev, revision: rev } });
const proclaim = (process: number, call: number, ret: number, key: string, rev: number, value: string, revision: number): Operation =>
  op(process, call, ret, { f: 'proclaim', election: 'E', key: prefix + key, rev, value }, { output: { f: 'proclaim', revision } });
const refusedProclaim = (process: number, call: number, ret: number, key: string, rev: number, value: string): Operation =>
  op(process, call, ret, { f: 'proclaim', election: 'E', key: prefix + key, rev, value }, { status: 'fail', error: 'UNKNOWN: election: not leader' });
const resign = (process: number, call: number, ret: number, key: string, rev: number, revision: number): Operation =>
  op(process, call, ret, { f: 'resign', election: 'E', key: prefix + key, rev }, { output: { f: 'resign', revision } });

const seen = (at: number, revision: number, key: string, create: number, mod: number, value: string): ObservedLeader => ({
  at,
  revision,
  key: prefix + key,
  createRevision: create,
  modRevision: mod,
  value,
});

function segment(observer: number, index: number, opened: number, leaders: ObservedLeader[], node = `n${observer + 1}`): ObserverSegment {
  return { observer, segment: index, node, opened, end: 'client-closed', leaders };
}

/**
 * A leads (created at 2), proclaims a1 at 4 and resigns at 5; B (created at 3, waiting) leads from
 * 5, proclaims b1 at 6 and its lease expires at 7; A wakes and proclaims late (refused); C leads
 * from 8. True states: #0 a=a0, #1 a=a1, #2 b=b0, #3 b=b1, (nobody at 7), #4 c=c0.
 */
const cleanHistory = committed({
  2: [put('a', 'a0', 2)],
  3: [put('b', 'b0', 3)],
  4: [put('a', 'a1', 2)],
  5: [del('a')],
  6: [put('b', 'b1', 3)],
  7: [del('b')],
  8: [put('c', 'c0', 8)],
});

function cleanOperations(): Operation[] {
  return [
    campaign(0, 0, 10, 'a', 2),
    campaign(1, 5, 60, 'b', 3),
    proclaim(0, 20, 30, 'a', 2, 'a1', 4),
    resign(0, 40, 50, 'a', 2, 5),
    proclaim(1, 70, 80, 'b', 3, 'b1', 6),
    refusedProclaim(0, 90, 95, 'a', 2, 'a-late'),
    campaign(2, 100, 120, 'c', 8),
  ];
}

function cleanObservers(): ObserverSegment[] {
  return [
    segment(0, 0, 0, [seen(12, 2, 'a', 2, 2, 'a0'), seen(31, 4, 'a', 2, 4, 'a1'), seen(55, 5, 'b', 3, 3, 'b0'), seen(81, 6, 'b', 3, 6, 'b1'), seen(121, 8, 'c', 8, 8, 'c0')]),
    // o1's first stream breaks at 40; its second, opened at 75 on n3, missed b0 in the gap.
    { ...segment(1, 0, 0, [seen(13, 2, 'a', 2, 2, 'a0'), seen(32, 4, 'a', 2, 4, 'a1')]), end: 'broken', closed: 40, error: 'UNAVAILABLE' },
    segment(1, 1, 75, [seen(76, 6, 'b', 3, 6, 'b1'), seen(122, 8, 'c', 8, 8, 'c0')], 'n3'),
  ];
}

const withCommitted = (history: WatchHistory, observeComplete = true) => ({ committed: { history, prefix }, observeComplete });

describe('the election checker', () => {
  it('passes a clean run and counts what it saw', () => {
    const result = checkElection(cleanOperations(), cleanObservers(), withCommitted(cleanHistory));
    expect(result.violations).toEqual([]);
    expect(result.ok).toBe(true);
    expect(result.stats).toMatchObject({
      campaigns: 3,
      campaignsWon: 3,
      proclaims: 3,
      proclaimsAcknowledged: 2,
      proclaimsRefused: 1,
      resigns: 1,
      resignsAcknowledged: 1,
      leaders: 3,
      leaderChanges: 2,
      states: 5,
    });
    expect(result.stats.observers).toEqual([
      { observer: 0, segments: 1, states: 5, leaders: 3, leaderChanges: 2, skipped: 0 },
      { observer: 1, segments: 2, states: 4, leaders: 3, leaderChanges: 2, skipped: 0 },
    ]);
    expect(result.stats.eventsChecked).toBe(7 + 9 + 7);
    // The lock model agrees: tokens grow, no older leader's proclaim after a newer one's.
    expect(checkLinearizability('lock', electionLockOperations(cleanOperations())).verdict).toBe('ok');
  });

  it('fails on two leaders at one revision', () => {
    const history = committed({ 2: [put('a', 'a0', 2), put('b', 'b0', 2)], 3: [del('a'), del('b')] });
    const result = checkElection([], [], withCommitted(history));
    expect(result.ok).toBe(false);
    expect(result.violations).toEqual([{ property: 'one-leader', message: expect.stringMatching(/revision 2: 2 leaders — E\/a, E\/b all created at revision 2/) }]);
  });

  it('fails on a key put with a create revision that is not its own', () => {
    const history = committed({ 2: [put('a', 'a0', 2)], 3: [put('b', 'b0', 1)] });
    const result = checkElection([], [], withCommitted(history));
    expect(result.violations.map((v) => v.property)).toContain('one-leader');
    expect(result.violations[0]!.message).toMatch(/revision 3: .*E\/b with create revision 1, but it is created there/);
  });

  it('fails on an observer that sees B then A when A led first', () => {
    const observers = [...cleanObservers(), segment(2, 0, 0, [seen(60, 5, 'b', 3, 3, 'b0'), seen(61, 5, 'a', 2, 4, 'a1')])];
    const result = checkElection(cleanOperations(), observers, withCommitted(cleanHistory));
    expect(result.ok).toBe(false);
    const messages = result.violations.filter((v) => v.property === 'observer').map((v) => v.message);
    expect(messages[0]).toMatch(/observer o2 \(stream 0 on n3, opened at 0 ms\) saw E\/a \(created at 2\) = "a1" .* after E\/b \(created at 3\) = "b0" .*a leader come back after its successor/);
    // And the observers disagree with each other.
    expect(messages.some((m) => /observers o0 and o2 disagree/.test(m))).toBe(true);
  });

  it('fails on a reopened observer that goes back to a leader it had seen replaced', () => {
    const observers = [segment(0, 0, 0, [seen(55, 5, 'b', 3, 3, 'b0')]), segment(0, 1, 56, [seen(57, 4, 'a', 2, 4, 'a1')])];
    const result = checkElection(cleanOperations(), observers, withCommitted(cleanHistory));
    expect(result.violations.map((v) => v.message).join('\n')).toMatch(/observer o0 \(stream 1 on n1.*saw E\/a .* after E\/b .* \(seen on stream 0 on n1\): a leader come back/);
  });

  it('fails on an observer that sees a state that never led, or twice on one stream', () => {
    const never = checkElection(cleanOperations(), [segment(0, 0, 0, [seen(60, 5, 'b', 3, 4, 'b-early')])], withCommitted(cleanHistory));
    expect(never.violations[0]).toEqual({ property: 'observer', message: expect.stringMatching(/saw E\/b .*"b-early".*but that key never led with that value/) });
    const twice = checkElection(cleanOperations(), [segment(0, 0, 0, [seen(55, 5, 'b', 3, 3, 'b0'), seen(56, 5, 'b', 3, 3, 'b0')])], withCommitted(cleanHistory));
    expect(twice.violations[0]!.message).toMatch(/the same leader state again/);
  });

  it('fails on a skip inside one stream when Observe promises every change, and only counts it otherwise', () => {
    const observers = [segment(0, 0, 0, [seen(12, 2, 'a', 2, 2, 'a0'), seen(55, 5, 'b', 3, 3, 'b0')])];
    const strict = checkElection(cleanOperations(), observers, withCommitted(cleanHistory, true));
    expect(strict.violations[0]!.message).toMatch(/skipped 1 leader state\(s\) .* e\.g\. E\/a \(created at 2\) = "a1"/);
    const lenient = checkElection(cleanOperations(), observers, withCommitted(cleanHistory, false));
    expect(lenient.violations).toEqual([]);
    expect(lenient.stats.observers[0]!.skipped).toBe(1);
  });

  it('fails on a stream that opens on a stale leader', () => {
    // Opened at 85, after B's proclaim at revision 6 returned (80): a0 is long gone.
    const observers = [segment(0, 0, 85, [seen(86, 2, 'a', 2, 2, 'a0')])];
    const result = checkElection(cleanOperations(), observers, withCommitted(cleanHistory));
    expect(result.violations[0]!.message).toMatch(/first saw E\/a .* but revision 6 had been reached before it opened and E\/b .*"b1".* led by then: a stale leader/);
  });

  it('fails on a campaign acknowledged while a key created earlier was alive', () => {
    // B's campaign returns at 15, but A still led at revision 3, and A's proclaim, called at 20, wrote 4.
    const ops = cleanOperations().map((o) => (o.input as ElectionInput).f === 'campaign' && (o.output as { key?: string }).key === 'E/b' ? { ...o, ret: 15 } : o);
    const result = checkElection(ops, [], withCommitted(cleanHistory));
    expect(result.ok).toBe(false);
    expect(result.violations).toEqual([
      {
        property: 'campaign',
        message: expect.stringMatching(/campaign #\d+ \(process 1.*was acknowledged with E\/b \(created at revision 3\) as leader, but between revisions 3 and 3 .* the leader was E\/a \(created at 2\).*; it led at revisions 5–6/),
      },
    ]);
  });

  it('fails on a campaign whose key never led (etcd-io/etcd#19597: etcd returns once the keys ahead are gone, even if its own went first)', () => {
    // d is created at 9 behind c and deleted at 10 without ever leading, yet its campaign returned.
    const ops = [...cleanOperations(), campaign(3, 100, 125, 'd', 9)];
    const full: WatchHistory = { revisions: [...cleanHistory.revisions, ...committed({ 9: [put('d', 'd0', 9)], 10: [del('d')] }).revisions] };
    const result = checkElection(ops, [], withCommitted(full));
    expect(result.violations).toEqual([{ property: 'campaign', message: expect.stringMatching(/E\/d \(created at revision 9\) as leader, but that key never led: it was deleted at revision 10 while a key created before it was alive .*; between revisions 9 and 10 the leader was E\/c \(created at 8\) at 9–10$/) }]);
  });

  it('fails on a proclaim acknowledged by a non-leader', () => {
    // B, still waiting behind A, proclaims at 4 and is acknowledged.
    const history = committed({ 2: [put('a', 'a0', 2)], 3: [put('b', 'b0', 3)], 4: [put('b', 'b-early', 3)], 5: [del('a')] });
    const ops = [campaign(0, 0, 10, 'a', 2), proclaim(1, 20, 30, 'b', 3, 'b-early', 4)];
    const result = checkElection(ops, [], withCommitted(history));
    expect(result.violations).toEqual([
      { property: 'proclaim', message: expect.stringMatching(/proclaim #\d+ .* of "b-early" by E\/b \(created at 3\) was acknowledged at revision 4, but the leader there was E\/a \(created at 2\).*: a proclaim by a non-leader/) },
    ]);
    // The lock model alone cannot see it (B never acquired); the committed history can.
  });

  it('fails on a proclaim missing from the committed history, and on a refused one found there', () => {
    const missing = checkElection([...cleanOperations(), proclaim(2, 130, 140, 'c', 8, 'c1', 9)], [], withCommitted(cleanHistory));
    expect(missing.violations[0]!.message).toMatch(/"c1" by E\/c .* acknowledged at revision 9, but the committed history has no put of that key there/);
    const history: WatchHistory = { revisions: [...cleanHistory.revisions, ...committed({ 9: [put('a', 'a-late', 2)] }).revisions] };
    const refused = checkElection(cleanOperations(), [], withCommitted(history));
    expect(refused.violations.map((v) => v.message).join('\n')).toMatch(/"a-late" by E\/a was refused \(UNKNOWN: election: not leader\) but is in the committed history at revision 9/);
  });

  it('fails on a resign acknowledged while its key lived on', () => {
    const ops = [...cleanOperations(), resign(2, 130, 140, 'c', 8, 9)];
    const result = checkElection(ops, [], withCommitted(cleanHistory));
    expect(result.violations).toEqual([{ property: 'resign', message: expect.stringMatching(/resign #\d+ .* of E\/c \(created at 8\) was acknowledged at revision 9, but the key lived until the end/) }]);
  });

  it('without the committed history still checks that observers agree', () => {
    const observers = [segment(0, 0, 0, [seen(12, 2, 'a', 2, 2, 'a0'), seen(55, 5, 'b', 3, 3, 'b0')]), segment(1, 0, 0, [seen(56, 5, 'b', 3, 3, 'b0'), seen(57, 5, 'a', 2, 2, 'a0')])];
    const result = checkElection([], observers);
    expect(result.violations).toEqual([{ property: 'observer', message: expect.stringMatching(/observers o0 and o1 disagree: o0 saw E\/a .* before E\/b .*; o1 saw E\/b .* before E\/a/) }]);
    expect(result.stats.leaders).toBe(-1);
    expect(checkElection([], cleanObservers()).ok).toBe(true);
  });

  it('maps to the lock model, which fails an older leader proclaiming after a newer one', () => {
    const ops = [campaign(0, 0, 10, 'a', 2), campaign(1, 5, 60, 'b', 3), proclaim(1, 70, 80, 'b', 3, 'b1', 6), proclaim(0, 90, 95, 'a', 2, 'a-late', 7)];
    const mapped = electionLockOperations(ops);
    expect(mapped.map((o) => o.input.f)).toEqual(['acquire', 'acquire', 'write', 'write']);
    expect(mapped[0]!.output).toEqual({ f: 'acquire', token: 2 });
    expect(checkLinearizability('lock', mapped).verdict).toBe('violation');
  });
});
