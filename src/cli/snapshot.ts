/**
 * `dkv snapshot save`: a running member's snapshot (Maintenance.Snapshot) to a file, checked;
 * `dkv snapshot restore`: a new cluster's data directories from such a file.
 */
import { createHash } from 'node:crypto';
import { type FileHandle, open, rename, rm } from 'node:fs/promises';
import { type Decoded, longsAsStrings, methodCodec } from '../client/index.js';
import { ConfigError, parseServerConfig } from '../server/config.js';
import { SNAPSHOT_HASH_BYTES } from '../server/snapshot-file.js';
import { UsageError } from './args.js';
import { type Remote, remoteOptionsHelp, runRemote } from './remote.js';

export const snapshotHelp = `Usage: dkv snapshot save FILE [options]
       dkv snapshot restore FILE --name NAME --data-dir DIR --initial-cluster NAME=URL,...
                            --initial-advertise-peer-urls URL [--initial-cluster-token TOKEN]

  save      streams a snapshot of the first endpoint's member to FILE (through FILE.part, renamed
            once complete), checks its size and SHA-256 as etcdctl's restore does, and prints
            "Snapshot saved at FILE". On a terminal it shows the bytes received on stderr.
  restore   see below; "dkv snapshot restore --help"
`;

export const snapshotSaveHelp = `Usage: dkv snapshot save FILE [options]

Streams a snapshot of a member (the first endpoint given) to FILE: the default store and every
store's shards, each as the member applied it (a store being created or dropped is left out).
Written to FILE.part,
checked (size a multiple of 512 plus the SHA-256 that ends it, and the SHA-256 itself), synced
and renamed to FILE; then prints "Snapshot saved at FILE". "dkv snapshot restore" (and
"etcdctl snapshot save" against DKV) use the same file format. On a terminal, the bytes received
so far are shown on stderr.

Options:
${remoteOptionsHelp}
Exit status: 0 saved, 1 the server refused or could not be reached, or the snapshot failed its
check (FILE is then not written), 2 bad command line.
`;

export const snapshotRestoreHelp = `Usage: dkv snapshot restore FILE --name NAME --data-dir DIR --initial-cluster NAME=URL,...
                            --initial-advertise-peer-urls URL [--initial-cluster-token TOKEN]

Creates DIR for member NAME of a NEW cluster from FILE (written by "etcdctl snapshot save" against
DKV), as "etcdctl snapshot restore" does for etcd: the keys keep their revisions and history; the
membership is the one given here. The stores in FILE come back with their keys (each shard's own
revisions), under new shard ids. Run it once per member with the same --initial-cluster and
token, then start each member with "dkv server" and the same flags. DIR must be new or empty.

Options are dkv server's flags (see "dkv server --help"); the ones above matter here.
`;

export async function snapshotCommand(args: string[]): Promise<number> {
  const [action, file, ...flags] = args;
  if (action === undefined || action === '--help' || action === '-h') {
    (action === undefined ? process.stderr : process.stdout).write(snapshotHelp);
    return action === undefined ? 2 : 0;
  }
  if (action === 'save') return saveCommand(args.slice(1));
  if (action === 'restore' && (args.includes('--help') || args.includes('-h'))) {
    process.stdout.write(snapshotRestoreHelp);
    return 0;
  }
  if (action !== 'restore' || file === undefined || file.startsWith('-')) {
    const message = action === 'restore' ? 'restore needs a FILE' : `unknown snapshot subcommand "${action}"`;
    process.stderr.write(`dkv snapshot: ${message}\n\n${snapshotHelp}`);
    return 2;
  }
  let config;
  try {
    config = parseServerConfig(flags, process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`dkv snapshot restore: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  const { restoreMember, RestoreError } = await import('../server/restore.js');
  try {
    const { keys, revision, stores } = await restoreMember(config, file);
    const withStores = stores === 0 ? '' : ` (and ${stores} store${stores === 1 ? '' : 's'})`;
    process.stdout.write(`restored ${keys} keys at revision ${revision}${withStores} into ${config.dataDir} for member ${config.name}\n`);
    return 0;
  } catch (error) {
    if (error instanceof RestoreError) {
      process.stderr.write(`dkv snapshot restore: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}

const snapshotCodec = methodCodec('etcdserverpb.Maintenance', 'Snapshot', longsAsStrings);
/** Snapshot files are a whole number of these (a bolt database's pages, which etcdctl checks) plus the hash. */
const snapshotAlignBytes = 512;
/** How often the terminal's progress line is redrawn at most. */
const progressIntervalMs = 200;
/** The check reads the file back in pieces of this size. */
const checkReadBytes = 1 << 20;

function saveCommand(args: string[]): Promise<number> {
  return runRemote({ name: 'snapshot save', help: snapshotSaveHelp, options: {} }, args, async (remote, _o, positionals) => {
    const [file, ...extra] = positionals;
    if (file === undefined || file === '') throw new UsageError('snapshot save needs a FILE');
    if (extra.length > 0) throw new UsageError(`too many arguments: ${extra.join(' ')}`);
    const partial = `${file}.part`;
    const handle = await open(partial, 'w');
    try {
      const size = await receive(remote, handle);
      await handle.sync();
      await handle.close();
      await checkSnapshotFile(partial, size);
      await rename(partial, file);
    } catch (error) {
      await handle.close().catch(() => undefined);
      await rm(partial, { force: true });
      throw error;
    }
    process.stdout.write(`Snapshot saved at ${file}\n`);
    return 0;
  });
}

/** Writes the Snapshot stream's blobs to `handle`; the byte count. Progress on stderr only on a terminal. */
async function receive(remote: Remote, handle: FileHandle): Promise<number> {
  const stream = remote.endpoints.channel().serverStream(snapshotCodec, {}, { timeoutMs: Infinity, ...(await remote.endpoints.authOptions()) });
  const progress = process.stderr.isTTY === true;
  let received = 0;
  let shown = 0;
  for await (const chunk of stream as AsyncIterable<Decoded>) {
    const blob = chunk.blob as Buffer;
    await handle.write(blob);
    received += blob.length;
    if (progress && Date.now() - shown >= progressIntervalMs) {
      shown = Date.now();
      process.stderr.write(`\rreceived ${received} bytes, ${String(chunk.remaining_bytes)} remaining`);
    }
  }
  if (progress) process.stderr.write(`\rreceived ${received} bytes${' '.repeat(24)}\n`);
  return received;
}

/** etcdctl's check of a snapshot: a multiple of 512 bytes, then the SHA-256 of them, which must match. */
async function checkSnapshotFile(path: string, size: number): Promise<void> {
  if (size < SNAPSHOT_HASH_BYTES || (size - SNAPSHOT_HASH_BYTES) % snapshotAlignBytes !== 0) {
    throw new Error(`the snapshot received is ${size} bytes, not a multiple of ${snapshotAlignBytes} plus a ${SNAPSHOT_HASH_BYTES}-byte hash: it is incomplete`);
  }
  const hash = createHash('sha256');
  const tail = Buffer.alloc(SNAPSHOT_HASH_BYTES);
  const handle = await open(path, 'r');
  try {
    const body = size - SNAPSHOT_HASH_BYTES;
    const buffer = Buffer.alloc(checkReadBytes);
    for (let at = 0; at < body; ) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, body - at), at);
      hash.update(buffer.subarray(0, bytesRead));
      at += bytesRead;
    }
    await handle.read(tail, 0, SNAPSHOT_HASH_BYTES, body);
  } finally {
    await handle.close();
  }
  if (!hash.digest().equals(tail)) throw new Error('the snapshot received does not match its SHA-256: it is damaged');
}
