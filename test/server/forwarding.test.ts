/**
 * Forwarding of client calls to a shard's replica (src/server/forwarding.ts), without a network:
 * two Forwarders joined by a fake request channel. A call forwarded runs the replica's handler
 * with the caller the forwarding member found and answers its response or status unchanged;
 * replicas are tried in order only while a request certainly did not reach one; a malformed
 * payload is refused; a proposal carries a runtime refusal back as the same RuntimeError; a
 * replica whose map moved on answers its route, followed when its epoch is newer.
 */
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EngineId, anonymousCaller, retireCommand } from '../../src/engines/index.js';
import { errorTable } from '../../src/errors.js';
import { RuntimeError, ShardElsewhereError } from '../../src/runtime/index.js';
import { FORWARDED_CALL_TAG, Forwarder, RETIRED_QUERY_TAG, decodeAnswer, decodeForwardedCall, encodeForwardedCall, encodeStatus, forwardedCallerOf, forwardingOf } from '../../src/server/forwarding.js';
import { unary } from '../../src/server/service-common.js';
import { forwardedRedirectsMax } from '../../src/server/limits.js';
import { RawResponse, serviceDefinition } from '../../src/server/grpc-service.js';
import { PeerRequestError, PeerRequestRefusal } from '../../src/server/peer/index.js';
import { etcdType } from '../../src/etcd-proto.js';

const definition = serviceDefinition('etcdserverpb.KV');
const RangeRequest = etcdType('etcdserverpb.RangeRequest');
const RangeResponse = etcdType('etcdserverpb.RangeResponse');

function pair(options: { fail?: (to: number) => PeerRequestError | undefined } = {}) {
  const seen: Array<{ to: number; caller: unknown; key: string }> = [];
  let replica: Forwarder;
  const origin = new Forwarder({
    request: async (to, payload) => {
      const failure = options.fail?.(to);
      if (failure !== undefined) throw failure;
      try {
        if (payload[0] === RETIRED_QUERY_TAG) return replica.answerRetired(payload);
        return await (payload[0] === FORWARDED_CALL_TAG ? replica.answer(payload) : replica.answerProposal(payload));
      } catch (error) {
        if (error instanceof PeerRequestRefusal) throw new PeerRequestError('refused', 'yes', error.message, { code: error.code, message: error.message });
        throw error;
      }
    },
    caller: () => ({ user: 'alice', authRevision: 3, again: () => anonymousCaller }),
    proposeHere: async () => ({ kind: 'ok' }),
    retiredHere: () => undefined,
    timeoutMs: 1000,
  });
  replica = new Forwarder({
    request: async () => new Uint8Array(0),
    caller: () => anonymousCaller,
    proposeHere: async (shard) => {
      if (shard === 9) throw new RuntimeError('no-leader', 'no leader of shard 9');
      return { kind: 'ok', shard };
    },
    retiredHere: (shard) => (shard === 4 ? true : shard === 5 ? false : undefined),
    timeoutMs: 1000,
  });
  const handler = (call: grpc.ServerUnaryCall<{ message: { key?: Uint8Array } }, object>, callback: grpc.sendUnaryData<object>): void => {
    const key = Buffer.from(call.request.message.key ?? []).toString();
    seen.push({ to: 0, caller: forwardedCallerOf(call), key });
    if (key === 'bad') callback({ code: grpc.status.INVALID_ARGUMENT, details: 'etcdserver: key is not provided' } as grpc.ServiceError);
    else callback(null, { kvs: [{ key: Buffer.from(key), value: Buffer.from('v') }], count: 1 });
  };
  const wrappedOrigin = origin.wrap(definition, { Range: handler } as unknown as grpc.UntypedServiceImplementation);
  replica.wrap(definition, { Range: handler } as unknown as grpc.UntypedServiceImplementation);
  return { origin, replica, seen, wrappedOrigin };
}

/** A client's Range call as the wrapped origin handler receives it, and what it marked on it. */
function clientCall(wrapped: grpc.UntypedServiceImplementation, key: string) {
  const raw = Buffer.from(RangeRequest.encode({ key: Buffer.from(key) }).finish());
  const call = { request: { raw, message: { key: Buffer.from(key) } }, metadata: new grpc.Metadata() } as unknown as grpc.ServerUnaryCall<never, object>;
  (wrapped.Range as (c: unknown, cb: grpc.sendUnaryData<object>) => void)(call, () => {});
  return call;
}

