/**
 * The quick start as a user runs it: `dkv dev` starts a local cluster, prints its endpoints once
 * there is a leader, stops cleanly on Ctrl-C, and resumes with its data when started again.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { etcdctl, freeBase } from '../server/cluster-harness.js';

const bin = join(import.meta.dirname, '..', '..', 'bin', 'dkv.js');
const dir = mkdtempSync(join(tmpdir(), 'dkv-dev-'));
let basePort = 0;

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function startDev(): Promise<{ child: ChildProcess; endpoints: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, 'dev', '--base-port', String(basePort), '--data-dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      const line = out.split('\n')[0];
      if (out.includes('\n') && line !== undefined) resolve({ child, endpoints: line });
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
    child.on('exit', (code) => reject(new Error(`dkv dev exited early (${code}): ${err}`)));
  });
}

function stopDev(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    child.removeAllListeners('exit');
    child.once('exit', (code) => resolve(code));
    child.kill('SIGINT');
  });
}

describe('dkv dev', () => {
  it('starts a cluster, serves etcdctl, stops on Ctrl-C and resumes with its data', async () => {
    basePort = await freeBase(3);
    const first = await startDev();
    expect(first.endpoints).toBe([0, 1, 2].map((i) => `127.0.0.1:${basePort + 10 * i}`).join(','));
    expect(etcdctl(first.endpoints, ['put', 'greeting', 'hello']).stdout).toBe('OK\n');
    expect(await stopDev(first.child)).toBe(0);

    const second = await startDev();
    expect(etcdctl(second.endpoints, ['get', 'greeting', '--print-value-only']).stdout).toBe('hello\n');
    expect(await stopDev(second.child)).toBe(0);
  }, 60_000);

  it('refuses bad options with exit code 2', () => {
    const r = spawnSync(process.execPath, [bin, 'dev', '--nodes', '0'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('--nodes');
  });
});

describe('dkv server', () => {
  it('prints its flags with --help', () => {
    const r = spawnSync(process.execPath, [bin, 'server', '--help'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    for (const flag of ['--name', '--data-dir', '--listen-client-urls', '--initial-cluster', '--initial-cluster-state', '--config-file', '--cert-file', '--peer-client-cert-auth']) {
      expect(r.stdout).toContain(flag);
    }
  });

  it('starts from an etcd-style YAML config file and stops cleanly on SIGTERM', async () => {
    const base = await freeBase(1);
    const file = join(dir, 'node.yaml');
    writeFileSync(
      file,
      [
        'name: y1',
        `data-dir: ${join(dir, 'y1')}`,
        `listen-client-urls: http://127.0.0.1:${base}`,
        `advertise-client-urls: http://127.0.0.1:${base}`,
        `listen-peer-urls: http://127.0.0.1:${base + 1}`,
        `initial-advertise-peer-urls: http://127.0.0.1:${base + 1}`,
        `initial-cluster: y1=http://127.0.0.1:${base + 1}`,
        'initial-cluster-token: yaml-test',
        `listen-metrics-urls: http://127.0.0.1:${base + 2}`,
        '',
      ].join('\n'),
    );
    const child = spawn(process.execPath, [bin, 'server', '--config-file', file], { stdio: 'ignore' });
    const endpoint = `127.0.0.1:${base}`;
    const started = Date.now();
    while (etcdctl(endpoint, ['put', 'from-yaml', 'yes']).code !== 0) {
      if (Date.now() - started > 20_000) throw new Error('the node from the config file did not come up');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(etcdctl(endpoint, ['get', 'from-yaml', '--print-value-only']).stdout).toBe('yes\n');
    const code = await new Promise<number | null>((resolve) => {
      child.once('exit', (c) => resolve(c));
      child.kill('SIGTERM');
    });
    expect(code).toBe(0);
  }, 40_000);

  it('names the bad field and exits 2', () => {
    const r = spawnSync(process.execPath, [bin, 'server', '--initial-cluster-state', 'sideways'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('--initial-cluster-state');
  });
});
