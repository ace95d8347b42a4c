/**
 * Questions only a shard's leader can answer, asked over the peer transport's request channel
 * (no connection of their own): how far a learner's log is, which MemberPromote checks on every
 * shard as etcd checks it on its leader; and the shard's configuration as the leader applied it,
 * which a member removing itself reads (the leader stops replicating to it once it applies the
 * removal, so its own replica may never learn that it is done). And two the placement loop asks
 * to even out leaderships: which data shards a member leads (`leading`, any member answers), and
 * a leader handing one over to a voter that is in touch (`transfer-leader`). JSON: these are rare
 * administrative calls.
 *
 * Refusal codes: `bad-query` (not JSON, or an op's fields malformed), `unknown-query` (an op this
 * build does not know), `wrong-shard`, `not-leader`. A leader of an older build refuses an op it
 * does not know with `bad-query`: the asker, whose queries are well-formed, reads either code as
 * "the leader cannot answer this yet" (etcd's `not capable`), never as an answer.
 */
import type { ConfState } from '../../raft/index.js';
import type { ShardStatus } from '../runtime/index.js';
import { type DkvError, dkvError, isDkvError } from '../errors.js';
import { PeerRequestError, PeerRequestRefusal, type PeerTransport } from './peer/index.js';

interface LearnerProgressQuery {
  readonly op: 'learner-progress';
  readonly shard: number;
  readonly member: number;
}

interface ConfigQuery {
  readonly op: 'config';
  readonly shard: number;
}

interface LeadingQuery {
  readonly op: 'leading';
}

interface TransferLeaderQuery {
  readonly op: 'transfer-leader';
  readonly shard: number;
  readonly to: number;
}

type LeaderQuery = LearnerProgressQuery | ConfigQuery;
type MemberQuery = LeaderQuery | LeadingQuery | TransferLeaderQuery;

/** Shards one `leading` answer may list: a bound on what is parsed. */
export const leadingShardsMax = 100_000;

export interface LearnerProgress {
  /** The learner's match index on the leader (0 if the leader does not track it). */
  readonly match: number;
  readonly lastIndex: number;
}

/** A shard's members as its leader's applied configuration holds them (joint halves included). */
export interface GroupConfig {
  /** The leader's applied index: the configuration is the one of its state at this index. */
  readonly applied: number;
  readonly voters: readonly number[];
  readonly votersOutgoing: readonly number[];
  readonly learners: readonly number[];
  readonly learnersNext: readonly number[];
}

/** Ids one list of an answered configuration may hold: far above any cluster's size, a bound on what is parsed. */
export const groupConfigIdsMax = 1024;

/** Characters of an unknown query's op quoted back in the refusal. */
export const unknownOpQuotedCharsMax = 64;

/** What answering and asking need of the node: its shards' status. */
export interface LeaderQueryHost {
  hasShard(shard: number): boolean;
  status(shard: number): Pick<ShardStatus, 'id' | 'progress' | 'lastIndex' | 'applied' | 'config' | 'lead'> & { readonly leadTransferee?: number };
}

/** What answering the placement loop's questions needs besides (without it they are refused as unknown). */
export interface MemberQueryHost extends LeaderQueryHost {
  /** The data shards (not the meta shard) this node leads. */
  leadingShards?(): number[];
  /** Starts handing `shard`'s leadership to `to` (Raft catches it up first, and gives up after an election timeout). */
  transferLeader?(shard: number, to: number): void;
  /**
   * Whether `shard`'s group is quiesced here (idle: no heartbeats, so what its leader last heard
   * of each member is stale, and a hand-over holds up no write).
   */
  quiesced?(shard: number): boolean;
}

/** What asking needs of the peer transport. */
export type LeaderQueryTransport = Pick<PeerTransport, 'request'>;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A query as received: refused unless it is one this build answers, with every field well-formed. */
function parseQuery(payload: Uint8Array): MemberQuery {
  let query: unknown;
  try {
    query = JSON.parse(decoder.decode(payload));
  } catch {
    throw new PeerRequestRefusal('bad-query', 'the query is not JSON');
  }
  if (typeof query !== 'object' || query === null || Array.isArray(query)) throw new PeerRequestRefusal('bad-query', 'the query is not an object');
  const fields = query as { op?: unknown; shard?: unknown; member?: unknown };
  const id = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
  switch (fields.op) {
    case 'learner-progress':
      if (!id(fields.shard) || !id(fields.member)) throw new PeerRequestRefusal('bad-query', 'a learner-progress query needs a shard and a member');
      return { op: 'learner-progress', shard: fields.shard, member: fields.member };
    case 'config':
      if (!id(fields.shard)) throw new PeerRequestRefusal('bad-query', 'a config query needs a shard');
      return { op: 'config', shard: fields.shard };
    case 'leading':
      return { op: 'leading' };
    case 'transfer-leader': {
      const to = (fields as { to?: unknown }).to;
      if (!id(fields.shard) || !id(to) || to === 0) throw new PeerRequestRefusal('bad-query', 'a transfer-leader query needs a shard and a member');
      return { op: 'transfer-leader', shard: fields.shard, to };
    }
    default:
      throw new PeerRequestRefusal('unknown-query', `unknown query op ${String(fields.op).slice(0, unknownOpQuotedCharsMax)}`);
  }
}

