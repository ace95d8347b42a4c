/**
 * DKV's atomic counters (`dkv.v1.Counter`): a key whose value is the decimal text of an int64.
 * Values are bigints (exact over int64). Not offered by etcd: every call then rejects with
 * NOT_SUPPORTED. Increment and decrement are not idempotent (an unknown outcome rejects with
 * UNKNOWN_OUTCOME); get, set and delete are retried like reads.
 */
import type { ClientCore } from './core.js';
import { DkvError, isDkvError } from './errors.js';
import type { CallOptionsCommon } from './kv.js';
import { idFromWire } from './wire.js';

function toDelta(n: bigint | number, what: string): string {
  if (typeof n === 'number' && !Number.isSafeInteger(n)) throw new DkvError('INVALID_ARGUMENT', `${what} must be an integer (got ${n})`);
  return BigInt(n).toString();
}

/** One counter key. */
export class Counter {
  /** @internal */
  constructor(
    private readonly core: ClientCore,
    /** The counter's key. */
    readonly key: Buffer,
  ) {}

  private async call(method: string, request: object, kind: 'read' | 'write', retry: 'safe' | 'unsafe', options: CallOptionsCommon): Promise<Record<string, unknown>> {
    try {
      return await this.core.unary({ service: 'dkv.v1.Counter', method, request: { key: this.key, ...request }, routeKey: this.key, kind, retry, what: `counter ${method.toLowerCase()}`, ...options });
    } catch (error) {
      if (isDkvError(error, 'NOT_SUPPORTED')) throw new DkvError('NOT_SUPPORTED', 'counters are a DKV extension (dkv.v1.Counter) this server does not offer', { grpcStatus: error.grpcStatus, serverMessage: error.serverMessage, cause: error });
      throw error;
    }
  }

  /** Adds `n` (default 1); the new value. */
  async increment(n: bigint | number = 1n, options: CallOptionsCommon = {}): Promise<bigint> {
    return idFromWire((await this.call('Increment', { delta: toDelta(n, 'n') }, 'write', 'unsafe', options)).value);
  }

  /** Subtracts `n` (default 1); the new value. */
  async decrement(n: bigint | number = 1n, options: CallOptionsCommon = {}): Promise<bigint> {
    return idFromWire((await this.call('Decrement', { delta: toDelta(n, 'n') }, 'write', 'unsafe', options)).value);
  }

  /** The value (0n for an absent key). */
  async get(options: CallOptionsCommon & { readonly serializable?: boolean } = {}): Promise<bigint> {
    return idFromWire((await this.call('Get', { serializable: options.serializable === true }, 'read', 'safe', options)).value);
  }

  /** Writes `value` whatever the key held. */
  async set(value: bigint | number, options: CallOptionsCommon = {}): Promise<void> {
    // Not idempotent: a repeat could overwrite another client's increment made in between.
    await this.call('Set', { value: toDelta(value, 'value') }, 'write', 'unsafe', options);
  }

  /** Deletes the key; whether there was one. */
  async delete(options: CallOptionsCommon = {}): Promise<boolean> {
    return (await this.call('Delete', {}, 'write', 'unsafe', options)).deleted === true;
  }
}
