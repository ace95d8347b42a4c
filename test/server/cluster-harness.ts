/**
 * Real DKV clusters for tests: `dkv server` processes on loopback ports, driven by the real
 * `etcdctl`. Ports are picked free at start; each node logs to its own file, which a failing test
 * prints.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { devClusterLayout, type DevNode } from '../../src/server/config';

const dkvBin = join(import.meta.dirname, '..', '..', 'bin', 'dkv.js');

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A base port whose whole block (10 per node) is free now. */
export async function freeBase(nodes: number): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = 20000 + 10 * Math.floor(Math.random() * 3500);
    const ports: number[] = [];
    for (let i = 0; i < nodes; i++) ports.push(base + 10 * i, base + 10 * i + 1, base + 10 * i + 2);
    const free = await Promise.all(ports.map(portFree));
    if (free.every(Boolean)) return base;
  }
  throw new Error('no free port block found');
}

export class TestCluster {
  private readonly processes = new Map<number, ChildProcess>();

  private constructor(
    readonly dir: string,
    readonly nodes: readonly DevNode[],
    private readonly extraArgs: readonly string[],
  ) {}

  static async start(options: { nodes?: number; args?: readonly string[] } = {}): Promise<TestCluster> {
    const count = options.nodes ?? 3;
    const dir = mkdtempSync(join(tmpdir(), 'dkv-cluster-'));
    const layout = devClusterLayout({ nodes: count, basePort: await freeBase(count), dataDir: dir });
    const cluster = new TestCluster(dir, layout.nodes, options.args ?? []);
    for (let i = 0; i < count; i++) cluster.startNode(i);
    await cluster.waitForLeader();
    await cluster.waitForMembersPublished();
    return cluster;
  }

  /**
   * host:port endpoints. etcdctl 3.4's endpoint subcommands put a URL's scheme into the HTTP/2
   * :authority header, which Node's HTTP/2 parser (nghttp2) refuses; plain host:port works for
   * every command.
   */
  get endpoints(): string {
    return this.nodes.map((n) => `127.0.0.1:${n.clientPort}`).join(',');
  }

  endpoint(i: number): string {
    return `127.0.0.1:${this.nodes[i]!.clientPort}`;
  }

  startNode(i: number): void {
    const node = this.nodes[i]!;
    const log = openSync(node.logFile, 'a');
    const child = spawn(process.execPath, [dkvBin, 'server', ...node.args, ...this.extraArgs], { stdio: ['ignore', log, log] });
    this.processes.set(i, child);
    child.on('exit', () => this.processes.delete(i));
  }

  /** SIGKILLs node i and waits for it to be gone. */
  async kill(i: number): Promise<void> {
    const child = this.processes.get(i);
    if (child === undefined) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  async healthy(i: number): Promise<boolean> {
    try {
      const response = await fetch(`${this.nodes[i]!.metricsUrl}/health`, { signal: AbortSignal.timeout(1000) });
      return response.status === 200;
    } catch {
      return false;
    }
  }

  /** Waits until every running node reports a leader. */
  async waitForLeader(timeoutMs = 30_000): Promise<void> {
    const started = Date.now();
    for (;;) {
      const running = [...this.processes.keys()];
      const ok = await Promise.all(running.map((i) => this.healthy(i)));
      if (running.length > 0 && ok.every(Boolean)) return;
      if (Date.now() - started > timeoutMs) throw new Error(`no leader within ${timeoutMs} ms\n${this.logs()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** Waits until every member has published its name and client URLs (etcd's "started"). */
  async waitForMembersPublished(timeoutMs = 30_000): Promise<void> {
    const started = Date.now();
    for (;;) {
      const r = etcdctl(this.endpoints, ['member', 'list', '-w', 'json']);
      if (r.code === 0) {
        const members = (JSON.parse(r.stdout) as { members?: Array<{ name?: string; clientURLs?: string[] }> }).members ?? [];
        if (members.length === this.nodes.length && members.every((m) => (m.name ?? '') !== '' && (m.clientURLs ?? []).length > 0)) return;
      }
      if (Date.now() - started > timeoutMs) throw new Error(`members did not publish within ${timeoutMs} ms\n${this.logs()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  logs(): string {
    return this.nodes.map((n) => `--- ${n.name} ---\n${readLog(n.logFile)}`).join('\n');
  }

  async stop(): Promise<void> {
    const exits = [...this.processes.values()].map((child) => new Promise((resolve) => {
      child.once('exit', resolve);
      child.kill('SIGTERM');
    }));
    await Promise.all(exits);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function readLog(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-40).join('\n');
  } catch {
    return '(no log)';
  }
}

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real etcdctl (API v3). A missing etcdctl fails the test: CI installs it. */
export function etcdctl(endpoints: string, args: readonly string[], input?: string): CommandResult {
  const result = spawnSync('etcdctl', [`--endpoints=${endpoints}`, '--command-timeout=10s', ...args], {
    encoding: 'utf8',
    input,
    env: { ...process.env, ETCDCTL_API: '3' },
    timeout: 30_000,
  });
  if (result.error !== undefined) throw new Error(`etcdctl could not run (is Debian's etcd-client installed?): ${result.error.message}`);
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}