function groupConfigOf(status: Pick<ShardStatus, 'applied' | 'config'>): GroupConfig {
  const config: ConfState = status.config;
  return { applied: status.applied, voters: [...config.voters], votersOutgoing: [...config.votersOutgoing], learners: [...config.learners], learnersNext: [...config.learnersNext] };
}

/**
 * The answer to a query from a peer; refuses with `not-leader` when a query for a shard's leader
 * reaches a node that does not lead it, `not-in-touch` when a leadership would go to a member that
 * is not a caught-up voter the leader heard from lately, and `transfer-in-progress` while one is
 * being handed over already.
 */
export function answerLeaderQuery(host: MemberQueryHost, payload: Uint8Array): Uint8Array {
  const query = parseQuery(payload);
  if ((query.op === 'leading' && host.leadingShards === undefined) || (query.op === 'transfer-leader' && host.transferLeader === undefined)) {
    throw new PeerRequestRefusal('unknown-query', `unknown query op ${query.op}`);
  }
  if (query.op === 'leading') return encoder.encode(JSON.stringify({ shards: host.leadingShards!() }));
  if (!host.hasShard(query.shard)) throw new PeerRequestRefusal('wrong-shard', `shard ${query.shard} is not hosted here`);
  const status = host.status(query.shard);
  if (status.progress === undefined) throw new PeerRequestRefusal('not-leader', `not the leader of shard ${query.shard}`);
  if (query.op === 'transfer-leader') {
    // A hand-over under way (membership-sync's, move-leader's) is not overridden.
    if ((status.leadTransferee ?? 0) !== 0) throw new PeerRequestRefusal('transfer-in-progress', `shard ${query.shard}'s leadership is being handed over already`);
    // An idle (quiesced) group's progress is stale: a voter is enough, and Raft catches it up.
    const idle = host.quiesced?.(query.shard) === true;
    if (!(idle ? isPlainVoter(status, query.to) : inTouchVoter(status, query.to))) {
      throw new PeerRequestRefusal('not-in-touch', `member ${query.to.toString(16)} is not a voter of shard ${query.shard} heard from lately (${progressText(status, query.to)})`);
    }
    host.transferLeader!(query.shard, query.to);
    return encoder.encode(JSON.stringify({ started: true }));
  }
  const answer: LearnerProgress | GroupConfig =
    query.op === 'learner-progress' ? { match: status.progress.get(query.member)?.match ?? 0, lastIndex: status.lastIndex } : groupConfigOf(status);
  return encoder.encode(JSON.stringify(answer));
}

/**
 * Whether `to` may take `status`'s leadership at once: a voter (of a configuration that is not
 * joint) this leader heard from lately, replicating and holding the log up to the applied index.
 * A member behind (a restarted one fetching a snapshot) would keep the leader refusing writes
 * until Raft gives the hand-over up, an election timeout later.
 */
export function inTouchVoter(status: Pick<ShardStatus, 'id' | 'progress' | 'config' | 'applied'>, to: number): boolean {
  if (!isPlainVoter(status, to)) return false;
  const progress = status.progress?.get(to);
  return progress !== undefined && !progress.isLearner && progress.recentActive && progress.state === 'replicate' && progress.match >= status.applied;
}

/** What this leader knows of `to`, for a refusal's message. */
function progressText(status: Pick<ShardStatus, 'progress' | 'applied'>, to: number): string {
  const progress = status.progress?.get(to);
  if (progress === undefined) return 'no progress kept for it';
  return `${progress.state}, match ${progress.match} of applied ${status.applied}${progress.recentActive ? '' : ', not heard from this election timeout'}`;
}

/** Whether `to` is another voter of `status`'s configuration, which is not joint. */
function isPlainVoter(status: Pick<ShardStatus, 'id' | 'config'>, to: number): boolean {
  return to !== status.id && status.config.votersOutgoing.length === 0 && status.config.voters.includes(to);
}

