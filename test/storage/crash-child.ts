/**
 * The process the crash test SIGKILLs. It opens the store, works out from shard 0 which batch it
 * reflects, and saves batch after batch of the crash workload (several in flight, some in the same
 * turn) until it is killed, printing "ack k" the moment save k resolves.
 *
 *   node --import tsx test/storage/crash-child.ts <path>   (the crash test runs it bundled: log-crash.test.ts)
 */
import { writeSync } from 'node:fs';
import { LevelLogStore } from '../../storage/log/index.js';
import { applyBatch, batchOf, emptyModels, makeBatch, SHARDS, type Models } from './crash-workload.js';

const path = process.argv[2];
if (path === undefined) throw new Error('usage: crash-child.ts <path>');

const store = await LevelLogStore.open({ path });
const models: Models = emptyModels();
// Rebuild the workload's view from the recovered store: the same state the parent replayed.
for (const shard of SHARDS) {
  const log = store.shard(shard);
  const model = models.get(shard)!;
  const first = log.firstIndex();
  const last = log.lastIndex();
  if (last >= first || first > 1) {
    if (first > 1) {
      model.storage.applySnapshot({ metadata: { index: first - 1, term: log.term(first - 1), confState: log.initialState().confState }, data: new Uint8Array(0) });
    }
    if (last >= first) model.storage.append(log.entries(first, last + 1, Number.MAX_SAFE_INTEGER));
    model.term = Math.max(log.term(last), log.initialState().hardState.term);
  }
  model.storage.setHardState(log.initialState().hardState);
  model.applied = log.applied;
}
const marker = store.shard(0);
let k = marker.lastIndex() === 0 ? 1 : batchOf(marker.entries(marker.lastIndex(), marker.lastIndex() + 1, 1e9)[0]!) + 1;
writeSync(1, `ready ${k}\n`);

let inFlight = 0;
const IN_FLIGHT_MAX = 4;

function pump(): void {
  // One or two saves per turn, up to four in flight.
  const burst = 1 + (k % 2);
  for (let i = 0; i < burst && inFlight < IN_FLIGHT_MAX; i++) {
    const batch = makeBatch(k, models);
    applyBatch(batch, models);
    const number = k++;
    inFlight++;
    store.save(batch).then(
      () => {
        inFlight--;
        writeSync(1, `ack ${number}\n`);
      },
      (error: unknown) => {
        writeSync(2, `save ${number} failed: ${String(error)}\n`);
        process.exit(3);
      },
    );
  }
  setImmediate(pump);
}
pump();
