/**
 * Instances on one host: create (a config from a template, checked ports, its own folder),
 * start (a detached `dkv server --config-file`), stop, remove, list. Two instances share nothing:
 * each has its folder, data directory, ports, log, pid file and cluster token.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { dkvBin, processVariables, serverProcessEnv } from '../package-root.js';
import { checkConfigFile, type ConfigError, type ServerConfig } from '../server/config.js';
import { InstanceError } from './errors.js';
import { checkInstanceName, instancePaths, instancesDir, type InstancePaths } from './home.js';
import { devMembers, devPortStride, killWaitMs, pollMs, startFailureLogLines, startWaitMs, stopWaitMs } from './limits.js';
import { tailLines } from './logs.js';
import { checkPort, claimedPorts, pickPort } from './ports.js';
import { processExited, processState, removePidFile, signalServer, writePidFile, type ProcessState } from './processes.js';
import { probeServing } from './probe.js';
import { type ClusterNodeOptions, configDocuments, listenHostOf, type MemberPorts, parseTemplate, type PlannedMember, type Template } from './templates.js';

export interface CreateOptions extends ClusterNodeOptions {
  readonly home: string;
  readonly name: string;
  /** single (default), cluster-node, dev, or a YAML file. */
  readonly template?: string | undefined;
  readonly clientPort?: number | undefined;
  readonly peerPort?: number | undefined;
  readonly metricsPort?: number | undefined;
  readonly dataDir?: string | undefined;
}

export interface CreatedInstance {
  readonly name: string;
  readonly configFile: string;
  readonly clientUrl: string;
  readonly ports: MemberPorts;
  readonly dataDir: string;
}

/** Creates the instance (dev: NAME-1..NAME-3); nothing is left behind when it fails. */
export async function createInstance(options: CreateOptions): Promise<CreatedInstance[]> {
  checkInstanceName(options.name);
  const template = parseTemplate(options.template ?? 'single');
  const dev = template.kind === 'builtin' && template.name === 'dev';
  if (dev && (options.peerPort !== undefined || options.metricsPort !== undefined || options.dataDir !== undefined)) {
    throw new InstanceError('bad-option', `the dev template lays out ${devMembers} members itself: give only --client-port (member i uses it + ${devPortStride}·(i−1), peers +1, metrics +2)`);
  }
  const names = dev ? Array.from({ length: devMembers }, (_, i) => `${options.name}-${i + 1}`) : [options.name];
  const paths = names.map((name) => instancePaths(options.home, name));
  for (const p of paths) {
    if (existsSync(p.dir)) throw new InstanceError('exists', `instance "${p.name}" already exists (${p.dir}); dkv instance rm ${p.name} first`);
  }
  const members = await planPorts(options, template, paths);
  const documents = configDocuments(template, members, options);
  mkdirSync(instancesDir(options.home), { recursive: true });
  const made: InstancePaths[] = [];
  try {
    for (const [i, member] of members.entries()) {
      const p = member.paths;
      try {
        mkdirSync(p.dir);
      } catch {
        throw new InstanceError('exists', `instance "${p.name}" already exists (${p.dir})`);
      }
      made.push(p);
      writeFileSync(p.config, configText(p.name, options.template ?? 'single', documents[i]!));
      mkdirSync(member.dataDir, { recursive: true });
      writeFileSync(p.log, '');
      const check = checkConfigFile(p.config);
      if (check.errors.length > 0) {
        throw new InstanceError('bad-config', `the config made from template "${options.template}" is not valid:\n${check.errors.map((e) => `  ${e.message}`).join('\n')}`);
      }
    }
  } catch (error) {
    for (const p of made) rmSync(p.dir, { recursive: true, force: true });
    throw error;
  }
  return members.map((member) => ({
    name: member.paths.name,
    configFile: member.paths.config,
    clientUrl: `http://127.0.0.1:${member.ports.client}`,
    ports: member.ports,
    dataDir: member.dataDir,
  }));
}

async function planPorts(options: CreateOptions, template: Template, paths: readonly InstancePaths[]): Promise<PlannedMember[]> {
  const host = listenHostOf(template);
  const claims = claimedPorts(options.home);
  const taken = new Set<number>();
  const port = async (given: number | undefined, what: string): Promise<number> => {
    if (given !== undefined) {
      if (taken.has(given)) throw new InstanceError('port-claimed', `${what} ${given} is given twice`);
      await checkPort(host, given, what, claims);
    }
    const chosen = given ?? (await pickPort(host, claims, taken));
    taken.add(chosen);
    return chosen;
  };
  const members: PlannedMember[] = [];
  for (const [i, p] of paths.entries()) {
    const base = options.clientPort === undefined ? undefined : options.clientPort + devPortStride * i;
    const devLayout = paths.length > 1 && base !== undefined;
    const ports = {
      client: await port(base, `client port`),
      peer: await port(devLayout ? base + 1 : options.peerPort, 'peer port'),
      metrics: await port(devLayout ? base + 2 : options.metricsPort, 'metrics port'),
    };
    members.push({ paths: p, ports, dataDir: options.dataDir === undefined ? p.data : resolve(options.dataDir) });
  }
  return members;
}

