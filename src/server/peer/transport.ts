/**
 * The peer transport: Raft messages of every shard between the nodes of a cluster, over ONE TCP
 * connection (TLS when configured) per pair of nodes, the link. The node with the smaller id
 * dials, the other accepts; both directions flow on that link. Frames are our own binary codec
 * (codec.ts), each in one length-prefixed record of the link's framing (wire.ts). A plain socket
 * rather than a gRPC stream: HTTP/2 cost about 125 µs of CPU per hop, and a write takes several
 * hops of the Raft round (forward, append, ack, answer).
 *
 * Sending is fire-and-forget, as Raft wants it: `send` queues, and once per event-loop turn
 * (at the end of the current task) each peer's queue goes out as one batch frame. A peer without a live link
 * loses the messages and the host hears `onUnreachable` (at most once per turn per peer).
 * Snapshots larger than `snapshotChunkBytes` travel as a header and chunk frames, in order, with
 * no Raft frame interleaved, and are reassembled by the receiver before they are delivered.
 *
 * Requests ride the same link: `request(to, payload)` queues a request frame (written on the
 * turn's flush, ahead of the Raft frames and between snapshot chunks) and resolves with the
 * peer's answer, which its `onRequest` handler produced; many requests are in flight at once and
 * answers may come back in any order (each carries its request id). Every pending request ends:
 * answered, refused, timed out, or rejected when its link breaks, its peer is removed or the
 * transport stops. A node advertises that it handles requests in its link preamble (feature
 * `requests`); requests go only to peers that did.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { isLocalMessage, type Message } from '../../../raft/index.js';
import {
  PeerProtocolError,
  batchFrameOverheadBytes,
  batchItemOverheadBytes,
  decodeFrame,
  encodeBatch,
  encodeHello,
  encodeRequest,
  encodeResponse,
  encodeSnapshotChunk,
  encodeSnapshotHeader,
  messageBytes,
  type PeerAnswer,
  type PeerFrame,
  type PeerHello,
  type ShardMessage,
} from './codec.js';
import {
  frameBytesMax,
  frameBytesTarget,
  frameMessagesMax,
  clusterQueryBytesMax,
  helloTimeoutMs,
  keepaliveIntervalMs,
  keepaliveSilenceMsMax,
  linkCloseLingerMs,
  linkCopyBytesMax,
  peerLinksPendingMax,
  peerQueueBytesMax,
  peerQueueMessagesMax,
  peerQueueSnapshotsMax,
  protocolVersion,
  reconnectDelayMsMax,
  reconnectDelayMsMin,
  refusalsQueuedPerPeerMax,
  refusalWarningIntervalMs,
  refusalWarningsPerIntervalMax,
  removedProbeAfterMs,
  removedProbeCheckMsMin,
  removedProbeChecksPerInterval,
  removedProbeIntervalMs,
  requestPayloadBytesMax,
  requestQueueBytesMax,
  requestsHandlingPerPeerMax,
  requestsPendingPerPeerMax,
  requestTimeoutMsMax,
  responsePayloadBytesMax,
  snapshotChunkBytes,
  unknownShardsLoggedMax,
} from './limits.js';
import { PeerRequestError, PeerRequestRefusal, type PeerRequestErrorCode } from './requests.js';
import { addressMatch, admitPeer, certificateProblem, type AdmissionView, type CertificateRule, type PeerRefusalReason } from './admission.js';
import {
  LINK_CLOSE,
  LINK_CLUSTER_ANSWER,
  LINK_CLUSTER_QUERY,
  LINK_FRAME,
  LINK_PING,
  LINK_PONG,
  LINK_PREAMBLE,
  linkPingBytes,
  LinkProtocolError,
  RecordReader,
  decodeClose,
  decodePreamble,
  encodeClose,
  encodePreamble,
  encodeRecord,
  encodeRecordHeader,
  linkStatus,
  type LinkStatus,
} from './wire.js';

/** Member and cluster ids in messages are hex, as etcd prints them (the server's log does the same). */
const idHex = (id: number): string => id.toString(16);

/**
 * The start of the detail with which a hello from a removed member is refused; the removed member
 * recognises it and stops (etcd answers such a member's messages with 410 Gone).
 */
export const removedMemberRefusal = 'member removed:';

/**
 * The feature a link's preamble lists when its node answers request frames (a node sends request
 * frames only to peers that listed it).
 */
export const peerFeatureRequests = 'requests';
/**
 * The feature a link's preamble lists when its node decodes MsgPropDropped (message type 15). It
 * is not sent to a peer that did not list it, whose decoder would refuse the whole link: the
 * proposer then waits for its request's deadline, as before.
 */
export const peerFeaturePropDropped = 'prop-dropped';

export type PeerLogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface PeerTlsOptions {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** Trusted CA for the other side's certificate (system roots when absent). */
  readonly ca?: Buffer;
  /** Require and verify a client certificate on accepted streams (etcd's --peer-client-cert-auth). */
  readonly clientCertAuth?: boolean;
  /**
   * `--peer-cert-allowed-cn` / `--peer-cert-allowed-hostname`: the name the other side's
   * certificate must carry, as etcd checks it on both ends of a link: an accepted link's client
   * certificate (with `clientCertAuth`) and a dialed peer's server certificate.
   */
  readonly allowedCertificate?: CertificateRule;
}

export interface PeerTransportOptions {
  readonly localId: number;
  readonly clusterId: number;
  readonly listenHost: string;
  /** 0 picks a free port; `boundPort` tells which. */
  readonly listenPort: number;
  /**
   * Member id -> its peer URLs ('host:port' or 'http(s)://host:port'), or one of them. The first
   * is dialed; a link accepted from the member must come from one of their hosts (see admission.ts).
   */
  readonly peers: ReadonlyMap<number, string | readonly string[]>;
  readonly tls?: PeerTlsOptions;
  /** The host steps them. Called synchronously from the stream's data event. */
  onMessages(from: number, batch: ShardMessage[]): void;
  /** Messages for unknown shards are refused and logged. */
  isKnownShard(shard: number): boolean;
  /** Messages to `peer` were dropped because it is down or its queue is full. */
  onUnreachable?(peer: number, shards: number[]): void;
  /** A MsgSnap was (ok) or was not delivered to the stream. */
  onSnapshotStatus?(peer: number, shard: number, ok: boolean): void;
  /**
   * Answers a request of `from` (see `request`); the resolved bytes go back as the answer (at
   * most `responsePayloadBytesMax`). Throw a `PeerRequestRefusal` to refuse with a code and
   * message of your own; any other error is refused as code 'internal' and logged. Without this
   * option the node does not advertise requests, and peers do not send it any.
   */
  onRequest?(from: number, payload: Uint8Array): Promise<Uint8Array>;
  /**
   * The round trip of a keepalive ping to `peer` and its answer, in seconds (one sample per live
   * link every `keepaliveIntervalMs`): the link and both event loops' delay, without any disk.
   */
  onRoundTrip?(peer: number, seconds: number): void;
  log?(level: PeerLogLevel, message: string): void;
  /**
   * A link was refused for `reason` (a hello from a stranger, a removed member, a wrong address,
   * a certificate of another name...); the refusal was logged at warn with the address.
   */
  onRefused?(reason: PeerRefusalReason, remoteAddress: string): void;
  /** Whether member `id` was removed from the cluster: its hellos are refused with `removedMemberRefusal`. */
  isRemoved?(id: number): boolean;
  /**
   * Member `reportedBy` refused this member's hello because it was removed. With this option the
   * transport also probes members that have not dialed it for `removedProbeAfterMs`.
   */
  onRemoved?(reportedBy: number): void;
  /** The answer to `peerClusterPath` (without it the call is UNIMPLEMENTED). */
  clusterInfo?(): Uint8Array;
  /** Removal probes' timing (tests shorten it); `removedProbeAfterMs` / `removedProbeIntervalMs` by default. */
  readonly removedProbe?: { readonly afterMs: number; readonly intervalMs: number };
  /** Keepalive timing (tests shorten it); `keepaliveIntervalMs` / `keepaliveSilenceMsMax` by default. */
  readonly keepalive?: { readonly intervalMs: number; readonly silenceMsMax: number };
  /** For backoff jitter; tests pass a seeded one. */
  random?: () => number;
}

export interface PeerRequestOptions {
  /** The request fails with 'timeout' if no answer came within this time (1..requestTimeoutMsMax). */
  readonly timeoutMs: number;
}

export interface PeerTransportStats {
  /** Frames written, of every kind (hello, batch, snapshot header and chunks, request, response). */
  framesSent: number;
  framesReceived: number;
  /** Messages written (a chunked snapshot counts once, when its last chunk is written). */
  messagesSent: number;
  /** Messages delivered to `onMessages`. */
  messagesReceived: number;
  /** Messages dropped on the sending side (no live stream, queue full, stream lost, too large). */
  dropped: number;
  /** Streams refused (bad hello, protocol errors) plus messages refused for unknown shards. */
  refused: number;
  /** Dial attempts that retried after a failed or lost stream. */
  reconnects: number;
  /** Outgoing requests awaiting their answer now (queued or written). */
  requestsPending: number;
  /** Incoming requests whose handler runs or whose answer is not yet written, now. */
  requestsHandling: number;
  /** Request frames written. */
  requestsSent: number;
  /** Request frames received (handled or not). */
  requestsReceived: number;
  /** Incoming requests answered busy or unsupported, or left unanswered (refusal queue full). */
  requestsRefused: number;
  /** Answers that came after their request had ended (timed out) and were ignored. */
  responsesLate: number;
}