/**
 * The data shards member `to` leads, as it answers (undefined when it does not answer in time or
 * runs a build that does not know the question: the caller then does not balance).
 */
export async function leadingShardsOf(transport: LeaderQueryTransport, to: number, timeoutMs: number): Promise<number[] | undefined> {
  let answer: Uint8Array;
  try {
    answer = await transport.request(to, encoder.encode(JSON.stringify({ op: 'leading' })), { timeoutMs });
  } catch (error) {
    if (error instanceof PeerRequestError) return undefined;
    throw error;
  }
  const parsed = parseJson(answer, 'leading') as { shards?: unknown } | null;
  const shards = parsed?.shards;
  if (!Array.isArray(shards) || shards.length > leadingShardsMax || !shards.every(isIndex)) throw dkvError('internal', 'a member answered a leading query without its list of shards');
  return shards;
}

/** Asks member `from`, which leads `shard`, to hand its leadership to `to`; fails with the refusal's message. */
export async function askTransferLeader(transport: LeaderQueryTransport, from: number, shard: number, to: number, timeoutMs: number): Promise<void> {
  try {
    await transport.request(from, encoder.encode(JSON.stringify({ op: 'transfer-leader', shard, to })), { timeoutMs });
  } catch (error) {
    if (!(error instanceof PeerRequestError)) throw error;
    throw new Error(`member ${from.toString(16)} did not hand shard ${shard}'s leadership to ${to.toString(16)}: ${error.refusal?.message ?? error.message}`);
  }
}

/** A failed question to one node, as the asker reports it. */
function askFailure(error: unknown, to: number, query: LeaderQuery): DkvError {
  if (!(error instanceof PeerRequestError)) throw error;
  if (error.code === 'timeout') return dkvError('timeout');
  // A node of an older build cannot answer: the check cannot be made until it is upgraded.
  if (error.code === 'unsupported') return dkvError('not-capable', `member ${to.toString(16)} does not answer leader queries`);
  const refusal = error.refusal?.code;
  if (refusal === 'unknown-query' || refusal === 'bad-query') return dkvError('not-capable', `member ${to.toString(16)} does not answer a ${query.op} query`);
  return dkvError('no-leader');
}

/**
 * Of the failures of one question, the one to report. Put to the known leader: a build that
 * cannot answer first. Put to every voter (no leader known): an old build's refusal says nothing
 * of the leader, which may only have been slow, so `not capable` is reported only when every
 * voter gave it (the leader is an old build too); a timeout or `no leader` is tried again.
 */
const failureRank: Readonly<Record<'leader' | 'voters', Readonly<Partial<Record<DkvError['code'], number>>>>> = {
  leader: { 'not-capable': 0, timeout: 1 },
  voters: { timeout: 0, 'no-leader': 1 },
};

/**
 * Asks `shard`'s leader as this node knows it. When it knows none, `whenNoLeader: 'ask-voters'`
 * asks every other voter of its configuration at once (the leader answers, the others refuse with
 * `not-leader`); 'fail' fails at once. Fails with etcd's `no leader` when no leader answers,
 * `request timed out` when it did not answer in time, and `not capable` when it runs a build that
 * does not know the query.
 */
async function askLeader(host: LeaderQueryHost, transport: LeaderQueryTransport, query: LeaderQuery, timeoutMs: number, whenNoLeader: 'fail' | 'ask-voters'): Promise<Uint8Array> {
  const status = host.status(query.shard);
  const voters = (): number[] => [...new Set([...status.config.voters, ...status.config.votersOutgoing])].filter((id) => id !== status.id);
  if (status.lead === 0) return askSome(whenNoLeader === 'ask-voters' ? voters() : [], 'voters', transport, query, timeoutMs);
  try {
    return await askSome([status.lead], 'leader', transport, query, timeoutMs);
  } catch (error) {
    // The leader this node knows says it leads no more, and this node may never hear of the next
    // one (removed from the group, its follower quiesced): the other voters are asked.
    if (whenNoLeader !== 'ask-voters' || !isDkvError(error) || error.code !== 'no-leader') throw error;
    return askSome(voters().filter((id) => id !== status.lead), 'voters', transport, query, timeoutMs);
  }
}

