/**
 * TCP proxies in front of every member's peer port, with faults per DIRECTED link.
 *
 * Each member advertises its proxy's port as its peer URL, so every peer connection in the
 * cluster lands on a proxy. On accept the proxy finds which member dialed (the dialer's socket,
 * looked up in /proc: see proc-sockets.ts) and connects on to the target member's real peer
 * port. A connection is then a (dialer, target) pair, and each of its two byte streams is a
 * directed link: dialer->target bytes and target->dialer bytes. A rule on the link A->B acts on
 * the A->B bytes of every connection between A and B, whichever side dialed.
 *
 * - open:      bytes pass, after the link's delay (order kept);
 * - blackhole: bytes are held, not delivered (the sender sees no error; past `heldBytesMax` the
 *              proxy stops reading, so the sender's socket buffers fill as on a dead route);
 *              when the link opens again what was held goes on, in order;
 * - cut:       connections between A and B are reset as soon as an A->B byte meets the rule,
 *              and new connections that would carry A->B bytes are refused (a TCP connection
 *              needs both directions, so a cut is in effect two-way for connections).
 *
 * A connection from a process that is not a member is closed at once.
 */
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { identifyDialer } from './proc-sockets.js';

export type LinkMode = 'open' | 'blackhole' | 'cut';

export interface LinkState {
  readonly mode: LinkMode;
  /** Added latency in ms for bytes on this link. */
  readonly delayMs: number;
}

const openLink: LinkState = { mode: 'open', delayMs: 0 };

/** Bytes held per direction of a connection in a blackhole before the proxy stops reading. */
export const heldBytesMax = 4 * 1024 * 1024;
/** Bytes waiting out a delay per direction before the proxy stops reading. */
export const delayedBytesMax = 4 * 1024 * 1024;
/** Longest delay a link may have. */
export const linkDelayMsMax = 60_000;
/** How long the onward connection to a member's real peer port may take. */
export const upstreamConnectTimeoutMs = 2000;

export const proxyHost = '127.0.0.1';

export interface ProxiedMember {
  readonly name: string;
  /** The port the proxy listens on (the member's advertised peer port). */
  readonly proxyPort: number;
  /** The member's real peer port, behind the proxy. */
  readonly peerPort: number;
}

export interface ProxyNetworkOptions {
  readonly members: readonly ProxiedMember[];
  /** The members' current process ids (name -> pid); a stopped member is absent. */
  readonly pids: () => ReadonlyMap<string, number>;
  /** Told about refused and unidentified connections (for logs). */
  readonly log?: (message: string) => void;
}

export interface ProxyStats {
  accepted: number;
  /** Connections from a process that is not a member. */
  unidentified: number;
  /** Connections whose dialer's socket was gone before it could be identified (a kill fault). */
  vanished: number;
  /** Connections refused or reset by a cut. */
  cut: number;
}

export function linkName(from: string, to: string): string {
  return `${from}->${to}`;
}

export class ProxyNetwork {
  private readonly servers: Server[] = [];
  private readonly links = new Map<string, LinkState>();
  private readonly connections = new Set<ProxiedConnection>();
  private readonly names: ReadonlySet<string>;
  readonly stats: ProxyStats = { accepted: 0, unidentified: 0, vanished: 0, cut: 0 };
  private closed = false;

  constructor(private readonly options: ProxyNetworkOptions) {
    this.names = new Set(options.members.map((m) => m.name));
    if (this.names.size !== options.members.length) throw new TypeError('member names must be unique');
  }

