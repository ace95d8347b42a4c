/**
 * The lock workload's clients, seen from the harness: one OS process per client
 * (`lock-worker.js` → `lock-worker.ts`, started with `child_process.fork`), each reporting its
 * operations over IPC (`lock-protocol.ts`) with timestamps from the run's shared monotonic clock
 * (`clock.ts`), gathered here into one history.
 *
 * **Holder pauses** are real: when a holder reaches its pause point (after its first round of
 * writes) and a planned pause is due (`HolderPauses`), the harness sends its process SIGSTOP,
 * reads /proc/<pid>/stat until the state is `T` (stopped) and records that, waits 2.5–3.5 lease
 * TTLs, sends SIGCONT and lets the holder go on. While it is stopped nothing in it runs — its
 * lease keep-alive stops by itself — so the lease expires and another client takes the lock; once
 * continued it writes at once (fenced and unfenced) without looking at its lease.
 *
 * Every worker is killed on every way out: the run's end (`stop`, then SIGKILL past
 * `workerExitWaitMs`), an abort, an error, and `killAllNow` for the command's exit handler. A
 * worker whose IPC channel closes (the harness died) exits by itself.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { join } from 'node:path';
import { packageRoot } from '../../src/package-root.js';
import type { PausedHolder } from '../check/index.js';
import type { FaultWindow, Operation } from '../history.js';
import { type Invocation, pause } from './client-loop.js';
import type { ClientCluster } from './clients.js';
import { encodeOrigin } from './clock.js';
import type { Target } from './cluster.js';
import { type HarnessMessage, type PausePoint, parseWorkerMessage } from './lock-protocol.js';
import type { PlannedHolderPause } from './nemesis.js';
import { processState, waitForState } from './proc-state.js';

/** The worker's entry (bin/lock-worker.js: the compiled build or the sources, as bin/dkv.js runs). */
export const lockWorkerEntry = join(packageRoot, 'bin', 'lock-worker.js');
/** How long a worker may take to finish its operation in flight and exit after `stop`; then SIGKILL. */
export const workerExitWaitMs = 10_000;
/** How long a worker may take to load (tsx compiles its TypeScript) before the run gives up. */
export const workerReadyWaitMs = 60_000;
/** How long SIGSTOP / SIGCONT may take to show in /proc/<pid>/stat. */
export const stopStateWaitMs = 1000;
/** stderr kept per worker, for the error when one dies. */
const stderrTailBytesMax = 4096;

// ---- Holder pauses ------------------------------------------------------------------------------

/** A holder pause as it happened (`start`: SIGSTOP sent, `end`: SIGCONT sent; `stopped`: state `T` seen). */
export type HolderPause = PausedHolder;

/**
 * Hands the planned pauses out in plan order. The plan's times count from the first time a
 * client held the lock (`held`), so the first pause comes early whatever the cluster's start-up
 * took; a pause that would end past `endByMs` (ms since the run began) is skipped, so the run's
 * end stays healed.
 */
export class HolderPauses {
  private next = 0;
  private firstHeldAt: number | undefined;
  private resolveFirstEnd: ((at: number) => void) | undefined;
  /** Resolves with the first pause's end (the nemesis's server faults wait for it). */
  readonly firstEnd: Promise<number>;

  constructor(
    private readonly plan: readonly PlannedHolderPause[],
    private readonly endByMs: number,
  ) {
    this.firstEnd = new Promise((resolve) => {
      this.resolveFirstEnd = resolve;
    });
  }

  /** A client holds the lock at `now` (the first call starts the plan's clock). */
  held(now: number): void {
    this.firstHeldAt ??= now;
  }

  /** How long the holder at `now`, whose lease has `ttlMs`, must pause; undefined: none due. */
  claim(now: number, ttlMs: number): number | undefined {
    if (this.firstHeldAt === undefined) return undefined;
    for (;;) {
      const due = this.plan[this.next];
      if (due === undefined || now < this.firstHeldAt + due.at) return undefined;
      this.next++;
      const durationMs = Math.ceil(due.ttlFactor * ttlMs);
      if (now + durationMs > this.endByMs) continue;
      return durationMs;
    }
  }

  /** A pause ended at `now` (SIGCONT sent). */
  ended(now: number): void {
    this.resolveFirstEnd?.(now);
    this.resolveFirstEnd = undefined;
  }

  get planned(): number {
    return this.plan.length;
  }
}

// ---- The worker processes ------------------------------------------------------------------------

