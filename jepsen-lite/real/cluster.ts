/**
 * A real local cluster for `dkv jepsen run`: DKV (`node bin/dkv.js server`) or etcd processes on
 * loopback, each member's peer traffic behind the proxy network (proxy.ts). Member i (from 1) uses
 * base + 10·(i−1) for clients, + 1 for its real peer port, + 2 for metrics and + 3 for its proxy,
 * which is the peer URL it advertises. The harness can SIGKILL and restart a member (same data
 * directory), SIGSTOP and SIGCONT it, ask each member who leads (Maintenance.Status), and replace
 * a member as etcd's runbook does (MemberRemove, an empty data directory, MemberAdd on the same
 * peer URL, start with --initial-cluster-state existing).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, openSync, closeSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { dkvBin, harnessPortBounds, serverProcessEnv } from '../../src/package-root.js';
import { EtcdChannel, longsAsStrings } from '../../src/client/index.js';
import { memberChannel } from './clients.js';
import { ProxyNetwork, proxyHost } from './proxy.js';

export type Target = 'dkv' | 'etcd';

export const defaultEtcdBin = '/usr/bin/etcd';
/** Ports per member: client, peer, metrics, proxy (and room to spare). */
export const memberPortStride = 10;
/** Base ports stay below Linux's ephemeral range (32768+), so no outgoing connection takes one a restarted member needs. */
export const basePortMin = 20_000;
export const basePortMax = 32_000;
const basePortAttemptsMax = 200;
/** How long a cluster may take to elect a leader that every running member knows. */
export const leaderWaitMs = 30_000;
const leaderPollMs = 100;
/** A removed member exits by itself (DKV and etcd both); past this it is killed. */
export const removedExitWaitMs = 10_000;
/** The deadline of a membership call (MemberList, MemberRemove, MemberAdd). */
export const membershipCallTimeoutMs = 10_000;
/** Deadline of a Status call. */
export const statusTimeoutMs = 1000;
/** SIGKILL of a member: how long its exit may take to be seen. */
export const exitWaitMs = 5000;


export interface Member {
  readonly name: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly metricsPort: number;
  readonly proxyPort: number;
  readonly dataDir: string;
  readonly logFile: string;
}

export interface ClusterOptions {
  readonly target: Target;
  readonly nodes: number;
  /** Data directories and logs go here. */
  readonly dir: string;
  readonly etcdBin?: string;
  /** Cluster token (member ids derive from it). */
  readonly token?: string;
  readonly log?: (message: string) => void;
  /** DKV only, test only: start the servers with --unsafe-stale-reads (reads skip ReadIndex). */
  readonly unsafeStaleReads?: boolean;
  /** DKV only, test only: start the servers with --unsafe-ignore-txn-compare (every Txn that writes runs its success branch). */
  readonly unsafeIgnoreTxnCompare?: boolean;
}

function url(port: number): string {
  return `http://${proxyHost}:${port}`;
}

export function memberName(i: number): string {
  return `n${i + 1}`;
}

export function clusterLayout(nodes: number, basePort: number, dir: string): Member[] {
  return Array.from({ length: nodes }, (_, i) => {
    const clientPort = basePort + memberPortStride * i;
    const name = memberName(i);
    return {
      name,
      clientPort,
      peerPort: clientPort + 1,
      metricsPort: clientPort + 2,
      proxyPort: clientPort + 3,
      dataDir: join(dir, `${name}.data`),
      logFile: join(dir, `${name}.log`),
    };
  });
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, proxyHost, () => server.close(() => resolve(true)));
  });
}

/** A base port whose block (4 ports per member) is free now. */
export async function freeBasePort(nodes: number, random: () => number = Math.random): Promise<number> {
  // DKV_TEST_PORTS narrows the range (a shared machine, test files running at once).
  const { low, high } = harnessPortBounds(basePortMin, basePortMax);
  const blocks = Math.floor((high - low) / memberPortStride) - nodes;
  if (blocks < 1) throw new Error(`DKV_TEST_PORTS ${low}-${high - 1} has no room for ${nodes} members of ${memberPortStride} ports`);
  for (let attempt = 0; attempt < basePortAttemptsMax; attempt++) {
    const base = low + memberPortStride * Math.floor(random() * blocks);
    const ports = clusterLayout(nodes, base, '').flatMap((m) => [m.clientPort, m.peerPort, m.metricsPort, m.proxyPort]);
    const free = await Promise.all(ports.map(portFree));
    if (free.every(Boolean)) return base;
  }
  throw new Error('no free port block found');
}

