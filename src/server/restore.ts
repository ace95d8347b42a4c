/**
 * Restoring a new cluster from a snapshot file (`dkv snapshot restore`), as `etcdctl snapshot
 * restore` does for etcd: each member of the new cluster gets a data directory whose meta shard
 * starts from the new membership and whose default store starts from the snapshot's keys (with
 * their revisions and history).
 */
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { LevelLogStore, joinSnapshotFrames, restoreSnapshot } from '../../storage/index.js';
import { kvEngineOf } from '../runtime/index.js';
import type { ServerConfig } from './config.js';
import { DEFAULT_STORE_SHARD, META_SHARD, bootstrapLog, initialMembers, shardStateMachine } from './node.js';
import { foundingIdentity, identityFile, writeIdentity } from './startup.js';
import { type SnapshotFileContents, readSnapshotFile } from './snapshot-file.js';

export class RestoreError extends Error {
  override readonly name = 'RestoreError';
}

/** Writes `config.dataDir` for this member from `file`. Refuses a non-empty data directory. */
export async function restoreMember(config: ServerConfig, file: string): Promise<{ keys: number; revision: number }> {
  if (existsSync(config.dataDir) && readdirSync(config.dataDir).length > 0) {
    throw new RestoreError(`data dir ${config.dataDir} is not empty; restore only into a new one`);
  }
  let contents: SnapshotFileContents;
  try {
    contents = readSnapshotFile(readFileSync(file));
  } catch (error) {
    throw new RestoreError(`${file}: ${error instanceof Error ? error.message : String(error)}`);
  }
  mkdirSync(config.dataDir, { recursive: true });
  const { entries, hardState } = bootstrapLog(config);
  const members = initialMembers(config);
  // The default store starts from a Raft snapshot standing in for the bootstrap entries.
  const index = entries.length;
  const machine = shardStateMachine(DEFAULT_STORE_SHARD);
  if (contents.format === 2) {
    try {
      machine.restoreAsNew(contents.stateMachine, index);
    } catch (error) {
      throw new RestoreError(`${file}: ${error instanceof Error ? error.message : String(error)}`);
    }
  } else {
    // An earlier build's file: keys only.
    const restored = await restoreSnapshot(contents.mvccFrames);
    restored.appliedIndex = index;
    kvEngineOf(machine).mvcc = restored;
    machine.adoptAt(index);
  }
  const store = kvEngineOf(machine).mvcc;
  const snapshot = {
    metadata: { index, term: 1, confState: { voters: members.map((m) => m.id), votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } },
    data: joinSnapshotFrames(machine.snapshot()),
  };
  const log = await LevelLogStore.open({ path: join(config.dataDir, 'raft') });
  try {
    await log.save([
      { shard: META_SHARD, entries, hardState },
      { shard: DEFAULT_STORE_SHARD, snapshot, hardState },
    ]);
  } finally {
    await log.close();
  }
  // Last: a directory with its identity file is a set-up member's (see startup.ts).
  writeIdentity(identityFile(config.dataDir), foundingIdentity(config));
  return { keys: store.keyCount, revision: store.revision };
}
