/** `dkv instance …`: instances of `dkv server` on this host (src/control/ does the work). */
import {
  createInstance,
  dkvHome,
  followLog,
  InstanceError,
  type InstanceStatus,
  instanceStatus,
  existingInstance,
  limits,
  listInstances,
  removeInstance,
  startInstance,
  stopInstance,
  tailLines,
} from '../control/index.js';
import { intOption, parseCommand, UsageError, withUsage } from './args.js';

export const instanceHelp = `Usage: dkv instance <command> NAME [options]

Runs dkv server instances on this host. Each has its own folder under the home, DKV_HOME
(default ~/.dkv):

  $DKV_HOME/instances/NAME/config.yaml  its configuration (what dkv server --config-file reads)
                           data/        its data directory (unless --data-dir put it elsewhere)
                           dkv.log      its server's log (stdout and stderr, appended)
                           dkv.pid      the pid of its running server

Two instances share nothing: own folder, data directory, ports, log, pid file and cluster token.

Commands:
  create NAME [--template T] [--client-port P] [--peer-port P] [--metrics-port P] [--data-dir D]
        writes NAME's config.yaml from a template. A port given must be free on this host and
        claimed by no other instance's config; a port not given is picked free (20000..32000).
        Templates:
          single        one member, a cluster of its own, on 127.0.0.1 (default)
          cluster-node  a member of a cluster across hosts: listens on all interfaces; with
                        --advertise-host H (default this host's name), --initial-cluster C
                        (default itself), --initial-cluster-state new|existing,
                        --initial-cluster-token T
          dev           a 3-member local cluster as three instances NAME-1, NAME-2, NAME-3
                        (only --client-port: member i uses P+10(i-1), peers +1, metrics +2);
                        "dkv instance start NAME-1 NAME-2 NAME-3" starts it
          FILE          a YAML file of dkv server's config keys (./mine.yaml); create sets
                        name, data-dir, the URLs and log-outputs, keeps the rest
  start NAME...        starts each detached (dkv server --config-file, its own process group)
                       and waits until it serves (Maintenance.Status answers); if it exits
                       first, prints the log's last lines. An instance already running is left.
  stop NAME... [--force]
                       SIGTERM and a wait for exit (the server flushes and exits 0);
                       --force: SIGKILL. A stale pid file (process gone, or its pid reused by
                       another program) is removed.
  restart NAME... [--force]
                       stop, then start
  status NAME [-w table|json]
                       running/stopped, pid, ports, health, leader, term, raft and applied index
  logs NAME [-n N] [-f]
                       the log's last N lines (default ${limits.logLinesDefault}); -f follows it until Ctrl-C
  rm NAME...           deletes a stopped instance's folder (a running one is refused)
  list [-w table|json] every instance, its state and client URL

Configuration: an instance's config.yaml is its whole configuration. dkv server, given
--config-file, ignores its other flags and DKV_*/ETCD_* variables (as etcd 3.5); start also
leaves DKV_*/ETCD_* out of the server's environment. create writes the template's settings,
then its own flags (ports, data dir) over them. To change an instance, edit config.yaml, run
"dkv config check" on it, and restart the instance.

Exit codes: 0 done, 1 an instance problem (the message names it), 2 bad usage.
`;

type Env = Readonly<Record<string, string | undefined>>;

const watchOption = { 'write-out': { type: 'string', short: 'w' } } as const;

function writeOut(value: string | undefined): 'table' | 'json' {
  const format = value ?? 'table';
  if (format !== 'table' && format !== 'json') throw new UsageError(`-w must be table or json, got "${format}"`);
  return format;
}

function portOption(value: string | undefined, name: string): number | undefined {
  return value === undefined ? undefined : intOption(value, name, 0, 1, 65_535);
}

function names(positionals: string[], command: string, many: boolean): string[] {
  if (positionals.length === 0) throw new UsageError(`dkv instance ${command} needs an instance NAME`);
  if (!many && positionals.length > 1) throw new UsageError(`dkv instance ${command} takes one NAME, got ${positionals.join(' ')}`);
  return positionals;
}

export async function instanceCommand(args: string[], env: Env = process.env): Promise<number> {
  return withUsage(instanceHelp, async () => {
    const [command, ...rest] = args;
    if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
      // A missing subcommand is a usage error: usage on stderr, exit 2; asked-for help goes to stdout.
      ((command === undefined) ? process.stderr : process.stdout).write(instanceHelp);
      return command === undefined ? 2 : 0;
    }
    if (rest.includes('--help') || rest.includes('-h')) {
      process.stdout.write(instanceHelp);
      return 0;
    }
    const home = dkvHome(env);
    try {
      switch (command) {
        case 'create':
          return await create(home, rest);
        case 'start':
          return await start(home, names(parseCommand(rest, {}).positionals, 'start', true));
        case 'stop':
        case 'restart': {
          const { values, positionals } = parseCommand(rest, { force: { type: 'boolean' } });
          const list = names(positionals, command, true);
          const code = await stop(home, list, values.force === true);
          return command === 'stop' || code !== 0 ? code : start(home, list);
        }
        case 'status': {
          const { values, positionals } = parseCommand(rest, watchOption);
          const format = writeOut(values['write-out']);
          const [name] = names(positionals, 'status', false);
          printStatus(await instanceStatus(home, name!), format);
          return 0;
        }
        case 'logs':
          return await logs(home, rest);
        case 'rm':
          return remove(home, names(parseCommand(rest, {}).positionals, 'rm', true));
        case 'list': {
          const { values, positionals } = parseCommand(rest, watchOption);
          if (positionals.length > 0) throw new UsageError('dkv instance list takes no NAME');
          printList(home, writeOut(values['write-out']));
          return 0;
        }
        default:
          throw new UsageError(`unknown instance command "${command}"`);
      }
    } catch (error) {
      if (error instanceof InstanceError) {
        process.stderr.write(`dkv instance ${command}: ${error.message}\n`);
        return 1;
      }
      throw error;
    }
  });
}

