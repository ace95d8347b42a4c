/**
 * Versions `dkv --version` and `dkv server --version` print, in the shape of `etcd --version`.
 * Kept free of heavy imports: printing the version must not load gRPC or LevelDB.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../package-root.js';

/** The etcd API version DKV speaks (reported by Status; clients gate features on it). */
export const etcdApiVersion = '3.5.0';


/** DKV's own version, from package.json. */
export function dkvVersion(): string {
  const manifest = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version?: unknown };
  return typeof manifest.version === 'string' ? manifest.version : 'unknown';
}

/** The commit DKV runs from when it runs from a git checkout; undefined otherwise. */
export function gitCommit(): string | undefined {
  if (!existsSync(join(packageRoot, '.git'))) return undefined;
  const result = spawnSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: packageRoot, encoding: 'utf8', timeout: 2000 });
  const sha = result.status === 0 ? result.stdout.trim() : '';
  return sha === '' ? undefined : sha;
}

/** The lines of `--version`. */
export function versionText(): string {
  return [
    `DKV Version: ${dkvVersion()}`,
    `etcd API Version: ${etcdApiVersion}`,
    `Git SHA: ${gitCommit() ?? 'not known (not run from a git checkout)'}`,
    `Node Version: ${process.version}`,
    `Node OS/Arch: ${process.platform}/${process.arch}`,
    '',
  ].join('\n');
}
