/**
 * What `create` writes, in-process (no server is started): every template gives a config the
 * server's parser accepts, instance-owned keys win over a template file, names and the layout;
 * the pure helpers (stale pid detection, log tails, the server's environment).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import {
  checkConfigFile,
  checkInstanceName,
  createInstance,
  dkvHome,
  InstanceError,
  instancePaths,
  instanceStatus,
  listInstances,
  processState,
  removeInstance,
  serverEnvironment,
  startInstance,
  tailLines,
  portFree,
} from '../../src/control/index.js';
import { claimedPorts } from '../../src/control/ports.js';
import { harnessPortBounds } from '../../src/package-root.js';

const home = mkdtempSync(join(tmpdir(), 'dkv-templates-'));
afterAll(() => rmSync(home, { recursive: true, force: true }));

function yamlOf(path: string): Record<string, unknown> {
  return parseYaml(readFileSync(path, 'utf8')) as Record<string, unknown>;
}

async function refusal(promise: Promise<unknown>): Promise<InstanceError> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(InstanceError);
  return error as InstanceError;
}

/**
 * A base for `--client-port` whose dev layout (base + 10i + 0..2, i < 3) no instance under `home`
 * claims and nothing listens on: earlier tests' instances took random ports, and a random base
 * alone once landed on one of them.
 */
async function unclaimedDevBase(): Promise<number> {
  const claims = claimedPorts(home);
  for (let attempt = 0; attempt < 200; attempt++) {
    // Within this worker's DKV_TEST_PORTS slice: a port free now in another worker's may be
    // taken by its cluster a moment later (a member restarted on its ports).
    const { low, high } = harnessPortBounds(20_000, 30_000);
    const base = low + 10 * Math.floor(Math.random() * Math.floor((high - low - 30) / 10));
    const ports = [0, 1, 2].flatMap((i) => [base + 10 * i, base + 10 * i + 1, base + 10 * i + 2]);
    if (ports.some((port) => claims.has(port))) continue;
    if ((await Promise.all(ports.map((port) => portFree('127.0.0.1', port)))).every(Boolean)) return base;
  }
  throw new Error('no unclaimed free dev port block');
}

