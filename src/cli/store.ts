/** `dkv store create|list|describe|drop`: the stores of a running cluster (the dkv.v1.Admin service). */
import { type Decoded, longsAsStrings, methodCodec } from '../client/index.js';
import { mountShardsMax, replicasMax, storeNameBytesMax, storePrefixBytesMax } from '../cluster/index.js';
import { UsageError, intOption } from './args.js';
import { goJson, headerJson, idHex, int, list, renderTable, text } from './output.js';
import { remoteOptionsHelp, runRemote } from './remote.js';

export const storeHelp = `Usage: dkv store create NAME --prefix P [--shards N] [--replicas R] [options]
       dkv store list [options]
       dkv store describe NAME [options]
       dkv store drop NAME [options]

A store is a keyspace mounted on a key prefix, split into shards (each one Raft group). The
default store ("default", empty prefix) owns every key no other store claims and cannot be
dropped. Stores are kept by the meta shard: every node answers alike. Needs the root role while
auth is enabled.

  create    mount store NAME on prefix P as N shards (default 1; at most ${mountShardsMax}), the prefix's
            keys cut evenly by the byte after it; prints the new shards' ids. Refused when P
            overlaps another store's prefix (one starts the other) or when the default store
            holds keys under P (delete them first). With --replicas R, each shard lives on R
            voting members only (those holding the fewest placed replicas); the others forward
            unary calls (get, put, del, txn) for its keys to one of them, but not watches,
            locks or elections: send those to a member that hosts the shard (describe names
            them). A member added later does not join such a shard, and a member that holds
            one of a shard's one or two replicas cannot be removed while the store exists.
            Create a store that stopped half way again with the same --prefix, --shards and
            --replicas
  list      every store: name, prefix, shard count (-w table: a table)
  describe  a store's shards in key order: id, [start, end), epoch, replicas (none listed:
            every member), and the leader and Raft term as the answering node sees them (0
            when it does not host the shard) (-w table: a table)
  drop      remove store NAME and its shards, deleting its keys (the default store serves the
            prefix again, empty); prints the ids of the shards dropped, which are never given
            out again

NAME is 1 to ${storeNameBytesMax} of a-z, 0-9, "_" and "-", starting with a letter or digit. Keys print as text,
a byte outside printable ASCII as \\xNN; an end of "(end)" means the end of the store's range.
A store's keys are served by its shards (each a Raft group on every member, or on R); a range across
shards is merged from them, a write or txn across shards is refused. A store is "creating" until the default store has ceded its prefix
(create it again, with the same --prefix and --shards, to finish one that stopped half way); a drop deletes the store's keys.

Options:
  --prefix P             create: the store's key prefix (1 to ${storePrefixBytesMax} bytes, as UTF-8)
  --shards N             create: how many shards the store starts with (default 1)
  --replicas R           create: how many voting members host each shard (1 to ${replicasMax}, at most the
                         cluster's voters; default 0: every member, as the default store)
${remoteOptionsHelp}
Exit status: 0 done, 1 the server refused or could not be reached, 2 bad command line.
`;

const adminCodec = (method: string) => methodCodec('dkv.v1.Admin', method, longsAsStrings);

const storeOptions = {
  prefix: { type: 'string' },
  shards: { type: 'string' },
  replicas: { type: 'string' },
} as const;

/** A key for people: printable ASCII as is, any other byte as \xNN; the empty key as "". */
export function showKey(key: unknown): string {
  const bytes = Buffer.isBuffer(key) ? key : Buffer.alloc(0);
  if (bytes.length === 0) return '""';
  let out = '';
  for (const b of bytes) out += b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  return out;
}

const storeRow = (s: Decoded): string[] => [String(s.name), showKey(s.prefix), String(s.shard_count), s.creating === true ? 'creating' : 'active'];

export const shardRow = (s: Decoded): string[] => [
  String(s.id),
  showKey(s.start),
  s.end === undefined || s.end === null ? '(end)' : showKey(s.end),
  String(s.epoch),
  (s.replicas as unknown[]).length === 0 ? 'all' : (s.replicas as unknown[]).map(idHex).join(','),
  String(s.leader) === '0' ? '0' : idHex(s.leader),
  String(s.raft_term),
];

