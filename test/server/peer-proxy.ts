/**
 * A TCP proxy in front of a node's peer port that reads the peer link's records (wire.ts) and
 * frames (codec.ts) as they pass, both ways, and drops the Raft messages a test picks: a fault a
 * real network can cause (a message lost on a link that then breaks) made to happen on purpose.
 * Every other record is passed on unchanged. The proxies run in a process of their own
 * (`ProxyProcess`, peer-proxy-process.ts): the test's process blocks while etcdctl runs.
 */
import { type ChildProcess, fork } from 'node:child_process';
import * as net from 'node:net';
import { join } from 'node:path';
import type { Message } from '../../raft/index.js';
import { LINK_FRAME, RecordReader, decodeFrame, encodeBatch, encodeRecord, peerLimits } from '../../src/server/peer/index.js';
import { type TestClusterOptions, freeBase } from './cluster-harness.js';

/** Whether a Raft message of `shard` from member `from` to member `to` is dropped. */
export type DropRule = (from: number, to: number, shard: number, message: Message) => boolean;

export class PeerProxy {
  private readonly sockets = new Set<net.Socket>();
  /** Messages dropped so far. */
  dropped = 0;

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  /**
   * Listens on 127.0.0.1:`port` and forwards to 127.0.0.1:`targetPort()` (asked at each
   * connection: the node may be placed after the proxy starts), dropping what `drop()` picks.
   */
  static async start(port: number, drop: () => DropRule, targetPort: () => number): Promise<PeerProxy> {
    const server = net.createServer();
    const proxy = new PeerProxy(server, port);
    server.on('connection', (dialer) => {
      const target = targetPort();
      // Not placed yet: the dialer tries again.
      if (target === 0) dialer.destroy();
      else proxy.pipe(dialer, target, drop);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    return proxy;
  }

  private pipe(dialer: net.Socket, targetPort: number, drop: () => DropRule): void {
    const acceptor = net.connect(targetPort, '127.0.0.1');
    for (const socket of [dialer, acceptor]) {
      this.sockets.add(socket);
      socket.on('close', () => {
        this.sockets.delete(socket);
        dialer.destroy();
        acceptor.destroy();
      });
      socket.on('error', () => {});
    }
    // Who is on either side: the dialer's hello names both.
    const ids = { dialer: 0, acceptor: 0 };
    const relay = (from: net.Socket, to: net.Socket, direction: 'dialer' | 'acceptor'): void => {
      const reader = new RecordReader(peerLimits.linkRecordBytesMax);
      from.on('data', (chunk: Buffer) => {
        try {
          reader.push(chunk, (kind, body) => {
            const passed = this.filtered(kind, body, direction, ids, drop());
            if (passed !== undefined) to.write(encodeRecord(kind, passed));
            return true;
          });
        } catch {
          from.destroy();
        }
      });
    };
    relay(dialer, acceptor, 'dialer');
    relay(acceptor, dialer, 'acceptor');
  }

  /** The record's body to pass on (a batch without what is dropped), or none when nothing is left. */
  private filtered(kind: number, body: Buffer, direction: 'dialer' | 'acceptor', ids: { dialer: number; acceptor: number }, drop: DropRule): Buffer | undefined {
    if (kind !== LINK_FRAME) return body;
    const frame = decodeFrame(body);
    if (frame.kind === 'hello' && direction === 'dialer') {
      ids.dialer = frame.hello.fromId;
      ids.acceptor = frame.hello.toId;
    }
    if (frame.kind !== 'batch') return body;
    const [from, to] = direction === 'dialer' ? [ids.dialer, ids.acceptor] : [ids.acceptor, ids.dialer];
    const kept = frame.messages.filter((m) => !drop(from, to, m.shard, m.message));
    if (kept.length === frame.messages.length) return body;
    this.dropped += frame.messages.length - kept.length;
    // A batch left empty is not sent (the transport never sends one).
    return kept.length === 0 ? undefined : encodeBatch(kept);
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A rule a test can send to the proxies' process: drop `type` messages of `shard` from `from` to `to`. */
export interface DropSpec {
  readonly from: number;
  readonly to: number;
  readonly shard: number;
  readonly type: Message['type'];
}

export type ProxyCommand = { readonly kind: 'target'; readonly index: number; readonly port: number } | { readonly kind: 'drop'; readonly spec: DropSpec } | { readonly kind: 'dropped' };

/** The proxies' process, driven over IPC. */
export class ProxyProcess {
  private constructor(private readonly child: ChildProcess) {}

  /** Starts one proxy per port in `ports`; each forwards to the port `target` later names. */
  static async start(ports: readonly number[]): Promise<ProxyProcess> {
    const child = fork(join(import.meta.dirname, 'peer-proxy-process.ts'), ports.map(String), { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`the proxy process exited with ${code}`)));
    });
    return new ProxyProcess(child);
  }

  /** Proxy `index` forwards to 127.0.0.1:`port` from now on. */
  target(index: number, port: number): void {
    this.child.send({ kind: 'target', index, port } satisfies ProxyCommand);
  }

  /** Whether the rule reached the proxies (they drop from their next record on). */
  async drop(spec: DropSpec): Promise<void> {
    await this.ask({ kind: 'drop', spec });
  }

  /** Messages dropped so far. */
  async dropped(): Promise<number> {
    return this.ask({ kind: 'dropped' });
  }

  private ask(command: ProxyCommand): Promise<number> {
    return new Promise((resolve) => {
      this.child.once('message', (answer) => resolve(answer as number));
      this.child.send(command);
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGKILL');
    await exited;
  }
}

/**
 * A 3-node TestCluster's options with every peer link through a proxy (in a process of its own)
 * in front of the node it reaches: members advertise the proxy's address and listen on their own.
 */
export async function proxiedCluster(): Promise<{ proxies: ProxyProcess; options: TestClusterOptions }> {
  const proxyBase = await freeBase(3);
  const proxyUrl = (i: number): string => `http://127.0.0.1:${proxyBase + 10 * i + 1}`;
  const proxies = await ProxyProcess.start([0, 1, 2].map((i) => proxyBase + 10 * i + 1));
  const options: TestClusterOptions = {
    nodeReplace: (i, node) => {
      proxies.target(i, node.peerPort);
      return { 'initial-advertise-peer-urls': proxyUrl(i), 'initial-cluster': [0, 1, 2].map((n) => `dkv${n + 1}=${proxyUrl(n)}`).join(',') };
    },
  };
  return { proxies, options };
}

/** Member ids in hex from etcdctl's JSON (which prints them as uint64 numbers: kept exact, never rounded). */
export function hexIds(text: string, field: string): string[] {
  return [...text.matchAll(new RegExp(`"${field}":(\\d+)`, 'g'))].map((m) => BigInt(m[1]!).toString(16));
}
