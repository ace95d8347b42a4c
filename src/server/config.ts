/**
 * Configuration of `dkv server`, an etcd-compatible node, with etcd's flag names and config file
 * keys so that etcd users feel at home.
 *
 * Sources, as in etcd 3.5:
 *   - command-line flags, `--flag value`, `--flag=value` (or a single dash, as Go's flag package
 *     allows); boolean flags take `--flag` or `--flag=false`;
 *   - environment variables `DKV_<FLAG>` (`DKV_INITIAL_CLUSTER` for `--initial-cluster`), used only
 *     where the flag is not given (etcd's `ETCD_` variables work the same way);
 *   - a YAML file given by `--config-file` (or `DKV_CONFIG_FILE`) with the keys of etcd's config
 *     file. When a config file is given, every other flag and environment variable is ignored, as
 *     etcd 3.5 does; the ignored ones are listed in `warnings`.
 *
 * Every problem is one ConfigError naming the field; the CLI prints it and exits with code 2.
 * This module reads the config file and nothing else (no environment unless passed, no clock).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { limits as raftLimits } from '../../raft/index.js';
import { type AuthTokenOption, AuthTokenOptionError, parseAuthTokenOption } from './auth/jwt.js';
import { processVariables } from '../package-root.js';

// ---------------------------------------------------------------------------------------------
// Limits and defaults (units last)

export const tickMsDefault = 100;
export const tickMsMin = 1;
export const tickMsMax = 10_000;
export const heartbeatTicksDefault = raftLimits.heartbeatTicksDefault;
export const heartbeatTicksMin = 1;
export const heartbeatTicksMax = 1_000;
export const electionTicksDefault = raftLimits.electionTicksDefault;
export const electionTicksMin = raftLimits.electionTicksMin;
export const electionTicksMax = 100_000;
/** etcd: "--election-timeout should be at least as 5 times as --heartbeat-interval". */
export const electionToHeartbeatRatioMin = 5;
/** etcd refuses election timeouts over 50 s. */
export const electionTimeoutMsMax = 50_000;
/** As etcd 3.4 and 3.5: a snapshot every 100,000 applied entries. */
export const snapshotCountDefault = 100_000;
export const snapshotCountMin = 1;
export const snapshotCountMax = 1_000_000_000;
/**
 * Off by default (entries only, as etcd). With it, a shard is also snapshotted every this many
 * bytes of applied entries, so a restart restores the latest snapshot and replays at most this
 * much log after it (batched writes make 100,000 entries gigabytes). Not on by default yet:
 * storing a snapshot of a large store is one synced LevelDB batch that holds up every write for
 * seconds (200 MB: ~6 s here), and this would make that happen during every bulk load.
 */
export const snapshotBytesDefault = 0;
/** A smaller threshold would snapshot a large store over and over. */
export const snapshotBytesRecommended = 32 * 1024 * 1024;
/** 0 turns the byte threshold off (entries only, as etcd). */
export const snapshotBytesMin = 0;
export const snapshotBytesMax = 64 * 1024 * 1024 * 1024;
/**
 * A mounted store's shard is split in two once the versions it retains reach this many bytes (its
 * DB SIZE IN USE): about 200,000 keys of 16 + 100 bytes. Not larger: a split copies each half on
 * every replica's event loop, about 0.3 s per 100,000 keys here, and a longer stall costs the
 * node's other groups their leadership.
 */
export const shardSplitBytesDefault = 32 * 1024 * 1024;
/** 0 turns size splits off; below this a shard would split over and over. */
export const shardSplitBytesMin = 64 * 1024;
export const shardSplitBytesMax = 8 * 1024 * 1024 * 1024;
/** CockroachDB's default load-split threshold: requests per second one node routes to a shard. */
export const shardSplitQpsDefault = 2500;
/** `--shard-replica-dead-seconds`: a member unreachable this long has its placed replicas moved elsewhere (CockroachDB's default for a dead store). */
export const shardReplicaDeadSecondsDefault = 300;
export const shardReplicaDeadSecondsMax = 7 * 24 * 3600;
export const shardSplitQpsMax = 10_000_000;
/** A shard's load is its requests over a window this long (`--shard-split-qps` is their rate over one whole window). */
export const shardSplitLoadWindowMs = 10_000;
/** etcd's default request size limit, 1.5 MiB. */
export const requestBytesMaxDefault = 1_572_864;
export const requestBytesMaxMin = 1;
/** Beyond this, one request would stall the apply loop and every shard's group commit. */
export const requestBytesMaxMax = 64 * 1024 * 1024;
/** etcd's default backend quota, 2 GiB (--quota-backend-bytes 0 means this). */
export const quotaBackendBytesDefault = 2 * 1024 * 1024 * 1024;
/**
 * The largest quota: etcd's suggested maximum, 8 GiB. The store is in memory, so a quota past
 * this would let one shard outgrow the memory of an ordinary host before any alarm.
 */
export const quotaBackendBytesMax = 8 * 1024 * 1024 * 1024;
/** The longest periodic auto-compaction retention (a year), a bound on typos. */
export const autoCompactionRetentionMsMax = 365 * 24 * 3_600_000;
/** The most revisions revision-mode auto-compaction may keep. */
export const autoCompactionRetentionRevisionsMax = 1_000_000_000_000;
/** Member names longer than this are a mistake, not a name. */
export const nameLengthMax = 256;
/** etcd's --auth-token-ttl default: a simple token lives 5 minutes after its last use. */
/**
 * Unary calls one client connection may have in progress by default: a quarter of the runtime's
 * pending proposals (proposalsPendingMax), so one connection cannot fill the queue every client
 * shares.
 */
export const requestsPendingPerConnectionMaxDefault = 4096;
export const requestsPendingPerConnectionMaxMax = 1 << 20;
/** Streams one client connection may have open by default (each holds a bounded buffer). */
export const streamsPerConnectionMaxDefault = 1024;
export const streamsPerConnectionMaxMax = 1 << 20;

export const authTokenTtlSecondsDefault = 300;
export const authTokenTtlSecondsMin = 1;
/** A week (etcd sets no bound): a simple token is a bearer secret, and a longer idle life is a typo. */
export const authTokenTtlSecondsMax = 7 * 24 * 3600;
/** etcd's --bcrypt-cost default (Go's bcrypt.DefaultCost) and the range bcrypt takes (4..31). */
export const bcryptCostDefault = 10;
export const bcryptCostMin = 4;
export const bcryptCostMax = 31;
/**
 * DKV hashes passwords with scrypt (node:crypto has no bcrypt): --bcrypt-cost c sets scrypt's
 * N = 2^(c + 4), so etcd's default 10 gives N = 2^14, the scrypt paper's interactive-login
 * setting and Node's default (16 MiB and some 50 ms per hash with r = 8). Each bcrypt step
 * doubles the work, and so does each step here.
 */
export const scryptLog2NPerBcryptCostOffset = 4;
/** N = 2^10 (1 MiB, a few ms): what bcrypt's cheapest costs (4..6, used by tests) come to. */
export const scryptLog2NMin = 10;
/**
 * N = 2^16 (64 MiB with r = 8, some 200 ms): past this, a handful of concurrent Authenticate
 * calls would take gigabytes, and scrypt's work is memory as well as time, so a smaller N
 * costs an attacker more than the same bcrypt cost would.
 */
export const scryptLog2NMax = 16;

const defaults = {
  name: 'default',
  listenClientUrls: 'http://127.0.0.1:2379',
  listenPeerUrls: 'http://127.0.0.1:2380',
  initialClusterState: 'new',
  initialClusterToken: 'dkv-cluster',
} as const;

if (heartbeatTicksDefault * electionToHeartbeatRatioMin > electionTicksDefault) {
  throw new Error('default election ticks must be at least 5 times the default heartbeat ticks');
}
if (electionTicksDefault * tickMsDefault > electionTimeoutMsMax) {
  throw new Error('the default election timeout is over the maximum');
}
if (scryptLog2NOf(bcryptCostDefault) !== 14 || scryptLog2NMin > scryptLog2NMax) {
  throw new Error('etcd\'s default bcrypt cost must give scrypt N = 2^14, within the scrypt range');
}

/** The scrypt cost (log2 N) that --bcrypt-cost stands for; see scryptLog2NPerBcryptCostOffset. */
export function scryptLog2NOf(bcryptCost: number): number {
  return Math.min(scryptLog2NMax, Math.max(scryptLog2NMin, bcryptCost + scryptLog2NPerBcryptCostOffset));
}

// ---------------------------------------------------------------------------------------------
// Types

export type UrlScheme = 'http' | 'https' | 'unix';

export interface ServerUrl {
  readonly scheme: UrlScheme;
  /** Host name or IP (IPv6 without brackets); for `unix`, the socket path. */
  readonly host: string;
  /** 0 for `unix`. */
  readonly port: number;
  /** Normalised: lower-case scheme and host, no trailing slash. */
  readonly href: string;
}

export interface TlsConfig {
  readonly certFile: string | undefined;
  readonly keyFile: string | undefined;
  readonly trustedCaFile: string | undefined;
  readonly clientCertAuth: boolean;
  /** Peer TLS only: --peer-cert-allowed-cn, the CN a peer's certificate must carry (exclusive with allowedHostname). */
  readonly allowedCn?: string | undefined;
  /** Peer TLS only: --peer-cert-allowed-hostname, the name a peer's certificate's SANs must match. */
  readonly allowedHostname?: string | undefined;
}

export interface ClusterMember {
  readonly name: string;
  readonly peerUrls: readonly ServerUrl[];
}

export type InitialClusterState = 'new' | 'existing';

export type AutoCompactionMode = 'periodic' | 'revision';

/** etcd's --auto-compaction-mode and --auto-compaction-retention, parsed. */
export interface AutoCompactionConfig {
  readonly mode: AutoCompactionMode;
  /** periodic: the history to keep in ms; revision: the revisions to keep; 0: off. */
  readonly retention: number;
}

