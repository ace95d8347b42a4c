/**
 * What `dkv lock` and `dkv elect` share: the signals that end a hold, the session key a Lock or
 * Campaign puts, and the call that waits for the lock or the leadership.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { type MethodCodec, methodCodec } from '../client/index.js';
import { type Endpoints, isUnavailable } from './remote.js';

/** The wait before calling again after an unavailable endpoint grows by this per failure, up to the max. */
const retryDelayMsStep = 100;
const retryDelayMsMax = 1000;

/**
 * SIGINT and SIGTERM caught while a command runs (Node would otherwise exit at once, leaving the
 * lock held until its lease expires): `signal` aborts on the first one; `onEach` hears every one.
 */
export class Interrupts {
  private readonly controller = new AbortController();
  readonly signal: AbortSignal = this.controller.signal;
  private readonly listeners = new Set<(name: NodeJS.Signals) => void>();
  private readonly onSignal = (name: NodeJS.Signals): void => {
    this.controller.abort(new Error(`interrupted by ${name}`));
    for (const listener of this.listeners) listener(name);
  };

  constructor() {
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
  }

  /** Resolves on the first signal (at once if one came already). */
  get received(): Promise<void> {
    if (this.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => this.signal.addEventListener('abort', () => resolve(), { once: true }));
  }

  /** Calls `listener` on every signal from now until the returned function is called. */
  onEach(listener: (name: NodeJS.Signals) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  dispose(): void {
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
    this.listeners.clear();
  }
}

/**
 * The key a Lock or Campaign under session lease `leaseId` (decimal int64 text) puts: etcd's
 * layout, `name/<lease as Go's %x>`, which the Lock and Election services of etcd and DKV share.
 */
export function sessionKeyOf(name: string, leaseId: string): Buffer {
  const id = BigInt(leaseId);
  const hex = id < 0n ? `-${(-id).toString(16)}` : id.toString(16);
  return Buffer.from(`${name}/${hex}`);
}

const deleteCodec = methodCodec('etcdserverpb.KV', 'DeleteRange');

/**
 * A call that waits for its turn (Lock, Campaign): no deadline, until `signal` aborts. When the
 * node serving it becomes unavailable (it stopped, lost its leader, or the connection broke) the
 * call goes to the next endpoint, but first `ownKey` is deleted: the node that lost the call may
 * still take that key out of the queue, and would then delete the generation a retry found in
 * place and waited (or won) with. A new generation is never mistaken for the old one.
 */
export async function waitingCall<R>(endpoints: Endpoints, codec: MethodCodec<R>, request: object, ownKey: Buffer, signal: AbortSignal): Promise<R> {
  let keyMayExist = false;
  for (let failures = 0; ; ) {
    try {
      if (keyMayExist) {
        await endpoints.unary(deleteCodec, { key: ownKey }, { signal });
        keyMayExist = false;
      }
      return await endpoints.withAuth((auth) => endpoints.channel().unary(codec, request, { timeoutMs: Infinity, signal, ...auth }));
    } catch (error) {
      if (!isUnavailable(error) || signal.aborted) throw error;
      keyMayExist = true;
      failures++;
      endpoints.failover();
      await sleep(Math.min(retryDelayMsMax, retryDelayMsStep * failures), undefined, { signal });
    }
  }
}
