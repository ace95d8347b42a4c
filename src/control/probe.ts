/**
 * Asking a running instance how it is: Maintenance.Status on its client port (does it serve, who
 * leads, term, indexes) and GET /health on its metrics port.
 */
import { connect } from 'node:net';
import { EtcdChannel, longsAsStrings } from '../client/index.js';
import type { ServerConfig, ServerUrl } from '../server/config.js';
import { probeTimeoutMs } from './limits.js';

/** Where this host reaches a listen URL: a wildcard host means loopback. */
function localEndpoint(url: ServerUrl): string {
  const host = url.host === '0.0.0.0' || url.host === '::' ? '127.0.0.1' : url.host;
  return `${host.includes(':') ? `[${host}]` : host}:${url.port}`;
}

function clientUrl(config: ServerConfig): ServerUrl | undefined {
  return config.listenClientUrls.find((url) => url.scheme !== 'unix');
}

function tcpAccepts(endpointUrl: ServerUrl): Promise<boolean> {
  return new Promise((resolve) => {
    const host = endpointUrl.host === '0.0.0.0' || endpointUrl.host === '::' ? '127.0.0.1' : endpointUrl.host;
    const socket = connect({ host, port: endpointUrl.port, timeout: probeTimeoutMs });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.once('timeout', () => done(false));
  });
}

/** The fields of Maintenance.Status `status` reports (ids as hex, as etcdctl prints them). */
export interface ServerStatus {
  readonly memberId: string;
  readonly leader: string | null;
  readonly term: number;
  readonly raftIndex: number;
  readonly appliedIndex: number;
  readonly version: string;
  readonly dbSizeBytes: number;
  readonly isLearner: boolean;
  readonly errors: readonly string[];
}

function hex(id: string | number | undefined): string {
  return BigInt(id ?? 0).toString(16);
}

/** Maintenance.Status of the instance's server, or undefined if it does not answer (or serves https only). */
export async function serverStatus(config: ServerConfig): Promise<ServerStatus | undefined> {
  const url = clientUrl(config);
  if (url === undefined || url.scheme === 'https') return undefined;
  const channel = new EtcdChannel(localEndpoint(url), { decode: longsAsStrings, ownConnection: true });
  try {
    const status = await channel.maintenance('Status', {}, { timeoutMs: probeTimeoutMs });
    const header = status.header as { member_id?: string } | undefined;
    const leader = String(status.leader ?? '0');
    return {
      memberId: hex(header?.member_id),
      leader: leader === '0' ? null : hex(leader),
      // etcd's StatusResponse names these fields in camelCase in rpc.proto itself.
      term: Number(status.raftTerm ?? 0),
      raftIndex: Number(status.raftIndex ?? 0),
      appliedIndex: Number(status.raftAppliedIndex ?? 0),
      version: String(status.version ?? ''),
      dbSizeBytes: Number(status.dbSize ?? 0),
      isLearner: status.isLearner === true,
      errors: Array.isArray(status.errors) ? status.errors.map(String) : [],
    };
  } catch {
    return undefined;
  } finally {
    channel.close();
  }
}

/** True once the server serves its clients (Status answers; for https, its port accepts connections). */
export async function probeServing(config: ServerConfig): Promise<boolean> {
  const url = clientUrl(config);
  if (url === undefined) return false;
  if (url.scheme === 'https') return tcpAccepts(url);
  return (await serverStatus(config)) !== undefined;
}

export interface Health {
  readonly health: boolean;
  readonly reason: string | null;
}

/** GET /health on the first metrics URL; undefined when there is none or it does not answer. */
export async function serverHealth(config: ServerConfig): Promise<Health | undefined> {
  const url = config.listenMetricsUrls.find((u) => u.scheme === 'http');
  if (url === undefined) return undefined;
  try {
    const response = await fetch(`http://${localEndpoint(url)}/health`, { signal: AbortSignal.timeout(probeTimeoutMs) });
    const body = (await response.json()) as { health?: string; reason?: string };
    return { health: body.health === 'true', reason: body.reason ?? null };
  } catch {
    return undefined;
  }
}