function configText(name: string, template: string, document: Record<string, unknown>): string {
  return [
    `# dkv instance "${name}" (template ${template}), read by: dkv server --config-file <this file>`,
    '# This file is the instance\'s whole configuration: dkv instance start ignores DKV_*/ETCD_*',
    '# variables. After an edit, check it (dkv config check <this file>) and restart the instance.',
    stringify(document, { lineWidth: 0 }),
  ].join('\n');
}

/** The instance's folder, or InstanceError('not-found'). */
export function existingInstance(home: string, name: string): InstancePaths {
  const paths = instancePaths(home, name);
  if (!existsSync(paths.config)) throw new InstanceError('not-found', `no instance "${name}" (looked in ${paths.dir}); dkv instance list shows them`);
  return paths;
}

/** The instance's config as the server reads it, or InstanceError('bad-config') with every bad field. */
export function instanceConfig(paths: InstancePaths): ServerConfig {
  const check = checkConfigFile(paths.config);
  if (check.config === undefined) throw badConfig(paths, check.errors);
  return check.config;
}

function badConfig(paths: InstancePaths, errors: readonly ConfigError[]): InstanceError {
  return new InstanceError('bad-config', `instance "${paths.name}": ${paths.config} is not valid:\n${errors.map((e) => `  ${e.message}`).join('\n')}`);
}

/** The environment of a started server: every DKV_ and ETCD_ setting removed (the config file is the whole configuration), process variables kept. */
export function serverEnvironment(env: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value === undefined) continue;
    // Process variables (DKV_FROM_SOURCE: how bin/dkv.js loads the code; DKV_ALLOCATOR, DKV_DEBUG) are not configuration.
    if ((key.startsWith('DKV_') || key.startsWith('ETCD_')) && !processVariables.includes(key)) continue;
    out[key] = value;
  }
  return out;
}

export interface StartResult {
  readonly name: string;
  readonly pid: number;
  readonly clientUrl: string;
  readonly alreadyRunning: boolean;
  /** The pid of a stale pid file that was replaced, and why it was stale. */
  readonly stale: string | undefined;
}

const startMarker = '--- dkv instance start';

/**
 * Starts the instance's server detached (its own process group, stdout and stderr appended to
 * dkv.log, a pid file) and resolves once it answers Maintenance.Status. A server that exits
 * first, or does not answer in time (then it is stopped), fails with the log's last lines.
 */
export async function startInstance(home: string, name: string, env: Readonly<Record<string, string | undefined>> = process.env): Promise<StartResult> {
  const paths = existingInstance(home, name);
  const release = takeStartLock(paths);
  try {
    return await startLocked(paths, name, env);
  } finally {
    release();
  }
}

/** The file a start holds while it runs (its pid), so two starts of one instance cannot race. */
function startLockPath(paths: InstancePaths): string {
  return join(paths.dir, 'dkv.start.lock');
}

