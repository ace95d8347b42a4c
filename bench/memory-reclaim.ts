/**
 * Memory a store gives back: write ~50 MB, delete it, compact, defragment, and print at each step
 * every member's DB SIZE (Maintenance.Status dbSize: for DKV the store's memory, what
 * --quota-backend-bytes counts; for etcd its bbolt file) and its process's resident set size
 * (VmRSS). DKV runs as --nodes real `dkv server` processes; with --etcd (the default when
 * /usr/bin/etcd exists) one etcd member gets the same writes, side by side. Prints numbers; never
 * gates CI.
 *
 *   node --import tsx bench/memory-reclaim.ts [--nodes 3] [--mb 50] [--value-kb 50] [--etcd true|false]
 *     [--server-args "--snapshot-count=1000"]  (more `dkv server` flags, space-separated)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EtcdChannel } from '../src/client/index.js';
import { serverProcessEnv } from '../src/package-root.js';
import { freePortBlock } from './footprint.js';
import { devClusterLayout } from '../src/server/config.js';

function argument(name: string, fallback: string): string {
  const at = process.argv.indexOf(name);
  return at >= 0 ? (process.argv[at + 1] ?? fallback) : fallback;
}

const nodes = Number(argument('--nodes', '3'));
const totalMb = Number(argument('--mb', '50'));
const valueKb = Number(argument('--value-kb', '50'));
const withEtcd = argument('--etcd', String(existsSync('/usr/bin/etcd'))) === 'true';
const serverArgs = argument('--server-args', '').split(' ').filter((arg) => arg !== '');
const settleMs = 1500;
const writers = 8;

interface Member {
  readonly name: string;
  readonly endpoint: string;
  readonly process: ChildProcess;
  readonly channel: EtcdChannel;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function rssMb(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match === null ? NaN : Number(match[1]) / 1024;
}

async function ready(channel: EtcdChannel): Promise<void> {
  for (let i = 0; i < 300; i++) {
    try {
      await channel.kv('Put', { key: Buffer.from('bench/ready'), value: Buffer.from('1') });
      return;
    } catch {
      await sleep(100);
    }
  }
  throw new Error('the cluster did not come up');
}

const logFiles: string[] = [];

function startDkv(dir: string, base: number): Member[] {
  const layout = devClusterLayout({ nodes, basePort: base, dataDir: join(dir, 'dkv') });
  const bin = join(import.meta.dirname, '..', 'bin', 'dkv.js');
  for (const node of layout.nodes) logFiles.push(node.logFile);
  return layout.nodes.map((node) => ({
    name: node.name,
    endpoint: `127.0.0.1:${node.clientPort}`,
    process: spawn(process.execPath, [bin, 'server', ...node.args, ...serverArgs], { stdio: 'ignore', env: serverProcessEnv() }),
    channel: new EtcdChannel(`127.0.0.1:${node.clientPort}`, { callTimeoutMs: 60_000, messageBytesMax: 64 * 1024 * 1024 }),
  }));
}

function startEtcd(dir: string, base: number): Member {
  const client = `http://127.0.0.1:${base}`;
  const peer = `http://127.0.0.1:${base + 1}`;
  const args = ['--name', 'etcd1', '--data-dir', join(dir, 'etcd'), '--listen-client-urls', client, '--advertise-client-urls', client, '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `etcd1=${peer}`];
  return { name: 'etcd1', endpoint: `127.0.0.1:${base}`, process: spawn('etcd', args, { stdio: 'ignore' }), channel: new EtcdChannel(`127.0.0.1:${base}`, { callTimeoutMs: 60_000 }) };
}

async function report(step: string, groups: ReadonlyArray<readonly Member[]>): Promise<void> {
  await sleep(settleMs);
  const cells: string[] = [];
  for (const members of groups) {
    for (const member of members) {
      const status = (await member.channel.maintenance('Status', {})) as { dbSize?: number; dbSizeInUse?: number };
      cells.push(`${member.name} db ${((status.dbSize ?? 0) / 1048576).toFixed(1)} MB (in use ${((status.dbSizeInUse ?? 0) / 1048576).toFixed(1)}) rss ${rssMb(member.process.pid).toFixed(0)} MB`);
    }
  }
  console.log(`${step.padEnd(22)} ${cells.join(' | ')}`);
}

async function workload(members: readonly Member[], groups: ReadonlyArray<readonly Member[]>, label: string): Promise<void> {
  const client = members[0]!.channel;
  const value = Buffer.alloc(valueKb * 1024, 0x61);
  const keys = Math.ceil((totalMb * 1024) / valueKb);
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: writers }, async () => {
      for (let i = next++; i < keys; i = next++) await client.kv('Put', { key: Buffer.from(`bench/${String(i).padStart(6, '0')}`), value });
    }),
  );
  console.log(`${label}: ${keys} puts of ${valueKb} KB in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  await report(`${label} written`, groups);
  await client.kv('DeleteRange', { key: Buffer.from('bench/'), range_end: Buffer.from('bench0') });
  await report(`${label} deleted`, groups);
  const revision = Number(((await client.kv('Range', { key: Buffer.from('x') })) as { header: { revision: number } }).header.revision);
  await client.kv('Compact', { revision, physical: true });
  await report(`${label} compacted`, groups);
  for (const member of members) await member.channel.maintenance('Defragment', {});
  await report(`${label} defragmented`, groups);
  // Again, once V8 has released the buffers the first collection freed: what is left is live.
  for (const member of members) await member.channel.maintenance('Defragment', {});
  await report(`${label} defragmented x2`, groups);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'dkv-memory-'));
  // DKV's members at base + 10i, etcd's after them.
  const base = await freePortBlock(10 * nodes + 20);
  const dkv = startDkv(dir, base);
  const etcd = withEtcd ? [startEtcd(dir, base + 10 * nodes + 10)] : [];
  try {
    await ready(dkv[0]!.channel);
    for (const member of etcd) await ready(member.channel);
    console.log(`${nodes} DKV member(s) ${serverArgs.join(' ')}${withEtcd ? ' and 1 etcd 3.4 member' : ''}; ${totalMb} MB in ${valueKb} KB values`);
    await report('started', [dkv, etcd]);
    await workload(dkv, [dkv], 'dkv');
    // What each member's defrag saw of its own process: heap and buffers against the RSS.
    for (const file of logFiles) for (const line of readFileSync(file, 'utf8').split('\n')) if (line.includes('defragmented:')) console.log(`  ${line.slice(line.indexOf('defragmented:'))}`);
    if (withEtcd) await workload(etcd, [etcd], 'etcd');
  } finally {
    for (const member of [...dkv, ...etcd]) {
      member.channel.close();
      member.process.kill('SIGTERM');
    }
    await sleep(1000);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
