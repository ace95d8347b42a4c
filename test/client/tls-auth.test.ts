/**
 * DkvClient's `tls` and `auth` options: TLS with a client certificate against a one-node DKV
 * cluster with https client URLs and client certificate auth (certificates from the openssl CLI),
 * and etcd's user/password authentication against Debian's etcd 3.4 with auth enabled.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DkvClient, isDkvError } from '../../src/client/index.js';
import { etcdctl, RealEtcd, TestCluster } from '../server/cluster-harness.js';

let dir = '';
const file = (name: string): string => join(dir, name);
const openssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (isDkvError(error)) return error.code;
    throw error;
  }
  throw new Error('expected a DkvError');
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'dkv-client-tls-'));
  writeFileSync(file('server.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n');
  writeFileSync(file('client.cnf'), 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n');
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=ca');
  for (const name of ['server', 'client']) {
    openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', `${name}.cnf`);
  }
});

afterAll(() => {
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

describe('DkvClient over TLS with a client certificate (DKV)', () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await TestCluster.start({
      nodes: 1,
      https: true,
      args: [`--cert-file=${file('server.crt')}`, `--key-file=${file('server.key')}`, `--trusted-ca-file=${file('ca.crt')}`, `--peer-cert-file=${file('server.crt')}`, `--peer-key-file=${file('server.key')}`, `--peer-trusted-ca-file=${file('ca.crt')}`, '--client-cert-auth'],
      etcdctlArgs: [`--cacert=${file('ca.crt')}`, `--cert=${file('client.crt')}`, `--key=${file('client.key')}`],
    });
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it('works with the CA and a client certificate (as Buffers or strings), and is refused without one', async () => {
    const client = new DkvClient({ servers: [{ address: cluster.endpoint(0) }], tls: { ca: readFileSync(file('ca.crt')), cert: readFileSync(file('client.crt'), 'utf8'), key: readFileSync(file('client.key')) } });
    await client.put('tls/k', 'v');
    expect((await client.get('tls/k'))?.value.toString()).toBe('v');
    client.close();
    const noCert = new DkvClient({ servers: [{ address: cluster.endpoint(0) }], tls: { ca: readFileSync(file('ca.crt')) }, timeoutMs: 1_500, connectTimeoutMs: 500 });
    expect(await codeOf(noCert.get('tls/k'))).toBe('UNAVAILABLE');
    noCert.close();
  });
});

describe('DkvClient with etcd authentication', () => {
  let etcd: RealEtcd;

  beforeAll(async () => {
    etcd = await RealEtcd.start();
    for (const args of [['user', 'add', 'root:rootpw'], ['user', 'add', 'app:apppw'], ['role', 'add', 'app'], ['role', 'grant-permission', 'app', 'readwrite', 'app/', '--prefix=true'], ['user', 'grant-role', 'app', 'app'], ['auth', 'enable']]) {
      const r = etcdctl(etcd.endpoint, args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    }
  }, 60_000);

  afterAll(async () => {
    await etcd?.stop();
  });

  it('authenticates, is held to its permissions, and reports a wrong password as UNAUTHENTICATED', async () => {
    const app = new DkvClient({ servers: [{ address: etcd.endpoint }], auth: { username: 'app', password: 'apppw' } });
    await app.put('app/k', 'v');
    expect((await app.get('app/k'))?.value.toString()).toBe('v');
    expect(await codeOf(app.put('other/k', 'v'))).toBe('PERMISSION_DENIED');
    app.close();
    const wrong = new DkvClient({ servers: [{ address: etcd.endpoint }], auth: { username: 'app', password: 'nope' } });
    expect(await codeOf(wrong.get('app/k'))).toBe('UNAUTHENTICATED');
    wrong.close();
  });
});
