/**
 * Restoring a new cluster from a snapshot file (`dkv snapshot restore`), as `etcdctl snapshot
 * restore` does for etcd: each member of the new cluster gets a data directory whose meta shard
 * starts from the new membership and whose default store starts from the snapshot's keys (with
 * their revisions and history).
 *
 * A file that holds stores gives them back: the meta shard's log mounts and activates each after
 * the membership (the new cluster gives their shards ids of its own, and every member's restore
 * writes the same entries), the default store cedes each store's prefix to it, and each store
 * shard starts from its own snapshot in the file. Every member computes the same states, so the
 * replicas agree from the first entry on.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { type ConfChange, type Entry, decodeConfChange } from '../../raft/index.js';
import { LevelLogStore, type ShardUpdate, joinSnapshotFrames, restoreSnapshot } from '../../storage/index.js';
import { type EngineCommand, cedeCommand } from '../engines/index.js';
import { activateStoreCommand, mountStoreCommand } from '../engines/meta/index.js';
import { type ShardStateMachine, encodeEnvelope, kvEngineOf, metaEngineOf, unwrapConfContext } from '../runtime/index.js';
import type { ServerConfig } from './config.js';
import { DEFAULT_STORE_SHARD, META_SHARD, bootstrapLog, initialMembers, shardStateMachine } from './node.js';
import { foundingIdentity, identityFile, writeIdentity } from './startup.js';
import { type SnapshotFileContents, type SnapshotStore, readSnapshotFile } from './snapshot-file.js';

export class RestoreError extends Error {
  override readonly name = 'RestoreError';
}

/** Writes `config.dataDir` for this member from `file`. Refuses a non-empty data directory. */
export async function restoreMember(config: ServerConfig, file: string): Promise<{ keys: number; revision: number; stores: number }> {
  if (existsSync(config.dataDir) && readdirSync(config.dataDir).length > 0) {
    throw new RestoreError(`data dir ${config.dataDir} is not empty; restore only into a new one`);
  }
  let contents: SnapshotFileContents;
  try {
    contents = readSnapshotFile(readFileSync(file));
  } catch (error) {
    throw new RestoreError(`${file}: ${error instanceof Error ? error.message : String(error)}`);
  }
  const { entries, hardState } = bootstrapLog(config);
  const members = initialMembers(config);
  const confState = { voters: members.map((m) => m.id), votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
  // The default store starts from a Raft snapshot standing in for the bootstrap entries.
  const index = entries.length;
  const machine = shardStateMachine(DEFAULT_STORE_SHARD);
  const updates: ShardUpdate[] = [];
  const restoreAt = (target: ShardStateMachine, data: Uint8Array, at: number): void => {
    try {
      target.restoreAsNew(data, at);
    } catch (error) {
      throw new RestoreError(`${file}: ${error instanceof Error ? error.message : String(error)}`);
    }
  };
  if (contents.format !== 1) {
    restoreAt(machine, contents.stateMachine, index);
    const stores = restoreStores(contents.stores, entries, machine, file);
    for (const { shard, data } of stores.shards) {
      const target = shardStateMachine(shard);
      restoreAt(target, data, index);
      updates.push({ shard, snapshot: { metadata: { index, term: 1, confState }, data: joinSnapshotFrames(target.snapshot()) }, hardState });
    }
  } else {
    // An earlier build's file: keys only.
    const restored = await restoreSnapshot(contents.mvccFrames);
    restored.appliedIndex = index;
    kvEngineOf(machine).mvcc = restored;
    machine.adoptAt(index);
  }
  const store = kvEngineOf(machine).mvcc;
  // The default store's snapshot stands at its last applied entry (after the cessions, if any).
  const applied = machine.appliedIndex;
  const snapshot = { metadata: { index: applied, term: 1, confState }, data: joinSnapshotFrames(machine.snapshot()) };
  mkdirSync(config.dataDir, { recursive: true });
  const log = await LevelLogStore.open({ path: join(config.dataDir, 'raft') });
  try {
    await log.save([
      { shard: META_SHARD, entries, hardState: { ...hardState, commit: entries.length } },
      { shard: DEFAULT_STORE_SHARD, snapshot, hardState: { ...hardState, commit: applied } },
      ...updates,
    ]);
  } finally {
    await log.close();
  }
  // Last: a directory with its identity file is a set-up member's (see startup.ts).
  writeIdentity(identityFile(config.dataDir), foundingIdentity(config));
  return { keys: store.keyCount, revision: store.revision, stores: contents.format === 1 ? 0 : contents.stores.length };
}

/** A fixed time for the entries a restore writes: every member's restore must write the same bytes. */
const restoreEntryTimestampMs = 0;

function entryOf(command: EngineCommand, index: number): Entry {
  return { index, term: 1, type: 'normal', data: encodeEnvelope({ ...command, timestampMs: restoreEntryTimestampMs, proposer: 0, requestId: 0 }) };
}

/**
 * Appends to the meta shard's bootstrap `entries` a mount and an activation of each store, and
 * applies to the default store's `machine` a cession of each store's prefix; returns each store
 * shard's new id with its snapshot. The entries are applied here to a meta state machine first,
 * which gives the ids the new cluster's meta shard will give, and checks that each store's shards
 * cut its prefix as they did in the file.
 */
function restoreStores(stores: readonly SnapshotStore[], entries: Entry[], machine: ShardStateMachine, file: string): { shards: Array<{ shard: number; data: Uint8Array }> } {
  const shards: Array<{ shard: number; data: Uint8Array }> = [];
  if (stores.length === 0) return { shards };
  const meta = shardStateMachine(META_SHARD);
  for (const entry of entries) {
    const change = decodeConfChange(entry.data);
    const unwrapped = unwrapConfContext(change.context);
    const admitted: ConfChange = meta.admitConfChange({ ...change, context: unwrapped.payload });
    meta.applyConfChange(entry, admitted, { proposer: unwrapped.proposer, requestId: unwrapped.requestId });
  }
  const refuse = (store: SnapshotStore, why: string): never => {
    throw new RestoreError(`${file}: store ${store.name} cannot be restored: ${why}`);
  };
  const applyMeta = (command: EngineCommand, store: SnapshotStore): void => {
    const entry = entryOf(command, entries.length + 1);
    const outcome = meta.apply(entry)?.outcome as { kind?: string; message?: string } | undefined;
    if (outcome?.kind === 'error') refuse(store, outcome.message ?? 'refused');
    entries.push(entry);
  };
  for (const store of stores) {
    applyMeta(mountStoreCommand(store.name, store.prefix, store.shards.length), store);
    const mounted = metaEngineOf(meta).shardMap().shardsOf(store.name);
    const same = (a: Uint8Array | undefined, b: Uint8Array | undefined) => (a === undefined || b === undefined ? a === b : Buffer.from(a).equals(Buffer.from(b)));
    if (mounted.length !== store.shards.length || mounted.some((shard, i) => !same(shard.start, store.shards[i]!.start) || !same(shard.end, store.shards[i]!.end))) {
      refuse(store, "its shards' key ranges are not the ones a new store of as many shards gets");
    }
    applyMeta(activateStoreCommand(store.name, mounted[0]!.id), store);
    const ceded = machine.apply(entryOf(cedeCommand(store.prefix, mounted[0]!.id), machine.appliedIndex + 1))?.outcome as { kind?: string; message?: string } | undefined;
    if (ceded?.kind !== 'ok') refuse(store, ceded?.message ?? 'the default store did not cede its prefix');
    mounted.forEach((shard, i) => shards.push({ shard: shard.id, data: store.shards[i]!.stateMachine }));
  }
  return { shards };
}
