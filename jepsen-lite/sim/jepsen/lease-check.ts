/**
 * The lease checker: what the lease engine promises, checked over a recorded lease history (the
 * holders' requests in simulated real time, and when each lease's grant, renewals and revocation
 * were first applied anywhere). Pure: the same history gives the same answer.
 *
 * The promise: a lease whose holder keeps it alive is never revoked while its holder can reach a
 * quorum; a lease whose holder stops is revoked within TTL + one election timeout + one tick once
 * a leader exists. Checked as:
 *
 * - safety: a lease expires no earlier than every acknowledged grant or renewal of it allows — for
 *   one sent at s, not before s + TTL (the holder believed it valid until then). Exact, without
 *   slack, as long as any two nodes' clocks differ by at most one election timeout (the run keeps
 *   them so; see leases.ts): a renewal reaching the leader at a ≥ s is stamped with the leader's
 *   clock a + o₁ (or more: stamped times never decrease), so its deadline is D ≥ a + o₁ + TTL.
 *   The leader of that term expires it only once its own clock passes D, at a real time
 *   ≥ a + TTL. A leader of a later term, whose clock is off by o₂, adds one election timeout:
 *   it expires no earlier than D + ET − o₂ ≥ a + TTL + (ET − (o₂ − o₁)) ≥ s + TTL.
 *   A lease revoked by a Revoke is revoked only after its holder asked.
 * - liveness: every lease is revoked once its last deadline passes on a leader that holds office
 *   after the cluster healed (and disk writes slowed before healing finished) — within one tick
 *   of that leader, the expiry wheel's resolution and the Expire command's commit
 *   (`livenessSlackMs`). Leadership is observed, not assumed: when no leader stays in office long
 *   enough, that is a failure too.
 * - keep-alive: a lease its holder renewed with a renewal sent after healing, and went on
 *   renewing, is not revoked before the clients stop (renewals get through a healthy cluster).
 */
import { leaseLimits } from '../../../src/engines/lease/index.js';
import type { HeldLease, LeaseRequest } from './lease-holders.js';

/** One leader's time in office (on the data shard): from taking office to learning of another or crashing. */
export interface LeaderSpan {
  readonly node: number;
  readonly term: number;
  readonly from: number;
  /** Absent: still in office when the run ended. */
  to?: number;
}

/** A deadline a grant or renewal set, as first applied anywhere. */
export interface LeaseDeadline {
  /** Simulated ms of the first application. */
  readonly at: number;
  readonly index: number;
  /** On the clock of the leader that stamped it (ms). */
  readonly deadlineMs: number;
  /** The term of the entry that set it. */
  readonly term: number;
}

export interface LeaseTimeline {
  readonly lease: string;
  readonly deadlines: LeaseDeadline[];
  /** The first application anywhere of the command that revoked it. */
  revoked?: { readonly at: number; readonly index: number; readonly kind: 'expired' | 'revoked' };
}

export interface LeaseHistory {
  readonly electionTimeoutMs: number;
  /** Each node's clock offset from simulated time (ms) and tick period (ms). */
  readonly clockOffsetsMs: ReadonlyMap<number, number>;
  readonly tickPeriodsMs: ReadonlyMap<number, number>;
  /** When every fault healed (simulated ms). */
  readonly healedAt: number;
  /** Past healing, the cluster may still finish disk writes started under faults until then. */
  readonly settledAt: number;
  /** When the holders stopped. */
  readonly clientsStoppedAt: number;
  readonly endedAt: number;
  readonly held: ReadonlyMap<string, HeldLease>;
  readonly timelines: ReadonlyMap<string, LeaseTimeline>;
  readonly requests: readonly LeaseRequest[];
  readonly leaders: readonly LeaderSpan[];
}

