/**
 * `dkv shard list|describe|split|move`: the shards of a running cluster (dkv.v1.Admin's ShardList,
 * and ShardStatus asked of each endpoint on its own, as `dkv endpoint status` asks Status), the
 * online split of one, and the move of a placed shard's replica.
 */
import { type Decoded, type EtcdChannel, longsAsStrings, methodCodec } from '../client/index.js';
import { errorTable } from '../errors.js';
import { UsageError } from './args.js';
import { targets } from './endpoint.js';
import { goJson, headerJson, humanBytes, idHex, int, list, renderTable, text } from './output.js';
import { parseMemberId } from './member.js';
import { type Remote, exitFailure, failureMessage, remoteOptionsHelp, runRemote } from './remote.js';
import { shardJson, shardRow, showKey } from './store.js';

export const shardHelp = `Usage: dkv shard list [options]
       dkv shard describe ID [--cluster] [--hash-kv] [options]
       dkv shard split ID [--at KEY] [options]
       dkv shard move ID --from MEMBER --to MEMBER [options]

Each store's keys are split into shards, each one Raft group hosted on every member, or on the
members a store's replica count placed it on (its replicas, which move puts elsewhere). Shard 0 is
the meta shard (store "(meta)"): it holds the members, the stores and the shard map, and owns no
client key. Needs the root role while auth is enabled.

  list      every shard, the meta shard and the default store's included, in id order: id,
            store, [start, end), epoch, replicas (none listed: every member), and the leader
            and Raft term as the answering node sees them (0 when it does not host the shard),
            after a linearizable read of the map (-w table: a table)
  describe  shard ID as the map has it (the row list prints), then a row per endpoint of that
            endpoint's own replica: member ID, whether it hosts the shard, Raft state (leader,
            follower, candidate, pre-candidate), whether it is a learner, Raft term, the leader
            it knows, commit index, applied index, and for a data shard its store's revision,
            compact revision, size (what the quota counts), size in use, live keys and alarms
            ("-": none, or not hosted) (-w table: two tables); with --hash-kv also each
            replica's HashKV of its keys at its revision, in decimal as "etcdctl endpoint
            hashkv" prints it (replicas at one applied index show the same hash; it costs each
            a pass over the shard's data). A shard unknown to the map fails with "dkv: shard not found"
  split     split shard ID of a mounted store in two, online, at KEY (the child's first key;
            default: the shard's middle live key): every replica makes the child from its own
            data, both halves get a new epoch; prints both rows once the child has a leader (or
            as the call's deadline nears). Requests for the moved keys fail with a retryable
            error meanwhile (tens of ms). Refused, changing nothing, for the meta shard and the
            default store's shard, a KEY not strictly inside the shard, a shard holding leases
            (a Lock's or Campaign's session lease), fewer than two keys (without --at). A split
            that stopped half way is finished by running it again with the same KEY (store
            repair, on the meta shard's leader, also finishes it)
  move      move shard ID's replica from member MEMBER to member MEMBER (hex, as "dkv member
            list" prints them), online: the shard's leader adds the new member as a learner,
            which catches up from a snapshot, promotes it, then the map lists it in the old
            member's place (a new epoch) and the group removes the old member, whose replica is
            then deleted. Prints the shard's row once the map lists the new member, or says the
            move goes on if --command-timeout ran out first (dkv shard list shows when it is
            done). Only a placed shard moves (a store created with --replicas); refused, changing
            nothing: a --from without a replica, a --to with one or not a voting member, a shard
            in a split, another move of the shard from another member under way (a move from the
            same member to another replaces one not finished)

A data shard's history is compacted with "dkv compact REV --shard ID" (to that shard's own
revision). ID is a shard id in decimal (0 to 2^53 - 1). Keys print as text, a byte outside printable
ASCII as \\xNN; an end of "(end)" means the end of the store's range, "-" an empty range (the
meta shard's).

Options:
  --cluster              describe: every member's client URLs (from the member list) instead
                         of --endpoints
  --hash-kv              describe: also each replica's HashKV (a column, or hash_kv in JSON)
  --at KEY               split: the split key, as UTF-8 (at most 4096 bytes; binary keys
                         through dkv.v1.Admin's ShardSplit)
  --from MEMBER          move: the member whose replica moves (hex id)
  --to MEMBER            move: the voting member it moves to (hex id)
${remoteOptionsHelp}
Exit status: 0 done (describe: every endpoint answered), 1 the server refused or an endpoint
could not be reached, 2 bad command line.
`;