// -w json: Go's encoding of the response (bytes base64, zero fields left out), as etcdctl's.
const storeJson = (s: Decoded): object => ({ name: text(s.name), prefix: bytesOrUndefined(s.prefix), shard_count: int(s.shard_count), creating: s.creating === true ? true : undefined });
export const shardJson = (s: Decoded): object => ({
  id: int(s.id),
  start: bytesOrUndefined(s.start),
  end: Buffer.isBuffer(s.end) ? s.end : undefined,
  epoch: int(s.epoch),
  replicas: list(s.replicas, (r) => int(r)),
  leader: int(s.leader),
  raft_term: int(s.raft_term),
});
const bytesOrUndefined = (value: unknown): Buffer | undefined => (Buffer.isBuffer(value) && value.length > 0 ? value : undefined);

export function storeCommand(args: string[]): Promise<number> {
  const formats = ['simple', 'json', 'table'] as const;
  return runRemote({ name: 'store', help: storeHelp, options: storeOptions, formats }, args, async (remote, o, positionals) => {
    const [action, name, ...extra] = positionals;
    if (extra.length > 0) throw new UsageError(`too many arguments: ${extra.join(' ')}`);
    if (action !== 'create' && (o.prefix !== undefined || o.shards !== undefined || o.replicas !== undefined)) throw new UsageError('--prefix, --shards and --replicas apply to create');
    if (action !== 'list' && action !== 'describe' && remote.format === 'table') throw new UsageError('table output is for store list and describe');
    const call = (method: string, request: object, write: boolean): Promise<Decoded> => remote.endpoints.unary(adminCodec(method), request, { write });
    const needName = (): string => {
      if (name === undefined || name === '') throw new UsageError(`store ${action} needs the store's NAME`);
      return name;
    };
    const json = (value: object): void => {
      process.stdout.write(`${goJson(value)}\n`);
    };
    switch (action) {
      case 'create': {
        const storeName = needName();
        if (o.prefix === undefined || o.prefix === '') throw new UsageError('store create needs --prefix (a store cannot take the empty prefix: the default store has it)');
        const shards = intOption(o.shards, 'shards', 1, 1, mountShardsMax);
        const replicas = intOption(o.replicas, 'replicas', 0, 0, replicasMax);
        const r = await call('StoreCreate', { name: storeName, prefix: Buffer.from(o.prefix), shards, replicas }, true);
        const ids = (r.shard_ids as unknown[]).map(String);
        if (remote.format === 'json') json({ header: headerJson(r.header), store: storeJson(r.store as Decoded), shard_ids: list(r.shard_ids, (id) => int(id)) });
        else process.stdout.write(`Store ${storeName} created on prefix ${showKey((r.store as Decoded).prefix)} with shard${ids.length === 1 ? '' : 's'} ${ids.join(', ')}\n`);
        return 0;
      }
      case 'list': {
        if (name !== undefined) throw new UsageError('store list takes no arguments');
        const r = await call('StoreList', {}, false);
        const stores = r.stores as Decoded[];
        if (remote.format === 'json') json({ header: headerJson(r.header), stores: list(stores, storeJson) });
        else if (remote.format === 'table') process.stdout.write(renderTable(['NAME', 'PREFIX', 'SHARDS', 'STATE'], stores.map(storeRow)));
        else process.stdout.write(stores.map((s) => `${storeRow(s).join(', ')}\n`).join(''));
        return 0;
      }
      case 'describe': {
        const r = await call('StoreDescribe', { name: needName() }, false);
        const shards = r.shards as Decoded[];
        if (remote.format === 'json') json({ header: headerJson(r.header), store: storeJson(r.store as Decoded), shards: list(shards, shardJson) });
        else if (remote.format === 'table') process.stdout.write(renderTable(['SHARD', 'START', 'END', 'EPOCH', 'REPLICAS', 'LEADER', 'RAFT TERM'], shards.map(shardRow)));
        else process.stdout.write(`${storeRow(r.store as Decoded).join(', ')}\n${shards.map((s) => `${shardRow(s).join(', ')}\n`).join('')}`);
        return 0;
      }
      case 'drop': {
        const storeName = needName();
        const r = await call('StoreDrop', { name: storeName }, true);
        const ids = (r.shard_ids as unknown[]).map(String);
        if (remote.format === 'json') json({ header: headerJson(r.header), shard_ids: list(r.shard_ids, (id) => int(id)) });
        else process.stdout.write(`Store ${storeName} dropped (shard${ids.length === 1 ? '' : 's'} ${ids.join(', ')})\n`);
        return 0;
      }
      default:
        throw new UsageError(action === undefined ? 'store needs a subcommand: create, list, describe or drop' : `unknown store subcommand "${action}"`);
    }
  });
}
