/**
 * The election workload's check: etcd's election recipe (`v3electionpb.Election`) against the
 * store's committed history. Every candidate holds a session key `name/<lease hex>` under the
 * election's prefix; **the leader at revision r is the key under the prefix with the lowest
 * create revision alive at r**. From the committed history (every revision's events, read back
 * after the run) this derives the true sequence of leader states — a state per leader key and
 * value, i.e. a new one whenever the leader changes or its key is written — and each key's term
 * (the revisions it led).
 *
 * Input: the candidates' operations (`ElectionInput`/`ElectionOutput` in `../history.ts`:
 * campaign, proclaim, resign, with call/return times) and the observers' Observe streams (one
 * `ObserverSegment` per stream; an observer reopens its stream on another member when it breaks,
 * and what changed between two segments is that observer's gap).
 *
 * Properties (each violation names its property and gives the revisions, keys and observer):
 * 1. `one-leader`: at any revision at most one leader — no two live keys share the lowest create
 *    revision (and the committed history is consistent: a new key is created at its revision, a
 *    rewritten key keeps its create revision).
 * 2. `campaign`: every acknowledged Campaign's key led at a revision the campaign can have been
 *    acknowledged at. Campaign's header carries the revision of the txn that joined the queue (the
 *    key's creation), not of the moment it won, so that moment is bounded from real time: no
 *    earlier than the key's creation and any revision an operation (or an observed leader)
 *    returned before the campaign was called; no later than the revision of any operation called
 *    after the campaign returned (less one if that operation wrote it). The key's term must meet
 *    that range — a campaign acknowledged while a key created earlier was alive throughout fails.
 * 3. `observer`: every observer's sequence of leader states (key, create revision, mod revision,
 *    value) is a subsequence of the true sequence, in order: never a state that did not lead,
 *    never one again or older within a stream, never an older one after reopening (a reopened
 *    stream may repeat the state it last saw and may have missed states in its gap), and a
 *    reopened stream starts no older than what had been committed before it opened. All
 *    observers agree: no two saw two states in opposite orders (checked also without the
 *    committed history). With `observeComplete` (DKV, whose Observe sends every change of leader
 *    or value), a stream that skips a state is a violation; otherwise skips are only counted
 *    (etcd's recipe re-reads the leader after a deletion and may miss a short term).
 * 4. `proclaim`: every acknowledged Proclaim wrote its value to its leader key at the revision it
 *    was acknowledged at, while that key led; a refused one is not in the history. `resign`: an
 *    acknowledged Resign leaves its key gone at the revision it was acknowledged at.
 *
 * Without the committed history only the observers' agreement is checked.
 *
 * Pure: imports only types; malformed input (an acknowledged campaign without a revision) throws a
 * TypeError.
 */
import type { ElectionInput, ElectionOutput, LockInput, LockOutput, Operation } from '../history.js';
import type { WatchHistory } from './watch.js';

/** Violations listed (the count is always complete). */
export const electionViolationsListedMax = 50;

/** One leader an Observe stream delivered (etcd's LeaderResponse). */
export interface ObservedLeader {
  /** When the client received it, in ms since the run began. */
  readonly at: number;
  /** The response header's revision (DKV: the change's; etcd: the store's when it sent it). */
  readonly revision: number;
  readonly key: string;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly value: string;
}

/** One Observe stream of an observer, from its open to its end. */
export interface ObserverSegment {
  /** The observer (0, 1, …). */
  readonly observer: number;
  /** Its streams in order (0, 1, …). */
  readonly segment: number;
  readonly node: string;
  /** When the stream was opened, in ms since the run began. */
  readonly opened: number;
  readonly closed?: number;
  /** `broken`: an error; `ended`: the server ended it; `client-closed`: the run ended. */
  readonly end: 'broken' | 'ended' | 'client-closed';
  readonly error?: string;
  readonly leaders: readonly ObservedLeader[];
}

export type ElectionProperty = 'one-leader' | 'campaign' | 'observer' | 'proclaim' | 'resign';

export interface ElectionViolation {
  readonly property: ElectionProperty;
  readonly message: string;
}