describe('instance templates', () => {
  it('single: one member of its own cluster on loopback, its own token, in the layout', async () => {
    const [created] = await createInstance({ home, name: 's1' });
    const paths = instancePaths(home, 's1');
    expect(created?.configFile).toBe(join(home, 'instances', 's1', 'config.yaml'));
    const { config, errors } = checkConfigFile(paths.config);
    expect(errors).toEqual([]);
    expect(config?.name).toBe('s1');
    expect(config?.dataDir).toBe(paths.data);
    expect(config?.initialCluster).toHaveLength(1);
    expect(config?.initialClusterToken).toBe('dkv-s1');
    expect(config?.listenClientUrls[0]?.href).toBe(`http://127.0.0.1:${created?.ports.client}`);
    expect(config?.listenMetricsUrls[0]?.port).toBe(created?.ports.metrics);
    expect(config?.logOutputs).toEqual(['stderr']);
    expect(readFileSync(paths.config, 'utf8')).toMatch(/^# dkv instance "s1" \(template single\)/);
    expect(readFileSync(paths.log, 'utf8')).toBe('');
  });

  it('dev: three instances NAME-1..3 that list one another, with --client-port laid out as dkv dev', async () => {
    const base = await unclaimedDevBase();
    const created = await createInstance({ home, name: 'dv', template: 'dev', clientPort: base });
    expect(created.map((c) => c.name)).toEqual(['dv-1', 'dv-2', 'dv-3']);
    expect(created.map((c) => [c.ports.client, c.ports.peer, c.ports.metrics])).toEqual([0, 1, 2].map((i) => [base + 10 * i, base + 10 * i + 1, base + 10 * i + 2]));
    const clusters = created.map((c) => checkConfigFile(c.configFile).config?.initialCluster.map((m) => `${m.name}=${m.peerUrls[0]?.href}`).join(','));
    expect(new Set(clusters).size).toBe(1);
    expect(clusters[0]).toBe(created.map((c) => `${c.name}=http://127.0.0.1:${c.ports.peer}`).join(','));
    expect(checkConfigFile(created[0]!.configFile).config?.initialClusterToken).toBe('dkv-dv');
    const refused = await refusal(createInstance({ home, name: 'dw', template: 'dev', peerPort: 20_001 }));
    expect(refused.code).toBe('bad-option');
  });

  it('cluster-node: listens on every interface, advertises the host, periodic compaction', async () => {
    const [ok] = await createInstance({ home, name: 'n3', template: 'cluster-node', advertiseHost: 'db3.example.com', initialClusterState: 'new' });
    const config = checkConfigFile(ok!.configFile).config;
    expect(config?.listenClientUrls[0]?.host).toBe('0.0.0.0');
    expect(config?.advertiseClientUrls[0]?.href).toBe(`http://db3.example.com:${ok?.ports.client}`);
    expect(config?.initialCluster.map((m) => m.name)).toEqual(['n3']);
    expect(config?.autoCompaction).toEqual({ mode: 'periodic', retention: 3_600_000 });
  });

  it('refuses a template that makes a bad config, and leaves nothing behind', async () => {
    const refused = await refusal(
      createInstance({ home, name: 'n4', template: 'cluster-node', advertiseHost: 'h', initialCluster: 'other=http://h:1' }),
    );
    expect(refused.code).toBe('bad-config');
    expect(refused.message).toContain('has no member named "n4"');
    expect(existsSync(instancePaths(home, 'n4').dir)).toBe(false);
  });

  it('a template file: its settings, then the keys an instance owns; its initial-cluster kept if given', async () => {
    const template = join(home, 'mine.yaml');
    writeFileSync(template, 'name: ignored\ndata-dir: /nowhere\nsnapshot-count: 5000\ntick-ms: 50\nelection-ticks: 20\nlog-file: /tmp/elsewhere.log\nlisten-client-urls: http://127.0.0.1:1\n');
    const [created] = await createInstance({ home, name: 'm1', template });
    const document = yamlOf(created!.configFile);
    expect(document['name']).toBe('m1');
    expect(document['data-dir']).toBe(instancePaths(home, 'm1').data);
    expect(document['snapshot-count']).toBe(5000);
    expect(document['tick-ms']).toBe(50);
    expect(document['log-file']).toBeUndefined();
    expect(document['listen-client-urls']).toBe(`http://127.0.0.1:${created?.ports.client}`);
    expect(checkConfigFile(created!.configFile).errors).toEqual([]);
    const bad = join(home, 'bad.yaml');
    writeFileSync(bad, 'snapshot-count: lots\n');
    const refused = await refusal(createInstance({ home, name: 'm2', template: bad }));
    expect(refused.code).toBe('bad-config');
    expect(refused.message).toContain('snapshot-count (in ');
    const missing = await refusal(createInstance({ home, name: 'm3', template: './no-such.yaml' }));
    expect(missing.code).toBe('bad-template');
  });

  it('--data-dir puts the data elsewhere, and rm keeps it', async () => {
    const data = join(home, 'elsewhere', 'd1');
    const [created] = await createInstance({ home, name: 'd1', dataDir: data });
    expect(checkConfigFile(created!.configFile).config?.dataDir).toBe(data);
    expect(removeInstance(home, 'd1')).toEqual({ name: 'd1', dataDirKept: data });
    expect(existsSync(instancePaths(home, 'd1').dir)).toBe(false);
    expect(existsSync(data)).toBe(true);
  });

  it('lists an instance whose config was broken by hand, saying so', async () => {
    await createInstance({ home, name: 'br' });
    writeFileSync(instancePaths(home, 'br').config, 'snapshot-count: many\n');
    const listed = listInstances(home).find((i) => i.name === 'br');
    expect(listed).toMatchObject({ state: 'stopped', pid: null, clientUrl: null });
    expect(listed?.configError).toContain('snapshot-count');
    // start and status refuse it with every bad field; nothing is started.
    for (const attempt of [startInstance(home, 'br'), instanceStatus(home, 'br')]) {
      const refused = await refusal(attempt);
      expect(refused.code).toBe('bad-config');
      expect(refused.message).toContain(`snapshot-count (in ${instancePaths(home, 'br').config}): must be a whole number, got "many"`);
    }
    expect(existsSync(instancePaths(home, 'br').pid)).toBe(false);
    expect(removeInstance(home, 'br').dataDirKept).toBeUndefined();
  });
});

describe('instance names, home, pid files, logs, environment', () => {
  it('takes names that are safe as a folder and a member name', () => {
    for (const name of ['a', 'db-1', 'x.y_z', 'A9']) expect(() => checkInstanceName(name)).not.toThrow();
    for (const name of ['', '../x', 'a/b', '-a', '.hidden', 'a b', 'a=b', 'x'.repeat(64)]) {
      expect(() => checkInstanceName(name), name).toThrow(InstanceError);
    }
    expect(dkvHome({ DKV_HOME: '/srv/dkv' })).toBe('/srv/dkv');
    expect(dkvHome({})).toMatch(/\/\.dkv$/);
  });

  it('finds a pid file stale when it is garbled or its pid is another program', () => {
    const paths = instancePaths(home, 's1');
    writeFileSync(paths.pid, 'not a pid\n');
    expect(processState(paths)).toEqual({ state: 'stopped', stalePid: undefined, staleReason: 'pid file does not hold a pid' });
    writeFileSync(paths.pid, `${process.pid}\n`);
    const state = processState(paths);
    expect(state.state).toBe('stopped');
    expect(state.state === 'stopped' && state.staleReason).toMatch(/is now another program/);
    rmSync(paths.pid);
    expect(processState(paths)).toEqual({ state: 'stopped', stalePid: undefined, staleReason: undefined });
  });

  it('tails a log, after the last start marker when asked', () => {
    const log = join(home, 'tail.log');
    writeFileSync(log, '--- start 1\nold\n--- start 2\nnew 1\nnew 2\nnew 3\n');
    expect(tailLines(log, 2)).toEqual(['new 2', 'new 3']);
    expect(tailLines(log, 10, '--- start')).toEqual(['new 1', 'new 2', 'new 3']);
    expect(tailLines(log, 0)).toEqual([]);
    expect(tailLines(join(home, 'none.log'), 5)).toEqual([]);
  });

  it('starts servers without DKV_*/ETCD_* settings, keeping how bin/dkv.js loads code', () => {
    const out = serverEnvironment({ PATH: '/bin', DKV_FROM_SOURCE: '1', DKV_ALLOCATOR: 'jemalloc', DKV_NAME: 'x', ETCD_DATA_DIR: '/d', DKV_HOME: '/h', HOME: '/root' });
    expect(out).toEqual({ PATH: '/bin', DKV_FROM_SOURCE: '1', DKV_ALLOCATOR: 'jemalloc', HOME: '/root' });
  });
});
