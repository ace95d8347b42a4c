/**
 * Shared helpers of the peer transport tests: real transports on loopback, with everything they
 * report recorded.
 */
import { makeMessage, type Message, type MessageType } from '../../raft/index.js';
import * as net from 'node:net';
import {
  LINK_CLOSE,
  LINK_FRAME,
  PeerTransport,
  RecordReader,
  decodeClose,
  encodePreamble,
  encodeRecord,
  peerLimits,
  type PeerTlsOptions,
  type ShardMessage,
} from '../../src/server/peer/index.js';

export interface Received {
  readonly from: number;
  readonly shard: number;
  readonly message: Message;
}

export interface TestNode {
  readonly id: number;
  readonly transport: PeerTransport;
  readonly received: Received[];
  readonly frames: Array<{ from: number; batch: ShardMessage[] }>;
  readonly unreachable: Array<{ peer: number; shards: number[] }>;
  readonly snapshotStatus: Array<{ peer: number; shard: number; ok: boolean }>;
  readonly logs: string[];
  readonly roundTrips: Array<{ peer: number; seconds: number }>;
  /** What `onRefused` reported: links refused admission, with their reason and address. */
  readonly refusals: Array<{ reason: string; remoteAddress: string }>;
  readonly address: string;
}

export interface NodeOptions {
  readonly id: number;
  readonly clusterId?: number;
  readonly port?: number;
  readonly peers?: ReadonlyMap<number, string | readonly string[]>;
  readonly isKnownShard?: (shard: number) => boolean;
  readonly tls?: PeerTlsOptions;
  readonly onRequest?: (from: number, payload: Uint8Array) => Promise<Uint8Array>;
  readonly isRemoved?: (id: number) => boolean;
  readonly onRemoved?: (by: number) => void;
  readonly clusterInfo?: () => Uint8Array;
  readonly removedProbe?: { afterMs: number; intervalMs: number };
  readonly keepalive?: { intervalMs: number; silenceMsMax: number };
}

const { linkRecordBytesMax } = peerLimits;

/** mulberry32: a small seeded PRNG for backoff jitter. */
export function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function startNode(options: NodeOptions): Promise<TestNode> {
  const received: Received[] = [];
  const frames: TestNode['frames'] = [];
  const unreachable: TestNode['unreachable'] = [];
  const snapshotStatus: TestNode['snapshotStatus'] = [];
  const logs: string[] = [];
  const roundTrips: TestNode['roundTrips'] = [];
  const refusals: TestNode['refusals'] = [];
  const transport = new PeerTransport({
    localId: options.id,
    clusterId: options.clusterId ?? 1,
    listenHost: '127.0.0.1',
    listenPort: options.port ?? 0,
    peers: options.peers ?? new Map(),
    tls: options.tls,
    onMessages: (from, batch) => {
      frames.push({ from, batch });
      for (const { shard, message } of batch) received.push({ from, shard, message });
    },
    isKnownShard: options.isKnownShard ?? (() => true),
    onUnreachable: (peer, shards) => unreachable.push({ peer, shards }),
    onSnapshotStatus: (peer, shard, ok) => snapshotStatus.push({ peer, shard, ok }),
    log: (level, message) => logs.push(`${level}: ${message}`),
    random: seeded(options.id),
    onRequest: options.onRequest,
    isRemoved: options.isRemoved,
    onRemoved: options.onRemoved,
    clusterInfo: options.clusterInfo,
    removedProbe: options.removedProbe,
    keepalive: options.keepalive,
    onRoundTrip: (peer, seconds) => roundTrips.push({ peer, seconds }),
    onRefused: (reason, remoteAddress) => refusals.push({ reason, remoteAddress }),
  });
  await transport.start();
  const address = `127.0.0.1:${transport.boundPort}`;
  return { id: options.id, transport, received, frames, unreachable, snapshotStatus, logs, roundTrips, refusals, address };
}

/**
 * Starts a full mesh. Every node first learns the members that dial it (smaller ids), then the
 * ones it dials, so no hello arrives at a node that does not know its sender yet.
 */
export async function startMesh(ids: readonly number[], options: Omit<NodeOptions, 'id'> = {}): Promise<TestNode[]> {
  const nodes = await Promise.all(ids.map((id) => startNode({ ...options, id })));
  for (const node of nodes) for (const other of nodes) if (other.id < node.id) node.transport.addPeer(other.id, other.address);
  for (const node of nodes) for (const other of nodes) if (other.id > node.id) node.transport.addPeer(other.id, `http://${other.address}`);
  await waitFor(() => nodes.every((node) => node.transport.connectedPeers().length === nodes.length - 1), 'mesh connected');
  return nodes;
}

export async function stopAll(nodes: readonly TestNode[]): Promise<void> {
  await Promise.all(nodes.map((node) => node.transport.stop()));
}

export async function waitFor(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Resolves after the transports' per-turn flush (scheduled earlier in the same check phase). */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export function app(from: number, to: number, index: number, type: MessageType = 'MsgApp'): Message {
  return makeMessage({
    type,
    from,
    to,
    term: 1,
    index,
    entries: [{ term: 1, index: index + 1, type: 'normal', data: new TextEncoder().encode(`entry ${index}`) }],
  });
}

/** A hand-made peer link: what a test writes goes out as records; what comes back is collected. */
export interface RawLink {
  /** Sends one codec frame (or any bytes) as a frame record. */
  sendFrame(frame: Uint8Array): void;
  /** Sends raw bytes (a record of any kind, or a bare header). */
  sendBytes(bytes: Uint8Array): void;
  /** Codec frames received. */
  readonly frames: Buffer[];
  /** Every record received, in order (kind and a copy of its body). */
  readonly records: Array<{ kind: number; body: Buffer }>;
  /** Resolves with the close record's code and details, or 'closed' when the socket closed without one. */
  readonly ended: Promise<{ code: number; details: string } | 'closed'>;
  /** Stops reading: what the node writes backs up. */
  pause(): void;
  destroy(): void;
}

/**
 * Dials `port` on loopback, sends a preamble listing `features` (or the given `preamble` bytes),
 * and collects what comes back.
 */
export function dialRaw(port: number, features: readonly string[] = [], preamble: Uint8Array = encodePreamble(features)): RawLink {
  const socket = net.connect(port, '127.0.0.1');
  const frames: Buffer[] = [];
  const records: RawLink['records'] = [];
  const reader = new RecordReader(linkRecordBytesMax);
  let settle: (value: { code: number; details: string } | 'closed') => void = () => {};
  const ended = new Promise<{ code: number; details: string } | 'closed'>((resolve) => (settle = resolve));
  socket.on('data', (chunk: Buffer) => {
    reader.push(chunk, (kind, body) => {
      records.push({ kind, body: Buffer.from(body) });
      if (kind === LINK_FRAME) frames.push(Buffer.from(body));
      if (kind === LINK_CLOSE) settle(decodeClose(body));
      return true;
    });
  });
  socket.on('error', () => settle('closed'));
  socket.on('close', () => settle('closed'));
  socket.write(preamble);
  return {
    sendFrame: (frame) => void socket.write(encodeRecord(LINK_FRAME, frame)),
    sendBytes: (bytes) => void socket.write(bytes),
    frames,
    records,
    ended,
    pause: () => void socket.pause(),
    destroy: () => void socket.destroy(),
  };
}
