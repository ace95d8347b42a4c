/**
 * `dkv get`, `put`, `del`, `txn` and `compact`: etcd's KV service from the command line, with
 * etcdctl's flags and output (simple lines, or `-w json` as etcdctl prints it).
 */
import { createInterface } from 'node:readline';
import { type Decoded, longsAsStrings, methodCodec, prefixRangeEnd } from '../client/index.js';
import type { ParseArgsConfig } from 'node:util';
import { UsageError, intOption, parseCommand } from './args.js';
import { deleteJson, goJson, headerJson, putJson, rangeJson, simpleKv, txnJson } from './output.js';
import { type WriteOut, remoteOptionsHelp, runRemote } from './remote.js';
import { parseShardId } from './shard.js';

const kvCodec = (method: string) => methodCodec('etcdserverpb.KV', method, longsAsStrings);

const int64Max = 9223372036854775807n;

export const getHelp = `Usage: dkv get KEY [RANGE_END] [options]

Prints the keys in [KEY, RANGE_END) (or KEY alone), each as two lines: the key, then its value.

Options:
  --prefix               every key that starts with KEY ("" for every key)
  --from-key             every key >= KEY
  --limit N              at most N keys (0: no limit)
  --rev R                the keys as of revision R (0: the latest)
  --keys-only            the keys without their values
  --print-value-only     only the values (simple output)
  --count-only           only how many keys there are
  --sort-by T            create, modify, version, key or value
  --order O              ascend or descend (with --sort-by; default ascend)
  --consistency l|s      linearizable (l, the default) or serializable (s: this node's state,
                         possibly stale)
${remoteOptionsHelp}
Exit status: 0 done, 1 the server refused or could not be reached, 2 bad command line.
`;

export const putHelp = `Usage: dkv put KEY [VALUE] [options]

Writes VALUE under KEY and prints OK. Without VALUE the value is read from stdin (all of it, as
etcdctl reads it).

Options:
  --lease ID             attach the key to lease ID (hex, as "dkv lease grant" prints it)
  --prev-kv              also print the key's previous value
  --ignore-value         keep the key's current value (update its lease only); no VALUE
  --ignore-lease         keep the key's current lease
${remoteOptionsHelp}
Exit status: 0 done, 1 the server refused or could not be reached, 2 bad command line.
`;

export const delHelp = `Usage: dkv del KEY [RANGE_END] [options]

Deletes KEY (or the keys in [KEY, RANGE_END)) and prints how many were deleted.

Options:
  --prefix               every key that starts with KEY
  --from-key             every key >= KEY
  --prev-kv              also print each deleted key and its value
${remoteOptionsHelp}
Exit status: 0 done (also when nothing was deleted), 1 the server refused or could not be
reached, 2 bad command line.
`;

export const txnHelp = `Usage: dkv txn [-i] [options] < REQUEST

Runs one transaction, read from stdin in etcdctl's syntax: compares, a blank line, the requests
to run if they all hold, a blank line, the requests to run otherwise (and a blank line).

  compares:   TARGET("KEY") OP "VALUE", TARGET one of value, version (ver), create (c),
              mod (m), lease (hex id), OP one of = != < >
  requests:   put KEY VALUE [--lease ID] [--prev-kv] [--ignore-value] [--ignore-lease]
              get KEY [RANGE_END] [get's flags]
              del KEY [RANGE_END] [--prefix] [--from-key] [--prev-kv]
  Arguments may be double-quoted ("a key", "\\n").

Prints SUCCESS or FAILURE, then each request's output after a blank line.

Example:
  printf 'mod("k") = "0"\\n\\nput k v\\n\\nget k\\n\\n' | dkv txn

Options:
  -i, --interactive      prompt for each part (on a terminal)
${remoteOptionsHelp}
Exit status: 0 the transaction ran (SUCCESS or FAILURE), 1 the server refused or could not be
reached, 2 bad command line or request.
`;

