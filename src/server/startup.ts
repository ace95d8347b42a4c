/**
 * What a node checks before it joins its cluster, so that a wrong or lost data directory gives a
 * one-line error naming the problem and the fix, never a stack trace and never a silently empty
 * member (etcd: `member … has already been bootstrapped`):
 *
 * - A data directory without `member.json` is new (the file is written once the first start has
 *   set the directory up, before the node talks to any peer). Its member asks the peers named in
 *   --initial-cluster for the cluster's members (`queryCluster`, a unary call on the peer port):
 *   - `--initial-cluster-state new`: if the cluster already runs and this member published its
 *     client URLs there, it started before and lost its data: refused. If no peer answers, the
 *     cluster is being founded: the member bootstraps.
 *   - `--initial-cluster-state existing`: the member finds its id in the member list by its peer
 *     URLs (MemberAdd chose it). Not listed, already started, removed, or no peer reachable:
 *     refused, each with its own message.
 * - A data directory with `member.json` is a restart: refused if the recovered state says this
 *   member was removed.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { clusterIdOf, formatId, memberIdOf } from '../cluster/index.js';
import type { Member } from '../engines/meta/index.js';
import type { ServerConfig } from './config.js';
import { type PeerTlsOptions, queryCluster } from './peer/index.js';
import { clusterQueryRetryMs, clusterQueryTimeoutMs } from './peer/limits.js';

/** A start refused for a reason the operator can fix; its message is the whole story (no stack). */
export class StartupError extends Error {
  override readonly name = 'StartupError';
}

/** The identity file's path in a data directory. */
export function identityFile(dataDir: string): string {
  return join(dataDir, 'member.json');
}

export interface StartIdentity {
  memberId: number;
  clusterId: number;
  name: string;
  clusterToken: string;
  /** Joined a running cluster (`existing`): its log may legitimately be empty until a snapshot comes. */
  joined?: boolean;
}

/** Writes the identity file atomically: from now on the directory is this member's. */
export function writeIdentity(file: string, identity: StartIdentity): void {
  writeFileSync(`${file}.tmp`, JSON.stringify(identity));
  renameSync(`${file}.tmp`, file);
}

/** A founding member's identity, from its flags alone. */
export function foundingIdentity(config: ServerConfig): StartIdentity {
  const token = config.initialClusterToken;
  return { memberId: memberIdOf(config.initialAdvertisePeerUrls, token), clusterId: clusterIdOf(token), name: config.name, clusterToken: token };
}

/** What the peer port's cluster query answers. */
export interface ClusterInfo {
  readonly clusterId: number;
  readonly members: ReadonlyArray<{ id: number; name: string; peerUrls: readonly string[]; clientUrls: readonly string[]; isLearner: boolean }>;
  /** Ids removed from the cluster (never to come back). */
  readonly removed?: readonly number[];
}

export function encodeClusterInfo(clusterId: number, members: readonly Member[], removed: readonly number[] = []): Uint8Array {
  const info: ClusterInfo = {
    clusterId,
    members: members.map((m) => ({ id: m.id, name: m.name, peerUrls: m.peerUrls, clientUrls: m.clientUrls, isLearner: m.isLearner })),
    removed,
  };
  return Buffer.from(JSON.stringify(info));
}

function decodeClusterInfo(bytes: Uint8Array): ClusterInfo {
  const info = JSON.parse(Buffer.from(bytes).toString('utf8')) as ClusterInfo;
  if (!Number.isSafeInteger(info.clusterId) || !Array.isArray(info.members)) throw new Error('malformed cluster info');
  return info;
}

function sameUrls(a: readonly string[], b: readonly string[]): boolean {
  const left = [...a].sort();
  const right = [...b].sort();
  return left.length === right.length && left.every((url, i) => url === right[i]);
}

