import { describe, it, expect } from 'vitest';
import { makeMessage } from '../../raft/index.js';
import {
  PeerRequestError,
  PeerRequestRefusal,
  decodeFrame,
  encodeHello,
  encodeRequest,
  peerFeatureRequests,
  peerLimits,
  type PeerRequestErrorCode,
  type PeerRequestReach,
} from '../../src/server/peer/index.js';
import { app, dialRaw, nextTurn, seeded, startNode, stopAll, waitFor, type TestNode } from './peer-harness.js';

type Handler = (from: number, payload: Uint8Array) => Promise<Uint8Array>;

const text = (value: string): Uint8Array => new TextEncoder().encode(value);
const str = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

/** Node 1 dials node 2; each answers with its own handler (or none). */
async function pair(handlerOfTwo: Handler | undefined, handlerOfOne?: Handler): Promise<[TestNode, TestNode]> {
  // Node 2 never dials node 1 (the smaller id dials), so its address for 1 is never used.
  const two = await startNode({ id: 2, peers: new Map([[1, '127.0.0.1:1']]), onRequest: handlerOfTwo });
  const one = await startNode({ id: 1, peers: new Map([[2, two.address]]), onRequest: handlerOfOne });
  await waitFor(() => one.transport.connectedPeers().length === 1 && two.transport.connectedPeers().length === 1, 'pair connected');
  return [one, two];
}

/** A handler that holds every request until `release` is called. */
function gate(): { handler: Handler; release: () => void; held: () => number } {
  const waiting: Array<() => void> = [];
  let open = false;
  return {
    handler: async (_from, payload) => {
      if (!open) await new Promise<void>((resolve) => waiting.push(resolve));
      return payload;
    },
    release: () => {
      open = true;
      for (const resolve of waiting.splice(0)) resolve();
    },
    held: () => waiting.length,
  };
}

async function failure(promise: Promise<unknown>): Promise<PeerRequestError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof PeerRequestError) return error;
    throw error;
  }
  throw new Error('the request did not fail');
}

function expectFailure(error: PeerRequestError, code: PeerRequestErrorCode, reached: PeerRequestReach): void {
  expect({ code: error.code, reachedHandler: error.reachedHandler }).toEqual({ code, reachedHandler: reached });
  expect(error.notDelivered).toBe(reached === 'no');
}

function settled(nodes: readonly TestNode[]): boolean {
  return nodes.every((node) => node.transport.stats().requestsPending === 0 && node.transport.stats().requestsHandling === 0);
}

