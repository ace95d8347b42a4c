/**
 * The auth layer's small parts: simple tokens (TTL restarted by use, invalidation), the login rate
 * limiter, and the gate's rule that a refusal comes only from a caught-up auth state.
 */
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { type ApplyContext, AuthEngine, type EngineCommand, PermissionType, anonymousCaller, authCommands } from '../../src/engines/index.js';
import { AUTH_OFF, AUTH_UNCHECKED, AuthGate, type CallCredentials } from '../../src/server/auth/gate.js';
import { RateLimiter } from '../../src/server/auth/rate-limit.js';
import { SimpleTokens, newTokenPrefix } from '../../src/server/auth/tokens.js';
import { hashPassword, isPasswordHash, verifyPassword } from '../../src/server/auth/password.js';
import { peerHost } from '../../src/server/auth/service.js';

describe('simple tokens', () => {
  it('expire after the TTL unused, each use restarting it; a user\'s go with the user', () => {
    const tokens = new SimpleTokens(1000);
    tokens.register('a.1', 'alice', 0);
    tokens.register('b.2', 'bob', 0);
    expect(tokens.use('a.1', 900)).toBe('alice');
    expect(tokens.use('a.1', 1800)).toBe('alice'); // restarted at 900
    expect(tokens.use('b.2', 1800)).toBeUndefined(); // unused since 0
    tokens.invalidateUser('alice');
    expect(tokens.use('a.1', 1900)).toBeUndefined();
    expect(tokens.size).toBe(0);
    expect(newTokenPrefix()).toMatch(/^[A-Za-z]{16}$/);
  });
});

describe('login rate limiter', () => {
  it('refills at its rate, up to its burst', () => {
    const limiter = new RateLimiter(2, 1);
    expect([limiter.take('u', 0), limiter.take('u', 0), limiter.take('u', 0)]).toEqual([true, true, false]);
    expect(limiter.take('u', 999)).toBe(false);
    expect(limiter.take('u', 1000)).toBe(true);
  });

  it('never forgets a drained bucket: flooding the table with new keys refuses them instead', () => {
    const limiter = new RateLimiter(10, 5, 100);
    for (let i = 0; i < 10; i++) expect(limiter.take('root', 0)).toBe(true);
    expect(limiter.take('root', 0)).toBe(false);
    for (let i = 0; i < 200; i++) limiter.take(`name-${i}`, 0);
    expect(limiter.take('root', 0)).toBe(false);
    // Once the flood's buckets refill they are forgotten, and new keys get room again.
    expect(limiter.take('newcomer', 10_000)).toBe(true);
  });
});

describe('passwords and addresses', () => {
  it('hashes with a salt, verifies, and reads back only its own format', async () => {
    const a = await hashPassword('secret', 10);
    const b = await hashPassword('secret', 10);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false);
    expect(await verifyPassword('secret', a)).toBe(true);
    expect(await verifyPassword('Secret', a)).toBe(false);
    expect(isPasswordHash(a)).toBe(true);
    expect(isPasswordHash(Buffer.from('$2a$10$abcdefghijklmnopqrstuv'))).toBe(false);
    expect(isPasswordHash(Buffer.from('scrypt$10$8$1$c2FsdA==$' + Buffer.alloc(65).toString('base64')))).toBe(false);
  });

  it('limits logins per address, not per port', () => {
    expect(peerHost('ipv4:127.0.0.1:5555')).toBe('127.0.0.1');
    expect(peerHost('ipv6:[::1]:5555')).toBe('::1');
    expect(peerHost('10.0.0.2:1')).toBe('10.0.0.2');
  });
});