/** The other members' peer URLs from --initial-cluster (this member's own left out). */
function peersToAsk(config: ServerConfig): string[] {
  const own = new Set(config.initialAdvertisePeerUrls.map((u) => u.href));
  const urls: string[] = [];
  for (const member of config.initialCluster) for (const url of member.peerUrls) if (!own.has(url.href)) urls.push(url.href);
  return urls;
}

type Answer = { url: string; info: ClusterInfo } | { url: string; error: string; unimplemented: boolean };

async function askPeers(urls: readonly string[], tls: PeerTlsOptions | undefined): Promise<Answer[]> {
  return Promise.all(
    urls.map(async (url): Promise<Answer> => {
      try {
        return { url, info: decodeClusterInfo(await queryCluster(url, tls, clusterQueryTimeoutMs)) };
      } catch (error) {
        const code = (error as { code?: number }).code;
        return { url, error: error instanceof Error ? error.message : String(error), unimplemented: code === 12 };
      }
    }),
  );
}

const replaceHint = 'remove it (etcdctl member remove ID), add it back (etcdctl member add), and start it on an empty data dir with --initial-cluster-state existing (docs/replace-member.md)';

/** A member the cluster query named: whom to dial before the meta shard says it. */
export interface KnownPeer {
  readonly id: number;
  readonly url: string;
  readonly isLearner?: boolean;
}

/** The members (with a peer URL) and the removed ids of the answers that came back. */
function peersOf(infos: ReadonlyArray<{ info: ClusterInfo }>): { peers: KnownPeer[]; removed: Set<number> } {
  const removed = new Set<number>();
  const peers = new Map<number, { url: string; isLearner: boolean }>();
  for (const { info } of infos) {
    for (const id of info.removed ?? []) removed.add(id);
    for (const m of info.members) if (m.peerUrls[0] !== undefined) peers.set(m.id, { url: m.peerUrls[0], isLearner: m.isLearner });
  }
  return { peers: [...peers].filter(([id]) => !removed.has(id)).map(([id, p]) => ({ id, ...p })), removed };
}

/**
 * Asks the members at `urls` who the members are now (best effort: the ones that answer, for
 * `clusterId`): a restarted member whose state is behind learns the ids of members replaced
 * meanwhile, so it can reach them.
 */
export async function currentPeers(urls: readonly string[], tls: PeerTlsOptions | undefined, clusterId: number): Promise<{ peers: KnownPeer[]; removed: Set<number> }> {
  const answers = await askPeers([...new Set(urls)], tls);
  return peersOf(answers.flatMap((a) => ('info' in a && a.info.clusterId === clusterId ? [a] : [])));
}

/**
 * The identity of a member whose data directory is new, from its flags and the cluster's answer,
 * with the members the answer named (a member joining a cluster whose members were replaced
 * cannot work their ids out from --initial-cluster).
 */