export interface ServerConfig {
  readonly name: string;
  readonly dataDir: string;
  readonly listenClientUrls: readonly ServerUrl[];
  readonly advertiseClientUrls: readonly ServerUrl[];
  readonly listenPeerUrls: readonly ServerUrl[];
  readonly initialAdvertisePeerUrls: readonly ServerUrl[];
  readonly initialCluster: readonly ClusterMember[];
  readonly initialClusterState: InitialClusterState;
  readonly initialClusterToken: string;
  readonly listenMetricsUrls: readonly ServerUrl[];
  readonly clientTls: TlsConfig;
  readonly peerTls: TlsConfig;
  readonly tickMs: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly snapshotCount: number;
  /** Bytes of applied entries between snapshots of a shard (0: no byte threshold). */
  readonly snapshotBytes: number;
  readonly maxRequestBytes: number;
  /** --max-pending-requests-per-connection: unary calls in progress per client connection. */
  readonly requestsPendingPerConnectionMax: number;
  /** --max-streams-per-connection: streams open per client connection. */
  readonly streamsPerConnectionMax: number;
  /** Bytes the store of a shard may hold (MvccStore.sizeBytes) before NOSPACE is raised. */
  readonly quotaBackendBytes: number;
  readonly autoCompaction: AutoCompactionConfig;
  /** --auth-token: simple tokens, or signed JWTs with their keys loaded. */
  readonly authToken: AuthTokenOption;
  /** --auth-token-ttl: the lifetime in seconds of a simple token (etcd's; JWTs have their own ttl=). */
  readonly authTokenTtlSeconds: number;
  /** --bcrypt-cost as given (etcd's default when out of bcrypt's range, as etcd does). */
  readonly bcryptCost: number;
  /** The scrypt cost password hashes are made with: log2 N, from --bcrypt-cost (scryptLog2NOf). */
  readonly scryptLog2N: number;
  readonly logFile: string | undefined;
  /** The lowest level logged (--log-level; --debug means debug). */
  readonly logLevel: LogLevel;
  /** --log-format: text lines or one JSON object per line. */
  readonly logFormat: LogFormat;
  /** Where the log goes: 'stderr', 'stdout' or file paths (--log-outputs, or --log-file). */
  readonly logOutputs: readonly string[];
  /**
   * Test only: serve linearizable reads from this node's state without ReadIndex, which breaks
   * linearizability on purpose (jepsen-lite's tests prove their checker catches it).
   */
  readonly unsafeStaleReads: boolean;
  /**
   * `--experimental-lease-reads`: a shard's leader answers linearizable reads from its lease
   * (Raft's lease-based ReadOnly option, with CheckQuorum) instead of a ReadIndex heartbeat round.
   */
  readonly experimentalLeaseReads: boolean;
  /**
   * Whether this member's idle Raft groups quiesce (see NodeRuntime.tick): `--experimental-quiesce`,
   * on by default, and always false with `--experimental-lease-reads`. A member with it false does
   * not publish that it quiesces, so no group in the cluster quiesces while it is a member.
   */
  readonly experimentalQuiesce: boolean;
  /** `--shard-split-bytes`: a store shard retaining this many bytes is split (0: never; see auto-split.ts). */
  readonly shardSplitBytes: number;
  /** `--shard-split-qps`: a store shard this member routes this many requests/s to is split (0: never). */
  readonly shardSplitQps: number;
  /** `--shard-replica-dead-seconds`: a member unreachable this long has its placed replicas moved (0: never; placement.ts). */
  readonly shardReplicaDeadSeconds: number;
  /** `--shard-rebalance`: placed replicas are moved, and leaderships handed over, to even them out over the members (placement.ts). */
  readonly shardRebalance: boolean;
  /**
   * Test only: propose every Txn that writes without its (top-level) compares, so its success
   * branch runs whatever they would have said, which breaks
   * serializability on purpose (jepsen-lite's append workload proves its checker catches it).
   */
  readonly unsafeIgnoreTxnCompare: boolean;
  /**
   * The settings given (flag, variable or file) that differ from DKV's defaults, as
   * `--flag=value (source)`; the start-up log lists them.
   */
  readonly changedSettings: readonly string[];
  /** The config file the settings came from, if any. */
  readonly configFile: string | undefined;
  /** Things the operator should know but that do not stop the server (log them at start). */
  readonly warnings: readonly string[];
}

/** A configuration problem, naming the flag (without dashes) it concerns. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------
// The flags: one table drives parsing, environment variables, the config file and the help text

type FlagKind = 'string' | 'urls' | 'cluster' | 'int' | 'bool' | 'duration' | 'list';

interface FlagSpec {
  readonly flag: string;
  readonly kind: FlagKind;
  readonly defaultText: string;
  readonly help: string;
  readonly group: 'member' | 'clustering' | 'security' | 'logging' | 'dkv' | 'etcd' | 'no-effect';
  /** Where the setting sits in the YAML file; undefined for flags the file cannot set. */
  readonly yamlPath: readonly string[] | undefined;
}

function spec(
  flag: string,
  kind: FlagKind,
  group: FlagSpec['group'],
  defaultText: string,
  help: string,
  yamlPath: readonly string[] | undefined = [flag],
): FlagSpec {
  return { flag, kind, group, defaultText, help, yamlPath };
}

const clientTlsKey = 'client-transport-security';
const peerTlsKey = 'peer-transport-security';

export const logLevels = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof logLevels)[number];
export const logLevelDefault: LogLevel = 'info';
export const logFormats = ['text', 'json'] as const;
export type LogFormat = (typeof logFormats)[number];
export const logFormatDefault: LogFormat = 'text';

interface EtcdFlagWithoutEffect {
  readonly flag: string;
  readonly kind: FlagKind;
  /** etcd 3.4's default, shown in --help. */
  readonly etcdDefault: string;
  /** Why it has no effect here; the start-up warning says it. */
  readonly reason: string;
  readonly yamlPath?: readonly string[];
}

function noEffect(flag: string, kind: FlagKind, etcdDefault: string, reason: string, yamlPath?: readonly string[]): EtcdFlagWithoutEffect {
  return { flag, kind, etcdDefault, reason, yamlPath: yamlPath ?? [flag] };
}

const noDiscovery = 'discovery is not implemented; list the members in --initial-cluster';
const noV2 = 'DKV serves the v3 API only';
const noProxy = 'DKV has no proxy mode';
const caOnly = 'certificates are checked against the trusted CA only';
const noCrl = 'certificate revocation lists are not checked';
const noAutoTls = 'DKV does not generate certificates; give the cert and key files';
const groupCommit = 'DKV writes every event-loop turn in one synced LevelDB batch';
const grpcDefaults = 'the gRPC server keeps grpc-js\'s keepalive settings';

/**
 * etcd server flags (3.4's `etcd --help`, and a few of 3.5) that DKV accepts so that an etcd
 * unit file or config file starts DKV unchanged. Each is validated by its kind and logged once at
 * start as having no effect, with the reason.
 */
const etcdFlagsWithoutEffect: readonly EtcdFlagWithoutEffect[] = [
  noEffect('wal-dir', 'string', '', 'the Raft log lives in <data-dir>/raft, there is no separate WAL directory'),
  noEffect('max-snapshots', 'int', '5', 'each shard keeps its latest snapshot only, in the log store'),
  noEffect('max-wals', 'int', '5', 'the LevelDB log store compacts its own files'),
  noEffect('backend-batch-interval', 'duration', '', groupCommit),
  noEffect('backend-batch-limit', 'int', '0', groupCommit),
  noEffect('max-txn-ops', 'int', '128', 'the Txn operation limit is fixed in DKV'),
  noEffect('max-concurrent-streams', 'string', 'math.MaxUint32', 'gRPC streams per connection are not limited'),
  noEffect('grpc-keepalive-min-time', 'duration', '5s', grpcDefaults),
  noEffect('grpc-keepalive-interval', 'duration', '2h', grpcDefaults),
  noEffect('grpc-keepalive-timeout', 'duration', '20s', grpcDefaults),
  noEffect('initial-election-tick-advance', 'bool', 'true', 'DKV always advances election ticks at start; pre-vote keeps that from disrupting a live leader'),
  noEffect('discovery', 'string', '', noDiscovery),
  noEffect('discovery-fallback', 'string', 'proxy', noDiscovery),
  noEffect('discovery-proxy', 'string', '', noDiscovery),
  noEffect('discovery-srv', 'string', '', noDiscovery),
  noEffect('discovery-srv-name', 'string', '', noDiscovery),
  noEffect('strict-reconfig-check', 'bool', 'true', 'the Cluster service applies its own membership checks'),
  noEffect('pre-vote', 'bool', 'false', 'DKV always runs Raft with pre-vote and check-quorum'),
  noEffect('enable-v2', 'bool', 'false', noV2),
  noEffect('experimental-enable-v2v3', 'string', '', noV2),
  noEffect('client-crl-file', 'string', '', noCrl, [clientTlsKey, 'crl-file']),
  noEffect('client-cert-allowed-hostname', 'string', '', caOnly, [clientTlsKey, 'allowed-hostname']),
  noEffect('auto-tls', 'bool', 'false', noAutoTls, [clientTlsKey, 'auto-tls']),
  noEffect('peer-crl-file', 'string', '', noCrl, [peerTlsKey, 'crl-file']),
  noEffect('peer-auto-tls', 'bool', 'false', noAutoTls, [peerTlsKey, 'auto-tls']),
  noEffect('client-cert-file', 'string', '', 'DKV makes no client connections to itself', [clientTlsKey, 'client-cert-file']),
  noEffect('client-key-file', 'string', '', 'DKV makes no client connections to itself', [clientTlsKey, 'client-key-file']),
  noEffect('cipher-suites', 'list', '', 'Node\'s default TLS cipher suites are used'),
  noEffect('tls-min-version', 'string', '', 'Node\'s default TLS versions are used'),
  noEffect('tls-max-version', 'string', '', 'Node\'s default TLS versions are used'),
  noEffect('self-signed-cert-validity', 'int', '1', noAutoTls),
  noEffect('cors', 'list', '*', 'there is no HTTP/JSON gateway'),
  noEffect('host-whitelist', 'list', '*', 'there is no HTTP/JSON gateway'),
  noEffect('enable-grpc-gateway', 'bool', 'true', 'there is no HTTP/JSON gateway'),
  noEffect('enable-pprof', 'bool', 'false', 'Go profiling; profile DKV with node --inspect'),
  noEffect('metrics', 'string', 'basic', 'DKV exports one metric set on --listen-metrics-urls'),
  noEffect('proxy', 'string', 'off', noProxy),
  noEffect('proxy-failure-wait', 'int', '5000', noProxy),
  noEffect('proxy-refresh-interval', 'int', '30000', noProxy),
  noEffect('proxy-dial-timeout', 'int', '1000', noProxy),
  noEffect('proxy-write-timeout', 'int', '5000', noProxy),
  noEffect('proxy-read-timeout', 'int', '0', noProxy),
  noEffect('experimental-initial-corrupt-check', 'bool', 'false', 'no corruption check; compare etcdctl endpoint hashkv'),
  noEffect('experimental-corrupt-check-time', 'duration', '0s', 'no corruption check; compare etcdctl endpoint hashkv'),
  noEffect('experimental-backend-bbolt-freelist-type', 'string', 'array', 'there is no bbolt backend'),
  noEffect('experimental-enable-lease-checkpoint', 'bool', 'false', 'lease deadlines are replicated by the lease engine'),
  noEffect('experimental-compaction-batch-limit', 'int', '1000', 'the in-memory store compacts in one step'),
  noEffect('experimental-peer-skip-client-san-verification', 'bool', 'false', caOnly),
  noEffect('experimental-watch-progress-notify-interval', 'duration', '10m', 'the progress notify interval is fixed'),
  noEffect('experimental-warning-apply-duration', 'duration', '100ms', 'slow applies are not logged'),
  noEffect('force-new-cluster', 'bool', 'false', 'not implemented; restore a snapshot with dkv snapshot restore instead'),
  noEffect('log-package-levels', 'string', '', 'use --log-level'),
  noEffect('enable-log-rotation', 'bool', 'false', 'rotate the log file with logrotate (copytruncate)'),
  noEffect('log-rotation-config-json', 'string', '', 'rotate the log file with logrotate (copytruncate)'),
  noEffect('unsafe-no-fsync', 'bool', 'false', 'DKV always syncs its log'),
  noEffect('socket-reuse-port', 'bool', 'false', 'listening sockets use Node\'s defaults'),
  noEffect('socket-reuse-address', 'bool', 'false', 'listening sockets use Node\'s defaults'),
];

