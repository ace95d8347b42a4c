/**
 * A Watch create refused by a member's lagging auth state waits for the member to catch up
 * (AuthGate.caughtUp) before it is answered, and the stream's later requests wait behind it:
 * answers keep the order of the requests. A stream closed meanwhile answers nothing and throws
 * nothing; a create the caught-up state still refuses is canceled with etcd's reason and the id
 * the client asked for. Driven in one process, with a fake call and a catch-up the test releases.
 */
import { describe, expect, it } from 'vitest';
import { MvccStore } from '../../storage/index.js';
import { type ApplyContext, AuthEngine, type EngineCommand, PermissionType, authCommands } from '../../src/engines/index.js';
import { AuthGate } from '../../src/server/auth/gate.js';
import { SimpleTokens } from '../../src/server/auth/tokens.js';
import { WatchHub, watchPermissionDeniedReason } from '../../src/server/watch-service.js';
import { FakeWatchCall, watchServiceOnFakes } from './fake-watch-call.js';

const b = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));
const context: ApplyContext = { index: 1, term: 1, nowMs: 0, proposer: 1, requestId: 1 };

/** Auth on, alice a user; `more` applied after (a grant, say). */
function engineWith(...more: EngineCommand[]): AuthEngine {
  const engine = new AuthEngine();
  for (const step of [
    authCommands.userAdd('root', b('scrypt$x'), false),
    authCommands.userGrantRole('root', 'root'),
    authCommands.userAdd('alice', b('scrypt$y'), false),
    authCommands.roleAdd('app'),
    authCommands.roleGrantPermission('app', { permType: PermissionType.Read, key: b('/app/'), rangeEnd: b('/app0') }),
    authCommands.enable(),
    ...more,
  ]) {
    expect(engine.apply(step, context).kind).not.toBe('error');
  }
  return engine;
}

/** A watch service over a lagging auth state: `release()` makes the catch-up apply `cluster`. */
function setup(cluster: AuthEngine) {
  let state = engineWith();
  let release = (): void => {};
  const caughtUp = new Promise<void>((resolve) => {
    release = () => {
      state = cluster;
      resolve();
    };
  });
  const tokens = new SimpleTokens(60_000);
  tokens.register('t.1', 'alice', 0);
  const gate = new AuthGate({ auth: () => state, simpleTokens: tokens, clientCertAuth: false, nowMs: () => 0, catchUp: () => caughtUp });
  const store = new MvccStore();
  const hub = new WatchHub(() => store);
  const handle = { term: () => 1 };
  const shard = { shardId: 1, hub, revision: () => store.revision, handle: () => handle as never };
  const service = watchServiceOnFakes(gate, () => shard, () => shard);
  const call = new FakeWatchCall();
  (service.implementation['Watch'] as (call: unknown) => void)(call);
  return { call, release };
}

const create = (key: string, id = 0): object => ({ create_request: { key: b(key), watch_id: id } });
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('a Watch create refused by a lagging auth state', () => {
  it('is answered once the member caught up, and the requests behind it wait their turn', async () => {
    const { call, release } = setup(engineWith(authCommands.userGrantRole('alice', 'app')));
    call.send(create('/app/a', 7));
    call.send(create('/app/b', 8));
    await turn();
    expect(call.paused).toBe(true);
    expect(call.written).toEqual([]);
    release();
    await turn();
    expect(call.written.map((r) => [r.watch_id, r.created, r.canceled ?? false])).toEqual([
      [7, true, false],
      [8, true, false],
    ]);
    expect(call.paused).toBe(false);
    call.emit('end');
  });

  it('still refused once caught up: canceled with the PermissionDenied reason and the id asked for', async () => {
    const { call, release } = setup(engineWith());
    call.send(create('/app/a', 7));
    release();
    await turn();
    expect(call.written).toEqual([expect.objectContaining({ watch_id: 7, created: true, canceled: true, cancel_reason: watchPermissionDeniedReason })]);
    call.emit('end');
  });

  it('a stream closed while it waits answers nothing', async () => {
    const { call, release } = setup(engineWith(authCommands.userGrantRole('alice', 'app')));
    call.send(create('/app/a', 7));
    await turn();
    call.emit('close');
    release();
    await turn();
    expect(call.written).toEqual([]);
  });
});
