import { describe, it, expect } from 'vitest';
import { randomBytes } from 'node:crypto';
import { makeMessage } from '../../raft/index.js';
import { peerLimits } from '../../src/server/peer/index.js';
import { startMesh, stopAll, waitFor, type TestNode } from './peer-harness.js';

describe('peer transport limits and backpressure', () => {
  it('beyond the per-peer queue limit messages are dropped and reported; the rest arrive in order', async () => {
    const nodes = await startMesh([1, 2]);
    const [one, two] = nodes as [TestNode, TestNode];
    try {
      const total = peerLimits.peerQueueMessagesMax + 1000;
      const messages = Array.from({ length: total }, (_, index) => makeMessage({ type: 'MsgHeartbeat', from: 1, to: 2, term: 1, index }));
      one.transport.send(2, 3, messages);
      await waitFor(() => two.received.length === peerLimits.peerQueueMessagesMax, 'the queued messages', 8000);
      expect(one.transport.stats().dropped).toBe(1000);
      expect(one.unreachable).toEqual([{ peer: 2, shards: [3] }]);
      expect(two.received.every((r, i) => r.message.index === i)).toBe(true);
      // Frames are cut near frameBytesTarget, so a large turn needs more than one.
      expect(one.transport.stats().framesSent).toBeGreaterThan(2);
    } finally {
      await stopAll(nodes);
    }
  });

  it('waits for drain when the socket pushes back, and still delivers a 32 MiB snapshot intact', async () => {
    const nodes = await startMesh([1, 2]);
    const [one, two] = nodes as [TestNode, TestNode];
    try {
      const data = randomBytes(32 * 1024 * 1024);
      one.transport.send(2, 1, [
        makeMessage({
          type: 'MsgSnap',
          from: 1,
          to: 2,
          term: 1,
          snapshot: { metadata: { index: 10, term: 1, confState: { voters: [1, 2], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } }, data },
        }),
      ]);
      one.transport.send(2, 1, [makeMessage({ type: 'MsgApp', from: 1, to: 2, term: 1, index: 10 })]);
      await waitFor(() => two.received.length === 2, 'snapshot and the message after it', 8000);
      expect(one.logs.some((l) => /waiting for drain/.test(l))).toBe(true);
      const snapshot = two.received[0]?.message.snapshot;
      expect(snapshot !== undefined && Buffer.from(snapshot.data).equals(data)).toBe(true);
      expect(two.received[1]?.message.type).toBe('MsgApp');
      expect(one.snapshotStatus).toEqual([{ peer: 2, shard: 1, ok: true }]);
    } finally {
      await stopAll(nodes);
    }
  });

  it('refuses bad arguments at the edge', async () => {
    const nodes = await startMesh([1, 2]);
    const [one] = nodes as [TestNode, TestNode];
    try {
      expect(() => one.transport.send(2, -1, [])).toThrow(TypeError);
      expect(() => one.transport.send(2, 1, [makeMessage({ type: 'MsgHup' })])).toThrow(/local message/);
      expect(() => one.transport.addPeer(2, '127.0.0.1:1')).toThrow(/already a peer/);
      expect(() => one.transport.addPeer(5, 'not an address')).toThrow(/host:port/);
      expect(() => one.transport.addPeer(1, '127.0.0.1:1')).toThrow(/this node/);
    } finally {
      await stopAll(nodes);
    }
  });
});
