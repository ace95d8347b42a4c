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
import { EtcdChannel, type EtcdChannelOptions, prefixRangeEnd } from '../../src/client/index.js';
import { devClusterLayout, type DevNode } from '../../src/server/config.js';
import { harnessPortRange } from '../../src/package-root.js';
import { testPortsDefault } from '../workers.js';

const dkvBin = join(import.meta.dirname, '..', '..', 'bin', 'dkv.js');

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * The ports test clusters take: below the kernel's ephemeral range (32768+ on Linux), so a
 * client's outgoing connection can never take a port a restarted node needs. DKV_TEST_PORTS=low-high
 * narrows them, for a machine whose other users keep to ranges of their own.
 */
/** Ports one node of a test cluster takes a block of (client, peer, metrics, and spares). */
const portsPerNode = 10;
const testPorts = harnessPortRange() ?? testPortsDefault;

/** A base port whose whole block (10 per node) is free now. */
export async function freeBase(nodes: number): Promise<number> {
  const blocks = Math.floor((testPorts.high + 1 - testPorts.low - portsPerNode * nodes) / portsPerNode) + 1;
  if (blocks < 1) throw new Error(`DKV_TEST_PORTS ${testPorts.low}-${testPorts.high} has no room for ${nodes} nodes of ${portsPerNode} ports`);
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = testPorts.low + portsPerNode * Math.floor(Math.random() * blocks);
    const ports: number[] = [];
    for (let i = 0; i < nodes; i++) ports.push(base + portsPerNode * i, base + portsPerNode * i + 1, base + portsPerNode * i + 2);
    const free = await Promise.all(ports.map(portFree));
    if (free.every(Boolean)) return base;
  }
  throw new Error('no free port block found');
}

export interface TestClusterOptions {
  /** Nodes in the cluster (3 by default). */
  readonly nodes?: number;
  /** Flags added to every node's command line. */
  readonly args?: readonly string[];
  /** Flags added to node i's command line only. */
  readonly nodeArgs?: (i: number) => readonly string[];
  /** Flags of the dev layout that node i starts with in place of the layout's (by name, as `startNode`'s `replace`). */
  readonly nodeReplace?: (i: number, node: DevNode) => Readonly<Record<string, string>>;
  /** https client and peer URLs (the metrics URL stays http); give the TLS flags in `args`. */
  readonly https?: boolean;
  /** Flags the harness's own etcdctl calls need (TLS: --cacert, --cert, --key). */
  readonly etcdctlArgs?: readonly string[];
}

/** The dev layout's node with its client and peer URLs switched to https. */
function withHttps(node: DevNode): DevNode {
  const swap = (text: string): string => text.replaceAll('http://', 'https://');
  return {
    ...node,
    clientUrl: swap(node.clientUrl),
    peerUrl: swap(node.peerUrl),
    args: node.args.map((arg) => (arg.startsWith('--listen-metrics-urls=') ? arg : swap(arg))),
  };
}

export class TestCluster {
  private readonly processes = new Map<number, ChildProcess>();

  private constructor(
    readonly dir: string,
    readonly nodes: readonly DevNode[],
    private readonly extraArgs: readonly string[],
    private readonly nodeArgs: (i: number) => readonly string[],
    /** Flags every etcdctl call of the harness adds (TLS clusters: --cacert and friends). */
    readonly etcdctlArgs: readonly string[],
  ) {}