export interface ObserverStats {
  readonly observer: number;
  readonly segments: number;
  /** Leader states delivered (every response). */
  readonly states: number;
  /** Distinct leader keys (key and create revision) seen. */
  readonly leaders: number;
  /** Times the leader key changed in what it saw, across its streams. */
  readonly leaderChanges: number;
  /** States of the true sequence it skipped inside one stream (-1: no committed history). */
  readonly skipped: number;
}

export interface ElectionStats {
  readonly campaigns: number;
  readonly campaignsWon: number;
  readonly campaignsFailed: number;
  readonly campaignsUnknown: number;
  readonly proclaims: number;
  readonly proclaimsAcknowledged: number;
  readonly proclaimsRefused: number;
  readonly proclaimsUnknown: number;
  readonly resigns: number;
  readonly resignsAcknowledged: number;
  /** Leader terms in the committed history (-1: not read). */
  readonly leaders: number;
  /** Changes of leader key in the committed history (-1: not read). */
  readonly leaderChanges: number;
  /** Leader states (a term's values) in the committed history (-1: not read). */
  readonly states: number;
  /** Operations, observed leaders and committed election revisions looked at. */
  readonly eventsChecked: number;
  readonly observers: readonly ObserverStats[];
}

export interface ElectionResult {
  readonly ok: boolean;
  readonly violations: readonly ElectionViolation[];
  /** Violations beyond `electionViolationsListedMax`, not listed. */
  readonly omitted: number;
  readonly stats: ElectionStats;
}

export interface ElectionCheckOptions {
  /** The committed history read back after the run, and the election's key prefix (`name/`). */
  readonly committed?: { readonly history: WatchHistory; readonly prefix: string };
  /** Observe streams promise every change of leader or value (DKV): a skip is a violation. */
  readonly observeComplete?: boolean;
}

type ElectionOp = Operation<ElectionInput, ElectionOutput>;

function isElectionOp(op: Operation): op is ElectionOp {
  const f = (op.input as { f?: unknown }).f;
  return f === 'campaign' || f === 'proclaim' || f === 'resign';
}

class Violations {
  readonly listed: ElectionViolation[] = [];
  count = 0;

  add(property: ElectionProperty, message: string): void {
    this.count++;
    if (this.listed.length < electionViolationsListedMax) this.listed.push({ property, message });
  }
}

// ---- The true sequence ------------------------------------------------------------------------

/** A leader state: a key leading with one value, from revision `from`. */
interface LeaderState {
  readonly index: number;
  readonly key: string;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly value: string;
  readonly from: number;
}

/** Revisions a key (one generation: key and create revision) was alive or led: [start, end). */
interface Span {
  readonly start: number;
  end: number;
}

interface Timeline {
  readonly states: LeaderState[];
  /** Where the leader changes: from `revision` on, `state` leads (-1: nobody). Ascending. */
  readonly points: { readonly revision: number; readonly state: number }[];
  /** By generation (`key@create`). */
  readonly terms: Map<string, Span>;
  readonly lives: Map<string, Span>;
  /** Puts under the prefix by revision: key → value and create revision. */
  readonly putsAt: Map<number, Map<string, { readonly value: string; readonly createRevision: number }>>;
  /** Revisions with an event of a key (`revision key`). */
  readonly touched: Set<string>;
  /** `key value` of every put under the prefix. */
  readonly valuesPut: Map<string, number>;
  readonly stateIds: Map<string, number>;
  /** Election revisions looked at. */
  revisions: number;
}

const generation = (key: string, createRevision: number): string => `${key}@${createRevision}`;
const stateId = (key: string, createRevision: number, modRevision: number): string => `${key}@${createRevision}@${modRevision}`;

function describeState(state: LeaderState | undefined): string {
  if (state === undefined) return 'nobody';
  return `${state.key} (created at ${state.createRevision}) = ${JSON.stringify(state.value)} (written at ${state.modRevision}; state #${state.index}, from revision ${state.from})`;
}

interface Alive {
  createRevision: number;
  modRevision: number;
  value: string;
}

/** The lowest-created live keys (more than one: two leaders). */
function leadersOf(alive: ReadonlyMap<string, Alive>): string[] {
  let lowest = Infinity;
  let keys: string[] = [];
  for (const [key, kv] of alive) {
    if (kv.createRevision < lowest) {
      lowest = kv.createRevision;
      keys = [key];
    } else if (kv.createRevision === lowest) keys.push(key);
  }
  return keys.sort();
}

