/** `dkv snapshot restore`: a new cluster's data directories from an `etcdctl snapshot save` file. */
import { ConfigError, parseServerConfig } from '../server/config.js';

export const snapshotHelp = `Usage: dkv snapshot restore FILE --name NAME --data-dir DIR --initial-cluster NAME=URL,...
                            --initial-advertise-peer-urls URL [--initial-cluster-token TOKEN]

Creates DIR for member NAME of a NEW cluster from FILE (written by "etcdctl snapshot save" against
DKV), as "etcdctl snapshot restore" does for etcd: the keys keep their revisions and history; the
membership is the one given here. Run it once per member with the same --initial-cluster and
token, then start each member with "dkv server" and the same flags. DIR must be new or empty.

Options are dkv server's flags (see "dkv server --help"); the ones above matter here.
`;

export async function snapshotCommand(args: string[]): Promise<number> {
  const [action, file, ...flags] = args;
  if (action === undefined || action === '--help' || action === '-h' || file === '--help' || file === '-h') {
    process.stdout.write(snapshotHelp);
    return action === undefined ? 2 : 0;
  }
  if (action !== 'restore' || file === undefined || file.startsWith('-')) {
    process.stderr.write(`dkv snapshot: expected "restore FILE [flags]"\n\n${snapshotHelp}`);
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
    const { keys, revision } = await restoreMember(config, file);
    process.stdout.write(`restored ${keys} keys at revision ${revision} into ${config.dataDir} for member ${config.name}\n`);
    return 0;
  } catch (error) {
    if (error instanceof RestoreError) {
      process.stderr.write(`dkv snapshot restore: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}