describe('peer transport requests', () => {
  it('answers requests both ways over the one existing stream (dialer to acceptor and back)', async () => {
    const echo = (self: number): Handler => async (from, payload) => text(`${self} answers ${from}: ${str(payload)}`);
    const [one, two] = await pair(echo(2), echo(1));
    try {
      expect(str(await one.transport.request(2, text('ping'), { timeoutMs: 5000 }))).toBe('2 answers 1: ping');
      expect(str(await two.transport.request(1, text('pong'), { timeoutMs: 5000 }))).toBe('1 answers 2: pong');
      expect(str(await one.transport.request(2, new Uint8Array(0), { timeoutMs: 5000 }))).toBe('2 answers 1: ');
      const stats = one.transport.stats();
      expect(stats).toMatchObject({ requestsPending: 0, requestsHandling: 0, requestsSent: 2, requestsReceived: 1, reconnects: 0 });
      expect(two.transport.stats()).toMatchObject({ requestsSent: 1, requestsReceived: 2, refused: 0 });
      // One stream each way, never a new one per request.
      for (const node of [one, two]) expect(node.logs.filter((l) => / is live$/.test(l))).toHaveLength(1);
    } finally {
      await stopAll([one, two]);
    }
  });

  it("carries the handler's refusal code and message; other handler errors are refused as 'internal'", async () => {
    const long = 'é'.repeat(peerLimits.refusalMessageBytesMax);
    const handler: Handler = async (_from, payload) => {
      switch (str(payload)) {
        case 'lease':
          throw new PeerRequestRefusal('lease-not-found', 'lease 42 not found');
        case 'long':
          throw new PeerRequestRefusal('x.y_z-9', long);
        case 'sync':
          return (() => {
            throw new Error('handler bug');
          })();
        case 'big':
          return new Uint8Array(peerLimits.responsePayloadBytesMax + 1);
        default:
          return payload;
      }
    };
    const [one, two] = await pair(handler);
    try {
      const lease = await failure(one.transport.request(2, text('lease'), { timeoutMs: 5000 }));
      expectFailure(lease, 'refused', 'yes');
      expect(lease.refusal).toEqual({ code: 'lease-not-found', message: 'lease 42 not found' });
      expect(lease.message).toMatch(/member 2 refused the request: lease-not-found: lease 42 not found/);

      const cut = await failure(one.transport.request(2, text('long'), { timeoutMs: 5000 }));
      expect(cut.refusal?.code).toBe('x.y_z-9');
      // Cut at a character boundary: 512 two-byte characters.
      expect(cut.refusal?.message).toBe('é'.repeat(peerLimits.refusalMessageBytesMax / 2));

      const bug = await failure(one.transport.request(2, text('sync'), { timeoutMs: 5000 }));
      expectFailure(bug, 'refused', 'yes');
      expect(bug.refusal).toEqual({ code: 'internal', message: 'handler bug' });
      const tooBig = await failure(one.transport.request(2, text('big'), { timeoutMs: 5000 }));
      expect(tooBig.refusal?.code).toBe('internal');
      expect(tooBig.refusal?.message).toMatch(/more than/);
      expect(two.logs.filter((l) => l.startsWith('error: ') && /request handler failed/.test(l))).toHaveLength(2);
      expect(settled([one, two])).toBe(true);

      expect(() => new PeerRequestRefusal('Not A Code', 'x')).toThrow(TypeError);
      expect(() => new PeerRequestRefusal('', 'x')).toThrow(TypeError);
      expect(() => new PeerRequestRefusal('a'.repeat(peerLimits.refusalCodeBytesMax + 1), 'x')).toThrow(TypeError);
    } finally {
      await stopAll([one, two]);
    }
  });

  it('times out; the late answer is ignored and the other side frees its slot', async () => {
    const held = gate();
    const [one, two] = await pair(held.handler);
    try {
      const started = Date.now();
      const error = await failure(one.transport.request(2, text('slow'), { timeoutMs: 100 }));
      expectFailure(error, 'timeout', 'maybe');
      expect(Date.now() - started).toBeGreaterThanOrEqual(95);
      expect(one.transport.stats().requestsPending).toBe(0);
      expect(two.transport.stats().requestsHandling).toBe(1);
      held.release();
      await waitFor(() => one.transport.stats().responsesLate === 1, 'the late answer');
      expect(settled([one, two])).toBe(true);
      expect(str(await one.transport.request(2, text('again'), { timeoutMs: 5000 }))).toBe('again');
    } finally {
      await stopAll([one, two]);
    }
  });

  it('a stream broken mid-request rejects it as unreachable (maybe handled); no stream at all: not delivered', async () => {
    const held = gate();
    const [one, first] = await pair(held.handler);
    let two = first;
    try {
      const pending = failure(one.transport.request(2, text('doomed'), { timeoutMs: 10_000 }));
      await waitFor(() => two.transport.stats().requestsHandling === 1, 'the request reached the handler');
      expect(one.transport.stats().requestsPending).toBe(1);
      const port = two.transport.boundPort;
      await two.transport.stop();
      expectFailure(await pending, 'unreachable', 'maybe');
      expect(one.transport.stats().requestsPending).toBe(0);
      held.release();
      await waitFor(() => two.transport.stats().requestsHandling === 0, 'the stopped side drops its answer');

      // No live stream now: refused at once, certainly not delivered.
      expectFailure(await failure(one.transport.request(2, text('x'), { timeoutMs: 5000 })), 'unreachable', 'no');
      expectFailure(await failure(one.transport.request(7, text('x'), { timeoutMs: 5000 })), 'unreachable', 'no');

      // Back on the same port; then removePeer fails what is pending.
      const heldAgain = gate();
      two = await startNode({ id: 2, port, peers: new Map([[1, one.address]]), onRequest: heldAgain.handler });
      await waitFor(() => one.transport.connectedPeers().length === 1, 'redialed');
      const second = failure(one.transport.request(2, text('removed'), { timeoutMs: 10_000 }));
      await waitFor(() => two.transport.stats().requestsHandling === 1, 'reached the handler');
      one.transport.removePeer(2);
      const removed = await second;
      expectFailure(removed, 'unreachable', 'maybe');
      expect(removed.message).toMatch(/removed/);
      heldAgain.release();
      await waitFor(() => settled([one, two]), 'nothing pending');
    } finally {
      await stopAll([one, two]);
    }
  });

  it('stop() rejects what is pending, queued or written; afterwards requests fail as stopped', async () => {
    const held = gate();
    const [one, two] = await pair(held.handler);
    try {
      const written = failure(one.transport.request(2, text('a'), { timeoutMs: 10_000 }));
      await waitFor(() => two.transport.stats().requestsHandling === 1, 'reached the handler');
      const queued = failure(one.transport.request(2, text('b'), { timeoutMs: 10_000 }));
      const stopping = one.transport.stop();
      expectFailure(await written, 'stopped', 'maybe');
      expectFailure(await queued, 'stopped', 'no');
      await stopping;
      expect(one.transport.stats().requestsPending).toBe(0);
      expectFailure(await failure(one.transport.request(2, text('c'), { timeoutMs: 1000 })), 'stopped', 'no');
      held.release();
      await waitFor(() => settled([one, two]), 'nothing pending');
    } finally {
      await stopAll([one, two]);
    }
  });

  it('too-many: the local pending limit refuses at once; beyond its handling limit the peer answers busy', async () => {
    const held = gate();
    const [one, two] = await pair(held.handler);
    try {
      const limit = peerLimits.requestsPendingPerPeerMax;
      const handling = peerLimits.requestsHandlingPerPeerMax;
      const requests = Array.from({ length: limit + 1 }, (_, i) => one.transport.request(2, text(`r${i}`), { timeoutMs: 20_000 }));
      const outcomes = requests.map((request) => request.then((answer) => str(answer), (error: unknown) => error));
      const last = await outcomes[limit];
      expect(last).toBeInstanceOf(PeerRequestError);
      expectFailure(last as PeerRequestError, 'too-many', 'no');
      expect((last as PeerRequestError).message).toMatch(/already pending/);
      // The peer runs `handling` of them and answers busy to the rest at once.
      await waitFor(() => one.transport.stats().requestsPending === handling, 'busy answers back', 10_000);
      expect(two.transport.stats().requestsRefused).toBe(limit - handling);
      expect(held.held()).toBe(handling);
      held.release();
      const results = await Promise.all(outcomes.slice(0, limit));
      const answered = results.filter((r): r is string => typeof r === 'string');
      expect(answered).toEqual(Array.from({ length: handling }, (_, i) => `r${i}`));
      for (const busy of results.slice(handling)) {
        expect(busy).toBeInstanceOf(PeerRequestError);
        expectFailure(busy as PeerRequestError, 'too-many', 'no');
        expect((busy as PeerRequestError).message).toMatch(/handling too many/);
      }
      await waitFor(() => settled([one, two]), 'nothing pending');
    } finally {
      await stopAll([one, two]);
    }
  });

  it('multiplexes many concurrent requests on one stream; answers come back out of order, each to its caller', async () => {
    const random = seeded(99);
    const handler: Handler = async (from, payload) => {
      const n = Number(str(payload));
      await new Promise((resolve) => setTimeout(resolve, Math.floor(random() * 30)));
      return text(`${from}:${n * 2}`);
    };
    const answeredOrder: number[] = [];
    const [one, two] = await pair(handler, handler);
    try {
      // As many as the peer handles at once, both ways at the same time.
      const count = peerLimits.requestsHandlingPerPeerMax;
      const requests: Array<Promise<string>> = [];
      for (let i = 0; i < count; i++) {
        requests.push(
          one.transport.request(2, text(String(i)), { timeoutMs: 10_000 }).then((answer) => {
            answeredOrder.push(i);
            return str(answer);
          }),
        );
        requests.push(two.transport.request(1, text(String(i)), { timeoutMs: 10_000 }).then(str));
        // Raft traffic shares the stream.
        if (i % 50 === 0) {
          one.transport.send(2, 3, [app(1, 2, i)]);
          await nextTurn();
        }
      }
      const answers = await Promise.all(requests);
      answers.forEach((answer, k) => {
        const i = Math.floor(k / 2);
        expect(answer).toBe(k % 2 === 0 ? `1:${i * 2}` : `2:${i * 2}`);
      });
      // The answers overtook each other on the way back.
      expect(answeredOrder).toHaveLength(count);
      expect(answeredOrder).not.toEqual([...answeredOrder].sort((a, b) => a - b));
      expect(two.received.map((r) => r.message.index)).toEqual([0, 50, 100, 150, 200, 250]);
      expect(settled([one, two])).toBe(true);
      for (const node of [one, two]) {
        expect(node.transport.stats()).toMatchObject({ reconnects: 0, refused: 0, requestsRefused: 0, responsesLate: 0 });
        expect(node.logs.filter((l) => / is live$/.test(l))).toHaveLength(1);
      }
    } finally {
      await stopAll([one, two]);
    }
  });

  it('requests go between the chunks of a snapshot in flight', async () => {
    let receivedWhenHandled = -1;
    let two: TestNode | undefined;
    const handler: Handler = async (_from, payload) => {
      receivedWhenHandled = two?.received.length ?? -1;
      return payload;
    };
    const [one, started] = await pair(handler);
    two = started;
    try {
      const data = new Uint8Array(32 * 1024 * 1024).fill(9);
      const confState = { voters: [1, 2], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
      one.transport.send(2, 1, [makeMessage({ type: 'MsgSnap', from: 1, to: 2, term: 1, snapshot: { metadata: { index: 5, term: 1, confState }, data } })]);
      // Queued after the flush microtask has written chunks until grpc pushed back.
      let answer: Promise<Uint8Array> | undefined;
      queueMicrotask(() => {
        answer = one.transport.request(2, text('between'), { timeoutMs: 10_000 });
      });
      await nextTurn();
      expect(one.logs.some((l) => /waiting for drain/.test(l))).toBe(true);
      if (answer === undefined) throw new Error('no request');
      expect(str(await answer)).toBe('between');
      await waitFor(() => two?.received.length === 1, 'the snapshot', 8000);
      expect(receivedWhenHandled).toBe(0);
      expect(two.received[0]?.message.snapshot?.data.byteLength).toBe(data.byteLength);
      expect(two.transport.stats().refused).toBe(0);
    } finally {
      await stopAll([one, two]);
    }
  });

  it("'unsupported' for a peer without a handler and for an older peer that never advertised requests", async () => {
    const [one, two] = await pair(undefined, async (_from, payload) => payload);
    try {
      expectFailure(await failure(one.transport.request(2, text('x'), { timeoutMs: 1000 })), 'unsupported', 'no');
      expect(str(await two.transport.request(1, text('y'), { timeoutMs: 1000 }))).toBe('y');
    } finally {
      await stopAll([one, two]);
    }

    // An "older" node 1: a raw link with a hello and no features in its preamble.
    const three = await startNode({ id: 3, peers: new Map([[1, '127.0.0.1:1']]), onRequest: async (_f, p) => p });
    const link = dialRaw(three.transport.boundPort);
    try {
      link.sendFrame(encodeHello({ clusterId: 1, fromId: 1, toId: 3, protocolVersion: peerLimits.protocolVersion }));
      await waitFor(() => three.transport.connectedPeers().length === 1, 'old node connected');
      expectFailure(await failure(three.transport.request(1, text('x'), { timeoutMs: 1000 })), 'unsupported', 'no');
      three.transport.send(1, 1, [app(3, 1, 0)]);
      await waitFor(() => link.frames.length === 2, 'hello and a batch');
      expect(link.frames.map((frame) => decodeFrame(frame).kind)).toEqual(['hello', 'batch']);
    } finally {
      link.destroy();
      await stopAll([three]);
    }
  });

  it('an answer still queued behind backpressure when the link closes gives its handling slot back', async () => {
    let answered = 0;
    const three = await startNode({ id: 3, peers: new Map([[1, '127.0.0.1:1']]), onRequest: async (_f, p) => ((answered += 1), p) });
    // A raw node 1 that advertises requests but never reads: node 3's writes back up.
    const link = dialRaw(three.transport.boundPort, [peerFeatureRequests]);
    try {
      link.sendFrame(encodeHello({ clusterId: 1, fromId: 1, toId: 3, protocolVersion: peerLimits.protocolVersion }));
      await waitFor(() => three.transport.connectedPeers().length === 1, 'raw node connected');
      link.pause();
      const confState = { voters: [1, 3], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
      const data = new Uint8Array(32 * 1024 * 1024);
      three.transport.send(1, 1, [makeMessage({ type: 'MsgSnap', from: 3, to: 1, term: 1, snapshot: { metadata: { index: 5, term: 1, confState }, data } })]);
      await waitFor(() => three.logs.some((l) => /waiting for drain/.test(l)), 'backpressure');
      link.sendFrame(encodeRequest(1, text('stuck')));
      await waitFor(() => answered === 1, 'the handler answered');
      await nextTurn();
      expect(three.transport.stats().requestsHandling).toBe(1);
      link.destroy();
      await waitFor(() => three.transport.connectedPeers().length === 0, 'link closed');
      expect(three.transport.stats().requestsHandling).toBe(0);
    } finally {
      link.destroy();
      await stopAll([three]);
    }
  });

  it('refuses bad arguments at the edge', async () => {
    const [one, two] = await pair(async (_f, p) => p.subarray(0, peerLimits.responsePayloadBytesMax));
    try {
      const ok = { timeoutMs: 1000 };
      expect(() => one.transport.request(1, text('x'), ok)).toThrow(/this node/);
      expect(() => one.transport.request(0, text('x'), ok)).toThrow(TypeError);
      expect(() => one.transport.request(2, 'x' as unknown as Uint8Array, ok)).toThrow(/Uint8Array/);
      expect(() => one.transport.request(2, new Uint8Array(peerLimits.requestPayloadBytesMax + 1), ok)).toThrow(/requestPayloadBytesMax/);
      expect(() => one.transport.request(2, text('x'), { timeoutMs: 0 })).toThrow(/timeoutMs/);
      expect(() => one.transport.request(2, text('x'), { timeoutMs: peerLimits.requestTimeoutMsMax + 1 })).toThrow(/timeoutMs/);
      // The largest payload crosses.
      const largest = new Uint8Array(peerLimits.requestPayloadBytesMax).fill(3);
      expect((await one.transport.request(2, largest, { timeoutMs: 10_000 })).byteLength).toBe(peerLimits.responsePayloadBytesMax);
    } finally {
      await stopAll([one, two]);
    }
  });
});
