/**
 * Ports: whether one is free on this host now (a listen attempt on the host the instance will
 * listen on), and which ports the other instances' configs already claim.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { checkConfigFile, type ServerConfig } from '../server/config.js';
import { InstanceError } from './errors.js';
import { instancesDir } from './home.js';
import { harnessPortBounds } from '../package-root.js';
import { portPickAttemptsMax, portPickMax, portPickMin } from './limits.js';

/** True when nothing listens on host:port now (checked by listening there for a moment). */
export function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** A port an instance's config listens on, and the key that says so. */
export interface PortClaim {
  readonly instance: string;
  readonly key: string;
}

/** The ports every instance's config listens on (TCP URLs of listen-client/peer/metrics-urls). */
export function listenPortsOf(config: ServerConfig): Array<{ key: string; port: number }> {
  const lists = [
    ['listen-client-urls', config.listenClientUrls],
    ['listen-peer-urls', config.listenPeerUrls],
    ['listen-metrics-urls', config.listenMetricsUrls],
  ] as const;
  return lists.flatMap(([key, urls]) => urls.filter((url) => url.scheme !== 'unix').map((url) => ({ key, port: url.port })));
}

const urlPortPattern = /https?:\/\/[^\s,'"\]]+:(\d{1,5})/g;

/**
 * Ports claimed by the instances under `home`, but `except`. A config the parser refuses (edited
 * by hand) still claims every port its URLs name, so a broken instance's ports are not handed out.
 */
export function claimedPorts(home: string, except: readonly string[] = []): Map<number, PortClaim> {
  const claims = new Map<number, PortClaim>();
  let names: string[];
  try {
    names = readdirSync(instancesDir(home));
  } catch {
    return claims;
  }
  for (const instance of names.sort()) {
    if (except.includes(instance)) continue;
    const path = join(instancesDir(home), instance, 'config.yaml');
    const { config } = checkConfigFile(path);
    if (config !== undefined) {
      for (const { key, port } of listenPortsOf(config)) if (!claims.has(port)) claims.set(port, { instance, key });
      continue;
    }
    let text = '';
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      continue;
    }
    for (const match of text.matchAll(urlPortPattern)) {
      const port = Number(match[1]);
      if (!claims.has(port)) claims.set(port, { instance, key: 'a URL' });
    }
  }
  return claims;
}

/** Throws a clear InstanceError naming the port and who has it, unless it is free and unclaimed. */
export async function checkPort(host: string, port: number, what: string, claims: ReadonlyMap<number, PortClaim>): Promise<void> {
  const claim = claims.get(port);
  if (claim !== undefined) {
    throw new InstanceError('port-claimed', `${what} ${port} is already claimed by instance "${claim.instance}" (${claim.key} in its config.yaml)`);
  }
  if (!(await portFree(host, port))) {
    throw new InstanceError('port-taken', `${what} ${port} is taken: something on this host already listens on ${host}:${port}`);
  }
}

/** A port free on `host` and claimed by no instance, nor in `avoid`; random in the pick range. */
export async function pickPort(host: string, claims: ReadonlyMap<number, PortClaim>, avoid: ReadonlySet<number>): Promise<number> {
  // DKV_TEST_PORTS narrows the range (test files running at once each pick from their own slice).
  const { low, high } = harnessPortBounds(portPickMin, portPickMax);
  for (let attempt = 0; attempt < portPickAttemptsMax; attempt++) {
    const port = low + Math.floor(Math.random() * (high - low));
    if (claims.has(port) || avoid.has(port)) continue;
    if (await portFree(host, port)) return port;
  }
  throw new InstanceError('port-taken', `no free port found in ${low}..${high} after ${portPickAttemptsMax} tries; give --client-port and --peer-port`);
}
