import { describe, it, expect } from 'vitest';
import * as net from 'node:net';
import {
  LINK_CLOSE,
  LINK_FRAME,
  LINK_PING,
  LINK_PONG,
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
  decodeFrame,
} from '../../src/server/peer/index.js';
import { makeMessage } from '../../raft/index.js';
import { dialRaw, startMesh, startNode, stopAll, waitFor, type RawLink, type TestNode } from './peer-harness.js';

/** What a raw link ended with, or 'open' if it had not ended within `ms` (well below the hello timeout). */
function endedWithin(link: RawLink, ms: number): Promise<{ code: number; details: string } | 'closed' | 'open'> {
  return Promise.race([link.ended, new Promise<'open'>((resolve) => setTimeout(() => resolve('open'), ms).unref())]);
}

const ping = (bytes: number): Buffer => encodeRecord(LINK_PING, Buffer.alloc(bytes));

/** Feeds `bytes` to a fresh reader in pieces of `step` bytes; returns the records read. */
function readAll(bytes: Buffer, step: number): Array<{ kind: number; body: string }> {
  const reader = new RecordReader(peerLimits.linkRecordBytesMax);
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
    const live = new RecordReader(peerLimits.linkRecordBytesMax);
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

describe('peer link before hello', () => {
  it('keeps records small until the hello is accepted', async () => {
    const node = await startNode({ id: 2, peers: new Map([[1, '127.0.0.1:1']]) });
    const link = dialRaw(node.transport.boundPort);
    try {
      // A header announcing a 64 KiB record (far below linkRecordBytesMax): refused before any of it is buffered.
      const recordBytes = 64 * 1024;
      expect(recordBytes).toBeLessThan(peerLimits.linkRecordBytesMax);
      const header = Buffer.alloc(5);
      header.writeUInt32BE(recordBytes, 0);
      header.writeUInt8(LINK_FRAME, 4);
      link.sendBytes(header);
      expect(await endedWithin(link, 2000)).toMatchObject({ code: linkStatus.INVALID_ARGUMENT, details: expect.stringMatching(/at most/) });
    } finally {
      link.destroy();
      await stopAll([node]);
    }
  });

  it('allows full-size records once the link is live', async () => {
    const node = await startNode({ id: 2, peers: new Map([[1, '127.0.0.1:1']]) });
    const link = dialRaw(node.transport.boundPort);
    try {
      link.sendFrame(encodeHello({ clusterId: 1, fromId: 1, toId: 2, protocolVersion: peerLimits.protocolVersion }));
      await waitFor(() => node.transport.connectedPeers().length === 1, 'raw node live');
      // A large (garbage) frame is read whole, then refused by the codec, not by the framing.
      link.sendFrame(Buffer.alloc(peerLimits.linkRecordBytesMaxBeforeHello * 4, 0xff));
      const ended = await endedWithin(link, 2000);
      expect(ended).not.toBe('open');
      expect(ended).not.toMatchObject({ details: expect.stringMatching(/at most/) });
    } finally {
      link.destroy();
      await stopAll([node]);
    }
  });

  it('refuses a ping before hello and answers no pong', async () => {
    const node = await startNode({ id: 2, peers: new Map([[1, '127.0.0.1:1']]) });
    const link = dialRaw(node.transport.boundPort);
    try {
      link.sendBytes(ping(8));
      expect(await endedWithin(link, 2000)).toMatchObject({ code: linkStatus.INVALID_ARGUMENT, details: expect.stringMatching(/before hello/) });
      expect(link.records.some((r) => r.kind === LINK_PONG)).toBe(false);
    } finally {
      link.destroy();
      await stopAll([node]);
    }
  });

  it('refuses a ping whose body is not linkPingBytes on a live link', async () => {
    const node = await startNode({ id: 2, peers: new Map([[1, '127.0.0.1:1']]) });
    const link = dialRaw(node.transport.boundPort);
    try {
      link.sendFrame(encodeHello({ clusterId: 1, fromId: 1, toId: 2, protocolVersion: peerLimits.protocolVersion }));
      await waitFor(() => node.transport.connectedPeers().length === 1, 'raw node live');
      link.sendBytes(ping(1000));
      expect(await endedWithin(link, 2000)).toMatchObject({ code: linkStatus.INVALID_ARGUMENT, details: expect.stringMatching(/ping of 1000 bytes/) });
      expect(link.records.some((r) => r.kind === LINK_PONG)).toBe(false);
    } finally {
      link.destroy();
      await stopAll([node]);
    }
  });

  it('cuts the details of a close record to closeDetailsBytesMax when reading it', () => {
    // A live link's record may be 16 MiB; its close details must not reach a log line whole.
    const body = Buffer.concat([Buffer.from([linkStatus.UNAVAILABLE]), Buffer.alloc(64 * 1024, 'x')]);
    expect(decodeClose(body).details.length).toBe(peerLimits.closeDetailsBytesMax);
  });

  it('closes connections beyond peerLinksPendingMax at once', async () => {
    const node = await startNode({ id: 2 });
    const sockets: net.Socket[] = [];
    const connect = (): Promise<net.Socket> =>
      new Promise((resolve, reject) => {
        const socket = net.connect(node.transport.boundPort, '127.0.0.1', () => resolve(socket));
        socket.on('error', reject);
        sockets.push(socket);
      });
    try {
      await Promise.all(Array.from({ length: peerLimits.peerLinksPendingMax }, connect));
      const extra = await connect();
      const closed = await Promise.race([
        new Promise<boolean>((resolve) => extra.once('close', () => resolve(true))),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 2000).unref()),
      ]);
      expect(closed).toBe(true);
      expect(sockets.slice(0, peerLimits.peerLinksPendingMax).every((socket) => !socket.destroyed)).toBe(true);
    } finally {
      for (const socket of sockets) socket.destroy();
      await stopAll([node]);
    }
  });
});