const flagSpecs: readonly FlagSpec[] = [
  spec(
    'config-file',
    'string',
    'member',
    '',
    'path to a YAML config file with etcd\'s keys; when given, all other flags and DKV_*/ETCD_* variables are ignored.',
    undefined,
  ),
  spec('name', 'string', 'member', defaults.name, 'human-readable name for this member.'),
  spec('data-dir', 'string', 'member', '${name}.dkv', 'path to the data directory.'),
  spec(
    'listen-client-urls',
    'urls',
    'member',
    defaults.listenClientUrls,
    'list of URLs to listen on for client traffic (http, https or unix).',
  ),
  spec(
    'listen-peer-urls',
    'urls',
    'member',
    defaults.listenPeerUrls,
    'list of URLs to listen on for peer traffic.',
  ),
  spec(
    'listen-metrics-urls',
    'urls',
    'member',
    '',
    'list of URLs to serve /metrics and /health on (none by default).',
  ),
  spec(
    'quota-backend-bytes',
    'int',
    'member',
    '0',
    `bytes the store may hold in memory before the NOSPACE alarm refuses writes; 0 means ${quotaBackendBytesDefault} ` +
      `(2 GiB, as etcd); at most ${quotaBackendBytesMax} (8 GiB).`,
  ),
  spec(
    'auto-compaction-mode',
    'string',
    'member',
    'periodic',
    'how --auto-compaction-retention is read: \'periodic\' (a duration) or \'revision\' (a number of revisions).',
  ),
  spec(
    'auto-compaction-retention',
    'string',
    'member',
    '0',
    'auto-compaction: history to keep, as a duration (1h, 30m; a bare number is hours) or a revision count; 0 is off.',
  ),
  spec(
    'advertise-client-urls',
    'urls',
    'clustering',
    '${listen-client-urls}',
    'list of this member\'s client URLs to advertise to the rest of the cluster.',
  ),
  spec(
    'initial-advertise-peer-urls',
    'urls',
    'clustering',
    '${listen-peer-urls}',
    'list of this member\'s peer URLs to advertise; must equal its entry in --initial-cluster.',
  ),
  spec(
    'initial-cluster',
    'cluster',
    'clustering',
    '${name}=${initial-advertise-peer-urls}',
    'initial cluster configuration for bootstrapping: name=url,name=url (repeat a name for more URLs).',
  ),
  spec(
    'initial-cluster-state',
    'string',
    'clustering',
    defaults.initialClusterState,
    'initial cluster state (\'new\' or \'existing\').',
  ),
  spec(
    'initial-cluster-token',
    'string',
    'clustering',
    defaults.initialClusterToken,
    'initial cluster token; member and cluster ids derive from it.',
  ),
  spec('cert-file', 'string', 'security', '', 'path to the client server TLS cert file.', [clientTlsKey, 'cert-file']),
  spec('key-file', 'string', 'security', '', 'path to the client server TLS key file.', [clientTlsKey, 'key-file']),
  spec('trusted-ca-file', 'string', 'security', '', 'path to the client server TLS trusted CA cert file.', [
    clientTlsKey,
    'trusted-ca-file',
  ]),
  spec('client-cert-auth', 'bool', 'security', 'false', 'enable client cert authentication (needs --trusted-ca-file).', [
    clientTlsKey,
    'client-cert-auth',
  ]),
  spec('peer-cert-file', 'string', 'security', '', 'path to the peer server TLS cert file.', [peerTlsKey, 'cert-file']),
  spec('peer-key-file', 'string', 'security', '', 'path to the peer server TLS key file.', [peerTlsKey, 'key-file']),
  spec('peer-trusted-ca-file', 'string', 'security', '', 'path to the peer server TLS trusted CA file.', [
    peerTlsKey,
    'trusted-ca-file',
  ]),
  spec(
    'peer-client-cert-auth',
    'bool',
    'security',
    'false',
    'enable peer client cert authentication (needs --peer-trusted-ca-file).',
    [peerTlsKey, 'client-cert-auth'],
  ),
  spec(
    'auth-token',
    'string',
    'security',
    'simple',
    'the auth tokens Authenticate hands out (etcd\'s syntax): \'simple\' (opaque random tokens), or ' +
      '\'jwt,pub-key=PATH,priv-key=PATH,sign-method=METHOD[,ttl=5m]\' (signed tokens any member with the key verifies; methods ' +
      'RS256/384/512, PS256/384/512, ES256/384/512, EdDSA, and HS256/384/512 with the shared secret as priv-key; ' +
      'pub-key alone verifies only; ttl defaults to 5m). Key files are read at start.',
  ),
  spec(
    'auth-token-ttl',
    'int',
    'security',
    String(authTokenTtlSecondsDefault),
    `lifetime in seconds of a simple token (${authTokenTtlSecondsMin}..${authTokenTtlSecondsMax}); a JWT's is the ttl= of --auth-token.`,
  ),
  spec(
    'bcrypt-cost',
    'int',
    'security',
    String(bcryptCostDefault),
    `cost of password hashing. DKV uses scrypt, with N = 2^(bcrypt-cost + ${scryptLog2NPerBcryptCostOffset}) ` +
      `held within 2^${scryptLog2NMin}..2^${scryptLog2NMax} (the default gives 2^${scryptLog2NOf(bcryptCostDefault)}); ` +
      `as in etcd, a cost outside ${bcryptCostMin}..${bcryptCostMax} is warned about and the default used.`,
  ),
  spec(
    'peer-cert-allowed-cn',
    'string',
    'security',
    '',
    'required CN of the peers\' certificates (a peer whose certificate has another CN is refused; both ends of a link check it, an accepted one only with --peer-client-cert-auth).',
    [peerTlsKey, 'allowed-cn'],
  ),
  spec(
    'peer-cert-allowed-hostname',
    'string',
    'security',
    '',
    'required hostname of the peers\' certificates, matched against their subject alternative names (as --peer-cert-allowed-cn; not with it).',
    [peerTlsKey, 'allowed-hostname'],
  ),
  spec('tick-ms', 'int', 'dkv', String(tickMsDefault), `milliseconds per Raft tick (${tickMsMin}..${tickMsMax}).`),
  spec(
    'election-ticks',
    'int',
    'dkv',
    String(electionTicksDefault),
    `ticks before a follower campaigns; at least ${electionToHeartbeatRatioMin} x --heartbeat-ticks, ` +
      `and election-ticks x tick-ms <= ${electionTimeoutMsMax} ms.`,
  ),
  spec(
    'heartbeat-ticks',
    'int',
    'dkv',
    String(heartbeatTicksDefault),
    `ticks between leader heartbeats (${heartbeatTicksMin}..${heartbeatTicksMax}).`,
  ),
  spec('snapshot-count', 'int', 'dkv', String(snapshotCountDefault), 'committed entries between snapshots of a shard.'),
  spec(
    'snapshot-bytes',
    'int',
    'dkv',
    String(snapshotBytesDefault),
    `bytes of committed entries between snapshots of a shard, whichever of this and --snapshot-count comes first; bounds the log a restart replays (0: entries only; ${snapshotBytesRecommended} is a good value for a store loaded in large batches).`,
  ),
  spec(
    'max-request-bytes',
    'int',
    'dkv',
    String(requestBytesMaxDefault),
    `largest client request in bytes (${requestBytesMaxMin}..${requestBytesMaxMax}).`,
  ),
  spec(
    'max-pending-requests-per-connection',
    'int',
    'dkv',
    String(requestsPendingPerConnectionMaxDefault),
    `unary calls one client connection may have in progress; more are refused with 'too many requests' (1..${requestsPendingPerConnectionMaxMax}).`,
  ),
  spec(
    'max-streams-per-connection',
    'int',
    'dkv',
    String(streamsPerConnectionMaxDefault),
    `streams (Watch, LeaseKeepAlive, Observe, Snapshot) one client connection may have open; more are refused with 'too many requests' (1..${streamsPerConnectionMaxMax}).`,
  ),
  spec('log-file', 'string', 'dkv', '', 'write the log to this file instead of stderr.'),
  spec(
    'experimental-lease-reads',
    'bool',
    'dkv',
    'false',
    'a shard leader serves linearizable reads under its leader lease, without a heartbeat round per batch of reads. ' +
      'The lease lasts floor((election ticks - 1) * 3/4) leader ticks from a heartbeat a quorum acknowledged (6 ticks, 600 ms, by default); ' +
      'ticks a stall (GC, SIGSTOP, a paused VM) made late are caught up from the monotonic clock before any read or peer message is handled. ' +
      'Assumes no member\'s clock runs more than 25% fast against the leader\'s; if it does a read may be stale. DKV only (etcd has no such flag).',
  ),
  spec(
    'experimental-quiesce',
    'bool',
    'dkv',
    'true',
    'quiesce idle shards: a Raft group with nothing to do stops ticking and heartbeating until a request or Raft message wakes it ' +
      '(dkv_shards_quiesced counts them). false keeps every group ticking, its leader heartbeating every heartbeat interval, as etcd does; ' +
      'a member started with false keeps every group of the cluster from quiescing while it is a member. ' +
      'Always off with --experimental-lease-reads, whatever this flag says. DKV only (etcd has no such flag).',
  ),
  spec(
    'shard-split-bytes',
    'int',
    'dkv',
    String(shardSplitBytesDefault),
    `a mounted store's shard whose retained versions (its DB SIZE IN USE) reach this many bytes is split at the key that divides them most evenly, by the node leading it (not when one key's history holds most of them: compact it) (0: never; else ${shardSplitBytesMin} or more). ` +
      'The default store and the meta shard are never split. DKV only (etcd has no such flag).',
  ),
  spec(
    'shard-split-qps',
    'int',
    'dkv',
    String(shardSplitQpsDefault),
    `a mounted store's shard to which this member routes this many requests per second, over a ${shardSplitLoadWindowMs / 1000} s window, is split at the key that divides them most evenly ` +
      `(not when one key takes most of them). Counted where requests arrive: each member counts its own share (0: never). DKV only (etcd has no such flag).`,
  ),
  spec(
    'shard-replica-dead-seconds',
    'int',
    'dkv',
    String(shardReplicaDeadSecondsDefault),
    'a member whose peer link has been down this many seconds, as the meta shard\'s leader sees it, is dead: each replica it holds of a store created with --replicas ' +
      'moves to the live member hosting the fewest (a learner, caught up, promoted, then the dead member removed), while a majority of the shard\'s replicas is live (0: never). ' +
      'Read on the meta shard\'s leader. DKV only (etcd has no such flag).',
  ),
  spec(
    'shard-rebalance',
    'bool',
    'dkv',
    'true',
    'while every voting member is live, the meta shard\'s leader moves replicas of stores created with --replicas, one at a time, until no member hosts two more than another, ' +
      'then hands leaderships of named stores\' shards over until no member leads two more than a member hosting one of its shards (false: only dead members\' replicas move; set it on every member before emptying one by hand). ' +
      'Read on the meta shard\'s leader. DKV only (etcd has no such flag).',
  ),
  spec(
    'unsafe-stale-reads',
    'bool',
    'dkv',
    'false',
    'TEST ONLY: serve linearizable reads without ReadIndex (stale reads; breaks linearizability on purpose).',
  ),
  spec(
    'unsafe-ignore-txn-compare',
    'bool',
    'dkv',
    'false',
    'TEST ONLY: apply every Txn that writes as if its compares held (lost updates; breaks serializability on purpose).',
  ),
  spec(
    'heartbeat-interval',
    'int',
    'etcd',
    '',
    'etcd\'s form: milliseconds per heartbeat; sets --tick-ms, with --heartbeat-ticks 1.',
  ),
  spec(
    'election-timeout',
    'int',
    'etcd',
    '',
    'etcd\'s form: election timeout in milliseconds; sets --election-ticks to it / heartbeat interval.',
  ),
  spec('log-level', 'string', 'logging', logLevelDefault, `lowest level logged: ${logLevels.join(', ')}.`),
  spec(
    'log-outputs',
    'list',
    'logging',
    'default',
    'where the log goes: stderr (or default), stdout, or file paths; comma-separated for several.',
  ),
  spec(
    'log-format',
    'string',
    'logging',
    logFormatDefault,
    'log line format: text (<time> <LEVEL> <name>: <message> key=value…) or json (one object per line: level, ts, name, msg and fields).',
  ),
  spec('logger', 'string', 'logging', 'zap', 'etcd\'s logger choice; DKV has one logger, "zap" and "capnslog" are accepted.'),
  spec('debug', 'bool', 'logging', 'false', 'etcd 3.4\'s older form of --log-level=debug.'),
  ...etcdFlagsWithoutEffect.map((flag) => spec(flag.flag, flag.kind, 'no-effect', flag.etcdDefault, flag.reason, flag.yamlPath)),
];

