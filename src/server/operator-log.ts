/**
 * What the log tells an operator about this member: the start-up summary (versions, ids, data
 * directory, bootstrap or restart and what was recovered, URLs) and one line per membership
 * change. Pure functions over narrow inputs, so tests check the lines without a node.
 */
import type { MemberRecord } from '../engines/meta/index.js';
import type { ServerConfig, ServerUrl } from './config.js';
import { formatId } from '../cluster/index.js';
import { dkvVersion, etcdApiVersion } from './version.js';
import { type MallocTrimAvailability, jemallocPath, mallocTrimAvailability, mappedObjects } from './malloc-trim.js';

/** What one shard's log store held when the node opened it, before anything was written. */
export interface RecoveredShard {
  readonly shard: number;
  readonly lastIndex: number;
  readonly snapshotIndex: number;
  readonly term: number;
  readonly commit: number;
}

export type StartKind = 'bootstrap' | 'join' | 'restart';

/** A node with nothing stored bootstraps (a new cluster) or joins (an existing one); else it restarts. */
export function startKindOf(config: Pick<ServerConfig, 'initialClusterState'>, recovered: readonly RecoveredShard[]): StartKind {
  if (recovered.some((shard) => shard.lastIndex > 0 || shard.snapshotIndex > 0)) return 'restart';
  return config.initialClusterState === 'new' ? 'bootstrap' : 'join';
}

const urls = (list: readonly ServerUrl[]): string => (list.length === 0 ? '(none)' : list.map((url) => url.href).join(','));

export interface StartupFacts {
  readonly config: ServerConfig;
  readonly memberId: number;
  readonly clusterId: number;
  readonly recovered: readonly RecoveredShard[];
  /** Once serving: each shard's applied index, and the default store's revision. */
  readonly applied: ReadonlyArray<{ shard: number; appliedIndex: number; revision?: number }>;
  /** The process's environment and mapped shared objects, for the allocator line (default: this process's). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly mapped?: readonly string[];
  /** Whether glibc's malloc_trim can run (default: this process's, malloc-trim.ts). */
  readonly trim?: MallocTrimAvailability;
}

/**
 * Which malloc the process runs on, from what it maps (`mapped`: the paths of the shared objects
 * in /proc/self/maps) and what was asked: a warning when DKV_ALLOCATOR=jemalloc found none,
 * DKV_ALLOCATOR=glibc runs on a jemalloc the caller preloaded, or DKV_ALLOCATOR has a value other
 * than jemalloc or glibc.
 */
export function allocatorLine(env: Readonly<Record<string, string | undefined>>, mapped: readonly string[]): StartupLine {
  const jemalloc = mapped.find((path) => jemallocPath.test(path));
  const asked = env.DKV_ALLOCATOR;
  const unknown = asked !== undefined && asked !== '' && asked !== 'glibc' && asked !== 'jemalloc';
  if (jemalloc !== undefined) {
    const text = `memory allocator: jemalloc (${jemalloc}, MALLOC_CONF=${env.MALLOC_CONF ?? '(its defaults)'})`;
    if (unknown) return { level: 'warn', text: `${text}; DKV_ALLOCATOR=${asked} is neither jemalloc nor glibc, and was ignored` };
    if (asked === 'glibc') return { level: 'warn', text: `${text}; DKV_ALLOCATOR=glibc was not followed: LD_PRELOAD loads jemalloc` };
    return info(text);
  }
  const preload = env.LD_PRELOAD ?? '';
  const libc = `memory allocator: the C library's malloc${preload === '' ? '' : ` or one LD_PRELOAD=${preload} loads`}`;
  if (asked === 'jemalloc') return { level: 'warn', text: `${libc}; DKV_ALLOCATOR=jemalloc found no libjemalloc.so.2 (Debian: libjemalloc2), or LD_PRELOAD was set already` };
  if (unknown) return { level: 'warn', text: `${libc}; DKV_ALLOCATOR=${asked} is neither jemalloc nor glibc, and was ignored` };
  return info(`${libc} (DKV_ALLOCATOR=jemalloc for jemalloc)`);
}

/** One start-up line and the level it is logged at (a setting asked for and not in effect warns). */
export interface StartupLine {
  readonly level: 'info' | 'warn';
  readonly text: string;
}

function info(text: string): StartupLine {
  return { level: 'info', text };
}

