/**
 * `--peer-cert-allowed-cn` and `--peer-cert-allowed-hostname` on real TLS links: a peer whose
 * certificate (signed by the trusted CA) carries another name is refused, counted as
 * `certificate`, whichever side dials; a peer with the allowed name talks.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CertificateRule, PeerTlsOptions } from '../../src/server/peer/index.js';
import { app, nextTurn, startNode, stopAll, waitFor } from './peer-harness.js';

let dir = '';

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

/** A certificate with CN `cn` and the DNS name `dns` (besides 127.0.0.1), for server and client auth, signed by the CA. */
function makeCert(name: string, cn: string, dns: string): void {
  writeFileSync(
    join(dir, `${name}.cnf`),
    `subjectAltName=IP:127.0.0.1,DNS:${dns}\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n`,
  );
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', `${name}.cnf`);
}

function tls(name: string, allowedCertificate: CertificateRule): PeerTlsOptions {
  return {
    cert: readFileSync(join(dir, `${name}.crt`)),
    key: readFileSync(join(dir, `${name}.key`)),
    ca: readFileSync(join(dir, 'ca.crt')),
    clientCertAuth: true,
    allowedCertificate,
  };
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'dkv-peer-cn-'));
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=ca');
  makeCert('member', 'dkv-peer', 'peer.dkv.test');
  makeCert('other', 'someone-else', 'other.dkv.test');
});

afterAll(() => {
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

const cn: CertificateRule = { commonName: 'dkv-peer' };

describe('peer certificate names', () => {
  it('with an allowed CN, an acceptor refuses a dialer whose certificate has another CN; the right CN talks', async () => {
    const three = await startNode({ id: 3, tls: tls('member', cn) });
    three.transport.addPeer(1, 'https://127.0.0.1:1');
    three.transport.addPeer(2, 'https://127.0.0.1:1');
    const stranger = await startNode({ id: 1, tls: tls('other', cn), peers: new Map([[3, `https://${three.address}`]]) });
    const member = await startNode({ id: 2, tls: tls('member', cn), peers: new Map([[3, `https://${three.address}`]]) });
    try {
      // Both sides live (the dialer's once the acceptor's hello came back), so that its send is not dropped.
      await waitFor(() => three.transport.connectedPeers().includes(2) && member.transport.connectedPeers().includes(3), 'the member admitted');
      await waitFor(() => three.refusals.length >= 2, 'the stranger refused twice');
      expect(three.refusals.every((r) => r.reason === 'certificate' && r.remoteAddress === '127.0.0.1')).toBe(true);
      expect(three.logs.some((l) => l.startsWith('warn') && /from 127\.0\.0\.1:\d+ \(certificate\): client certificate refused: certificate CN someone-else is not the allowed CN dkv-peer/.test(l))).toBe(true);
      await waitFor(() => stranger.logs.some((l) => l.includes('peer closed the link: client certificate refused')), 'the stranger told why');
      stranger.transport.send(3, 1, [app(1, 3, 0)]);
      member.transport.send(3, 1, [app(2, 3, 0)]);
      await waitFor(() => three.received.length === 1, 'the member delivers');
      await nextTurn();
      expect(three.received.map((r) => r.from)).toEqual([2]);
    } finally {
      await stopAll([three, stranger, member]);
    }
  });

  it('a dialer refuses an acceptor whose server certificate has another CN, at the handshake', async () => {
    const two = await startNode({ id: 2, tls: tls('other', cn) });
    two.transport.addPeer(1, 'https://127.0.0.1:1');
    const one = await startNode({ id: 1, tls: tls('member', cn), peers: new Map([[2, `https://${two.address}`]]) });
    try {
      await waitFor(() => one.refusals.length >= 2, 'the dialer refusing twice');
      expect(one.refusals.every((r) => r.reason === 'certificate')).toBe(true);
      expect(one.logs.some((l) => l.startsWith('warn') && /\(certificate\): server certificate refused: certificate CN someone-else/.test(l))).toBe(true);
      expect(one.transport.connectedPeers()).toEqual([]);
      expect(two.transport.connectedPeers()).toEqual([]);
    } finally {
      await stopAll([one, two]);
    }
  });

  it('with an allowed hostname, a certificate whose names do not match it is refused; one that does talks', async () => {
    const rule: CertificateRule = { hostname: 'peer.dkv.test' };
    const three = await startNode({ id: 3, tls: tls('member', rule) });
    three.transport.addPeer(1, 'https://127.0.0.1:1');
    three.transport.addPeer(2, 'https://127.0.0.1:1');
    const stranger = await startNode({ id: 1, tls: tls('other', rule), peers: new Map([[3, `https://${three.address}`]]) });
    const member = await startNode({ id: 2, tls: tls('member', rule), peers: new Map([[3, `https://${three.address}`]]) });
    try {
      await waitFor(() => three.transport.connectedPeers().includes(2) && three.refusals.length >= 1, 'member admitted, stranger refused');
      expect(three.refusals.every((r) => r.reason === 'certificate')).toBe(true);
      expect(three.logs.some((l) => /do not match the allowed hostname peer\.dkv\.test/.test(l))).toBe(true);
      expect(three.transport.connectedPeers()).toEqual([2]);
    } finally {
      await stopAll([three, stranger, member]);
    }
  });
});