/** Jittered exponential backoff: about `min · 2^attempt`, ±25 %, within [min, max]. */
export function reconnectDelayMs(attempt: number, random: () => number): number {
  const base = Math.min(reconnectDelayMsMax, reconnectDelayMsMin * 2 ** Math.min(attempt, 30));
  const jittered = Math.round(base * (0.75 + 0.5 * random()));
  return Math.max(reconnectDelayMsMin, Math.min(reconnectDelayMsMax, jittered));
}

/** 'http(s)://host:port[/]' or 'host:port' -> 'host:port'. */
export function peerTarget(address: string): string {
  const target = address.replace(/^https?:\/\//, '').replace(/\/+$/, '');
  if (!/^(\[[0-9a-fA-F:.]+\]|[^\s:/[\]]+):\d{1,5}$/.test(target)) {
    throw new TypeError(`peer address must be host:port or http(s)://host:port, got '${address}'`);
  }
  return target;
}

/** The dial target (the first URL) and the hosts of every URL of a member. */
function peerAddresses(address: string | readonly string[]): { target: string; hosts: string[] } {
  const list = typeof address === 'string' ? [address] : address;
  const targets = list.map(peerTarget);
  const target = targets[0];
  if (target === undefined) throw new TypeError('a peer needs at least one address');
  return { target, hosts: [...new Set(targets.map((each) => each.slice(0, each.lastIndexOf(':')).replace(/^\[(.*)\]$/, '$1')))] };
}

/** A link's error as its callers see it: a status number and its details (see `linkStatus`). */
export interface PeerLinkError extends Error {
  readonly code: number;
  readonly details: string;
}

function linkError(code: number, details: string): PeerLinkError {
  return Object.assign(new Error(`${code}: ${details}`), { code, details });
}

/** Whether a close record is a peer refusing this member's hello because it was removed. */
function isRemovedRefusal(code: number, details: string): boolean {
  return code === linkStatus.PERMISSION_DENIED && details.startsWith(removedMemberRefusal);
}

/** A peer's certificate does not carry the name `allowedCertificate` asks for. */
export class PeerCertificateError extends Error {
  override readonly name = 'PeerCertificateError';
}

/**
 * Opens a socket to `target` ('host:port'), with TLS when `tlsOptions` is set. With
 * `allowedCertificate`, the handshake fails (a `PeerCertificateError`) when the server's
 * certificate does not carry the allowed name, after the usual check that it names `host`.
 */
function connectLink(target: string, tlsOptions: PeerTlsOptions | undefined): net.Socket {
  const at = target.lastIndexOf(':');
  const host = target.slice(0, at).replace(/^\[(.*)\]$/, '$1');
  const port = Number(target.slice(at + 1));
  const rule = tlsOptions?.allowedCertificate;
  const checkServerIdentity = (hostname: string, certificate: tls.PeerCertificate): Error | undefined => {
    const mismatch = tls.checkServerIdentity(hostname, certificate);
    if (mismatch !== undefined || rule === undefined) return mismatch;
    const problem = certificateProblem(certificate, rule);
    return problem === undefined ? undefined : new PeerCertificateError(`server certificate refused: ${problem}`);
  };
  const socket =
    tlsOptions === undefined
      ? net.connect({ host, port, noDelay: true })
      : tls.connect({ host, port, cert: tlsOptions.cert, key: tlsOptions.key, ca: tlsOptions.ca, servername: net.isIP(host) === 0 ? host : undefined, checkServerIdentity });
  socket.setNoDelay(true);
  return socket;
}

/**
 * Asks the member at `address` (its peer URL) for the cluster's id and members: what a starting
 * node needs before it joins (its own id, whether it was bootstrapped before). Rejects on any
 * failure with a `PeerLinkError` (code 12, UNIMPLEMENTED, from a node without cluster info).
 */
export function queryCluster(address: string, tlsOptions: PeerTlsOptions | undefined, timeoutMs: number): Promise<Uint8Array> {
  const socket = connectLink(peerTarget(address), tlsOptions);
  return new Promise<Uint8Array>((resolve, reject) => {
    let done = false;
    const finish = (error: PeerLinkError | undefined, answer?: Uint8Array): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (error !== undefined || answer === undefined) reject(error ?? linkError(linkStatus.UNKNOWN, 'no answer'));
      else resolve(answer);
    };
    const timer = setTimeout(() => finish(linkError(linkStatus.DEADLINE_EXCEEDED, `no cluster answer within ${timeoutMs} ms`)), timeoutMs);
    // The answer comes before any hello: allow a record of a full answer.
    const reader = new RecordReader(clusterQueryBytesMax + 1);
    socket.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk, (kind, body) => {
          if (kind === LINK_CLUSTER_ANSWER) {
            if (body.byteLength > clusterQueryBytesMax) finish(linkError(linkStatus.INVALID_ARGUMENT, `cluster answer of ${body.byteLength} bytes`));
            else finish(undefined, new Uint8Array(body));
          } else if (kind === LINK_CLOSE) {
            const { code, details } = decodeClose(body);
            finish(linkError(code, details));
          }
          return !done;
        });
      } catch (error) {
        finish(linkError(linkStatus.INVALID_ARGUMENT, error instanceof Error ? error.message : String(error)));
      }
    });
    socket.on('error', (error: Error) => finish(linkError(linkStatus.UNAVAILABLE, error.message)));
    socket.on('close', () => finish(linkError(linkStatus.UNAVAILABLE, 'the peer closed the link without an answer')));
    socket.write(encodePreamble([]));
    socket.write(encodeRecord(LINK_CLUSTER_QUERY));
  });
}


interface QueuedMessage {
  readonly shard: number;
  readonly message: Message;
  /** Encoded bytes in a batch frame (for a chunked snapshot: without its data). */
  readonly bytes: number;
  readonly chunked: boolean;
}

interface OutgoingSnapshot {
  readonly shard: number;
  readonly message: Message;
  readonly data: Uint8Array;
  offset: number;
}

interface PendingRequest {
  readonly id: number;
  /** The stream it was queued on; only that stream can carry its answer. */
  readonly connection: Connection;
  /** Bytes of its frame (the frame itself lives in the queue until written, not here). */
  readonly frameBytes: number;
  /** Handed to the stream: from now on the peer may have handled it. */
  written: boolean;
  readonly timer: NodeJS.Timeout;
  readonly resolve: (payload: Uint8Array) => void;
  readonly reject: (error: PeerRequestError) => void;
}

/** A request or response frame waiting for its turn on a stream. */
type OutgoingRpc =
  | { readonly kind: 'request'; readonly request: PendingRequest; readonly frame: Buffer }
  /** An answer from the handler; it holds one of `peer`'s handling slots until written. */
  | { readonly kind: 'answer'; readonly frame: Buffer; readonly peer: PeerState }
  /** A busy or unsupported answer (no slot). */
  | { readonly kind: 'refusal'; readonly frame: Buffer };

interface IncomingSnapshot {
  readonly shard: number;
  readonly message: Message;
  readonly totalBytes: number;
  readonly chunks: Uint8Array[];
  received: number;
  /** The shard is unknown: the chunks are read and thrown away. */
  readonly discard: boolean;
}

/** One link to or from a peer. `live` once both hellos were exchanged. */
class Connection {
  peerId: number | undefined;
  live = false;
  closed = false;
  /** The other side's preamble was read (an accepted link answers it with its own). */
  preambleRead = false;
  /** This side's preamble was written (a dialer writes it at once, an acceptor after reading the dialer's). */
  preambleSent = false;
  readonly reader = new RecordReader();
  /** Something arrived since the last keepalive round. */
  heard = true;
  /** Time with nothing heard, counted in keepalive rounds. */
  silentMs = 0;
  /** Closed on purpose by `clearPeer`: its peer's state is no longer this stream's business. */
  detached = false;
  writeBlocked = false;
  sending: OutgoingSnapshot | undefined;
  receiving: IncomingSnapshot | undefined;
  helloTimer: NodeJS.Timeout | undefined;
  /** The other side advertised that it answers requests (its preamble). */
  peerHandlesRequests = false;
  peerDecodesPropDropped = false;
  /** Request and response frames to write, ahead of the Raft frames. */
  readonly rpcQueue: OutgoingRpc[] = [];
  /** 'refusal' items in `rpcQueue`. */
  refusalsQueued = 0;

  /** The other side's IP address (for an accepted link, read when it was accepted; undefined if the socket was gone). */
  readonly remoteAddress: string | undefined;
  /** 'address:port' of the other side, for log lines. */
  readonly remote: string;

