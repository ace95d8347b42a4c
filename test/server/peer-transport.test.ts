import { describe, it, expect } from 'vitest';
import net from 'node:net';
import { makeMessage } from '../../raft/index.js';
import { encodeHello, linkStatus, peerLimits } from '../../src/server/peer/index.js';
import { app, dialRaw, nextTurn, startMesh, startNode, stopAll, waitFor, type TestNode } from './peer-harness.js';

describe('peer transport', () => {
  it('three nodes exchange batches for several shards, in order, one frame per turn per peer', async () => {
    const nodes = await startMesh([1, 2, 3]);
    try {
      const shards = [0, 1, 7, 42];
      const perTurn = 5;
      const turns = 10;
      const before = nodes.map((node) => node.transport.stats());
      let index = 0;
      for (let turn = 0; turn < turns; turn++) {
        for (let i = 0; i < perTurn; i++, index++) {
          for (const from of nodes) {
            for (const to of nodes) {
              if (from === to) continue;
              for (const shard of shards) from.transport.send(to.id, shard, [app(from.id, to.id, index)]);
            }
          }
        }
        await nextTurn();
      }
      const expected = turns * perTurn * shards.length * 2;
      await waitFor(() => nodes.every((node) => node.received.length === expected), 'every message delivered');
      nodes.forEach((node, i) => {
        const was = before[i];
        const now = node.transport.stats();
        if (was === undefined) throw new Error('missing stats');
        // One frame per turn per peer; each node has two peers.
        expect(now.framesSent - was.framesSent).toBe(turns * 2);
        expect(now.framesReceived - was.framesReceived).toBe(turns * 2);
        expect(now.messagesSent - was.messagesSent).toBe(expected);
        expect(now.messagesReceived - was.messagesReceived).toBe(expected);
        expect(now.dropped + now.refused).toBe(0);
        for (const from of nodes) {
          if (from === node) continue;
          for (const shard of shards) {
            const indexes = node.received.filter((r) => r.from === from.id && r.shard === shard).map((r) => r.message.index);
            expect(indexes).toEqual(Array.from({ length: turns * perTurn }, (_, k) => k));
          }
        }
        expect(node.received.every((r) => r.message.to === node.id && r.message.entries[0]?.index === r.message.index + 1)).toBe(true);
      });
    } finally {
      await stopAll(nodes);
    }
  });

  it('refuses a peer with the wrong cluster id and one that is not a member; nothing is delivered', async () => {
    const acceptor = await startNode({ id: 5, peers: new Map([[1, '127.0.0.1:1'], [4, '127.0.0.1:1']]) });
    const wrongCluster = await startNode({ id: 1, clusterId: 2, peers: new Map([[5, acceptor.address]]) });
    const stranger = await startNode({ id: 3, peers: new Map([[5, acceptor.address]]) });
    const nodes = [acceptor, wrongCluster, stranger];
    try {
      await waitFor(() => acceptor.transport.stats().refused >= 2, 'two refusals');
      expect(acceptor.logs.some((l) => /cluster id mismatch: member 1 is in cluster 2, this node is in cluster 1/.test(l))).toBe(true);
      expect(acceptor.logs.some((l) => /member 3 is not a configured member/.test(l))).toBe(true);
      // The dialers hear why (the gRPC status details) and log it as a warning.
      await waitFor(() => wrongCluster.logs.some((l) => l.startsWith('warn') && /cluster id mismatch/.test(l)), 'dialer sees refusal');
      await waitFor(() => stranger.logs.some((l) => l.startsWith('warn') && /not a configured member/.test(l)), 'dialer sees refusal');
      for (const node of [wrongCluster, stranger]) {
        node.transport.send(5, 1, [app(node.id, 5, 0)]);
        expect(node.transport.connectedPeers()).toEqual([]);
      }
      await nextTurn();
      expect(wrongCluster.unreachable).toEqual([{ peer: 5, shards: [1] }]);
      expect(stranger.unreachable).toEqual([{ peer: 5, shards: [1] }]);
      expect(acceptor.received).toEqual([]);
      expect(acceptor.transport.connectedPeers()).toEqual([]);
    } finally {
      await stopAll(nodes);
    }
  });

  it('drops messages for an unknown shard, logs it once, and delivers the rest of the batch', async () => {
    const [one, two] = await startMesh([1, 2], { isKnownShard: (shard) => shard !== 13 });
    if (one === undefined || two === undefined) throw new Error('mesh');
    try {
      for (let round = 0; round < 2; round++) {
        for (const shard of [12, 13, 14]) one.transport.send(2, shard, [app(1, 2, round)]);
        await nextTurn();
      }
      await waitFor(() => two.received.length === 4, 'known shards delivered');
      expect(two.received.map((r) => [r.shard, r.message.index])).toEqual([[12, 0], [14, 0], [12, 1], [14, 1]]);
      expect(two.transport.stats().refused).toBe(2);
      expect(two.logs.filter((l) => /unknown shard 13/.test(l))).toHaveLength(1);
    } finally {
      await stopAll([one, two]);
    }
  });

  it('survives raw garbage on its port and garbage frames on a well-formed link, and keeps serving', async () => {
    const nodes = await startMesh([1, 2]);
    const [one, two] = nodes as [TestNode, TestNode];
    try {
      // Plain TCP: random bytes, then an HTTP/2 preface followed by junk.
      for (const payload of [
        Buffer.from(Array.from({ length: 65536 }, (_, i) => (i * 7919) & 0xff)),
        Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.alloc(4096, 0xee)]),
      ]) {
        await new Promise<void>((resolve) => {
          const socket = net.connect(two.transport.boundPort, '127.0.0.1', () => socket.end(payload));
          socket.on('error', () => resolve());
          socket.on('close', () => resolve());
          socket.resume();
        });
      }
      // A well-formed link whose frames are garbage, and one whose first frame is not a hello.
      const statuses: Array<{ code: number; details: string }> = [];
      for (const frame of [
        Buffer.from('definitely not a frame'),
        Buffer.from([peerLimits.protocolVersion, 2, 0, 0, 0, 0]),
        encodeHello({ clusterId: 1, fromId: 1, toId: 2, protocolVersion: 99 }),
      ]) {
        const link = dialRaw(two.transport.boundPort);
        link.sendFrame(frame);
        const ended = await link.ended;
        link.destroy();
        statuses.push(ended === 'closed' ? { code: -1, details: 'closed without a reason' } : ended);
      }
      expect(statuses.map((s) => s.code)).toEqual([
        linkStatus.INVALID_ARGUMENT,
        linkStatus.INVALID_ARGUMENT,
        linkStatus.FAILED_PRECONDITION,
      ]);
      expect(statuses[1]?.details).toMatch(/empty batch/);
      expect(statuses[2]?.details).toMatch(/protocol version 99/);
      expect(two.transport.connectedPeers()).toEqual([1]);
      one.transport.send(2, 3, [makeMessage({ type: 'MsgHeartbeat', from: 1, to: 2, term: 4 })]);
      await waitFor(() => two.received.length === 1, 'delivery after garbage');
      expect(two.received[0]?.message.type).toBe('MsgHeartbeat');
    } finally {
      await stopAll(nodes);
    }
  });
});
