/** `dkv server` configuration: flags, environment, YAML file, validation messages, ids, dev layout. */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ConfigError,
  type ServerConfig,
  checkConfigFile,
  devClusterLayout,
  parseServerConfig,
  scryptLog2NOf,
  serverHelp,
  wantsHelp,
} from '../../src/server/config.js';
import { memberIdOf } from '../../src/cluster/index.js';

const tempDir = mkdtempSync(join(tmpdir(), 'dkv-config-'));
afterAll(() => rmSync(tempDir, { recursive: true, force: true }));

let fileCount = 0;
function yamlFile(text: string): string {
  const path = join(tempDir, `config-${++fileCount}.yaml`);
  writeFileSync(path, text);
  return path;
}

function configError(argv: string[], env: Record<string, string> = {}): ConfigError {
  try {
    parseServerConfig(argv, env);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error(`expected a ConfigError for ${argv.join(' ')}`);
}

const hrefs = (urls: ServerConfig['listenClientUrls']): string[] => urls.map((url) => url.href);

const threeNodes = 'n1=http://10.0.0.1:2380,n2=http://10.0.0.2:2380,n3=http://10.0.0.3:2380';
const n1Flags = [
  '--name',
  'n1',
  '--initial-advertise-peer-urls',
  'http://10.0.0.1:2380',
  '--listen-peer-urls',
  'http://10.0.0.1:2380',
  '--initial-cluster',
  threeNodes,
];

describe('--unsafe-stale-reads', () => {
  it('is off by default, and warns when turned on (test only)', () => {
    expect(parseServerConfig([]).unsafeStaleReads).toBe(false);
    const config = parseServerConfig(['--unsafe-stale-reads']);
    expect(config.unsafeStaleReads).toBe(true);
    expect(config.warnings.join('\n')).toMatch(/unsafe-stale-reads.*stale/);
    expect(serverHelp).toContain('--unsafe-stale-reads');
  });
});

describe('--experimental-lease-reads', () => {
  it('is off by default; on, it is warned about; its help states the lease and the clock assumption', () => {
    expect(parseServerConfig([]).experimentalLeaseReads).toBe(false);
    const config = parseServerConfig(['--experimental-lease-reads']);
    expect(config.experimentalLeaseReads).toBe(true);
    expect(config.warnings.join('\n')).toMatch(/--experimental-lease-reads: .*clocks/);
    expect(parseServerConfig([], { DKV_EXPERIMENTAL_LEASE_READS: 'true' }).experimentalLeaseReads).toBe(true);
    expect(serverHelp).toMatch(/--experimental-lease-reads[^]*600 ms[^]*SIGSTOP[^]*caught up[^]*25% fast/);
  });
});

describe('--experimental-quiesce', () => {
  it('is on by default and not listed among the changed settings', () => {
    const config = parseServerConfig([]);
    expect(config.experimentalQuiesce).toBe(true);
    expect(config.changedSettings.join(' ')).not.toContain('quiesce');
    expect(parseServerConfig(['--experimental-quiesce']).experimentalQuiesce).toBe(true);
    expect(parseServerConfig(['--experimental-quiesce=true']).changedSettings).toEqual([]);
  });

  it('=false turns it off, from a flag, a variable or the config file, and is listed as changed', () => {
    const config = parseServerConfig(['--experimental-quiesce=false']);
    expect(config.experimentalQuiesce).toBe(false);
    expect(config.changedSettings).toEqual(['--experimental-quiesce=false (flag)']);
    expect(config.warnings).toEqual([]);
    expect(parseServerConfig(['--experimental-quiesce=0']).experimentalQuiesce).toBe(false);
    expect(parseServerConfig([], { DKV_EXPERIMENTAL_QUIESCE: 'false' }).experimentalQuiesce).toBe(false);
    expect(parseServerConfig(['--config-file', yamlFile('experimental-quiesce: false\n')]).experimentalQuiesce).toBe(false);
  });

  it('refuses a value that is not true or false, naming the flag', () => {
    const error = configError(['--experimental-quiesce=off']);
    expect(error.field).toBe('experimental-quiesce');
    expect(error.message).toBe('--experimental-quiesce: must be true or false, got "off"');
    expect(configError([], { DKV_EXPERIMENTAL_QUIESCE: 'no' }).message).toBe('DKV_EXPERIMENTAL_QUIESCE: must be true or false, got "no"');
  });

  it('is off with --experimental-lease-reads, and given true there it is warned about as ignored', () => {
    expect(parseServerConfig(['--experimental-lease-reads']).experimentalQuiesce).toBe(false);
    const config = parseServerConfig(['--experimental-lease-reads', '--experimental-quiesce=true']);
    expect(config.experimentalQuiesce).toBe(false);
    expect(config.warnings).toContain('--experimental-quiesce: idle shards never quiesce with --experimental-lease-reads; ignored');
    expect(parseServerConfig(['--experimental-lease-reads', '--experimental-quiesce=false']).warnings.join('\n')).not.toContain('--experimental-quiesce');
  });

  it('--help gives its default and says what false does and that lease reads turn it off', () => {
    expect(serverHelp).toMatch(/--experimental-quiesce 'true'\n {6}quiesce idle shards[^\n]*false keeps every group ticking[^\n]*every group of the cluster[^\n]*Always off with --experimental-lease-reads/);
  });
});

describe('--quota-backend-bytes and auto-compaction', () => {
  it('default to etcd\'s 2 GiB quota and no auto-compaction', () => {
    const config = parseServerConfig([]);
    expect(config.quotaBackendBytes).toBe(2 * 1024 ** 3);
    expect(config.autoCompaction).toEqual({ mode: 'periodic', retention: 0 });
    expect(parseServerConfig(['--quota-backend-bytes=0']).quotaBackendBytes).toBe(2 * 1024 ** 3);
    for (const flag of ['--quota-backend-bytes', '--auto-compaction-mode', '--auto-compaction-retention']) expect(serverHelp).toContain(flag);
  });

  it('--snapshot-bytes: off by default, a byte count, listed in --help', () => {
    expect(parseServerConfig([]).snapshotBytes).toBe(0);
    expect(parseServerConfig(['--snapshot-bytes', '33554432']).snapshotBytes).toBe(33_554_432);
    expect(() => parseServerConfig(['--snapshot-bytes', '-1'])).toThrow(/--snapshot-bytes/);
    expect(serverHelp).toContain('--snapshot-bytes');
  });

  it('take a byte count up to 8 GiB', () => {
    expect(parseServerConfig(['--quota-backend-bytes', '16777216']).quotaBackendBytes).toBe(16_777_216);
    expect(() => parseServerConfig(['--quota-backend-bytes', String(9 * 1024 ** 3)])).toThrow(/--quota-backend-bytes: must be between 0 and 8589934592/);
    expect(() => parseServerConfig(['--quota-backend-bytes', '-1'])).toThrow(/--quota-backend-bytes/);
  });

  it('read periodic retention as a duration or hours, revision retention as a count (as etcd)', () => {
    const parse = (mode: string, retention: string) => parseServerConfig([`--auto-compaction-mode=${mode}`, `--auto-compaction-retention=${retention}`]).autoCompaction;
    expect(parse('periodic', '1')).toEqual({ mode: 'periodic', retention: 3_600_000 });
    expect(parse('periodic', '30m')).toEqual({ mode: 'periodic', retention: 1_800_000 });
    expect(parse('periodic', '1h30m')).toEqual({ mode: 'periodic', retention: 5_400_000 });
    expect(parse('periodic', '2s')).toEqual({ mode: 'periodic', retention: 2000 });
    expect(parse('revision', '1000')).toEqual({ mode: 'revision', retention: 1000 });
    expect(() => parse('periodic', '1x')).toThrow(/--auto-compaction-retention: must be a duration/);
    expect(() => parse('revision', '1h')).toThrow(/--auto-compaction-retention: must be a whole number/);
    expect(() => parse('daily', '1')).toThrow(/--auto-compaction-mode: must be "periodic" or "revision"/);
  });
});

describe('defaults', () => {
  it('match etcd\'s, with DKV\'s data dir and timing', () => {
    const config = parseServerConfig([]);
    expect(config).toMatchObject({
      name: 'default',
      dataDir: 'default.dkv',
      initialClusterState: 'new',
      initialClusterToken: 'dkv-cluster',
      tickMs: 100,
      electionTicks: 10,
      heartbeatTicks: 1,
      snapshotCount: 100_000,
      maxRequestBytes: 1_572_864,
      logFile: undefined,
      unsafeStaleReads: false,
      configFile: undefined,
      warnings: [],
    });
    expect(hrefs(config.listenClientUrls)).toEqual(['http://127.0.0.1:2379']);
    expect(hrefs(config.advertiseClientUrls)).toEqual(['http://127.0.0.1:2379']);
    expect(hrefs(config.listenPeerUrls)).toEqual(['http://127.0.0.1:2380']);
    expect(hrefs(config.initialAdvertisePeerUrls)).toEqual(['http://127.0.0.1:2380']);
    expect(config.listenMetricsUrls).toEqual([]);
    expect(config.initialCluster).toEqual([
      { name: 'default', peerUrls: [{ scheme: 'http', host: '127.0.0.1', port: 2380, href: 'http://127.0.0.1:2380' }] },
    ]);
    expect(config.clientTls).toEqual({
      certFile: undefined,
      keyFile: undefined,
      trustedCaFile: undefined,
      clientCertAuth: false,
    });
  });

  it('derive the data dir and initial cluster from --name', () => {
    const config = parseServerConfig(['--name', 'alpha']);
    expect(config.dataDir).toBe('alpha.dkv');
    expect(config.initialCluster.map((m) => m.name)).toEqual(['alpha']);
  });
});

describe('flags', () => {
  it('accepts every flag, in both --flag value and --flag=value forms', () => {
    const config = parseServerConfig([
      '--name=n1',
      '--data-dir',
      '/var/lib/dkv',
      '--listen-client-urls=https://10.0.0.1:2379,unix://dkv.sock',
      '--advertise-client-urls',
      'https://n1.example.com:2379',
      '--listen-peer-urls=https://10.0.0.1:2380',
      '--initial-advertise-peer-urls',
      'https://10.0.0.1:2380',
      '--initial-cluster',
      'n1=https://10.0.0.1:2380,n2=https://10.0.0.2:2380',
      '--initial-cluster-state=existing',
      '--initial-cluster-token',
      'prod-1',
      '--listen-metrics-urls=http://0.0.0.0:2381',
      '--cert-file=/tls/server.crt',
      '--key-file',
      '/tls/server.key',
      '--trusted-ca-file=/tls/ca.crt',
      '--client-cert-auth',
      '--peer-cert-file=/tls/peer.crt',
      '--peer-key-file=/tls/peer.key',
      '--peer-trusted-ca-file=/tls/ca.crt',
      '--peer-client-cert-auth=true',
      '--tick-ms',
      '50',
      '--election-ticks=20',
      '--heartbeat-ticks=2',
      '--snapshot-count=5000',
      '--max-request-bytes',
      '4194304',
      '--log-file=/var/log/dkv.log',
    ]);
    expect(config).toMatchObject({
      name: 'n1',
      dataDir: '/var/lib/dkv',
      initialClusterState: 'existing',
      initialClusterToken: 'prod-1',
      tickMs: 50,
      electionTicks: 20,
      heartbeatTicks: 2,
      snapshotCount: 5000,
      maxRequestBytes: 4_194_304,
      logFile: '/var/log/dkv.log',
      clientTls: {
        certFile: '/tls/server.crt',
        keyFile: '/tls/server.key',
        trustedCaFile: '/tls/ca.crt',
        clientCertAuth: true,
      },
      peerTls: { certFile: '/tls/peer.crt', keyFile: '/tls/peer.key', trustedCaFile: '/tls/ca.crt', clientCertAuth: true },
    });
    expect(config.listenClientUrls).toEqual([
      { scheme: 'https', host: '10.0.0.1', port: 2379, href: 'https://10.0.0.1:2379' },
      { scheme: 'unix', host: 'dkv.sock', port: 0, href: 'unix://dkv.sock' },
    ]);
    expect(hrefs(config.advertiseClientUrls)).toEqual(['https://n1.example.com:2379']);
    expect(hrefs(config.listenMetricsUrls)).toEqual(['http://0.0.0.0:2381']);
    expect(config.initialCluster.map((m) => [m.name, hrefs(m.peerUrls)])).toEqual([
      ['n1', ['https://10.0.0.1:2380']],
      ['n2', ['https://10.0.0.2:2380']],
    ]);
    expect(config.warnings).toEqual([]);
  });

  it('accepts a single dash and explicit false for booleans, as Go flags do', () => {
    const config = parseServerConfig(['-name', 'x', '--client-cert-auth=false']);
    expect(config.name).toBe('x');
    expect(config.clientTls.clientCertAuth).toBe(false);
  });

  it('normalises URLs: case, trailing slash, IPv6 brackets', () => {
    const config = parseServerConfig([
      '--listen-client-urls',
      'HTTP://LOCALHOST:2379/, http://[::1]:2379',
      '--advertise-client-urls=http://localhost:2379',
    ]);
    expect(config.listenClientUrls).toEqual([
      { scheme: 'http', host: 'localhost', port: 2379, href: 'http://localhost:2379' },
      { scheme: 'http', host: '::1', port: 2379, href: 'http://[::1]:2379' },
    ]);
  });

  it('accepts etcd\'s --heartbeat-interval and --election-timeout in milliseconds', () => {
    const config = parseServerConfig(['--heartbeat-interval=200', '--election-timeout=2500']);
    expect(config).toMatchObject({ tickMs: 200, heartbeatTicks: 1, electionTicks: 12 });
  });

  it('lets one member have several peer URLs by repeating its name, as etcd does', () => {
    const config = parseServerConfig([
      '--name=n1',
      '--listen-peer-urls=http://10.0.0.1:2380,http://10.0.1.1:2380',
      '--initial-advertise-peer-urls=http://10.0.1.1:2380,http://10.0.0.1:2380',
      '--initial-cluster=n1=http://10.0.0.1:2380,n1=http://10.0.1.1:2380,n2=http://10.0.0.2:2380',
    ]);
    expect(config.initialCluster.map((m) => [m.name, hrefs(m.peerUrls)])).toEqual([
      ['n1', ['http://10.0.0.1:2380', 'http://10.0.1.1:2380']],
      ['n2', ['http://10.0.0.2:2380']],
    ]);
  });

  it('detects --help', () => {
    expect(wantsHelp(['--name', 'x', '--help'])).toBe(true);
    expect(wantsHelp(['-h'])).toBe(true);
    expect(wantsHelp(['--name', 'x'])).toBe(false);
  });
});

describe('environment variables', () => {
  it('read DKV_<FLAG> where the flag is not given, and warn when a flag shadows one', () => {
    const config = parseServerConfig(['--name', 'from-flag'], {
      DKV_NAME: 'from-env',
      DKV_SNAPSHOT_COUNT: '77',
      DKV_CLIENT_CERT_AUTH: '',
      DKV_NOT_A_SETTING: 'x',
      // Process variables, not settings: no warning.
      DKV_ALLOCATOR: 'jemalloc',
      DKV_DEBUG: '1',
      DKV_FROM_SOURCE: '1',
      HOME: '/root',
    });
    expect(config.name).toBe('from-flag');
    expect(config.snapshotCount).toBe(77);
    expect(config.warnings).toEqual([
      'DKV_NAME is ignored: --name is given on the command line',
      'DKV_NOT_A_SETTING is not a dkv server setting; ignored',
    ]);
  });

  it('name the variable in errors', () => {
    const error = configError([], { DKV_TICK_MS: 'fast' });
    expect(error.field).toBe('tick-ms');
    expect(error.message).toBe('DKV_TICK_MS: must be a whole number, got "fast"');
  });
});

describe('config file', () => {
  const etcdStyle = `# an etcd 3.5 style config file
name: n2
data-dir: /data/n2
wal-dir: ''
snapshot-count: 20000
heartbeat-interval: 100
election-timeout: 1000
quota-backend-bytes: 0
listen-peer-urls: https://10.0.0.2:2380
listen-client-urls: https://10.0.0.2:2379,https://127.0.0.1:2379
advertise-client-urls: https://10.0.0.2:2379
initial-advertise-peer-urls: https://10.0.0.2:2380
initial-cluster: ${threeNodes.replace(/http:/g, 'https:')}
initial-cluster-token: etcd-cluster-1
initial-cluster-state: new
listen-metrics-urls: http://127.0.0.1:2381
max-request-bytes: 2097152
log-level: info
client-transport-security:
  cert-file: /tls/n2.crt
  key-file: /tls/n2.key
  client-cert-auth: true
  trusted-ca-file: /tls/ca.crt
  auto-tls: false
peer-transport-security:
  cert-file: /tls/n2-peer.crt
  key-file: /tls/n2-peer.key
  client-cert-auth: true
  trusted-ca-file: /tls/ca.crt
`;

  it('loads etcd\'s keys, including the transport-security sections', () => {
    const path = yamlFile(etcdStyle);
    const config = parseServerConfig(['--config-file', path]);
    expect(config).toMatchObject({
      name: 'n2',
      dataDir: '/data/n2',
      snapshotCount: 20_000,
      tickMs: 100,
      heartbeatTicks: 1,
      electionTicks: 10,
      initialClusterToken: 'etcd-cluster-1',
      maxRequestBytes: 2_097_152,
      quotaBackendBytes: 2 * 1024 ** 3,
      configFile: path,
      clientTls: { certFile: '/tls/n2.crt', keyFile: '/tls/n2.key', trustedCaFile: '/tls/ca.crt', clientCertAuth: true },
      peerTls: {
        certFile: '/tls/n2-peer.crt',
        keyFile: '/tls/n2-peer.key',
        trustedCaFile: '/tls/ca.crt',
        clientCertAuth: true,
      },
    });
    expect(hrefs(config.listenClientUrls)).toEqual(['https://10.0.0.2:2379', 'https://127.0.0.1:2379']);
    expect(config.initialCluster).toHaveLength(3);
    // quota-backend-bytes and log-level are DKV settings; wal-dir '' and auto-tls false are etcd's defaults.
    expect(config.warnings).toEqual([]);
    expect(config.logLevel).toBe('info');
  });

  it('ignores every other flag and DKV_* variable, as etcd 3.5 does, and says so', () => {
    const path = yamlFile('name: from-file\ntick-ms: 20\nelection-ticks: 10\n');
    const config = parseServerConfig(['--name', 'from-flag', `--config-file=${path}`, '--snapshot-count=3'], {
      DKV_DATA_DIR: '/from/env',
    });
    expect(config.name).toBe('from-file');
    expect(config.dataDir).toBe('from-file.dkv');
    expect(config.snapshotCount).toBe(100_000);
    expect(config.tickMs).toBe(20);
    expect(config.warnings).toEqual([
      'a config file is given, so these settings from flags or DKV_* variables are ignored (as in etcd): ' +
        '--name, --snapshot-count, --data-dir',
    ]);
  });

  it('is found through DKV_CONFIG_FILE too, and accepts lists for URL keys', () => {
    const path = yamlFile(
      'name: n1\nlisten-client-urls: [http://127.0.0.1:2379, http://127.0.0.1:22379]\n' +
        'advertise-client-urls: http://127.0.0.1:2379\n',
    );
    const config = parseServerConfig([], { DKV_CONFIG_FILE: path });
    expect(hrefs(config.listenClientUrls)).toEqual(['http://127.0.0.1:2379', 'http://127.0.0.1:22379']);
  });

  it('treats an empty file as all defaults', () => {
    expect(parseServerConfig(['--config-file', yamlFile('')]).name).toBe('default');
  });

  it('names the file and key in errors', () => {
    const path = yamlFile('name: n1\nlisten-client-urls: htp://x\n');
    const error = configError(['--config-file', path]);
    expect(error.field).toBe('listen-client-urls');
    expect(error.message).toBe(`listen-client-urls (in ${path}): "htp://x" is not an http(s) URL`);

    const tlsPath = yamlFile('client-transport-security:\n  client-cert-auth: "yes"\n');
    expect(configError(['--config-file', tlsPath]).message).toBe(
      `client-transport-security.client-cert-auth (in ${tlsPath}): must be true or false`,
    );
  });

  it('rejects unknown keys, bad YAML, a non-mapping and a missing file', () => {
    const typo = yamlFile('nmae: n1\n');
    expect(configError(['--config-file', typo])).toMatchObject({
      field: 'nmae',
      message: `config file ${typo}: unknown key "nmae"`,
    });
    const bad = yamlFile('name: [unclosed\n');
    expect(configError(['--config-file', bad]).message).toMatch(
      new RegExp(`^--config-file: "${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}" is not valid YAML: `),
    );
    const list = yamlFile('- a\n- b\n');
    expect(configError(['--config-file', list]).message).toBe(
      `--config-file: "${list}" must hold a YAML mapping of etcd's keys`,
    );
    const missing = join(tempDir, 'missing.yaml');
    expect(configError(['--config-file', missing])).toMatchObject({
      field: 'config-file',
      message: `--config-file: cannot read "${missing}": ENOENT`,
    });
  });
});

describe('validation: one clear message naming the field', () => {
  const cases: ReadonlyArray<readonly [string, string[], string, string]> = [
    ['unknown flag', ['--nmae', 'x'], 'nmae', '--nmae: unknown flag (did you mean --name?) (see dkv server --help)'],
    ['unknown flag, nothing close', ['--frobnicate', 'x'], 'frobnicate', '--frobnicate: unknown flag (see dkv server --help)'],
    ['missing value', ['--name'], 'name', '--name: needs a value'],
    ['flag as value', ['--name', '--data-dir', 'x'], 'name', '--name: needs a value'],
    ['repeated flag', ['--name=a', '--name=b'], 'name', '--name: given more than once'],
    ['positional', ['server'], 'argv', 'unexpected argument "server": dkv server takes only flags'],
    ['empty name', ['--name='], 'name', '--name: must not be empty'],
    ['name with =', ['--name=a=b'], 'name', '--name: "a=b" must not contain spaces, "=" or ","'],
    ['empty data dir', ['--data-dir='], 'data-dir', '--data-dir: must not be empty'],
    [
      'bad scheme',
      ['--listen-client-urls', 'htp://x'],
      'listen-client-urls',
      '--listen-client-urls: "htp://x" is not an http(s) URL',
    ],
    [
      'no port',
      ['--listen-peer-urls', 'http://10.0.0.1'],
      'listen-peer-urls',
      '--listen-peer-urls: "http://10.0.0.1" has no port',
    ],
    [
      'port out of range',
      ['--listen-peer-urls', 'http://10.0.0.1:70000'],
      'listen-peer-urls',
      '--listen-peer-urls: "http://10.0.0.1:70000" has port 70000, outside 1..65535',
    ],
    [
      'path',
      ['--advertise-client-urls', 'http://a:2379/v3'],
      'advertise-client-urls',
      '--advertise-client-urls: "http://a:2379/v3" must not have a path',
    ],
    [
      'unix where only http(s) works',
      ['--listen-peer-urls', 'unix://peer.sock'],
      'listen-peer-urls',
      '--listen-peer-urls: "unix://peer.sock" is not an http(s) URL',
    ],
    [
      'empty list item',
      ['--listen-client-urls', 'http://a:1,'],
      'listen-client-urls',
      '--listen-client-urls: has an empty URL in its list',
    ],
    [
      'duplicate URL',
      ['--listen-client-urls', 'http://a:1,http://A:1/', '--advertise-client-urls=http://a:1'],
      'listen-client-urls',
      '--listen-client-urls: "http://a:1" is listed twice',
    ],
    [
      'member without URL',
      ['--name=n1', '--initial-cluster', 'n1=http://127.0.0.1:2380,n2'],
      'initial-cluster',
      '--initial-cluster: member "n2" has no URL',
    ],
    [
      'member with empty URL',
      ['--name=n1', '--initial-cluster', 'n1=http://127.0.0.1:2380,n2='],
      'initial-cluster',
      '--initial-cluster: member "n2" has no URL',
    ],
    [
      'entry without name',
      ['--initial-cluster', '=http://127.0.0.1:2380'],
      'initial-cluster',
      '--initial-cluster: entry "=http://127.0.0.1:2380" has no member name',
    ],
    [
      'bad member URL',
      ['--initial-cluster', 'default=htp://x'],
      'initial-cluster',
      '--initial-cluster: member "default": "htp://x" is not an http(s) URL',
    ],
    [
      'one URL for two members',
      ['--initial-cluster', 'default=http://127.0.0.1:2380,other=http://127.0.0.1:2380'],
      'initial-cluster',
      '--initial-cluster: "http://127.0.0.1:2380" is given for both "default" and "other"',
    ],
    [
      'member listed twice',
      ['--initial-cluster', 'default=http://127.0.0.1:2380,default=http://127.0.0.1:2380'],
      'initial-cluster',
      '--initial-cluster: member "default" lists "http://127.0.0.1:2380" twice',
    ],
    [
      'this member missing',
      ['--name', 'n4', '--initial-cluster', threeNodes],
      'initial-cluster',
      '--initial-cluster: has no member named "n4" (this member\'s --name); it lists n1, n2, n3',
    ],
    [
      'advertise mismatch',
      ['--name', 'n1', '--initial-advertise-peer-urls', 'http://10.0.0.9:2380', '--initial-cluster', threeNodes],
      'initial-advertise-peer-urls',
      '--initial-advertise-peer-urls: http://10.0.0.9:2380 does not match member "n1" in --initial-cluster ' +
        '(http://10.0.0.1:2380)',
    ],
    [
      'default advertise mismatch',
      ['--name', 'n1', '--initial-cluster', threeNodes],
      'initial-advertise-peer-urls',
      '--initial-advertise-peer-urls: http://127.0.0.1:2380 does not match member "n1" in --initial-cluster ' +
        '(http://10.0.0.1:2380)',
    ],
    [
      'wildcard listen without advertise',
      ['--listen-client-urls', 'http://0.0.0.0:2379'],
      'advertise-client-urls',
      '--advertise-client-urls: must be given: --listen-client-urls listens on all interfaces (http://0.0.0.0:2379)',
    ],
    [
      'bad cluster state',
      ['--initial-cluster-state', 'old'],
      'initial-cluster-state',
      '--initial-cluster-state: must be "new" or "existing", got "old"',
    ],
    ['empty token', ['--initial-cluster-token='], 'initial-cluster-token', '--initial-cluster-token: must not be empty'],
    ['tick not a number', ['--tick-ms', 'fast'], 'tick-ms', '--tick-ms: must be a whole number, got "fast"'],
    ['tick zero', ['--tick-ms=0'], 'tick-ms', '--tick-ms: must be between 1 and 10000, got 0'],
    ['tick too large', ['--tick-ms=20000'], 'tick-ms', '--tick-ms: must be between 1 and 10000, got 20000'],
    ['heartbeat zero', ['--heartbeat-ticks=0'], 'heartbeat-ticks', '--heartbeat-ticks: must be between 1 and 1000, got 0'],
    ['election one', ['--election-ticks=1'], 'election-ticks', '--election-ticks: must be between 2 and 100000, got 1'],
    [
      'election too close to heartbeat',
      ['--heartbeat-ticks=3', '--election-ticks=10'],
      'election-ticks',
      '--election-ticks: must be at least 5 times --heartbeat-ticks (15), got 10',
    ],
    [
      'election timeout too long',
      ['--tick-ms=1000', '--election-ticks=60'],
      'election-ticks',
      '--election-ticks: election timeout 60000 ms (election-ticks x tick-ms) is over the 50000 ms maximum',
    ],
    [
      'etcd and DKV timing mixed',
      ['--heartbeat-interval=100', '--tick-ms=100'],
      'heartbeat-interval',
      '--heartbeat-interval: cannot be combined with --tick-ms; use etcd\'s milliseconds or DKV\'s ticks',
    ],
    [
      'etcd election timeout too short',
      ['--heartbeat-interval=100', '--election-timeout=400'],
      'election-timeout',
      '--election-timeout: must be at least 5 times --heartbeat-interval (500 ms), got 400',
    ],
    ['snapshot count zero', ['--snapshot-count=0'], 'snapshot-count', '--snapshot-count: must be between 1 and 1000000000, got 0'],
    [
      'request size too large',
      ['--max-request-bytes=999999999'],
      'max-request-bytes',
      '--max-request-bytes: must be between 1 and 67108864, got 999999999',
    ],
    ['empty log file', ['--log-file='], 'log-file', '--log-file: must not be empty'],
    ['bad boolean', ['--client-cert-auth=yes'], 'client-cert-auth', '--client-cert-auth: must be true or false, got "yes"'],
    ['cert without key', ['--cert-file=/c'], 'key-file', '--key-file: must be given with --cert-file'],
    ['key without cert', ['--peer-key-file=/k'], 'peer-cert-file', '--peer-cert-file: must be given with --peer-key-file'],
    [
      'client cert auth without CA',
      ['--client-cert-auth'],
      'trusted-ca-file',
      '--trusted-ca-file: must be given with --client-cert-auth',
    ],
    [
      'https client URL without cert',
      ['--listen-client-urls=https://127.0.0.1:2379'],
      'listen-client-urls',
      '--listen-client-urls: "https://127.0.0.1:2379" needs --cert-file and --key-file',
    ],
    [
      'https peer URL without peer cert',
      ['--listen-peer-urls=https://127.0.0.1:2380', '--cert-file=/c', '--key-file=/k'],
      'listen-peer-urls',
      '--listen-peer-urls: "https://127.0.0.1:2380" needs --peer-cert-file and --peer-key-file',
    ],
  ];

  for (const [title, argv, field, message] of cases) {
    it(title, () => {
      const error = configError(argv);
      expect(error).toBeInstanceOf(ConfigError);
      expect({ field: error.field, message: error.message }).toEqual({ field, message });
    });
  }

  it('warns about TLS files that no https URL uses', () => {
    const config = parseServerConfig(['--cert-file=/c', '--key-file=/k']);
    expect(config.warnings).toEqual(['--cert-file is given but no URL it serves is https; TLS is not used there']);
  });

  it('accepts a valid three-member configuration', () => {
    const config = parseServerConfig(n1Flags);
    expect(config.initialCluster.map((m) => m.name)).toEqual(['n1', 'n2', 'n3']);
  });
});

describe('help', () => {
  it('lists every flag with its default', () => {
    const flags = [
      ['name', 'default'],
      ['data-dir', '${name}.dkv'],
      ['listen-client-urls', 'http://127.0.0.1:2379'],
      ['advertise-client-urls', '${listen-client-urls}'],
      ['listen-peer-urls', 'http://127.0.0.1:2380'],
      ['initial-advertise-peer-urls', '${listen-peer-urls}'],
      ['initial-cluster', '${name}=${initial-advertise-peer-urls}'],
      ['initial-cluster-state', 'new'],
      ['initial-cluster-token', 'dkv-cluster'],
      ['listen-metrics-urls', ''],
      ['config-file', ''],
      ['cert-file', ''],
      ['key-file', ''],
      ['trusted-ca-file', ''],
      ['client-cert-auth', 'false'],
      ['peer-cert-file', ''],
      ['peer-key-file', ''],
      ['peer-trusted-ca-file', ''],
      ['peer-client-cert-auth', 'false'],
      ['tick-ms', '100'],
      ['election-ticks', '10'],
      ['heartbeat-ticks', '1'],
      ['snapshot-count', '100000'],
      ['max-request-bytes', '1572864'],
      ['log-file', ''],
    ];
    for (const [flag, value] of flags) expect(serverHelp).toContain(`  --${flag} '${value}'\n`);
    expect(serverHelp).toMatch(/config file is given every other flag and DKV_\*\/ETCD_\* variable is ignored/);
  });
});

describe('ids', () => {
  it('follow a configuration: each initial member gets the id of its peer URLs and the token', () => {
    const config = parseServerConfig(n1Flags);
    const ids = config.initialCluster.map((m) => memberIdOf(m.peerUrls, config.initialClusterToken));
    expect(ids[0]).toBe(memberIdOf(['http://10.0.0.1:2380'], 'dkv-cluster'));
    expect(new Set(ids).size).toBe(3);
  });
});

describe('dev cluster layout', () => {
  it('places nodes 10 ports apart on loopback, with the matching initial cluster', () => {
    const layout = devClusterLayout({ nodes: 3, basePort: 2379, dataDir: '/tmp/dev/' });
    expect(layout.initialCluster).toBe(
      'dkv1=http://127.0.0.1:2380,dkv2=http://127.0.0.1:2390,dkv3=http://127.0.0.1:2400',
    );
    expect(layout.nodes.map(({ args: _args, ...node }) => node)).toEqual([
      {
        name: 'dkv1',
        clientPort: 2379,
        peerPort: 2380,
        metricsPort: 2381,
        clientUrl: 'http://127.0.0.1:2379',
        peerUrl: 'http://127.0.0.1:2380',
        metricsUrl: 'http://127.0.0.1:2381',
        dataDir: '/tmp/dev/dkv1',
        logFile: '/tmp/dev/dkv1.log',
      },
      {
        name: 'dkv2',
        clientPort: 2389,
        peerPort: 2390,
        metricsPort: 2391,
        clientUrl: 'http://127.0.0.1:2389',
        peerUrl: 'http://127.0.0.1:2390',
        metricsUrl: 'http://127.0.0.1:2391',
        dataDir: '/tmp/dev/dkv2',
        logFile: '/tmp/dev/dkv2.log',
      },
      {
        name: 'dkv3',
        clientPort: 2399,
        peerPort: 2400,
        metricsPort: 2401,
        clientUrl: 'http://127.0.0.1:2399',
        peerUrl: 'http://127.0.0.1:2400',
        metricsUrl: 'http://127.0.0.1:2401',
        dataDir: '/tmp/dev/dkv3',
        logFile: '/tmp/dev/dkv3.log',
      },
    ]);
  });

  it('gives each node server arguments that parse back to its layout', () => {
    const layout = devClusterLayout({ nodes: 3, basePort: 32379, dataDir: 'dev' });
    for (const node of layout.nodes) {
      const config = parseServerConfig([...node.args]);
      expect(config.name).toBe(node.name);
      expect(config.dataDir).toBe(`dev/${node.name}`);
      expect(config.logFile).toBe(`dev/${node.name}.log`);
      expect(hrefs(config.listenClientUrls)).toEqual([node.clientUrl]);
      expect(hrefs(config.listenPeerUrls)).toEqual([node.peerUrl]);
      expect(hrefs(config.listenMetricsUrls)).toEqual([node.metricsUrl]);
      expect(config.initialCluster.map((m) => m.name)).toEqual(['dkv1', 'dkv2', 'dkv3']);
      expect(config.warnings).toEqual([]);
    }
  });

  it('rejects impossible layouts', () => {
    expect(() => devClusterLayout({ nodes: 0, basePort: 2379, dataDir: 'd' })).toThrow(/--nodes/);
    expect(() => devClusterLayout({ nodes: 3, basePort: 65_530, dataDir: 'd' })).toThrow(/--base-port/);
    expect(() => devClusterLayout({ nodes: 1, basePort: 2379, dataDir: '' })).toThrow(/--data-dir/);
  });
});

describe('etcd server flags DKV does not use', () => {
  it('are accepted, validated by type, and warned about once each with the reason', () => {
    const config = parseServerConfig([
      '--enable-v2=true',
      '--auto-tls',
      '--grpc-keepalive-interval=30s',
      '--max-snapshots',
      '3',
      '--metrics=extensive',
      '--wal-dir=/var/lib/etcd/wal',
    ]);
    expect(config.warnings).toEqual([
      '--wal-dir has no effect in DKV (the Raft log lives in <data-dir>/raft, there is no separate WAL directory)',
      '--max-snapshots has no effect in DKV (each shard keeps its latest snapshot only, in the log store)',
      '--grpc-keepalive-interval has no effect in DKV (the gRPC server keeps grpc-js\'s keepalive settings)',
      '--enable-v2 has no effect in DKV (DKV serves the v3 API only)',
      '--auto-tls has no effect in DKV (DKV does not generate certificates; give the cert and key files)',
      '--metrics has no effect in DKV (DKV exports one metric set on --listen-metrics-urls)',
    ]);
  });

  it('holding etcd\'s default are accepted without a warning', () => {
    expect(parseServerConfig(['--enable-v2=false', '--max-txn-ops=128', '--grpc-keepalive-timeout=20s']).warnings).toEqual([]);
  });

  it('with a value of the wrong type are refused, naming the flag', () => {
    expect(configError(['--enable-v2=maybe']).message).toBe('--enable-v2: must be true or false, got "maybe"');
    expect(configError(['--max-wals=many']).message).toBe('--max-wals: must be a whole number, got "many"');
    expect(configError(['--grpc-keepalive-time=5s']).message).toBe(
      '--grpc-keepalive-time: unknown flag (did you mean --grpc-keepalive-timeout?) (see dkv server --help)',
    );
    expect(configError(['--grpc-keepalive-min-time=soon']).message).toBe(
      '--grpc-keepalive-min-time: must be a duration such as 5s, 100ms or 2h, got "soon"',
    );
  });

  it('cover every flag of etcd 3.4\'s --help', () => {
    // etcd 3.4.23's `etcd --help` flags, one a line as it prints them.
    const etcd34 = `name data-dir wal-dir snapshot-count heartbeat-interval election-timeout initial-election-tick-advance
      listen-peer-urls listen-client-urls max-snapshots max-wals quota-backend-bytes backend-batch-interval
      backend-batch-limit max-txn-ops max-request-bytes max-concurrent-streams grpc-keepalive-min-time grpc-keepalive-interval
      grpc-keepalive-timeout initial-advertise-peer-urls initial-cluster initial-cluster-state initial-cluster-token
      advertise-client-urls discovery discovery-fallback discovery-proxy discovery-srv discovery-srv-name strict-reconfig-check
      pre-vote auto-compaction-retention auto-compaction-mode enable-v2 cert-file key-file client-cert-auth client-crl-file
      client-cert-allowed-hostname trusted-ca-file auto-tls peer-cert-file peer-key-file peer-client-cert-auth peer-trusted-ca-file
      peer-cert-allowed-cn peer-cert-allowed-hostname peer-auto-tls peer-crl-file cipher-suites cors host-whitelist auth-token
      bcrypt-cost auth-token-ttl enable-pprof metrics listen-metrics-urls logger log-outputs log-level proxy proxy-failure-wait
      proxy-refresh-interval proxy-dial-timeout proxy-write-timeout proxy-read-timeout experimental-initial-corrupt-check
      experimental-corrupt-check-time experimental-enable-v2v3 experimental-backend-bbolt-freelist-type
      experimental-enable-lease-checkpoint experimental-compaction-batch-limit experimental-peer-skip-client-san-verification
      experimental-watch-progress-notify-interval experimental-warning-apply-duration force-new-cluster debug log-package-levels`;
    const missing = etcd34
      .split(/\s+/)
      .filter((flag) => flag !== '')
      .filter((flag) => {
        try {
          parseServerConfig([`--${flag}=x`]);
        } catch (error) {
          return error instanceof ConfigError && error.message.includes('unknown flag');
        }
        return false;
      });
    expect(missing).toEqual([]);
    expect(serverHelp).toContain('etcd flags accepted for compatibility, no effect in DKV:');
    expect(serverHelp).toMatch(/--enable-v2 'false'\n\s+DKV serves the v3 API only\./);
  });

  it('are read from etcd\'s config file keys, TLS sections included', () => {
    const path = yamlFile('enable-v2: true\nclient-transport-security:\n  auto-tls: true\n');
    expect(parseServerConfig(['--config-file', path]).warnings).toEqual([
      `enable-v2 (in ${path}) has no effect in DKV (DKV serves the v3 API only)`,
      `client-transport-security.auto-tls (in ${path}) has no effect in DKV (DKV does not generate certificates; give the cert and key files)`,
    ]);
  });
});

describe('ETCD_<FLAG> environment variables', () => {
  it('work like DKV_<FLAG>; DKV_ wins when both are set, and that is logged', () => {
    const config = parseServerConfig([], { ETCD_NAME: 'etcd-name', ETCD_SNAPSHOT_COUNT: '55', DKV_SNAPSHOT_COUNT: '66', ETCD_ENABLE_V2: 'true' });
    expect(config.name).toBe('etcd-name');
    expect(config.snapshotCount).toBe(66);
    expect(config.warnings).toEqual([
      'ETCD_SNAPSHOT_COUNT is ignored: DKV_SNAPSHOT_COUNT is also set and wins',
      'ETCD_ENABLE_V2 has no effect in DKV (DKV serves the v3 API only)',
    ]);
  });

  it('name the variable in errors, and unknown ETCD_ variables are only warned about', () => {
    expect(configError([], { ETCD_HEARTBEAT_INTERVAL: 'fast' }).message).toBe('ETCD_HEARTBEAT_INTERVAL: must be a whole number, got "fast"');
    expect(parseServerConfig([], { ETCD_UNSUPPORTED_ARCH: 'arm' }).warnings).toEqual([
      'ETCD_UNSUPPORTED_ARCH is not an etcd server setting DKV knows; ignored',
    ]);
  });
});

describe('logging flags', () => {
  it('default to info on stderr; --log-level, --log-outputs, --logger, --debug and --log-file set them', () => {
    expect(parseServerConfig([])).toMatchObject({ logLevel: 'info', logOutputs: ['stderr'] });
    expect(parseServerConfig(['--log-level=warn', '--log-outputs=default,stdout,/tmp/x.log', '--logger=zap'])).toMatchObject({
      logLevel: 'warn',
      logOutputs: ['stderr', 'stdout', '/tmp/x.log'],
    });
    expect(parseServerConfig(['--debug']).logLevel).toBe('debug');
    expect(parseServerConfig(['--log-file=/tmp/y.log']).logOutputs).toEqual(['/tmp/y.log']);
  });

  it('are read from etcd\'s config file keys (log-outputs as a YAML list)', () => {
    const path = yamlFile('log-level: debug\nlogger: zap\nlog-outputs: [stderr, /var/log/dkv.log]\n');
    expect(parseServerConfig(['--config-file', path])).toMatchObject({ logLevel: 'debug', logOutputs: ['stderr', '/var/log/dkv.log'], warnings: [] });
  });

  it('refuse bad values', () => {
    expect(configError(['--log-level=loud']).message).toBe('--log-level: must be one of debug, info, warn, error, got "loud"');
    expect(configError(['--logger=glog']).message).toBe('--logger: must be "zap" or "capnslog", got "glog"');
    expect(configError(['--log-file=/a', '--log-outputs=/b']).message).toBe(
      '--log-outputs: cannot be combined with --log-file; give the file in --log-outputs',
    );
  });
});

describe('authentication flags', () => {
  const keys = generateKeyPairSync('ed25519', {
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const publicPath = join(tempDir, 'jwt.pub');
  const privatePath = join(tempDir, 'jwt.priv');
  writeFileSync(publicPath, keys.publicKey);
  writeFileSync(privatePath, keys.privateKey);
  const jwtText = `jwt,pub-key=${publicPath},priv-key=${privatePath},sign-method=EdDSA,ttl=10m`;

  it('default to etcd\'s: simple tokens living 300 s, bcrypt cost 10 (scrypt N = 2^14); no warning', () => {
    const config = parseServerConfig([]);
    expect(config).toMatchObject({ authToken: { kind: 'simple' }, authTokenTtlSeconds: 300, bcryptCost: 10, scryptLog2N: 14, warnings: [] });
    expect(parseServerConfig(['--auth-token=simple', '--auth-token-ttl=300', '--bcrypt-cost=10']).warnings).toEqual([]);
  });

  it('--auth-token jwt,… loads the keys at config load', () => {
    const config = parseServerConfig([`--auth-token=${jwtText}`]);
    expect(config.authToken).toMatchObject({ kind: 'jwt', signMethod: 'EdDSA', ttlMs: 600_000 });
    if (config.authToken.kind !== 'jwt') throw new Error('expected jwt');
    expect(config.authToken.publicKey.asymmetricKeyType).toBe('ed25519');
    expect(config.authToken.privateKey?.type).toBe('private');
    expect(config.warnings).toEqual([]);
    expect(config.changedSettings).toContain(`--auth-token=${jwtText} (flag)`);
  });

  it('--auth-token errors name the flag, then the option', () => {
    const missing = join(tempDir, 'no-such.pem');
    expect(configError([`--auth-token=jwt,sign-method=EdDSA,pub-key=${missing}`])).toMatchObject({
      field: 'auth-token',
      message: `--auth-token: pub-key: cannot read "${missing}": ENOENT`,
    });
    expect(configError(['--auth-token=jwt,sign-method=RS256']).message).toMatch(/^--auth-token: pub-key: must be given for RS256/);
    expect(configError([`--auth-token=jwt,sign-method=ES256,priv-key=${privatePath}`]).message).toMatch(
      /^--auth-token: priv-key: ES256 needs an EC key on curve prime256v1, got ed25519$/,
    );
    expect(configError(['--auth-token=jwt,sign-method=EdDSA,pubkey=x']).message).toMatch(/^--auth-token: pubkey: unknown option/);
    expect(configError(['--auth-token=tls']).message).toMatch(/^--auth-token: must be "simple" or "jwt,.*got "tls"$/);
    expect(configError(['--auth-token=']).message).toBe('--auth-token: must not be empty');
    expect(configError([], { ETCD_AUTH_TOKEN: 'jwt,sign-method=XX' }).message).toMatch(/^ETCD_AUTH_TOKEN: sign-method: must be one of/);
  });

  it('--auth-token-ttl is a positive whole number of seconds, at most a week', () => {
    expect(parseServerConfig(['--auth-token-ttl', '60']).authTokenTtlSeconds).toBe(60);
    expect(parseServerConfig([], { DKV_AUTH_TOKEN_TTL: '3600' }).authTokenTtlSeconds).toBe(3600);
    expect(configError(['--auth-token-ttl=0']).message).toBe('--auth-token-ttl: must be between 1 and 604800, got 0');
    expect(configError(['--auth-token-ttl=5m']).message).toBe('--auth-token-ttl: must be a whole number, got "5m"');
  });

  it('--bcrypt-cost sets scrypt\'s N = 2^(cost + 4) within 2^10..2^16; out of bcrypt\'s 4..31 it is warned about, as etcd does', () => {
    expect(parseServerConfig(['--bcrypt-cost=12'])).toMatchObject({ bcryptCost: 12, scryptLog2N: 16 });
    expect(parseServerConfig(['--bcrypt-cost=4'])).toMatchObject({ bcryptCost: 4, scryptLog2N: 10 });
    expect([4, 5, 6, 7, 10, 11, 12, 13, 31].map(scryptLog2NOf)).toEqual([10, 10, 10, 11, 14, 15, 16, 16, 16]);
    const config = parseServerConfig(['--bcrypt-cost=3']);
    expect(config).toMatchObject({ bcryptCost: 10, scryptLog2N: 14 });
    expect(config.warnings).toEqual(['--bcrypt-cost: 3 is outside 4..31; the default 10 is used (as etcd does)']);
    expect(configError(['--bcrypt-cost=high']).message).toBe('--bcrypt-cost: must be a whole number, got "high"');
  });

  it('are read from etcd\'s config file keys, and dkv config check reports a bad one', () => {
    const path = yamlFile(`auth-token: ${jwtText}\nauth-token-ttl: 120\nbcrypt-cost: 11\n`);
    const config = parseServerConfig(['--config-file', path]);
    expect(config).toMatchObject({ authToken: { kind: 'jwt', signMethod: 'EdDSA' }, authTokenTtlSeconds: 120, bcryptCost: 11, scryptLog2N: 15, warnings: [] });
    const bad = yamlFile('auth-token: jwt,sign-method=HS256\nauth-token-ttl: -1\n');
    const check = checkConfigFile(bad);
    expect(check.errors.map((error) => error.message)).toEqual([
      `auth-token (in ${bad}): priv-key: must be given for HS256: the file holding the shared secret`,
      `auth-token-ttl (in ${bad}): must be a whole number, got "-1"`,
    ]);
  });

  it('are listed in --help with etcd\'s defaults and no longer as without effect', () => {
    expect(serverHelp).toContain("  --auth-token 'simple'\n");
    expect(serverHelp).toContain("  --auth-token-ttl '300'\n");
    expect(serverHelp).toContain("  --bcrypt-cost '10'\n");
    expect(serverHelp).toMatch(/--bcrypt-cost '10'\n\s+cost of password hashing\. DKV uses scrypt, with N = 2\^\(bcrypt-cost \+ 4\) held within 2\^10\.\.2\^16/);
    const noEffect = serverHelp.slice(serverHelp.indexOf('etcd flags accepted for compatibility, no effect in DKV:'));
    expect(noEffect).not.toMatch(/auth-token|bcrypt-cost/);
  });
});