function buildTimeline(history: WatchHistory, prefix: string, violations: Violations): Timeline {
  const decoder = new TextDecoder();
  const timeline: Timeline = {
    states: [],
    points: [],
    terms: new Map(),
    lives: new Map(),
    putsAt: new Map(),
    touched: new Set(),
    valuesPut: new Map(),
    stateIds: new Map(),
    revisions: 0,
  };
  const alive = new Map<string, Alive>();
  let leaderGeneration: string | undefined;
  let current = -1;
  for (const { revision, events } of history.revisions) {
    let touched = false;
    for (const event of events) {
      const key = decoder.decode(event.key);
      if (!key.startsWith(prefix)) continue;
      touched = true;
      timeline.touched.add(`${revision} ${key}`);
      const existing = alive.get(key);
      if (event.type === 'delete') {
        if (existing === undefined) continue;
        alive.delete(key);
        timeline.lives.get(generation(key, existing.createRevision))!.end = revision;
        continue;
      }
      const value = decoder.decode(event.value ?? new Uint8Array(0));
      const createRevision = existing?.createRevision ?? revision;
      if (event.createRevision !== createRevision) {
        const was = existing === undefined ? `it is created there` : `it was created at ${existing.createRevision}`;
        violations.add('one-leader', `revision ${revision}: the committed history puts ${key} with create revision ${event.createRevision}, but ${was}`);
      }
      if (existing === undefined) timeline.lives.set(generation(key, createRevision), { start: revision, end: Infinity });
      alive.set(key, { createRevision, modRevision: revision, value });
      const puts = timeline.putsAt.get(revision) ?? new Map<string, { value: string; createRevision: number }>();
      puts.set(key, { value, createRevision });
      timeline.putsAt.set(revision, puts);
      timeline.valuesPut.set(`${key} ${value}`, revision);
    }
    if (!touched) continue;
    timeline.revisions++;
    const leaders = leadersOf(alive);
    if (leaders.length > 1) {
      violations.add('one-leader', `revision ${revision}: ${leaders.length} leaders — ${leaders.join(', ')} all created at revision ${alive.get(leaders[0]!)!.createRevision}`);
    }
    const leaderKey = leaders[0];
    const leader = leaderKey === undefined ? undefined : alive.get(leaderKey)!;
    const nowLeading = leaderKey === undefined ? undefined : generation(leaderKey, leader!.createRevision);
    if (nowLeading !== leaderGeneration) {
      if (leaderGeneration !== undefined) timeline.terms.get(leaderGeneration)!.end = revision;
      if (nowLeading !== undefined) timeline.terms.set(nowLeading, { start: revision, end: Infinity });
      leaderGeneration = nowLeading;
    }
    const last = current < 0 ? undefined : timeline.states[current];
    if (leaderKey === undefined || leader === undefined) {
      if (current >= 0) {
        timeline.points.push({ revision, state: -1 });
        current = -1;
      }
      continue;
    }
    if (last !== undefined && last.key === leaderKey && last.createRevision === leader.createRevision && last.modRevision === leader.modRevision) continue;
    const state: LeaderState = { index: timeline.states.length, key: leaderKey, createRevision: leader.createRevision, modRevision: leader.modRevision, value: leader.value, from: revision };
    timeline.states.push(state);
    timeline.stateIds.set(stateId(state.key, state.createRevision, state.modRevision), state.index);
    timeline.points.push({ revision, state: state.index });
    current = state.index;
  }
  return timeline;
}

/** The state leading at revision r (-1: nobody). */
function stateAt(timeline: Timeline, revision: number): number {
  const { points } = timeline;
  let lo = 0;
  let hi = points.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (points[mid]!.revision <= revision) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found < 0 ? -1 : points[found]!.state;
}

/** The oldest state an Observe stream opened after revision r may start with. */
function oldestStateAfter(timeline: Timeline, revision: number): number {
  const state = stateAt(timeline, revision);
  if (state >= 0) return state;
  // Nobody led at r: the next leader comes after every state that began at or before r.
  let before = -1;
  for (const point of timeline.points) {
    if (point.revision > revision) break;
    if (point.state >= 0) before = point.state;
  }
  return before + 1;
}

// ---- Real time and revisions ------------------------------------------------------------------