/** The lines a node logs once it serves clients, in the order an operator reads them. */
export function startupLines(facts: StartupFacts): StartupLine[] {
  const { config, memberId, clusterId, recovered } = facts;
  const kind = startKindOf(config, recovered);
  const how = {
    bootstrap: `bootstrapped a new cluster of ${config.initialCluster.length} member(s) (token "${config.initialClusterToken}")`,
    join: 'joining an existing cluster (--initial-cluster-state=existing)',
    restart: 'restarted from its data directory',
  }[kind];
  const lines: StartupLine[] = [
    `DKV ${dkvVersion()} (etcd API ${etcdApiVersion}, Node ${process.version}) member ${formatId(memberId)} ("${config.name}") of cluster ${formatId(clusterId)}: ${how}`,
    `data dir ${config.dataDir}${config.configFile === undefined ? '' : `, config file ${config.configFile}`}`,
    `settings not at their defaults: ${config.changedSettings.length === 0 ? '(none)' : config.changedSettings.join(' ')}`,
  ].map(info);
  const mapped = facts.mapped ?? mappedObjects();
  lines.push(allocatorLine(facts.env ?? process.env, mapped));
  const trim = facts.trim ?? mallocTrimAvailability(mapped);
  lines.push(info(trim.available ? "memory trim: glibc's malloc_trim after each memory settle and defragmentation" : `memory trim: none (${trim.reason})`));
  if (kind === 'restart') {
    for (const shard of recovered) {
      const state = facts.applied.find((a) => a.shard === shard.shard);
      const revision = state?.revision === undefined ? '' : `, revision ${state.revision}`;
      lines.push(
        info(
          `shard ${shard.shard} stored: snapshot index ${shard.snapshotIndex}, last log index ${shard.lastIndex}, ` +
            `commit ${shard.commit}, term ${shard.term}; applied index ${state?.appliedIndex ?? 0}${revision} before replaying the log`,
        ),
      );
    }
  }
  lines.push(
    ...[
      `client URLs: listen ${urls(config.listenClientUrls)}, advertise ${urls(config.advertiseClientUrls)}`,
      `peer URLs: listen ${urls(config.listenPeerUrls)}, advertise ${urls(config.initialAdvertisePeerUrls)}`,
      `metrics URLs: ${urls(config.listenMetricsUrls)}`,
      `raft: tick ${config.tickMs} ms, heartbeat ${config.heartbeatTicks} tick(s), election ${config.electionTicks} ticks, ` +
        `snapshot every ${config.snapshotCount} entries or ${config.snapshotBytes} bytes, max request ${config.maxRequestBytes} bytes`,
    ].map(info),
  );
  return lines;
}

export interface MemberChange {
  readonly kind: 'added' | 'removed' | 'promoted';
  readonly member: MemberRecord;
}

/** The membership changes between two member lists (ids compared; a learner turned voter is promoted). */
export function memberChanges(before: readonly MemberRecord[], after: readonly MemberRecord[]): MemberChange[] {
  const old = new Map(before.map((member) => [member.id, member]));
  const now = new Map(after.map((member) => [member.id, member]));
  const changes: MemberChange[] = [];
  for (const member of after) {
    const previous = old.get(member.id);
    if (previous === undefined) changes.push({ kind: 'added', member });
    else if (previous.isLearner && !member.isLearner) changes.push({ kind: 'promoted', member });
  }
  for (const member of before) if (!now.has(member.id)) changes.push({ kind: 'removed', member });
  return changes;
}

export function memberChangeLine(change: MemberChange, clusterId: number): string {
  const { member } = change;
  const role = member.isLearner ? 'learner' : 'voter';
  const name = member.name === '' ? '(unstarted)' : `"${member.name}"`;
  return `${change.kind} member ${formatId(member.id)} ${name} (${role}, peer URLs ${member.peerUrls.join(',')}) of cluster ${formatId(clusterId)}`;
}

/** Remembers the member list and logs how each applied change altered it. */
export class MembershipLog {
  private known: readonly MemberRecord[] = [];

  constructor(
    private readonly clusterId: number,
    private readonly log: (line: string) => void,
  ) {}

  /** Called after every configuration change the meta shard applied (and once at start, silently). */
  changed(members: readonly MemberRecord[], quiet = false): void {
    // A cluster never has no members: an empty list means the meta shard is not hosted yet.
    if (members.length === 0) return;
    if (!quiet) for (const change of memberChanges(this.known, members)) this.log(memberChangeLine(change, this.clusterId));
    this.known = members.map((member) => ({ id: member.id, name: member.name, peerUrls: [...member.peerUrls], isLearner: member.isLearner }));
  }
}

/**
 * On a restart, says when each shard has applied again everything it had committed before it
 * stopped (the recovered applied index and revision an operator compares with other members).
 */
export class RecoveryLog {
  private readonly waiting: Map<number, number>;

  constructor(
    recovered: readonly RecoveredShard[],
    private readonly revisionOf: (shard: number) => number | undefined,
    private readonly log: (line: string) => void,
    /** Called once per shard when it has applied its stored commit index. */
    private readonly onRecovered: (shard: number) => void = () => undefined,
  ) {
    this.waiting = new Map(recovered.filter((shard) => shard.commit > shard.snapshotIndex).map((shard) => [shard.shard, shard.commit]));
  }

  /** Whether `shard` is still replaying the log it stored (it has not applied its stored commit index yet). */
  replaying(shard: number): boolean {
    return this.waiting.has(shard);
  }

  /** Whether entry `index` of `shard` is part of the stored log being replayed (at or below its stored commit index). */
  replays(shard: number, index: number): boolean {
    const target = this.waiting.get(shard);
    return target !== undefined && index <= target;
  }

  entryApplied(shard: number, index: number): void {
    const target = this.waiting.get(shard);
    if (target === undefined || index < target) return;
    this.waiting.delete(shard);
    const revision = this.revisionOf(shard);
    this.log(`shard ${shard} recovered: applied index ${index}${revision === undefined ? '' : `, revision ${revision}`} (the commit index it stored)`);
    this.onRecovered(shard);
  }
}
