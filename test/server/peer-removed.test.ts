/**
 * Removed members over the peer transport: a removed member's hello is refused with the removal
 * detail and the removed side hears it, whichever side dials; a member that is still known is
 * refused only by the side rule when it probes, and hears nothing; the cluster query answers
 * anyone who reaches the peer port.
 */
import { describe, expect, it } from 'vitest';
import { queryCluster } from '../../src/server/peer/index.js';
import { startNode, stopAll, waitFor } from './peer-harness.js';

const probe = { afterMs: 200, intervalMs: 200 };

describe('peer transport and removed members', () => {
  it('a removed member that dials hears that it was removed', async () => {
    const removedBy: number[] = [];
    const survivor = await startNode({ id: 2, isRemoved: (id) => id === 1 });
    const removed = await startNode({ id: 1, peers: new Map([[2, survivor.address]]), onRemoved: (by) => removedBy.push(by) });
    try {
      await waitFor(() => removedBy.length > 0, 'the removal heard');
      expect(removedBy[0]).toBe(2);
      expect(survivor.transport.connectedPeers()).toEqual([]);
      expect(survivor.received).toEqual([]);
    } finally {
      await stopAll([survivor, removed]);
    }
  });

  it('a removed member that only accepts probes its silent peer and hears it; a known one hears nothing', async () => {
    const removedBy: number[] = [];
    const keptBy: number[] = [];
    // Member 1 removed member 3 (it no longer lists it, so never dials it) and still has member 2.
    const one = await startNode({ id: 1, isRemoved: (id) => id === 3 });
    const three = await startNode({ id: 3, peers: new Map([[1, one.address]]), onRemoved: (by) => removedBy.push(by), removedProbe: probe });
    const two = await startNode({ id: 2, peers: new Map([[1, one.address]]), onRemoved: (by) => keptBy.push(by), removedProbe: probe });
    try {
      await waitFor(() => removedBy.length > 0, 'the probe hearing the removal', 5000);
      expect(removedBy).toContain(1);
      // Member 2 is still unknown to member 1 here (no peer entry), but not removed: it probes,
      // is refused as "not a configured member", and must not conclude it was removed.
      await new Promise((resolve) => setTimeout(resolve, 4 * probe.intervalMs));
      expect(keptBy).toEqual([]);
    } finally {
      await stopAll([one, two, three]);
    }
  });

  it('a still-known member probing is refused by the side rule, quietly, and hears no removal', async () => {
    const heard: number[] = [];
    const one = await startNode({ id: 1 });
    const two = await startNode({ id: 2, peers: new Map([[1, one.address]]), onRemoved: (by) => heard.push(by), removedProbe: probe });
    try {
      // Member 1 knows member 2 at an address where nobody listens, so its dials fail and member 2,
      // hearing nothing, probes member 1: refused by the side rule, which must stay quiet.
      one.transport.addPeer(2, 'http://127.0.0.1:1');
      await waitFor(() => one.logs.some((l) => l.includes('must accept, not dial')), 'a probe refused by the side rule', 5000);
      expect(one.logs.filter((l) => l.startsWith('warn') && l.includes('must accept'))).toEqual([]);
      expect(heard).toEqual([]);
      // Pointed at member 2's real address, member 1 dials it and the stream goes live.
      one.transport.updatePeer(2, `http://${two.address}`);
      await waitFor(() => two.transport.connectedPeers().includes(1), 'the stream from member 1', 10_000);
      expect(heard).toEqual([]);
    } finally {
      await stopAll([one, two]);
    }
  });

  it('answers the cluster query to anyone, UNIMPLEMENTED without clusterInfo', async () => {
    const info = Buffer.from(JSON.stringify({ clusterId: 7, members: [] }));
    const answering = await startNode({ id: 1, clusterInfo: () => info });
    const silent = await startNode({ id: 2 });
    try {
      expect(Buffer.from(await queryCluster(`http://${answering.address}`, undefined, 2000)).toString()).toBe(info.toString());
      await expect(queryCluster(silent.address, undefined, 2000)).rejects.toMatchObject({ code: 12 });
    } finally {
      await stopAll([answering, silent]);
    }
  });
});
