/**
 * Questions only a shard's leader can answer, asked over the peer transport's request channel
 * (no connection of their own). Two today: how far a learner's log is, which MemberPromote checks
 * on every shard as etcd checks it on its leader; and the shard's configuration as the leader
 * applied it, which a member removing itself reads (the leader stops replicating to it once it
 * applies the removal, so its own replica may never learn that it is done). JSON: these are rare
 * administrative calls.
 *
 * Refusal codes: `bad-query` (not JSON, or an op's fields malformed), `unknown-query` (an op this
 * build does not know), `wrong-shard`, `not-leader`. A leader of an older build refuses an op it
 * does not know with `bad-query`: the asker, whose queries are well-formed, reads either code as
 * "the leader cannot answer this yet" (etcd's `not capable`), never as an answer.
 */
import type { ConfState } from '../../raft/index.js';
import type { ShardStatus } from '../runtime/index.js';
import { dkvError } from '../errors.js';
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

type LeaderQuery = LearnerProgressQuery | ConfigQuery;

export interface LearnerProgress {
  /** The learner's match index on the leader (0 if the leader does not track it). */
  readonly match: number;
  readonly lastIndex: number;
}

/** A shard's members as its leader's applied configuration holds them (joint halves included). */
export interface GroupConfig {
  readonly voters: readonly number[];
  readonly votersOutgoing: readonly number[];
  readonly learners: readonly number[];
  readonly learnersNext: readonly number[];
}

/** Ids one list of an answered configuration may hold: far above any cluster's size, a bound on what is parsed. */
export const groupConfigIdsMax = 1024;

/** What answering needs of the node: its shards' status. */
export interface LeaderQueryHost {
  hasShard(shard: number): boolean;
  status(shard: number): Pick<ShardStatus, 'progress' | 'lastIndex' | 'config' | 'lead'>;
}

/** What asking needs of the peer transport. */
export type LeaderQueryTransport = Pick<PeerTransport, 'request'>;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A query as received: refused unless it is one this build answers, with every field well-formed. */
function parseQuery(payload: Uint8Array): LeaderQuery {
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
    default:
      throw new PeerRequestRefusal('unknown-query', `unknown query op ${String(fields.op).slice(0, 64)}`);
  }
}

function groupConfigOf(config: ConfState): GroupConfig {
  return { voters: [...config.voters], votersOutgoing: [...config.votersOutgoing], learners: [...config.learners], learnersNext: [...config.learnersNext] };
}

/** The leader's answer to a query from a peer; refuses with `not-leader` when this node does not lead. */
export function answerLeaderQuery(host: LeaderQueryHost, payload: Uint8Array): Uint8Array {
  const query = parseQuery(payload);
  if (!host.hasShard(query.shard)) throw new PeerRequestRefusal('wrong-shard', `shard ${query.shard} is not hosted here`);
  const status = host.status(query.shard);
  if (status.progress === undefined) throw new PeerRequestRefusal('not-leader', `not the leader of shard ${query.shard}`);
  const answer: LearnerProgress | GroupConfig =
    query.op === 'learner-progress' ? { match: status.progress.get(query.member)?.match ?? 0, lastIndex: status.lastIndex } : groupConfigOf(status.config);
  return encoder.encode(JSON.stringify(answer));
}

/**
 * Asks `shard`'s leader, as this node knows it. Fails with etcd's `no leader` when none is known
 * or it cannot be asked, `request timed out` when it does not answer in time, and `not capable`
 * when it runs a build that does not know the query.
 */
async function askLeader(host: LeaderQueryHost, transport: LeaderQueryTransport, query: LeaderQuery, timeoutMs: number): Promise<Uint8Array> {
  const lead = host.status(query.shard).lead;
  if (lead === 0) throw dkvError('no-leader');
  try {
    return await transport.request(lead, encoder.encode(JSON.stringify(query)), { timeoutMs });
  } catch (error) {
    if (!(error instanceof PeerRequestError)) throw error;
    if (error.code === 'timeout') throw dkvError('timeout');
    // A leader of an older build cannot answer: the check cannot be made until it is upgraded.
    if (error.code === 'unsupported') throw dkvError('not-capable', `member ${lead.toString(16)} does not answer leader queries`);
    const refusal = error.refusal?.code;
    if (refusal === 'unknown-query' || refusal === 'bad-query') throw dkvError('not-capable', `member ${lead.toString(16)} does not answer a ${query.op} query`);
    throw dkvError('no-leader');
  }
}

/**
 * A learner's progress on `shard` as its leader sees it: read here when this node leads, asked of
 * the leader otherwise.
 */
export async function learnerProgress(host: LeaderQueryHost, transport: LeaderQueryTransport, shard: number, member: number, timeoutMs: number): Promise<LearnerProgress> {
  const status = host.status(shard);
  if (status.progress !== undefined) return { match: status.progress.get(member)?.match ?? 0, lastIndex: status.lastIndex };
  return parseProgress(await askLeader(host, transport, { op: 'learner-progress', shard, member }, timeoutMs));
}

/**
 * `shard`'s configuration as its leader applied it: read here when this node leads, asked of the
 * leader otherwise.
 */
export async function leaderGroupConfig(host: LeaderQueryHost, transport: LeaderQueryTransport, shard: number, timeoutMs: number): Promise<GroupConfig> {
  const status = host.status(shard);
  if (status.progress !== undefined) return groupConfigOf(status.config);
  return parseGroupConfig(await askLeader(host, transport, { op: 'config', shard }, timeoutMs));
}

/** Whether `id` is in `config` in any role (a voter of either joint half, a learner now or next). */
export function inGroupConfig(config: GroupConfig, id: number): boolean {
  return config.voters.includes(id) || config.votersOutgoing.includes(id) || config.learners.includes(id) || config.learnersNext.includes(id);
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
 * The leader's answer, checked: four lists of member ids, none of them missing or holding
 * anything else (a list missing is refused, never read as "not a member").
 */
export function parseGroupConfig(answer: Uint8Array): GroupConfig {
  const parsed = parseJson(answer, 'config') as Record<string, unknown> | null;
  const ids = (value: unknown): value is number[] =>
    Array.isArray(value) && value.length <= groupConfigIdsMax && value.every((id) => typeof id === 'number' && Number.isSafeInteger(id) && id > 0);
  if (parsed === null || typeof parsed !== 'object' || !ids(parsed.voters) || !ids(parsed.votersOutgoing) || !ids(parsed.learners) || !ids(parsed.learnersNext)) {
    throw dkvError('internal', 'the leader answered a config query without its lists of member ids');
  }
  return { voters: parsed.voters, votersOutgoing: parsed.votersOutgoing, learners: parsed.learners, learnersNext: parsed.learnersNext };
}
