/**
 * The real-mode proxy: who dialed (from /proc, against this process and a real child process),
 * and blackhole / delay / cut per direction of a link.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { identifyDialer, socketInodes } from '../../jepsen-lite/real/proc-sockets.js';
import { ProxyNetwork } from '../../jepsen-lite/real/proxy.js';
import { freeBase } from '../server/cluster-harness.js';

/** How long "nothing arrives" is watched for. */
const quietMs = 300;
const delayMs = 250;

interface Target {
  server: Server;
  port: number;
  /** Bytes the target received, over all connections. */
  received: () => string;
  /** The target's side of every accepted connection. */
  sockets: Socket[];
}

async function startTarget(): Promise<Target> {
  let received = '';
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => undefined);
    socket.on('data', (chunk) => {
      received += chunk.toString();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port, received: () => received, sockets };
}


function waitFor(condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const poll = (): void => {
      if (condition()) resolve();
      else if (Date.now() - started > timeoutMs) reject(new Error('condition not met in time'));
      else setTimeout(poll, 10);
    };
    poll();
  });
}

function dial(port: number): Promise<{ socket: Socket; received: () => string; closed: () => boolean }> {
  return new Promise((resolve, reject) => {
    let received = '';
    let closed = false;
    const socket = connect({ host: '127.0.0.1', port });
    socket.on('data', (chunk) => {
      received += chunk.toString();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      closed = true;
    });
    socket.once('connect', () => resolve({ socket, received: () => received, closed: () => closed }));
    socket.once('error', reject);
  });
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A proxy for member "b" in front of a target server; "a" is this test process. */
async function setup(pids: () => ReadonlyMap<string, number> = () => new Map([['a', process.pid]])): Promise<{ network: ProxyNetwork; target: Target; proxyPort: number }> {
  const target = await startTarget();
  // The proxies' ports from below the kernel's ephemeral range (a port the kernel handed out and
  // took back could be given to some outgoing connection before the proxy listens on it).
  const base = await freeBase(2);
  const proxyPort = base + 10;
  const network = new ProxyNetwork({
    members: [
      { name: 'a', proxyPort: base, peerPort: 1 },
      { name: 'b', proxyPort, peerPort: target.port },
    ],
    pids,
  });
  await network.start();
  cleanups.push(() => new Promise<void>((resolve) => target.server.close(() => resolve())));
  cleanups.push(() => {
    for (const s of target.sockets) s.destroy();
  });
  cleanups.push(() => network.close());
  return { network, target, proxyPort };
}

describe('proc-sockets', () => {
  it('parses /proc/net/tcp lines into inodes by port pair', () => {
    const table = [
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
      '   0: 0100007F:4E21 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0000000000000000 20 4 30 10 -1',
      '   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0',
    ].join('\n');
    const inodes = socketInodes(table);
    expect(inodes.get(`${0x4e21} ${0x9c40}`)).toBe('123456');
    expect(inodes.get(`22 0`)).toBe('999');
    expect(inodes.size).toBe(2);
  });

  it('names the child process that dialed, no one for a process not listed, and gone once it is killed', async () => {
    const listener = createServer();
    const accepted = new Promise<Socket>((resolve) => listener.once('connection', resolve));
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const { port } = listener.address() as AddressInfo;
    const child: ChildProcess = spawn(process.execPath, ['-e', `require('net').connect(${port}, '127.0.0.1'); setInterval(() => {}, 1000);`], { stdio: 'ignore' });
    cleanups.push(() => {
      child.kill('SIGKILL');
      listener.close();
    });
    const socket = await accepted;
    const pid = child.pid!;
    expect(await identifyDialer(socket.remotePort!, port, new Map([['self', process.pid], ['child', pid]]))).toBe('child');
    expect(await identifyDialer(socket.remotePort!, port, new Map([['self', process.pid]]))).toBeUndefined();
    // Killed: its socket is gone, which is not the same as a stranger's connection.
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    let dialer: string | undefined;
    for (const started = Date.now(); dialer !== 'gone' && Date.now() - started < 3000; await new Promise((resolve) => setTimeout(resolve, 10))) {
      dialer = await identifyDialer(socket.remotePort!, port, new Map([['child', pid]]));
    }
    expect(dialer).toBe('gone');
    socket.destroy();
  });
});

describe('ProxyNetwork', () => {
  it('forwards both directions and records who dialed whom', async () => {
    const { network, target, proxyPort } = await setup();
    const client = await dial(proxyPort);
    client.socket.write('hello');
    await waitFor(() => target.received() === 'hello');
    target.sockets[0]!.write('back');
    await waitFor(() => client.received() === 'back');
    expect(network.connectionPairs()).toEqual([{ dialer: 'a', target: 'b' }]);
    client.socket.destroy();
  });

  it('closes a connection from a process that is not a member', async () => {
    const { network, target, proxyPort } = await setup(() => new Map());
    const client = await dial(proxyPort);
    client.socket.write('hello');
    await waitFor(() => client.closed());
    expect(target.received()).toBe('');
    expect(network.stats.unidentified).toBe(1);
  });

  it('blackholes one direction: a->b held (and delivered in order once open), b->a still flows', async () => {
    const { network, target, proxyPort } = await setup();
    const client = await dial(proxyPort);
    client.socket.write('1');
    await waitFor(() => target.received() === '1');
    network.setLink('a', 'b', { mode: 'blackhole' });
    client.socket.write('2');
    client.socket.write('3');
    target.sockets[0]!.write('reply');
    await waitFor(() => client.received() === 'reply');
    await new Promise((resolve) => setTimeout(resolve, quietMs));
    expect(target.received()).toBe('1');
    expect(client.closed()).toBe(false);
    network.setLink('a', 'b', { mode: 'open' });
    await waitFor(() => target.received() === '123');
    client.socket.destroy();
  });

  it('blackholes the other direction: b->a held while a->b flows', async () => {
    const { network, target, proxyPort } = await setup();
    const client = await dial(proxyPort);
    client.socket.write('x');
    await waitFor(() => target.received() === 'x');
    network.setLink('b', 'a', { mode: 'blackhole' });
    target.sockets[0]!.write('held');
    client.socket.write('y');
    await waitFor(() => target.received() === 'xy');
    await new Promise((resolve) => setTimeout(resolve, quietMs));
    expect(client.received()).toBe('');
    network.healAll();
    await waitFor(() => client.received() === 'held');
    client.socket.destroy();
  });

  it('delays one direction by the link delay, keeping order', async () => {
    const { network, target, proxyPort } = await setup();
    const client = await dial(proxyPort);
    network.setLink('a', 'b', { delayMs });
    const sent = Date.now();
    client.socket.write('a');
    client.socket.write('b');
    await waitFor(() => target.received() === 'ab');
    expect(Date.now() - sent).toBeGreaterThanOrEqual(delayMs - 5);
    // The other direction is not delayed.
    const replied = Date.now();
    target.sockets[0]!.write('r');
    await waitFor(() => client.received() === 'r');
    expect(Date.now() - replied).toBeLessThan(delayMs);
    client.socket.destroy();
  });

  it('cut resets the connection at the first byte that meets it and refuses new ones until healed', async () => {
    const { network, target, proxyPort } = await setup();
    const client = await dial(proxyPort);
    client.socket.write('before');
    await waitFor(() => target.received() === 'before');
    network.setLink('a', 'b', { mode: 'cut' });
    client.socket.write('during');
    await waitFor(() => client.closed());
    expect(target.received()).toBe('before');
    const refused = await dial(proxyPort);
    refused.socket.write('again');
    await waitFor(() => refused.closed());
    expect(target.received()).toBe('before');
    expect(network.stats.cut).toBeGreaterThanOrEqual(2);
    network.healAll();
    const healed = await dial(proxyPort);
    healed.socket.write('after');
    await waitFor(() => target.received() === 'beforeafter');
    healed.socket.destroy();
  });
});
