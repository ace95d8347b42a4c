/** `--peer-cert-allowed-cn` and `--peer-cert-allowed-hostname`: flags, YAML keys (etcd's), exclusion, warnings. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, parseServerConfig } from '../../src/server/config.js';

const tempDir = mkdtempSync(join(tmpdir(), 'dkv-peer-cert-flags-'));
afterAll(() => rmSync(tempDir, { recursive: true, force: true }));

const tlsPeer = [
  '--name=n1',
  '--listen-peer-urls=https://127.0.0.1:2380',
  '--initial-advertise-peer-urls=https://127.0.0.1:2380',
  '--initial-cluster=n1=https://127.0.0.1:2380',
  '--peer-cert-file=/tls/peer.crt',
  '--peer-key-file=/tls/peer.key',
  '--peer-trusted-ca-file=/tls/ca.crt',
  '--peer-client-cert-auth',
];

describe('peer certificate name flags', () => {
  it('are read from flags and from peer-transport-security.allowed-cn / allowed-hostname', () => {
    const cn = parseServerConfig([...tlsPeer, '--peer-cert-allowed-cn=dkv-peer']);
    expect(cn.peerTls).toMatchObject({ allowedCn: 'dkv-peer', allowedHostname: undefined });
    expect(cn.warnings.filter((w) => w.includes('allowed'))).toEqual([]);
    const path = join(tempDir, 'etcd.yaml');
    writeFileSync(path, 'peer-transport-security:\n  allowed-hostname: peers.example\n');
    expect(parseServerConfig([...tlsPeer, '--config-file', path]).peerTls).toMatchObject({ allowedHostname: 'peers.example', allowedCn: undefined });
    // etcd's default, spelt out in a config file, is no rule.
    writeFileSync(path, "peer-transport-security:\n  allowed-cn: ''\n");
    expect(parseServerConfig([...tlsPeer, '--config-file', path]).peerTls.allowedCn).toBeUndefined();
    expect(parseServerConfig([]).peerTls.allowedCn).toBeUndefined();
  });

  it('refuses both at once, as etcd', () => {
    let error: unknown;
    try {
      parseServerConfig([...tlsPeer, '--peer-cert-allowed-cn=a', '--peer-cert-allowed-hostname=b']);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toMatch(/peer-cert-allowed-hostname.*cannot be given with --peer-cert-allowed-cn/);
  });

  it('are no longer flags without effect, and warn where they check less than asked', () => {
    const withoutAuth = parseServerConfig([...tlsPeer.filter((flag) => flag !== '--peer-client-cert-auth'), '--peer-cert-allowed-cn=dkv-peer']);
    expect(withoutAuth.warnings.some((w) => w.includes('without --peer-client-cert-auth'))).toBe(true);
    expect(withoutAuth.warnings.some((w) => w.includes('no effect') && w.includes('peer-cert-allowed-cn'))).toBe(false);
    const plain = parseServerConfig(['--peer-cert-allowed-hostname=peers.example']);
    expect(plain.warnings.some((w) => w.includes('--peer-cert-allowed-hostname has no effect: the peer URLs are not https'))).toBe(true);
  });
});
