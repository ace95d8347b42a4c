/**
 * Auth with TLS client certificates (`--client-cert-auth`), as etcd: a request with no token is
 * made as the user its verified certificate's CN names; a token, when sent, wins. Certificates
 * from the openssl CLI; the real etcdctl drives a 1-node https cluster.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, etcdctl } from './cluster-harness.js';

let dir = '';
const file = (name: string): string => join(dir, name);
const openssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });

/** A certificate for CN `name`, signed by the test CA. */
function makeCert(name: string, extFile: string): void {
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', extFile);
}

let cluster: TestCluster;
const as = (cn: string): string[] => [`--cacert=${file('ca.crt')}`, `--cert=${file(`${cn}.crt`)}`, `--key=${file(`${cn}.key`)}`];
const run = (cn: string, args: string[], extra: string[] = []) => etcdctl(cluster.endpoints, args, undefined, [...as(cn), ...extra]);
const errorOf = (r: { stderr: string }): string => r.stderr.split('\n').find((line) => line.startsWith('Error:')) ?? '';

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dkv-auth-tls-'));
  writeFileSync(file('server.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n');
  writeFileSync(file('client.cnf'), 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n');
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=ca');
  makeCert('server', 'server.cnf');
  for (const cn of ['root', 'alice', 'mallory']) makeCert(cn, 'client.cnf');
  const tls = [`--cert-file=${file('server.crt')}`, `--key-file=${file('server.key')}`, `--trusted-ca-file=${file('ca.crt')}`, '--client-cert-auth'];
  const peerTls = [`--peer-cert-file=${file('server.crt')}`, `--peer-key-file=${file('server.key')}`, `--peer-trusted-ca-file=${file('ca.crt')}`];
  cluster = await TestCluster.start({ nodes: 1, https: true, args: [...tls, ...peerTls], etcdctlArgs: as('root') });
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

describe('auth with client certificates', () => {
  it("makes a request without a token as its certificate's CN", () => {
    for (const args of [
      ['user', 'add', 'root', '--new-user-password=rootpw'],
      ['user', 'grant-role', 'root', 'root'],
      ['user', 'add', 'alice', '--new-user-password=alicepw'],
      ['role', 'add', 'app'],
      ['role', 'grant-permission', 'app', 'readwrite', '/app/', '--prefix=true'],
      ['user', 'grant-role', 'alice', 'app'],
      ['auth', 'enable'],
    ]) {
      const r = run('root', args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    }
    // root's certificate is root: admin calls work with no password at all.
    expect(run('root', ['user', 'list']).stdout).toBe('alice\nroot\n');
    expect(run('alice', ['put', '/app/x', '1']).code).toBe(0);
    expect(run('alice', ['get', '/app/x', '--print-value-only']).stdout).toBe('1\n');
    expect(errorOf(run('alice', ['put', '/other', '1']))).toBe('Error: etcdserver: permission denied');
    expect(errorOf(run('alice', ['user', 'list']))).toBe('Error: etcdserver: permission denied');
    // A CN that names no user may do nothing.
    expect(errorOf(run('mallory', ['get', '/app/x']))).toBe('Error: etcdserver: permission denied');
    // A token wins over the certificate: alice's certificate, root's password.
    expect(run('alice', ['user', 'list'], ['--user=root:rootpw']).stdout).toBe('alice\nroot\n');
  });
});
