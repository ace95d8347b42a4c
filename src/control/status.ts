/** `dkv instance status`: what the files say of an instance, and what its server answers. */
import { clientUrlOf, existingInstance, instanceConfig } from './instances.js';
import { listenPortsOf } from './ports.js';
import { serverHealth, serverStatus, type ServerStatus } from './probe.js';
import { processState } from './processes.js';

/** Every field `status -w json` prints; null where it does not apply (a stopped instance). */
export interface InstanceStatus {
  readonly name: string;
  readonly state: 'running' | 'stopped';
  readonly pid: number | null;
  /** Why a pid file left behind is stale (the process is gone, or the pid is another program's). */
  readonly stalePidFile: string | null;
  readonly clientUrl: string;
  readonly clientPort: number | null;
  readonly peerPort: number | null;
  readonly metricsPort: number | null;
  readonly configFile: string;
  readonly dataDir: string;
  readonly logFile: string;
  /** GET /health: true when this member sees a leader; null when it does not answer. */
  readonly health: boolean | null;
  readonly healthReason: string | null;
  readonly memberId: string | null;
  readonly leader: string | null;
  readonly isLeader: boolean | null;
  readonly term: number | null;
  readonly raftIndex: number | null;
  readonly appliedIndex: number | null;
  readonly version: string | null;
  readonly dbSizeBytes: number | null;
  readonly errors: readonly string[];
}

export async function instanceStatus(home: string, name: string): Promise<InstanceStatus> {
  const paths = existingInstance(home, name);
  const config = instanceConfig(paths);
  const state = processState(paths);
  const ports = listenPortsOf(config);
  const portOf = (key: string): number | null => ports.find((p) => p.key === key)?.port ?? null;
  const running = state.state === 'running';
  const [status, health] = running ? await Promise.all([serverStatus(config), serverHealth(config)]) : [undefined, undefined];
  const fromStatus = <T>(pick: (s: ServerStatus) => T): T | null => (status === undefined ? null : pick(status));
  return {
    name,
    state: state.state,
    pid: running ? state.pid : null,
    stalePidFile: state.state === 'stopped' ? (state.staleReason ?? null) : null,
    clientUrl: clientUrlOf(config),
    clientPort: portOf('listen-client-urls'),
    peerPort: portOf('listen-peer-urls'),
    metricsPort: portOf('listen-metrics-urls'),
    configFile: paths.config,
    dataDir: config.dataDir,
    logFile: paths.log,
    health: health?.health ?? null,
    healthReason: health?.reason ?? null,
    memberId: fromStatus((s) => s.memberId),
    leader: fromStatus((s) => s.leader),
    isLeader: fromStatus((s) => s.leader !== null && s.leader === s.memberId),
    term: fromStatus((s) => s.term),
    raftIndex: fromStatus((s) => s.raftIndex),
    appliedIndex: fromStatus((s) => s.appliedIndex),
    version: fromStatus((s) => s.version),
    dbSizeBytes: fromStatus((s) => s.dbSizeBytes),
    errors: status?.errors ?? [],
  };
}
