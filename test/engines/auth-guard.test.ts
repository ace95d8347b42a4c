/**
 * The auth guard: what each client command needs of its caller (etcd's put, delete, txn and lease
 * rules), checked where the command is applied — a refused command changes nothing and replicas
 * agree; commands without a caller (a leader's expiry) are never checked.
 */
import { describe, expect, it } from 'vitest';
import { type Entry } from '../../raft/index.js';
import { AuthEngine, type Caller, type EngineCommand, PermissionType, authCommands as c, commandAccess } from '../../src/engines/index.js';
import { KvCommandKind, kvCommand } from '../../src/engines/kv/index.js';
import { grantCommand, revokeCommand } from '../../src/engines/lease/engine.js';
import { etcdType } from '../../src/etcd-proto.js';
import { authEngineOf, composeStateMachine, encodeEnvelope, kvEngineOf } from '../../src/runtime/index.js';
import type { ShardStateMachine } from '../../src/runtime/state-machine.js';

const b = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));
const Put = etcdType('etcdserverpb.PutRequest');
const Txn = etcdType('etcdserverpb.TxnRequest');
const Delete = etcdType('etcdserverpb.DeleteRangeRequest');
const put = (key: string, extra: object = {}): EngineCommand => kvCommand(KvCommandKind.Put, Put.encode({ key: b(key), value: b('v'), ...extra }).finish());
const root: Caller = { user: 'root', authRevision: 0 };
const noLeases = (): Uint8Array[] => [];

let index = 0;
function entry(command: EngineCommand, caller?: Caller): Entry {
  index++;
  return { index, term: 1, type: 'normal', data: encodeEnvelope({ ...command, timestampMs: 1000, proposer: 1, requestId: index, caller }) };
}

/** Applies `command` as `caller`; the refusal code, or 'ok'. */
function run(machine: ShardStateMachine, command: EngineCommand, caller?: Caller): string {
  const applied = machine.apply(entry(command, caller));
  if (applied?.refusal !== undefined) return applied.refusal.code;
  const outcome = applied?.outcome as { kind?: string; error?: { code: string }; outcome?: { kind: string; error?: { code: string } } } | undefined;
  const inner = outcome?.outcome ?? outcome;
  return inner?.kind === 'error' ? (inner.error?.code ?? 'error') : 'ok';
}

/** A data shard with root, alice (readwrite /app/ prefix, read /cfg) and auth on. */
function securedShard(): ShardStateMachine {
  index = 0;
  const machine = composeStateMachine('data');
  const admin = (command: EngineCommand): void => expect(run(machine, command, root)).toBe('ok');
  admin(c.userAdd('root', b('scrypt$x'), false));
  admin(c.userGrantRole('root', 'root'));
  admin(c.userAdd('alice', b('scrypt$y'), false));
  admin(c.roleAdd('app'));
  admin(c.roleGrantPermission('app', { permType: PermissionType.ReadWrite, key: b('/app/'), rangeEnd: b('/app0') }));
  admin(c.roleGrantPermission('app', { permType: PermissionType.Read, key: b('/cfg'), rangeEnd: new Uint8Array(0) }));
  admin(c.userGrantRole('alice', 'app'));
  admin(c.enable());
  return machine;
}