describe('the auth gate refuses only from a caught-up auth state', () => {
  const b = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));
  const context: ApplyContext = { index: 1, term: 1, nowMs: 0, proposer: 1, requestId: 1 };
  /** An auth engine with root, alice (readwrite /app/) and auth on, then `more` applied. */
  const engineWith = (...more: EngineCommand[]): AuthEngine => {
    const engine = new AuthEngine();
    const steps = [
      authCommands.userAdd('root', b('scrypt$x'), false),
      authCommands.userGrantRole('root', 'root'),
      authCommands.userAdd('alice', b('scrypt$y'), false),
      authCommands.roleAdd('app'),
      authCommands.roleGrantPermission('app', { permType: PermissionType.ReadWrite, key: b('/app/'), rangeEnd: b('/app0') }),
      authCommands.enable(),
      ...more,
    ];
    for (const step of steps) expect(engine.apply(step, context).kind).not.toBe('error');
    return engine;
  };
  const appKey = () => ({ admin: false as const, keys: [{ key: b('/app/x'), rangeEnd: new Uint8Array(0), type: PermissionType.Write }] });
  const noToken: CallCredentials = { metadata: new grpc.Metadata() };
  const withToken = (token: string): CallCredentials => {
    const metadata = new grpc.Metadata();
    metadata.set('token', token);
    return { metadata };
  };

  /** A gate over `local` (this member's lagging state) whose catch-up applies `cluster`'s state. */
  function lagging(local: AuthEngine, cluster: AuthEngine, tokens = new SimpleTokens(60_000)) {
    let state = local;
    let catchUps = 0;
    const gate = new AuthGate({
      auth: () => state,
      simpleTokens: tokens,
      clientCertAuth: false,
      nowMs: () => 0,
      catchUp: async () => {
        catchUps++;
        state = cluster;
      },
    });
    return { gate, catchUps: () => catchUps };
  }

  it('a call without a token, after an AuthDisable this member has not applied yet: allowed once caught up', async () => {
    const { gate, catchUps } = lagging(engineWith(), engineWith(authCommands.disable()));
    await expect(gate.permitted(noToken, appKey)).resolves.toBe(anonymousCaller);
    await expect(gate.admin(noToken)).resolves.toBe(anonymousCaller);
    expect(catchUps()).toBe(1); // the second call found the state current
  });

  it('a grant this member has not applied yet: allowed once caught up; an allowed call never waits', async () => {
    const tokens = new SimpleTokens(60_000);
    tokens.register('t.1', 'alice', 0);
    const { gate, catchUps } = lagging(engineWith(), engineWith(authCommands.userGrantRole('alice', 'app')), tokens);
    await expect(gate.permitted(withToken('t.1'), appKey)).resolves.toMatchObject({ user: 'alice' });
    expect(catchUps()).toBe(1);
    await expect(gate.permitted(withToken('t.1'), appKey)).resolves.toMatchObject({ user: 'alice' });
    expect(catchUps()).toBe(1);
  });

  it('refusals the cluster agrees with: no user, no permission, not root, an unknown token — each after one catch-up', async () => {
    const cases: Array<[CallCredentials, 'keys' | 'admin', string]> = [
      [noToken, 'keys', 'user-empty'],
      [withToken('t.1'), 'keys', 'permission-denied'],
      [withToken('t.1'), 'admin', 'permission-denied'],
      [withToken('nobody.2'), 'keys', 'invalid-auth-token'],
    ];
    for (const [call, what, code] of cases) {
      const tokens = new SimpleTokens(60_000);
      tokens.register('t.1', 'alice', 0);
      const { gate, catchUps } = lagging(engineWith(), engineWith(), tokens);
      const answer = what === 'admin' ? gate.admin(call) : gate.permitted(call, appKey);
      await expect(answer).rejects.toMatchObject({ code });
      expect(catchUps()).toBe(1);
    }
  });

  it('a catch-up that fails answers with its own error, not a refusal from the stale state', async () => {
    const gate = new AuthGate({
      auth: () => engineWith(),
      simpleTokens: new SimpleTokens(60_000),
      clientCertAuth: false,
      nowMs: () => 0,
      catchUp: () => Promise.reject(new Error('no leader')),
    });
    await expect(gate.permitted(noToken, appKey)).rejects.toThrow('no leader');
  });
});

describe('the gate re-checks a long call only when the auth state moved', () => {
  const b = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));
  const context: ApplyContext = { index: 1, term: 1, nowMs: 0, proposer: 1, requestId: 1 };
  it('AUTH_OFF while off; a first check when unchecked; none while the revision stays; a refusal after a revoke', () => {
    const engine = new AuthEngine();
    const apply = (command: EngineCommand): void => expect(engine.apply(command, context).kind).not.toBe('error');
    const tokens = new SimpleTokens(60_000);
    tokens.register('t.1', 'alice', 0);
    const gate = new AuthGate({ auth: () => engine, simpleTokens: tokens, clientCertAuth: false, nowMs: () => 0, catchUp: async () => undefined });
    const metadata = new grpc.Metadata();
    metadata.set('token', 't.1');
    const call: CallCredentials = { metadata };
    const keys = () => [{ key: b('/app/x'), rangeEnd: new Uint8Array(0), type: PermissionType.Read }];
    const never = (): never => {
      throw new Error('checked although nothing changed');
    };
    expect(gate.recheck(call, AUTH_UNCHECKED, never)).toEqual({ checkedAt: AUTH_OFF });
    apply(authCommands.userAdd('root', b('scrypt$x'), false));
    apply(authCommands.userGrantRole('root', 'root'));
    apply(authCommands.userAdd('alice', b('scrypt$y'), false));
    apply(authCommands.roleAdd('app'));
    apply(authCommands.roleGrantPermission('app', { permType: PermissionType.Read, key: b('/app/'), rangeEnd: b('/app0') }));
    apply(authCommands.userGrantRole('alice', 'app'));
    apply(authCommands.enable());
    const first = gate.recheck(call, AUTH_OFF, keys);
    expect(first).toEqual({ checkedAt: engine.revision });
    expect(gate.recheck(call, first.checkedAt, never)).toEqual({ checkedAt: engine.revision });
    apply(authCommands.userRevokeRole('alice', 'app'));
    const refused = gate.recheck(call, first.checkedAt, keys);
    expect(refused.checkedAt).toBe(first.checkedAt);
    expect(refused.refusal).toMatchObject({ code: 'permission-denied' });
  });
});
