/**
 * What the harness and a lock client process (`lock-worker.ts`) say to each other over the IPC
 * channel Node's `fork` opens (one JSON message per `send`). Times are "ms since the run began"
 * on the shared clock (`clock.ts`), so the worker's records join the harness's history as they are.
 *
 * harness → worker:
 * - `start`: who the client is, the cluster, the clock's origin;
 * - `continue`: the answer to a `pause-point`; `paused` says the harness stopped the process
 *   (SIGSTOP … SIGCONT) meanwhile, so the holder must write at once without looking at its lease;
 * - `stop`: the run is over: finish the operation in flight, end the cycle, answer `done`, exit.
 *
 * worker → harness:
 * - `ready`: loaded, waiting for `start` (the run's clock starts once every worker is ready);
 * - `invoke` (an operation was called) and `complete` (it returned, or the client gave up on it):
 *   an invocation the harness never sees completed (the worker died) is recorded as unknown;
 * - `pause-point`: a holder finished its first round of writes and waits for `continue`; the
 *   harness may stop it here for the pause due;
 * - `done`.
 */
import type { Operation } from '../history.js';
import type { Invocation } from './client-loop.js';
import type { Target } from './cluster.js';

export interface StartMessage {
  readonly type: 'start';
  /** The client's first process number and member index. */
  readonly client: number;
  /** Clients in the run: a client whose operation never returned becomes process + this. */
  readonly clients: number;
  readonly target: Target;
  readonly keyPrefix: string;
  readonly members: readonly { readonly name: string; readonly endpoint: string }[];
  /** `clock.ts` origin, encoded. */
  readonly clockOrigin: string;
}

export type HarnessMessage = StartMessage | { readonly type: 'continue'; readonly paused: boolean } | { readonly type: 'stop' };

export interface PausePoint {
  readonly process: number;
  /** The lock's token (the lock key's create revision) the holder holds. */
  readonly token: number;
  readonly ttlMs: number;
}

export type WorkerMessage =
  | { readonly type: 'invoke'; readonly invocation: Invocation }
  | { readonly type: 'complete'; readonly op: Operation }
  | ({ readonly type: 'pause-point' } & PausePoint)
  | { readonly type: 'ready' }
  | { readonly type: 'done' };

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

const isCount = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;

/** A message from the harness, checked; anything else is a programmer error. */
export function parseHarnessMessage(value: unknown): HarnessMessage {
  if (isObject(value)) {
    if (value.type === 'stop') return { type: 'stop' };
    if (value.type === 'continue' && typeof value.paused === 'boolean') return { type: 'continue', paused: value.paused };
    if (
      value.type === 'start' &&
      isCount(value.client) &&
      isCount(value.clients) &&
      (value.target === 'dkv' || value.target === 'etcd') &&
      typeof value.keyPrefix === 'string' &&
      typeof value.clockOrigin === 'string' &&
      Array.isArray(value.members) &&
      value.members.every((m) => isObject(m) && typeof m.name === 'string' && typeof m.endpoint === 'string')
    ) {
      return value as unknown as StartMessage;
    }
  }
  throw new TypeError(`lock worker: not a harness message: ${JSON.stringify(value)}`);
}

/** A message from a worker, checked. */
export function parseWorkerMessage(value: unknown): WorkerMessage {
  if (isObject(value)) {
    if (value.type === 'done') return { type: 'done' };
    if (value.type === 'ready') return { type: 'ready' };
    if (value.type === 'invoke' && isObject(value.invocation) && isCount(value.invocation.id) && isCount(value.invocation.call)) return value as unknown as WorkerMessage;
    if (value.type === 'complete' && isObject(value.op) && isCount(value.op.id) && isCount(value.op.call)) return value as unknown as WorkerMessage;
    if (value.type === 'pause-point' && isCount(value.process) && isCount(value.token) && isCount(value.ttlMs)) return value as unknown as WorkerMessage;
  }
  throw new TypeError(`lock harness: not a worker message: ${JSON.stringify(value)}`);
}