const specByFlag: ReadonlyMap<string, FlagSpec> = new Map(flagSpecs.map((s) => [s.flag, s]));

/**
 * Keys of etcd's config file that DKV does not implement. A file holding them still loads (so an
 * etcd config file works as is), with a warning; any other unknown key is an error, to catch typos.
 */
const etcdKeysIgnored: ReadonlySet<string> = new Set([
  'wal-dir',
  'max-snapshots',
  'max-wals',
  'backend-batch-limit',
  'backend-batch-interval',
  'max-txn-ops',
  'grpc-keepalive-min-time',
  'grpc-keepalive-interval',
  'grpc-keepalive-timeout',
  'strict-reconfig-check',
  'enable-v2',
  'enable-pprof',
  'enable-grpc-gateway',
  'proxy',
  'proxy-failure-wait',
  'proxy-refresh-interval',
  'proxy-dial-timeout',
  'proxy-write-timeout',
  'proxy-read-timeout',
  'discovery',
  'discovery-fallback',
  'discovery-proxy',
  'discovery-srv',
  'discovery-srv-name',
  'cors',
  'host-whitelist',
  'force-new-cluster',
  'logger',
  'log-level',
  'log-outputs',
  'debug',
  'metrics',
  'self-signed-cert-validity',
  'cipher-suites',
  'tls-min-version',
  'tls-max-version',
  'initial-election-tick-advance',
  'pre-vote',
  'unsafe-no-fsync',
  'socket-reuse-port',
  'socket-reuse-address',
]);

const tlsKeysIgnored: ReadonlySet<string> = new Set([
  'auto-tls',
  'client-cert-file',
  'client-key-file',
  'crl-file',
  'allowed-cn',
  'allowed-hostname',
]);

// ---------------------------------------------------------------------------------------------
// Collecting raw settings from argv, the environment and the config file

type Source = { kind: 'flag' } | { kind: 'env'; variable: string } | { kind: 'file'; path: string };

interface RawSetting {
  readonly text: string;
  readonly source: Source;
}

type RawSettings = Map<string, RawSetting>;

export function envVariableOf(flag: string, prefix: 'DKV_' | 'ETCD_' = 'DKV_'): string {
  return `${prefix}${flag.toUpperCase().replace(/-/g, '_')}`;
}

/** Edit distance (Levenshtein) of two short strings. */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/** A typo's likely meaning: the closest known flag within a third of its length, as " (did you mean --x?)". */
function suggestionFor(flag: string): string {
  const allowed = Math.max(2, Math.floor(flag.length / 3));
  let best: { flag: string; distance: number } | undefined;
  for (const candidate of specByFlag.keys()) {
    const distance = editDistance(flag, candidate);
    if (distance <= allowed && (best === undefined || distance < best.distance)) best = { flag: candidate, distance };
  }
  return best === undefined ? '' : ` (did you mean --${best.flag}?)`;
}

/** How a message names a field: as the user wrote it. */
function labelOf(flag: string, raw: RawSettings): string {
  // A setting missing from a config file is named as the file would hold it.
  const source = raw.get(flag)?.source ?? [...raw.values()].find((setting) => setting.source.kind === 'file')?.source;
  if (source?.kind === 'env') return source.variable;
  if (source?.kind === 'file') {
    const path = specByFlag.get(flag)?.yamlPath ?? [flag];
    return `${path.join('.')} (in ${source.path})`;
  }
  return `--${flag}`;
}

function fail(flag: string, raw: RawSettings, problem: string): never {
  throw new ConfigError(flag, `${labelOf(flag, raw)}: ${problem}`);
}

/** True when argv asks for the version (`--version`, as etcd); the CLI prints it instead of parsing. */
export function wantsVersion(argv: readonly string[]): boolean {
  return argv.some((arg) => arg === '--version' || arg === '-version');
}

/** True when argv asks for help; the CLI prints `serverHelp` instead of parsing. */
export function wantsHelp(argv: readonly string[]): boolean {
  return argv.some((arg) => arg === '-h' || arg === '--help' || arg === '-help');
}

function parseArgv(argv: readonly string[]): RawSettings {
  const raw: RawSettings = new Map();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (!arg.startsWith('-') || arg === '-' || arg === '--') {
      throw new ConfigError('argv', `unexpected argument "${arg}": dkv server takes only flags`);
    }
    const body = arg.replace(/^--?/, '');
    const equals = body.indexOf('=');
    const flag = equals < 0 ? body : body.slice(0, equals);
    const spec = specByFlag.get(flag);
    if (spec === undefined) throw new ConfigError(flag, `--${flag}: unknown flag${suggestionFor(flag)} (see dkv server --help)`);
    if (raw.has(flag)) throw new ConfigError(flag, `--${flag}: given more than once`);
    let text: string;
    if (equals >= 0) {
      text = body.slice(equals + 1);
    } else if (spec.kind === 'bool') {
      text = 'true';
    } else {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith('-') && next.length > 1)) {
        throw new ConfigError(flag, `--${flag}: needs a value`);
      }
      text = next;
      i++;
    }
    raw.set(flag, { text, source: { kind: 'flag' } });
  }
  return raw;
}

function addEnvironment(raw: RawSettings, env: Readonly<Record<string, string | undefined>>, warnings: string[]): void {
  const known = new Set<string>(processVariables);
  for (const spec of flagSpecs) {
    // DKV_ wins over etcd's ETCD_ (both name the same flag); a flag on the command line over both.
    const given = (['DKV_', 'ETCD_'] as const)
      .map((prefix) => envVariableOf(spec.flag, prefix))
      .filter((variable) => {
        known.add(variable);
        return (env[variable] ?? '') !== '';
      });
    const variable = given[0];
    if (variable === undefined) continue;
    if (raw.has(spec.flag)) {
      warnings.push(`${given.join(' and ')} ${given.length > 1 ? 'are' : 'is'} ignored: --${spec.flag} is given on the command line`);
      continue;
    }
    if (given.length > 1) warnings.push(`${given[1]} is ignored: ${variable} is also set and wins`);
    raw.set(spec.flag, { text: env[variable] ?? '', source: { kind: 'env', variable } });
  }
  for (const variable of Object.keys(env).sort()) {
    if (known.has(variable) || env[variable] === undefined) continue;
    if (variable.startsWith('DKV_')) warnings.push(`${variable} is not a dkv server setting; ignored`);
    if (variable.startsWith('ETCD_')) warnings.push(`${variable} is not an etcd server setting DKV knows; ignored`);
  }
}