export const compactHelp = `Usage: dkv compact REV [--physical] [--shard ID] [options]

Discards the history of every key before revision REV (etcd's compaction); watches and reads at
older revisions then fail. Prints "compacted revision REV". Without --shard it compacts the
default store (etcd's Compact); a store's shard has revisions of its own and is compacted with
--shard (dkv.v1.Admin's ShardCompact: root only while auth is enabled; \`dkv shard list\` names
the shards, \`dkv shard describe ID\` shows each replica's revision and compact revision).

Options:
  --physical             wait until the compaction is physically applied
  --shard ID             compact data shard ID (a decimal id, not 0: the meta shard has no keys)
${remoteOptionsHelp}
Exit status: 0 done, 1 the server refused (e.g. REV already compacted) or could not be
reached, 2 bad command line.
`;

// ---------------------------------------------------------------------------------------------
// Requests from arguments (the commands and txn's requests share these).

const getOptions = {
  prefix: { type: 'boolean' },
  'from-key': { type: 'boolean' },
  limit: { type: 'string' },
  rev: { type: 'string' },
  'keys-only': { type: 'boolean' },
  'print-value-only': { type: 'boolean' },
  'count-only': { type: 'boolean' },
  'sort-by': { type: 'string' },
  order: { type: 'string' },
  consistency: { type: 'string' },
} as const;

const putOptions = {
  lease: { type: 'string' },
  'prev-kv': { type: 'boolean' },
  'ignore-value': { type: 'boolean' },
  'ignore-lease': { type: 'boolean' },
} as const;

const delOptions = {
  prefix: { type: 'boolean' },
  'from-key': { type: 'boolean' },
  'prev-kv': { type: 'boolean' },
} as const;

/** key and range_end as etcdctl makes them of KEY [RANGE_END] --prefix --from-key. */
export function keyRange(positionals: readonly string[], prefix: boolean, fromKey: boolean, command: string): { key: Buffer; range_end?: Buffer } {
  const [key, rangeEnd, ...extra] = positionals;
  if (key === undefined) throw new UsageError(`${command} needs a KEY`);
  if (extra.length > 0) throw new UsageError(`too many arguments: ${extra.join(' ')}`);
  if (prefix && fromKey) throw new UsageError('--prefix and --from-key cannot be set together');
  if ((prefix || fromKey) && rangeEnd !== undefined) throw new UsageError(`too many arguments: RANGE_END cannot be given with --${prefix ? 'prefix' : 'from-key'}`);
  if (rangeEnd !== undefined) return { key: Buffer.from(key), range_end: Buffer.from(rangeEnd) };
  // An empty key with --prefix or --from-key means every key, as in etcdctl.
  if ((prefix || fromKey) && key === '') return { key: Buffer.from([0]), range_end: Buffer.from([0]) };
  if (prefix) return { key: Buffer.from(key), range_end: prefixRangeEnd(Buffer.from(key)) };
  if (fromKey) return { key: Buffer.from(key), range_end: Buffer.from([0]) };
  return { key: Buffer.from(key) };
}

function revisionOption(value: string | undefined, name: string): string {
  if (value === undefined) return '0';
  if (!/^\d+$/.test(value) || BigInt(value) > int64Max) throw new UsageError(`--${name} must be a revision (a whole number >= 0), got "${value}"`);
  return value;
}

const sortTargets: Readonly<Record<string, string>> = { create: 'CREATE', modify: 'MOD', version: 'VERSION', key: 'KEY', value: 'VALUE' };

interface GetRequest {
  readonly request: object;
  readonly valueOnly: boolean;
  readonly countOnly: boolean;
}

type Values<T extends NonNullable<ParseArgsConfig['options']>> = ReturnType<typeof parseCommand<T>>['values'];

