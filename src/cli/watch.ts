/**
 * `dkv watch`: prints a key's (or range's) events as etcdctl watch does, until SIGINT or SIGTERM.
 * A watch the server cancels (its start revision compacted) ends with exit 1.
 */
import type { Decoded, EtcdChannel } from '../client/index.js';
import { errorTable } from '../errors.js';
import { UsageError } from './args.js';
import { Interrupts } from './holding.js';
import { keyRange } from './kv.js';
import { goJson, headerJson, int, kvJson, simpleKv } from './output.js';
import { exitFailure, failureMessage, remoteOptionsHelp, runRemote } from './remote.js';

export const watchHelp = `Usage: dkv watch KEY [RANGE_END] [options]

Prints every change of KEY (or of the keys in [KEY, RANGE_END)) as etcdctl watch does: the event
(PUT or DELETE), the key and its value, a line each, until SIGINT or SIGTERM (then exit 0). A
watch whose start revision was compacted ends with a message and exit 1, as does one a split of
its store's shard cancels: a watch whose range the split cut in two, or a --prefix watched in
every shard (a watch whose keys all moved goes on in the new shard). A --prefix whose keys
span shards (stores mounted under it), which etcd's Watch does not serve, is watched through
dkv.v1's WatchPrefix in every shard instead (from now: each shard has its own revisions, so
--rev is refused there).

Options:
  --prefix               every key that starts with KEY
  --rev R                start at revision R (history included; 0: from now)
  --prev-kv              also print each key's previous value (before the new one)
  --progress-notify      ask the server for progress notifications ("progress notify: REV")
${remoteOptionsHelp}
Exit status: 0 interrupted, 1 the watch was cancelled or the server could not be reached,
2 bad command line.
`;

const watchOptions = {
  prefix: { type: 'boolean' },
  rev: { type: 'string' },
  'prev-kv': { type: 'boolean' },
  'progress-notify': { type: 'boolean' },
} as const;

/** An event as clientv3 holds it (etcdctl -w json). */
function eventJson(e: Decoded): object {
  return {
    type: e.type === 'DELETE' || e.type === 1 ? 1 : undefined,
    kv: e.kv == null ? undefined : kvJson(e.kv as Decoded),
    prev_kv: e.prev_kv == null ? undefined : kvJson(e.prev_kv as Decoded),
  };
}

/** etcd's WatchResponse as clientv3 holds it, which etcdctl -w json marshals (no json tags). */
function watchJson(r: Decoded): string {
  const events = (r.events as Decoded[]).map(eventJson);
  return goJson({ Header: headerJson(r.header) ?? {}, Events: events.length === 0 ? null : events, CompactRevision: int(r.compact_revision) ?? 0, Canceled: r.canceled === true, Created: r.created === true });
}

function watchSimple(r: Decoded): string {
  let out = '';
  for (const e of r.events as Decoded[]) {
    out += `${e.type === 'DELETE' || e.type === 1 ? 'DELETE' : 'PUT'}\n`;
    if (e.prev_kv != null) out += simpleKv(e.prev_kv as Decoded, false);
    out += simpleKv(e.kv as Decoded, false);
  }
  return out;
}

/**
 * A prefix across shards through dkv.v1 WatchPrefix, printed as the etcd watch prints (json: the
 * header holds the revision of the response's shard, which `Shard` names).
 */
function watchAcrossShards(channel: EtcdChannel, key: Buffer, prevKv: boolean, progressNotify: boolean, format: string, stop: AbortSignal, auth: object): Promise<number> {
  // keyRange gives the empty prefix as key \0 with range end \0.
  const prefix = key.length === 1 && key[0] === 0 ? Buffer.alloc(0) : key;
  if (stop.aborted) return Promise.resolve(0);
  return new Promise<number>((resolve) => {
    const stream = channel.prefixWatch(
      { prefix, prev_kv: prevKv },
      {
        onResponse: (r) => {
          if (r.canceled === true) {
            process.stderr.write(`dkv watch: watch was canceled (${String(r.cancel_reason)})\n`);
            stream.close();
            resolve(exitFailure);
            return;
          }
          const events = (r.events as Decoded[] | undefined) ?? [];
          if (events.length === 0) {
            // A shard's start (shard_count set) says where its watch begins: not a progress notification.
            const start = Number(r.shard_count ?? 0) > 0;
            if (progressNotify && !start && format === 'simple') process.stdout.write(`progress notify: ${String(r.revision)} (shard ${String(r.shard)})\n`);
            return;
          }
          process.stdout.write(format === 'json' ? `${goJson({ Shard: int(r.shard) ?? 0, Header: { revision: int(r.revision) ?? 0 }, Events: events.map(eventJson), CompactRevision: 0, Canceled: false, Created: false })}\n` : watchSimple(r));
        },
        onEnd: (error) => {
          if (error === undefined) return;
          process.stderr.write(`dkv watch: ${failureMessage(error)}\n`);
          resolve(exitFailure);
        },
      },
      { timeoutMs: Infinity, ...auth },
    );
    stop.addEventListener('abort', () => {
      stream.close();
      resolve(0);
    });
  });
}

export function watchCommand(args: string[]): Promise<number> {
  return runRemote({ name: 'watch', help: watchHelp, options: watchOptions }, args, async (remote, o, positionals) => {
    const range = keyRange(positionals, o.prefix === true, false, 'watch');
    const rev = o.rev ?? '0';
    if (!/^\d+$/.test(rev)) throw new UsageError(`--rev must be a revision (a whole number >= 0), got "${rev}"`);
    const interrupts = new Interrupts();
    const channel = remote.endpoints.channel();
    const auth = await remote.endpoints.authOptions();
    try {
      return await new Promise<number>((resolve) => {
        const stream = channel.watch(
          {
            onResponse: (r) => {
              if (r.created === true && (r.events as Decoded[]).length === 0 && r.canceled !== true) return;
              if (r.canceled === true && o.prefix === true && r.cancel_reason === errorTable['watch-cross-shard'].message && rev === '0') {
                // The prefix spans shards: dkv.v1 watches it in each of them.
                stream.close();
                resolve(watchAcrossShards(channel, range.key, o['prev-kv'] === true, o['progress-notify'] === true, remote.format, interrupts.signal, auth));
                return;
              }
              if (r.canceled === true) {
                const reason = typeof r.cancel_reason === 'string' && r.cancel_reason !== '' ? r.cancel_reason : 'etcdserver: mvcc: required revision has been compacted';
                process.stderr.write(`dkv watch: watch was canceled (${reason})\n`);
                stream.close();
                resolve(exitFailure);
                return;
              }
              const isProgress = (r.events as Decoded[]).length === 0;
              if (isProgress && remote.format === 'simple') process.stdout.write(`progress notify: ${String((r.header as Decoded).revision)}\n`);
              else process.stdout.write(remote.format === 'json' ? `${watchJson(r)}\n` : watchSimple(r));
            },
            onEnd: (error) => {
              if (error === undefined) return;
              process.stderr.write(`dkv watch: ${failureMessage(error)}\n`);
              resolve(exitFailure);
            },
          },
          { timeoutMs: Infinity, ...auth },
        );
        stream.send({
          create_request: { ...range, start_revision: rev, prev_kv: o['prev-kv'] === true, progress_notify: o['progress-notify'] === true },
        });
        interrupts.signal.addEventListener('abort', () => {
          stream.close();
          resolve(0);
        });
      });
    } finally {
      interrupts.dispose();
    }
  });
}