/**
 * Past the moment a leader's clock reaches a lease's deadline, what may pass before the Expire is
 * applied somewhere (simulated ms), besides that leader's tick period: the wheel finds it at its
 * next 10 ms grid time (`leaseWheelResolutionMs`); the Expire, proposed in that tick, commits after
 * the leader's and a follower's saves (at most 5 ms each, one more if a save is in flight) and a
 * round trip (at most 5 ms each way), and the leader applies it in the cycle that learns the commit.
 */
export const leaseCommitMsMax = 40;
export const livenessSlackMs = leaseLimits.leaseWheelResolutionMs + leaseCommitMsMax;

export interface LeaseCheckResult {
  readonly failures: string[];
  /** Expiries and revocations checked against the holders' acknowledgements. */
  readonly revocationsChecked: number;
  /** Over expiries of acknowledged leases: how long after the last acknowledgement ran out each came (ms; smallest). */
  readonly safetyMarginMsMin: number | undefined;
  /** Leases acknowledged by a renewal sent after healing (the keep-alive check looked at them). */
  readonly keptAliveChecked: number;
  readonly livenessChecked: number;
  /** For each lease whose liveness bound was checked: how long before its bound it was revoked (ms). */
  readonly livenessMarginsMs: number[];
}

export function checkLeases(history: LeaseHistory): LeaseCheckResult {
  const failures: string[] = [];
  let revocationsChecked = 0;
  let safetyMarginMsMin: number | undefined;
  let keptAliveChecked = 0;
  let livenessChecked = 0;
  const livenessMarginsMs: number[] = [];
  const acked = new Map<string, LeaseRequest[]>();
  const revokesAsked = new Map<string, number>();
  for (const r of history.requests) {
    if ((r.kind === 'grant' || r.kind === 'renew') && r.result === 'ok') {
      let list = acked.get(r.lease);
      if (list === undefined) acked.set(r.lease, (list = []));
      list.push(r);
    }
    if (r.kind === 'revoke' && !revokesAsked.has(r.lease)) revokesAsked.set(r.lease, r.sent);
  }
  const spans = clipped(history.leaders, history.endedAt);
  for (const timeline of history.timelines.values()) {
    const held = history.held.get(timeline.lease);
    const name = `lease ${timeline.lease}${held === undefined ? '' : ` (holder ${held.holder}, ${held.behaviour}, TTL ${held.ttlMs} ms)`}`;
    if (held === undefined) {
      failures.push(`${name}: granted, but no holder asked for it`);
      continue;
    }
    const revoked = timeline.revoked;
    if (revoked !== undefined) {
      revocationsChecked++;
      if (revoked.kind === 'expired') {
        for (const r of acked.get(timeline.lease) ?? []) {
          safetyMarginMsMin = Math.min(safetyMarginMsMin ?? Infinity, revoked.at - (r.sent + held.ttlMs));
          if (r.sent > revoked.at) {
            failures.push(`${name}: ${r.kind} ${r.id} sent at ${r.sent} acknowledged after the lease expired at ${revoked.at}`);
          } else if (revoked.at < r.sent + held.ttlMs) {
            failures.push(
              `${name}: expired at ${revoked.at} (entry ${revoked.index}), ${r.sent + held.ttlMs - revoked.at} ms before its holder's ${r.kind} ` +
                `${r.id} sent at ${r.sent} through n${r.node} (acknowledged at ${r.answered}) ran out at ${r.sent + held.ttlMs}`,
            );
          }
        }
      } else {
        const asked = revokesAsked.get(timeline.lease);
        if (asked === undefined || asked > revoked.at) failures.push(`${name}: revoked at ${revoked.at} (entry ${revoked.index}) without its holder asking`);
      }
    }
    if ((acked.get(timeline.lease) ?? []).some((r) => r.sent >= history.healedAt)) keptAliveChecked++;
    const keptAlive = keptAliveFailure(history, name, held, timeline, acked.get(timeline.lease) ?? []);
    if (keptAlive !== undefined) failures.push(keptAlive);
    const bound = livenessBound(history, spans, timeline);
    if (bound === undefined) continue;
    if (typeof bound === 'string') {
      failures.push(`${name}: ${bound}`);
      continue;
    }
    livenessChecked++;
    if (revoked === undefined || revoked.at > bound.byMs) {
      failures.push(`${name}: ${revoked === undefined ? 'never revoked' : `revoked at ${revoked.at}`}, but due by ${bound.byMs} (${bound.why})`);
    } else livenessMarginsMs.push(bound.byMs - revoked.at);
  }
  return { failures, revocationsChecked, safetyMarginMsMin, keptAliveChecked, livenessChecked, livenessMarginsMs };
}