/** A revision the store had reached by `ret` (and, when `upper`, had not passed at `call`). */
interface Witness {
  readonly call: number;
  readonly ret: number;
  readonly revision: number;
  /** It can bound later revisions from above (a linearizable operation, not an observed leader). */
  readonly upper: boolean;
  /** It wrote the revision (so the store was below it when it was called). */
  readonly wrote: boolean;
}

function witnessesOf(ops: readonly ElectionOp[], observers: readonly ObserverSegment[], timeline: Timeline): Witness[] {
  const witnesses: Witness[] = [];
  for (const op of ops) {
    if (op.status !== 'ok' || op.ret === undefined || op.output === undefined) continue;
    const key = op.output.f === 'campaign' ? op.output.key : op.input.f === 'campaign' ? undefined : op.input.key;
    const revision = op.output.revision;
    if (key === undefined || !Number.isSafeInteger(revision)) throw new TypeError(`election check: op ${op.id} has no revision or key`);
    witnesses.push({ call: op.call, ret: op.ret, revision, upper: true, wrote: timeline.touched.has(`${revision} ${key}`) });
  }
  for (const segment of observers) {
    for (const leader of segment.leaders) witnesses.push({ call: leader.at, ret: leader.at, revision: leader.revision, upper: false, wrote: false });
  }
  return witnesses;
}

/** Bounds, from real time, on the store's revision inside an interval [call, ret]. */
class RevisionBounds {
  private readonly byRet: { ret: number; max: number }[];
  private readonly byCall: { call: number; min: number }[];

  constructor(witnesses: readonly Witness[]) {
    const byRet = [...witnesses].sort((a, b) => a.ret - b.ret);
    let max = 0;
    this.byRet = byRet.map((w) => ({ ret: w.ret, max: (max = Math.max(max, w.revision)) }));
    const byCall = witnesses.filter((w) => w.upper).sort((a, b) => b.call - a.call);
    let min = Infinity;
    this.byCall = byCall.map((w) => ({ call: w.call, min: (min = Math.min(min, w.wrote ? w.revision - 1 : w.revision)) })).reverse();
  }

  /** The largest revision some witness returned strictly before `time` (0: none). */
  below(time: number): number {
    let lo = 0;
    let hi = this.byRet.length - 1;
    let found = 0;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.byRet[mid]!.ret < time) {
        found = this.byRet[mid]!.max;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  /** The smallest revision bound of a witness called strictly after `time` (Infinity: none). */
  above(time: number): number {
    let lo = 0;
    let hi = this.byCall.length - 1;
    let found = Infinity;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.byCall[mid]!.call > time) {
        found = this.byCall[mid]!.min;
        hi = mid - 1;
      } else lo = mid + 1;
    }
    return found;
  }
}

// ---- The properties ---------------------------------------------------------------------------

function describeOp(op: ElectionOp): string {
  return `#${op.id} (process ${op.process}${op.node === undefined ? '' : ` via ${op.node}`}, ${op.call}–${op.ret ?? '?'} ms)`;
}

function leaderName(state: LeaderState | undefined): string {
  return state === undefined ? 'nobody' : `${state.key} (created at ${state.createRevision})`;
}

/** Who led at revisions lo..hi, a term at a time: "K (created at c) at 3–12; nobody at 13–13; …". */
function leadersBetween(timeline: Timeline, lo: number, hi: number): string {
  const parts: string[] = [];
  let from = lo;
  let current = timeline.states[stateAt(timeline, lo)];
  for (const point of timeline.points) {
    if (point.revision <= lo) continue;
    if (point.revision > hi) break;
    const next = timeline.states[point.state];
    if (leaderName(next) !== leaderName(current)) {
      parts.push(`${leaderName(current)} at ${from}–${point.revision - 1}`);
      from = point.revision;
    }
    current = next;
  }
  parts.push(`${leaderName(current)} at ${from}–${hi}`);
  return parts.join('; ');
}

