/** `dkv config check FILE`: a config file validated by the parser `dkv server --config-file` uses. */
import { checkConfigFile } from '../control/index.js';
import { parseCommand, UsageError, withUsage } from './args.js';

export const configHelp = `Usage: dkv config check FILE [-w table|json]

Validates FILE, a YAML config file of dkv server's keys (etcd's config file keys plus DKV's),
with the server's own parser. A good file: a summary, exit 0. A bad one: one message per bad
field, exit 2 (checks across fields, such as the member being in initial-cluster, run once each
field is good on its own). Warnings (etcd keys DKV does not use) are printed either way.

Where settings come from:
  dkv server without --config-file: a flag, else DKV_<FLAG>, else ETCD_<FLAG>, else the default.
  dkv server --config-file FILE: FILE alone (as etcd 3.5); other flags and DKV_*/ETCD_*
    variables are ignored, with a warning naming them.
  dkv instance: the instance's config.yaml alone (see dkv instance --help).
docs/dkv.example.yaml is an example with every key DKV uses.
`;

export async function configCommand(args: string[]): Promise<number> {
  return withUsage(configHelp, () => {
    const [command, ...rest] = args;
    if (command === undefined || command === 'help' || command === '--help' || command === '-h' || rest.includes('--help') || rest.includes('-h')) {
      // A missing subcommand is a usage error: usage on stderr, exit 2; asked-for help goes to stdout.
      ((command === undefined) ? process.stderr : process.stdout).write(configHelp);
      return command === undefined ? 2 : 0;
    }
    if (command !== 'check') throw new UsageError(`unknown config command "${command}"`);
    const { values, positionals } = parseCommand(rest, { 'write-out': { type: 'string', short: 'w' } });
    const format = values['write-out'] ?? 'table';
    if (format !== 'table' && format !== 'json') throw new UsageError(`-w must be table or json, got "${format}"`);
    if (positionals.length !== 1) throw new UsageError('dkv config check takes one FILE');
    const file = positionals[0]!;
    const { config, errors, warnings } = checkConfigFile(file);
    if (format === 'json') {
      const summary = config === undefined ? null : { name: config.name, dataDir: config.dataDir, clientUrls: config.advertiseClientUrls.map((u) => u.href) };
      process.stdout.write(`${JSON.stringify({ file, valid: errors.length === 0, errors: errors.map((e) => ({ field: e.field, message: e.message })), warnings, summary }, null, 2)}\n`);
      return errors.length === 0 ? 0 : 2;
    }
    for (const warning of warnings) process.stderr.write(`warning: ${warning}\n`);
    if (config === undefined) {
      process.stderr.write(`dkv config check: ${file}: ${errors.length} ${errors.length === 1 ? 'problem' : 'problems'}\n`);
      for (const error of errors) process.stderr.write(`  ${error.message}\n`);
      return 2;
    }
    const urls = (list: ReadonlyArray<{ href: string }>): string => (list.length === 0 ? '-' : list.map((u) => u.href).join(','));
    process.stdout.write(
      [
        `${file}: valid`,
        `  name                 ${config.name}`,
        `  data-dir             ${config.dataDir}`,
        `  client URLs          ${urls(config.listenClientUrls)} (advertised ${urls(config.advertiseClientUrls)})`,
        `  peer URLs            ${urls(config.listenPeerUrls)} (advertised ${urls(config.initialAdvertisePeerUrls)})`,
        `  metrics URLs         ${urls(config.listenMetricsUrls)}`,
        `  initial cluster      ${config.initialCluster.map((m) => `${m.name}=${urls(m.peerUrls)}`).join(',')} (${config.initialClusterState}, token ${config.initialClusterToken})`,
        `  timing               tick ${config.tickMs} ms, heartbeat ${config.heartbeatTicks} ticks, election ${config.electionTicks} ticks`,
        `  log                  ${config.logLevel} to ${config.logOutputs.join(',')}`,
        `  settings changed     ${config.changedSettings.length}`,
        '',
      ].join('\n'),
    );
    return 0;
  });
}
