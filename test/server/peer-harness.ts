/**
 * Shared helpers of the peer transport tests: real transports on loopback, with everything they
 * report recorded.
 */
import { makeMessage, type Message, type MessageType } from '../../raft/index.js';
import { PeerTransport, type PeerTlsOptions, type ShardMessage } from '../../src/server/peer/index.js';

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
  readonly address: string;
}

export interface NodeOptions {
  readonly id: number;
  readonly clusterId?: number;
  readonly port?: number;
  readonly peers?: ReadonlyMap<number, string>;
  readonly isKnownShard?: (shard: number) => boolean;
  readonly tls?: PeerTlsOptions;
  readonly onRequest?: (from: number, payload: Uint8Array) => Promise<Uint8Array>;
  readonly isRemoved?: (id: number) => boolean;
  readonly onRemoved?: (by: number) => void;
  readonly clusterInfo?: () => Uint8Array;
  readonly removedProbe?: { afterMs: number; intervalMs: number };
}

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
  });
  await transport.start();
  const address = `127.0.0.1:${transport.boundPort}`;
  return { id: options.id, transport, received, frames, unreachable, snapshotStatus, logs, address };
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