const adminCodec = (method: string) => methodCodec('dkv.v1.Admin', method, longsAsStrings);

const shardOptions = { cluster: { type: 'boolean' }, 'hash-kv': { type: 'boolean' }, at: { type: 'string' }, from: { type: 'string' }, to: { type: 'string' } } as const;

/** etcd's AlarmType names (rpc.proto). */
const alarmNames: Readonly<Record<string, string>> = { '0': 'NONE', '1': 'NOSPACE', '2': 'CORRUPT' };

/** A shard id from the command line: decimal, a safe integer; a usage error otherwise. */
export function parseShardId(value: string | undefined, what = 'shard ID'): number {
  if (value === undefined || value === '') throw new UsageError(what === 'shard ID' ? 'shard describe needs the shard ID' : `${what} needs a shard ID`);
  const id = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(id)) throw new UsageError(`${what} must be a whole number from 0 to 2^53 - 1, got "${value}"`);
  return id;
}

/** Whether a shard owns no key (the meta shard: start and end both empty). */
const emptyRange = (s: Decoded): boolean => Buffer.isBuffer(s.end) && s.end.length === 0 && Buffer.isBuffer(s.start) && s.start.length === 0;

/** list's row: describe's map row with the store after the id. */
export function listRow(s: Decoded): string[] {
  const [id = '', start = '', end = '', ...rest] = shardRow(s);
  return emptyRange(s) ? [id, String(s.store), '-', '-', ...rest] : [id, String(s.store), start, end, ...rest];
}

export const listHeader = ['SHARD', 'STORE', 'START', 'END', 'EPOCH', 'REPLICAS', 'LEADER', 'RAFT TERM'];

/** split's rows: the parent's and the child's, as store describe prints a shard. */
const splitHeader = ['SHARD', 'START', 'END', 'EPOCH', 'REPLICAS', 'LEADER', 'RAFT TERM'];

const listJson = (s: Decoded): object => {
  const { id, ...rest } = shardJson(s) as { id: unknown };
  return { id, store: text(s.store), ...rest, end: Buffer.isBuffer(s.end) && s.end.length > 0 ? s.end : undefined };
};

export const statusHeader = ['ENDPOINT', 'ID', 'HOSTED', 'RAFT STATE', 'IS LEARNER', 'RAFT TERM', 'LEADER', 'COMMIT INDEX', 'APPLIED INDEX', 'REVISION', 'COMPACT REVISION', 'DB SIZE', 'DB SIZE IN USE', 'KEYS', 'ALARMS'];

/** "NOSPACE(8e9e05c52164694d)" per alarm, "-" for none. */
const alarmsText = (s: Decoded): string => {
  const alarms = s.alarms as Decoded[];
  return alarms.length === 0 ? '-' : alarms.map((a) => `${alarmNames[String(a.alarm)] ?? String(a.alarm)}(${idHex(a.memberID)})`).join(' ');
};

