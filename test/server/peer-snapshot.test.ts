import { describe, it, expect } from 'vitest';
import { randomBytes } from 'node:crypto';
import { makeMessage, type Message } from '../../raft/index.js';
import { peerLimits } from '../../src/server/peer/index.js';
import { app, startMesh, stopAll, waitFor, type TestNode } from './peer-harness.js';

function snapMessage(from: number, to: number, index: number, data: Uint8Array): Message {
  return makeMessage({
    type: 'MsgSnap',
    from,
    to,
    term: 3,
    snapshot: {
      metadata: { index, term: 3, confState: { voters: [1, 2, 3], votersOutgoing: [], learners: [4], learnersNext: [], autoLeave: false } },
      data,
    },
  });
}

describe('peer transport snapshots', () => {
  it('a 5 MiB snapshot arrives intact in chunks, in order with the messages around it', async () => {
    const nodes = await startMesh([1, 2]);
    const [one, two] = nodes as [TestNode, TestNode];
    try {
      const data = randomBytes(5 * 1024 * 1024);
      const sentBefore = one.transport.stats().framesSent;
      const receivedBefore = two.transport.stats().framesReceived;
      one.transport.send(2, 6, [app(1, 2, 1)]);
      one.transport.send(2, 6, [snapMessage(1, 2, 100, data)]);
      one.transport.send(2, 6, [app(1, 2, 2)]);
      one.transport.send(2, 7, [app(1, 2, 3)]);

      await waitFor(() => two.received.length === 4, 'all four messages');
      expect(two.received.map((r) => [r.shard, r.message.type])).toEqual([
        [6, 'MsgApp'],
        [6, 'MsgSnap'],
        [6, 'MsgApp'],
        [7, 'MsgApp'],
      ]);
      const snap = two.received[1]?.message.snapshot;
      expect(snap?.metadata).toEqual({ index: 100, term: 3, confState: { voters: [1, 2, 3], votersOutgoing: [], learners: [4], learnersNext: [], autoLeave: false } });
      expect(snap !== undefined && Buffer.from(snap.data).equals(data)).toBe(true);
      await waitFor(() => one.snapshotStatus.length === 1, 'snapshot status');
      expect(one.snapshotStatus).toEqual([{ peer: 2, shard: 6, ok: true }]);
      // batch, header, 5 chunks, batch.
      const chunks = Math.ceil(data.byteLength / peerLimits.snapshotChunkBytes);
      expect(one.transport.stats().framesSent - sentBefore).toBe(1 + 1 + chunks + 1);
      expect(two.transport.stats().framesReceived - receivedBefore).toBe(1 + 1 + chunks + 1);
      expect(two.transport.stats().messagesReceived).toBe(4);
    } finally {
      await stopAll(nodes);
    }
  });

  it('a small snapshot rides in a batch and reports ok; a snapshot for an unknown shard is read and discarded', async () => {
    const nodes = await startMesh([1, 2], { isKnownShard: (shard) => shard !== 99 });
    const [one, two] = nodes as [TestNode, TestNode];
    try {
      one.transport.send(2, 99, [snapMessage(1, 2, 5, randomBytes(3 * 1024 * 1024))]);
      one.transport.send(2, 1, [snapMessage(1, 2, 6, randomBytes(1000))]);
      await waitFor(() => two.received.length === 1, 'small snapshot');
      expect(two.received[0]?.message.snapshot?.metadata.index).toBe(6);
      expect(two.received[0]?.message.snapshot?.data.byteLength).toBe(1000);
      expect(two.transport.stats().refused).toBe(1);
      await waitFor(() => one.snapshotStatus.length === 2, 'both statuses');
      expect(one.snapshotStatus).toEqual([
        { peer: 2, shard: 99, ok: true },
        { peer: 2, shard: 1, ok: true },
      ]);
      // The stream is still in step after the discarded chunks.
      one.transport.send(2, 1, [app(1, 2, 9)]);
      await waitFor(() => two.received.length === 2, 'message after the discarded snapshot');
    } finally {
      await stopAll(nodes);
    }
  });
});