function checkCampaigns(ops: readonly ElectionOp[], timeline: Timeline, bounds: RevisionBounds, head: number, violations: Violations): void {
  for (const op of ops) {
    if (op.input.f !== 'campaign' || op.status !== 'ok' || op.output?.f !== 'campaign' || op.ret === undefined) continue;
    const { key, rev } = op.output;
    const lo = Math.max(rev, bounds.below(op.call));
    const hi = Math.min(bounds.above(op.ret), head);
    const term = timeline.terms.get(generation(key, rev));
    const acknowledged = `campaign ${describeOp(op)} was acknowledged with ${key} (created at revision ${rev}) as leader`;
    if (lo > hi) {
      violations.add('campaign', `${acknowledged}, but revisions went backwards around it: revision ${lo} was reached before its call, yet an operation called after its return saw ${hi}`);
    } else if (term === undefined) {
      const life = timeline.lives.get(generation(key, rev));
      const why =
        life === undefined
          ? 'it is not in the committed history'
          : life.end === Infinity
            ? 'it was still waiting when the history ends'
            : `it was deleted at revision ${life.end} while a key created before it was alive (a campaign must fail once its own key is gone)`;
      violations.add('campaign', `${acknowledged}, but that key never led: ${why}; between revisions ${lo} and ${hi} the leader was ${leadersBetween(timeline, lo, hi)}`);
    } else if (term.end - 1 < lo || term.start > hi) {
      const led = `it led at revisions ${term.start}–${term.end === Infinity ? 'end' : term.end - 1}`;
      violations.add('campaign', `${acknowledged}, but between revisions ${lo} and ${hi} (when it can have been acknowledged) the leader was ${leadersBetween(timeline, lo, hi)}; ${led}`);
    }
  }
}

function checkProclaimsAndResigns(ops: readonly ElectionOp[], timeline: Timeline, violations: Violations): void {
  for (const op of ops) {
    const input = op.input;
    if (input.f === 'proclaim') {
      const written = timeline.valuesPut.get(`${input.key} ${input.value}`);
      if (op.status === 'fail' && written !== undefined) {
        violations.add('proclaim', `proclaim ${describeOp(op)} of ${JSON.stringify(input.value)} by ${input.key} was refused (${op.error ?? 'no error recorded'}) but is in the committed history at revision ${written}`);
      }
      if (op.status !== 'ok' || op.output?.f !== 'proclaim') continue;
      const at = op.output.revision;
      const put = timeline.putsAt.get(at)?.get(input.key);
      const by = `proclaim ${describeOp(op)} of ${JSON.stringify(input.value)} by ${input.key} (created at ${input.rev})`;
      if (put === undefined || put.value !== input.value || put.createRevision !== input.rev) {
        violations.add('proclaim', `${by} was acknowledged at revision ${at}, but the committed history ${put === undefined ? 'has no put of that key there' : `puts ${JSON.stringify(put.value)} (created at ${put.createRevision}) there`}`);
        continue;
      }
      const leader = timeline.states[stateAt(timeline, at)];
      if (leader === undefined || leader.key !== input.key || leader.createRevision !== input.rev) {
        violations.add('proclaim', `${by} was acknowledged at revision ${at}, but the leader there was ${describeState(leader)}: a proclaim by a non-leader`);
      }
    } else if (input.f === 'resign' && op.status === 'ok' && op.output?.f === 'resign') {
      const at = op.output.revision;
      const life = timeline.lives.get(generation(input.key, input.rev));
      if (life !== undefined && life.start <= at && at < life.end) {
        violations.add('resign', `resign ${describeOp(op)} of ${input.key} (created at ${input.rev}) was acknowledged at revision ${at}, but the key lived until ${life.end === Infinity ? 'the end' : `revision ${life.end}`}`);
      }
    }
  }
}

interface Seen {
  readonly segment: ObserverSegment;
  readonly leader: ObservedLeader;
}

function observerName(segment: ObserverSegment): string {
  return `observer o${segment.observer} (stream ${segment.segment} on ${segment.node}, opened at ${segment.opened} ms)`;
}

function describeSeen(leader: ObservedLeader): string {
  return `${leader.key} (created at ${leader.createRevision}) = ${JSON.stringify(leader.value)} (written at ${leader.modRevision}; received at ${leader.at} ms, header revision ${leader.revision})`;
}