/**
 * The YAML parser, loaded only for a --config-file: loading it costs a node's start (every
 * restart) tens of milliseconds that a start without a config file does not need.
 */
function parseYaml(text: string): unknown {
  const yaml = createRequire(import.meta.url)('yaml') as typeof import('yaml');
  return yaml.parse(text);
}

function readConfigFile(path: string, raw: RawSettings): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    fail('config-file', raw, `cannot read "${path}": ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  try {
    return parseYaml(text) ?? {};
  } catch (error) {
    const firstLine = String((error as Error).message).split('\n', 1)[0];
    fail('config-file', raw, `"${path}" is not valid YAML: ${firstLine}`);
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The settings of a config file; the caller then ignores every flag and variable but the path. */
function settingsFromFile(path: string, raw: RawSettings, warnings: string[], errors?: ConfigError[]): RawSettings {
  const document = readConfigFile(path, raw);
  if (!isPlainObject(document)) fail('config-file', raw, `"${path}" must hold a YAML mapping of etcd's keys`);
  const byPath = new Map(flagSpecs.filter((s) => s.yamlPath !== undefined).map((s) => [s.yamlPath?.join('.'), s]));
  const settings: RawSettings = new Map();
  const ignored: string[] = [];
  const source: Source = { kind: 'file', path };
  const take = (key: string, value: unknown): void =>
    attempt(errors, () => {
      const spec = byPath.get(key);
      if (spec === undefined) throw new ConfigError(key, `config file ${path}: unknown key "${key}"`);
      if (value === null || value === undefined) return;
      settings.set(spec.flag, { text: yamlValueText(spec, key, value, path), source });
    }, undefined);
  for (const [key, value] of Object.entries(document)) {
    if (key === clientTlsKey || key === peerTlsKey) {
      if (value === null) continue;
      if (!isPlainObject(value)) {
        attempt(errors, () => {
          throw new ConfigError(key, `config file ${path}: ${key} must be a mapping`);
        }, undefined);
        continue;
      }
      for (const [inner, innerValue] of Object.entries(value)) {
        if (byPath.has(`${key}.${inner}`)) take(`${key}.${inner}`, innerValue);
        else if (tlsKeysIgnored.has(inner)) ignored.push(`${key}.${inner}`);
        else take(`${key}.${inner}`, innerValue);
      }
    } else if (etcdKeysIgnored.has(key) && !byPath.has(key)) {
      ignored.push(key);
    } else {
      take(key, value);
    }
  }
  if (ignored.length > 0) warnings.push(`config file ${path}: etcd settings DKV does not use, ignored: ${ignored.join(', ')}`);
  return settings;
}

function yamlValueText(spec: FlagSpec, key: string, value: unknown, path: string): string {
  const problem = (what: string): never => {
    throw new ConfigError(spec.flag, `${key} (in ${path}): must be ${what}`);
  };
  switch (spec.kind) {
    case 'bool':
      return typeof value === 'boolean' ? String(value) : problem('true or false');
    case 'int':
      return typeof value === 'number' || typeof value === 'string' ? String(value) : problem('a whole number');
    case 'duration':
      return typeof value === 'number' || typeof value === 'string' ? String(value) : problem('a duration');
    case 'list':
    case 'urls':
    case 'cluster':
      if (Array.isArray(value) && value.every((item) => typeof item === 'string')) return value.join(',');
      return typeof value === 'string' ? value : problem('a string or a list of strings');
    case 'string':
      return typeof value === 'string' || typeof value === 'number' ? String(value) : problem('a string');
  }
}

// ---------------------------------------------------------------------------------------------
// Typed values

const namePattern = /^[^\s=,]+$/;

function nameValue(flag: string, text: string, raw: RawSettings): string {
  if (text === '') fail(flag, raw, 'must not be empty');
  if (text.length > nameLengthMax) fail(flag, raw, `must be at most ${nameLengthMax} characters`);
  if (!namePattern.test(text)) fail(flag, raw, `"${text}" must not contain spaces, "=" or ","`);
  return text;
}

function stringValue(flag: string, raw: RawSettings): string | undefined {
  const setting = raw.get(flag);
  if (setting === undefined) return undefined;
  if (setting.text.trim() === '') fail(flag, raw, 'must not be empty');
  return setting.text;
}

function intValue(flag: string, raw: RawSettings, fallback: number, min: number, max: number): number {
  const setting = raw.get(flag);
  if (setting === undefined) return fallback;
  const text = setting.text.trim();
  if (!/^\d+$/.test(text)) fail(flag, raw, `must be a whole number, got "${setting.text}"`);
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    fail(flag, raw, `must be between ${min} and ${max}, got ${text}`);
  }
  return value;
}

/** `--shard-split-bytes`: 0 (off) or a threshold of at least shardSplitBytesMin. */
function shardSplitBytesValue(raw: RawSettings): number {
  const bytes = intValue('shard-split-bytes', raw, shardSplitBytesDefault, 0, shardSplitBytesMax);
  if (bytes !== 0 && bytes < shardSplitBytesMin) fail('shard-split-bytes', raw, `must be 0 (never split by size) or at least ${shardSplitBytesMin}, got ${bytes}`);
  return bytes;
}

function boolValue(flag: string, raw: RawSettings, fallback = false): boolean {
  const setting = raw.get(flag);
  if (setting === undefined) return fallback;
  const text = setting.text.trim().toLowerCase();
  if (text === 'true' || text === '1') return true;
  if (text === 'false' || text === '0') return false;
  return fail(flag, raw, `must be true or false, got "${setting.text}"`);
}

const httpUrlPattern = /^(https?):\/\/(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d*))?(\/.*)?$/i;

/** Parses one URL; `problem` receives the failure, already quoting the URL. */
export function parseServerUrl(text: string, allowUnix: boolean, problem: (message: string) => never): ServerUrl {
  const trimmed = text.trim();
  if (trimmed === '') return problem('has an empty URL in its list');
  if (allowUnix && /^unix:\/\//i.test(trimmed)) {
    const socketPath = trimmed.slice('unix://'.length);
    if (socketPath === '') return problem(`"${trimmed}" names no socket`);
    return { scheme: 'unix', host: socketPath, port: 0, href: `unix://${socketPath}` };
  }
  const match = httpUrlPattern.exec(trimmed);
  if (match === null) return problem(`"${trimmed}" is not an http(s) URL`);
  const [, schemeText = '', hostText = '', portText, pathText] = match;
  if (pathText !== undefined && pathText !== '/') return problem(`"${trimmed}" must not have a path`);
  if (portText === undefined || portText === '') return problem(`"${trimmed}" has no port`);
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    return problem(`"${trimmed}" has port ${portText}, outside 1..65535`);
  }
  const scheme = schemeText.toLowerCase() as 'http' | 'https';
  const host = hostText.replace(/^\[|\]$/g, '').toLowerCase();
  const hostInUrl = host.includes(':') ? `[${host}]` : host;
  return { scheme, host, port, href: `${scheme}://${hostInUrl}:${port}` };
}

function urlsValue(
  flag: string,
  raw: RawSettings,
  fallback: string | undefined,
  allowUnix = false,
): ServerUrl[] | undefined {
  const text = raw.get(flag)?.text ?? fallback;
  if (text === undefined) return undefined;
  if (text.trim() === '') fail(flag, raw, 'must list at least one URL');
  const urls = text.split(',').map((item) => parseServerUrl(item, allowUnix, (m) => fail(flag, raw, m)));
  assertNoDuplicateUrls(flag, raw, urls);
  return urls;
}

function assertNoDuplicateUrls(flag: string, raw: RawSettings, urls: readonly ServerUrl[]): void {
  const seen = new Set<string>();
  for (const url of urls) {
    if (seen.has(url.href)) fail(flag, raw, `"${url.href}" is listed twice`);
    seen.add(url.href);
  }
}

function clusterValue(raw: RawSettings, text: string): ClusterMember[] {
  const flag = 'initial-cluster';
  if (text.trim() === '') fail(flag, raw, 'must list at least one member');
  const members = new Map<string, ServerUrl[]>();
  const owner = new Map<string, string>();
  for (const item of text.split(',').map((entry) => entry.trim())) {
    const equals = item.indexOf('=');
    const name = equals < 0 ? item : item.slice(0, equals);
    const urlText = equals < 0 ? '' : item.slice(equals + 1);
    if (name === '') fail(flag, raw, `entry "${item}" has no member name`);
    if (!namePattern.test(name)) fail(flag, raw, `member name "${name}" must not contain spaces`);
    if (urlText.trim() === '') fail(flag, raw, `member "${name}" has no URL`);
    const url = parseServerUrl(urlText, false, (m) => fail(flag, raw, `member "${name}": ${m}`));
    const previous = owner.get(url.href);
    if (previous === name) fail(flag, raw, `member "${name}" lists "${url.href}" twice`);
    if (previous !== undefined) fail(flag, raw, `"${url.href}" is given for both "${previous}" and "${name}"`);
    owner.set(url.href, name);
    // As in etcd, a repeated name adds a URL to that member rather than naming a second member.
    members.set(name, [...(members.get(name) ?? []), url]);
  }
  return [...members].map(([name, peerUrls]) => ({ name, peerUrls }));
}

/** Advertise URLs default to the listen URLs, which only works if those name a reachable host. */
function advertiseDefault(
  advertiseFlag: string,
  listenFlag: string,
  listen: readonly ServerUrl[],
  raw: RawSettings,
): ServerUrl[] {
  const reachable = listen.filter((url) => url.scheme !== 'unix');
  const wildcard = reachable.find((url) => url.host === '0.0.0.0' || url.host === '::');
  if (wildcard !== undefined) {
    fail(advertiseFlag, raw, `must be given: --${listenFlag} listens on all interfaces (${wildcard.href})`);
  }
  if (reachable.length === 0) fail(advertiseFlag, raw, `must be given: --${listenFlag} has only unix sockets`);
  return reachable;
}

interface Timing {
  readonly tickMs: number;
  readonly heartbeatTicks: number;
  readonly electionTicks: number;
}