/** The test-only server flags a cluster's options ask for. */
function unsafeServerFlags(options: Pick<ClusterOptions, 'unsafeStaleReads' | 'unsafeIgnoreTxnCompare'>): string[] {
  return [...(options.unsafeStaleReads === true ? ['--unsafe-stale-reads'] : []), ...(options.unsafeIgnoreTxnCompare === true ? ['--unsafe-ignore-txn-compare'] : [])];
}

function memberArgs(target: Target, member: Member, initialCluster: string, token: string, unsafeFlags: readonly string[], state: 'new' | 'existing' = 'new'): string[] {
  const common = [
    `--name=${member.name}`,
    `--data-dir=${member.dataDir}`,
    `--listen-client-urls=${url(member.clientPort)}`,
    `--advertise-client-urls=${url(member.clientPort)}`,
    `--listen-peer-urls=${url(member.peerPort)}`,
    `--initial-advertise-peer-urls=${url(member.proxyPort)}`,
    `--listen-metrics-urls=${url(member.metricsPort)}`,
    `--initial-cluster=${initialCluster}`,
    `--initial-cluster-state=${state}`,
    `--initial-cluster-token=${token}`,
  ];
  if (target === 'dkv') {
    return [dkvBin, 'server', ...common, `--log-file=${member.logFile}`, ...unsafeFlags];
  }
  return [...common, '--logger=zap', '--log-outputs=stderr'];
}

export interface MemberStatus {
  readonly memberId: number;
  /** 0 when the member knows no leader. */
  readonly leader: number;
  readonly raftTerm: number;
}

export class RealCluster {
  readonly members: readonly Member[];
  readonly proxies: ProxyNetwork;
  private readonly processes = new Map<string, ChildProcess>();
  private readonly paused = new Set<string>();
  private readonly clients = new Map<string, EtcdChannel>();
  private readonly memberIds = new Map<number, string>();
  private readonly initialCluster: string;
  private readonly token: string;

  private constructor(
    private readonly options: ClusterOptions,
    basePort: number,
  ) {
    this.members = clusterLayout(options.nodes, basePort, options.dir);
    this.initialCluster = this.members.map((m) => `${m.name}=${url(m.proxyPort)}`).join(',');
    this.token = options.token ?? 'jepsen-lite';
    this.proxies = new ProxyNetwork({
      members: this.members,
      pids: () => this.pids(),
      log: options.log,
    });
  }

