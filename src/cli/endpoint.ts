/**
 * `dkv endpoint status|health [--cluster]` and `dkv defrag [--cluster]`: each endpoint asked on
 * its own (no failover), printed as etcdctl prints them.
 */
import { errorCodeOfMessage } from '../errors.js';
import { type Decoded, type EtcdChannel, longsAsStrings, methodCodec } from '../client/index.js';
import { UsageError, parseEndpoints } from './args.js';
import { goDuration, goJson, headerJson, humanBytes, idHex, int, renderTable, text } from './output.js';
import { Endpoints, type Remote, exitFailure, failureMessage, remoteOptionsHelp, runRemote } from './remote.js';

export const endpointHelp = `Usage: dkv endpoint status [--cluster] [options]
       dkv endpoint health [--cluster] [options]

  status    each endpoint's member ID, version, database size, whether it leads or is a
            learner, Raft term, index and applied index, and errors (-w table: etcdctl's table)
  health    whether each endpoint commits a proposal (a linearizable read), and how long it took:
            "127.0.0.1:2379 is healthy: successfully committed proposal: took = 2.1ms"

Options:
  --cluster              every member's client URLs (from the member list) instead of --endpoints
${remoteOptionsHelp}
Exit status: 0 every endpoint answered (and is healthy), 1 one did not, 2 bad command line.
`;

export const defragHelp = `Usage: dkv defrag [--cluster] [options]

Defragments each endpoint's store (gives back memory the store no longer uses), one endpoint at a
time, printing "Finished defragmenting etcd member[ENDPOINT]" for each.

Options:
  --cluster              every member's client URLs (from the member list) instead of --endpoints
${remoteOptionsHelp}
Exit status: 0 every endpoint defragmented, 1 one failed, 2 bad command line.
`;

const codec = (service: 'etcdserverpb.Maintenance' | 'etcdserverpb.Cluster' | 'etcdserverpb.KV', method: string) => methodCodec(service, method, longsAsStrings);
const clusterOption = { cluster: { type: 'boolean' } } as const;

/** The endpoints to ask: --endpoints, or with --cluster every member's client URLs as host:port. */
export async function targets(remote: Remote, cluster: boolean): Promise<Array<{ endpoint: string; channel: EtcdChannel }>> {
  let list = remote.endpoints.list;
  if (cluster) {
    const r = await remote.endpoints.unary(codec('etcdserverpb.Cluster', 'MemberList'), {});
    const urls = (r.members as Decoded[]).flatMap((m) => m.clientURLs as string[]);
    list = [...new Set(parseEndpoints(urls.join(','), 'dkv endpoint --cluster'))];
  }
  const endpoints = new Endpoints(list, remote.timeoutMs);
  return list.map((endpoint, i) => ({ endpoint, channel: endpoints.channel(i) }));
}

export function endpointCommand(args: string[]): Promise<number> {
  const formats = ['simple', 'json', 'table'] as const;
  return runRemote({ name: 'endpoint', help: endpointHelp, options: clusterOption, formats }, args, async (remote, o, positionals) => {
    const [action, ...extra] = positionals;
    if (extra.length > 0) throw new UsageError(`too many arguments: ${extra.join(' ')}`);
    if (action !== 'status' && action !== 'health') {
      throw new UsageError(action === undefined ? 'endpoint needs a subcommand: status or health' : `unknown endpoint subcommand "${action}"`);
    }
    const list = await targets(remote, o.cluster === true);
    try {
      return action === 'status' ? await status(list, remote) : await health(list, remote);
    } finally {
      for (const { channel } of list) channel.close();
    }
  });
}

