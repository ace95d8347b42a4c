import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as net from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PeerTlsOptions } from '../../src/server/peer/index.js';
import { app, nextTurn, startNode, stopAll, waitFor, type TestNode } from './peer-harness.js';

let dir = '';

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

function makeCa(name: string): void {
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '1', '-subj', `/CN=${name}`);
}

/** A node certificate for 127.0.0.1, good for both server and client auth, signed by `ca`. */
function makeNodeCert(name: string, ca: string): PeerTlsOptions {
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial',
    '-out', `${name}.crt`, '-days', '1', '-extfile', 'ext.cnf');
  return {
    cert: readFileSync(join(dir, `${name}.crt`)),
    key: readFileSync(join(dir, `${name}.key`)),
    ca: readFileSync(join(dir, `${ca}.crt`)),
    clientCertAuth: true,
  };
}

const certs = new Map<string, PeerTlsOptions>();

beforeAll(() => {
  expect(execFileSync('openssl', ['version']).toString()).toMatch(/SSL/);
  dir = mkdtempSync(join(tmpdir(), 'dkv-peer-tls-'));
  writeFileSync(
    join(dir, 'ext.cnf'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n',
  );
  makeCa('ca');
  makeCa('rogue-ca');
  certs.set('node2', makeNodeCert('node2', 'ca'));
  certs.set('node3', makeNodeCert('node3', 'ca'));
  certs.set('rogue', makeNodeCert('rogue', 'rogue-ca'));
});

afterAll(() => {
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

function tls(name: string): PeerTlsOptions {
  const options = certs.get(name);
  if (options === undefined) throw new Error(`no certificate ${name}`);
  return options;
}

describe('peer transport over TLS', () => {
  it('two members with client-cert auth talk; a peer without the CA cannot', async () => {
    const three = await startNode({ id: 3, tls: tls('node3') });
    const two = await startNode({ id: 2, tls: tls('node2'), peers: new Map([[3, `https://${three.address}`]]) });
    // The rogue has its own CA: it trusts nothing of ours and we trust nothing of its.
    const rogue = await startNode({ id: 1, tls: tls('rogue'), peers: new Map([[3, three.address]]) });
    // A member that has a valid-looking configuration but no CA and no client certificate trust.
    const noCa = await startNode({ id: 4, tls: { cert: tls('rogue').cert, key: tls('rogue').key }, peers: new Map([[3, three.address]]) });
    three.transport.addPeer(1, rogue.address);
    three.transport.addPeer(2, two.address);
    // Member 4 dials nobody (3 < 4 so 3 would dial it); let 3 dial 4 and fail the other way round.
    three.transport.addPeer(4, noCa.address);
    const nodes: TestNode[] = [two, three, rogue, noCa];
    try {
      await waitFor(() => two.transport.connectedPeers().length === 1 && three.transport.connectedPeers().length === 1, 'TLS mesh');
      two.transport.send(3, 1, [app(2, 3, 0)]);
      three.transport.send(2, 1, [app(3, 2, 1)]);
      await waitFor(() => two.received.length === 1 && three.received.length === 1, 'TLS delivery');

      // Give the rogue several dial attempts.
      await waitFor(() => rogue.transport.stats().reconnects >= 3, 'rogue retries');
      expect(rogue.transport.connectedPeers()).toEqual([]);
      expect(noCa.transport.connectedPeers()).toEqual([]);
      expect(three.transport.connectedPeers()).toEqual([2]);
      rogue.transport.send(3, 1, [app(1, 3, 7)]);
      await nextTurn();
      expect(rogue.unreachable).toEqual([{ peer: 3, shards: [1] }]);
      expect(three.received.map((r) => r.from)).toEqual([2]);
    } finally {
      await stopAll(nodes);
    }
  });

  it('stop() does not wait for a client that never finishes its TLS handshake', async () => {
    const three = await startNode({ id: 3, tls: tls('node3') });
    // A raw TCP client that connects and sends nothing (Node's default handshake timeout is 120 s).
    const socket = net.connect(three.transport.boundPort, '127.0.0.1');
    try {
      await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
      const started = performance.now();
      await three.transport.stop();
      expect(performance.now() - started).toBeLessThan(1000);
    } finally {
      socket.destroy();
      await stopAll([three]);
    }
  });
});