function getRequestOf(o: Values<typeof getOptions>, positionals: readonly string[]): GetRequest {
  const range = keyRange(positionals, o.prefix === true, o['from-key'] === true, 'get');
  const sortBy = o['sort-by']?.toLowerCase();
  const order = o.order?.toLowerCase();
  if (sortBy !== undefined && sortTargets[sortBy] === undefined) throw new UsageError(`--sort-by must be one of create, modify, version, key, value, got "${o['sort-by']}"`);
  if (order !== undefined && order !== 'ascend' && order !== 'descend') throw new UsageError(`--order must be ascend or descend, got "${o.order}"`);
  if (o.consistency !== undefined && o.consistency !== 'l' && o.consistency !== 's') throw new UsageError(`--consistency must be l (linearizable) or s (serializable), got "${o.consistency}"`);
  if (o['count-only'] === true && o['keys-only'] === true) throw new UsageError('--count-only and --keys-only cannot be set together');
  const target = sortTargets[sortBy ?? 'key']!;
  // As clientv3's WithSort: keys ascending is the order a range has anyway.
  const sortOrder = order === undefined ? (sortBy === undefined || target === 'KEY' ? 'NONE' : 'ASCEND') : target === 'KEY' && order === 'ascend' ? 'NONE' : order.toUpperCase();
  return {
    request: {
      ...range,
      limit: intOption(o.limit, 'limit', 0, 0, Number.MAX_SAFE_INTEGER),
      revision: revisionOption(o.rev, 'rev'),
      sort_order: sortOrder,
      sort_target: target,
      serializable: o.consistency === 's',
      keys_only: o['keys-only'] === true,
      count_only: o['count-only'] === true,
    },
    valueOnly: o['print-value-only'] === true,
    countOnly: o['count-only'] === true,
  };
}

/** A lease id as etcdctl takes it: hex, any int64 (printed unsigned). */
export function parseLeaseIdHex(text: string): string {
  if (!/^[0-9a-fA-F]{1,16}$/.test(text)) throw new UsageError(`a lease id is 1 to 16 hex digits, got "${text}"`);
  return BigInt.asIntN(64, BigInt(`0x${text}`)).toString();
}

function putRequestOf(o: Values<typeof putOptions>, positionals: readonly string[], stdin: (() => Promise<string>) | undefined): Promise<object> | object {
  const [key, value, ...extra] = positionals;
  if (key === undefined) throw new UsageError('put needs a KEY');
  if (extra.length > 0) throw new UsageError(`too many arguments: ${extra.join(' ')}`);
  const ignoreValue = o['ignore-value'] === true;
  if (ignoreValue && value !== undefined) throw new UsageError('VALUE cannot be given with --ignore-value');
  const request = {
    key: Buffer.from(key),
    lease: o.lease === undefined ? '0' : parseLeaseIdHex(o.lease),
    prev_kv: o['prev-kv'] === true,
    ignore_value: ignoreValue,
    ignore_lease: o['ignore-lease'] === true,
  };
  if (o['ignore-lease'] === true && o.lease !== undefined) throw new UsageError('--lease cannot be given with --ignore-lease');
  if (ignoreValue || value !== undefined) return { ...request, value: Buffer.from(value ?? '') };
  if (stdin === undefined) throw new UsageError('put needs a KEY and a VALUE');
  return stdin().then((text) => ({ ...request, value: Buffer.from(text) }));
}

function deleteRequestOf(o: Values<typeof delOptions>, positionals: readonly string[]): object {
  return { ...keyRange(positionals, o.prefix === true, o['from-key'] === true, 'del'), prev_kv: o['prev-kv'] === true };
}

// ---------------------------------------------------------------------------------------------
// Printing.

function printRange(r: Decoded, format: WriteOut, get: GetRequest): string {
  if (format === 'json') return `${goJson(rangeJson(r))}\n`;
  if (get.countOnly) return `${String(r.count)}\n`;
  return (r.kvs as Decoded[]).map((kv) => simpleKv(kv, get.valueOnly)).join('');
}

function printPut(r: Decoded, format: WriteOut): string {
  if (format === 'json') return `${goJson(putJson(r))}\n`;
  return `OK\n${r.prev_kv == null ? '' : simpleKv(r.prev_kv as Decoded, false)}`;
}

function printDelete(r: Decoded, format: WriteOut): string {
  if (format === 'json') return `${goJson(deleteJson(r))}\n`;
  return `${String(r.deleted)}\n${(r.prev_kvs as Decoded[]).map((kv) => simpleKv(kv, false)).join('')}`;
}