async function askSome(asked: readonly number[], whom: 'leader' | 'voters', transport: LeaderQueryTransport, query: LeaderQuery, timeoutMs: number): Promise<Uint8Array> {
  if (asked.length === 0) throw dkvError('no-leader');
  const payload = encoder.encode(JSON.stringify(query));
  const answers = asked.map((to) =>
    transport.request(to, payload, { timeoutMs }).catch((error: unknown) => {
      throw askFailure(error, to, query);
    }),
  );
  try {
    return await Promise.any(answers);
  } catch (error) {
    if (!(error instanceof AggregateError)) throw error;
    const rank = failureRank[whom];
    const failures = (error.errors as DkvError[]).sort((a, b) => (rank[a.code] ?? 2) - (rank[b.code] ?? 2));
    throw failures[0]!;
  }
}

/**
 * A learner's progress on `shard` as its leader sees it: read here when this node leads, asked of
 * the leader otherwise.
 */
export async function learnerProgress(host: LeaderQueryHost, transport: LeaderQueryTransport, shard: number, member: number, timeoutMs: number): Promise<LearnerProgress> {
  const status = host.status(shard);
  if (status.progress !== undefined) return { match: status.progress.get(member)?.match ?? 0, lastIndex: status.lastIndex };
  return parseProgress(await askLeader(host, transport, { op: 'learner-progress', shard, member }, timeoutMs, 'fail'));
}

/**
 * `shard`'s configuration as its leader applied it: read here when this node leads, asked of the
 * leader otherwise — of every other voter when this node knows no leader, as a member whose
 * removal the leader applied soon does not (the leader no longer sends it heartbeats, and it
 * campaigns in vain). An answer from a leader that was deposed meanwhile is still sound for this
 * purpose: a configuration is applied only once committed, and a removed id never comes back.
 */
export async function leaderGroupConfig(host: LeaderQueryHost, transport: LeaderQueryTransport, shard: number, timeoutMs: number): Promise<GroupConfig> {
  const status = host.status(shard);
  if (status.progress !== undefined) return groupConfigOf(status);
  return parseGroupConfig(await askLeader(host, transport, { op: 'config', shard }, timeoutMs, 'ask-voters'));
}

/** Whether `id` is in `config` in any role (a voter of either joint half, a learner now or next). */
export function inGroupConfig(config: GroupConfig, id: number): boolean {
  return config.voters.includes(id) || config.votersOutgoing.includes(id) || config.learners.includes(id) || config.learnersNext.includes(id);
}

/**
 * Whether `member`, which this node's own configuration of `shard` holds, has left the shard: its
 * leader's configuration lacks it, and is at least as new as this node's (a leader that has not
 * applied as far as this node yet may not have applied the member's addition either; that is no
 * answer, and the member counts as still in).
 */
export async function leftGroupAtLeader(host: LeaderQueryHost, transport: LeaderQueryTransport, shard: number, member: number, timeoutMs: number): Promise<boolean> {
  const appliedHere = host.status(shard).applied;
  const config = await leaderGroupConfig(host, transport, shard, timeoutMs);
  return config.applied >= appliedHere && !inGroupConfig(config, member);
}

function parseJson(answer: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(decoder.decode(answer));
  } catch {
    throw dkvError('internal', `the leader answered a ${what} query with something that is not JSON`);
  }
}

const isIndex = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

/** The leader's answer, checked: anything else than two indexes is refused, never read as "ready". */
export function parseProgress(answer: Uint8Array): LearnerProgress {
  const parsed = parseJson(answer, 'progress') as Partial<LearnerProgress> | null;
  if (parsed === null || typeof parsed !== 'object' || !isIndex(parsed.match) || !isIndex(parsed.lastIndex)) {
    throw dkvError('internal', 'the leader answered a progress query without its indexes');
  }
  return { match: parsed.match, lastIndex: parsed.lastIndex };
}

/**
 * The leader's answer, checked: its applied index and four lists of member ids, none of them
 * missing or holding anything else (a list missing is refused, never read as "not a member").
 */
export function parseGroupConfig(answer: Uint8Array): GroupConfig {
  const parsed = parseJson(answer, 'config') as Record<string, unknown> | null;
  const ids = (value: unknown): value is number[] =>
    Array.isArray(value) && value.length <= groupConfigIdsMax && value.every((id) => typeof id === 'number' && Number.isSafeInteger(id) && id > 0);
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed) || !isIndex(parsed.applied)) {
    throw dkvError('internal', 'the leader answered a config query without its applied index');
  }
  if (!ids(parsed.voters) || !ids(parsed.votersOutgoing) || !ids(parsed.learners) || !ids(parsed.learnersNext)) {
    throw dkvError('internal', 'the leader answered a config query without its lists of member ids');
  }
  return { applied: parsed.applied, voters: parsed.voters, votersOutgoing: parsed.votersOutgoing, learners: parsed.learners, learnersNext: parsed.learnersNext };
}
