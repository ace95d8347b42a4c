/** `dkv member list|add|remove|update|promote`: the cluster's members, printed as etcdctl prints them. */
import { type Decoded, longsAsStrings, methodCodec } from '../client/index.js';
import { UsageError } from './args.js';
import { goJson, headerJson, idHex, memberJson, renderTable } from './output.js';
import { remoteOptionsHelp, runRemote } from './remote.js';

export const memberHelp = `Usage: dkv member list [options]
       dkv member add NAME --peer-urls URL[,URL…] [--learner] [options]
       dkv member remove ID [options]
       dkv member update ID --peer-urls URL[,URL…] [options]
       dkv member promote ID [options]

  list      every member: ID, status (started, or unstarted before it first joins), name, peer
            and client URLs, whether it is a learner (-w table: etcdctl's table)
  add       adds a member (a learner with --learner) and prints the ETCD_* settings to start it
            with (dkv server reads them too)
  remove    removes the member ID
  update    changes the member's peer URLs
  promote   makes the learner ID a voting member (once its log has caught up)

Member IDs are hexadecimal, as list prints them.

Options:
  --peer-urls URLS       add, update: the member's peer URLs, comma-separated
  --learner              add: as a learner (no vote until promoted)
${remoteOptionsHelp}
Exit status: 0 done, 1 the server refused or could not be reached, 2 bad command line.
`;

const clusterCodec = (method: string) => methodCodec('etcdserverpb.Cluster', method, longsAsStrings);

const memberOptions = {
  'peer-urls': { type: 'string' },
  learner: { type: 'boolean' },
} as const;

/** A member id on the command line: hex (any uint64), as decimal text. */
export function parseMemberId(text: string | undefined): string {
  if (text === undefined || !/^[0-9a-fA-F]{1,16}$/.test(text)) throw new UsageError(`a member id is 1 to 16 hex digits, got "${text ?? ''}"`);
  return BigInt(`0x${text}`).toString();
}

function peerUrlsOf(value: string | undefined, action: string): string[] {
  const urls = (value ?? '').split(',').map((u) => u.trim()).filter((u) => u !== '');
  if (urls.length === 0) throw new UsageError(`member ${action} needs --peer-urls`);
  for (const url of urls) if (!/^https?:\/\/[^/\s]+$/.test(url)) throw new UsageError(`--peer-urls: expected http(s)://host:port, got "${url}"`);
  return urls;
}

/** Go's %16x: hex, padded with spaces to 16. */
const hex16 = (id: unknown): string => idHex(id).padStart(16);

export function memberRows(members: readonly Decoded[]): string[][] {
  return members.map((m) => [
    idHex(m.ID),
    m.name === '' ? 'unstarted' : 'started',
    String(m.name),
    (m.peerURLs as string[]).join(','),
    (m.clientURLs as string[]).join(','),
    String(m.isLearner === true),
  ]);
}

export function memberCommand(args: string[]): Promise<number> {
  const formats = ['simple', 'json', 'table'] as const;
  return runRemote({ name: 'member', help: memberHelp, options: memberOptions, formats }, args, async (remote, o, positionals) => {
    const [action, argument, ...extra] = positionals;
    if (extra.length > 0) throw new UsageError(`too many arguments: ${extra.join(' ')}`);
    if (action !== 'list' && action !== 'add' && remote.format === 'table') throw new UsageError(`table output is for member list only`);
    if (action !== 'add' && action !== 'update' && o['peer-urls'] !== undefined) throw new UsageError('--peer-urls applies to add and update');
    if (action !== 'add' && o.learner === true) throw new UsageError('--learner applies to add');
    const out = (r: Decoded, simple: string): void => {
      process.stdout.write(remote.format === 'json' ? `${goJson(membersJson(r))}\n` : simple);
    };
    const call = (method: string, request: object): Promise<Decoded> => remote.endpoints.unary(clusterCodec(method), request, { write: method !== 'MemberList' });
    switch (action) {
      case 'list': {
        if (argument !== undefined) throw new UsageError('member list takes no arguments');
        const r = await call('MemberList', {});
        const rows = memberRows(r.members as Decoded[]);
        if (remote.format === 'table') process.stdout.write(renderTable(['ID', 'STATUS', 'NAME', 'PEER ADDRS', 'CLIENT ADDRS', 'IS LEARNER'], rows));
        else out(r, rows.map((row) => `${row.join(', ')}\n`).join(''));
        return 0;
      }
      case 'add': {
        if (argument === undefined || argument === '') throw new UsageError('member add needs the new member\'s NAME');
        const peerURLs = peerUrlsOf(o['peer-urls'], 'add');
        const r = await call('MemberAdd', { peerURLs, isLearner: o.learner === true });
        const added = r.member as Decoded;
        const cluster = (r.members as Decoded[]).flatMap((m) => (m.peerURLs as string[]).map((u) => `${m.ID === added.ID ? argument : String(m.name)}=${u}`));
        out(
          r,
          `Member ${hex16(added.ID)} added to cluster ${hex16((r.header as Decoded).cluster_id)}\n\n` +
            `ETCD_NAME="${argument}"\nETCD_INITIAL_CLUSTER="${cluster.join(',')}"\n` +
            `ETCD_INITIAL_ADVERTISE_PEER_URLS="${peerURLs.join(',')}"\nETCD_INITIAL_CLUSTER_STATE="existing"\n`,
        );
        return 0;
      }
      case 'remove':
      case 'promote': {
        const id = parseMemberId(argument);
        const r = await call(action === 'remove' ? 'MemberRemove' : 'MemberPromote', { ID: id });
        out(r, `Member ${hex16(id)} ${action === 'remove' ? 'removed from' : 'promoted in'} cluster ${hex16((r.header as Decoded).cluster_id)}\n`);
        return 0;
      }
      case 'update': {
        const id = parseMemberId(argument);
        const r = await call('MemberUpdate', { ID: id, peerURLs: peerUrlsOf(o['peer-urls'], 'update') });
        out(r, `Member ${hex16(id)} updated in cluster ${hex16((r.header as Decoded).cluster_id)}\n`);
        return 0;
      }
      default:
        throw new UsageError(action === undefined ? 'member needs a subcommand: list, add, remove, update or promote' : `unknown member subcommand "${action}"`);
    }
  });
}

function membersJson(r: Decoded): object {
  const members = (r.members as Decoded[] | undefined) ?? [];
  return {
    header: headerJson(r.header),
    member: r.member == null ? undefined : memberJson(r.member as Decoded),
    members: members.length === 0 ? undefined : members.map(memberJson),
  };
}