export interface LockClientsOptions {
  readonly cluster: ClientCluster;
  readonly target: Target;
  readonly keyPrefix: string;
  readonly clients: number;
  readonly pauses: HolderPauses;
  /** The run's clock origin (`clock.ts`), read when the clients start; `now` reads the same clock. */
  readonly clockOrigin: () => bigint;
  readonly now: () => number;
  readonly onOperation?: (op: Operation) => void;
  readonly log?: (message: string) => void;
}

export interface LockRecorded {
  readonly operations: Operation[];
  /** `holder-pause` fault windows. */
  readonly pauses: FaultWindow[];
  readonly holderPauses: HolderPause[];
  /** Every worker's pid, for whoever must prove none is left. */
  readonly pids: number[];
}

interface Worker {
  readonly client: number;
  readonly child: ChildProcess;
  readonly pending: Map<number, Invocation>;
  readonly exited: Promise<void>;
  /** Resolves once the worker has loaded and waits for `start`. */
  readonly ready: Promise<void>;
  readonly onReady: () => void;
  stderr: string;
  done: boolean;
  /** `early`: it exited before the run's end (it crashed). */
  readonly flags: { early: boolean };
  /** Set while the harness holds the process stopped. */
  stopped: boolean;
}

export class LockClients {
  private readonly operations: Operation[] = [];
  private readonly windows: FaultWindow[] = [];
  private readonly holderPauses: HolderPause[] = [];
  private readonly workers: Worker[] = [];

  constructor(private readonly options: LockClientsOptions) {}

  /**
   * Starts every worker process and waits until each has loaded (compiling the TypeScript takes a
   * while on a busy machine: not the run's time). Throws if one exits or `workerReadyWaitMs` passes.
   */
  async spawn(signal: AbortSignal): Promise<void> {
    if (this.workers.length > 0) throw new TypeError('lock clients: spawned twice');
    for (let client = 0; client < this.options.clients; client++) this.workers.push(this.fork(client, signal));
    const waited = new AbortController();
    const timeout = pause(workerReadyWaitMs, waited.signal).then(() => 'timeout' as const);
    const outcome = await Promise.race([Promise.all(this.workers.map((w) => w.ready)).then(() => 'ready' as const), timeout, ...this.workers.map((w) => w.exited.then(() => 'exited' as const))]);
    waited.abort();
    if (outcome !== 'ready') {
      this.killAllNow();
      const stderr = this.workers.map((w) => w.stderr.trim()).filter((t) => t !== '').join('\n');
      throw new Error(`lock clients: ${outcome === 'timeout' ? `not all ready within ${workerReadyWaitMs} ms` : 'a client process exited while starting'}${stderr === '' ? '' : `: ${stderr}`}`);
    }
  }

  async run(signal: AbortSignal): Promise<LockRecorded> {
    try {
      if (this.workers.length === 0) await this.spawn(signal);
      for (const worker of this.workers) this.start(worker);
      const stopAll = (): void => {
        for (const worker of this.workers) this.send(worker, { type: 'stop' });
      };
      if (signal.aborted) stopAll();
      else signal.addEventListener('abort', stopAll, { once: true });
      await Promise.all(this.workers.map((worker) => this.finish(worker, signal)));
    } finally {
      this.killAllNow();
    }
    const operations = this.operations.sort((a, b) => a.call - b.call || a.id - b.id).map((op, id) => ({ ...op, id }));
    return {
      operations,
      pauses: [...this.windows].sort((a, b) => a.start - b.start),
      holderPauses: [...this.holderPauses].sort((a, b) => a.start - b.start),
      pids: this.workers.map((w) => w.child.pid ?? -1),
    };
  }

  /** SIGKILL (which ends a stopped process too) to every worker still running. */
  killAllNow(): void {
    for (const { child } of this.workers) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }

  private fork(client: number, signal: AbortSignal): Worker {
    const child = fork(lockWorkerEntry, [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], execArgv: [], serialization: 'json' });
    const flags = { early: false };
    const exited = new Promise<void>((resolve) =>
      child.once('exit', () => {
        flags.early = !signal.aborted;
        resolve();
      }),
    );
    let onReady = (): void => undefined;
    const ready = new Promise<void>((resolve) => {
      onReady = resolve;
    });
    const worker: Worker = { client, child, pending: new Map(), exited, ready, onReady, flags, stderr: '', done: false, stopped: false };
    child.stderr?.on('data', (chunk: Buffer) => {
      worker.stderr = (worker.stderr + chunk.toString('utf8')).slice(-stderrTailBytesMax);
    });
    child.on('message', (raw: unknown) => this.onMessage(worker, raw, signal));
    child.on('error', (error) => this.options.log?.(`lock client ${client}: ${error.message}`));
    this.options.log?.(`lock client ${client}: pid ${child.pid ?? 'none'}`);
    return worker;
  }

  private start(worker: Worker): void {
    const { cluster, target, keyPrefix, clients, clockOrigin } = this.options;
    this.send(worker, {
      type: 'start',
      client: worker.client,
      clients,
      target,
      keyPrefix,
      members: cluster.members.map((m) => ({ name: m.name, endpoint: cluster.endpoint(m.name) })),
      clockOrigin: encodeOrigin(clockOrigin()),
    });
  }

  private send(worker: Worker, message: HarnessMessage): void {
    if (worker.child.connected) worker.child.send(message);
  }

  private onMessage(worker: Worker, raw: unknown, signal: AbortSignal): void {
    const message = parseWorkerMessage(raw);
    switch (message.type) {
      case 'ready':
        worker.onReady();
        return;
      case 'invoke':
        worker.pending.set(message.invocation.id, message.invocation);
        return;
      case 'complete': {
        worker.pending.delete(message.op.id);
        this.record(worker, message.op);
        const input = message.op.input as { f?: unknown };
        if (input.f === 'acquire' && message.op.status === 'ok' && message.op.ret !== undefined) this.options.pauses.held(message.op.ret);
        return;
      }
      case 'pause-point':
        void this.pausePoint(worker, message, signal).then((paused) => this.send(worker, { type: 'continue', paused }));
        return;
      case 'done':
        worker.done = true;
        return;
    }
  }

  /** Ids are per worker: made unique here (and renumbered in call order at the end). */
  private record(worker: Worker, op: Operation): void {
    const recorded = { ...op, id: op.id * this.options.clients + worker.client };
    this.operations.push(recorded);
    this.options.onOperation?.(recorded);
  }

  /** Stops the holder for the pause due, if any; true if it was stopped. */
  private async pausePoint(worker: Worker, point: PausePoint, signal: AbortSignal): Promise<boolean> {
    const { now, pauses, log } = this.options;
    const pid = worker.child.pid;
    if (signal.aborted || pid === undefined) return false;
    const durationMs = pauses.claim(now(), point.ttlMs);
    if (durationMs === undefined) return false;
    const start = now();
    worker.child.kill('SIGSTOP');
    worker.stopped = true;
    const stopped = await waitForState(pid, (state) => state === 'T', stopStateWaitMs);
    const description = `SIGSTOP process ${point.process} (pid ${pid}) holding token ${point.token} for ${durationMs} ms (lease TTL ${point.ttlMs / 1000} s): ${stopped ? 'state T (stopped)' : `not seen stopped (state ${processState(pid) ?? 'gone'})`}`;
    log?.(`holder pause: ${description}`);
    const index = this.windows.length;
    this.windows.push({ kind: 'holder-pause', start, description });
    await pause(Math.max(0, start + durationMs - now()), signal);
    worker.child.kill('SIGCONT');
    worker.stopped = false;
    const end = now();
    await waitForState(pid, (state) => state !== 'T', stopStateWaitMs);
    this.windows[index] = { ...this.windows[index]!, end };
    pauses.ended(end);
    this.holderPauses.push({ process: point.process, token: point.token, pid, start, end, stopped });
    return true;
  }

  /** Waits for the worker to exit (after `stop`, within `workerExitWaitMs`), then records what it left unanswered. */
  private async finish(worker: Worker, signal: AbortSignal): Promise<void> {
    await Promise.race([worker.exited, new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))]);
    const waited = new AbortController();
    const exitedInTime = await Promise.race([worker.exited.then(() => true), pause(workerExitWaitMs, waited.signal).then(() => false)]);
    waited.abort();
    if (!exitedInTime) {
      this.options.log?.(`lock client ${worker.client} did not exit ${workerExitWaitMs} ms after stop: SIGKILL`);
      if (worker.stopped) worker.child.kill('SIGCONT');
      worker.child.kill('SIGKILL');
      await worker.exited;
    }
    if (worker.flags.early) {
      throw new Error(`lock client ${worker.client} (pid ${worker.child.pid}) exited early (${worker.child.exitCode ?? worker.child.signalCode}): ${worker.stderr.trim()}`);
    }
    // An operation the worker never reported back may have happened at any point after its call.
    for (const invocation of worker.pending.values()) this.record(worker, { ...invocation, status: 'info', error: 'the client process exited before it heard back' });
    worker.pending.clear();
  }
}