function timingValue(raw: RawSettings): Timing {
  const etcdForm = ['heartbeat-interval', 'election-timeout'].find((flag) => raw.has(flag));
  if (etcdForm === undefined) {
    const timing = {
      tickMs: intValue('tick-ms', raw, tickMsDefault, tickMsMin, tickMsMax),
      heartbeatTicks: intValue('heartbeat-ticks', raw, heartbeatTicksDefault, heartbeatTicksMin, heartbeatTicksMax),
      electionTicks: intValue('election-ticks', raw, electionTicksDefault, electionTicksMin, electionTicksMax),
    };
    assertTiming(timing, raw);
    return timing;
  }
  const dkvForm = ['tick-ms', 'heartbeat-ticks', 'election-ticks'].find((flag) => raw.has(flag));
  if (dkvForm !== undefined) {
    fail(etcdForm, raw, `cannot be combined with ${labelOf(dkvForm, raw)}; use etcd's milliseconds or DKV's ticks`);
  }
  const heartbeatMs = intValue('heartbeat-interval', raw, tickMsDefault, tickMsMin, tickMsMax);
  const electionMs = intValue('election-timeout', raw, tickMsDefault * electionTicksDefault, 1, electionTimeoutMsMax);
  if (electionMs < electionToHeartbeatRatioMin * heartbeatMs) {
    fail(
      'election-timeout',
      raw,
      `must be at least ${electionToHeartbeatRatioMin} times --heartbeat-interval ` +
        `(${electionToHeartbeatRatioMin * heartbeatMs} ms), got ${electionMs}`,
    );
  }
  // etcd's election ticks are the timeout divided by the heartbeat interval, rounded down.
  return { tickMs: heartbeatMs, heartbeatTicks: 1, electionTicks: Math.floor(electionMs / heartbeatMs) };
}

/** A node's election timeout in ms: its election ticks times its tick. */
export function electionTimeoutMsOf(timing: { readonly tickMs: number; readonly electionTicks: number }): number {
  return timing.electionTicks * timing.tickMs;
}

function assertTiming(timing: Timing, raw: RawSettings): void {
  const heartbeatFloor = electionToHeartbeatRatioMin * timing.heartbeatTicks;
  if (timing.electionTicks < heartbeatFloor) {
    fail(
      'election-ticks',
      raw,
      `must be at least ${electionToHeartbeatRatioMin} times --heartbeat-ticks (${heartbeatFloor}), ` +
        `got ${timing.electionTicks}`,
    );
  }
  const electionMs = electionTimeoutMsOf(timing);
  if (electionMs > electionTimeoutMsMax) {
    fail(
      'election-ticks',
      raw,
      `election timeout ${electionMs} ms (election-ticks x tick-ms) is over the ${electionTimeoutMsMax} ms maximum`,
    );
  }
}

function tlsValue(raw: RawSettings, prefix: '' | 'peer-'): TlsConfig {
  const tls: TlsConfig = {
    certFile: stringValue(`${prefix}cert-file`, raw),
    keyFile: stringValue(`${prefix}key-file`, raw),
    trustedCaFile: stringValue(`${prefix}trusted-ca-file`, raw),
    clientCertAuth: boolValue(`${prefix}client-cert-auth`, raw),
  };
  if (tls.certFile !== undefined && tls.keyFile === undefined) {
    fail(`${prefix}key-file`, raw, `must be given with ${labelOf(`${prefix}cert-file`, raw)}`);
  }
  if (tls.keyFile !== undefined && tls.certFile === undefined) {
    fail(`${prefix}cert-file`, raw, `must be given with ${labelOf(`${prefix}key-file`, raw)}`);
  }
  if (tls.clientCertAuth && tls.trustedCaFile === undefined) {
    fail(`${prefix}trusted-ca-file`, raw, `must be given with ${labelOf(`${prefix}client-cert-auth`, raw)}`);
  }
  if (prefix === '') return tls;
  // Empty is etcd's default (no rule): an etcd config file may spell it out.
  const optional = (flag: string): string | undefined => (raw.get(flag)?.text.trim() === '' ? undefined : stringValue(flag, raw));
  const allowedCn = optional('peer-cert-allowed-cn');
  const allowedHostname = optional('peer-cert-allowed-hostname');
  // As etcd: one rule or the other.
  if (allowedCn !== undefined && allowedHostname !== undefined) {
    fail('peer-cert-allowed-hostname', raw, `cannot be given with ${labelOf('peer-cert-allowed-cn', raw)}`);
  }
  return { ...tls, allowedCn, allowedHostname };
}

/** https URLs need the matching cert and key; TLS files with no https URL are unused. */
function checkTlsUse(
  raw: RawSettings,
  tls: TlsConfig,
  urlLists: ReadonlyArray<readonly [string, readonly ServerUrl[]]>,
  certFlag: string,
  keyFlag: string,
  warnings: string[],
): void {
  let anyHttps = false;
  for (const [flag, urls] of urlLists) {
    const https = urls.find((url) => url.scheme === 'https');
    if (https === undefined) continue;
    anyHttps = true;
    if (tls.certFile === undefined) fail(flag, raw, `"${https.href}" needs --${certFlag} and --${keyFlag}`);
  }
  if (!anyHttps && tls.certFile !== undefined) {
    warnings.push(`--${certFlag} is given but no URL it serves is https; TLS is not used there`);
  }
  const allowed = tls.allowedCn !== undefined ? '--peer-cert-allowed-cn' : tls.allowedHostname !== undefined ? '--peer-cert-allowed-hostname' : undefined;
  if (allowed !== undefined && !anyHttps) warnings.push(`${allowed} has no effect: the peer URLs are not https`);
  else if (allowed !== undefined && !tls.clientCertAuth) {
    warnings.push(`${allowed} checks the certificates of the peers this member dials only: without --peer-client-cert-auth, the peers that dial it show none`);
  }
}

// ---------------------------------------------------------------------------------------------
// parseServerConfig

/**
 * Parses `dkv server` arguments. `env` is the environment to read `DKV_*` variables from; the CLI
 * passes `process.env`, and it defaults to none so that a call depends only on its arguments.
 * Throws ConfigError for any problem.
 */
export function parseServerConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>> = {},
): ServerConfig {
  const warnings: string[] = [];
  let raw = parseArgv(argv);
  addEnvironment(raw, env, warnings);
  const configFile = stringValue('config-file', raw);
  if (configFile !== undefined) {
    const overridden = [...raw.keys()].filter((flag) => flag !== 'config-file');
    raw = settingsFromFile(configFile, raw, warnings);
    if (overridden.length > 0) {
      warnings.push(
        `a config file is given, so these settings from flags or DKV_* variables are ignored (as in etcd): ` +
          overridden.map((flag) => `--${flag}`).join(', '),
      );
    }
  }
  return resolve(raw, configFile, warnings);
}

/** What `checkConfigFile` finds: the config when the file is good, else every bad field. */
export interface ConfigFileCheck {
  /** The parsed config, as `dkv server --config-file` would run with it; undefined if any error. */
  readonly config: ServerConfig | undefined;
  /** One ConfigError per bad field (a file that cannot be read or is not YAML gives one). */
  readonly errors: readonly ConfigError[];
  readonly warnings: readonly string[];
}

/**
 * Validates a config file with the parser `dkv server --config-file` uses, collecting every bad
 * field instead of stopping at the first (`dkv config check`). Checks across fields (membership,
 * TLS use) run once each field is good on its own. Reads no environment: with a config file the
 * server ignores it.
 */
export function checkConfigFile(path: string): ConfigFileCheck {
  const warnings: string[] = [];
  const errors: ConfigError[] = [];
  const raw: RawSettings = new Map([['config-file', { text: path, source: { kind: 'flag' } }]]);
  try {
    const settings = settingsFromFile(path, raw, warnings, errors);
    const config = resolve(settings, path, warnings, errors);
    return { config: errors.length === 0 ? config : undefined, errors, warnings };
  } catch (error) {
    // Unreadable, not YAML, or not a mapping: nothing further can be checked.
    if (!(error instanceof ConfigError)) throw error;
    return { config: undefined, errors: [...errors, error], warnings };
  }
}

/**
 * Runs one field's parse. Without a sink (`dkv server`) its ConfigError stops the parse, as
 * always; with one (`dkv config check`) the error is collected and `fallback` stands in, so every
 * bad field gets its own message.
 */
function attempt<T>(errors: ConfigError[] | undefined, parse: () => T, fallback: T): T {
  if (errors === undefined) return parse();
  try {
    return parse();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    errors.push(error);
    return fallback;
  }
}

/**
 * A check across fields (defaults derived from other fields, membership, TLS use): when
 * collecting, it runs only if every field parsed, since a stand-in value would make it report a
 * problem the file does not have.
 */
function crossCheck<T>(errors: ConfigError[] | undefined, check: () => T, fallback: T): T {
  if (errors !== undefined && errors.length > 0) return fallback;
  return attempt(errors, check, fallback);
}