describe('forwarding', () => {
  it('runs the replica\'s handler with the forwarding member\'s caller and answers its response bytes', async () => {
    const { origin, seen, wrappedOrigin } = pair();
    const call = clientCall(wrappedOrigin, 'k1');
    const forwarding = forwardingOf(call)!;
    expect(forwarding.path).toBe('/etcdserverpb.KV/Range');
    const answer = await origin.forward(forwarding, call as never, [5]);
    expect(answer).toBeInstanceOf(RawResponse);
    const decoded = RangeResponse.decode((answer as RawResponse).bytes) as unknown as { kvs: Array<{ key: Uint8Array }>; count: number };
    expect(Buffer.from(decoded.kvs[0]!.key).toString()).toBe('k1');
    // A caller that may be found again is checked at the replica's auth revision (-1).
    // (The first run is the client's call here, whose caller is its own.)
    expect(seen).toEqual([
      { to: 0, caller: undefined, key: 'k1' },
      { to: 0, caller: { user: 'alice', authRevision: -1 }, key: 'k1' },
    ]);
  });

  it('answers the replica\'s status unchanged', async () => {
    const { origin, wrappedOrigin } = pair();
    const call = clientCall(wrappedOrigin, 'bad');
    expect(await origin.forward(forwardingOf(call)!, call as never, [5])).toEqual({ code: grpc.status.INVALID_ARGUMENT, details: 'etcdserver: key is not provided' });
  });

  it('moves to the next replica only when the request certainly did not reach one', async () => {
    const tried: number[] = [];
    const notSent = pair({ fail: (to) => (tried.push(to), to === 5 ? new PeerRequestError('unreachable', 'no', 'down') : undefined) });
    const call = clientCall(notSent.wrappedOrigin, 'k2');
    expect(await notSent.origin.forward(forwardingOf(call)!, call as never, [5, 6])).toBeInstanceOf(RawResponse);
    expect(tried).toEqual([5, 6]);
    const maybe = pair({ fail: () => new PeerRequestError('timeout', 'maybe', 'no answer') });
    const call2 = clientCall(maybe.wrappedOrigin, 'k3');
    await expect(maybe.origin.forward(forwardingOf(call2)!, call2 as never, [5, 6])).rejects.toMatchObject({ code: 'timeout' });
    const none = pair({ fail: () => new PeerRequestError('unreachable', 'no', 'down') });
    const call3 = clientCall(none.wrappedOrigin, 'k4');
    await expect(none.origin.forward(forwardingOf(call3)!, call3 as never, [5, 6])).rejects.toThrow(errorTable['shard-not-hosted'].message);
  });

  it('refuses an unknown method and a malformed payload; a forwarded call is never forwarded again', async () => {
    const { replica } = pair();
    await expect(replica.answer(encodeForwardedCall('/etcdserverpb.KV/Nope', anonymousCaller, new Uint8Array(0)))).rejects.toMatchObject({ code: 'unknown-method' });
    for (const bad of [Uint8Array.of(FORWARDED_CALL_TAG), Uint8Array.of(FORWARDED_CALL_TAG, 0xff, 0xff, 0, 0), Uint8Array.of(FORWARDED_CALL_TAG, 0, 1, 0x41, 0, 9, 0x7b)]) {
      expect(() => decodeForwardedCall(bad)).toThrow(PeerRequestRefusal);
    }
    // The call a replica's handler sees carries no forwarding mark of its own.
    let marked: unknown = 'unset';
    const seen = new Forwarder({ request: async () => new Uint8Array(0), caller: () => anonymousCaller, proposeHere: async () => undefined, retiredHere: () => undefined, timeoutMs: 1 });
    seen.wrap(definition, { Range: (call: object, cb: grpc.sendUnaryData<object>) => ((marked = forwardingOf(call)), cb(null, {})) } as unknown as grpc.UntypedServiceImplementation);
    await seen.answer(encodeForwardedCall('/etcdserverpb.KV/Range', anonymousCaller, RangeRequest.encode({ key: Buffer.from('a') }).finish()));
    expect(marked).toBeUndefined();
  });

  it('round-trips any path, caller and request', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), fc.option(fc.record({ user: fc.string({ maxLength: 64 }), authRevision: fc.nat() })), fc.uint8Array({ maxLength: 512 }), (path, caller, request) => {
        const decoded = decodeForwardedCall(encodeForwardedCall(path, caller === null ? anonymousCaller : caller, request));
        expect(decoded.path).toBe(path);
        expect(decoded.caller).toEqual(caller === null ? undefined : caller);
        expect(Buffer.from(decoded.request)).toEqual(Buffer.from(request));
      }),
    );
  });

  it('carries a Retire\'s or a Split\'s outcome, a runtime refusal as the same RuntimeError, and nothing else', async () => {
    const { origin, replica } = pair();
    expect(await origin.propose(4, [5], retireCommand(4))).toEqual({ kind: 'ok', shard: 4 });
    await expect(origin.propose(9, [5], retireCommand(9))).rejects.toMatchObject({ name: 'RuntimeError', code: 'no-leader', message: 'no leader of shard 9' });
    // Any other command is refused before it is proposed (a peer may ask for a drop's and a split's steps only).
    const put = Buffer.concat([Buffer.of(0x02), Buffer.from(JSON.stringify({ shard: 4, engine: EngineId.Kv, version: 1, kind: 1, payloadHex: '' }))]);
    await expect(replica.answerProposal(put)).rejects.toMatchObject({ code: 'bad-forward' });
    // No replica took it: retryable, never a ShardElsewhereError (that would forward the caller's whole call).
    await expect(origin.propose(4, [5], { engine: EngineId.Kv, version: 1, kind: 1, payload: new Uint8Array(0) })).rejects.toMatchObject({ name: 'RuntimeError', code: 'no-leader' });
  });

  it('asks a replica whether a drop retired a shard it hosts (a repair on a member without it)', async () => {
    const { origin } = pair();
    expect(await origin.retired(4, [5])).toBe(true);
    expect(await origin.retired(5, [5])).toBe(false);
    // Not hosted where asked (refused), or no replica reachable: no answer.
    expect(await origin.retired(6, [5])).toBeUndefined();
    expect(await pair({ fail: () => new PeerRequestError('unreachable', 'no', 'down') }).origin.retired(4, [5, 6])).toBeUndefined();
  });

  describe('a replica whose map places the shard elsewhere', () => {
    /**
     * Member 1 forwards; each other member's Range either answers (`serves`) or, as its router
     * would, finds the shard elsewhere at `routes[member]` (through service-common's `unary`, as
     * the services do).
     */
    function members(routes: Record<number, { epoch: number; replicas: number[] }>, serves: number[]) {
      const tried: number[] = [];
      const replicas = new Map<number, Forwarder>();
      const origin = new Forwarder({
        request: async (to, payload) => {
          tried.push(to);
          const replica = replicas.get(to);
          if (replica === undefined) throw new PeerRequestError('unreachable', 'no', 'no such member');
          return replica.answer(payload);
        },
        caller: () => anonymousCaller,
        proposeHere: async () => undefined,
        retiredHere: () => undefined,
        timeoutMs: 1000,
        memberId: 1,
      });
      for (const id of new Set([...Object.keys(routes).map(Number), ...serves])) {
        const replica = new Forwarder({ request: async () => new Uint8Array(0), caller: () => anonymousCaller, proposeHere: async () => undefined, retiredHere: () => undefined, timeoutMs: 1000, memberId: id });
        const route = routes[id];
        const handler = unary(async () => {
          if (route !== undefined) throw new ShardElsewhereError(2, route.replicas, route.epoch);
          return { count: id };
        });
        replica.wrap(definition, { Range: handler } as unknown as grpc.UntypedServiceImplementation);
        replicas.set(id, replica);
      }
      const call = (list: number[], epoch?: number, shard = 2) => origin.call('/etcdserverpb.KV/Range', RangeRequest.encode({ key: Buffer.from('k') }).finish(), anonymousCaller, list, undefined, { shard, epoch });
      const servedBy = (answer: unknown): number => Number((RangeResponse.decode((answer as RawResponse).bytes) as unknown as { count: number }).count);
      return { tried, call, servedBy };
    }

    it('follows a newer route at once: the replicas its map lists, before the rest of its own list', async () => {
      const { tried, call, servedBy } = members({ 5: { epoch: 4, replicas: [7, 1] } }, [6, 7]);
      expect(servedBy(await call([5, 6], 3))).toBe(7);
      // Never itself, though the newer route lists it (its own map has not caught up yet).
      expect(tried).toEqual([5, 7]);
    });

    it('takes the next replica of its own list when the replica\'s map is no newer', async () => {
      const { tried, call, servedBy } = members({ 5: { epoch: 3, replicas: [7] } }, [6, 7]);
      expect(servedBy(await call([5, 6], 3))).toBe(6);
      expect(tried).toEqual([5, 6]);
    });

    it('follows no route of another shard than the one the call was routed to (a Range part of a newer split)', async () => {
      const { tried, call, servedBy } = members({ 5: { epoch: 9, replicas: [7] } }, [6, 7]);
      expect(servedBy(await call([5, 6], 3, 4))).toBe(6);
      expect(tried).toEqual([5, 6]);
    });

    it('answers the last refusal, its detail naming the epoch and the replicas, when no replica serves it', async () => {
      const { call } = members({ 5: { epoch: 4, replicas: [1] } }, []);
      const answer = (await call([5], 3)) as { code: number; details: string; elsewhere?: unknown };
      expect(answer).toEqual({ code: grpc.status.UNAVAILABLE, details: `${errorTable['shard-not-hosted'].message}: shard 2 (epoch 4) is hosted on member 1, not on this node` });
    });

    it(`follows at most ${forwardedRedirectsMax} newer routes`, async () => {
      const { tried, call } = members({ 5: { epoch: 4, replicas: [6] }, 6: { epoch: 5, replicas: [8] }, 8: { epoch: 6, replicas: [9] } }, [9]);
      const answer = (await call([5], 3)) as { details: string };
      expect(tried).toEqual([5, 6, 8]);
      expect(answer.details).toContain('shard 2 (epoch 6)');
    });

    it('carries the route next to the status, and drops a malformed one', () => {
      const status = { code: grpc.status.UNAVAILABLE, details: 'moved' };
      expect(decodeAnswer(encodeStatus(status, { shard: 2, epoch: 4, replicas: [7] }))).toEqual({ ...status, elsewhere: { shard: 2, epoch: 4, replicas: [7] } });
      expect(decodeAnswer(encodeStatus(status))).toEqual(status);
      const bad = Buffer.concat([Buffer.of(0x01), Buffer.from(JSON.stringify({ ...status, elsewhere: { shard: 2, epoch: -1, replicas: [7] } }))]);
      expect(decodeAnswer(bad)).toEqual(status);
    });
  });
});