/** describe's row of one endpoint's ShardStatus (`hashKv`: asked for, one more column). */
export function statusRow(endpoint: string, s: Decoded, hashKv = false): string[] {
  const hosted = s.hosted === true;
  const figure = (value: unknown): string => (hosted ? String(value) : '-');
  return [
    endpoint,
    idHex((s.header as Decoded).member_id),
    String(hosted),
    hosted ? String(s.raft_state) : '-',
    String(s.is_learner === true),
    figure(s.raft_term),
    hosted ? (String(s.leader) === '0' ? '0' : idHex(s.leader)) : '-',
    figure(s.commit_index),
    figure(s.applied_index),
    figure(s.revision),
    figure(s.compact_revision),
    hosted ? humanBytes(Number(s.db_size)) : '-',
    hosted ? humanBytes(Number(s.db_size_in_use)) : '-',
    figure(s.key_count),
    alarmsText(s),
    ...(hashKv ? [hosted && s.store !== '(meta)' ? String(Number(s.hash_kv ?? 0)) : '-'] : []),
  ];
}

const statusJson = (s: Decoded, hashKv: boolean): object => ({
  header: headerJson(s.header),
  shard_id: int(s.shard_id),
  store: text(s.store),
  hosted: s.hosted === true ? true : undefined,
  raft_state: text(s.raft_state),
  is_learner: s.is_learner === true ? true : undefined,
  raft_term: int(s.raft_term),
  leader: int(s.leader),
  commit_index: int(s.commit_index),
  applied_index: int(s.applied_index),
  revision: int(s.revision),
  compact_revision: int(s.compact_revision),
  db_size: int(s.db_size),
  db_size_in_use: int(s.db_size_in_use),
  key_count: int(s.key_count),
  alarms: list(s.alarms, (a) => ({ memberID: int(a.memberID), alarm: int(a.alarm) })),
  hash_kv: hashKv ? int(s.hash_kv) : undefined,
});

export function shardCommand(args: string[]): Promise<number> {
  const formats = ['simple', 'json', 'table'] as const;
  return runRemote({ name: 'shard', help: shardHelp, options: shardOptions, formats }, args, async (remote, o, positionals) => {
    const [action, id, ...extra] = positionals;
    if (extra.length > 0) throw new UsageError(`too many arguments: ${extra.join(' ')}`);
    if (action !== 'describe' && o.cluster === true) throw new UsageError('--cluster applies to describe');
    if (action !== 'describe' && o['hash-kv'] === true) throw new UsageError('--hash-kv applies to describe');
    if (action !== 'split' && o.at !== undefined) throw new UsageError('--at applies to split');
    if (action !== 'move' && (o.from !== undefined || o.to !== undefined)) throw new UsageError('--from and --to apply to move');
    switch (action) {
      case 'list': {
        if (id !== undefined) throw new UsageError('shard list takes no arguments');
        const r = await remote.endpoints.unary(adminCodec('ShardList'), {}, { write: false });
        const shards = r.shards as Decoded[];
        if (remote.format === 'json') process.stdout.write(`${goJson({ header: headerJson(r.header), shards: list(shards, listJson) })}\n`);
        else if (remote.format === 'table') process.stdout.write(renderTable(listHeader, shards.map(listRow)));
        else process.stdout.write(shards.map((s) => `${listRow(s).join(', ')}\n`).join(''));
        return 0;
      }
      case 'describe':
        return describe(remote, parseShardId(id), o.cluster === true, o['hash-kv'] === true);
      case 'split': {
        const shardId = parseShardId(id, 'shard split');
        if (o.at === '') throw new UsageError('--at needs a key (leave it out for the middle key)');
        const request = o.at === undefined ? { shard_id: shardId } : { shard_id: shardId, at: Buffer.from(o.at) };
        const r = await remote.endpoints.unary(adminCodec('ShardSplit'), request, { write: true });
        const parent = r.parent as Decoded;
        const child = r.child as Decoded;
        if (remote.format === 'json') process.stdout.write(`${goJson({ header: headerJson(r.header), parent: shardJson(parent), child: shardJson(child) })}\n`);
        else if (remote.format === 'table') process.stdout.write(renderTable(splitHeader, [shardRow(parent), shardRow(child)]));
        else process.stdout.write(`Shard ${String(parent.id)} split at ${showKey(child.start)} into shards ${String(parent.id)} and ${String(child.id)}\n${[parent, child].map((s) => `${shardRow(s).join(', ')}\n`).join('')}`);
        return 0;
      }
      case 'move': {
        const shardId = parseShardId(id, 'shard move');
        if (o.from === undefined || o.to === undefined) throw new UsageError('shard move needs --from MEMBER and --to MEMBER');
        const request = { shard_id: shardId, from_member: parseMemberId(o.from), to_member: parseMemberId(o.to) };
        const r = await remote.endpoints.unary(adminCodec('ShardMove'), request, { write: true });
        const shard = r.shard as Decoded;
        const done = r.done === true;
        if (remote.format === 'json') process.stdout.write(`${goJson({ header: headerJson(r.header), shard: shardJson(shard), done })}\n`);
        else if (remote.format === 'table') process.stdout.write(renderTable(splitHeader, [shardRow(shard)]));
        else {
          const what = done ? `Shard ${String(shard.id)}'s replica moved from ${o.from} to ${o.to}` : `Shard ${String(shard.id)}'s replica is moving from ${o.from} to ${o.to} (not finished when the call ended; dkv shard list shows when it is)`;
          process.stdout.write(`${what}\n${shardRow(shard).join(', ')}\n`);
        }
        return 0;
      }
      default:
        throw new UsageError(action === undefined ? 'shard needs a subcommand: list, describe, split or move' : `unknown shard subcommand "${action}"`);
    }
  });
}