describe('auth guard', () => {
  it('checks puts, deletes and txns against the caller where they are applied', () => {
    const machine = securedShard();
    const revision = authEngineOf(machine).revision;
    const alice: Caller = { user: 'alice', authRevision: revision };
    expect(run(machine, put('/app/x'), alice)).toBe('ok');
    expect(run(machine, put('/cfg'), alice)).toBe('permission-denied'); // read only
    expect(run(machine, put('/other'), alice)).toBe('permission-denied');
    expect(run(machine, put('/app/x'), { user: '', authRevision: 0 })).toBe('user-empty');
    expect(run(machine, put('/app/x'), { user: 'mallory', authRevision: revision })).toBe('permission-denied');
    // prev_kv reads the key: fine under readwrite.
    expect(run(machine, put('/app/y', { prev_kv: true }), alice)).toBe('ok');
    const del = (key: string, rangeEnd?: string): EngineCommand => kvCommand(KvCommandKind.DeleteRange, Delete.encode({ key: b(key), range_end: rangeEnd === undefined ? undefined : b(rangeEnd) }).finish());
    expect(run(machine, del('/app/', '/app0'), alice)).toBe('ok');
    expect(run(machine, del('/app/', '/b'), alice)).toBe('permission-denied'); // wider than granted
    // A txn: its compares are read, each branch's operations checked whether or not it runs.
    const txn = (compareKey: string, successKey: string, failureKey: string): EngineCommand =>
      kvCommand(
        KvCommandKind.Txn,
        Txn.encode({
          compare: [{ key: b(compareKey), target: 0, result: 0, version: 0 }],
          success: [{ request_put: { key: b(successKey), value: b('v') } }],
          failure: [{ request_range: { key: b(failureKey) } }],
        }).finish(),
      );
    expect(run(machine, txn('/cfg', '/app/t', '/cfg'), alice)).toBe('ok');
    expect(run(machine, txn('/secret', '/app/t', '/cfg'), alice)).toBe('permission-denied');
    expect(run(machine, txn('/cfg', '/app/t', '/secret'), alice)).toBe('permission-denied');
    expect(run(machine, txn('/cfg', '/cfg', '/cfg'), alice)).toBe('permission-denied');
  });

  it('a refused command changes nothing: the store and the hash are as before', () => {
    const machine = securedShard();
    const alice: Caller = { user: 'alice', authRevision: authEngineOf(machine).revision };
    const store = kvEngineOf(machine).mvcc;
    const before = { revision: store.revision, hash: machine.hash() };
    expect(run(machine, put('/other'), alice)).toBe('permission-denied');
    expect({ revision: store.revision, hash: machine.hash() }).toEqual(before);
    expect(machine.appliedIndex).toBe(index);
  });

  it('a permission revoked before the command applies is not used: old revisions are refused', () => {
    const machine = securedShard();
    const checkedAt = authEngineOf(machine).revision;
    expect(run(machine, c.roleRevokePermission('app', b('/app/'), b('/app0')), root)).toBe('ok');
    expect(run(machine, put('/app/x'), { user: 'alice', authRevision: checkedAt })).toBe('auth-old-revision');
    expect(run(machine, put('/app/x'), { user: 'alice', authRevision: authEngineOf(machine).revision })).toBe('permission-denied');
  });

  it('auth changes are root only once auth is on; anyone may change them while it is off', () => {
    const machine = securedShard();
    const alice: Caller = { user: 'alice', authRevision: authEngineOf(machine).revision };
    expect(run(machine, c.roleAdd('mine'), alice)).toBe('permission-denied');
    expect(run(machine, c.roleAdd('mine'), { user: '', authRevision: 0 })).toBe('user-empty');
    expect(run(machine, c.disable(), root)).toBe('ok');
    expect(run(machine, c.roleAdd('mine'), { user: '', authRevision: 0 })).toBe('ok');
  });

  it('a lease revoke needs write on every key the lease holds; a put with a lease, on the lease\'s keys too', () => {
    const machine = securedShard();
    const alice: Caller = { user: 'alice', authRevision: authEngineOf(machine).revision };
    const rootNow: Caller = { user: 'root', authRevision: authEngineOf(machine).revision };
    expect(run(machine, grantCommand(7n, 60), rootNow)).toBe('ok');
    expect(run(machine, put('/secret', { lease: '7' }), rootNow)).toBe('ok');
    // alice may write /app/x, but the lease also holds /secret, which she may not write.
    expect(run(machine, put('/app/x', { lease: '7' }), alice)).toBe('permission-denied');
    expect(run(machine, revokeCommand(7n), alice)).toBe('permission-denied');
    expect(run(machine, grantCommand(8n, 60), alice)).toBe('ok');
    expect(run(machine, put('/app/x', { lease: '8' }), alice)).toBe('ok');
    expect(run(machine, revokeCommand(8n), alice)).toBe('ok');
  });

  it('never checks a command without a caller (the node\'s own, like a leader\'s expiry)', () => {
    const machine = securedShard();
    expect(run(machine, put('/anything'))).toBe('ok');
  });

  it('says what each command needs', () => {
    const access = commandAccess(put('/k', { prev_kv: true, lease: '5' }), (lease) => (lease === 5n ? [b('/held')] : []));
    expect(access.admin).toBe(false);
    const keys = access.admin ? [] : access.keys.map((k) => [Buffer.from(k.key).toString(), Buffer.from(k.rangeEnd).toString(), k.type]);
    expect(keys).toEqual([
      ['/k', '', PermissionType.Write],
      ['/held', '', PermissionType.Write],
      ['/k', '', PermissionType.Read],
    ]);
    expect(commandAccess(c.roleAdd('x'), noLeases)).toEqual({ admin: true });
    expect(commandAccess(c.authenticate('x', 1), noLeases)).toEqual({ admin: false, keys: [] });
    expect(new AuthEngine().enabled).toBe(false);
  });
});