function resolve(raw: RawSettings, configFile: string | undefined, warnings: string[], errors?: ConfigError[]): ServerConfig {
  const field = <T>(parse: () => T, fallback: T): T => attempt(errors, parse, fallback);
  const name = field(() => nameValue('name', raw.get('name')?.text ?? defaults.name, raw), defaults.name);
  const dataDir = field(() => stringValue('data-dir', raw), undefined) ?? `${name}.dkv`;
  const listenClientUrls = field(() => urlsValue('listen-client-urls', raw, defaults.listenClientUrls, true) ?? [], []);
  const listenPeerUrls = field(() => urlsValue('listen-peer-urls', raw, defaults.listenPeerUrls) ?? [], []);
  const listenMetricsUrls = field(() => urlsValue('listen-metrics-urls', raw, undefined, true) ?? [], []);
  const advertiseClientUrls =
    field(() => urlsValue('advertise-client-urls', raw, undefined), []) ??
    crossCheck(errors, () => advertiseDefault('advertise-client-urls', 'listen-client-urls', listenClientUrls, raw), []);
  const initialAdvertisePeerUrls =
    field(() => urlsValue('initial-advertise-peer-urls', raw, undefined), []) ??
    crossCheck(errors, () => advertiseDefault('initial-advertise-peer-urls', 'listen-peer-urls', listenPeerUrls, raw), []);
  const givenCluster = raw.get('initial-cluster')?.text;
  const initialCluster =
    givenCluster !== undefined
      ? field(() => clusterValue(raw, givenCluster), [])
      : crossCheck(errors, () => clusterValue(raw, initialAdvertisePeerUrls.map((url) => `${name}=${url.href}`).join(',')), []);
  const initialClusterState = field(() => clusterStateValue(raw), defaults.initialClusterState);
  const initialClusterToken = field(() => stringValue('initial-cluster-token', raw), undefined) ?? defaults.initialClusterToken;
  const timing = field(() => timingValue(raw), {
    tickMs: tickMsDefault,
    heartbeatTicks: heartbeatTicksDefault,
    electionTicks: electionTicksDefault,
  });
  const snapshotCount = field(
    () => intValue('snapshot-count', raw, snapshotCountDefault, snapshotCountMin, snapshotCountMax),
    snapshotCountDefault,
  );
  const snapshotBytes = field(() => intValue('snapshot-bytes', raw, snapshotBytesDefault, snapshotBytesMin, snapshotBytesMax), snapshotBytesDefault);
  const maxRequestBytes = field(
    () => intValue('max-request-bytes', raw, requestBytesMaxDefault, requestBytesMaxMin, requestBytesMaxMax),
    requestBytesMaxDefault,
  );
  const requestsPendingPerConnectionMax = field(
    () => intValue('max-pending-requests-per-connection', raw, requestsPendingPerConnectionMaxDefault, 1, requestsPendingPerConnectionMaxMax),
    requestsPendingPerConnectionMaxDefault,
  );
  const streamsPerConnectionMax = field(() => intValue('max-streams-per-connection', raw, streamsPerConnectionMaxDefault, 1, streamsPerConnectionMaxMax), streamsPerConnectionMaxDefault);
  const quotaBytes = field(() => intValue('quota-backend-bytes', raw, 0, 0, quotaBackendBytesMax), 0);
  const quotaBackendBytes = quotaBytes === 0 ? quotaBackendBytesDefault : quotaBytes;
  const autoCompaction = field(() => autoCompactionValue(raw), { mode: 'periodic' as const, retention: 0 });
  const authToken = field(() => authTokenValue(raw), { kind: 'simple' as const });
  const authTokenTtlSeconds = field(
    () => intValue('auth-token-ttl', raw, authTokenTtlSecondsDefault, authTokenTtlSecondsMin, authTokenTtlSecondsMax),
    authTokenTtlSecondsDefault,
  );
  const bcryptCost = field(() => bcryptCostValue(raw, warnings), bcryptCostDefault);
  const logFile = field(() => stringValue('log-file', raw), undefined);
  const { logLevel, logOutputs, logFormat } = field(() => loggingValue(raw, logFile), { logLevel: logLevelDefault, logOutputs: ['stderr'], logFormat: logFormatDefault });
  checkWithoutEffect(raw, warnings, errors);
  const unsafeStaleReads = field(() => boolValue('unsafe-stale-reads', raw), false);
  if (unsafeStaleReads) warnings.push('--unsafe-stale-reads: linearizable reads skip ReadIndex and may be stale (test only)');
  const experimentalLeaseReads = field(() => boolValue('experimental-lease-reads', raw), false);
  if (experimentalLeaseReads) warnings.push('--experimental-lease-reads: linearizable reads rest on the leader lease and the members\' clocks (see --help)');
  const quiesceGiven = field(() => boolValue('experimental-quiesce', raw, true), true);
  // A leader that does not tick would not step down before its lease ran out (NodeRuntime.tick).
  if (experimentalLeaseReads && quiesceGiven && raw.has('experimental-quiesce')) {
    warnings.push(`${labelOf('experimental-quiesce', raw)}: idle shards never quiesce with --experimental-lease-reads; ignored`);
  }
  const experimentalQuiesce = quiesceGiven && !experimentalLeaseReads;
  const shardSplitBytes = field(() => shardSplitBytesValue(raw), shardSplitBytesDefault);
  const shardSplitQps = field(() => intValue('shard-split-qps', raw, shardSplitQpsDefault, 0, shardSplitQpsMax), shardSplitQpsDefault);
  const shardReplicaDeadSeconds = field(() => intValue('shard-replica-dead-seconds', raw, shardReplicaDeadSecondsDefault, 0, shardReplicaDeadSecondsMax), shardReplicaDeadSecondsDefault);
  const shardRebalance = field(() => boolValue('shard-rebalance', raw, true), true);
  const unsafeIgnoreTxnCompare = field(() => boolValue('unsafe-ignore-txn-compare', raw), false);
  if (unsafeIgnoreTxnCompare) warnings.push('--unsafe-ignore-txn-compare: every Txn that writes runs its success branch, whatever its compares say (test only)');
  const noTls: TlsConfig = { certFile: undefined, keyFile: undefined, trustedCaFile: undefined, clientCertAuth: false };
  const clientTls = field(() => tlsValue(raw, ''), noTls);
  const peerTls = field(() => tlsValue(raw, 'peer-'), noTls);

  const parts = { name, listenClientUrls, advertiseClientUrls, listenMetricsUrls, listenPeerUrls, initialAdvertisePeerUrls, initialCluster, clientTls, peerTls };
  crossCheck(errors, () => checkAcrossFields(raw, parts, warnings), undefined);
  return {
    name,
    dataDir,
    listenClientUrls,
    advertiseClientUrls,
    listenPeerUrls,
    initialAdvertisePeerUrls,
    initialCluster,
    initialClusterState,
    initialClusterToken,
    listenMetricsUrls,
    clientTls,
    peerTls,
    ...timing,
    snapshotCount,
    snapshotBytes,
    maxRequestBytes,
    requestsPendingPerConnectionMax,
    streamsPerConnectionMax,
    quotaBackendBytes,
    autoCompaction,
    authToken,
    authTokenTtlSeconds,
    bcryptCost,
    scryptLog2N: scryptLog2NOf(bcryptCost),
    logFile,
    logLevel,
    logFormat,
    logOutputs,
    changedSettings: changedSettingsOf(raw),
    unsafeStaleReads,
    experimentalLeaseReads,
    experimentalQuiesce,
    shardSplitBytes,
    shardSplitQps,
    shardReplicaDeadSeconds,
    shardRebalance,
    unsafeIgnoreTxnCompare,
    configFile,
    warnings,
  };
}

type CrossFieldParts = Pick<
  ServerConfig,
  'name' | 'listenClientUrls' | 'advertiseClientUrls' | 'listenMetricsUrls' | 'listenPeerUrls' | 'initialAdvertisePeerUrls' | 'initialCluster' | 'clientTls' | 'peerTls'
>;

/** The checks that relate fields to one another, once each field parsed on its own. */
function checkAcrossFields(raw: RawSettings, parts: CrossFieldParts, warnings: string[]): void {
  checkMembership(raw, parts.name, parts.initialAdvertisePeerUrls, parts.initialCluster);
  checkTlsUse(
    raw,
    parts.clientTls,
    [
      ['listen-client-urls', parts.listenClientUrls],
      ['advertise-client-urls', parts.advertiseClientUrls],
      ['listen-metrics-urls', parts.listenMetricsUrls],
    ],
    'cert-file',
    'key-file',
    warnings,
  );
  checkTlsUse(
    raw,
    parts.peerTls,
    [
      ['listen-peer-urls', parts.listenPeerUrls],
      ['initial-advertise-peer-urls', parts.initialAdvertisePeerUrls],
      ['initial-cluster', parts.initialCluster.flatMap((member) => member.peerUrls)],
    ],
    'peer-cert-file',
    'peer-key-file',
    warnings,
  );
}

function changedSettingsOf(raw: RawSettings): string[] {
  const changed: string[] = [];
  for (const [flag, setting] of raw) {
    const spec = specByFlag.get(flag);
    if (spec === undefined || spec.group === 'no-effect' || setting.text === spec.defaultText) continue;
    const source = setting.source.kind === 'flag' ? 'flag' : setting.source.kind === 'env' ? setting.source.variable : 'config file';
    changed.push(`--${flag}=${setting.text} (${source})`);
  }
  return changed;
}

function loggingValue(raw: RawSettings, logFile: string | undefined): { logLevel: LogLevel; logOutputs: string[]; logFormat: LogFormat } {
  const levelText = (raw.get('log-level')?.text ?? (boolValue('debug', raw) ? 'debug' : logLevelDefault)).trim().toLowerCase();
  const logLevel = logLevels.find((level) => level === levelText);
  if (logLevel === undefined) fail('log-level', raw, `must be one of ${logLevels.join(', ')}, got "${levelText}"`);
  const formatText = (stringValue('log-format', raw) ?? logFormatDefault).trim().toLowerCase();
  const logFormat = logFormats.find((format) => format === formatText);
  if (logFormat === undefined) fail('log-format', raw, `must be one of ${logFormats.join(', ')}, got "${formatText}"`);
  const logger = stringValue('logger', raw);
  if (logger !== undefined && logger !== 'zap' && logger !== 'capnslog') fail('logger', raw, `must be "zap" or "capnslog", got "${logger}"`);
  const outputsText = stringValue('log-outputs', raw);
  if (outputsText !== undefined && logFile !== undefined) {
    fail('log-outputs', raw, `cannot be combined with ${labelOf('log-file', raw)}; give the file in --log-outputs`);
  }
  if (outputsText === undefined) return { logLevel, logFormat, logOutputs: [logFile ?? 'stderr'] };
  const outputs = outputsText.split(',').map((item) => item.trim());
  if (outputs.some((item) => item === '')) fail('log-outputs', raw, `has an empty entry: "${outputsText}"`);
  // etcd's "default" is stderr; repeated outputs would print every line twice.
  return { logLevel, logFormat, logOutputs: [...new Set(outputs.map((item) => (item === 'default' ? 'stderr' : item)))] };
}

