/** `dkv server`: one etcd-compatible node, configured with etcd's flag names. */
import { appendFileSync } from 'node:fs';
import { ConfigError, parseServerConfig, serverHelp, wantsHelp } from '../server/config';
import type { NodeLogger } from '../server/node';

function makeLogger(name: string, file: string | undefined, debug: boolean): NodeLogger {
  const write = (level: string, message: string): void => {
    const line = `${new Date().toISOString()} ${level} ${name}: ${message}\n`;
    if (file === undefined) process.stderr.write(line);
    else appendFileSync(file, line);
  };
  return {
    info: (m) => write('INFO', m),
    warn: (m) => write('WARN', m),
    debug: (m) => {
      if (debug) write('DEBUG', m);
    },
  };
}

/** The exit code of a member that stopped because it was removed from its cluster. */
export const removedMemberExitCode = 3;

export async function serverCommand(args: string[]): Promise<number> {
  if (wantsHelp(args)) {
    process.stdout.write(serverHelp);
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
  const logger = makeLogger(config.name, config.logFile, process.env.DKV_DEBUG === '1');
  for (const warning of config.warnings) logger.warn(warning);
  const { DkvNode } = await import('../server/node');
  return new Promise<number>((resolve, reject) => {
    const fatal = (error: Error): void => {
      // A removed member's error is the whole story; anything else is a bug worth its stack.
      logger.warn(`fatal: ${error.name === 'MemberRemovedError' ? error.message : (error.stack ?? error.message)}`);
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
          logger.warn(`stop failed: ${String(error)}`);
          resolve(1);
        },
      );
    };
  });
}
