/**
 * `dkv dev` (what `npm start` runs): a local cluster on loopback, one `dkv server` process per
 * node. It prints the client endpoints as one comma-separated line once the cluster has a leader,
 * and stops every node cleanly on Ctrl-C / SIGTERM. Started again on the same data directory, the
 * cluster resumes with all its data.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, openSync } from 'node:fs';
import { dkvBin, serverProcessEnv } from '../package-root.js';
import { ConfigError, devClusterLayout, type DevNode } from '../server/config.js';
import { intOption, parseOptions, withUsage } from './args.js';
import { removedMemberExitCode } from './server.js';

export const devHelp = `Usage: dkv dev [--nodes N] [--base-port P] [--data-dir DIR]

Starts a local DKV cluster on 127.0.0.1, one process per node. Node i (from 1) listens for
clients on P + 10·(i−1), for peers on that + 1, and serves /metrics and /health on that + 2.
Each node keeps its data in DIR/dkvI and logs to DIR/dkvI.log. When the cluster has a leader
the client endpoints are printed on one line as host:port,…, ready for
--endpoints of etcdctl (its endpoint commands need host:port) and dkv. Ctrl-C stops every
node; starting again with the same DIR resumes the cluster with its data.

Options:
  --nodes N       number of nodes (default 3)
  --base-port P   node 1's client port (default 2379)
  --data-dir DIR  where data and logs go (default .dkv/dev)
  -h, --help      show this text
`;

/** How long the cluster may take to elect a leader before dev gives up. */
export const devLeaderWaitMs = 30_000;
const healthPollMs = 100;


async function hasLeader(node: DevNode): Promise<boolean> {
  try {
    const response = await fetch(`${node.metricsUrl}/health`, { signal: AbortSignal.timeout(1000) });
    return response.status === 200;
  } catch {
    return false;
  }
}

export async function devCommand(args: string[]): Promise<number> {
  return withUsage(devHelp, async () => {
    const o = parseOptions(args, {
      nodes: { type: 'string' },
      'base-port': { type: 'string' },
      'data-dir': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    });
    if (o.help === true) {
      process.stdout.write(devHelp);
      return 0;
    }
    const nodes = intOption(o.nodes, 'nodes', 3, 1, 99);
    const basePort = intOption(o['base-port'], 'base-port', 2379, 1, 65535);
    const dataDir = typeof o['data-dir'] === 'string' ? o['data-dir'] : '.dkv/dev';
    let layout;
    try {
      layout = devClusterLayout({ nodes, basePort, dataDir });
    } catch (error) {
      if (error instanceof ConfigError) {
        process.stderr.write(`dkv dev: ${error.message}\n`);
        return 2;
      }
      throw error;
    }
    mkdirSync(dataDir, { recursive: true });
    return runCluster(layout.nodes);
  }, 'dkv dev');
}

function runCluster(nodes: readonly DevNode[]): Promise<number> {
  return new Promise<number>((resolve) => {
    const children = new Map<string, ChildProcess>();
    let stopping = false;
    let exitCode = 0;
    const stopAll = (code: number): void => {
      if (stopping) return;
      stopping = true;
      exitCode = code;
      for (const child of children.values()) child.kill('SIGTERM');
      if (children.size === 0) resolve(exitCode);
    };
    for (const node of nodes) {
      const log = openSync(node.logFile, 'a');
      const child = spawn(process.execPath, [dkvBin, 'server', ...node.args], { stdio: ['ignore', log, log], env: serverProcessEnv() });
      children.set(node.name, child);
      child.on('exit', (code, signal) => {
        children.delete(node.name);
        if (!stopping && code === removedMemberExitCode) {
          // Removed by `etcdctl member remove`: the others are still a cluster.
          process.stderr.write(`dkv dev: ${node.name} was removed from the cluster and exited; the other nodes keep running (see ${node.logFile}).\n`);
        } else if (!stopping) {
          process.stderr.write(`dkv dev: ${node.name} exited (${signal ?? `code ${code}`}); see ${node.logFile}. Stopping the cluster.\n`);
          stopAll(1);
        }
        if (children.size === 0) resolve(exitCode);
      });
    }
    process.once('SIGINT', () => stopAll(0));
    process.once('SIGTERM', () => stopAll(0));
    const started = Date.now();
    const poll = async (): Promise<void> => {
      if (stopping) return;
      const ready = await Promise.all(nodes.map(hasLeader));
      if (ready.every(Boolean)) {
        process.stdout.write(`${nodes.map((n) => n.clientUrl.replace(/^https?:\/\//, '')).join(',')}\n`);
        return;
      }
      if (Date.now() - started > devLeaderWaitMs) {
        process.stderr.write(`dkv dev: no leader after ${devLeaderWaitMs / 1000} s; see the logs in ${nodes[0]!.logFile.replace(/[^/]*$/, '')}\n`);
        stopAll(1);
        return;
      }
      setTimeout(() => void poll(), healthPollMs);
    };
    void poll();
  });
}
