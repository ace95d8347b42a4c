import { describe, it, expect } from 'vitest';
import { makeMessage } from '../../raft/index.js';
import { reconnectDelayMs, peerLimits } from '../../src/server/peer/index.js';
import { app, nextTurn, seeded, startMesh, startNode, stopAll, waitFor, type TestNode } from './peer-harness.js';

describe('peer transport reconnects', () => {
  it('backoff starts near 50 ms, doubles, stays within [50 ms, 2 s] and is jittered', () => {
    const random = seeded(7);
    const delays = Array.from({ length: 12 }, (_, attempt) => reconnectDelayMs(attempt, random));
    expect(delays[0]).toBeGreaterThanOrEqual(peerLimits.reconnectDelayMsMin);
    expect(delays[0]).toBeLessThanOrEqual(63);
    expect(delays[3]).toBeGreaterThanOrEqual(300);
    expect(delays[3]).toBeLessThanOrEqual(500);
    for (const delay of delays) expect(delay).toBeLessThanOrEqual(peerLimits.reconnectDelayMsMax);
    expect(reconnectDelayMs(2, () => 0)).not.toBe(reconnectDelayMs(2, () => 0.99));
  });

  it('a restarted peer is redialed on the same port; sends meanwhile are reported unreachable', async () => {
    const nodes = await startMesh([1, 2]);
    const [one, first] = nodes as [TestNode, TestNode];
    let two: TestNode = first;
    try {
      one.transport.send(2, 1, [app(1, 2, 0)]);
      await waitFor(() => two.received.length === 1, 'first delivery');

      const port = two.transport.boundPort;
      await two.transport.stop();
      await waitFor(() => one.transport.connectedPeers().length === 0, 'dialer notices the loss');

      // Two shards and a snapshot in one turn: one unreachable report for the peer, one failed snapshot.
      const snapshot = { metadata: { index: 9, term: 2, confState: { voters: [1, 2], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } }, data: new Uint8Array(10) };
      one.transport.send(2, 1, [app(1, 2, 1), app(1, 2, 2)]);
      one.transport.send(2, 4, [makeMessage({ type: 'MsgSnap', from: 1, to: 2, term: 2, snapshot })]);
      await nextTurn();
      expect(one.unreachable).toEqual([{ peer: 2, shards: [1, 4] }]);
      expect(one.snapshotStatus).toEqual([{ peer: 2, shard: 4, ok: false }]);
      expect(one.transport.stats().dropped).toBe(3);

      // Let a few dials fail against the closed port, then come back on the same port.
      await new Promise((resolve) => setTimeout(resolve, 200));
      two = await startNode({ id: 2, port, peers: new Map([[1, one.address]]) });
      await waitFor(() => one.transport.connectedPeers().length === 1, 'redialed');
      expect(one.transport.stats().reconnects).toBeGreaterThanOrEqual(2);

      one.transport.send(2, 1, [app(1, 2, 3)]);
      two.transport.send(1, 1, [app(2, 1, 4)]);
      await waitFor(() => two.received.length === 1 && one.received.length === 1, 'delivery resumes both ways');
      expect(two.received[0]?.message.index).toBe(3);
      expect(one.received[0]?.message.index).toBe(4);
    } finally {
      await stopAll([one, two]);
    }
  });

  it('a restarted dialer is accepted again and the old stream is replaced', async () => {
    const nodes = await startMesh([1, 2]);
    const [first, two] = nodes as [TestNode, TestNode];
    let one: TestNode = first;
    try {
      const port = one.transport.boundPort;
      await one.transport.stop();
      await waitFor(() => two.transport.connectedPeers().length === 0, 'acceptor notices the loss');
      two.transport.send(1, 8, [app(2, 1, 0)]);
      await nextTurn();
      expect(two.unreachable).toEqual([{ peer: 1, shards: [8] }]);

      one = await startNode({ id: 1, port, peers: new Map([[2, two.address]]) });
      await waitFor(() => two.transport.connectedPeers().length === 1 && one.transport.connectedPeers().length === 1, 'reconnected');
      two.transport.send(1, 8, [app(2, 1, 1)]);
      await waitFor(() => one.received.length === 1, 'delivery resumes');
    } finally {
      await stopAll([one, two]);
    }
  });

  it('removePeer closes the stream and stops redialing; addPeer brings it back', async () => {
    const nodes = await startMesh([1, 2]);
    const [one, two] = nodes as [TestNode, TestNode];
    try {
      one.transport.removePeer(2);
      await waitFor(() => two.transport.connectedPeers().length === 0, 'stream closed');
      const reconnects = one.transport.stats().reconnects;
      await new Promise((resolve) => setTimeout(resolve, 150));
      expect(one.transport.stats().reconnects).toBe(reconnects);
      one.transport.addPeer(2, two.address);
      // The dialer goes live last (when the acceptor's hello comes back).
      await waitFor(() => one.transport.connectedPeers().length === 1, 'stream back');
      one.transport.send(2, 1, [app(1, 2, 0)]);
      await waitFor(() => two.received.length === 1, 'delivery');
    } finally {
      await stopAll(nodes);
    }
  });

  it('updatePeer moves the dialer to a new address', async () => {
    const two = await startNode({ id: 2, peers: new Map([[1, '127.0.0.1:1']]) });
    // Port 1 on loopback: nothing listens there, dials fail fast.
    const one = await startNode({ id: 1, peers: new Map([[2, '127.0.0.1:1']]) });
    try {
      await waitFor(() => one.transport.stats().reconnects >= 1, 'failed dials');
      expect(one.transport.connectedPeers()).toEqual([]);
      one.transport.updatePeer(2, `https://${two.address}/`);
      await waitFor(() => one.transport.connectedPeers().length === 1, 'connected at the new address');
      one.transport.send(2, 1, [app(1, 2, 0)]);
      await waitFor(() => two.received.length === 1, 'delivery');
      await expect(startNode({ id: 9, port: two.transport.boundPort })).rejects.toThrow();
    } finally {
      await stopAll([one, two]);
    }
  });
});