/**
 * Leader spans, each ended once a leader of a higher term is in office (a deposed leader may not
 * know yet; one whose votes arrived late may even take office after it).
 */
function clipped(leaders: readonly LeaderSpan[], endedAt: number): LeaderSpan[] {
  return leaders.map((span) => {
    let to = span.to ?? endedAt;
    for (const other of leaders) if (other.term > span.term && other.from < to) to = Math.max(span.from, other.from);
    return { ...span, to };
  });
}

/**
 * When lease `timeline` must have been revoked by: its last deadline D (term T) is due on a leader
 * of term T' once that leader's clock reads D, plus one election timeout if T < T'. Counting
 * from when that leader is in office after the cluster settled (and the deadline was applied),
 * the first leader that stays in office until the deadline is due there plus its tick and
 * `livenessSlackMs` must have revoked it by then. Undefined when no deadline was applied (the
 * grant never was) or a revocation came first from a holder's Revoke; a string when no leader
 * stayed long enough (the cluster never settled under one).
 */
function livenessBound(history: LeaseHistory, spans: readonly LeaderSpan[], timeline: LeaseTimeline): { byMs: number; why: string } | string | undefined {
  const last = timeline.deadlines[timeline.deadlines.length - 1];
  if (last === undefined) return undefined;
  if (timeline.revoked?.kind === 'revoked') return undefined;
  for (const span of spans) {
    const offset = history.clockOffsetsMs.get(span.node) ?? 0;
    const tick = history.tickPeriodsMs.get(span.node) ?? 0;
    const effective = last.deadlineMs + (last.term < span.term ? history.electionTimeoutMs : 0);
    const due = Math.max(span.from, history.settledAt, last.at, effective - offset);
    const byMs = due + tick + livenessSlackMs;
    if (byMs > span.to!) {
      // Revoked under this leader already: it was in time.
      if (timeline.revoked !== undefined && timeline.revoked.at <= span.to!) return undefined;
      continue;
    }
    if (span.term < last.term) continue;
    return { byMs, why: `deadline ${last.deadlineMs} of term ${last.term} (entry ${last.index}); n${span.node} leader of term ${span.term} from ${span.from}, clock ${offset >= 0 ? '+' : ''}${offset} ms` };
  }
  if (timeline.revoked !== undefined) return undefined;
  return `not revoked, and no leader held office from ${history.settledAt} long enough to expire it (its deadline ${last.deadlineMs}, term ${last.term})`;
}

/**
 * A lease the holder renewed with a renewal sent after the cluster healed, and was still renewing,
 * must not be revoked before the clients stop.
 */
function keptAliveFailure(history: LeaseHistory, name: string, held: HeldLease, timeline: LeaseTimeline, acked: readonly LeaseRequest[]): string | undefined {
  const revoked = timeline.revoked;
  if (revoked === undefined || revoked.kind !== 'expired' || revoked.at > history.clientsStoppedAt) return undefined;
  const stillRenewing = held.stoppedAt === undefined || held.stopReason === 'lost' || held.stoppedAt > revoked.at;
  if (!stillRenewing) return undefined;
  const afterHeal = acked.find((r) => r.sent >= history.healedAt && r.sent <= revoked.at);
  if (afterHeal === undefined) return undefined;
  return `${name}: expired at ${revoked.at} on a healed cluster while its holder kept renewing it (renewal ${afterHeal.id} sent at ${afterHeal.sent} was acknowledged)`;
}
