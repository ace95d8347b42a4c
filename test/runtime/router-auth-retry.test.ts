/**
 * A command refused where it applies for an old auth revision (an auth change committed between
 * finding its caller and applying it) is proposed again with its caller found anew, as etcd's
 * raftRequest retries ErrAuthOldRevision; a caller that cannot be found at a newer revision (a
 * JWT's revision is its own) gets the refusal, and the retries are bounded.
 */
import { describe, expect, it } from 'vitest';
import { type Caller, EngineError, anonymousCaller } from '../../src/engines/index.js';
import { Router, singleStoreMap } from '../../src/runtime/router.js';
import { authOldRevisionProposalsMax } from '../../src/runtime/limits.js';
import type { NodeRuntime, RequestOptions } from '../../src/runtime/runtime.js';

/** A runtime whose shard 1 refuses every proposal whose caller's revision is below `authRevision`. */
function fakeRuntime(authRevision: () => number, msPerProposal = 0) {
  const proposed: Caller[] = [];
  const timeouts: Array<number | undefined> = [];
  let clock = 1000;
  const runtime = {
    hasShard: (id: number) => id === 1,
    now: () => clock,
    requestTimeoutMs: 1000,
    propose: (_shard: number, _command: unknown, options: RequestOptions, done: (error: Error | undefined, applied?: unknown) => void) => {
      const caller = options.caller!;
      proposed.push(caller);
      timeouts.push(options.timeoutMs);
      clock += msPerProposal;
      const refusal = caller.authRevision < authRevision() ? new EngineError('auth-old-revision') : undefined;
      queueMicrotask(() => done(undefined, { outcome: { kind: 'ok' }, refusal }));
    },
  } as unknown as NodeRuntime;
  return { router: new Router(runtime, singleStoreMap(0, 1)), proposed, timeouts };
}

const command = { engine: 1, version: 1, kind: 1, payload: new Uint8Array(0) };

describe('a command refused for an old auth revision', () => {
  it('is proposed again with its caller found anew, once', async () => {
    const { router, proposed } = fakeRuntime(() => 7);
    const caller: Caller = { user: 'alice', authRevision: 5, again: () => ({ user: 'alice', authRevision: 7 }) };
    await expect(router.defaultStore().propose(command as never, { caller })).resolves.toMatchObject({ outcome: { kind: 'ok' } });
    expect(proposed.map((c) => c.authRevision)).toEqual([5, 7]);
  });

  it('is answered with the refusal when the caller has no newer revision (a JWT), or none can be found', async () => {
    const { router, proposed } = fakeRuntime(() => 7);
    const jwt: Caller = { user: 'alice', authRevision: 5 };
    await expect(router.defaultStore().propose(command as never, { caller: jwt })).rejects.toMatchObject({ code: 'auth-old-revision' });
    const stuck: Caller = { user: 'alice', authRevision: 5, again: () => stuck };
    await expect(router.defaultStore().propose(command as never, { caller: stuck })).rejects.toMatchObject({ code: 'auth-old-revision' });
    const gone: Caller = { user: 'alice', authRevision: 5, again: () => { throw new Error('invalid auth token'); } };
    await expect(router.defaultStore().propose(command as never, { caller: gone })).rejects.toThrow('invalid auth token');
    expect(proposed).toHaveLength(3);
  });

  it('is proposed at most authOldRevisionProposalsMax times while auth changes keep coming', async () => {
    let revision = 5;
    const { router, proposed } = fakeRuntime(() => ++revision + 1); // always one ahead of the caller
    const caller: Caller = { user: 'alice', authRevision: 5, again: () => ({ ...caller, authRevision: revision }) };
    await expect(router.defaultStore().propose(command as never, { caller })).rejects.toMatchObject({ code: 'auth-old-revision' });
    expect(proposed).toHaveLength(authOldRevisionProposalsMax);
  });
});

describe('the attempts at a command refused for an old auth revision', () => {
  it('share the request timeout: each gets what is left of it, and none starts once it is spent', async () => {
    let revision = 5;
    const { router, proposed, timeouts } = fakeRuntime(() => ++revision + 1, 400);
    const caller: Caller = { user: 'alice', authRevision: 5, again: () => ({ ...caller, authRevision: revision }) };
    // Spent between attempts: etcd's answer once the client's context ends, not the refusal.
    await expect(router.defaultStore().propose(command as never, { caller })).rejects.toMatchObject({ code: 'timeout', message: 'request timed out' });
    // 1,000 ms in all, 400 spent per attempt: 1,000, then 600, then 200 left; then none.
    expect(timeouts).toEqual([undefined, 600, 200]);
    expect(proposed).toHaveLength(3);
    const explicit = fakeRuntime(() => ++revision + 1, 400);
    await expect(explicit.router.defaultStore().propose(command as never, { caller, timeoutMs: 500 })).rejects.toMatchObject({ code: 'timeout' });
    expect(explicit.timeouts).toEqual([500, 100]);
  });
});

describe('a command refused for an old auth revision, then auth disabled', () => {
  it('is proposed again as the anonymous caller, which passes where auth is off', async () => {
    let authOn = true;
    const proposed: Caller[] = [];
    const runtime = {
      hasShard: (id: number) => id === 1,
      now: () => 0,
      requestTimeoutMs: 1000,
      propose: (_shard: number, _command: unknown, options: RequestOptions, done: (error: Error | undefined, applied?: unknown) => void) => {
        proposed.push(options.caller!);
        const refusal = authOn ? new EngineError('auth-old-revision') : undefined;
        authOn = false; // the AuthDisable applied right after the refused command
        queueMicrotask(() => done(undefined, { outcome: { kind: 'ok' }, refusal }));
      },
    } as unknown as NodeRuntime;
    const router = new Router(runtime, singleStoreMap(0, 1));
    const caller: Caller = { user: 'alice', authRevision: 5, again: () => anonymousCaller };
    await expect(router.defaultStore().propose(command as never, { caller })).resolves.toMatchObject({ outcome: { kind: 'ok' } });
    expect(proposed).toEqual([caller, anonymousCaller]);
  });
});
