/**
 * What a client's command may touch, and the guard that checks it where the command is applied
 * (etcd's authApplierV3): every replica decides alike from the replicated auth state, so a
 * permission revoked before the command's turn in the log is never used by it.
 *
 * The keys a command reads and writes, by engine (etcd's rules where etcd has the call):
 *  - KV put: write the key; read it too with prev_kv; with a lease, write every key the lease
 *    already holds (a user who could not revoke the lease may not attach to it);
 *  - KV delete range: write the range; read it too with prev_kv;
 *  - KV txn: read every compare's key (or range), and each operation of both branches as above,
 *    nested txns included;
 *  - KV compaction: nothing (etcd checks none);
 *  - lease revoke: write every key the lease holds; grant and renew: nothing;
 *  - dkv.v1 put and txn with TTLs: as the KV put and txn, and read the fence key;
 *  - counters: read and write the key (an increment returns the value);
 *  - alarms: nothing (etcd's Alarm call checks none);
 *  - every auth change: root only (etcd's admin calls).
 * Commands a node proposes on its own (expiry) carry no caller and are never checked.
 */
import type { TxnRequest, RequestOp } from '../../../storage/index.js';
import {
  etcdType,
  dkvType,
  int64Exact,
  type WireDeleteRangeRequest,
  type WireDkvPutRequest,
  type WireDkvTxnRequest,
  type WirePutRequest,
  type WireTxnRequest,
} from '../../etcd-proto.js';
import { CounterCommandKind } from '../counter/engine.js';
import { type Caller, type EngineCommand, EngineError, EngineId } from '../engine.js';
import { KvCommandKind } from '../kv/engine.js';
import { deleteRangeFromWire, putFromWire, txnFromWire } from '../kv/convert.js';
import { LeaseCommandKind } from '../lease/engine.js';
import { TtlCommandKind } from '../ttl/engine.js';
import { AuthCommandKind, type AuthEngine } from './engine.js';
import { PermissionType } from './permissions.js';

/** One key (empty range end), a range, or every key from `key` on (range end [0]) that a command reads or writes. */
export interface KeyAccess {
  readonly key: Uint8Array;
  readonly rangeEnd: Uint8Array;
  readonly type: typeof PermissionType.Read | typeof PermissionType.Write;
}

/** A command's needs: keys, or root (an admin call). */
export type CommandAccess = { readonly admin: true } | { readonly admin: false; readonly keys: readonly KeyAccess[] };

const EMPTY = new Uint8Array(0);
const NOTHING: CommandAccess = { admin: false, keys: [] };
const ADMIN: CommandAccess = { admin: true };

const PutRequestType = etcdType('etcdserverpb.PutRequest');
const DeleteRangeRequestType = etcdType('etcdserverpb.DeleteRangeRequest');
const TxnRequestType = etcdType('etcdserverpb.TxnRequest');
const LeaseRevokeRequestType = etcdType('etcdserverpb.LeaseRevokeRequest');
const DkvPutRequestType = dkvType('dkv.v1.PutRequest');
const DkvTxnRequestType = dkvType('dkv.v1.TxnRequest');

const read = (key: Uint8Array, rangeEnd: Uint8Array = EMPTY): KeyAccess => ({ key, rangeEnd, type: PermissionType.Read });
const write = (key: Uint8Array, rangeEnd: Uint8Array = EMPTY): KeyAccess => ({ key, rangeEnd, type: PermissionType.Write });

/** The keys a lease holds now (the lease engine's attachments). */
export type LeaseKeys = (lease: bigint) => Iterable<Uint8Array>;

/** What a put needs (etcd's IsPutPermitted, then checkLeasePuts, then the prev_kv read). */
export function putAccess(put: { key: Uint8Array; lease?: bigint; prevKv?: boolean }, leaseKeys: LeaseKeys, out: KeyAccess[] = []): KeyAccess[] {
  out.push(write(put.key));
  if (put.lease !== undefined && put.lease !== 0n) for (const key of leaseKeys(put.lease)) out.push(write(key));
  if (put.prevKv === true) out.push(read(put.key));
  return out;
}

/** What a delete range needs. */
export function deleteRangeAccess(request: { key: Uint8Array; rangeEnd?: Uint8Array; prevKv?: boolean }, out: KeyAccess[] = []): KeyAccess[] {
  out.push(write(request.key, request.rangeEnd ?? EMPTY));
  if (request.prevKv === true) out.push(read(request.key, request.rangeEnd ?? EMPTY));
  return out;
}

/** What a range needs. */
export function rangeAccess(request: { key: Uint8Array; rangeEnd?: Uint8Array }, out: KeyAccess[] = []): KeyAccess[] {
  out.push(read(request.key, request.rangeEnd ?? EMPTY));
  return out;
}

function opAccess(op: RequestOp, leaseKeys: LeaseKeys, out: KeyAccess[]): void {
  switch (op.type) {
    case 'range':
      rangeAccess(op.range, out);
      return;
    case 'put':
      putAccess(op.put, leaseKeys, out);
      return;
    case 'deleteRange':
      deleteRangeAccess(op.deleteRange, out);
      return;
    case 'txn':
      txnAccess(op.txn, leaseKeys, out);
      return;
  }
}

/** What a txn needs: its compares read, and every operation of both branches (etcd's checkTxnReqsPermission). */
export function txnAccess(request: TxnRequest, leaseKeys: LeaseKeys, out: KeyAccess[] = []): KeyAccess[] {
  for (const compare of request.compare) out.push(read(compare.key, compare.rangeEnd ?? EMPTY));
  for (const op of request.success) opAccess(op, leaseKeys, out);
  for (const op of request.failure) opAccess(op, leaseKeys, out);
  return out;
}

