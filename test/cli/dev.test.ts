/**
 * The quick start as a user runs it: `dkv dev` starts a local cluster, prints its endpoints once
 * there is a leader, stops cleanly on Ctrl-C, and resumes with its data when started again.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { etcdctl, freeBase } from '../server/cluster-harness';

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
    expect(first.endpoints).toBe([0, 1, 2].map((i) => `http://127.0.0.1:${basePort + 10 * i}`).join(','));
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

  it('names the bad field and exits 2', () => {
    const r = spawnSync(process.execPath, [bin, 'server', '--initial-cluster-state', 'sideways'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('--initial-cluster-state');
  });
});
