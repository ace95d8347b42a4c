/**
 * TLS end to end: a 3-node cluster of `dkv server` processes with https client URLs and https peer
 * URLs, certificates made with the openssl CLI, driven by the real etcdctl. Without client
 * certificate auth a client needs only the CA; with it (and with peer client certificate auth),
 * a client needs a certificate the CA signed, and every other client is refused. A TLS client
 * connection gets the same wide HTTP/2 receive windows as a plaintext one.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as http2Connect } from 'node:http2';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientConnectionWindowBytes, clientStreamWindowBytes } from '../../src/server/limits.js';
import { etcdChannel, TestCluster, etcdctl, waitUntil } from './cluster-harness.js';
import { WatchClient } from './watch-client.js';

let dir = '';
const file = (name: string) => join(dir, name);

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

function makeCa(name: string): void {
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '1', '-subj', `/CN=${name}`);
}

/** A certificate signed by `ca`, with the extensions of `extFile` (SANs, key usages). */
function makeCert(name: string, ca: string, extFile: string): void {
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial',
    '-out', `${name}.crt`, '-days', '1', '-extfile', extFile);
}

beforeAll(() => {
  expect(execFileSync('openssl', ['version']).toString()).toMatch(/SSL/);
  dir = mkdtempSync(join(tmpdir(), 'dkv-tls-'));
  writeFileSync(file('server.cnf'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n');
  writeFileSync(file('client.cnf'), 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n');
  makeCa('ca');
  makeCa('rogue-ca');
  makeCert('server', 'ca', 'server.cnf');
  makeCert('client', 'ca', 'client.cnf');
  makeCert('rogue-client', 'rogue-ca', 'client.cnf');
});

afterAll(() => {
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

/** The TLS flags of every node: one server certificate serves clients and peers. */
function tlsArgs(clientCertAuth: boolean): string[] {
  return [
    `--cert-file=${file('server.crt')}`,
    `--key-file=${file('server.key')}`,
    `--trusted-ca-file=${file('ca.crt')}`,
    `--peer-cert-file=${file('server.crt')}`,
    `--peer-key-file=${file('server.key')}`,
    `--peer-trusted-ca-file=${file('ca.crt')}`,
    ...(clientCertAuth ? ['--client-cert-auth', '--peer-client-cert-auth'] : []),
  ];
}

/**
 * etcdctl without blocking the event loop, so that refused clients (each waits out its dial
 * timeout) run side by side. Only refusals use it: they must exit non-zero without the value.
 */
function refusedEtcdctl(endpoints: string, globalArgs: readonly string[], key: string): Promise<{ code: number | null; stdout: string }> {
  const args = [`--endpoints=${endpoints}`, '--dial-timeout=2s', '--command-timeout=3s', ...globalArgs, 'get', key];
  return new Promise((resolve) => {
    execFile('etcdctl', args, { env: { ...process.env, ETCDCTL_API: '3' }, timeout: 30_000 }, (error, stdout) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout });
    });
  });
}

const httpsEndpoints = (cluster: TestCluster) => cluster.nodes.map((n) => n.clientUrl).join(',');

/** Connects with node:tls and reports whether the server's certificate verified against `ca`. */
function tlsProbe(port: number, options: { ca: Buffer; cert?: Buffer; key?: Buffer }): Promise<{ authorized: boolean; error?: string }> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ALPNProtocols: ['h2'], ...options });
    socket.once('secureConnect', () => {
      const authorized = socket.authorized;
      socket.destroy();
      resolve({ authorized });
    });
    socket.once('error', (error) => resolve({ authorized: false, error: error.message }));
  });
}