  static async start(options: TestClusterOptions = {}): Promise<TestCluster> {
    const count = options.nodes ?? 3;
    const dir = mkdtempSync(join(tmpdir(), 'dkv-cluster-'));
    const layout = devClusterLayout({ nodes: count, basePort: await freeBase(count), dataDir: dir });
    const nodes = options.https === true ? layout.nodes.map(withHttps) : layout.nodes;
    const cluster = new TestCluster(dir, nodes, options.args ?? [], options.nodeArgs ?? (() => []), options.etcdctlArgs ?? []);
    for (let i = 0; i < count; i++) cluster.startNode(i, options.nodeReplace?.(i, nodes[i]!));
    try {
      await cluster.waitForLeader();
      await cluster.waitForMembersPublished();
    } catch (error) {
      // A cluster that never came up must not outlive the test that asked for it (the error
      // already carries the nodes' logs).
      await cluster.stop();
      throw error;
    }
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

  /**
   * Starts node i (again, after `kill`: it resumes from its data directory). `replace` swaps
   * flags of the dev layout (by name, e.g. `{ 'initial-cluster-state': 'existing' }`).
   */
  startNode(i: number, replace: Readonly<Record<string, string>> = {}): void {
    if (this.processes.has(i)) throw new Error(`node ${i} is already running`);
    const node = this.nodes[i]!;
    const log = openSync(node.logFile, 'a');
    const layoutArgs = node.args.map((arg) => {
      const name = /^--([^=]+)=/.exec(arg)?.[1];
      return name !== undefined && replace[name] !== undefined ? `--${name}=${replace[name]}` : arg;
    });
    const args = [dkvBin, 'server', ...layoutArgs, ...this.extraArgs, ...this.nodeArgs(i)];
    const child = spawn(process.execPath, args, { stdio: ['ignore', log, log] });
    this.processes.set(i, child);
    this.exits.delete(i);
    child.on('exit', (code) => {
      this.exits.set(i, code);
      if (this.processes.get(i) === child) this.processes.delete(i);
    });
  }

  /** Exit codes of nodes whose process ended since it was last started. */
  private readonly exits = new Map<number, number | null>();

  /** Waits for node i's process to exit on its own; its exit code. */
  async waitForExit(i: number, timeoutMs = 30_000): Promise<number | null> {
    await waitUntil(() => this.exits.has(i), timeoutMs, () => `node ${this.nodes[i]!.name} to exit\n${this.logs()}`);
    return this.exits.get(i)!;
  }

  /** Node i's metrics URL (Prometheus text at /metrics, /health). */
  metricsUrl(i: number): string {
    return this.nodes[i]!.metricsUrl;
  }

  /** The sum of every sample of metric `name` on node i (all its label sets), from its /metrics. */
  async metric(i: number, name: string): Promise<number> {
    const text = await (await fetch(`${this.metricsUrl(i)}/metrics`)).text();
    return text
      .split('\n')
      .filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
      .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  }

  /** Node i's log file, whole. */
  log(i: number): string {
    return readLog(this.nodes[i]!.logFile, Infinity);
  }

  /** True while node i's process runs (a crash shows here as false). */
  running(i: number): boolean {
    return this.processes.has(i);
  }

  /** Node i's process id, to check that a node survived something. */
  pid(i: number): number | undefined {
    return this.processes.get(i)?.pid;
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

  /** Waits until node i's process runs and its /health reports a leader. */
  async waitForHealthy(i: number, timeoutMs = 30_000): Promise<void> {
    await waitUntil(() => this.running(i) && this.healthy(i), timeoutMs, () => `node ${this.nodes[i]!.name} not healthy\n${this.logs()}`);
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
      const r = etcdctl(this.endpoints, ['member', 'list', '-w', 'json'], undefined, this.etcdctlArgs);
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

function readLog(file: string, lines = 40): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** A real etcd (Debian's etcd-server 3.4), one member started fresh, for differential tests. */
export class RealEtcd {
  private constructor(
    private readonly child: ChildProcess,
    readonly dir: string,
    readonly endpoint: string,
  ) {}

  /** `args`: more etcd flags (a small --quota-backend-bytes). */
  static async start(args: readonly string[] = []): Promise<RealEtcd> {
    const base = await freeBase(1);
    const dir = mkdtempSync(join(tmpdir(), 'etcd-diff-'));
    const client = `http://127.0.0.1:${base}`;
    const peer = `http://127.0.0.1:${base + 1}`;
    const child = spawn(
      'etcd',
      ['--name', 'e1', '--data-dir', join(dir, 'data'), '--listen-client-urls', client, '--advertise-client-urls', client, '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `e1=${peer}`, ...args],
      { stdio: 'ignore' },
    );
    const etcd = new RealEtcd(child, dir, `127.0.0.1:${base}`);
    const started = Date.now();
    while (etcdctl(etcd.endpoint, ['endpoint', 'health']).code !== 0) {
      if (Date.now() - started > 20_000) throw new Error('etcd did not become healthy');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return etcd;
  }

  async stop(): Promise<void> {
    await new Promise((resolve) => {
      this.child.once('exit', resolve);
      this.child.kill('SIGTERM');
    });
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment etcdctl runs with (API v3). */
const etcdctlEnv = (): NodeJS.ProcessEnv => ({ ...process.env, ETCDCTL_API: '3' });
/** An etcdctl run still going after this is killed. */
const etcdctlTimeoutMs = 30_000;
const etcdctlArgv = (endpoints: string, args: readonly string[], globalArgs: readonly string[]): string[] => [`--endpoints=${endpoints}`, '--command-timeout=10s', ...globalArgs, ...args];
const etcdctlMissing = (error: Error): Error => new Error(`etcdctl could not run (is Debian's etcd-client installed?): ${error.message}`);

/** Runs the real etcdctl (API v3). A missing etcdctl fails the test: CI installs it. */
export function etcdctl(endpoints: string, args: readonly string[], input?: string, globalArgs: readonly string[] = []): CommandResult {
  const result = spawnSync('etcdctl', etcdctlArgv(endpoints, args, globalArgs), { encoding: 'utf8', input, env: etcdctlEnv(), timeout: etcdctlTimeoutMs });
  if (result.error !== undefined) throw etcdctlMissing(result.error);
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** `etcdctl` without blocking the test's process (two clusters driven at once), as `etcdctl`. */
export function etcdctlAsync(endpoints: string, args: readonly string[], input?: string, globalArgs: readonly string[] = []): Promise<CommandResult> {
  return runCommand('etcdctl', etcdctlArgv(endpoints, args, globalArgs), { input, env: etcdctlEnv() }).catch((error: Error) => {
    throw etcdctlMissing(error);
  });
}

/**
 * Runs `command ARGS` to its end without blocking (stdin gets `input`, then closes); killed past
 * `timeoutMs` (30 s by default), its result then says so: code null. Rejects if it cannot start.
 */
export function runCommand(command: string, args: readonly string[], options: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: options.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    // A command that does not read its stdin may close it first: not the test's failure.
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? etcdctlTimeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Polls `condition` until it holds; fails with `describe()` after `timeoutMs`. */
export async function waitUntil(
  condition: () => boolean | Promise<boolean>,
  timeoutMs: number,
  describe: () => string = () => 'condition',
  intervalMs = 50,
): Promise<void> {
  const started = Date.now();
  for (;;) {
    if (await condition()) return;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${describe()}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

// ---------------------------------------------------------------------------------------------
// Talking to the cluster over gRPC: src/client's EtcdChannel (no etcd3 retries or load balancing in
// the way: one channel to one endpoint, every failure reported as is).

/** Tests' messages may be large (a whole keyspace read back). */
export const testMessageBytesMax = 64 * 1024 * 1024;
/** The deadline of a test's unary call that names none. */
export const testCallTimeoutMs = 10_000;

/**
 * A channel to one node as tests use it: responses decoded with int64 as numbers, bytes as
 * Buffers and defaults filled in; 64 MiB messages; a 10 s deadline unless a call names one.
 */
export function etcdChannel(endpoint: string, options: EtcdChannelOptions = {}): EtcdChannel {
  return new EtcdChannel(endpoint, { messageBytesMax: testMessageBytesMax, callTimeoutMs: testCallTimeoutMs, ...options });
}

/** The etcd range_end that selects every key starting with `prefix`. */
export function prefixEnd(prefix: string): Buffer {
  return prefixRangeEnd(Buffer.from(prefix));
}