describe('peer link refusals reach the dialer', () => {
  it('sends its preamble before refusing a dialer of another link version, so the dialer reads why', async () => {
    const node = await startNode({ id: 2 });
    const otherVersion = encodeRecord(LINK_PREAMBLE, Buffer.concat([Buffer.from('dkv-peer', 'latin1'), Buffer.from([peerLimits.linkVersion + 1])]));
    const link = dialRaw(node.transport.boundPort, [], otherVersion);
    try {
      expect(await endedWithin(link, 2000)).toEqual({
        code: linkStatus.FAILED_PRECONDITION,
        details: `peer link version ${peerLimits.linkVersion + 1}, this node speaks ${peerLimits.linkVersion}`,
      });
      expect(link.records.map((r) => r.kind)).toEqual([LINK_PREAMBLE, LINK_CLOSE]);
    } finally {
      link.destroy();
      await stopAll([node]);
    }
  });
});

describe('cluster query answers beyond clusterQueryBytesMax', () => {
  it('are refused with a clear error, and the node keeps running', async () => {
    const node = await startNode({ id: 1, clusterInfo: () => new Uint8Array(peerLimits.clusterQueryBytesMax + 1) });
    try {
      await expect(queryCluster(node.address, undefined, 2000)).rejects.toMatchObject({
        code: linkStatus.INTERNAL,
        details: expect.stringMatching(/exceeds clusterQueryBytesMax/),
      });
      expect(node.logs.some((l) => /^error: .*cannot answer a cluster query/.test(l))).toBe(true);
    } finally {
      await stopAll([node]);
    }
  });
});

describe('MsgPropDropped and older peers', () => {
  const dropped = makeMessage({ type: 'MsgPropDropped', to: 1, from: 3, rejectHint: 1, entries: [{ term: 0, index: 0, type: 'normal', data: new Uint8Array([1, 2]) }] });
  const append = makeMessage({ type: 'MsgApp', to: 1, from: 3, term: 2, index: 4, logTerm: 2, commit: 4 });

  /** The message types a raw node listing `features` receives when node 3 sends it both. */
  async function receivedBy(features: readonly string[]): Promise<string[]> {
    const three = await startNode({ id: 3, peers: new Map([[1, '127.0.0.1:1']]) });
    const link = dialRaw(three.transport.boundPort, features);
    try {
      link.sendFrame(encodeHello({ clusterId: 1, fromId: 1, toId: 3, protocolVersion: peerLimits.protocolVersion }));
      await waitFor(() => three.transport.connectedPeers().length === 1, 'raw node connected');
      three.transport.send(1, 7, [{ ...dropped }, { ...append }]);
      const batches = (): string[] =>
        link.frames.flatMap((frame) => {
          const decoded = decodeFrame(frame);
          return decoded.kind === 'batch' ? decoded.messages.map((m) => m.message.type) : [];
        });
      await waitFor(() => batches().includes('MsgApp'), 'append received');
      return batches();
    } finally {
      link.destroy();
      await stopAll([three]);
    }
  }

  it('goes only to a peer whose preamble lists prop-dropped; an older peer gets the rest of the batch', async () => {
    expect(await receivedBy(['requests', 'prop-dropped'])).toEqual(['MsgPropDropped', 'MsgApp']);
    expect(await receivedBy(['requests'])).toEqual(['MsgApp']);
  });
});
