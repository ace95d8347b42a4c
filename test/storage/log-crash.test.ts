/**
 * Crash test with real processes: a child saves batches of the crash workload and is SIGKILLed at
 * random moments (during startup and recovery too); after each kill the store is reopened and
 * must equal the in-memory models replayed to exactly some batch B, where B is at least every
 * batch whose save had resolved (nothing acknowledged is lost) — a partial batch would match no
 * B. Hard state and last index agree because the models' do.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SeededPrng, isLogUnavailable } from '../../raft/index.js';
import { LevelLogStore, type ShardLog } from '../../storage/log/index.js';
import { SHARDS, applyBatch, batchOf, emptyModels, makeBatch, type ShardModel } from './crash-workload.js';
import { tempDir } from './temp-dir.js';

const KILLS = 55;
const CHILD = fileURLToPath(new URL('./crash-child.ts', import.meta.url));

/**
 * crash-child.ts and the store's sources, bundled once into one plain module in `dir` by esbuild —
 * the transform tsx itself runs (a devDependency at the version tsx and vite use) — so each of the many lives starts
 * as plain `node` instead of loading tsx's loader and transforming the sources again (most of a
 * life's time). Packages (level) stay imports, by their absolute path: the bundle lives outside
 * the checkout.
 */
async function bundleChild(dir: string): Promise<string> {
  const outfile = join(dir, 'crash-child.mjs');
  const require = createRequire(import.meta.url);
  await build({
    entryPoints: [CHILD],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'silent',
    plugins: [
      {
        name: 'packages-by-path',
        setup(builder) {
          builder.onResolve({ filter: /^[^./]/ }, (args) => (args.path.startsWith('node:') ? { external: true } : { path: require.resolve(args.path), external: true }));
        },
      },
    ],
  });
  return outfile;
}
/** The bundled child (beforeAll). */
let childModule = '';

interface Life {
  readyAt: number | undefined;
  maxAck: number;
  killedBeforeReady: boolean;
}

function runLife(path: string, prng: SeededPrng): Promise<Life> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(process.execPath, [childModule, path], { stdio: ['ignore', 'pipe', 'pipe'] });
    const life: Life = { readyAt: undefined, maxAck: 0, killedBeforeReady: false };
    let buffered = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    const kill = (): void => {
      if (life.readyAt === undefined) life.killedBeforeReady = true;
      child.kill('SIGKILL');
    };
    // One life in five is killed at a random moment after spawn (possibly while recovering).
    if (prng.nextInt(5) === 0) timer = setTimeout(kill, prng.nextInt(400));
    // The others are killed at a random moment shortly after their k-th acknowledged save (k drawn
    // here): counted in saves, not in milliseconds, so a loaded machine changes when a kill lands,
    // not how much work each life acknowledged.
    const killAfterAcks = 1 + prng.nextInt(40);
    const killDelayMs = prng.nextInt(5);
    let acks = 0;
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        const [word, number] = line.split(' ');
        if (word === 'ready') {
          life.readyAt = Number(number);
        } else if (word === 'ack') {
          life.maxAck = Math.max(life.maxAck, Number(number));
          if (life.readyAt !== undefined && ++acks === killAfterAcks && timer === undefined) timer = setTimeout(kill, killDelayMs);
        }
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (signal !== 'SIGKILL') reject(new Error(`crash child exited by itself (code ${code}): ${stderr}`));
      else resolve(life);
    });
  });
}

async function readAll(store: LevelLogStore, log: ShardLog, lo: number, hi: number) {
  try {
    return log.entries(lo, hi, Number.MAX_SAFE_INTEGER);
  } catch (error) {
    // Older entries are loaded in the background; this is the storage's protocol, not a retry.
    if (!isLogUnavailable(error, 'temporarily-unavailable')) throw error;
    await store.idle();
    return log.entries(lo, hi, Number.MAX_SAFE_INTEGER);
  }
}

async function expectShardEquals(store: LevelLogStore, shard: number, model: ShardModel): Promise<void> {
  const log = store.shard(shard);
  const m = model.storage;
  const where = `shard ${shard}`;
  expect({ where, first: log.firstIndex(), last: log.lastIndex(), hs: log.initialState().hardState, applied: log.applied }).toEqual({
    where,
    first: m.firstIndex(),
    last: m.lastIndex(),
    hs: m.initialState().hardState,
    applied: model.applied,
  });
  expect(log.term(log.firstIndex() - 1)).toBe(m.term(m.firstIndex() - 1));
  const got = await readAll(store, log, log.firstIndex(), log.lastIndex() + 1);
  const want = m.entries(m.firstIndex(), m.lastIndex() + 1, Number.MAX_SAFE_INTEGER);
  expect(got.length).toBe(want.length);
  for (let i = 0; i < got.length; i++) {
    const a = got[i]!;
    const b = want[i]!;
    if (a.index !== b.index || a.term !== b.term || a.type !== b.type || !Buffer.from(a.data).equals(Buffer.from(b.data))) {
      expect({ where, index: a.index, term: a.term, type: a.type, batch: batchOf(a) }).toEqual({ where, index: b.index, term: b.term, type: b.type, batch: batchOf(b) });
    }
  }
}

describe('the log store survives SIGKILL', () => {
  const dir = tempDir('crash');
  const bundleDir = tempDir('crash-child');
  beforeAll(async () => {
    childModule = await bundleChild(bundleDir.path);
  });
  afterAll(() => {
    dir.remove();
    bundleDir.remove();
  });

  it(`keeps every acknowledged batch and never shows a partial one, over ${KILLS} kills`, async () => {
    const prng = new SeededPrng(20261126);
    const models = emptyModels();
    let reflected = 0;
    let acked = 0;
    let killedWithUnackedWork = 0;
    let killedBeforeReady = 0;
    for (let kill = 0; kill < KILLS; kill++) {
      const life = await runLife(dir.path, prng);
      if (life.readyAt !== undefined) expect(life.readyAt).toBe(reflected + 1);
      if (life.killedBeforeReady) killedBeforeReady++;
      const store = await LevelLogStore.open({ path: dir.path });
      try {
        const marker = store.shard(0);
        const now = marker.lastIndex() === 0 ? 0 : batchOf((await readAll(store, marker, marker.lastIndex(), marker.lastIndex() + 1))[0]!);
        // Nothing acknowledged is lost, and nothing goes backwards.
        expect(now).toBeGreaterThanOrEqual(life.maxAck);
        expect(now).toBeGreaterThanOrEqual(reflected);
        if (now > life.maxAck) killedWithUnackedWork++;
        for (let k = reflected + 1; k <= now; k++) applyBatch(makeBatch(k, models), models);
        reflected = now;
        acked += life.readyAt === undefined ? 0 : Math.max(0, life.maxAck - life.readyAt + 1);
        for (const shard of SHARDS) await expectShardEquals(store, shard, models.get(shard)!);
      } finally {
        await store.close();
      }
    }
    // The test only means something if the children got real work done and were killed mid-write.
    expect(acked).toBeGreaterThan(KILLS * 10);
    expect(killedWithUnackedWork).toBeGreaterThan(0);
    console.log(`crash test: ${KILLS} kills (${killedBeforeReady} before recovery finished), ${reflected} batches reflected, ${acked} acknowledged, ${killedWithUnackedWork} kills left durable but unacknowledged batches`);
  });
});