describe('https client and peer URLs, server authentication only', () => {
  let cluster: TestCluster;
  const cacert = () => [`--cacert=${file('ca.crt')}`];

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3, https: true, args: tlsArgs(false), etcdctlArgs: cacert() });
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it('serves etcdctl --cacert put and get, on host:port and on https:// endpoints', () => {
    const put = etcdctl(cluster.endpoints, ['put', 'tls-key', 'tls-value'], undefined, cacert());
    expect(put.code, put.stderr).toBe(0);
    expect(put.stdout).toBe('OK\n');
    for (let i = 0; i < 3; i++) {
      const get = etcdctl(cluster.endpoint(i), ['get', 'tls-key', '--print-value-only'], undefined, cacert());
      expect(get.stdout, get.stderr).toBe('tls-value\n');
      const serializable = etcdctl(cluster.endpoint(i), ['get', 'tls-key', '--print-value-only', '--consistency=s'], undefined, cacert());
      expect(serializable.stdout, serializable.stderr).toBe('tls-value\n');
    }
    const viaUrls = etcdctl(httpsEndpoints(cluster), ['get', 'tls-key', '--print-value-only'], undefined, cacert());
    expect(viaUrls.stdout, viaUrls.stderr).toBe('tls-value\n');
  });

  it('advertises https URLs in the member list and reports every endpoint healthy', () => {
    const members = etcdctl(cluster.endpoints, ['member', 'list', '-w', 'json'], undefined, cacert());
    expect(members.code, members.stderr).toBe(0);
    const listed = JSON.parse(members.stdout) as { members: Array<{ name: string; peerURLs: string[]; clientURLs: string[] }> };
    for (const member of listed.members) {
      const node = cluster.nodes.find((n) => n.name === member.name)!;
      expect(member.peerURLs).toEqual([node.peerUrl]);
      expect(member.clientURLs).toEqual([node.clientUrl]);
      expect(node.clientUrl.startsWith('https://') && node.peerUrl.startsWith('https://')).toBe(true);
    }
    const health = etcdctl(cluster.endpoints, ['endpoint', 'health'], undefined, cacert());
    expect(health.code, health.stderr).toBe(0);
    expect(`${health.stdout}${health.stderr}`.match(/is healthy/g)?.length).toBe(3);
  });

  it('refuses a client that does not trust the CA, and a plaintext client', async () => {
    const refused = await Promise.all([
      refusedEtcdctl(httpsEndpoints(cluster), [], 'tls-key'),
      refusedEtcdctl(cluster.endpoints, [`--cacert=${file('rogue-ca.crt')}`], 'tls-key'),
    ]);
    for (const r of refused) {
      expect(r.code).not.toBe(0);
      expect(r.stdout).not.toContain('tls-value');
    }

    const plaintext = etcdChannel(cluster.endpoint(0));
    try {
      const error = await plaintext.kv('Range', { key: Buffer.from('tls-key') }, { timeoutMs: 3000 }).then(() => null, (e: grpc.ServiceError) => e);
      expect(error?.code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      plaintext.close();
    }
    const trusting = etcdChannel(cluster.endpoint(1), { credentials: grpc.credentials.createSsl(readFileSync(file('ca.crt'))) });
    try {
      const response = await trusting.kv('Range', { key: Buffer.from('tls-key') });
      expect((response.kvs as Array<{ value: Buffer }>)[0]?.value.toString()).toBe('tls-value');
    } finally {
      trusting.close();
    }
  });

  it('streams watch events over TLS, every one in order, from a follower and the leader alike', async () => {
    const watchers = [0, 1, 2].map((i) => new WatchClient(cluster.endpoint(i), grpc.credentials.createSsl(readFileSync(file('ca.crt')))));
    const writer = etcdChannel(cluster.endpoint(0), { credentials: grpc.credentials.createSsl(readFileSync(file('ca.crt'))) });
    try {
      for (const w of watchers) w.create({ key: 'tls-watch/', rangeEnd: 'tls-watch0' });
      for (const w of watchers) await w.waitFor((rs) => rs.some((r) => r.created === true));
      // Puts in flight together, so each node applies several per pass and writes them at once.
      const puts = 300;
      await Promise.all(Array.from({ length: puts }, (_, n) => writer.kv('Put', { key: Buffer.from(`tls-watch/${n % 7}`), value: Buffer.from(`v${n}`) })));
      for (const w of watchers) {
        await w.waitFor((rs) => w.events(0).length >= puts, 15_000, 'tls watch events');
        const events = w.events(0);
        expect(events.length).toBe(puts);
        for (let i = 1; i < events.length; i++) expect(events[i]!.modRevision).toBe(events[i - 1]!.modRevision + 1);
      }
      // The three nodes delivered the same history.
      expect(watchers[1]!.events(0)).toEqual(watchers[0]!.events(0));
      expect(watchers[2]!.events(0)).toEqual(watchers[0]!.events(0));
    } finally {
      for (const w of watchers) w.close();
      writer.close();
    }
  });

  it('opens the wide receive windows on a TLS client connection too (client-sessions.ts)', async () => {
    const session = http2Connect(`https://127.0.0.1:${cluster.nodes[0]!.clientPort}`, { ca: readFileSync(file('ca.crt')) });
    // A reset fails the wait below with its message, not as an unhandled 'error'.
    session.on('error', () => undefined);
    try {
      await waitUntil(() => session.remoteSettings?.initialWindowSize === clientStreamWindowBytes, 5_000, () => `the stream window the node announced: ${session.remoteSettings?.initialWindowSize}`);
      await waitUntil(() => session.state.remoteWindowSize === clientConnectionWindowBytes, 5_000, () => `the connection window: ${session.state.remoteWindowSize}`);
      expect((session.socket as TLSSocket).authorized).toBe(true);
    } finally {
      session.destroy();
    }
  });

  it('serves TLS with the configured certificate on the peer port too', async () => {
    const probe = await tlsProbe(cluster.nodes[2]!.peerPort, { ca: readFileSync(file('ca.crt')) });
    expect(probe).toEqual({ authorized: true });
    const rogue = await tlsProbe(cluster.nodes[2]!.peerPort, { ca: readFileSync(file('rogue-ca.crt')) });
    expect(rogue.authorized).toBe(false);
  });
});