function keysOf(out: KeyAccess[]): CommandAccess {
  return { admin: false, keys: out };
}

function kvAccess(command: EngineCommand, leaseKeys: LeaseKeys): CommandAccess {
  switch (command.kind) {
    case KvCommandKind.Put:
      return keysOf(putAccess(putFromWire(PutRequestType.decode(command.payload) as unknown as WirePutRequest), leaseKeys));
    case KvCommandKind.DeleteRange:
      return keysOf(deleteRangeAccess(deleteRangeFromWire(DeleteRangeRequestType.decode(command.payload) as unknown as WireDeleteRangeRequest)));
    case KvCommandKind.Txn:
      return keysOf(txnAccess(txnFromWire(TxnRequestType.decode(command.payload) as unknown as WireTxnRequest), leaseKeys));
    case KvCommandKind.Compaction:
      return NOTHING; // etcd checks no permission for a compaction
    default:
      return ADMIN;
  }
}

function ttlAccess(command: EngineCommand, leaseKeys: LeaseKeys): CommandAccess {
  switch (command.kind) {
    case TtlCommandKind.PutWithTtl: {
      const request = DkvPutRequestType.decode(command.payload) as unknown as WireDkvPutRequest;
      const out = putAccess(putFromWire(request), leaseKeys);
      if (request.fence?.key !== undefined) out.push(read(request.fence.key));
      return keysOf(out);
    }
    case TtlCommandKind.Txn: {
      const request = DkvTxnRequestType.decode(command.payload) as unknown as WireDkvTxnRequest;
      const out = request.txn === undefined || request.txn === null ? [] : txnAccess(txnFromWire(request.txn), leaseKeys);
      if (request.fence?.key !== undefined) out.push(read(request.fence.key));
      return keysOf(out);
    }
    default:
      return ADMIN; // expiry is the leader's own (no caller); anything else is unknown here
  }
}

/** Counter payloads end with the key: after amount i64 and TTL f64, or alone for a delete. */
const COUNTER_KEY_AT = 16;

function counterAccess(command: EngineCommand): CommandAccess {
  const key = command.kind === CounterCommandKind.Delete ? command.payload : command.payload.subarray(COUNTER_KEY_AT);
  return keysOf([read(key), write(key)]);
}

function leaseAccess(command: EngineCommand, leaseKeys: LeaseKeys): CommandAccess {
  // etcd checks no permission for a grant or a renewal (keys attach later, each put checked).
  if (command.kind === LeaseCommandKind.Grant || command.kind === LeaseCommandKind.Renew) return NOTHING;
  if (command.kind !== LeaseCommandKind.Revoke) return ADMIN;
  const request = LeaseRevokeRequestType.decode(command.payload) as unknown as { ID?: Parameters<typeof int64Exact>[0] };
  return keysOf([...leaseKeys(int64Exact(request.ID))].map((key) => write(key)));
}

/** What `command` needs of its caller's permissions. A command this does not know needs root. */
export function commandAccess(command: EngineCommand, leaseKeys: LeaseKeys): CommandAccess {
  switch (command.engine) {
    case EngineId.Kv:
    case 0: // a format-1 (legacy) command is a KV command
      return kvAccess(command, leaseKeys);
    case EngineId.Ttl:
      return ttlAccess(command, leaseKeys);
    case EngineId.Counter:
      return counterAccess(command);
    case EngineId.Lease:
      return leaseAccess(command, leaseKeys);
    case EngineId.Alarm:
      return NOTHING;
    case EngineId.Auth:
      // Authenticate is how a caller gets a user; everything else changes who may do what.
      return command.kind === AuthCommandKind.Authenticate ? NOTHING : ADMIN;
    default:
      return ADMIN;
  }
}

/** Why `caller` may not have `access`, or undefined (always, while auth is off). */
export function accessRefusal(auth: AuthEngine, caller: Caller, access: CommandAccess): EngineError | undefined {
  if (!auth.enabled) return undefined;
  if (access.admin) return auth.adminRefusal(caller.user);
  for (const need of access.keys) {
    const refusal = auth.refusal(caller.user, caller.authRevision, need.key, need.rangeEnd, need.type);
    if (refusal !== undefined) return refusal;
  }
  return undefined;
}

/**
 * The state machine's guard for a data shard: checks a client command's caller against the auth
 * engine's state at the command's place in the log. A payload that does not decode is left to
 * its engine, which refuses it deterministically.
 */
export function authGuard(auth: AuthEngine, leaseKeys: LeaseKeys): (command: EngineCommand, caller: Caller) => EngineError | undefined {
  return (command, caller) => {
    if (!auth.enabled) return undefined;
    let access: CommandAccess;
    try {
      access = commandAccess(command, leaseKeys);
    } catch (error) {
      // A broken invariant must stop the node, never be taken for bad input. (Decoders throw
      // Error, RangeError and WireValueError on bad bytes; they are the payload's fault.)
      if ((error as Error).name === 'AssertionError') throw error;
      // A payload its engine cannot decode either: it refuses it, changing nothing. Still, a
      // caller who may do nothing at all is refused here, as etcd refuses an unknown user.
      return caller.user === '' ? new EngineError('user-empty') : undefined;
    }
    return accessRefusal(auth, caller, access);
  };
}