  constructor(
    readonly side: 'dial' | 'accept',
    readonly socket: net.Socket,
    peerId: number | undefined,
    target?: string,
  ) {
    this.peerId = peerId;
    this.remoteAddress = socket.remoteAddress;
    const address = socket.remoteAddress;
    this.remote = side === 'dial' && target !== undefined ? target : address === undefined ? 'an unknown address' : `${address.includes(':') ? `[${address}]` : address}:${socket.remotePort ?? 0}`;
  }

  describe(): string {
    const who = this.peerId === undefined ? '(before hello)' : `with member ${idHex(this.peerId)}`;
    return `${this.side === 'dial' ? 'dialed' : 'accepted'} link ${who} ${this.side === 'dial' ? 'to' : 'from'} ${this.remote}`;
  }
}

interface PeerState {
  readonly id: number;
  /** 'host:port' of its first peer URL: where this node dials it. */
  target: string;
  /** The hosts of all its peer URLs: where a link it dials may come from. */
  hosts: readonly string[];
  queue: QueuedMessage[];
  queueBytes: number;
  queueSnapshots: number;
  /** The live stream, if any. */
  connection: Connection | undefined;
  /** A dial whose hello has not come back yet (dialing side only). */
  dialing: Connection | undefined;
  reconnectTimer: NodeJS.Timeout | undefined;
  /** Consecutive failed dials; reset when a stream goes live. */
  attempt: number;
  /** Outgoing requests awaiting an answer, by id. invariant: size <= requestsPendingPerPeerMax. */
  readonly requests: Map<number, PendingRequest>;
  /** Bytes of this peer's request frames queued and not yet written. */
  requestQueueBytes: number;
  /** Incoming requests being handled. invariant: 0 <= handling <= requestsHandlingPerPeerMax. */
  handling: number;
  /** When a stream with this peer was last live (or the peer was added); for removal probes. */
  lastLive: number;
  /** When this member last probed the peer (see `removedProbeAfterMs`). */
  lastProbe: number;
}

/** Why a hello is refused: the close record's status and details, and the refusal's reason when it is one of admission. */
interface HelloProblem {
  readonly code: LinkStatus;
  readonly detail: string;
  readonly why?: PeerRefusalReason;
  /** Expected (a member's removal probe): closed without a warning. */
  readonly quiet?: boolean;
}

function checkId(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value <= 0) throw new TypeError(`${what} must be a positive safe integer, got ${value}`);
}

function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`peer transport: ${message}`);
}

function features(handlesRequests: boolean): string[] {
  return handlesRequests ? [peerFeatureRequests, peerFeaturePropDropped] : [peerFeaturePropDropped];
}

function checkShard(shard: number): void {
  if (!Number.isInteger(shard) || shard < 0 || shard > 0xffff_ffff) throw new TypeError(`shard must be a u32, got ${shard}`);
}

export class PeerTransport {
  private readonly options: PeerTransportOptions;
  private readonly peers = new Map<number, PeerState>();
  private readonly connections = new Set<Connection>();
  private readonly random: () => number;
  private readonly log: (level: PeerLogLevel, message: string) => void;
  private server: net.Server | undefined;
  private running = false;
  private port = 0;
  private flushScheduled = false;
  private readonly pendingUnreachable = new Map<number, Set<number>>();
  private readonly pendingSnapshotStatus: Array<{ peer: number; shard: number; ok: boolean }> = [];
  private readonly unknownShardsLogged = new Set<number>();
  private nextRequestId = 1;
  /** Incoming requests in flight, over every peer (removed ones included until they finish). */
  private handlingTotal = 0;
  private readonly peerBytes = new Map<number, { sent: number; received: number }>();
  private readonly counters: Omit<PeerTransportStats, 'requestsPending' | 'requestsHandling'> = {
    framesSent: 0,
    framesReceived: 0,
    messagesSent: 0,
    messagesReceived: 0,
    dropped: 0,
    refused: 0,
    reconnects: 0,
    requestsSent: 0,
    requestsReceived: 0,
    requestsRefused: 0,
    responsesLate: 0,
  };

  constructor(options: PeerTransportOptions) {
    checkId(options.localId, 'localId');
    checkId(options.clusterId, 'clusterId');
    if (!Number.isInteger(options.listenPort) || options.listenPort < 0 || options.listenPort > 65535) {
      throw new TypeError(`listenPort must be 0..65535, got ${options.listenPort}`);
    }
    if (options.tls?.clientCertAuth === true && options.tls.ca === undefined) {
      throw new TypeError('peer TLS client certificate auth needs a CA');
    }
    this.options = options;
    this.random = options.random ?? Math.random;
    this.log = options.log ?? (() => {});
    for (const [id, address] of options.peers) {
      if (id !== options.localId) this.peers.set(id, this.newPeer(id, address));
    }
  }

  get boundPort(): number {
    return this.port;
  }

  private bytesOf(peer: number): { sent: number; received: number } {
    let bytes = this.peerBytes.get(peer);
    if (bytes === undefined) this.peerBytes.set(peer, (bytes = { sent: 0, received: 0 }));
    return bytes;
  }

  /**
   * Bytes of Raft and request frames sent to and received from each member on live links since
   * the start (frame bodies, without link record headers; the hello is not counted).
   */
  bytesByPeer(): ReadonlyMap<number, { readonly sent: number; readonly received: number }> {
    return this.peerBytes;
  }

  stats(): PeerTransportStats {
    let requestsPending = 0;
    for (const peer of this.peers.values()) requestsPending += peer.requests.size;
    return { ...this.counters, requestsPending, requestsHandling: this.handlingTotal };
  }

  /** Members with a live stream now. */
  connectedPeers(): number[] {
    return [...this.peers.values()].filter((peer) => peer.connection?.live === true).map((peer) => peer.id);
  }