async function status(list: Array<{ endpoint: string; channel: EtcdChannel }>, remote: Remote): Promise<number> {
  const answers: Array<{ endpoint: string; status: Decoded }> = [];
  let failed = false;
  for (const { endpoint, channel } of list) {
    try {
      answers.push({ endpoint, status: await remote.endpoints.withAuth((auth) => channel.unary(codec('etcdserverpb.Maintenance', 'Status'), {}, auth)) });
    } catch (error) {
      failed = true;
      process.stderr.write(`dkv endpoint status: failed to get the status of endpoint ${endpoint} (${failureMessage(error)})\n`);
    }
  }
  const rows = answers.map(({ endpoint, status: s }) => [
    endpoint,
    idHex((s.header as Decoded).member_id),
    String(s.version),
    humanBytes(Number(s.dbSize)),
    String(String(s.leader) === String((s.header as Decoded).member_id)),
    String(s.isLearner === true),
    String(s.raftTerm),
    String(s.raftIndex),
    String(s.raftAppliedIndex),
    (s.errors as string[]).join(', '),
  ]);
  if (remote.format === 'table') {
    process.stdout.write(renderTable(['ENDPOINT', 'ID', 'VERSION', 'DB SIZE', 'IS LEADER', 'IS LEARNER', 'RAFT TERM', 'RAFT INDEX', 'RAFT APPLIED INDEX', 'ERRORS'], rows));
  } else if (remote.format === 'json') {
    process.stdout.write(`${goJson(answers.map(({ endpoint, status: s }) => ({ Endpoint: endpoint, Status: statusJson(s) })))}\n`);
  } else process.stdout.write(rows.map((row) => `${row.join(', ')}\n`).join(''));
  return failed ? exitFailure : 0;
}

function statusJson(s: Decoded): object {
  const errors = s.errors as string[];
  return {
    header: headerJson(s.header),
    version: text(s.version),
    dbSize: int(s.dbSize),
    leader: int(s.leader),
    raftIndex: int(s.raftIndex),
    raftTerm: int(s.raftTerm),
    raftAppliedIndex: int(s.raftAppliedIndex),
    errors: errors.length === 0 ? undefined : errors,
    dbSizeInUse: int(s.dbSizeInUse),
    isLearner: s.isLearner === true ? true : undefined,
  };
}

/** etcdctl's check: a linearizable read of the key "health" goes through the leader's quorum. */
async function health(list: Array<{ endpoint: string; channel: EtcdChannel }>, remote: Remote): Promise<number> {
  const results = await Promise.all(
    list.map(async ({ endpoint, channel }) => {
      let started = process.hrtime.bigint();
      try {
        // Timed from a connected channel, as etcdctl times it from a dialled client.
        await channel.waitForReady(remote.timeoutMs);
        started = process.hrtime.bigint();
        // As etcdctl: a user not allowed to read "health" still got an answer through the quorum.
        await remote.endpoints
          .withAuth((auth) => channel.unary(codec('etcdserverpb.KV', 'Range'), { key: Buffer.from('health') }, auth))
          .catch((error: unknown) => {
            if (errorCodeOfMessage(failureMessage(error)) !== 'permission-denied') throw error;
          });
        return { endpoint, health: true, took: goDuration(process.hrtime.bigint() - started), error: '' };
      } catch (error) {
        return { endpoint, health: false, took: goDuration(process.hrtime.bigint() - started), error: failureMessage(error) };
      }
    }),
  );
  if (remote.format === 'table') {
    process.stdout.write(renderTable(['ENDPOINT', 'HEALTH', 'TOOK', 'ERROR'], results.map((h) => [h.endpoint, String(h.health), h.took, h.error])));
  } else if (remote.format === 'json') {
    process.stdout.write(`${goJson(results.map((h) => ({ endpoint: h.endpoint, health: h.health, took: h.took, error: text(h.error) })))}\n`);
  } else {
    for (const h of results) {
      if (h.health) process.stdout.write(`${h.endpoint} is healthy: successfully committed proposal: took = ${h.took}\n`);
      else process.stderr.write(`${h.endpoint} is unhealthy: failed to commit proposal: ${h.error}\n`);
    }
  }
  if (results.every((h) => h.health)) return 0;
  process.stderr.write('dkv endpoint health: unhealthy cluster\n');
  return exitFailure;
}

export function defragCommand(args: string[]): Promise<number> {
  return runRemote({ name: 'defrag', help: defragHelp, options: clusterOption }, args, async (remote, o, positionals) => {
    if (positionals.length > 0) throw new UsageError(`defrag takes no arguments, got ${positionals.join(' ')}`);
    const list = await targets(remote, o.cluster === true);
    let failed = false;
    try {
      for (const { endpoint, channel } of list) {
        try {
          await remote.endpoints.withAuth((auth) => channel.unary(codec('etcdserverpb.Maintenance', 'Defragment'), {}, auth));
          process.stdout.write(`Finished defragmenting etcd member[${endpoint}]\n`);
        } catch (error) {
          failed = true;
          process.stderr.write(`dkv defrag: failed to defragment etcd member[${endpoint}] (${failureMessage(error)})\n`);
        }
      }
    } finally {
      for (const { channel } of list) channel.close();
    }
    return failed ? exitFailure : 0;
  });
}
