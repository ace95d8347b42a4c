/**
 * Where instances live: one home (`DKV_HOME`, default `~/.dkv`), one folder per instance:
 *
 *   $DKV_HOME/instances/NAME/config.yaml   the instance's only configuration (dkv server --config-file)
 *                            data/         its data directory
 *                            dkv.log       its server's stdout and stderr (its log)
 *                            dkv.pid       the pid of its running server
 */
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { instanceNameLengthMax } from './limits.js';
import { InstanceError } from './errors.js';

export interface InstancePaths {
  readonly name: string;
  readonly dir: string;
  readonly config: string;
  readonly data: string;
  readonly log: string;
  readonly pid: string;
}

/** The home folder: `DKV_HOME` if set (made absolute), else `~/.dkv`. */
export function dkvHome(env: Readonly<Record<string, string | undefined>>): string {
  const given = env.DKV_HOME;
  return given !== undefined && given !== '' ? resolve(given) : join(homedir(), '.dkv');
}

export function instancesDir(home: string): string {
  return join(home, 'instances');
}

const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Throws InstanceError('bad-name') unless `name` can name an instance (a folder, a member name). */
export function checkInstanceName(name: string): void {
  if (name.length > instanceNameLengthMax || !namePattern.test(name)) {
    throw new InstanceError(
      'bad-name',
      `bad instance name "${name}": use 1 to ${instanceNameLengthMax} letters, digits, ".", "_" or "-", starting with a letter or digit`,
    );
  }
}

export function instancePaths(home: string, name: string): InstancePaths {
  checkInstanceName(name);
  // Absolute, so the pid check can match the server's --config-file argument exactly.
  const dir = join(instancesDir(resolve(home)), name);
  return {
    name,
    dir,
    config: join(dir, 'config.yaml'),
    data: join(dir, 'data'),
    log: join(dir, 'dkv.log'),
    pid: join(dir, 'dkv.pid'),
  };
}