// ---------------------------------------------------------------------------------------------
// The commands.

export function getCommand(args: string[]): Promise<number> {
  return runRemote({ name: 'get', help: getHelp, options: getOptions }, args, async (remote, o, positionals) => {
    const get = getRequestOf(o, positionals);
    const r = await remote.endpoints.unary(kvCodec('Range'), get.request);
    process.stdout.write(printRange(r, remote.format, get));
    return 0;
  });
}

function readStdin(): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    process.stdin.on('data', (chunk: Buffer) => chunks.push(chunk));
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString()));
    process.stdin.on('error', reject);
  });
}

export function putCommand(args: string[]): Promise<number> {
  return runRemote({ name: 'put', help: putHelp, options: putOptions }, args, async (remote, o, positionals) => {
    const request = await putRequestOf(o, positionals, readStdin);
    const r = await remote.endpoints.unary(kvCodec('Put'), request, { write: true });
    process.stdout.write(printPut(r, remote.format));
    return 0;
  });
}

export function delCommand(args: string[]): Promise<number> {
  return runRemote({ name: 'del', help: delHelp, options: delOptions }, args, async (remote, o, positionals) => {
    const r = await remote.endpoints.unary(kvCodec('DeleteRange'), deleteRequestOf(o, positionals), { write: true });
    process.stdout.write(printDelete(r, remote.format));
    return 0;
  });
}

export function compactCommand(args: string[]): Promise<number> {
  return runRemote({ name: 'compact', help: compactHelp, options: { physical: { type: 'boolean' }, shard: { type: 'string' } } as const }, args, async (remote, o, positionals) => {
    const [rev, ...extra] = positionals;
    if (rev === undefined || extra.length > 0) throw new UsageError('compact needs one argument, the revision');
    const revision = revisionOption(rev, 'revision');
    if (revision === '0') throw new UsageError('the revision to compact to must be at least 1');
    let shard: number | undefined;
    if (o.shard !== undefined) {
      shard = parseShardId(o.shard, '--shard');
      if (shard === 0) throw new UsageError('--shard 0 is the meta shard: it holds no keys to compact');
    }
    const r =
      shard === undefined
        ? await remote.endpoints.unary(kvCodec('Compact'), { revision, physical: o.physical === true })
        : await remote.endpoints.unary(methodCodec('dkv.v1.Admin', 'ShardCompact', longsAsStrings), { shard_id: shard, revision, physical: o.physical === true });
    process.stdout.write(remote.format === 'json' ? `${goJson({ header: headerJson(r.header) })}\n` : `compacted revision ${revision}\n`);
    return 0;
  });
}

// ---------------------------------------------------------------------------------------------
// txn

const compareTargets: Readonly<Record<string, string>> = { ver: 'VERSION', version: 'VERSION', c: 'CREATE', create: 'CREATE', m: 'MOD', mod: 'MOD', val: 'VALUE', value: 'VALUE', lease: 'LEASE' };
const compareResults: Readonly<Record<string, string>> = { '=': 'EQUAL', '!=': 'NOT_EQUAL', '<': 'LESS', '>': 'GREATER' };
const quoted = '"((?:[^"\\\\]|\\\\.)*)"';
const compareLine = new RegExp(`^\\s*(\\w+)\\(${quoted}\\)\\s*(=|!=|<|>)\\s*${quoted}\\s*$`);

function unquote(body: string): string {
  return JSON.parse(`"${body}"`) as string;
}

/** One compare line, as etcdctl's parseCompare reads it. */
export function parseCompare(line: string): object {
  const match = compareLine.exec(line);
  if (match === null) throw new UsageError(`malformed comparison: ${line}`);
  const [, targetName, keyText, op, valueText] = match as unknown as [string, string, string, string, string];
  const target = compareTargets[targetName];
  if (target === undefined) throw new UsageError(`malformed comparison: ${line} (unknown target ${targetName})`);
  const key = Buffer.from(unquote(keyText));
  const value = unquote(valueText);
  const compare = { key, target, result: compareResults[op]! };
  if (target === 'VALUE') return { ...compare, value: Buffer.from(value) };
  if (target === 'LEASE') return { ...compare, lease: parseLeaseIdHex(value) };
  if (!/^-?\d+$/.test(value)) throw new UsageError(`malformed comparison: ${line} (${targetName} needs a whole number)`);
  const field = target === 'VERSION' ? 'version' : target === 'CREATE' ? 'create_revision' : 'mod_revision';
  return { ...compare, [field]: value };
}