const durationPattern = /^(0|(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+)$/;

/**
 * Validates each etcd flag DKV does not use by its kind (loosely: etcd's own parser decides the
 * rest), and warns once that it has no effect unless it holds etcd's default.
 */
function checkWithoutEffect(raw: RawSettings, warnings: string[], errors?: ConfigError[]): void {
  for (const spec of flagSpecs) {
    if (spec.group !== 'no-effect' || !raw.has(spec.flag)) continue;
    attempt(errors, () => checkOneWithoutEffect(spec, raw, warnings), undefined);
  }
}

function checkOneWithoutEffect(spec: FlagSpec, raw: RawSettings, warnings: string[]): void {
  const text = raw.get(spec.flag)?.text.trim() ?? '';
  if (spec.kind === 'bool') boolValue(spec.flag, raw);
  if (spec.kind === 'int' && !/^-?\d+$/.test(text)) fail(spec.flag, raw, `must be a whole number, got "${text}"`);
  if (spec.kind === 'duration' && !durationPattern.test(text)) {
    fail(spec.flag, raw, `must be a duration such as 5s, 100ms or 2h, got "${text}"`);
  }
  // etcd's own default changes nothing in etcd either: no warning for it.
  if (text !== spec.defaultText) warnings.push(`${labelOf(spec.flag, raw)} has no effect in DKV (${spec.help})`);
}

const durationUnitsMs: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A Go duration of whole units (`1h30m`, `90s`, `500ms`) in ms, or undefined if it is not one. */
export function parseDurationMs(text: string): number | undefined {
  if (!/^(\d+(ms|s|m|h))+$/.test(text)) return undefined;
  let total = 0;
  for (const match of text.matchAll(/(\d+)(ms|s|m|h)/g)) total += Number(match[1]) * durationUnitsMs[match[2]!]!;
  return Number.isSafeInteger(total) ? total : undefined;
}

/** As etcd: periodic retention is a duration, or a bare number of hours; revision retention a count. */
function autoCompactionValue(raw: RawSettings): AutoCompactionConfig {
  const modeText = (raw.get('auto-compaction-mode')?.text ?? 'periodic').trim();
  if (modeText !== 'periodic' && modeText !== 'revision') {
    fail('auto-compaction-mode', raw, `must be "periodic" or "revision", got "${modeText}"`);
  }
  const text = (raw.get('auto-compaction-retention')?.text ?? '0').trim();
  if (modeText === 'revision') {
    return { mode: modeText, retention: intValue('auto-compaction-retention', raw, 0, 0, autoCompactionRetentionRevisionsMax) };
  }
  const retention = /^\d+$/.test(text) ? Number(text) * 3_600_000 : parseDurationMs(text);
  if (retention === undefined) fail('auto-compaction-retention', raw, `must be a duration such as 1h or 30m, or a number of hours, got "${text}"`);
  if (retention > autoCompactionRetentionMsMax) fail('auto-compaction-retention', raw, `must be at most ${autoCompactionRetentionMsMax / 3_600_000}h, got "${text}"`);
  return { mode: modeText, retention };
}

/** --auth-token, parsed and its key files read (a bad one stops the start, naming the option). */
function authTokenValue(raw: RawSettings): AuthTokenOption {
  const text = stringValue('auth-token', raw) ?? 'simple';
  try {
    return parseAuthTokenOption(text);
  } catch (error) {
    if (!(error instanceof AuthTokenOptionError)) throw error;
    return fail('auth-token', raw, error.message);
  }
}

/** As etcd: a whole number; outside bcrypt's range it is warned about and the default used. */
function bcryptCostValue(raw: RawSettings, warnings: string[]): number {
  const cost = intValue('bcrypt-cost', raw, bcryptCostDefault, 0, Number.MAX_SAFE_INTEGER);
  if (cost >= bcryptCostMin && cost <= bcryptCostMax) return cost;
  warnings.push(`${labelOf('bcrypt-cost', raw)}: ${cost} is outside ${bcryptCostMin}..${bcryptCostMax}; the default ${bcryptCostDefault} is used (as etcd does)`);
  return bcryptCostDefault;
}

function clusterStateValue(raw: RawSettings): InitialClusterState {
  const text = raw.get('initial-cluster-state')?.text ?? defaults.initialClusterState;
  if (text !== 'new' && text !== 'existing') fail('initial-cluster-state', raw, `must be "new" or "existing", got "${text}"`);
  return text;
}

/** This member is in the initial cluster, under exactly the peer URLs it advertises (etcd checks this). */
function checkMembership(
  raw: RawSettings,
  name: string,
  advertised: readonly ServerUrl[],
  cluster: readonly ClusterMember[],
): void {
  const self = cluster.find((member) => member.name === name);
  if (self === undefined) {
    const names = cluster.map((member) => member.name).join(', ');
    fail('initial-cluster', raw, `has no member named "${name}" (this member's --name); it lists ${names}`);
  }
  const listed = self.peerUrls.map((url) => url.href).sort();
  const given = advertised.map((url) => url.href).sort();
  if (listed.join(',') !== given.join(',')) {
    fail(
      'initial-advertise-peer-urls',
      raw,
      `${given.join(',')} does not match member "${name}" in --initial-cluster (${listed.join(',')})`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Help

function helpGroup(title: string, group: FlagSpec['group']): string {
  const lines = [`${title}:`, ''];
  for (const s of flagSpecs.filter((f) => f.group === group)) {
    lines.push(`  --${s.flag} '${s.defaultText}'`, `      ${s.help}`);
  }
  return lines.join('\n');
}

function noEffectHelp(): string {
  const lines = [
    'etcd flags accepted for compatibility, no effect in DKV:',
    '  (so that an etcd unit file or config file starts DKV unchanged; each one given is validated',
    '  by type and logged once at start as having no effect, with the reason; etcd\'s default shown)',
    '',
  ];
  for (const s of flagSpecs.filter((f) => f.group === 'no-effect')) lines.push(`  --${s.flag} '${s.defaultText}'`, `      ${s.help}.`);
  return lines.join('\n');
}

/** The text of `dkv server --help`: every flag with its default. */
export const serverHelp = `Usage: dkv server [flags]

Start an etcd-compatible DKV node. Flags use etcd's names; "--flag value" and "--flag=value"
both work. Each flag can also be set by an environment variable DKV_<FLAG> or etcd's ETCD_<FLAG>
(for example DKV_INITIAL_CLUSTER for --initial-cluster); a flag on the command line wins over
both, and DKV_<FLAG> wins over ETCD_<FLAG>. An unknown flag is an error (with the closest known
flag suggested). "dkv server --version" prints the versions.

${helpGroup('Member flags', 'member')}

${helpGroup('Clustering flags', 'clustering')}

${helpGroup('Security flags', 'security')}

${helpGroup('Logging flags', 'logging')}

${helpGroup('DKV flags', 'dkv')}

${helpGroup('etcd timing flags (instead of the tick flags)', 'etcd')}

Config file: --config-file takes a YAML file with the keys of etcd's config file (name, data-dir,
listen-client-urls, initial-cluster, …, client-transport-security: {cert-file, key-file,
trusted-ca-file, client-cert-auth}, peer-transport-security: {…}) plus DKV's tick-ms,
election-ticks, heartbeat-ticks, snapshot-count, snapshot-bytes, max-request-bytes and log-file. As in etcd 3.5,
when a config file is given every other flag and DKV_*/ETCD_* variable is ignored (a warning lists them).
etcd keys DKV does not use are ignored with a warning; other unknown keys are an error.
"dkv config check FILE" reports every bad field of a config file at once; docs/dkv.example.yaml
is an example.

${noEffectHelp()}

https URLs need --cert-file/--key-file (client side) or --peer-cert-file/--peer-key-file (peer side).
Errors name the flag and exit with code 2, as do data-dir problems found at start (an empty dir
for a member the cluster knows, a removed member's dir, another member's dir: one line names the
problem and the fix, see docs/replace-member.md). A member removed from its cluster exits with
code 3; a fatal error with code 1.
`;

// ---------------------------------------------------------------------------------------------
// Local development cluster layout (`dkv dev`)

export interface DevClusterOptions {
  /** Members, 1 to devNodesMax. */
  readonly nodes: number;
  /** Node 1's client port; node i uses basePort + 10 (i - 1), its peer port +1, metrics +2. */
  readonly basePort: number;
  /** Parent directory of every node's data dir and log. */
  readonly dataDir: string;
}

export interface DevNode {
  readonly name: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly metricsPort: number;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly metricsUrl: string;
  readonly dataDir: string;
  readonly logFile: string;
  /** The `dkv server` arguments that start this node. */
  readonly args: readonly string[];
}

export interface DevClusterLayout {
  readonly nodes: readonly DevNode[];
  readonly initialCluster: string;
}

export const devNodesMax = 99;
const devPortStride = 10;
const devHost = '127.0.0.1';

export function devClusterLayout(options: DevClusterOptions): DevClusterLayout {
  const { nodes, basePort, dataDir } = options;
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > devNodesMax) {
    throw new ConfigError('nodes', `--nodes: must be between 1 and ${devNodesMax}, got ${nodes}`);
  }
  const lastPort = basePort + devPortStride * (nodes - 1) + 2;
  if (!Number.isInteger(basePort) || basePort < 1 || lastPort > 65_535) {
    throw new ConfigError('base-port', `--base-port: ${basePort} leaves no room for ${nodes} nodes below 65536`);
  }
  if (dataDir === '') throw new ConfigError('data-dir', '--data-dir: must not be empty');
  const dir = dataDir.replace(/\/+$/, '') || '/';
  const placed = Array.from({ length: nodes }, (_, i) => {
    const clientPort = basePort + devPortStride * i;
    return { name: `dkv${i + 1}`, clientPort, peerPort: clientPort + 1, metricsPort: clientPort + 2 };
  });
  const initialCluster = placed.map((n) => `${n.name}=http://${devHost}:${n.peerPort}`).join(',');
  return {
    initialCluster,
    nodes: placed.map((n) => {
      const node = {
        ...n,
        clientUrl: `http://${devHost}:${n.clientPort}`,
        peerUrl: `http://${devHost}:${n.peerPort}`,
        metricsUrl: `http://${devHost}:${n.metricsPort}`,
        dataDir: `${dir === '/' ? '' : dir}/${n.name}`,
        logFile: `${dir === '/' ? '' : dir}/${n.name}.log`,
      };
      return { ...node, args: devNodeArgs(node, initialCluster) };
    }),
  };
}

function devNodeArgs(node: Omit<DevNode, 'args'>, initialCluster: string): string[] {
  return [
    `--name=${node.name}`,
    `--data-dir=${node.dataDir}`,
    `--listen-client-urls=${node.clientUrl}`,
    `--advertise-client-urls=${node.clientUrl}`,
    `--listen-peer-urls=${node.peerUrl}`,
    `--initial-advertise-peer-urls=${node.peerUrl}`,
    `--listen-metrics-urls=${node.metricsUrl}`,
    `--initial-cluster=${initialCluster}`,
    '--initial-cluster-state=new',
    `--log-file=${node.logFile}`,
  ];
}