  /** Listens on every member's proxy port. */
  async start(): Promise<void> {
    for (const member of this.options.members) {
      const server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => {
        void this.accept(member, socket);
      });
      this.servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(member.proxyPort, proxyHost, () => {
          server.off('error', reject);
          resolve();
        });
      });
    }
  }

  /** The proxy ports, in member order (for tests that let the system pick them). */
  ports(): number[] {
    return this.servers.map((server) => (server.address() as AddressInfo).port);
  }

  link(from: string, to: string): LinkState {
    return this.links.get(linkName(from, to)) ?? openLink;
  }

  /** Sets the directed link from -> to; the change applies to bytes from now on. */
  setLink(from: string, to: string, change: Partial<LinkState>): void {
    this.checkName(from);
    this.checkName(to);
    if (from === to) throw new TypeError(`a link needs two members, got ${from} twice`);
    const next = { ...this.link(from, to), ...change };
    if (!Number.isInteger(next.delayMs) || next.delayMs < 0 || next.delayMs > linkDelayMsMax) {
      throw new TypeError(`delayMs must be a whole number in [0, ${linkDelayMsMax}], got ${next.delayMs}`);
    }
    this.links.set(linkName(from, to), next);
    for (const connection of [...this.connections]) connection.linkChanged();
  }

  /** Every link open with no delay. */
  healAll(): void {
    this.links.clear();
    for (const connection of [...this.connections]) connection.linkChanged();
  }

  /** Live connections as (dialer, target) pairs, for tests and logs. */
  connectionPairs(): Array<{ dialer: string; target: string }> {
    return [...this.connections].map((c) => ({ dialer: c.dialer, target: c.target }));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const connection of [...this.connections]) connection.destroy();
    await Promise.all(this.servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }

  private checkName(name: string): void {
    if (!this.names.has(name)) throw new TypeError(`unknown member ${name}`);
  }

  private async accept(target: ProxiedMember, socket: Socket): Promise<void> {
    socket.on('error', () => socket.destroy());
    this.stats.accepted++;
    const dialerPort = socket.remotePort;
    const dialer = dialerPort === undefined ? undefined : await identifyDialer(dialerPort, target.proxyPort, this.options.pids());
    if (this.closed || socket.destroyed) {
      socket.destroy();
      return;
    }
    if (dialer === 'gone') {
      // The dialer was killed between its connect and our look at /proc: nothing to forward.
      this.stats.vanished++;
      socket.destroy();
      return;
    }
    if (dialer === undefined || dialer === target.name) {
      this.stats.unidentified++;
      this.options.log?.(`proxy ${target.name}: closed a connection from port ${dialerPort ?? '?'} that no member dialed`);
      socket.destroy();
      return;
    }
    if (this.link(dialer, target.name).mode === 'cut' || this.link(target.name, dialer).mode === 'cut') {
      this.stats.cut++;
      socket.resetAndDestroy();
      return;
    }
    const upstream = connect({ host: proxyHost, port: target.peerPort, allowHalfOpen: true });
    upstream.setTimeout(upstreamConnectTimeoutMs, () => upstream.destroy());
    upstream.once('connect', () => upstream.setTimeout(0));
    const connection = new ProxiedConnection(this, dialer, target.name, socket, upstream, () => {
      this.connections.delete(connection);
    });
    this.connections.add(connection);
    socket.resume();
  }

  /** Called by a connection that met a cut. */
  countCut(): void {
    this.stats.cut++;
  }
}

/** One accepted connection and its onward connection: two directed byte streams. */
class ProxiedConnection {
  private readonly directions: [Direction, Direction];
  private gone = false;

  constructor(
    private readonly network: ProxyNetwork,
    readonly dialer: string,
    readonly target: string,
    private readonly downstream: Socket,
    private readonly upstream: Socket,
    private readonly onGone: () => void,
  ) {
    this.directions = [
      new Direction(this, dialer, target, downstream, upstream),
      new Direction(this, target, dialer, upstream, downstream),
    ];
    for (const socket of [downstream, upstream]) {
      socket.on('error', () => this.destroy());
      socket.on('close', () => this.destroy());
    }
  }

  link(from: string, to: string): LinkState {
    return this.network.link(from, to);
  }

  linkChanged(): void {
    for (const direction of this.directions) direction.linkChanged();
  }

  cut(): void {
    if (this.gone) return;
    this.network.countCut();
    this.downstream.resetAndDestroy();
    this.upstream.resetAndDestroy();
    this.destroy();
  }