/** Splits a request line into words; double-quoted words are unquoted (etcdctl's argify). */
export function argify(line: string): string[] {
  return [...line.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) => (m[1] !== undefined ? unquote(m[1]) : m[2]!));
}

type Op = { request: object; print: (response: Decoded) => string };

/** One request line of a txn: the RequestOp and how to print its response. */
export function parseRequestOp(line: string): Op {
  const [verb, ...args] = argify(line);
  try {
    switch (verb) {
      case 'get': {
        const parsed = parseCommand(args, getOptions);
        const get = getRequestOf(parsed.values, parsed.positionals);
        return { request: { request_range: get.request }, print: (r) => printRange(r.response_range as Decoded, 'simple', get) };
      }
      case 'put': {
        const parsed = parseCommand(args, putOptions);
        return { request: { request_put: putRequestOf(parsed.values, parsed.positionals, undefined) }, print: (r) => printPut(r.response_put as Decoded, 'simple') };
      }
      case 'del':
      case 'delete': {
        const parsed = parseCommand(args, delOptions);
        return { request: { request_delete_range: deleteRequestOf(parsed.values, parsed.positionals) }, print: (r) => printDelete(r.response_delete_range as Decoded, 'simple') };
      }
      default:
        throw new UsageError(`expected get, put or del, got "${verb ?? ''}"`);
    }
  } catch (error) {
    if (error instanceof UsageError) throw new UsageError(`invalid txn request: ${line} (${error.message})`);
    throw error;
  }
}

/** Reads the three parts of a txn from stdin, each ended by a blank line (or the input's end). */
async function readTxn(interactive: boolean): Promise<{ compares: object[]; success: Op[]; failure: Op[] }> {
  const lines = createInterface({ input: process.stdin, terminal: false })[Symbol.asyncIterator]();
  const section = async (prompt: string, parse: (line: string) => void): Promise<void> => {
    if (interactive) process.stdout.write(`${prompt}\n`);
    for (;;) {
      const next = await lines.next();
      if (next.done === true || next.value.trim() === '') return;
      parse(next.value);
    }
  };
  const compares: object[] = [];
  const success: Op[] = [];
  const failure: Op[] = [];
  await section('compares:', (line) => compares.push(parseCompare(line)));
  await section('success requests (get, put, del):', (line) => success.push(parseRequestOp(line)));
  await section('failure requests (get, put, del):', (line) => failure.push(parseRequestOp(line)));
  return { compares, success, failure };
}

export function txnCommand(args: string[]): Promise<number> {
  const txnOptions = { interactive: { type: 'boolean', short: 'i' } } as const;
  return runRemote({ name: 'txn', help: txnHelp, options: txnOptions }, args, async (remote, o, positionals) => {
    if (positionals.length > 0) throw new UsageError(`txn takes no arguments (it reads stdin), got ${positionals.join(' ')}`);
    const txn = await readTxn(o.interactive === true);
    const r = await remote.endpoints.unary(kvCodec('Txn'), {
      compare: txn.compares,
      success: txn.success.map((op) => op.request),
      failure: txn.failure.map((op) => op.request),
    }, { write: true });
    if (remote.format === 'json') {
      process.stdout.write(`${goJson(txnJson(r))}\n`);
      return 0;
    }
    const ops = r.succeeded === true ? txn.success : txn.failure;
    const responses = r.responses as Decoded[];
    let out = r.succeeded === true ? 'SUCCESS\n' : 'FAILURE\n';
    responses.forEach((response, i) => (out += `\n${ops[i]!.print(response)}`));
    process.stdout.write(out);
    return 0;
  });
}