/** One observer against the true sequence; returns the states it skipped inside its streams. */
function checkObserver(segments: readonly ObserverSegment[], timeline: Timeline, bounds: RevisionBounds, complete: boolean, violations: Violations): number {
  let previous: { index: number; seen: Seen } | undefined;
  let skipped = 0;
  for (const segment of segments) {
    let first = true;
    for (const leader of segment.leaders) {
      const index = timeline.stateIds.get(stateId(leader.key, leader.createRevision, leader.modRevision));
      const state = index === undefined ? undefined : timeline.states[index];
      if (index === undefined || state === undefined) {
        const life = timeline.lives.get(generation(leader.key, leader.createRevision));
        const why = life === undefined ? 'that key never existed' : `that key never led with that value (it lived at revisions ${life.start}–${life.end === Infinity ? 'end' : life.end - 1})`;
        violations.add('observer', `${observerName(segment)} saw ${describeSeen(leader)}, but ${why}`);
        continue;
      }
      if (state.value !== leader.value) {
        violations.add('observer', `${observerName(segment)} saw ${describeSeen(leader)}, but that state's value is ${JSON.stringify(state.value)}`);
      }
      if (first) {
        first = false;
        const committedBefore = bounds.below(segment.opened);
        const oldest = oldestStateAfter(timeline, committedBefore);
        if (index < oldest) {
          violations.add('observer', `${observerName(segment)} first saw ${describeState(state)}, but revision ${committedBefore} had been reached before it opened and ${describeState(timeline.states[oldest])} led by then: a stale leader`);
        }
      }
      const sameStream = previous !== undefined && previous.seen.segment === segment;
      if (previous !== undefined && (index < previous.index || (index === previous.index && sameStream))) {
        const earlier = timeline.states[previous.index];
        const what = index === previous.index ? 'the same leader state again' : state.key === earlier?.key ? 'an older value after a newer one' : 'a leader come back after its successor';
        violations.add('observer', `${observerName(segment)} saw ${describeState(state)} after ${describeState(earlier)} (seen ${sameStream ? 'on the same stream' : `on stream ${previous.seen.segment.segment} on ${previous.seen.segment.node}`}): ${what}; the true order is the other way`);
      } else if (previous !== undefined && sameStream && index > previous.index + 1) {
        const missed = index - previous.index - 1;
        skipped += missed;
        if (complete) {
          violations.add('observer', `${observerName(segment)} skipped ${missed} leader state(s) between ${describeState(timeline.states[previous.index])} and ${describeState(state)}, e.g. ${describeState(timeline.states[previous.index + 1])}: an Observe stream must deliver every change`);
        }
      }
      if (previous === undefined || index >= previous.index) previous = { index, seen: { segment, leader } };
    }
  }
  return skipped;
}

/** Every pair of observers saw the states both saw in the same order. */
function checkAgreement(byObserver: ReadonlyMap<number, readonly ObserverSegment[]>, violations: Violations): void {
  const sequences = [...byObserver.entries()].map(([observer, segments]) => ({
    observer,
    seen: segments.flatMap((segment) => segment.leaders.map((leader) => ({ id: stateId(leader.key, leader.createRevision, leader.modRevision), leader }))),
  }));
  for (let i = 0; i < sequences.length; i++) {
    const a = sequences[i]!;
    const position = new Map<string, number>();
    a.seen.forEach((s, p) => position.set(s.id, p));
    for (let j = i + 1; j < sequences.length; j++) {
      const b = sequences[j]!;
      let last: { at: number; leader: ObservedLeader } | undefined;
      for (const s of b.seen) {
        const at = position.get(s.id);
        if (at === undefined) continue;
        if (last !== undefined && at < last.at) {
          violations.add(
            'observer',
            `observers o${a.observer} and o${b.observer} disagree: o${a.observer} saw ${describeSeen(a.seen[at]!.leader)} before ${describeSeen(a.seen[last.at]!.leader)}; o${b.observer} saw ${describeSeen(last.leader)} before ${describeSeen(s.leader)}`,
          );
          break;
        }
        last = { at, leader: s.leader };
      }
    }
  }
}

function leaderChangesOf(leaders: readonly { readonly key: string; readonly createRevision: number }[]): number {
  let changes = 0;
  for (let i = 1; i < leaders.length; i++) {
    if (generation(leaders[i]!.key, leaders[i]!.createRevision) !== generation(leaders[i - 1]!.key, leaders[i - 1]!.createRevision)) changes++;
  }
  return changes;
}