/** The map's view of shard `id` (after a linearizable read), then each endpoint's replica. */
async function describe(remote: Remote, id: number, cluster: boolean, hashKv: boolean): Promise<number> {
  const listed = await remote.endpoints.unary(adminCodec('ShardList'), {}, { write: false });
  const shard = (listed.shards as Decoded[]).find((s) => String(s.id) === String(id));
  if (shard === undefined) {
    // The server's refusal, as ShardStatus words it (a node whose map lags may still know it).
    await remote.endpoints.unary(adminCodec('ShardStatus'), { shard_id: id }, { write: false });
    throw new Error(`${errorTable['shard-not-found'].message}: no shard ${id} in the map`);
  }
  const endpoints = await targets(remote, cluster);
  const answers: Array<{ endpoint: string; status: Decoded }> = [];
  let failed = false;
  try {
    for (const { endpoint, channel } of endpoints) {
      try {
        answers.push({ endpoint, status: await statusOf(remote, channel, id, hashKv) });
      } catch (error) {
        failed = true;
        process.stderr.write(`dkv shard describe: failed to get shard ${id}'s status from endpoint ${endpoint} (${failureMessage(error)})\n`);
      }
    }
  } finally {
    for (const { channel } of endpoints) channel.close();
  }
  if (remote.format === 'json') {
    const statuses = answers.map(({ endpoint, status }) => ({ Endpoint: endpoint, Status: statusJson(status, hashKv) }));
    process.stdout.write(`${goJson({ header: headerJson(listed.header), shard: listJson(shard), statuses })}\n`);
  } else if (remote.format === 'table') {
    process.stdout.write(renderTable(listHeader, [listRow(shard)]));
    process.stdout.write(renderTable(hashKv ? [...statusHeader, 'HASH KV'] : statusHeader, answers.map(({ endpoint, status }) => statusRow(endpoint, status, hashKv))));
  } else {
    process.stdout.write(`${listRow(shard).join(', ')}\n`);
    process.stdout.write(answers.map(({ endpoint, status }) => `${statusRow(endpoint, status, hashKv).join(', ')}\n`).join(''));
  }
  return failed ? exitFailure : 0;
}

function statusOf(remote: Remote, channel: EtcdChannel, id: number, hashKv: boolean): Promise<Decoded> {
  return remote.endpoints.withAuth((auth) => channel.unary(adminCodec('ShardStatus'), { shard_id: id, ...(hashKv ? { hash_kv: true } : {}) }, auth));
}