async function create(home: string, args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(args, {
    template: { type: 'string' },
    'client-port': { type: 'string' },
    'peer-port': { type: 'string' },
    'metrics-port': { type: 'string' },
    'data-dir': { type: 'string' },
    'advertise-host': { type: 'string' },
    'initial-cluster': { type: 'string' },
    'initial-cluster-state': { type: 'string' },
    'initial-cluster-token': { type: 'string' },
  });
  const [name] = names(positionals, 'create', false);
  const clusterFlags = ['advertise-host', 'initial-cluster', 'initial-cluster-state', 'initial-cluster-token'] as const;
  const misplaced = clusterFlags.find((flag) => values[flag] !== undefined);
  if (misplaced !== undefined && values.template !== 'cluster-node') {
    throw new UsageError(`--${misplaced} is for --template cluster-node only`);
  }
  const created = await createInstance({
    home,
    name: name!,
    template: values.template,
    clientPort: portOption(values['client-port'], 'client-port'),
    peerPort: portOption(values['peer-port'], 'peer-port'),
    metricsPort: portOption(values['metrics-port'], 'metrics-port'),
    dataDir: values['data-dir'],
    advertiseHost: values['advertise-host'],
    initialCluster: values['initial-cluster'],
    initialClusterState: values['initial-cluster-state'],
    initialClusterToken: values['initial-cluster-token'],
  });
  for (const instance of created) {
    process.stdout.write(
      `created instance ${instance.name}: client ${instance.clientUrl}, peer port ${instance.ports.peer}, ` +
        `metrics port ${instance.ports.metrics}, config ${instance.configFile}\n`,
    );
  }
  process.stdout.write(`start it: dkv instance start ${created.map((i) => i.name).join(' ')}\n`);
  return 0;
}

async function start(home: string, list: readonly string[]): Promise<number> {
  // Together, so that the members of a cluster (the dev template) find one another.
  const results = await Promise.allSettled(list.map((name) => startInstance(home, name)));
  let code = 0;
  for (const [i, result] of results.entries()) {
    if (result.status === 'rejected') {
      if (!(result.reason instanceof InstanceError)) throw result.reason;
      process.stderr.write(`dkv instance start: ${result.reason.message}\n`);
      code = 1;
      continue;
    }
    const r = result.value;
    if (r.stale !== undefined) process.stdout.write(`${list[i]}: removed a ${r.stale}\n`);
    process.stdout.write(r.alreadyRunning ? `${r.name} is already running (pid ${r.pid}), serving ${r.clientUrl}\n` : `started ${r.name} (pid ${r.pid}), serving ${r.clientUrl}\n`);
  }
  return code;
}

async function stop(home: string, list: readonly string[], force: boolean): Promise<number> {
  const results = await Promise.allSettled(list.map((name) => stopInstance(home, name, force)));
  let code = 0;
  for (const result of results) {
    if (result.status === 'rejected') {
      if (!(result.reason instanceof InstanceError)) throw result.reason;
      process.stderr.write(`dkv instance stop: ${result.reason.message}\n`);
      code = 1;
      continue;
    }
    const r = result.value;
    if (r.stale !== undefined) process.stdout.write(`${r.name}: removed a ${r.stale}\n`);
    process.stdout.write(r.pid === undefined ? `${r.name} is not running\n` : `stopped ${r.name} (pid ${r.pid}${force ? ', killed' : ''})\n`);
  }
  return code;
}

function remove(home: string, list: readonly string[]): number {
  for (const name of list) {
    const removed = removeInstance(home, name);
    process.stdout.write(`removed ${name}\n`);
    if (removed.dataDirKept !== undefined) process.stdout.write(`${name}: its data directory ${removed.dataDirKept} is outside the instance folder and was kept\n`);
  }
  return 0;
}

async function logs(home: string, args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(args, { follow: { type: 'boolean', short: 'f' }, lines: { type: 'string', short: 'n' } });
  const [name] = names(positionals, 'logs', false);
  const count = intOption(values.lines, 'lines', limits.logLinesDefault, 0, limits.logLinesMax);
  const paths = existingInstance(home, name!);
  for (const line of tailLines(paths.log, count)) process.stdout.write(`${line}\n`);
  if (values.follow !== true) return 0;
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  process.once('SIGTERM', () => stop.abort());
  await followLog(paths.log, (text) => process.stdout.write(text), stop.signal);
  return 0;
}

function table(rows: ReadonlyArray<readonly string[]>): string {
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length))) ?? [];
  return rows.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column] ?? 0))).join('  ')).join('\n') + '\n';
}

function printStatus(status: InstanceStatus, format: 'table' | 'json'): void {
  if (format === 'json') {
    process.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
    return;
  }
  const shown = (value: unknown): string => (value === null ? '-' : Array.isArray(value) ? (value.length === 0 ? '-' : value.join('; ')) : String(value));
  const rows = Object.entries(status).map(([key, value]) => [key, shown(value)] as const);
  process.stdout.write(table(rows));
}

function printList(home: string, format: 'table' | 'json'): void {
  const instances = listInstances(home);
  if (format === 'json') {
    process.stdout.write(`${JSON.stringify(instances, null, 2)}\n`);
    return;
  }
  const rows = instances.map((i) => [i.name, i.configError === null ? i.state : `${i.state} (bad config)`, i.pid === null ? '-' : String(i.pid), i.clientUrl ?? '-']);
  process.stdout.write(table([['NAME', 'STATE', 'PID', 'CLIENT URL'], ...rows]));
}
