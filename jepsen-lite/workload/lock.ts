/**
 * The `lock` workload's names and wire shapes. Clients take one etcd lock (v3lock Lock with a
 * lease they keep alive), and while they hold it write a shared resource two ways: **fenced**
 * (`dkv.v1.KV` Put with `fence { lock key, token }`: the store applies it only while the lock
 * key still has the token as its create revision) and **unfenced** (a plain etcd Put to another
 * key, trusting the lease alone). The loop that runs it is real mode's (`real/lock-clients.ts`);
 * what is checked is `check/fencing.ts` plus the `lock` model.
 */
import { errorCodeOfMessage } from '../../src/errors.js';
import type { WireDkvPutRequest, WireLockRequest, WirePutRequest, WireUnlockRequest } from '../../src/etcd-proto.js';
import { errorParts, grpcCode } from './errors.js';
import { etcdKey } from './etcd.js';

/** The lock's name in the history (the lock model's partition). */
export const lockName = 'L';

export interface LockKeys {
  /** The etcd lock name (its session keys are `name/<lease hex>`). */
  readonly name: Uint8Array;
  /** The resource fenced writes put. */
  readonly resource: Uint8Array;
  /** The key unfenced writes put. */
  readonly unfenced: Uint8Array;
}

export function lockKeys(keyPrefix: string): LockKeys {
  return {
    name: etcdKey(keyPrefix, 'lock'),
    resource: etcdKey(keyPrefix, 'lock-resource'),
    unfenced: etcdKey(keyPrefix, 'lock-unfenced'),
  };
}

/** A written value: unique in the run, naming its writer and its token. */
export function lockWriteValue(process: number, token: number, seq: number): string {
  return `p${process}-t${token}-${seq}`;
}

/** LeaseGrant; the server may raise the TTL to its minimum (1.5 election timeouts). */
export function leaseGrantRequest(ttlSeconds: number): { TTL: number; ID: number } {
  return { TTL: ttlSeconds, ID: 0 };
}

/** `lease` as the decimal string it came in (lease ids use all 63 bits: not a safe JS number). */
export function lockRequest(keys: LockKeys, lease: string): WireLockRequest {
  return { name: keys.name, lease };
}

export function unlockRequest(key: Uint8Array): WireUnlockRequest {
  return { key };
}

function plainPut(key: Uint8Array, value: string): WirePutRequest {
  return { key, value: new TextEncoder().encode(value), lease: 0, prev_kv: false, ignore_value: false, ignore_lease: false };
}

/** A dkv.v1.KV Put applied only while `lockKey` has create revision `token`. */
export function fencedPutRequest(keys: LockKeys, value: string, fence: { readonly lockKey: Uint8Array; readonly token: number }): WireDkvPutRequest {
  return { ...plainPut(keys.resource, value), ttl_ms: 0, fence: { key: fence.lockKey, token: fence.token } };
}

/** An etcd Put trusting the lease alone. */
export function unfencedPutRequest(keys: LockKeys, value: string): WirePutRequest {
  return plainPut(keys.unfenced, value);
}

/** Whether a call failed because its fence no longer held (DKV's `fence-stale`: nothing was written). */
export function isFenceStale(error: unknown): boolean {
  const { code, message } = errorParts(error);
  return code === grpcCode.FAILED_PRECONDITION && errorCodeOfMessage(message) === 'fence-stale';
}