/** The pid of a live process holding the instance's start lock, if any. */
function startLockHolder(paths: InstancePaths): number | undefined {
  try {
    const pid = Number(readFileSync(startLockPath(paths), 'utf8').trim());
    if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

/** Takes the start lock (a stale one, left by a start that died, is taken over); returns its release. */
function takeStartLock(paths: InstancePaths): () => void {
  const path = startLockPath(paths);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => rmSync(path, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const holder = startLockHolder(paths);
      if (holder !== undefined) throw new InstanceError('running', `instance "${paths.name}" is being started by another command (pid ${holder})`);
      rmSync(path, { force: true });
    }
  }
  throw new InstanceError('start-failed', `instance "${paths.name}": cannot take its start lock ${path}`);
}

async function startLocked(paths: InstancePaths, name: string, env: Readonly<Record<string, string | undefined>>): Promise<StartResult> {
  const config = instanceConfig(paths);
  const clientUrl = clientUrlOf(config);
  const state = processState(paths);
  if (state.state === 'running') return { name, pid: state.pid, clientUrl, alreadyRunning: true, stale: undefined };
  const stale = staleText(state);
  removePidFile(paths);
  // The server runs in the instance's folder: a relative data-dir is relative to it.
  mkdirSync(resolve(paths.dir, config.dataDir), { recursive: true });
  const log = openSync(paths.log, 'a');
  let pid: number | undefined;
  let exited: string | undefined;
  try {
    writeSync(log, `${startMarker} ${new Date().toISOString()} ---\n`);
    const child = spawn(process.execPath, [dkvBin, 'server', '--config-file', paths.config], {
      cwd: paths.dir,
      detached: true,
      stdio: ['ignore', log, log],
      env: serverProcessEnv(serverEnvironment(env)),
    });
    child.once('exit', (code, signal) => (exited = signal ?? `code ${code}`));
    child.once('error', (error) => (exited = error.message));
    child.unref();
    pid = child.pid;
  } finally {
    closeSync(log);
  }
  if (pid === undefined) throw new InstanceError('start-failed', `instance "${name}" could not be started: ${exited ?? 'no pid'}`);
  writePidFile(paths, pid);
  const deadline = Date.now() + startWaitMs;
  while (Date.now() < deadline) {
    if (exited !== undefined) {
      removePidFile(paths);
      throw startFailure(paths, `its server exited (${exited}) before serving`);
    }
    if (await probeServing(config)) return { name, pid, clientUrl, alreadyRunning: false, stale };
    await sleep(pollMs);
  }
  signalServer(pid, 'SIGKILL');
  removePidFile(paths);
  throw startFailure(paths, `its server did not answer within ${startWaitMs / 1000} s and was killed`);
}

function startFailure(paths: InstancePaths, what: string): InstanceError {
  const lines = tailLines(paths.log, startFailureLogLines, startMarker);
  return new InstanceError('start-failed', `instance "${paths.name}" did not start: ${what}. Last lines of ${paths.log}:\n${lines.map((l) => `  ${l}`).join('\n')}`);
}

function staleText(state: ProcessState): string | undefined {
  if (state.state !== 'stopped' || state.staleReason === undefined) return undefined;
  return `stale pid file${state.stalePid === undefined ? '' : ` (pid ${state.stalePid})`}: ${state.staleReason}`;
}

export interface StopResult {
  readonly name: string;
  /** The pid stopped, or undefined when it was not running. */
  readonly pid: number | undefined;
  readonly stale: string | undefined;
}

/**
 * Stops the instance: SIGTERM to its process group and a wait for it to exit (the server flushes
 * and exits 0), or with `force` SIGKILL. A stale pid file is removed and reported.
 */
export async function stopInstance(home: string, name: string, force = false): Promise<StopResult> {
  const paths = existingInstance(home, name);
  const state = processState(paths);
  if (state.state === 'stopped') {
    removePidFile(paths);
    return { name, pid: undefined, stale: staleText(state) };
  }
  signalServer(state.pid, force ? 'SIGKILL' : 'SIGTERM');
  const waitMs = force ? killWaitMs : stopWaitMs;
  const deadline = Date.now() + waitMs;
  // Until the process has exited: one that is exiting no longer looks like our server.
  while (!processExited(state.pid)) {
    if (Date.now() > deadline) {
      throw new InstanceError(
        'stop-timeout',
        `instance "${name}" (pid ${state.pid}) did not exit within ${waitMs / 1000} s of ${force ? 'SIGKILL' : 'SIGTERM'}; see ${paths.log}` +
          (force ? '' : `; dkv instance stop --force ${name} kills it`),
      );
    }
    await sleep(pollMs);
  }
  removePidFile(paths);
  return { name, pid: state.pid, stale: undefined };
}

/** Removes a stopped instance's folder (its data too, when it is inside); refuses a running one. */
export function removeInstance(home: string, name: string): { name: string; dataDirKept: string | undefined } {
  const paths = existingInstance(home, name);
  const state = processState(paths);
  if (state.state === 'running') {
    throw new InstanceError('running', `instance "${name}" is running (pid ${state.pid}); stop it first: dkv instance stop ${name}`);
  }
  const starter = startLockHolder(paths);
  if (starter !== undefined) throw new InstanceError('running', `instance "${name}" is being started (pid ${starter}); stop it first: dkv instance stop ${name}`);
  const check = checkConfigFile(paths.config);
  const dataDir = check.config === undefined ? undefined : resolve(paths.dir, check.config.dataDir);
  rmSync(paths.dir, { recursive: true, force: true });
  const outside = dataDir !== undefined && !dataDir.startsWith(`${paths.dir}/`) && existsSync(dataDir);
  return { name, dataDirKept: outside ? dataDir : undefined };
}

export interface InstanceSummary {
  readonly name: string;
  readonly state: 'running' | 'stopped';
  readonly pid: number | null;
  readonly clientUrl: string | null;
  /** Set when its config does not parse (it cannot start until fixed). */
  readonly configError: string | null;
}

/** Every instance under `home`, by name. */
export function listInstances(home: string): InstanceSummary[] {
  let names: string[];
  try {
    names = readdirSync(instancesDir(home));
  } catch {
    return [];
  }
  const out: InstanceSummary[] = [];
  for (const name of names.sort()) {
    let paths: InstancePaths;
    try {
      paths = existingInstance(home, name);
    } catch {
      continue;
    }
    const state = processState(paths);
    const check = checkConfigFile(paths.config);
    out.push({
      name,
      state: state.state,
      pid: state.state === 'running' ? state.pid : null,
      clientUrl: check.config === undefined ? null : clientUrlOf(check.config),
      configError: check.errors[0]?.message ?? null,
    });
  }
  return out;
}

export function clientUrlOf(config: ServerConfig): string {
  return config.advertiseClientUrls[0]?.href ?? config.listenClientUrls[0]?.href ?? '';
}