describe('https with --client-cert-auth and --peer-client-cert-auth', () => {
  let cluster: TestCluster;
  const withCert = () => [`--cacert=${file('ca.crt')}`, `--cert=${file('client.crt')}`, `--key=${file('client.key')}`];

  beforeAll(async () => {
    // The harness's own etcdctl calls authenticate with the node certificate, which also has clientAuth.
    cluster = await TestCluster.start({ nodes: 3, https: true, args: tlsArgs(true), etcdctlArgs: withCert() });
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it('serves a client with a certificate signed by the CA', () => {
    const put = etcdctl(cluster.endpoints, ['put', 'mtls-key', 'mtls-value'], undefined, withCert());
    expect(put.code, put.stderr).toBe(0);
    for (let i = 0; i < 3; i++) {
      const get = etcdctl(cluster.endpoint(i), ['get', 'mtls-key', '--print-value-only'], undefined, withCert());
      expect(get.stdout, get.stderr).toBe('mtls-value\n');
    }
    const viaUrls = etcdctl(httpsEndpoints(cluster), ['get', 'mtls-key', '--print-value-only'], undefined, withCert());
    expect(viaUrls.stdout, viaUrls.stderr).toBe('mtls-value\n');
    const status = etcdctl(cluster.endpoints, ['endpoint', 'status', '-w', 'json'], undefined, withCert());
    expect(status.code, status.stderr).toBe(0);
    const statuses = JSON.parse(status.stdout) as Array<{ Status: { leader: number; header: { member_id: number } } }>;
    expect(statuses.filter((s) => s.Status.leader === s.Status.header.member_id).length).toBe(1);
  });

  it('refuses a client without a certificate, with a certificate of another CA, or without the CA', async () => {
    const refused = await Promise.all([
      refusedEtcdctl(cluster.endpoints, [`--cacert=${file('ca.crt')}`], 'mtls-key'),
      refusedEtcdctl(cluster.endpoints, [`--cacert=${file('ca.crt')}`, `--cert=${file('rogue-client.crt')}`, `--key=${file('rogue-client.key')}`], 'mtls-key'),
      refusedEtcdctl(httpsEndpoints(cluster), [`--cert=${file('client.crt')}`, `--key=${file('client.key')}`], 'mtls-key'),
    ]);
    for (const r of refused) {
      expect(r.code).not.toBe(0);
      expect(r.stdout).not.toContain('mtls-value');
    }

    const ca = readFileSync(file('ca.crt'));
    const anonymous = etcdChannel(cluster.endpoint(0), { credentials: grpc.credentials.createSsl(ca) });
    const certified = etcdChannel(cluster.endpoint(0), {
      credentials: grpc.credentials.createSsl(ca, readFileSync(file('client.key')), readFileSync(file('client.crt'))),
    });
    try {
      const error = await anonymous.kv('Range', { key: Buffer.from('mtls-key') }, { timeoutMs: 3000 }).then(() => null, (e: grpc.ServiceError) => e);
      expect(error?.code).toBe(grpc.status.UNAVAILABLE);
      const response = await certified.kv('Range', { key: Buffer.from('mtls-key') });
      expect((response.kvs as Array<{ value: Buffer }>)[0]?.value.toString()).toBe('mtls-value');
    } finally {
      anonymous.close();
      certified.close();
    }
  });

  it('refuses a peer connection without a client certificate', async () => {
    const ca = readFileSync(file('ca.crt'));
    const client = new grpc.Client(`127.0.0.1:${cluster.nodes[1]!.peerPort}`, grpc.credentials.createSsl(ca));
    try {
      const call = client.makeBidiStreamRequest('/dkv.peer.v1.Peer/Stream', (b: Buffer) => b, (b: Buffer) => b, { deadline: Date.now() + 5000 });
      const outcome = await new Promise<grpc.ServiceError | 'end'>((resolve) => {
        call.on('error', (e: grpc.ServiceError) => resolve(e));
        call.on('end', () => resolve('end'));
        call.on('data', () => undefined);
        call.write(Buffer.from('hello?'));
      });
      expect(outcome).not.toBe('end');
      expect((outcome as grpc.ServiceError).code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      client.close();
    }
    // The peers themselves (which present their certificates) still replicate: a write is seen everywhere.
    const put = etcdctl(cluster.endpoint(2), ['put', 'mtls-after', 'yes'], undefined, withCert());
    expect(put.code, put.stderr).toBe(0);
    for (let i = 0; i < 3; i++) {
      expect(etcdctl(cluster.endpoint(i), ['get', 'mtls-after', '--print-value-only'], undefined, withCert()).stdout).toBe('yes\n');
    }
  });
});
