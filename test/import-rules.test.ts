/**
 * Each folder's import rule, as its README states it (ARCHITECTURE.md has the map): what a folder
 * may import from the others, and that it does so only through their front doors (`index.ts`).
 * raft/'s stricter purity (no clock, timers, node modules) is test/raft/purity.test.ts.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');

/** Front doors: a folder outside may import only these files of another folder. */
const frontDoors = [
  'raft/index.ts',
  'storage/index.ts',
  // Constants only: the client's proto loader reads the MVCC limits without loading LevelDB.
  'storage/mvcc/limits.ts',
  'src/runtime/index.ts',
  'src/engines/index.ts',
  'src/engines/kv/index.ts',
  'src/engines/meta/index.ts',
  'src/engines/lease/index.ts',
  // Constants only: `dkv lock` and `dkv elect` check --ttl without loading the engine and the protos.
  'src/engines/lease/limits.ts',
  'src/engines/ttl/index.ts',
  'src/engines/counter/index.ts',
  'src/engines/expiry/index.ts',
  'src/engines/watch/index.ts',
  'src/engines/expiry/index.ts',
  'src/client/index.ts',
  'src/cluster/index.ts',
  // The pure part of the cluster model (the shard map): the engines keep it in the meta shard.
  'src/cluster/model.ts',
  'src/server/peer/index.ts',
  // The config parser alone (pure: reads the config file, no node): the control plane checks
  // instance configs with the server's own parser.
  'src/server/config.ts',
  'jepsen-lite/sim/index.ts',
  'jepsen-lite/sim/jepsen/index.ts',
  'jepsen-lite/check/index.ts',
  'jepsen-lite/workload/index.ts',
  'jepsen-lite/report/index.ts',
];

/** Shared single files every folder above storage may use. */
const sharedFiles = ['src/etcd-proto.ts', 'src/errors.ts', 'src/error-mapping.ts', 'src/package-root.ts'];

interface Rule {
  /** The folder the rule is about (every .ts under it). */
  readonly folder: string;
  /** Folders (prefixes) or files it may import, besides its own folder. */
  readonly may: readonly string[];
  /** Node built-ins it must not use. */
  readonly noNodeModules?: boolean;
}

const rules: readonly Rule[] = [
  { folder: 'storage/', may: ['raft/'] },
  // The runtime is clock- and I/O-free: storage, transport, clock and scheduler are injected.
  { folder: 'src/runtime/', may: ['raft/', 'storage/', 'src/cluster/model.ts', 'src/engines/'], noNodeModules: true },
  { folder: 'src/engines/', may: ['raft/', 'storage/', 'src/cluster/model.ts', 'src/etcd-proto.ts'], noNodeModules: true },
  { folder: 'src/cluster/', may: [] },
  { folder: 'src/client/', may: ['src/etcd-proto.ts', 'src/errors.ts', 'storage/'] },
  { folder: 'src/server/peer/', may: ['raft/'] },
  // Starts servers as processes and asks them as a client; of the server only its config parser.
  { folder: 'src/control/', may: ['src/server/config.ts', 'src/client/', 'src/package-root.ts'] },
  { folder: 'src/server/', may: ['raft/', 'storage/', 'src/runtime/', 'src/engines/', 'src/cluster/', 'src/client/', ...sharedFiles] },
  {
    folder: 'jepsen-lite/',
    may: ['raft/', 'storage/', 'src/runtime/', 'src/engines/', 'src/client/', 'src/cluster/model.ts', 'src/cli/args.ts', ...sharedFiles],
  },
];

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, dir))) {
    const path = join(dir, name);
    if (statSync(join(root, path)).isDirectory()) out.push(...sourceFiles(path));
    else if (name.endsWith('.ts')) out.push(path);
  }
  return out;
}

/** Relative imports of a file, resolved to repo-relative paths (with .ts). */
function importsOf(file: string): { relative: string[]; node: string[] } {
  const source = readFileSync(join(root, file), 'utf8').replace(/\/\/.*$|\/\*[\s\S]*?\*\//gm, '');
  const relativeImports: string[] = [];
  const nodeImports: string[] = [];
  for (const match of source.matchAll(/(?:from|import)\s+['"]([^'"]+)['"]/g)) {
    const target = match[1]!;
    if (target.startsWith('.')) relativeImports.push(relative(root, resolve(root, dirname(file), target)).replace(/(\.js|\.ts)?$/, '.ts'));
    else if (target.startsWith('node:')) nodeImports.push(target);
  }
  return { relative: relativeImports, node: nodeImports };
}

/** The most specific rule for a file (src/server/peer/ before src/server/). */
function ruleFor(file: string): Rule | undefined {
  return rules.filter((r) => file.startsWith(r.folder)).sort((a, b) => b.folder.length - a.folder.length)[0];
}

describe('folder import rules', () => {
  for (const rule of rules) {
    it(`${rule.folder} imports only what its README allows, through front doors`, () => {
      const files = sourceFiles(rule.folder).filter((f) => ruleFor(f) === rule);
      expect(files.length).toBeGreaterThan(0);
      const problems: string[] = [];
      for (const file of files) {
        const { relative: targets, node } = importsOf(file);
        if (rule.noNodeModules === true) for (const target of node) problems.push(`${file} uses ${target}`);
        for (const target of targets) {
          if (target.startsWith(rule.folder)) continue;
          const allowed = rule.may.some((m) => (m.endsWith('.ts') ? target === m : target.startsWith(m)));
          if (!allowed) {
            problems.push(`${file} imports ${target}`);
            continue;
          }
          if (!sharedFiles.includes(target) && target !== 'src/cli/args.ts' && !frontDoors.includes(target)) problems.push(`${file} imports ${target}, not a front door`);
        }
      }
      expect(problems).toEqual([]);
    });
  }
});
