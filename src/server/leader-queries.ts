/**
 * Questions only a shard's leader can answer, asked over the peer transport's request channel
 * (no connection of their own). Today: how far a learner's log is, which MemberPromote checks on
 * every shard as etcd checks it on its leader. JSON: these are rare administrative calls.
 */
import type { NodeRuntime } from '../runtime/index.js';
import { dkvError } from '../errors.js';
import { PeerRequestError, PeerRequestRefusal, type PeerTransport } from './peer/index.js';

interface LearnerProgressQuery {
  readonly op: 'learner-progress';
  readonly shard: number;
  readonly member: number;
}

export interface LearnerProgress {
  /** The learner's match index on the leader (0 if the leader does not track it). */
  readonly match: number;
  readonly lastIndex: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The leader's answer to a query from a peer; refuses with `not-leader` when this node does not lead. */
export function answerLeaderQuery(runtime: NodeRuntime, payload: Uint8Array): Uint8Array {
  let query: Partial<LearnerProgressQuery>;
  try {
    query = JSON.parse(decoder.decode(payload)) as Partial<LearnerProgressQuery>;
  } catch {
    throw new PeerRequestRefusal('bad-query', 'the query is not JSON');
  }
  if (query.op !== 'learner-progress' || !Number.isSafeInteger(query.shard) || !Number.isSafeInteger(query.member)) {
    throw new PeerRequestRefusal('bad-query', 'unknown or malformed query');
  }
  if (!runtime.hasShard(query.shard!)) throw new PeerRequestRefusal('wrong-shard', `shard ${query.shard} is not hosted here`);
  const status = runtime.status(query.shard!);
  if (status.progress === undefined) throw new PeerRequestRefusal('not-leader', `not the leader of shard ${query.shard}`);
  const answer: LearnerProgress = { match: status.progress.get(query.member!)?.match ?? 0, lastIndex: status.lastIndex };
  return encoder.encode(JSON.stringify(answer));
}

/**
 * A learner's progress on `shard` as its leader sees it: read here when this node leads, asked of
 * the leader otherwise. Fails with etcd's `no leader` when none is known or it cannot be asked.
 */
export async function learnerProgress(runtime: NodeRuntime, transport: PeerTransport, shard: number, member: number, timeoutMs: number): Promise<LearnerProgress> {
  const status = runtime.status(shard);
  if (status.progress !== undefined) return { match: status.progress.get(member)?.match ?? 0, lastIndex: status.lastIndex };
  if (status.lead === 0) throw dkvError('no-leader');
  const query: LearnerProgressQuery = { op: 'learner-progress', shard, member };
  let answer: Uint8Array;
  try {
    answer = await transport.request(status.lead, encoder.encode(JSON.stringify(query)), { timeoutMs });
  } catch (error) {
    if (!(error instanceof PeerRequestError)) throw error;
    if (error.code === 'timeout') throw dkvError('timeout');
    // A leader of an older build cannot answer: the check cannot be made until it is upgraded.
    if (error.code === 'unsupported') throw dkvError('not-capable');
    throw dkvError('no-leader');
  }
  return parseProgress(answer);
}

/** The leader's answer, checked: anything else than two indexes is refused, never read as "ready". */
function parseProgress(answer: Uint8Array): LearnerProgress {
  let parsed: Partial<LearnerProgress>;
  try {
    parsed = JSON.parse(decoder.decode(answer)) as Partial<LearnerProgress>;
  } catch {
    throw dkvError('internal', 'the leader answered a progress query with something that is not JSON');
  }
  const index = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
  if (!index(parsed.match) || !index(parsed.lastIndex)) throw dkvError('internal', 'the leader answered a progress query without its indexes');
  return { match: parsed.match, lastIndex: parsed.lastIndex };
}
