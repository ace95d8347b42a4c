/**
 * Admission over real sockets on loopback: a link is refused (counted, logged at warn with its
 * address, nothing delivered) when its hello names a member this node does not know, or a member
 * whose peer URLs are on another host; the member set's changes (add, remove, new URLs) apply to
 * the next hello without a restart, and end a live link they no longer admit. A member named by host name is admitted by name.
 */
import * as net from 'node:net';
import { describe, expect, it } from 'vitest';
import { LINK_FRAME, encodeHello, encodePreamble, encodeRecord, peerLimits } from '../../src/server/peer/index.js';
import { app, nextTurn, startNode, stopAll, waitFor } from './peer-harness.js';

/** A documentation address (TEST-NET-3): no link on this machine comes from it. */
const elsewhere = 'http://203.0.113.9:2380';

describe('peer admission', () => {
  it('refuses a member whose link comes from none of its peer URL hosts, until its URLs name this host', async () => {
    const two = await startNode({ id: 2 });
    two.transport.addPeer(1, elsewhere);
    const one = await startNode({ id: 1, peers: new Map([[2, two.address]]) });
    try {
      await waitFor(() => two.refusals.length >= 2, 'refused dials');
      expect(two.refusals.every((r) => r.reason === 'address' && r.remoteAddress === '127.0.0.1')).toBe(true);
      const warning = two.logs.find((l) => l.startsWith('warn') && l.includes('(address)'));
      expect(warning).toMatch(/refusing accepted link \(before hello\) from 127\.0\.0\.1:\d+ \(address\): member 1's peer URLs are on 203\.0\.113\.9, but the link comes from 127\.0\.0\.1/);
      // The dialer hears why.
      await waitFor(() => one.logs.some((l) => l.includes('peer closed the link') && l.includes('203.0.113.9')), 'the dialer told');
      one.transport.send(2, 1, [app(1, 2, 0)]);
      await nextTurn();
      expect(two.received).toEqual([]);
      expect(two.transport.connectedPeers()).toEqual([]);

      // The member's URLs change (etcdctl member update): a URL on this host admits the next dial.
      two.transport.updatePeer(1, [elsewhere, 'http://127.0.0.1:2380']);
      // Both sides live: the dialer's link is live once the acceptor's hello came back.
      await waitFor(() => two.transport.connectedPeers().includes(1) && one.transport.connectedPeers().includes(2), 'the link admitted after the update', 10_000);
      one.transport.send(2, 1, [app(1, 2, 1)]);
      await waitFor(() => two.received.length === 1, 'delivery');

      // The URLs move away again: the live link ends and the redials are refused.
      const before = two.refusals.length;
      two.transport.updatePeer(1, elsewhere);
      expect(two.transport.connectedPeers()).toEqual([]);
      await waitFor(() => two.refusals.length > before, 'a redial refused', 10_000);
      expect(two.refusals.slice(before).every((r) => r.reason === 'address')).toBe(true);
    } finally {
      await stopAll([one, two]);
    }
  });

  it('refuses an id that is not a member; admits it once added, refuses it again once removed', async () => {
    const two = await startNode({ id: 2 });
    const one = await startNode({ id: 1, peers: new Map([[2, two.address]]) });
    try {
      await waitFor(() => two.refusals.length >= 1, 'a refused dial');
      expect(two.refusals[0]).toEqual({ reason: 'not_member', remoteAddress: '127.0.0.1' });
      expect(two.logs.some((l) => l.startsWith('warn') && /from 127\.0\.0\.1:\d+ \(not_member\): member 1 is not a configured member/.test(l))).toBe(true);

      // member add: the next dial is admitted, without a restart.
      two.transport.addPeer(1, 'http://127.0.0.1:1');
      await waitFor(() => two.transport.connectedPeers().includes(1), 'the added member admitted', 10_000);

      // member remove (the host drops it from the peer set): the link closes and redials are refused.
      const before = two.refusals.length;
      two.transport.removePeer(1);
      await waitFor(() => two.refusals.length > before, 'a redial refused', 10_000);
      expect(two.refusals.slice(before).every((r) => r.reason === 'not_member')).toBe(true);
      expect(two.transport.connectedPeers()).toEqual([]);
    } finally {
      await stopAll([one, two]);
    }
  });

  it('refuses a removed member as removed, and the removed member hears it', async () => {
    const removedBy: number[] = [];
    // Still in the peer set (the host has not caught up with the removal): removal comes first.
    const two = await startNode({ id: 2, isRemoved: (id) => id === 1 });
    two.transport.addPeer(1, 'http://127.0.0.1:1');
    const one = await startNode({ id: 1, peers: new Map([[2, two.address]]), onRemoved: (by) => removedBy.push(by) });
    try {
      await waitFor(() => removedBy.length > 0, 'the removal heard');
      expect(two.refusals[0]).toEqual({ reason: 'removed', remoteAddress: '127.0.0.1' });
      expect(two.received).toEqual([]);
    } finally {
      await stopAll([one, two]);
    }
  });

  it('admits a member named by host name by name (no resolution), and a member on localhost', async () => {
    const three = await startNode({ id: 3 });
    three.transport.addPeer(1, 'http://member-one.invalid:2380');
    three.transport.addPeer(2, 'http://localhost:2380');
    const one = await startNode({ id: 1, peers: new Map([[3, three.address]]) });
    const two = await startNode({ id: 2, peers: new Map([[3, three.address]]) });
    try {
      await waitFor(() => three.transport.connectedPeers().length === 2, 'both admitted');
      expect(three.refusals).toEqual([]);
    } finally {
      await stopAll([one, two, three]);
    }
  });

  it('logs at most refusalWarningsPerIntervalMax refusals at warn per interval; the metric hook hears every one', async () => {
    const two = await startNode({ id: 2 });
    const hellos = peerLimits.refusalWarningsPerIntervalMax + 5;
    const sockets: net.Socket[] = [];
    try {
      for (let i = 0; i < hellos; i++) {
        const socket = net.connect({ host: '127.0.0.1', port: two.transport.boundPort });
        socket.on('error', () => {});
        socket.write(encodePreamble([]));
        socket.write(encodeRecord(LINK_FRAME, encodeHello({ clusterId: 1, fromId: 0x5eed, toId: 2, protocolVersion: peerLimits.protocolVersion })));
        sockets.push(socket);
      }
      await waitFor(() => two.refusals.length === hellos, 'every hello refused');
      const warnings = two.logs.filter((l) => l.startsWith('warn') && l.includes('(not_member)'));
      expect(warnings.length).toBe(peerLimits.refusalWarningsPerIntervalMax);
      expect(two.logs.filter((l) => l.startsWith('debug') && l.includes('(not_member)')).length).toBe(5);
    } finally {
      for (const socket of sockets) socket.destroy();
      await stopAll([two]);
    }
  });
});