  destroy(): void {
    if (this.gone) return;
    this.gone = true;
    for (const direction of this.directions) direction.stop();
    this.downstream.destroy();
    this.upstream.destroy();
    this.onGone();
  }
}

/** The bytes of one direction of a connection: from `source`'s reads to `sink`'s writes. */
class Direction {
  /** Bytes held by a blackhole, in arrival order. */
  private held: Buffer[] = [];
  private heldBytes = 0;
  /** Bytes waiting out a delay: each with the time it may go. */
  private delayed: Array<{ due: number; chunk: Buffer }> = [];
  private delayedBytes = 0;
  private lastDue = 0;
  private timer: NodeJS.Timeout | undefined;
  private sourceEnded = false;
  private stopped = false;

  constructor(
    private readonly connection: ProxiedConnection,
    private readonly from: string,
    private readonly to: string,
    private readonly source: Socket,
    private readonly sink: Socket,
  ) {
    source.on('data', (chunk: Buffer) => this.arrive(chunk));
    source.on('end', () => {
      this.sourceEnded = true;
      this.maybeEnd();
    });
    sink.on('drain', () => this.adjustReading());
  }

  private state(): LinkState {
    return this.connection.link(this.from, this.to);
  }

  private arrive(chunk: Buffer): void {
    const state = this.state();
    if (state.mode === 'cut') {
      this.connection.cut();
      return;
    }
    if (state.mode === 'blackhole' || this.held.length > 0) {
      this.held.push(chunk);
      this.heldBytes += chunk.length;
      this.adjustReading();
      return;
    }
    this.send(chunk, state.delayMs);
  }

  linkChanged(): void {
    const state = this.state();
    if (state.mode === 'cut') {
      // Only bytes that meet the cut reset the connection; an idle direction does not.
      if (this.held.length > 0 || this.delayed.length > 0) this.connection.cut();
      return;
    }
    if (state.mode === 'open' && this.held.length > 0) {
      const held = this.held;
      this.held = [];
      this.heldBytes = 0;
      for (const chunk of held) this.send(chunk, state.delayMs);
    }
    this.adjustReading();
  }

  private send(chunk: Buffer, delayMs: number): void {
    const now = Date.now();
    if (delayMs === 0 && this.delayed.length === 0) {
      this.sink.write(chunk);
      this.adjustReading();
      return;
    }
    // Order is kept: a chunk never goes before one that arrived earlier.
    const due = Math.max(now + delayMs, this.lastDue);
    this.lastDue = due;
    this.delayed.push({ due, chunk });
    this.delayedBytes += chunk.length;
    this.adjustReading();
    this.schedule();
  }

  private schedule(): void {
    if (this.timer !== undefined || this.stopped) return;
    const head = this.delayed[0];
    if (head === undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flushDue();
    }, Math.max(0, head.due - Date.now()));
  }

  private flushDue(): void {
    if (this.stopped) return;
    if (this.state().mode === 'cut') {
      this.connection.cut();
      return;
    }
    const now = Date.now();
    while (this.delayed.length > 0 && this.delayed[0]!.due <= now) {
      const { chunk } = this.delayed.shift()!;
      this.delayedBytes -= chunk.length;
      this.sink.write(chunk);
    }
    this.adjustReading();
    this.schedule();
    this.maybeEnd();
  }

  /** Reads from the source only while the bytes we keep and the sink's buffer are bounded. */
  private adjustReading(): void {
    if (this.stopped) return;
    const full = this.heldBytes > heldBytesMax || this.delayedBytes > delayedBytesMax || this.sink.writableNeedDrain;
    if (full) this.source.pause();
    else this.source.resume();
  }

  private maybeEnd(): void {
    if (this.sourceEnded && this.held.length === 0 && this.delayed.length === 0 && !this.sink.destroyed) this.sink.end();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.held = [];
    this.delayed = [];
  }
}
