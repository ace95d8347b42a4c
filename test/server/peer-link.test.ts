import { describe, it, expect } from 'vitest';
import {
  LINK_CLOSE,
  LINK_FRAME,
  LINK_PREAMBLE,
  LinkProtocolError,
  RecordReader,
  decodeClose,
  encodeClose,
  encodeHello,
  encodePreamble,
  encodeRecord,
  linkStatus,
  peerLimits,
  queryCluster,
} from '../../src/server/peer/index.js';
import { dialRaw, startMesh, startNode, stopAll, waitFor, type TestNode } from './peer-harness.js';

/** Feeds `bytes` to a fresh reader in pieces of `step` bytes; returns the records read. */
function readAll(bytes: Buffer, step: number): Array<{ kind: number; body: string }> {
  const reader = new RecordReader();
  const records: Array<{ kind: number; body: string }> = [];
  for (let at = 0; at < bytes.byteLength; at += step) {
    reader.push(bytes.subarray(at, at + step), (kind, body) => (records.push({ kind, body: body.toString('latin1') }), true));
  }
  return records;
}

describe('peer link framing', () => {
  it('reads the same records whatever the socket cuts them into', () => {
    const stream = Buffer.concat([
      encodePreamble(['requests']),
      encodeRecord(LINK_FRAME, Buffer.from('one')),
      encodeRecord(LINK_FRAME, Buffer.alloc(70_000, 'x')),
      encodeClose(linkStatus.PERMISSION_DENIED, 'member removed: yes'),
    ]);
    const whole = readAll(stream, stream.byteLength);
    expect(whole.map((r) => r.kind)).toEqual([LINK_PREAMBLE, LINK_FRAME, LINK_FRAME, LINK_CLOSE]);
    for (const step of [1, 3, 5, 4096]) expect(readAll(stream, step)).toEqual(whole);
    expect(decodeClose(Buffer.from(whole[3]!.body, 'latin1'))).toEqual({ code: linkStatus.PERMISSION_DENIED, details: 'member removed: yes' });
  });

  it('refuses other protocols and oversized records before buffering them', () => {
    const reader = new RecordReader();
    // An HTTP/2 preface reads as a length of about 1.3 GB.
    expect(() => reader.push(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), () => true)).toThrow(LinkProtocolError);
    expect(() => new RecordReader().push(encodeRecord(LINK_FRAME, Buffer.from('x')), () => true)).toThrow(/preamble/);
    const live = new RecordReader();
    live.push(encodePreamble([]), () => true);
    const header = Buffer.alloc(5);
    header.writeUInt32BE(peerLimits.linkRecordBytesMax + 1, 0);
    expect(() => live.push(header, () => true)).toThrow(/at most/);
  });
});

describe('peer link keepalive', () => {
  const keepalive = { intervalMs: 20, silenceMsMax: 60 };

  it('measures round trips to live peers', async () => {
    const nodes = await startMesh([1, 2], { keepalive });
    const [one, two] = nodes as [TestNode, TestNode];
    try {
      await waitFor(() => one.roundTrips.length >= 2 && two.roundTrips.length >= 2, 'round trips measured');
      expect(one.roundTrips.every((r) => r.peer === 2 && r.seconds >= 0 && r.seconds < 5)).toBe(true);
      expect(two.roundTrips.every((r) => r.peer === 1)).toBe(true);
      expect(one.transport.connectedPeers()).toEqual([2]);
    } finally {
      await stopAll(nodes);
    }
  });

  it('closes a link that has gone silent', async () => {
    const three = await startNode({ id: 3, peers: new Map([[1, '127.0.0.1:1']]), keepalive });
    // A raw node 1 that says hello and then stops reading and writing (no pongs, no pings).
    const link = dialRaw(three.transport.boundPort);
    try {
      link.sendFrame(encodeHello({ clusterId: 1, fromId: 1, toId: 3, protocolVersion: peerLimits.protocolVersion }));
      await waitFor(() => three.transport.connectedPeers().length === 1, 'raw node connected');
      link.pause();
      await waitFor(() => three.transport.connectedPeers().length === 0, 'silent link closed');
      expect(three.logs.some((l) => /nothing heard for/.test(l))).toBe(true);
    } finally {
      link.destroy();
      await stopAll([three]);
    }
  });
});

describe('cluster query over the link', () => {
  it('answers with the host cluster info, UNIMPLEMENTED without one, and fails fast on a closed port', async () => {
    const answering = await startNode({ id: 1, clusterInfo: () => new TextEncoder().encode('{"members":[]}') });
    const silent = await startNode({ id: 2 });
    try {
      expect(Buffer.from(await queryCluster(answering.address, undefined, 2000)).toString()).toBe('{"members":[]}');
      await expect(queryCluster(silent.address, undefined, 2000)).rejects.toMatchObject({ code: linkStatus.UNIMPLEMENTED });
      const port = silent.transport.boundPort;
      await stopAll([silent]);
      await expect(queryCluster(`127.0.0.1:${port}`, undefined, 2000)).rejects.toMatchObject({ code: linkStatus.UNAVAILABLE });
    } finally {
      await stopAll([answering, silent]);
    }
  });
});