export async function resolveNewIdentity(
  config: ServerConfig,
  tls: PeerTlsOptions | undefined,
  retryForMs: number,
): Promise<{ identity: StartIdentity; peers: KnownPeer[] }> {
  const founding = foundingIdentity(config);
  const ownUrls = config.initialAdvertisePeerUrls.map((u) => u.href);
  const urls = peersToAsk(config);
  // Asked again until a peer answers or `retryForMs` passed: a member that lost its disk must not
  // bootstrap afresh because its peers were unreachable for a moment.
  const deadline = Date.now() + retryForMs;
  let answers = await askPeers(urls, tls);
  const unimplemented = (list: Answer[]) => list.length > 0 && list.every((a) => 'unimplemented' in a && a.unimplemented);
  while (urls.length > 0 && !answers.some((a) => 'info' in a) && !unimplemented(answers) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, clusterQueryRetryMs));
    answers = await askPeers(urls, tls);
  }
  const infos = answers.flatMap((a) => ('info' in a ? [a] : []));
  for (const { url, info } of infos) {
    if (info.clusterId !== founding.clusterId) {
      throw new StartupError(
        `the member at ${url} is in cluster ${formatId(info.clusterId)}, but --initial-cluster-token ${JSON.stringify(config.initialClusterToken)} names cluster ${formatId(founding.clusterId)}: check the token and --initial-cluster`,
      );
    }
  }
  const { removed } = peersOf(infos);
  if (config.initialClusterState === 'new') {
    if (removed.has(founding.memberId)) {
      throw new StartupError(`${removedMessage(founding.memberId, config.dataDir)}; this data dir is new, so: add the member back with etcdctl member add and start it with --initial-cluster-state existing`);
    }
    for (const { url, info } of infos) {
      const self = info.members.find((m) => m.id === founding.memberId);
      if (self !== undefined && self.clientUrls.length > 0) {
        throw new StartupError(
          `member ${formatId(founding.memberId)} (${config.name}) has already been bootstrapped (the member at ${url} knows it) and its data dir ${config.dataDir} is empty: ` +
            `restore the data dir, or replace the member: ${replaceHint}`,
        );
      }
      // A peer that is being founded too lists this member (same --initial-cluster); one whose
      // cluster runs without it means this member was never added.
      if (self === undefined && info.members.length > 0) {
        throw new StartupError(
          `the cluster at ${url} runs without this member (${ownUrls.join(',')}): add it with etcdctl member add ${config.name} --peer-urls=${ownUrls.join(',')} and start it with --initial-cluster-state existing`,
        );
      }
    }
    return { identity: founding, peers: peersOf(infos).peers };
  }
  // existing: the cluster chose this member's id when it was added.
  if (infos.length === 0) {
    if (unimplemented(answers)) return { identity: founding, peers: [] }; // peers of a build without the query
    const why = answers.map((a) => `${a.url}: ${'error' in a ? a.error : ''}`).join('; ');
    throw new StartupError(`--initial-cluster-state existing: no member of the cluster answered (${why || 'no other member in --initial-cluster'}); start this member once the cluster is reachable`);
  }
  // Every answer counts: one that has not applied the MemberAdd yet does not list this member, one
  // that is behind may still list a removed member on the same peer URL.
  const candidates = infos.flatMap(({ info }) => info.members.filter((m) => sameUrls(m.peerUrls, ownUrls) && !removed.has(m.id)));
  const self = candidates.find((m) => m.clientUrls.length === 0) ?? candidates[0];
  if (self === undefined) {
    throw new StartupError(
      `--initial-cluster-state existing: no member of the cluster has the peer URLs ${ownUrls.join(',')}; add this member first: etcdctl member add ${config.name} --peer-urls=${ownUrls.join(',')}`,
    );
  }
  if (self.clientUrls.length > 0) {
    throw new StartupError(`member ${formatId(self.id)} (${self.name || config.name}) has already been bootstrapped and its data dir ${config.dataDir} is empty: restore the data dir, or ${replaceHint}`);
  }
  // The joiner itself is listed too (its learner flag); the node never dials itself.
  return { identity: { ...founding, memberId: self.id, joined: true }, peers: [...peersOf(infos).peers.filter((p) => p.id !== self.id), { id: self.id, url: self.peerUrls[0] ?? '', isLearner: self.isLearner }] };
}

/** How a removed member's data dir is refused (at start, and when it learns it while running). */
export function removedMessage(memberId: number, dataDir: string): string {
  return `member ${formatId(memberId)} was removed from the cluster; the data dir ${dataDir} can never be used again: delete it, add the member back with etcdctl member add, and start it with --initial-cluster-state existing (docs/replace-member.md)`;
}

/** What a restart checks once the meta shard's state is recovered. */
export function checkRecoveredState(config: ServerConfig, identity: StartIdentity, meta: { isRemoved(id: number): boolean }): void {
  if (meta.isRemoved(identity.memberId)) {
    throw new StartupError(removedMessage(identity.memberId, config.dataDir));
  }
}
