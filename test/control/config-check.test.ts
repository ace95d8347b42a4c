/**
 * `dkv config check`: the example config is valid; a bad file gets one message per bad field
 * (checks across fields only once each field is good), while `dkv server` still stops at the first.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkConfigFile } from '../../src/control/index.js';
import { packageRoot, dkvBin } from '../../src/package-root.js';
import { ConfigError, parseServerConfig } from '../../src/server/config.js';

const dir = mkdtempSync(join(tmpdir(), 'dkv-config-check-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const example = join(packageRoot, 'docs', 'dkv.example.yaml');

let files = 0;
function file(text: string): string {
  const path = join(dir, `config-${files++}.yaml`);
  writeFileSync(path, text);
  return path;
}

function dkv(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [dkvBin, ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const good = [
  'name: n1',
  `data-dir: ${join(dir, 'n1')}`,
  'listen-client-urls: http://127.0.0.1:23790',
  'listen-peer-urls: http://127.0.0.1:23800',
  '',
].join('\n');

describe('checkConfigFile', () => {
  it('accepts the example config, as dkv server parses it', () => {
    const check = checkConfigFile(example);
    expect(check.errors).toEqual([]);
    expect(check.config?.name).toBe('node1');
    expect(check.config?.initialCluster.map((m) => m.name)).toEqual(['node1', 'node2', 'node3']);
    expect(check.config?.autoCompaction).toEqual({ mode: 'periodic', retention: 3_600_000 });
    expect(parseServerConfig(['--config-file', example]).name).toBe('node1');
  });

  it('reports every bad field, each with its own message', () => {
    const path = file(
      [
        'name: "a b"',
        'nmae: typo',
        'listen-client-urls: ftp://127.0.0.1:1',
        'listen-peer-urls: http://127.0.0.1:99999',
        'snapshot-count: -3',
        'tick-ms: fast',
        'initial-cluster-state: maybe',
        'log-level: loud',
        'max-wals: many',
        'auto-compaction-retention: soon',
        'client-transport-security:',
        '  client-cert-auth: "yes"',
        '',
      ].join('\n'),
    );
    const check = checkConfigFile(path);
    expect(check.config).toBeUndefined();
    expect(check.errors.map((e) => e.message)).toEqual([
      `config file ${path}: unknown key "nmae"`,
      `client-transport-security.client-cert-auth (in ${path}): must be true or false`,
      `name (in ${path}): "a b" must not contain spaces, "=" or ","`,
      `listen-client-urls (in ${path}): "ftp://127.0.0.1:1" is not an http(s) URL`,
      `listen-peer-urls (in ${path}): "http://127.0.0.1:99999" has port 99999, outside 1..65535`,
      `initial-cluster-state (in ${path}): must be "new" or "existing", got "maybe"`,
      `tick-ms (in ${path}): must be a whole number, got "fast"`,
      `snapshot-count (in ${path}): must be a whole number, got "-3"`,
      `auto-compaction-retention (in ${path}): must be a duration such as 1h or 30m, or a number of hours, got "soon"`,
      `log-level (in ${path}): must be one of debug, info, warn, error, got "loud"`,
      `max-wals (in ${path}): must be a whole number, got "many"`,
    ]);
    expect(check.errors.every((e) => e instanceof ConfigError)).toBe(true);
    // dkv server itself still stops at the first.
    expect(() => parseServerConfig(['--config-file', path])).toThrow(`config file ${path}: unknown key "nmae"`);
  });

  it('checks across fields once every field is good, and only then', () => {
    const notMember = file(`${good}initial-cluster: other=http://127.0.0.1:23800\n`);
    expect(checkConfigFile(notMember).errors.map((e) => e.message)).toEqual([
      `initial-cluster (in ${notMember}): has no member named "n1" (this member's --name); it lists other`,
    ]);
    // With a bad field besides, the stand-in values would make the cross check report nonsense: it waits.
    const both = file(`${good}initial-cluster: other=http://127.0.0.1:23800\nsnapshot-count: x\n`);
    expect(checkConfigFile(both).errors.map((e) => e.field)).toEqual(['snapshot-count']);
    const keyless = file(`${good}client-transport-security:\n  cert-file: /c.pem\n`);
    expect(checkConfigFile(keyless).errors.map((e) => e.message)).toEqual([
      `client-transport-security.key-file (in ${keyless}): must be given with client-transport-security.cert-file (in ${keyless})`,
    ]);
    const https = file(`${good.replace('http://127.0.0.1:23790', 'https://127.0.0.1:23790')}`);
    expect(checkConfigFile(https).errors.map((e) => e.message)).toEqual([
      `listen-client-urls (in ${https}): "https://127.0.0.1:23790" needs --cert-file and --key-file`,
    ]);
  });

  it('gives one message for a file it cannot read as a YAML mapping', () => {
    const missing = join(dir, 'missing.yaml');
    expect(checkConfigFile(missing).errors.map((e) => e.message)).toEqual([`--config-file: cannot read "${missing}": ENOENT`]);
    const notYaml = file('name: [unclosed\n');
    expect(checkConfigFile(notYaml).errors).toHaveLength(1);
    expect(checkConfigFile(notYaml).errors[0]?.message).toContain(`"${notYaml}" is not valid YAML`);
    const list = file('- name\n- n1\n');
    expect(checkConfigFile(list).errors.map((e) => e.message)).toEqual([`--config-file: "${list}" must hold a YAML mapping of etcd's keys`]);
  });

  it('keeps warnings for etcd keys DKV does not use apart from errors', () => {
    const path = file(`${good}enable-v2: true\n`);
    const check = checkConfigFile(path);
    expect(check.errors).toEqual([]);
    expect(check.warnings).toEqual([`enable-v2 (in ${path}) has no effect in DKV (DKV serves the v3 API only)`]);
  });
});

describe('dkv config check', () => {
  it('prints a summary and exits 0 for the example', () => {
    const r = dkv('config', 'check', example);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`${example}: valid`);
    expect(r.stdout).toMatch(/^ {2}client URLs +http:\/\/127\.0\.0\.1:2379 \(advertised http:\/\/127\.0\.0\.1:2379\)$/m);
    expect(r.stdout).toMatch(/^ {2}initial cluster +node1=http:\/\/127\.0\.0\.1:2380,node2=.*\(new, token example-cluster\)$/m);
  });

  it('prints one line per bad field and exits 2; -w json says the same', () => {
    const path = file('name: "a b"\nsnapshot-count: -1\ntick-ms: 0\n');
    const r = dkv('config', 'check', path);
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')).toEqual([
      `dkv config check: ${path}: 3 problems`,
      `  name (in ${path}): "a b" must not contain spaces, "=" or ","`,
      `  tick-ms (in ${path}): must be between 1 and 10000, got 0`,
      `  snapshot-count (in ${path}): must be a whole number, got "-1"`,
      '',
    ]);
    const json = dkv('config', 'check', path, '-w', 'json');
    expect(json.code).toBe(2);
    const parsed = JSON.parse(json.stdout) as { valid: boolean; errors: Array<{ field: string }> };
    expect(parsed.valid).toBe(false);
    expect(parsed.errors.map((e) => e.field)).toEqual(['name', 'tick-ms', 'snapshot-count']);
  });

  it('shows its help, and refuses bad usage with exit 2', () => {
    const help = dkv('config', '--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: dkv config check FILE');
    expect(dkv('config', 'check').code).toBe(2);
    const main = dkv('--help');
    expect(main.stdout).toContain('instance create|start|stop|restart|status|logs|rm|list NAME');
    expect(main.stdout).toContain('config check FILE');
    expect(dkv('config', 'lint', example).stderr).toContain('unknown config command "lint"');
  });
});
