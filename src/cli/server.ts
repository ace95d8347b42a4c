/** `dkv server`: one etcd-compatible node, configured with etcd's flag names. */
import { ConfigError, parseServerConfig, serverHelp, wantsHelp, wantsVersion } from '../server/config.js';
import { createServerLogger } from '../server/logger.js';
import { versionText } from '../server/version.js';

/** The exit code of a member that stopped because it was removed from its cluster. */
export const removedMemberExitCode = 3;

export async function serverCommand(args: string[]): Promise<number> {
  if (wantsHelp(args)) {
    process.stdout.write(serverHelp);
    return 0;
  }
  if (wantsVersion(args)) {
    process.stdout.write(versionText());
    return 0;
  }
  let config;
  try {
    config = parseServerConfig(args, process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`dkv server: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  const level = process.env.DKV_DEBUG === '1' ? 'debug' : config.logLevel;
  const logger = createServerLogger({ name: config.name, level, outputs: config.logOutputs, format: config.logFormat });
  for (const warning of config.warnings) logger.warn(warning);
  const { DkvNode } = await import('../server/node.js');
  return new Promise<number>((resolve, reject) => {
    const fatal = (error: Error): void => {
      // A removed member's error is the whole story; anything else is a bug worth its stack.
      logger.error(`fatal: ${error.name === 'MemberRemovedError' ? error.message : (error.stack ?? error.message)}`);
      process.stderr.write(`dkv server: fatal: ${error.message}\n`);
      const code = error.name === 'MemberRemovedError' ? removedMemberExitCode : 1;
      resolve(code);
      // Sockets and timers of the broken node would keep the process alive: leave now.
      setTimeout(() => process.exit(code), 100);
    };
    DkvNode.start(config, logger, { onFatal: fatal }).then((node) => {
      process.once('SIGTERM', () => shutdown(node, 'SIGTERM'));
      process.once('SIGINT', () => shutdown(node, 'SIGINT'));
    }, (error: unknown) => {
      if (error instanceof Error && error.name === 'StartupError') {
        logger.warn(`cannot start: ${error.message}`);
        process.stderr.write(`dkv server: ${error.message}\n`);
        resolve(2);
        return;
      }
      reject(error);
    });
    const shutdown = (node: { stop(): Promise<void> }, signal: string): void => {
      logger.info(`${signal}: stopping`);
      node.stop().then(
        () => resolve(0),
        (error: unknown) => {
          logger.error(`stop failed: ${String(error)}`);
          resolve(1);
        },
      );
    };
  });
}