  /**
   * Starts proxies and members and waits for a leader. On failure everything started is
   * stopped again before the error propagates.
   */
  static async start(options: ClusterOptions): Promise<RealCluster> {
    if (!Number.isInteger(options.nodes) || options.nodes < 1) throw new TypeError(`nodes must be a positive integer, got ${options.nodes}`);
    mkdirSync(options.dir, { recursive: true });
    const cluster = new RealCluster(options, await freeBasePort(options.nodes));
    try {
      await cluster.proxies.start();
      for (const member of cluster.members) cluster.startMember(member.name);
      await cluster.waitForLeader(leaderWaitMs);
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  get target(): Target {
    return this.options.target;
  }

  member(name: string): Member {
    const member = this.members.find((m) => m.name === name);
    if (member === undefined) throw new TypeError(`unknown member ${name}`);
    return member;
  }

  endpoint(name: string): string {
    return `${proxyHost}:${this.member(name).clientPort}`;
  }

  /** Running members' process ids (a SIGSTOPped member counts as running). */
  pids(): Map<string, number> {
    const pids = new Map<string, number>();
    for (const [name, child] of this.processes) if (child.pid !== undefined) pids.set(name, child.pid);
    return pids;
  }

  running(name: string): boolean {
    return this.processes.has(name);
  }

  isPaused(name: string): boolean {
    return this.paused.has(name);
  }

  /**
   * Starts a member (again, after `kill`: it resumes from its data directory; a data directory a
   * restart finds ignores the initial-cluster flags, so `existing` matters only on an empty one).
   */
  startMember(name: string, state: 'new' | 'existing' = 'new'): void {
    if (this.processes.has(name)) throw new Error(`${name} is already running`);
    const member = this.member(name);
    const log = openSync(member.logFile, 'a');
    const args = memberArgs(this.options.target, member, this.initialCluster, this.token, unsafeServerFlags(this.options), state);
    const command = this.options.target === 'dkv' ? process.execPath : (this.options.etcdBin ?? defaultEtcdBin);
    const child = spawn(command, args, { stdio: ['ignore', log, log], env: this.options.target === 'dkv' ? serverProcessEnv() : process.env });
    closeSync(log);
    this.processes.set(name, child);
    child.on('error', (error) => this.options.log?.(`${name}: ${error.message}`));
    child.on('exit', (code, signal) => {
      if (this.processes.get(name) !== child) return;
      this.processes.delete(name);
      this.paused.delete(name);
      this.options.log?.(`${name} exited (${signal ?? `code ${code}`}); see ${member.logFile}`);
    });
  }

  /** SIGKILLs a member and waits until it is gone. */
  async kill(name: string): Promise<void> {
    const child = this.processes.get(name);
    if (child === undefined) return;
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    child.kill('SIGKILL');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, exitWaitMs))]);
    if (this.processes.get(name) === child) {
      this.processes.delete(name);
      this.paused.delete(name);
    }
  }

  pause(name: string): void {
    const child = this.processes.get(name);
    if (child === undefined || this.paused.has(name)) return;
    child.kill('SIGSTOP');
    this.paused.add(name);
  }

  resume(name: string): void {
    const child = this.processes.get(name);
    if (child === undefined || !this.paused.has(name)) return;
    child.kill('SIGCONT');
    this.paused.delete(name);
  }

  private client(name: string): EtcdChannel {
    let client = this.clients.get(name);
    if (client === undefined) {
      client = memberChannel(this.endpoint(name));
      this.clients.set(name, client);
    }
    return client;
  }

  /** A member's Maintenance.Status, or undefined when it does not answer in time. */
  async status(name: string): Promise<MemberStatus | undefined> {
    if (!this.running(name) || this.paused.has(name)) return undefined;
    try {
      const response = await this.client(name).maintenance('Status', {}, { timeoutMs: statusTimeoutMs });
      const header = response.header as { member_id?: number; raft_term?: number } | undefined;
      const memberId = Number(header?.member_id ?? 0);
      if (memberId !== 0) this.memberIds.set(memberId, name);
      return { memberId, leader: Number(response.leader ?? 0), raftTerm: Number(header?.raft_term ?? 0) };
    } catch {
      return undefined;
    }
  }

  /**
   * The leader's name as the answering members see it: the leader named by the highest term
   * among the answers (undefined when no member answers or none knows a leader).
   */
  async leader(): Promise<string | undefined> {
    const statuses = await Promise.all(this.members.map((m) => this.status(m.name)));
    let best: MemberStatus | undefined;
    for (const status of statuses) {
      if (status !== undefined && status.leader !== 0 && (best === undefined || status.raftTerm > best.raftTerm)) best = status;
    }
    return best === undefined ? undefined : this.memberIds.get(best.leader);
  }

  /** Waits until every running, unpaused member answers Status naming the same leader. */
  async waitForLeader(timeoutMs: number): Promise<string> {
    const started = Date.now();
    for (;;) {
      const names = this.members.map((m) => m.name).filter((n) => this.running(n) && !this.paused.has(n));
      const statuses = await Promise.all(names.map((n) => this.status(n)));
      const leaders = new Set(statuses.map((s) => s?.leader ?? 0));
      const [leader] = leaders;
      if (names.length > 0 && leaders.size === 1 && leader !== undefined && leader !== 0) {
        const name = this.memberIds.get(leader);
        if (name !== undefined) return name;
      }
      if (Date.now() - started > timeoutMs) throw new Error(`no leader within ${timeoutMs} ms (logs in ${this.options.dir})`);
      await new Promise((resolve) => setTimeout(resolve, leaderPollMs));
    }
  }

  /**
   * Replaces member `name` as etcd's runbook does, through member `via`: MemberRemove (the
   * removed process exits by itself; killed after `removedExitWaitMs`), an empty data directory,
   * MemberAdd with the same peer URL, and a start with --initial-cluster-state existing. Ids stay
   * exact (etcd's go past 2^53). Returns the old and the new id (decimal strings).
   */
  async replaceMember(name: string, via: string): Promise<{ oldId: string; newId: string; exitedByItself: boolean }> {
    const member = this.member(name);
    const peerUrl = url(member.proxyPort);
    const admin = new EtcdChannel(this.endpoint(via), { decode: longsAsStrings, callTimeoutMs: membershipCallTimeoutMs });
    const listed = async (): Promise<{ ID: string } | undefined> => {
      const list = (await admin.call('etcdserverpb.Cluster', 'MemberList', {})) as { members?: Array<{ ID: string; peerURLs: string[] }> };
      return (list.members ?? []).find((m) => m.peerURLs.includes(peerUrl));
    };
    /**
     * A membership call whose answer may be lost (a removed leader, no leader for a moment): the
     * member list judges whether it happened; if not, it is made again, until the deadline.
     */
    const settle = async (call: () => Promise<unknown>, done: () => Promise<boolean>, what: string): Promise<void> => {
      const deadline = Date.now() + 3 * membershipCallTimeoutMs;
      for (;;) {
        let failure: unknown;
        try {
          await call();
          return;
        } catch (error) {
          failure = error;
        }
        if (await done().catch(() => false)) return;
        if (Date.now() > deadline) throw new Error(`${what}: ${failure instanceof Error ? failure.message : String(failure)}`);
        await new Promise((resolve) => setTimeout(resolve, 5 * leaderPollMs));
      }
    };
    try {
      // `via` may have just restarted and not serve yet (its port refuses connections): wait for
      // its answer as long as a membership call may take.
      const lookupDeadline = Date.now() + 3 * membershipCallTimeoutMs;
      let old: { ID: string } | undefined;
      for (;;) {
        try {
          old = await listed();
          break;
        } catch (error) {
          if (Date.now() > lookupDeadline) throw error;
          await new Promise((resolve) => setTimeout(resolve, 5 * leaderPollMs));
        }
      }
      if (old === undefined) throw new Error(`${name} (${peerUrl}) is not in the member list`);
      const child = this.processes.get(name);
      const exited = child === undefined ? Promise.resolve(true) : new Promise<boolean>((resolve) => child.once('exit', () => resolve(true)));
      await settle(() => admin.call('etcdserverpb.Cluster', 'MemberRemove', { ID: old.ID }), async () => (await listed()) === undefined, 'MemberRemove');
      this.resume(name);
      let timer: NodeJS.Timeout | undefined;
      const exitedByItself = await Promise.race([exited, new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), removedExitWaitMs)))]);
      clearTimeout(timer);
      await this.kill(name);
      rmSync(member.dataDir, { recursive: true, force: true });
      let newId = '';
      await settle(
        async () => {
          const added = (await admin.call('etcdserverpb.Cluster', 'MemberAdd', { peerURLs: [peerUrl] })) as { member?: { ID: string } };
          newId = added.member?.ID ?? '';
        },
        async () => {
          newId = (await listed())?.ID ?? '';
          return newId !== '';
        },
        'MemberAdd',
      );
      this.startMember(name, 'existing');
      return { oldId: old.ID, newId, exitedByItself };
    } finally {
      admin.close();
    }
  }

  /** Member names by member id (decimal strings, exact: etcd's ids go past 2^53), from `admin`'s MemberList. */
  async memberNames(admin: EtcdChannel): Promise<Map<string, string>> {
    const list = (await admin.call('etcdserverpb.Cluster', 'MemberList', {})) as { members?: Array<{ ID: string; peerURLs: string[] }> };
    const names = new Map<string, string>();
    for (const m of list.members ?? []) {
      const member = this.members.find((candidate) => m.peerURLs.includes(url(candidate.proxyPort)));
      if (member !== undefined) names.set(m.ID, member.name);
    }
    return names;
  }

  /** Kills every member (SIGCONT first for paused ones is not needed: SIGKILL ends a stopped process) and closes the proxies. */
  async stop(): Promise<void> {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
    await Promise.all([...this.processes.keys()].map((name) => this.kill(name)));
    await this.proxies.close();
  }

  /** Synchronous last resort (process 'exit'): SIGKILL whatever still runs. */
  killAllNow(): void {
    for (const child of this.processes.values()) child.kill('SIGKILL');
  }
}