  async start(): Promise<void> {
    if (this.running || this.server !== undefined) throw new Error('peer transport already started');
    const tlsOptions = this.options.tls;
    const server =
      tlsOptions === undefined
        ? net.createServer({ noDelay: true })
        : tls.createServer({
            cert: tlsOptions.cert,
            key: tlsOptions.key,
            ca: tlsOptions.ca,
            requestCert: tlsOptions.clientCertAuth ?? false,
            rejectUnauthorized: tlsOptions.clientCertAuth ?? false,
            noDelay: true,
            // Node's default is 120 s: a client that never finishes its handshake would hold a socket that long.
            handshakeTimeout: helloTimeoutMs,
          });
    // Every accepted socket (for TLS, the raw one under the handshake) is tracked, so that the
    // pending ones are capped and `stop` can end them all.
    server.on('connection', (socket: net.Socket) => this.track(socket));
    server.on(tlsOptions === undefined ? 'connection' : 'secureConnection', (socket: net.Socket) => {
      if (!socket.destroyed) this.accept(socket);
    });
    if (tlsOptions !== undefined) {
      server.on('tlsClientError', (error: Error) => this.log('debug', `member ${idHex(this.options.localId)}: peer TLS handshake failed: ${error.message}`));
    }
    const host = this.options.listenHost;
    this.port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.listenPort, host, () => {
        server.off('error', reject);
        const address = server.address();
        resolve(typeof address === 'object' && address !== null ? address.port : this.options.listenPort);
      });
    });
    server.on('error', (error: Error) => this.log('error', `member ${idHex(this.options.localId)}: peer listener failed: ${error.message}`));
    this.server = server;
    this.running = true;
    this.log('info', `peer transport of member ${idHex(this.options.localId)} listening on ${host.includes(':') ? `[${host}]` : host}:${this.port}`);
    for (const peer of this.peers.values()) this.maybeDial(peer);
    this.keepaliveTimer = setInterval(() => this.keepalive(), this.keepaliveTiming.intervalMs);
    this.keepaliveTimer.unref();
    if (this.options.onRemoved !== undefined) {
      const checkMs = Math.max(removedProbeCheckMsMin, Math.floor(this.probeTiming().intervalMs / removedProbeChecksPerInterval));
      this.probeTimer = setInterval(() => this.probeSilentPeers(), checkMs);
      this.probeTimer.unref();
    }
  }

  private probeTimer: NodeJS.Timeout | undefined;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  /** Accepted raw sockets (and outgoing probes) until they close; `stop` destroys what is left. */
  private readonly sockets = new Set<net.Socket>();

  /** Accepted sockets that are not a live link (handshaking, before hello, or closing). */
  private pendingLinks(): number {
    let live = 0;
    for (const connection of this.connections) if (connection.side === 'accept' && connection.live) live += 1;
    return this.acceptedSockets - live;
  }

  private acceptedSockets = 0;

  /** Counts an accepted raw socket; closes it at once when `peerLinksPendingMax` are pending. */
  private track(socket: net.Socket): void {
    if (!this.running || this.pendingLinks() >= peerLinksPendingMax) {
      this.counters.refused += 1;
      this.log('debug', `member ${idHex(this.options.localId)}: closing a new peer connection: ${this.running ? `${peerLinksPendingMax} links have not said hello` : 'stopping'}`);
      socket.destroy();
      return;
    }
    this.acceptedSockets += 1;
    this.sockets.add(socket);
    socket.once('close', () => {
      this.acceptedSockets -= 1;
      this.sockets.delete(socket);
    });
  }

  private get keepaliveTiming(): { intervalMs: number; silenceMsMax: number } {
    return this.options.keepalive ?? { intervalMs: keepaliveIntervalMs, silenceMsMax: keepaliveSilenceMsMax };
  }

  /** Pings every live link; closes one that has heard nothing for `keepaliveSilenceMsMax`. */
  private keepalive(): void {
    const { intervalMs, silenceMsMax } = this.keepaliveTiming;
    for (const connection of [...this.connections]) {
      if (!connection.live || connection.closed) continue;
      connection.silentMs = connection.heard ? 0 : connection.silentMs + intervalMs;
      connection.heard = false;
      if (connection.silentMs >= silenceMsMax) {
        this.close(connection, linkStatus.UNAVAILABLE, `nothing heard for ${connection.silentMs} ms`);
        continue;
      }
      if (connection.writeBlocked) continue;
      const ping = Buffer.allocUnsafe(linkPingBytes);
      ping.writeDoubleBE(performance.now(), 0);
      connection.socket.write(encodeRecord(LINK_PING, ping));
    }
  }

  /**
   * Members with the smaller id dial this one; when one has not for `removedProbeAfterMs`, it may
   * have dropped this member from the cluster. Dial it once: it refuses the hello either by the
   * side rule (this member is still known) or as a removed member's, which `onRemoved` hears.
   */
  private probeTiming(): { afterMs: number; intervalMs: number } {
    return this.options.removedProbe ?? { afterMs: removedProbeAfterMs, intervalMs: removedProbeIntervalMs };
  }

  private probeSilentPeers(): void {
    const now = Date.now();
    const { afterMs, intervalMs } = this.probeTiming();
    for (const peer of this.peers.values()) {
      if (!this.running || this.dials(peer) || peer.connection !== undefined) continue;
      if (now - peer.lastLive < afterMs || now - peer.lastProbe < intervalMs) continue;
      peer.lastProbe = now;
      this.probe(peer);
    }
  }

  private probe(peer: PeerState): void {
    const socket = connectLink(peer.target, this.options.tls);
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    const reader = new RecordReader();
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
    };
    const timer = setTimeout(finish, helloTimeoutMs);
    socket.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk, (kind, body) => {
          if (kind === LINK_CLOSE) {
            const { code, details } = decodeClose(body);
            if (!done && this.running && isRemovedRefusal(code, details)) this.options.onRemoved?.(peer.id);
            finish();
          } else if (kind !== LINK_PREAMBLE) finish();
          return !done;
        });
      } catch {
        finish();
      }
    });
    socket.on('error', finish);
    socket.on('close', finish);
    this.counters.framesSent += 1;
    socket.write(encodePreamble(features(false)));
    socket.write(encodeRecord(LINK_FRAME, encodeHello({ clusterId: this.options.clusterId, fromId: this.options.localId, toId: peer.id, protocolVersion })));
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.flushScheduled = false;
    clearInterval(this.probeTimer);
    clearInterval(this.keepaliveTimer);
    for (const peer of this.peers.values()) this.clearPeer(peer, 'stopped');
    for (const connection of [...this.connections]) this.close(connection, linkStatus.UNAVAILABLE, 'peer transport stopping');
    this.pendingUnreachable.clear();
    this.pendingSnapshotStatus.length = 0;
    const server = this.server;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => {
      if (server === undefined) resolve();
      else server.close(() => resolve());
    });
    // The links' close records were handed to their sockets above; give them a turn to go out,
    // then end every socket still open: TLS handshakes, links before hello, probes.
    await new Promise<void>((resolve) => setImmediate(resolve));
    for (const socket of [...this.sockets]) socket.destroy();
    await closed;
  }

  /** Adds member `id` at its peer URLs (or one of them; the first is dialed). */
  addPeer(id: number, address: string | readonly string[]): void {
    checkId(id, 'peer id');
    if (id === this.options.localId) throw new TypeError(`member ${idHex(id)} is this node`);
    if (this.peers.has(id)) throw new TypeError(`member ${idHex(id)} is already a peer`);
    const peer = this.newPeer(id, address);
    this.peers.set(id, peer);
    this.maybeDial(peer);
  }

  /** Member ids this transport talks to. */
  peerIds(): number[] {
    return [...this.peers.keys()];
  }

  removePeer(id: number): void {
    const peer = this.peers.get(id);
    if (peer === undefined) return;
    this.peers.delete(id);
    this.clearPeer(peer, 'unreachable');
  }

  /** Member `id`'s peer URLs changed: links accepted from it are checked against the new hosts, and a dialer dials the first. */
  updatePeer(id: number, address: string | readonly string[]): void {
    const peer = this.peers.get(id);
    if (peer === undefined) throw new TypeError(`member ${idHex(id)} is not a peer`);
    const { target, hosts } = peerAddresses(address);
    peer.hosts = hosts;
    // A link it dialed from an address its URLs no longer name ends now, as a new one would be refused.
    const accepted = peer.connection;
    if (accepted?.side === 'accept' && addressMatch(accepted.remoteAddress, hosts) === 'mismatch') {
      this.close(accepted, linkStatus.PERMISSION_DENIED, `member ${idHex(id)}'s peer URLs are now on ${hosts.join(', ')}, not ${accepted.remoteAddress ?? 'an unknown address'}`);
    }
    if (target === peer.target) return;
    peer.target = target;
    // Only the dialing side uses the address; a fresh dial picks it up.
    if (this.dials(peer)) {
      this.clearPeer(peer, 'unreachable');
      this.maybeDial(peer);
    }
  }

  /** Queues `messages` for `to`; they go out on the next turn. Never throws for network reasons. */
  send(to: number, shard: number, messages: readonly Message[]): void {
    checkShard(shard);
    const peer = this.peers.get(to);
    for (const message of messages) {
      if (isLocalMessage(message.type)) throw new TypeError(`local message ${message.type} cannot be sent to a peer`);
      if (peer === undefined || peer.connection?.live !== true || !this.running) {
        this.drop(to, shard, message);
        continue;
      }
      if (message.type === 'MsgPropDropped' && !peer.connection.peerDecodesPropDropped) {
        this.counters.dropped += 1; // an older peer: not unreachable, it just cannot read this
        continue;
      }
      this.enqueue(peer, shard, message);
    }
    this.scheduleFlush();
  }

  /**
   * Sends `payload` to `to`'s `onRequest` handler and resolves with its answer. Rejects with a
   * `PeerRequestError` (never anything else for network reasons); its `reachedHandler` tells
   * whether the peer can have acted on the request. Throws a TypeError for bad arguments.
   */
  request(to: number, payload: Uint8Array, options: PeerRequestOptions): Promise<Uint8Array> {
    checkId(to, 'peer id');
    if (to === this.options.localId) throw new TypeError(`member ${idHex(to)} is this node`);
    if (!(payload instanceof Uint8Array)) throw new TypeError('request payload must be a Uint8Array');
    if (payload.byteLength > requestPayloadBytesMax) {
      throw new TypeError(`request payload of ${payload.byteLength} bytes exceeds requestPayloadBytesMax ${requestPayloadBytesMax}`);
    }
    const timeoutMs = options.timeoutMs;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > requestTimeoutMsMax) {
      throw new TypeError(`request timeoutMs must be an integer in 1..${requestTimeoutMsMax}, got ${timeoutMs}`);
    }
    const refusal = this.requestProblem(to);
    if (refusal !== undefined) return Promise.reject(refusal);
    const peer = this.peers.get(to);
    const connection = peer?.connection;
    assert(peer !== undefined && connection !== undefined, 'requestProblem vouched for a live stream');
    const id = this.nextRequestId;
    this.nextRequestId += 1;
    assert(Number.isSafeInteger(id), 'request ids are safe integers');
    const frame = encodeRequest(id, payload);
    if (peer.requestQueueBytes + frame.byteLength > requestQueueBytesMax) {
      return Promise.reject(new PeerRequestError('too-many', 'no', `${requestQueueBytesMax} bytes of requests already queued for member ${idHex(to)}`));
    }
    return new Promise<Uint8Array>((resolve, reject) => {
      const timer = setTimeout(() => {
        const timedOut = peer.requests.get(id);
        if (timedOut !== undefined) this.failRequest(peer, timedOut, 'timeout', `no answer from member ${idHex(to)} within ${timeoutMs} ms`);
      }, timeoutMs);
      const pending: PendingRequest = { id, connection, frameBytes: frame.byteLength, written: false, timer, resolve, reject };
      peer.requests.set(id, pending);
      assert(peer.requests.size <= requestsPendingPerPeerMax, 'pending requests beyond their limit');
      peer.requestQueueBytes += frame.byteLength;
      connection.rpcQueue.push({ kind: 'request', request: pending, frame });
      this.scheduleFlush();
    });
  }

  /** Why a request to `to` cannot be sent now (certainly not delivered), or undefined. */
  private requestProblem(to: number): PeerRequestError | undefined {
    if (!this.running) return new PeerRequestError('stopped', 'no', 'peer transport is not running');
    const peer = this.peers.get(to);
    if (peer === undefined) return new PeerRequestError('unreachable', 'no', `member ${idHex(to)} is not a peer`);
    const connection = peer.connection;
    if (connection === undefined || !connection.live || connection.closed) {
      return new PeerRequestError('unreachable', 'no', `no live stream to member ${idHex(to)}`);
    }
    if (!connection.peerHandlesRequests) return new PeerRequestError('unsupported', 'no', `member ${idHex(to)} does not answer requests`);
    if (peer.requests.size >= requestsPendingPerPeerMax) {
      return new PeerRequestError('too-many', 'no', `${requestsPendingPerPeerMax} requests to member ${idHex(to)} already pending`);
    }
    return undefined;
  }

  /** Ends a pending request with an error; 'no' or 'maybe' by whether it was written. */
  private failRequest(peer: PeerState, pending: PendingRequest, code: PeerRequestErrorCode, message: string): void {
    if (!this.endRequest(peer, pending)) return;
    pending.reject(new PeerRequestError(code, pending.written ? 'maybe' : 'no', message));
  }

  /** Forgets a pending request (withdrawing it if still queued); false if it had already ended. */
  private endRequest(peer: PeerState, pending: PendingRequest): boolean {
    if (peer.requests.get(pending.id) !== pending) return false;
    peer.requests.delete(pending.id);
    clearTimeout(pending.timer);
    if (!pending.written) {
      const queue = pending.connection.rpcQueue;
      const at = queue.findIndex((item) => item.kind === 'request' && item.request === pending);
      if (at >= 0) queue.splice(at, 1);
      peer.requestQueueBytes -= pending.frameBytes;
      assert(peer.requestQueueBytes >= 0, 'request queue bytes went negative');
    }
    return true;
  }

  /** Fails every pending request of `peer` (of one stream, or all of them). */
  private failRequests(peer: PeerState, connection: Connection | undefined, code: PeerRequestErrorCode, reason: string): void {
    for (const pending of [...peer.requests.values()]) {
      if (connection === undefined || pending.connection === connection) this.failRequest(peer, pending, code, `request to member ${idHex(peer.id)}: ${reason}`);
    }
  }

  private onAnswer(connection: Connection, id: number, answer: PeerAnswer): void {
    const peer = connection.peerId === undefined ? undefined : this.peers.get(connection.peerId);
    const pending = peer?.requests.get(id);
    if (peer === undefined || pending === undefined || pending.connection !== connection || !pending.written) {
      this.counters.responsesLate += 1;
      return;
    }
    this.endRequest(peer, pending);
    switch (answer.status) {
      case 'ok':
        pending.resolve(answer.payload);
        return;
      case 'refused':
        pending.reject(
          new PeerRequestError('refused', 'yes', `member ${idHex(peer.id)} refused the request: ${answer.code}: ${answer.message}`, {
            code: answer.code,
            message: answer.message,
          }),
        );
        return;
      case 'busy':
        pending.reject(new PeerRequestError('too-many', 'no', `member ${idHex(peer.id)} is handling too many requests of this node`));
        return;
      case 'unsupported':
        pending.reject(new PeerRequestError('unsupported', 'no', `member ${idHex(peer.id)} does not answer requests`));
        return;
    }
  }

  /** Runs the handler for an incoming request, or answers busy / unsupported at once. */
  private onIncomingRequest(connection: Connection, id: number, payload: Uint8Array): void {
    const from = connection.peerId;
    const peer = from === undefined ? undefined : this.peers.get(from);
    if (from === undefined || peer === undefined) return;
    this.counters.requestsReceived += 1;
    const handler = this.options.onRequest;
    if (handler === undefined || peer.handling >= requestsHandlingPerPeerMax) {
      this.queueRefusal(connection, id, { status: handler === undefined ? 'unsupported' : 'busy' });
      return;
    }
    peer.handling += 1;
    this.handlingTotal += 1;
    assert(peer.handling <= requestsHandlingPerPeerMax, 'incoming requests beyond their limit');
    // A microtask later: a handler that throws synchronously is refused like one that rejects.
    void Promise.resolve()
      .then(() => handler(from, payload))
      .then(
        (result) => this.queueAnswer(connection, peer, id, this.checkedAnswer(from, result)),
        (error: unknown) => this.queueAnswer(connection, peer, id, this.refusalAnswer(from, error)),
      );
  }

  private checkedAnswer(from: number, result: unknown): PeerAnswer {
    if (result instanceof Uint8Array && result.byteLength <= responsePayloadBytesMax) return { status: 'ok', payload: result };
    const what = result instanceof Uint8Array ? `${result.byteLength} bytes, more than ${responsePayloadBytesMax}` : 'not a Uint8Array';
    return this.refusalAnswer(from, new Error(`the request handler's answer is ${what}`));
  }

  private refusalAnswer(from: number, error: unknown): PeerAnswer {
    if (error instanceof PeerRequestRefusal) return { status: 'refused', code: error.code, message: error.message };
    // Not a refusal: a fault of the handler. The caller on the other node still gets an answer
    // (rather than waiting for its timeout); this node logs it as an error.
    const message = error instanceof Error ? error.message : String(error);
    this.log('error', `member ${idHex(this.options.localId)}: request handler failed on a request of member ${idHex(from)}: ${message}`);
    const refusal = new PeerRequestRefusal('internal', message);
    return { status: 'refused', code: refusal.code, message: refusal.message };
  }

  private queueAnswer(connection: Connection, peer: PeerState, id: number, answer: PeerAnswer): void {
    if (connection.closed) {
      this.releaseHandling(peer);
      return;
    }
    connection.rpcQueue.push({ kind: 'answer', frame: encodeResponse(id, answer), peer });
    this.scheduleFlush();
  }

  private queueRefusal(connection: Connection, id: number, answer: PeerAnswer): void {
    this.counters.requestsRefused += 1;
    if (connection.refusalsQueued >= refusalsQueuedPerPeerMax) return;
    connection.refusalsQueued += 1;
    connection.rpcQueue.push({ kind: 'refusal', frame: encodeResponse(id, answer) });
    this.scheduleFlush();
  }

  private releaseHandling(peer: PeerState): void {
    peer.handling -= 1;
    this.handlingTotal -= 1;
    assert(peer.handling >= 0 && this.handlingTotal >= 0, 'handling count went negative');
  }

  private writeRpc(peer: PeerState, connection: Connection, item: OutgoingRpc): void {
    switch (item.kind) {
      case 'request':
        item.request.written = true;
        peer.requestQueueBytes -= item.request.frameBytes;
        this.counters.requestsSent += 1;
        this.write(peer, connection, item.frame);
        return;
      case 'answer':
        this.releaseHandling(item.peer);
        this.write(peer, connection, item.frame);
        return;
      case 'refusal':
        connection.refusalsQueued -= 1;
        this.write(peer, connection, item.frame);
        return;
    }
  }

  /** A closed stream's unwritten frames: answers give their slots back; requests fail elsewhere. */
  private discardRpcQueue(connection: Connection): void {
    for (const item of connection.rpcQueue.splice(0)) {
      if (item.kind === 'answer') this.releaseHandling(item.peer);
    }
    connection.refusalsQueued = 0;
  }

  // -------------------------------------------------------------------------------------------
  // Sending

  private enqueue(peer: PeerState, shard: number, message: Message): void {
    const chunked = message.type === 'MsgSnap' && message.snapshot !== undefined && message.snapshot.data.byteLength > snapshotChunkBytes;
    const full = messageBytes(message);
    const bytes = chunked ? full - (message.snapshot?.data.byteLength ?? 0) : full;
    if (batchFrameOverheadBytes + batchItemOverheadBytes + bytes > frameBytesMax) {
      this.log('error', `dropping a ${message.type} of ${bytes} bytes to member ${idHex(peer.id)}: larger than a frame`);
      this.drop(peer.id, shard, message);
      return;
    }
    if (
      peer.queue.length >= peerQueueMessagesMax ||
      peer.queueBytes + bytes > peerQueueBytesMax ||
      (chunked && peer.queueSnapshots >= peerQueueSnapshotsMax)
    ) {
      this.drop(peer.id, shard, message);
      return;
    }
    peer.queue.push({ shard, message, bytes, chunked });
    peer.queueBytes += bytes;
    if (chunked) peer.queueSnapshots += 1;
  }

  private drop(peer: number, shard: number, message: Message): void {
    this.counters.dropped += 1;
    let shards = this.pendingUnreachable.get(peer);
    if (shards === undefined) {
      shards = new Set();
      this.pendingUnreachable.set(peer, shards);
    }
    shards.add(shard);
    if (message.type === 'MsgSnap') this.pendingSnapshotStatus.push({ peer, shard, ok: false });
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || !this.running) return;
    this.flushScheduled = true;
    // At the end of the current task: everything sent during it goes out as one frame per peer,
    // without waiting for a later phase of the event loop.
    queueMicrotask(() => {
      if (!this.flushScheduled) return;
      this.flushScheduled = false;
      for (const peer of this.peers.values()) this.pump(peer);
      this.report();
    });
  }

  /** Hands pending unreachable and snapshot reports to the host (never from inside `send`). */
  private report(): void {
    if (!this.running) return;
    const unreachable = [...this.pendingUnreachable];
    this.pendingUnreachable.clear();
    const statuses = this.pendingSnapshotStatus.splice(0);
    for (const [peer, shards] of unreachable) this.options.onUnreachable?.(peer, [...shards]);
    for (const { peer, shard, ok } of statuses) this.options.onSnapshotStatus?.(peer, shard, ok);
  }

  /** Writes what the peer's queue holds until it is empty or the stream asks to wait for 'drain'. */
  private pump(peer: PeerState): void {
    const connection = peer.connection;
    if (connection === undefined || !connection.live) return;
    while (!connection.writeBlocked && !connection.closed) {
      // Requests and answers first: they are few and small, and may go between snapshot chunks.
      const rpc = connection.rpcQueue.shift();
      if (rpc !== undefined) {
        this.writeRpc(peer, connection, rpc);
        continue;
      }
      if (connection.sending !== undefined) {
        this.writeChunk(peer, connection, connection.sending);
        continue;
      }
      const head = peer.queue[0];
      if (head === undefined) break;
      if (head.chunked) {
        this.dequeue(peer, 1);
        const data = head.message.snapshot?.data ?? new Uint8Array(0);
        connection.sending = { shard: head.shard, message: head.message, data, offset: 0 };
        this.write(peer, connection, encodeSnapshotHeader(head.shard, head.message));
        continue;
      }
      this.writeBatch(peer, connection);
    }
  }

  private dequeue(peer: PeerState, count: number): QueuedMessage[] {
    const taken = peer.queue.splice(0, count);
    for (const item of taken) {
      peer.queueBytes -= item.bytes;
      if (item.chunked) peer.queueSnapshots -= 1;
    }
    return taken;
  }

  /** One batch frame of the queue's leading unchunked messages, up to about `frameBytesTarget`. */
  private writeBatch(peer: PeerState, connection: Connection): void {
    let count = 0;
    let bytes = batchFrameOverheadBytes;
    for (const item of peer.queue) {
      if (item.chunked || count >= frameMessagesMax) break;
      if (count > 0 && bytes + batchItemOverheadBytes + item.bytes > frameBytesTarget) break;
      bytes += batchItemOverheadBytes + item.bytes;
      count += 1;
    }
    let taken = this.dequeue(peer, count);
    // Checked again here: the queue may have been queued for a link the peer has since replaced
    // (a restart as an older build).
    if (!connection.peerDecodesPropDropped && taken.some((item) => item.message.type === 'MsgPropDropped')) {
      const kept = taken.filter((item) => item.message.type !== 'MsgPropDropped');
      this.counters.dropped += taken.length - kept.length;
      taken = kept;
      if (taken.length === 0) return;
    }
    this.write(peer, connection, encodeBatch(taken));
    this.counters.messagesSent += taken.length;
    for (const item of taken) {
      if (item.message.type === 'MsgSnap') this.pendingSnapshotStatus.push({ peer: peer.id, shard: item.shard, ok: true });
    }
  }

  private writeChunk(peer: PeerState, connection: Connection, sending: OutgoingSnapshot): void {
    const end = Math.min(sending.offset + snapshotChunkBytes, sending.data.byteLength);
    const index = sending.message.snapshot?.metadata.index ?? 0;
    const frame = encodeSnapshotChunk(sending.shard, index, sending.offset, sending.data.subarray(sending.offset, end));
    sending.offset = end;
    if (end === sending.data.byteLength) {
      connection.sending = undefined;
      this.counters.messagesSent += 1;
      this.pendingSnapshotStatus.push({ peer: peer.id, shard: sending.shard, ok: true });
    }
    this.write(peer, connection, frame);
  }

  private write(peer: PeerState, connection: Connection, frame: Buffer): void {
    this.counters.framesSent += 1;
    this.bytesOf(peer.id).sent += frame.byteLength;
    if (this.writeFrame(connection, frame)) return;
    connection.writeBlocked = true;
    this.log('debug', `member ${idHex(this.options.localId)}: ${connection.describe()} is full, waiting for drain`);
    connection.socket.once('drain', () => {
      connection.writeBlocked = false;
      if (connection.closed) return;
      this.pump(peer);
      this.report();
    });
  }

  /** Writes one codec frame as a link record; false when the socket asks to wait for 'drain'. */
  private writeFrame(connection: Connection, frame: Buffer): boolean {
    const socket = connection.socket;
    if (frame.byteLength < linkCopyBytesMax) return socket.write(encodeRecord(LINK_FRAME, frame));
    socket.write(encodeRecordHeader(LINK_FRAME, frame.byteLength));
    return socket.write(frame);
  }

  // -------------------------------------------------------------------------------------------
  // Links

  private dials(peer: PeerState): boolean {
    return this.options.localId < peer.id;
  }

  private maybeDial(peer: PeerState): void {
    if (!this.running || !this.dials(peer)) return;
    if (peer.connection !== undefined || peer.dialing !== undefined || peer.reconnectTimer !== undefined) return;
    this.dial(peer);
  }

  private dial(peer: PeerState): void {
    const socket = connectLink(peer.target, this.options.tls);
    const connection = new Connection('dial', socket, peer.id, peer.target);
    peer.dialing = connection;
    this.attach(connection);
    // Written before the socket connects; the socket sends them once it has.
    socket.write(encodePreamble(features(this.options.onRequest !== undefined)));
    connection.preambleSent = true;
    this.writeHello(connection, peer.id);
  }

  private accept(socket: net.Socket): void {
    socket.setNoDelay(true);
    const connection = new Connection('accept', socket, undefined);
    this.attach(connection);
    if (!this.running) {
      this.close(connection, linkStatus.UNAVAILABLE, 'peer transport stopping');
      return;
    }
    // The handshake verified the client certificate against the CA; its name is checked here,
    // before any record is read (Node's server has no hook inside the handshake, as Go's has).
    const tlsOptions = this.options.tls;
    const rule = tlsOptions?.allowedCertificate;
    if (rule !== undefined && tlsOptions?.clientCertAuth === true && socket instanceof tls.TLSSocket) {
      const problem = certificateProblem(socket.getPeerCertificate(), rule);
      if (problem !== undefined) this.refuse(connection, linkStatus.PERMISSION_DENIED, `client certificate refused: ${problem}`, 'certificate');
    }
  }

  private attach(connection: Connection): void {
    this.connections.add(connection);
    const socket = connection.socket;
    socket.on('data', (chunk: Buffer) => this.onData(connection, chunk));
    socket.on('error', (error: Error) => {
      if (error instanceof PeerCertificateError) this.refuse(connection, linkStatus.PERMISSION_DENIED, error.message, 'certificate');
      else this.close(connection, linkStatus.UNAVAILABLE, `link error: ${error.message}`);
    });
    socket.on('end', () => this.close(connection, linkStatus.OK, 'peer ended the link'));
    socket.on('close', () => this.close(connection, linkStatus.OK, 'link closed'));
    connection.helloTimer = setTimeout(() => {
      if (connection.side === 'accept') this.counters.refused += 1;
      this.close(connection, linkStatus.DEADLINE_EXCEEDED, `no hello within ${helloTimeoutMs} ms`);
    }, helloTimeoutMs);
  }

  private onData(connection: Connection, chunk: Buffer): void {
    if (connection.closed) return;
    connection.heard = true;
    try {
      connection.reader.push(chunk, (kind, body) => {
        this.onRecord(connection, kind, body);
        return !connection.closed;
      });
    } catch (error) {
      if (!(error instanceof LinkProtocolError)) throw error;
      this.refuse(connection, linkStatus.INVALID_ARGUMENT, error.message);
    }
  }

  private onRecord(connection: Connection, kind: number, body: Buffer): void {
    switch (kind) {
      case LINK_PREAMBLE:
        this.onPreamble(connection, body);
        return;
      case LINK_FRAME:
        this.onFrame(connection, body);
        return;
      case LINK_PING:
        this.onPing(connection, body);
        return;
      case LINK_PONG:
        this.onPong(connection, body);
        return;
      case LINK_CLOSE: {
        const { code, details } = decodeClose(body);
        const removedBy = connection.side === 'dial' && this.running && isRemovedRefusal(code, details) ? connection.peerId : undefined;
        this.close(connection, code as LinkStatus, `peer closed the link: ${details}`, false, false);
        if (removedBy !== undefined) this.options.onRemoved?.(removedBy);
        return;
      }
      case LINK_CLUSTER_QUERY:
        this.answerClusterQuery(connection);
        return;
      default:
        this.refuse(connection, linkStatus.INVALID_ARGUMENT, `unexpected link record kind ${kind}`);
    }
  }

  private onPing(connection: Connection, body: Buffer): void {
    // Before hello a ping is refused: a stranger must not get the node to echo its bytes.
    if (!connection.live || body.byteLength !== linkPingBytes) {
      this.refuse(connection, linkStatus.INVALID_ARGUMENT, `ping of ${body.byteLength} bytes ${connection.live ? '' : 'before hello'}`.trimEnd());
      return;
    }
    if (!connection.writeBlocked) connection.socket.write(encodeRecord(LINK_PONG, body));
  }

  private onPong(connection: Connection, body: Buffer): void {
    if (!connection.live || body.byteLength !== linkPingBytes) {
      this.refuse(connection, linkStatus.INVALID_ARGUMENT, `pong of ${body.byteLength} bytes`);
      return;
    }
    const roundTripMs = performance.now() - body.readDoubleBE(0);
    if (connection.live && connection.peerId !== undefined && roundTripMs >= 0) this.options.onRoundTrip?.(connection.peerId, roundTripMs / 1000);
  }

  private onPreamble(connection: Connection, body: Buffer): void {
    if (connection.preambleRead) {
      this.refuse(connection, linkStatus.INVALID_ARGUMENT, 'second preamble on a link');
      return;
    }
    let listed: string[];
    try {
      listed = decodePreamble(body);
    } catch (error) {
      if (!(error instanceof LinkProtocolError)) throw error;
      this.refuse(connection, linkStatus.FAILED_PRECONDITION, error.message);
      return;
    }
    connection.preambleRead = true;
    connection.peerHandlesRequests = listed.includes(peerFeatureRequests);
    connection.peerDecodesPropDropped = listed.includes(peerFeaturePropDropped);
    // The acceptor answers with its own, ahead of its hello (as gRPC's response headers were).
    if (connection.side === 'accept') this.writePreamble(connection);
  }

  private writePreamble(connection: Connection): void {
    assert(!connection.preambleSent, 'one preamble per link');
    connection.socket.write(encodePreamble(features(this.options.onRequest !== undefined)));
    connection.preambleSent = true;
  }

  /** A cluster query comes instead of a hello: answer it and close the link. */
  private answerClusterQuery(connection: Connection): void {
    if (connection.side !== 'accept' || connection.live) {
      this.refuse(connection, linkStatus.FAILED_PRECONDITION, 'a cluster query must be the first request of an accepted link');
      return;
    }
    const info = this.options.clusterInfo;
    if (info === undefined) {
      this.close(connection, linkStatus.UNIMPLEMENTED, 'this node does not answer cluster queries', true);
      return;
    }
    let answer: Uint8Array;
    try {
      answer = info();
    } catch (error) {
      this.close(connection, linkStatus.UNAVAILABLE, `cannot answer a cluster query now: ${error instanceof Error ? error.message : String(error)}`, true);
      return;
    }
    if (answer.byteLength > clusterQueryBytesMax) {
      // The host's member list outgrew the answer's limit: refuse the query, loudly, rather than crash.
      this.log('error', `member ${idHex(this.options.localId)}: cannot answer a cluster query: the answer of ${answer.byteLength} bytes exceeds clusterQueryBytesMax ${clusterQueryBytesMax}`);
      this.close(connection, linkStatus.INTERNAL, `cluster answer of ${answer.byteLength} bytes exceeds clusterQueryBytesMax ${clusterQueryBytesMax}`, true);
      return;
    }
    connection.socket.write(encodeRecord(LINK_CLUSTER_ANSWER, answer));
    this.close(connection, linkStatus.OK, 'cluster query answered', true);
  }

  private writeHello(connection: Connection, toId: number): void {
    const hello: PeerHello = { clusterId: this.options.clusterId, fromId: this.options.localId, toId, protocolVersion };
    this.counters.framesSent += 1;
    this.writeFrame(connection, encodeHello(hello));
  }

  /**
   * Closes a link once. With a code other than OK, and `tell`, the other side first gets a close
   * record saying why (an acceptor that has not sent its preamble sends it first, so that the
   * other side's reader gets to the reason); the socket is destroyed once that is written (or
   * after `linkCloseLingerMs`).
   */
  private close(connection: Connection, code: LinkStatus, reason: string, quiet = false, tell = true): void {
    if (connection.closed) return;
    connection.closed = true;
    this.connections.delete(connection);
    clearTimeout(connection.helloTimer);
    this.discardRpcQueue(connection);
    const refused = code === linkStatus.PERMISSION_DENIED || code === linkStatus.FAILED_PRECONDITION || code === linkStatus.INVALID_ARGUMENT;
    const level: PeerLogLevel = this.running && !quiet && (connection.live || refused) ? 'warn' : 'debug';
    this.log(level, `member ${idHex(this.options.localId)}: ${connection.describe()} closed: ${reason}`);
    const socket = connection.socket;
    if (socket.destroyed || !socket.writable || connection.writeBlocked) socket.destroy();
    else {
      const lingering = setTimeout(() => socket.destroy(), linkCloseLingerMs);
      lingering.unref();
      const destroy = (): void => {
        clearTimeout(lingering);
        socket.destroy();
      };
      if (tell && code !== linkStatus.OK) {
        if (!connection.preambleSent) this.writePreamble(connection);
        socket.end(encodeClose(code, reason), destroy);
      }
      else socket.end(destroy);
    }
    this.onClosed(connection);
  }

  private onClosed(connection: Connection): void {
    const peer = connection.peerId === undefined ? undefined : this.peers.get(connection.peerId);
    if (peer === undefined || connection.detached) return;
    this.failRequests(peer, connection, 'unreachable', 'the stream closed before the answer');
    if (connection.sending !== undefined) this.drop(peer.id, connection.sending.shard, connection.sending.message);
    if (peer.dialing === connection) peer.dialing = undefined;
    if (peer.connection !== connection) {
      // A dial that never went live, or a stream that was replaced.
      if (this.dials(peer) && peer.connection === undefined && peer.dialing === undefined) this.scheduleReconnect(peer);
      return;
    }
    peer.connection = undefined;
    peer.lastLive = Date.now();
    for (const item of this.dequeue(peer, peer.queue.length)) this.drop(peer.id, item.shard, item.message);
    if (this.dials(peer)) this.scheduleReconnect(peer);
  }

  private scheduleReconnect(peer: PeerState): void {
    if (!this.running || peer.reconnectTimer !== undefined || this.peers.get(peer.id) !== peer) return;
    const delay = reconnectDelayMs(peer.attempt, this.random);
    peer.attempt += 1;
    peer.reconnectTimer = setTimeout(() => {
      peer.reconnectTimer = undefined;
      if (!this.running || this.peers.get(peer.id) !== peer) return;
      this.counters.reconnects += 1;
      this.dial(peer);
    }, delay);
  }

  /** Stops dialing and closes every stream of `peer`; its queue is discarded, its requests fail with `code`. */
  private clearPeer(peer: PeerState, code: 'unreachable' | 'stopped'): void {
    this.failRequests(peer, undefined, code, code === 'stopped' ? 'the transport stopped' : 'member removed or moved');
    clearTimeout(peer.reconnectTimer);
    peer.reconnectTimer = undefined;
    peer.attempt = 0;
    const streams = [peer.connection, peer.dialing];
    peer.connection = undefined;
    peer.dialing = undefined;
    this.counters.dropped += this.dequeue(peer, peer.queue.length).length;
    for (const connection of streams) {
      if (connection !== undefined) {
        connection.detached = true;
        this.close(connection, linkStatus.UNAVAILABLE, `member ${idHex(peer.id)} removed or moved`);
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Receiving

  private onFrame(connection: Connection, bytes: Buffer): void {
    if (connection.closed) return;
    let frame: PeerFrame;
    try {
      frame = decodeFrame(bytes);
    } catch (error) {
      if (!(error instanceof PeerProtocolError)) throw error;
      this.refuse(connection, linkStatus.INVALID_ARGUMENT, error.message);
      return;
    }
    this.counters.framesReceived += 1;
    if (connection.live && connection.peerId !== undefined) this.bytesOf(connection.peerId).received += bytes.byteLength;
    if (!connection.live) {
      if (frame.kind !== 'hello') this.refuse(connection, linkStatus.FAILED_PRECONDITION, `first frame must be hello, got ${frame.kind}`);
      else this.onHello(connection, frame.hello);
      return;
    }
    switch (frame.kind) {
      case 'hello':
        this.refuse(connection, linkStatus.FAILED_PRECONDITION, 'second hello on a stream');
        return;
      case 'batch':
        if (connection.receiving !== undefined) this.refuse(connection, linkStatus.INVALID_ARGUMENT, 'batch inside a snapshot');
        else this.deliver(connection, frame.messages);
        return;
      case 'snapshot-header':
        this.onSnapshotHeader(connection, frame.shard, frame.totalBytes, frame.message);
        return;
      case 'snapshot-chunk':
        this.onSnapshotChunk(connection, frame.shard, frame.snapshotIndex, frame.offset, frame.data);
        return;
      // Requests and answers may arrive between the chunks of a snapshot.
      case 'request':
        this.onIncomingRequest(connection, frame.id, frame.payload);
        return;
      case 'response':
        this.onAnswer(connection, frame.id, frame.answer);
        return;
    }
  }

  /**
   * Closes a link with a warning naming its address. With `why`, the link was refused admission
   * (see admission.ts): `onRefused` counts it.
   */
  private refuse(connection: Connection, code: LinkStatus, reason: string, why?: PeerRefusalReason): void {
    this.counters.refused += 1;
    const line = `member ${idHex(this.options.localId)}: refusing ${connection.describe()}${why === undefined ? '' : ` (${why})`}: ${reason}`;
    if (why === undefined) this.log('warn', line);
    else {
      this.logRefusal(line);
      this.options.onRefused?.(why, connection.remoteAddress ?? 'unknown');
    }
    // Logged here already: the close itself says nothing more at warn.
    this.close(connection, code, reason, why !== undefined);
  }

  /** Admission refusals in the current warning interval, and those logged at debug only. */
  private refusalWarnings = { intervalStart: 0, logged: 0, unlogged: 0 };

  /** Logs an admission refusal at warn, at most `refusalWarningsPerIntervalMax` per interval. */
  private logRefusal(line: string): void {
    const now = Date.now();
    const warnings = this.refusalWarnings;
    if (now - warnings.intervalStart >= refusalWarningIntervalMs) {
      warnings.intervalStart = now;
      warnings.logged = 0;
    }
    if (warnings.logged >= refusalWarningsPerIntervalMax) {
      warnings.unlogged += 1;
      this.log('debug', line);
      return;
    }
    warnings.logged += 1;
    const unlogged = warnings.unlogged;
    warnings.unlogged = 0;
    this.log('warn', unlogged === 0 ? line : `${line} (and ${unlogged} more refusals logged at debug only since)`);
  }

  /** What an accepted link's admission reads: the peer set, which the host keeps equal to the cluster's members. */
  private admissionView(): AdmissionView {
    return {
      localId: this.options.localId,
      isRemoved: (id) => this.options.isRemoved?.(id) === true,
      memberHosts: (id) => this.peers.get(id)?.hosts,
    };
  }

  /** Why a hello is refused, or undefined when it is fine. */
  private helloProblem(connection: Connection, hello: PeerHello): HelloProblem | undefined {
    const local = this.options.localId;
    if (hello.protocolVersion !== protocolVersion) {
      return { code: linkStatus.FAILED_PRECONDITION, detail: `peer protocol version ${hello.protocolVersion}, this node speaks ${protocolVersion}`, why: 'protocol' };
    }
    if (hello.clusterId !== this.options.clusterId) {
      const detail = `cluster id mismatch: member ${idHex(hello.fromId)} is in cluster ${idHex(hello.clusterId)}, this node is in cluster ${idHex(this.options.clusterId)}`;
      return { code: linkStatus.PERMISSION_DENIED, detail, why: 'cluster_mismatch' };
    }
    if (hello.toId !== local) {
      return { code: linkStatus.PERMISSION_DENIED, detail: `hello addressed to member ${idHex(hello.toId)}, this is member ${idHex(local)}`, why: 'cluster_mismatch' };
    }
    if (connection.side === 'dial') {
      // This node chose the address; the answer must come from the member it dialed.
      if (hello.fromId !== connection.peerId || !this.peers.has(hello.fromId)) {
        return { code: linkStatus.PERMISSION_DENIED, detail: `dialed member ${idHex(connection.peerId ?? 0)} but member ${idHex(hello.fromId)} answered` };
      }
      return undefined;
    }
    const admission = admitPeer(this.admissionView(), hello.fromId, connection.remoteAddress);
    if (!admission.admitted) {
      const detail = admission.reason === 'removed' ? `${removedMemberRefusal} ${admission.detail}` : admission.detail;
      return { code: linkStatus.PERMISSION_DENIED, detail, why: admission.reason };
    }
    if (hello.fromId > local) {
      // A member's probe asking whether it is still one (see probeSilentPeers): expected, not worth a warning.
      return { code: linkStatus.FAILED_PRECONDITION, detail: `member ${idHex(hello.fromId)} must accept, not dial: the smaller id dials`, quiet: true };
    }
    return undefined;
  }

  private onHello(connection: Connection, hello: PeerHello): void {
    const problem = this.helloProblem(connection, hello);
    if (problem !== undefined) {
      if (problem.quiet === true) {
        this.counters.refused += 1;
        this.close(connection, problem.code, problem.detail, true);
      } else this.refuse(connection, problem.code, problem.detail, problem.why);
      return;
    }
    const peer = this.peers.get(hello.fromId);
    if (peer === undefined) return;
    clearTimeout(connection.helloTimer);
    connection.peerId = peer.id;
    connection.live = true;
    connection.reader.widen();
    peer.lastLive = Date.now();
    if (connection.side === 'accept') {
      this.writeHello(connection, peer.id);
      const previous = peer.connection;
      peer.connection = connection;
      // The dialer started over; the old stream is dead or dying. Its queue carries over.
      if (previous !== undefined) this.close(previous, linkStatus.ABORTED, 'replaced by a new stream from the same member');
    } else {
      peer.dialing = undefined;
      peer.connection = connection;
      peer.attempt = 0;
    }
    this.log('info', `member ${idHex(this.options.localId)}: ${connection.describe()} is live`);
  }

  private deliver(connection: Connection, messages: ShardMessage[]): void {
    const from = connection.peerId;
    if (from === undefined) return;
    const known: ShardMessage[] = [];
    for (const item of messages) {
      if (this.options.isKnownShard(item.shard)) known.push(item);
      else this.refuseShard(from, item.shard);
    }
    if (known.length === 0) return;
    this.counters.messagesReceived += known.length;
    this.options.onMessages(from, known);
  }

  private refuseShard(from: number, shard: number): void {
    this.counters.refused += 1;
    if (this.unknownShardsLogged.has(shard) || this.unknownShardsLogged.size >= unknownShardsLoggedMax) return;
    this.unknownShardsLogged.add(shard);
    this.log('warn', `member ${idHex(this.options.localId)}: refusing messages from member ${idHex(from)} for unknown shard ${shard}`);
  }

  private onSnapshotHeader(connection: Connection, shard: number, totalBytes: number, message: Message): void {
    if (connection.receiving !== undefined) {
      this.refuse(connection, linkStatus.INVALID_ARGUMENT, 'snapshot header inside another snapshot');
      return;
    }
    const discard = !this.options.isKnownShard(shard);
    if (discard && connection.peerId !== undefined) this.refuseShard(connection.peerId, shard);
    connection.receiving = { shard, message, totalBytes, chunks: [], received: 0, discard };
  }

  private onSnapshotChunk(connection: Connection, shard: number, index: number, offset: number, data: Uint8Array): void {
    const receiving = connection.receiving;
    const from = connection.peerId;
    if (receiving === undefined || from === undefined) {
      this.refuse(connection, linkStatus.INVALID_ARGUMENT, 'snapshot chunk without a header');
      return;
    }
    const expectedIndex = receiving.message.snapshot?.metadata.index;
    if (shard !== receiving.shard || index !== expectedIndex || offset !== receiving.received) {
      this.refuse(connection, linkStatus.INVALID_ARGUMENT, `snapshot chunk out of order (shard ${shard}, index ${index}, offset ${offset})`);
      return;
    }
    if (offset + data.byteLength > receiving.totalBytes) {
      this.refuse(connection, linkStatus.INVALID_ARGUMENT, 'snapshot chunk beyond the announced size');
      return;
    }
    receiving.received += data.byteLength;
    if (!receiving.discard) receiving.chunks.push(data);
    if (receiving.received < receiving.totalBytes) return;
    connection.receiving = undefined;
    if (receiving.discard) return;
    const snapshot = receiving.message.snapshot;
    if (snapshot === undefined) return;
    const full = new Uint8Array(Buffer.concat(receiving.chunks, receiving.totalBytes));
    const message: Message = { ...receiving.message, snapshot: { metadata: snapshot.metadata, data: full } };
    this.counters.messagesReceived += 1;
    this.options.onMessages(from, [{ shard, message }]);
  }

  // -------------------------------------------------------------------------------------------
  // Setup

  private newPeer(id: number, address: string | readonly string[]): PeerState {
    checkId(id, 'peer id');
    const { target, hosts } = peerAddresses(address);
    return {
      id,
      target,
      hosts,
      queue: [],
      queueBytes: 0,
      queueSnapshots: 0,
      connection: undefined,
      dialing: undefined,
      reconnectTimer: undefined,
      attempt: 0,
      requests: new Map(),
      requestQueueBytes: 0,
      handling: 0,
      lastLive: Date.now(),
      lastProbe: 0,
    };
  }
}
