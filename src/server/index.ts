/**
 * `clustron-dkv/server`: run a DKV node inside your own process (tests, tools, an embedded
 * store). A node is configured exactly as `dkv server` is, with etcd's flag names:
 *
 * ```ts
 * import { startServer } from 'clustron-dkv/server';
 * const node = await startServer(['--name', 'n1', '--data-dir', '/tmp/n1']);
 * // … clients connect to node.config.advertiseClientUrls …
 * await node.stop();
 * ```
 */
import { parseServerConfig, type ServerConfig } from './config.js';
import { createServerLogger } from './logger.js';
import { DkvNode, type DkvNodeOptions, type NodeLogger } from './node.js';

export { ConfigError, parseServerConfig, serverHelp, type ServerConfig } from './config.js';
export { createServerLogger, type ServerLogger } from './logger.js';
export { DkvNode, type DkvNodeOptions, MemberRemovedError, type NodeLogger } from './node.js';
export { dkvVersion, etcdApiVersion, versionText } from './version.js';

/** What `startServer` takes besides the flags. */
export interface StartServerOptions extends DkvNodeOptions {
  /** Where the node logs (default: a logger writing `--log-level` lines to `--log-outputs`). */
  readonly logger?: NodeLogger;
  /** Environment consulted for `DKV_*`/`ETCD_*` settings (default: none, only `args`). */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/**
 * Parses `args` as `dkv server` does and starts the node; resolves once it serves clients.
 * Throws `ConfigError` for a bad flag and a `StartupError` (by `name`) for a data-dir problem.
 */
export async function startServer(args: readonly string[], options: StartServerOptions = {}): Promise<DkvNode> {
  const config: ServerConfig = parseServerConfig([...args], options.env ?? {});
  const logger = options.logger ?? createServerLogger({ name: config.name, level: config.logLevel, outputs: config.logOutputs, format: config.logFormat });
  return DkvNode.start(config, logger, options);
}