function observerStats(observer: number, segments: readonly ObserverSegment[], skipped: number): ObserverStats {
  const seen = segments.flatMap((s) => s.leaders);
  return {
    observer,
    segments: segments.length,
    states: seen.length,
    leaders: new Set(seen.map((l) => generation(l.key, l.createRevision))).size,
    leaderChanges: leaderChangesOf(seen),
    skipped,
  };
}

function count(ops: readonly ElectionOp[], f: ElectionInput['f'], status?: Operation['status']): number {
  return ops.filter((op) => op.input.f === f && (status === undefined || op.status === status)).length;
}

export function checkElection(operations: readonly Operation[], observers: readonly ObserverSegment[], options: ElectionCheckOptions = {}): ElectionResult {
  const violations = new Violations();
  const ops = operations.filter(isElectionOp);
  const byObserver = new Map<number, ObserverSegment[]>();
  for (const segment of [...observers].sort((a, b) => a.observer - b.observer || a.segment - b.segment)) {
    const list = byObserver.get(segment.observer) ?? [];
    list.push(segment);
    byObserver.set(segment.observer, list);
  }
  let timeline: Timeline | undefined;
  const skippedBy = new Map<number, number>();
  if (options.committed !== undefined) {
    const { history, prefix } = options.committed;
    timeline = buildTimeline(history, prefix, violations);
    const head = history.headRevision ?? history.revisions[history.revisions.length - 1]?.revision ?? 1;
    const bounds = new RevisionBounds(witnessesOf(ops, observers, timeline));
    checkCampaigns(ops, timeline, bounds, head, violations);
    checkProclaimsAndResigns(ops, timeline, violations);
    for (const [observer, segments] of byObserver) skippedBy.set(observer, checkObserver(segments, timeline, bounds, options.observeComplete === true, violations));
  }
  checkAgreement(byObserver, violations);
  const observed = observers.reduce((n, s) => n + s.leaders.length, 0);
  return {
    ok: violations.count === 0,
    violations: violations.listed,
    omitted: violations.count - violations.listed.length,
    stats: {
      campaigns: count(ops, 'campaign'),
      campaignsWon: count(ops, 'campaign', 'ok'),
      campaignsFailed: count(ops, 'campaign', 'fail'),
      campaignsUnknown: count(ops, 'campaign', 'info'),
      proclaims: count(ops, 'proclaim'),
      proclaimsAcknowledged: count(ops, 'proclaim', 'ok'),
      proclaimsRefused: count(ops, 'proclaim', 'fail'),
      proclaimsUnknown: count(ops, 'proclaim', 'info'),
      resigns: count(ops, 'resign'),
      resignsAcknowledged: count(ops, 'resign', 'ok'),
      leaders: timeline === undefined ? -1 : timeline.terms.size,
      leaderChanges: timeline === undefined ? -1 : leaderChangesOf(timeline.states),
      states: timeline === undefined ? -1 : timeline.states.length,
      eventsChecked: ops.length + observed + (timeline?.revisions ?? 0),
      observers: [...byObserver.entries()].map(([observer, segments]) => observerStats(observer, segments, skippedBy.get(observer) ?? -1)),
    },
  };
}

/**
 * The election's operations as the `lock` model's: a won campaign acquires with its key's create
 * revision as token (leaders' create revisions only grow), a proclaim is a write fenced by it (once
 * a newer leader has proclaimed, an older one's proclaim must not succeed), a resign releases.
 */
export function electionLockOperations(operations: readonly Operation[]): Operation<LockInput, LockOutput>[] {
  const out: Operation<LockInput, LockOutput>[] = [];
  for (const op of operations) {
    if (!isElectionOp(op)) continue;
    const { input, output, ...rest } = op;
    const lock = input.election;
    let mapped: { input: LockInput; output?: LockOutput };
    if (input.f === 'campaign') mapped = { input: { f: 'acquire', lock }, ...(output?.f === 'campaign' ? { output: { f: 'acquire', token: output.rev } } : {}) };
    else if (input.f === 'proclaim') {
      mapped = { input: { f: 'write', lock, token: input.rev, value: input.value }, ...(output?.f === 'proclaim' ? { output: { f: 'write', accepted: true, revision: output.revision } } : {}) };
    } else mapped = { input: { f: 'release', lock, token: input.rev }, ...(output?.f === 'resign' ? { output: { f: 'release' } } : {}) };
    out.push({ ...rest, ...mapped });
  }
  return out;
}
