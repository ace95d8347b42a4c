/**
 * Templates: the etcd-style config file (the keys `dkv server --config-file` reads) an instance
 * starts from. Whatever the template, `create` owns these keys and sets them: name, data-dir, the
 * listen and advertise URLs (its ports) and log-outputs (stderr, which `start` sends to dkv.log).
 *
 *   single        one member, a cluster of its own, on 127.0.0.1 (the default)
 *   cluster-node  one member of a cluster across hosts: listens on every interface, advertises
 *                 --advertise-host (default: this host's name); --initial-cluster lists the members
 *                 (default: itself alone), --initial-cluster-state new|existing; periodic
 *                 auto-compaction keeping 1 h
 *   dev           a 3-member local cluster as three instances NAME-1, NAME-2, NAME-3, each an
 *                 ordinary instance (started, stopped and removed one by one or together)
 *   FILE          a YAML file of the same keys (./mine.yaml): its settings, then the keys above;
 *                 its initial-cluster is kept if it has one, else the member alone
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parse as parseYaml } from 'yaml';
import { InstanceError } from './errors.js';
import type { InstancePaths } from './home.js';

export const templateNames = ['single', 'cluster-node', 'dev'] as const;
export type TemplateName = (typeof templateNames)[number];

/** A template as `--template` names it: one of ours, or a file (a path or a .yaml/.yml name). */
export type Template = { kind: 'builtin'; name: TemplateName } | { kind: 'file'; path: string };

export function parseTemplate(text: string): Template {
  const builtin = templateNames.find((name) => name === text);
  if (builtin !== undefined) return { kind: 'builtin', name: builtin };
  if (text.includes('/') || /\.ya?ml$/i.test(text)) return { kind: 'file', path: text };
  throw new InstanceError('bad-template', `unknown template "${text}": use ${templateNames.join(', ')} or a YAML file (./mine.yaml)`);
}

export interface MemberPorts {
  readonly client: number;
  readonly peer: number;
  readonly metrics: number;
}

/** One member to write a config for. */
export interface PlannedMember {
  readonly paths: InstancePaths;
  readonly ports: MemberPorts;
  /** Its data directory (default paths.data). */
  readonly dataDir: string;
}

/** What cluster-node (and only it) takes from the command line. */
export interface ClusterNodeOptions {
  readonly advertiseHost?: string | undefined;
  readonly initialCluster?: string | undefined;
  readonly initialClusterState?: string | undefined;
  readonly initialClusterToken?: string | undefined;
}

/** The host a template's members listen on (for the port checks). */
export function listenHostOf(template: Template): string {
  return template.kind === 'builtin' && template.name === 'cluster-node' ? '0.0.0.0' : '127.0.0.1';
}

type Document = Record<string, unknown>;

function ownedKeys(member: PlannedMember, listenHost: string, advertiseHost: string): Document {
  const url = (host: string, port: number): string => `http://${host}:${port}`;
  return {
    name: member.paths.name,
    'data-dir': member.dataDir,
    'listen-client-urls': url(listenHost, member.ports.client),
    'advertise-client-urls': url(advertiseHost, member.ports.client),
    'listen-peer-urls': url(listenHost, member.ports.peer),
    'initial-advertise-peer-urls': url(advertiseHost, member.ports.peer),
    'listen-metrics-urls': url(listenHost, member.ports.metrics),
    'log-outputs': ['stderr'],
  };
}

function selfCluster(member: PlannedMember, advertiseHost: string): string {
  return `${member.paths.name}=http://${advertiseHost}:${member.ports.peer}`;
}

/** The config documents of the members, in order; throws InstanceError('bad-template') for a bad file. */
export function configDocuments(template: Template, members: readonly PlannedMember[], options: ClusterNodeOptions = {}): Document[] {
  if (template.kind === 'file') return members.map((member) => fromFile(template.path, member));
  switch (template.name) {
    case 'single':
      return members.map((member) => ({
        ...ownedKeys(member, '127.0.0.1', '127.0.0.1'),
        'initial-cluster': selfCluster(member, '127.0.0.1'),
        'initial-cluster-state': 'new',
        // Its own token, so that two instances can never take each other for a member.
        'initial-cluster-token': `dkv-${member.paths.name}`,
      }));
    case 'cluster-node': {
      const host = options.advertiseHost ?? hostname();
      return members.map((member) => ({
        ...ownedKeys(member, '0.0.0.0', host),
        'initial-cluster': options.initialCluster ?? selfCluster(member, host),
        'initial-cluster-state': options.initialClusterState ?? 'new',
        'initial-cluster-token': options.initialClusterToken ?? 'dkv-cluster',
        'auto-compaction-mode': 'periodic',
        'auto-compaction-retention': '1h',
      }));
    }
    case 'dev': {
      const cluster = members.map((member) => selfCluster(member, '127.0.0.1')).join(',');
      const group = members[0]?.paths.name.replace(/-1$/, '') ?? 'dev';
      return members.map((member) => ({
        ...ownedKeys(member, '127.0.0.1', '127.0.0.1'),
        'initial-cluster': cluster,
        'initial-cluster-state': 'new',
        'initial-cluster-token': `dkv-${group}`,
      }));
    }
  }
}

function fromFile(path: string, member: PlannedMember): Document {
  let document: unknown;
  try {
    document = parseYaml(readFileSync(path, 'utf8')) ?? {};
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? String((error as Error).message).split('\n', 1)[0];
    throw new InstanceError('bad-template', `template "${path}" cannot be read as YAML: ${reason}`);
  }
  if (typeof document !== 'object' || document === null || Array.isArray(document)) {
    throw new InstanceError('bad-template', `template "${path}" must hold a YAML mapping of dkv server's config keys`);
  }
  const given = document as Document;
  const { 'log-file': _logFile, ...rest } = given;
  return {
    ...rest,
    ...ownedKeys(member, '127.0.0.1', '127.0.0.1'),
    'initial-cluster': given['initial-cluster'] ?? selfCluster(member, '127.0.0.1'),
  };
}
